"""Decision: the standing an allow carries survives the layers' copies."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mucauth.authorize.base import Decision


class DecisionTests(SynchronousTestCase):
    def test_allow_without_a_standing_is_the_plain_allow(self) -> None:
        decision = Decision.allow()
        self.assertEqual(decision, Decision("allow"))
        self.assertEqual((decision.affiliation, decision.role), (None, None))

    def test_allow_with_a_standing(self) -> None:
        decision = Decision.allow(affiliation="member", role="visitor")
        self.assertTrue(decision.is_allowed)
        self.assertEqual((decision.affiliation, decision.role), ("member", "visitor"))
        self.assertIsNone(Decision.allow(role="moderator").affiliation)
        # The standing is part of the answer: two allows that grant different ones differ.
        self.assertNotEqual(decision, Decision.allow())

    def test_with_details_keeps_every_field(self) -> None:
        decision = Decision.allow(affiliation="owner", role="moderator")
        detailed = decision.with_details(status=200, latency=0.25, source="http")
        self.assertEqual(
            (detailed.outcome, detailed.status, detailed.latency, detailed.source),
            ("allow", 200, 0.25, "http"),
        )
        self.assertEqual((detailed.affiliation, detailed.role), ("owner", "moderator"))
        again = detailed.with_details(latency=0.0, source="cache")
        self.assertEqual((again.status, again.affiliation, again.role), (200, "owner", "moderator"))

    def test_with_details_copies_what_it_is_not_told(self) -> None:
        decision = Decision.error("bad_answer", "why").with_details(status=200)
        self.assertEqual(decision.with_details(), decision)
        self.assertEqual(decision.with_details().reason, "why")
