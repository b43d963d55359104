/*
 * bundle.h — neuron bundles: a layer's MLP stored neuron by neuron, the one layout of the MLP
 * weights a model uses when it decodes sparsely (internal).
 *
 * What it is for: the model's shared MLP layout (model_bundle.c builds it at load, or on the
 * first profile attached), which the dense forward pass (forward.c) and
 * the skip model (src/sparse/skip.c) both read, and the public operator's optional bundled layout
 * (sl_sparse_mlp_set_bundled). A bundle holds, for each neuron i, its gate row, its up row and its
 * row of the transposed down matrix next to each other in one stride ("neuron bundling", as
 * PowerInfer lays out its hot neurons): a token that activates a few thousand random neurons
 * reads a few thousand contiguous 3-7 KiB runs instead of three scattered rows in three matrices.
 * What it is not: the forward passes over it (bundle_mlp.h) or the choice of neurons (src/sparse).
 *
 * Rows are stored in the type of the file, at its bits per weight, exactly: F32/F16/BF16 as they
 * are; Q8_0 and Q4_0 gate and up rows in the row layouts Q8_0N / Q4_0N (quant.h: the same values
 * and scales, reordered for wide loads). The down matrix [H, I] runs the other way: its blocks
 * of 32 lie along I, one f16 scale per row h and block column j (neurons 32j..32j+31). Neuron i's
 * down row keeps the quantized values of column i as they are (Q4_0C / Q8_0C, quant.h), and the
 * scales of each block column are stored once, in a table after the neurons ([I / 32][H] f16),
 * shared by its 32 neurons: 4.5 (Q4_0) / 8.5 (Q8_0) bits per weight, no second rounding, and
 * the down sum over a block column's neurons is the dense path's own integer product (their
 * coefficients quantized as the dense path quantizes that block of its activations to Q8_0). At
 * H = 2048 a neuron is 3328 bytes (Q4_0) + 128 of table = 3456, 6400 + 128 = 6528 (Q8_0), 12288
 * (F16). A sparse token reads the table of every block column with an active neuron (2H bytes
 * each): at 10% active, 97% of them (the price of the exact layout; docs/sparse-speed.md).
 * A bundle built from a given transposed down (the operator's down_t, sl_bundle_init_t) keeps
 * those rows' own scales instead (Q8_0N / Q4_0N down rows, no table). Every other type the
 * loader decodes (K-quants, Q4_1, Q5_x, IQ4) keeps its gate/up rows as in the file (dotted by the
 * generic kernels) and its down rows re-rounded to Q8_0N (8.5 bits; correct, not yet fast).
 */
#ifndef SL_MODEL_BUNDLE_H
#define SL_MODEL_BUNDLE_H

#include "model/model.h"
#include "skipllama.h"
#include "util/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_neuron_bundle {
    uint8_t *data;     /* [I] neurons of `stride` bytes: [gate row | up row | down_t row] */
    size_t bytes;      /* I * stride */
    size_t stride;     /* bytes per neuron (a multiple of 64) */
    size_t off_up;     /* offset of the up row in a neuron */
    size_t off_down;   /* offset of the down_t row */
    size_t rb_gu;      /* bytes of a gate / up row (H elements of t_gu) */
    size_t rb_d;       /* bytes of a down_t row (H elements of t_d) */
    sl_type t_gu;      /* stored type of gate and up (Q4_0N / Q8_0N for Q4_0 / Q8_0) */
    sl_type t_d;       /* stored type of the down_t rows (Q4_0C / Q8_0C: exact columns with the table) */
    const uint16_t *dscale; /* Q4_0C / Q8_0C: [I / 32][H] f16 scales of the block columns (in data), else NULL */
    sl_type t_src;     /* the file's type of gate and up */
    int64_t H;         /* n_embd: length of every row */
    int64_t I;         /* n_ff: neurons */
    bool owned;        /* data came from sl_alloc_huge (sl_bundle_free frees it); false: a view */
} sl_neuron_bundle;

/* The stored layout of rows of type t (Q4_0 -> Q4_0N, Q8_0 -> Q8_0N, others themselves), and the
 * bytes of such a row of n elements (0 when n does not fit the block size). */
sl_type sl_bundle_row_type(sl_type t);
size_t sl_bundle_row_bytes(sl_type stored, int64_t n);

/* Fill in b's layout (no data) for gate/up of file type t_gu ([I, H]) and down of file type
 * t_down ([H, I], or [I, H] rows when down_transposed). Errors: an unsupported type, H or I not
 * fitting the block size, sizes that overflow. */
sl_status sl_bundle_layout(sl_neuron_bundle *b, sl_type t_gu, sl_type t_down, bool down_transposed, int64_t H, int64_t I,
                           sl_error *err);
/* Point b (a layout) at data (b->bytes of it, 64-byte aligned): data and the scale table. */
void sl_bundle_attach(sl_neuron_bundle *b, uint8_t *data);

/* Write the bundles of gate/up ([I, H]) and down ([H, I], or down_t [I, H] when `transposed`)
 * into b->data (b's layout, b->bytes writable bytes), neurons in order. pool may be NULL. */
sl_status sl_bundle_fill(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                         bool transposed, sl_error *err);

/* Layout + huge-page allocation + fill (owned). On error *b is left empty (safe to free). */
sl_status sl_bundle_init(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                         sl_error *err);
/* The same from a transposed down ([I, H], any supported type; quantized rows are re-laid out
 * as Q4_0N / Q8_0N, not re-rounded). */
sl_status sl_bundle_init_t(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up,
                           const sl_weight *down_t, sl_error *err);
void sl_bundle_free(sl_neuron_bundle *b);

/* The transposed down: rows [i0, i1) of down_t = column i of down ([H, I]), each written to
 * dst + (i - i0) * dst_stride as `type` — a file type (re-quantized with ggml's rounding for
 * Q8_0 / Q4_0: a second rounding, within half a step of the new block, exact for the float
 * types) or Q8_0N / Q4_0N (the same rounding, then re-laid out). The operator's transposed down;
 * the model's bundles keep the exact columns instead. pool may be NULL; i0 and i1 multiples of
 * 32 or I. */
sl_status sl_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, int64_t i0, int64_t i1, uint8_t *dst,
                            size_t dst_stride, sl_error *err);

#endif
