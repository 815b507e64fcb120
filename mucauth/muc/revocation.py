"""The web application stays in charge after the join: revocation and re-checks.

``revoke`` takes a user out of rooms now, at the application's word (the admin API's
``/v1/revoke``): every session leaves with status 307 and the reason, the others see the
kick, and the user's remembered allow answers are forgotten, so a rejoin asks the HTTP
service again.

``recheck`` asks about occupants again, with the same GET as their join, through the join
queue (so the HTTP pool and the per-user bounds hold, and joins keep their turn). Only a clear
no removes anyone: an error answer (the service down, a timeout, a bad answer) keeps every
occupant where they are, since failing closed is for the door, never a reason to empty the
rooms during an outage. A yes applies the affiliation and role the new answer names, if any.

``Rechecker`` does the same in the background every ``recheck_interval`` seconds, spread over
the period: a steady trickle of checks, never a burst of every occupant at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize.base import Decision, JoinRequest
from mucauth.muc import stanzas
from mucauth.muc.core import Context, Core
from mucauth.muc.incoming import Address
from mucauth.muc.join import JoinGate
from mucauth.muc.presence import Presences
from mucauth.muc.room import Affiliation, Occupant, Role, Room

__all__ = ["REVOKED_TEXT", "RecheckResult", "Rechecker", "Revocations"]

REVOKED_TEXT = "You are no longer allowed in this room"
_TICK = 1.0  # seconds between the periodic re-checker's hand-outs


@dataclass(frozen=True)
class RecheckResult:
    checked: int = 0  # occupants asked about
    removed: int = 0  # of them, removed on a clear no
    kept_on_error: int = 0  # of them, kept because the answer was an error


# Called with the bare user and room (None: every room) whose remembered answers must go.
Forget = Callable[[str, str | None], None]


class Revocations:
    def __init__(
        self,
        core: Core,
        gate: JoinGate,
        presences: Presences,
        *,
        forget: Forget | None = None,
        on_removed: Callable[[str, int], None] | None = None,
    ) -> None:
        """``forget`` drops remembered allow answers (the decision cache's); ``on_removed`` hears
        how many occupants each cause (``revoke``, ``recheck``) removed: the metrics hook."""
        self._core = core
        self._gate = gate
        self._presences = presences
        self._forget = forget
        self._on_removed = on_removed

    # -- revocation

    def revoke(self, user: str, room: str | None = None, reason: str | None = None) -> int:
        """Remove bare JID ``user`` from ``room`` (a bare room JID) or from every room; how
        many occupants were removed (one per room it was in, whatever its sessions)."""
        core = self._core
        rooms = [core.rooms.get(JID(room))] if room is not None else list(core.rooms.values())
        removed = 0
        for each in rooms:
            if each is None:
                continue
            for occupant in [o for o in each if o.bare == user]:
                self._remove(each, occupant, reason or REVOKED_TEXT, "revoke")
                removed += 1
            # A join of the user still being decided would let them in after the revocation.
            for key, pending in list(self._gate.pending.items()):
                if key[1] == each.jid and key[0].userhost() == user and key[2] == "join":
                    self._gate.cancel(pending)
        self._drop_answers(user, room)
        self._count("revoke", removed)
        return removed

    def _remove(self, room: Room, occupant: Occupant, reason: str, cause: str) -> None:
        self._core.log.info(
            "{cause} removed user={user} room={room} nick={nick} reason={reason}",
            cause=cause,
            user=occupant.bare,
            room=room.jid.full(),
            nick=occupant.nick,
            reason=reason,
            mucauth_event=cause,
        )
        self._presences.remove_occupant(room, occupant, (stanzas.KICKED,), reason=reason)

    def _drop_answers(self, user: str, room: str | None) -> None:
        if self._forget is not None:
            try:
                self._forget(user, room)
            except Exception:
                self._core.log.failure("forgetting remembered answers failed")

    def _count(self, cause: str, removed: int) -> None:
        if self._on_removed is not None and removed:
            try:
                self._on_removed(cause, removed)
            except Exception:
                self._core.log.failure("on_removed hook failed")

    # -- re-checks

    def occupants(
        self, room: str | None = None, user: str | None = None
    ) -> list[tuple[Room, Occupant]]:
        """Every occupant of ``room`` (or all rooms) who is ``user`` (or anyone)."""
        rooms = self._core.rooms
        chosen = [rooms.get(JID(room))] if room is not None else list(rooms.values())
        return [
            (each, occupant)
            for each in chosen
            if each is not None
            for occupant in each
            if user is None or occupant.bare == user
        ]

    def recheck(self, room: str | None = None, user: str | None = None) -> Deferred[RecheckResult]:
        """Ask about every matching occupant again; fires once every answer is in."""
        found = self.occupants(room, user)
        if not found:
            return succeed(RecheckResult())
        checks = [self.recheck_one(each, occupant) for each, occupant in found]

        def total(results: list[tuple[bool, str]]) -> RecheckResult:
            outcomes = [outcome for _, outcome in results]
            return RecheckResult(
                checked=len(outcomes),
                removed=outcomes.count("removed"),
                kept_on_error=outcomes.count("error"),
            )

        return DeferredList(checks, consumeErrors=True).addCallback(total)  # type: ignore[arg-type]

    def recheck_one(self, room: Room, occupant: Occupant) -> Deferred[str]:
        """One occupant asked about again: "kept", "removed", "error" or "gone" (it left, or
        the link went, before the answer)."""
        if not occupant.sessions:
            return succeed("gone")
        session = occupant.sessions[-1]
        request = JoinRequest(session, room.jid, occupant.nick, action="recheck")
        context = Context(session, Address(JID(room.jid.host), room.jid, occupant.nick))
        d = self._gate.check(request, context)
        return d.addCallback(self._rechecked, room, occupant)

    def _rechecked(self, decision: Decision, room: Room, occupant: Occupant) -> str:
        core = self._core
        current = core.rooms.get(room.jid)
        if current is not room or room.occupant(occupant.nick) is not occupant:
            return "gone"
        if decision.is_cancelled:
            return "gone"
        if decision.is_error:
            return "error"  # never kick on an outage
        if decision.is_denied:
            shown = decision.reason if self._gate.show_reason and decision.reason else None
            self._remove(room, occupant, shown or REVOKED_TEXT, "recheck")
            self._drop_answers(occupant.bare, room.jid.userhost())
            self._count("recheck", 1)
            return "removed"
        self._apply_standing(room, occupant, decision)
        return "kept"

    def _apply_standing(self, room: Room, occupant: Occupant, decision: Decision) -> None:
        """The affiliation and role a yes names, as at the join (our extension of the answer)."""
        core = self._core
        changed = False
        affiliation: Affiliation | None = decision.affiliation  # type: ignore[assignment]
        role: Role | None = decision.role  # type: ignore[assignment]
        if affiliation is not None and occupant.affiliation != affiliation:
            core.rooms.set_affiliation(room, occupant.bare, affiliation)
            changed = True
        if role is not None and occupant.role != role:
            room.set_role(occupant, role)
            changed = True
        if changed:
            self._presences.broadcast(room, occupant)


class Rechecker:
    """Every occupant re-checked once per ``interval`` seconds, spread evenly over it."""

    def __init__(self, core: Core, revocations: Revocations, interval: float) -> None:
        self._core = core
        self._revocations = revocations
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._queue: list[tuple[Room, Occupant]] = []
        self._per_tick = 0.0
        self._owed = 0.0
        self.rounds = 0  # periods begun, for tests and whoever watches

    def start(self) -> None:
        if self.interval <= 0 or self._loop is not None:
            return
        loop = LoopingCall(self._tick)
        loop.clock = self._core.clock
        self._loop = loop
        loop.start(min(_TICK, self.interval), now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._queue = []
        self._owed = 0.0

    def _tick(self) -> None:
        if not self._queue:
            self._queue = self._revocations.occupants()
            self._queue.reverse()  # popped from the end: rooms in order
            self.rounds += 1
            step = min(_TICK, self.interval)
            self._per_tick = len(self._queue) * step / self.interval
            self._owed = 0.0
        self._owed += self._per_tick
        count = math.floor(self._owed + 1e-9)
        self._owed -= count
        for _ in range(min(count, len(self._queue))):
            room, occupant = self._queue.pop()
            self._revocations.recheck_one(room, occupant)
