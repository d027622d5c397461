#!/usr/bin/env bash
# The GPU check: everything a run on an NVIDIA GPU has to show, in one script that finishes in
# under five minutes (device time is scarce: prepare once, run once).
#
#   bash bench/gpu_check.sh [QUARRY]   # the tool, a bundle's folder, or an archive of one
#
# QUARRY defaults to $QUARRY_TOOL, else the newest unpacked bundle under dist/, else `quarry` on
# PATH. A bundle (scripts/package.sh, or bench/gpu_prepare.sh's dist/gpu.tar.xz with the CLBlast
# peer in it) runs without Swift; an archive is unpacked into a temporary folder first. Steps, each with its own time limit so that one hang cannot eat the rest:
#   1. OpenCL driver: registers NVIDIA's libnvidia-opencl.so.1 in /etc/OpenCL/vendors/nvidia.icd
#      when no vendor file names it (needs root; skipped otherwise).
#   2. `quarry devices --probe --json`: the device, its driver, measured fp32 peak and bandwidth.
#   3. `quarry test-ops --device opencl:0 --json` in every precision the device takes.
#   4. `quarry tune --device opencl:0` (stores the GEMM schedule the benchmarks then use).
#   5. SGEMM 4096^3 through `quarry bench gemm`, and CLBlast's on the same device where
#      clblast_sgemm sits beside the tool (bench/gpu_prepare.sh puts it in the bundle, with
#      libclblast) or CLBLAST_SGEMM names it.
#   6. ResNet-50 batch 32, MobileNetV2 batch 64, BERT-base 32 x 128 tokens, in each precision.
#   7. PyTorch on the same models (bench/peer_pytorch_gpu.py: fp32 with TF32 off, TF32, bf16
#      autocast) where python3 imports torch with CUDA, and the ratios.
# Everything lands in $OUT/gpu_check (or bench/out/gpu_check): one log and one JSON file a step,
# and summary.txt, which is also printed last.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-bench/out}/gpu_check"
mkdir -p "$out"
log="$out/log.txt"
: > "$log"
say() { echo "$*" | tee -a "$log"; }

tool="${1:-${QUARRY_TOOL:-}}"
if [ -f "$tool" ] && [[ "$tool" == *.tar.xz ]]; then
    unpacked=$(mktemp -d)
    tar -C "$unpacked" -xJf "$tool"
    tool=$(ls -d "$unpacked"/*/ | head -1)
fi
if [ -z "$tool" ]; then
    tool=$(ls -d dist/quarry-*-linux-*/ 2>/dev/null | sort | tail -1)
    [ -n "$tool" ] || tool=$(command -v quarry || true)
fi
[ -d "$tool" ] && tool="${tool%/}/bin/quarry"
if [ -z "$tool" ] || [ ! -x "$tool" ]; then
    echo "gpu_check.sh: no quarry tool found (pass the tool or an unpacked bundle's folder)" >&2
    exit 2
fi
say "tool: $tool ($("$tool" --version)), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"

# 1. The NVIDIA OpenCL driver's ICD file.
if ! grep -qs nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null; then
    lib=$(find / -xdev -name libnvidia-opencl.so.1 2>/dev/null | head -1)
    if [ -n "$lib" ] && mkdir -p /etc/OpenCL/vendors 2>/dev/null && echo "$lib" > /etc/OpenCL/vendors/nvidia.icd; then
        say "registered $lib in /etc/OpenCL/vendors/nvidia.icd"
    else
        say "no NVIDIA OpenCL ICD registered (library ${lib:-not found})"
    fi
fi
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$log"

# Runs a step under a time limit; its stdout goes to $out/NAME.txt, its last line (the JSON) to
# $out/NAME.json. A failing or timed-out step is noted and the script goes on.
step() {
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.txt" 2>> "$log"
    local rc=$?
    tail -1 "$out/$name.txt" > "$out/$name.json"
    say "step $name: exit $rc in $((SECONDS - start)) s"
    return $rc
}

