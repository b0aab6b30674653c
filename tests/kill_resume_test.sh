#!/usr/bin/env bash
# Kills a real dashnas-run with SIGKILL once it has written a checkpoint, then
# resumes it: the resumed run must continue after the checkpointed epochs
# (losing at most the one in progress) and finish with a test score.
set -euo pipefail
runner=$1
root=$(cd "$(dirname "$0")/.." && pwd)
data=/usr/share/datasets/fashion-mnist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

args=(--task "$root/scripts/tasks/fashion_mnist.json" --method backbone
  --train-x "$data/train-images-idx3-ubyte.gz" --train-y "$data/train-labels-idx1-ubyte.gz"
  --test-x "$data/t10k-images-idx3-ubyte.gz" --test-y "$data/t10k-labels-idx1-ubyte.gz"
  --set max_train=600 --set epochs=6 --set batch_size=50
  --set threads=2 --work-dir "$work" --out "$work/result.json")

# The runner itself in the background, so that $! is its pid: a shell
# function started with & is a subshell, and killing that left the runner
# training on beside the resumed run (and writing the same checkpoints).
"$runner" "${args[@]}" > "$work/first.log" 2>&1 &
pid=$!
# (Up to 300 s: under AddressSanitizer with another test on the cores the
# search's grid before the retrain took over 60 s.)
for _ in $(seq 1 3000); do
  [ -f "$work/retrain.ckpt" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "run ended before its first checkpoint"; cat "$work/first.log"; exit 1; }
  sleep 0.1
done
[ -f "$work/retrain.ckpt" ] || { echo "no checkpoint after 300 s"; kill -9 "$pid"; exit 1; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ ! -f "$work/result.json" ] || { echo "the run finished before it was killed; make it longer"; exit 1; }

"$runner" "${args[@]}" --resume > "$work/second.log" 2>&1
first_epoch=$(grep -o 'retrain\] epoch [0-9]*' "$work/second.log" | head -1 | grep -o '[0-9]*$')
echo "resumed at epoch $first_epoch"
[ "$first_epoch" -ge 2 ] || { echo "the resumed run started over"; cat "$work/second.log"; exit 1; }
grep -q '"epochs_done": 6' "$work/result.json" || { echo "result lacks 6 epochs"; exit 1; }
grep -q '"metric": [0-9]' "$work/result.json" || { echo "result lacks a test metric"; exit 1; }
echo "kill and resume: ok"
