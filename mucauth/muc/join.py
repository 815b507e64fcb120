"""The join gate: where a join is decided.

Every join (and gated nick change or registration) becomes a :class:`Pending` check: queued
for a free slot (``queue.py``), asked of the authorizer, and on its answer either handed to the
caller's ``on_allow`` or refused with the configured error. One log event and one metrics call
per decision. While a check is pending nothing about the room changes and nothing else waits.

Clients do not wait for the self-presence before they ask the room something (the owner form
right behind a join that creates the room, a disco query, a first message): what the joining
session sends the room meanwhile is held behind its join (:meth:`JoinGate.hold`) and handled
once the join is decided, in the order it came. A refused join refuses what it held with the
same error; a cancelled one lets it through as from anyone not in the room.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.muc import errors, stanzas
from mucauth.muc.core import Core
from mucauth.muc.incoming import Context, Held
from mucauth.muc.queue import CheckQueue, QueueFullError, Ticket
from mucauth.settings import ErrorCondition

__all__ = ["DENY_TEXT", "FAILURE_TEXT", "MAX_HELD", "Held", "JoinGate", "Pending"]

DENY_TEXT = "You are not allowed to enter this room"
FAILURE_TEXT = "Room authorization is unavailable, try again later"

# The decision event's text form; the JSON form carries every field (see _log_decision).
_DECISION_FORMAT = (
    "{action} {outcome} user={user} room={room} nick={nick} source={source}"
    " latency_ms={latency_ms} queued_ms={queued_ms} reason={reason}"
)
_ERROR_FORMAT = (
    "{action} {outcome} kind={kind} status={status} user={user} room={room} nick={nick}"
    " source={source} latency_ms={latency_ms} queued_ms={queued_ms} reason={reason}"
)
_OVERLOAD_FORMATS = {
    "service": "{action} {outcome} kind={kind}: {count} checks pending service-wide"
    " user={user} room={room} nick={nick}",
    "user": "{action} {outcome} kind={kind}: {count} checks pending for user={user}"
    " room={room} nick={nick}",
    "timeout": "{action} {outcome} kind={kind}: waited {queued_ms} ms for a free check"
    " user={user} room={room} nick={nick}",
}

# Where a pending check sits in the gate's table: one per (user's full JID, room, action).
Slot = tuple[JID, JID, str]

# Stanzas one joining session may have waiting behind its join; past this they are refused
# wait/resource-constraint. A client sends a handful (form, disco, a message or two).
MAX_HELD = 50


@dataclass
class Pending:
    """One authorization check, queued or in flight, and what to do with its answer."""

    request: JoinRequest
    stanza: domish.Element
    context: Context
    on_allow: Callable[[Pending], None]
    started: float
    deferred: Deferred[Decision] | None = None
    ticket: Ticket[Pending] | None = None
    checked: float | None = None  # when the authorizer was asked (after any wait in the queue)
    held: list[Held] = field(default_factory=list)
    decision: Decision | None = None  # the answer, once there is one
    # A check nobody is waiting at the door for (a re-check of an occupant): its decision,
    # whatever it is, goes here instead of to on_allow or a refusal, and nothing is sent.
    on_decided: Callable[[Decision], None] | None = None

    @property
    def slot(self) -> Slot:
        return (self.request.user, self.request.room, self.request.action)


class JoinGate:
    """Pending checks, the queue in front of the authorizer, and what a decision leads to."""

    def __init__(
        self,
        core: Core,
        authorizer: IJoinAuthorizer,
        *,
        deny_condition: ErrorCondition,
        failure_condition: ErrorCondition,
        show_reason: bool,
        max_in_flight: int,
        on_decision: Callable[[JoinRequest, Decision], None] | None,
        on_queue_wait: Callable[[float], None] | None,
        replay: Callable[[Held], None],
    ) -> None:
        """``replay`` hands a held stanza back to the service, which handles it as if it had
        just arrived (with its usual protection against exceptions)."""
        self._core = core
        self._replay = replay
        self._clock = core.clock
        self.authorizer = authorizer
        self.deny_condition = deny_condition
        self.failure_condition = failure_condition
        self.show_reason = show_reason
        self._on_decision = on_decision
        self._pending: dict[Slot, Pending] = {}
        settings = core.settings
        self._queue: CheckQueue[Pending] = CheckQueue(
            core.clock,
            self._ask,
            self._waited_too_long,
            max_in_flight=max_in_flight,
            max_per_user=settings.max_pending_per_user,
            max_total=settings.max_pending_checks,
            timeout=settings.queue_timeout,
            on_wait=on_queue_wait,
        )

    # -- what the service and its other parts read

    @property
    def pending(self) -> Mapping[Slot, Pending]:
        return MappingProxyType(self._pending)

    @property
    def queued(self) -> int:
        return self._queue.queued

    @property
    def pending_per_user(self) -> dict[str, int]:
        return self._queue.users

    def get(self, user: JID, room: JID, action: str = "join") -> Pending | None:
        return self._pending.get((user, room, action))

    def is_joining(self, user: JID, room: JID) -> bool:
        return (user, room, "join") in self._pending

    def has_pending(self, room: JID) -> bool:
        """Whether any check for ``room`` is pending (a scan: for the rare caller)."""
        return any(key[1] == room for key in self._pending)

    # -- starting and ending checks

    def start(
        self,
        request: JoinRequest,
        stanza: domish.Element,
        context: Context,
        on_allow: Callable[[Pending], None],
    ) -> None:
        """Queue a check; ``on_allow(pending)`` runs if the answer is yes (it may raise a
        MUCError to refuse after all). Raises ``errors.Overloaded`` past a pending bound."""
        pending = Pending(request, stanza, context, on_allow, self._clock.seconds())
        if not self._submit(pending):
            raise errors.Overloaded()

    def check(self, request: JoinRequest, context: Context) -> Deferred[Decision]:
        """Ask about ``request`` through the same queue, authorizer, log line and metrics as a
        join, for a caller that acts on the answer itself (a re-check of an occupant): the
        Deferred fires with the Decision, an error one when the queue refuses or gives up, or
        a cancelled one when the link goes; it never errbacks, and nothing is sent."""
        done: Deferred[Decision] = Deferred()
        # Never sent: a check's Pending holds the stanza that a refusal would answer.
        placeholder = domish.Element((None, "check"))
        pending = Pending(request, placeholder, context, _no_allow, self._clock.seconds())
        pending.on_decided = done.callback
        if pending.slot in self._pending:
            return succeed(Decision.error("overload", "the same check is pending"))
        if not self._submit(pending):
            return succeed(Decision.error("overload", "too many checks pending"))
        return done

    def _submit(self, pending: Pending) -> bool:
        """Into the queue; False (logged and counted) past a pending bound."""
        request = pending.request
        # Known before the queue may start it: a check can be decided before submit returns.
        self._pending[pending.slot] = pending
        try:
            pending.ticket = self._queue.submit(pending, request.user.userhost())
        except QueueFullError as e:
            del self._pending[pending.slot]
            self._overloaded(request, e.limit, e.count)
            return False
        return True

    def hold(self, pending: Pending, held: Held) -> None:
        """Keep ``held`` until ``pending`` is decided. Raises ``errors.Overloaded`` when the
        session already has :data:`MAX_HELD` stanzas waiting."""
        if len(pending.held) >= MAX_HELD:
            raise errors.Overloaded("Too many requests waiting for your join to be decided")
        pending.held.append(held)

    def cancel(self, pending: Pending) -> None:
        """Give up on ``pending``: a queued check is never asked, a running one is cancelled
        (its answer, if any, is ignored). What it held is handled now, from a non-occupant."""
        if self._forget(pending, cancelled=True):
            if pending.deferred is not None:
                pending.deferred.cancel()
            self._release(pending)

    def cancel_all(self) -> list[Pending]:
        """Cancel every check (the link is gone, or the service stops); returns them, with
        whatever they held still in ``held``, for the caller to answer or drop."""
        self._queue.clear()  # first: cancelling a running check must not start a queued one
        cancelled = list(self._pending.values())
        for pending in cancelled:
            if self._forget(pending) and pending.deferred is not None:
                pending.deferred.cancel()
        waiting = [p for p in cancelled if p.on_decided is not None]
        for pending in waiting:
            assert pending.on_decided is not None
            pending.on_decided(Decision.cancelled())
        return [p for p in cancelled if p.on_decided is None]

    # -- inside

    def _ask(self, ticket: Ticket[Pending]) -> None:
        """The queue's turn for a check: ask the authorizer (whose timeout starts now)."""
        pending = ticket.item
        pending.ticket = ticket
        pending.checked = self._clock.seconds()
        try:
            d = self.authorizer.authorize(pending.request)
        except Exception:
            d = fail()
        pending.deferred = d
        d.addCallbacks(
            self._decided, self._authorizer_failed, callbackArgs=(pending,), errbackArgs=(pending,)
        )

    def _waited_too_long(self, pending: Pending, waited: float) -> None:
        """The queue gave up on ``pending`` (queue_timeout): refused, the authorizer unasked."""
        if self._pending.get(pending.slot) is pending:
            del self._pending[pending.slot]
        request = pending.request
        decision = Decision.error(
            "queue_timeout", f"no free check in {self._queue.timeout:g} s"
        ).with_details(source="service")
        self._log_decision(request, decision, waited, _OVERLOAD_FORMATS["timeout"], queued=waited)
        self._report(request, decision)
        if pending.on_decided is not None:
            pending.on_decided(decision)
            return
        self.refuse_all(pending, errors.Overloaded())

    def _overloaded(
        self, request: JoinRequest, limit: Literal["service", "user"], count: int
    ) -> None:
        """A refusal decided here, before any check: logged and counted like the others."""
        reason = "too many checks pending" + (" for user" if limit == "user" else "")
        decision = Decision.error("overload", reason).with_details(source="service")
        self._log_decision(request, decision, 0.0, _OVERLOAD_FORMATS[limit], count=count)
        self._report(request, decision)

    def _log_decision(
        self,
        request: JoinRequest,
        decision: Decision,
        elapsed: float,
        text_format: str | None = None,
        *,
        queued: float = 0.0,
        **extra: Any,
    ) -> None:
        """The one event per decision (``mucauth_event="decision"``): allow and deny at info,
        error at warn, where an operator looks for trouble. ``latency_ms`` is what the user
        waited, ``queued_ms`` the part of it spent in the join queue before the authorizer
        was asked; the gate's own figures (HTTP status, source) come from the Decision."""
        emit = self._core.log.warn if decision.is_error else self._core.log.info
        emit(
            text_format or (_ERROR_FORMAT if decision.is_error else _DECISION_FORMAT),
            mucauth_event="decision",
            action=request.action,
            outcome=decision.outcome,
            kind=decision.kind,
            source=decision.source,
            status=decision.status,
            user=request.user.full(),
            room=request.room.full(),
            nick=request.nick,
            reason=decision.reason,
            # the standing the service granted (our extension of the answer), None if none
            affiliation=decision.affiliation,
            role=decision.role,
            latency_ms=round(elapsed * 1000, 1),
            queued_ms=round(queued * 1000, 1),
            **extra,
        )

    def _report(self, request: JoinRequest, decision: Decision) -> None:
        if self._on_decision is None:
            return
        try:
            self._on_decision(request, decision)
        except Exception:
            self._core.log.failure("on_decision hook failed")

    def _forget(self, pending: Pending, *, cancelled: bool = False) -> bool:
        """Drop ``pending``; False if it was no longer the current check for its slot. A
        cancelled check's place goes to the next one a reactor turn later (``queue.py``)."""
        if self._pending.get(pending.slot) is not pending:
            return False
        del self._pending[pending.slot]
        if pending.ticket is not None:
            self._queue.release(pending.ticket, later=cancelled)
        return True

    def _authorizer_failed(self, failure: Failure, pending: Pending) -> None:
        if failure.check(CancelledError) and self._pending.get(pending.slot) is not pending:
            return None
        self._core.log.failure("authorizer failed instead of answering", failure)
        failed = Decision.error("internal", "authorizer failed").with_details(source="service")
        self._decided(failed, pending)
        return None

    def _decided(self, decision: Decision, pending: Pending) -> None:
        if not self._forget(pending):
            return  # the user left, the link dropped, or the service shut down meanwhile
        request = pending.request
        queued = (pending.checked or pending.started) - pending.started
        self._log_decision(
            request, decision, self._clock.seconds() - pending.started, queued=queued
        )
        self._report(request, decision)
        pending.decision = decision
        if pending.on_decided is not None:
            pending.on_decided(decision)
            return
        try:
            if decision.is_allowed:
                pending.on_allow(pending)
                self._release(pending)
            elif decision.is_denied:
                text = decision.reason if self.show_reason and decision.reason else DENY_TEXT
                self._send_errors(pending, self.deny_condition, text)
            else:
                self._send_errors(pending, self.failure_condition, FAILURE_TEXT)
        except errors.MUCError as e:
            self._core.log.info(
                "{action} refused after allow user={user} room={room} nick={nick} error={error}",
                action=request.action,
                user=request.user.full(),
                room=request.room.full(),
                nick=request.nick,
                error=type(e).__name__,
            )
            self.refuse_all(pending, e)
        except Exception:
            self._core.log.failure("unexpected error completing a join")
            self.refuse_all(pending, errors.MUCError("Internal error"))

    # -- what a decided check held

    def _release(self, pending: Pending) -> None:
        """Handle what ``pending`` held, in order, now that it is no longer pending."""
        held, pending.held = pending.held, []
        for each in held:
            self._replay(each)

    def _send_errors(self, pending: Pending, condition: ErrorCondition, text: str | None) -> None:
        """The join's refusal, and the same for everything it held."""
        core = self._core
        core.send_error(pending.stanza, pending.context, condition, text)
        held, pending.held = pending.held, []
        for each in held:
            core.send_error(each.stanza, each.context, condition, text)

    def refuse_all(self, pending: Pending, error: errors.MUCError) -> None:
        """Refuse ``pending``'s stanza and everything it held with ``error``."""
        self._send_errors(pending, stanzas.condition_for(error), error.text)


def _no_allow(pending: Pending) -> None:
    """A check's on_allow: never called, its decision goes to ``on_decided``."""
