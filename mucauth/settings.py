"""The settings every part of mucauth is built from: frozen, validated, secrets masked.

``mucauth.config`` fills these from tap.conf; an embedder may build them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from twisted.words.protocols.jabber.jid import JID


class Secret:
    """A string that never shows itself in repr, str, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ErrorCondition:
    """An XMPP stanza error as ``type/condition`` (RFC 6120 section 8.3)."""

    type: str
    condition: str

    def __str__(self) -> str:
        return f"{self.type}/{self.condition}"


@dataclass(frozen=True)
class RoomScope:
    """Which rooms the gate applies to (enabled_for / disabled_for).

    ``rooms`` maps a user host, or ``"all"`` for every host, to nodeprepped room names.
    ``mode == "all"``: every room is gated and ``rooms`` is empty.
    """

    mode: Literal["all", "enabled", "disabled"] = "all"
    rooms: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentSettings:
    jid: JID
    secret: Secret
    host: str = "127.0.0.1"
    port: int = 5347
    reconnect_max_delay: float = 30.0
    # A process that finds its link holds no ejabberd domain_balancing slot closes it and tries
    # again standby_retry seconds later (mucauth.slots).
    standby: bool = False
    standby_retry: float = 2.0


@dataclass(frozen=True)
class HTTPAuthSettings:
    url: str
    timeout: float = 5.0
    scope: RoomScope = field(default_factory=RoomScope)
    authorization_header: Secret | None = None
    insecure: bool = False
    ca_file: str | None = None
    authorize_registration: bool = False
    # Checks asked at once, each on its own connection (kept for reuse). Sized so a few slow
    # rooms cannot hold every slot: 10 slots and 200 ms checks left 50 checks a second for all.
    pool_size: int = 50
    cache_ttl: float = 0.0  # seconds; 0 = no decision cache
    # Consecutive failures to reach the service (timeouts, refused or reset connections, 5xx)
    # after which it is considered down: joins are refused at once, one probe at a time is
    # let through every probe_interval seconds until one is answered. 0: never.
    down_after_failures: int = 5
    probe_interval: float = 1.0
    recheck_interval: float = 0.0  # seconds between re-checks of every occupant; 0 = never


@dataclass(frozen=True)
class RefusalSettings:
    """How the MUC service answers a join it refuses: its part, whoever decided.

    Written in ``[muc_http_auth]`` (deny_condition, failure_condition, show_reason), where
    operators coming from Prosody's module look for them.
    """

    deny_condition: ErrorCondition = ErrorCondition("cancel", "forbidden")  # the gate said no
    failure_condition: ErrorCondition = ErrorCondition("wait", "service-unavailable")  # no answer
    show_reason: bool = False  # send the service's "error" text to the user


ALLOW_PM = ("anyone", "participants", "moderators", "none")


@dataclass(frozen=True)
class RoomDefaults:
    """What a new room starts with ([rooms] in tap.conf); its owner may change each of them
    in the room's configuration form (muc#roomconfig), except ``max_history_length`` and
    ``tombstone_lifetime``."""

    persistent: bool = False  # kept in the store when empty and across restarts
    public: bool = True  # listed in disco#items
    non_anonymous: bool = False  # True: every occupant sees real JIDs (status 100)
    history_length: int = 20  # messages kept and sent on join
    max_history_length: int = 100  # the most an owner may set history_length to
    max_users: int = 0  # occupants at most; 0 = unlimited
    change_subject: bool = False  # occupants, not only moderators, may change the subject
    allow_pm: str = "anyone"  # who may send private messages: one of ALLOW_PM
    logging: bool = False  # messages archived (XEP-0313): kept for the archive
    members_only: bool = False  # only members, admins and owners may enter
    moderated: bool = False  # occupants without an affiliation join without voice
    allow_invites: bool = True  # occupants, not only moderators, may invite others
    # Seconds a destroyed persistent room's address answers joins `gone` (with the alternate
    # venue its owner gave) before it can be made anew; 0 = no tombstones. Not in the form.
    tombstone_lifetime: float = 30 * 86400.0


