/*
 * test_batch_select.c — batch selection (sl_batch_select): how the tokens of several sequences
 * decoding together choose their MLP neurons.
 *  - sl_select_shared: with one token it is that token's own selection (top-k, threshold,
 *    stat-top-k, CATS on SiLU, awkward sizes); with four it returns k distinct neurons in
 *    increasing order whose combined score (the sum over tokens of max(0, z) + 0.001 z, z the
 *    standardised rule quantity; computed here in double) is at least that of every neuron left out, up to float
 *    rounding.
 *  - sl_profile_set_batch_select: refuses unknown modes and limits outside (0, 1], defaults the
 *    limit to 0.6, and clones copy the setting.
 *  - On tiny-silu (trained weights) with four sequences decoding in one pass per step:
 *    `shared` at sparsity 0 equals the dense model; `shared` on a lone sequence equals per-token
 *    selection bit for bit (a lone token never takes the batch path); four copies of one sequence
 *    under `shared` equal that sequence decoding alone (identical tokens' shared set is their own);
 *    at 50% the shared path is taken in every layer and step, computes k neurons per token, and
 *    reports an own-mask recall in (0.5, 1); `auto` with limit 1 is `union` and with a tiny limit
 *    is `shared`, bit for bit; `auto` with cap 0.6 reads 0.6 n_ff neurons per pass and keeps more
 *    of each token's own selection than `shared`.
 * Accuracy (perplexity of shared vs per-token selection) is measured, not asserted: see
 * bench/batch_select.c and docs/server.md.
 */
#include "kernels/activation.h"
#include "sparse/select.h"
#include "skipllama.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sparse path vs dense with the same neurons: only the summation order differs (test_skip.c) */
#define TOL_SPARSE_EQ_DENSE 1e-4
/* the combined score in float (sums of four standardised values of magnitude <= ~10) against
 * the double reference: a few float ulps */
#define TOL_COMBINED 1e-4

static void test_select_shared(void) {
    test_rng r = {5};
    static const int32_t Is[] = {1, 3, 7, 17, 33, 129, 384};
    static const sl_skip_rule rules[] = {SL_RULE_PRED_TOPK, SL_RULE_PRED_THRESHOLD, SL_RULE_PRED_STAT_TOPK, SL_RULE_CATS};
    int bad1 = 0, n1 = 0, bad4 = 0, n4 = 0;
    double worst = 0.0;
    for (size_t ii = 0; ii < sizeof(Is) / sizeof(Is[0]); ii++) {
        const int32_t I = Is[ii];
        enum { B = 4 };
        float *s = malloc((size_t)B * I * sizeof(float)), *comb = malloc((size_t)I * sizeof(float)), *tmp = malloc((size_t)I * 4);
        int32_t *own = malloc((size_t)I * sizeof(int32_t)), *sh = malloc((size_t)I * sizeof(int32_t));
        double *ref = malloc((size_t)I * sizeof(double));
        char *in = malloc((size_t)I);
        for (size_t ri = 0; ri < sizeof(rules) / sizeof(rules[0]); ri++) {
            for (int rep = 0; rep < 3; rep++) {
                for (int32_t i = 0; i < B * I; i++) s[i] = 2.0f * test_rng_normal(&r);
                sl_profile_layer P = {.rule = rules[ri], .topk = I / 2 + rep, .threshold = rules[ri] == SL_RULE_CATS ? 0.3f : 0.5f};
                if (P.topk > I) P.topk = I;
                const float z = 0.3f; /* stat-top-k: keep scores above mean + 0.3 sd */
                /* one token: its own selection */
                const int32_t n_own = sl_select_active(&P, z, NULL, s, I, SL_ACT_SILU, tmp, own);
                const int32_t n_sh = sl_select_shared(&P, s, 1, I, n_own, SL_ACT_SILU, comb, tmp, sh);
                n1++;
                if (n_sh != n_own || memcmp(sh, own, (size_t)n_own * sizeof(int32_t))) {
                    if (bad1++ < 3) printf("# %s I=%d: shared of one token (%d) != its own selection (%d)\n", sl_skip_rule_name(P.rule), I, n_sh, n_own);
                }
                /* four tokens: the k largest combined scores */
                const int32_t k = (I * (rep + 1)) / 4;
                const int32_t n = sl_select_shared(&P, s, B, I, k, SL_ACT_SILU, comb, tmp, sh);
                memset(ref, 0, (size_t)I * sizeof(double));
                for (int b = 0; b < B; b++) {
                    double v[400], sum = 0.0, sq = 0.0;
                    for (int32_t i = 0; i < I; i++) {
                        const float x = s[(size_t)b * I + i];
                        v[i] = P.rule == SL_RULE_CATS ? fabs((double)sl_activate(SL_ACT_SILU, x)) : x;
                        sum += v[i];
                    }
                    for (int32_t i = 0; i < I; i++) sq += (v[i] - sum / I) * (v[i] - sum / I);
                    if (sq > 0)
                        for (int32_t i = 0; i < I; i++) ref[i] += fmax(0.0, (v[i] - sum / I) / sqrt(sq / I)) + 1e-3 * (v[i] - sum / I) / sqrt(sq / I);
                }
                memset(in, 0, (size_t)I);
                bool ok = n == k;
                for (int32_t j = 0; j < n && ok; j++) {
                    ok = sh[j] >= 0 && sh[j] < I && (j == 0 || sh[j] > sh[j - 1]);
                    if (ok) in[sh[j]] = 1;
                }
                double lo_in = INFINITY, hi_out = -INFINITY;
                for (int32_t i = 0; i < I; i++) {
                    if (in[i] && ref[i] < lo_in) lo_in = ref[i];
                    if (!in[i] && ref[i] > hi_out) hi_out = ref[i];
                }
                const double gap = n > 0 && n < I ? hi_out - lo_in : 0.0; /* > 0: a neuron left out scores higher */
                if (gap > worst) worst = gap;
                ok = ok && gap <= TOL_COMBINED;
                n4++;
                if (!ok && bad4++ < 3) printf("# %s I=%d k=%d: got %d, left-out score above a kept one by %.3g\n", sl_skip_rule_name(P.rule), I, k, n, gap);
            }
        }
        free(s), free(comb), free(tmp), free(own), free(sh), free(ref), free(in);
    }
    CHECK(bad1 == 0, "shared set of one token == its own selection (%d cases: top-k, threshold, stat-top-k, CATS; %d differ)", n1, bad1);
    CHECK(bad4 == 0, "shared set of four tokens: k distinct ascending neurons of largest combined score (%d cases; worst "
                     "left-out-over-kept %.3g <= %.0e)", n4, worst, TOL_COMBINED);
}

