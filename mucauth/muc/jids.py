"""JIDs without repeated stringprep.

``JID(text)`` and ``JID(tuple=...)`` run nodeprep, nameprep and resourceprep on every part, each
time: tens of microseconds a part in pure Python. Profiling the join benchmark showed a join and
its leave building about thirty JIDs from parts that were already prepared (the room's own JID,
occupant addresses, the same sender again), a third of the component's CPU. Here:

- text that arrives again and again (senders, our own domain) is parsed once and kept in a
  bounded LRU cache, so memory stays flat whatever the number of distinct users;
- a JID or an address whose parts came out of stringprep already is assembled without preparing
  them a second time (stringprep is idempotent: the result is the same JID).

Cached JIDs are shared: like every ``JID`` in this package they are never mutated.
"""

from __future__ import annotations

from functools import lru_cache

from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmpp_stringprep import nodeprep, resourceprep

__all__ = [
    "domain_jid",
    "node_prepare",
    "occupant_address",
    "parse_jid",
    "prepared_jid",
    "resource_prepare",
]

# Sessions that talk to the service at once; beyond that the oldest are parsed again when they
# come back, which costs time, never correctness.
SENDER_CACHE_SIZE = 8192


@lru_cache(maxsize=SENDER_CACHE_SIZE)
def parse_jid(text: str) -> JID:
    """``JID(text)``, remembered; raises ``InvalidFormat`` as it does (failures are not cached)."""
    return JID(text)


@lru_cache(maxsize=64)
def domain_jid(host: str) -> JID:
    """The JID of a bare domain (the service's own, in practice), prepared once."""
    return JID(tuple=(None, host, None))


# For ASCII text the stringprep profiles reduce to a few rules (RFC 3920 appendices A and B):
# no ASCII character is mapped to nothing (B.1) or changed by NFKC, none is unassigned or
# right-to-left; nodeprep folds case (B.2) and refuses ASCII space and controls (C.1.1, C.2.1)
# and "&'/:<>@; resourceprep refuses only the controls. Room names and nicks are nearly always
# ASCII, and Twisted's pure-Python tables cost up to ~100 µs a name.
_NODE_REFUSED = frozenset(map(chr, range(0x21))) | frozenset("\"&'/:<>@\x7f")
_RESOURCE_REFUSED = frozenset(map(chr, range(0x20))) | frozenset("\x7f")


def node_prepare(text: str) -> str:
    """``nodeprep.prepare(text)``, the same result or the same ``UnicodeError``."""
    if text.isascii():
        if _NODE_REFUSED.isdisjoint(text):
            return text.lower()
        raise UnicodeError("Invalid character in a node")
    return str(nodeprep.prepare(text))


def resource_prepare(text: str) -> str:
    """``resourceprep.prepare(text)``, the same result or the same ``UnicodeError``."""
    if text.isascii():
        if _RESOURCE_REFUSED.isdisjoint(text):
            return text
        raise UnicodeError("Invalid character in a resource")
    return str(resourceprep.prepare(text))


def prepared_jid(user: str | None, host: str, resource: str | None = None) -> JID:
    """A JID from parts that already went through stringprep (a JID's parts, a prepared room
    name or nick): the same JID ``JID(tuple=...)`` would give, without preparing them again."""
    jid = JID.__new__(JID)
    jid.user = user or None
    jid.host = host
    jid.resource = resource or None
    return jid


def occupant_address(room: JID, nick: str) -> str:
    """``room@service/nick`` as text, from a room JID and a nick the room already prepared."""
    return f"{room.user}@{room.host}/{nick}"
