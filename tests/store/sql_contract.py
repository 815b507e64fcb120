"""What the SQL store does on either database: migrations, start-up errors, a database that goes
away while writes are made and comes back, the batch delay, the archive's pruning in chunks.

A class mixes ``SQLStoreContract`` (before ``RoomStoreContract``) into a trial ``TestCase`` and
gives a fresh database per test (``database``), raw access to it, and a way to take it away.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher

from mucauth.settings import StorageSettings
from mucauth.store import (
    ArchiveQuery,
    SQLRoomStore,
    StoreError,
    build_store,
    prepare_database,
    queries,
)
from mucauth.store.dialects import Database
from mucauth.store.migrations import LATEST, SchemaTooNewError
from tests.store.archive_contract import THIRD, ids, numbered
from tests.store.contract import ALICE, OTHER, ROOM, message, save

PASSWORD = "pg-S3CRET-pass"


if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase as _Base
else:
    _Base = object


class SQLStoreContract(_Base):
    store: SQLRoomStore

    # -- what each database provides ---------------------------------------------------------

    def database(self) -> Database:
        """This test's database (the same one on every call)."""
        raise NotImplementedError

    def settings(self) -> StorageSettings:
        raise NotImplementedError

    def unreachable_settings(self) -> StorageSettings:
        """Settings for a database that cannot be opened (with PASSWORD in them if any)."""
        raise NotImplementedError

    def raw_execute(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def take_database_away(self) -> Any:
        """Make writes fail; returns (maybe through a Deferred) a callable giving it back."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    def new_store(self, **kw: Any) -> SQLRoomStore:
        kw.setdefault("retry_first", 0.02)
        kw.setdefault("retry_max", 0.2)
        return SQLRoomStore(self.database(), reactor, **kw)

    @inlineCallbacks
    def make_store(self) -> Generator[Any, Any, SQLRoomStore]:
        store = self.new_store()
        yield store.open()
        return store

    @inlineCallbacks
    def opened(self, **kw: Any) -> Generator[Any, Any, SQLRoomStore]:
        store = self.new_store(**kw)
        yield store.open()
        self.addCleanup(store.close)
        return store

    def logged(self) -> list[LogEvent]:
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    @inlineCallbacks
    def wait_for(self, condition: Callable[[], bool], what: str) -> Generator[Any, Any, None]:
        for _ in range(2000):  # 20 s at most; no timing is asserted
            if condition():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"still waiting for {what}")

    @inlineCallbacks
    def away(self) -> Generator[Any, Any, Callable[[], Any]]:
        give_back = yield maybeDeferred(self.take_database_away)
        given: list[bool] = []

        def back() -> Any:
            if given:
                return None
            given.append(True)
            return maybeDeferred(give_back)

        self.addCleanup(back)
        return back

    # -- migrations --------------------------------------------------------------------------

    def versions(self) -> list[int]:
        return [row[0] for row in self.raw_execute("SELECT version FROM schema_version")]

    def test_an_empty_database_is_migrated(self) -> None:
        self.assertEqual(self.versions(), list(range(1, LATEST + 1)))
        self.assertEqual(self.raw_execute("SELECT COUNT(*) FROM rooms"), [(0,)])

    @inlineCallbacks
    def test_reopening_keeps_rooms_and_migrates_nothing(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.store.append_message(ROOM, message(1), 10)
        yield self.store.close()
        events = self.logged()
        again = yield self.opened()
        record = yield again.load_room(ROOM, 10)
        self.assertEqual(record.affiliations, {ALICE: "owner"})
        self.assertEqual(record.history, (message(1),))
        self.assertEqual(self.versions(), list(range(1, LATEST + 1)))
        self.assertFalse([e for e in events if "migrated" in formatEvent(e)])

    @inlineCallbacks
    def test_a_subject_saved_before_its_time_was_kept_has_none(
        self,
    ) -> Generator[Any, Any, None]:
        save(self.store, subject_time=1_714_564_800.0)
        yield self.store.flush()
        # What schema step 3 leaves in the rows it finds: no time.
        self.raw_execute("UPDATE rooms SET subject_time = NULL")
        record = yield self.store.load_room(ROOM, 0)
        self.assertEqual((record.subject, record.subject_time), ("Today: limits", None))

    @inlineCallbacks
    def test_a_newer_schema_is_refused(self) -> Generator[Any, Any, None]:
        self.raw_execute(
            "INSERT INTO schema_version (version, summary, applied) VALUES (99, 'future', 0)"
        )
        error = yield self.assertFailure(self.new_store().open(), SchemaTooNewError)
        self.assertIn("schema version 99, newer than this mucauth", str(error))
        with self.assertRaises(SchemaTooNewError):
            prepare_database(self.settings())

    def test_prepare_database_at_start_up(self) -> None:
        prepare_database(self.settings())  # already migrated: nothing to do, no error
        self.assertEqual(self.versions(), list(range(1, LATEST + 1)))

    @inlineCallbacks
    def test_an_unreachable_database_is_one_clear_line(self) -> Generator[Any, Any, None]:
        settings = self.unreachable_settings()
        store = build_store(settings, reactor)
        assert isinstance(store, SQLRoomStore)
        error = yield self.assertFailure(store.open(), StoreError)
        with self.assertRaises(StoreError) as caught:
            prepare_database(settings)
        for message_ in (str(error), str(caught.exception)):
            self.assertTrue(message_.startswith("cannot open the room store "), message_)
            self.assertNotIn("\n", message_)
            self.assertNotIn(PASSWORD, message_)
            self.assertIn(store.database.where, message_)

    # -- a database that goes away -----------------------------------------------------------

    @inlineCallbacks
    def test_writes_while_away_are_retried_and_land_in_order(self) -> Generator[Any, Any, None]:
        save(self.store, OTHER)
        yield self.store.flush()
        events = self.logged()
        back = yield self.away()
        save(self.store, name="before")
        self.store.set_affiliation(ROOM, ALICE, "member")
        for n in range(3):
            self.store.append_message(ROOM, message(n), 2)
        self.store.delete_room(OTHER)
        yield self.wait_for(lambda: self._tries(events) >= 2, "two failed tries")
        # Made while a batch is being retried: queued behind it, never ahead.
        self.store.set_affiliation(ROOM, ALICE, "owner")
        save(self.store, OTHER, name="again")
        save(self.store, name="after")
        self.assertGreater(self.store.pending_writes, 0)
        yield back()
        yield self.store.flush()
        self.assertEqual(self.store.pending_writes, 0)
        record = yield self.store.load_room(ROOM, 10)
        self.assertEqual(record.name, "after")
        self.assertEqual(record.affiliations, {ALICE: "owner"})
        self.assertEqual(record.history, (message(1), message(2)))
        other = yield self.store.load_room(OTHER, 10)
        self.assertEqual(other.name, "again")
        self.assertEqual(self.store.dropped_writes, 0)
        text = [formatEvent(e) for e in events]
        self.assertTrue([t for t in text if "writing again after" in t], text)

    def _tries(self, events: list[LogEvent]) -> int:
        return len([e for e in events if "failed (try" in e.get("log_format", "")])

    @inlineCallbacks
    def test_past_the_bound_the_oldest_messages_are_dropped(self) -> Generator[Any, Any, None]:
        store = yield self.opened(max_pending_writes=5)
        events = self.logged()
        back = yield self.away()
        save(store)
        for n in range(10):
            store.append_message(ROOM, message(n), 100)
        self.assertEqual((store.pending_writes, store.dropped_writes), (5, 6))
        yield self.wait_for(lambda: self._tries(events) >= 1, "a failed try")
        yield back()
        record = yield store.load_room(ROOM, 100)
        self.assertEqual(record.history, tuple(message(n) for n in range(6, 10)))
        dropping = [e for e in events if "dropping the oldest" in e.get("log_format", "")]
        self.assertEqual(len(dropping), 1)
        self.assertEqual(dropping[0]["room"], ROOM)

    @inlineCallbacks
    def test_close_gives_up_after_its_timeout(self) -> Generator[Any, Any, None]:
        store = self.new_store(close_timeout=0.2)
        yield store.open()
        events = self.logged()
        back = yield self.away()
        save(store)
        yield self.wait_for(lambda: self._tries(events) >= 1, "a failed try")
        yield store.close()
        [line] = [formatEvent(e) for e in events if "closing with" in e.get("log_format", "")]
        self.assertIn("closing with 1 writes not saved", line)
        yield back()
        self.assertEqual(self.raw_execute("SELECT COUNT(*) FROM rooms"), [(0,)])
        self.assertEqual(self.store.pending_writes, 0)

    # -- the batch delay ---------------------------------------------------------------------

    @inlineCallbacks
    def test_writes_of_a_moment_share_one_transaction(self) -> Generator[Any, Any, None]:
        store = yield self.opened(batch_delay=0.3)
        batches = store.batches_written
        for n in range(5):
            store.append_message(ROOM, message(n), None)
            yield deferLater(reactor, 0.01, lambda: None)
        yield self.wait_for(lambda: store.pending_writes == 0, "the batch")
        self.assertEqual(store.batches_written - batches, 1)

    @inlineCallbacks
    def test_reads_and_close_do_not_wait_for_the_delay(self) -> Generator[Any, Any, None]:
        store = self.new_store(batch_delay=30.0)
        yield store.open()
        started = reactor.seconds()
        store.append_message(ROOM, message(1), None)
        page = yield store.query_archive(ROOM, ArchiveQuery())
        self.assertEqual(page.messages, (message(1),))
        store.append_message(ROOM, message(2), None)
        yield store.close()
        self.assertLess(reactor.seconds() - started, 15.0)
        self.assertEqual(
            self.raw_execute("SELECT stanza_id FROM messages ORDER BY id"), [("s1",), ("s2",)]
        )

    # -- pruning -----------------------------------------------------------------------------

    @inlineCallbacks
    def test_prune_goes_room_by_room_in_small_chunks(self) -> Generator[Any, Any, None]:
        chunks: list[int] = []
        original = queries.prune_chunk

        def counted(*args: Any) -> int:
            count = original(*args)
            chunks.append(count)
            return count

        self.patch(queries, "prune_chunk", counted)
        store = yield self.opened(prune_chunk=4, prune_rooms=2)
        rooms = [f"room{r}@rooms.example.org" for r in range(5)]
        for r, room in enumerate(rooms):
            for n in range(3 * r):  # 0, 3, 6, 9 and 12 messages
                store.append_message(room, message(n, room=room), None)
        removed = yield store.prune_archive(None, 2)
        self.assertEqual(removed, 0 + 1 + 4 + 7 + 10)
        self.assertTrue(chunks and max(chunks) <= 4, chunks)
        self.assertEqual(sum(chunks), removed)
        for r, room in enumerate(rooms):
            page = yield store.query_archive(room, ArchiveQuery())
            self.assertEqual(ids(page.messages), numbered(*range(3 * r))[-2:])

    @inlineCallbacks
    def test_prune_tries_again_while_the_database_is_away(self) -> Generator[Any, Any, None]:
        for room in (ROOM, OTHER, THIRD):
            for n in range(5):
                self.store.append_message(room, message(n, room=room), None)
        yield self.store.flush()
        events = self.logged()
        back = yield self.away()
        pruned = self.store.prune_archive(1_700_000_000.0 + 3, None)
        yield self.wait_for(
            lambda: any("pruning the archive failed" in e.get("log_format", "") for e in events),
            "a failed try",
        )
        yield back()
        self.assertEqual((yield pruned), 9)

    @inlineCallbacks
    def test_prune_fails_cleanly_once_its_tries_are_spent(self) -> Generator[Any, Any, None]:
        store = yield self.opened(prune_tries=2)
        store.append_message(ROOM, message(1), None)
        yield store.flush()
        yield self.away()
        error = yield self.assertFailure(store.prune_archive(None, 0), StoreError)
        self.assertIn("pruning the archive of", str(error))
        self.assertIn("stopped after 0 messages removed", str(error))
        self.assertNotIn("\n", str(error))

    # -- rows that cannot be read back, and the archive's lane ----------------------------------

    @inlineCallbacks
    def test_rows_the_store_cannot_read_are_named_not_fatal(self) -> Generator[Any, Any, None]:
        save(self.store)
        for n in range(3):
            self.store.append_message(ROOM, message(n), None)
        yield self.store.flush()
        self.raw_execute("UPDATE rooms SET config = ? WHERE jid = ?", ("{not json", ROOM))
        record = yield self.store.load_room(ROOM, 10)
        self.assertEqual(record.config, {})
        self.assertEqual(record.unreadable, (("config", ""),))
        self.assertEqual(record.name, "Maths")
        self.assertEqual(len(record.history), 3)
        self.raw_execute("UPDATE rooms SET config = ? WHERE jid = ?", ("[1, 2]", ROOM))
        self.assertEqual((yield self.store.load_room(ROOM, 10)).unreadable, (("config", ""),))

    @inlineCallbacks
    def test_room_loads_do_not_queue_behind_archive_reads(self) -> Generator[Any, Any, None]:
        save(self.store)
        for n in range(200):
            self.store.append_message(ROOM, message(n), None)
        yield self.store.flush()
        # Every connection of the pool open first: a connection made during the test would
        # time the connect, not the queue.
        yield gatherResults([self.store.load_room(ROOM, 1) for _ in range(4)])
        order: list[str] = []
        reads = []
        for n in range(40):
            read = self.store.query_archive(ROOM, ArchiveQuery(limit=100))
            reads.append(read.addCallback(lambda _, name: order.append(name), f"archive {n}"))
        load = self.store.load_room(ROOM, 10).addCallback(lambda _: order.append("load"))
        yield load
        yield gatherResults(reads)
        # Behind at most the few archive reads let into the pool (SQLite: exactly those, its
        # one connection answers in order), never behind all forty. No timing is asserted.
        self.assertLess(order.index("load"), 10, order[:12])
