"""The schema, as an ordered list of steps applied at start-up.

``schema_version`` holds one row per step applied. At start-up every step above the highest
row runs, each followed by its row, all in one transaction: a step that fails leaves the
database as it was. A database whose highest row is above the last step known here was written
by a newer mucauth; this one refuses to start rather than write to tables it does not know.

Two processes starting at once on one PostgreSQL must not both migrate: the transaction first
takes an advisory lock (released at commit), so the second waits, then finds nothing to do.
On SQLite, ``BEGIN IMMEDIATE`` takes the file's write lock for the same purpose.

A step is never edited once released: a change is a new step at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mucauth.store.base import StoreError
from mucauth.store.dialects import Database

__all__ = ["LATEST", "MIGRATIONS", "Migration", "SchemaTooNewError", "migrate"]


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer mucauth."""


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: Callable[[Database], list[str]]


def _rooms_affiliations_messages(db: Database) -> list[str]:
    # Affiliations and messages refer to their room by JID, without a foreign key: the writes
    # of one batch may come in any order the callers made them, and delete_room removes all
    # three explicitly. Messages are the archive too (XEP-0313): ts ranges per room, ordered by
    # (ts, id); stanza_id is what a client pages by.
    return [
        """CREATE TABLE rooms (
            jid TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            is_public BOOLEAN NOT NULL,
            config TEXT NOT NULL,
            subject TEXT NOT NULL,
            subject_nick TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE affiliations (
            room TEXT NOT NULL,
            user_jid TEXT NOT NULL,
            affiliation TEXT NOT NULL
                CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
            PRIMARY KEY (room, user_jid)
        )""",
        f"""CREATE TABLE messages (
            id {db.identity},
            room TEXT NOT NULL,
            stanza_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            nick TEXT NOT NULL,
            sender TEXT NOT NULL,
            occupant_id TEXT,
            xml TEXT NOT NULL,
            UNIQUE (room, stanza_id)
        )""",
        "CREATE INDEX messages_room_ts ON messages (room, ts, id)",
    ]


def _room_creators(db: Database) -> list[str]:
    # Who created each room, so the rooms one user may have created are bounded across
    # restarts ([limits] max_rooms_per_user). Rooms saved before have no known creator ('')
    # and count against nobody. No index: the service counts from its own index, read once
    # per stream through list_rooms, never by a query on this column.
    return ["ALTER TABLE rooms ADD COLUMN creator TEXT NOT NULL DEFAULT ''"]


def _subject_times(db: Database) -> list[str]:
    # When the subject was set (seconds since the epoch), sent with it at every join as a
    # delay stamp. NULL: a subject stored before its time was kept, or none set; such a
    # subject goes out without a stamp until it is next changed.
    return ["ALTER TABLE rooms ADD COLUMN subject_time DOUBLE PRECISION"]


def _tombstones(db: Database) -> list[str]:
    # Destroyed persistent rooms remembered until they expire, so joins are refused `gone`
    # with the alternate venue. Read in full as the stream comes up, pruned by expiry.
    return [
        """CREATE TABLE tombstones (
            jid TEXT PRIMARY KEY,
            alternate TEXT NOT NULL,
            reason TEXT NOT NULL,
            expires DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX tombstones_expires ON tombstones (expires)",
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "rooms, affiliations, messages", _rooms_affiliations_messages),
    Migration(2, "rooms' creators", _room_creators),
    Migration(3, "subjects' times", _subject_times),
    Migration(4, "tombstones of destroyed rooms", _tombstones),
)
LATEST = MIGRATIONS[-1].version


def migrate(cursor: Any, db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the schema up to date inside the caller's transaction; the version found before.

    The caller commits (or rolls back when this raises). ``cursor`` is a DB-API cursor or an
    adbapi Transaction.
    """
    latest = migrations[-1].version if migrations else 0
    if db.begin_write is not None:
        cursor.execute(db.begin_write)
    if db.migration_lock is not None:
        cursor.execute(db.migration_lock)
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, summary TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
    )
    cursor.execute("SELECT MAX(version) FROM schema_version")
    row = cursor.fetchone()
    found = int(row[0]) if row and row[0] is not None else 0
    if found > latest:
        raise SchemaTooNewError(
            f"the database {db.where} has schema version {found}, newer than this mucauth "
            f"knows ({latest}): run the newer mucauth, or restore a backup"
        )
    for step in migrations:
        if step.version <= found:
            continue
        for statement in step.statements(db):
            cursor.execute(statement)
        cursor.execute(
            db.sql("INSERT INTO schema_version (version, summary, applied) VALUES (?, ?, ?)"),
            (step.version, step.summary, time.time()),
        )
    return found
