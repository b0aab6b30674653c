#!/usr/bin/python3
"""What DASH's search costs where it finds nothing better: over every
side-by-side pair in the given bench/results files whose guard kept the plain
backbone (so both runs retrained the same network), the DASH run's score minus
its pair's against the extra seconds its search call took (search, guard,
costs), fitted by least squares. An intercept near 0 says the deficit is the
search's time at the task's slope, not a worse network.

    scripts/guard_overhead.py bench/results/fashion_mnist.json [more.json ...]
"""
import json
import statistics
import sys

points = []  # (extra seconds, DASH - backbone in points, commit, options, seed)
for path in sys.argv[1:]:
    pairs = {}
    for r in json.load(open(path)):
        if r.get("side_by_side"):
            pairs.setdefault((r["commit"], str(r.get("set", [])), r["seed"]), {})[r["method"]] = r
    for (commit, options, seed), p in pairs.items():
        if "dash" not in p or "backbone" not in p:
            continue
        dash, back = p["dash"], p["backbone"]
        guard = ((dash.get("training") or {}).get("search") or {}).get("guard") or {}
        if guard.get("chosen") != "backbone":
            continue
        sign = 1 if dash["higher_is_better"] else -1
        # Points: hundredths of an accuracy; for an error metric, of the error.
        points.append((dash["search_s"] - back["search_s"], 100 * sign * (dash["metric"] - back["metric"]),
                       commit, options, seed))

if len(points) < 3:
    sys.exit("fewer than 3 pairs whose guard kept the backbone")
x = [p[0] for p in points]
y = [p[1] for p in points]
mx, my = statistics.mean(x), statistics.mean(y)
slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
intercept = my - slope * mx
resid = [b - (intercept + slope * a) for a, b in zip(x, y)]
# Standard error of the intercept (ordinary least squares).
s2 = sum(e * e for e in resid) / (len(points) - 2)
sxx = sum((a - mx) ** 2 for a in x)
se_intercept = (s2 * (1 / len(points) + mx * mx / sxx)) ** 0.5
print(f"{len(points)} pairs whose guard kept the backbone")
print(f"extra search-call seconds: mean {mx:.1f} (min {min(x):.1f}, max {max(x):.1f})")
print(f"DASH - backbone: mean {my:+.3f} points, sd {statistics.stdev(y):.3f}, "
      f"se {statistics.stdev(y) / len(y) ** 0.5:.3f}")
print(f"fit: {10 * slope:+.3f} points per 10 s of extra search call; at 0 s {intercept:+.3f} +- {se_intercept:.3f}")
