"""Iqs to the service, to rooms and to occupants: disco, ping (XEP-0199, XEP-0410 self-ping),
the owner's form (``owner.py``) and in-room registration, which the gate may guard.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_ADMIN, NS_MUC_OWNER, NS_REGISTER
from wokkel.ping import NS_PING

from mucauth.authorize.base import JoinRequest
from mucauth.muc import errors
from mucauth.muc.core import Context, Core
from mucauth.muc.disco import Disco, is_disco
from mucauth.muc.incoming import child_ns
from mucauth.muc.join import JoinGate, Pending
from mucauth.muc.owner import owner_query
from mucauth.muc.room import Room

__all__ = ["IQs"]

# A handler's answer: a payload for the result, None for an empty result, or NO_REPLY when the
# answer comes later (a registration waiting for the gate).
Answer = domish.Element | bool | None
NO_REPLY = False


class IQs:
    """Routes an iq by its address and payload, and answers it."""

    def __init__(
        self, core: Core, gate: JoinGate, disco: Disco, *, authorize_registration: bool
    ) -> None:
        self._core = core
        self._gate = gate
        self._disco = disco
        self.authorize_registration = authorize_registration

    def on_iq(self, iq: domish.Element, context: Context) -> None:
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
            result = self._service_iq(kind, payload, context)
        elif address.is_room:
            result = self._room_iq(iq, kind, payload, context)
        else:
            result = self._occupant_iq(kind, payload, context)
        if result is not NO_REPLY:
            reply = toResponse(iq, "result")
            if result is not None:
                reply.addChild(result)
            self._core.send(reply)

    def _service_iq(self, kind: str, payload: domish.Element, context: Context) -> Answer:
        if is_disco(payload):
            return self._disco.answer(kind, payload, context.address.service)
        if (payload.uri, payload.name, kind) == (NS_PING, "ping", "get"):
            return None
        if payload.uri == NS_REGISTER:
            raise errors.NotSupported("Registration with the service is not supported")
        raise errors.UnsupportedNamespace()

    def _room_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: Context
    ) -> Answer:
        room_jid = context.address.require_room()
        room = self._core.rooms.get(room_jid)
        if is_disco(payload):
            return self._disco.answer(kind, payload, room_jid)
        if payload.uri == NS_REGISTER:
            return self._register(iq, context, room)
        if room is None:
            raise errors.RoomNotFound("No such room")
        if (payload.uri, payload.name, kind) == (NS_PING, "ping", "get"):
            return None
        if payload.uri == NS_MUC_OWNER:
            return owner_query(kind, payload, context, room)
        if payload.uri == NS_MUC_ADMIN:
            raise errors.NotSupported("Room administration is not supported")
        raise errors.UnsupportedNamespace()

    def _register(self, iq: domish.Element, context: Context, room: Room | None) -> Answer:
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
                nick = str(field_.value)[: self._core.settings.max_nick_length]
        if self._gate.get(context.sender, room.jid, "register") is not None:
            # The pending check answers its own iq; this one needs an answer of its own.
            raise errors.Overloaded("A registration request for this room is already pending")
        request = JoinRequest(
            context.sender, room.jid, nick, iq.getAttribute("id"), action="register"
        )

        def on_allow(pending: Pending) -> None:
            raise errors.NotSupported("Registration is not supported")

        self._gate.start(request, iq, context, on_allow)
        return NO_REPLY

    def _occupant_iq(self, kind: str, payload: domish.Element, context: Context) -> Answer:
        room_jid = context.address.require_room()
        nick = context.address.require_nick()
        room = self._core.rooms.get(room_jid)
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
