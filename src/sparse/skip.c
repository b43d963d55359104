/*
 * skip.c — the skip model: running a layer's MLP on only the neurons its profile selects.
 *
 * For each token the layer's rule picks the active neurons — CATS thresholds |act(gate . x)|
 * (the gate is computed in full, from the bundles' gate rows), a low-rank predictor scores
 * B (A x) and keeps those above a threshold, the top k, or those above mean + std *
 * PhiInv(1 - k/I) (select.c) — and one fused pass over those neurons' bundles (the model's,
 * model/bundle.h: gate, up and transposed down rows side by side, shared by every context)
 * computes their share of the MLP (model/bundle_mlp.h). A batch of tokens (sparse prefill, or
 * several sequences decoding together) selects per token and reads the union of their neurons
 * once, or runs dense when that union covers most of the layer; or, by the profile's batch
 * selection (sl_batch_select), a decoding batch computes one shared set for all its tokens. Per-layer counters record the
 * sparsity achieved, the union of batches, the time of each stage, the weight bytes read and,
 * on request, the recall and precision of the selection against the true mask (gate > 0), the
 * share of the contributions kept and the error of the MLP output. The two-stage rules
 * (skip_stages.h) read their candidates' gate/up rows, then the down rows of the neurons chosen
 * from the products.
 * What it is not: the profile file format (profile.c), the general sparse operator
 * (sparse_mlp.c, the public sl_sparse_mlp API) or the kernels.
 */
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "model/bundle_mlp.h"
#include "model/context.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "sparse/skip_stages.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A batch whose union reaches this fraction of the layer runs dense: the union pass reads the
 * union once but does each token's products on its own rows, so past this point the dense
 * products (one weight read, batched kernels) cost less and lose nothing. */
#define SKIP_UNION_DENSE 0.8
#define SKIP_BATCH_MAX 64 /* tokens per union pass (sl_bundle_forward_batch) */

/* What a sparse layer needs beyond the model's weights. */
typedef struct sl_sparse_layer {
    float stat_z;      /* PRED_STAT_TOPK: PhiInv(1 - topk / n_ff) */
    sl_cats_cut cut;   /* CATS: the threshold as cut-offs on the gate pre-activation (select.h) */
    float *down_norm;  /* ||down[:, i]|| [n_ff]: contribution recall (computed on first use), or NULL */
} sl_sparse_layer;

/* The skip model's state in a context (its MLP plug-in's state). */
typedef struct skip_state {
    const sl_profile *profile;         /* borrowed */
    const sl_neuron_bundle *bundles;   /* the model's, [n_layer] */
    int n_layer;                       /* layers of the model */
    bool sparse_prefill;               /* batches (B > 1) take the sparse path too */
    sl_sparse_layer *layers;           /* [n_layer] */
    sl_bundle_ws bws;                  /* scratch of the bundle passes */
    int32_t *idx;                      /* [n_batch, n_ff] active neuron lists */
    int32_t *n_idx;                    /* [n_batch] list lengths */
    float *scores;                     /* [n_batch, n_ff] predictor scores / gate values */
    float *gate_full;                  /* [n_batch, n_ff] true gate (track_recall) */
    float *up_full;                    /* [n_batch, n_ff] up (track_recall) */
    float *dense_out;                  /* [n_batch, n_embd] dense MLP output (track_recall) */
    float *pred_h;                     /* [n_batch, max rank] A x */
    float *select_tmp;                 /* [n_ff] scratch for top-k selection */
    uint8_t *seen;                     /* [n_ff] union membership while sizing a batch's union */
    float *comb;                       /* [n_ff] combined scores of a shared batch set */
    int32_t *shared;                   /* [n_ff] a decoding batch's shared set */
    int32_t **lists;                   /* [n_batch] pointers into idx */
    sl_stage_scratch stage;            /* two-stage rules: one token's scratch (skip_stages.h) */
} skip_state;

