"""A throw-away Prosody (Debian's package) on loopback, for the demo (``examples/demo.py``), the
tests (through ``tests/support/prosody.py``) and the benchmark (``bench/_prosody.py``).

One virtual host, and component listeners for mucauth: ``component_domain`` and any
``extra_components`` (Prosody takes one connection per component domain). The demo and the
benchmark adjust it with ``settings`` (global options, as Lua source, over ``SETTINGS``) and
``config_tail`` (more Lua at the end, e.g. a built-in MUC component). It has the same interface
as ``EjabberdServer`` (examples/_ejabberd.py), so a test can run one scenario against either.

When Prosody is missing it raises with a message saying how to install it; nothing here skips.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

# examples/demo.py runs with examples/ on sys.path; the tests and the benchmark import the package.
if __package__:
    from ._stack import ProcessError, free_port, read_text, stop_process, tail, wait_for_port
else:
    from _stack import ProcessError, free_port, read_text, stop_process, tail, wait_for_port  # type: ignore[no-redef]  # same module

PROSODY = "/usr/bin/prosody"
PROSODYCTL = "/usr/bin/prosodyctl"

INSTALL_HINT = "Run ./dev.sh test, which installs it with apt-get install prosody."

# Global options, as Lua source; ``settings`` replaces or adds entries.
SETTINGS = {
    "modules_disabled": '{ "s2s" }',
    "modules_enabled": '{ "roster"; "saslauth"; "disco"; "ping"; "posix" }',
    # On loopback without certificates: plain connections and passwords.
    "c2s_require_encryption": "false",
    "allow_unencrypted_plain_auth": "true",
    "authentication": '"internal_plain"',
    # Tests log many clients in at once from one address.
    "limits": '{ c2s = { rate = "100mb/s" } }',
}

CONFIG = """\
-- Written by {writer}; thrown away with its directory.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {{ levels = {{ min = "{log_level}" }}, to = "file", filename = "{dir}/prosody.log" }} }}
run_as_root = true -- harmless when not root; without it Prosody hangs when it is
daemonize = false
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
component_ports = {{ {component_port} }}
component_interface = "127.0.0.1"
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
{settings}
VirtualHost "{domain}"
{components}{config_tail}"""

COMPONENT = """
Component "{domain}"
    component_secret = {secret}
"""


def lua_string(value: str) -> str:
    """A Lua string literal for a value we chose ourselves (no control characters)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def require_prosody(hint: str = INSTALL_HINT) -> None:
    if not (Path(PROSODY).exists() and Path(PROSODYCTL).exists()):
        raise ProcessError(f"Prosody is not installed (no {PROSODY}). {hint}")


class ProsodyServer:
    """One Prosody process with one virtual host and its component listeners.

    ``component_domain`` None: no component at all (Prosody then opens no component port).
    Ports not given are chosen at run time.
    """

    def __init__(
        self,
        directory: Path,
        *,
        domain: str = "localhost",
        component_domain: str | None = "rooms.localhost",
        component_secret: str = "component-secret",
        extra_components: Mapping[str, str] | None = None,
        log_level: str = "info",
        settings: Mapping[str, str] | None = None,
        config_tail: str = "",
        c2s_port: int | None = None,
        component_port: int | None = None,
        writer: str = "mucauth's test suite",
        install_hint: str = INSTALL_HINT,
    ) -> None:
        require_prosody(install_hint)
        self.directory = directory
        self.domain = domain
        self.component_domain = component_domain
        self.component_secret = component_secret
        self.extra_components = dict(extra_components or {})
        self.log_level = log_level
        self.settings = {**SETTINGS, **(settings or {})}
        self.config_tail = config_tail
        self.writer = writer
        self.c2s_port = c2s_port or free_port()
        self.component_port = component_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = directory / "prosody.cfg.lua"

    @property
    def components(self) -> dict[str, str]:
        """Every component domain mucauth may connect as, with its secret."""
        if self.component_domain is None:
            return dict(self.extra_components)
        return {self.component_domain: self.component_secret, **self.extra_components}

    # -- life cycle --------------------------------------------------------------------------

    def write_config(self) -> None:
        self.config_path.write_text(
            CONFIG.format(
                writer=self.writer,
                dir=self.directory,
                log_level=self.log_level,
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                settings="".join(f"{name} = {value}\n" for name, value in self.settings.items()),
                domain=self.domain,
                components="".join(
                    COMPONENT.format(domain=domain, secret=lua_string(secret))
                    for domain, secret in self.components.items()
                ),
                config_tail=self.config_tail,
            )
        )

    def start(self, timeout: float = 10.0) -> None:
        for sub in ("data", "certs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.write_config()
        # Start-up errors (a bad config line) go to the console, not to the log file.
        with open(self.console_path, "ab") as console:
            self.process = subprocess.Popen(
                [PROSODY, "--config", str(self.config_path), "-F"],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.c2s_port, timeout)
            if self.components:
                wait_for_port(self.component_port, timeout)
        except TimeoutError:
            self.stop()
            raise ProcessError(
                f"Prosody did not open its ports; see {self.log_path} and {self.console_path}:\n"
                + tail(read_text(self.console_path) + self.log_text())
            ) from None

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout)

    def restart(self) -> None:
        """Stop and start on the same ports; accounts survive (same data folder)."""
        self.stop()
        time.sleep(0.1)
        self.start()

    # -- users ---------------------------------------------------------------------------------

    def register(self, user: str, password: str) -> None:
        """Create ``user`` (or reset its password) through ``prosodyctl``: ~30 ms a user."""
        config = str(self.config_path)
        subprocess.run(
            [PROSODYCTL, "--config", config, "register", user, self.domain, password],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def add_accounts(self, accounts: Mapping[str, str]) -> None:
        """Write internal_plain accounts (user: password), the files ``prosodyctl register``
        writes: much quicker for many users.

        Only valid before start (or for users Prosody has not cached). Names must be plain
        lowercase ASCII so no path encoding applies.
        """
        folder = self.directory / "data" / self.domain / "accounts"
        folder.mkdir(parents=True, exist_ok=True)
        for user, password in accounts.items():
            if not user.isascii() or not user.replace("-", "").isalnum() or user != user.lower():
                raise ValueError(f"account name not safe for a file name: {user!r}")
            body = f'return {{\n\t["password"] = {lua_string(password)};\n}};\n'
            (folder / f"{user}.dat").write_text(body)

    # -- observation ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "prosody.log"

    @property
    def console_path(self) -> Path:
        return self.directory / "prosody.console"

    def log_text(self) -> str:
        return read_text(self.log_path)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
