"""No occupant outlives its session: sessions that have gone quiet are asked if they are there.

The XMPP server tells the room when a session ends, but only for rooms it remembers the session
was in; one that forgot (Prosody drops a room from its list when the client sends it an error
presence) never will, and the occupant would stay for ever, with the user's next session merged
into it. So every session in a room that has sent the service nothing for ``[muc] ping_after``
seconds gets an XEP-0199 ping to its real JID, from the room:

- a result: the session is there;
- ``service-unavailable``: ambiguous, since a server says it for a session that is gone and a
  client without ping support says it for the ping; a disco#info request, which every client
  answers, decides;
- an error of :data:`SESSION_GONE` (a server's "no such session"), or no answer within
  ``[muc] ping_timeout`` seconds: gone, removed from every room it is in with status 333, as
  when the room's own stanzas bounce;
- any other error: the session is there (only an endpoint refuses that way).

Anything the session sends counts as a sign of life, so only quiet sessions are asked, at
most once per ``ping_after``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.protocols.jabber.xmlstream import TimeoutError as IQTimeoutError
from twisted.words.xish import domish
from wokkel.disco import NS_DISCO_INFO
from wokkel.generic import Request
from wokkel.ping import NS_PING

from mucauth.muc.core import Core
from mucauth.muc.jids import parse_jid
from mucauth.muc.room import Room

__all__ = ["SESSION_GONE", "Liveness", "Probe"]

# Pings sent per sweep at most; the others wait for the next sweep (a service that just
# reconnected may find every session quiet at once).
MAX_PROBES_PER_SWEEP = 500
# A sweep runs this often (seconds), or more often when ``ping_after`` is shorter.
SWEEP_INTERVAL = 60.0

# Error conditions that mean "no such session": what servers answer, or bounce with, when the
# session is gone. The room removes an occupant whose session bounces a message with one of
# them too (presence.py).
SESSION_GONE = frozenset(
    {
        "gone",
        "item-not-found",
        "recipient-unavailable",
        "redirect",
        "remote-server-not-found",
        "remote-server-timeout",
        "service-unavailable",
    }
)
_AMBIGUOUS = "service-unavailable"


class Probe(Request):
    """One question to a session: an XEP-0199 ping, or the disco#info that follows up an
    ambiguous answer to it. Wokkel tracks the answer (``XMPPHandler.request``); its own ping
    client sends without tracking, and its stanza ids are a counter anyone could guess, so the
    id here is random."""

    def __init__(self, payload: tuple[str, str], recipient: JID, sender: JID, timeout: float):
        super().__init__(recipient=recipient, sender=sender, stanzaType="get")
        self.payload = payload
        self.timeout = timeout
        self.stanzaID = "probe-" + secrets.token_urlsafe(12)

    def toElement(self) -> domish.Element:
        element = super().toElement()
        element.addElement(self.payload)
        return element


PING = (NS_PING, "ping")
DISCO_INFO = (NS_DISCO_INFO, "query")


class Liveness:
    """Remembers when each session last spoke, and asks the quiet ones."""

    def __init__(
        self,
        core: Core,
        request: Callable[[Request], Deferred[domish.Element]],
        remove: Callable[[JID, str], None],
    ) -> None:
        """``request`` sends an iq and tracks its answer (the Wokkel handler's); ``remove``
        takes a gone session out of every room, with the reason for the log."""
        self._core = core
        self._request = request
        self._remove = remove
        self._last_seen: dict[JID, float] = {}
        self._asking: set[JID] = set()
        self._loop: LoopingCall | None = None

    def seen(self, session: JID) -> None:
        """``session`` sent something: it is there now (called for every stanza)."""
        self._last_seen[session] = self._core.clock.seconds()

    def start(self) -> None:
        after = self._core.settings.ping_after
        if after <= 0 or self._loop is not None:
            return
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = self._core.clock
        self._loop.start(min(SWEEP_INTERVAL, max(after / 4, 1.0)), now=False)

    def stop(self) -> None:
        """The link is gone: so are the rooms, and the questions' answers."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._last_seen.clear()
        self._asking.clear()

    def sweep(self) -> None:
        """Ask every session quiet for ``ping_after`` seconds; forget sessions in no room."""
        settings = self._core.settings
        after = settings.ping_after
        if after <= 0:
            return
        now = self._core.clock.seconds()
        rooms: dict[JID, Room] = {}  # a session, and one room it is in (to ask from)
        for room in self._core.rooms.values():
            for _, session in self._core.sessions(room):
                rooms.setdefault(session, room)
        last_seen = self._last_seen
        known = {session: last_seen.get(session, now) for session in rooms}
        last_seen.clear()
        last_seen.update(known)
        asked = 0
        for session, seen_at in known.items():
            if asked >= MAX_PROBES_PER_SWEEP:
                break
            if now - seen_at >= after and session not in self._asking:
                asked += 1
                self._ask(session, rooms[session].jid, PING)

    # -- one question

    def _ask(self, session: JID, room: JID, payload: tuple[str, str]) -> None:
        self._asking.add(session)
        probe = Probe(payload, session, room, self._core.settings.ping_timeout)
        d = self._request(probe)
        d.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(session,),
            errbackArgs=(session, room, payload),
        )

    def _answered(self, response: domish.Element, session: JID) -> None:
        if not _from(response, session):
            self._gone(session, "an answer from another address")
            return
        self._alive(session)

    def _failed(self, failure: Failure, session: JID, room: JID, payload: tuple[str, str]) -> None:
        if failure.check(IQTimeoutError):
            timeout = self._core.settings.ping_timeout
            self._gone(session, f"no answer in {timeout:g} s")
            return
        error = failure.check(StanzaError) and failure.value
        if not isinstance(error, StanzaError):
            # The link went away (ConnectionLost and the like): the rooms went with it.
            self._asking.discard(session)
            return
        stanza = getattr(error, "stanza", None)
        if stanza is not None and not _from(stanza, session):
            self._gone(session, "an answer from another address")
        elif error.condition == _AMBIGUOUS and payload == PING:
            self._ask(session, room, DISCO_INFO)
        elif error.condition in SESSION_GONE:
            self._gone(session, error.condition)
        else:
            self._alive(session)

    def _alive(self, session: JID) -> None:
        self._asking.discard(session)
        self.seen(session)

    def _gone(self, session: JID, why: str) -> None:
        self._asking.discard(session)
        self._last_seen.pop(session, None)
        self._remove(session, why)


def _from(stanza: domish.Element, session: JID) -> bool:
    """Did the session itself (or its server, on its behalf) answer?"""
    raw = stanza.getAttribute("from")
    try:
        return raw is not None and parse_jid(raw) == session
    except (InvalidFormat, UnicodeError):
        return False
