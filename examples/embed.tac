"""mucauth inside your own Twisted application, with your own join rule instead of HTTP.

    MUCAUTH_SECRET=... twistd -n -y examples/embed.tac

Any object that provides IJoinAuthorizer can decide joins: a database lookup, a token check, or
the HTTP gate (``mucauth.authorize.build_authorizer``) wrapped in rules of your own. This one
admits the users of one domain, and only into rooms whose name starts with their domain's name.

This builds the link and the MUC service by hand. ``mucauth.tap.make_service(settings,
authorizer=SameDomainAuthorizer(...))`` builds the whole of mucauth around the same authorizer,
with shutdown notices and metrics.
"""

import os

from twisted.application.service import Application
from twisted.internet.defer import Deferred, succeed
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from mucauth.authorize import Decision, IJoinAuthorizer, JoinRequest
from mucauth.link import ComponentLink
from mucauth.muc.service import MUCService
from mucauth.settings import ComponentSettings, MUCSettings, RoomDefaults, Secret


@implementer(IJoinAuthorizer)
class SameDomainAuthorizer:
    def __init__(self, domain: str) -> None:
        self.domain = domain

    def authorize(self, request: JoinRequest) -> "Deferred[Decision]":
        if request.user.host != self.domain:
            return succeed(Decision.deny("only users of " + self.domain))
        if not (request.room.user or "").startswith(self.domain.split(".")[0]):
            return succeed(Decision.deny("room name must start with the domain's name"))
        return succeed(Decision.allow())


link = ComponentLink(
    ComponentSettings(
        jid=JID(os.environ.get("MUCAUTH_JID", "rooms.localhost")),
        secret=Secret(os.environ.get("MUCAUTH_SECRET", "component-secret")),
        host=os.environ.get("MUCAUTH_HOST", "127.0.0.1"),
        port=int(os.environ.get("MUCAUTH_PORT", "5347")),
    )
)
muc = MUCService(
    SameDomainAuthorizer(os.environ.get("MUCAUTH_USER_DOMAIN", "localhost")),
    MUCSettings(service_name="Team rooms", rooms=RoomDefaults(history_length=50)),
)
muc.setHandlerParent(link)

application = Application("mucauth-embedded")
link.setServiceParent(application)
