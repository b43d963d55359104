/*
 * test_skip.c — the skip model: profiles, calibration, sparse decoding and perplexity.
 *  - An exact predictor (rank = H, A = identity, B = gate weights, rule score > 0) selects
 *    exactly the neurons with gate > 0: recall = precision = 1; on the ReLU model, whose
 *    neurons with gate <= 0 contribute nothing, the sparse logits equal the dense ones.
 *  - Sparsity 0 (CATS threshold 0, or top-k with k = n_ff) equals dense.
 *  - CATS calibration reaches its target sparsity on the calibration text.
 *  - Profiles round-trip through a file; a profile for another model is refused.
 *  - Dense perplexity of the fixture eval text reproduces the reference to 3 significant digits.
 *  - Every architecture (tests/data/arch: GELU gates, Phi-3's fused gate|up views, windows,
 *    post-norms around the MLP): CATS sparsity 0 equals dense, and a 50% calibration reaches
 *    its target on the calibration text.
 *  - Quantized predictors (Q8_0, Q4_0; Q4_0 read in the model's 4-row interleaved layout) score
 *    as their float twins (the same dequantized values) up to the activation's Q8_0 rounding, and
 *    round-trip through a file; a clone shares them and holds its own sparsity.
 *  - Batches on the sparse path (several tokens, each with its own neurons): through the union of
 *    the batch (small unions) or the dense products with each token's neurons (large ones), the
 *    logits equal one-token-at-a-time sparse decoding; the union sizes are counted.
 *  - Three sequences decoding in one pass per step (sl_eval_batch, a server's slots) take that
 *    batch path as decoding tokens (not as a dense prompt chunk) and equal each sequence alone.
 *  - The same on a model loaded with its bundles (sl_model_params.bundled, the layout the dense
 *    path then reads too): sparsity 0 equals dense.
 */
#include "kernels/kernels.h"
#include "model/context.h"
#include "sparse/profile.h"
#include "format/quant.h"
#include "skipllama.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* sparse path vs dense, same neurons computed: only summation order (and the transposed down
 * layout) differs */
#define TOL_SPARSE_EQ_DENSE 1e-4

static const int32_t prompt[] = {1, 985, 369, 262, 1108, 271, 659, 1961, 1966, 1970, 1087, 13, 1969, 286, 504, 1963};
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(prompt[0])))

static void eval_logits(sl_model *m, const sl_profile *p, bool sparse_prefill, bool one_by_one, float *out, sl_context **keep) {
    sl_error err;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 64;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    if (p) CHECK(sl_context_set_profile(ctx, p, sparse_prefill, &err) == SL_OK, "attach profile (%s)", err.message);
    sl_context_track_recall(ctx, true);
    const int V = sl_model_get_config(m)->n_vocab;
    int32_t ids[N_PROMPT]; /* the prompt in this model's vocabulary (k256 has 288 ids) */
    for (int i = 0; i < N_PROMPT; i++) ids[i] = prompt[i] % V;
    bool ok = true;
    if (one_by_one) {
        for (int i = 0; i < N_PROMPT; i++) ok = ok && sl_eval(ctx, ids + i, 1, out + (size_t)i * V, false, &err) == SL_OK;
    } else {
        ok = sl_eval(ctx, ids, N_PROMPT, out, true, &err) == SL_OK;
    }
    if (!ok) CHECK(false, "eval %d tokens: %s", N_PROMPT, err.message);
    if (keep) *keep = ctx;
    else sl_context_free(ctx);
}

/* rank = H predictor with A = I and B = dequantized gate: score == gate pre-activation. */
static sl_profile *exact_profile(sl_model *m) {
    sl_error err;
    const sl_model_config *c = sl_model_get_config(m);
    const int H = c->n_embd, I = c->n_ff;
    sl_profile *p = sl_profile_init(m, &err);
    float *A = calloc((size_t)H * H, sizeof(float)), *B = malloc((size_t)I * H * sizeof(float));
    for (int i = 0; i < H; i++) A[(size_t)i * H + i] = 1.0f;
    for (int l = 0; l < c->n_layer; l++) {
        const sl_weight *g = &m->layers[l].ffn_gate;
        for (int i = 0; i < I; i++) sl_dequantize_row_ref(g->type, (const uint8_t *)g->data + (size_t)i * g->row_bytes, B + (size_t)i * H, H);
        CHECK(sl_profile_set_predictor(p, l, H, SL_TYPE_F32, A, B, &err) == SL_OK, "layer %d: set exact predictor", l);
        sl_profile_layer info = {.rule = SL_RULE_PRED_THRESHOLD, .threshold = 0.0f, .target_sparsity = 0.5f};
        CHECK(sl_profile_set_layer(p, l, &info, &err) == SL_OK, "layer %d: rule score > 0", l);
    }
    free(A);
    free(B);
    return p;
}

