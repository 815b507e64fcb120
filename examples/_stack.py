"""Run the pieces of a mucauth deployment as child processes: the example authorization service
and ``twistd mucauth``. Shared by ``examples/demo.py``, the end-to-end tests
(``tests/support/stack.py``) and the benchmarks (``bench/``: ``mucauth_command`` and
``write_tap_conf``), so all start, watch and stop processes and write tap.conf the same way.

Every child runs in its own session (process group), so stopping it also stops anything it
started, and every PID is recorded in ``STARTED`` so a test can check that nothing outlived it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent
AUTH_SERVICE = EXAMPLES / "auth_service.py"

# Every process started through this module, as (pid, what), in start order.
STARTED: list[tuple[int, str]] = []

LISTENING = re.compile(
    r"^listening on (?P<url>(?P<scheme>https?)://(?P<host>\[[^]]+\]|[^:/]+):(?P<port>\d+)\S*)$"
)


class ProcessError(RuntimeError):
    """A child process failed to start or to get ready; the message says where its log is."""


def start_process(
    args: list[str], log_path: Path, what: str, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
    STARTED.append((process.pid, what))
    return process


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL it if it lingers."""
    if process is None:
        return
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    # A grandchild that ignored SIGTERM would keep the group alive: make sure it is gone.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    failure: Callable[[], str],
    interval: float = 0.02,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ProcessError(failure())
        time.sleep(interval)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1; a child process can bind it right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Return once something accepts connections on ``port``; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class AuthService:
    """``examples/auth_service.py`` as a child process on a port it picks itself."""

    def __init__(
        self,
        directory: Path,
        rules: Mapping[str, Any] | Path,
        *,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,  # (certificate, key)
        test_answers: bool = False,
        path: str = "/muc/join",
        python: str = sys.executable,
    ) -> None:
        self.directory = directory
        self.rules = rules
        self.token = token
        self.tls = tls
        self.test_answers = test_answers
        self.path = path
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""  # the join URL, known once started
        self.port = 0

    @property
    def log_path(self) -> Path:
        return self.directory / "auth_service.log"

    def log_text(self) -> str:
        return read_text(self.log_path)

    def set_rules(self, rules: Mapping[str, Any]) -> None:
        """New rules for the running service: it reads the file again on its next request."""
        if isinstance(self.rules, Path):
            raise ValueError("the service reads a rules file of the caller's")
        self.rules = rules
        path = self.directory / "rules.json"
        new = path.with_suffix(".new")
        new.write_text(json.dumps(rules, indent=2))
        new.replace(path)  # whole, never half-written when the service reads it

    def start(self, timeout: float = 10.0) -> str:
        """Start it and return the join URL it printed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.rules, Path):
            rules_path = self.rules
        else:
            rules_path = self.directory / "rules.json"
            rules_path.write_text(json.dumps(self.rules, indent=2))
        args = [self.python, str(AUTH_SERVICE), "--rules", str(rules_path), "--port", "0"]
        args += ["--path", self.path]
        if self.token is not None:
            token_file = self.directory / "token"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            args += ["--token-file", str(token_file)]
        if self.tls is not None:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if self.test_answers:
            args.append("--test-answers")
        offset = len(self.log_text())
        self.process = start_process(args, self.log_path, "auth_service")

        def listening() -> bool:
            for line in self.log_text()[offset:].splitlines():
                match = LISTENING.match(line.strip())
                if match:
                    self.url, self.port = match["url"], int(match["port"])
                    return True
            if self.process is not None and self.process.poll() is not None:
                raise ProcessError(
                    f"the auth service exited with status {self.process.returncode}:\n"
                    + tail(self.log_text()[offset:])
                )
            return False

        wait_until(
            listening,
            timeout,
            lambda: f"the auth service printed no 'listening on' line; see {self.log_path}",
        )
        return self.url

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    @property
    def base_url(self) -> str:
        return self.url[: -len(self.path)]

    def requests(self) -> list[dict[str, Any]]:
        """What mucauth asked so far (needs test_answers=True)."""
        with urllib.request.urlopen(self.base_url + "/requests", timeout=5) as response:
            return list(json.load(response)["requests"])

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests and the peak in flight per client (``--test-answers``' ``/stats`` page)."""
        with urllib.request.urlopen(self.base_url + "/stats", timeout=5) as response:
            return dict(json.load(response))


