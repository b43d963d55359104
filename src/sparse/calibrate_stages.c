/*
 * calibrate_stages.c — choosing the two-stage rules' fractions for a byte budget
 * (sl_calibrate_split): run the dense model over calibration windows, keep each layer's MLP
 * inputs x, gate pre-activations g and up products u for a sample of tokens, then for every level
 * s of the profile's grid and every layer try the splits (a, d) that read the MLP bytes CATS reads
 * at s and keep the one whose MLP output is closest to the dense one (relative squared error over
 * the sample; two-stage-pred can also try a gate stage: gate rows for more neurons than get up
 * rows). Why the output error: on tiny-silu at CATS-50%'s bytes it orders the splits as
 * held-out perplexity does (0.60/0.40 best; docs/two-stage.md), while the kept share of
 * contributions does not.
 * What it is not: CATS thresholds (calibrate.c), per-layer allocation (allocate.c) or the rule
 * itself (select.c, skip_stages.c).
 */
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "model/context.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE_BYTES ((size_t)256 << 20) /* samples of x, g, u kept for the search */
#define MAX_SAMPLE 1024                  /* tokens at most, by default */
#define N_DELTA 11                       /* a - d in {0, 0.05, ..., 0.5} */

sl_split_params sl_split_default_params(void) {
    sl_split_params p;
    memset(&p, 0, sizeof(p));
    p.rule = SL_RULE_TWO_STAGE;
    p.max_delta = 0.5f;
    return p;
}

typedef struct sample_state {
    int32_t n_layer, H, I;
    int64_t cap;        /* tokens per layer */
    int64_t *n;         /* [n_layer] tokens stored */
    float *x, *g, *u;   /* [n_layer, cap, H or I] */
    const sl_model *model;
    sl_context *ctx;
} sample_state;

static void sample_hook(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff) {
    sample_state *s = ud;
    int64_t take = s->cap - s->n[layer];
    if (take <= 0) return;
    if (take > B) take = B;
    const size_t base = (size_t)layer * s->cap + (size_t)s->n[layer];
    memcpy(s->x + base * n_embd, x, (size_t)take * n_embd * sizeof(float));
    memcpy(s->g + base * n_ff, gate, (size_t)take * n_ff * sizeof(float));
    const sl_weight *up = &s->model->layers[layer].ffn_up;
    sl_matmul(s->ctx->pool, up->mm_type, up->mm_data, n_ff, n_embd, x, take, s->u + base * n_ff);
    s->n[layer] += take;
}

/* The (a, d) that reads `budget` (bytes per neuron-equivalent: a * ca + d * cd == budget) with
 * a - d == delta; false when it does not fit in 0 < d <= a <= 1. */
static bool split_for(double budget, double ca, double cd, double delta, double *a, double *d) {
    *a = (budget + delta * cd) / (ca + cd);
    *d = *a - delta;
    if (*a > 1.0) {
        *a = 1.0;
        *d = (budget - ca) / cd;
        if (*d > 1.0) *d = 1.0;
        if (delta > 0.0 && 1.0 - *d < delta - 1e-9) return false; /* the same split as a smaller delta */
    }
    return *d > 0.0 && *d <= *a;
}

/* With a gate stage: the (g, a, d) reading `budget` with a = d + delta and g = min(1, r a)
 * (g ca_g + a ca_u + d cd == budget); false when it does not fit in 0 < d <= a <= g <= 1. */
static bool split_for3(double budget, double cg, double cu, double cd, double r, double delta, double *g, double *a, double *d) {
    *a = (budget + delta * cd) / (r * cg + cu + cd);
    if (r * *a > 1.0) *a = (budget - cg + delta * cd) / (cu + cd);
    *g = fmin(1.0, r * *a);
    *d = *a - delta;
    return *d > 0.0 && *d <= *a && *a <= *g + 1e-9 && *a <= 1.0;
}

/* Relative squared error of the layer's output when, per token, stage 1 keeps the top na by
 * score (with a gate stage, gact != NULL: the top ng by score, then the top na of those by
 * gact = |act(g)|) and stage 2 the top nd of those by |h|. D: [T, I] scratch; E: [T, H] scratch;
 * work: 3 I floats. */
