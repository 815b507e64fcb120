"""The agent under the check (OriginAgent, its pool and connections) against scripted servers.

Each test is one thing Twisted's Agent and HTTPConnectionPool did for the checks and the agent
of our own must do too: keep-alive and its limits, the ways a body ends, interim answers,
stale pooled connections, idle connections closed, and servers that send what they should not.
``tests/authorize/test_http.py`` and ``tests/robustness/test_http_faults.py`` run the same
agent through the whole check against a real HTTP server and below-HTTP faults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from treq.response import _Response
from twisted.internet import reactor, task
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import BrowserLikePolicyForHTTPS, readBody
from twisted.web.http_headers import Headers
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.agent import OriginAgent
from mucauth.authorize.base import JoinRequest
from mucauth.authorize.client import CheckClient
from mucauth.authorize.connection import Exchange, HTTP11Connection
from mucauth.authorize.http import HTTPAuthorizer
from mucauth.settings import HTTPAuthSettings

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n" + b'{"allowed": true}'
YES = b'{"allowed": true}'

Script = Callable[["Peer", int], None]  # a connection, the number of its request (from 1)


class Peer(Protocol):
    """One accepted connection; ``script`` runs for every request head that arrives."""

    def __init__(self, server: ScriptServer) -> None:
        self.server = server
        self.buffer = b""
        self.requests: list[bytes] = []
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.server.peers.append(self)
        if self.server.on_connect is not None:
            self.server.on_connect(self, 0)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.requests.append(head)
            self.server.requests += 1
            self.server.script(self, len(self.requests))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class ScriptServer:
    def __init__(self, script: Script, on_connect: Script | None = None) -> None:
        self.script = script
        self.on_connect = on_connect
        self.peers: list[Peer] = []
        self.requests = 0
        factory = Factory.forProtocol(lambda: Peer(self))  # type: ignore[arg-type]
        factory.noisy = False
        listen: Any = reactor.listenTCP  # type: ignore[attr-defined]
        self.port = listen(0, factory, interface="127.0.0.1")
        self.port_number: int = self.port.getHost().port
        self.url = f"http://127.0.0.1:{self.port_number}/muc/auth"

    @property
    def open_peers(self) -> list[Peer]:
        return [p for p in self.peers if not p.closed.called]

    def all_closed(self) -> Deferred[Any]:
        return DeferredList([p.closed for p in self.peers]).addTimeout(5, reactor)

    def stop(self) -> Deferred[Any]:
        for peer in self.open_peers:
            peer.transport.abortConnection()  # type: ignore[union-attr]
        return DeferredList([self.port.stopListening(), self.all_closed()])


def answer(body: bytes = OK) -> Script:
    def script(peer: Peer, n: int) -> None:
        peer.write(body)

    return script


def pause(seconds: float = 0.01) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


def join(n: int = 0) -> JoinRequest:
    return JoinRequest(JID(f"user{n}@example.org/r"), JID("room@rooms.example.org"), f"n{n}")


class AgentCase(TestCase):
    timeout = 20

    def serve(self, script: Script, on_connect: Script | None = None) -> ScriptServer:
        server = ScriptServer(script, on_connect)
        self.addCleanup(server.stop)
        return server

    def agent(self, server: ScriptServer, **kw: Any) -> OriginAgent:
        agent = OriginAgent(
            reactor,
            server.url,
            BrowserLikePolicyForHTTPS(),
            connect_timeout=5,
            max_connections=kw.pop("max_connections", 10),
            **kw,
        )
        self.addCleanup(agent.pool.close_idle)
        return agent

    def authorizer(self, server: ScriptServer, **kw: Any) -> HTTPAuthorizer:
        auth = HTTPAuthorizer(HTTPAuthSettings(url=server.url, **kw), reactor)
        self.addCleanup(auth.close)
        return auth

    async def get(self, agent: OriginAgent, path: str = "/muc/auth?x=1") -> tuple[int, bytes]:
        url = agent_url(agent, path)
        response = await agent.request(b"GET", url, Headers({b"Accept": [b"*/*"]}))
        return response.code, await readBody(response)


def agent_url(agent: OriginAgent, path: str) -> bytes:
    return agent._prefix + path.encode()


class KeepAliveTests(AgentCase):
    async def test_one_connection_serves_sequential_requests(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        for _ in range(5):
            self.assertEqual(await self.get(agent), (200, YES))
        self.assertEqual(len(server.peers), 1)
        self.assertEqual(agent.pool.open_connections, 1)
        [peer] = server.peers
        self.assertEqual(peer.requests[0].split(b"\r\n")[0], b"GET /muc/auth?x=1 HTTP/1.1")
        self.assertIn(f"Host: 127.0.0.1:{server.port_number}".encode(), peer.requests[0])

    async def test_at_most_max_connections(self) -> None:
        held: list[Peer] = []

        def later(peer: Peer, n: int) -> None:
            held.append(peer)
            reactor.callLater(0.05, peer.write, OK)  # type: ignore[attr-defined]

        server = self.serve(later)
        agent = self.agent(server, max_connections=2)
        results = await DeferredList([Deferred.fromCoroutine(self.get(agent)) for _ in range(7)])
        self.assertTrue(all(ok and value == (200, YES) for ok, value in results))
        self.assertEqual(len(server.peers), 2)
        self.assertEqual(server.requests, 7)

    async def test_connection_close_is_honoured(self) -> None:
        closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 17\r\n\r\n" + YES
        server = self.serve(answer(closing))
        agent = self.agent(server)
        self.assertEqual(await self.get(agent), (200, YES))
        self.assertEqual(await self.get(agent), (200, YES))
        self.assertEqual(len(server.peers), 2)
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)

    async def test_http_1_0_answer_is_not_kept_alive(self) -> None:
        server = self.serve(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\n" + YES))
        agent = self.agent(server)
        self.assertEqual(await self.get(agent), (200, YES))
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)

    async def test_idle_connections_are_closed_after_a_while(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server, idle_timeout=0.3)
        await self.get(agent)
        await pause(0.15)
        await self.get(agent)  # used again: its idle time starts over
        await pause(0.2)
        self.assertEqual(len(server.open_peers), 1)
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)
        self.assertEqual(await self.get(agent), (200, YES))  # a new one when needed
        self.assertEqual(len(server.peers), 2)

    async def test_close_idle_closes_only_idle_ones(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        await self.get(agent)
        await agent.pool.close_idle()
        self.assertEqual(agent.pool.open_connections, 0)
        await server.all_closed()


class StaleConnectionTests(AgentCase):
    async def test_a_pooled_connection_found_closed_is_retried_once_on_a_new_one(self) -> None:
        def second_closes(peer: Peer, n: int) -> None:
            # The server dropped the idle connection as the request arrived: no answer.
            peer.write(OK) if n == 1 else peer.close()

        server = self.serve(second_closes)
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual([len(p.requests) for p in server.peers], [2, 1])

    async def test_only_once(self) -> None:
        def only_the_first(peer: Peer, n: int) -> None:
            peer.write(OK) if peer.server.requests == 1 else peer.close()

        server = self.serve(only_the_first)
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        decision = await auth.authorize(join(2))
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        self.assertEqual([len(p.requests) for p in server.peers], [2, 1])

    async def test_a_new_connection_closed_without_an_answer_is_not_retried(self) -> None:
        server = self.serve(lambda peer, n: peer.close())
        decision = await self.authorizer(server).authorize(join())
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        self.assertEqual(server.requests, 1)

    async def test_a_connection_closed_while_idle_is_not_used(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        await self.get(agent)
        server.peers[0].close()
        await server.peers[0].closed
        await pause(0.05)
        self.assertEqual(agent.pool.open_connections, 0)
        self.assertEqual(await self.get(agent), (200, YES))
        self.assertEqual([len(p.requests) for p in server.peers], [1, 1])


class BodyTests(AgentCase):
    async def test_chunked(self) -> None:
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunks = b"5\r\n" + YES[:5] + b"\r\nc\r\n" + YES[5:] + b"\r\n0\r\n\r\n"

        def slowly(peer: Peer, n: int) -> None:
            peer.write(chunked)
            reactor.callLater(0.02, peer.write, chunks)  # type: ignore[attr-defined]

        server = self.serve(slowly)
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual(len(server.peers), 1)  # the end was found: kept alive

    async def test_length_delimited_in_pieces(self) -> None:
        def in_pieces(peer: Peer, n: int) -> None:
            for i, byte in enumerate(OK):
                reactor.callLater(i * 0.001, peer.write, bytes([byte]))  # type: ignore[attr-defined]

        server = self.serve(in_pieces)
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual(len(server.peers), 1)

    async def test_ended_by_the_connection(self) -> None:
        def then_close(peer: Peer, n: int) -> None:
            peer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + YES)
            reactor.callLater(0.02, peer.close)  # type: ignore[attr-defined]

        server = self.serve(then_close)
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual(len(server.peers), 2)
        self.assertEqual(auth.open_connections, 0)

    async def test_ended_by_the_connection_past_the_cap(self) -> None:
        def endless(peer: Peer, n: int) -> None:
            peer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b" " * (70 * 1024))

        server = self.serve(endless)
        decision = await self.authorizer(server).authorize(join())
        self.assertEqual((decision.kind, decision.status), ("too_large", 200))
        await server.all_closed()

    async def test_no_body_answers(self) -> None:
        server = self.serve(answer(b"HTTP/1.1 204 No Content\r\n\r\n"))
        auth = self.authorizer(server)
        decision = await auth.authorize(join())
        self.assertEqual((decision.kind, decision.status), ("bad_json", 204))
        await auth.authorize(join(2))
        self.assertEqual(len(server.peers), 1)

    async def test_interim_answers_are_skipped(self) -> None:
        interim = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        )

        def hints_first(peer: Peer, n: int) -> None:
            peer.write(interim)
            reactor.callLater(0.02, peer.write, OK)  # type: ignore[attr-defined]

        server = self.serve(hints_first)
        auth = self.authorizer(server)
        for n in range(2):
            decision = await auth.authorize(join(n))
            self.assertTrue(decision.is_allowed, decision)
            self.assertEqual(decision.status, 200)
        self.assertEqual(len(server.peers), 1)

    async def test_switching_protocols_unasked_is_an_error(self) -> None:
        upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        server = self.serve(answer(upgrade + b"\x00\x00\x12"))
        decision = await self.authorizer(server).authorize(join())
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        await server.all_closed()


class HostileServerTests(AgentCase):
    async def test_a_header_section_that_never_ends(self) -> None:
        def endless_headers(peer: Peer, n: int) -> None:
            peer.write(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Filler: " + b"a" * 1000 + b"\r\n"

            def more() -> None:
                if not peer.closed.called:
                    peer.write(line * 8)
                    reactor.callLater(0, more)  # type: ignore[attr-defined]

            more()

        server = self.serve(endless_headers)
        decision = await self.authorizer(server, timeout=10).authorize(join())
        self.assertEqual((decision.outcome, decision.kind), ("error", "connection"))
        self.assertLess(decision.latency, 5)  # found out by its size, not by the deadline
        await server.all_closed()

    async def test_a_header_section_that_stalls_times_out(self) -> None:
        server = self.serve(answer(b"HTTP/1.1 200 OK\r\nContent-Type: appl"))
        decision = await self.authorizer(server, timeout=0.3).authorize(join())
        self.assertEqual((decision.outcome, decision.kind), ("error", "timeout"))
        await server.all_closed()

    async def test_garbage_after_an_answer_keeps_the_answer_not_the_connection(self) -> None:
        server = self.serve(answer(OK + b"\x16\x03\x01 not http\r\n\r\n"))
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual(len(server.peers), 2)

    async def test_two_answers_to_one_request(self) -> None:
        server = self.serve(answer(OK + OK))
        auth = self.authorizer(server)
        self.assertTrue((await auth.authorize(join(1))).is_allowed)
        self.assertTrue((await auth.authorize(join(2))).is_allowed)
        self.assertEqual(len(server.peers), 2)  # the second answer was nobody's

    async def test_bytes_on_an_idle_connection_close_it(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        await self.get(agent)
        server.peers[0].write(b"HTTP/1.1 200 OK\r\n")
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)
        self.assertEqual(await self.get(agent), (200, YES))

    async def test_an_answer_before_the_request_was_read(self) -> None:
        """The server answers as the connection opens, before it reads a byte of ours."""
        early = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 17\r\n\r\n" + YES
        server = self.serve(lambda peer, n: None, on_connect=answer(early))
        decision = await self.authorizer(server).authorize(join())
        self.assertTrue(decision.is_allowed, decision)
        await server.all_closed()


class CancellationTests(AgentCase):
    async def test_cancel_while_waiting_for_a_connection(self) -> None:
        held: list[Peer] = []
        server = self.serve(lambda peer, n: held.append(peer))
        agent = self.agent(server, max_connections=1)
        first = agent.request(b"GET", agent_url(agent, "/a"))
        second = agent.request(b"GET", agent_url(agent, "/b"))
        while not held:
            await pause()
        second.cancel()
        self.failureResultOf(second, CancelledError)
        held[0].write(OK)
        response = await first
        self.assertEqual(await readBody(response), YES)
        await pause(0.05)
        self.assertEqual(server.requests, 1)  # the cancelled one was never sent
        self.assertEqual(len(server.peers), 1)

    async def test_cancel_while_waiting_for_the_answer_closes_the_connection(self) -> None:
        server = self.serve(lambda peer, n: None)
        agent = self.agent(server)
        d = agent.request(b"GET", agent_url(agent, "/a"))
        while not server.requests:
            await pause()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)

    async def test_a_cut_body_closes_the_connection(self) -> None:
        server = self.serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"))
        agent = self.agent(server)
        response = await agent.request(b"GET", agent_url(agent, "/a"))
        cut = Deferred[None]()

        class Cut(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.stopProducing()  # type: ignore[union-attr]
                cut.callback(None)

        response.deliverBody(Cut())
        await cut
        await server.all_closed()
        self.assertEqual(agent.pool.open_connections, 0)


class TreqTests(AgentCase):
    async def test_under_treq(self) -> None:
        server = self.serve(answer(OK))
        agent = self.agent(server)
        client = HTTPClient(agent)
        response = await client.get(server.url + "?a=%20b", headers=Headers({b"X-Test": [b"1"]}))
        self.assertEqual(await response.content(), YES)
        [peer] = server.peers
        self.assertEqual(peer.requests[0].split(b"\r\n")[0], b"GET /muc/auth?a=%20b HTTP/1.1")
        self.assertNotIn(b"Accept-Encoding", peer.requests[0])  # no content coding offered

    async def test_response_headers_less_any_content_encoding(self) -> None:
        server = self.serve(
            answer(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                b"X-Two: a\r\nX-Two: b\r\nContent-Length: 17\r\n\r\n" + YES
            )
        )
        agent = self.agent(server)
        response = await agent.request(b"GET", agent_url(agent, "/"))
        self.assertEqual(await readBody(response), YES)
        self.assertEqual((response.code, response.phrase, response.length), (200, b"OK", 17))
        self.assertEqual(response.version, (b"HTTP", 1, 1))
        headers = response.headers
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"x-two"), [b"a", b"b"])
        self.assertFalse(headers.hasHeader(b"Content-Encoding"))

    async def test_check_client_answers_as_treq_does(self) -> None:
        """The check's client skips treq's layers for the check's arguments only; either way
        the answer is treq's response type, and the request on the wire is the same."""
        server = self.serve(answer(OK))
        client = CheckClient(self.agent(server))
        headers = Headers({b"Accept": [b"application/json"]})
        direct = await client.get(
            server.url + "?a=1", headers=headers, allow_redirects=False, unbuffered=True
        )
        through_treq = await client.get(server.url + "?a=1", headers=headers)
        for response in (direct, through_treq):
            self.assertIsInstance(response, _Response)
            self.assertEqual(await response.content(), YES)
        first, second = [r for peer in server.peers for r in peer.requests]
        self.assertEqual(first, second)

    async def test_other_origins_and_bodies_are_refused(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        port = server.port_number
        for url in (f"http://127.0.0.1:{port + 1}/", f"https://127.0.0.1:{port}/", "http://x/"):
            self.failureResultOf(agent.request(b"GET", url.encode()), ValueError)
        self.failureResultOf(agent.request(b"GET", agent_url(agent, "/a b")), ValueError)
        body = agent.request(b"POST", agent_url(agent, "/"), None, object())  # type: ignore[arg-type]
        self.failureResultOf(body, ValueError)
        self.assertEqual(await self.get(agent, "/"), (200, YES))
        self.assertEqual(len(server.peers), 1)

    async def test_the_fragment_is_not_sent(self) -> None:
        server = self.serve(answer())
        agent = self.agent(server)
        response = await agent.request(b"GET", agent_url(agent, "/x?y#frag"))
        self.assertEqual(await readBody(response), YES)
        self.assertEqual(server.peers[0].requests[0].split(b"\r\n")[0], b"GET /x?y HTTP/1.1")


class _Pool:
    """What a connection tells its pool, recorded."""

    def __init__(self) -> None:
        self.released: list[Any] = []
        self.lost: list[Any] = []

    def connection_made(self, connection: Any) -> None:
        pass

    def connection_lost(self, connection: Any) -> None:
        self.lost.append(connection)

    def release(self, connection: Any) -> None:
        self.released.append(connection)

    def forget(self, exchange: Any) -> None:
        pass


class ConnectionInMemoryTests(SynchronousTestCase):
    def connection(self) -> tuple[HTTP11Connection, _Pool, StringTransport]:
        pool = _Pool()
        connection = HTTP11Connection(pool)
        transport = StringTransport()
        connection.makeConnection(transport)
        return connection, pool, transport

    def test_a_connection_closed_by_its_reader_is_not_offered_again(self) -> None:
        """The reader stops the body (its cap, the deadline) in the same bytes as the answer
        ends: the connection is closing, and must not go back to the pool."""
        connection, pool, transport = self.connection()
        exchange = Exchange(pool, b"GET / HTTP/1.1\r\n\r\n", retry=True)
        connection.send(exchange)
        self.assertEqual(transport.value(), b"GET / HTTP/1.1\r\n\r\n")

        class Stop(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.stopProducing()  # type: ignore[union-attr]

        exchange.deferred.addCallback(lambda response: response.deliverBody(Stop()))
        connection.dataReceived(OK)
        self.assertEqual(pool.released, [])
        self.assertTrue(transport.disconnecting)

    def test_a_cancelled_request_s_answer_is_not_read(self) -> None:
        connection, pool, transport = self.connection()
        exchange = Exchange(pool, b"GET / HTTP/1.1\r\n\r\n", retry=True)
        connection.send(exchange)
        exchange.deferred.cancel()
        self.failureResultOf(exchange.deferred, CancelledError)
        connection.dataReceived(OK)
        self.assertEqual(pool.released, [])
        self.assertTrue(transport.disconnecting)

    def test_the_body_is_kept_until_it_is_asked_for(self) -> None:
        connection, pool, _ = self.connection()
        exchange = Exchange(pool, b"GET / HTTP/1.1\r\n\r\n", retry=True)
        connection.send(exchange)
        connection.dataReceived(OK)
        response = self.successResultOf(exchange.deferred)
        self.assertEqual(pool.released, [connection])  # before the body is read
        self.assertEqual(self.successResultOf(readBody(response)), YES)
