"""Message archive benchmark: how long a page of a large archive takes, on SQLite and PostgreSQL.

Run ``.venv/bin/python bench/mam.py`` (``--help`` for the sizes). For each database it fills a
fresh archive of ``--messages`` (1,000,000) messages over ``--rooms`` (1) rooms, straight into
the database (bulk inserts in a few transactions, through the dialect's own connection and the
store's migrations), then opens a :class:`~mucauth.store.SQLRoomStore` on it, on the real
reactor, and times ``--queries`` (500) ``query_archive`` calls of each kind, one at a time, with
pages of ``--limit`` (50):

* ``first``: the oldest page (no bound);
* ``last``: the newest page (``last=True``);
* ``after`` / ``before``: the page after or before a random stanza id;
* ``start``: the first page from a random time;
* ``ids``: five random stanza ids;
* ``sender``: the first page of one of the 50 senders (a filter without an index of its own).

Each kind gets a few unmeasured calls first. It prints, per database and kind, the median, p95
and p99 in ms, as the caller sees it (the write queue's flush, the hand-over to the pool's
thread, the queries, the records built), and what the archive costs on disk per message: for
SQLite the file's size (after a WAL checkpoint) over the messages, for PostgreSQL
``pg_total_relation_size('messages')`` (table, TOAST and indexes, after ``VACUUM ANALYZE``).
``--explain`` also prints the plan of one page query of each kind.

Messages look like what a room stores: about 300 bytes of XML (a groupchat message with its
body, ``<stanza-id>`` and ``<occupant-id>``), random 24-character stanza ids, one message every
0.37 s per room. SQLite is a file in a temp dir; PostgreSQL is a throw-away cluster (the one
``bench/store.py`` starts: Debian's package, fsync off) or ``--url``. Figures for people:
nothing is asserted; the host is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store import throwaway_postgres  # noqa: E402
from twisted.internet import reactor as global_reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred, inlineCallbacks  # noqa: E402
from twisted.internet.task import react  # noqa: E402

from examples._loadclient import percentile  # noqa: E402
from mucauth.store import ArchiveQuery, SQLRoomStore, queries  # noqa: E402
from mucauth.store.dialects import Database, PostgresDatabase, SQLiteDatabase  # noqa: E402
from mucauth.store.migrations import migrate  # noqa: E402

T0 = 1_700_000_000.0
GAP = 0.37  # seconds between two messages of a room
SENDERS = 50
FILL_CHUNK = 100_000  # rows per fill transaction
WARMUP = 10  # unmeasured calls per kind
KINDS = ("first", "last", "after", "before", "start", "ids", "sender")
WORDS = (
    "the limit of the sequence is zero, as the proof above shows; next we look at the series "
    "and whether it converges absolutely or only conditionally, which matters for rearranging"
).split()


def room_jid(r: int) -> str:
    return f"room{r}@rooms.localhost"


def stanza_id(n: int) -> str:
    """Message n's id: random-looking, as a room's generated ids are, and found again from n."""
    return hashlib.blake2b(n.to_bytes(8, "little"), digest_size=12).hexdigest()


def timestamp(n: int, rooms: int) -> float:
    return T0 + round((n // rooms) * GAP, 3)


def rows(count: int, rooms: int) -> Iterator[tuple[Any, ...]]:
    """(room, stanza_id, ts, nick, sender, occupant_id, xml) in arrival order."""
    rng = random.Random(13)
    for n in range(count):
        room = room_jid(n % rooms)
        user = rng.randrange(SENDERS)
        nick, sid = f"user{user}", stanza_id(n)
        body = " ".join(rng.choices(WORDS, k=rng.randint(8, 22)))
        xml = (
            f"<message xmlns='jabber:client' type='groupchat' from='{room}/{nick}'"
            f" id='c{n:x}'><body>{body}</body>"
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{room}' id='{sid}'/>"
            f"<occupant-id xmlns='urn:xmpp:occupant-id:0' id='o{user:04x}'/></message>"
        )
        yield room, sid, timestamp(n, rooms), nick, f"{nick}@localhost", f"o{user:04x}", xml


def fill_sqlite(db: SQLiteDatabase, args: argparse.Namespace) -> float:
    """Bulk inserts in transactions of FILL_CHUNK rows; bytes per message on disk."""
    connection = db.connect()
    try:
        migrate(connection.cursor(), db)
        connection.execute("COMMIT")
        insert = db.sql(
            "INSERT INTO messages (room, stanza_id, ts, nick, sender, occupant_id, xml)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        source = rows(args.messages, args.rooms)
        for _ in range(0, args.messages, FILL_CHUNK):
            connection.execute("BEGIN")
            connection.executemany(insert, itertools.islice(source, FILL_CHUNK))
            connection.execute("COMMIT")
            print(".", end="", flush=True, file=sys.stderr)
        # No ANALYZE: the store never runs it, so the planner works as it does in service.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    size = os.path.getsize(db.path) + _size_or_zero(db.path + "-wal")
    return size / args.messages


def _size_or_zero(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def fill_postgres(db: PostgresDatabase, args: argparse.Namespace) -> float:
    """COPY in transactions of FILL_CHUNK rows, then VACUUM ANALYZE; bytes per message."""
    connection = db.connect()
    try:
        migrate(connection.cursor(), db)
        connection.commit()
        source = rows(args.messages, args.rooms)
        copy = "COPY messages (room, stanza_id, ts, nick, sender, occupant_id, xml) FROM STDIN"
        for _ in range(0, args.messages, FILL_CHUNK):
            with connection.cursor() as cursor, cursor.copy(copy) as writer:
                for row in itertools.islice(source, FILL_CHUNK):
                    writer.write_row(row)
            connection.commit()
            print(".", end="", flush=True, file=sys.stderr)
        # What autovacuum does after a bulk load, at once: the planner's statistics.
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE messages")
        row = connection.execute("SELECT pg_total_relation_size('messages')").fetchone()
    finally:
        connection.close()
    return int(row[0]) / args.messages


def make_query(kind: str, rng: random.Random, args: argparse.Namespace) -> tuple[str, Any]:
    """(room, ArchiveQuery) of that kind, at random places of a random room."""
    r = rng.randrange(args.rooms)
    per_room = args.messages // args.rooms
    n = rng.randrange(per_room) * args.rooms + r  # a message of room r
    limit = args.limit
    if kind == "first":
        query = ArchiveQuery(limit=limit)
    elif kind == "last":
        query = ArchiveQuery(last=True, limit=limit)
    elif kind == "after":
        query = ArchiveQuery(page_after=stanza_id(n), limit=limit)
    elif kind == "before":
        query = ArchiveQuery(page_before=stanza_id(n), limit=limit)
    elif kind == "start":
        query = ArchiveQuery(start=timestamp(n, args.rooms) - 0.1, limit=limit)
    elif kind == "ids":
        picked = (rng.randrange(per_room) * args.rooms + r for _ in range(5))
        query = ArchiveQuery(ids=tuple(stanza_id(m) for m in picked), limit=limit)
    elif kind == "sender":
        query = ArchiveQuery(sender=f"user{rng.randrange(SENDERS)}@localhost", limit=limit)
    else:
        raise ValueError(kind)
    return room_jid(r), query


@inlineCallbacks
def time_queries(
    database: Database, args: argparse.Namespace
) -> Generator[Any, Any, dict[str, list[float]]]:
    store = SQLRoomStore(database, global_reactor)
    yield store.open()
    rng = random.Random(args.seed)
    timings: dict[str, list[float]] = {}
    try:
        for kind in KINDS:
            samples: list[float] = []
            for call in range(WARMUP + args.queries):
                room, query = make_query(kind, rng, args)
                started = time.perf_counter()
                page = yield store.query_archive(room, query)
                elapsed = time.perf_counter() - started
                if kind in ("first", "last", "sender") and len(page.messages) != args.limit:
                    print(f"  {kind}: a page of {len(page.messages)}", file=sys.stderr)
                if call >= WARMUP:
                    samples.append(elapsed * 1e3)
            timings[kind] = samples
    finally:
        yield store.close()
    return timings


class _Recorder:
    """A cursor that remembers its statements: the page query to explain."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, params))
        return self.cursor.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def explain(database: Database, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed + 1)
    connection = database.connect()
    try:
        for kind in KINDS:
            room, query = make_query(kind, rng, args)
            recorder = _Recorder(connection.cursor())
            queries.query_archive(recorder, database, room, query)
            sql, params = recorder.statements[-1]
            prefix = "EXPLAIN QUERY PLAN " if database.name == "sqlite" else "EXPLAIN ANALYZE "
            plan = connection.cursor()
            plan.execute(prefix + sql, params)
            lines = [str(row[-1]) for row in plan.fetchall()]
            print(f"  {kind}: {' '.join(sql.split())}")
            for line in lines:
                print(f"      {line}")
            connection.rollback()
    finally:
        connection.close()


