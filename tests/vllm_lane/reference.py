"""The reference semantics: transformers' greedy `generate` with a forward hook adding m × v after layer L."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def reference_tokens(model_dir: Path, vector_file: Path, layer: int, multiplier: float, prompt: str, max_tokens: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    vector = torch.tensor(np.load(vector_file), dtype=torch.float32)

    def add(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + multiplier * vector, *output[1:])
        return output + multiplier * vector

    handle = model.model.layers[layer].register_forward_hook(add)
    try:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.eos_token_id)
    finally:
        handle.remove()
    return out[0, ids.shape[1]:].tolist()
