"""Moderation through the service, in memory: muc#admin changes and lists, bans before the
gate, members-only and moderated rooms, invitations and voice requests."""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form

from mucauth.authorize.base import Decision
from mucauth.muc.requests import NS_MUC_REQUEST
from mucauth.store import MemoryRoomStore
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    NS_USER,
    ROOM,
    ServiceTestCase,
    codes,
    error_of,
    iq,
    item,
    message,
)

ADMIN = "http://jabber.org/protocol/muc#admin"
OWNER = "http://jabber.org/protocol/muc#owner"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
DAVE = "dave@example.org/pc"


def admin_get(attribute: str) -> str:
    return f"<query xmlns='{ADMIN}'><item {attribute}/></query>"


def admin_set(*items: str) -> str:
    return f"<query xmlns='{ADMIN}'>{''.join(items)}</query>"


def config(**fields: str) -> str:
    inner = f"<field var='FORM_TYPE'><value>{ROOMCONFIG}</value></field>"
    for name, value in fields.items():
        inner += f"<field var='muc#roomconfig_{name}'><value>{value}</value></field>"
    return f"<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>{inner}</x></query>"


def reason_of(stanza: domish.Element) -> str | None:
    for r in item(stanza).elements(NS_USER, "reason"):
        return str(r)
    return None


def actor_of(stanza: domish.Element) -> str | None:
    for a in item(stanza).elements(NS_USER, "actor"):
        return a.getAttribute("nick")
    return None


class ModerationTestCase(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")  # the owner
        self.enter(BOB, "bob")
        self.enter(CAROL, "carol")

    def admin(self, *items: str, user: str = ALICE) -> list[domish.Element]:
        self.receive(iq(user, ROOM, admin_set(*items), type="set"))
        return self.take()

    def answer(self, sent: list[domish.Element]) -> domish.Element:
        [reply] = [s for s in sent if s.name == "iq"]
        return reply

    def presences_to(self, sent: list[domish.Element], to: str) -> list[domish.Element]:
        return [s for s in sent if s.name == "presence" and s["to"] == to]


class KickTests(ModerationTestCase):
    def test_a_kick_removes_the_occupant_with_307_and_the_reason(self) -> None:
        sent = self.admin("<item nick='carol' role='none'><reason>Spam</reason></item>")
        self.assertEqual(self.answer(sent)["type"], "result")
        [own] = self.presences_to(sent, CAROL)
        self.assertEqual(own["type"], "unavailable")
        self.assertEqual(codes(own), {110, 307})
        self.assertEqual((reason_of(own), actor_of(own)), ("Spam", "alice"))
        self.assertEqual(item(own)["role"], "none")
        for other in (ALICE, BOB):
            [seen] = self.presences_to(sent, other)
            self.assertEqual((seen["from"], seen["type"]), (f"{ROOM}/carol", "unavailable"))
            self.assertEqual(codes(seen), {307})
            self.assertEqual(reason_of(seen), "Spam")
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant("carol"))
        # Kicked is not banned: carol may come back (through the gate).
        self.enter(CAROL, "carol")

    def test_a_participant_cannot_kick(self) -> None:
        sent = self.admin("<item nick='carol' role='none'/>", user=BOB)
        self.assertEqual(error_of(self.answer(sent)), ("auth", "forbidden"))
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant("carol"))

    def test_an_unknown_nick(self) -> None:
        sent = self.admin("<item nick='zed' role='none'/>")
        self.assertEqual(error_of(self.answer(sent)), ("cancel", "item-not-found"))

    def test_one_refused_item_changes_nothing(self) -> None:
        self.admin("<item affiliation='admin' jid='bob@example.org'/>")
        # bob (admin) kicks carol and the owner in one request: neither happens.
        sent = self.admin(
            "<item nick='carol' role='none'/>", "<item nick='alice' role='none'/>", user=BOB
        )
        self.assertEqual(error_of(self.answer(sent)), ("cancel", "not-allowed"))
        room = self.service.rooms[JID(ROOM)]
        self.assertIsNotNone(room.occupant("carol"))
        self.assertIsNotNone(room.occupant("alice"))


