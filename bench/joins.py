"""Join benchmark: mucauth against Prosody's built-in MUC, on one throw-away Prosody.

Run ``./dev.sh bench`` (or ``.venv/bin/python bench/joins.py --help``). It starts, all on
127.0.0.1 with run-time ports and all thrown away at the end:

* Prosody, with its own MUC on ``muc.localhost`` (no authorization) and component listeners
  for mucauth on ``rooms.localhost`` (HTTP gate) and ``rooms-tls.localhost`` (HTTPS gate);
* bench/authservice.py, a keep-alive authorization service that counts requests and
  connections;
* mucauth twice through twistd, one instance per listener;
* the load client (examples/_loadclient.py) inside this process.

Both targets run the same modes back to back, repeated, and the table shows the median of the
repeats. Nothing here asserts on timings: the host is shared and noisy, the figures are for
people. bench/README.md says what every column means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _prosody import BUILTIN_MUC, COMPONENT, BenchProsody  # noqa: E402

from examples._loadclient import (  # noqa: E402
    Connection,
    JoinRefusedError,
    LoopResult,
    Watchdog,
    Window,
    big_room,
    connect,
    connect_many,
    join_leave_loop,
    now,
    percentile,
    slow_probe_loop,
)
from examples._stack import free_port, start_process, stop_process, wait_for_port  # noqa: E402
from tests.support.certs import self_signed  # noqa: E402

COMPONENT_TLS = "rooms-tls.localhost"
PASSWORD = "bench-pw"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("distinct", "shared", "slow", "big", "https", "rss")
QUICK_MODES = "distinct,slow,big"
FULL_DEFAULTS = {
    "modes": ",".join(MODES),
    "duration": 3.0,
    "warmup": 1.0,
    "repeats": 3,
    "big_rounds": 20,
    "rss_cycles": 20000,
    "occupants": 200,
}
QUICK_DEFAULTS = {
    "modes": QUICK_MODES,
    "duration": 2.0,
    "warmup": 0.5,
    "repeats": 1,
    "big_rounds": 5,
    "rss_cycles": 5000,
    "occupants": 100,
}
# Modes measured once, not per repeat: long, and their figures are not rates.
ONCE = ("big", "rss")
TARGETS = ("prosody", "mucauth")
# Which target serves each mode: the slow and HTTPS modes only make sense with a gate.
MODE_TARGETS = {
    "distinct": ("prosody", "mucauth"),
    "shared": ("prosody", "mucauth"),
    "slow": ("mucauth",),
    "big": ("prosody", "mucauth"),
    "https": ("mucauth-https",),
    "rss": ("mucauth",),
}


# -- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (fields 14 and 15, after the command name)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from the first line of /proc/stat.

    Compared with the CPU of our own processes it shows how much other work shared the host
    during a measurement: the figures of a run with a large "other" share are not worth much.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


@dataclass
class Process:
    """A child in its own session, so stopping it also stops whatever it spawned."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Children:
    """Every process the benchmark started; ``stop_all`` runs on any exit path."""

    def __init__(self) -> None:
        self.processes: list[Process] = []
        self.prosody: BenchProsody | None = None

    def spawn(self, name: str, argv: list[str], log: Path, cwd: Path) -> Process:
        process = Process(name, start_process(argv, log, name, cwd=cwd), log)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        while self.processes:
            stop_process(self.processes.pop().popen, timeout=5.0)
        if self.prosody is not None:
            self.prosody.stop()
            self.prosody = None


TAP_CONF = """\
# Written by bench/joins.py; thrown away with its directory.
[component]
jid = {jid}
host = 127.0.0.1
port = {port}
secret = {secret}

[muc_http_auth]
url = {url}
timeout = 5
pool_size = {pool_size}
{extra}
[log]
level = warn
"""


def twistd_argv(config: Path) -> list[str]:
    """twistd from this interpreter's venv, in the foreground, with no pid file."""
    script = Path(sys.executable).parent / "twistd"
    head = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    )
    return [*head, "-n", "--pidfile=", "mucauth", "--config", str(config)]


