/*
 * select.h — choosing a token's active MLP neurons from its scores (internal).
 *
 * One implementation of the profile rules (CATS threshold, predictor threshold, top-k,
 * statistical top-k), shared by decoding (skip.c) and by predictor training (predictor_train.c),
 * which must pick its thresholds with exactly the decisions decoding will make.
 */
#ifndef SL_SELECT_H
#define SL_SELECT_H

#include "skipllama.h"

#include <stdint.h>

/* z with Phi(z) = p (standard normal), p in (0, 1), by bisection on 0.5 * erfc(-z / sqrt(2)). */
float sl_normal_quantile(double p);

/* The k-th largest of v[0..n) (1 <= k <= n), by quickselect on a copy in tmp [n]. */
float sl_kth_largest(const float *v, int32_t n, int32_t k, float *tmp);

/* The active neurons of one token under rule P, from its scores s [I] (gate pre-activations for
 * CATS, predictor scores otherwise), written to idx in increasing order... except that top-k
 * ties at the k-th value are taken by increasing index after the strictly larger ones.
 * stat_z = sl_normal_quantile(1 - topk / I) for PRED_STAT_TOPK (precomputed by the caller).
 * tmp: I floats of scratch. Returns how many. DENSE selects all. */
int32_t sl_select_active(const sl_profile_layer *P, float stat_z, const float *s, int32_t I, sl_activation act, float *tmp,
                         int32_t *idx);

#endif