static void test_exact_predictor(const char *name) {
    char path[128];
    snprintf(path, sizeof(path), "tests/data/%s.gguf", name);
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    if (!CHECK(m != NULL, "load %s", name)) return;
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab;
    float *dense = malloc(N_PROMPT * V * sizeof(float)), *sparse = malloc(N_PROMPT * V * sizeof(float));
    eval_logits(m, NULL, false, false, dense, NULL);
    sl_profile *p = exact_profile(m);
    sl_context *ctx;
    eval_logits(m, p, true, false, sparse, &ctx);
    for (int l = 0; l < c->n_layer; l++) {
        sl_layer_stats st;
        sl_context_get_layer_stats(ctx, l, &st, &err);
        CHECK(st.n_sparse_tokens == N_PROMPT && st.false_pos == 0 && st.false_neg == 0 && st.true_pos == st.n_active,
              "%s layer %d: exact predictor reproduces the gate > 0 mask (tp %lld, fp %lld, fn %lld, density %.3f)", name, l,
              (long long)st.true_pos, (long long)st.false_pos, (long long)st.false_neg, (double)st.n_active / (double)st.n_neurons);
    }
    sl_context_free(ctx);
    if (c->act == SL_ACT_RELU) {
        CHECK_CLOSE(sparse, dense, N_PROMPT * V, TOL_SPARSE_EQ_DENSE, "relu model: exact-mask sparse logits == dense (prefill)");
        eval_logits(m, p, false, true, sparse, NULL);
        CHECK_CLOSE(sparse, dense, N_PROMPT * V, TOL_SPARSE_EQ_DENSE, "relu model: exact-mask sparse decode == dense");
    } else {
        /* SiLU: the skipped neurons (gate <= 0) still contribute silu(g) * up, small but many:
         * the logits must move (the path is really sparse); how much is measured by ppl */
        double d = test_maxdiff(sparse, dense, N_PROMPT * V);
        CHECK(d > 1e-3, "silu model: sign-mask sparse logits differ from dense (maxdiff %.3g): the skipped SiLU tails matter", d);
    }
    /* the profile survives a file round trip */
    char tmp[] = "/tmp/skipllama-prof-XXXXXX";
    close(mkstemp(tmp));
    CHECK(sl_profile_save(p, tmp, &err) == SL_OK, "save profile");
    sl_profile *q = sl_profile_load(tmp, m, &err);
    if (CHECK(q != NULL, "load saved profile (%s)", q ? "ok" : err.message)) {
        float *again = malloc(N_PROMPT * V * sizeof(float));
        float *before = malloc(N_PROMPT * V * sizeof(float));
        eval_logits(m, p, true, false, before, NULL);
        eval_logits(m, q, true, false, again, NULL);
        CHECK(test_maxdiff(before, again, N_PROMPT * V) == 0.0, "loaded profile gives bit-identical logits");
        sl_profile_layer a, b;
        sl_profile_get_layer(p, 2, &a, &err);
        sl_profile_get_layer(q, 2, &b, &err);
        CHECK(a.rule == b.rule && a.threshold == b.threshold && a.rank == b.rank && b.rank == c->n_embd, "layer info round trip");
        free(again);
        free(before);
        sl_profile_free(q);
    }
    remove(tmp);
    sl_profile_free(p);
    free(dense);
    free(sparse);
    sl_model_free(m);
}

