"""``./dev.sh demo`` (examples/demo.py) runs its scripted session and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

import pytest

from examples._stack import pid_alive
from tests.support.signals import default_ctrl_c

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd]

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def run_demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def pids_in(output: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)}


class DemoTests(unittest.TestCase):
    def assert_all_gone(self, pids: set[int], output: str) -> None:
        self.assertGreaterEqual(len(pids), 3, output)  # Prosody, auth service, mucauth
        deadline = time.monotonic() + 5
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([pid for pid in pids if pid_alive(pid)], [], output)

    def test_scripted_session_then_exit(self) -> None:
        result = run_demo("--no-wait")
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        for expected in (
            "1. alice joins lobby@rooms.localhost",
            "Allowed: alice is in lobby@rooms.localhost",
            "Already there: alice.",
            "bob receives: <alice> Hello bob!",
            'Refused: cancel/forbidden, "You are not allowed to enter this room"',
            'The auth service said "The staff room is for staff members only"',
            "Allowed: alice is in staff@rooms.localhost",
            "alice sees bob leave.",
            "stopped mucauth",
            "stopped Prosody",
        ):
            self.assertIn(expected, output)
        self.assertNotIn("Traceback", output)
        self.assert_all_gone(pids_in(output), output)

    def test_scripted_session_behind_ejabberd(self) -> None:
        result = run_demo("--no-wait", "--server", "ejabberd")
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        for expected in (
            "connected to ejabberd as rooms.localhost",
            "Already there: alice.",
            "bob receives: <alice> Hello bob!",
            'Refused: cancel/forbidden, "You are not allowed to enter this room"',
            "alice sees bob leave.",
            "stopped ejabberd",
        ):
            self.assertIn(expected, output)
        self.assertNotIn("Traceback", output)
        self.assert_all_gone(pids_in(output), output)

    def test_sigterm_while_waiting_stops_everything(self) -> None:
        self.check_stopped_by(signal.SIGTERM)

    def test_ctrl_c_while_waiting_stops_everything(self) -> None:
        self.check_stopped_by(signal.SIGINT)

    def check_stopped_by(self, sig: signal.Signals) -> None:
        process = subprocess.Popen(
            [sys.executable, str(DEMO)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=default_ctrl_c,
        )

        lines: list[str] = []

        def kill_if_running() -> None:
            """After a failure: the demo and each server it started (every one of them runs
            in its own process group, so killing the demo's group alone would leave them)."""
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            for pid in pids_in("".join(lines)):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)

        self.addCleanup(kill_if_running)
        watchdog = threading.Timer(90, lambda: os.killpg(process.pid, signal.SIGKILL))
        watchdog.start()  # reading its output must not hang the suite
        self.addCleanup(watchdog.cancel)
        assert process.stdout is not None
        for line in process.stdout:  # until the demo says it is waiting
            lines.append(line)
            if "Ctrl-C stops everything" in line or "demo failed" in line:
                break
        self.assertIn("Ctrl-C stops everything", "".join(lines), "".join(lines))
        process.send_signal(sig)
        rest, _ = process.communicate(timeout=60)
        output = "".join(lines) + rest
        self.assertEqual(process.returncode, 0, output)
        self.assertIn("stopped Prosody", output)
        self.assert_all_gone(pids_in(output), output)
