"""What every room store does, whatever keeps it: one test body, run on each implementation.

A class mixes ``RoomStoreContract`` into a trial ``TestCase`` and says how to make an open store;
``make_store`` may return the store or a Deferred of it. Writes are not waited for by their
callers, so the tests ``flush()`` before they read (reads also wait for earlier writes).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from zope.interface.verify import verifyObject

from mucauth.store import HistoryRecord, IRoomStore, RoomRecord, StoreError, Tombstone

ROOM = "maths@rooms.example.org"
OTHER = "physics@rooms.example.org"
ALICE = "alice@example.org"
BOB = "bob@example.org"

CONFIG = {
    "roomname": "Maths",
    "roomdesc": "Théorèmes et café ☕",
    "persistentroom": True,
    "membersonly": False,
    "historylength": 20,
    "maxusers": None,
    "roomowners": ["alice@example.org"],
    "nested": {"ratio": 0.5, "list": [1, "two", {"three": 3}]},
}


def message(n: int, *, ts: float | None = None, room: str = ROOM) -> HistoryRecord:
    return HistoryRecord(
        stanza_id=f"s{n}",
        timestamp=1_700_000_000.0 + n if ts is None else ts,
        nick=f"nick{n}",
        sender=ALICE,
        occupant_id=f"occ{n}" if n % 2 else None,
        xml=f"<message xmlns='jabber:client' type='groupchat' from='{room}/nick{n}'>"
        f"<body>message {n} ✓</body></message>",
    )


def save(store: Any, jid: str = ROOM, **kw: Any) -> None:
    values: dict[str, Any] = {
        "config": CONFIG,
        "name": "Maths",
        "public": True,
        "subject": "Today: limits",
        "subject_nick": "alice",
    }
    values.update(kw)
    config = values.pop("config")
    store.save_room(jid, config, **values)


if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase as _Base
else:
    _Base = object


class RoomStoreContract(_Base):
    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> Any:
        super().setUp()
        d = maybeDeferred(self.make_store)
        d.addCallback(self._opened)
        return d

    def _opened(self, store: Any) -> None:
        self.store = store
        self.addCleanup(store.close)

    @inlineCallbacks
    def load(self, jid: str = ROOM, history: int = 100) -> Generator[Any, Any, RoomRecord | None]:
        yield self.store.flush()
        record = yield self.store.load_room(jid, history)
        return record

    def test_provides_interface(self) -> None:
        verifyObject(IRoomStore, self.store)

    @inlineCallbacks
    def test_unknown_room_is_none(self) -> Generator[Any, Any, None]:
        self.assertIsNone((yield self.load("nobody@rooms.example.org")))

    @inlineCallbacks
    def test_room_round_trip(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.store.set_affiliation(ROOM, BOB, "outcast")
        for n in range(3):
            self.store.append_message(ROOM, message(n), 10)
        record = yield self.load()
        self.assertEqual(
            record,
            RoomRecord(
                jid=ROOM,
                config=CONFIG,
                name="Maths",
                public=True,
                subject="Today: limits",
                subject_nick="alice",
                created=record.created,
                affiliations={ALICE: "owner", BOB: "outcast"},
                history=(message(0), message(1), message(2)),
            ),
        )
        self.assertGreater(record.created, 0)

    @inlineCallbacks
    def test_save_is_an_upsert_that_keeps_created(self) -> Generator[Any, Any, None]:
        save(self.store)
        first = yield self.load()
        save(self.store, config={"roomname": "Algebra"}, name="Algebra", public=False)
        save(self.store, config={"roomname": "Calculus"}, name="Calculus", subject="")
        second = yield self.load()
        self.assertEqual(second.config, {"roomname": "Calculus"})
        self.assertEqual((second.name, second.public, second.subject), ("Calculus", True, ""))
        self.assertEqual(second.created, first.created)

    @inlineCallbacks
    def test_a_save_keeps_affiliations_and_history(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.store.append_message(ROOM, message(1), 10)
        save(self.store, subject="new subject", subject_nick="bob")
        record = yield self.load()
        self.assertEqual(record.affiliations, {ALICE: "owner"})
        self.assertEqual(record.history, (message(1),))
        self.assertEqual((record.subject, record.subject_nick), ("new subject", "bob"))

    @inlineCallbacks
    def test_the_subject_time_goes_and_comes_with_the_subject(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.assertIsNone((yield self.load()).subject_time)  # none given: not known
        save(self.store, subject="Week 3", subject_time=1_714_564_800.25)
        self.assertEqual((yield self.load()).subject_time, 1_714_564_800.25)
        save(self.store, subject="", subject_nick="", subject_time=None)
        self.assertIsNone((yield self.load()).subject_time)

    @inlineCallbacks
    def test_bury_removes_the_room_and_leaves_its_tombstone(self) -> Generator[Any, Any, None]:
        save(self.store)
        save(self.store, OTHER)
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.store.append_message(ROOM, message(1), 10)
        self.store.bury_room(ROOM, OTHER, "Moved", 2_000.0)
        self.assertIsNone((yield self.load()))
        self.assertEqual((yield self.store.room_jids()), [OTHER])
        self.assertEqual(
            (yield self.store.tombstones(1_000.0)), [Tombstone(ROOM, OTHER, "Moved", 2_000.0)]
        )
        self.assertEqual((yield self.store.tombstones(2_000.0)), [])  # expired at that moment
        summaries = yield self.store.list_rooms(None, 10)
        self.assertEqual([s.jid for s in summaries], [OTHER])  # not a room: not counted
        self.assertFalse((yield self.store.has_room(ROOM)))

    @inlineCallbacks
    def test_a_new_burial_replaces_the_tombstone_and_a_delete_lifts_it(
        self,
    ) -> Generator[Any, Any, None]:
        self.store.bury_room(ROOM, "", "", 2_000.0)
        self.store.bury_room(ROOM, OTHER, "again", 3_000.0)
        self.store.bury_room(OTHER, "", "", 1_500.0)
        found = yield self.store.tombstones(0.0)
        self.assertEqual(
            found, [Tombstone(ROOM, OTHER, "again", 3_000.0), Tombstone(OTHER, "", "", 1_500.0)]
        )
        self.store.delete_room(ROOM)
        self.assertEqual([t.jid for t in (yield self.store.tombstones(0.0))], [OTHER])

    @inlineCallbacks
    def test_expired_tombstones_are_pruned(self) -> Generator[Any, Any, None]:
        self.store.bury_room(ROOM, "", "", 2_000.0)
        self.store.bury_room(OTHER, "", "", 1_000.0)
        self.assertEqual((yield self.store.prune_tombstones(1_000.0)), 1)
        self.assertEqual([t.jid for t in (yield self.store.tombstones(0.0))], [ROOM])
        self.assertEqual((yield self.store.prune_tombstones(1_000.0)), 0)

    @inlineCallbacks
    def test_a_save_after_a_burial_is_a_room_again(self) -> Generator[Any, Any, None]:
        self.store.bury_room(ROOM, "", "", 2_000.0)
        save(self.store)
        self.assertIsNotNone((yield self.load()))

    @inlineCallbacks
    def test_affiliation_change_and_removal(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.store.set_affiliation(ROOM, ALICE, "member")
        self.store.set_affiliation(ROOM, BOB, "member")
        self.assertEqual((yield self.load()).affiliations, {ALICE: "member", BOB: "member"})
        self.store.set_affiliation(ROOM, ALICE, "admin")
        self.store.set_affiliation(ROOM, BOB, "none")
        self.store.set_affiliation(ROOM, "carol@example.org", "none")  # never had one
        self.assertEqual((yield self.load()).affiliations, {ALICE: "admin"})

    def test_unknown_affiliation_is_refused_at_the_call(self) -> None:
        with self.assertRaises(ValueError):
            self.store.set_affiliation(ROOM, ALICE, "moderator")

    @inlineCallbacks
    def test_affiliations_before_the_first_save_show_once_saved(
        self,
    ) -> Generator[Any, Any, None]:
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.assertIsNone((yield self.load()))
        save(self.store)
        self.assertEqual((yield self.load()).affiliations, {ALICE: "owner"})

    @inlineCallbacks
    def test_delete_removes_room_affiliations_and_messages(self) -> Generator[Any, Any, None]:
        for jid in (ROOM, OTHER):
            save(self.store, jid)
            self.store.set_affiliation(jid, ALICE, "owner")
            self.store.append_message(jid, message(1, room=jid), 10)
        yield self.store.flush()
        self.store.delete_room(ROOM)
        self.assertIsNone((yield self.load()))
        save(self.store)  # the same JID again: a new room, nothing of the old one
        record = yield self.load()
        self.assertEqual((record.affiliations, record.history), ({}, ()))
        other = yield self.load(OTHER)
        self.assertEqual(other.affiliations, {ALICE: "owner"})
        self.assertEqual(len(other.history), 1)

    @inlineCallbacks
    def test_writes_keep_their_order(self) -> Generator[Any, Any, None]:
        # None of these waits: the store must not reorder them.
        save(self.store, name="first")
        self.store.set_affiliation(ROOM, ALICE, "owner")
        self.store.append_message(ROOM, message(1), 10)
        self.store.delete_room(ROOM)
        self.assertIsNone((yield self.load()))
        self.store.delete_room(OTHER)
        save(self.store, OTHER, name="second")
        self.store.append_message(OTHER, message(2, room=OTHER), 10)
        save(self.store, OTHER, name="third")
        other = yield self.load(OTHER)
        self.assertEqual(other.name, "third")
        self.assertEqual(other.history, (message(2, room=OTHER),))

    @inlineCallbacks
    def test_history_is_trimmed_to_keep_oldest_first(self) -> Generator[Any, Any, None]:
        save(self.store)
        for n in range(10):
            self.store.append_message(ROOM, message(n), 4)
        record = yield self.load()
        self.assertEqual(record.history, tuple(message(n) for n in range(6, 10)))
        self.assertEqual((yield self.load(history=2)).history, (message(8), message(9)))
        self.assertEqual((yield self.load(history=0)).history, ())

    @inlineCallbacks
    def test_trimmed_across_batches(self) -> Generator[Any, Any, None]:
        save(self.store)
        for n in range(6):
            self.store.append_message(ROOM, message(n), 3)
            yield self.store.flush()
        self.assertEqual((yield self.load()).history, (message(3), message(4), message(5)))

    @inlineCallbacks
    def test_keep_none_keeps_all_and_zero_keeps_none(self) -> Generator[Any, Any, None]:
        save(self.store)
        save(self.store, OTHER)
        for n in range(30):
            self.store.append_message(ROOM, message(n), None)
            self.store.append_message(OTHER, message(n, room=OTHER), 0)
        self.assertEqual(len((yield self.load(history=1000)).history), 30)
        self.assertEqual((yield self.load(OTHER)).history, ())

    @inlineCallbacks
    def test_history_follows_timestamps(self) -> Generator[Any, Any, None]:
        save(self.store)
        late, early, same = message(1, ts=50.0), message(2, ts=10.0), message(3, ts=50.0)
        for m in (late, early, same):
            self.store.append_message(ROOM, m, None)
        self.assertEqual((yield self.load()).history, (early, late, same))

    @inlineCallbacks
    def test_a_stanza_id_is_kept_once(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.store.append_message(ROOM, message(1), 10)
        yield self.store.flush()
        self.store.append_message(ROOM, message(1, ts=5.0), 10)  # same id, other content
        self.assertEqual((yield self.load()).history, (message(1),))

    @inlineCallbacks
    def test_room_lists(self) -> Generator[Any, Any, None]:
        save(self.store, OTHER, name="Physics", public=False)
        save(self.store, ROOM, name="Maths")
        save(self.store, "zoo@rooms.example.org", name="")
        yield self.store.flush()
        self.assertEqual((yield self.store.room_jids()), [ROOM, OTHER, "zoo@rooms.example.org"])
        self.assertEqual(
            (yield self.store.public_rooms()),
            [(ROOM, "Maths"), ("zoo@rooms.example.org", "")],
        )

    @inlineCallbacks
    def test_unsaved_rooms_are_not_listed(self) -> Generator[Any, Any, None]:
        self.store.append_message(ROOM, message(1), 10)
        self.store.set_affiliation(OTHER, ALICE, "owner")
        yield self.store.flush()
        self.assertEqual((yield self.store.room_jids()), [])

    @inlineCallbacks
    def test_the_creator_is_kept_from_the_first_save_that_gives_one(
        self,
    ) -> Generator[Any, Any, None]:
        save(self.store, ROOM, creator=ALICE)
        yield self.store.flush()
        save(self.store, ROOM, name="Renamed", creator="mallory@example.org")
        save(self.store, OTHER)  # a room saved without a creator (as before schema 2)
        yield self.store.flush()
        save(self.store, OTHER, creator=ALICE)  # a later save fills it in
        yield self.store.flush()
        save(self.store, OTHER, creator="")  # and one without keeps it
        yield self.store.flush()
        record = yield self.store.load_room(ROOM, 0)
        self.assertEqual((record.creator, record.name), (ALICE, "Renamed"))
        self.assertEqual((yield self.store.load_room(OTHER, 0)).creator, ALICE)

    @inlineCallbacks
    def test_list_rooms_gives_the_creators_to_count(self) -> Generator[Any, Any, None]:
        for n in range(7):
            save(self.store, f"r{n}@rooms.example.org", creator=ALICE if n % 2 else "")
        yield self.store.flush()
        rows = []
        after = None
        while page := (yield self.store.list_rooms(after, 3)):
            rows += page
            after = page[-1].jid
        self.assertEqual(sum(1 for row in rows if row.creator == ALICE), 3)
        self.assertEqual(sum(1 for row in rows if row.creator == ""), 4)
        self.store.delete_room("r1@rooms.example.org")
        [first] = yield self.store.list_rooms("r0@rooms.example.org", 1)
        self.assertEqual((first.jid, first.creator), ("r2@rooms.example.org", ""))

    # -- repairs (the admin API) -----------------------------------------------------------------

    @inlineCallbacks
    def test_list_rooms_pages_in_jid_order(self) -> Generator[Any, Any, None]:
        jids = [f"room{n:02d}@rooms.example.org" for n in range(25)]
        for jid in reversed(jids):
            save(self.store, jid, name=jid[:6], public=jid != jids[3])
        yield self.store.flush()
        seen: list[str] = []
        after = None
        while True:
            page = yield self.store.list_rooms(after, 10)
            if not page:
                break
            seen += [room.jid for room in page]
            after = page[-1].jid
        self.assertEqual(seen, jids)
        [fourth] = yield self.store.list_rooms(jids[2], 1)
        self.assertEqual((fourth.jid, fourth.name, fourth.public), (jids[3], "room03", False))
        self.assertGreater(fourth.created, 0)
        self.assertEqual((yield self.store.list_rooms(jids[-1], 10)), [])
        with self.assertRaises(ValueError):
            self.store.list_rooms(None, 0)

    @inlineCallbacks
    def test_has_room(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.assertTrue((yield self.store.has_room(ROOM)))
        self.assertFalse((yield self.store.has_room(OTHER)))
        self.store.delete_room(ROOM)
        self.assertFalse((yield self.store.has_room(ROOM)))

    @inlineCallbacks
    def test_delete_messages_by_id_and_all(self) -> Generator[Any, Any, None]:
        save(self.store)
        save(self.store, OTHER)
        for n in range(5):
            self.store.append_message(ROOM, message(n), None)
            self.store.append_message(OTHER, message(n, room=OTHER), None)
        # Made after the appends, so it waits for them; unknown and repeated ids count nothing.
        removed = yield self.store.delete_messages(ROOM, ["s1", "s3", "s3", "nowhere"])
        self.assertEqual(removed, 2)
        record = yield self.load(ROOM)
        self.assertEqual([m.stanza_id for m in record.history], ["s0", "s2", "s4"])
        self.assertEqual((yield self.store.delete_messages(ROOM, None)), 3)
        self.assertEqual((yield self.load(ROOM)).history, ())
        self.assertEqual(len((yield self.load(OTHER)).history), 5)  # another room's are kept
        self.assertEqual((yield self.store.delete_messages(ROOM, [])), 0)

    def test_config_must_be_json(self) -> None:
        with self.assertRaises(TypeError):
            save(self.store, config={"when": object()})

    def test_nothing_pending_after_flush(self) -> Deferred[None]:
        save(self.store)
        d = self.store.flush()
        d.addCallback(lambda _: self.assertEqual(self.store.pending_writes, 0))
        return d

    @inlineCallbacks
    def test_reads_need_an_open_store(self) -> Generator[Any, Any, None]:
        yield self.store.close()
        for read in (lambda: self.store.load_room(ROOM, 1), self.store.room_jids):
            yield self.assertFailure(read(), StoreError)
