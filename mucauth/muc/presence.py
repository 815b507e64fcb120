"""Occupants' presence: entering a room once the gate said yes, presence updates, nick changes,
leaving, and the broadcasts each of them owes the room (XEP-0045 §7.2, §7.6, §7.7, §7.14).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.authorize.base import JoinRequest
from mucauth.muc import errors, stanzas
from mucauth.muc.core import Context, Core
from mucauth.muc.incoming import child, history_options
from mucauth.muc.join import JoinGate, Pending
from mucauth.muc.messages import Stored
from mucauth.muc.room import Occupant, Room, RoomConfig

__all__ = ["Presences"]

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


class Presences:
    """Presence stanzas to rooms and occupants, and everything they make the room send."""

    def __init__(self, core: Core, gate: JoinGate) -> None:
        self._core = core
        self._gate = gate

    def on_presence(self, presence: domish.Element, context: Context) -> None:
        kind = presence.getAttribute("type")
        if kind == "error":
            self.on_client_error(presence, context)
        elif kind in _IGNORED_PRESENCE:
            return
        elif kind == "unavailable":
            self._on_unavailable(presence, context)
        elif kind is not None:
            raise errors.BadRequest("Unknown presence type")
        else:
            self._on_available(presence, context)

    # -- entering

    def _on_available(self, presence: domish.Element, context: Context) -> None:
        address, user = context.address, context.sender
        room_jid = address.require_room()
        nick = address.require_nick()
        room = self._core.rooms.get(room_jid)
        occupant = room.occupant_for(user) if room is not None else None
        if room is not None and occupant is not None:
            if nick == occupant.nick:
                self._update_presence(room, occupant, presence, user)
            else:
                self._start_nick_change(room, presence, context, nick)
            return
        pending = self._gate.get(user, room_jid)
        if pending is not None:
            if pending.request.nick == nick:
                return  # the same join again: the pending answer serves both
            raise errors.JoinPending()
        if room is not None:
            room.check_join(user, nick)  # no point asking the gate for a taken nick
        self._gate.start(
            JoinRequest(user, room_jid, nick, presence.getAttribute("id")),
            presence,
            context,
            self._admit,
        )

    def _admit(self, pending: Pending) -> None:
        """The gate said yes: re-check, enter, and send the join sequence in XEP-0045 order."""
        core = self._core
        settings = core.settings
        request, presence = pending.request, pending.stanza
        user = request.user
        room = core.rooms.get(request.room)
        created = room is None
        if room is None:
            room = Room(
                request.room,
                creator=user,
                created=core.now(),
                config=RoomConfig(
                    public=settings.public_rooms,
                    non_anonymous=settings.non_anonymous,
                    max_occupants=settings.max_occupants,
                ),
                history_size=settings.history_size,
            )
            self._core.log.info(
                "room created room={room} owner={user}", room=room.jid.full(), user=user.full()
            )
        else:
            room.check_join(user, request.nick)  # taken while we were asking?
        result = room.join(user, request.nick, stanzas.client_children(presence))
        core.rooms[room.jid] = room
        occupant = result.occupant

        send = core.send
        for other in room:
            if other is not occupant:
                send(
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
        self.broadcast(room, occupant, skip=user)
        send(
            stanzas.occupant_presence(
                room, occupant, user, show_jid=True, statuses=own_codes, stanza_id=request.stanza_id
            )
        )
        # Most joins create a room or enter a quiet one: no history to pick, so the join's
        # <history/> wish is not even read.
        history = room.history(history_options(presence), core.now()) if room.has_history else []
        for entry in history:
            stored: Stored = entry.payload  # type: ignore[assignment]
            send(
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
        send(stanzas.subject_message(room, user))

    # -- changing

    def _update_presence(
        self, room: Room, occupant: Occupant, presence: domish.Element, user: JID
    ) -> None:
        room.update_presence(user, stanzas.client_children(presence))
        self.broadcast(room, occupant)

    def _start_nick_change(
        self, room: Room, presence: domish.Element, context: Context, nick: str
    ) -> None:
        holder = room.occupant(nick)
        if holder is not None:
            raise errors.NickInUse()
        if not self._core.settings.gate_nick_change:
            self._change_nick(room, presence, context, nick)
            return
        if self._gate.is_joining(context.sender, room.jid):
            raise errors.JoinPending()

        def on_allow(pending: Pending) -> None:
            current = self._core.rooms.get(room.jid)
            if current is None or current.occupant_for(context.sender) is None:
                return  # left while we were asking
            self._change_nick(current, presence, context, nick)

        self._gate.start(
            JoinRequest(context.sender, room.jid, nick, presence.getAttribute("id")),
            presence,
            context,
            on_allow,
        )

    def _change_nick(
        self, room: Room, presence: domish.Element, context: Context, nick: str
    ) -> None:
        old_nick, occupant = room.change_nick(context.sender, nick)
        room.update_presence(context.sender, stanzas.client_children(presence))
        self.broadcast(
            room,
            occupant,
            statuses={stanzas.NEW_NICK},
            unavailable=True,
            nick=old_nick,
            new_nick=nick,
        )
        self.broadcast(
            room,
            occupant,
            self_statuses={stanzas.NICK_ASSIGNED} if context.address.nick_changed else set(),
        )

    # -- leaving

    def _on_unavailable(self, presence: domish.Element, context: Context) -> None:
        room_jid = context.address.room
        if room_jid is None:
            return
        user = context.sender
        # Only a join is cancelled: a registration check answers an iq, which must be answered
        # whether or not the user is still around.
        pending = self._gate.get(user, room_jid)
        if pending is not None:
            self._gate.cancel(pending)
            self._core.log.info(
                "join cancelled user={user} room={room} nick={nick}",
                user=user.full(),
                room=room_jid.full(),
                nick=pending.request.nick,
            )
        room = self._core.rooms.get(room_jid)
        if room is None or room.occupant_for(user) is None:
            return
        self.leave(
            room,
            user,
            payload=stanzas.client_children(presence),
            stanza_id=presence.getAttribute("id"),
        )

    def leave(
        self,
        room: Room,
        user: JID,
        *,
        payload: list[domish.Element] | None = None,
        statuses: Iterable[int] = (),
        tell_leaver: bool = True,
        stanza_id: str | None = None,
    ) -> None:
        core = self._core
        result = room.leave(user)
        occupant = result.occupant
        if tell_leaver:
            core.send(
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
            for viewer, session in core.sessions(room):
                core.send(
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
            del core.rooms[room.jid]
            self._core.log.info("room destroyed room={room}: empty", room=room.jid.full())

    def on_client_error(self, stanza: domish.Element, context: Context) -> None:
        """An occupant's session bounced something: remove it if the error says it is gone."""
        room_jid = context.address.room
        room = self._core.rooms.get(room_jid) if room_jid is not None else None
        if room is None or room.occupant_for(context.sender) is None:
            return
        error = child(stanza, "error")
        condition = error.firstChildElement() if error is not None else None
        if condition is None or condition.name not in _SESSION_GONE:
            return
        self._core.log.info(
            "removing {user} from {room}: its session bounced {condition}",
            user=context.sender.full(),
            room=room.jid.full(),
            condition=condition.name,
        )
        self.leave(
            room,
            context.sender,
            statuses=(stanzas.KICKED, stanzas.KICKED_ERROR),
            tell_leaver=False,
        )

    def shutdown_notices(self) -> None:
        """Every occupant hears the service is going away (status 332); rooms are emptied."""
        core = self._core
        for room in list(core.rooms.values()):
            for occupant in room.clear():
                for session in occupant.sessions:
                    core.send(
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
        core.rooms.clear()

    # -- broadcast

    def broadcast(
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
        send = self._core.send
        own = [s for s in subject.sessions if s != skip]
        for viewer, session in self._core.sessions(room):
            if viewer is subject or session == skip:
                continue
            send(
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
            send(
                stanzas.occupant_presence(
                    room,
                    subject,
                    session,
                    show_jid=True,
                    statuses={stanzas.SELF_PRESENCE, *statuses, *self_statuses},
                    **presence,
                )
            )
