"""Rooms that last: the room store the MUC service is handed, like the authorizer.

``build_store(settings.storage)`` gives the configured store, not yet open; ``open()`` it before
use. At start-up, before the reactor runs, ``prepare_database(settings.storage)`` checks the
database synchronously (reachable, schema up to date) and raises :class:`StoreError` with the one
line to print.
"""

from __future__ import annotations

from typing import Any

from mucauth.settings import StorageSettings
from mucauth.store.base import (
    AFFILIATIONS,
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    IRoomStore,
    RoomRecord,
    RoomSummary,
    StoreError,
    Tombstone,
    UnknownStanzaIdError,
)
from mucauth.store.dialects import Database, PostgresDatabase, SQLiteDatabase
from mucauth.store.memory import MemoryRoomStore
from mucauth.store.migrations import migrate
from mucauth.store.sql import SQLRoomStore

__all__ = [
    "AFFILIATIONS",
    "ArchivePage",
    "ArchiveQuery",
    "HistoryRecord",
    "IRoomStore",
    "MemoryRoomStore",
    "RoomRecord",
    "RoomSummary",
    "SQLRoomStore",
    "StoreError",
    "Tombstone",
    "UnknownStanzaIdError",
    "build_store",
    "database_for",
    "prepare_database",
]


def database_for(settings: StorageSettings) -> Database:
    if settings.url is not None:
        return PostgresDatabase(settings.url, settings.password, settings.pool_size)
    return SQLiteDatabase(settings.path)


def build_store(settings: StorageSettings | None, reactor: Any = None) -> IRoomStore | None:
    """The store ``settings`` describe; None without settings or with ``enabled = no`` (every
    room in memory only)."""
    if settings is None or not settings.enabled:
        return None
    return SQLRoomStore(
        database_for(settings), reactor, max_pending_writes=settings.max_pending_writes
    )


def prepare_database(settings: StorageSettings) -> None:
    """Connect, migrate and disconnect, blocking: for start-up, before the reactor runs.

    Raises :class:`StoreError` whose message is one line naming the database (never its
    password) and the reason.
    """
    if not settings.enabled:
        return
    db = database_for(settings)
    try:
        connection = db.connect()
    except Exception as e:
        raise StoreError(f"cannot open the room store {db.where}: {db.describe(e)}") from None
    try:
        try:
            migrate(connection.cursor(), db)
            connection.commit()
        except StoreError:
            connection.rollback()
            raise
        except Exception as e:
            connection.rollback()
            raise StoreError(
                f"cannot prepare the room store {db.where}: {db.describe(e)}"
            ) from None
    finally:
        connection.close()
