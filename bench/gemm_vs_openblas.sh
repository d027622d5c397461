#!/bin/sh
# Quarry's SGEMM against OpenBLAS's in one run, same shape and thread count, alternating so that
# both see the same load on a shared machine. Usage: bench/gemm_vs_openblas.sh [M N K] [REPEATS]
# Quarry is the plain release build (its kernels pick their instruction-set level at run time).
# OpenBLAS runs with its own detection (OPENBLAS_CORETYPE unset) and with each core type named in
# CORETYPES that this CPU can run (DYNAMIC_ARCH mis-detects some virtual CPUs); compare with its
# best. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are changed for the OpenBLAS runs only.
set -e
cd "$(dirname "$0")/.."
M=${1:-2048}; N=${2:-$M}; K=${3:-$M}; R=${4:-10}
CORETYPES=${CORETYPES:-"Haswell SkylakeX Cooperlake Zen"}
mkdir -p bench/out
gcc -O2 -o bench/out/openblas_sgemm bench/openblas_sgemm.c -lopenblas
swift build -c release --product quarry-bench >/dev/null
Q=.build/release/quarry-bench
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512_bf16\|avx512f\|avx2\|fma' | sort -u | tr '\n' ' '))"
echo "load before: $(cat /proc/loadavg)"
for t in 1 2; do
  for round in 1 2; do
    $Q gemm "$M" "$N" "$K" $t "$R"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bench/out/openblas_sgemm "$M" "$N" "$K" $t "$R"
    for c in $CORETYPES; do
      env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$c" bench/out/openblas_sgemm "$M" "$N" "$K" $t "$R" || true
    done
  done
done
$Q peak 1
$Q peak 2
echo "load after: $(cat /proc/loadavg)"
