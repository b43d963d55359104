/*
 * test_convert.c — type conversion, quantized-file output and synthetic models.
 *
 * Checks: (1) f32 -> type -> f32 round trips stay within each format's stated error bound, on
 * awkward sizes; (2) `quantize` of the bundled tiny-silu.gguf gives tensors byte-identical to
 * llama.cpp's own llama-quantize output (tests/data/tiny-silu-TYPE.gguf, Q8_0/Q4_0 with --pure)
 * for every type; (3) a synthetic model written by sl_synth_write opens with gguf_open with the
 * right keys, shapes, types and value scales, and is the same bytes at any thread count;
 * (4) the streaming writer passes source errors on and leaves no file behind.
 */
#include "format/gguf.h"
#include "format/quant.h"
#include "skipllama.h"
#include "testutil.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

/* ---- (1) round trips -------------------------------------------------------------------------- */

static void fill_test_values(test_rng *r, float *x, int64_t n, int variant) {
    for (int64_t i = 0; i < n; i++) {
        float v = test_rng_normal(r);
        switch (variant) {
        case 0: x[i] = v; break;                                  /* unit scale */
        case 1: x[i] = v * 1e-3f; break;                          /* small weights */
        case 2: x[i] = v * 100.0f; break;                         /* large */
        case 3: x[i] = (i % 7 == 0) ? 0.0f : v * ((i % 5) + 1); break; /* zeros and mixed scales */
        }
    }
}

