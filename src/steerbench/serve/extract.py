"""Making a steering vector from contrast pairs (`steerbench vector`), and the residual-stream norms `serve --scale residual` needs.

Layer convention, the one the vLLM plugin steers: the activation of layer L is the output of
decoder layer L (`model.model.layers[L]`, 0-based), read with a forward hook on that module. In
transformers' `output_hidden_states` that is `hidden_states[L + 1]` for every layer but the last
(transformers' last entry has the final norm applied; the hook takes the layer's raw output).

torch and transformers are imported inside the functions that use them; the combining functions
(`mean_difference`, `principal_direction`, `random_like`) are numpy alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pairs import ContrastPair, Message, PairsFile, Side
from .vectors import LAYER_KEY_PREFIX, RESIDUAL_NORMS_KEY, VectorFile, file_sha256, write_safetensors

METHODS = ("mean-diff", "pca")
DTYPES = ("float32", "bfloat16", "float16")
FORMAT_TAG = "steerbench-vector/1"
# A few everyday prompts for `serve --scale residual` when a vector file records no residual norms.
CALIBRATION_PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain how a bicycle stays upright.",
    "List three uses for a paperclip.",
    "What should I cook for dinner tonight?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "How do vaccines work?",
    "Translate 'good morning' into Spanish and German.",
)


class ExtractionError(ValueError):
    """A problem making a vector (missing packages, a model without a chat template): one line, exit 2."""


@dataclass(frozen=True)
class ExtractionSettings:
    model: str
    layers: tuple[int, ...]  # 0-based decoder layers, already checked against the model
    method: str = "mean-diff"
    position: str = "last-prompt"
    device: str = "auto"
    dtype: str | None = None  # None: float32 on a CPU, bfloat16 on a GPU


@dataclass(frozen=True)
class Extracted:
    vectors: dict[int, np.ndarray]
    residual_norms: dict[int, float]
    residual_tokens: int
    warnings: tuple[str, ...]


# ---------------------------------------------------------------- combining pair differences (numpy)


def mean_difference(differences: np.ndarray) -> np.ndarray:
    """CAA: the mean over pairs of h_positive - h_negative. `differences` is [pairs, hidden]."""
    return differences.mean(axis=0)


def principal_direction(differences: np.ndarray) -> np.ndarray:
    """The first principal component of the pair differences, uncentred, pointing along the mean difference
    and as long as the mean difference's projection onto it.

    Uncentred because the differences are ordered (positive minus negative): centring would subtract
    the very shift the pairs share. This is the top eigenvector of D^T D, which is what centred PCA
    finds on differences whose signs are shuffled at random (as RepE does).
    """
    _, _, right = np.linalg.svd(differences, full_matrices=False)
    direction = right[0]
    projection = float(direction @ mean_difference(differences))
    if projection < 0:
        direction, projection = -direction, -projection
    return projection * direction


def combine(differences: np.ndarray, method: str) -> np.ndarray:
    if method == "mean-diff":
        return mean_difference(differences)
    if method == "pca":
        return principal_direction(differences)
    raise ExtractionError(f"--method {method!r}: use one of {', '.join(METHODS)}")


def random_like(source: dict[int, np.ndarray], seed: int) -> dict[int, np.ndarray]:
    """A random direction per layer (normal, seeded, drawn in layer order) with the source vector's norm at that layer."""
    rng = np.random.default_rng(seed)
    result = {}
    for layer in sorted(source):
        draw = rng.standard_normal(source[layer].shape[0])
        result[layer] = draw / np.linalg.norm(draw) * np.linalg.norm(source[layer])
    return result


# ---------------------------------------------------------------- writing


