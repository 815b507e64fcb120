"""The slot probe (mucauth.slots) in memory: what it sends, how it decides, what a standby does.

ejabberd's routing itself (a probe comes back on the link that holds the room's slot, on none
when the link holds no slot) is exercised on a real cluster in tests/test_standby.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from twisted.internet import task
from twisted.internet.interfaces import IConnector
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.test import helpers

from mucauth.link import LinkFactory
from mucauth.settings import ComponentSettings, Secret
from mucauth.slots import PROBE_ID, PROBE_TIMEOUT, PROBES, SlotProbe

DOMAIN = "rooms.example.org"
SETTINGS = ComponentSettings(jid=JID(DOMAIN), secret=Secret("s"))


class FakeFactory:
    def __init__(self) -> None:
        self.retries: list[float] = []

    def retry_after(self, delay: float) -> None:
        self.retries.append(delay)


class FakeLink:
    """What the probe uses of its stream manager: send, and the factory's retry_after."""

    def __init__(self) -> None:
        self.factory = FakeFactory()
        self.stub = helpers.XmlStreamStub()
        self.transport = StringTransport()
        self.stub.xmlstream.transport = self.transport  # type: ignore[attr-defined]

    def send(self, element: domish.Element) -> None:
        self.stub.xmlstream.send(element)


def answer(probe: domish.Element, sender: str = DOMAIN) -> domish.Element:
    """The probe as ejabberd delivers it back: the same iq, on the link holding its slot."""
    iq = domish.Element(("jabber:component:accept", "iq"))
    iq["type"] = "result"
    iq["from"] = sender
    iq["to"] = probe["to"]
    iq["id"] = probe["id"]
    return iq


