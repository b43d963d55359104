/*
 * skip.c — the skip model: running a layer's MLP on only the neurons its profile selects.
 *
 * For each token the layer's rule picks the active neurons — CATS thresholds |act(gate . x)|
 * (the gate is computed in full), a low-rank predictor scores B (A x) and keeps those above a
 * threshold, the top k, or those above mean + std * PhiInv(1 - k/I) (select.c) — and one fused
 * pass over those neurons' bundles (bundle.c: gate, up and transposed down rows side by
 * side in huge pages, built once when the profile is attached) computes their share of the MLP.
 * Per-layer counters record the sparsity achieved, the time of each stage and, on request, the
 * recall and precision of the selection against the true mask (gate > 0).
 * What it is not: the profile file format (profile.c), the general sparse operator
 * (sparse_mlp.c, the public sl_sparse_mlp API) or the kernels.
 */
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "model/context.h"
#include "sparse/bundle.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "sparse/skip_stages.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What a sparse layer needs beyond the model's weights. */
typedef struct sl_sparse_layer {
    sl_neuron_bundle bundle; /* the layer's MLP neuron by neuron (gate rows only for predictor rules) */
    float stat_z;      /* PRED_STAT_TOPK: PhiInv(1 - topk / n_ff) */
    sl_cats_cut cut;   /* CATS: the threshold as cut-offs on the gate pre-activation (select.h) */
    float *down_norm;  /* ||down[:, i]|| [n_ff]: two-stage weights, contribution recall */
} sl_sparse_layer;

/* The skip model's state in a context (its MLP plug-in's state). */
typedef struct skip_state {
    const sl_profile *profile;  /* borrowed */
    int n_layer;                /* layers of the model */
    bool sparse_prefill;        /* batches (B > 1) take the sparse path too */
    sl_sparse_layer *layers;    /* [n_layer] */
    sl_bundle_ws bws;           /* scratch of the bundled MLP */
    int32_t *idx;               /* [n_batch, n_ff] active neuron lists */
    int32_t *n_idx;             /* [n_batch] list lengths */
    float *scores;              /* [n_batch, n_ff] predictor scores / gate values */
    float *gate_full;           /* [n_batch, n_ff] true gate (track_recall) */
    float *up_full;             /* [n_batch, n_ff] up (track_recall) */
    float *dense_out;           /* [n_batch, n_embd] dense MLP output (track_recall) */
    float *pred_h;              /* [n_batch, max rank] A x */
    float *select_tmp;          /* [n_ff] scratch for top-k selection */
    sl_stage_scratch stage;     /* two-stage rules: one token's scratch (skip_stages.h) */
} skip_state;

static void skip_free(void *state) {
    skip_state *s = state;
    if (!s) return;
    if (s->layers) {
        for (int l = 0; l < s->n_layer; l++) {
            sl_bundle_free(&s->layers[l].bundle);
            free(s->layers[l].down_norm);
        }
        free(s->layers);
    }
    sl_bundle_ws_free(&s->bws);
    sl_free_aligned(s->idx);
    free(s->n_idx);
    sl_free_aligned(s->scores);
    sl_free_aligned(s->gate_full);
    sl_free_aligned(s->up_full);
    sl_free_aligned(s->dense_out);
    sl_free_aligned(s->pred_h);
    sl_free_aligned(s->select_tmp);
    sl_stage_scratch_free(&s->stage);
    free(s);
}

static bool skip_forward(void *state, sl_context *ctx, int l, int B);
static bool is_two_stage(sl_skip_rule r) { return r == SL_RULE_TWO_STAGE || r == SL_RULE_TWO_STAGE_PRED; }
static const sl_mlp_plugin skip_plugin = {skip_forward, skip_free};

