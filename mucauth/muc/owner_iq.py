"""The owner's iqs (``muc#owner``): the configuration form and destroy, read and applied by
``owner.py``, and what they mean for the room's occupants (their new affiliations, the 104
notice) and for the store (``registry.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.words.xish import domish
from wokkel.muc import NS_MUC_OWNER

from mucauth.muc import stanzas
from mucauth.muc.admin import Moderation
from mucauth.muc.core import Core
from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.owner import ConfigChange, Destroy, owner_request
from mucauth.muc.presence import Presences

__all__ = ["OwnerRequests"]


class OwnerRequests(Feature):
    def __init__(
        self,
        core: Core,
        presences: Presences,
        moderation: Moderation,
        features: Sequence[Feature],
    ) -> None:
        """``features`` add their fields to the form (``Feature.config_fields``)."""
        self._core = core
        self._presences = presences
        self._moderation = moderation
        self._features = features

    def routes(self) -> Iterable[Route]:
        yield Route("room", "get", NS_MUC_OWNER, self._on_iq)
        yield Route("room", "set", NS_MUC_OWNER, self._on_iq)

    def _on_iq(self, request: IqRequest) -> domish.Element | None:
        core = self._core
        room = request.existing_room
        answer = owner_request(
            request.kind,
            request.payload,
            room,
            request.context.sender,
            core.settings.rooms,
            core.settings.limits,
            self._features,
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
