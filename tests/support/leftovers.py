"""The end-of-suite check: nothing the tests started may still run once every test is done.

Run after the last test under both runners, whatever their order:

* pytest: a session fixture in ``tests/conftest.py``, torn down after every class (its class
  fixtures included) has finished; a leftover is an error at the teardown of the last test;
* trial (which has no fixtures): ``tests/test_zz_leftovers.py``, whose name sorts after every
  other module, and trial runs modules in name order. pytest does not collect that module.

Processes of stacks still running (a class that has not run all its tests, in a partial run)
do not count: see ``tests.support.stack.leftover_processes``.
"""

from __future__ import annotations

import sys


def leftovers() -> list[str]:
    """What is still running: processes outside any running stack, and client loop threads."""
    if "examples._stack" not in sys.modules:  # no test started a process or a client
        return []
    from tests.support.stack import leftover_processes
    from tests.support.xmpp import live_client_threads

    return [*leftover_processes(), *(f"thread {name!r}" for name in live_client_threads())]


def report(found: list[str]) -> str:
    lines = "".join(f"\n    {what}" for what in found)
    return (
        f"still running after the last test: {len(found)} process(es)/thread(s) that a test "
        f"started and did not stop (a process outside any running stack, a client thread):{lines}"
    )
