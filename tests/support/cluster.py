"""Two ejabberd nodes in one cluster, on this machine, for ``tests/test_cluster.py`` and
``bench/ejabberd.py --cluster``.

Each node is an :class:`~tests.support.ejabberd.EjabberdServer` with its own ports, spool and
node name; the second joins the first's Mnesia (``ejabberd_admin:join_cluster``, what
``ejabberdctl join_cluster`` runs), so users, routes and ``domain_balancing`` slots are shared.

No epmd: with ``-erl_epmd_port P`` every node of a cluster listens for distribution on port P
and looks its peers up there, so the nodes are told apart by address instead, each on its own
loopback address (``n1@127.0.0.1``, ``n2@127.0.0.2``). The join is made from a short-lived
hidden node on ``127.0.0.3``, as ejabberdctl would, because the join restarts ejabberd on the
joining node and would cut an API call made through it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from examples._ejabberd import ERL, ERL_LIBS, EjabberdError, EjabberdServer
from examples._stack import MucauthProcess, free_port, tail
from tests.support.xmpp import XMPPClient

__all__ = ["ClusterNode", "ClusteredShards", "EjabberdCluster", "password"]

AUTHENTICATED = "component link: authenticated"


def password(user: str) -> str:
    return f"secret-{user}"


class ClusterNode(EjabberdServer):
    """One node: named after its own loopback address, distribution on the shared port."""

    def __init__(self, directory: Path, address: str, dist_port: int, cookie: str, **kw: object):
        super().__init__(directory, **kw)  # type: ignore[arg-type]
        self.address = address
        self.dist_port = dist_port
        self.cookie = cookie
        self.node = f"mucauth-{dist_port}@{address}"

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("-sname")] = "-name"
        interface = "{" + self.address.replace(".", ",") + "}"
        command[command.index("{127,0,0,1}")] = interface
        return command


class EjabberdCluster:
    """``size`` nodes, one cluster; node 0 is the first, the others joined it."""

    def __init__(
        self,
        directory: Path,
        size: int = 2,
        *,
        component_number: int | None = None,
        log_level: str = "info",
    ) -> None:
        self.directory = directory
        dist_port = free_port()
        cookie = f"mucauth-cluster-{dist_port}"
        self.nodes = [
            ClusterNode(
                directory / f"node{n + 1}",
                f"127.0.0.{n + 1}",
                dist_port,
                cookie,
                component_number=component_number,
                log_level=log_level,
            )
            for n in range(size)
        ]
        self._accounts: dict[str, str] = {}

    @property
    def domain(self) -> str:
        return self.nodes[0].domain

    @property
    def component_domain(self) -> str:
        return self.nodes[0].component_domain

    @property
    def component_secret(self) -> str:
        return self.nodes[0].component_secret

    def start(self) -> EjabberdCluster:
        first, *others = self.nodes
        first.start()
        for node in others:
            node.start()
            self.join(node, first)
        return self

    def join(self, node: ClusterNode, to: ClusterNode, timeout: float = 30.0) -> None:
        """Make ``node`` a member of ``to``'s cluster; ejabberd restarts on ``node``."""
        offset = len(node.log_text())
        ctl = node.address.rsplit(".", 1)[0] + ".250"
        call = (
            f"R = rpc:call('{node.node}', ejabberd_admin, join_cluster,"
            f' [<<"{to.node}">>], {int(timeout * 1000)}),'
            ' io:format("~p~n", [R]), halt().'
        )
        result = subprocess.run(
            [
                ERL,
                "-name",
                f"ctl-{node.dist_port}@{ctl}",
                "-setcookie",
                node.cookie,
                "-hidden",
                "-erl_epmd_port",
                str(node.dist_port),
                "-start_epmd",
                "false",
                "-kernel",
                "inet_dist_use_interface",
                "{" + ctl.replace(".", ",") + "}",
                "-noinput",
                "-eval",
                call,
            ],
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            env={"ERL_LIBS": ERL_LIBS, "PATH": "/usr/bin:/bin"},
            check=False,
        )
        if "ok" not in result.stdout.split():
            raise EjabberdError(
                f"{node.node} could not join {to.node}: {result.stdout}{result.stderr}"
            )
        # ejabberd restarted on the joining node: wait for its listeners again.
        wanted = [f"Start accepting TCP connections at 127.0.0.1:{p} " for p in node.ports()]
        deadline = time.monotonic() + timeout
        while not all(line in node.log_text()[offset:] for line in wanted):
            if time.monotonic() > deadline:
                raise EjabberdError(f"{node.node} did not come back after joining {to.node}")
            time.sleep(0.05)

    def members(self, node: int = 0) -> object:
        return self.nodes[node].api("list_cluster", {})

    def add_accounts(self, accounts: Mapping[str, str]) -> None:
        """Registered once, on the first node: the cluster shares its user table."""
        self.nodes[0].add_accounts(accounts)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


