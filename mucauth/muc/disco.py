"""What the service and its rooms say about themselves: disco#info and disco#items.

Built from ``wokkel.disco`` (identities, features, items) and ``wokkel.data_form`` (the
``muc#roominfo`` extension). The service answers disco iqs itself rather than through
``wokkel.disco.DiscoHandler``: the answer depends on room state (an unknown room is
``item-not-found``) and the same handler must own ping (self-ping to an occupant JID).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.disco import (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    DiscoFeature,
    DiscoIdentity,
    DiscoInfo,
    DiscoItem,
    DiscoItems,
)
from wokkel.muc import NS_MUC, NS_MUC_ROOMINFO
from wokkel.ping import NS_PING

from mucauth.muc import errors
from mucauth.muc.archive import NS_MAM, NS_MAM_EXTENDED, NS_STANZA_ID, archives
from mucauth.muc.core import Core
from mucauth.muc.requests import NS_MUC_REQUEST
from mucauth.muc.retraction import NS_MODERATE, NS_MODERATE_0
from mucauth.muc.room import Room
from mucauth.muc.stanzas import NS_OCCUPANT_ID

__all__ = ["NS_STABLE_ID", "Disco", "is_disco", "public_rooms", "room_info", "service_info"]

NS_STABLE_ID = "http://jabber.org/protocol/muc#stable_id"

InfoItem = Any  # DiscoIdentity | DiscoFeature | data_form.Form; Wokkel is untyped


def service_info(name: str) -> list[InfoItem]:
    features = [NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_STABLE_ID, NS_OCCUPANT_ID]
    return [DiscoIdentity("conference", "text", name), *(DiscoFeature(f) for f in features)]


def room_info(room: Room, archived: bool = False) -> list[InfoItem]:
    """``archived``: the room keeps an archive (``archive.archives``), so it offers MAM,
    stanza ids and moderated retraction."""
    config = room.config
    features = [
        NS_MUC,
        NS_DISCO_INFO,
        NS_PING,
        NS_STABLE_ID,
        NS_OCCUPANT_ID,
        "muc_public" if config.public else "muc_hidden",
        "muc_membersonly" if config.members_only else "muc_open",
        "muc_moderated" if config.moderated else "muc_unmoderated",
        "muc_nonanonymous" if config.non_anonymous else "muc_semianonymous",
        "muc_persistent" if config.persistent else "muc_temporary",
        "muc_passwordprotected" if config.password_protected else "muc_unsecured",
        NS_MUC_REQUEST,
    ]
    if archived:
        features += [NS_MAM, NS_MAM_EXTENDED, NS_STANZA_ID, NS_MODERATE, NS_MODERATE_0]
    form = data_form.Form(
        "result",
        formNamespace=NS_MUC_ROOMINFO,
        fields=[
            data_form.Field(var="muc#roominfo_occupants", value=str(len(room))),
            data_form.Field(var="muc#roominfo_description", value=config.description),
            data_form.Field(
                var="muc#roominfo_subject", value=room.subject.text if room.subject else ""
            ),
            data_form.Field(
                "boolean",
                var="muc#roominfo_subjectmod",
                value=config.occupants_may_change_subject,
            ),
        ],
    )
    return [
        DiscoIdentity("conference", "text", config.name or room.jid.user),
        *(DiscoFeature(f) for f in features),
        form,
    ]


def public_rooms(rooms: list[Room]) -> list[DiscoItem]:
    return [
        DiscoItem(room.jid, name=room.config.name or room.jid.user)
        for room in sorted(rooms, key=lambda r: r.jid.full())
        if room.config.public
    ]


def is_disco(payload: domish.Element) -> bool:
    return payload.uri in (NS_DISCO_INFO, NS_DISCO_ITEMS) and payload.name == "query"


class Disco:
    """disco#info and disco#items of the service and its rooms, from the live room state."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def info(self, target: JID, node: str = "") -> list[InfoItem]:
        if node:
            raise errors.RoomNotFound("No such node")
        if target.user is None:
            return service_info(self._core.settings.service_name)
        room = self._core.rooms.get(JID(tuple=(target.user, target.host, None)))
        if room is None:
            raise errors.RoomNotFound("No such room")
        return room_info(room, archives(room, self._core))

    def items(self, target: JID, node: str = "") -> list[DiscoItem] | Deferred[list[DiscoItem]]:
        """The public rooms (a Deferred when some are only in the store), or a room's none."""
        if node:
            raise errors.RoomNotFound("No such node")
        rooms = self._core.rooms
        if target.user is None:
            host = target.host
            live = [r for j, r in rooms.items() if j.host == host]
            keeper = self._core.keeper
            if keeper is None:
                return public_rooms(live)
            d = keeper.public_rooms(host)
            d.addErrback(self._store_unlisted)
            return d.addCallback(lambda stored: _with_stored(stored, self._core.rooms, host))
        if JID(tuple=(target.user, target.host, None)) not in rooms:
            raise errors.RoomNotFound("No such room")
        return []  # occupants are not listed: that would defeat semi-anonymity

    def _store_unlisted(self, failure: Failure) -> dict[JID, str]:
        # The rooms in memory are still worth listing: a client browsing rooms gets those.
        self._core.log.error(
            "room store: cannot list the stored public rooms ({why}); listing live rooms only",
            why=failure.getErrorMessage() or failure.type.__name__,
        )
        return {}

    def answer(
        self, kind: str, payload: domish.Element, target: JID
    ) -> domish.Element | Deferred[domish.Element]:
        """The result payload of a disco iq (``payload`` passed :func:`is_disco`)."""
        if kind != "get":
            raise errors.BadRequest("disco is get-only")
        node = payload.getAttribute("node") or ""
        if payload.uri == NS_DISCO_INFO:
            disco_info = DiscoInfo()
            for item in self.info(target, node):
                disco_info.append(item)
            return disco_info.toElement()
        found = self.items(target, node)
        if isinstance(found, Deferred):
            return found.addCallback(_items_element)
        return _items_element(found)


def _items_element(found: list[DiscoItem]) -> domish.Element:
    disco_items = DiscoItems()
    for entry in found:
        disco_items.append(entry)
    return disco_items.toElement()


def _with_stored(stored: dict[JID, str], rooms: dict[JID, Room], host: str) -> list[DiscoItem]:
    """Stored public rooms and live ones; a room in memory is listed as it is now (the store
    may not have its latest settings yet)."""
    names = dict(stored)
    for jid, room in rooms.items():
        if jid.host != host:
            continue
        if room.config.public:
            names[jid] = room.config.name
        else:
            names.pop(jid, None)
    return [DiscoItem(jid, name=names[jid] or jid.user) for jid in sorted(names, key=JID.full)]
