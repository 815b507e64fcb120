"""One user must not take every room down: hostile stanzas through a real Prosody.

An ordinary account that the authorization service allows sends what a careless serializer,
an unbounded input or a deep tree would turn into a dropped component link (which empties every
room). After each, the link is the one it was (Prosody counted no new component login and
logged no disconnect), the other occupants keep chatting, and the sender got an error where
its input was refused. The reason an authorization service or an admin gives, with control
characters in it, reaches the user clean.

Plain synchronous methods on one stack per class, like tests/test_e2e.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.rooms import config_iq, is_result
from tests.support.stack import StackFixture
from tests.support.xmpp import XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.prosody

TOKEN = "e2e-hostile-token-0123456789"
# A reason with a NUL, a terminal escape and a character XML forbids.
DIRTY = "No\u0000 entry\u001b[31m today\ufffe"
RULES: dict[str, Any] = {
    "rules": [
        {"user": "*", "room": "closed", "allow": False, "reason": DIRTY},
        {"user": "*", "room": "*"},
    ]
}
# Namespaces a client may write, escaped, that the server hands on as ' < & and ".
ODD = ("urn:a&apos;b", "urn:a&lt;b", "urn:a&amp;b&quot;c", "urn:a b")


class HostileInputTests(StackFixture):
    rules = RULES

    @classmethod
    def stack_options(cls) -> dict[str, Any]:
        return {
            "http_options": {"show_reason": "true"},
            "sections": {"rooms": {"persistent": "true", "logging": "true"}},
            "admin_token": TOKEN,
        }

    def setUp(self) -> None:
        super().setUp()
        self.logins = self.stack.component_logins()
        self.log_since = len(self.stack.mucauth_log())
        self.alice = self.stack.client("alice")
        self.bob = self.stack.client("bob")
        self.room = self.stack.room(self._testMethodName[5:].replace("_", "")[:40])
        for client, nick in ((self.alice, "alice"), (self.bob, "bob")):
            result = client.join(self.room, nick)
            self.assertTrue(result.ok, result.describe() + self.stack.diagnostics())

    def tearDown(self) -> None:
        for client in (self.alice, self.bob):
            client.disconnect()
            self.stack.clients.remove(client)
        super().tearDown()

    # -- helpers

    def assert_link_kept(self) -> None:
        """The same component link, still carrying messages both ways."""
        body = f"still here {self._testMethodName}"
        self.bob.send_groupchat(self.room, body)
        seen = [self.alice.wait_message(self.room).body for _ in range(1)]
        while seen[-1] != body and len(seen) < 5:  # the test's own echoes come first
            seen.append(self.alice.wait_message(self.room).body)
        self.assertEqual(seen[-1], body, self.stack.diagnostics())
        self.assertEqual(self.stack.component_logins(), self.logins, self.stack.diagnostics())
        log = self.stack.mucauth_log()[self.log_since :]
        for bad in ("component link: disconnected", "Traceback", "Unhandled"):
            self.assertNotIn(bad, log, self.stack.diagnostics())
        self.assertNotIn("not-well-formed", self.stack.server.log_text())

    def error_from_room(self, client: XMPPClient, name: str = "message") -> str:
        return client.wait_stanza(self.room, name, "error")

    # -- 1. namespaces, 2. the archive they are stored in

    def test_namespaces_that_need_escaping(self) -> None:
        children = "".join(
            f"<x{n} xmlns='{ns}' xmlns:p='{ns}' p:a='{ns}'><p:y>t</p:y></x{n}>"
            for n, ns in enumerate(ODD)
        )
        self.alice.raw(
            f"<message type='groupchat' to='{self.room}' id='odd'><body>odd</body>"
            f"{children}</message>"
        )
        received = self.bob.wait_message(self.room)
        self.assertEqual(received.body, "odd")
        for namespace in ("urn:a'b", "urn:a<b", 'urn:a&b"c', "urn:a b"):  # as parsed
            self.assertIn(namespace, received.xml)
        self.alice.raw(
            f"<presence to='{self.room}/alice'><status>away</status>{children}</presence>"
        )
        self.bob.wait_presence(f"{self.room}/alice")
        self.alice.raw(
            f"<message type='chat' to='{self.room}/bob' id='pm'><body>pm</body>{children}</message>"
        )
        self.assertIn("urn:a<b", self.bob.wait_stanza(self.room, "message", "chat"))
        self.assert_link_kept()
        # The stored copy reads back: after a restart the room loads with its archive.
        assert self.stack.mucauth is not None
        self.alice.leave(self.room)
        self.bob.leave(self.room)
        self.stack.mucauth.stop()
        self.log_since = len(self.stack.mucauth_log())
        self.stack.start_mucauth()
        self.logins = self.stack.component_logins()
        rejoined = self.alice.join(self.room, "alice")
        self.assertTrue(rejoined.ok, rejoined.describe() + self.stack.diagnostics())
        self.assertNotIn(201, rejoined.status_codes)
        self.assertIn("odd", rejoined.history)
        page = self.alice.archive(self.room)
        self.assertIn("odd", page.bodies)
        self.bob.join(self.room, "bob")
        self.assert_link_kept()

    # -- 3. what escaping would grow past the server's limit

    def test_oversized_body_subject_and_name(self) -> None:
        self.alice.raw(
            f"<message type='groupchat' to='{self.room}' id='big'><body>{'>' * 200_000}"
            "</body></message>"
        )
        error = self.error_from_room(self.alice)
        self.assertIn("not-acceptable", error)
        self.alice.raw(
            f"<message type='groupchat' to='{self.room}' id='subj'><subject>{'>' * 200_000}"
            "</subject></message>"
        )
        self.assertIn("not-acceptable", self.error_from_room(self.alice))
        reply = self.alice.iq(config_iq(self.room, roomname="'" * 2_000))
        self.assertIn("not-acceptable", reply)
        self.assertTrue(is_result(self.alice.iq(config_iq(self.room, roomname="Fine"))))
        self.assert_link_kept()

    # -- 4. the room list

    def test_the_room_list_is_paged(self) -> None:
        for n in range(3):
            result = self.bob.join(self.stack.room(f"listed{n}"), "bob")
            self.assertTrue(result.ok, result.describe())
        service = self.stack.component_domain
        query = "<query xmlns='http://jabber.org/protocol/disco#items'>{}</query>"
        rsm = "<set xmlns='http://jabber.org/protocol/rsm'>{}</set>"
        first = self.alice.iq(
            f"<iq type='get' to='{service}'>{query.format(rsm.format('<max>2</max>'))}</iq>"
        )
        items = re.findall(r"<item [^>]*jid=\"([^\"]+)\"", first)
        self.assertEqual(len(items), 2, first)
        count = int(re.search(r"<count>(\d+)</count>", first).group(1))  # type: ignore[union-attr]
        self.assertGreaterEqual(count, 4, first)
        last = re.search(r"<last>([^<]+)</last>", first).group(1)  # type: ignore[union-attr]
        second = self.alice.iq(
            f"<iq type='get' to='{service}'>"
            f"{query.format(rsm.format(f'<max>2</max><after>{last}</after>'))}</iq>"
        )
        more = re.findall(r"<item [^>]*jid=\"([^\"]+)\"", second)
        self.assertTrue(more, second)
        self.assertFalse(set(items) & set(more))
        self.assertEqual(sorted(items + more), items + more)  # in order, across pages
        plain = self.alice.iq(f"<iq type='get' to='{service}'>{query.format('')}</iq>")
        self.assertIn("<count>", plain)  # unpaged clients get the first page and are told
        self.assert_link_kept()

    # -- 5. reasons from JSON

    def test_a_service_reason_with_control_characters(self) -> None:
        result = self.alice.join(self.stack.room("closed"), "alice")
        self.assertFalse(result.ok)
        self.assertEqual(result.condition, "forbidden", result.describe())
        self.assertIn("No\ufffd entry\ufffd[31m today\ufffd", result.describe())
        self.assertNotIn("\u001b", self.stack.mucauth_log())
        self.assert_link_kept()

    def test_an_admin_reason_with_control_characters(self) -> None:
        answer = self.stack.admin(
            "POST",
            "/v1/revoke",
            {"userJID": self.stack.jid("bob"), "mucJID": self.room, "reason": DIRTY},
        )
        self.assertEqual(answer, (200, {"removed": 1}))
        kicked = self.bob.wait_presence(f"{self.room}/bob", "unavailable")
        self.assertIn(307, kicked.status_codes)
        self.assertIn("today\ufffd", kicked.xml)
        self.assertEqual(
            self.alice.wait_presence(f"{self.room}/bob", "unavailable").type, "unavailable"
        )
        self.bob.join(self.room, "bob")
        self.assert_link_kept()

    # -- 6. deep nesting

    def test_deep_nesting(self) -> None:
        deep = "<a xmlns='urn:deep'>" * 5_000 + "</a>" * 5_000
        self.alice.raw(
            f"<message type='groupchat' to='{self.room}' id='deep'><body>d</body>{deep}</message>"
        )
        self.assertIn("not-acceptable", self.error_from_room(self.alice))
        self.assert_link_kept()
        self.assertLess(len(self.stack.mucauth_log()), 200_000)
