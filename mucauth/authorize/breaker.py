"""Fail fast while the authorization service is down, and find out when it is back.

Without this, every join that arrives during an outage waits for a check that cannot succeed:
each holds an in-flight slot for the whole ``timeout``, and the joins queued behind them wait
for those slots in turn, so the last of a burst hears back after many timeouts. Here, after
``down_after`` consecutive checks fail the way an outage fails (no answer in time, a refused or
reset connection, TLS gone, an HTTP 5xx), the service is considered down: every check is then
answered at once with an error of kind ``service_down`` (the join gets ``failure_condition``),
queued joins included, since the queue hands them here as soon as slots come free. One check
at a time is let through as a probe, at most every ``probe_interval`` seconds; the first
answer (a yes or a clear no alike) marks the service up again.

Only what reaches the HTTP service counts: this wraps the HTTP authorizer, under single-flight,
so a cached or out-of-scope decision never gets here, and a request shared by several joins
counts once. A 4xx, a redirect or a body that is not the contract's is a confused service, not
an absent one: it is refused as before and ends a streak of failures, as does any answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest

__all__ = ["DOWN_REASON", "ServiceBreaker", "ServiceState", "is_outage"]

log = Logger()

# Kinds of failure that say "nobody is there" rather than "somebody answered badly".
_OUTAGE_KINDS = frozenset({"timeout", "connection", "tls"})

DOWN_REASON = "the authorization service is considered down"

State = Literal["up", "down"]


def is_outage(decision: Decision) -> bool:
    """Whether ``decision`` is a failure to reach the service (an HTTP 5xx included)."""
    if not decision.is_error:
        return False
    if decision.kind in _OUTAGE_KINDS:
        return True
    return decision.kind == "status" and decision.status is not None and decision.status >= 500


@dataclass(frozen=True)
class ServiceState:
    """What the admin API and the metrics show of the service's health."""

    state: State
    since: float  # reactor time of the last change (or of start-up)
    consecutive_failures: int
    last_failure: str | None  # "kind: reason" of the latest outage-kind failure
    probe_in_flight: bool
    outages: int  # times the service was considered down since start-up
    refused_while_down: int  # checks answered at once because the service was down

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "seconds_in_state": round(max(0.0, now - self.since), 3),
            "consecutive_failures": self.consecutive_failures,
            "last_failure": self.last_failure,
            "probe_in_flight": self.probe_in_flight,
            "outages": self.outages,
            "refused_while_down": self.refused_while_down,
        }


@implementer(IJoinAuthorizer)
class ServiceBreaker:
    """Wraps the HTTP authorizer; answers at once while the service is considered down.

    ``down_after`` 0 turns it off (every check goes through). ``on_change(state)`` hears each
    change of state (the metrics count outages).
    """

    def __init__(
        self,
        inner: IJoinAuthorizer,
        clock: IReactorTime,
        *,
        down_after: int = 5,
        probe_interval: float = 1.0,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self.down_after = down_after
        self.probe_interval = probe_interval
        self._on_change = on_change
        self._state: State = "up"
        self._since = clock.seconds()
        self._failures = 0
        self._last_failure: str | None = None
        self._probe: Deferred[Decision] | None = None
        self._next_probe = 0.0
        self._outages = 0
        self._refused = 0
        self._refused_this_outage = 0

    @property
    def is_down(self) -> bool:
        return self._state == "down"

    def state(self) -> ServiceState:
        return ServiceState(
            self._state,
            self._since,
            self._failures,
            self._last_failure,
            self._probe is not None,
            self._outages,
            self._refused,
        )

    def describe(self) -> dict[str, Any]:
        """:meth:`state` as JSON, for the admin API's ``GET /v1/service``."""
        return self.state().as_json(self._clock.seconds())

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        if self._state == "up":
            d = self._inner.authorize(request)
            d.addCallback(self._observe)
            return d
        if self._probe is None and self._clock.seconds() >= self._next_probe:
            return self._send_probe(request)
        self._refused += 1
        self._refused_this_outage += 1
        return succeed(Decision.error("service_down", DOWN_REASON).with_details(source="breaker"))

    # -- inside

    def _send_probe(self, request: JoinRequest) -> Deferred[Decision]:
        log.info(
            "authorization service probe: asking for user={user} room={room}",
            mucauth_event="service_probe",
            user=request.user.userhost(),
            room=request.room.userhost(),
        )
        probe = self._probe = self._inner.authorize(request)
        probe.addCallback(self._probed, probe)
        return probe

    def _probed(self, decision: Decision, probe: Deferred[Decision]) -> Decision:
        if self._probe is probe:
            self._probe = None
            if decision.is_cancelled:
                return decision  # its user left: the next check may probe at once
            # The pace counts from the probe's end: a hung service sees one probe per
            # timeout + probe_interval, one refusing connections one per probe_interval.
            self._next_probe = self._clock.seconds() + self.probe_interval
        return self._observe(decision)

    def _observe(self, decision: Decision) -> Decision:
        if decision.is_cancelled:
            return decision  # the user left: the service said nothing either way
        if is_outage(decision):
            self._failures += 1
            self._last_failure = f"{decision.kind}: {decision.reason}"
            if self._state == "up" and self.down_after > 0 and self._failures >= self.down_after:
                self._go_down()
        else:
            self._failures = 0
            if self._state == "down":
                self._go_up(decision)
        return decision

    def _go_down(self) -> None:
        now = self._clock.seconds()
        self._state = "down"
        self._since = now
        self._outages += 1
        self._refused_this_outage = 0
        self._next_probe = now + self.probe_interval
        log.warn(
            "authorization service considered down after {failures} consecutive failures"
            " (last: {last_failure}); refusing joins at once, one probe every"
            " {probe_interval} s",
            mucauth_event="service_down",
            failures=self._failures,
            last_failure=self._last_failure,
            probe_interval=self.probe_interval,
        )
        self._changed("down")

    def _go_up(self, decision: Decision) -> None:
        now = self._clock.seconds()
        down_for = now - self._since
        self._state = "up"
        self._since = now
        log.warn(
            "authorization service answering again ({outcome}) after {down_s} s down;"
            " {refused} checks were refused meanwhile",
            mucauth_event="service_up",
            outcome=decision.outcome,
            down_s=round(down_for, 1),
            refused=self._refused_this_outage,
        )
        self._changed("up")

    def _changed(self, state: State) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(state)
        except Exception:
            log.failure("service state hook failed")
