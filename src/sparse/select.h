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

/* The k-th largest of v[0..n) (1 <= k <= n), by a three-pass radix select on order-preserving
 * integer keys written to tmp [n] (4-byte elements): no data-dependent branches, so random
 * scores cost the same as sorted ones. */
float sl_kth_largest(const float *v, int32_t n, int32_t k, void *tmp);

/* The CATS test |act(g)| > t moved onto the pre-activation g: for the activations supported
 * (SiLU, GELU, ReLU: act(0) = 0, one minimum below zero, increasing without bound above it) it
 * holds when g > hi or a < g < b, with hi, a, b found once by bisection over floats on the same
 * act() the dense path uses — so the selection needs no exp() per neuron. The two tests agree
 * except where |act(g)| is within a few ulps of t (the float act() is not exactly monotone at
 * the flat bottom of the dip): tests/test_select.c checks both on random values and on the
 * floats next to every cut-off. */
typedef struct sl_cats_cut {
    float t;            /* the threshold these cut-offs are for */
    sl_activation act;  /* and the activation */
    float hi;           /* selected when g > hi (+inf: never) */
    float a, b;         /* ... or when a < g < b (the negative dip; a >= b: empty) */
} sl_cats_cut;
void sl_cats_cut_init(sl_cats_cut *cut, sl_activation act, float t);

/* The active neurons of one token under rule P, from its scores s [I] (gate pre-activations for
 * CATS, predictor scores otherwise), written to idx [I] in increasing order (top-k: the strictly
 * larger scores and, by increasing index, as many ties at the k-th value as k needs).
 * stat_z = sl_normal_quantile(1 - topk / I) for PRED_STAT_TOPK (precomputed by the caller).
 * cut: for CATS, the cut-offs of (act, P->threshold) if the caller keeps them (NULL, or a cut for
 * another threshold, computes them here: ~10 us). tmp: I 4-byte elements of scratch. Returns how
 * many. DENSE selects all. Two-stage rules: TWO_STAGE_PRED gives its stage-1 candidates;
 * TWO_STAGE needs I floats more (sl_select_candidates) and selects all here. */
int32_t sl_select_active(const sl_profile_layer *P, float stat_z, const sl_cats_cut *cut, const float *s, int32_t I,
                         sl_activation act, void *tmp, int32_t *idx);

/* The k largest of s[0..n): their indices, those strictly above the k-th value in increasing
 * order, then ties at the k-th value by increasing index (the PRED_TOPK rule). k is clamped to
 * n; k <= 0 selects nothing. tmp: n 4-byte elements. Returns how many (min(k, n)). */
int32_t sl_select_topk(const float *s, int32_t n, int32_t k, void *tmp, int32_t *idx);

/* Two-stage rules, stage 1: the cand_k candidates of one token. TWO_STAGE: s = gate
 * pre-activations, ranked by |act(s_i)| (written to work [I]); TWO_STAGE_PRED: s = predictor
 * scores, ranked as they are. Same order and ties as sl_select_topk. tmp: I 4-byte elements. */
int32_t sl_select_candidates(const sl_profile_layer *P, const float *s, int32_t I, sl_activation act, float *work, void *tmp,
                             int32_t *idx);

/* Two-stage rules, stage 2: of n candidates cand[0..n) with products h[0..n) = act(g) * u, the
 * k with the largest |h[j]| * w[cand[j]] (w: per-neuron weights such as ||down[:, i]||, or NULL
 * for 1). Writes their positions j (same order and ties as sl_select_topk) to pos and returns
 * how many. work: n floats, tmp: n 4-byte elements. */
int32_t sl_select_stage2(const float *h, const float *w, const int32_t *cand, int32_t n, int32_t k, float *work, void *tmp,
                         int32_t *pos);

/* Batch selection "shared" (sl_batch_select): one set of k neurons for B tokens, the k largest
 * combined scores c_i = sum_b (max(0, z_bi) + 0.001 z_bi), z_bi = (v_bi - mean_b) / sd_b (the small
 * plain term only orders neurons that no token rates above its average), where v_b is token b's
 * rule quantity (CATS: |act(s_bi)|, the quantity its threshold cuts; the score otherwise)
 * standardised over its I neurons (a constant row adds 0): each token votes for the neurons it
 * rates above its own average, by how far above, and never against a neuron (on tiny-silu this
 * beat the plain sum of z, the raw sum and a count of votes: docs/server.md). With B = 1, c = v
 * (any monotone map ranks alike): the set is the token's own top k, i.e. its own selection when
 * k is its own count. s: [B, I] scores. comb: [I]
 * floats (the combined scores on return); tmp: I 4-byte elements. Writes the set to idx in
 * increasing order (ties as sl_select_topk) and returns its size, min(max(k, 0), I). */
int32_t sl_select_shared(const sl_profile_layer *P, const float *s, int B, int32_t I, int32_t k, sl_activation act, float *comb,
                         void *tmp, int32_t *idx);

#endif
