#!/usr/bin/env bash
# One detached screen session per multiplier in deployments.jsonl, each running
# `steerbench run --multiplier M`, with its output in a log file of its own.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/run_benchmarks.sh [--dry-run] [--deployments FILE] [--benchmarks FILE]
                                 [--session-logs DIR] [--prefix NAME] [-- RUN_ARGS...]

Starts one detached screen session per multiplier listed in the deployments file. Session
<prefix>_m<multiplier> runs `steerbench run --multiplier <multiplier> RUN_ARGS...` and writes
everything it prints to DIR/<session>.log as well as to the screen.

  --deployments FILE   endpoints file (default: deployments.jsonl)
  --benchmarks FILE    benchmarks file (default: benchmarks.jsonl)
  --session-logs DIR   folder for the per-session log files (default: screen_logs)
  --prefix NAME        session name prefix (default: steerbench)
  --dry-run            check everything and print the screen commands; start nothing
  -- RUN_ARGS...       passed to every `steerbench run`, e.g. -- --log-root s3://bucket/study

Environment: STEERBENCH, the steerbench command to run (default: steerbench on PATH).
Running the script again skips multipliers whose session is still running; a finished
multiplier resumes where it stopped, as `steerbench run` always does.
EOF
}

die() { echo "error: $1" >&2; exit "${2:-2}"; }

deployments=deployments.jsonl
benchmarks=benchmarks.jsonl
session_logs=screen_logs
prefix=steerbench
dry_run=0
run_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --deployments) [[ $# -ge 2 ]] || die "--deployments needs a file"; deployments=$2; shift 2 ;;
        --benchmarks) [[ $# -ge 2 ]] || die "--benchmarks needs a file"; benchmarks=$2; shift 2 ;;
        --session-logs) [[ $# -ge 2 ]] || die "--session-logs needs a folder"; session_logs=$2; shift 2 ;;
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a name"; prefix=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; run_args=("$@"); break ;;
        *) usage >&2; die "unknown argument '$1' (arguments for steerbench run go after --)" ;;
    esac
done
[[ "$prefix" =~ ^[A-Za-z0-9_-]+$ ]] || die "--prefix may hold only letters, digits, '_' and '-'"
for arg in "${run_args[@]+"${run_args[@]}"}"; do
    case "$arg" in
        --multiplier|--multiplier=*|--all) die "RUN_ARGS must not choose multipliers ($arg): the script runs one session per multiplier" ;;
        --deployments|--deployments=*|--benchmarks|--benchmarks=*) die "give $arg to the script itself, before --" ;;
    esac
done

# --- checks, before anything starts --------------------------------------------------
steerbench=${STEERBENCH:-steerbench}
command -v "$steerbench" >/dev/null 2>&1 \
    || die "'$steerbench' not found: activate the environment steerbench is installed in (or set STEERBENCH)" 1
if ! command -v screen >/dev/null 2>&1; then
    [[ $dry_run -eq 1 ]] || die "screen is not installed (Debian/Ubuntu: sudo apt-get install screen)" 1
    echo "note: screen is not installed; a real run needs it (Debian/Ubuntu: sudo apt-get install screen)" >&2
fi
# the deployments file is valid (one line naming file, line and field otherwise) ...
multipliers=$("$steerbench" multipliers --deployments "$deployments") || exit $?
# ... and so is the whole plan, with the same arguments every session will get
"$steerbench" run --all --dry-run --deployments "$deployments" --benchmarks "$benchmarks" \
    "${run_args[@]+"${run_args[@]}"}" >/dev/null || exit $?

session_exists() {
    command -v screen >/dev/null 2>&1 || return 1
    # `screen -ls` lines look like "<tab>12345.<name><tab>(date)<tab>(Detached)"
    screen -ls 2>/dev/null | awk '{print $1}' | sed -n 's/^[0-9][0-9]*\.//p' | grep -Fxq -- "$1"
}

# --- one session per multiplier --------------------------------------------------------
[[ $dry_run -eq 1 ]] || mkdir -p "$session_logs"
started=()
while IFS= read -r multiplier; do
    [[ -n "$multiplier" ]] || continue
    session="${prefix}_m${multiplier}"
    log_file="${session_logs%/}/${session}.log"
    if session_exists "$session"; then
        echo "skip: multiplier $multiplier is still running in screen session $session"
        continue
    fi
    run=$(printf '%q ' "$steerbench" run --multiplier "$multiplier" \
        --deployments "$deployments" --benchmarks "$benchmarks" "${run_args[@]+"${run_args[@]}"}")
    inner="cd $(printf '%q' "$PWD") && { echo \"== \$(date '+%F %T') $session: $run\"; $run; echo \"== \$(date '+%F %T') $session: exit status \$?\"; } 2>&1 | tee -a $(printf '%q' "$log_file")"
    if [[ $dry_run -eq 1 ]]; then
        echo "would run: screen -dmS $session bash -c $(printf '%q' "$inner")"
    else
        screen -dmS "$session" bash -c "$inner"
        started+=("$session")
        echo "started: multiplier $multiplier in screen session $session (log: $log_file)"
    fi
done <<<"$multipliers"

if [[ $dry_run -eq 1 ]]; then
    echo "dry run: nothing started"
    exit 0
fi
status_args=""
for ((i = 0; i < ${#run_args[@]}; i++)); do
    case "${run_args[$i]}" in
        --log-root) status_args=" --log-root $(printf '%q' "${run_args[$((i + 1))]:-}")" ;;
        --log-root=*) status_args=" --log-root $(printf '%q' "${run_args[$i]#--log-root=}")" ;;
    esac
done
if [[ ${#started[@]} -gt 0 ]]; then
    cat <<EOF

list sessions:   screen -ls
attach to one:   screen -r ${started[0]}     (detach again with Ctrl-a d)
follow its log:  tail -f ${session_logs%/}/${started[0]}.log
grid progress:   steerbench status$status_args
EOF
fi
