"""Docs generated from the code, so they cannot drift from it.

``.. mucauth-config-reference::`` renders every tap.conf key the configuration reads
(``mucauth.config.SECTIONS``) with its default (``mucauth.settings``) and meaning
(``mucauth.settings_doc``). ``.. mucauth-changelog::`` renders the unreleased changelog from
``changelog.d/`` with towncrier, as a release will write it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = Path(__file__).resolve().parents[2]


class _GeneratedRST(SphinxDirective):
    def text(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        lines = StringList(self.text().splitlines(), source=self.get_source_info()[0])
        nested_parse_with_titles(self.state, lines, node)
        return list(node.children)


class ConfigReference(_GeneratedRST):
    def text(self) -> str:
        from mucauth import config, settings, settings_doc

        for module in (config, settings, settings_doc):
            self.env.note_dependency(module.__file__)
        return settings_doc.reference_rst()


class Changelog(_GeneratedRST):
    def text(self) -> str:
        fragments = ROOT / "changelog.d"
        for fragment in fragments.glob("*.rst"):
            self.env.note_dependency(str(fragment))
        result = subprocess.run(
            [sys.executable, "-m", "towncrier", "build", "--draft", "--version", "unreleased"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise self.error(f"towncrier failed: {result.stderr.strip()}")
        draft = result.stdout
        # towncrier's draft starts with a line of chatter before the rendered news.
        start = draft.find("mucauth unreleased")
        if start == -1:
            raise self.error(f"no release title in towncrier's draft: {draft[:200]!r}")
        return draft[start:]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("mucauth-config-reference", ConfigReference)
    app.add_directive("mucauth-changelog", Changelog)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
