"""Moderation: the ``muc#admin`` iqs (XEP-0045 §8 moderators, §9 admins, §10 owners' lists)
and what each change does to the room.

A request is read whole and every item checked (``privileges.py``) before anything changes, so
an iq with one forbidden item changes nothing. Then each change is made and told: a kick (role
none) removes the occupant with 307, a ban (outcast) with 301, a member removed from a
members-only room with 321; any other change is the occupant's presence with its new item, to
everyone. Reasons and the actor's nick travel in the item, as clients show them. Affiliations of
persistent rooms go to the store.

Wokkel's ``muc`` module is client-side (it builds these requests, it does not answer them), so
the parsing and the lists are written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel.muc import NS_MUC_ADMIN

from mucauth.muc import errors, stanzas
from mucauth.muc.core import Core
from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.jids import parse_jid
from mucauth.muc.presence import Presences
from mucauth.muc.privileges import (
    AFFILIATIONS,
    ROLES,
    check_affiliation_change,
    check_affiliation_list,
    check_role_change,
    check_role_list,
)
from mucauth.muc.room import Affiliation, Occupant, Role, Room

__all__ = ["AffiliationChange", "Moderation", "RoleChange", "read_changes"]


@dataclass(frozen=True)
class RoleChange:
    occupant: Occupant
    role: Role
    reason: str | None


@dataclass(frozen=True)
class AffiliationChange:
    bare: str
    affiliation: Affiliation
    reason: str | None


Change = RoleChange | AffiliationChange


def _reason(item: domish.Element) -> str | None:
    for child in item.elements():
        if child.name == "reason":
            return str(child).strip() or None
    return None


def _items(payload: domish.Element) -> list[domish.Element]:
    items = [c for c in payload.elements() if c.name == "item" and c.uri == NS_MUC_ADMIN]
    if not items:
        raise errors.BadRequest("No item in the request")
    return items


def _bare(text: str) -> str:
    try:
        jid = parse_jid(text)
    except InvalidFormat:
        raise errors.BadRequest(f"Not a JID: {text[:100]}") from None
    if jid.user is None and jid.host is None:
        raise errors.BadRequest(f"Not a JID: {text[:100]}")
    return jid.userhost()


def read_changes(payload: domish.Element, room: Room, sender: JID) -> list[Change]:
    """The changes a ``muc#admin`` set asks for, every one checked; raise if any is refused."""
    actor = room.occupant_for(sender)
    actor_affiliation = room.affiliation(sender)
    actor_role = actor.role if actor is not None else "none"
    affiliations = room.affiliations  # as they will be after the changes so far
    changes: list[Change] = []
    for item in _items(payload):
        role, affiliation = item.getAttribute("role"), item.getAttribute("affiliation")
        if (role is None) == (affiliation is None):
            raise errors.BadRequest("An item changes either a role or an affiliation")
        if role is not None:
            if role not in ROLES:
                raise errors.BadRequest(f"Unknown role: {role[:30]}")
            nick = item.getAttribute("nick")
            if not nick:
                raise errors.BadRequest("A role change names an occupant by nick")
            target = room.occupant(nick)
            if target is None:
                raise errors.NoSuchOccupant("No occupant with that nickname")
            check_role_change(actor_role, actor_affiliation, target.affiliation, target.role, role)
            changes.append(RoleChange(target, role, _reason(item)))  # type: ignore[arg-type]
            continue
        assert affiliation is not None
        if affiliation not in AFFILIATIONS:
            raise errors.BadRequest(f"Unknown affiliation: {affiliation[:30]}")
        jid, nick = item.getAttribute("jid"), item.getAttribute("nick")
        if jid:
            bare = _bare(jid)
        elif nick:
            holder = room.occupant(nick)
            if holder is None:
                raise errors.NoSuchOccupant("No occupant with that nickname")
            bare = holder.bare
        else:
            raise errors.BadRequest("An affiliation change names a JID")
        current = affiliations.get(bare, "none")
        if affiliation == "none":
            affiliations.pop(bare, None)
        else:
            affiliations[bare] = affiliation  # type: ignore[assignment]
        owners_left = sum(1 for a in affiliations.values() if a == "owner")
        check_affiliation_change(actor_affiliation, current, affiliation, owners_left)
        changes.append(AffiliationChange(bare, affiliation, _reason(item)))  # type: ignore[arg-type]
    return changes


