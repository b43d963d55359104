/*
 * sparse_mlp.h — the sparse MLP operator on the model's weight views (internal).
 *
 * What it is for: the functions the model's forward pass calls per layer (forward.c), and the
 * pieces the public sl_sparse_mlp handle (include/skipllama.h) is built from: a reusable
 * scratch workspace, the transposed down matrix, the active-row cache, and the sparse and dense
 * MLP on sl_weight views with a caller-supplied thread pool. Nothing here copies weights per
 * call. What it is not: a predictor — which neurons are active is the caller's business.
 *
 * Shapes (H = n_embd, I = n_ff):  gate, up: [I, H] (rows of H);  down: [H, I] as GGUF stores it;
 * down_t: [I, H], row i = column i of down = the H weights neuron i writes into the output.
 */
#ifndef SL_SPARSE_MLP_H
#define SL_SPARSE_MLP_H

#include "model.h"
#include "quant.h"
#include "skipllama.h"
#include "threadpool.h"

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

/* ---- transposed down matrix ----------------------------------------------------------------
 * Building down_t costs one pass over down and as many bytes as down itself (when stored in the
 * same type). F32/F16/BF16 are transposed exactly. Q8_0/Q4_0 rows of down_t are re-quantized in
 * blocks of 32 along H (the old blocks ran along I), so each weight is rounded a second time:
 * for Q8_0 the extra error is at most half a step (1/254 of the new block's largest magnitude),
 * for Q4_0 at most 1/8 of it (RMS: 0.5% and 7.6% of the RMS weight on Gaussian weights) — for
 * Q4_0 about the error the file's own quantization already has. Choosing `type` = SL_TYPE_Q8_0
 * for a Q4_0 down avoids most of that at 1.9x the memory (down_t may have its own type). */

/* The type the operator builds down_t in for weights of `type`: the same, except Q8_0 for Q4_0
 * (the public handle uses it; callers building their own may follow it). */
sl_type sl_mlp_down_t_type(sl_type type);
/* Bytes of the [I, H] transposed form of `down` stored as `type` (0 when impossible: unsupported
 * type, or H not a multiple of the type's block size). */
size_t sl_mlp_down_t_bytes(const sl_weight *down, sl_type type);
/* Write the transposed form of down ([H, I]) into dst (dst_bytes >= sl_mlp_down_t_bytes) and
 * describe it in *down_t (rows = I, cols = H, data = dst). pool may be NULL. */
sl_status sl_mlp_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, void *dst, size_t dst_bytes,
                                sl_weight *down_t, sl_error *err);

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

/* ---- row-group kernels ----------------------------------------------------------------------
 * The inner loops of the operator, on 1..8 gathered rows at once (sparse_mlp_avx512.c explains
 * why). Inputs are prepared once per call by the kernel set's x_prep (x_size bytes): the
 * sl_act_prepare form, except for the AVX-512 quantized kernels, which take their own layout
 * (offset corrections and f32 scales precomputed). dot: out[r] = rows[r] . x for r < nr (1..8),
 * x prepared for type t. axpy:
 * y[0..n) += sum_r a[r] * rows[r]. next[0..nnext) (nnext <= 8, may be 0) are the rows the caller
 * will use next, prefetched while these are read. _ref runs row by row through sl_vec_dot /
 * sl_vec_axpy (whatever variant those use); the AVX-512 versions need AVX-512 F/BW/VL + VNNI,
 * the AVX2 ones AVX2 + FMA + F16C (sparse_mlp_avx2.c). */
