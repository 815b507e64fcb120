"""Property: whatever sequence of stanzas several users send, and whenever the gate answers,
the service keeps its promises.

Hypothesis draws sequences of joins, nick changes, leaves, messages, iqs and client errors from
a few users, interleaved with the gate's answers in any order (some immediate, some later, some
never until the end). An authorizer with a fixed policy allows two users, refuses one and fails
for another. After every step and at the end:

- no exception reached the log (the service never raises);
- every occupant session was allowed by the gate for that room, and no refused or failed user
  is ever an occupant;
- no room is empty;
- the pending checks respect the limits and agree with the per-user counts;

and once every check has been answered:

- no check is pending and the per-user counters are gone;
- every iq get/set was answered exactly once, with its id, to its sender;
- once everybody leaves, no room remains.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.generic import parseXml
from wokkel.test import helpers as wokkel_helpers
from zope.interface import implementer, provider

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.authorize.cache import CachingAuthorizer, SingleFlightAuthorizer
from mucauth.muc.service import MUCService
from mucauth.settings import MUCSettings, RoomDefaults
from tests.muc.support import NS_MUC, SERVICE, START, codes, iq, message, presence

USERS = (
    "alice@example.org/phone",
    "alice@example.org/laptop",
    "dave@example.org/pc",
    "bob@example.org/pc",
    "carol@example.org/pc",
)
ALLOWED = frozenset({"alice@example.org", "dave@example.org"})
DENIED = frozenset({"bob@example.org"})  # the gate says no
FAILING = frozenset({"carol@example.org"})  # the gate cannot answer (timeout, 500, ...)
ROOMS = ("one@" + SERVICE, "two@" + SERVICE)
NICKS = ("a", "b", "c")
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

PAYLOADS = {
    "ping": "<ping xmlns='urn:xmpp:ping'/>",
    "info": "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    "items": "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    "owner": "<query xmlns='http://jabber.org/protocol/muc#owner'/>",
    "owner-submit": (
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query>"
    ),
    "admin": "<query xmlns='http://jabber.org/protocol/muc#admin'/>",
    "register": (
        "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='muc#register_roomnick'><value>a</value></field></x></query>"
    ),
    "unknown": "<query xmlns='urn:example:unknown'/>",
}


@implementer(IJoinAuthorizer)
class PolicyAuthorizer:
    """Decides by bare JID; answers at once or holds the answer until the test releases it."""

    def __init__(self) -> None:
        self.immediate = False
        self.held: list[tuple[JoinRequest, Deferred[Decision]]] = []
        self.allowed: set[tuple[JID, JID]] = set()  # (session, room) the gate said yes to

    def decide(self, request: JoinRequest) -> Decision:
        bare = request.user.userhost()
        if bare in ALLOWED:
            self.allowed.add((request.user, request.room))
            return Decision.allow()
        if bare in DENIED:
            return Decision.deny("not on the list")
        return Decision.error("timeout", "no answer")

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        if self.immediate:
            return succeed(self.decide(request))
        entry: list[Any] = [request]

        def cancelled(d: Deferred[Decision]) -> None:
            self.held.remove((request, d))

        d: Deferred[Decision] = Deferred(cancelled)
        entry.append(d)
        self.held.append((request, d))
        return d

    def release(self, index: int) -> None:
        if not self.held:
            return
        request, d = self.held.pop(index % len(self.held))
        d.callback(self.decide(request))


@dataclass
class Run:
    """One example: a fresh service, what went in and what came out."""

    service: MUCService
    manager: wokkel_helpers.TestableStreamManager
    auth: PolicyAuthorizer
    limits: MUCSettings
    clock: Clock = field(default_factory=Clock)
    layered: bool = False
    out: list[domish.Element] = field(default_factory=list)
    iqs: dict[str, str] = field(default_factory=dict)  # id -> sender
    failures: list[dict[str, Any]] = field(default_factory=list)
    counter: int = 0

    def send(self, xml: str) -> None:
        self.manager.stub.send(parseXml(xml))
        self.collect()

    def release(self, index: int) -> None:
        self.auth.release(index)
        self.collect()

    def collect(self) -> None:
        self.out.extend(self.manager.stub.output)
        del self.manager.stub.output[:]

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


user_ = st.integers(0, len(USERS) - 1)
room_ = st.integers(0, len(ROOMS) - 1)
nick_ = st.integers(0, len(NICKS) - 1)

OPERATIONS = st.one_of(
    st.tuples(st.just("join"), user_, room_, nick_, st.booleans()),
    st.tuples(st.just("join"), user_, room_, nick_, st.booleans()),
    st.tuples(st.just("leave"), user_, room_, nick_),
    st.tuples(st.just("groupchat"), user_, room_),
    st.tuples(st.just("private"), user_, room_, nick_),
    st.tuples(
        st.just("iq"),
        user_,
        room_,
        nick_,
        st.sampled_from(["service", "room", "occupant"]),
        st.sampled_from(sorted(PAYLOADS)),
        st.sampled_from(["get", "set"]),
        st.booleans(),
    ),
    st.tuples(
        st.just("iq"),
        user_,
        room_,
        nick_,
        st.just("room"),
        st.just("register"),
        st.just("set"),
        st.booleans(),
    ),
    st.tuples(st.just("bounce"), user_, room_, st.sampled_from(["gone", "bad-request"])),
    st.tuples(st.just("answer"), st.integers(0, 20)),
    st.tuples(st.just("answer"), st.integers(0, 20)),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 6.0])),
)

SETTINGS = st.builds(
    MUCSettings,
    max_pending_checks=st.integers(1, 6),
    max_pending_per_user=st.integers(1, 3),
    rooms=st.builds(RoomDefaults, max_users=st.sampled_from([0, 2])),
    gate_nick_change=st.booleans(),
)


class StanzaSequenceTests(SynchronousTestCase):
    def start(
        self, limits: MUCSettings, authorize_registration: bool, layered: bool = False
    ) -> Run:
        """``layered``: the policy sits behind the cache and single-flight layers the real
        gate has, so answers are shared between sessions and reused for a while."""
        clock = Clock()
        clock.advance(START)
        auth = PolicyAuthorizer()
        front: IJoinAuthorizer = auth
        if layered:
            front = CachingAuthorizer(SingleFlightAuthorizer(auth), 5.0, clock)
        service = MUCService(
            front, limits, clock=clock, authorize_registration=authorize_registration
        )
        manager = wokkel_helpers.TestableStreamManager(reactor=clock)
        service.setHandlerParent(manager)
        run = Run(service, manager, auth, limits, clock=clock, layered=layered)

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if event.get("log_failure") is not None:
                run.failures.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return run

    def step(self, run: Run, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "join":
            _, u, r, n, immediate = op
            run.auth.immediate = immediate
            run.send(presence(USERS[u], f"{ROOMS[r]}/{NICKS[n]}", id=run.next_id("j")))
            run.auth.immediate = False
        elif kind == "leave":
            _, u, r, n = op
            run.send(presence(USERS[u], f"{ROOMS[r]}/{NICKS[n]}", type="unavailable"))
        elif kind == "groupchat":
            _, u, r = op
            run.send(message(USERS[u], ROOMS[r], id=run.next_id("m")))
        elif kind == "private":
            _, u, r, n = op
            run.send(message(USERS[u], f"{ROOMS[r]}/{NICKS[n]}", type="chat"))
        elif kind == "iq":
            _, u, r, n, target, payload, iq_type, immediate = op
            to = {"service": SERVICE, "room": ROOMS[r], "occupant": f"{ROOMS[r]}/{NICKS[n]}"}
            stanza_id = run.next_id("q")
            run.iqs[stanza_id] = USERS[u]
            run.auth.immediate = immediate
            run.send(iq(USERS[u], to[target], PAYLOADS[payload], type=iq_type, id=stanza_id))
            run.auth.immediate = False
        elif kind == "bounce":
            _, u, r, condition = op
            run.send(
                f"<message xmlns='jabber:component:accept' from='{USERS[u]}' to='{ROOMS[r]}'"
                f" type='error'><error type='cancel'><{condition} xmlns='{NS_STANZAS}'/>"
                "</error></message>"
            )
        elif kind == "tick":
            run.clock.advance(op[1])
            run.collect()
        else:
            run.release(op[1])

    def check_state(self, run: Run, where: str) -> None:
        service = run.service
        self.assertEqual(run.failures, [], where)
        for room_jid, room in service.rooms.items():
            self.assertFalse(room.is_empty, f"{where}: empty room {room_jid.full()} lingers")
            for occupant in room:
                self.assertTrue(occupant.sessions, where)
                for session in occupant.sessions:
                    self.assertNotIn(session.userhost(), DENIED | FAILING, where)
                    if run.layered:  # a yes is shared by every session of the bare JID
                        allowed = {(user.userhost(), room) for user, room in run.auth.allowed}
                        wanted: tuple[Any, JID] = (session.userhost(), room_jid)
                    else:
                        allowed, wanted = run.auth.allowed, (session, room_jid)
                    self.assertIn(
                        wanted,
                        allowed,
                        f"{where}: {session.full()} is in {room_jid.full()} without a yes",
                    )
        pending = dict(service.pending)
        self.assertLessEqual(len(pending), run.limits.max_pending_checks, where)
        per_user = Counter(key[0].userhost() for key in pending)
        self.assertEqual(per_user, +Counter(service.pending_per_user), where)
        self.assertLessEqual(max(per_user.values(), default=0), run.limits.max_pending_per_user)
        for stanza in run.out:
            sender = stanza.getAttribute("from") or ""
            self.assertTrue(sender.split("/")[0].endswith(SERVICE), stanza.toXml())

    def run_operations(self, run: Run, operations: list[tuple[Any, ...]]) -> None:
        for number, op in enumerate(operations):
            self.step(run, op)
            self.check_state(run, f"after step {number} {op}")

    def check_iq_answers(self, run: Run, at_most: bool = False) -> None:
        answers: Counter[str] = Counter()
        for stanza in run.out:
            if stanza.name == "iq" and stanza.getAttribute("type") in ("result", "error"):
                stanza_id = stanza.getAttribute("id")
                self.assertIn(stanza_id, run.iqs, stanza.toXml())
                self.assertEqual(stanza["to"], run.iqs[stanza_id], stanza.toXml())
                answers[stanza_id] += 1
        for stanza_id in run.iqs:
            count = answers[stanza_id]
            if at_most:
                self.assertLessEqual(count, 1, f"iq {stanza_id} answered {count} times")
            else:
                self.assertEqual(count, 1, f"iq {stanza_id} answered {count} times")

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # Found by this property: a registration check cancelled by the user's unavailable, and a
    # second registration iq while one was pending, both left an iq without an answer.
    @example(
        limits=MUCSettings(),
        authorize_registration=True,
        operations=[
            ("join", 0, 0, 0, True),
            ("iq", 2, 0, 0, "room", "register", "set", False),
            ("leave", 2, 0, 0),
        ],
    )
    @example(
        limits=MUCSettings(),
        authorize_registration=True,
        operations=[
            ("join", 0, 0, 0, True),
            ("iq", 2, 0, 0, "room", "register", "set", False),
            ("iq", 2, 0, 0, "room", "register", "get", False),
        ],
    )
    @given(
        limits=SETTINGS,
        authorize_registration=st.booleans(),
        operations=st.lists(OPERATIONS, max_size=30),
    )
    def test_service_keeps_its_promises(
        self,
        limits: MUCSettings,
        authorize_registration: bool,
        operations: list[tuple[Any, ...]],
    ) -> None:
        run = self.start(limits, authorize_registration)
        self.run_operations(run, operations)
        while run.auth.held:
            run.release(0)
            self.check_state(run, "answering what was left")
        self.assertEqual(run.service.pending_checks, 0)
        self.assertEqual(dict(run.service.pending_per_user), {})
        self.check_iq_answers(run)
        for user in USERS:
            for room in ROOMS:
                run.send(presence(user, room + "/x", type="unavailable"))
        self.check_state(run, "after everyone left")
        self.assertEqual(dict(run.service.rooms), {})

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # Found by this property: a user leaving cancelled the check, the policy's Deferred
    # errbacked CancelledError as cancelled Deferreds do, and single-flight logged a critical
    # "broken promise".
    @example(
        limits=MUCSettings(),
        authorize_registration=False,
        operations=[("join", 0, 0, 0, False), ("leave", 0, 0, 0)],
    )
    @given(
        limits=SETTINGS,
        authorize_registration=st.booleans(),
        operations=st.lists(OPERATIONS, max_size=30),
    )
    def test_promises_hold_behind_cache_and_single_flight(
        self,
        limits: MUCSettings,
        authorize_registration: bool,
        operations: list[tuple[Any, ...]],
    ) -> None:
        """The same promises with the real gate's layers in front of the policy: a shared or
        cached answer never lets in someone the policy refused."""
        run = self.start(limits, authorize_registration, layered=True)
        self.run_operations(run, operations)
        while run.auth.held:
            run.release(0)
            self.check_state(run, "answering what was left")
        self.assertEqual(run.service.pending_checks, 0)
        self.check_iq_answers(run)

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @example(  # two rooms, three sessions, a join and a registration waiting for the gate
        limits=MUCSettings(),
        authorize_registration=True,
        operations=[
            ("join", 0, 0, 0, True),
            ("join", 1, 0, 0, True),
            ("join", 2, 1, 1, True),
            ("join", 3, 1, 2, False),
            ("iq", 2, 0, 0, "room", "register", "set", False),
        ],
        ending="shutdown",
    )
    @given(
        limits=SETTINGS,
        authorize_registration=st.booleans(),
        operations=st.lists(OPERATIONS, max_size=25),
        ending=st.sampled_from(["shutdown", "link lost"]),
    )
    def test_shutdown_and_link_loss_end_everything(
        self,
        limits: MUCSettings,
        authorize_registration: bool,
        operations: list[tuple[Any, ...]],
        ending: str,
    ) -> None:
        """Whatever state the rooms and checks are in: a shutdown tells every session of every
        occupant 332 once per room and answers every waiting join and iq; a lost link drops
        everything silently. Either way no check stays open and no room survives."""
        run = self.start(limits, authorize_registration)
        self.run_operations(run, operations)
        sessions = Counter(
            (session.full(), room_jid.full())
            for room_jid, room in run.service.rooms.items()
            for occupant in room
            for session in occupant.sessions
        )
        waiting_joins = {
            (p.request.user.full(), p.request.room.full())
            for p in run.service.pending.values()
            if p.stanza.name == "presence"
        }
        before = len(run.out)
        if ending == "shutdown":
            run.service.shutdown()
            run.collect()
        else:
            with warnings.catch_warnings():  # Wokkel's StreamManager uses compat.itervalues
                warnings.simplefilter("ignore", DeprecationWarning)
                run.manager._disconnected(Failure(ConnectionError("link lost")))
            run.collect()
        after = run.out[before:]
        self.assertEqual(run.failures, [])
        self.assertEqual(dict(run.service.rooms), {})
        self.assertEqual(run.service.pending_checks, 0)
        self.assertEqual(dict(run.service.pending_per_user), {})
        self.assertEqual(run.auth.held, [])  # every check still out was cancelled
        if ending == "link lost":
            self.assertEqual(after, [])  # nothing can be sent without a link
            self.check_iq_answers(run, at_most=True)
            return
        notices = Counter(
            (p["to"], p["from"].split("/")[0])
            for p in after
            if p.name == "presence" and p.getAttribute("type") == "unavailable"
        )
        self.assertEqual(notices, sessions)
        for p in after:
            if p.name == "presence" and p.getAttribute("type") == "unavailable":
                self.assertEqual(codes(p), {110, 332}, p.toXml())
        refused = {
            (p["to"], p["from"].split("/")[0])
            for p in after
            if p.name == "presence" and p.getAttribute("type") == "error"
        }
        self.assertEqual(refused, waiting_joins)
        self.check_iq_answers(run)


class PropertyHarnessTests(SynchronousTestCase):
    """The property above would pass vacuously if the harness never got anyone in."""

    def test_allowed_users_do_get_in(self) -> None:
        test = StanzaSequenceTests()
        run = test.start(MUCSettings(), False)
        test.step(run, ("join", 0, 0, 0, True))
        test.step(run, ("join", 2, 0, 1, False))
        test.step(run, ("join", 3, 0, 2, False))
        test.step(run, ("answer", 0))
        test.step(run, ("answer", 0))
        room = run.service.rooms[JID(ROOMS[0])]
        self.assertEqual(sorted(o.nick for o in room), ["a", "b"])
        test.check_state(run, "harness")
        self.assertIn(NS_MUC, presence(USERS[0], ROOMS[0] + "/a"))
