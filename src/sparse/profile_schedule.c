/*
 * profile_schedule.c — what a profile's `--sparsity` means (see skipllama_sparse.h): setting a
 * layer to a level (CATS thresholds from the quantile table, top-k counts, two-stage fractions
 * from the layer's split table), the schedule tables themselves (the level grid, two-stage
 * splits, per-layer allocation) and the profile-wide sparsity through the allocation.
 * What it is not: the file format (profile.c) or how the tables are chosen (calibrate.c, tune).
 */
#include "sparse/profile.h"

#include "util/util.h"

#include <math.h>
#include <string.h>

float sl_profile_cats_threshold(const sl_profile *p, int32_t layer, float q) {
    if (!p || layer < 0 || layer >= p->n_layer || !(q >= 0.0f) || q > 1.0f) return NAN;
    const float *t = p->layers[layer].cats_q;
    float pos = q * (float)(SL_PROFILE_N_QUANTILES - 1);
    int i = (int)pos;
    if (i >= SL_PROFILE_N_QUANTILES - 1) return t[SL_PROFILE_N_QUANTILES - 1];
    float f = pos - (float)i;
    return t[i] + f * (t[i + 1] - t[i]);
}

/* Linear interpolation of table t over the profile's grid at s (clamped to the grid's ends). */
static float interp(const sl_profile *p, const float *t, float s) {
    const int n = p->n_levels;
    if (n <= 0) return NAN;
    if (!(s > p->levels[0])) return t[0];
    if (s >= p->levels[n - 1]) return t[n - 1];
    int g = 0;
    while (g + 1 < n && p->levels[g + 1] <= s) g++;
    const float f = (s - p->levels[g]) / (p->levels[g + 1] - p->levels[g]);
    return t[g] + f * (t[g + 1] - t[g]);
}

sl_status sl_profile_set_levels(sl_profile *p, const float *levels, int32_t n, sl_error *err) {
    if (!p || n < 0 || n > SL_PROFILE_MAX_LEVELS || (n > 0 && !levels))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: a level grid needs 0..%d levels", SL_PROFILE_MAX_LEVELS);
    for (int32_t g = 0; g < n; g++)
        if (!(levels[g] >= 0.0f && levels[g] < 1.0f) || (g > 0 && !(levels[g] > levels[g - 1])))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: levels must be ascending in [0, 1) (level %d is %g)", g, (double)levels[g]);
    p->n_levels = n;
    if (n) memcpy(p->levels, levels, (size_t)n * sizeof(float));
    p->has_alloc = false;
    for (int32_t l = 0; l < p->n_layer; l++) p->layers[l].has_split = p->layers[l].has_gate = false;
    return SL_OK;
}

int32_t sl_profile_get_levels(const sl_profile *p, float *levels) {
    if (levels && p->n_levels) memcpy(levels, p->levels, (size_t)p->n_levels * sizeof(float));
    return p->n_levels;
}

sl_status sl_profile_set_split(sl_profile *p, int32_t layer, const float *cand, const float *keep, sl_error *err) {
    if (!p || layer < 0 || layer >= p->n_layer) return sl_set_error(err, SL_ERR_RANGE, "profile: layer %d out of range", layer);
    sl_profile_layer_data *L = &p->layers[layer];
    if (!cand && !keep) {
        L->has_split = false;
        return SL_OK;
    }
    if (!cand || !keep || p->n_levels < 1) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: a split needs the level grid and both tables");
    for (int32_t g = 0; g < p->n_levels; g++)
        if (!(keep[g] >= 0.0f && keep[g] <= cand[g] && cand[g] <= 1.0f))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d level %d: split needs 0 <= keep (%g) <= cand (%g) <= 1", layer, g,
                                (double)keep[g], (double)cand[g]);
    memcpy(L->split_cand, cand, (size_t)p->n_levels * sizeof(float));
    memcpy(L->split_keep, keep, (size_t)p->n_levels * sizeof(float));
    L->has_split = true;
    L->has_gate = false;
    return SL_OK;
}

sl_status sl_profile_set_split_gate(sl_profile *p, int32_t layer, const float *gate, sl_error *err) {
    if (!p || layer < 0 || layer >= p->n_layer) return sl_set_error(err, SL_ERR_RANGE, "profile: layer %d out of range", layer);
    sl_profile_layer_data *L = &p->layers[layer];
    if (!gate) {
        L->has_gate = false;
        return SL_OK;
    }
    if (!L->has_split) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: a gate table needs the layer's split first", layer);
    for (int32_t g = 0; g < p->n_levels; g++)
        if (!(gate[g] >= L->split_cand[g] && gate[g] <= 1.0f))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d level %d: gate fraction %g must lie in [cand (%g), 1]", layer, g,
                                (double)gate[g], (double)L->split_cand[g]);
    memcpy(L->split_gate, gate, (size_t)p->n_levels * sizeof(float));
    L->has_gate = true;
    return SL_OK;
}

