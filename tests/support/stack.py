"""The whole real stack for end-to-end tests: an XMPP server (Prosody or ejabberd) + the example
auth service + ``twistd mucauth``, plus real XMPP clients.

The process running lives in ``examples/_stack.py`` (the demo uses it too); this module adds what
only tests need: the XMPP server from ``tests.support.prosody`` or ``tests.support.ejabberd``,
registered users, self-signed certificates, class-wide fixtures that also work under trial, and
PID bookkeeping so a test can check that nothing outlives the suite.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import unittest
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from examples._stack import (
    STARTED,
    AuthService,
    MucauthProcess,
    ProcessError,
    component_logins,
    free_port,
    pid_alive,
    tail,
    wait_until,
    write_tap_conf,
)
from tests.support.certs import self_signed
from tests.support.ejabberd import EjabberdServer
from tests.support.prosody import ProsodyServer
from tests.support.xmpp import XMPPClient

__all__ = [
    "SERVERS",
    "STARTED",
    "AuthService",
    "ClassFixture",
    "MucauthProcess",
    "Stack",
    "leftover_processes",
    "self_signed_certificate",
]

PASSWORD = "secret-{user}"
KEEP = os.environ.get("MUCAUTH_KEEP_E2E") == "1"  # keep the run folders to read the logs

# The XMPP servers a stack can run mucauth behind.
SERVERS = ("prosody", "ejabberd")

XMPPServer = ProsodyServer | EjabberdServer

# Stacks started and not yet stopped: their processes may legitimately be alive.
_ACTIVE: set[Stack] = set()


def xmpp_server(kind: str, directory: Path) -> XMPPServer:
    """A server of ``kind`` (one of SERVERS) with the same domains and interface."""
    if kind == "prosody":
        return ProsodyServer(directory)
    if kind == "ejabberd":
        return EjabberdServer(directory)
    raise ValueError(f"unknown XMPP server {kind!r}; one of {SERVERS}")


class Stack:
    """One XMPP server, one auth service, one mucauth connected to them, and some users.

    ``server`` is "prosody" (the default) or "ejabberd"; the server is ``self.server``
    (``self.prosody`` too, for Prosody-only code).

    ``rules`` is the auth service's rules object; ``http_options`` are extra
    ``[muc_http_auth]`` keys; ``url_query`` is appended to the auth URL (``?tenant=x``);
    ``auth_url`` replaces the auth service's URL entirely (e.g. a closed port); ``tls`` serves
    the auth service over HTTPS with a self-signed certificate, which ``ca_file`` also trusts.
    """

    def __init__(
        self,
        name: str,
        *,
        rules: Mapping[str, Any],
        users: tuple[str, ...] = ("alice", "bob", "carol"),
        accounts: tuple[str, ...] = (),
        http_options: Mapping[str, str] | None = None,
        sections: Mapping[str, Mapping[str, str]] | None = None,
        url_query: str = "",
        auth_url: str | None = None,
        token: str | None = None,
        tls: bool = False,
        ca_file: bool = False,
        server: str = "prosody",
        admin_token: str | None = None,
    ) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"mucauth-e2e-{name}-"))
        self.rules = rules
        self.users = users
        self.accounts = accounts  # registered in bulk before start, for load clients
        self.http_options = dict(http_options or {})
        self.sections = sections
        self.url_query = url_query
        self.auth_url = auth_url
        self.token = token
        self.tls = tls or ca_file
        self.ca_file = ca_file  # trust the self-signed certificate through [muc_http_auth] ca_file
        self.server_kind = server
        self.server: XMPPServer = xmpp_server(server, self.directory / server)
        self.auth: AuthService | None = None
        self.mucauth: MucauthProcess | None = None
        self.clients: list[XMPPClient] = []
        self.pids: list[int] = []
        self.url = ""
        # The admin API, on a port chosen at start, when the stack is given a token for it.
        self.admin_token = admin_token
        self.admin_port = 0

    @property
    def prosody(self) -> ProsodyServer:
        """The server, for code that only runs on Prosody (the link-fault proxy...)."""
        if not isinstance(self.server, ProsodyServer):
            raise TypeError(f"this stack runs {self.server_kind}, not Prosody")
        return self.server

    @property
    def component_domain(self) -> str:
        domain = self.server.component_domain
        assert domain is not None, "a stack's server always has mucauth's component"
        return domain

    def component_logins(self) -> int:
        """How many component handshakes the server accepted (one more per reconnect)."""
        if isinstance(self.server, EjabberdServer):
            return self.server.component_logins()
        return component_logins(self.server.log_text())

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> Stack:
        _ACTIVE.add(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        first = len(STARTED)
        self.server.add_accounts({user: PASSWORD.format(user=user) for user in self.accounts})
        self.server.start()
        STARTED.append((self.server.process.pid, self.server_kind))  # type: ignore[union-attr]
        for user in self.users:
            self.server.register(user, PASSWORD.format(user=user))
        tls = None
        if self.tls:
            tls = self_signed_certificate(self.directory / "tls")
            if self.ca_file:
                self.http_options["ca_file"] = str(tls[0])
        self.auth = AuthService(
            self.directory / "auth", self.rules, token=self.token, tls=tls, test_answers=True
        )
        self.url = (self.auth_url or self.auth.start()) + self.url_query
        if self.admin_token is not None:
            self.admin_port = free_port()
            admin = {"port": str(self.admin_port), "token": self.admin_token}
            self.sections = {**(self.sections or {}), "admin_api": admin}
        self.start_mucauth()
        self.pids = [pid for pid, _ in STARTED[first:]]

    def start_mucauth(self) -> None:
        config = write_tap_conf(
            self.directory / "tap.conf",
            jid=self.component_domain,
            host="127.0.0.1",
            port=self.server.component_port,
            secret=self.server.component_secret,
            url=self.url,
            http_options=self.http_options,
            sections=self.sections,
            log_level="info",
            writer="tests/support/stack.py",
        )
        self.mucauth = MucauthProcess(self.directory, config)
        logins = self.component_logins()
        self.mucauth.start(lambda: self.component_logins() > logins)
        self.pids.append(self.mucauth.process.pid)  # type: ignore[union-attr]

    def restart_server(self, timeout: float = 30.0) -> None:
        """Stop and start the XMPP server (same ports), then wait until mucauth has
        reconnected."""
        assert self.mucauth is not None
        # Both servers append to their log across a restart.
        logins = self.component_logins()
        self.server.restart()
        STARTED.append((self.server.process.pid, self.server_kind))  # type: ignore[union-attr]
        self.pids.append(self.server.process.pid)  # type: ignore[union-attr]
        for user in self.users:  # the data folder survives, but registering again is harmless
            self.server.register(user, PASSWORD.format(user=user))
        self.mucauth.wait_connected(lambda: self.component_logins() > logins, timeout)

    restart_prosody = restart_server  # the name Prosody-only tests use

    def stop(self) -> None:
        """Stop everything, whatever state it is in; safe to call twice."""
        for client in self.clients:
            try:
                client.disconnect()
            except Exception:  # keep stopping the rest
                pass
        self.clients.clear()
        if self.mucauth is not None:
            self.mucauth.stop()
        if self.auth is not None:
            self.auth.stop()
        self.server.stop()
        _ACTIVE.discard(self)
        if not KEEP:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers for tests -------------------------------------------------------------------

    def room(self, name: str) -> str:
        return f"{name}@{self.component_domain}"

    def jid(self, user: str) -> str:
        return f"{user}@{self.server.domain}"

    def client(self, user: str, timeout: float = 10.0) -> XMPPClient:
        """A logged-in client for ``user``, disconnected when the stack stops."""
        client = XMPPClient(
            self.jid(user),
            PASSWORD.format(user=user),
            "127.0.0.1",
            self.server.c2s_port,
            timeout=timeout,
        )
        self.clients.append(client)
        client.connect()
        return client

    def admin(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """One admin API request (``admin_token`` unless ``token``): its status and JSON body."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {token if token is not None else self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def mucauth_log(self) -> str:
        return self.mucauth.log_text() if self.mucauth is not None else ""

    def wait_mucauth_log(self, text: str, timeout: float = 5.0, since: int = 0) -> str:
        """Wait until mucauth's log (from offset ``since``) contains ``text``."""
        wait_until(
            lambda: text in self.mucauth_log()[since:],
            timeout,
            lambda: f"mucauth's log does not say {text!r}; its end:\n{tail(self.mucauth_log())}",
            interval=0.05,
        )
        return self.mucauth_log()[since:]

    def diagnostics(self) -> str:
        """The ends of every log, for failure messages."""
        parts = [f"mucauth.log:\n{tail(self.mucauth_log(), 25)}"]
        if self.auth is not None:
            parts.append(f"auth_service.log:\n{tail(self.auth.log_text())}")
        parts.append(f"{self.server_kind}.log:\n{tail(self.server.log_text())}")
        return "\n".join(parts)


