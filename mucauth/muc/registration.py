"""In-room registration (XEP-0045 §7.10, ``jabber:iq:register``): not supported, but with
``[muc_http_auth] authorize_registration`` the gate still decides who learns that, so a refused
user sees the same refusal as for a join. Registration with the service itself is refused."""

from __future__ import annotations

from collections.abc import Iterable

from wokkel import data_form
from wokkel.muc import NS_REGISTER

from mucauth.authorize.base import JoinRequest
from mucauth.muc import errors
from mucauth.muc.core import Core
from mucauth.muc.feature import ANSWERED, Answer, Feature, IqRequest, Route
from mucauth.muc.incoming import child_ns
from mucauth.muc.join import JoinGate, Pending

__all__ = ["Registration"]


class Registration(Feature):
    def __init__(self, core: Core, gate: JoinGate, *, authorize_registration: bool) -> None:
        self._core = core
        self._gate = gate
        self.authorize_registration = authorize_registration

    def routes(self) -> Iterable[Route]:
        for kind in ("get", "set"):
            yield Route("service", kind, NS_REGISTER, self._on_service, needs_room=False)  # type: ignore[arg-type]
            yield Route("room", kind, NS_REGISTER, self._on_room, needs_room=False)  # type: ignore[arg-type]

    def _on_service(self, request: IqRequest) -> Answer:
        raise errors.NotSupported("Registration with the service is not supported")

    def _on_room(self, request: IqRequest) -> Answer:
        if not self.authorize_registration:
            raise errors.NotSupported("Registration is not supported")
        room = request.room
        if room is None:
            raise errors.RoomNotFound("No such room")
        nick = ""
        form_element = child_ns(request.payload, data_form.NS_X_DATA, "x")
        if form_element is not None:
            form = data_form.Form.fromElement(form_element)
            field_ = form.fields.get("muc#register_roomnick")
            if field_ is not None and field_.value:
                nick = str(field_.value)[: self._core.settings.max_nick_length]
        sender = request.context.sender
        if self._gate.get(sender, room.jid, "register") is not None:
            # The pending check answers its own iq; this one needs an answer of its own.
            raise errors.AlreadyPending("A registration request for this room is already pending")
        iq = request.stanza
        check = JoinRequest(sender, room.jid, nick, action="register")

        def on_allow(pending: Pending) -> None:
            raise errors.NotSupported("Registration is not supported")

        self._gate.start(check, iq, request.context, on_allow)
        return ANSWERED
