#!/usr/bin/env bash
# Evidence: on each task, the plain backbone (k=3, d=1 everywhere, the same
# grid) and DASH (search + guard + grid + retrain) with the same wall-clock
# budget, run side by side: both at once, one thread each on a core of its
# own (swapped between seeds), for every seed.
# Appends every run (seed, stages, epochs, seconds, architecture, the guard's
# choice, costs: the whole report) to bench/results/<task>.json and prints
# the table of means and spreads.
#
#   scripts/run_evidence.sh [task ...]   tasks: fashion_mnist darcy spoken_digits spoken_digits_raw
# Environment: BUDGET (seconds per run, default 600), SEEDS (default "0 1 2"), DASHNAS (a runner to use as is),
# DATA (where generated data sets go, default data/), RESULTS (default bench/results),
# SET (options for both methods, e.g. SET="guard_stderrs=0 hpo_share=0.5": an experiment; give it its own RESULTS).
set -euo pipefail
cd "$(dirname "$0")/.."

# DASHNAS=/path/to/dashnas: use that runner as it is (no setup, no build),
# e.g. a copy that later builds of the checkout do not change mid-run.
runner=${DASHNAS:-build/dashnas}
if [ -z "${DASHNAS:-}" ]; then
  scripts/setup.sh >/dev/null
  cmake --build build -j "$(nproc)" --target dashnas_cli
fi
/usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null || {
  sudo_if() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if apt-get install -y -q --no-install-recommends python3-numpy python3-scipy espeak-ng >/dev/null
}

budget=${BUDGET:-600}
data=${DATA:-data}
results=${RESULTS:-bench/results}
mkdir -p "$results"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
fm=/usr/share/datasets/fashion-mnist
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(fashion_mnist darcy spoken_digits spoken_digits_raw)
export OMP_WAIT_POLICY=PASSIVE

for task in "${tasks[@]}"; do
  extra=()
  case "$task" in
    fashion_mnist)
      spec=scripts/tasks/fashion_mnist.json
      files=(--train-x "$fm/train-images-idx3-ubyte.gz" --train-y "$fm/train-labels-idx1-ubyte.gz"
             --test-x "$fm/t10k-images-idx3-ubyte.gz" --test-y "$fm/t10k-labels-idx1-ubyte.gz")
      # Shifts and mirror images: without them 10,000 images are learnt by
      # heart (train loss 0.008) long before 600 s are up.
      extra=(--set max_train=10000 --set augment=shift_flip) ;;
    darcy|spoken_digits|spoken_digits_raw)
      gen_task=${task%_raw}
      if [ ! -f "$data/$task/test_y.npy" ]; then
        gen=(/usr/bin/python3 "scripts/data/$gen_task.py" --out "$data/$task")
        # Log band energies over time, or the raw 4 kHz waveform.
        if [ "$task" = spoken_digits ]; then gen+=(--features spectrogram); fi
        "${gen[@]}"
      fi
      spec=$data/$task/task.json
      files=(--train-x "$data/$task/train_x.npy" --train-y "$data/$task/train_y.npy"
             --test-x "$data/$task/test_x.npy" --test-y "$data/$task/test_y.npy") ;;
    *) echo "unknown task '$task' (fashion_mnist, darcy, spoken_digits, spoken_digits_raw)" >&2; exit 2 ;;
  esac
  for kv in ${SET:-}; do extra+=(--set "$kv"); done
  for seed in ${SEEDS:-0 1 2}; do
    echo "== $task, seed $seed: backbone and DASH side by side, 1 thread each, budget ${budget}s"
    outs=()
    # Each run on a core of its own where there are two (no moves between
    # cores mid-run), and the cores swapped from one seed to the next, so a
    # core that runs slower than the other weighs on both methods alike.
    read -r -a cores <<< "$(/usr/bin/python3 -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2])')"
    if [ $((seed % 2)) -eq 1 ] && [ ${#cores[@]} -ge 2 ]; then cores=("${cores[1]}" "${cores[0]}"); fi
    i=0
    for method in backbone dash; do
      out=$(mktemp --suffix=.json)
      outs+=("$out")
      pin=()
      if [ ${#cores[@]} -ge 2 ] && command -v taskset > /dev/null; then pin=(taskset -c "${cores[$i]}"); fi
      i=$((i + 1))
      DASH_COMMIT=$commit "${pin[@]+"${pin[@]}"}" "$runner" --task "$spec" --method "$method" "${files[@]}" \
        --budget "$budget" --set threads=1 --set seed="$seed" \
        "${extra[@]+"${extra[@]}"}" --out "$out" > "$out.log" 2>&1 &
    done
    wait
    i=0
    for out in "${outs[@]}"; do
      grep -E '^(warning|dash|backbone|architecture)' "$out.log" || true
      core=none
      if [ ${#pin[@]} -gt 0 ]; then core=${cores[$i]}; fi
      i=$((i + 1))
      /usr/bin/python3 - "$out" "$results/$task.json" "$task" "$seed" "$core" "${SET:-}" <<'PY'
import json, os, sys
run = json.load(open(sys.argv[1]))
path = sys.argv[2]
runs = json.load(open(path)) if os.path.exists(path) else []
entry = {"task": sys.argv[3], "task_spec": run["task"], "threads": 1, "seed": int(sys.argv[4]),
         "side_by_side": True}
if sys.argv[5] != "none":
    entry["core"] = int(sys.argv[5])
if sys.argv[6].split():
    entry["set"] = sys.argv[6].split()  # the experiment's options, as SET gave them
for k in ["method", "metric_name", "metric", "higher_is_better", "wall_s", "search_s",
          "retrain_s", "budget_s", "commit", "library_version", "architecture", "hyperparameters",
          "training"]:
    entry[k] = run.get(k)
runs.append(entry)
json.dump(runs, open(path, "w"), indent=1)
print(f"{entry['task']} {entry['method']} seed {entry['seed']}: {entry['metric_name']} "
      f"{entry['metric']:.4f} in {entry['wall_s']:.0f} s")
PY
      rm -f "$out" "$out.log"
    done
  done
done
/usr/bin/python3 scripts/evidence_table.py "$results"/*.json
