"""The configuration reference is generated from the code: every key read has a description."""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from mucauth import settings_doc
from mucauth.config import SECTIONS


class DescriptionTests(SynchronousTestCase):
    def test_every_key_read_is_described(self) -> None:
        """A key added to mucauth.config.SECTIONS (or a settings dataclass) needs one line."""
        missing = settings_doc.missing_descriptions()
        self.assertEqual(
            missing,
            [],
            "tap.conf keys without a description: add them to DESCRIPTIONS in"
            " mucauth/settings_doc.py",
        )

    def test_no_description_of_a_key_not_read(self) -> None:
        self.assertEqual(
            settings_doc.unknown_descriptions(),
            [],
            "described in mucauth/settings_doc.py but not read by mucauth.config",
        )

    def test_every_section_has_an_introduction(self) -> None:
        self.assertEqual(sorted(settings_doc.SECTION_INTROS), sorted(SECTIONS))


class DefaultTests(SynchronousTestCase):
    def test_defaults_come_from_the_dataclasses(self) -> None:
        self.assertEqual(settings_doc.default_text("component", "port"), "``5347``")
        self.assertEqual(settings_doc.default_text("component", "jid"), "(required)")
        self.assertEqual(settings_doc.default_text("muc_http_auth", "timeout"), "``5``")
        self.assertEqual(
            settings_doc.default_text("muc_http_auth", "deny_condition"), "``cancel/forbidden``"
        )
        self.assertEqual(settings_doc.default_text("metrics", "port"), "(not set)")
        self.assertEqual(settings_doc.default_text("storage", "enabled"), "``true``")

    def test_every_field_key_shows_its_dataclass_default(self) -> None:
        """A changed default in mucauth/settings.py shows in the reference by itself."""
        for section, classes in settings_doc.SECTION_SETTINGS.items():
            for cls in classes:
                for f in dataclasses.fields(cls):
                    if f.name not in SECTIONS[section]:
                        continue
                    if (section, f.name) in settings_doc.SHOWN_DEFAULTS:
                        continue
                    if f.default is dataclasses.MISSING or f.default is None:
                        continue
                    shown = settings_doc.default_text(section, f.name)
                    self.assertIn(settings_doc._ini(f.default), shown, (section, f.name))


class ReferenceTests(SynchronousTestCase):
    def test_reference_lists_every_key(self) -> None:
        text = settings_doc.reference_rst()
        for section, keys in settings_doc.read_keys().items():
            self.assertIn(f"``[{section}]``", text)
            for key in keys:
                self.assertIn(f"   * - ``{key}``", text, (section, key))
