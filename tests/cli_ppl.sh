#!/bin/sh
# CLI tests of `skipllama ppl --llama` (llama-perplexity's method) against llama.cpp's own numbers:
# tests/data/tiny-silu.llama-ppl.json holds, for the first 3000 bytes of tests/data/eval.txt,
# llama.cpp's tokenization with BOS and the PPL and "+/-" that its method gives at chunk sizes 128
# and 64, computed from the llama.cpp oracle's log-probabilities (scripts/llama_ppl_reference.py).
# Also: the "±" of the default method, --chunks, and the messages for a text too short.
# Prints "ok ..." / "not ok ..."; exits 1 on any failure.
. tests/lib.sh
REF=tests/data/tiny-silu.llama-ppl.json
TOL=1e-4 # relative, on PPL and its +/-: llama.cpp and we differ by float summation order only

head -c 3000 tests/data/eval.txt > "$T/text.txt"

# our tokenization with BOS == llama.cpp's
want=$(tr -d '\n' < $REF | sed 's/.*"tokens_with_bos": \[\([^]]*\)\].*/\1/' | tr -d ' ' | tr ',' ' ')
got=$("$SL" tokenize -f "$T/text.txt")
if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "tokenization with BOS == llama.cpp's ($(echo "$got" | wc -w) tokens)"
else bad "tokenization differs from the reference"; fi

# each reference row: ctx chunks scored ppl ppl_err
awk -F': ' '/"ctx"/ {c=$2} /"chunks"/ {k=$2} /"scored"/ {s=$2} /"ppl":/ {p=$2} /"ppl_err"/ {printf "%d %d %d %.12g %.12g\n", c, k, s, p, $2}' $REF | tr -d ',' > "$T/rows"
[ -s "$T/rows" ] || bad "no results in $REF"
while read -r ctx chunks scored ppl err; do
    out=$("$SL" ppl -f "$T/text.txt" -c "$ctx" --llama --json 2> "$T/err")
    gp=$(echo "$out" | sed 's/.*"ppl": \([0-9.]*\).*/\1/')
    ge=$(echo "$out" | sed 's/.*"ppl_err": \([0-9.]*\).*/\1/')
    gs=$(echo "$out" | sed 's/.*"scored": \([0-9]*\).*/\1/')
    gw=$(echo "$out" | sed 's/.*"windows": \([0-9]*\).*/\1/')
    if awk -v a="$gp" -v b="$ppl" -v c="$ge" -v d="$err" -v t=$TOL 'BEGIN {
            da = (a - b) / b; if (da < 0) da = -da; de = (c - d) / d; if (de < 0) de = -de
            printf "  maxdiff (relative): ppl %.2e, +/- %.2e (tolerance %g)\n", da, de, t; exit !(da <= t && de <= t) }' &&
        [ "$gs" = "$scored" ] && [ "$gw" = "$chunks" ]; then
        ok "ppl --llama -c $ctx: PPL $gp +/- $ge == llama.cpp's $ppl +/- $err ($chunks chunks, $scored tokens scored)"
    else bad "ppl --llama -c $ctx: got $gp +/- $ge ($gw chunks, $gs scored), llama.cpp $ppl +/- $err ($chunks, $scored)"; cat "$T/err"; fi
done < "$T/rows"

if "$SL" ppl -f "$T/text.txt" -c 128 --llama > "$T/out" 2> "$T/err" && grep -q "^Final estimate: PPL = [0-9.]* +/- [0-9.]*$" "$T/out"; then
    ok "ppl --llama prints llama-perplexity's line: $(tail -n 1 "$T/out")"
else bad "ppl --llama output"; cat "$T/out" "$T/err"; fi
if out=$("$SL" ppl -f "$T/text.txt" -c 128 --llama --chunks 3 --json) && echo "$out" | grep -q '"windows": 3, ' && echo "$out" | grep -q '"scored": 189, '; then
    ok "--chunks 3: 3 chunks, 3 x 63 tokens scored"
else bad "--chunks: $out"; fi
if "$SL" ppl -f "$T/text.txt" -c 128 > "$T/out" 2>&1 && grep -q "^perplexity: [0-9.]* ± [0-9.]* (nll" "$T/out"; then
    ok "ppl prints the perplexity with its standard error: $(grep '^perplexity' "$T/out")"
else bad "ppl output"; cat "$T/out"; fi

head -c 400 tests/data/eval.txt > "$T/short.txt"
"$SL" ppl -f "$T/short.txt" -c 128 --llama > "$T/out" 2> "$T/err"
if [ $? -eq 1 ] && grep -q "chunks of 128 tokens need at least 256 tokens; the text has" "$T/err"; then ok "too short for two chunks: $(cat "$T/err")"
else bad "short text"; cat "$T/err"; fi
"$SL" ppl -f "$T/text.txt" --chunks 2 > "$T/out" 2> "$T/err"
if [ $? -eq 1 ] && grep -q -- "--chunks needs --llama" "$T/err"; then ok "--chunks without --llama is refused"; else bad "--chunks alone"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