static void test_sparsity_zero_and_calibration(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    sl_model *other = sl_model_load("tests/data/tiny-relu.gguf", NULL, &err);
    if (!CHECK(m && other, "load models")) return;
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab;
    float *dense = malloc(N_PROMPT * V * sizeof(float)), *sparse = malloc(N_PROMPT * V * sizeof(float));
    eval_logits(m, NULL, false, false, dense, NULL);

    /* calibration text: the prompt repeated with variations is too small; use tokens of the
     * fixture's own vocabulary range, deterministic */
    int32_t calib[1024];
    test_rng rng = {12345};
    for (int i = 0; i < 1024; i++) calib[i] = i % 256 == 0 ? 1 : 3 + (int32_t)(test_rng_u64(&rng) % 2045);
    sl_calibrate_params cp = sl_calibrate_default_params();
    cp.sparsity = 0.0f;
    cp.n_ctx = 256;
    sl_profile *p0 = NULL;
    CHECK(sl_calibrate(m, calib, 1024, &cp, &p0, &err) == SL_OK, "calibrate sparsity 0 (%s)", err.message);
    if (p0) {
        eval_logits(m, p0, true, false, sparse, NULL);
        CHECK_CLOSE(sparse, dense, N_PROMPT * V, TOL_SPARSE_EQ_DENSE, "CATS sparsity 0 == dense");
        eval_logits(m, p0, false, true, sparse, NULL);
        CHECK_CLOSE(sparse, dense, N_PROMPT * V, TOL_SPARSE_EQ_DENSE, "CATS sparsity 0 decode == dense");
    }
    /* calibrated sparsity is reached on the calibration text itself */
    for (int k = 0; k < 3; k++) {
        float target = (float[]){0.3f, 0.5f, 0.9f}[k];
        cp.sparsity = target;
        sl_profile *p = NULL;
        sl_calibrate(m, calib, 1024, &cp, &p, &err);
        if (!p) continue;
        sl_context_params xp = sl_context_default_params();
        xp.n_ctx = 256;
        sl_context *ctx = sl_context_init(m, &xp, &err);
        sl_context_set_profile(ctx, p, true, &err);
        for (int w = 0; w < 4; w++) {
            sl_context_reset(ctx);
            sl_eval(ctx, calib + w * 256, 256, NULL, false, &err);
        }
        for (int l = 0; l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            double achieved = 1.0 - (double)st.n_active / (double)st.n_neurons;
            /* layer 0 sees exactly the calibration inputs; later layers see inputs already changed
             * by the sparse layers before them, so their achieved sparsity drifts a little */
            const double tol = l == 0 ? 2e-3 : 3.5e-2;
            CHECK(fabs(achieved - target) < tol, "CATS target %.1f layer %d: achieved %.4f on the calibration text (tol %.3g)", target, l,
                  achieved, tol);
        }
        sl_context_free(ctx);
        /* a profile for another model is refused */
        char tmp[] = "/tmp/skipllama-prof-XXXXXX";
        close(mkstemp(tmp));
        sl_profile_save(p, tmp, &err);
        sl_profile *wrong = sl_profile_load(tmp, other, &err);
        CHECK(wrong == NULL && err.code == SL_ERR_INVALID_ARG, "profile for tiny-silu refused on tiny-relu: %s", err.message);
        sl_profile *right = sl_profile_load(tmp, m, &err);
        CHECK(right != NULL, "and accepted on tiny-silu");
        /* --sparsity override from the stored quantiles */
        if (right) {
            CHECK(sl_profile_set_sparsity(right, 0.7f, &err) == SL_OK, "override sparsity to 0.7");
            sl_profile_layer info;
            sl_profile_get_layer(right, 1, &info, &err);
            CHECK(fabsf(info.threshold - sl_profile_cats_threshold(right, 1, 0.7f)) == 0 && info.target_sparsity == 0.7f,
                  "override sets thresholds from the quantile table (%.4g)", (double)info.threshold);
        }
        sl_profile_free(right);
        remove(tmp);
        sl_profile_free(p);
    }
    /* top-k with k = n_ff is dense; k = n_ff/2 keeps exactly half */
    sl_profile *pk = exact_profile(m);
    for (int l = 0; l < c->n_layer; l++) {
        sl_profile_layer info = {.rule = SL_RULE_PRED_TOPK, .topk = c->n_ff};
        sl_profile_set_layer(pk, l, &info, &err);
    }
    eval_logits(m, pk, true, false, sparse, NULL);
    CHECK_CLOSE(sparse, dense, N_PROMPT * V, TOL_SPARSE_EQ_DENSE, "top-k with k = n_ff == dense");
    sl_context *ctx;
    for (int l = 0; l < c->n_layer; l++) {
        sl_profile_layer info = {.rule = SL_RULE_PRED_TOPK, .topk = c->n_ff / 2};
        sl_profile_set_layer(pk, l, &info, &err);
    }
    eval_logits(m, pk, true, false, sparse, &ctx);
    sl_layer_stats st;
    sl_context_get_layer_stats(ctx, 0, &st, &err);
    CHECK(st.n_active == (int64_t)N_PROMPT * c->n_ff / 2, "top-k keeps exactly k per token (%lld)", (long long)st.n_active);
    sl_context_free(ctx);
    /* statistical top-k keeps about k (scores are roughly normal) */
    for (int l = 0; l < c->n_layer; l++) {
        sl_profile_layer info = {.rule = SL_RULE_PRED_STAT_TOPK, .topk = c->n_ff / 4};
        sl_profile_set_layer(pk, l, &info, &err);
    }
    eval_logits(m, pk, true, false, sparse, &ctx);
    sl_context_get_layer_stats(ctx, 1, &st, &err);
    double dens = (double)st.n_active / (double)st.n_neurons;
    CHECK(dens > 0.15 && dens < 0.35, "stat-top-k with k = n_ff/4 keeps ~25%% (%.3f)", dens);
    sl_context_free(ctx);
    sl_profile_layer bad = {.rule = SL_RULE_PRED_TOPK, .topk = 0};
    CHECK(sl_profile_set_layer(pk, 0, &bad, &err) == SL_ERR_INVALID_ARG, "top-k 0 refused: %s", err.message);
    sl_profile_free(pk);
    sl_profile *nop = sl_profile_init(m, &err);
    sl_profile_layer needs_pred = {.rule = SL_RULE_PRED_THRESHOLD};
    CHECK(sl_profile_set_layer(nop, 0, &needs_pred, &err) == SL_ERR_INVALID_ARG, "predictor rule without predictor refused: %s",
          err.message);
    sl_context_params xp = sl_context_default_params();
    sl_context *octx = sl_context_init(other, &xp, &err);
    CHECK(sl_context_set_profile(octx, nop, false, &err) == SL_ERR_INVALID_ARG, "attaching another model's profile refused");
    sl_context_free(octx);
    sl_profile_free(nop);
    sl_profile_free(p0);
    free(dense);
    free(sparse);
    sl_model_free(m);
    sl_model_free(other);
}

