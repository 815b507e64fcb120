"""A real in-process HTTP(S) authorization service whose answers a test programs.

It records each request and counts TCP connections, so tests can check what went on the wire
(query, headers), that connections are reused, and that a timed-out check really closed its
socket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

Handler = Callable[[Request], bytes | int]


@dataclass
class Seen:
    """One request as the server saw it."""

    method: bytes
    uri: bytes
    path: bytes
    args: dict[bytes, list[bytes]]
    headers: dict[bytes, Sequence[bytes]]

    def arg(self, name: str) -> str:
        [value] = self.args[name.encode()]
        return value.decode("utf-8")

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower().encode())
        return values[-1].decode("latin-1") if values else None


def answer(code: int = 200, body: bytes = b'{"allowed": true}', **headers: str) -> Handler:
    """A complete answer with a Content-Length."""

    def handle(request: Request) -> bytes:
        request.setResponseCode(code)
        for name, value in headers.items():
            request.setHeader(name.replace("_", "-"), value)
        if "content_type" not in headers:
            request.setHeader("Content-Type", "application/json")
        return body

    return handle


def never_answer() -> Handler:
    """Accept the request and send nothing at all."""

    def handle(request: Request) -> int:
        return NOT_DONE_YET

    return handle


def stall_after_headers(first: bytes = b'{"allow') -> Handler:
    """Send the status line, headers and a few body bytes, then nothing more."""

    def handle(request: Request) -> int:
        request.setResponseCode(200)
        request.setHeader("Content-Type", "application/json")
        request.write(first)  # no Content-Length: chunked, the client cannot know the end
        return NOT_DONE_YET

    return handle


def huge_body(size: int = 1024 * 1024, chunked: bool = False) -> Handler:
    """A body far past the client's cap, with or without a Content-Length."""

    def handle(request: Request) -> int | bytes:
        request.setHeader("Content-Type", "application/json")
        body = b'{"allowed": true, "pad": "' + b"x" * size + b'"}'
        if not chunked:
            return body
        for start in range(0, len(body), 16384):
            request.write(body[start : start + 16384])
        request.finish()
        return NOT_DONE_YET

    return handle


class AuthResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.handler: Handler = answer()
        self.requests: list[Seen] = []
        self.pending: list[Request] = []

    def render(self, request: Request) -> bytes | int:
        self.requests.append(
            Seen(
                method=request.method,
                uri=request.uri,
                path=request.path,
                args=dict(request.args or {}),
                headers={k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()},
            )
        )
        result = self.handler(request)
        if result is NOT_DONE_YET:
            self.pending.append(request)
        return result


class _Tracked(ProtocolWrapper):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.closed: Deferred[None] = Deferred()
        self.factory.connections.append(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.closed.callback(None)


class _CountingFactory(WrappingFactory):
    protocol = _Tracked

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.connections: list[_Tracked] = []


@dataclass
class AuthServer:
    """A listening auth service; ``stop()`` closes the port and every open connection."""

    resource: AuthResource
    port: Any
    scheme: str
    factory: _CountingFactory
    host: str = "127.0.0.1"
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port.getHost().port}/muc/auth"

    @property
    def connection_count(self) -> int:
        return len(self.factory.connections)

    @property
    def open_connections(self) -> list[_Tracked]:
        return [c for c in self.factory.connections if not c.closed.called]

    def all_closed(self) -> Deferred[Any]:
        return DeferredList([c.closed for c in self.factory.connections])

    def stop(self) -> Deferred[Any]:
        if self._stopped:
            return succeed(None)
        self._stopped = True
        stopping = self.port.stopListening()
        for conn in self.open_connections:
            cast(ITCPTransport, conn.transport).abortConnection()
        return DeferredList([stopping, self.all_closed()])


def start_server(reactor: Any = None, tls: Any = None) -> AuthServer:
    """Listen on 127.0.0.1, an ephemeral port; ``tls`` is a server context factory for HTTPS."""
    reactor = reactor or global_reactor
    resource = AuthResource()
    site = Site(resource)
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]  # access logs are the server's
    factory = _CountingFactory(site)
    if tls is None:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        scheme = "http"
    else:
        port = reactor.listenSSL(0, factory, tls, interface="127.0.0.1")
        scheme = "https"
    return AuthServer(resource, port, scheme, factory)
