"""A throw-away Prosody (Debian's package) on loopback, for integration and end-to-end tests.

The runner lives in ``examples/_prosody.py`` because the demo and the benchmark, which must not
import the tests, start it too; this module is the name the tests use.

Tests that need it fail with a clear message when Prosody is missing: ``./dev.sh test`` installs
it. Nothing here skips.
"""

import os
import shutil

from examples._prosody import PROSODY, PROSODYCTL, ProsodyServer, require_prosody

__all__ = ["PROSODY", "PROSODYCTL", "ProsodyServer", "prosody_available", "require_prosody"]


def prosody_available() -> bool:
    return shutil.which("prosody") is not None or os.path.exists(PROSODY)