static void test_perplexity(const char *name) {
    char path[128];
    size_t size;
    snprintf(path, sizeof(path), "tests/data/%s.json", name);
    char *json = test_read_file(path, &size);
    double ref = test_json_number(json, "eval_ppl"), ref_scored = test_json_number(json, "eval_scored_tokens");
    snprintf(path, sizeof(path), "tests/data/%s.gguf", name);
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    char *text = test_read_file("tests/data/eval.txt", &size);
    if (!CHECK(m && text && json, "%s: model, eval text and reference", name)) return;
    int32_t *ids = NULL, n = 0;
    CHECK(sl_tokenize(sl_model_get_vocab(m), text, size, false, false, &ids, &n, &err) == SL_OK, "tokenize eval.txt (%d tokens)", n);
    CHECK(n == (int32_t)test_json_number(json, "eval_tokens"), "%s: %d tokens == reference %.0f", name, n,
          test_json_number(json, "eval_tokens"));
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    cp.n_batch = 256;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    sl_ppl_result r;
    int32_t use = n;
    if (UNDER_ASAN) use = 256 * 8; /* a full run takes minutes under the sanitizer */
    CHECK(sl_perplexity(ctx, ids, use, 256, NULL, NULL, &r, &err) == SL_OK, "perplexity ran (%s)", err.message);
    if (!UNDER_ASAN) {
        CHECK(r.n_scored == (int64_t)ref_scored, "%s: scored %lld tokens == reference %.0f", name, (long long)r.n_scored, ref_scored);
        CHECK(fabs(r.ppl - ref) / ref < 5e-4, "%s: perplexity %.4f == reference %.4f to 3 significant digits", name, r.ppl, ref);
    } else {
        printf("# sanitizer build: perplexity on the first %d tokens only (%.3f), reference check skipped\n", use, r.ppl);
        CHECK(r.ppl > 1 && r.ppl < 2048, "perplexity finite and below the vocabulary size");
    }
    sl_free_tokens(ids);
    sl_context_free(ctx);
    sl_model_free(m);
    free(text);
    free(json);
}

/* The skip model on each architecture's fixture. Sparsity 0 computes every neuron, through the
 * bundles: F32 equals dense to summation order (measured <= 6e-5 on the logits); Q4_0/Q8_0
 * bundles round each block's down coefficients to int8 (sparse_mlp.h; ~2% of the MLP output),
 * which moves these fixtures' logits by 0.054-0.076, as much as it moves the plain llama
 * tiny-silu-q4_0's (0.105): TOL_SPARSE_EQ_DENSE_QUANT. */
