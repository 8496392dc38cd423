#!/usr/bin/env bash
# The libraries lane: vectors made by repeng, steering-vectors and lm-eval (the real libraries, pinned
# below), read by steerbench and proven to steer exactly as the library's own generate does
# (tests/unit/test_library_vectors.py). They pin an older transformers and numpy than vLLM's
# environment, and cannot be installed next to steerbench's own pins (inspect-ai, pandas), so they get an
# environment of their own, with steerbench taken from src/ (the proofs import only its vector reading,
# which needs numpy alone). Skips with a stated reason where they cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-libs
started=$(date +%s)
pins=(torch "repeng==0.4.0" "steering-vectors==0.12.2" "lm-eval==0.4.13" accelerate pytest)
if ! { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q --upgrade pip \
       && "$venv/bin/python" -m pip install -q "${pins[@]}"; } >.ci-libs-setup.log 2>&1; then
    grep -v '^WARNING: Location' .ci-libs-setup.log | tail -20 >&2
    echo "libraries lane: SKIPPED, reason: repeng / steering-vectors / lm-eval could not be installed (log above)" >&2
    exit 0
fi
echo "libraries lane: installed in $(( $(date +%s) - started )) s"
# every proof must run here: a skip (a library that did not import) fails the lane
PYTHONPATH=src "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests/unit/test_library_vectors.py | tee .ci-libs-test.log
if grep -q "skipped" .ci-libs-test.log; then
    echo "libraries lane: FAILED, reason: a library proof was skipped in the libraries' own environment" >&2
    exit 1
fi
echo "libraries lane: done in $(( $(date +%s) - started )) s"
