/*
 * select.c — the neuron selection rules (see select.h): per token, and one shared set for the
 * tokens of a decoding batch. What it is not: where the scores come from (skip.c).
 */
#include "sparse/select.h"

#include "kernels/activation.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

float sl_normal_quantile(double p) {
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return (float)(0.5 * (lo + hi));
}

/* Unsigned keys in the order of the floats: flip all bits of negatives, the sign bit of the rest. */
static inline uint32_t order_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float key_value(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float sl_kth_largest(const float *v, int32_t n, int32_t k, void *tmp) {
    uint32_t *key = tmp;
    /* digits of 12, 12 and 8 bits from the top: each pass counts the candidates by their next
     * digit, walks the counts from the largest digit down to the one holding the k-th, and keeps
     * only the candidates with that digit (compacted in place, without branches) */
    static const int shift[3] = {20, 8, 0}, width[3] = {12, 12, 8};
    uint32_t hist[1 << 12];
    uint32_t prefix = 0, want = (uint32_t)k;
    int32_t m = n;
    for (int32_t i = 0; i < n; i++) key[i] = order_key(v[i]);
    for (int p = 0; p < 3; p++) {
        const uint32_t nb = 1u << width[p], sh = (uint32_t)shift[p];
        memset(hist, 0, nb * sizeof(uint32_t));
        for (int32_t i = 0; i < m; i++) hist[(key[i] >> sh) & (nb - 1)]++;
        uint32_t d = nb - 1;
        while (d > 0 && want > hist[d]) want -= hist[d--];
        prefix |= d << sh;
        if (p == 2) break;
        int32_t c = 0;
        for (int32_t i = 0; i < m; i++) {
            key[c] = key[i];
            c += ((key[i] >> sh) & (nb - 1)) == d;
        }
        m = c;
    }
    return key_value(prefix);
}

/* Largest float in [lo, hi] at which |act| <= t, given |act(lo)| <= t < |act(hi)| and |act|
 * monotone between them (either direction is handled by `rising`). Bisection over floats. */
static float cats_edge(sl_activation act, float lo, float hi, float t, bool rising) {
    /* rising: |act| <= t at lo, > t at hi; otherwise > t at lo, <= t at hi */
    for (int i = 0; i < 400; i++) {
        float mid = lo + (hi - lo) * 0.5f;
        if (!(mid > lo && mid < hi)) break;
        bool above = fabsf(sl_activate(act, mid)) > t;
        if (above == rising) hi = mid;
        else lo = mid;
    }
    return rising ? lo : hi;
}

void sl_cats_cut_init(sl_cats_cut *c, sl_activation act, float t) {
    c->t = t;
    c->act = act;
    c->a = c->b = 0.0f;
    if (isnan(t)) { /* |act| > NaN never holds */
        c->hi = INFINITY;
        return;
    }
    if (t < 0.0f) { /* every finite |act| holds */
        c->hi = -INFINITY;
        return;
    }
    /* above zero: |act| rises from 0 past t (act(g) > g - 0.3 for these activations) */
    float top = 2.0f * t + 1.0f;
    c->hi = fabsf(sl_activate(act, top)) > t ? cats_edge(act, 0.0f, top, t, true) : INFINITY;
    /* below zero: the dip; its lowest point by ternary search (only its depth matters) */
    double lo = -20.0, hi = 0.0;
    for (int i = 0; i < 80; i++) {
        double m1 = lo + (hi - lo) / 3.0, m2 = hi - (hi - lo) / 3.0;
        if (sl_activate(act, (float)m1) < sl_activate(act, (float)m2)) hi = m2;
        else lo = m1;
    }
    const float m = (float)(0.5 * (lo + hi));
    if (!(fabsf(sl_activate(act, m)) > t)) return; /* the dip never reaches -t: nothing below zero */
    c->a = cats_edge(act, -FLT_MAX, m, t, true);  /* |act| <= t at and left of a */
    c->b = cats_edge(act, m, 0.0f, t, false);     /* |act| <= t at and right of b */
}

int32_t sl_select_topk(const float *s, int32_t n, int32_t k, void *tmp, int32_t *idx) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    const float v = sl_kth_largest(s, n, k, tmp);
    /* the strictly larger ones, and as many ties at v as k still needs, by increasing index: one
     * ascending list (the exact down columns of the neuron bundles sum a block column's entries
     * together only when they follow each other) */
    int32_t need = k, m = 0;
    for (int32_t i = 0; i < n; i++) need -= s[i] > v;
    for (int32_t i = 0; i < n; i++) {
        const int32_t tie = s[i] == v, take = (s[i] > v) | (tie & (need > 0));
        idx[m] = i;
        m += take;
        need -= tie & take;
    }
    return m;
}

