"""The SQL store on a real PostgreSQL started for this class: the same contract as SQLite, plus
what only a shared server has (two processes starting at once, a server that goes away).

Without Debian's postgresql package every test here fails, saying so: never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent
from twisted.trial.unittest import TestCase

from examples._stack import free_port
from mucauth.settings import Secret, StorageSettings
from mucauth.store import SQLRoomStore, prepare_database
from mucauth.store.dialects import PostgresDatabase
from mucauth.store.migrations import LATEST
from tests.store.archive_contract import ArchiveContract
from tests.store.contract import ROOM, RoomStoreContract, save
from tests.store.sql_contract import PASSWORD, SQLStoreContract
from tests.support.postgres import PostgresCluster
from tests.support.stack import ClassFixture

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.postgresql


class PostgresStoreTests(
    SQLStoreContract, ArchiveContract, RoomStoreContract, ClassFixture, TestCase
):
    @classmethod
    def start_fixture(cls) -> PostgresCluster:
        return PostgresCluster().start()

    @classmethod
    def stop_fixture(cls, fixture: PostgresCluster) -> None:
        fixture.remove()

    @property
    def cluster(self) -> PostgresCluster:
        cluster: PostgresCluster = type(self).fixture()
        return cluster

    def database(self) -> PostgresDatabase:
        if not hasattr(self, "name"):
            self.name = self.cluster.create_database()
        return PostgresDatabase(self.cluster.url(self.name), pool_size=2, connect_timeout=2)

    def settings(self) -> StorageSettings:
        return StorageSettings(url=self.database().url)

    def unreachable_settings(self) -> StorageSettings:
        return StorageSettings(url=f"postgresql://mucauth:{PASSWORD}@127.0.0.1:{free_port()}/x")

    def raw_execute(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.cluster.execute(self.name, query.replace("?", "%s"), params)

    @inlineCallbacks
    def take_database_away(self) -> Generator[Any, Any, Callable[[], Any]]:
        """The server stops (fast shutdown: connections cut) and starts again later."""
        cluster = self.cluster
        yield deferToThread(cluster.stop)
        return lambda: deferToThread(cluster.start)

    def test_the_password_goes_apart_and_never_shows(self) -> None:
        db = PostgresDatabase(f"postgresql://mucauth:{PASSWORD}@db.example.org:5433/rooms")
        self.assertEqual(db.where, "postgresql://***@db.example.org:5433/rooms")
        error = Exception(f'password authentication failed for "{PASSWORD}"\nmore')
        self.assertEqual(db.describe(error), 'Exception: password authentication failed for "***"')
        from_file = PostgresDatabase("postgresql://mucauth@h/rooms", Secret(PASSWORD))
        self.assertNotIn(PASSWORD, from_file.describe(Exception(f"x {PASSWORD} y")))

    @inlineCallbacks
    def test_two_processes_starting_at_once_migrate_once(self) -> Generator[Any, Any, None]:
        fresh = self.cluster.create_database()
        url = self.cluster.url(fresh)
        events = self.logged()
        first, second = (SQLRoomStore(PostgresDatabase(url), reactor) for _ in range(2))
        yield gatherResults([first.open(), second.open()])
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        migrated = [e for e in events if "migrated" in formatEvent(e)]
        self.assertEqual(len(migrated), 1, [formatEvent(e) for e in migrated])
        versions = self.cluster.execute(fresh, "SELECT version FROM schema_version")
        self.assertEqual(versions, [(v,) for v in range(1, LATEST + 1)])
        # Both serve the same rooms: what one writes, the other reads.
        save(first, name="shared")
        yield first.flush()
        record = yield second.load_room(ROOM, 10)
        self.assertEqual(record.name, "shared")

    def test_prepare_database_on_a_fresh_database(self) -> None:
        fresh = self.cluster.create_database()
        prepare_database(StorageSettings(url=self.cluster.url(fresh)))
        versions = self.cluster.execute(fresh, "SELECT version FROM schema_version")
        self.assertEqual(versions, [(v,) for v in range(1, LATEST + 1)])

    @inlineCallbacks
    def test_reads_after_a_server_restart_do_not_fail(self) -> Generator[Any, Any, None]:
        save(self.store, name="kept")
        yield self.store.flush()
        # Reads at once open a connection on each pool thread; all of them die with the server.
        names = yield gatherResults([self.store.load_room(ROOM, 10) for _ in range(8)])
        self.assertEqual({r.name for r in names}, {"kept"})
        back = yield self.away()
        yield back()
        self.assertEqual((yield self.store.load_room(ROOM, 10)).name, "kept")
        self.assertEqual((yield self.store.room_jids()), [ROOM])
