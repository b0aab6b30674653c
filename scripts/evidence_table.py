#!/usr/bin/python3
"""Prints the DASH-versus-backbone table from bench/results/<task>.json files
(the newest run of each method per file)."""
import json
import sys

print("| task | metric | backbone | DASH | DASH better | budget s | DASH search s | search / backbone time |")
print("|---|---|---:|---:|---|---:|---:|---:|")
for path in sys.argv[1:]:
    runs = json.load(open(path))
    last = {}
    for r in runs:
        last[r["method"]] = r
    if "backbone" not in last or "dash" not in last:
        continue
    b, d = last["backbone"], last["dash"]
    hib = d["higher_is_better"]
    better = (d["metric"] > b["metric"]) if hib else (d["metric"] < b["metric"])
    name = d["metric_name"] + ("" if hib else " (lower is better)")
    print(f"| {d['task']} | {name} | {b['metric']:.4f} | {d['metric']:.4f} | "
          f"{'yes' if better else 'no'} | {d['budget_s']:.0f} | {d['search_s']:.0f} | "
          f"{d['search_s'] / b['wall_s']:.2f} |")
