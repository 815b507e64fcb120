"""Rooms always load, through the whole real stack: Prosody, the example auth service, ``twistd
mucauth`` with its SQLite store, and slixmpp clients. The database is seeded, while mucauth is
stopped, with rows an older version could have stored (a namespace written unescaped, a NUL):
after the restart the room loads with its readable history, its archive answers, the link
stays up, and its owner can destroy it.

Plain synchronous methods, like tests/test_e2e.py: they run under trial and under pytest.
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.support.rooms import OWNER, config_iq, is_result, self_item
from tests.support.stack import StackFixture

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.prosody

POISON = "<message xmlns='jabber:client'><x xmlns='urn:a'b'/><body>secret-words</body></message>"
NUL = "<message xmlns='jabber:client'><body>a\x00b</body></message>"
AFTER = "<message xmlns='jabber:client'><body>after</body></message>"


class UnreadableRowTests(StackFixture):
    def test_a_room_with_unreadable_rows_loads_after_a_restart(self) -> None:
        stack = self.stack
        alice, bob = stack.client("alice"), stack.client("bob")
        room = stack.room("poisoned")
        joined = alice.join(room, "alice")
        self.assertTrue(joined.ok, joined.describe() + "\n" + stack.diagnostics())
        self.assertTrue(is_result(alice.iq(config_iq(room, persistentroom="1", enablelogging="1"))))
        alice.send_groupchat(room, "before")
        self.assertEqual(alice.wait_message(room).body, "before")
        alice.leave(room)
        assert stack.mucauth is not None
        stack.mucauth.stop()  # SIGTERM: the store flushed and closed

        with sqlite3.connect(stack.directory / "mucauth.sqlite") as db:
            [(newest,)] = db.execute("SELECT MAX(ts) FROM messages WHERE room = ?", (room,))
            for n, (stanza_id, xml) in enumerate(
                (("poison-1", POISON), ("poison-2", NUL), ("good-3", AFTER)), start=1
            ):
                db.execute(
                    "INSERT INTO messages (room, stanza_id, ts, nick, sender, occupant_id, xml)"
                    " VALUES (?, ?, ?, 'mallory', 'mallory@localhost', NULL, ?)",
                    (room, stanza_id, newest + n, xml),
                )
        stack.start_mucauth()
        logins = stack.component_logins()

        result = bob.join(room, "bob")
        self.assertTrue(result.ok, result.describe() + "\n" + stack.diagnostics())
        self.assertNotIn(201, result.status_codes, result.describe())
        self.assertEqual(list(result.history), ["before", "after"])
        page = bob.archive(room, max=50)
        self.assertIsNone(page.condition, page.xml + "\n" + stack.diagnostics())
        self.assertEqual(list(page.bodies), ["before", "after"])
        self.assertTrue(page.complete)
        log = stack.wait_mucauth_log("row=poison-2")
        self.assertIn("row=poison-1", log)
        self.assertNotIn("urn:a", log)  # the row's id, never its content
        self.assertNotIn("secret-words", log)

        owner = alice.join(room, "alice")
        self.assertTrue(owner.ok, owner.describe())
        self.assertEqual(self_item(owner)[0], "owner", owner.describe())
        reply = alice.iq(
            f"<iq type='set' to='{room}'><query xmlns='{OWNER}'>"
            "<destroy><reason>Repaired</reason></destroy></query></iq>"
        )
        self.assertIn("result", reply)
        self.assertEqual(stack.component_logins(), logins, stack.diagnostics())  # link stayed up
        info = stack.client("carol").disco_info(room)
        self.assertEqual(info.condition, "item-not-found", info.xml)  # gone, from the store too
