"""What to run: (multiplier x benchmark x subset) expanded into cells, and the grid the two input files plan."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adaptive import AdaptiveSettings, AdaptiveSlice, shard_key
from .cells import CellKey, cell_label
from .config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_SHARED_SERVER,
    GENERATE_DEFAULTS,
    Benchmark,
    ConfigError,
    Deployment,
    Multiplier,
    load_benchmarks,
    load_deployments,
    parse_multiplier,
)
from .signature import TaskSignature, fewshot_default


@dataclass(frozen=True)
class RunOptions:
    multipliers: tuple[str, ...] = ()  # as given on the command line; empty with all=True
    all: bool = False
    benchmarks: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    limit: int | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_server: int | None = None  # cap on the sum over deployments sharing a URL
    generate: dict[str, Any] = field(default_factory=dict)  # per-run overrides of GENERATE_DEFAULTS
    sandbox: str | None = None  # --sandbox: override for tasks that run code
    shard: tuple[int, int] | None = None  # (i, n), 1-based
    adaptive: AdaptiveSettings | None = None  # --adaptive: batches until each cell is decided (core.adaptive)
    # test and demo switches, carried to every worker as fields of its job:
    retry_wait: float | None = None  # seconds between request retries instead of Inspect's backoff
    trust_gpqa_sha256: str | None = None  # the synthetic GPQA CSV's checksum, trusted (demo, tests)


@dataclass(frozen=True)
class Cell:
    """One eval: one benchmark (subset) against one multiplier's endpoint."""

    benchmark: str
    subset: str
    category: str
    multiplier: Multiplier
    eval_name: str
    task_args: dict[str, Any]
    generate: dict[str, Any]
    model_roles: dict[str, str]
    sandbox: str | None  # applied only to tasks that use a sandbox
    shots: int | None
    steering: dict[str, Any] | None = None  # the deployment's provenance, copied into the log's metadata
    epochs: int | None = None  # benchmarks.jsonl's epochs: instead of the task's own
    adaptive: AdaptiveSlice | None = None  # one batch of an adaptive study: these positions of the order

    @property
    def folder(self) -> str:
        """Relative log folder: <category>/multiplier_<label>, and an adaptive batch's own folder below it
        (each batch is an eval set of its own, resumed in place when a run is killed)."""
        base = f"{self.category}/{self.multiplier.folder}"
        return f"{base}/{self.adaptive.folder}" if self.adaptive else base

    @property
    def label(self) -> str:
        return cell_label(self.benchmark, self.subset)

    @property
    def cell_key(self) -> CellKey:
        return CellKey(self.benchmark, self.subset, self.multiplier.label, self.category)

    @property
    def key(self) -> str:
        """Stable identity used for sharding and reporting (and an adaptive batch's positions)."""
        key = f"{self.benchmark}|{self.subset}|{self.multiplier.value!r}"
        return f"{key}|{self.adaptive.start}-{self.adaptive.stop}" if self.adaptive else key


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    deployments: tuple[Deployment, ...]
    options: RunOptions
    warnings: tuple[str, ...]
    benchmarks: tuple[Benchmark, ...] = ()  # the chosen benchmarks, in benchmarks.jsonl order
    signatures: dict[str, TaskSignature] = field(default_factory=dict)  # benchmark name -> its task

    @property
    def planned_benchmarks(self) -> list[Benchmark]:
        """The chosen benchmarks that have a cell in this plan (a shard may hold fewer)."""
        names = {c.benchmark for c in self.cells}
        return [b for b in self.benchmarks if b.name in names]

    def by_multiplier(self) -> dict[float, list[Cell]]:
        groups: dict[float, list[Cell]] = {}
        for cell in self.cells:
            groups.setdefault(cell.multiplier.value, []).append(cell)
        return groups


