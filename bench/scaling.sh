#!/usr/bin/env bash
# Multi-device scaling of the scheduler (issue: batched graphs across devices), in one run:
#   two one-thread PoCL devices against one of them, and the one-thread CPU backend plus one
#   one-thread PoCL device against the sum of the two alone.
# Usage: bench/scaling.sh [MODEL] [BATCH] [SECONDS]   (needs the release-built tool, see README)
# POCL_DRIVER=basic uses PoCL's "basic" devices instead of "pthread": PoCL's pthread driver runs
# every pthread device on one process-wide worker pool (sized by POCL_MAX_PTHREAD_COUNT), so two
# one-thread pthread devices share a single thread and cannot scale; a basic device runs its
# kernels on the host thread that waits for them, so two are two threads.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-mobilenet_v2}; batch=${2:-32}; seconds=${3:-20}
q=${QUARRY:-.build/release/quarry}
driver=${POCL_DRIVER:-pthread}
export POCL_DEVICES="$driver $driver" POCL_MAX_PTHREAD_COUNT=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() {  # prints items/s of one configuration; the tool's report (with per-device shares) goes to stderr
    "$q" bench "$model" --batch "$batch" --device "$1" --cpu-threads 1 --seconds "$seconds" \
        --min-iterations 3 --warmup 2 --no-profile --json > "$tmp/report" 2>/dev/null
    grep -v '^{' "$tmp/report" >&2
    tail -1 "$tmp/report" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["items_per_second"])'
}
echo "PoCL devices: $POCL_DEVICES; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
one=$(run opencl:0); two=$(run opencl:0,opencl:1)
cpu=$(run cpu); cl=$(run opencl:0); both=$(run cpu,opencl:0)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$one" "$two" "$cpu" "$cl" "$both" <<'PY'
import sys
one, two, cpu, cl, both = map(float, sys.argv[1:])
print(f"opencl:0 alone            {one:8.2f} items/s")
print(f"opencl:0,opencl:1         {two:8.2f} items/s  = {two/one:.2f}x one device (target >= 1.8x)")
print(f"cpu (1 thread) alone      {cpu:8.2f} items/s")
print(f"opencl:0 alone (again)    {cl:8.2f} items/s")
print(f"cpu,opencl:0              {both:8.2f} items/s  = {both/(cpu+cl):.0%} of the sum {cpu+cl:.2f} (target >= 90%)")
PY
