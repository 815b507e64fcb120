"""mucauth behind an ejabberd cluster: two nodes, one mucauth process on each, one PostgreSQL.

Users log in to either node; ejabberd's ``domain_balancing`` (``bare_destination``, two slots)
is cluster-wide, so every stanza of one room reaches the one process holding that room's slot,
whichever node the sender is on. What the tests pin down, for the README's "Scaling out":

* users on both nodes share every room, each join asks the gate once;
* a killed process's rooms do not move: ejabberd 23.01 keeps its slot and drops the slot's
  stanzas without a word (no bounce, no 332) until a process connects again and takes the
  free slot; the restarted process answers the former occupants' self-ping with
  ``not-acceptable`` (rejoin), persistent rooms come back from PostgreSQL with subject,
  affiliations and archive, and the survivor's occupants never notice;
* a stopped ejabberd node frees the slot of the process connected to it: the other node's
  users keep chatting in the other process's rooms, and the freed rooms answer again once that
  process reconnects (to its node, when it is back);
* rooms move only with their slot: a process beyond ``component_number`` never takes one over,
  so no room is ever served by two processes.

One cluster for the class; the tests run in name order and each leaves the cluster whole.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from examples._stack import MucauthProcess
from tests.support.cluster import ClusterFixture
from tests.support.rooms import config_iq, is_result, self_item
from tests.support.xmpp import XMPPClient, XMPPTestError

pytestmark = [pytest.mark.ejabberd, pytest.mark.postgresql]

# alice and bob log in to node 1, carol and dave to node 2; eve is refused by the gate.
USERS = {"alice": 0, "bob": 0, "carol": 1, "dave": 1, "eve": 1}
RULES: dict[str, Any] = {
    "rules": [
        {"user": "eve@localhost", "room": "*", "allow": False, "reason": "eve stays out"},
        {"user": "*", "room": "*"},
    ]
}
# How long to wait for something that must NOT happen (a stanza to a room nobody serves).
SILENCE = 1.5


def status_332_from(client: XMPPClient, rooms: list[str]) -> list[str]:
    """The presences with status 332 ``client`` received from ``rooms``."""
    found = []
    for stanza in list(client._inbox.items):  # the tests' own client: read its inbox
        sender = str(stanza["from"])
        if sender.split("/")[0] in rooms and 'code="332"' in str(stanza):
            found.append(str(stanza))
    return found


class ClusterTests(ClusterFixture):
    """Two clustered ejabberd nodes, a mucauth process behind each, PostgreSQL shared."""

    users = USERS
    rules = RULES

    def owner(self, room: str) -> int:
        owners = self.shards.owners(room)
        self.assertEqual(len(owners), 1, f"{room} is handled by {owners}, not by exactly one")
        return owners[0]

    def converse(self, room: str, a: str, b: str) -> None:
        """``a`` and ``b`` (on any nodes) each get the other's message and their own echo."""
        for sender, receiver in ((a, b), (b, a)):
            body = f"{sender} in {room}"
            self.client(sender).send_groupchat(room, body)
            self.assertEqual(self.client(receiver).wait_message(room).body, body)
            self.assertEqual(self.client(sender).wait_message(room).body, body)

    def asked(self, user: str, room: str) -> int:
        """How often the gate was asked about ``user`` joining ``room``."""
        return sum(
            1
            for r in self.shards.auth.requests()
            if r["args"]["mucJID"] == room and r["args"]["userJID"] == f"{user}@localhost"
        )

    def make_persistent(self, room: str, subject: str, body: str) -> None:
        """alice creates ``room``, makes it persistent, sets its subject, posts, and stays."""
        joined = self.joined("alice", room)
        self.assertIn(201, joined.status_codes, joined.describe())
        alice = self.client("alice")
        self.assertTrue(is_result(alice.iq(config_iq(room, persistentroom="1"))))
        alice.raw(
            f"<message type='groupchat' to='{room}' id='s'><subject>{subject}</subject></message>"
        )
        alice.send_groupchat(room, body)
        self.assertEqual(alice.wait_message(room).body, body)

    def leave_all(self, rooms: list[str], *users: str) -> None:
        for room in rooms:
            for user in users:
                self.client(user).leave(room)

    # -- tests -----------------------------------------------------------------------------

    def test_1_users_on_both_nodes_share_every_room(self) -> None:
        temporary = [self.shards.room(f"shared-{n}") for n in range(6)]
        persistent = [self.shards.room(f"lasting-{n}") for n in range(2)]
        for n, room in enumerate(persistent):
            self.make_persistent(room, f"topic {n}", f"hello {n}")
        for room in temporary:
            self.joined("alice", room)
        for room in temporary + persistent:
            carol = self.joined("carol", room)
            self.assertIn("alice", carol.occupants, f"{room}: carol (node 2) must see alice")
            self.client("alice").wait_presence(f"{room}/carol", "available")
            self.converse(room, "alice", "carol")
        for room in persistent:
            dave = self.joined("dave", room)  # node 2, after the fact: history and subject
            self.assertIn(f"hello {persistent.index(room)}", dave.history)
            self.assertEqual(dave.subject, f"topic {persistent.index(room)}")
        owners = {room: self.owner(room) for room in temporary + persistent}
        self.assertEqual(set(owners.values()), {0, 1}, f"rooms did not spread: {owners}")
        for room in temporary + persistent:
            for user in ("alice", "carol"):
                self.assertEqual(self.asked(user, room), 1, f"{user} in {room}")
        # Refused by the gate whichever process owns the room, asked once each time.
        for index in (0, 1):
            room = next(r for r, i in owners.items() if i == index)
            refused = self.client("eve").join(room, "eve")
            self.assertEqual(refused.condition, "forbidden", refused.describe())
            self.assertEqual(self.asked("eve", room), 1)
        self.leave_all(temporary + persistent, "alice", "carol")
        self.leave_all(persistent, "dave")

    def test_2_a_killed_process_rooms_wait_for_a_process_and_come_back_whole(self) -> None:
        persistent = [self.shards.room(f"kept-{n}") for n in range(6)]
        temporary = [self.shards.room(f"passing-{n}") for n in range(6)]
        for n, room in enumerate(persistent):
            self.make_persistent(room, f"subject {n}", f"message {n}")
        for room in temporary:
            self.joined("alice", room)
        for room in persistent + temporary:
            self.joined("carol", room)
        owners = {room: self.owner(room) for room in persistent + temporary}
        victim = owners[persistent[0]]
        lost = [r for r in persistent + temporary if owners[r] == victim]
        kept = [r for r in persistent + temporary if owners[r] != victim]
        self.assertTrue(kept, f"every room on one instance: {owners}")
        self.shards.wait_written(persistent)

        self.shards.crash_instance(victim)
        killed = time.monotonic()
        # The survivor's rooms go on, for users on both nodes.
        for room in kept:
            self.converse(room, "carol", "alice")
        # The dead process's rooms do not move to the survivor: ejabberd keeps the slot and
        # drops its stanzas, silently.
        self.client("carol").send_groupchat(lost[0], "anyone?")
        with self.assertRaises(XMPPTestError):
            self.client("alice").wait_message(lost[0], timeout=SILENCE)
        self.assertEqual(
            self.client("alice").self_ping(f"{lost[0]}/alice", timeout=SILENCE), "timeout"
        )

        self.shards.start_instance(victim)
        # The restarted process takes the free slot: the rooms answer again, empty, and the
        # former occupants' self-ping (XEP-0410) tells them to rejoin.
        self.assertEqual(self.client("alice").self_ping(f"{lost[0]}/alice"), "not-acceptable")
        answered = time.monotonic() - killed
        self.assertLess(answered, 20, "the rooms took too long to answer again")
        for room in lost:
            for user in ("alice", "carol"):
                self.assertEqual(self.client(user).self_ping(f"{room}/{user}"), "not-acceptable")
        # Nobody heard a 332: a killed process cannot say goodbye and ejabberd does not.
        for user in ("alice", "carol"):
            self.assertEqual(status_332_from(self.client(user), lost), [])
        for room in lost:
            before = {user: self.asked(user, room) for user in ("alice", "carol")}
            alice = self.joined("alice", room)
            carol = self.joined("carol", room)
            self.assertEqual(carol.occupants, ("alice",), room)
            if room in persistent:
                n = persistent.index(room)
                self.assertNotIn(201, alice.status_codes, room)
                self.assertEqual(alice.subject, f"subject {n}", room)
                self.assertIn(f"message {n}", alice.history, room)
                self.assertEqual(self_item(alice)[0], "owner", alice.describe())
            else:
                self.assertIn(201, alice.status_codes, "a temporary room starts again empty")
            for user in ("alice", "carol"):  # each rejoin through the gate, once
                self.assertEqual(self.asked(user, room), before[user] + 1, f"{user} {room}")
            self.converse(room, "alice", "carol")
        # Back in the same process (the same slot), and nowhere else.
        for room in lost:
            self.assertEqual(self.owner(room), victim, room)
        # The survivor's occupants never had to rejoin.
        for room in kept:
            self.assertEqual(self.client("carol").self_ping(f"{room}/carol"), "result")
            self.converse(room, "alice", "carol")
        self.leave_all(persistent + temporary, "alice", "carol")

    def test_3_a_stopped_node_leaves_the_other_nodes_users_chatting(self) -> None:
        rooms = [self.shards.room(f"steady-{n}") for n in range(8)]
        for room in rooms:
            self.joined("alice", room)
            self.joined("bob", room)
            self.joined("carol", room)
        owners = {room: self.owner(room) for room in rooms}
        behind_node_1 = [r for r in rooms if owners[r] == 0]
        behind_node_2 = [r for r in rooms if owners[r] == 1]
        self.assertTrue(behind_node_1 and behind_node_2, owners)
        node = self.shards.cluster.nodes[1]
        instance = self.shards.instances[1]
        offset = len(instance.log_text())

        node.stop()  # carol's and dave's sessions and mucauth-1's link go with it
        for user in ("carol", "dave", "eve"):
            self.shards.clients.pop(user).disconnect()
        # alice and bob (node 1) go on in the rooms of the process connected to node 1.
        for room in behind_node_1:
            self.converse(room, "alice", "bob")
        # The other process's slot was freed when its node went: its rooms are silent.
        self.client("bob").send_groupchat(behind_node_2[0], "still there?")
        with self.assertRaises(XMPPTestError):
            self.client("alice").wait_message(behind_node_2[0], timeout=SILENCE)

        node.start()  # rejoins the cluster from its spool
        instance.wait_connected(
            lambda: "component link: authenticated" in instance.log_text()[offset:], 30
        )
        for user in ("carol", "dave", "eve"):
            self.shards.connect(user)
        self.assertEqual(
            self.client("alice").self_ping(f"{behind_node_2[0]}/alice"), "not-acceptable"
        )
        for room in behind_node_2:
            self.joined("alice", room)
            self.joined("carol", room)
            self.converse(room, "alice", "carol")
        for room in behind_node_1:
            self.assertEqual(self.client("alice").self_ping(f"{room}/alice"), "result")
        self.leave_all(rooms, "alice")
        self.leave_all(behind_node_1, "bob")
        self.leave_all(behind_node_2, "carol")

    def test_4_a_process_beyond_the_slots_takes_nothing_over(self) -> None:
        """Rooms move only with a slot, and ejabberd gives slots out at the handshake: a third
        process connected while both slots are held gets no traffic, even once a slot is
        freed, so it never serves a room alongside (or instead of) its owner."""
        rooms = [self.shards.room(f"extra-{n}") for n in range(6)]
        for room in rooms:
            self.joined("alice", room)
        owners = {room: self.owner(room) for room in rooms}
        lost = [r for r in rooms if owners[r] == 0]
        self.assertTrue(lost, owners)
        source = self.shards.instances[1]
        directory = self.shards.directory / "mucauth-extra"
        directory.mkdir()
        extra = MucauthProcess(directory, source.config)
        offset = 0
        extra.start(lambda: "component link: authenticated" in extra.log_text()[offset:])
        try:
            self.shards.crash_instance(0)
            self.client("carol").send_groupchat(lost[0], "anyone?")
            with self.assertRaises(XMPPTestError):
                self.client("alice").wait_message(lost[0], timeout=SILENCE)
            self.assertNotIn(f"room={lost[0]} ", extra.log_text())
        finally:
            extra.stop()
        self.shards.start_instance(0)
        for room in lost:
            self.assertEqual(self.client("alice").self_ping(f"{room}/alice"), "not-acceptable")
            self.joined("alice", room)
        self.leave_all(rooms, "alice")