static double split_error(const sl_weight *down, sl_pool *pool, const float *score, const float *gact, int32_t ng, const float *h,
                          int64_t T, int32_t H, int32_t I, int32_t na, int32_t nd, double ref, float *D, float *E, float *work,
                          void *tmp, int32_t *idx, int32_t *pos) {
    memcpy(D, h, (size_t)T * I * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        int32_t n;
        if (gact && ng > na) {
            const int32_t n1 = sl_select_topk(score + (size_t)t * I, I, ng, tmp, idx);
            for (int32_t k = 0; k < n1; k++) work[2 * I + k] = gact[(size_t)t * I + idx[k]];
            n = sl_select_topk(work + 2 * I, n1, na, tmp, pos);
            for (int32_t k = 0; k < n; k++) pos[k] = idx[pos[k]];
            memcpy(idx, pos, (size_t)n * sizeof(int32_t));
        } else {
            n = sl_select_topk(score + (size_t)t * I, I, na, tmp, idx);
        }
        for (int32_t k = 0; k < n; k++) work[k] = h[(size_t)t * I + idx[k]];
        const int32_t m = sl_select_stage2(work, NULL, idx, n, nd, work + I, tmp, pos);
        float *dr = D + (size_t)t * I;
        for (int32_t k = 0; k < m; k++) dr[idx[pos[k]]] = 0.0f; /* kept: no error */
    }
    sl_matmul(pool, down->mm_type, down->mm_data, H, I, D, T, E);
    double err = 0.0;
    for (size_t k = 0; k < (size_t)T * H; k++) err += (double)E[k] * E[k];
    return ref > 0 ? err / ref : 0.0;
}

