"""Instructions (or CPU) per join + leave of the component, in one process, without Prosody.

``MUCService`` sits on a real component stream: ``ComponentLink``'s factory builds the
``XmlStream`` (the same authenticator, bootstraps and observers as on the wire) over an
in-memory transport, so every incoming stanza is parsed by expat into domish and dispatched by
xish, and every outgoing one is serialized to bytes, as in production. Each cycle is the
``bench/joins.py`` distinct mode's: a user joins a new room (``<x xmlns=muc><history
maxstanzas='0'/></x>``, as the load client sends), gets its self-presence, leaves and gets its
unavailable. 200 cycles of warm-up, then the measured ones (1,000 by default).

Two gates:

- ``--gate sync``: a ``StaticAuthorizer`` answers at once: the MUC side alone.
- ``--gate http``: the real gate (``build_authorizer``, pool of 10) to ``bench/authservice.py``
  in its own process, ``--in-flight`` joins (10) at a time over the real reactor.

``--store memory|sqlite|postgresql`` gives the service a room store (SQLite: a file in a temp
dir; PostgreSQL: ``--url`` or a throw-away cluster, as ``bench/store.py`` starts one), opened
before the cycles; ``--persistent``
makes new rooms persistent (``[rooms] persistent = true``), so every created room is written
behind. A store's reads and writes finish on the reactor and its threads, so with a store the
sync gate's cycles are fed ``--in-flight`` at a time over the running reactor, each batch's
self-presences awaited before the next (``--reactor`` does the same without a store, the
like-for-like baseline), and the store's last writes are flushed inside the measurement.
CPU and instruction counts cover every thread of the process (the database threads too), not
the PostgreSQL server.

Plain runs print CPU time (``time.process_time``) per join + leave, which the shared host's
load moves. ``--callgrind`` runs this script twice under ``valgrind --tool=callgrind``, with no
measured cycle and with ``--cycles``, and prints the difference per cycle: instruction counts do
not move with the host's load (the two runs' start-up and warm-up are identical, and
``PYTHONHASHSEED=0`` keeps dict and set orders identical too). ``--profile FILE`` writes a
cProfile of the measured cycles (Python 3.11's frames do not show in callgrind).

    .venv/bin/python bench/instructions.py --gate sync
    .venv/bin/python bench/instructions.py --gate http --callgrind
    .venv/bin/python bench/instructions.py --gate http --profile /tmp/http.prof
    .venv/bin/python bench/instructions.py --store sqlite --persistent --callgrind
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogBeginner
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from mucauth import _compat

_compat.install()

from mucauth.authorize import StaticAuthorizer, build_authorizer  # noqa: E402
from mucauth.authorize.base import IJoinAuthorizer  # noqa: E402
from mucauth.link import ComponentLink  # noqa: E402
from mucauth.log_setup import LEVELS, make_log_observer  # noqa: E402
from mucauth.muc.service import MUCService  # noqa: E402
from mucauth.settings import (  # noqa: E402
    ComponentSettings,
    HTTPAuthSettings,
    LogSettings,
    MUCSettings,
    RoomDefaults,
    Secret,
    StorageSettings,
)
from mucauth.store import IRoomStore, MemoryRoomStore, build_store  # noqa: E402

DOMAIN = "rooms.localhost"
USERS = 50  # the load client's users in distinct mode
WARMUP = 200
LOG_LEVEL = "warn"  # what bench/joins.py configures

JOIN = (
    "<presence xmlns='jabber:component:accept' to='{room}@" + DOMAIN + "/u{user}' id='j{n}'"
    " from='u{user}@localhost/load'><x xmlns='http://jabber.org/protocol/muc'>"
    "<history maxstanzas='0'/></x></presence>"
)
LEAVE = (
    "<presence xmlns='jabber:component:accept' to='{room}@" + DOMAIN + "/u{user}' id='l{n}'"
    " from='u{user}@localhost/load' type='unavailable'/>"
)
SELF = b"<status code='110'/>"


class _Wire(StringTransport):
    """The component's socket: keeps nothing, tells ``on_self`` of each self-presence."""

    def __init__(self) -> None:
        super().__init__()
        self.on_self: Callable[[bytes], None] | None = None

    def write(self, data: bytes) -> None:
        if self.on_self is not None and SELF in data and b"type='unavailable'" not in data:
            self.on_self(data)


