"""Iqs from one occupant to another (a vCard, a software version, a ping), relayed through the
room so that neither learns the other's real JID (XEP-0045 §7.5, §17.4 of its security notes).

The request goes out from the asker's occupant JID under an id of the room's own, to the
target: its bare JID for a vCard (the user's server answers those for its users), else its
latest session. The answer comes back to the asker's occupant JID; it is recognised by that id
and by its sender, and goes to the asker from the target's occupant JID with the asker's id. A
request nobody answers within ``TIMEOUT`` seconds gets ``remote-server-timeout``, so the
room keeps no entry forever; at most ``MAX_PENDING`` are outstanding at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc import errors
from mucauth.muc.core import Context, Core
from mucauth.muc.jids import occupant_address
from mucauth.muc.room import Occupant, Room
from mucauth.muc.xml import Stanza

__all__ = ["MAX_PENDING", "TIMEOUT", "IqRelay"]

TIMEOUT = 60.0
MAX_PENDING = 10_000
NS_VCARD = "vcard-temp"


@dataclass
class _Relayed:
    asker: JID  # the session that asked
    asker_id: str | None
    asker_context: Context
    answerer: str  # bare JID the answer must come from
    room: JID
    target_nick: str
    request: domish.Element
    timer: Any


class IqRelay:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._pending: dict[str, _Relayed] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def forward(
        self,
        iq: domish.Element,
        context: Context,
        room: Room,
        sender: Occupant,
        target: Occupant,
    ) -> None:
        if len(self._pending) >= MAX_PENDING:
            raise errors.Overloaded("Too many queries to occupants are waiting for an answer")
        payload = iq.firstChildElement()
        to = JID(target.bare) if payload is not None and payload.uri == NS_VCARD else target.jid
        our_id = uuid.uuid4().hex
        out = Stanza(
            (None, "iq"),
            attribs={
                "from": occupant_address(room.jid, sender.nick),
                "to": to.full(),
                "type": iq.getAttribute("type") or "get",
                "id": our_id,
            },
        )
        for element in iq.elements():
            out.children.append(element)
        timer = self._core.clock.callLater(TIMEOUT, self._expired, our_id)
        self._pending[our_id] = _Relayed(
            context.sender,
            iq.getAttribute("id"),
            context,
            to.userhost(),
            room.jid,
            target.nick,
            iq,
            timer,
        )
        self._core.send(out)

    def on_answer(self, iq: domish.Element, context: Context) -> bool:
        """A result or error to an occupant JID: ours to pass back, if it answers a relay."""
        relayed = self._pending.get(iq.getAttribute("id") or "")
        if relayed is None or context.sender.userhost() != relayed.answerer:
            return False
        del self._pending[iq["id"]]
        if relayed.timer.active():
            relayed.timer.cancel()
        attributes = {
            "from": occupant_address(relayed.room, relayed.target_nick),
            "to": relayed.asker.full(),
            "type": iq.getAttribute("type") or "result",
        }
        if relayed.asker_id is not None:
            attributes["id"] = relayed.asker_id
        back = Stanza((None, "iq"), attribs=attributes)
        for element in iq.elements():
            back.children.append(element)
        self._core.send(back)
        return True

    def _expired(self, our_id: str) -> None:
        relayed = self._pending.pop(our_id, None)
        if relayed is not None:
            self._core.refuse(relayed.request, relayed.asker_context, errors.RelayTimeout())

    def reset(self) -> None:
        """The stream is gone: answers could not be delivered."""
        for relayed in self._pending.values():
            if relayed.timer.active():
                relayed.timer.cancel()
        self._pending.clear()
