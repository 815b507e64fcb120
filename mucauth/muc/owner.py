"""The room owner's iqs (XEP-0045 §10): the ``muc#roomconfig`` form, its submission, and
destroying the room.

Only the settings this service honours are in the form. A submitted form is checked whole
before anything changes, so a bad field leaves the room as it was; what it changed is handed
back for the service to tell the room and the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_CONFIG, NS_MUC_OWNER

from mucauth.muc import errors
from mucauth.muc.errors import BadRequest, ConfigNotAcceptable
from mucauth.muc.feature import Feature
from mucauth.muc.incoming import child_ns
from mucauth.muc.jids import parse_jid
from mucauth.muc.limits import check_text_length
from mucauth.muc.room import Affiliation, Room
from mucauth.muc.stanzas import (
    CONFIGURATION_CHANGED,
    LOGGING_DISABLED,
    LOGGING_ENABLED,
    NON_ANONYMOUS,
    SEMI_ANONYMOUS,
)
from mucauth.settings import ALLOW_PM, LimitSettings, RoomDefaults

__all__ = ["ConfigChange", "Destroy", "apply_config", "config_form", "owner_request", "read_bool"]

F = "muc#roomconfig_"
_MAX_USERS_OPTIONS = ("10", "20", "30", "50", "100", "none")

# Every option of a list-single field has a label: Converse.js shows bare values as blank
# choices.
_ALLOW_PM_LABELS = {
    "anyone": "Anyone",
    "participants": "Participants",
    "moderators": "Moderators only",
    "none": "Nobody",
}
_WHOIS_LABELS = {"moderators": "Moderators only", "anyone": "Anyone"}


def _options(labels: dict[str, str]) -> list[data_form.Option]:
    return [data_form.Option(value, label) for value, label in labels.items()]


def _max_users_label(value: str) -> str:
    return "No limit" if value == "none" else value


@dataclass(frozen=True)
class Destroy:
    """The owner asked to destroy the room (§10.9)."""

    reason: str | None
    alternate: JID | None


@dataclass
class ConfigChange:
    """What a submitted form changed that others must hear of."""

    was_persistent: bool
    # (bare JID, new affiliation) for each owner or admin added or removed
    affiliations: list[tuple[str, Affiliation]] = field(default_factory=list)
    was_members_only: bool = False
    was_moderated: bool = False
    was_logging: bool = False
    was_non_anonymous: bool = False
    # Anything in the room's configuration or its owner and admin lists differs now.
    changed: bool = False

    def status_codes(self, room: Room) -> tuple[int, ...]:
        """The codes of the notice occupants get (XEP-0045 §10.2.1): 104, so clients read the
        room's features again, and 170-173 for what the form changed about their privacy.
        None when the submission changed nothing."""
        if not self.changed:
            return ()
        config = room.config
        codes = [CONFIGURATION_CHANGED]
        if config.logging != self.was_logging:
            codes.append(LOGGING_ENABLED if config.logging else LOGGING_DISABLED)
        if config.non_anonymous != self.was_non_anonymous:
            codes.append(NON_ANONYMOUS if config.non_anonymous else SEMI_ANONYMOUS)
        return tuple(codes)


def owner_request(
    kind: str,
    payload: domish.Element,
    room: Room,
    sender: JID,
    defaults: RoomDefaults,
    limits: LimitSettings = LimitSettings(),  # noqa: B008  (frozen, shared safely)
    features: Sequence[Feature] = (),
) -> domish.Element | ConfigChange | Destroy | None:
    """A ``muc#owner`` get (the form, returned as the result payload) or set (a submitted or
    cancelled form, or a destroy request); ``features`` add their own fields to the form."""
    room.require_owner(sender)
    if kind == "get":
        query = domish.Element((NS_MUC_OWNER, "query"))
        extra = [f for feature in features for f in feature.config_fields(room)]
        query.addChild(config_form(room, defaults, extra).toElement())
        return query
    destroy = child_ns(payload, NS_MUC_OWNER, "destroy")
    if destroy is not None:
        return _destroy(destroy)
    form_element = child_ns(payload, data_form.NS_X_DATA, "x")
    if form_element is None:
        raise BadRequest("Expected a data form")
    form = data_form.Form.fromElement(form_element)
    if form.formType == "cancel":
        return None
    if form.formType != "submit":
        raise BadRequest("Expected a submitted form")
    return apply_config(room, form, defaults, limits, features)


def _destroy(element: domish.Element) -> Destroy:
    alternate = None
    raw = element.getAttribute("jid")
    if raw:
        try:
            alternate = parse_jid(raw)
        except InvalidFormat:
            raise BadRequest("The alternate venue is not a JID") from None
    reason = None
    for child in element.elements():
        if child.name == "reason":
            reason = str(child).strip() or None
    return Destroy(reason, alternate)


# The form's boolean fields: field name -> (RoomConfig attribute, label). One table for the form
# and for reading it back.
_BOOLEANS: dict[str, tuple[str, str]] = {
    "persistentroom": ("persistent", "Keep the room when it is empty, and across restarts"),
    "publicroom": ("public", "Listed"),
    "membersonly": ("members_only", "Only members may enter"),
    "moderatedroom": ("moderated", "Only occupants with voice may speak"),
    "changesubject": ("occupants_may_change_subject", "Occupants may change the subject"),
}


def config_form(
    room: Room, defaults: RoomDefaults, extra: Iterable[data_form.Field] = ()
) -> data_form.Form:
    """The owner's form with the room's values; ``extra``: the features' own fields."""
    config = room.config

    def boolean(name: str) -> data_form.Field:
        attribute, label = _BOOLEANS[name]
        return data_form.Field(
            "boolean", var=F + name, label=label, value=getattr(config, attribute)
        )

    max_users = str(config.max_occupants) if config.max_occupants else "none"
    options = list(_MAX_USERS_OPTIONS)
    if max_users not in options:
        options.insert(-1, max_users)
    return data_form.Form(
        "form",
        title="Configuration of " + room.jid.full(),
        formNamespace=NS_MUC_CONFIG,
        fields=[
            data_form.Field(var=F + "roomname", label="Name", value=config.name),
            data_form.Field(var=F + "roomdesc", label="Description", value=config.description),
            boolean("persistentroom"),
            boolean("publicroom"),
            boolean("membersonly"),
            boolean("moderatedroom"),
            boolean("changesubject"),
            data_form.Field(
                "list-single",
                var=F + "allowpm",
                label="Who may send private messages",
                value=config.allow_pm,
                options=_options({value: _ALLOW_PM_LABELS[value] for value in ALLOW_PM}),
            ),
            data_form.Field(
                "list-single",
                var=F + "whois",
                label="Who may see real JIDs",
                value="anyone" if config.non_anonymous else "moderators",
                options=_options(_WHOIS_LABELS),
            ),
            data_form.Field(
                "text-single",
                var=F + "historylength",
                label=f"Messages sent to joiners (at most {defaults.max_history_length})",
                value=str(config.history_length),
            ),
            data_form.Field(
                "list-single",
                var=F + "maxusers",
                label="Occupants at most",
                value=max_users,
                options=_options({o: _max_users_label(o) for o in options}),
            ),
            *extra,
            data_form.Field(
                "jid-multi",
                var=F + "roomowners",
                label="Owners",
                values=[JID(j) for j in room.with_affiliation("owner")],
            ),
            data_form.Field(
                "jid-multi",
                var=F + "roomadmins",
                label="Admins",
                values=[JID(j) for j in room.with_affiliation("admin")],
            ),
        ],
    )