#define TOL_SPARSE_EQ_DENSE_QUANT 0.15
static void test_architectures(void) {
    static const struct {
        const char *name;
        double tol;
    } fx[] = {{"llama-gqa-yarn", TOL_SPARSE_EQ_DENSE},  {"qwen2-bias", TOL_SPARSE_EQ_DENSE}, {"qwen3-hd32", TOL_SPARSE_EQ_DENSE},
              {"phi3-partial", TOL_SPARSE_EQ_DENSE},    {"phi3-longrope-q4_0", TOL_SPARSE_EQ_DENSE_QUANT},         {"gemma2-swa", TOL_SPARSE_EQ_DENSE},
              {"gemma3-swa", 6 * TOL_SPARSE_EQ_DENSE /* 6 layers deep; batches through the bundles' float products: 4.6e-4 */},      {"gemma3-global-q4_0", TOL_SPARSE_EQ_DENSE_QUANT},
              {"qwen3-q8_0", TOL_SPARSE_EQ_DENSE_QUANT}};
    for (size_t f = 0; f < sizeof(fx) / sizeof(fx[0]); f++) {
        char path[128];
        snprintf(path, sizeof(path), "tests/data/arch/%s.gguf", fx[f].name);
        sl_error err;
        sl_model *m = sl_model_load(path, NULL, &err);
        if (!CHECK(m != NULL, "%s: load", fx[f].name)) continue;
        const sl_model_config *c = sl_model_get_config(m);
        const int V = c->n_vocab, N = 16, W = 64;
        int32_t ids[16], calib[1024];
        test_rng rng = {99 + f};
        for (int i = 0; i < N; i++) ids[i] = 3 + (int32_t)(test_rng_u64(&rng) % (uint64_t)(V - 3));
        for (int i = 0; i < 1024; i++) calib[i] = 3 + (int32_t)(test_rng_u64(&rng) % (uint64_t)(V - 3));
        float *dense = malloc((size_t)N * V * sizeof(float)), *sparse = malloc((size_t)N * V * sizeof(float));
        sl_calibrate_params cp = sl_calibrate_default_params();
        cp.n_ctx = W;
        for (int k = 0; k < 2; k++) {
            cp.sparsity = k ? 0.5f : 0.0f;
            sl_profile *p = NULL;
            if (!CHECK(sl_calibrate(m, calib, 1024, &cp, &p, &err) == SL_OK, "%s: calibrate %.1f (%s)", fx[f].name, cp.sparsity,
                       p ? "ok" : err.message))
                continue;
            sl_context_params xp = sl_context_default_params();
            xp.n_ctx = W;
            sl_context *ctx = sl_context_init(m, &xp, &err);
            if (k == 0) {
                sl_eval(ctx, ids, N, dense, true, &err);
                for (int pf = 0; pf < 2; pf++) { /* sparse prefill, then sparse decode one token at a time */
                    sl_context_reset(ctx);
                    sl_context_set_profile(ctx, p, pf == 0, &err);
                    if (pf == 0) sl_eval(ctx, ids, N, sparse, true, &err);
                    else
                        for (int i = 0; i < N; i++) sl_eval(ctx, ids + i, 1, sparse + (size_t)i * V, false, &err);
                    char what[128];
                    snprintf(what, sizeof(what), "%s: CATS sparsity 0 (%s) == dense", fx[f].name, pf == 0 ? "sparse prefill" : "decode");
                    CHECK_CLOSE(sparse, dense, (size_t)N * V, fx[f].tol, what);
                }
            } else {
                sl_context_set_profile(ctx, p, true, &err);
                for (int w = 0; w < 1024 / W; w++) {
                    sl_context_reset(ctx);
                    sl_eval(ctx, calib + w * W, W, NULL, false, &err);
                }
                sl_layer_stats st;
                sl_context_get_layer_stats(ctx, 0, &st, &err);
                const double achieved = 1.0 - (double)st.n_active / (double)st.n_neurons;
                CHECK(fabs(achieved - 0.5) < 2e-3, "%s: CATS 0.5, layer 0 achieves %.4f on the calibration text (tol 2e-3)", fx[f].name,
                      achieved);
            }
            sl_context_free(ctx);
            sl_profile_free(p);
        }
        free(dense);
        free(sparse);
        sl_model_free(m);
    }
}

