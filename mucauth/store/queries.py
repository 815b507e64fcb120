"""What runs in the database threads: every statement of the store, and the interactions
that use them (a write batch, a room load, the archive's reads and its pruning). Written once
for both databases: ``?`` placeholders (``Database.sql`` adapts them) and SQL both speak.

The archive is the ``messages`` table in ``(ts, id)`` order, and a message's position is its
``(ts, id)``: ``id`` is the arrival order, so equal times keep it. Every page is one range of
the ``messages_room_ts`` index ``(room, ts, id)``, read forward or backward from one bound and
stopped by ``LIMIT``, so a page costs the same on the first and on the millionth message. The
bounds are row values, ``(ts, id) > (?, ?)``: SQLite (3.15 and later) and PostgreSQL both take
them as an index range (``room=? AND ts>?``; PostgreSQL's ``Index Cond: ROW(ts, id) > ...``),
where the spelled-out ``ts > ? OR (ts = ? AND id > ?)`` makes SQLite scan the whole room. A page
asks for ``limit + 1`` rows, the extra one only to say whether the page is the last one: no
``COUNT``.

Filters by nick or sender have no index of their own: the scan stays on the page's range and
stops at ``limit + 1`` matches, which is cheap for anyone who speaks in the room, but a nick
that never spoke in a large room is a scan of the room's range (milliseconds per hundred
thousand messages). An ``ids`` query reads the named rows through the ``(room, stanza_id)``
index and pages them in Python (:func:`mucauth.store.archive.select_page`): with ``IN`` and
``ORDER BY ts`` SQLite's planner prefers the time index and scans the room.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from mucauth.store.archive import is_backward, lower_bound, named_ids, select_page, upper_bound
from mucauth.store.base import (
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    RoomRecord,
    RoomSummary,
    Tombstone,
    UnknownStanzaIdError,
)
from mucauth.store.dialects import Database
from mucauth.store.writes import Write

__all__ = [
    "archive_bounds",
    "delete_messages",
    "find_message",
    "has_room",
    "list_rooms",
    "load_room",
    "prune_chunk",
    "prune_plan",
    "prune_tombstones",
    "query_archive",
    "select_column",
    "select_rows",
    "tombstones",
    "write_batch",
]

Position = tuple[float, int]  # (ts, id): a message's place in the archive

SAVE_ROOM = """
    INSERT INTO rooms (
        jid, name, is_public, config, subject, subject_nick, created, updated, creator,
        subject_time)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (jid) DO UPDATE SET
        name = excluded.name, is_public = excluded.is_public, config = excluded.config,
        subject = excluded.subject, subject_nick = excluded.subject_nick,
        subject_time = excluded.subject_time, updated = excluded.updated,
        creator = CASE WHEN rooms.creator = '' THEN excluded.creator ELSE rooms.creator END
"""
SET_AFFILIATION = """
    INSERT INTO affiliations (room, user_jid, affiliation) VALUES (?, ?, ?)
    ON CONFLICT (room, user_jid) DO UPDATE SET affiliation = excluded.affiliation
"""
REMOVE_AFFILIATION = "DELETE FROM affiliations WHERE room = ? AND user_jid = ?"
APPEND_MESSAGE = """
    INSERT INTO messages (room, stanza_id, ts, nick, sender, occupant_id, xml)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (room, stanza_id) DO NOTHING
"""
# Keep the newest `keep` messages: delete what sorts before the oldest of them.
TRIM_MESSAGES = """
    DELETE FROM messages WHERE room = ? AND (ts, id) < (
        SELECT ts, id FROM messages WHERE room = ? ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?)
"""
DELETE_ROOM = (
    "DELETE FROM rooms WHERE jid = ?",
    "DELETE FROM affiliations WHERE room = ?",
    "DELETE FROM messages WHERE room = ?",
    "DELETE FROM tombstones WHERE jid = ?",
)
BURY_ROOM = """
    INSERT INTO tombstones (jid, alternate, reason, expires) VALUES (?, ?, ?, ?)
    ON CONFLICT (jid) DO UPDATE SET
        alternate = excluded.alternate, reason = excluded.reason, expires = excluded.expires
