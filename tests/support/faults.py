"""A raw TCP server that misbehaves on purpose, for fault tests of clients (HTTP, TLS).

``tests/support/http_server.py`` is a real HTTP server whose answers a test programs; this one is
below HTTP: it decides byte by byte what goes on the wire, when, and how the connection ends
(reset, half a body, a trickle, nothing at all, garbage instead of a TLS handshake). Every
connection is tracked, so a test can check that the client closed its side.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall

Behaviour = Callable[["FaultConnection"], None]

OK_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
    b'{"allowed": true}'
)


class FaultConnection(Protocol):
    """One accepted connection; ``behaviour`` runs once the request's headers are in."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.received = b""
        self.started = False
        self.closed: Deferred[None] = Deferred()
        self.trickle: LoopingCall | None = None

    def connectionMade(self) -> None:
        self.server.connections.append(self)
        if self.server.on_connect:
            self.server.behaviour(self)
            self.started = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.started and b"\r\n\r\n" in self.received:
            self.started = True
            self.server.behaviour(self)

    def connectionLost(self, reason: Any = None) -> None:
        if self.trickle is not None and self.trickle.running:
            self.trickle.stop()
        self.closed.callback(None)

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN: what a crashing peer or a firewall does."""
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abortConnection()  # type: ignore[union-attr]


@dataclass
class FaultServer:
    behaviour: Behaviour
    on_connect: bool = False  # run the behaviour at accept time, before any byte arrives
    connections: list[FaultConnection] = field(default_factory=list)
    port: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port.getHost().port}"

    @property
    def open_connections(self) -> list[FaultConnection]:
        return [c for c in self.connections if not c.closed.called]

    def all_closed(self) -> Deferred[Any]:
        return DeferredList([c.closed for c in self.connections])

    def stop(self) -> Deferred[Any]:
        if self.port is None:
            return succeed(None)
        port, self.port = self.port, None
        stopping = port.stopListening()
        for connection in self.open_connections:
            connection.transport.abortConnection()  # type: ignore[union-attr]
        return DeferredList([stopping, self.all_closed()])


def start_fault_server(behaviour: Behaviour, *, on_connect: bool = False) -> FaultServer:
    server = FaultServer(behaviour, on_connect)
    factory = Factory.forProtocol(lambda: FaultConnection(server))  # type: ignore[arg-type]
    factory.noisy = False
    # Twisted types the factory as ServerFactory[_ProtoWithFactory]; any protocol factory works.
    server.port = global_reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    return server


# -- behaviours


def silent(connection: FaultConnection) -> None:
    """Accept, read, never say a word: a hung service, or a TLS handshake that never starts."""


def reset_mid_body(connection: FaultConnection) -> None:
    """Promise 100 bytes, send a few, then reset the connection."""
    connection.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"allowed": tr'
    )
    global_reactor.callLater(0.05, connection.reset)  # type: ignore[attr-defined]


def reset_before_answer(connection: FaultConnection) -> None:
    connection.reset()


def close_mid_body(connection: FaultConnection) -> None:
    """A clean FIN after half of a Content-Length body."""
    connection.transport.write(  # type: ignore[union-attr]
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"allowed": true}'
    )
    connection.transport.loseConnection()  # type: ignore[union-attr]


def garbage(connection: FaultConnection) -> None:
    """Bytes that are neither HTTP nor TLS."""
    connection.transport.write(os.urandom(64) + b"\r\n\r\n")  # type: ignore[union-attr]


def trickle(interval: float, answer: bytes = OK_ANSWER) -> Behaviour:
    """A complete, correct answer, one byte every ``interval`` seconds."""

    def behave(connection: FaultConnection) -> None:
        remaining = bytearray(answer)

        def one_byte() -> None:
            if not remaining:
                connection.trickle.stop()  # type: ignore[union-attr]
                return
            connection.transport.write(bytes(remaining[:1]))  # type: ignore[union-attr]
            del remaining[:1]

        connection.trickle = LoopingCall(one_byte)
        connection.trickle.start(interval)

    return behave


def open_fds() -> int:
    """File descriptors this process holds now (Linux)."""
    return len(os.listdir("/proc/self/fd"))


def sockets_on_port(port: int) -> int:
    """File descriptors of this process that are TCP sockets from or to ``port`` (Linux).

    Unlike a plain count of descriptors, this ignores whatever else the process opens or closes
    meanwhile (another test's client shutting down, the reactor's thread pool).
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (
                int(local.rsplit(":", 1)[1], 16) == port
                or int(remote.rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(inode)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count
