"""Joining through the gate: what is asked, what is sent, in which order."""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import fail
from twisted.logger import ILogObserver, Logger
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, StaticAuthorizer
from mucauth.muc.service import DENY_TEXT, FAILURE_TEXT, MUCService
from mucauth.settings import ErrorCondition, MUCSettings, RoomDefaults
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    NS_MUC,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    error_of,
    error_text,
    item,
    message,
    occupant_id,
    presence,
    summary,
)

PASSWORD_JOIN = f"<x xmlns='{NS_MUC}'><password>hunter2</password></x>"


class AllowedJoinTests(ServiceTestCase):
    def test_gate_gets_the_request(self) -> None:
        self.join(ALICE, "alice", id="abc")
        [request] = self.auth.requests
        [pending] = self.service.pending.values()  # the join's id stays on the MUC side
        self.assertEqual(
            (request.user, request.room, request.nick, pending.stanza["id"], request.action),
            (JID(ALICE), JID(ROOM), "alice", "abc", "join"),
        )

    def test_nothing_happens_while_pending(self) -> None:
        self.join(ALICE, "alice")
        self.assertEqual(self.take(), [])
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(self.service.pending_checks, 1)

    def test_first_join_creates_room(self) -> None:
        self_presence, subject = self.enter(ALICE, "alice")
        self.assertEqual(summary(self_presence), ("presence", ROOM + "/alice", ALICE, None))
        self.assertEqual(codes(self_presence), {110, 201})
        self.assertEqual(self_presence.getAttribute("id"), "j1")  # the join's id, reflected
        it = item(self_presence)
        self.assertEqual((it["affiliation"], it["role"], it["jid"]), ("owner", "moderator", ALICE))
        self.assertIsNotNone(occupant_id(self_presence))
        self.assertEqual(summary(subject), ("message", ROOM, ALICE, "groupchat"))
        self.assertEqual(str(subject.subject), "")  # type: ignore[attr-defined]
        self.assertIn(JID(ROOM), self.service.rooms)
        self.assertEqual(self.service.pending_checks, 0)

    def test_second_joiner_sequence(self) -> None:
        self.enter(ALICE, "alice")
        out = self.enter(BOB, "bob")
        self.assertEqual(
            [summary(s) for s in out],
            [
                ("presence", ROOM + "/alice", BOB, None),  # existing occupants first
                ("presence", ROOM + "/bob", ALICE, None),  # the newcomer to the others
                ("presence", ROOM + "/bob", BOB, None),  # self-presence
                ("message", ROOM, BOB, "groupchat"),  # subject last
            ],
        )
        alice_to_bob, bob_to_alice, own, _ = out
        # Only bob's own answer carries his join's id: the others are not answers to anything.
        self.assertEqual([s.getAttribute("id") for s in out], [None, None, "j1", None])
        self.assertEqual(codes(alice_to_bob), set())
        self.assertFalse(item(alice_to_bob).hasAttribute("jid"))  # semi-anonymous
        self.assertEqual(item(bob_to_alice)["jid"], BOB)  # alice moderates
        self.assertEqual(codes(own), {110})
        self.assertEqual((item(own)["affiliation"], item(own)["role"]), ("none", "participant"))
        self.assertEqual(occupant_id(own), occupant_id(bob_to_alice))

    def test_join_without_muc_x_is_a_join(self) -> None:
        self.receive(presence(ALICE, ROOM + "/alice", muc=False))
        self.auth.allow()
        self.assertEqual(codes(self.take()[0]), {110, 201})

    def test_normalized_nick_gets_210(self) -> None:
        self.receive(presence(ALICE, ROOM + "/\ufb01sh"))
        self.assertEqual(self.auth.requests[0].nick, "fish")
        self.auth.allow()
        own = self.take()[0]
        self.assertEqual(own["from"], ROOM + "/fish")
        self.assertEqual(codes(own), {110, 201, 210})

    def test_room_name_is_nodeprepped(self) -> None:
        self.receive(presence(ALICE, "Room@" + SERVICE + "/alice"))
        self.assertEqual(self.auth.requests[0].room, JID(ROOM))

    def test_presence_payload_shown_password_never(self) -> None:
        self.enter(ALICE, "alice", inner=PASSWORD_JOIN + "<show>away</show>")
        out = self.enter(BOB, "bob")
        self.assertIn("away", out[0].toXml())
        for stanza in self.sent:
            self.assertNotIn("hunter2", stanza.toXml())

    def test_second_session_same_nick(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        out = self.enter(ALICE2, "alice")
        to = [s["to"] for s in out]
        # bob's presence to the new session, alice to bob, to the first session, self, subject
        self.assertEqual(to, [ALICE2, BOB, ALICE, ALICE2, ALICE2])
        self.assertEqual(codes(out[2]), {110})
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 2)

    def test_taken_nick_refused_without_asking(self) -> None:
        self.enter(ALICE, "alice")
        self.join(BOB, "alice", id="j2")
        self.assertEqual(self.auth.requests[-1].user, JID(ALICE))
        reply = self.take_one()
        self.assertEqual((reply["id"], reply["type"]), ("j2", "error"))
        self.assertEqual(error_of(reply), ("cancel", "conflict"))


