"""Stanza builders and the error table."""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from wokkel.generic import parseXml

from mucauth.muc import errors, stanzas
from mucauth.muc.room import Room
from mucauth.settings import ErrorCondition

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROOM = JID("room@rooms.example.org")
ALICE = JID("alice@example.org/phone")
BOB = JID("bob@example.org/pc")
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = NS_MUC + "#user"
JOIN = (
    "<presence xmlns='jabber:component:accept' id='j1' from='alice@example.org/phone'"
    " to='room@rooms.example.org/alice'><x xmlns='http://jabber.org/protocol/muc'>"
    "<password>hunter2</password></x><show>away</show></presence>"
)


def codes(presence: object) -> set[str]:
    x = next(c for c in presence.elements() if c.uri == NS_USER)  # type: ignore[attr-defined]
    return {s["code"] for s in x.elements(NS_USER, "status")}


class ConditionTableTests(SynchronousTestCase):
    def test_every_domain_error_is_mapped(self) -> None:
        for cls in errors.MUCError.__subclasses__():
            self.assertIn(cls, stanzas.CONDITIONS, cls.__name__)

    def test_lookup(self) -> None:
        self.assertEqual(
            stanzas.condition_for(errors.NickInUse()), ErrorCondition("cancel", "conflict")
        )
        self.assertEqual(stanzas.condition_for(errors.MUCError()), stanzas.INTERNAL)

    def test_one_table_of_rfc_6120_conditions(self) -> None:
        # The table config.py checks deny_condition / failure_condition against is this one.
        from mucauth import conditions, config

        self.assertIs(config.ERROR_CONDITIONS, conditions.RFC6120_CONDITIONS)
        self.assertIs(config.ERROR_TYPES, conditions.ERROR_TYPES)
        for cls, (condition, kind) in stanzas.CONDITIONS.items():
            self.assertIn(condition, conditions.RFC6120_CONDITIONS, cls.__name__)
            self.assertIn(kind, conditions.ERROR_TYPES, cls.__name__)
        self.assertIn(stanzas.INTERNAL.condition, conditions.RFC6120_CONDITIONS)

    def test_no_unused_namespace_constant(self) -> None:
        # StanzaError builds the error children; nothing here names their namespace.
        self.assertFalse(hasattr(stanzas, "NS_STANZAS"))


class JoinErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reply = stanzas.join_error(
            parseXml(JOIN), ErrorCondition("cancel", "forbidden"), "No", room=ROOM
        )

    def test_addressing_and_id(self) -> None:
        r = self.reply
        self.assertEqual(
            (r["from"], r["to"], r["id"], r["type"]),
            ("room@rooms.example.org/alice", "alice@example.org/phone", "j1", "error"),
        )

    def test_carries_empty_muc_x_and_error_by_room(self) -> None:
        [x] = [c for c in self.reply.elements() if c.uri == NS_MUC]
        self.assertEqual(list(x.elements()), [])
        [error] = [c for c in self.reply.elements() if c.name == "error"]
        self.assertEqual((error["type"], error["by"]), ("cancel", "room@rooms.example.org"))
        self.assertIsNotNone(error.firstChildElement())
        self.assertEqual(error.firstChildElement().name, "forbidden")

    def test_never_echoes_password(self) -> None:
        self.assertNotIn("hunter2", self.reply.toXml())
        self.assertNotIn("away", self.reply.toXml())

    def test_sender_override(self) -> None:
        reply = stanzas.join_error(
            parseXml(JOIN), ErrorCondition("modify", "jid-malformed"), None, room=None, sender="s"
        )
        self.assertEqual(reply["from"], "s")
        self.assertFalse(reply.error.hasAttribute("by"))  # type: ignore[attr-defined]


class OccupantPresenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room(ROOM, creator=ALICE, created=T0, salt=b"s")
        self.alice = self.room.join(ALICE, "alice").occupant

    def test_item_and_statuses(self) -> None:
        p = stanzas.occupant_presence(
            self.room, self.alice, BOB, show_jid=True, statuses=[110, 201]
        )
        self.assertEqual(p["from"], "room@rooms.example.org/alice")
        item = p.x.item  # type: ignore[attr-defined]
        self.assertEqual(
            (item["affiliation"], item["role"], item["jid"]),
            ("owner", "moderator", "alice@example.org/phone"),
        )
        self.assertEqual(codes(p), {"110", "201"})
        [oid] = [c for c in p.elements() if c.uri == stanzas.NS_OCCUPANT_ID]
        self.assertEqual(oid["id"], self.alice.occupant_id)

    def test_hidden_jid(self) -> None:
        p = stanzas.occupant_presence(self.room, self.alice, BOB, show_jid=False)
        self.assertFalse(p.x.item.hasAttribute("jid"))  # type: ignore[attr-defined]

    def test_unavailable_role_none(self) -> None:
        p = stanzas.occupant_presence(self.room, self.alice, BOB, show_jid=False, unavailable=True)
        self.assertEqual(p["type"], "unavailable")
        self.assertEqual(p.x.item["role"], "none")  # type: ignore[attr-defined]

    def test_nick_change_item(self) -> None:
        p = stanzas.occupant_presence(
            self.room,
            self.alice,
            BOB,
            show_jid=False,
            unavailable=True,
            new_nick="al",
            statuses=[303],
        )
        self.assertEqual(p.x.item["nick"], "al")  # type: ignore[attr-defined]
        self.assertEqual(p.x.item["role"], "moderator")  # type: ignore[attr-defined]

    def test_payload_serializes(self) -> None:
        join = parseXml(JOIN)
        self.alice.payload = stanzas.client_children(join)
        xml = stanzas.occupant_presence(self.room, self.alice, BOB, show_jid=False).toXml()
        self.assertIn("away", xml)
        self.assertNotIn("hunter2", xml)
        self.assertIsNotNone(parseXml(xml))


class MessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = Room(ROOM, creator=ALICE, created=T0)

    def test_history_message_has_delay_from_room(self) -> None:
        m = stanzas.groupchat_message(self.room, "alice", "oid", BOB, [], stanza_id="m1", delay=T0)
        self.assertEqual((m["id"], m["type"]), ("m1", "groupchat"))
        self.assertEqual(m.delay["from"], "room@rooms.example.org")  # type: ignore[attr-defined]
        self.assertEqual(m.delay["stamp"], "2024-05-01T12:00:00Z")  # type: ignore[attr-defined]

    def test_empty_subject_from_room(self) -> None:
        m = stanzas.subject_message(self.room, BOB)
        self.assertEqual(m["from"], "room@rooms.example.org")
        self.assertEqual(str(m.subject), "")  # type: ignore[attr-defined]
        self.assertIsNone(m.body)  # type: ignore[attr-defined]

    def test_subject_from_setter(self) -> None:
        self.room.join(ALICE, "alice")
        self.room.set_subject(ALICE, "Topic")
        m = stanzas.subject_message(self.room, BOB)
        self.assertEqual((m["from"], str(m.subject)), ("room@rooms.example.org/alice", "Topic"))  # type: ignore[attr-defined]

    def test_client_children_drop_forgeries(self) -> None:
        msg = parseXml(
            "<message xmlns='jabber:component:accept'><body>hi</body>"
            "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='fake'/>"
            "<x xmlns='http://jabber.org/protocol/muc#user'/></message>"
        )
        self.assertEqual([c.name for c in stanzas.client_children(msg)], ["body"])
