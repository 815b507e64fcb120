"""The XEP-0045 service as a Wokkel handler: takes stanzas off the stream and routes them.

A component serves one domain, so every stanza that reaches us is for the service (no node), a
room (node) or an occupant (node and resource). This module parses who sent what where, keeps
exceptions out of the stream, and hands each stanza to the part that owns it:

    presence  -> presence.py   (enter, update, nick change, leave, broadcast)
    message   -> messages.py   (groupchat, subject, private messages)
    iq        -> iq.py         (a table of the features' routes: disco.py, ping.py,
                                owner_iq.py, admin.py, archive/, retraction.py, registration.py)

Every join, gated nick change and registration is decided in ``join.py`` (pending checks, the
queue of ``queue.py``, the authorizer). Room rules are ``room.py``'s, stanza shapes
``stanzas.py``'s; the parts share the rooms through ``core.py`` (the registry,
``registry.py``, alone changes them). The parts are built, and the features listed, by
``parts.py``.

This handler answers disco and ping for its domain itself: do not add Wokkel's ``DiscoHandler``
or ``PingHandler`` to the same stream, they would answer a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import XmlStream
from twisted.words.xish import domish
from wokkel.iwokkel import IDisco
from wokkel.subprotocols import XMPPHandler
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.muc import errors
from mucauth.muc.core import Context
from mucauth.muc.inbound import read_with_our_parser
from mucauth.muc.incoming import oversized_domain, oversized_part, parse_address, parse_sender
from mucauth.muc.join import DENY_TEXT, FAILURE_TEXT, Held, Pending, Slot
from mucauth.muc.limits import check_payload, strip_payload
from mucauth.muc.outbound import guard
from mucauth.muc.parts import HandlerHooks, assemble
from mucauth.muc.revocation import Forget, RecheckResult
from mucauth.muc.room import Room
from mucauth.settings import ErrorCondition, MUCSettings
from mucauth.store.base import IRoomStore

__all__ = ["DENY_TEXT", "FAILURE_TEXT", "LINK_LOST_TEXT", "MUCService"]

LINK_LOST_TEXT = "The service lost its connection to the server, try again"


@implementer(IDisco)
class MUCService(XMPPHandler):
    """Multi-User Chat for the component's domain; every join passes ``authorizer`` first."""

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
        log_level: LogLevel = LogLevel.debug,
        store: IRoomStore | None = None,
        recheck_interval: float = 0.0,
        forget_answers: Forget | None = None,
        on_removed: Callable[[str, int], None] | None = None,
    ) -> None:
        """``store`` keeps persistent rooms (``persist.py``); open it before the stream comes
        up, close it after. Without one an in-memory store stands in: a persistent room, and
        its archive, last until the process stops.

        ``max_in_flight`` checks are asked at once; more wait in the join queue (see
        ``queue.py``); tap.py sets it to the HTTP pool's size, which bounds the service's
        concurrency anyway.

        ``on_decision`` hears every decision the service acted on, the queue's refusals
        included (as ``Decision.error("overload" or "queue_timeout", ...)``), and
        ``on_queue_wait`` how long each check waited for its turn: the metrics hooks, kept
        plain callables so this package never imports a metrics library.

        ``log_level``: events below it are not even built (tap.py passes ``[log] level``).

        ``recheck_interval`` (seconds, 0 = off) re-checks every occupant in the background
        (``revocation.py``); ``forget_answers(user, room)`` drops the authorizer's remembered
        answers for a user removed by a revocation or a re-check (tap.py: the decision
        cache's), and ``on_removed(cause, count)`` hears those removals (metrics)."""
        super().__init__()
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        assert clock is not None
        parts = assemble(
            authorizer,
            settings,
            clock,
            HandlerHooks(self.send, self.request, self._replay, self._replay_loaded),
            deny_condition=deny_condition,
            failure_condition=failure_condition,
            show_reason=show_reason,
            authorize_registration=authorize_registration,
            max_in_flight=max_in_flight,
            on_decision=on_decision,
            on_queue_wait=on_queue_wait,
            log_level=log_level,
            store=store,
            recheck_interval=recheck_interval,
            forget_answers=forget_answers,
            on_removed=on_removed,
        )
        self._core = parts.core
        self._gate = parts.gate
        self._presences = parts.presences
        self._liveness = parts.liveness
        self._messages = parts.messages
        self._iqs = parts.iqs
        self._disco = parts.disco
        self._registration = parts.registration
        self._retention = parts.retention
        self._revocations = parts.revocations
        self._rechecker = parts.rechecker
        self._repairs = parts.repairs

    # -- public API

    @property
    def settings(self) -> MUCSettings:
        return self._core.settings

    @settings.setter
    def settings(self, settings: MUCSettings) -> None:
        """Room policy for what comes next (the queue's bounds stay those it was built with)."""
        self._core.settings = settings

    @property
    def log(self) -> Logger:
        """The service's logger, every part's: an embedder or a test may replace it."""
        return self._core.log

    @log.setter
    def log(self, logger: Logger) -> None:
        self._core.log = logger

    @property
    def authorizer(self) -> IJoinAuthorizer:
        return self._gate.authorizer

    @property
    def deny_condition(self) -> ErrorCondition:
        return self._gate.deny_condition

    @property
    def failure_condition(self) -> ErrorCondition:
        return self._gate.failure_condition

    @property
    def show_reason(self) -> bool:
        return self._gate.show_reason

    @property
    def authorize_registration(self) -> bool:
        return self._registration.authorize_registration

    @authorize_registration.setter
    def authorize_registration(self, value: bool) -> None:
        self._registration.authorize_registration = value

    @property
    def rooms(self) -> Mapping[JID, Room]:
        return MappingProxyType(self._core.rooms)

    @property
    def pending(self) -> Mapping[Slot, Pending]:
        """Checks waiting for a decision, by (user, room, action)."""
        return self._gate.pending

    @property
    def pending_checks(self) -> int:
        """Joins (and gated registrations, nick changes) waiting for a decision: queued or
        being checked."""
        return len(self._gate.pending)

    @property
    def rooms_loading(self) -> int:
        """Rooms being read back from the store, with stanzas waiting for them."""
        return self._core.rooms.keeper.loading

    @property
    def unreadable_rows(self) -> int:
        """Stored rows left out since start because they could not be read back (``persist.py``)."""
        return self._core.rooms.keeper.unreadable_rows

    @property
    def unwritable_messages(self) -> int:
        """Messages not stored since start because the serializer refused them."""
        return self._core.rooms.keeper.archive.unwritable_messages

    @property
    def queued_checks(self) -> int:
        """The part of :attr:`pending_checks` still waiting for its turn in the queue."""
        return self._gate.queued

    @property
    def pending_per_user(self) -> dict[str, int]:
        """Pending checks by bare JID (a copy): every check ending must give its count back."""
        return self._gate.pending_per_user

    def revoke(self, user: str, room: str | None = None, reason: str | None = None) -> int:
        """Take bare JID ``user`` out of ``room`` (a bare room JID) or every room now, status
        307 with ``reason``; how many occupants were removed. Its next join asks again."""
        return self._revocations.revoke(user, room, reason)

    def recheck(self, room: str | None = None, user: str | None = None) -> Deferred[RecheckResult]:
        """Ask the authorizer about the matching occupants again; those it now refuses (a
        clear no, never an error) leave with status 307."""
        return self._revocations.recheck(room, user)

    # -- repairs (the admin API, ``repair.py``)

    def list_rooms(self, after: str | None = None, limit: int = 100) -> Deferred[Any]:
        """A page of rooms, live and stored, in JID order after ``after``: ``(listings, more)``."""
        return self._repairs.rooms(after, limit)  # type: ignore[no-any-return]

    def destroy_room(self, room: str, reason: str | None = None) -> Deferred[tuple[bool, bool]]:
        """Destroy ``room`` (a bare JID) as its owner would, live or stored, loadable or not:
        ``(was live, was stored)``."""
        return self._repairs.destroy(room, reason)  # type: ignore[no-any-return]

    def archived_messages(self, room: str, after: str | None, limit: int) -> Deferred[Any]:
        """A page of ``room``'s stored messages (``repair.ArchivedMessage``) and whether more
        follow."""
        return self._repairs.messages(room, after, limit)

    def delete_archived(self, room: str, stanza_ids: Sequence[str] | None) -> Deferred[int]:
        """Delete those stored messages of ``room`` (all for None); how many."""
        return self._repairs.delete_messages(room, stanza_ids)

    def shutdown(self) -> None:
        """Tell every occupant the service is going away (status 332), then forget everything.

        Pending joins are answered too, so no client waits for a room that will not come.
        """
        self._liveness.stop()
        self._retention.stop()
        self._rechecker.stop()
        self._core.rooms.reset()
        self._presences.shutdown_notices()
        for pending in self._gate.cancel_all():
            self._gate.refuse_all(pending, errors.ShuttingDown())

    # -- Wokkel hooks

    def connectionMade(self) -> None:
        """Every element written to the stream passes the way out (``outbound.py``), and what
        arrives is read by a parser no namespace name can fail (``inbound.py``). Installed here
        because the stream manager writes what waited for the link before it calls
        ``connectionInitialized``. A test's stub stream, which only collects elements, is left
        alone."""
        if isinstance(self.xmlstream, XmlStream):
            read_with_our_parser(self.xmlstream)
            guard(
                self.xmlstream,
                lambda: self._core.settings.limits.max_stanza_size,
                clock=self._core.clock,
            )

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self._observe(self._on_presence))
        self.xmlstream.addObserver("/message", self._observe(self._on_message))
        self.xmlstream.addObserver("/iq", self._observe(self._iqs.on_iq, self._iqs.is_routed))
        self._liveness.start()
        self._core.rooms.start()
        self._retention.start()
        self._rechecker.start()

    def connectionLost(self, reason: Failure) -> None:
        """Rooms do not survive the link, and nobody is left out silently: every occupant gets
        status 332 and every pending join an error, sent once the link is back (Wokkel's stream
        manager queues what is sent while it is down and writes it first on the next stream).
        Clients then rejoin, through the gate again. Keeping the rooms instead would leave a
        stale copy behind ejabberd's balancing, where a room may be another process's after a
        reconnect."""
        pending = self._gate.cancel_all()
        self._liveness.stop()
        self._retention.stop()
        self._rechecker.stop()
        self._core.rooms.reset()
        self._iqs.reset()
        rooms = len(self._core.rooms)
        if self.parent is None:  # taken off its stream manager: nowhere to tell anyone
            self._core.rooms.drop_all()
        else:
            told = self._presences.shutdown_notices()
            for each in pending:
                self._gate.refuse_all(each, errors.ShuttingDown(LINK_LOST_TEXT))
            if told or pending:
                self.log.warn(
                    "component link lost: {sessions} sessions in {rooms} rooms and {pending}"
                    " pending joins will hear it when the link is back (status 332: rejoin)",
                    sessions=told,
                    rooms=rooms,
                    pending=len(pending),
                )
        super().connectionLost(reason)

    def getDiscoInfo(
        self,
        requestor: JID,
        target: JID,
        nodeIdentifier: str = "",  # noqa: N803  (IDisco signature)
    ) -> list[Any]:
        return self._disco.info(target, nodeIdentifier)

    def getDiscoItems(
        self,
        requestor: JID,
        target: JID,
        nodeIdentifier: str = "",  # noqa: N803  (IDisco signature)
    ) -> Any:
        return self._disco.items(target, nodeIdentifier)

    # -- routing

    def _on_presence(self, presence: domish.Element, context: Context) -> None:
        self._presences.on_presence(presence, context)

    def _on_message(self, message: domish.Element, context: Context) -> None:
        kind = message.getAttribute("type") or "normal"
        if kind == "error":
            self._presences.on_client_error(message, context)
        else:
            self._messages.on_message(message, context, kind)

    def _observe(
        self,
        handler: Callable[[domish.Element, Context], None],
        routed: Callable[[domish.Element, Context], bool] | None = None,
    ) -> Callable[[domish.Element], None]:
        """Wrap a handler so no exception escapes into the stream: domain errors become the
        matching XMPP error, anything else is logged and answered internal-server-error.

        Only what the service routes is marked handled: a stanza it cannot read the addresses
        of, or one ``routed`` says is not its own (an iq response to the service or a room),
        stays visible to whatever else observes the stream.

        Messages and iqs from a session whose join to the room is still being decided wait
        behind it (``JoinGate.hold``); presences do not: they are what changes the join."""
        holds = handler != self._on_presence
        pending = self._gate.pending
        seen = self._liveness.seen
        keeper = self._core.rooms.keeper
        rooms = self._core.rooms

        def observer(stanza: domish.Element) -> None:
            if getattr(stanza, "handled", False):
                return
            context = None
            try:
                context = self._context(stanza)
                if context is None:
                    return
                seen(context.sender)  # whatever it is, its sender is there
                if routed is not None and not routed(stanza, context):
                    return
                stanza.handled = True  # type: ignore[attr-defined]
                self._bound(stanza)
                room_jid = context.address.room
                if (
                    room_jid is not None
                    and room_jid not in rooms
                    and keeper.holds(stanza, context, room_jid, handler)
                ):
                    return
                if holds and pending and self._hold(stanza, context, handler):
                    return
                handler(stanza, context)
            except Exception as e:
                self._failed(stanza, context, e)

        return observer

    def _bound(self, stanza: domish.Element) -> None:
        """Refuse a stanza over [limits] before any part builds on it; a leave or an error
        still counts, without what it carried (the occupant must be able to go)."""
        try:
            check_payload(stanza, self._core.settings.limits)
        except errors.TooLarge:
            kind = stanza.getAttribute("type")
            if kind == "error" or (kind == "unavailable" and stanza.name == "presence"):
                strip_payload(stanza)
                return
            raise

    def _hold(
        self,
        stanza: domish.Element,
        context: Context,
        handler: Callable[[domish.Element, Context], None],
    ) -> bool:
        """Hold ``stanza`` behind its sender's pending join to the room it is for, if any."""
        room_jid = context.address.room
        if room_jid is None or stanza.getAttribute("type") in ("error", "result"):
            return False
        pending = self._gate.get(context.sender, room_jid)
        if pending is None:
            return False
        room = self._core.rooms.get(room_jid)
        if room is not None and room.occupant_for(context.sender) is not None:
            return False  # an occupant's nick change is being checked: it is in already
        self._gate.hold(pending, Held(stanza, context, handler))
        return True

    def _replay_loaded(self, held: Held) -> None:
        """A stanza that waited for its room to be read from the store: it may now wait
        behind its sender's join, as it would have on arrival."""
        try:
            if (
                held.handler != self._on_presence
                and self._gate.pending
                and self._hold(held.stanza, held.context, held.handler)
            ):
                return
            held.handler(held.stanza, held.context)
        except Exception as e:
            self._failed(held.stanza, held.context, e)

    def _replay(self, held: Held) -> None:
        """A held stanza's turn, once its sender's join was decided."""
        try:
            held.handler(held.stanza, held.context)
        except Exception as e:
            self._failed(held.stanza, held.context, e)

    def _failed(self, stanza: domish.Element, context: Context | None, e: Exception) -> None:
        """Answer a handler's exception (called from its ``except`` block)."""
        if isinstance(e, errors.MUCError):
            if context is not None:
                self._core.refuse(stanza, context, e)
            return
        self.log.failure(
            "unexpected error handling {stanza_kind} from {sender}",
            stanza_kind=stanza.name,
            sender=stanza.getAttribute("from"),
        )
        if context is not None:
            self._core.refuse(stanza, context, errors.MUCError("Internal error"))

    def _context(self, stanza: domish.Element) -> Context | None:
        """Who sent ``stanza`` and to which address; None (logged, unanswered) when either
        cannot be trusted enough to answer."""
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
        return Context(sender, address)