TAP_CONF = """\
; Written by {writer}; thrown away with its directory.
[component]
jid = {jid}
host = {host}
port = {port}
secret = {secret}
{component_options}
[muc_http_auth]
url = {url}
{http_options}
[log]
level = {log_level}
{extra}"""


def write_tap_conf(
    path: Path,
    *,
    jid: str,
    host: str,
    port: int,
    secret: str,
    url: str,
    component_options: Mapping[str, str] | None = None,
    http_options: Mapping[str, str] | None = None,
    sections: Mapping[str, Mapping[str, str]] | None = None,
    log_level: str = "info",
    writer: str = "examples/_stack.py",
) -> Path:
    """A tap.conf for one component link and one authorization URL.

    ``component_options`` are more ``[component]`` keys (``reconnect_max_delay``...);
    ``http_options`` more ``[muc_http_auth]`` keys (timeout, insecure, enabled_for...);
    ``sections`` adds whole sections (``{"muc": {...}}``).
    """

    def keys(values: Mapping[str, str] | None) -> str:
        return "".join(f"{k} = {v}\n" for k, v in (values or {}).items())

    extra = ""
    for name, values in (sections or {}).items():
        extra += f"\n[{name}]\n" + keys(values)
    path.write_text(
        TAP_CONF.format(
            writer=writer,
            jid=jid,
            host=host,
            port=port,
            secret=secret,
            url=url,
            component_options=keys(component_options),
            http_options=keys(http_options),
            log_level=log_level,
            extra=extra,
        )
    )
    return path


def twistd_command(python: str = sys.executable) -> list[str]:
    """twistd from the same environment as ``python`` (the venv that has mucauth installed)."""
    twistd = Path(python).parent / "twistd"
    if twistd.exists():
        return [str(twistd)]
    return [python, "-c", "from twisted.scripts.twistd import run; run()"]


def mucauth_command(config: Path, *options: str, python: str = sys.executable) -> list[str]:
    """``twistd -n --pidfile= [options] mucauth --config <config>``: in the foreground, with no
    pid file; ``options`` are more twistd options (``--logfile=...``), before the plugin name."""
    return [
        *twistd_command(python),
        "-n",
        "--pidfile=",
        *options,
        "mucauth",
        "--config",
        str(config),
    ]


class MucauthProcess:
    """``twistd -n mucauth --config <file>`` as a child process, logging to a file."""

    def __init__(self, directory: Path, config: Path, python: str = sys.executable) -> None:
        self.directory = directory
        self.config = config
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "mucauth.log"

    def log_text(self) -> str:
        return read_text(self.log_path)

    def command(self) -> list[str]:
        return mucauth_command(self.config, f"--logfile={self.log_path}", python=self.python)

    def start(self, connected: Callable[[], bool] | None = None, timeout: float = 15.0) -> None:
        """Start twistd; with ``connected``, wait until it says the component link is up."""
        # twistd writes its own log file; the console gets only what happens before that
        # (a usage error, an import error).
        self.process = start_process(
            self.command(), self.directory / "mucauth.console", "twistd mucauth", cwd=self.directory
        )
        if connected is not None:
            self.wait_connected(connected, timeout)

    def wait_connected(self, connected: Callable[[], bool], timeout: float = 15.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise ProcessError(
                    f"twistd mucauth exited with status {self.process.returncode}:\n"
                    + tail(read_text(self.directory / "mucauth.console") + self.log_text())
                )
            return connected()

        wait_until(
            ready,
            timeout,
            lambda: (
                f"mucauth did not connect to the XMPP server within {timeout} s:\n"
                + tail(self.log_text())
            ),
            interval=0.05,
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit status (twistd 26 reports -15 after a clean stop)."""
        process, self.process = self.process, None
        if process is None:
            return None
        stop_process(process, timeout)
        return process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def component_logins(prosody_log: str) -> int:
    """How many times Prosody accepted a component handshake (grows by one per reconnect)."""
    return prosody_log.count("External component successfully authenticated")
