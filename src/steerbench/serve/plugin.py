"""steerbench's vLLM plugin (entry point `vllm.general_plugins`): steer the residual stream after a decoder layer.

vLLM calls `register()` in every process it starts (API server, engine core, workers). The plugin
acts only when the process was started with `STEERBENCH_STEERING=<settings file>` (written by
`steerbench serve`); anywhere else it returns at once and patches nothing. This module imports
only the standard library at import time, since vLLM loads it in processes that never steer.

Semantics: after decoder layer L (0-based, as `model.model.layers[L]` in transformers), at the
steered token positions, the residual stream h becomes
- operation `add`: h + m v;
- operation `ablate`: h - m (h·r) r with r = v/|v| (m = 1 removes the direction, m = 0 leaves h).
vLLM's Llama-style layers return `(hidden_states, residual)` and the next layer (or the final norm)
adds the two: the true residual stream is their SUM. Addition may go to either part; ablation
projects the sum and puts its change into `hidden_states`.

Positions (`positions` in the settings): `all` (prompt and generated tokens), `prompt` (positions
before the prompt's length), `generated` (positions at or after it: the decode steps, whose inputs
are generated tokens). A token's position is the model runner's own (`num_computed_tokens` plus its
offset in the step), so chunked prefill and prefix-cache hits split the same way.

Compiled graphs. vLLM compiles the model once (torch.compile, CUDA graphs on GPUs) and then skips
Dynamo's guards, so whatever a hook decides in Python while it is traced is frozen for good. The
hook therefore never branches on the step's values: each token's multiplier sits in a persistent
`SteeringTable` buffer of the steered layer, allocated at model load (before compilation), filled in
place by the model runner before each forward and zeroed after it. The graph reads it as an input
at every step; rows nobody filled read 0, which leaves the stream exactly as it was.

Proof of steering. vLLM can come up without ever running this hook (another plugin named in
`VLLM_PLUGINS`, a model runner the plugin does not patch, a graph that lost the hook), and such a
server answers unsteered. So the plugin appends to `<settings>.proof.jsonl` one `installed` line
per process that installed the hook (with vLLM's version, the model runner that loaded the model,
and whether it is compiled) and one `steered` line once a forward that should steer left a non-zero
multiplier in the table's `fired` buffer, written by the steered layers themselves (inside the
compiled graph too). `steerbench serve` sends a probe request and prints `ready:` only when the
`steered` line appears (`steerbench.serve.selftest`).

Two modes, written in the settings file:
- fixed: one multiplier for the whole server (one server per multiplier);
- per_request: each request's `vllm_xargs.steer_multiplier` (vLLM passes it to
  `SamplingParams.extra_args`); a request without it is unsteered. Each token of a mixed batch gets
  its own request's multiplier: the model runner's `_prepare_inputs` lays tokens out request by
  request in `input_batch.req_ids` order, with `num_scheduled_tokens` tokens each.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

SETTINGS_ENV = "STEERBENCH_STEERING"
REQUEST_FIELD = "steer_multiplier"
SETTINGS_FORMAT = 1
OPERATIONS = ("add", "ablate")
POSITIONS = ("all", "prompt", "generated")

logger = logging.getLogger("steerbench.serve.plugin")


def register() -> None:
    """vLLM's plugin hook. Without steering settings in this process's environment: nothing at all."""
    settings_path = os.environ.get(SETTINGS_ENV)
    if not settings_path:
        return
    settings = read_settings(Path(settings_path))
    _proof.path = proof_path(Path(settings_path))
    _patch_model_loader(settings)
    _quiet_the_shutdown_race()


def read_settings(path: Path) -> dict[str, Any]:
    settings = json.loads(path.read_text())
    if settings.get("format") != SETTINGS_FORMAT:
        raise RuntimeError(
            f"{path}: steering settings of format {settings.get('format')!r}, expected {SETTINGS_FORMAT}"
        )
    return settings


OUTPUT_HANDLER_FAILED = "AsyncLLM output_handler failed."  # vLLM's own message, matched exactly


class ShutdownRaceFilter(logging.Filter):
    """vLLM (0.32 and others) stops the engine core in AsyncLLM.shutdown before it cancels its output
    handler, which can then log the EngineDeadError the shutdown itself caused, with a traceback, on
    a clean SIGTERM (vllm-project/vllm#48745). Once a shutdown has begun, that one record becomes an
    INFO line without traceback; the same error at any other time is logged as vLLM logs it."""

    def __init__(self, dead_error: type[BaseException]):
        super().__init__()
        self.dead_error = dead_error
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if self.stopping and record.msg == OUTPUT_HANDLER_FAILED and isinstance(error, self.dead_error):
            record.msg = (
                "output handler stopped by the shutdown (the EngineDeadError here is expected: vllm-project/vllm#48745)"
            )
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _quiet_the_shutdown_race() -> None:
    try:
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:  # another vLLM layout: its logs stay as they are
        return
    original = AsyncLLM.shutdown
    if getattr(original, "_steerbench_filter", None) is not None:
        return
    race = ShutdownRaceFilter(EngineDeadError)

    def shutdown(self, *args, **kwargs):
        race.stopping = True
        return original(self, *args, **kwargs)

    shutdown._steerbench_filter = race  # type: ignore[attr-defined]
    AsyncLLM.shutdown = shutdown  # type: ignore[method-assign]
    logging.getLogger("vllm.v1.engine.async_llm").addFilter(race)


def _patch_model_loader(settings: dict[str, Any]) -> None:
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    original = BaseModelLoader.load_model
    if getattr(original, "_steerbench_steering", False):  # plugins may be loaded twice in one process
        return

    def load_model(self, vllm_config, model_config, *args, **kwargs):
        model = original(self, vllm_config, model_config, *args, **kwargs)
        eager = getattr(getattr(vllm_config, "model_config", None), "enforce_eager", True)
        install_steering(
            model,
            settings,
            runner=_calling_runner(),
            rows=table_rows(vllm_config),
            graph="eager" if eager else "compiled",
        )
        return model

    load_model._steerbench_steering = True  # type: ignore[attr-defined]
    BaseModelLoader.load_model = load_model  # type: ignore[method-assign]


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (`...layers`, an nn.ModuleList), found by name."""
    import torch.nn as nn

    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if name.split(".")[-1] in ("layers", "h", "blocks") and isinstance(module, nn.ModuleList)
    ]
    if not candidates:
        raise RuntimeError("steerbench steering: no decoder layer list (e.g. model.layers) in this model")
    return min(candidates, key=lambda item: item[0].count("."))[1]


