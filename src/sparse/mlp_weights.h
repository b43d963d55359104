/*
 * mlp_weights.h — checks of an MLP's weight views and the transposed down matrix (internal),
 * shared by the sparse operator (sparse_mlp.c) and the neuron bundles (bundle.c).
 * What it is not: a weight store — views point at the caller's memory.
 *
 * Shapes (H = n_embd, I = n_ff):  gate, up: [I, H];  down: [H, I] as GGUF stores it;
 * down_t: [I, H], row i = column i of down = the H weights neuron i writes into the output.
 */
#ifndef SL_SPARSE_MLP_WEIGHTS_H
#define SL_SPARSE_MLP_WEIGHTS_H

#include "format/quant.h"
#include "model/model.h"
#include "skipllama.h"
#include "util/threadpool.h"

#include <stddef.h>
#include <stdint.h>

#define SL_MLP_MAX_DIM ((int64_t)1 << 30) /* H and I beyond this are surely a mistake (indices are int32) */

/* w is a [rows, cols] matrix of a supported type with consistent row_bytes ("name" in messages). */
sl_status sp_check_matrix(const sl_weight *w, int64_t rows, int64_t cols, const char *name, sl_error *err);
/* gate and up: [I, H], same type, act supported. Fills *H, *I. */
sl_status sp_check_gate_up(const sl_weight *gate, const sl_weight *up, sl_activation act, int64_t *H, int64_t *I,
                           sl_error *err);

/* ---- transposed down matrix ----------------------------------------------------------------
 * Building down_t costs one pass over down and as many bytes as down itself (when stored in the
 * same type). F32/F16/BF16 are transposed exactly. Q8_0/Q4_0 rows of down_t are re-quantized in
 * blocks of 32 along H (the old blocks ran along I), so each weight is rounded a second time:
 * for Q8_0 the extra error is at most half a step (1/254 of the new block's largest magnitude),
 * for Q4_0 at most 1/8 of it (RMS: 0.5% and 7.6% of the RMS weight on Gaussian weights) — for
 * Q4_0 about the error the file's own quantization already has. Choosing `type` = SL_TYPE_Q8_0
 * for a Q4_0 down avoids most of that at 1.9x the memory (down_t may have its own type). */

/* The type the operator builds down_t in for weights of `type`: the same for float types and
 * Q8_0, Q8_0 for every other block type (the public handle uses it; callers building their own
 * may follow it). */
sl_type sl_mlp_down_t_type(sl_type type);
/* Bytes of the [I, H] transposed form of `down` stored as `type` (0 when impossible: unsupported
 * type, or H not a multiple of the type's block size). */
size_t sl_mlp_down_t_bytes(const sl_weight *down, sl_type type);
/* Write the transposed form of down ([H, I]) into dst (dst_bytes >= sl_mlp_down_t_bytes) and
 * describe it in *down_t (rows = I, cols = H, data = dst). pool may be NULL. */
sl_status sl_mlp_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, void *dst, size_t dst_bytes,
                                sl_weight *down_t, sl_error *err);

#endif
