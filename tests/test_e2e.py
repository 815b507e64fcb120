"""The whole real stack: an XMPP server, the example auth service, ``twistd mucauth`` and
slixmpp clients.

Each class shares one stack (started by its first test, stopped after its last: see
``tests.support.stack.ClassFixture``) and uses its own room names, so tests do not depend on
their order. Rules for misbehaving rooms make the auth service answer badly on purpose
(examples/auth_service.py, "--test-answers").

Every class runs behind Prosody and, as its ``...OnEjabberdTests`` subclass at the end of this
file, behind ejabberd. Where the servers behave differently the expectation is written per
server (``ComponentAwayTests``); everything else must hold on both.

Plain synchronous methods: they run under ``trial tests`` and under ``pytest -p no:twisted``.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any, ClassVar

import pytest

from examples._stack import MucauthProcess, pid_alive, twistd_command
from tests.support.ports import free_port
from tests.support.stack import SERVERS, ClassFixture, Stack
from tests.support.xmpp import JoinResult, XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd]

FIXED_DENY_TEXT = "You are not allowed to enter this room"

BAD_ANSWERS = ("500", "redirect", "string-false", "not-json", "true-body", "empty", "huge")

RULES: dict[str, Any] = {
    "default_reason": "not on the list",
    "rules": [
        *({"user": "*", "room": f"bad-{name}", "answer": name} for name in BAD_ANSWERS),
        {"user": "bob@localhost", "room": "staff", "allow": False, "reason": "Staff only"},
        {"user": "bob@localhost", "room": "board", "allow": False, "reason": "Board only"},
        {"user": "*", "room": "*"},
    ],
}


class StackTestCase(ClassFixture):
    """A class sharing one stack and one logged-in client per user."""

    stack_options: ClassVar[dict[str, Any]] = {}
    users: ClassVar[tuple[str, ...]] = ("alice", "bob")
    server: ClassVar[str] = "prosody"  # or "ejabberd": see the subclasses at the end

    stack: Stack

    @classmethod
    def start_fixture(cls) -> Stack:
        options = {k: v for k, v in cls.stack_options.items() if k != "rules"}
        rules = cls.stack_options.get("rules", RULES)
        stack = Stack(cls.__name__, rules=rules, server=cls.server, **options)
        stack.start()
        try:
            for user in cls.users:
                stack.client(user)
        except BaseException:
            stack.stop()
            raise
        return stack

    @classmethod
    def stop_fixture(cls, fixture: Stack) -> None:
        fixture.stop()

    def setUp(self) -> None:
        super().setUp()
        self.stack = self.fixture()

    def client(self, user: str) -> XMPPClient:
        for client in self.stack.clients:
            if client.jid == self.stack.jid(user):
                return client
        return self.stack.client(user)

    def room(self, name: str) -> str:
        return self.stack.room(name)

    def join(
        self, user: str, room: str, nick: str | None = None, timeout: float = 10
    ) -> JoinResult:
        return self.client(user).join(self.room(room), nick or user, timeout=timeout)

    def assert_joined(self, result: JoinResult) -> None:
        self.assertTrue(result.ok, result.describe() + "\n" + self.stack.diagnostics())
        self.assertIn(110, result.status_codes, result.presences)
        self.assertIsNotNone(result.subject)  # join_muc_wait also waited for the subject

    def assert_refused(self, result: JoinResult, error_type: str, condition: str) -> None:
        self.assertFalse(result.ok, f"{result.describe()} but a refusal was expected")
        self.assertEqual(
            (result.error_type, result.condition),
            (error_type, condition),
            result.error_xml + "\n" + self.stack.diagnostics(),
        )
        self.assertEqual(result.error_id, result.join_id, "the error must echo the join's id")
        self.assertTrue(result.error_has_muc_x, f"no muc <x/> in {result.error_xml}")
        self.assertTrue(result.text, f"no <text/> in {result.error_xml}")

    def assert_logged(self, room: str, *snippets: str, timeout: float = 5.0) -> str:
        """Wait for a mucauth log line about ``room`` that contains every snippet."""
        room_field = f"room={self.room(room)}"
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stack.mucauth_log().splitlines():
                if room_field in line and all(s in line for s in snippets):
                    return line
            if time.monotonic() > deadline:
                self.fail(
                    f"mucauth logged no line with {room_field} and {snippets}:\n"
                    + self.stack.diagnostics()
                )
            time.sleep(0.05)


class JoinGateTests(StackTestCase):
    """The default configuration: allow, deny, and every bad answer refused."""

    users = ("alice", "bob", "carol")
    stack_options: ClassVar[dict[str, Any]] = {"url_query": "?tenant=x"}

    def test_allowed_join_gets_self_presence_and_subject(self) -> None:
        result = self.join("alice", "lobby")
        self.assert_joined(result)
        self.assertIn(201, result.status_codes)  # she created it
        [own] = [p for p in result.presences if 110 in p.status_codes]
        self.assertEqual(own.id, result.join_id)  # her join's id, reflected through the server
        self.assert_logged("lobby", "allow", "user=alice@localhost")

    def test_second_joiner_sees_the_first(self) -> None:
        self.assert_joined(self.join("alice", "meeting"))
        result = self.join("carol", "meeting")
        self.assert_joined(result)
        self.assertNotIn(201, result.status_codes)
        self.assertEqual(result.occupants, ("alice",))

    def test_refused_join(self) -> None:
        result = self.join("bob", "staff")
        self.assert_refused(result, "cancel", "forbidden")
        self.assertEqual(result.text, FIXED_DENY_TEXT)  # show_reason is off: not "Staff only"
        self.assertEqual(result.error_by, self.room("staff"))
        self.assert_logged("staff", "deny", "user=bob@localhost", "Staff only")

    def test_refused_creator_leaves_no_room(self) -> None:
        self.assert_refused(self.join("bob", "board"), "cancel", "forbidden")
        info = self.client("alice").disco_info(self.room("board"))
        self.assertEqual(info.condition, "item-not-found", info.xml)
        result = self.join("alice", "board")
        self.assert_joined(result)
        self.assertIn(201, result.status_codes, "the refused join must not have created the room")

    def check_bad_answer(self, answer: str, *log_snippets: str) -> None:
        room = f"bad-{answer}"
        result = self.join("alice", room)
        self.assert_refused(result, "wait", "service-unavailable")
        self.assert_logged(room, "error", *log_snippets)

    def test_http_500_is_refused(self) -> None:
        self.check_bad_answer("500", "status=500")

    def test_redirect_is_refused(self) -> None:
        self.check_bad_answer("redirect", "kind=redirect")

    def test_string_false_is_refused(self) -> None:
        self.check_bad_answer("string-false", "kind=bad_answer")

    def test_not_json_is_refused(self) -> None:
        self.check_bad_answer("not-json", "kind=bad_json")

    def test_bare_true_is_refused(self) -> None:
        self.check_bad_answer("true-body", "kind=bad_answer")

    def test_empty_body_is_refused(self) -> None:
        self.check_bad_answer("empty", "kind=bad_json")

    def test_huge_body_is_refused(self) -> None:
        self.check_bad_answer("huge", "kind=too_large")

    def test_query_string_of_the_url_is_kept(self) -> None:
        self.assert_joined(self.join("alice", "query-check", "Alice Q"))
        asked = [r for r in self.stack.auth.requests() if "query-check" in r["uri"]]  # type: ignore[union-attr]
        self.assertEqual(len(asked), 1, asked)
        self.assertTrue(asked[0]["uri"].startswith("/muc/join?tenant=x&"), asked[0]["uri"])
        self.assertEqual(
            asked[0]["args"],
            {
                "tenant": "x",
                "userJID": "alice@localhost",  # bare
                "mucJID": self.room("query-check"),
                "nickname": "Alice Q",
            },
        )

    def test_groupchat_reaches_everyone_with_its_id(self) -> None:
        self.assert_joined(self.join("alice", "chat"))
        self.assert_joined(self.join("bob", "chat"))
        sent_id = self.client("alice").send_groupchat(self.room("chat"), "hello bob")
        for user in ("alice", "bob"):
            message = self.client(user).wait_message(self.room("chat"))
            self.assertEqual(
                (message.nick, message.body, message.id), ("alice", "hello bob", sent_id)
            )

    def test_leave_is_seen_by_the_others(self) -> None:
        self.assert_joined(self.join("alice", "leaving"))
        self.assert_joined(self.join("bob", "leaving"))
        own = self.client("bob").leave(self.room("leaving"))
        self.assertEqual(own.type, "unavailable")
        self.assertIn(110, own.status_codes)
        seen = self.client("alice").wait_presence(f"{self.room('leaving')}/bob", "unavailable")
        self.assertNotIn(110, seen.status_codes)

    def test_self_ping(self) -> None:
        self.assert_joined(self.join("carol", "pinged"))
        occupant = f"{self.room('pinged')}/carol"
        self.assertEqual(self.client("carol").self_ping(occupant), "result")
        self.client("carol").leave(self.room("pinged"))
        self.assertEqual(self.client("carol").self_ping(occupant), "not-acceptable")

    def test_instant_room_configuration(self) -> None:
        """Clients ask for the owner form on status 201 and may submit it empty."""
        created = self.join("alice", "configured")
        self.assert_joined(created)
        self.assertIn(201, created.status_codes)
        room = self.room("configured")
        alice = self.client("alice")
        form = alice.iq(
            f"<iq type='get' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        )
        self.assertIn('type="result"', form)
        self.assertIn("jabber:x:data", form)
        submitted = alice.iq(
            f"<iq type='set' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
        )
        self.assertIn('type="result"', submitted)

    def test_service_discovery(self) -> None:
        info = self.client("alice").disco_info(self.stack.component_domain)
        self.assertIsNone(info.condition, info.xml)
        self.assertIn(("conference", "text"), {(c, t) for c, t, _ in info.identities}, info.xml)
        self.assertIn("http://jabber.org/protocol/muc", info.features)


class SlowServiceTests(StackTestCase):
    """timeout = 2: a slow or stalled service refuses the join, and nobody else waits."""

    stack_options: ClassVar[dict[str, Any]] = {
        "rules": {
            "rules": [
                {"user": "*", "room": "slow", "answer": "slow", "delay": 8},
                {"user": "*", "room": "stall", "answer": "stall"},
                {"user": "*", "room": "*"},
            ]
        },
        "http_options": {"timeout": "2"},
    }

    def test_slow_service_times_out(self) -> None:
        result = self.join("alice", "slow")
        self.assert_refused(result, "wait", "service-unavailable")
        self.assertGreater(result.elapsed, 1.8)
        self.assertLess(result.elapsed, 6.0, "the 2 s timeout was not applied")
        self.assert_logged("slow", "kind=timeout")

    def test_stalled_body_times_out(self) -> None:
        result = self.join("alice", "stall")
        self.assert_refused(result, "wait", "service-unavailable")
        self.assertLess(result.elapsed, 6.0, "a body that never ends must time out too")
        self.assert_logged("stall", "kind=timeout")

    def test_others_join_while_a_check_is_pending(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(self.join, "bob", "slow", "bob-waits")
            time.sleep(0.2)  # bob's check is now in flight
            fast = self.join("alice", "fast")
            self.assert_joined(fast)
            # Bob's check runs into its 2 s timeout: alice is in before it ends.
            self.assertFalse(waiting.done(), "alice waited for bob's check")
            self.assert_refused(waiting.result(10), "wait", "service-unavailable")


class GhostAndEarlyRequestTests(StackTestCase):
    """Issue 19 through the real servers: an error presence ends the session's part in the
    room, and a request sent right behind a join waits for the join instead of failing."""

    users = ("alice", "bob")
    stack_options: ClassVar[dict[str, Any]] = {
        "rules": {
            "rules": [
                {"user": "*", "room": "slowjoin", "answer": "slow", "delay": 1.5},
                {"user": "*", "room": "*"},
            ]
        },
    }

    def test_error_presence_then_offline_leaves_no_ghost(self) -> None:
        room = self.room("ghost")
        alice = self.client("alice")
        bob = self.stack.client("bob")  # a session of its own, which goes offline below
        self.assert_joined(alice.join(room, "alice"))
        self.assert_joined(bob.join(room, "bob"))
        alice.wait_presence(f"{room}/bob", "available")
        bob.raw(
            f"<presence type='error' to='{room}/bob'><error type='cancel'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        )
        left = alice.wait_presence(f"{room}/bob", "unavailable")
        self.assertIn(333, left.status_codes, left.xml)
        bob.disconnect()
        again = self.stack.client("bob").join(room, "bob")
        self.assert_joined(again)
        self.assertNotIn(201, again.status_codes)
        announced = alice.wait_presence(f"{room}/bob", "available")
        self.assertNotIn(110, announced.status_codes)

    def test_owner_form_asked_before_the_join_is_decided(self) -> None:
        room = self.room("slowjoin")
        alice = self.client("alice")
        started = time.monotonic()
        alice.raw(
            f"<presence to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        form = alice.iq(
            f"<iq type='get' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        )
        self.assertIn('type="result"', form, form + "\n" + self.stack.diagnostics())
        self.assertIn("jabber:x:data", form)
        self.assertGreater(time.monotonic() - started, 1.2, "answered before the decision")
        own = alice.wait_presence(f"{room}/alice", "available")
        self.assertIn(110, own.status_codes)


class ServiceDownTests(StackTestCase):
    """Nothing listens at the URL: connection refused, join refused."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {
        "auth_url": f"http://127.0.0.1:{free_port()}/muc/join",
    }

    def test_connection_refused_refuses_the_join(self) -> None:
        result = self.join("alice", "anywhere")
        self.assert_refused(result, "wait", "service-unavailable")
        self.assertLess(result.elapsed, 3.0)
        self.assert_logged("anywhere", "kind=connection")


