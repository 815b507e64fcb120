"""/metrics: scraped over real HTTP after joins decided by a real gate against a real service."""

from __future__ import annotations

from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber.jid import JID
from wokkel.generic import parseXml
from wokkel.subprotocols import XMPPHandler
from wokkel.test import helpers

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.gate import build_authorizer
from mucauth.link import ComponentLink
from mucauth.metrics import LATENCY_BUCKETS, Metrics, MetricsServer
from mucauth.muc.service import MUCService
from mucauth.settings import (
    ComponentSettings,
    HTTPAuthSettings,
    MetricsSettings,
    RoomScope,
    Secret,
)
from mucauth.store import MemoryRoomStore
from tests.muc.support import ROOM, SERVICE, presence
from tests.support.gated import GatedMUC, start_policy_server, wait_for
from tests.support.http_server import AuthServer
from tests.test_tap import settings as tap_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, keyed by name and sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: Samples, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


class Stack(GatedMUC):
    """A gated MUC service with metrics, served on 127.0.0.1:0 and scraped over HTTP."""

    def __init__(self, test: TestCase, server: AuthServer, **auth: Any) -> None:
        self.metrics = Metrics()
        super().__init__(test, server, self.metrics, **auth)
        self.server = MetricsServer(self.metrics, MetricsSettings(port=0), reactor)
        self.server.startService()
        test.addCleanup(self.server.stopService)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        test.addCleanup(self.pool.closeCachedConnections)
        self.test = test

    @property
    def url(self) -> str:
        address = self.server.address()
        assert address is not None
        return f"http://127.0.0.1:{address.port}"  # type: ignore[attr-defined]

    async def get(self, path: str = "/metrics", accept: str | None = None) -> tuple[int, bytes]:
        client = HTTPClient(Agent(reactor, pool=self.pool))
        headers: dict[bytes | str, bytes | str] | None = {"Accept": accept} if accept else None
        response = await client.get(self.url + path, headers=headers)
        return response.code, await treq.content(response)

    async def scrape(self) -> Samples:
        code, body = await self.get()
        self.test.assertEqual(code, 200)
        return samples(body.decode("utf-8"))


class DecisionMetricsTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.auth_server = start_policy_server(self)

    async def test_counters_and_histogram_move_once_per_decision(self) -> None:
        # A 2 s timeout: long enough for the users whose service answers, even on a busy host.
        stack = Stack(self, self.auth_server, timeout=2)
        before = await stack.scrape()
        self.assertEqual(value(before, "mucauth_rooms"), 0)
        self.assertEqual(value(before, "mucauth_authorization_seconds_count", outcome="allow"), 0)

        stack.join("allowed1@example.org/a", "one")
        stack.join("allowed2@example.org/a", "two")
        stack.join("denied@example.org/a", "eve")
        stack.join("broken@example.org/a", "mal")
        stack.join("slow@example.org/a", "slow")
        # The slow user's second join finds their first still pending: refused, no HTTP.
        stack.join("slow@example.org/b", "slow2", "other@" + SERVICE)
        await wait_for(lambda: stack.muc.pending_checks == 1 and len(stack.replies()) >= 5)

        during = await stack.scrape()
        self.assertEqual(value(during, "mucauth_checks_pending"), 1)
        self.assertEqual(value(during, "mucauth_http_checks_in_flight"), 1)
        self.assertGreaterEqual(value(during, "mucauth_http_connections_open"), 1)

        await stack.settled()
        after = await stack.scrape()

        def decisions(outcome: str, kind: str, source: str) -> float:
            return value(
                after, "mucauth_join_decisions_total", outcome=outcome, kind=kind, source=source
            )

        self.assertEqual(decisions("allow", "", "http"), 2)
        self.assertEqual(decisions("deny", "", "http"), 1)
        self.assertEqual(decisions("error", "status", "http"), 1)
        self.assertEqual(decisions("error", "timeout", "http"), 1)
        self.assertEqual(decisions("error", "overload", "service"), 1)
        total = sum(v for (name, _), v in after.items() if name == "mucauth_join_decisions_total")
        self.assertEqual(total, 6)

        # One observation per HTTP request; the overload refusal sent none.
        count = "mucauth_authorization_seconds_count"
        self.assertEqual(value(after, count, outcome="allow"), 2)
        self.assertEqual(value(after, count, outcome="deny"), 1)
        self.assertEqual(value(after, count, outcome="error"), 2)
        # The timed-out check waited its 2 s: above every bucket below that.
        bucket = "mucauth_authorization_seconds_bucket"
        self.assertLessEqual(value(after, bucket, outcome="error", le="1.0"), 1)
        self.assertEqual(value(after, bucket, outcome="error", le="10.0"), 2)
        self.assertEqual([str(b) for b in LATENCY_BUCKETS][0::5], ["0.005", "0.25", "10.0"])

        self.assertEqual(value(after, "mucauth_rooms"), 1)
        self.assertEqual(value(after, "mucauth_occupants"), 2)
        self.assertEqual(value(after, "mucauth_checks_pending"), 0)
        self.assertEqual(value(after, "mucauth_http_checks_in_flight"), 0)

    async def test_connections_gauge_follows_the_pool(self) -> None:
        stack = Stack(self, self.auth_server)
        stack.join("allowed1@example.org/a", "one")
        await wait_for(lambda: len(stack.replies()) >= 2)
        # The connection stays open for the next check (persistent pool).
        await wait_for(lambda: len(self.auth_server.open_connections) == 1)
        scrape = await stack.scrape()
        self.assertEqual(value(scrape, "mucauth_http_connections_open"), 1)
        await stack.gate.close()
        await self.auth_server.all_closed()
        scrape = await stack.scrape()
        self.assertEqual(value(scrape, "mucauth_http_connections_open"), 0)

    async def test_cached_and_ungated_decisions_are_counted_without_http(self) -> None:
        stack = Stack(
            self,
            self.auth_server,
            cache_ttl=60,
            scope=RoomScope("disabled", {"all": frozenset({"lobby"})}),
        )
        stack.join("allowed1@example.org/a", "one")
        await wait_for(lambda: stack.muc.pending_checks == 0 and stack.replies())
        stack.join("allowed1@example.org/b", "one")  # their other session: from the cache
        stack.join("denied@example.org/a", "lobbyist", "lobby@" + SERVICE)  # outside scope
        await wait_for(lambda: stack.muc.pending_checks == 0)
        scrape = await stack.scrape()
        for source in ("http", "cache", "scope"):
            self.assertEqual(
                value(
                    scrape,
                    "mucauth_join_decisions_total",
                    outcome="allow",
                    kind="",
                    source=source,
                ),
                1,
                source,
            )
        self.assertEqual(len(self.auth_server.resource.requests), 1)
        self.assertEqual(value(scrape, "mucauth_authorization_seconds_count", outcome="allow"), 1)

    async def test_only_metrics_is_served(self) -> None:
        stack = Stack(self, self.auth_server)
        code, _ = await stack.get("/")
        self.assertEqual(code, 404)
        code, body = await stack.get("/metrics", accept="application/openmetrics-text")
        self.assertEqual(code, 200)
        self.assertTrue(body.rstrip().endswith(b"# EOF"))


class RegistryTests(SynchronousTestCase):
    def test_each_instance_has_its_own_registry(self) -> None:
        first, second = Metrics(), Metrics()
        request = JoinRequest(JID("a@example.org/r"), JID(ROOM), "a")
        first.decision(request, Decision.deny("no").with_details(source="http"))
        name = "mucauth_join_decisions_total"
        labels = {"outcome": "deny", "kind": "", "source": "http"}
        self.assertEqual(first.registry.get_sample_value(name, labels), 1)
        self.assertIsNone(second.registry.get_sample_value(name, labels))

    def test_cancelled_checks_are_not_timed(self) -> None:
        metrics = Metrics()
        request = JoinRequest(JID("a@example.org/r"), JID(ROOM), "a")
        metrics.http_check(request, Decision.cancelled())
        metrics.http_check(request, Decision.error("connection", "ConnectionRefusedError"))
        count = metrics.registry.get_sample_value(
            "mucauth_authorization_seconds_count", {"outcome": "error"}
        )
        self.assertEqual(count, 1)

    def test_an_authorizer_that_names_no_source(self) -> None:
        metrics = Metrics()
        request = JoinRequest(JID("a@example.org/r"), JID(ROOM), "a")
        metrics.decision(request, Decision.allow())
        value = metrics.registry.get_sample_value(
            "mucauth_join_decisions_total", {"outcome": "allow", "kind": "", "source": "other"}
        )
        self.assertEqual(value, 1)

    def test_the_store_write_queue_is_read_at_scrape_time(self) -> None:
        class Store:
            pending_writes = 7
            dropped_writes = 2

        metrics = Metrics()
        metrics.watch(store=Store())  # type: ignore[arg-type]
        registry = metrics.registry
        self.assertEqual(registry.get_sample_value("mucauth_store_writes_pending"), 7)
        self.assertEqual(registry.get_sample_value("mucauth_store_writes_dropped_total"), 2)
        Store.pending_writes = 0
        self.assertEqual(registry.get_sample_value("mucauth_store_writes_pending"), 0)


