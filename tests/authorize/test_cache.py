"""Single-flight and the decision cache, on a fake clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.authorize.cache import CachingAuthorizer, SingleFlightAuthorizer
from tests.authorize.fakes import Counting, Pending, join


class SingleFlightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.inner = Pending()
        self.auth = SingleFlightAuthorizer(self.inner)

    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, self.auth)

    def test_identical_requests_share_one_check(self) -> None:
        first = self.auth.authorize(join(user="alice@example.org/phone"))
        second = self.auth.authorize(join(user="alice@example.org/laptop"))
        self.assertEqual(len(self.inner.calls), 1)
        self.assertEqual(self.auth.in_flight, 1)
        self.inner.answer(Decision.deny("no"))
        self.assertEqual(self.successResultOf(first), Decision.deny("no"))
        self.assertEqual(self.successResultOf(second), Decision.deny("no"))
        self.assertEqual(self.auth.in_flight, 0)

    def test_different_requests_do_not_share(self) -> None:
        self.auth.authorize(join(nick="a"))
        self.auth.authorize(join(nick="b"))
        self.auth.authorize(join(nick="a", action="register"))
        self.assertEqual(len(self.inner.calls), 3)

    def test_a_finished_check_is_not_reused(self) -> None:
        self.auth.authorize(join())
        self.inner.answer(Decision.allow())
        self.auth.authorize(join())
        self.assertEqual(len(self.inner.calls), 2)

    def test_one_caller_cancelling_leaves_the_others(self) -> None:
        first = self.auth.authorize(join())
        second = self.auth.authorize(join())
        first.cancel()
        self.assertEqual(self.successResultOf(first), Decision.cancelled())
        self.assertEqual(self.inner.cancelled, [])
        self.assertNoResult(second)
        self.inner.answer(Decision.allow())
        self.assertTrue(self.successResultOf(second).is_allowed)

    def test_inner_is_cancelled_when_every_caller_left(self) -> None:
        first = self.auth.authorize(join())
        second = self.auth.authorize(join())
        first.cancel()
        second.cancel()
        self.assertEqual(len(self.inner.cancelled), 1)
        self.assertEqual(self.auth.in_flight, 0)
        self.assertTrue(self.successResultOf(second).is_error)
        # The next identical join asks again rather than joining the cancelled check.
        self.auth.authorize(join())
        self.assertEqual(len(self.inner.calls), 2)

    def test_every_caller_gets_the_standing(self) -> None:
        first = self.auth.authorize(join(user="alice@example.org/phone"))
        second = self.auth.authorize(join(user="alice@example.org/laptop"))
        self.inner.answer(Decision.allow(affiliation="owner", role="moderator"))
        for d in (first, second):
            decision = self.successResultOf(d)
            self.assertEqual((decision.affiliation, decision.role), ("owner", "moderator"))

    def test_synchronous_answer(self) -> None:
        auth = SingleFlightAuthorizer(Counting(Decision.allow()))
        self.assertTrue(self.successResultOf(auth.authorize(join())).is_allowed)
        self.assertEqual(auth.in_flight, 0)

    def test_errback_from_inner_becomes_an_error(self) -> None:
        @implementer(IJoinAuthorizer)
        class Broken:
            def authorize(self, request: JoinRequest) -> Deferred[Decision]:
                return fail(RuntimeError("bug"))

        decision = self.successResultOf(SingleFlightAuthorizer(Broken()).authorize(join()))
        self.assertEqual(decision.kind, "internal")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class CachingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.inner = Counting(Decision.allow().with_details(status=200, latency=0.2))
        self.auth = CachingAuthorizer(self.inner, 30, self.clock)

    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, self.auth)

    def test_forget_drops_a_users_answers(self) -> None:
        self.successResultOf(self.auth.authorize(join()))
        self.successResultOf(self.auth.authorize(join(room="other@rooms.example.org")))
        self.successResultOf(self.auth.authorize(join(user="bob@example.org/pc")))
        self.assertEqual(self.auth.forget("alice@example.org", "physics@rooms.example.org"), 1)
        self.assertEqual(self.auth.forget("alice@example.org"), 1)
        self.assertEqual(len(self.auth), 1)  # bob's
        self.successResultOf(self.auth.authorize(join()))
        self.assertEqual(len(self.inner.requests), 4)

    def test_a_recheck_is_never_answered_from_the_cache(self) -> None:
        self.successResultOf(self.auth.authorize(join(action="recheck")))
        self.successResultOf(self.auth.authorize(join(action="recheck")))
        self.assertEqual(len(self.inner.requests), 2)
        self.assertEqual(len(self.auth), 0)

    def test_allow_is_reused_until_ttl(self) -> None:
        self.successResultOf(self.auth.authorize(join()))
        self.clock.advance(29.9)
        cached = self.successResultOf(self.auth.authorize(join(user="alice@example.org/tab")))
        self.assertEqual((cached.outcome, cached.status, cached.latency), ("allow", 200, 0.0))
        self.assertEqual(len(self.inner.requests), 1)
        self.clock.advance(0.2)
        self.successResultOf(self.auth.authorize(join()))
        self.assertEqual(len(self.inner.requests), 2)

    def test_a_cached_allow_keeps_the_standing(self) -> None:
        self.inner.decision = Decision.allow(affiliation="admin", role="moderator")
        self.successResultOf(self.auth.authorize(join()))
        cached = self.successResultOf(self.auth.authorize(join(user="alice@example.org/tab")))
        self.assertEqual((cached.affiliation, cached.role), ("admin", "moderator"))
        self.assertEqual((cached.source, cached.latency), ("cache", 0.0))
        self.assertEqual(len(self.inner.requests), 1)

    def test_deny_is_cached(self) -> None:
        self.inner.decision = Decision.deny("no")
        self.successResultOf(self.auth.authorize(join()))
        self.assertEqual(self.successResultOf(self.auth.authorize(join())).reason, "no")
        self.assertEqual(len(self.inner.requests), 1)

    def test_errors_are_never_cached(self) -> None:
        self.inner.decision = Decision.error("timeout", "slow")
        self.successResultOf(self.auth.authorize(join()))
        self.successResultOf(self.auth.authorize(join()))
        self.assertEqual(len(self.inner.requests), 2)
        self.assertEqual(len(self.auth), 0)

    def test_keyed_by_request(self) -> None:
        self.successResultOf(self.auth.authorize(join(nick="a")))
        self.successResultOf(self.auth.authorize(join(nick="b")))
        self.successResultOf(self.auth.authorize(join(room="other@rooms.example.org")))
        self.assertEqual(len(self.inner.requests), 3)

    def test_zero_ttl_passes_through(self) -> None:
        auth = CachingAuthorizer(self.inner, 0, self.clock)
        self.successResultOf(auth.authorize(join()))
        self.successResultOf(auth.authorize(join()))
        self.assertEqual(len(self.inner.requests), 2)

    def test_expired_entries_are_dropped(self) -> None:
        for i in range(5):
            self.successResultOf(self.auth.authorize(join(nick=f"n{i}")))
        self.clock.advance(31)
        self.successResultOf(self.auth.authorize(join(nick="fresh")))
        self.assertEqual(len(self.auth), 1)

    def test_size_is_bounded(self) -> None:
        auth = CachingAuthorizer(self.inner, 30, self.clock, max_entries=3)
        for i in range(10):
            self.successResultOf(auth.authorize(join(nick=f"n{i}")))
        self.assertEqual(len(auth), 3)