# JSON field of a step's last line (empty when the step failed).
field() { python3 -c "import json,sys
try: print(json.loads(open(sys.argv[1]).read())[sys.argv[2]])
except Exception: print('')" "$out/$1.json" "$2"; }

# 2. The device and its measured limits.
step devices 60 "$tool" devices --probe --json
cat "$out/devices.txt" >> "$log"

# 3. The self-test in every precision the device takes (the tool refuses the others by name).
precisions=()
for p in fp32 tf32 bf16 fp16; do
    if step "test_ops_$p" 120 "$tool" test-ops --device opencl:0 --cases-per-op 8 --precision "$p" --json; then
        precisions+=("$p")
    elif grep -q '"passed"' "$out/test_ops_$p.json"; then
        precisions+=("$p")   # ran, with failures: still benchmarked, the summary shows them
    fi
done
[ ${#precisions[@]} -gt 0 ] || precisions=(fp32)

# 4. The GEMM schedule, measured on this device and stored in the tool's cache for the steps
# after it (QUARRY_CACHE_DIR chooses the folder).
step tune 90 "$tool" tune --device opencl:0 --json

# 5. SGEMM 4096^3.
for p in "${precisions[@]}"; do
    step "gemm_$p" 60 "$tool" bench gemm --m 4096 --n 4096 --k 4096 --device opencl:0 --precision "$p" --seconds 2 --json
done
clblast="${CLBLAST_SGEMM:-$(dirname "$tool")/clblast_sgemm}"
if [ -x "$clblast" ]; then
    step gemm_clblast 60 "$clblast" gemm 4096 4096 4096 5
fi

# 6. The three models.
# QUARRY_GPU_CHECK_MODELS="plain_cnn 2" smoke-tests the script on a CPU OpenCL device such as PoCL.
read -r -a models_flat <<< "${QUARRY_GPU_CHECK_MODELS:-resnet50 32 mobilenet_v2 64 bert_base 32}"
models=()
for ((i = 0; i + 1 < ${#models_flat[@]}; i += 2)); do models+=("${models_flat[i]} ${models_flat[i+1]}"); done
for p in "${precisions[@]}"; do
    for m in "${models[@]}"; do
        set -- $m
        step "model_${1}_$p" 90 "$tool" bench "$1" --batch "$2" --device opencl:0 --precision "$p" --seconds 3 --json --no-profile
    done
done
# One per-layer profile (ResNet-50 fp32): how close each layer runs to the roofline.
set -- ${models[0]}
step "profile_$1" 90 "$tool" bench "$1" --batch "$2" --device opencl:0 --seconds 2

# 7. PyTorch on the same GPU.
if python3 -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    step pytorch 150 python3 bench/peer_pytorch_gpu.py --seconds 3 --json
fi

# The summary: Quarry's figures and, where PyTorch ran, the ratios (fp32 against PyTorch fp32 with
# TF32 off, tf32 against TF32, bf16 against bf16 autocast).
python3 - "$out" "${precisions[@]}" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out, precisions = sys.argv[1], sys.argv[2:]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name + ".json")).read())
    except Exception:
        return None
dev = load("devices")
if isinstance(dev, list):
    for d in dev:
        print(f"device: {d.get('name', d)}  {', '.join(f'{k}={d[k]}' for k in ('driver_version', 'peak_gflops', 'bandwidth_gbps', 'gemm_schedule') if k in d)}")
for p in precisions:
    t = load(f"test_ops_{p}")
    if t:
        print(f"test-ops {p}: {t.get('passed')} passed, {t.get('failed')} failed")
for p in precisions:
    g = load(f"gemm_{p}")
    if g:
        print(f"sgemm 4096^3 {p}: {g['gflops'] / 1e3:.1f} TFLOP/s ({100 * g.get('fraction_of_peak', 0):.0f}% of measured peak)")
c = load("gemm_clblast")
if c and g:
    print(f"sgemm 4096^3 CLBlast: {c['gflops'] / 1e3:.1f} TFLOP/s; quarry fp32 / CLBlast {load('gemm_fp32')['gflops'] / c['gflops']:.2f}")
torch = load("pytorch") or {}
peer = {(r["model"], r["mode"]): r["items_per_second"] for r in torch.get("results", [])}
print(f"{'model':14s} {'mode':5s} {'quarry':>10s} {'pytorch':>10s} {'ratio':>7s}")
for p in precisions:
    for m in sorted({n[len("model_"):-len(p) - 1] for n in (f[:-5] for f in os.listdir(out) if f.endswith(".json")) if n.startswith("model_") and n.endswith("_" + p)}):
        q = load(f"model_{m}_{p}")
        if not q or "items_per_second" not in q:
            print(f"{m:14s} {p:5s} {'failed':>10s}")
            continue
        t = peer.get((m, p))
        ratio = f"{q['items_per_second'] / t:7.2f}" if t else f"{'':7s}"
        print(f"{m:14s} {p:5s} {q['items_per_second']:10.1f} {t or 0:10.1f} {ratio}")
PY
