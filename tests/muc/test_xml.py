"""The one way out (muc/xml.py): any tree is either refused or written as text a strict parser
reads back as exactly that tree; the common case is still domish's text, character for
character, and the lazy stanzas write what their trees would."""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from wokkel.generic import parseXml

from mucauth.muc.xml import (
    XML_NS,
    XMLNS_NS,
    Stanza,
    Unwritable,
    escape_attribute,
    escape_text,
    serialize,
    serialize_bytes,
)
from tests.muc.xmltrees import (
    NS_STREAMS,
    STREAM_ARGS,
    STREAM_NS,
    legal_trees,
    meant,
    parse_one,
    trees,
)

# The common case, where the text is still domish's: no prefixes, plain attribute names, no
# characters domish would leave for the parser to normalise.
COMMON_NAMESPACES = [None, "jabber:component:accept", "urn:a", "urn:b"]
common_text = st.text(alphabet=st.sampled_from("ab &<>'\"é\u00e9z"), max_size=6)
common_names = st.sampled_from(["x", "item", "status", "body", "c"])


@st.composite
def common_trees(draw: Any, depth: int = 0) -> domish.Element:
    uri = draw(st.sampled_from(COMMON_NAMESPACES))
    default = draw(st.sampled_from([None, None, *COMMON_NAMESPACES]))
    if uri is not None and default is not None and uri != default:
        default = None
    element = domish.Element((uri, draw(common_names)), default)
    for key in draw(st.lists(st.sampled_from(["a", "id", "to"]), max_size=3, unique=True)):
        element[key] = draw(common_text)
    if depth < 3:
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                element.addChild(draw(common_trees(depth=depth + 1)))
            elif draw(st.booleans()):
                element.addElement(draw(common_names), content=draw(common_text))
            else:
                element.addContent(draw(common_text))
    return element


def as_stanza(element: domish.Element) -> Stanza:
    stanza = Stanza((element.uri, element.name), element.defaultUri, dict(element.attributes))
    stanza.localPrefixes = element.localPrefixes
    stanza.children = element.children
    return stanza


def written(element: domish.Element) -> bytes:
    """As the stream writes it: the stream's namespace, ``stream:`` declared on its header."""
    prefixes, _, default, in_scope = STREAM_ARGS
    return serialize_bytes(element, default, prefixes, in_scope)


def text_of(element: domish.Element, args: tuple[Any, ...]) -> str:
    """:func:`serialize` given ``toXml``'s arguments."""
    if not args:
        return serialize(element)
    prefixes, _, default, in_scope = args
    return serialize(element, default, prefixes, in_scope)


def same_tree_or_refused(test: SynchronousTestCase, element: domish.Element) -> bool:
    try:
        data = written(element)
    except Unwritable:
        return False
    try:
        parsed = parse_one(data)
    except expat.ExpatError as e:  # pragma: no cover  (the failure this guards against)
        test.fail(f"not XML ({e}): {data!r}")
    test.assertEqual(parsed, meant(element), data)
    return True


class EscapeTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=st.sampled_from("ab &<>'\"é;\u00e9z"), max_size=12))
    def test_as_domish_escapes_without_whitespace(self, value: str) -> None:
        self.assertEqual(escape_text(value), domish.escapeToXml(value))
        self.assertEqual(escape_attribute(value), domish.escapeToXml(value, isattrib=1))

    def test_whitespace_a_parser_would_normalise_is_a_reference(self) -> None:
        self.assertEqual(escape_text("a\r\n\tb"), "a&#13;\n\tb")
        self.assertEqual(escape_attribute("a\r\n\tb"), "a&#13;&#10;&#9;b")

    def test_plain_text_is_returned_as_is(self) -> None:
        value = "alice@example.org/phone"
        self.assertIs(escape_attribute(value), value)
        self.assertIs(escape_text(value), value)


