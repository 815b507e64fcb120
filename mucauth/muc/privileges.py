"""Who may change whose role or affiliation: XEP-0045's tables of privileges (§5.1.2, §5.2.2)
and the moderation use cases (§8 moderators, §9 admins, §10 owners), as pure functions.

Two kinds of refusal, as the XEP words them: an actor without the privilege at all gets
``forbidden`` (a participant trying to kick, an admin trying to appoint an owner); an actor who
has the privilege but not over this target gets ``not-allowed`` (a moderator kicking an admin,
an admin banning an owner). Nothing here knows a room's stanzas; ``admin.py`` asks these before
changing anything, for every item of a request, so a request is applied whole or not at all.
"""

from __future__ import annotations

from mucauth.muc.errors import Forbidden, NoOwnerLeft, NotAllowed
from mucauth.muc.room import Affiliation, Role

__all__ = [
    "AFFILIATIONS",
    "AFFILIATION_RANK",
    "ROLES",
    "check_affiliation_change",
    "check_affiliation_list",
    "check_role_change",
    "check_role_list",
]

ROLES: tuple[Role, ...] = ("moderator", "participant", "visitor", "none")
AFFILIATIONS: tuple[Affiliation, ...] = ("owner", "admin", "member", "none", "outcast")
AFFILIATION_RANK: dict[str, int] = {"outcast": 0, "none": 1, "member": 2, "admin": 3, "owner": 4}

_ABOVE_MEMBER = ("admin", "owner")


def check_role_change(
    actor_role: str, actor_affiliation: str, target_affiliation: str, target_role: str, role: str
) -> None:
    """May an occupant (``actor_*``) give another (``target_*``) ``role``? Raise if not.

    - Only moderators change roles (§8); granting or revoking moderator is an admin's or
      owner's (§9.6, §9.7).
    - Admins and owners are moderators by affiliation: their role is not changed, and they are
      never kicked or silenced (§8.2, §8.4: not-allowed).
    - Nobody acts on an occupant of a higher affiliation (a member moderator cannot kick an
      admin, nor an admin an owner).
    """
    if actor_role != "moderator":
        raise Forbidden("Only moderators may change roles")
    if (role == "moderator" or target_role == "moderator") and actor_affiliation not in (
        _ABOVE_MEMBER
    ):
        raise Forbidden("Only admins and owners may grant or revoke moderation")
    if target_affiliation in _ABOVE_MEMBER:
        raise NotAllowed("The role of an admin or owner cannot be changed")
    if AFFILIATION_RANK[target_affiliation] > AFFILIATION_RANK[actor_affiliation]:
        raise NotAllowed("This occupant's affiliation is higher than yours")


def check_affiliation_change(
    actor_affiliation: str, target_affiliation: str, affiliation: str, owners_left: int
) -> None:
    """May ``actor_affiliation`` change a user from ``target_affiliation`` to ``affiliation``?

    - Admins and owners change affiliations (§9); others are forbidden.
    - Only owners grant or revoke admin and owner (§10.3 to §10.7); an admin acting on an admin
      or owner (banning one, say) is not-allowed (§9.1).
    - ``owners_left`` is how many owners the room would have after the change: none is a
      conflict (§10.6), whoever asks.
    """
    if actor_affiliation not in _ABOVE_MEMBER:
        raise Forbidden("Only admins and owners may change affiliations")
    if actor_affiliation != "owner":
        if target_affiliation in _ABOVE_MEMBER:
            raise NotAllowed("Only owners may change the affiliation of an admin or owner")
        if affiliation in _ABOVE_MEMBER:
            raise Forbidden("Only owners may grant admin or owner")
    if owners_left < 1:
        raise NoOwnerLeft()


def check_role_list(actor_role: str) -> None:
    """The moderator and participant (voice) lists are for moderators (§8.5, §9.8)."""
    if actor_role != "moderator":
        raise Forbidden("Only moderators may see the room's role lists")


def check_affiliation_list(actor_affiliation: str) -> None:
    """Affiliation lists (member, outcast, admin, owner) are for admins and owners (§9.2,
    §9.5, §10.5, §10.8). Admins may read the admin and owner lists too, as in the servers'
    own MUCs: knowing who runs the room changes nothing."""
    if actor_affiliation not in _ABOVE_MEMBER:
        raise Forbidden("Only admins and owners may see the room's affiliation lists")
