"""Moderated message retraction (XEP-0425): version 0.3 (``urn:xmpp:message-moderate:1``, as
Converse.js sends it) and version 0.2 (``urn:xmpp:message-moderate:0`` inside a message
fastening ``<apply-to/>``, the only one Gajim 1.7 knows).

A moderator names an archived message by the id the room gave it (its ``<stanza-id/>``). The
room then tells every occupant (a ``<retract/>`` from the room, with who moderated and why),
keeps a tombstone in the message's place (in the history joiners get and in the archive, so
later archive pages carry the retraction), and archives the notice itself, so a client that
catches up from its last seen message learns of retractions of older ones too. Whichever
version asked, the notice and the tombstone carry both versions' elements side by side: each
client reads its own and ignores the other.

Only messages of rooms that archive have ids to name, so only those rooms offer it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from mucauth.muc import errors
from mucauth.muc.archive.query import stanza_id_element
from mucauth.muc.archive.write import Stored, archives, stamp
from mucauth.muc.core import Context, Core
from mucauth.muc.feature import Feature, IqRequest, Route
from mucauth.muc.incoming import child_ns
from mucauth.muc.jids import occupant_address
from mucauth.muc.room import HistoryEntry, Occupant, Room
from mucauth.muc.stanzas import NS_OCCUPANT_ID
from mucauth.muc.xml import Stanza
from mucauth.store.base import HistoryRecord

__all__ = [
    "NS_FASTEN",
    "NS_MODERATE",
    "NS_MODERATE_0",
    "NS_RETRACT",
    "NS_RETRACT_0",
    "Retractions",
]

NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_RETRACT = "urn:xmpp:message-retract:1"
# XEP-0425 version 0.2: the request and the notice are fastened (XEP-0422) to the message.
NS_MODERATE_0 = "urn:xmpp:message-moderate:0"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"
NS_FASTEN = "urn:xmpp:fasten:0"


def _moderated(room: Room, moderator: Occupant, reason: str | None) -> list[domish.Element]:
    """Who retracted (the moderator's occupant JID and id) and why: inside both the notice's
    ``<retract/>`` and the tombstone's ``<retracted/>``."""
    moderated = domish.Element((NS_MODERATE, "moderated"))
    moderated["by"] = occupant_address(room.jid, moderator.nick)
    moderated.addElement((NS_OCCUPANT_ID, "occupant-id"))["id"] = moderator.occupant_id
    parts = [moderated]
    if reason:
        why = domish.Element((NS_RETRACT, "reason"))
        why.addContent(reason)
        parts.append(why)
    return parts


def _moderated_0(
    room: Room, moderator: Occupant, reason: str | None, inner: domish.Element
) -> domish.Element:
    """Version 0.2's ``<moderated/>``: who and why around ``<retract/>`` (the notice) or
    ``<retracted/>`` (the tombstone)."""
    moderated = domish.Element((NS_MODERATE_0, "moderated"))
    moderated["by"] = occupant_address(room.jid, moderator.nick)
    moderated.addChild(inner)
    if reason:
        moderated.addElement((NS_MODERATE_0, "reason"), content=reason)
    return moderated


def read_moderate(payload: domish.Element) -> tuple[str, str | None]:
    """The message's id and the reason of a version 0.3 request, ``<moderate id=…/>``."""
    if payload.name != "moderate":
        raise errors.BadRequest("Moderation is an iq set of <moderate/>")
    archive_id = payload.getAttribute("id")
    if not archive_id:
        raise errors.BadRequest("<moderate/> needs the id of the message")
    if child_ns(payload, NS_RETRACT, "retract") is None:
        raise errors.NotSupported("Only retraction is supported")
    return archive_id, _reason(payload, NS_MODERATE)


def read_apply_to(payload: domish.Element) -> tuple[str, str | None]:
    """The message's id and the reason of a version 0.2 request,
    ``<apply-to id=…><moderate><retract/></moderate></apply-to>``."""
    archive_id = payload.getAttribute("id")
    if payload.name != "apply-to" or not archive_id:
        raise errors.BadRequest("Moderation is an iq set of <apply-to id=…/>")
    moderate = child_ns(payload, NS_MODERATE_0, "moderate")
    if moderate is None:
        raise errors.NotSupported("Only moderation is supported in <apply-to/>")
    if child_ns(moderate, NS_RETRACT_0, "retract") is None:
        raise errors.NotSupported("Only retraction is supported")
    return archive_id, _reason(moderate, NS_MODERATE_0)


def _reason(parent: domish.Element, uri: str) -> str | None:
    element = child_ns(parent, uri, "reason")
    if element is None:
        return None
    return str(element).strip() or None


class Retractions(Feature):
    """``<moderate/>`` iqs to a room."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def routes(self) -> Iterable[Route]:
        for kind in ("get", "set"):  # a get is refused bad-request, by the handler
            for namespace in (NS_MODERATE, NS_FASTEN):
                yield Route("room", kind, namespace, self._on_iq)  # type: ignore[arg-type]

    def room_features(self, room: Room) -> Iterable[str]:
        return (NS_MODERATE, NS_MODERATE_0) if archives(room) else ()

    def _on_iq(self, request: IqRequest) -> Deferred[None]:
        return self.on_moderate(
            request.kind, request.payload, request.context, request.existing_room
        )

    def on_moderate(
        self, kind: str, payload: domish.Element, context: Context, room: Room
    ) -> Deferred[None]:
        """A ``<moderate/>`` (version 0.3) or ``<apply-to/>`` (version 0.2) iq to the room."""
        core = self._core
        if not archives(room):
            raise errors.NotOffered("This room keeps no archive to moderate")
        if kind != "set":
            raise errors.BadRequest("Moderation is an iq set")
        read = read_apply_to if payload.uri == NS_FASTEN else read_moderate
        archive_id, reason = read(payload)
        moderator = room.occupant_for(context.sender)
        if moderator is None or not moderator.is_moderator:
            raise errors.Forbidden("Only moderators may retract messages")

        def kept(entry: HistoryEntry) -> bool:
            return getattr(entry.payload, "archive_id", None) == archive_id

        entry = room.find_history(kept)
        if entry is not None:
            self._retract(room, moderator, archive_id, reason, entry)
            return succeed(None)
        d = core.rooms.store.find_message(room.jid.userhost(), archive_id)
        d.addTimeout(core.settings.load_timeout, core.clock)

        def found(record: HistoryRecord | None) -> None:
            if record is None:
                raise errors.NoSuchMessage()
            current = core.rooms.get(room.jid)
            occupant = current.occupant_for(context.sender) if current is not None else None
            if current is None or occupant is None or not occupant.is_moderator:
                raise errors.Forbidden("Only moderators may retract messages")
            self._retract(current, occupant, archive_id, reason, None)

        def unreadable(failure: Failure) -> Failure:
            if failure.check(errors.MUCError):
                return failure
            core.log.error(
                "room store: looking up {message} in {room} failed ({why})",
                message=archive_id,
                room=room.jid.full(),
                why=failure.getErrorMessage() or failure.type.__name__,
            )
            return Failure(
                errors.StoreUnavailable("The archive cannot be read now, try again later")
            )

        return d.addCallback(found).addErrback(unreadable)

    def _retract(
        self,
        room: Room,
        moderator: Occupant,
        archive_id: str,
        reason: str | None,
        entry: HistoryEntry | None,
    ) -> None:
        core = self._core
        now = core.now()
        retracted = domish.Element((NS_RETRACT, "retracted"))
        retracted["stamp"] = stamp(now.timestamp())
        for part in _moderated(room, moderator, reason):
            retracted.addChild(part)
        retracted_0 = domish.Element((NS_RETRACT_0, "retracted"))
        retracted_0["stamp"] = retracted["stamp"]
        moderated_0 = _moderated_0(room, moderator, reason, retracted_0)
        tombstone = [retracted, moderated_0, stanza_id_element(room, archive_id)]
        if entry is not None:
            old: Stored = entry.payload  # type: ignore[assignment]
            replaced = HistoryEntry(
                entry.stamp,
                entry.nick,
                entry.occupant_id,
                Stored(tombstone, old.stanza_id, archive_id),
                len(retracted.toXml()),
            )
            room.replace_history(entry, replaced)
        core.rooms.retracted(room, archive_id, tombstone)
        self._announce(room, moderator, archive_id, reason, now)
        core.log.info(
            "message retracted room={room} message={message} moderator={moderator}",
            room=room.jid.full(),
            message=archive_id,
            moderator=moderator.nick,
        )

    def _announce(
        self,
        room: Room,
        moderator: Occupant,
        archive_id: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        """The notice to every occupant, archived under an id of its own."""
        core = self._core
        retract = domish.Element((NS_RETRACT, "retract"))
        retract["id"] = archive_id
        for part in _moderated(room, moderator, reason):
            retract.addChild(part)
        apply_to = domish.Element((NS_FASTEN, "apply-to"))
        apply_to["id"] = archive_id
        retract_0 = domish.Element((NS_RETRACT_0, "retract"))
        apply_to.addChild(_moderated_0(room, moderator, reason, retract_0))
        notice_id = uuid.uuid4().hex
        children = [retract, apply_to, stanza_id_element(room, notice_id)]
        for _occupant, session in core.sessions(room):
            core.send(_notice(room, session, children))
        notice = HistoryEntry(now, "", "", Stored(children, None, notice_id), 0)
        core.rooms.message(room, notice, room.jid)


def _notice(room: Room, to: JID, children: list[domish.Element]) -> domish.Element:
    message = Stanza((None, "message"))
    message["from"] = room.jid.full()
    message["to"] = to.full()
    message["type"] = "groupchat"
    message["id"] = uuid.uuid4().hex
    for each in children:
        message.children.append(each)  # shared by every copy, never re-parented
    return message
