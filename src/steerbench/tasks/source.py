"""Reading a task function's parameters from its source file, without importing anything.

Looking a task up through Inspect's registry imports inspect_ai and every task module of
inspect_evals (about 3 s), which `steerbench run --dry-run` should not pay just to check
argument names. Here the registry module and the task's module are parsed with `ast`:
`pkg/name` is followed from the package's `_registry.py` through its imports to a
function decorated with `@task`. Anything this cannot settle for certain returns None,
and the caller falls back to the import path.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect as pyinspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class _NonLiteral:
    def __repr__(self) -> str:
        return "<computed at run time>"


# A default that is not a literal or a module constant (e.g. a call).
NON_LITERAL = _NonLiteral()
# As inspect.signature reports a parameter without a default.
REQUIRED = pyinspect.Parameter.empty


@dataclass(frozen=True)
class StaticSignature:
    params: dict[str, Any]  # name -> default (REQUIRED when there is none, NON_LITERAL when computed)
    accepts_any: bool  # has **kwargs


_MAX_HOPS = 8  # re-exports followed before giving up


def static_signature(eval_name: str) -> StaticSignature | None:
    """The parameters of `pkg/task` or `file.py@task`, read from source; None if unsure."""
    try:
        if "@" in eval_name or eval_name.endswith(".py"):
            file_part, _, task_name = eval_name.partition("@")
            path = Path(file_part)
            if not task_name or not path.is_file():
                return None
            return _find_in_module(path.resolve(), task_name, None, _MAX_HOPS)
        package, slash, task_name = eval_name.partition("/")
        if not slash or not package.isidentifier() or not task_name.isidentifier():
            return None
        registry = _module_path(f"{package}._registry")
        if registry is None:
            return None
        return _find_in_module(registry, task_name, f"{package}._registry", _MAX_HOPS)
    except (OSError, SyntaxError, ValueError, RecursionError):
        return None


def _package_root(top_level: str) -> Path | None:
    # find_spec of a top-level name locates it without importing it
    spec = importlib.util.find_spec(top_level)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _module_path(dotted: str) -> Path | None:
    top, _, rest = dotted.partition(".")
    root = _package_root(top)
    if root is None:
        return None
    base = root.joinpath(*rest.split(".")) if rest else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(module: str | None, level: int, importer: str | None, importer_path: Path) -> str | None:
    if level == 0:
        return module
    if importer is None:
        return None  # a relative import in a loose file: leave it to the import path
    package = importer if importer_path.name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    if not package:
        return None
    return f"{package}.{module}" if module else package


def _find_in_module(path: Path, name: str, dotted: str | None, hops: int) -> StaticSignature | None:
    """Find `name` in a module: a @task function defined there, or an import to follow."""
    if hops <= 0:
        return None
    tree, constants = _parsed(path)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            if not _is_task(node):
                return None
            return _signature(node, constants)
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) != name:
                    continue
                module = _absolute(node.module, node.level, dotted, path)
                if module is None:
                    return None
                target = _module_path(module)
                if target is None:
                    return None
                return _find_in_module(target, alias.name, module, hops - 1)
    return None


@functools.lru_cache(maxsize=256)
def _parsed(path: Path) -> tuple[ast.Module, dict[str, Any]]:
    # the registry module is read once for all benchmarks
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return tree, _module_constants(tree)


def _is_task(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        is_task = (isinstance(target, ast.Name) and target.id == "task") or (
            isinstance(target, ast.Attribute) and target.attr == "task"
        )
        if not is_task:
            continue
        # @task(name="other") registers under another name: not certain, use the import path
        if call and any(k.arg == "name" for k in call.keywords):
            return False
        return True
    return False


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name) and node.value is not None:
                try:
                    constants[targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return constants


def _default(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return NON_LITERAL


def _signature(node: ast.FunctionDef, constants: dict[str, Any]) -> StaticSignature:
    args = node.args
    positional = args.posonlyargs + args.args
    defaults: list[Any] = [REQUIRED] * (len(positional) - len(args.defaults)) + [
        _default(d, constants) for d in args.defaults
    ]
    params = {a.arg: d for a, d in zip(positional, defaults)}
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        params[arg.arg] = REQUIRED if default is None else _default(default, constants)
    return StaticSignature(params=params, accepts_any=args.kwarg is not None)
