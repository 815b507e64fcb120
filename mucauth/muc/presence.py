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
from mucauth.muc.archive.write import Stored
from mucauth.muc.core import Context, Core
from mucauth.muc.incoming import child, history_options
from mucauth.muc.join import JoinGate, Pending
from mucauth.muc.liveness import SESSION_GONE
from mucauth.muc.room import Affiliation, Occupant, Role, Room, RoomConfig

__all__ = ["Presences"]

# Rooms have no roster: subscription requests and probes are dropped without an answer.
_IGNORED_PRESENCE = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"})


class Presences:
    """Presence stanzas to rooms and occupants, and everything they make the room send."""

    def __init__(self, core: Core, gate: JoinGate) -> None:
        self._core = core
        self._gate = gate

    def on_presence(self, presence: domish.Element, context: Context) -> None:
        kind = presence.getAttribute("type")
        if kind == "error":
            self._on_error_presence(presence, context)
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
        else:
            self._check_gone(room_jid)  # a destroyed room's address points elsewhere
            self._check_create(user)  # no point asking the gate for a room it cannot have
        self._gate.start(
            JoinRequest(user, room_jid, nick),
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
            self._check_gone(request.room)  # destroyed while we were asking?
            self._check_create(user)  # again: other rooms may have been made meanwhile
            defaults = settings.rooms
            room = Room(
                request.room,
                creator=user,
                created=core.now(),
                config=RoomConfig(
                    public=defaults.public,
                    non_anonymous=defaults.non_anonymous,
                    max_occupants=defaults.max_users,
                    occupants_may_change_subject=defaults.change_subject,
                    persistent=defaults.persistent,
                    history_length=defaults.history_length,
                    allow_pm=defaults.allow_pm,
                    logging=defaults.logging,
                    members_only=defaults.members_only,
                    moderated=defaults.moderated,
                    allow_invites=defaults.allow_invites,
                ),
            )
        affiliation, role = _standing(pending)
        if affiliation is not None and room.affiliation(user) != affiliation:
            # The HTTP service says who this user is in the room (our extension of the
            # contract): applied before the join, and kept for a persistent room.
            core.rooms.set_affiliation(room, user.userhost(), affiliation)
        if not created:
            room.check_join(user, request.nick)  # taken while we were asking?
        result = room.join(user, request.nick, stanzas.client_children(presence), role=role)
        if created:
            core.rooms.created(room, user)
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
                room,
                occupant,
                user,
                show_jid=True,
                statuses=own_codes,
                stanza_id=presence.getAttribute("id"),
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

    def _check_gone(self, room_jid: JID) -> None:
        """Refuse a join to a destroyed persistent room's address while its tombstone stands
        (``cancel/gone`` with the alternate venue, as Prosody does), so a bookmark moves to
        the new room instead of making an empty one under the old name."""
        tombstone = self._core.rooms.tombstone(room_jid)
        if tombstone is not None:
            raise errors.RoomGone(
                tombstone.reason or None,
                stanzas.join_uri(tombstone.alternate) if tombstone.alternate else None,
            )

    def _check_create(self, user: JID) -> None:
        """Refuse a join that would create a room past ``[limits]`` max_rooms (wait: rooms
        come and go) or max_rooms_per_user (cancel: until the user destroys one). Before the
        room exists, so a refusal leaves nothing behind."""
        limits = self._core.settings.limits
        self._core.index.check_create(user.userhost(), limits.max_rooms_per_user, limits.max_rooms)

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
            JoinRequest(context.sender, room.jid, nick),
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
        self._cancel_join(user, room_jid, "left")
        room = self._core.rooms.get(room_jid)
        if room is None or room.occupant_for(user) is None:
            return
        self.leave(
            room,
            user,
            payload=stanzas.client_children(presence),
            stanza_id=presence.getAttribute("id"),
        )

    def _cancel_join(self, user: JID, room_jid: JID, why: str) -> None:
        """Give up on ``user``'s pending join to the room, if any. Only a join: a registration
        check answers an iq, which must be answered whether or not the user is still around."""
        pending = self._gate.get(user, room_jid)
        if pending is None:
            return
        self._gate.cancel(pending)
        self._core.log.info(
            "join cancelled user={user} room={room} nick={nick}: {why}",
            user=user.full(),
            room=room_jid.full(),
            nick=pending.request.nick,
            why=why,
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
            self._announce_gone(room, occupant, user, statuses, payload=payload)
        if room.is_empty:
            self._core.rooms.emptied(room)

    def _announce_gone(
        self,
        room: Room,
        occupant: Occupant,
        real_jid: JID | None,
        statuses: Iterable[int],
        **presence: Any,
    ) -> None:
        """Every session left in the room hears that ``occupant`` is gone."""
        core = self._core
        for viewer, session in core.sessions(room):
            core.send(
                stanzas.occupant_presence(
                    room,
                    occupant,
                    session,
                    show_jid=room.sees_real_jids(viewer),
                    unavailable=True,
                    statuses=statuses,
                    real_jid=real_jid,
                    **presence,
                )
            )

    def remove_occupant(
        self,
        room: Room,
        occupant: Occupant,
        statuses: Iterable[int],
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Take ``occupant`` out with all its sessions (kicked 307, banned 301, no longer a
        member 321 or 322): they and everyone else hear it, with the reason and the actor."""
        core = self._core
        sessions = room.remove(occupant)
        for session in sessions:
            # A nick change of the removed session still being checked must not bring it back.
            self._cancel_join(session, room.jid, "removed from the room")
            core.send(
                stanzas.occupant_presence(
                    room,
                    occupant,
                    session,
                    show_jid=True,
                    unavailable=True,
                    statuses={stanzas.SELF_PRESENCE, *statuses},
                    real_jid=session,
                    reason=reason,
                    actor=actor,
                )
            )
        real = sessions[-1] if sessions else None
        self._announce_gone(room, occupant, real, statuses, reason=reason, actor=actor)
        if room.is_empty:
            self._core.rooms.emptied(room)

    def destroy(
        self, room: Room, reason: str | None, alternate: JID | None, *, tombstone: bool = True
    ) -> None:
        """The owner destroyed the room (XEP-0045 §10.9): everyone in it is told, with the
        reason and the alternate venue, and the room is gone, from the store too, leaving
        its tombstone when it was persistent (``tombstone=False``: none, the admin API's)."""
        core = self._core
        for occupant in room.clear():
            for session in occupant.sessions:
                core.send(stanzas.destroyed_presence(room, occupant, session, reason, alternate))
        core.rooms.destroyed(room, alternate, reason, tombstone=tombstone)
        core.log.info(
            "room destroyed room={room}: by its owner{why}",
            room=room.jid.full(),
            why=f" ({reason})" if reason else "",
        )

    def _on_error_presence(self, presence: domish.Element, context: Context) -> None:
        """Any error presence from a session ends its part in the room (XEP-0045 §11.1).

        Whatever the error says, the user's server no longer counts the room among the
        session's presence contacts (Prosody drops it), so the room would never hear that the
        session went offline: it leaves now, with 307 and 333, which the others and the session
        itself see. A join still being decided is cancelled for the same reason.
        """
        room_jid = context.address.room
        if room_jid is None:
            return
        user = context.sender
        error = child(presence, "error")
        condition = error.firstChildElement() if error is not None else None
        why = condition.name if condition is not None else "no condition"
        self._cancel_join(user, room_jid, f"error presence ({why})")
        room = self._core.rooms.get(room_jid)
        if room is None or room.occupant_for(user) is None:
            return
        self._core.log.info(
            "removing {user} from {room}: its client sent an error presence ({condition})",
            user=user.full(),
            room=room.jid.full(),
            condition=why,
        )
        self.leave(room, user, statuses=(stanzas.KICKED, stanzas.KICKED_ERROR))

    def remove_session(self, session: JID, why: str) -> None:
        """``session`` is gone (it did not answer the liveness check): out of every room."""
        for room in list(self._core.rooms.values()):
            if room.occupant_for(session) is None:
                continue
            self._core.log.info(
                "removing {user} from {room}: its session is gone ({why})",
                user=session.full(),
                room=room.jid.full(),
                why=why,
            )
            self.leave(
                room, session, statuses=(stanzas.KICKED, stanzas.KICKED_ERROR), tell_leaver=False
            )

    def on_client_error(self, stanza: domish.Element, context: Context) -> None:
        """An occupant's session bounced a message: remove it if the error says the session
        is gone (liveness.SESSION_GONE). Other message errors (a client that did not like one
        message) are ignored rather than kicking someone for a quirk."""
        room_jid = context.address.room
        room = self._core.rooms.get(room_jid) if room_jid is not None else None
        if room is None or room.occupant_for(context.sender) is None:
            return
        error = child(stanza, "error")
        condition = error.firstChildElement() if error is not None else None
        if condition is None or condition.name not in SESSION_GONE:
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

    def shutdown_notices(self) -> int:
        """Every occupant hears it is out of its room (status 332, as at a shutdown); rooms are
        emptied. How many sessions were told."""
        core = self._core
        told = 0
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
                    told += 1
        core.rooms.drop_all()
        return told

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


def _standing(pending: Pending) -> tuple[Affiliation | None, Role | None]:
    """The affiliation and role the gate's answer granted, if it named any."""
    decision = pending.decision
    if decision is None:
        return None, None
    # authorize/http.py admits only the values these names allow.
    return decision.affiliation, decision.role  # type: ignore[return-value]
