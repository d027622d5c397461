#!/bin/sh
# Quarry's CPU convolutions on the 3x3 and 1x1 layers of ResNet-50's four stages (torchvision
# layout, batch 1, bias + fused relu, weights packed once), then the measured fp32 peak.
# Usage: bench/conv_resnet50.sh [THREADS] [REPEATS]
set -e
cd "$(dirname "$0")/.."
T=${1:-2}; R=${2:-30}
swift build -c release --product quarry-bench -Xswiftc -Ounchecked -Xswiftc -target-cpu -Xswiftc native >/dev/null
Q=.build/release/quarry-bench
echo "load before: $(cat /proc/loadavg)"
#        N  C    H   W   O    K S P G
$Q conv  1  3   224 224  64   7 2 3 1 "$T" "$R"   # stem
for stage in "56 64" "28 128" "14 256" "7 512"; do
  set -- $stage
  $Q conv 1 "$2"         "$1" "$1" "$2"         3 1 1 1 "$T" "$R"   # 3x3
  $Q conv 1 "$(($2*4))"  "$1" "$1" "$2"         1 1 0 1 "$T" "$R"   # 1x1 reduce
  $Q conv 1 "$2"         "$1" "$1" "$(($2*4))"  1 1 0 1 "$T" "$R"   # 1x1 expand
done
$Q peak "$T"
echo "load after: $(cat /proc/loadavg)"
