"""HTTPAuthorizer against a real loopback HTTP(S) server: what goes on the wire, what comes back."""

from __future__ import annotations

import gzip
import json
import os
import socket
import tempfile
import time
from typing import Any
from urllib.parse import quote

from hyperlink import EncodedURL
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.client import HTTPClient
from treq.testing import StringStubbingResource, StubTreq
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer, provider
from zope.interface.verify import verifyObject

import mucauth
from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.authorize.http import (
    HTTPAuthorizer,
    _NoCookies,
    _query_url,
    _quote,
    _split_userinfo,
    _uri_form,
    _URIForm,
)
from mucauth.settings import HTTPAuthSettings, Secret
from tests.support.certs import self_signed
from tests.support.http_server import (
    AuthServer,
    Handler,
    answer,
    huge_body,
    never_answer,
    stall_after_headers,
    start_server,
)

USER = JID("alice@example.org/phone")
ROOM = JID("physics@rooms.example.org")
TOKEN = "Bearer s3cr3t-t0ken-value"


def join(nick: str = "alice", user: JID = USER, room: JID = ROOM, **kw: Any) -> JoinRequest:
    return JoinRequest(user=user, room=room, nick=nick, **kw)


def within(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """Fail the test (not hang it) if ``d`` does not fire in time."""
    return d.addTimeout(seconds, reactor)


class LogCapture:
    """Every event published while the test runs."""

    def __init__(self, test: TestCase) -> None:
        self.events: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observe)
        test.addCleanup(globalLogPublisher.removeObserver, observe)

    def decisions(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "outcome" in e and "latency_ms" in e]


