"""Bounded work: authorization checks in flight are capped, and every check gives its slot back.

``tests/muc/test_service_races.py`` checks the two limits themselves; here: the refusal is
immediate and logged and asks nobody, every way a check can end releases its slot (so the
limits never fill up for good), registration and gated nick changes count too, and an iq that
started a registration check is always answered.
"""

from __future__ import annotations

import warnings
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.cache import SingleFlightAuthorizer
from mucauth.settings import MUCSettings
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    ROOM,
    SERVICE,
    ManualAuthorizer,
    ServiceTestCase,
    error_of,
    iq,
    presence,
)

OTHER = "other@" + SERVICE
REGISTER = (
    "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
    "<field var='muc#register_roomnick'><value>bobby</value></field></x></query>"
)


class BoundedWorkTests(ServiceTestCase):
    settings = MUCSettings(max_pending_checks=3, max_pending_per_user=2)

    def assert_released(self) -> None:
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(dict(self.service.pending_per_user), {})

    def test_refusal_past_the_service_limit_is_immediate_logged_and_asks_nobody(self) -> None:
        # Twisted annotates the test as trial's TestCase; it only calls addCleanup.
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.join(ALICE, "alice")
        self.join(BOB, "bob")
        self.join(CAROL, "carol")
        self.join("dave@example.org/x", "dave", id="d")
        self.assertEqual(len(self.auth.calls), 3)
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("d", ("wait", "resource-constraint")))
        [event] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("service-wide", event["log_format"])
        self.assertEqual((event["count"], event["user"]), (3, "dave@example.org/x"))
        self.assertEqual(self.service.pending_checks, 3)

    def test_refusal_past_the_user_limit_is_logged(self) -> None:
        # Twisted annotates the test as trial's TestCase; it only calls addCleanup.
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.join(ALICE, "alice")
        self.join(ALICE2, "alice", room=OTHER)
        self.join(ALICE, "alice", room="third@" + SERVICE, id="x")
        self.assertEqual(error_of(self.take_one()), ("wait", "resource-constraint"))
        [event] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("for user", event["log_format"])
        self.assertEqual(event["count"], 2)

    def test_every_ending_releases_the_slot(self) -> None:
        endings: list[tuple[str, Any]] = [
            ("allow", lambda: self.auth.allow()),
            ("deny", lambda: self.auth.deny()),
            ("error", lambda: self.auth.answer(Decision.error("timeout", "slow"))),
            ("errback", lambda: self.auth.calls[-1][1].errback(RuntimeError("bug"))),
            ("unavailable", lambda: self.receive(presence(ALICE, ROOM + "/a", type="unavailable"))),
            ("shutdown", self.service.shutdown),
            ("link lost", self.lose_link),
        ]
        for label, end in endings:
            self.join(ALICE, "a")
            self.assertEqual(self.service.pending_checks, 1, label)
            end()
            self.assertEqual(self.service.pending_checks, 0, label)
            self.assertEqual(dict(self.service.pending_per_user), {}, label)
            self.receive(presence(ALICE, ROOM + "/a", type="unavailable"))
            self.take()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_authorizer_raising_releases_the_slot(self) -> None:
        def broken(request: JoinRequest) -> Deferred[Decision]:
            raise RuntimeError("bug in an embedder's authorizer")

        self.auth.authorize = broken  # type: ignore[method-assign]
        for n in range(5):
            self.join(ALICE, "alice", id=f"j{n}")
            self.assertEqual(error_of(self.take_one()), ("wait", "service-unavailable"))
        self.assert_released()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 5)

    def test_authorizer_failing_synchronously_releases_the_slot(self) -> None:
        self.auth.authorize = lambda request: fail(RuntimeError("bug"))  # type: ignore[method-assign]
        for n in range(5):
            self.join(ALICE, "alice", id=f"j{n}")
            self.assertEqual(error_of(self.take_one()), ("wait", "service-unavailable"))
        self.assert_released()
        self.flushLoggedErrors(RuntimeError)

    def test_registration_checks_count(self) -> None:
        self.service.authorize_registration = True
        third = "third@" + SERVICE
        self.enter(ALICE, "alice")
        self.enter(ALICE, "alice", room=third)
        self.receive(iq(BOB, ROOM, REGISTER, type="set", id="r1"))
        self.join(BOB, "bob", room=OTHER)
        self.receive(iq(BOB, third, REGISTER, type="set", id="r2"))  # the user's 3rd check
        self.assertEqual(self.service.pending_checks, 2)
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("r2", ("wait", "resource-constraint")))

    def test_gated_nick_changes_count(self) -> None:
        self.service.settings = MUCSettings(
            max_pending_checks=3, max_pending_per_user=2, gate_nick_change=True
        )
        self.enter(ALICE, "alice")
        self.enter(ALICE, "alice", room=OTHER)
        self.receive(presence(ALICE, ROOM + "/alicia"))
        self.receive(presence(ALICE, OTHER + "/alicia"))
        self.join(ALICE, "alice", room="third@" + SERVICE, id="x")
        self.assertEqual(self.service.pending_checks, 2)
        self.assertEqual(error_of(self.take_one()), ("wait", "resource-constraint"))
        self.auth.deny(index=-1)
        self.auth.allow(index=-2)
        self.take()
        self.assert_released()

    def lose_link(self) -> None:
        with warnings.catch_warnings():  # Wokkel's StreamManager uses compat.itervalues
            warnings.filterwarnings("ignore", message=".*itervalues", category=DeprecationWarning)
            self.manager._disconnected(Failure(ConnectionError("gone")))
        self.manager._connected(self.manager.stub.xmlstream)
        self.manager._authd(self.manager.stub.xmlstream)