static void test_round_trips(void) {
    static const int64_t sizes[] = {32, 64, 96, 288, 1024, 4128};
    static const sl_type types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
    test_rng r = {0x1234};
    for (size_t ti = 0; ti < 5; ti++) {
        sl_type t = types[ti];
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            for (int variant = 0; variant < 4; variant++) {
                int64_t n = sizes[si];
                float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
                void *q = malloc(sl_type_row_size(t, n));
                fill_test_values(&r, x, n, variant);
                size_t bytes = sl_convert_from_f32(t, x, q, n);
                bool ok_dec = sl_convert_to_f32(t, q, y, n);
                /* worst element error relative to that element's bound */
                double worst = 0;
                for (int64_t i = 0; i < n; i++) {
                    double err = fabs((double)x[i] - (double)y[i]), bound;
                    if (t == SL_TYPE_F32) bound = 0;
                    else if (t == SL_TYPE_F16) bound = fabs(x[i]) * ldexp(1, -11) + ldexp(1, -25); /* half ulp; subnormal step */
                    else if (t == SL_TYPE_BF16) bound = fabs(x[i]) * ldexp(1, -8);
                    else {
                        /* per block: half a quantization step, plus the f16 rounding of the
                         * scale times the largest code; Q4_0 may clamp the element opposite
                         * the extreme by one full step (code 16 -> 15) */
                        int64_t b0 = i / 32 * 32;
                        double amax = 0;
                        for (int64_t j = b0; j < b0 + 32; j++) amax = fmax(amax, fabs(x[j]));
                        double d = t == SL_TYPE_Q8_0 ? amax / 127 : amax / 8;
                        double qmax = t == SL_TYPE_Q8_0 ? 127 : 8;
                        /* the f16 scale rounds relatively (2^-11) when normal, absolutely
                         * (2^-25) when subnormal, as for tiny weights */
                        double d_err = fmax(d * ldexp(1, -11), ldexp(1, -25));
                        bound = (t == SL_TYPE_Q8_0 ? 0.5 : 1.0) * d + qmax * d_err + 1e-30;
                    }
                    double rel = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0);
                    if (rel > worst) worst = rel;
                }
                CHECK(bytes == sl_type_row_size(t, n) && ok_dec && worst <= 1.0,
                      "round trip %s n=%lld variant %d: worst error / bound = %.3f (<= 1)", sl_type_name(t), (long long)n,
                      variant, worst);
                free(x);
                free(y);
                free(q);
            }
        }
        if (sl_type_block_size(t) > 1) {
            float x[33] = {0};
            uint8_t q[64];
            CHECK(sl_convert_from_f32(t, x, q, 33) == 0 && !sl_convert_to_f32(t, q, x, 33),
                  "%s refuses 33 elements (not whole blocks)", sl_type_name(t));
        }
    }
    /* format anchors */
    uint16_t h;
    float one = 1.0f, big = 65504.0f, over = 65520.0f, tiny = 5.9604645e-8f;
    sl_convert_from_f32(SL_TYPE_F16, &one, &h, 1);
    CHECK(h == 0x3c00, "f16(1.0) = 0x3c00 (got 0x%04x)", h);
    sl_convert_from_f32(SL_TYPE_F16, &big, &h, 1);
    CHECK(h == 0x7bff, "f16(65504) = 0x7bff (got 0x%04x)", h);
    sl_convert_from_f32(SL_TYPE_F16, &over, &h, 1);
    CHECK(h == 0x7c00, "f16(65520) = inf (got 0x%04x)", h);
    sl_convert_from_f32(SL_TYPE_F16, &tiny, &h, 1);
    CHECK(h == 0x0001, "f16(2^-24) = smallest subnormal (got 0x%04x)", h);
    sl_convert_from_f32(SL_TYPE_BF16, &one, &h, 1);
    CHECK(h == 0x3f80, "bf16(1.0) = 0x3f80 (got 0x%04x)", h);
    /* Q4_0: the extreme element maps exactly to code 0 (-8 * d with d = max / -8) */
    float blk[32];
    for (int i = 0; i < 32; i++) blk[i] = (float)(i - 10) / 4.0f; /* max |x| = 21/4 at i = 31 */
    sl_block_q4_0 b4;
    sl_convert_from_f32(SL_TYPE_Q4_0, blk, &b4, 32);
    CHECK((b4.qs[15] >> 4) == 0 && sl_fp16_to_fp32(b4.d) == -21.0f / 4 / 8, "q4_0 extreme element -> code 0, d = max/-8");
    CHECK(sl_type_to_ftype(SL_TYPE_F32) == 0 && sl_type_to_ftype(SL_TYPE_F16) == 1 && sl_type_to_ftype(SL_TYPE_Q4_0) == 2 &&
              sl_type_to_ftype(SL_TYPE_Q8_0) == 7 && sl_type_to_ftype(SL_TYPE_BF16) == 32 && sl_type_to_ftype((sl_type)4) == -1,
          "llama.cpp ftype numbers: f32 0, f16 1, q4_0 2, q8_0 7, bf16 32");
}

/* ---- (2) quantize vs llama.cpp ---------------------------------------------------------------- */

static uint32_t kv_u32(const gguf_file *f, const char *key) {
    uint32_t v = 0xffffffffu;
    gguf_get_u32(f, key, &v);
    return v;
}

/* Compare every tensor of ours with llama.cpp's: same names, types, dims, bytes. Counts the
 * blocks (or elements for float types) that differ so a rounding-tie mismatch is measurable. */