class ServerCase(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.server = self.start()

    def start(self, tls: Any = None) -> AuthServer:
        server = start_server(reactor, tls)
        self.addCleanup(server.stop)
        return server

    def make(self, url: str | None = None, **kw: Any) -> HTTPAuthorizer:
        settings = HTTPAuthSettings(url=url or self.server.url, **kw)
        auth = HTTPAuthorizer(settings, reactor)
        self.addCleanup(auth.close)
        return auth

    async def check(self, handler: Handler, request: JoinRequest | None = None, **kw: Any) -> Any:
        self.server.resource.handler = handler
        return await self.make(**kw).authorize(request or join())


class AnswerTests(ServerCase):
    def test_provides_interface(self) -> None:
        verifyObject(IJoinAuthorizer, self.make())

    async def test_allowed_true_admits(self) -> None:
        decision = await self.check(answer(200, b'{"allowed": true}'))
        self.assertEqual(decision.outcome, "allow")
        self.assertEqual(decision.status, 200)
        self.assertGreater(decision.latency, 0)

    async def test_any_2xx_counts(self) -> None:
        decision = await self.check(answer(203, b'{"allowed": true, "error": "ignored"}'))
        self.assertTrue(decision.is_allowed)

    async def test_allowed_false_is_a_refusal_with_reason(self) -> None:
        decision = await self.check(answer(200, b'{"allowed": false, "error": "Not on roster"}'))
        self.assertEqual((decision.outcome, decision.reason), ("deny", "Not on roster"))
        self.assertIsNone(decision.kind)

    async def test_refusal_reasons_are_coerced_to_text(self) -> None:
        auth = self.make()
        cases = [
            (b'{"allowed": false}', ""),
            (b'{"allowed": false, "error": null}', ""),
            (b'{"allowed": false, "error": ""}', ""),
            (b'{"allowed": false, "error": 42}', "42"),
            (b'{"allowed": false, "error": {"code": 7}}', '{"code": 7}'),
            (
                '{"allowed": false, "error": "Zugang verweigert: ü"}'.encode(),
                "Zugang verweigert: ü",
            ),
        ]
        for body, reason in cases:
            self.server.resource.handler = answer(200, body)
            decision = await auth.authorize(join())
            self.assertEqual((decision.outcome, decision.reason), ("deny", reason), body)

    async def test_allowed_must_be_a_json_boolean(self) -> None:
        auth = self.make()
        for value in [b'"false"', b'"true"', b"1", b"0", b"null", b"[]", b"{}", b"1.0"]:
            self.server.resource.handler = answer(200, b'{"allowed": ' + value + b"}")
            decision = await auth.authorize(join())
            self.assertEqual((decision.outcome, decision.kind), ("error", "bad_answer"), value)

    async def test_the_joiner_s_standing_is_carried(self) -> None:
        auth = self.make()
        cases = [
            (b'{"allowed": true}', None, None),
            (b'{"allowed": true, "affiliation": null, "role": null}', None, None),
            *(
                (f'{{"allowed": true, "affiliation": "{a}"}}'.encode(), a, None)
                for a in ("owner", "admin", "member", "none")
            ),
            *(
                (f'{{"allowed": true, "role": "{r}"}}'.encode(), None, r)
                for r in ("moderator", "participant", "visitor")
            ),
            (b'{"allowed": true, "affiliation": "member", "role": "visitor"}', "member", "visitor"),
        ]
        for body, affiliation, role in cases:
            self.server.resource.handler = answer(200, body)
            decision = await auth.authorize(join())
            self.assertTrue(decision.is_allowed, body)
            self.assertEqual((decision.affiliation, decision.role), (affiliation, role), body)

    async def test_a_standing_outside_the_contract_is_a_bad_answer(self) -> None:
        auth = self.make()
        known = {
            "affiliation": "owner, admin, member, none",
            "role": "moderator, participant, visitor",
        }
        other_kinds = ["1", "0", "1.5", "true", "false", '["owner"]', "[]", '{"a": 1}', "{}"]
        invalid = {
            "affiliation": ['"outcast"', '"Owner"', '"moderator"', '""', *other_kinds],
            "role": ['"none"', '"Moderator"', '"owner"', '""', *other_kinds],
        }
        for member, values in invalid.items():
            for value in values:
                body = f'{{"allowed": true, "{member}": {value}}}'.encode()
                self.server.resource.handler = answer(200, body)
                decision = await auth.authorize(join())
                self.assertEqual((decision.outcome, decision.kind), ("error", "bad_answer"), body)
                shown = json.dumps(json.loads(value))
                self.assertEqual(
                    decision.reason, f"'{member}' is {shown}, not one of {known[member]}", body
                )
                self.assertEqual((decision.affiliation, decision.role), (None, None), body)

    async def test_a_good_member_does_not_save_a_bad_one(self) -> None:
        # The value is cut short as in the other reasons.
        body = f'{{"allowed": true, "affiliation": "owner", "role": "{"x" * 100}"}}'.encode()
        decision = await self.check(answer(200, body))
        self.assertEqual((decision.outcome, decision.kind), ("error", "bad_answer"))
        self.assertEqual(
            decision.reason,
            f"'role' is \"{'x' * 76}..., not one of moderator, participant, visitor",
        )

    async def test_a_refusal_ignores_a_standing(self) -> None:
        auth = self.make()
        for standing in (
            '"affiliation": "owner", "role": "moderator"',
            '"affiliation": "emperor", "role": 7',
            '"affiliation": null, "role": ["x"]',
        ):
            body = f'{{"allowed": false, {standing}, "error": "no"}}'.encode()
            self.server.resource.handler = answer(200, body)
            decision = await auth.authorize(join())
            self.assertEqual((decision.outcome, decision.reason), ("deny", "no"), body)
            self.assertEqual((decision.affiliation, decision.role), (None, None), body)

    async def test_missing_allowed_is_an_error(self) -> None:
        decision = await self.check(answer(200, b'{"error": "who knows"}'))
        self.assertEqual((decision.outcome, decision.kind), ("error", "bad_answer"))

    async def test_json_that_is_not_an_object_is_an_error(self) -> None:
        auth = self.make()
        for body in [b"true", b"[true]", b'"x"', b"1", b"null", b'[{"allowed": true}]']:
            self.server.resource.handler = answer(200, body)
            decision = await auth.authorize(join())
            self.assertEqual((decision.outcome, decision.kind), ("error", "bad_answer"), body)

    async def test_body_that_is_not_json_is_an_error(self) -> None:
        auth = self.make()
        bodies = [
            b"",
            b"   ",
            b"{",
            b"allowed=true",
            b"<html>yes</html>",
            b'{"allowed": true, "error": "\xff"}',  # not UTF-8
            b'\xef\xbb\xbf{"allowed": true}',  # a BOM is not JSON
        ]
        for body in bodies:
            self.server.resource.handler = answer(200, body)
            decision = await auth.authorize(join())
            self.assertEqual((decision.outcome, decision.kind), ("error", "bad_json"), body)

    async def test_no_content_is_an_error(self) -> None:
        decision = await self.check(answer(204, b""))
        self.assertEqual((decision.kind, decision.status), ("bad_json", 204))

    async def test_redirects_are_errors_and_never_followed(self) -> None:
        auth = self.make()
        for code in (301, 302, 303, 307, 308):
            self.server.resource.handler = answer(
                code, b'{"allowed": true}', location=self.server.url + "?other=1"
            )
            decision = await auth.authorize(join())
            self.assertEqual((decision.kind, decision.status), ("redirect", code))
        self.assertEqual(len(self.server.resource.requests), 5)

    async def test_client_errors_are_errors(self) -> None:
        auth = self.make()
        for code in (400, 401, 403, 404, 429):
            self.server.resource.handler = answer(code, b'{"allowed": false, "error": "no"}')
            decision = await auth.authorize(join())
            self.assertEqual(
                (decision.outcome, decision.kind, decision.status), ("error", "status", code)
            )

    async def test_server_error_with_allowed_true_is_not_a_yes(self) -> None:
        auth = self.make()
        for code in (500, 502, 503):
            self.server.resource.handler = answer(code, b'{"allowed": true}')
            decision = await auth.authorize(join())
            self.assertEqual(
                (decision.outcome, decision.kind, decision.status), ("error", "status", code)
            )


class RequestTests(ServerCase):
    async def test_parameters_round_trip(self) -> None:
        nick = "a&b=c ü/x?#%+"
        user = JID("zoë+tag@Example.ORG/rés ource")
        room = JID("ünï-room@rooms.example.org")
        await self.check(answer(), join(nick=nick, user=user, room=room))
        [seen] = self.server.resource.requests
        self.assertEqual(seen.method, b"GET")
        self.assertEqual(seen.path, b"/muc/auth")
        self.assertEqual(seen.arg("userJID"), "zoë+tag@example.org")
        self.assertEqual(seen.arg("mucJID"), "ünï-room@rooms.example.org")
        self.assertEqual(seen.arg("nickname"), nick)
        self.assertEqual(sorted(seen.args), [b"mucJID", b"nickname", b"userJID"])

    async def test_existing_query_string_is_kept(self) -> None:
        url = self.server.url + "?service=chat&key=a%20b"
        await self.check(answer(), url=url)
        [seen] = self.server.resource.requests
        self.assertEqual(seen.arg("service"), "chat")
        self.assertEqual(seen.arg("key"), "a b")
        self.assertEqual(seen.arg("userJID"), "alice@example.org")
        self.assertTrue(seen.uri.startswith(b"/muc/auth?service=chat&key=a%20b&userJID="))

    async def test_trailing_question_mark_is_not_doubled(self) -> None:
        await self.check(answer(), url=self.server.url + "?")
        [seen] = self.server.resource.requests
        self.assertTrue(seen.uri.startswith(b"/muc/auth?userJID="), seen.uri)

    async def test_headers(self) -> None:
        await self.check(answer(), authorization_header=Secret(TOKEN))
        [seen] = self.server.resource.requests
        self.assertEqual(seen.header("Authorization"), TOKEN)
        self.assertEqual(seen.header("Accept"), "application/json")
        self.assertEqual(seen.header("User-Agent"), f"mucauth/{mucauth.__version__}")
        self.assertIsNone(seen.header("Cookie"))

    async def test_url_userinfo_becomes_basic_auth(self) -> None:
        url = self.server.url.replace("http://", "http://us%40er:p%3Ass@")
        await self.check(answer(), url=url)
        [seen] = self.server.resource.requests
        self.assertEqual(seen.header("Authorization"), "Basic dXNAZXI6cDpzcw==")  # us@er:p:ss

    async def test_no_authorization_header_unless_configured(self) -> None:
        await self.check(answer())
        [seen] = self.server.resource.requests
        self.assertIsNone(seen.header("Authorization"))

    async def test_cookies_are_not_kept_between_checks(self) -> None:
        auth = self.make()
        self.server.resource.handler = answer(200, b'{"allowed": true}', set_cookie="sid=1; Path=/")
        await auth.authorize(join())
        await auth.authorize(join())
        self.assertIsNone(self.server.resource.requests[1].header("Cookie"))

    async def test_set_cookies_are_never_sent_back(self) -> None:
        """treq puts a cookie agent around every request: its jar must keep nothing."""

        def with_cookies(request: Request) -> bytes:
            request.addCookie(b"sid", b"1", path=b"/")
            request.addCookie(b"scoped", b"2", path=b"/muc", max_age=b"3600")
            request.addCookie(b"host", b"3", domain=b"127.0.0.1", path=b"/muc/auth")
            request.addCookie(b"lax", b"4", path=b"/", sameSite="lax", httpOnly=True)
            request.setHeader("Content-Type", "application/json")
            return b'{"allowed": true}'

        auth = self.make()
        self.server.resource.handler = with_cookies
        for _ in range(3):
            self.assertTrue((await auth.authorize(join())).is_allowed)
        self.server.resource.handler = answer(200, b'{"allowed": false}')
        self.assertEqual((await auth.authorize(join())).outcome, "deny")
        self.assertEqual([r.header("Cookie") for r in self.server.resource.requests], [None] * 4)

    async def test_exactly_these_headers_on_every_check(self) -> None:
        """Nothing treq's layers add reaches the wire (Accept-Encoding, Cookie, ...), and the
        one Headers object shared by every check stays as it was built."""
        auth = self.make(authorization_header=Secret(TOKEN))
        for nick in ("a", "b", "c"):
            await auth.authorize(join(nick=nick))
        for seen in self.server.resource.requests:
            self.assertEqual(
                sorted(seen.headers), [b"accept", b"authorization", b"host", b"user-agent"]
            )

    async def test_no_content_coding_is_offered_or_undone(self) -> None:
        """A gzip body the service sends anyway is checked as it came: it is not JSON."""

        def gzipped(request: Request) -> bytes:
            request.setHeader("Content-Encoding", "gzip")
            request.setHeader("Content-Type", "application/json")
            return gzip.compress(b'{"allowed": true}')

        decision = await self.check(gzipped)
        self.assertEqual((decision.outcome, decision.kind), ("error", "bad_json"))
        [seen] = self.server.resource.requests
        self.assertIsNone(seen.header("Accept-Encoding"))

    async def test_url_without_a_path_asks_for_the_root(self) -> None:
        base = self.server.url.removesuffix("/muc/auth")
        auth = self.make(url=base)
        await auth.authorize(join())
        await self.make(url=base + "?").authorize(join())
        for seen in self.server.resource.requests:
            self.assertEqual(seen.path, b"/")
            self.assertTrue(seen.uri.startswith(b"/?userJID=alice%40example.org&"), seen.uri)
        self.assertIsInstance(auth._client, HTTPClient)  # the check goes through treq

    async def test_registration_sends_the_same_request(self) -> None:
        auth = self.make()
        await auth.authorize(join(action="join"))
        decision = await auth.authorize(join(action="register"))
        self.assertTrue(decision.is_allowed)
        first, second = self.server.resource.requests
        self.assertEqual(first.uri, second.uri)

    async def test_an_archive_reader_is_asked_about_with_action_mam(self) -> None:
        auth = self.make()
        decision = await auth.authorize(join(action="mam", nick=""))
        self.assertTrue(decision.is_allowed)
        [seen] = self.server.resource.requests
        self.assertTrue(
            seen.uri.endswith(b"&mucJID=physics%40rooms.example.org&nickname=&action=mam"), seen.uri
        )


class FailureTests(ServerCase):
    async def assert_closed_in_time(self, handler: Handler, kind: str = "timeout") -> Decision:
        started = time.monotonic()
        decision = await self.check(handler, timeout=0.5)
        elapsed = time.monotonic() - started
        self.assertEqual((decision.outcome, decision.kind), ("error", kind))
        self.assertLess(elapsed, 0.5 + 0.5)  # the contract: within timeout + 0.5 s
        self.assertGreaterEqual(decision.latency, 0.45)
        await within(self.server.all_closed(), 2.0)
        self.assertEqual(self.server.open_connections, [])
        return decision

    async def test_server_that_never_answers_times_out(self) -> None:
        decision = await self.assert_closed_in_time(never_answer())
        self.assertIsNone(decision.status)

    async def test_server_that_stalls_after_headers_times_out(self) -> None:
        decision = await self.assert_closed_in_time(stall_after_headers())
        self.assertEqual(decision.status, 200)

    async def test_huge_body_is_cut_off(self) -> None:
        decision = await self.check(huge_body())
        self.assertEqual((decision.kind, decision.status), ("too_large", 200))
        await within(self.server.all_closed(), 2.0)

    async def test_huge_chunked_body_is_cut_off(self) -> None:
        decision = await self.check(huge_body(chunked=True))
        self.assertEqual(decision.kind, "too_large")
        await within(self.server.all_closed(), 2.0)

    async def test_body_under_the_cap_is_read(self) -> None:
        decision = await self.check(huge_body(60 * 1024))
        self.assertTrue(decision.is_allowed)

    async def test_refused_connection(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        decision = await self.make(url=f"http://127.0.0.1:{port}/").authorize(join())
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))

    async def test_cancel_fires_with_a_decision_and_closes_the_connection(self) -> None:
        self.server.resource.handler = never_answer()
        auth = self.make()
        d = auth.authorize(join())
        while not self.server.resource.pending:
            await pause(0.01)
        d.cancel()
        decision = self.successResultOf(d)
        self.assertTrue(decision.is_error)
        await within(self.server.all_closed(), 2.0)

    async def test_connection_is_reused(self) -> None:
        auth = self.make()
        for _ in range(50):
            decision = await auth.authorize(join())
            self.assertTrue(decision.is_allowed)
        self.assertEqual(self.server.connection_count, 1)

    async def test_concurrent_checks_stay_within_the_pool(self) -> None:
        auth = self.make(pool_size=3)
        decisions = await gather([auth.authorize(join(nick=f"n{i}")) for i in range(30)])
        self.assertTrue(all(d.is_allowed for d in decisions))
        self.assertLessEqual(self.server.connection_count, 3)