bool sl_profile_get_split_gate(const sl_profile *p, int32_t layer, float s, float *gate) {
    if (!p || layer < 0 || layer >= p->n_layer || !p->layers[layer].has_split || !p->layers[layer].has_gate) return false;
    *gate = interp(p, p->layers[layer].split_gate, s);
    return true;
}

bool sl_profile_get_split(const sl_profile *p, int32_t layer, float s, float *cand, float *keep) {
    if (!p || layer < 0 || layer >= p->n_layer || !p->layers[layer].has_split) return false;
    *cand = interp(p, p->layers[layer].split_cand, s);
    *keep = interp(p, p->layers[layer].split_keep, s);
    return true;
}

sl_status sl_profile_set_allocation(sl_profile *p, const float *alloc, sl_error *err) {
    if (!p) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: NULL profile");
    if (!alloc) {
        p->has_alloc = false;
        return SL_OK;
    }
    if (p->n_levels < 1) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: an allocation needs the level grid");
    for (int32_t k = 0; k < p->n_layer * p->n_levels; k++)
        if (!(alloc[k] >= 0.0f && alloc[k] < 1.0f))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: allocation entry %d (%g) outside [0, 1)", k, (double)alloc[k]);
    for (int32_t l = 0; l < p->n_layer; l++) memcpy(p->layers[l].alloc, alloc + (size_t)l * p->n_levels, (size_t)p->n_levels * sizeof(float));
    p->has_alloc = true;
    return SL_OK;
}

float sl_profile_layer_level(const sl_profile *p, int32_t layer, float s) {
    if (!p || layer < 0 || layer >= p->n_layer || !p->has_alloc) return s;
    const float v = interp(p, p->layers[layer].alloc, s);
    return v < 0.0f ? 0.0f : v;
}

static int32_t frac_count(float f, int32_t I) {
    int32_t k = (int32_t)lroundf(f * (float)I);
    return k < 1 ? 1 : k > I ? I : k;
}

sl_status sl_profile_set_layer_level(sl_profile *p, int32_t l, float s, sl_error *err) {
    if (!p || l < 0 || l >= p->n_layer) return sl_set_error(err, SL_ERR_RANGE, "profile: layer %d out of range", l);
    if (!(s >= 0.0f) || s >= 1.0f) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: sparsity %g outside [0, 1)", (double)s);
    sl_profile_layer *L = &p->layers[l].info;
    switch (L->rule) {
    case SL_RULE_CATS: {
        float t = sl_profile_cats_threshold(p, l, s);
        if (isnan(t)) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d has no calibration quantiles to set a CATS sparsity from", l);
        L->threshold = t;
        L->target_sparsity = s;
        break;
    }
    case SL_RULE_PRED_TOPK:
    case SL_RULE_PRED_STAT_TOPK: {
        int32_t k = (int32_t)lroundf((1.0f - s) * (float)p->n_ff);
        L->topk = k < 1 ? 1 : k;
        L->target_sparsity = s;
        break;
    }
    case SL_RULE_TWO_STAGE:
    case SL_RULE_TWO_STAGE_PRED: {
        float a, d;
        if (!sl_profile_get_split(p, l, s, &a, &d)) {
            d = L->rule == SL_RULE_TWO_STAGE ? 0.8f * (1.0f - s) : 1.0f - s;
            a = L->rule == SL_RULE_TWO_STAGE ? fminf(1.0f, 1.2f * (1.0f - s)) : d;
        }
        L->cand_k = frac_count(a, p->n_ff);
        L->topk = frac_count(d, p->n_ff);
        if (L->topk > L->cand_k) L->topk = L->cand_k;
        float gf;
        L->gate_k = 0; /* a gate stage only from the layer's table */
        if (L->rule == SL_RULE_TWO_STAGE_PRED && sl_profile_get_split_gate(p, l, s, &gf)) {
            const int32_t gk = frac_count(gf, p->n_ff);
            L->gate_k = gk > L->cand_k ? gk : 0;
        }
        L->target_sparsity = s;
        break;
    }
    default: break;
    }
    return SL_OK;
}

sl_status sl_profile_set_sparsity(sl_profile *p, float s, sl_error *err) {
    if (!(s >= 0.0f) || s >= 1.0f) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: sparsity %g outside [0, 1)", (double)s);
    for (int32_t l = 0; l < p->n_layer; l++) {
        float sl = sl_profile_layer_level(p, l, s);
        if (sl >= 1.0f) sl = nextafterf(1.0f, 0.0f);
        sl_status st = sl_profile_set_layer_level(p, l, sl, err);
        if (st) return st;
    }
    return SL_OK;
}
