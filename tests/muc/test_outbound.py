"""The guard on the stream (muc/outbound.py): what cannot be written, or is over the cap, is not
written; it is logged without its content and counted; an iq is answered in its place."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from zope.interface import provider

from mucauth.authorize import StaticAuthorizer
from mucauth.metrics import Metrics
from mucauth.muc.outbound import REFUSED_EVENT, OutboundGuard, guard
from mucauth.muc.service import MUCService
from mucauth.muc.xml import Stanza
from mucauth.settings import LimitSettings, MUCSettings
from tests.muc.xmltrees import parse_stream

SECRET = "hunter2-content"


def stream() -> tuple[xmlstream.XmlStream, StringTransport]:
    xs = xmlstream.XmlStream(xmlstream.Authenticator())
    xs.namespace = "jabber:component:accept"
    transport = StringTransport()
    xs.makeConnection(transport)
    return xs, transport


def iq(kind: str, body: str = "") -> Stanza:
    element = Stanza((None, "iq"))
    element["from"] = "room@rooms.example.org/bob"
    element["to"] = "alice@example.org/phone"
    element["type"] = kind
    element["id"] = "q1"
    element.addElement(("urn:x", "query"), content=body)
    return element


class GuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.xs, self.transport = stream()
        self.clock = Clock()
        self.reasons: list[str] = []
        self.events: list[str] = []
        self.xs.addObserver(REFUSED_EVENT, self.events.append)
        self.guard = guard(self.xs, lambda: 300, clock=self.clock, on_refused=self.reasons.append)
        self.logged: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observer(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "mucauth.muc.outbound":
                self.logged.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def written(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return parse_stream(data)

    def test_an_element_is_written_by_the_serializer(self) -> None:
        message = domish.Element((None, "message"))  # not a Stanza: domish would not escape
        message["to"] = "alice@example.org/phone"
        message.addElement(("urn:a'b", "x"))
        self.xs.send(message)
        [parsed] = self.written()
        self.assertEqual(parsed[3][0][0], "urn:a'b")
        self.assertEqual(self.reasons, [])

    def test_strings_pass_as_they_are(self) -> None:
        self.xs.send("<presence/>")
        self.assertEqual(self.transport.value(), b"<presence/>")

    def test_installed_once(self) -> None:
        self.assertIs(guard(self.xs, lambda: 1), self.guard)
        self.assertIsInstance(getattr(self.xs.send, "__self__", None), OutboundGuard)

    def check_refused(self, reason: str, size: int | None) -> None:
        self.assertEqual(self.reasons, [reason])
        self.assertEqual(self.events, [reason])
        self.assertEqual(self.guard.refused[reason], 1)
        [event] = self.logged
        self.assertEqual(event["reason"], reason)
        self.assertEqual(event["size"], size)
        self.assertEqual(event["to"], "alice@example.org/phone")
        self.assertNotIn(SECRET, repr(event))

    def test_over_the_cap_is_not_written(self) -> None:
        message = Stanza((None, "message"))
        message["to"] = "alice@example.org/phone"
        message.addElement("body", content=SECRET * 20)
        self.xs.send(message)
        self.assertEqual(self.transport.value(), b"")
        self.check_refused("too_large", len(message.toXml().encode()))
        self.assertEqual(self.logged[0]["kind"], "message")

    def test_unwritable_is_not_written(self) -> None:
        presence = Stanza((None, "presence"))
        presence["to"] = "alice@example.org/phone"
        presence.addElement("status", content=SECRET + "\x00")
        self.xs.send(presence)
        self.assertEqual(self.transport.value(), b"")
        self.check_refused("unwritable", None)

    def test_a_result_too_large_becomes_an_error_to_the_requester(self) -> None:
        self.xs.send(iq("result", SECRET * 20))
        [answer] = self.written()
        ns = "jabber:component:accept"
        self.assertEqual(answer[:2], (ns, "iq"))
        self.assertEqual(
            answer[2],
            {
                ("", "type"): "error",
                ("", "id"): "q1",
                ("", "to"): "alice@example.org/phone",
                ("", "from"): "room@rooms.example.org/bob",
            },
        )
        [error] = answer[3]
        self.assertEqual(error[2][("", "type")], "wait")
        condition, text = error[3]
        self.assertEqual(
            condition[:2], ("urn:ietf:params:xml:ns:xmpp-stanzas", "resource-constraint")
        )
        self.assertEqual(text[3], ("The answer is too large",))

    def test_our_request_refused_is_answered_as_if_received(self) -> None:
        received: list[domish.Element] = []
        self.xs.addObserver("/iq", received.append)
        self.xs.send(iq("get", "\ufffe"))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(received, [])  # one turn later: the sender has finished sending
        self.clock.advance(0)
        [error] = received
        self.assertEqual(
            (error["type"], error["id"], error["from"], error["to"]),
            ("error", "q1", "alice@example.org/phone", "room@rooms.example.org/bob"),
        )
        self.assertEqual(error.error.firstChildElement().name, "resource-constraint")

    def test_an_error_refused_is_not_answered(self) -> None:
        self.xs.send(iq("error", SECRET * 20))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.reasons, ["too_large"])

    def test_an_unwritable_address_is_logged_escaped(self) -> None:
        message = Stanza((None, "message"))
        message["to"] = "a\x1b[31m@example.org"
        self.xs.send(message)
        self.assertEqual(self.logged[0]["to"], "a\\x1b[31m@example.org")


class ServiceTests(SynchronousTestCase):
    def test_the_service_guards_a_real_stream_and_reads_the_cap(self) -> None:
        settings = MUCSettings(limits=LimitSettings(max_stanza_size=1000))
        service = MUCService(StaticAuthorizer(frozenset()), settings, clock=Clock())
        xs, transport = stream()
        service.makeConnection(xs)
        self.assertIsInstance(getattr(xs.send, "__self__", None), OutboundGuard)
        message = Stanza((None, "message"))
        message.addElement("body", content="x" * 2000)
        xs.send(message)
        self.assertEqual(transport.value(), b"")

    def test_refusals_are_counted_by_the_link_metrics(self) -> None:
        metrics = Metrics()
        xs, _ = stream()
        metrics.link_handler().makeConnection(xs)
        guard(xs, lambda: 10)
        xs.send(Stanza((None, "message")))
        xs.send(Stanza((None, "message"), attribs={"to": "\x00"}))
        xs.send(Stanza((None, "message"), attribs={"to": "a" * 20}))
        name = "mucauth_stanzas_refused_total"
        value = metrics.registry.get_sample_value
        self.assertEqual(value(name, {"reason": "unwritable"}), 1)
        self.assertEqual(value(name, {"reason": "too_large"}), 1)
        self.assertEqual(value("mucauth_stanzas_sent_total", {"kind": "message"}), 1)
