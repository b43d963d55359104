/*
 * test_quant_recipe.c — `skipllama quantize` against llama.cpp's own quantizer, file for file:
 * the k256 fixture's F32 source is regenerated here (skipllama synth is deterministic: same
 * arguments, same bytes), quantized with sl_model_quantize_ftype for every file type of the
 * fixtures, and each tensor compared with the file llama.cpp wrote from the same source
 * (tests/data/k256-TYPE.gguf): the same type per tensor (its mixing rules and fallbacks) and the
 * same bytes (so the same RMSE). Then the recipe alone against llama.cpp's per-tensor choices on
 * a model with Llama-3.2-1B's layer structure (16 layers, 32 query / 8 KV heads, untied output;
 * dim 256, ffn 512) for 14 mixes (tests/data/r16-recipes.txt, from llama.cpp's quantize logs of
 * `skipllama synth --dim 256 --ff 512 --layers 16 --heads 32 --kv-heads 8 --vocab 288 --seed 7`),
 * which exercises the layer-dependent rules (use_more_bits, first eighth, first two...).
 */
#include "testutil.h"

#include "format/gguf.h"
#include "tools/quant_recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_k256(const char *src) {
    static const char *types[] = {"q4_k_m", "q5_k_m", "q3_k_m", "q2_k", "q6_k", "iq4_xs", "iq4_nl", "q4_1", "q5_0", "q5_1"};
    char out[] = "/tmp/skipllama-recipe-XXXXXX";
    int fd = mkstemp(out);
    close(fd);
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        int32_t ftype;
        sl_error err;
        char ref[128];
        snprintf(ref, sizeof(ref), "tests/data/k256-%s.gguf", types[k]);
        if (!CHECK(sl_ftype_from_name(types[k], &ftype) && sl_model_quantize_ftype(src, out, ftype, false, 2, &err) == SL_OK,
                   "%s: quantize", types[k]))
            continue;
        gguf_file *a = gguf_open(out, &err), *b = gguf_open(ref, &err);
        if (!CHECK(a && b, "%s: open ours and llama.cpp's", types[k])) {
            gguf_close(a), gguf_close(b);
            continue;
        }
        int bad_type = 0, bad_bytes = 0, n = 0;
        char first[160] = "";
        for (uint64_t i = 0; i < b->n_tensors; i++) {
            const gguf_tensor_info *tb = &b->tensors[i];
            if (tb->n_dims < 2) continue;
            char name[96];
            gguf_str_copy(tb->name, name, sizeof(name));
            const gguf_tensor_info *ta = gguf_find_tensor(a, name);
            n++;
            if (!ta || ta->type != tb->type) {
                bad_type++;
                if (!first[0]) snprintf(first, sizeof(first), "%s: ours %s, llama.cpp %s", name, ta ? sl_type_name(ta->type) : "missing", sl_type_name(tb->type));
            } else if (ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, tb->nbytes)) {
                bad_bytes++;
                if (!first[0]) snprintf(first, sizeof(first), "%s (%s): bytes differ", name, sl_type_name(tb->type));
            }
        }
        uint32_t fa = 0, fb = 1;
        gguf_get_u32(a, "general.file_type", &fa);
        gguf_get_u32(b, "general.file_type", &fb);
        CHECK(bad_type == 0 && bad_bytes == 0 && fa == fb && n > 0,
              "%s: all %d matrices have llama.cpp's type and bytes, file type %u (%d types, %d byte mismatches%s%s)", types[k], n, fa,
              bad_type, bad_bytes, first[0] ? "; first: " : "", first);
        gguf_close(a);
        gguf_close(b);
    }
    remove(out);
}

/* tests/data/r16-recipes.txt: "ftype-name tensor-name ne0 type-name" per line, llama.cpp's
 * choices, tensors in llama.cpp's order. */
static void test_r16_recipes(void) {
    size_t size;
    char *txt = test_read_file("tests/data/r16-recipes.txt", &size);
    if (!CHECK(txt != NULL, "read tests/data/r16-recipes.txt")) return;
    char cur[32] = "";
    sl_quant_recipe r;
    int lines = 0, bad = 0, mixes = 0;
    char first[256] = "";
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char ft[32], name[96], tn[32];
        long long ne0;
        if (sscanf(line, "%31s %95s %lld %31s", ft, name, &ne0, tn) != 4) continue;
        if (strcmp(ft, cur)) {
            int32_t f;
            snprintf(cur, sizeof(cur), "%s", ft);
            mixes++;
            if (!sl_ftype_from_name(ft, &f) || !sl_quant_recipe_init(&r, f, false, 16, 32, 8, true)) {
                bad++;
                continue;
            }
        }
        sl_type want;
        lines++;
        const sl_type got = sl_quant_recipe_next(&r, name, 2, ne0, SL_TYPE_F16);
        if (!sl_type_from_name(tn, &want) || got != want) {
            bad++;
            if (!first[0]) snprintf(first, sizeof(first), "%s %s: ours %s, llama.cpp %s", ft, name, sl_type_name(got), tn);
        }
    }
    CHECK(lines > 100 && bad == 0, "r16 recipes: %d tensors over %d mixes, %d differ from llama.cpp's choice%s%s", lines, mixes, bad,
          first[0] ? "; first: " : "", first);
    free(txt);
}

int main(void) {
    /* the k256 fixture's source: skipllama synth --dim 256 --ff 384 --layers 1 --heads 4
     * --kv-heads 2 --vocab 288 --name k256 --seed 19 */
    sl_synth_params p = sl_synth_default_params();
    p.n_embd = 256, p.n_ff = 384, p.n_layer = 1, p.n_head = 4, p.n_head_kv = 2, p.n_vocab = 288, p.seed = 19;
    snprintf(p.name, sizeof(p.name), "k256");
    char src[] = "/tmp/skipllama-k256-XXXXXX";
    int fd = mkstemp(src);
    close(fd);
    sl_error err;
    if (CHECK(sl_synth_write(&p, src, &err) == SL_OK, "synth the k256 source")) test_k256(src);
    remove(src);
    test_r16_recipes();
    return test_summary();
}