SCOPE_RULES: dict[str, Any] = {"default_reason": "nobody passes", "rules": []}


class EnabledForTests(StackTestCase):
    """enabled_for = gated: only that room asks the service (which refuses everyone)."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {
        "rules": SCOPE_RULES,
        "http_options": {"enabled_for": "gated"},
    }

    def test_room_in_scope_is_gated(self) -> None:
        self.assert_refused(self.join("alice", "gated"), "cancel", "forbidden")

    def test_room_outside_scope_joins_without_asking(self) -> None:
        self.assert_joined(self.join("alice", "open"))
        asked = [r["args"].get("mucJID") for r in self.stack.auth.requests()]  # type: ignore[union-attr]
        self.assertNotIn(self.room("open"), asked)


class DisabledForTests(StackTestCase):
    """disabled_for = open: every room but that one asks the service."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {
        "rules": SCOPE_RULES,
        "http_options": {"disabled_for": "open"},
    }

    def test_room_in_scope_is_gated(self) -> None:
        self.assert_refused(self.join("alice", "gated"), "cancel", "forbidden")

    def test_disabled_room_joins_without_asking(self) -> None:
        self.assert_joined(self.join("alice", "open"))
        asked = [r["args"].get("mucJID") for r in self.stack.auth.requests()]  # type: ignore[union-attr]
        self.assertNotIn(self.room("open"), asked)


