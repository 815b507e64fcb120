"""The breaker: fail fast while the service is down, probe, resume; on a fake clock."""

from __future__ import annotations

from typing import cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mucauth.authorize.base import Decision, IJoinAuthorizer
from mucauth.authorize.breaker import ServiceBreaker, is_outage
from mucauth.authorize.cache import CachingAuthorizer, SingleFlightAuthorizer
from mucauth.authorize.gate import build_authorizer
from mucauth.authorize.scope import ScopedAuthorizer
from mucauth.settings import HTTPAuthSettings, RoomScope
from tests.authorize.fakes import Pending, join

TIMEOUT = Decision.error("timeout", "no answer in 2 s")
REFUSED = Decision.error("connection", "ConnectionRefusedError: refused")
HTTP_503 = Decision.error("status", "HTTP 503").with_details(status=503)
HTTP_404 = Decision.error("status", "HTTP 404").with_details(status=404)
BAD_JSON = Decision.error("bad_json", "body is not JSON")


class OutageTests(SynchronousTestCase):
    def test_what_counts_as_the_service_being_away(self) -> None:
        for decision in (TIMEOUT, REFUSED, HTTP_503, Decision.error("tls", "TLS: bad")):
            self.assertTrue(is_outage(decision), decision)

    def test_answers_and_confused_answers_are_not_outages(self) -> None:
        for decision in (
            Decision.allow(),
            Decision.deny("not on the roster"),
            HTTP_404,
            BAD_JSON,
            Decision.error("redirect", "HTTP 302"),
            Decision.cancelled(),
        ):
            self.assertFalse(is_outage(decision), decision)


class BreakerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.inner = Pending()
        self.changes: list[str] = []
        self.breaker = ServiceBreaker(
            self.inner,
            self.clock,
            down_after=3,
            probe_interval=1.0,
            on_change=self.changes.append,
        )
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def fail_checks(self, decision: Decision, count: int) -> None:
        for _ in range(count):
            self.breaker.authorize(join())
            self.inner.answer(decision)

    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, self.breaker)

    def test_passes_answers_through_while_up(self) -> None:
        d = self.breaker.authorize(join())
        self.inner.answer(Decision.deny("no"))
        self.assertEqual(self.successResultOf(d), Decision.deny("no"))
        self.assertEqual(self.breaker.state().state, "up")

    def test_consecutive_failures_mark_the_service_down(self) -> None:
        self.fail_checks(TIMEOUT, 2)
        self.assertFalse(self.breaker.is_down)
        self.fail_checks(HTTP_503, 1)
        self.assertTrue(self.breaker.is_down)
        self.assertEqual(self.changes, ["down"])
        [event] = [e for e in self.events if e.get("mucauth_event") == "service_down"]
        self.assertEqual(event["failures"], 3)
        self.assertEqual(event["last_failure"], "status: HTTP 503")

    def test_while_down_checks_are_refused_at_once(self) -> None:
        self.fail_checks(REFUSED, 3)
        calls = len(self.inner.calls)
        decision = self.successResultOf(self.breaker.authorize(join(nick="bob")))
        self.assertEqual((decision.outcome, decision.kind), ("error", "service_down"))
        self.assertEqual(decision.source, "breaker")
        self.assertEqual(len(self.inner.calls), calls)
        self.assertEqual(self.breaker.state().refused_while_down, 1)

    def test_an_answer_between_failures_resets_the_count(self) -> None:
        self.fail_checks(TIMEOUT, 2)
        self.fail_checks(Decision.allow(), 1)
        self.fail_checks(TIMEOUT, 2)
        self.assertFalse(self.breaker.is_down)

    def test_a_clear_no_is_an_answer(self) -> None:
        self.fail_checks(TIMEOUT, 2)
        self.fail_checks(Decision.deny("not on the roster"), 1)
        self.fail_checks(TIMEOUT, 2)
        self.assertFalse(self.breaker.is_down)

    def test_a_confused_answer_is_refused_but_never_trips(self) -> None:
        self.fail_checks(HTTP_404, 10)
        self.fail_checks(BAD_JSON, 10)
        self.assertFalse(self.breaker.is_down)

    def test_a_user_leaving_neither_counts_nor_resets(self) -> None:
        self.fail_checks(TIMEOUT, 2)
        d = self.breaker.authorize(join())
        d.cancel()
        self.fail_checks(TIMEOUT, 1)
        self.assertTrue(self.breaker.is_down)

    def test_one_probe_at_a_time_after_the_interval(self) -> None:
        self.fail_checks(TIMEOUT, 3)
        calls = len(self.inner.calls)
        self.clock.advance(0.5)
        self.assertTrue(self.successResultOf(self.breaker.authorize(join())).is_error)
        self.clock.advance(0.5)
        probe = self.breaker.authorize(join(nick="probe"))
        self.assertEqual(len(self.inner.calls), calls + 1)
        self.assertTrue(self.breaker.state().probe_in_flight)
        # While the probe is out, every other check is refused at once.
        for _ in range(5):
            self.assertEqual(
                self.successResultOf(self.breaker.authorize(join())).kind, "service_down"
            )
        self.assertEqual(len(self.inner.calls), calls + 1)
        self.assertNoResult(probe)

    def test_a_failed_probe_keeps_it_down_and_paces_the_next(self) -> None:
        self.fail_checks(TIMEOUT, 3)
        self.clock.advance(1.0)
        probe = self.breaker.authorize(join(nick="probe"))
        self.clock.advance(2.0)
        self.inner.answer(TIMEOUT)
        self.assertEqual(self.successResultOf(probe), TIMEOUT)
        self.assertTrue(self.breaker.is_down)
        calls = len(self.inner.calls)
        self.clock.advance(0.9)
        self.assertEqual(self.successResultOf(self.breaker.authorize(join())).kind, "service_down")
        self.clock.advance(0.1)
        self.breaker.authorize(join(nick="second probe"))
        self.assertEqual(len(self.inner.calls), calls + 1)

    def test_an_answered_probe_brings_the_service_back(self) -> None:
        self.fail_checks(TIMEOUT, 3)
        self.breaker.authorize(join())  # refused at once
        self.clock.advance(1.0)
        probe = self.breaker.authorize(join(nick="probe"))
        self.inner.answer(Decision.allow())
        self.assertTrue(self.successResultOf(probe).is_allowed)
        self.assertFalse(self.breaker.is_down)
        self.assertEqual(self.changes, ["down", "up"])
        [event] = [e for e in self.events if e.get("mucauth_event") == "service_up"]
        self.assertEqual(event["refused"], 1)
        # Every check goes through again, and a new streak is needed to trip.
        calls = len(self.inner.calls)
        self.breaker.authorize(join(nick="next"))
        self.assertEqual(len(self.inner.calls), calls + 1)
        self.inner.answer(TIMEOUT)
        self.assertFalse(self.breaker.is_down)

    def test_a_probe_answered_no_brings_the_service_back(self) -> None:
        self.fail_checks(REFUSED, 3)
        self.clock.advance(1.0)
        self.breaker.authorize(join())
        self.inner.answer(Decision.deny("no"))
        self.assertFalse(self.breaker.is_down)

    def test_a_cancelled_probe_lets_the_next_check_probe(self) -> None:
        self.fail_checks(TIMEOUT, 3)
        self.clock.advance(1.0)
        probe = self.breaker.authorize(join(nick="probe"))
        probe.cancel()
        calls = len(self.inner.calls)
        self.breaker.authorize(join(nick="next"))
        self.assertEqual(len(self.inner.calls), calls + 1)

    def test_a_check_from_before_the_outage_answering_ends_it(self) -> None:
        early = self.breaker.authorize(join(nick="early"))
        self.fail_checks(TIMEOUT, 3)
        self.assertTrue(self.breaker.is_down)
        self.inner.answer(Decision.allow(), index=0)
        self.assertTrue(self.successResultOf(early).is_allowed)
        self.assertFalse(self.breaker.is_down)

    def test_zero_turns_it_off(self) -> None:
        breaker = ServiceBreaker(self.inner, self.clock, down_after=0)
        for _ in range(50):
            breaker.authorize(join())
            self.inner.answer(TIMEOUT)
        self.assertFalse(breaker.is_down)
        self.assertEqual(breaker.describe()["consecutive_failures"], 50)

    def test_describe(self) -> None:
        self.fail_checks(TIMEOUT, 3)
        self.clock.advance(4.0)
        self.breaker.authorize(join())
        self.assertEqual(
            self.breaker.describe(),
            {
                "state": "down",
                "seconds_in_state": 4.0,
                "consecutive_failures": 3,
                "last_failure": "timeout: no answer in 2 s",
                "probe_in_flight": True,
                "outages": 1,
                "refused_while_down": 0,
            },
        )


