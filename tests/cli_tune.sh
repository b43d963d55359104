#!/bin/sh
# CLI-level tests of the two-stage rules and `skipllama tune` on the fixtures (small token counts,
# seconds): tune writes the chosen profile, its table, JSON and SVG plot; the profile it writes at
# --sparsity 0.5 reads at most CATS-50%'s share of the MLP bytes (ppl --json mlp_bytes_fraction);
# calibrate --rule two-stage, profile set/show and train-predictor --target contrib work; bad
# options get a clear error and a non-zero exit. Prints "ok ..." / "not ok ..."; exits 1 on failure.
. tests/lib.sh

M=tests/data/tiny-silu.gguf
TXT=tests/data/train-slice.txt
SMALL="-c 64 -t 2 --calib-tokens 2048 --eval-tokens 512 --split-tokens 256 --no-speed"

# tune: two methods at one sparsity
# shellcheck disable=SC2086
if "$SL" tune -m $M -f $TXT --sparsity 0.5 --methods cats,two-stage --sparsities 0.5 $SMALL -q -o "$T/t.gguf" > "$T/t.out" 2> "$T/t.err" &&
    [ -s "$T/t.gguf" ] && grep -q '^| cats | 0.50 |' "$T/t.out" && grep -q '^| two-stage | 0.50 |' "$T/t.out" &&
    grep -q "^wrote $T/t.gguf" "$T/t.out"; then
    ok "tune --sparsity 0.5: table with both methods, profile written"
else bad "tune --sparsity"; cat "$T/t.out" "$T/t.err"; fi
if [ -s "$T/t.svg" ] && grep -q '<svg' "$T/t.svg" && [ "$(grep -c '<polyline' "$T/t.svg")" -eq 2 ] && grep -q '</svg>' "$T/t.svg"; then
    ok "tune writes the SVG plot next to the profile, one curve per method"
else bad "tune plot"; head -5 "$T/t.svg"; fi
if "$SL" ppl -m $M -f $TXT --max-tokens 512 -c 64 -P "$T/t.gguf" --json -q > "$T/ppl.json" 2>&1 &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert 0 < d["mlp_bytes_fraction"] <= 2/3 + 1e-3, d["mlp_bytes_fraction"]; assert 0 < d["contrib_recall"] <= 1' "$T/ppl.json" 2>/dev/null; then
    ok "ppl --json: the tuned profile reads at most 2/3 of the MLP bytes (mlp_bytes_fraction), contribution recall in (0, 1]"
elif ! command -v python3 > /dev/null && grep -q '"mlp_bytes_fraction"' "$T/ppl.json"; then ok "ppl --json reports mlp_bytes_fraction (no python3 to check the value)"
else bad "ppl --json mlp_bytes_fraction"; cat "$T/ppl.json"; fi
# shellcheck disable=SC2086
if "$SL" tune -m $M -f $TXT --max-loss 50 --methods cats --sparsities 0.3,0.5 $SMALL --json -o "$T/j.gguf" > "$T/j.json" 2> "$T/j.err" &&
    [ ! -s "$T/j.err" ] && grep -q '"chosen": "cats", "chosen_sparsity": 0.5000' "$T/j.json"; then
    ok "tune --max-loss --json: the most skipping within the loss, nothing on stderr"
else bad "tune --max-loss --json"; cat "$T/j.json" "$T/j.err"; fi

# calibrate --rule two-stage, profile show / set
if "$SL" calibrate -m $M -f $TXT --max-tokens 2048 -c 64 --rule two-stage --split-tokens 256 --sparsity 0.5 -q -o "$T/ts.gguf" > /dev/null 2>&1 &&
    "$SL" profile show -m $M -P "$T/ts.gguf" > "$T/show.out" 2>&1 && grep -q "^ *0  two-stage " "$T/show.out" &&
    grep -q "^0.500 " "$T/show.out"; then
    ok "calibrate --rule two-stage: every layer two-stage, schedule shown"
else bad "calibrate two-stage"; cat "$T/show.out"; fi
if "$SL" profile set -m $M -P "$T/ts.gguf" -o "$T/set.gguf" --rule two-stage --cand-frac 0.6 --keep-frac 0.4 &&
    "$SL" profile show -m $M -P "$T/set.gguf" | grep -q "^ *3  two-stage .* 154  *230 "; then
    ok "profile set --rule two-stage --cand-frac 0.6 --keep-frac 0.4: topk 154, cand_k 230"
else bad "profile set"; "$SL" profile show -m $M -P "$T/set.gguf"; fi

# contribution-target predictor training (ListNet)
if "$SL" train-predictor -m $M -f $TXT --tokens 1024 -c 64 --epochs 1 -t 1 --target contrib --loss listnet --json -o "$T/c.gguf" > "$T/c.json" 2>&1 &&
    grep -q '"contrib_recall": 0\.[0-9]' "$T/c.json" && grep -q '"rule": "topk"' "$T/c.json"; then
    ok "train-predictor --target contrib --loss listnet: top-k rule, contribution recall reported"
else bad "contrib training"; cat "$T/c.json"; fi

expect_fail "tune without --sparsity or --max-loss" "$SL" tune -m $M -f $TXT -o "$T/x.gguf"
expect_fail "tune with both" "$SL" tune -m $M -f $TXT --sparsity 0.5 --max-loss 1 -o "$T/x.gguf"
expect_fail "tune unknown method" "$SL" tune -m $M -f $TXT --sparsity 0.5 --methods cats,magic -o "$T/x.gguf"
expect_fail "calibrate two-stage-pred without predictors" "$SL" calibrate -m $M -f $TXT --rule two-stage-pred -o "$T/x.gguf"
expect_fail "profile set two-stage without --cand-frac" "$SL" profile set -m $M -P "$T/ts.gguf" --rule two-stage --keep-frac 0.4 -o "$T/x.gguf"
expect_fail "profile set two-stage-pred on a layer without predictor" "$SL" profile set -m $M -P "$T/ts.gguf" --rule two-stage-pred --cand-frac 0.6 --keep-frac 0.4 -o "$T/x.gguf"
expect_fail "listnet with the sign target" "$SL" train-predictor -m $M -f $TXT --loss listnet -o "$T/x.gguf"
if [ ! -e "$T/x.gguf" ]; then ok "no output from the failed runs"; else bad "a failed run wrote $T/x.gguf"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