class AnyTreeTests(SynchronousTestCase):
    """Property: from all of Unicode, refused or read back as meant."""

    @settings(max_examples=1000, deadline=None)
    @given(trees())
    def test_refused_or_read_back_as_meant(self, element: domish.Element) -> None:
        same_tree_or_refused(self, element)

    @settings(max_examples=600, deadline=None)
    @given(legal_trees())
    def test_a_legal_tree_is_never_refused(self, element: domish.Element) -> None:
        self.assertTrue(same_tree_or_refused(self, element), element.toXml())

    @settings(max_examples=300, deadline=None)
    @given(legal_trees())
    def test_plainly_and_as_the_stream_sends_it(self, element: domish.Element) -> None:
        """Without a stream's context too (the archive stores what ``toXml()`` gives)."""
        text = as_stanza(element).toXml()
        self.assertEqual(text, serialize(element))
        parsed = parse_one(f"<w xmlns=''>{text}</w>".encode())
        self.assertEqual(parsed[3], (meant(element, ""),))


class NamespaceTests(SynchronousTestCase):
    """The cases domish gets wrong, and the ones it needs a prefix for."""

    def check(self, element: domish.Element) -> str:
        data = written(element)
        self.assertEqual(parse_one(data), meant(element))
        return data.decode()

    def test_a_namespace_is_escaped(self) -> None:
        for uri in ("urn:a'b", 'urn:a"b', "urn:a<b", "urn:a&b", "urn:a>b", "urn:a\tb\nc\rd"):
            message = Stanza((None, "message"))
            message.addElement("body", content="x")
            message.addElement((uri, "x"))
            self.check(message)

    def test_a_client_payload_with_an_escaped_namespace(self) -> None:
        client = parseXml(
            "<message xmlns='jabber:component:accept' type='groupchat'><body>x</body>"
            "<x xmlns='urn:a&apos;b' xmlns:p='urn:p&lt;' p:q='1'><p:y/></x></message>"
        )
        self.assertEqual(client.firstChildElement().nextSibling, None)
        payload = list(client.elements())[1]
        self.assertEqual(payload.uri, "urn:a'b")
        message = Stanza((None, "message"))
        message.children.append(payload)
        self.assertIn("xmlns='urn:a&apos;b'", self.check(message))

    def test_prefixed_attributes_get_declared_prefixes(self) -> None:
        element = Stanza((None, "message"))
        element[("urn:q'", "a")] = "1"
        element[("urn:r", "a")] = "2"
        element[(XML_NS, "lang")] = "en"
        text = self.check(element)
        self.assertIn("xml:lang='en'", text)
        self.assertNotIn("xmlns:xml", text)

    def test_no_namespace_inside_a_default_one(self) -> None:
        element = domish.Element(("urn:a", "x"))
        inner = element.addChild(domish.Element(("", "y")))
        inner.addChild(domish.Element((None, "z")))
        element.addChild(domish.Element(("", "w"), "urn:b")).addChild(domish.Element((None, "v")))
        self.assertIn("<y xmlns=''><z/></y>", self.check(element))

    def test_the_stream_prefix(self) -> None:
        error = domish.Element((NS_STREAMS, "error"))
        error.addElement(("urn:ietf:params:xml:ns:xmpp-streams", "conflict"))
        self.check(error)
        inner = domish.Element((None, "message"))
        inner.addElement((NS_STREAMS, "x"), defaultUri=STREAM_NS).addElement("y")
        self.assertIn("<stream:x>", self.check(inner))

    def test_a_prefix_the_tree_declares_is_used_and_may_shadow_the_stream_s(self) -> None:
        outer = domish.Element(("urn:o", "o"), localPrefixes={"stream": "urn:s"})
        outer.addElement(("urn:s", "a"), defaultUri="urn:o")
        outer.addElement((NS_STREAMS, "b"), defaultUri="urn:o")
        text = self.check(outer)
        self.assertIn("<stream:a", text)

    def test_refused(self) -> None:
        cases: list[domish.Element] = []
        for name in ("a:b", "1x", "", "a b", "x\x00", "\U00010000x"):
            cases.append(domish.Element((None, name)))
            bad_attribute = domish.Element((None, "x"))
            bad_attribute[name] = "v"
            cases.append(bad_attribute)
        xmlns = domish.Element((None, "x"))
        xmlns["xmlns"] = "urn:evil"
        in_xmlns = domish.Element((None, "x"))
        in_xmlns[(XMLNS_NS, "p")] = "urn:evil"
        twice = domish.Element((None, "x"))
        twice["a"] = "1"
        twice.attributes[("", "a")] = "2"  # domish's __setitem__ would drop the ""
        cases += [
            xmlns,
            in_xmlns,
            twice,
            domish.Element((None, "x"), XML_NS),
            domish.Element((None, "x"), XMLNS_NS),
            domish.Element((XMLNS_NS, "x"), "urn:a"),
            domish.Element((None, "x"), localPrefixes={"xml": "urn:a"}),
            domish.Element((None, "x"), localPrefixes={"xmlns": "urn:a"}),
            domish.Element((None, "x"), localPrefixes={"p": ""}),
            domish.Element((None, "x"), localPrefixes={"p": XML_NS}),
        ]
        for text in ("\x00", "\x1b[31m", "\ufffe", "\uffff", "\ud800", "a\udfffb"):
            for where in ("text", "attribute", "namespace"):
                element = domish.Element((text if where == "namespace" else None, "x"))
                if where == "text":
                    element.addContent(text)
                elif where == "attribute":
                    element["a"] = text
                cases.append(element)
        for element in cases:
            with self.assertRaises(Unwritable, msg=element.name):
                written(element)
            with self.assertRaises(Unwritable):
                as_stanza(element).toXml()

    def test_deep_nesting_is_refused_not_a_crash(self) -> None:
        element = top = domish.Element((None, "x"))
        for _ in range(5000):
            element = element.addElement("x")
        with self.assertRaises(Unwritable):
            written(top)

    def test_raw_xml_is_written_as_is(self) -> None:
        element = Stanza((None, "x"))
        element.addRawXml("<raw/>")
        self.assertEqual(element.toXml(), "<x><raw/></x>")