class GateTests(SynchronousTestCase):
    """The breaker in the composed gate: cached and ungated answers never touch it."""

    def test_built_between_single_flight_and_http(self) -> None:
        settings = HTTPAuthSettings(
            url="http://auth.test/",
            cache_ttl=60,
            scope=RoomScope("enabled", {"all": frozenset({"physics"})}),
            down_after_failures=2,
            probe_interval=3.0,
        )
        gate = build_authorizer(settings, Clock())
        breaker = gate.breaker
        assert breaker is not None
        self.assertEqual((breaker.down_after, breaker.probe_interval), (2, 3.0))
        self.assertIs(breaker._inner, gate.http)
        self.assertIs(gate.single_flight._inner, breaker)
        self.assertIsInstance(gate._front, ScopedAuthorizer)
        self.assertIsInstance(gate.cache, CachingAuthorizer)

    def test_cached_and_ungated_answers_while_down(self) -> None:
        inner = Pending()
        clock = Clock()
        breaker = ServiceBreaker(inner, clock, down_after=2)
        cache = CachingAuthorizer(SingleFlightAuthorizer(breaker), 60, clock)
        front = ScopedAuthorizer(cache, RoomScope("enabled", {"all": frozenset({"physics"})}))
        d = front.authorize(join(nick="cached"))
        inner.answer(Decision.allow())
        self.assertTrue(self.successResultOf(d).is_allowed)
        for nick in ("a", "b"):
            front.authorize(join(nick=nick))
            inner.answer(TIMEOUT)
        self.assertTrue(breaker.is_down)
        cached = self.successResultOf(front.authorize(join(nick="cached")))
        self.assertEqual((cached.outcome, cached.source), ("allow", "cache"))
        ungated = self.successResultOf(front.authorize(join(room="chemistry@rooms.example.org")))
        self.assertEqual((ungated.outcome, ungated.source), ("allow", "scope"))
        self.assertEqual(breaker.state().refused_while_down, 0)
        # Nothing remembered the fast refusal: errors are never cached.
        clock.advance(1.0)
        front.authorize(join(nick="a"))
        self.assertEqual(len(inner.calls), 4)
