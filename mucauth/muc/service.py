"""The XEP-0045 service as a Wokkel handler: routes stanzas to rooms and runs the join gate.

A component serves one domain, so every stanza that reaches us is for the service (no node), a
room (node) or an occupant (node and resource). Room rules live in ``room.py``, stanza shapes in
``stanzas.py``; this module decides who gets what, and when.

This handler answers disco and ping for its domain itself: do not add Wokkel's ``DiscoHandler``
or ``PingHandler`` to the same stream, they would answer a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.disco import NS_DISCO_INFO, NS_DISCO_ITEMS, DiscoInfo, DiscoItems
from wokkel.iwokkel import IDisco
from wokkel.muc import NS_MUC_ADMIN, NS_MUC_OWNER, NS_REGISTER
from wokkel.ping import NS_PING
from wokkel.subprotocols import XMPPHandler
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.muc import errors, info, stanzas
from mucauth.muc.incoming import (
    Address,
    child,
    child_ns,
    history_options,
    oversized_domain,
    oversized_part,
    parse_address,
    parse_sender,
)
from mucauth.muc.queue import CheckQueue, QueueFullError, Ticket
from mucauth.muc.room import (
    HistoryEntry,
    Occupant,
    Room,
    RoomConfig,
)
from mucauth.settings import ErrorCondition, MUCSettings

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

# Rooms have no roster: subscription requests and probes are dropped without an answer.
_IGNORED_PRESENCE = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"})

# An error from an occupant's session with one of these conditions means the session is gone
# (its server bounced our stanza); XEP-0045 asks us to remove it. Other errors (a client that
# did not like one message) are ignored rather than kicking someone for a quirk.
_SESSION_GONE = frozenset(
    {
        "gone",
        "item-not-found",
        "recipient-unavailable",
        "redirect",
        "remote-server-not-found",
        "remote-server-timeout",
        "service-unavailable",
    }
)


@dataclass
class _Context:
    sender: JID
    address: Address


@dataclass
class _Pending:
    """One authorization check in flight and what to do with its answer."""

    request: JoinRequest
    stanza: domish.Element
    context: _Context
    on_allow: Callable[[_Pending], None]
    started: float
    deferred: Deferred[Decision] | None = None
    ticket: Ticket[_Pending] | None = None
    checked: float | None = None  # when the authorizer was asked (after any wait in the queue)

    @property
    def key(self) -> tuple[JID, JID, str]:
        return (self.request.user, self.request.room, self.request.action)


@dataclass(frozen=True)
class _Stored:
    """A history message as reflected: its children (shared, never mutated) and id."""

    children: list[domish.Element]
    stanza_id: str | None


@implementer(IDisco)
class MUCService(XMPPHandler):
    """Multi-User Chat for the component's domain; every join passes ``authorizer`` first."""

    log = Logger()

    def __init__(
        self,
        authorizer: IJoinAuthorizer,
        settings: MUCSettings = MUCSettings(),  # noqa: B008  (frozen, shared safely)
        *,
        deny_condition: ErrorCondition = ErrorCondition("cancel", "forbidden"),  # noqa: B008
        failure_condition: ErrorCondition = ErrorCondition(  # noqa: B008
            "wait", "service-unavailable"
        ),
        show_reason: bool = False,
        authorize_registration: bool = False,
        clock: IReactorTime | None = None,
        max_in_flight: int = 10,
        on_decision: Callable[[JoinRequest, Decision], None] | None = None,
        on_queue_wait: Callable[[float], None] | None = None,
    ) -> None:
        """``max_in_flight`` checks are asked at once; more wait in the join queue (see
        ``queue.py``); tap.py sets it to the HTTP pool's size, which bounds the service's
        concurrency anyway.

        ``on_decision`` hears every decision the service acted on, the queue's refusals
        included (as ``Decision.error("overload" or "queue_timeout", ...)``), and
        ``on_queue_wait`` how long each check waited for its turn: the metrics hooks, kept
        plain callables so this package never imports a metrics library."""
        super().__init__()
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        assert clock is not None
        self._clock: IReactorTime = clock
        self._authorizer = authorizer
        self.settings = settings
        self.deny_condition = deny_condition
        self.failure_condition = failure_condition
        self.show_reason = show_reason
        self.authorize_registration = authorize_registration
        self._on_decision = on_decision
        self._service_jid: JID | None = None
        self._rooms: dict[JID, Room] = {}
        self._pending: dict[tuple[JID, JID, str], _Pending] = {}
        self._queue: CheckQueue[_Pending] = CheckQueue(
            clock,
            self._ask,
            self._waited_too_long,
            max_in_flight=max_in_flight,
            max_per_user=settings.max_pending_per_user,
            max_total=settings.max_pending_checks,
            timeout=settings.queue_timeout,
            on_wait=on_queue_wait,
        )

    # -- public API

    @property
    def service_jid(self) -> JID | None:
        """The domain we serve, once known from the stream or from a stanza."""
        return self._service_jid

    @property
    def rooms(self) -> Mapping[JID, Room]:
        return MappingProxyType(self._rooms)

    @property
    def pending_checks(self) -> int:
        """Joins (and gated registrations, nick changes) waiting for a decision: queued or
        being checked."""
        return len(self._pending)

    @property
    def queued_checks(self) -> int:
        """The part of :attr:`pending_checks` still waiting for its turn in the queue."""
        return self._queue.queued

    @property
    def pending_per_user(self) -> dict[str, int]:
        """Pending checks by bare JID (a copy): every check ending must give its count back."""
        return self._queue.users

    def shutdown(self) -> None:
        """Tell every occupant the service is going away (status 332), then forget everything.

        Pending joins are answered too, so no client waits for a room that will not come.
        """
        for room in list(self._rooms.values()):
            for occupant in room.clear():
                for session in occupant.sessions:
                    self.send(
                        stanzas.occupant_presence(
                            room,
                            occupant,
                            session,
                            show_jid=True,
                            unavailable=True,
                            statuses=(stanzas.SELF_PRESENCE, stanzas.REMOVED_SHUTDOWN),
                            real_jid=session,
                        )
                    )
        self._rooms.clear()
        self._queue.clear()  # first: cancelling a running check must not start a queued one
        for pending in list(self._pending.values()):
            self._cancel(pending)
            self._refuse(pending.stanza, pending.context, errors.ShuttingDown())

    # -- Wokkel hooks

    def connectionInitialized(self) -> None:
        this = getattr(self.xmlstream, "thisEntity", None)
        if this is not None:
            self._service_jid = JID(tuple=(None, this.host, None))
        self.xmlstream.addObserver("/presence", self._observe(self._on_presence))
        self.xmlstream.addObserver("/message", self._observe(self._on_message))
        self.xmlstream.addObserver("/iq", self._observe(self._on_iq))

    def connectionLost(self, reason: Failure) -> None:
        """Rooms do not survive the link: clients find out by self-ping and rejoin (and pass
        the gate again). Pending checks are cancelled; their answers could not be delivered."""
        self._queue.clear()  # first: cancelling a running check must not start a queued one
        for pending in list(self._pending.values()):
            self._cancel(pending)
        for room in self._rooms.values():
            room.clear()
        self._rooms.clear()
        super().connectionLost(reason)

    def getDiscoInfo(
        self,
        requestor: JID,
        target: JID,
        nodeIdentifier: str = "",  # noqa: N803  (IDisco signature)
    ) -> list[Any]:
        if nodeIdentifier:
            raise errors.RoomNotFound("No such node")
        if target.user is None:
            return info.service_info(self.settings.service_name)
        room = self._rooms.get(JID(tuple=(target.user, target.host, None)))
        if room is None:
            raise errors.RoomNotFound("No such room")
        return info.room_info(room)

    def getDiscoItems(
        self,
        requestor: JID,
        target: JID,
        nodeIdentifier: str = "",  # noqa: N803  (IDisco signature)
    ) -> list[Any]:
        if nodeIdentifier:
            raise errors.RoomNotFound("No such node")
        if target.user is None:
            host = target.host
            return info.public_rooms([r for j, r in self._rooms.items() if j.host == host])
        if JID(tuple=(target.user, target.host, None)) not in self._rooms:
            raise errors.RoomNotFound("No such room")
        return []  # occupants are not listed: that would defeat semi-anonymity

    # -- plumbing

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def _observe(
        self, handler: Callable[[domish.Element, _Context], None]
    ) -> Callable[[domish.Element], None]:
        """Wrap a handler so no exception escapes into the stream: domain errors become the
        matching XMPP error, anything else is logged and answered internal-server-error."""

        def observer(stanza: domish.Element) -> None:
            if getattr(stanza, "handled", False):
                return
            stanza.handled = True  # type: ignore[attr-defined]
            context = None
            try:
                context = self._context(stanza)
                if context is not None:
                    handler(stanza, context)
            except errors.MUCError as e:
                if context is not None:
                    self._refuse(stanza, context, e)
            except Exception:
                self.log.failure(
                    "unexpected error handling {stanza_kind} from {sender}",
                    stanza_kind=stanza.name,
                    sender=stanza.getAttribute("from"),
                )
                if context is not None:
                    self._refuse(stanza, context, errors.MUCError("Internal error"))

        return observer

    def _context(self, stanza: domish.Element) -> _Context | None:
        raw_from = stanza.getAttribute("from")
        raw_to = stanza.getAttribute("to")
        if not raw_from or not raw_to:
            self.log.warn(
                "dropping {stanza_kind} without from/to", stanza_kind=stanza.name
            )  # nobody to answer
            return None
        for attribute, raw in (("from", raw_from), ("to", raw_to)):
            part = oversized_part(raw) if attribute == "from" else oversized_domain(raw)
            if part is not None:
                self.log.warn(
                    "dropping {stanza_kind}: {attribute} too long ({part} over 1023 bytes)",
                    stanza_kind=stanza.name,
                    attribute=attribute,
                    part=part,
                )
                return None
        sender = parse_sender(raw_from)
        if sender is None:
            self.log.warn("dropping {stanza_kind}: bad from", stanza_kind=stanza.name)
            return None
        address = parse_address(raw_to, self.settings)
        if address is None:
            self.log.warn("dropping {stanza_kind}: bad to domain", stanza_kind=stanza.name)
            return None
        if self._service_jid is None:
            self._service_jid = address.service
        return _Context(sender, address)

    def _refuse(self, stanza: domish.Element, context: _Context, error: errors.MUCError) -> None:
        """Answer ``stanza`` with the error ``error`` maps to, unless it must not be answered."""
        self._send_error(stanza, context, stanzas.condition_for(error), error.text)

    def _send_error(
        self,
        stanza: domish.Element,
        context: _Context,
        condition: ErrorCondition,
        text: str | None,
    ) -> None:
        kind = stanza.getAttribute("type")
        if kind == "error" or (stanza.name == "iq" and kind == "result"):
            return  # never answer an error or a response
        if stanza.name == "presence" and kind == "unavailable":
            return  # the user is leaving: nothing to tell them
        address = context.address
        if stanza.name == "presence":
            reply = stanzas.join_error(
                stanza, condition, text, room=address.room, sender=address.reply_from
            )
        else:
            reply = stanzas.error_reply(
                stanza, condition, text, by=address.room, sender=address.reply_from
            )
        self.send(reply)

    def _sessions(self, room: Room) -> Iterable[tuple[Occupant, JID]]:
        for occupant in room:
            for session in list(occupant.sessions):
                yield occupant, session

    def _broadcast(
        self,
        room: Room,
        subject: Occupant,
        *,
        statuses: Iterable[int] = (),
        self_statuses: Iterable[int] = (),
        skip: JID | None = None,
        **presence: Any,
    ) -> None:
        """Send ``subject``'s presence to every session in the room; its own sessions get 110."""
        own = [s for s in subject.sessions if s != skip]
        for viewer, session in self._sessions(room):
            if viewer is subject or session == skip:
                continue
            self.send(
                stanzas.occupant_presence(
                    room,
                    subject,
                    session,
                    show_jid=room.sees_real_jids(viewer),
                    statuses=statuses,
                    **presence,
                )
            )
        for session in own:
            self.send(
                stanzas.occupant_presence(
                    room,
                    subject,
                    session,
                    show_jid=True,
                    statuses={stanzas.SELF_PRESENCE, *statuses, *self_statuses},
                    **presence,
                )
            )

    # -- presence

    def _on_presence(self, presence: domish.Element, context: _Context) -> None:
        kind = presence.getAttribute("type")
        if kind == "error":
            self._on_client_error(presence, context)
        elif kind in _IGNORED_PRESENCE:
            return
        elif kind == "unavailable":
            self._on_unavailable(presence, context)
        elif kind is not None:
            raise errors.BadRequest("Unknown presence type")
        else:
            self._on_available(presence, context)

    def _on_available(self, presence: domish.Element, context: _Context) -> None:
        address, user = context.address, context.sender
        room_jid = address.require_room()
        nick = address.require_nick()
        room = self._rooms.get(room_jid)
        occupant = room.occupant_for(user) if room is not None else None
        if room is not None and occupant is not None:
            if nick == occupant.nick:
                self._update_presence(room, occupant, presence, user)
            else:
                self._start_nick_change(room, presence, context, nick)
            return
        pending = self._pending.get((user, room_jid, "join"))
        if pending is not None:
            if pending.request.nick == nick:
                return  # the same join again: the pending answer serves both
            raise errors.JoinPending()
        if room is not None:
            room.check_join(user, nick)  # no point asking the gate for a taken nick
        self._start_check(
            JoinRequest(user, room_jid, nick, presence.getAttribute("id")),
            presence,
            context,
            self._admit,
        )

    def _admit(self, pending: _Pending) -> None:
        """The gate said yes: re-check, enter, and send the join sequence in XEP-0045 order."""
        request, presence = pending.request, pending.stanza
        user = request.user
        room = self._rooms.get(request.room)
        created = room is None
        if room is None:
            room = Room(
                request.room,
                creator=user,
                created=self._now(),
                config=RoomConfig(
                    public=self.settings.public_rooms,
                    non_anonymous=self.settings.non_anonymous,
                    max_occupants=self.settings.max_occupants,
                ),
                history_size=self.settings.history_size,
            )
            self.log.info(
                "room created room={room} owner={user}", room=room.jid.full(), user=user.full()
            )
        else:
            room.check_join(user, request.nick)  # taken while we were asking?
        result = room.join(user, request.nick, stanzas.client_children(presence))
        self._rooms[room.jid] = room
        occupant = result.occupant

        for other in room:
            if other is not occupant:
                self.send(
                    stanzas.occupant_presence(
                        room, other, user, show_jid=room.sees_real_jids(occupant)
                    )
                )
        own_codes = {stanzas.SELF_PRESENCE}
        if created:
            own_codes.add(stanzas.ROOM_CREATED)
        if room.config.non_anonymous:
            own_codes.add(stanzas.REALJID_PUBLIC)
        if pending.context.address.nick_changed:
            own_codes.add(stanzas.NICK_ASSIGNED)
        self._broadcast(room, occupant, skip=user)
        self.send(
            stanzas.occupant_presence(
                room, occupant, user, show_jid=True, statuses=own_codes, stanza_id=request.stanza_id
            )
        )
        # Most joins create a room or enter a quiet one: no history to pick, so the join's
        # <history/> wish is not even read.
        history = room.history(history_options(presence), self._now()) if room.has_history else []
        for entry in history:
            stored: _Stored = entry.payload  # type: ignore[assignment]
            self.send(
                stanzas.groupchat_message(
                    room,
                    entry.nick,
                    entry.occupant_id,
                    user,
                    stored.children,
                    stanza_id=stored.stanza_id,
                    delay=entry.stamp,
                )
            )
        self.send(stanzas.subject_message(room, user))

    def _update_presence(
        self, room: Room, occupant: Occupant, presence: domish.Element, user: JID
    ) -> None:
        room.update_presence(user, stanzas.client_children(presence))
        self._broadcast(room, occupant)

    def _start_nick_change(
        self, room: Room, presence: domish.Element, context: _Context, nick: str
    ) -> None:
        holder = room.occupant(nick)
        if holder is not None:
            raise errors.NickInUse()
        if not self.settings.gate_nick_change:
            self._change_nick(room, presence, context, nick)
            return
        key = (context.sender, room.jid, "join")
        if key in self._pending:
            raise errors.JoinPending()

        def on_allow(pending: _Pending) -> None:
            current = self._rooms.get(room.jid)
            if current is None or current.occupant_for(context.sender) is None:
                return  # left while we were asking
            self._change_nick(current, presence, context, nick)

        self._start_check(
            JoinRequest(context.sender, room.jid, nick, presence.getAttribute("id")),
            presence,
            context,
            on_allow,
        )

    def _change_nick(
        self, room: Room, presence: domish.Element, context: _Context, nick: str
    ) -> None:
        old_nick, occupant = room.change_nick(context.sender, nick)
        room.update_presence(context.sender, stanzas.client_children(presence))
        self._broadcast(
            room,
            occupant,
            statuses={stanzas.NEW_NICK},
            unavailable=True,
            nick=old_nick,
            new_nick=nick,
        )
        self._broadcast(
            room,
            occupant,
            self_statuses={stanzas.NICK_ASSIGNED} if context.address.nick_changed else set(),
        )

    def _on_unavailable(self, presence: domish.Element, context: _Context) -> None:
        room_jid = context.address.room
        if room_jid is None:
            return
        user = context.sender
        # Only a join is cancelled: a registration check answers an iq, which must be answered
        # whether or not the user is still around.
        pending = self._pending.get((user, room_jid, "join"))
        if pending is not None:
            self._cancel(pending)
            self.log.info(
                "join cancelled user={user} room={room} nick={nick}",
                user=user.full(),
                room=room_jid.full(),
                nick=pending.request.nick,
            )
        room = self._rooms.get(room_jid)
        if room is None or room.occupant_for(user) is None:
            return
        self._leave(
            room,
            user,
            payload=stanzas.client_children(presence),
            stanza_id=presence.getAttribute("id"),
        )

    def _leave(
        self,
        room: Room,
        user: JID,
        *,
        payload: list[domish.Element] | None = None,
        statuses: Iterable[int] = (),
        tell_leaver: bool = True,
        stanza_id: str | None = None,
    ) -> None:
        result = room.leave(user)
        occupant = result.occupant
        if tell_leaver:
            self.send(
                stanzas.occupant_presence(
                    room,
                    occupant,
                    user,
                    show_jid=True,
                    unavailable=True,
                    statuses={stanzas.SELF_PRESENCE, *statuses},
                    payload=payload,
                    real_jid=user,
                    stanza_id=stanza_id,
                )
            )
        if result.gone:
            for viewer, session in self._sessions(room):
                self.send(
                    stanzas.occupant_presence(
                        room,
                        occupant,
                        session,
                        show_jid=room.sees_real_jids(viewer),
                        unavailable=True,
                        statuses=statuses,
                        payload=payload,
                        real_jid=user,
                    )
                )
        if room.is_empty and not room.config.persistent:
            del self._rooms[room.jid]
            self.log.info("room destroyed room={room}: empty", room=room.jid.full())

    def _on_client_error(self, stanza: domish.Element, context: _Context) -> None:
        """An occupant's session bounced something: remove it if the error says it is gone."""
        room_jid = context.address.room
        room = self._rooms.get(room_jid) if room_jid is not None else None
        if room is None or room.occupant_for(context.sender) is None:
            return
        error = child(stanza, "error")
        condition = error.firstChildElement() if error is not None else None
        if condition is None or condition.name not in _SESSION_GONE:
            return
        self.log.info(
            "removing {user} from {room}: its session bounced {condition}",
            user=context.sender.full(),
            room=room.jid.full(),
            condition=condition.name,
        )
        self._leave(
            room,
            context.sender,
            statuses=(stanzas.KICKED, stanzas.KICKED_ERROR),
            tell_leaver=False,
        )

    # -- the gate

    def _start_check(
        self,
        request: JoinRequest,
        stanza: domish.Element,
        context: _Context,
        on_allow: Callable[[_Pending], None],
    ) -> None:
        pending = _Pending(request, stanza, context, on_allow, self._clock.seconds())
        # Known before the queue may start it: a check can be decided before submit returns.
        self._pending[pending.key] = pending
        try:
            pending.ticket = self._queue.submit(pending, request.user.userhost())
        except QueueFullError as e:
            del self._pending[pending.key]
            self._overloaded(request, e.limit, e.count)
            raise errors.Overloaded() from None

    def _ask(self, ticket: Ticket[_Pending]) -> None:
        """The queue's turn for a check: ask the authorizer (whose timeout starts now)."""
        pending = ticket.item
        pending.ticket = ticket
        pending.checked = self._clock.seconds()
        try:
            d = self._authorizer.authorize(pending.request)
        except Exception:
            d = fail()
        pending.deferred = d
        d.addCallbacks(
            self._decided, self._authorizer_failed, callbackArgs=(pending,), errbackArgs=(pending,)
        )

    def _waited_too_long(self, pending: _Pending, waited: float) -> None:
        """The queue gave up on ``pending`` (queue_timeout): refused, the authorizer unasked."""
        if self._pending.get(pending.key) is pending:
            del self._pending[pending.key]
        request = pending.request
        decision = Decision.error(
            "queue_timeout", f"no free check in {self._queue.timeout:g} s"
        ).with_details(source="service")
        self._log_decision(request, decision, waited, _OVERLOAD_FORMATS["timeout"], queued=waited)
        self._report(request, decision)
        self._refuse(pending.stanza, pending.context, errors.Overloaded())

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
        emit = self.log.warn if decision.is_error else self.log.info
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
            self.log.failure("on_decision hook failed")

    def _forget(self, pending: _Pending) -> bool:
        """Drop ``pending``; False if it was no longer the current check for its key."""
        if self._pending.get(pending.key) is not pending:
            return False
        del self._pending[pending.key]
        if pending.ticket is not None:
            self._queue.release(pending.ticket)
        return True

    def _cancel(self, pending: _Pending) -> None:
        if self._forget(pending) and pending.deferred is not None:
            pending.deferred.cancel()

    def _authorizer_failed(self, failure: Failure, pending: _Pending) -> None:
        if failure.check(CancelledError) and self._pending.get(pending.key) is not pending:
            return None
        self.log.failure("authorizer failed instead of answering", failure)
        failed = Decision.error("internal", "authorizer failed").with_details(source="service")
        self._decided(failed, pending)
        return None

    def _decided(self, decision: Decision, pending: _Pending) -> None:
        if not self._forget(pending):
            return  # the user left, the link dropped, or the service shut down meanwhile
        request = pending.request
        queued = (pending.checked or pending.started) - pending.started
        self._log_decision(
            request, decision, self._clock.seconds() - pending.started, queued=queued
        )
        self._report(request, decision)
        try:
            if decision.is_allowed:
                pending.on_allow(pending)
            elif decision.is_denied:
                text = decision.reason if self.show_reason and decision.reason else DENY_TEXT
                self._send_error(pending.stanza, pending.context, self.deny_condition, text)
            else:
                self._send_error(
                    pending.stanza, pending.context, self.failure_condition, FAILURE_TEXT
                )
        except errors.MUCError as e:
            self.log.info(
                "{action} refused after allow user={user} room={room} nick={nick} error={error}",
                action=request.action,
                user=request.user.full(),
                room=request.room.full(),
                nick=request.nick,
                error=type(e).__name__,
            )
            self._refuse(pending.stanza, pending.context, e)
        except Exception:
            self.log.failure("unexpected error completing a join")
            self._refuse(pending.stanza, pending.context, errors.MUCError("Internal error"))

    # -- messages

    def _on_message(self, message: domish.Element, context: _Context) -> None:
        kind = message.getAttribute("type") or "normal"
        if kind == "error":
            self._on_client_error(message, context)
            return
        address = context.address
        if address.is_service:
            raise errors.UnsupportedNamespace("This service does not accept messages")
        room_jid = address.require_room()
        room = self._rooms.get(room_jid)
        if address.is_room:
            if kind == "groupchat":
                self._groupchat(room, room_jid, message, context)
                return
            raise errors.NotSupported("Invitations and requests are not supported")
        nick = address.require_nick()
        if kind == "groupchat":
            raise errors.BadRequest("Groupchat messages go to the room, not to an occupant")
        self._private(room, nick, message, context)

    def _sender_occupant(self, room: Room | None, room_jid: JID, user: JID) -> Occupant:
        occupant = room.occupant_for(user) if room is not None else None
        if occupant is None:
            if (user, room_jid, "join") in self._pending:
                raise errors.JoinPending()
            raise errors.NotOccupant()
        return occupant

    def _groupchat(
        self, room: Room | None, room_jid: JID, message: domish.Element, context: _Context
    ) -> None:
        occupant = self._sender_occupant(room, room_jid, context.sender)
        assert room is not None
        children = stanzas.client_children(message)
        stanza_id = message.getAttribute("id")
        subject = child(message, "subject")
        body = child(message, "body")
        if subject is not None and body is None:
            room.set_subject(context.sender, str(subject))
        sizes: list[int] = []
        for _viewer, session in self._sessions(room):
            reflected = stanzas.groupchat_message(
                room, occupant.nick, occupant.occupant_id, session, children, stanza_id=stanza_id
            )
            if not sizes:
                sizes.append(len(reflected.toXml()))
            self.send(reflected)
        if body is not None:
            room.add_history(
                HistoryEntry(
                    self._now(),
                    occupant.nick,
                    occupant.occupant_id,
                    _Stored(children, stanza_id),
                    sizes[0] if sizes else 0,
                )
            )

    def _private(
        self, room: Room | None, nick: str, message: domish.Element, context: _Context
    ) -> None:
        assert context.address.room is not None
        sender = self._sender_occupant(room, context.address.room, context.sender)
        assert room is not None
        target = room.occupant(nick)
        if target is None:
            raise errors.NoSuchOccupant("No occupant with that nickname")
        children = stanzas.client_children(message)
        for session in target.sessions:
            self.send(stanzas.private_message(room, sender, session, message, children))

    # -- iq

    def _on_iq(self, iq: domish.Element, context: _Context) -> None:
        kind = iq.getAttribute("type")
        if kind in ("result", "error"):
            return
        if kind not in ("get", "set"):
            raise errors.BadRequest("Unknown iq type")
        payload = iq.firstChildElement()
        if payload is None:
            raise errors.BadRequest("Empty iq")
        address = context.address
        if address.is_service:
            result = self._service_iq(iq, kind, payload, context)
        elif address.is_room:
            result = self._room_iq(iq, kind, payload, context)
        else:
            result = self._occupant_iq(iq, kind, payload, context)
        if result is not False:
            reply = toResponse(iq, "result")
            if result is not None:
                reply.addChild(result)
            self.send(reply)

    def _disco(
        self, kind: str, payload: domish.Element, context: _Context, target: JID
    ) -> domish.Element:
        if kind != "get":
            raise errors.BadRequest("disco is get-only")
        node = payload.getAttribute("node") or ""
        if payload.uri == NS_DISCO_INFO:
            disco_info = DiscoInfo()
            for item in self.getDiscoInfo(context.sender, target, node):
                disco_info.append(item)
            return disco_info.toElement()
        disco_items = DiscoItems()
        for entry in self.getDiscoItems(context.sender, target, node):
            disco_items.append(entry)
        return disco_items.toElement()

    def _service_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: _Context
    ) -> domish.Element | bool | None:
        if payload.uri in (NS_DISCO_INFO, NS_DISCO_ITEMS) and payload.name == "query":
            return self._disco(kind, payload, context, context.address.service)
        if (payload.uri, payload.name, kind) == (NS_PING, "ping", "get"):
            return None
        if payload.uri == NS_REGISTER:
            raise errors.NotSupported("Registration with the service is not supported")
        raise errors.UnsupportedNamespace()

    def _room_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: _Context
    ) -> domish.Element | bool | None:
        room_jid = context.address.require_room()
        room = self._rooms.get(room_jid)
        if payload.uri in (NS_DISCO_INFO, NS_DISCO_ITEMS) and payload.name == "query":
            return self._disco(kind, payload, context, room_jid)
        if payload.uri == NS_REGISTER:
            return self._register(iq, context, room)
        if room is None:
            raise errors.RoomNotFound("No such room")
        if (payload.uri, payload.name, kind) == (NS_PING, "ping", "get"):
            return None
        if payload.uri == NS_MUC_OWNER:
            return self._owner(kind, payload, context, room)
        if payload.uri == NS_MUC_ADMIN:
            raise errors.NotSupported("Room administration is not supported")
        raise errors.UnsupportedNamespace()

    def _owner(
        self, kind: str, payload: domish.Element, context: _Context, room: Room
    ) -> domish.Element | None:
        room.require_owner(context.sender)
        if kind == "get":
            query = domish.Element((NS_MUC_OWNER, "query"))
            query.addChild(info.config_form(room).toElement())
            return query
        if child_ns(payload, NS_MUC_OWNER, "destroy") is not None:
            raise errors.NotSupported("Destroying rooms is not supported")
        form_element = child_ns(payload, data_form.NS_X_DATA, "x")
        if form_element is None:
            raise errors.BadRequest("Expected a data form")
        form = data_form.Form.fromElement(form_element)
        if form.formType == "cancel":
            return None
        if form.formType != "submit":
            raise errors.BadRequest("Expected a submitted form")
        info.apply_config(room, form)
        return None

    def _register(self, iq: domish.Element, context: _Context, room: Room | None) -> bool:
        """Registration is not supported, but with ``authorize_registration`` the gate still
        decides who learns that, so a refused user sees the same refusal as for a join."""
        if not self.authorize_registration:
            raise errors.NotSupported("Registration is not supported")
        if room is None:
            raise errors.RoomNotFound("No such room")
        nick = ""
        payload = iq.firstChildElement()
        form_element = child_ns(payload, data_form.NS_X_DATA, "x")
        if form_element is not None:
            form = data_form.Form.fromElement(form_element)
            field_ = form.fields.get("muc#register_roomnick")
            if field_ is not None and field_.value:
                nick = str(field_.value)[: self.settings.max_nick_length]
        key = (context.sender, room.jid, "register")
        if key in self._pending:
            # The pending check answers its own iq; this one needs an answer of its own.
            raise errors.Overloaded("A registration request for this room is already pending")
        request = JoinRequest(
            context.sender, room.jid, nick, iq.getAttribute("id"), action="register"
        )

        def on_allow(pending: _Pending) -> None:
            raise errors.NotSupported("Registration is not supported")

        self._start_check(request, iq, context, on_allow)
        return False

    def _occupant_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: _Context
    ) -> domish.Element | bool | None:
        room_jid = context.address.require_room()
        nick = context.address.require_nick()
        room = self._rooms.get(room_jid)
        if (payload.uri, payload.name, kind) == (NS_PING, "ping", "get"):
            # XEP-0410: the answer tells the client whether it is still joined.
            sender = room.occupant_for(context.sender) if room is not None else None
            if room is None or sender is None:
                raise errors.NotJoined()
            if sender.nick == nick:
                return None
            if room.occupant(nick) is None:
                raise errors.NoSuchOccupant("No occupant with that nickname")
            raise errors.NotSupported("Pings to other occupants are not relayed")
        raise errors.NotSupported("Queries to occupants are not relayed")
