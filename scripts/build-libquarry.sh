#!/usr/bin/env bash
# Builds the C ABI (include/quarry.h) in release for this host and installs it as
# .build/release/libquarry.so (SwiftPM names the product's file libQuarryC.so). The flags are the
# fast build of README.md: the host's vector width and no overflow checks. Prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release -Xswiftc -Ounchecked -Xswiftc -target-cpu -Xswiftc native)
swift build "${flags[@]}" --product QuarryC >&2
dir=$(swift build "${flags[@]}" --show-bin-path)
cp -f "$dir/libQuarryC.so" "$dir/libquarry.so.tmp" && mv -f "$dir/libquarry.so.tmp" "$dir/libquarry.so"
echo "$dir/libquarry.so"
