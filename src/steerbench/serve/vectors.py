"""Reading a steering vector file (.pt, .npy, .safetensors, .json) into per-layer vectors, checked against a model.

Layer numbers are 0-based decoder layers: the vector for layer L is added to (or, for `steerbench
vector`, was read from) the residual stream after `model.model.layers[L]`, as the vLLM plugin steers.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUFFIXES = (".pt", ".pth", ".npy", ".safetensors", ".json", ".gguf")
SCALES = ("raw", "residual")
# Metadata keys steerbench writes into a vector file's safetensors header (all values are strings there).
RESIDUAL_NORMS_KEY = "residual_norms"  # JSON {"layer": mean residual-stream norm over the pairs' tokens}
LAYER_KEY_PREFIX = "layer."  # tensor names of per-layer files: layer.12


class VectorError(ValueError):
    """A vector file that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class VectorFile:
    """A vector file as read, before any model is known: one vector, or {layer: vector}, and its metadata."""

    path: Path
    format: str
    single: np.ndarray | None
    per_layer: dict[int, np.ndarray] | None
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def residual_norms(self) -> dict[int, float]:
        """Mean residual-stream norm per layer, where the file records it (files made by `steerbench vector`)."""
        return parse_residual_norms(self.path, self.metadata.get(RESIDUAL_NORMS_KEY))


@dataclass(frozen=True)
class SteeringVectors:
    """What a server adds: `multiplier × vectors[layer]` after each listed decoder layer (0-based)."""

    vectors: dict[int, np.ndarray]
    sha256: str  # of the vector file's bytes, so `sha256sum FILE` confirms which file a log used
    normalized: bool
    residual_norms: dict[int, float] = field(default_factory=dict)  # from the file's metadata or a calibration
    warnings: tuple[str, ...] = ()
    scale: str = "raw"  # raw: as in the file (or unit with --normalize); residual: ||v_L|| = mean residual norm at L

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_residual_norms(path: Path, text: str | None) -> dict[int, float]:
    if not text:
        return {}
    try:
        norms = {int(layer): float(norm) for layer, norm in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError):
        raise VectorError(f"{path}: metadata {RESIDUAL_NORMS_KEY} is not a JSON object of layer: norm") from None
    bad = [layer for layer, norm in norms.items() if not (np.isfinite(norm) and norm > 0)]
    if bad:
        raise VectorError(
            f"{path}: metadata {RESIDUAL_NORMS_KEY} has a non-positive or non-finite norm for layer {bad[0]}"
        )
    return norms


