"""Bursts of joins through the whole stack: every user entering every bookmarked room at once.

Real clients (Conversations, Gajim, Dino, Converse.js) send one join per bookmark right after
login, and after an XMPP server restart every user does so at the same moment. mucauth asks the
authorization service at most ``pool_size`` questions at a time per process; everything over
that waits in its join queue, so every join is admitted and the service is never flooded.

The clients here are the lean asyncio clients of ``examples/_loadclient.py`` (200 slixmpp
clients would cost more CPU than the servers under test). The auth service answers every
question after a few milliseconds, like a web application, so the queue really fills; a few
users get slow answers on purpose to hold checks in flight while the test acts.

Behind Prosody (one mucauth) and behind ejabberd balancing the domain over two mucauth
processes (each url carries ``?shard=N``, so the auth service counts each process's peak).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from examples._loadclient import BurstResult, Connection, connect_many, join_burst
from tests.support.shards import Shards
from tests.support.stack import PASSWORD, AuthService, ClassFixture, Stack

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = [pytest.mark.prosody, pytest.mark.ejabberd]

USERS = 200
BOOKMARKS = 20
GROUP = 5  # users sharing each set of bookmarked rooms
POOL = 10  # [muc_http_auth] pool_size: the most checks in flight per process
PER_USER = 25  # [muc] max_pending_per_user, low enough for the bound test
SLOW = 2.0  # seconds the service takes for the users who must be caught mid-check
STORMERS = tuple(f"u{n}" for n in range(USERS))
SPECIAL = ("greedy", "bystander", "leaver", "quitter")

RULES: dict[str, Any] = {
    "rules": [
        {"user": "greedy@localhost", "room": "*", "answer": "slow", "delay": 1.0},
        {"user": "leaver@localhost", "room": "*", "answer": "slow", "delay": SLOW},
        {"user": "quitter@localhost", "room": "*", "answer": "slow", "delay": SLOW},
        {"user": "*", "room": "*", "answer": "slow", "delay": 0.005},
    ]
}
OPTIONS = {"pool_size": str(POOL)}
SECTIONS = {"muc": {"max_pending_per_user": str(PER_USER)}}


@dataclass
class Target:
    """What the tests need of either stack."""

    c2s_port: int
    domain: str
    service: str
    auth: AuthService
    processes: int
    diagnostics: Callable[[], str]


def rooms_of(target: Target, index: int, prefix: str = "storm") -> list[str]:
    """User ``index``'s bookmarks: GROUP users share each set of BOOKMARKS rooms."""
    return [f"{prefix}-{index // GROUP}-{k}@{target.service}" for k in range(BOOKMARKS)]


def occupants(conn: Connection, rooms: list[str]) -> list[str]:
    return [f"{room}/{conn.user}" for room in rooms]


def joins(conn: Connection, rooms: list[str]) -> str:
    return "".join(
        f"<presence to='{room}/{conn.user}' id='{conn.next_id()}'>"
        "<x xmlns='http://jabber.org/protocol/muc'/></presence>"
        for room in rooms
    )


