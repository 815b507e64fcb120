"""The join gate: decides whether a user may enter a room. Nothing in here knows XMPP stanzas.

``build_authorizer(settings, reactor)`` composes the gate tap.py runs; ``Gate.close()`` closes
its HTTP connections on shutdown.
"""

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest, StaticAuthorizer
from mucauth.authorize.gate import Gate, build_authorizer

__all__ = [
    "Decision",
    "Gate",
    "IJoinAuthorizer",
    "JoinRequest",
    "StaticAuthorizer",
    "build_authorizer",
]
