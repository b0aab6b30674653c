#!/usr/bin/env bash
# Issue-3 evidence: on each task, the plain backbone (k=3, d=1 everywhere) and
# DASH (search + grid + retrain), each with the same total wall-clock budget.
# Appends one run per method to bench/results/<task>.json (a JSON list) and
# prints the table.
#
#   scripts/run_evidence.sh [task ...]     tasks: fashion_mnist darcy spoken_digits
# Environment: BUDGET (seconds per run, default 600), THREADS (default 2),
# SEED (default 0), DATA (where generated data sets go, default data/),
# RESULTS (default bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
/usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null || {
  sudo_if() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if apt-get install -y -q --no-install-recommends python3-numpy python3-scipy espeak-ng >/dev/null
}
cmake --build build -j "$(nproc)" --target dashnas_cli

budget=${BUDGET:-600}
threads=${THREADS:-2}
data=${DATA:-data}
results=${RESULTS:-bench/results}
mkdir -p "$results"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
fm=/usr/share/datasets/fashion-mnist
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(fashion_mnist darcy spoken_digits)
export OMP_WAIT_POLICY=PASSIVE

for task in "${tasks[@]}"; do
  extra=()
  case "$task" in
    fashion_mnist)
      spec=scripts/tasks/fashion_mnist.json
      files=(--train-x "$fm/train-images-idx3-ubyte.gz" --train-y "$fm/train-labels-idx1-ubyte.gz"
             --test-x "$fm/t10k-images-idx3-ubyte.gz" --test-y "$fm/t10k-labels-idx1-ubyte.gz")
      extra=(--set max_train=10000) ;;
    darcy|spoken_digits)
      if [ ! -f "$data/$task/test_y.npy" ]; then
        gen=(/usr/bin/python3 "scripts/data/$task.py" --out "$data/$task")
        # Log band energies over time: a 1D sequence a 2-core CPU trains on in minutes
        # (the raw 4 kHz waveform costs ~4 s per step of 64 clips).
        [ "$task" = spoken_digits ] && gen+=(--features spectrogram)
        "${gen[@]}"
      fi
      spec=$data/$task/task.json
      files=(--train-x "$data/$task/train_x.npy" --train-y "$data/$task/train_y.npy"
             --test-x "$data/$task/test_x.npy" --test-y "$data/$task/test_y.npy") ;;
    *) echo "unknown task '$task' (fashion_mnist, darcy, spoken_digits)" >&2; exit 2 ;;
  esac
  for method in backbone dash; do
    out=$(mktemp --suffix=.json)
    echo "== $task / $method, budget ${budget}s, $threads threads"
    DASH_COMMIT=$commit build/dashnas --task "$spec" --method "$method" "${files[@]}" \
      --budget "$budget" --set threads="$threads" --set seed="${SEED:-0}" \
      "${extra[@]+"${extra[@]}"}" --out "$out" 2>&1 | grep -v ' step [0-9]*/[0-9]* .*valid nan' || true
    /usr/bin/python3 - "$out" "$results/$task.json" "$task" "$threads" <<'PY'
import json, os, sys
run = json.load(open(sys.argv[1]))
path = sys.argv[2]
runs = json.load(open(path)) if os.path.exists(path) else []
entry = {"task": sys.argv[3], "task_spec": run["task"], "threads": int(sys.argv[4])}
for k in ["method", "metric_name", "metric", "higher_is_better", "wall_s", "search_s",
          "retrain_s", "budget_s", "commit", "library_version", "architecture", "hyperparameters"]:
    entry[k] = run.get(k)
runs.append(entry)
json.dump(runs, open(path, "w"), indent=1)
print(f"{entry['task']} {entry['method']}: {entry['metric_name']} {entry['metric']:.4f} in {entry['wall_s']:.0f} s")
PY
    rm -f "$out"
  done
done
/usr/bin/python3 scripts/evidence_table.py "$results"/*.json
