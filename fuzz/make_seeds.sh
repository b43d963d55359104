#!/bin/sh
# make_seeds.sh — build the seed corpora of the fuzz harnesses from the fixtures, into
# $FUZZ_BUILD/corpus/<harness>/ (default build-fuzz; ignored by git: only the generator is
# committed). Run from the repository root after `make fuzz`.
#
#   gguf       the first 64 KiB of every fixture model and vocabulary, the vocabularies cut to
#              400 tokens, an all-types file, the model and profile seeds below
#   model      tiny models of every weight type and architecture (written by fuzz_model itself) and the
#              cut vocabularies with the vocab-only option byte appended
#   profile    profiles of every rule and predictor type for the micro model (fuzz_profile)
#   tokenize   every fixture test string against its vocabulary (fuzz_tokenize)
#   detokenize the fixtures' expected ids (fuzz_detokenize)
#   cli_args   typical and broken command lines (fuzz_cli_args)
#   safetensors safetensors files of every dtype and shard indexes (fuzz_safetensors)
#   hf         tokenizer.json files (SentencePiece-style, byte-level) and config.json of every architecture (fuzz_hf)
#   server_request  request bodies for every endpoint of the HTTP server (fuzz_server_request)
# Seeds that depend on the library (fingerprints, encodings) are written by the harness binary
# itself when SL_FUZZ_WRITE_SEEDS=<dir> is set, so they always match the code being fuzzed.
set -eu
B=${FUZZ_BUILD:-build-fuzz}
C="$B/corpus"
for h in gguf model profile tokenize detokenize cli_args safetensors hf server_request; do
    [ -x "$B/fuzz/fuzz_$h" ] || { echo "make_seeds.sh: $B/fuzz/fuzz_$h missing: run 'make fuzz' first" >&2; exit 1; }
    mkdir -p "$C/$h"
done
for h in gguf model profile tokenize detokenize cli_args safetensors hf server_request; do
    SL_FUZZ_WRITE_SEEDS="$C/$h" "$B/fuzz/fuzz_$h" -runs=0 > /dev/null 2>&1 || { echo "make_seeds.sh: fuzz_$h could not write its seeds" >&2; exit 1; }
done
for f in tests/data/*.gguf tests/data/vocab/*.gguf; do
    head -c 65536 "$f" > "$C/gguf/head-$(basename "$f")"
done
cp "$C/model/"* "$C/profile/"* "$C/gguf/"
for f in "$C/gguf/"vocab-*.gguf; do
    { cat "$f"; printf '\001'; } > "$C/model/$(basename "$f")"
done
for h in gguf model profile tokenize detokenize cli_args safetensors hf server_request; do
    echo "$h: $(ls "$C/$h" | wc -l) seeds, $(du -sk "$C/$h" | cut -f1) KiB"
done
