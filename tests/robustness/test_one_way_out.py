"""Property: through the real MUCService on a real component stream, every byte written parses
back, stanza by stanza, with a strict parser, and no stanza is over the cap.

Three occupants are in a room; each example sends a batch of 20 stanzas a server could deliver
(groupchat and private messages, presence changes, subject changes, iqs relayed to an occupant
and their answers) whose payloads' namespaces, names, attribute values and text come from all
of Unicode that XML allows (a parsed stanza cannot hold anything else). The relayed groupchat
payload must come back as exactly the tree that was sent.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.link import ComponentLink
from mucauth.muc.service import MUCService
from mucauth.muc.xml import serialize_bytes
from mucauth.settings import ComponentSettings, LimitSettings, MUCSettings, RoomDefaults, Secret
from tests.muc.xmltrees import (
    STREAM_NS,
    VALID_NAMES,
    is_ncname,
    legal_char,
    legal_namespaces,
    parse_one,
    texts,
)

DOMAIN = "rooms.example.org"
ROOM = f"room@{DOMAIN}"
USERS = {"alice": "alice@example.org/a", "bob": "bob@example.org/b", "carol": "carol@example.org/c"}
CAP = 6000
BATCH = 20
EXAMPLES = 500  # of BATCH stanzas each: 10,000 per run


class _AllowAll:
    def authorize(self, request: JoinRequest) -> Any:
        from twisted.internet.defer import succeed

        return succeed(Decision.allow())


class _Wire(StringTransport):
    """The component's socket, one write per stanza kept apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def stack() -> tuple[Any, _Wire]:
    link = ComponentLink(ComponentSettings(JID(DOMAIN), Secret("secret")))
    limits = LimitSettings(max_stanza_size=CAP)
    muc = MUCService(
        _AllowAll(),  # type: ignore[arg-type]
        MUCSettings(limits=limits, rooms=RoomDefaults(change_subject=True)),
        clock=Clock(),
    )
    muc.setHandlerParent(link)
    xs = link.factory.buildProtocol(None)
    wire = _Wire()
    xs.makeConnection(wire)
    xs.dataReceived(
        b"<stream:stream xmlns='jabber:component:accept'"
        b" xmlns:stream='http://etherx.jabber.org/streams' from='" + DOMAIN.encode() + b"'"
        b" id='s1'>"
    )
    xs.dataReceived(b"<handshake/>")
    assert muc.xmlstream is xs
    for nick, jid in USERS.items():
        xs.dataReceived(
            f"<presence from='{jid}' to='{ROOM}/{nick}'>"
            "<x xmlns='http://jabber.org/protocol/muc'/></presence>".encode()
        )
    return xs, wire


# -- what a server could deliver

# Spaces included: the service reads the stream with a parser they cannot fail (inbound.py).
client_namespaces = legal_namespaces()
bound_namespaces = client_namespaces.map(lambda uri: uri or "urn:e")  # a prefix needs one

names = st.one_of(
    st.sampled_from(VALID_NAMES),
    # Letters and digits after a first one: those expat's name tables know (older Unicode).
    st.text(st.characters(categories=["L", "Nd"], max_codepoint=0xFFFF), max_size=4)
    .map(lambda name: "n" + name)
    .filter(is_ncname),
)
values = texts(legal_char, max_size=12)


@st.composite
def payloads(draw: Any, depth: int = 0) -> domish.Element:
    element = domish.Element((draw(client_namespaces), draw(names)))
    if draw(st.integers(0, 5)) == 0:
        element.localPrefixes = {"p": draw(bound_namespaces)}
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            element[draw(names)] = draw(values)
        else:
            element[(draw(bound_namespaces), draw(names))] = draw(values)
    if draw(st.integers(0, 20)) == 0:
        element.addContent(draw(values) * 400)  # large: the cap or the payload limit refuses
    for _ in range(draw(st.integers(0, 2) if depth < 2 else st.just(0))):
        if draw(st.booleans()):
            element.addChild(draw(payloads(depth + 1)))
        else:
            element.addContent(draw(values))
    return element


def stanza(name: str, attributes: dict[str, str], children: list[domish.Element]) -> bytes:
    element = domish.Element((None, name))
    for key, value in attributes.items():
        element[key] = value
    for child in children:
        element.addChild(child)
    return serialize_bytes(element, STREAM_NS)


@st.composite
def actions(draw: Any) -> tuple[str, bytes]:
    sender = draw(st.sampled_from(sorted(USERS)))
    target = draw(st.sampled_from(sorted(set(USERS) - {sender})))
    frm = USERS[sender]
    extra = draw(st.lists(payloads(), max_size=3))
    kind = draw(st.sampled_from(["groupchat", "chat", "presence", "subject", "iq", "answer"]))
    if kind == "groupchat":
        body = domish.Element((None, "body"))
        body.addContent(draw(values))
        children = [body, *extra]
        attributes = {"from": frm, "to": ROOM, "type": "groupchat", "id": draw(values)}
        return kind, stanza("message", attributes, children)
    if kind == "chat":
        attributes = {"from": frm, "to": f"{ROOM}/{target}", "type": "chat"}
        return kind, stanza("message", attributes, extra)
    if kind == "presence":
        status = domish.Element((None, "status"))
        status.addContent(draw(values))
        attributes = {"from": frm, "to": f"{ROOM}/{sender}"}
        return kind, stanza("presence", attributes, [status, *extra])
    if kind == "subject":
        subject = domish.Element((None, "subject"))
        subject.addContent(draw(values))
        attributes = {"from": frm, "to": ROOM, "type": "groupchat"}
        return kind, stanza("message", attributes, [subject])
    if kind == "iq":
        query = draw(payloads())
        attributes = {"from": frm, "to": f"{ROOM}/{target}", "type": "get", "id": draw(values)}
        return kind, stanza("iq", attributes, [query])
    return kind, b""  # "answer": the last relayed request's addressee answers it


def relayed_request(data: bytes) -> tuple[str, str, str] | None:
    """(addressee, occupant JID it came from, id) of a relayed iq request written."""
    tree = parse_one(data)
    if tree[1] != "iq":
        return None
    attributes = {name: value for (_, name), value in tree[2].items()}
    if attributes.get("type") != "get":
        return None
    return attributes["to"], attributes["from"], attributes["id"]


class OneWayOutTests(SynchronousTestCase):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(actions(), min_size=BATCH, max_size=BATCH), st.lists(payloads(), max_size=2))
    def test_every_stanza_written_parses_back_and_fits(
        self, batch: list[tuple[str, bytes]], answer_payload: list[domish.Element]
    ) -> None:
        xs, wire = stack()
        pending: tuple[str, str, str] | None = None
        for kind, data in batch:
            if kind == "answer":
                if pending is None:
                    continue
                addressee, asker, request_id = pending
                attributes = {"from": addressee, "to": asker, "type": "result", "id": request_id}
                data = stanza("iq", attributes, answer_payload)
            del wire.writes[:]
            xs.dataReceived(data)
            for written in wire.writes:
                self.assertLessEqual(len(written), CAP)
                tree = parse_one(written)  # raises for anything that is not XML
                if kind == "iq":
                    pending = relayed_request(written) or pending
                if kind == "groupchat" and tree[2].get(("", "type")) == "groupchat":
                    self.check_payload(data, tree)

    def check_payload(self, sent: bytes, reflected: Any) -> None:
        """The groupchat's payload is reflected as the very tree that was sent, followed by
        the room's own ids."""
        original = parse_one(sent)
        count = len(original[3])
        self.assertEqual(reflected[3][:count], original[3])
