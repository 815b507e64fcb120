"""One persistent HTTP/1.1 connection to the authorization service, its answers read by httptools.

Twisted's ``HTTP11ClientProtocol`` parses a response line by line in Python, and builds a
parser, a response and a chain of Deferreds for every request on a connection; the check asks
one question a join and reads a dozen header lines back. This protocol sends the request bytes
it is handed and feeds what comes back to one ``httptools`` response parser (llhttp, in C)
kept for the life of the connection. What Twisted's protocol does for us otherwise, this one
does too, written here because Twisted has no such protocol to build on:

- interim (1xx) answers are skipped, as RFC 9110 allows a client that did not ask for one;
  ``101 Switching Protocols`` (never asked for) fails the request;
- bodies delimited by ``Content-Length``, by chunks, or by the end of the connection
  (``PotentialDataLoss``, as Twisted reports them) are delivered as they arrive;
- a header section longer than :data:`MAX_HEADER_BYTES` fails the request: a service that
  sends header lines forever holds neither the check nor memory;
- a connection is offered back to the pool only when the answer allows it (HTTP/1.1 without
  ``Connection: close``) and nothing arrived after it; anything from the server while no
  request is outstanding closes it;
- garbage fails the request with ``ResponseFailed``, a connection lost before any answer with
  ``ResponseNeverReceived`` (the pool's caller may then retry a request on a reused connection
  once, see :class:`Exchange`), and one lost in the middle of a body with ``ResponseFailed``.

The response never shows a ``Content-Encoding`` header: treq's client wraps every request in a
content decoder, which would otherwise inflate a gzip body of 64 KiB into megabytes before any
cap counted them. The authorization contract wants the body as sent.
"""

from __future__ import annotations

from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

__all__ = ["MAX_HEADER_BYTES", "Exchange", "HTTP11Connection", "ProtocolError"]

MAX_HEADER_BYTES = 64 * 1024  # the status line and headers of one answer, 1xx ones included

