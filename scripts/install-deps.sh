#!/usr/bin/env bash
# Installs the system packages Quarry needs on a new Debian machine: the OpenCL headers and ICD
# loader (build), PoCL (an OpenCL device on the CPU, for tests), libjpeg-turbo, libpng, libwebp (image
# decoding), and the benchmark peers (OpenBLAS, CLBlast). Safe to run again.
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libjpeg62-turbo-dev libpng-dev libwebp-dev
          libopenblas-dev libclblast-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
