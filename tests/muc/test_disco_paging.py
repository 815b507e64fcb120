"""disco#items on the service, paged (XEP-0059), and the bounds on creating rooms (issue 24)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc.directory import RoomIndex, listed_name
from mucauth.settings import LimitSettings, MUCSettings, RoomDefaults
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    SERVICE,
    ServiceTestCase,
    error_of,
    error_text,
    iq,
)
from tests.muc.test_persistent import OWNER, PersistentTestCase, form

NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_RSM = "http://jabber.org/protocol/rsm"


def items_query(paging: str | None = None) -> str:
    inner = f"<set xmlns='{NS_RSM}'>{paging}</set>" if paging is not None else ""
    return f"<query xmlns='{NS_ITEMS}'>{inner}</query>"


def room(n: int | str) -> str:
    return f"r{n}@{SERVICE}"


class Paged:
    """What one disco#items answer says."""

    def __init__(self, reply: domish.Element) -> None:
        assert reply["type"] == "result", reply.toXml()
        query = reply.firstChildElement()
        self.items = [(i["jid"], i.getAttribute("name")) for i in query.elements(NS_ITEMS, "item")]
        self.jids = [jid for jid, _ in self.items]
        [rsm] = list(query.elements(NS_RSM, "set"))
        found = {e.name: e for e in rsm.elements(NS_RSM)}
        self.count = int(str(found["count"]))
        self.first = str(found["first"]) if "first" in found else None
        self.first_index = int(found["first"]["index"]) if "first" in found else None
        self.last = str(found["last"]) if "last" in found else None


