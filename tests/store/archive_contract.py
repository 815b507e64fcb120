"""What every room store's archive does (XEP-0313 filters, XEP-0059 paging, retraction,
retention): one test body, run on each implementation beside ``RoomStoreContract``.

A class mixes ``ArchiveContract`` before ``RoomStoreContract`` into a trial ``TestCase``. The
queries are not preceded by a flush: a read waits for the writes made before it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import inlineCallbacks

from mucauth.store import (
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    UnknownStanzaIdError,
)
from tests.store.contract import ALICE, BOB, OTHER, ROOM, message, save

if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase as _Base
else:
    _Base = object

THIRD = "chemistry@rooms.example.org"
T0 = 1_700_000_000.0


def chat(n: int, *, nick: str, sender: str, ts: float | None = None) -> HistoryRecord:
    return replace(message(n, ts=ts), nick=nick, sender=sender)


def ids(records: Sequence[HistoryRecord]) -> list[str]:
    return [r.stanza_id for r in records]


def numbered(*ns: int) -> list[str]:
    return [f"s{n}" for n in ns]


class ArchiveContract(_Base):
    store: Any

    def fill(self, count: int, room: str = ROOM) -> None:
        for n in range(count):
            self.store.append_message(room, message(n, room=room), None)

    @inlineCallbacks
    def page(self, room: str = ROOM, **kw: Any) -> Generator[Any, Any, ArchivePage]:
        page = yield self.store.query_archive(room, ArchiveQuery(**kw))
        return page

    # -- paging ------------------------------------------------------------------------------

    @inlineCallbacks
    def test_forward_paging_completes_on_the_last_page(self) -> Generator[Any, Any, None]:
        self.fill(250)
        seen: list[str] = []
        completes: list[bool] = []
        after: str | None = None
        for _ in range(5):
            page = yield self.page(page_after=after, limit=50)
            self.assertEqual(len(page.messages), 50)
            seen += ids(page.messages)
            completes.append(page.complete)
            after = page.messages[-1].stanza_id
        self.assertEqual(seen, numbered(*range(250)))
        self.assertEqual(completes, [False, False, False, False, True])
        beyond = yield self.page(page_after=after, limit=50)
        self.assertEqual((beyond.messages, beyond.complete), ((), True))

    @inlineCallbacks
    def test_backward_paging_from_the_last_page(self) -> Generator[Any, Any, None]:
        self.fill(120)
        pages: list[list[str]] = []
        completes: list[bool] = []
        page = yield self.page(last=True, limit=50)
        while True:
            pages.append(ids(page.messages))
            completes.append(page.complete)
            if page.complete:
                break
            page = yield self.page(page_before=page.messages[0].stanza_id, limit=50)
        self.assertEqual(
            pages,
            [numbered(*range(70, 120)), numbered(*range(20, 70)), numbered(*range(20))],
        )
        self.assertEqual(completes, [False, False, True])

    @inlineCallbacks
    def test_page_after_and_page_before(self) -> Generator[Any, Any, None]:
        self.fill(30)
        after = yield self.page(page_after="s10", limit=5)
        self.assertEqual(
            (ids(after.messages), after.complete), (numbered(11, 12, 13, 14, 15), False)
        )
        before = yield self.page(page_before="s10", limit=5)
        self.assertEqual((ids(before.messages), before.complete), (numbered(5, 6, 7, 8, 9), False))
        near_start = yield self.page(page_before="s3", limit=5)
        self.assertEqual((ids(near_start.messages), near_start.complete), (numbered(0, 1, 2), True))
        near_end = yield self.page(page_after="s26", limit=5)
        self.assertEqual((ids(near_end.messages), near_end.complete), (numbered(27, 28, 29), True))
        exact = yield self.page(page_after="s24", limit=5)
        self.assertEqual(
            (ids(exact.messages), exact.complete), (numbered(25, 26, 27, 28, 29), True)
        )
        # Both: the messages between them, the last ones as paging back takes them.
        between = yield self.page(page_after="s10", page_before="s20", limit=3)
        self.assertEqual((ids(between.messages), between.complete), (numbered(17, 18, 19), False))

    @inlineCallbacks
    def test_the_first_page_without_bounds(self) -> Generator[Any, Any, None]:
        self.fill(7)
        first = yield self.page(limit=5)
        self.assertEqual((ids(first.messages), first.complete), (numbered(0, 1, 2, 3, 4), False))
        whole = yield self.page(limit=7)
        self.assertEqual((len(whole.messages), whole.complete), (7, True))
        last = yield self.page(last=True, limit=3)
        self.assertEqual((ids(last.messages), last.complete), (numbered(4, 5, 6), False))

    @inlineCallbacks
    def test_an_empty_archive_is_one_complete_empty_page(self) -> Generator[Any, Any, None]:
        self.fill(3, room=OTHER)
        for kw in ({}, {"last": True}, {"start": T0}):
            page = yield self.page(**kw)
            self.assertEqual((page.messages, page.complete), ((), True))

    @inlineCallbacks
    def test_limit_zero_says_only_whether_any_match(self) -> Generator[Any, Any, None]:
        self.fill(3)
        some = yield self.page(limit=0)
        self.assertEqual((some.messages, some.complete), ((), False))
        none = yield self.page(limit=0, start=T0 + 100)
        self.assertEqual((none.messages, none.complete), ((), True))

    def test_a_negative_limit_is_refused_at_the_call(self) -> None:
        with self.assertRaises(ValueError):
            self.store.query_archive(ROOM, ArchiveQuery(limit=-1))

    @inlineCallbacks
    def test_equal_times_keep_arrival_order_across_pages(self) -> Generator[Any, Any, None]:
        # Arrival order: 3, 1, 2 at one time, 0 earlier, 4 later.
        for n, ts in ((3, 50.0), (1, 50.0), (0, 10.0), (2, 50.0), (4, 60.0)):
            self.store.append_message(ROOM, message(n, ts=ts), None)
        whole = yield self.page()
        self.assertEqual(ids(whole.messages), numbered(0, 3, 1, 2, 4))
        forward: list[str] = []
        after: str | None = None
        while True:
            page = yield self.page(page_after=after, limit=1)
            forward += ids(page.messages)
            if page.complete:
                break
            after = page.messages[-1].stanza_id
        self.assertEqual(forward, numbered(0, 3, 1, 2, 4))
        back: list[str] = []
        page = yield self.page(last=True, limit=1)
        while True:
            back = ids(page.messages) + back
            if page.complete:
                break
            page = yield self.page(page_before=page.messages[0].stanza_id, limit=1)
        self.assertEqual(back, numbered(0, 3, 1, 2, 4))
        middle = yield self.page(after_id="s3", before_id="s2")
        self.assertEqual(ids(middle.messages), numbered(1))
        same_time = yield self.page(start=50.0, end=50.0, last=True, limit=2)
        self.assertEqual((ids(same_time.messages), same_time.complete), (numbered(1, 2), False))

    # -- filters -----------------------------------------------------------------------------

    @inlineCallbacks
    def test_start_and_end_are_inclusive(self) -> Generator[Any, Any, None]:
        self.fill(30)
        page = yield self.page(start=T0 + 10, end=T0 + 20)
        self.assertEqual((ids(page.messages), page.complete), (numbered(*range(10, 21)), True))
        first = yield self.page(start=T0 + 10, end=T0 + 20, limit=4)
        self.assertEqual((ids(first.messages), first.complete), (numbered(10, 11, 12, 13), False))
        last = yield self.page(start=T0 + 10, end=T0 + 20, last=True, limit=4)
        self.assertEqual((ids(last.messages), last.complete), (numbered(17, 18, 19, 20), False))
        later = yield self.page(start=T0 + 10.5)
        self.assertEqual(ids(later.messages)[0], "s11")
        nothing = yield self.page(start=T0 + 20, end=T0 + 10)
        self.assertEqual((nothing.messages, nothing.complete), ((), True))

    @inlineCallbacks
    def test_start_and_end_with_page_bounds(self) -> Generator[Any, Any, None]:
        self.fill(30)
        # Whichever bound is the tighter one wins, both ways.
        page = yield self.page(start=T0 + 10, page_after="s5", limit=3)
        self.assertEqual(ids(page.messages), numbered(10, 11, 12))
        page = yield self.page(start=T0 + 10, page_after="s15", limit=3)
        self.assertEqual(ids(page.messages), numbered(16, 17, 18))
        page = yield self.page(end=T0 + 20, page_before="s25", limit=3)
        self.assertEqual(ids(page.messages), numbered(18, 19, 20))
        page = yield self.page(end=T0 + 20, page_before="s15", limit=3)
        self.assertEqual(ids(page.messages), numbered(12, 13, 14))

    @inlineCallbacks
    def test_nick_and_sender_filters(self) -> Generator[Any, Any, None]:
        people = [("alice", ALICE), ("bob", BOB), ("alice", BOB), ("carol", ALICE)]
        for n in range(20):
            nick, sender = people[n % 4]
            self.store.append_message(ROOM, chat(n, nick=nick, sender=sender), None)
        alice = yield self.page(nick="alice")
        self.assertEqual(ids(alice.messages), [f"s{n}" for n in range(20) if n % 4 in (0, 2)])
        from_bob = yield self.page(sender=BOB)
        self.assertEqual(ids(from_bob.messages), [f"s{n}" for n in range(20) if n % 4 in (1, 2)])
        both = yield self.page(nick="alice", sender=BOB)
        self.assertEqual(ids(both.messages), numbered(2, 6, 10, 14, 18))
        # Paging a filtered archive: the page bound need not match the filter.
        paged = yield self.page(nick="alice", sender=BOB, page_after="s7", limit=2)
        self.assertEqual((ids(paged.messages), paged.complete), (numbered(10, 14), False))
        back = yield self.page(nick="alice", sender=BOB, page_before="s7", limit=2)
        self.assertEqual((ids(back.messages), back.complete), (numbered(2, 6), True))
        nobody = yield self.page(nick="dave")
        self.assertEqual((nobody.messages, nobody.complete), ((), True))

    @inlineCallbacks
    def test_after_id_and_before_id_are_exclusive(self) -> Generator[Any, Any, None]:
        self.fill(20)
        page = yield self.page(after_id="s5", before_id="s9")
        self.assertEqual((ids(page.messages), page.complete), (numbered(6, 7, 8), True))
        page = yield self.page(after_id="s5", limit=2)
        self.assertEqual((ids(page.messages), page.complete), (numbered(6, 7), False))
        page = yield self.page(before_id="s5", last=True, limit=2)
        self.assertEqual((ids(page.messages), page.complete), (numbered(3, 4), False))
        page = yield self.page(after_id="s5", page_after="s3", limit=2)
        self.assertEqual(ids(page.messages), numbered(6, 7))
        page = yield self.page(before_id="s9", after_id="s5", page_before="s8", limit=5)
        self.assertEqual((ids(page.messages), page.complete), (numbered(6, 7), True))
        page = yield self.page(after_id="s9", before_id="s5")
        self.assertEqual((page.messages, page.complete), ((), True))

    @inlineCallbacks
    def test_ids_keeps_only_those(self) -> Generator[Any, Any, None]:
        self.fill(20)
        named = ("s12", "s3", "unknown-is-just-absent", "s7")
        page = yield self.page(ids=named)
        self.assertEqual((ids(page.messages), page.complete), (numbered(3, 7, 12), True))
        first = yield self.page(ids=named, limit=2)
        self.assertEqual((ids(first.messages), first.complete), (numbered(3, 7), False))
        last = yield self.page(ids=named, last=True, limit=1)
        self.assertEqual((ids(last.messages), last.complete), (numbered(12), False))
        after = yield self.page(ids=named, page_after="s3", limit=1)
        self.assertEqual((ids(after.messages), after.complete), (numbered(7), False))
        before = yield self.page(ids=named, page_before="s7", limit=5)
        self.assertEqual((ids(before.messages), before.complete), (numbered(3), True))
        filtered = yield self.page(ids=named, start=T0 + 5, end=T0 + 10)
        self.assertEqual(ids(filtered.messages), numbered(7))
        elsewhere = yield self.page(OTHER, ids=named)
        self.assertEqual((elsewhere.messages, elsewhere.complete), ((), True))

    @inlineCallbacks
    def test_many_ids_at_once(self) -> Generator[Any, Any, None]:
        self.fill(700)
        wanted = tuple(reversed(numbered(*range(50, 700))))  # 650 ids, newest first
        page = yield self.page(ids=wanted, limit=1000)
        self.assertEqual((ids(page.messages), page.complete), (numbered(*range(50, 700)), True))

    @inlineCallbacks
    def test_an_unknown_id_fails_in_each_id_field(self) -> Generator[Any, Any, None]:
        self.fill(5)
        self.fill(5, room=OTHER)
        for field in ("after_id", "before_id", "page_after", "page_before"):
            for stanza_id in ("nope", "s1"):  # s1 is in the room but not in THIRD
                room = THIRD if stanza_id == "s1" else ROOM
                fields: dict[str, Any] = {field: stanza_id}
                error = yield self.assertFailure(
                    self.store.query_archive(room, ArchiveQuery(**fields)),
                    UnknownStanzaIdError,
                )
                self.assertEqual(error.stanza_id, stanza_id)

    @inlineCallbacks
    def test_messages_come_back_whole(self) -> Generator[Any, Any, None]:
        records = [message(n) for n in range(4)]
        for record in records:
            self.store.append_message(ROOM, record, None)
        page = yield self.page()
        self.assertEqual(page.messages, tuple(records))

    # -- bounds and one message --------------------------------------------------------------

    @inlineCallbacks
    def test_archive_bounds(self) -> Generator[Any, Any, None]:
        self.assertIsNone((yield self.store.archive_bounds(ROOM)))
        for n, ts in ((1, 50.0), (2, 10.0), (3, 70.0), (4, 70.0)):
            self.store.append_message(ROOM, message(n, ts=ts), None)
        oldest, newest = yield self.store.archive_bounds(ROOM)
        self.assertEqual((oldest, newest), (message(2, ts=10.0), message(4, ts=70.0)))
        self.store.append_message(OTHER, message(9, room=OTHER), None)
        single = yield self.store.archive_bounds(OTHER)
        self.assertEqual(single, (message(9, room=OTHER), message(9, room=OTHER)))

    @inlineCallbacks
    def test_find_message(self) -> Generator[Any, Any, None]:
        self.fill(3)
        self.assertEqual((yield self.store.find_message(ROOM, "s1")), message(1))
        self.assertIsNone((yield self.store.find_message(ROOM, "s9")))
        self.assertIsNone((yield self.store.find_message(OTHER, "s1")))

    # -- retraction --------------------------------------------------------------------------

    @inlineCallbacks
    def test_a_retraction_keeps_id_time_and_nick(self) -> Generator[Any, Any, None]:
        people = [("alice", ALICE), ("bob", BOB)]
        for n in range(4):
            nick, sender = people[n % 2]
            self.store.append_message(ROOM, chat(n, nick=nick, sender=sender), None)
        yield self.store.flush()
        tombstone = "<message xmlns='jabber:client' type='groupchat'><retracted/></message>"
        self.store.retract_message(ROOM, "s1", tombstone)
        expected = replace(chat(1, nick="bob", sender=BOB), xml=tombstone)
        page = yield self.page()
        self.assertEqual(page.messages[1], expected)
        self.assertEqual(page.messages[0], chat(0, nick="alice", sender=ALICE))
        self.assertEqual((yield self.store.find_message(ROOM, "s1")), expected)
        by_bob = yield self.page(sender=BOB, nick="bob", start=T0 + 1, end=T0 + 1)
        self.assertEqual(by_bob.messages, (expected,))

    @inlineCallbacks
    def test_a_retraction_comes_after_the_append_it_retracts(self) -> Generator[Any, Any, None]:
        # Neither waits: the retraction must not overtake the append.
        self.store.append_message(ROOM, message(1), None)
        self.store.retract_message(ROOM, "s1", "<tombstone/>")
        self.store.append_message(ROOM, message(2), None)
        page = yield self.page()
        self.assertEqual(page.messages, (replace(message(1), xml="<tombstone/>"), message(2)))

    @inlineCallbacks
    def test_retracting_what_is_not_stored_does_nothing(self) -> Generator[Any, Any, None]:
        self.store.retract_message(ROOM, "s1", "<tombstone/>")  # before its append
        self.store.append_message(ROOM, message(1), None)
        self.store.retract_message(ROOM, "s2", "<tombstone/>")
        self.store.retract_message(OTHER, "s1", "<tombstone/>")
        page = yield self.page()
        self.assertEqual(page.messages, (message(1),))
        self.assertEqual(self.store.dropped_writes, 0)

    # -- retention and deletion --------------------------------------------------------------

    def fill_rooms(self) -> None:
        """ROOM: s0..s9, OTHER: s0..s4, THIRD: s0..s19; times T0 + n."""
        for room, count in ((ROOM, 10), (OTHER, 5), (THIRD, 20)):
            self.fill(count, room=room)

    @inlineCallbacks
    def remaining(self) -> Generator[Any, Any, list[list[str]]]:
        rooms = []
        for room in (ROOM, OTHER, THIRD):
            page = yield self.page(room, limit=100)
            rooms.append(ids(page.messages))
        return rooms

    @inlineCallbacks
    def test_prune_by_age_in_every_room(self) -> Generator[Any, Any, None]:
        self.fill_rooms()
        removed = yield self.store.prune_archive(T0 + 7, None)
        self.assertEqual(removed, 7 + 5 + 7)
        self.assertEqual(
            (yield self.remaining()),
            [numbered(7, 8, 9), [], numbered(*range(7, 20))],
        )
        self.assertEqual((yield self.store.prune_archive(T0 + 7, None)), 0)

    @inlineCallbacks
    def test_prune_by_count_in_every_room(self) -> Generator[Any, Any, None]:
        self.fill_rooms()
        removed = yield self.store.prune_archive(None, 6)
        self.assertEqual(removed, 4 + 0 + 14)
        self.assertEqual(
            (yield self.remaining()),
            [numbered(*range(4, 10)), numbered(*range(5)), numbered(*range(14, 20))],
        )
        self.assertEqual((yield self.store.prune_archive(None, 0)), 6 + 5 + 6)
        self.assertEqual((yield self.remaining()), [[], [], []])

    @inlineCallbacks
    def test_prune_by_age_and_count(self) -> Generator[Any, Any, None]:
        self.fill_rooms()
        removed = yield self.store.prune_archive(T0 + 3, 8)
        self.assertEqual(removed, 3 + 3 + 12)
        self.assertEqual(
            (yield self.remaining()),
            [numbered(*range(3, 10)), numbered(3, 4), numbered(*range(12, 20))],
        )
        self.assertEqual((yield self.store.prune_archive(None, None)), 0)

    @inlineCallbacks
    def test_prune_keeps_equal_times_in_arrival_order(self) -> Generator[Any, Any, None]:
        for n in range(6):
            self.store.append_message(ROOM, message(n, ts=T0), None)
        self.assertEqual((yield self.store.prune_archive(None, 2)), 4)
        self.assertEqual(ids((yield self.page()).messages), numbered(4, 5))

    def test_prune_refuses_a_negative_keep(self) -> None:
        with self.assertRaises(ValueError):
            self.store.prune_archive(None, -1)

    @inlineCallbacks
    def test_delete_room_removes_its_archive(self) -> Generator[Any, Any, None]:
        save(self.store)
        self.fill(5)
        self.fill(2, room=OTHER)
        yield self.store.flush()
        self.store.delete_room(ROOM)
        page = yield self.page()
        self.assertEqual((page.messages, page.complete), ((), True))
        self.assertIsNone((yield self.store.archive_bounds(ROOM)))
        self.assertIsNone((yield self.store.find_message(ROOM, "s1")))
        self.assertEqual(len((yield self.page(OTHER)).messages), 2)
