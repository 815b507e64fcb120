"""The join queue alone: in-flight limit, turns between users, bounds, deadline."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mucauth.muc.queue import CheckQueue, QueueFullError, Ticket


class Recorder:
    """A queue whose started and expired items are listed; ``finish_at_once`` makes every
    start release its ticket before returning (a cached answer)."""

    def __init__(self, clock: Clock, finish_at_once: bool = False, **options: float) -> None:
        self.started: list[Ticket[str]] = []
        self.expired: list[tuple[str, float]] = []
        self.waits: list[float] = []
        self.finish_at_once = finish_at_once
        self.queue: CheckQueue[str] = CheckQueue(
            clock,
            self.start,
            lambda item, waited: self.expired.append((item, waited)),
            on_wait=self.waits.append,
            **options,  # type: ignore[arg-type]
        )

    def start(self, ticket: Ticket[str]) -> None:
        self.started.append(ticket)
        if self.finish_at_once:
            self.queue.release(ticket)

    @property
    def names(self) -> list[str]:
        return [t.item for t in self.started]

    def finish(self, index: int = 0) -> None:
        self.queue.release(self.running()[index])

    def running(self) -> list[Ticket[str]]:
        return [t for t in self.started if t.state == "running"]


class InFlightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.r = Recorder(self.clock, max_in_flight=3)

    def test_starts_at_once_while_slots_are_free(self) -> None:
        for n in range(3):
            self.r.queue.submit(f"a{n}", "alice")
        self.assertEqual(self.r.names, ["a0", "a1", "a2"])
        self.assertEqual((self.r.queue.in_flight, self.r.queue.queued), (3, 0))
        self.assertEqual(self.r.waits, [0.0, 0.0, 0.0])

    def test_the_rest_wait_and_start_as_slots_free(self) -> None:
        for n in range(10):
            self.r.queue.submit(f"a{n}", "alice")
        self.assertEqual((self.r.queue.in_flight, self.r.queue.queued), (3, 7))
        self.clock.advance(2)
        self.r.finish()
        self.assertEqual(self.r.names[-1], "a3")
        self.assertEqual(self.r.waits[-1], 2.0)
        while self.r.running():
            self.r.finish()
        self.assertEqual(self.r.names, [f"a{n}" for n in range(10)])
        self.assertEqual(len(self.r.queue), 0)
        self.assertEqual(self.r.queue.users, {})

    def test_never_more_than_the_limit_in_flight(self) -> None:
        for n in range(100):
            self.r.queue.submit(f"u{n}", f"user{n % 7}")
        peak = 0
        while self.r.running():
            peak = max(peak, self.r.queue.in_flight)
            self.r.finish(-1)
        self.assertEqual((peak, len(self.r.started)), (3, 100))

    def test_answers_given_at_once_do_not_grow_the_stack(self) -> None:
        """A cached answer releases its slot inside start: 20,000 of them in a row must run
        as a loop, not as nested calls."""
        r = Recorder(self.clock, max_in_flight=1, max_total=100_000, max_per_user=100_000)
        r.queue.submit("first", "alice")
        r.finish_at_once = True
        for n in range(20_000):
            r.queue.submit(f"a{n}", "alice")
        r.queue.release(r.started[0])
        self.assertEqual(len(r.started), 20_001)
        self.assertEqual(len(r.queue), 0)


class FairnessTests(SynchronousTestCase):
    def test_one_users_burst_does_not_hold_back_another_user(self) -> None:
        clock = Clock()
        r = Recorder(clock, max_in_flight=2)
        for n in range(50):
            r.queue.submit(f"a{n}", "alice")
        r.queue.submit("b0", "bob")
        r.finish()
        r.finish()
        # Alice had both slots and her line was first in the round; bob's turn is next, ahead
        # of her 47 other joins.
        self.assertEqual(r.names[2:4], ["a2", "b0"])

    def test_users_take_turns(self) -> None:
        r = Recorder(Clock(), max_in_flight=1)
        r.queue.submit("first", "zed")
        for n in range(3):
            r.queue.submit(f"a{n}", "alice")
            r.queue.submit(f"b{n}", "bob")
            r.queue.submit(f"c{n}", "carol")
        while r.running():
            r.finish()
        self.assertEqual(r.names[1:], ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"])


class BoundTests(SynchronousTestCase):
    def test_user_bound_counts_waiting_and_running(self) -> None:
        r = Recorder(Clock(), max_in_flight=2, max_per_user=5)
        for n in range(5):
            r.queue.submit(f"a{n}", "alice")
        with self.assertRaises(QueueFullError) as raised:
            r.queue.submit("a5", "alice")
        self.assertEqual((raised.exception.limit, raised.exception.count), ("user", 5))
        r.queue.submit("b0", "bob")  # others are not affected
        self.assertEqual(r.queue.pending_for("alice"), 5)
        r.finish()
        r.queue.submit("a5", "alice")  # a freed place can be taken again

    def test_service_bound(self) -> None:
        r = Recorder(Clock(), max_in_flight=2, max_total=4)
        for n in range(4):
            r.queue.submit(f"u{n}", f"user{n}")
        with self.assertRaises(QueueFullError) as raised:
            r.queue.submit("late", "late")
        self.assertEqual((raised.exception.limit, raised.exception.count), ("service", 4))
        self.assertEqual(len(r.queue), 4)


class CancelTests(SynchronousTestCase):
    def test_a_released_waiting_item_never_starts(self) -> None:
        r = Recorder(Clock(), max_in_flight=1)
        r.queue.submit("a0", "alice")
        waiting = r.queue.submit("a1", "alice")
        r.queue.submit("a2", "alice")
        r.queue.release(waiting)
        self.assertEqual(r.queue.queued, 1)
        r.finish()
        r.finish()
        self.assertEqual(r.names, ["a0", "a2"])
        self.assertEqual(r.queue.users, {})

    def test_join_and_leave_over_and_over_keeps_one_turn(self) -> None:
        """A user who cancels and resubmits while waiting must not gain turns (or memory)."""
        r = Recorder(Clock(), max_in_flight=1)
        r.queue.submit("busy", "zed")
        for _ in range(1000):
            r.queue.release(r.queue.submit("a", "alice"))
        r.queue.submit("b", "bob")
        self.assertEqual(len(r.queue._turns), 2)
        r.finish()
        self.assertEqual(r.names, ["busy", "b"])

    def test_a_user_whose_waiting_items_were_released_does_not_block_the_next(self) -> None:
        r = Recorder(Clock(), max_in_flight=1)
        busy = r.queue.submit("busy", "zed")
        r.queue.release(r.queue.submit("a", "alice"))
        r.queue.release(busy)
        r.queue.submit("b", "bob")
        self.assertEqual(r.names, ["busy", "b"])

    def test_clear_forgets_waiting_items_without_starting_them(self) -> None:
        clock = Clock()
        r = Recorder(clock, max_in_flight=1)
        first = r.queue.submit("a0", "alice")
        for n in range(1, 5):
            r.queue.submit(f"a{n}", "alice")
        self.assertEqual(r.queue.clear(), ["a1", "a2", "a3", "a4"])
        r.queue.release(first)
        clock.advance(100)
        self.assertEqual((r.names, r.expired), (["a0"], []))
        self.assertEqual((len(r.queue), r.queue.users), (0, {}))
        self.assertEqual(clock.getDelayedCalls(), [])


class DeadlineTests(SynchronousTestCase):
    def test_waiting_too_long_expires_unstarted(self) -> None:
        clock = Clock()
        r = Recorder(clock, max_in_flight=1, timeout=30)
        r.queue.submit("a0", "alice")
        r.queue.submit("a1", "alice")
        clock.advance(10)
        r.queue.submit("b0", "bob")
        clock.advance(19.9)
        self.assertEqual(r.expired, [])
        clock.advance(0.1)
        self.assertEqual(r.expired, [("a1", 30.0)])
        clock.advance(10)
        self.assertEqual(r.expired, [("a1", 30.0), ("b0", 30.0)])
        self.assertEqual(r.names, ["a0"])
        self.assertEqual((r.queue.queued, r.queue.in_flight), (0, 1))
        self.assertEqual(r.waits[-2:], [30.0, 30.0])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_started_in_time_is_not_expired(self) -> None:
        clock = Clock()
        r = Recorder(clock, max_in_flight=1, timeout=30)
        r.queue.submit("a0", "alice")
        r.queue.submit("a1", "alice")
        clock.advance(29)
        r.finish()
        clock.advance(60)
        self.assertEqual((r.names, r.expired), (["a0", "a1"], []))
        self.assertEqual(clock.getDelayedCalls(), [])


class CancelledSlotTests(SynchronousTestCase):
    """A cancelled check frees its slot one reactor turn later: the other cancellations read in
    the same turn (a session that went away, its server's unavailables in its own order) reach
    their queued items before the slot could start one."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.r = Recorder(self.clock, max_in_flight=2)
        self.tickets = [self.r.queue.submit(f"a{n}", "alice") for n in range(4)]

    def test_the_next_starts_a_turn_later(self) -> None:
        self.r.queue.release(self.tickets[0], later=True)
        self.assertEqual(self.r.names, ["a0", "a1"])
        self.clock.advance(0)
        self.assertEqual(self.r.names, ["a0", "a1", "a2"])

    def test_queued_items_cancelled_in_the_same_turn_never_start(self) -> None:
        for ticket in self.tickets:  # running ones first: the order that used to leak
            self.r.queue.release(ticket, later=True)
        self.clock.advance(0)
        self.assertEqual(self.r.names, ["a0", "a1"])
        self.assertEqual((self.r.queue.in_flight, self.r.queue.queued), (0, 0))

    def test_an_answer_still_frees_its_slot_at_once(self) -> None:
        self.r.queue.release(self.tickets[0])
        self.assertEqual(self.r.names, ["a0", "a1", "a2"])

    def test_clear_drops_the_pending_turn(self) -> None:
        self.r.queue.release(self.tickets[0], later=True)
        self.r.queue.clear()
        self.clock.advance(0)
        self.assertEqual(self.r.names, ["a0", "a1"])