class DiscoPagingTests(ServiceTestCase):
    settings = MUCSettings(limits=LimitSettings(disco_page_size=3))

    def ask(self, paging: str | None = None, user: str = BOB) -> Paged:
        self.receive(iq(user, SERVICE, items_query(paging)))
        return Paged(self.take_one())

    def make_rooms(self, *names: int | str) -> None:
        for name in names:
            self.enter(ALICE, "alice", room(name))

    def test_no_set_is_the_first_page_and_says_there_is_more(self) -> None:
        self.make_rooms(1, 2, 3, 4, 5)
        page = self.ask()
        self.assertEqual(page.jids, [room(1), room(2), room(3)])
        self.assertEqual((page.count, page.first_index), (5, 0))
        self.assertEqual((page.first, page.last), (room(1), room(3)))

    def test_a_larger_max_is_cut_to_the_page_size(self) -> None:
        self.make_rooms(1, 2, 3, 4, 5)
        self.assertEqual(len(self.ask("<max>1000</max>").jids), 3)
        self.assertEqual(self.ask("<max>2</max>").jids, [room(1), room(2)])

    def test_max_zero_gives_the_count_only(self) -> None:
        self.make_rooms(1, 2)
        page = self.ask("<max>0</max>")
        self.assertEqual((page.jids, page.count, page.first), ([], 2, None))

    def test_forward_then_backward(self) -> None:
        self.make_rooms(1, 2, 3, 4, 5, 6, 7)
        first = self.ask()
        second = self.ask(f"<after>{first.last}</after>")
        self.assertEqual(second.jids, [room(4), room(5), room(6)])
        self.assertEqual(second.first_index, 3)
        third = self.ask(f"<after>{second.last}</after>")
        self.assertEqual((third.jids, third.first_index), ([room(7)], 6))
        back = self.ask(f"<before>{second.first}</before>")
        self.assertEqual((back.jids, back.first_index), (first.jids, 0))

    def test_empty_before_is_the_last_page(self) -> None:
        self.make_rooms(1, 2, 3, 4, 5)
        page = self.ask("<max>2</max><before/>")
        self.assertEqual((page.jids, page.first_index, page.count), ([room(4), room(5)], 3, 5))

    def test_index_jumps_to_a_position(self) -> None:
        self.make_rooms(1, 2, 3, 4, 5)
        page = self.ask("<index>2</index>")
        self.assertEqual((page.jids, page.first_index), ([room(3), room(4), room(5)], 2))
        past = self.ask("<index>99</index>")
        self.assertEqual((past.jids, past.count), ([], 5))

    def test_past_the_end_is_an_empty_page_with_the_count(self) -> None:
        self.make_rooms(1, 2)
        page = self.ask(f"<after>{room(2)}</after>")
        self.assertEqual((page.jids, page.count, page.first, page.last), ([], 2, None, None))

    def test_hidden_rooms_are_not_listed_nor_counted(self) -> None:
        self.make_rooms(1, 2, 3)
        self.receive(
            iq(
                ALICE,
                room(2),
                f"<query xmlns='{OWNER}'>{form(publicroom='0')}</query>",
                type="set",
            )
        )
        self.take()
        page = self.ask()
        self.assertEqual((page.jids, page.count), ([room(1), room(3)], 2))

    def test_a_room_hidden_behind_the_index_is_still_not_listed(self) -> None:
        self.make_rooms(1, 2)
        self.service.rooms[JID(room(1))].config.public = False
        page = self.ask()
        self.assertEqual((page.jids, page.count), ([room(2)], 1))

    def test_members_only_public_rooms_are_listed(self) -> None:
        self.make_rooms(1)
        self.receive(
            iq(
                ALICE,
                room(1),
                f"<query xmlns='{OWNER}'>{form(membersonly='1')}</query>",
                type="set",
            )
        )
        self.take()
        self.assertEqual(self.ask().jids, [room(1)])

    def test_a_room_created_between_pages_is_found_in_order(self) -> None:
        self.make_rooms(1, 3, 5, 7)
        first = self.ask("<max>2</max>")
        self.assertEqual(first.jids, [room(1), room(3)])
        self.make_rooms(2, 6)  # 2 sorts before the cursor, 6 after
        second = self.ask(f"<max>2</max><after>{first.last}</after>")
        self.assertEqual(
            (second.jids, second.count, second.first_index), ([room(5), room(6)], 6, 3)
        )

    def test_a_room_gone_between_pages_does_not_break_the_walk(self) -> None:
        self.make_rooms(1, 2, 3, 4)
        first = self.ask("<max>2</max>")
        self.leave(ALICE, "alice", room(2))  # temporary: gone
        second = self.ask(f"<max>2</max><after>{first.last}</after>")
        self.assertEqual(second.jids, [room(3), room(4)])

    def test_a_room_made_public_between_pages_is_listed(self) -> None:
        self.make_rooms(1, 2, 3)
        for name in (2, 3):
            self.receive(
                iq(
                    ALICE,
                    room(name),
                    f"<query xmlns='{OWNER}'>{form(publicroom='0')}</query>",
                    type="set",
                )
            )
        self.take()
        first = self.ask("<max>1</max>")
        self.receive(
            iq(ALICE, room(3), f"<query xmlns='{OWNER}'>{form(publicroom='1')}</query>", type="set")
        )
        self.take()
        second = self.ask(f"<max>1</max><after>{first.last}</after>")
        self.assertEqual(second.jids, [room(3)])

    def test_names_are_clipped(self) -> None:
        self.make_rooms(1)
        self.service.rooms[JID(room(1))].config.name = "n" * 300 + "\x01"
        self.service._core.index.changed(self.service.rooms[JID(room(1))])
        [(_, name)] = self.ask().items
        self.assertEqual(name, "n" * 256)

    def test_after_of_another_service_is_item_not_found(self) -> None:
        self.make_rooms(1)
        self.receive(iq(BOB, SERVICE, items_query("<after>r1@elsewhere.example</after>")))
        self.assertEqual(error_of(self.take_one()), ("cancel", "item-not-found"))

    def test_a_bad_max_is_bad_request(self) -> None:
        for bad in ("-1", "x", "1" * 20):
            self.receive(iq(BOB, SERVICE, items_query(f"<max>{bad}</max>")))
            self.assertEqual(error_of(self.take_one()), ("modify", "bad-request"))

    def test_a_page_stays_under_the_stanza_limit(self) -> None:
        self.settings = MUCSettings(
            limits=LimitSettings(disco_page_size=1000, max_stanza_size=4096)
        )
        self.setUp()
        self.make_rooms(*range(100))
        for n in range(100):
            self.service.rooms[JID(room(n))].config.name = "'" * 200
        self.receive(iq(BOB, SERVICE, items_query()))
        reply = self.take_one()
        self.assertLess(len(reply.toXml().encode()), 4096)
        page = Paged(reply)
        self.assertGreater(len(page.jids), 0)
        self.assertEqual(page.count, 100)