# ---------------------------------------------------------------- safetensors, read and written with numpy alone

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and header metadata of a .safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    data = path.read_bytes()
    try:
        length = int.from_bytes(data[:8], "little")
        if len(data) < 8 or 8 + length > len(data):
            raise ValueError("truncated header")
        header = json.loads(data[8 : 8 + length])
        metadata = header.pop("__metadata__", None) or {}
        tensors = {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            raw = data[8 + length + start : 8 + length + end]
            if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
                array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, _SAFETENSORS_DTYPES[info["dtype"]])
            tensors[name] = array.reshape(info["shape"])
    except (ValueError, KeyError, TypeError) as error:
        raise VectorError(f"{path}: not a readable safetensors file ({error})") from None
    return tensors, {str(key): str(value) for key, value in metadata.items()}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write float32 tensors and string metadata; atomically, so a failed write leaves nothing behind."""
    header: dict[str, object] = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        blob = np.ascontiguousarray(tensor, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(tensor)), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- reading any supported file


def _layer_key(path: Path, key: object) -> int:
    text = str(key).rsplit(".", 1)[-1] if not isinstance(key, int) else key
    try:
        return int(text)
    except (TypeError, ValueError):
        raise VectorError(f"{path}: per-layer keys must be layer numbers, got {key!r}") from None


def _is_layer_key(key: object) -> bool:
    try:
        _layer_key(Path(), key)
        return True
    except VectorError:
        return False


def _read_raw(path: Path) -> tuple[object, dict[str, str], str, tuple[str, ...]]:
    """The file's content (an array, or {layer key: array}), its metadata, a format name and warnings."""
    from . import library_vectors as library

    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), {}, "npy", ()
        if suffix == ".json":
            return json.loads(path.read_text()), {}, "json", ()
        if suffix == ".safetensors":
            tensors, metadata = read_safetensors(path)
            if len(tensors) == 1 and not _is_layer_key(next(iter(tensors))):
                return next(iter(tensors.values())), metadata, "safetensors", ()  # one vector under any name
            return dict(tensors), metadata, "safetensors", ()
        if suffix == ".gguf":
            vectors, metadata, warnings = library.gguf_control_vector(path.read_bytes())
            return vectors, metadata, "gguf control vector (repeng / llama.cpp)", warnings
        if suffix in (".pt", ".pth"):
            try:
                import torch  # noqa: F401
            except ImportError as error:
                raise VectorError(f"{path}: reading {suffix} needs torch (pip install 'steerbench[serve]')") from error
            loaded = library.load_pt(path)
            if isinstance(loaded, library.SteeringVectorRecord):
                vectors, metadata = library.steering_vectors_object(loaded)
                return vectors, metadata, "steering-vectors SteeringVector (torch.save)", ()
            if library.is_lm_eval_config(loaded):
                vectors, metadata = library.lm_eval_steered(loaded)  # type: ignore[arg-type]
                return vectors, metadata, "lm-eval steered (.pt)", ()
            if isinstance(loaded, dict):
                return {key: _tensor_numpy(path, key, value) for key, value in loaded.items()}, {}, "pt", ()
            return _tensor_numpy(path, None, loaded), {}, "pt", ()
    except library.LibraryFormatError as problem:
        raise VectorError(f"{path}: {problem}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as problem:
        if isinstance(problem, VectorError):
            raise
        raise VectorError(f"{path}: cannot be read as {suffix} ({problem})") from None
    raise VectorError(f"{path}: unknown vector format {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _tensor_numpy(path: Path, key: object, value: object) -> np.ndarray:
    try:
        return value.float().numpy()  # type: ignore[attr-defined]
    except AttributeError:
        where = f"entry {key!r}" if key is not None else "content"
        raise VectorError(
            f"{path}: the {where} is a {type(value).__name__}, not a tensor (a .pt vector file holds a tensor, "
            "{layer: tensor}, a steering-vectors SteeringVector or an lm-eval steered config)"
        ) from None


def read_vector_file(path: Path) -> VectorFile:
    """One vector (1-D) or {layer: 1-D vector}, with the file's metadata. Nothing is checked against a model."""
    if not path.is_file():
        raise VectorError(f"{path}: vector file not found")
    raw, metadata, fmt, warnings = _read_raw(path)
    if isinstance(raw, dict):
        try:
            per_layer = {_layer_key(path, key): np.asarray(value, dtype=np.float64) for key, value in raw.items()}
        except (TypeError, ValueError) as problem:
            if isinstance(problem, VectorError):
                raise
            raise VectorError(f"{path}: a per-layer entry is not a numeric vector") from None
        return VectorFile(path, fmt, None, per_layer, metadata, warnings)
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise VectorError(f"{path}: not a numeric vector or matrix") from None
    if array.ndim == 1:
        return VectorFile(path, fmt, array, None, metadata, warnings)
    if array.ndim == 2:
        return VectorFile(path, fmt, None, {layer: row for layer, row in enumerate(array)}, metadata, warnings)
    raise VectorError(f"{path}: expected [hidden_size] or [n_layers, hidden_size], got shape {list(array.shape)}")


def resolve_layer(layer: int, num_layers: int, *, what: str = "--layer") -> int:
    """A 0-based decoder layer; negative counts from the end (-1 is the last)."""
    resolved = layer + num_layers if layer < 0 else layer
    if not 0 <= resolved < num_layers:
        raise VectorError(
            f"{what} {layer} is out of range: the model has {num_layers} decoder layers (0..{num_layers - 1}, or -{num_layers}..-1)"
        )
    return resolved


def load_vectors(
    path: Path, *, hidden_size: int, num_layers: int, layer: int | None, normalize: bool, model_type: str | None = None
) -> SteeringVectors:
    """Read, check and (optionally) unit-normalise the vectors a server will add."""
    from .library_vectors import MODEL_HINT_KEY

    loaded = read_vector_file(path)
    warnings = list(loaded.warnings)
    hint = loaded.metadata.get(MODEL_HINT_KEY)
    if hint and model_type and hint != model_type:
        warnings.append(
            f"{path} was made for a {hint!r} model ({MODEL_HINT_KEY}), and the model served is a {model_type!r} model"
        )
    if loaded.single is not None:
        if layer is None:
            raise VectorError(f"{path} holds one vector: say after which decoder layer to add it with --layer")
        vectors = {resolve_layer(layer, num_layers): loaded.single}
    else:
        assert loaded.per_layer is not None
        vectors = {
            resolve_layer(key, num_layers, what=f"{path}: layer"): value for key, value in loaded.per_layer.items()
        }
        if layer is not None:
            chosen = resolve_layer(layer, num_layers)
            if chosen not in vectors:
                raise VectorError(f"{path} has no vector for layer {layer}; it has layers {sorted(vectors)}")
            vectors = {chosen: vectors[chosen]}
    for index, vector in vectors.items():
        if vector.ndim != 1 or vector.shape[0] != hidden_size:
            raise VectorError(
                f"{path}: the vector for layer {index} has size {vector.shape[0] if vector.ndim == 1 else list(vector.shape)}, "
                f"but the model's hidden size is {hidden_size}"
            )
        if not np.all(np.isfinite(vector)):
            raise VectorError(f"{path}: the vector for layer {index} has NaN or infinite values")
    if normalize:
        for index, vector in list(vectors.items()):
            norm = float(np.linalg.norm(vector))
            if norm == 0.0:
                raise VectorError(f"{path}: the vector for layer {index} is all zeros and cannot be normalised")
            vectors[index] = vector / norm
    return SteeringVectors(
        vectors=vectors,
        sha256=file_sha256(path),
        normalized=normalize,
        residual_norms=loaded.residual_norms,
        warnings=tuple(warnings),
    )


def scale_to_residual(vectors: SteeringVectors, residual_norms: dict[int, float], path: Path) -> SteeringVectors:
    """Each layer's vector rescaled to that layer's mean residual-stream norm: multiplier 1 adds a vector as long as ||h||."""
    scaled = {}
    for layer, vector in vectors.vectors.items():
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise VectorError(f"{path}: the vector for layer {layer} is all zeros and cannot be scaled")
        scaled[layer] = vector / norm * residual_norms[layer]
    return SteeringVectors(
        scaled,
        vectors.sha256,
        vectors.normalized,
        {layer: residual_norms[layer] for layer in scaled},
        vectors.warnings,
        scale="residual",
    )


def _per_layer_value(values: list[float]) -> float | list[float]:
    """One number for one layer, else a list in the order of `layer` (as the provenance's `layer` is)."""
    return values[0] if len(values) == 1 else values


def norm_provenance(vectors: SteeringVectors) -> dict[str, object]:
    """scale, the served vector's norm per layer and, where known, the mean residual-stream norm per layer."""
    provenance: dict[str, object] = {
        "scale": vectors.scale,
        "vector_norm": _per_layer_value(
            [round(float(np.linalg.norm(vectors.vectors[layer])), 6) for layer in vectors.layers]
        ),
    }
    if all(layer in vectors.residual_norms for layer in vectors.layers):
        provenance["residual_norm"] = _per_layer_value(
            [round(vectors.residual_norms[layer], 6) for layer in vectors.layers]
        )
    return provenance


def with_relative_norm(provenance: dict[str, object], multiplier: float) -> dict[str, object]:
    """The provenance plus relative_norm = |m| * ||v|| / ||h|| per layer, where the residual norm is known."""
    if "residual_norm" not in provenance or "vector_norm" not in provenance:
        return dict(provenance)
    vector, residual = provenance["vector_norm"], provenance["residual_norm"]
    pairs = zip(vector, residual) if isinstance(vector, list) else [(vector, residual)]
    ratios = [round(abs(multiplier) * float(v) / float(r), 6) for v, r in pairs]  # type: ignore[arg-type]
    return {**provenance, "relative_norm": _per_layer_value(ratios)}