def layer_tensors(vectors: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{LAYER_KEY_PREFIX}{layer}": vectors[layer].astype(np.float32) for layer in sorted(vectors)}


def norms_text(norms: dict[int, float]) -> str:
    return json.dumps({str(layer): round(float(norms[layer]), 6) for layer in sorted(norms)})


def write_extracted(out: Path, settings: ExtractionSettings, pairs: PairsFile, extracted: Extracted) -> None:
    metadata = {
        "format": FORMAT_TAG,
        "model": settings.model,
        "layers": json.dumps(sorted(extracted.vectors)),
        "method": settings.method,
        "position": settings.position,
        "pairs": str(len(pairs.pairs)),
        "pairs_file": pairs.path.name,
        "pairs_sha256": pairs.sha256,
        RESIDUAL_NORMS_KEY: norms_text(extracted.residual_norms),
        "residual_norm_tokens": str(extracted.residual_tokens),
        "layer_convention": "output of decoder layer L (model.model.layers[L], 0-based)",
    }
    write_safetensors(out, layer_tensors(extracted.vectors), metadata)


def write_random(out: Path, source: VectorFile, vectors: dict[int, np.ndarray], seed: int) -> None:
    metadata = {
        "format": FORMAT_TAG,
        "layers": json.dumps(sorted(vectors)),
        "method": "random",
        "seed": str(seed),
        "source_file": source.path.name,
        "source_sha256": file_sha256(source.path),
        "note": "a random direction per layer with the same norm as the source vector at that layer",
    }
    # The same model and layers as the source: its residual norms hold here too.
    metadata.update(
        {
            key: value
            for key, value in source.metadata.items()
            if key in ("model", RESIDUAL_NORMS_KEY, "layer_convention")
        }
    )
    write_safetensors(out, layer_tensors(vectors), metadata)


# ---------------------------------------------------------------- transformers


def require_torch(what: str = "`steerbench vector`") -> None:
    missing = []
    for name in ("torch", "transformers"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExtractionError(f"{what} needs {' and '.join(missing)}: pip install 'steerbench[vector]'")


def load_model(model_name: str, device: str, dtype: str | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = dtype or ("float32" if device == "cpu" else "bfloat16")
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    model = AutoModelForCausalLM.from_pretrained(model_name, dtype=getattr(torch, chosen))
    model.to(device).eval()
    return model, tokenizer, device


def encode(tokenizer, side: Side) -> tuple[list[int], int]:
    """The token ids of prompt + completion, and how many belong to the prompt.

    The prompt is the chat template applied with add_generation_prompt; the completion is tokenized
    on its own and appended, as a model's own answer would follow the prompt's tokens.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": m.role, "content": m.content} for m in side.prompt]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    elif side.plain_prompt is not None:
        prompt = tokenizer(side.plain_prompt)["input_ids"]
    else:
        raise ExtractionError(
            "the model's tokenizer has no chat template: give pairs as prompt and completion instead of messages"
        )
    completion = tokenizer(side.completion, add_special_tokens=False)["input_ids"] if side.completion else []
    return list(prompt) + list(completion), len(prompt)


class LayerRecorder:
    """Forward hooks that keep the output of chosen decoder layers for the last forward pass."""

    def __init__(self, model, layers: Sequence[int]) -> None:
        from .plugin import decoder_layers

        modules = decoder_layers(model)
        self.outputs: dict[int, np.ndarray] = {}
        self.handles = [modules[layer].register_forward_hook(self._hook(layer)) for layer in layers]

    def _hook(self, layer: int):
        import torch

        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            self.outputs[layer] = hidden[0].detach().to(device="cpu", dtype=torch.float64).numpy()

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _forward(model, recorder: LayerRecorder, ids: list[int], device: str) -> dict[int, np.ndarray]:
    import torch

    with torch.no_grad():
        model(input_ids=torch.tensor([ids], device=device))
    return dict(recorder.outputs)


class NormAccumulator:
    """The mean L2 norm of the residual stream per layer over tokens; position 0 (BOS) is left out,
    since in many models its norm is tens of times every other token's."""

    def __init__(self, layers: Sequence[int]) -> None:
        self.sums = dict.fromkeys(layers, 0.0)
        self.tokens = 0

    def add(self, outputs: dict[int, np.ndarray]) -> None:
        first = 1 if next(iter(outputs.values())).shape[0] > 1 else 0
        for layer, hidden in outputs.items():
            self.sums[layer] += float(np.linalg.norm(hidden[first:], axis=1).sum())
        self.tokens += next(iter(outputs.values())).shape[0] - first

    def means(self) -> dict[int, float]:
        return {layer: total / self.tokens for layer, total in self.sums.items()} if self.tokens else {}


def _activation(hidden: np.ndarray, prompt_length: int, position: str) -> np.ndarray:
    if position == "last-prompt":
        return hidden[prompt_length - 1]
    return hidden[prompt_length:].mean(axis=0)


def extract(settings: ExtractionSettings, pairs: Sequence[ContrastPair], progress: bool = True) -> Extracted:
    """Run every pair's two sides through the model and combine the differences per layer."""
    from tqdm.auto import tqdm

    model, tokenizer, device = load_model(settings.model, settings.device, settings.dtype)
    recorder = LayerRecorder(model, settings.layers)
    norms = NormAccumulator(settings.layers)
    differences: dict[int, list[np.ndarray]] = {layer: [] for layer in settings.layers}
    same_at_position = []
    try:
        for pair in tqdm(pairs, desc="pairs", unit="pair", disable=not progress, file=sys.stderr):
            encoded = [encode(tokenizer, side) for side in (pair.positive, pair.negative)]
            if settings.position == "mean-answer" and any(length == len(ids) for ids, length in encoded):
                raise ExtractionError(f"line {pair.line}: a completion has no tokens")
            if settings.position == "last-prompt" and encoded[0][0][: encoded[0][1]] == encoded[1][0][: encoded[1][1]]:
                same_at_position.append(pair.line)
            acts = []
            for ids, length in encoded:
                outputs = _forward(model, recorder, ids, device)
                norms.add(outputs)
                acts.append(
                    {layer: _activation(outputs[layer], length, settings.position) for layer in settings.layers}
                )
            for layer in settings.layers:
                differences[layer].append(acts[0][layer] - acts[1][layer])
    finally:
        recorder.close()
    warnings = []
    if same_at_position:
        warnings.append(
            f"{len(same_at_position)} pair(s) (lines {', '.join(map(str, same_at_position[:5]))}"
            f"{', ...' if len(same_at_position) > 5 else ''}) have the same prompt on both sides: at --position "
            "last-prompt they add nothing (their difference is in the completion: use --position mean-answer)"
        )
    vectors = {layer: combine(np.stack(differences[layer]), settings.method) for layer in settings.layers}
    return Extracted(vectors, norms.means(), norms.tokens, tuple(warnings))


def calibrate_residual_norms(
    model_name: str, layers: Sequence[int], device: str = "auto", dtype: str | None = None
) -> dict[int, float]:
    """Mean residual-stream norm per layer over CALIBRATION_PROMPTS (chat template applied), for vector files without it."""
    require_torch("measuring them on the model")
    model, tokenizer, device = load_model(model_name, device, dtype)
    recorder = LayerRecorder(model, layers)
    norms = NormAccumulator(layers)
    try:
        for prompt in CALIBRATION_PROMPTS:
            ids, _ = encode(tokenizer, Side((Message("user", prompt),), None, plain_prompt=prompt))
            norms.add(_forward(model, recorder, ids, device))
    finally:
        recorder.close()
        del model  # serve starts vLLM next: give the GPU memory back
        _free_gpu_memory()
    return norms.means()


def _free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
