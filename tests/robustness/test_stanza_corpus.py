"""Hostile and malformed stanzas, and floods, against the in-memory service.

``tests/muc/test_service_races.py`` holds the first malformed corpus; this one adds what a
hostile peer or a buggy server could send beyond it: odd JIDs, oversized addresses, control and
invisible characters in nicks, wrong namespaces, nested or absurd ``<history/>`` requests and
floods. The promise is the same for each: no exception escapes, the gate is never asked for
something that cannot become a join, the answer (if any) is one error, and nothing is left
behind.
"""

from __future__ import annotations

from typing import cast

from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision
from mucauth.settings import MUCSettings
from tests.muc.support import (
    ALICE,
    BOB,
    CAROL,
    NS_MUC,
    PING,
    ROOM,
    SERVICE,
    ServiceTestCase,
    codes,
    error_of,
    iq,
    message,
    presence,
)

DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
MALFORMED_JID = ("modify", "jid-malformed")
NOT_ACCEPTABLE = ("cancel", "not-acceptable")
C = "jabber:component:accept"

# (label, stanza, expected error (type, condition) or None for "dropped without an answer")
HOSTILE: list[tuple[str, str, tuple[str, str] | None]] = [
    # -- addresses
    ("from without node or domain", presence("@example.org/x", ROOM + "/n"), None),
    ("from with empty domain", presence("alice@/x", ROOM + "/n"), None),
    ("from only a resource", presence("/x", ROOM + "/n"), None),
    ("empty from", f"<presence xmlns='{C}' from='' to='{ROOM}/n'/>", None),
    ("empty to", f"<presence xmlns='{C}' from='{ALICE}' to=''/>", None),
    ("to with empty node", presence(ALICE, "@" + SERVICE + "/n"), MALFORMED_JID),
    ("to with two @", presence(ALICE, "a@b@" + SERVICE + "/n"), MALFORMED_JID),
    ("to with empty resource", presence(ALICE, ROOM + "/"), MALFORMED_JID),
    ("room name with a quote", presence(ALICE, "a&apos;b@" + SERVICE + "/n"), MALFORMED_JID),
    ("room name of 1024 bytes", presence(ALICE, "r" * 1024 + "@" + SERVICE + "/n"), NOT_ACCEPTABLE),
    (
        "room name of 100 000 bytes",
        presence(ALICE, "r" * 100_000 + "@" + SERVICE + "/n"),
        NOT_ACCEPTABLE,
    ),
    ("domain of 100 000 bytes", presence(ALICE, "room@" + "d" * 100_000 + "/n"), None),
    ("from of 100 000 bytes", presence("a" * 100_000 + "@example.org/x", ROOM + "/n"), None),
    # -- nicks
    ("nick with a tab", presence(ALICE, ROOM + "/a&#9;b"), MALFORMED_JID),
    ("nick with a C1 control", presence(ALICE, ROOM + "/a\u0085b"), MALFORMED_JID),
    ("nick of a no-break space", presence(ALICE, ROOM + "/\u00a0"), NOT_ACCEPTABLE),
    ("nick of a zero-width space", presence(ALICE, ROOM + "/\u200b"), NOT_ACCEPTABLE),
    ("nick with a bidi override", presence(ALICE, ROOM + "/a\u202eb"), MALFORMED_JID),
    ("nick of spaces and tabs", presence(ALICE, ROOM + "/ &#9; "), MALFORMED_JID),
    ("nick of 1023 multibyte chars", presence(ALICE, ROOM + "/" + "é" * 1023), NOT_ACCEPTABLE),
    # -- presence shapes
    (
        "presence type empty",
        f"<presence xmlns='{C}' from='{ALICE}' to='{ROOM}/n' type=''/>",
        ("modify", "bad-request"),
    ),
    ("presence type unsubscribed", presence(ALICE, ROOM + "/n", type="unsubscribed"), None),
    ("unavailable to the service", presence(ALICE, SERVICE, type="unavailable"), None),
    ("unavailable to a bad nick", presence(ALICE, ROOM + "/\u200b", type="unavailable"), None),
    (
        "error presence with session-gone condition from a stranger",
        f"<presence xmlns='{C}' from='{ALICE}' to='{ROOM}/n' type='error'>"
        "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        "</presence>",
        None,
    ),
    # -- iq
    (
        "iq without id",
        f"<iq xmlns='{C}' from='{ALICE}' to='{SERVICE}' type='get'><x xmlns='urn:x'/></iq>",
        ("cancel", "service-unavailable"),
    ),
    (
        "iq without type",
        f"<iq xmlns='{C}' from='{ALICE}' to='{SERVICE}' id='t'>{PING}</iq>",
        ("modify", "bad-request"),
    ),
    (
        "ping set to the service",
        iq(ALICE, SERVICE, PING, type="set"),
        ("cancel", "service-unavailable"),
    ),
    ("disco#info set", iq(ALICE, SERVICE, DISCO_INFO, type="set"), ("modify", "bad-request")),
    (
        "disco#info with a node",
        iq(ALICE, SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>"),
        ("cancel", "item-not-found"),
    ),
    ("disco of a missing room", iq(ALICE, ROOM, DISCO_INFO), ("cancel", "item-not-found")),
    (
        "owner form of a missing room",
        iq(ALICE, ROOM, "<query xmlns='http://jabber.org/protocol/muc#owner'/>"),
        ("cancel", "item-not-found"),
    ),
    (
        "admin query of a missing room",
        iq(ALICE, ROOM, "<query xmlns='http://jabber.org/protocol/muc#admin'/>", type="set"),
        ("cancel", "item-not-found"),
    ),
    ("self-ping to a missing room", iq(ALICE, ROOM + "/n", PING), ("cancel", "not-acceptable")),
    (
        "register to a room, not gated",
        iq(ALICE, ROOM, "<query xmlns='jabber:iq:register'/>"),
        ("cancel", "feature-not-implemented"),
    ),
    (
        "iq with two payloads",
        iq(ALICE, SERVICE, DISCO_INFO + "<q xmlns='urn:x'/>"),
        None,  # answered with a result: checked separately below
    ),
    # -- messages
    ("groupchat from a stranger", message(ALICE), ("modify", "not-acceptable")),
    (
        "chat to a nick of a missing room",
        message(ALICE, ROOM + "/bob", type="chat"),
        ("modify", "not-acceptable"),
    ),
    ("headline to a room", message(ALICE, type="headline"), ("cancel", "feature-not-implemented")),
    (
        "message of unknown type",
        message(ALICE, type="bogus"),
        ("cancel", "feature-not-implemented"),
    ),
    (
        "subject from a stranger",
        message(ALICE, body=None, inner="<subject>x</subject>"),
        ("modify", "not-acceptable"),
    ),
    ("groupchat to a nick", message(ALICE, ROOM + "/bob"), ("modify", "bad-request")),
]


class HostileStanzaTests(ServiceTestCase):
    def test_corpus(self) -> None:
        for label, xml, expected in HOSTILE:
            self.receive(xml)
            out = self.take()
            if label == "iq with two payloads":
                [reply] = out
                self.assertEqual(reply["type"], "result", label)
                continue
            if expected is None:
                self.assertEqual([s.toXml() for s in out], [], label)
            else:
                self.assertEqual(len(out), 1, (label, [s.toXml() for s in out]))
                self.assertEqual(out[0]["type"], "error", label)
                self.assertEqual(error_of(out[0]), expected, label)
        self.assertEqual(self.auth.calls, [])
        self.assertEqual(dict(self.service.rooms), {})
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_oversized_addresses_are_dropped_before_parsing(self) -> None:
        """Stringprep of a 100 KB JID takes most of a second (a megabyte: 20 s), all of it
        on the reactor thread: an oversized ``from`` or ``to`` must be refused by its length."""
        events: list[dict[str, object]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.receive(presence("a" * 1_000_000 + "@example.org/x", ROOM + "/n"))
        self.receive(presence(ALICE, "room@" + "d" * 1_000_000 + "/n"))
        self.assertEqual(self.take(), [])
        dropped = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(dropped), 2, dropped)
        for event in dropped:
            self.assertIn("too long", str(event.get("log_format")))

    def test_error_stanzas_from_clients_are_never_answered(self) -> None:
        """Answering an error with an error could ping-pong forever between two services."""
        self.enter(ALICE, "alice")
        for kind in ("presence", "message", "iq"):
            self.receive(
                f"<{kind} xmlns='{C}' from='{BOB}' to='{ROOM}/alice' type='error' id='e'>"
                "<error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                f"</error></{kind}>"
            )
        self.assertEqual(self.take(), [])
        self.assertEqual(len(self.service.rooms[JID(ROOM)]), 1)

    def test_join_with_wrong_namespace_x_is_still_one_gated_join(self) -> None:
        """A presence without the muc ``<x/>`` (or with muc#user's) is a legacy join: it goes
        through the gate like any other, never around it."""
        self.receive(presence(BOB, ROOM + "/bob", muc=False, inner=f"<x xmlns='{NS_MUC}#user'/>"))
        self.assertEqual([r.user for r in self.auth.requests], [JID(BOB)])
        self.auth.deny()
        self.assertEqual(error_of(self.take_one()), ("cancel", "forbidden"))
        self.assertEqual(dict(self.service.rooms), {})


HISTORY_REQUESTS = [
    "<history maxstanzas='-1'/>",
    "<history maxstanzas='99999999999999999999999'/>",
    "<history maxstanzas='abc' maxchars='1e9' seconds='1.5'/>",
    "<history maxstanzas='\u0661\u0662'/>",  # Arabic-Indic digits: str.isdigit() says yes
    "<history maxchars='-5' seconds='-5'/>",
    "<history seconds='999999999999'/>",
    "<history since='yesterday'/>",
    "<history since='0001-01-01T00:00:00+14:00'/>",
    "<history since='9999-12-31T23:59:59-14:00'/>",
    "<history since='" + "9" * 10_000 + "'/>",
    "<history/><history maxstanzas='0'/>",
]


class HostileHistoryTests(ServiceTestCase):
    """Absurd ``<history/>`` attributes cannot break a join the gate allowed."""

    def test_every_request_joins_with_sane_history(self) -> None:
        self.enter(ALICE, "alice")
        for n in range(3):
            self.receive(message(ALICE, body=f"m{n}", id=f"m{n}"))
        self.take()
        for i, request in enumerate(HISTORY_REQUESTS):
            user = f"u{i}@example.org/r"
            nested = f"<x xmlns='{NS_MUC}'><x xmlns='{NS_MUC}'>{request}</x>{request}</x>"
            out = self.enter(user, f"u{i}", inner=nested)
            [own] = [p for p in out if p.name == "presence" and p["to"] == user and codes(p)]
            self.assertIn(110, codes(own))
            history = [m for m in out if m.name == "message" and m.body is not None]
            self.assertLessEqual(len(history), 3)
            self.assertEqual(out[-1].name, "message")  # the subject closes every join
            self.assertIsNotNone(out[-1].subject)
            self.receive(presence(user, f"{ROOM}/u{i}", type="unavailable"))
            self.take()
        self.assertEqual(self.flushLoggedErrors(), [])


class FloodTests(ServiceTestCase):
    settings = MUCSettings(max_pending_checks=100, max_pending_per_user=5, gate_nick_change=False)
    # Every pending check asked at once: the pending bounds are what these floods test (the
    # queue in front of a smaller in-flight limit is tests/muc/test_join_queue.py).
    service_options = {"max_in_flight": 100}

    def test_one_user_flooding_joins_holds_five_checks(self) -> None:
        for n in range(1000):
            self.join(ALICE, "alice", room=f"r{n}@{SERVICE}", id=f"j{n}")
        self.assertEqual(len(self.auth.calls), 5)
        out = self.take()
        self.assertEqual(len(out), 995)
        self.assertEqual({error_of(s) for s in out}, {("wait", "resource-constraint")})
        self.assertEqual(self.service.pending_checks, 5)
        for index in range(5):
            self.auth.deny(index=index)
        self.take()
        self.assertEqual(self.service.pending_checks, 0)
        self.assertEqual(dict(self.service.rooms), {})

    def test_many_users_flooding_joins_hold_the_service_limit(self) -> None:
        for n in range(1000):
            self.join(f"u{n}@example.org/r", f"u{n}", id=f"j{n}")
        self.assertEqual(len(self.auth.calls), 100)
        self.assertEqual(len(self.take()), 900)
        for index in range(100):
            self.auth.answer(Decision.error("timeout", "slow"), index=index)
        self.assertEqual(len(self.take()), 100)
        self.assertEqual(self.service.pending_checks, 0)
        self.join(CAROL, "carol")
        self.assertEqual(len(self.auth.calls), 101)

    def test_presence_and_nick_flood_keeps_room_consistent(self) -> None:
        self.enter(ALICE, "alice")
        self.enter(BOB, "bob")
        self.take()
        for n in range(500):
            self.receive(presence(BOB, ROOM + "/bob", inner=f"<status>{n}</status>"))
            self.receive(presence(BOB, ROOM + ("/bobby" if n % 2 == 0 else "/bob")))
        self.take()
        room = self.service.rooms[JID(ROOM)]
        self.assertEqual(sorted(o.nick for o in room), ["alice", "bob"])
        self.assertEqual(len(self.auth.calls), 2)  # nick changes are not gated here
        self.assertEqual(self.service.pending_checks, 0)
