"""A hung authorization service costs each join its own timeout at most (issue 26), in memory.

The service accepts every request and never answers. Without the breaker, 200 joins behind 10
in-flight slots would hear back one slot-full per timeout; with it, the first timeouts mark the
service down and every queued join is refused at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.breaker import ServiceBreaker
from mucauth.authorize.cache import SingleFlightAuthorizer
from mucauth.authorize.gate import Gate
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.muc.service import MUCService
from mucauth.settings import HTTPAuthSettings, LimitSettings, MUCSettings
from tests.muc.support import SERVICE, ServiceTestCase, error_of

USERS = 20
ROOMS = 10
DOWN_AFTER = HTTPAuthSettings(url="http://auth.test/").down_after_failures


class Silent:
    """An HTTP client whose requests are sent and never answered."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def get(self, url: Any, **kwargs: Any) -> Deferred[Any]:
        self.sent.append(str(url.to_text()))
        return Deferred()


class HungServiceTests(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client = Silent()
        settings = HTTPAuthSettings(url="http://auth.test/", timeout=2, pool_size=10)
        http = HTTPAuthorizer(settings, self.clock, http_client=self.client)
        self.breaker = ServiceBreaker(http, self.clock, down_after=settings.down_after_failures)
        single_flight = SingleFlightAuthorizer(self.breaker)
        gate = Gate(single_flight, http, single_flight, None, self.breaker)
        self.decisions: list[tuple[JoinRequest, Decision]] = []
        self.use_service(
            MUCService(
                gate,
                MUCSettings(limits=LimitSettings(max_rooms_per_user=1_000)),
                clock=self.clock,
                max_in_flight=settings.pool_size,
                on_decision=lambda r, d: self.decisions.append((r, d)),
            )
        )

    def join_all(self, tag: str) -> None:
        for u in range(USERS):
            for r in range(ROOMS):
                self.join(
                    f"user{u}@example.org/pc", f"u{u}", room=f"{tag}{r}@{SERVICE}", id=f"{u}-{r}"
                )

    def test_every_join_is_refused_within_two_timeouts(self) -> None:
        self.join_all("room")
        self.assertEqual(len(self.client.sent), 10)
        self.clock.advance(1.9)
        self.assertEqual(self.take(), [])
        self.clock.advance(0.1)
        # The first four timeouts free slots while the service is not yet considered down:
        # four queued joins are sent; the fifth marks it down and the queue empties at once.
        sent = 10 + DOWN_AFTER - 1
        self.assertEqual(len(self.client.sent), sent)
        self.assertEqual(len(self.take()), USERS * ROOMS - (DOWN_AFTER - 1))
        self.assertTrue(self.breaker.is_down)
        self.clock.advance(2.0)
        self.assertEqual(len(self.take()), DOWN_AFTER - 1)
        self.assertEqual({error_of(r) for r in self.sent}, {("wait", "service-unavailable")})
        self.assertEqual(len(self.sent), USERS * ROOMS)
        kinds = [d.kind for _, d in self.decisions]
        self.assertEqual(kinds.count("timeout"), sent)
        self.assertEqual(kinds.count("service_down"), USERS * ROOMS - sent)
        self.assertEqual(len(self.client.sent), sent, "no other join went into the outage")
        self.assertEqual(self.service.pending_checks, 0)

    def test_new_joins_are_refused_at_once_and_one_probe_goes_through(self) -> None:
        self.join_all("room")
        self.clock.advance(2.0)
        self.take()
        sent = len(self.client.sent)
        self.join("late@example.org/pc", "late", room=f"late@{SERVICE}", id="late")
        [reply] = self.take()
        self.assertEqual((reply["id"], error_of(reply)), ("late", ("wait", "service-unavailable")))
        self.clock.advance(1.0)  # probe_interval: the next join is the probe
        self.join_all("again")
        self.assertEqual(len(self.client.sent), sent + 1)
        self.assertEqual(len(self.take()), USERS * ROOMS - 1)
        self.clock.advance(2.0)  # the probe times out in turn (and the joins sent before)
        self.assertEqual(len(self.take()), 1 + DOWN_AFTER - 1)
        self.assertTrue(self.breaker.is_down)
