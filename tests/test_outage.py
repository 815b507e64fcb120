"""An authorization service that accepts and never answers, behind a real Prosody (issue 26).

20 users enter 10 bookmarked rooms each at once while the service hangs (``timeout = 2``):
every join is refused with the failure condition within 6 s of being sent, not one slot-full
per timeout. Once the service answers again, a fresh join is admitted within a few seconds
(the breaker's probe). The bounds are the issue's functional ones, not benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest

from examples._loadclient import BurstResult, Connection, connect_many, join_burst
from tests.support.stack import PASSWORD, StackFixture

# Starts a real server: left out by ./dev.sh test --fast (setup.cfg, markers).
pytestmark = pytest.mark.prosody

USERS = 20
ROOMS = 10
REFUSED_WITHIN = 6.0  # seconds from sending the burst to the last refusal
ADMITTED_WITHIN = 10.0  # seconds from the service answering again to a fresh join admitted
TOKEN = "outage-test-admin-token"
USER_NAMES = tuple(f"o{n}" for n in range(USERS))

HUNG: dict[str, Any] = {"rules": [{"user": "*", "room": "*", "answer": "slow", "delay": 3600}]}
ANSWERING: dict[str, Any] = {"rules": [{"user": "*", "room": "*"}]}  # everyone may enter


class HungServiceTests(StackFixture):
    rules = HUNG

    @classmethod
    def stack_options(cls) -> dict[str, Any]:
        return {
            "users": (),
            "accounts": (*USER_NAMES, "fresh"),
            "http_options": {"timeout": "2"},
            "admin_token": TOKEN,
        }

    def setUp(self) -> None:
        super().setUp()
        self.admin_port = self.stack.admin_port

    async def login(self, *users: str) -> list[Connection]:
        server = self.stack.server
        return await connect_many(
            "127.0.0.1",
            server.c2s_port,
            list(users),
            lambda user: PASSWORD.format(user=user),
            domain=server.domain,
        )

    def test_joins_fail_fast_while_the_service_hangs_then_get_in(self) -> None:
        stack = self.stack
        assert stack.auth is not None
        service = stack.component_domain

        async def outage() -> tuple[list[BurstResult], float]:
            conns = await self.login(*USER_NAMES)
            try:
                started = time.monotonic()
                results = await asyncio.gather(
                    *(
                        join_burst(
                            c,
                            [f"bm{i}-{r}@{service}/{c.user}" for r in range(ROOMS)],
                            REFUSED_WITHIN,
                        )
                        for i, c in enumerate(conns)
                    )
                )
                return list(results), time.monotonic() - started
            finally:
                for conn in conns:
                    conn.close()

        results, elapsed = asyncio.run(outage())
        where = f"after {elapsed:.1f} s\n{stack.diagnostics()}"
        missing = {o for r in results for o in r.missing}
        self.assertEqual(missing, set(), f"{len(missing)} joins unanswered in 6 s; {where}")
        refused = [names for r in results for names in r.refused.values()]
        self.assertEqual(len(refused), USERS * ROOMS, where)
        for names in refused:
            self.assertIn("service-unavailable", names, where)
        self.assertIn("authorization service considered down", stack.mucauth_log())
        self.assertEqual(self.service_state()["state"], "down")

        stack.auth.set_rules(ANSWERING)
        recovered = time.monotonic()

        async def fresh_join() -> float:
            [conn] = await self.login("fresh")
            try:
                attempt = 0
                while time.monotonic() - recovered < ADMITTED_WITHIN:
                    attempt += 1
                    occupant = f"fresh-{attempt}@{service}/fresh"
                    result = await join_burst(conn, [occupant], ADMITTED_WITHIN)
                    if occupant in result.joined:
                        return time.monotonic() - recovered
                    await asyncio.sleep(0.25)
                return float("inf")
            finally:
                conn.close()

        took = asyncio.run(fresh_join())
        self.assertLessEqual(took, ADMITTED_WITHIN, stack.diagnostics())
        self.assertEqual(self.service_state()["state"], "up")

    def service_state(self) -> dict[str, Any]:
        """``GET /v1/service`` from mucauth's admin API."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}/v1/service",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            state: dict[str, Any] = json.loads(answer.read())
        return state