class StormTests(ClassFixture):
    """Shared by both servers; ``server`` picks the stack."""

    server: ClassVar[str] = "prosody"
    target: Target

    @classmethod
    def start_fixture(cls) -> tuple[Target, Any]:
        if cls.server == "prosody":
            stack = Stack(
                cls.__name__,
                rules=RULES,
                users=(),
                accounts=(*STORMERS, *SPECIAL),
                http_options=OPTIONS,
                sections=SECTIONS,
            ).start()
            return Target(
                stack.server.c2s_port,
                stack.server.domain,
                stack.component_domain,
                stack.auth,  # type: ignore[arg-type]
                1,
                stack.diagnostics,
            ), stack
        shards = Shards(
            2,
            users=(),
            rules=RULES,
            accounts=(*STORMERS, *SPECIAL),
            http_options=OPTIONS,
            sections=SECTIONS,
            shard_query=True,
            log_level="info",
        ).start()
        return Target(
            shards.ejabberd.c2s_port,
            shards.ejabberd.domain,
            shards.ejabberd.component_domain,
            shards.auth,
            shards.count,
            shards.diagnostics,
        ), shards

    @classmethod
    def stop_fixture(cls, fixture: tuple[Target, Any]) -> None:
        fixture[1].stop()

    def setUp(self) -> None:
        super().setUp()
        self.target = self.fixture()[0]

    async def login(self, *users: str) -> list[Connection]:
        target = self.target
        return await connect_many(
            "127.0.0.1",
            target.c2s_port,
            list(users),
            lambda user: PASSWORD.format(user=user),
            domain=target.domain,
        )

    def asked_for(self, user: str) -> list[str]:
        """The rooms the auth service was asked about for ``user``."""
        jid = f"{user}@{self.target.domain}"
        return [
            r["args"]["mucJID"] for r in self.target.auth.requests() if r["args"]["userJID"] == jid
        ]

    def test_every_user_enters_every_bookmarked_room_at_once(self) -> None:
        target = self.target
        before = target.auth.stats()["requests"]

        async def storm() -> list[BurstResult]:
            conns = await self.login(*STORMERS)
            try:
                return list(
                    await asyncio.gather(
                        *(
                            join_burst(c, occupants(c, rooms_of(target, i)), 90.0)
                            for i, c in enumerate(conns)
                        )
                    )
                )
            finally:
                for conn in conns:
                    conn.close()

        started = time.monotonic()
        results = asyncio.run(storm())
        elapsed = time.monotonic() - started
        refused = {o: names for r in results for o, names in r.refused.items()}
        missing = {o for r in results for o in r.missing}
        where = f"after {elapsed:.1f} s\n{target.diagnostics()}"
        self.assertEqual(refused, {}, where)
        self.assertEqual(missing, set(), where)
        self.assertEqual(sum(len(r.joined) for r in results), USERS * BOOKMARKS)
        stats = target.auth.stats()
        asked = sum(stats["requests"].values()) - sum(before.values())
        self.assertEqual(asked, USERS * BOOKMARKS, "one question per join")
        peaks = stats["peak_in_flight"]
        self.assertEqual(len(peaks), target.processes, peaks)
        for client, peak in peaks.items():
            self.assertLessEqual(peak, POOL, f"{client or 'mucauth'} had {peak} checks in flight")
        # The burst was more than the pool: the queue, not luck, kept the bound.
        self.assertEqual(max(peaks.values()), POOL, peaks)

    def test_a_user_over_the_per_user_bound_is_refused_while_others_are_admitted(self) -> None:
        target = self.target
        count = 60  # over PER_USER on every process, whatever the split between processes

        async def greedy() -> tuple[BurstResult, BurstResult]:
            greedy, bystander = await self.login("greedy", "bystander")
            try:
                rooms = [f"greedy-{n}@{target.service}" for n in range(count)]
                mine = asyncio.ensure_future(join_burst(greedy, occupants(greedy, rooms), 60.0))
                await asyncio.sleep(0.2)  # greedy's joins are in, queued or refused
                other = await join_burst(
                    bystander, occupants(bystander, [f"quiet@{target.service}"]), 30.0
                )
                return await mine, other
            finally:
                greedy.close()
                bystander.close()

        mine, other = asyncio.run(greedy())
        where = target.diagnostics()
        self.assertEqual(list(other.joined), [f"quiet@{target.service}/bystander"], where)
        self.assertEqual(mine.missing, set(), where)
        self.assertGreaterEqual(len(mine.refused), count - PER_USER * target.processes, where)
        self.assertEqual(len(mine.joined) + len(mine.refused), count)
        for names in mine.refused.values():
            self.assertIn("resource-constraint", names)
            self.assertIn("error", names)

    def assert_queued_joins_never_asked(
        self, user: str, go_away: Callable[[Connection], None]
    ) -> None:
        target = self.target
        count = 40
        rooms = [f"{user}-{n}@{target.service}" for n in range(count)]

        async def run() -> None:
            [conn] = await self.login(user)
            try:
                conn.send(joins(conn, rooms))
                await asyncio.sleep(0.3)  # in flight or queued, none answered (SLOW)
                go_away(conn)
                await asyncio.sleep(SLOW + 1.0)  # a queued join asked late would show by now
            finally:
                conn.close()

        asyncio.run(run())
        asked = self.asked_for(user)
        where = f"asked about {len(asked)} rooms\n{target.diagnostics()}"
        self.assertLessEqual(len(asked), POOL * target.processes, where)
        self.assertLess(len(asked), count, where)

    def test_queued_joins_of_a_user_who_leaves_never_reach_the_service(self) -> None:
        service = self.target.service

        def leave(conn: Connection) -> None:
            # Newest first: the queued joins are cancelled before the running ones free their
            # slots. In join order, a cancelled running check's slot could start the next
            # queued join before the XMPP server had passed on that join's own leave (ejabberd
            # may forward the leaves in several writes), and the bound below would not hold.
            conn.send(
                "".join(
                    f"<presence to='leaver-{n}@{service}/leaver' type='unavailable'/>"
                    for n in reversed(range(40))
                )
            )

        self.assert_queued_joins_never_asked("leaver", leave)

    def test_queued_joins_of_a_session_that_goes_away_never_reach_the_service(self) -> None:
        """The client disconnects: its server sends the rooms an unavailable for it."""
        self.assert_queued_joins_never_asked("quitter", lambda conn: conn.close())


class StormOnEjabberdTests(StormTests):
    """The same behind ejabberd, its domain balanced over two mucauth processes."""

    server = "ejabberd"