class BanTests(ModerationTestCase):
    def test_a_ban_removes_with_301_and_the_next_join_is_refused_without_asking(self) -> None:
        sent = self.admin(
            "<item affiliation='outcast' jid='carol@example.org'><reason>Trolling</reason></item>"
        )
        self.assertEqual(self.answer(sent)["type"], "result")
        [own] = self.presences_to(sent, CAROL)
        self.assertEqual(codes(own), {110, 301})
        self.assertEqual(item(own)["affiliation"], "outcast")
        self.assertEqual(reason_of(own), "Trolling")
        asked = len(self.auth.calls)
        self.join(CAROL, "carol2")
        [refused] = self.take()
        self.assertEqual(error_of(refused), ("auth", "forbidden"))
        self.assertEqual(len(self.auth.calls), asked)  # no HTTP check for a banned user

    def test_an_admin_cannot_ban_the_owner(self) -> None:
        self.admin("<item affiliation='admin' jid='bob@example.org'/>")
        sent = self.admin("<item affiliation='outcast' jid='alice@example.org'/>", user=BOB)
        self.assertEqual(error_of(self.answer(sent)), ("cancel", "not-allowed"))

    def test_the_outcast_list(self) -> None:
        self.admin("<item affiliation='outcast' jid='troll@example.org'/>")
        self.receive(
            iq(ALICE, ROOM, f"<query xmlns='{ADMIN}'><item affiliation='outcast'/></query>")
        )
        reply = self.take_one()
        listed = [(i["jid"], i["affiliation"]) for i in reply.query.elements(ADMIN, "item")]
        self.assertEqual(listed, [("troll@example.org", "outcast")])
        self.receive(iq(BOB, ROOM, admin_get("affiliation='outcast'")))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))


class GrantTests(ModerationTestCase):
    def test_the_owner_grants_moderator_and_everyone_sees_it(self) -> None:
        sent = self.admin("<item nick='bob' role='moderator'/>")
        self.assertEqual(self.answer(sent)["type"], "result")
        for to in (ALICE, BOB, CAROL):
            [seen] = self.presences_to(sent, to)
            self.assertEqual((seen["from"], item(seen)["role"]), (f"{ROOM}/bob", "moderator"))
        # bob, moderator by role, now kicks carol.
        sent = self.admin("<item nick='carol' role='none'/>", user=BOB)
        self.assertEqual(self.answer(sent)["type"], "result")

    def test_membership_admin_and_owner_lists(self) -> None:
        self.admin(
            "<item affiliation='member' jid='carol@example.org'/>",
            "<item affiliation='admin' jid='bob@example.org'/>",
            "<item affiliation='owner' jid='dave@example.org'/>",
        )
        for affiliation, expected in (
            ("member", ["carol@example.org"]),
            ("admin", ["bob@example.org"]),
            ("owner", ["alice@example.org", "dave@example.org"]),
        ):
            self.receive(
                iq(
                    ALICE,
                    ROOM,
                    f"<query xmlns='{ADMIN}'><item affiliation='{affiliation}'/></query>",
                )
            )
            reply = self.take_one()
            self.assertEqual([i["jid"] for i in reply.query.elements(ADMIN, "item")], expected)

    def test_affiliation_lists_name_the_jid_and_the_affiliation_only(self) -> None:
        # bob is in the room: his nick and role still stay out of the list.
        self.admin("<item affiliation='admin' jid='bob@example.org'/>")
        for affiliation, expected in (
            ("owner", [{"jid": "alice@example.org", "affiliation": "owner"}]),
            ("admin", [{"jid": "bob@example.org", "affiliation": "admin"}]),
        ):
            self.receive(iq(ALICE, ROOM, admin_get(f"affiliation='{affiliation}'")))
            reply = self.take_one()
            items = [dict(i.attributes) for i in reply.query.elements(ADMIN, "item")]
            self.assertEqual(items, expected)

    def test_role_lists_keep_the_nick_and_the_role(self) -> None:
        self.receive(iq(ALICE, ROOM, admin_get("role='participant'")))
        reply = self.take_one()
        items = [
            (i["nick"], i["role"], i["affiliation"]) for i in reply.query.elements(ADMIN, "item")
        ]
        self.assertEqual(items, [("bob", "participant", "none"), ("carol", "participant", "none")])

    def test_the_moderator_list(self) -> None:
        self.receive(iq(ALICE, ROOM, admin_get("role='moderator'")))
        reply = self.take_one()
        self.assertEqual([i["nick"] for i in reply.query.elements(ADMIN, "item")], ["alice"])

    def test_an_admin_cannot_appoint_an_owner(self) -> None:
        self.admin("<item affiliation='admin' jid='bob@example.org'/>")
        sent = self.admin("<item affiliation='owner' jid='carol@example.org'/>", user=BOB)
        self.assertEqual(error_of(self.answer(sent)), ("auth", "forbidden"))

    def test_the_last_owner_cannot_step_down(self) -> None:
        sent = self.admin("<item affiliation='member' jid='alice@example.org'/>")
        self.assertEqual(error_of(self.answer(sent)), ("cancel", "conflict"))