class HTTPSVerifiedTests(StackTestCase):
    """A self-signed certificate and insecure = false: TLS fails, the join is refused."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {"tls": True}

    def test_untrusted_certificate_refuses_the_join(self) -> None:
        self.assertTrue(self.stack.url.startswith("https://"))
        self.assert_refused(self.join("alice", "tls"), "wait", "service-unavailable")
        self.assert_logged("tls", "kind=tls")


class HTTPSInsecureTests(StackTestCase):
    """The same certificate with insecure = true: the answer is used."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {"tls": True, "http_options": {"insecure": "true"}}

    def test_insecure_accepts_the_certificate(self) -> None:
        self.assert_joined(self.join("alice", "tls"))


class HTTPSPrivateCATests(StackTestCase):
    """The certificate as ca_file: verified, and the answer is used."""

    users = ("alice",)
    stack_options: ClassVar[dict[str, Any]] = {"tls": True, "ca_file": True}

    def test_ca_file_trusts_the_certificate(self) -> None:
        self.assert_joined(self.join("alice", "tls"))


class TokenAndOptionsTests(StackTestCase):
    """A service that wants a bearer token, Prosody's refusal condition, and show_reason."""

    stack_options: ClassVar[dict[str, Any]] = {
        "token": "e2e-token",
        "http_options": {
            "authorization_header": "Bearer e2e-token",
            "deny_condition": "auth/not-authorized",
            "show_reason": "true",
        },
    }

    def test_token_is_sent_and_never_logged(self) -> None:
        self.assert_joined(self.join("alice", "with-token"))
        self.assertEqual(self.stack.auth.requests()[-1]["authorization"], "ok")  # type: ignore[union-attr]
        self.assertNotIn("e2e-token", self.stack.mucauth_log())

    def test_deny_condition_and_reason_are_configurable(self) -> None:
        result = self.join("bob", "staff")
        self.assert_refused(result, "auth", "not-authorized")
        self.assertEqual(result.text, "Staff only")


