"""enabled_for / disabled_for: which rooms the gate applies to, as a wrapper authorizer."""

from __future__ import annotations

from functools import lru_cache

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmpp_stringprep import nameprep, nodeprep
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.settings import RoomScope

__all__ = ["OUTSIDE_SCOPE", "ScopedAuthorizer", "scope_applies"]

ALL_HOSTS = "all"
OUTSIDE_SCOPE = "outside scope"  # the reason on the allow for an ungated room

log = Logger()


@lru_cache(maxsize=4096)
def _node(name: str) -> str:
    """Room names compare as XMPP does: nodeprep folds case and Unicode forms."""
    try:
        return nodeprep.prepare(name.strip())
    except UnicodeError:
        return name.strip().lower()  # not a valid node: no room can match it anyway


@lru_cache(maxsize=1024)
def _host(name: str) -> str:
    try:
        return nameprep.prepare(name.strip())
    except UnicodeError:
        return name.strip().lower()


def _listed(scope: RoomScope, user_host: str, room_node: str) -> bool:
    room = _node(room_node)
    host = _host(user_host)
    for key, rooms in scope.rooms.items():
        key = key.strip()
        if key.lower() == ALL_HOSTS or _host(key) == host:
            if any(_node(name) == room for name in rooms):
                return True
    return False


def scope_applies(scope: RoomScope, user_host: str, room_node: str) -> bool:
    """Does the gate decide joins by users of ``user_host`` to the room ``room_node``?

    ``all``: every room. ``enabled``: only the listed rooms. ``disabled``: all but the listed
    rooms. A room is listed under the user's host or under the key ``all``.
    """
    if scope.mode == "all":
        return True
    listed = _listed(scope, user_host, room_node)
    return listed if scope.mode == "enabled" else not listed


@implementer(IJoinAuthorizer)
class ScopedAuthorizer:
    """Sends only in-scope joins to ``inner``; the others are admitted at once, asking nobody."""

    def __init__(self, inner: IJoinAuthorizer, scope: RoomScope) -> None:
        self._inner = inner
        self._scope = scope

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        if scope_applies(self._scope, request.user.host, request.room.user or ""):
            return self._inner.authorize(request)
        log.debug(
            "{action} allow user={user} room={room} nick={nick} reason={reason}",
            action=request.action,
            user=request.user.userhost(),
            room=request.room.userhost(),
            nick=request.nick,
            outcome="allow",
            reason=OUTSIDE_SCOPE,
        )
        return succeed(Decision("allow", OUTSIDE_SCOPE, source="scope"))
