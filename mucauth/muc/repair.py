"""Repairs an operator makes through the admin API, so that none of them needs SQL: which rooms
there are (live and stored, a page at a time), destroying a room whatever state it is in, and
reading or deleting a room's archived messages.

A room is destroyed as its owner would (XEP-0045 §10.9: every occupant is told), whether it is
live, only stored, or stored and unloadable: the store's copy goes without the room being read
back. Deleted messages leave the live room's history too, so no joiner receives them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.words.protocols.jabber.jid import JID

from mucauth.muc.archive.write import Stored, UnreadableError, readable_message
from mucauth.muc.core import Core
from mucauth.store.base import ArchiveQuery, RoomSummary

if TYPE_CHECKING:
    from mucauth.muc.presence import Presences

__all__ = ["ArchivedMessage", "Repairs", "RoomListing"]


@dataclass(frozen=True)
class RoomListing:
    """One room of the operators' list: live (in this process's memory), stored, or both."""

    jid: str
    live: bool
    stored: bool
    name: str
    persistent: bool
    occupants: int


@dataclass(frozen=True)
class ArchivedMessage:
    """One archived message as operators see it: its content only when it can be read back."""

    stanza_id: str
    timestamp: float
    nick: str
    size: int
    readable: bool
    xml: str | None


class Repairs:
    def __init__(self, core: Core, presences: Presences) -> None:
        self._core = core
        self._presences = presences

    @inlineCallbacks
    def rooms(self, after: str | None, limit: int) -> Any:
        """The first ``limit`` rooms after ``after`` in JID order, live and stored merged, and
        whether more follow: one index range of the store and one sort of the live rooms."""
        core = self._core
        live = {jid.full(): room for jid, room in core.rooms.items()}
        stored: list[RoomSummary] = yield core.rooms.store.list_rooms(after, limit + 1)
        by_jid = {summary.jid: summary for summary in stored}
        # Stored rooms past the last one read may be missing here: stop the page before them.
        horizon = stored[-1].jid if len(stored) > limit else None
        jids = sorted(
            jid
            for jid in set(by_jid) | set(live)
            if (after is None or jid > after) and (horizon is None or jid <= horizon)
        )
        page = jids[:limit]
        listings = []
        for jid in page:
            room, summary = live.get(jid), by_jid.get(jid)
            listings.append(
                RoomListing(
                    jid=jid,
                    live=room is not None,
                    stored=summary is not None,
                    name=room.config.name if room is not None else summary.name,  # type: ignore[union-attr]
                    persistent=room.config.persistent if room is not None else True,
                    occupants=len(room) if room is not None else 0,
                )
            )
        return listings, len(jids) > limit

    @inlineCallbacks
    def destroy(self, jid: str, reason: str | None) -> Any:
        """Destroy the room: (was it live, was it stored). Stored rooms go from the store
        without being read back, so a room that cannot be loaded goes too.

        No tombstone is left, and one standing at ``jid`` is lifted (counted as stored): this
        is the operator's repair, which names no alternate venue, and the way to free the
        address of a room its owner destroyed before the tombstone expires."""
        core = self._core
        stored = yield core.rooms.store.has_room(jid)
        room = core.rooms.get(JID(jid))  # after the read: a load may have finished meanwhile
        if room is not None:
            self._presences.destroy(room, reason, None, tombstone=False)
        elif stored:
            core.rooms.destroyed_stored(jid)
        if core.rooms.lift_tombstone(jid):
            stored = True
        if room is not None or stored:
            core.log.info(
                "room destroyed room={room} by the admin API live={live} stored={stored}",
                room=jid,
                live=room is not None,
                stored=stored,
            )
        return room is not None, stored

    def messages(self, jid: str, after: str | None, limit: int) -> Deferred[Any]:
        """A page of the room's stored messages, oldest first, and whether more follow."""
        d = self._core.rooms.store.query_archive(jid, ArchiveQuery(page_after=after, limit=limit))

        def listed(page: Any) -> tuple[list[ArchivedMessage], bool]:
            found = []
            for record in page.messages:
                try:
                    readable_message(record)
                except UnreadableError:
                    readable = False
                else:
                    readable = True
                found.append(
                    ArchivedMessage(
                        stanza_id=record.stanza_id,
                        timestamp=record.timestamp,
                        nick=record.nick,
                        size=len(record.xml) if isinstance(record.xml, str) else 0,
                        readable=readable,
                        xml=record.xml if readable else None,
                    )
                )
            return found, not page.complete

        return d.addCallback(listed)

    def delete_messages(self, jid: str, stanza_ids: Sequence[str] | None) -> Deferred[int]:
        """Delete those messages (every one for None), from the store and from the live
        room's history; fires with how many the store removed."""
        core = self._core
        room = core.rooms.get(JID(jid))
        if room is not None:
            gone = None if stanza_ids is None else set(stanza_ids)
            room.remove_history(
                lambda entry: (
                    gone is None
                    or (isinstance(entry.payload, Stored) and entry.payload.archive_id in gone)
                )
            )
        d = core.rooms.store.delete_messages(jid, stanza_ids)

        def logged(removed: int) -> int:
            core.log.info(
                "archive messages deleted room={room} by the admin API count={count}",
                room=jid,
                count=removed,
            )
            return removed

        return d.addCallback(logged)
