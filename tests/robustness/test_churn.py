"""Memory churn: thousands of joins and leaves leave nothing behind.

A smaller run of what ``bench/churn.py`` does at full size (20,000 cycles over 500 rooms, with
memory figures): rooms, pending checks, per-user counters and occupant maps return to zero, and
every Room object is garbage-collected. The same churn through a real HTTPAuthorizer against a
loopback service ends with no more pool connections than the pool size.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from wokkel.generic import parseXml
from zope.interface import implementer

from examples._churn import MUC_X, NS, SERVICE, churn, make_service
from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.authorize.gate import build_authorizer
from mucauth.settings import HTTPAuthSettings
from tests.support.http_server import start_server


class InMemoryChurnTests(SynchronousTestCase):
    def test_rooms_and_checks_return_to_zero(self) -> None:
        service, manager = make_service()
        result = churn(service, manager, cycles=3000, rooms=100)
        self.assertGreater(result.rooms_seen, 100)  # rooms were destroyed and created again
        self.assertGreater(result.max_rooms, 10)
        self.assertEqual(
            (result.rooms_left, result.pending_left, result.per_user_left, result.rooms_alive),
            (0, 0, 0, 0),
        )

    def test_refused_users_leave_nothing(self) -> None:
        """Half the users are refused: their attempts create no room and hold no check."""

        @implementer(IJoinAuthorizer)
        class EveryOther:
            def authorize(self, request: JoinRequest) -> Deferred[Decision]:
                number = int(request.user.user.removeprefix("user"))  # type: ignore[union-attr]
                if number % 2:
                    return succeed(Decision.deny("odd"))
                return succeed(Decision.allow())

        service, manager = make_service(EveryOther())
        seen_refused: list[int] = []

        def check(n: int) -> None:
            for room in service.rooms.values():
                for occupant in room:
                    number = int(occupant.bare.split("@")[0].removeprefix("user"))
                    if number % 2:
                        seen_refused.append(n)

        result = churn(service, manager, cycles=1000, rooms=50, after_each=check)
        self.assertEqual(seen_refused, [])
        self.assertEqual((result.rooms_left, result.pending_left, result.rooms_alive), (0, 0, 0))


class HTTPChurnTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def settle(self, service: Any, sample: Any) -> Any:
        for _ in range(500):
            sample()
            if service.pending_checks == 0:
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"{service.pending_checks} checks still pending")

    @inlineCallbacks
    def test_pool_stays_within_its_size(self) -> Any:
        """Rounds of 25 joins answered by a real loopback service, then leaves; a fifth of
        the joins are abandoned at once (cancelled mid-check)."""
        server = start_server(reactor)
        self.addCleanup(server.stop)
        settings = HTTPAuthSettings(url=server.url, timeout=5, pool_size=4)
        gate = build_authorizer(settings, reactor)
        self.addCleanup(gate.close)
        service, manager = make_service(gate)
        peak: list[int] = [0]

        def sample() -> None:
            peak[0] = max(peak[0], gate.http.open_connections)

        def send(xml: str) -> None:
            manager.stub.send(parseXml(xml))
            del manager.stub.output[:]

        for round_ in range(12):
            occupants = []
            for n in range(25):
                user = f"user{n}@example.org/r"
                occupant = f"room{(round_ + n) % 7}@{SERVICE}/nick{n}"
                send(f"<presence xmlns='{NS}' from='{user}' to='{occupant}'>{MUC_X}</presence>")
                occupants.append((user, occupant))
            for user, occupant in occupants[::5]:
                send(f"<presence xmlns='{NS}' from='{user}' to='{occupant}' type='unavailable'/>")
            yield self.settle(service, sample)
            self.assertGreater(sum(len(room) for room in service.rooms.values()), 0)
            for user, occupant in occupants:
                send(f"<presence xmlns='{NS}' from='{user}' to='{occupant}' type='unavailable'/>")
            self.assertEqual(dict(service.rooms), {})
        self.assertEqual(service.pending_checks, 0)
        self.assertLessEqual(peak[0], 4)
        self.assertLessEqual(gate.http.open_connections, 4)
        self.assertLessEqual(server.connection_count, 4 + 12 * 5)  # cancelled ones reconnect
        self.assertGreaterEqual(len(server.resource.requests), 12 * 20)
        self.assertEqual(self.flushLoggedErrors(), [])