def leftover_processes() -> list[str]:
    """Processes started by the tests, outside any running stack, that are still alive."""
    active = {pid for stack in _ACTIVE for pid in stack.pids}
    return [f"{what} (pid {pid})" for pid, what in STARTED if pid not in active and pid_alive(pid)]


def self_signed_certificate(directory: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throw-away certificate for ``name`` (an IP address or a host name), valid for a day.

    Written as (cert.pem, key.pem); the certificate is its own CA, so it doubles as a
    ``ca_file``.
    """
    return self_signed(name, [name]).write(directory)


class ClassFixture(unittest.TestCase):
    """Class-wide resources that work under pytest, unittest AND trial.

    trial ignores ``setUpClass``/``tearDownClass``, so the resources are also started lazily
    by the first ``setUp`` and stopped by the ``tearDown`` of the class's last test; an
    ``atexit`` hook stops whatever a partial run (one selected test) left. A start-up failure
    is remembered and reported by every test of the class instead of being retried.
    """

    _state: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def start_fixture(cls) -> Any:
        """Start and return the class's resources."""
        raise NotImplementedError

    @classmethod
    def stop_fixture(cls, fixture: Any) -> None:
        raise NotImplementedError

    @classmethod
    def fixture(cls) -> Any:
        state = ClassFixture._state.setdefault(cls, {"done": 0})
        if "error" in state:
            raise ProcessError(f"the class fixture failed to start: {state['error']}")
        if "fixture" not in state:
            try:
                state["fixture"] = cls.start_fixture()
            except BaseException as e:
                state["error"] = f"{type(e).__name__}: {e}"
                raise
            atexit.register(cls._stop_class)
        return state["fixture"]

    @classmethod
    def _stop_class(cls) -> None:
        state = ClassFixture._state.get(cls, {})
        fixture = state.pop("fixture", None)
        if fixture is not None:
            cls.stop_fixture(fixture)

    @classmethod
    def setUpClass(cls) -> None:
        if cls is not ClassFixture and "start_fixture" in _own_names(cls):
            try:
                cls.fixture()
            except BaseException:  # every test reports it from setUp
                pass

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop_class()

    def setUp(self) -> None:
        super().setUp()
        type(self).fixture()

    def tearDown(self) -> None:
        super().tearDown()
        cls = type(self)
        state = ClassFixture._state.setdefault(cls, {"done": 0})
        state["done"] += 1
        if state["done"] >= len(unittest.TestLoader().getTestCaseNames(cls)):
            cls._stop_class()


class StackFixture(ClassFixture):
    """Tests that share one Stack per class: the class's ``server`` and ``rules``, the stack as
    ``self.stack`` in each test."""

    server: ClassVar[str] = "prosody"
    rules: ClassVar[Mapping[str, Any]] = {"rules": [{"user": "*", "room": "*"}]}
    stack: Stack

    @classmethod
    def stack_options(cls) -> dict[str, Any]:
        """More of :class:`Stack`'s keyword arguments, for a class that needs them."""
        return {}

    @classmethod
    def start_fixture(cls) -> Stack:
        stack = Stack(cls.__name__, rules=cls.rules, server=cls.server, **cls.stack_options())
        stack.start()
        return stack

    @classmethod
    def stop_fixture(cls, fixture: Stack) -> None:
        fixture.stop()

    def setUp(self) -> None:
        super().setUp()
        self.stack = self.fixture()


def _own_names(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is ClassFixture:
            break
        names.update(vars(klass))
    return names
