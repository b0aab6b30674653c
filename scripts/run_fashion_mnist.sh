#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds dashnas and runs DASH on
# Fashion-MNIST (Debian's dataset-fashion-mnist): search, hyperparameter grid,
# retrain, test. Writes results/fashion_mnist_<method>.json and the model
# results/fashion_mnist_<method>.dash.
#
#   scripts/run_fashion_mnist.sh [--method dash|backbone] [--set key=value ...]
# Environment: BUDGET (seconds, default 600), MAX_TRAIN (rows, default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake --build build -j "$(nproc)" --target dashnas_cli

data=/usr/share/datasets/fashion-mnist
method=dash
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --method) method=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p results
export OMP_WAIT_POLICY=PASSIVE
DASH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
build/dashnas --task scripts/tasks/fashion_mnist.json --method "$method" \
  --train-x "$data/train-images-idx3-ubyte.gz" --train-y "$data/train-labels-idx1-ubyte.gz" \
  --test-x "$data/t10k-images-idx3-ubyte.gz" --test-y "$data/t10k-labels-idx1-ubyte.gz" \
  --budget "${BUDGET:-600}" --set max_train="${MAX_TRAIN:-10000}" \
  --work-dir "results/fashion_mnist_${method}_work" --model "results/fashion_mnist_${method}.dash" \
  --out "results/fashion_mnist_${method}.json" "${args[@]+"${args[@]}"}"
