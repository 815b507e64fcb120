"""The example authorization service (examples/auth_service.py), on its own.

It is what an operator copies and what the end-to-end tests put behind mucauth, so its answers,
its token check and its deliberate misbehaviours are checked here over real HTTP.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from examples._stack import AUTH_SERVICE, AuthService
from examples.auth_service import Rules, RulesError, load_rules
from tests.support.stack import ClassFixture, self_signed_certificate

RULES: dict[str, Any] = {
    "default_reason": "not on the list",
    "rules": [
        {"user": "bob@localhost", "room": "staff", "allow": False, "reason": "staff only"},
        {"user": "alice@localhost", "room": "*"},
        {"user": "bob@localhost", "room": "lobby@rooms.localhost", "nicks": ["bob"]},
        {"user": "*", "room": "slow", "answer": "slow", "delay": 1.0},
        {"user": "*", "room": "slow-member", "answer": "slow", "delay": 0, "role": "visitor"},
        {"user": "*", "room": "err500", "answer": "500"},
        {"user": "*", "room": "redirect", "answer": "redirect"},
        {"user": "*", "room": "string-false", "answer": "string-false"},
        {"user": "*", "room": "not-json", "answer": "not-json"},
        {"user": "*", "room": "true-body", "answer": "true-body"},
        {"user": "*", "room": "empty", "answer": "empty"},
        {"user": "*", "room": "huge", "answer": "huge"},
        {"user": "carol@localhost", "room": "standing", "affiliation": "admin", "role": "visitor"},
        {"user": "dave@localhost", "room": "standing", "nicks": "dave", "affiliation": "owner"},
        {"user": "*", "room": "bad-affiliation", "answer": "bad-affiliation"},
    ],
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def get(url: str, headers: dict[str, str] | None = None, context: Any = None) -> tuple[int, bytes]:
    """(status, body) without following redirects."""
    handlers: list[Any] = [_NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ask(url: str, user: str, room: str, nick: str, **kwargs: Any) -> tuple[int, bytes]:
    query = urlencode({"userJID": user, "mucJID": room, "nickname": nick})
    return get(f"{url}?{query}", **kwargs)


class RulesFileTests(unittest.TestCase):
    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.directory)

    def load(self, data: Any, test_answers: bool = False) -> Rules:
        path = self.directory / "rules.json"
        path.write_text(json.dumps(data) if not isinstance(data, str) else data)
        return load_rules(path, test_answers=test_answers)

    def test_first_matching_rule_decides(self) -> None:
        rules = self.load(RULES, test_answers=True)
        self.assertEqual(
            rules.decide("bob@localhost", "staff@rooms.x", "bob")[1:], (False, "staff only")
        )
        self.assertTrue(rules.decide("alice@localhost", "staff@rooms.x", "a")[1])

    def test_room_name_matches_any_service_full_jid_only_its_own(self) -> None:
        rules = self.load(
            {"rules": [{"user": "*", "room": "lobby"}, {"user": "*", "room": "r@a.b"}]}
        )
        self.assertTrue(rules.decide("x@y", "lobby@rooms.one", "n")[1])
        self.assertTrue(rules.decide("x@y", "lobby@rooms.two", "n")[1])
        self.assertTrue(rules.decide("x@y", "r@a.b", "n")[1])
        self.assertFalse(rules.decide("x@y", "r@other", "n")[1])

    def test_jids_compare_case_insensitively(self) -> None:
        rules = self.load({"rules": [{"user": "Alice@LocalHost", "room": "Lobby"}]})
        self.assertTrue(rules.decide("alice@localhost", "LOBBY@rooms.localhost", "n")[1])

    def test_nicks_restrict_the_nickname(self) -> None:
        rules = self.load({"rules": [{"user": "*", "room": "*", "nicks": "bob"}]})
        self.assertTrue(rules.decide("b@x", "r@s", "bob")[1])
        allowed, reason = rules.decide("b@x", "r@s", "eve")[1:]
        self.assertFalse(allowed)
        self.assertIn("eve", reason)

    def test_no_match_gives_the_default_reason(self) -> None:
        rules = self.load({"default_reason": "nope", "rules": []})
        self.assertEqual(rules.decide("x@y", "r@s", "n"), (None, False, "nope"))

    def test_typo_in_a_rule_is_an_error(self) -> None:
        with self.assertRaisesRegex(RulesError, r"rule 1: unknown key\(s\) alow"):
            self.load({"rules": [{"user": "*", "room": "*", "alow": False}]})

    def test_answer_needs_test_answers(self) -> None:
        with self.assertRaisesRegex(RulesError, "only allowed with --test-answers"):
            self.load({"rules": [{"user": "*", "room": "*", "answer": "500"}]})

    def test_unknown_answer_is_an_error(self) -> None:
        with self.assertRaisesRegex(RulesError, "'teapot' is not one of"):
            self.load({"rules": [{"user": "*", "room": "*", "answer": "teapot"}]}, True)

    def test_a_standing_outside_the_contract_is_an_error(self) -> None:
        with self.assertRaisesRegex(RulesError, "rule 1: affiliation: expected one of owner"):
            self.load({"rules": [{"user": "*", "room": "*", "affiliation": "outcast"}]})
        with self.assertRaisesRegex(RulesError, "rule 1: role: expected one of moderator"):
            self.load({"rules": [{"user": "*", "room": "*", "role": "owner"}]})

    def test_not_json_is_an_error(self) -> None:
        with self.assertRaisesRegex(RulesError, "not JSON"):
            self.load("{rules: ")


class CommandLineTests(unittest.TestCase):
    def test_bad_rules_file_stops_start_up_with_one_line(self) -> None:
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory)
        (directory / "rules.json").write_text('{"rules": [{"user": "*"}]}')
        result = subprocess.run(
            [sys.executable, str(AUTH_SERVICE), "--rules", str(directory / "rules.json")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.strip(), f"auth_service: {directory}/rules.json: rule 1: room: "
            "expected a bare JID, a name or *",
        )  # fmt: skip


class ServiceFixture(ClassFixture):
    """One example auth service in a temporary folder, shared by the class."""

    @classmethod
    def make_service(cls, directory: Path) -> AuthService:
        raise NotImplementedError

    @classmethod
    def start_fixture(cls) -> AuthService:
        service = cls.make_service(Path(tempfile.mkdtemp()))
        try:
            service.start()
        except BaseException:
            service.stop()
            raise
        return service

    @classmethod
    def stop_fixture(cls, fixture: AuthService) -> None:
        fixture.stop()
        shutil.rmtree(fixture.directory, ignore_errors=True)

    def setUp(self) -> None:
        super().setUp()
        self.service: AuthService = self.fixture()


class ServiceTests(ServiceFixture):
    """One service with every test answer, shared by the class."""

    @classmethod
    def make_service(cls, directory: Path) -> AuthService:
        return AuthService(directory, RULES, test_answers=True)

    def ask(self, user: str, room: str, nick: str = "n") -> tuple[int, Any]:
        status, body = ask(self.service.url, user, room, nick)
        return status, body

    def test_prints_a_parseable_url(self) -> None:
        self.assertRegex(self.service.url, r"^http://127\.0\.0\.1:\d+/muc/join$")

    def test_allowed(self) -> None:
        self.assertEqual(
            self.ask("alice@localhost", "staff@rooms.localhost"), (200, b'{"allowed": true}')
        )

    def test_a_yes_carries_the_rule_s_standing(self) -> None:
        _, body = self.ask("carol@localhost", "standing@rooms.localhost")
        self.assertEqual(
            json.loads(body), {"allowed": True, "affiliation": "admin", "role": "visitor"}
        )

    def test_a_refusal_carries_no_standing(self) -> None:
        _, body = self.ask("dave@localhost", "standing@rooms.localhost", "eve")
        self.assertEqual(set(json.loads(body)), {"allowed", "error"})
        _, body = self.ask("dave@localhost", "standing@rooms.localhost", "dave")
        self.assertEqual(json.loads(body), {"allowed": True, "affiliation": "owner"})

    def test_a_slow_yes_carries_the_standing_too(self) -> None:
        _, body = self.ask("x@y", "slow-member@rooms.localhost")
        self.assertEqual(json.loads(body), {"allowed": True, "role": "visitor"})

    def test_bad_affiliation(self) -> None:
        _, body = self.ask("carol@localhost", "bad-affiliation@rooms.localhost")
        self.assertEqual(json.loads(body), {"allowed": True, "affiliation": "emperor"})

    def test_refused_with_reason(self) -> None:
        status, body = self.ask("bob@localhost", "staff@rooms.localhost")
        self.assertEqual(
            (status, json.loads(body)), (200, {"allowed": False, "error": "staff only"})
        )

    def test_refused_by_default(self) -> None:
        _, body = self.ask("mallory@localhost", "lobby@rooms.localhost")
        self.assertEqual(json.loads(body), {"allowed": False, "error": "not on the list"})

    def test_nick_rule(self) -> None:
        self.assertEqual(
            json.loads(self.ask("bob@localhost", "lobby@rooms.localhost", "bob")[1]),
            {"allowed": True},
        )
        self.assertFalse(
            json.loads(self.ask("bob@localhost", "lobby@rooms.localhost", "al")[1])["allowed"]
        )

    def test_missing_parameter_is_400(self) -> None:
        status, body = get(self.service.url + "?userJID=alice@localhost")
        self.assertEqual(status, 400)
        self.assertFalse(json.loads(body)["allowed"])

    def test_other_paths_are_404(self) -> None:
        self.assertEqual(get(self.service.base_url + "/nothing")[0], 404)

    def test_logs_each_request(self) -> None:
        self.ask("alice@localhost", "logged@rooms.localhost", "Al")
        deadline = time.monotonic() + 5
        while "room=logged@rooms.localhost nick=Al -> allowed" not in self.service.log_text():
            self.assertLess(time.monotonic(), deadline, self.service.log_text())
            time.sleep(0.02)

    def test_records_requests_with_their_raw_query(self) -> None:
        get(self.service.url + "?tenant=x&userJID=alice%40localhost&mucJID=q%40r&nickname=A+B")
        last = self.service.requests()[-1]
        self.assertEqual(
            last["uri"], "/muc/join?tenant=x&userJID=alice%40localhost&mucJID=q%40r&nickname=A+B"
        )
        self.assertEqual(last["args"]["nickname"], "A B")

    # The misbehaviours the end-to-end tests rely on:

    def test_slow(self) -> None:
        started = time.monotonic()
        status, body = self.ask("x@y", "slow@rooms.localhost")
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertEqual((status, json.loads(body)), (200, {"allowed": True}))

    def test_500_says_yes(self) -> None:
        self.assertEqual(self.ask("x@y", "err500@r"), (500, b'{"allowed": true}'))

    def test_redirect_points_to_a_yes(self) -> None:
        status, _ = self.ask("x@y", "redirect@r")
        self.assertEqual(status, 302)
        self.assertEqual(get(self.service.base_url + "/yes"), (200, b'{"allowed": true}'))

    def test_string_false(self) -> None:
        self.assertEqual(self.ask("x@y", "string-false@r"), (200, b'{"allowed": "false"}'))

    def test_not_json(self) -> None:
        status, body = self.ask("x@y", "not-json@r")
        self.assertEqual(status, 200)
        self.assertRaises(ValueError, json.loads, body)

    def test_true_body(self) -> None:
        self.assertEqual(self.ask("x@y", "true-body@r"), (200, b"true"))

    def test_empty(self) -> None:
        self.assertEqual(self.ask("x@y", "empty@r"), (200, b""))

    def test_huge(self) -> None:
        status, body = self.ask("x@y", "huge@r")
        self.assertEqual(status, 200)
        self.assertGreater(len(body), 64 * 1024)
        self.assertIs(json.loads(body)["allowed"], True)


class TokenAndTLSTests(ServiceFixture):
    """One HTTPS service that wants a bearer token."""

    TOKEN = "t0ken-do-not-log"

    @classmethod
    def make_service(cls, directory: Path) -> AuthService:
        cert, key = self_signed_certificate(directory / "tls")
        return AuthService(directory, RULES, token=cls.TOKEN, tls=(cert, key), test_answers=True)

    def setUp(self) -> None:
        super().setUp()
        self.context = ssl.create_default_context(
            cafile=str(self.service.directory / "tls" / "cert.pem")
        )

    def ask_with(self, headers: dict[str, str]) -> tuple[int, bytes]:
        return ask(
            self.service.url, "alice@localhost", "a@r", "n", headers=headers, context=self.context
        )

    def test_https_url(self) -> None:
        self.assertTrue(self.service.url.startswith("https://127.0.0.1:"))

    def test_right_token(self) -> None:
        self.assertEqual(
            self.ask_with({"Authorization": f"Bearer {self.TOKEN}"}), (200, b'{"allowed": true}')
        )

    def test_missing_token_is_401(self) -> None:
        self.assertEqual(self.ask_with({})[0], 401)

    def test_wrong_token_is_401(self) -> None:
        self.assertEqual(self.ask_with({"Authorization": "Bearer nope"})[0], 401)

    def test_token_never_logged(self) -> None:
        self.ask_with({"Authorization": f"Bearer {self.TOKEN}"})
        self.ask_with({"Authorization": "Bearer nope"})
        self.assertNotIn(self.TOKEN, self.service.log_text())
        self.assertNotIn("nope", self.service.log_text())


class ReloadTests(ServiceFixture):
    """A service of its own: these tests change its rules."""

    @classmethod
    def make_service(cls, directory: Path) -> AuthService:
        return AuthService(directory, {"rules": [{"user": "alice@localhost", "room": "*"}]})

    def allowed(self, user: str, room: str = "lobby@rooms.localhost") -> bool:
        status, body = ask(self.service.url, user, room, "n")
        self.assertEqual(status, 200)
        return bool(json.loads(body)["allowed"])

    def test_new_rules_apply_to_the_next_request(self) -> None:
        self.service.set_rules({"rules": [{"user": "alice@localhost", "room": "*"}]})
        self.assertTrue(self.allowed("alice@localhost"))
        self.service.set_rules({"rules": [{"user": "bob@localhost", "room": "*"}]})
        self.assertFalse(self.allowed("alice@localhost"))
        self.assertTrue(self.allowed("bob@localhost"))
        self.assertIn("1 rules reloaded from", self.service.log_text())

    def test_a_broken_edit_keeps_the_old_rules(self) -> None:
        self.service.set_rules({"rules": [{"user": "carol@localhost", "room": "*"}]})
        self.assertTrue(self.allowed("carol@localhost"))
        (self.service.directory / "rules.json").write_text("{not json")
        self.assertTrue(self.allowed("carol@localhost"))
        self.assertIn("rules not reloaded, the old ones stay", self.service.log_text())

    def test_an_archive_reader_has_no_nickname(self) -> None:
        self.service.set_rules({"rules": [{"user": "dave@localhost", "room": "*", "nicks": "d"}]})
        query = "userJID=dave@localhost&mucJID=lobby@rooms.localhost&nickname="
        status, body = get(f"{self.service.url}?{query}&action=mam")
        self.assertEqual((status, json.loads(body)["allowed"]), (200, True))
        self.assertEqual(get(f"{self.service.url}?{query}")[0], 400)