static void compare_with_reference(const char *ours_path, const char *ref_path, sl_type type) {
    sl_error err = {0};
    gguf_file *a = gguf_open(ours_path, &err), *b = gguf_open(ref_path, &err);
    if (!CHECK(a && b, "open %s and %s: %s", ours_path, ref_path, err.message)) {
        gguf_close(a);
        gguf_close(b);
        return;
    }
    CHECK(a->n_tensors == b->n_tensors, "%s: %llu tensors (reference %llu)", sl_type_name(type),
          (unsigned long long)a->n_tensors, (unsigned long long)b->n_tensors);
    size_t tensors_same = 0, units_diff = 0, units_total = 0, meta_bad = 0;
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const gguf_tensor_info *ta = &a->tensors[i];
        char name[128];
        gguf_str_copy(ta->name, name, sizeof(name));
        const gguf_tensor_info *tb = gguf_find_tensor(b, name);
        if (!tb || tb->type != ta->type || tb->n_dims != ta->n_dims || memcmp(ta->ne, tb->ne, sizeof(ta->ne)) ||
            tb->nbytes != ta->nbytes) {
            meta_bad++;
            printf("# %s: tensor %s differs in presence/type/shape\n", sl_type_name(type), name);
            continue;
        }
        size_t unit = ta->type == SL_TYPE_Q8_0 ? 34 : ta->type == SL_TYPE_Q4_0 ? 18 : ta->type == SL_TYPE_F32 ? 4 : 2;
        size_t diff = 0;
        for (size_t off = 0; off < ta->nbytes; off += unit)
            diff += memcmp((const uint8_t *)ta->data + off, (const uint8_t *)tb->data + off, unit) != 0;
        units_diff += diff;
        units_total += ta->nbytes / unit;
        if (diff) printf("# %s: tensor %s: %zu of %zu blocks/elements differ\n", sl_type_name(type), name, diff, ta->nbytes / unit);
        else tensors_same++;
    }
    CHECK(meta_bad == 0 && units_diff == 0 && tensors_same == a->n_tensors,
          "quantize tiny-silu -> %s: %zu/%llu tensors byte-identical to llama.cpp's (%zu of %zu blocks/elements differ)",
          sl_type_name(type), tensors_same, (unsigned long long)a->n_tensors, units_diff, units_total);
    CHECK(kv_u32(a, "general.file_type") == kv_u32(b, "general.file_type") &&
              kv_u32(a, "general.quantization_version") == 2,
          "%s: general.file_type %u (llama.cpp %u), quantization_version 2", sl_type_name(type),
          kv_u32(a, "general.file_type"), kv_u32(b, "general.file_type"));
    const gguf_array *ta = gguf_get_arr(a, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    const gguf_array *tb = gguf_get_arr(b, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    bool tok_same = ta && tb && ta->n == tb->n;
    for (uint64_t i = 0; tok_same && i < ta->n; i++)
        tok_same = ta->strs[i].len == tb->strs[i].len && !memcmp(ta->strs[i].data, tb->strs[i].data, ta->strs[i].len);
    CHECK(tok_same, "%s: tokenizer copied (%llu tokens)", sl_type_name(type), ta ? (unsigned long long)ta->n : 0ull);
    /* every key of the reference is present in ours with the same type */
    size_t missing = 0;
    for (uint64_t i = 0; i < b->n_kv; i++) {
        char key[256];
        gguf_str_copy(b->kv[i].key, key, sizeof(key));
        const gguf_kv *k = gguf_find_kv(a, key);
        if (!k || k->value.type != b->kv[i].value.type) {
            missing++;
            printf("# %s: key %s missing or of another type\n", sl_type_name(type), key);
        }
    }
    CHECK(missing == 0 && a->n_kv == b->n_kv, "%s: same %llu metadata keys as llama.cpp's file", sl_type_name(type),
          (unsigned long long)b->n_kv);
    gguf_close(a);
    gguf_close(b);
}

static void test_quantize_matches_llama_cpp(void) {
    static const sl_type types[] = {SL_TYPE_Q8_0, SL_TYPE_Q4_0, SL_TYPE_F16, SL_TYPE_BF16};
    for (size_t i = 0; i < 4; i++) {
        char out[512], ref[256];
        tmp_path(out, sizeof(out), "tiny-silu-ours.gguf");
        snprintf(ref, sizeof(ref), "tests/data/tiny-silu-%s.gguf", sl_type_name(types[i]));
        sl_error err = {0};
        sl_status st = sl_model_quantize("tests/data/tiny-silu.gguf", out, types[i], (int)i % 2 + 1, &err);
        if (CHECK(st == SL_OK, "sl_model_quantize tiny-silu -> %s (%s)", sl_type_name(types[i]), err.message))
            compare_with_reference(out, ref, types[i]);
        remove(out);
    }
    /* a quantized input: decoded then re-encoded; same type is kept byte for byte */
    char a[512], b[512];
    tmp_path(a, sizeof(a), "requant-a.gguf");
    tmp_path(b, sizeof(b), "requant-b.gguf");
    sl_error err = {0};
    CHECK(sl_model_quantize("tests/data/tiny-silu-q8_0.gguf", a, SL_TYPE_Q8_0, 2, &err) == SL_OK,
          "q8_0 -> q8_0 (%s)", err.message);
    size_t na = 0, nb = 0;
    uint8_t *fa = test_read_file(a, &na), *fb = test_read_file("tests/data/tiny-silu-q8_0.gguf", &nb);
    gguf_file *ga = fa ? gguf_open_memory(fa, na, &err) : NULL, *gb = fb ? gguf_open_memory(fb, nb, &err) : NULL;
    bool same = ga && gb && ga->n_tensors == gb->n_tensors;
    for (uint64_t i = 0; same && i < ga->n_tensors; i++) {
        char name[128];
        gguf_str_copy(ga->tensors[i].name, name, sizeof(name));
        const gguf_tensor_info *t2 = gguf_find_tensor(gb, name);
        same = t2 && t2->nbytes == ga->tensors[i].nbytes && !memcmp(t2->data, ga->tensors[i].data, t2->nbytes);
    }
    CHECK(same, "q8_0 -> q8_0 keeps every tensor's bytes");
    gguf_close(ga);
    gguf_close(gb);
    free(fa);
    free(fb);
    CHECK(sl_model_quantize("tests/data/tiny-silu-q4_0.gguf", b, SL_TYPE_F32, 1, &err) == SL_OK, "q4_0 -> f32 (%s)",
          err.message);
    gguf_file *g = gguf_open(b, &err), *q = gguf_open("tests/data/tiny-silu-q4_0.gguf", &err);
    if (CHECK(g && q, "open q4_0 -> f32 output")) {
        const gguf_tensor_info *t = gguf_find_tensor(g, "blk.1.ffn_down.weight");
        const gguf_tensor_info *tq = gguf_find_tensor(q, "blk.1.ffn_down.weight");
        int64_t n = t->ne[0] * t->ne[1];
        float *dec = malloc((size_t)n * 4);
        sl_convert_to_f32(SL_TYPE_Q4_0, tq->data, dec, n);
        CHECK(t->type == SL_TYPE_F32 && !memcmp(dec, t->data, (size_t)n * 4) && kv_u32(g, "general.file_type") == 0,
              "q4_0 -> f32 equals the decoded blocks; file_type 0");
        free(dec);
    }
    gguf_close(g);
    gguf_close(q);
    CHECK(sl_model_quantize("tests/data/does-not-exist.gguf", b, SL_TYPE_F16, 1, &err) == SL_ERR_IO,
          "missing input -> SL_ERR_IO (%s)", err.message);
    CHECK(sl_model_quantize("tests/data/tiny-silu.gguf", b, (sl_type)4, 1, &err) == SL_ERR_UNSUPPORTED,
          "unknown target type -> SL_ERR_UNSUPPORTED");
    remove(a);
    remove(b);
}

/* ---- (3) synthetic models --------------------------------------------------------------------- */

static double tensor_rms(const gguf_tensor_info *t, double mean_sub) {
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    float *x = malloc((size_t)n * 4);
    sl_convert_to_f32(t->type, t->data, x, n);
    double s = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        finite = finite && isfinite(x[i]);
        s += ((double)x[i] - mean_sub) * ((double)x[i] - mean_sub);
    }
    free(x);
    return finite ? sqrt(s / (double)n) : NAN;
}

