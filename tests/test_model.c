/*
 * test_model.c — the dense forward pass against the reference outputs in tests/data:
 *  - F32 fixtures (tiny-silu, tiny-relu): logits of every prompt position and the residual stream
 *    after every block equal PyTorch's; greedy continuation equals the reference ids;
 *    one-token-at-a-time decoding equals evaluating the prompt at once; batch sizes and thread
 *    counts do not change the result beyond float reassociation.
 *  - Quantized files (F16, BF16, Q8_0, Q4_0): log-probabilities of llama.cpp's top-20 tokens
 *    at each of 64 positions match llama.cpp's within a per-type tolerance (see TOL_* below).
 */
#include "model/context.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "skipllama.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PyTorch vs us, F32 weights: both compute in f32 with different summation orders. The issue
 * asks for 1e-4 on logits; the residual stream (|x| <= ~2) gets the same bound. */
#define TOL_LOGITS_F32 1e-4
#define TOL_HIDDEN_F32 1e-4
/* Incremental vs batched, and across thread counts / batch sizes: same math, reassociated. */
#define TOL_SAME_MATH 2e-5

static float *read_floats(const char *path, size_t expect) {
    size_t size = 0;
    float *f = test_read_file(path, &size);
    if (!f || size != expect * sizeof(float)) {
        printf("cannot read %s (%zu bytes, expected %zu)\n", path, size, expect * sizeof(float));
        free(f);
        return NULL;
    }
    return f;
}

typedef struct hidden_capture {
    float *buf;  /* [n_layer + 1, n_tokens, n_embd] */
    int n_tokens; /* capacity in tokens */
} hidden_capture;