"""
TOMBSTONES = "SELECT jid, alternate, reason, expires FROM tombstones WHERE expires > ? ORDER BY jid"
PRUNE_TOMBSTONES = "DELETE FROM tombstones WHERE expires <= ?"
LOAD_ROOM = """
    SELECT name, is_public, config, subject, subject_nick, created, creator, subject_time
    FROM rooms WHERE jid = ?
"""
LOAD_AFFILIATIONS = "SELECT user_jid, affiliation FROM affiliations WHERE room = ?"
LOAD_HISTORY = """
    SELECT stanza_id, ts, nick, sender, occupant_id, xml FROM messages WHERE room = ?
    ORDER BY ts DESC, id DESC LIMIT ?
"""
RETRACT_MESSAGE = "UPDATE messages SET xml = ? WHERE room = ? AND stanza_id = ?"

# The archive: a record's columns, then its position.
RECORD = "stanza_id, ts, nick, sender, occupant_id, xml"
FIND_MESSAGE = f"SELECT {RECORD} FROM messages WHERE room = ? AND stanza_id = ?"
OLDEST = f"SELECT {RECORD}, id FROM messages WHERE room = ? ORDER BY ts, id LIMIT 1"
NEWEST = f"SELECT {RECORD}, id FROM messages WHERE room = ? ORDER BY ts DESC, id DESC LIMIT 1"
IDS_AT_ONCE = 500  # stanza ids per IN (...): far below either database's parameter limit

# Retention: rooms one after the other (each step one index lookup, no DISTINCT over the
# table), and in a room the oldest rows first, so a prune cut short leaves no hole.
NEXT_ROOM = "SELECT MIN(room) FROM messages WHERE room > ?"
KEEP_FROM = """
    SELECT ts, id FROM messages WHERE room = ? ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?
"""
PRUNE_CHUNK = """
    DELETE FROM messages WHERE id IN (
        SELECT id FROM messages WHERE room = ? AND (ts, id) < (?, ?) ORDER BY ts, id LIMIT ?)
"""


def _seconds(value: Any) -> float:
    """A stored time; NaN for what is not a number (SQLite keeps whatever it was given), which
    the MUC side reports as an unreadable row instead of failing the whole read."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _settings(text: Any) -> dict[str, Any] | None:
    """A room's stored settings, or None when they are not a JSON object."""
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def load_room(txn: Any, db: Database, jid: str, history: int) -> RoomRecord | None:
    if db.begin is not None:
        txn.execute(db.begin)  # one snapshot for the three queries
    txn.execute(db.sql(LOAD_ROOM), (jid,))
    row = txn.fetchone()
    if row is None:
        return None
    name, public, config, subject, subject_nick, created, creator, subject_time = row
    txn.execute(db.sql(LOAD_AFFILIATIONS), (jid,))
    affiliations = {user: affiliation for user, affiliation in txn.fetchall()}
    messages: list[HistoryRecord] = []
    if history > 0:
        txn.execute(db.sql(LOAD_HISTORY), (jid, history))
        messages = [
            HistoryRecord(
                stanza_id=stanza_id,
                timestamp=_seconds(ts),
                nick=nick,
                sender=sender,
                occupant_id=occupant_id,
                xml=xml,
            )
            for stanza_id, ts, nick, sender, occupant_id, xml in txn.fetchall()
        ]
        messages.reverse()
    settings = _settings(config)
    return RoomRecord(
        jid=jid,
        config=settings if settings is not None else {},
        name=name,
        public=bool(public),
        subject=subject,
        subject_nick=subject_nick,
        subject_time=None if subject_time is None else _seconds(subject_time),
        created=_seconds(created),
        creator=creator if isinstance(creator, str) else "",
        affiliations=affiliations,
        history=tuple(messages),
        unreadable=(("config", ""),) if settings is None else (),
    )


