"""The room archive through the whole real stack: Prosody, the example auth service, ``twistd
mucauth`` with its SQLite store, and slixmpp clients. Messages are posted, mucauth is restarted,
and the archive is read back page by page (XEP-0313), by an occupant and by a user the HTTP
service allows who is not in the room; a user it denies is refused; a moderator's retraction
(XEP-0425) comes back as a tombstone.

Plain synchronous methods, like tests/test_e2e.py: they run under trial and under pytest.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.rooms import config_iq, is_result
from tests.support.stack import StackFixture
from tests.support.xmpp import ArchivePage, XMPPClient

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.prosody

RULES: dict[str, Any] = {
    "rules": [
        {"user": "carol@localhost", "room": "*", "allow": False, "reason": "Not in this course"},
        {"user": "*", "room": "*"},
    ]
}
MESSAGES = 250


class ArchiveTests(StackFixture):
    rules = RULES

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.stack.client("alice")
        self.bob = self.stack.client("bob")

    def archived_room(self, name: str, messages: int) -> tuple[str, list[str]]:
        """A persistent room that logs, with ``messages`` posted by its owner, alice, who stays;
        the room's ids for them, as she received them."""
        room = self.stack.room(name)
        joined = self.alice.join(room, "alice")
        self.assertTrue(joined.ok, joined.describe() + "\n" + self.stack.diagnostics())
        reply = self.alice.iq(config_iq(room, persistentroom="1", enablelogging="1"))
        self.assertTrue(is_result(reply), reply)
        ids = []
        for n in range(messages):
            self.alice.send_groupchat(room, f"message {n}")
        for n in range(messages):
            echo = self.alice.wait_message(room)
            self.assertEqual(echo.body, f"message {n}")
            found = re.search(r"<stanza-id [^>]*id=\"([^\"]+)\"", echo.xml) or re.search(
                r"<stanza-id [^>]*id='([^']+)'", echo.xml
            )
            self.assertIsNotNone(found, echo.xml)
            assert found is not None
            ids.append(found.group(1))
        return room, ids

    def read_all(self, client: XMPPClient, room: str, size: int) -> list[ArchivePage]:
        pages: list[ArchivePage] = []
        after: str | None = None
        while True:
            page = client.archive(room, max=size, after=after)
            self.assertIsNone(page.condition, page.xml + "\n" + self.stack.diagnostics())
            pages.append(page)
            if page.complete or len(pages) > MESSAGES // size + 2:
                return pages
            after = page.last

    def test_paging_through_the_archive_after_a_restart(self) -> None:
        room, ids = self.archived_room("course", MESSAGES)
        self.alice.leave(room)
        assert self.stack.mucauth is not None
        self.stack.mucauth.stop()  # SIGTERM: a clean stop, the store flushed and closed
        self.stack.start_mucauth()
        # bob is not in the room; the HTTP service allows him, so he may read it.
        pages = self.read_all(self.bob, room, 50)
        self.assertEqual([len(p.ids) for p in pages], [50] * 5)
        self.assertEqual([p.complete for p in pages], [False] * 4 + [True])
        self.assertEqual([i for p in pages for i in p.ids], ids)
        self.assertEqual(
            [b for p in pages for b in p.bodies], [f"message {n}" for n in range(MESSAGES)]
        )
        # The last page, paging back: the newest 50.
        last = self.bob.archive(room, max=50, before="")
        self.assertEqual(last.ids, tuple(ids[-50:]))
        self.assertIn("muc_persistent", self.bob.disco_info(room).features)
        self.assertIn("urn:xmpp:mam:2", self.bob.disco_info(room).features)

    def test_a_user_the_service_denies_is_refused(self) -> None:
        room, _ids = self.archived_room("closed", 3)
        carol = self.stack.client("carol")
        page = carol.archive(room, max=10)
        self.assertEqual(page.condition, "forbidden", page.xml)
        self.assertEqual(page.ids, ())
        self.alice.leave(room)

    def test_a_retracted_message_comes_back_retracted(self) -> None:
        room, ids = self.archived_room("moderated", 5)
        joined = self.bob.join(room, "bob")
        self.assertTrue(joined.ok, joined.describe())
        reply = self.alice.iq(
            f"<iq type='set' to='{room}'>"
            f"<moderate xmlns='urn:xmpp:message-moderate:1' id='{ids[2]}'>"
            "<retract xmlns='urn:xmpp:message-retract:1'/><reason>Off topic</reason>"
            "</moderate></iq>"
        )
        self.assertTrue(is_result(reply), reply)
        notice = self.bob.wait_stanza(room, "message", "groupchat")
        while "urn:xmpp:message-retract:1" not in notice:  # past bob's join history
            notice = self.bob.wait_stanza(room, "message", "groupchat")
        self.assertIn(f'id="{ids[2]}"', notice.replace("'", '"'))
        self.assertIn("urn:xmpp:message-retract:1", notice)
        self.assertIn("Off topic", notice)
        page = self.bob.archive(room, max=10)
        self.assertEqual(page.ids[:5], tuple(ids))
        self.assertEqual(
            page.bodies[:5], ("message 0", "message 1", None, "message 3", "message 4")
        )
        self.assertIn("retracted", page.results[2], page.results)
        self.assertNotIn("message 2", page.results[2])
        self.bob.leave(room)
        self.alice.leave(room)
