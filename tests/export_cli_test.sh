#!/usr/bin/env bash
# `dashnas export`: a model the runner trained (Fashion-MNIST, tiny) becomes
# an ONNX file next to it, the options reach dash_model_export_onnx, and bad
# calls fail with a message and no file.
set -euo pipefail
runner=$1
root=$(cd "$(dirname "$0")/.." && pwd)
data=/usr/share/datasets/fashion-mnist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$runner" --task "$root/scripts/tasks/fashion_mnist.json" --method backbone \
  --train-x "$data/train-images-idx3-ubyte.gz" --train-y "$data/train-labels-idx1-ubyte.gz" \
  --set max_train=200 --set epochs=1 --set hpo=false --set threads=2 --set depth=10 \
  --model "$work/fm.dash" > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }

"$runner" export "$work/fm.dash" | tee "$work/export.log"
grep -qx "onnx: $work/fm.onnx" "$work/export.log" || { echo "export did not name its file"; exit 1; }
size=$(stat -c %s "$work/fm.onnx")
[ "$size" -gt 10000 ] || { echo "fm.onnx holds only $size bytes"; exit 1; }
grep -q dashnas_version "$work/fm.onnx" || { echo "fm.onnx lacks its metadata"; exit 1; }

"$runner" export "$work/fm.dash" -o "$work/sub/fixed.onnx" --opset 17 --fixed-batch 8 --no-normalize > /dev/null
[ -s "$work/sub/fixed.onnx" ] || { echo "-o with options wrote nothing"; exit 1; }
! cmp -s "$work/fm.onnx" "$work/sub/fixed.onnx" || { echo "the options changed nothing"; exit 1; }

if "$runner" export "$work/fm.dash" -o "$work/bad.onnx" --opset 99 2> "$work/err.log"; then
  echo "opset 99 was accepted"; exit 1
fi
grep -q 'opset' "$work/err.log" || { echo "no message about the opset:"; cat "$work/err.log"; exit 1; }
[ ! -e "$work/bad.onnx" ] || { echo "a refused export left a file"; exit 1; }
if "$runner" export "$work/missing.dash" 2> "$work/err.log"; then echo "a missing model exported"; exit 1; fi
grep -q 'missing.dash' "$work/err.log" || { echo "no message naming the missing file:"; cat "$work/err.log"; exit 1; }
echo "dashnas export: ok"
