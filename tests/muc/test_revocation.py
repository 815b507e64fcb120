"""Revocation and re-checks in memory: who leaves, who stays, what the room hears, what the
gate is asked, and the periodic re-check's pace."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.authorize.base import Decision
from mucauth.muc.revocation import REVOKED_TEXT, RecheckResult
from mucauth.muc.service import MUCService
from tests.muc.support import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    NS_USER,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    item,
)

OTHER = "other@" + SERVICE


def reason_of(stanza: domish.Element) -> str | None:
    for x in stanza.elements(NS_USER, "x"):
        for it in x.elements(NS_USER, "item"):
            for reason in it.elements(NS_USER, "reason"):
                return str(reason)
    return None


class RevocationTestCase(ServiceTestCase):
    def setUp(self) -> None:
        self.forgotten: list[tuple[str, str | None]] = []
        self.removed: list[tuple[str, int]] = []
        self.service_options = {
            "forget_answers": lambda user, room: self.forgotten.append((user, room)),
            "on_removed": lambda cause, count: self.removed.append((cause, count)),
        }
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(ALICE2, "alice")
        self.enter(BOB, "bob")
        self.enter(CAROL, "carol")

    def unavailable(self, sent: list[domish.Element]) -> dict[tuple[str, str], domish.Element]:
        """(to, from) -> the unavailable presence."""
        return {
            (s["to"], s["from"]): s
            for s in sent
            if s.name == "presence" and s.getAttribute("type") == "unavailable"
        }

    def occupants(self, room: str = ROOM) -> list[str]:
        return sorted(o.nick for o in self.service.rooms[JID(room)])


class RevokeTests(RevocationTestCase):
    def test_every_session_leaves_with_307_and_the_reason_and_the_others_see_it(self) -> None:
        removed = self.service.revoke("alice@example.org", ROOM, "Left the course")
        self.assertEqual(removed, 1)
        gone = self.unavailable(self.take())
        self.assertEqual(
            set(gone),
            {(to, f"{ROOM}/alice") for to in (ALICE, ALICE2, BOB, CAROL)},
        )
        for presence in gone.values():
            self.assertIn(307, codes(presence))
            self.assertEqual(reason_of(presence), "Left the course")
        self.assertIn(110, codes(gone[(ALICE, f"{ROOM}/alice")]))
        self.assertEqual(self.occupants(), ["bob", "carol"])
        self.assertEqual(self.forgotten, [("alice@example.org", ROOM)])
        self.assertEqual(self.removed, [("revoke", 1)])

    def test_a_rejoin_asks_the_gate_again(self) -> None:
        self.service.revoke("alice@example.org", ROOM)
        self.take()
        calls = len(self.auth.calls)
        self.join(ALICE, "alice")
        self.assertEqual(len(self.auth.calls), calls + 1)
        self.auth.deny("no longer enrolled")
        [refusal] = self.take()
        self.assertEqual(refusal["type"], "error")

    def test_every_room_without_a_room(self) -> None:
        self.enter(ALICE, "alice", room=OTHER)
        self.take()
        self.assertEqual(self.service.revoke("alice@example.org"), 2)
        gone = self.unavailable(self.take())
        self.assertEqual(reason_of(gone[(BOB, f"{ROOM}/alice")]), REVOKED_TEXT)
        self.assertNotIn(JID(OTHER), self.service.rooms)  # it emptied, and was temporary
        self.assertEqual(self.forgotten, [("alice@example.org", None)])

    def test_nobody_to_remove(self) -> None:
        self.assertEqual(self.service.revoke("dave@example.org", ROOM), 0)
        self.assertEqual(self.service.revoke("bob@example.org", "nowhere@" + SERVICE), 0)
        self.assertEqual(self.unavailable(self.take()), {})
        self.assertEqual(self.removed, [])

    def test_a_join_being_decided_is_cancelled(self) -> None:
        self.join("dave@example.org/x", "dave")
        self.assertEqual(self.service.pending_checks, 1)
        self.service.revoke("dave@example.org", ROOM)
        self.assertEqual(self.service.pending_checks, 0)
        self.assertTrue(self.auth.calls[-1][1].called)  # the check was cancelled
        self.assertNotIn("dave", self.occupants())


class RecheckTests(RevocationTestCase):
    def answer(self, answers: dict[str, Decision]) -> None:
        """Answer the pending re-checks by nick."""
        for index in range(len(self.auth.calls) - 1, -1, -1):
            request, d = self.auth.calls[index]
            if request.action == "recheck" and not d.called and request.nick in answers:
                d.callback(answers[request.nick])

    def test_only_a_clear_no_removes(self) -> None:
        done = self.service.recheck(ROOM)
        requests = [r for r in self.auth.requests if r.action == "recheck"]
        self.assertEqual(sorted(r.nick for r in requests), ["alice", "bob", "carol"])
        self.assertEqual({r.room for r in requests}, {JID(ROOM)})
        self.answer(
            {
                "alice": Decision.deny("Not enrolled"),
                "bob": Decision.allow(),
                "carol": Decision.error("status", "HTTP 500"),
            }
        )
        result = self.successResultOf(done)
        self.assertEqual(result, RecheckResult(checked=3, removed=1, kept_on_error=1))
        self.assertEqual(self.occupants(), ["bob", "carol"])
        gone = self.unavailable(self.take())
        self.assertEqual(reason_of(gone[(BOB, f"{ROOM}/alice")]), REVOKED_TEXT)
        self.assertIn(307, codes(gone[(BOB, f"{ROOM}/alice")]))
        self.assertEqual(self.removed, [("recheck", 1)])
        self.assertEqual(self.forgotten, [("alice@example.org", ROOM)])

    def test_the_service_down_removes_nobody(self) -> None:
        done = self.service.recheck()
        self.answer({n: Decision.error("status", "HTTP 500") for n in ("alice", "bob", "carol")})
        self.assertEqual(self.successResultOf(done).removed, 0)
        self.assertEqual(self.occupants(), ["alice", "bob", "carol"])

    def test_by_user(self) -> None:
        done = self.service.recheck(user="bob@example.org")
        self.assertEqual([r.nick for r in self.auth.requests if r.action == "recheck"], ["bob"])
        self.answer({"bob": Decision.allow()})
        self.assertEqual(self.successResultOf(done).checked, 1)

    def test_a_yes_applies_the_new_standing(self) -> None:
        done = self.service.recheck(user="bob@example.org")
        self.answer({"bob": Decision.allow(affiliation="admin")})
        self.successResultOf(done)
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.occupant("bob").affiliation, "admin")  # type: ignore[union-attr]
        seen = [s for s in self.take() if s.name == "presence" and s["from"] == f"{ROOM}/bob"]
        self.assertEqual({item(s)["affiliation"] for s in seen}, {"admin"})

    def test_an_occupant_who_left_meanwhile_is_gone(self) -> None:
        done = self.service.recheck(user="bob@example.org")
        self.leave(BOB, "bob")
        self.answer({"bob": Decision.deny()})
        self.assertEqual(self.successResultOf(done), RecheckResult(checked=1))
        self.assertEqual(self.removed, [])

    def test_the_link_going_ends_the_recheck(self) -> None:
        done = self.service.recheck()
        self.service.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(done), RecheckResult(checked=3))

    def test_one_decision_event_per_recheck(self) -> None:
        events: list[dict[str, Any]] = []
        self.service.log.observer = events.append  # type: ignore[assignment]
        done = self.service.recheck(user="bob@example.org")
        self.answer({"bob": Decision.allow()})
        self.successResultOf(done)
        decisions = [e for e in events if e.get("mucauth_event") == "decision"]
        self.assertEqual([(e["action"], e["outcome"]) for e in decisions], [("recheck", "allow")])


class PeriodicTests(ServiceTestCase):
    def setUp(self) -> None:
        self.service_options = {"recheck_interval": 10.0}
        super().setUp()
        for n in range(5):
            self.enter(f"user{n}@example.org/r", f"user{n}")

    def rechecks(self) -> list[Any]:
        return [(r, d) for r, d in self.auth.calls if r.action == "recheck"]

    def test_each_occupant_once_a_period_spread_out(self) -> None:
        per_second = []
        for _ in range(10):
            before = len(self.rechecks())
            self.clock.advance(1)
            per_second.append(len(self.rechecks()) - before)
        self.assertEqual(sum(per_second), 5)
        self.assertLessEqual(max(per_second), 1)  # never a burst
        for _request, d in self.rechecks():
            d.callback(Decision.allow())
        for _ in range(10):
            self.clock.advance(1)
        self.assertEqual(len(self.rechecks()), 10)

    def test_a_no_removes_within_two_periods(self) -> None:
        for _ in range(20):
            self.clock.advance(1)
            for request, d in self.rechecks():
                if not d.called:
                    d.callback(Decision.deny() if request.nick == "user3" else Decision.allow())
        self.assertNotIn("user3", [o.nick for o in self.service.rooms[JID(ROOM)]])
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 4)

    def test_off_by_default(self) -> None:
        service = MUCService(self.auth, clock=self.clock)
        self.assertEqual(service._rechecker.interval, 0.0)
