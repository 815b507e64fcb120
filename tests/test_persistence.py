"""Rooms that last, through the whole real stack: an XMPP server, the example auth service,
``twistd mucauth`` with its SQLite store, and slixmpp clients; then two mucauth processes on one
real PostgreSQL behind ejabberd's balancing.

Plain synchronous methods, like tests/test_e2e.py: they run under trial and under pytest.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.postgres import PostgresCluster
from tests.support.rooms import OWNER, config_iq, is_result, self_item
from tests.support.shards import Shards
from tests.support.stack import ClassFixture, StackFixture
from tests.support.xmpp import JoinResult, XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd, pytest.mark.postgresql]

RULES: dict[str, Any] = {"rules": [{"user": "*", "room": "*"}]}


def make_persistent_and_talk(owner: XMPPClient, room: str, subject: str, body: str) -> None:
    """The owner's part: create, make persistent, set the subject, post, leave."""
    joined = owner.join(room, "owner")
    assert joined.ok, joined.describe()
    assert 201 in joined.status_codes, joined.describe()
    reply = owner.iq(config_iq(room, persistentroom="1", roomname="Course room"))
    assert is_result(reply), reply
    owner.raw(
        f"<message type='groupchat' to='{room}' id='subj'><subject>{subject}</subject></message>"
    )
    owner.send_groupchat(room, body)
    echo = owner.wait_message(room)
    assert echo.body == body, echo
    owner.leave(room)


