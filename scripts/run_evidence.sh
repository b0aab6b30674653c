#!/usr/bin/env bash
# Issue-3 evidence: on each task, the plain backbone (k=3, d=1 everywhere) and
# DASH (search + grid + retrain), each with the same total wall-clock budget.
# Appends one run per method to bench/results/<task>.json (a JSON list).
#
#   scripts/run_evidence.sh [task ...]     tasks: fashion_mnist darcy spoken_digits
# Environment: BUDGET (seconds per run, default 600), THREADS (default 2),
# CPUS (a taskset CPU list to pin the runs to, default: none), SEED (default 0),
# DATA (where generated data sets go, default data/), RESULTS (default bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/setup.sh >/dev/null
cmake --build build -j "$(nproc)" --target dashnas-run

budget=${BUDGET:-600}
threads=${THREADS:-2}
data=${DATA:-data}
mkdir -p "${RESULTS:-bench/results}"
pin=()
[ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
fm=/usr/share/datasets/fashion-mnist
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(fashion_mnist darcy spoken_digits)
export OMP_WAIT_POLICY=PASSIVE

for task in "${tasks[@]}"; do
  case "$task" in
    fashion_mnist)
      spec=scripts/tasks/fashion_mnist.json
      files=(--train-x "$fm/train-images-idx3-ubyte.gz" --train-y "$fm/train-labels-idx1-ubyte.gz"
             --test-x "$fm/t10k-images-idx3-ubyte.gz" --test-y "$fm/t10k-labels-idx1-ubyte.gz")
      extra=(--set max_train=10000) ;;
    darcy|spoken_digits)
      [ -f "$data/$task/test_y.npy" ] || /usr/bin/python3 "scripts/data/$task.py" --out "$data/$task"
      spec=$data/$task/task.json
      files=(--train-x "$data/$task/train_x.npy" --train-y "$data/$task/train_y.npy"
             --test-x "$data/$task/test_x.npy" --test-y "$data/$task/test_y.npy")
      extra=() ;;
    *) echo "unknown task '$task' (fashion_mnist, darcy, spoken_digits)" >&2; exit 2 ;;
  esac
  for method in backbone dash; do
    out=$(mktemp --suffix=.json)
    echo "== $task / $method, budget ${budget}s, $threads threads"
    DASH_COMMIT=$commit "${pin[@]}" build/dashnas-run --task "$spec" --method "$method" "${files[@]}" \
      --set budget_s="$budget" --set threads="$threads" --set seed="${SEED:-0}" "${extra[@]}" \
      --out "$out" | grep -v '\] epoch .* step .*valid nan' || true
    /usr/bin/python3 - "$out" "${RESULTS:-bench/results}/$task.json" "$task" <<'PY'
import json, os, sys
run = json.load(open(sys.argv[1]))
run["task_spec"], run["task"] = run["task"], sys.argv[3]
path = sys.argv[2]
runs = json.load(open(path)) if os.path.exists(path) else []
keep = ["task", "task_spec", "method", "metric_name", "metric", "higher_is_better", "wall_s", "search_s",
        "hpo_s", "retrain_s", "budget_s", "commit", "threads", "architecture", "hyperparameters"]
entry = {k: run.get(k) for k in keep}
entry["valid_metric"] = run.get("valid_metric")
runs.append(entry)
json.dump(runs, open(path, "w"), indent=1)
print(f"{run['task']} {run['method']}: {run['metric_name']} {run['metric']:.4f} in {run['wall_s']:.0f} s")
PY
    rm -f "$out"
  done
done
/usr/bin/python3 scripts/evidence_table.py "${RESULTS:-bench/results}"/*.json
