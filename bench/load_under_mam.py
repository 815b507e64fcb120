"""A stored room's load while a flood of archive queries runs, on SQLite: how long a join waits.

Run ``.venv/bin/python bench/load_under_mam.py`` (``--help`` for the sizes). It fills a SQLite
file with one archived room of ``--messages`` (100,000) messages and one room of 50, opens a
:class:`~mucauth.store.SQLRoomStore` on the real reactor, and ``--rounds`` (5) times: sends
``--queries`` (1,000) archive queries of ``--limit`` (100) messages at once, then loads the
small room as a join would, and times that load (milliseconds from the call to the record).

Twice: ``before``, every archive read goes straight to adbapi's pool, as they all did (SQLite's
single connection answers in the order it was asked, so the load waits for every query sent
before it); ``after``, archive reads pass the store's lane (at most ``archive_slots`` of them in
the pool at once), so the load waits for those few. Figures for people: nothing is asserted.
The per-user bound (``[limits] max_archive_queries_per_user``) keeps one user from sending a
thousand at once in the first place; this measures the store with every query already let in.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import reactor as global_reactor  # noqa: E402
from twisted.internet.defer import DeferredSemaphore, gatherResults, inlineCallbacks  # noqa: E402
from twisted.internet.task import react  # noqa: E402

from mucauth.store import ArchiveQuery, HistoryRecord, SQLRoomStore  # noqa: E402
from mucauth.store.dialects import SQLiteDatabase  # noqa: E402

FLOODED = "flooded@rooms.localhost"
TARGET = "target@rooms.localhost"
T0 = 1_700_000_000.0


def record(room: str, n: int) -> HistoryRecord:
    return HistoryRecord(
        stanza_id=f"{room[:3]}-{n:08d}",
        timestamp=T0 + n * 0.37,
        nick=f"user{n % 50}",
        sender=f"user{n % 50}@localhost",
        xml=f"<message xmlns='jabber:client' id='c{n}'><body>message number {n} of the "
        "flood, about as long as a sentence someone would write</body></message>",
    )


@inlineCallbacks
def fill(store: SQLRoomStore, messages: int) -> Any:
    for room in (FLOODED, TARGET):
        store.save_room(room, {}, name=room, public=True, subject="", subject_nick="")
    for n in range(messages):
        store.append_message(FLOODED, record(FLOODED, n), None)
        if n % 10_000 == 9_999:
            yield store.flush()
    for n in range(50):
        store.append_message(TARGET, record(TARGET, n), None)
    yield store.flush()


@inlineCallbacks
def one_round(store: SQLRoomStore, queries: int, limit: int) -> Any:
    started = time.perf_counter()
    reads = [
        store.query_archive(FLOODED, ArchiveQuery(limit=limit, last=n % 2 == 0))
        for n in range(queries)
    ]
    asked = time.perf_counter()
    record = yield store.load_room(TARGET, 20)
    loaded = time.perf_counter()
    assert record is not None
    yield gatherResults(reads)
    finished = time.perf_counter()
    return (loaded - asked) * 1000, (finished - started) * 1000


@inlineCallbacks
def measure(path: str, args: argparse.Namespace, *, lane: bool) -> Any:
    store = SQLRoomStore(SQLiteDatabase(path), global_reactor)
    yield store.open()
    if not lane:  # as before: no bound on archive reads in the pool
        store._archive_lane = DeferredSemaphore(10**9)
    loads, floods = [], []
    try:
        yield store.load_room(TARGET, 20)  # warm
        for _ in range(args.rounds):
            load_ms, flood_ms = yield one_round(store, args.queries, args.limit)
            loads.append(load_ms)
            floods.append(flood_ms)
    finally:
        yield store.close()
    name = "after " if lane else "before"
    print(
        f"{name}: room load under {args.queries} archive queries: "
        f"median {statistics.median(loads):8.1f} ms, max {max(loads):8.1f} ms; "
        f"the whole flood answered in median {statistics.median(floods):8.1f} ms"
    )


@inlineCallbacks
def main(reactor: Any, args: argparse.Namespace) -> Any:
    directory = Path(tempfile.mkdtemp(prefix="mucauth-bench-load-"))
    try:
        path = str(directory / "rooms.sqlite")
        store = SQLRoomStore(SQLiteDatabase(path), reactor)
        yield store.open()
        started = time.perf_counter()
        yield fill(store, args.messages)
        yield store.close()
        print(
            f"sqlite: {args.messages} archived messages written in "
            f"{time.perf_counter() - started:.1f} s; {args.rounds} rounds of "
            f"{args.queries} queries of {args.limit} messages"
        )
        yield measure(path, args, lane=False)
        yield measure(path, args, lane=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    react(lambda reactor: main(reactor, options))
