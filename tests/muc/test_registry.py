"""The room registry (``registry.py``): the only writer of the rooms, and the in-memory store
that stands in when the service has none."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.muc.archive import NS_MAM
from mucauth.muc.registry import STAND_IN_ARCHIVE, in_memory_store
from mucauth.store import ArchiveQuery, HistoryRecord
from tests.muc.support import ALICE, BOB, ROOM, ServiceTestCase, iq, message
from tests.muc.test_archive import mam_query
from tests.muc.test_persistent import OWNER, form

INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"


class WritesTests(ServiceTestCase):
    def test_a_write_that_bypasses_the_registry_fails(self) -> None:
        self.enter(ALICE, "alice")
        rooms = self.service._core.rooms
        room = rooms[JID(ROOM)]
        for write in (
            lambda: rooms.__setitem__(JID(ROOM), room),
            lambda: rooms.__delitem__(JID(ROOM)),
            lambda: rooms.pop(JID(ROOM)),
            lambda: rooms.clear(),
            lambda: rooms.update({}),
            lambda: rooms.setdefault(JID(ROOM), room),
        ):
            self.assertRaises(TypeError, write)
        self.assertIs(rooms[JID(ROOM)], room)

    def test_a_room_comes_and_goes_with_the_index(self) -> None:
        index = self.service._core.index
        self.enter(ALICE, "alice")
        self.assertEqual(index.created_by("alice@example.org"), 1)
        self.leave(ALICE, "alice")
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(index.created_by("alice@example.org"), 0)


class InMemoryStoreTests(ServiceTestCase):
    """No store configured: a persistent room and its archive last as long as the process."""

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        body = f"<query xmlns='{OWNER}'>{form(persistentroom='1', enablelogging='1')}</query>"
        self.receive(iq(ALICE, ROOM, body, type="set"))
        self.take()
        self.receive(message(ALICE, body="kept"))
        self.take()
        self.leave(ALICE, "alice")
        self.take()

    def test_the_empty_room_left_memory_for_the_store(self) -> None:
        self.assertEqual(dict(self.service.rooms), {})
        self.receive(iq(BOB, ROOM, INFO))
        reply = self.take_one()
        self.assertEqual(reply["type"], "result")
        self.assertTrue(self.service.rooms[JID(ROOM)].config.persistent)

    def test_its_archive_answers(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(iq(ALICE, ROOM, mam_query(), type="set"))
        out = self.take()
        bodies = [str(m.result.forwarded.message.body) for m in out if m.name == "message"]
        self.assertEqual(bodies, ["kept"])
        self.assertEqual(out[-1].fin.uri, NS_MAM)


class StandInStoreTests(SynchronousTestCase):
    def test_a_logging_rooms_archive_keeps_its_last_messages(self) -> None:
        store = in_memory_store()
        for n in range(STAND_IN_ARCHIVE + 5):
            record = HistoryRecord(f"id{n}", float(n), "alice", "alice@example.org", "<m/>", "")
            store.append_message("room@rooms.example.org", record, None)
        page = self.successResultOf(
            store.query_archive("room@rooms.example.org", ArchiveQuery(limit=10 * STAND_IN_ARCHIVE))
        )
        self.assertEqual(len(page.messages), STAND_IN_ARCHIVE)
        self.assertEqual(page.messages[0].stanza_id, "id5")