def select_column(txn: Any, db: Database, query: str) -> list[Any]:
    txn.execute(db.sql(query))
    return [row[0] for row in txn.fetchall()]


def select_rows(txn: Any, db: Database, query: str) -> list[tuple[Any, ...]]:
    txn.execute(db.sql(query))
    return [tuple(row) for row in txn.fetchall()]


def write_batch(txn: Any, db: Database, batch: Sequence[Write]) -> None:
    """One transaction: every write of the batch, in order, then the history trims."""
    if db.begin_write is not None:
        txn.execute(db.begin_write)
    trims: dict[str, int | None] = {}
    messages: list[tuple[Any, ...]] = []  # a run of appends, sent in one executemany
    for write in batch:
        room = write.room
        if write.kind == "message":
            message, keep = write.args
            messages.append(
                (
                    room,
                    message.stanza_id,
                    message.timestamp,
                    message.nick,
                    message.sender,
                    message.occupant_id,
                    message.xml,
                )
            )
            trims[room] = keep
            continue
        if messages:
            txn.executemany(db.sql(APPEND_MESSAGE), messages)
            messages = []
        if write.kind == "retract":
            stanza_id, xml = write.args
            txn.execute(db.sql(RETRACT_MESSAGE), (xml, room, stanza_id))
        elif write.kind == "save":
            encoded, name, public, subject, subject_nick, now, creator, stamp = write.args
            txn.execute(
                db.sql(SAVE_ROOM),
                (room, name, public, encoded, subject, subject_nick, now, now, creator, stamp),
            )
        elif write.kind == "affiliation":
            user, affiliation = write.args
            if affiliation == "none":
                txn.execute(db.sql(REMOVE_AFFILIATION), (room, user))
            else:
                txn.execute(db.sql(SET_AFFILIATION), (room, user, affiliation))
        elif write.kind in ("delete", "bury"):
            for statement in DELETE_ROOM:
                txn.execute(db.sql(statement), (room,))
            trims.pop(room, None)
            if write.kind == "bury":
                alternate, reason, expires = write.args
                txn.execute(db.sql(BURY_ROOM), (room, alternate, reason, expires))
    if messages:
        txn.executemany(db.sql(APPEND_MESSAGE), messages)
    # Once per room and batch, not per message: a burst of messages trims once.
    for room, keep in trims.items():
        if keep is None:
            continue
        if keep == 0:
            txn.execute(db.sql("DELETE FROM messages WHERE room = ?"), (room,))
        else:
            txn.execute(db.sql(TRIM_MESSAGES), (room, room, keep - 1))


# -- the archive ---------------------------------------------------------------------------------


def _record(row: Sequence[Any]) -> HistoryRecord:
    stanza_id, ts, nick, sender, occupant_id, xml = row[:6]
    return HistoryRecord(
        stanza_id=stanza_id,
        timestamp=_seconds(ts),
        nick=nick,
        sender=sender,
        occupant_id=occupant_id,
        xml=xml,
    )


def _rows_of_ids(txn: Any, db: Database, room: str, stanza_ids: Sequence[str]) -> list[Any]:
    """The rows of those stanza ids in the room, ``RECORD`` then ``id``, through the
    ``(room, stanza_id)`` index."""
    rows: list[Any] = []
    for start in range(0, len(stanza_ids), IDS_AT_ONCE):
        chunk = stanza_ids[start : start + IDS_AT_ONCE]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT {RECORD}, id FROM messages WHERE room = ? AND stanza_id IN ({marks})"
        txn.execute(db.sql(query), (room, *chunk))
        rows.extend(txn.fetchall())
    return rows


