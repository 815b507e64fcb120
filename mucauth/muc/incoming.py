"""Reading what clients send: the address a stanza is for, and a join's ``<history/>`` wish.

Pure functions over parsed stanzas; the service decides what to do with the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel.muc import NS_MUC

from mucauth.muc import errors
from mucauth.muc.room import HistoryOptions, prepare_nick, prepare_room_name
from mucauth.settings import MUCSettings

_MAX_HISTORY_NUMBER = 10**9  # larger values in <history/> mean "no limit"


@dataclass(frozen=True)
class Address:
    """The ``to`` of a stanza, split into what the service can act on.

    ``room`` and ``nick`` are prepped. ``error`` says why the room or nick part is unusable; it is
    raised only by the handlers that need that part (a leave to a bad nick still leaves).
    """

    service: JID
    room: JID | None = None
    nick: str | None = None
    nick_changed: bool = False  # stringprep changed what the user wrote: status 210
    error: errors.MUCError | None = None
    has_resource: bool = False

    @property
    def reply_from(self) -> str:
        """A valid address of ours to answer from: the most specific part that parsed."""
        if self.room is None:
            return self.service.full()
        if self.nick is None:
            return self.room.full()
        return JID(tuple=(self.room.user, self.room.host, self.nick)).full()

    @property
    def is_service(self) -> bool:
        return self.room is None and self.error is None

    @property
    def is_room(self) -> bool:
        return self.room is not None and not self.has_resource

    def require_room(self) -> JID:
        if self.room is None:
            raise self.error or errors.BadRoomName("A room name is required")
        return self.room

    def require_nick(self) -> str:
        if self.nick is None:
            raise self.error or errors.BadNick("A nickname is required")
        return self.nick


def parse_address(raw: str, settings: MUCSettings) -> Address | None:
    """Split a ``to`` into service, room and nick; None when not even the domain is valid."""
    bare, slash, resource = raw.partition("/")
    node, at, host = bare.rpartition("@")
    try:
        service = JID(tuple=(None, host, None))
    except InvalidFormat:
        return None
    if not at:
        return Address(service, has_resource=bool(slash))
    try:
        name = prepare_room_name(node, settings.max_room_name_length)
    except errors.MUCError as e:
        return Address(service, error=e, has_resource=bool(slash))
    room = JID(tuple=(name, service.host, None))
    if not resource:
        return Address(service, room)
    try:
        nick = prepare_nick(resource, settings.max_nick_length)
    except errors.MUCError as e:
        return Address(service, room, error=e, has_resource=True)
    return Address(service, room, nick, nick_changed=nick != resource, has_resource=True)


def _history_number(value: str | None) -> int | None:
    """A ``<history/>`` count, or None for absent or malformed (ignored, not refused)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    return min(int(value), _MAX_HISTORY_NUMBER)


def _history_since(value: str | None) -> datetime | None:
    if not value or len(value) > 64:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def history_options(presence: domish.Element) -> HistoryOptions:
    for x in presence.elements(NS_MUC, "x"):
        for history in x.elements(NS_MUC, "history"):
            return HistoryOptions(
                max_stanzas=_history_number(history.getAttribute("maxstanzas")),
                max_chars=_history_number(history.getAttribute("maxchars")),
                seconds=_history_number(history.getAttribute("seconds")),
                since=_history_since(history.getAttribute("since")),
            )
    return HistoryOptions()


def child(stanza: domish.Element, name: str) -> domish.Element | None:
    """A child in the stanza's own namespace (``<body/>``, ``<subject/>``, ``<error/>``)."""
    for element in stanza.elements():
        if element.name == name and element.uri == stanza.uri:
            return element
    return None


def child_ns(element: domish.Element | None, uri: str, name: str) -> domish.Element | None:
    if element is None:
        return None
    for found in element.elements(uri, name):
        return found
    return None