def report(
    name: str, bytes_per_message: float, fill_s: float, timings: dict[str, list[float]]
) -> None:
    print(f"{name}: {bytes_per_message:,.0f} bytes per message, filled in {fill_s:.0f} s")
    print(f"  {'kind':<8} {'median ms':>10} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, samples in timings.items():
        print(
            f"  {kind:<8} {percentile(samples, 0.5):>10.2f} {percentile(samples, 0.95):>8.2f}"
            f" {percentile(samples, 0.99):>8.2f} {max(samples):>8.2f}"
        )


@inlineCallbacks
def measure(
    name: str,
    database: Database,
    fill: Callable[[Any, argparse.Namespace], float],
    args: argparse.Namespace,
) -> Generator[Any, Any, None]:
    started = time.perf_counter()
    print(f"{name}: filling", end="", flush=True, file=sys.stderr)
    bytes_per_message = fill(database, args)
    fill_s = time.perf_counter() - started
    print(file=sys.stderr)
    timings = yield time_queries(database, args)
    report(name, bytes_per_message, fill_s, timings)
    if args.explain:
        explain(database, args)


async def run(args: argparse.Namespace) -> None:
    print(
        f"{args.messages:,} messages over {args.rooms} room(s); {args.queries} calls of each kind,"
        f" pages of {args.limit}; {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}"
    )
    directory = Path(tempfile.mkdtemp(prefix="mucauth-bench-mam-"))
    try:
        if "sqlite" in args.only:
            sqlite = SQLiteDatabase(str(directory / "rooms.sqlite"))
            await measure("sqlite", sqlite, fill_sqlite, args)
            os.unlink(sqlite.path)  # the disk space, before PostgreSQL's copy
        if "postgresql" in args.only:
            if args.url:
                await measure("postgresql", PostgresDatabase(args.url), fill_postgres, args)
            else:
                # Its own temp dir: the postgres user cannot enter ours (mode 0700).
                pg_directory = Path(tempfile.mkdtemp(prefix="mucauth-bench-pg-"))
                try:
                    with throwaway_postgres(pg_directory) as url:
                        await measure("postgresql", PostgresDatabase(url), fill_postgres, args)
                finally:
                    shutil.rmtree(pg_directory, ignore_errors=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="archive size")
    parser.add_argument("--rooms", type=int, default=1, help="rooms the messages are spread over")
    parser.add_argument("--queries", type=int, default=500, help="timed calls of each kind")
    parser.add_argument("--limit", type=int, default=50, help="messages per page")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--explain", action="store_true", help="print a plan of each kind")
    parser.add_argument("--url", help="an existing empty PostgreSQL database (it gets our tables)")
    parser.add_argument(
        "--only", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    args = parser.parse_args()
    if args.messages < args.rooms or args.rooms < 1:
        parser.error("--messages must be at least --rooms, and --rooms at least 1")
    args.only = set(args.only.split(","))
    react(lambda _reactor: ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
