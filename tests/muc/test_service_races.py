"""What happens while the gate thinks, under load, on bad input, at shutdown and link loss."""

from __future__ import annotations

import warnings
from typing import NoReturn

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.muc.room import Room
from mucauth.muc.service import MUCService
from mucauth.settings import MUCSettings, RoomDefaults
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    NS_MUC,
    PING,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    error_of,
    error_text,
    iq,
    item,
    message,
    presence,
)


class PendingTests(ServiceTestCase):
    def test_other_users_and_rooms_not_blocked(self) -> None:
        self.join(CAROL, "carol")  # left pending
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob", room="other@" + SERVICE)
        self.assertEqual(self.service.pending_checks, 1)

    def test_leave_while_pending_cancels(self) -> None:
        self.join(CAROL, "carol")
        self.receive(presence(CAROL, ROOM + "/carol", type="unavailable"))
        self.assertEqual(self.auth.cancelled, [self.auth.requests[0]])
        self.assertEqual(self.take(), [])
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(dict(self.service.rooms), {})

    def test_answer_after_leaving_is_ignored(self) -> None:
        inner: Deferred[Decision] = Deferred()

        def slow(request: JoinRequest) -> Deferred[Decision]:
            # An authorizer whose own work goes on after the caller gave up.
            outer: Deferred[Decision] = Deferred()
            inner.addCallback(outer.callback)
            return outer

        self.auth.authorize = slow  # type: ignore[method-assign]
        self.join(CAROL, "carol")
        self.receive(presence(CAROL, ROOM + "/carol", type="unavailable"))
        inner.callback(Decision.allow())
        self.assertEqual(self.take(), [])
        self.assertEqual(dict(self.service.rooms), {})
        self.flushLoggedErrors()  # outer was already cancelled: the authorizer's problem

    def test_message_while_pending_waits_for_the_join(self) -> None:
        self.enter(ALICE, "alice")
        self.join(CAROL, "carol")
        self.receive(message(CAROL, id="early"))
        self.assertEqual(self.take(), [])
        self.auth.allow()
        out = self.take()
        reflected = [s for s in out if s.name == "message" and s.getAttribute("id") == "early"]
        self.assertEqual(sorted(m["to"] for m in reflected), [ALICE, CAROL])
        self.assertEqual(out[-1], reflected[-1], "the message comes after the join sequence")

    def test_duplicate_join_coalesced(self) -> None:
        self.join(CAROL, "carol", id="a")
        self.join(CAROL, "carol", id="b")
        self.assertEqual(len(self.auth.calls), 1)
        self.auth.allow()
        out = self.take()
        self.assertEqual(len([p for p in out if p.name == "presence"]), 1)
        self.assertEqual(len(out), 2)  # one self-presence, one subject

    def test_other_nick_while_pending(self) -> None:
        self.join(CAROL, "carol")
        self.join(CAROL, "caroline", id="j2")
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("j2", ("modify", "not-acceptable")))

    def test_same_nick_race_second_gets_conflict(self) -> None:
        self.join(BOB, "sam", id="b")
        self.join(CAROL, "sam", id="c")
        self.assertEqual(len(self.auth.calls), 2)
        self.auth.allow(index=0)
        self.take()
        self.auth.allow(index=1)
        reply = self.take_one()
        self.assertEqual((reply["to"], reply["id"]), (CAROL, "c"))
        self.assertEqual(error_of(reply), ("cancel", "conflict"))
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 1)

    def test_room_filled_while_pending(self) -> None:
        self.service.settings = MUCSettings(rooms=RoomDefaults(max_users=1))
        self.join(BOB, "bob")
        self.join(CAROL, "carol")
        self.auth.allow(index=0)
        self.take()
        self.auth.allow(index=1)
        self.assertEqual(error_of(self.take_one()), ("wait", "service-unavailable"))

    def test_room_destroyed_while_pending(self) -> None:
        self.enter(ALICE, "alice")
        self.join(CAROL, "carol")
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        self.assertEqual(dict(self.service.rooms), {})
        self.take()
        self.auth.allow()
        own = self.take()[0]
        self.assertEqual(codes(own), {110, 201})
        self.assertEqual(item(own)["affiliation"], "owner")

    def test_deny_after_room_destroyed(self) -> None:
        self.enter(ALICE, "alice")
        self.join(CAROL, "carol")
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        self.take()
        self.auth.deny()
        self.assertEqual(error_of(self.take_one()), ("cancel", "forbidden"))
        self.assertEqual(dict(self.service.rooms), {})

    def test_allow_after_other_session_joined(self) -> None:
        self.join(ALICE, "alice", id="a1")
        self.join(ALICE2, "alice", id="a2")
        self.auth.allow(index=0)
        self.auth.allow(index=1)
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.occupant("alice").sessions, [JID(ALICE), JID(ALICE2)])  # type: ignore[union-attr]