async def fetch_stats(port: int) -> dict[str, dict[str, int]]:
    """GET /stats from the auth service over a fresh connection (not counted by it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return json.loads(data.partition(b"\r\n\r\n")[2])


# -- measurement -----------------------------------------------------------------------------


@dataclass
class Target:
    """One MUC under test: where its rooms live and which processes do its work."""

    name: str
    service: str
    component: Process | None = None
    listener: str | None = None  # the auth service's counters for this target


@dataclass
class Bench:
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
    figures.update(_memory(bench, target))
    return figures


async def _stats(bench: Bench, target: Target) -> dict[str, int] | None:
    if bench.auth is None or target.listener is None:
        return None
    return (await fetch_stats(bench.auth_port))[target.listener]


def _memory(bench: Bench, target: Target) -> dict[str, float]:
    out = {"hwm:prosody": memory_kib(bench.prosody.pid)["VmHWM"] / 1024}
    if target.component is not None:
        out["hwm:component"] = memory_kib(target.component.pid)["VmHWM"] / 1024
    return out


def room_series(prefix: str, service: str, span: int) -> Callable[[int], str]:
    """Room names for successive cycles: ``span`` names taken in turn (1: always the same)."""
    if span == 1:
        return lambda cycle: f"{prefix}@{service}"
    return lambda cycle: f"{prefix}{cycle % span}@{service}"


def distinct_rooms(service: str, client: int) -> Callable[[int], str]:
    """Each client its own rooms, a new name every cycle: every join creates a room."""
    return room_series(f"d{client}x", service, 16)


async def mode_distinct(bench: Bench, target: Target) -> dict[str, float]:
    result = LoopResult()

    def loops(window: Window) -> list[Awaitable[None]]:
        return [
            join_leave_loop(c, distinct_rooms(target.service, i), f"n{i}", window, result)
            for i, c in enumerate(bench.load)
        ]

    return await measured_loops(bench, target, loops, [result])


async def mode_shared(bench: Bench, target: Target) -> dict[str, float]:
    result = LoopResult()
    rooms = bench.args.shared_rooms

    def loops(window: Window) -> list[Awaitable[None]]:
        return [
            join_leave_loop(
                c, room_series(f"s{i % rooms}", target.service, 1), f"n{i}", window, result
            )
            for i, c in enumerate(bench.load)
        ]

    return await measured_loops(bench, target, loops, [result])


async def mode_slow(bench: Bench, target: Target) -> dict[str, float]:
    """Full load on fast rooms while a few users each join a slow room and a fast one at once."""
    result, probe = LoopResult(), LoopResult()

    def loops(window: Window) -> list[Awaitable[None]]:
        out: list[Awaitable[None]] = [
            join_leave_loop(c, distinct_rooms(target.service, i), f"n{i}", window, result)
            for i, c in enumerate(bench.load)
        ]
        for i, c in enumerate(bench.probes):
            out.append(
                slow_probe_loop(
                    c,
                    room_series(f"slow{i}x", target.service, 4),
                    room_series(f"fast{i}x", target.service, 4),
                    f"p{i}",
                    window,
                    probe,
                )
            )
        return out

    figures = await measured_loops(bench, target, loops, [result, probe])
    figures["other-room p50"] = percentile(probe.other_room, 0.5) * 1000
    figures["other-room p99"] = percentile(probe.other_room, 0.99) * 1000
    figures["slow-room p50"] = percentile(probe.slow_room, 0.5) * 1000
    figures["probe samples"] = len(probe.other_room)
    return figures


async def mode_big(bench: Bench, target: Target) -> dict[str, float]:
    assert bench.joiner is not None
    args = bench.args
    room = f"big{int(time.time() * 1000) % 100000}@{target.service}"
    with Watchdog([*bench.occupants, bench.joiner], args.timeout):
        result = await big_room(bench.occupants, bench.joiner, room, args.big_rounds, args.timeout)
    figures = {
        "occupants": len(bench.occupants) - result.refused,
        "fill s": result.fill_seconds,
        "join p50": percentile(result.join_latencies, 0.5) * 1000,
        "join p99": percentile(result.join_latencies, 0.99) * 1000,
        "fan-out p50": percentile(result.fanout, 0.5) * 1000,
        "fan-out p99": percentile(result.fanout, 0.99) * 1000,
        "first p50": percentile(result.fanout_first, 0.5) * 1000,
        "lost": result.lost,
    }
    figures.update(_memory(bench, target))
    return figures


async def mode_rss(bench: Bench, target: Target) -> dict[str, float]:
    """RSS after a short and after a long run of join/leave cycles: a leak shows as growth.

    Bounded by ``--rss-seconds`` as well as by count, so a slow target cannot stretch the run:
    the table then shows how many cycles were reached.
    """
    args = bench.args
    marks = (args.rss_cycles // 10, args.rss_cycles)
    pid = target.component.pid if target.component is not None else bench.prosody.pid
    window = Window(start=0.0)
    timer = asyncio.get_running_loop().call_later(args.rss_seconds, setattr, window, "stop", True)
    out: dict[str, float] = {}
    done = 0
    started = now()
    try:
        with Watchdog(bench.load, args.timeout):
            for label, mark in zip(("short", "long"), marks, strict=True):
                per_client = max(1, (mark - done) // len(bench.load))
                result = LoopResult()
                await asyncio.gather(
                    *(
                        join_leave_loop(
                            c,
                            distinct_rooms(target.service, i),
                            f"n{i}",
                            window,
                            result,
                            max_cycles=per_client,
                        )
                        for i, c in enumerate(bench.load)
                    )
                )
                done += result.joins
                out[f"cycles {label}"] = done
                out[f"rss {label}"] = memory_kib(pid)["VmRSS"] / 1024
    finally:
        timer.cancel()
    out["growth %"] = (out["rss long"] / out["rss short"] - 1) * 100
    out["joins/s"] = done / (now() - started)
    return out


MODE_RUNNERS: dict[str, Callable[[Bench, Target], Awaitable[dict[str, float]]]] = {
    "distinct": mode_distinct,
    "shared": mode_shared,
    "slow": mode_slow,
    "big": mode_big,
    "https": mode_distinct,
    "rss": mode_rss,
}


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


async def check_gate(probe: Connection, service: str) -> None:
    """One refused and one admitted join before measuring anything.

    Figures from a mucauth that admits everyone (a gate switched off by configuration, say)
    would look fast and mean nothing, so that is an error, not a footnote.
    """
    denied = f"deny-check@{service}/probe"
    try:
        await asyncio.wait_for(probe.join(denied), 10)
    except JoinRefusedError:
        pass
    else:
        await probe.leave(denied)
        raise RuntimeError(f"{service} admitted a join its authorization service refused")
    allowed = f"allow-check@{service}/probe"
    try:
        await asyncio.wait_for(probe.join(allowed), 10)
    except JoinRefusedError as e:
        raise RuntimeError(f"{service} refused a join the service allowed: {e}") from None
    await asyncio.wait_for(probe.leave(allowed), 10)


async def start_mucauth(
    bench_dir: Path,
    children: Children,
    prosody: BenchProsody,
    service: str,
    url: str,
    extra: str,
    pool_size: int,
) -> Process:
    config = bench_dir / f"{service}.tap.conf"
    config.write_text(
        TAP_CONF.format(
            jid=service,
            port=prosody.component_port,
            secret=prosody.component_secret,
            url=url,
            pool_size=pool_size,
            extra=extra,
        )
    )
    process = children.spawn(
        f"mucauth ({service})", twistd_argv(config), bench_dir / f"{service}.log", bench_dir
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
        auth = children.spawn(
            "auth service",
            [
                sys.executable,
                str(ROOT / "bench" / "authservice.py"),
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
            bench_dir / "authservice.log",
            bench_dir,
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
                "",
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
                    f"ca_file = {cert}\n",
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


# -- report ----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # NaN: no samples
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the repeats (figures may come from different repeats)."""
    keys = {k for run in runs for k in run}
    out = {}
    for key in keys:
        values = [run[key] for run in runs if key in run and run[key] == run[key]]
        out[key] = statistics.median(values) if values else float("nan")
    return out


