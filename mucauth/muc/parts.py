"""The service's parts, built and wired together outside the Wokkel handler.

``service.py``'s handler takes stanzas off the stream and hands them to the parts; this module
builds those parts, as a Twisted plugin's ``makeService`` builds what a protocol serves: the
shared core and its rooms, the gate, the stanza parts, and the features the service has, listed
here one line each (``feature.py``). The handler gives the few things only it has (its way to
send, to send a request and wait for the answer, and to replay a stanza that waited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import LogLevel
from twisted.words.xish import domish

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest
from mucauth.muc.admin import Moderation
from mucauth.muc.archive.query import Archive
from mucauth.muc.core import Core
from mucauth.muc.disco import Disco
from mucauth.muc.incoming import Held
from mucauth.muc.iq import IQs
from mucauth.muc.join import JoinGate
from mucauth.muc.liveness import Liveness
from mucauth.muc.messages import Messages
from mucauth.muc.owner_iq import OwnerRequests
from mucauth.muc.ping import Ping
from mucauth.muc.presence import Presences
from mucauth.muc.registration import Registration
from mucauth.muc.repair import Repairs
from mucauth.muc.requests import RoomRequests
from mucauth.muc.retention import Retention
from mucauth.muc.retraction import Retractions
from mucauth.muc.revocation import Forget, Rechecker, Revocations
from mucauth.settings import ErrorCondition, MUCSettings
from mucauth.store.base import IRoomStore

__all__ = ["HandlerHooks", "Parts", "assemble"]


@dataclass(frozen=True)
class HandlerHooks:
    """What the parts need of the handler on the stream."""

    send: Callable[[domish.Element], None]
    request: Callable[[Any], Deferred[domish.Element]]
    replay: Callable[[Held], None]  # a stanza that waited for its sender's join
    replay_loaded: Callable[[Held], None]  # a stanza that waited for its room's read


@dataclass(frozen=True)
class Parts:
    core: Core
    gate: JoinGate
    presences: Presences
    liveness: Liveness
    messages: Messages
    iqs: IQs
    disco: Disco
    registration: Registration
    retention: Retention
    revocations: Revocations
    rechecker: Rechecker
    repairs: Repairs


def assemble(
    authorizer: IJoinAuthorizer,
    settings: MUCSettings,
    clock: IReactorTime,
    hooks: HandlerHooks,
    *,
    deny_condition: ErrorCondition,
    failure_condition: ErrorCondition,
    show_reason: bool,
    authorize_registration: bool,
    max_in_flight: int,
    on_decision: Callable[[JoinRequest, Decision], None] | None,
    on_queue_wait: Callable[[float], None] | None,
    log_level: LogLevel,
    store: IRoomStore | None,
    recheck_interval: float,
    forget_answers: Forget | None,
    on_removed: Callable[[str, int], None] | None,
) -> Parts:
    """The parts of one service (``MUCService``'s arguments, documented there)."""
    core = Core(settings, clock, hooks.send, log_level, store)
    gate = JoinGate(
        core,
        authorizer,
        deny_condition=deny_condition,
        failure_condition=failure_condition,
        show_reason=show_reason,
        max_in_flight=max_in_flight,
        on_decision=on_decision,
        on_queue_wait=on_queue_wait,
        replay=hooks.replay,
    )
    core.rooms.keeper.replay = hooks.replay_loaded
    core.rooms.has_pending = gate.has_pending
    presences = Presences(core, gate)
    moderation = Moderation(core, presences)
    requests = RoomRequests(core, moderation)
    iqs = IQs(core)
    disco = Disco(core, iqs.features)
    registration = Registration(core, gate, authorize_registration=authorize_registration)
    # The service's features: the iqs each answers, what each adds to disco and to the owner's
    # form. One line each.
    iqs.add(disco)
    iqs.add(Ping())
    iqs.add(OwnerRequests(core, presences, moderation, iqs.features))
    iqs.add(moderation)
    iqs.add(requests)
    iqs.add(Archive(core, gate, iqs.answer_later))
    iqs.add(Retractions(core))
    iqs.add(registration)
    revocations = Revocations(core, gate, presences, forget=forget_answers, on_removed=on_removed)
    return Parts(
        core=core,
        gate=gate,
        presences=presences,
        liveness=Liveness(core, hooks.request, presences.remove_session),
        messages=Messages(core, gate, requests),
        iqs=iqs,
        disco=disco,
        registration=registration,
        retention=Retention(core),
        revocations=revocations,
        rechecker=Rechecker(core, revocations, recheck_interval),
        repairs=Repairs(core, presences),
    )
