"""The join gate: decides whether a user may enter a room. Nothing in here knows XMPP stanzas."""

from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest, StaticAuthorizer

__all__ = ["Decision", "IJoinAuthorizer", "JoinRequest", "StaticAuthorizer"]
