"""Builders for the stanzas the service sends, and the one table from domain errors to XMPP.

Wokkel's ``muc`` module is client-side only: it names the namespaces and status codes but builds
no ``muc#user`` presence and parses no join, so those are written here. Addressing comes from
Twisted's ``toResponse`` (which copies no children), error children from ``StanzaError.getElement``
and ``<delay/>`` from ``wokkel.delay``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from twisted.words.protocols.jabber.error import NS_XMPP_STANZAS, StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.delay import Delay
from wokkel.muc import NS_MUC, NS_MUC_USER, STATUS_CODE

from mucauth.conditions import ERROR_TYPES, RFC6120_CONDITIONS
from mucauth.muc import errors
from mucauth.muc.jids import occupant_address
from mucauth.muc.room import Occupant, Room
from mucauth.muc.xml import LazyStanza, Stanza, escape_attribute, escape_text
from mucauth.settings import ErrorCondition

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_SID = "urn:xmpp:sid:0"
_DROPPED = frozenset({NS_MUC, NS_MUC_USER, NS_OCCUPANT_ID, "urn:xmpp:delay"})

REALJID_PUBLIC = STATUS_CODE.REALJID_PUBLIC.value  # 100
SELF_PRESENCE = STATUS_CODE.SELF_PRESENCE.value  # 110
ROOM_CREATED = STATUS_CODE.ROOM_CREATED.value  # 201
NICK_ASSIGNED = STATUS_CODE.NICK_ASSIGNED.value  # 210
NEW_NICK = STATUS_CODE.NEW_NICK.value  # 303
KICKED = STATUS_CODE.KICKED.value  # 307
REMOVED_SHUTDOWN = STATUS_CODE.REMOVED_SHUTDOWN.value  # 332
BANNED = STATUS_CODE.BANNED.value  # 301
REMOVED_AFFILIATION = STATUS_CODE.REMOVED_AFFILIATION.value  # 321: no longer a member
REMOVED_MEMBERSHIP = STATUS_CODE.REMOVED_MEMBERSHIP.value  # 322: the room became members-only
KICKED_ERROR = 333  # XEP-0045 1.31: removed because of a technical problem; not in Wokkel 18
CONFIGURATION_CHANGED = STATUS_CODE.CONFIGURATION_CHANGED.value  # 104
LOGGING_ENABLED = STATUS_CODE.LOGGING_ENABLED.value  # 170
LOGGING_DISABLED = STATUS_CODE.LOGGING_DISABLED.value  # 171
NON_ANONYMOUS = STATUS_CODE.NON_ANONYMOUS.value  # 172
SEMI_ANONYMOUS = STATUS_CODE.SEMI_ANONYMOUS.value  # 173

# exception -> (condition, type). Anything not here is a bug: internal-server-error.
CONDITIONS: dict[type[errors.MUCError], tuple[str, str]] = {
    errors.BadRoomName: ("jid-malformed", "modify"),
    errors.RoomNameNotAcceptable: ("not-acceptable", "cancel"),
    errors.BadNick: ("jid-malformed", "modify"),
    errors.NickNotAcceptable: ("not-acceptable", "cancel"),
    errors.NickInUse: ("conflict", "cancel"),
    errors.RoomFull: ("service-unavailable", "wait"),
    errors.NotOccupant: ("not-acceptable", "modify"),
    errors.JoinPending: ("not-acceptable", "modify"),
    errors.NoSuchOccupant: ("item-not-found", "cancel"),
    errors.RoomGone: ("gone", "cancel"),
    errors.RoomNotFound: ("item-not-found", "cancel"),
    errors.Forbidden: ("forbidden", "auth"),
    errors.Overloaded: ("resource-constraint", "wait"),
    errors.AlreadyPending: ("resource-constraint", "wait"),
    errors.BadRequest: ("bad-request", "modify"),
    errors.NotSupported: ("feature-not-implemented", "cancel"),
    errors.NotOffered: ("service-unavailable", "cancel"),
    errors.NotJoined: ("not-acceptable", "cancel"),
    errors.ConfigNotAcceptable: ("not-acceptable", "modify"),
    errors.ShuttingDown: ("service-unavailable", "wait"),
    errors.StoreUnavailable: ("service-unavailable", "wait"),
    errors.RoomUnloadable: ("internal-server-error", "wait"),
    errors.NoOwnerLeft: ("conflict", "cancel"),
    errors.NotAllowed: ("not-allowed", "cancel"),
    errors.RelayTimeout: ("remote-server-timeout", "wait"),
    errors.RegistrationRequired: ("registration-required", "auth"),
    errors.NoSuchMessage: ("item-not-found", "cancel"),
    # The service-wide bound passes as rooms go away: wait. The per-user one is a policy the
    # user meets again until they destroy a room: cancel, so clients show the text at once.
    errors.TooManyRooms: ("resource-constraint", "wait"),
    # Not policy-violation (RFC 6120): clients built on RFC 3920's list, slixmpp and poezio
    # among them, cannot read it, and an iq answered with it never completes there.
    errors.TooManyRoomsForUser: ("not-allowed", "cancel"),  # "you may not create rooms"
    errors.TooLarge: ("not-acceptable", "modify"),
}

INTERNAL = ErrorCondition("cancel", "internal-server-error")

# Written by hand for the types that differ from the RFC's examples (a full room is "wait");
# checked once at import so a misspelt condition cannot reach the wire.
for _condition, _kind in (*CONDITIONS.values(), (INTERNAL.condition, INTERNAL.type)):
    if _condition not in RFC6120_CONDITIONS or _kind not in ERROR_TYPES:
        raise ValueError(f"not an RFC 6120 stanza error: {_kind}/{_condition}")


def condition_for(exc: errors.MUCError) -> ErrorCondition:
    for cls in type(exc).__mro__:
        if cls in CONDITIONS:
            condition, kind = CONDITIONS[cls]
            return ErrorCondition(kind, condition)
    return INTERNAL


def error_element(
    condition: ErrorCondition, text: str | None, by: JID | None, detail: str | None = None
) -> domish.Element:
    """``detail``: the condition element's character data (`gone`'s new address)."""
    element = StanzaError(condition.condition, condition.type, text or None).getElement()
    if by is not None:
        element["by"] = by.full()
    if detail:
        for child in element.elements(NS_XMPP_STANZAS, condition.condition):
            child.addContent(detail)
    return element


def join_uri(room: str) -> str:
    """An XMPP URI that joins ``room`` (RFC 5122, XEP-0147 ``?join``): what `gone` points
    at, so a client can move its bookmark there. Characters a URI path may not hold are
    percent-encoded (UTF-8), the rest of the JID is kept as written."""
    return "xmpp:" + quote(room, safe="@/!$()*+,;=:") + "?join"


def error_reply(
    stanza: domish.Element,
    condition: ErrorCondition,
    text: str | None = None,
    *,
    by: JID | None = None,
    sender: str | None = None,
    detail: str | None = None,
) -> domish.Element:
    """An error answer that carries none of the offending stanza's children.

    RFC 6120 allows echoing them; we never do, since a join may hold a ``<password/>``.
    ``sender`` replaces the ``from`` when the address the user wrote is not one we can send from
    (a malformed JID).
    """
    reply = toResponse(stanza, "error")
    if sender is not None:
        reply["from"] = sender
    reply.addChild(error_element(condition, text, by, detail))
    return reply


def join_error(
    join: domish.Element,
    condition: ErrorCondition,
    text: str | None,
    *,
    room: JID | None,
    sender: str | None = None,
    detail: str | None = None,
) -> domish.Element:
    """The refusal of a join: from the occupant JID, same id, with the muc ``<x/>``.

    Dino matches the refusal by id; slixmpp and profanity recognise it only with the ``<x/>``.
    """
    reply = toResponse(join, "error")
    if sender is not None:
        reply["from"] = sender
    reply.addElement((NS_MUC, "x"))
    reply.addChild(error_element(condition, text, room, detail))
    return reply


def _occupant_id(value: str) -> domish.Element:
    element = domish.Element((NS_OCCUPANT_ID, "occupant-id"))
    element["id"] = value
    return element


def occupant_presence(
    room: Room,
    occupant: Occupant,
    to: JID,
    *,
    show_jid: bool,
    statuses: Iterable[int] = (),
    unavailable: bool = False,
    nick: str | None = None,
    new_nick: str | None = None,
    payload: Sequence[domish.Element] | None = None,
    real_jid: JID | None = None,
    stanza_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> domish.Element:
    """One occupant's presence as one recipient sees it.

    ``nick`` overrides the occupant JID's resource (the old nick of a 303), ``new_nick`` goes
    into the item of a 303, ``show_jid`` is decided per viewer by the room's anonymity.
    ``real_jid`` names the session when it is no longer in ``occupant.sessions`` (it just left).
    ``stanza_id`` is the id of the client's own join or leave, reflected in its self-presence
    so the client can tie the answer to what it sent (as Prosody's own MUC does).
    ``reason`` and ``actor`` (a nick) go into the item of a moderation change (§8, §9).
    """
    attributes = {"from": occupant_address(room.jid, nick or occupant.nick), "to": to.full()}
    if stanza_id:
        attributes["id"] = stanza_id
    if unavailable:
        attributes["type"] = "unavailable"
    children: Sequence[domish.Element] = payload if payload is not None else ()
    if payload is None and not unavailable:
        children = occupant.payload  # type: ignore[assignment]
    item: dict[str, str] = {
        "affiliation": occupant.affiliation,
        "role": "none" if unavailable and new_nick is None else occupant.role,
    }
    if show_jid:
        item["jid"] = (real_jid or occupant.jid).full()
    if new_nick is not None:
        item["nick"] = new_nick
    codes = tuple(str(code) for code in sorted(set(statuses)))
    reason = reason or None  # an empty <reason/> says nothing
    extra = (reason, actor) if reason is not None or actor is not None else None
    return OccupantPresence(attributes, tuple(children), item, codes, occupant.occupant_id, extra)


# item attributes, status codes, occupant id, (reason, actor nick) of a moderation change
_PresenceParts = tuple[dict[str, str], tuple[str, ...], str, tuple[str | None, str | None] | None]


class OccupantPresence(LazyStanza):
    """An occupant's presence (see :func:`occupant_presence`), its tree made only if read.

    A join in a room of N sends about 2N of these, and the stream only wants their text.
    """

    def __init__(
        self,
        attributes: dict[str, str],
        payload: tuple[domish.Element, ...],
        item: dict[str, str],
        codes: tuple[str, ...],
        occupant_id: str,
        extra: tuple[str | None, str | None] | None = None,
    ) -> None:
        super().__init__("presence", attributes, payload, (item, codes, occupant_id, extra))

    def build(self, parts: _PresenceParts) -> None:
        item, codes, occupant_id, extra = parts
        x = self.addElement((NS_MUC_USER, "x"))
        item_element = x.addElement("item")
        for key, value in item.items():
            item_element[key] = value
        if extra is not None:
            reason, actor = extra
            if actor is not None:
                item_element.addElement("actor")["nick"] = actor
            if reason is not None:
                item_element.addElement("reason", content=reason)
        for code in codes:
            x.addElement("status")["code"] = code
        self.addChild(_occupant_id(occupant_id))

    def tail(self, parts: _PresenceParts) -> str:
        item, codes, occupant_id, extra = parts
        out = [f"<x xmlns='{NS_MUC_USER}'><item"]
        for key, value in item.items():
            out.append(f" {key}='{escape_attribute(value)}'")
        if extra is None:
            out.append("/>")
        else:
            reason, actor = extra
            out.append(">")
            if actor is not None:
                out.append(f"<actor nick='{escape_attribute(actor)}'/>")
            if reason is not None:
                out.append(f"<reason>{escape_text(reason)}</reason>")
            out.append("</item>")
        for code in codes:
            out.append(f"<status code='{code}'/>")
        out.append(
            f"</x><occupant-id xmlns='{NS_OCCUPANT_ID}' id='{escape_attribute(occupant_id)}'/>"
        )
        return "".join(out)


@dataclass(frozen=True)
class StanzaId:
    """The room's id for a message (XEP-0359 ``<stanza-id by=room/>``), written once for all
    the copies of the message."""

    by: str
    id: str
    xml: str = ""

    @classmethod
    def of(cls, by: str, id: str) -> StanzaId:
        xml = (
            f"<stanza-id xmlns='{NS_SID}' by='{escape_attribute(by)}' id='{escape_attribute(id)}'/>"
        )
        return cls(by, id, xml)

    def element(self) -> domish.Element:
        element = domish.Element((NS_SID, "stanza-id"))
        element["by"] = self.by
        element["id"] = self.id
        return element


class GroupchatMessage(LazyStanza):
    """A reflected groupchat message (see :func:`groupchat_message`), its tree made only if
    read: a message to a room of N is N of these."""

    def __init__(
        self,
        attributes: dict[str, str],
        children: Sequence[domish.Element],
        occupant_id: str,
        archive_id: StanzaId | None = None,
    ) -> None:
        super().__init__("message", attributes, children, (occupant_id, archive_id))

    def build(self, parts: tuple[str, StanzaId | None]) -> None:
        occupant_id, archive_id = parts
        if archive_id is not None:
            self.addChild(archive_id.element())
        self.addChild(_occupant_id(occupant_id))

    def tail(self, parts: tuple[str, StanzaId | None]) -> str:
        occupant_id, archive_id = parts
        own = f"<occupant-id xmlns='{NS_OCCUPANT_ID}' id='{escape_attribute(occupant_id)}'/>"
        return own if archive_id is None else archive_id.xml + own


def groupchat_message(
    room: Room,
    nick: str,
    occupant_id: str,
    to: JID,
    children: Sequence[domish.Element],
    *,
    stanza_id: str | None = None,
    delay: datetime | None = None,
    archive_id: StanzaId | None = None,
) -> domish.Element:
    """A reflected (or, with ``delay``, replayed) groupchat message, keeping the sender's id;
    ``archive_id``: the room's id for it (a replayed one has it among its ``children``)."""
    attributes = {"from": occupant_address(room.jid, nick), "to": to.full(), "type": "groupchat"}
    if stanza_id:
        attributes["id"] = stanza_id
    if delay is None:
        return GroupchatMessage(attributes, children, occupant_id, archive_id)
    message = Stanza((None, "message"), attribs=attributes)
    for child in children:
        message.children.append(child)
    message.addChild(_occupant_id(occupant_id))
    message.addChild(Delay(delay, room.jid).toElement())
    return message


def destroyed_presence(
    room: Room, occupant: Occupant, to: JID, reason: str | None, alternate: JID | None
) -> domish.Element:
    """What each occupant's session hears when the owner destroys the room (XEP-0045 §10.9):
    its own presence, unavailable, with the reason and the alternate venue if given."""
    presence = Stanza((None, "presence"))
    presence["from"] = occupant_address(room.jid, occupant.nick)
    presence["to"] = to.full()
    presence["type"] = "unavailable"
    x = presence.addElement((NS_MUC_USER, "x"))
    x.addElement("item")["affiliation"] = "none"
    x.item["role"] = "none"
    x.addElement("status")["code"] = str(SELF_PRESENCE)
    destroy = x.addElement("destroy")
    if alternate is not None:
        destroy["jid"] = alternate.full()
    if reason:
        destroy.addElement("reason", content=reason)
    return presence


def subject_message(room: Room, to: JID) -> domish.Element:
    """The subject, always sent last on join: clients take it as "the join is complete".

    A subject with a known time carries it (XEP-0203 ``<delay from=room/>``): without it
    clients show the subject as set at the moment of the join. The empty ``<subject/>`` of a
    room without one carries none: nothing was set."""
    message = Stanza((None, "message"))
    subject = room.subject
    if subject is not None and subject.nick:
        message["from"] = occupant_address(room.jid, subject.nick)
    else:
        message["from"] = room.jid.full()
    message["to"] = to.full()
    message["type"] = "groupchat"
    element = message.addElement("subject")
    if subject is not None:
        element.addContent(subject.text)
        if subject.stamp is not None:
            message.addChild(Delay(subject.stamp, room.jid).toElement())
    return message


def status_message(room: Room, to: JID, codes: Iterable[int]) -> domish.Element:
    """A groupchat message from the room itself with no body, only status codes (a
    configuration change, XEP-0045 §10.2.1): clients show each code's meaning."""
    message = Stanza((None, "message"))
    message["from"] = room.jid.full()
    message["to"] = to.full()
    message["type"] = "groupchat"
    x = message.addElement((NS_MUC_USER, "x"))
    for code in codes:
        x.addElement("status")["code"] = str(code)
    return message


def private_message(
    room: Room,
    sender: Occupant,
    to: JID,
    original: domish.Element,
    children: Sequence[domish.Element],
) -> domish.Element:
    """A private message relayed from one occupant JID to the target's session."""
    message = Stanza((None, "message"))
    message["from"] = occupant_address(room.jid, sender.nick)
    message["to"] = to.full()
    for attr in ("type", "id"):
        if original.getAttribute(attr):
            message[attr] = original[attr]
    for child in children:
        message.children.append(child)
    message.addElement((NS_MUC_USER, "x"))  # XEP-0045 7.5: marks it as a MUC private message
    message.addChild(_occupant_id(sender.occupant_id))
    return message


def client_children(stanza: domish.Element) -> list[domish.Element]:
    """A client stanza's children we may pass on.

    Dropped: the join's muc ``<x/>`` (it may hold a password), any ``muc#user`` ``<x/>``,
    ``<occupant-id/>`` and ``<stanza-id/>`` (XEP-0359: only the room gives ids to what it
    sends) a client tried to forge, ``<delay/>`` and the client's own error children. A
    client's ``<origin-id/>`` is its own and is kept.
    """
    kept = []
    for child in stanza.elements():
        if child.uri in _DROPPED:
            continue
        if child.name == "error" or (child.name == "stanza-id" and child.uri == NS_SID):
            continue
        kept.append(child)
    return kept
