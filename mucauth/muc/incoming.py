"""Reading what clients send: the address a stanza is for, and a join's ``<history/>`` wish.

Pure functions over parsed stanzas; the service decides what to do with the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel.muc import NS_MUC

from mucauth.muc import errors
from mucauth.muc.jids import domain_jid, occupant_address, parse_jid, prepared_jid
from mucauth.muc.room import HistoryOptions, prepare_nick, prepare_room_name
from mucauth.settings import MUCSettings

_MAX_HISTORY_NUMBER = 10**9  # larger values in <history/> mean "no limit"
MAX_JID_PART = 1023  # RFC 7622 section 3: octets in each of localpart, domainpart, resourcepart
# A character is at most 4 octets in UTF-8: text this short has no part over MAX_JID_PART, which
# spares every ordinary stanza the splitting and encoding of its addresses.
_ALWAYS_SHORT = MAX_JID_PART // 4


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
        return occupant_address(self.room, self.nick)

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


@dataclass
class Context:
    """Who sent a stanza and where to: parsed once, by the service, for every part."""

    sender: JID
    address: Address


# What handles one kind of stanza once its context is known (presence, message, iq).
Handler = Callable[[domish.Element, Context], None]


@dataclass(frozen=True)
class Held:
    """A stanza waiting for something before its handler may see it: its sender's join to
    be decided (``join.py``), or its room to be read from the store (``persist.py``)."""

    stanza: domish.Element
    context: Context
    handler: Handler


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def split_jid(raw: str) -> tuple[str | None, str, str | None]:
    """(localpart, domainpart, resourcepart) of a JID's text, as written: no checks, no prep."""
    bare, slash, resource = raw.partition("/")
    node, at, host = bare.rpartition("@")
    return (node if at else None, host, resource if slash else None)


def oversized_part(raw: str) -> str | None:
    """The name of the first part of ``raw`` longer than RFC 7622 allows, else None.

    Stringprep costs about 9 ms per KB and runs on the reactor thread: a megabyte address would
    stall every room for seconds, so the length is checked before any parsing.
    """
    if len(raw) <= _ALWAYS_SHORT:
        return None
    for name, part in zip(("localpart", "domainpart", "resourcepart"), split_jid(raw), strict=True):
        if part is not None and _octets(part) > MAX_JID_PART:
            return name
    return None


def oversized_domain(raw: str) -> str | None:
    """``"domainpart"`` when the domain of ``raw`` is too long, else None.

    A ``to`` is checked only for its domain: an oversized room name or nick is refused with an
    answer by :func:`parse_address`, an oversized domain cannot even be answered from.
    """
    if len(raw) <= _ALWAYS_SHORT:
        return None
    return "domainpart" if _octets(split_jid(raw)[1]) > MAX_JID_PART else None


def parse_sender(raw: str) -> JID | None:
    """The ``from`` of a stanza as a JID, or None when it is not a valid one.

    Twisted reads ``@example.org`` as the server ``example.org``; RFC 7622 calls an empty
    localpart invalid, and the gate must never be asked about an address nobody has.
    """
    if oversized_part(raw) is not None:
        return None
    node, _host, resource = split_jid(raw)
    if node == "" or resource == "":
        return None
    try:
        return parse_jid(raw)
    except InvalidFormat:
        return None


def parse_address(raw: str, settings: MUCSettings) -> Address | None:
    """Split a ``to`` into service, room and nick; None when not even the domain is valid."""
    bare, slash, resource = raw.partition("/")
    node, at, host = bare.rpartition("@")
    if _octets(host) > MAX_JID_PART:
        return None
    try:
        service = domain_jid(host)
    except InvalidFormat:
        return None
    if not at:
        return Address(service, has_resource=bool(slash))
    try:
        name = prepare_room_name(node, settings.max_room_name_length)
    except errors.MUCError as e:
        return Address(service, error=e, has_resource=bool(slash))
    room = prepared_jid(name, service.host)
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
