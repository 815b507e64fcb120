"""A lean XMPP load client: many c2s connections in one asyncio loop, join/leave as fast as
the server answers.

Why not slixmpp: it spends ~0.9 ms of CPU per join, so on a 2-core machine the client, not the
server, would be the bottleneck. This client speaks just enough XMPP (stream, SASL PLAIN on
loopback without TLS, resource binding) and parses with expat, keeping for each top-level
stanza only its name, attributes, the MUC status codes and the names of its descendants. A
join/leave cycle then costs the client a few tens of microseconds.

Each wait is bounded: a watchdog fails any wait older than ``timeout`` seconds, so a server
that stops answering ends a run with counted timeouts instead of a hang.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.parsers import expat

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client'"
    " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
MUC_JOIN = (
    "<presence to='{occupant}' id='{id}'><x xmlns='http://jabber.org/protocol/muc'>"
    "<history maxstanzas='0'/></x></presence>"
)
MUC_LEAVE = "<presence to='{occupant}' id='{id}' type='unavailable'/>"

now = time.perf_counter


class StanzaTimeoutError(Exception):
    """The server did not send the awaited stanza within the client's timeout."""


class JoinRefusedError(Exception):
    """The MUC answered a join with an error presence."""

    def __init__(self, stanza: Stanza) -> None:
        super().__init__(" ".join(stanza.names))
        self.stanza = stanza


@dataclass(slots=True)
class Stanza:
    """What the benchmark needs of a stanza: no tree and no character data, which keeps the
    parser callbacks few and cheap. ``names`` lists the descendants' element names."""

    name: str
    attrs: dict[str, str]
    codes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    received: float = 0.0


Matcher = Callable[[Stanza], bool]


