"""The ASCII fast paths of nodeprep and resourceprep give Twisted's answers exactly."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.xmpp_stringprep import nodeprep, resourceprep

from mucauth.muc.jids import node_prepare, resource_prepare

ascii_text = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12)
mixed_text = st.text(
    alphabet=st.sampled_from("aZ9 _-.@/'\"&<>:\x00\x1f\x7f\u00c9\u00df\u200b"), max_size=8
)


def outcome(prepare: Callable[[str], str], text: str) -> str | type[Exception]:
    try:
        return str(prepare(text))
    except UnicodeError:
        return UnicodeError


class SameAnswerTests(SynchronousTestCase):
    @settings(max_examples=2000, deadline=None)
    @given(st.one_of(ascii_text, mixed_text))
    def test_nodeprep(self, text: str) -> None:
        self.assertEqual(outcome(node_prepare, text), outcome(nodeprep.prepare, text))

    @settings(max_examples=2000, deadline=None)
    @given(st.one_of(ascii_text, mixed_text))
    def test_resourceprep(self, text: str) -> None:
        self.assertEqual(outcome(resource_prepare, text), outcome(resourceprep.prepare, text))

    def test_every_ascii_character(self) -> None:
        for code in range(0x80):
            for text in (chr(code), f"a{chr(code)}b"):
                self.assertEqual(outcome(node_prepare, text), outcome(nodeprep.prepare, text))
                self.assertEqual(
                    outcome(resource_prepare, text), outcome(resourceprep.prepare, text)
                )