def _stack(
    authorizer: IJoinAuthorizer,
    store: IRoomStore | None = None,
    *,
    persistent: bool = False,
) -> tuple[Any, _Wire]:
    """MUCService on an authenticated component stream over ``_Wire``."""
    settings = ComponentSettings(JID(DOMAIN), Secret("secret"))
    link = ComponentLink(settings)
    muc_settings = MUCSettings(rooms=RoomDefaults(persistent=True)) if persistent else MUCSettings()
    muc = MUCService(
        authorizer,
        muc_settings,
        log_level=LEVELS[LOG_LEVEL],
        max_in_flight=10,
        store=store,
    )
    muc.setHandlerParent(link)
    xs = link.factory.buildProtocol(None)
    wire = _Wire()
    xs.makeConnection(wire)
    xs.dataReceived(
        b"<stream:stream xmlns='jabber:component:accept'"
        b" xmlns:stream='http://etherx.jabber.org/streams' from='" + DOMAIN.encode() + b"'"
        b" id='s1'>"
    )
    xs.dataReceived(b"<handshake/>")
    assert muc.xmlstream is xs, "the handshake did not initialize the handlers"
    return xs, wire


@implementer(ILogObserver)
def _discard(event: Any) -> None:
    """twistd's own observer, less the writing: what [log] level lets through is dropped."""


def _cycle_text(user: int, n: int) -> tuple[bytes, bytes]:
    room = f"r{user}x{n}"
    return (
        JOIN.format(room=room, user=user, n=n).encode(),
        LEAVE.format(room=room, user=user, n=n).encode(),
    )


def run_sync(cycles: int, profile: cProfile.Profile | None) -> float:
    users = frozenset(f"u{i}@localhost" for i in range(USERS))
    xs, wire = _stack(StaticAuthorizer(users))
    seen: list[bytes] = []
    wire.on_self = seen.append
    texts = [_cycle_text(n % USERS, n) for n in range(WARMUP + cycles)]

    def go(batch: list[tuple[bytes, bytes]]) -> None:
        for join, leave in batch:
            xs.dataReceived(join)
            xs.dataReceived(leave)

    go(texts[:WARMUP])
    assert len(seen) == WARMUP, f"{len(seen)} self-presences for {WARMUP} joins"
    gc.collect()
    gc.freeze()
    started = time.process_time()
    if profile is not None:
        profile.enable()
    go(texts[WARMUP:])
    if profile is not None:
        profile.disable()
    spent = time.process_time() - started
    assert len(seen) == WARMUP + cycles
    return spent


def _open_store(args: argparse.Namespace, reactor: Any, directory: str) -> IRoomStore | None:
    if args.store == "none":
        return None
    if args.store == "memory":
        return MemoryRoomStore()
    if args.store == "sqlite":
        settings = StorageSettings(path=os.path.join(directory, "rooms.sqlite"))
    else:
        assert args.url, "--store postgresql needs --url here (main() starts a cluster)"
        settings = StorageSettings(url=args.url)
    store = build_store(settings, reactor)
    assert store is not None
    return store


def _batches(
    reactor: Any, xs: Any, wire: _Wire, texts: list[tuple[bytes, bytes]], size: int
) -> Deferred[None]:
    """Each batch's joins and leaves written at once, as one read of the socket would bring
    them; the next batch after the reactor's turn that follows the batch's last self-presence
    (a store's read or write finishes there)."""

    async def body() -> None:
        for first in range(0, len(texts), size):
            batch = texts[first : first + size]
            arrived: Deferred[None] = Deferred()
            count = [0]

            def on_self(
                data: bytes,
                count: list[int] = count,
                want: int = len(batch),
                arrived: Deferred[None] = arrived,
            ) -> None:
                count[0] += 1
                if count[0] == want:
                    arrived.callback(None)

            wire.on_self = on_self
            for join, leave in batch:
                xs.dataReceived(join)
                xs.dataReceived(leave)
            await arrived
            await task.deferLater(reactor, 0, lambda: None)

    return Deferred.fromCoroutine(body())