static void capture(void *ud, int layer, int pos0, int B, const float *x, int n_embd) {
    hidden_capture *h = ud;
    for (int b = 0; b < B; b++)
        if (pos0 + b < h->n_tokens)
            memcpy(h->buf + ((size_t)(layer + 1) * h->n_tokens + pos0 + b) * n_embd, x + (size_t)b * n_embd, n_embd * sizeof(float));
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static void test_f32_fixture(const char *name, bool bundled) {
    char path[256];
    size_t jsize;
    snprintf(path, sizeof(path), "tests/data/%s.json", name);
    char *json = test_read_file(path, &jsize);
    if (!CHECK(json != NULL, "%s: read reference json", name)) return;
    int32_t ids[64], greedy[64];
    int n = test_json_ints(json, "prompt_ids", ids, 64);
    int n_greedy = test_json_ints(json, "greedy_ids", greedy, 64);
    CHECK(n > 1 && n_greedy == 32, "%s: reference has %d prompt ids and %d greedy ids", name, n, n_greedy);

    snprintf(path, sizeof(path), "tests/data/%s.gguf", name);
    sl_error err;
    sl_model_params mp = sl_model_default_params();
    mp.bundled = bundled; /* the MLP from neuron bundles: F32 rows, so the same float math */
    sl_model *m = sl_model_load(path, &mp, &err);
    if (!CHECK(m != NULL && sl_model_dense_bundled(m) == bundled, "%s%s: load (%s)", name, bundled ? " bundled" : "", m ? "ok" : err.message)) return;
    char bname[40];
    snprintf(bname, sizeof(bname), "%s%s", name, bundled ? " (bundled)" : "");
    name = bname;
    const sl_model_config *c = sl_model_get_config(m);
    CHECK(c->n_embd == 128 && c->n_layer == 4 && c->n_head == 8 && c->n_head_kv == 4 && c->n_ff == 384 && c->n_vocab == 2048,
          "%s: config dim %d layers %d heads %d/%d ff %d vocab %d", name, c->n_embd, c->n_layer, c->n_head, c->n_head_kv, c->n_ff,
          c->n_vocab);
    CHECK(c->act == (strstr(name, "relu") ? SL_ACT_RELU : SL_ACT_SILU), "%s: activation %s", name, sl_activation_name(c->act));
    CHECK(c->tied_embeddings, "%s: tied embeddings detected", name);

    const size_t V = (size_t)c->n_vocab, E = (size_t)c->n_embd, L = (size_t)c->n_layer;
    snprintf(path, sizeof(path), "tests/data/%s.logits.f32", name);
    float *ref = read_floats(path, (size_t)n * V);
    snprintf(path, sizeof(path), "tests/data/%s.hidden.f32", name);
    float *ref_hidden = read_floats(path, (L + 1) * (size_t)n * E);
    float *logits = malloc((size_t)n * V * sizeof(float));
    float *logits2 = malloc((size_t)n * V * sizeof(float));
    hidden_capture hc = {calloc((L + 1) * (size_t)n * E, sizeof(float)), n};

    /* whole prompt at once, with the residual stream captured */
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 256;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    CHECK(ctx != NULL, "%s: context", name);
    ctx->hidden_hook = capture;
    ctx->hidden_hook_ud = &hc;
    CHECK(sl_eval(ctx, ids, n, logits, true, &err) == SL_OK, "%s: eval prompt", name);
    ctx->hidden_hook = NULL;
    if (ref) {
        for (int i = 0; i < n; i++) {
            char what[160];
            snprintf(what, sizeof(what), "%s: logits at position %d vs PyTorch", name, i);
            CHECK_CLOSE(logits + i * V, ref + i * V, V, TOL_LOGITS_F32, what);
        }
    }
    if (ref_hidden) {
        for (size_t l = 0; l <= L; l++) {
            char what[160];
            snprintf(what, sizeof(what), "%s: residual stream %s %zu vs PyTorch", name, l ? "after block" : "embeddings", l ? l - 1 : 0);
            CHECK_CLOSE(hc.buf + l * n * E, ref_hidden + l * n * E, (size_t)n * E, TOL_HIDDEN_F32, what);
        }
    }

    /* greedy continuation of 32 tokens, decoding one token at a time */
    int32_t tok = argmax(logits + (size_t)(n - 1) * V, (int)V);
    int match = 0;
    float *row = malloc(V * sizeof(float));
    for (int g = 0; g < n_greedy; g++) {
        if (tok == greedy[g]) match++;
        else printf("  greedy[%d]: got %d, reference %d\n", g, tok, greedy[g]);
        if (sl_eval(ctx, &tok, 1, row, false, &err) != SL_OK) break;
        tok = argmax(row, (int)V);
    }
    CHECK(match == n_greedy, "%s: greedy continuation matches reference (%d/%d)", name, match, n_greedy);

    /* incremental decoding == whole-prompt evaluation */
    sl_context_reset(ctx);
    for (int i = 0; i < n; i++) sl_eval(ctx, ids + i, 1, logits2 + i * V, false, &err);
    CHECK_CLOSE(logits2, logits, (size_t)n * V, TOL_SAME_MATH, "incremental (KV cache) == batched prompt");
    sl_context_free(ctx);

    /* other batch sizes and thread counts, and an f16 KV cache (looser: f16 rounding of K/V) */
    int configs[][2] = {{1, 3}, {2, 4}, {3, 64}, {2, 1}, {5, 1}}; /* 5 threads, 1 token: GQA groups get sliced */
    for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++) {
        cp.n_threads = configs[k][0];
        cp.n_batch = configs[k][1];
        ctx = sl_context_init(m, &cp, &err);
        sl_eval(ctx, ids, n, logits2, true, &err);
        char what[160];
        snprintf(what, sizeof(what), "%s: threads %d, batch %d == threads 1, batch 64", name, configs[k][0], configs[k][1]);
        CHECK_CLOSE(logits2, logits, (size_t)n * V, TOL_SAME_MATH, what);
        sl_context_free(ctx);
    }
    cp.n_threads = 1;
    cp.n_batch = 0;
    cp.kv_f16 = true;
    ctx = sl_context_init(m, &cp, &err);
    sl_eval(ctx, ids, n, logits2, true, &err);
    CHECK_CLOSE(logits2, ref ? ref : logits, (size_t)n * V, 2e-2, "f16 KV cache vs PyTorch (f16 rounding of keys/values)");
    sl_context_free(ctx);

    free(row);
    free(hc.buf);
    free(logits);
    free(logits2);
    free(ref);
    free(ref_hidden);
    free(json);
    sl_model_free(m);
}

