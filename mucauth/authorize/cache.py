"""Spare the HTTP service: identical checks in flight share one request; answers are reused.

Both wrappers key on ``JoinRequest.key`` (bare user, room, nick, action), so two sessions of one
user joining the same room with the same nick are one question.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest

__all__ = ["CachingAuthorizer", "SingleFlightAuthorizer"]

log = Logger()

Key = tuple[str, str, str, str]


class _Flight:
    """One inner check and the callers waiting for it."""

    def __init__(self) -> None:
        self.inner: Deferred[Decision] | None = None
        self.waiters: list[Deferred[Decision]] = []
        self.cancelled = False  # every waiter left and the inner check was cancelled


@implementer(IJoinAuthorizer)
class SingleFlightAuthorizer:
    """Concurrent identical requests share one inner check.

    Each caller gets its own Deferred, so one caller cancelling (its user left) leaves the
    others waiting; the inner check is cancelled only when every caller has gone.
    A cancelled caller's Deferred fires with an error Decision rather than errbacking, keeping
    the interface's promise; nobody acts on it.
    """

    def __init__(self, inner: IJoinAuthorizer) -> None:
        self._inner = inner
        self._flights: dict[Key, _Flight] = {}

    @property
    def in_flight(self) -> int:
        """Inner checks running now (for metrics)."""
        return len(self._flights)

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        key = request.key
        flight = self._flights.get(key)
        start = flight is None
        if flight is None:
            flight = self._flights[key] = _Flight()
        waiter: Deferred[Decision] = Deferred(lambda d: self._cancel_waiter(key, flight, d))
        flight.waiters.append(waiter)
        if start:
            # The waiter exists before the inner check starts: an answer that arrives
            # synchronously still finds someone to give it to.
            inner = self._inner.authorize(request)
            flight.inner = inner
            inner.addBoth(self._land, key, flight)
        return waiter

    def _land(self, result: Decision | Failure, key: Key, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if isinstance(result, Failure):
            if flight.cancelled and result.check(CancelledError):
                # We cancelled it, and a Deferred that honours a cancellation errbacks with
                # CancelledError: the promise was kept, and nobody waits for an answer.
                return
            log.failure("authorizer broke its promise and errbacked", result)
            result = Decision.error("internal", type(result.value).__name__)
        waiters, flight.waiters = flight.waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def _cancel_waiter(self, key: Key, flight: _Flight, waiter: Deferred[Decision]) -> None:
        if waiter in flight.waiters:
            flight.waiters.remove(waiter)
        waiter.callback(Decision.cancelled())
        if flight.waiters:
            return
        if self._flights.get(key) is flight:
            del self._flights[key]
        if flight.inner is not None:
            flight.cancelled = True
            flight.inner.cancel()


@implementer(IJoinAuthorizer)
class CachingAuthorizer:
    """Reuses allow and deny answers for ``ttl`` seconds; errors are never cached.

    An error is "nobody could say", so the next join must ask again. A cached Decision keeps
    its status and reason; its latency is 0, which is what the joining user experienced.
    ``ttl <= 0`` passes every request through.
    """

    def __init__(
        self, inner: IJoinAuthorizer, ttl: float, clock: IReactorTime, max_entries: int = 10000
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        # Insertion order is expiry order (one ttl for all), so expired entries sit in front.
        self._entries: dict[Key, tuple[float, Decision]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        if self._ttl <= 0 or request.action == "recheck":
            # A re-check exists to hear the service's answer now, never a remembered one.
            return self._inner.authorize(request)
        self._expire(self._clock.seconds())
        entry = self._entries.get(request.key)
        if entry is not None:
            return succeed(entry[1].with_details(latency=0.0, source="cache"))
        d = self._inner.authorize(request)
        d.addCallback(self._store, request.key)
        return d

    def forget(self, user: str, room: str | None = None) -> int:
        """Drop the answers remembered for bare JID ``user`` (in ``room``, or every room): it
        was removed from a room, and its next join must ask the service. How many went."""
        keys = [k for k in self._entries if k[0] == user and (room is None or k[1] == room)]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def _store(self, decision: Decision, key: Key) -> Decision:
        if not decision.is_error:
            self._entries.pop(key, None)
            self._entries[key] = (self._clock.seconds() + self._ttl, decision)
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]
        return decision

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (expires, _decision) = next(iter(self._entries.items()))
            if expires > now:
                return
            del self._entries[key]
