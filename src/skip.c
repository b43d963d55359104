/*
 * skip.c — the skip model: running a layer's MLP on only the neurons its profile selects.
 *
 * For each token the layer's rule picks the active neurons — CATS thresholds |act(gate . x)|
 * (the gate is computed in full), a low-rank predictor scores B (A x) and keeps those above a
 * threshold, the top k, or those above mean + std * PhiInv(1 - k/I) (select.c) — and one fused
 * pass over those neurons' bundles (sparse_bundle.c: gate, up and transposed down rows side by
 * side in huge pages, built once when the profile is attached) computes their share of the MLP.
 * Per-layer counters record the sparsity achieved, the time of each stage and, on request, the
 * recall and precision of the selection against the true mask (gate > 0).
 * What it is not: the profile file format (profile.c), the general sparse operator
 * (sparse_mlp.c, the public sl_sparse_mlp API) or the kernels.
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
        for (int l = 0; l < ctx->model->config.n_layer; l++) sl_bundle_free(&ctx->sparse[l].bundle);
        free(ctx->sparse);
    }
    sl_bundle_ws_free(&ctx->bws);
    sl_free_aligned(ctx->idx);
    free(ctx->n_idx);
    sl_free_aligned(ctx->scores);
    sl_free_aligned(ctx->gate_full);
    sl_free_aligned(ctx->pred_h);
    sl_free_aligned(ctx->select_tmp);
    ctx->sparse = NULL;
    ctx->idx = NULL;
    ctx->n_idx = NULL;
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
    ctx->idx = sl_calloc_array(NB * I, sizeof(int32_t));
    ctx->n_idx = calloc(NB, sizeof(int32_t));
    ctx->scores = sl_calloc_array(NB * I, sizeof(float));
    ctx->gate_full = sl_calloc_array(NB * I, sizeof(float));
    ctx->pred_h = sl_calloc_array(NB * (size_t)max_rank, sizeof(float));
    ctx->select_tmp = sl_calloc_array(I, sizeof(float));
    if (!ctx->sparse || !ctx->idx || !ctx->n_idx || !ctx->scores || !ctx->gate_full || !ctx->pred_h ||
        !ctx->select_tmp) {
        sparse_free(ctx);
        return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    }
    for (int l = 0; l < c->n_layer; l++) {
        const sl_profile_layer *P = &profile->layers[l].info;
        if (P->rule == SL_RULE_DENSE) continue;
        const sl_layer *L = &m->layers[l];
        /* the layer's MLP copied neuron by neuron into huge pages (sparse_bundle.h): CATS computes
         * the gate densely from the model, so its bundles hold only up and down */
        sl_status st = sl_bundle_init(&ctx->sparse[l].bundle, ctx->pool, &L->ffn_gate, &L->ffn_up, &L->ffn_down,
                                      P->rule != SL_RULE_CATS, err);
        if (st) {
            sparse_free(ctx);
            return st;
        }
        sl_sparse_layer *S = &ctx->sparse[l];
        if (P->rule == SL_RULE_CATS) sl_cats_cut_init(&S->cut, c->act, P->threshold);
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

    const double t0 = sl_time_s();
    /* scores [B, I]: the gate itself (CATS) or the predictor B (A x) */
    if (P->rule == SL_RULE_CATS) {
        sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, I, E, ctx->xb, B, ctx->scores);
    } else {
        sl_matmul(ctx->pool, PD->pred_a.type, PD->pred_a.data, P->rank, E, ctx->xb, B, ctx->pred_h);
        sl_matmul(ctx->pool, PD->pred_b.type, PD->pred_b.data, I, P->rank, ctx->pred_h, B, ctx->scores);
    }
    sl_layer_stats *st = &ctx->stats[l];
    const double t1 = sl_time_s();
    st->t_scores += t1 - t0;
    for (int b = 0; b < B; b++) {
        int32_t *idx = ctx->idx + (size_t)b * I;
        ctx->n_idx[b] = sl_select_active(P, S->stat_z, &S->cut, ctx->scores + (size_t)b * I, I, c->act, ctx->select_tmp, idx);
        st->n_active += ctx->n_idx[b];
    }
    st->n_sparse_tokens += B;
    st->n_neurons += (int64_t)B * I;
    st->t_select += sl_time_s() - t1;

    if (ctx->track_recall) {
        const float *gate = ctx->scores;
        if (P->rule != SL_RULE_CATS) {
            sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, I, E, ctx->xb, B, ctx->gate_full);
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
    const double t2 = sl_time_s();
    /* each token its own neurons, one fused pass over their bundles (CATS reuses the gate it
     * already has in scores: only up and down rows are read) */
    for (int b = 0; b < B; b++) {
        const float *gate_pre = P->rule == SL_RULE_CATS ? ctx->scores + (size_t)b * I : NULL;
        if (sl_bundle_forward(&S->bundle, ctx->pool, &ctx->bws, c->act, ctx->xb + (size_t)b * E, ctx->idx + (size_t)b * I,
                              ctx->n_idx[b], gate_pre, ctx->xb2 + (size_t)b * E, &err) != SL_OK) {
            /* indices come from sl_select_active and are always valid: only scratch allocation
             * can fail here; fall back to zero MLP output rather than leaving garbage */
            memset(ctx->xb2 + (size_t)b * E, 0, (size_t)E * sizeof(float));
        }
    }
    st->t_operator += sl_time_s() - t2;
}
