/*
 * sparse_mlp.h — the sparse MLP operator on the model's weight views (internal).
 *
 * What it is for: the functions the model's forward pass calls per layer (forward.c), and the
 * pieces the public sl_sparse_mlp handle (include/skipllama.h) is built from: a reusable
 * scratch workspace, the active-row cache, and the sparse and dense
 * MLP on sl_weight views with a caller-supplied thread pool. Nothing here copies weights per
 * call. What it is not: a predictor — which neurons are active is the caller's business.
 *
 * Shapes (H = n_embd, I = n_ff):  gate, up: [I, H] (rows of H);  down: [H, I] as GGUF stores it;
 * down_t: [I, H], row i = column i of down = the H weights neuron i writes into the output.
 */
#ifndef SL_SPARSE_MLP_H
#define SL_SPARSE_MLP_H

#include "format/quant.h"
#include "kernels/sparse_rows.h"
#include "model/model.h"
#include "skipllama.h"
#include "sparse/mlp_weights.h"
#include "util/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Scratch memory reused across calls (prepared inputs, index lists, per-thread accumulators).
 * It grows to the largest call seen and never shrinks; one workspace per thread of callers. */
typedef struct sl_sparse_ws sl_sparse_ws;

sl_sparse_ws *sl_sparse_ws_init(void);
void sl_sparse_ws_free(sl_sparse_ws *ws);
/* Bytes currently held by the workspace. */
size_t sl_sparse_ws_bytes(const sl_sparse_ws *ws);

/* ---- active-row cache ("LLM in a flash") ---------------------------------------------------
 * Keeps private copies of the gate, up and down_t rows of the neurons active in the previous
 * call, packed contiguously, so the gathers of the next call stream through one region. When
 * the active set changes, leaving neurons' slots are refilled with entering neurons, then the
 * remaining holes are closed by moving the last slots in (swap-delete); only changed rows are
 * copied. Memory: capacity * (2 * gate row bytes + down_t row bytes). A call whose active set
 * (union over the batch) exceeds the capacity runs uncached and leaves the cache as it was.
 * The cache mirrors one layer's weights: use one cache per layer. */
typedef struct sl_row_cache sl_row_cache;

/* capacity 0 means n_ff (every neuron fits). NULL and *err on bad shapes or no memory. */
sl_row_cache *sl_row_cache_init(const sl_weight *gate, const sl_weight *up, const sl_weight *down_t, int64_t capacity,
                                sl_error *err);
void sl_row_cache_free(sl_row_cache *cache);
/* Bytes held by the cache. */
size_t sl_row_cache_bytes(const sl_row_cache *cache);
/* Forget the cached rows (the next call copies its whole active set in). */
void sl_row_cache_clear(sl_row_cache *cache);

/* ---- the operator --------------------------------------------------------------------------
 * out[b] = sum over active neurons i of act(gate_i . x[b]) * (up_i . x[b]) * down_t_i.
 * Active neurons come from mask ([B, I] bool, row-major) or from per-row index lists
 * (idx[b][0..n_idx[b]) ; idx[b] may be NULL when n_idx[b] == 0), never both; with neither, every
 * neuron is active. Index lists may be in any order; an index outside [0, I) is SL_ERR_RANGE and a
 * repeated index within one row is SL_ERR_INVALID_ARG (it would count the neuron twice). The
 * mode says how rows combine (see sl_mlp_mode). gate and up share a type; down_t may have its
 * own. ws may be NULL (scratch is then allocated for this call), cache may be NULL, stats may be
 * NULL (when non-NULL it is overwritten with this call's stage times and counts). On any error
 * out is left untouched. */
sl_status sl_sparse_mlp_forward_pool(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                     const sl_weight *down_t, sl_activation act, sl_row_cache *cache, const float *x,
                                     int64_t B, const bool *mask, const int32_t *const *idx, const int32_t *n_idx,
                                     sl_mlp_mode mode, float *out, sl_sparse_mlp_stats *stats, sl_error *err);

/* The same, given also the original down ([H, I], may be NULL): when the active fraction of a
 * call ((row, neuron) pairs computed / (B * I); SL_MLP_UNION computes |union| * B pairs, as do
 * per-row masks on float weights once the schedule is batched) is at least 0.8 (0.65 when down
 * is Q4_0, the cheapest to stream), the down projection runs as the dense product over down (h zero for inactive neurons) — at that
 * density one streaming pass over down is cheaper than the gathered axpys — and from 0.9 the
 * whole MLP runs densely (gate/up by sl_matmul too, unselected products dropped). Pass down
 * whenever the model has it (the model's ffn_down). */
sl_status sl_sparse_mlp_forward_pool_ex(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                        const sl_weight *down_t, const sl_weight *down, sl_activation act,
                                        sl_row_cache *cache, const float *x, int64_t B, const bool *mask,
                                        const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode, float *out,
                                        sl_sparse_mlp_stats *stats, sl_error *err);

/* The same, given also the gate pre-activations the caller already has (CATS computes the whole
 * gate to choose the neurons): gate_pre [B, I] row-major, gate_pre[b * I + i] = gate_i . x[b]
 * (e.g. sl_matmul of gate and x). When gate_pre is non-NULL no gate row is read: each computed
 * pair uses act(gate_pre[b * I + i]) and only the up rows are dotted — a third less gate/up
 * work. Every (row, neuron) pair the call computes is read from it (in SL_MLP_UNION mode, every
 * row for every neuron of the union; the dense path past 0.9 active reads all of it), so give
 * the full [B, I]. gate_pre NULL is exactly sl_sparse_mlp_forward_pool_ex. stats->weight_bytes
 * then counts up and down rows only. gate is still checked (shape, type) but not read. */
sl_status sl_sparse_mlp_forward_pool_gated(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                           const sl_weight *down_t, const sl_weight *down, sl_activation act,
                                           sl_row_cache *cache, const float *x, int64_t B, const bool *mask,
                                           const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode,
                                           const float *gate_pre, float *out, sl_sparse_mlp_stats *stats, sl_error *err);

/* The dense MLP the model runs (sl_matmul for gate, up and down in the [H, I] layout), with the
 * same stage accounting: out[b] = down . (act(gate . x[b]) * (up . x[b])). */
sl_status sl_mlp_dense_forward_pool(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                    const sl_weight *down, sl_activation act, const float *x, int64_t B, float *out,
                                    sl_sparse_mlp_stats *stats, sl_error *err);

/* Plain reference: dequantize every row to f32 and accumulate in double; mask NULL = all active;
 * inactive neurons contribute nothing. Give `down` ([H, I]) or, when down is NULL, `down_t`.
 * Slow on purpose: it defines what the operator computes. */
sl_status sl_mlp_reference_w(const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                             const sl_weight *down_t, sl_activation act, const float *x, int64_t B, const bool *mask,
                             float *out, sl_error *err);


#endif
