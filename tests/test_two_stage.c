/*
 * test_two_stage.c — the two-stage rules, their byte accounting, schedules and allocation, on the
 * fixture models.
 *  - Sparsity 0 equals dense: two-stage (gate dense) and two-stage-pred (the exact predictor,
 *    rank H, A = I, B = gate) with cand_k = topk = n_ff, batched and one token at a time.
 *  - Full candidates equal the oracle: with cand_k = n_ff, both rules keep the topk neurons of
 *    largest |act(g) u| — checked against a plain double-precision MLP plugged into the same
 *    forward pass (the oracle computed from the dequantized weights, ties by index); a rule that
 *    ranks by anything else (|act(g)|, g, |u|) differs by far more than the tolerance.
 *  - Bytes: a two-stage layer reads n_ff gate rows (or the predictor), cand_k up rows (and gate
 *    rows) and topk columns of down per token, exactly; CATS-like fractions a = d = 1/2 read 2/3.
 *  - The gate stage (two-stage-pred, gate_k = n_ff) equals the two-stage rule with the same
 *    cand_k / topk, differs from plain two-stage-pred, and reads predictor + gate_k gate rows +
 *    cand_k up rows + topk down columns.
 *  - Contribution recall is 1 when every neuron is kept, and the stage-1 candidates of the
 *    exact predictor are those of the dense gate.
 *  - Schedules: split tables and allocations round-trip through a file, set_sparsity follows
 *    them; sl_calibrate_split's fractions read at most the bytes CATS reads at each level (one
 *    neuron of rounding) and sl_allocate's levels average to the profile-wide level, rise with it,
 *    and are what a plain greedy makes of the measured cost curves; the exact allocation has the
 *    least summed cost of all 4^L allocations of each level (enumerated).
 */
#include "format/quant.h"
#include "kernels/activation.h"
#include "model/context.h"
#include "skipllama.h"
#include "sparse/profile.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sparse path vs a double-precision reference on the same neurons: only summation order differs */
#define TOL_SAME_NEURONS 1e-4

static const int32_t prompt[] = {1, 985, 369, 262, 1108, 271, 659, 1961, 1966, 1970, 1087, 13, 1969, 286, 504, 1963};
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(prompt[0])))

/* ---- the oracle MLP, plugged into the forward pass ------------------------------------------- */

typedef struct oracle_state {
    int32_t keep;      /* neurons kept per token (top by |act(g) u|) */
    float *w;          /* dequantized weights of every layer: gate, up [I, H] and down [H, I] */
} oracle_state;

static bool oracle_forward(void *state, sl_context *ctx, int l, int B) {
    oracle_state *o = state;
    const sl_model_config *c = &ctx->model->config;
    const int H = c->n_embd, I = c->n_ff;
    const float *gate = o->w + (size_t)l * 3 * H * I, *up = gate + (size_t)H * I, *down = up + (size_t)H * I;
    double *h = malloc((size_t)I * sizeof(double));
    int32_t *order = malloc((size_t)I * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        const float *x = ctx->xb + (size_t)b * H;
        for (int i = 0; i < I; i++) {
            double g = 0, u = 0;
            for (int k = 0; k < H; k++) g += (double)gate[(size_t)i * H + k] * x[k], u += (double)up[(size_t)i * H + k] * x[k];
            h[i] = (double)sl_activate(c->act, (float)g) * u;
            order[i] = i;
        }
        /* selection sort of the keep largest |h| (ties: smaller index first) */
        for (int q = 0; q < o->keep; q++) {
            int best = q;
            for (int r = q + 1; r < I; r++) {
                const double a = fabs(h[order[r]]), z = fabs(h[order[best]]);
                if (a > z || (a == z && order[r] < order[best])) best = r;
            }
            int32_t t = order[q];
            order[q] = order[best];
            order[best] = t;
        }
        float *out = ctx->xb2 + (size_t)b * H;
        for (int k = 0; k < H; k++) {
            double acc = 0;
            for (int q = 0; q < o->keep; q++) acc += h[order[q]] * down[(size_t)k * I + order[q]];
            out[k] = (float)acc;
        }
    }
    free(h);
    free(order);
    return true;
}

static void oracle_free(void *state) { (void)state; }
static const sl_mlp_plugin oracle_plugin = {oracle_forward, oracle_free};

