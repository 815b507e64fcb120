"""The HTTP gate against a real loopback peer that misbehaves below HTTP.

Each fault must end in an error Decision (fail closed), within the configured timeout plus a
little slack, with every socket closed afterwards: a reset in the middle of a body, an answer
trickled a byte at a time past the timeout, a hundred concurrent checks against a service that
accepts and never answers, a TLS handshake that never starts, garbage where TLS should be.
``tests/authorize/test_http.py`` covers the HTTP-level faults (bad answers, stalls after the
headers, huge bodies).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks
from twisted.internet.error import DNSLookupError
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.settings import HTTPAuthSettings
from tests.support.faults import (
    Behaviour,
    FaultServer,
    close_mid_body,
    garbage,
    open_fds,
    reset_before_answer,
    reset_mid_body,
    silent,
    sockets_on_port,
    start_fault_server,
    trickle,
)

TIMEOUT = 1.0  # for the faults that must end in a timeout
PATIENT = 10.0  # for the faults that must be seen before any timeout, even on a busy host
SLACK = 2.0  # a functional bound: "refused within the timeout", not a benchmark


def join(n: int = 0) -> JoinRequest:
    return JoinRequest(JID(f"user{n}@example.org/r"), JID("room@rooms.example.org"), f"n{n}")


class FaultCase(TestCase):
    timeout = 30

    def serve(self, behaviour: Behaviour, **kw: Any) -> FaultServer:
        server = start_fault_server(behaviour, **kw)
        self.addCleanup(server.stop)
        return server

    def authorizer(
        self, server: FaultServer, scheme: str = "http", timeout: float = PATIENT, **kw: Any
    ) -> HTTPAuthorizer:
        settings = HTTPAuthSettings(
            url=f"{scheme}://{server.address}/muc/auth", timeout=timeout, **kw
        )
        auth = HTTPAuthorizer(settings, reactor)
        self.addCleanup(auth.close)
        return auth

    @inlineCallbacks
    def check(self, auth: HTTPAuthorizer, n: int = 0) -> Any:
        started = time.monotonic()
        decision: Decision = yield auth.authorize(join(n))
        return decision, time.monotonic() - started

    @inlineCallbacks
    def all_closed(self, server: FaultServer) -> Any:
        yield server.all_closed().addTimeout(SLACK, reactor)
        self.assertEqual(server.open_connections, [])


class HTTPFaultTests(FaultCase):
    @inlineCallbacks
    def test_reset_mid_body_is_a_connection_error(self) -> Any:
        server = self.serve(reset_mid_body)
        auth = self.authorizer(server)
        decision, _ = yield self.check(auth)
        # "connection", not "timeout": known at once, not by waiting for the timeout
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        yield self.all_closed(server)
        self.assertEqual(auth.open_connections, 0)

    @inlineCallbacks
    def test_reset_before_any_answer_is_a_connection_error(self) -> Any:
        server = self.serve(reset_before_answer)
        decision, _ = yield self.check(self.authorizer(server))
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))

    @inlineCallbacks
    def test_clean_close_mid_body_is_an_error(self) -> Any:
        """Half of a Content-Length body, even one that is a complete yes, is not a yes."""
        server = self.serve(close_mid_body)
        decision, _ = yield self.check(self.authorizer(server))
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))

    @inlineCallbacks
    def test_garbage_instead_of_http_is_an_error(self) -> Any:
        server = self.serve(garbage)
        decision, _ = yield self.check(self.authorizer(server))
        self.assertTrue(decision.is_error, decision)

    @inlineCallbacks
    def test_answer_trickled_past_the_timeout_is_a_timeout(self) -> Any:
        server = self.serve(trickle(0.1))  # about 9 s for the whole answer
        auth = self.authorizer(server, timeout=TIMEOUT)
        decision, elapsed = yield self.check(auth)
        self.assertEqual((decision.outcome, decision.kind), ("error", "timeout"))
        self.assertLess(elapsed, TIMEOUT + SLACK)
        yield self.all_closed(server)  # the trickle stopped: the client hung up

    @inlineCallbacks
    def test_answer_trickled_within_the_timeout_is_read(self) -> Any:
        """The trickle harness itself works: fast enough, the same bytes are a yes."""
        server = self.serve(trickle(0.001))
        decision, _ = yield self.check(self.authorizer(server))
        self.assertTrue(decision.is_allowed, decision)

    @inlineCallbacks
    def test_hundred_checks_against_a_silent_service(self) -> Any:
        server = self.serve(silent)
        port = server.port.getHost().port
        yield deferLater(reactor, 0, lambda: None)
        gc.collect()
        before = open_fds()
        self.assertEqual(sockets_on_port(port), 1)  # the listening socket
        # A longer timeout than the other faults: the mid-way socket count below must not race
        # the connections being set up on a busy host.
        limit = 3 * TIMEOUT
        auth = self.authorizer(server, timeout=limit, pool_size=10)
        started = time.monotonic()
        peak: list[int] = [0]

        def sample() -> None:
            peak[0] = max(peak[0], auth.open_connections, len(server.open_connections))

        def sampled(result: Decision | Failure) -> Decision | Failure:
            sample()
            return result

        checks = [auth.authorize(join(n)).addBoth(sampled) for n in range(100)]
        for share in (0.1, 0.3, 0.6, 0.9):
            reactor.callLater(share * limit, sample)  # type: ignore[attr-defined]
        during: list[int] = []
        reactor.callLater(limit / 2, lambda: during.append(sockets_on_port(port)))  # type: ignore[attr-defined]
        decisions: list[Decision] = yield gatherResults(checks)
        elapsed = time.monotonic() - started
        self.assertEqual({(d.outcome, d.kind) for d in decisions}, {("error", "timeout")})
        self.assertLess(elapsed, limit + SLACK)
        # At most the pool size at once: the rest waited their turn.
        self.assertLessEqual(peak[0], 10)
        yield self.all_closed(server)
        yield auth.close()
        self.assertEqual(auth.open_connections, 0)
        yield deferLater(reactor, 0.05, lambda: None)
        gc.collect()
        self.assertEqual(during, [1 + 2 * 10])  # listener, and both ends of 10 connections
        self.assertEqual(sockets_on_port(port), 1, "sockets to the service left open")
        self.assertLessEqual(open_fds(), before, "file descriptors left open")


class TLSFaultTests(FaultCase):
    @inlineCallbacks
    def test_stalled_handshake_times_out(self) -> Any:
        server = self.serve(silent, on_connect=True)
        decision, elapsed = yield self.check(self.authorizer(server, "https", timeout=TIMEOUT))
        self.assertEqual((decision.outcome, decision.kind), ("error", "timeout"))
        self.assertLess(elapsed, TIMEOUT + SLACK)
        yield self.all_closed(server)

    @inlineCallbacks
    def test_stalled_handshake_times_out_when_insecure(self) -> Any:
        server = self.serve(silent, on_connect=True)
        decision, _ = yield self.check(
            self.authorizer(server, "https", timeout=TIMEOUT, insecure=True)
        )
        self.assertEqual((decision.outcome, decision.kind), ("error", "timeout"))
        self.flushLoggedErrors()
        yield self.all_closed(server)

    @inlineCallbacks
    def test_garbage_instead_of_a_handshake_is_a_tls_error(self) -> Any:
        server = self.serve(garbage, on_connect=True)
        decision, _ = yield self.check(self.authorizer(server, "https"))
        self.assertEqual((decision.outcome, decision.kind), ("error", "tls"))

    @inlineCallbacks
    def test_plain_http_answer_to_a_handshake_is_a_tls_error(self) -> Any:
        server = self.serve(
            lambda c: c.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n"),  # type: ignore[union-attr]
            on_connect=True,
        )
        decision, _ = yield self.check(self.authorizer(server, "https"))
        self.assertEqual((decision.outcome, decision.kind), ("error", "tls"))


class _Hung:
    """An HTTP client whose requests never get an answer; counts what was asked."""

    def __init__(self) -> None:
        self.requests = 0

    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.requests += 1
        return Deferred()


class DeadlineQueueTests(SynchronousTestCase):
    def test_checks_whose_deadline_passed_in_the_queue_ask_nobody(self) -> None:
        """When a hung service's checks expire, each freed slot goes to a queued check whose
        own deadline has come too: it must not open a connection just to drop it (with a
        burst of joins queued, that was one wasted connection per queued check)."""
        clock = Clock()
        client = _Hung()
        settings = HTTPAuthSettings(url="http://auth.test/", timeout=2, pool_size=3)
        auth = HTTPAuthorizer(settings, clock, http_client=client)
        checks = [auth.authorize(join(n)) for n in range(30)]
        self.assertEqual(client.requests, 3)
        clock.advance(2)
        self.assertEqual({self.successResultOf(d).kind for d in checks}, {"timeout"})
        self.assertEqual(client.requests, 3)

    def test_queued_check_with_time_left_is_still_asked(self) -> None:
        clock = Clock()
        client = _Hung()
        settings = HTTPAuthSettings(url="http://auth.test/", timeout=2, pool_size=1)
        auth = HTTPAuthorizer(settings, clock, http_client=client)
        first = auth.authorize(join(0))
        clock.advance(1)
        second = auth.authorize(join(1))
        clock.advance(1)
        self.assertEqual(self.successResultOf(first).kind, "timeout")
        self.assertNoResult(second)
        self.assertEqual(client.requests, 2)
        clock.advance(1)
        self.assertEqual(self.successResultOf(second).kind, "timeout")


class _Resolving:
    """An HTTP client stuck resolving the service's host name, as Twisted's HostnameEndpoint
    is: cancelled there, it fails with DNSLookupError, not CancelledError."""

    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        def cancel(d: Deferred[Any]) -> None:
            d.errback(DNSLookupError("Couldn't find the hostname 'auth.test'"))

        return Deferred(cancel)


class NameResolutionTests(SynchronousTestCase):
    def test_unresolvable_host_is_a_connection_error_not_a_bug(self) -> None:
        client = _Hung()
        client.get = lambda *a, **k: fail(DNSLookupError("no such host"))  # type: ignore[method-assign]
        auth = HTTPAuthorizer(
            HTTPAuthSettings(url="http://auth.test/"), Clock(), http_client=client
        )
        decision = self.successResultOf(auth.authorize(join()))
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancel_while_resolving_is_a_quiet_cancellation(self) -> None:
        """The user left while the host name was being resolved: no traceback, no error line."""
        # Twisted annotates the test as trial's TestCase; it only calls addCleanup.
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        auth = HTTPAuthorizer(
            HTTPAuthSettings(url="http://auth.test/"), Clock(), http_client=_Resolving()
        )
        d = auth.authorize(join())
        d.cancel()
        decision = self.successResultOf(d)
        self.assertEqual(
            (decision.kind, decision.reason), ("cancelled", Decision.cancelled().reason)
        )
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.debug])
