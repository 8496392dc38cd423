#!/usr/bin/env bash
# Copy an existing local log root (logs/) to S3, so that `steerbench status`, `aggregate`
# and `report` can read it from there and further runs can continue on it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/upload_benchmarks_s3.sh [--dry-run] [LOCAL_DIR] s3://bucket/prefix

Uploads every file under LOCAL_DIR (default: logs) to the same relative path under the
S3 prefix. A file already there with the same size is left alone, so running it again
uploads only what changed; nothing is ever deleted on either side.

  --dry-run   print what would be uploaded; upload nothing

Credentials, region and endpoint come from the usual AWS settings (AWS_PROFILE,
AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...). Needs s3fs: pip install 'steerbench[s3]'.
Environment: PYTHON, the Python that has s3fs (default: python3).
EOF
}

die() { echo "error: $1" >&2; exit "${2:-2}"; }

dry_run=0
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option '$1'" ;;
        *) positional+=("$1"); shift ;;
    esac
done
case ${#positional[@]} in
    1) source_dir=logs; destination=${positional[0]} ;;
    2) source_dir=${positional[0]}; destination=${positional[1]} ;;
    *) usage >&2; die "give the destination s3://bucket/prefix (and optionally the local folder first)" ;;
esac
[[ "$destination" =~ ^s3://[^/]+ ]] || die "destination must look like s3://bucket/prefix, not '$destination'"
[[ -d "$source_dir" ]] || die "local log folder '$source_dir' does not exist"
python=${PYTHON:-python3}
"$python" -c "import s3fs" 2>/dev/null \
    || die "$python cannot import s3fs: pip install 'steerbench[s3]' (or set PYTHON)" 1

"$python" - "$source_dir" "$destination" "$dry_run" <<'PY'
import os
import sys

import fsspec

source, destination, dry_run = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3] == "1"
SKIP_DIRS = {".steerbench-locks", ".steerbench-replay"}  # run locks and replay journals are local to a run
fs = fsspec.filesystem("s3")
try:
    remote_sizes = {
        path: info.get("size")
        for path, info in fs.find(destination, detail=True).items()
    }
except FileNotFoundError:
    remote_sizes = {}
bare = destination.split("://", 1)[1]
uploaded = unchanged = 0
for folder, dirs, files in os.walk(source):
    dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
    for name in sorted(files):
        if name.endswith(".tmp"):
            continue  # a half-written file from a run in progress
        local = os.path.join(folder, name)
        relative = os.path.relpath(local, source).replace(os.sep, "/")
        target = f"{bare}/{relative}"
        if remote_sizes.get(target) == os.path.getsize(local):
            unchanged += 1
            continue
        if dry_run:
            print(f"would upload {local} -> s3://{target}")
        else:
            fs.put_file(local, target)
            print(f"uploaded {local} -> s3://{target}")
        uploaded += 1
verb = "would upload" if dry_run else "uploaded"
print(f"{verb} {uploaded} file(s), {unchanged} already there, to {destination}")
PY
