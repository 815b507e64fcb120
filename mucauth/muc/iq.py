"""Iqs to the service, to rooms and to occupants: disco, ping (XEP-0199, XEP-0410 self-ping),
the owner's form (``owner.py``), moderation (``admin.py``), the archive (``archive.py``) and
its moderation (``retraction.py``), in-room registration, which the gate may guard, and iqs
between occupants (``relay.py``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_ADMIN, NS_MUC_OWNER, NS_REGISTER
from wokkel.ping import NS_PING

from mucauth.authorize.base import JoinRequest
from mucauth.muc import errors, stanzas
from mucauth.muc.admin import Moderation
from mucauth.muc.archive import NS_MAM, Archive
from mucauth.muc.core import Context, Core
from mucauth.muc.disco import Disco, is_disco
from mucauth.muc.incoming import child_ns
from mucauth.muc.join import JoinGate, Pending
from mucauth.muc.owner import ConfigChange, Destroy, owner_request
from mucauth.muc.presence import Presences
from mucauth.muc.relay import IqRelay
from mucauth.muc.retraction import NS_FASTEN, NS_MODERATE, Retractions
from mucauth.muc.room import Room

__all__ = ["IQs"]

# A handler's answer: a payload for the result, None for an empty result, NO_REPLY when the
# answer comes later (a registration waiting for the gate), or a Deferred of a payload (a
# list read from the store).
Answer = domish.Element | bool | None | Deferred[Any]
NO_REPLY = False


class IQs:
    """Routes an iq by its address and payload, and answers it."""

    def __init__(
        self,
        core: Core,
        gate: JoinGate,
        disco: Disco,
        presences: Presences,
        moderation: Moderation,
        *,
        authorize_registration: bool,
    ) -> None:
        self._core = core
        self._gate = gate
        self._disco = disco
        self._presences = presences
        self._moderation = moderation
        self._relay = IqRelay(core)
        self._archive = Archive(core, gate, self._answer_later)
        self._retractions = Retractions(core)
        self.authorize_registration = authorize_registration

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
        if address.is_service:
            result = self._service_iq(kind, payload, context)
        elif address.is_room:
            result = self._room_iq(iq, kind, payload, context)
        else:
            result = self._occupant_iq(iq, kind, payload, context)
        if isinstance(result, Deferred):
            self._answer_later(result, iq, context)
        elif result is not NO_REPLY:
            self._reply(result, iq)  # type: ignore[arg-type]

    def _answer_later(self, result: Deferred[Any], iq: domish.Element, context: Context) -> None:
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
            return self._owner(kind, payload, context, room)
        if payload.uri == NS_MUC_ADMIN:
            return self._moderation.on_admin(kind, payload, room, context.sender)
        if payload.uri == NS_MAM:
            return self._archive.on_iq(iq, kind, payload, context, room)
        if payload.uri in (NS_MODERATE, NS_FASTEN):
            return self._retractions.on_moderate(kind, payload, context, room)
        raise errors.UnsupportedNamespace()

    def _owner(
        self, kind: str, payload: domish.Element, context: Context, room: Room
    ) -> domish.Element | None:
        """The owner's form and destroy (``owner.py``), and what they mean for the room's
        occupants (their new affiliations) and for the store."""
        core = self._core
        answer = owner_request(
            kind, payload, room, context.sender, core.settings.rooms, core.settings.limits
        )
        if isinstance(answer, Destroy):
            self._presences.destroy(room, answer.reason, answer.alternate)
            return None
        if not isinstance(answer, ConfigChange):
            return answer
        for bare, _affiliation in answer.affiliations:
            for occupant in room:
                if occupant.bare == bare:
                    self._presences.broadcast(room, occupant)
        self._moderation.config_changed(room, answer.was_members_only, answer.was_moderated)
        codes = answer.status_codes(room)
        if codes:
            for _occupant, session in core.sessions(room):
                core.send(stanzas.status_message(room, session, codes))
        persistent = room.config.persistent
        if persistent and not answer.was_persistent:
            core.index.changed(room)  # listed or not, and under which name
            core.rooms.made_persistent(room)
        elif answer.was_persistent and not persistent:
            core.index.changed(room)
            core.rooms.made_temporary(room)
        else:
            core.rooms.changed(room, answer.affiliations)
        return None

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

    def _occupant_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: Context
    ) -> Answer:
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
                return None
            # Relayed, it would come back to the session that sent it.
            raise errors.NotSupported("Queries to your own occupant JID are not relayed")
        target = room.occupant(nick)
        if target is None:
            raise errors.NoSuchOccupant("No occupant with that nickname")
        self._relay.forward(iq, context, room, sender, target)
        return NO_REPLY

    def reset(self) -> None:
        """The stream is gone: relayed iqs wait for nothing any more."""
        self._relay.reset()
