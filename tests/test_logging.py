"""Logs as an operator reads them: one JSON decision event per join, levels, no secrets."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher, textFileLogObserver
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mucauth import log_setup
from mucauth.effective import MASK, describe_settings, mask_url, redact_url
from mucauth.settings import LogSettings, MetricsSettings, Secret, Settings
from mucauth.tap import make_service
from tests.muc.support import SERVICE
from tests.support.gated import GatedMUC, start_policy_server
from tests.test_tap import SECRET, settings

HEADER_SECRET = "Bearer hdr-S3CRET-never-shown"
URL_PASSWORD = "url-S3CRET-never-shown"
QUERY_TOKEN = "qry-S3CRET-never-shown"
DECISION_FIELDS = {"user", "room", "nick", "outcome", "kind", "reason", "latency_ms"}


class JSONLog:
    """The JSON observer [log] format = json builds, writing to a buffer instead of stdout."""

    def __init__(self, test: SynchronousTestCase, level: str = "info") -> None:
        self.buffer = io.StringIO()
        test.patch(log_setup.sys, "stdout", self.buffer)
        default = textFileLogObserver(io.StringIO())
        observer = log_setup.make_log_observer(LogSettings(level, "json"), default)
        globalLogPublisher.addObserver(observer)
        test.addCleanup(globalLogPublisher.removeObserver, observer)
        self.test = test

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def events(self) -> list[dict[str, Any]]:
        lines = self.text.splitlines()
        self.test.assertTrue(all(line.startswith("{") for line in lines), lines)
        return [json.loads(line) for line in lines]

    def decisions(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("mucauth_event") == "decision"]


class DecisionEventTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.server = start_policy_server(self)

    async def join_everyone(self) -> GatedMUC:
        # A 2 s timeout: long enough for the users whose service answers, even on a busy host.
        stack = GatedMUC(self, self.server, timeout=2)
        stack.join("allowed@example.org/a", "ann")
        stack.join("denied@example.org/a", "dan")
        stack.join("broken@example.org/a", "bob")
        stack.join("slow@example.org/a", "sam")
        stack.join("slow@example.org/b", "sam2", "other@" + SERVICE)  # overload: one at a time
        await stack.settled()
        return stack

    async def test_one_json_event_per_join_with_its_fields(self) -> None:
        log = JSONLog(self)
        await self.join_everyone()
        decisions = log.decisions()
        by_nick = {event["nick"]: event for event in decisions}
        self.assertEqual(len(decisions), 5, decisions)
        self.assertEqual(sorted(by_nick), ["ann", "bob", "dan", "sam", "sam2"])
        for event in decisions:
            self.assertLessEqual(DECISION_FIELDS, set(event), event)
            self.assertEqual(event["log_namespace"], "mucauth.muc.service.MUCService")
        summary = {
            nick: (e["outcome"], e["kind"], e["source"], e["log_level"]["name"])
            for nick, e in by_nick.items()
        }
        self.assertEqual(
            summary,
            {
                "ann": ("allow", None, "http", "info"),
                "dan": ("deny", None, "http", "info"),
                "bob": ("error", "status", "http", "warn"),
                "sam": ("error", "timeout", "http", "warn"),
                "sam2": ("error", "overload", "service", "warn"),
            },
        )
        self.assertEqual(by_nick["dan"]["reason"], "not on the roster")
        self.assertEqual(by_nick["bob"]["status"], 500)
        self.assertEqual(by_nick["ann"]["user"], "allowed@example.org/a")
        self.assertEqual(by_nick["ann"]["room"], "room@" + SERVICE)
        self.assertGreaterEqual(by_nick["sam"]["latency_ms"], 2000)  # its timeout
        self.assertEqual(by_nick["sam2"]["latency_ms"], 0)

    async def test_level_warn_shows_only_failed_decisions(self) -> None:
        log = JSONLog(self, level="warn")
        await self.join_everyone()
        self.assertEqual(
            sorted(e["nick"] for e in log.decisions()), ["bob", "sam", "sam2"], log.text
        )

    async def test_the_authorization_header_never_reaches_the_log(self) -> None:
        log = JSONLog(self, level="debug")
        stack = GatedMUC(
            self,
            self.server,
            url=self.server.url.replace("://", f"://ops:{URL_PASSWORD}@") + f"?token={QUERY_TOKEN}",
            authorization_header=Secret(HEADER_SECRET),
        )
        stack.join("denied@example.org/a", "dan")
        await stack.settled()
        [request] = self.server.resource.requests
        self.assertEqual(request.header("Authorization"), HEADER_SECRET)  # it was used
        self.assertEqual(len(log.decisions()), 1)
        for secret in (HEADER_SECRET, URL_PASSWORD, QUERY_TOKEN):
            self.assertNotIn(secret, log.text)


def with_secrets(test: SynchronousTestCase) -> Settings:
    base = settings(test)
    http_auth = replace(
        base.http_auth,
        url=f"https://ops:{URL_PASSWORD}@auth.example.org:8443/muc?token={QUERY_TOKEN}",
        authorization_header=Secret(HEADER_SECRET),
    )
    return replace(base, http_auth=http_auth, metrics=MetricsSettings(port=9464))


class ConfigurationEventTests(SynchronousTestCase):
    def start(self, settings: Settings) -> None:
        service = make_service(settings, reactor=MemoryReactorClock())
        # The link would dial a real XMPP server; this test is about what start-up logs.
        self.patch(service.link, "startService", lambda: None)
        service.startService()

    def test_one_event_with_every_section_and_no_secret(self) -> None:
        log = JSONLog(self)
        self.start(with_secrets(self))
        [event] = [e for e in log.events() if e.get("mucauth_event") == "configuration"]
        for section in ("component", "muc_http_auth", "muc", "rooms", "log", "metrics", "storage"):
            self.assertIsInstance(event[section], dict, section)
        self.assertEqual(event["component"]["secret"], MASK)
        self.assertEqual(event["component"]["jid"], "rooms.localhost")
        self.assertEqual(event["muc_http_auth"]["authorization_header"], MASK)
        self.assertEqual(event["muc_http_auth"]["url"], "https://***@auth.example.org:8443/muc?***")
        self.assertEqual(event["muc_http_auth"]["deny_condition"], "auth/not-authorized")
        self.assertEqual(event["metrics"], {"port": 9464, "interface": "127.0.0.1"})
        self.assertEqual(event["rooms"]["history_length"], 3)
        for secret in (SECRET, HEADER_SECRET, URL_PASSWORD, QUERY_TOKEN):
            self.assertNotIn(secret, log.text)

    def test_text_format_shows_values_but_no_secret(self) -> None:
        buffer = io.StringIO()
        observer = textFileLogObserver(buffer)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.start(with_secrets(self))
        [line] = [line for line in buffer.getvalue().splitlines() if "effective configur" in line]
        self.assertIn("'history_length': 3", line)
        self.assertIn("auth.example.org:8443", line)
        for secret in (SECRET, HEADER_SECRET, URL_PASSWORD, QUERY_TOKEN):
            self.assertNotIn(secret, buffer.getvalue())


class DescribeTests(SynchronousTestCase):
    def test_description_is_plain_json(self) -> None:
        described = describe_settings(with_secrets(self))
        text = json.dumps(described)
        self.assertNotIn(SECRET, text)
        self.assertEqual(json.loads(text), described)

    def test_urls(self) -> None:
        self.assertEqual(mask_url("http://h:1/p"), "http://h:1/p")
        self.assertEqual(mask_url("http://u@h/p"), "http://***@h/p")
        self.assertEqual(mask_url("http://u:p@[::1]:8/p?a=b#f"), "http://***@[::1]:8/p?***")
        self.assertEqual(mask_url("http://h:bad/p"), MASK)

    def test_redacted_url(self) -> None:
        self.assertEqual(
            redact_url("https://u:p@auth.example.org:8443/muc?key=1#x"),
            "https://auth.example.org:8443/muc",
        )

    def test_redact_and_mask_parse_alike(self) -> None:
        # One parser of userinfo and query: the start-up line and the effective configuration
        # name the same host, port and path, and an unparsable URL is masked by both.
        for url in ("http://h:1/p", "http://u@h/p", "http://u:p@[::1]:8/p?a=b#f", "https://H/"):
            masked = mask_url(url).replace(f"{MASK}@", "").replace(f"?{MASK}", "")
            self.assertEqual(redact_url(url), masked, url)
        self.assertEqual(redact_url("http://h:bad/p"), MASK)


class LevelLoggerTests(SynchronousTestCase):
    """Events below [log] level are dropped before they are built (they cost CPU per join)."""

    def test_drops_below_its_level_only(self) -> None:
        from typing import cast

        from twisted.logger import ILogObserver, LogLevel

        seen: list[dict[str, Any]] = []
        observer = cast(ILogObserver, seen.append)
        log = log_setup.LevelLogger("t", observer=observer, level=LogLevel.warn)
        log.debug("d")
        log.info("i")
        log.warn("w")
        log.error("e")
        self.assertEqual([e["log_format"] for e in seen], ["w", "e"])

    def test_the_muc_service_and_the_gate_log_at_the_configured_level(self) -> None:
        from twisted.logger import LogLevel

        for level, expected in (("warn", LogLevel.warn), ("debug", LogLevel.debug)):
            built = replace(settings(self), log=LogSettings(level))
            service = make_service(built, reactor=MemoryReactorClock())
            log = service.muc.log
            assert isinstance(log, log_setup.LevelLogger)
            self.assertEqual(log.level, expected)
            assert service.gate is not None
            self.assertEqual(service.gate.http._events.level, expected)
