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

from mucauth.muc.xml import Stanza, escape_attribute, escape_text, serialize

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


class EscapeTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=st.sampled_from("ab &<>'\"é;\u00e9z"), max_size=12))
    def test_as_domish_escapes(self, value: str) -> None:
        self.assertEqual(escape_text(value), domish.escapeToXml(value))
        self.assertEqual(escape_attribute(value), domish.escapeToXml(value, isattrib=1))

    def test_plain_text_is_returned_as_is(self) -> None:
        value = "alice@example.org/phone"
        self.assertIs(escape_attribute(value), value)
        self.assertIs(escape_text(value), value)


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
        st.lists(trees(), max_size=3),
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
        default, prefixes = STREAM
        for args in ((), (prefixes, 1, default, list(prefixes.values()))):
            unread, read = presence_pair(payload, **options)
            self.assertEqual(unread.toXml(*args), domish.Element.toXml(read, *args))

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
        st.lists(trees(), max_size=3),
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

        default, prefixes = STREAM
        for args in ((), (prefixes, 1, default, list(prefixes.values()))):
            read = message()
            assert read.children is not None  # builds the tree
            self.assertEqual(message().toXml(*args), domish.Element.toXml(read, *args))
