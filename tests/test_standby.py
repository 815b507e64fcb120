"""N+1 behind an ejabberd cluster: ``component_number: 2``, two active mucauth processes and one
standby (``[component] standby = true``), one PostgreSQL.

ejabberd 23.01 never moves a dead connection's slot to the connections it still has; a standby
takes it by connecting again (mucauth.slots). What this pins down:

* the standby's slot probe finds no slot, and it keeps reconnecting without serving anything;
* a killed active process's rooms answer again from the standby within a few seconds:
  persistent rooms with their subject, owner and history from PostgreSQL, and the former
  occupants, told by their self-ping to rejoin, rejoin through the gate; the other active
  process's rooms never notice;
* the killed process started again finds no slot and becomes the standby, while the rooms
  stay with the process now holding their slot.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.cluster import ClusterFixture
from tests.support.rooms import config_iq, is_result, self_item

pytestmark = [pytest.mark.ejabberd, pytest.mark.postgresql]

USERS = {"alice": 0, "carol": 1}
RULES: dict[str, Any] = {"rules": [{"user": "*", "room": "*"}]}
STANDBY = 2  # the instance index of the standby (on node 1, after both active ones)
NO_SLOT = "standby: no slot; retrying in"
# The failover this test accepts: standby_retry (2 s) + the probe's wait (1 s) + a margin.
FAILOVER = 8.0


class StandbyTests(ClusterFixture):
    users = USERS
    rules = RULES
    standbys = 1

    def asked(self, user: str, room: str) -> int:
        return sum(
            1
            for r in self.shards.auth.requests()
            if r["args"]["mucJID"] == room and r["args"]["userJID"] == f"{user}@localhost"
        )

    def wait_log(self, index: int, text: str, offset: int = 0, timeout: float = 10.0) -> None:
        instance = self.shards.instances[index]
        deadline = time.monotonic() + timeout
        while text not in instance.log_text()[offset:]:
            if time.monotonic() > deadline:
                self.fail(f"mucauth-{index} never logged {text!r}\n{self.shards.diagnostics()}")
            time.sleep(0.05)

    def converse(self, room: str) -> None:
        for sender, receiver in (("alice", "carol"), ("carol", "alice")):
            body = f"{sender} in {room}"
            self.client(sender).send_groupchat(room, body)
            self.assertEqual(self.client(receiver).wait_message(room).body, body)
            self.assertEqual(self.client(sender).wait_message(room).body, body)

    def test_a_killed_process_rooms_move_to_the_standby(self) -> None:
        shards = self.shards
        self.wait_log(STANDBY, NO_SLOT)
        persistent = [shards.room(f"kept-{n}") for n in range(4)]
        temporary = [shards.room(f"passing-{n}") for n in range(4)]
        alice = self.client("alice")
        for n, room in enumerate(persistent):
            self.assertIn(201, self.joined("alice", room).status_codes)
            self.assertTrue(is_result(alice.iq(config_iq(room, persistentroom="1"))))
            alice.raw(
                f"<message type='groupchat' to='{room}' id='s'>"
                f"<subject>subject {n}</subject></message>"
            )
            alice.send_groupchat(room, f"message {n}")
            self.assertEqual(alice.wait_message(room).body, f"message {n}")
        for room in temporary:
            self.joined("alice", room)
        for room in persistent + temporary:
            self.joined("carol", room)
        owners = {room: shards.owners(room) for room in persistent + temporary}
        self.assertTrue(all(o in ([0], [1]) for o in owners.values()), owners)
        victim = owners[persistent[0]][0]
        lost = [r for r, o in owners.items() if o == [victim]]
        kept = [r for r, o in owners.items() if o != [victim]]
        self.assertTrue(kept, owners)
        shards.wait_written(persistent)

        shards.crash_instance(victim)
        killed = time.monotonic()
        # The standby's next handshake takes the freed slot; until then the rooms are silent.
        while alice.self_ping(f"{lost[0]}/alice", timeout=0.3) != "not-acceptable":
            self.assertLess(
                time.monotonic() - killed, FAILOVER, "no failover\n" + shards.diagnostics()
            )
        failover = time.monotonic() - killed
        print(f"failover to the standby: {failover:.1f} s")
        self.wait_log(STANDBY, "slot probe: this link holds a slot")
        for room in lost:
            for user in ("alice", "carol"):
                self.assertEqual(self.client(user).self_ping(f"{room}/{user}"), "not-acceptable")
            before = {user: self.asked(user, room) for user in ("alice", "carol")}
            rejoined = self.joined("alice", room)
            self.assertEqual(self.joined("carol", room).occupants, ("alice",), room)
            if room in persistent:
                n = persistent.index(room)
                self.assertNotIn(201, rejoined.status_codes, room)
                self.assertEqual(rejoined.subject, f"subject {n}", room)
                self.assertIn(f"message {n}", rejoined.history, room)
                self.assertEqual(self_item(rejoined)[0], "owner", rejoined.describe())
            else:
                self.assertIn(201, rejoined.status_codes, "a temporary room starts again empty")
            for user in ("alice", "carol"):  # each rejoin through the gate, once
                self.assertEqual(self.asked(user, room), before[user] + 1, f"{user} {room}")
            self.converse(room)
            self.assertIn(STANDBY, shards.owners(room))
        for room in kept:  # the other active process's occupants never had to rejoin
            self.assertEqual(self.client("carol").self_ping(f"{room}/carol"), "result")
            self.assertNotIn(STANDBY, shards.owners(room))

        # The killed process, started again, finds both slots held: it is the standby now.
        offset = len(shards.instances[victim].log_text())
        shards.start_instance(victim)
        self.wait_log(victim, NO_SLOT, offset)
        for room in lost:
            self.assertEqual(alice.self_ping(f"{room}/alice"), "result", room)
        self.converse(lost[0])
        self.assertNotIn("room=", shards.instances[victim].log_text()[offset:])
