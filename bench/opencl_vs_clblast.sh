#!/usr/bin/env bash
# Quarry's OpenCL GEMM and convolution against CLBlast on the same OpenCL device, in one run,
# and the cold / warm program-cache start of ResNet-50. Prints JSON lines.
#   bench/opencl_vs_clblast.sh            (device opencl:0; QUARRY_TEST_OPENCL_DEVICE=opencl:N to pick)
# Needs libclblast-dev and an OpenCL ICD (pocl-opencl-icd on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-5}
GEMMS=${GEMMS:-"2048,2048,2048;1024,1024,1024"}
# N,C,H,W,O,K,stride,pad: ResNet-50 layers (stem, a 3x3 of layer1, a 1x1 of layer3, a 3x3 of layer4).
CONVS=${CONVS:-"1,3,224,224,64,7,2,3;1,64,56,56,64,3,1,1;1,1024,14,14,256,1,1,0;1,512,7,7,512,3,1,1"}

mkdir -p .build/bench
cc -O2 -o .build/bench/clblast_sgemm bench/clblast_sgemm.c -lclblast -lOpenCL
swift build --build-tests >/dev/null

IFS=';' read -ra G <<< "$GEMMS"
IFS=';' read -ra C <<< "$CONVS"
for g in "${G[@]}"; do
    IFS=',' read -r m n k <<< "$g"
    .build/bench/clblast_sgemm gemm "$m" "$n" "$k" "$REPEATS"
    QUARRY_BENCH_GEMM="$g" QUARRY_BENCH_REPEATS=$REPEATS swift test --skip-build --filter BenchRunnerTests/testBenchKernels 2>&1 | grep '^{'
done
for c in "${C[@]}"; do
    .build/bench/clblast_sgemm conv ${c//,/ } "$REPEATS"
    QUARRY_BENCH_CONV="$c" QUARRY_BENCH_REPEATS=$REPEATS swift test --skip-build --filter BenchRunnerTests/testBenchKernels 2>&1 | grep '^{'
done

# Program cache: a fresh cache folder (cold: every program compiled), then the same folder in a
# new process (warm: binaries loaded). PoCL's own kernel cache is switched off so that "cold"
# really compiles.
CACHE=$(mktemp -d)
for run in cold warm; do
    echo -n "{\"run\":\"$run\"} "
    POCL_KERNEL_CACHE=0 QUARRY_CACHE_DIR=$CACHE QUARRY_BENCH_RESNET50=1 swift test --skip-build --filter BenchRunnerTests/testResNet50ProgramStart 2>&1 | grep '^{'
done
rm -rf "$CACHE"
