"""A throw-away ejabberd (Debian's package) on loopback, for the demo (``examples/demo.py
--server ejabberd``), the tests (through ``tests/support/ejabberd.py``) and ``bench/ejabberd.py``.

It has the same interface as the tests' ``ProsodyServer`` (tests/support/prosody.py), so a test
can run the same scenario against either server. When ejabberd is missing it raises with a
message saying how to install it; nothing here skips.

Three choices keep it fast and leave nothing behind:

* ``erl`` is exec'ed directly (the PID we hold is the Erlang VM itself), not through
  ``ejabberdctl``: ``ejabberdctl foreground`` runs the VM as a child of a shell (and, as root,
  through ``su`` to the ``ejabberd`` user, which cannot write a root-owned temp folder). SIGTERM to
  the VM stops ejabberd in about a second.
* Erlang distribution listens on a port chosen at run time and no epmd is started, so parallel
  servers never meet each other or a system ejabberd.
* Users are registered through ``mod_http_api`` on a loopback HTTP listener (a few ms each):
  ``ejabberdctl register`` boots a second Erlang VM per call (about a second).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

# examples/demo.py runs with examples/ on sys.path; the tests and the benchmark import the package.
if __package__:
    from ._stack import ProcessError, free_port, read_text, tail
else:
    from _stack import ProcessError, free_port, read_text, tail  # type: ignore[no-redef]  # same module

ERL = "/usr/bin/erl"
# Where Debian installs ejabberd's Erlang applications (ejabberdctl sets the same ERL_LIBS).
ERL_LIBS = "/usr/lib/x86_64-linux-gnu"

CONFIG = """\
# Written by mucauth's test suite; thrown away with its directory.
hosts: [{domain}]
loglevel: {log_level}
# Debug logs of many clients would otherwise be cut to 500 lines a second.
log_burst_limit_count: 100000
log_rotate_count: 0
auth_method: internal
auth_password_format: plain
listen:
  - port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: false
    # The default backlog (5) refuses connections when a test logs many clients in at once.
    backlog: 1024
  - port: {component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    backlog: 64
    hosts:
{component_hosts}
  - port: {http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
api_permissions:
  "loopback admin":
    who:
      ip: 127.0.0.1/8
    what: "*"
{balancing}
modules:
  # Without mod_roster a client's presence subscription crashes its session.
  mod_roster: {{}}
  mod_ping: {{}}
  mod_disco: {{}}
  mod_http_api: {{}}
  # change_password, used to reset a registered user's password
  mod_admin_extra: {{}}
"""

# What ejabberd logs (at info) once a listener really accepts connections, followed by its port.
ACCEPTING = "Start accepting TCP connections at 127.0.0.1:"
# What ejabberd logs (at info) when it accepts a component's handshake; one line per link.
COMPONENT_LOGIN = "Accepted external component handshake authentication for "


INSTALL_HINT = "Run ./dev.sh test, which installs it with apt-get install ejabberd."


def require_ejabberd(hint: str = INSTALL_HINT) -> None:
    if not (os.path.exists(ERL) and any(Path(ERL_LIBS).glob("ejabberd-*"))):
        raise ProcessError(f"ejabberd is not installed (no {ERL_LIBS}/ejabberd-*). {hint}")


class EjabberdError(ProcessError):
    """ejabberd failed to start or refused an API call; the message says where to look."""


class EjabberdServer:
    """One ejabberd VM with one virtual host and one component listener.

    ``component_number`` turns on ``domain_balancing`` (``bare_destination``) for the component
    domain: up to that many mucauth processes connect with the same JID and secret, and every
    stanza of one room reaches the same process. ``extra_components`` maps further component
    domains to their secrets. Ports not given are chosen at run time.
    """

    def __init__(
        self,
        directory: Path,
        *,
        domain: str = "localhost",
        component_domain: str = "rooms.localhost",
        component_secret: str = "component-secret",
        component_number: int | None = None,
        extra_components: Mapping[str, str] | None = None,
        log_level: str = "info",
        c2s_port: int | None = None,
        component_port: int | None = None,
        install_hint: str = INSTALL_HINT,
    ) -> None:
        require_ejabberd(install_hint)
        self.directory = directory
        self.domain = domain
        self.component_domain = component_domain
        self.component_secret = component_secret
        self.component_number = component_number
        self.extra_components = dict(extra_components or {})
        self.log_level = log_level
        self.c2s_port = c2s_port or free_port()
        self.component_port = component_port or free_port()
        self.http_port = free_port()
        self.dist_port = free_port()
        self.node = f"mucauth-test-{self.dist_port}@localhost"
        self.cookie = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = directory / "ejabberd.yml"
        self._accounts: dict[str, str] = {}  # registered at every start

    # -- life cycle --------------------------------------------------------------------------

    def write_config(self) -> None:
        domains = {self.component_domain: self.component_secret, **self.extra_components}
        hosts = "".join(
            f"      {json.dumps(name)}:\n        password: {json.dumps(secret)}\n"
            for name, secret in domains.items()
        )
        balancing = ""
        if self.component_number is not None:
            # bare_destination without component_number crashes every handshake.
            balancing = (
                "domain_balancing:\n"
                f"  {json.dumps(self.component_domain)}:\n"
                "    type: bare_destination\n"
                f"    component_number: {self.component_number}\n"
            )
        self.config_path.write_text(
            CONFIG.format(
                domain=self.domain,
                log_level=self.log_level,
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                component_hosts=hosts.rstrip("\n"),
                http_port=self.http_port,
                balancing=balancing,
            )
        )

    def command(self) -> list[str]:
        return [
            ERL,
            "-sname",
            self.node,
            "-setcookie",
            self.cookie,
            # Distribution on our own port, no epmd: nothing shared with other VMs.
            "-erl_epmd_port",
            str(self.dist_port),
            "-start_epmd",
            "false",
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
            "-noinput",
            "-mnesia",
            "dir",
            json.dumps(str(self.directory / "spool")),
            "-s",
            "ejabberd",
        ]

    def start(self, timeout: float = 30.0) -> None:
        for sub in ("spool", "logs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.write_config()
        env = {
            **os.environ,
            "EJABBERD_CONFIG_PATH": str(self.config_path),
            "EJABBERD_LOG_PATH": str(self.log_path),
            "ERL_LIBS": ERL_LIBS,
            "ERL_DIST_PORT": str(self.dist_port),
            "ERL_CRASH_DUMP": str(self.directory / "logs" / "erl_crash.dump"),
        }
        offset = len(self.log_text())
        # Start-up errors (a bad config line, a busy port) go to the console as well as the log.
        self._console = open(self.console_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.directory,
            env=env,
        )
        # An open port is not enough: ejabberd binds its listeners before it accepts on them
        # (a connection made in between waits in the backlog), so wait for its log to say so.
        wanted = [f"{ACCEPTING}{port} " for port in self.ports()]

        def ready() -> bool:
            text = self.log_text()[offset:]
            return all(line in text for line in wanted)

        deadline = time.monotonic() + timeout
        while not ready():
            status = self.process.poll()
            if status is not None or time.monotonic() > deadline:
                self.stop()
                raise EjabberdError(
                    f"ejabberd did not start accepting on its ports (exit status {status});"
                    f" see {self.log_path} and {self.console_path}:\n"
                    + tail(read_text(self.console_path) + self.log_text()[offset:])
                )
            time.sleep(0.02)
        for user, password in self._accounts.items():
            self.register(user, password)

    def ports(self) -> tuple[int, int, int]:
        return (self.c2s_port, self.component_port, self.http_port)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        self._console.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the VM itself: ejabberd stops in ~1 s
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:  # the VM's helpers (erl_child_setup) share its session
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()

    def restart(self) -> None:
        """Stop and start on the same ports; registered users survive (same spool)."""
        self.stop()
        time.sleep(0.1)
        self.start()

    # -- users ---------------------------------------------------------------------------------

    def api(self, command: str, arguments: Mapping[str, object], timeout: float = 10.0) -> object:
        """Call one ejabberd API command (mod_http_api) and return its decoded JSON answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/{command}",
            data=json.dumps(arguments).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            raise EjabberdError(f"ejabberd API {command} answered {e.code}: {body}") from None

    def register(self, user: str, password: str) -> None:
        """Create ``user``, or reset its password as ``prosodyctl register`` does."""
        try:
            self.api("register", {"user": user, "host": self.domain, "password": password})
        except EjabberdError as e:
            if "already registered" not in str(e):
                raise
            self.api("change_password", {"user": user, "host": self.domain, "newpass": password})

    def add_accounts(self, accounts: Mapping[str, str]) -> None:
        """Accounts (user: password) that exist once the server has started, as with
        ``ProsodyServer.add_accounts``; ejabberd's database is its own, so they are registered
        through the API right after start."""
        self._accounts.update(accounts)
        if self.running:
            for user, password in accounts.items():
                self.register(user, password)

    # -- observation ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def console_path(self) -> Path:
        return self.directory / "ejabberd.console"

    @property
    def log_path(self) -> Path:
        return self.directory / "logs" / "ejabberd.log"

    def log_text(self) -> str:
        return read_text(self.log_path)

    def component_logins(self, since: int = 0) -> int:
        """How many component handshakes ejabberd accepted (from log offset ``since``)."""
        return self.log_text()[since:].count(COMPONENT_LOGIN)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
