"""Every room the service has, live or stored: the room list (disco#items) and the bounds on
creating rooms, answered from memory at a cost that does not grow with the number of rooms.

One user allowed into rooms can create thousands of persistent ones in seconds. Listing them
by reading and sorting every room per disco#items cost a third of a second per request and,
past some thousands, an answer larger than the XMPP server accepts (it then drops the link).
So the rooms are indexed once and kept up to date as they change:

* live rooms through the room registry (``registry.py``), which tells the index when a room
  enters or leaves memory, and when its listing (public, name) changes;
* stored rooms through ``persist.Keeper``: read page by page from the store when the stream
  comes up, then updated by every save and delete it makes.

A room exists while it is live or stored; the index counts them, in all and per creator, and
keeps the listed (public) ones sorted by (host, node), so a page is a binary search and a
slice. Hidden rooms are never listed, not even to their owners (the list is the same for every
asker); public members-only rooms are listed, entering them still takes membership.

With several processes sharing one PostgreSQL database, each process knows the rooms the store
held when its stream came up, and those it made since.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mucauth.muc import errors
from mucauth.muc.room import Room

__all__ = ["Page", "RoomIndex", "listed_name"]

# Characters XML 1.0 does not allow: a name read back from an old stored row may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def listed_name(name: str, node: str, max_length: int) -> str:
    """The name a room is listed with: its own, cut to ``max_length`` (old stored rows may be
    longer than input allows today) and without characters XML forbids, or its node."""
    cleaned = _NOT_XML.sub("", name)[:max_length]
    return cleaned or node


@dataclass
class _Entry:
    creator: str  # bare JID of who created it; "" when unknown (a row older than the column)
    public: bool
    name: str
    live: bool = False
    stored: bool = False


@dataclass(frozen=True)
class Page:
    """One page of the room list: ``(bare JID, name)`` pairs, the position of the first in the
    whole list, and the list's length."""

    items: list[tuple[str, str]]
    first_index: int
    count: int


class RoomIndex:
    """The rooms that exist, their creators, and the sorted list of the public ones."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_creator: dict[str, int] = {}
        self._listed: dict[str, list[str]] = {}  # host -> sorted nodes of its public rooms

    def __len__(self) -> int:
        return len(self._entries)

    def created_by(self, creator: str) -> int:
        """Rooms ``creator`` (a bare JID) created that exist now, live or stored."""
        return self._by_creator.get(creator, 0)

    def listed(self, host: str) -> int:
        return len(self._listed.get(host, ()))

    # -- bounds

    def check_create(self, creator: str, per_user: int, total: int) -> None:
        """Raise the refusal for a room ``creator`` would create now; nothing if allowed."""
        if len(self._entries) >= total:
            raise errors.TooManyRooms()
        if self._by_creator.get(creator, 0) >= per_user:
            raise errors.TooManyRoomsForUser()

    # -- what changes it

    def live(self, room: Room) -> None:
        """``room`` entered memory (created, or read back from the store)."""
        jid = room.jid.userhost()
        entry = self._entries.get(jid)
        if entry is None:
            creator = room.creator.userhost()
            entry = self._add(jid, "" if creator == jid else creator)  # restored: unknown
        entry.live = True
        self._set_listing(jid, entry, room.config.public, room.config.name)

    def unloaded(self, jid: str) -> None:
        """The room left memory: gone, unless the store keeps it."""
        entry = self._entries.get(jid)
        if entry is not None:
            entry.live = False
            if not entry.stored:
                self._remove(jid, entry)

    def changed(self, room: Room) -> None:
        """The room's public setting or name may have changed."""
        entry = self._entries.get(room.jid.userhost())
        if entry is not None:
            self._set_listing(room.jid.userhost(), entry, room.config.public, room.config.name)

    def stored(self, jid: str, creator: str, public: bool, name: str) -> None:
        """The store keeps the room, as given (a save made, or a row read)."""
        entry = self._entries.get(jid)
        if entry is None:
            entry = self._add(jid, creator)
        elif creator and not entry.creator:
            self._count(entry.creator, -1)
            entry.creator = creator
            self._count(creator, 1)
        entry.stored = True
        if not entry.live:  # a live room's own settings are the newer ones
            self._set_listing(jid, entry, public, name)

    def forgotten(self, jid: str) -> None:
        """The store no longer keeps the room (destroyed, or made temporary)."""
        entry = self._entries.get(jid)
        if entry is not None:
            entry.stored = False
            if not entry.live:
                self._remove(jid, entry)

    def forget_stored(self) -> None:
        """Before the store's rooms are read afresh: only live rooms are known for sure."""
        for jid, entry in list(self._entries.items()):
            entry.stored = False
            if not entry.live:
                self._remove(jid, entry)

    def load(self, rows: Iterable[Any]) -> None:
        """Rows from the store (``RoomSummary``: jid, creator, public, name)."""
        for row in rows:
            self.stored(row.jid, row.creator, row.public, row.name)

    # -- the list

    def page(
        self,
        host: str,
        limit: int,
        *,
        after: str | None = None,
        before: str | None = None,
        index: int | None = None,
    ) -> Page:
        """At most ``limit`` listed rooms of ``host``, in order: from the start, from position
        ``index``, after the node ``after``, or the last ones before the node ``before`` ("" for
        the very end). Nodes need not be listed (a room may go away between two pages)."""
        nodes = self._listed.get(host, [])
        count = len(nodes)
        if before is not None:
            end = count if before == "" else bisect_left(nodes, before)
            if after is not None:
                start = max(bisect_right(nodes, after), end - limit)
            else:
                start = max(0, end - limit)
        else:
            if after is not None:
                start = bisect_right(nodes, after)
            else:
                start = min(max(0, index or 0), count)
            end = min(count, start + limit)
        start = min(start, end)
        items = [
            (f"{node}@{host}", self._entries[f"{node}@{host}"].name) for node in nodes[start:end]
        ]
        return Page(items, start, count)

    # -- inside

    def _add(self, jid: str, creator: str) -> _Entry:
        entry = _Entry(creator, public=False, name="")
        self._entries[jid] = entry
        self._count(creator, 1)
        return entry

    def _remove(self, jid: str, entry: _Entry) -> None:
        self._set_listing(jid, entry, False, "")
        del self._entries[jid]
        self._count(entry.creator, -1)

    def _count(self, creator: str, delta: int) -> None:
        if not creator:
            return
        count = self._by_creator.get(creator, 0) + delta
        if count > 0:
            self._by_creator[creator] = count
        else:
            self._by_creator.pop(creator, None)

    def _set_listing(self, jid: str, entry: _Entry, public: bool, name: str) -> None:
        entry.name = name
        if public == entry.public:
            return
        entry.public = public
        node, _, host = jid.rpartition("@")
        nodes = self._listed.setdefault(host, [])
        if public:
            insort(nodes, node)
        else:
            at = bisect_left(nodes, node)
            if at < len(nodes) and nodes[at] == node:
                del nodes[at]
            if not nodes:
                del self._listed[host]
