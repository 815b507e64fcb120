"""Life inside a room: messages, subject, presence updates, nick changes, leaving."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID

from mucauth.settings import MUCSettings
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    NS_OID,
    NS_USER,
    PING,
    ROOM,
    ServiceTestCase,
    codes,
    error_of,
    iq,
    item,
    message,
    occupant_id,
    presence,
    summary,
)


class TwoOccupants(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")


class GroupchatTests(TwoOccupants):
    def test_reflected_to_everyone_with_id_and_occupant_id(self) -> None:
        self.receive(message(BOB, body="hello", id="abc"))
        out = self.take()
        self.assertEqual(sorted(m["to"] for m in out), [ALICE, BOB])
        for m in out:
            self.assertEqual(
                (m["from"], m["type"], m["id"], str(m.body)),  # type: ignore[attr-defined]
                (ROOM + "/bob", "groupchat", "abc", "hello"),
            )
            self.assertEqual(occupant_id(m), self.service.rooms[JID(ROOM)].occupant_id(JID(BOB)))

    def test_forged_occupant_id_is_replaced(self) -> None:
        forged = f"<occupant-id xmlns='{NS_OID}' id='alice-id'/>"
        self.receive(message(BOB, inner=forged))
        for m in self.take():
            self.assertEqual(len(list(m.elements(NS_OID, "occupant-id"))), 1)
            self.assertNotEqual(occupant_id(m), "alice-id")

    def test_non_occupant_refused(self) -> None:
        self.receive(message(CAROL, id="c1"))
        reply = self.take_one()
        self.assertEqual(summary(reply), ("message", ROOM, CAROL, "error"))
        self.assertEqual(reply["id"], "c1")
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))

    def test_message_to_unknown_room_refused(self) -> None:
        self.receive(message(CAROL, to="other@rooms.example.org"))
        self.assertEqual(error_of(self.take_one()), ("modify", "not-acceptable"))

    def test_groupchat_to_occupant_jid_is_bad_request(self) -> None:
        self.receive(message(BOB, to=ROOM + "/alice"))
        self.assertEqual(error_of(self.take_one()), ("modify", "bad-request"))

    def test_message_without_body_not_stored(self) -> None:
        chat_state = "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        self.receive(message(BOB, body=None, inner=chat_state))
        self.assertEqual(len(self.take()), 2)
        self.assertEqual(self.service.rooms[JID(ROOM)].history_entries, [])

    def test_normal_message_to_room_not_supported(self) -> None:
        self.receive(message(BOB, type="normal"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "feature-not-implemented"))


class SubjectTests(TwoOccupants):
    def test_owner_sets_subject_broadcast_and_kept(self) -> None:
        self.receive(message(ALICE, body=None, inner="<subject>Plans</subject>", id="s1"))
        out = self.take()
        self.assertEqual(len(out), 2)
        self.assertEqual(str(out[0].subject), "Plans")  # type: ignore[attr-defined]
        self.assertEqual(out[0]["id"], "s1")
        self.assertEqual(self.service.rooms[JID(ROOM)].history_entries, [])
        subject = self.enter(CAROL, "carol")[-1]
        self.assertEqual((subject["from"], str(subject.subject)), (ROOM + "/alice", "Plans"))  # type: ignore[attr-defined]

    def test_participant_may_not(self) -> None:
        self.receive(message(BOB, body=None, inner="<subject>Mine</subject>"))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))

    def test_subject_with_body_is_a_message(self) -> None:
        self.receive(message(BOB, body="x", inner="<subject>thread-ish</subject>"))
        self.assertEqual(len(self.take()), 2)
        self.assertIsNone(self.service.rooms[JID(ROOM)].subject)


class PrivateMessageTests(TwoOccupants):
    def test_routed_to_every_session(self) -> None:
        self.enter(ALICE2, "alice")
        self.receive(message(BOB, to=ROOM + "/alice", type="chat", id="p1"))
        out = self.take()
        self.assertEqual(sorted(m["to"] for m in out), [ALICE2, ALICE])
        for m in out:
            self.assertEqual((m["from"], m["type"], m["id"]), (ROOM + "/bob", "chat", "p1"))
            self.assertEqual(len(list(m.elements(NS_USER, "x"))), 1)

    def test_unknown_nick(self) -> None:
        self.receive(message(BOB, to=ROOM + "/nobody", type="chat"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_from_non_occupant(self) -> None:
        self.receive(message(CAROL, to=ROOM + "/alice", type="chat"))
        self.assertEqual(error_of(self.take_one()), ("modify", "not-acceptable"))


class PresenceUpdateTests(TwoOccupants):
    def test_update_broadcast(self) -> None:
        self.receive(presence(BOB, ROOM + "/bob", muc=False, inner="<show>dnd</show>"))
        out = self.take()
        self.assertEqual(sorted(p["to"] for p in out), [ALICE, BOB])
        for p in out:
            self.assertIn("dnd", p.toXml())
            self.assertEqual(codes(p), {110} if p["to"] == BOB else set())
        self.assertEqual(self.auth.requests[-1].user, JID(BOB))  # no new gate check
        self.assertEqual(len(self.auth.requests), 2)


class NickChangeTests(TwoOccupants):
    settings = MUCSettings(gate_nick_change=False)

    def test_change(self) -> None:
        self.receive(presence(BOB, ROOM + "/robert", muc=False))
        out = self.take()
        self.assertEqual(len(out), 4)
        gone, back = out[:2], out[2:]
        for p in gone:
            self.assertEqual((p["from"], p["type"]), (ROOM + "/bob", "unavailable"))
            self.assertEqual(item(p)["nick"], "robert")
            self.assertEqual(codes(p), {303, 110} if p["to"] == BOB else {303})
        for p in back:
            self.assertEqual(p["from"], ROOM + "/robert")
            self.assertFalse(p.hasAttribute("type"))
            self.assertEqual(codes(p), {110} if p["to"] == BOB else set())
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.occupant_for(JID(BOB)).nick, "robert")  # type: ignore[union-attr]
        self.assertEqual(len(self.auth.requests), 2)  # not gated when switched off

    def test_conflict(self) -> None:
        self.receive(presence(BOB, ROOM + "/alice", id="n1", muc=False))
        reply = self.take_one()
        self.assertEqual((reply["from"], reply["id"]), (ROOM + "/alice", "n1"))
        self.assertEqual(error_of(reply), ("cancel", "conflict"))
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.occupant_for(JID(BOB)).nick, "bob")  # type: ignore[union-attr]


class GatedNickChangeTests(TwoOccupants):
    settings = MUCSettings(gate_nick_change=True)

    def test_allowed(self) -> None:
        self.receive(presence(BOB, ROOM + "/robert", muc=False))
        self.assertEqual(self.take(), [])
        self.assertEqual(self.auth.requests[-1].nick, "robert")
        self.auth.allow()
        self.assertEqual(len(self.take()), 4)

    def test_denied(self) -> None:
        self.receive(presence(BOB, ROOM + "/robert", muc=False, id="n1"))
        self.auth.deny()
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("n1", ("cancel", "forbidden")))
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.occupant_for(JID(BOB)).nick, "bob")  # type: ignore[union-attr]

    def test_left_while_asking(self) -> None:
        self.receive(presence(BOB, ROOM + "/robert", muc=False))
        self.receive(presence(BOB, ROOM + "/bob", type="unavailable", muc=False))
        self.take()
        self.assertEqual(self.auth.cancelled[-1].nick, "robert")


class LeaveTests(TwoOccupants):
    def test_leave(self) -> None:
        self.receive(
            presence(
                BOB,
                ROOM + "/bob",
                type="unavailable",
                id="bye1",
                muc=False,
                inner="<status>bye</status>",
            )
        )
        out = self.take()
        self.assertEqual([p["to"] for p in out], [BOB, ALICE])
        own, other = out
        self.assertEqual((own["type"], codes(own)), ("unavailable", {110}))
        self.assertEqual([p.getAttribute("id") for p in out], ["bye1", None])
        self.assertEqual((other["type"], codes(other)), ("unavailable", set()))
        self.assertEqual(item(other)["role"], "none")
        self.assertIn("bye", other.toXml())

    def test_leave_to_any_nick_leaves(self) -> None:
        self.receive(presence(BOB, ROOM, type="unavailable", muc=False))
        self.assertEqual(len(self.take()), 2)

    def test_last_one_out_destroys_room(self) -> None:
        self.receive(presence(BOB, ROOM + "/bob", type="unavailable"))
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        self.assertEqual(dict(self.service.rooms), {})
        self.take()
        self.receive(iq(CAROL, ROOM, "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_one_session_of_two(self) -> None:
        self.enter(ALICE2, "alice")
        self.receive(presence(ALICE2, ROOM + "/alice", type="unavailable"))
        [own] = self.take()
        self.assertEqual((own["to"], codes(own)), (ALICE2, {110}))
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 2)

    def test_leave_from_stranger_is_silent(self) -> None:
        self.receive(presence(CAROL, ROOM + "/carol", type="unavailable"))
        self.assertEqual(self.take(), [])

    def test_self_ping_after_leave(self) -> None:
        self.receive(presence(BOB, ROOM + "/bob", type="unavailable"))
        self.take()
        self.receive(iq(BOB, ROOM + "/bob", PING))
        self.assertEqual(error_of(self.take_one()), ("cancel", "not-acceptable"))


class ErrorFromOccupantTests(TwoOccupants):
    def bounce(self, condition: str, kind: str = "presence") -> None:
        err = (
            f"<error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error>"
        )
        if kind == "presence":
            self.receive(presence(BOB, ROOM + "/bob", type="error", muc=False, inner=err))
        else:
            self.receive(message(BOB, body=None, type="error", inner=err))

    def test_error_presence_removes_the_session(self) -> None:
        """XEP-0045 §11.1: the others and the leaver see it go, 307 and 333."""
        self.bounce("recipient-unavailable")
        to_alice, to_bob = sorted(self.take(), key=lambda s: s["to"])
        self.assertEqual((to_alice["to"], to_alice["type"]), (ALICE, "unavailable"))
        self.assertEqual(codes(to_alice), {307, 333})
        self.assertEqual((to_bob["to"], to_bob["type"]), (BOB, "unavailable"))
        self.assertEqual(codes(to_bob), {110, 307, 333})
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_any_error_presence_counts(self) -> None:
        """Whatever the condition: the user's server has stopped counting the room among the
        session's presence contacts, and would never tell it the session went away."""
        self.bounce("undefined-condition")
        self.assertEqual(len(self.take()), 2)
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_error_presence_without_an_error_child_counts(self) -> None:
        self.receive(presence(BOB, ROOM + "/bob", type="error", muc=False))
        self.assertEqual(len(self.take()), 2)
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_the_next_session_is_a_fresh_occupant(self) -> None:
        self.bounce("bad-request")
        self.take()
        out = self.enter("bob@example.org/new", "bob")
        seen_by_alice = [s for s in out if s["to"] == ALICE]
        self.assertEqual(
            [(s.name, s.getAttribute("type")) for s in seen_by_alice], [("presence", None)]
        )
        occupant = self.service.rooms[JID(ROOM)].occupant("bob")
        assert occupant is not None
        self.assertEqual(occupant.sessions, [JID("bob@example.org/new")])

    def test_error_message_also_counts(self) -> None:
        self.bounce("remote-server-not-found", kind="message")
        self.assertEqual(len(self.take()), 1)

    def test_other_message_errors_ignored_never_answered(self) -> None:
        self.bounce("undefined-condition", kind="message")
        self.bounce("bad-request", kind="message")
        self.assertEqual(self.take(), [])
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_error_presence_cancels_a_pending_join(self) -> None:
        self.join(CAROL, "carol")
        self.receive(presence(CAROL, ROOM + "/carol", type="error", muc=False))
        _, asked = self.auth.calls[-1]
        self.assertTrue(asked.called, "the check was not cancelled")
        self.assertEqual(self.take(), [])
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant("carol"))
        self.assertEqual(self.service.pending_checks, 0)

    def test_error_from_stranger_ignored(self) -> None:
        err = "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        self.receive(presence(CAROL, ROOM + "/x", type="error", muc=False, inner=err))
        self.assertEqual(self.take(), [])
