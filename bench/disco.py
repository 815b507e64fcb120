"""Room list benchmark: disco#items on the service with many stored rooms (issue 24).

Run ``.venv/bin/python bench/disco.py`` (``--help`` for the sizes). For each database it fills
a fresh store with ``--rooms`` (10,000) public persistent rooms, straight into the database
(one transaction, through the store's migrations), then runs a :class:`MUCService` on it, on
the real reactor, with an in-memory stream, and prints:

* the latency of one disco#items on the service, as the asker would wait for it (stanza in,
  answer out, the store's thread included), median and p95 of ``--queries`` (200) each: the
  first page (a request without ``<set>``), a middle page (``<after>`` the room in the
  middle), the last page (``<before/>``);
* the bytes of each answer, as written;
* ``--burst`` (1,000) requests without ``<set>`` sent at once: wall time until the last
  answer, and the process's CPU for them (all threads: the store's too).

Rooms have a name of 12 characters and a JID of about 30. SQLite is a file in a temp dir;
PostgreSQL is a throw-away cluster (the one ``bench/store.py`` starts) or ``--url``; ``--db
sqlite`` skips it. Figures for people: nothing is asserted; the host is shared.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from store import throwaway_postgres  # noqa: E402
from twisted.internet import reactor as global_reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks  # noqa: E402
from twisted.internet.task import deferLater, react  # noqa: E402
from twisted.words.xish import domish  # noqa: E402
from wokkel.generic import parseXml  # noqa: E402
from wokkel.test.helpers import TestableStreamManager  # noqa: E402
from zope.interface import implementer  # noqa: E402

import mucauth._compat  # noqa: E402, F401  (before any wokkel import)
from examples._loadclient import percentile  # noqa: E402
from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest  # noqa: E402
from mucauth.muc.service import MUCService  # noqa: E402
from mucauth.settings import MUCSettings  # noqa: E402
from mucauth.store import SQLRoomStore  # noqa: E402
from mucauth.store.dialects import Database, PostgresDatabase, SQLiteDatabase  # noqa: E402
from mucauth.store.migrations import migrate  # noqa: E402

SERVICE = "rooms.localhost"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
ASKER = "bench@localhost/disco"
WARMUP = 5


@implementer(IJoinAuthorizer)
class AllowAll:
    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        d: Deferred[Decision] = Deferred()
        d.callback(Decision.allow())
        return d


def room_jid(n: int) -> str:
    return f"room{n:06d}-bench@{SERVICE}"


def fill(db: Database, rooms: int) -> None:
    connection = db.connect()
    try:
        migrate(connection.cursor(), db)
        if db.name == "sqlite":
            connection.execute("COMMIT")
        else:
            connection.commit()
        cursor = connection.cursor()
        if db.name == "sqlite":
            cursor.execute("BEGIN")
        config = json.dumps({"persistent": True, "public": True})
        cursor.executemany(
            db.sql(
                "INSERT INTO rooms (jid, name, is_public, config, subject, subject_nick,"
                " created, updated) VALUES (?, ?, ?, ?, '', '', 0, 0)"
            ),
            [(room_jid(n), f"Bench {n:06d}", True, config) for n in range(rooms)],
        )
        if db.name == "sqlite":
            cursor.execute("COMMIT")
        else:
            connection.commit()
    finally:
        connection.close()


def items_query(paging: str) -> str:
    return f"<query xmlns='{NS_ITEMS}'>{paging}</query>"


def rsm(inner: str) -> str:
    return f"<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>"


class Asker:
    """Sends iqs into the service's stream and hands each answer to whoever waits for its id."""

    def __init__(self, service: MUCService) -> None:
        self.manager = TestableStreamManager(reactor=global_reactor)
        service.setHandlerParent(self.manager)
        self.waiting: dict[str, Deferred[domish.Element]] = {}
        stream = self.manager.stub.xmlstream
        original = stream.send

        def send(element: Any) -> None:
            original(element)
            if isinstance(element, domish.Element):
                waiter = self.waiting.pop(element.getAttribute("id") or "", None)
                if waiter is not None:
                    waiter.callback(element)

        stream.send = send
        self.count = 0

    def ask(self, payload: str) -> Deferred[domish.Element]:
        self.count += 1
        ident = f"q{self.count}"
        d: Deferred[domish.Element] = Deferred()
        self.waiting[ident] = d
        self.manager.stub.send(
            parseXml(
                f"<iq xmlns='jabber:component:accept' type='get' id='{ident}' from='{ASKER}'"
                f" to='{SERVICE}'>{payload}</iq>"
            )
        )
        return d