typedef void (*sl_sp_dot_rows_fn)(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                                  const uint8_t *const *next, int nnext);
typedef void (*sl_sp_axpy_rows_fn)(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                                   const uint8_t *const *next, int nnext);
void sl_sp_dot_rows_ref(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                        const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_ref(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                         const uint8_t *const *next, int nnext);
typedef size_t (*sl_sp_x_size_fn)(sl_type t, int64_t n);
typedef void (*sl_sp_x_prep_fn)(sl_type t, const float *x, int64_t n, void *xp);
#if defined(__x86_64__)
size_t sl_sp_x_size_avx512(sl_type t, int64_t n);
void sl_sp_x_prep_avx512(sl_type t, const float *x, int64_t n, void *xp);
void sl_sp_dot_rows_avx512(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                           const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_avx512(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                            const uint8_t *const *next, int nnext);
#endif
/* Dispatch on a row count nr (1..8) to an instantiation F(T, NR, ...) whose NR is a constant,
 * then return: the kernel files' inner loops unroll over rows (one copy per type and count). */
#define SP_NR_CASES(nr, F, T, ...)                                                                                       \
    switch (nr) {                                                                                                        \
    case 8: F(T, 8, __VA_ARGS__); return;                                                                                \
    case 7: F(T, 7, __VA_ARGS__); return;                                                                                \
    case 6: F(T, 6, __VA_ARGS__); return;                                                                                \
    case 5: F(T, 5, __VA_ARGS__); return;                                                                                \
    case 4: F(T, 4, __VA_ARGS__); return;                                                                                \
    case 3: F(T, 3, __VA_ARGS__); return;                                                                                \
    case 2: F(T, 2, __VA_ARGS__); return;                                                                                \
    default: F(T, 1, __VA_ARGS__); return;                                                                               \
    }

/* Rows in the neuron-bundle layouts Q4_0N and Q8_0N (quant.h; dot and axpy only, no batched
 * forms). Every kernel set takes them; x is prepared by the set's x_prep as for Q4_0 / Q8_0 (the
 * AVX-512 set has its own layout, sparse_bundle_rows_avx512.c). The scalar definitions:
 * dot: out[r] = sum over blocks of sl_vec_dot_ref(the Q4_0 / Q8_0 block, the Q8_0 block of x),
 *   x as sl_act_prepare gives it (the matrices path's products, bit for bit per block).
 * axpy: per block b, the call's coefficients c_r = a[r] * d_r,b are rounded against
 *   S_b = max_r |c_r| / 127 to k_r = rint(c_r * 127 / max_r |c_r|) (0 when all are 0), and
 *   y[32b + j] += S_b * sum_r k_r * v_r,j in exact integers (v: the signed values, nibble - 8
 *   for Q4_0). Each k_r * S_b is within S_b / 2 of c_r, so |y error| <= (S_b / 2) * sum_r |v_r,j|
 *   per element — the same rounding the dense path applies when it quantizes activations to
 *   Q8_0. */
void sl_sp_dot_rows_bundle_ref(sl_type t, const uint8_t *const *rows, int nr, const void *xq, int64_t n, float *out);
void sl_sp_axpy_rows_bundle_ref(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n);
#if defined(__x86_64__)
size_t sl_bn_x_size_avx512(sl_type t, int64_t n);
void sl_bn_x_prep_avx512(sl_type t, const float *x, int64_t n, void *xp);
void sl_bn_dot_rows_avx512(sl_type t, const uint8_t *const *rows, int nr, const void *xp, int64_t n, float *out,
                           const uint8_t *const *next, int nnext);
void sl_bn_axpy_rows_avx512(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                            const uint8_t *const *next, int nnext);
#endif
static inline bool sl_is_bundle_layout(sl_type t) { return t == SL_TYPE_Q4_0N || t == SL_TYPE_Q8_0N; }
/* Batched forms for the union schedule: the same rows for nb tokens.
 * dot: out[b * nr + r] = rows[r] . x_b, x_b = x + b * xs bytes (prepared inputs), nr <= 8.
 * axpy: y_b[0..n) += sum_r a[r * astride + b] * rows[r], y_b = y + b * ys floats, nr <= 8. */
typedef void (*sl_sp_dot_rows_batch_fn)(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                                        int64_t n, float *out, const uint8_t *const *next, int nnext);
typedef void (*sl_sp_axpy_rows_batch_fn)(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride,
                                         int nb, float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext);
void sl_sp_dot_rows_batch_ref(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb, int64_t n,
                              float *out, const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_batch_ref(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb, float *y,
                               int64_t ys, int64_t n, const uint8_t *const *next, int nnext);
#if defined(__x86_64__)
void sl_sp_dot_rows_batch_avx512(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                                 int64_t n, float *out, const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_batch_avx512(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb,
                                  float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext);
void sl_sp_dot_rows_avx2(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                         const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_avx2(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                          const uint8_t *const *next, int nnext);
void sl_sp_dot_rows_batch_avx2(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                               int64_t n, float *out, const uint8_t *const *next, int nnext);
void sl_sp_axpy_rows_batch_avx2(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb,
                                float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext);
#endif

/* The kernels matching the variant in use (sl_kernels_current): AVX-512, AVX2 or the fallback. */
typedef struct sl_sp_kernel_set {
    sl_sp_x_size_fn x_size;                /* bytes of one prepared input */
    sl_sp_x_prep_fn x_prep;                /* prepare one input for the dot kernels */
    sl_sp_dot_rows_fn dot;                 /* rows x one input */
    sl_sp_axpy_rows_fn axpy;               /* rows into one accumulator */
    sl_sp_dot_rows_batch_fn dot_batch;     /* rows x many inputs */
    sl_sp_axpy_rows_batch_fn axpy_batch;   /* rows into many accumulators */
} sl_sp_kernel_set;
void sl_sp_kernels(sl_sp_kernel_set *k);
/* Rows per kernel call: gate/up neurons per group (2 rows each) and down rows per group (the
 * same at every active fraction `density` at present). At most SP_MAX_ROWS rows. */
#define SP_MAX_ROWS 8
void sl_sp_groups(sl_type t_gu, sl_type t_d, double density, int *g_gu, int *g_down);

#endif