async def _sync_on_reactor(
    reactor: Any, args: argparse.Namespace, profile: cProfile.Profile | None, out: list[float]
) -> None:
    directory = tempfile.mkdtemp(prefix="mucauth-instructions-")
    try:
        store = _open_store(args, reactor, directory)
        if store is not None:
            await store.open()
        users = frozenset(f"u{i}@localhost" for i in range(USERS))
        xs, wire = _stack(
            StaticAuthorizer(users),
            store,
            persistent=args.persistent,
        )
        texts = [_cycle_text(n % USERS, n) for n in range(WARMUP + args.cycles)]
        await _batches(reactor, xs, wire, texts[:WARMUP], args.in_flight)
        if store is not None:
            await store.flush()
        gc.collect()
        gc.freeze()
        started = time.process_time()
        if profile is not None:
            profile.enable()
        await _batches(reactor, xs, wire, texts[WARMUP:], args.in_flight)
        if store is not None:
            await store.flush()
        if profile is not None:
            profile.disable()
        out.append(time.process_time() - started)
        if store is not None:
            await store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _http(
    reactor: Any, cycles: int, in_flight: int, profile: cProfile.Profile | None, out: list[float]
) -> None:
    port = _free_port()
    service = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("authservice.py")), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                await task.deferLater(reactor, 0.05, lambda: None)
        settings = HTTPAuthSettings(url=f"http://127.0.0.1:{port}/auth", pool_size=10)
        gate = build_authorizer(settings, reactor, log_level=LEVELS[LOG_LEVEL])
        xs, wire = _stack(gate)
        await _http_cycles(reactor, xs, wire, WARMUP, 0, in_flight)
        gc.collect()
        gc.freeze()
        started = time.process_time()
        if profile is not None:
            profile.enable()
        await _http_cycles(reactor, xs, wire, cycles, WARMUP, in_flight)
        if profile is not None:
            profile.disable()
        out.append(time.process_time() - started)
        await gate.close()
    finally:
        service.terminate()
        service.wait()


def _http_cycles(
    reactor: Any, xs: Any, wire: _Wire, cycles: int, first: int, in_flight: int
) -> Deferred[None]:
    """``cycles`` joins and leaves, ``in_flight`` users at a time; each user's next join
    follows its leave. Stanzas are fed from the reactor, as a socket's would be."""
    done: Deferred[None] = Deferred()
    if cycles == 0:
        done.callback(None)
        return done
    state = {"next": first, "finished": 0}
    last = first + cycles
    leaves: dict[bytes, bytes] = {}
    pattern = re.compile(rb"to='(u\d+)@")

    def start(user: int) -> None:
        n = state["next"]
        if n >= last:
            return
        state["next"] = n + 1
        join, leaves[f"u{user}".encode()] = _cycle_text(user, n)
        xs.dataReceived(join)

    def leave(user_text: bytes) -> None:
        xs.dataReceived(leaves.pop(user_text))
        state["finished"] += 1
        if state["finished"] == cycles:
            done.callback(None)
        else:
            start(int(user_text[1:]))

    def on_self(data: bytes) -> None:
        match = pattern.search(data)
        assert match is not None
        reactor.callLater(0, leave, match.group(1))

    wire.on_self = on_self
    for user in range(min(in_flight, cycles)):
        reactor.callLater(0, start, user)
    return done


def _label(args: argparse.Namespace) -> str:
    """What the figure is of: the gate, then the store and its rooms when there is one."""
    label = args.gate
    if args.store != "none" or args.reactor or args.persistent:
        label += f", store {args.store}"
        label += ", persistent rooms" if args.persistent else ", temporary rooms"
    return label


