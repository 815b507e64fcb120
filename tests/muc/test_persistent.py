"""Persistent rooms on a room store, in memory: what survives an empty room and a restart, what
waits for a room being read back, and what the owner form changes."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.disco import DiscoItems

from mucauth.muc.service import MUCService
from mucauth.settings import MUCSettings, RoomDefaults
from mucauth.store import MemoryRoomStore, RoomRecord
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    error_of,
    iq,
    item,
    message,
    summary,
)

OWNER = "http://jabber.org/protocol/muc#owner"
XDATA = "jabber:x:data"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ITEMS = "<query xmlns='http://jabber.org/protocol/disco#items'/>"


def form(**fields: str | list[str]) -> str:
    """A submitted muc#roomconfig form: ``persistentroom="1"`` for muc#roomconfig_persistentroom."""
    text = f"<field var='FORM_TYPE'><value>{ROOMCONFIG}</value></field>"
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        inner = "".join(f"<value>{v}</value>" for v in values)
        text += f"<field var='muc#roomconfig_{name}'>{inner}</field>"
    return f"<x xmlns='{XDATA}' type='submit'>{text}</x>"


class SlowStore(MemoryRoomStore):
    """Reads answered by hand: ``release()`` fires the oldest read still out."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[Deferred[Any], Deferred[Any]]] = []
        self.fail_reads = False

    def load_room(self, jid: str, history: int) -> Deferred[RoomRecord | None]:
        answer = super().load_room(jid, history)
        waiting: Deferred[RoomRecord | None] = Deferred()
        self.reads.append((answer, waiting))
        return waiting

    def release(self) -> None:
        answer, waiting = self.reads.pop(0)
        if self.fail_reads:
            waiting.errback(RuntimeError("database gone"))
        else:
            answer.addBoth(waiting.callback)


class PersistentTestCase(ServiceTestCase):
    settings = MUCSettings(rooms=RoomDefaults(history_length=5, max_history_length=10))

    def setUp(self) -> None:
        self.store = self.make_store()
        self.store.open()
        self.service_options = {"store": self.store}
        super().setUp()

    def make_store(self) -> MemoryRoomStore:
        return MemoryRoomStore(clock=lambda: 1714564800.0)

    def restart(self) -> None:
        """A new service on the same store, as after a restart of the process."""
        self.take()
        self.service.disownHandlerParent(self.manager)
        self.service.connectionLost(Failure(ConnectionDone()))
        self.use_service(
            MUCService(self.auth, self.settings, clock=self.clock, **self.service_options)
        )

    def stored(self, history: int) -> RoomRecord:
        record = self.successResultOf(self.store.load_room(ROOM, history))
        assert record is not None, "the room is not in the store"
        return record

    def owner_set(self, payload: str, user: str = ALICE) -> domish.Element:
        self.receive(iq(user, ROOM, f"<query xmlns='{OWNER}'>{payload}</query>", type="set"))
        replies = [s for s in self.take() if s.name == "iq"]
        self.assertEqual(len(replies), 1, [s.toXml() for s in replies])
        return replies[0]

    def make_persistent(self, **fields: str | list[str]) -> None:
        reply = self.owner_set(form(persistentroom="1", **fields))
        self.assertEqual(reply["type"], "result", reply.toXml())


class AcrossRestartTests(PersistentTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.make_persistent(roomname="Course room")
        self.receive(message(ALICE, body=None, inner="<subject>Week 3</subject>", id="s1"))
        for n in range(7):
            self.receive(message(ALICE, body=f"post {n}", id=f"m{n}"))
        self.leave(ALICE, "alice")

    def test_a_room_read_back_without_a_join_leaves_memory_at_the_next_sweep(self) -> None:
        self.restart()
        self.receive(iq(BOB, ROOM, "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        self.take()
        self.assertIn(JID(ROOM), self.service.rooms)  # read back to answer the disco query
        self.join(CAROL, "carol")  # a join being decided keeps the room
        self.clock.advance(60)
        self.assertIn(JID(ROOM), self.service.rooms)
        self.auth.allow()
        self.leave(CAROL, "carol")  # emptied by a leave: unloaded at once, as before
        self.receive(iq(BOB, ROOM, "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        self.take()
        self.assertIn(JID(ROOM), self.service.rooms)
        self.clock.advance(60)
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.assertEqual(self.successResultOf(self.store.room_jids()), [ROOM])

    def test_an_empty_persistent_room_leaves_memory_not_the_store(self) -> None:
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.assertEqual(self.successResultOf(self.store.room_jids()), [ROOM])

    def test_a_joiner_after_a_restart_finds_it_as_it_was(self) -> None:
        self.restart()
        sent = self.enter(BOB, "bob")
        [own] = [s for s in sent if s.name == "presence"]
        self.assertNotIn(201, codes(own))
        self.assertEqual(item(own)["affiliation"], "none")
        history = [s for s in sent if s.name == "message" and s.body is not None]
        # history_length 5: the last five of seven.
        self.assertEqual([str(m.body) for m in history], [f"post {n}" for n in range(2, 7)])
        for m in history:
            self.assertEqual(m["from"], f"{ROOM}/alice")
            self.assertEqual(len(list(m.elements("urn:xmpp:delay", "delay"))), 1)
        [subject] = [s for s in sent if s.name == "message" and s.subject is not None]
        self.assertEqual(str(subject.subject), "Week 3")
        self.assertIs(sent[-1], subject)  # the subject comes last (§7.2.15)
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual((room.config.name, room.config.persistent), ("Course room", True))

    def test_the_owner_is_still_owner(self) -> None:
        self.restart()
        self.enter(BOB, "bob")
        sent = self.enter(ALICE, "alice")
        [own] = [
            s
            for s in sent
            if s.name == "presence" and s["to"] == ALICE and s["from"] == f"{ROOM}/alice"
        ]
        self.assertEqual(item(own)["affiliation"], "owner")
        self.assertEqual(item(own)["role"], "moderator")
        # And may still configure it; Bob may not.
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'/>"))
        self.assertEqual(self.take_one()["type"], "result")
        self.receive(iq(BOB, ROOM, f"<query xmlns='{OWNER}'/>"))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))

    def test_occupant_ids_stay_the_same(self) -> None:
        first = self.enter(BOB, "bob")
        self.leave(BOB, "bob")
        self.restart()
        again = self.enter(BOB, "bob")

        def own_id(sent: list[domish.Element]) -> str:
            [own] = [s for s in sent if s.name == "presence"]
            [oid] = list(own.elements("urn:xmpp:occupant-id:0", "occupant-id"))
            return str(oid["id"])

        self.assertEqual(own_id(first), own_id(again))

    def test_destroy_removes_it_for_good(self) -> None:
        self.restart()
        self.enter(ALICE, "alice")
        reply = self.owner_set("<destroy><reason>Course over</reason></destroy>")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(self.successResultOf(self.store.room_jids()), [])
        self.clock.advance(RoomDefaults().tombstone_lifetime)  # its tombstone expired
        self.restart()
        sent = self.enter(BOB, "bob")
        [own] = [s for s in sent if s.name == "presence"]
        self.assertIn(201, codes(own))  # a new room
        self.assertEqual([s for s in sent if s.name == "message" and s.body is not None], [])

    def test_made_temporary_again_it_goes_when_empty(self) -> None:
        self.enter(ALICE, "alice")
        self.assertEqual(self.owner_set(form(persistentroom="0"))["type"], "result")
        self.assertEqual(self.successResultOf(self.store.room_jids()), [])
        self.leave(ALICE, "alice")
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.restart()
        [own] = [s for s in self.enter(BOB, "bob") if s.name == "presence"]
        self.assertIn(201, codes(own))


class TemporaryRoomTests(PersistentTestCase):
    def test_a_temporary_room_leaves_nothing(self) -> None:
        self.enter(ALICE, "alice")
        self.receive(message(ALICE, body="hello"))
        self.leave(ALICE, "alice")
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.assertEqual(self.successResultOf(self.store.room_jids()), [])

    def test_rooms_persistent_by_default_are_stored_at_creation(self) -> None:
        self.settings = MUCSettings(rooms=RoomDefaults(persistent=True))
        self.restart()
        self.enter(ALICE, "alice")
        self.assertEqual(self.successResultOf(self.store.room_jids()), [ROOM])
        record = self.stored(10)
        self.assertEqual(record.affiliations, {"alice@example.org": "owner"})


class LoadingTests(PersistentTestCase):
    """Stanzas to a room being read back wait for it, in order; a store that fails refuses
    them rather than making the room afresh."""

    def make_store(self) -> MemoryRoomStore:
        return SlowStore()

    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.make_persistent()
        self.leave(ALICE, "alice")
        self.restart()

    def test_a_join_waits_for_the_room_then_goes_on(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        self.join(BOB, "bob")
        self.receive(iq(BOB, ROOM, "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        self.assertEqual(self.take(), [])
        asked = len(self.auth.calls)  # the gate is asked once the room is known
        self.assertEqual(asked, 1)  # alice's, before the restart
        self.assertEqual(self.service.rooms_loading, 1)
        store.release()
        self.assertEqual(self.service.rooms_loading, 0)
        self.assertEqual(len(self.auth.calls), asked + 1)
        self.auth.allow()
        sent = self.take()
        [own] = [s for s in sent if s.name == "presence"]
        self.assertNotIn(201, codes(own))
        # The disco#info sent after the join is answered after it, as an occupant's.
        self.assertEqual(summary(sent[-1])[0:2], ("iq", ROOM))
        self.assertEqual(sent[-1]["type"], "result")

    def test_one_read_for_many_stanzas(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        self.join(BOB, "bob")
        self.join(CAROL, "carol")
        self.assertEqual(len(store.reads), 1)

    def test_a_read_that_fails_refuses_what_waits(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        store.fail_reads = True
        self.join(BOB, "bob")
        self.receive(iq(CAROL, ROOM, f"<query xmlns='{OWNER}'/>"))
        store.release()
        sent = self.take()
        self.assertEqual(len(sent), 2)
        for stanza in sent:
            self.assertEqual(stanza["type"], "error")
            self.assertEqual(error_of(stanza), ("wait", "service-unavailable"))
        self.assertNotIn(JID(ROOM), self.service.rooms)
        self.assertEqual(len(self.auth.calls), 1)  # alice's, before the restart

    def test_a_read_that_takes_too_long_refuses_what_waits(self) -> None:
        self.join(BOB, "bob")
        self.clock.advance(self.settings.load_timeout)
        [refused] = self.take()
        self.assertEqual(error_of(refused), ("wait", "service-unavailable"))
        self.assertEqual(self.service.rooms_loading, 0)

    def test_a_message_to_a_room_not_in_memory_waits_for_nothing(self) -> None:
        # Not an occupant, so nothing to load for: the room says so at once.
        self.receive(message(BOB, body="anyone?"))
        [refused] = self.take()
        self.assertEqual(refused["type"], "error")
        self.assertEqual(self.service.rooms_loading, 0)


class KnownRoomsTests(PersistentTestCase):
    """Only rooms the store listed when the stream came up are read back: a new room costs no
    read. Another process's rooms (one PostgreSQL behind ejabberd's balancing) are listed
    when the stream comes up again, which is when ejabberd's routing can change."""

    def make_store(self) -> MemoryRoomStore:
        return SlowStore()

    def test_a_new_room_is_made_without_a_read(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        sent = self.enter(ALICE, "alice")
        self.assertEqual(store.reads, [])
        [own] = [s for s in sent if s.name == "presence"]
        self.assertIn(201, codes(own))

    def test_a_room_another_process_stored_is_found_after_a_reconnect(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        store.save_room(
            ROOM,
            {"history_length": 5, "persistent": True},
            name="Made elsewhere",
            public=True,
            subject="From the other process",
            subject_nick="zed",
        )
        store.set_affiliation(ROOM, "zed@example.org", "owner")
        self.restart()  # the stream comes up again: the list is read afresh
        self.join(BOB, "bob")
        store.release()
        self.auth.allow()
        sent = self.take()
        [own] = [s for s in sent if s.name == "presence"]
        self.assertNotIn(201, codes(own))
        [subject] = [s for s in sent if s.name == "message" and s.subject is not None]
        self.assertEqual(str(subject.subject), "From the other process")

    def test_a_store_that_cannot_list_makes_every_room_looked_for(self) -> None:
        store = self.store
        assert isinstance(store, SlowStore)
        self.patch(store, "room_jids", _failed)
        self.restart()
        self.join(ALICE, "alice")
        self.assertEqual(len(store.reads), 1)
        store.release()
        self.auth.allow()
        [own] = [s for s in self.take() if s.name == "presence"]
        self.assertIn(201, codes(own))


class OwnerFormTests(PersistentTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")

    def config_form(self) -> data_form.Form:
        self.receive(iq(ALICE, ROOM, f"<query xmlns='{OWNER}'/>"))
        reply = self.take_one()
        found = data_form.findForm(reply.firstChildElement(), ROOMCONFIG)
        assert found is not None
        return found

    def test_the_form_offers_the_fields_deployments_use(self) -> None:
        fields = self.config_form().fields
        for name in (
            "roomname",
            "roomdesc",
            "persistentroom",
            "publicroom",
            "changesubject",
            "allowpm",
            "whois",
            "historylength",
            "maxusers",
            "enablelogging",
            "roomowners",
            "roomadmins",
        ):
            self.assertIn(f"muc#roomconfig_{name}", fields)
        self.assertEqual(fields["muc#roomconfig_roomowners"].values, ["alice@example.org"])

    def test_roomowners_and_roomadmins_replace_the_lists_and_are_stored(self) -> None:
        self.make_persistent(
            roomowners=["alice@example.org", "carol@example.org"],
            roomadmins=["bob@example.org"],
        )
        # Bob is told of his new affiliation.
        record = self.stored(0)
        self.assertEqual(
            record.affiliations,
            {
                "alice@example.org": "owner",
                "carol@example.org": "owner",
                "bob@example.org": "admin",
            },
        )
        self.assertEqual(self.owner_set(form(roomadmins=[]))["type"], "result")
        record = self.stored(0)
        self.assertNotIn("bob@example.org", record.affiliations)

    def test_an_affiliation_change_is_broadcast(self) -> None:
        self.receive(
            iq(
                ALICE,
                ROOM,
                f"<query xmlns='{OWNER}'>{form(roomadmins=['bob@example.org'])}</query>",
                type="set",
            )
        )
        sent = self.take()
        changed = [s for s in sent if s.name == "presence" and s["from"] == f"{ROOM}/bob"]
        self.assertEqual(sorted(s["to"] for s in changed), sorted([ALICE, BOB]))
        for presence in changed:
            self.assertEqual(
                (item(presence)["affiliation"], item(presence)["role"]), ("admin", "moderator")
            )

    def test_no_owner_left_is_a_conflict(self) -> None:
        reply = self.owner_set(form(roomowners=[]))
        self.assertEqual(error_of(reply), ("cancel", "conflict"))
        self.assertEqual(self.service.rooms[JID(ROOM)].affiliations, {"alice@example.org": "owner"})

    def test_historylength_trims_what_is_kept_and_sent(self) -> None:
        self.make_persistent(historylength="2")
        for n in range(4):
            self.receive(message(ALICE, body=f"p{n}", id=f"p{n}"))
        self.take()
        self.leave(BOB, "bob")
        sent = self.enter(BOB, "bob")
        bodies = [str(s.body) for s in sent if s.name == "message" and s.body is not None]
        self.assertEqual(bodies, ["p2", "p3"])
        record = self.stored(10)
        self.assertEqual(len(record.history), 2)

    def test_historylength_over_the_maximum_is_refused(self) -> None:
        reply = self.owner_set(form(historylength="11"))
        self.assertEqual(error_of(reply), ("modify", "not-acceptable"))
        self.assertEqual(self.service.rooms[JID(ROOM)].config.history_length, 5)

    def test_allowpm_none_refuses_private_messages(self) -> None:
        self.assertEqual(self.owner_set(form(allowpm="none"))["type"], "result")
        self.receive(message(BOB, f"{ROOM}/alice", "psst", type="chat"))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))

    def test_allowpm_moderators_lets_the_owner_write(self) -> None:
        self.assertEqual(self.owner_set(form(allowpm="moderators"))["type"], "result")
        self.receive(message(ALICE, f"{ROOM}/bob", "hello", type="chat"))
        [relayed] = self.take()
        self.assertEqual((relayed["to"], relayed["type"]), (BOB, "chat"))
        self.receive(message(BOB, f"{ROOM}/alice", "hi", type="chat"))
        self.assertEqual(error_of(self.take_one()), ("auth", "forbidden"))

    def test_enablelogging_keeps_every_message(self) -> None:
        self.make_persistent(enablelogging="1", historylength="2")
        for n in range(4):
            self.receive(message(ALICE, body=f"p{n}", id=f"p{n}"))
        record = self.stored(10)
        self.assertEqual(len(record.history), 4)


class StoredDiscoTests(PersistentTestCase):
    def test_stored_public_rooms_are_listed_when_empty(self) -> None:
        self.enter(ALICE, "alice")
        self.make_persistent(roomname="Listed")
        self.leave(ALICE, "alice")
        self.enter(ALICE, "alice", f"hidden@{SERVICE}")
        self.receive(
            iq(
                ALICE,
                f"hidden@{SERVICE}",
                f"<query xmlns='{OWNER}'>{form(persistentroom='1', publicroom='0')}</query>",
                type="set",
            )
        )
        self.take()
        self.leave(ALICE, "alice", f"hidden@{SERVICE}")
        self.assertEqual(self.service.rooms, {})
        self.receive(iq(BOB, SERVICE, ITEMS))
        reply = self.take_one()
        self.assertEqual(reply["type"], "result")
        items = DiscoItems.fromElement(reply.firstChildElement())
        self.assertEqual([(i.entity, i.name) for i in items], [(JID(ROOM), "Listed")])


def _failed() -> Deferred[list[tuple[str, str]]]:
    d: Deferred[list[tuple[str, str]]] = Deferred()
    d.errback(RuntimeError("database gone"))
    return d
