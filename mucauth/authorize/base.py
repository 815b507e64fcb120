"""What the MUC service asks the gate, and what the gate answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twisted.internet.defer import Deferred, succeed
from twisted.words.protocols.jabber.jid import JID
from zope.interface import Interface, implementer

from mucauth.text import clean_text

MAX_REASON = 1024  # characters of a decision's reason

Outcome = Literal["allow", "deny", "error"]

# Why a check failed, for logs and metrics. "overload" is the service refusing to queue a check
# (a pending bound reached), "queue_timeout" giving up on one that waited too long for its turn.
# "cancelled" is the answer a check fires with when its caller gave up (the user left): a
# cancelled check never errbacks, and nobody acts on its answer or counts it as the service's.
# "service_down" is the answer given at once while the service is considered down (breaker.py).
ErrorKind = Literal[
    "cancelled",
    "timeout",
    "connection",
    "tls",
    "status",
    "redirect",
    "bad_json",
    "bad_answer",
    "too_large",
    "overload",
    "queue_timeout",
    "service_down",
    "internal",
]

# Which layer answered, for metrics and logs: the HTTP service, the decision cache, the scope
# (an ungated room), the MUC service's queue, or the breaker (the HTTP service is considered
# down). None: an authorizer that does not say (an embedder's own).
Source = Literal["http", "cache", "scope", "service", "breaker"]


@dataclass(frozen=True)
class JoinRequest:
    """One question to the gate.

    ``user`` is the full JID of the joining session (the HTTP contract sends its bare form),
    ``room`` the bare room JID, ``nick`` the requested nickname. ``action`` is ``"join"`` for a
    room entry, ``"register"`` for a jabber:iq:register request (authorize_registration) and
    ``"mam"`` for an archive query from someone not in the room (``nick`` is then empty), and
    ``"recheck"`` when an occupant is asked about again (the same GET as its join, never
    answered from a cache).

    Nothing of the stanza that asked is here (its id, its payload): the MUC keeps those, and
    the gate answers the question alone.
    """

    user: JID
    room: JID
    nick: str
    action: Literal["join", "register", "mam", "recheck"] = "join"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identical questions share this key (single-flight, caching)."""
        return (self.user.userhost(), self.room.userhost(), self.nick, self.action)


@dataclass(frozen=True)
class Decision:
    """The gate's answer. Only ``allow`` opens the door; ``error`` means "nobody could say".

    ``affiliation`` and ``role`` are the joiner's standing as the service granted it (issue 15,
    an extension of the contract): only an allow carries them, and None means the service
    named none, so the room decides as it would without them.
    """

    outcome: Outcome
    reason: str = ""
    kind: ErrorKind | None = None
    status: int | None = None  # the HTTP status, when an HTTP answer was received
    latency: float = 0.0  # seconds spent deciding
    # Not part of equality: the same answer is the same answer wherever it came from.
    source: Source | None = field(default=None, compare=False)
    # The joiner's standing when the service names it: an affiliation (owner, admin, member,
    # none) and a role (moderator, participant, visitor). interpret() admits no other value.
    affiliation: str | None = None
    role: str | None = None

    @classmethod
    def allow(cls, *, affiliation: str | None = None, role: str | None = None) -> Decision:
        """A yes, with the standing the service granted, if any."""
        if affiliation is None and role is None:
            # The common answer, without the keyword arguments' cost in the constructor.
            return cls("allow")
        return cls("allow", affiliation=affiliation, role=role)

    # A reason comes from outside (the service's JSON, an embedder's authorizer) and goes to
    # logs and, with show_reason, into a stanza: made safe for both here, whoever decided.
    @classmethod
    def deny(cls, reason: str = "") -> Decision:
        return cls("deny", clean_text(reason, MAX_REASON))

    @classmethod
    def error(cls, kind: ErrorKind, reason: str) -> Decision:
        return cls("error", clean_text(reason, MAX_REASON), kind)

    @classmethod
    def cancelled(cls) -> Decision:
        """What a check the caller cancelled fires with (see ``ErrorKind``)."""
        return cls("error", "the caller gave up", "cancelled")

    @property
    def is_cancelled(self) -> bool:
        return self.kind == "cancelled"

    @property
    def is_allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def is_denied(self) -> bool:
        return self.outcome == "deny"

    @property
    def is_error(self) -> bool:
        return self.outcome == "error"

    def with_details(
        self,
        *,
        status: int | None = None,
        latency: float | None = None,
        source: Source | None = None,
    ) -> Decision:
        # The constructor, not dataclasses.replace: replace() walks the fields and builds a
        # keyword dict first, several times the cost, once for every HTTP check.
        return Decision(
            self.outcome,
            self.reason,
            self.kind,
            self.status if status is None else status,
            self.latency if latency is None else latency,
            self.source if source is None else source,
            self.affiliation,
            self.role,
        )


class IJoinAuthorizer(Interface):
    def authorize(request: JoinRequest) -> Deferred[Decision]:  # type: ignore[misc]  # noqa: N805
        """Decide whether ``request`` may proceed.

        The Deferred always fires with a Decision and never errbacks: an unreachable or confused
        authority is ``Decision.error(...)``, so the room can say "try later" instead of crashing.
        Cancelling the Deferred (the user left while waiting) must be harmless.
        """


@implementer(IJoinAuthorizer)
@dataclass(frozen=True)
class StaticAuthorizer:
    """Admits a fixed set of bare JIDs: for embedding, tests and demos."""

    allowed: frozenset[str]
    reason: str = "not on the list"

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        if request.user.userhost() in self.allowed:
            return succeed(Decision.allow())
        return succeed(Decision.deny(self.reason))
