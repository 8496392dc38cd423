"""Steering vectors saved by other libraries, read as {layer: vector} in steerbench's layer convention.

steerbench's layer L is the output of decoder layer L (`model.model.layers[L]`, 0-based), where the
vLLM plugin adds `m × v`. Each library's own numbering, and how it maps:

- repeng and llama.cpp control vectors (.gguf, `general.architecture = "controlvector"`): tensor
  `direction.N` is added to the output of block N, 0-based (repeng: `model.model.layers[N]`;
  llama.cpp: `build_cvec(cur, N)` after block N's residual add; llama.cpp refuses N = 0). So N -> L = N.
- steering-vectors (`torch.save(SteeringVector(layer_activations={N: tensor}))`): with the default
  `layer_type="decoder_block"` layer N is the output of `model.layers[N]`. So N -> L = N; other layer
  types (attention, MLP outputs) are not the residual stream and are refused.
- lm-eval `steered` (.pt: {hookpoint: {steering_vector, steering_coefficient, action, ...}}): the
  hookpoint names a module of `model.base_model` (`layers.N` for Llama-style models) whose output
  gets `steering_coefficient × steering_vector` at every position. So `layers.N` -> L = N, with the
  coefficient folded into the vector; `action: clamp` and `head_index` are refused.

A .gguf file is read with numpy alone; .pt files need torch and are loaded with torch's safe
(weights-only) unpickler: a SteeringVector is rebuilt as a stand-in, never by importing the library.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

GGUF_MAGIC = b"GGUF"
CONTROL_VECTOR_ARCH = "controlvector"
MODEL_HINT_KEY = "controlvector.model_hint"
STEERING_VECTOR_CLASS = "steering_vectors.steering_vector.SteeringVector"
LM_EVAL_HOOKPOINT = re.compile(r"(?:layers|h|blocks)\.(\d+)")

# GGUF metadata value types: struct format of the scalars; 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGML_F32 = 0


class LibraryFormatError(ValueError):
    """A library's file that steerbench cannot serve; the caller adds the file name."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise LibraryFormatError("the GGUF file is truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str:
        length = self.take("<Q")
        if self.at + length > len(self.data):
            raise LibraryFormatError("the GGUF file is truncated")
        text = self.data[self.at : self.at + length].decode("utf-8", errors="replace")
        self.at += length
        return text

    def value(self, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            return self.take(_GGUF_SCALARS[kind])
        if kind == _GGUF_STRING:
            return self.string()
        if kind == _GGUF_ARRAY:
            item_kind, count = self.take("<I"), self.take("<Q")
            return [self.value(item_kind) for _ in range(count)]
        raise LibraryFormatError(f"unknown GGUF metadata type {kind}")


def read_gguf(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and F32 tensors of a GGUF file (version 2 or 3)."""
    reader = _Reader(data)
    if data[:4] != GGUF_MAGIC:
        raise LibraryFormatError("not a GGUF file (no GGUF magic)")
    reader.at = 4
    version = reader.take("<I")
    if version not in (2, 3):
        raise LibraryFormatError(f"GGUF version {version} is not supported (2 or 3)")
    tensor_count, kv_count = reader.take("<Q"), reader.take("<Q")
    metadata = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(reader.take("<I"))
    infos = []
    for _ in range(tensor_count):
        name = reader.string()
        dims = [reader.take("<Q") for _ in range(reader.take("<I"))]
        infos.append((name, dims, reader.take("<I"), reader.take("<Q")))
    alignment = int(metadata.get("general.alignment", 32))
    start = reader.at + (-reader.at % alignment)
    tensors = {}
    for name, dims, kind, offset in infos:
        if kind != _GGML_F32:
            raise LibraryFormatError(f"tensor {name} is not F32 (ggml type {kind}); control vectors are F32")
        count = int(np.prod(dims)) if dims else 1
        begin = start + offset
        if begin + 4 * count > len(data):
            raise LibraryFormatError(f"tensor {name} runs past the end of the file")
        tensors[name] = np.frombuffer(data, "<f4", count, begin).reshape(list(reversed(dims)))
    return metadata, tensors


def gguf_control_vector(data: bytes) -> tuple[dict[int, np.ndarray], dict[str, str], tuple[str, ...]]:
    metadata, tensors = read_gguf(data)
    warnings: list[str] = []
    architecture = metadata.get("general.architecture")
    if architecture is None:
        warnings.append("no general.architecture in the GGUF metadata; read as a control vector")
    elif architecture != CONTROL_VECTOR_ARCH:
        raise LibraryFormatError(
            f"general.architecture is {architecture!r}: not a control vector ({CONTROL_VECTOR_ARCH!r})"
        )
    vectors = {}
    for name, tensor in tensors.items():
        found = re.fullmatch(r"direction\.(\d+)", name)
        if not found:
            raise LibraryFormatError(f"tensor {name!r} is not a control vector direction (direction.N)")
        if tensor.ndim != 1:
            raise LibraryFormatError(f"tensor {name} has shape {list(tensor.shape)}; a direction is 1-D")
        vectors[int(found.group(1))] = tensor.astype(np.float64)
    if not vectors:
        raise LibraryFormatError("the GGUF file has no direction.N tensors")
    shown = {key: str(value) for key, value in metadata.items() if not isinstance(value, list)}
    return vectors, shown, tuple(warnings)


class SteeringVectorRecord:
    """Stands in for steering_vectors.SteeringVector when torch's safe unpickler rebuilds a saved one."""

    layer_activations: dict[int, Any]
    layer_type: str = "decoder_block"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def load_pt(path: Path) -> object:
    """torch.load with the weights-only unpickler, which may also rebuild a SteeringVector (as a stand-in)."""
    import torch
    from pickle import UnpicklingError

    try:
        with torch.serialization.safe_globals([(SteeringVectorRecord, STEERING_VECTOR_CLASS)]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (UnpicklingError, RuntimeError, EOFError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LibraryFormatError(f"cannot be read as a tensor file with torch's safe loader ({first})") from None


def _numpy(value: Any, where: str) -> np.ndarray:
    try:
        return value.detach().float().cpu().numpy().astype(np.float64)
    except AttributeError:
        raise LibraryFormatError(f"{where} is not a tensor") from None


def steering_vectors_object(record: SteeringVectorRecord) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    layer_type = getattr(record, "layer_type", "decoder_block")
    if layer_type != "decoder_block":
        raise LibraryFormatError(
            f"a SteeringVector with layer_type {layer_type!r}: steerbench steers the residual stream "
            "(decoder-block outputs, layer_type 'decoder_block') only"
        )
    activations = getattr(record, "layer_activations", None)
    if not isinstance(activations, dict) or not activations:
        raise LibraryFormatError("a SteeringVector without layer_activations")
    vectors = {int(layer): _numpy(tensor, f"layer_activations[{layer}]") for layer, tensor in activations.items()}
    return vectors, {"library": "steering-vectors", "layer_type": layer_type}


def is_lm_eval_config(loaded: object) -> bool:
    return (
        isinstance(loaded, dict)
        and bool(loaded)
        and all(isinstance(value, dict) and "steering_vector" in value for value in loaded.values())
    )


def lm_eval_steered(config: dict[str, dict[str, Any]]) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    vectors: dict[int, np.ndarray] = {}
    coefficients = {}
    for hookpoint, info in config.items():
        action = info.get("action")
        if action == "clamp":
            raise LibraryFormatError(
                f"hookpoint {hookpoint!r} has action 'clamp': steerbench serve adds a vector (action 'add'); "
                "clamping a direction to a value is a different intervention and is not served"
            )
        if action != "add":
            raise LibraryFormatError(
                f"hookpoint {hookpoint!r} has action {action!r}; lm-eval's actions are 'add' and 'clamp'"
            )
        if info.get("head_index") is not None:
            raise LibraryFormatError(
                f"hookpoint {hookpoint!r} steers one attention head (head_index); steerbench steers whole layers"
            )
        if info.get("bias") is not None:
            raise LibraryFormatError(f"hookpoint {hookpoint!r} has a bias, which lm-eval allows only with 'clamp'")
        found = LM_EVAL_HOOKPOINT.fullmatch(str(hookpoint))
        if not found:
            raise LibraryFormatError(
                f"hookpoint {hookpoint!r} is not a decoder layer's output; expected layers.N (a module of model.base_model)"
            )
        layer = int(found.group(1))
        if layer in vectors:
            raise LibraryFormatError(f"two hookpoints steer layer {layer}")
        coefficient = float(info.get("steering_coefficient", 1.0))
        vector = _numpy(info["steering_vector"], f"{hookpoint}.steering_vector").reshape(-1)
        vectors[layer] = coefficient * vector
        coefficients[str(layer)] = coefficient
    metadata = {
        "library": "lm-eval steered",
        "hookpoints": json.dumps(sorted(config)),
        "steering_coefficient (folded into the vectors)": json.dumps(coefficients),
    }
    return vectors, metadata
