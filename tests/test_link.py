"""The component link: backoff that survives a refused handshake, and one log event per step."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet import error, reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.error import StreamError
from twisted.words.protocols.jabber.jid import JID

from mucauth.link import STABLE_LINK, ComponentLink, LinkFactory
from mucauth.settings import ComponentSettings, Secret
from tests.support.prosody import ProsodyServer

WRONG_SECRET = "wr0ng-S3CRET-for-the-test"


class EventLog:
    """Collects the link's events from the global log publisher for one test."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        test.addCleanup(globalLogPublisher.removeObserver, observer)

    def named(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("link_event") == name]


class FakeConnector:
    """Enough of an IConnector for the factory's retry bookkeeping."""

    def connect(self) -> None:
        pass

    def stopConnecting(self) -> None:
        pass


def fast_backoff(factory: LinkFactory, initial: float, factor: float = 2.0) -> None:
    """Shorter first delay and no jitter, so a test sees several retries in a second or two."""
    factory.initialDelay = factory.delay = initial
    factory.factor = factor
    factory.jitter = 0


class LinkFactoryTests(SynchronousTestCase):
    def make_factory(self) -> LinkFactory:
        authenticator = jabber_component.ConnectComponentAuthenticator("rooms.localhost", "x")
        factory = LinkFactory(authenticator, JID("rooms.localhost"))
        factory.clock = task.Clock()  # type: ignore[assignment]  # Twisted types it as None
        factory.jitter = 0
        return factory

    def test_lost_link_is_a_warning_but_our_own_shutdown_is_not(self) -> None:
        log = EventLog(self)
        factory = self.make_factory()
        connector = FakeConnector()
        lost = Failure(error.ConnectionDone())
        factory.clientConnectionLost(connector, lost)  # type: ignore[arg-type]
        factory.stopTrying()
        factory.clientConnectionLost(connector, lost)  # type: ignore[arg-type]
        levels = [e["log_level"].name for e in log.named("disconnected")]
        self.assertEqual(levels, ["warn", "info"])

    def test_tcp_connection_keeps_the_backoff(self) -> None:
        factory = self.make_factory()
        factory.delay, factory.retries = 7.0, 3
        factory.buildProtocol(None)
        self.assertEqual((factory.delay, factory.retries), (7.0, 3))

    def test_handshake_resets_the_backoff(self) -> None:
        factory = self.make_factory()
        factory.delay, factory.retries = 7.0, 3
        xs = factory.buildProtocol(None)
        xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
        self.assertEqual((factory.delay, factory.retries), (factory.initialDelay, 0))

    def test_retry_logs_the_delay_and_respects_the_cap(self) -> None:
        log = EventLog(self)
        factory = self.make_factory()
        factory.maxDelay = 5
        factory.connector = object()  # type: ignore[assignment]
        for _ in range(4):
            factory.retry()
            factory.clock.advance(0)  # type: ignore[attr-defined]
            factory._callID.cancel()  # type: ignore[attr-defined]
            factory._callID = None
        delays = [round(e["delay"], 3) for e in log.named("reconnect_scheduled")]
        self.assertEqual(delays, [1.0, 2.718, 5.0, 5.0])

    def test_stream_error_names_the_condition(self) -> None:
        log = EventLog(self)
        factory = self.make_factory()
        xs = factory.buildProtocol(None)
        xs.dispatch(Failure(StreamError("not-authorized")), xmlstream.STREAM_ERROR_EVENT)
        [event] = log.named("authentication_failed")
        self.assertEqual(event["condition"], "not-authorized")
        self.assertIn("not-authorized", formatEvent(event))


class CountingConnector:
    """Stands in for the TCP connector: counts the connection attempts the factory makes."""

    def __init__(self) -> None:
        self.attempts = 0

    def connect(self) -> None:
        self.attempts += 1

    def stopConnecting(self) -> None:
        raise error.NotConnectingError()

    def getDestination(self) -> None:
        return None


