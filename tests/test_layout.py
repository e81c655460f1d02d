"""The layout's one rule: the pure stages (spec/, output/) import nothing from the edges that touch
the machine (host/, lanes/, twin/), at module level or inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).resolve().parent
PURE = ("spec", "output")
EDGES = ("harness.host", "harness.lanes", "harness.twin")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement in a file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_pure_stages_import_no_edge() -> None:
    files = [p for stage in PURE for p in sorted((PACKAGE / stage).rglob("*.py"))]
    assert len(files) >= 6  # the rule checks the real tree, not an empty glob
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in files
        for line, module in imported_modules(path)
        if module.startswith(EDGES) or module in ("harness.host", "harness.lanes", "harness.twin")
    ]
    assert bad == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from harness.host.capabilities import capabilities\n")
    assert (2, "harness.host.capabilities") in imported_modules(sample)


def test_from_harness_import_an_edge_is_seen(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from harness import host\n")
    assert any(m.startswith(EDGES) for _, m in imported_modules(sample))
