"""CountingConnectionPool: the open-connections count matches what the server sees."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.settings import HTTPAuthSettings
from tests.authorize.test_http import ServerCase, join
from tests.support.certs import self_signed
from tests.support.http_server import answer, never_answer


class CountingPoolTests(ServerCase):
    def test_counts_only_what_metrics_read(self) -> None:
        # open_connections feeds mucauth_http_connections_open; a count of connections ever
        # opened had no reader (bench/gate.py counts at its server).
        from mucauth.authorize.pool import CountingConnectionPool

        self.assertFalse(hasattr(CountingConnectionPool, "opened_connections"))

    def make_with_hook(self, **kw: Any) -> tuple[HTTPAuthorizer, list[Decision]]:
        seen: list[Decision] = []

        def on_check(request: JoinRequest, decision: Decision) -> None:
            seen.append(decision)

        auth = HTTPAuthorizer(
            HTTPAuthSettings(url=kw.pop("url", self.server.url), **kw), reactor, on_check=on_check
        )
        self.addCleanup(auth.close)
        return auth, seen

    async def test_idle_connections_count_until_closed(self) -> None:
        self.server.resource.handler = answer()
        auth, seen = self.make_with_hook()
        self.assertEqual(auth.open_connections, 0)
        await auth.authorize(join())
        await auth.authorize(join(nick="again"))
        self.assertEqual(auth.open_connections, 1)  # kept for reuse, and reused
        self.assertEqual(len(self.server.open_connections), 1)
        self.assertEqual([d.source for d in seen], ["http", "http"])
        await auth.close()
        await self.server.all_closed()
        self.assertEqual(auth.open_connections, 0)

    async def test_busy_connections_count_too(self) -> None:
        self.server.resource.handler = never_answer()
        auth, seen = self.make_with_hook(timeout=2, pool_size=3)
        checks = [auth.authorize(join(nick=f"n{i}")) for i in range(3)]
        while len(self.server.resource.pending) < 3:
            await self.wait()
        self.assertEqual(auth.open_connections, 3)
        decisions = await gatherResults(checks)
        self.assertEqual({d.kind for d in decisions}, {"timeout"})
        await self.server.all_closed()
        self.assertEqual(auth.open_connections, 0)  # timed-out checks closed theirs
        self.assertEqual(len(seen), 3)

    async def test_tls_connections_are_counted(self) -> None:
        cert = self_signed()
        server = self.start(cert.server_options())
        server.resource.handler = answer()
        auth, _ = self.make_with_hook(url=server.url, insecure=True)
        decision = await auth.authorize(join())
        self.assertTrue(decision.is_allowed)
        self.assertEqual(auth.open_connections, 1)
        await auth.close()
        await server.all_closed()
        self.assertEqual(auth.open_connections, 0)

    def wait(self) -> Any:
        from twisted.internet import task

        return task.deferLater(reactor, 0.01, lambda: None)
