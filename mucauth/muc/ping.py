"""XMPP ping (XEP-0199) to the service and to rooms: an empty result, so a client (or its
server) knows the service and the room are there. A self-ping to one's own occupant JID
(XEP-0410) is the occupant routing's, in ``iq.py``: its answer depends on being joined."""

from __future__ import annotations

from collections.abc import Iterable

from wokkel.ping import NS_PING

from mucauth.muc import errors
from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.room import Room

__all__ = ["NS_PING", "Ping"]


class Ping(Feature):
    def routes(self) -> Iterable[Route]:
        yield Route("service", "get", NS_PING, self._on_ping, needs_room=False)
        yield Route("room", "get", NS_PING, self._on_ping)

    def service_features(self) -> Iterable[str]:
        return (NS_PING,)

    def room_features(self, room: Room) -> Iterable[str]:
        return (NS_PING,)

    def _on_ping(self, request: IqRequest) -> None:
        if request.payload.name != "ping":
            raise errors.UnsupportedNamespace()
