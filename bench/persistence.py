"""What the room store costs end to end: no store, SQLite and PostgreSQL, in one run.

Run ``.venv/bin/python bench/persistence.py`` (``--quick`` for a short one, ``--help``). It
starts, all on 127.0.0.1 with run-time ports and all thrown away at the end:

* a PostgreSQL cluster for this run only (as bench/store.py starts one; ``--url`` takes an
  existing empty database instead);
* Prosody (bench/_prosody.py) with three component listeners;
* bench/authservice.py, the keep-alive authorization service of bench/joins.py;
* three ``twistd mucauth``, the same configuration but for ``[storage]``:
  ``rooms-none.localhost`` with ``enabled = no``, ``rooms-sqlite.localhost`` with a SQLite file
  (the default store), ``rooms-pg.localhost`` with the PostgreSQL database (so every join to a
  room not in memory reads the store first, as for processes that share one);
* the load client (examples/_loadclient.py) in this process.

Then, for each store, targets back to back (their order swapped every repeat):

1. ``distinct`` joins (bench/_modes.py, as in bench/joins.py): 50 clients each join a new
   temporary room, wait for the self-presence, leave, again; joins/s, latency and CPU per
   join+leave of every process, the median of ``--repeats``;
2. fan-out in a persistent room, once: a user creates a room and makes it persistent with the
   owner form (``muc#roomconfig_persistentroom``) and leaves; ``--occupants`` users fill it (the
   first join reads it back from the store), then one of them sends ``--messages`` groupchat
   messages one at a time, each after every occupant got the previous one. Each message is
   also written behind to the store (history 20). With a store, the fan-out runs twice: the
   room as above, then a room that logs (``muc#roomconfig_enablelogging``): the archive of
   XEP-0313, every message kept, each with the room's stanza id.

CPU is that of each process from /proc, per join+leave or per message; for the PostgreSQL
target the throw-away server's processes (its postmaster and every child: the backends of
mucauth's pool, the writers) have a column of their own. Figures for people, never
assertions: the host is shared, see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _driver import PASSWORD, Bench, Snapshot, Target, start_mucauth  # noqa: E402
from _modes import mode_distinct  # noqa: E402
from _processes import Children, memory_kib, run_main, spawn_auth_service  # noqa: E402
from _prosody import BenchProsody  # noqa: E402
from _report import fmt, medians, table  # noqa: E402

from examples._loadclient import (  # noqa: E402
    Connection,
    JoinRefusedError,
    Stanza,
    StanzaTimeoutError,
    Watchdog,
    connect,
    connect_many,
    now,
    percentile,
)
from examples._stack import free_port, wait_for_port  # noqa: E402

STORES = ("none", "sqlite", "postgresql")
DOMAINS = {
    "none": "rooms-none.localhost",
    "sqlite": "rooms-sqlite.localhost",
    "postgresql": "rooms-pg.localhost",
}
FULL = {"duration": 3.0, "warmup": 1.0, "repeats": 3, "occupants": 100, "messages": 200}
QUICK = {"duration": 2.0, "warmup": 0.5, "repeats": 1, "occupants": 50, "messages": 50}
OWNER = "http://jabber.org/protocol/muc#owner"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
FILL_BATCH = 20  # joins in flight while the room fills, as bench/joins.py's big mode
SETTLE = 0.5  # seconds after the last message before the CPU is read: the writes behind
ARCHIVE = "archive"  # the label of a fan-out in a room that logs


@dataclass
class StoreBench(Bench):
    """bench/_driver.py's Bench, whose PostgreSQL target also counts the server's processes."""

    postgres_data: Path | None = None

    def pids(self, target: Target) -> dict[str, int]:
        pids = super().pids(target)
        if target.name == "postgresql" and self.postgres_data is not None:
            pids.update({f"pg{pid}": pid for pid in postgres_pids(self.postgres_data)})
        return pids


def postgres_pids(data: Path) -> list[int]:
    """The throw-away cluster's postmaster and its children (backends, writers), from /proc."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    found = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if parent == postmaster:
                found.append(int(entry))
    return found


