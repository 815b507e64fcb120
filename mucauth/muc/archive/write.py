"""The room's archive, written: what a stored message is, and the writes.

A persistent room keeps its messages in the store's ``messages`` rows: the last
``history_length`` of them, or all when it logs (``muc#roomconfig_enablelogging``), which
makes them its archive. :class:`ArchiveWriter` writes them, as the room registry
(``registry.py``) tells it of each message and retraction; :func:`message_xml` is the row's
format and :func:`readable_message` reads one back, for the archive's queries (``query.py``) and
for a room's history when the room is read back from the store (``persist.py``).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Protocol

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc.inbound import ElementStream
from mucauth.muc.room import HistoryEntry, Room
from mucauth.muc.xml import serialize
from mucauth.store.base import HistoryRecord, IRoomStore

__all__ = [
    "FORBIDDEN_CHARS",
    "NS_MAM",
    "NS_MAM_EXTENDED",
    "NS_STANZA_ID",
    "ArchiveWriter",
    "Stored",
    "UnreadableError",
    "archives",
    "message_xml",
    "parse_message",
    "readable_message",
    "stamp",
]

NS_MAM = "urn:xmpp:mam:2"
NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended"  # before-id, after-id, ids, metadata
NS_STANZA_ID = "urn:xmpp:sid:0"

# Characters XML 1.0 allows (its production Char): anything else in a stored message makes it
# unreadable, whatever a lenient parser would make of it.
FORBIDDEN_CHARS = frozenset(
    chr(c) for c in (*range(0x20), 0xFFFE, 0xFFFF) if chr(c) not in "\t\n\r"
)


class UnreadableError(Exception):
    """A stored row that cannot be read back; ``str()`` says what is wrong, never its content."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """A history message as reflected: its children (shared, never mutated), the sender's id
    and, in a room that archives, the id the room gave it (its ``<stanza-id/>``, among the
    children too)."""

    children: list[domish.Element]
    stanza_id: str | None
    archive_id: str | None = None


def archives(room: Room) -> bool:
    """Whether ``room`` keeps an archive now: persistent and logging."""
    config = room.config
    return config.persistent and config.logging


def stamp(seconds: float) -> str:
    """XEP-0082 date and time in UTC, to the millisecond (a client's ``start`` taken from a
    result's stamp finds that message again)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# The namespaces a stanza's own children (body, subject, thread) come in: stored as jabber:client,
# the namespace clients read them in (archive results forward them as they are).
_STANZA_NAMESPACES = frozenset({"jabber:client", "jabber:component:accept", "jabber:server"})
_CLIENT = "jabber:client"


def message_xml(stanza_id: str | None, children: list[domish.Element]) -> str:
    """One history message as stored: its children in a ``<message/>`` carrying the sender's
    id, the stanza's own children in jabber:client whatever stream they came on.

    Written by the way out's serializer (``muc/xml.py``), as the stream would write it: a
    message it cannot write raises :class:`~mucauth.muc.xml.Unwritable` and is not stored,
    since a row that does not parse would be lost on the next load anyway."""
    message = domish.Element((_CLIENT, "message"))
    if stanza_id:
        message["id"] = stanza_id
    for child in children:
        # The stanza's own children take jabber:client from the wrapper; any other keeps its
        # namespace (one in no namespace gets xmlns='').
        context = child.uri if child.uri in _STANZA_NAMESPACES else _CLIENT
        message.children.append(domish.SerializedXML(serialize(child, context)))
    return serialize(message)


def parse_message(xml: str) -> Stored:
    """:func:`message_xml` read back, with the parser the stream uses (``inbound.py``)."""
    root: list[domish.Element] = []
    children: list[domish.Element] = []
    ended: list[bool] = []
    stream = ElementStream()  # the stream's own parser: any namespace name a client sent
    stream.DocumentStartEvent = root.append
    stream.ElementEvent = children.append
    stream.DocumentEndEvent = lambda: ended.append(True)
    stream.parse(xml.encode("utf-8"))
    if not root or not ended:  # the stream parser takes a cut-off document as a beginning
        raise ValueError("not one whole element")
    stanza_id = root[0].getAttribute("id")
    return Stored(children, stanza_id)


def readable_message(message: HistoryRecord) -> Stored:
    """:func:`parse_message` of a stored row, or :class:`UnreadableError`: XML that does not parse
    (a message stored unescaped by an older version), characters XML forbids, no usable time.
    The archive and the history both read rows through this, so they agree on what is lost."""
    xml = message.xml
    if not isinstance(xml, str):
        raise UnreadableError("its XML is not text")
    if not FORBIDDEN_CHARS.isdisjoint(xml):
        raise UnreadableError("its XML holds characters XML does not allow")
    try:
        datetime.fromtimestamp(message.timestamp, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise UnreadableError("its time is not a time") from None
    try:
        return parse_message(xml)
    except Exception as e:  # expat, domish and the codec each raise their own
        raise UnreadableError(f"its XML does not parse ({type(e).__name__})") from None


class _Host(Protocol):
    log: Logger


class ArchiveWriter:
    """Writes a persistent room's messages, and their retractions, to the store."""

    def __init__(self, host: _Host, store: IRoomStore) -> None:
        self._host = host
        self._store = store
        # Messages not stored since start because the serializer refused them (metrics).
        self.unwritable_messages = 0

    def message(self, room: Room, entry: HistoryEntry, sender: JID) -> None:
        """A message added to the room's history (or, with no nick, a notice of the room's
        own), kept when the room is persistent: all of them when it archives."""
        if not room.config.persistent:
            return
        stored: Stored = entry.payload  # type: ignore[assignment]
        config = room.config
        archive_id = stored.archive_id or uuid.uuid4().hex
        xml = self._writable(room, archive_id, stored.stanza_id, stored.children)
        if xml is None:
            return
        self._store.append_message(
            room.jid.userhost(),
            HistoryRecord(
                stanza_id=archive_id,
                timestamp=entry.stamp.timestamp(),
                nick=entry.nick,
                sender=sender.userhost(),
                xml=xml,
                occupant_id=entry.occupant_id,
            ),
            None if config.logging else config.history_length,
        )

    def retract(self, room: Room, archive_id: str, children: list[domish.Element]) -> None:
        """A message's tombstone in place of its stored text (XEP-0425)."""
        if room.config.persistent:
            xml = self._writable(room, archive_id, None, children)
            if xml is not None:
                self._store.retract_message(room.jid.userhost(), archive_id, xml)

    def _writable(
        self, room: Room, archive_id: str, stanza_id: str | None, children: list[domish.Element]
    ) -> str | None:
        """The message as stored; None (logged, counted) when the serializer refuses it
        (``muc/xml.py`` checks what it writes): stored anyway, it could not be read back."""
        try:
            xml = message_xml(stanza_id, children)
        except Exception as e:  # the serializer's refusal: never the stream's problem
            self.unwritable_messages += 1
            self._host.log.warn(
                "room store: message={message} in room={room} not stored ({why})",
                message=archive_id,
                room=room.jid.full(),
                why=type(e).__name__,
            )
            return None
        return xml
