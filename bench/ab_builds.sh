#!/bin/sh
# ab_builds.sh — dense speed of two builds of skipllama, interleaved (A, B, A, B, ...), so that
# the machine's drifting memory bandwidth hits both alike. For checking that a change leaves
# speed alone (e.g. the source-layout change: ratio within 0.97-1.03).
#
#   bench/ab_builds.sh OLD_BINARY NEW_BINARY MODEL.gguf [ROUNDS=3] [extra bench flags...]
#
# Each round runs `skipllama bench -o json` of each build once (-p 128 -n 64 -t 2 -r 3 -b 512 by
# default); prints per-round tokens/s and the medians over rounds with the ratio NEW / OLD.
# Needs python3 for the summary only.
set -eu
A=$1; B=$2; M=$3; R=${4:-3}
shift 3; [ $# -gt 0 ] && shift
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
for r in $(seq 1 "$R"); do
    for side in A B; do
        bin=$A; [ $side = B ] && bin=$B
        "$bin" bench -m "$M" -p 128 -n 64 -t 2 -r 3 -b 512 --membw-mb 0 -o json "$@" 2>/dev/null > "$T/$side.$r.json"
    done
done
python3 - "$T" "$R" "$M" <<'PY'
import json, sys, statistics, os
d, R, m = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {}
for side in "AB":
    for r in range(1, R + 1):
        for row in json.load(open(os.path.join(d, f"{side}.{r}.json"))):
            res.setdefault((row["test"], side), []).append(row["median_ts"])
print(f"model {os.path.basename(m)}, {R} interleaved rounds (tokens/s, median of 3 reps each)")
for test in sorted({t for t, _ in res}):
    a, b = res[(test, "A")], res[(test, "B")]
    print(f"  {test:6s} old {' '.join(f'{x:7.2f}' for x in a)} | new {' '.join(f'{x:7.2f}' for x in b)} | "
          f"median old {statistics.median(a):7.2f} new {statistics.median(b):7.2f} ratio {statistics.median(b) / statistics.median(a):.3f}"
          f" (per-round ratios {' '.join(f'{y / x:.3f}' for x, y in zip(a, b))})")
PY
