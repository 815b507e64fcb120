"""Rooms that last: what the service keeps of a persistent room in the store, and when it reads
a room back.

Writing. Whenever what a persistent room keeps changes (its configuration, subject, an
affiliation, a message), the change goes to the store, which writes it behind the caller's
back: nothing here waits for a disk or a database, and no join or message is refused because of
one. The last ``history_length`` messages are kept; all of them when the room logs (the archive
reads the same rows).

Reading. A room that is not in memory is read from the store the first time a stanza needs it
(a join, an iq). Stanzas to that room wait for the read, in their order, then go on as if the
room had always been there; if the store cannot answer within ``[muc] load_timeout`` they are
refused ``wait/service-unavailable``: creating the room afresh would lose the stored one.
An empty persistent room leaves memory (the store has it all), so a process that takes over a
room another process served works from the store's copy, never from a stale one of its own.

Which rooms are looked for: the JIDs of the stored rooms are read each time the stream comes
up, and only those are ever read back; a new room is made without asking the store. That holds
with one process on its SQLite file, and with several on one PostgreSQL behind ejabberd's
``bare_destination`` balancing: a room is routed to one process at a time, and the routing only
changes when connections do (a process restarted or replaced, the XMPP server restarted),
after which every process that reconnected has read the list afresh. (Looking each unknown room
up instead cost a database read for every new room, half again the CPU of a join.)
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc import errors
from mucauth.muc.core import Context, Core
from mucauth.muc.join import Held
from mucauth.muc.room import Affiliation, HistoryEntry, Room, RoomConfig, Subject
from mucauth.muc.xml import escape_attribute
from mucauth.store.base import HistoryRecord, IRoomStore, RoomRecord

__all__ = [
    "MAX_WAITING",
    "Keeper",
    "Stored",
    "config_record",
    "message_xml",
    "parse_message",
    "restore_room",
    "restored_entry",
]

# Stanzas one room's read may hold; past that the room is being flooded while the store is slow.
MAX_WAITING = 500
# Seconds between sweeps for stored rooms read back without anyone joining (a disco or archive
# query): empty, they leave memory again, as a room does when its last occupant leaves.
SWEEP_INTERVAL = 60.0

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RoomConfig)}
_SALT = "occupant_id_salt"


@dataclasses.dataclass(frozen=True)
class Stored:
    """A history message as reflected: its children (shared, never mutated), the sender's id
    and, in a room that archives, the id the room gave it (its ``<stanza-id/>``, among the
    children too)."""

    children: list[domish.Element]
    stanza_id: str | None
    archive_id: str | None = None


def config_record(room: Room) -> dict[str, Any]:
    """The room's settings as the store keeps them: JSON-able, with the occupant-id salt."""
    record = dataclasses.asdict(room.config)
    record[_SALT] = base64.b64encode(room.salt).decode("ascii")
    return record


def _config(values: Mapping[str, Any]) -> RoomConfig:
    """A stored configuration back; keys this version does not know, or whose type changed,
    are left at their defaults rather than failing the room."""
    config = RoomConfig()
    for name, value in values.items():
        field = _CONFIG_FIELDS.get(name)
        if field is None:
            continue
        default = getattr(config, name)
        if type(value) is type(default):
            setattr(config, name, value)
    return config


# The namespaces a stanza's own children (body, subject, thread) come in: stored as jabber:client,
# the namespace clients read them in (archive results forward them as they are).
_STANZA_NAMESPACES = frozenset({"jabber:client", "jabber:component:accept", "jabber:server"})


def message_xml(stanza_id: str | None, children: list[domish.Element]) -> str:
    """One history message as stored: its children in a ``<message/>`` carrying the sender's
    id, the stanza's own children in jabber:client whatever stream they came on."""
    id_attribute = f" id='{escape_attribute(stanza_id)}'" if stanza_id else ""
    inner = "".join(
        child.toXml(defaultUri=child.uri) if child.uri in _STANZA_NAMESPACES else child.toXml()
        for child in children
    )
    return f"<message xmlns='jabber:client'{id_attribute}>{inner}</message>"


def parse_message(xml: str) -> Stored:
    """:func:`message_xml` read back, with domish's own stream parser."""
    root: list[domish.Element] = []
    children: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = root.append
    stream.ElementEvent = children.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(xml.encode("utf-8"))
    stanza_id = root[0].getAttribute("id") if root else None
    return Stored(children, stanza_id)


def restored_entry(message: HistoryRecord) -> HistoryEntry:
    """A stored message as a history entry, its archive id kept (moderation looks it up)."""
    stored = parse_message(message.xml)
    return HistoryEntry(
        datetime.fromtimestamp(message.timestamp, UTC),
        message.nick,
        message.occupant_id or "",
        Stored(stored.children, stored.stanza_id, message.stanza_id),
        len(message.xml),
    )