static void test_synth(void) {
    static const sl_type types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
    for (size_t ti = 0; ti < 5; ti++) {
        sl_synth_params p = sl_synth_default_params();
        p.type = types[ti];
        p.seed = 7;
        char path[512];
        tmp_path(path, sizeof(path), "synth.gguf");
        sl_error err = {0};
        if (!CHECK(sl_synth_write(&p, path, &err) == SL_OK, "synth tiny %s (%s)", sl_type_name(p.type), err.message)) continue;
        gguf_file *f = gguf_open(path, &err);
        if (!CHECK(f != NULL, "gguf_open synthetic %s (%s)", sl_type_name(p.type), err.message)) continue;
        gguf_str s;
        bool arch = gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, "llama");
        CHECK(arch && kv_u32(f, "llama.embedding_length") == 64 && kv_u32(f, "llama.feed_forward_length") == 192 &&
                  kv_u32(f, "llama.block_count") == 2 && kv_u32(f, "llama.attention.head_count") == 4 &&
                  kv_u32(f, "llama.attention.head_count_kv") == 2 && kv_u32(f, "llama.rope.dimension_count") == 16 &&
                  kv_u32(f, "llama.vocab_size") == 512 && kv_u32(f, "llama.context_length") == 256 &&
                  kv_u32(f, "general.file_type") == (uint32_t)sl_type_to_ftype(p.type),
              "synth %s: llama keys (width 64, ff 192, 2 blocks, 4/2 heads, rot 16, vocab 512, ctx 256, ftype %d)",
              sl_type_name(p.type), sl_type_to_ftype(p.type));
        float eps = 0, base = 0;
        CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps) && eps == 1e-5f &&
                  gguf_get_f32(f, "llama.rope.freq_base", &base) && base == 10000.0f,
              "synth: rms eps 1e-5, rope base 10000");
        const gguf_array *tok = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
        const gguf_array *sc = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32);
        const gguf_array *ty = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
        bool vocab_ok = tok && sc && ty && tok->n == 512 && sc->n == 512 && ty->n == 512 &&
                        gguf_str_eq(tok->strs[0], "<unk>") && gguf_str_eq(tok->strs[1], "<s>") &&
                        gguf_str_eq(tok->strs[2], "</s>") && gguf_str_eq(tok->strs[3], "<0x00>") &&
                        gguf_str_eq(tok->strs[258], "<0xFF>") && gguf_arr_int(ty, 0) == 2 && gguf_arr_int(ty, 1) == 3 &&
                        gguf_arr_int(ty, 3) == 6 && gguf_arr_int(ty, 300) == 1 && gguf_get_str(f, "tokenizer.ggml.model", &s) &&
                        gguf_str_eq(s, "llama");
        /* every piece distinct (llama.cpp maps text to ids) */
        for (uint64_t i = 0; vocab_ok && tok && i < tok->n; i++)
            for (uint64_t j = i + 1; vocab_ok && j < tok->n; j++)
                vocab_ok = !(tok->strs[i].len == tok->strs[j].len && !memcmp(tok->strs[i].data, tok->strs[j].data, tok->strs[i].len));
        CHECK(vocab_ok, "synth: SPM vocab of 512 distinct pieces: <unk> <s> </s>, <0x00>..<0xFF>, normal pieces");
        CHECK(f->n_tensors == 3 + 9 * 2, "synth: %llu tensors (token_embd, output_norm, output + 9 per block)",
              (unsigned long long)f->n_tensors);
        static const char *names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"};
        static const int64_t shapes[][2] = {{64, 64}, {64, 32}, {64, 32}, {64, 64}, {64, 192}, {192, 64}, {64, 192}};
        bool shapes_ok = true;
        int64_t n_elem = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            int64_t n = 1;
            for (uint32_t d = 0; d < f->tensors[i].n_dims; d++) n *= f->tensors[i].ne[d];
            n_elem += n;
            sl_type want = f->tensors[i].n_dims == 1 ? SL_TYPE_F32 : p.type;
            shapes_ok = shapes_ok && f->tensors[i].type == want;
        }
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 7; k++) {
                char name[64];
                snprintf(name, sizeof(name), "blk.%d.%s.weight", l, names[k]);
                const gguf_tensor_info *t = gguf_find_tensor(f, name);
                shapes_ok = shapes_ok && t && t->n_dims == 2 && t->ne[0] == shapes[k][0] && t->ne[1] == shapes[k][1];
            }
        const gguf_tensor_info *emb = gguf_find_tensor(f, "token_embd.weight"), *out = gguf_find_tensor(f, "output.weight");
        const gguf_tensor_info *norm = gguf_find_tensor(f, "blk.1.ffn_norm.weight");
        shapes_ok = shapes_ok && emb && emb->ne[0] == 64 && emb->ne[1] == 512 && out && norm && norm->n_dims == 1 &&
                    norm->ne[0] == 64 && !gguf_find_tensor(f, "rope_freqs.weight");
        CHECK(shapes_ok, "synth %s: shapes, 2-D tensors %s and 1-D f32", sl_type_name(p.type), sl_type_name(p.type));
        CHECK(n_elem == sl_synth_n_params(&p), "synth: sl_synth_n_params %lld = elements in the file %lld",
              (long long)sl_synth_n_params(&p), (long long)n_elem);
        /* value scales: matrices ~1/sqrt(fan_in), norms ~1 (all finite) */
        double r_q = tensor_rms(gguf_find_tensor(f, "blk.0.attn_q.weight"), 0), r_down = tensor_rms(gguf_find_tensor(f, "blk.0.ffn_down.weight"), 0);
        double r_norm = tensor_rms(norm, 1.0);
        CHECK(fabs(r_q * 8.0 - 1.0) < 0.1 && fabs(r_down * sqrt(192.0) - 1.0) < 0.1 && r_norm < 0.1,
              "synth %s: rms(attn_q)*sqrt(64) = %.3f, rms(ffn_down)*sqrt(192) = %.3f (~1), rms(norm - 1) = %.3f (< 0.1)",
              sl_type_name(p.type), r_q * 8.0, r_down * sqrt(192.0), r_norm);
        gguf_close(f);

        /* same bytes whatever the thread count; another seed changes them */
        char path2[512];
        tmp_path(path2, sizeof(path2), "synth2.gguf");
        p.n_threads = 3;
        CHECK(sl_synth_write(&p, path2, &err) == SL_OK, "synth with 3 threads");
        size_t n1 = 0, n2 = 0;
        uint8_t *b1 = test_read_file(path, &n1), *b2 = test_read_file(path2, &n2);
        CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "synth %s: 1 and 3 threads give identical files (%zu bytes)",
              sl_type_name(p.type), n1);
        free(b2);
        p.seed = 8;
        sl_synth_write(&p, path2, &err);
        b2 = test_read_file(path2, &n2);
        CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1), "synth: another seed gives other bytes");
        free(b1);
        free(b2);
        remove(path);
        remove(path2);
    }

    /* tied embeddings, rope_freqs, relu, explicit shape */
    sl_synth_params p = sl_synth_default_params();
    p.tied_embeddings = true;
    p.rope_freqs = true;
    p.act = SL_ACT_RELU;
    p.rope_freq_base = 500000.0f;
    p.n_rot = 8;
    char path[512];
    tmp_path(path, sizeof(path), "synth-tied.gguf");
    sl_error err = {0};
    CHECK(sl_synth_write(&p, path, &err) == SL_OK, "synth tied + rope_freqs + relu (%s)", err.message);
    gguf_file *f = gguf_open(path, &err);
    if (CHECK(f != NULL, "open tied model")) {
        const gguf_tensor_info *rf = gguf_find_tensor(f, "rope_freqs.weight");
        gguf_str s;
        bool ok = !gguf_find_tensor(f, "output.weight") && rf && rf->n_dims == 1 && rf->ne[0] == 4 &&
                  rf->type == SL_TYPE_F32 && kv_u32(f, "llama.rope.dimension_count") == 8 &&
                  gguf_get_str(f, "skipllama.activation", &s) && gguf_str_eq(s, "relu");
        CHECK(ok, "tied: no output.weight; rope_freqs.weight has n_rot/2 = 4 f32; skipllama.activation = relu");
        if (ok) {
            const float *v = rf->data;
            CHECK(v[0] == 1.0f && v[3] > 1.0f && v[3] <= 32.0f, "rope_freqs: 1 at high frequency, >1 at low (%g %g %g %g)",
                  v[0], v[1], v[2], v[3]);
        }
        gguf_close(f);
    }
    remove(path);

    /* presets: the real models' parameter counts */
    sl_synth_params q = sl_synth_default_params();
    CHECK(sl_synth_preset("tinyllama-1.1b", &q) && sl_synth_n_params(&q) == 1100048384LL,
          "tinyllama-1.1b: %lld parameters (TinyLlama: 1100048384)", (long long)sl_synth_n_params(&q));
    CHECK(sl_synth_preset("llama-3.2-1b", &q) && q.tied_embeddings && q.rope_freqs &&
              sl_synth_n_params(&q) == 1235814400LL + 32,
          "llama-3.2-1b: %lld parameters (1235814400 + 32 rope factors), tied, rope_freqs", (long long)sl_synth_n_params(&q));
    CHECK(sl_synth_preset("llama-2-7b", &q) && sl_synth_n_params(&q) == 6738415616LL,
          "llama-2-7b: %lld parameters (Llama-2-7B: 6738415616)", (long long)sl_synth_n_params(&q));
    CHECK(!sl_synth_preset("no-such-model", &q), "unknown preset refused");
    int n_presets = 0;
    while (sl_synth_preset_name(n_presets)) n_presets++;
    CHECK(n_presets >= 4, "%d presets listed", n_presets);

    /* invalid shapes are refused before any file is created */
    p = sl_synth_default_params();
    p.type = SL_TYPE_Q8_0;
    p.n_ff = 200;
    tmp_path(path, sizeof(path), "synth-bad.gguf");
    CHECK(sl_synth_write(&p, path, &err) == SL_ERR_INVALID_ARG && access(path, F_OK) != 0,
          "n_ff 200 with q8_0 refused, no file (%s)", err.message);
    p = sl_synth_default_params();
    p.n_head_kv = 3;
    CHECK(sl_synth_write(&p, path, &err) == SL_ERR_INVALID_ARG && sl_synth_n_params(&p) == -1,
          "n_head 4 with 3 KV heads refused (%s)", err.message);
    p = sl_synth_default_params();
    p.n_vocab = 100;
    CHECK(sl_synth_write(&p, path, &err) == SL_ERR_INVALID_ARG, "vocab 100 (< 259) refused (%s)", err.message);
}

