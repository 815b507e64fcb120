"""The component stream's parser: a namespace name with a space (which XML allows and servers
pass on) is read, not taken for a broken stream that ends the link."""

from __future__ import annotations

from hypothesis import given, settings
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from mucauth.muc.inbound import ElementStream
from mucauth.muc.xml import serialize
from tests.muc.xmltrees import legal_char, legal_namespaces, texts
from tests.robustness.test_one_way_out import ROOM, USERS, stack

STANZA = (
    b"<message xmlns='jabber:component:accept'><x xmlns='urn:a b' xmlns:p='urn:c d e'"
    b" p:at='v'><p:y/></x></message>"
)


def parsed(stream: domish.ExpatElementStream, data: bytes) -> list[domish.Element]:
    found: list[domish.Element] = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream xmlns='jabber:component:accept'>")
    stream.parse(data)
    return found


class ElementStreamTests(SynchronousTestCase):
    def test_domish_refuses_a_namespace_with_a_space(self) -> None:
        """The defect this parser exists for (if Twisted fixes it, this test says so)."""
        with self.assertRaises(domish.ParserError):
            parsed(domish.elementStream(), STANZA)

    def test_namespaces_with_spaces(self) -> None:
        [message] = parsed(ElementStream(), STANZA)
        [x] = message.elements()
        self.assertEqual((x.uri, x.name), ("urn:a b", "x"))
        self.assertEqual(x.attributes, {("urn:c d e", "at"): "v"})
        [y] = x.elements()
        self.assertEqual((y.uri, y.name), ("urn:c d e", "y"))

    def test_plain_names_as_before(self) -> None:
        data = b"<message xmlns='jabber:component:accept' id='1'><body>hi</body></message>"
        [ours] = parsed(ElementStream(), data)
        [theirs] = parsed(domish.elementStream(), data)
        self.assertEqual(ours.toXml(), theirs.toXml())

    @settings(max_examples=300, deadline=None)
    @given(legal_namespaces().filter(bool), legal_namespaces().filter(bool), texts(legal_char))
    def test_any_namespace_reads_back_as_written(self, uri: str, attr_uri: str, value: str) -> None:
        element = domish.Element((uri, "x"))
        element[(attr_uri, "a")] = value
        written = serialize(element, "jabber:component:accept").encode("utf-8")
        [back] = parsed(ElementStream(), written)
        self.assertEqual(back.uri, uri)
        self.assertEqual(back.attributes, {(attr_uri, "a"): value})


class ServiceStreamTests(SynchronousTestCase):
    def test_a_namespace_with_a_space_reaches_the_room(self) -> None:
        xs, wire = stack()
        del wire.writes[:]
        sender = next(iter(USERS.values()))
        xs.dataReceived(
            f"<message from='{sender}' to='{ROOM}' type='groupchat' id='s'><body>b</body>"
            "<x xmlns='urn:a b'/></message>".encode()
        )
        self.assertEqual(len(wire.writes), len(USERS), wire.writes)
        for data in wire.writes:
            self.assertIn(b"xmlns='urn:a b'", data)
        self.assertTrue(xs.transport.connected)
