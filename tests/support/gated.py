"""A MUC service in memory behind a real gate that asks a real loopback HTTP service.

Shared by the metrics and logging tests: joins go in as stanzas, decisions come from HTTP
answers the test programs by user name, and both the metrics and the log events see exactly
what a running mucauth would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import Request
from wokkel.generic import parseXml
from wokkel.test import helpers

from mucauth.authorize.gate import Gate, build_authorizer
from mucauth.metrics import Metrics
from mucauth.muc.service import MUCService
from mucauth.settings import HTTPAuthSettings, MUCSettings
from tests.muc.support import ROOM, presence
from tests.support.http_server import AuthServer, answer, never_answer, start_server

DENY_BODY = b'{"allowed": false, "error": "not on the roster"}'


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Deferred[None]:
    """Poll the real reactor until ``condition()`` is true."""
    deadline = time.monotonic() + timeout

    async def poll() -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await task.deferLater(reactor, 0.01, lambda: None)

    return Deferred.fromCoroutine(poll())


def by_user(request: Request) -> bytes | int:
    """The service's policy by the joining user's node: allowed*, denied*, broken*, else silent."""
    user = request.args[b"userJID"][0].decode()  # type: ignore[index]  # Twisted types args as None
    node = user.partition("@")[0]
    if node.startswith("allowed"):
        return answer()(request)
    if node.startswith("denied"):
        return answer(body=DENY_BODY)(request)
    if node.startswith("broken"):
        return answer(500, b"oops")(request)
    return never_answer()(request)


def start_policy_server(test: TestCase) -> AuthServer:
    server = start_server()
    test.addCleanup(server.stop)
    server.resource.handler = by_user
    return server


class GatedMUC:
    """``MUCService`` (at most one pending check per user) behind ``build_authorizer``."""

    def __init__(
        self,
        test: TestCase,
        server: AuthServer,
        metrics: Metrics | None = None,
        **auth: Any,
    ) -> None:
        self.gate: Gate = build_authorizer(
            HTTPAuthSettings(url=auth.pop("url", server.url), **auth),
            reactor,
            on_http_check=metrics.http_check if metrics is not None else None,
        )
        test.addCleanup(self.gate.close)
        self.muc = MUCService(
            self.gate,
            MUCSettings(max_pending_per_user=1),
            clock=reactor,
            on_decision=metrics.decision if metrics is not None else None,
        )
        self.manager = helpers.TestableStreamManager()
        self.muc.setHandlerParent(self.manager)
        # The stub stream never closes by itself: end it, as a lost link would, so the
        # service's timers (the liveness sweep) stop with the test.
        test.addCleanup(self.muc.connectionLost, Failure(ConnectionDone()))
        if metrics is not None:
            metrics.watch(muc=self.muc, gate=self.gate)

    def join(self, user: str, nick: str, room: str = ROOM) -> None:
        self.manager.stub.send(parseXml(presence(user, f"{room}/{nick}", id=nick)))

    def replies(self) -> list[Any]:
        return list(self.manager.stub.output)

    def settled(self) -> Deferred[None]:
        """Every check answered (a silent service times out after the gate's timeout)."""
        return wait_for(lambda: self.muc.pending_checks == 0, timeout=10)
