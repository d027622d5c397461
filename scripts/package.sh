#!/usr/bin/env bash
# Builds a portable Quarry bundle: the release tool with the Swift runtime linked in statically,
# the shared libraries it loads that a bare Linux machine lacks (the OpenCL ICD loader, libjpeg,
# libpng, libwebp and what they need), and a README, as
#   dist/quarry-<version>-linux-<arch>.tar.xz
# The tool finds its libraries through its RUNPATH ($ORIGIN/../lib), so the unpacked folder runs
# anywhere: `quarry-<version>-linux-<arch>/bin/quarry devices`. The archive's path is the last line.
#
#   bash scripts/package.sh            # host-generic x86-64 build (runs on any x86-64 host)
#   QUARRY_NATIVE=1 bash scripts/package.sh   # tuned for this host's vector width
set -euo pipefail
cd "$(dirname "$0")/.."

flags=(-c release --static-swift-stdlib --product quarry -Xswiftc -Ounchecked
       -Xlinker -rpath -Xlinker '$ORIGIN/../lib')
if [ "${QUARRY_NATIVE:-0}" = 1 ]; then flags+=(-Xswiftc -target-cpu -Xswiftc native); fi
# A build folder of its own: the static runtime and the rpath would otherwise relink the
# developer's everyday release build.
swift build --scratch-path .build-bundle "${flags[@]}" >&2
bin=.build-bundle/release/quarry

version=$("$bin" --version)
arch=$(uname -m)
name="quarry-${version}-linux-${arch}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin" "$stage/$name/lib"
cp "$bin" "$stage/$name/bin/quarry"

# Every library the tool loads, but glibc's own (every Linux has those, and a copy of another
# glibc's would not load with the host's dynamic linker).
ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libresolv.so.*|libutil.so.*) continue ;;
    esac
    case "$lib" in
        /opt/swift/*|*/swift/linux/*) echo "package.sh: the tool still loads $lib from the Swift toolchain" >&2; exit 1 ;;
    esac
    cp -L "$lib" "$stage/$name/lib/"
done

cat > "$stage/$name/README.md" <<README
# Quarry ${version} (linux ${arch})

Fast deep-learning feature extraction on CPUs and OpenCL devices. No Swift toolchain is needed:
the Swift runtime is linked into \`bin/quarry\`, and \`lib/\` holds the shared libraries it loads
that a bare Linux machine may lack (found through the tool's RUNPATH, \$ORIGIN/../lib).

    bin/quarry devices            # the CPU and every OpenCL device
    bin/quarry test-ops --device opencl:0   # every op of a device against the CPU path
    bin/quarry extract resnet50 --input photos/ --output feats.npy

OpenCL devices come from the system's ICD files (/etc/OpenCL/vendors/*.icd): install the vendor's
OpenCL driver (for NVIDIA, the driver's libnvidia-opencl.so.1 named in nvidia.icd).
Built from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown).
README

mkdir -p dist
archive="dist/${name}.tar.xz"
tar -C "$stage" -cJf "$archive.tmp" "$name"
mv "$archive.tmp" "$archive"
echo "$archive"
