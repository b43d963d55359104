/*
 * select.c — the per-token neuron selection rules (see select.h).
 */
#include "select.h"

#include "forward.h"

#include <math.h>
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

float sl_kth_largest(const float *v, int32_t n, int32_t k, float *tmp) {
    memcpy(tmp, v, (size_t)n * sizeof(float));
    int32_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = tmp[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] > pivot) i++;
            while (tmp[j] < pivot) j--;
            if (i <= j) {
                float t = tmp[i];
                tmp[i] = tmp[j];
                tmp[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return tmp[want];
}

int32_t sl_select_active(const sl_profile_layer *P, float stat_z, const float *s, int32_t I, sl_activation act, float *tmp,
                         int32_t *idx) {
    int32_t n = 0;
    switch (P->rule) {
    case SL_RULE_CATS:
        for (int32_t i = 0; i < I; i++)
            if (fabsf(sl_activate(act, s[i])) > P->threshold) idx[n++] = i;
        break;
    case SL_RULE_PRED_THRESHOLD:
        for (int32_t i = 0; i < I; i++)
            if (s[i] > P->threshold) idx[n++] = i;
        break;
    case SL_RULE_PRED_TOPK: {
        const int32_t k = P->topk < I ? P->topk : I;
        const float v = sl_kth_largest(s, I, k, tmp);
        for (int32_t i = 0; i < I; i++)
            if (s[i] > v) idx[n++] = i;
        for (int32_t i = 0; i < I && n < k; i++)
            if (s[i] == v) idx[n++] = i;
        break;
    }
    case SL_RULE_PRED_STAT_TOPK: {
        double sum = 0.0, sq = 0.0;
        for (int32_t i = 0; i < I; i++) sum += s[i], sq += (double)s[i] * s[i];
        const double mean = sum / I, var = sq / I - mean * mean;
        const float thr = (float)(mean + sqrt(var > 0 ? var : 0) * stat_z);
        for (int32_t i = 0; i < I; i++)
            if (s[i] > thr) idx[n++] = i;
        break;
    }
    case SL_RULE_DENSE:
    default:
        for (int32_t i = 0; i < I; i++) idx[n++] = i;
        break;
    }
    return n;
}
