"""What every part of the service shares: the rooms, the clock, the way out, and refusals.

The rooms themselves are the registry's (``registry.py``): parts read ``Core.rooms`` and
change rooms through its methods. The service is split by concern (``join.py``,
``presence.py``, ``messages.py``, ``iq.py``, ``disco.py``); each part holds a :class:`Core`
instead of a reference to the Wokkel handler, so a part can be read, and tested, without the
stream plumbing around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.log_setup import LevelLogger
from mucauth.muc import errors, stanzas
from mucauth.muc.directory import RoomIndex
from mucauth.muc.incoming import Context
from mucauth.muc.registry import RoomRegistry
from mucauth.muc.room import Occupant, Room
from mucauth.settings import ErrorCondition, MUCSettings
from mucauth.store.base import IRoomStore

__all__ = ["LOG_NAMESPACE", "Context", "Core"]

# Every part logs under the service's name, the one operators filter on (and always did).
LOG_NAMESPACE = "mucauth.muc.service.MUCService"


class Core:
    """The rooms and the service's means of answering, shared by its parts."""

    def __init__(
        self,
        settings: MUCSettings,
        clock: IReactorTime,
        send: Callable[[domish.Element], None],
        log_level: LogLevel = LogLevel.debug,
        store: IRoomStore | None = None,
    ) -> None:
        """``store`` keeps persistent rooms; an in-memory one stands in for None."""
        self.settings = settings
        self.clock = clock
        self.send = send
        # One logger for the whole service (MUCService.log), whichever part speaks; events
        # below the configured level are dropped before they are built.
        self.log: Logger = LevelLogger(namespace=LOG_NAMESPACE, level=log_level)
        # Every room that exists, live or stored: the room list and the bounds on creating.
        self.index = RoomIndex()
        # The rooms in memory, read by every part, changed only through the registry's methods.
        self.rooms = RoomRegistry(self, store)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def sessions(self, room: Room) -> Iterator[tuple[Occupant, JID]]:
        """Every session in ``room``, with its occupant (a copy: sending may change nothing,
        but a caller may remove a session while iterating)."""
        for occupant in room:
            for session in list(occupant.sessions):
                yield occupant, session

    def refuse(self, stanza: domish.Element, context: Context, error: errors.MUCError) -> None:
        """Answer ``stanza`` with the error ``error`` maps to, unless it must not be answered."""
        self.send_error(
            stanza, context, stanzas.condition_for(error), error.text, detail=error.detail
        )

    def send_error(
        self,
        stanza: domish.Element,
        context: Context,
        condition: ErrorCondition,
        text: str | None,
        *,
        detail: str | None = None,
    ) -> None:
        kind = stanza.getAttribute("type")
        if kind == "error" or (stanza.name == "iq" and kind == "result"):
            return  # never answer an error or a response
        if stanza.name == "presence" and kind == "unavailable":
            return  # the user is leaving: nothing to tell them
        address = context.address
        if stanza.name == "presence":
            reply = stanzas.join_error(
                stanza, condition, text, room=address.room, sender=address.reply_from, detail=detail
            )
        else:
            reply = stanzas.error_reply(
                stanza, condition, text, by=address.room, sender=address.reply_from, detail=detail
            )
        self.send(reply)
