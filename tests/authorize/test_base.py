"""Decision: the standing an allow carries survives the layers' copies; reasons are safe."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mucauth.authorize.base import MAX_REASON, Decision


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


class ReasonTextTests(SynchronousTestCase):
    """A reason from outside is made safe for a stanza and a log where the decision is made."""

    @settings(max_examples=300)
    @given(st.text(alphabet=st.characters(codec=None), max_size=2000))
    def test_any_reason_is_xml_and_terminal_safe(self, reason: str) -> None:
        for decision in (Decision.deny(reason), Decision.error("bad_json", reason)):
            text = decision.reason
            self.assertLessEqual(len(text), MAX_REASON)
            for ch in text:
                code = ord(ch)
                self.assertTrue(
                    ch in "\t\n\r"
                    or 0x20 <= code < 0x7F
                    or 0x9F < code < 0xD800
                    or 0xE000 <= code < 0xFFFE
                    or code > 0xFFFF,
                    hex(code),
                )

    def test_controls_become_replacement_characters(self) -> None:
        self.assertEqual(
            Decision.deny("a\x00b\x1b[31mc\ud800\ufffe\n").reason,
            "a\ufffdb\ufffd[31mc\ufffd\ufffd\n",
        )
