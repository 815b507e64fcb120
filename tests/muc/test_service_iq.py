"""Disco, the owner form, self-ping and registration."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.disco import DiscoInfo, DiscoItems

from mucauth.settings import MUCSettings
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    NS_USER,
    PING,
    ROOM,
    SERVICE,
    ServiceTestCase,
    error_of,
    iq,
    summary,
)

INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
ITEMS = "<query xmlns='http://jabber.org/protocol/disco#items'/>"
OWNER = "http://jabber.org/protocol/muc#owner"
XDATA = "jabber:x:data"


def disco_info(reply: domish.Element) -> DiscoInfo:
    return DiscoInfo.fromElement(reply.firstChildElement())


class ServiceDiscoTests(ServiceTestCase):
    settings = MUCSettings(service_name="Course rooms")

    def test_service_info(self) -> None:
        self.receive(iq(ALICE, SERVICE, INFO))
        reply = self.take_one()
        self.assertEqual(summary(reply), ("iq", SERVICE, ALICE, "result"))
        found = disco_info(reply)
        self.assertEqual(found.identities, {("conference", "text"): "Course rooms"})
        for feature in (
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "urn:xmpp:ping",
            "http://jabber.org/protocol/muc#stable_id",
            "urn:xmpp:occupant-id:0",
        ):
            self.assertIn(feature, found.features)

    def test_items_list_public_rooms(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(ALICE, "alice", room="other@" + SERVICE)
        self.receive(iq(BOB, SERVICE, ITEMS))
        items = DiscoItems.fromElement(self.take_one().firstChildElement())
        self.assertEqual([i.entity for i in items], [JID("other@" + SERVICE), JID(ROOM)])

    def test_hidden_rooms_not_listed(self) -> None:
        self.enter(ALICE, "alice")
        self.service.rooms[JID(ROOM)].config.public = False
        self.receive(iq(BOB, SERVICE, ITEMS))
        self.assertEqual(list(DiscoItems.fromElement(self.take_one().firstChildElement())), [])

    def test_node_is_item_not_found(self) -> None:
        self.receive(
            iq(ALICE, SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>")
        )
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_disco_set_is_bad_request(self) -> None:
        self.receive(iq(ALICE, SERVICE, INFO, type="set"))
        self.assertEqual(error_of(self.take_one()), ("modify", "bad-request"))

    def test_ping_service(self) -> None:
        self.receive(iq(ALICE, SERVICE, PING))
        self.assertEqual(summary(self.take_one()), ("iq", SERVICE, ALICE, "result"))


class RoomDiscoTests(ServiceTestCase):
    def test_room_info(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        self.receive(iq(CAROL, ROOM, INFO))
        reply = self.take_one()
        self.assertEqual(summary(reply), ("iq", ROOM, CAROL, "result"))
        found = disco_info(reply)
        self.assertEqual(found.identities, {("conference", "text"): "room"})
        for feature in (
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/muc#stable_id",
            "urn:xmpp:occupant-id:0",
            "muc_public",
            "muc_open",
            "muc_unmoderated",
            "muc_semianonymous",
            "muc_temporary",
            "muc_unsecured",
            "http://jabber.org/protocol/muc#request",  # voice requests
        ):
            self.assertIn(feature, found.features)
        form = found.extensions["http://jabber.org/protocol/muc#roominfo"]
        self.assertEqual(form.fields["muc#roominfo_occupants"].value, "2")

    def test_unknown_room(self) -> None:
        self.receive(iq(CAROL, ROOM, INFO, id="d9"))
        reply = self.take_one()
        self.assertEqual((reply["from"], reply["id"]), (ROOM, "d9"))
        self.assertEqual(error_of(reply), ("cancel", "item-not-found"))

    def test_room_items_empty(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(CAROL, ROOM, ITEMS))
        self.assertEqual(list(DiscoItems.fromElement(self.take_one().firstChildElement())), [])

    def test_disco_to_occupant_from_a_non_occupant_is_not_relayed(self) -> None:
        # Occupants' iqs to each other are relayed (tests/muc/test_relay.py); a stranger's not.
        self.enter(ALICE, "alice")
        self.receive(iq(CAROL, ROOM + "/alice", INFO))
        self.assertEqual(error_of(self.take_one()), ("modify", "not-acceptable"))


class OwnerTests(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")

    def submit(self, form: str, user: str = ALICE) -> domish.Element:
        """The iq's answer; the notices occupants got are kept in ``self.notices``."""
        self.receive(iq(user, ROOM, f"<query xmlns='{OWNER}'>{form}</query>", type="set"))
        sent = self.take()
        [reply] = [s for s in sent if s.name == "iq"]
        self.notices = [s for s in sent if s.name == "message"]
        return reply

    def test_get_form(self) -> None:
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'/>"))
        reply = self.take_one()
        self.assertEqual(reply["type"], "result")
        form = data_form.findForm(
            reply.firstChildElement(), "http://jabber.org/protocol/muc#roomconfig"
        )
        self.assertEqual(form.formType, "form")
        self.assertIn("muc#roomconfig_roomname", form.fields)

    def test_every_choice_has_a_label(self) -> None:
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'/>"))
        form = data_form.findForm(
            self.take_one().firstChildElement(), "http://jabber.org/protocol/muc#roomconfig"
        )
        choices = {
            name: {o.value: o.label for o in f.options}
            for name, f in form.fields.items()
            if f.fieldType == "list-single"
        }
        self.assertEqual(
            choices["muc#roomconfig_allowpm"],
            {
                "anyone": "Anyone",
                "participants": "Participants",
                "moderators": "Moderators only",
                "none": "Nobody",
            },
        )
        self.assertEqual(
            choices["muc#roomconfig_whois"], {"moderators": "Moderators only", "anyone": "Anyone"}
        )
        self.assertEqual(choices["muc#roomconfig_maxusers"]["50"], "50")
        self.assertEqual(choices["muc#roomconfig_maxusers"]["none"], "No limit")
        for name, options in choices.items():
            for value, label in options.items():
                self.assertTrue(label, f"{name}: {value} has no label")

    def test_non_owner_forbidden(self) -> None:
        self.receive(iq(BOB, ROOM, f"<query xmlns='{OWNER}'/>"))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))
        self.assertEqual(
            error_of(self.submit(f"<x xmlns='{XDATA}' type='submit'/>", BOB)), ("auth", "forbidden")
        )

    def test_empty_submit_accepted(self) -> None:
        self.assertEqual(self.submit(f"<x xmlns='{XDATA}' type='submit'/>")["type"], "result")

    def test_cancel_accepted(self) -> None:
        self.assertEqual(self.submit(f"<x xmlns='{XDATA}' type='cancel'/>")["type"], "result")

    def test_submit_applies_name(self) -> None:
        form = (
            f"<x xmlns='{XDATA}' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
            "<field var='muc#roomconfig_roomname'><value>Study group</value></field>"
            "<field var='muc#roomconfig_publicroom'><value>0</value></field></x>"
        )
        self.assertEqual(self.submit(form)["type"], "result")
        config = self.service.rooms[JID(ROOM)].config
        self.assertEqual((config.name, config.public), ("Study group", False))

    def config(self, **fields: str) -> str:
        inner = "".join(
            f"<field var='muc#roomconfig_{name}'><value>{value}</value></field>"
            for name, value in fields.items()
        )
        return f"<x xmlns='{XDATA}' type='submit'>{inner}</x>"

    def notice_codes(self) -> dict[str, list[int]]:
        """Each occupant's notice: its status codes, in order."""
        found = {}
        for notice in self.notices:
            self.assertEqual(summary(notice)[1:], (ROOM, notice["to"], "groupchat"))
            self.assertIsNone(notice.body)
            [x] = list(notice.elements(NS_USER, "x"))
            found[notice["to"]] = [int(s["code"]) for s in x.elements(NS_USER, "status")]
        return found

    def test_a_change_is_told_to_every_occupant_with_104(self) -> None:
        self.assertEqual(self.submit(self.config(roomname="Study group"))["type"], "result")
        self.assertEqual(self.notice_codes(), {ALICE: [104], BOB: [104]})

    def test_logging_and_anonymity_changes_have_their_codes(self) -> None:
        self.submit(self.config(enablelogging="1", whois="anyone"))
        self.assertEqual(self.notice_codes(), {ALICE: [104, 170, 172], BOB: [104, 170, 172]})
        self.submit(self.config(enablelogging="0", whois="moderators"))
        self.assertEqual(self.notice_codes(), {ALICE: [104, 171, 173], BOB: [104, 171, 173]})

    def test_a_submission_that_changes_nothing_is_not_told(self) -> None:
        self.submit(f"<x xmlns='{XDATA}' type='submit'/>")
        self.submit(self.config(enablelogging="0", publicroom="1"))  # as they were
        self.assertEqual(self.notices, [])

    def test_a_refused_submission_is_not_told(self) -> None:
        reply = self.submit(self.config(roomname="x", whois="everyone"))
        self.assertEqual(error_of(reply), ("modify", "bad-request"))
        self.assertEqual(self.notices, [])

    def test_persistent_without_a_store_outlives_an_empty_room(self) -> None:
        form = (
            f"<x xmlns='{XDATA}' type='submit'>"
            "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x>"
        )
        self.assertEqual(self.submit(form)["type"], "result")
        self.leave(ALICE, "alice")
        self.leave(BOB, "bob")
        # Empty, it left memory for the in-memory store that stands in; a query reads it back.
        self.receive(iq(ALICE, ROOM, INFO))
        self.assertEqual(self.take_one()["type"], "result")
        self.assertTrue(self.service.rooms[JID(ROOM)].config.persistent)

    def test_no_form_is_bad_request(self) -> None:
        self.assertEqual(error_of(self.submit("")), ("modify", "bad-request"))

    def test_destroy_tells_everyone_and_ends_the_room(self) -> None:
        self.receive(
            iq(
                ALICE,
                ROOM,
                f"<query xmlns='{OWNER}'><destroy jid='new@{SERVICE}'>"
                "<reason>Moved</reason></destroy></query>",
                type="set",
            )
        )
        sent = self.take()
        gone = [s for s in sent if s.name == "presence"]
        self.assertEqual(sorted(s["to"] for s in gone), sorted([ALICE, BOB]))
        for presence in gone:
            self.assertEqual(presence["type"], "unavailable")
            [x] = list(presence.elements(NS_USER, "x"))
            [destroy] = list(x.elements(NS_USER, "destroy"))
            self.assertEqual((destroy["jid"], str(destroy.reason)), (f"new@{SERVICE}", "Moved"))
        self.assertEqual(summary(sent[-1]), ("iq", ROOM, ALICE, "result"))
        self.assertNotIn(JID(ROOM), self.service.rooms)

    def test_destroy_by_a_non_owner_is_forbidden(self) -> None:
        self.assertEqual(error_of(self.submit("<destroy/>", BOB)), ("auth", "forbidden"))
        self.assertIn(JID(ROOM), self.service.rooms)

    def test_admin_request_without_an_item(self) -> None:
        # muc#admin is answered now (tests/muc/test_moderation.py); an empty one is malformed.
        self.receive(iq(ALICE, ROOM, "<query xmlns='http://jabber.org/protocol/muc#admin'/>"))
        self.assertEqual(error_of(self.take_one()), ("modify", "bad-request"))

    def test_unknown_namespace(self) -> None:
        self.receive(iq(ALICE, ROOM, "<query xmlns='urn:example:nothing'/>"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "service-unavailable"))


