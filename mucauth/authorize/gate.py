"""The gate as tap.py builds it from settings: scope, cache, single-flight, breaker, HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.authorize.breaker import ServiceBreaker, State
from mucauth.authorize.cache import CachingAuthorizer, SingleFlightAuthorizer
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.authorize.scope import ScopedAuthorizer
from mucauth.settings import HTTPAuthSettings

__all__ = ["Gate", "build_authorizer"]


@implementer(IJoinAuthorizer)
class Gate:
    """The composed authorizer, plus ``close()`` for the one resource it owns: the HTTP pool.

    The layers are reachable (``http``, ``single_flight``, ``cache``, ``breaker``) so metrics
    can read in-flight counts, open connections and the service's state, and tests can look
    inside; ``cache`` is None when ``cache_ttl`` is 0.
    """

    def __init__(
        self,
        front: IJoinAuthorizer,
        http: HTTPAuthorizer,
        single_flight: SingleFlightAuthorizer,
        cache: CachingAuthorizer | None,
        breaker: ServiceBreaker | None = None,
    ) -> None:
        self._front = front
        # The composed authorizer's own method, without a call through this one per check.
        self.authorize = front.authorize  # type: ignore[method-assign]
        self.http = http
        self.single_flight = single_flight
        self.cache = cache
        self.breaker = breaker

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        return self._front.authorize(request)

    def forget(self, user: str, room: str | None = None) -> None:
        """Drop remembered answers for ``user`` (revoked, or refused on a re-check)."""
        if self.cache is not None:
            self.cache.forget(user, room)

    def close(self) -> Deferred[None]:
        """Close idle HTTP connections; call from stopService (return its Deferred)."""
        return self.http.close()


def build_authorizer(
    settings: HTTPAuthSettings,
    reactor: Any,
    *,
    on_http_check: Callable[[JoinRequest, Decision], None] | None = None,
    on_service_state: Callable[[State], None] | None = None,
    log_level: LogLevel = LogLevel.debug,
) -> Gate:
    """Scoped(Caching(SingleFlight(Breaker(HTTPAuthorizer)))), the order that asks HTTP least.

    Scope first: ungated rooms cost nothing. The cache before single-flight: a cached answer
    needs no flight. Single-flight right above HTTP: a burst of identical joins (a client
    retrying, several sessions of one user) is one request. The breaker right on HTTP: it
    counts requests on the wire, and only those (a cached or ungated answer never reaches it).

    ``on_http_check`` sees each HTTP request's Decision (see :class:`HTTPAuthorizer`),
    ``on_service_state`` each change of the service's state (see :class:`ServiceBreaker`);
    ``log_level`` is ``[log] level`` (events below it are not built).
    """
    http = HTTPAuthorizer(settings, reactor, on_check=on_http_check, log_level=log_level)
    breaker = ServiceBreaker(
        http,
        reactor,
        down_after=settings.down_after_failures,
        probe_interval=settings.probe_interval,
        on_change=on_service_state,
    )
    single_flight = SingleFlightAuthorizer(breaker)
    inner: IJoinAuthorizer = single_flight
    cache = None
    if settings.cache_ttl > 0:
        cache = CachingAuthorizer(single_flight, settings.cache_ttl, reactor)
        inner = cache
    front: IJoinAuthorizer = inner
    if settings.scope.mode != "all":
        front = ScopedAuthorizer(inner, settings.scope)
    return Gate(front, http, single_flight, cache, breaker)
