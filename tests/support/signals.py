"""Ctrl-C for child processes, whatever the way the suite itself was started.

A suite started as a background job (``./dev.sh test &`` from a script, a CI step run with
``&``) inherits SIGINT *ignored*, and so would every process it starts: Python keeps an ignored
SIGINT ignored, and Twisted only installs its own handler over the default one, so
``twistd mucauth`` and the demo would sit through the Ctrl-C a test sends them. Tests that
press Ctrl-C start that child with SIGINT at its default, as a terminal would.
"""

from __future__ import annotations

import signal


def default_ctrl_c() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