_VERSIONS = {"1.1": (b"HTTP", 1, 1), "1.0": (b"HTTP", 1, 0)}
_DONE = Failure(ResponseDone("Response body fully received"))
_DATA_LOSS = Failure(
    PotentialDataLoss("the body ended with the connection: it may have been cut short")
)


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 answer this client accepts."""


class Exchange:
    """One request from the agent's call until its response's headers, and its retry.

    ``deferred`` fires with the :class:`Response`, or fails. Cancelling it before the headers
    arrive stops whatever it waits for: its place in the pool's queue, its connection attempt,
    or its connection (closed: an answer may still be on its way).

    ``retry`` says the request may be sent again: a pooled connection the server closed while
    it was idle is only found out by using it, so a request that met such a connection (lost
    before a byte of answer came back, on a connection that had answered before) is sent once
    more on a new one. Only for requests without a body and with a method that is safe to
    repeat (the agent decides).
    """

    __slots__ = ("connecting", "connection", "deferred", "pool", "request", "retry")

    def __init__(self, pool: Any, request: bytes, retry: bool) -> None:
        self.pool = pool
        self.request = request
        self.retry = retry
        self.connection: HTTP11Connection | None = None
        self.connecting: Deferred[Any] | None = None
        self.deferred: Deferred[IResponse] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[IResponse]) -> None:
        connection = self.connection
        if connection is not None:
            self.connection = None
            connection.abandon()
        elif self.connecting is not None:
            self.connecting.cancel()
        else:
            self.pool.forget(self)


@implementer(IResponse)
class Response:
    """The answer to one request; also the body protocol's transport (closing it closes the
    connection, whose rest of a body nobody will read)."""

    request = None
    previousResponse = None

    def __init__(
        self,
        connection: HTTP11Connection,
        version: tuple[bytes, int, int],
        code: int,
        phrase: bytes,
        length: int | object,
    ) -> None:
        self.version = version
        self.code = code
        self.phrase = phrase
        self.length = length
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._headers: Headers | None = None
        self._connection: HTTP11Connection | None = connection
        self._protocol: IProtocol | None = None
        self._buffer: list[bytes] = []
        self._ended: Failure | None = None

    @property
    def headers(self) -> Headers:
        """The answer's headers, built when first read (a check reads none of them), less any
        ``Content-Encoding``."""
        headers = self._headers
        if headers is None:
            self._headers = headers = Headers()
            for name, value in zip(self._names, self._values, strict=True):
                if name.lower() != b"content-encoding":
                    headers.addRawHeader(name, value)
        return headers

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: IProtocol) -> None:
        if self._protocol is not None:
            raise RuntimeError("the body of a response is delivered once")
        self._protocol = protocol
        protocol.makeConnection(self)  # type: ignore[arg-type]
        buffered, self._buffer = self._buffer, []
        for data in buffered:
            protocol.dataReceived(data)
        if self._ended is not None:
            self._connection = None
            protocol.connectionLost(self._ended)

    def _data(self, data: bytes) -> None:
        if self._protocol is None:
            self._buffer.append(data)
        else:
            self._protocol.dataReceived(data)

    def _end(self, reason: Failure) -> None:
        if self._protocol is None:
            self._ended = reason
        else:
            self._connection = None
            self._protocol.connectionLost(reason)

    # The body protocol's transport.

    def loseConnection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abandon()

    stopProducing = loseConnection
    abortConnection = loseConnection

    def pauseProducing(self) -> None:
        if self._connection is not None:
            self._connection.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        if self._connection is not None:
            self._connection.transport.resumeProducing()  # type: ignore[union-attr]


class HTTP11Connection(Protocol):
    """A keep-alive connection; serves one :class:`Exchange` at a time for its pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None  # sent, its headers not yet in
        self._response: Response | None = None  # headers in, its body not yet ended
        self.served = 0  # requests sent on this connection
        self.idle_since = 0.0
        self._received = 0  # bytes of the current answer's header section
        self._interim = False
        self._complete = False
        self._keep_alive = False
        self._close_delimited = False
        self._unsolicited = False
        self._abandoned = False
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._phrase = b""
        self._length: int | object = UNKNOWN_LENGTH

    # Called by the pool.

    def connectionMade(self) -> None:
        self._pool.connection_made(self)

    def send(self, exchange: Exchange) -> None:
        """Write ``exchange``'s request; its answer fires ``exchange.deferred``."""
        exchange.connection = self
        self.exchange = exchange
        self.served += 1
        self._received = 0
        self.transport.write(exchange.request)  # type: ignore[union-attr]

    def abandon(self) -> None:
        """Close now: the answer under way is no longer wanted (cancelled, or its body cut)."""
        self.exchange = None
        self._abandoned = True
        transport = self.transport
        if transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]

    # httptools' callbacks, from inside feed_data().

    def on_message_begin(self) -> None:
        if self._complete or (self.exchange is None and self._response is None):
            self._unsolicited = True  # a second answer to one request, or an answer to none

    def on_status(self, phrase: bytes) -> None:
        self._phrase = phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        names, values = self._names, self._values
        self._names, self._values = [], []
        exchange = self.exchange
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            self._interim = True  # 100 Continue, 103 Early Hints, ...: the answer follows
            return
        if exchange is None or self._unsolicited:
            return  # the answer nobody waits for is parsed, then the connection closed
        self.exchange = None
        exchange.connection = None
        self._keep_alive = parser.should_keep_alive()
        length: int | object = UNKNOWN_LENGTH
        chunked = False
        for name, value in zip(names, values, strict=True):
            if len(name) in (14, 17):
                lower = name.lower()
                if lower == b"content-length":
                    length = _content_length(value)
                elif lower == b"transfer-encoding":
                    chunked = True
        self._close_delimited = length is UNKNOWN_LENGTH and not chunked and code not in (204, 304)
        version = _VERSIONS.get(parser.get_http_version()) or _version(parser.get_http_version())
        self._response = response = Response(self, version, code, self._phrase, length)
        response._names, response._values = names, values
        exchange.deferred.callback(response)

    def on_body(self, data: bytes) -> None:
        if self._response is not None and not self._complete:
            self._response._data(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True

    # From the transport.

    def dataReceived(self, data: bytes) -> None:
        if self._abandoned:
            return
        if self.exchange is None and self._response is None:
            # Nothing was asked (or the asker is gone): the connection cannot be trusted.
            self._unsolicited = True
            self.abandon()
            return
        heading = self._response is None
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(ProtocolError("101 Switching Protocols, which was not asked for"))
            return
        except HttpParserError as e:
            if not self._complete:
                self._fail(ProtocolError(f"not an HTTP answer: {e}"))
                return
            self._unsolicited = True  # a whole answer, then garbage: keep the answer only
        if self._complete:
            self._finish()
        elif heading and self._response is None and self.exchange is not None:
            self._received += len(data)
            if self._received > MAX_HEADER_BYTES:
                self._fail(ProtocolError(f"header section larger than {MAX_HEADER_BYTES} bytes"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pool.connection_lost(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not exchange.deferred.called:
            exchange.connection = None
            if exchange.retry and self.served > 1 and not self._received:
                exchange.retry = False
                self._pool.reconnect(exchange)
            else:
                exchange.deferred.errback(ResponseNeverReceived([reason]))
        response, self._response = self._response, None
        if response is not None:
            if self._close_delimited and not self._complete:
                response._end(_DATA_LOSS)
            else:
                response._end(Failure(ResponseFailed([reason])))

    # Ending an answer.

    def _finish(self) -> None:
        """The answer is complete: the connection goes back (or away) before the body's end is
        told, so that whatever that end sets off can use the connection at once."""
        self._complete = False
        response, self._response = self._response, None
        if self._abandoned:
            pass  # closing already: its answer came in the same bytes as its end
        elif self._keep_alive and not self._unsolicited:
            self._pool.release(self)
        else:
            self.abandon()
        if response is not None:
            response._end(_DONE)

    def _fail(self, error: Exception) -> None:
        exchange, self.exchange = self.exchange, None
        response, self._response = self._response, None
        self.abandon()
        failure = Failure(ResponseFailed([Failure(error)]))
        if exchange is not None and not exchange.deferred.called:
            exchange.connection = None
            exchange.deferred.errback(failure)
        if response is not None:
            response._end(failure)


def _content_length(value: bytes) -> int | object:
    # llhttp has already refused a malformed or repeated Content-Length.
    try:
        return int(value)
    except ValueError:
        return UNKNOWN_LENGTH


def _version(text: str) -> tuple[bytes, int, int]:
    major, _, minor = text.partition(".")
    return (b"HTTP", int(major or 0), int(minor or 0))
