#!/bin/sh
# compare.sh — skipllama vs llama.cpp on the same synthetic benchmark models.
#
# Generates the benchmark models once (skipllama synth, cached in bench/models/, git-ignored), runs
# `skipllama bench` on each and, when a llama.cpp is available, the same rows with llama.cpp, and
# prints one Markdown table with both (medians), their ratio, and our effective vs measured DRAM
# bandwidth. llama.cpp is looked for as: $LLAMA_BENCH or `llama-bench` on PATH (run with -o jsonl),
# else the npm package node-llama-cpp (prebuilt CPU libraries, no llama-bench executable) driven by
# bench/llamacpp_bench.mjs from $NODE_LLAMA_DIR (default bench/.llama-node; --install-llama-cpp puts
# it there with npm). Without either, the llama.cpp column says "n/a". Not used by the build or CI.
#
# usage: bench/compare.sh [-s "SHAPE..."] [-T "TYPE..."] [-t 1,2] [-r 3] [-p 128] [-n 64]
#                         [--clean] [--no-llama-cpp] [--install-llama-cpp]
#   -s        presets of `skipllama synth` (default: "tinyllama-1.1b llama-3.2-1b")
#   -T        weight types (default: "f32 f16 bf16 q8_0 q4_0")
#   --clean   delete each model after benchmarking it (a 1.1B F32 model is 4.4 GB)
#   -O FILE   keep the raw per-row results there (default MODELS_DIR/compare-DATE.txt); rows are
#             appended as they finish, so an interrupted run still leaves its numbers
# env: SKIPLLAMA (default build/skipllama), MODELS_DIR (default bench/models), LLAMA_BENCH, NODE_LLAMA_DIR
# The 1-minute load average is logged before every run: on a shared machine, numbers taken at a
# load above the core count say more about the neighbours than about either engine.
set -eu

cd "$(dirname "$0")/.."
SKIPLLAMA=${SKIPLLAMA:-build/skipllama}
MODELS_DIR=${MODELS_DIR:-bench/models}
NODE_LLAMA_DIR=${NODE_LLAMA_DIR:-bench/.llama-node}
NODE_LLAMA_VERSION=3.22.1
shapes="tinyllama-1.1b llama-3.2-1b"
types="f32 f16 bf16 q8_0 q4_0"
threads=1,2
reps=3
n_prompt=128
n_gen=64
clean=0
use_llama=1
install_llama=0
results=

while [ $# -gt 0 ]; do
    case "$1" in
    -s) shapes=$2; shift 2 ;;
    -T) types=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    --clean) clean=1; shift ;;
    --no-llama-cpp) use_llama=0; shift ;;
    --install-llama-cpp) install_llama=1; shift ;;
    -O) results=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

[ -x "$SKIPLLAMA" ] || { echo "compare.sh: $SKIPLLAMA not found (run make first, or set SKIPLLAMA)" >&2; exit 1; }
mkdir -p "$MODELS_DIR"

if [ "$install_llama" = 1 ] && [ ! -d "$NODE_LLAMA_DIR/node_modules/node-llama-cpp" ]; then
    # only the x64 CPU build (the default install also pulls ~600 MB of CUDA/Vulkan builds)
    mkdir -p "$NODE_LLAMA_DIR"
    [ -f "$NODE_LLAMA_DIR/package.json" ] || echo '{"name":"skipllama-bench-llama-cpp","private":true}' > "$NODE_LLAMA_DIR/package.json"
    (cd "$NODE_LLAMA_DIR" && npm install --no-audit --no-fund --omit=optional \
        "node-llama-cpp@$NODE_LLAMA_VERSION" "@node-llama-cpp/linux-x64@$NODE_LLAMA_VERSION") >&2 ||
        echo "compare.sh: npm install of node-llama-cpp failed; continuing without llama.cpp" >&2
fi

# Which llama.cpp, if any.
llama_kind=none
if [ "$use_llama" = 1 ]; then
    if [ -n "${LLAMA_BENCH:-}" ] && [ -x "$LLAMA_BENCH" ]; then
        llama_kind=bench
    elif command -v llama-bench > /dev/null 2>&1; then
        LLAMA_BENCH=$(command -v llama-bench)
        llama_kind=bench
    elif command -v node > /dev/null 2>&1 && [ -d "$NODE_LLAMA_DIR/node_modules/node-llama-cpp" ]; then
        llama_kind=node
    fi
fi
case $llama_kind in
bench) echo "llama.cpp: $LLAMA_BENCH" >&2 ;;
node) echo "llama.cpp: node-llama-cpp in $NODE_LLAMA_DIR ($(node -p "require('./$NODE_LLAMA_DIR/node_modules/node-llama-cpp/package.json').version" 2>/dev/null))" >&2 ;;
none) echo "llama.cpp: not available (set LLAMA_BENCH, put llama-bench on PATH, or use --install-llama-cpp); column skipped" >&2 ;;
esac

