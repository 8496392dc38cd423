"""One `steerbench serve` session: check the inputs, plan, start, announce `ready`, serve until stopped."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from .launcher import (
    RunningServer,
    ServeError,
    check_ports_free,
    start_servers,
    stop_servers,
    wait_until_ready,
    watch,
    write_deployments,
    write_private,
)
from .model_info import read_model_shape
from .plan import ServeOptions, ServePlan, deployment_lines, plan_servers
from .selftest import SteeringNotActive, prove_steering
from .vectors import SteeringVectors, VectorError, load_vectors, scale_to_residual

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ServeRequest:
    options: ServeOptions
    vector: Path
    layer: int | None
    normalize: bool
    out: Path
    log_dir: Path
    dry_run: bool = False
    startup_timeout: float = 900.0
    scale: str = "raw"  # or "residual": each layer's vector as long as its mean residual-stream norm


def installed_vllm_version() -> str | None:
    for name in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def vllm_is_cpu_build() -> bool:
    try:
        metadata.version("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        pass
    try:
        return "cpu" in metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return False


def make_keys(options: ServeOptions, count: int) -> tuple[list[str], list[str] | None]:
    """One random key per server; with --key-env, a key already exported as PREFIX_i is kept."""
    if not options.key_env:
        return [f"sb-{secrets.token_urlsafe(24)}" for _ in range(count)], None
    names = [f"{options.key_env}_{index + 1}" for index in range(count)]
    keys = [os.environ.get(name) or f"sb-{secrets.token_urlsafe(24)}" for name in names]
    return keys, ["${" + name + "}" for name in names]


def build_plan(request: ServeRequest) -> tuple[ServePlan, list[str] | None]:
    """Everything that can be checked before starting anything: model, vector, layer, ports."""
    shape = read_model_shape(request.options.model)
    vectors = load_vectors(
        request.vector,
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        layer=request.layer,
        normalize=request.normalize,
        model_type=shape.model_type,
    )
    notes = [f"warning: {warning}" for warning in vectors.warnings]
    if request.scale == "residual":
        vectors, note = residual_scaled(request, vectors)
        notes += [note] if note else []
    if vectors.residual_norms and all(layer in vectors.residual_norms for layer in vectors.layers):
        notes.append(
            f"steering ({vectors.scale} scale): "
            + "; ".join(
                f"layer {layer} vector norm {np.linalg.norm(vectors.vectors[layer]):.4g}, mean residual norm "
                f"{vectors.residual_norms[layer]:.4g}"
                for layer in vectors.layers
            )
        )
    count = 1 if request.options.one_server else len(request.options.multipliers)
    keys, key_refs = make_keys(request.options, count)
    plan = plan_servers(request.options, vectors, keys, python=sys.executable)
    return replace(plan, notes=(*notes, *plan.notes)), key_refs


def residual_scaled(request: ServeRequest, vectors: SteeringVectors) -> tuple[SteeringVectors, str | None]:
    """--scale residual: norms from the file's metadata, or a short calibration pass in transformers."""
    if request.normalize:
        raise VectorError(
            "--scale residual with --normalize: choose one (residual scaling sets each vector's norm itself)"
        )
    if all(layer in vectors.residual_norms for layer in vectors.layers):
        return scale_to_residual(vectors, vectors.residual_norms, request.vector), None
    from .extract import CALIBRATION_PROMPTS, ExtractionError, calibrate_residual_norms

    try:
        norms = calibrate_residual_norms(request.options.model, vectors.layers)
    except ExtractionError as problem:
        raise VectorError(f"{request.vector} records no residual-stream norms, and {problem}") from None
    note = (
        f"note: {request.vector} records no residual-stream norms; measured over {len(CALIBRATION_PROMPTS)} "
        f"built-in prompts: " + ", ".join(f"layer {layer} {norms[layer]:.4g}" for layer in vectors.layers)
    )
    return scale_to_residual(vectors, norms, request.vector), note


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ServeError(
            "vLLM is not installed in this environment: pip install 'steerbench[serve]' (GPU) "
            "or run scripts/setup_vllm_cpu.sh VENV (CPU)"
        )


def prove_every_server_steers(running: list[RunningServer], log_dir: Path) -> None:
    """No `ready:` from a server that answers unsteered (serve.selftest says how it is told)."""
    for server in running:
        try:
            prove_steering(server.spec.url, server.spec.key, server.spec.settings, log_dir / server.spec.settings_name)
        except SteeringNotActive as problem:
            raise ServeError(
                f"the vLLM server on port {server.spec.port} does not steer: {problem}. "
                f"Stopping every server; its log is {server.log_path}"
            ) from None
        except (OSError, ValueError, KeyError) as problem:  # URLError is an OSError
            raise ServeError(
                f"the steering probe to the vLLM server on port {server.spec.port} failed: {problem}; "
                f"see {server.log_path}"
            ) from None


def serve(request: ServeRequest, echo: Echo, stop: threading.Event | None = None) -> int:
    """Run the session; returns the exit code. Ctrl-C and SIGTERM stop every server it started."""
    plan, key_refs = build_plan(request)
    for note in plan.notes:
        echo(note)
    if request.dry_run:
        for server in plan.servers:
            labels = ",".join(m.label for m in server.multipliers)
            echo(f"# multiplier {labels} on {server.url}")
            echo(server.command_line(request.log_dir / server.settings_name))
        return 0
    check_ports_free(plan)
    _require_vllm()
    stop = stop or threading.Event()
    previous = (
        {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    running = start_servers(plan, request.log_dir)
    try:
        echo(f"starting {len(running)} vLLM server(s), logs in {request.log_dir}")
        wait_until_ready(
            running,
            request.startup_timeout,
            stop,
            lambda server, seconds: echo(f"  {server.spec.url} answers after {seconds:.0f} s"),
        )
        prove_every_server_steers(running, request.log_dir)
        echo(f"  steering proven on {len(running)} server(s): the plugin's hook ran on a probe request")
        lines = deployment_lines(plan, key_refs)
        write_deployments(request.out, lines)
        if key_refs:
            env_file = request.out.with_name(request.out.name + ".env")
            write_private(
                env_file,
                "".join(
                    f"export {ref[2:-1]}={shlex.quote(server.key)}\n" for ref, server in zip(key_refs, plan.servers)
                ),
            )
            echo(f"keys: run `. {shlex.quote(str(env_file))}` (mode 0600) in the shell that runs steerbench")
        echo(f"ready: {len(lines)} multiplier(s) on {len(running)} server(s), deployments in {request.out}")
        died = watch(running, stop)
        if died is not None:
            echo(
                f"error: the vLLM server on port {died.spec.port} exited with code {died.process.returncode}; stopping the others"
            )
            return 1
        echo("stopping")
        return 0
    except KeyboardInterrupt:
        echo("stopping")
        return 130
    finally:
        stop_servers(running)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
