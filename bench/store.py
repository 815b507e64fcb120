"""Room store benchmark: what the write-behind store costs, on SQLite and on PostgreSQL.

Run ``.venv/bin/python bench/store.py`` (``--help`` for the sizes). For each database it opens a
fresh store and prints:

* writes/s: N groupchat messages appended over R rooms (history kept at 20) as fast as the
  caller can make them, until the last is in the database;
* the reactor thread's CPU per write, in µs: first for queueing alone (what a join or a message
  pays: the caller's part), then in all (queueing plus handing batches to the database threads
  and their results back); the database threads' own work is not in it;
* the same in all, paced: ``--rate`` messages a second for 2 s, so batches stay small as in
  normal use (their count is shown), and each batch's hand-over is shared by fewer writes;
* load_room latency: one room with its 20 messages, loaded one after the other (median, p95).

SQLite is a file in a temp dir. PostgreSQL is ``--url`` if given, otherwise a throw-away
cluster (Debian's postgresql package, run as its ``postgres`` user, on 127.0.0.1 and a free
port, fsync off as in the tests). Figures for people: nothing is asserted; the host is shared.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import reactor as global_reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred, inlineCallbacks  # noqa: E402
from twisted.internet.task import deferLater, react  # noqa: E402

from mucauth.store import HistoryRecord, SQLRoomStore  # noqa: E402
from mucauth.store.dialects import Database, PostgresDatabase, SQLiteDatabase  # noqa: E402

HISTORY = 20


def messages(count: int, rooms: int) -> list[tuple[str, HistoryRecord]]:
    body = "x" * 120
    return [
        (
            f"room{n % rooms}@rooms.localhost",
            HistoryRecord(
                stanza_id=f"id-{n}",
                timestamp=1_700_000_000.0 + n / 1000,
                nick=f"user{n % 50}",
                sender=f"user{n % 50}@localhost",
                occupant_id=f"occ{n % 50}",
                xml=f"<message type='groupchat' id='m{n}'><body>{body}</body></message>",
            ),
        )
        for n in range(count)
    ]


@inlineCallbacks
def measure(database: Database, args: argparse.Namespace) -> Generator[Any, Any, dict[str, Any]]:
    store = SQLRoomStore(database, global_reactor, max_pending_writes=args.writes * 2)
    yield store.open()
    try:
        for r in range(args.rooms):
            store.save_room(
                f"room{r}@rooms.localhost",
                {"roomname": f"Room {r}", "persistentroom": True},
                name=f"Room {r}",
                public=True,
                subject="",
                subject_nick="",
            )
        yield store.flush()
        work = messages(args.writes, args.rooms)
        batches = store.batches_written
        started, cpu = time.perf_counter(), time.thread_time()
        for room, message in work:
            store.append_message(room, message, HISTORY)
        queued_cpu = time.thread_time() - cpu
        yield store.flush()
        elapsed, total_cpu = time.perf_counter() - started, time.thread_time() - cpu
        batches = store.batches_written - batches
        paced = yield paced_writes(store, args)
        latencies = []
        for n in range(args.loads):
            t = time.perf_counter()
            record = yield store.load_room(f"room{n % args.rooms}@rooms.localhost", HISTORY)
            latencies.append(time.perf_counter() - t)
            assert record is not None and len(record.history) == HISTORY
    finally:
        yield store.close()
    latencies.sort()
    return {
        "writes_per_s": args.writes / elapsed,
        "batches": batches,
        "queue_us": queued_cpu / args.writes * 1e6,
        "reactor_us": total_cpu / args.writes * 1e6,
        **paced,
        "load_median_ms": statistics.median(latencies) * 1e3,
        "load_p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1e3,
    }


@inlineCallbacks
def paced_writes(
    store: SQLRoomStore, args: argparse.Namespace
) -> Generator[Any, Any, dict[str, Any]]:
    """Messages at a steady ``--rate`` for 2 s: batches stay small, as in normal use."""
    per_tick = max(1, args.rate // 100)
    work = messages(per_tick * 200, args.rooms)
    for n, (room, message) in enumerate(work):  # ids not used by the bulk phase
        work[n] = (room, replace(message, stanza_id=f"p{n}"))
    batches, cpu = store.batches_written, time.thread_time()
    for tick in range(200):
        for room, message in work[tick * per_tick : (tick + 1) * per_tick]:
            store.append_message(room, message, HISTORY)
        yield deferLater(global_reactor, 0.01, lambda: None)
    yield store.flush()
    return {
        "paced_batches": store.batches_written - batches,
        "paced_us": (time.thread_time() - cpu) / len(work) * 1e6,
    }


@contextmanager
def throwaway_postgres(directory: Path) -> Iterator[str]:
    """A PostgreSQL cluster for this run only; yields its URL."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise SystemExit("bench/store.py: no PostgreSQL: apt-get install postgresql, or give --url")
    bin_dir = Path(max(found, key=lambda p: int(Path(p).parent.parent.name))).parent
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    initdb = [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres"]
    subprocess.run(
        [*initdb, "--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    log = str(directory / "postgres.log")
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", log, "-w", "start"], check=True, capture_output=True
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)


def report(name: str, figures: dict[str, Any]) -> None:
    print(
        f"{name:<11} {figures['writes_per_s']:>10,.0f} {figures['batches']:>8}"
        f" {figures['queue_us']:>10.1f} {figures['reactor_us']:>11.1f}"
        f" {figures['paced_batches']:>8} {figures['paced_us']:>10.1f}"
        f" {figures['load_median_ms']:>9.2f} {figures['load_p95_ms']:>9.2f}"
    )


async def run(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="mucauth-bench-store-"))
    try:
        print(
            f"bulk: {args.writes} messages over {args.rooms} rooms (history {HISTORY}) at once;"
            f" paced: {args.rate}/s for 2 s; then {args.loads} load_room"
        )
        print(
            f"{'database':<11} {'writes/s':>10} {'batches':>8} {'queue µs':>10}"
            f" {'reactor µs':>11} {'batches':>8} {'paced µs':>10} {'load ms':>9} {'p95 ms':>9}"
        )
        if "sqlite" in args.only:
            sqlite = SQLiteDatabase(str(directory / "rooms.sqlite"))
            report("sqlite", await measure(sqlite, args))
        if "postgresql" in args.only:
            if args.url:
                report("postgresql", await measure(PostgresDatabase(args.url), args))
            else:
                # Its own temp dir: the postgres user cannot enter ours (mode 0700).
                pg_directory = Path(tempfile.mkdtemp(prefix="mucauth-bench-pg-"))
                try:
                    with throwaway_postgres(pg_directory) as url:
                        report("postgresql", await measure(PostgresDatabase(url), args))
                finally:
                    shutil.rmtree(pg_directory, ignore_errors=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=20_000, help="messages appended")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5_000, help="paced messages per second")
    parser.add_argument("--loads", type=int, default=300, help="load_room calls")
    parser.add_argument("--url", help="an existing PostgreSQL database (it gets our tables)")
    parser.add_argument(
        "--only", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    react(lambda _reactor: ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
