#!/usr/bin/python3
"""Prints the DASH-versus-backbone table from bench/results/<task>.json files:
per task and method the mean and standard deviation over seeds of the runs
made side by side (run_evidence.sh), the worst paired seed, wall time and
which network the guard kept."""
import json
import statistics
import sys


def sd(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


print("| task | metric | seeds | backbone mean +- sd | DASH mean +- sd | DASH worst paired seed | "
      "DASH wall s (max) | budget s | not plain |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    runs = [r for r in json.load(open(path)) if r.get("side_by_side")]
    if not runs:
        continue
    # The newest commit's runs with the newest run's options (run_evidence.sh's
    # SET) only, one per (method, seed).
    commit, options = runs[-1]["commit"], runs[-1].get("set", [])
    pairs = {}
    for r in runs:
        if r["commit"] == commit and r.get("set", []) == options:
            pairs.setdefault(r["seed"], {})[r["method"]] = r
    pairs = {s: p for s, p in pairs.items() if "dash" in p and "backbone" in p}
    if not pairs:
        continue
    d0 = next(iter(pairs.values()))["dash"]
    hib = d0["higher_is_better"]
    dash = [p["dash"]["metric"] for p in pairs.values()]
    back = [p["backbone"]["metric"] for p in pairs.values()]
    gain = [(a - b) if hib else (b - a) for a, b in zip(dash, back)]
    # Runs whose retrained network is not the plain one (k=3, d=1 everywhere).
    kept = sum(1 for p in pairs.values()
               if any((l["kernel_size"], l["dilation"]) != (3, 1)
                      for l in p["dash"]["architecture"]["layers"]))
    name = d0["metric_name"] + ("" if hib else " (lower is better)") + "".join(f", {o}" for o in options)
    print(f"| {d0['task']} | {name} | {len(pairs)} | {statistics.mean(back):.4f} +- {sd(back):.4f} | "
          f"{statistics.mean(dash):.4f} +- {sd(dash):.4f} | {min(gain):+.4f} | "
          f"{max(p['dash']['wall_s'] for p in pairs.values()):.0f} | {d0['budget_s']:.0f} | "
          f"{kept} of {len(pairs)} |")