sl_status sl_context_set_profile(sl_context *ctx, const sl_profile *profile, bool sparse_prefill, sl_error *err) {
    sl_clear_error(err);
    if (!ctx) return sl_set_error(err, SL_ERR_INVALID_ARG, "set_profile: NULL context");
    sl_context_set_mlp_plugin(ctx, NULL, NULL);
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
    skip_state *s = calloc(1, sizeof(*s));
    if (!s) return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    s->n_layer = c->n_layer;
    s->layers = calloc((size_t)c->n_layer, sizeof(sl_sparse_layer));
    s->idx = sl_calloc_array(NB * I, sizeof(int32_t));
    s->n_idx = calloc(NB, sizeof(int32_t));
    s->scores = sl_calloc_array(NB * I, sizeof(float));
    s->gate_full = sl_calloc_array(NB * I, sizeof(float));
    s->up_full = sl_calloc_array(NB * I, sizeof(float));
    s->dense_out = sl_calloc_array(NB * (size_t)c->n_embd, sizeof(float));
    s->pred_h = sl_calloc_array(NB * (size_t)max_rank, sizeof(float));
    s->select_tmp = sl_calloc_array(I, sizeof(float));
    if (!s->layers || !s->idx || !s->n_idx || !s->scores || !s->gate_full || !s->up_full || !s->dense_out || !s->pred_h || !s->select_tmp ||
        sl_stage_scratch_init(&s->stage, c->n_ff, NULL)) {
        skip_free(s);
        return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    }
    for (int l = 0; l < c->n_layer; l++) {
        const sl_profile_layer *P = &profile->layers[l].info;
        if (P->rule == SL_RULE_DENSE) continue;
        const sl_layer *L = &m->layers[l];
        /* the layer's MLP copied neuron by neuron into huge pages (bundle.h): CATS computes the
         * gate densely from the model, so its bundles hold only up and down */
        const bool gate_dense = P->rule == SL_RULE_CATS || P->rule == SL_RULE_TWO_STAGE;
        sl_status st = sl_bundle_init(&s->layers[l].bundle, ctx->pool, &L->ffn_gate, &L->ffn_up, &L->ffn_down, !gate_dense, err);
        if (!st) {
            if (!(s->layers[l].down_norm = malloc((size_t)c->n_ff * sizeof(float))))
                st = sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for down norms");
            else st = sl_down_col_norms(&L->ffn_down, s->layers[l].down_norm, err);
        }
        if (st) {
            skip_free(s);
            return st;
        }
        sl_sparse_layer *S = &s->layers[l];
        if (P->rule == SL_RULE_CATS) sl_cats_cut_init(&S->cut, c->act, P->threshold);
        if (P->rule == SL_RULE_PRED_STAT_TOPK) S->stat_z = sl_normal_quantile(1.0 - (double)P->topk / (double)c->n_ff);
    }
    s->profile = profile;
    s->sparse_prefill = sparse_prefill;
    sl_context_set_mlp_plugin(ctx, &skip_plugin, s);
    return SL_OK;
}

/* The sparse MLP of layer l for the B tokens in ctx->xb -> ctx->xb2, when the profile makes the
 * layer sparse (and B == 1 unless sparse prefill is on); false leaves the layer to the dense MLP. */
