"""Write-behind: the store's writes queue here and reach the database in batches, in order.

A join or a message must never wait on a disk or a database, nor fail because of one, so the
callers of the store's writes do not wait at all: a write is queued, and one batch at a time is
handed to the database (one transaction per batch). Whatever is queued while a batch is being
written forms the next one, so batches grow exactly when the database is slow.

``batch_delay``: when the queue is idle, the first write waits that long before its batch
starts, so that the writes of a quiet room's next moments (a message, then another, a trim)
share one transaction instead of paying one each; the reactor hands over one batch, not ten.
A write queued while a batch is on its way has waited already: the next batch starts as soon
as that one is written. ``flush()`` (every read, and ``close()``) never waits for the delay: it
starts the waiting batch at once. A retry's pause is not shortened by a flush.

Order: the queue is first in, first out, and a batch is a prefix of it, so writes reach the
database in the order they were made. Writes that would overwrite each other are coalesced into
the earlier one's place (a room saved five times while a batch was on its way is written once,
with the last values), never moved later: what came after it (a message, a delete) still comes
after it. A delete drops the queued writes of its room, which it would undo anyway. A
retraction (the archive's tombstone for one message) is never coalesced: it stays behind the
append it retracts.

Failures: a batch that fails for a reason that may pass (the database is down, locked, full) is
kept at the head of the queue and tried again after a growing pause; meanwhile new writes keep
queueing. Past ``max_pending`` queued writes, the oldest queued *message* is dropped (history
keeps only the last messages, so the oldest would be trimmed first anyway); settings and
affiliations are coalesced per room and user, so they cannot outgrow the rooms themselves. A
batch refused for a reason that will not pass (a constraint, a bug) is retried one write at a
time, so that only the write the database refuses is dropped. Every drop is logged and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Write", "WriteKind", "WriteQueue"]

WriteKind = Literal["save", "affiliation", "message", "delete", "bury", "retract"]

RETRY_FIRST = 0.5  # seconds before the first retry of a failed batch
RETRY_MAX = 30.0  # the longest pause between two tries


@dataclass(eq=False)
class Write:
    """One queued write. ``args`` is the kind's data; a coalesced write takes the newer args."""

    kind: WriteKind
    room: str
    args: Any
    seq: int = 0  # order of the last call that made or updated this write

    @property
    def key(self) -> Hashable | None:
        """Writes with the same key overwrite each other; None: never coalesced."""
        if self.kind == "save":
            return ("save", self.room)
        if self.kind == "affiliation":
            return ("affiliation", self.room, self.args[0])
        return None


