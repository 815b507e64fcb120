"""What a feature plugs into the service: the iqs it answers, what disco says of it, and its
fields in the owner's configuration form.

A feature is one module with one :class:`Feature`; the service lists its features, one line
each (``parts.py``), and ``iq.py`` routes an iq by its (address, type, namespace) to the
feature that registered it. Adding a feature touches its own module and that line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred
from twisted.words.xish import domish
from wokkel import data_form

from mucauth.muc.incoming import Context
from mucauth.muc.room import Room

__all__ = ["ANSWERED", "Answer", "Feature", "IqRequest", "Route"]


class _Answered:
    """The handler answers the iq itself, later (a registration waiting for the gate, an iq
    relayed to an occupant)."""

    def __repr__(self) -> str:
        return "ANSWERED"


ANSWERED = _Answered()

# A handler's answer: the result's payload (None for an empty result), a Deferred of one, or
# ANSWERED. A refusal is raised (``errors.MUCError``).
Answer = domish.Element | None | Deferred[Any] | _Answered


@dataclass(frozen=True)
class IqRequest:
    """An iq get or set routed to a feature."""

    stanza: domish.Element
    kind: str  # "get" or "set"
    payload: domish.Element  # the iq's first child, whose namespace routed it
    context: Context
    # The room a room iq is for: never None for a route with ``needs_room``.
    room: Room | None = None

    @property
    def existing_room(self) -> Room:
        assert self.room is not None
        return self.room


@dataclass(frozen=True)
class Route:
    """One (address, type, namespace) a feature answers."""

    to: Literal["service", "room"]
    kind: Literal["get", "set"]
    namespace: str
    handler: Callable[[IqRequest], Answer]
    # Refuse item-not-found before the handler when the room does not exist.
    needs_room: bool = True


class Feature:
    """A feature of the service; each hook has a default of nothing."""

    def routes(self) -> Iterable[Route]:
        """The iqs this feature answers."""
        return ()

    def service_features(self) -> Iterable[str]:
        """What the service's disco#info lists for this feature."""
        return ()

    def room_features(self, room: Room) -> Iterable[str]:
        """What a room's disco#info lists for this feature, as the room is now."""
        return ()

    def config_fields(self, room: Room) -> Iterable[data_form.Field]:
        """This feature's fields of the owner's configuration form, with the room's values."""
        return ()

    def read_config(self, values: Mapping[str, object]) -> Mapping[str, object]:
        """The ``RoomConfig`` attributes a submitted form sets for this feature, from the
        form's values by field name (``muc#roomconfig_`` taken off)."""
        return {}