class LimitTests(ServiceTestCase):
    settings = MUCSettings(max_pending_checks=2, max_pending_per_user=1)

    def test_overload_reported_to_hook(self) -> None:
        heard: list[tuple[JoinRequest, Decision]] = []
        self.use_service(
            MUCService(
                self.auth,
                self.settings,
                clock=self.clock,
                on_decision=lambda r, d: heard.append((r, d)),
            )
        )
        self.join(ALICE, "alice")
        self.join(ALICE2, "alice2", room="other@" + SERVICE)
        self.take()
        [(request, decision)] = heard
        self.assertEqual(
            (request.room, decision.outcome, decision.kind),
            (JID("other@" + SERVICE), "error", "overload"),
        )

    def test_service_wide_limit(self) -> None:
        self.join(ALICE, "alice")
        self.join(BOB, "bob")
        self.join(CAROL, "carol", id="c")
        self.assertEqual(len(self.auth.calls), 2)
        reply = self.take_one()
        self.assertEqual((reply["id"], error_of(reply)), ("c", ("wait", "resource-constraint")))
        self.auth.allow(index=0)
        self.take()
        self.join(CAROL, "carol")
        self.assertEqual(len(self.auth.calls), 3)

    def test_per_user_limit(self) -> None:
        self.join(ALICE, "alice")
        self.join(ALICE2, "alice2", room="other@" + SERVICE)
        self.assertEqual(error_of(self.take_one()), ("wait", "resource-constraint"))
        self.assertEqual(len(self.auth.calls), 1)

    def test_cancelled_checks_free_their_slot(self) -> None:
        self.join(ALICE, "alice")
        self.receive(presence(ALICE, ROOM + "/alice", type="unavailable"))
        self.join(ALICE, "alice")
        self.assertEqual(len(self.auth.calls), 2)
        self.assertEqual(self.take(), [])


BAD_NICK = "x" * 65
MALFORMED: list[tuple[str, str, tuple[str, str] | None]] = [
    ("service presence", presence(ALICE, SERVICE), ("modify", "jid-malformed")),
    ("no nick", presence(ALICE, ROOM), ("modify", "jid-malformed")),
    ("bad room", presence(ALICE, "a b@" + SERVICE + "/n"), ("modify", "jid-malformed")),
    ("long room", presence(ALICE, "r" * 70 + "@" + SERVICE + "/n"), ("cancel", "not-acceptable")),
    ("long nick", presence(ALICE, ROOM + "/" + BAD_NICK), ("cancel", "not-acceptable")),
    ("huge nick", presence(ALICE, ROOM + "/" + "y" * 100_000), ("cancel", "not-acceptable")),
    ("blank nick", presence(ALICE, ROOM + "/   "), ("cancel", "not-acceptable")),
    ("prohibited nick", presence(ALICE, ROOM + "/a\u200eb"), ("modify", "jid-malformed")),
    (
        "unknown presence type",
        presence(ALICE, ROOM + "/n", type="bogus"),
        ("modify", "bad-request"),
    ),
    ("subscribe", presence(ALICE, ROOM + "/n", type="subscribe"), None),
    ("probe", presence(ALICE, ROOM, type="probe"), None),
    ("error presence", presence(ALICE, ROOM + "/n", type="error"), None),
    ("unavailable to bad room", presence(ALICE, "a b@" + SERVICE, type="unavailable"), None),
    ("no from", f"<presence xmlns='jabber:component:accept' to='{ROOM}/n'/>", None),
    ("no to", f"<presence xmlns='jabber:component:accept' from='{ALICE}'/>", None),
    ("bad from", presence("a b@example.org/x", ROOM + "/n"), None),
    ("bad domain", presence(ALICE, "room@bad domain/n"), None),
    ("empty iq", iq(ALICE, SERVICE, ""), ("modify", "bad-request")),
    ("iq result", iq(ALICE, SERVICE, "", type="result"), None),
    ("iq error", iq(ALICE, SERVICE, PING, type="error"), None),
    ("iq bogus type", iq(ALICE, SERVICE, PING, type="bogus"), ("modify", "bad-request")),
    ("unknown ns", iq(ALICE, SERVICE, "<q xmlns='urn:x'/>"), ("cancel", "service-unavailable")),
    (
        "register service",
        iq(ALICE, SERVICE, "<query xmlns='jabber:iq:register'/>"),
        ("cancel", "feature-not-implemented"),
    ),
    ("iq to unknown room", iq(ALICE, ROOM, "<q xmlns='urn:x'/>"), ("cancel", "item-not-found")),
    ("iq bad nick", iq(ALICE, ROOM + "/   ", PING), ("cancel", "not-acceptable")),
    ("iq bad room", iq(ALICE, "a b@" + SERVICE, PING), ("modify", "jid-malformed")),
    ("message error", message(ALICE, type="error"), None),
    (
        "message to service",
        message(ALICE, to=SERVICE, type="chat"),
        ("cancel", "service-unavailable"),
    ),
    ("message bad room", message(ALICE, to="a b@" + SERVICE), ("modify", "jid-malformed")),
    (
        "message bad nick",
        message(ALICE, to=ROOM + "/   ", type="chat"),
        ("cancel", "not-acceptable"),
    ),
    ("no type message", message(ALICE, to=ROOM, type=""), ("cancel", "feature-not-implemented")),
]