static bool skip_forward(void *state, sl_context *ctx, int l, int B) {
    skip_state *ss = state;
    const sl_profile_layer_data *PD = &ss->profile->layers[l];
    const sl_profile_layer *P = &PD->info;
    const sl_model *m = ctx->model;
    const sl_layer *L = &m->layers[l];
    if (P->rule == SL_RULE_DENSE || (B > 1 && !ss->sparse_prefill)) {
        ctx->stats[l].mlp_bytes += B * sl_mlp_dense_bytes(L);
        ctx->stats[l].mlp_bytes_dense += B * sl_mlp_dense_bytes(L);
        return false;
    }
    const sl_model_config *c = &m->config;
    const bool two_stage = is_two_stage(P->rule), gate_dense = P->rule == SL_RULE_CATS || P->rule == SL_RULE_TWO_STAGE;
    const sl_sparse_layer *S = &ss->layers[l];
    const int32_t I = c->n_ff, E = c->n_embd;

    const double t0 = sl_time_s();
    /* scores [B, I]: the gate itself (CATS) or the predictor B (A x) */
    if (gate_dense) {
        sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, I, E, ctx->xb, B, ss->scores);
    } else {
        sl_matmul(ctx->pool, PD->pred_a.type, PD->pred_a.data, P->rank, E, ctx->xb, B, ss->pred_h);
        sl_matmul(ctx->pool, PD->pred_b.type, PD->pred_b.data, I, P->rank, ss->pred_h, B, ss->scores);
    }
    sl_layer_stats *st = &ctx->stats[l];
    const double t1 = sl_time_s();
    st->t_scores += t1 - t0;
    for (int b = 0; b < B; b++) {
        int32_t *idx = ss->idx + (size_t)b * I;
        ss->n_idx[b] = two_stage ? sl_select_candidates(P, ss->scores + (size_t)b * I, I, c->act, ss->stage.work, ss->select_tmp, idx)
                                 : sl_select_active(P, S->stat_z, &S->cut, ss->scores + (size_t)b * I, I, c->act, ss->select_tmp, idx);
    }
    st->n_sparse_tokens += B;
    st->n_neurons += (int64_t)B * I;
    st->t_select += sl_time_s() - t1;

    sl_error err;
    const double t2 = sl_time_s();
    /* each token its own neurons, one fused pass over their bundles (CATS reuses the gate it
     * already has in scores: only up and down rows are read) */
    double t_stage2 = 0.0;
    for (int b = 0; b < B; b++) {
        const float *gate_pre = gate_dense ? ss->scores + (size_t)b * I : NULL;
        sl_status rc;
        int32_t n_cand = ss->n_idx[b];
        if (two_stage && P->topk < n_cand) /* the chosen neurons replace the candidates in idx; with
                                              topk == cand_k every candidate is chosen: one pass */
            rc = sl_stage_token(P, &S->bundle, NULL, ctx->pool, &ss->bws, &ss->stage, c->act, ctx->xb + (size_t)b * E,
                                ss->idx + (size_t)b * I, n_cand, gate_pre, ctx->xb2 + (size_t)b * E, &ss->n_idx[b], &t_stage2, &err);
        else
            rc = sl_bundle_forward(&S->bundle, ctx->pool, &ss->bws, c->act, ctx->xb + (size_t)b * E, ss->idx + (size_t)b * I,
                                   ss->n_idx[b], gate_pre, ctx->xb2 + (size_t)b * E, &err);
        st->n_active += ss->n_idx[b];
        if (two_stage) st->n_cand += n_cand;
        st->mlp_bytes += sl_mlp_rule_bytes(L, PD, n_cand, ss->n_idx[b]);
        st->mlp_bytes_dense += sl_mlp_dense_bytes(L);
        if (rc != SL_OK) {
            /* indices come from sl_select_active and are always valid: only scratch allocation
             * can fail here; fall back to zero MLP output rather than leaving garbage */
            memset(ctx->xb2 + (size_t)b * E, 0, (size_t)E * sizeof(float));
        }
    }
    st->t_operator += sl_time_s() - t2 - t_stage2;
    st->t_select += t_stage2;

    /* the neurons finally computed against the true mask (gate > 0) and their share of the
     * contributions |act(g) * u| * ||down[:, i]|| */
    if (ctx->track_recall) {
        const float *gate = ss->scores;
        if (!gate_dense) {
            sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, I, E, ctx->xb, B, ss->gate_full);
            gate = ss->gate_full;
        }
        sl_matmul(ctx->pool, L->ffn_up.mm_type, L->ffn_up.mm_data, I, E, ctx->xb, B, ss->up_full);
        for (int b = 0; b < B; b++) {
            const float *g = gate + (size_t)b * I, *u = ss->up_full + (size_t)b * I;
            const int32_t *idx = ss->idx + (size_t)b * I;
            int64_t n_true = 0, tp = 0;
            double all = 0.0, kept = 0.0;
            for (int32_t i = 0; i < I; i++) {
                n_true += g[i] > 0.0f;
                all += fabs((double)sl_activate(c->act, g[i]) * u[i]) * S->down_norm[i];
            }
            for (int32_t k = 0; k < ss->n_idx[b]; k++) {
                const int32_t i = idx[k];
                tp += g[i] > 0.0f;
                kept += fabs((double)sl_activate(c->act, g[i]) * u[i]) * S->down_norm[i];
            }
            st->true_pos += tp;
            st->false_pos += ss->n_idx[b] - tp;
            st->false_neg += n_true - tp;
            st->contrib_kept += kept;
            st->contrib_total += all;
        }
        /* the dense MLP output (down of act(g) * u over all neurons) against the sparse one */
        for (size_t k = 0; k < (size_t)B * I; k++) ss->up_full[k] *= sl_activate(c->act, gate[k]);
        sl_matmul(ctx->pool, L->ffn_down.mm_type, L->ffn_down.mm_data, E, I, ss->up_full, B, ss->dense_out);
        for (size_t k = 0; k < (size_t)B * E; k++) {
            const double d = (double)ctx->xb2[k] - ss->dense_out[k];
            st->out_err += d * d;
            st->out_norm += (double)ss->dense_out[k] * ss->dense_out[k];
        }
    }
    return true;
}
