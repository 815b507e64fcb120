"""build_authorizer wires the layers in the order that asks the HTTP service least."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from mucauth.authorize import IJoinAuthorizer, build_authorizer
from mucauth.authorize.scope import OUTSIDE_SCOPE
from mucauth.settings import HTTPAuthSettings, RoomScope
from tests.authorize.fakes import join
from tests.support.http_server import answer, never_answer, start_server


class BuildAuthorizerTests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.server = start_server(reactor)
        self.addCleanup(self.server.stop)

    def build(self, **kw: Any) -> Any:
        gate = build_authorizer(HTTPAuthSettings(url=self.server.url, **kw), reactor)
        self.addCleanup(gate.close)
        return gate

    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, self.build())

    async def test_asks_the_service(self) -> None:
        gate = self.build()
        self.server.resource.handler = answer(200, b'{"allowed": false, "error": "no"}')
        decision = await gate.authorize(join())
        self.assertEqual((decision.outcome, decision.reason), ("deny", "no"))
        self.assertIsNone(gate.cache)

    async def test_outside_scope_asks_nobody(self) -> None:
        gate = self.build(scope=RoomScope("enabled", {"all": frozenset({"exams"})}))
        decision = await gate.authorize(join(room="lobby@rooms.example.org"))
        self.assertEqual(decision.reason, OUTSIDE_SCOPE)
        self.assertEqual(self.server.resource.requests, [])

    async def test_cache_and_single_flight(self) -> None:
        gate = self.build(cache_ttl=60)
        first, second = gate.authorize(join()), gate.authorize(join())
        decisions = [await first, await second]
        await gate.authorize(join())
        self.assertTrue(all(d.is_allowed for d in decisions))
        self.assertEqual(len(self.server.resource.requests), 1)

    async def test_cancelling_every_caller_closes_the_connection(self) -> None:
        gate = self.build()
        self.server.resource.handler = never_answer()
        first, second = gate.authorize(join()), gate.authorize(join())
        while not self.server.resource.pending:
            await _pause(0.01)
        first.cancel()
        second.cancel()
        await self.server.all_closed().addTimeout(2, reactor)
        self.assertEqual(gate.single_flight.in_flight, 0)


def _pause(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