class SameTextTests(SynchronousTestCase):
    """The common case: domish's text, so the sizes and tests written against it hold."""

    @settings(max_examples=400, deadline=None)
    @given(common_trees())
    def test_as_toXml_called_plainly(self, element: domish.Element) -> None:
        self.assertEqual(as_stanza(element).toXml(), domish.Element.toXml(element))

    @settings(max_examples=400, deadline=None)
    @given(common_trees())
    def test_as_the_stream_sends_it(self, element: domish.Element) -> None:
        self.assertEqual(
            as_stanza(element).toXml(*STREAM_ARGS), domish.Element.toXml(element, *STREAM_ARGS)
        )

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
        for args in ((), STREAM_ARGS):
            self.assertEqual(presence.toXml(*args), domish.Element.toXml(presence, *args))

    def test_what_the_stream_writes(self) -> None:
        stream = xmlstream.XmlStream(xmlstream.Authenticator())
        stream.namespace = "jabber:component:accept"
        transport = StringTransport()
        stream.makeConnection(transport)
        presence = Stanza((None, "presence"))
        presence["from"] = "room@rooms.example.org/bob's"
        presence.addElement(("urn:xmpp:occupant-id:0", "occupant-id"))["id"] = "a<b"
        stream.send(presence)
        self.assertEqual(
            transport.value().decode(),
            "<presence from='room@rooms.example.org/bob&apos;s'>"
            "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='a&lt;b'/></presence>",
        )

    def test_partial_rendering_is_domish_s(self) -> None:
        presence = Stanza((None, "presence"))
        presence.addElement("show", content="away")
        self.assertEqual(presence.toXml(closeElement=0), "<presence>")
        self.assertEqual(serialize(presence), "<presence><show>away</show></presence>")