class PersistentRoomTests(StackFixture):
    """One server, one mucauth on SQLite; mucauth restarted between the owner and the joiner."""

    rules = RULES

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.stack.client("alice")
        self.bob = self.stack.client("bob")

    def restart_mucauth(self) -> None:
        assert self.stack.mucauth is not None
        self.stack.mucauth.stop()  # SIGTERM: a clean stop, the store flushed and closed
        self.stack.start_mucauth()

    def joined(self, client: XMPPClient, room: str, nick: str) -> JoinResult:
        result = client.join(room, nick)
        self.assertTrue(result.ok, result.describe() + "\n" + self.stack.diagnostics())
        return result

    def test_a_persistent_room_comes_back_after_a_restart(self) -> None:
        room = self.stack.room("course")
        make_persistent_and_talk(self.alice, room, "Week 3: graphs", "read chapter 5")
        self.restart_mucauth()
        bob = self.joined(self.bob, room, "bob")
        self.assertNotIn(201, bob.status_codes, bob.describe())
        self.assertEqual(bob.subject, "Week 3: graphs")
        self.assertIn("read chapter 5", bob.history)
        self.assertEqual(self_item(bob)[0], "none")
        alice = self.joined(self.alice, room, "alice")
        self.assertEqual(self_item(alice)[0], "owner", alice.describe())
        info = self.bob.disco_info(room)
        self.assertIn("muc_persistent", info.features)
        self.assertNotIn("muc_temporary", info.features)
        self.alice.leave(room)
        self.bob.leave(room)

    def test_a_temporary_room_still_disappears(self) -> None:
        room = self.stack.room("passing")
        self.joined(self.alice, room, "alice")
        self.assertIn("muc_temporary", self.alice.disco_info(room).features)
        self.alice.send_groupchat(room, "anyone?")
        self.alice.wait_message(room)
        self.alice.leave(room)
        info = self.bob.disco_info(room)
        self.assertEqual(info.condition, "item-not-found", info.xml)
        self.restart_mucauth()
        again = self.joined(self.bob, room, "bob")
        self.assertIn(201, again.status_codes)
        self.assertEqual(again.history, ())
        self.bob.leave(room)

    def test_the_subject_keeps_its_date_across_a_restart(self) -> None:
        room = self.stack.room("dated")
        self.joined(self.alice, room, "alice")
        reply = self.alice.iq(config_iq(room, persistentroom="1"))
        self.assertTrue(is_result(reply), reply)
        self.alice.raw(
            f"<message type='groupchat' to='{room}' id='subj'><subject>Week 4</subject></message>"
        )
        self.alice.wait_stanza(room, "message", "groupchat")  # the subject, reflected
        self.alice.leave(room)
        set_before = datetime.now(UTC)
        time.sleep(1.1)  # the stamp has whole seconds: a join's time would differ
        self.restart_mucauth()
        bob = self.joined(self.bob, room, "bob")
        self.assertEqual(bob.subject, "Week 4")
        subject = self.bob.wait_stanza(room, "message", "groupchat")
        found = re.search(r"<delay xmlns=\"urn:xmpp:delay\"[^>]*/>", subject)
        assert found is not None, subject
        self.assertIn(f'from="{room}"', found.group(0))
        stamp = re.search(r'stamp="([^"]+)"', found.group(0))
        assert stamp is not None, subject
        when = datetime.strptime(stamp.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        self.assertLessEqual(when, set_before, subject)
        self.bob.leave(room)

    def test_a_destroyed_room_points_to_its_new_address(self) -> None:
        room = self.stack.room("finished")
        new = self.stack.room("continued")
        make_persistent_and_talk(self.alice, room, "Last week", "goodbye")
        self.joined(self.alice, room, "alice")
        reply = self.alice.iq(
            f"<iq type='set' to='{room}'><query xmlns='{OWNER}'>"
            f"<destroy jid='{new}'><reason>Course over</reason></destroy></query></iq>"
        )
        self.assertIn("result", reply)
        for when in ("before", "after"):
            if when == "after":
                self.restart_mucauth()
            refused = self.bob.join(room, "bob")
            self.assertFalse(refused.ok, refused.describe())
            self.assertEqual(
                (refused.error_type, refused.condition), ("cancel", "gone"), refused.describe()
            )
            self.assertIn(f">xmpp:{new}?join</gone>", refused.error_xml, when)
            self.assertEqual(refused.text, "Course over")
            info = self.bob.disco_info(room)
            self.assertEqual(info.condition, "item-not-found", info.xml)


class PersistentRoomOnEjabberdTests(PersistentRoomTests):
    server = "ejabberd"


class SharedStore:
    """A throw-away PostgreSQL cluster and two mucauth processes on it behind ejabberd."""

    def __init__(self) -> None:
        self.postgres = PostgresCluster()
        self.shards: Shards | None = None
        self.database = ""

    def start(self) -> SharedStore:
        try:
            self.postgres.start()
            self.database = database = self.postgres.create_database()
            self.shards = Shards(sections={"storage": {"url": self.postgres.url(database)}}).start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_written(self, rooms: list[str], timeout: float = 10.0) -> None:
        """Writes are write-behind: a process killed before its batch commits loses it. Wait
        until PostgreSQL has every room's subject and message, so the kill tests the reload and
        not the race."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.postgres.execute(
                self.database,
                "SELECT r.jid FROM rooms r WHERE r.subject <> '' "
                "AND EXISTS (SELECT 1 FROM messages m WHERE m.room = r.jid)",
            )
            missing = set(rooms) - {row[0] for row in rows}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not written after {timeout} s: {sorted(missing)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.shards is not None:
            self.shards.stop()
        self.postgres.stop()
        self.postgres.remove()


class SharedStoreTests(ClassFixture):
    """Two processes, one PostgreSQL: the rooms of a process that is killed come back with
    their state when it starts again."""

    @classmethod
    def start_fixture(cls) -> SharedStore:
        return SharedStore().start()

    @classmethod
    def stop_fixture(cls, fixture: SharedStore) -> None:
        fixture.stop()

    def test_a_killed_process_gets_its_rooms_back_from_the_store(self) -> None:
        shared: SharedStore = self.fixture()
        shards = shared.shards
        assert shards is not None
        alice, bob = shards.clients["alice"], shards.clients["bob"]
        rooms = [shards.room(f"kept-{n}") for n in range(6)]
        for n, room in enumerate(rooms):
            make_persistent_and_talk(alice, room, f"subject {n}", f"message {n}")
        owners = {room: shards.owners(room) for room in rooms}
        for room, found in owners.items():
            self.assertEqual(len(found), 1, f"{room}: {owners}")
        victim = owners[rooms[0]][0]
        victims = [room for room in rooms if owners[room] == [victim]]
        shared.wait_written(rooms)
        shards.crash_instance(victim)
        shards.start_instance(victim)
        time.sleep(0.5)  # ejabberd routes to the instance once it has its slot back
        for room in rooms:
            n = rooms.index(room)
            result = bob.join(room, "bob")
            self.assertTrue(result.ok, result.describe() + "\n" + shards.diagnostics())
            self.assertNotIn(201, result.status_codes, room)
            self.assertEqual(result.subject, f"subject {n}", room)
            self.assertIn(f"message {n}", result.history, room)
            bob.leave(room)
        # The rooms of the killed process were read back from PostgreSQL by its successor.
        for room in victims:
            self.assertEqual(shards.owners(room), [victim], room)
