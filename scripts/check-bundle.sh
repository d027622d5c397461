#!/usr/bin/env bash
# Checks the portable bundle as a machine without Swift would see it: builds it, unpacks it in an
# empty folder, and runs `quarry devices` and `quarry test-ops` with a bare environment (no
# LD_LIBRARY_PATH, PATH without the Swift toolchain), after checking that no library the tool
# loads resolves into the toolchain. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=$(bash scripts/package.sh | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$archive"
tool=$(echo "$work"/quarry-*/bin/quarry)
echo "check-bundle: $archive ($(du -h "$archive" | cut -f1)), unpacked in $work"
if env -i PATH=/usr/bin:/bin ldd "$tool" | grep -E "/opt/swift|not found"; then
    echo "check-bundle: the bundled tool needs libraries outside the bundle and the base system" >&2
    exit 1
fi
bare=(env -i PATH=/usr/bin:/bin HOME="$work" QUARRY_CACHE_DIR=off)
"${bare[@]}" "$tool" --version
"${bare[@]}" "$tool" devices
if "${bare[@]}" "$tool" test-ops --help >/dev/null 2>&1; then
    "${bare[@]}" "$tool" test-ops --device opencl:0 --cases-per-op 2
fi
echo "check-bundle: passed"