class WiringTests(SynchronousTestCase):
    """tap.py: metrics exist only when [metrics] port is set, on the configured interface."""

    def test_off_without_a_port(self) -> None:
        from mucauth.tap import make_service

        service = make_service(tap_settings(self), reactor=MemoryReactorClock())
        self.assertIsNone(service.metrics)
        self.assertNotIn("metrics", [s.name for s in service])

    def test_port_and_interface(self) -> None:
        from dataclasses import replace

        from mucauth.tap import make_service

        memory = MemoryReactorClock()
        settings = replace(
            tap_settings(self), metrics=MetricsSettings(port=9464, interface="127.0.0.2")
        )
        service = make_service(settings, reactor=memory)
        self.assertIsNotNone(service.metrics)
        server = service.getServiceNamed("metrics")
        server.privilegedStartService()
        [(port, _factory, _backlog, interface)] = memory.tcpServers
        self.assertEqual((port, interface), (9464, "127.0.0.2"))
        handlers = [h for h in service.link if type(h).__name__ == "LinkMetrics"]
        self.assertEqual(len(handlers), 1)

    def test_the_service_and_gate_report_to_the_metrics(self) -> None:
        from dataclasses import replace

        from mucauth.tap import make_service

        base = tap_settings(self)
        settings = replace(
            base,
            metrics=MetricsSettings(port=9464),
            muc=replace(base.muc, max_pending_per_user=1),
        )
        store = MemoryRoomStore()
        store.open()
        service = make_service(settings, reactor=MemoryReactorClock(), store=store)
        metrics = service.metrics
        assert metrics is not None
        stub = helpers.XmlStreamStub()
        service.muc.makeConnection(stub.xmlstream)
        service.muc.connectionInitialized()
        # The first join waits for HTTP (in memory, forever); the second is refused at once.
        for n in ("1", "2"):
            stub.send(parseXml(presence(f"ann@example.org/{n}", f"r{n}@rooms.localhost/ann")))
        registry = metrics.registry
        overload = {"outcome": "error", "kind": "overload", "source": "service"}
        self.assertEqual(registry.get_sample_value("mucauth_join_decisions_total", overload), 1)
        self.assertEqual(registry.get_sample_value("mucauth_checks_pending"), 1)
        self.assertEqual(registry.get_sample_value("mucauth_http_checks_in_flight"), 1)
        # The in-memory store queues no writes; the SQL store's queue is read the same way.
        self.assertEqual(registry.get_sample_value("mucauth_store_writes_pending"), 0)
        self.assertEqual(registry.get_sample_value("mucauth_store_writes_dropped_total"), 0)
        self.assertEqual(registry.get_sample_value("mucauth_rooms_loading"), 0)

    def test_the_join_queue_reports_its_length_waits_and_refusals(self) -> None:
        from dataclasses import replace

        from mucauth.tap import make_service

        base = tap_settings(self)
        settings = replace(
            base,
            metrics=MetricsSettings(port=9464),
            http_auth=replace(base.http_auth, pool_size=1, timeout=60),
            muc=replace(base.muc, max_pending_per_user=3, queue_timeout=30),
        )
        clock = MemoryReactorClock()
        service = make_service(settings, reactor=clock, store=None)
        metrics = service.metrics
        assert metrics is not None
        stub = helpers.XmlStreamStub()
        service.muc.makeConnection(stub.xmlstream)
        service.muc.connectionInitialized()
        # One check on the wire (pool_size 1, waiting in memory forever), two queued, the
        # fourth over the user's bound.
        for n in "1234":
            stub.send(parseXml(presence(f"ann@example.org/{n}", f"r{n}@rooms.localhost/ann")))
        registry = metrics.registry

        def refusals(reason: str) -> float | None:
            return registry.get_sample_value(
                "mucauth_join_queue_refusals_total", {"reason": reason}
            )

        self.assertEqual(registry.get_sample_value("mucauth_join_queue_length"), 2)
        self.assertEqual(registry.get_sample_value("mucauth_checks_pending"), 3)
        self.assertEqual(refusals("user_limit"), 1)
        self.assertEqual(refusals("service_limit"), 0)
        self.assertEqual(registry.get_sample_value("mucauth_join_queue_seconds_count"), 1)
        clock.advance(30)
        self.assertEqual(registry.get_sample_value("mucauth_join_queue_length"), 0)
        self.assertEqual(refusals("queue_timeout"), 2)
        self.assertEqual(registry.get_sample_value("mucauth_join_queue_seconds_count"), 3)
        self.assertEqual(registry.get_sample_value("mucauth_join_queue_seconds_sum"), 60)
        self.assertEqual(
            registry.get_sample_value(
                "mucauth_join_decisions_total",
                {"outcome": "error", "kind": "queue_timeout", "source": "service"},
            ),
            2,
        )


