"""The admin API over real HTTP (twisted.web on 127.0.0.1, treq as the client) in front of a MUC
service fed through an in-memory stream: authorization, every endpoint, every refusal."""

from __future__ import annotations

import json
from typing import Any, cast

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from wokkel.generic import parseXml
from wokkel.test import helpers
from zope.interface import implementer

from mucauth.admin_api import MAX_BODY, AdminAPIServer
from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.muc.service import MUCService
from mucauth.settings import AdminAPISettings, MUCSettings, RoomDefaults, Secret
from mucauth.store import HistoryRecord, MemoryRoomStore
from tests.muc.support import ROOM, SERVICE, message, presence
from tests.support.openapi import check_answer

TOKEN = "admin-T0KEN-for-the-tests-only"


@implementer(IJoinAuthorizer)
class Lists:
    """Allows the bare JIDs in ``allowed``; errors for those in ``broken``."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)
        self.broken: set[str] = set()
        self.requests: list[JoinRequest] = []

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        self.requests.append(request)
        user = request.user.userhost()
        if user in self.broken:
            return succeed(Decision.error("status", "HTTP 500"))
        if user in self.allowed:
            return succeed(Decision.allow())
        return succeed(Decision.deny("not on the list"))


class AdminAPITestCase(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.auth = Lists("alice@example.org", "bob@example.org", "carol@example.org")
        self.muc = MUCService(self.auth, clock=reactor, **getattr(self, "muc_options", {}))
        self.manager = helpers.TestableStreamManager(reactor=reactor)
        self.muc.setHandlerParent(self.manager)
        self.addCleanup(self.muc.shutdown)
        for user, nick in (("alice", "alice"), ("bob", "bob"), ("carol", "carol")):
            self.manager.stub.send(parseXml(presence(f"{user}@example.org/r", f"{ROOM}/{nick}")))
        self.manager.stub.send(parseXml(presence("alice@example.org/r", f"other@{SERVICE}/al")))
        del self.manager.stub.output[:]
        self.server = AdminAPIServer(
            self.muc,
            AdminAPISettings(port=0, token=Secret(TOKEN)),
            SERVICE,
            reactor,
        )
        self.server.startService()
        self.addCleanup(self.server.stopService)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, pool=pool))
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    @property
    def url(self) -> str:
        address = self.server.address()
        assert address is not None
        return f"http://127.0.0.1:{address.port}"  # type: ignore[attr-defined]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers: dict[bytes | str, bytes | str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        response = await self.client.request(method, self.url + path, headers=headers, data=data)
        content = await treq.content(response)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        answer = json.loads(content)
        # Every answer fits docs/reference/openapi.json (path, method, status and body).
        self.assertEqual(check_answer(method, path, response.code, answer), [])
        return response.code, answer

    def occupants(self, room: str = ROOM) -> list[str]:
        found = self.muc.rooms.get(next(j for j in self.muc.rooms if j.full() == room))
        return sorted(o.nick for o in found) if found is not None else []


class AdminAPITests(AdminAPITestCase):
    async def test_a_wrong_or_missing_token_is_401_and_changes_nothing(self) -> None:
        for token in (None, "wrong", TOKEN + "x", ""):
            code, body = await self.call(
                "POST", "/v1/revoke", {"userJID": "alice@example.org"}, token=token
            )
            self.assertEqual((code, body), (401, {"error": "unauthorized"}), token)
        self.assertEqual(self.occupants(), ["alice", "bob", "carol"])
        text = json.dumps([{k: str(v) for k, v in e.items()} for e in self.events])
        self.assertNotIn(TOKEN, text)
        self.assertIn("admin api POST /v1/revoke -> 401", text.replace("{", "").replace("}", ""))

    async def test_revoke(self) -> None:
        code, body = await self.call(
            "POST",
            "/v1/revoke",
            {"userJID": "alice@example.org", "mucJID": ROOM, "reason": "Left the course"},
        )
        self.assertEqual((code, body), (200, {"removed": 1}))
        self.assertEqual(self.occupants(), ["bob", "carol"])
        kicked = [
            s
            for s in self.manager.stub.output
            if s.name == "presence" and s.getAttribute("type") == "unavailable"
        ]
        self.assertIn("Left the course", kicked[0].toXml())
        self.assertIn("code='307'", kicked[0].toXml().replace('"', "'"))
        # Every room, and a room given by its name only.
        code, body = await self.call("POST", "/v1/revoke", {"userJID": "alice@example.org"})
        self.assertEqual(body, {"removed": 1})
        code, body = await self.call(
            "POST", "/v1/revoke", {"userJID": "bob@example.org", "mucJID": "room"}
        )
        self.assertEqual(body, {"removed": 1})

    async def test_recheck(self) -> None:
        self.auth.allowed.discard("bob@example.org")
        self.auth.broken.add("carol@example.org")
        code, body = await self.call("POST", "/v1/recheck", {"mucJID": ROOM})
        self.assertEqual((code, body), (200, {"checked": 3, "removed": 1, "kept_on_error": 1}))
        self.assertEqual(self.occupants(), ["alice", "carol"])
        self.assertEqual({r.action for r in self.auth.requests[-3:]}, {"recheck"})
        code, body = await self.call("POST", "/v1/recheck", {})
        self.assertEqual(body, {"checked": 3, "removed": 0, "kept_on_error": 1})
        code, body = await self.call("POST", "/v1/recheck", raw=b"")
        self.assertEqual(body["checked"], 3)

    async def test_rooms(self) -> None:
        code, body = await self.call("GET", "/v1/rooms")
        self.assertEqual(code, 200)
        self.assertEqual([r["jid"] for r in body["rooms"]], [f"other@{SERVICE}", ROOM])
        code, room = await self.call("GET", f"/v1/rooms/{ROOM}")
        self.assertEqual(
            [(o["userJID"], o["nick"], o["role"]) for o in room["occupants"]],
            [
                ("alice@example.org", "alice", "moderator"),
                ("bob@example.org", "bob", "participant"),
                ("carol@example.org", "carol", "participant"),
            ],
        )
        code, same = await self.call("GET", "/v1/rooms/room")
        self.assertEqual(same, room)
        code, body = await self.call("GET", "/v1/rooms/nowhere")
        self.assertEqual(code, 404)

    async def test_bad_requests(self) -> None:
        cases: list[tuple[str, str, Any, bytes | None, int]] = [
            ("GET", "/v1/nothing", None, None, 404),
            ("GET", "/", None, None, 404),
            ("GET", "/v1/revoke", None, None, 405),
            ("POST", "/v1/rooms", None, None, 405),
            ("POST", "/v1/revoke", None, b"{not json", 400),
            ("POST", "/v1/revoke", None, b"[1, 2]", 400),
            ("POST", "/v1/revoke", {}, None, 400),
            ("POST", "/v1/revoke", {"userJID": "alice@example.org/phone"}, None, 400),
            ("POST", "/v1/revoke", {"userJID": "not a jid@@"}, None, 400),
            ("POST", "/v1/revoke", {"userJID": 7}, None, 400),
            ("POST", "/v1/revoke", {"userJID": "a@b", "extra": 1}, None, 400),
            ("POST", "/v1/revoke", {"userJID": "a@b", "reason": ["x"]}, None, 400),
            ("POST", "/v1/recheck", {"reason": "x"}, None, 400),
            ("POST", "/v1/revoke", None, b"x" * (MAX_BODY + 1), 413),
        ]
        for method, path, body, raw, status in cases:
            code, answer = await self.call(method, path, body, raw=raw)
            self.assertEqual(code, status, (method, path, body, raw and raw[:20]))
            self.assertIsInstance(answer.get("error"), str)
        self.assertEqual(self.occupants(), ["alice", "bob", "carol"])


BROKEN = f"broken@{SERVICE}"
POISON = "<message xmlns='jabber:client'><x xmlns='urn:a'b'/></message>"


def stored_message(n: int, xml: str) -> HistoryRecord:
    return HistoryRecord(f"s{n}", 1_714_564_800.0 + n, "alice", "alice@example.org", xml)


class RepairTests(AdminAPITestCase):
    """Rooms and archived messages listed and deleted through the API, never by SQL: a live
    persistent room, 250 rooms only in the store, and one whose history is poisoned."""

    def setUp(self) -> None:
        self.store = MemoryRoomStore()
        self.store.open()
        self.stored_rooms = [f"r{n:03d}@{SERVICE}" for n in range(250)]
        for jid in (*self.stored_rooms, BROKEN):
            self.store.save_room(jid, {}, name=jid[:4], public=True, subject="", subject_nick="")
        self.store.set_affiliation(BROKEN, "alice@example.org", "owner")
        self.store.append_message(BROKEN, stored_message(1, POISON), None)
        self.store.append_message(
            BROKEN,
            stored_message(2, "<message xmlns='jabber:client'><body>ok</body></message>"),
            None,
        )
        self.store.append_message(BROKEN, stored_message(3, "a\x00b"), None)
        self.muc_options = {
            "settings": MUCSettings(rooms=RoomDefaults(persistent=True, logging=True)),
            "store": self.store,
        }
        super().setUp()
        self.addCleanup(self.muc.connectionLost, Failure(ConnectionDone()))  # the store's sweep
        self.manager.stub.send(parseXml(message("alice@example.org/r", body="hello", id="h1")))
        del self.manager.stub.output[:]

    async def test_rooms_are_paged_live_and_stored_together(self) -> None:
        seen: list[dict[str, Any]] = []
        after = ""
        for _ in range(10):
            code, body = await self.call("GET", f"/v1/rooms?limit=100&after={after}")
            self.assertEqual(code, 200, body)
            self.assertLessEqual(len(body["rooms"]), 100)
            seen += body["rooms"]
            if body["next"] is None:
                break
            after = body["next"]
        jids = [room["jid"] for room in seen]
        expected = sorted({*self.stored_rooms, BROKEN, ROOM, f"other@{SERVICE}"})
        self.assertEqual(jids, expected)
        by_jid = {room["jid"]: room for room in seen}
        self.assertEqual(
            (by_jid[ROOM]["live"], by_jid[ROOM]["stored"], len(by_jid[ROOM]["occupants"])),
            (True, True, 3),
        )
        self.assertEqual((by_jid[BROKEN]["live"], by_jid[BROKEN]["stored"]), (False, True))
        self.assertEqual(by_jid[BROKEN]["name"], "brok")

    async def test_deleting_a_live_room_destroys_it_for_its_occupants(self) -> None:
        code, body = await self.call("DELETE", f"/v1/rooms/{ROOM}", {"reason": "Course over"})
        self.assertEqual((code, body), (200, {"live": True, "stored": True}))
        told = [s for s in self.manager.stub.output if s.name == "presence"]
        self.assertEqual(len(told), 3)
        for stanza in told:
            self.assertEqual(stanza.getAttribute("type"), "unavailable")
            self.assertIn("destroy", stanza.toXml())
            self.assertIn("Course over", stanza.toXml())
        self.assertFalse(self.successResultOf(self.store.has_room(ROOM)))
        code, body = await self.call("DELETE", f"/v1/rooms/{ROOM}")
        self.assertEqual(code, 404, body)

    async def test_a_room_that_cannot_be_loaded_is_deleted_unread(self) -> None:
        code, body = await self.call("DELETE", "/v1/rooms/broken")
        self.assertEqual((code, body), (200, {"live": False, "stored": True}))
        self.assertFalse(self.successResultOf(self.store.has_room(BROKEN)))
        self.assertNotIn(BROKEN, [j.full() for j in self.muc.rooms])

    async def test_archived_messages_are_listed_then_deleted(self) -> None:
        code, body = await self.call("GET", "/v1/rooms/broken/messages?limit=2")
        self.assertEqual(code, 200, body)
        self.assertEqual(
            [(m["id"], m["readable"], "xml" in m) for m in body["messages"]],
            [("s1", False, False), ("s2", True, True)],
        )
        self.assertEqual(body["messages"][0]["size"], len(POISON))
        self.assertEqual(body["messages"][0]["nick"], "alice")
        self.assertEqual(body["messages"][1]["time"], 1_714_564_802.0)
        self.assertEqual(body["next"], "s2")
        code, body = await self.call("GET", "/v1/rooms/broken/messages?limit=2&after=s2")
        self.assertEqual([(m["id"], m["readable"]) for m in body["messages"]], [("s3", False)])
        self.assertIsNone(body["next"])
        code, body = await self.call("DELETE", "/v1/rooms/broken/messages", {"ids": ["s1", "s3"]})
        self.assertEqual((code, body), (200, {"deleted": 2}))
        code, body = await self.call("GET", "/v1/rooms/broken/messages")
        self.assertEqual([m["id"] for m in body["messages"]], ["s2"])
        # A live room's history loses them too: no joiner gets them again.
        code, body = await self.call("DELETE", f"/v1/rooms/{ROOM}/messages", {"all": True})
        self.assertEqual((code, body), (200, {"deleted": 1}))
        [room] = [r for j, r in self.muc.rooms.items() if j.full() == ROOM]
        self.assertEqual(room.history_entries, [])

    async def test_repair_requests_that_are_refused(self) -> None:
        cases: list[tuple[str, str, Any, int]] = [
            ("GET", "/v1/rooms?limit=0", None, 400),
            ("GET", "/v1/rooms?limit=1001", None, 400),
            ("GET", "/v1/rooms?limit=ten", None, 400),
            ("GET", "/v1/rooms?page=2", None, 400),
            ("GET", "/v1/rooms/broken/messages?after=nowhere", None, 400),
            ("DELETE", "/v1/rooms/broken/messages", {}, 400),
            ("DELETE", "/v1/rooms/broken/messages", {"ids": ["s1"], "all": True}, 400),
            ("DELETE", "/v1/rooms/broken/messages", {"all": False}, 400),
            ("DELETE", "/v1/rooms/broken/messages", {"ids": "s1"}, 400),
            ("DELETE", "/v1/rooms/broken/messages", {"ids": ["x"] * 1001}, 400),
            ("DELETE", "/v1/rooms/broken", {"why": "x"}, 400),
            ("DELETE", "/v1/rooms/nowhere", None, 404),
            ("PUT", "/v1/rooms/broken", None, 405),
            ("POST", "/v1/rooms/broken/messages", None, 405),
        ]
        for method, path, body, status in cases:
            code, answer = await self.call(method, path, body)
            self.assertEqual(code, status, (method, path, body, answer))
            self.assertIsInstance(answer.get("error"), str)
        self.assertTrue(self.successResultOf(self.store.has_room(BROKEN)))
