"""pytest only (trial does not read this file): the end-of-session leftover check.

See ``tests/support/leftovers.py``; under trial, ``tests/test_zz_leftovers.py`` does the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest

from examples._stack import ProcessError
from tests.support.ejabberd import EjabberdServer, require_ejabberd
from tests.support.leftovers import leftovers, report
from tests.support.postgres import PostgresCluster, postgres_bin_dir
from tests.support.prosody import ProsodyServer, require_prosody

# trial's copy of the check; here the session fixture below does it after every test.
collect_ignore = ["test_zz_leftovers.py"]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running() -> Iterator[None]:
    """After the last test of the session (and its class teardown), nothing may still run."""
    yield
    found = leftovers()
    if found:
        pytest.fail(report(found), pytrace=False)


# The two tiers (setup.cfg [tool:pytest] markers; ./dev.sh test --fast leaves these out). A test
# that starts one of these servers must carry its marker: the guard below fails it otherwise,
# and fails a marked one at once, saying what to install, when the server is missing.
SERVER_MARKERS = ("prosody", "ejabberd", "postgresql")
# --fast: property tests run this share of their examples (at least FAST_MIN_EXAMPLES).
FAST_EXAMPLES = 0.1
FAST_MIN_EXAMPLES = 20
_running: list[pytest.Item] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="leave out the tests that start Prosody, ejabberd or PostgreSQL, and run property"
        " tests with a tenth of their examples (./dev.sh test --fast)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    kept, left_out = [], []
    for item in items:
        if any(item.get_closest_marker(m) for m in SERVER_MARKERS):
            left_out.append(item)
        else:
            kept.append(item)
            _fewer_examples(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def _fewer_examples(item: pytest.Item) -> None:
    """A Hypothesis test's settings are read when it runs: a smaller copy takes effect."""
    test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is None:
        return
    examples = max(FAST_MIN_EXAMPLES, int(current.max_examples * FAST_EXAMPLES))
    if examples < current.max_examples:
        test._hypothesis_internal_use_settings = hypothesis.settings(  # type: ignore[union-attr]
            current, max_examples=examples
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # unittest's setUpClass runs inside the first test's protocol, tearDownClass in the last's.
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()


def _guard(cls: type, marker: str, what: str, require: Callable[[], object]) -> None:
    original = cls.start  # type: ignore[attr-defined]

    @functools.wraps(original)
    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = _running[-1] if _running else None
        if item is not None and item.get_closest_marker(marker) is None:
            pytest.fail(
                f"{item.nodeid} starts {what} but is not marked: add"
                f" @pytest.mark.{marker} to its class (or pytestmark = pytest.mark.{marker} to"
                " its module) so that ./dev.sh test --fast leaves it out",
                pytrace=False,
            )
        try:
            require()
        except ProcessError as e:
            pytest.fail(
                f"this test needs {what}, which is missing: {e} (./dev.sh test --fast runs"
                f" every test that needs no server)",
                pytrace=False,
            )
        return original(self, *args, **kwargs)

    cls.start = start  # type: ignore[attr-defined]


_guard(ProsodyServer, "prosody", "Prosody", require_prosody)
_guard(EjabberdServer, "ejabberd", "ejabberd", require_ejabberd)
_guard(PostgresCluster, "postgresql", "PostgreSQL", postgres_bin_dir)
