#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds everything and runs every test:
# the GoogleTest suites, the Rust and Go bindings' tests, and the C, Rust and
# Go samples with a tiny budget. This is the command README.md gives and
# .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/setup.sh
cmake --build build -j "$(nproc)"
cmake --install build --prefix build/install > /dev/null

# ONNX Runtime for the ONNX export tests, from the npm registry: the package
# carries its CPU library (--ignore-scripts: its install script would
# download from elsewhere). Where the registry cannot be reached those tests
# are skipped, and ctest says so.
export DASH_ONNXRUNTIME_MODULES="$root/build/onnxruntime/node_modules"
if [ ! -d "$DASH_ONNXRUNTIME_MODULES/onnxruntime-node" ]; then
  # The system's CA store too (a TLS-inspecting proxy's CA lives there), also
  # for a Node.js that brings its own list of CAs.
  if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
  fi
  npm install --ignore-scripts --no-audit --no-fund --cache "$root/build/npm-cache" \
    --prefix build/onnxruntime onnxruntime-node@1.30.0 \
    > build/onnxruntime.log 2>&1 ||
    { tail -n 5 build/onnxruntime.log
      echo "warning: npm could not install onnxruntime-node (build/onnxruntime.log); the ONNX Runtime tests will be skipped"; }
fi

# OpenMP threads that spin while waiting made epochs 10-20x slower when another
# job shared the cores; passive waiting costs nothing measurable here.
export OMP_WAIT_POLICY=PASSIVE
# Tests neither read nor leave measured FFT plans in the user's cache.
export DASH_FFTW_WISDOM=off
ctest --test-dir build --output-on-failure -j "$(nproc)"

echo "== the whole suite under AddressSanitizer and UndefinedBehaviorSanitizer"
# Every test again, the fuzz corpora included, in a build where any invalid
# memory access, leak or undefined behaviour fails the run.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDASH_SANITIZE=address,undefined \
  -DDASH_BUILD_BENCH=OFF -DDASH_CUDA_KERNELS=OFF > /dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)"

# Debian's toolchains (rustc 1.63, Go 1.19) first, so that a newer one on this
# machine cannot hide an incompatibility; the library through its pkg-config file.
export PATH="/usr/bin:$PATH"
export PKG_CONFIG_PATH="$root/build/install/lib/pkgconfig"
export CARGO_TARGET_DIR="$root/build/cargo"
echo "== Rust binding: $(rustc --version), $(cargo --version)"
(cd bindings/rust && cargo test --offline --quiet)
echo "== Go binding: $(go version)"
(cd bindings/go && go test ./... && go test -race ./...)

echo "== samples (tiny budget: this checks they run, not how well they learn)"
budget=(--budget 12 --max-train 500 --threads 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build/samples/c/dashnas_sample_c "${budget[@]}" --model "$work/c.dash"
(cd samples/rust && cargo run --offline --quiet --release -- "${budget[@]}" --model "$work/rust.dash")
(cd samples/go && go run . -budget 12 -max-train 500 -threads 2 -model "$work/go.dash")
echo "all tests passed"
