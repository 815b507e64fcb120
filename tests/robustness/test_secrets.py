"""Secrets stay secret through the whole stack: Prosody, the example auth service with a token,
and ``twistd mucauth`` logging at debug level, as text and as JSON.

Every credential gets a value no log line could contain by chance: the component secret, the
Authorization value, a password in the URL's userinfo and a key in its query string. After
allowed, refused and failed joins (HTTP 500, timeout), and after configuration errors, none of
them appears in mucauth's log, its console (stdout/stderr), or any error a client was sent.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import Any

import pytest

from examples._stack import MucauthProcess
from tests.support.linkfaults import LinkFaultStack

COMPONENT_SECRET = "cs-7f3a9d-component-secret"
TOKEN = "tk-51b2e8-bearer-token"
URL_PASSWORD = "up-93c1d4-userinfo"
QUERY_KEY = "qs-2e8f70-query-key"
SECRETS = (COMPONENT_SECRET, TOKEN, URL_PASSWORD, QUERY_KEY)

RULES: dict[str, Any] = {
    "rules": [
        {"user": "*", "room": "bad-500", "answer": "500"},
        {"user": "*", "room": "slow", "answer": "slow", "delay": 5},
        {"user": "bob@localhost", "room": "staff", "allow": False, "reason": "Staff only"},
        {"user": "*", "room": "*"},
    ]
}


@pytest.mark.prosody
class SecretsThroughTheStackTests(unittest.TestCase):
    def run_stack(self, log_format: str) -> tuple[LinkFaultStack, list[str]]:
        stack = LinkFaultStack(
            f"secrets-{log_format}",
            rules=RULES,
            users=("alice", "bob"),
            component_secret=COMPONENT_SECRET,
            token=TOKEN,
            url_query=f"?key={QUERY_KEY}",
            http_options={"authorization_header": f"Bearer {TOKEN}", "timeout": "1"},
            tap_edits=(
                ("url = http://127.0.0.1:", f"url = http://muc:{URL_PASSWORD}@127.0.0.1:"),
                ("[log]\n", f"[log]\nformat = {log_format}\n"),
            ),
        )
        self.addCleanup(stack.stop)
        stack.start()
        alice, bob = stack.client("alice"), stack.client("bob")
        seen: list[str] = []
        allowed = alice.join(stack.room("lobby"), "alice")
        self.assertTrue(allowed.ok, allowed.describe() + stack.diagnostics())
        for client, room, condition in (
            (bob, "staff", "forbidden"),
            (alice, "bad-500", "service-unavailable"),
            (alice, "slow", "service-unavailable"),
        ):
            result = client.join(stack.room(room), client.jid.split("@")[0])
            self.assertEqual(result.condition, condition, result.describe())
            seen.append(result.error_xml)
        # The Authorization value really went out, so its absence from the logs means something.
        assert stack.auth is not None
        self.assertEqual({r["authorization"] for r in stack.auth.requests()}, {"ok"})
        return stack, seen

    def assert_secret_free(self, stack: LinkFaultStack, client_errors: list[str]) -> None:
        assert stack.mucauth is not None
        stack.mucauth.stop()  # the shutdown is logged too
        texts = {
            "mucauth's log": stack.mucauth_log(),
            "mucauth's console": (stack.directory / "mucauth.console").read_text(),
            "errors sent to clients": "\n".join(client_errors),
        }
        for what, text in texts.items():
            for secret in SECRETS:
                self.assertNotIn(secret, text, f"{what} shows a secret")
        log = texts["mucauth's log"] + texts["mucauth's console"]  # JSON goes to stdout
        for outcome in ("allow", "deny", "error"):  # the log did describe every decision
            self.assertIn(outcome, log)
        self.assertIn("timeout", log)
        self.assertIn("HTTP 500", log)

    def test_text_log(self) -> None:
        self.assert_secret_free(*self.run_stack("text"))

    def test_json_log(self) -> None:
        self.assert_secret_free(*self.run_stack("json"))


GOOD = f"""\
[component]
jid = rooms.localhost
secret = {COMPONENT_SECRET}

[muc_http_auth]
url = http://muc:{URL_PASSWORD}@127.0.0.1:1/auth?key={QUERY_KEY}
authorization_header = Bearer {TOKEN}
"""

BROKEN_CONFIGS = {
    "bad timeout": GOOD + "timeout = soon\n",
    "line without '='": GOOD.replace(f"secret = {COMPONENT_SECRET}", f"secret {COMPONENT_SECRET}"),
    "bad port in the URL": GOOD.replace("127.0.0.1:1/", "127.0.0.1:99999/"),
    "header given twice": GOOD + f"authorization_header = Bearer {TOKEN}x\n",
    "secret on two lines": GOOD.replace(
        f"secret = {COMPONENT_SECRET}", f"secret = {COMPONENT_SECRET}\n  {COMPONENT_SECRET}"
    ),
    "unknown key": GOOD + f"authorisation_header = Bearer {TOKEN}\n",
}


class SecretsInConfigErrorsTests(unittest.TestCase):
    def test_config_errors_never_quote_a_secret(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="mucauth-secrets-config-"))
        self.addCleanup(shutil.rmtree, directory, True)
        for label, text in BROKEN_CONFIGS.items():
            config = directory / "tap.conf"
            config.write_text(text)
            result = subprocess.run(
                MucauthProcess(directory, config).command(),
                capture_output=True,
                text=True,
                timeout=60,
                cwd=directory,
            )
            output = result.stdout + result.stderr
            if (directory / "mucauth.log").exists():
                output += (directory / "mucauth.log").read_text()
            self.assertEqual(result.returncode, 1, f"{label}: {output}")
            self.assertNotIn("Traceback", output, label)
            self.assertIn("tap.conf", output.strip().splitlines()[-1], label)
            for secret in SECRETS:
                self.assertNotIn(secret, output, f"{label}: {output}")
