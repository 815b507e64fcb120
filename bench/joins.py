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

This file is the entry point: the options and the run sequence. The stack and the measured
window are in bench/_driver.py, the modes in bench/_modes.py, the tables in bench/_report.py;
bench/_processes.py (children, /proc, the gate check) is shared with storm.py and ejabberd.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _driver import set_up  # noqa: E402
from _modes import MODE_RUNNERS, MODE_TARGETS, MODES, ONCE  # noqa: E402
from _processes import Children, run_main  # noqa: E402
from _report import fmt, report, write_json  # noqa: E402

from examples._loadclient import now  # noqa: E402

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
TARGETS = ("prosody", "mucauth")


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
    bench.close()
    report(results, args)
    if args.json is not None:
        write_json(args.json, results, args)
    requested_mucauth = "mucauth" in args.targets
    print(f"(total {now() - started:.0f} s)", file=sys.stderr)
    return 1 if requested_mucauth and "mucauth" not in bench.targets else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, parse_args(argv), "mucauth-bench-")


if __name__ == "__main__":
    sys.exit(main())
