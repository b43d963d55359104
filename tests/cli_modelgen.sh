#!/bin/sh
# CLI-level tests of the model generator, converter and bench: `skipllama synth` writes a small
# model in every type that `info` describes and `logits` evaluates to finite numbers; `quantize`
# of the F32 model gives the same logits as synthesizing the type directly (same random values,
# same rounding); `bench` produces its rows; bad input gets a message and exit 1..127.
# Prints "ok ..." / "not ok ..." lines; exits 1 on any failure. Kept small: runs in seconds.
. tests/lib.sh
F32DIFF=${F32DIFF:-$B/tools/f32diff}

# finite F32 file of exactly N floats (a NaN or inf differs from itself, so f32diff X X 0 fails)
finite_floats() { [ "$(wc -c < "$1")" -eq $(($2 * 4)) ] && "$F32DIFF" "$1" "$1" 0 > /dev/null; }

IDS=1,5,300,17,42,511
for ty in f32 f16 bf16 q8_0 q4_0; do
    m="$T/tiny-$ty.gguf"
    if "$SL" synth --shape tiny -t $ty --seed 3 -o "$m" 2> "$T/err"; then ok "synth tiny $ty"
    else bad "synth tiny $ty"; cat "$T/err"; continue; fi
    out=$("$SL" info -m "$m" 2>&1)
    if echo "$out" | grep -q "n_layer: *2" && echo "$out" | grep -q "$ty"; then ok "info on synthetic $ty: 2 layers, type $ty"
    else bad "info on synthetic $ty"; echo "$out"; fi
    if "$SL" logits -m "$m" --ids $IDS -o "$T/$ty.f32" 2> "$T/err" && finite_floats "$T/$ty.f32" $((6 * 512)); then
        ok "logits on synthetic $ty: 6 x 512 finite floats"
    else bad "logits on synthetic $ty"; cat "$T/err"; fi
done

# quantize --pure (f32 model) == the type synthesized directly: same values, same reference rounding
for ty in f16 q8_0 q4_0; do
    if "$SL" quantize --pure "$T/tiny-f32.gguf" "$T/tiny-f32-to-$ty.gguf" $ty 2> "$T/err" &&
        "$SL" logits -m "$T/tiny-f32-to-$ty.gguf" --ids $IDS -o "$T/q-$ty.f32" 2>> "$T/err" &&
        "$F32DIFF" "$T/q-$ty.f32" "$T/$ty.f32" 0 > /dev/null; then
        ok "quantize f32 -> $ty gives the same logits as synth -t $ty"
    else bad "quantize f32 -> $ty"; cat "$T/err"; fi
done
out=$("$SL" info -m "$T/tiny-f32-to-q4_0.gguf" 2>&1)
echo "$out" | grep -q "q4_0" && ok "info on quantized file shows q4_0" || { bad "info on quantized file"; echo "$out"; }

# same seed, any thread count: the same bytes
"$SL" synth --shape tiny -t q8_0 --seed 3 --threads 1 -o "$T/a.gguf" 2> /dev/null
"$SL" synth --shape tiny -t q8_0 --seed 3 --threads 3 -o "$T/b.gguf" 2> /dev/null
cmp -s "$T/a.gguf" "$T/b.gguf" && cmp -s "$T/a.gguf" "$T/tiny-q8_0.gguf" && ok "synth is deterministic across thread counts" ||
    bad "synth determinism"

# explicit shape: tied embeddings, rope_freqs, GQA, relu
m="$T/custom.gguf"
if "$SL" synth --dim 64 --ff 128 --layers 2 --heads 4 --kv-heads 1 --vocab 300 --ctx 64 --tied --rope-freqs --act relu -t q4_0 -o "$m" 2> "$T/err" &&
    "$SL" logits -m "$m" --ids 1,2,299 -o "$T/custom.f32" 2>> "$T/err" && finite_floats "$T/custom.f32" $((3 * 300)); then
    ok "synth --tied --rope-freqs --act relu (explicit shape) evaluates to finite logits"
else bad "synth explicit shape"; cat "$T/err"; fi

