#!/usr/bin/env bash
# Start a real one-node Slurm on this machine, for the slurm test lane (no systemd needed).
#
#   bash .ci/slurm/up.sh            # installs slurm-wlm and munge (apt) if missing, starts
#                                   # munged, slurmctld and slurmd, waits for the node to be idle
#   export SLURM_CONF=/tmp/steerbench-slurm/slurm.conf   # (printed at the end) then sbatch, sinfo...
#   bash .ci/slurm/down.sh          # stops exactly the daemons this started (by pid)
#
# Everything it writes, apart from /run/munge (where munge's clients look for its socket),
# lives in $STEERBENCH_SLURM_DIR (default /tmp/steerbench-slurm): slurm.conf, state, spool,
# logs, and `pids` (one "name pid" line per daemon it started). Needs root.
# Exit status: 0 up; 3 cannot install; 4 cannot start (the last line says why).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${STEERBENCH_SLURM_DIR:-/tmp/steerbench-slurm}
t0=$(date +%s.%N)
say() { echo "slurm up: $*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { local code=$1; shift; echo "slurm up: FAILED: $*" >&2; exit "$code"; }

[[ $(id -u) == 0 ]] || fail 4 "needs root (munged and slurmd are started as root here)"

# -- install --------------------------------------------------------------------------------
need=(munged slurmctld slurmd sbatch sinfo squeue scontrol)
missing() { local c; for c in "${need[@]}"; do command -v "$c" >/dev/null 2>&1 || return 0; done; return 1; }
if missing; then
    command -v apt-get >/dev/null 2>&1 || fail 3 "slurm-wlm is not installed and there is no apt-get"
    say "installing slurm-wlm and munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$apt_log" 2>&1; then
        apt-get update -q >>"$apt_log" 2>&1 || true
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$apt_log" 2>&1 \
            || fail 3 "apt-get install slurm-wlm munge failed: $(tail -n 1 "$apt_log")"
    fi
    missing && fail 3 "slurm-wlm installed but one of ${need[*]} is still missing"
    say "installed in $(since "$t0") s"
fi
t1=$(date +%s.%N)

# -- leftovers from an earlier up.sh in the same folder ----------------------------------------
[[ -f "$dir/pids" ]] && bash "$here/down.sh" >/dev/null 2>&1 || true
rm -rf "$dir/state" "$dir/spool" "$dir/log"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
: >"$dir/pids"

# -- slurm.conf -------------------------------------------------------------------------------
host=$(hostname -s)
# "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
hw=$(slurmd -C | head -n 1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
[[ "$hw" == *CPUs=* && "$hw" == *RealMemory=* ]] || fail 4 "slurmd -C did not report CPUs and RealMemory: $(slurmd -C 2>&1 | head -n 1)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sed -e "s|@HOST@|$host|g" -e "s|@DIR@|$dir|g" -e "s|@NODE_HW@|$hw|" \
    -e "s|@CTLD_PORT@|${STEERBENCH_SLURMCTLD_PORT:-$(free_port)}|" \
    -e "s|@SLURMD_PORT@|${STEERBENCH_SLURMD_PORT:-$(free_port)}|" \
    "$here/slurm.conf.in" >"$dir/slurm.conf"
export SLURM_CONF=$dir/slurm.conf
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" >"$dir/env"

# -- munge ------------------------------------------------------------------------------------
mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
chmod 0755 /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged is already running (not started here, so down.sh leaves it)"
else
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged >"$dir/log/munged.out" 2>&1 \
        || fail 4 "munged did not start: $(tail -n 1 "$dir/log/munged.out")"
    echo "munged $(cat /run/munge/munged.pid)" >>"$dir/pids"
    munge -n </dev/null | unmunge >/dev/null 2>&1 || fail 4 "munge credentials do not round-trip"
fi

# -- slurmctld, slurmd --------------------------------------------------------------------------
wait_for_file() { local i; for i in $(seq 1 100); do [[ -s "$1" ]] && return 0; sleep 0.1; done; return 1; }
slurmctld -c -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 \
    || fail 4 "slurmctld did not start: $(tail -n 1 "$dir/log/slurmctld.log" 2>/dev/null)"
wait_for_file "$dir/slurmctld.pid" || fail 4 "slurmctld wrote no pid file: $(tail -n 1 "$dir/log/slurmctld.log" 2>/dev/null)"
echo "slurmctld $(cat "$dir/slurmctld.pid")" >>"$dir/pids"
slurmd -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 \
    || fail 4 "slurmd did not start: $(tail -n 1 "$dir/log/slurmd.log" 2>/dev/null)"
wait_for_file "$dir/slurmd.pid" || fail 4 "slurmd wrote no pid file: $(tail -n 1 "$dir/log/slurmd.log" 2>/dev/null)"
echo "slurmd $(cat "$dir/slurmd.pid")" >>"$dir/pids"

# -- wait (bounded) for the node to be idle -----------------------------------------------------
state=""
for _ in $(seq 1 ${STEERBENCH_SLURM_WAIT:-60}); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    [[ "$state" == idle ]] && break
    sleep 0.5
done
[[ "$state" == idle ]] || fail 4 "node $host is '${state:-not answering}' after $(since "$t1") s; see $dir/log/"
say "node $host idle ($hw) in $(since "$t1") s after install, $(since "$t0") s in all"
say "export SLURM_CONF=$SLURM_CONF   (or: . $dir/env)"
