"""Several mucauth processes behind one ejabberd with ``domain_balancing``: the fixture that
``tests/test_sharding.py`` and the join-storm tests share.

ejabberd gives out its ``component_number`` slots in connection order, so the instances start
one at a time; each instance's url may carry ``?shard=<index>`` so the auth service's ``/stats``
tells the instances' loads apart.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from examples._stack import tail, write_tap_conf
from tests.support.ejabberd import EjabberdServer
from tests.support.stack import STARTED, AuthService, MucauthProcess
from tests.support.xmpp import XMPPClient

PASSWORD = "secret-{user}"
INSTANCES = 2
AUTHENTICATED = "component link: authenticated"
RULES = {
    "rules": [
        {"user": "carol@localhost", "room": "*", "allow": False, "reason": "carol stays out"},
        {"user": "*", "room": "*"},
    ]
}


def authenticated_since(instance: MucauthProcess, offset: int) -> Callable[[], bool]:
    """True once the instance's log, past ``offset``, says its link authenticated."""
    return lambda: AUTHENTICATED in instance.log_text()[offset:]


class Shards:
    """One ejabberd balancing a component domain over ``count`` mucauth processes.

    ``users`` get a slixmpp client each (``clients``); ``accounts`` are only registered, for
    load clients. ``http_options`` and ``sections`` go into every instance's tap.conf;
    ``shard_query`` appends ``?shard=<index>`` to each instance's url; ``instance_sections``
    gives an instance's own sections (its ``[admin_api] port``), on top of ``sections``.
    """

    def __init__(
        self,
        count: int = INSTANCES,
        users: tuple[str, ...] = ("alice", "bob", "carol"),
        *,
        rules: Mapping[str, Any] = RULES,
        accounts: tuple[str, ...] = (),
        http_options: Mapping[str, str] | None = None,
        sections: Mapping[str, Mapping[str, str]] | None = None,
        shard_query: bool = False,
        log_level: str = "debug",
        instance_sections: Callable[[int], Mapping[str, Mapping[str, str]]] | None = None,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mucauth-sharding-"))
        self.count = count
        self.users = users
        self.accounts = accounts
        self.http_options = http_options
        self.sections = sections
        self.shard_query = shard_query
        self.log_level = log_level
        self.instance_sections = instance_sections
        self.ejabberd = EjabberdServer(self.directory / "ejabberd", component_number=count)
        self.auth = AuthService(self.directory / "auth", rules, test_answers=True)
        self.instances: list[MucauthProcess] = []
        self.clients: dict[str, XMPPClient] = {}

    def start(self) -> Shards:
        try:
            self.ejabberd.start()
            STARTED.append((self.ejabberd.process.pid, "ejabberd"))  # type: ignore[union-attr]
            self.ejabberd.add_accounts(
                {user: PASSWORD.format(user=user) for user in (*self.users, *self.accounts)}
            )
            url = self.auth.start()
            for index in range(self.count):
                directory = self.directory / f"mucauth-{index}"
                directory.mkdir()
                config = write_tap_conf(
                    directory / "tap.conf",
                    jid=self.ejabberd.component_domain,
                    host="127.0.0.1",
                    port=self.ejabberd.component_port,
                    secret=self.ejabberd.component_secret,
                    url=url + (f"?shard={index}" if self.shard_query else ""),
                    http_options=self.http_options,
                    sections=self._sections(index),
                    log_level=self.log_level,
                    writer="tests/support/shards.py",
                )
                self.instances.append(MucauthProcess(directory, config))
                # One at a time: ejabberd gives out slots in connection order.
                self.start_instance(index)
            self.connect_clients()
        except BaseException:
            self.stop()
            raise
        return self

    def _sections(self, index: int) -> Mapping[str, Mapping[str, str]] | None:
        if self.instance_sections is None:
            return self.sections
        merged = {name: dict(keys) for name, keys in (self.sections or {}).items()}
        for name, keys in self.instance_sections(index).items():
            merged.setdefault(name, {}).update(keys)
        return merged

    def connect_clients(self) -> None:
        for user in self.users:
            self.clients[user] = XMPPClient(
                f"{user}@{self.ejabberd.domain}",
                PASSWORD.format(user=user),
                "127.0.0.1",
                self.ejabberd.c2s_port,
            ).connect()

    def restart_ejabberd(self, timeout: float = 20.0) -> None:
        """Restart ejabberd (same ports, same users); wait until every instance is back."""
        offsets = [len(p.log_text()) for p in self.instances]
        for client in self.clients.values():
            client.disconnect()
        self.clients.clear()
        self.ejabberd.restart()
        STARTED.append((self.ejabberd.process.pid, "ejabberd"))  # type: ignore[union-attr]
        for instance, offset in zip(self.instances, offsets, strict=True):
            instance.wait_connected(authenticated_since(instance, offset), timeout)
        self.connect_clients()

    def start_instance(self, index: int) -> None:
        instance = self.instances[index]
        instance.start(authenticated_since(instance, len(instance.log_text())))

    def crash_instance(self, index: int) -> None:
        """SIGKILL: no shutdown notice, no goodbye to ejabberd beyond the closed socket."""
        process = self.instances[index].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.instances[index].stop()  # forget it (and kill anything left in its group)

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
        self.ejabberd.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def room(self, name: str) -> str:
        return f"{name}@{self.ejabberd.component_domain}"

    def owners(self, room: str) -> list[int]:
        """The instances that logged a decision about ``room`` (it must be exactly one)."""
        field = f"room={room} "
        return [i for i, p in enumerate(self.instances) if field in p.log_text()]

    def diagnostics(self) -> str:
        parts = [
            f"mucauth-{i}.log:\n{tail(p.log_text(), 10)}" for i, p in enumerate(self.instances)
        ]
        parts.append(f"ejabberd.log:\n{tail(self.ejabberd.log_text(), 10)}")
        return "\n".join(parts)
