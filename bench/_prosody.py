"""A throw-away Prosody tuned for load, not for features.

The test suite's Prosody (examples/_prosody.py, the runner used here too) is right for
correctness tests but would skew a benchmark: Prosody's built-in MUC keeps only 100 live rooms
by default, locks new rooms until they are configured, and Nagle's algorithm adds ~40 ms to
back-to-back writes. This one serves both targets of the benchmark from one process, so they
share every cost but the MUC:

* ``muc.localhost``: Prosody's own MUC (``Component "…" "muc"``), no authorization;
* ``rooms.localhost`` (and more): component listeners where mucauth instances connect
  (Prosody takes one connection per component domain).

Accounts are written straight into Prosody's data directory (``add_accounts``): one
``prosodyctl register`` per user costs ~30 ms, which adds up for a 200-occupant room.
"""

from __future__ import annotations

from pathlib import Path

from examples._prosody import ProsodyServer

BUILTIN_MUC = "muc.localhost"
COMPONENT = "rooms.localhost"

SETTINGS = {
    "modules_disabled": '{ "s2s"; "offline" }',
    "modules_enabled": '{ "saslauth" }',
    # Hundreds of clients log in at once from one address.
    "limits": '{ c2s = { rate = "1000mb/s" }; component = { rate = "1000mb/s" } }',
    # server_epoll's default keeps Nagle on: every reply after the first in a burst then waits
    # for the peer's delayed ACK (~40 ms), which would measure the kernel, not the MUC.
    "network_settings": "{ nagle = false; tcp_backlog = 1024 }",
}

BUILTIN_MUC_CONFIG = """
Component "{domain}" "muc"
    -- mucauth keeps rooms in memory only; with file storage Prosody writes and deletes three
    -- files for every temporary room it destroys, which would measure the disk.
    storage = "{storage}"
    muc_room_locking = false
    muc_room_cache_size = 100000
    muc_tombstones = false
    muc_occupant_id = false
"""


class BenchProsody(ProsodyServer):
    """One Prosody process: one virtual host, its built-in MUC, and mucauth's listeners."""

    def __init__(
        self,
        directory: Path,
        *,
        components: tuple[str, ...] = (COMPONENT,),
        secret: str = "bench-secret",
        muc_storage: str = "memory",
    ) -> None:
        super().__init__(
            directory,
            component_domain=components[0] if components else None,
            component_secret=secret,
            extra_components={domain: secret for domain in components[1:]},
            log_level="warn",
            settings=SETTINGS,
            config_tail=BUILTIN_MUC_CONFIG.format(domain=BUILTIN_MUC, storage=muc_storage),
            writer="mucauth's benchmark",
            install_hint="Run ./dev.sh bench, which installs it with apt-get install prosody.",
        )