/* Compare with llama.cpp's top-20 natural-log probabilities. llama.cpp quantizes activations to
 * Q8_0 before Q8_0/Q4_0 dot products (we do the same) and rounds them to bf16 for BF16 weights
 * (we keep f32), so tolerances differ per type:
 *   F16:  f32 activations on both sides -> only summation order differs: 2e-3
 *   BF16: llama.cpp's bf16 activations vs our f32 -> up to ~0.2 per the fixture notes; measured
 *         here well below that; bound 0.1
 *   Q8_0: same activation quantization as llama.cpp, different summation order and kernels:
 *         measured 0.013; bound 3e-2
 *   Q4_0: same, but coarser weights amplify those differences through 4 layers: measured
 *         0.044; bound 8e-2 (still well under the ~0.2 an f32-activation engine shows)
 * The argmax must agree wherever llama.cpp's top-2 gap exceeds twice the tolerance. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* tol bounds every compared log-prob; median_tol (when >= 0) bounds the median over positions of
 * each position's worst difference, which shows agreement that rare rounding flips hide. */
static void test_oracle_model(const char *model, const char *type, double tol, double median_tol, bool bundled, bool incremental) {
    char path[256];
    size_t size;
    snprintf(path, sizeof(path), "tests/data/%s-%s.oracle.json", model, type);
    char *json = test_read_file(path, &size);
    if (!CHECK(json != NULL, "%s: read oracle", type)) return;
    int32_t ids[128];
    int n = test_json_ints(json, "ids", ids, 128);
    snprintf(path, sizeof(path), "tests/data/%s-%s.gguf", model, type);
    sl_error err;
    sl_model_params mp = sl_model_default_params();
    mp.bundled = bundled;
    sl_model *m = sl_model_load(path, &mp, &err);
    if (!CHECK(m != NULL, "%s: load (%s)", type, m ? "ok" : err.message)) {
        free(json);
        return;
    }
    char tname[64];
    snprintf(tname, sizeof(tname), "%s%s%s", type, bundled ? " bundled" : "", incremental ? " one token at a time" : "");
    type = tname;
    const int V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 128;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    float *logits = malloc((size_t)n * V * sizeof(float));
    bool ok = true;
    if (incremental)
        for (int i = 0; i < n; i++) ok = ok && sl_eval(ctx, ids + i, 1, logits + (size_t)i * V, false, &err) == SL_OK;
    else ok = sl_eval(ctx, ids, n, logits, true, &err) == SL_OK;
    CHECK(ok, "%s: eval %d ids", type, n);
    double worst = 0.0, pos_worst[128] = {0};
    int n_compared = 0, argmax_bad = 0;
    const char *p = test_json_find(json, "positions");
    for (int i = 0; i < n && p; i++) {
        p = test_json_find(p, "top");
        if (!p) break;
        const float *row = logits + (size_t)i * V;
        double mx = row[0], sum = 0.0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
        double lse = mx + log(sum);
        p++; /* past '[' */
        double first_lp = 0, second_lp = 0;
        int first_id = -1;
        for (int k = 0; k < 20; k++) {
            char *end;
            while (*p && *p != '[') p++;
            long id = strtol(p + 1, &end, 10);
            p = end;
            while (*p == ',' || *p == ' ') p++;
            double lp = strtod(p, &end);
            p = end;
            double ours = row[id] - lse;
            double d = fabs(ours - lp);
            if (d > worst) worst = d;
            if (d > pos_worst[i]) pos_worst[i] = d;
            n_compared++;
            if (k == 0) first_lp = lp, first_id = (int)id;
            if (k == 1) second_lp = lp;
        }
        if (first_lp - second_lp > 2 * tol && argmax(row, V) != first_id) argmax_bad++;
    }
    CHECK(n_compared == n * 20, "%s: compared %d top-20 log-probs over %d positions", type, n_compared, n);
    CHECK(worst <= tol, "%s-%s: max |logprob - llama.cpp| = %.4g <= tol %.3g", model, type, worst, tol);
    if (median_tol >= 0 && n > 0) {
        qsort(pos_worst, (size_t)n, sizeof(double), cmp_double);
        CHECK(pos_worst[n / 2] <= median_tol, "%s-%s: median over positions of max |logprob - llama.cpp| = %.3g <= %.3g", model, type,
              pos_worst[n / 2], median_tol);
    }
    CHECK(argmax_bad == 0, "%s: argmax agrees with llama.cpp where its top-2 gap > 2*tol (%d disagreements)", type, argmax_bad);
    free(logits);
    sl_context_free(ctx);
    sl_model_free(m);
    free(json);
}

