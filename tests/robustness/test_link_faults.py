"""The component link breaking under a real Prosody and ``twistd mucauth``.

- The link is cut while occupants talk (Prosody and the clients stay up): mucauth reconnects
  within its backoff cap; every former occupant gets its unavailable presence with status 332
  on the new link, its self-ping gets ``not-acceptable``, so the client knows to rejoin, and
  the rejoin asks the authorization service again.
- Prosody refuses the link for a while, then takes it again: reconnected within the cap.
- Prosody restarts while a join waits for the authorization service: mucauth stays up,
  reconnects, and rooms work again.
- SIGTERM to mucauth: every occupant gets its unavailable presence with status 332 before the
  stream closes, and a join still waiting for the gate is refused.

Plain synchronous methods, one stack per test (about a second to start); they run under trial
and under ``pytest -p no:twisted``.
"""

from __future__ import annotations

import re
import time
import unittest
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber.jid import JID

from examples._stack import wait_until
from mucauth.link import LinkFactory
from tests.support.linkfaults import LinkFaultStack

CAP = 2.0  # reconnect_max_delay in these stacks
SLACK = 8.0  # generous: Prosody's own start-up, a loaded CI machine

RULES: dict[str, Any] = {
    "rules": [
        {"user": "*", "room": "slow", "answer": "slow", "delay": 3},
        {"user": "*", "room": "*"},
    ]
}
NS_MUC = "http://jabber.org/protocol/muc"


