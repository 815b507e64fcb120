"""Two ejabberd nodes in one cluster, on this machine, for ``tests/test_cluster.py`` (through
``tests/support/cluster.py``) and ``bench/ejabberd.py --cluster``.

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

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from examples._ejabberd import ERL, ERL_LIBS, EjabberdError, EjabberdServer
from examples._stack import free_port

__all__ = ["ClusterNode", "EjabberdCluster", "password"]

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
