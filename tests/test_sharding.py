"""Several mucauth processes behind one ejabberd: the "more than one process" deployment.

ejabberd accepts N connections for one component domain; with ``domain_balancing``
``bare_destination`` and ``component_number: N`` it sends every stanza of one room (to the room,
to its occupants, its own unavailables for departed clients) over the same connection. So each
mucauth process owns a fixed share of the rooms and needs to know nothing about the others.

These tests run the real thing (ejabberd, the example auth service, two ``twistd mucauth``) and
check what an operator relies on: no room is ever split between processes; a process that dies
takes only its own rooms with it (ejabberd then drops their stanzas silently: no bounce, no
error); and a restarted process takes its slot back, so the same rooms come back to it and
their users rejoin through the gate again. After an ejabberd restart every instance reconnects
by itself and the rooms spread over all of them again.
"""

from __future__ import annotations

import time

import pytest

from tests.support.shards import INSTANCES, Shards
from tests.support.stack import ClassFixture
from tests.support.xmpp import JoinResult, XMPPTestError

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.ejabberd

ROOMS = 20
# How long to wait for something that must NOT happen (a stanza to a dead instance's room).
SILENCE = 1.5


class ShardingTests(ClassFixture):
    """Two mucauth processes share rooms.localhost behind ejabberd's domain_balancing."""

    shards: Shards

    @classmethod
    def start_fixture(cls) -> Shards:
        return Shards().start()

    @classmethod
    def stop_fixture(cls, fixture: Shards) -> None:
        fixture.stop()

    def setUp(self) -> None:
        super().setUp()
        self.shards = self.fixture()
        self.alice = self.shards.clients["alice"]
        self.bob = self.shards.clients["bob"]
        self.carol = self.shards.clients["carol"]

    def new_rooms(self, prefix: str, count: int) -> list[str]:
        return [self.shards.room(f"{prefix}-{n}") for n in range(count)]

    def assert_joined(self, result: JoinResult) -> None:
        self.assertTrue(result.ok, result.describe() + "\n" + self.shards.diagnostics())

    def join_pair(self, room: str) -> None:
        """alice then bob join; each sees the other, so the room lives in one process."""
        self.assert_joined(self.alice.join(room, "alice"))
        joined = self.bob.join(room, "bob")
        self.assert_joined(joined)
        self.assertEqual(joined.occupants, ("alice",), f"{room}: bob must see alice")
        self.alice.wait_presence(f"{room}/bob", "available")

    def assert_conversation(self, room: str) -> None:
        self.bob.send_groupchat(room, f"bob in {room}")
        self.assertEqual(self.alice.wait_message(room).body, f"bob in {room}")
        self.assertEqual(self.bob.wait_message(room).body, f"bob in {room}")  # the echo
        self.alice.send_groupchat(room, f"alice in {room}")
        self.assertEqual(self.bob.wait_message(room).body, f"alice in {room}")
        self.assertEqual(self.alice.wait_message(room).body, f"alice in {room}")

    def owner(self, room: str) -> int:
        owners = self.shards.owners(room)
        self.assertEqual(len(owners), 1, f"{room} is handled by {owners}, not by exactly one")
        return owners[0]

    def assert_silent(self, room: str) -> None:
        """A message to ``room`` reaches nobody: its instance is gone."""
        self.bob.send_groupchat(room, "anyone?")
        with self.assertRaises(XMPPTestError):
            self.alice.wait_message(room, timeout=SILENCE)

    # -- tests -----------------------------------------------------------------------------

    def test_every_room_lives_whole_in_one_instance(self) -> None:
        rooms = self.new_rooms("whole", ROOMS)
        for room in rooms:
            self.join_pair(room)
        for room in rooms:
            self.assert_conversation(room)
        owners = {room: self.owner(room) for room in rooms}
        self.assertEqual(
            set(owners.values()), set(range(INSTANCES)), f"rooms did not spread: {owners}"
        )
        # Both gates refuse: carol is turned away whichever process owns the room.
        for index in range(INSTANCES):
            room = next(r for r, i in owners.items() if i == index)
            refused = self.carol.join(room, "carol")
            self.assertFalse(refused.ok, refused.describe())
            self.assertEqual(refused.condition, "forbidden", refused.error_xml)
        for room in rooms:
            self.alice.leave(room)
            self.bob.leave(room)

    def test_service_disco_items_lists_one_instances_rooms(self) -> None:
        """The service JID is routed to one fixed instance, which knows only its own rooms."""
        rooms = self.new_rooms("listed", 8)
        for room in rooms:
            self.assert_joined(self.alice.join(room, "alice"))
        owners = {room: self.owner(room) for room in rooms}
        reply = self.alice.iq(
            f"<iq type='get' to='{self.shards.ejabberd.component_domain}'>"
            "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        )
        listed = {room for room in rooms if f'jid="{room}"' in reply}
        answering = {owners[room] for room in listed}
        self.assertEqual(len(answering), 1, f"listed {listed} of owners {owners}: {reply}")
        (index,) = answering
        self.assertEqual(listed, {r for r, i in owners.items() if i == index}, reply)
        for room in rooms:
            self.alice.leave(room)

    def test_a_crashed_instance_takes_only_its_rooms_and_gets_them_back(self) -> None:
        rooms = self.new_rooms("crash", 8)
        for room in rooms:
            self.join_pair(room)
        owners = {room: self.owner(room) for room in rooms}
        victim = 0
        lost = [r for r, i in owners.items() if i == victim]
        kept = [r for r, i in owners.items() if i != victim]
        self.assertTrue(lost and kept, f"the rooms did not spread: {owners}")
        asked = len(self.shards.auth.requests())

        self.shards.crash_instance(victim)
        # The survivor's rooms go on as if nothing happened, joins through its gate included.
        for room in kept:
            self.assert_conversation(room)
        self.alice.leave(kept[0])
        self.assert_joined(self.alice.join(kept[0], "alice"))
        # ejabberd drops everything for the dead slot without a word: no bounce, no error.
        self.assert_silent(lost[0])
        self.assertEqual(self.alice.self_ping(f"{lost[0]}/alice", timeout=SILENCE), "timeout")
        with self.assertRaises(XMPPTestError):
            self.carol.join(lost[-1], "carol", timeout=SILENCE)

        started = time.monotonic()
        self.shards.start_instance(victim)
        self.assertLess(time.monotonic() - started, 10)
        # Same slot, same rooms: the restarted process answers for them, empty, so the
        # occupants' self-ping (XEP-0410) tells them to rejoin.
        self.assertEqual(self.alice.self_ping(f"{lost[0]}/alice"), "not-acceptable")
        offset = len(self.shards.instances[victim].log_text())
        for room in lost:
            self.join_pair(room)
            self.assert_conversation(room)
        rejoined = self.shards.instances[victim].log_text()[offset:]
        for room in lost:
            self.assertIn(f"room={room} ", rejoined, "the room did not come back to its instance")
        # Every rejoin went through the gate again (no decision cache configured).
        rejoins = [r for r in self.shards.auth.requests()[asked:] if r["args"]["mucJID"] in lost]
        self.assertGreaterEqual(len(rejoins), 2 * len(lost), rejoins)
        refused = self.carol.join(lost[0], "carol")
        self.assertEqual(refused.condition, "forbidden", refused.describe())
        # The survivor's occupants never had to rejoin.
        for room in kept:
            self.assert_conversation(room)
        for room in rooms:
            self.alice.leave(room)
            self.bob.leave(room)

    def test_every_instance_comes_back_after_an_ejabberd_restart(self) -> None:
        """The links reconnect by themselves; rooms start empty and spread over both again."""
        started = time.monotonic()
        self.shards.restart_ejabberd()
        self.assertLess(time.monotonic() - started, 15)
        alice, bob = self.shards.clients["alice"], self.shards.clients["bob"]
        rooms = self.new_rooms("restarted", 8)
        for room in rooms:
            joined = alice.join(room, "alice")
            self.assert_joined(joined)
            self.assertIn(201, joined.status_codes, "rooms do not survive the restart")
            self.assert_joined(bob.join(room, "bob"))
            bob.send_groupchat(room, "back")
            self.assertEqual(alice.wait_message(room).body, "back")
        owners = {room: self.owner(room) for room in rooms}
        self.assertEqual(set(owners.values()), set(range(INSTANCES)), owners)
        for room in rooms:
            alice.leave(room)
            bob.leave(room)