def _positions(txn: Any, db: Database, room: str, query: ArchiveQuery) -> dict[str, Position]:
    """Where the query's id fields are; :class:`UnknownStanzaIdError` for one not stored."""
    named = named_ids(query)
    if not named:
        return {}
    found = {row[0]: (_seconds(row[1]), int(row[6])) for row in _rows_of_ids(txn, db, room, named)}
    for stanza_id in named:
        if stanza_id not in found:
            raise UnknownStanzaIdError(stanza_id)
    return found


def query_archive(txn: Any, db: Database, room: str, query: ArchiveQuery) -> ArchivePage:
    if db.begin is not None:
        txn.execute(db.begin)  # the ids and the page from one snapshot
    positions = _positions(txn, db, room, query)
    if query.ids:
        rows = _rows_of_ids(txn, db, room, list(dict.fromkeys(query.ids)))
        ordered = sorted(((_seconds(row[1]), int(row[6])), _record(row)) for row in rows)
        return select_page(ordered, query, positions)
    where = ["room = ?"]
    params: list[Any] = [room]
    # One lower and one upper bound, whichever is tighter, so the index range starts (or
    # ends) right there: past an id (exclusive), or from a time (inclusive).
    lower, upper = lower_bound(query, positions), upper_bound(query, positions)
    if lower is not None and (query.start is None or query.start <= lower[0]):
        where.append("(ts, id) > (?, ?)")
        params += lower
    elif query.start is not None:
        where.append("ts >= ?")
        params.append(float(query.start))
    if upper is not None and (query.end is None or query.end >= upper[0]):
        where.append("(ts, id) < (?, ?)")
        params += upper
    elif query.end is not None:
        where.append("ts <= ?")
        params.append(float(query.end))
    if query.nick is not None:
        where.append("nick = ?")
        params.append(query.nick)
    if query.sender is not None:
        where.append("sender = ?")
        params.append(query.sender)
    backward = is_backward(query)
    order = "ts DESC, id DESC" if backward else "ts, id"
    sql = f"SELECT {RECORD} FROM messages WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    params.append(query.limit + 1)
    txn.execute(db.sql(sql), params)
    rows = txn.fetchall()
    complete = len(rows) <= query.limit
    records = [_record(row) for row in rows[: query.limit]]
    if backward:
        records.reverse()
    return ArchivePage(tuple(records), complete)


def archive_bounds(txn: Any, db: Database, room: str) -> tuple[HistoryRecord, HistoryRecord] | None:
    if db.begin is not None:
        txn.execute(db.begin)
    txn.execute(db.sql(OLDEST), (room,))
    oldest = txn.fetchone()
    if oldest is None:
        return None
    txn.execute(db.sql(NEWEST), (room,))
    newest = txn.fetchone()
    return _record(oldest), _record(newest if newest is not None else oldest)


def find_message(txn: Any, db: Database, room: str, stanza_id: str) -> HistoryRecord | None:
    txn.execute(db.sql(FIND_MESSAGE), (room, stanza_id))
    row = txn.fetchone()
    return None if row is None else _record(row)


# -- repairs (the admin API) ---------------------------------------------------------------------

LIST_ROOMS = (
    "SELECT jid, name, is_public, created, creator FROM rooms WHERE jid > ? ORDER BY jid LIMIT ?"
)
HAS_ROOM = "SELECT 1 FROM rooms WHERE jid = ?"
DELETE_MESSAGES = "DELETE FROM messages WHERE room = ?"


def list_rooms(txn: Any, db: Database, after: str, limit: int) -> list[RoomSummary]:
    """A page of the ``rooms`` primary key: one index range, whatever the page's place."""
    txn.execute(db.sql(LIST_ROOMS), (after, limit))
    return [
        RoomSummary(
            jid,
            name if isinstance(name, str) else "",
            bool(public),
            _seconds(created),
            creator if isinstance(creator, str) else "",
        )
        for jid, name, public, created, creator in txn.fetchall()
    ]


def has_room(txn: Any, db: Database, jid: str) -> bool:
    txn.execute(db.sql(HAS_ROOM), (jid,))
    return txn.fetchone() is not None


