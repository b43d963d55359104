/*
 * allocate.c — per-layer sparsity allocation (sl_allocate), greedy in the spirit of TEAL's: first
 * measure each layer's cost curve — the mean NLL increase on calibration tokens when only that
 * layer is sparse, at every level of the profile's grid — then, starting with every layer dense,
 * repeatedly raise by one grid step the layer whose next step costs the least, and record the
 * layers' levels each time their mean reaches a level of the grid. The allocations are nested
 * (a layer's level never falls as the average rises), and the profile stores them, so
 * `--sparsity S` then means the average of the layers' levels. With exact set, each grid level's
 * allocation is the least-cost one whose levels average to it (dynamic programming over the same
 * curves; on a uniform grid), not nested.
 * What it is not: the rules' parameters at a level (profile_schedule.c, calibrate_stages.c).
 */
#include "model/context.h"
#include "sparse/profile.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sl_alloc_params sl_alloc_default_params(void) {
    sl_alloc_params p;
    memset(&p, 0, sizeof(p));
    p.max_tokens = 4096;
    return p;
}

/* Mean NLL of the sample under the context's current profile. */
static sl_status sample_nll(sl_context *ctx, const int32_t *tokens, const int64_t *starts, int64_t n_win, int32_t window,
                            int64_t n_tokens, double *out, sl_error *err) {
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t w = 0; w < n_win; w++) {
        const int32_t len = (int32_t)(n_tokens - starts[w] < window ? n_tokens - starts[w] : window);
        if (len < 2) continue;
        sl_ppl_result r;
        sl_status st = sl_perplexity(ctx, tokens + starts[w], len, window, NULL, NULL, &r, err);
        if (st) return st;
        sum += r.nll_mean * (double)r.n_scored;
        n += r.n_scored;
    }
    *out = n ? sum / (double)n : 0.0;
    return SL_OK;
}

/* Exact allocation on a uniform grid (levels[g] = g step): for each grid level g, the levels
 * (grid indices at[l], dense layers at 0) of least summed cost sum_l curve[l, at[l]] with
 * sum_l at[l] == g x (sparse layers). Dynamic programming over the layers: best[l][t] = least cost
 * of the first l sparse layers with index sum t. Returns false (alloc untouched) when the grid is
 * not uniform or a sum cannot be reached with finite costs. */
static bool alloc_exact(const double *curve, int32_t L, int32_t G, const float *levels, const bool *sparse, float *alloc) {
    const double step = levels[1] - levels[0];
    for (int32_t g = 0; g < G; g++)
        if (!(step > 0) || fabs(levels[g] - g * step) > 1e-5) return false;
    int32_t n_sparse = 0;
    for (int32_t l = 0; l < L; l++) n_sparse += sparse[l];
    if (n_sparse == 0) return false;
    const int32_t S = (G - 1) * n_sparse + 1; /* index sums 0 .. (G - 1) n_sparse */
    double *best = malloc((size_t)(n_sparse + 1) * S * sizeof(double));
    int32_t *choice = malloc((size_t)(n_sparse + 1) * S * sizeof(int32_t)), *lay = malloc((size_t)n_sparse * sizeof(int32_t));
    bool ok = best && choice && lay;
    if (ok) {
        for (int32_t l = 0, k = 0; l < L; l++)
            if (sparse[l]) lay[k++] = l;
        for (int32_t t = 0; t < S; t++) best[t] = t == 0 ? 0.0 : INFINITY;
        for (int32_t k = 1; k <= n_sparse; k++)
            for (int32_t t = 0; t < S; t++) {
                double b = INFINITY;
                int32_t c = -1;
                for (int32_t g = 0; g < G && g <= t; g++) {
                    const double v = best[(size_t)(k - 1) * S + t - g] + curve[(size_t)lay[k - 1] * G + g];
                    if (v < b) b = v, c = g; /* ties: the lower level for this layer */
                }
                best[(size_t)k * S + t] = b;
                choice[(size_t)k * S + t] = c;
            }
        for (int32_t g = 0; g < G && ok; g++) ok = isfinite(best[(size_t)n_sparse * S + g * n_sparse]);
    }
    if (ok)
        for (int32_t g = 0; g < G; g++) {
            int32_t t = g * n_sparse;
            for (int32_t l = 0; l < L; l++) alloc[(size_t)l * G + g] = 0.0f;
            for (int32_t k = n_sparse; k >= 1; k--) {
                const int32_t c = choice[(size_t)k * S + t];
                alloc[(size_t)lay[k - 1] * G + g] = levels[c];
                t -= c;
            }
        }
    free(best), free(choice), free(lay);
    return ok;
}

