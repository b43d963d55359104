/*
 * bundle_stages.c — the two passes of a two-stage token (bundle_stages.h) over the model's neuron
 * bundles: the candidates' gate/up products through sl_bundle_gate_up with the activation applied
 * here, the chosen neurons' down rows through sl_bundle_down.
 * What it is not: the rule (select.c), the kernels or the passes themselves (model/bundle_mlp.c).
 */
#include "sparse/bundle_stages.h"

#include "kernels/activation.h"
#include "util/util.h"

#include <stdlib.h>

sl_status sl_stage_products(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                             const int32_t *cand, int32_t n, const float *gate_pre, float *h, sl_error *err) {
    if (!b || !x || !h || n < 0 || (n > 0 && !cand)) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle stages: NULL argument");
    if (n == 0) return SL_OK;
    if (gate_pre) { /* u into h, then h = act(gate_pre) * u */
        sl_status st = sl_bundle_gate_up(b, pool, ws, x, cand, n, NULL, h, err);
        if (st) return st;
        for (int32_t k = 0; k < n; k++) h[k] *= sl_activate(act, gate_pre[cand[k]]);
        return SL_OK;
    }
    float *g = malloc((size_t)n * sizeof(float));
    if (!g) return sl_set_error(err, SL_ERR_NOMEM, "bundle stages: out of memory for %d gate products", n);
    sl_status st = sl_bundle_gate_up(b, pool, ws, x, cand, n, g, h, err);
    if (!st)
        for (int32_t k = 0; k < n; k++) h[k] *= sl_activate(act, g[k]);
    free(g);
    return st;
}

sl_status sl_stage_down(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const int32_t *idx, const float *coef,
                         int32_t n, float *out, sl_error *err) {
    if (!b || !out || n < 0 || (n > 0 && (!idx || !coef))) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle stages: NULL argument");
    return sl_bundle_down(b, pool, ws, idx, coef, n, out, err);
}
