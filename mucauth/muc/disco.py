"""What the service and its rooms say about themselves: disco#info and disco#items.

Built from ``wokkel.disco`` (identities, features, items) and ``wokkel.data_form`` (the
``muc#roominfo`` extension). The service answers disco iqs itself rather than through
``wokkel.disco.DiscoHandler``: the answer depends on room state (an unknown room is
``item-not-found``) and the same handler must own ping (self-ping to an occupant JID).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.protocols.jabber.jid import JID, internJID
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

from mucauth.muc import errors
from mucauth.muc.core import Core
from mucauth.muc.directory import listed_name
from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.incoming import child_ns
from mucauth.muc.room import Room
from mucauth.muc.rsm import NS_RSM, PageRequest, page_request, result_set
from mucauth.muc.stanzas import NS_OCCUPANT_ID

__all__ = ["NS_STABLE_ID", "Disco", "room_info", "service_info"]

NS_STABLE_ID = "http://jabber.org/protocol/muc#stable_id"

InfoItem = Any  # DiscoIdentity | DiscoFeature | data_form.Form; Wokkel is untyped


def service_info(name: str, extra: Iterable[str] = ()) -> list[InfoItem]:
    """The service's identity and features; ``extra`` what its features add."""
    features = [NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_STABLE_ID, NS_OCCUPANT_ID, *extra]
    return [DiscoIdentity("conference", "text", name), *(DiscoFeature(f) for f in features)]


def room_info(room: Room, extra: Iterable[str] = ()) -> list[InfoItem]:
    """The room's identity, features and ``muc#roominfo`` form; ``extra`` what the service's
    features add for this room (MAM when it archives, ...)."""
    config = room.config
    features = [
        NS_MUC,
        NS_DISCO_INFO,
        NS_STABLE_ID,
        NS_OCCUPANT_ID,
        "muc_public" if config.public else "muc_hidden",
        "muc_membersonly" if config.members_only else "muc_open",
        "muc_moderated" if config.moderated else "muc_unmoderated",
        "muc_nonanonymous" if config.non_anonymous else "muc_semianonymous",
        "muc_persistent" if config.persistent else "muc_temporary",
        "muc_passwordprotected" if config.password_protected else "muc_unsecured",
        *extra,
    ]
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


class Disco(Feature):
    """disco#info and disco#items of the service and its rooms, from the live room state and
    what each of the service's ``features`` adds."""

    def __init__(self, core: Core, features: Sequence[Feature]) -> None:
        self._core = core
        self._features = features

    def routes(self) -> Iterable[Route]:
        for to in ("service", "room"):
            for kind in ("get", "set"):  # a set is refused bad-request, here
                for namespace in (NS_DISCO_INFO, NS_DISCO_ITEMS):
                    yield Route(to, kind, namespace, self._on_iq, needs_room=False)  # type: ignore[arg-type]

    def _on_iq(self, request: IqRequest) -> domish.Element | Deferred[domish.Element]:
        if request.payload.name != "query":
            if request.context.address.room is not None and request.room is None:
                raise errors.RoomNotFound("No such room")
            raise errors.UnsupportedNamespace()
        address = request.context.address
        target = address.service if address.room is None else address.room
        return self.answer(request.kind, request.payload, target)

    def info(self, target: JID, node: str = "") -> list[InfoItem]:
        if node:
            raise errors.RoomNotFound("No such node")
        if target.user is None:
            extra = [f for feature in self._features for f in feature.service_features()]
            return service_info(self._core.settings.service_name, extra)
        room = self._core.rooms.get(JID(tuple=(target.user, target.host, None)))
        if room is None:
            raise errors.RoomNotFound("No such room")
        extra = [f for feature in self._features for f in feature.room_features(room)]
        return room_info(room, extra)

    def items(self, target: JID, node: str = "") -> list[DiscoItem]:
        """The first page of the public rooms, or a room's items (none)."""
        if node:
            raise errors.RoomNotFound("No such node")
        if target.user is None:
            page_size = self._core.settings.limits.disco_page_size
            return self.room_list(target.host, PageRequest(page_size))[0]
        if JID(tuple=(target.user, target.host, None)) not in self._core.rooms:
            raise errors.RoomNotFound("No such room")
        return []  # occupants are not listed: that would defeat semi-anonymity

    def room_list(self, host: str, request: PageRequest) -> tuple[list[DiscoItem], domish.Element]:
        """One page of the service's public rooms (``directory.py``'s index: a binary search
        and a slice, whatever the number of rooms) and its XEP-0059 ``<set/>``."""
        limits = self._core.settings.limits
        index, rooms = self._core.index, self._core.rooms
        after, before = _node(request.after, host), _node(request.before, host)
        for _ in range(_RETRIES):
            page = index.page(host, request.limit, after=after, before=before, index=request.index)
            # A live room's settings changed without the index told (every change the service
            # makes tells it): corrected here, and the page taken again.
            stale = [
                room
                for jid, name in page.items
                if (room := rooms.get(internJID(jid))) is not None
                and (not room.config.public or room.config.name != name)
            ]
            if not stale:
                break
            for room in stale:
                index.changed(room)
        entries = _within(
            page.items, limits.max_stanza_size // 2, keep_last=request.before is not None
        )
        first_index = page.first_index + (
            len(page.items) - len(entries) if request.before is not None else 0
        )
        found = [
            DiscoItem(
                internJID(jid),
                name=listed_name(name, jid.partition("@")[0], limits.max_title_length),
            )
            for jid, name in entries
        ]
        first = entries[0][0] if entries else None
        last = entries[-1][0] if entries else None
        return found, result_set(first, first_index, last, page.count)

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
        if target.user is None and not node:
            request = page_request(
                child_ns(payload, NS_RSM, "set"), self._core.settings.limits.disco_page_size
            )
            found, paging = self.room_list(target.host, request)
            element = _items_element(found)
            element.addChild(paging)
            return element
        return _items_element(self.items(target, node))


def _items_element(found: list[DiscoItem]) -> domish.Element:
    disco_items = DiscoItems()
    for entry in found:
        disco_items.append(entry)
    return disco_items.toElement()


def _node(value: str | None, host: str) -> str | None:
    """The node of a room JID a client pages from (``<after/>``, ``<before/>``): our own
    ``<first/>`` or ``<last/>`` given back; "" (the end) stays."""
    if not value:
        return value
    node, at, their_host = value.rpartition("@")
    if not at or their_host != host or not node:
        raise errors.RoomNotFound("No such room in this list")
    return node


# Pages taken again at most when live rooms turn out to have changed unseen.
_RETRIES = 3

# Bytes an item costs beside its JID and name: <item jid='' name=''/>.
_ITEM_OVERHEAD = 24
_ESCAPED = str.maketrans({c: "12345" for c in "&<>'\""})  # each may cost 5 more written


def _within(items: list[tuple[str, str]], budget: int, *, keep_last: bool) -> list[tuple[str, str]]:
    """As many of ``items`` as surely fit in ``budget`` bytes once written (escaping counted at
    its worst), so a page stays far under the stanza limit whatever the page size is set to;
    a page taken backwards keeps its last items."""
    total = 0
    kept = 0
    for jid, name in reversed(items) if keep_last else items:
        total += _ITEM_OVERHEAD + len((jid + name).translate(_ESCAPED).encode("utf-8"))
        if total > budget:
            break
        kept += 1
    if kept == len(items):
        return items
    return items[len(items) - kept :] if keep_last else items[:kept]
