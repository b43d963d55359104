/*
 * skip_stages.h — what the skip model (skip.c) needs for the two-stage rules (internal): one
 * token's MLP from its stage-1 candidates to its output, the per-neuron weights of stage 2
 * (||down[:, i]||) and the weight bytes a rule reads.
 *
 * What it is not: the rules' definitions (select.c), the bundle passes (bundle_stages.c) or the
 * choice of the rules' parameters (calibrate_stages.c, tune).
 */
#ifndef SL_SPARSE_SKIP_STAGES_H
#define SL_SPARSE_SKIP_STAGES_H

#include "model/model.h"
#include "model/bundle_mlp.h"
#include "sparse/profile.h"

/* Scratch of one token's two-stage MLP: [n_ff] each. */
typedef struct sl_stage_scratch {
    float *h;      /* products of the candidates */
    float *work;   /* stage-2 scores */
    float *coef;   /* products of the chosen neurons */
    int32_t *pos;  /* chosen positions in the candidate list */
    void *tmp;     /* radix-select keys */
    float *gate;   /* [n_ff] gate pre-activations of the gate stage's survivors (indexed by neuron) */
} sl_stage_scratch;

sl_status sl_stage_scratch_init(sl_stage_scratch *s, int32_t n_ff, sl_error *err);
void sl_stage_scratch_free(sl_stage_scratch *s);

/* One token of a two-stage layer: products of the n candidates idx[0..n) (gate_pre: the dense
 * gate pre-activations for TWO_STAGE, NULL for TWO_STAGE_PRED), stage 2 (the P->topk largest
 * |h| * down_w), and the down rows of those into out [H]. On return idx[0 .. *n_out) holds the
 * chosen neurons. t_stage2 (may be NULL) gets the seconds stage 2 took. */
sl_status sl_stage_token(const sl_profile_layer *P, const sl_neuron_bundle *b, const float *down_w, sl_pool *pool,
                         sl_bundle_ws *bws, sl_stage_scratch *s, sl_activation act, const float *x, int32_t *idx, int32_t n,
                         const float *gate_pre, float *out, int32_t *n_out, double *t_stage2, sl_error *err);

/* ||down[:, i]|| for the I columns of down [H, I] (any weight type), into out [I]. */
sl_status sl_down_col_norms(const sl_weight *down, float *out, sl_error *err);

/* Weight bytes one token reads in a layer under rule P (model file's row sizes: gate row, up row,
 * a column of down; the predictor's A and B as stored), given how many gate, up and down rows it
 * read. sl_mlp_dense_bytes: the whole MLP. */
int64_t sl_mlp_dense_bytes(const sl_layer *L);
int64_t sl_mlp_rule_bytes(const sl_layer *L, const sl_profile_layer_data *PD, int64_t n_cand, int64_t n_active);
/* two-stage-pred with a gate stage: the predictor, n_gate gate rows, n_cand up rows, n_active down columns. */
int64_t sl_mlp_gate_stage_bytes(const sl_layer *L, const sl_profile_layer_data *PD, int64_t n_gate, int64_t n_cand, int64_t n_active);

/* The gate stage of two-stage-pred (P->gate_k > P->cand_k): the gate products of the n listed
 * neurons idx (the predictor's top gate_k), then the top P->cand_k of them by |act(g)| (ties by
 * index) replace the list, in ascending order, and their gate pre-activations go to s->gate
 * [neuron] for the next stage (sl_stage_token's gate_pre). Returns the new length in *n_out. */
sl_status sl_stage_gate(const sl_profile_layer *P, const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *bws, sl_stage_scratch *s,
                        sl_activation act, const float *x, int32_t *idx, int32_t n, int32_t *n_out, sl_error *err);

#endif
