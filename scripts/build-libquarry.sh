#!/usr/bin/env bash
# Builds the C ABI (include/quarry.h) in release and installs it as .build/release/libquarry.so
# (SwiftPM names the product's file libQuarryC.so). The plain release build, README's: the CPU's
# hot kernels choose their instruction-set level at run time, so the library is fast on this host
# and still runs on an older x86-64 one (a -target-cpu native build would not). Prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release)
swift build "${flags[@]}" --product QuarryC >&2
dir=$(swift build "${flags[@]}" --show-bin-path)
cp -f "$dir/libQuarryC.so" "$dir/libquarry.so.tmp" && mv -f "$dir/libquarry.so.tmp" "$dir/libquarry.so"
echo "$dir/libquarry.so"
