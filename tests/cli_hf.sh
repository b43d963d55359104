#!/bin/sh
# CLI tests of Hugging Face model folders (`-m DIR`) and `skipllama convert`.
#
# Folders are made from the GGUF fixtures by tests/tools/gguf2hf (HF's tensor names and shapes,
# LLaMA q/k rows un-permuted, Gemma norms without the +1, config.json, tokenizer.json with merges
# extracted from the SentencePiece vocabulary), so the same weights exist in both formats:
#  - logits of the folder == logits of the GGUF, bit for bit (tolerance 0), for tiny-silu (F32, one
#    file and 3 shards; also == PyTorch within 1e-4), tiny-silu-f16/-bf16 (F16/BF16 safetensors),
#    tiny-relu, and the F32 fixtures of every architecture (llama with YaRN / linear RoPE
#    scaling, qwen2 with biases, qwen3, phi3 with partial rotary, gemma2, gemma3);
#  - `convert DIR -o OUT.gguf` gives a file with llama.cpp's names whose logits are again
#    identical; `--type q8_0` gives the bytes `quantize` gives from the original GGUF;
#  - tokenize, ppl, calibrate + ppl --profile (sparse) and chat work on a folder; keys missing
#    from config.json take transformers' defaults;
#  - hostile folders are refused with a message naming the problem (exit 1..127, no signal):
#    bad config JSON, missing/unsupported keys, header length past EOF, overlapping offsets,
#    dtype/shape mismatch, a missing shard, a shard outside the folder, wrong tensor shapes,
#    unsupported dtypes, a truncated shard, a broken tokenizer.json.
. tests/lib.sh
G2H="$B/tools/gguf2hf"
F32DIFF="$B/tools/f32diff"
# expect_fail NAME WANT CMD...: as tests/lib.sh's, and stderr must contain WANT
expect_fail() {
    name=$1; want=$2; shift 2
    "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
    if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -q -- "$want" "$T/err"; then ok "$name (exit $rc: $(head -c 200 "$T/err" | tr '\n' ' '))"
    else bad "$name (exit $rc, want '$want')"; cat "$T/err"; fi
}
# same_logits NAME A B IDS: logits of model A and model B agree bit for bit
same_logits() {
    "$SL" logits -m "$2" --ids "$4" -o "$T/a.f32" -t 1 2> "$T/err" && "$SL" logits -m "$3" --ids "$4" -o "$T/b.f32" -t 1 2>> "$T/err" &&
        "$F32DIFF" "$T/a.f32" "$T/b.f32" 0 > "$T/diff" && ok "$1: $(cat "$T/diff")" || { bad "$1: $(cat "$T/diff" 2> /dev/null)"; cat "$T/err"; }
}

PROMPT=1,985,369,262,1108,271,659,1961,1966,1970,1087
"$G2H" tests/data/tiny-silu.gguf "$T/tiny-silu" && "$G2H" tests/data/tiny-silu.gguf "$T/tiny-sharded" --shards 3 || bad "gguf2hf"
same_logits "tiny-silu folder == GGUF" tests/data/tiny-silu.gguf "$T/tiny-silu" $PROMPT
"$F32DIFF" "$T/b.f32" tests/data/tiny-silu.logits.f32 1e-4 > "$T/diff" && ok "tiny-silu folder == PyTorch: $(cat "$T/diff")" || bad "tiny-silu folder vs PyTorch"
same_logits "tiny-silu in 3 shards == GGUF" tests/data/tiny-silu.gguf "$T/tiny-sharded" $PROMPT
"$SL" logits -m "$T/tiny-silu" --ids $PROMPT -o "$T/c.f32" --incremental -t 2 && "$F32DIFF" "$T/a.f32" "$T/c.f32" 1e-5 > "$T/diff" &&
    ok "tiny-silu folder, one token at a time on 2 threads: $(cat "$T/diff")" || bad "incremental"
for m in tiny-silu-f16 tiny-silu-bf16 tiny-relu; do
    "$G2H" tests/data/$m.gguf "$T/$m" && same_logits "$m folder == GGUF" tests/data/$m.gguf "$T/$m" $PROMPT
done
grep -q '"dtype":"BF16"' "$T/tiny-silu-bf16/model.safetensors" && ok "the bf16 folder holds BF16 tensors" || bad "bf16 folder dtype"
IDS=1,5,9,30,100,200,300,17,2,44,77,3
for f in llama-gqa-yarn llama-tied-linear phi3-partial qwen2-bias qwen3-hd32 gemma2-swa gemma3-swa; do
    "$G2H" tests/data/arch/$f.gguf "$T/$f" && same_logits "$f folder == GGUF" tests/data/arch/$f.gguf "$T/$f" $IDS
