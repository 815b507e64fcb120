"""The room owner's iqs (XEP-0045 §10): the ``muc#roomconfig`` form and its submission.

Only the settings this service honours are in the form; submitting a setting it cannot keep
(a persistent room) is refused rather than silently ignored.
"""

from __future__ import annotations

from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_CONFIG, NS_MUC_OWNER

from mucauth.muc.core import Context
from mucauth.muc.errors import BadRequest, ConfigNotAcceptable, NotSupported
from mucauth.muc.incoming import child_ns
from mucauth.muc.room import Room

__all__ = ["apply_config", "config_form", "owner_query"]


def owner_query(
    kind: str, payload: domish.Element, context: Context, room: Room
) -> domish.Element | None:
    """Answer a ``muc#owner`` get (the form) or set (a submitted or cancelled form)."""
    room.require_owner(context.sender)
    if kind == "get":
        query = domish.Element((NS_MUC_OWNER, "query"))
        query.addChild(config_form(room).toElement())
        return query
    if child_ns(payload, NS_MUC_OWNER, "destroy") is not None:
        raise NotSupported("Destroying rooms is not supported")
    form_element = child_ns(payload, data_form.NS_X_DATA, "x")
    if form_element is None:
        raise BadRequest("Expected a data form")
    form = data_form.Form.fromElement(form_element)
    if form.formType == "cancel":
        return None
    if form.formType != "submit":
        raise BadRequest("Expected a submitted form")
    apply_config(room, form)
    return None


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
