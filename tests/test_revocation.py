"""Revocation and re-checks through the whole real stack, behind Prosody and behind ejabberd:
the example auth service's rules change while users are in rooms, and mucauth's admin API (or
its periodic re-check) takes out exactly those the service now refuses.

Plain synchronous methods, like tests/test_e2e.py: they run under trial and under pytest.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

import pytest

from examples._stack import free_port
from tests.support.shards import Shards
from tests.support.stack import ClassFixture, StackFixture
from tests.support.xmpp import JoinResult, XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd]

TOKEN = "e2e-admin-token-0123456789"
EVERYONE: dict[str, Any] = {"rules": [{"user": "*", "room": "*"}]}


def rules(*denied: str, answer: str | None = None) -> dict[str, Any]:
    """Everyone allowed but ``denied`` (bare JIDs); ``answer``: every request gets that test
    answer instead (e.g. "500")."""
    found: list[dict[str, Any]] = [
        {"user": user, "room": "*", "allow": False, "reason": "Not enrolled any more"}
        for user in denied
    ]
    everyone: dict[str, Any] = {"user": "*", "room": "*"}
    if answer is not None:
        everyone["answer"] = answer
    return {"rules": [*found, everyone]}


class RevocationTests(StackFixture):
    rules = EVERYONE
    recheck_interval: ClassVar[str] = "0"

    @classmethod
    def stack_options(cls) -> dict[str, Any]:
        return {"http_options": {"recheck_interval": cls.recheck_interval}, "admin_token": TOKEN}

    def setUp(self) -> None:
        super().setUp()
        assert self.stack.auth is not None
        self.stack.auth.set_rules(EVERYONE)
        self.alice = self.stack.client("alice")
        self.bob = self.stack.client("bob")
        self.carol = self.stack.client("carol")

    def api(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, Any]:
        return self.stack.admin(method, path, body, token)

    def joined(self, client: XMPPClient, room: str, nick: str) -> JoinResult:
        result = client.join(room, nick)
        self.assertTrue(result.ok, result.describe() + "\n" + self.stack.diagnostics())
        return result

    def fill(self, name: str) -> str:
        room = self.stack.room(name)
        self.joined(self.alice, room, "alice")
        self.joined(self.bob, room, "bob")
        self.joined(self.carol, room, "carol")
        return room

    def nicks(self, room: str) -> list[str]:
        code, body = self.api("GET", f"/v1/rooms/{room}")
        self.assertEqual(code, 200, body)
        return [o["nick"] for o in body["occupants"]]

    def leave_all(self, room: str) -> None:
        for client in (self.alice, self.bob, self.carol):
            try:
                client.leave(room, timeout=3)
            except AssertionError:
                pass  # not in it (any more)


class AdminAPITests(RevocationTests):
    def test_revoke_removes_her_with_307_and_the_reason_and_her_rejoin_is_refused(self) -> None:
        room = self.fill("course")
        assert self.stack.auth is not None
        self.stack.auth.set_rules(rules("alice@localhost"))
        code, body = self.api(
            "POST",
            "/v1/revoke",
            {"userJID": "alice@localhost", "mucJID": room, "reason": "Left the course"},
        )
        self.assertEqual((code, body), (200, {"removed": 1}))
        kicked = self.alice.wait_presence(f"{room}/alice", "unavailable")
        self.assertEqual(kicked.status_codes, {110, 307}, kicked.xml)
        self.assertIn("Left the course", kicked.xml)
        seen = self.bob.wait_presence(f"{room}/alice", "unavailable")
        self.assertEqual(seen.status_codes, {307}, seen.xml)
        self.assertIn("Left the course", seen.xml)
        again = self.alice.join(room, "alice")
        self.assertFalse(again.ok, again.describe())
        self.assertEqual(again.condition, "forbidden")
        self.assertEqual(self.nicks(room), ["bob", "carol"])
        self.leave_all(room)

    def test_recheck_removes_exactly_the_refused_and_nobody_on_an_outage(self) -> None:
        room = self.fill("lab")
        assert self.stack.auth is not None
        self.stack.auth.set_rules(rules(answer="500"))
        code, body = self.api("POST", "/v1/recheck", {"mucJID": room})
        self.assertEqual((code, body), (200, {"checked": 3, "removed": 0, "kept_on_error": 3}))
        self.assertEqual(self.nicks(room), ["alice", "bob", "carol"])
        self.stack.auth.set_rules(rules("carol@localhost"))
        code, body = self.api("POST", "/v1/recheck", {"mucJID": room})
        self.assertEqual((code, body), (200, {"checked": 3, "removed": 1, "kept_on_error": 0}))
        kicked = self.carol.wait_presence(f"{room}/carol", "unavailable")
        self.assertEqual(kicked.status_codes, {110, 307}, kicked.xml)
        self.assertEqual(self.bob.wait_presence(f"{room}/carol", "unavailable").status_codes, {307})
        self.assertEqual(self.nicks(room), ["alice", "bob"])
        self.leave_all(room)

    def test_a_wrong_token_gets_401_and_changes_nothing(self) -> None:
        room = self.fill("guarded")
        code, body = self.api("POST", "/v1/revoke", {"userJID": "bob@localhost"}, token="nope")
        self.assertEqual((code, body), (401, {"error": "unauthorized"}))
        self.assertEqual(self.nicks(room), ["alice", "bob", "carol"])
        self.assertIn("admin api POST /v1/revoke -> 401", self.stack.mucauth_log())
        self.assertNotIn(TOKEN, self.stack.mucauth_log())
        self.leave_all(room)

    def test_rooms(self) -> None:
        room = self.fill("listed")
        code, body = self.api("GET", "/v1/rooms")
        self.assertEqual(code, 200)
        [listed] = [r for r in body["rooms"] if r["jid"] == room]
        self.assertEqual(
            [(o["userJID"], o["role"]) for o in listed["occupants"]],
            [("alice@localhost", "moderator"), ("bob@localhost", "participant"),
             ("carol@localhost", "participant")],
        )  # fmt: skip
        self.leave_all(room)


class EjabberdAdminAPITests(AdminAPITests):
    server = "ejabberd"


class PeriodicRecheckTests(RevocationTests):
    recheck_interval = "2"

    def test_a_periodic_recheck_removes_the_refused_within_two_periods(self) -> None:
        room = self.fill("periodic")
        assert self.stack.auth is not None
        self.stack.auth.set_rules(rules(answer="500"))
        time.sleep(4.5)  # two periods of an outage: nobody removed
        self.assertEqual(self.nicks(room), ["alice", "bob", "carol"])
        self.stack.auth.set_rules(rules("bob@localhost"))
        started = time.monotonic()
        seen = self.alice.wait_presence(f"{room}/bob", "unavailable", timeout=4.5)
        self.assertEqual(seen.status_codes, {307}, seen.xml)
        self.assertLess(time.monotonic() - started, 4.5)
        self.assertEqual(self.nicks(room), ["alice", "carol"])
        self.leave_all(room)


class EjabberdPeriodicRecheckTests(PeriodicRecheckTests):
    server = "ejabberd"


class ShardedAdminAPITests(ClassFixture):
    """Two mucauth processes behind ejabberd's balancing, each with its admin API: each one
    answers for its own rooms, and asking both reaches every room."""

    @classmethod
    def start_fixture(cls) -> tuple[Shards, list[int]]:
        ports = [free_port(), free_port()]
        shards = Shards(
            instance_sections=lambda index: {
                "admin_api": {"port": str(ports[index]), "token": TOKEN}
            },
        ).start()
        return shards, ports

    @classmethod
    def stop_fixture(cls, fixture: tuple[Shards, list[int]]) -> None:
        fixture[0].stop()

    def api(self, port: int, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())

    def test_each_process_answers_for_its_own_rooms(self) -> None:
        shards, ports = self.fixture()
        alice, bob = shards.clients["alice"], shards.clients["bob"]
        rooms = [shards.room(f"shard-{n}") for n in range(6)]
        for room in rooms:
            for client, nick in ((alice, "alice"), (bob, "bob")):
                result = client.join(room, nick)
                self.assertTrue(result.ok, result.describe() + "\n" + shards.diagnostics())
        listed = [{r["jid"] for r in self.api(port, "GET", "/v1/rooms")["rooms"]} for port in ports]
        self.assertEqual(listed[0] | listed[1], set(rooms))
        self.assertEqual(listed[0] & listed[1], set())
        for room in rooms:
            [owner] = shards.owners(room)
            self.assertIn(room, listed[owner])
        removed = [
            self.api(port, "POST", "/v1/revoke", {"userJID": "alice@localhost"})["removed"]
            for port in ports
        ]
        self.assertEqual(removed, [len(listed[0]), len(listed[1])])
        for room in rooms:
            kicked = alice.wait_presence(f"{room}/alice", "unavailable")
            self.assertEqual(kicked.status_codes, {110, 307}, kicked.xml)
            bob.leave(room)
