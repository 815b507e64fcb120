"""Which part may import which: the benchmarks share examples/ with the tests, never tests/."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


class ImportBoundaryTests(SynchronousTestCase):
    def test_bench_imports_nothing_from_tests(self) -> None:
        for path in sorted((REPO / "bench").glob("*.py")):
            bad = {m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")}
            self.assertEqual(bad, set(), f"{path.name} imports {sorted(bad)}")

    def test_examples_import_nothing_from_tests_or_bench(self) -> None:
        for path in sorted((REPO / "examples").glob("*.py")):
            bad = {m for m in imported_modules(path) if m.split(".")[0] in ("tests", "bench")}
            self.assertEqual(bad, set(), f"{path.name} imports {sorted(bad)}")
