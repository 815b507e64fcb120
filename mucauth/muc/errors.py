# ruff: noqa: N818  -- domain names as STYLE.md gives them (NickInUse, NotOccupant), no Error suffix
"""Domain errors of the MUC service.

``room.py`` and ``service.py`` raise these; ``stanzas.CONDITIONS`` alone decides which XMPP error
each one becomes, so the rules and the wire format can change independently.
"""

from __future__ import annotations


class MUCError(Exception):
    """Base class: ``text`` is safe to show the user (it never carries stanza contents)."""

    default_text: str | None = None
    # Character data of the condition element, for the one condition that has any (RFC 6120
    # §8.3.3.5: `gone` holds the address the entity moved to).
    detail: str | None = None

    def __init__(self, text: str | None = None) -> None:
        super().__init__(text or self.default_text or "")
        self.text = text if text is not None else self.default_text


class BadRoomName(MUCError):
    """The room address is not a valid JID node (nodeprep failed or it is missing)."""


class RoomNameNotAcceptable(MUCError):
    """A valid node the service still refuses, e.g. longer than the configured limit."""

    default_text = "This room name is not acceptable"


class BadNick(MUCError):
    """No nickname, or one resourceprep rejects."""


class NickNotAcceptable(MUCError):
    """A valid resource we still refuse: blank, control characters, too long."""

    default_text = "This nickname is not acceptable"


class NickInUse(MUCError):
    default_text = "That nickname is already in use by another occupant"


class RoomFull(MUCError):
    default_text = "The room has reached its maximum number of occupants"


class NotOccupant(MUCError):
    default_text = "You are not in this room"


class NoSuchOccupant(MUCError):
    """A private message or iq to a nick nobody holds."""


class RoomNotFound(MUCError):
    pass


class RoomGone(MUCError):
    """The room was destroyed and its tombstone still stands: ``detail`` is the alternate
    venue as an XMPP URI (``xmpp:room@service?join``), None when its owner named none."""

    def __init__(self, text: str | None, alternate: str | None) -> None:
        super().__init__(text)
        self.detail = alternate


class Forbidden(MUCError):
    """The occupant lacks the role or affiliation the action needs."""


class JoinPending(MUCError):
    """The user's join is still being authorized: not an occupant yet."""

    default_text = "Your join to this room is still being authorized"


class Overloaded(MUCError):
    """Too much waiting already: authorization checks in flight (service-wide or for one
    user), stanzas held behind a join or a room's read, iqs relayed to occupants."""

    default_text = "Too many pending joins, try again later"


class AlreadyPending(MUCError):
    """The same request is being decided already (a registration, an archive query): the
    first one's answer is not this one's, so this one is refused, wait/resource-constraint."""


class BadRequest(MUCError):
    pass


class NotSupported(MUCError):
    """A well-formed request for something this service does not implement."""


class NotOffered(MUCError):
    """Something this address does not offer (RFC 6120 service-unavailable): messages to the
    service, the archive of a room that keeps none."""


class UnsupportedNamespace(NotOffered):
    """An iq whose (type, namespace) no feature registered (``iq.py``)."""


class NotJoined(MUCError):
    """XEP-0410 self-ping from a session that is not (or no longer) in the room."""

    default_text = "You are not joined to this room"


class ConfigNotAcceptable(MUCError):
    """A submitted room configuration the service cannot honour."""


class ShuttingDown(MUCError):
    default_text = "The service is shutting down, try again later"


class StoreUnavailable(MUCError):
    """The room may be in the store, which could not be read in time: nothing is decided on
    a guess (creating the room afresh would lose the stored one)."""

    default_text = "The room cannot be loaded now, try again later"


class RoomUnloadable(MUCError):
    """A stored room the store gave back but the service could not rebuild, not even from
    its affiliations (``persist.py``): answered, never left waiting."""

    default_text = "This room cannot be loaded; the service's operators have been told"


class NoOwnerLeft(MUCError):
    """A change that would leave the room without an owner (XEP-0045 §10.6: conflict)."""

    default_text = "A room needs at least one owner"


class NotAllowed(MUCError):
    """A moderation change the actor's standing allows in general but not on this target: an
    admin banning an owner, a moderator kicking an admin (XEP-0045 §8, §9: not-allowed)."""

    default_text = "You may not do that to this occupant"


class RegistrationRequired(MUCError):
    """A members-only room and a user who is not a member (XEP-0045 §7.2.7)."""

    default_text = "This room is for members only"


class RelayTimeout(MUCError):
    """An iq relayed to an occupant was not answered in time (relay.py)."""

    default_text = "The occupant did not answer"


class TooLarge(MUCError):
    """A stanza, or a text in it, over a bound of [limits] (``limits.py``): what the service
    would build from it could pass the server's stanza limit and cost the link."""

    default_text = "The stanza is too large"


class TooManyRooms(MUCError):
    """The service holds ``[limits] max_rooms`` rooms already: no new one until some go."""

    default_text = "This service has too many rooms, try again later"


class TooManyRoomsForUser(MUCError):
    """The user created ``[limits] max_rooms_per_user`` rooms that still exist."""

    default_text = "You have created too many rooms; destroy one before creating another"


class NoSuchMessage(MUCError):
    """An archive query or a moderation names a stanza id the room does not hold."""

    default_text = "No such message in this room"
