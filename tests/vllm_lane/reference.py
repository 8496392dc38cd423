"""The reference semantics: transformers' greedy `generate` with a forward hook after layer L that
adds m × v (add) or removes m × its component along v/|v| (ablate), at every position, the prompt's
only, or the generated tokens' only."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def reference_tokens(
    model_dir: Path,
    vector_file: Path,
    layer: int,
    multiplier: float,
    prompt: str,
    max_tokens: int,
    operation: str = "add",
    positions: str = "all",
) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    vector = torch.tensor(np.load(vector_file), dtype=torch.float32)
    unit = vector / vector.norm()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    prompt_length = ids.shape[1]
    seen = [0]  # tokens this layer has processed so far: generate feeds the prompt, then one token a step

    def steer(module, args, output):
        stream = output[0] if isinstance(output, tuple) else output  # transformers' layer output is the stream itself
        count = stream.shape[1]
        token_positions = torch.arange(seen[0], seen[0] + count)
        seen[0] += count
        selected = {
            "all": torch.ones(count, dtype=torch.bool),
            "prompt": token_positions < prompt_length,
            "generated": token_positions >= prompt_length,
        }[positions]
        scale = multiplier * selected.to(stream.dtype).view(1, count, 1)
        if operation == "add":
            steered = stream + scale * vector
        else:
            steered = stream - scale * (stream @ unit).unsqueeze(-1) * unit
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    handle = model.model.layers[layer].register_forward_hook(steer)
    try:
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
    finally:
        handle.remove()
    return out[0, prompt_length:].tolist()


def reference_prompt_logprobs(
    model_dir: Path,
    vector_file: Path,
    layer: int,
    multiplier: float,
    prompt: str,
    operation: str = "add",
    positions: str = "all",
) -> list[float]:
    """log p(token i | tokens before i) for every prompt token after the first, the layer steered at
    the prompt's positions as `positions` says (`generated`: none of them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    vector = torch.tensor(np.load(vector_file), dtype=torch.float32)
    unit = vector / vector.norm()
    scale = 0.0 if positions == "generated" else multiplier

    def steer(module, args, output):
        stream = output[0] if isinstance(output, tuple) else output
        steered = (
            stream + scale * vector if operation == "add" else stream - scale * (stream @ unit).unsqueeze(-1) * unit
        )
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    handle = model.model.layers[layer].register_forward_hook(steer)
    try:
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
    finally:
        handle.remove()
    return torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1).tolist()