class SelfPingTests(ServiceTestCase):
    def test_joined(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(ALICE, ROOM + "/alice", PING, id="p1"))
        reply = self.take_one()
        self.assertEqual(summary(reply), ("iq", ROOM + "/alice", ALICE, "result"))
        self.assertEqual(reply["id"], "p1")

    def test_not_joined(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(BOB, ROOM + "/bob", PING))
        self.assertEqual(error_of(self.take_one()), ("cancel", "not-acceptable"))

    def test_no_room(self) -> None:
        self.receive(iq(BOB, ROOM + "/bob", PING))
        self.assertEqual(error_of(self.take_one()), ("cancel", "not-acceptable"))

    def test_ping_other_occupant_means_still_joined(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        self.receive(iq(BOB, ROOM + "/alice", PING))
        relayed = self.take_one()  # relayed to alice, as any iq between occupants
        self.assertEqual((relayed["from"], relayed["to"]), (ROOM + "/bob", ALICE))
        self.receive(iq(BOB, ROOM + "/ghost", PING))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_ping_room(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(BOB, ROOM, PING))
        self.assertEqual(self.take_one()["type"], "result")


REGISTER = (
    "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
    "<field var='muc#register_roomnick'><value>bobby</value></field></x></query>"
)


class RegistrationTests(ServiceTestCase):
    def test_not_gated_by_default(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(BOB, ROOM, REGISTER, type="set"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "feature-not-implemented"))
        self.assertEqual(len(self.auth.requests), 1)


class GatedRegistrationTests(ServiceTestCase):
    service_options = {"authorize_registration": True}

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.receive(iq(BOB, ROOM, REGISTER, type="set", id="r1"))

    def test_asks_the_gate(self) -> None:
        request = self.auth.requests[-1]
        [pending] = self.service.pending.values()  # the iq's id stays on the MUC side
        self.assertEqual(
            (request.action, request.nick, request.user, pending.stanza["id"]),
            ("register", "bobby", JID(BOB), "r1"),
        )
        self.assertEqual(self.take(), [])

    def test_allowed_is_still_not_implemented(self) -> None:
        self.auth.allow()
        reply = self.take_one()
        self.assertEqual(
            (reply["id"], error_of(reply)), ("r1", ("cancel", "feature-not-implemented"))
        )

    def test_denied_gets_deny_condition(self) -> None:
        self.auth.deny()
        self.assertEqual(error_of(self.take_one()), ("cancel", "forbidden"))

    def test_unknown_room(self) -> None:
        self.receive(iq(BOB, "nowhere@" + SERVICE, REGISTER, type="set"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))
