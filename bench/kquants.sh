#!/bin/sh
# kquants.sh — skipllama vs llama.cpp on Llama-3.2-1B-shape files in the types of issue 19, each
# type in two files: quantized by llama.cpp's own quantizer (MODELS/l1b-TYPE-llamacpp.gguf) and by
# `skipllama quantize` (MODELS/l1b-TYPE-skipllama.gguf, written from MODELS/l1b-f16.gguf when
# missing; the tensors are byte-identical to llama.cpp's, see tests/test_quant_recipe.c). Both
# engines run both files, interleaved (ours, llama.cpp, ours, llama.cpp... per round), ppP and tgN
# rows at T threads, R rounds; prints a Markdown table of medians with the ratio, our effective
# bandwidth (weight bytes per token x t/s) and the machine's streaming read (skipllama bench's
# probe), and the load average of every run. Not part of the build or the tests.
#
# usage: bench/kquants.sh [-T "q4_k_m q5_k_m q6_k ..."] [-r 3] [-p 128] [-n 64] [-t 2]
# env: MODELS (required: the folder of l1b-*.gguf files), SKIPLLAMA (build/skipllama), NODE_LLAMA_DIR (a folder whose
#      node_modules holds node-llama-cpp, for bench/llamacpp_bench.mjs)
set -eu
cd "$(dirname "$0")/.."
MODELS=${MODELS:?set MODELS to the folder holding l1b-f16.gguf and l1b-TYPE-llamacpp.gguf}
SL=${SKIPLLAMA:-build/skipllama}
types="q4_k_m q5_k_m q6_k q4_k_s q5_k_s q3_k_m q2_k iq4_xs iq4_nl q4_1 q5_0 q5_1"
rounds=3 np=128 ng=64 nt=2
while [ $# -gt 0 ]; do
    case $1 in
    -T) types=$2; shift 2 ;; -r) rounds=$2; shift 2 ;; -p) np=$2; shift 2 ;; -n) ng=$2; shift 2 ;; -t) nt=$2; shift 2 ;;
    *) echo "usage: $0 [-T TYPES] [-r R] [-p P] [-n N] [-t T]" >&2; exit 2 ;;
    esac
done
raw=$(mktemp)
for ty in $types; do
    for src in llamacpp skipllama; do
        f=$MODELS/l1b-$ty-$src.gguf
        if [ ! -e "$f" ] && [ $src = skipllama ]; then
            "$SL" quantize -t "$nt" "$MODELS/l1b-f16.gguf" "$f.tmp" "$ty" && mv "$f.tmp" "$f"
        fi
        [ -e "$f" ] || { echo "# $f missing: skipped" >&2; continue; }
        for r in $(seq "$rounds"); do
            "$SL" bench -m "$f" -p "$np" -n "$ng" -t "$nt" -r 1 -o json -q --membw-mb $([ "$r" = 1 ] && echo 256 || echo 0) 2>/dev/null |
                grep '"test"' | sed "s/^/ours $ty $src /" >> "$raw"
            node bench/llamacpp_bench.mjs "$f" "$np" "$ng" "$nt" 1 2>/dev/null | grep '"test"' |
                sed "s/^/llama $ty $src $(cut -d' ' -f1 /proc/loadavg) /" >> "$raw"
        done
    done
done
python3 - "$raw" "$np" "$ng" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    eng, ty, src, rest = line.split(" ", 3)
    if eng == "llama":
        load, rest = rest.split(" ", 1)
    j = json.loads(rest.rstrip().rstrip(","))
    key = (ty, src, j["test"])
    d = rows.setdefault(key, {"ours": [], "llama": [], "bw": [], "dram": [], "load": []})
    d[eng].append(j["median_ts"])
    if eng == "ours":
        d["bw"].append(j.get("eff_bw_gbs", 0)); d["load"].append(j.get("loadavg_start", 0))
        if j.get("dram_read_gbs", 0) > 0: d["dram"].append(j["dram_read_gbs"])
    else:
        d["load"].append(float(load))
print("| type | file by | row | ours t/s | llama.cpp t/s | ratio | eff. BW / DRAM read GB/s | load avg |")
print("|---|---|---|--:|--:|--:|--:|--:|")
for (ty, src, test), d in rows.items():
    o = statistics.median(d["ours"]) if d["ours"] else float("nan")
    l = statistics.median(d["llama"]) if d["llama"] else float("nan")
    bw = "%.1f / %s" % (statistics.median(d["bw"]), "%.1f" % max(d["dram"]) if d["dram"] else "-") if test.startswith("tg") else ""
    print("| %s | %s | %s | %.2f | %.2f | %.2fx | %s | %.1f-%.1f |" % (ty, src, test, o, l, o / l if l else float("nan"), bw,
          min(d["load"]), max(d["load"])))
PY
rm -f "$raw"
