/*
 * skip_stages.c — the skip model's two-stage token (see skip_stages.h): the candidates'
 * products h = act(g) * u over their bundles, stage 2 on |h| * ||down[:, i]||, and the down rows
 * of the chosen neurons; the gate stage of two-stage-pred (gate rows of the predictor's
 * candidates, the top of them by |act(g)| go on); plus the column norms of down and the byte accounting of every rule.
 * What it is not: the rules' definitions (select.c) or the skip model's state (skip.c).
 */
#include "sparse/skip_stages.h"

#include "format/quant.h"
#include "kernels/activation.h"
#include "sparse/bundle_stages.h"
#include "sparse/select.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sl_status sl_stage_scratch_init(sl_stage_scratch *s, int32_t n_ff, sl_error *err) {
    memset(s, 0, sizeof(*s));
    const size_t I = (size_t)n_ff;
    s->h = sl_calloc_array(I, sizeof(float));
    s->work = sl_calloc_array(I, sizeof(float));
    s->coef = sl_calloc_array(I, sizeof(float));
    s->pos = sl_calloc_array(I, sizeof(int32_t));
    s->tmp = sl_calloc_array(I, sizeof(uint32_t));
    s->gate = sl_calloc_array(I, sizeof(float));
    if (!s->h || !s->work || !s->coef || !s->pos || !s->tmp || !s->gate) {
        sl_stage_scratch_free(s);
        return sl_set_error(err, SL_ERR_NOMEM, "two-stage: out of memory for scratch");
    }
    return SL_OK;
}

void sl_stage_scratch_free(sl_stage_scratch *s) {
    if (!s) return;
    sl_free_aligned(s->h);
    sl_free_aligned(s->work);
    sl_free_aligned(s->coef);
    sl_free_aligned(s->pos);
    sl_free_aligned(s->tmp);
    sl_free_aligned(s->gate);
    memset(s, 0, sizeof(*s));
}

sl_status sl_stage_token(const sl_profile_layer *P, const sl_neuron_bundle *b, const float *down_w, sl_pool *pool,
                         sl_bundle_ws *bws, sl_stage_scratch *s, sl_activation act, const float *x, int32_t *idx, int32_t n,
                         const float *gate_pre, float *out, int32_t *n_out, double *t_stage2, sl_error *err) {
    sl_status st = sl_stage_products(b, pool, bws, act, x, idx, n, gate_pre, s->h, err);
    if (st) return st;
    const double t0 = t_stage2 ? sl_time_s() : 0.0;
    const int32_t m = sl_select_stage2(s->h, down_w, idx, n, P->topk, s->work, s->tmp, s->pos);
    /* the chosen neurons replace the candidates (pos is increasing up to ties, so in place) */
    for (int32_t j = 0; j < m; j++) s->coef[j] = s->h[s->pos[j]];
    for (int32_t j = 0; j < m; j++) s->pos[j] = idx[s->pos[j]];
    memcpy(idx, s->pos, (size_t)m * sizeof(int32_t));
    if (t_stage2) *t_stage2 += sl_time_s() - t0;
    *n_out = m;
    return sl_stage_down(b, pool, bws, idx, s->coef, m, out, err);
}

sl_status sl_down_col_norms(const sl_weight *down, float *out, sl_error *err) {
    const int64_t H = down->rows, I = down->cols;
    float *row = malloc((size_t)I * sizeof(float));
    double *acc = calloc((size_t)I, sizeof(double));
    if (!row || !acc) {
        free(row);
        free(acc);
        return sl_set_error(err, SL_ERR_NOMEM, "two-stage: out of memory for down norms");
    }
    for (int64_t r = 0; r < H; r++) {
        sl_dequantize_row_ref(down->type, (const uint8_t *)down->data + (size_t)r * down->row_bytes, row, I);
        for (int64_t i = 0; i < I; i++) acc[i] += (double)row[i] * row[i];
    }
    for (int64_t i = 0; i < I; i++) out[i] = (float)sqrt(acc[i]);
    free(row);
    free(acc);
    return SL_OK;
}

sl_status sl_stage_gate(const sl_profile_layer *P, const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *bws, sl_stage_scratch *s,
                        sl_activation act, const float *x, int32_t *idx, int32_t n, int32_t *n_out, sl_error *err) {
    *n_out = n;
    if (n <= P->cand_k) { /* every listed neuron goes on: gate products only */
        sl_status st = sl_bundle_gate_up(b, pool, bws, x, idx, n, s->h, NULL, err);
        for (int32_t k = 0; k < n && !st; k++) s->gate[idx[k]] = s->h[k];
        return st;
    }
    sl_status st = sl_bundle_gate_up(b, pool, bws, x, idx, n, s->h, NULL, err); /* gate rows only */
    if (st) return st;
    for (int32_t k = 0; k < n; k++) s->work[k] = fabsf(sl_activate(act, s->h[k]));
    const int32_t m = sl_select_topk(s->work, n, P->cand_k, s->tmp, s->pos);
    for (int32_t k = 0; k < m; k++) {
        const int32_t j = s->pos[k];
        s->gate[idx[j]] = s->h[j];
        s->pos[k] = idx[j];
    }
    memcpy(idx, s->pos, (size_t)m * sizeof(int32_t));
    *n_out = m;
    return SL_OK;
}

static int64_t weight_bytes(const sl_weight *w) { return (int64_t)w->row_bytes * w->rows; }

int64_t sl_mlp_gate_stage_bytes(const sl_layer *L, const sl_profile_layer_data *PD, int64_t n_gate, int64_t n_cand, int64_t n_active) {
    const int64_t I = L->ffn_gate.rows, g = (int64_t)L->ffn_gate.row_bytes, u = (int64_t)L->ffn_up.row_bytes;
    const int64_t pred = PD->info.rank > 0 ? weight_bytes(&PD->pred_a) + weight_bytes(&PD->pred_b) : 0;
    return pred + n_gate * g + n_cand * u + n_active * weight_bytes(&L->ffn_down) / I;
}

int64_t sl_mlp_dense_bytes(const sl_layer *L) {
    return weight_bytes(&L->ffn_gate) + weight_bytes(&L->ffn_up) + weight_bytes(&L->ffn_down);
}

int64_t sl_mlp_rule_bytes(const sl_layer *L, const sl_profile_layer_data *PD, int64_t n_cand, int64_t n_active) {
    const int64_t I = L->ffn_gate.rows, g = (int64_t)L->ffn_gate.row_bytes, u = (int64_t)L->ffn_up.row_bytes;
    const int64_t d_all = weight_bytes(&L->ffn_down);
    const int64_t pred = PD->info.rank > 0 ? weight_bytes(&PD->pred_a) + weight_bytes(&PD->pred_b) : 0;
    const int64_t down = n_active * d_all / I;
    switch (PD->info.rule) {
    case SL_RULE_CATS: return I * g + n_active * u + down;
    case SL_RULE_PRED_THRESHOLD:
    case SL_RULE_PRED_TOPK:
    case SL_RULE_PRED_STAT_TOPK: return pred + n_active * (g + u) + down;
    case SL_RULE_TWO_STAGE: return I * g + n_cand * u + down;
    case SL_RULE_TWO_STAGE_PRED: return pred + n_cand * (g + u) + down;
    case SL_RULE_DENSE:
    default: return sl_mlp_dense_bytes(L);
    }
}
