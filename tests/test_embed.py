"""examples/embed.tac builds a working service tree around a custom authorizer."""

import runpy
from pathlib import Path

from twisted.application.service import IServiceCollection
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from mucauth.authorize import JoinRequest
from mucauth.link import ComponentLink
from mucauth.muc.service import MUCService

TAC = Path(__file__).parent.parent / "examples" / "embed.tac"


class EmbedExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.namespace = runpy.run_path(str(TAC))

    def test_application_holds_the_component_with_the_muc_handler(self) -> None:
        [link] = list(IServiceCollection(self.namespace["application"]))
        self.assertIsInstance(link, ComponentLink)
        self.assertIn(self.namespace["muc"], list(link))
        self.assertIsInstance(self.namespace["muc"], MUCService)

    def test_custom_rule_decides(self) -> None:
        authorizer = self.namespace["SameDomainAuthorizer"]("localhost")

        def decide(user: str, room: str) -> str:
            request = JoinRequest(JID(user), JID(room), "nick")
            return str(self.successResultOf(authorizer.authorize(request)).outcome)

        self.assertEqual(decide("a@localhost/x", "localhost-team@rooms.localhost"), "allow")
        self.assertEqual(decide("a@elsewhere/x", "localhost-team@rooms.localhost"), "deny")
        self.assertEqual(decide("a@localhost/x", "other@rooms.localhost"), "deny")
