"""Stanza.toXml gives domish's text exactly, however the tree is built and however it is sent."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from wokkel.generic import parseXml

from mucauth.muc.xml import Stanza, serialize

NAMESPACES = [
    None,
    "jabber:component:accept",
    "urn:a",
    "urn:b",
    "http://www.w3.org/XML/1998/namespace",
]
STREAM = ("jabber:component:accept", {"http://etherx.jabber.org/streams": "stream"})
text = st.text(alphabet=st.sampled_from("ab &<>'\"é\u00e9z"), max_size=6)
names = st.sampled_from(["x", "item", "status", "body", "c"])


@st.composite
def trees(draw: Any, depth: int = 0) -> domish.Element:
    uri = draw(st.sampled_from(NAMESPACES))
    default = draw(st.sampled_from([None, None, *NAMESPACES]))
    element = domish.Element((uri, draw(names)), default)
    if draw(st.booleans()) and depth == 0:
        element.localPrefixes = {"p": "urn:p"}
    for key in draw(st.lists(st.sampled_from(["a", "id", "to"]), max_size=3, unique=True)):
        element[key] = draw(text)
    if draw(st.integers(0, 9)) == 0:
        element[("urn:q", "qualified")] = "v"
    if depth < 3:
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                element.addChild(draw(trees(depth=depth + 1)))
            elif draw(st.booleans()):
                element.addElement(draw(names), content=draw(text))
            else:
                element.addContent(draw(text))
    if draw(st.integers(0, 9)) == 0:
        element.addRawXml("<raw/>")
    return element


def as_stanza(element: domish.Element) -> Stanza:
    stanza = Stanza((element.uri, element.name), element.defaultUri, dict(element.attributes))
    stanza.localPrefixes = element.localPrefixes
    stanza.children = element.children
    return stanza


class SameTextTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(trees())
    def test_as_toXml_called_plainly(self, element: domish.Element) -> None:
        self.assertEqual(as_stanza(element).toXml(), domish.Element.toXml(element))

    @settings(max_examples=400, deadline=None)
    @given(trees())
    def test_as_the_stream_sends_it(self, element: domish.Element) -> None:
        default, prefixes = STREAM
        args = (prefixes, 1, default, list(prefixes.values()))
        self.assertEqual(as_stanza(element).toXml(*args), domish.Element.toXml(element, *args))

    def test_a_parsed_client_payload_inside_a_built_presence(self) -> None:
        presence = Stanza((None, "presence"))
        presence["to"] = "alice@example.org/phone"
        client = parseXml(
            "<presence xmlns='jabber:component:accept'><show>away</show>"
            "<c xmlns='http://jabber.org/protocol/caps' ver='v&amp;'/></presence>"
        )
        for child in client.elements():
            presence.children.append(child)
        presence.addElement(("http://jabber.org/protocol/muc#user", "x")).addElement("item")
        default, prefixes = STREAM
        for args in ((), (prefixes, 1, default, list(prefixes.values()))):
            self.assertEqual(presence.toXml(*args), domish.Element.toXml(presence, *args))

    def test_what_the_stream_writes(self) -> None:
        stream = xmlstream.XmlStream(xmlstream.Authenticator())
        stream.namespace = "jabber:component:accept"
        transport = StringTransport()
        stream.makeConnection(transport)
        presence = Stanza((None, "presence"))
        presence["from"] = "room@rooms.example.org/bob's"
        presence.addElement(("urn:xmpp:occupant-id", "occupant-id"))["id"] = "a<b"
        stream.send(presence)
        self.assertEqual(
            transport.value().decode(),
            "<presence from='room@rooms.example.org/bob&apos;s'>"
            "<occupant-id xmlns='urn:xmpp:occupant-id' id='a&lt;b'/></presence>",
        )

    def test_partial_rendering_is_domish_s(self) -> None:
        presence = Stanza((None, "presence"))
        presence.addElement("show", content="away")
        self.assertEqual(presence.toXml(closeElement=0), "<presence>")
        self.assertEqual(serialize(presence), "<presence><show>away</show></presence>")
