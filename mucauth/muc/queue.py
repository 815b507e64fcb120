"""The join queue: at most ``max_in_flight`` checks at the authorizer, the rest wait their turn.

Clients enter every bookmarked room at once after login, and after an XMPP server restart every
user does so at the same moment. Refusing what is over the in-flight limit locked users out of
rooms the service allows; queueing it only costs them a moment. What stays refused is what no
normal client does: more than ``max_per_user`` joins pending for one user, more than
``max_total`` for the whole service, or a join that waited ``timeout`` seconds for its turn.

Fair between users: each user with waiting joins has one place in a round, so one user's 50
bookmarks delay another user's single join by one turn, not by 50.

Nothing here knows XMPP or HTTP: an item is whatever the caller queues, ``start`` is called when
its turn comes and ``expire`` when it waited too long. The caller calls :meth:`release` once the
check is over (answered, cancelled, given up), which frees the slot for the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["CheckQueue", "QueueFullError", "Ticket"]

T = TypeVar("T")

State = Literal["queued", "running", "done"]
QUEUED: State = "queued"
RUNNING: State = "running"
DONE: State = "done"


class QueueFullError(Exception):
    """A bound was reached: ``limit`` is "user" or "service", ``count`` what was pending."""

    def __init__(self, limit: Literal["user", "service"], count: int) -> None:
        super().__init__(f"{count} checks pending ({limit} bound)")
        self.limit: Literal["user", "service"] = limit
        self.count = count


@dataclass(eq=False, slots=True)
class Ticket(Generic[T]):
    """One submitted item and where it stands."""

    item: T
    user: str
    submitted: float
    state: State = QUEUED


class CheckQueue(Generic[T]):
    """A bounded, fair queue in front of a limited number of concurrent checks."""

    def __init__(
        self,
        clock: IReactorTime,
        start: Callable[[Ticket[T]], None],
        expire: Callable[[T, float], None],
        *,
        max_in_flight: int = 10,
        max_per_user: int = 200,
        max_total: int = 50_000,
        timeout: float = 30.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """``start(ticket)`` is called when an item's turn comes (``ticket`` is what
        :meth:`submit` returns, handed over first: the item may finish before submit returns);
        ``expire(item, waited)`` is called for an item that waited ``timeout`` seconds;
        ``on_wait(seconds)`` hears how long each started or expired item waited (0 when it
        started at once): the metrics hook."""
        self._clock = clock
        self._start = start
        self._expire = expire
        self.max_in_flight = max(1, max_in_flight)
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.timeout = timeout
        self._on_wait = on_wait
        self._running = 0
        self._queued = 0
        self._per_user: dict[str, int] = {}
        # user -> that user's waiting tickets, oldest first. A user is in _lines exactly when
        # it has one place in _turns (its line may be empty after cancellations).
        self._lines: dict[str, deque[Ticket[T]]] = {}
        self._turns: deque[str] = deque()
        # Every ticket that waited, in submission order (finished ones are skipped lazily):
        # the oldest waiting ticket is the next to expire.
        self._arrivals: deque[Ticket[T]] = deque()
        self._timer: IDelayedCall | None = None
        self._pumping = False
        self._pump_again = False
        self._pump_soon: IDelayedCall | None = None  # release(later=True)'s turn

    # -- what the caller and the metrics read

    def __len__(self) -> int:
        """Items pending: waiting or running."""
        return self._queued + self._running

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def in_flight(self) -> int:
        return self._running

    def pending_for(self, user: str) -> int:
        return self._per_user.get(user, 0)

    @property
    def users(self) -> dict[str, int]:
        """Users with pending items and how many each (a copy)."""
        return dict(self._per_user)

    # -- life of a ticket

    def submit(self, item: T, user: str) -> Ticket[T]:
        """Queue ``item`` for ``user``; it may start before this returns.

        Raises :class:`QueueFullError` (and queues nothing) when a bound is reached.
        """
        count = self._per_user.get(user, 0)
        if count >= self.max_per_user:
            raise QueueFullError("user", count)
        if len(self) >= self.max_total:
            raise QueueFullError("service", len(self))
        self._per_user[user] = count + 1
        ticket = Ticket(item, user, self._clock.seconds())
        if self._running < self.max_in_flight and not self._turns:
            self._run(ticket, 0.0)
            return ticket
        self._queued += 1
        line = self._lines.get(user)
        if line is None:
            line = self._lines[user] = deque()
            self._turns.append(user)
        line.append(ticket)
        self._arrivals.append(ticket)
        if self._timer is None:
            self._arm()
        if self._running < self.max_in_flight:
            self._pump()  # the users ahead had only cancelled joins left
        return ticket

    def release(self, ticket: Ticket[T], *, later: bool = False) -> None:
        """The item is done with (answered, cancelled, refused): free its place.

        ``later``: start the waiting items one reactor turn from now, not at once. For a
        cancelled item: a session that goes away makes its server send every room it was
        joining an unavailable, in the server's own order, and the rest of them, read in the
        same turn, must cancel their queued joins before the freed slot can start one."""
        if ticket.state == DONE:
            return
        if ticket.state == QUEUED:
            self._unqueue(ticket)
        else:
            self._running -= 1
        self._done(ticket)
        if not later:
            self._pump()
        elif self._pump_soon is None:
            self._pump_soon = self._clock.callLater(0, self._pump_later)

    def _pump_later(self) -> None:
        self._pump_soon = None
        self._pump()

    def clear(self) -> list[T]:
        """Forget every waiting item without starting or expiring it; returns them.

        For shutdown and a lost link, before running items are cancelled: freeing their slots
        must not start the waiting ones.
        """
        waiting = [t for line in self._lines.values() for t in line]
        for ticket in waiting:
            self._done(ticket)
        self._queued = 0
        self._lines.clear()
        self._turns.clear()
        self._arrivals.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._pump_soon is not None and self._pump_soon.active():
            self._pump_soon.cancel()
        self._pump_soon = None
        return [t.item for t in waiting]

    # -- inside

    def _done(self, ticket: Ticket[T]) -> None:
        ticket.state = DONE
        left = self._per_user[ticket.user] - 1
        if left:
            self._per_user[ticket.user] = left
        else:
            del self._per_user[ticket.user]

    def _unqueue(self, ticket: Ticket[T]) -> None:
        # A line holds at most max_per_user tickets: removal by value is cheap enough, and it
        # keeps a user who joins and leaves over and over from growing the line.
        self._lines[ticket.user].remove(ticket)
        self._queued -= 1

    def _run(self, ticket: Ticket[T], waited: float) -> None:
        ticket.state = RUNNING
        self._running += 1
        if self._on_wait is not None:
            self._on_wait(waited)
        self._start(ticket)

    def _pump(self) -> None:
        """Start waiting items while slots are free, taking users in turn.

        ``start`` may finish an item at once (a cached answer) and so re-enter through
        ``release``: the outer call keeps the loop, so the stack stays flat however long the
        queue.
        """
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                while self._running < self.max_in_flight and self._turns:
                    user = self._turns.popleft()
                    line = self._lines[user]
                    if not line:
                        del self._lines[user]
                        continue
                    ticket = line.popleft()
                    if line:
                        self._turns.append(user)
                    else:
                        del self._lines[user]
                    self._queued -= 1
                    self._run(ticket, self._clock.seconds() - ticket.submitted)
        finally:
            self._pumping = False
        self._trim_arrivals()

    def _trim_arrivals(self) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0].state != QUEUED:
            arrivals.popleft()
        if not arrivals and self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        oldest = self._arrivals[0]
        delay = max(0.0, oldest.submitted + self.timeout - self._clock.seconds())
        self._timer = self._clock.callLater(delay, self._expire_overdue)

    def _expire_overdue(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        overdue: list[Ticket[T]] = []
        arrivals = self._arrivals
        while arrivals:
            ticket = arrivals[0]
            if ticket.state != QUEUED:
                arrivals.popleft()
                continue
            if now - ticket.submitted < self.timeout:
                break
            arrivals.popleft()
            self._unqueue(ticket)
            self._done(ticket)
            overdue.append(ticket)
        if arrivals:
            self._arm()
        for ticket in overdue:
            waited = now - ticket.submitted
            if self._on_wait is not None:
                self._on_wait(waited)
            self._expire(ticket.item, waited)
