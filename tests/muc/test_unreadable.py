"""Rooms always load: stored rows that cannot be read back are left out (logged once, counted),
a room that cannot be rebuilt keeps its affiliations so its owner can destroy it, a room that
cannot be loaded at all answers every waiting stanza, and one user's archive queries are
bounded. In memory, on a MemoryRoomStore seeded by hand as a damaged database would be."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.words.protocols.jabber.jid import JID

from mucauth.muc import persist
from mucauth.muc.archive import NS_MAM
from mucauth.muc.archive import write as archive_write
from mucauth.muc.persist import UnreadableError, readable_message, restore_room
from mucauth.settings import ArchiveSettings, LimitSettings, MUCSettings, RoomDefaults
from mucauth.store import ArchivePage, ArchiveQuery, HistoryRecord, MemoryRoomStore, RoomRecord
from tests.muc.support import ALICE, BOB, CAROL, ROOM, error_of, error_text, iq, message
from tests.muc.test_archive import mam_query
from tests.muc.test_persistent import OWNER, PersistentTestCase

# What issue 24 stored: a namespace written unescaped, and a NUL from a JSON source.
POISON = "<message xmlns='jabber:client'><x xmlns='urn:a'b'/></message>"
NUL = "<message xmlns='jabber:client'><body>a\x00b</body></message>"
SECRET = "the-content-never-logged"


def good(n: int) -> str:
    return f"<message xmlns='jabber:client' id='c{n}'><body>post {n}</body></message>"


def row(n: int, xml: str, *, ts: float | None = None) -> HistoryRecord:
    return HistoryRecord(
        stanza_id=f"s{n}",
        timestamp=1_714_564_800.0 + n if ts is None else ts,
        nick="alice",
        sender="alice@example.org",
        xml=xml,
        occupant_id="o",
    )


class UnreadableTestCase(PersistentTestCase):
    settings = MUCSettings(
        rooms=RoomDefaults(persistent=True, logging=True, history_length=10, max_history_length=10),
        archive=ArchiveSettings(max_page=50),
    )

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        # The room as alice left it, then rows damaged behind the service's back.
        self.enter(ALICE, "alice")
        self.leave(ALICE, "alice")

    def seed(self, *rows: HistoryRecord) -> None:
        for each in rows:
            self.store.append_message(ROOM, each, None)

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def joined(self, user: str = BOB, nick: str = "bob") -> list[Any]:
        sent = self.enter(user, nick)
        own = [s for s in sent if s.name == "presence" and s["to"].startswith(user)]
        self.assertTrue(own and own[-1].getAttribute("type") is None, [s.toXml() for s in sent])
        return [str(s.body) for s in sent if s.name == "message" and s.body is not None]


class UnreadableRowsTests(UnreadableTestCase):
    def test_a_room_with_unreadable_messages_loads_without_them(self) -> None:
        self.seed(row(1, good(1)), row(2, POISON + SECRET), row(3, NUL), row(4, good(4)))
        self.restart()
        self.assertEqual(self.joined(), ["post 1", "post 4"])
        self.assertEqual(self.service.unreadable_rows, 2)
        text = "\n".join(self.logged())
        self.assertIn(f"unreadable message row=s2 in room={ROOM}", text)
        self.assertIn("row=s3", text)
        self.assertNotIn(SECRET, text)
        self.assertNotIn("urn:a", text)

    def test_each_row_is_reported_once(self) -> None:
        self.seed(row(2, POISON))
        self.restart()
        self.joined()
        self.leave(BOB, "bob")
        self.joined(CAROL, "carol")  # read back again: not reported again
        self.assertEqual(self.service.unreadable_rows, 1)
        self.assertEqual(sum("row=s2" in line for line in self.logged()), 1)

    def test_the_archive_leaves_them_out_and_pages_past_them(self) -> None:
        self.seed(row(1, good(1)), row(2, POISON), row(3, good(3)))
        self.restart()
        self.joined()
        self.receive(iq(BOB, ROOM, mam_query(rsm="<max>2</max>"), type="set"))
        sent = self.take()
        bodies = [
            str(s.firstChildElement().forwarded.message.body) for s in sent if s.name == "message"
        ]
        self.assertEqual(bodies, ["post 1"])
        [reply] = [s for s in sent if s.name == "iq"]
        self.assertEqual(reply["type"], "result")
        [fin] = list(reply.elements(NS_MAM, "fin"))
        last = str(fin.firstChildElement().last)
        self.assertEqual(last, "s2")  # the next page starts after the unreadable row
        self.receive(iq(BOB, ROOM, mam_query(rsm=f"<max>2</max><after>{last}</after>"), type="set"))
        sent = self.take()
        bodies = [
            str(s.firstChildElement().forwarded.message.body) for s in sent if s.name == "message"
        ]
        self.assertEqual(bodies, ["post 3"])
        self.assertEqual(self.service.unreadable_rows, 1)

    def test_bad_times_settings_salt_and_affiliations_are_left_out(self) -> None:
        self.seed(row(1, good(1)), row(2, good(2), ts=float("nan")), row(3, good(3), ts=1e30))
        config = dict(self.stored(0).config)
        config.update(historylength="ten", history_length=-4, occupant_id_salt="%%%", allow_pm=7)
        self.store.save_room(ROOM, config, name="Kept", public=True, subject="", subject_nick="")
        self.store.set_affiliation(ROOM, "not a jid@@", "member")
        self.store.set_affiliation(ROOM, "carol@example.org/phone", "admin")
        self.restart()
        self.assertEqual(self.joined(), ["post 1"])
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(room.config.name, "Kept")
        self.assertEqual(room.config.history_length, 20)  # the default, not -4
        self.assertEqual(room.affiliation(JID(ALICE)), "owner")
        text = "\n".join(self.logged())
        for what in ("row=s2", "row=s3", "row=history_length", "row=occupant_id_salt"):
            self.assertIn(what, text)
        self.assertIn("unreadable affiliation", text)

    def test_settings_that_are_not_json_are_left_out_at_the_store(self) -> None:
        record = self.stored(10)
        self.assertEqual(record.unreadable, ())
        damaged = dataclasses.replace(record, config={}, unreadable=(("config", ""),))
        reported: list[tuple[str, str, str]] = []
        room = restore_room(damaged, lambda *args: reported.append(args))
        self.assertTrue(room.config.persistent)
        self.assertEqual(reported, [("config", "", "the store could not read it")])


class UnloadableRoomTests(UnreadableTestCase):
    def test_a_room_that_cannot_be_rebuilt_keeps_its_owner_who_can_destroy_it(self) -> None:
        self.seed(row(1, good(1)))
        self.restart()

        def broken(record: RoomRecord, on_unreadable: Any = None) -> Any:
            raise RuntimeError("a bug in restore_room")

        self.patch(persist, "restore_room", broken)
        sent = self.enter(ALICE, "alice")
        own = [s for s in sent if s.name == "presence" and s["to"] == ALICE]
        self.assertIsNone(own[-1].getAttribute("type"), own[-1].toXml())
        self.assertIn("owner", own[-1].toXml())
        self.assertIn("cannot be rebuilt (RuntimeError)", "\n".join(self.logged()))
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'><destroy/></query>", type="set"))
        self.assertIn("result", [s.getAttribute("type") for s in self.take() if s.name == "iq"])
        self.assertEqual(self.successResultOf(self.store.room_jids()), [])

    def test_a_room_that_cannot_be_loaded_at_all_answers_every_waiting_stanza(self) -> None:
        self.restart()

        def broken(record: RoomRecord, on_unreadable: Any = None) -> Any:
            raise RuntimeError("nothing left")

        self.patch(persist, "restore_room", broken)
        self.patch(persist, "fallback_room", broken)
        self.join(BOB, "bob")
        sent = self.take()
        self.receive(iq(CAROL, ROOM, "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        sent += self.take()
        self.assertEqual(len(sent), 2, [s.toXml() for s in sent])
        for stanza in sent:
            self.assertEqual(error_of(stanza), ("wait", "internal-server-error"))
            self.assertTrue(error_text(stanza))
        self.assertEqual(sum("cannot be loaded" in line for line in self.logged()), 2)


class UnwritableMessageTests(UnreadableTestCase):
    def test_a_message_the_serializer_refuses_is_sent_but_not_stored(self) -> None:
        self.enter(ALICE, "alice")

        def refuse(stanza_id: str | None, children: list[Any]) -> str:
            raise ValueError("not writable")

        self.patch(archive_write, "message_xml", refuse)
        self.receive(message(ALICE, body="hello"))
        self.assertTrue(self.take())  # the room still speaks
        page = self.successResultOf(self.store.query_archive(ROOM, ArchiveQuery()))
        self.assertEqual(page.messages, ())
        self.assertEqual(self.service.unwritable_messages, 1)
        self.assertIn("not stored (ValueError)", "\n".join(self.logged()))


class ReadableMessageTests(UnreadableTestCase):
    def test_what_is_unreadable(self) -> None:
        for xml in (POISON, NUL, "<message", "text", "<a>\ufffe</a>", "<a>\ud800</a>"):
            with self.assertRaises(UnreadableError, msg=repr(xml)):
                readable_message(row(1, xml))
        self.assertEqual(str(readable_message(row(1, good(1))).children[0]), "post 1")

    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
    def test_any_stored_text_lets_the_room_load(self, xml: str) -> None:
        store = MemoryRoomStore()
        store.open()
        store.save_room(ROOM, {}, name="r", public=True, subject="", subject_nick="")
        store.set_affiliation(ROOM, "alice@example.org", "owner")
        store.append_message(ROOM, row(1, xml), None)
        store.append_message(ROOM, row(2, good(2)), None)
        record = self.successResultOf(store.load_room(ROOM, 10))
        assert record is not None
        room = restore_room(record)
        self.assertEqual(room.affiliation(JID(ALICE)), "owner")
        self.assertIn(len(room.history_entries), (1, 2))


class GatedStore(MemoryRoomStore):
    """Archive pages answered by hand."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 1714564800.0)
        self.pages: list[Deferred[ArchivePage]] = []

    def query_archive(self, room: str, query: ArchiveQuery) -> Deferred[ArchivePage]:
        d: Deferred[ArchivePage] = Deferred()
        self.pages.append(d)
        return d