static void test_oracle(const char *type, double tol) { test_oracle_model("tiny-silu", type, tol, -1, false, false); }

static void test_errors(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!m) return;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 8;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    int32_t bad[2] = {1, 2048};
    float logits[2048];
    CHECK(sl_eval(ctx, bad, 2, logits, false, &err) == SL_ERR_RANGE, "token id 2048 rejected: %s", err.message);
    bad[1] = -1;
    CHECK(sl_eval(ctx, bad, 2, logits, false, &err) == SL_ERR_RANGE, "token id -1 rejected");
    CHECK(sl_context_n_past(ctx) == 0, "failed eval leaves the cache untouched");
    int32_t many[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(sl_eval(ctx, many, 9, logits, false, &err) == SL_ERR_RANGE, "9 tokens in an 8-token context rejected: %s", err.message);
    CHECK(sl_eval(ctx, many, 8, logits, false, &err) == SL_OK, "8 tokens fit");
    CHECK(sl_eval(ctx, many, 1, logits, false, &err) == SL_ERR_RANGE, "9th token rejected: %s", err.message);
    CHECK(sl_eval(ctx, many, 0, logits, false, &err) == SL_ERR_INVALID_ARG, "zero tokens rejected");
    sl_context_free(ctx);
    cp.n_ctx = 1 << 22;
    cp.n_batch = 65536;
    cp.n_threads = 512;
    sl_model_config cfg = *sl_model_get_config(m);
    (void)cfg;
    ctx = sl_context_init(m, &cp, &err);
    /* 4M tokens x 4 layers x 64 x 2 x 4 bytes = 8 GiB of cache: may or may not fit this machine, but
     * either way no crash; a negative size is always refused */
    sl_context_free(ctx);
    cp.n_ctx = -5;
    CHECK(sl_context_init(m, &cp, &err) == NULL && err.code == SL_ERR_INVALID_ARG, "negative n_ctx refused: %s", err.message);
    sl_model_load("tests/data/does-not-exist.gguf", NULL, &err);
    CHECK(err.code == SL_ERR_IO, "missing file: %s", err.message);
    sl_model_params vp = sl_model_default_params();
    sl_model *vm = sl_model_load("tests/data/tiny-silu.gguf", &vp, &err);
    CHECK(vm != NULL, "second model in the same process");
    sl_model_free(vm);
    sl_model_free(m);
}

/* Q4_0 weights repacked at load (Q4_0x4) against the same file computed from the mapping.
 * The repacked layout has its own kernels for decode (B = 1) and, on AVX2, for prefill (B > 1,
 * the 4-row x 4-token tile): their float sums are reassociated, so both are compared within
 * TOL_SAME_MATH (AVX-512's prefill runs one superblock kernel on both layouts: identical). */
#define Q4_FIXTURE_VOCAB 2048

static void eval_q4(bool no_repack, const int32_t *ids, int n, float *prefill, float *decode, bool *repacked) {
    sl_model_params mp = sl_model_default_params();
    mp.no_repack = no_repack;
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu-q4_0.gguf", &mp, &err);
    if (!CHECK(m != NULL, "q4_0 repack=%d: load", !no_repack)) return;
    *repacked = m->repacked != NULL;
    const int V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 64;
    sl_context *ctx = V == Q4_FIXTURE_VOCAB ? sl_context_init(m, &cp, &err) : NULL;
    if (CHECK(ctx && sl_eval(ctx, ids, n, prefill, true, &err) == SL_OK, "q4_0 repack=%d: prefill %d ids", !no_repack, n)) {
        sl_context_reset(ctx);
        bool ok = true;
        for (int i = 0; i < n; i++) ok = ok && sl_eval(ctx, ids + i, 1, decode + (size_t)i * V, true, &err) == SL_OK;
        CHECK(ok, "q4_0 repack=%d: decode %d ids one by one", !no_repack, n);
    }
    sl_context_free(ctx);
    sl_model_free(m);
}