static const int32_t prompt[] = {1, 985, 369, 262, 1108, 271, 659, 1961, 1966, 1970, 1087, 13, 1969, 286, 504, 1963};
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(prompt[0])))
enum { NS = 4, STEPS = 8 };

/* A random rank-32 top-k predictor at sparsity s (the same for every layer). */
static sl_profile *random_profile(sl_model *m, float s) {
    sl_error err;
    const sl_model_config *c = sl_model_get_config(m);
    const int H = c->n_embd, I = c->n_ff, R = 32;
    sl_profile *p = sl_profile_init(m, &err);
    test_rng r = {31};
    float *A = malloc((size_t)R * H * sizeof(float)), *Bm = malloc((size_t)I * R * sizeof(float));
    for (int i = 0; i < R * H; i++) A[i] = test_rng_normal(&r) / sqrtf((float)H);
    for (int i = 0; i < I * R; i++) Bm[i] = test_rng_normal(&r) / sqrtf((float)R);
    for (int l = 0; l < c->n_layer; l++) {
        sl_profile_set_predictor(p, l, R, SL_TYPE_F32, A, Bm, &err);
        sl_profile_layer info = {.rule = SL_RULE_PRED_TOPK, .topk = (int32_t)lroundf((1.0f - s) * (float)I), .target_sparsity = s};
        CHECK(sl_profile_set_layer(p, l, &info, &err) == SL_OK, "layer %d: top-k", l);
    }
    free(A), free(Bm);
    return p;
}

typedef struct run_stats {
    int64_t batches, shared, active, neurons, own_kept, own_total, union_own, read;
} run_stats;

/* Decode STEPS tokens of ns sequences together (one sl_eval_batch per step; ns = 1: sl_eval):
 * toks[q][i] -> out[(q * STEPS + i) * V]. p may be NULL (dense). */
static bool decode(sl_model *m, const sl_profile *p, int ns, int32_t toks[NS][STEPS], float *out, run_stats *rs) {
    sl_error err;
    const size_t V = (size_t)sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 32;
    cp.n_seq = ns;
    cp.n_threads = 2;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    bool ok = ctx && (!p || sl_context_set_profile(ctx, p, false, &err) == SL_OK);
    float *row = malloc((size_t)NS * V * sizeof(float));
    for (int i = 0; ok && i < STEPS; i++) {
        if (ns == 1) {
            ok = sl_eval(ctx, &toks[0][i], 1, out + (size_t)i * V, false, &err) == SL_OK;
            continue;
        }
        sl_batch_token bt[NS];
        for (int q = 0; q < ns; q++) bt[q] = (sl_batch_token){toks[q][i], q, true};
        ok = sl_eval_batch(ctx, bt, ns, row, &err) == SL_OK;
        for (int q = 0; q < ns; q++) memcpy(out + ((size_t)q * STEPS + i) * V, row + (size_t)q * V, V * sizeof(float));
    }
    if (!ok) printf("# decode: %s\n", err.message);
    memset(rs, 0, sizeof(*rs));
    for (int l = 0; ok && l < sl_model_get_config(m)->n_layer; l++) {
        sl_layer_stats st;
        sl_context_get_layer_stats(ctx, l, &st, &err);
        rs->batches += st.n_batches, rs->shared += st.n_batch_shared, rs->active += st.n_active, rs->neurons += st.n_neurons;
        rs->own_kept += st.own_kept, rs->own_total += st.own_total, rs->union_own += st.n_union_own, rs->read += st.n_union;
    }
    free(row);
    sl_context_free(ctx);
    return ok;
}

