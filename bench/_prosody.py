"""A throw-away Prosody tuned for load, not for features.

The test suite's Prosody (tests/support/prosody.py) is right for correctness tests but would
skew a benchmark: Prosody's built-in MUC keeps only 100 live rooms by default, locks new rooms
until they are configured, and Nagle's algorithm adds ~40 ms to back-to-back writes. This one
serves both targets of the benchmark from one process, so they share every cost but the MUC:

* ``muc.localhost``: Prosody's own MUC (``Component "…" "muc"``), no authorization;
* ``rooms.localhost`` (and more): component listeners where mucauth instances connect
  (Prosody takes one connection per component domain).

Accounts are written straight into Prosody's data directory: one ``prosodyctl register`` per
user costs ~30 ms, which adds up for a 200-occupant room.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO

from tests.support.ports import free_port, wait_for_port

PROSODY = "/usr/bin/prosody"

BUILTIN_MUC = "muc.localhost"
COMPONENT = "rooms.localhost"

CONFIG = """\
-- Written by mucauth's benchmark; thrown away with its directory.
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{dir}/prosody.log" }} }}
run_as_root = true
daemonize = false
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
component_ports = {{ {component_port} }}
component_interface = "127.0.0.1"
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
modules_disabled = {{ "s2s"; "offline" }}
modules_enabled = {{ "saslauth" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
-- Hundreds of clients log in at once from one address.
limits = {{ c2s = {{ rate = "1000mb/s" }}; component = {{ rate = "1000mb/s" }} }}
-- server_epoll's default keeps Nagle on: every reply after the first in a burst then waits
-- for the peer's delayed ACK (~40 ms), which would measure the kernel, not the MUC.
network_settings = {{ nagle = false; tcp_backlog = 1024 }}

VirtualHost "{domain}"

Component "{builtin_muc}" "muc"
    -- mucauth keeps rooms in memory only; with file storage Prosody writes and deletes three
    -- files for every temporary room it destroys, which would measure the disk.
    storage = "{muc_storage}"
    muc_room_locking = false
    muc_room_cache_size = 100000
    muc_tombstones = false
    muc_occupant_id = false

{components}"""

COMPONENT_BLOCK = """
Component "{domain}"
    component_secret = "{secret}"
"""


def _lua_string(value: str) -> str:
    """A Lua string literal for a value we generated ourselves (ASCII, no control chars)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BenchProsody:
    """One Prosody process: one virtual host, its built-in MUC, and mucauth's listener."""

    def __init__(
        self,
        directory: Path,
        *,
        components: tuple[str, ...] = (COMPONENT,),
        secret: str = "bench-secret",
        muc_storage: str = "memory",
    ) -> None:
        if not os.path.exists(PROSODY):
            raise RuntimeError("Prosody is not installed (/usr/bin/prosody): run ./dev.sh setup")
        self.directory = directory
        self.domain = "localhost"
        self.secret = secret
        self.components = components
        self.muc_storage = muc_storage
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = directory / "prosody.cfg.lua"
        self._console: IO[bytes] | None = None

    def add_accounts(self, users: list[str], password: str) -> None:
        """Write internal_plain accounts, the same file ``prosodyctl register`` writes.

        Only valid before start (or for users Prosody has not cached). Names must be plain
        lowercase ASCII so no path encoding applies.
        """
        accounts = self.directory / "data" / self.domain / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        body = f'return {{\n\t["password"] = {_lua_string(password)};\n}};\n'
        for user in users:
            if not user.isascii() or not user.replace("-", "").isalnum() or user != user.lower():
                raise ValueError(f"account name not safe for a file name: {user!r}")
            (accounts / f"{user}.dat").write_text(body)

    def start(self) -> None:
        for sub in ("data", "certs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG.format(
                dir=self.directory,
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                domain=self.domain,
                builtin_muc=BUILTIN_MUC,
                muc_storage=self.muc_storage,
                components="".join(
                    COMPONENT_BLOCK.format(domain=d, secret=self.secret) for d in self.components
                ),
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
            if self.components:  # without a Component, Prosody opens no component port
                wait_for_port(self.component_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"Prosody did not open its ports; see {self.directory}/prosody.console"
            ) from None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        stop_process_group(process)
        if self._console is not None:
            self._console.close()
            self._console = None


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the child's whole session, then SIGKILL what is left.

    Children are started with ``start_new_session=True`` so their process group id is their pid:
    signalling the group also reaches anything they spawned.
    """
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
