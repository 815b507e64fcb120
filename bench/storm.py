"""Reconnect storm: N users with K bookmarked rooms each re-join at once after the XMPP server
restarts.

Run ``.venv/bin/python bench/storm.py --help``. Why this scenario: when Prosody restarts, every
client logs in again within seconds and enters all its bookmarked rooms at once, so mucauth
gets N x K joins in one burst, each needing the authorization service's yes. mucauth asks at
most ``pool_size`` checks at a time and queues the rest fairly per user; the bench shows
whether that burst is absorbed with no refusal, how long it takes, and that the service never
sees more than the pool size at once.

It starts, on 127.0.0.1 with run-time ports and all thrown away at the end (also on an error or
Ctrl-C):

* Prosody (bench/_prosody.py) with the component listener ``rooms.localhost``;
* bench/authservice.py, which allows every room after ``--service-delay`` seconds and counts
  the requests in flight;
* one ``twistd mucauth`` (no decision cache, ``reconnect_max_delay = 1``);
* the load client (examples/_loadclient.py) in this process.

Then: N users log in and join their K rooms at once (the cold login, measured too); Prosody
restarts on the same ports; once mucauth's link is back the users log in again and all re-join
at once (the storm). User i's rooms are ``g{i // group}-{k}``, so ``group`` users share each
room. Figures are for people: the exit status is 1 only when mucauth could not be started, or
when a join was refused or went unanswered, or the service saw more checks at once than the
pool size, since those break what the queue promises rather than make a number low.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _processes import (  # noqa: E402
    Children,
    Process,
    check_gate,
    cpu_seconds,
    fetch_stats,
    machine_busy_seconds,
    memory_kib,
    run_main,
    spawn_auth_service,
)
from _prosody import COMPONENT, BenchProsody  # noqa: E402
from _report import fmt, table  # noqa: E402

from examples._loadclient import (  # noqa: E402
    BurstResult,
    Connection,
    connect,
    connect_many,
    join_burst,
    now,
    percentile,
)
from examples._stack import (  # noqa: E402
    free_port,
    mucauth_command,
    wait_for_port,
    write_tap_conf,
)
from mucauth.conditions import RFC6120_CONDITIONS  # noqa: E402

PASSWORD = "bench-pw"
PROBE = "probe"  # the user who checks the gate and waits for mucauth's link
HOST = "127.0.0.1"

# The defined stanza error conditions (RFC 6120 8.3.3): a refusal is reported by its condition,
# not by the other children an error presence carries (<x/>, <text/>, ...).
CONDITIONS = frozenset(RFC6120_CONDITIONS)


def user_name(index: int) -> str:
    return f"u{index}"


def occupants_of(index: int, args: argparse.Namespace) -> list[str]:
    """User ``index``'s bookmarks as occupant JIDs: ``group`` consecutive users share a room."""
    nick = user_name(index)
    return [f"g{index // args.group}-{k}@{COMPONENT}/{nick}" for k in range(args.bookmarks)]


def condition(names: list[str]) -> str:
    return next((n for n in names if n in CONDITIONS), "?")


# mucauth logs each refused join at warn level with why ("queue_timeout", "overload", ...):
# the XMPP condition alone does not tell a full queue from a wait that ran out.
REFUSAL_LOG = re.compile(r"\bjoin error kind=(\w+)")


def log_size(process: Process) -> int:
    try:
        return process.log.stat().st_size
    except FileNotFoundError:
        return 0