static void test_profile_setting(sl_model *m) {
    sl_error err;
    sl_profile *p = sl_profile_init(m, &err);
    float u = 0;
    const sl_batch_select mode = sl_profile_get_batch_select(p, &u);
    CHECK(mode == SL_BATCH_UNION && u == 0.6f, "a new profile: union, limit 0.6 (got %s, %g)", sl_batch_select_name(mode), (double)u);
    CHECK(sl_profile_set_batch_select(p, (sl_batch_select)7, 0, &err) == SL_ERR_INVALID_ARG, "unknown mode refused");
    CHECK(sl_profile_set_batch_select(p, SL_BATCH_AUTO, 1.5f, &err) == SL_ERR_INVALID_ARG &&
              sl_profile_set_batch_select(p, SL_BATCH_AUTO, -0.1f, &err) == SL_ERR_INVALID_ARG &&
              sl_profile_set_batch_select(p, SL_BATCH_AUTO, NAN, &err) == SL_ERR_INVALID_ARG,
          "limits outside (0, 1] refused (%s)", err.message);
    CHECK(sl_profile_set_batch_select(p, SL_BATCH_AUTO, 0.6f, &err) == SL_OK, "auto 0.6 set");
    sl_profile *cl = sl_profile_clone(p, &err);
    CHECK(cl && sl_profile_get_batch_select(cl, &u) == SL_BATCH_AUTO && u == 0.6f, "a clone keeps auto 0.6");
    CHECK(!strcmp(sl_batch_select_name(SL_BATCH_SHARED), "shared") && !strcmp(sl_batch_select_name(SL_BATCH_DENSE), "dense") && !sl_batch_select_name((sl_batch_select)4), "names");
    sl_profile_free(p);
    sl_profile_free(cl);
}

