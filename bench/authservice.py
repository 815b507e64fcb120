"""A fast keep-alive HTTP authorization service for the benchmark, run as its own process.

It answers the mod_muc_http_auth contract (``GET ?userJID=…&mucJID=…&nickname=…`` ->
``{"allowed": true}``) with as little work as possible, so that the figures measure the
component, not this service. It counts what the component costs it: requests, TCP connections
opened, and the distinct connections that carried requests since the last look (a pooled
client keeps that number at its pool size; a client that reconnects per join makes it grow
with the joins).

Rooms whose name starts with ``slow`` are answered after ``--slow`` seconds, rooms starting
with ``deny`` get ``{"allowed": false}``. ``--delay`` answers every other request after that many
seconds, a stand-in for a real web application's latency (0, the default: at once).

``GET /stats`` returns the counters of every listener as JSON and starts a new period for the
per-period figures: "used" (distinct connections) and "peak_in_flight" (most requests received
and not yet answered at one time; a new period starts from the number in flight now). It is
never counted itself. The in-flight figures show how many checks the component asks at once,
which mucauth bounds by its pool size however many joins wait in its queue.

Usage: python bench/authservice.py --port P [--tls-port Q --cert C --key K] [--slow 0.2]
       [--delay 0.005]
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
        self.in_flight = 0  # auth requests received whose answer is not written yet
        self.peak_in_flight = 0  # the most at once this period

    def started(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def finished(self, count: int = 1) -> None:
        self.in_flight -= count

    def snapshot(self) -> dict[str, int]:
        data = {
            "requests": self.requests,
            "connections": self.connections,
            "used": len(self.used),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }
        self.used = set()
        self.peak_in_flight = self.in_flight
        return data


class Pending:
    """One answer queued on a connection: ``data`` is None until it is ready (a slow room);
    ``auth`` tells an authorization answer (counted in flight) from a 400 or /stats."""

    __slots__ = ("auth", "data")

    def __init__(self, data: bytes | None, auth: bool) -> None:
        self.data = data
        self.auth = auth


class AuthProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; answers keep the order of the requests."""

    _next_id = 0

    def __init__(
        self, name: str, counters: dict[str, Counters], slow: float, delay: float = 0.0
    ) -> None:
        self.name = name
        self.counters = counters
        self.mine = counters[name]
        self.slow = slow
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.counted = False
        AuthProtocol._next_id += 1
        self.id = AuthProtocol._next_id
        # Answers wait here until every earlier answer on this connection is written.
        self.queue: deque[Pending] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        # Requests that will never be answered are no longer in flight; a timer that fires
        # later fills an entry that is no longer queued, which counts nothing twice.
        self.mine.finished(sum(1 for pending in self.queue if pending.auth))
        self.queue.clear()

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
        mine.started()
        if not self.counted:
            self.counted = True
            mine.connections += 1
        room = parse_qs(target.query).get("mucJID", [""])[0]
        data = DENY_RESPONSE if room.startswith("deny") else ALLOW_RESPONSE
        delay = self.slow if room.startswith("slow") else self.delay
        if delay > 0:
            # A timer, not a task per request: as cheap as a slow application can be modelled.
            pending = Pending(None, auth=True)
            self.queue.append(pending)
            asyncio.get_running_loop().call_later(delay, self.fill, pending, data)
        else:
            self.answer(data, auth=True)

    def answer(self, data: bytes, auth: bool = False) -> None:
        if not self.queue and self.transport is not None:
            self.transport.write(data)  # the common case: nothing earlier is pending
            if auth:
                self.mine.finished()
            return
        self.queue.append(Pending(data, auth))
        self.flush()

    def fill(self, pending: Pending, data: bytes) -> None:
        pending.data = data
        self.flush()

    def flush(self) -> None:
        ready: list[bytes] = []
        queue = self.queue
        answered = 0
        while queue and queue[0].data is not None:
            pending = queue.popleft()
            assert pending.data is not None
            ready.append(pending.data)
            answered += pending.auth
        self.mine.finished(answered)
        if ready and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(ready))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--slow", type=float, default=0.2, help="seconds for slow* rooms")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds before answering any other request"
    )
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    counters = {"http": Counters(), "https": Counters()}
    servers = [
        await loop.create_server(
            lambda: AuthProtocol("http", counters, args.slow, args.delay),
            "127.0.0.1",
            args.port,
            backlog=1024,
        )
    ]
    if args.tls_port:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        servers.append(
            await loop.create_server(
                lambda: AuthProtocol("https", counters, args.slow, args.delay),
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