# bench: both rows, md and json
if "$SL" bench -m "$T/tiny-q8_0.gguf" -p 8 -n 4 -t 1,2 -r 2 --membw-mb 16 -o json > "$T/bench.json" 2> "$T/err" &&
    [ "$(grep -c '"test": "pp8"' "$T/bench.json")" -eq 2 ] && [ "$(grep -c '"test": "tg4"' "$T/bench.json")" -eq 2 ] &&
    grep -q '"dram_read_gbs"' "$T/bench.json"; then
    ok "bench -o json: pp8 and tg4 rows at 1 and 2 threads"
else bad "bench json"; cat "$T/bench.json" "$T/err"; fi
if "$SL" bench -m "$T/tiny-f16.gguf" -p 4 -n 2 -r 1 --membw-mb 0 > "$T/bench.md" 2> "$T/err" &&
    grep -q "^| model | size | params" "$T/bench.md" && grep -q "| tg2 |" "$T/bench.md" && grep -q "peak RSS" "$T/bench.md"; then
    ok "bench md table with tg row and peak RSS"
else bad "bench md"; cat "$T/bench.md" "$T/err"; fi
# the kernel switch: --kernels and SKIPLLAMA_KERNELS name the variant the run used
if "$SL" bench -m "$T/tiny-q8_0.gguf" -p 0 -n 2 -r 1 --membw-mb 0 --kernels scalar -o json > "$T/k.json" 2> "$T/err" &&
    grep -q '"kernels": "scalar"' "$T/k.json" &&
    SKIPLLAMA_KERNELS=scalar "$SL" bench -m "$T/tiny-q8_0.gguf" -p 0 -n 2 -r 1 --membw-mb 0 -o json > "$T/k2.json" 2> "$T/err" &&
    grep -q '"kernels": "scalar"' "$T/k2.json"; then
    ok "bench --kernels scalar and SKIPLLAMA_KERNELS=scalar run the scalar kernels"
else bad "kernel switch"; cat "$T/k.json" "$T/k2.json" "$T/err"; fi
expect_fail "bench unknown --kernels" "$SL" bench -m "$T/tiny-q8_0.gguf" -p 0 -n 2 -r 1 --membw-mb 0 --kernels sse9
"$SL" synth --help > /dev/null && ok "synth --help" || bad "synth --help"
"$SL" quantize --help > /dev/null && ok "quantize --help" || bad "quantize --help"
"$SL" bench --help > /dev/null && ok "bench --help" || bad "bench --help"

expect_fail "synth unknown shape" "$SL" synth --shape gpt-5 -o "$T/x.gguf"
expect_fail "synth missing -o" "$SL" synth --shape tiny
expect_fail "synth bad type" "$SL" synth --shape tiny -t q3_k -o "$T/x.gguf"
expect_fail "synth width not a multiple of 32 for q8_0" "$SL" synth --dim 48 --ff 96 --layers 1 --heads 4 --vocab 300 -t q8_0 -o "$T/x.gguf"
expect_fail "synth heads not dividing width" "$SL" synth --dim 64 --ff 96 --layers 1 --heads 5 --vocab 300 -o "$T/x.gguf"
expect_fail "synth bad number" "$SL" synth --shape tiny --layers 2x -o "$T/x.gguf"
[ ! -e "$T/x.gguf" ] && ok "no file left by failed synth runs" || bad "failed synth left a file"
expect_fail "quantize bad type" "$SL" quantize "$T/tiny-f32.gguf" "$T/x.gguf" q7_k
expect_fail "quantize missing input" "$SL" quantize "$T/nope.gguf" "$T/x.gguf" q8_0
expect_fail "quantize onto itself" "$SL" quantize "$T/tiny-f32.gguf" "$T/tiny-f32.gguf" q8_0
expect_fail "quantize missing args" "$SL" quantize "$T/tiny-f32.gguf"
expect_fail "bench missing model" "$SL" bench -m "$T/nope.gguf"
expect_fail "bench bad thread list" "$SL" bench -m "$T/tiny-f32.gguf" -t 1,0
expect_fail "bench ctx too short" "$SL" bench -m "$T/tiny-f32.gguf" -p 32 -c 16

echo "$((fails)) failures"
[ $fails -eq 0 ]