# -- the component link: stanzas both ways, link state and reconnects, over a real stream

SECRET = "link-secret"


class _Users(XMPPHandler):
    """The other side: a component for users.localhost that records what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self.received.append)


class LinkMetricsTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.router = jabber_component.Router()
        factory = jabber_component.XMPPComponentServerFactory(self.router, SECRET)
        # Twisted types the factory as ServerFactory[_ProtoWithFactory]; any protocol factory works.
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.listening.stopListening)
        address = self.listening.getHost()
        assert isinstance(address, IPv4Address)
        self.port = address.port

    def start_link(self, domain: str, *handlers: XMPPHandler) -> ComponentLink:
        link = ComponentLink(
            ComponentSettings(
                jid=JID(domain),
                secret=Secret(SECRET),
                host="127.0.0.1",
                port=self.port,
                reconnect_max_delay=0.2,
            )
        )
        link.factory.initialDelay = 0.05
        for handler in handlers:
            handler.setHandlerParent(link)
        link.startService()
        self.addCleanup(link.stopService)
        return link

    async def test_stanzas_link_state_and_reconnects(self) -> None:
        metrics = Metrics()
        muc = MUCService(
            build_authorizer(
                HTTPAuthSettings(url="http://127.0.0.1:1/", scope=RoomScope("enabled", {})),
                reactor,
            ),
            clock=reactor,
            on_decision=metrics.decision,
        )
        metrics.watch(muc=muc)
        handler = metrics.link_handler()
        rooms = self.start_link("rooms.localhost", muc, handler)
        users = _Users()
        user_link = self.start_link("users.localhost", users)
        await wait_for(lambda: handler.up and user_link.xmlstream is not None)

        def sample(name: str, **labels: str) -> float:
            return metrics.registry.get_sample_value(name, labels) or 0.0

        self.assertEqual(sample("mucauth_component_link_up"), 1)
        # Every room is outside an empty "enabled" scope: joins are allowed without HTTP.
        user_link.send(
            parseXml(presence("ann@users.localhost/x", "room@rooms.localhost/ann", id="j1"))
        )
        # Self-presence and subject: one presence, one message back to the user.
        await wait_for(lambda: len(users.received) == 1)
        await wait_for(lambda: sample("mucauth_stanzas_sent_total", kind="message") == 1)
        self.assertEqual(sample("mucauth_stanzas_received_total", kind="presence"), 1)
        self.assertEqual(sample("mucauth_stanzas_sent_total", kind="presence"), 1)
        self.assertEqual(sample("mucauth_stanzas_received_total", kind="iq"), 0)
        self.assertEqual(sample("mucauth_occupants"), 1)
        self.assertEqual(sample("mucauth_component_reconnects_total"), 0)

        # The server drops the link; the component comes back by itself.
        assert rooms.xmlstream is not None
        rooms.xmlstream.transport.loseConnection()
        await wait_for(lambda: not handler.up)
        self.assertEqual(sample("mucauth_component_link_up"), 0)
        self.assertEqual(sample("mucauth_rooms"), 0)
        await wait_for(lambda: handler.up)
        self.assertEqual(sample("mucauth_component_link_up"), 1)
        self.assertEqual(sample("mucauth_component_reconnects_total"), 1)