/* Bytes of one gate row, one up row and the whole down matrix of layer W (the stats' units). */
static void mlp_row_bytes(const sl_layer *W, int64_t *g, int64_t *u, int64_t *dall) {
    *g = (int64_t)W->ffn_gate.row_bytes;
    *u = (int64_t)W->ffn_up.row_bytes;
    *dall = (int64_t)W->ffn_down.row_bytes * W->ffn_down.rows;
}

static float *dequant_mlp(const sl_model *m) {
    const sl_model_config *c = &m->config;
    const size_t HI = (size_t)c->n_embd * c->n_ff;
    float *w = malloc(3 * HI * c->n_layer * sizeof(float));
    for (int l = 0; l < c->n_layer; l++) {
        const sl_weight *ws[3] = {&m->layers[l].ffn_gate, &m->layers[l].ffn_up, &m->layers[l].ffn_down};
        for (int k = 0; k < 3; k++)
            for (int64_t r = 0; r < ws[k]->rows; r++)
                sl_dequantize_row_ref(ws[k]->type, (const uint8_t *)ws[k]->data + (size_t)r * ws[k]->row_bytes,
                                      w + (size_t)(3 * l + k) * HI + (size_t)r * ws[k]->cols, ws[k]->cols);
    }
    return w;
}

/* ---- helpers ----------------------------------------------------------------------------------- */

static sl_context *new_ctx(sl_model *m) {
    sl_error err;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 64;
    return sl_context_init(m, &cp, &err);
}

/* Logits of the prompt: batched (sparse prefill) or one token at a time. */
static void run(sl_context *ctx, bool one_by_one, float *out) {
    sl_error err;
    const int V = sl_model_get_config(ctx->model)->n_vocab;
    sl_context_reset(ctx);
    if (one_by_one)
        for (int i = 0; i < N_PROMPT; i++) sl_eval(ctx, prompt + i, 1, out + (size_t)i * V, false, &err);
    else sl_eval(ctx, prompt, N_PROMPT, out, true, &err);
}

/* Every layer: rule with cand_k / topk; two-stage-pred layers get the exact predictor. */
static sl_profile *two_stage_profile(sl_model *m, sl_skip_rule rule, int32_t cand, int32_t keep) {
    sl_error err;
    const sl_model_config *c = sl_model_get_config(m);
    const int H = c->n_embd, I = c->n_ff;
    sl_profile *p = sl_profile_init(m, &err);
    float *A = NULL, *Bm = NULL;
    if (rule == SL_RULE_TWO_STAGE_PRED) {
        A = calloc((size_t)H * H, sizeof(float));
        Bm = malloc((size_t)I * H * sizeof(float));
        for (int i = 0; i < H; i++) A[(size_t)i * H + i] = 1.0f;
    }
    for (int l = 0; l < c->n_layer; l++) {
        if (A) {
            const sl_weight *g = &m->layers[l].ffn_gate;
            for (int i = 0; i < I; i++) sl_dequantize_row_ref(g->type, (const uint8_t *)g->data + (size_t)i * g->row_bytes, Bm + (size_t)i * H, H);
            CHECK(sl_profile_set_predictor(p, l, H, SL_TYPE_F32, A, Bm, &err) == SL_OK, "layer %d: exact predictor", l);
        }
        sl_profile_layer info = {.rule = rule, .cand_k = cand, .topk = keep};
        CHECK(sl_profile_set_layer(p, l, &info, &err) == SL_OK, "layer %d: %s %d/%d (%s)", l, sl_skip_rule_name(rule), cand, keep,
              err.message);
    }
    free(A);
    free(Bm);
    return p;
}

