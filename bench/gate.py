"""How much the HTTP gate costs: connections opened and latency added per decision.

Run from the checkout: ``python bench/gate.py [checks] [concurrency]``. It starts a keep-alive
twisted.web auth service on loopback in this process, sends sequential checks and then
concurrent batches through HTTPAuthorizer, and prints figures; it asserts nothing.

"CPU per check" is this process's CPU time over the sequential checks: the gate's and the
in-process server's together (the server's share is the same whatever the client does), so
compare it between runs of this script, not with ``bench/joins.py``'s per-join CPU.

``python bench/gate.py --client-cpu [checks] [rounds]`` measures the gate's CPU alone: the
service is ``bench/authservice.py`` in its own process, and this process's CPU time over
``checks`` sequential checks (after a warm-up) is printed per round (min, median, max).

``python bench/gate.py --callgrind [checks]`` counts the gate's instructions per check, client
side alone: the same service in its own process, and this script run twice under ``valgrind
--tool=callgrind`` (100 warm-up checks, then none or ``checks`` sequential ones, 1,000 by
default); the difference per check does not move with the host's load, unlike CPU time.
"""

from __future__ import annotations

import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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
    joins = [request(i) for i in range(checks)]  # JIDs cost stringprep: not the gate's CPU
    gc.collect()
    started = time.perf_counter()
    cpu_started = time.process_time()
    for i, join in enumerate(joins):
        before = time.perf_counter()
        decision: Decision = await auth.authorize(join)
        latencies.append(time.perf_counter() - before)
        assert decision.is_allowed, decision
        if i + 1 in (50, 1000):
            marks[i + 1] = factory.opened
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    server = TimedRequest.handling[:]
    print(f"sequential: {checks} checks in {elapsed:.2f} s ({checks / elapsed:.0f}/s)")
    print(f"  CPU per check (gate + in-process server): {cpu / checks * 1e6:.0f} µs")
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


def start_service() -> tuple[subprocess.Popen[bytes], int]:
    """``bench/authservice.py`` in its own process, listening once this returns."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("authservice.py")), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return service, port
        except OSError:
            time.sleep(0.05)
    service.terminate()
    sys.exit("bench/authservice.py did not start")


async def client_run(reactor: Any, port: int, checks: int, made: int) -> None:
    """100 warm-up checks, then ``checks`` sequential ones: what --callgrind counts.

    Both runs make the same ``made`` requests first (a JID costs stringprep, which is not the
    gate's), so that only the checks differ between them.
    """
    settings = HTTPAuthSettings(url=f"http://127.0.0.1:{port}/auth", pool_size=10)
    auth = HTTPAuthorizer(settings, reactor)
    joins = [request(i) for i in range(100 + made)]
    for join in joins[: 100 + checks]:
        decision: Decision = await auth.authorize(join)
        assert decision.is_allowed, decision
    await auth.close()


def client_instructions(checks: int) -> None:
    service, port = start_service()
    totals: list[int] = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            for count in (0, checks):
                out = os.path.join(directory, f"callgrind.{count}")
                run = subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        f"--callgrind-out-file={out}",
                        sys.executable,
                        __file__,
                        "--client-run",
                        str(port),
                        str(count),
                        str(checks),
                    ],
                    env=dict(os.environ, PYTHONHASHSEED="0"),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if run.returncode != 0:
                    sys.exit(f"callgrind run failed:\n{run.stdout}{run.stderr}")
                with open(out) as f:
                    totals.append(
                        next(
                            int(line.split()[1])
                            for line in f
                            if line.startswith(("summary:", "totals:"))
                        )
                    )
    finally:
        service.terminate()
        service.wait()
    per = (totals[1] - totals[0]) / checks
    print(
        f"gate instructions per check, client side alone: {per / 1000:,.0f}k"
        f" ({checks} sequential checks after 100 of warm-up; totals {totals[0]:,} and"
        f" {totals[1]:,})"
    )


async def client_cpu(reactor: Any, checks: int, rounds: int) -> None:
    service, port = start_service()
    try:
        settings = HTTPAuthSettings(url=f"http://127.0.0.1:{port}/auth", pool_size=10)
        auth = HTTPAuthorizer(settings, reactor)
        joins = [request(i) for i in range(checks)]  # JIDs cost stringprep: not the gate's CPU
        for join in joins[:100]:
            assert (await auth.authorize(join)).is_allowed
        per_check: list[float] = []
        for _ in range(rounds):
            gc.collect()
            cpu_started = time.process_time()
            for join in joins:
                decision: Decision = await auth.authorize(join)
                assert decision.is_allowed, decision
            per_check.append((time.process_time() - cpu_started) / checks)
        await auth.close()
    finally:
        service.terminate()
        service.wait()
    print(f"gate CPU per check, service in its own process: {checks} sequential checks x {rounds}")
    print(
        f"  min {min(per_check) * 1e6:.0f} µs  median {statistics.median(per_check) * 1e6:.0f} µs"
        f"  max {max(per_check) * 1e6:.0f} µs"
    )


def report(latencies: list[float], server: list[float], note: str = "") -> None:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    s50 = statistics.median(server) if server else 0.0
    print(f"  decision latency p50 {ms(p50)}  p99 {ms(p99)}  max {ms(max(latencies))} {note}")
    print(f"  server handling p50 {ms(s50)}; gate overhead p50 {ms(p50 - s50)}")


if __name__ == "__main__":
    numbers = [int(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    if "-v" in sys.argv:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    if "--client-run" in sys.argv:
        port, checks, made = numbers[:3]
        task.react(client_run, (port, checks, made))
    elif "--callgrind" in sys.argv:
        client_instructions((*numbers, 1000)[0])
    elif "--client-cpu" in sys.argv:
        checks, rounds = (*numbers, 2000, 5)[:2]
        task.react(client_cpu, (checks, rounds))
    else:
        checks, concurrency = (*numbers, 2000, 100)[:2]
        task.react(main, (checks, concurrency))