/* A random rank-32 top-k predictor (the same for every layer) in type t, at sparsity s. */
static sl_profile *random_profile(sl_model *m, sl_type t, float s, float *A_out, float *B_out) {
    sl_error err;
    const sl_model_config *c = sl_model_get_config(m);
    const int H = c->n_embd, I = c->n_ff, R = 32;
    sl_profile *p = sl_profile_init(m, &err);
    test_rng r = {31};
    float *A = A_out ? A_out : malloc((size_t)R * H * sizeof(float)), *B = B_out ? B_out : malloc((size_t)I * R * sizeof(float));
    for (int i = 0; i < R * H; i++) A[i] = test_rng_normal(&r) / sqrtf((float)H);
    for (int i = 0; i < I * R; i++) B[i] = test_rng_normal(&r) / sqrtf((float)R);
    for (int l = 0; l < c->n_layer; l++) {
        if (!CHECK(sl_profile_set_predictor(p, l, R, t, A, B, &err) == SL_OK, "layer %d: %s predictor", l, sl_type_name(t))) printf("# %s\n", err.message);
        sl_profile_layer info = {.rule = SL_RULE_PRED_TOPK, .topk = (int32_t)lroundf((1.0f - s) * (float)I), .target_sparsity = s};
        CHECK(sl_profile_set_layer(p, l, &info, &err) == SL_OK, "layer %d: top-k", l);
    }
    if (!A_out) free(A);
    if (!B_out) free(B);
    return p;
}

/* Quantized predictors against float twins holding their dequantized values, on the ReLU model
 * with the exact predictor (B = the gate rows, rule score > 0): the two differ only by the Q8_0
 * rounding of x in the quantized product, which can flip a neuron whose gate is within that
 * rounding of 0 — and such a neuron contributes relu(g) * u ~ 0. Then round trips and clones. */
static void test_quantized_predictors(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-relu.gguf", NULL, &err);
    if (!CHECK(m != NULL, "load tiny-relu")) return;
    const sl_model_config *c = sl_model_get_config(m);
    const int H = c->n_embd, I = c->n_ff;
    const size_t V = (size_t)c->n_vocab;
    static const sl_type ts[] = {SL_TYPE_Q8_0, SL_TYPE_Q4_0};
    float *A = calloc((size_t)H * H, sizeof(float)), *B = malloc((size_t)I * H * sizeof(float));
    float *Aq = malloc((size_t)H * H * sizeof(float)), *Bq = malloc((size_t)I * H * sizeof(float));
    float *lq = malloc(N_PROMPT * V * sizeof(float)), *lf = malloc(N_PROMPT * V * sizeof(float));
    for (int i = 0; i < H; i++) A[(size_t)i * H + i] = 1.0f;
    for (size_t ti = 0; ti < 2; ti++) {
        const sl_type t = ts[ti];
        sl_profile *pq = sl_profile_init(m, &err), *pf = sl_profile_init(m, &err);
        for (int l = 0; l < c->n_layer; l++) {
            const sl_weight *g = &m->layers[l].ffn_gate;
            for (int i = 0; i < I; i++) sl_dequantize_row_ref(g->type, (const uint8_t *)g->data + (size_t)i * g->row_bytes, B + (size_t)i * H, H);
            if (!CHECK(sl_profile_set_predictor(pq, l, H, t, A, B, &err) == SL_OK, "layer %d: %s exact predictor", l, sl_type_name(t)))
                printf("# %s\n", err.message);
            const sl_profile_layer_data *L = &pq->layers[l];
            for (int r = 0; r < H; r++) sl_dequantize_row_ref(t, (const uint8_t *)L->pred_a.data + (size_t)r * L->pred_a.row_bytes, Aq + (size_t)r * H, H);
            for (int i = 0; i < I; i++) sl_dequantize_row_ref(t, (const uint8_t *)L->pred_b.data + (size_t)i * L->pred_b.row_bytes, Bq + (size_t)i * H, H);
            sl_profile_set_predictor(pf, l, H, SL_TYPE_F32, Aq, Bq, &err);
            sl_profile_layer info = {.rule = SL_RULE_PRED_THRESHOLD, .threshold = 0.0f, .target_sparsity = 0.5f};
            sl_profile_set_layer(pq, l, &info, &err);
            sl_profile_set_layer(pf, l, &info, &err);
        }
        CHECK(t != SL_TYPE_Q4_0 || pq->layers[0].pred_a.mm_type == SL_TYPE_Q4_0X4 || !sl_kernels_fast_q4_0x4(),
              "q4_0 predictor read in the model's interleaved layout when the kernels have it");
        eval_logits(m, pq, false, true, lq, NULL);
        eval_logits(m, pf, false, true, lf, NULL);
        const double d = test_maxdiff(lq, lf, N_PROMPT * V);
        const double tq = t == SL_TYPE_Q8_0 ? 1e-2 : 5e-2; /* coarser weights amplify the rounding of x */
        CHECK(d <= tq, "%s predictor == its float twin up to x's Q8_0 rounding (logits maxdiff %.3g <= %.0e)", sl_type_name(t), d, tq);
        /* file round trip, and a clone at another sparsity */
        char tmp[] = "/tmp/skipllama-qpred-XXXXXX";
        close(mkstemp(tmp));
        CHECK(sl_profile_save(pq, tmp, &err) == SL_OK, "save %s predictor profile", sl_type_name(t));
        sl_profile *pl = sl_profile_load(tmp, m, &err);
        if (CHECK(pl != NULL, "load it back (%s)", pl ? "ok" : err.message)) {
            eval_logits(m, pl, false, true, lf, NULL);
            CHECK(test_maxdiff(lq, lf, N_PROMPT * V) == 0.0, "%s predictor: loaded profile gives bit-identical logits", sl_type_name(t));
            sl_profile *cl = sl_profile_clone(pl, &err);
            sl_profile_layer topk = {.rule = SL_RULE_PRED_TOPK, .topk = I / 4, .target_sparsity = 0.75f};
            bool ok = cl != NULL;
            for (int l = 0; ok && l < c->n_layer; l++) ok = sl_profile_set_layer(cl, l, &topk, &err) == SL_OK && sl_profile_set_layer(pq, l, &topk, &err) == SL_OK;
            CHECK(ok, "clone: its own rule");
            eval_logits(m, cl, false, true, lf, NULL);
            eval_logits(m, pq, false, true, lq, NULL);
            CHECK(test_maxdiff(lq, lf, N_PROMPT * V) == 0.0, "%s predictor: a clone with top-k == the original with top-k", sl_type_name(t));
            sl_profile_layer li;
            sl_profile_get_layer(pl, 0, &li, &err);
            CHECK(li.rule == SL_RULE_PRED_THRESHOLD && sl_profile_set_predictor(cl, 0, H, t, A, B, &err) == SL_ERR_INVALID_ARG,
                  "the source keeps its rule; a clone cannot replace the shared predictors");
            sl_profile_free(pl); /* the source first: the clone only borrowed */
            sl_profile_free(cl);
        }
        remove(tmp);
        sl_profile_free(pf);
        sl_profile_free(pq);
    }
    free(A), free(B), free(Aq), free(Bq), free(lq), free(lf);
    sl_model_free(m);
}