def delete_messages(txn: Any, db: Database, room: str, stanza_ids: Sequence[str] | None) -> int:
    """One transaction: the room's messages of those ids (all of them for None); how many."""
    if db.begin_write is not None:
        txn.execute(db.begin_write)
    if stanza_ids is None:
        txn.execute(db.sql(DELETE_MESSAGES), (room,))
        return int(txn.rowcount)
    removed = 0
    unique = list(dict.fromkeys(stanza_ids))
    for start in range(0, len(unique), IDS_AT_ONCE):
        chunk = unique[start : start + IDS_AT_ONCE]
        marks = ", ".join("?" * len(chunk))
        query = f"{DELETE_MESSAGES} AND stanza_id IN ({marks})"
        txn.execute(db.sql(query), (room, *chunk))
        removed += int(txn.rowcount)
    return removed


# -- retention -----------------------------------------------------------------------------------


def _cutoff(
    txn: Any, db: Database, room: str, before: float | None, keep: int | None
) -> Position | None:
    """The position before which the room's messages go (exclusive), or None: none go."""
    cutoffs: list[Position] = []
    if before is not None:
        cutoffs.append((float(before), 0))  # ids start at 1: (ts, id) < (before, 0) is ts < before
    if keep is not None:
        if keep == 0:
            txn.execute(db.sql(NEWEST), (room,))
            newest = txn.fetchone()
            if newest is not None:
                cutoffs.append((float(newest[1]), int(newest[6]) + 1))
        else:
            txn.execute(db.sql(KEEP_FROM), (room, keep - 1))
            row = txn.fetchone()
            if row is not None:  # else the room has no more than `keep`
                cutoffs.append((float(row[0]), int(row[1])))
    if not cutoffs:
        return None
    cutoff = max(cutoffs)
    txn.execute(db.sql(OLDEST), (room,))
    oldest = txn.fetchone()
    if oldest is None or (float(oldest[1]), int(oldest[6])) >= cutoff:
        return None
    return cutoff


def prune_plan(
    txn: Any,
    db: Database,
    after: str,
    before: float | None,
    keep: int | None,
    rooms: int,
) -> tuple[str | None, Position | None]:
    """Looks at the rooms after ``after`` (at most ``rooms`` of them, a short read) for the
    first one with messages to remove: ``(room, cutoff)``; ``(last room looked at, None)``
    when none of them has any; ``(None, None)`` past the last room."""
    if db.begin is not None:
        txn.execute(db.begin)
    room = after
    for _ in range(rooms):
        txn.execute(db.sql(NEXT_ROOM), (room,))
        row = txn.fetchone()
        if row is None or row[0] is None:
            return None, None
        room = row[0]
        cutoff = _cutoff(txn, db, room, before, keep)
        if cutoff is not None:
            return room, cutoff
    return room, None


def prune_chunk(txn: Any, db: Database, room: str, cutoff: Position, chunk: int) -> int:
    """One transaction: the room's oldest ``chunk`` messages before ``cutoff``; how many."""
    if db.begin_write is not None:
        txn.execute(db.begin_write)
    txn.execute(db.sql(PRUNE_CHUNK), (room, float(cutoff[0]), int(cutoff[1]), chunk))
    return int(txn.rowcount)


# -- tombstones of destroyed rooms ---------------------------------------------------------------


def tombstones(txn: Any, db: Database, now: float) -> list[Tombstone]:
    txn.execute(db.sql(TOMBSTONES), (now,))
    return [
        Tombstone(
            jid,
            alternate if isinstance(alternate, str) else "",
            reason if isinstance(reason, str) else "",
            _seconds(expires),
        )
        for jid, alternate, reason, expires in txn.fetchall()
    ]


def prune_tombstones(txn: Any, db: Database, now: float) -> int:
    if db.begin_write is not None:
        txn.execute(db.begin_write)
    txn.execute(db.sql(PRUNE_TOMBSTONES), (now,))
    return int(txn.rowcount)