done
grep -q '"rope_type": "yarn"' "$T/llama-gqa-yarn/config.json" && grep -q 'mlp.gate_up_proj' "$T/phi3-partial/model.safetensors" &&
    grep -q 'pre_feedforward_layernorm' "$T/gemma3-swa/model.safetensors" && ok "the folders use Hugging Face's names and config keys" ||
    bad "HF names"

# convert
for f in tiny-sharded gemma3-swa phi3-partial; do
    src=$T/$f; ref=tests/data/arch/$f.gguf; ids=$IDS
    [ $f = tiny-sharded ] && ref=tests/data/tiny-silu.gguf && ids=$PROMPT
    if "$SL" convert "$src" -o "$T/$f.gguf" -t 2 2> "$T/err"; then same_logits "convert $f -> GGUF == the original" "$ref" "$T/$f.gguf" $ids
    else bad "convert $f"; cat "$T/err"; fi
done
"$SL" info -m "$T/tiny-sharded.gguf" > "$T/info" && grep -q "blk.0.attn_q.weight" "$T/info" && grep -q "rope layout: *norm" "$T/info" &&
    ok "convert writes llama.cpp's tensor names and a llama file with permuted q/k (norm RoPE)" || { bad "convert names"; cat "$T/info"; }
"$SL" convert "$T/tiny-silu" -o "$T/q8.gguf" --type q8_0 2> /dev/null && "$SL" quantize tests/data/tiny-silu.gguf "$T/q8ref.gguf" q8_0 2> /dev/null &&
    same_logits "convert --type q8_0 == quantize of the GGUF" "$T/q8ref.gguf" "$T/q8.gguf" $PROMPT

# other subcommands on a folder
head -c 20000 tests/data/eval.txt > "$T/text.txt"
a=$("$SL" tokenize -m tests/data/tiny-silu.gguf -f "$T/text.txt"); b=$("$SL" tokenize -m "$T/tiny-silu" -f "$T/text.txt")
[ -n "$a" ] && [ "$a" = "$b" ] && ok "tokenize: the folder's tokenizer.json gives the GGUF vocabulary's ids ($(echo "$a" | wc -w) tokens)" || bad "tokenize folder"
a=$("$SL" ppl -m tests/data/tiny-silu.gguf -f "$T/text.txt" -t 1 2>&1 | grep perplexity); b=$("$SL" ppl -m "$T/tiny-silu" -f "$T/text.txt" -t 1 2>&1 | grep perplexity)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "ppl on the folder: $b" || bad "ppl folder: '$a' vs '$b'"
if "$SL" calibrate -m "$T/tiny-silu" -f "$T/text.txt" --sparsity 0.5 -o "$T/p.gguf" -q -t 1 > /dev/null 2>&1 &&
    "$SL" ppl -m "$T/tiny-silu" -f "$T/text.txt" -P "$T/p.gguf" -t 1 > "$T/ppl" 2>&1 && grep -q perplexity "$T/ppl"; then
    ok "calibrate (CATS 50%) and ppl --profile on the folder: $(grep perplexity "$T/ppl")"
else bad "sparse on the folder"; cat "$T/ppl"; fi
"$G2H" tests/data/tiny-silu.gguf "$T/tiny-chat" --chat-template \
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
printf 'Hello\nWhy?\n' | "$SL" chat -m "$T/tiny-chat" -n 4 --temp 0 -t 1 > /dev/null 2> "$T/err" && grep -q "template chatml" "$T/err" &&
    [ "$(grep -c '^\[turn' "$T/err")" = 2 ] && ok "chat on a folder uses tokenizer_config.json's template (chatml)" || { bad "chat folder"; cat "$T/err"; }

# keys save_pretrained leaves out take transformers' class defaults (LlamaConfig: eps 1e-6)
rm -rf "$T/def"; cp -r "$T/tiny-silu" "$T/def"; grep -v '"rms_norm_eps"' "$T/tiny-silu/config.json" > "$T/def/config.json"
"$SL" info -m "$T/def" 2> /dev/null | grep -q "rms_eps: *1e-06" && ok "a config.json without rms_norm_eps gets LlamaConfig's default 1e-6" ||
    bad "config defaults"