class WriteQueue:
    """The queue in front of one database; ``run`` writes one batch in one transaction."""

    log = Logger()

    def __init__(
        self,
        run: Callable[[Sequence[Write]], Deferred[None]],
        clock: IReactorTime,
        *,
        max_pending: int,
        is_transient: Callable[[Failure], bool],
        describe: Callable[[Failure], str],
        where: str,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        batch_delay: float = 0.0,
    ) -> None:
        if batch_delay < 0:
            raise ValueError(f"batch_delay must be 0 or more, not {batch_delay}")
        self._run = run
        self._clock = clock
        self._max_pending = max_pending
        self._is_transient = is_transient
        self._describe = describe
        self._where = where  # the database, as logs may show it (no password)
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._queue: list[Write] = []
        self._index: dict[Hashable, Write] = {}  # coalescible writes not yet handed out
        self._in_flight = 0  # the head of the queue being written
        self._batch_delay = batch_delay
        self._call: IDelayedCall | None = None  # the next batch, scheduled
        self._call_is_retry = False  # the scheduled call is a retry's pause, not batch_delay
        self._failures = 0  # consecutive failed tries of the head
        self._single = 0  # writes left to try one at a time, after a refused batch
        self._dropped_since = 0  # drops since the last successful batch
        self._seq = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._stopped = False
        self.dropped = 0
        self.batches = 0  # batches written, for tests and the benchmark

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, kind: WriteKind, room: str, args: Any) -> None:
        if self._stopped:
            self.dropped += 1
            self.log.warn(
                "room store write after close, not saved: {kind} for {room}",
                kind=kind,
                room=room,
                store=self._where,
            )
            return
        self._seq += 1
        write = Write(kind, room, args, self._seq)
        if kind in ("delete", "bury"):  # a bury deletes the room too
            self._drop_queued_writes_of(room)
        key = write.key
        earlier = self._index.get(key) if key is not None else None
        if earlier is not None:
            earlier.args, earlier.seq = write.args, write.seq
        else:
            self._queue.append(write)
            if key is not None:
                self._index[key] = write
            if len(self._queue) > self._max_pending:
                self._drop_oldest_message()
        self._schedule(self._batch_delay)

    def flush(self) -> Deferred[None]:
        """Fires once every write added before is written, or dropped (and so counted).

        A batch waiting for ``batch_delay`` starts now (in the next turn of the reactor)."""
        if not self._queue:
            return succeed(None)
        call = self._call
        if call is not None and not self._call_is_retry and call.active():
            call.reset(0)
        d: Deferred[None] = Deferred()
        self._waiters.append((self._seq, d))
        return d

    def stop(self) -> None:
        """No more tries; what is still queued stays unwritten (the caller logs how much)."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # -- the queue ---------------------------------------------------------------------------

    def _drop_queued_writes_of(self, room: str) -> None:
        head, tail = self._queue[: self._in_flight], self._queue[self._in_flight :]
        kept = [w for w in tail if w.room != room]
        if len(kept) != len(tail):
            self._queue = head + kept
            self._index = {k: w for k, w in self._index.items() if w.room != room}

    def _drop_oldest_message(self) -> None:
        for i in range(self._in_flight, len(self._queue)):
            if self._queue[i].kind == "message":
                write = self._queue.pop(i)
                break
        else:
            return  # only settings and affiliations: bounded by the rooms, kept
        self.dropped += 1
        self._dropped_since += 1
        if self._dropped_since == 1:
            self.log.error(
                "room store: {pending} writes waiting for the database, more than "
                "max_pending_writes; dropping the oldest waiting messages (first: {room})",
                pending=len(self._queue),
                room=write.room,
                store=self._where,
            )

    def _schedule(self, delay: float, *, retry: bool = False) -> None:
        if self._call is None and self._in_flight == 0 and self._queue and not self._stopped:
            self._call = self._clock.callLater(delay, self._next_batch)
            self._call_is_retry = retry

    def _next_batch(self) -> None:
        self._call = None
        if not self._queue or self._stopped:
            return
        batch = self._queue[:1] if self._single else list(self._queue)
        self._in_flight = len(batch)
        self._index.clear()  # handed out: later writes must not change what is being written
        d = self._run(batch)
        d.addCallbacks(self._written, self._failed, errbackArgs=(batch,))

    def _written(self, _: object) -> None:
        del self._queue[: self._in_flight]
        self._in_flight = 0
        self.batches += 1
        if self._single:
            self._single -= 1
        if self._failures or self._dropped_since:
            self.log.info(
                "room store: writing again after {failures} failed tries; "
                "{dropped} writes dropped meanwhile, {pending} still waiting",
                failures=self._failures,
                dropped=self._dropped_since,
                pending=len(self._queue),
                store=self._where,
            )
        self._failures = 0
        self._dropped_since = 0
        self._settle()

    def _failed(self, failure: Failure, batch: list[Write]) -> None:
        self._in_flight = 0
        if self._stopped:
            return
        if self._is_transient(failure):
            self._failures += 1
            delay = min(self._retry_max, self._retry_first * 2 ** (self._failures - 1))
            self.log.warn(
                "room store: writing {count} changes failed (try {attempt}), "
                "next try in {delay:.1f} s: {error}",
                count=len(batch),
                attempt=self._failures,
                delay=delay,
                error=self._describe(failure),
                pending=len(self._queue),
                store=self._where,
            )
            self._schedule(delay, retry=True)
            return
        if len(batch) > 1:
            self.log.warn(
                "room store: the database refused a batch of {count} changes ({error}); "
                "writing them one by one to find the refused one",
                count=len(batch),
                error=self._describe(failure),
                store=self._where,
            )
            self._single = len(batch)
            self._schedule(0)
            return
        [write] = batch
        del self._queue[0]
        self._single = max(0, self._single - 1)
        self.dropped += 1
        self.log.failure(
            "room store: the database refused a {kind} for {room}; not saved",
            failure,
            kind=write.kind,
            room=write.room,
            store=self._where,
        )
        self._settle()

    def _settle(self) -> None:
        """Wake the flushes that are satisfied, then go on with the rest of the queue."""
        if self._waiters:
            oldest = min((w.seq for w in self._queue), default=self._seq + 1)
            ready = [d for seq, d in self._waiters if seq < oldest]
            self._waiters = [(seq, d) for seq, d in self._waiters if seq >= oldest]
            for d in ready:
                if not d.called:  # a flush given up on (close's timeout) stays given up
                    d.callback(None)
        self._schedule(0)