class Connection(asyncio.Protocol):
    """One logged-in client stream.

    At most one coroutine waits on a connection at a time (``expect``); stanzas that do not
    match are handed to ``on_other`` (fan-out listeners, or a ``JoinLeaveCycler`` set as
    ``driver``) or dropped.
    """

    def __init__(self, user: str, domain: str) -> None:
        self.user = user
        self.domain = domain
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._match: Matcher | None = None
        self._waiter: asyncio.Future[Stanza] | None = None
        self.wait_since = 0.0
        self.on_other: Callable[[Stanza], None] | None = None
        # A callback-driven user of the connection (JoinLeaveCycler): told about expired
        # waits and a lost stream, since it has no future to fail.
        self.driver: JoinLeaveCycler | None = None
        self._depth = 0
        self._current: Stanza | None = None
        self._ids = itertools.count()
        self._new_parser()

    # -- plumbing --------------------------------------------------------------------------

    def _new_parser(self) -> None:
        parser = expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self._parser = parser
        self._depth = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A join and a leave go out back to back: Nagle would hold the second one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.driver is not None:
            self.driver.lost()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"{self.user}: stream closed"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as e:
            if self.transport is not None:
                self.transport.abort()
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(ConnectionError(f"{self.user}: bad XML: {e}"))

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth = self._depth + 1
        if depth == 2:
            self._current = Stanza(name, attrs)
        elif depth > 2:
            current = self._current
            assert current is not None
            current.names.append(name)
            if name == "status":
                current.codes.append(attrs.get("code", ""))
        elif depth == 1:
            # The stream header: a stanza of its own so login can wait for it.
            self._dispatch(Stanza(name, attrs))

    def _end(self, name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 2:
            stanza = self._current
            self._current = None
            assert stanza is not None
            self._dispatch(stanza)
        elif depth == 1 and self.transport is not None:
            self.transport.close()

    def _dispatch(self, stanza: Stanza) -> None:
        stanza.received = now()
        match = self._match
        if match is not None and match(stanza):
            waiter = self._waiter
            self._match = self._waiter = None
            assert waiter is not None
            if not waiter.done():
                waiter.set_result(stanza)
        elif self.on_other is not None:
            self.on_other(stanza)

    def send(self, data: str) -> None:
        assert self.transport is not None
        self.transport.write(data.encode())

    def expect(self, match: Matcher) -> asyncio.Future[Stanza]:
        """A future for the next stanza that ``match`` accepts."""
        if self._waiter is not None and not self._waiter.done():
            raise RuntimeError(f"{self.user}: two waits at once")
        waiter: asyncio.Future[Stanza] = asyncio.get_running_loop().create_future()
        self._match, self._waiter = match, waiter
        self.wait_since = now()
        return waiter

    def expire(self, deadline: float) -> bool:
        """Fail a wait that started before ``deadline``; called by the watchdog."""
        if self.driver is not None:
            return self.driver.expire(deadline)
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self.wait_since < deadline:
            self._match = self._waiter = None
            waiter.set_exception(StanzaTimeoutError(self.user))
            return True
        return False

    def next_id(self) -> str:
        return f"b{next(self._ids)}"

    # -- XMPP ----------------------------------------------------------------------------

    async def login(self, password: str, resource: str = "bench") -> None:
        """Stream, SASL PLAIN, restart, bind: the shortest path to a usable session."""
        header = STREAM_HEADER.format(domain=self.domain)
        features = self.expect(lambda s: s.name == "stream:features")
        self.send(header)
        await features
        token = base64.b64encode(f"\0{self.user}\0{password}".encode()).decode()
        outcome = self.expect(lambda s: s.name in ("success", "failure"))
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        if (await outcome).name != "success":
            raise ConnectionError(f"{self.user}: SASL PLAIN refused")
        # The server says nothing until the new header, so the old parser holds no data.
        self._new_parser()
        features = self.expect(lambda s: s.name == "stream:features")
        self.send(header)
        await features
        bound = self.expect(lambda s: s.name == "iq" and s.attrs.get("id") == "bind")
        self.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        if (await bound).attrs.get("type") != "result":
            raise ConnectionError(f"{self.user}: bind failed")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"</stream:stream>")
            self.transport.close()

    async def join(self, occupant: str) -> Stanza:
        """Send a MUC join; the answer is the self-presence (status 110).

        Raises JoinRefusedError on an error presence from the room.
        """
        room = occupant.partition("/")[0]

        def answer(s: Stanza) -> bool:
            if s.name != "presence":
                return False
            sender = s.attrs.get("from")
            kind = s.attrs.get("type")
            if kind == "error":
                return sender == occupant or sender == room
            return sender == occupant and kind is None and "110" in s.codes

        waiter = self.expect(answer)
        self.send(MUC_JOIN.format(occupant=occupant, id=self.next_id()))
        stanza = await waiter
        if stanza.attrs.get("type") == "error":
            raise JoinRefusedError(stanza)
        return stanza

    async def leave(self, occupant: str) -> Stanza:
        """Send unavailable; the answer is our own unavailable presence with 110."""

        def answer(s: Stanza) -> bool:
            return (
                s.name == "presence"
                and s.attrs.get("from") == occupant
                and s.attrs.get("type") == "unavailable"
            )

        waiter = self.expect(answer)
        self.send(MUC_LEAVE.format(occupant=occupant, id=self.next_id()))
        return await waiter

    async def ask_service(self, service: str) -> Stanza:
        """A disco#info query to a service: tells whether a component is connected."""
        iq_id = self.next_id()
        waiter = self.expect(lambda s: s.name == "iq" and s.attrs.get("id") == iq_id)
        self.send(
            f"<iq type='get' to='{service}' id='{iq_id}'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        return await waiter


async def connect(
    host: str, port: int, user: str, password: str, domain: str = "localhost"
) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(user, domain), host, port)
    try:
        await conn.login(password)
    except BaseException:
        conn.close()
        raise
    return conn


async def connect_many(
    host: str,
    port: int,
    users: list[str],
    password: str | Callable[[str], str],
    parallel: int = 50,
    domain: str = "localhost",
) -> list[Connection]:
    """Log many users in, a bounded number at a time (a burst of SASL is not what we measure).

    ``password`` is everyone's, or a function of the user name.
    """
    gate = asyncio.Semaphore(parallel)

    async def one(user: str) -> Connection:
        secret = password if isinstance(password, str) else password(user)
        async with gate:
            return await connect(host, port, user, secret, domain)

    return list(await asyncio.gather(*(one(u) for u in users)))


