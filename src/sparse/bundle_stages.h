/*
 * bundle_stages.h — the neuron-bundle MLP of one token split at the point where a two-stage
 * rule decides (internal): first the products h_i = act(g_i) * u_i of the candidates (their
 * gate and up rows), then, once the rule has chosen from those products, the down rows of the
 * chosen neurons only.
 *
 * What it is for: the two-stage skip rules (skip_stages.c), whose down rows are chosen from
 * |act(g) * u|, which is not known before the gate and up rows are read. The two passes read
 * exactly the bytes the rule needs (each candidate's gate/up rows once, each chosen neuron's
 * down row once); sl_bundle_forward (model/bundle_mlp.h) is the one-pass form for rules that know
 * the neurons in advance. Both are the model's bundle passes (sl_bundle_gate_up, sl_bundle_down)
 * with the activation applied between them. What it is not: the rule (select.c) or the bundle
 * layout (model/bundle.c).
 */
#ifndef SL_SPARSE_BUNDLE_STAGES_H
#define SL_SPARSE_BUNDLE_STAGES_H

#include "model/bundle_mlp.h"

/* h[k] = act(g_i) * (up_i . x) for i = cand[k], k < n; g_i = gate_i . x from the bundle's gate
 * rows, or gate_pre[i] when gate_pre ([I]) is given (then the gate rows are not read).
 * cand: distinct neurons in [0, I), any order (ascending streams best). */
sl_status sl_stage_products(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                             const int32_t *cand, int32_t n, const float *gate_pre, float *h, sl_error *err);

/* out[H] = sum over k < n of coef[k] * down_t row idx[k] (the down projection of the chosen
 * neurons; n = 0 gives zeros), as sl_bundle_down sums them. */
sl_status sl_stage_down(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const int32_t *idx, const float *coef,
                         int32_t n, float *out, sl_error *err);

#endif
