#!/usr/bin/env bash
# Fuzzes every reader of untrusted input with libFuzzer under AddressSanitizer
# and UndefinedBehaviorSanitizer: the model-file loader, the .npy and IDX
# readers, the task spec and options parsers, dash_arch_from_json.
#
#   scripts/fuzz.sh [target...]      (default: all six, one after another)
#
# FUZZ_SECONDS (default 600) is each target's run time, FUZZ_JOBS (default 1)
# how many targets run at once. Each starts from its seeds in fuzz/corpus/<t>
# and keeps what it finds in build-fuzz/corpus/<t>; a crash is saved as
# build-fuzz/crashes/<t>-crash-<sha1>: copy it into fuzz/corpus/<t>/ (named
# regression-...) once fixed, and ctest replays it from then on. The last
# line per target is a JSON summary: executions, coverage, corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-1}
all=(model_file npy idx task_spec options arch)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! command -v clang++ > /dev/null || [ ! -e /usr/lib/llvm-14/lib/libomp.so ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev libomp-14-dev
fi

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDASH_FUZZ=ON \
  -DDASH_SANITIZE=address,undefined -DDASH_BUILD_TESTS=OFF -DDASH_BUILD_BENCH=OFF \
  -DDASH_CUDA_KERNELS=OFF > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/#/dash_fuzz_}"
mkdir -p build-fuzz/logs build-fuzz/crashes

# A refused allocation is an error the library reports (DASH_OUT_OF_MEMORY),
# not a crash; a leak is a crash.
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

fuzz_one() {
  local t=$1 log=build-fuzz/logs/$1.log rc=0
  mkdir -p "build-fuzz/corpus/$t"
  build-fuzz/fuzz/dash_fuzz_"$t" "build-fuzz/corpus/$t" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=60 -rss_limit_mb=6144 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crashes/$t-" > "$log" 2>&1 || rc=$?
  local execs cov ft corpus
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  corpus=$(ls "build-fuzz/corpus/$t" | wc -l)
  printf '{"target": "%s", "seconds": %s, "exit": %d, "executions": %s, "coverage_edges": %s, "features": %s, "new_corpus_files": %s}\n' \
    "$t" "$seconds" "$rc" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$corpus"
  return "$rc"
}

failed=0
running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ "$failed" -eq 0 ] || { echo "a fuzz target failed: see build-fuzz/logs and build-fuzz/crashes" >&2; exit 1; }
echo "fuzzing: no crash"