static void skip_free(void *state) {
    skip_state *s = state;
    if (!s) return;
    if (s->layers) {
        for (int l = 0; l < s->n_layer; l++) free(s->layers[l].down_norm);
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
    free(s->seen);
    free(s->comb);
    free(s->shared);
    free(s->lists);
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
    /* the model's bundles: there already (loaded bundled), or built now, once for all contexts */
    const sl_neuron_bundle *bundles = sl_model_bundles(m, ctx->pool, err);
    if (!bundles) return err ? err->code : SL_ERR_NOMEM;
    skip_state *s = calloc(1, sizeof(*s));
    if (!s) return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    s->n_layer = c->n_layer;
    s->bundles = bundles;
    s->layers = calloc((size_t)c->n_layer, sizeof(sl_sparse_layer));
    s->idx = sl_calloc_array(NB * I, sizeof(int32_t));
    s->n_idx = calloc(NB, sizeof(int32_t));
    s->scores = sl_calloc_array(NB * I, sizeof(float));
    s->gate_full = sl_calloc_array(NB * I, sizeof(float));
    s->up_full = sl_calloc_array(NB * I, sizeof(float));
    s->dense_out = sl_calloc_array(NB * (size_t)c->n_embd, sizeof(float));
    s->pred_h = sl_calloc_array(NB * (size_t)max_rank, sizeof(float));
    s->select_tmp = sl_calloc_array(I, sizeof(float));
    s->seen = calloc(I, 1);
    s->comb = malloc(I * sizeof(float));
    s->shared = malloc(I * sizeof(int32_t));
    s->lists = calloc(NB, sizeof(int32_t *));
    if (!s->layers || !s->idx || !s->n_idx || !s->scores || !s->gate_full || !s->up_full || !s->dense_out || !s->pred_h || !s->select_tmp ||
        !s->seen || !s->comb || !s->shared || !s->lists || sl_stage_scratch_init(&s->stage, c->n_ff, NULL)) {
        skip_free(s);
        return sl_set_error(err, SL_ERR_NOMEM, "set_profile: out of memory for sparse buffers");
    }
    for (size_t b = 0; b < NB; b++) s->lists[b] = s->idx + b * I;
    for (int l = 0; l < c->n_layer; l++) {
        const sl_profile_layer *P = &profile->layers[l].info;
        sl_sparse_layer *S = &s->layers[l];
        if (P->rule == SL_RULE_CATS) sl_cats_cut_init(&S->cut, c->act, P->threshold);
        if (P->rule == SL_RULE_PRED_STAT_TOPK) S->stat_z = sl_normal_quantile(1.0 - (double)P->topk / (double)c->n_ff);
    }
    s->profile = profile;
    s->sparse_prefill = sparse_prefill;
    sl_context_set_mlp_plugin(ctx, &skip_plugin, s);
    return SL_OK;
}

/* The full gate [B, I] of the tokens in ctx->xb, from the bundles' gate rows. */
static void gate_all(skip_state *ss, sl_context *ctx, const sl_neuron_bundle *bd, int B, float *out) {
    sl_error err;
    if (B == 1) {
        if (sl_bundle_gate_up(bd, ctx->pool, &ss->bws, ctx->xb, NULL, (int32_t)bd->I, out, NULL, &err) != SL_OK)
            memset(out, 0, (size_t)bd->I * sizeof(float)); /* scratch only: select nothing rather than garbage */
        return;
    }
    sl_matmul_rows(ctx->pool, bd->t_gu, bd->data, bd->stride, bd->I, bd->H, ctx->xb, B, out);
}

/* The size of the union of the B tokens' lists. */
static int64_t union_size(skip_state *ss, int B, int32_t I) {
    int64_t nu = 0;
    for (int b = 0; b < B; b++)
        for (int32_t k = 0; k < ss->n_idx[b]; k++) {
            const int32_t i = ss->idx[(size_t)b * I + k];
            nu += !ss->seen[i];
            ss->seen[i] = 1;
        }
    memset(ss->seen, 0, (size_t)I);
    return nu;
}

/* A decoding batch's selection policy (sl_batch_select), after each token chose its own neurons:
 * counts the union of those, and when the policy asks for one shared set (SHARED, or AUTO with a
 * union over its cap) computes it (sl_select_shared: as many neurons as the tokens chose on
 * average, or AUTO's cap if that is more), counts how much of each token's own selection it
 * holds, and gives it to every token.
 * Returns the neurons the batch will read (the union, or the shared set's size); *sum_n becomes
 * the neurons computed over all tokens. */
static int64_t batch_choose(skip_state *ss, sl_context *ctx, const sl_profile_layer *P, sl_layer_stats *st, int B, int32_t I,
                            sl_activation act, int64_t *sum_n) {
    const int64_t nu = union_size(ss, B, I);
    st->n_union_own += nu;
    float umax;
    const sl_batch_select mode = sl_profile_get_batch_select(ss->profile, &umax);
    if (!ctx->mlp_decode || !(mode == SL_BATCH_SHARED || (mode == SL_BATCH_AUTO && (double)nu > (double)umax * I))) return nu;
    /* SHARED: as many as a token chose on average; AUTO: the union cut down to its cap (never below that) */
    int32_t k = (int32_t)((*sum_n + B / 2) / B);
    const int32_t cap = (int32_t)lround((double)umax * I);
    if (mode == SL_BATCH_AUTO && cap > k) k = cap;
    const int32_t n = sl_select_shared(P, ss->scores, B, I, k, act, ss->comb, ss->select_tmp, ss->shared);
    for (int32_t j = 0; j < n; j++) ss->seen[ss->shared[j]] = 1;
    for (int b = 0; b < B; b++) {
        int32_t *idx = ss->idx + (size_t)b * I;
        int64_t kept = 0;
        for (int32_t j = 0; j < ss->n_idx[b]; j++) kept += ss->seen[idx[j]];
        st->own_kept += kept;
        st->own_total += ss->n_idx[b];
        memcpy(idx, ss->shared, (size_t)n * sizeof(int32_t));
        ss->n_idx[b] = n;
    }
    memset(ss->seen, 0, (size_t)I);
    st->n_batch_shared++;
    *sum_n = (int64_t)n * B;
    return n;
}

/* The sparse MLP of layer l for the B tokens in ctx->xb -> ctx->xb2, when the profile makes the
 * layer sparse and they are decoding (ctx->mlp_decode: one token, or one per sequence of a
 * multi-sequence step, sl_eval_batch) or sparse prefill is on; false leaves a prompt chunk to the
 * dense MLP. */
static bool skip_forward(void *state, sl_context *ctx, int l, int B) {
    skip_state *ss = state;
    const sl_profile_layer_data *PD = &ss->profile->layers[l];
    const sl_profile_layer *P = &PD->info;
    const sl_model *m = ctx->model;
    const sl_layer *L = &m->layers[l];
    sl_layer_stats *st = &ctx->stats[l];
    if (P->rule == SL_RULE_DENSE || (!ctx->mlp_decode && !ss->sparse_prefill) ||
        (B > 1 && ctx->mlp_decode && sl_profile_get_batch_select(ss->profile, NULL) == SL_BATCH_DENSE)) {
        st->mlp_bytes += B * sl_mlp_dense_bytes(L);
        st->mlp_bytes_dense += B * sl_mlp_dense_bytes(L);
        return false;
    }
    const sl_model_config *c = &m->config;
    const sl_neuron_bundle *bd = &ss->bundles[l];
    sl_sparse_layer *S = &ss->layers[l];
    const int32_t I = c->n_ff, E = c->n_embd;
    const bool two_stage = is_two_stage(P->rule), gate_dense = P->rule == SL_RULE_CATS || P->rule == SL_RULE_TWO_STAGE;
    const bool gate_stage = P->rule == SL_RULE_TWO_STAGE_PRED && P->gate_k > P->cand_k; /* predictor -> gate rows -> up rows */

    const double t0 = sl_time_s();
    /* scores [B, I]: the gate itself (CATS, TWO_STAGE) or the predictor B (A x) */
    if (gate_dense) {
        gate_all(ss, ctx, bd, B, ss->scores);
    } else {
        sl_matmul(ctx->pool, PD->pred_a.mm_type, PD->pred_a.mm_data, P->rank, E, ctx->xb, B, ss->pred_h);
        sl_matmul(ctx->pool, PD->pred_b.mm_type, PD->pred_b.mm_data, I, P->rank, ss->pred_h, B, ss->scores);
    }
    const double t1 = sl_time_s();
    st->t_scores += t1 - t0;
    int64_t sum_n = 0;
    for (int b = 0; b < B; b++) {
        int32_t *idx = ss->idx + (size_t)b * I;
        const float *sc = ss->scores + (size_t)b * I;
        ss->n_idx[b] = gate_stage  ? sl_select_topk(sc, I, P->gate_k, ss->select_tmp, idx)
                       : two_stage ? sl_select_candidates(P, sc, I, c->act, ss->stage.work, ss->select_tmp, idx)
                                   : sl_select_active(P, S->stat_z, &S->cut, sc, I, c->act, ss->select_tmp, idx);
        sum_n += ss->n_idx[b];
    }
    st->n_sparse_tokens += B;
    st->n_neurons += (int64_t)B * I;
    st->t_select += sl_time_s() - t1;

    sl_error err;
    const double t2 = sl_time_s();
    sl_status rc = SL_OK;
    if (two_stage) {
        /* each token on its own: stage 1's products over its candidates, stage 2's choice from
         * them, then the down rows of the chosen neurons (they replace the candidates in idx) */
        double t_stage2 = 0.0;
        for (int b = 0; b < B && rc == SL_OK; b++) {
            const float *gate_pre = gate_dense ? ss->scores + (size_t)b * I : NULL;
            const int32_t n_gate = ss->n_idx[b];
            if (gate_stage) { /* the gate rows of the predictor's top gate_k; the top cand_k of them by |act(g)| go on */
                rc = sl_stage_gate(P, bd, ctx->pool, &ss->bws, &ss->stage, c->act, ctx->xb + (size_t)b * E, ss->idx + (size_t)b * I, n_gate,
                                   &ss->n_idx[b], &err);
                gate_pre = ss->stage.gate;
                if (rc) break;
            }
            const int32_t n_cand = ss->n_idx[b];
            if (P->topk < n_cand)
                rc = sl_stage_token(P, bd, NULL, ctx->pool, &ss->bws, &ss->stage, c->act, ctx->xb + (size_t)b * E,
                                    ss->idx + (size_t)b * I, n_cand, gate_pre, ctx->xb2 + (size_t)b * E, &ss->n_idx[b], &t_stage2, &err);
            else { /* every candidate is chosen: one pass */
                sl_bundle_opts o = {.gate_pre = gate_pre};
                rc = sl_bundle_forward(bd, ctx->pool, &ss->bws, c->act, ctx->xb + (size_t)b * E, ss->idx + (size_t)b * I, n_cand, &o,
                                       ctx->xb2 + (size_t)b * E, &err);
            }
            st->n_active += ss->n_idx[b];
            st->n_cand += n_cand;
            st->mlp_bytes += gate_stage ? sl_mlp_gate_stage_bytes(L, PD, n_gate, n_cand, ss->n_idx[b]) : sl_mlp_rule_bytes(L, PD, n_cand, ss->n_idx[b]);
            st->mlp_bytes_dense += sl_mlp_dense_bytes(L);
        }
        st->t_operator -= t_stage2;
        st->t_select += t_stage2;
    } else {
        const double tc = sl_time_s();
        const int64_t nu = B > 1 ? batch_choose(ss, ctx, P, st, B, I, c->act, &sum_n) : 0;
        const double dc = sl_time_s() - tc; /* the batch's selection: counted as selection, not operator time */
        st->t_select += dc;
        st->t_operator -= dc;
        for (int b = 0; b < B; b++) st->mlp_bytes += sl_mlp_rule_bytes(L, PD, ss->n_idx[b], ss->n_idx[b]);
        st->mlp_bytes_dense += B * sl_mlp_dense_bytes(L);
        st->n_active += sum_n;
        const float *gate_pre = gate_dense ? ss->scores : NULL; /* CATS reuses its gate: only up and down rows are read */
        if (B == 1) {
            sl_bundle_opts o = {.gate_pre = gate_pre};
            rc = sl_bundle_forward(bd, ctx->pool, &ss->bws, c->act, ctx->xb, ss->idx, ss->n_idx[0], &o, ctx->xb2, &err);
        } else {
            /* the size of what the batch reads decides between one pass over it and the dense products */
            st->n_batches++;
            st->n_union += nu;
            if ((double)nu >= SKIP_UNION_DENSE * I || B > SKIP_BATCH_MAX) {
                /* the dense products, each token still with its own neurons (the others' h is 0) */
                st->n_batch_dense++;
                const sl_bundle_dense_opts o = {.gate_pre = gate_pre, .lists = (const int32_t *const *)ss->lists, .n = ss->n_idx};
                rc = sl_bundle_dense(bd, ctx->pool, &ss->bws, c->act, ctx->xb, B, ctx->hb, ctx->hb2, &o, ctx->xb2, &err);
            } else {
                rc = sl_bundle_forward_batch(bd, ctx->pool, &ss->bws, c->act, ctx->xb, B, (const int32_t *const *)ss->lists, ss->n_idx,
                                             gate_pre, ctx->xb2, NULL, &err);
            }
        }
    }
    if (rc != SL_OK) { /* indices come from the selection: only scratch memory can fail */
        memset(ctx->xb2, 0, (size_t)B * (size_t)E * sizeof(float));
        if (!ctx->fault) ctx->fault = rc;
    }
    st->t_operator += sl_time_s() - t2;

    /* the neurons finally computed against the true mask (gate > 0), their share of the
     * contributions |act(g) * u| * ||down[:, i]||, and the output against the dense MLP's */
    if (ctx->track_recall) {
        if (!S->down_norm && (S->down_norm = malloc((size_t)I * sizeof(float))) && sl_down_col_norms(&L->ffn_down, S->down_norm, &err)) {
            free(S->down_norm);
            S->down_norm = NULL;
        }
        const float *gate = ss->scores;
        if (!gate_dense) {
            gate_all(ss, ctx, bd, B, ss->gate_full);
            gate = ss->gate_full;
        }
        sl_matmul_rows(ctx->pool, bd->t_gu, bd->data + bd->off_up, bd->stride, bd->I, bd->H, ctx->xb, B, ss->up_full);
        for (int b = 0; b < B; b++) {
            const float *g = gate + (size_t)b * I, *u = ss->up_full + (size_t)b * I;
            const int32_t *idx = ss->idx + (size_t)b * I;
            int64_t n_true = 0, tp = 0;
            double all = 0.0, kept = 0.0;
            for (int32_t i = 0; i < I; i++) {
                n_true += g[i] > 0.0f;
                if (S->down_norm) all += fabs((double)sl_activate(c->act, g[i]) * u[i]) * S->down_norm[i];
            }
            for (int32_t k = 0; k < ss->n_idx[b]; k++) {
                const int32_t i = idx[k];
                tp += g[i] > 0.0f;
                if (S->down_norm) kept += fabs((double)sl_activate(c->act, g[i]) * u[i]) * S->down_norm[i];
            }
            st->true_pos += tp;
            st->false_pos += ss->n_idx[b] - tp;
            st->false_neg += n_true - tp;
            st->contrib_kept += kept;
            st->contrib_total += all;
        }
        /* the dense MLP output (down of act(g) * u over all neurons) against the sparse one */
        for (size_t k = 0; k < (size_t)B * I; k++) ss->up_full[k] *= sl_activate(c->act, gate[k]);
        for (int b = 0; b < B; b++) {
            const float *xs = ctx->xb2 + (size_t)b * E;
            float *dn = ss->dense_out + (size_t)b * E;
            if (sl_bundle_down(bd, ctx->pool, &ss->bws, NULL, ss->up_full + (size_t)b * I, I, dn, &err) != SL_OK) continue;
            for (int32_t k = 0; k < E; k++) {
                const double d = (double)xs[k] - dn[k];
                st->out_err += d * d;
                st->out_norm += (double)dn[k] * dn[k];
            }
        }
    }
    return true;
}