[ -n "$results" ] || results="$MODELS_DIR/compare-$(date +%Y%m%d-%H%M%S).txt"
: > "$results"
echo "raw results: $results" >&2
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

# One normalised line per row: source|shape|type|threads|test|median|mean|sd|eff_bw|dram_bw|rss|load
# from JSON objects on single lines (ours, the node script, llama-bench -o jsonl).
normalise() { # $1 source, $2 shape, $3 type; JSON lines on stdin
    awk -v src="$1" -v shape="$2" -v type="$3" -v load="$(load)" '
    function num(key,   s) {
        if (!match($0, "\"" key "\": *-?[0-9.eE+-]+")) return ""
        s = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", s); return s + 0
    }
    function str(key,   s) {
        if (!match($0, "\"" key "\": *\"[^\"]*\"")) return ""
        s = substr($0, RSTART, RLENGTH); sub(/^[^:]*: *"/, "", s); sub(/"$/, "", s); return s
    }
    function median(   s, n, a, i, j, t) {
        if (!match($0, "\"samples_ts\": *\\[[^]]*\\]")) return num("avg_ts")
        s = substr($0, RSTART, RLENGTH); sub(/^[^[]*\[/, "", s); sub(/\]$/, "", s)
        n = split(s, a, /, */)
        for (i = 1; i <= n; i++) a[i] += 0
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    /"avg_ts"/ {
        test = str("test")
        if (test == "") test = num("n_prompt") > 0 ? "pp" num("n_prompt") : "tg" num("n_gen")
        printf "%s|%s|%s|%s|%s|%.2f|%.2f|%.2f|%s|%s|%s|%s\n", src, shape, type, num("n_threads"), test, median(),
               num("avg_ts"), num("stddev_ts"), num("eff_bw_gbs"), num("dram_read_gbs"), num("peak_rss_mib"), load
    }'
}

for shape in $shapes; do
    for type in $types; do
        model="$MODELS_DIR/$shape-$type.gguf"
        if [ ! -f "$model" ]; then
            echo "== synth $model" >&2
            "$SKIPLLAMA" synth --shape "$shape" --type "$type" --seed 1 -o "$model" >&2
        fi
        echo "== skipllama bench $model -t $threads (load $(load))" >&2
        # -b 512: the prompt batch llama-bench uses (skipllama's default is 64, which bounds run's buffers)
        "$SKIPLLAMA" bench -m "$model" -b 512 -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" -o json |
            normalise skipllama "$shape" "$type" >> "$results"
        case $llama_kind in
        bench)
            echo "== llama-bench $model (load $(load))" >&2
            "$LLAMA_BENCH" -m "$model" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" -o jsonl 2>/dev/null |
                normalise llama.cpp "$shape" "$type" >> "$results" || echo "compare.sh: llama-bench failed on $model" >&2
            ;;
        node)
            echo "== llama.cpp (node-llama-cpp) $model (load $(load))" >&2
            NODE_LLAMA_DIR="$NODE_LLAMA_DIR" node bench/llamacpp_bench.mjs "$model" "$n_prompt" "$n_gen" "$threads" "$reps" 2>/dev/null |
                normalise llama.cpp "$shape" "$type" >> "$results" || echo "compare.sh: node-llama-cpp failed on $model" >&2
            ;;
        esac
        [ "$clean" = 1 ] && rm -f "$model"
    done
done

# The table: one row per (model, type, threads, test); medians of tokens/s.
awk -F'|' -v have_llama="$llama_kind" '
    $1 == "skipllama" { key = $2 "|" $3 "|" $4 "|" $5; order[++n] = key; ours[key] = $6; sd[key] = $8; bw[key] = $9; dram[key] = $10; ld[key] = $12
                        if ($11 + 0 > rss[$2 "/" $3]) rss[$2 "/" $3] = $11 + 0 }
    $1 == "llama.cpp" { key = $2 "|" $3 "|" $4 "|" $5; theirs[key] = $6; ld2[key] = $12 }
    END {
        print "| model | type | threads | test | skipllama t/s (median) | llama.cpp t/s (median) | ratio | eff. BW GB/s | DRAM read GB/s | load avg |"
        print "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, f, "|")
            l = (k in theirs) ? sprintf("%.2f", theirs[k]) : "n/a"
            r = (k in theirs && theirs[k] > 0) ? sprintf("%.2fx", ours[k] / theirs[k]) : ""
            b = (f[4] ~ /^tg/ && bw[k] != "") ? sprintf("%.1f", bw[k]) : ""
            la = ld[k] ((k in ld2) ? " / " ld2[k] : "")
            printf "| %s | %s | %s | %s | %.2f ± %.2f | %s | %s | %s | %.1f | %s |\n", f[1], f[2], f[3], f[4], ours[k], sd[k], l, r, b, dram[k], la
        }
        printf "\nskipllama peak RSS (MiB):"
        for (m in rss) printf " %s=%.0f", m, rss[m]
        printf "\n"
    }' "$results"
