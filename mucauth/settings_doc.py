"""What every tap.conf key means, for the generated configuration reference in docs/.

Which keys exist is ``mucauth.config.SECTIONS``; their defaults are the fields of the
dataclasses in ``mucauth.settings``. This module adds only the words: one line per key in
``DESCRIPTIONS``. The docs are generated from the three together, so a key the reader can set
is a key the code reads, with the default the code uses; ``tests/test_settings_doc.py`` fails
when a key has no description here, or a description names a key the code does not read.

A new key: add it to ``SECTIONS`` (or to a settings dataclass), then one entry below, in the
order the reference should list it. ``SHOWN_DEFAULTS`` is only for keys whose default is not a
dataclass field (files holding a secret, the scope lists) or reads better as written in tap.conf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from mucauth.settings import (
    AdminAPISettings,
    ArchiveSettings,
    ComponentSettings,
    ErrorCondition,
    HTTPAuthSettings,
    LimitSettings,
    LogSettings,
    MetricsSettings,
    MUCSettings,
    RefusalSettings,
    RoomDefaults,
    StorageSettings,
)

__all__ = [
    "DESCRIPTIONS",
    "SECTION_INTROS",
    "default_text",
    "missing_descriptions",
    "read_keys",
    "reference_rst",
    "unknown_descriptions",
]

# Where each section's defaults live, in the order fields are looked up.
SECTION_SETTINGS: Mapping[str, tuple[type, ...]] = {
    "component": (ComponentSettings,),
    "muc_http_auth": (HTTPAuthSettings, RefusalSettings),
    "muc": (MUCSettings,),
    "rooms": (RoomDefaults,),
    "archive": (ArchiveSettings,),
    "limits": (LimitSettings,),
    "storage": (StorageSettings,),
    "log": (LogSettings,),
    "metrics": (MetricsSettings,),
    "admin_api": (AdminAPISettings,),
}

REQUIRED = "(required)"
NOT_SET = "(not set)"

SECTION_INTROS: Mapping[str, str] = {
    "component": "How mucauth reaches the XMPP server's component listener (XEP-0114). Required.",
    "muc_http_auth": (
        "The authorization service and how refusals are answered. Required. Every key may also"
        " be written with Prosody's prefix (``muc_http_auth_url``, ``muc_http_auth_timeout``,"
        " ...); one key under both names is an error."
    ),
    "muc": "The service as a whole: names, bounds on waiting joins, liveness checks.",
    "rooms": (
        "What a new room starts with. Its owner may change most of them in the room's"
        " configuration form (``muc#roomconfig``)."
    ),
    "archive": "The message archive (XEP-0313) of persistent rooms that log.",
    "limits": (
        "Bounds on what one client can make the service hold or write. Every value is a whole"
        " number of at least 1."
    ),
    "storage": (
        "Where rooms that last are kept: a SQLite file by default, or PostgreSQL when ``url``"
        " is set."
    ),
    "log": "What is logged, and how.",
    "metrics": "The Prometheus endpoint. Off unless ``port`` is set.",
    "admin_api": "The admin HTTP API. Off unless ``port`` is set, and then a token is required.",
}

SHOWN_DEFAULTS: Mapping[tuple[str, str], str] = {
    ("component", "secret_file"): NOT_SET,
    ("muc_http_auth", "enabled_for"): "(every room is gated)",
    ("muc_http_auth", "disabled_for"): NOT_SET,
    ("muc_http_auth", "authorization_header_file"): NOT_SET,
    ("admin_api", "token"): "(required with ``port``)",
    ("admin_api", "token_file"): NOT_SET,
    ("storage", "password_file"): NOT_SET,
    ("archive", "prune_interval"): "``1h``",
    ("rooms", "tombstone_lifetime"): "``30d``",
}

DESCRIPTIONS: Mapping[str, Mapping[str, str]] = {
    "component": {
        "jid": (
            "The component's domain as the XMPP server knows it, e.g. ``rooms.example.org``:"
            " a bare domain, no ``@`` and no ``/``."
        ),
        "host": "Address of the XMPP server's component listener.",
        "port": "Port of that listener.",
        "secret": "The shared component secret. Never logged.",
        "secret_file": (
            "A file whose one line is the secret (a trailing newline is ignored). Set"
            " ``secret`` or ``secret_file``, not both."
        ),
        "reconnect_max_delay": (
            "Longest wait, in seconds, between two attempts to reach a server that is away."
            " Waits grow from 1 s; a link that was up for a while and drops is retried at once."
        ),
        "standby": (
            "For N+1 processes behind ejabberd's ``domain_balancing`` (``component_number: N``):"
            " a process whose link gets no slot (every slot is held) closes it and connects again"
            " every ``standby_retry`` seconds until it gets one, e.g. the slot of a process that"
            " died, and then serves that slot's rooms. A link that holds a slot is never dropped."
            " Off: a process without a slot only logs a warning."
        ),
        "standby_retry": (
            "Seconds a standby waits, after finding no free slot, before it connects again."
        ),
    },
    "muc_http_auth": {
        "url": (
            "The service's ``http://`` or ``https://`` URL; ``userJID``, ``mucJID`` and"
            " ``nickname`` are added to its query string."
        ),
        "timeout": (
            "Seconds for the whole request, connecting included, to the last byte of the"
            " answer. No answer in time refuses the join."
        ),
        "enabled_for": (
            "Only these rooms are gated: room names, or lines ``host: room room`` keyed by the"
            " user's server (``all`` for every server)."
        ),
        "disabled_for": (
            "Every room except these is gated; same forms as ``enabled_for``. Set at most one"
            " of the two."
        ),
        "authorization_header": (
            "Value of the ``Authorization`` header sent with each request, e.g."
            " ``Bearer ...``. Never logged."
        ),
        "authorization_header_file": (
            "A file holding that value on one line. Set at most one of the two."
        ),
        "insecure": (
            "Skip TLS certificate and host name checks. For development only; logged as a"
            " warning at start-up."
        ),
        "ca_file": "A PEM file of certificates to trust, for a service with a private CA.",
        "deny_condition": (
            "The XMPP error a join the service refuses gets, as ``type/condition`` or a bare"
            " condition (``auth/not-authorized`` is what Prosody's module sends)."
        ),
        "failure_condition": (
            "The XMPP error a join gets when the service fails: down, slow, or an answer not"
            " understood."
        ),
        "show_reason": (
            "Send the service's ``error`` text to the refused user instead of a fixed sentence."
        ),
        "authorize_registration": (
            "Also ask the service before answering a registration request"
            " (``jabber:iq:register``) to a room."
        ),
        "pool_size": (
            "Checks asked of the service at once, each on its own persistent connection; the"
            " rest wait in the join queue. Enough that a few slow rooms cannot hold every slot."
        ),
        "cache_ttl": (
            "Seconds an answer is reused for the same user, room and nickname; ``0`` asks"
            " every time."
        ),
        "recheck_interval": (
            "Seconds between re-checks of every occupant; only a clear ``allowed: false``"
            " removes one. ``0`` never re-checks."
        ),
        "down_after_failures": (
            "Checks in a row that fail to reach the service (timeout, connection, TLS, 5xx)"
            " after which it is considered down: joins are refused at once while one probe at a"
            " time goes through. ``0`` never."
        ),
        "probe_interval": "Seconds between probes while the service is considered down.",
    },
    "muc": {
        "service_name": "The service's name in service discovery.",
        "max_nick_length": "Longest nickname, in characters.",
        "max_room_name_length": "Longest room name (the part before the ``@``), in characters.",
        "max_pending_checks": (
            "Joins waiting for a decision, service-wide (queued or being checked); one more is"
            " refused ``wait/resource-constraint``."
        ),
        "max_pending_per_user": "The same bound for one user (bare JID).",
        "queue_timeout": (
            "Seconds a join may wait for a free check before it is refused"
            " ``wait/resource-constraint``."
        ),
        "gate_nick_change": (
            "Ask the service again when an occupant changes nickname; ``false`` lets renames"
            " through unasked."
        ),
        "ping_after": (
            "Seconds an occupant's session may stay silent before it is pinged (XEP-0199) to"
            " check it is still there; ``0`` turns the check off."
        ),
        "ping_timeout": (
            "Seconds without an answer to that ping before the occupant is removed (status 333)."
        ),
        "load_timeout": (
            "Seconds a stanza to a stored room waits for the room to be read from the store;"
            " past that it is refused ``wait/service-unavailable``."
        ),
    },
    "rooms": {
        "persistent": ("The room outlives its last occupant and a restart, kept in ``[storage]``."),
        "public": "Listed in the room list (disco#items).",
        "non_anonymous": (
            "Every occupant sees the others' real JIDs (otherwise only moderators do)."
        ),
        "history_length": "Messages kept and sent to a user who joins.",
        "max_history_length": (
            "The most an owner may set ``history_length`` to (not in the room's form)."
        ),
        "max_users": "Occupants at most; ``0`` means no limit.",
        "change_subject": "Occupants, not only moderators, may change the subject.",
        "allow_pm": (
            "Who may send private messages: ``anyone``, ``participants``, ``moderators`` or"
            " ``none``."
        ),
        "logging": "A persistent room archives every message (XEP-0313).",
        "members_only": "Only members, admins and owners may enter.",
        "moderated": "Occupants without an affiliation join without voice.",
        "allow_invites": "Occupants, not only moderators, may invite others.",
        "tombstone_lifetime": (
            "How long a destroyed persistent room's address answers joins ``gone`` (with the"
            " alternate venue its owner gave) before it can be made anew: seconds or a number"
            " with ``s``, ``m``, ``h``, ``d``, ``w``; ``0``: no tombstones. Not in the form."
        ),
    },
    "archive": {
        "max_age": (
            "How long a message is kept: seconds, or a number with ``s``, ``m``, ``h``, ``d``"
            " or ``w`` (``30d``); ``0`` keeps it for ever."
        ),
        "max_messages": "Messages kept per room, the newest; ``0`` means no limit.",
        "prune_interval": (
            "How often expired messages are removed, in the background; same units as ``max_age``."
        ),
        "max_page": (
            "The most messages one archive query returns; a larger ``<max/>`` is cut to it."
        ),
    },
    "limits": {
        "max_stanza_size": (
            "Bytes of any stanza the service writes; keep it under the XMPP server's component"
            " limit (Prosody: 512 KiB)."
        ),
        "max_payload_size": (
            "Bytes of a client stanza's payload as the service would write it; at least 16384"
            " below ``max_stanza_size``."
        ),
        "max_depth": "Nesting levels of elements in a client's stanza.",
        "max_subject_length": "Characters of a room's subject.",
        "max_title_length": "Characters of a room's name.",
        "max_description_length": "Characters of a room's description.",
        "max_rooms_per_user": "Rooms one user (bare JID) may have created.",
        "max_rooms": "Rooms the service holds or keeps in all.",
        "disco_page_size": "Rooms per disco#items page (XEP-0059).",
        "max_archive_queries_per_user": "Archive queries of one user answered at once.",
    },
    "storage": {
        "enabled": (
            "``no``: no store at all; every room lives in memory only, a persistent one until"
            " mucauth stops."
        ),
        "path": (
            "The SQLite file, created if missing; relative to the process's working directory."
        ),
        "url": (
            "A PostgreSQL database instead, ``postgresql://user@host:port/database``. Set"
            " ``path`` or ``url``, not both."
        ),
        "password_file": "A file whose one line is the database password, for a ``url``.",
        "pool_size": "PostgreSQL connections each process keeps open.",
        "max_pending_writes": (
            "Writes that may wait for a slow or away database; past that the oldest waiting"
            " messages are dropped (room settings and affiliations never are)."
        ),
    },
    "log": {
        "level": "Lowest level logged: ``debug``, ``info``, ``warn`` or ``error``.",
        "format": "``text``: one readable line per event; ``json``: one JSON object per line.",
    },
    "metrics": {
        "port": "Serve Prometheus metrics on this port.",
        "interface": "The address the metrics endpoint listens on.",
    },
    "admin_api": {
        "port": "Serve the admin API on this port.",
        "interface": "The address the admin API listens on.",
        "token": (
            "What requests carry as ``Authorization: Bearer <token>``; at least 16 characters."
            " Never logged."
        ),
        "token_file": "A file whose one line is the token. Set ``token`` or ``token_file``.",
    },
}


def read_keys() -> dict[str, list[str]]:
    """Every key the configuration reads, by section, as ``mucauth.config`` defines them."""
    from mucauth.config import OLD_ROOM_KEYS, SECTIONS

    return {
        section: sorted(k for k in keys if not (section == "muc" and k in OLD_ROOM_KEYS))
        for section, keys in SECTIONS.items()
    }


def missing_descriptions() -> list[str]:
    """``[section] key`` for every key read that has no description."""
    return [
        f"[{section}] {key}"
        for section, keys in read_keys().items()
        for key in keys
        if key not in DESCRIPTIONS.get(section, {})
    ]


def unknown_descriptions() -> list[str]:
    """``[section] key`` for every description of a key the configuration does not read."""
    read = read_keys()
    return [
        f"[{section}] {key}"
        for section, keys in DESCRIPTIONS.items()
        for key in keys
        if key not in read.get(section, ())
    ]


def _ini(value: Any) -> str:
    """A default as it would be written in tap.conf."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, ErrorCondition):
        return str(value)
    return str(value)


