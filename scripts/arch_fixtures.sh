#!/bin/sh
# arch_fixtures.sh ORACLE_DIR [BUILD] — (re)make the per-architecture fixtures in tests/data/arch/:
# small random-weight GGUFs written by `skipllama synth --arch ...` and llama.cpp's log-probs for
# 40 pseudo-random token ids on each (ORACLE_DIR/logprobs.mjs: node-llama-cpp's prebuilt CPU
# llama.cpp, F32 KV cache, no flash attention, context max(n_ids + 1, 64) = 64 tokens, top 20).
# tests/test_arch.c compares every position. Not run by the build or the tests: the outputs are
# committed. Each line below is the fixture's recipe; keep the list in step with test_arch.c.
set -eu
ORACLE=${1:?usage: scripts/arch_fixtures.sh ORACLE_DIR [BUILD]}
BIN=${2:-build}/skipllama
OUT=tests/data/arch
mkdir -p "$OUT"
IDS=$(python3 -c "import random; r = random.Random(20); print(','.join(str(r.randrange(3, 320)) for _ in range(40)))")

fixture() { # NAME SYNTH-ARGS...
    name=$1; shift
    "$BIN" synth --vocab 320 --name fixture --threads 1 "$@" -o "$OUT/$name.gguf" 2>/dev/null
    node "$ORACLE/logprobs.mjs" "$OUT/$name.gguf" "$IDS" 20 --compact > "$OUT/$name.oracle.json"
    echo "$name: $(stat -c %s "$OUT/$name.gguf") bytes"
}

# llama (Mistral-like: GQA 4:1, YaRN; SmolLM-like: tied, GQA 3:1, linear RoPE scaling)
fixture llama-gqa-yarn   --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 1 --rope-scaling yarn --rope-factor 8 --rope-orig-ctx 4096 --seed 101
fixture llama-tied-linear --dim 96 --ff 96 --layers 2 --heads 6 --kv-heads 2 --tied --rope-scaling linear --rope-factor 2 --seed 102
# qwen2: q/k/v biases, NeoX RoPE
fixture qwen2-bias       --arch qwen2 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 2 --tied --seed 201
fixture qwen2-yarn-q4_0  --arch qwen2 --type q4_0 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 1 --rope-scaling yarn --rope-factor 4 --rope-orig-ctx 64 --seed 202
# qwen3: per-head q/k RMSNorm, head size != dim / heads
fixture qwen3-hd32       --arch qwen3 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --seed 301
fixture qwen3-q8_0       --arch qwen3 --type q8_0 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 4 --tied --rope-base 1000000 --seed 302
# phi3: fused qkv and gate|up, partial rotary; LongRoPE (long factors: the 64-token context exceeds 32)
fixture phi3-partial     --arch phi3 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 4 --rot 8 --seed 401
fixture phi3-longrope-q4_0 --arch phi3 --type q4_0 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 2 --longrope --rope-orig-ctx 32 --rope-attn-factor 1.19 --ctx 64 --seed 402
# gemma2: GELU, sqrt(dim) embeddings, post-norms, soft-capping, window on even layers
fixture gemma2-swa       --arch gemma2 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --swa 8 --seed 501
fixture gemma2-caps      --arch gemma2 --dim 32 --ff 64 --layers 3 --heads 2 --kv-heads 1 --swa 4 --attn-softcap 2 --final-softcap 5 --rope-base-swa 500 --seed 502
fixture gemma2-q8_0      --arch gemma2 --type q8_0 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 1 --swa 6 --seed 503
# gemma3: q/k norms, 5 windowed layers : 1 global, their own RoPE base, linear scaling on global ones
fixture gemma3-swa       --arch gemma3 --dim 32 --ff 64 --layers 6 --heads 2 --kv-heads 1 --head-dim 16 --swa 8 --rope-base 1000000 --rope-base-swa 10000 --rope-scaling linear --rope-factor 4 --seed 601
fixture gemma3-global-q4_0 --arch gemma3 --type q4_0 --dim 64 --ff 96 --layers 2 --heads 4 --kv-heads 2 --final-softcap 10 --seed 602
