"""The authorization service's connections: at most a bound, kept open between checks, counted.

One pool serves one origin (the agent's), so it needs no keys: idle connections wait on a
stack, the one used last on top, so a quiet service is asked over one warm connection while
the others age out. What Twisted's ``HTTPConnectionPool`` did for the checks, this does too:

- at most ``max_connections`` open or being opened; a request beyond them waits, in order, for
  the first to come free;
- a connection idle for ``idle_timeout`` seconds is closed (a service or a proxy in between
  drops idle connections sooner or later; closing them ourselves avoids meeting a dead one).
  One timer for the whole pool, set for the oldest idle connection, rather than one per
  connection re-armed on every check;
- :attr:`open_connections` counts the connections open now, busy or idle, plain or TLS, for
  the metrics (``HTTPConnectionPool`` only knew its idle ones);
- :meth:`close_idle` closes the idle ones, for shutdown.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from mucauth.authorize.connection import Exchange, HTTP11Connection

__all__ = ["CountingConnectionPool"]

IDLE_TIMEOUT = 240.0  # seconds; Twisted's HTTPConnectionPool's default


class _Factory(ClientFactory):
    noisy = False

    def __init__(self, pool: CountingConnectionPool) -> None:
        self._pool = pool

    def buildProtocol(self, addr: Any) -> HTTP11Connection:
        return HTTP11Connection(self._pool)


class CountingConnectionPool:
    """Persistent connections to one endpoint, handed to :class:`Exchange` s one at a time."""

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamClientEndpoint,
        max_connections: int,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._factory = _Factory(self)
        self._max = max(1, max_connections)
        self._idle_timeout = idle_timeout
        self._idle: list[HTTP11Connection] = []  # the oldest first
        self._waiting: deque[Exchange] = deque()
        self._open: set[HTTP11Connection] = set()
        self._connecting = 0
        self._sweep: IDelayedCall | None = None
        self._closing: dict[HTTP11Connection, Deferred[None]] = {}

    @property
    def open_connections(self) -> int:
        """TCP (or TLS) connections to the service open now, busy or idle."""
        return len(self._open)

    def submit(self, request: bytes, retry: bool) -> Deferred[Any]:
        """Send ``request`` on a free connection, a new one, or the first to come free."""
        exchange = Exchange(self, request, retry)
        idle = self._idle
        if idle:
            idle.pop().send(exchange)
        elif len(self._open) + self._connecting < self._max:
            self._connect(exchange)
        else:
            self._waiting.append(exchange)
        return exchange.deferred

    def forget(self, exchange: Exchange) -> None:
        """``exchange`` no longer waits for a connection (it was cancelled)."""
        try:
            self._waiting.remove(exchange)
        except ValueError:
            pass

    def reconnect(self, exchange: Exchange) -> None:
        """Send ``exchange`` again on a new connection (its reused one was found closed)."""
        self._connect(exchange)

    def close_idle(self) -> Deferred[None]:
        """Close the idle connections; fires once they are closed. Busy ones finish first."""
        idle, self._idle = self._idle, []
        closed: list[Deferred[None]] = []
        for connection in idle:
            done: Deferred[None] = Deferred()
            self._closing[connection] = done
            closed.append(done)
            connection.transport.loseConnection()  # type: ignore[union-attr]
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        if not closed:
            return succeed(None)
        return DeferredList(closed).addCallback(lambda _: None)

    # From the connections.

    def connection_made(self, connection: HTTP11Connection) -> None:
        self._open.add(connection)

    def connection_lost(self, connection: HTTP11Connection) -> None:
        self._open.discard(connection)
        idle = self._idle
        if idle and connection in idle:
            idle.remove(connection)
        closing = self._closing.pop(connection, None)
        if closing is not None:
            closing.callback(None)
        self._next_waiting()

    def release(self, connection: HTTP11Connection) -> None:
        """``connection`` answered and may be used again."""
        if self._waiting:
            connection.send(self._waiting.popleft())
            return
        connection.idle_since = self._reactor.seconds()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self._idle_timeout, self._close_expired)

    # Inside.

    def _connect(self, exchange: Exchange) -> None:
        self._connecting += 1
        connecting = self._endpoint.connect(self._factory)
        exchange.connecting = connecting
        connecting.addCallbacks(
            self._connected,
            self._not_connected,
            callbackArgs=(exchange,),
            errbackArgs=(exchange,),
        )

    def _connected(self, connection: HTTP11Connection, exchange: Exchange) -> None:
        self._connecting -= 1
        exchange.connecting = None
        if exchange.deferred.called:  # cancelled meanwhile: keep the connection for the next
            self.release(connection)
        else:
            connection.send(exchange)

    def _not_connected(self, failure: Failure, exchange: Exchange) -> None:
        self._connecting -= 1
        exchange.connecting = None
        if not exchange.deferred.called:
            exchange.deferred.errback(failure)
        self._next_waiting()

    def _next_waiting(self) -> None:
        """A connection went away: a request waiting for one opens its own."""
        if self._waiting and len(self._open) + self._connecting < self._max:
            self._connect(self._waiting.popleft())

    def _close_expired(self) -> None:
        self._sweep = None
        idle = self._idle
        expired = self._reactor.seconds() - self._idle_timeout
        while idle and idle[0].idle_since <= expired:
            idle.pop(0).transport.loseConnection()  # type: ignore[union-attr]
        if idle:
            left = idle[0].idle_since - expired
            self._sweep = self._reactor.callLater(left, self._close_expired)
