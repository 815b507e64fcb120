"""trial's end-of-suite leftover check (pytest does it in ``tests/conftest.py`` instead).

Named to sort last: trial runs the modules of ``tests`` in name order, so this runs after every
other test. See ``tests/support/leftovers.py``.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.support.leftovers import leftovers, report


class NothingLeftRunningTests(SynchronousTestCase):
    def test_nothing_left_running(self) -> None:
        found = leftovers()
        if found:
            self.fail(report(found))