/* Batches on the sparse path: the union pass and the dense products with per-token neurons give
 * what one token at a time gives; bundled models too. */
static void test_batches(const char *name, bool bundled) {
    char path[128];
    snprintf(path, sizeof(path), "tests/data/%s.gguf", name);
    sl_error err;
    sl_model_params mp = sl_model_default_params();
    mp.bundled = bundled;
    sl_model *m = sl_model_load(path, &mp, &err);
    if (!CHECK(m != NULL, "load %s", name)) return;
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab;
    /* every path sums the same products: float rows in float, exact quantized columns as the
     * same integers per block column (the union pass, one token, the dense products alike); but
     * the batch's gate/up products come from other kernels than one token's (another float
     * order), and where that moves a value across a Q8_0 rounding boundary of x or h the output
     * jumps by one step (as prefill and decode differ on the dense path): measured 0 to 0.036 */
    const double tol = c->weight_type == SL_TYPE_F32 ? TOL_SPARSE_EQ_DENSE : 0.1;
    float *one = malloc(N_PROMPT * V * sizeof(float)), *batch = malloc(N_PROMPT * V * sizeof(float)), *dense = malloc(N_PROMPT * V * sizeof(float));
    static const float sp[] = {0.97f, 0.5f};
    for (int k = 0; k < 2; k++) {
        sl_profile *p = random_profile(m, SL_TYPE_F32, sp[k], NULL, NULL);
        sl_context *ctx;
        eval_logits(m, p, false, true, one, NULL);
        eval_logits(m, p, true, false, batch, &ctx);
        int64_t nb = 0, nu = 0, nd = 0;
        for (int l = 0; l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            nb += st.n_batches, nu += st.n_union, nd += st.n_batch_dense;
        }
        sl_context_free(ctx);
        const double d = test_maxdiff(batch, one, N_PROMPT * V);
        CHECK(d <= tol && nb == c->n_layer && nu > 0 && (k == 0 ? nd == 0 : nd == c->n_layer),
              "%s%s sparsity %.2f: a %d-token batch (%s, union %.0f of %d neurons per layer) == one token at a time (maxdiff %.3g <= %.2g)", name,
              bundled ? " bundled" : "", (double)sp[k], N_PROMPT, nd ? "dense products, per-token neurons" : "union pass", (double)nu / (double)nb,
              c->n_ff, d, tol);
        sl_profile_free(p);
    }
    /* sparsity 0: every neuron, the same as dense */
    sl_profile *p0 = random_profile(m, SL_TYPE_F32, 0.0f, NULL, NULL);
    eval_logits(m, NULL, false, true, dense, NULL);
    eval_logits(m, p0, false, true, one, NULL);
    const double tol0 = TOL_SPARSE_EQ_DENSE;
    CHECK_CLOSE(one, dense, N_PROMPT * V, tol0, bundled ? "bundled model: top-k sparsity 0 decode == dense" : "top-k sparsity 0 decode == dense");
    sl_profile_free(p0);
    free(one), free(batch), free(dense);
    sl_model_free(m);
}

