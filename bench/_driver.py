"""The stack of ``joins.py`` and its measured window.

:func:`set_up` starts Prosody (``bench/_prosody.py``), the authorization service and one
mucauth per gate (plain HTTP on ``rooms.localhost``, HTTPS on ``rooms-tls.localhost``), makes
sure each mucauth refuses and admits as its service says, and logs the load users in: the
result is a :class:`Bench`, with a :class:`Target` per MUC under test.

:func:`measured_loops` runs a mode's load loops, measures over ``--duration`` seconds after
``--warmup`` (latency, refusals, CPU of every process, the auth service's counters) and
returns the figures by name; ``bench/_modes.py`` says what each mode's loops do, and
``bench/_report.py`` prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from _processes import (
    Children,
    Process,
    check_gate,
    cpu_seconds,
    fetch_stats,
    machine_busy_seconds,
    memory_kib,
    spawn_auth_service,
)
from _prosody import BUILTIN_MUC, COMPONENT, BenchProsody

from examples._certs import self_signed
from examples._loadclient import (
    Connection,
    LoopResult,
    Watchdog,
    Window,
    connect,
    connect_many,
    now,
    percentile,
)
from examples._stack import free_port, mucauth_command, wait_for_port, write_tap_conf

COMPONENT_TLS = "rooms-tls.localhost"
PASSWORD = "bench-pw"


@dataclass
class Target:
    """One MUC under test: where its rooms live and which processes do its work."""

    name: str
    service: str
    component: Process | None = None
    listener: str | None = None  # the auth service's counters for this target


@dataclass
class Bench:
    """The running stack and the logged-in users every mode draws from."""

    args: argparse.Namespace
    children: Children
    prosody: BenchProsody
    auth: Process | None
    auth_port: int
    targets: dict[str, Target]
    load: list[Connection] = field(default_factory=list)
    probes: list[Connection] = field(default_factory=list)
    occupants: list[Connection] = field(default_factory=list)
    joiner: Connection | None = None

    def pids(self, target: Target) -> dict[str, int]:
        pids = {"prosody": self.prosody.pid, "client": os.getpid()}
        if target.component is not None:
            pids["component"] = target.component.pid
        if self.auth is not None and target.listener is not None:
            pids["auth"] = self.auth.pid
        return pids

    def close(self) -> None:
        """Close every user's stream."""
        for conn in [*self.load, *self.probes, *self.occupants, self.joiner]:
            if conn is not None:
                conn.close()


# -- measurement -----------------------------------------------------------------------------


class Snapshot:
    """CPU time of every process of a target, and of the whole machine, at one instant."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.at = now()
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.machine = machine_busy_seconds()


async def measured_loops(
    bench: Bench,
    target: Target,
    loops: Callable[[Window], list[Awaitable[None]]],
    results: list[LoopResult],
) -> dict[str, float]:
    """Run load loops, measure over ``duration`` seconds after ``warmup``, then wind down."""
    args = bench.args
    window = Window()
    pids = bench.pids(target)
    connections = bench.load + bench.probes
    with Watchdog(connections, args.timeout):
        tasks = [asyncio.ensure_future(loop) for loop in loops(window)]
        try:
            await asyncio.sleep(args.warmup)
            stats0 = await _stats(bench, target)
            before = Snapshot(pids)
            window.start = before.at
            await asyncio.sleep(args.duration)
            window.end = now()
            after = Snapshot(pids)
            stats1 = await _stats(bench, target)
            window.stop = True
            await asyncio.wait_for(asyncio.gather(*tasks), args.timeout * 3)
        finally:
            for task in tasks:
                task.cancel()
    main = results[0]
    seconds = window.end - window.start
    joins = sum(r.joins for r in results)
    figures: dict[str, float] = {
        "joins/s": joins / seconds,
        "p50": percentile(main.latencies, 0.50) * 1000,
        "p95": percentile(main.latencies, 0.95) * 1000,
        "p99": percentile(main.latencies, 0.99) * 1000,
        "refused": sum(r.refused for r in results),
        "timeouts": sum(r.timeouts for r in results),
        "errors": sum(r.errors for r in results),
    }
    ours = 0.0
    for name in pids:
        used = after.cpu[name] - before.cpu[name]
        ours += used
        figures[f"cpu:{name}"] = used * 1000 / max(joins, 1)
    figures["other %"] = max(0.0, after.machine - before.machine - ours) * 100 / seconds
    if stats0 is not None and stats1 is not None:
        figures["http/join"] = (stats1["requests"] - stats0["requests"]) / max(joins, 1)
        # Connections used per stretch of 1000 joins; a short window counts as one stretch
        # (scaling 10 connections over 400 joins up to 25 would blame the pool for the window).
        figures["conns/1000"] = stats1["used"] * 1000 / max(joins, 1000)
        figures["new conns"] = stats1["connections"] - stats0["connections"]
    figures.update(peak_memory(bench, target))
    return figures


async def _stats(bench: Bench, target: Target) -> dict[str, int] | None:
    if bench.auth is None or target.listener is None:
        return None
    return (await fetch_stats(bench.auth_port))[target.listener]


def peak_memory(bench: Bench, target: Target) -> dict[str, float]:
    """Peak RSS (MB) so far of Prosody and of the target's component, if it has one."""
    out = {"hwm:prosody": memory_kib(bench.prosody.pid)["VmHWM"] / 1024}
    if target.component is not None:
        out["hwm:component"] = memory_kib(target.component.pid)["VmHWM"] / 1024
    return out


