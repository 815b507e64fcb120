"""The synchronous slixmpp clients the end-to-end tests drive.

They live in ``examples/_xmpp.py`` because the demo (examples/demo.py), which must not import the
tests, scripts the same clients; this module is the name the tests use.
"""

from examples._xmpp import (
    ArchivePage,
    DiscoInfo,
    GroupchatMessage,
    JoinResult,
    ReceivedPresence,
    XMPPClient,
    XMPPTestError,
    live_client_threads,
)

__all__ = [
    "ArchivePage",
    "DiscoInfo",
    "GroupchatMessage",
    "JoinResult",
    "ReceivedPresence",
    "XMPPClient",
    "XMPPTestError",
    "live_client_threads",
]
