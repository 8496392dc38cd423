"""What steerbench needs to know of a model before serving it: hidden size and decoder layer count."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class ModelError(ValueError):
    """A model that cannot be found or read: the message says which and why."""


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_layers: int
    model_type: str = ""  # config.json's model_type (llama, qwen2, ...), as repeng's GGUF model_hint names it


def _config_path(model: str) -> Path:
    folder = Path(model).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise ModelError(f"--model {model}: the folder has no config.json")
        return config
    if folder.exists():
        raise ModelError(f"--model {model}: not a model folder")
    try:  # a hub id is accepted only when it is already in the local cache: serve never downloads
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None  # type: ignore[assignment]  # huggingface_hub is optional
    if try_to_load_from_cache is not None and "/" in model and not model.startswith((".", "/", "~")):
        cached = try_to_load_from_cache(model, "config.json")
        if isinstance(cached, str):
            return Path(cached)
    raise ModelError(
        f"--model {model}: model folder not found (a hub id must already be in the local Hugging Face cache)"
    )


def read_model_shape(model: str) -> ModelShape:
    config_path = _config_path(model)
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"{config_path}: cannot read the model config: {error}") from None
    # Multimodal configs keep the language model's shape in text_config.
    text = config.get("text_config") or config
    try:
        return ModelShape(
            hidden_size=int(text["hidden_size"]),
            num_layers=int(text["num_hidden_layers"]),
            model_type=str(text.get("model_type") or config.get("model_type") or ""),
        )
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{config_path}: no hidden_size/num_hidden_layers in the model config") from None