@pytest.mark.prosody
class LinkFaultTests(unittest.TestCase):
    def start_stack(self, users: tuple[str, ...] = ("alice", "bob")) -> LinkFaultStack:
        stack = LinkFaultStack(
            self._testMethodName[5:], rules=RULES, users=users, reconnect_max_delay=CAP
        )
        self.addCleanup(stack.stop)
        stack.start()
        return stack

    def wait_reconnected(self, stack: LinkFaultStack, logins: int, bound: float) -> float:
        started = time.monotonic()
        wait_until(
            lambda: stack.component_logins() > logins,
            bound,
            lambda: f"mucauth did not reconnect within {bound} s\n{stack.diagnostics()}",
            interval=0.05,
        )
        self.assertTrue(stack.mucauth is not None and stack.mucauth.running)
        return time.monotonic() - started

    def requests_for(self, stack: LinkFaultStack, user: str, room: str) -> int:
        assert stack.auth is not None
        return sum(
            1
            for r in stack.auth.requests()
            if r["args"].get("userJID") == stack.jid(user)
            and r["args"].get("mucJID") == stack.room(room)
        )

    def assert_clean_log(self, stack: LinkFaultStack) -> None:
        log = stack.mucauth_log()
        for bad in ("Traceback", "Unhandled"):
            self.assertNotIn(bad, log, stack.diagnostics())

    def test_cut_link_self_ping_says_rejoin_and_rejoin_asks_the_gate(self) -> None:
        stack = self.start_stack()
        alice, bob = stack.client("alice"), stack.client("bob")
        lobby = stack.room("lobby")
        self.assertTrue(alice.join(lobby, "alice").ok, stack.diagnostics())
        self.assertTrue(bob.join(lobby, "bob").ok, stack.diagnostics())
        for n in range(5):
            alice.send_groupchat(lobby, f"before {n}")
        self.assertEqual(bob.wait_message(lobby).body, "before 0")
        logins = stack.component_logins()
        assert stack.proxy is not None
        self.assertEqual(stack.proxy.cut(), 1)
        for n in range(5):  # traffic while the link is down: bounced by Prosody, not lost here
            alice.send_groupchat(lobby, f"during {n}")
        self.assertLess(self.wait_reconnected(stack, logins, CAP + SLACK), CAP + SLACK)
        # Nobody is left out silently: each hears it is out of the room (332), so it rejoins.
        for client, nick in ((alice, "alice"), (bob, "bob")):
            notice = client.wait_presence(f"{lobby}/{nick}", "unavailable", timeout=SLACK)
            self.assertEqual(notice.status_codes, {110, 332}, notice.xml)

        self.assertEqual(alice.self_ping(lobby + "/alice"), "not-acceptable")
        self.assertEqual(bob.self_ping(lobby + "/bob"), "not-acceptable")
        asked = self.requests_for(stack, "alice", "lobby")
        rejoin = alice.join(lobby, "alice")
        self.assertTrue(rejoin.ok, rejoin.describe() + stack.diagnostics())
        self.assertIn(201, rejoin.status_codes)  # the room was gone: created anew
        self.assertEqual(self.requests_for(stack, "alice", "lobby"), asked + 1)
        self.assertEqual(alice.self_ping(lobby + "/alice"), "result")
        self.assert_clean_log(stack)

    def test_refused_link_reconnects_within_the_cap_once_accepted(self) -> None:
        stack = self.start_stack(users=("alice",))
        assert stack.proxy is not None
        logins = stack.component_logins()
        stack.proxy.refuse()
        stack.proxy.cut()
        time.sleep(2 * CAP)  # refused attempts: the backoff reaches its cap
        stack.proxy.accept()
        self.assertLess(self.wait_reconnected(stack, logins, CAP + SLACK), CAP + SLACK)
        delays = [
            float(line.split("reconnecting in ")[1].split()[0])
            for line in stack.mucauth_log().splitlines()
            if "reconnecting in " in line
        ]
        self.assertGreaterEqual(len(delays), 2, stack.mucauth_log())
        self.assertLessEqual(max(delays), CAP, delays)
        result = stack.client("alice").join(stack.room("after"), "alice")
        self.assertTrue(result.ok, result.describe())
        self.assert_clean_log(stack)

    def test_prosody_restart_with_a_join_waiting_for_the_gate(self) -> None:
        stack = self.start_stack(users=("alice", "bob"))
        alice, bob = stack.client("alice"), stack.client("bob")
        self.assertTrue(alice.join(stack.room("lobby"), "alice").ok)
        bob.raw(f"<presence to='{stack.room('slow')}/bob'><x xmlns='{NS_MUC}'/></presence>")
        wait_until(
            lambda: self.requests_for(stack, "bob", "slow") == 1,
            5,
            lambda: "the join never reached the auth service\n" + stack.diagnostics(),
        )
        started = time.monotonic()
        stack.restart_prosody(timeout=CAP + SLACK)
        self.assertLess(time.monotonic() - started, CAP + SLACK)
        for client in (alice, bob):
            client.disconnect()
            stack.clients.remove(client)
        asked = self.requests_for(stack, "alice", "lobby")
        result = stack.client("alice").join(stack.room("lobby"), "alice")
        self.assertTrue(result.ok, result.describe() + stack.diagnostics())
        self.assertIn(201, result.status_codes)
        self.assertEqual(self.requests_for(stack, "alice", "lobby"), asked + 1)
        self.assert_clean_log(stack)

    def test_sigterm_tells_occupants_332_before_the_stream_closes(self) -> None:
        stack = self.start_stack(users=("alice", "bob", "carol"))
        alice, bob, carol = stack.client("alice"), stack.client("bob"), stack.client("carol")
        lobby = stack.room("lobby")
        self.assertTrue(alice.join(lobby, "alice").ok)
        self.assertTrue(bob.join(lobby, "bob").ok)
        self.assertTrue(alice.join(stack.room("other"), "al").ok)
        carol.raw(
            f"<presence id='c1' to='{stack.room('slow')}/carol'><x xmlns='{NS_MUC}'/></presence>"
        )
        wait_until(
            lambda: self.requests_for(stack, "carol", "slow") == 1,
            5,
            lambda: "the join never reached the auth service\n" + stack.diagnostics(),
        )
        assert stack.mucauth is not None
        stack.mucauth.stop()  # SIGTERM, then waits for twistd to exit
        for client, occupant in (
            (alice, lobby + "/alice"),
            (bob, lobby + "/bob"),
            (alice, stack.room("other") + "/al"),
        ):
            notice = client.wait_presence(occupant, "unavailable", timeout=5)
            self.assertEqual(notice.status_codes, frozenset({110, 332}), notice.xml)
        refusal = carol.wait_presence(stack.room("slow") + "/carol", "error", timeout=5)
        self.assertEqual((refusal.id, refusal.condition), ("c1", "service-unavailable"))
        self.assert_clean_log(stack)


