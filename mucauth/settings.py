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


@dataclass(frozen=True)
class HTTPAuthSettings:
    url: str
    timeout: float = 5.0
    scope: RoomScope = field(default_factory=RoomScope)
    authorization_header: Secret | None = None
    insecure: bool = False
    ca_file: str | None = None
    authorize_registration: bool = False
    pool_size: int = 10  # persistent connections per host
    cache_ttl: float = 0.0  # seconds; 0 = no decision cache


@dataclass(frozen=True)
class RefusalSettings:
    """How the MUC service answers a join it refuses: its part, whoever decided.

    Written in ``[muc_http_auth]`` (deny_condition, failure_condition, show_reason), where
    operators coming from Prosody's module look for them.
    """

    deny_condition: ErrorCondition = ErrorCondition("cancel", "forbidden")  # the gate said no
    failure_condition: ErrorCondition = ErrorCondition("wait", "service-unavailable")  # no answer
    show_reason: bool = False  # send the service's "error" text to the user


@dataclass(frozen=True)
class MUCSettings:
    service_name: str = "Chatrooms"
    history_size: int = 20  # messages kept per room and sent on join
    public_rooms: bool = True  # new rooms are listed in disco#items
    non_anonymous: bool = False  # True: every occupant sees real JIDs (status 100)
    max_nick_length: int = 64  # characters, after resourceprep
    max_room_name_length: int = 64  # characters of the node part
    max_occupants: int = 0  # per room; 0 = unlimited
    # Joins waiting for a decision (queued for a free check, or being checked): beyond these
    # a join is refused wait/resource-constraint. Bounds against abuse, far above normal use:
    # a user entering 50 bookmarked rooms at login, every user at once after a restart.
    max_pending_checks: int = 50_000  # service-wide
    max_pending_per_user: int = 200  # per bare JID
    queue_timeout: float = 30.0  # seconds a join may wait for a free check before refusal
    gate_nick_change: bool = True  # ask the gate again when an occupant changes nick


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class MetricsSettings:
    port: int | None = None
    interface: str = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    component: ComponentSettings
    http_auth: HTTPAuthSettings
    muc: MUCSettings = field(default_factory=MUCSettings)
    refusal: RefusalSettings = field(default_factory=RefusalSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