# hostile folders: each a copy of the good one with one thing broken
fresh() { rm -rf "$T/bad"; cp -r "$T/tiny-silu" "$T/bad"; }
# rewrite the JSON header of $T/bad/$1 with sed expression $2 (the header keeps its length)
edit_header() {
    f=$T/bad/$1
    n=$(od -A n -t u8 -N 8 "$f" | tr -d ' ')
    head -c $((8 + n)) "$f" > "$T/h"
    LC_ALL=C sed -e "$2" "$T/h" > "$T/h2"
    tail -c +$((9 + n)) "$f" > "$T/d"
    cat "$T/h2" "$T/d" > "$f"
}
fresh; head -c 100 "$T/tiny-silu/config.json" > "$T/bad/config.json"
expect_fail "config.json that is not JSON" "bad JSON" "$SL" info -m "$T/bad"
fresh; grep -v '"hidden_size"' "$T/tiny-silu/config.json" > "$T/bad/config.json"
expect_fail "config.json without hidden_size" "hidden_size" "$SL" info -m "$T/bad"
fresh; sed -e 's/LlamaForCausalLM/GPT2LMHeadModel/' -e 's/"llama"/"gpt2"/' "$T/tiny-silu/config.json" > "$T/bad/config.json"
expect_fail "an unsupported architecture" "GPT2LMHeadModel' is not supported" "$SL" info -m "$T/bad"
fresh; sed -e 's/"intermediate_size": 384/"intermediate_size": 385/' "$T/tiny-silu/config.json" > "$T/bad/config.json"
expect_fail "a tensor shape that disagrees with config.json" "expected" "$SL" info -m "$T/bad"
fresh; sed -e 's/"num_attention_heads": 8/"num_attention_heads": -8/' "$T/tiny-silu/config.json" > "$T/bad/config.json"
expect_fail "a negative head count" "num_attention_heads" "$SL" info -m "$T/bad"
fresh; printf '\377\377\377\377\377\377\377\177' | dd of="$T/bad/model.safetensors" conv=notrunc 2> /dev/null
expect_fail "a header length past the end of the file" "header length .* runs past the end" "$SL" info -m "$T/bad"
fresh; edit_header model.safetensors 's/"data_offsets":\[1049088,1049600\]/"data_offsets":[1049084,1049596]/'
expect_fail "overlapping tensor offsets" "overlaps" "$SL" info -m "$T/bad"
fresh; edit_header model.safetensors 's/"dtype":"F32","shape":\[2048,128\]/"dtype":"F16","shape":[2048,128]/'
expect_fail "a dtype that disagrees with the shape and offsets" "need 524288 bytes" "$SL" info -m "$T/bad"
fresh; edit_header model.safetensors 's/"dtype":"F32","shape":\[2048,128\]/"dtype":"I32","shape":[2048,128]/'
expect_fail "an I32 weight" "skipllama reads F32, F16 and BF16" "$SL" info -m "$T/bad"
fresh; head -c 3000000 "$T/tiny-silu/model.safetensors" > "$T/bad/model.safetensors"
expect_fail "a truncated safetensors file" "past the end of the data" "$SL" info -m "$T/bad"
rm -rf "$T/bad"; cp -r "$T/tiny-sharded" "$T/bad"; rm "$T/bad/model-00002-of-00003.safetensors"
expect_fail "a missing shard" "model-00002-of-00003.safetensors', which is missing" "$SL" info -m "$T/bad"
rm -rf "$T/bad"; cp -r "$T/tiny-sharded" "$T/bad"; sed -e 's/"model-00003-of-00003.safetensors"/"..\/..\/etc\/passwd"/' "$T/tiny-sharded/model.safetensors.index.json" > "$T/bad/model.safetensors.index.json"
expect_fail "a shard path outside the folder" "file name in the model's folder" "$SL" info -m "$T/bad"
fresh; head -c 5000 "$T/tiny-silu/tokenizer.json" > "$T/bad/tokenizer.json"
expect_fail "a truncated tokenizer.json" "tokenizer.json: bad JSON" "$SL" info -m "$T/bad"
fresh; sed -e 's/"type": "BPE"/"type": "Unigram"/' "$T/tiny-silu/tokenizer.json" > "$T/bad/tokenizer.json"
expect_fail "a Unigram tokenizer.json" "model type 'Unigram' is not supported" "$SL" info -m "$T/bad"
fresh; rm "$T/bad/model.safetensors"
expect_fail "a folder without weights" "neither model.safetensors" "$SL" info -m "$T/bad"
expect_fail "convert without -o" "-o OUT.gguf" "$SL" convert "$T/tiny-silu"
expect_fail "convert to an unknown type" "unknown type" "$SL" convert "$T/tiny-silu" -o "$T/x.gguf" --type q7_k
echo "$fails failures"
[ $fails -eq 0 ]
