#!/usr/bin/env bash
# Regenerates Sources/QuarryFormats/Onnx/onnx.pb.swift from the ONNX schema. Run it only when moving
# to a newer onnx.proto; the generated file is committed so that building Quarry never needs protoc
# or the (slow to build) protoc-gen-swift plugin.
#
# Needs: protoc (Debian: apt-get install protobuf-compiler), Python's onnx package (pip install onnx,
# which ships onnx/onnx.proto, the proto2 schema), and protoc-gen-swift built at the same version of
# swift-protobuf that Package.swift resolves (1.39.0 here):
#   git clone https://github.com/apple/swift-protobuf /tmp/swift-protobuf-src
#   git -C /tmp/swift-protobuf-src checkout 1.39.0
#   (cd /tmp/swift-protobuf-src && swift build -c release --product protoc-gen-swift)
# Then: PROTOC_GEN_SWIFT=/tmp/swift-protobuf-src/.build/release/protoc-gen-swift scripts/regenerate_onnx_proto.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
plugin="${PROTOC_GEN_SWIFT:-/tmp/swift-protobuf-src/.build/release/protoc-gen-swift}"
proto_dir="$(python3 -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')"
out="$root/Sources/QuarryFormats/Onnx"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The schema is copied under a plain name so the generated Swift file is onnx.pb.swift; the
# message types get the Onnx_ prefix from the schema's `package onnx;`.
cp "$proto_dir/onnx.proto" "$work/onnx.proto"
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" --proto_path="$work" \
  --swift_opt=Visibility=Internal --swift_out="$out" "$work/onnx.proto"
echo "wrote $out/onnx.pb.swift from onnx $(python3 -c 'import onnx; print(onnx.__version__)')"
