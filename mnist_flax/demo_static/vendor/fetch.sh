#!/usr/bin/env bash
# Re-fetches the vendored onnxruntime-web files from the npm registry.
# Only the wasm-only build is kept: the page runs the model on the CPU, so the
# WebGL/WebGPU/JSEP builds (and their 17-28 MB .wasm files) are not needed.
# Usage: bash mnist_flax/demo_static/vendor/fetch.sh [VERSION]
set -euo pipefail
version="${1:-1.30.0}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-web@${version}" >/dev/null &&
 tar xzf onnxruntime-web-*.tgz)
for f in ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  cp "$tmp/package/dist/$f" "$here/$f"
done
sed -i "s/^version: .*/version: ${version}/" "$here/README.md"
(cd "$here" && sha256sum ort.wasm.min.js ort-wasm-simd-threaded.mjs \
   ort-wasm-simd-threaded.wasm > SHA256SUMS)
ls -l "$here"