class ClusteredShards:
    """Two ejabberd nodes in a cluster, ``domain_balancing`` over two slots, one mucauth
    process on each node's component port, one PostgreSQL for both, and the example auth
    service. ``users`` maps each user to the node (0 or 1) its client logs in to.

    mucauth instance ``i`` connects to node ``i``. ejabberd's slots are cluster-wide and given
    in connection order, so the instances start one at a time (instance 0 holds slot 1).
    """

    def __init__(
        self,
        users: Mapping[str, int],
        rules: Mapping[str, object],
        *,
        log_level: str = "debug",
    ) -> None:
        import tempfile

        from tests.support.postgres import PostgresCluster
        from tests.support.stack import AuthService

        self.directory = Path(tempfile.mkdtemp(prefix="mucauth-cluster-"))
        self.users = dict(users)
        self.log_level = log_level
        self.cluster = EjabberdCluster(self.directory / "ejabberd", component_number=2)
        self.postgres = PostgresCluster()  # its own temp dir: owned by the postgres user
        self.auth = AuthService(self.directory / "auth", rules, test_answers=True)
        self.database = ""
        self.instances: list[MucauthProcess] = []
        self.clients: dict[str, XMPPClient] = {}

    def start(self) -> ClusteredShards:
        from examples._stack import write_tap_conf
        from tests.support.stack import STARTED

        try:
            self.postgres.start()
            self.database = self.postgres.create_database()
            self.cluster.start()
            for node in self.cluster.nodes:
                STARTED.append((node.pid, "ejabberd"))
            self.cluster.add_accounts({user: password(user) for user in self.users})
            url = self.auth.start()
            for index, node in enumerate(self.cluster.nodes):
                directory = self.directory / f"mucauth-{index}"
                directory.mkdir()
                config = write_tap_conf(
                    directory / "tap.conf",
                    jid=node.component_domain,
                    host="127.0.0.1",
                    port=node.component_port,
                    secret=node.component_secret,
                    url=url,
                    component_options={"reconnect_max_delay": "1"},
                    sections={"storage": {"url": self.postgres.url(self.database)}},
                    log_level=self.log_level,
                    writer="tests/support/cluster.py",
                )
                self.instances.append(MucauthProcess(directory, config))
                self.start_instance(index)
            for user in self.users:
                self.connect(user)
        except BaseException:
            self.stop()
            raise
        return self

    def connect(self, user: str) -> XMPPClient:
        node = self.cluster.nodes[self.users[user]]
        client = XMPPClient(
            f"{user}@{node.domain}", password(user), "127.0.0.1", node.c2s_port
        ).connect()
        self.clients[user] = client
        return client

    def start_instance(self, index: int) -> None:
        instance = self.instances[index]
        offset = len(instance.log_text())
        instance.start(lambda: AUTHENTICATED in instance.log_text()[offset:])

    def crash_instance(self, index: int) -> None:
        """SIGKILL: no shutdown notice; ejabberd only sees the socket close."""
        process = self.instances[index].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.instances[index].stop()

    def room(self, name: str) -> str:
        return f"{name}@{self.cluster.component_domain}"

    def owners(self, room: str) -> list[int]:
        """The instances that logged a join decision about ``room``."""
        field = f"room={room} "
        return [i for i, p in enumerate(self.instances) if field in p.log_text()]

    def diagnostics(self) -> str:
        parts = [
            f"mucauth-{i}.log:\n{tail(p.log_text(), 12)}" for i, p in enumerate(self.instances)
        ]
        for n, node in enumerate(self.cluster.nodes):
            parts.append(f"ejabberd node {n + 1}:\n{tail(node.log_text(), 6)}")
        return "\n".join(parts)

    def wait_written(self, rooms: list[str], timeout: float = 10.0) -> None:
        """Writes are batched: wait until PostgreSQL has each room's subject and a message."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.postgres.execute(
                self.database,
                "SELECT r.jid FROM rooms r WHERE r.subject <> '' "
                "AND EXISTS (SELECT 1 FROM messages m WHERE m.room = r.jid)",
            )
            missing = set(rooms) - {row[0] for row in rows}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not written after {timeout} s: {sorted(missing)}")
            time.sleep(0.05)

    def stop(self) -> None:
        for client in self.clients.values():
            try:
                client.disconnect()
            except Exception:  # keep stopping the rest
                pass
        self.clients.clear()
        for instance in self.instances:
            instance.stop()
        self.auth.stop()
        self.cluster.stop()
        self.postgres.remove()
        shutil.rmtree(self.directory, ignore_errors=True)
