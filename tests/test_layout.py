"""The package's layout rules (ARCHITECTURE.md), checked by walking its imports and syntax
trees with `ast` (nothing is imported).

- no import cycle between the package's modules (imports inside functions count: they run
  too; imports under `if TYPE_CHECKING:` do not);
- no library module imports the `cli` package (commands use libraries, never the reverse);
- only the commands and the pytest side import `report/` (nothing in the core presents);
- the run record (`record.py`) reaches neither the runner, the cache nor a backend;
- no module over 450 lines and no function over 120, unless ARCHITECTURE.md lists it with its
  reason (and a listed one is still over: the list stays true);
- no test module imports another (shared helpers live in tests/helpers.py and conftest.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_pld"
TESTS = ROOT / "tests"
MAX_LINES = 450
MAX_FUNCTION_LINES = 120
#: the command layers: they may import anything; nothing else may import `cli`
FRONT_ENDS = ("pytest_pld.cli", "pytest_pld.plugin", "pytest_pld.__main__")
#: what may import presentation (`report/`): the commands, the pytest side, report itself
PRESENTERS = (*FRONT_ENDS, "pytest_pld.items", "pytest_pld.session", "pytest_pld.report")
#: the core, named by the issue that made `report/`: none of it may present
CORE = ("gates", "metrics", "stats", "runner", "record")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> set[str]:
    """The package modules `name` imports at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                if child in MODULES:
                    found.add(child)
                elif target in MODULES:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_import_walk_sees_the_package_s_imports() -> None:
    # guards the checks below against passing because the walk found nothing
    assert "pytest_pld.record" in GRAPH["pytest_pld.gates"]
    assert "pytest_pld.cli.options" in GRAPH["pytest_pld.cli.run"]
    assert len(MODULES) > 40


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_a_cycle_would_be_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_library_module_imports_the_cli_package() -> None:
    offenders = {
        name: sorted(i for i in imported if i.startswith("pytest_pld.cli"))
        for name, imported in GRAPH.items()
        if not name.startswith(FRONT_ENDS)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_backend_protocol_imports_no_concrete_backend() -> None:
    assert not {m for m in GRAPH["pytest_pld.backends.base"] if m.startswith("pytest_pld.backends")}


def test_the_label_logic_imports_no_backend() -> None:
    assert not {m for m in GRAPH["pytest_pld.labels"] if m.startswith("pytest_pld.backends")}


def _reachable(name: str) -> set[str]:
    """Every module `name` imports, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for child in GRAPH[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def test_the_run_record_reads_without_the_runner_or_a_backend() -> None:
    reached = _reachable("pytest_pld.record")
    assert "pytest_pld.calibration" in reached  # the walk follows the record's imports
    assert not {
        m
        for m in reached
        if m in ("pytest_pld.runner", "pytest_pld.cache")
        or m.startswith(("pytest_pld.backends", "pytest_pld.report", "pytest_pld.cli"))
    }


def test_nothing_but_the_commands_and_the_pytest_side_imports_presentation() -> None:
    offenders = {
        name: sorted(i for i in imported if i.startswith("pytest_pld.report"))
        for name, imported in GRAPH.items()
        if not name.startswith(PRESENTERS)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_no_presentation(name: str) -> None:
    module = f"pytest_pld.{name}"
    assert not {m for m in GRAPH[module] if m.startswith("pytest_pld.report")}


def test_a_presentation_import_would_be_found() -> None:
    # guards the two checks above: the walk sees gates' imports and report's modules
    assert "pytest_pld.numfmt" in GRAPH["pytest_pld.gates"]
    assert "pytest_pld.report.gate_summary" in GRAPH["pytest_pld.plugin"]


# --- the size budget ----------------------------------------------------------------------------


def _listed(heading: str) -> dict[str, str]:
    """The table right under `heading` in ARCHITECTURE.md: first column (a `code` path) ->
    second column (the reason)."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    after = text[text.index(heading) + len(heading) :].strip("\n").splitlines()
    table = []
    for line in after:
        if not line.startswith("|"):
            break
        table.append(line)
    rows = [re.fullmatch(r"\| `([^`]+)` \| (.+) \|", line) for line in table]
    return {m.group(1): m.group(2).strip() for m in rows if m}


ALLOWED_MODULES = _listed("Modules over 450 lines:")
ALLOWED_FUNCTIONS = _listed("Functions over 120 lines:")


def _lines(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("\n")


def _long_functions() -> dict[str, int]:
    """`path:function` -> lines, for every function over the budget."""
    found: dict[str, int] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = length
    return found


def test_architecture_md_lists_modules_and_functions_with_their_reasons() -> None:
    # guards the budget checks against passing because the tables were not found
    assert ALLOWED_MODULES and ALLOWED_FUNCTIONS
    assert set(ALLOWED_MODULES).isdisjoint(ALLOWED_FUNCTIONS)
    assert all(
        len(reason) > 20 for reason in [*ALLOWED_MODULES.values(), *ALLOWED_FUNCTIONS.values()]
    )


@pytest.mark.parametrize("name", sorted(MODULES), ids=sorted(MODULES))
def test_a_module_over_450_lines_is_listed_in_architecture_md(name: str) -> None:
    path = MODULES[name]
    rel = path.relative_to(ROOT).as_posix()
    lines = _lines(path)
    if lines > MAX_LINES:
        assert rel in ALLOWED_MODULES, (
            f"{rel} has {lines} lines: split it, or list it in ARCHITECTURE.md's size budget "
            f"with the reason it is longer than {MAX_LINES} lines"
        )


@pytest.mark.parametrize("rel", sorted(ALLOWED_MODULES))
def test_a_module_listed_as_long_is_still_long(rel: str) -> None:
    path = ROOT / rel
    assert path.is_file(), f"ARCHITECTURE.md lists {rel}, which does not exist"
    assert _lines(path) > MAX_LINES, f"{rel} is within budget now: take it off ARCHITECTURE.md"


def test_no_function_is_over_120_lines_unless_listed_in_architecture_md() -> None:
    long = _long_functions()
    assert {f: n for f, n in long.items() if f not in ALLOWED_FUNCTIONS} == {}, (
        f"split these functions, or list them in ARCHITECTURE.md with the reason they are "
        f"longer than {MAX_FUNCTION_LINES} lines"
    )
    assert sorted(set(ALLOWED_FUNCTIONS) - set(long)) == [], (
        "ARCHITECTURE.md lists functions that are within budget now (or gone): take them off"
    )


def test_a_long_function_would_be_found() -> None:
    long = _long_functions()
    assert all(n > MAX_FUNCTION_LINES for n in long.values())
    assert "pytest_pld/plugin.py:pytest_addoption" in long  # the walk sees the package


# --- tests ----------------------------------------------------------------------------------------


def _test_imports(path: Path) -> set[str]:
    """The test modules (test_*) that a file under tests/ imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("test_"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_"):
            found.add(node.module or "")
    return found


def test_no_test_module_imports_another() -> None:
    offenders = {p.name: sorted(_test_imports(p)) for p in sorted(TESTS.glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_test_module_import_would_be_found(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import test_a\n\ndef f():\n    from test_b import x\n", encoding="utf-8")
    assert _test_imports(probe) == {"test_a", "test_b"}