class SlotProbeTests(SynchronousTestCase):
    def start(self, **settings: Any) -> tuple[SlotProbe, FakeLink]:
        self.clock = task.Clock()
        probe = SlotProbe(replace(SETTINGS, **settings), self.clock)
        link = FakeLink()
        self.up(probe, link)
        return probe, link

    def up(self, probe: SlotProbe, link: FakeLink) -> None:
        link.stub.output.clear()
        probe.parent = link
        probe.makeConnection(link.stub.xmlstream)
        probe.connectionInitialized()

    def test_sends_k_result_iqs_from_the_domain_to_random_rooms_of_it(self) -> None:
        probe, link = self.start()
        sent = link.stub.output
        self.assertEqual(len(sent), PROBES)
        self.assertTrue(all(iq.name == "iq" and iq["type"] == "result" for iq in sent))
        self.assertTrue(all(iq["from"] == DOMAIN for iq in sent))
        self.assertTrue(all(iq["to"].endswith("@" + DOMAIN) for iq in sent))
        self.assertEqual(len({iq["to"] for iq in sent}), PROBES, "addresses repeat")
        self.assertTrue(all(iq["id"].startswith(PROBE_ID) for iq in sent))
        self.assertIsNone(probe.holds_slot)

    def test_one_answer_means_a_slot_and_nothing_is_dropped(self) -> None:
        probe, link = self.start(standby=True)
        with capturedLogs() as events:
            link.stub.send(answer(link.stub.output[17]))
        self.assertTrue(probe.holds_slot)
        self.assertEqual([e.get("slot_event") for e in events], ["slot"])
        self.clock.advance(PROBE_TIMEOUT * 10)
        self.assertTrue(probe.holds_slot)
        self.assertFalse(link.transport.disconnecting)
        self.assertEqual(link.factory.retries, [])

    def test_a_standby_without_a_slot_closes_its_link_and_retries_after_standby_retry(
        self,
    ) -> None:
        probe, link = self.start(standby=True, standby_retry=2.0)
        self.clock.advance(PROBE_TIMEOUT - 0.01)
        self.assertIsNone(probe.holds_slot)
        with capturedLogs() as events:
            self.clock.advance(0.01)
        self.assertIs(probe.holds_slot, False)
        self.assertTrue(link.transport.disconnecting)
        self.assertEqual(link.factory.retries, [2.0])
        [event] = [e for e in events if e.get("slot_event")]
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertIn("standby: no slot; retrying in 2 s", event["log_format"].format(**event))

    def test_without_standby_no_slot_is_one_warning_and_the_link_stays(self) -> None:
        probe, link = self.start()
        with capturedLogs() as events:
            self.clock.advance(PROBE_TIMEOUT)
            probe.connectionLost(Failure(ConnectionError("gone")))
            self.up(probe, link)  # the link comes back, still without a slot
            self.clock.advance(PROBE_TIMEOUT)
        self.assertIs(probe.holds_slot, False)
        self.assertFalse(link.transport.disconnecting)
        self.assertEqual(link.factory.retries, [])
        warnings = [e for e in events if e.get("slot_event") == "no_slot"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["log_level"], LogLevel.warn)

    def test_every_probe_is_consumed_before_the_muc_service_sees_it(self) -> None:
        """Another process's probes (another round) and late answers too; nothing answers."""
        probe, link = self.start(standby=True)
        seen: list[bool] = []
        link.stub.xmlstream.addObserver(
            "/iq", lambda iq: seen.append(bool(getattr(iq, "handled", False)))
        )
        other = domish.Element((None, "iq"))
        other["to"] = f"{PROBE_ID}abc@{DOMAIN}"
        other["id"] = f"{PROBE_ID}ffffffffffff-3"
        link.stub.send(answer(other))
        self.assertIsNone(probe.holds_slot, "another process's probe says nothing of ours")
        for iq in link.stub.output[:3]:
            link.stub.send(answer(iq))
        not_ours = domish.Element((None, "iq"))
        not_ours["to"] = DOMAIN
        not_ours["id"] = "ping-1"
        link.stub.send(answer(not_ours))
        self.assertEqual(seen, [True, True, True, True, False])
        self.assertTrue(probe.holds_slot)
        self.assertEqual(len(link.stub.output), PROBES, "a probe was answered")

    def test_an_answer_from_outside_the_domain_does_not_count(self) -> None:
        probe, link = self.start(standby=True)
        link.stub.send(answer(link.stub.output[0], sender="mallory@example.org"))
        self.assertIsNone(probe.holds_slot)

    def test_a_new_link_probes_afresh(self) -> None:
        probe, link = self.start(standby=True)
        first = link.stub.output[0]
        self.clock.advance(PROBE_TIMEOUT)
        probe.connectionLost(Failure(ConnectionError("closed")))
        self.up(probe, link)
        link.stub.send(answer(first))  # the last link's probe, late
        self.assertIsNone(probe.holds_slot)
        link.stub.send(answer(link.stub.output[5]))
        self.assertTrue(probe.holds_slot)

    def test_a_lost_link_cancels_the_pending_decision(self) -> None:
        probe, link = self.start(standby=True)
        probe.connectionLost(Failure(ConnectionError("closed")))
        self.clock.advance(PROBE_TIMEOUT)
        self.assertIsNone(probe.holds_slot)
        self.assertEqual(link.factory.retries, [])


class RetryAfterTests(SynchronousTestCase):
    """LinkFactory.retry_after: the next loss is retried after exactly that delay."""

    def test_the_planned_close_reconnects_after_the_delay_then_backoff_as_usual(self) -> None:
        clock = task.Clock()
        authenticator = jabber_component.ConnectComponentAuthenticator(DOMAIN, "s")
        factory = LinkFactory(authenticator, JID(DOMAIN))
        factory.clock = clock  # type: ignore[assignment]
        connects: list[float] = []

        class Connector:
            def connect(self) -> None:
                connects.append(clock.seconds())

            def getDestination(self) -> None:
                return None

        connector = cast(IConnector, Connector())
        factory.retry_after(2.0)
        with capturedLogs() as events:
            factory.clientConnectionLost(connector, Failure(ConnectionError("closed")))
        self.assertNotIn(LogLevel.warn, [e["log_level"] for e in events])
        clock.advance(1.99)
        self.assertEqual(connects, [])
        clock.advance(0.01)
        self.assertEqual(connects, [2.0])
        # Only once: the next loss backs off as before.
        factory.clientConnectionLost(connector, Failure(ConnectionError("closed")))
        clock.advance(0.5)
        self.assertEqual(connects, [2.0])