JOIN_COLUMNS = [
    ("joins/s", "joins/s", 0),
    ("p50", "p50 ms", 1),
    ("p95", "p95 ms", 1),
    ("p99", "p99 ms", 1),
    ("refused", "refused", 0),
    ("timeouts", "t/o", 0),
    ("http/join", "http/join", 2),
    ("conns/1000", "conns/1k", 1),
    ("new conns", "new conns", 0),
    ("cpu:prosody", "prosody ms/j", 2),
    ("cpu:component", "comp ms/j", 2),
    ("cpu:auth", "auth ms/j", 2),
    ("cpu:client", "client ms/j", 2),
    ("hwm:prosody", "prosody MB", 0),
    ("hwm:component", "comp MB", 0),
    ("other %", "other %", 0),
]


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain text columns: the first two left-aligned (names), the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(
    results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    med = {key: medians(runs) for key, runs in results.items()}
    join_rows = []
    for (mode, target), figures in med.items():
        if mode in ("distinct", "shared", "slow", "https"):
            row = [mode, target]
            row += [fmt(figures.get(key), digits) for key, _, digits in JOIN_COLUMNS]
            join_rows.append(row)
    print()
    print(
        f"joins: {args.clients} clients, {args.duration:g} s measured after {args.warmup:g} s"
        f" warm-up, median of {args.repeats} repeat(s); CPU is ms per join"
    )
    print(table(["mode", "target"] + [h for _, h, _ in JOIN_COLUMNS], join_rows))
    for (mode, target), figures in med.items():
        if mode == "slow":
            print(
                f"slow auth ({args.slow_auth * 1000:.0f} ms for slow* rooms) {target}: same user,"
                f" another room p50 {fmt(figures.get('other-room p50'))} ms"
                f" p99 {fmt(figures.get('other-room p99'))} ms;"
                f" the slow join p50 {fmt(figures.get('slow-room p50'))} ms;"
                f" other users p99 {fmt(figures.get('p99'))} ms"
            )
    big = [(t, f) for (m, t), f in med.items() if m == "big"]
    if big:
        print()
        print(f"big room: {args.occupants} occupants, {args.big_rounds} rounds, one run")
        keys = [
            "occupants",
            "fill s",
            "join p50",
            "join p99",
            "fan-out p50",
            "fan-out p99",
            "first p50",
            "lost",
            "hwm:prosody",
            "hwm:component",
        ]
        heads = [
            "occupants",
            "fill s",
            "join+1 p50 ms",
            "join+1 p99 ms",
            "fan-out p50 ms",
            "fan-out p99 ms",
            "first p50 ms",
            "lost",
            "prosody MB",
            "comp MB",
        ]
        print(
            table(
                ["mode", "target", *heads],
                [["big", t] + [fmt(f.get(k)) for k in keys] for t, f in big],
            )
        )
    rss = [(t, f) for (m, t), f in med.items() if m == "rss"]
    if rss:
        print()
        print(
            "memory: RSS (MB) of the MUC process after a short and a long run of join/leave"
            f" cycles (at most {args.rss_seconds:g} s in all)"
        )
        keys = ["cycles short", "rss short", "cycles long", "rss long", "growth %", "joins/s"]
        print(
            table(
                ["mode", "target", *keys],
                [["rss", t] + [fmt(f.get(k)) for k in keys] for t, f in rss],
            )
        )
    print()
    targets = target_lines(med, args)
    if targets:
        print("issue 6 targets (figures only; this run asserts nothing):")
        print("\n".join(targets))
        print()
    base = med.get(("distinct", "prosody"))
    ours = med.get(("distinct", "mucauth"))
    if base:
        print(summary_line("prosody-muc", base))
    if base and ours:
        print(
            f"mucauth / prosody-muc: joins/s x{ours['joins/s'] / base['joins/s']:.2f},"
            f" p99 x{ours['p99'] / base['p99']:.2f}"
        )
    if ours:
        print(summary_line("mucauth", ours))


def target_lines(
    med: dict[tuple[str, str], dict[str, float]], args: argparse.Namespace
) -> list[str]:
    """Where mucauth stands against each target of the issue, for the modes that ran."""
    out = []

    def line(name: str, ours: float, goal: str, met: bool) -> None:
        verdict = "met" if met else "NOT met"
        out.append(f"  {name:42} {fmt(ours):>6}  {verdict:7}  (goal {goal})")

    base, ours = med.get(("distinct", "prosody")), med.get(("distinct", "mucauth"))
    if base and ours:
        line(
            "joins/s vs Prosody MUC",
            ours["joins/s"],
            f">= {fmt(base['joins/s'])}",
            ours["joins/s"] >= base["joins/s"],
        )
        line(
            "p99 ms vs Prosody MUC",
            ours["p99"],
            f"<= {fmt(base['p99'])}",
            ours["p99"] <= base["p99"],
        )
    if ours and "conns/1000" in ours:
        line(
            "HTTP conns per 1000 joins",
            ours["conns/1000"],
            f"<= pool size {args.pool_size}",
            ours["conns/1000"] <= args.pool_size,
        )
    slow = med.get(("slow", "mucauth"))
    if slow:
        other = slow.get("other-room p99", float("nan"))
        line("same user, other room p99 ms (slow auth)", other, "< 10", other < 10)
    big_base, big_ours = med.get(("big", "prosody")), med.get(("big", "mucauth"))
    if big_base and big_ours:
        line(
            "fan-out p50 ms vs Prosody MUC",
            big_ours["fan-out p50"],
            f"<= {fmt(big_base['fan-out p50'])}",
            big_ours["fan-out p50"] <= big_base["fan-out p50"],
        )
    rss = med.get(("rss", "mucauth"))
    if rss:
        line(
            f"RSS growth % ({fmt(rss['cycles short'])} -> {fmt(rss['cycles long'])} cycles)",
            rss["growth %"],
            "<= 10 from 2000 to 20000",
            rss["growth %"] <= 10,
        )
    return out


def write_json(
    path: Path, results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    """Every repeat's figures, for comparing runs over time (NaN, no samples, becomes null)."""

    def clean(figures: dict[str, float]) -> dict[str, float | None]:
        return {k: (None if v != v else v) for k, v in sorted(figures.items())}

    data = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "options": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "runs": [
            {"mode": mode, "target": target, "repeats": [clean(f) for f in runs]}
            for (mode, target), runs in results.items()
        ],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def summary_line(name: str, figures: dict[str, float]) -> str:
    line = (
        f"{name}: {figures['joins/s']:.0f} joins/s p50 {fmt(figures['p50'])} ms"
        f" p99 {fmt(figures['p99'])} ms"
    )
    if "conns/1000" in figures:
        line += f" conns/1000 joins {fmt(figures['conns/1000'])}"
    if "cpu:component" in figures:
        line += f" component-cpu {figures['cpu:component']:.2f} ms/join"
    else:
        line += f" prosody-cpu {figures['cpu:prosody']:.2f} ms/join"
    return line


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark MUC joins: mucauth against Prosody's built-in MUC.",
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of %(default)s")
    parser.add_argument("--modes", help=f"comma list of {','.join(MODES)} (quick: {QUICK_MODES})")
    parser.add_argument("--quick", action="store_true", help="one short repeat (~30 s)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent joiners")
    parser.add_argument("--duration", type=float, help="measured seconds per run (3; quick 2)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (1; quick 0.5)")
    parser.add_argument("--repeats", type=int, help="runs per mode and target (3; quick 1)")
    parser.add_argument("--shared-rooms", type=int, default=10)
    parser.add_argument("--probes", type=int, default=5, help="users joining a slow room")
    parser.add_argument("--slow-auth", type=float, default=0.2, help="seconds for slow rooms")
    parser.add_argument("--occupants", type=int, help="big room size (200; quick 100)")
    parser.add_argument("--big-rounds", type=int, help="joins and messages (20; quick 5)")
    parser.add_argument("--rss-cycles", type=int, help="rss mode cycles (20000; quick 5000)")
    parser.add_argument("--rss-seconds", type=float, default=60.0, help="time cap of rss mode")
    parser.add_argument("--pool-size", type=int, default=10, help="mucauth's HTTP pool")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per awaited stanza")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.targets = [t for t in args.targets.split(",") if t]
    args.modes = [m for m in args.modes.split(",") if m]
    for t in args.targets:
        if t not in TARGETS:
            parser.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    for m in args.modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if "big" not in args.modes:
        args.occupants = 0
    if "slow" not in args.modes:
        args.probes = 0
    return args


async def run(args: argparse.Namespace, bench_dir: Path, children: Children) -> int:
    started = now()
    bench = await set_up(args, bench_dir, children)
    print(
        f"set up in {now() - started:.1f} s: Prosody pid {bench.prosody.pid},"
        f" targets {', '.join(bench.targets)}; load {os.cpu_count()} CPUs,"
        f" loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for mode in args.modes:
            if mode in ONCE and repeat > 0:
                continue
            order = MODE_TARGETS[mode]
            # Alternate which target goes first, so a drift in the host's load does not
            # always favour the same one.
            for name in order if repeat % 2 == 0 else order[::-1]:
                base = name.split("-")[0]
                if base not in args.targets or name not in bench.targets:
                    continue
                target = bench.targets[name]
                figures = await MODE_RUNNERS[mode](bench, target)
                results.setdefault((mode, name), []).append(figures)
                short = ", ".join(
                    f"{k} {fmt(figures[k])}"
                    for k in ("joins/s", "p99", "join p50", "fan-out p50", "growth %")
                    if k in figures
                )
                print(f"  [{repeat + 1}/{args.repeats}] {mode:8} {name:14} {short}", flush=True)
    for conn in [*bench.load, *bench.probes, *bench.occupants, bench.joiner]:
        if conn is not None:
            conn.close()
    report(results, args)
    if args.json is not None:
        write_json(args.json, results, args)
    requested_mucauth = "mucauth" in args.targets
    print(f"(total {now() - started:.0f} s)", file=sys.stderr)
    return 1 if requested_mucauth and "mucauth" not in bench.targets else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_dir = Path(tempfile.mkdtemp(prefix="mucauth-bench-"))
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # A shell starts background jobs with SIGINT ignored; Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(run(args, bench_dir, children))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if args.keep:
            print(f"logs and configs kept in {bench_dir}", file=sys.stderr)
        else:
            shutil.rmtree(bench_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
