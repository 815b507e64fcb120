"""Inner authorizers whose answers a test controls and whose calls it counts."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest


def join(
    user: str = "alice@example.org/phone",
    room: str = "physics@rooms.example.org",
    nick: str = "alice",
    action: str = "join",
) -> JoinRequest:
    return JoinRequest(JID(user), JID(room), nick, action=action)  # type: ignore[arg-type]


@implementer(IJoinAuthorizer)
class Counting:
    """Answers at once with ``decision`` and remembers every request."""

    def __init__(self, decision: Decision | None = None) -> None:
        self.decision = decision or Decision.allow()
        self.requests: list[JoinRequest] = []

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        self.requests.append(request)
        return succeed(self.decision)


@implementer(IJoinAuthorizer)
class Pending:
    """Answers only when the test fires the Deferred; records cancellations."""

    def __init__(self) -> None:
        self.calls: list[tuple[JoinRequest, Deferred[Decision]]] = []
        self.cancelled: list[JoinRequest] = []

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        def cancel(d: Deferred[Decision]) -> None:
            self.cancelled.append(request)
            d.callback(Decision.cancelled())

        d: Deferred[Decision] = Deferred(cancel)
        self.calls.append((request, d))
        return d

    def answer(self, decision: Decision, index: int = -1) -> None:
        self.calls[index][1].callback(decision)
