"""Sessions that have gone quiet are asked whether they are still there."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.settings import MUCSettings
from tests.muc.support import ALICE, BOB, ROOM, ServiceTestCase, codes, iq, message

NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def answer(probe: domish.Element, condition: str | None = None, frm: str | None = None) -> str:
    sender = frm or probe["to"]
    if condition is None:
        return (
            f"<iq xmlns='jabber:component:accept' type='result' from='{sender}'"
            f" to='{probe['from']}' id='{probe['id']}'/>"
        )
    return (
        f"<iq xmlns='jabber:component:accept' type='error' from='{sender}'"
        f" to='{probe['from']}' id='{probe['id']}'><error type='cancel'>"
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )


class LivenessTests(ServiceTestCase):
    settings = MUCSettings(ping_after=60, ping_timeout=30)

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")

    def quiet(self, seconds: float = 75) -> list[domish.Element]:
        """Let time pass; returns the probes sent."""
        for _ in range(int(seconds)):
            self.clock.advance(1)
        return [s for s in self.take() if s.name == "iq"]

    def probe_for(self, probes: list[domish.Element], session: str) -> domish.Element:
        [probe] = [p for p in probes if p["to"] == session]
        return probe

    def test_quiet_sessions_are_pinged_from_the_room(self) -> None:
        probes = self.quiet()
        self.assertEqual(sorted(p["to"] for p in probes), [ALICE, BOB])
        for probe in probes:
            self.assertEqual((probe["type"], probe["from"]), ("get", ROOM))
            self.assertEqual(probe.firstChildElement().uri, NS_PING)
            self.assertGreater(len(probe["id"]), 12)

    def test_a_session_that_speaks_is_not_pinged(self) -> None:
        for _ in range(3):
            self.clock.advance(25)
            self.receive(message(BOB, id=None))
        probes = self.quiet(10)
        self.assertEqual([p["to"] for p in probes], [ALICE])

    def test_an_answer_keeps_it(self) -> None:
        for probe in self.quiet():
            self.receive(answer(probe))
        self.clock.advance(40)
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))
        self.assertEqual(self.take(), [])

    def test_a_gone_session_is_removed_with_333(self) -> None:
        probe = self.probe_for(self.quiet(), BOB)
        self.receive(answer(probe, "recipient-unavailable"))
        [seen] = [s for s in self.take() if s.name == "presence"]
        self.assertEqual((seen["to"], seen["type"]), (ALICE, "unavailable"))
        self.assertEqual(codes(seen), {307, 333})
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_no_answer_removes_it(self) -> None:
        self.quiet()
        self.clock.advance(31)
        out = self.take()
        self.assertIsNone(self.service.rooms.get(JID(ROOM)), [s.toXml() for s in out])

    def test_service_unavailable_is_asked_again_with_disco(self) -> None:
        probe = self.probe_for(self.quiet(), BOB)
        self.receive(answer(probe, "service-unavailable"))
        [disco] = self.take()
        self.assertEqual((disco["to"], disco.firstChildElement().uri), (BOB, NS_DISCO_INFO))
        self.receive(answer(disco))
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_service_unavailable_twice_is_gone(self) -> None:
        probe = self.probe_for(self.quiet(), BOB)
        self.receive(answer(probe, "service-unavailable"))
        [disco] = self.take()
        self.receive(answer(disco, "service-unavailable"))
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_an_endpoint_refusal_means_it_is_there(self) -> None:
        probe = self.probe_for(self.quiet(), BOB)
        self.receive(answer(probe, "forbidden"))
        self.assertIsNotNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_an_answer_from_someone_else_does_not_count(self) -> None:
        probe = self.probe_for(self.quiet(), BOB)
        self.receive(answer(probe, frm="mallory@example.org/x"))
        self.assertIsNone(self.service.rooms[JID(ROOM)].occupant_for(JID(BOB)))

    def test_the_link_going_away_stops_it(self) -> None:
        self.quiet()
        self.service.shutdown()
        self.take()
        self.clock.advance(600)
        self.assertEqual(self.take(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LivenessOffTests(ServiceTestCase):
    settings = MUCSettings(ping_after=0)

    def test_nobody_is_pinged(self) -> None:
        self.enter(ALICE, "alice")
        self.clock.advance(100_000)
        self.assertEqual(self.take(), [])
        self.receive(iq(ALICE, ROOM, f"<ping xmlns='{NS_PING}'/>"))
        self.assertEqual(self.take_one()["type"], "result")