class MembersOnlyTests(ModerationTestCase):
    def test_non_members_are_refused_before_the_gate(self) -> None:
        self.admin("<item affiliation='member' jid='bob@example.org'/>")
        self.receive(iq(ALICE, ROOM, config(membersonly="1"), type="set"))
        sent = self.take()
        [gone] = self.presences_to(sent, CAROL)
        self.assertEqual(codes(gone), {110, 322})
        asked = len(self.auth.calls)
        self.join(DAVE, "dave")
        [refused] = self.take()
        self.assertEqual(error_of(refused), ("auth", "registration-required"))
        self.assertEqual(len(self.auth.calls), asked)
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant("bob"))

    def test_a_member_removed_from_a_members_only_room_leaves_with_321(self) -> None:
        self.admin("<item affiliation='member' jid='bob@example.org'/>")
        self.receive(iq(ALICE, ROOM, config(membersonly="1"), type="set"))
        self.take()
        sent = self.admin("<item affiliation='none' jid='bob@example.org'/>")
        [gone] = self.presences_to(sent, BOB)
        self.assertEqual(codes(gone), {110, 321})

    def test_an_invitation_by_the_owner_makes_a_member(self) -> None:
        self.receive(iq(ALICE, ROOM, config(membersonly="1", allowinvites="0"), type="set"))
        self.take()
        self.receive(
            message(
                ALICE,
                body=None,
                type="",
                inner=f"<x xmlns='{NS_USER}'><invite to='dave@example.org'>"
                "<reason>Join us</reason></invite></x>",
            )
        )
        [invitation] = self.take()
        self.assertEqual((invitation["from"], invitation["to"]), (ROOM, "dave@example.org"))
        [invite] = list(invitation.x.elements(NS_USER, "invite"))
        self.assertEqual((invite["from"], str(invite.reason)), ("alice@example.org", "Join us"))
        self.assertEqual(self.service.rooms[JID(ROOM)].affiliation(JID(DAVE)), "member")
        self.enter(DAVE, "dave")  # still through the gate


class InvitationTests(ModerationTestCase):
    def invite(self, user: str, to: str = "dave@example.org") -> list[domish.Element]:
        self.receive(
            message(user, body=None, type="", inner=f"<x xmlns='{NS_USER}'><invite to='{to}'/></x>")
        )
        return self.take()

    def test_an_invitation_is_forwarded_and_a_decline_goes_back(self) -> None:
        [invitation] = self.invite(BOB)
        self.assertEqual(invitation["to"], "dave@example.org")
        self.receive(
            message(
                DAVE,
                body=None,
                type="",
                inner=f"<x xmlns='{NS_USER}'><decline to='bob@example.org'>"
                "<reason>Busy</reason></decline></x>",
            )
        )
        [declined] = self.take()
        self.assertEqual((declined["from"], declined["to"]), (ROOM, BOB))
        [decline] = list(declined.x.elements(NS_USER, "decline"))
        self.assertEqual((decline["from"], str(decline.reason)), ("dave@example.org", "Busy"))

    def test_a_decline_without_an_invitation_goes_nowhere(self) -> None:
        self.receive(
            message(
                DAVE,
                body=None,
                type="",
                inner=f"<x xmlns='{NS_USER}'><decline to='bob@example.org'/></x>",
            )
        )
        self.assertEqual(self.take(), [])

    def test_without_allowinvites_only_moderators_invite(self) -> None:
        self.receive(iq(ALICE, ROOM, config(allowinvites="0"), type="set"))
        self.take()
        [refused] = self.invite(BOB)
        self.assertEqual(error_of(refused), ("auth", "forbidden"))
        [invitation] = self.invite(ALICE)
        self.assertEqual(invitation["to"], "dave@example.org")


class ModeratedTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.receive(iq(ALICE, ROOM, config(moderatedroom="1"), type="set"))
        self.sent_on_change = self.take()

    def test_occupants_without_affiliation_lose_voice(self) -> None:
        [seen] = [
            s
            for s in self.sent_on_change
            if s.name == "presence" and s["from"] == f"{ROOM}/bob" and s["to"] == BOB
        ]
        self.assertEqual(item(seen)["role"], "visitor")

    def test_a_visitor_cannot_post(self) -> None:
        self.receive(message(BOB, body="hello?"))
        [refused] = self.take()
        self.assertEqual(error_of(refused), ("auth", "forbidden"))
        self.receive(message(ALICE, body="owners speak"))
        self.assertEqual(len(self.take()), 3)

    def test_a_voice_request_reaches_the_moderators_and_their_yes_gives_voice(self) -> None:
        request = (
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE'><value>{NS_MUC_REQUEST}</value></field>"
            "<field var='muc#role'><value>participant</value></field></x>"
        )
        self.receive(message(BOB, body=None, type="", inner=request))
        [forwarded] = self.take()
        self.assertEqual(forwarded["to"], ALICE)
        form = data_form.findForm(forwarded, NS_MUC_REQUEST)
        assert form is not None
        values = form.getValues()
        self.assertEqual(values["muc#roomnick"], "bob")
        approval = (
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE'><value>{NS_MUC_REQUEST}</value></field>"
            "<field var='muc#role'><value>participant</value></field>"
            "<field var='muc#roomnick'><value>bob</value></field>"
            "<field var='muc#request_allow'><value>true</value></field></x>"
        )
        self.receive(message(ALICE, body=None, type="", inner=approval))
        sent = self.take()
        [seen] = [s for s in sent if s["to"] == BOB]
        self.assertEqual(item(seen)["role"], "participant")
        self.receive(message(BOB, body="thanks"))
        self.assertEqual(len(self.take()), 3)


class StoredAffiliationTests(ModerationTestCase):
    def setUp(self) -> None:
        store = MemoryRoomStore()
        store.open()
        self.store = store
        self.service_options = {"store": store}
        super().setUp()

    def test_a_ban_in_a_persistent_room_is_stored(self) -> None:
        self.receive(iq(ALICE, ROOM, config(persistentroom="1"), type="set"))
        self.take()
        self.admin("<item affiliation='outcast' jid='carol@example.org'/>")
        record = self.successResultOf(self.store.load_room(ROOM, 0))
        assert record is not None
        self.assertEqual(record.affiliations["carol@example.org"], "outcast")


class StandingFromTheGateTests(ServiceTestCase):
    """The gate's answer may name the joiner's affiliation and role (the HTTP extension)."""

    def own(self, sent: list[domish.Element], to: str, nick: str) -> list[domish.Element]:
        return [
            s
            for s in sent
            if s.name == "presence" and s["to"] == to and s["from"] == f"{ROOM}/{nick}"
        ]

    def test_an_affiliation_and_a_role_from_the_answer(self) -> None:
        self.enter(ALICE, "alice")
        self.join(BOB, "bob")
        with capturedLogs() as events:
            self.auth.answer(Decision.allow(affiliation="admin"))
        [logged] = [e for e in events if e.get("mucauth_event") == "decision"]
        self.assertEqual((logged["affiliation"], logged["role"]), ("admin", None))
        sent = self.take()
        [own] = self.own(sent, BOB, "bob")
        self.assertEqual((item(own)["affiliation"], item(own)["role"]), ("admin", "moderator"))
        self.assertEqual(self.service.rooms[JID(ROOM)].affiliation(JID(BOB)), "admin")
        self.join(CAROL, "carol")
        self.auth.answer(Decision.allow(role="visitor"))
        [own] = self.own(self.take(), CAROL, "carol")
        self.assertEqual((item(own)["affiliation"], item(own)["role"]), ("none", "visitor"))

    def test_without_a_standing_the_room_decides(self) -> None:
        self.enter(ALICE, "alice")
        [own] = self.own(self.enter(BOB, "bob"), BOB, "bob")
        self.assertEqual((item(own)["affiliation"], item(own)["role"]), ("none", "participant"))
