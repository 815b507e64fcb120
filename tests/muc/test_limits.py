"""[limits] on what a client sends: payload size as written, nesting depth, subject, room name
and description. A refused stanza gets modify/not-acceptable with a text; nothing of it
reaches anyone; a leave that is too large still leaves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.generic import parseXml

from mucauth.muc import errors
from mucauth.muc.limits import check_payload
from mucauth.muc.xml import serialize
from mucauth.settings import LimitSettings, MUCSettings
from tests.muc.support import (
    ALICE,
    BOB,
    ROOM,
    ServiceTestCase,
    codes,
    error_of,
    error_text,
    iq,
    message,
    presence,
)

LIMITS = LimitSettings(max_stanza_size=40_000, max_payload_size=20_000, max_depth=8)
F = "muc#roomconfig_"


def nested(depth: int) -> str:
    return "<a xmlns='urn:x'>" * depth + "</a>" * depth


def config_submit(**fields: str) -> str:
    inner = "".join(f"<field var='{F}{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data'"
        f" type='submit'>{inner}</x></query>"
    )


class PayloadTests(SynchronousTestCase):
    def stanza(self, xml: str) -> domish.Element:
        return parseXml(xml)

    def test_ordinary_stanza_passes(self) -> None:
        check_payload(self.stanza(message(ALICE, body="hello" * 100)), LIMITS)

    def test_size_counts_escaping(self) -> None:
        # 5,000 characters, but 20,000 bytes once ">" is written "&gt;".
        check_payload(self.stanza(message(ALICE, body="a" * 19_000)), LIMITS)
        with self.assertRaises(errors.TooLarge) as caught:
            check_payload(self.stanza(message(ALICE, body="&gt;" * 5_000)), LIMITS)
        self.assertIn("too large", str(caught.exception.text))

    def test_attribute_escaping_counts(self) -> None:
        with self.assertRaises(errors.TooLarge):
            check_payload(self.stanza(message(ALICE, id="&apos;" * 4_000)), LIMITS)

    def test_depth(self) -> None:
        check_payload(self.stanza(message(ALICE, inner=nested(8))), LIMITS)
        with self.assertRaises(errors.TooLarge) as caught:
            check_payload(self.stanza(message(ALICE, inner=nested(9))), LIMITS)
        self.assertIn("nested more than 8 levels", str(caught.exception.text))

    def test_very_deep_stanza_is_refused_without_recursion(self) -> None:
        with self.assertRaises(errors.TooLarge):
            check_payload(self.stanza(message(ALICE, inner=nested(20_000))), LIMITS)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
                st.sampled_from(["'", '"', "&", "<", ">", "a", "é", "\U0001f600"]),
                st.integers(min_value=0, max_value=3000),
            ),
            max_size=5,
        )
    )
    def test_accepted_payload_is_written_within_the_limit(
        self, parts: list[tuple[str, str, int]]
    ) -> None:
        """Whatever passes the check is written in at most max_payload_size bytes."""
        stanza = domish.Element(("jabber:component:accept", "message"))
        stanza["id"] = "x" + "".join(p[1] * (p[2] // 3) for p in parts)
        for text, repeated, count in parts:
            element = stanza.addElement(("urn:x", "p"))
            element["v"] = repeated * count
            element.addContent(text + repeated * count)
        try:
            check_payload(stanza, LIMITS)
        except errors.TooLarge:
            return
        written = serialize(stanza, "jabber:component:accept").encode("utf-8")
        wrapper = len("<message></message>")
        self.assertLessEqual(len(written) - wrapper, LIMITS.max_payload_size)


class ServiceLimitTests(ServiceTestCase):
    settings = MUCSettings(limits=LIMITS)

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")

    def test_large_message_refused_others_hear_nothing(self) -> None:
        self.receive(message(BOB, body="&lt;" * 6_000, id="big"))
        [reply] = self.take()
        self.assertEqual((reply["type"], reply["to"], reply["id"]), ("error", BOB, "big"))
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))
        self.assertIn("too large", error_text(reply) or "")
        self.assertEqual(reply.children[-1].name, "error")
        self.assertEqual(len(reply.toXml()), len(reply.toXml()[:2_000]))  # no echo

    def test_deep_message_refused(self) -> None:
        self.receive(message(BOB, inner=nested(5_000)))
        [reply] = self.take()
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))

    def test_room_keeps_working(self) -> None:
        self.receive(message(BOB, body="&lt;" * 6_000))
        self.take()
        self.receive(message(ALICE, body="still here"))
        self.assertEqual(len([s for s in self.take() if s.name == "message"]), 2)

    def test_large_presence_update_refused_occupant_stays(self) -> None:
        status = "<status>" + "&lt;" * 6_000 + "</status>"
        self.receive(presence(BOB, ROOM + "/bob", muc=False, inner=status, id="p1"))
        [reply] = self.take()
        self.assertEqual((reply["type"], reply["to"], reply["id"]), ("error", BOB, "p1"))
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant("bob"))

    def test_large_join_refused_with_muc_x(self) -> None:
        self.receive(presence("carol@example.org/pc", ROOM + "/carol", inner=nested(9), id="j9"))
        [reply] = self.take()
        self.assertEqual((reply["type"], reply["id"]), ("error", "j9"))
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))
        self.assertTrue(list(reply.elements("http://jabber.org/protocol/muc", "x")))
        self.assertEqual(self.auth.calls[2:], [])

    def test_oversized_leave_still_leaves(self) -> None:
        self.receive(
            presence(
                BOB,
                ROOM + "/bob",
                type="unavailable",
                muc=False,
                inner="<status>" + "&amp;" * 10_000 + "</status>",
            )
        )
        out = self.take()
        self.assertTrue(out)
        self.assertTrue(all(s["type"] == "unavailable" for s in out))
        self.assertTrue(any(110 in codes(s) for s in out))
        self.assertNotIn("&amp;" * 10, "".join(s.toXml() for s in out))
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant("bob"))

    def test_subject_length(self) -> None:
        limit = LIMITS.max_subject_length
        self.receive(message(ALICE, body=None, inner=f"<subject>{'s' * (limit + 1)}</subject>"))
        [reply] = self.take()
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))
        self.assertIn("subject is too long", error_text(reply) or "")
        self.assertIsNone(self.service.rooms[JID(ROOM)].subject)
        self.receive(message(ALICE, body=None, inner=f"<subject>{'s' * limit}</subject>"))
        self.assertEqual(len(self.take()), 2)

    def test_room_name_and_description_length(self) -> None:
        room = self.service.rooms[JID(ROOM)]
        for field, limit in (
            ("roomname", LIMITS.max_title_length),
            ("roomdesc", LIMITS.max_description_length),
        ):
            self.receive(iq(ALICE, ROOM, config_submit(**{field: "n" * (limit + 1)}), type="set"))
            reply = self.take_one()
            self.assertEqual(error_of(reply), ("modify", "not-acceptable"), field)
        self.assertEqual((room.config.name, room.config.description), ("", ""))
        self.receive(
            iq(
                ALICE,
                ROOM,
                config_submit(roomname="n" * LIMITS.max_title_length, roomdesc="d"),
                type="set",
            )
        )
        self.assertEqual(
            [s["type"] for s in self.take() if s.name == "iq"],
            ["result"],
        )
        self.assertEqual(room.config.name, "n" * LIMITS.max_title_length)


class DefaultsTests(SynchronousTestCase):
    def test_defaults_leave_room_for_wrappers(self) -> None:
        limits = LimitSettings()
        self.assertGreaterEqual(limits.max_stanza_size - limits.max_payload_size, 16_384)
        self.assertLess(limits.max_stanza_size, 512 * 1024)
