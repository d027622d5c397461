#!/bin/sh
# Quarry's SGEMM against OpenBLAS's in one run, same shape and thread count, alternating so that
# both see the same load on a shared machine. Usage: bench/gemm_vs_openblas.sh [M N K] [REPEATS]
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for the OpenBLAS runs only, so it picks its own
# kernel for this CPU (printed as core=...).
set -e
cd "$(dirname "$0")/.."
M=${1:-2048}; N=${2:-$M}; K=${3:-$M}; R=${4:-10}
mkdir -p bench/out
gcc -O2 -o bench/out/openblas_sgemm bench/openblas_sgemm.c -lopenblas
swift build -c release --product quarry-bench -Xswiftc -Ounchecked -Xswiftc -target-cpu -Xswiftc native >/dev/null
Q=.build/release/quarry-bench
echo "load before: $(cat /proc/loadavg)"
for t in 1 2; do
  for round in 1 2; do
    $Q gemm "$M" "$N" "$K" $t "$R"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE bench/out/openblas_sgemm "$M" "$N" "$K" $t "$R"
  done
done
$Q peak 1
$Q peak 2
echo "load after: $(cat /proc/loadavg)"
