/*
 * skip.c — the skip model: running a layer's MLP on only the neurons its profile selects.
 *
 * For each token the layer's rule picks the active neurons — CATS thresholds |act(gate . x)|
 * (the gate is computed in full), a low-rank predictor scores B (A x) and keeps those above a
 * threshold, the top k, or those above mean + std * PhiInv(1 - k/I) — and the sparse operator
 * (sparse_mlp.c) computes gate/up/down for those neurons only, with the transposed down matrix
 * built once when the profile is attached. Per-layer counters record the sparsity achieved and,
 * on request, the recall and precision of the selection against the true mask (gate > 0).
 * What it is not: the profile file format (profile.c) or the operator's kernels.
 */
#include "forward.h"
#include "kernels/kernels.h"
#include "select.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void sparse_free(sl_context *ctx) {
    if (ctx->sparse) {
        for (int l = 0; l < ctx->model->config.n_layer; l++) sl_free_aligned(ctx->sparse[l].down_t_buf);
        free(ctx->sparse);
    }
    sl_sparse_ws_free(ctx->ws);
    sl_free_aligned(ctx->idx);
    free(ctx->n_idx);
    free(ctx->idx_rows);
    sl_free_aligned(ctx->scores);
    sl_free_aligned(ctx->gate_full);
    sl_free_aligned(ctx->pred_h);
    sl_free_aligned(ctx->select_tmp);
    ctx->sparse = NULL;
    ctx->ws = NULL;
    ctx->idx = NULL;
    ctx->n_idx = NULL;
    ctx->idx_rows = NULL;
    ctx->scores = ctx->gate_full = ctx->pred_h = ctx->select_tmp = NULL;
    ctx->profile = NULL;
}

sl_status sl_context_set_profile(sl_context *ctx, const sl_profile *profile, bool sparse_prefill, sl_error *err) {
    sl_clear_error(err);
    if (!ctx) return sl_set_error(err, SL_ERR_INVALID_ARG, "set_profile: NULL context");
    sparse_free(ctx);
    if (!profile) return SL_OK;
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    char fp[32];
    sl_model_fingerprint(m, fp);
    if (profile->n_layer != c->n_layer || profile->n_embd != c->n_embd || profile->n_ff != c->n_ff || strcmp(fp, profile->fingerprint))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "set_profile: the profile was made for another model (fingerprint %s, model %s)",
                            profile->fingerprint, fp);
    const size_t I = (size_t)c->n_ff, NB = (size_t)ctx->n_batch;
    int32_t max_rank = 1;
    for (int l = 0; l < c->n_layer; l++)
        if (profile->layers[l].info.rank > max_rank) max_rank = profile->layers[l].info.rank;
    ctx->sparse = calloc((size_t)c->n_layer, sizeof(sl_sparse_layer));
    ctx->ws = sl_sparse_ws_init();
    ctx->idx = sl_calloc_array(NB * I, sizeof(int32_t));
    ctx->n_idx = calloc(NB, sizeof(int32_t));
    ctx->idx_rows = calloc(NB, sizeof(int32_t *));
    ctx->scores = sl_calloc_array(NB * I, sizeof(float));
    ctx->gate_full = sl_calloc_array(NB * I, sizeof(float));
    ctx->pred_h = sl_calloc_array(NB * (size_t)max_rank, sizeof(float));
    ctx->select_tmp = sl_calloc_array(I, sizeof(float));
    if (!ctx->sparse || !ctx->ws || !ctx->idx || !ctx->n_idx || !ctx->idx_rows || !ctx->scores || !ctx->gate_full || !ctx->pred_h ||
        !ctx->select_tmp) {
        sparse_free(ctx);
        return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    }
    for (size_t b = 0; b < NB; b++) ctx->idx_rows[b] = ctx->idx + b * I;
    for (int l = 0; l < c->n_layer; l++) {
        const sl_profile_layer *P = &profile->layers[l].info;
        if (P->rule == SL_RULE_DENSE) continue;
        const sl_weight *down = &m->layers[l].ffn_down;
        /* Q4_0 rows re-quantized along the other axis would be rounded a second time (7.6% RMS
         * error on the weights); Q8_0 keeps that to ~0.5% for 1.9x the bytes of down */
        const sl_type dt_type = down->type == SL_TYPE_Q4_0 ? SL_TYPE_Q8_0 : down->type;
        size_t bytes = sl_mlp_down_t_bytes(down, dt_type);
        sl_sparse_layer *S = &ctx->sparse[l];
        S->down_t_buf = bytes ? sl_malloc_aligned(bytes) : NULL;
        if (!S->down_t_buf) {
            sparse_free(ctx);
            return sl_set_error(err, SL_ERR_NOMEM, "set_profile: cannot allocate %zu bytes for the transposed down matrix of layer %d",
                                bytes, l);
        }
        sl_status st = sl_mlp_transpose_down(ctx->pool, down, dt_type, S->down_t_buf, bytes, &S->down_t, err);
        if (st) {
            sparse_free(ctx);
            return st;
        }
        if (P->rule == SL_RULE_PRED_STAT_TOPK) S->stat_z = sl_normal_quantile(1.0 - (double)P->topk / (double)c->n_ff);
    }
    ctx->profile = profile;
    ctx->sparse_prefill = sparse_prefill;
    return SL_OK;
}

