"""Prometheus metrics for one mucauth instance, served at ``/metrics`` from its own reactor.

How numbers get here, and why this way:

- Events (a join decided, an HTTP check answered, a stanza passing, a link coming back) arrive
  through plain callables: ``MUCService(on_decision=metrics.decision)`` and
  ``build_authorizer(on_http_check=metrics.http_check)``, and an XMPP handler on the component
  link. ``muc/`` and ``authorize/`` never import prometheus_client, an embedder without metrics
  passes nothing, and a test can pass a list's ``append``. Reading the structured log events
  instead would tie the numbers to the wording and level of log lines, and the global log
  publisher would mix several instances in one process.
- Levels (rooms, occupants, pending checks, HTTP requests in flight, open connections, link up)
  are read from the live objects at scrape time by a custom collector, so no bookkeeping can
  drift from the truth.
- Every :class:`Metrics` owns its :class:`~prometheus_client.CollectorRegistry`, never the
  process-wide default, so tests and embedders can run several side by side.

``/metrics`` is rendered on the reactor thread. prometheus_client's own ``MetricsResource`` runs
the exposition in the reactor's thread pool, where the collector would read ``rooms`` while the
reactor thread changes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.listen import SiteServer
from mucauth.muc.outbound import REFUSED_EVENT, TOO_LARGE, UNWRITABLE
from mucauth.settings import MetricsSettings

if TYPE_CHECKING:
    from mucauth.authorize.gate import Gate
    from mucauth.muc.service import MUCService
    from mucauth.store import IRoomStore

__all__ = ["LATENCY_BUCKETS", "LinkMetrics", "Metrics", "MetricsServer", "metrics_site"]

# Seconds: a healthy service answers in milliseconds; the default timeout is 5 s, the largest
# sensible one 10 s. A timed-out check lands in the bucket of the configured timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds a join waited for a free check: none at all in quiet times, up to the queue timeout
# (30 s by default) in a storm of joins after a server restart.
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The queue's refusals, by the decision that carried them (see JoinGate._overloaded in muc/join.py).
QUEUE_REFUSALS = {
    ("overload", "too many checks pending for user"): "user_limit",
    ("overload", "too many checks pending"): "service_limit",
    ("queue_timeout", None): "queue_timeout",
}

STANZA_KINDS = frozenset({"presence", "message", "iq"})
# XmlStream.send writes one top-level element per call: its first tag names the stanza.
_SENT_STANZA = re.compile(rb"\s*<(presence|message|iq)[\s/>]")


class Metrics:
    """The metrics of one mucauth: feed it through its methods, scrape its ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._muc: MUCService | None = None
        self._gate: Gate | None = None
        self._store: IRoomStore | None = None
        self._links: list[LinkMetrics] = []
        self._decisions = Counter(
            "mucauth_join_decisions",
            "Join (and gated registration) decisions made by the MUC service.",
            ["outcome", "kind", "source"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mucauth_authorization_seconds",
            "Time the HTTP authorization service took to decide, per request sent.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            "mucauth_join_queue_seconds",
            "Time a check waited in the join queue before the authorizer was asked.",
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self._queue_refusals = Counter(
            "mucauth_join_queue_refusals",
            "Joins refused by the join queue: a pending bound reached, or waited too long.",
            ["reason"],
            registry=self.registry,
        )
        for reason in QUEUE_REFUSALS.values():
            self._queue_refusals.labels(reason)
        self._received = Counter(
            "mucauth_stanzas_received",
            "Stanzas received over the component link.",
            ["kind"],
            registry=self.registry,
        )
        self._sent = Counter(
            "mucauth_stanzas_sent",
            "Stanzas written to the component link.",
            ["kind"],
            registry=self.registry,
        )
        self._rechecks = Counter(
            "mucauth_rechecks",
            "Occupants asked about again (revocation.py): the answer's outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._archive_checks = Counter(
            "mucauth_archive_decisions",
            "Archive readers who are not in the room, checked with action=mam.",
            ["outcome"],
            registry=self.registry,
        )
        self._removed = Counter(
            "mucauth_occupants_removed",
            "Occupants removed at the application's word: revoked, or refused on a re-check.",
            ["cause"],
            registry=self.registry,
        )
        for outcome in ("allow", "deny", "error"):
            self._rechecks.labels(outcome)
            self._archive_checks.labels(outcome)
        for cause in ("revoke", "recheck"):
            self._removed.labels(cause)
        self._refused = Counter(
            "mucauth_stanzas_refused",
            "Stanzas the way out did not write (muc/outbound.py): not writable as XML, or over"
            " [limits] max_stanza_size.",
            ["reason"],
            registry=self.registry,
        )
        for reason in (UNWRITABLE, TOO_LARGE):
            self._refused.labels(reason)
        self._reconnects = Counter(
            "mucauth_component_reconnects",
            "Times the component link was established again after a loss.",
            registry=self.registry,
        )
        for kind in sorted(STANZA_KINDS):
            self._received.labels(kind)
            self._sent.labels(kind)
        for outcome in ("allow", "deny", "error"):
            self._latency.labels(outcome)
        self.registry.register(_LiveCollector(self))

    # -- hooks for the parts of mucauth

    def watch(
        self,
        *,
        muc: MUCService | None = None,
        gate: Gate | None = None,
        store: IRoomStore | None = None,
    ) -> None:
        """Read rooms, occupants and pending checks from ``muc``, HTTP state from ``gate``,
        the write queue from ``store``."""
        if muc is not None:
            self._muc = muc
        if gate is not None:
            self._gate = gate
        if store is not None:
            self._store = store

    def decision(self, request: JoinRequest, decision: Decision) -> None:
        """One decision the MUC service acted on (``MUCService(on_decision=...)``)."""
        if request.action == "recheck":
            self._rechecks.labels(decision.outcome).inc()
            return
        if request.action == "mam":
            self._archive_checks.labels(decision.outcome).inc()
            return
        kind = decision.kind if decision.is_error and decision.kind else ""
        self._decisions.labels(decision.outcome, kind, decision.source or "other").inc()
        if kind in ("overload", "queue_timeout"):
            reason = QUEUE_REFUSALS.get((kind, decision.reason)) or QUEUE_REFUSALS.get((kind, None))
            if reason is not None:
                self._queue_refusals.labels(reason).inc()

    def removed(self, cause: str, count: int) -> None:
        """Occupants removed by a revocation or a re-check (``MUCService(on_removed=...)``)."""
        self._removed.labels(cause).inc(count)

    def queue_wait(self, seconds: float) -> None:
        """How long one check waited for its turn (``MUCService(on_queue_wait=...)``)."""
        self._queue_wait.observe(seconds)

    def http_check(self, request: JoinRequest, decision: Decision) -> None:
        """One request answered by (or failed at) the HTTP service (``on_http_check=...``).

        A check cancelled because its user left measures the user's patience, not the
        service, and is left out.
        """
        if decision.is_cancelled:
            return
        self._latency.labels(decision.outcome).observe(decision.latency)

    def link_handler(self) -> LinkMetrics:
        """A handler to attach to the component link (``setHandlerParent(link)``)."""
        handler = LinkMetrics(self)
        self._links.append(handler)
        return handler

    def stanza_received(self, kind: str) -> None:
        self._received.labels(kind).inc()

    def stanza_sent(self, kind: str) -> None:
        self._sent.labels(kind).inc()

    def stanza_refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def link_reconnected(self) -> None:
        self._reconnects.inc()

    # -- read by the collector

    def _levels(self) -> Iterator[Metric]:
        muc, gate = self._muc, self._gate
        rooms = list(muc.rooms.values()) if muc is not None else []
        yield _gauge("mucauth_rooms", "Rooms that exist now.", len(rooms))
        yield _gauge(
            "mucauth_occupants",
            "Occupants (nicks) in all rooms now.",
            sum(len(room) for room in rooms),
        )
        yield _gauge(
            "mucauth_checks_pending",
            "Joins waiting for the gate's answer now.",
            muc.pending_checks if muc is not None else 0,
        )
        yield _gauge(
            "mucauth_join_queue_length",
            "Checks waiting in the join queue for a free slot now (part of checks_pending).",
            muc.queued_checks if muc is not None else 0,
        )
        yield _gauge(
            "mucauth_http_checks_in_flight",
            "Requests to the authorization service queued or on the wire now.",
            gate.single_flight.in_flight if gate is not None else 0,
        )
        yield _gauge(
            "mucauth_http_connections_open",
            "Connections to the authorization service open now, busy or idle.",
            gate.http.open_connections if gate is not None else 0,
        )
        breaker = gate.breaker if gate is not None else None
        service = breaker.state() if breaker is not None else None
        yield _gauge(
            "mucauth_authorization_service_up",
            "0 while the authorization service is considered down (consecutive failures to"
            " reach it: joins are refused at once, one probe at a time), else 1.",
            0 if service is not None and service.state == "down" else 1,
        )
        yield CounterMetricFamily(
            "mucauth_authorization_service_outages",
            "Times the authorization service was considered down since start-up.",
            value=service.outages if service is not None else 0,
        )
        store = self._store
        yield _gauge(
            "mucauth_rooms_loading",
            "Rooms being read back from the room store now (stanzas to them wait).",
            muc.rooms_loading if muc is not None else 0,
        )
        # Only the SQL store queues writes; an embedder's or the in-memory one reports zero.
        yield _gauge(
            "mucauth_store_writes_pending",
            "Writes to the room store not yet committed (waiting, or the database is away).",
            getattr(store, "pending_writes", 0),
        )
        yield CounterMetricFamily(
            "mucauth_store_writes_dropped",
            "Messages of a room's history dropped because too many writes were waiting.",
            value=getattr(store, "dropped_writes", 0),
        )
        yield CounterMetricFamily(
            "mucauth_store_unreadable_rows",
            "Stored rows (messages, settings, affiliations) left out because they could not "
            "be read back; each is logged once with its room and id.",
            value=muc.unreadable_rows if muc is not None else 0,
        )
        yield CounterMetricFamily(
            "mucauth_store_unwritable_messages",
            "Messages not stored because they could not be written as XML.",
            value=muc.unwritable_messages if muc is not None else 0,
        )
        yield _gauge(
            "mucauth_component_link_up",
            "1 while the component link to the XMPP server is authenticated, else 0.",
            int(any(link.up for link in self._links)),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _LiveCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._levels())


class LinkMetrics(XMPPHandler):
    """Counts stanzas both ways and watches the link's state, from inside the stream manager.

    Incoming stanzas are seen by an observer on every element of the stream. Outgoing ones
    are seen through ``rawDataOutFn``, the stream's hook for bytes written: every ``send`` of
    the stream writes one element, so the first tag says which stanza it was (the stream header,
    handshake and stream end are not stanzas and are not counted). A hook set before (Wokkel's
    traffic logging) keeps working.
    """

    log = Logger()

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics
        self.up = False
        self._was_up = False

    def connectionMade(self) -> None:
        xs = self.xmlstream
        previous = getattr(xs, "rawDataOutFn", None)  # test stubs have none

        def written(data: bytes) -> None:
            if previous is not None:
                previous(data)
            match = _SENT_STANZA.match(data)
            if match is not None:
                self._metrics.stanza_sent(match.group(1).decode("ascii"))

        xs.rawDataOutFn = written
        xs.addObserver("/*", self._received, priority=1)
        xs.addObserver(REFUSED_EVENT, self._metrics.stanza_refused)

    def _received(self, element: domish.Element) -> None:
        if element.name in STANZA_KINDS:
            self._metrics.stanza_received(element.name)

    def connectionInitialized(self) -> None:
        self.up = True
        if self._was_up:
            self._metrics.link_reconnected()
        self._was_up = True

    def connectionLost(self, reason: Failure) -> None:
        self.up = False


# -- serving /metrics


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        # Prometheus asks for OpenMetrics when it can; choose_encoder honours the Accept header.
        encoder, content_type = choose_encoder(request.getHeader("accept") or "")
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return encoder(self._registry)


class _QuietSite(Site):
    """A scrape every few seconds would drown the decision events: no access log."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Resource:
        return notFound()  # type: ignore[return-value]


def metrics_site(metrics: Metrics) -> Site:
    """A web site with ``/metrics`` and nothing else."""
    root = _Root()
    root.putChild(b"metrics", _MetricsPage(metrics.registry))
    site = _QuietSite(root)
    site.displayTracebacks = False
    return site


class MetricsServer(SiteServer):
    """``/metrics`` on ``[metrics] interface:port``, as a service of the tree twistd runs."""

    log = Logger()

    def __init__(
        self,
        metrics: Metrics,
        settings: MetricsSettings,
        reactor: Any = None,
        *,
        exit_on_listen_error: bool = False,
    ) -> None:
        if settings.port is None:
            raise ValueError("[metrics] port is not set")
        super().__init__(
            metrics_site(metrics),
            settings.port,
            settings.interface,
            "metrics",
            reactor,
            exit_on_listen_error=exit_on_listen_error,
            path="/metrics",
        )