static void test_q4_0_repack(void) {
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)((i * 37 + 11) % 200 + 3);
    const int n = 24, V = Q4_FIXTURE_VOCAB;
    float *pa = calloc((size_t)n * V * 4, sizeof(float)), *da = pa + n * V, *pb = da + n * V, *db = pb + n * V;
    bool ra = false, rb = true;
    eval_q4(false, ids, n, pa, da, &ra);
    eval_q4(true, ids, n, pb, db, &rb);
    CHECK(ra == sl_kernels_fast_q4_0x4() && !rb, "q4_0 weights repacked at load iff the kernels have a Q4_0x4 path (%d, %d)", ra, rb);
    double dp = 0, dd = 0;
    for (int i = 0; i < n * V; i++) {
        dp = fmax(dp, fabs((double)pa[i] - pb[i]));
        dd = fmax(dd, fabs((double)da[i] - db[i]));
    }
    CHECK(dp <= TOL_SAME_MATH, "q4_0 prefill logits: repacked vs file layout maxdiff %.3g <= %.3g", dp, TOL_SAME_MATH);
    CHECK(dd <= TOL_SAME_MATH, "q4_0 decode logits: repacked vs file layout maxdiff %.3g <= %.3g", dd, TOL_SAME_MATH);
    free(pa);
}

int main(void) {
    test_q4_0_repack();
    test_f32_fixture("tiny-silu", false);
    test_f32_fixture("tiny-relu", false);
    test_f32_fixture("tiny-silu", true);
    test_oracle("f16", 2e-3);
    test_oracle("bf16", 1e-1);
    test_oracle("q8_0", 3e-2);
    test_oracle("q4_0", 8e-2);
    /* k256: a 1-layer random-weight llama (dim 256, ffn 384, vocab 288) quantized by llama.cpp's
     * own quantizer into each type and mix (ffn_down's 384-wide rows take llama.cpp's fallback
     * types). Activations are quantized like ggml's vec_dot_type (Q8_0 / Q8_1 / Q8_K), so most
     * positions agree to ~1e-6 (median bound 1e-5); a position or two per file differ by up to
     * ~0.05 where one activation value rounds the other way (llama.cpp's repacked Q4_K / Q4_0
     * kernels quantize activations with their own code): bound 0.1. Q4_1 / Q5_1 (Q8_1
     * activations) differ systematically (median 0.024-0.026, max 0.046; unexplained, see
     * docs/kquants.md): median bound 0.05. Measured values: docs/kquants.md. */
    static const struct { const char *type; double tol, median; } k256[] = {
        {"q4_k_m", 0.1, 1e-5}, {"q5_k_m", 0.1, 1e-5}, {"q3_k_m", 0.1, 1e-5}, {"q2_k", 0.1, 1e-5}, {"q6_k", 0.1, 1e-5},
        {"iq4_xs", 0.1, 1e-5}, {"iq4_nl", 0.1, 1e-5}, {"q4_1", 0.1, 0.05},  {"q5_0", 0.1, 1e-5}, {"q5_1", 0.1, 0.05},
    };
    for (size_t i = 0; i < sizeof(k256) / sizeof(k256[0]); i++) test_oracle_model("k256", k256[i].type, k256[i].tol, k256[i].median, false, false);
    /* the same through the neuron bundles (the layout sparse decoding reads; sparse-speed.md),
     * prefill (matrix products over the bundle rows) and decode (the fused pass), with the same
     * tolerances: gate and up rows keep their values, the down rows are the file's own columns
     * with their scales in a table, and the down sums are the dense path's integer products */
    static const struct { const char *type; double tol; } tb[] = {{"f16", 2e-3}, {"bf16", 1e-1}, {"q8_0", 3e-2}, {"q4_0", 8e-2}};
    for (int inc = 0; inc < 2; inc++)
        for (size_t i = 0; i < sizeof(tb) / sizeof(tb[0]); i++) test_oracle_model("tiny-silu", tb[i].type, tb[i].tol, -1, true, inc);
    /* the other quantized types through the bundles: gate/up rows as in the file, down rows
     * re-rounded to Q8_0 (model/bundle.h), against the same llama.cpp references: the second
     * rounding adds <= max|w| (1/254 + 2^-11) per block of 32 to each down weight */
    for (size_t i = 0; i < sizeof(k256) / sizeof(k256[0]); i++) test_oracle_model("k256", k256[i].type, 0.1, -1, true, i % 2);
    test_errors();
    return test_summary();
}
