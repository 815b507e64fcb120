"""Moderation through the whole real stack, behind Prosody and behind ejabberd: slixmpp clients
grant, kick, ban, invite and relay through ``twistd mucauth``; the example auth service decides
joins and, for some rooms, the joiner's standing.

Plain synchronous methods, like tests/test_e2e.py: they run under trial and under pytest.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.rooms import USER, admin_iq, config_iq, is_result, self_item
from tests.support.stack import StackFixture
from tests.support.xmpp import JoinResult, XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd]

RULES: dict[str, Any] = {
    "rules": [
        {"user": "bob@localhost", "room": "standing", "allow": True, "affiliation": "admin"},
        {"user": "carol@localhost", "room": "standing", "allow": True, "role": "visitor"},
        {"user": "*", "room": "bad-standing", "answer": "bad-affiliation"},
        {"user": "*", "room": "*"},
    ]
}


class ModerationTests(StackFixture):
    rules = RULES

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.stack.client("alice")
        self.bob = self.stack.client("bob")
        self.carol = self.stack.client("carol")

    def joined(self, client: XMPPClient, room: str, nick: str) -> JoinResult:
        result = client.join(room, nick)
        self.assertTrue(result.ok, result.describe() + "\n" + self.stack.diagnostics())
        return result

    def asked_for(self, user: str, room: str) -> int:
        assert self.stack.auth is not None
        return sum(
            1
            for r in self.stack.auth.requests()
            if r["args"].get("userJID") == user and r["args"].get("mucJID") == room
        )

    def leave_all(self, room: str, *clients: XMPPClient) -> None:
        for client in clients:
            client.leave(room)

    def test_the_owner_grants_moderator_and_the_moderator_kicks(self) -> None:
        room = self.stack.room("kick")
        self.joined(self.alice, room, "alice")
        self.joined(self.bob, room, "bob")
        self.joined(self.carol, room, "carol")
        reply = self.alice.iq(admin_iq(room, "<item nick='bob' role='moderator'/>"))
        self.assertTrue(is_result(reply), reply)
        reply = self.bob.iq(
            admin_iq(room, "<item nick='carol' role='none'><reason>Spamming</reason></item>")
        )
        self.assertTrue(is_result(reply), reply)
        kicked = self.carol.wait_presence(f"{room}/carol", "unavailable")
        self.assertEqual(kicked.status_codes, {110, 307}, kicked.xml)
        self.assertIn("Spamming", kicked.xml)
        self.assertRegex(kicked.xml, r"<actor nick=['\"]bob['\"]")
        seen = self.alice.wait_presence(f"{room}/carol", "unavailable")
        self.assertEqual(seen.status_codes, {307}, seen.xml)
        self.assertIn("Spamming", seen.xml)
        self.leave_all(room, self.alice, self.bob)

    def test_an_admin_bans_and_the_rejoin_is_refused_without_asking(self) -> None:
        room = self.stack.room("ban")
        self.joined(self.alice, room, "alice")
        self.joined(self.bob, room, "bob")
        self.joined(self.carol, room, "carol")
        reply = self.alice.iq(admin_iq(room, "<item affiliation='admin' jid='bob@localhost'/>"))
        self.assertTrue(is_result(reply), reply)
        reply = self.bob.iq(
            admin_iq(
                room,
                "<item affiliation='outcast' jid='carol@localhost'><reason>Out</reason></item>",
            )
        )
        self.assertTrue(is_result(reply), reply)
        banned = self.carol.wait_presence(f"{room}/carol", "unavailable")
        self.assertEqual(banned.status_codes, {110, 301}, banned.xml)
        asked = self.asked_for("carol@localhost", room)
        again = self.carol.join(room, "carol")
        self.assertFalse(again.ok, again.describe())
        self.assertEqual((again.error_type, again.condition), ("auth", "forbidden"))
        self.assertEqual(self.asked_for("carol@localhost", room), asked)
        self.leave_all(room, self.alice, self.bob)

    def test_a_members_only_room_refuses_a_non_member(self) -> None:
        room = self.stack.room("members")
        self.joined(self.alice, room, "alice")
        reply = self.alice.iq(admin_iq(room, "<item affiliation='member' jid='bob@localhost'/>"))
        self.assertTrue(is_result(reply), reply)
        reply = self.alice.iq(config_iq(room, membersonly="1"))
        self.assertTrue(is_result(reply), reply)
        self.joined(self.bob, room, "bob")
        refused = self.carol.join(room, "carol")
        self.assertFalse(refused.ok, refused.describe())
        self.assertEqual((refused.error_type, refused.condition), ("auth", "registration-required"))
        self.assertEqual(self.asked_for("carol@localhost", room), 0)
        self.leave_all(room, self.alice, self.bob)

    def test_a_visitor_cannot_post_in_a_moderated_room(self) -> None:
        room = self.stack.room("moderated")
        self.joined(self.alice, room, "alice")
        reply = self.alice.iq(config_iq(room, moderatedroom="1"))
        self.assertTrue(is_result(reply), reply)
        bob = self.joined(self.bob, room, "bob")
        self.assertEqual(self_item(bob), ("none", "visitor"))
        self.bob.send_groupchat(room, "can anyone hear me?")
        error = self.bob.wait_stanza(room, "message", "error")
        self.assertIn("forbidden", error)
        self.alice.send_groupchat(room, "owners can")
        self.assertEqual(self.bob.wait_message(room).body, "owners can")
        self.leave_all(room, self.alice, self.bob)

    def test_a_mediated_invitation_is_delivered(self) -> None:
        room = self.stack.room("invite")
        self.joined(self.alice, room, "alice")
        self.alice.raw(
            f"<message to='{room}'><x xmlns='{USER}'><invite to='carol@localhost'>"
            "<reason>Come and see</reason></invite></x></message>"
        )
        invitation = self.carol.wait_stanza(room, "message")
        self.assertIn("invite", invitation)
        self.assertRegex(invitation, r"from=['\"]alice@localhost['\"]")
        self.assertIn("Come and see", invitation)
        self.joined(self.carol, room, "carol")  # still through the gate
        self.leave_all(room, self.alice, self.carol)

    def test_a_vcard_request_to_an_occupant_is_relayed_and_answered(self) -> None:
        room = self.stack.room("vcard")
        self.joined(self.alice, room, "alice")
        self.joined(self.bob, room, "bob")
        reply = self.bob.iq(
            f"<iq type='get' to='{room}/alice' id='v1'><vCard xmlns='vcard-temp'/></iq>"
        )
        # Answered by alice's server (a vCard, or its error when it keeps none), through the
        # room: from alice's occupant JID, never from her real one.
        self.assertRegex(reply, rf"from=['\"]{re.escape(room)}/alice['\"]")
        self.assertNotIn("alice@localhost", reply)
        self.leave_all(room, self.alice, self.bob)

    def test_the_http_answer_gives_affiliation_and_role(self) -> None:
        room = self.stack.room("standing")
        self.joined(self.alice, room, "alice")
        bob = self.joined(self.bob, room, "bob")
        self.assertEqual(self_item(bob), ("admin", "moderator"))
        carol = self.joined(self.carol, room, "carol")
        self.assertEqual(self_item(carol), ("none", "visitor"))
        self.leave_all(room, self.alice, self.bob, self.carol)

    def test_an_invalid_affiliation_in_the_answer_is_refused(self) -> None:
        room = self.stack.room("bad-standing")
        refused = self.alice.join(room, "alice")
        self.assertFalse(refused.ok, refused.describe())
        self.assertEqual(refused.condition, "service-unavailable")
        log = self.stack.wait_mucauth_log("emperor")
        self.assertIn("affiliation", log)


class ModerationOnEjabberdTests(ModerationTests):
    server = "ejabberd"
