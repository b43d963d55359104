#!/bin/sh
# CLI tests of `skipllama tokenize`, `detokenize` and `run`: ids on the vocab-only files, the tiny
# fixture's prompt ids and greedy text, seeded reproducibility, the stop messages, and clear errors
# (exit 1..127, never a signal) for bad input. Prints "ok ..." / "not ok ..."; exits 1 on failure.
. tests/lib.sh

# expect_out NAME WANT CMD...: stdout must be exactly WANT (plus the final newline)
expect_out() {
    name=$1; want=$2; shift 2
    got=$("$@" 2> "$T/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok "$name"
    else bad "$name (exit $rc)"; echo "  want: $want"; echo "  got:  $got"; cat "$T/err"; fi
}

V=tests/data/vocab
expect_out "tokenize llama-spm (BOS added)" "1 15043 3186" "$SL" tokenize -m $V/ggml-vocab-llama-spm.gguf -p "Hello world"
expect_out "tokenize gpt-2 (no BOS wanted)" "15496 995" "$SL" tokenize -m $V/ggml-vocab-gpt-2.gguf -p "Hello world"
expect_out "tokenize starcoder" "8302 5810" "$SL" tokenize -m $V/ggml-vocab-starcoder.gguf -p "Hello world"
expect_out "tokenize deepseek-llm" "100000 17464 1843" "$SL" tokenize -m $V/ggml-vocab-deepseek-llm.gguf -p "Hello world"
expect_out "tokenize llama-bpe" "128000 9906 1917" "$SL" tokenize -m $V/ggml-vocab-llama-bpe.gguf -p "Hello world"
expect_out "tokenize --no-bos" "9906 1917" "$SL" tokenize -m $V/ggml-vocab-llama-bpe.gguf -p "Hello world" --no-bos
expect_out "tokenize --special" "128000 128006 882 128007" \
    "$SL" tokenize -m $V/ggml-vocab-llama-bpe.gguf -p "<|start_header_id|>user<|end_header_id|>" --special
expect_out "tokenize tiny-silu prompt" "1 985 369 262 1108 271 659 1961 1966 1970 1087" \
    "$SL" tokenize -m tests/data/tiny-silu.gguf -p "It was a dark and stormy night"
expect_out "tokenize without -m uses the bundled model" "1 985 369 262 1108 271 659 1961 1966 1970 1087" \
    "$SL" tokenize -p "It was a dark and stormy night"
printf 'a\000b' > "$T/nul.txt"
if out=$("$SL" tokenize -m $V/ggml-vocab-llama-spm.gguf -f "$T/nul.txt" --no-bos) && [ "$out" = "263 3 29890" ]; then
    ok "tokenize -f keeps NUL bytes (a <0x00> b)"
else bad "tokenize -f with NUL bytes: $out"; fi
printf 'caf\303\251 \377\376 ok' > "$T/bad.txt"
for v in llama-spm gpt-2 llama-bpe; do
    if "$SL" tokenize -m $V/ggml-vocab-$v.gguf -f "$T/bad.txt" > "$T/out" 2> "$T/err" && [ -s "$T/out" ]; then
        ok "tokenize $v: invalid UTF-8 gives ids, exit 0"
    else bad "tokenize $v with invalid UTF-8"; cat "$T/err"; fi
done
"$SL" tokenize --help > /dev/null && ok "tokenize --help" || bad "tokenize --help"

GREEDY=1967,271,261,273,494,1756,270,261,13,1959,655,1963,495,584,270,261,724,1967,271,261,724,369,262,930,288,1965,1963,1964,504,13,1969,286
GREEDY_TEXT=", and the bottom of the
sublicles of the whale, and the whale was a little influous
con"
expect_out "detokenize greedy ids == greedy_text" "$GREEDY_TEXT" "$SL" detokenize -m tests/data/tiny-silu.gguf $GREEDY
expect_out "detokenize --special renders <s>" "<s> It" "$SL" detokenize -m tests/data/tiny-silu.gguf --special 1 985
expect_fail "detokenize id out of range" "$SL" detokenize -m tests/data/tiny-silu.gguf 1,2048
expect_fail "detokenize malformed ids" "$SL" detokenize -m tests/data/tiny-silu.gguf 1,,2

expect_out "run --temp 0 -n 32 --no-display-prompt == greedy_text" "$GREEDY_TEXT" \
    "$SL" run -m tests/data/tiny-silu.gguf -p "It was a dark and stormy night" -n 32 --temp 0 -t 2 --no-display-prompt
expect_out "run echoes the prompt first, as llama-cli" "It was a dark and stormy night$GREEDY_TEXT" \
    "$SL" run -p "It was a dark and stormy night" -n 32 --temp 0
if grep -q "prompt: .*11 tokens.*tokens/s" "$T/err" && grep -q "generation: .*32 tokens.*tokens/s" "$T/err" &&
   grep -q "stopped: generated the 32 tokens" "$T/err"; then
    ok "run prints the stop reason and prompt/generation speed on stderr"
else bad "run summary"; cat "$T/err"; fi
a=$("$SL" run -p "The sea" -n 24 --seed 42 --temp 1.0 2> /dev/null)
b=$("$SL" run -p "The sea" -n 24 --seed 42 --temp 1.0 2> /dev/null)
c=$("$SL" run -p "The sea" -n 24 --seed 43 --temp 1.0 2> /dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]; then ok "run: same seed, same text; another seed, other text"
else bad "run seeds: '$a' / '$b' / '$c'"; fi
if "$SL" run -p "The whale" -c 24 --temp 0 > "$T/out" 2> "$T/err" && grep -q "context is full" "$T/err"; then
    ok "run stops at a full context with a message, exit 0"
else bad "run context full"; cat "$T/err"; fi
printf 'It was a dark and stormy night' > "$T/prompt.txt"
if out=$("$SL" run -f "$T/prompt.txt" -n 32 --temp 0 --no-display-prompt 2> /dev/null) && [ "$out" = "$GREEDY_TEXT" ]; then
    ok "run -f FILE"
else bad "run -f: $out"; fi
"$SL" run --help > /dev/null && ok "run --help" || bad "run --help"

expect_fail "run: prompt longer than the context" "$SL" run -f tests/data/eval.txt -n 4
expect_fail "run --chat without a chat template" "$SL" run -p hi --chat
expect_fail "run: empty prompt without BOS" "$SL" run -p "" --no-bos
expect_fail "run: --top-p out of range" "$SL" run -p x --top-p 2
expect_fail "run: -p and -f together" "$SL" run -p x -f "$T/prompt.txt"
expect_fail "run: unknown option" "$SL" run -p x --bogus
expect_fail "tokenize: no text" "$SL" tokenize -m $V/ggml-vocab-gpt-2.gguf
expect_fail "tokenize: missing file" "$SL" tokenize -m $V/ggml-vocab-gpt-2.gguf -f "$T/nope.txt"

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