sl_status sl_calibrate_split(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_split_params *params,
                             sl_profile *profile, sl_error *err) {
    sl_clear_error(err);
    sl_split_params p = params ? *params : sl_split_default_params();
    if (!model || !model->layers || !tokens || n_tokens < 2 || !profile)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: needs a model, at least 2 tokens and a profile");
    if (!(p.max_gate_ratio >= 0.0f && p.max_gate_ratio <= 4.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: max_gate_ratio %g outside [0, 4]", (double)p.max_gate_ratio);
    if (!(p.max_delta >= 0.0f && p.max_delta <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: max_delta %g outside [0, 1]", (double)p.max_delta);
    if (p.rule != SL_RULE_TWO_STAGE && p.rule != SL_RULE_TWO_STAGE_PRED)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: rule must be two-stage or two-stage-pred");
    const sl_model_config *c = &model->config;
    const int32_t L = c->n_layer, H = c->n_embd, I = c->n_ff;
    if (profile->n_layer != L || profile->n_embd != H || profile->n_ff != I)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: the profile was made for another model");
    for (int32_t l = 0; l < L && p.rule == SL_RULE_TWO_STAGE_PRED; l++)
        if (profile->layers[l].info.rank <= 0)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate split: two-stage-pred needs a predictor in every layer (layer %d has none)", l);
    if (profile->n_levels == 0) {
        float grid[20];
        for (int g = 0; g < 20; g++) grid[g] = 0.05f * (float)g;
        sl_status st = sl_profile_set_levels(profile, grid, 20, err);
        if (st) return st;
    }
    /* the sample: whole windows spread over the text */
    const int32_t window = p.n_ctx > 0 ? p.n_ctx : (c->n_ctx_train < 512 ? c->n_ctx_train : 512);
    int64_t cap = (int64_t)(SAMPLE_BYTES / ((size_t)L * (H + 2 * (size_t)I) * sizeof(float)));
    if (p.max_tokens > 0) cap = p.max_tokens < cap ? p.max_tokens : cap;
    else if (cap > MAX_SAMPLE) cap = MAX_SAMPLE;
    if (cap > n_tokens) cap = n_tokens;
    if (cap < 1) cap = 1;
    sample_state s = {L, H, I, cap, calloc((size_t)L, sizeof(int64_t)), NULL, NULL, NULL, model, NULL};
    s.x = sl_calloc_array((size_t)L * cap * H, sizeof(float));
    s.g = sl_calloc_array((size_t)L * cap * I, sizeof(float));
    s.u = sl_calloc_array((size_t)L * cap * I, sizeof(float));
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = p.n_threads;
    cp.n_batch = window < 64 ? window : 64;
    sl_context *ctx = NULL;
    float *h = NULL, *score = NULL, *D = NULL, *E = NULL, *work = NULL, *hb = NULL, *gact = NULL;
    int32_t *idx = NULL, *pos = NULL;
    uint32_t *tmp = NULL;
    sl_status st = SL_OK;
    if (!s.n || !s.x || !s.g || !s.u) {
        st = sl_set_error(err, SL_ERR_NOMEM, "calibrate split: out of memory for %lld sample tokens", (long long)cap);
        goto done;
    }
    if (!(ctx = sl_context_init(model, &cp, err))) {
        st = err ? err->code : SL_ERR_NOMEM;
        goto done;
    }
    s.ctx = ctx;
    ctx->mlp_hook = sample_hook;
    ctx->mlp_hook_ud = &s;
    const int64_t n_win = (cap + window - 1) / window, all_win = (n_tokens + window - 1) / window;
    const int64_t total_work = cap + (int64_t)L * profile->n_levels;
    for (int64_t w = 0; w < n_win && s.n[0] < cap; w++) {
        const int64_t start = n_win >= all_win ? w * window : (int64_t)((double)w * (double)(n_tokens / window) / (double)n_win) * window;
        const int32_t n = (int32_t)(n_tokens - start < window ? n_tokens - start : window);
        sl_context_reset(ctx);
        if ((st = sl_eval(ctx, tokens + start, n, NULL, false, err))) goto done;
        if (p.progress) p.progress(p.progress_ud, s.n[0], total_work);
    }
    const int64_t T = s.n[0];
    h = sl_calloc_array((size_t)T * I, sizeof(float));
    score = sl_calloc_array((size_t)T * I, sizeof(float));
    D = sl_calloc_array((size_t)T * I, sizeof(float));
    E = sl_calloc_array((size_t)T * H, sizeof(float));
    hb = sl_calloc_array((size_t)T * H, sizeof(float));
    work = sl_calloc_array(3 * (size_t)I, sizeof(float));
    const bool gate_stage = p.rule == SL_RULE_TWO_STAGE_PRED && p.max_gate_ratio > 1.0f;
    gact = gate_stage ? sl_calloc_array((size_t)T * I, sizeof(float)) : NULL;
    idx = sl_calloc_array((size_t)I, sizeof(int32_t));
    pos = sl_calloc_array((size_t)I, sizeof(int32_t));
    tmp = sl_calloc_array((size_t)I, sizeof(uint32_t));
    if (!h || !score || !D || !E || !hb || !work || !idx || !pos || !tmp || (gate_stage && !gact)) {
        st = sl_set_error(err, SL_ERR_NOMEM, "calibrate split: out of memory");
        goto done;
    }
    const sl_activation act = c->act;
    int64_t done_work = T;
    for (int32_t l = 0; l < L; l++) {
        const sl_layer *W = &model->layers[l];
        sl_profile_layer_data *PD = &profile->layers[l];
        const float *gl = s.g + (size_t)l * cap * I, *ul = s.u + (size_t)l * cap * I, *xl = s.x + (size_t)l * cap * H;
        for (size_t k = 0; k < (size_t)T * I; k++) h[k] = sl_activate(act, gl[k]) * ul[k];
        if (gact)
            for (size_t k = 0; k < (size_t)T * I; k++) gact[k] = fabsf(sl_activate(act, gl[k]));
        if (p.rule == SL_RULE_TWO_STAGE) {
            for (size_t k = 0; k < (size_t)T * I; k++) score[k] = fabsf(sl_activate(act, gl[k]));
        } else {
            const int32_t r = PD->info.rank;
            float *hA = sl_calloc_array((size_t)T * r, sizeof(float));
            if (!hA) {
                st = sl_set_error(err, SL_ERR_NOMEM, "calibrate split: out of memory");
                goto done;
            }
            sl_matmul(ctx->pool, PD->pred_a.type, PD->pred_a.data, r, H, xl, T, hA);
            sl_matmul(ctx->pool, PD->pred_b.type, PD->pred_b.data, I, r, hA, T, score);
            sl_free_aligned(hA);
        }
        sl_matmul(ctx->pool, W->ffn_down.mm_type, W->ffn_down.mm_data, H, I, h, T, hb);
        double ref = 0.0;
        for (size_t k = 0; k < (size_t)T * H; k++) ref += (double)hb[k] * hb[k];
        /* bytes per neuron: a gate row, an up row, a column of down, and the predictor spread over
         * the neurons */
        const double cg = (double)W->ffn_gate.row_bytes, cu = (double)W->ffn_up.row_bytes,
                     cdn = (double)W->ffn_down.row_bytes * (double)W->ffn_down.rows / I,
                     cp_ = PD->info.rank > 0 ? ((double)PD->pred_a.row_bytes * PD->pred_a.rows + (double)PD->pred_b.row_bytes * PD->pred_b.rows) / I
                                              : 0.0;
        float cand[SL_PROFILE_MAX_LEVELS], keep[SL_PROFILE_MAX_LEVELS], gatef[SL_PROFILE_MAX_LEVELS];
        bool any_gate = false;
        for (int32_t g = 0; g < profile->n_levels; g++) {
            const double sv = profile->levels[g], total = cg + (1.0 - sv) * (cu + cdn); /* CATS at s */
            double best_err = INFINITY, best_a = 1.0, best_d = 1.0, best_g = 1.0;
            if (sv <= 0.0) {
                best_err = 0.0; /* dense */
            } else {
                const double budget = p.rule == SL_RULE_TWO_STAGE ? total - cg : total - cp_;
                const double ca = p.rule == SL_RULE_TWO_STAGE ? cu : cg + cu;
                /* the error falls, then rises with a - d: stop after two rises in a row */
                int rises = 0;
                double last = INFINITY;
                for (int k = 0; k < N_DELTA && 0.05 * k <= p.max_delta + 1e-6 && rises < 2; k++) {
                    double a, d;
                    if (!split_for(budget, ca, cdn, 0.05 * k, &a, &d)) continue;
                    int32_t na = (int32_t)lround(a * I), nd = (int32_t)lround(d * I);
                    if (nd < 1) nd = 1;
                    if (na < nd) na = nd;
                    const double e = split_error(&W->ffn_down, ctx->pool, score, NULL, 0, h, T, H, I, na, nd, ref, D, E, work, tmp, idx, pos);
                    if (e < best_err) best_err = e, best_a = best_g = (double)na / I, best_d = (double)nd / I;
                    rises = e > last ? rises + 1 : 0;
                    last = e;
                }
                /* the gate stage: gate rows for the predictor's top r a, up rows for the top a of
                 * those by |act(g)|; each ratio r > 1 with its own early stop over delta */
                for (int ri = 1; gact && 1.0 + 0.25 * ri <= p.max_gate_ratio + 1e-6; ri++) {
                    const double r = 1.0 + 0.25 * ri;
                    int rises3 = 0;
                    double last3 = INFINITY;
                    for (int k = 0; k < N_DELTA && 0.05 * k <= p.max_delta + 1e-6 && rises3 < 2; k++) {
                        double ga, a, d;
                        if (!split_for3(budget, cg, cu, cdn, r, 0.05 * k, &ga, &a, &d)) continue;
                        int32_t ng = (int32_t)lround(ga * I), na = (int32_t)lround(a * I), nd = (int32_t)lround(d * I);
                        if (nd < 1) nd = 1;
                        if (na < nd) na = nd;
                        if (ng < na) ng = na;
                        if (ng > I) ng = I;
                        const double e = split_error(&W->ffn_down, ctx->pool, score, gact, ng, h, T, H, I, na, nd, ref, D, E, work, tmp, idx, pos);
                        if (e < best_err) best_err = e, best_g = (double)ng / I, best_a = (double)na / I, best_d = (double)nd / I;
                        rises3 = e > last3 ? rises3 + 1 : 0;
                        last3 = e;
                    }
                }
                if (!isfinite(best_err)) best_a = best_d = best_g = 1.0 / I; /* the budget does not cover even the predictor */
            }
            cand[g] = (float)best_a;
            keep[g] = (float)best_d;
            gatef[g] = (float)(best_g > best_a ? best_g : best_a);
            any_gate = any_gate || best_g > best_a;
            if (p.progress) p.progress(p.progress_ud, ++done_work, total_work);
        }
        if ((st = sl_profile_set_split(profile, l, cand, keep, err))) goto done;
        if (any_gate && (st = sl_profile_set_split_gate(profile, l, gatef, err))) goto done;
        sl_profile_layer info = PD->info;
        const float level = info.rule == SL_RULE_DENSE ? 0.5f : info.target_sparsity;
        info.rule = p.rule;
        info.cand_k = info.topk = I;
        info.gate_k = 0;
        if ((st = sl_profile_set_layer(profile, l, &info, err))) goto done;
        if ((st = sl_profile_set_layer_level(profile, l, level >= 0.0f && level < 1.0f ? level : 0.5f, err))) goto done;
    }
    sl_profile_set_method(profile, p.rule == SL_RULE_TWO_STAGE ? "two-stage" : "two-stage-pred", NULL);
done:
    sl_context_free(ctx);
    free(s.n);
    sl_free_aligned(s.x);
    sl_free_aligned(s.g);
    sl_free_aligned(s.u);
    sl_free_aligned(h);
    sl_free_aligned(score);
    sl_free_aligned(D);
    sl_free_aligned(E);
    sl_free_aligned(hb);
    sl_free_aligned(work);
    sl_free_aligned(gact);
    sl_free_aligned(idx);
    sl_free_aligned(pos);
    sl_free_aligned(tmp);
    return st;
}
