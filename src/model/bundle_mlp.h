/*
 * bundle_mlp.h — the MLP computed over neuron bundles (model/bundle.h) (internal): the dense
 * forward pass of a bundled model (forward.c), and the pieces a sparse rule is built from
 * (src/sparse/skip.c, and selection rules that decide on the gate/up products before reading
 * the down rows).
 *
 * For one token, the work is one fused pass over a list of neurons in groups of 8: their gate and
 * up rows are dotted with x, h = act(g) * u, and their down rows are added, scaled by h, into a
 * per-thread accumulator — every neuron's bytes are read once, front to back, while the kernels
 * prefetch the rows of the groups ahead. A list may be the whole layer (the dense pass). The
 * pass can also stop after the products (sl_bundle_gate_up: g and u per listed neuron, so a rule
 * can choose the down rows with both known) and the down sum can run alone on any list with any
 * coefficients (sl_bundle_down): a two-stage rule reads the gate/up rows of its candidates, then
 * the down rows of the neurons it keeps. sl_bundle_opts.min_abs_h does the same inside one pass
 * for a threshold on |h|. For a batch of tokens that each have their own list,
 * sl_bundle_forward_batch reads every neuron of the union once (sparse decoding of several
 * sequences together). For a batch through every neuron, sl_bundle_dense_batch runs matrix
 * products over the bundle rows (prefill).
 *
 * Numerics. Gate and up products: x quantized to Q8_0 for quantized rows, as the matrices path
 * does. The down sum of one token (B = 1, the fused pass, sl_bundle_down, the batch union) rounds
 * each call's coefficients for quantized rows to int8 per block of 32 outputs, over a group of up
 * to 8 consecutive list entries (sparse_rows.h states the bound): the groups depend only on the
 * list, never on the thread count. The batched dense products (sl_bundle_dense_batch) sum the
 * dequantized down rows in float.
 * What it is not: the choice of neurons (src/sparse/select.c) or the layout (bundle.c).
 */
#ifndef SL_MODEL_BUNDLE_MLP_H
#define SL_MODEL_BUNDLE_MLP_H

#include "model/bundle.h"

/* Scratch of the bundle passes: prepared inputs and per-thread accumulators (grow-only). */
typedef struct sl_bundle_ws {
    void *xq;          /* prepared x (the kernel set's layout for t_gu), one per token of a batch */
    size_t xq_bytes;   /* capacity */
    float *acc;        /* per-thread partial outputs */
    size_t acc_bytes;  /* capacity */
    int32_t *list;     /* union list and per-token lists of a batch call */
    size_t list_bytes; /* capacity */
    int32_t *all;      /* [I] 0, 1, ..., I - 1: every token's list in a small dense batch */
    size_t all_bytes;  /* capacity */
} sl_bundle_ws;

void sl_bundle_ws_free(sl_bundle_ws *ws);

/* Optional parts of a one-token pass (zero-initialise; every field may be left 0 / NULL). */
typedef struct sl_bundle_opts {
    const float *gate_pre; /* [I] gate pre-activations already computed (CATS scores): the gate rows are not read */
    float min_abs_h;       /* > 0: a listed neuron whose |act(g) * u| is below it does not read its down row */
    float *g_out;          /* [n] the gate pre-activation of each listed neuron (NULL: not wanted) */
    float *u_out;          /* [n] its up product */
    int64_t n_down;        /* out: down rows read */
} sl_bundle_opts;

/* One token: out[H] = sum over the listed neurons i of act(g_i) * (up_i . x) * down_t_i, g_i =
 * gate_i . x (or opts->gate_pre[i]). idx: distinct neurons in [0, I), any order (ascending streams
 * best), or NULL for all I neurons in order (then n must be I); n may be 0 (out = 0). opts may be
 * NULL. Errors: bad arguments, an index out of range (SL_ERR_RANGE), no memory for scratch. */
sl_status sl_bundle_forward(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                            const int32_t *idx, int32_t n, sl_bundle_opts *opts, float *out, sl_error *err);

/* The first stage alone: g[k] = gate_{idx[k]} . x (g may be NULL: gate rows not read) and u[k] =
 * up_{idx[k]} . x (u may be NULL), idx NULL = all neurons. */
sl_status sl_bundle_gate_up(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const float *x, const int32_t *idx,
                            int32_t n, float *g, float *u, sl_error *err);

/* The second stage alone: out[H] = sum_k coef[k] * down_t_{idx[k]} (idx NULL = all, in order). */
sl_status sl_bundle_down(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const int32_t *idx, const float *coef,
                         int32_t n, float *out, sl_error *err);

/* B tokens, token t over its own list lists[t][0 .. n[t]) (distinct, in [0, I)): out[t] as
 * sl_bundle_forward would give it (the int8 groups are taken over the union order, so results
 * differ from B separate calls within the rounding bound), but each neuron of the union is read
 * once for all the tokens that listed it. gate_pre: [B, I] or NULL. *n_union (may be NULL) gets
 * the size of the union. B <= 64. */
sl_status sl_bundle_forward_batch(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *X,
                                  int B, const int32_t *const *lists, const int32_t *n, const float *gate_pre, float *out,
                                  int64_t *n_union, sl_error *err);

/* Every neuron for B tokens (the dense MLP of a bundled model): B == 1 is the fused pass; B > 1
 * runs matrix products over the bundle rows (sl_matmul_rows, sl_matmul_t), except for a decode-
 * sized batch (B <= SL_BUNDLE_UNION_MAX_B, no hook): that goes through sl_bundle_forward_batch,
 * every neuron read once for all the tokens (each token's result is then its one-token fused pass,
 * bit for bit: the union is the whole layer in order). hb and hb2 are
 * [B, I] scratch. opts (may be NULL): the gate pre-activations already computed (gate_pre
 * [B, I]: the gate rows are not read), per-token lists (token t keeps only lists[t][0 .. n[t])
 * and the others' h is 0: the dense cost with each token's own neurons, for batches whose union
 * covers most of the layer), and an observer called with the gate pre-activations [B, I] before
 * they are used (calibration and training observe the dense MLP through it). */
#define SL_BUNDLE_UNION_MAX_B 8
typedef void (*sl_bundle_gate_hook)(void *ud, const float *gate, int B);
typedef struct sl_bundle_dense_opts {
    const float *gate_pre;        /* [B, I] or NULL */
    const int32_t *const *lists;  /* [B] lists, or NULL = every neuron */
    const int32_t *n;             /* [B] their lengths */
    sl_bundle_gate_hook hook;     /* or NULL */
    void *hook_ud;                /* passed to hook */
} sl_bundle_dense_opts;
sl_status sl_bundle_dense(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *X, int B,
                          float *hb, float *hb2, const sl_bundle_dense_opts *opts, float *out, sl_error *err);

/* The definition, computed the plain way (each bundled row dequantized to f32, sums in double):
 * what the tests hold the passes to. gate_pre may be NULL. */
sl_status sl_bundle_forward_ref(const sl_neuron_bundle *b, sl_activation act, const float *x, const int32_t *idx, int32_t n,
                                const float *gate_pre, float *out, sl_error *err);

#endif
