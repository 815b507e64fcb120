"""Join benchmark behind ejabberd: one mucauth process, then N sharing the component domain.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _processes import check_gate, cpu_seconds, machine_busy_seconds  # noqa: E402

from examples._ejabberd import EjabberdServer  # noqa: E402
from examples._loadclient import (  # noqa: E402
    Connection,
    LoopResult,
    Watchdog,
    Window,
    connect,
    connect_many,
    join_leave_loop,
    now,
    percentile,
)
from examples._stack import (  # noqa: E402
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
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    mucauth: list[subprocess.Popen[bytes]] = field(default_factory=list)
    auth: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        process = start_process(argv, log, log.stem, cwd=self.directory)
        self.children.append(process)
        return process

    def stop(self) -> None:
        while self.children:
            stop_process(self.children.pop())
        self.ejabberd.stop()


async def wait_authenticated(run: Run, index: int, timeout: float = 20.0) -> None:
    """Wait until ejabberd has accepted instance ``index``, before starting the next one:
    slots go out in connection order. (mucauth logs at warn here, so ejabberd's info log says
    it.)"""
    deadline = now() + timeout
    process, log = run.mucauth[index], run.logs[index]
    while run.ejabberd.component_logins() <= index:
        if process.poll() is not None or now() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"mucauth {index} did not connect to ejabberd:\n{tail}")
        await asyncio.sleep(0.05)


async def set_up(run: Run, args: argparse.Namespace) -> list[Connection]:
    users = [f"load{i}" for i in range(args.clients)] + ["probe"]
    run.ejabberd.start()
    for user in users:
        run.ejabberd.register(user, PASSWORD)
    auth_port = free_port()
    run.auth = run.spawn(
        [sys.executable, str(ROOT / "bench" / "authservice.py"), "--port", str(auth_port)],
        run.directory / "authservice.log",
    )
    wait_for_port(auth_port)
    for index in range(run.instances):
        config = write_tap_conf(
            run.directory / f"tap-{index}.conf",
            jid=SERVICE,
            host="127.0.0.1",
            port=run.ejabberd.component_port,
            secret=run.ejabberd.component_secret,
            url=f"http://127.0.0.1:{auth_port}/muc/join",
            log_level="warn",
            writer="bench/ejabberd.py",
        )
        log = run.directory / f"mucauth-{index}.log"
        run.logs.append(log)
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
    return await connect_many(host, port, users[: args.clients], PASSWORD)


def rooms_of(client: int) -> Callable[[int], str]:
    return lambda cycle: f"e{client}x{cycle % 16}@{SERVICE}"


async def measure(run: Run, args: argparse.Namespace, load: list[Connection]) -> dict[str, float]:
    result = LoopResult()
    window = Window()
    pids = {"ejabberd": run.ejabberd.process.pid}  # type: ignore[union-attr]
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
        "ejabberd ms/join": used["ejabberd"] * 1000 / joins,
        "mucauth ms/join": mucauth_cpu * 1000 / joins,
        "client ms/join": used["client"] * 1000 / joins,
        "other %": max(0.0, machine1 - machine0 - ours) * 100 / seconds,
    }


async def one_run(instances: int, args: argparse.Namespace, base: Path) -> list[dict[str, float]]:
    directory = base / f"n{instances}"
    directory.mkdir()
    ejabberd = EjabberdServer(
        directory / "ejabberd",
        component_domain=SERVICE,
        component_number=instances if instances > 1 else None,
        log_level="info",  # one line per connection, not per stanza
    )
    run = Run(instances, directory, ejabberd)
    try:
        load = await set_up(run, args)
        try:
            return [await measure(run, args, load) for _ in range(args.repeats)]
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