static void test_model(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!CHECK(m != NULL, "load tiny-silu")) return;
    test_profile_setting(m);
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab, N = (size_t)NS * STEPS * V;
    const int64_t n_pass = (int64_t)c->n_layer * STEPS;
    int32_t toks[NS][STEPS], same[NS][STEPS];
    for (int q = 0; q < NS; q++)
        for (int i = 0; i < STEPS; i++) toks[q][i] = prompt[(i * 3 + q * 5) % N_PROMPT], same[q][i] = toks[0][i];
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *d = malloc(N * sizeof(float));
    run_stats rs, rs2;

    /* sparsity 0: the shared set is every neuron, i.e. dense */
    sl_profile *p0 = random_profile(m, 0.0f);
    sl_profile_set_batch_select(p0, SL_BATCH_SHARED, 0, &err);
    bool ok = decode(m, NULL, NS, toks, d, &rs) && decode(m, p0, NS, toks, a, &rs);
    double diff = test_maxdiff(a, d, N);
    CHECK(ok && diff <= TOL_SPARSE_EQ_DENSE && rs.shared == n_pass && rs.own_kept == rs.own_total,
          "shared, sparsity 0, %d sequences together == dense (maxdiff %.3g <= %.0e; %lld of %lld passes shared, own recall 1)", NS, diff,
          TOL_SPARSE_EQ_DENSE, (long long)rs.shared, (long long)n_pass);
    sl_profile_free(p0);

    sl_profile *pu = random_profile(m, 0.5f), *ps = random_profile(m, 0.5f);
    sl_profile_set_batch_select(ps, SL_BATCH_SHARED, 0, &err);
    /* a lone sequence: shared == per-token, bit for bit */
    ok = decode(m, pu, 1, toks, a, &rs) && decode(m, ps, 1, toks, b, &rs2);
    diff = test_maxdiff(a, b, STEPS * V);
    CHECK(ok && diff == 0.0 && rs2.shared == 0, "shared, one sequence == per-token selection (maxdiff %.3g, %lld shared passes)", diff,
          (long long)rs2.shared);
    /* four copies of one sequence: their shared set is each one's own */
    ok = decode(m, ps, NS, same, b, &rs2);
    diff = 0.0;
    for (int q = 0; q < NS; q++) {
        const double dq = test_maxdiff(b + (size_t)q * STEPS * V, a, STEPS * V);
        if (dq > diff) diff = dq;
    }
    CHECK(ok && diff <= TOL_SPARSE_EQ_DENSE && rs2.shared == n_pass && rs2.own_kept == rs2.own_total,
          "shared, %d copies of one sequence together == it alone with its own selection (maxdiff %.3g <= %.0e)", NS, diff, TOL_SPARSE_EQ_DENSE);
    /* four different sequences at 50%: one set of k per pass, recall of each own set between k/I and 1 */
    ok = decode(m, pu, NS, toks, a, &rs) && decode(m, ps, NS, toks, b, &rs2);
    const int32_t k = (int32_t)lroundf(0.5f * (float)c->n_ff);
    const double rec = rs2.own_total ? (double)rs2.own_kept / (double)rs2.own_total : 0.0;
    CHECK(ok && rs.shared == 0 && rs2.shared == n_pass && rs2.active == (int64_t)k * NS * n_pass && rs2.read == (int64_t)k * n_pass &&
              rec > 0.5 && rec < 1.0,
          "shared, 50%%, %d sequences: every pass shared, %d neurons each, own-mask recall %.3f in (0.5, 1), union of own %.0f%% of the layer",
          NS, k, rec, 100.0 * (double)rs.union_own / (double)(rs.batches * c->n_ff));
    /* auto: limit 1 never shares (== union), a tiny limit always does (== shared) */
    sl_profile_set_batch_select(pu, SL_BATCH_AUTO, 1.0f, &err);
    ok = decode(m, pu, NS, toks, d, &rs);
    diff = test_maxdiff(a, d, N);
    CHECK(ok && diff == 0.0 && rs.shared == 0, "auto with limit 1 == union (maxdiff %.3g)", diff);
    sl_profile_set_batch_select(pu, SL_BATCH_AUTO, 0.01f, &err);
    ok = decode(m, pu, NS, toks, d, &rs);
    diff = test_maxdiff(b, d, N);
    CHECK(ok && diff == 0.0 && rs.shared == n_pass, "auto with limit 0.01 == shared (maxdiff %.3g)", diff);
    /* auto with cap 0.6: the union (~93%) is cut to 0.6 n_ff neurons, more than a token's own k */
    sl_profile_set_batch_select(pu, SL_BATCH_AUTO, 0.6f, &err);
    ok = decode(m, pu, NS, toks, d, &rs);
    const int64_t cap = lround(0.6 * c->n_ff);
    const double rec6 = rs.own_total ? (double)rs.own_kept / (double)rs.own_total : 0.0;
    CHECK(ok && rs.shared == n_pass && rs.read == cap * n_pass && rs.active == cap * NS * n_pass && rec6 > rec,
          "auto with cap 0.6: every pass reads %lld neurons (the union cut down), own recall %.3f > shared's %.3f", (long long)cap, rec6, rec);
    /* dense: a step of several sequences takes the dense MLP (no scores, no neurons selected); a
     * lone sequence still decodes sparse, as with union */
    float *e = malloc(N * sizeof(float));
    sl_profile_set_batch_select(pu, SL_BATCH_DENSE, 0, &err);
    ok = decode(m, NULL, NS, toks, d, &rs) && decode(m, pu, NS, toks, e, &rs2);
    diff = test_maxdiff(d, e, N);
    CHECK(ok && diff <= TOL_SPARSE_EQ_DENSE && rs2.neurons == 0 && rs2.batches == 0,
          "dense, %d sequences together == dense decoding (maxdiff %.3g <= %.0e; %lld neurons selected, %lld sparse batches)", NS, diff,
          TOL_SPARSE_EQ_DENSE, (long long)rs2.neurons, (long long)rs2.batches);
    ok = decode(m, pu, 1, toks, e, &rs2);
    sl_profile_set_batch_select(pu, SL_BATCH_UNION, 0, &err);
    ok = ok && decode(m, pu, 1, toks, d, &rs);
    diff = test_maxdiff(d, e, STEPS * V);
    CHECK(ok && diff == 0.0 && rs2.neurons > 0 && rs2.neurons == rs.neurons,
          "dense, one sequence == union's per-token selection (maxdiff %.3g, %lld neurons scored)", diff, (long long)rs2.neurons);
    free(e);
    sl_profile_free(pu);
    sl_profile_free(ps);
    free(a), free(b), free(d);
    sl_model_free(m);
}

int main(void) {
    test_select_shared();
    test_model();
    return test_summary();
}