class RegistrationAnswerTests(ServiceTestCase):
    """An iq is answered exactly once, even when its check outlives the user's interest."""

    service_options = {"authorize_registration": True}

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")

    def test_unavailable_does_not_strand_a_registration_iq(self) -> None:
        self.receive(iq(BOB, ROOM, REGISTER, type="set", id="r1"))
        self.receive(presence(BOB, ROOM + "/bob", type="unavailable"))
        self.assertEqual(self.auth.cancelled, [])
        self.auth.deny()
        reply = self.take_one()
        self.assertEqual((reply.name, reply["id"], reply["type"]), ("iq", "r1", "error"))
        self.assertEqual(self.service.pending_checks, 0)

    def test_second_registration_iq_while_pending_is_answered(self) -> None:
        self.receive(iq(BOB, ROOM, REGISTER, type="set", id="r1"))
        self.receive(iq(BOB, ROOM, REGISTER, type="set", id="r2"))
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("r2", ("wait", "resource-constraint")))
        self.auth.deny()
        self.assertEqual([s["id"] for s in self.take()], ["r1"])
        self.assertEqual(len(self.auth.calls), 2)  # alice's join and the first iq

    def test_unavailable_still_cancels_a_pending_join(self) -> None:
        self.join(BOB, "bob")
        self.receive(presence(BOB, ROOM + "/bob", type="unavailable"))
        self.assertEqual(self.auth.cancelled, [self.auth.requests[-1]])
        self.assertEqual(self.take(), [])
        self.assertNotIn("bob", [o.nick for o in self.service.rooms[JID(ROOM)]])


class SingleFlightCancelTests(SynchronousTestCase):
    """A user leaving cancels the check; an inner authorizer that honours the cancellation the
    Twisted way (its Deferred errbacks CancelledError) has kept its promise."""

    def test_cancelled_inner_check_is_not_a_broken_promise(self) -> None:
        inner = ManualAuthorizer()
        flight = SingleFlightAuthorizer(inner)
        d = flight.authorize(JoinRequest(JID(ALICE), JID(ROOM), "alice"))
        d.cancel()
        decision = self.successResultOf(d)
        self.assertEqual(
            (decision.kind, decision.reason), ("cancelled", Decision.cancelled().reason)
        )
        self.assertEqual(len(inner.cancelled), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_inner_errback_without_cancellation_is_still_reported(self) -> None:
        inner = ManualAuthorizer()
        flight = SingleFlightAuthorizer(inner)
        d = flight.authorize(JoinRequest(JID(ALICE), JID(ROOM), "alice"))
        inner.calls[0][1].errback(RuntimeError("bug"))
        self.assertEqual(self.successResultOf(d).kind, "internal")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
