"""Does this link hold one of ejabberd's ``domain_balancing`` slots? And a standby that waits
for one.

Behind ejabberd's ``domain_balancing`` (``bare_destination``, ``component_number: N``) the
component domain has N slots, cluster-wide, given to connections in the order they complete
their handshake. A stanza to any address of the domain goes to the slot its bare destination
hashes to. A connection that came when every slot was held gets nothing, ever, even after a slot
is freed; a slot whose connection died drops its stanzas until some connection takes it, which
only a new handshake does.

So a process learns whether its link holds a slot by sending, once the link is up, stanzas
from the service's domain to random room addresses of it: those whose address hashes to this
link's slot come back on this link. Each is an iq of type ``result`` with an id no one else
uses; every process, whichever receives it, consumes it before anything else sees it (an
observer of higher priority than the MUC service's) and never answers it.

With K probes to random addresses and N slots, a link that holds a slot gets none of them back
with probability ((N-1)/N)^K. K is :data:`PROBES` (256): below 1e-11 for N up to 10, below
1e-7 for N up to 16. One answer is enough to know; with none after :data:`PROBE_TIMEOUT`, the
link holds no slot.

Without ``[component] standby`` that is only logged, once per process: more processes than
``component_number`` is an operator's mistake. With it, the process closes its link and
connects again ``standby_retry`` seconds later, until a handshake gets it a freed slot; from
then on it serves that slot's rooms (persistent ones come back from the room store). A link
that holds a slot is never dropped here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from mucauth.settings import ComponentSettings

__all__ = ["PROBES", "PROBE_ID", "PROBE_TIMEOUT", "SlotProbe"]

# Probes sent each time the link comes up; see the module's docstring for the odds.
PROBES = 256
# Seconds to wait for the first probe to come back. On loopback they take milliseconds.
PROBE_TIMEOUT = 1.0
# Every probe's id starts with this, from whichever process: each consumes all of them.
PROBE_ID = "mucauth-slot-probe-"
# Above the MUC service's observers (priority 0): a probe never reaches a room.
PRIORITY = 100


class SlotProbe(XMPPHandler):
    """On each authenticated link, probe for a slot; as a standby, give a slotless link up.

    ``holds_slot`` is None while the probe runs (and with no link), then True or False.
    """

    log = Logger()

    def __init__(
        self,
        settings: ComponentSettings,
        clock: IReactorTime,
        *,
        probes: int = PROBES,
        timeout: float = PROBE_TIMEOUT,
        token: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        super().__init__()
        self.domain = settings.jid.full()
        self.standby = settings.standby
        self.retry = settings.standby_retry
        self.probes = probes
        self.timeout = timeout
        self.holds_slot: bool | None = None
        self._clock = clock
        self._token = token
        self._round = ""
        self._sent_at = 0.0
        self._answers = 0
        self._timer: IDelayedCall | None = None
        self._warned = False

    def connectionInitialized(self) -> None:
        self.holds_slot = None
        self._answers = 0
        self.xmlstream.addObserver('/iq[@type="result"]', self._on_result, priority=PRIORITY)
        self._round = f"{PROBE_ID}{self._token(6)}-"
        for n in range(self.probes):
            iq = domish.Element((None, "iq"))
            iq["type"] = "result"
            iq["from"] = self.domain
            iq["to"] = f"{PROBE_ID}{self._token(8)}@{self.domain}"
            iq["id"] = f"{self._round}{n}"
            self.send(iq)
        self._sent_at = self._clock.seconds()
        self._timer = self._clock.callLater(self.timeout, self._no_answer)

    def connectionLost(self, reason: Failure) -> None:
        self._cancel()
        self.holds_slot = None
        super().connectionLost(reason)

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _on_result(self, iq: domish.Element) -> None:
        ident = iq.getAttribute("id") or ""
        if not ident.startswith(PROBE_ID):
            return
        # Ours or another process's: nobody else is to see it, nobody answers it.
        iq.handled = True  # type: ignore[attr-defined]
        if not ident.startswith(self._round) or iq.getAttribute("from") != self.domain:
            return
        self._answers += 1
        if self.holds_slot is not None:
            return
        self._cancel()
        self.holds_slot = True
        self.log.info(
            "slot probe: this link holds a slot (first of {probes} probes back in {ms:.0f} ms)",
            probes=self.probes,
            ms=(self._clock.seconds() - self._sent_at) * 1000,
            slot_event="slot",
        )

    def _no_answer(self) -> None:
        self._timer = None
        self.holds_slot = False
        if self.standby:
            self.log.info(
                "standby: no slot; retrying in {retry:g} s",
                retry=self.retry,
                probes=self.probes,
                slot_event="standby",
            )
            factory = getattr(self.parent, "factory", None)
            retry_after = getattr(factory, "retry_after", None)
            if callable(retry_after):
                retry_after(self.retry)
            transport = getattr(self.xmlstream, "transport", None)
            if transport is not None:
                transport.loseConnection()
            return
        if not self._warned:
            self._warned = True
            self.log.warn(
                "slot probe: this link holds no slot: none of {probes} probes to {jid} came back"
                " in {timeout:g} s. Behind ejabberd's domain_balancing this process gets no"
                " traffic: more processes than component_number? (set [component] standby ="
                " true for a spare process)",
                probes=self.probes,
                jid=self.domain,
                timeout=self.timeout,
                slot_event="no_slot",
            )
