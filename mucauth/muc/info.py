"""What the service and its rooms say about themselves: disco#info/items and the owner form.

Built from ``wokkel.disco`` (identities, features, items) and ``wokkel.data_form`` (the
``muc#roominfo`` extension and the ``muc#roomconfig`` form). The service answers disco iqs itself
rather than through ``wokkel.disco.DiscoHandler``: the answer depends on room state (an unknown
room is ``item-not-found``) and the same handler must own ping (self-ping to an occupant JID).
"""

from __future__ import annotations

from typing import Any

from wokkel import data_form
from wokkel.disco import (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    DiscoFeature,
    DiscoIdentity,
    DiscoItem,
)
from wokkel.muc import NS_MUC, NS_MUC_CONFIG, NS_MUC_ROOMINFO
from wokkel.ping import NS_PING

from mucauth.muc.errors import BadRequest, ConfigNotAcceptable
from mucauth.muc.room import Room
from mucauth.muc.stanzas import NS_OCCUPANT_ID

NS_STABLE_ID = "http://jabber.org/protocol/muc#stable_id"

InfoItem = Any  # DiscoIdentity | DiscoFeature | data_form.Form; Wokkel is untyped


def service_info(name: str) -> list[InfoItem]:
    features = [NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_STABLE_ID, NS_OCCUPANT_ID]
    return [DiscoIdentity("conference", "text", name), *(DiscoFeature(f) for f in features)]


def room_info(room: Room) -> list[InfoItem]:
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


def public_rooms(rooms: list[Room]) -> list[DiscoItem]:
    return [
        DiscoItem(room.jid, name=room.config.name or room.jid.user)
        for room in sorted(rooms, key=lambda r: r.jid.full())
        if room.config.public
    ]


def config_form(room: Room) -> data_form.Form:
    """The owner's form. Only settings this service honours are editable."""
    config = room.config
    return data_form.Form(
        "form",
        title="Configuration of " + room.jid.full(),
        formNamespace=NS_MUC_CONFIG,
        fields=[
            data_form.Field(var="muc#roomconfig_roomname", label="Name", value=config.name),
            data_form.Field(
                var="muc#roomconfig_roomdesc", label="Description", value=config.description
            ),
            data_form.Field(
                "boolean", var="muc#roomconfig_publicroom", label="Listed", value=config.public
            ),
            data_form.Field(
                "boolean",
                var="muc#roomconfig_persistentroom",
                label="Persistent (not supported)",
                value=False,
            ),
            data_form.Field(
                "boolean",
                var="muc#roomconfig_changesubject",
                label="Occupants may change the subject",
                value=config.occupants_may_change_subject,
            ),
            data_form.Field(
                "list-single",
                var="muc#roomconfig_whois",
                label="Who may see real JIDs",
                value="anyone" if config.non_anonymous else "moderators",
                options=[data_form.Option("moderators"), data_form.Option("anyone")],
            ),
        ],
    )


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("1", "true"):
        return True
    if str(value).strip().lower() in ("0", "false"):
        return False
    raise BadRequest("Not a boolean")


def apply_config(room: Room, form: data_form.Form) -> None:
    """Apply a submitted ``muc#roomconfig`` form; fields we do not know are ignored.

    Validated before anything changes, so a bad form leaves the room as it was.
    """
    values = {name: field.value for name, field in form.fields.items()}
    changes: dict[str, object] = {}
    if "muc#roomconfig_roomname" in values:
        changes["name"] = str(values["muc#roomconfig_roomname"] or "")
    if "muc#roomconfig_roomdesc" in values:
        changes["description"] = str(values["muc#roomconfig_roomdesc"] or "")
    if "muc#roomconfig_publicroom" in values:
        changes["public"] = _bool(values["muc#roomconfig_publicroom"])
    if "muc#roomconfig_changesubject" in values:
        changes["occupants_may_change_subject"] = _bool(values["muc#roomconfig_changesubject"])
    if "muc#roomconfig_whois" in values:
        whois = values["muc#roomconfig_whois"]
        if whois not in ("anyone", "moderators"):
            raise BadRequest("muc#roomconfig_whois must be 'anyone' or 'moderators'")
        changes["non_anonymous"] = whois == "anyone"
    if "muc#roomconfig_persistentroom" in values and _bool(values["muc#roomconfig_persistentroom"]):
        raise ConfigNotAcceptable("Persistent rooms are not supported")
    for name, value in changes.items():
        setattr(room.config, name, value)
