"""Bursts of joins: every bookmarked room at login, every user at once after a restart.

Joins over the in-flight limit wait in the join queue (``mucauth/muc/queue.py``) and are
checked as slots free up; only the bounds meant against abuse refuse them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.muc.service import MUCService
from mucauth.settings import HTTPAuthSettings, LimitSettings, MUCSettings
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    error_of,
    presence,
)

IN_FLIGHT = 10


def room(n: int) -> str:
    return f"r{n}@{SERVICE}"


class QueuedJoinTests(ServiceTestCase):
    service_options = {"max_in_flight": IN_FLIGHT}
    # One user creates more rooms here than [limits] allows by default: the queue is tested.
    settings = MUCSettings(limits=LimitSettings(max_rooms_per_user=1_000))

    def answer_all(self) -> int:
        """Allow every check as it comes, as a service would; returns the peak in flight."""
        peak = 0
        while True:
            open_calls = [d for _, d in self.auth.calls if not d.called]
            if not open_calls:
                return peak
            peak = max(peak, len(open_calls))
            open_calls[0].callback(Decision.allow())

    def self_presences(self) -> dict[str, set[int]]:
        return {
            s["from"].split("/")[0]: codes(s)
            for s in self.take()
            if s.name == "presence" and 110 in codes(s)
        }

    def test_one_user_joining_fifty_rooms_at_once_is_admitted_to_all(self) -> None:
        for n in range(50):
            self.join(ALICE, "alice", room=room(n), id=f"j{n}")
        self.assertEqual(len(self.auth.calls), IN_FLIGHT)
        self.assertEqual((self.service.pending_checks, self.service.queued_checks), (50, 40))
        self.assertEqual(self.take(), [])  # nobody refused
        self.assertEqual(self.answer_all(), IN_FLIGHT)
        joined = self.self_presences()
        self.assertEqual(set(joined), {room(n) for n in range(50)})
        self.assertEqual(len(self.service.rooms), 50)
        self.assertEqual(self.service.pending_per_user, {})

    def test_many_users_times_many_rooms_never_exceed_the_in_flight_limit(self) -> None:
        users = [f"u{n}@example.org/r" for n in range(40)]
        for u in users:
            for n in range(20):
                self.join(u, u.split("@")[0], room=room(n), id=f"{u}-{n}")
        self.assertEqual(self.service.pending_checks, 800)
        self.assertEqual(self.answer_all(), IN_FLIGHT)
        self.assertEqual(len(self.auth.calls), 800)
        self.assertEqual({len(r) for r in self.service.rooms.values()}, {40})
        self.assertEqual(self.service.pending_checks, 0)

    def test_another_users_single_join_is_not_held_behind_a_burst(self) -> None:
        for n in range(50):
            self.join(ALICE, "alice", room=room(n), id=f"j{n}")
        self.join(BOB, "bob", id="b")
        for _ in range(2):
            next(d for _, d in self.auth.calls if not d.called).callback(Decision.allow())
        asked = [r.user.userhost() for r in self.auth.requests]
        self.assertIn("bob@example.org", asked, "bob waits more than a turn")
        self.assertEqual(len(asked), IN_FLIGHT + 2)

    def test_duplicate_join_while_queued_is_coalesced(self) -> None:
        for n in range(IN_FLIGHT):
            self.join(BOB, "bob", room=room(n), id=f"b{n}")
        self.join(ALICE, "alice", id="a1")
        self.join(ALICE, "alice", id="a2")  # the client retried while queued
        self.assertEqual(self.service.pending_checks, IN_FLIGHT + 1)
        self.assertEqual(self.take(), [])
        self.answer_all()
        asked = [r for r in self.auth.requests if r.user == JID(ALICE)]
        self.assertEqual(len(asked), 1)
        self.assertIn(ROOM, self.self_presences())

    def test_a_queued_join_whose_user_leaves_never_reaches_the_service(self) -> None:
        for n in range(IN_FLIGHT):
            self.join(BOB, "bob", room=room(n), id=f"b{n}")
        self.join(ALICE, "alice", id="a1")
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        self.assertEqual(self.service.pending_checks, IN_FLIGHT)
        self.answer_all()
        self.assertNotIn(JID(ALICE), [r.user for r in self.auth.requests])
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.assertEqual(self.service.pending_per_user, {})

    def test_per_user_bound_refuses_that_user_only(self) -> None:
        bound = MUCSettings().max_pending_per_user
        for n in range(bound):
            self.join(ALICE, "alice", room=room(n), id=f"j{n}")
        self.assertEqual(self.take(), [])
        self.join(ALICE2, "alice", room=room(bound), id="over")
        reply = self.take()[0]
        self.assertEqual((reply["id"], error_of(reply)), ("over", ("wait", "resource-constraint")))
        self.join(BOB, "bob", id="b")
        self.join(CAROL, "carol", id="c")
        self.answer_all()
        joined = self.self_presences()
        self.assertEqual(len([r for r in joined if r != ROOM]), bound)
        self.assertIn(ROOM, joined)
        occupants = {o.nick for o in self.service.rooms[JID(ROOM)]}
        self.assertEqual(occupants, {"bob", "carol"})

    def test_session_going_away_cancels_its_queued_joins(self) -> None:
        """The XMPP server's unavailable for a client that disconnected, one per room it was
        joining: none of them is asked about."""
        for n in range(IN_FLIGHT):
            self.join(BOB, "bob", room=room(n), id=f"b{n}")
        for n in range(20, 40):
            self.join(ALICE, "alice", room=room(n), id=f"a{n}")
        for n in range(20, 40):
            self.receive(presence(ALICE, room(n) + "/alice", type="unavailable"))
        self.answer_all()
        self.assertEqual({r.user for r in self.auth.requests}, {JID(BOB)})
        self.assertEqual(self.service.pending_checks, 0)

    def test_link_lost_forgets_the_queue_without_asking(self) -> None:
        for n in range(30):
            self.join(ALICE, "alice", room=room(n), id=f"j{n}")
        self.service.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(len(self.auth.calls), IN_FLIGHT)
        self.assertEqual(len(self.auth.cancelled), IN_FLIGHT)
        self.assertEqual((self.service.pending_checks, self.service.queued_checks), (0, 0))

    def test_shutdown_answers_queued_joins_too(self) -> None:
        for n in range(30):
            self.join(ALICE, "alice", room=room(n), id=f"j{n}")
        self.service.shutdown()
        replies = self.take()
        self.assertEqual(len(replies), 30)
        self.assertEqual({error_of(r)[0] for r in replies}, {"wait"})
        self.assertEqual(len(self.auth.calls), IN_FLIGHT)


class QueueTimeoutTests(ServiceTestCase):
    settings = MUCSettings(queue_timeout=30)
    service_options = {"max_in_flight": 1}

    def test_a_join_that_waited_too_long_is_refused_unasked_and_logged(self) -> None:
        # Twisted annotates the test as trial's TestCase; it only calls addCleanup.
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.join(BOB, "bob", room=room(0), id="b")
        self.join(ALICE, "alice", id="a")
        self.clock.advance(29)
        self.assertEqual(self.take(), [])
        self.clock.advance(1)
        reply = self.take()[0]
        self.assertEqual((reply["id"], error_of(reply)), ("a", ("wait", "resource-constraint")))
        self.assertEqual(len(self.auth.calls), 1)
        [event] = [e for e in events if e.get("kind") == "queue_timeout"]
        self.assertEqual((event["user"], event["queued_ms"]), (ALICE, 30000.0))
        self.assertEqual(self.service.pending_checks, 1)


class TimeoutFromTheSendTests(ServiceTestCase):
    """The HTTP ``timeout`` counts from when the request is sent, not from the join's arrival:
    a join that waited its turn gets the whole timeout for its own request."""

    def test_queued_join_gets_the_whole_http_timeout(self) -> None:
        sent: list[Any] = []

        class Silent:
            def get(self, url: str, **kwargs: Any) -> Any:
                from twisted.internet.defer import Deferred

                sent.append(url)
                return Deferred()

        settings = HTTPAuthSettings(url="http://auth.test/", timeout=5, pool_size=1)
        http = HTTPAuthorizer(settings, self.clock, http_client=Silent())
        decisions: list[tuple[JoinRequest, Decision]] = []
        self.use_service(
            MUCService(
                http,
                MUCSettings(),
                clock=self.clock,
                max_in_flight=settings.pool_size,
                on_decision=lambda r, d: decisions.append((r, d)),
            )
        )
        self.join(BOB, "bob", room=room(0), id="b")
        self.join(ALICE, "alice", id="a")
        self.assertEqual(len(sent), 1)
        self.clock.advance(5)  # bob's request times out; alice's is sent only now
        self.assertEqual(len(sent), 2)
        self.assertEqual([d.kind for _, d in decisions], ["timeout"])
        self.clock.advance(4.9)
        self.assertEqual(len(decisions), 1, "alice's request did not get its whole timeout")
        self.clock.advance(0.1)
        self.assertEqual([d.kind for _, d in decisions], ["timeout", "timeout"])
        self.take()
