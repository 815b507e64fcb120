"""The cluster the end-to-end tests run: two ejabberd nodes (``examples/_cluster.py``), a
mucauth process behind each, one PostgreSQL and the example auth service."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from examples._cluster import AUTHENTICATED, EjabberdCluster, password
from examples._stack import MucauthProcess, tail, write_tap_conf
from examples._xmpp import JoinResult, XMPPClient
from tests.support.postgres import PostgresCluster
from tests.support.stack import STARTED, AuthService, ClassFixture

__all__ = ["ClusterFixture", "ClusteredShards"]


class ClusteredShards:
    """Two ejabberd nodes in a cluster, ``domain_balancing`` over two slots, one mucauth
    process on each node's component port, one PostgreSQL for both, and the example auth
    service. ``users`` maps each user to the node (0 or 1) its client logs in to.

    mucauth instance ``i`` connects to node ``i``. ejabberd's slots are cluster-wide and given
    in connection order, so the instances start one at a time (instance 0 holds slot 1).

    ``standbys``: that many more instances, started last (instance 2 on node 1, ...), and every
    instance runs with ``[component] standby = true``: the extra ones hold no slot and wait for
    one to be freed.
    """

    def __init__(
        self,
        users: Mapping[str, int],
        rules: Mapping[str, object],
        *,
        log_level: str = "debug",
        standbys: int = 0,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mucauth-cluster-"))
        self.standbys = standbys
        self.users = dict(users)
        self.log_level = log_level
        self.cluster = EjabberdCluster(self.directory / "ejabberd", component_number=2)
        self.postgres = PostgresCluster()  # its own temp dir: owned by the postgres user
        self.auth = AuthService(self.directory / "auth", rules, test_answers=True)
        self.database = ""
        self.instances: list[MucauthProcess] = []
        self.clients: dict[str, XMPPClient] = {}

    def start(self) -> ClusteredShards:
        try:
            self.postgres.start()
            self.database = self.postgres.create_database()
            self.cluster.start()
            for node in self.cluster.nodes:
                STARTED.append((node.pid, "ejabberd"))
            self.cluster.add_accounts({user: password(user) for user in self.users})
            url = self.auth.start()
            nodes = self.cluster.nodes
            component_options = {"reconnect_max_delay": "1"}
            if self.standbys:
                component_options["standby"] = "true"
            for index in range(len(nodes) + self.standbys):
                node = nodes[index % len(nodes)]
                directory = self.directory / f"mucauth-{index}"
                directory.mkdir()
                config = write_tap_conf(
                    directory / "tap.conf",
                    jid=node.component_domain,
                    host="127.0.0.1",
                    port=node.component_port,
                    secret=node.component_secret,
                    url=url,
                    component_options=component_options,
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


class ClusterFixture(ClassFixture):
    """Tests that share one :class:`ClusteredShards` per class: the class's ``users`` (user to
    node), ``rules`` and ``standbys``, the cluster as ``self.shards`` in each test."""

    users: ClassVar[Mapping[str, int]]
    rules: ClassVar[Mapping[str, Any]]
    standbys: ClassVar[int] = 0
    shards: ClusteredShards

    @classmethod
    def start_fixture(cls) -> ClusteredShards:
        return ClusteredShards(cls.users, cls.rules, standbys=cls.standbys).start()

    @classmethod
    def stop_fixture(cls, fixture: ClusteredShards) -> None:
        fixture.stop()

    def setUp(self) -> None:
        super().setUp()
        self.shards = self.fixture()

    def client(self, user: str) -> XMPPClient:
        return self.shards.clients[user]

    def joined(self, user: str, room: str) -> JoinResult:
        result = self.client(user).join(room, user)
        self.assertTrue(result.ok, result.describe() + "\n" + self.shards.diagnostics())
        return result