def refusal_kinds(process: Process, offset: int) -> dict[str, int]:
    """Refusals by mucauth's own reason, from what its log gained since ``offset``."""
    with open(process.log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return dict(Counter(REFUSAL_LOG.findall(text)).most_common())


@dataclass
class Round:
    """The figures of one burst: every user sends all its joins at once."""

    name: str
    joins: int  # joins sent
    seconds: float = float("nan")  # first join sent -> last answer (all in, when nothing failed)
    first: float = float("nan")  # first join sent -> first self-presence
    p50_ms: float = float("nan")  # per join: sent -> its self-presence
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    joined: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by error condition
    refused_why: dict[str, int] = field(default_factory=dict)  # by mucauth's logged reason
    missing: int = 0  # no answer within --timeout
    requests: int = 0  # received by the authorization service during the round
    peak_in_flight: int = 0  # its most requests at once
    connections_used: int = 0  # distinct connections that carried them
    new_connections: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process, during the round
    # CPU the rest of the machine used meanwhile, in % of one core: other work on a shared
    # host slows every process here, and a storm is long enough to meet some.
    other_pct: float = float("nan")

    @property
    def refusals(self) -> int:
        return sum(self.refused.values())


async def timed_burst(
    conn: Connection, occupants: list[str], timeout: float
) -> tuple[float, BurstResult]:
    """join_burst writes every join before its first await, so the time taken just before it
    is when this user's joins left; the caller gathers many of these."""
    sent = now()
    return sent, await join_burst(conn, occupants, timeout)


async def burst_round(
    name: str,
    conns: list[Connection],
    args: argparse.Namespace,
    pids: dict[str, int],
    mucauth: Process,
) -> Round:
    """Every connection joins all its rooms at once; the figures of the whole burst."""
    # Reading /stats starts a new period: the peak in flight is this round's from here.
    before = (await fetch_stats(args.auth_port))["http"]
    log_offset = log_size(mucauth)
    cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    busy0, at0 = machine_busy_seconds(), now()
    results = await asyncio.gather(
        *(timed_burst(c, occupants_of(i, args), args.timeout) for i, c in enumerate(conns))
    )
    cpu1 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    busy1, at1 = machine_busy_seconds(), now()
    after = (await fetch_stats(args.auth_port))["http"]
    out = Round(name, joins=len(conns) * args.bookmarks)
    start = min(sent for sent, _ in results)
    latencies: list[float] = []
    answered: list[float] = []
    refused: Counter[str] = Counter()
    for sent, result in results:
        latencies += [t - sent for t in result.joined.values()]
        answered += result.joined.values()
        refused.update(condition(names) for names in result.refused.values())
        out.missing += len(result.missing)
    # A refusal is an answer too: "all in" ends with the last answer of either kind. Error
    # presences carry no arrival time in BurstResult, so then the end of the gather stands in
    # (the last user's last answer, or its timeout when some never came).
    last = max(answered) if answered and not refused and not out.missing else at1
    out.seconds = last - start
    if answered:
        out.first = min(answered) - start
    out.joined = len(latencies)
    out.p50_ms = percentile(latencies, 0.50) * 1000
    out.p99_ms = percentile(latencies, 0.99) * 1000
    out.max_ms = max(latencies, default=float("nan")) * 1000
    out.refused = dict(refused.most_common())
    out.refused_why = refusal_kinds(mucauth, log_offset)
    out.requests = after["requests"] - before["requests"]
    out.peak_in_flight = after["peak_in_flight"]
    out.connections_used = after["used"]
    out.new_connections = after["connections"] - before["connections"]
    out.cpu_s = {n: cpu1[n] - cpu0[n] for n in pids}
    ours = sum(out.cpu_s.values())
    out.other_pct = max(0.0, busy1 - busy0 - ours) * 100 / (at1 - at0)
    return out


async def wait_for_link(process: Process, c2s_port: int, timeout: float = 30.0) -> float:
    """Log the probe in and ask rooms.localhost for disco#info until mucauth answers ``result``
    (Prosody answers an error while the component is away); returns the seconds it took.

    The probe logs in again when Prosody is not up yet, so this also covers its start."""
    started = now()
    deadline = started + timeout
    while now() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            probe = await asyncio.wait_for(connect(HOST, c2s_port, PROBE, PASSWORD), 5)
        except (OSError, TimeoutError):  # ConnectionError is an OSError
            await asyncio.sleep(0.1)
            continue
        try:
            while now() < deadline:
                answer = await asyncio.wait_for(probe.ask_service(COMPONENT), 5)
                if answer.attrs.get("type") == "result":
                    return now() - started
                await asyncio.sleep(0.1)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)  # a stream lost meanwhile: log in again
        finally:
            probe.close()
    raise RuntimeError(f"{process.name} did not link to Prosody in {timeout:g} s")


