"""What a joining session sends the room before its join is decided waits for the decision."""

from __future__ import annotations

from mucauth.authorize.base import Decision
from mucauth.muc.join import MAX_HELD
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    PING,
    ROOM,
    ServiceTestCase,
    error_of,
    iq,
    message,
    presence,
)

OWNER_GET = "<query xmlns='http://jabber.org/protocol/muc#owner'/>"
DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"


class HeldBehindTheJoinTests(ServiceTestCase):
    def test_owner_form_asked_right_after_the_join_that_creates_the_room(self) -> None:
        """Clients ask for the form without waiting for the 201: answered once in."""
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="form"))
        self.assertEqual(self.take(), [], "nothing is answered before the decision")
        self.auth.allow()
        out = self.take()
        self.assertEqual([s.name for s in out], ["presence", "message", "iq"])
        answer = out[-1]
        self.assertEqual((answer["id"], answer["type"]), ("form", "result"))
        self.assertIn("jabber:x:data", answer.toXml())

    def test_several_are_answered_in_their_order(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, DISCO_INFO, id="q1"))
        self.receive(iq(ALICE, ROOM + "/alice", PING, id="q2"))
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="q3"))
        self.auth.allow()
        answers = [s for s in self.take() if s.name == "iq"]
        self.assertEqual(
            [(s["id"], s["type"]) for s in answers], [(f"q{n}", "result") for n in (1, 2, 3)]
        )

    def test_a_refused_join_refuses_what_it_held_with_the_same_error(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="form"))
        self.receive(message(ALICE, id="m"))
        self.auth.deny("no")
        join, form, msg = self.take()
        self.assertEqual(error_of(join), ("cancel", "forbidden"))
        self.assertEqual(
            (form.name, form["id"], error_of(form)), ("iq", "form", ("cancel", "forbidden"))
        )
        self.assertEqual(
            (msg.name, msg["id"], error_of(msg)), ("message", "m", ("cancel", "forbidden"))
        )

    def test_a_failed_check_refuses_them_as_it_refuses_the_join(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="form"))
        self.auth.answer(Decision.error("status", "HTTP 500"))
        join, form = self.take()
        self.assertEqual(error_of(form), error_of(join))
        self.assertEqual(error_of(form), ("wait", "service-unavailable"))

    def test_a_join_refused_after_the_allow_refuses_them_too(self) -> None:
        self.enter(BOB, "sam")
        self.receive(presence(BOB, ROOM + "/sam", type="unavailable"))
        self.take()
        self.join(CAROL, "sam", id="c")
        self.join(ALICE, "sam", id="a")
        self.receive(iq(ALICE, ROOM, DISCO_INFO, id="q"))
        self.auth.allow(index=-2)  # carol takes the nick first
        self.take()
        self.auth.allow()
        join, query = self.take()
        self.assertEqual((join["id"], error_of(join)), ("a", ("cancel", "conflict")))
        self.assertEqual((query["id"], error_of(query)), ("q", ("cancel", "conflict")))

    def test_a_cancelled_join_lets_them_through_as_from_a_stranger(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="form"))
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        [answer] = self.take()
        self.assertEqual((answer["id"], error_of(answer)), ("form", ("cancel", "item-not-found")))

    def test_only_the_joining_session_waits(self) -> None:
        self.enter(BOB, "bob")
        self.join(ALICE, "alice")
        self.receive(iq(BOB, ROOM, DISCO_INFO, id="bob-q"))
        self.receive(iq(CAROL, ROOM, DISCO_INFO, id="carol-q"))
        self.assertEqual(sorted(s["id"] for s in self.take()), ["bob-q", "carol-q"])

    def test_other_rooms_do_not_wait(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, "other@rooms.example.org", DISCO_INFO, id="elsewhere"))
        [answer] = self.take()
        self.assertEqual(error_of(answer), ("cancel", "item-not-found"))

    def test_an_occupant_changing_nick_is_not_held(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(presence(ALICE, ROOM + "/alicia", id="n"))  # a gated nick change
        self.assertEqual(len(self.auth.calls), 2)
        self.receive(message(ALICE, id="m"))
        self.assertEqual(sorted(s["to"] for s in self.take()), [ALICE])

    def test_responses_and_errors_are_not_held(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, PING, type="result", id="r"))
        self.receive(message(ALICE, type="error", id="e"))
        self.auth.allow()
        self.assertEqual([s.name for s in self.take()], ["presence", "message"])

    def test_at_most_max_held(self) -> None:
        self.join(ALICE, "alice")
        for n in range(MAX_HELD + 1):
            self.receive(iq(ALICE, ROOM, DISCO_INFO, id=f"q{n}"))
        [refused] = self.take()
        self.assertEqual(
            (refused["id"], error_of(refused)), (f"q{MAX_HELD}", ("wait", "resource-constraint"))
        )
        self.auth.allow()
        self.assertEqual(len([s for s in self.take() if s.name == "iq"]), MAX_HELD)

    def test_shutdown_answers_them(self) -> None:
        self.join(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, OWNER_GET, id="form"))
        self.service.shutdown()
        join, form = self.take()
        self.assertEqual(error_of(form), error_of(join))
        self.assertEqual(form["id"], "form")

    def test_a_second_identical_join_still_joins_the_pending_one(self) -> None:
        self.join(ALICE, "alice", id="a")
        self.receive(presence(ALICE, ROOM + "/alice", id="b"))
        self.auth.allow()
        self.assertEqual(
            [s.name for s in self.take()], ["presence", "message"], "presences are never held"
        )
