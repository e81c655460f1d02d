"""The layout's rules: the pure stages (spec/, output/) import nothing from the edges that touch
the machine (host/, lanes/, twin/), at module level or inside functions; every layer imports only
from the layers below it (LAYERS), and no module imports itself back through others."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
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


def module_graph(package: Path, name: str = "harness") -> dict[str, set[str]]:
    """Module -> the package's modules it imports, wherever the import sits (functions and
    TYPE_CHECKING blocks included: a cycle hidden in a function is still a cycle)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = (name, *path.relative_to(package).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for _, imported in imported_modules(path):
            while imported and imported not in modules:  # `from pkg.mod import name`
                imported = imported.rpartition(".")[0]
            if imported and imported != module and imported != name:
                targets.add(imported)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    graph = module_graph(PACKAGE)
    assert len(graph) >= 60 and "harness.lanes.registry" in graph["harness.api.trace"]
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    assert cycles(module_graph(pkg, "pkg")) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


# Every part of the package, bottom first: a module imports only from its own layer and those
# below, wherever the import sits (functions and TYPE_CHECKING blocks included). The lanes sit
# above compare, whose machine side (compare.gather, compare.bench's rounds) they run there;
# compare names a lane by what it asks of it (compare.kernel.Kernel).
LAYERS = (
    ("errors", "paths", "cbuild", "progress", "clock", "arguments", "workloads", "grammar"),
    ("spec",),
    ("output", "report.record"),  # the data contracts: the parsed output, the run record
    ("host",),
    ("twin",),
    ("compare",),
    ("lanes",),
    ("report",),
    ("api",),
    ("cli",),
)


def layer_of(module: str) -> int:
    """The layer of a module of the package (`harness` itself, the re-exports, is the top): its
    own entry in LAYERS (`report.record`), else its part's (`report`)."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS)
    for name in (".".join(parts[1:3]), parts[1]):
        found = [i for i, names in enumerate(LAYERS) if name in names]
        if found:
            return found[0]
    raise AssertionError(f"{module} belongs to no layer: add its part of the package to LAYERS")


def test_every_layer_imports_only_from_below() -> None:
    graph = module_graph(PACKAGE)
    parts = {m.split(".")[1] for m in graph if m.count(".")}
    assert parts == {name.split(".")[0] for names in LAYERS for name in names} - {"grammar"}
    assert all(f"harness.{n}" in graph for names in LAYERS for n in names
               if "." in n)  # a module named on its own exists
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                    if layer_of(t) > layer_of(m))
    assert upward == []


def test_the_layer_check_sees_an_import_that_reaches_up(tmp_path: Path) -> None:
    pkg = tmp_path / "harness"
    (pkg / "compare").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "compare" / "__init__.py").write_text("")
    (pkg / "compare" / "x.py").write_text("def f():\n    from harness.report.rundir import g\n")
    (pkg / "report").mkdir()
    (pkg / "report" / "__init__.py").write_text("")
    (pkg / "report" / "rundir.py").write_text("def g():\n    pass\n")
    graph = module_graph(pkg)
    assert [(m, t) for m, ts in graph.items() for t in ts if layer_of(t) > layer_of(m)] == [
        ("harness.compare.x", "harness.report.rundir")]


def test_the_host_layer_imports_nothing_above_it() -> None:
    above = ("harness.lanes", "harness.compare", "harness.report", "harness.cli", "harness.api.")
    graph = module_graph(PACKAGE)
    bad = {m: sorted(t for t in targets if t.startswith(above))
           for m, targets in graph.items() if m.startswith(("harness.host", "harness.twin"))}
    assert {m: t for m, t in bad.items() if t} == {}


CAPABILITIES = ("trace", "again", "crosscheck", "matrix", "fleet", "bench", "doctor", "report",
                "diff", "parse", "lane")


def test_each_capability_has_a_module_of_its_own_above_the_stages() -> None:
    """harness.api holds one module per capability (and the planner and inputs they share);
    only `harness` (its re-exports), the CLI and harness.api itself import it: no stage below
    reaches up into a capability."""
    graph = module_graph(PACKAGE)
    for name in (*CAPABILITIES, "planner", "inputs"):
        assert f"harness.api.{name}" in graph
    bad = {m: sorted(t for t in targets if t.startswith("harness.api."))
           for m, targets in graph.items()
           if not m.startswith(("harness.api.", "harness.cli")) and m != "harness"}
    assert {m: t for m, t in bad.items() if t} == {}
    assert graph["harness.api"] == set()  # the package re-exports nothing: `harness` does


def test_one_planner_settles_trace_and_crosscheck() -> None:
    """Only the planner picks an attach type or makes a ready marker for a trace, a crosscheck
    or a bench: the capability modules ask it, nothing else calls choose_attach or prints a
    marker of its own."""
    graph = module_graph(PACKAGE)
    assert "harness.api.planner" in graph["harness.api.trace"]
    assert "harness.api.planner" in graph["harness.api.crosscheck"]
    for path in sorted((PACKAGE / "api").glob("*.py")):
        if path.name == "planner.py":
            continue
        text = path.read_text()
        assert "choose_attach" not in text, path.name
        assert not re.search(r"KTRACE_\w*(READY|XCHECK)", text), path.name
    assert not (PACKAGE / "api.py").exists()
    assert "def plan_crosscheck" not in (PACKAGE / "compare" / "crosscheck.py").read_text()
    # nor does any stage below (a bench's cases take the attach type the planner chose)
    calling = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if "choose_attach(" in p.read_text())
    assert calling == ["api/planner.py", "host/capabilities.py"]
    assert "harness.api.planner" in graph["harness.api.bench"]


# each calls harness.api.<command>
LIBRARY_COMMANDS = ("bench", "doctor", "report", "diff", "parse", "lane")


def test_the_commands_that_call_the_library_only_parse_and_print() -> None:
    """`harness bench`, `doctor`, `report`, `diff`, `parse` and `lane` call the library
    (harness.bench, harness.doctor, harness.write_report, harness.diff, harness.parse_file,
    harness.lane_up/lane_down/lane_status): they reach no stage of the flow themselves, not
    even for a type."""
    graph = module_graph(PACKAGE)
    stages = ("harness.host", "harness.lanes", "harness.twin", "harness.compare",
              "harness.report", "harness.output", "harness.spec.")
    allowed = {"harness.spec.options"}  # the spec flags, added to the bench parser
    for command in LIBRARY_COMMANDS:
        module = f"harness.cli.{command}"
        reached = sorted(t for t in graph[module] if t.startswith(stages) and t not in allowed)
        assert reached == [], module
        assert f"harness.api.{command}" in graph[module], module


def test_the_checkout_holds_no_stray_or_ignored_file() -> None:
    """The top level is the design card's; nothing git ignores is committed; the hand-written
    twin is a test fixture, not package data."""
    import shutil
    import subprocess

    repo = PACKAGE.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        import pytest

        pytest.skip("not a git checkout: nothing to compare with .gitignore")
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    top = {path.split("/")[0] for path in tracked}
    assert top == {".ci", ".gitignore", "README.md", "grammar", "harness", "pyproject.toml",
                   "results", "scripts", "tests"}
    ignored = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], cwd=repo,
                             capture_output=True, text=True, check=True).stdout.split()
    assert ignored == []
    shipped = {p.name for p in (PACKAGE / "twin").iterdir()}
    assert "twinload.c" in shipped and not shipped & {"ktrace.bpf.c", "ktrace.c", "example.py"}


# Function-level imports are for optional or heavy libraries only (issue 22): every other import
# sits at the top of its module, where the reader, the layer check and the cycle finder see it.
# A library named here is imported where it is used, so that what does not use it never pays
# for it (and, for an optional one, still works without it).
LAZY_LIBRARIES = {
    "lark": "the grammars' parser: ~45 ms to import; the remote agent has no lark",
    "pandas": "the frames: 0.3-0.8 s to import; a quick run and the agent never load it",
    "numpy": "pandas' arrays (the frames, the twin's dumps, the bench's statistics)",
    "scipy": "the bench's confidence intervals only",
    "matplotlib": "optional (the `report` extra): PNG plots only; missing, a typed error",
    "tabulate": "the CLI's tables, printed after the run (~35 ms)",
    "rich": "the CLI's progress bar, only on a terminal",
    "yaml": "Ansible YAML inventories only",
    "elftools": "a workload's ELF symbols, only when a user stack is printed",
    "virtme_ng": "optional (the `vm` extra): a guest's boot only",
}
# Two modules of the standard library are slow enough to be imported where they are used (they
# make no module that imports them at its top a heavy one).
SLOW_STANDARD_LIBRARY = {
    "importlib.metadata": "20-50 ms of start-up: `--version` only",
    "hashlib": "3.4 ms of a run's spawn (OpenSSL): cache keys only",
}
# A module of the package may be imported in a function when importing it loads, through what
# it imports at its top, one of LAZY_LIBRARIES (output.parse and spec.expr's lark, output.frames'
# and compare.versions' pandas, cli.tables' tabulate) or one of these stand-ins: our own code
# that a run measurably does without before bpftrace's spawn (tests/test_startup.py keeps the
# first three off it). The twin and the guest/SSH lanes load spec.model at their top,
# report.totals loads report.summary, output.printed output.columns. Figures: the CPU an import
# adds to `harness run PROGRAM`'s modules before the spawn, medians of 7-11 runs at load ~4-5
# on the 2-core VM.
STAND_INS = {
    "harness.spec.model": "the spec machinery (model, expressions): 16 ms (with codegen_c 25, "
                          "the twin 35, the guest/SSH lanes ~50) a whole program spawns without",
    "harness.report.summary": "the report (flame pages, summary.md, plots): 4 ms, after the spawn",
    "harness.output.columns": "the output's tables (with output.model): 4 ms, after the spawn",
    "harness.host.usyms": "a workload's user symbols (with output.model): 4 ms of a run's spawn, "
                          "only when the program needs the workload's pid",
}


def _placed_imports(path: Path, module: str) -> list[tuple[int, str, str]]:
    """(line, imported module, place) for every import of a file: place is `function`, `typing`
    (an `if TYPE_CHECKING:` block) or `top`. `from package import module` names the module."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, place: str) -> None:
        for child in ast.iter_child_nodes(node):
            here = place
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                here = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                here = "typing" if place == "top" else place
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, here) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolved against the module's package
                    package = module.split(".")[: -child.level if path.name != "__init__.py"
                                                 else len(module.split(".")) - child.level + 1]
                    base = ".".join([*package, base] if base else package)
                for a in child.names:
                    full = f"{base}.{a.name}"
                    sub = PACKAGE.parent / (full.replace(".", "/") + ".py")
                    found.append((child.lineno, full if sub.exists() else base, here))
            visit(child, here)

    visit(ast.parse(path.read_text(), str(path)), "top")
    return found


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("harness", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _names(module: str, names: Iterable[str]) -> bool:
    return any(module == n or module.startswith(f"{n}.") for n in names)


def loaded_at_top(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> every module importing it loads: what it imports at its top (not in functions,
    not for typing), and theirs, transitively."""
    top: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for _, imported, place in _placed_imports(path, module):
            while imported.startswith("harness.") and imported not in modules:
                imported = imported.rpartition(".")[0]
            if place == "top" and imported != module:
                targets.add(imported)
        top[module] = targets
    loaded = {}
    for module in modules:
        seen, todo = {module}, [module]
        while todo:
            for t in top.get(todo.pop(), ()):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        loaded[module] = seen
    return loaded


def function_level_imports_not_allowed(modules: dict[str, Path]) -> list[str]:
    """`path:line: module` for each function-level import that names neither a library of
    LAZY_LIBRARIES nor a module that loads one of them or a stand-in at its top."""
    loaded = loaded_at_top(modules)

    def allowed(imported: str) -> bool:
        heavy = loaded.get(imported, {imported})
        return any(_names(m, LAZY_LIBRARIES) or m in STAND_INS for m in heavy)

    return [f"{path.name if PACKAGE not in path.parents else path.relative_to(PACKAGE.parent)}"
            f":{line}: {imported}"
            for module, path in modules.items()
            for line, imported, place in _placed_imports(path, module)
            if place == "function" and not allowed(imported)
            and not _names(imported, SLOW_STANDARD_LIBRARY)]


def test_function_level_imports_name_only_heavy_libraries_or_their_stand_ins() -> None:
    modules = _modules()
    assert len(modules) >= 60
    assert function_level_imports_not_allowed(modules) == []


def test_each_stand_in_is_what_its_reason_says() -> None:
    """A stand-in gives the figure it saves and loads no library of LAZY_LIBRARIES at its top
    (one that does needs no entry); each is still imported in a function somewhere (else it
    needs none either); test_startup's modules and libraries are covered."""
    from test_startup import AFTER_SPAWN, NEVER

    modules = _modules()
    loaded = loaded_at_top(modules)
    for module, reason in STAND_INS.items():
        assert re.search(r"\b\d+ ms\b", reason), module
        assert not [m for m in loaded[module] if _names(m, LAZY_LIBRARIES)], module
    kept_off = [m for m in (*AFTER_SPAWN, "harness.spec.model", "harness.spec.codegen")
                if m.startswith("harness.")]
    assert all(set(loaded[m]) & {*STAND_INS, *LAZY_LIBRARIES} or any(
        _names(x, LAZY_LIBRARIES) for x in loaded[m]) for m in kept_off)
    assert set(NEVER) - {"plotly"} <= set(LAZY_LIBRARIES)
    lazily = {imported for module, path in modules.items()
              for _, imported, place in _placed_imports(path, module) if place == "function"}
    assert sorted(set(STAND_INS) - lazily) == []


def test_the_import_rule_sees_a_function_level_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import json\nif TYPE_CHECKING:\n    import csv\n"
                      "def f():\n    import shlex\n    from harness import paths\n"
                      "    import pandas\n    from harness.output import parse\n")
    placed = _placed_imports(sample, "harness.m")
    assert (5, "shlex", "function") in placed and (3, "csv", "typing") in placed
    assert (6, "harness.paths", "function") in placed and (1, "json", "top") in placed
    bad = function_level_imports_not_allowed({**_modules(), "harness.m": sample})
    assert [b.rpartition(": ")[2] for b in bad if b.startswith("m.py")] == [
        "shlex", "harness.paths"]