static void test_dense_and_oracle(const char *name) {
    char path[128];
    snprintf(path, sizeof(path), "tests/data/%s.gguf", name);
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    if (!CHECK(m != NULL, "load %s", name)) return;
    const sl_model_config *c = sl_model_get_config(m);
    const int I = c->n_ff;
    const size_t V = (size_t)c->n_vocab;
    float *dense = malloc(N_PROMPT * V * sizeof(float)), *got = malloc(N_PROMPT * V * sizeof(float)),
          *want = malloc(N_PROMPT * V * sizeof(float));
    sl_context *ctx = new_ctx(m);
    run(ctx, false, dense);
    static const sl_skip_rule rules[2] = {SL_RULE_TWO_STAGE, SL_RULE_TWO_STAGE_PRED};
    for (int r = 0; r < 2; r++) {
        const char *rn = sl_skip_rule_name(rules[r]);
        /* sparsity 0 */
        sl_profile *p = two_stage_profile(m, rules[r], I, I);
        sl_context_set_profile(ctx, p, true, &err);
        run(ctx, false, got);
        CHECK_CLOSE(got, dense, N_PROMPT * V, TOL_SAME_NEURONS, "two-stage at sparsity 0 == dense (prefill)");
        run(ctx, true, got);
        CHECK_CLOSE(got, dense, N_PROMPT * V, TOL_SAME_NEURONS, "two-stage at sparsity 0 == dense (decode)");
        printf("# %s %s sparsity 0\n", name, rn);
        sl_context_set_profile(ctx, NULL, false, &err);
        sl_profile_free(p);
        /* full candidates: the oracle |act(g) u| top-k, for several k */
        const int32_t keeps[3] = {I / 2, I / 4, I / 10};
        for (int k = 0; k < 3; k++) {
            oracle_state o = {keeps[k], dequant_mlp(m)};
            sl_context_set_mlp_plugin(ctx, &oracle_plugin, &o);
            run(ctx, false, want);
            sl_context_set_mlp_plugin(ctx, NULL, NULL);
            free(o.w);
            p = two_stage_profile(m, rules[r], I, keeps[k]);
            sl_context_set_profile(ctx, p, true, &err);
            sl_context_reset_stats(ctx);
            sl_context_track_recall(ctx, true);
            run(ctx, false, got);
            char what[160];
            snprintf(what, sizeof(what), "%s %s cand_k = n_ff, topk = %d == the |act(g) u| oracle (prefill)", name, rn, keeps[k]);
            CHECK_CLOSE(got, want, N_PROMPT * V, TOL_SAME_NEURONS, what);
            run(ctx, true, got);
            snprintf(what, sizeof(what), "%s %s cand_k = n_ff, topk = %d == the |act(g) u| oracle (decode)", name, rn, keeps[k]);
            CHECK_CLOSE(got, want, N_PROMPT * V, TOL_SAME_NEURONS, what);
            /* and really sparse: the oracle at this k is far from dense */
            double d = test_maxdiff(want, dense, N_PROMPT * V);
            CHECK(d > 100 * TOL_SAME_NEURONS, "%s oracle at topk = %d differs from dense (maxdiff %.3g): the check can fail", name, keeps[k], d);
            /* bytes: per token n_ff gate rows (or the predictor), n_ff up rows (and gate rows), topk down columns */
            for (int l = 0; l < c->n_layer; l++) {
                sl_layer_stats st;
                sl_context_get_layer_stats(ctx, l, &st, &err);
                int64_t g, u, dall;
                mlp_row_bytes(&m->layers[l], &g, &u, &dall);
                const int64_t pred = rules[r] == SL_RULE_TWO_STAGE ? 0 : (int64_t)sizeof(float) * c->n_embd * ((int64_t)c->n_embd + I);
                const int64_t per_tok = pred + (int64_t)I * g + (int64_t)I * u + (int64_t)keeps[k] * dall / I;
                CHECK(st.mlp_bytes == per_tok * st.n_sparse_tokens && st.mlp_bytes_dense == (g * I + u * I + dall) * st.n_sparse_tokens &&
                          st.n_cand == (int64_t)I * st.n_sparse_tokens && st.n_active == (int64_t)keeps[k] * st.n_sparse_tokens,
                      "%s %s layer %d: bytes %lld == %lld x %lld tokens, candidates and kept counted", name, rn, l, (long long)st.mlp_bytes,
                      (long long)per_tok, (long long)st.n_sparse_tokens);
            }
            sl_context_set_profile(ctx, NULL, false, &err);
            sl_profile_free(p);
        }
    }
    /* the gate stage: two-stage-pred with gate_k = n_ff reads every gate row and passes the top
     * cand_k by |act(g)| on: exactly the two-stage rule (gate dense) with the same cand_k and
     * topk, whatever the predictor; and not the plain two-stage-pred (ranked by the score) */
    {
        const int32_t a = I / 2, d = I / 5;
        sl_profile *ts = two_stage_profile(m, SL_RULE_TWO_STAGE, a, d), *tp = two_stage_profile(m, SL_RULE_TWO_STAGE_PRED, a, d);
        /* a random rank-16 predictor (the exact one ranks as the gate does on ReLU) */
        const int R = 16, H = c->n_embd;
        float *RA = malloc((size_t)R * H * sizeof(float)), *RB = malloc((size_t)I * R * sizeof(float));
        uint64_t sd = 99;
        for (int l = 0; l < c->n_layer; l++) {
            for (int k = 0; k < R * H; k++) sd = sd * 6364136223846793005ull + 1442695040888963407ull, RA[k] = (float)((int64_t)(sd >> 40) % 2001 - 1000) / 1000.0f;
            for (int k = 0; k < I * R; k++) sd = sd * 6364136223846793005ull + 1442695040888963407ull, RB[k] = (float)((int64_t)(sd >> 40) % 2001 - 1000) / 1000.0f;
            CHECK(sl_profile_set_predictor(tp, l, R, SL_TYPE_F32, RA, RB, &err) == SL_OK, "layer %d: random predictor (%s)", l, err.message);
        }
        free(RA);
        free(RB);
        sl_context_set_profile(ctx, ts, true, &err);
        run(ctx, true, want);
        sl_context_set_profile(ctx, tp, true, &err);
        float *plain = malloc(N_PROMPT * V * sizeof(float));
        run(ctx, true, plain);
        for (int l = 0; l < c->n_layer; l++) {
            sl_profile_layer info;
            sl_profile_get_layer(tp, l, &info, &err);
            info.gate_k = I;
            CHECK(sl_profile_set_layer(tp, l, &info, &err) == SL_OK, "layer %d: gate stage gate_k = n_ff (%s)", l, err.message);
        }
        sl_profile_layer bad;
        sl_profile_get_layer(tp, 0, &bad, &err);
        bad.gate_k = a - 1;
        CHECK(sl_profile_set_layer(tp, 0, &bad, &err) != SL_OK, "gate_k < cand_k is refused (%s)", err.message);
        sl_context_set_profile(ctx, tp, true, &err);
        sl_context_reset_stats(ctx);
        run(ctx, true, got);
        char what[160];
        snprintf(what, sizeof(what), "%s two-stage-pred with gate_k = n_ff == two-stage (gate dense), %d / %d (decode)", name, a, d);
        CHECK_CLOSE(got, want, N_PROMPT * V, TOL_SAME_NEURONS, what);
        const double dp = test_maxdiff(got, plain, N_PROMPT * V);
        CHECK(dp > 100 * TOL_SAME_NEURONS, "%s the gate stage changes two-stage-pred's choice (maxdiff %.3g): the check can fail", name, dp);
        for (int l = 0; l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            int64_t g, u, dall;
            mlp_row_bytes(&m->layers[l], &g, &u, &dall);
            const int64_t per_tok = (int64_t)sizeof(float) * R * ((int64_t)H + I) + (int64_t)I * g + (int64_t)a * u + (int64_t)d * dall / I;
            CHECK(st.mlp_bytes == per_tok * st.n_sparse_tokens && st.n_cand == (int64_t)a * st.n_sparse_tokens &&
                      st.n_active == (int64_t)d * st.n_sparse_tokens,
                  "%s gate stage layer %d: bytes %lld == (predictor + n_ff gate + %d up + %d down) x %lld tokens", name, l,
                  (long long)st.mlp_bytes, a, d, (long long)st.n_sparse_tokens);
        }
        sl_context_set_profile(ctx, NULL, false, &err);
        free(plain);
        sl_profile_free(ts);
        sl_profile_free(tp);
    }
    /* CATS-like fractions a = d = 1/2 read 2/3 of the MLP; keeping all gives contribution recall 1 */
    sl_profile *p = two_stage_profile(m, SL_RULE_TWO_STAGE, I / 2, I / 2);
    sl_context_set_profile(ctx, p, true, &err);
    sl_context_reset_stats(ctx);
    run(ctx, false, got);
    double bytes = 0, bytes_dense = 0;
    for (int l = 0; l < c->n_layer; l++) {
        sl_layer_stats st;
        sl_context_get_layer_stats(ctx, l, &st, &err);
        bytes += (double)st.mlp_bytes;
        bytes_dense += (double)st.mlp_bytes_dense;
    }
    CHECK(fabs(bytes / bytes_dense - 2.0 / 3.0) < 1e-12, "%s two-stage 1/2, 1/2 reads %.6f of the MLP bytes (2/3, as CATS at 50%%)", name,
          bytes / bytes_dense);
    sl_context_set_profile(ctx, NULL, false, &err);
    sl_profile_free(p);
    p = two_stage_profile(m, SL_RULE_TWO_STAGE_PRED, I, I);
    sl_context_set_profile(ctx, p, true, &err);
    sl_context_reset_stats(ctx);
    sl_context_track_recall(ctx, true);
    run(ctx, true, got);
    sl_layer_stats st;
    sl_context_get_layer_stats(ctx, 1, &st, &err);
    CHECK(st.contrib_total > 0 && fabs(st.contrib_kept / st.contrib_total - 1.0) < 1e-12 && st.out_err <= 1e-9 * st.out_norm,
          "%s all neurons kept: contribution recall %.9f, relative output error %.3g", name, st.contrib_kept / st.contrib_total,
          st.out_err / st.out_norm);
    sl_context_set_profile(ctx, NULL, false, &err);
    sl_profile_free(p);
    sl_context_free(ctx);
    free(dense), free(got), free(want);
    sl_model_free(m);
}

