"""The modes of ``joins.py``: what the clients do, one coroutine per mode.

Each ``mode_*`` takes the running :class:`~_driver.Bench` and one :class:`~_driver.Target` and
returns that run's figures by name. :data:`MODE_RUNNERS` maps a mode's name to its coroutine,
:data:`MODE_TARGETS` to the targets it applies to; :data:`ONCE` are measured once, not per
repeat. bench/README.md describes each mode ("Modes") and every figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from _driver import Bench, Target, measured_loops, peak_memory
from _processes import memory_kib

from examples._loadclient import (
    LoopResult,
    Watchdog,
    Window,
    big_room,
    join_leave_loop,
    now,
    percentile,
    slow_probe_loop,
)


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


async def mode_starve(bench: Bench, target: Target) -> dict[str, float]:
    """Ordinary users alone, then with a fifth of the users joining slow rooms, in one run.

    The first four fifths of the load users join ordinary rooms throughout; in the second
    stretch the last fifth joins ``slow…`` rooms (answered after ``--slow-auth`` seconds).
    The ordinary users' p50/p99 and joins/s of both stretches say whether slow checks hold
    everybody's slots.
    """
    users = bench.load
    slow_count = max(1, len(users) // 5)
    ordinary_users = users[: len(users) - slow_count]
    figures: dict[str, float] = {}
    for label, with_slow in (("alone", False), ("with slow", True)):
        ordinary, slow = LoopResult(), LoopResult()

        def loops(
            window: Window,
            with_slow: bool = with_slow,
            ordinary: LoopResult = ordinary,
            slow: LoopResult = slow,
        ) -> list[Awaitable[None]]:
            out: list[Awaitable[None]] = [
                join_leave_loop(c, distinct_rooms(target.service, i), f"n{i}", window, ordinary)
                for i, c in enumerate(ordinary_users)
            ]
            if with_slow:
                first = len(ordinary_users)
                out += [
                    join_leave_loop(
                        c,
                        room_series(f"slow{first + i}x", target.service, 16),
                        f"n{first + i}",
                        window,
                        slow,
                    )
                    for i, c in enumerate(users[first:])
                ]
            return out

        run = await measured_loops(bench, target, loops, [ordinary, slow])
        share = ordinary.joins / max(1, ordinary.joins + slow.joins)
        figures[f"{label} p50"] = run["p50"]
        figures[f"{label} p99"] = run["p99"]
        figures[f"{label} joins/s"] = run["joins/s"] * share
        figures[f"{label} refused"] = run["refused"] + run["timeouts"] + run["errors"]
    figures["joins/s"] = figures["with slow joins/s"]
    figures["p99"] = figures["with slow p99"]
    figures["p99 ratio"] = figures["with slow p99"] / max(figures["alone p99"], 1e-9)
    figures["joins/s ratio"] = figures["with slow joins/s"] / max(figures["alone joins/s"], 1e-9)
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
    figures.update(peak_memory(bench, target))
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
    "starve": mode_starve,
    "big": mode_big,
    "https": mode_distinct,
    "rss": mode_rss,
}
MODES = tuple(MODE_RUNNERS)
# Which target serves each mode: the slow and HTTPS modes only make sense with a gate.
MODE_TARGETS = {
    "distinct": ("prosody", "mucauth"),
    "shared": ("prosody", "mucauth"),
    "slow": ("mucauth",),
    "starve": ("mucauth",),
    "big": ("prosody", "mucauth"),
    "https": ("mucauth-https",),
    "rss": ("mucauth",),
}
# Modes measured once, not per repeat: long, and their figures are not rates.
ONCE = ("big", "rss")
