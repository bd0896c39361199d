"""The package's layout rules, checked by walking its imports with `ast` (nothing is imported).

- no import cycle between the package's modules (imports inside functions count: they run
  too; imports under `if TYPE_CHECKING:` do not);
- no library module imports the `cli` package (commands use libraries, never the reverse);
- no module over about 450 lines, unless its docstring says why it is longer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_pld"
MAX_LINES = 450
#: the command layers: they may import anything; nothing else may import `cli`
FRONT_ENDS = ("pytest_pld.cli", "pytest_pld.plugin", "pytest_pld.__main__")


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


@pytest.mark.parametrize("name", sorted(MODULES), ids=sorted(MODULES))
def test_a_module_over_450_lines_says_why_in_its_docstring(name: str) -> None:
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert "lines" in docstring, (
        f"{path.name} has {lines} lines: split it, or say in its docstring why it is longer "
        f"than {MAX_LINES} lines"
    )