class ReconnectTests(SynchronousTestCase):
    """A link that was up and drops is retried at once; then the usual backoff applies."""

    def setUp(self) -> None:
        self.log = EventLog(self)
        self.clock = task.Clock()
        authenticator = jabber_component.ConnectComponentAuthenticator("rooms.localhost", "x")
        self.factory = LinkFactory(authenticator, JID("rooms.localhost"))
        self.factory.clock = self.clock  # type: ignore[assignment]  # Twisted types it as None
        self.factory.jitter = 0
        self.connector = CountingConnector()

    def link_up_then_lost(self, lasted: float) -> None:
        xs = self.factory.buildProtocol(None)
        xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
        self.clock.advance(lasted)
        self.factory.clientConnectionLost(
            self.connector,  # type: ignore[arg-type]
            Failure(error.ConnectionDone()),
        )

    def delays(self) -> list[float]:
        return [round(e["delay"], 3) for e in self.log.named("reconnect_scheduled")]

    def test_a_stable_link_that_drops_is_retried_at_once(self) -> None:
        self.link_up_then_lost(STABLE_LINK)
        self.clock.advance(0)
        self.assertEqual(self.connector.attempts, 1)
        # The server is still away: the backoff starts from its first step, not beyond it.
        self.factory.clientConnectionFailed(
            self.connector,  # type: ignore[arg-type]
            Failure(error.ConnectionRefusedError()),
        )
        self.factory.clientConnectionFailed(
            self.connector,  # type: ignore[arg-type]
            Failure(error.ConnectionRefusedError()),
        )
        self.assertEqual(self.delays(), [0.0, 1.0, 2.718])

    def test_a_link_lost_soon_after_its_handshake_backs_off(self) -> None:
        """Two processes kicking each other off one domain must not reconnect in a loop."""
        self.link_up_then_lost(STABLE_LINK / 2)
        self.clock.advance(0.5)
        self.assertEqual(self.connector.attempts, 0)
        self.assertEqual(self.delays(), [1.0])

    def test_each_stable_link_earns_one_immediate_retry(self) -> None:
        self.link_up_then_lost(STABLE_LINK)
        self.clock.advance(0)
        self.link_up_then_lost(STABLE_LINK + 60)
        self.clock.advance(0)
        self.assertEqual(self.connector.attempts, 2)
        self.assertEqual(self.delays(), [0.0, 0.0])

    def test_stopping_cancels_the_immediate_retry(self) -> None:
        self.link_up_then_lost(STABLE_LINK)
        self.factory.stopTrying()
        self.clock.advance(1)
        self.assertEqual(self.connector.attempts, 0)

    def test_conflict_is_a_standby_not_a_wrong_secret(self) -> None:
        xs = self.factory.buildProtocol(None)
        xs.dispatch(
            Failure(StreamError("conflict", "Component already connected")),
            xmlstream.STREAM_ERROR_EVENT,
        )
        [event] = self.log.named("conflict")
        self.assertIn("standby", formatEvent(event) or "")
        self.assertEqual(self.log.named("authentication_failed"), [])