def read_bool(name: str, value: object) -> bool:
    """A submitted boolean field's value (``name`` without ``muc#roomconfig_``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise BadRequest(f"{F}{name} is not a boolean")


def _int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadRequest(f"{F}{name} is not a number") from None
    if number < low or (high is not None and number > high):
        upper = f" to {high}" if high is not None else " or more"
        raise ConfigNotAcceptable(f"{F}{name} must be {low}{upper}")
    return number


def _bare_jids(name: str, values: list[object]) -> list[str]:
    found = []
    for value in values:
        text = value.full() if isinstance(value, JID) else str(value).strip()
        if not text:
            continue
        try:
            jid = parse_jid(text)
        except InvalidFormat:
            raise errors.BadRequest(f"{F}{name}: not a JID: {text[:100]}") from None
        if jid.user is None:
            raise ConfigNotAcceptable(f"{F}{name}: not a user's JID: {text[:100]}")
        found.append(jid.userhost())
    return found


def apply_config(
    room: Room,
    form: data_form.Form,
    defaults: RoomDefaults,
    limits: LimitSettings = LimitSettings(),  # noqa: B008  (frozen, shared safely)
    features: Sequence[Feature] = (),
) -> ConfigChange:
    """Apply a submitted form; fields this service does not know are ignored."""
    fields = {name[len(F) :]: f for name, f in form.fields.items() if name.startswith(F)}
    values = {name: f.value for name, f in fields.items()}
    changes: dict[str, object] = {}
    if "roomname" in values:
        name = str(values["roomname"] or "")
        check_text_length("room name", name, limits.max_title_length)
        changes["name"] = name
    if "roomdesc" in values:
        description = str(values["roomdesc"] or "")
        check_text_length("description", description, limits.max_description_length)
        changes["description"] = description
    for name, (attribute, _label) in _BOOLEANS.items():
        if name in values:
            changes[attribute] = read_bool(name, values[name])
    if "whois" in values:
        whois = values["whois"]
        if whois not in ("anyone", "moderators"):
            raise BadRequest(f"{F}whois must be 'anyone' or 'moderators'")
        changes["non_anonymous"] = whois == "anyone"
    if "allowpm" in values:
        if values["allowpm"] not in ALLOW_PM:
            raise BadRequest(f"{F}allowpm must be one of {', '.join(ALLOW_PM)}")
        changes["allow_pm"] = values["allowpm"]
    if "historylength" in values:
        changes["history_length"] = _int(
            "historylength", values["historylength"], low=0, high=defaults.max_history_length
        )
    if "maxusers" in values:
        raw = str(values["maxusers"] or "").strip().lower()
        changes["max_occupants"] = 0 if raw in ("", "none", "0") else _int("maxusers", raw, low=1)
    for feature in features:
        changes.update(feature.read_config(values))
    affiliations = _affiliation_changes(room, fields)
    config = room.config
    before = replace(config)
    change = ConfigChange(
        config.persistent,
        affiliations,
        config.members_only,
        config.moderated,
        was_logging=config.logging,
        was_non_anonymous=config.non_anonymous,
    )
    for bare, affiliation in affiliations:
        room.set_affiliation(bare, affiliation)
    history_length = changes.pop("history_length", None)
    for name, value in changes.items():
        setattr(room.config, name, value)
    if isinstance(history_length, int):
        room.set_history_length(history_length)
    change.changed = bool(affiliations) or room.config != before
    return change


def _affiliation_changes(
    room: Room, fields: dict[str, data_form.Field]
) -> list[tuple[str, Affiliation]]:
    """The owner and admin lists as submitted, as changes to make (checked, not yet made)."""
    wanted: dict[str, Affiliation] = {}
    listed: list[Affiliation] = []
    for name, affiliation in (("roomowners", "owner"), ("roomadmins", "admin")):
        f = fields.get(name)
        if f is None:
            continue
        listed.append(affiliation)  # type: ignore[arg-type]
        for bare in _bare_jids(name, list(f.values)):
            wanted.setdefault(bare, affiliation)  # type: ignore[arg-type]  # owner wins
    if not listed:
        return []
    current = room.affiliations
    if "owner" in listed and "owner" not in wanted.values():
        raise errors.NoOwnerLeft()
    if "owner" not in listed:
        # Only admins listed: owners stay whatever the admin list says of them.
        wanted = {b: a for b, a in wanted.items() if current.get(b) != "owner"}
    result: list[tuple[str, Affiliation]] = []
    for bare, affiliation in current.items():
        if affiliation in listed and bare not in wanted:
            result.append((bare, "none"))
    for bare, affiliation in sorted(wanted.items()):
        if current.get(bare) != affiliation:
            result.append((bare, affiliation))
    return result
