#!/usr/bin/env bash
# The GPU check of the CUDA backend, in two steps, because the GPU machine
# reaches no package registry:
#
#   scripts/gpu-check.sh fetch   on a Debian 12 machine: downloads the packages
#                                dashnas builds against (oneDNN, FFTW, Boost,
#                                nlohmann-json, GoogleTest) into .gpudeps/,
#                                with Debian's Fashion-MNIST files (53 MB)
#   scripts/gpu-check.sh run     on the GPU machine, with .gpudeps/ carried:
#                                unpacks them under /tmp/gpudeps, configures
#                                against PyTorch's CUDA LibTorch with
#                                -DDASH_WITH_CUDA=ON, builds, runs the CUDA
#                                kernel test and the operator tests on the GPU
#                                (the naive-mixture reference and CPU-versus-GPU
#                                agreement), the operator benchmark on the GPU
#                                and on that machine's CPU, and the same short
#                                DASH run (search, grid, retrain on 10,000
#                                Fashion-MNIST images, fixed epochs) with
#                                device=cuda and device=cpu. JSON lines.
#
# Meant to finish in under 8 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libdnnl-dev libdnnl2 libfftw3-dev libfftw3-single3 libfftw3-double3 libfftw3-long3
  libfftw3-quad3 nlohmann-json3-dev libboost1.74-dev libboost-iostreams1.74-dev
  libboost-iostreams1.74.0 libboost-program-options1.74-dev libboost-program-options1.74.0
  libgtest-dev)

case "${1:-}" in
fetch)
  mkdir -p .gpudeps
  grep -qx '/.gpudeps/' .git/info/exclude 2>/dev/null || echo /.gpudeps/ >> .git/info/exclude
  (cd .gpudeps && apt-get download "${packages[@]}")
  mkdir -p .gpudeps/fashion-mnist
  cp /usr/share/datasets/fashion-mnist/*.gz .gpudeps/fashion-mnist/
  du -sh .gpudeps
  ;;
run)
  [ -d .gpudeps ] || { echo "no .gpudeps/: run 'scripts/gpu-check.sh fetch' first and carry it" >&2; exit 2; }
  deps=/tmp/gpudeps
  mkdir -p "$deps"
  for f in .gpudeps/*.deb; do dpkg -x "$f" "$deps"; done
  lib=$deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  echo "{\"check\": \"gpu\", \"gpu\": \"$gpu\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"torch\": \"$(python3 -c 'import torch; print(torch.__version__)')\"}"
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDASH_WITH_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DCMAKE_LIBRARY_PATH="$lib" \
    -DCMAKE_INCLUDE_PATH="$deps/usr/include" -DGTest_DIR="$lib/cmake/GTest" > build-gpu.log 2>&1 ||
    { tail -40 build-gpu.log; exit 1; }
  cmake --build build-gpu -j "$(nproc)" --target dashnas_tests dashnas_bench_ops \
    dashnas_cuda_kernel_test dashnas_cli dashnas_capi_tests >> build-gpu.log 2>&1 || { tail -60 build-gpu.log; exit 1; }
  status=0
  build-gpu/tests/dashnas_cuda_kernel_test || status=1
  build-gpu/tests/dashnas_tests --gtest_brief=1 \
    --gtest_filter='FourierMixtureCuda.*:GenericProducts.*:SpectralConv*:FourierMixture*' || status=1
  # A trained model moved to the GPU infers as on the CPU (dash_model_set_device).
  build-gpu/tests/dashnas_capi_tests --gtest_brief=1 --gtest_filter='TrainedModel.SetDevice*' || status=1
  build-gpu/bench/dashnas_bench_ops --device cuda --runs 10 || status=1
  build-gpu/bench/dashnas_bench_ops --device cpu --runs 3 --threads "$(nproc)" || status=1
  data=.gpudeps/fashion-mnist
  for device in cuda cpu; do
    build-gpu/dashnas --task scripts/tasks/fashion_mnist.json --method dash \
      --train-x "$data/train-images-idx3-ubyte.gz" --train-y "$data/train-labels-idx1-ubyte.gz" \
      --test-x "$data/t10k-images-idx3-ubyte.gz" --test-y "$data/t10k-labels-idx1-ubyte.gz" \
      --set device="$device" --set threads="$(nproc)" --set max_train=10000 --set epochs=2 \
      --set hpo_epochs=1 --out "/tmp/e2e_$device.json" > "/tmp/e2e_$device.log" 2>&1 || status=1
    python3 -c "import json,sys; r=json.load(open('/tmp/e2e_$device.json')); print(json.dumps({'e2e': '$device', 'wall_s': r['wall_s'], 'search_s': r['search_s'], 'retrain_s': r['retrain_s'], 'test_accuracy': r['metric']}))" ||
      { tail -20 "/tmp/e2e_$device.log"; status=1; }
  done
  exit "$status"
  ;;
*)
  echo "usage: scripts/gpu-check.sh fetch|run" >&2
  exit 2
  ;;
esac
