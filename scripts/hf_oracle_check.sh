#!/bin/sh
# hf_oracle_check.sh — does llama.cpp read what `skipllama convert` writes? For each F32 fixture
# of tests/data/arch (and tiny-silu): export it as a Hugging Face folder (tests/tools/gguf2hf),
# convert the folder back to GGUF, run llama.cpp's teacher-forced log-probs on the converted file
# (the oracle: a folder where `npm install node-llama-cpp` ran, holding its logprobs.mjs/compare.py helpers) and print
#   (1) its max |log-prob difference| to llama.cpp on the original fixture (the committed
#       tests/data/arch/<f>.oracle.json), and
#   (2) llama.cpp on the converted file vs our logits on the folder (the oracle's compare.py).
#
#   sh scripts/hf_oracle_check.sh ORACLE_DIR [FIXTURE...]     (after make and make build/tools/gguf2hf)
# Not part of `make test` (the tests must not depend on the oracle); the numbers are in
# docs/huggingface.md.
set -u
O=${1:?usage: scripts/hf_oracle_check.sh ORACLE_DIR [FIXTURE...]}
shift
B=${BUILD:-build}
L=${*:-llama-gqa-yarn llama-tied-linear qwen2-bias qwen3-hd32 phi3-partial gemma2-swa gemma3-swa tiny-silu}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for f in $L; do
    case $f in
        tiny-*) src=tests/data/$f.gguf; ref=""; ids=1,985,369,262,1108,271,659,1961,1966,1970,1087 ;;
        *) src=tests/data/arch/$f.gguf; ref=tests/data/arch/$f.oracle.json
           ids=$(sed -n 's/.*"ids":\[\([0-9,]*\)\].*/\1/p' "$ref") ;;
    esac
    d=$T/folder-$(echo "$f" | tr -cd 'a-z' | head -c 3)$$ # (a folder named "...phi3..." trips a name rule of llama.cpp)
    "$B/tools/gguf2hf" "$src" "$d" && "$B/skipllama" convert "$d" -o "$T/c.gguf" 2> /dev/null || { echo "$f: export/convert failed"; continue; }
    (cd "$O" && node logprobs.mjs "$T/c.gguf" "$ids" 20 > "$T/c.json" 2> "$T/err") || { echo "$f: llama.cpp failed: $(grep -i error "$T/err" | head -1)"; continue; }
    "$B/skipllama" logits -m "$d" --ids "$ids" -o "$T/ours.f32" 2> /dev/null
    echo "== $f"
    if [ -n "$ref" ]; then
        python3 - "$T/c.json" "$ref" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
d = 0.0
for pa, pb in zip(a["positions"], b["positions"]):
    ta = dict((i, l) for i, l in pa["top"])
    for i, l in pb["top"]:
        d = max(d, abs(ta.get(i, -1e9) - l))
print("   llama.cpp on convert's output vs on the original fixture: max |dlogprob| = %.3g over %d positions" % (d, len(b["positions"])))
PY
    fi
    printf '   llama.cpp on convert'"'"'s output vs our logits on the folder: '
    python3 "$O/compare.py" "$T/c.json" "$T/ours.f32" | tail -n 1
done
