"""Messages to a room that are not groupchat: mediated invitations and their declines
(XEP-0045 §7.8.2), and voice requests with a moderator's approval (§7.13, §8.6).

Invitations. An occupant may invite (any occupant when the room allows invitations, else only
moderators; visitors never); the room forwards ``<invite/>`` to the invitee from the room's
address, naming the inviter by bare JID. In a members-only room an invitation from an admin or
owner, or from anyone when the room allows invitations, also makes the invitee a member, so the
invitation can be accepted; the invitee still passes the HTTP gate like every joiner. A decline
goes back only to someone who invited that user here recently: the room is no relay for
arbitrary messages. Direct invitations (XEP-0249) go from client to client and never through
the room.

Voice requests. A visitor's request form is sent to every moderator as the ``muc#request``
form; a moderator who submits it with ``muc#request_allow`` true gives the visitor voice, with
the same checks as a muc#admin role change.

Wokkel's ``data_form`` builds and parses the forms; the ``muc#user`` invitation elements are
written here (Wokkel's muc module only sends invitations).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_USER

from mucauth.muc import errors
from mucauth.muc.admin import Moderation, RoleChange
from mucauth.muc.core import Context, Core
from mucauth.muc.feature import Feature
from mucauth.muc.incoming import child_ns
from mucauth.muc.jids import parse_jid
from mucauth.muc.owner import read_bool
from mucauth.muc.privileges import check_role_change
from mucauth.muc.room import Occupant, Room
from mucauth.muc.xml import Stanza

__all__ = ["NS_MUC_REQUEST", "RoomRequests", "is_room_request"]

NS_MUC_REQUEST = "http://jabber.org/protocol/muc#request"
MAX_INVITES = 10  # invitations in one message
MAX_REMEMBERED = 10_000  # (room, invitee) pairs whose declines are forwarded


def is_room_request(message: domish.Element) -> bool:
    return child_ns(message, NS_MUC_USER, "x") is not None or _request_form(message) is not None


def _request_form(message: domish.Element) -> data_form.Form | None:
    element = child_ns(message, data_form.NS_X_DATA, "x")
    if element is None:
        return None
    form = data_form.Form.fromElement(element)
    # Wokkel takes FORM_TYPE as the form's namespace only when typed hidden; a submitted form
    # often leaves the type out, so the field is looked at too.
    form_type = form.formNamespace
    if form_type is None and "FORM_TYPE" in form.fields:
        form_type = form.fields["FORM_TYPE"].value
    return form if form_type == NS_MUC_REQUEST else None


def _reason(element: domish.Element) -> str | None:
    for c in element.elements():
        if c.name == "reason":
            return str(c)
    return None


def _user_jid(text: str | None) -> JID:
    try:
        jid = parse_jid(text or "")
    except InvalidFormat:
        raise errors.BadRequest("Not a JID") from None
    if jid.user is None:
        raise errors.BadRequest("Invitations go to users' JIDs")
    return jid


class RoomRequests(Feature):
    def room_features(self, room: Room) -> Iterable[str]:
        return (NS_MUC_REQUEST,)

    def config_fields(self, room: Room) -> Iterable[data_form.Field]:
        yield data_form.Field(
            "boolean",
            var="muc#roomconfig_allowinvites",
            label="Occupants may invite others",
            value=room.config.allow_invites,
        )

    def read_config(self, values: Mapping[str, object]) -> Mapping[str, object]:
        if "allowinvites" not in values:
            return {}
        return {"allow_invites": read_bool("allowinvites", values["allowinvites"])}

    def __init__(self, core: Core, moderation: Moderation) -> None:
        self._core = core
        self._moderation = moderation
        # (room, invitee bare) -> inviter's JID, newest last, bounded
        self._invited: OrderedDict[tuple[JID, str], JID] = OrderedDict()

    def on_request(self, message: domish.Element, context: Context, room: Room) -> None:
        x = child_ns(message, NS_MUC_USER, "x")
        if x is not None:
            invites = [c for c in x.elements() if c.name == "invite" and c.uri == NS_MUC_USER]
            declines = [c for c in x.elements() if c.name == "decline" and c.uri == NS_MUC_USER]
            if invites:
                self._invite(room, context.sender, invites[:MAX_INVITES])
                return
            if declines:
                self._decline(room, context.sender, declines[0])
                return
        form = _request_form(message)
        if form is not None:
            self._voice(room, context.sender, form)
            return
        raise errors.NotSupported("This request is not supported")

    # -- invitations

    def _invite(self, room: Room, sender: JID, invites: list[domish.Element]) -> None:
        inviter = room.require_occupant(sender)
        config = room.config
        if inviter.role == "visitor" or (not config.allow_invites and not inviter.is_moderator):
            raise errors.Forbidden("You may not invite others to this room")
        grants_membership = config.members_only and (
            config.allow_invites or inviter.affiliation in ("admin", "owner")
        )
        targets = [(_user_jid(i.getAttribute("to")), _reason(i)) for i in invites]
        for invitee, reason in targets:
            bare = invitee.userhost()
            if room.affiliation(invitee) == "outcast":
                raise errors.Forbidden("This user is banned from the room")
            if grants_membership and room.affiliation(invitee) == "none":
                self._core.rooms.set_affiliation(room, bare, "member")
            self._remember(room.jid, bare, sender)
            self._core.send(self._forwarded(room, invitee, "invite", sender.userhost(), reason))
            self._core.log.info(
                "invitation room={room} from={inviter} to={invitee}{member}",
                room=room.jid.full(),
                inviter=sender.userhost(),
                invitee=bare,
                member=" (now a member)" if grants_membership else "",
            )

    def _remember(self, room: JID, invitee: str, inviter: JID) -> None:
        key = (room, invitee)
        self._invited.pop(key, None)
        self._invited[key] = inviter
        while len(self._invited) > MAX_REMEMBERED:
            self._invited.popitem(last=False)

    def _decline(self, room: Room, sender: JID, decline: domish.Element) -> None:
        key = (room.jid, sender.userhost())
        inviter = self._invited.pop(key, None)
        if inviter is None:
            # No invitation we know of (forgotten at a restart, or none at all): a decline
            # only informs, so it is dropped rather than answered with an error.
            self._core.log.debug(
                "decline dropped room={room} from={user}: no invitation known",
                room=room.jid.full(),
                user=sender.userhost(),
            )
            return
        self._core.send(
            self._forwarded(room, inviter, "decline", sender.userhost(), _reason(decline))
        )

    def _forwarded(
        self, room: Room, to: JID, kind: str, origin: str, reason: str | None
    ) -> domish.Element:
        message = Stanza((None, "message"), attribs={"from": room.jid.full(), "to": to.full()})
        x = message.addElement((NS_MUC_USER, "x"))
        element = x.addElement(kind)
        element["from"] = origin
        if reason:
            element.addElement("reason", content=reason)
        if kind == "invite" and room.config.name:
            message.addElement("body", content=f"You are invited to {room.config.name}")
        return message

    # -- voice

    def _voice(self, room: Room, sender: JID, form: data_form.Form) -> None:
        occupant = room.require_occupant(sender)
        if form.formType == "submit" and "muc#request_allow" in form.fields:
            self._approve(room, occupant, form)
            return
        if occupant.role != "visitor":
            raise errors.BadRequest("Only visitors ask for voice")
        role = form.getValues().get("muc#role", "participant")
        if role != "participant":
            raise errors.NotSupported("Only voice (the participant role) can be requested")
        request = self._request_form(room, occupant)
        for viewer in room:
            if viewer.is_moderator:
                for session in viewer.sessions:
                    message = Stanza(
                        (None, "message"), attribs={"from": room.jid.full(), "to": session.full()}
                    )
                    message.addChild(request.toElement())
                    self._core.send(message)

    def _request_form(self, room: Room, occupant: Occupant) -> data_form.Form:
        return data_form.Form(
            "form",
            title="Voice request",
            instructions=[f"{occupant.nick} asks for voice in {room.jid.full()}"],
            formNamespace=NS_MUC_REQUEST,
            fields=[
                data_form.Field(
                    "list-single",
                    var="muc#role",
                    label="Requested role",
                    value="participant",
                    options=[data_form.Option("participant")],
                ),
                data_form.Field("jid-single", var="muc#jid", label="User", value=occupant.jid),
                data_form.Field(var="muc#roomnick", label="Nickname", value=occupant.nick),
                data_form.Field(
                    "boolean", var="muc#request_allow", label="Grant voice?", value=False
                ),
            ],
        )

    def _approve(self, room: Room, moderator: Occupant, form: data_form.Form) -> None:
        values = form.getValues()
        allow = values.get("muc#request_allow")
        if str(allow).lower() not in ("1", "true"):
            return  # declined: the visitor is not told (§8.6)
        nick = values.get("muc#roomnick")
        target = room.occupant(str(nick)) if nick else None
        if target is None:
            raise errors.NoSuchOccupant("No occupant with that nickname")
        if target.role != "visitor":
            return  # has voice already (another moderator was quicker)
        check_role_change(
            moderator.role, moderator.affiliation, target.affiliation, target.role, "participant"
        )
        self._moderation.apply_role(room, RoleChange(target, "participant", None), moderator)