/* Weight bytes a decoded token reads: every layer matrix and the output projection; token_embd
 * only when it is the (tied) output projection. */
static void test_decode_bytes(void) {
    for (int tied = 0; tied < 2; tied++) {
        sl_synth_params p = sl_synth_default_params();
        p.type = SL_TYPE_Q8_0;
        p.tied_embeddings = tied;
        char path[512];
        tmp_path(path, sizeof(path), "decode-bytes.gguf");
        sl_error err = {0};
        if (!CHECK(sl_synth_write(&p, path, &err) == SL_OK, "synth for decode bytes (%s)", err.message)) continue;
        gguf_file *f = gguf_open(path, &err);
        int64_t want = 0;
        for (uint64_t i = 0; f && i < f->n_tensors; i++) {
            const gguf_tensor_info *t = &f->tensors[i];
            bool is_embd = gguf_str_eq(t->name, "token_embd.weight");
            if (t->n_dims == 2 && (!is_embd || tied)) want += (int64_t)t->nbytes;
        }
        gguf_close(f);
        sl_model_params mp = sl_model_default_params();
        sl_model *m = sl_model_load(path, &mp, &err);
        CHECK(m && sl_model_decode_bytes(m) == want, "%s: sl_model_decode_bytes %lld == matrices read per token %lld (%s)",
              tied ? "tied" : "untied", m ? (long long)sl_model_decode_bytes(m) : -1LL, (long long)want, err.message);
        sl_model_free(m);
        remove(path);
    }
    CHECK(sl_model_decode_bytes(NULL) == 0, "sl_model_decode_bytes(NULL) == 0");
}