@dataclass
class BurstResult:
    """What became of one connection's burst of joins (see :func:`join_burst`)."""

    joined: dict[str, float] = field(default_factory=dict)  # occupant JID -> when its 110 came
    refused: dict[str, list[str]] = field(default_factory=dict)  # occupant -> the error's names
    missing: set[str] = field(default_factory=set)  # no answer before the timeout


async def join_burst(conn: Connection, occupants: list[str], timeout: float) -> BurstResult:
    """Send every join at once, as a client entering its bookmarked rooms does, then collect
    each room's answer (self-presence with 110, or an error) until all came or ``timeout``.

    Other stanzas (other occupants' presences, subjects) are dropped; the connection must not
    have a wait of its own running.
    """
    by_room = {o.partition("/")[0]: o for o in occupants}
    result = BurstResult(missing=set(occupants))
    everything = asyncio.get_running_loop().create_future()

    def seen(s: Stanza) -> None:
        if s.name != "presence":
            return
        sender = s.attrs.get("from", "")
        occupant = by_room.get(sender.partition("/")[0])
        if occupant is None or occupant not in result.missing:
            return
        kind = s.attrs.get("type")
        if kind == "error" and sender in (occupant, occupant.partition("/")[0]):
            result.refused[occupant] = s.names
        elif kind is None and sender == occupant and "110" in s.codes:
            result.joined[occupant] = s.received
        else:
            return
        result.missing.discard(occupant)
        if not result.missing and not everything.done():
            everything.set_result(None)

    previous, conn.on_other = conn.on_other, seen
    try:
        conn.send("".join(MUC_JOIN.format(occupant=o, id=conn.next_id()) for o in occupants))
        try:
            await asyncio.wait_for(everything, timeout)
        except TimeoutError:
            pass
    finally:
        conn.on_other = previous
    return result