def postgres_cpu(figures: dict[str, float]) -> dict[str, float]:
    """The pg<pid> CPU figures summed into cpu:postgres."""
    parts = [v for k, v in figures.items() if k.startswith("cpu:pg")]
    if parts:
        figures = {k: v for k, v in figures.items() if not k.startswith("cpu:pg")}
        figures["cpu:postgres"] = sum(parts)
    return figures


def storage_section(store: str, bench_dir: Path, url: str) -> dict[str, str]:
    if store == "none":
        return {"enabled": "no"}
    if store == "sqlite":
        return {"path": str(bench_dir / "rooms.sqlite")}
    return {"url": url}


async def set_up(
    args: argparse.Namespace, bench_dir: Path, children: Children
) -> tuple[Bench, dict[str, Target]]:
    domains = tuple(DOMAINS[s] for s in args.stores)
    prosody = BenchProsody(bench_dir / "prosody", components=domains)
    users = [f"load{i}" for i in range(args.clients)] + [f"occ{i}" for i in range(args.occupants)]
    prosody.add_accounts(dict.fromkeys([*users, "joiner", "probe"], PASSWORD))
    children.prosody = prosody
    prosody.start()
    auth_port = free_port()
    auth = spawn_auth_service(children, bench_dir, ["--port", str(auth_port)])
    wait_for_port(auth_port)
    targets = {}
    for store in args.stores:
        process = await start_mucauth(
            bench_dir,
            children,
            prosody,
            DOMAINS[store],
            f"http://127.0.0.1:{auth_port}/muc/join",
            {},
            args.pool_size,
            sections={"storage": storage_section(store, bench_dir, args.url)},
            writer="bench/persistence.py",
        )
        targets[store] = Target(store, DOMAINS[store], process, "http")
    bench = StoreBench(args, children, prosody, auth, auth_port, targets)
    bench.postgres_data = args.postgres_data
    host, port = "127.0.0.1", prosody.c2s_port
    bench.load = await connect_many(host, port, users[: args.clients], PASSWORD)
    bench.occupants = await connect_many(host, port, users[args.clients :], PASSWORD)
    bench.joiner = await connect(host, port, "joiner", PASSWORD)
    return bench, targets


# -- fan-out in a persistent room ------------------------------------------------------------


async def make_persistent(
    owner: Connection, room: str, timeout: float, logging: bool = False
) -> None:
    """Create ``room``, submit the owner form with persistentroom = 1 (and enablelogging =
    1 for the archive), leave."""
    occupant = f"{room}/{owner.user}"
    created = await asyncio.wait_for(owner.join(occupant), timeout)
    if "201" not in created.codes:
        raise RuntimeError(f"{room} existed already")
    iq_id = owner.next_id()
    answer = owner.expect(lambda s: s.name == "iq" and s.attrs.get("id") == iq_id)
    owner.send(
        f"<iq type='set' to='{room}' id='{iq_id}'><query xmlns='{OWNER}'>"
        "<x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE'><value>{ROOMCONFIG}</value></field>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        f"<field var='muc#roomconfig_enablelogging'><value>{int(logging)}</value></field>"
        "</x></query></iq>"
    )
    reply = await asyncio.wait_for(answer, timeout)
    if reply.attrs.get("type") != "result":
        raise RuntimeError(f"{room}: the owner form was refused: {reply.attrs}")
    await asyncio.wait_for(owner.leave(occupant), timeout)