async def run(args: argparse.Namespace, bench_dir: Path, children: Children) -> int:
    started = now()
    prosody = BenchProsody(bench_dir / "prosody")
    users = [user_name(i) for i in range(args.users)]
    prosody.add_accounts(dict.fromkeys([*users, PROBE], PASSWORD))
    children.prosody = prosody
    prosody.start()
    args.auth_port = free_port()
    auth = spawn_auth_service(
        children, bench_dir, ["--port", str(args.auth_port), "--delay", str(args.service_delay)]
    )
    wait_for_port(args.auth_port)
    # reconnect_max_delay must be short: with the default 30 s the bench would mostly measure
    # mucauth's backoff. No decision cache, so every join asks the service.
    config = write_tap_conf(
        bench_dir / "tap.conf",
        jid=COMPONENT,
        host="127.0.0.1",
        port=prosody.component_port,
        secret=prosody.component_secret,
        url=f"http://127.0.0.1:{args.auth_port}/muc/join",
        component_options={"reconnect_max_delay": "1"},
        http_options={"timeout": "5", "pool_size": str(args.pool_size), "cache_ttl": "0"},
        sections=(
            {"muc": {"queue_timeout": f"{args.queue_timeout:g}"}}
            if args.queue_timeout is not None
            else None
        ),
        log_level="warn",
        writer="bench/storm.py",
    )
    mucauth = children.spawn(
        "mucauth", mucauth_command(config), bench_dir / "mucauth.log", bench_dir
    )
    await wait_for_link(mucauth, prosody.c2s_port)
    # Figures of a mucauth that admits everyone would look fine and mean nothing.
    probe = await connect(HOST, prosody.c2s_port, PROBE, PASSWORD)
    try:
        await check_gate(probe, COMPONENT)
    finally:
        probe.close()
    print(
        f"set up in {now() - started:.1f} s: {args.users} users x {args.bookmarks} bookmarks,"
        f" {args.group} users per room ({-(-args.users // args.group) * args.bookmarks} rooms),"
        f" pool_size {args.pool_size}, service delay {args.service_delay * 1000:g} ms;"
        f" {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def pids() -> dict[str, int]:
        # Prosody's pid changes with the restart: read it at each round.
        return {
            "mucauth": mucauth.pid,
            "prosody": prosody.pid,
            "auth": auth.pid,
            "client": os.getpid(),
        }

    phases: dict[str, float] = {}
    t = now()
    conns = await connect_many(HOST, prosody.c2s_port, users, PASSWORD)
    phases["login s"] = now() - t
    cold = await burst_round("cold login", conns, args, pids(), mucauth)
    print(f"  cold login: {short(cold)}", flush=True)

    # The restart: every client and mucauth lose their streams; Prosody comes back on the
    # same ports with the same accounts, and nothing remembers a room.
    t = now()
    prosody.stop()
    phases["prosody stop s"] = now() - t
    for conn in conns:
        conn.close()
    t = now()
    prosody.start()
    phases["prosody start s"] = now() - t
    phases["mucauth link s"] = await wait_for_link(mucauth, prosody.c2s_port)
    t = now()
    conns = await connect_many(HOST, prosody.c2s_port, users, PASSWORD)
    phases["relogin s"] = now() - t
    storm = await burst_round("storm", conns, args, pids(), mucauth)
    print(f"  storm:      {short(storm)}", flush=True)
    hwm = memory_kib(mucauth.pid)["VmHWM"] / 1024
    for conn in conns:
        conn.close()

    rounds = [cold, storm]
    bad = report(rounds, phases, hwm, args, mucauth)
    if args.json is not None:
        write_json(args.json, rounds, phases, hwm, args)
    print(f"(total {now() - started:.0f} s)", file=sys.stderr)
    return 1 if bad else 0


# -- report ----------------------------------------------------------------------------------


def short(r: Round) -> str:
    return (
        f"{r.joined}/{r.joins} in after {r.seconds:.2f} s, refused {r.refusals},"
        f" missing {r.missing}, peak in flight {r.peak_in_flight}"
    )


# (figure, column heading, decimals below 100)
COLUMNS = [
    ("joins/s", "joins/s", 0),
    ("all in s", "all in s", 2),
    ("first s", "first s", 2),
    ("p50 ms", "p50 ms", 0),
    ("p99 ms", "p99 ms", 0),
    ("max ms", "max ms", 0),
    ("refused", "refused", 0),
    ("missing", "missing", 0),
    ("http req", "http req", 0),
    ("peak in flight", "peak in flight", 0),
    ("conns", "conns", 0),
    ("mucauth cpu s", "comp cpu s", 2),
    ("mucauth ms/j", "comp ms/j", 2),
    ("prosody ms/j", "prosody ms/j", 2),
    ("auth ms/j", "auth ms/j", 2),
    ("client ms/j", "client ms/j", 2),
    ("other %", "other %", 0),
]


def figures(r: Round) -> dict[str, float]:
    """One row of the table: CPU per join counts every join sent, answered or not."""
    out = {
        "joins/s": r.joined / r.seconds,
        "all in s": r.seconds,
        "first s": r.first,
        "p50 ms": r.p50_ms,
        "p99 ms": r.p99_ms,
        "max ms": r.max_ms,
        "refused": r.refusals,
        "missing": r.missing,
        "http req": r.requests,
        "peak in flight": r.peak_in_flight,
        "conns": r.connections_used,
        "mucauth cpu s": r.cpu_s["mucauth"],
    }
    for name in ("mucauth", "prosody", "auth", "client"):
        out[f"{name} ms/j"] = r.cpu_s[name] * 1000 / max(r.joins, 1)
    out["other %"] = r.other_pct
    return out


def queue_timeout(args: argparse.Namespace) -> str:
    if args.queue_timeout is None:
        return "30 s (mucauth's default)"
    return f"{args.queue_timeout:g} s"


def report(
    rounds: list[Round],
    phases: dict[str, float],
    hwm: float,
    args: argparse.Namespace,
    mucauth: Process,
) -> bool:
    """Print the table and the verdicts; True when something broke the queue's promise."""
    rows = []
    for r in rounds:
        f = figures(r)
        rows.append(
            [r.name, f"{args.users} x {args.bookmarks}"] + [fmt(f[k], d) for k, _, d in COLUMNS]
        )
    print()
    print(
        f"storm: {args.users} users x {args.bookmarks} bookmarks, {args.group} users per room,"
        f" pool_size {args.pool_size}, service delay {args.service_delay * 1000:g} ms,"
        f" queue_timeout {queue_timeout(args)}; 'all in' is first join sent to last"
        " self-presence; CPU is ms per join"
    )
    print(table(["round", "load"] + [h for _, h, _ in COLUMNS], rows))
    print(
        f"restart: Prosody stopped in {phases['prosody stop s']:.2f} s and started in"
        f" {phases['prosody start s']:.2f} s; mucauth's link answered"
        f" {phases['mucauth link s']:.2f} s later; {args.users} users logged in again in"
        f" {phases['relogin s']:.2f} s (first login {phases['login s']:.2f} s);"
        f" mucauth peak RSS {hwm:.0f} MB"
    )
    bad = False
    for r in rounds:
        if r.refusals or r.missing:
            bad = True
            detail = ", ".join(f"{c} {n}" for c, n in r.refused.items()) or "none"
            why = ", ".join(f"{c} {n}" for c, n in r.refused_why.items()) or "nothing"
            print(
                f"!! {r.name}: {r.refusals} of {r.joins} joins REFUSED ({detail}; mucauth logged"
                f" {why}), {r.missing} UNANSWERED within {args.timeout:g} s (--keep keeps its log)",
                file=sys.stderr,
            )
        if r.peak_in_flight > args.pool_size:
            bad = True
            print(
                f"!! {r.name}: the service saw {r.peak_in_flight} requests at once,"
                f" more than pool_size {args.pool_size}",
                file=sys.stderr,
            )
    storm = rounds[-1]
    verdict = "ok" if not (storm.refusals or storm.missing) else "NOT ok"
    sys.stderr.flush()
    print(
        f"storm: {storm.joined} of {storm.joins} in after {storm.seconds:.2f} s,"
        f" refused {storm.refusals}, missing {storm.missing} ({verdict});"
        f" peak in flight {storm.peak_in_flight} (pool_size {args.pool_size});"
        f" {storm.requests} requests; mucauth {storm.cpu_s['mucauth']:.2f} CPU s"
        f" = {figures(storm)['mucauth ms/j']:.2f} ms per join",
        flush=True,
    )
    return bad


def write_json(
    path: Path,
    rounds: list[Round],
    phases: dict[str, float],
    hwm: float,
    args: argparse.Namespace,
) -> None:
    """The figures of both rounds, for comparing runs over time (NaN becomes null)."""

    def clean(value: object) -> object:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    data = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "options": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "phases": phases,
        "mucauth_peak_rss_mb": hwm,
        "rounds": [
            clean({**asdict(r), "refusals": r.refusals, "figures": figures(r)}) for r in rounds
        ],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reconnect storm: N users x K bookmarks re-join at once after Prosody"
        " restarts.",
    )
    parser.add_argument("--users", type=int, default=500, help="N (default %(default)s)")
    parser.add_argument("--bookmarks", type=int, default=20, help="K rooms per user (%(default)s)")
    parser.add_argument("--group", type=int, default=10, help="users sharing each room")
    parser.add_argument("--pool-size", type=int, default=10, help="mucauth's HTTP pool")
    parser.add_argument(
        "--service-delay",
        type=float,
        default=0.005,
        help="seconds the auth service takes per answer (%(default)s)",
    )
    parser.add_argument(
        "--queue-timeout",
        type=float,
        help="mucauth's [muc] queue_timeout (default: not set, mucauth's own 30 s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds each user waits for its answers"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("users", "bookmarks", "group", "pool_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    # RuntimeError: a process that did not start or link (ProcessError included).
    return run_main(run, parse_args(argv), "mucauth-storm-", errors=(RuntimeError,))


if __name__ == "__main__":
    sys.exit(main())