class ArchiveQueryBoundTests(UnreadableTestCase):
    settings = dataclasses.replace(
        UnreadableTestCase.settings, limits=LimitSettings(max_archive_queries_per_user=2)
    )

    def make_store(self) -> MemoryRoomStore:
        return GatedStore()

    def test_one_user_has_at_most_the_limit_answered_at_once(self) -> None:
        store = self.store
        assert isinstance(store, GatedStore)
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        for n in range(3):
            self.receive(iq(BOB, ROOM, mam_query(query_id=f"q{n}"), type="set", id=f"b{n}"))
        [refused] = self.take()
        self.assertEqual(refused["id"], "b2")
        self.assertEqual(error_of(refused), ("wait", "resource-constraint"))
        self.assertIn("archive queries", error_text(refused) or "")
        # Another user is not held back by bob's.
        self.receive(iq(ALICE, ROOM, mam_query(), type="set", id="a0"))
        self.assertEqual(self.take(), [])
        self.assertEqual(len(store.pages), 3)
        store.pages.pop(0).callback(ArchivePage((), True))
        self.assertEqual([s["type"] for s in self.take()], ["result"])
        self.receive(iq(BOB, ROOM, mam_query(), type="set", id="b3"))
        self.assertEqual(self.take(), [])  # a slot was given back
        self.assertEqual(len(store.pages), 3)  # b1, a0 and b3