def _fresh_database(url: str, name: str) -> str:
    """A new empty database ``name`` on the server of ``url``; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return url.rpartition("/")[0] + "/" + name


def _callgrind_total(
    args: argparse.Namespace, cycles: int, directory: str, url: str | None = None
) -> int:
    out = os.path.join(directory, f"callgrind.{args.gate}.{args.store}.{cycles}")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--gate",
        args.gate,
        "--cycles",
        str(cycles),
        "--in-flight",
        str(args.in_flight),
        "--store",
        args.store,
        *(["--persistent"] if args.persistent else []),
        *(["--reactor"] if args.reactor else []),
        *(["--url", url] if url else []),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"callgrind run failed:\n{run.stdout}{run.stderr}")
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    sys.exit(f"no totals in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gate", choices=("sync", "http"), default="sync")
    parser.add_argument("--cycles", type=int, default=1000, help="measured cycles (1000)")
    parser.add_argument("--in-flight", type=int, default=10, help="http: joins at a time (10)")
    parser.add_argument("--callgrind", action="store_true", help="instructions, under valgrind")
    parser.add_argument("--keep", metavar="DIR", help="--callgrind: keep the output files here")
    parser.add_argument("--profile", metavar="FILE", help="cProfile of the measured cycles")
    parser.add_argument(
        "--store",
        choices=("none", "memory", "sqlite", "postgresql"),
        default="none",
        help="the room store the service gets (none)",
    )
    parser.add_argument("--persistent", action="store_true", help="new rooms are persistent")
    parser.add_argument(
        "--reactor",
        action="store_true",
        help="sync: feed --in-flight cycles at a time over the reactor (implied by a store)",
    )
    parser.add_argument(
        "--url",
        help="postgresql: a database (default: a throw-away cluster's); with --callgrind, the"
        " server of this URL gets two new databases, bench0 and bench1, for the two runs",
    )
    args = parser.parse_args()
    if args.gate == "http" and (args.store != "none" or args.persistent or args.reactor):
        parser.error("--store, --persistent and --reactor go with --gate sync")
    if args.store != "none" or args.persistent:
        args.reactor = True
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Same orders of sets and dicts in every run, so that runs compare.
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"}
        )
    with ExitStack() as cleanup:
        if args.store == "postgresql" and not args.url:
            from store import throwaway_postgres

            # Its own temp dir: the postgres user cannot enter a 0700 one of ours.
            pg_directory = tempfile.mkdtemp(prefix="mucauth-instructions-pg-")
            cleanup.callback(shutil.rmtree, pg_directory, ignore_errors=True)
            args.url = cleanup.enter_context(throwaway_postgres(Path(pg_directory)))
        _run(args)


def _run(args: argparse.Namespace) -> None:
    if args.callgrind:
        directory = args.keep or tempfile.mkdtemp(prefix="mucauth-callgrind-")
        os.makedirs(directory, exist_ok=True)
        try:
            # Each run its own empty database, as the SQLite runs get their own file.
            urls = [_fresh_database(args.url, f"bench{n}") if args.url else None for n in (0, 1)]
            base = _callgrind_total(args, 0, directory, urls[0])
            full = _callgrind_total(args, args.cycles, directory, urls[1])
        finally:
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
        per = (full - base) / args.cycles
        print(
            f"{_label(args)}: {per / 1000:,.0f}k instructions per join + leave"
            f" ({args.cycles} cycles after {WARMUP} of warm-up; totals {base:,} and {full:,})"
        )
        return
    globalLogBeginner.beginLoggingTo(
        [make_log_observer(LogSettings(level=LOG_LEVEL), default=_discard)],
        redirectStandardIO=False,
    )
    profile = cProfile.Profile() if args.profile else None
    if args.gate == "sync" and not args.reactor:
        spent = run_sync(args.cycles, profile)
        _report(args, spent, profile)
    else:
        out: list[float] = []

        async def body(reactor: Any) -> None:
            if args.gate == "sync":
                await _sync_on_reactor(reactor, args, profile, out)
            else:
                await _http(reactor, args.cycles, args.in_flight, profile, out)

        try:
            task.react(lambda r: Deferred.fromCoroutine(body(r)))
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        _report(args, out[0], profile)


def _report(args: argparse.Namespace, spent: float, profile: cProfile.Profile | None) -> None:
    if profile is not None:
        profile.dump_stats(args.profile)
    per = spent / max(1, args.cycles)
    print(f"{_label(args)}: {per * 1e6:.0f} µs CPU per join + leave ({args.cycles} cycles)")


if __name__ == "__main__":
    main()
