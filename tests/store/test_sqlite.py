"""The SQL store on SQLite files in a temp dir: the contract, migrations, a locked database."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from mucauth.settings import StorageSettings
from mucauth.store import SQLRoomStore
from mucauth.store.dialects import SQLiteDatabase
from tests.store.archive_contract import ArchiveContract
from tests.store.contract import RoomStoreContract
from tests.store.sql_contract import SQLStoreContract


class SQLiteStoreTests(SQLStoreContract, ArchiveContract, RoomStoreContract, TestCase):
    def database(self) -> SQLiteDatabase:
        if not hasattr(self, "directory"):
            self.directory = Path(tempfile.mkdtemp(prefix="mucauth-sqlite-"))
            self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        # A short busy timeout: a locked database fails (and is retried) quickly.
        return SQLiteDatabase(str(self.directory / "rooms.sqlite"), busy_timeout=0.05)

    def settings(self) -> StorageSettings:
        return StorageSettings(path=self.database().path)

    def unreachable_settings(self) -> StorageSettings:
        return StorageSettings(path=str(self.database().path) + ".missing/dir/rooms.sqlite")

    def raw_execute(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with sqlite3.connect(self.database().path) as connection:
            return connection.execute(query, params).fetchall()

    def take_database_away(self) -> Callable[[], Any]:
        """Another process holds the write lock (a backup, a sqlite3 shell): writes fail."""
        holder = sqlite3.connect(self.database().path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")

        def give_back() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        return give_back

    def test_a_store_is_one_file(self) -> None:
        store = SQLRoomStore(self.database(), reactor)
        self.assertEqual(store.database.where, f"sqlite:{self.database().path}")
