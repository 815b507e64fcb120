"""What ``joins.py`` prints at the end, and writes with ``--json``.

:func:`report` prints the tables (join/leave modes, ``big``, ``rss``: the median of each
figure over the repeats), where mucauth stands against each target of the issue
(:func:`target_lines`) and the summary lines; :func:`write_json` writes every repeat's
figures. :func:`fmt` and :func:`table` are the plain-text formatting ``storm.py`` uses too.
bench/README.md ("The figures") says what every column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path


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
        if mode == "starve":
            print(
                f"starve ({args.slow_auth * 1000:.0f} ms for a fifth of the users) {target}:"
                f" ordinary users alone p50 {fmt(figures.get('alone p50'))}"
                f" p99 {fmt(figures.get('alone p99'))} ms"
                f" {fmt(figures.get('alone joins/s'))} joins/s;"
                f" with slow p50 {fmt(figures.get('with slow p50'))}"
                f" p99 {fmt(figures.get('with slow p99'))} ms"
                f" {fmt(figures.get('with slow joins/s'))} joins/s"
                f" (p99 x{fmt(figures.get('p99 ratio'))},"
                f" joins/s x{fmt(figures.get('joins/s ratio'))})"
            )
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