class CAFileTests(SynchronousTestCase):
    """The TLS context loads ca_file with the very function the config check uses."""

    def test_a_certificate_that_does_not_load_fails_as_the_config_check_does(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from mucauth.tls import CAFileError

        fd, path = tempfile.mkstemp(suffix=".pem")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        with open(path, "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
        settings = HTTPAuthSettings(url="https://auth.example.org/muc", ca_file=path)
        with self.assertRaises(CAFileError) as caught:
            HTTPAuthorizer(settings, MemoryReactorClock())
        self.assertEqual(str(caught.exception), f"certificate 1 in {path} does not load")


class TLSTests(ServerCase):
    def setUp(self) -> None:
        self.cert = self_signed()
        self.server = self.start(self.cert.server_options())

    def pem_file(self, pem: bytes) -> FilePath[str]:
        # Not mktemp(): under pytest it lands in the checkout, not in _trial_temp.
        fd, path = tempfile.mkstemp(suffix=".pem")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        ca = FilePath(path)
        ca.setContent(pem)
        return ca

    async def test_self_signed_refused_by_default(self) -> None:
        decision = await self.check(answer())
        self.assertEqual((decision.outcome, decision.kind), ("error", "tls"))
        self.assertEqual(self.server.resource.requests, [])

    async def test_private_ca_is_trusted(self) -> None:
        ca = self.pem_file(self.cert.cert_pem)
        decision = await self.check(answer(), ca_file=ca.path)
        self.assertTrue(decision.is_allowed)

    async def test_private_ca_still_checks_the_host_name(self) -> None:
        other = self_signed("other.example", names=["other.example"])
        server = self.start(other.server_options())
        ca = self.pem_file(other.cert_pem)
        decision = await self.make(url=server.url, ca_file=ca.path).authorize(join())
        self.assertEqual(decision.kind, "tls")

    async def test_insecure_skips_verification_and_warns_once(self) -> None:
        logs = LogCapture(self)
        auth = self.make(insecure=True)
        for _ in range(3):
            decision = await auth.authorize(join())
            self.assertTrue(decision.is_allowed)
        warnings = [
            e for e in logs.events if e["log_level"] == LogLevel.warn and "outcome" not in e
        ]
        self.assertEqual(len(warnings), 1)
        self.assertIn("TLS verification is OFF", formatEvent(warnings[0]))


class LoggingTests(ServerCase):
    async def test_one_event_per_decision(self) -> None:
        logs = LogCapture(self)
        auth = self.make()
        self.server.resource.handler = answer(200, b'{"allowed": false, "error": "not today"}')
        await auth.authorize(join(nick="bob"))
        self.server.resource.handler = answer(500, b"")
        await auth.authorize(join(nick="bob"))
        deny, error = logs.decisions()
        self.assertEqual(deny["log_level"], LogLevel.debug)
        self.assertEqual(
            {k: deny[k] for k in ("user", "room", "nick", "outcome", "kind", "reason", "status")},
            {
                "user": "alice@example.org",
                "room": "physics@rooms.example.org",
                "nick": "bob",
                "outcome": "deny",
                "kind": None,
                "reason": "not today",
                "status": 200,
            },
        )
        self.assertIn("join deny user=alice@example.org", formatEvent(deny))
        self.assertEqual((error["log_level"], error["kind"]), (LogLevel.debug, "status"))

    async def test_a_bad_standing_is_logged_with_its_reason(self) -> None:
        logs = LogCapture(self)
        auth = self.make()
        self.server.resource.handler = answer(200, b'{"allowed": true, "affiliation": "emperor"}')
        await auth.authorize(join())
        self.server.resource.handler = answer(200, b'{"allowed": true, "role": "visitor"}')
        await auth.authorize(join())
        bad, good = logs.decisions()
        reason = "'affiliation' is \"emperor\", not one of owner, admin, member, none"
        self.assertEqual(
            (bad["outcome"], bad["kind"], bad["reason"]), ("error", "bad_answer", reason)
        )
        self.assertIn(f"reason={reason}", formatEvent(bad))
        self.assertEqual(
            (good["outcome"], good["affiliation"], good["role"]), ("allow", None, "visitor")
        )

    async def test_secrets_never_logged(self) -> None:
        logs = LogCapture(self)
        url = self.server.url.replace("http://", "http://user:pa55word@") + "?key=qu3ry-s3cret"
        auth = self.make(url=url, authorization_header=Secret(TOKEN), insecure=True, timeout=0.5)
        for handler in (answer(), answer(500, b"x"), never_answer()):
            self.server.resource.handler = handler
            await auth.authorize(join())
        self.assertEqual(self.server.resource.requests[0].header("Authorization"), TOKEN)
        self.assertTrue(logs.events)
        for event in logs.events:
            text = formatEvent(event) + repr(event)
            for secret in ("s3cr3t", "pa55word", "qu3ry-s3cret"):
                self.assertNotIn(secret, text)


@implementer(IAgent)
class _Recorder:
    """An agent that remembers the URI of every request and never answers."""

    def __init__(self) -> None:
        self.uris: list[bytes] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Any:
        self.uris.append(uri)
        return Deferred()


class URLTests(SynchronousTestCase):
    """Checks hand treq a URL in URI form (_URIForm), so treq does not convert it again: the
    request line must be exactly what treq's own conversion would have made of it."""

    CONFIGURED = [
        "http://127.0.0.1:5280/muc/auth",
        "https://Auth.Example.ORG:443/muc/join?service=chat&key=a%20b",
        "https://user:p%40ss@auth.example.org/x?a&b=&",
        "http://bücher.example/päth/ü?x=ü&y= z#fragment",
        "http://h/p;params/%7euser?q=%zz&r=%2F&s=1+2",
        "HTTP://Host/Ab%2fc",
        "http://h",
        "http://h?",
        "http://h#f",
    ]
    REQUESTS = [
        join(),
        join(
            nick="a&b=c ü/x?#%+ ",
            user=JID("zoë+tag@Example.ORG/rés ource"),
            room=JID("ünï-room@rooms.example.org"),
        ),
        join(nick="n~.-_*'()!;:@$,"),
    ]

    def urls(self) -> list[str]:
        return [
            _query_url(_uri_form(_split_userinfo(configured)[0]), request)
            for configured in self.CONFIGURED
            for request in self.REQUESTS
        ]

    def test_request_line_is_what_treq_would_make(self) -> None:
        recorder = _Recorder()
        client = HTTPClient(recorder, cookiejar=_NoCookies())
        for text in self.urls():
            url = _URIForm.of(text)
            client.get(text, headers=Headers(), allow_redirects=False, unbuffered=True)
            client.get(url, headers=Headers(), allow_redirects=False, unbuffered=True)
            converted, given = recorder.uris[-2:]
            self.assertEqual(given, converted, text)
            self.assertEqual(given, text.encode("ascii"))
            self.assertEqual(str(EncodedURL.from_text(text).to_uri().to_text()), text)
            self.assertFalse(url.__dict__["_parsed"], "treq read more than to_uri().to_text()")

    def test_it_is_a_full_url_when_read(self) -> None:
        text = "http://h:81/a/b?x=1&y=%20"
        url = _URIForm.of(text)
        self.assertIs(url.to_uri(), url)
        self.assertEqual((url.host, url.port, url.path), ("h", 81, ("a", "b")))
        self.assertEqual(url.query, (("x", "1"), ("y", "%20")))
        self.assertEqual(url, EncodedURL.from_text(text))
        self.assertEqual(repr(url), f"_URIForm.from_text({text!r})")
        with self.assertRaises(AttributeError):
            url.no_such_part  # noqa: B018

    def test_a_url_derived_from_one_converts_as_any_other(self) -> None:
        url = _URIForm.of("http://h/a?x=1")
        derived = url.replace(path=("ü",))
        self.assertEqual(derived.to_uri().to_text(), "http://h/%C3%BC?x=1")
        self.assertEqual(url.child("ü").to_uri().to_text(), "http://h/a/%C3%BC?x=1")


def pause(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


async def gather(ds: list[Deferred[Decision]]) -> list[Decision]:
    from twisted.internet.defer import gatherResults

    return await gatherResults(ds)


class _Silent(Resource):
    isLeaf = True

    def render(self, request: Any) -> int:
        return NOT_DONE_YET


class InMemoryTests(SynchronousTestCase):
    """treq's StubTreq and a Clock: the deadline and the latency follow the reactor's clock."""

    def test_timeout_and_latency_use_the_reactor_clock(self) -> None:
        clock = Clock()
        stub = StubTreq(_Silent())
        auth = HTTPAuthorizer(
            HTTPAuthSettings(url="http://auth.test/", timeout=3), clock, http_client=stub
        )
        d = auth.authorize(join())
        stub.flush()
        clock.advance(2.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        decision = self.successResultOf(d)
        self.assertEqual((decision.kind, decision.latency), ("timeout", 3.0))

    def test_answer_through_stub(self) -> None:
        def respond(method: bytes, url: bytes, params: Any, headers: Any, data: Any) -> Any:
            return 200, {b"Content-Type": b"application/json"}, b'{"allowed": false}'

        stub = StubTreq(StringStubbingResource(respond))
        auth = HTTPAuthorizer(HTTPAuthSettings(url="http://auth.test/"), Clock(), http_client=stub)
        d = auth.authorize(join())
        stub.flush()
        self.assertEqual(self.successResultOf(d).outcome, "deny")

    def test_unexpected_exception_is_an_internal_error_and_logged(self) -> None:
        class Broken:
            def get(self, *args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("bug in the client")

        auth = HTTPAuthorizer(
            HTTPAuthSettings(url="http://auth.test/"), Clock(), http_client=Broken()
        )
        decision = self.successResultOf(auth.authorize(join()))
        self.assertEqual((decision.outcome, decision.kind), ("error", "internal"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_checks_beyond_the_pool_wait_within_the_same_deadline(self) -> None:
        clock = Clock()
        stub = StubTreq(_Silent())
        settings = HTTPAuthSettings(url="http://auth.test/", timeout=2, pool_size=1)
        auth = HTTPAuthorizer(settings, clock, http_client=stub)
        first, queued = auth.authorize(join(nick="a")), auth.authorize(join(nick="b"))
        stub.flush()
        clock.advance(2)
        self.assertEqual(self.successResultOf(first).kind, "timeout")
        self.assertEqual(self.successResultOf(queued).kind, "timeout")


class QuoteTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet=st.sampled_from("aZ09_.~-@ %&=/+?#é\u00e9\x00"), max_size=12))
    def test_as_urllib_quotes(self, value: str) -> None:
        self.assertEqual(_quote(value), quote(value, safe=""))
