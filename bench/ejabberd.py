"""Join benchmark behind ejabberd: one mucauth process, then N sharing the component domain.

``--cluster`` runs two clustered ejabberd nodes instead of one (``examples/_cluster.py``):
instance i connects to node i mod 2, load client i logs in to node i mod 2, so most stanzas
cross from one node to the other; it also measures messages/s (each client alone in a room of
its own, one groupchat message and its echo at a time) and, with two instances, the failover:
one instance is killed and started again at once, as a supervisor would, and the time until
every one of 16 rooms answers a join again is reported.

Run ``.venv/bin/python bench/ejabberd.py --help``. For each instance count (``--instances
1,2``) it starts, on 127.0.0.1 with run-time ports and thrown away at the end:

* ejabberd (Debian's package, through ``examples/_ejabberd.py``), with
  ``domain_balancing`` ``bare_destination`` and ``component_number: N`` when N > 1;
* bench/authservice.py, the keep-alive authorization service of the Prosody benchmark;
* N ``twistd mucauth`` with the same configuration;
* the load client (examples/_loadclient.py) in this process: every client joins and leaves a room
  of its own as fast as the answers come, a new room each cycle, so every join creates a room,
  asks the gate once, and the rooms spread over the instances.

The figures are for people, not assertions: the host is shared, and on a 2-core machine
ejabberd, the load client and the instances compete for the same cores, so a second instance
shows what it costs as much as what it gains. ``other %`` is the CPU the rest of the machine
used meanwhile; a large one makes a run worth little.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _processes import check_gate, cpu_seconds, machine_busy_seconds  # noqa: E402

from examples._cluster import EjabberdCluster  # noqa: E402
from examples._ejabberd import EjabberdServer  # noqa: E402
from examples._loadclient import (  # noqa: E402
    Connection,
    JoinRefusedError,
    LoopResult,
    Stanza,
    StanzaTimeoutError,
    Watchdog,
    Window,
    connect,
    connect_many,
    join_leave_loop,
    now,
    percentile,
)
from examples._stack import (  # noqa: E402
    ProcessError,
    free_port,
    mucauth_command,
    start_process,
    stop_process,
    wait_for_port,
    write_tap_conf,
)

SERVICE = "rooms.localhost"
PASSWORD = "bench-pw"


@dataclass
class Run:
    """One instance count: its processes and its figures."""

    instances: int
    directory: Path
    ejabberd: EjabberdServer
    cluster: EjabberdCluster | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    configs: list[Path] = field(default_factory=list)
    mucauth: list[subprocess.Popen[bytes]] = field(default_factory=list)
    auth: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        process = start_process(argv, log, log.stem, cwd=self.directory)
        self.children.append(process)
        return process

    @property
    def nodes(self) -> list[EjabberdServer]:
        return list(self.cluster.nodes) if self.cluster is not None else [self.ejabberd]

    def node_for(self, index: int) -> EjabberdServer:
        nodes = self.nodes
        return nodes[index % len(nodes)]

    def component_logins(self) -> int:
        return sum(node.component_logins() for node in self.nodes)

    def stop(self) -> None:
        while self.children:
            stop_process(self.children.pop())
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self.ejabberd.stop()


async def wait_authenticated(run: Run, index: int, timeout: float = 20.0) -> None:
    """Wait until ejabberd has accepted instance ``index``, before starting the next one:
    slots go out in connection order. (mucauth logs at warn here, so ejabberd's info log says
    it.)"""
    deadline = now() + timeout
    process, log = run.mucauth[index], run.logs[index]
    while run.component_logins() <= index:
        if process.poll() is not None or now() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"mucauth {index} did not connect to ejabberd:\n{tail}")
        await asyncio.sleep(0.05)


async def set_up(run: Run, args: argparse.Namespace) -> list[Connection]:
    users = [f"load{i}" for i in range(args.clients)] + ["probe"]
    if run.cluster is not None:
        run.cluster.start()
    else:
        run.ejabberd.start()
    for user in users:
        run.ejabberd.register(user, PASSWORD)  # node 1 of a cluster: the table is shared
    auth_port = free_port()
    run.auth = run.spawn(
        [sys.executable, str(ROOT / "bench" / "authservice.py"), "--port", str(auth_port)],
        run.directory / "authservice.log",
    )
    wait_for_port(auth_port)
    for index in range(run.instances):
        node = run.node_for(index)
        config = write_tap_conf(
            run.directory / f"tap-{index}.conf",
            jid=SERVICE,
            host="127.0.0.1",
            port=node.component_port,
            secret=node.component_secret,
            url=f"http://127.0.0.1:{auth_port}/muc/join",
            log_level="warn",
            writer="bench/ejabberd.py",
        )
        log = run.directory / f"mucauth-{index}.log"
        run.logs.append(log)
        run.configs.append(config)
        argv = mucauth_command(config, f"--logfile={log}")
        run.mucauth.append(run.spawn(argv, run.directory / f"mucauth-{index}.console"))
        await wait_authenticated(run, index)
    host, port = "127.0.0.1", run.ejabberd.c2s_port
    probe = await connect(host, port, "probe", PASSWORD)
    try:
        # A refused and an admitted join first: figures from an open door would mean nothing.
        await check_gate(probe, SERVICE)
    finally:
        probe.close()
    load: list[Connection] = []
    for n, node in enumerate(run.nodes):  # client i on node i mod (number of nodes)
        mine = users[: args.clients][n :: len(run.nodes)]
        load += await connect_many(host, node.c2s_port, mine, PASSWORD)
    return load


def rooms_of(client: int) -> Callable[[int], str]:
    return lambda cycle: f"e{client}x{cycle % 16}@{SERVICE}"


async def measure(run: Run, args: argparse.Namespace, load: list[Connection]) -> dict[str, float]:
    result = LoopResult()
    window = Window()
    pids = {f"ejabberd{n}": node.pid for n, node in enumerate(run.nodes)}
    pids.update({f"mucauth{i}": p.pid for i, p in enumerate(run.mucauth)})
    # Ours too, so that "other %" is only what the rest of the machine did.
    pids.update({"client": os.getpid(), "auth": run.auth.pid})  # type: ignore[union-attr]
    with Watchdog(load, args.timeout):
        tasks = [
            asyncio.ensure_future(join_leave_loop(c, rooms_of(i), f"n{i}", window, result))
            for i, c in enumerate(load)
        ]
        try:
            await asyncio.sleep(args.warmup)
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            machine0 = machine_busy_seconds()
            window.start = now()
            await asyncio.sleep(args.duration)
            window.end = now()
            cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            machine1 = machine_busy_seconds()
            window.stop = True
            await asyncio.wait_for(asyncio.gather(*tasks), args.timeout * 3)
        finally:
            for task in tasks:
                task.cancel()
    seconds = window.end - window.start
    joins = max(result.joins, 1)
    used = {name: cpu1[name] - cpu0[name] for name in pids}
    mucauth_cpu = sum(v for k, v in used.items() if k.startswith("mucauth"))
    ours = sum(used.values())
    return {
        "joins/s": result.joins / seconds,
        "p50 ms": percentile(result.latencies, 0.50) * 1000,
        "p99 ms": percentile(result.latencies, 0.99) * 1000,
        "timeouts": result.timeouts,
        "refused": result.refused,
        "ejabberd ms/join": sum(v for k, v in used.items() if k.startswith("ejabberd"))
        * 1000
        / joins,
        "mucauth ms/join": mucauth_cpu * 1000 / joins,
        "client ms/join": used["client"] * 1000 / joins,
        "other %": max(0.0, machine1 - machine0 - ours) * 100 / seconds,
    }


def is_echo(msg_id: str, stanza: Stanza) -> bool:
    return stanza.name == "message" and stanza.attrs.get("id") == msg_id


async def message_loop(conn: Connection, room: str, window: Window, sent: list[int]) -> None:
    """One groupchat message at a time to a room where ``conn`` is alone: the echo is the
    answer. Counts the echoes that arrive inside the measured window."""
    n = 0
    while not window.stop:
        n += 1
        msg_id = f"m{n}"
        echo = conn.expect(partial(is_echo, msg_id))
        conn.send(
            f"<message to='{room}' type='groupchat' id='{msg_id}'><body>m {n}</body></message>"
        )
        try:
            stanza = await echo
        except (StanzaTimeoutError, ConnectionError):
            continue
        if window.start <= stanza.received <= (window.end or stanza.received):
            sent[0] += 1


async def measure_messages(
    run: Run, args: argparse.Namespace, load: list[Connection]
) -> dict[str, float]:
    rooms = [f"msg{i}@{SERVICE}" for i in range(len(load))]
    for conn, room in zip(load, rooms, strict=True):
        await conn.join(f"{room}/n")
    window, sent = Window(), [0]
    with Watchdog(load, args.timeout):
        tasks = [
            asyncio.ensure_future(message_loop(c, r, window, sent))
            for c, r in zip(load, rooms, strict=True)
        ]
        try:
            await asyncio.sleep(args.warmup)
            window.start = now()
            await asyncio.sleep(args.duration)
            window.end = now()
            window.stop = True
            await asyncio.wait_for(asyncio.gather(*tasks), args.timeout * 3)
        finally:
            for task in tasks:
                task.cancel()
    for conn, room in zip(load, rooms, strict=True):
        await conn.leave(f"{room}/n")
    return {"messages/s": sent[0] / (window.end - window.start)}


async def measure_failover(run: Run, probe: Connection) -> dict[str, float]:
    """Kill instance 0, start it again at once; seconds until 16 rooms all answer a join."""
    rooms = [f"fo{i}@{SERVICE}" for i in range(16)]
    process = run.mucauth[0]
    logins = run.component_logins()
    killed = now()
    process.kill()
    process.wait()
    argv = mucauth_command(run.configs[0], f"--logfile={run.logs[0]}")
    run.mucauth[0] = run.spawn(argv, run.directory / "mucauth-0.console")
    linked = None
    waiting = set(rooms)
    while waiting:
        if now() - killed > 60:
            raise ProcessError(f"rooms still silent 60 s after the kill: {sorted(waiting)}")
        if linked is None and run.component_logins() > logins:
            linked = now() - killed
        for room in sorted(waiting):
            try:
                await asyncio.wait_for(probe.join(f"{room}/p"), 0.3)
            except (TimeoutError, StanzaTimeoutError, JoinRefusedError):
                probe._match = probe._waiter = None  # give up this wait; try again
                continue
            await probe.leave(f"{room}/p")
            waiting.discard(room)
    return {
        "link up s": linked if linked is not None else float("nan"),
        "all rooms s": now() - killed,
    }


async def one_run(instances: int, args: argparse.Namespace, base: Path) -> list[dict[str, float]]:
    directory = base / f"n{instances}"
    directory.mkdir()
    balancing = instances if instances > 1 else None
    cluster = None
    ejabberd: EjabberdServer
    if args.cluster:
        # One slot per instance: a slot nobody holds would drop its rooms' stanzas.
        cluster = EjabberdCluster(directory / "ejabberd", component_number=balancing)
        ejabberd = cluster.nodes[0]
    else:
        ejabberd = EjabberdServer(
            directory / "ejabberd",
            component_domain=SERVICE,
            component_number=balancing,
            log_level="info",  # one line per connection, not per stanza
        )
    run = Run(instances, directory, ejabberd, cluster)
    try:
        load = await set_up(run, args)
        try:
            results = [await measure(run, args, load) for _ in range(args.repeats)]
            if args.cluster:
                for result in results:
                    result.update(await measure_messages(run, args, load))
                if instances == 2:
                    probe = await connect("127.0.0.1", run.nodes[1].c2s_port, "probe", PASSWORD)
                    try:
                        print(f"failover: {await measure_failover(run, probe)}", file=sys.stderr)
                    finally:
                        probe.close()
            return results
        finally:
            for conn in load:
                conn.close()
    finally:
        run.stop()


def report(results: dict[int, list[dict[str, float]]]) -> str:
    columns = list(next(iter(results.values()))[0])
    rows = [["instances", *columns]]
    for instances, runs in results.items():
        rows.append(
            [str(instances)] + [f"{statistics.median(r[c] for r in runs):.1f}" for c in columns]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="1,2", help="instance counts to run (1,2)")
    parser.add_argument("--clients", type=int, default=40, help="load connections (40)")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per count; median shown")
    parser.add_argument("--timeout", type=float, default=5.0, help="a wait longer is a timeout")
    parser.add_argument(
        "--cluster", action="store_true", help="two clustered ejabberd nodes (see above)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.instances.split(",")]
    base = Path(tempfile.mkdtemp(prefix="mucauth-bench-ejabberd-"))
    results: dict[int, list[dict[str, float]]] = {}
    try:
        for instances in counts:
            print(f"== {instances} instance(s)", file=sys.stderr)
            results[instances] = asyncio.run(one_run(instances, args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"ejabberd, {args.clients} clients, {args.duration:g} s x {args.repeats} (median)")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