int32_t sl_select_candidates(const sl_profile_layer *P, const float *s, int32_t I, sl_activation act, float *work, void *tmp,
                             int32_t *idx) {
    if (P->rule != SL_RULE_TWO_STAGE) return sl_select_topk(s, I, P->cand_k, tmp, idx);
    for (int32_t i = 0; i < I; i++) work[i] = fabsf(sl_activate(act, s[i]));
    return sl_select_topk(work, I, P->cand_k, tmp, idx);
}

int32_t sl_select_stage2(const float *h, const float *w, const int32_t *cand, int32_t n, int32_t k, float *work, void *tmp,
                         int32_t *pos) {
    if (w)
        for (int32_t j = 0; j < n; j++) work[j] = fabsf(h[j]) * w[cand[j]];
    else
        for (int32_t j = 0; j < n; j++) work[j] = fabsf(h[j]);
    return sl_select_topk(work, n, k, tmp, pos);
}

int32_t sl_select_active(const sl_profile_layer *P, float stat_z, const sl_cats_cut *cut, const float *s, int32_t I,
                         sl_activation act, void *tmp, int32_t *idx) {
    /* every loop below writes the candidate index and advances only when it is selected: no
     * branch on the (random) scores */
    int32_t n = 0;
    switch (P->rule) {
    case SL_RULE_CATS: {
        sl_cats_cut local;
        if (!cut || cut->act != act || !(cut->t == P->threshold || (isnan(cut->t) && isnan(P->threshold)))) {
            sl_cats_cut_init(&local, act, P->threshold);
            cut = &local;
        }
        const float hi = cut->hi, a = cut->a, b = cut->b;
        for (int32_t i = 0; i < I; i++) {
            idx[n] = i;
            n += (s[i] > hi) | ((s[i] > a) & (s[i] < b));
        }
        break;
    }
    case SL_RULE_PRED_THRESHOLD: {
        const float thr = P->threshold;
        for (int32_t i = 0; i < I; i++) {
            idx[n] = i;
            n += s[i] > thr;
        }
        break;
    }
    case SL_RULE_PRED_TOPK: n = sl_select_topk(s, I, P->topk, tmp, idx); break;
    case SL_RULE_TWO_STAGE_PRED: n = sl_select_topk(s, I, P->cand_k, tmp, idx); break;
    case SL_RULE_PRED_STAT_TOPK: {
        double sum = 0.0, sq = 0.0;
        for (int32_t i = 0; i < I; i++) sum += s[i], sq += (double)s[i] * s[i];
        const double mean = sum / I, var = sq / I - mean * mean;
        const float thr = (float)(mean + sqrt(var > 0 ? var : 0) * stat_z);
        for (int32_t i = 0; i < I; i++) {
            idx[n] = i;
            n += s[i] > thr;
        }
        break;
    }
    case SL_RULE_DENSE:
    default:
        for (int32_t i = 0; i < I; i++) idx[n++] = i;
        break;
    }
    return n;
}

/* weight of the plain z beside max(0, z): orders the neurons no token rates above its average
 * (a token's scores are skewed, so fewer than half may be above it, and k can be larger) */
#define SHARED_TIE 1e-3f

int32_t sl_select_shared(const sl_profile_layer *P, const float *s, int B, int32_t I, int32_t k, sl_activation act, float *comb,
                         void *tmp, int32_t *idx) {
    const bool cats = P->rule == SL_RULE_CATS;
    float *v = tmp; /* one token's rule quantity; tmp is free again before the top-k */
    if (B == 1) {
        if (cats)
            for (int32_t i = 0; i < I; i++) comb[i] = fabsf(sl_activate(act, s[i]));
        else
            memcpy(comb, s, (size_t)I * sizeof(float));
        return sl_select_topk(comb, I, k, tmp, idx);
    }
    memset(comb, 0, (size_t)I * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *sb = s + (size_t)b * I;
        const float *q = sb;
        if (cats) {
            for (int32_t i = 0; i < I; i++) v[i] = fabsf(sl_activate(act, sb[i]));
            q = v;
        }
        double sum = 0.0, sq = 0.0;
        for (int32_t i = 0; i < I; i++) sum += q[i];
        const double mean = sum / I;
        for (int32_t i = 0; i < I; i++) sq += ((double)q[i] - mean) * ((double)q[i] - mean);
        const double sd = sqrt(sq / I);
        if (!(sd > 0.0) || !isfinite(sd)) continue; /* a constant (or non-finite) row ranks nothing */
        const float fm = (float)mean, inv = (float)(1.0 / sd);
        for (int32_t i = 0; i < I; i++) {
            const float z = (q[i] - fm) * inv;
            comb[i] += (z > 0.0f ? z : 0.0f) + SHARED_TIE * z;
        }
    }
    return sl_select_topk(comb, I, k, tmp, idx);
}