def proof_path(settings_path: Path) -> Path:
    return settings_path.with_name(settings_path.name + ".proof.jsonl")


class Proof:
    """Appends the plugin's evidence for `steerbench serve`; each event at most once per process."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written: set[str] = set()

    def record(self, event: str, **fields: Any) -> None:
        if self.path is None or event in self.written:
            return
        self.written.add(event)
        line = json.dumps({"event": event, "pid": os.getpid(), **fields})
        with open(self.path, "a", encoding="utf-8") as out:  # a few processes may append; each line is one write
            out.write(line + "\n")


_proof = Proof(None)


def _calling_runner() -> str:
    """The model runner that is loading the model, read from the call stack (vLLM's own object, not an env var)."""
    import inspect

    for frame_info in inspect.stack()[2:40]:
        owner = frame_info.frame.f_locals.get("self")
        if owner is not None and type(owner).__name__.endswith("ModelRunner"):
            return f"{type(owner).__module__}.{type(owner).__qualname__}"
    return "unknown"


def runner_is_patched(runner: str) -> bool:
    """The plugin patches the V1 runner (vllm.v1.worker.gpu_model_runner) and the CPU runner built on it;
    the V2 runner (vllm.v1.worker.gpu.*) runs a path these patches never see."""
    return runner.startswith(("vllm.v1.worker.gpu_model_runner.", "vllm.v1.worker.cpu_model_runner."))


class SteeringTable:
    """Each token's multiplier for the forward about to run, in persistent tensors on the model's device.

    Allocated when the model is loaded, before vLLM compiles it or captures graphs, and registered as
    buffers of the steered decoder layers, so a compiled graph takes them as inputs and reads their
    current contents at every step. The model runner fills `multipliers` in place before each forward
    and zeros it after: rows nobody filled (padding, warm-up, dummy runs) read 0, and 0 leaves the
    stream exactly as it was. `fired` is the in-graph proof: every steered layer writes into it the
    largest |multiplier| it applied, and the runner reads it after the forward (`steerbench serve`
    prints `ready:` only once a forward at a non-zero multiplier wrote it)."""

    MULTIPLIERS = "steerbench_multipliers"
    FIRED = "steerbench_fired"

    def __init__(self, rows: int, device: Any) -> None:
        import torch

        self.rows = rows
        self.multipliers = torch.zeros(rows, dtype=torch.float32, device=device)
        self.fired = torch.zeros(1, dtype=torch.float32, device=device)
        self.filled = 0  # rows written by the last fill, zeroed again by clear()
        self.nonzero = False  # whether the last fill steers any token (known on the host, no sync)

    def attach(self, layer: Any) -> None:
        layer.register_buffer(self.MULTIPLIERS, self.multipliers, persistent=False)
        layer.register_buffer(self.FIRED, self.fired, persistent=False)

    def fill(self, values: Any) -> None:
        import torch

        count = len(values)
        if count > self.rows:
            raise RuntimeError(f"steerbench steering: a step of {count} tokens, the table holds {self.rows}")
        self.clear()
        if count:
            self.multipliers[:count].copy_(torch.from_numpy(values).to(torch.float32), non_blocking=True)
        self.filled = count
        self.nonzero = bool((values != 0).any())

    def clear(self) -> None:
        if self.filled:
            self.multipliers[: self.filled].zero_()
        self.filled, self.nonzero = 0, False


def table_rows(vllm_config: Any) -> int:
    """Rows enough for any forward: the most tokens a step schedules, or the largest padded graph size."""
    scheduler = getattr(vllm_config, "scheduler_config", None)
    compilation = getattr(vllm_config, "compilation_config", None)
    sizes = [
        getattr(scheduler, "max_num_batched_tokens", None),
        getattr(scheduler, "max_num_seqs", None),
        getattr(compilation, "max_cudagraph_capture_size", None),
    ]
    known = [int(size) for size in sizes if isinstance(size, int)]
    return max(known) if known else 65536


def steering_choice(settings: dict[str, Any]) -> tuple[str, str]:
    """(operation, positions) of a settings file; files written before these existed mean (add, all)."""
    operation, positions = settings.get("operation", "add"), settings.get("positions", "all")
    if operation not in OPERATIONS or positions not in POSITIONS:
        raise RuntimeError(f"steerbench steering: operation {operation!r} / positions {positions!r} not understood")
    return operation, positions


def install_steering(
    model: Any, settings: dict[str, Any], runner: str = "unknown", rows: int = 65536, graph: str = "eager"
) -> SteeringTable | None:
    """Hook the steered layers; from then on the model runner fills the table before each forward."""
    import torch

    layers = decoder_layers(model)
    parameter = next(model.parameters())
    operation, positions = steering_choice(settings)
    _proof.record(
        "installed",
        runner=runner,
        runner_patched=runner_is_patched(runner),
        vllm=_vllm_version(),
        mode=settings["mode"],
        operation=operation,
        positions=positions,
        graph=graph,
    )
    fixed = settings["mode"] == "fixed"
    if fixed and float(settings["multiplier"]) == 0.0:
        logger.warning("steerbench steering: multiplier 0, the unsteered model")
        return None  # exactly the unsteered model: no hook at all
    table = SteeringTable(rows, parameter.device)
    _patch_model_runner(table, settings)
    for key, values in settings["layers"].items():
        index = int(key)
        vector = torch.tensor(values, dtype=parameter.dtype, device=parameter.device)
        if operation == "ablate":
            vector = unit_direction(vector, index)
        steer_layer(layers[index], vector, operation, table)
    logger.warning(
        "steerbench steering: %s %s at %s positions, layers %s, vector sha256 %s",
        operation,
        "per-request multipliers" if not fixed else f"multiplier {settings['multiplier']}",
        positions,
        sorted(int(k) for k in settings["layers"]),
        settings.get("vector_sha256", "?")[:12],
    )
    return table


def unit_direction(vector: Any, layer: int) -> Any:
    norm = vector.norm()
    if not float(norm) > 0.0:  # `steerbench serve` refuses this before starting; a hand-made settings file may not
        raise RuntimeError(f"steerbench steering: layer {layer}: ablation needs a non-zero vector")
    return vector / norm


def residual_stream(output: Any) -> Any:
    """The residual stream after the layer: `hidden_states + residual` for vLLM's Llama-style
    `(hidden_states, residual)` outputs, else the output itself."""
    if isinstance(output, tuple):
        hidden = output[0]
        residual = output[1] if len(output) > 1 else None
        if residual is not None and getattr(residual, "shape", None) == hidden.shape:
            return hidden + residual
        return hidden
    return output


def steering_delta(output: Any, scale: Any, vector: Any, operation: str) -> Any:
    """What the residual stream gains: `scale × v` (add), or `-scale × (h·r) r` with r = `vector`,
    already unit length (ablate). `scale` is a number or a [tokens, 1] column."""
    if operation == "add":
        return scale * vector
    stream = residual_stream(output)
    return -scale * (stream @ vector).unsqueeze(-1) * vector


def _add_to_stream(output: Any, delta: Any) -> Any:
    if isinstance(output, tuple):
        return (output[0] + delta, *output[1:])
    return output + delta


def _vllm_version() -> str:
    try:
        from importlib.metadata import version

        return version("vllm")
    except Exception:  # the CPU build may carry only the alias; the proof line says so
        return "unknown"


def steer_layer(layer: Any, vector: Any, operation: str, table: SteeringTable) -> None:
    """After `layer`, steer each token by its row of `table` (`vector` already a unit direction for ablate)."""
    table.attach(layer)
    layer.register_forward_hook(_table_hook(vector, operation, table))


def _table_hook(vector: Any, operation: str, table: SteeringTable):
    import torch

    def hook(module, args, output):
        compiling = torch.compiler.is_compiling()
        if not compiling and not table.nonzero:
            return output  # eager and nothing steered this step: skip the arithmetic (a compiled graph must not branch)
        hidden = output[0] if isinstance(output, tuple) else output
        # the layer's own buffers: a compiled graph reads them as inputs, fresh at every step
        multipliers = getattr(module, SteeringTable.MULTIPLIERS)
        fired = getattr(module, SteeringTable.FIRED)
        scale = multipliers[: hidden.shape[0]].to(dtype=hidden.dtype).unsqueeze(-1)
        fired.copy_(torch.maximum(fired, multipliers[: hidden.shape[0]].abs().amax().reshape(1)))
        return _add_to_stream(output, steering_delta(output, scale, vector, operation))

    return hook


def steered_positions(positions: str, num_scheduled: Any, num_computed: Any, num_prompt: Any) -> Any:
    """Which tokens of a step are steered (bool per token, laid out request by request): token j of
    request i sits at position num_computed[i] + j; it is a prompt token below num_prompt[i]."""
    import numpy as np

    num_scheduled = np.asarray(num_scheduled, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(num_scheduled)[:-1]])
    offsets = np.arange(int(num_scheduled.sum())) - np.repeat(starts, num_scheduled)
    token_positions = np.repeat(np.asarray(num_computed, dtype=np.int64), num_scheduled) + offsets
    prompt = token_positions < np.repeat(np.asarray(num_prompt, dtype=np.int64), num_scheduled)
    if positions == "all":
        return np.ones_like(prompt)
    return prompt if positions == "prompt" else ~prompt


