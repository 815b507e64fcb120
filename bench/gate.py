"""How much the HTTP gate costs: connections opened and latency added per decision.

Run from the checkout: ``python bench/gate.py [checks] [concurrency]``. It starts a keep-alive
twisted.web auth service on loopback in this process, sends sequential checks and then
concurrent batches through HTTPAuthorizer, and prints figures; it asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from twisted.internet import task
from twisted.internet.defer import gatherResults
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.settings import HTTPAuthSettings


class TimedRequest(Request):
    """Records how long the server itself took, from a parsed request to its last byte."""

    handling: list[float] = []

    def process(self) -> None:
        self._started = time.perf_counter()
        super().process()

    def finish(self) -> None:
        super().finish()
        TimedRequest.handling.append(time.perf_counter() - self._started)


class Answer(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader("Content-Type", "application/json")
        return b'{"allowed": true}'


class Counted(ProtocolWrapper):
    def connectionMade(self) -> None:
        self.factory.opened += 1
        super().connectionMade()


class Counting(WrappingFactory):
    protocol = Counted
    opened = 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def request(i: int) -> JoinRequest:
    return JoinRequest(JID(f"user{i}@example.org/r"), JID("room@rooms.example.org"), f"n{i}")


async def main(reactor: Any, checks: int, concurrency: int) -> None:
    site = Site(Answer(), requestFactory=TimedRequest)
    site.log = lambda request: None  # type: ignore[method-assign]
    factory = Counting(site)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/auth"
    settings = HTTPAuthSettings(url=url, pool_size=10)
    auth = HTTPAuthorizer(settings, reactor)

    # Sequential: one join after another, as a quiet service sees them.
    latencies: list[float] = []
    marks: dict[int, int] = {}
    started = time.perf_counter()
    for i in range(checks):
        join = request(i)
        before = time.perf_counter()
        decision: Decision = await auth.authorize(join)
        latencies.append(time.perf_counter() - before)
        assert decision.is_allowed, decision
        if i + 1 in (50, 1000):
            marks[i + 1] = factory.opened
    elapsed = time.perf_counter() - started
    server = TimedRequest.handling[:]
    print(f"sequential: {checks} checks in {elapsed:.2f} s ({checks / elapsed:.0f}/s)")
    print(f"  connections for the first 50 checks:   {marks.get(50, factory.opened)}")
    print(f"  connections for the first 1000 checks: {marks.get(1000, factory.opened)}")
    print(f"  connections for all {checks} checks:     {factory.opened}")
    report(latencies, server)

    # Concurrent: bursts of joins, more than the pool holds.
    TimedRequest.handling.clear()
    opened_before = factory.opened
    latencies = []
    batches = max(1, checks // concurrency)
    started = time.perf_counter()
    for b in range(batches):
        joins = [request(b * concurrency + i) for i in range(concurrency)]
        ds = [auth.authorize(join) for join in joins]
        results = await gatherResults(ds)
        assert all(d.is_allowed for d in results)
        latencies.extend(d.latency for d in results)
    elapsed = time.perf_counter() - started
    total = batches * concurrency
    print(
        f"concurrent: {batches} batches of {concurrency} ({total} checks) in {elapsed:.2f} s"
        f" ({total / elapsed:.0f}/s), pool_size {settings.pool_size}"
    )
    print(f"  new connections: {factory.opened - opened_before}")
    report(latencies, TimedRequest.handling, note="(includes waiting for a pool slot)")

    await auth.close()
    await port.stopListening()


def report(latencies: list[float], server: list[float], note: str = "") -> None:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    s50 = statistics.median(server) if server else 0.0
    print(f"  decision latency p50 {ms(p50)}  p99 {ms(p99)}  max {ms(max(latencies))} {note}")
    print(f"  server handling p50 {ms(s50)}; gate overhead p50 {ms(p50 - s50)}")


if __name__ == "__main__":
    checks = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    if "-v" in sys.argv:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    task.react(main, (checks, concurrency))
