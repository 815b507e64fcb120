"""An HTTP connection pool that knows how many connections it has open.

``HTTPConnectionPool`` only keeps the idle connections (in a private map); a connection busy
with a request is nowhere to be counted. Every connection the pool opens goes through the
endpoint it is handed in :meth:`getConnection` (public API, called by ``Agent``), so wrapping
that endpoint sees each connection's birth and death: busy and idle alike, plain and TLS.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

__all__ = ["CountingConnectionPool"]


class _Tally:
    """The number of open connections, shared by every wrapper a pool makes."""

    def __init__(self) -> None:
        self.open = 0


class _CountingFactory(WrappingFactory):
    """Wraps the pool's per-connection factory; the wrapper protocol reports made and lost."""

    noisy = False

    def __init__(self, wrapped: IProtocolFactory, tally: _Tally) -> None:
        super().__init__(wrapped)
        self._tally = tally

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        self._tally.open += 1

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        self._tally.open -= 1


def _unwrap(wrapper: Any) -> IProtocol:
    protocol: IProtocol = wrapper.wrappedProtocol
    return protocol


@implementer(IStreamClientEndpoint)
class _CountingEndpoint:
    def __init__(self, inner: IStreamClientEndpoint, tally: _Tally) -> None:
        self._inner = inner
        self._tally = tally

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        connected = self._inner.connect(_CountingFactory(protocolFactory, self._tally))
        # The pool drives the HTTP protocol itself (state, abort), not our wrapper: hand it
        # back the wrapped protocol, whose transport is the counting wrapper.
        return connected.addCallback(_unwrap)

    def __repr__(self) -> str:
        # The pool names its connections after the endpoint (log prefixes).
        return repr(self._inner)


class CountingConnectionPool(HTTPConnectionPool):
    """``HTTPConnectionPool`` plus :attr:`open_connections`."""

    def __init__(self, reactor: Any, persistent: bool = True) -> None:
        super().__init__(reactor, persistent)
        self._tally = _Tally()

    @property
    def open_connections(self) -> int:
        """TCP (or TLS) connections to the service open now, busy or idle."""
        return self._tally.open

    def getConnection(self, key: Hashable, endpoint: IStreamClientEndpoint) -> Deferred[Any]:
        return super().getConnection(key, _CountingEndpoint(endpoint, self._tally))
