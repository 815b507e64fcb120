"""pytest only (trial does not read this file): the end-of-session leftover check.

See ``tests/support/leftovers.py``; under trial, ``tests/test_zz_leftovers.py`` does the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.leftovers import leftovers, report

# trial's copy of the check; here the session fixture below does it after every test.
collect_ignore = ["test_zz_leftovers.py"]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running() -> Iterator[None]:
    """After the last test of the session (and its class teardown), nothing may still run."""
    yield
    found = leftovers()
    if found:
        pytest.fail(report(found), pytrace=False)
