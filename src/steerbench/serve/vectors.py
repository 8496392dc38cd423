"""Reading a steering vector file (.pt, .npy, .safetensors, .json) into per-layer vectors, checked against a model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIXES = (".pt", ".npy", ".safetensors", ".json")


class VectorError(ValueError):
    """A vector file that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class SteeringVectors:
    """What a server adds: `multiplier × vectors[layer]` after each listed decoder layer (0-based)."""

    vectors: dict[int, np.ndarray]
    sha256: str  # of the vector file's bytes, so `sha256sum FILE` confirms which file a log used
    normalized: bool

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_raw(path: Path) -> object:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".json":
        return json.loads(path.read_text())
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise VectorError(f"{path}: reading .safetensors needs the safetensors package (pip install 'steerbench[serve]')") from error
        tensors = load_file(str(path))
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        return dict(tensors)
    if suffix == ".pt":
        try:
            import torch
        except ImportError as error:
            raise VectorError(f"{path}: reading .pt needs torch (pip install 'steerbench[serve]')") from error
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(loaded, dict):
            return {key: value.float().numpy() for key, value in loaded.items()}
        return loaded.float().numpy()
    raise VectorError(f"{path}: unknown vector format {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _layer_key(path: Path, key: object) -> int:
    text = str(key).rsplit(".", 1)[-1] if not isinstance(key, int) else key
    try:
        return int(text)
    except (TypeError, ValueError):
        raise VectorError(f"{path}: per-layer keys must be layer numbers, got {key!r}") from None


def _as_per_layer(path: Path, raw: object) -> dict[int, np.ndarray] | np.ndarray:
    """A single vector (1-D array) or {layer: 1-D array}."""
    if isinstance(raw, dict):
        return {_layer_key(path, key): np.asarray(value, dtype=np.float64) for key, value in raw.items()}
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise VectorError(f"{path}: not a numeric vector or matrix") from None
    if array.ndim == 1:
        return array
    if array.ndim == 2:
        return {layer: row for layer, row in enumerate(array)}
    raise VectorError(f"{path}: expected [hidden_size] or [n_layers, hidden_size], got shape {list(array.shape)}")


def resolve_layer(layer: int, num_layers: int, *, what: str = "--layer") -> int:
    """A 0-based decoder layer; negative counts from the end (-1 is the last)."""
    resolved = layer + num_layers if layer < 0 else layer
    if not 0 <= resolved < num_layers:
        raise VectorError(f"{what} {layer} is out of range: the model has {num_layers} decoder layers (0..{num_layers - 1}, or -{num_layers}..-1)")
    return resolved


def load_vectors(
    path: Path, *, hidden_size: int, num_layers: int, layer: int | None, normalize: bool
) -> SteeringVectors:
    """Read, check and (optionally) unit-normalise the vectors a server will add."""
    if not path.is_file():
        raise VectorError(f"{path}: vector file not found")
    loaded = _as_per_layer(path, _read_raw(path))
    if isinstance(loaded, np.ndarray):
        if layer is None:
            raise VectorError(f"{path} holds one vector: say after which decoder layer to add it with --layer")
        vectors = {resolve_layer(layer, num_layers): loaded}
    else:
        vectors = {resolve_layer(key, num_layers, what=f"{path}: layer"): value for key, value in loaded.items()}
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
    return SteeringVectors(vectors=vectors, sha256=file_sha256(path), normalized=normalize)
