#!/bin/sh
# The skip model on every architecture, through the CLI (issue 20's "sparse on each new
# architecture"): on one fixture of each (tests/data/arch/), `calibrate --sparsity 0.5` writes a
# CATS profile, `ppl --profile` runs with it and achieves about 50% MLP sparsity at a perplexity
# near the dense one, and `bench --profile` runs a dense and a sparse generation row. Tiny models and
# short texts: seconds. Speed is not checked (bench's numbers on these files are noise).
# Prints "ok ..." / "not ok ..."; exits 1 on failure.
. tests/lib.sh

for f in llama-tied-linear qwen2-bias qwen3-hd32 phi3-partial phi3-longrope-q4_0 gemma2-swa gemma3-swa gemma3-global-q4_0; do
    M=tests/data/arch/$f.gguf
    if "$SL" calibrate -m $M -f tests/data/train-slice.txt -o "$T/$f.skip.gguf" --sparsity 0.5 --max-tokens 2000 -c 64 -t 1 -q \
        > "$T/cal.out" 2>&1 && [ -s "$T/$f.skip.gguf" ]; then ok "$f: calibrate --sparsity 0.5 wrote a profile"
    else bad "$f: calibrate"; cat "$T/cal.out"; continue; fi
    "$SL" ppl -m $M -f tests/data/eval.txt --max-tokens 500 -c 64 -t 1 --json -q > "$T/dense.json" 2>&1
    if "$SL" ppl -m $M -f tests/data/eval.txt -P "$T/$f.skip.gguf" --max-tokens 500 -c 64 -t 1 --json -q > "$T/ppl.json" 2> "$T/ppl.err" &&
        cat "$T/dense.json" "$T/ppl.json" | awk '
             { if (match($0, /"mlp_sparsity": [0-9.]+/)) s = substr($0, RSTART + 16, RLENGTH - 16);
               if (match($0, /"ppl": [0-9.]+/)) p[NR] = substr($0, RSTART + 7, RLENGTH - 7) }
             END { r = p[2] / p[1]; printf "sparsity %s, ppl %.2f vs dense %.2f (ratio %.3f)\n", s, p[2], p[1], r > "/dev/stderr";
                   exit !(s + 0 > 0.4 && s + 0 < 0.6 && r > 0.9 && r < 1.25) }' 2> "$T/summary"; then
        ok "$f: ppl --profile: $(cat "$T/summary") (sparsity in 0.4..0.6, ratio in 0.9..1.25)"
    else bad "$f: ppl --profile: $(cat "$T/summary")"; cat "$T/dense.json" "$T/ppl.json" "$T/ppl.err"; fi
    if "$SL" bench -m $M -P "$T/$f.skip.gguf" -p 8 -n 8 -r 1 --membw-mb 0 -t 1 -q -o json > "$T/bench.json" 2> "$T/bench.err" &&
        grep -q '"test": "tg8", "variant": "dense"' "$T/bench.json" &&
        grep '"test": "tg8", "variant": "'"$f"'.skip.gguf"' "$T/bench.json" | grep -q '"mlp_sparsity": 0\.[3-6]'; then
        ok "$f: bench --profile ran a dense and a sparse tg8 row (sparse row at about 50% MLP sparsity)"
    else bad "$f: bench --profile"; cat "$T/bench.json" "$T/bench.err"; fi
done

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
