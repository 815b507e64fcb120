"""Iqs to the service, to rooms and to occupants.

An iq get or set to the service or a room is routed by a table: the features the service has
(``feature.py``; disco, ping, the owner's form, moderation, the archive and its moderation,
registration) each register the (address, type, namespace) they answer. One that no feature
registered is refused ``service-unavailable``. Iqs to an occupant are relayed to it
(``relay.py``), but for a self-ping (XEP-0410), answered here from whether the sender is joined.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.ping import NS_PING

from mucauth.muc import errors
from mucauth.muc.core import Context, Core
from mucauth.muc.feature import ANSWERED, Feature, IqRequest, Route
from mucauth.muc.relay import IqRelay

__all__ = ["IQs"]


class IQs:
    """Routes an iq by its address and payload, and answers it."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._relay = IqRelay(core)
        self._routes: dict[tuple[str, str, str], Route] = {}
        # Every feature added, in order: disco and the owner's form ask them what they add.
        self.features: list[Feature] = []

    def add(self, feature: Feature) -> None:
        """Route the iqs ``feature`` answers to it; two features may not share one."""
        for route in feature.routes():
            key = (route.to, route.kind, route.namespace)
            if key in self._routes:
                raise ValueError(f"two features answer {key}")
            self._routes[key] = route
        self.features.append(feature)

    def is_routed(self, iq: domish.Element, context: Context) -> bool:
        """Whether ``iq`` is the service's to handle: every get and set, and a response only
        when it answers an iq relayed to an occupant. Other responses are left to whatever
        else observes the stream (the service's own requests are tracked by Wokkel)."""
        return iq.getAttribute("type") not in ("result", "error") or (
            context.address.nick is not None
        )

    def on_iq(self, iq: domish.Element, context: Context) -> None:
        kind = iq.getAttribute("type")
        if kind in ("result", "error"):
            if context.address.nick is not None:
                self._relay.on_answer(iq, context)
            return
        if kind not in ("get", "set"):
            raise errors.BadRequest("Unknown iq type")
        payload = iq.firstChildElement()
        if payload is None:
            raise errors.BadRequest("Empty iq")
        address = context.address
        room = None
        if address.is_service:
            route = self._routes.get(("service", kind, payload.uri))
        elif not address.is_room:
            self._occupant_iq(iq, kind, payload, context)
            return
        else:
            room = self._core.rooms.get(address.require_room())
            route = self._routes.get(("room", kind, payload.uri))
            if room is None and (route is None or route.needs_room):
                raise errors.RoomNotFound("No such room")
        if route is None:
            raise errors.UnsupportedNamespace()
        result = route.handler(IqRequest(iq, kind, payload, context, room))
        if isinstance(result, Deferred):
            self.answer_later(result, iq, context)
        elif result is not ANSWERED:
            self._reply(result, iq)  # type: ignore[arg-type]

    def answer_later(self, result: Deferred[Any], iq: domish.Element, context: Context) -> None:
        """Answer ``iq`` with what ``result`` fires with: a payload, or an error."""
        result.addCallback(self._reply, iq)
        result.addErrback(self._failed, iq, context)

    def _reply(self, payload: domish.Element | None, iq: domish.Element) -> None:
        reply = toResponse(iq, "result")
        if payload is not None:
            reply.addChild(payload)
        self._core.send(reply)

    def _failed(self, failure: Failure, iq: domish.Element, context: Context) -> None:
        error = failure.value
        if not isinstance(error, errors.MUCError):
            self._core.log.failure("answering an iq failed", failure)
            error = errors.MUCError("Internal error")
        self._core.refuse(iq, context, error)

    def _occupant_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: Context
    ) -> None:
        room_jid = context.address.require_room()
        nick = context.address.require_nick()
        room = self._core.rooms.get(room_jid)
        sender = room.occupant_for(context.sender) if room is not None else None
        is_ping = (payload.uri, payload.name, kind) == (NS_PING, "ping", "get")
        if room is None or sender is None:
            # XEP-0410: a self-ping's answer tells the client whether it is still joined.
            if is_ping:
                raise errors.NotJoined()
            raise errors.NotOccupant()
        if sender.nick == nick:
            if is_ping:
                self._reply(None, iq)
                return
            # Relayed, it would come back to the session that sent it.
            raise errors.NotSupported("Queries to your own occupant JID are not relayed")
        target = room.occupant(nick)
        if target is None:
            raise errors.NoSuchOccupant("No occupant with that nickname")
        self._relay.forward(iq, context, room, sender, target)

    def reset(self) -> None:
        """The stream is gone: relayed iqs wait for nothing any more."""
        self._relay.reset()
