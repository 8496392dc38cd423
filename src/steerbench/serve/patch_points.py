"""Does a vLLM release still have every place steerbench's plugin patches? Read from its source, never imported.

The plugin (`steerbench.serve.plugin`) wraps vLLM private methods. A vLLM release that renames or
removes one of them would load the plugin and then fail, or worse, serve unsteered. This module
checks a release statically: it parses the Python files of an installed vLLM or of a wheel (a zip)
with `ast`, so it needs neither a GPU nor vLLM's dependencies. Standard library only.

Each `PatchPoint` names a file, a class, and either a method with the leading parameters the
plugin calls it with, or an attribute the plugin reads, and the steering modes that need it:
"fixed" (one multiplier per server) needs the model loader and the V1 model runner's `_prepare_inputs`
/ `_model_forward` and input batch (they fill the per-token table every step, which also decides the
steered positions); "per_request" (one server for every multiplier) also needs the runner's requests
and the batch's request ids. A release that passes has every patch point; only the vllm lane proves
that it steers.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FIXED = "fixed"
PER_REQUEST = "per_request"


@dataclass(frozen=True)
class PatchPoint:
    path: str  # inside the vllm package, e.g. "vllm/v1/worker/gpu_model_runner.py"
    cls: str
    member: str
    params: tuple[str, ...] = ()  # leading parameters of a method, self first; () for an attribute
    attribute: bool = False  # True: `member` is an attribute or property, not a method
    base: str = ""  # a base class `cls` must have
    modes: tuple[str, ...] = (FIXED, PER_REQUEST)

    def label(self) -> str:
        what = f"{self.cls}({self.base})" if self.base else f"{self.cls}.{self.member}"
        return f"{self.path}: {what}"


PATCH_POINTS: tuple[PatchPoint, ...] = (
    PatchPoint(
        "vllm/model_executor/model_loader/base_loader.py",
        "BaseModelLoader",
        "load_model",
        ("self", "vllm_config", "model_config"),
    ),
    # The V1 model runner: the only runner steering is proven on (vllm-lens reports that the V2 runner
    # skips forward hooks). Both modes fill the plugin's per-token table in `_prepare_inputs` and
    # clear it after `_model_forward`; one-server mode also reads each request's own multiplier.
    PatchPoint("vllm/v1/worker/gpu_model_runner.py", "GPUModelRunner", "execute_model", ("self",)),
    PatchPoint(
        "vllm/v1/worker/gpu_model_runner.py",
        "GPUModelRunner",
        "_prepare_inputs",
        ("self", "scheduler_output", "num_scheduled_tokens"),
    ),
    PatchPoint("vllm/v1/worker/gpu_model_runner.py", "GPUModelRunner", "_model_forward", ("self",)),
    PatchPoint(
        "vllm/v1/worker/gpu_model_runner.py", "GPUModelRunner", "requests", attribute=True, modes=(PER_REQUEST,)
    ),
    PatchPoint("vllm/v1/worker/gpu_model_runner.py", "GPUModelRunner", "input_batch", attribute=True),
    PatchPoint("vllm/v1/worker/gpu_input_batch.py", "InputBatch", "req_ids", attribute=True, modes=(PER_REQUEST,)),
    PatchPoint("vllm/v1/worker/gpu_input_batch.py", "InputBatch", "num_reqs", attribute=True),
    # each token's position (--positions prompt|generated): the runner's own counts
    PatchPoint("vllm/v1/worker/gpu_input_batch.py", "InputBatch", "num_computed_tokens_cpu", attribute=True),
    PatchPoint("vllm/v1/worker/gpu_input_batch.py", "InputBatch", "num_prompt_tokens", attribute=True),
    # the CPU build's runner must inherit the patched GPU runner's methods
    PatchPoint("vllm/v1/worker/cpu_model_runner.py", "CPUModelRunner", "", base="GPUModelRunner"),
)


@dataclass(frozen=True)
class Finding:
    point: PatchPoint
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    source: str
    version: str
    findings: tuple[Finding, ...]

    def supports(self, mode: str) -> bool:
        return all(f.ok for f in self.findings if mode in f.point.modes)

    def lines(self) -> list[str]:
        out = [f"vLLM {self.version} ({self.source})"]
        out += [f"  {'ok     ' if f.ok else 'MISSING'} {f.point.label()}: {f.detail}" for f in self.findings]
        out += [
            f"  mode {mode}: {'every patch point present' if self.supports(mode) else 'NOT SUPPORTED'}"
            for mode in (FIXED, PER_REQUEST)
        ]
        return out


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name), None)


def _base_names(cls: ast.ClassDef) -> set[str]:
    return {ast.unparse(base).rsplit(".", 1)[-1] for base in cls.bases}


def _has_attribute(cls: ast.ClassDef, name: str) -> bool:
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True  # a property or method of that name
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == name and ast.unparse(target.value) == "self":
                return True
            if isinstance(target, ast.Name) and target.id == name:
                return True
    return False


def check_point(point: PatchPoint, read: Callable[[str], str | None]) -> Finding:
    source = read(point.path)
    if source is None:
        return Finding(point, False, "file not in this release")
    cls = _class(ast.parse(source), point.cls)
    if cls is None:
        return Finding(point, False, f"no class {point.cls}")
    if point.base:
        ok = point.base in _base_names(cls)
        return Finding(point, ok, f"bases {sorted(_base_names(cls))}")
    if point.attribute:
        ok = _has_attribute(cls, point.member)
        return Finding(point, ok, "present" if ok else f"no attribute {point.member}")
    method = next(
        (
            node
            for node in cls.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == point.member
        ),
        None,
    )
    if method is None:
        return Finding(point, False, f"no method {point.member}")
    params = tuple(arg.arg for arg in method.args.posonlyargs + method.args.args)
    ok = params[: len(point.params)] == point.params
    return Finding(
        point, ok, f"({', '.join(params)})" + ("" if ok else f", expected to start ({', '.join(point.params)})")
    )


def _version(read: Callable[[str], str | None], fallback: str) -> str:
    text = read("vllm/_version.py") or ""
    match = re.search(r"""(?:__version__|version)\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", text)
    return match.group(1) if match else fallback


def check_tree(root: Path) -> Report:
    """`root` holds the `vllm` package folder (a site-packages folder)."""

    def read(path: str) -> str | None:
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    return Report(str(root), _version(read, "?"), tuple(check_point(p, read) for p in PATCH_POINTS))


def check_wheel(wheel: Path) -> Report:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

        def read(path: str) -> str | None:
            return archive.read(path).decode("utf-8") if path in names else None

        fallback = wheel.name.split("-")[1] if wheel.name.count("-") >= 2 else "?"
        return Report(wheel.name, _version(read, fallback), tuple(check_point(p, read) for p in PATCH_POINTS))
