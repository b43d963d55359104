#!/bin/sh
# CLI-level tests of the `skipllama` binary: the contracts other tools rely on (`logits`,
# `info`), and that bad input gets a clear error and a non-zero exit — never a crash (exit
# codes >= 128 mean a signal). Prints "ok ..." / "not ok ..." lines; exits 1 on any failure.
. tests/lib.sh
F32DIFF="$B/tools/f32diff"

PROMPT=1,985,369,262,1108,271,659,1961,1966,1970,1087
for m in tiny-silu tiny-relu; do
    if "$SL" logits -m tests/data/$m.gguf --ids $PROMPT -o "$T/$m.f32" && "$F32DIFF" "$T/$m.f32" tests/data/$m.logits.f32 1e-4; then
        ok "logits $m == PyTorch reference"
    else bad "logits $m"; fi
    if "$SL" logits -m tests/data/$m.gguf --ids $PROMPT -o "$T/$m.inc.f32" --incremental -t 2 && "$F32DIFF" "$T/$m.inc.f32" tests/data/$m.logits.f32 1e-4; then
        ok "logits --incremental -t 2 $m == PyTorch reference"
    else bad "logits --incremental $m"; fi
done
for ty in f16 bf16 q8_0 q4_0; do
    if "$SL" logits -m tests/data/tiny-silu-$ty.gguf --ids $PROMPT -o "$T/$ty.f32" && [ "$(wc -c < "$T/$ty.f32")" -eq $((11 * 2048 * 4)) ]; then
        ok "logits on $ty writes 11 x 2048 floats"
    else bad "logits $ty"; fi
done

out=$("$SL" info -m tests/data/tiny-silu-q4_0.gguf)
if echo "$out" | grep -q "n_layer: *4" && echo "$out" | grep -q "q4_0" && echo "$out" | grep -q "parameters: *1049728"; then
    ok "info prints layers, types and parameter count"
else bad "info output"; echo "$out"; fi
"$SL" info --help > /dev/null && ok "info --help" || bad "info --help"
"$SL" logits --help > /dev/null && ok "logits --help" || bad "logits --help"

expect_fail "unknown command" "$SL" frobnicate
expect_fail "unknown flag" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1 -o "$T/x" --bogus
expect_fail "missing -o" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1
expect_fail "malformed ids" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1,,2 -o "$T/x"
expect_fail "id out of range" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1,2048 -o "$T/x"
expect_fail "negative id" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1,-3 -o "$T/x"
expect_fail "missing model file" "$SL" info -m "$T/nope.gguf"
expect_fail "not a gguf" "$SL" info -m tests/cli_tests.sh
head -c 100000 tests/data/tiny-silu.gguf > "$T/trunc.gguf"
expect_fail "truncated model" "$SL" logits -m "$T/trunc.gguf" --ids 1 -o "$T/x"
expect_fail "bad thread count" "$SL" logits -m tests/data/tiny-silu.gguf --ids 1 -o "$T/x" -t 0

echo "$((fails)) failures"
[ $fails -eq 0 ]