class ComponentLinkTests(StackTestCase):
    """The XMPP server restarts: mucauth reconnects and users can join again."""

    users = ()

    def test_rejoin_after_server_restart(self) -> None:
        alice = self.stack.client("alice")
        self.assert_joined(alice.join(self.room("before"), "alice"))
        alice.disconnect()
        self.stack.clients.remove(alice)
        self.stack.restart_server()
        self.assertTrue(self.stack.mucauth.running)  # type: ignore[union-attr]
        result = self.stack.client("alice").join(self.room("after"), "alice")
        self.assert_joined(result)
        self.assertIn(201, result.status_codes)


class ComponentAwayTests(StackTestCase):
    """Where Prosody and ejabberd differ: what a client gets while mucauth is away, and what
    the server tells mucauth's rooms when the server itself stops.

    mucauth does not depend on either: a client that gets a bounce retries, and mucauth empties
    its rooms whenever the link drops, so clients find out by self-ping and rejoin.
    """

    # While no component is connected for the domain, a stanza to it bounces with:
    AWAY_BOUNCE: ClassVar[dict[str, tuple[str, str]]] = {
        "prosody": ("wait", "remote-server-timeout"),  # "Component unavailable"
        "ejabberd": ("cancel", "remote-server-not-found"),  # it falls through to s2s
    }
    # Does the server tell every room that its occupants left before it closes the link on its
    # own shutdown? Prosody does. ejabberd closes the component link while it is still ending
    # the client sessions: a room hears of its occupants only when it wins that race.
    UNAVAILABLE_FOR_EVERY_ROOM_ON_SHUTDOWN: ClassVar[dict[str, bool]] = {
        "prosody": True,
        "ejabberd": False,
    }

    def test_join_while_mucauth_is_away_bounces(self) -> None:
        assert self.stack.mucauth is not None
        self.stack.mucauth.stop()
        result = self.join("alice", "away", timeout=5)
        self.assertFalse(result.ok, result.describe())
        self.assertEqual(
            (result.error_type, result.condition), self.AWAY_BOUNCE[self.server], result.error_xml
        )
        self.assertEqual(result.error_id, result.join_id, "a bounce echoes the join's id")
        self.stack.start_mucauth()
        self.assert_joined(self.join("alice", "away"))

    def test_server_shutdown_and_the_rooms(self) -> None:
        rooms = [f"shutdown-{n}" for n in range(3)]
        for room in rooms:
            self.assert_joined(self.join("alice", room))
        since = len(self.stack.mucauth_log())
        for client in list(self.stack.clients):  # their sessions end with the server
            client.disconnect()
            self.stack.clients.remove(client)
        self.stack.restart_server()
        log = self.stack.mucauth_log()[since:]
        before_link_lost = log.split("component link: disconnected")[0]
        emptied = [r for r in rooms if f"room destroyed room={self.room(r)}:" in before_link_lost]
        if self.UNAVAILABLE_FOR_EVERY_ROOM_ON_SHUTDOWN[self.server]:
            self.assertEqual(emptied, rooms, log)
        # On both, the rooms are gone once mucauth has reconnected: joining creates them anew.
        for room in rooms:
            result = self.join("alice", room)
            self.assert_joined(result)
            self.assertIn(201, result.status_codes)