class SynchronousAuthorizerTests(ServiceTestCase):
    def test_static_authorizer_answers_at_once(self) -> None:
        self.use_service(
            MUCService(StaticAuthorizer(frozenset({"alice@example.org"})), clock=self.clock)
        )
        self.join(ALICE, "alice")
        self.assertEqual(codes(self.take()[0]), {110, 201})
        self.join(ALICE2, "alice")
        self.assertEqual(codes(self.take()[1]), {110})
        self.join(BOB, "bob")
        self.assertEqual(error_of(self.take_one()), ("cancel", "forbidden"))
        self.assertEqual(self.service.pending_checks, 0)


class NonAnonymousTests(ServiceTestCase):
    settings = MUCSettings(rooms=RoomDefaults(non_anonymous=True))

    def test_status_100_and_jids_for_everyone(self) -> None:
        self.assertEqual(codes(self.enter(ALICE, "alice")[0]), {100, 110, 201})
        out = self.enter(BOB, "bob")
        self.assertEqual(item(out[0])["jid"], ALICE)
        self.assertEqual(codes(out[2]), {100, 110})


class HistoryTests(ServiceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        for i in range(3):
            self.receive(message(ALICE, body=f"msg{i}", id=f"m{i}"))
            self.clock.advance(60)
        self.take()

    def history(self, history: str = "") -> list[object]:
        inner = f"<x xmlns='{NS_MUC}'>{history}</x>" if history else ""
        out = self.enter(BOB, "bob", inner=inner)
        self.assertEqual(out[-1].subject is not None, True)  # type: ignore[attr-defined]
        return [m for m in out if m.name == "message" and m.body is not None]  # type: ignore[attr-defined]

    def test_history_with_delay_before_subject(self) -> None:
        msgs = self.history()
        self.assertEqual([str(m.body) for m in msgs], ["msg0", "msg1", "msg2"])  # type: ignore[attr-defined]
        first = msgs[0]
        self.assertEqual((first["from"], first["id"]), (ROOM + "/alice", "m0"))  # type: ignore[index]
        delay = first.delay  # type: ignore[attr-defined]
        self.assertEqual((delay["from"], delay["stamp"]), (ROOM, "2024-05-01T12:00:00Z"))
        self.assertIsNotNone(occupant_id(first))  # type: ignore[arg-type]

    def test_maxstanzas(self) -> None:
        self.assertEqual(len(self.history("<history maxstanzas='1'/>")), 1)

    def test_maxchars_zero(self) -> None:
        self.assertEqual(self.history("<history maxchars='0'/>"), [])

    def test_seconds(self) -> None:
        self.assertEqual(len(self.history("<history seconds='120'/>")), 2)

    def test_since(self) -> None:
        msgs = self.history("<history since='2024-05-01T12:00:30Z'/>")
        self.assertEqual(len(msgs), 2)

    def test_malformed_values_are_ignored(self) -> None:
        bad = "<history maxstanzas='lots' maxchars='-1' seconds='1e3' since='yesterday'/>"
        self.assertEqual(len(self.history(bad)), 3)

    def test_history_is_bounded(self) -> None:
        self.take()
        for i in range(30):
            self.receive(message(ALICE, body=f"x{i}"))
        self.take()
        self.assertEqual(len(self.history()), RoomDefaults().history_length)


class RefusalTests(ServiceTestCase):
    def refused(self, decision: Decision | None = None) -> object:
        self.join(CAROL, "carol", id="j7", inner=PASSWORD_JOIN)
        if decision is None:
            self.auth.deny("not on the roster")
        else:
            self.auth.answer(decision)
        return self.take_one()

    def test_error_presence_shape(self) -> None:
        reply = self.refused()
        self.assertEqual(summary(reply), ("presence", ROOM + "/carol", CAROL, "error"))  # type: ignore[arg-type]
        self.assertEqual(reply["id"], "j7")  # type: ignore[index]
        [x] = list(reply.elements(NS_MUC, "x"))  # type: ignore[attr-defined]
        self.assertEqual(list(x.elements()), [])
        self.assertEqual(error_of(reply), ("cancel", "forbidden"))  # type: ignore[arg-type]
        self.assertEqual(reply.error["by"], ROOM)  # type: ignore[attr-defined]
        self.assertEqual(error_text(reply), DENY_TEXT)  # type: ignore[arg-type]
        self.assertNotIn("hunter2", reply.toXml())  # type: ignore[attr-defined]
        self.assertNotIn("roster", reply.toXml())  # type: ignore[attr-defined]

    def test_refusal_leaves_nothing_behind(self) -> None:
        self.refused()
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(self.service.pending_checks, 0)
        # the next allowed joiner creates the room and owns it
        own = self.enter(BOB, "bob")[0]
        self.assertEqual(codes(own), {110, 201})
        self.assertEqual(item(own)["affiliation"], "owner")

    def test_refused_in_existing_room_others_see_nothing(self) -> None:
        self.enter(ALICE, "alice")
        reply = self.refused()
        self.assertEqual(reply["to"], CAROL)  # type: ignore[index]
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 1)

    def test_error_decision_uses_failure_condition(self) -> None:
        reply = self.refused(Decision.error("timeout", "no answer in 5 s"))
        self.assertEqual(error_of(reply), ("wait", "service-unavailable"))  # type: ignore[arg-type]
        self.assertEqual(error_text(reply), FAILURE_TEXT)  # type: ignore[arg-type]

    def test_authorizer_failure_is_an_error_decision(self) -> None:
        self.auth.authorize = lambda request: fail(RuntimeError("boom"))  # type: ignore[method-assign]
        self.join(CAROL, "carol")
        self.assertEqual(error_of(self.take_one()), ("wait", "service-unavailable"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_authorizer_raising_is_an_error_decision(self) -> None:
        def explode(request: object) -> None:
            raise RuntimeError("sync boom")

        self.auth.authorize = explode  # type: ignore[assignment]
        self.join(CAROL, "carol")
        self.assertEqual(error_of(self.take_one()), ("wait", "service-unavailable"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.service.pending_checks, 0)

    def test_decision_hook(self) -> None:
        heard: list[tuple[object, Decision]] = []
        self.use_service(
            MUCService(self.auth, clock=self.clock, on_decision=lambda r, d: heard.append((r, d)))
        )
        self.refused()
        [(request, decision)] = heard
        self.assertEqual((request.nick, decision.outcome), ("carol", "deny"))  # type: ignore[attr-defined]

    def test_broken_hook_does_not_break_joins(self) -> None:
        def broken(request: object, decision: object) -> None:
            raise ValueError("hook bug")

        self.use_service(MUCService(self.auth, clock=self.clock, on_decision=broken))
        self.assertEqual(error_of(self.refused()), ("cancel", "forbidden"))  # type: ignore[arg-type]
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_one_log_event_per_decision(self) -> None:
        events: list[dict[str, object]] = []
        self.service.log = Logger(observer=cast(ILogObserver, events.append))
        self.refused()
        [event] = events
        self.assertEqual(
            (event["outcome"], event["user"], event["room"], event["nick"], event["reason"]),
            ("deny", CAROL, ROOM, "carol", "not on the roster"),
        )
        self.assertNotIn("hunter2", repr(event))


class ConfiguredRefusalTests(ServiceTestCase):
    service_options = {
        "deny_condition": ErrorCondition("auth", "not-authorized"),
        "failure_condition": ErrorCondition("cancel", "internal-server-error"),
        "show_reason": True,
    }

    def test_deny_condition_and_reason(self) -> None:
        self.join(CAROL, "carol")
        self.auth.deny("Not on the course roster")
        reply = self.take_one()
        self.assertEqual(error_of(reply), ("auth", "not-authorized"))
        self.assertEqual(error_text(reply), "Not on the course roster")

    def test_empty_reason_falls_back(self) -> None:
        self.join(CAROL, "carol")
        self.auth.deny("")
        self.assertEqual(error_text(self.take_one()), DENY_TEXT)

    def test_failure_condition(self) -> None:
        self.join(CAROL, "carol")
        self.auth.answer(Decision.error("status", "HTTP 500"))
        reply = self.take_one()
        self.assertEqual(error_of(reply), ("cancel", "internal-server-error"))
        self.assertEqual(error_text(reply), FAILURE_TEXT)  # the error reason is for logs only
