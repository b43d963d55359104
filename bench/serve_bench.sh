#!/bin/sh
# serve_bench.sh — the server's throughput (docs/server.md): aggregate generation tokens/s of 1
# and 4 concurrent streams, dense and with a sparsity profile, and the time to first token of a
# 128-token prompt (alone and beside 3 streams). Dense and sparse servers run side by side (idle
# between their turns) and their rounds alternate (A, B, A, B...); medians of ROUNDS rounds.
#
#   bench/serve_bench.sh MODEL.gguf [PROFILE.gguf]
#   env: THREADS (2), NP (4: slots), N_GEN (64), ROUNDS (3), CTX (512), SPARSITY (profile's),
#        SELECTS ("union": the sparse server's batch selections, e.g. "union shared auto"; one
#        server, switched between runs through POST /props; rows "sparse-MODE"),
#        SPARSE_ONE (1: also time one stream of each sparse variant), GEN (1: the generation runs),
#        TTFT (1: the time-to-first-token runs, dense and the first sparse variant)
# Prints the raw JSON lines, then a markdown table. Needs node (fetch) and a built build/skipllama.
set -eu
MODEL=${1:?usage: bench/serve_bench.sh MODEL.gguf [PROFILE.gguf]}
PROFILE=${2:-}
THREADS=${THREADS:-2}; NP=${NP:-4}; N_GEN=${N_GEN:-64}; ROUNDS=${ROUNDS:-3}; CTX=${CTX:-512}
SELECTS=${SELECTS:-union}; SPARSE_ONE=${SPARSE_ONE:-1}; GEN=${GEN:-1}; TTFT=${TTFT:-1}
SL=${SL:-build/skipllama}
SL_DIR=$(mktemp -d)
trap 'for p in $PIDS; do kill -TERM $p 2> /dev/null; done; rm -rf "$SL_DIR"' EXIT
PIDS=""
start() { # name args...: starts a server, sets PORT_<name>
    name=$1; shift
    "$SL" serve --port 0 -q -m "$MODEL" -t "$THREADS" -np "$NP" -c "$CTX" "$@" 2> "$SL_DIR/$name.log" &
    PIDS="$PIDS $!"
    i=0
    while ! grep -qs "listening on" "$SL_DIR/$name.log"; do
        sleep 0.2; i=$((i + 1))
        [ $i -lt 600 ] || { echo "server $name did not start"; cat "$SL_DIR/$name.log"; exit 1; }
    done
    eval "PORT_$name=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$SL_DIR/$name.log")"
}
start dense
VARIANTS=dense
if [ -n "$PROFILE" ]; then
    if [ -n "${SPARSITY:-}" ]; then start sparse -P "$PROFILE" --sparsity "$SPARSITY"; else start sparse -P "$PROFILE"; fi
    VARIANTS="dense"
    for m in $SELECTS; do VARIANTS="$VARIANTS sparse-$m"; done
fi
# run VARIANT STREAMS N_GEN [--ttft]: one measurement (a sparse variant first sets its batch selection)
run() {
    v=$1; shift
    case $v in
    dense) port=$PORT_dense ;;
    *) port=$PORT_sparse
       curl -s -X POST -H 'Content-Type: application/json' -d "{\"batch_select\":\"${v#sparse-}\"}" "http://127.0.0.1:$port/props" > /dev/null
       sleep 0.2 ;;
    esac
    node bench/serve_bench.mjs "$port" "$@" --label "$v" | tee -a "$OUT"
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
OUT="$SL_DIR/results.jsonl"
node bench/serve_bench.mjs "$PORT_dense" 1 8 --label warmup > /dev/null
[ -z "$PROFILE" ] || node bench/serve_bench.mjs "$PORT_sparse" 1 8 --label warmup > /dev/null
FIRST=$(echo $VARIANTS | cut -d' ' -f1-2)  # dense and the first sparse variant: TTFT
r=1
while [ $r -le "$ROUNDS" ]; do
    echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for v in $VARIANTS; do
        [ "$GEN" != 0 ] || break
        [ "$v" != dense ] && [ "$SPARSE_ONE" = 0 ] || run "$v" 1 "$N_GEN"
        run "$v" "$NP" "$N_GEN"
    done
    if [ "$TTFT" != 0 ]; then
        for s in 1 "$NP"; do
            for v in $FIRST; do run "$v" "$s" 4 --ttft; done
        done
    fi
    r=$((r + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const med = (a) => { a = a.slice().sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
const pick = (label, kind, streams, f) => med(rows.filter((r) => r.label === label && r.kind === kind && r.streams === streams).map(f));
const labels = [...new Set(rows.map((r) => r.label))], S = [...new Set(rows.map((r) => r.streams))].sort((a, b) => a - b);
const f = (x, d) => (x === undefined || Number.isNaN(x) ? "—" : x.toFixed(d));
console.log("| server | streams | aggregate tokens/s (median) | samples | tokens per step | sparsity | union of own / layer | read / layer | own recall | vs 1 stream | vs dense |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const l of labels) for (const s of S) {
  const rs = rows.filter((r) => r.label === l && r.kind === "gen" && r.streams === s);
  if (!rs.length) continue;
  const agg = pick(l, "gen", s, (r) => r.aggregate_tps), one = pick(l, "gen", S[0], (r) => r.aggregate_tps), dense = pick("dense", "gen", s, (r) => r.aggregate_tps);
  const sp = pick(l, "gen", s, (r) => r.sparsity ?? 0);
  console.log(`| ${l} | ${s} | ${agg.toFixed(2)} | ${rs.map((r) => r.aggregate_tps.toFixed(2)).join(", ")} | ${pick(l, "gen", s, (r) => r.tokens_per_step).toFixed(2)} | ${sp.toFixed(2)} | ${f(pick(l, "gen", s, (r) => r.union_ratio ?? NaN), 3)} | ${f(pick(l, "gen", s, (r) => r.read_ratio ?? NaN), 3)} | ${f(pick(l, "gen", s, (r) => r.own_recall ?? NaN), 3)} | ${one ? (agg / one).toFixed(2) + "x" : "—"} | ${(agg / dense).toFixed(2)}x |`);
}
console.log("\n| server | streams | time to first token, 128-token prompt (ms) | server prompt time (ms) |");
console.log("|---|---|---|---|");
for (const l of labels) for (const s of S) {
  if (!rows.some((r) => r.label === l && r.kind === "ttft" && r.streams === s)) continue;
  console.log(`| ${l} | ${s === 1 ? "alone" : s - 1 + " others generating"} | ${pick(l, "ttft", s, (r) => r.ttft_ms).toFixed(0)} | ${pick(l, "ttft", s, (r) => r.server_prompt_ms).toFixed(0)} |`);
}
' "$OUT"
