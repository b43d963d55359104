#!/bin/sh
# CLI-level tests of `skipllama train-predictor`: a tiny run writes a profile that `ppl` uses,
# --json and --quiet behave, a failed run leaves no output file, and bad options get a clear
# error and a non-zero exit (never a crash). Prints "ok ..." / "not ok ..."; exits 1 on failure.
. tests/lib.sh

M=tests/data/tiny-relu.gguf
TXT=tests/data/train-slice.txt
SMALL="--tokens 1024 -c 64 --epochs 1 -t 1"

if "$SL" train-predictor --help | grep -q "2 n_embd + n_ff / 8"; then ok "--help states the memory formula"
else bad "--help"; fi

# shellcheck disable=SC2086
if "$SL" train-predictor -m $M -f $TXT $SMALL --json -o "$T/p.gguf" > "$T/p.json" 2> "$T/p.err" && [ -s "$T/p.gguf" ] &&
    grep -q '"layers": \[{"layer": 0, "rank": 16, "rule": "threshold"' "$T/p.json" && [ ! -s "$T/p.err" ]; then
    ok "tiny run: profile written, JSON report, nothing on stderr with --json"
else bad "tiny run"; cat "$T/p.json" "$T/p.err"; fi
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert all(l["recall"] >= 0.99 for l in d["layers"]), d' "$T/p.json" 2>/dev/null ||
    ! command -v python3 > /dev/null; then ok "JSON parses; every layer reaches recall 0.99 on validation"
else bad "JSON report"; cat "$T/p.json"; fi
if "$SL" ppl -m $M -f tests/data/eval.txt --max-tokens 256 -c 64 --profile "$T/p.gguf" > "$T/ppl.out" 2>&1 &&
    grep -q "MLP sparsity" "$T/ppl.out" && grep -q "predictor" "$T/ppl.out"; then ok "ppl --profile uses the trained profile"
else bad "ppl with trained profile"; cat "$T/ppl.out"; fi

# shellcheck disable=SC2086
"$SL" train-predictor -m $M -f $TXT $SMALL --rule topk --type f16 -q -o "$T/q.gguf" > "$T/q.out" 2>&1
if [ $? -eq 0 ] && [ -s "$T/q.gguf" ] && [ ! -s "$T/q.out" ]; then ok "--quiet prints nothing (topk rule, f16 predictor)"
else bad "--quiet"; cat "$T/q.out"; fi

# table on stdout; progress on stderr only as plain lines at most every 10 s (not a terminal)
t0=$(date +%s)
# shellcheck disable=SC2086
if "$SL" train-predictor -m $M -f $TXT $SMALL -o "$T/r.gguf" > "$T/r.out" 2> "$T/r.err" && grep -q "^ *3  *16  threshold" "$T/r.out" &&
    [ "$(grep -cv '^\(collect\|train  layer [0-9]*\|select layer [0-9]*\): .*%' "$T/r.err")" -eq 0 ] &&
    [ "$(wc -l < "$T/r.err")" -le $(( ($(date +%s) - t0) / 10 + 1 )) ]; then
    ok "per-layer table on stdout; on a non-terminal, $(wc -l < "$T/r.err") progress lines in $(( $(date +%s) - t0 )) s (at most one per 10 s)"
else bad "table/progress"; cat "$T/r.out" "$T/r.err"; fi

# a failed run leaves no file behind
# shellcheck disable=SC2086
expect_fail "one window of text is refused" "$SL" train-predictor -m $M -f $TXT --tokens 64 -c 64 -o "$T/none.gguf"
if [ ! -e "$T/none.gguf" ]; then ok "failed run wrote no profile"; else bad "failed run left $T/none.gguf"; fi

expect_fail "missing -o" "$SL" train-predictor -m $M -f $TXT
expect_fail "unknown rule" "$SL" train-predictor -m $M -f $TXT --rule cats -o "$T/x.gguf"
expect_fail "unsupported type" "$SL" train-predictor -m $M -f $TXT --type q4_0 -o "$T/x.gguf"
expect_fail "q8_0 with rank 16" "$SL" train-predictor -m $M -f $TXT $SMALL --type q8_0 --rank 16 -o "$T/x.gguf"
expect_fail "rank above n_embd" "$SL" train-predictor -m $M -f $TXT $SMALL --rank 500 -o "$T/x.gguf"
expect_fail "bad --val-frac" "$SL" train-predictor -m $M -f $TXT --val-frac 0 -o "$T/x.gguf"
expect_fail "bad --target-recall" "$SL" train-predictor -m $M -f $TXT --target-recall 1.5 -o "$T/x.gguf"
expect_fail "missing text file" "$SL" train-predictor -m $M -f "$T/nope.txt" -o "$T/x.gguf"
"$SL" calibrate -m tests/data/tiny-silu.gguf -f $TXT --max-tokens 512 -c 64 -q -o "$T/silu.gguf" > /dev/null 2>&1
# shellcheck disable=SC2086
expect_fail "--profile of another model" "$SL" train-predictor -m $M -f $TXT $SMALL --profile "$T/silu.gguf" -o "$T/x.gguf"
if [ ! -e "$T/x.gguf" ]; then ok "no output from the failed runs"; else bad "a failed run wrote $T/x.gguf"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