sl_status sl_allocate(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_alloc_params *params,
                      sl_profile *profile, double *cost, sl_error *err) {
    sl_clear_error(err);
    sl_alloc_params p = params ? *params : sl_alloc_default_params();
    if (!model || !model->layers || !tokens || n_tokens < 2 || !profile)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "allocate: needs a model, at least 2 tokens and a profile");
    const sl_model_config *c = &model->config;
    const int32_t L = c->n_layer;
    if (profile->n_layer != L) return sl_set_error(err, SL_ERR_INVALID_ARG, "allocate: the profile was made for another model");
    if (profile->n_levels == 0) { /* the default grid 0, 0.05, ..., 0.95 */
        float grid[20];
        for (int g = 0; g < 20; g++) grid[g] = 0.05f * (float)g;
        sl_status st0 = sl_profile_set_levels(profile, grid, 20, err);
        if (st0) return st0;
    }
    const int32_t G = profile->n_levels;
    if (G < 2 || profile->levels[0] != 0.0f)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "allocate: the profile needs a level grid starting at 0 (calibrate it first)");
    for (int32_t l = 0; l < L; l++)
        if (profile->layers[l].info.rule == SL_RULE_PRED_THRESHOLD || profile->layers[l].info.rule == SL_RULE_PRED_STAT_TOPK)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "allocate: layer %d's rule '%s' has no level to move", l,
                                sl_skip_rule_name(profile->layers[l].info.rule));
    const int32_t window = p.n_ctx > 0 ? p.n_ctx : (c->n_ctx_train < 512 ? c->n_ctx_train : 512);
    int64_t want = p.max_tokens > 0 && p.max_tokens < n_tokens ? p.max_tokens : n_tokens;
    const int64_t all_win = (n_tokens + window - 1) / window, full = n_tokens / window > 0 ? n_tokens / window : 1;
    int64_t n_win = (want + window - 1) / window;
    if (n_win > all_win) n_win = all_win;
    int64_t *starts = malloc((size_t)n_win * sizeof(int64_t));
    double *curve = malloc((size_t)L * G * sizeof(double));
    sl_profile_layer *saved = malloc((size_t)L * sizeof(sl_profile_layer));
    float *alloc = malloc((size_t)L * G * sizeof(float));
    int32_t *at = calloc((size_t)L, sizeof(int32_t));
    if (!starts || !curve || !saved || !alloc || !at) {
        free(starts), free(curve), free(saved), free(alloc), free(at);
        return sl_set_error(err, SL_ERR_NOMEM, "allocate: out of memory");
    }
    for (int64_t w = 0; w < n_win; w++) starts[w] = n_win >= all_win ? w * window : (int64_t)((double)w * (double)full / (double)n_win) * window;
    for (int32_t l = 0; l < L; l++) saved[l] = profile->layers[l].info;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = p.n_threads;
    cp.n_batch = window < 256 ? window : 256;
    sl_context *ctx = sl_context_init(model, &cp, err);
    sl_status st = ctx ? SL_OK : (err ? err->code : SL_ERR_NOMEM);
    double base = 0.0;
    /* one attachment: layers are switched to dense and back by their rule, which skip.c reads
     * per call (CATS recomputes its cut-offs when the threshold moves) */
    if (!st) st = sl_context_set_profile(ctx, profile, true, err);
    for (int32_t l = 0; l < L && !st; l++) profile->layers[l].info.rule = SL_RULE_DENSE;
    if (!st) st = sample_nll(ctx, tokens, starts, n_win, window, n_tokens, &base, err);
    const int64_t total = (int64_t)L * (G - 1);
    for (int32_t l = 0; l < L && !st; l++) {
        curve[(size_t)l * G] = 0.0;
        const bool sparse = saved[l].rule != SL_RULE_DENSE;
        for (int32_t g = 1; g < G && !st; g++) {
            double nll = base;
            if (sparse) {
                profile->layers[l].info = saved[l];
                st = sl_profile_set_layer_level(profile, l, profile->levels[g], err);
                if (!st) st = sample_nll(ctx, tokens, starts, n_win, window, n_tokens, &nll, err);
                profile->layers[l].info.rule = SL_RULE_DENSE;
            }
            curve[(size_t)l * G + g] = sparse ? nll - base : INFINITY; /* a dense layer stays at 0 */
            if (p.progress) p.progress(p.progress_ud, (int64_t)l * (G - 1) + g, total);
        }
    }
    sl_context_free(ctx);
    for (int32_t l = 0; l < L; l++) profile->layers[l].info = saved[l];
    if (!st) {
        /* greedy: the mean level rises by (grid step) / L per step; record at every grid level */
        int32_t n_sparse = 0;
        for (int32_t l = 0; l < L; l++) n_sparse += saved[l].rule != SL_RULE_DENSE;
        for (int32_t g = 0; g < G; g++) {
            double target = profile->levels[g] * (double)(n_sparse ? n_sparse : 1), sum = 0.0;
            for (int32_t l = 0; l < L; l++) sum += profile->levels[at[l]];
            while (sum < target - 1e-6) {
                int32_t best = -1;
                double best_cost = INFINITY;
                for (int32_t l = 0; l < L; l++) {
                    if (at[l] + 1 >= G || !isfinite(curve[(size_t)l * G + at[l] + 1])) continue;
                    const double step = profile->levels[at[l] + 1] - profile->levels[at[l]];
                    const double dc = (curve[(size_t)l * G + at[l] + 1] - curve[(size_t)l * G + at[l]]) / step;
                    if (dc < best_cost) best_cost = dc, best = l;
                }
                if (best < 0) break; /* every layer at its top level */
                sum += profile->levels[at[best] + 1] - profile->levels[at[best]];
                at[best]++;
            }
            for (int32_t l = 0; l < L; l++) alloc[(size_t)l * G + g] = profile->levels[at[l]];
        }
        if (p.exact) {
            bool *sp = malloc((size_t)L * sizeof(bool));
            for (int32_t l = 0; sp && l < L; l++) sp[l] = saved[l].rule != SL_RULE_DENSE;
            if (sp) alloc_exact(curve, L, G, profile->levels, sp, alloc); /* else the greedy's stays */
            free(sp);
        }
        st = sl_profile_set_allocation(profile, alloc, err);
        if (cost) memcpy(cost, curve, (size_t)L * G * sizeof(double));
    }
    free(starts), free(curve), free(saved), free(alloc), free(at);
    return st;
}