@inlineCallbacks
def measure(database: Database, args: argparse.Namespace) -> Generator[Any, Any, dict[str, Any]]:
    store = SQLRoomStore(database, global_reactor)
    yield store.open()
    service = MUCService(AllowAll(), MUCSettings(), clock=global_reactor, store=store)
    asker = Asker(service)
    yield deferLater(global_reactor, 0.5, lambda: None)  # the stored room list is read
    middle = room_jid(args.rooms // 2)
    kinds = {
        "first": items_query(""),
        "middle": items_query(rsm(f"<max>100</max><after>{middle}</after>")),
        "last": items_query(rsm("<max>100</max><before/>")),
    }
    figures: dict[str, Any] = {}
    try:
        for kind, payload in kinds.items():
            samples = []
            size = 0
            items = 0
            for call in range(WARMUP + args.queries):
                started = time.perf_counter()
                answer = yield asker.ask(payload)
                elapsed = time.perf_counter() - started
                if call >= WARMUP:
                    samples.append(elapsed * 1e3)
                size = len(answer.toXml().encode("utf-8"))
                query = answer.firstChildElement()
                items = len(list(query.elements(NS_ITEMS, "item"))) if query is not None else 0
            figures[kind] = (percentile(samples, 0.5), percentile(samples, 0.95), size, items)
            print(f"  {database.name} {kind}: {figures[kind]}", file=sys.stderr, flush=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        started = time.perf_counter()
        yield from_all([asker.ask(kinds["first"]) for _ in range(args.burst)])
        figures["burst"] = (
            time.perf_counter() - started,
            time.process_time() - cpu,
            rss_before / 1024,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
    finally:
        yield store.close()
    return figures


def from_all(waiters: list[Deferred[Any]]) -> Deferred[Any]:
    from twisted.internet.defer import gatherResults

    return gatherResults(waiters, consumeErrors=True)


def report(name: str, figures: dict[str, Any]) -> None:
    for kind in ("first", "middle", "last"):
        median, p95, size, items = figures[kind]
        print(
            f"{name:<11} {kind:<7} {median:>9.2f} ms {p95:>9.2f} ms"
            f" {size:>10,} bytes {items:>7,} items"
        )
    wall, cpu, rss_before, rss_after = figures["burst"]
    print(
        f"{name:<11} burst   {wall:>9.2f} s wall {cpu:>8.2f} s CPU"
        f"   max RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )


async def run(args: argparse.Namespace) -> None:
    print(
        f"disco#items on the service, {args.rooms:,} stored public rooms; latency over "
        f"{args.queries} requests each; burst: {args.burst} requests without <set> at once"
    )
    with tempfile.TemporaryDirectory(prefix="mucauth-bench-disco-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # the throw-away cluster runs as the postgres user
        if "sqlite" in args.db:
            db: Database = SQLiteDatabase(str(directory / "rooms.sqlite"))
            fill(db, args.rooms)
            report("sqlite", await ensureDeferred(measure(db, args)))
        if "postgresql" in args.db:
            if args.url:
                pg = PostgresDatabase(args.url)
                fill(pg, args.rooms)
                report("postgresql", await ensureDeferred(measure(pg, args)))
            else:
                cluster = directory / "pg"
                cluster.mkdir()
                with throwaway_postgres(cluster) as url:
                    pg = PostgresDatabase(url)
                    fill(pg, args.rooms)
                    report("postgresql", await ensureDeferred(measure(pg, args)))
                shutil.rmtree(cluster, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--url", help="a PostgreSQL URL to use instead of a throw-away cluster")
    args = parser.parse_args()
    react(lambda _reactor: ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