static int32_t *slice_tokens(sl_model *m, int32_t *n) {
    size_t size;
    char *text = test_read_file("tests/data/train-slice.txt", &size);
    int32_t *ids = NULL;
    sl_error err;
    *n = 0;
    if (text) sl_tokenize(sl_model_get_vocab(m), text, size, false, false, &ids, n, &err);
    free(text);
    return ids;
}

static void test_schedules(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!CHECK(m != NULL, "load tiny-silu")) return;
    const sl_model_config *c = sl_model_get_config(m);
    const int L = c->n_layer, I = c->n_ff;
    int32_t n_ids = 0;
    int32_t *ids = slice_tokens(m, &n_ids);
    CHECK(n_ids > 4096, "train-slice.txt tokenized (%d tokens)", n_ids);
    /* split calibration: CATS statistics, then the fractions for CATS's bytes at every level */
    sl_calibrate_params cp = sl_calibrate_default_params();
    cp.n_ctx = 256;
    sl_profile *p = NULL;
    CHECK(sl_calibrate(m, ids, 2048, &cp, &p, &err) == SL_OK, "calibrate CATS");
    if (!p) return;
    sl_split_params sp = sl_split_default_params();
    sp.max_tokens = 512;
    sp.n_ctx = 256;
    CHECK(sl_calibrate_split(m, ids, 2048, &sp, p, &err) == SL_OK, "calibrate two-stage split (%s)", err.message);
    float levels[SL_PROFILE_MAX_LEVELS];
    const int G = sl_profile_get_levels(p, levels);
    CHECK(G == 20 && levels[0] == 0.0f && fabsf(levels[19] - 0.95f) < 1e-6f, "default level grid 0 .. 0.95 (%d levels)", G);
    int over = 0, wider = 0;
    for (int l = 0; l < L; l++)
        for (int g = 0; g < G; g++) {
            float a, d;
            sl_profile_get_split(p, l, levels[g], &a, &d);
            /* bytes (equal row sizes in F32): (1 + a + d) / 3 against CATS's (1 + 2 (1 - s)) / 3 */
            const double used = (1.0 + a + d) / 3.0, cats = (1.0 + 2.0 * (1.0 - levels[g])) / 3.0;
            if (used > cats + 1.0 / (3.0 * I) + 1e-6) over++;
            wider += a > d;
            if (g == 0 && (a != 1.0f || d != 1.0f)) over++;
        }
    CHECK(over == 0, "every split reads at most CATS's bytes at its level (to one neuron's rounding); level 0 is dense");
    CHECK(wider > L * G / 2, "the splits mostly read more up rows than down rows (%d of %d)", wider, L * G);
    /* set_sparsity follows the split; the profile round-trips with its tables */
    CHECK(sl_profile_set_sparsity(p, 0.5f, &err) == SL_OK, "set sparsity 0.5");
    sl_profile_layer info;
    sl_profile_get_layer(p, 2, &info, &err);
    float a, d;
    sl_profile_get_split(p, 2, 0.5f, &a, &d);
    CHECK(info.rule == SL_RULE_TWO_STAGE && info.cand_k == (int32_t)lroundf(a * I) && info.topk == (int32_t)lroundf(d * I),
          "layer 2 at 0.5: cand_k %d, topk %d from the split %.3f / %.3f", info.cand_k, info.topk, a, d);
    /* allocation on a coarse grid (fast): 0, 0.25, 0.5, 0.75 */
    const float grid[4] = {0.0f, 0.25f, 0.5f, 0.75f};
    sl_profile *q = NULL;
    sl_calibrate(m, ids, 2048, &cp, &q, &err);
    CHECK(sl_profile_set_levels(q, grid, 4, &err) == SL_OK, "coarse grid");
    sl_calibrate_split(m, ids, 2048, &sp, q, &err);
    sl_alloc_params ap = sl_alloc_default_params();
    ap.max_tokens = 512;
    ap.n_ctx = 256;
    double cost[64];
    CHECK(sl_allocate(m, ids, 4096, &ap, q, cost, &err) == SL_OK, "allocate (%s)", err.message);
    bool mean_ok = true, nested = true, greedy_ok = true;
    for (int g = 0; g < 4; g++) {
        double sum = 0;
        for (int l = 0; l < L; l++) {
            const float lv = sl_profile_layer_level(q, l, grid[g]);
            sum += lv;
            if (g > 0 && lv < sl_profile_layer_level(q, l, grid[g - 1])) nested = false;
        }
        if (fabs(sum / L - grid[g]) > 1e-6) mean_ok = false;
    }
    /* the greedy again, plainly, from the measured curves: raise the layer with the cheapest next
     * step (first layer on ties) until the sum of levels reaches L x the grid level */
    int at[16] = {0};
    for (int g = 0; g < 4; g++) {
        int steps = 0;
        for (int l = 0; l < L; l++) steps += at[l];
        while (steps < g * L) {
            int best = -1;
            double bc = INFINITY;
            for (int l = 0; l < L; l++)
                if (at[l] < 3 && (cost[l * 4 + at[l] + 1] - cost[l * 4 + at[l]]) / 0.25 < bc)
                    bc = (cost[l * 4 + at[l] + 1] - cost[l * 4 + at[l]]) / 0.25, best = l;
            at[best]++;
            steps++;
        }
        for (int l = 0; l < L; l++)
            if (fabsf(sl_profile_layer_level(q, l, grid[g]) - grid[at[l]]) > 1e-6f) greedy_ok = false;
    }
    CHECK(mean_ok, "allocated levels average to the profile-wide level at every grid level");
    CHECK(nested, "a layer's level never falls as the average rises");
    CHECK(greedy_ok, "the allocation is the greedy of its own cost curves, recomputed plainly");
    /* exact allocation: at every grid level, the least summed cost over all 4^L allocations whose
     * levels average to it (enumerated plainly), on its own measured curves */
    ap.exact = true;
    double cost2[64];
    CHECK(sl_allocate(m, ids, 4096, &ap, q, cost2, &err) == SL_OK, "allocate exactly (%s)", err.message);
    bool exact_ok = L <= 4;
    double worst = 0.0;
    for (int g = 0; g < 4 && exact_ok; g++) {
        double best = INFINITY, got = 0.0, greedy_cost = 0.0;
        int n_comb = 1;
        for (int l = 0; l < L; l++) n_comb *= 4;
        for (int k = 0; k < n_comb; k++) {
            int sum = 0, kk = k;
            double cs = 0.0;
            for (int l = 0; l < L; l++, kk /= 4) sum += kk % 4, cs += cost2[l * 4 + kk % 4];
            if (sum == g * L && cs < best) best = cs;
        }
        int sum = 0;
        for (int l = 0; l < L; l++) {
            const int gi = (int)lroundf(sl_profile_layer_level(q, l, grid[g]) / 0.25f);
            sum += gi;
            got += cost2[l * 4 + gi];
        }
        /* the greedy's levels from the first run, priced on these curves */
        int at2[16] = {0};
        for (int st2 = 0; st2 < g * L; st2++) {
            int b = -1;
            double bc = INFINITY;
            for (int l = 0; l < L; l++)
                if (at2[l] < 3 && (cost2[l * 4 + at2[l] + 1] - cost2[l * 4 + at2[l]]) / 0.25 < bc)
                    bc = (cost2[l * 4 + at2[l] + 1] - cost2[l * 4 + at2[l]]) / 0.25, b = l;
            at2[b]++;
        }
        for (int l = 0; l < L; l++) greedy_cost += cost2[l * 4 + at2[l]];
        if (sum != g * L || fabs(got - best) > 1e-12 || got > greedy_cost + 1e-12) exact_ok = false;
        if (got - best > worst) worst = got - best;
    }
    printf("# exact allocation: max (its cost - enumerated least cost) = %.3g\n", worst);
    CHECK(exact_ok, "the exact allocation averages to each level and has the least summed cost of all allocations (<= the greedy's)");
    CHECK(sl_profile_set_sparsity(q, 0.5f, &err) == SL_OK, "set sparsity 0.5 with the allocation");
    for (int l = 0; l < L; l++) {
        sl_profile_get_layer(q, l, &info, &err);
        CHECK(info.target_sparsity == sl_profile_layer_level(q, l, 0.5f), "layer %d at its allocated level %.2f", l, (double)info.target_sparsity);
    }
    char tmp[] = "/tmp/skipllama-ts-XXXXXX";
    close(mkstemp(tmp));
    CHECK(sl_profile_save(q, tmp, &err) == SL_OK, "save a profile with split and allocation");
    sl_profile *r = sl_profile_load(tmp, m, &err);
    if (CHECK(r != NULL, "load it back (%s)", r ? "ok" : err.message)) {
        bool same = sl_profile_get_levels(r, NULL) == 4;
        for (int l = 0; l < L && same; l++)
            for (int g = 0; g < 4 && same; g++) {
                float a1, d1, a2, d2;
                same = sl_profile_get_split(q, l, grid[g], &a1, &d1) && sl_profile_get_split(r, l, grid[g], &a2, &d2) && a1 == a2 &&
                       d1 == d2 && sl_profile_layer_level(q, l, grid[g]) == sl_profile_layer_level(r, l, grid[g]);
            }
        sl_profile_layer x, y;
        sl_profile_get_layer(q, 3, &x, &err);
        sl_profile_get_layer(r, 3, &y, &err);
        CHECK(same && x.cand_k == y.cand_k && x.topk == y.topk && x.rule == y.rule, "levels, splits, allocation and cand_k round-trip");
        sl_profile_free(r);
    }
    remove(tmp);
    sl_profile_free(q);
    sl_profile_free(p);
    sl_free_tokens(ids);
    sl_model_free(m);
}

