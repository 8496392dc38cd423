#!/usr/bin/env bash
# The slurm lane: start a one-node Slurm (scripts in .ci/slurm/), then run `pytest -m slurm`
# against it with the main venv (.venv, made by .ci/run). Where Slurm cannot be installed or
# started it says why and skips (exit 0); otherwise its exit status is pytest's. The daemons
# are stopped by their pids whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
export STEERBENCH_SLURM_DIR=${STEERBENCH_SLURM_DIR:-$(mktemp -d /tmp/steerbench-slurm.XXXXXX)}
started=$(date +%s)
up_log=$STEERBENCH_SLURM_DIR/up.log
trap 'bash .ci/slurm/down.sh' EXIT
if ! bash .ci/slurm/up.sh >"$up_log" 2>&1; then
    cat "$up_log"
    reason=$(grep -h 'FAILED:' "$up_log" | tail -n 1 | sed 's/.*FAILED: //')
    echo "slurm lane: SKIPPED, reason: ${reason:-.ci/slurm/up.sh failed (see above)}"
    exit 0
fi
cat "$up_log"
export SLURM_CONF=$STEERBENCH_SLURM_DIR/slurm.conf
[[ -x .venv/bin/python ]] || { echo "slurm lane: FAILED, reason: .venv/bin/python is missing (run .ci/run)"; exit 1; }
.venv/bin/python -m pytest -q -m slurm tests/slurm -p no:cacheprovider
status=$?
[[ -f "$STEERBENCH_SLURM_DIR/measured.txt" ]] && sed 's/^/slurm lane: measured: /' "$STEERBENCH_SLURM_DIR/measured.txt"
echo "slurm lane: pytest exit $status in $(( $(date +%s) - started )) s"
exit $status
