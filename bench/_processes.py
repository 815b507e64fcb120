"""What every bench script needs of the processes it starts and measures.

Shared by ``joins.py``, ``storm.py`` and ``ejabberd.py``:

* reading ``/proc``: the CPU time of one process, the busy time of the whole machine, RSS;
* :class:`Process` and :class:`Children`: every child in its own process group, all stopped on
  any exit path;
* the command line of ``bench/authservice.py``, and its ``/stats`` (``twistd mucauth``'s
  command line and tap.conf come from ``examples/_stack.py``, as for the tests and the demo);
* :func:`check_gate`, the refused and admitted join every bench makes before measuring;
* :func:`run_main`, the temp dir, signal handling and clean-up around a script's ``run()``.

The scripts put the checkout on ``sys.path`` before importing this module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples._loadclient import Connection, JoinRefusedError
from examples._stack import start_process, stop_process

if TYPE_CHECKING:
    from _prosody import BenchProsody

BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (fields 14 and 15, after the command name)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from the first line of /proc/stat.

    Compared with the CPU of our own processes it shows how much other work shared the host
    during a measurement: the figures of a run with a large "other" share are not worth much.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


# -- children --------------------------------------------------------------------------------


@dataclass
class Process:
    """A child in its own session, so stopping it also stops whatever it spawned."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Children:
    """Every process the benchmark started; ``stop_all`` runs on any exit path."""

    def __init__(self) -> None:
        self.processes: list[Process] = []
        self.prosody: BenchProsody | None = None

    def spawn(self, name: str, argv: list[str], log: Path, cwd: Path) -> Process:
        process = Process(name, start_process(argv, log, name, cwd=cwd), log)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        while self.processes:
            stop_process(self.processes.pop().popen, timeout=5.0)
        if self.prosody is not None:
            self.prosody.stop()
            self.prosody = None


def spawn_auth_service(children: Children, bench_dir: Path, options: list[str]) -> Process:
    """bench/authservice.py with ``options`` (``--port`` ...), logging to authservice.log."""
    return children.spawn(
        "auth service",
        [sys.executable, str(BENCH / "authservice.py"), *options],
        bench_dir / "authservice.log",
        bench_dir,
    )


async def fetch_stats(port: int) -> dict[str, dict[str, int]]:
    """GET /stats from the auth service over a fresh connection (not counted by it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return json.loads(data.partition(b"\r\n\r\n")[2])


async def check_gate(probe: Connection, service: str) -> None:
    """One refused and one admitted join before measuring anything.

    Figures from a mucauth that admits everyone (a gate switched off by configuration, say)
    would look fast and mean nothing, so that is an error, not a footnote.
    """
    denied = f"deny-check@{service}/probe"
    try:
        await asyncio.wait_for(probe.join(denied), 10)
    except JoinRefusedError:
        pass
    else:
        await probe.leave(denied)
        raise RuntimeError(f"{service} admitted a join its authorization service refused")
    allowed = f"allow-check@{service}/probe"
    try:
        await asyncio.wait_for(probe.join(allowed), 10)
    except JoinRefusedError as e:
        raise RuntimeError(f"{service} refused a join the service allowed: {e}") from None
    await asyncio.wait_for(probe.leave(allowed), 10)


# -- main ------------------------------------------------------------------------------------


def run_main(
    run: Callable[[argparse.Namespace, Path, Children], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    prefix: str,
    *,
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """``run(args, bench_dir, children)`` in a fresh temp dir; returns the exit status.

    SIGTERM and Ctrl-C stop it (130); every child is stopped on any exit path, and the temp
    dir removed unless ``args.keep``. An exception of ``errors`` is printed on one line and
    gives 1; any other one goes through with its traceback.
    """
    bench_dir = Path(tempfile.mkdtemp(prefix=prefix))
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # A shell starts background jobs with SIGINT ignored; Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(run(args, bench_dir, children))
    except errors as e:
        print(f"!! {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if args.keep:
            print(f"logs and configs kept in {bench_dir}", file=sys.stderr)
        else:
            shutil.rmtree(bench_dir, ignore_errors=True)