/* The gate stage's split search (two-stage-pred, max_gate_ratio 2, a random rank-16 predictor: a
 * weak ranking, so reading more gate rows than up rows pays): every level reads at most CATS's
 * bytes (one neuron of rounding per stage), gate >= cand >= keep, some levels take a gate stage,
 * set_sparsity sets gate_k from the table, the measured bytes of a decode stay within the budget,
 * and the gate table round-trips through a file. */
static void test_gate_split(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!CHECK(m != NULL, "load tiny-silu")) return;
    const sl_model_config *c = sl_model_get_config(m);
    const int L = c->n_layer, I = c->n_ff, H = c->n_embd, r = 16;
    int32_t n_ids = 0;
    int32_t *ids = slice_tokens(m, &n_ids);
    sl_calibrate_params cp = sl_calibrate_default_params();
    cp.n_ctx = 256;
    sl_profile *p = NULL;
    CHECK(sl_calibrate(m, ids, 1024, &cp, &p, &err) == SL_OK, "calibrate CATS");
    if (!p) return;
    float *A = malloc((size_t)r * H * sizeof(float)), *Bm = malloc((size_t)I * r * sizeof(float));
    uint64_t s = 7;
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < r * H; k++) s = s * 6364136223846793005ull + 1442695040888963407ull, A[k] = (float)((int64_t)(s >> 40) % 2001 - 1000) / 1000.0f;
        for (int k = 0; k < I * r; k++) s = s * 6364136223846793005ull + 1442695040888963407ull, Bm[k] = (float)((int64_t)(s >> 40) % 2001 - 1000) / 1000.0f;
        sl_profile_set_predictor(p, l, r, SL_TYPE_F32, A, Bm, &err);
    }
    free(A);
    free(Bm);
    sl_split_params sp = sl_split_default_params();
    sp.rule = SL_RULE_TWO_STAGE_PRED;
    sp.max_gate_ratio = 2.0f;
    sp.max_tokens = 256;
    sp.n_ctx = 256;
    CHECK(sl_calibrate_split(m, ids, 1024, &sp, p, &err) == SL_OK, "calibrate the gate-stage split (%s)", err.message);
    float levels[SL_PROFILE_MAX_LEVELS];
    const int G = sl_profile_get_levels(p, levels);
    int over = 0, gated = 0, order = 0;
    /* F32 rows: a gate, up or down row are each 1/3 of a neuron's bytes; the predictor r (H + I) floats */
    const double pred = (double)r * (H + I) / (3.0 * H * I);
    for (int l = 0; l < L; l++)
        for (int g = 1; g < G; g++) {
            float a, d, gf = NAN;
            sl_profile_get_split(p, l, levels[g], &a, &d);
            if (!sl_profile_get_split_gate(p, l, levels[g], &gf)) gf = a;
            const double used = pred + (gf + a + d) / 3.0, cats = (1.0 + 2.0 * (1.0 - levels[g])) / 3.0;
            if (used > cats + 1.0 / I + 1e-6) over++;
            if (!(gf >= a && a >= d)) order++;
            gated += gf > a + 0.5f / I;
        }
    printf("# gate stage chosen at %d of %d (layer, level) pairs\n", gated, L * (G - 1));
    CHECK(over == 0 && order == 0, "every gate-stage split reads at most CATS's bytes (%d over) with gate >= cand >= keep (%d not)", over, order);
    CHECK(gated > 0, "with a weak predictor the search takes a gate stage somewhere (%d)", gated);
    CHECK(sl_profile_set_sparsity(p, 0.7f, &err) == SL_OK, "set sparsity 0.7");
    int with_gate = 0;
    for (int l = 0; l < L; l++) {
        sl_profile_layer info;
        sl_profile_get_layer(p, l, &info, &err);
        float gf;
        const bool has = sl_profile_get_split_gate(p, l, 0.7f, &gf);
        const int32_t want = has && (int32_t)lroundf(gf * I) > info.cand_k ? (int32_t)lroundf(gf * I) : 0;
        CHECK(info.gate_k == want, "layer %d at 0.7: gate_k %d from the table (%d)", l, info.gate_k, want);
        with_gate += info.gate_k > 0;
    }
    /* the measured bytes of a decode at 0.7 */
    sl_context *ctx = new_ctx(m);
    sl_context_set_profile(ctx, p, true, &err);
    float *out = malloc((size_t)N_PROMPT * c->n_vocab * sizeof(float));
    run(ctx, true, out);
    free(out);
    double by = 0, byd = 0;
    for (int l = 0; l < L; l++) {
        sl_layer_stats st;
        sl_context_get_layer_stats(ctx, l, &st, &err);
        by += (double)st.mlp_bytes, byd += (double)st.mlp_bytes_dense;
    }
    const double cats07 = (1.0 + 2.0 * 0.3) / 3.0;
    CHECK(by / byd <= cats07 + 1.0 / I + 1e-9, "decode at 0.7 (%d layers with a gate stage) reads %.4f of the MLP bytes (CATS 0.7: %.4f)",
          with_gate, by / byd, cats07);
    sl_context_free(ctx);
    char tmp[] = "/tmp/skipllama-gs-XXXXXX";
    close(mkstemp(tmp));
    CHECK(sl_profile_save(p, tmp, &err) == SL_OK, "save a profile with gate tables");
    sl_profile *q = sl_profile_load(tmp, m, &err);
    if (CHECK(q != NULL, "load it back (%s)", q ? "ok" : err.message)) {
        bool same = true;
        for (int l = 0; l < L && same; l++) {
            sl_profile_layer x, y;
            sl_profile_get_layer(p, l, &x, &err);
            sl_profile_get_layer(q, l, &y, &err);
            same = x.gate_k == y.gate_k && x.cand_k == y.cand_k;
            for (int g = 0; g < G && same; g++) {
                float g1 = -1, g2 = -1;
                const bool h1 = sl_profile_get_split_gate(p, l, levels[g], &g1), h2 = sl_profile_get_split_gate(q, l, levels[g], &g2);
                same = h1 == h2 && g1 == g2;
            }
        }
        CHECK(same, "gate tables and gate_k round-trip");
        sl_profile_free(q);
    }
    remove(tmp);
    sl_profile_free(p);
    sl_free_tokens(ids);
    sl_model_free(m);
}

int main(void) {
    test_dense_and_oracle("tiny-silu");
    test_dense_and_oracle("tiny-relu");
    test_schedules();
    test_gate_split();
    return test_summary();
}
