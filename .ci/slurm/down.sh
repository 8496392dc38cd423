#!/usr/bin/env bash
# Stop the daemons .ci/slurm/up.sh started, by the pids it recorded (nothing else is touched).
set -uo pipefail
dir=${STEERBENCH_SLURM_DIR:-/tmp/steerbench-slurm}
[[ -f "$dir/pids" ]] || { echo "slurm down: nothing recorded in $dir/pids"; exit 0; }
alive() { kill -0 "$1" 2>/dev/null; }
# slurmd first (it may still be running job steps), then slurmctld, then munged
for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n { print $2 }' "$dir/pids")
    [[ -n "$pid" ]] || continue
    if alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then kill -KILL "$pid"; echo "slurm down: $name ($pid) killed"; else echo "slurm down: $name ($pid) stopped"; fi
    fi
done
rm -f "$dir/pids"
