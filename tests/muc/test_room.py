"""Room rules, without any stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.muc.errors import (
    BadNick,
    BadRequest,
    BadRoomName,
    Forbidden,
    NickInUse,
    NickNotAcceptable,
    NotOccupant,
    RoomFull,
    RoomNameNotAcceptable,
)
from mucauth.muc.room import (
    HistoryEntry,
    HistoryOptions,
    Room,
    RoomConfig,
    prepare_nick,
    prepare_room_name,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROOM = JID("room@rooms.example.org")
ALICE = JID("alice@example.org/phone")
ALICE2 = JID("alice@example.org/laptop")
BOB = JID("bob@example.org/pc")
CAROL = JID("carol@example.org/pc")


def make_room(**config: object) -> Room:
    return Room(
        ROOM,
        creator=ALICE,
        created=T0,
        config=RoomConfig(**config),  # type: ignore[arg-type]
        history_size=5,
        salt=b"salt",
    )


class PrepareNickTests(SynchronousTestCase):
    def test_plain_nick_unchanged(self) -> None:
        self.assertEqual(prepare_nick("Alice", 64), "Alice")

    def test_resourceprep_normalizes(self) -> None:
        # U+FB01 (fi ligature) is NFKC-folded by resourceprep.
        self.assertEqual(prepare_nick("\ufb01sh", 64), "fish")

    def test_missing_nick_is_bad(self) -> None:
        self.assertRaises(BadNick, prepare_nick, None, 64)
        self.assertRaises(BadNick, prepare_nick, "", 64)

    def test_prohibited_characters_are_bad(self) -> None:
        self.assertRaises(BadNick, prepare_nick, "a\u0000b", 64)
        self.assertRaises(BadNick, prepare_nick, "a\u200eb", 64)  # LRM: prohibited

    def test_blank_nick_not_acceptable(self) -> None:
        self.assertRaises(NickNotAcceptable, prepare_nick, "   ", 64)

    def test_control_character_not_acceptable(self) -> None:
        # U+00AD is mapped away; U+0085 (NEL) is a control resourceprep lets through? Either
        # way it must not become part of a nick.
        with self.assertRaises((BadNick, NickNotAcceptable)):
            prepare_nick("a\u0085b", 64)

    def test_too_long(self) -> None:
        self.assertEqual(prepare_nick("x" * 8, 8), "x" * 8)
        self.assertRaises(NickNotAcceptable, prepare_nick, "x" * 9, 8)

    def test_huge_nick_refused_before_stringprep(self) -> None:
        self.assertRaises(NickNotAcceptable, prepare_nick, "x" * 1_000_000, 64)


class PrepareRoomNameTests(SynchronousTestCase):
    def test_nodeprep_lowercases(self) -> None:
        self.assertEqual(prepare_room_name("Lobby", 64), "lobby")

    def test_missing(self) -> None:
        self.assertRaises(BadRoomName, prepare_room_name, None, 64)
        self.assertRaises(BadRoomName, prepare_room_name, "", 64)

    def test_prohibited(self) -> None:
        self.assertRaises(BadRoomName, prepare_room_name, "a b", 64)
        self.assertRaises(BadRoomName, prepare_room_name, "a:b", 64)

    def test_too_long(self) -> None:
        self.assertRaises(RoomNameNotAcceptable, prepare_room_name, "r" * 65, 64)
        self.assertRaises(RoomNameNotAcceptable, prepare_room_name, "r" * 5000, 64)


class JoinLeaveTests(SynchronousTestCase):
    def test_creator_is_owner_and_moderator(self) -> None:
        room = make_room()
        result = room.join(ALICE, "alice")
        self.assertTrue(result.new_occupant)
        self.assertEqual(
            (result.occupant.affiliation, result.occupant.role), ("owner", "moderator")
        )

    def test_others_are_participants_without_affiliation(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        bob = room.join(BOB, "bob").occupant
        self.assertEqual((bob.affiliation, bob.role), ("none", "participant"))
        self.assertEqual(len(room), 2)
        self.assertIs(room.occupant("bob"), bob)
        self.assertIs(room.occupant_for(BOB), bob)

    def test_nick_of_another_bare_jid_conflicts(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        self.assertRaises(NickInUse, room.check_join, BOB, "alice")
        self.assertRaises(NickInUse, room.join, BOB, "alice")
        self.assertEqual(len(room), 1)

    def test_second_session_shares_the_nick(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        result = room.join(ALICE2, "alice")
        self.assertFalse(result.new_occupant)
        self.assertEqual(result.occupant.sessions, [ALICE, ALICE2])
        self.assertEqual(result.occupant.jid, ALICE2)
        self.assertEqual(len(room), 1)

    def test_same_session_twice_is_a_bad_request(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        self.assertRaises(BadRequest, room.join, ALICE, "other")

    def test_leave_last_session_removes_occupant(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.join(ALICE2, "alice")
        first = room.leave(ALICE)
        self.assertFalse(first.gone)
        second = room.leave(ALICE2)
        self.assertTrue(second.gone)
        self.assertTrue(room.is_empty)
        self.assertIsNone(room.occupant("alice"))

    def test_leave_by_non_occupant(self) -> None:
        self.assertRaises(NotOccupant, make_room().leave, BOB)

    def test_full_room_refuses_new_nick_but_not_new_session(self) -> None:
        room = make_room(max_occupants=1)
        room.join(ALICE, "alice")
        self.assertTrue(room.is_full)
        self.assertRaises(RoomFull, room.join, BOB, "bob")
        room.join(ALICE2, "alice")  # no new occupant

    def test_unlimited_room_is_never_full(self) -> None:
        room = make_room(max_occupants=0)
        for i in range(50):
            room.join(JID(f"u{i}@example.org/r"), f"u{i}")
        self.assertFalse(room.is_full)

    def test_owner_rejoining_later_is_still_owner(self) -> None:
        room = make_room()
        room.join(BOB, "bob")
        self.assertEqual(room.join(ALICE, "alice").occupant.affiliation, "owner")

    def test_clear_returns_everyone(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.join(BOB, "bob")
        self.assertEqual({o.nick for o in room.clear()}, {"alice", "bob"})
        self.assertTrue(room.is_empty)
        self.assertIsNone(room.occupant_for(ALICE))

    def test_iteration_is_a_snapshot(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.join(BOB, "bob")
        for occupant in room:
            room.leave(occupant.jid)
        self.assertTrue(room.is_empty)

    def test_room_jid_is_bare(self) -> None:
        room = Room(JID("r@s/x"), creator=ALICE, created=T0)
        self.assertEqual(room.jid.full(), "r@s")


class OccupantIdTests(SynchronousTestCase):
    def test_stable_per_bare_jid(self) -> None:
        room = make_room()
        self.assertEqual(room.occupant_id(ALICE), room.occupant_id(ALICE2))
        self.assertNotEqual(room.occupant_id(ALICE), room.occupant_id(BOB))

    def test_differs_between_rooms(self) -> None:
        a = Room(ROOM, creator=ALICE, created=T0)
        b = Room(ROOM, creator=ALICE, created=T0)
        self.assertNotEqual(a.occupant_id(ALICE), b.occupant_id(ALICE))

    def test_does_not_reveal_the_jid(self) -> None:
        self.assertNotIn("alice", make_room().occupant_id(ALICE))

    def test_occupant_carries_it(self) -> None:
        room = make_room()
        self.assertEqual(room.join(BOB, "bob").occupant.occupant_id, room.occupant_id(BOB))


class PresenceAndNickTests(SynchronousTestCase):
    def test_update_presence_keeps_payload(self) -> None:
        room = make_room()
        room.join(ALICE, "alice", ["away"])
        self.assertEqual(room.update_presence(ALICE, ["dnd"]).payload, ("dnd",))

    def test_update_presence_by_stranger(self) -> None:
        self.assertRaises(NotOccupant, make_room().update_presence, BOB, [])

    def test_change_nick_moves_every_session(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.join(ALICE2, "alice")
        old, occupant = room.change_nick(ALICE2, "al")
        self.assertEqual((old, occupant.nick), ("alice", "al"))
        self.assertIs(room.occupant("al"), occupant)
        self.assertIsNone(room.occupant("alice"))
        self.assertIs(room.occupant_for(ALICE), occupant)

    def test_change_nick_conflict_changes_nothing(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.join(BOB, "bob")
        self.assertRaises(NickInUse, room.change_nick, BOB, "alice")
        self.assertEqual(room.occupant_for(BOB).nick, "bob")  # type: ignore[union-attr]

    def test_change_to_same_nick_is_noop(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        self.assertEqual(room.change_nick(ALICE, "alice")[0], "alice")

    def test_change_nick_by_stranger(self) -> None:
        self.assertRaises(NotOccupant, make_room().change_nick, BOB, "x")


class SubjectTests(SynchronousTestCase):
    def test_moderator_sets_subject(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        subject = room.set_subject(ALICE, "Hello")
        self.assertEqual((subject.text, subject.nick), ("Hello", "alice"))
        self.assertEqual(room.subject, subject)

    def test_participant_may_not_by_default(self) -> None:
        room = make_room()
        room.join(BOB, "bob")
        self.assertRaises(Forbidden, room.set_subject, BOB, "mine")
        self.assertIsNone(room.subject)

    def test_participant_may_when_configured(self) -> None:
        room = make_room(occupants_may_change_subject=True)
        room.join(BOB, "bob")
        self.assertEqual(room.set_subject(BOB, "mine").text, "mine")

    def test_empty_subject_clears(self) -> None:
        room = make_room()
        room.join(ALICE, "alice")
        room.set_subject(ALICE, "x")
        room.set_subject(ALICE, "")
        self.assertIsNone(room.subject)

    def test_stranger_may_not(self) -> None:
        self.assertRaises(NotOccupant, make_room().set_subject, BOB, "x")


class OwnerTests(SynchronousTestCase):
    def test_only_owner(self) -> None:
        room = make_room()
        room.require_owner(ALICE2)  # the creator's bare JID, any session
        self.assertRaises(Forbidden, room.require_owner, BOB)


class JidVisibilityTests(SynchronousTestCase):
    def test_semi_anonymous_only_moderators_see(self) -> None:
        room = make_room()
        alice = room.join(ALICE, "alice").occupant
        bob = room.join(BOB, "bob").occupant
        self.assertTrue(room.sees_real_jids(alice))
        self.assertFalse(room.sees_real_jids(bob))

    def test_non_anonymous_everyone_sees(self) -> None:
        room = make_room(non_anonymous=True)
        bob = room.join(BOB, "bob").occupant
        self.assertTrue(room.sees_real_jids(bob))


def entry(minutes: int, chars: int = 10, text: str = "") -> HistoryEntry:
    return HistoryEntry(T0 + timedelta(minutes=minutes), "n", "id", text or str(minutes), chars)


class HistoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room = make_room()  # history_size=5
        for m in range(7):
            self.room.add_history(entry(m))
        self.now = T0 + timedelta(minutes=10)

    def payloads(self, **options: object) -> list[object]:
        return [
            e.payload
            for e in self.room.history(HistoryOptions(**options), self.now)  # type: ignore[arg-type]
        ]

    def test_bounded_to_history_size(self) -> None:
        self.assertEqual(self.payloads(), ["2", "3", "4", "5", "6"])

    def test_maxstanzas(self) -> None:
        self.assertEqual(self.payloads(max_stanzas=2), ["5", "6"])
        self.assertEqual(self.payloads(max_stanzas=0), [])

    def test_maxchars(self) -> None:
        self.assertEqual(self.payloads(max_chars=25), ["5", "6"])
        self.assertEqual(self.payloads(max_chars=0), [])

    def test_seconds(self) -> None:
        # now is minute 10: 300 s back is minute 5, inclusive.
        self.assertEqual(self.payloads(seconds=300), ["5", "6"])

    def test_since_is_exclusive(self) -> None:
        self.assertEqual(self.payloads(since=T0 + timedelta(minutes=4)), ["5", "6"])

    def test_limits_combine(self) -> None:
        self.assertEqual(self.payloads(max_stanzas=3, seconds=600, max_chars=15), ["6"])

    def test_zero_history_size_keeps_nothing(self) -> None:
        room = Room(ROOM, creator=ALICE, created=T0, history_size=0)
        room.add_history(entry(1))
        self.assertEqual(room.history(HistoryOptions(), self.now), [])

    def test_entries_snapshot(self) -> None:
        self.assertEqual(len(self.room.history_entries), 5)