def restore_room(record: RoomRecord) -> Room:
    """A stored room as it was: settings, affiliations, subject, the last messages."""
    config = _config(record.config)
    config.name = record.name
    config.public = record.public
    config.persistent = True
    salt_text = record.config.get(_SALT)
    salt = base64.b64decode(salt_text) if isinstance(salt_text, str) else None
    affiliations: dict[str, Affiliation] = {
        jid: affiliation  # type: ignore[misc]
        for jid, affiliation in record.affiliations.items()
        if affiliation in ("owner", "admin", "member", "outcast")
    }
    room = Room(
        JID(record.jid),
        creator=JID(record.jid),
        created=datetime.fromtimestamp(record.created, UTC),
        config=config,
        salt=salt,
        affiliations=affiliations,
    )
    if record.subject:
        room.subject = Subject(record.subject, record.subject_nick or None)
    keep = config.history_length
    # The room's own notices (a retraction's) are in the archive, not in the history.
    spoken = [message for message in record.history if message.nick]
    for message in spoken[-keep:] if keep > 0 else ():
        room.add_history(restored_entry(message))
    return room


class Keeper:
    """The service's side of the room store: writes of persistent rooms, reads of rooms not
    in memory, and the stanzas waiting for those reads."""

    def __init__(
        self,
        core: Core,
        store: IRoomStore,
        *,
        replay: Callable[[Held], None],
        busy: Callable[[], set[JID]] = set,
    ) -> None:
        """``busy`` gives the rooms with checks pending (a join to them may be decided any
        moment: they stay)."""
        self._core = core
        self._store = store
        self._replay = replay
        self._busy = busy
        self._sweeper: LoopingCall | None = None
        # The JIDs of the stored rooms, once read; None: look for every room.
        self._known: set[str] | None = None
        self._loading: dict[JID, list[Held]] = {}

    @property
    def store(self) -> IRoomStore:
        return self._store

    @property
    def loading(self) -> int:
        """Rooms being read from the store now."""
        return len(self._loading)

    def start(self) -> Deferred[None]:
        """Learn which rooms the store holds (the stream is up; the store is open)."""
        if self._sweeper is None:
            self._sweeper = LoopingCall(self.sweep)
            self._sweeper.clock = self._core.clock
            self._sweeper.start(SWEEP_INTERVAL, now=False)
        self._known = None  # until the list is read, every room is looked for
        d = self._store.room_jids()

        def known(jids: list[str]) -> None:
            self._known = set(jids)

        def unknown(failure: Failure) -> None:
            self._known = None  # every room is looked for until the next stream
            self._core.log.error(
                "room store: cannot list the stored rooms ({why}); looking each room up",
                why=failure.getErrorMessage(),
            )

        return d.addCallbacks(known, unknown)

    # -- reading

    def holds(
        self,
        stanza: domish.Element,
        context: Context,
        room_jid: JID,
        handler: Callable[[domish.Element, Context], None],
    ) -> bool:
        """Hold ``stanza`` until ``room_jid`` is read from the store, if it must wait for it.

        A stanza waits when the room is being read already (order is kept), or when it needs
        the room (an available presence, an iq get or set) and the room may be stored."""
        waiting = self._loading.get(room_jid)
        if waiting is None:
            if not _needs_room(stanza) or not self._may_be_stored(room_jid):
                return False
            # The stanza is in the list before the read starts: a store that answers at once
            # replays it from inside this call.
            waiting = [Held(stanza, context, handler)]
            self._load(room_jid, waiting)
            return True
        if len(waiting) >= MAX_WAITING:
            raise errors.Overloaded("Too many requests for this room while it is loaded")
        waiting.append(Held(stanza, context, handler))
        return True

    def is_loading(self, room_jid: JID) -> bool:
        return room_jid in self._loading

    def _may_be_stored(self, room_jid: JID) -> bool:
        known = self._known
        return known is None or room_jid.userhost() in known

    def _load(self, room_jid: JID, waiting: list[Held]) -> None:
        self._loading[room_jid] = waiting
        core = self._core
        d = self._store.load_room(room_jid.userhost(), core.settings.rooms.max_history_length)
        d.addTimeout(core.settings.load_timeout, core.clock)
        d.addCallbacks(
            self._loaded,
            self._load_failed,
            callbackArgs=(room_jid, waiting),
            errbackArgs=(room_jid, waiting),
        )

    def reset(self) -> None:
        """The stream is gone: what waits for a read is dropped (its answers could not be
        delivered); reads still out end in nothing."""
        self._loading.clear()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def sweep(self) -> int:
        """Unload the empty persistent rooms nobody is joining: the store has them. How many."""
        rooms = self._core.rooms
        idle = [jid for jid, room in rooms.items() if room.is_empty and room.config.persistent]
        if not idle:
            return 0
        busy = self._busy()
        unloaded = 0
        for jid in idle:
            if jid not in busy:
                del rooms[jid]
                unloaded += 1
        if unloaded:
            self._core.log.debug("rooms unloaded: {count} empty", count=unloaded)
        return unloaded

    def _done(self, room_jid: JID, waiting: list[Held]) -> bool:
        if self._loading.get(room_jid) is not waiting:
            return False  # dropped by reset(): the stream this read was for is gone
        del self._loading[room_jid]
        return True

    def _loaded(self, record: RoomRecord | None, room_jid: JID, waiting: list[Held]) -> None:
        if not self._done(room_jid, waiting):
            return
        core = self._core
        if record is not None and room_jid not in core.rooms:
            room = restore_room(record)
            core.rooms[room_jid] = room
            core.log.info(
                "room loaded room={room} messages={messages}",
                room=room_jid.full(),
                messages=len(room.history_entries),
            )
        elif record is None and self._known is not None:
            self._known.discard(room_jid.userhost())
        for held in waiting:
            self._replay(held)

    def _load_failed(self, failure: Failure, room_jid: JID, waiting: list[Held]) -> None:
        if not self._done(room_jid, waiting):
            return
        core = self._core
        core.log.error(
            "room store: reading {room} failed ({why}); {count} stanzas to it refused",
            room=room_jid.full(),
            why=failure.getErrorMessage() or failure.type.__name__,
            count=len(waiting),
        )
        for held in waiting:
            core.refuse(held.stanza, held.context, errors.StoreUnavailable())

    def public_rooms(self, host: str) -> Deferred[dict[JID, str]]:
        """The stored public rooms of ``host``: room JID to name."""
        d = self._store.public_rooms()

        def by_jid(rows: list[tuple[str, str]]) -> dict[JID, str]:
            found = {}
            for jid, name in rows:
                room_jid = JID(jid)
                if room_jid.host == host:
                    found[room_jid] = name
            return found

        return d.addCallback(by_jid)

    # -- writing

    def persist(self, room: Room) -> None:
        """``room`` became persistent (or was created so): everything it keeps, to the store."""
        self.save(room)
        for bare, affiliation in room.affiliations.items():
            self._store.set_affiliation(room.jid.userhost(), bare, affiliation)
        if self._known is not None:
            self._known.add(room.jid.userhost())

    def save(self, room: Room) -> None:
        """The room's settings and subject, when it is persistent."""
        if not room.config.persistent:
            return
        subject = room.subject
        self._store.save_room(
            room.jid.userhost(),
            config_record(room),
            name=room.config.name,
            public=room.config.public,
            subject=subject.text if subject is not None else "",
            subject_nick=(subject.nick or "") if subject is not None else "",
        )

    def affiliation(self, room: Room, bare: str, affiliation: Affiliation) -> None:
        if room.config.persistent:
            self._store.set_affiliation(room.jid.userhost(), bare, affiliation)

    def message(self, room: Room, entry: HistoryEntry, sender: JID) -> None:
        """A message added to the room's history (or, with no nick, a notice of the room's
        own), kept when the room is persistent: all of them when it archives."""
        if not room.config.persistent:
            return
        stored: Stored = entry.payload  # type: ignore[assignment]
        config = room.config
        self._store.append_message(
            room.jid.userhost(),
            HistoryRecord(
                stanza_id=stored.archive_id or uuid.uuid4().hex,
                timestamp=entry.stamp.timestamp(),
                nick=entry.nick,
                sender=sender.userhost(),
                xml=message_xml(stored.stanza_id, stored.children),
                occupant_id=entry.occupant_id,
            ),
            None if config.logging else config.history_length,
        )

    def retract(self, room: Room, archive_id: str, children: list[domish.Element]) -> None:
        """A message's tombstone in place of its stored text (XEP-0425)."""
        if room.config.persistent:
            self._store.retract_message(
                room.jid.userhost(), archive_id, message_xml(None, children)
            )

    def forget(self, room: Room) -> None:
        """Out of the store: the room was destroyed or made temporary."""
        self._store.delete_room(room.jid.userhost())
        if self._known is not None:
            self._known.discard(room.jid.userhost())


def _needs_room(stanza: domish.Element) -> bool:
    kind = stanza.getAttribute("type")
    if stanza.name == "presence":
        return kind is None
    if stanza.name == "iq":
        return kind in ("get", "set")
    return False