def token_multipliers(per_request: Any, positions: str, num_scheduled: Any, num_computed: Any, num_prompt: Any) -> Any:
    """Each token's multiplier: its request's, where its position is steered, else 0."""
    import numpy as np

    per_token = np.repeat(np.asarray(per_request, dtype=np.float64), np.asarray(num_scheduled, dtype=np.int64))
    return np.where(steered_positions(positions, num_scheduled, num_computed, num_prompt), per_token, 0.0)


def request_multiplier(sampling_params: Any) -> float:
    extra = getattr(sampling_params, "extra_args", None) or {}
    value = extra.get(REQUEST_FIELD, 0.0)
    try:
        return float(value)
    except (TypeError, ValueError):
        logger.warning("steerbench steering: %s=%r is not a number; the request runs unsteered", REQUEST_FIELD, value)
        return 0.0


def _patch_model_runner(table: SteeringTable, settings: dict[str, Any]) -> None:
    import numpy as np
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    original = GPUModelRunner._prepare_inputs
    if getattr(original, "_steerbench_steering", False):
        return
    fixed = None if settings["mode"] == "per_request" else float(settings["multiplier"])
    positions = steering_choice(settings)[1]

    def _prepare_inputs(self, scheduler_output, num_scheduled_tokens, *args, **kwargs):
        batch = self.input_batch
        num_reqs = batch.num_reqs
        # read before the step: these are the counts the runner computes this step's positions from
        num_computed = batch.num_computed_tokens_cpu[:num_reqs].copy()
        num_prompt = batch.num_prompt_tokens[:num_reqs].copy()
        result = original(self, scheduler_output, num_scheduled_tokens, *args, **kwargs)
        if fixed is None:
            req_ids = batch.req_ids[:num_reqs]
            per_request = np.array([request_multiplier(self.requests[req_id].sampling_params) for req_id in req_ids])
        else:
            per_request = np.full(num_reqs, fixed)
        table.fill(token_multipliers(per_request, positions, num_scheduled_tokens, num_computed, num_prompt))
        return result

    forward = GPUModelRunner._model_forward

    def _model_forward(self, *args, **kwargs):
        steering = table.nonzero
        try:
            return forward(self, *args, **kwargs)
        finally:
            # Forwards that do not come through _prepare_inputs (warm-up, dummy runs) read zeros.
            table.clear()
            if steering and "steered" not in _proof.written:
                _record_fired(table)

    _prepare_inputs._steerbench_steering = True  # type: ignore[attr-defined]
    GPUModelRunner._prepare_inputs = _prepare_inputs  # type: ignore[method-assign]
    GPUModelRunner._model_forward = _model_forward  # type: ignore[method-assign]


def _record_fired(table: SteeringTable) -> None:
    """After a forward that should have steered: did the layers (compiled or not) apply a non-zero
    multiplier? Read once per process, until the proof is written: one host sync at start-up."""
    fired = float(table.fired.item())
    table.fired.zero_()
    if fired > 0.0:
        _proof.record("steered", largest_multiplier=fired)