class MalformedInputTests(ServiceTestCase):
    def test_corpus(self) -> None:
        for label, xml, expected in MALFORMED:
            self.receive(xml)
            out = self.take()
            if expected is None:
                self.assertEqual(out, [], label)
            else:
                self.assertEqual(len(out), 1, label)
                self.assertEqual(error_of(out[0]), expected, label)
                self.assertEqual(out[0]["type"], "error", label)
        self.assertEqual(self.auth.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_error_replies_never_echo_payload(self) -> None:
        join = f"<x xmlns='{NS_MUC}'><password>hunter2</password></x>"
        self.receive(presence(ALICE, ROOM + "/   ", inner=join, muc=False))
        self.assertNotIn("hunter2", self.take_one().toXml())

    def test_unexpected_exception_is_internal_server_error(self) -> None:
        self.enter(ALICE, "alice")

        def broken(*args: object, **kwargs: object) -> NoReturn:
            raise RuntimeError("bug")

        self.service.rooms[JID(ROOM)].update_presence = broken  # type: ignore[method-assign]
        self.receive(presence(ALICE, ROOM + "/alice", id="u1"))
        reply = self.take_one()
        self.assertEqual(
            (reply["id"], error_of(reply)), ("u1", ("cancel", "internal-server-error"))
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_bug_completing_a_join_is_internal_server_error(self) -> None:
        original = Room.join

        def broken(self: Room, *args: object, **kw: object) -> None:
            raise RuntimeError("bug")

        Room.join = broken  # type: ignore[assignment,method-assign]
        self.addCleanup(setattr, Room, "join", original)
        self.join(ALICE, "alice")
        self.auth.allow()
        self.assertEqual(error_of(self.take_one()), ("cancel", "internal-server-error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ShutdownTests(ServiceTestCase):
    def test_shutdown_tells_everyone_332(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        self.join(CAROL, "carol", id="c")
        self.service.shutdown()
        out = self.take()
        notices = [p for p in out if p.getAttribute("type") == "unavailable"]
        self.assertEqual(sorted(p["to"] for p in notices), [ALICE, BOB])
        for p in notices:
            self.assertEqual(codes(p), {110, 332})
            self.assertEqual(p["from"].split("/")[0], ROOM)
        [refusal] = [p for p in out if p.getAttribute("type") == "error"]
        self.assertEqual((refusal["to"], refusal["id"]), (CAROL, "c"))
        self.assertEqual(error_of(refusal), ("wait", "service-unavailable"))
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(self.auth.cancelled, [self.auth.requests[-1]])


class ConnectionLostTests(ServiceTestCase):
    def lose_link(self) -> None:
        with warnings.catch_warnings():  # Wokkel's StreamManager uses compat.itervalues
            warnings.filterwarnings("ignore", message=".*itervalues", category=DeprecationWarning)
            self.manager._disconnected(Failure(ConnectionError("gone")))

    def reconnect(self) -> None:
        self.manager._connected(self.manager.stub.xmlstream)
        self.manager._authd(self.manager.stub.xmlstream)

    def test_rooms_forgotten_and_checks_cancelled(self) -> None:
        self.enter(ALICE, "alice")
        self.join(CAROL, "carol")
        self.lose_link()
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(len(self.auth.cancelled), 1)
        self.assertEqual(self.take(), [])  # nothing can be written while the link is down

    def test_everyone_hears_it_once_the_link_is_back(self) -> None:
        """Nobody is left outside a room silently: occupants get 332, pending joins an error,
        first thing on the new stream."""
        self.enter(ALICE, "alice")
        self.enter(ALICE2, "alice")
        self.enter(BOB, "bob")
        self.join(CAROL, "carol", id="c")
        self.lose_link()
        self.reconnect()
        out = self.take()
        notices = [p for p in out if p.getAttribute("type") == "unavailable"]
        self.assertEqual(sorted(p["to"] for p in notices), sorted([ALICE, ALICE2, BOB]))
        for p in notices:
            self.assertEqual(codes(p), {110, 332})
        [refusal] = [p for p in out if p.getAttribute("type") == "error"]
        self.assertEqual((refusal["to"], refusal["id"]), (CAROL, "c"))
        self.assertEqual(error_of(refusal), ("wait", "service-unavailable"))
        self.assertIn("lost its connection", error_text(refusal) or "")
        self.assertEqual(len(out), 4)
        self.lose_link()
        self.reconnect()
        self.assertEqual(self.take(), [])  # told once

    def test_after_reconnect_self_ping_says_rejoin(self) -> None:
        self.enter(ALICE, "alice")
        self.lose_link()
        self.reconnect()
        [notice] = self.take()
        self.assertEqual(codes(notice), {110, 332})
        self.receive(iq(ALICE, ROOM + "/alice", PING))
        out = self.take()
        self.assertEqual([error_of(s) for s in out], [("cancel", "not-acceptable")])