class StoredAndLiveTests(PersistentTestCase):
    settings = MUCSettings(
        rooms=RoomDefaults(persistent=True), limits=LimitSettings(disco_page_size=2)
    )

    def ask(self, paging: str | None = None) -> Paged:
        self.receive(iq(BOB, SERVICE, items_query(paging)))
        return Paged(self.take_one())

    def walk(self) -> list[str]:
        jids: list[str] = []
        page = self.ask()
        while page.jids:
            jids += page.jids
            page = self.ask(f"<after>{page.last}</after>")
        return jids

    def test_stored_and_live_rooms_are_merged_without_duplicates(self) -> None:
        for name in (1, 2, 3):
            self.enter(ALICE, "alice", room(name))
        self.leave(ALICE, "alice", room(1))  # stored only, out of memory
        self.restart()
        self.enter(CAROL, "carol", room(2))  # read back, live again
        self.enter(CAROL, "carol", room(4))  # new
        self.assertEqual(self.walk(), [room(1), room(2), room(3), room(4)])
        self.assertEqual(self.ask().count, 4)

    def test_stored_names_and_creators_survive_a_restart(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.owner_set_on(room(1), form(roomname="Maths"))
        self.restart()
        self.assertEqual(self.ask().items, [(room(1), "Maths")])
        self.assertEqual(self.service._core.index.created_by("alice@example.org"), 1)

    def test_a_store_that_cannot_list_still_lists_live_rooms(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.patch(self.store, "list_rooms", lambda after, limit: _failed())
        self.restart()
        self.enter(BOB, "bob", room(2))
        self.assertEqual(self.ask().jids, [room(2)])

    def owner_set_on(self, jid: str, payload: str) -> None:
        self.receive(iq(ALICE, jid, f"<query xmlns='{OWNER}'>{payload}</query>", type="set"))
        self.take()


def _failed() -> object:
    from twisted.internet.defer import fail

    return fail(RuntimeError("database gone"))


class CreationLimitTests(PersistentTestCase):
    settings = MUCSettings(limits=LimitSettings(max_rooms_per_user=2, max_rooms=3))

    def test_a_user_past_the_limit_is_refused_before_the_gate(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.enter(ALICE, "alice", room(2))
        asked = len(self.auth.calls)
        self.join(ALICE, "alice", room(3), id="j3")
        [refusal] = self.take()
        self.assertEqual(len(self.auth.calls), asked, "the gate was asked")
        self.assertEqual((refusal["type"], refusal["id"]), ("error", "j3"))
        self.assertEqual(error_of(refusal), ("cancel", "not-allowed"))
        self.assertIn("too many rooms", error_text(refusal) or "")
        self.assertNotIn(JID(room(3)), self.service.rooms)
        self.assertEqual(self.successResultOf(self.store.room_jids()), [])

    def test_joining_existing_rooms_is_never_limited(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.enter(ALICE, "alice", room(2))
        self.enter(BOB, "bob", room(1))
        self.enter(ALICE, "alice2", room(1))  # a second nick of the same user is still a join
        self.assertEqual(len(self.service.rooms[JID(room(1))]), 2)

    def test_a_room_gone_frees_its_place(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.enter(ALICE, "alice", room(2))
        self.leave(ALICE, "alice", room(1))  # temporary: destroyed
        self.enter(ALICE, "alice", room(3))
        self.assertIn(JID(room(3)), self.service.rooms)

    def test_the_service_wide_bound_is_wait_resource_constraint(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.enter(BOB, "bob", room(2))
        self.enter(CAROL, "carol", room(3))
        self.join("dave@example.org/x", "dave", room(4), id="j4")
        [refusal] = self.take()
        self.assertEqual(error_of(refusal), ("wait", "resource-constraint"))
        self.assertNotIn(JID(room(4)), self.service.rooms)

    def test_joins_decided_together_are_counted_when_admitted(self) -> None:
        self.enter(ALICE, "alice", room(1))
        self.join(ALICE, "alice", room(2), id="j2")
        self.join(ALICE, "alice", room(3), id="j3")  # both passed the first check
        self.auth.allow(1)
        self.take()
        self.auth.allow(2)
        [refusal] = [s for s in self.take() if s.getAttribute("id") == "j3"]
        self.assertEqual(error_of(refusal), ("cancel", "not-allowed"))
        self.assertEqual(sorted(j.full() for j in self.service.rooms), [room(1), room(2)])

    def test_persistent_rooms_count_across_a_restart(self) -> None:
        for name in (1, 2):
            self.enter(ALICE, "alice", room(name))
            self.receive(
                iq(
                    ALICE,
                    room(name),
                    f"<query xmlns='{OWNER}'>{form(persistentroom='1')}</query>",
                    type="set",
                )
            )
            self.leave(ALICE, "alice", room(name))
        self.restart()
        self.join(ALICE, "alice", room(3), id="j3")
        [refusal] = self.take()
        self.assertEqual(error_of(refusal), ("cancel", "not-allowed"))
        # destroying one gives the place back
        self.enter(ALICE, "alice", room(1))
        self.receive(iq(ALICE, room(1), f"<query xmlns='{OWNER}'><destroy/></query>", type="set"))
        self.take()
        self.enter(ALICE, "alice", room(3))
        self.assertIn(JID(room(3)), self.service.rooms)


class RoomIndexTests(ServiceTestCase):
    """The index alone, against a plain sorted list."""

    @settings(max_examples=200, deadline=None)
    @given(
        nodes=st.sets(st.text(alphabet="abcxyz-._09", min_size=1, max_size=6), max_size=40),
        hidden=st.sets(st.integers(0, 39)),
        limit=st.integers(1, 7),
    )
    def test_walking_the_pages_yields_every_listed_room_once_in_order(
        self, nodes: set[str], hidden: set[int], limit: int
    ) -> None:
        index = RoomIndex()
        expected = []
        for n, node in enumerate(sorted(nodes)):
            public = n not in hidden
            index.stored(f"{node}@{SERVICE}", "u@example.org", public, node.upper())
            if public:
                expected.append(node)
        seen: list[str] = []
        after = None
        while True:
            page = index.page(SERVICE, limit, after=after)
            self.assertEqual(page.count, len(expected))
            self.assertEqual(page.first_index, len(seen))
            if not page.items:
                break
            seen += [jid.rpartition("@")[0] for jid, _ in page.items]
            after = page.items[-1][0].rpartition("@")[0]
        self.assertEqual(seen, expected)
        back: list[str] = []
        before = ""
        while True:
            page = index.page(SERVICE, limit, before=before)
            if not page.items:
                break
            back = [jid.rpartition("@")[0] for jid, _ in page.items] + back
            self.assertEqual(page.first_index, len(expected) - len(back))
            before = page.items[0][0].rpartition("@")[0]
        self.assertEqual(back, expected)

    def test_counts_by_creator_follow_live_and_stored(self) -> None:
        index = RoomIndex()
        index.stored(room(1), "a@x", True, "")
        index.stored(room(2), "a@x", False, "")
        index.stored(room(3), "", True, "")  # a row older than the column: nobody's
        self.assertEqual((index.created_by("a@x"), len(index), index.listed(SERVICE)), (2, 3, 2))
        index.forgotten(room(1))
        self.assertEqual((index.created_by("a@x"), len(index), index.listed(SERVICE)), (1, 2, 1))
        index.forget_stored()
        self.assertEqual((index.created_by("a@x"), len(index)), (0, 0))

    def test_listed_name(self) -> None:
        self.assertEqual(listed_name("", "node", 10), "node")
        self.assertEqual(listed_name("a\x00b\ufffe", "node", 10), "ab")
        self.assertEqual(listed_name("x" * 20, "node", 10), "x" * 10)
