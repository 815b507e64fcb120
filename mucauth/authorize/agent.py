"""The agent under treq for the authorization service: one origin, persistent connections.

Twisted's ``Agent`` serves any URL: every request parses its URI, looks up an endpoint and a
pool key, builds a ``Request`` that writes itself header by header, and a protocol that parses
the answer line by line in Python, with eight Deferreds on the way (bench/PROFILE.md). The
checks ask one server the same question with other parameters, so this agent knows its origin
from the start: the endpoint (plain or TLS, built as Twisted's agent builds it, with the same
TLS policy) and the ``Host`` value are made once; a request's URI only has its origin cut off;
the request goes out as one write on a pooled connection (:mod:`mucauth.authorize.pool`) whose
answers are parsed by httptools (:mod:`mucauth.authorize.connection`).

Within that, it is an ``IAgent`` as treq expects one: ``request()`` returns a cancellable
Deferred firing with an ``IResponse`` whose body is delivered to a protocol.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from mucauth.authorize.pool import IDLE_TIMEOUT, CountingConnectionPool

__all__ = ["OriginAgent"]

# Sent as they are: safe to send again on a new connection when a reused one was found closed.
_IDEMPOTENT = frozenset((b"GET", b"OPTIONS", b"TRACE", b"DELETE", b"PUT"))
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_AFTER_ORIGIN = (b"/", b"?", b"#", b"")
# What treq's client offers on every request; the service is offered no content coding.
_LEFT_OUT = b"Accept-Encoding"


@implementer(IStreamClientEndpoint)
class _FirstUse:
    """The origin's endpoint, built when the first connection is made, as Twisted's agent
    builds it (a ``HostnameEndpoint``, wrapped in TLS for https with the policy's options).

    Not before: a service whose checks never run (a test's clock for a reactor, an embedder
    that replaces the client) resolves nothing and loads no TLS options.
    """

    def __init__(
        self, reactor: Any, origin: URI, policy: IPolicyForHTTPS, connect_timeout: float
    ) -> None:
        self._build = (reactor, origin, policy, connect_timeout)
        self._endpoint: IStreamClientEndpoint | None = None

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        endpoint = self._endpoint
        if endpoint is None:
            reactor, origin, policy, connect_timeout = self._build
            endpoint = HostnameEndpoint(reactor, origin.host, origin.port, timeout=connect_timeout)
            if origin.scheme == b"https":
                creator = policy.creatorForNetloc(origin.host, origin.port)
                endpoint = wrapClientTLS(creator, endpoint)
            self._endpoint = endpoint
        return endpoint.connect(protocolFactory)


@implementer(IAgent)
class OriginAgent:
    """``IAgent`` for the URLs of one origin (``scheme://host:port``), over a bounded pool.

    Requests carry no body: the checks are GETs (a body producer, or HEAD, whose answer has a
    body's headers without the body, is refused rather than half supported).
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        policy: IPolicyForHTTPS,
        connect_timeout: float,
        max_connections: int,
        idle_timeout: float = IDLE_TIMEOUT,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> None:
        origin = URI.fromBytes(url.encode("ascii"))
        if origin.scheme not in _DEFAULT_PORTS:
            raise SchemeNotSupported(f"unsupported scheme: {origin.scheme!r}")
        self._origin = (origin.scheme, origin.host, origin.port)
        # The URLs the checks send begin as the configured one does (``_uri_form``).
        self._prefix = url.encode("ascii")[: len(origin.scheme) + 3 + len(origin.netloc)]
        if endpoint is None:
            endpoint = _FirstUse(reactor, origin, policy, connect_timeout)
        self.pool = CountingConnectionPool(reactor, endpoint, max_connections, idle_timeout)
        host = origin.host
        if b":" in host:
            host = b"[" + host + b"]"  # an IPv6 literal
        if origin.port != _DEFAULT_PORTS[origin.scheme]:
            host += b":%d" % origin.port
        self._host_line = b" HTTP/1.1\r\nHost: " + host + b"\r\n"

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,  # noqa: N803 (IAgent's name)
    ) -> Deferred[IResponse]:
        if bodyProducer is not None or method == b"HEAD":
            return fail(ValueError(f"{method!r} with a body is not sent by this agent"))
        prefix = self._prefix
        end = len(prefix)
        if uri.startswith(prefix) and uri[end : end + 1] in _AFTER_ORIGIN:
            target = uri[end:]
        else:
            parsed = URI.fromBytes(uri)
            if (parsed.scheme, parsed.host, parsed.port) != self._origin:
                return fail(ValueError("this agent sends requests to its one origin only"))
            target = parsed.originForm
        if b"#" in target:
            target = target.partition(b"#")[0]
        if target[:1] != b"/":
            target = b"/" + target
        if b" " in target or b"\r" in target or b"\n" in target:
            return fail(ValueError(f"not a request target: {target!r}"))
        lines = [method, b" ", target, self._host_line]
        if headers is not None:
            for name, values in headers.getAllRawHeaders():
                if name == _LEFT_OUT:
                    continue
                for value in values:
                    lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        return self.pool.submit(b"".join(lines), method in _IDEMPOTENT)
