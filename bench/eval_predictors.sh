#!/bin/sh
# eval_predictors.sh — the predictor-training evaluation table (docs/predictor-training.md).
#
# For each fixture model: dense perplexity of the evaluation text; then, per predictor
# configuration, train a predictor on TRAIN_TEXT (`skipllama train-predictor`), measure it with
# `skipllama ppl --profile` (the sparse per-token decode path: achieved sparsity, perplexity,
# recall against the true mask gate > 0), and calibrate CATS thresholds on the same training
# tokens at the per-layer sparsity the predictor achieved on the evaluation text, measured the
# same way. Prints a markdown table and leaves every JSON behind in $OUT.
#
# usage: bench/eval_predictors.sh TRAIN_TEXT [EVAL_TEXT]
#   e.g. bench/eval_predictors.sh tests/data/train-slice.txt tests/data/eval.txt
#   (any plain-text corpus works as TRAIN_TEXT; a larger one gives the 200 k tokens without repeats)
# environment:
#   BUILD=build          build folder holding skipllama
#   MODELS="tiny-relu tiny-silu"   models under tests/data/ (NAME.gguf)
#   CONFIGS="threshold:0.99:0 threshold:0.95:0 topk:0.99:0"   rule:target_recall:rank (0 = default 4% of n_ff)
#   TOKENS=200000        training tokens (whole windows spread over TRAIN_TEXT)
#   EVAL_TOKENS=0        evaluation tokens (0 = the whole text)
#   THREADS=2            threads
#   OUT=$TMPDIR/skipllama-eval-predictors   where profiles, JSON and table.md go (default /tmp/...)
# needs: python3 (for the table). Not a test: it takes tens of minutes on 2 cores.
set -eu

if [ $# -lt 1 ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 1
fi
TRAIN=$1
EVAL=${2:-tests/data/eval.txt}
BIN=${BUILD:-build}/skipllama
MODELS=${MODELS:-tiny-relu tiny-silu}
CONFIGS=${CONFIGS:-threshold:0.99:0 threshold:0.95:0 topk:0.99:0}
TOKENS=${TOKENS:-200000}
EVAL_TOKENS=${EVAL_TOKENS:-0}
THREADS=${THREADS:-2}
OUT=${OUT:-${TMPDIR:-/tmp}/skipllama-eval-predictors}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "no $BIN: run make first (or set BUILD)" >&2; exit 1; }

EVAL_ARGS=""
[ "$EVAL_TOKENS" -gt 0 ] && EVAL_ARGS="--max-tokens $EVAL_TOKENS"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for M in $MODELS; do
    model=tests/data/$M.gguf
    log "$M: dense perplexity"
    # shellcheck disable=SC2086
    "$BIN" ppl -m "$model" -f "$EVAL" -t "$THREADS" --json -q $EVAL_ARGS > "$OUT/$M.dense.ppl.json"
    for cfg in $CONFIGS; do
        rule=${cfg%%:*}
        rest=${cfg#*:}
        recall=${rest%%:*}
        rank=${rest#*:}
        name="$rule-r$recall"
        rank_arg=""
        if [ "$rank" != 0 ]; then
            rank_arg="--rank $rank"
            name="$name-rank$rank"
        fi
        log "$M $name: train ($TOKENS tokens)"
        # shellcheck disable=SC2086
        "$BIN" train-predictor -m "$model" -f "$TRAIN" --tokens "$TOKENS" --rule "$rule" --target-recall "$recall" $rank_arg \
            -t "$THREADS" --json -o "$OUT/$M.$name.skip.gguf" > "$OUT/$M.$name.train.json"
        log "$M $name: perplexity with the predictor"
        # shellcheck disable=SC2086
        "$BIN" ppl -m "$model" -f "$EVAL" -t "$THREADS" --profile "$OUT/$M.$name.skip.gguf" --json -q $EVAL_ARGS \
            > "$OUT/$M.$name.ppl.json"
        # CATS at the per-layer sparsity the predictor reached on the evaluation text
        python3 -c 'import json,sys; print("\n".join("%.4f" % l["sparsity"] for l in json.load(open(sys.argv[1]))["layers"]))' \
            "$OUT/$M.$name.ppl.json" > "$OUT/$M.$name.layers.txt"
        log "$M $name: CATS at the same per-layer sparsity"
        "$BIN" calibrate -m "$model" -f "$TRAIN" --max-tokens "$TOKENS" -t "$THREADS" --layer-sparsity "$OUT/$M.$name.layers.txt" \
            -o "$OUT/$M.cats-$name.skip.gguf" -q
        # shellcheck disable=SC2086
        "$BIN" ppl -m "$model" -f "$EVAL" -t "$THREADS" --profile "$OUT/$M.cats-$name.skip.gguf" --json -q $EVAL_ARGS \
            > "$OUT/$M.cats-$name.ppl.json"
    done
done

python3 - "$OUT" "$MODELS" "$CONFIGS" <<'EOF' | tee "$OUT/table.md"
import json, os, sys
out, models, configs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()

def load(path):
    with open(path) as f:
        return json.load(f)

def row(method, ppl, dense, rank, H, I, train=None, cats=False):
    """One table line: sparsity, ppl, increase, recall on the eval text (all layers pooled),
    validation recall (min over layers), MLP weight bytes read per token relative to dense."""
    layers = ppl.get("layers", [])
    if layers:
        sp = ppl["mlp_sparsity"]
        dens = sum(l["true_density"] for l in layers)
        rec = sum(l["recall"] * l["true_density"] for l in layers) / dens if dens > 0 else float("nan")
        # CATS reads every gate row plus up/down of the kept neurons; a predictor reads
        # gate/up/down of the kept neurons plus its own r (H + I) weights
        reads = 1 / 3 + 2 / 3 * (1 - sp) if cats else (1 - sp) + rank * (H + I) / (3 * H * I)
    else:
        sp, rec, reads = 0.0, 1.0, 1.0
    val = "%.4f" % min(l["recall"] for l in train["layers"]) if train else "–"
    inc = 100 * (ppl["ppl"] / dense - 1)
    return "| %s | %.3f | %.3f | %+.2f%% | %.4f | %s | %.3f |" % (method, sp, ppl["ppl"], inc, rec, val, reads)

for m in models:
    dense = load(os.path.join(out, m + ".dense.ppl.json"))
    print("\n### %s (evaluation: %s, %d tokens, %d scored)\n" % (m, dense["text"], dense["tokens"], dense["scored"]))
    print("| method | MLP sparsity | ppl | ppl increase | recall (eval text) | recall (validation, min layer) | MLP weight reads vs dense |")
    print("|---|---|---|---|---|---|---|")
    print(row("dense", dense, dense["ppl"], 0, 1, 1))
    for cfg in configs:
        rule, recall, rank = cfg.split(":")
        name = "%s-r%s" % (rule, recall) + ("-rank%s" % rank if rank != "0" else "")
        train = load(os.path.join(out, "%s.%s.train.json" % (m, name)))
        pred = load(os.path.join(out, "%s.%s.ppl.json" % (m, name)))
        cats = load(os.path.join(out, "%s.cats-%s.ppl.json" % (m, name)))
        r, H, I = train["rank"], train["n_embd"], train["n_ff"]
        label = "predictor r=%d, %s, target recall %s (train %.0f s)" % (r, rule, recall, train["t_total"])
        print(row(label, pred, dense["ppl"], r, H, I, train=train))
        print(row("CATS at the same per-layer sparsity", cats, dense["ppl"], 0, H, I, cats=True))
EOF
