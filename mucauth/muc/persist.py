"""Rooms that last: what the service keeps of a persistent room in the store, and when it reads
a room back.

Writing. Whenever what a persistent room keeps changes (its configuration, subject, an
affiliation, a message), the change goes to the store, which writes it behind the caller's
back: nothing here waits for a disk or a database, and no join or message is refused because of
one. The last ``history_length`` messages are kept; all of them when the room logs: those rows
are the room's archive, written by ``archive/write.py`` and read by ``archive/query.py``.

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

Rows that cannot be read back. The store's rows are input like any other: a message stored by an
older version, a value edited by hand, a file damaged on disk. A row that cannot be read (a
message whose XML does not parse, a setting of the wrong type, a bad salt or time) is left out:
the room loads without it, and each such row is logged once with the room and the row's id
(never its content) and counted (``Keeper.unreadable_rows``). A room that cannot be rebuilt at
all is rebuilt from its affiliations, so that its owner can still destroy it; and if even that
fails, every stanza waiting for it is answered ``wait/internal-server-error``, never left
unanswered. A message the serializer refuses to write is not stored (``unwritable_messages``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Container, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from mucauth.muc import errors
from mucauth.muc.archive.write import (
    FORBIDDEN_CHARS,
    ArchiveWriter,
    Stored,
    UnreadableError,
    readable_message,
)
from mucauth.muc.directory import RoomIndex
from mucauth.muc.incoming import Context, Held
from mucauth.muc.room import Affiliation, HistoryEntry, Room, RoomConfig, Subject
from mucauth.settings import MUCSettings
from mucauth.store.base import HistoryRecord, IRoomStore, RoomRecord, RoomSummary, Tombstone

__all__ = [
    "MAX_WAITING",
    "Host",
    "Keeper",
    "Stored",
    "UnreadableError",
    "config_record",
    "fallback_room",
    "readable_message",
    "restore_room",
    "restored_entry",
]

# Stanzas one room's read may hold; past that the room is being flooded while the store is slow.
MAX_WAITING = 500
# Stored rooms per read when the room index (``directory.py``) is filled as the stream comes up:
# short reads, so the writes and room loads of the first moments are not held up behind one.
INDEX_PAGE = 1000
# UnreadableError rows remembered as reported (each is logged and counted once); past that the
# memory starts afresh, and a row still read again is reported again.
MAX_REPORTED = 10_000

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RoomConfig)}
_SALT = "occupant_id_salt"


def config_record(room: Room) -> dict[str, Any]:
    """The room's settings as the store keeps them: JSON-able, with the occupant-id salt."""
    record = dataclasses.asdict(room.config)
    record[_SALT] = base64.b64encode(room.salt).decode("ascii")
    return record


# Told of each stored row left out: (what it is, its id, why), never its content.
OnUnreadable = Callable[[str, str, str], None]


def _ignore(what: str, row: str, why: str) -> None:
    pass


def _config(values: Mapping[str, Any], on_unreadable: OnUnreadable) -> RoomConfig:
    """A stored configuration back; keys this version does not know are left out, values of
    the wrong type (or out of range) are left at their defaults and reported, rather than
    failing the room."""
    config = RoomConfig()
    for name, value in values.items():
        field = _CONFIG_FIELDS.get(name)
        if field is None:
            continue
        default = getattr(config, name)
        if type(value) is type(default) and _sane(name, value):
            setattr(config, name, value)
        else:
            on_unreadable("config", name, "a value of the wrong type or range")
    return config