def _select_deployments(deployments: list[Deployment], options: RunOptions) -> list[Deployment]:
    if options.all == bool(options.multipliers):
        raise ConfigError("command line", "give exactly one of --all or --multiplier M", field="--multiplier")
    if options.all:
        return list(deployments)
    chosen: list[Deployment] = []
    for raw in options.multipliers:
        wanted = parse_multiplier(raw, "command line", None, "--multiplier")
        match = [d for d in deployments if d.multiplier.value == wanted.value]
        if not match:
            known = ", ".join(d.multiplier.label for d in deployments)
            raise ConfigError(
                deployments[0].source if deployments else "deployments",
                f"no deployment for multiplier {raw} (known: {known})",
                field="--multiplier",
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def _select_benchmarks(benchmarks: list[Benchmark], options: RunOptions) -> list[Benchmark]:
    names = {b.name.lower() for b in benchmarks}
    for wanted in options.benchmarks:
        if wanted.lower() not in names:
            raise ConfigError(
                "command line",
                f"unknown benchmark {wanted!r} (known: {', '.join(b.name for b in benchmarks)})",
                field="--benchmark",
            )
    categories = {b.category.lower() for b in benchmarks}
    for wanted in options.categories:
        if wanted.lower() not in categories:
            raise ConfigError(
                "command line",
                f"unknown category {wanted!r} (known: {', '.join(sorted({b.category for b in benchmarks}))})",
                field="--category",
            )
    chosen = benchmarks
    if options.benchmarks:
        wanted_names = {w.lower() for w in options.benchmarks}
        chosen = [b for b in chosen if b.name.lower() in wanted_names]
    if options.categories:
        wanted_cats = {w.lower() for w in options.categories}
        chosen = [b for b in chosen if b.category.lower() in wanted_cats]
    return chosen


def effective_generate(bench: Benchmark, options: RunOptions) -> dict[str, Any]:
    """Study defaults, then per-run overrides, then the benchmark's own; null removes a setting."""
    merged: dict[str, Any] = {**GENERATE_DEFAULTS, **options.generate, **bench.generate}
    return {k: v for k, v in merged.items() if v is not None}


def task_args(bench: Benchmark, subset_args: dict[str, Any], sig: TaskSignature, sandbox: str | None) -> dict[str, Any]:
    """What the task is created with: its arguments, the subset's, shots, grader and sandbox."""
    args: dict[str, Any] = {**bench.task_args, **subset_args}
    if bench.shots is not None and sig.fewshot_param:
        args[sig.fewshot_param] = bench.shots
    if bench.grader and sig.grader_param:
        args[sig.grader_param] = None if bench.grader == "self" else bench.grader
    if sandbox and sig.sandbox_param:
        args[sig.sandbox_param] = sandbox
    return args


# per-run generation overrides -> the flag that sets each
_GENERATE_FLAGS = {"timeout": "--request-timeout", "max_tokens": "--max-tokens", "temperature": "--temperature"}


def _check_run_generate(generate: dict[str, Any]) -> None:
    """A zero request timeout would retry forever; NaN or negative settings are mistakes."""
    for name, value in generate.items():
        flag = _GENERATE_FLAGS.get(name, name)
        if name in ("timeout", "max_tokens") and value < 1:
            raise ConfigError("command line", f"must be at least 1 (got {value})", field=flag)
        if name == "temperature" and not (math.isfinite(value) and value >= 0):
            raise ConfigError("command line", f"must be a number >= 0 (got {value})", field=flag)


def _check_adaptive(options: RunOptions, deployments: list[Deployment]) -> None:
    """What --adaptive cannot honour: a sample limit, some multipliers only (a benchmark's
    multipliers must run together, multiplier 0 among them), settings outside their ranges."""
    settings = options.adaptive
    assert settings is not None
    if options.limit is not None:
        raise ConfigError(
            "command line", "--adaptive chooses each cell's samples itself; drop --limit", field="--limit"
        )
    if not options.all:
        raise ConfigError(
            "command line",
            "--adaptive runs every multiplier of a benchmark together "
            "(each decision compares with multiplier 0): use --all, not --multiplier",
            field="--multiplier",
        )
    if not any(d.multiplier.value == 0 for d in deployments):
        source = deployments[0].source if deployments else "deployments"
        raise ConfigError(
            source, "--adaptive compares every multiplier with multiplier 0, and there is none", field="multiplier"
        )
    for flag, value in (("--margin", settings.margin), ("--precision", settings.precision)):
        if not (math.isfinite(value) and 0 < value < 1):
            raise ConfigError("command line", f"must lie strictly between 0 and 1 (got {value})", field=flag)
    if settings.first_batch < 1:
        raise ConfigError("command line", f"must be at least 1 (got {settings.first_batch})", field="--first-batch")


def shard_of(cell: Cell, count: int, adaptive: bool = False) -> int:
    """0-based shard index of a cell: a hash of its identity, so it never depends on order. An
    adaptive run hashes the benchmark (subset) alone: its multipliers share a shard."""
    identity = shard_key(cell.benchmark, cell.subset) if adaptive else cell.key
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def build_plan(
    deployments: list[Deployment],
    benchmarks: list[Benchmark],
    signatures: dict[str, TaskSignature],
    options: RunOptions,
) -> Plan:
    if options.limit is not None and options.limit < 1:
        raise ConfigError("command line", "must be a positive number of samples", field="--limit")
    if options.max_connections < 1:
        raise ConfigError("command line", "must be at least 1", field="--max-connections")
    _check_run_generate(options.generate)
    chosen_deployments = _select_deployments(deployments, options)
    if options.adaptive is not None:
        _check_adaptive(options, chosen_deployments)
    connection_limits(chosen_deployments, options)  # a cap below one connection per multiplier fails here
    chosen_benchmarks = _select_benchmarks(benchmarks, options)
    warnings: list[str] = []
    cells: list[Cell] = []
    for bench in chosen_benchmarks:
        sig = signatures[bench.name]
        if bench.shots is None and sig.fewshot_param:
            warnings.append(
                f"{bench.name}: 'shots' is not set, so {bench.eval_name} runs with its default "
                f"{sig.fewshot_param}={fewshot_default(sig)}"
            )
        sandbox = options.sandbox or bench.sandbox
        roles = {"grader": bench.grader} if bench.grader and bench.grader != "self" and not sig.grader_param else {}
        for subset in bench.subsets:
            for dep in chosen_deployments:
                cells.append(
                    Cell(
                        benchmark=bench.name,
                        subset=subset.name,
                        category=bench.category,
                        multiplier=dep.multiplier,
                        eval_name=bench.eval_name,
                        task_args=task_args(bench, subset.task_args, sig, sandbox),
                        generate=effective_generate(bench, options),
                        model_roles=roles,
                        sandbox=sandbox,
                        shots=bench.shots,
                        steering=dep.steering,
                        epochs=bench.epochs,
                    )
                )
    if options.shard is not None:
        index, count = options.shard
        if not (1 <= index <= count):
            raise ConfigError(
                "command line", f"shard {index}/{count} is out of range (use i/n with 1 <= i <= n)", field="--shard"
            )
        cells = [c for c in cells if shard_of(c, count, options.adaptive is not None) == index - 1]
    return Plan(
        tuple(cells),
        tuple(chosen_deployments),
        options,
        tuple(warnings),
        tuple(chosen_benchmarks),
        {b.name: signatures[b.name] for b in chosen_benchmarks},
    )


def server_url(url: str) -> str:
    return url.rstrip("/")


@dataclass(frozen=True)
class ServerConnections:
    """The connections one server (one URL) gets: per multiplier, and the cap on their sum."""

    url: str
    multipliers: tuple[str, ...]  # labels of the deployments that share this URL
    per_multiplier: int
    cap: int | None  # the cap in force on the sum; None: --max-connections alone
    default_cap: bool = False  # the cap is the shared-server default, not --max-connections-per-server

    @property
    def at_most(self) -> int:
        """The most requests this server can see at once."""
        return self.per_multiplier * len(self.multipliers)

    def describe(self) -> str:
        n = len(self.multipliers)
        text = (
            f"{self.url}: {n} multiplier{'s' if n > 1 else ''}, {self.per_multiplier} connection"
            f"{'s' if self.per_multiplier > 1 else ''} each, at most {self.at_most} requests at once"
        )
        if self.cap is not None:
            origin = (
                ("the default for a server that several multipliers share; --max-connections-per-server to change it")
                if self.default_cap
                else "--max-connections-per-server"
            )
            text += f" (cap {self.cap}: {origin})"
        return text


def server_connections(
    deployments: list[Deployment] | tuple[Deployment, ...], options: RunOptions
) -> list[ServerConnections]:
    """Connections per server: --max-connections per multiplier, and with --max-connections-per-server N
    an even share of N among the deployments that share a URL, so their sum can never exceed N.
    Without that flag, a URL that several deployments share is capped at
    DEFAULT_MAX_CONNECTIONS_PER_SHARED_SERVER (at least one connection each); a URL of its own is not."""
    sharing: dict[str, list[str]] = {}
    for deployment in deployments:
        sharing.setdefault(server_url(deployment.url), []).append(deployment.multiplier.label)
    cap = options.max_connections_per_server
    if cap is not None:
        if cap < 1:
            raise ConfigError("command line", "must be at least 1", field="--max-connections-per-server")
        crowded = max((len(labels) for labels in sharing.values()), default=0)
        if cap < crowded:
            raise ConfigError(
                "command line",
                f"{cap} is fewer than the {crowded} multipliers that share one server "
                "(each needs at least one connection)",
                field="--max-connections-per-server",
            )
    servers = []
    for url, labels in sharing.items():
        if cap is not None:
            servers.append(ServerConnections(url, tuple(labels), min(options.max_connections, cap // len(labels)), cap))
        elif len(labels) > 1:
            shared = DEFAULT_MAX_CONNECTIONS_PER_SHARED_SERVER
            per = min(options.max_connections, max(1, shared // len(labels)))
            servers.append(ServerConnections(url, tuple(labels), per, shared, default_cap=True))
        else:
            servers.append(ServerConnections(url, tuple(labels), options.max_connections, None))
    return servers


def connection_limits(deployments: list[Deployment] | tuple[Deployment, ...], options: RunOptions) -> dict[float, int]:
    """Connections per multiplier (value), from `server_connections`."""
    per_url = {s.url: s.per_multiplier for s in server_connections(deployments, options)}
    return {d.multiplier.value: per_url[server_url(d.url)] for d in deployments}


def grid(deployments: list[Deployment], benchmarks: list[Benchmark]) -> list[CellKey]:
    """Every cell the two files describe, benchmark by benchmark, subset by subset, multiplier by multiplier."""
    return [
        CellKey(b.name, s.name, d.multiplier.label, b.category)
        for b in benchmarks
        for s in b.subsets
        for d in deployments
    ]


def planned_cells(deployments_path: str | Path, benchmarks_path: str | Path) -> list[CellKey] | None:
    """The grid of deployments.jsonl x benchmarks.jsonl, if both files exist (else None)."""
    if not (os.path.exists(deployments_path) and os.path.exists(benchmarks_path)):
        return None
    return grid(load_deployments(deployments_path), load_benchmarks(benchmarks_path))
