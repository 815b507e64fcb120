"""clean_text: what enters from outside XMPP is safe for a stanza and for the text log."""

from __future__ import annotations

import xml.parsers.expat

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mucauth.text import clean_text


class CleanTextTests(SynchronousTestCase):
    @settings(max_examples=500)
    @given(st.text(alphabet=st.characters(codec=None)))
    def test_result_is_xml_text(self, value: str) -> None:
        cleaned = clean_text(value)
        self.assertEqual(len(cleaned), len(value))
        escaped = cleaned.replace("&", "&amp;").replace("<", "&lt;")
        parser = xml.parsers.expat.ParserCreate()
        parser.Parse(f"<a>{escaped}</a>".encode(), True)  # raises on a forbidden character

    def test_ordinary_text_is_unchanged(self) -> None:
        for value in ("Not on the roster", "tab\tline\nend\r", "é ✓ \U0001f600"):
            self.assertIs(clean_text(value), value)

    def test_terminal_escapes_and_nul(self) -> None:
        self.assertEqual(clean_text("\x1b[31mred\x00\x9b"), "\ufffd[31mred\ufffd\ufffd")

    def test_limit(self) -> None:
        self.assertEqual(clean_text("abcdef", 3), "abc")
