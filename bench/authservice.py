"""A fast keep-alive HTTP authorization service for the benchmark, run as its own process.

It answers the mod_muc_http_auth contract (``GET ?userJID=…&mucJID=…&nickname=…`` ->
``{"allowed": true}``) with as little work as possible, so that the figures measure the
component, not this service. It counts what the component costs it: requests, TCP connections
opened, and the distinct connections that carried requests since the last look (a pooled
client keeps that number at its pool size; a client that reconnects per join makes it grow
with the joins).

Rooms whose name starts with ``slow`` are answered after ``--slow`` seconds, rooms starting
with ``deny`` get ``{"allowed": false}``. ``GET /stats`` returns the counters of every listener
as JSON and starts a new "distinct connections" period; it is never counted itself.

Usage: python bench/authservice.py --port P [--tls-port Q --cert C --key K] [--slow 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
from collections import deque
from urllib.parse import parse_qs, urlsplit

ALLOW = b'{"allowed": true}'
DENY = b'{"allowed": false, "error": "bench: room starts with deny"}'
MAX_HEAD = 16 * 1024


def response(status: str, body: bytes, keep_alive: bool = True) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: "
        + connection
        + b"\r\n\r\n"
        + body
    )


ALLOW_RESPONSE = response("200 OK", ALLOW)
DENY_RESPONSE = response("200 OK", DENY)


class Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0  # opened by clients that sent at least one auth request
        self.used: set[int] = set()  # connection ids that carried requests this period

    def snapshot(self) -> dict[str, int]:
        data = {"requests": self.requests, "connections": self.connections, "used": len(self.used)}
        self.used = set()
        return data


class AuthProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; answers keep the order of the requests."""

    _next_id = 0

    def __init__(self, name: str, counters: dict[str, Counters], slow: float) -> None:
        self.name = name
        self.counters = counters
        self.mine = counters[name]
        self.slow = slow
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.counted = False
        AuthProtocol._next_id += 1
        self.id = AuthProtocol._next_id
        # Answers wait here until every earlier answer on this connection is written.
        self.queue: deque[list[bytes | None]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD and self.transport is not None:
                    self.transport.close()
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.request(head)

    def request(self, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "GET":
            self.answer(response("400 Bad Request", b"{}", keep_alive=False))
            return
        target = urlsplit(parts[1])
        if target.path == "/stats":
            body = json.dumps({k: c.snapshot() for k, c in self.counters.items()}).encode()
            self.answer(response("200 OK", body, keep_alive=False))
            if self.transport is not None:
                self.transport.close()  # after the buffered answer is written
            return
        mine = self.mine
        mine.requests += 1
        mine.used.add(self.id)
        if not self.counted:
            self.counted = True
            mine.connections += 1
        room = parse_qs(target.query).get("mucJID", [""])[0]
        if room.startswith("slow"):
            cell: list[bytes | None] = [None]
            self.queue.append(cell)
            asyncio.get_running_loop().call_later(self.slow, self.fill, cell, ALLOW_RESPONSE)
        elif room.startswith("deny"):
            self.answer(DENY_RESPONSE)
        else:
            self.answer(ALLOW_RESPONSE)

    def answer(self, data: bytes) -> None:
        if not self.queue and self.transport is not None:
            self.transport.write(data)  # the common case: nothing earlier is pending
            return
        self.queue.append([data])
        self.flush()

    def fill(self, cell: list[bytes | None], data: bytes) -> None:
        cell[0] = data
        self.flush()

    def flush(self) -> None:
        ready = []
        queue = self.queue
        while queue and queue[0][0] is not None:
            ready.append(queue.popleft()[0])
        if ready and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(ready))  # type: ignore[arg-type]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--slow", type=float, default=0.2)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    counters = {"http": Counters(), "https": Counters()}
    servers = [
        await loop.create_server(
            lambda: AuthProtocol("http", counters, args.slow), "127.0.0.1", args.port, backlog=1024
        )
    ]
    if args.tls_port:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        servers.append(
            await loop.create_server(
                lambda: AuthProtocol("https", counters, args.slow),
                "127.0.0.1",
                args.tls_port,
                ssl=context,
                backlog=1024,
            )
        )
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
