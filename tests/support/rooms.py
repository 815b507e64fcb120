"""What the end-to-end tests send a room as its owner or a moderator, and read back from it:
raw ``muc#owner`` / ``muc#admin`` iqs for the slixmpp clients' ``iq()``, and the item of a
joiner's self-presence."""

from __future__ import annotations

import re

from tests.support.xmpp import JoinResult

ADMIN = "http://jabber.org/protocol/muc#admin"
OWNER = "http://jabber.org/protocol/muc#owner"
USER = "http://jabber.org/protocol/muc#user"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"


def config_iq(room: str, **fields: str) -> str:
    """An owner's muc#roomconfig submission: ``persistentroom="1"`` and so on."""
    inner = f"<field var='FORM_TYPE'><value>{ROOMCONFIG}</value></field>"
    for name, value in fields.items():
        inner += f"<field var='muc#roomconfig_{name}'><value>{value}</value></field>"
    return (
        f"<iq type='set' to='{room}'><query xmlns='{OWNER}'>"
        f"<x xmlns='jabber:x:data' type='submit'>{inner}</x></query></iq>"
    )


def admin_iq(room: str, *items: str) -> str:
    """A muc#admin set with these ``<item/>`` elements."""
    return f"<iq type='set' to='{room}'><query xmlns='{ADMIN}'>{''.join(items)}</query></iq>"


def is_result(reply: str) -> bool:
    return re.search(r"type=['\"]result['\"]", reply) is not None


def self_item(result: JoinResult) -> tuple[str | None, str | None]:
    """(affiliation, role) of the joiner's self-presence (status 110)."""
    for presence in result.presences:
        if 110 in presence.status_codes:
            affiliation = re.search(r"affiliation=['\"](\w+)['\"]", presence.xml)
            role = re.search(r"role=['\"](\w+)['\"]", presence.xml)
            return (
                affiliation.group(1) if affiliation else None,
                role.group(1) if role else None,
            )
    return None, None
