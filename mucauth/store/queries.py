"""What runs in the database threads: every statement of the store, and the two interactions
that use them (one write batch, one room load). Written once for both databases: ``?``
placeholders (``Database.sql`` adapts them) and SQL both speak.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mucauth.store.base import HistoryRecord, RoomRecord
from mucauth.store.dialects import Database
from mucauth.store.writes import Write

__all__ = ["load_room", "select_column", "select_rows", "write_batch"]

SAVE_ROOM = """
    INSERT INTO rooms (jid, name, is_public, config, subject, subject_nick, created, updated)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (jid) DO UPDATE SET
        name = excluded.name, is_public = excluded.is_public, config = excluded.config,
        subject = excluded.subject, subject_nick = excluded.subject_nick,
        updated = excluded.updated
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
)
LOAD_ROOM = """
    SELECT name, is_public, config, subject, subject_nick, created FROM rooms WHERE jid = ?
"""
LOAD_AFFILIATIONS = "SELECT user_jid, affiliation FROM affiliations WHERE room = ?"
LOAD_HISTORY = """
    SELECT stanza_id, ts, nick, sender, occupant_id, xml FROM messages WHERE room = ?
    ORDER BY ts DESC, id DESC LIMIT ?
"""


def load_room(txn: Any, db: Database, jid: str, history: int) -> RoomRecord | None:
    if db.begin is not None:
        txn.execute(db.begin)  # one snapshot for the three queries
    txn.execute(db.sql(LOAD_ROOM), (jid,))
    row = txn.fetchone()
    if row is None:
        return None
    name, public, config, subject, subject_nick, created = row
    txn.execute(db.sql(LOAD_AFFILIATIONS), (jid,))
    affiliations = {user: affiliation for user, affiliation in txn.fetchall()}
    messages: list[HistoryRecord] = []
    if history > 0:
        txn.execute(db.sql(LOAD_HISTORY), (jid, history))
        messages = [
            HistoryRecord(
                stanza_id=stanza_id,
                timestamp=float(ts),
                nick=nick,
                sender=sender,
                occupant_id=occupant_id,
                xml=xml,
            )
            for stanza_id, ts, nick, sender, occupant_id, xml in txn.fetchall()
        ]
        messages.reverse()
    return RoomRecord(
        jid=jid,
        config=json.loads(config),
        name=name,
        public=bool(public),
        subject=subject,
        subject_nick=subject_nick,
        created=float(created),
        affiliations=affiliations,
        history=tuple(messages),
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
        if write.kind == "save":
            encoded, name, public, subject, subject_nick, now = write.args
            txn.execute(
                db.sql(SAVE_ROOM),
                (room, name, public, encoded, subject, subject_nick, now, now),
            )
        elif write.kind == "affiliation":
            user, affiliation = write.args
            if affiliation == "none":
                txn.execute(db.sql(REMOVE_AFFILIATION), (room, user))
            else:
                txn.execute(db.sql(SET_AFFILIATION), (room, user, affiliation))
        elif write.kind == "delete":
            for statement in DELETE_ROOM:
                txn.execute(db.sql(statement), (room,))
            trims.pop(room, None)
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
