"""An in-memory MUC service with a gate answered by hand."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish
from wokkel.generic import parseXml
from wokkel.test.helpers import TestableStreamManager

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.muc.service import MUCService
from mucauth.settings import MUCSettings
from tests.authorize.fakes import Pending

SERVICE = "rooms.example.org"
ROOM = "room@" + SERVICE
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = NS_MUC + "#user"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_OID = "urn:xmpp:occupant-id:0"
PING = "<ping xmlns='urn:xmpp:ping'/>"
ALICE = "alice@example.org/phone"
ALICE2 = "alice@example.org/laptop"
BOB = "bob@example.org/pc"
CAROL = "carol@example.org/pc"
START = 1714564800.0  # 2024-05-01T12:00:00Z


class ManualAuthorizer(Pending):
    """A Deferred per question, answered by the test in any order, with the MUC tests' words."""

    @property
    def requests(self) -> list[JoinRequest]:
        return [r for r, _ in self.calls]

    def allow(self, index: int = -1) -> None:
        self.answer(Decision.allow(), index)

    def deny(self, reason: str = "", index: int = -1) -> None:
        self.answer(Decision.deny(reason), index)


def presence(
    frm: str,
    to: str,
    *,
    type: str | None = None,
    id: str | None = None,
    inner: str = "",
    muc: bool = True,
) -> str:
    attrs = f" from='{frm}' to='{to}'"
    if type:
        attrs += f" type='{type}'"
    if id:
        attrs += f" id='{id}'"
    x = f"<x xmlns='{NS_MUC}'/>" if muc else ""
    return f"<presence xmlns='jabber:component:accept'{attrs}>{x}{inner}</presence>"


def message(
    frm: str,
    to: str = ROOM,
    body: str | None = "hi",
    *,
    type: str = "groupchat",
    id: str | None = "m1",
    inner: str = "",
) -> str:
    attrs = f" from='{frm}' to='{to}'" + (f" type='{type}'" if type else "")
    if id:
        attrs += f" id='{id}'"
    b = f"<body>{body}</body>" if body is not None else ""
    return f"<message xmlns='jabber:component:accept'{attrs}>{b}{inner}</message>"


def iq(frm: str, to: str, payload: str, *, type: str = "get", id: str = "q1") -> str:
    return (
        f"<iq xmlns='jabber:component:accept' from='{frm}' to='{to}' type='{type}' id='{id}'>"
        f"{payload}</iq>"
    )


def codes(stanza: domish.Element) -> set[int]:
    return {
        int(s["code"]) for x in stanza.elements(NS_USER, "x") for s in x.elements(NS_USER, "status")
    }


def item(stanza: domish.Element) -> domish.Element:
    [x] = list(stanza.elements(NS_USER, "x"))
    [it] = list(x.elements(NS_USER, "item"))
    return it


def occupant_id(stanza: domish.Element) -> str | None:
    for element in stanza.elements(NS_OID, "occupant-id"):
        return str(element["id"])
    return None


def error_of(stanza: domish.Element) -> tuple[str, str]:
    """(type, condition) of an error stanza."""
    [error] = [c for c in stanza.elements() if c.name == "error"]
    [condition] = [c for c in error.elements() if c.uri == NS_STANZAS and c.name != "text"]
    return error["type"], condition.name


def error_text(stanza: domish.Element) -> str | None:
    [error] = [c for c in stanza.elements() if c.name == "error"]
    for text in error.elements(NS_STANZAS, "text"):
        return str(text)
    return None


def summary(stanza: domish.Element) -> tuple[str, str, str, Any]:
    """(kind, from, to, type) for asserting sequences."""
    return (
        stanza.name,
        stanza.getAttribute("from"),
        stanza.getAttribute("to"),
        stanza.getAttribute("type"),
    )


class ServiceTestCase(SynchronousTestCase):
    settings = MUCSettings()
    service_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.auth = ManualAuthorizer()
        self.use_service(
            MUCService(self.auth, self.settings, clock=self.clock, **self.service_options)
        )
        self.sent: list[domish.Element] = []
        self.addCleanup(self.check_every_stanza_has_from)

    def use_service(self, service: MUCService) -> None:
        self.service = service
        # The manager tracks the service's own iqs (liveness pings) and times them on our clock.
        self.manager = TestableStreamManager(reactor=self.clock)
        service.setHandlerParent(self.manager)

    def check_every_stanza_has_from(self) -> None:
        self.take()
        for stanza in self.sent:
            self.assertTrue(stanza.getAttribute("from"), stanza.toXml())
            self.assertTrue(stanza["from"].split("/")[0].endswith(SERVICE), stanza.toXml())

    def receive(self, xml: str) -> None:
        self.manager.stub.send(parseXml(xml))

    def take(self) -> list[domish.Element]:
        out = list(self.manager.stub.output)
        del self.manager.stub.output[:]
        self.sent.extend(out)
        return out

    def take_one(self) -> domish.Element:
        out = self.take()
        self.assertEqual(len(out), 1, [s.toXml() for s in out])
        return out[0]

    def join(
        self, user: str, nick: str, room: str = ROOM, *, id: str = "j1", inner: str = ""
    ) -> None:
        self.receive(presence(user, f"{room}/{nick}", id=id, inner=inner))

    def leave(self, user: str, nick: str, room: str = ROOM) -> list[domish.Element]:
        self.receive(presence(user, f"{room}/{nick}", type="unavailable", muc=False))
        return self.take()

    def enter(self, user: str, nick: str, room: str = ROOM, **kw: Any) -> list[domish.Element]:
        """Join and have the gate allow it; returns what was sent."""
        calls = len(self.auth.calls)
        self.join(user, nick, room, **kw)
        self.assertEqual(len(self.auth.calls), calls + 1, "the gate was not asked")
        self.auth.allow()
        return self.take()