/* Several sequences decoding together (sl_eval_batch, one token of each per pass, as the server
 * steps its slots) take the sparse path as decoding tokens, not as a prompt chunk: the batch path
 * (union pass, or dense products with per-token neurons) gives each sequence what decoding it
 * alone with the same profile gives. */
static void test_multi_sequence_decode(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!CHECK(m != NULL, "load tiny-silu")) return;
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab;
    enum { NS = 3, STEPS = 8 };
    int32_t toks[NS][STEPS];
    for (int q = 0; q < NS; q++)
        for (int i = 0; i < STEPS; i++) toks[q][i] = prompt[(i * 3 + q * 5) % N_PROMPT];
    float *alone = malloc((size_t)NS * STEPS * V * sizeof(float)), *got = malloc((size_t)NS * STEPS * V * sizeof(float));
    float *row = malloc((size_t)NS * V * sizeof(float));
    static const float sp[] = {0.97f, 0.5f};
    for (int k = 0; k < 2; k++) {
        sl_profile *p = random_profile(m, SL_TYPE_F32, sp[k], NULL, NULL);
        sl_context_params cp = sl_context_default_params();
        cp.n_ctx = 32;
        for (int q = 0; q < NS; q++) {
            sl_context *ctx = sl_context_init(m, &cp, &err);
            sl_context_set_profile(ctx, p, false, &err);
            for (int i = 0; i < STEPS; i++) sl_eval(ctx, &toks[q][i], 1, alone + ((size_t)q * STEPS + i) * V, false, &err);
            sl_context_free(ctx);
        }
        cp.n_seq = NS;
        cp.n_threads = 2;
        sl_context *ctx = sl_context_init(m, &cp, &err);
        bool ok = ctx && sl_context_set_profile(ctx, p, false, &err) == SL_OK;
        for (int i = 0; ok && i < STEPS; i++) {
            sl_batch_token bt[NS];
            for (int q = 0; q < NS; q++) bt[q] = (sl_batch_token){toks[q][i], q, true};
            ok = sl_eval_batch(ctx, bt, NS, row, &err) == SL_OK;
            for (int q = 0; q < NS; q++) memcpy(got + ((size_t)q * STEPS + i) * V, row + (size_t)q * V, V * sizeof(float));
        }
        int64_t nb = 0, nd = 0, ns = 0;
        for (int l = 0; ok && l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            nb += st.n_batches, nd += st.n_batch_dense, ns += st.n_sparse_tokens;
        }
        sl_context_free(ctx);
        const double d = ok ? test_maxdiff(got, alone, (size_t)NS * STEPS * V) : INFINITY;
        CHECK(ok && d <= TOL_SPARSE_EQ_DENSE && nb == (int64_t)c->n_layer * STEPS && ns == (int64_t)c->n_layer * STEPS * NS &&
                  (k == 0 ? nd == 0 : nd == nb),
              "sparsity %.2f: %d sequences decoding in one pass each step (%lld sparse batches, %lld of them dense products) == each "
              "alone (maxdiff %.3g <= %.0e)",
              (double)sp[k], NS, (long long)nb, (long long)nd, d, TOL_SPARSE_EQ_DENSE);
        sl_profile_free(p);
    }
    free(alone), free(got), free(row);
    sl_model_free(m);
}

int main(void) {
    test_quantized_predictors();
    test_batches("tiny-silu", false);
    test_batches("tiny-silu", true);
    test_batches("tiny-silu-q4_0", true);
    test_batches("tiny-silu-q8_0", true);
    test_batches("k256-q4_k_m", true); /* K-quant gate/up rows, down re-rounded to Q8_0 */
    test_multi_sequence_decode();
    test_exact_predictor("tiny-relu");
    test_exact_predictor("tiny-silu");
    test_sparsity_zero_and_calibration();
    test_perplexity("tiny-silu");
    test_perplexity("tiny-relu");
    test_architectures();
    return test_summary();
}