class Watchdog:
    """Fails waits older than ``timeout`` seconds on the given connections, twice a second."""

    def __init__(self, connections: list[Connection], timeout: float) -> None:
        self.connections = connections
        self.timeout = timeout
        self.expired = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            deadline = now() - self.timeout
            for conn in self.connections:
                if conn.expire(deadline):
                    self.expired += 1

    def __enter__(self) -> Watchdog:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class Window:
    """The measured interval: samples count only when their answer arrives inside it.

    The orchestrator opens and closes it while the load runs, so warm-up and wind-down
    never reach the figures.
    """

    start: float = float("inf")
    end: float = float("inf")
    stop: bool = False

    def inside(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class LoopResult:
    latencies: list[float] = field(default_factory=list)  # seconds, join sent -> 110
    joins: int = 0  # joins answered with 110 inside the window
    refused: int = 0
    timeouts: int = 0
    errors: int = 0
    other_room: list[float] = field(default_factory=list)  # slow mode: same user, fast room
    slow_room: list[float] = field(default_factory=list)  # slow mode: the slow join itself


class JoinLeaveCycler:
    """Join, wait for 110, leave, wait for unavailable, again: driven by stanza callbacks.

    This is the hot path of the benchmark, so it has no coroutine and no future per step:
    the answer to one stanza is sent from within the parser callback that saw the previous
    answer. That halves the client's CPU per join compared with awaiting each answer, and
    keeps the client's share of the second core small next to the component's.
    """

    JOINING, LEAVING, DONE = 1, 2, 3

    def __init__(
        self,
        conn: Connection,
        rooms: Callable[[int], str],
        nick: str,
        window: Window,
        result: LoopResult,
        max_cycles: int | None,
    ) -> None:
        self.conn = conn
        self.rooms = rooms
        self.nick = nick
        self.window = window
        self.result = result
        self.max_cycles = max_cycles
        self.cycle = 0
        self.state = self.DONE
        self.occupant = self.room = ""
        self.sent = 0.0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        self.conn.driver = self
        self.conn.on_other = self.on_stanza
        self._join()

    def stop(self) -> None:
        """Release the connection (also when the awaiting task is cancelled)."""
        self._finish()

    def _finish(self) -> None:
        self.state = self.DONE
        if self.conn.driver is self:
            self.conn.driver = None
            self.conn.on_other = None
        if not self.finished.done():
            self.finished.set_result(None)

    def _join(self) -> None:
        if self.window.stop or (self.max_cycles is not None and self.cycle >= self.max_cycles):
            self._finish()
            return
        self.room = self.rooms(self.cycle)
        self.occupant = f"{self.room}/{self.nick}"
        self.state = self.JOINING
        self.sent = self.conn.wait_since = now()
        self.conn.send(MUC_JOIN.format(occupant=self.occupant, id=self.conn.next_id()))

    def _leave(self) -> None:
        self.state = self.LEAVING
        self.conn.wait_since = now()
        self.conn.send(MUC_LEAVE.format(occupant=self.occupant, id=self.conn.next_id()))

    def on_stanza(self, s: Stanza) -> None:
        if s.name != "presence":
            return
        sender = s.attrs.get("from")
        kind = s.attrs.get("type")
        if self.state == self.JOINING:
            if kind == "error" and (sender == self.occupant or sender == self.room):
                if self.window.inside(s.received):
                    self.result.refused += 1
                self.cycle += 1
                self._join()
            elif sender == self.occupant and kind is None and "110" in s.codes:
                if self.window.inside(s.received):
                    self.result.joins += 1
                    self.result.latencies.append(s.received - self.sent)
                self._leave()
        elif self.state == self.LEAVING:
            if sender == self.occupant and kind == "unavailable":
                self.cycle += 1
                self._join()

    def expire(self, deadline: float) -> bool:
        """A join or leave unanswered for too long: count it, leave to be safe, go on."""
        if self.state == self.DONE or self.conn.wait_since >= deadline:
            return False
        self.result.timeouts += 1
        if self.state == self.JOINING:
            self._leave()  # the join may still succeed later: do not leave a ghost occupant
        else:
            self.cycle += 1
            self._join()
        return True

    def lost(self) -> None:
        self.result.errors += 1
        self._finish()


async def join_leave_loop(
    conn: Connection,
    rooms: Callable[[int], str],
    nick: str,
    window: Window,
    result: LoopResult,
    max_cycles: int | None = None,
) -> None:
    """Join/leave cycles until the window closes (or ``max_cycles``).

    ``rooms(i)`` names the room (bare JID) of cycle i. Errors are counted, never raised: one
    bad cycle must not end the run.
    """
    cycler = JoinLeaveCycler(conn, rooms, nick, window, result, max_cycles)
    cycler.start()
    try:
        await cycler.finished
    finally:
        cycler.stop()


async def _leave_quietly(conn: Connection, occupant: str) -> None:
    """After a timeout the join may still complete later: leave so the room is clean."""
    try:
        await conn.leave(occupant)
    except (StanzaTimeoutError, ConnectionError):
        pass


async def slow_probe_loop(
    conn: Connection,
    slow_room: Callable[[int], str],
    fast_room: Callable[[int], str],
    nick: str,
    window: Window,
    result: LoopResult,
) -> None:
    """One user joins a room whose authorization takes long, and at once another room.

    The second join must not wait for the first: ``other_room`` holds its latency. Both
    answers arrive on one connection, so both are awaited by one matcher.
    """
    for cycle in itertools.count():
        if window.stop:
            return
        slow_occ = f"{slow_room(cycle)}/{nick}"
        fast_occ = f"{fast_room(cycle)}/{nick}"
        pending = {slow_occ, fast_occ}
        answers: dict[str, Stanza] = {}

        def match(
            s: Stanza, pending: set[str] = pending, answers: dict[str, Stanza] = answers
        ) -> bool:
            if s.name != "presence":
                return False
            sender = s.attrs.get("from", "")
            if sender in pending and (s.attrs.get("type") == "error" or "110" in s.codes):
                answers[sender] = s
                pending.discard(sender)
            return not pending

        waiter = conn.expect(match)
        sent = now()
        conn.send(MUC_JOIN.format(occupant=slow_occ, id=conn.next_id()))
        conn.send(MUC_JOIN.format(occupant=fast_occ, id=conn.next_id()))
        try:
            await waiter
        except StanzaTimeoutError:
            result.timeouts += 1
        except ConnectionError:
            result.errors += 1
            return
        for occ, store in ((fast_occ, result.other_room), (slow_occ, result.slow_room)):
            stanza = answers.get(occ)
            if stanza is None:
                continue
            if stanza.attrs.get("type") == "error":
                result.refused += 1
            elif window.inside(stanza.received):
                store.append(stanza.received - sent)
                result.joins += 1  # served like any other join: counts for rates and CPU
        for occ in (fast_occ, slow_occ):
            if occ in answers and answers[occ].attrs.get("type") != "error":
                await _leave_quietly(conn, occ)


@dataclass
class BigRoomResult:
    fill_seconds: float = 0.0  # time to fill the room (joins one after the other)
    join_latencies: list[float] = field(default_factory=list)  # the extra joiner
    fanout: list[float] = field(default_factory=list)  # message sent -> last occupant got it
    fanout_first: list[float] = field(default_factory=list)  # -> first occupant got it
    lost: int = 0  # messages some occupant never got
    refused: int = 0


async def big_room(
    occupants: list[Connection],
    joiner: Connection,
    room: str,
    rounds: int,
    timeout: float,
) -> BigRoomResult:
    """Fill one room with every connection in ``occupants``, then measure two things:

    the join latency of one more user (who receives every occupant's presence first), and the
    time from one groupchat message sent to its copy arriving at the last occupant.
    """
    result = BigRoomResult()
    started = now()
    joined: list[tuple[Connection, str]] = []
    # Fill in a few parallel batches: sequential joins would take 200 round trips, and all at
    # once would measure a thundering herd.
    batch = 20
    for i in range(0, len(occupants), batch):
        chunk = occupants[i : i + batch]
        answers = await asyncio.gather(
            *(c.join(f"{room}/{c.user}") for c in chunk), return_exceptions=True
        )
        for c, a in zip(chunk, answers, strict=True):
            if isinstance(a, BaseException):
                result.refused += 1
            else:
                joined.append((c, f"{room}/{c.user}"))
    result.fill_seconds = now() - started
    try:
        if not joined:
            return result
        for _ in range(rounds):
            occ = f"{room}/{joiner.user}"
            sent = now()
            try:
                answer = await joiner.join(occ)
            except (JoinRefusedError, StanzaTimeoutError):
                result.refused += 1
                await _leave_quietly(joiner, occ)
                continue
            result.join_latencies.append(answer.received - sent)
            await _leave_quietly(joiner, occ)
        listeners = [c for c, _ in joined]
        expected = len(listeners)
        sender = listeners[0]
        for n in range(rounds):
            # Give the previous round's stragglers a moment so rounds do not overlap.
            await asyncio.sleep(0.05)
            msg_id = f"fan{n}"
            arrivals: list[float] = []
            done = asyncio.get_running_loop().create_future()

            def on_other(
                s: Stanza,
                msg_id: str = msg_id,
                arrivals: list[float] = arrivals,
                done: asyncio.Future[None] = done,
            ) -> None:
                if s.name == "message" and s.attrs.get("id") == msg_id:
                    arrivals.append(s.received)
                    if len(arrivals) == expected and not done.done():
                        done.set_result(None)

            for c in listeners:
                c.on_other = on_other
            sent = now()
            sender.send(
                f"<message to='{room}' type='groupchat' id='{msg_id}'><body>fan-out {n}</body>"
                "</message>"
            )
            try:
                await asyncio.wait_for(done, timeout)
            except TimeoutError:
                result.lost += 1
            if arrivals:
                result.fanout_first.append(min(arrivals) - sent)
                if len(arrivals) == expected:
                    result.fanout.append(max(arrivals) - sent)
        for c in listeners:
            c.on_other = None
    finally:
        await asyncio.gather(*(_leave_quietly(c, occ) for c, occ in joined))
    return result


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no samples (printed as '-')."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]
