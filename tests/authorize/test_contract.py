"""What every ``IJoinAuthorizer`` the project ships promises the MUC service, checked on each
(as the room stores share one contract test): it provides the interface, passes the authority's
yes and no on, turns a failure into an error Decision with a known kind (never an errback,
never a traceback into the service), and takes a cancel (the user left) without harm.

Each case says how to build its authorizer over an authority that answers ``allow``, ``deny``
or fails, and how to let a pending check finish (a clock advanced, a stub flushed)."""

from __future__ import annotations

from typing import Any, get_args

from treq.testing import StringStubbingResource, StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface.verify import verifyObject

from mucauth.authorize.base import (
    Decision,
    ErrorKind,
    IJoinAuthorizer,
    JoinRequest,
    StaticAuthorizer,
)
from mucauth.authorize.breaker import ServiceBreaker
from mucauth.authorize.cache import CachingAuthorizer, SingleFlightAuthorizer
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.authorize.scope import ScopedAuthorizer
from mucauth.settings import HTTPAuthSettings, RoomScope
from tests.authorize.fakes import Counting, join

ANSWERS = {
    "allow": Decision.allow(),
    "deny": Decision.deny("not on the roster"),
    "fail": Decision.error("timeout", "the authority did not answer"),
}


class AuthorizerContract:
    """Mixed into a ``SynchronousTestCase`` per shipped authorizer."""

    # Whether the authorizer can meet a failing authority (a fixed list cannot).
    can_fail = True

    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        """The authorizer over an authority that answers ``answer`` (allow, deny, fail)."""
        raise NotImplementedError

    def settle(self) -> None:
        """Let what is pending finish (flush stubs, advance clocks)."""

    def decide(self, answer: str, request: JoinRequest | None = None) -> Decision:
        authorizer = self.make_authorizer(answer)
        d = authorizer.authorize(request or join())
        self.settle()
        decision = self.successResultOf(d)  # type: ignore[attr-defined]
        self.assertIsInstance(decision, Decision)  # type: ignore[attr-defined]
        return decision  # type: ignore[no-any-return]

    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IJoinAuthorizer, self.make_authorizer("allow")))  # type: ignore[attr-defined]

    def test_a_yes_is_an_allow(self) -> None:
        self.assertTrue(self.decide("allow").is_allowed)  # type: ignore[attr-defined]

    def test_a_no_is_a_deny(self) -> None:
        self.assertTrue(self.decide("deny").is_denied)  # type: ignore[attr-defined]

    def test_a_failure_is_an_error_decision_of_a_known_kind(self) -> None:
        if not self.can_fail:
            return
        decision = self.decide("fail")
        self.assertTrue(decision.is_error)  # type: ignore[attr-defined]
        self.assertIn(decision.kind, get_args(ErrorKind))  # type: ignore[attr-defined]

    def test_cancelling_is_harmless(self) -> None:
        d: Deferred[Any] = self.make_authorizer("allow").authorize(join())
        d.cancel()
        self.settle()
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        self.assertEqual(len(outcome), 1)  # type: ignore[attr-defined]
        [result] = outcome
        if not isinstance(result, Decision):
            self.assertTrue(result.check(CancelledError))  # type: ignore[attr-defined]


def _authority(answer: str) -> Counting:
    return Counting(ANSWERS[answer])


class StaticAuthorizerContract(AuthorizerContract, SynchronousTestCase):
    can_fail = False

    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        allowed = {"alice@example.org"} if answer == "allow" else set()
        return StaticAuthorizer(frozenset(allowed))


class _Silent(Resource):
    isLeaf = True

    def render(self, request: Any) -> int:
        return NOT_DONE_YET


class HTTPAuthorizerContract(AuthorizerContract, SynchronousTestCase):
    """Over treq's stub: a 200 with ``allowed`` true or false, or no answer within the timeout."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.stubs: list[StubTreq] = []

    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        if answer == "fail":
            stub = StubTreq(_Silent())
        else:
            body = b'{"allowed": true}' if answer == "allow" else b'{"allowed": false}'

            def respond(method: bytes, url: bytes, *rest: Any) -> Any:
                return 200, {b"Content-Type": b"application/json"}, body

            stub = StubTreq(StringStubbingResource(respond))
        self.stubs.append(stub)
        settings = HTTPAuthSettings(url="http://auth.test/", timeout=3)
        return HTTPAuthorizer(settings, self.clock, http_client=stub)

    def settle(self) -> None:
        for stub in self.stubs:
            stub.flush()
        self.clock.advance(3)
        for stub in self.stubs:
            stub.flush()


class ScopedAuthorizerContract(AuthorizerContract, SynchronousTestCase):
    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        return ScopedAuthorizer(_authority(answer), RoomScope())


class SingleFlightAuthorizerContract(AuthorizerContract, SynchronousTestCase):
    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        return SingleFlightAuthorizer(_authority(answer))


class CachingAuthorizerContract(AuthorizerContract, SynchronousTestCase):
    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        return CachingAuthorizer(_authority(answer), ttl=60, clock=Clock())


class ServiceBreakerContract(AuthorizerContract, SynchronousTestCase):
    def make_authorizer(self, answer: str) -> IJoinAuthorizer:
        return ServiceBreaker(_authority(answer), Clock())