def list_items(payload: domish.Element, room: Room, sender: JID) -> domish.Element:
    """A ``muc#admin`` get: the occupants with a role, or the users with an affiliation."""
    [item] = _items(payload)[:1]
    role, affiliation = item.getAttribute("role"), item.getAttribute("affiliation")
    query = domish.Element((NS_MUC_ADMIN, "query"))
    actor = room.occupant_for(sender)
    if role is not None and affiliation is None:
        if role not in ROLES or role == "none":
            raise errors.BadRequest(f"No list of role {role[:30]}")
        check_role_list(actor.role if actor is not None else "none")
        show_jids = actor is not None and room.sees_real_jids(actor)
        for occupant in room:
            if occupant.role == role:
                entry = query.addElement("item")
                entry["role"], entry["nick"] = occupant.role, occupant.nick
                entry["affiliation"] = occupant.affiliation
                if show_jids:
                    entry["jid"] = occupant.bare
        return query
    if affiliation is not None and role is None:
        if affiliation not in AFFILIATIONS or affiliation == "none":
            raise errors.BadRequest(f"No list of affiliation {affiliation[:30]}")
        check_affiliation_list(room.affiliation(sender))
        # Only the JID and the affiliation, even for users in the room: Converse.js 14 reads a
        # ``nick`` and ``role`` here as the user's own standing and loses its moderator tools.
        for bare in room.with_affiliation(affiliation):  # type: ignore[arg-type]
            entry = query.addElement("item")
            entry["affiliation"], entry["jid"] = affiliation, bare
        return query
    raise errors.BadRequest("A list request names a role or an affiliation")


class Moderation(Feature):
    """Makes the changes ``read_changes`` accepted, and those of the owner's form that move
    occupants (members-only, moderated), and tells the room."""

    def __init__(self, core: Core, presences: Presences) -> None:
        self._core = core
        self._presences = presences

    def routes(self) -> Iterable[Route]:
        yield Route("room", "get", NS_MUC_ADMIN, self._on_iq)
        yield Route("room", "set", NS_MUC_ADMIN, self._on_iq)

    def _on_iq(self, request: IqRequest) -> domish.Element | None:
        return self.on_admin(
            request.kind, request.payload, request.existing_room, request.context.sender
        )

    def on_admin(
        self, kind: str, payload: domish.Element, room: Room, sender: JID
    ) -> domish.Element | None:
        if kind == "get":
            return list_items(payload, room, sender)
        changes = read_changes(payload, room, sender)
        actor = room.occupant_for(sender)
        actor_nick = actor.nick if actor is not None else None
        for change in changes:
            self._apply(room, change, sender, actor_nick)
        return None

    def apply_role(self, room: Room, change: RoleChange, moderator: Occupant) -> None:
        """A role change already checked elsewhere (a voice request approved)."""
        self._apply(room, change, moderator.jid, moderator.nick)

    def _apply(self, room: Room, change: Change, sender: JID, actor: str | None) -> None:
        core = self._core
        if isinstance(change, RoleChange):
            occupant = change.occupant
            if room.occupant(occupant.nick) is not occupant:
                return  # removed by an earlier item of the same request
            self._log(room, sender, occupant.bare, f"role {change.role}", change.reason)
            if change.role == "none":
                self._presences.remove_occupant(
                    room, occupant, (stanzas.KICKED,), reason=change.reason, actor=actor
                )
            else:
                room.set_role(occupant, change.role)
                self._presences.broadcast(room, occupant, reason=change.reason, actor=actor)
            return
        bare, affiliation = change.bare, change.affiliation
        self._log(room, sender, bare, f"affiliation {affiliation}", change.reason)
        changed = core.rooms.set_affiliation(room, bare, affiliation)
        if changed is None:
            return
        if affiliation == "outcast":
            codes: tuple[int, ...] = (stanzas.BANNED,)
        elif affiliation == "none" and room.config.members_only:
            codes = (stanzas.REMOVED_AFFILIATION,)
        else:
            self._presences.broadcast(room, changed, reason=change.reason, actor=actor)
            return
        self._presences.remove_occupant(room, changed, codes, reason=change.reason, actor=actor)

    def config_changed(self, room: Room, was_members_only: bool, was_moderated: bool) -> None:
        """The owner's form made the room members-only (non-members leave, 322) or changed
        whether it is moderated (occupants without affiliation lose or get voice)."""
        config = room.config
        if config.members_only and not was_members_only:
            for occupant in room:
                if occupant.affiliation == "none":
                    self._presences.remove_occupant(room, occupant, (stanzas.REMOVED_MEMBERSHIP,))
        if config.moderated != was_moderated:
            old, new = (
                ("participant", "visitor") if config.moderated else ("visitor", "participant")
            )
            for occupant in room:
                if occupant.affiliation == "none" and occupant.role == old:
                    room.set_role(occupant, new)  # type: ignore[arg-type]
                    self._presences.broadcast(room, occupant)

    def _log(self, room: Room, sender: JID, target: str, change: str, reason: str | None) -> None:
        self._core.log.info(
            "moderation room={room} actor={actor} target={target}: {change}{why}",
            room=room.jid.full(),
            actor=sender.userhost(),
            target=target,
            change=change,
            why=f" ({reason})" if reason else "",
        )
