"""The rooms the service has in memory, and the one place that changes them.

A room is created, read back from the store, unloaded, made persistent or temporary and
destroyed here, and nowhere else: each of those writes the room table, tells the room index
(``directory.py``) and writes the change through to the store (``persist.Keeper``). A part that
changes what a persistent room keeps (an affiliation, the subject, the configuration, a
message) says so here too, so "change it, then save it" is written once.

There is always a store: without one configured, an in-memory store stands in, which keeps
persistent rooms and their archive (its last ``STAND_IN_ARCHIVE`` messages per room) until the
process stops. No part asks whether there is one.

The table is a dict for its readers (a lookup per stanza costs what a dict's does); its own
ways of writing are refused, so a write that bypasses the registry fails at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc.persist import Host, Keeper
from mucauth.muc.room import Affiliation, HistoryEntry, Room
from mucauth.store.base import HistoryRecord, IRoomStore, Tombstone
from mucauth.store.memory import MemoryRoomStore

__all__ = ["STAND_IN_ARCHIVE", "SWEEP_INTERVAL", "RoomRegistry", "StandInStore", "in_memory_store"]

# Seconds between sweeps for stored rooms read back without anyone joining (a disco or archive
# query): empty, they leave memory again, as a room does when its last occupant leaves.
SWEEP_INTERVAL = 60.0
# Messages a room's archive keeps in the store that stands in for none: memory is all it has,
# and the in-memory store's writes cost more as a room's list grows.
STAND_IN_ARCHIVE = 1000


class StandInStore(MemoryRoomStore):
    """The in-memory store, standing in when none is configured: a logging room's archive is
    bounded (``STAND_IN_ARCHIVE``), where a real store keeps every message."""

    def append_message(self, room: str, message: HistoryRecord, keep: int | None) -> None:
        bound = STAND_IN_ARCHIVE if keep is None else min(keep, STAND_IN_ARCHIVE)
        super().append_message(room, message, bound)


def in_memory_store() -> IRoomStore:
    """The store that stands in when none is configured: open, and gone with the process."""
    store = StandInStore()
    store.open()
    return store


def _nothing_pending(room: JID) -> bool:
    return False


class RoomRegistry(dict[JID, Room]):
    """Every room in memory, by bare JID; the only writer of that table and of the store."""

    # What stands at a destroyed persistent room's address, if anything (the keeper's answer,
    # without a call through this one: every join asks, twice).
    tombstone: Callable[[JID], Tombstone | None]

    def __init__(self, host: Host, store: IRoomStore | None = None) -> None:
        super().__init__()
        self._host = host
        self._index = host.index
        self.keeper = Keeper(
            host,
            store if store is not None else in_memory_store(),
            live=self,
            on_restored=self._restored,
        )
        # Whether a join to a room is being decided: such a room stays in memory even empty
        # (the decision would otherwise find no room and make a new one). The service sets it.
        self.has_pending: Callable[[JID], bool] = _nothing_pending
        self._sweeper: LoopingCall | None = None
        self.tombstone = self.keeper.tombstone

    @property
    def store(self) -> IRoomStore:
        return self.keeper.store

    # -- the stream's life

    def start(self) -> None:
        """The stream is up: learn what the store holds, and sweep idle rooms every minute."""
        if self._sweeper is None:
            self._sweeper = LoopingCall(self.sweep)
            self._sweeper.clock = self._host.clock
            self._sweeper.start(SWEEP_INTERVAL, now=False)
        self.keeper.start()

    def reset(self) -> None:
        """The stream is gone: reads under way end in nothing, the sweeps stop."""
        self.keeper.reset()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    # -- rooms entering memory

    def created(self, room: Room, owner: JID) -> None:
        """A room made by a join, its creator in it: in the table, and in the store when it
        is persistent from the start."""
        dict.__setitem__(self, room.jid, room)  # new: no room was there (_add without the check)
        self._index.live(room)
        self._host.log.info(
            "room created room={room} owner={user}", room=room.jid.full(), user=owner.full()
        )
        if room.config.persistent:
            self.keeper.persist(room)

    def _restored(self, room: Room) -> None:
        """A room read back from the store (``persist.Keeper``)."""
        self._add(room)

    def _add(self, room: Room) -> None:
        jid = room.jid
        old = dict.get(self, jid)
        if old is not None and old is not room:
            self._index.unloaded(jid.userhost())
        dict.__setitem__(self, jid, room)
        self._index.live(room)

    # -- rooms leaving memory

    def emptied(self, room: Room) -> None:
        """The last occupant left: a temporary room ends; a persistent one leaves memory, since
        the store has it, unless a join to it is being decided."""
        if not room.config.persistent:
            jid = room.jid
            dict.pop(self, jid, None)
            self._index.unloaded(jid.userhost())
            self._host.log.info("room destroyed room={room}: empty", room=jid.full())
        elif not self.has_pending(room.jid):
            self._drop(room.jid)
            self._host.log.debug("room unloaded room={room}: empty", room=room.jid.full())

    def destroyed(
        self, room: Room, alternate: JID | None, reason: str | None, *, tombstone: bool
    ) -> None:
        """The room is gone (its occupants were told): out of memory and out of the store,
        leaving its tombstone when ``tombstone`` and it was persistent."""
        self._drop(room.jid)
        if tombstone:
            self.keeper.bury(room, alternate, reason)
        else:
            self.keeper.forget(room)

    def destroyed_stored(self, jid: str) -> None:
        """A room not in memory destroyed (the admin API destroys it unread)."""
        self.keeper.forget_jid(jid)

    def sweep(self) -> int:
        """Unload the empty persistent rooms nobody is joining (read back for a disco or an
        archive query): the store has them. How many."""
        idle = [jid for jid, room in self.items() if room.is_empty and room.config.persistent]
        unloaded = 0
        for jid in idle:
            if not self.has_pending(jid):
                self._drop(jid)
                unloaded += 1
        if unloaded:
            self._host.log.debug("rooms unloaded: {count} empty", count=unloaded)
        return unloaded

    def drop_all(self) -> None:
        """Every room out of memory (its occupants were told, or there is nobody to tell);
        the store keeps the persistent ones."""
        for room in self.values():
            room.clear()
        for jid in list(self):
            self._drop(jid)

    def _drop(self, jid: JID) -> None:
        if dict.pop(self, jid, None) is not None:
            self._index.unloaded(jid.userhost())

    # -- what a room keeps, changed

    def changed(self, room: Room, affiliations: Iterable[tuple[str, Affiliation]] = ()) -> None:
        """The room's settings or subject changed (and the owner's form set ``affiliations``):
        listed as it now is, saved if persistent."""
        self._index.changed(room)
        self.keeper.save(room)
        for bare, affiliation in affiliations:
            self.keeper.affiliation(room, bare, affiliation)

    def set_affiliation(self, room: Room, bare: str, affiliation: Affiliation) -> Any:
        """Set ``bare``'s affiliation in ``room`` and keep it; ``Room.set_affiliation``'s
        answer (the occupant whose standing changed, if any)."""
        changed = room.set_affiliation(bare, affiliation)
        self.keeper.affiliation(room, bare, affiliation)
        return changed

    def made_persistent(self, room: Room) -> None:
        self.keeper.persist(room)
        self._host.log.info("room made persistent room={room}", room=room.jid.full())

    def made_temporary(self, room: Room) -> None:
        """Out of the store; an empty room nobody is joining ends now."""
        self.keeper.forget(room)
        self._host.log.info("room made temporary room={room}", room=room.jid.full())
        if room.is_empty and not self.has_pending(room.jid):
            self._drop(room.jid)

    def message(self, room: Room, entry: HistoryEntry, sender: JID) -> None:
        """A message in the room's history (``sender`` the room's own JID for its notices)."""
        self.keeper.archive.message(room, entry, sender)

    def retracted(self, room: Room, archive_id: str, children: list[domish.Element]) -> None:
        """A stored message's text replaced by its retraction's tombstone (XEP-0425)."""
        self.keeper.archive.retract(room, archive_id, children)

    def lift_tombstone(self, jid: str) -> bool:
        """An operator frees a destroyed room's address; whether a tombstone stood there."""
        return self.keeper.lift(jid)

    # -- a dict's own writes are refused

    def _refused(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("rooms change through RoomRegistry's methods only")

    __setitem__ = __delitem__ = pop = popitem = clear = setdefault = update = __ior__ = _refused  # type: ignore[assignment]