def stored(store: str, room: str, bench_dir: Path, url: str) -> tuple[int, int]:
    """(rooms, messages) the store holds for ``room``: that it was kept and written to."""
    rooms_sql = "SELECT COUNT(*) FROM rooms WHERE jid = {p}"
    messages_sql = "SELECT COUNT(*) FROM messages WHERE room = {p}"
    if store == "sqlite":
        with sqlite3.connect(bench_dir / "rooms.sqlite") as db:
            counts = [
                db.execute(q.format(p="?"), (room,)).fetchone()[0]
                for q in (rooms_sql, messages_sql)
            ]
        return counts[0], counts[1]
    if store == "postgresql":
        import psycopg

        with psycopg.connect(url) as db:
            found = [
                db.execute(q.format(p="%s"), (room,)).fetchone() for q in (rooms_sql, messages_sql)
            ]
        return int(found[0][0]), int(found[1][0])  # type: ignore[index]
    return 0, 0


async def fan_out(
    bench: Bench, target: Target, bench_dir: Path, archive: bool = False
) -> dict[str, float]:
    args = bench.args
    assert bench.joiner is not None and target.component is not None
    room = f"fan{int(time.time() * 1000) % 100000}@{target.service}"
    with Watchdog([*bench.occupants, bench.joiner], args.timeout):
        await make_persistent(bench.joiner, room, args.timeout, logging=archive)
        started = now()
        joined: list[Connection] = []
        answers: list[Stanza | BaseException] = []
        for i in range(0, len(bench.occupants), FILL_BATCH):
            chunk = bench.occupants[i : i + FILL_BATCH]
            got = await asyncio.gather(
                *(c.join(f"{room}/{c.user}") for c in chunk), return_exceptions=True
            )
            answers += got
            joined += [c for c, a in zip(chunk, got, strict=True) if isinstance(a, Stanza)]
        fill = now() - started
        if any(isinstance(a, Stanza) and "201" in a.codes for a in answers):
            raise RuntimeError(f"{room} was created again: it was not kept as persistent")
        try:
            figures = await messages(bench, target, room, joined)
        finally:
            for c in joined:
                try:
                    await asyncio.wait_for(c.leave(f"{room}/{c.user}"), args.timeout)
                except (StanzaTimeoutError, JoinRefusedError, TimeoutError):
                    pass
    figures["occupants"] = len(joined)
    figures["refused"] = len(answers) - len(joined)
    figures["fill s"] = fill
    figures["stored rooms"], figures["stored msgs"] = stored(target.name, room, bench_dir, args.url)
    figures["hwm:component"] = memory_kib(target.component.pid)["VmHWM"] / 1024
    return figures


async def messages(
    bench: Bench, target: Target, room: str, listeners: list[Connection]
) -> dict[str, float]:
    """``--messages`` groupchat messages one at a time; each waits for the last copy of the
    previous one (as bench/joins.py's big mode, without its pause between rounds)."""
    args = bench.args
    if not listeners:
        return {"lost": args.messages}
    sender = listeners[0]
    pids = bench.pids(target)
    last: list[float] = []
    first: list[float] = []
    lost = 0
    before = Snapshot(pids)
    for n in range(args.messages):
        msg_id = f"fan{n}"
        arrivals: list[float] = []
        done = asyncio.get_running_loop().create_future()

        def on_other(
            s: Stanza,
            msg_id: str = msg_id,
            arrivals: list[float] = arrivals,
            done: asyncio.Future[None] = done,
        ) -> None:
            if s.name == "message" and s.attrs.get("id") == msg_id:
                arrivals.append(s.received)
                if len(arrivals) == len(listeners) and not done.done():
                    done.set_result(None)

        for c in listeners:
            c.on_other = on_other
        sent = now()
        sender.send(
            f"<message to='{room}' type='groupchat' id='{msg_id}'><body>fan-out {n}</body>"
            "</message>"
        )
        try:
            await asyncio.wait_for(done, args.timeout)
        except TimeoutError:
            lost += 1
        if arrivals:
            first.append(min(arrivals) - sent)
            if len(arrivals) == len(listeners):
                last.append(max(arrivals) - sent)
    elapsed = now() - before.at
    await asyncio.sleep(SETTLE)
    after = Snapshot(pids)
    for c in listeners:
        c.on_other = None
    figures: dict[str, float] = {
        "msgs/s": args.messages / elapsed,
        "fan-out p50": percentile(last, 0.5) * 1000,
        "fan-out p99": percentile(last, 0.99) * 1000,
        "first p50": percentile(first, 0.5) * 1000,
        "lost": lost,
    }
    ours = 0.0
    for name in pids:
        used = after.cpu[name] - before.cpu[name]
        ours += used
        figures[f"cpu:{name}"] = used * 1000 / args.messages
    seconds = after.at - before.at
    figures["other %"] = max(0.0, after.machine - before.machine - ours) * 100 / seconds
    return figures


