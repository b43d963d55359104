#!/bin/sh
# ppl_sparsity.sh — perplexity against CATS sparsity on the fixture models (the README table).
#
# For each model: calibrate CATS thresholds once on CALIB_TEXT (`skipllama calibrate`; the
# profile keeps the |act(gate)| quantiles, so `--sparsity S` re-targets it without
# recalibrating), then `skipllama ppl` on EVAL_TEXT densely and with the profile at each
# sparsity — every token through the sparse per-token decode path (--dense-prefill is not
# used). Prints a markdown table (perplexity, change vs dense, achieved MLP sparsity) and leaves
# the profiles and JSON in $OUT.
#
# usage: bench/ppl_sparsity.sh [CALIB_TEXT [EVAL_TEXT]]
#   defaults: tests/data/train-slice.txt (calibration), tests/data/eval.txt (held out)
# environment:
#   BUILD=build                      folder holding skipllama
#   MODELS="tiny-silu tiny-relu"     models under tests/data/ (NAME.gguf)
#   SPARSITIES="0.3 0.5 0.7 0.9"     targets
#   EVAL_TOKENS=0                    scored tokens (0 = the whole text)
#   THREADS=2                        threads
#   OUT=$TMPDIR/skipllama-ppl-sparsity
# needs: python3 (for the table). Not a test.
set -eu
cd "$(dirname "$0")/.."
CALIB=${1:-tests/data/train-slice.txt}
EVAL=${2:-tests/data/eval.txt}
BIN=${BUILD:-build}/skipllama
MODELS=${MODELS:-tiny-silu tiny-relu}
SPARSITIES=${SPARSITIES:-0.3 0.5 0.7 0.9}
EVAL_TOKENS=${EVAL_TOKENS:-0}
THREADS=${THREADS:-2}
OUT=${OUT:-${TMPDIR:-/tmp}/skipllama-ppl-sparsity}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "no $BIN: run make first (or set BUILD)" >&2; exit 1; }
limit=""
[ "$EVAL_TOKENS" -gt 0 ] && limit="--max-tokens $EVAL_TOKENS"

for m in $MODELS; do
    model=tests/data/$m.gguf
    echo "== $m: calibrate on $CALIB" >&2
    "$BIN" calibrate -m "$model" -f "$CALIB" --sparsity 0.5 -t "$THREADS" -q -o "$OUT/$m.cats.gguf" >&2
    echo "== $m: dense" >&2
    # shellcheck disable=SC2086
    "$BIN" ppl -m "$model" -f "$EVAL" -t "$THREADS" $limit --json -q > "$OUT/$m.dense.json"
    for s in $SPARSITIES; do
        echo "== $m: CATS sparsity $s" >&2
        # shellcheck disable=SC2086
        "$BIN" ppl -m "$model" -f "$EVAL" -t "$THREADS" $limit --profile "$OUT/$m.cats.gguf" --sparsity "$s" --json -q \
            > "$OUT/$m.cats-$s.json"
    done
done

python3 - "$OUT" "$MODELS" "$SPARSITIES" <<'PY'
import json, sys
out, models, sps = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(p):
    with open(p) as f:
        return json.loads(f.read().strip().splitlines()[-1])
print("| model | target sparsity | achieved MLP sparsity | perplexity | vs dense | scored tokens |")
print("|---|--:|--:|--:|--:|--:|")
for m in models:
    d = load(f"{out}/{m}.dense.json")
    print(f"| {m} | 0 (dense) | 0 | {d['ppl']:.3f} | - | {d['scored']} |")
    for s in sps:
        r = load(f"{out}/{m}.cats-{s}.json")
        ach = r.get("sparsity", r.get("mlp_sparsity", float("nan")))
        print(f"| {m} | {s} | {ach:.3f} | {r['ppl']:.3f} | {100 * (r['ppl'] / d['ppl'] - 1):+.2f}% | {r['scored']} |")
PY
