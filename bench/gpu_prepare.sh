#!/usr/bin/env bash
# Prepares what bench/gpu_check.sh needs on a GPU host that has no Swift: the portable bundle
# (scripts/package.sh) with CLBlast's SGEMM peer (bench/clblast_sgemm.c) and libclblast beside the
# tool, found through the same $ORIGIN/../lib RUNPATH, packed as dist/gpu.tar.xz (about 20 MB: the
# unpacked folder, over 70 MB, is more than a device run may carry).
#
#   bash bench/gpu_prepare.sh        # then, on the GPU host: bash bench/gpu_check.sh dist/gpu.tar.xz
#
# dist/ is git-ignored: carry dist/gpu.tar.xz to the GPU host with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=$(bash scripts/package.sh | tail -1)
rm -rf dist/gpu && mkdir -p dist/gpu
tar -C dist/gpu --strip-components=1 -xJf "$archive"
if [ -e /usr/include/clblast_c.h ]; then
    cc -O2 -o dist/gpu/bin/clblast_sgemm bench/clblast_sgemm.c -lclblast -lOpenCL -Wl,-rpath,'$ORIGIN/../lib'
    ldd dist/gpu/bin/clblast_sgemm | awk '/=> \//{print $3}' | grep -E 'clblast|libstdc\+\+|libgcc_s' | xargs -r -I{} cp -L {} dist/gpu/lib/
else
    echo "gpu_prepare.sh: libclblast-dev is not installed; the GPU check will run without the CLBlast peer" >&2
fi
strip dist/gpu/bin/quarry dist/gpu/bin/clblast_sgemm 2>/dev/null || true
tar -C dist -cJf dist/gpu.tar.xz gpu
du -sh dist/gpu dist/gpu.tar.xz >&2
echo dist/gpu.tar.xz