/* ---- (4) streaming writer --------------------------------------------------------------------- */

static sl_status rows_source(void *ud, size_t index, int64_t row0, int64_t n_rows, void *dst, sl_error *err) {
    int *fail_at = ud;
    if ((int)index == *fail_at) return sl_set_error(err, SL_ERR_FORMAT, "source failed at tensor %zu", index);
    float *d = dst;
    for (int64_t r = 0; r < n_rows; r++)
        for (int c = 0; c < 8; c++) d[r * 8 + c] = (float)(index * 1000 + (size_t)(row0 + r) * 8 + (size_t)c);
    return SL_OK;
}

static void test_stream_writer(void) {
    char path[512];
    tmp_path(path, sizeof(path), "stream.gguf");
    static const float fixed[4] = {1, 2, 3, 4};
    int fail_at = -1;
    for (int round = 0; round < 2; round++) {
        gguf_writer *w = gguf_writer_init();
        int64_t ne_a[2] = {8, 1000}, ne_b[1] = {4}, ne_c[2] = {8, 3};
        gguf_writer_set_u32(w, "test.n", 3);
        gguf_writer_add_tensor(w, "a", SL_TYPE_F32, 2, ne_a, NULL);
        gguf_writer_add_tensor(w, "b", SL_TYPE_F32, 1, ne_b, fixed);
        gguf_writer_add_tensor(w, "c", SL_TYPE_F32, 2, ne_c, NULL);
        sl_error err = {0};
        /* a 1000-byte chunk forces many calls per tensor */
        sl_status st = gguf_writer_write_stream(w, path, rows_source, &fail_at, 1000, &err);
        gguf_writer_free(w);
        if (round == 0) {
            gguf_file *f = st == SL_OK ? gguf_open(path, &err) : NULL;
            bool ok = f && f->n_tensors == 3;
            if (ok) {
                const float *a = gguf_find_tensor(f, "a")->data, *b = gguf_find_tensor(f, "b")->data,
                            *c = gguf_find_tensor(f, "c")->data;
                for (int i = 0; ok && i < 8000; i++) ok = a[i] == (float)i;
                ok = ok && !memcmp(b, fixed, sizeof(fixed));
                for (int i = 0; ok && i < 24; i++) ok = c[i] == (float)(2000 + i);
            }
            CHECK(ok, "stream writer: rows from the source in order, fixed tensors as given (%s)", err.message);
            gguf_close(f);
            remove(path);
            fail_at = 2;
        } else {
            CHECK(st == SL_ERR_FORMAT && access(path, F_OK) != 0 && strstr(err.message, "source failed"),
                  "stream writer: a source error is passed on and no file appears (%s)", err.message);
        }
    }
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/skipllama-test-convert-%d", t && *t ? t : "/tmp", (int)getpid());
    if (mkdir(tmpdir, 0700) != 0) return 1;
    test_round_trips();
    test_quantize_matches_llama_cpp();
    test_synth();
    test_decode_bytes();
    test_stream_writer();
    if (rmdir(tmpdir) != 0) printf("# could not remove %s (files left behind)\n", tmpdir);
    return test_summary();
}
