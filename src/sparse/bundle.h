/*
 * bundle.h — neuron bundles: a layer's MLP stored neuron by neuron for sparse decoding
 * (internal).
 *
 * What it is for: the skip model's per-token MLP (skip.c), and the public operator's optional
 * bundled layout (sl_sparse_mlp_set_bundled, sparse_mlp.c). A bundle holds, for each neuron i,
 * its gate row, its up row and its row of the transposed down matrix next to each other in one
 * stride, in memory backed by huge pages ("neuron bundling", as PowerInfer lays out its hot
 * neurons). A token that activates a few thousand random neurons then reads a few thousand
 * contiguous 4-7 KiB runs — close to a stream — instead of three scattered 1-2 KiB rows in three
 * matrices of the mmapped file, each row start a TLB and prefetcher miss. The forward pass fuses
 * the three products per group of neurons: one pass over the bundle, no intermediate lists.
 * What it is not: the general sparse operator (sparse_mlp.h: masks, batches, union mode, the row
 * cache) — a bundle serves one token at a time; batches loop.
 *
 * Memory: a full copy of the layer's MLP (gate only when the rule needs it: CATS computes the
 * gate densely from the model and keeps only up and down in the bundle). Rows keep their type
 * and their values; Q4_0 / Q8_0 rows are re-laid out as Q4_0N / Q8_0N (quant.h: the same
 * values and scales, reordered), which every kernel variant reads (AVX-512, AVX2, scalar). down transposed from a Q4_0 [H, I] matrix is bundled as Q8_0 (see
 * sl_mlp_down_t_type: a second 4-bit rounding would cost 7.6% RMS error on the weights); a
 * Q4_0 down_t given as such is kept.
 */
#ifndef SL_SPARSE_BUNDLE_H
#define SL_SPARSE_BUNDLE_H

#include "model/model.h"
#include "skipllama.h"
#include "util/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_neuron_bundle {
    uint8_t *data;     /* [I] neurons of `stride` bytes: [gate row | up row | down_t row], huge pages */
    size_t bytes;      /* bytes allocated at data (I * stride) */
    size_t stride;     /* bytes per neuron (a multiple of 64) */
    size_t off_up;     /* offset of the up row in a neuron (0 when there is no gate row) */
    size_t off_down;   /* offset of the down_t row */
    size_t rb_gu;      /* bytes of a gate / up row (H elements of t_gu) */
    size_t rb_d;       /* bytes of a down_t row (H elements of t_d) */
    sl_type t_gu;      /* stored type of gate and up (Q4_0N / Q8_0N for Q4_0 / Q8_0) */
    sl_type t_d;       /* stored type of the down_t rows (likewise) */
    sl_type t_src;     /* type gate and up were given in (what the operator checks a bundle against) */
    int64_t H;         /* n_embd: length of every row */
    int64_t I;         /* n_ff: neurons */
    bool has_gate;     /* gate rows are present (false: callers pass the gate pre-activations) */
} sl_neuron_bundle;

/* Build the bundle of gate/up ([I, H]) and down ([H, I]) — gate is copied only when with_gate.
 * pool may be NULL. On error *b is left empty (safe to free) and *err says why. */
sl_status sl_bundle_init(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up,
                         const sl_weight *down, bool with_gate, sl_error *err);
/* The same from a transposed down ([I, H], any supported type) whose rows are copied as they
 * are (the sparse operator's down_t, which it already built or was given). */
sl_status sl_bundle_init_t(sl_neuron_bundle *b, const sl_weight *gate, const sl_weight *up, const sl_weight *down_t,
                           bool with_gate, sl_error *err);
void sl_bundle_free(sl_neuron_bundle *b);

/* Scratch for sl_bundle_forward: the prepared input and one accumulator per thread. */
typedef struct sl_bundle_ws {
    void *xq;          /* prepared x (the kernel set's layout for t_gu) */
    size_t xq_bytes;   /* its capacity */
    float *acc;        /* [n_threads, acc_stride] per-thread partial outputs */
    size_t acc_bytes;  /* its capacity */
} sl_bundle_ws;

void sl_bundle_ws_free(sl_bundle_ws *ws);

/* One token: out[H] = sum over k < n of act(g_i) * (up_i . x) * down_t_i, i = idx[k], with
 * g_i = gate_i . x, or gate_pre[i] when gate_pre ([I]) is given (required when the bundle has no
 * gate rows). idx: distinct neurons in [0, I), any order (ascending streams best); n may be 0
 * (out = 0). Errors: bad arguments, an index out of range (SL_ERR_RANGE), no memory for scratch. */
sl_status sl_bundle_forward(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                            const int32_t *idx, int32_t n, const float *gate_pre, float *out, sl_error *err);

/* The same, computed the plain way (dequantize each bundled row to f32, accumulate in double): the
 * reference the tests hold sl_bundle_forward to. */
sl_status sl_bundle_forward_ref(const sl_neuron_bundle *b, sl_activation act, const float *x, const int32_t *idx,
                                int32_t n, const float *gate_pre, float *out, sl_error *err);

#endif