# -- report ----------------------------------------------------------------------------------

JOIN_COLUMNS = [
    ("joins/s", "joins/s", 0),
    ("p50", "p50 ms", 1),
    ("p99", "p99 ms", 1),
    ("refused", "refused", 0),
    ("timeouts", "t/o", 0),
    ("cpu:component", "comp ms/j", 3),
    ("vs none", "vs none", 0),
    ("cpu:postgres", "postgres ms/j", 3),
    ("cpu:prosody", "prosody ms/j", 2),
    ("cpu:auth", "auth ms/j", 2),
    ("cpu:client", "client ms/j", 2),
    ("hwm:component", "comp MB", 0),
    ("other %", "other %", 0),
]
FAN_COLUMNS = [
    ("occupants", "occupants", 0),
    ("fill s", "fill s", 2),
    ("msgs/s", "msgs/s", 0),
    ("fan-out p50", "fan-out p50 ms", 1),
    ("fan-out p99", "fan-out p99 ms", 1),
    ("first p50", "first p50 ms", 1),
    ("lost", "lost", 0),
    ("cpu:component", "comp ms/msg", 2),
    ("vs none", "vs none", 0),
    ("vs off", "vs off", 0),
    ("cpu:postgres", "postgres ms/msg", 2),
    ("cpu:prosody", "prosody ms/msg", 2),
    ("stored rooms", "stored rooms", 0),
    ("stored msgs", "stored msgs", 0),
    ("other %", "other %", 0),
]


def percent(value: float) -> str:
    return f"{value:+.0f} %"


def rows(
    figures: dict[str, dict[str, float]], columns: list[tuple[str, str, int]]
) -> list[list[str]]:
    base = figures.get("none", {}).get("cpu:component")
    out = []
    for store, f in figures.items():
        row = [store, DOMAINS[store.split()[0]]]
        for key, _, digits in columns:
            if key == "vs none":
                cpu = f.get("cpu:component")
                row.append("-" if base is None or cpu is None else percent((cpu / base - 1) * 100))
            elif key == "vs off":
                off = figures.get(store.split()[0], {}).get("cpu:component")
                cpu = f.get("cpu:component")
                on = store.endswith(ARCHIVE)
                row.append(percent((cpu / off - 1) * 100) if on and off and cpu else "-")
            elif key.startswith("stored") and store == "none":
                row.append("-")
            else:
                row.append(fmt(f.get(key), digits))
        out.append(row)
    return out


def report(
    joins: dict[str, list[dict[str, float]]],
    fans: dict[str, dict[str, float]],
    args: argparse.Namespace,
) -> None:
    print()
    print(
        f"distinct joins: {args.clients} clients, temporary rooms, {args.duration:g} s measured"
        f" after {args.warmup:g} s warm-up, median of {args.repeats} repeat(s); CPU is ms per"
        " join+leave"
    )
    med = {store: medians(runs) for store, runs in joins.items()}
    heads = [h for _, h, _ in JOIN_COLUMNS]
    print(table(["store", "service", *heads], rows(med, JOIN_COLUMNS)))
    if fans:
        print()
        print(
            f"fan-out in a persistent room: {args.occupants} occupants, {args.messages}"
            " messages one at a time, one run; CPU is ms per message (every copy included);"
            f" '{ARCHIVE}': the room logs (XEP-0313 archive, every message kept, a stanza id"
            " each), 'vs off' against the same store without"
        )
        heads = [h for _, h, _ in FAN_COLUMNS]
        print(table(["store", "service", *heads], rows(fans, FAN_COLUMNS)))


