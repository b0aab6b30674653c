#!/usr/bin/env bash
# Installs everything dashnas needs on Debian 12 from Debian's own packages and
# configures the build in ./build. Safe to run again: apt-get skips what is
# installed and CMake reconfigures in place.
#
#   scripts/setup.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  build-essential g++ cmake pkg-config ccache git
  libtorch-dev            # tensors, autograd, optimizers (LibTorch 1.13, CPU)
  libgloo-dev             # the headers of c10d's Gloo process group (data-parallel runs)
  libdnnl-dev             # oneDNN: batched matmul of the spectral channel product
  libfftw3-dev            # FFTW: the CPU transforms (float and double, OpenMP)
  libopenblas0-openmp     # LibTorch's BLAS calls; Debian's default BLAS is the slow reference one
  nlohmann-json3-dev      # JSON options and metadata
  libonnx-dev             # ONNX export: the protobuf types, checker and shape inference
  libboost-dev libboost-iostreams-dev zlib1g-dev   # CRC-32 and gzip'd IDX files
  ocl-icd-opencl-dev      # only because Debian's dnnl-config.cmake asks for OpenCL
  libgtest-dev            # tests
  dataset-fashion-mnist   # the default real data set (and a test reads its files)
  cargo rustc             # the Rust binding, with Debian's rustc 1.63
  golang-go               # the Go binding, with Debian's Go 1.19
  binutils                # nm/objdump: the exported-symbols test
  ca-certificates         # HTTPS to the npm registry (ONNX Runtime for the tests)
)

# Node.js and npm run ONNX Runtime (onnxruntime-node from npm) on the
# exported ONNX files in the tests. Only where npm is missing: a Node.js from
# elsewhere (NodeSource's carries its own npm) conflicts with Debian's npm.
if ! command -v npm > /dev/null; then packages+=(nodejs npm); fi

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q
as_root apt-get install -y -q --no-install-recommends "${packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