class ConfigurationErrorTests(ClassFixture):
    """twistd mucauth with a broken tap.conf: one line, exit status 1, no traceback."""

    @classmethod
    def start_fixture(cls) -> Path:
        return Path(tempfile.mkdtemp(prefix="mucauth-e2e-config-"))

    @classmethod
    def stop_fixture(cls, fixture: Path) -> None:
        shutil.rmtree(fixture, ignore_errors=True)

    def run_twistd(self, text: str) -> tuple[int, str]:
        directory: Path = self.fixture()
        config = directory / "tap.conf"
        config.write_text(text)
        result = subprocess.run(
            [*MucauthProcess(directory, config).command()],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=directory,
        )
        return result.returncode, result.stdout + result.stderr

    def test_bad_value(self) -> None:
        status, output = self.run_twistd(
            "[component]\njid = rooms.localhost\nsecret = never-show-this\n"
            "[muc_http_auth]\nurl = http://127.0.0.1:1/\ntimeout = soon\n"
        )
        self.assertEqual(status, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("never-show-this", output)
        [line] = output.strip().splitlines()
        self.assertIn("mucauth: ", line)
        self.assertIn("tap.conf: [muc_http_auth] timeout", line)
        self.assertIn("soon", line)

    def test_missing_file(self) -> None:
        directory: Path = self.fixture()
        result = subprocess.run(
            [*twistd_command(), "-n", "--pidfile=", "mucauth", "--config", str(directory / "nope")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=directory,
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertIn("nope", output.strip().splitlines()[-1])


class StackStopTests(unittest.TestCase):
    """After a stack stops, none of its processes or client threads remain.

    That nothing at all outlives the suite is checked after the last test, under pytest and
    trial alike: see ``tests/support/leftovers.py``.
    """

    def test_stopping_a_stack_leaves_nothing(self) -> None:
        for server in SERVERS:
            with self.subTest(server=server):
                stack = Stack("leftovers", rules=RULES, server=server)
                self.addCleanup(stack.stop)
                stack.start()
                client = stack.client("alice")
                self.assertTrue(client.join(stack.room("r"), "alice").ok, stack.diagnostics())
                pids = list(stack.pids)
                self.assertGreaterEqual(len(pids), 3, pids)  # the server, auth service, twistd
                stack.stop()
                self.assertEqual([p for p in pids if pid_alive(p)], [], "outlived their stack")
                self.assertTrue(client.closed)


# -- the same tests behind ejabberd ------------------------------------------------------------


class JoinGateOnEjabberdTests(JoinGateTests):
    server = "ejabberd"


class SlowServiceOnEjabberdTests(SlowServiceTests):
    server = "ejabberd"


class ServiceDownOnEjabberdTests(ServiceDownTests):
    server = "ejabberd"


class EnabledForOnEjabberdTests(EnabledForTests):
    server = "ejabberd"


class DisabledForOnEjabberdTests(DisabledForTests):
    server = "ejabberd"


class HTTPSVerifiedOnEjabberdTests(HTTPSVerifiedTests):
    server = "ejabberd"


class HTTPSInsecureOnEjabberdTests(HTTPSInsecureTests):
    server = "ejabberd"


class HTTPSPrivateCAOnEjabberdTests(HTTPSPrivateCATests):
    server = "ejabberd"


class TokenAndOptionsOnEjabberdTests(TokenAndOptionsTests):
    server = "ejabberd"


class ComponentLinkOnEjabberdTests(ComponentLinkTests):
    server = "ejabberd"


class ComponentAwayOnEjabberdTests(ComponentAwayTests):
    server = "ejabberd"


class GhostAndEarlyRequestOnEjabberdTests(GhostAndEarlyRequestTests):
    server = "ejabberd"
