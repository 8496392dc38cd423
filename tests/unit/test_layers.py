"""The layering of src/steerbench, checked from the code's own imports (read with ast, nothing is imported)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import REPO

SRC = REPO / "src"
PACKAGE = SRC / "steerbench"
MAX_TOP_LEVEL_MODULES = 8
# switches for tests and the demo, which now travel as options and job fields
RETIRED_ENV_VARS = ("STEERBENCH_SYNTHETIC_DATA", "STEERBENCH_RETRY_WAIT")
# httpx internals only the boundary may touch
HTTPX_PRIVATE = re.compile(r"\._(transport|mounts|create_http_client)\b")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def subpackage(name: str) -> str | None:
    """`core` for steerbench.core.plan; None for a top-level module."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(name: str, module_level_only: bool) -> set[str]:
    """Every module `name` imports (dotted names, with `from x import y` giving x.y when y is a
    module of ours). Module level only: statements not inside a function."""
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if module_level_only:
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            nodes.append(node)
            stack.extend(ast.iter_child_nodes(node))
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path, node)
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules():
                    found.add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def internal_edges(name: str) -> set[str]:
    """The steerbench modules loading `name` loads directly (a module loads its packages too).
    A module's own packages are left out: they are loaded before it, never because of it."""
    own = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    edges = set()
    for target in imports(name, module_level_only=True):
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules() and prefix != name and prefix not in own:
                edges.add(prefix)
    return edges


def test_no_import_cycle() -> None:
    graph = {name: internal_edges(name) for name in modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target] if target in path else [name, target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_results_code_does_not_load_the_runner() -> None:
    """Importing flags or status must not load the runner, redaction or replay."""
    graph = {name: internal_edges(name) for name in modules()}
    for start in ("steerbench.results.flags", "steerbench.results.status", "steerbench.results.aggregate"):
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        loaded = seen & {"steerbench.execution.run", "steerbench.execution.redaction", "steerbench.execution.replay"}
        assert not loaded, f"{start} loads {sorted(loaded)}"


def test_core_never_imports_inspect_and_only_core() -> None:
    for name in modules():
        if subpackage(name) != "core":
            continue
        for target in imports(name, module_level_only=False):
            assert not target.startswith(("inspect_ai", "inspect_evals")), f"{name} imports {target}"
            if target.startswith("steerbench"):
                assert target.startswith("steerbench.core"), f"{name} imports {target}"


def test_only_the_boundary_touches_private_parts() -> None:
    for name, path in modules().items():
        if subpackage(name) in ("boundary", "serve"):
            continue
        for target in imports(name, module_level_only=False):
            assert not target.startswith("inspect_ai._"), f"{name} imports {target}"
            assert not re.match(r"inspect_evals\.", target), f"{name} imports {target} (inspect_evals internals)"
        text = path.read_text(encoding="utf-8")
        assert "inspect_ai._" not in text, f"{name} names a private Inspect module"
        assert not HTTPX_PRIVATE.search(text), f"{name} touches httpx internals"


def test_nothing_outside_sim_imports_sim_except_the_cli() -> None:
    for name in modules():
        if subpackage(name) in ("sim", "cli"):
            continue
        for target in imports(name, module_level_only=False):
            assert not target.startswith("steerbench.sim"), f"{name} imports {target}"


def test_cli_imports_sim_only_for_its_demo_commands() -> None:
    allowed = {"steerbench.cli.demo", "steerbench.cli.simulate", "steerbench.cli.options"}
    for name in modules():
        if subpackage(name) == "cli" and name not in allowed:
            assert not any(t.startswith("steerbench.sim") for t in imports(name, module_level_only=False)), name


def test_at_most_eight_top_level_modules() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("variable", RETIRED_ENV_VARS)
def test_retired_environment_switches_are_not_read(variable: str) -> None:
    readers = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if variable in p.read_text(encoding="utf-8")]
    assert readers == []


def test_every_module_opens_with_one_line_saying_what_it_is_for() -> None:
    for name, path in modules().items():
        if subpackage(name) == "serve":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        assert doc, f"{name} has no docstring"
        first = doc.splitlines()[0].strip()
        assert first.endswith("."), f"{name}: the first line is not a sentence of its own: {first!r}"
