"""Messages: groupchat reflected to every occupant, the subject, private messages (XEP-0045
§7.4, §7.5, §8.1); invitations and voice requests go to ``requests.py``. Error messages from
occupants are presence business (``presence.py``): the service routes them there.
"""

from __future__ import annotations

import uuid

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc import errors, stanzas
from mucauth.muc.archive.write import Stored, archives
from mucauth.muc.core import Context, Core
from mucauth.muc.incoming import child
from mucauth.muc.join import JoinGate
from mucauth.muc.limits import check_text_length
from mucauth.muc.requests import RoomRequests, is_room_request
from mucauth.muc.room import HistoryEntry, Occupant, Room

__all__ = ["Messages", "Stored"]  # Stored: archive/write.py's, here for older imports


class Messages:
    """Message stanzas to the service, to rooms and to occupants."""

    def __init__(self, core: Core, gate: JoinGate, requests: RoomRequests) -> None:
        self._core = core
        self._gate = gate
        self._requests = requests

    def on_message(self, message: domish.Element, context: Context, kind: str) -> None:
        address = context.address
        if address.is_service:
            raise errors.NotOffered("This service does not accept messages")
        room_jid = address.require_room()
        room = self._core.rooms.get(room_jid)
        if address.is_room:
            if kind == "groupchat":
                self._groupchat(room, room_jid, message, context)
                return
            if is_room_request(message):
                if room is None:  # no invitation could have come from it
                    raise errors.NotOccupant()
                self._requests.on_request(message, context, room)
                return
            raise errors.NotSupported("Only groupchat messages and requests go to the room")
        nick = address.require_nick()
        if kind == "groupchat":
            raise errors.BadRequest("Groupchat messages go to the room, not to an occupant")
        self._private(room, nick, message, context)

    def sender_occupant(self, room: Room | None, room_jid: JID, user: JID) -> Occupant:
        """The sender's occupant, or the error a non-occupant gets (still joining or not)."""
        occupant = room.occupant_for(user) if room is not None else None
        if occupant is None:
            if self._gate.is_joining(user, room_jid):
                raise errors.JoinPending()
            raise errors.NotOccupant()
        return occupant

    def _groupchat(
        self, room: Room | None, room_jid: JID, message: domish.Element, context: Context
    ) -> None:
        occupant = self.sender_occupant(room, room_jid, context.sender)
        assert room is not None
        if occupant.role == "visitor":
            raise errors.Forbidden("Visitors may not speak in this room: ask for voice")
        core = self._core
        children = stanzas.client_children(message)
        stanza_id = message.getAttribute("id")
        subject = child(message, "subject")
        body = child(message, "body")
        archive_id = None
        stored_children = children
        if body is not None and archives(room):
            # XEP-0359: the room's own id for the message, by which the archive pages and
            # moderators retract (client_children dropped any a client forged); written once
            # for every copy, and kept among the children in the history and the archive.
            archive_id = stanzas.StanzaId.of(room.jid.userhost(), uuid.uuid4().hex)
            stored_children = [*children, archive_id.element()]
        if subject is not None and body is None:
            text = str(subject)
            check_text_length("subject", text, core.settings.limits.max_subject_length)
            room.set_subject(context.sender, text, core.now())
            core.rooms.changed(room)
        sizes: list[int] = []
        for _viewer, session in core.sessions(room):
            reflected = stanzas.groupchat_message(
                room,
                occupant.nick,
                occupant.occupant_id,
                session,
                children,
                stanza_id=stanza_id,
                archive_id=archive_id,
            )
            if not sizes:
                sizes.append(len(reflected.toXml()))
            core.send(reflected)
        if body is not None:
            entry = HistoryEntry(
                core.now(),
                occupant.nick,
                occupant.occupant_id,
                Stored(stored_children, stanza_id, archive_id.id if archive_id else None),
                sizes[0] if sizes else 0,
            )
            room.add_history(entry)
            core.rooms.message(room, entry, context.sender)

    def _private(
        self, room: Room | None, nick: str, message: domish.Element, context: Context
    ) -> None:
        assert context.address.room is not None
        sender = self.sender_occupant(room, context.address.room, context.sender)
        assert room is not None
        target = room.occupant(nick)
        if target is None:
            raise errors.NoSuchOccupant("No occupant with that nickname")
        _check_private_allowed(room, sender)
        children = stanzas.client_children(message)
        for session in target.sessions:
            self._core.send(stanzas.private_message(room, sender, session, message, children))


def _check_private_allowed(room: Room, sender: Occupant) -> None:
    """muc#roomconfig_allowpm: who may send private messages in this room."""
    allowed = room.config.allow_pm
    if allowed == "anyone":
        return
    if allowed == "participants" and sender.role in ("participant", "moderator"):
        return
    if allowed == "moderators" and sender.is_moderator:
        return
    raise errors.Forbidden("Private messages are not allowed in this room")