def default_text(section: str, key: str) -> str:
    """The default of ``[section] key`` as reStructuredText, from the settings dataclasses."""
    shown = SHOWN_DEFAULTS.get((section, key))
    if shown is not None:
        return shown
    for cls in SECTION_SETTINGS.get(section, ()):
        for f in dataclasses.fields(cls):
            if f.name != key:
                continue
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                return REQUIRED
            return NOT_SET if value is None else f"``{_ini(value)}``"
    return NOT_SET


def _keys_in_order(section: str) -> Iterator[str]:
    read = read_keys().get(section, [])
    described = list(DESCRIPTIONS.get(section, {}))
    yield from (k for k in described if k in read)
    yield from (k for k in read if k not in described)


def reference_rst() -> str:
    """The configuration reference: one table per section, every key the code reads."""
    from mucauth.config import OLD_ROOM_KEYS, SECTIONS

    lines: list[str] = []
    for section in SECTIONS:
        title = f"``[{section}]``"
        lines += [f".. _config-{section}:", "", title, "-" * len(title), ""]
        intro = SECTION_INTROS.get(section)
        if intro:
            lines += [intro, ""]
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 25 20 55",
            "",
            "   * - Key",
            "     - Default",
            "     - Meaning",
        ]
        for key in _keys_in_order(section):
            text = DESCRIPTIONS.get(section, {}).get(key, "(no description yet)")
            lines += [
                f"   * - ``{key}``",
                f"     - {default_text(section, key)}",
                f"     - {text}",
            ]
        lines.append("")
        if section == "muc":
            old = ", ".join(
                f"``{o}`` (now ``[rooms] {n}``)" for o, n in sorted(OLD_ROOM_KEYS.items())
            )
            lines += [f"Still read here from earlier versions: {old}; not both places.", ""]
    return "\n".join(lines)