# -- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, bench_dir: Path, children: Children) -> int:
    started = now()
    bench, targets = await set_up(args, bench_dir, children)
    print(
        f"set up in {now() - started:.1f} s: Prosody pid {bench.prosody.pid}, mucauth on"
        f" {', '.join(t.service for t in targets.values())}; {os.cpu_count()} CPUs,"
        f" loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    joins: dict[str, list[dict[str, float]]] = {s: [] for s in targets}
    for repeat in range(args.repeats):
        order = list(targets) if repeat % 2 == 0 else list(targets)[::-1]
        for store in order:
            figures = postgres_cpu(await mode_distinct(bench, targets[store]))
            joins[store].append(figures)
            print(
                f"  [{repeat + 1}/{args.repeats}] distinct {store:10} joins/s"
                f" {fmt(figures['joins/s'])}, p99 {fmt(figures['p99'])} ms,"
                f" comp {fmt(figures['cpu:component'], 3)} ms/j,"
                f" other {fmt(figures['other %'])} %",
                flush=True,
            )
    fans: dict[str, dict[str, float]] = {}
    if args.messages > 0 and args.occupants > 0:
        for store, target in targets.items():
            for archive in (False, True) if store != "none" else (False,):
                label = f"{store} {ARCHIVE}" if archive else store
                fans[label] = postgres_cpu(await fan_out(bench, target, bench_dir, archive))
                print(
                    f"  fan-out {label:18} msgs/s {fmt(fans[label]['msgs/s'])},"
                    f" fan-out p50 {fmt(fans[label]['fan-out p50'])} ms,"
                    f" comp {fmt(fans[label]['cpu:component'], 2)} ms/msg",
                    flush=True,
                )
    bench.close()
    report(joins, fans, args)
    print(f"(total {now() - started:.0f} s, loadavg {os.getloadavg()[0]:.2f})", file=sys.stderr)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short repeat (~30 s)")
    parser.add_argument("--stores", default=",".join(STORES), help="comma list of %(default)s")
    parser.add_argument("--clients", type=int, default=50, help="distinct-mode joiners (50)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (3; quick 2)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (1; quick 0.5)")
    parser.add_argument("--repeats", type=int, help="distinct runs per store (3; quick 1)")
    parser.add_argument("--occupants", type=int, help="fan-out room size (100; quick 50)")
    parser.add_argument("--messages", type=int, help="fan-out messages (200; quick 50)")
    parser.add_argument("--pool-size", type=int, default=10, help="mucauth's HTTP pool")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per awaited stanza")
    parser.add_argument("--url", help="PostgreSQL: an existing empty database (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.stores = [s for s in args.stores.split(",") if s]
    for s in args.stores:
        if s not in STORES:
            parser.error(f"unknown store {s!r}; choose from {', '.join(STORES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.postgres_data = None
    with ExitStack() as cleanup:
        if "postgresql" in args.stores and not args.url:
            from store import throwaway_postgres

            # Its own temp dir: the postgres user cannot enter run_main's (mode 0700).
            pg_directory = tempfile.mkdtemp(prefix="mucauth-bench-pg-")
            cleanup.callback(shutil.rmtree, pg_directory, ignore_errors=True)
            args.url = cleanup.enter_context(throwaway_postgres(Path(pg_directory)))
            args.postgres_data = Path(pg_directory) / "data"
        return run_main(run, args, "mucauth-bench-persistence-", errors=(RuntimeError,))
    return 1  # not reached (ExitStack does not swallow exceptions)


if __name__ == "__main__":
    sys.exit(main())
