"""The write-behind queue alone, on a fake database and a fake clock: batches, coalescing,
order, retries with backoff, the pending bound, refused writes, flush, the batch delay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mucauth.store.writes import Write, WriteQueue


class DownError(Exception):
    """The database is away: worth retrying."""


class RefusedError(Exception):
    """The database will never take this: not worth retrying."""


class FakeDatabase:
    def __init__(self) -> None:
        self.batches: list[tuple[list[tuple[str, str, Any]], Deferred[None]]] = []

    def __call__(self, batch: Sequence[Write]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.batches.append(([(w.kind, w.room, w.args) for w in batch], d))
        return d

    def last(self) -> list[tuple[str, str, Any]]:
        return self.batches[-1][0]

    def succeed(self) -> None:
        self.batches[-1][1].callback(None)

    def fail(self, error: Exception) -> None:
        self.batches[-1][1].errback(Failure(error))


class WriteQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.db = FakeDatabase()
        self.queue = self.make_queue()

    def make_queue(self, max_pending: int = 1000, batch_delay: float = 0.0) -> WriteQueue:
        return WriteQueue(
            self.db,
            self.clock,
            max_pending=max_pending,
            is_transient=lambda f: f.check(DownError) is not None,
            describe=lambda f: str(f.value),
            where="test",
            retry_first=0.5,
            retry_max=4.0,
            batch_delay=batch_delay,
        )

    def test_writes_of_one_turn_are_one_batch_in_order(self) -> None:
        self.queue.add("save", "r1", "a")
        self.queue.add("message", "r1", "m1")
        self.queue.add("delete", "r2", None)
        self.assertEqual(self.db.batches, [])  # nothing written inside the caller's turn
        self.clock.advance(0)
        self.assertEqual(
            self.db.last(), [("save", "r1", "a"), ("message", "r1", "m1"), ("delete", "r2", None)]
        )
        self.assertEqual(self.queue.pending, 3)
        self.db.succeed()
        self.assertEqual(self.queue.pending, 0)

    def test_overwriting_writes_are_coalesced_in_the_first_place(self) -> None:
        self.queue.add("save", "r1", "a")
        self.queue.add("message", "r1", "m1")
        self.queue.add("affiliation", "r1", ("alice", "member"))
        self.queue.add("save", "r1", "b")
        self.queue.add("affiliation", "r1", ("alice", "owner"))
        self.queue.add("affiliation", "r1", ("bob", "admin"))
        self.clock.advance(0)
        self.assertEqual(
            self.db.last(),
            [
                ("save", "r1", "b"),
                ("message", "r1", "m1"),
                ("affiliation", "r1", ("alice", "owner")),
                ("affiliation", "r1", ("bob", "admin")),
            ],
        )

    def test_a_delete_drops_the_queued_writes_of_its_room(self) -> None:
        self.queue.add("save", "r1", "a")
        self.queue.add("message", "r2", "m")
        self.queue.add("message", "r1", "m1")
        self.queue.add("delete", "r1", None)
        self.queue.add("save", "r1", "new")
        self.clock.advance(0)
        self.assertEqual(
            self.db.last(),
            [("message", "r2", "m"), ("delete", "r1", None), ("save", "r1", "new")],
        )

    def test_writes_during_a_batch_go_to_the_next_one(self) -> None:
        self.queue.add("save", "r1", "a")
        self.clock.advance(0)
        self.queue.add("save", "r1", "b")  # must not change the batch on its way
        self.queue.add("delete", "r1", None)  # nor drop it: the delete comes after it
        self.assertEqual(self.db.last(), [("save", "r1", "a")])
        self.db.succeed()
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("delete", "r1", None)])

    def test_a_failed_batch_is_retried_with_growing_pauses_then_the_rest(self) -> None:
        self.queue.add("save", "r1", "a")
        self.clock.advance(0)
        pauses = []
        for _ in range(5):
            self.db.fail(DownError("connection refused"))
            tries = len(self.db.batches)
            waited = 0.0
            while len(self.db.batches) == tries:
                self.clock.advance(0.25)
                waited += 0.25
            pauses.append(waited)
            if len(pauses) == 2:
                self.queue.add("message", "r1", "m1")  # made during the outage
                self.queue.add("save", "r1", "b")  # must not overtake the failed save
        self.assertEqual(pauses, [0.5, 1.0, 2.0, 4.0, 4.0])
        self.assertEqual(
            self.db.last(), [("save", "r1", "a"), ("message", "r1", "m1"), ("save", "r1", "b")]
        )
        self.db.succeed()
        self.assertEqual((self.queue.pending, self.queue.dropped), (0, 0))

    def test_a_refused_batch_is_written_one_by_one_dropping_only_the_refused(self) -> None:
        for n in range(3):
            self.queue.add("message", "r1", f"m{n}")
        self.clock.advance(0)
        self.db.fail(RefusedError("CHECK constraint failed"))
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m0")])
        self.db.succeed()
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m1")])
        self.db.fail(RefusedError("CHECK constraint failed"))
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m2")])
        self.db.succeed()
        self.assertEqual((self.queue.pending, self.queue.dropped), (0, 1))
        self.assertEqual(len(self.flushLoggedErrors(RefusedError)), 1)
        self.queue.add("message", "r1", "m3")
        self.queue.add("message", "r1", "m4")
        self.clock.advance(0)
        self.assertEqual(len(self.db.last()), 2)  # whole batches again

    def test_flush_waits_for_earlier_writes_only(self) -> None:
        self.queue.add("save", "r1", "a")
        flushed = self.queue.flush()
        self.clock.advance(0)
        self.queue.add("save", "r2", "b")
        self.assertNoResult(flushed)
        self.db.succeed()
        self.successResultOf(flushed)
        self.assertEqual(self.queue.pending, 1)
        self.successResultOf(self.make_queue().flush())  # nothing pending: at once

    def test_past_the_bound_the_oldest_queued_messages_go(self) -> None:
        queue = self.make_queue(max_pending=3)
        queue.add("save", "r1", "a")
        for n in range(5):
            queue.add("message", "r1", f"m{n}")
        queue.add("affiliation", "r1", ("alice", "owner"))  # never dropped for the bound
        self.assertEqual((queue.pending, queue.dropped), (3, 4))
        self.clock.advance(0)
        self.assertEqual(
            self.db.last(),
            [
                ("save", "r1", "a"),
                ("message", "r1", "m4"),
                ("affiliation", "r1", ("alice", "owner")),
            ],
        )

    def test_the_batch_on_its_way_is_never_dropped(self) -> None:
        queue = self.make_queue(max_pending=2)
        queue.add("message", "r1", "m0")
        self.clock.advance(0)
        for n in range(1, 4):
            queue.add("message", "r1", f"m{n}")
        self.assertEqual(queue.dropped, 2)
        self.db.succeed()
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m3")])

    def test_after_stop_nothing_is_tried_and_new_writes_are_counted(self) -> None:
        self.queue.add("save", "r1", "a")
        self.clock.advance(0)
        self.db.fail(DownError("gone"))
        self.queue.stop()
        self.clock.advance(60)
        self.assertEqual(len(self.db.batches), 1)
        self.queue.add("save", "r1", "b")
        self.assertEqual(self.queue.dropped, 1)

    def test_retractions_are_never_coalesced(self) -> None:
        self.queue.add("retract", "r1", ("s1", "<a/>"))
        self.queue.add("message", "r1", "m1")
        self.queue.add("retract", "r1", ("s1", "<b/>"))
        self.clock.advance(0)
        self.assertEqual(
            self.db.last(),
            [
                ("retract", "r1", ("s1", "<a/>")),
                ("message", "r1", "m1"),
                ("retract", "r1", ("s1", "<b/>")),
            ],
        )


class BatchDelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.db = FakeDatabase()
        self.queue = WriteQueue(
            self.db,
            self.clock,
            max_pending=1000,
            is_transient=lambda f: f.check(DownError) is not None,
            describe=lambda f: str(f.value),
            where="test",
            retry_first=0.5,
            retry_max=4.0,
            batch_delay=0.05,
        )

    def test_writes_within_the_delay_share_one_batch(self) -> None:
        self.queue.add("message", "r1", "m1")
        self.clock.advance(0.02)
        self.queue.add("message", "r2", "m2")
        self.clock.advance(0.02)
        self.queue.add("message", "r1", "m3")
        self.assertEqual(self.db.batches, [])
        self.clock.advance(0.01)  # 0.05 s after the first write, not after the last
        self.assertEqual(
            self.db.last(),
            [("message", "r1", "m1"), ("message", "r2", "m2"), ("message", "r1", "m3")],
        )

    def test_writes_made_during_a_batch_do_not_wait_again(self) -> None:
        self.queue.add("message", "r1", "m1")
        self.clock.advance(0.05)
        self.queue.add("message", "r1", "m2")
        self.db.succeed()
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m2")])
        self.db.succeed()
        self.queue.add("message", "r1", "m3")  # idle again: waits
        self.clock.advance(0.04)
        self.assertEqual(len(self.db.batches), 2)
        self.clock.advance(0.02)
        self.assertEqual(self.db.last(), [("message", "r1", "m3")])

    def test_flush_does_not_wait_for_the_delay(self) -> None:
        self.queue.add("message", "r1", "m1")
        flushed = self.queue.flush()
        self.assertEqual(self.db.batches, [])  # still not inside the caller's turn
        self.clock.advance(0)
        self.assertEqual(self.db.last(), [("message", "r1", "m1")])
        self.db.succeed()
        self.successResultOf(flushed)

    def test_flush_does_not_shorten_a_retry_pause(self) -> None:
        self.queue.add("message", "r1", "m1")
        self.clock.advance(0.05)
        self.db.fail(DownError("gone"))
        flushed = self.queue.flush()
        self.clock.advance(0.4)
        self.assertEqual(len(self.db.batches), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.db.batches), 2)
        self.db.succeed()
        self.successResultOf(flushed)

    def test_a_negative_delay_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            WriteQueue(
                self.db,
                self.clock,
                max_pending=1,
                is_transient=lambda f: False,
                describe=str,
                where="test",
                batch_delay=-1,
            )