@dataclass(frozen=True)
class ArchiveSettings:
    """The message archive of rooms that log ([archive] in tap.conf; which rooms log is their
    ``enablelogging`` setting, [rooms] logging for new ones). Kept in the room store, so
    persistent rooms only: a temporary room's messages go with it."""

    max_age: float = 0.0  # seconds a message is kept; 0 = for ever
    max_messages: int = 0  # messages kept per room, the newest; 0 = no limit
    prune_interval: float = 3600.0  # seconds between retention passes (the first one too)
    max_page: int = 100  # the most messages one archive query returns (RSM <max/> above is cut)


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on what one client can make the service hold or write ([limits] in tap.conf).

    Every output is kept under ``max_stanza_size`` by construction: the inputs that reach an
    output are bounded here, with room to spare for the addresses and wrappers the service
    adds, and the way out (``muc/xml.py``) refuses anything larger all the same. The XMPP
    server closes a component link that sends a stanza over its own limit (Prosody: 512 KiB
    on the component port), which would empty every room.
    """

    max_stanza_size: int = 262_144  # bytes of any one stanza the service writes
    max_payload_size: int = 65_536  # bytes of a message's or presence's payload, as written
    max_depth: int = 32  # nesting levels of elements in a client's stanza
    max_subject_length: int = 4_096  # characters of a room subject
    max_title_length: int = 256  # characters of a room's name (muc#roomconfig_roomname)
    max_description_length: int = 2_048  # characters of a room's description
    max_rooms_per_user: int = 100  # rooms one bare JID may have created (persistent: stored)
    max_rooms: int = 100_000  # rooms the service holds or keeps at most
    disco_page_size: int = 100  # rooms per disco#items page (XEP-0059 may ask for fewer)
    max_archive_queries_per_user: int = 2  # archive queries of one bare JID being answered


@dataclass(frozen=True)
class MUCSettings:
    service_name: str = "Chatrooms"
    max_nick_length: int = 64  # characters, after resourceprep
    max_room_name_length: int = 64  # characters of the node part
    # Joins waiting for a decision (queued for a free check, or being checked): beyond these
    # a join is refused wait/resource-constraint. Bounds against abuse, far above normal use:
    # a user entering 50 bookmarked rooms at login, every user at once after a restart.
    max_pending_checks: int = 50_000  # service-wide
    max_pending_per_user: int = 200  # per bare JID
    queue_timeout: float = 30.0  # seconds a join may wait for a free check before refusal
    gate_nick_change: bool = True  # ask the gate again when an occupant changes nick
    # An occupant's session that has sent nothing for ping_after seconds is asked whether it
    # is still there (XEP-0199 ping), so no occupant outlives its session when its server
    # never tells the room it went away; 0 turns the check off. No answer within ping_timeout
    # (longer than servers keep a mobile session waiting to resume) removes it, status 333.
    ping_after: float = 900.0
    ping_timeout: float = 900.0
    # Seconds a stanza to a stored room waits for the room to be read from the store.
    load_timeout: float = 10.0
    rooms: RoomDefaults = field(default_factory=RoomDefaults)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class MetricsSettings:
    port: int | None = None
    interface: str = "127.0.0.1"


@dataclass(frozen=True)
class AdminAPISettings:
    """The admin HTTP API (revocation, re-checks, room lists); off unless ``port`` is set, and
    then only with a ``token`` (from ``token`` or ``token_file``), never logged."""

    port: int | None = None
    interface: str = "127.0.0.1"
    token: Secret | None = None


@dataclass(frozen=True)
class StorageSettings:
    """Where rooms that last are kept: a SQLite file, or a PostgreSQL server when ``url`` is set.

    ``path`` is relative to the working directory of the process (twistd's, unless
    ``--rundir``). ``password`` comes from ``password_file``; a password written in ``url`` is
    used as it is. Both are kept out of logs and messages.
    """

    # False: no store at all; every room lives in memory only, a persistent one until the
    # process stops (for a deployment that wants no database, and for the bench's baseline).
    enabled: bool = True
    path: str = "mucauth.sqlite"
    url: str | None = None
    password: Secret | None = None
    pool_size: int = 4  # PostgreSQL connections per process
    # Writes waiting for the database (while it is slow or away) before the oldest waiting
    # messages are dropped; room settings and affiliations are never dropped for this.
    max_pending_writes: int = 50_000

    @property
    def kind(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.url is None else "postgresql"


@dataclass(frozen=True)
class Settings:
    component: ComponentSettings
    http_auth: HTTPAuthSettings
    muc: MUCSettings = field(default_factory=MUCSettings)
    refusal: RefusalSettings = field(default_factory=RefusalSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    admin_api: AdminAPISettings = field(default_factory=AdminAPISettings)