def presence_pair(payload: list[domish.Element], **options: Any) -> tuple[Any, Any]:
    """The same occupant presence twice: one left unread, one whose tree was read."""
    from datetime import UTC, datetime

    from twisted.words.protocols.jabber.jid import JID

    from mucauth.muc import stanzas
    from mucauth.muc.room import Room

    room = Room(
        JID("room@rooms.example.org"), creator=JID("o@example.org/r"), created=datetime.now(UTC)
    )
    occupant = room.join(JID("o@example.org/r"), "n'ick&<", payload).occupant
    to = JID("viewer@example.org/r")
    unread = stanzas.occupant_presence(room, occupant, to, **options)
    read = stanzas.occupant_presence(room, occupant, to, **options)
    assert read.children is not None  # builds the tree
    return unread, read


class OccupantPresenceTextTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(legal_trees(), max_size=3),
        st.booleans(),
        st.sets(st.sampled_from([100, 110, 201, 210, 301, 303, 307, 321, 322, 332, 333])),
        st.booleans(),
        st.sampled_from([None, "j1", "a'b"]),
        st.sampled_from([None, "new<nick>"]),
        st.sampled_from([None, "", "Spam & <insults>", 'quote\'d "reason"']),
        st.sampled_from([None, "mod'<erator>"]),
    )
    def test_unread_text_is_the_tree_s(
        self,
        payload: list[domish.Element],
        show_jid: bool,
        statuses: set[int],
        unavailable: bool,
        stanza_id: str | None,
        new_nick: str | None,
        reason: str | None,
        actor: str | None,
    ) -> None:
        options = {
            "show_jid": show_jid,
            "statuses": statuses,
            "unavailable": unavailable,
            "stanza_id": stanza_id,
            "new_nick": new_nick,
            "reason": reason,
            "actor": actor,
        }
        for args in ((), STREAM_ARGS):
            unread, read = presence_pair(payload, **options)
            self.assertEqual(unread.toXml(*args), text_of(read, args))
        unread, read = presence_pair(payload, **options)
        self.assertEqual(parse_one(written(unread)), meant(read))

    def test_reading_the_tree_shows_the_item_and_statuses(self) -> None:
        unread, _ = presence_pair([], show_jid=True, statuses={110})
        x = unread.firstChildElement()
        self.assertEqual(
            (x.uri, x.item["jid"]), ("http://jabber.org/protocol/muc#user", "o@example.org/r")
        )
        self.assertEqual([s["code"] for s in x.elements(x.uri, "status")], ["110"])


class GroupchatTextTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(legal_trees(), max_size=3),
        st.sampled_from([None, "m1", "a&b"]),
        st.sampled_from([None, "1f3a", "x'<y"]),
    )
    def test_unread_text_is_the_tree_s(
        self, children: list[domish.Element], stanza_id: str | None, archive: str | None
    ) -> None:
        from datetime import UTC, datetime

        from twisted.words.protocols.jabber.jid import JID

        from mucauth.muc import stanzas
        from mucauth.muc.room import Room

        room = Room(
            JID("room@rooms.example.org"), creator=JID("o@example.org/r"), created=datetime.now(UTC)
        )
        to = JID("viewer@example.org/r")

        def message() -> Any:
            archive_id = stanzas.StanzaId.of("room@rooms.example.org", archive) if archive else None
            return stanzas.groupchat_message(
                room, "n<'", "oid", to, children, stanza_id=stanza_id, archive_id=archive_id
            )

        for args in ((), STREAM_ARGS):
            read = message()
            assert read.children is not None  # builds the tree
            self.assertEqual(message().toXml(*args), text_of(read, args))
        read = message()
        assert read.children is not None
        self.assertEqual(parse_one(written(message())), meant(read))