# -- set-up ----------------------------------------------------------------------------------


async def wait_for_component(probe: Connection, service: str, process: Process) -> None:
    """Ask the service for disco#info until Prosody stops bouncing 'not connected'."""
    deadline = now() + 20
    while now() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        answer = await asyncio.wait_for(probe.ask_service(service), 5)
        if "not-connected" not in answer.names:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.name} did not connect to Prosody in 20 s:\n{process.log_tail()}")


async def start_mucauth(
    bench_dir: Path,
    children: Children,
    prosody: BenchProsody,
    service: str,
    url: str,
    http_options: dict[str, str],
    pool_size: int,
    *,
    sections: dict[str, dict[str, str]] | None = None,
    writer: str = "bench/joins.py",
) -> Process:
    """One ``twistd mucauth`` on ``service``, connected and checked (``check_gate``);
    ``sections`` are more tap.conf sections (``{"storage": {...}}``)."""
    config = write_tap_conf(
        bench_dir / f"{service}.tap.conf",
        jid=service,
        host="127.0.0.1",
        port=prosody.component_port,
        secret=prosody.component_secret,
        url=url,
        http_options={"timeout": "5", "pool_size": str(pool_size), **http_options},
        sections=sections,
        log_level="warn",
        writer=writer,
    )
    process = children.spawn(
        f"mucauth ({service})", mucauth_command(config), bench_dir / f"{service}.log", bench_dir
    )
    probe = await connect("127.0.0.1", prosody.c2s_port, "probe", PASSWORD)
    try:
        await wait_for_component(probe, service, process)
        await check_gate(probe, service)
    finally:
        probe.close()
    return process


async def set_up(args: argparse.Namespace, bench_dir: Path, children: Children) -> Bench:
    want_mucauth = "mucauth" in args.targets
    components = (COMPONENT, COMPONENT_TLS) if want_mucauth else ()
    prosody = BenchProsody(bench_dir / "prosody", components=components)
    users = (
        [f"load{i}" for i in range(args.clients)]
        + [f"probe{i}" for i in range(args.probes)]
        + [f"occ{i}" for i in range(args.occupants)]
        + ["joiner", "probe"]
    )
    prosody.add_accounts(dict.fromkeys(users, PASSWORD))
    children.prosody = prosody
    prosody.start()
    targets = {"prosody": Target("prosody", BUILTIN_MUC)}
    auth: Process | None = None
    auth_port = 0
    if want_mucauth:
        auth_port, tls_port = free_port(), free_port()
        cert, key = self_signed("mucauth bench").write(bench_dir, "auth-cert.pem", "auth-key.pem")
        auth = spawn_auth_service(
            children,
            bench_dir,
            [
                "--port",
                str(auth_port),
                "--tls-port",
                str(tls_port),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--slow",
                str(args.slow_auth),
            ],
        )
        wait_for_port(auth_port)
        wait_for_port(tls_port)
        try:
            plain = await start_mucauth(
                bench_dir,
                children,
                prosody,
                COMPONENT,
                f"http://127.0.0.1:{auth_port}/muc/join",
                {},
                args.pool_size,
            )
            targets["mucauth"] = Target("mucauth", COMPONENT, plain, "http")
            if "https" in args.modes:
                tls = await start_mucauth(
                    bench_dir,
                    children,
                    prosody,
                    COMPONENT_TLS,
                    f"https://127.0.0.1:{tls_port}/muc/join",
                    {"ca_file": str(cert)},
                    args.pool_size,
                )
                targets["mucauth-https"] = Target("mucauth-https", COMPONENT_TLS, tls, "https")
        except RuntimeError as e:
            print(f"!! mucauth is not usable, measuring Prosody only: {e}", file=sys.stderr)
    bench = Bench(args, children, prosody, auth, auth_port, targets)
    host, port = "127.0.0.1", prosody.c2s_port
    bench.load = await connect_many(host, port, users[: args.clients], PASSWORD)
    bench.probes = await connect_many(
        host, port, [f"probe{i}" for i in range(args.probes)], PASSWORD
    )
    bench.occupants = await connect_many(
        host, port, [f"occ{i}" for i in range(args.occupants)], PASSWORD
    )
    bench.joiner = await connect(host, port, "joiner", PASSWORD)
    return bench
