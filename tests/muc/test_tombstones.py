"""A destroyed persistent room leaves a tombstone (issue 25): joins to its address are refused
``cancel/gone`` with the alternate venue for ``[rooms] tombstone_lifetime``, also after a
restart; disco#info says ``item-not-found``; the room limits do not count it; it expires and is
pruned; the admin API's deletion leaves none and lifts one."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.settings import LimitSettings, MUCSettings, RoomDefaults
from mucauth.store import Tombstone
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    NS_STANZAS,
    ROOM,
    START,
    error_of,
    error_text,
    iq,
)
from tests.muc.test_persistent import PersistentTestCase, form

DAY = 86400.0
NEW = "new@rooms.example.org"
DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"


def gone_of(stanza: domish.Element) -> str:
    [error] = [c for c in stanza.elements() if c.name == "error"]
    [gone] = list(error.elements(NS_STANZAS, "gone"))
    return str(gone)


class TombstoneTestCase(PersistentTestCase):
    settings = MUCSettings(rooms=RoomDefaults(tombstone_lifetime=7 * DAY))

    def destroy(
        self, inner: str = f"<destroy jid='{NEW}'><reason>Moved</reason></destroy>"
    ) -> None:
        reply = self.owner_set(inner)
        self.assertEqual(reply["type"], "result", reply.toXml())

    def refused_join(self, user: str = BOB, nick: str = "bob") -> domish.Element:
        calls = len(self.auth.calls)
        self.join(user, nick, id="jg")
        self.assertEqual(len(self.auth.calls), calls, "the gate was asked about a gone room")
        reply = self.take_one()
        self.assertEqual((reply.name, reply["type"], reply["id"]), ("presence", "error", "jg"))
        return reply

    def persistent_room(self) -> None:
        self.enter(ALICE, "alice")
        self.make_persistent()


class GoneTests(TombstoneTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.persistent_room()

    def test_a_join_is_refused_gone_with_the_new_address(self) -> None:
        self.destroy()
        reply = self.refused_join()
        self.assertEqual(error_of(reply), ("cancel", "gone"))
        self.assertEqual(gone_of(reply), f"xmpp:{NEW}?join")
        self.assertEqual(error_text(reply), "Moved")
        self.assertNotIn(JID(ROOM), self.service.rooms)

    def test_without_a_venue_gone_is_empty(self) -> None:
        self.destroy("<destroy/>")
        reply = self.refused_join()
        self.assertEqual(error_of(reply), ("cancel", "gone"))
        self.assertEqual((gone_of(reply), error_text(reply)), ("", None))

    def test_the_tombstone_outlives_a_restart(self) -> None:
        self.destroy()
        self.restart()
        reply = self.refused_join(CAROL, "carol")
        self.assertEqual(gone_of(reply), f"xmpp:{NEW}?join")
        [stone] = self.successResultOf(self.store.tombstones(self.clock.seconds()))
        self.assertEqual(stone, Tombstone(ROOM, NEW, "Moved", START + 7 * DAY))

    def test_the_owner_cannot_make_it_again_either(self) -> None:
        self.destroy()
        self.assertEqual(error_of(self.refused_join(ALICE, "alice")), ("cancel", "gone"))

    def test_disco_info_says_item_not_found(self) -> None:
        self.destroy()
        self.receive(iq(BOB, ROOM, DISCO_INFO))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_after_its_lifetime_the_name_is_free(self) -> None:
        self.destroy()
        self.clock.advance(7 * DAY)
        sent = self.enter(BOB, "bob")
        self.assertEqual([s for s in sent if s.getAttribute("type") == "error"], [])

    def test_a_join_being_decided_when_the_room_goes_is_refused(self) -> None:
        self.join(BOB, "bob", id="jb")
        self.destroy()
        self.auth.allow()
        [reply] = [s for s in self.take() if s.getAttribute("id") == "jb"]
        self.assertEqual(error_of(reply), ("cancel", "gone"))
        self.assertNotIn(JID(ROOM), self.service.rooms)

    def test_retention_prunes_expired_tombstones(self) -> None:
        self.destroy()
        self.clock.advance(7 * DAY)
        self.service._retention.prune()
        self.assertEqual(self.successResultOf(self.store.tombstones(0)), [])

    def test_the_admin_api_lifts_a_tombstone(self) -> None:
        self.destroy()
        live, stored = self.successResultOf(self.service.destroy_room(ROOM))
        self.assertEqual((live, stored), (False, True))
        self.assertEqual(self.successResultOf(self.store.tombstones(0)), [])
        self.enter(BOB, "bob")
        self.assertIn(JID(ROOM), self.service.rooms)


class NoTombstoneTests(TombstoneTestCase):
    def test_a_temporary_room_leaves_none(self) -> None:
        self.enter(ALICE, "alice")
        self.destroy()
        self.assertEqual(self.successResultOf(self.store.tombstones(0)), [])
        self.enter(BOB, "bob")

    def test_a_room_made_temporary_first_leaves_none(self) -> None:
        self.persistent_room()
        self.assertEqual(self.owner_set(form(persistentroom="0"))["type"], "result")
        self.destroy()
        self.enter(BOB, "bob")

    def test_the_admin_api_leaves_none(self) -> None:
        self.persistent_room()
        self.take()
        self.successResultOf(self.service.destroy_room(ROOM, "spam"))
        self.take()
        self.assertEqual(self.successResultOf(self.store.tombstones(0)), [])
        self.enter(BOB, "bob")


class LifetimeZeroTests(TombstoneTestCase):
    settings = MUCSettings(rooms=RoomDefaults(tombstone_lifetime=0))

    def test_zero_leaves_none(self) -> None:
        self.persistent_room()
        self.destroy()
        self.assertEqual(self.successResultOf(self.store.tombstones(0)), [])
        self.enter(BOB, "bob")


class LimitTests(TombstoneTestCase):
    settings = MUCSettings(
        rooms=RoomDefaults(tombstone_lifetime=7 * DAY),
        limits=LimitSettings(max_rooms_per_user=1, max_rooms=1),
    )

    def test_a_tombstone_counts_against_no_limit(self) -> None:
        self.persistent_room()
        self.destroy()
        self.restart()  # the room index read back from the store, tombstones not in it
        sent = self.enter(ALICE, "alice", "other@rooms.example.org")
        self.assertEqual([s for s in sent if s.getAttribute("type") == "error"], [])
