"""The architecture as the file list shows it: sub-packages, no cycles, SQL only in the store."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "emulator"
SUBPACKAGES = ("core", "store", "delivery", "web", "cloudapi", "cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emulator"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("emulator")}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_sub_packages_are_there() -> None:
    for name in SUBPACKAGES:
        assert (PACKAGE / name / "__init__.py").is_file(), name


def test_no_import_cycles_between_modules() -> None:
    """Counted with imports inside functions too: a cycle there is a cycle all the same."""
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_sql_lives_in_the_store_package_only() -> None:
    sql = re.compile(r"\b(SELECT .+ FROM|INSERT INTO|DELETE FROM|UPDATE \w+ SET)\b|sqlite3")
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "store" not in path.relative_to(PACKAGE).parts and sql.search(path.read_text())
    ]
    assert offenders == []


# A library's internals the code cannot do without, each with the reason.
ALLOWED = {
    "parser._actions": "argparse has no public way to find the parser of the subcommand given",
}


# A namedtuple's public methods start with an underscore so they never clash with its fields.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def test_no_module_reaches_into_another_objects_private_attributes() -> None:
    private = re.compile(r"\b(?!self\b|cls\b)[a-z_][a-z0-9_]*\.(_[a-z][a-z0-9_]*)\b")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in private.finditer(code):
                if match.group(0) in ALLOWED or match.group(1) in NAMEDTUPLE_API:
                    continue
                if not match.group(0).startswith("sys._"):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {match.group(0)}")
    assert offenders == []