@pytest.mark.prosody
class HostileTrafficTests(unittest.TestCase):
    """Through a real Prosody, the hostile corpus never costs the component link: an answer
    with a bad ``from`` would make Prosody close the stream for every room at once."""

    def test_hostile_stanzas_never_cost_the_link(self) -> None:
        from tests.muc.support import SERVICE
        from tests.robustness.test_stanza_corpus import HISTORY_REQUESTS, HOSTILE

        stack = LinkFaultStack("hostile", rules=RULES, users=("alice", "bob", "carol"))
        self.addCleanup(stack.stop)
        stack.start()
        logins = stack.component_logins()
        domain = stack.component_domain
        alice, bob = stack.client("alice"), stack.client("bob")
        self.assertTrue(alice.join(stack.room("lobby"), "alice").ok)
        sent = 0
        for label, xml, _expected in HOSTILE:
            if "from" in label or "100 000" in label:
                continue  # Prosody sets from itself and refuses oversized addresses
            xml = xml.replace(" xmlns='jabber:component:accept'", "").replace(SERVICE, domain)
            xml = re.sub(r" from='[^']*'", "", xml)
            bob.raw(xml)
            sent += 1
        for request in HISTORY_REQUESTS:
            bob.raw(
                f"<presence to='{stack.room('lobby')}/bob'><x xmlns='{NS_MUC}'>{request}</x>"
                "</presence>"
            )
            bob.raw(f"<presence to='{stack.room('lobby')}/bob' type='unavailable'/>")
        self.assertGreater(sent, 30)
        self.assertEqual(alice.self_ping(stack.room("lobby") + "/alice"), "result")
        # A fresh client: bob's inbox holds Prosody's bounces from addresses slixmpp rejects.
        result = stack.client("carol").join(stack.room("after"), "carol")
        self.assertTrue(result.ok, result.describe() + stack.diagnostics())
        self.assertEqual(stack.component_logins(), logins, "the component link was lost")
        self.assertNotIn("invalid-from", stack.prosody.log_text())
        self.assertNotIn("Traceback", stack.mucauth_log())


class BackoffCapTests(SynchronousTestCase):
    """The cap is a cap: the jitter Twisted adds must not push a retry past
    ``reconnect_max_delay`` (it did by up to a third, and half of all retries at the cap)."""

    def test_no_retry_is_scheduled_later_than_the_cap(self) -> None:
        clock = Clock()
        factory = LinkFactory(
            jabber_component.ConnectComponentAuthenticator("rooms.example.org", "s"),
            JID("rooms.example.org"),
        )
        factory.clock = clock  # type: ignore[assignment]  # Twisted types it as None
        factory.maxDelay = 30

        class Connector:
            def connect(self) -> None:
                pass

            def getDestination(self) -> None:
                return None

        delays = []
        for _ in range(200):
            factory.retry(Connector())  # type: ignore[arg-type]
            [call] = clock.getDelayedCalls()
            delays.append(call.getTime() - clock.seconds())
            clock.advance(call.getTime() - clock.seconds())
        self.assertLessEqual(max(delays), 30.0 + 1e-6)  # floating point, not jitter
        self.assertGreater(max(delays), 25.0)  # it does reach the cap
        self.assertGreater(min(delays), 0.0)