void sl_context_track_recall(sl_context *ctx, bool on) { ctx->track_recall = on; }

void sl_context_reset_stats(sl_context *ctx) { memset(ctx->stats, 0, sizeof(sl_layer_stats) * (size_t)ctx->model->config.n_layer); }

sl_status sl_context_get_layer_stats(const sl_context *ctx, int32_t layer, sl_layer_stats *out, sl_error *err) {
    if (!ctx || layer < 0 || layer >= ctx->model->config.n_layer)
        return sl_set_error(err, SL_ERR_RANGE, "layer_stats: layer %d out of range", layer);
    *out = ctx->stats[layer];
    return SL_OK;
}

void sl_mlp_sparse_forward(sl_context *ctx, int l, int B) {
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    const sl_layer *L = &m->layers[l];
    const sl_profile_layer_data *PD = &ctx->profile->layers[l];
    const sl_profile_layer *P = &PD->info;
    const sl_sparse_layer *S = &ctx->sparse[l];
    const int32_t I = c->n_ff, E = c->n_embd;

    /* scores [B, I]: the gate itself (CATS) or the predictor B (A x) */
    if (P->rule == SL_RULE_CATS) {
        sl_matmul(ctx->pool, L->ffn_gate.type, L->ffn_gate.data, I, E, ctx->xb, B, ctx->scores);
    } else {
        sl_matmul(ctx->pool, PD->pred_a.type, PD->pred_a.data, P->rank, E, ctx->xb, B, ctx->pred_h);
        sl_matmul(ctx->pool, PD->pred_b.type, PD->pred_b.data, I, P->rank, ctx->pred_h, B, ctx->scores);
    }
    sl_layer_stats *st = &ctx->stats[l];
    for (int b = 0; b < B; b++) {
        int32_t *idx = ctx->idx + (size_t)b * I;
        ctx->n_idx[b] = sl_select_active(P, S->stat_z, ctx->scores + (size_t)b * I, I, c->act, ctx->select_tmp, idx);
        st->n_active += ctx->n_idx[b];
    }
    st->n_sparse_tokens += B;
    st->n_neurons += (int64_t)B * I;

    if (ctx->track_recall) {
        const float *gate = ctx->scores;
        if (P->rule != SL_RULE_CATS) {
            sl_matmul(ctx->pool, L->ffn_gate.type, L->ffn_gate.data, I, E, ctx->xb, B, ctx->gate_full);
            gate = ctx->gate_full;
        }
        for (int b = 0; b < B; b++) {
            const float *g = gate + (size_t)b * I;
            const int32_t *idx = ctx->idx + (size_t)b * I;
            int64_t n_true = 0, tp = 0;
            for (int32_t i = 0; i < I; i++) n_true += g[i] > 0.0f;
            for (int32_t k = 0; k < ctx->n_idx[b]; k++) tp += g[idx[k]] > 0.0f;
            st->true_pos += tp;
            st->false_pos += ctx->n_idx[b] - tp;
            st->false_neg += n_true - tp;
        }
    }

    sl_error err;
    /* with ffn_down given, the operator may run the down projection (or the whole MLP) densely
     * when so many neurons are active that gathering rows would be slower */
    /* CATS already has the gate pre-activations in scores: the operator then dots only up rows */
    if (sl_sparse_mlp_forward_pool_gated(ctx->pool, ctx->ws, &L->ffn_gate, &L->ffn_up, &S->down_t, &L->ffn_down, c->act, NULL,
                                         ctx->xb, B, NULL, ctx->idx_rows, ctx->n_idx, SL_MLP_PER_ROW,
                                         P->rule == SL_RULE_CATS ? ctx->scores : NULL, ctx->xb2, NULL, &err) != SL_OK) {
        /* indices come from sl_select_active and are always valid: only an allocation can fail here;
         * fall back to zero MLP output rather than leaving garbage */
        memset(ctx->xb2, 0, (size_t)B * (size_t)E * sizeof(float));
    }
}
