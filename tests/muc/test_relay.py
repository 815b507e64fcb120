"""Iqs between occupants, relayed through the room without showing real JIDs."""

from __future__ import annotations

from mucauth.muc.relay import TIMEOUT
from tests.muc.support import ALICE, BOB, ROOM, ServiceTestCase, error_of, iq

VCARD = "<vCard xmlns='vcard-temp'/>"
VERSION = "<query xmlns='jabber:iq:version'/>"


class RelayTests(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")

    def test_a_vcard_request_goes_to_the_bare_jid_and_comes_back(self) -> None:
        self.receive(iq(BOB, f"{ROOM}/alice", VCARD, id="v1"))
        out = self.take_one()
        self.assertEqual(
            (out["from"], out["to"], out["type"]), (f"{ROOM}/bob", "alice@example.org", "get")
        )
        self.assertNotEqual(out["id"], "v1")
        self.assertEqual(out.firstChildElement().uri, "vcard-temp")
        self.receive(
            f"<iq xmlns='jabber:component:accept' from='alice@example.org' to='{ROOM}/bob'"
            f" type='result' id='{out['id']}'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>"
        )
        back = self.take_one()
        self.assertEqual(
            (back["from"], back["to"], back["id"], back["type"]),
            (f"{ROOM}/alice", BOB, "v1", "result"),
        )
        self.assertIn("<FN>Alice</FN>", back.toXml())
        self.assertNotIn("alice@example.org", back.toXml())

    def test_other_queries_go_to_the_session_and_errors_come_back(self) -> None:
        self.receive(iq(BOB, f"{ROOM}/alice", VERSION, id="q9"))
        out = self.take_one()
        self.assertEqual(out["to"], ALICE)
        self.receive(
            f"<iq xmlns='jabber:component:accept' from='{ALICE}' to='{ROOM}/bob' type='error'"
            f" id='{out['id']}'><error type='cancel'><service-unavailable"
            " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        back = self.take_one()
        self.assertEqual((back["to"], back["id"]), (BOB, "q9"))
        self.assertEqual(error_of(back), ("cancel", "service-unavailable"))

    def test_an_answer_from_someone_else_is_not_passed_on(self) -> None:
        self.receive(iq(BOB, f"{ROOM}/alice", VERSION))
        out = self.take_one()
        self.receive(
            f"<iq xmlns='jabber:component:accept' from='mallory@example.org/x' to='{ROOM}/bob'"
            f" type='result' id='{out['id']}'/>"
        )
        self.assertEqual(self.take(), [])

    def test_no_answer_is_a_timeout(self) -> None:
        self.receive(iq(BOB, f"{ROOM}/alice", VERSION, id="q2"))
        self.take()
        self.clock.advance(TIMEOUT)
        back = self.take_one()
        self.assertEqual((back["to"], back["id"]), (BOB, "q2"))
        self.assertEqual(error_of(back), ("wait", "remote-server-timeout"))

    def test_an_unknown_occupant(self) -> None:
        self.receive(iq(BOB, f"{ROOM}/nobody", VERSION))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))
