"""Sphinx configuration for mucauth's documentation (``./dev.sh docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]

from mucauth import __version__  # noqa: E402

project = "mucauth"
author = "the mucauth authors"
copyright = "the mucauth authors"
version = release = __version__

extensions = ["mucauth_docs"]
exclude_patterns = ["_build", "_changelog_draft.rst"]
html_theme = "alabaster"
html_static_path: list[str] = []
# Every :ref: and :doc: must resolve; -n (nitpicky) in ./dev.sh docs makes a broken one an error.
nitpicky = True
highlight_language = "none"
