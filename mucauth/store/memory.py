"""A room store in memory, for tests of the code that uses a store.

Same semantics as the SQL store, table for table: a room's settings, its affiliations and its
messages are kept apart (affiliations or messages of a room never saved are kept, and show once
it is saved), upserts keep ``created``, ``"none"`` removes an affiliation, ``keep`` trims, the
first message of a ``stanza_id`` wins. The archive pages each room's list with the same
:func:`~mucauth.store.archive.select_page` the SQL store uses for ``ids`` queries, so the two
agree on every filter (a message's position is its place in the list: time, then arrival).
Every write is applied at once: ``pending_writes`` is
always 0 and every Deferred has already fired, so tests on ``SynchronousTestCase`` need no
reactor.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from mucauth.store.archive import check_limit, check_query, named_ids, select_page
from mucauth.store.base import (
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    IRoomStore,
    RoomRecord,
    RoomSummary,
    StoreError,
    Tombstone,
    UnknownStanzaIdError,
    check_affiliation,
)

__all__ = ["MemoryRoomStore"]


@implementer(IRoomStore)
class MemoryRoomStore:
    pending_writes = 0
    dropped_writes = 0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rooms: dict[str, RoomRecord] = {}
        self._affiliations: dict[str, dict[str, str]] = {}
        self._messages: dict[str, list[HistoryRecord]] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._open = False

    def open(self) -> Deferred[None]:
        self._open = True
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._open = False
        return succeed(None)

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def load_room(self, jid: str, history: int) -> Deferred[RoomRecord | None]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        record = self._rooms.get(jid)
        if record is None:
            return succeed(None)
        messages = self._messages.get(jid, [])
        return succeed(
            RoomRecord(
                jid=record.jid,
                config=json.loads(json.dumps(record.config)),
                name=record.name,
                public=record.public,
                subject=record.subject,
                subject_nick=record.subject_nick,
                subject_time=record.subject_time,
                created=record.created,
                creator=record.creator,
                affiliations=dict(self._affiliations.get(jid, {})),
                history=tuple(messages[-history:]) if history > 0 else (),
            )
        )

    def room_jids(self) -> Deferred[list[str]]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        return succeed(sorted(self._rooms))

    def public_rooms(self) -> Deferred[list[tuple[str, str]]]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        rooms = sorted(self._rooms.items())
        return succeed([(jid, record.name) for jid, record in rooms if record.public])

    def save_room(
        self,
        jid: str,
        config: Mapping[str, Any],
        *,
        name: str,
        public: bool,
        subject: str,
        subject_nick: str,
        creator: str = "",
        subject_time: float | None = None,
    ) -> None:
        existing = self._rooms.get(jid)
        self._rooms[jid] = RoomRecord(
            jid=jid,
            # Through JSON, as the SQL store's round trip: a value JSON cannot hold fails here.
            config=json.loads(json.dumps(dict(config))),
            name=name,
            public=public,
            subject=subject,
            subject_nick=subject_nick,
            subject_time=None if subject_time is None else float(subject_time),
            created=existing.created if existing is not None else self._clock(),
            creator=existing.creator if existing is not None and existing.creator else creator,
        )

    def set_affiliation(self, room: str, user: str, affiliation: str) -> None:
        check_affiliation(affiliation)
        affiliations = self._affiliations.setdefault(room, {})
        if affiliation == "none":
            affiliations.pop(user, None)
        else:
            affiliations[user] = affiliation

    def append_message(self, room: str, message: HistoryRecord, keep: int | None) -> None:
        messages = self._messages.setdefault(room, [])
        if all(m.stanza_id != message.stanza_id for m in messages):
            messages.append(message)
            messages.sort(key=lambda m: m.timestamp)  # stable: equal times keep arrival order
        if keep is not None:
            del messages[: max(0, len(messages) - keep)]

    def delete_room(self, jid: str) -> None:
        self._rooms.pop(jid, None)
        self._affiliations.pop(jid, None)
        self._messages.pop(jid, None)
        self._tombstones.pop(jid, None)

    def bury_room(self, jid: str, alternate: str, reason: str, expires: float) -> None:
        self.delete_room(jid)
        self._tombstones[jid] = Tombstone(jid, alternate, reason, float(expires))

    def tombstones(self, now: float) -> Deferred[list[Tombstone]]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        return succeed([t for _, t in sorted(self._tombstones.items()) if t.expires > now])

    def prune_tombstones(self, now: float) -> Deferred[int]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        expired = [jid for jid, t in self._tombstones.items() if t.expires <= now]
        for jid in expired:
            del self._tombstones[jid]
        return succeed(len(expired))

    # -- the archive ---------------------------------------------------------------------------

    def query_archive(self, room: str, query: ArchiveQuery) -> Deferred[ArchivePage]:
        check_query(query)
        if not self._open:
            return fail(StoreError("the room store is not open"))
        messages = self._messages.get(room, [])
        positions: dict[str, int] = {}
        for stanza_id in named_ids(query):
            index = self._index_of(messages, stanza_id)
            if index is None:
                return fail(UnknownStanzaIdError(stanza_id))
            positions[stanza_id] = index
        return succeed(select_page(enumerate(messages), query, positions))

    def archive_bounds(self, room: str) -> Deferred[tuple[HistoryRecord, HistoryRecord] | None]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        messages = self._messages.get(room)
        return succeed((messages[0], messages[-1]) if messages else None)

    def find_message(self, room: str, stanza_id: str) -> Deferred[HistoryRecord | None]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        messages = self._messages.get(room, [])
        index = self._index_of(messages, stanza_id)
        return succeed(None if index is None else messages[index])

    def retract_message(self, room: str, stanza_id: str, xml: str) -> None:
        messages = self._messages.get(room, [])
        index = self._index_of(messages, stanza_id)
        if index is not None:
            messages[index] = dataclasses.replace(messages[index], xml=xml)

    def prune_archive(self, before: float | None, keep: int | None) -> Deferred[int]:
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be 0 or more, or None, not {keep}")
        if not self._open:
            return fail(StoreError("the room store is not open"))
        removed = 0
        for messages in self._messages.values():
            # Sorted by time: what goes is a prefix, the older messages, as in the SQL store.
            cut = 0
            if before is not None:
                while cut < len(messages) and messages[cut].timestamp < before:
                    cut += 1
            if keep is not None:
                cut = max(cut, len(messages) - keep)
            del messages[:cut]
            removed += cut
        return succeed(removed)

    # -- repairs -------------------------------------------------------------------------------

    def list_rooms(self, after: str | None, limit: int) -> Deferred[list[RoomSummary]]:
        check_limit(limit)
        if not self._open:
            return fail(StoreError("the room store is not open"))
        jids = sorted(jid for jid in self._rooms if after is None or jid > after)[:limit]
        return succeed(
            [
                RoomSummary(jid, r.name, r.public, r.created, r.creator)
                for jid in jids
                for r in (self._rooms[jid],)
            ]
        )

    def has_room(self, jid: str) -> Deferred[bool]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        return succeed(jid in self._rooms)

    def delete_messages(self, room: str, stanza_ids: Sequence[str] | None) -> Deferred[int]:
        if not self._open:
            return fail(StoreError("the room store is not open"))
        messages = self._messages.get(room, [])
        if stanza_ids is None:
            kept: list[HistoryRecord] = []
        else:
            gone = set(stanza_ids)
            kept = [m for m in messages if m.stanza_id not in gone]
        removed = len(messages) - len(kept)
        messages[:] = kept
        return succeed(removed)

    @staticmethod
    def _index_of(messages: list[HistoryRecord], stanza_id: str) -> int | None:
        for index, record in enumerate(messages):
            if record.stanza_id == stanza_id:
                return index
        return None