@pytest.mark.prosody
class ProsodyLinkTests(TestCase):
    """Against a real Prosody: handshake, wrong secret, and a server restart."""

    timeout = 30

    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="mucauth-prosody-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        self.prosody = ProsodyServer(directory)
        self.prosody.start()
        self.addCleanup(self.prosody.stop)
        self.log = EventLog(self)

    def start_link(self, secret: str, max_delay: float) -> ComponentLink:
        link = ComponentLink(
            ComponentSettings(
                jid=JID(self.prosody.component_domain),
                secret=Secret(secret),
                host="127.0.0.1",
                port=self.prosody.component_port,
                reconnect_max_delay=max_delay,
            )
        )
        # Cleanups run last-in first-out: the link closes before Prosody stops.
        self.addCleanup(link.stopService)
        return link

    def wait_for(self, condition: Callable[[], Any], timeout: float) -> Deferred[None]:
        deadline = time.monotonic() + timeout

        @inlineCallbacks
        def poll() -> Any:
            while not condition():
                if time.monotonic() > deadline:
                    raise AssertionError(f"not seen within {timeout} s: {self.summary()}")
                yield task.deferLater(reactor, 0.02, lambda: None)

        return poll()

    def summary(self) -> list[str]:
        return [e["link_event"] for e in self.log.events if "link_event" in e]

    @inlineCallbacks
    def test_handshake_succeeds(self) -> Any:
        link = self.start_link(self.prosody.component_secret, max_delay=2)
        link.startService()
        yield self.wait_for(lambda: self.log.named("authenticated"), 5)
        [connecting] = self.log.named("connecting")
        self.assertEqual(
            (connecting["host"], connecting["port"], connecting["jid"]),
            ("127.0.0.1", self.prosody.component_port, "rooms.localhost"),
        )
        self.assertIsNotNone(link.xmlstream)

    @inlineCallbacks
    def test_link_socket_has_nagle_off(self) -> Any:
        """Stanzas leave at once instead of waiting for the server's delayed ACK."""
        link = self.start_link(self.prosody.component_secret, max_delay=2)
        link.startService()
        yield self.wait_for(lambda: self.log.named("authenticated"), 5)
        assert link.xmlstream is not None
        handle = link.xmlstream.transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    @inlineCallbacks
    def test_wrong_secret_is_logged_and_backs_off(self) -> Any:
        link = self.start_link(WRONG_SECRET, max_delay=1)
        fast_backoff(link.factory, 0.25)
        link.startService()
        yield self.wait_for(lambda: len(self.log.named("reconnect_scheduled")) >= 4, 8)
        failures = self.log.named("authentication_failed")
        self.assertGreaterEqual(len(failures), 3)
        self.assertEqual({e["condition"] for e in failures}, {"not-authorized"})
        self.assertIn("not-authorized", formatEvent(failures[0]))
        # Each refused handshake waits longer than the one before, up to the cap; Wokkel alone
        # would retry after the same initial delay every time.
        delays = [round(e["delay"], 2) for e in self.log.named("reconnect_scheduled")][:4]
        self.assertEqual(delays, [0.25, 0.5, 1.0, 1.0])
        self.assertEqual(self.log.named("authenticated"), [])
        for event in self.log.events:
            self.assertNotIn(WRONG_SECRET, repr(event))
            self.assertNotIn(WRONG_SECRET, formatEvent(event) or "")

    @inlineCallbacks
    def test_second_link_for_one_domain_waits_as_a_standby(self) -> Any:
        """Prosody takes one connection per component domain and refuses the next with
        'conflict'; that process keeps retrying and takes over once the first goes away."""
        first = self.start_link(self.prosody.component_secret, max_delay=0.5)
        first.startService()
        yield self.wait_for(lambda: self.log.named("authenticated"), 5)
        second = self.start_link(self.prosody.component_secret, max_delay=0.5)
        fast_backoff(second.factory, 0.2)
        second.startService()
        yield self.wait_for(lambda: self.log.named("conflict"), 5)
        self.assertEqual(self.log.named("authentication_failed"), [])
        yield first.stopService()
        started = time.monotonic()
        yield self.wait_for(lambda: len(self.log.named("authenticated")) >= 2, 5)
        self.assertLess(
            time.monotonic() - started, 0.5 + 2.0
        )  # the cap, with slack for a busy host
        self.assertIsNotNone(second.xmlstream)

    @inlineCallbacks
    def test_reconnects_after_server_restart_within_the_cap(self) -> Any:
        link = self.start_link(self.prosody.component_secret, max_delay=1)
        fast_backoff(link.factory, 0.1)
        link.startService()
        yield self.wait_for(lambda: self.log.named("authenticated"), 5)
        self.prosody.stop()
        yield self.wait_for(lambda: self.log.named("disconnected"), 5)
        # Let attempts fail against the closed port until an uncapped backoff would be far
        # beyond the cap (0.1 s growing by Twisted's factor: about 40 s after six).
        yield self.wait_for(lambda: len(self.log.named("connect_failed")) >= 6, 10)
        self.prosody.start()
        started = time.monotonic()
        yield self.wait_for(lambda: len(self.log.named("authenticated")) >= 2, 5)
        self.assertLess(time.monotonic() - started, 1.0 + 2.0)  # the cap, with slack
        self.assertIsNotNone(link.xmlstream)
