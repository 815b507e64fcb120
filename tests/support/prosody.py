"""A throw-away Prosody (Debian's package) on loopback, for integration and end-to-end tests.

Tests that need it fail with a clear message when Prosody is missing: ``./dev.sh test`` installs
it. Nothing here skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.ports import free_port, wait_for_port

PROSODY = "/usr/bin/prosody"
PROSODYCTL = "/usr/bin/prosodyctl"

CONFIG = """\
-- Written by mucauth's test suite; thrown away with its directory.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {{ levels = {{ min = "{log_level}" }}, to = "file", filename = "{dir}/prosody.log" }} }}
run_as_root = true
daemonize = false
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
component_ports = {{ {component_port} }}
component_interface = "127.0.0.1"
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
modules_disabled = {{ "s2s" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
-- Tests log many clients in at once from one address.
limits = {{ c2s = {{ rate = "100mb/s" }} }}

VirtualHost "{domain}"

Component "{component_domain}"
    component_secret = "{component_secret}"
{extra_components}
"""


def require_prosody() -> None:
    if not (os.path.exists(PROSODY) and os.path.exists(PROSODYCTL)):
        raise RuntimeError(
            "Prosody is not installed (no /usr/bin/prosody): this test runs mucauth against a"
            " real Prosody. Run ./dev.sh test, which installs it with apt-get install prosody."
        )


class ProsodyServer:
    """One Prosody process with one virtual host and one component listener."""

    def __init__(
        self,
        directory: Path,
        *,
        domain: str = "localhost",
        component_domain: str = "rooms.localhost",
        component_secret: str = "component-secret",
        extra_components: str = "",
        log_level: str = "info",
    ) -> None:
        require_prosody()
        self.directory = directory
        self.domain = domain
        self.component_domain = component_domain
        self.component_secret = component_secret
        self.extra_components = extra_components
        self.log_level = log_level
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = directory / "prosody.cfg.lua"

    def start(self) -> None:
        for sub in ("data", "certs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG.format(
                dir=self.directory,
                log_level=self.log_level,
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                domain=self.domain,
                component_domain=self.component_domain,
                component_secret=self.component_secret,
                extra_components=self.extra_components,
            )
        )
        # Start-up errors (a bad config line) go to the console, not to the log file.
        self._console = open(self.directory / "prosody.console", "ab")
        self.process = subprocess.Popen(
            [PROSODY, "--config", str(self.config_path), "-F"],
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.c2s_port)
            wait_for_port(self.component_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"Prosody did not open its ports; see {self.log_path}") from None

    def register(self, user: str, password: str) -> None:
        config = str(self.config_path)
        subprocess.run(
            [PROSODYCTL, "--config", config, "register", user, self.domain, password],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        self._console.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        self.stop()
        time.sleep(0.1)
        self.start()

    @property
    def log_path(self) -> Path:
        return self.directory / "prosody.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def prosody_available() -> bool:
    return shutil.which("prosody") is not None or os.path.exists(PROSODY)