def _sane(name: str, value: Any) -> bool:
    """Values of the right type that still make no room (a negative history, a huge one)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return 0 <= value <= 1_000_000
    if name == "allow_pm":
        return value in ("anyone", "participants", "moderators", "none")
    return True


def restored_entry(message: HistoryRecord) -> HistoryEntry:
    """A stored message as a history entry, its archive id kept (moderation looks it up);
    :class:`UnreadableError` when it cannot be read back."""
    stored = readable_message(message)
    return HistoryEntry(
        datetime.fromtimestamp(message.timestamp, UTC),
        message.nick,
        message.occupant_id or "",
        Stored(stored.children, stored.stanza_id, message.stanza_id),
        len(message.xml),
    )


def _affiliations(record: RoomRecord, on_unreadable: OnUnreadable) -> dict[str, Affiliation]:
    """The stored affiliations that are affiliations of bare JIDs; the others left out."""
    found: dict[str, Affiliation] = {}
    for jid, affiliation in record.affiliations.items():
        if affiliation not in ("owner", "admin", "member", "outcast"):
            on_unreadable("affiliation", str(jid), "not an affiliation")
            continue
        try:
            bare = JID(jid)
        except (InvalidFormat, TypeError, ValueError, UnicodeError):
            on_unreadable("affiliation", repr(jid), "not a JID")
            continue
        if bare.resource is not None or bare.userhost() != jid:
            on_unreadable("affiliation", repr(jid), "not a bare JID")
            continue
        found[jid] = affiliation  # type: ignore[assignment]
    return found


def _created(record: RoomRecord, on_unreadable: OnUnreadable) -> datetime:
    try:
        return datetime.fromtimestamp(record.created, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        on_unreadable("room", "created", "not a time")
        return datetime.fromtimestamp(0, UTC)


def _subject_time(record: RoomRecord, on_unreadable: OnUnreadable) -> datetime | None:
    """When the stored subject was set; None when the row does not say (saved before the time
    was kept): the subject is then sent without a stamp, as it always was, rather than with the
    room's creation time, which would show a date the subject may well not have."""
    if record.subject_time is None:
        return None
    try:
        return datetime.fromtimestamp(record.subject_time, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        on_unreadable("room", "subject_time", "not a time")
        return None


def _salt(record: RoomRecord, on_unreadable: OnUnreadable) -> bytes | None:
    """The stored occupant-id salt; a bad one is replaced (the ids change, the room loads)."""
    salt_text = record.config.get(_SALT)
    if salt_text is None:
        return None
    if isinstance(salt_text, str):
        try:
            salt = base64.b64decode(salt_text, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            if salt:
                return salt
    on_unreadable("config", _SALT, "not a salt")
    return None


def restore_room(record: RoomRecord, on_unreadable: OnUnreadable = _ignore) -> Room:
    """A stored room as it was: settings, affiliations, subject, the last messages.

    What cannot be read back is left out and reported to ``on_unreadable``; what raises
    still is a room that cannot be rebuilt (see :func:`fallback_room`)."""
    for what, row in record.unreadable:
        on_unreadable(what, row, "the store could not read it")
    config = _config(record.config if isinstance(record.config, Mapping) else {}, on_unreadable)
    if isinstance(record.name, str):
        config.name = record.name
    else:
        on_unreadable("room", "name", "not text")
    config.public = bool(record.public)
    config.persistent = True
    room = Room(
        JID(record.jid),
        creator=JID(record.jid),
        created=_created(record, on_unreadable),
        config=config,
        salt=_salt(record, on_unreadable),
        affiliations=_affiliations(record, on_unreadable),
    )
    if record.subject:
        if isinstance(record.subject, str) and FORBIDDEN_CHARS.isdisjoint(record.subject):
            nick = record.subject_nick if isinstance(record.subject_nick, str) else None
            room.subject = Subject(
                record.subject, nick or None, _subject_time(record, on_unreadable)
            )
        else:
            on_unreadable("room", "subject", "not text XML allows")
    keep = config.history_length
    # The room's own notices (a retraction's) are in the archive, not in the history.
    spoken = [message for message in record.history if message.nick]
    entries: list[HistoryEntry] = []
    for message in spoken:
        try:
            entries.append(restored_entry(message))
        except UnreadableError as e:
            on_unreadable("message", str(message.stanza_id), str(e))
    for entry in entries[-keep:] if keep > 0 else ():
        room.add_history(entry)
    return room


def fallback_room(record: RoomRecord, on_unreadable: OnUnreadable = _ignore) -> Room:
    """What is left of a room :func:`restore_room` could not rebuild: its affiliations, in a
    persistent room with default settings and no history, so that its owner can still join
    it, fix its settings or destroy it."""
    config = RoomConfig(persistent=True)
    return Room(
        JID(record.jid),
        creator=JID(record.jid),
        created=datetime.fromtimestamp(0, UTC),
        config=config,
        affiliations=_affiliations(record, on_unreadable),
    )


class Host(Protocol):
    """What the keeper uses of the service's shared parts (``core.Core``)."""

    settings: MUCSettings
    clock: IReactorTime
    log: Logger
    index: RoomIndex

    def refuse(self, stanza: domish.Element, context: Context, error: errors.MUCError) -> None: ...


class Keeper:
    """The service's side of the room store: writes of persistent rooms, reads of rooms not
    in memory, and the stanzas waiting for those reads."""

    def __init__(
        self,
        core: Host,
        store: IRoomStore,
        *,
        live: Container[JID],
        on_restored: Callable[[Room], None],
    ) -> None:
        """``live`` are the rooms in memory, which a read must not replace; ``on_restored``
        takes a room read back into them (the registry, ``registry.py``, is both)."""
        self._core = core
        self._store = store
        self._live = live
        self._on_restored = on_restored
        # Where a stanza that waited for its room's read goes next (the service sets it).
        self.replay: Callable[[Held], None] = _drop
        # The JIDs of the stored rooms, once read; None: look for every room.
        self._known: set[str] | None = None
        # Destroyed persistent rooms whose address still answers `gone`, by bare JID.
        self._tombstones: dict[str, Tombstone] = {}
        self._loading: dict[JID, list[Held]] = {}
        self._index_generation = 0  # which stream's read of the room index is current
        # Stored rows left out because they could not be read back (rooms and archive), and
        # messages not stored because they could not be written: the metrics read both.
        self.unreadable_rows = 0
        # The archive's writes (``archive/write.py``); it counts the messages it could not write.
        self.archive = ArchiveWriter(core, store)
        self._reported: set[tuple[str, str, str]] = set()

    @property
    def store(self) -> IRoomStore:
        return self._store

    @property
    def loading(self) -> int:
        """Rooms being read from the store now."""
        return len(self._loading)

    def start(self) -> Deferred[None]:
        """Learn which rooms the store holds (the stream is up; the store is open)."""
        self._known = None  # until the list is read, every room is looked for
        self._read_index()
        # Asked before the room list: until that is read every join waits for a room read,
        # which the store answers after this one (reads are served in order), so no join
        # makes a new room at a tombstone's address in the first moments of a stream.
        self._read_tombstones()
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
        loading = self._loading
        if not loading and self._known is not None and not self._known:
            return False  # nothing being read and nothing stored: the usual join to a new room
        waiting = loading.get(room_jid)
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

    def _done(self, room_jid: JID, waiting: list[Held]) -> bool:
        if self._loading.get(room_jid) is not waiting:
            return False  # dropped by reset(): the stream this read was for is gone
        del self._loading[room_jid]
        return True

    def unreadable(self, room: str, what: str, row: str, why: str) -> None:
        """One stored row left out: logged with the room and the row's id, never its content;
        once per row, however often the room is loaded or its archive read."""
        key = (room, what, row)
        if key in self._reported:
            return
        if len(self._reported) >= MAX_REPORTED:
            self._reported.clear()
        self._reported.add(key)
        self.unreadable_rows += 1
        self._core.log.warn(
            "room store: unreadable {what} row={row} in room={room} left out ({why})",
            what=what,
            row=row,
            room=room,
            why=why,
        )

    def _loaded(self, record: RoomRecord | None, room_jid: JID, waiting: list[Held]) -> None:
        if not self._done(room_jid, waiting):
            return
        core = self._core
        if record is not None and room_jid not in self._live:
            room = self._restore(record, room_jid)
            if room is None:
                for held in waiting:
                    core.refuse(held.stanza, held.context, errors.RoomUnloadable())
                return
            self._on_restored(room)
            core.log.info(
                "room loaded room={room} messages={messages}",
                room=room_jid.full(),
                messages=len(room.history_entries),
            )
        elif record is None and self._known is not None:
            self._known.discard(room_jid.userhost())
        for held in waiting:
            self.replay(held)

    def _restore(self, record: RoomRecord, room_jid: JID) -> Room | None:
        """The stored room, without what cannot be read; from its affiliations alone if it
        cannot be rebuilt (its owner can destroy it); None, logged once, if not even that."""
        room_name = room_jid.full()

        def left_out(what: str, row: str, why: str) -> None:
            self.unreadable(room_name, what, row, why)

        try:
            return restore_room(record, left_out)
        except Exception as e:
            self.unreadable_rows += 1
            self._core.log.error(
                "room store: room={room} cannot be rebuilt ({why}); loaded from its "
                "affiliations only, without settings or history",
                room=room_name,
                why=_why(e),
            )
        try:
            return fallback_room(record, left_out)
        except Exception as e:
            self._core.log.error(
                "room store: room={room} cannot be loaded ({why}); stanzas to it are refused",
                room=room_name,
                why=_why(e),
            )
            return None

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

    def _read_index(self) -> None:
        """The stored rooms into the room index (room list, rooms per creator), page by page.

        Until it is read the index knows the live rooms only: the room list is short and
        the creation bounds count fewer rooms for a moment. Saves and deletes made meanwhile
        go to the index as always, and the pages read after them agree (reads follow writes).
        """
        index = self._core.index
        index.forget_stored()
        self._index_generation += 1
        generation = self._index_generation
        log = self._core.log

        def read(after: str | None) -> None:
            d = self._store.list_rooms(after, INDEX_PAGE)
            d.addCallbacks(got, failed)

        def got(rows: list[RoomSummary]) -> None:
            if generation != self._index_generation:
                return  # a newer stream reads afresh
            index.load(rows)
            if len(rows) == INDEX_PAGE:
                read(rows[-1].jid)
            else:
                log.info("room index: {rooms} rooms known", rooms=len(index))

        def failed(failure: Failure) -> None:
            log.error(
                "room store: cannot list the stored rooms for the room list ({why}); "
                "listing and counting the rooms in memory only until the next stream",
                why=failure.getErrorMessage() or failure.type.__name__,
            )

        read(None)

    # -- tombstones

    def _read_tombstones(self) -> None:
        """The tombstones left by any process on this store (the list of the last stream
        is replaced: another process may have left or lifted some)."""
        d = self._store.tombstones(self._core.clock.seconds())

        def got(found: list[Tombstone]) -> None:
            self._tombstones = {t.jid: t for t in found}

        def failed(failure: Failure) -> None:
            self._core.log.error(
                "room store: cannot read the destroyed rooms' tombstones ({why}); only this "
                "process's are known until the next stream",
                why=failure.getErrorMessage() or failure.type.__name__,
            )

        d.addCallbacks(got, failed)

    def tombstone(self, room_jid: JID) -> Tombstone | None:
        """The tombstone at the room's address, if one is still standing."""
        if not self._tombstones:
            return None  # the usual case: no JID to build
        jid = room_jid.userhost()
        found = self._tombstones.get(jid)
        if found is not None and found.expires <= self._core.clock.seconds():
            del self._tombstones[jid]  # the store's row goes at the next retention pass
            return None
        return found

    def bury(self, room: Room, alternate: JID | None, reason: str | None) -> None:
        """The owner destroyed ``room``: out of the store, and, when it was persistent and
        ``[rooms] tombstone_lifetime`` is set, its tombstone in its place (a temporary room
        leaves none: nobody could have bookmarked it to find it again)."""
        lifetime = self._core.settings.rooms.tombstone_lifetime
        if not room.config.persistent or lifetime <= 0:
            self.forget(room)
            return
        jid = room.jid.userhost()
        tombstone = Tombstone(
            jid,
            alternate.userhost() if alternate is not None else "",
            reason or "",
            self._core.clock.seconds() + lifetime,
        )
        self._store.bury_room(jid, tombstone.alternate, tombstone.reason, tombstone.expires)
        self._tombstones[jid] = tombstone
        self._core.index.forgotten(jid)
        if self._known is not None:
            self._known.discard(jid)

    def lift(self, jid: str) -> bool:
        """Take the tombstone at ``jid`` away (an operator frees the address); whether one
        was standing."""
        if self._tombstones.pop(jid, None) is None:
            return False
        self._store.delete_room(jid)  # the tombstone's row goes with the room's
        return True

    def prune_tombstones(self) -> Deferred[int]:
        """Expired tombstones out of memory and out of the store."""
        now = self._core.clock.seconds()
        for jid in [j for j, t in self._tombstones.items() if t.expires <= now]:
            del self._tombstones[jid]
        return self._store.prune_tombstones(now)

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
        jid = room.jid.userhost()
        creator = room.creator.userhost()
        if creator == jid:
            creator = ""  # a room read back from a row that did not know its creator
        self._store.save_room(
            jid,
            config_record(room),
            name=room.config.name,
            public=room.config.public,
            subject=subject.text if subject is not None else "",
            subject_nick=(subject.nick or "") if subject is not None else "",
            creator=creator,
            subject_time=(
                subject.stamp.timestamp()
                if subject is not None and subject.stamp is not None
                else None
            ),
        )
        self._core.index.stored(jid, creator, room.config.public, room.config.name)

    def affiliation(self, room: Room, bare: str, affiliation: Affiliation) -> None:
        if room.config.persistent:
            self._store.set_affiliation(room.jid.userhost(), bare, affiliation)

    def forget(self, room: Room) -> None:
        """Out of the store: the room was destroyed or made temporary."""
        self.forget_jid(room.jid.userhost())

    def forget_jid(self, jid: str) -> None:
        """Out of the store, a room not in memory (the admin API destroys it unread)."""
        self._store.delete_room(jid)
        self._core.index.forgotten(jid)
        if self._known is not None:
            self._known.discard(jid)


def _drop(held: Held) -> None:
    """Until the service says where loaded stanzas go (never in service, only in tests)."""


def _why(error: Exception) -> str:
    """An exception as a log may show it: its type, and its text only when it is ours (an
    XML parser's text may quote the stored content)."""
    if isinstance(error, UnreadableError):
        return str(error)
    return type(error).__name__


def _needs_room(stanza: domish.Element) -> bool:
    kind = stanza.getAttribute("type")
    if stanza.name == "presence":
        return kind is None
    if stanza.name == "iq":
        return kind in ("get", "set")
    return False
