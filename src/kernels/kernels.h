/*
 * kernels.h — the compute kernels the forward pass is built from (internal).
 *
 * Every kernel here has a scalar reference (the *_ref functions, in *_ref.c files) and SIMD
 * variants (AVX2 and AVX-512, in *_avx2.c / *_avx512.c) chosen once at run time by CPU
 * detection, so one binary runs on any x86-64 (and the scalar code on anything else); tests
 * compare every variant with the references on awkward sizes and every weight type.
 * Kernels take (ith, nth) where they parallelise, so any thread pool can drive them; sl_matmul
 * drives itself with an sl_pool. What it is not: a tensor library — there is no graph, no
 * allocation of outputs.
 *
 * Numerics, which every variant shares: float weights (F32/F16/BF16) are multiplied in f32 with
 * f32 activations (no rounding of activations to f16/bf16). Block-quantized weights are
 * multiplied with activations quantized the way ggml's vec_dot_type does (sl_act_type_of: Q8_0
 * for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants and IQ4_XS), so each block
 * or sub-block is one exact integer dot product and only its scales are floating point. sl_matmul_ref keeps f32 activations (it is the
 * definition of the product), so quantized sl_matmul differs from it by the activation
 * quantization error; sl_matmul equals "sl_act_prepare + sl_vec_dot_ref per row" up to float
 * reassociation.
 */
#ifndef SL_KERNELS_H
#define SL_KERNELS_H

#include "format/quant.h"
#include "util/threadpool.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- row dot products -------------------------------------------------------------------
 * An activation vector x is prepared once per weight type, then dotted with many weight rows:
 * float weights (F32/F16/BF16) use x as f32; block-quantized weights use x in the activation
 * format ggml pairs with them (sl_act_type_of), so each block is integer dot products and a few
 * scale multiplies. */

/* Bytes of the prepared form of an n-element activation for weights of type wtype. */
size_t sl_act_size(sl_type wtype, int64_t n);
/* Write the prepared form of x[0..n) into act (sl_act_size bytes): bit-identical to
 * sl_quantize_row_ref(sl_act_type_of(wtype), ...) on every variant. */
void sl_act_prepare(sl_type wtype, const float *x, int64_t n, void *act);
/* dot(w_row, x) with x in prepared form. _ref is the plain scalar definition; sl_vec_dot is the
 * fastest variant for this CPU (chosen once, at first use). */
float sl_vec_dot_ref(sl_type wtype, const void *w_row, const void *act, int64_t n);
float sl_vec_dot(sl_type wtype, const void *w_row, const void *act, int64_t n);
/* One super-block (256 elements) of a Q8_K-paired weight type against its Q8_K block: the
 * definition the K-quant kernels compute, d_w d_x isum - dmin_w d_x msum (dot_ref.c). */
float sl_dot_k_block_ref(sl_type wtype, const void *blk, const sl_block_q8_K *x);
/* y[0..n) += a * w_row[0..n) for a weight row of any type (used by the sparse down projection). */
void sl_vec_axpy_ref(sl_type wtype, const void *w_row, float a, float *y, int64_t n);
void sl_vec_axpy(sl_type wtype, const void *w_row, float a, float *y, int64_t n);

/* Y[b, r] = dot(W[r, :], X[b, :]) for b < B, r in this thread's share of [0, rows).
 * W: rows x n weights of `type` (row-major, each row sl_type_row_size(type, n) bytes).
 * X: [B, n] f32, Y: [B, rows] f32 (row stride `rows`). Reference: plain loops, f32 activations. */
void sl_matmul_ref(sl_type type, const void *W, int64_t rows, int64_t n, const float *X, int64_t B, float *Y, int ith,
                   int nth);

/* Same contract, fastest available implementation, run on `pool` (may be NULL: runs on the
 * caller). B == 1 streams each weight row once (decode, bandwidth bound); B > 1 reuses each
 * weight tile across many tokens (prefill, compute bound). For Q8_0/Q4_0 the activations are
 * quantized once per call into the pool's scratch buffer (sl_pool_scratch), so a call from
 * inside a task of the same pool is not allowed. Rows are split over threads in multiples of
 * 16, so threads never write the same cache line of Y (when Y is 64-byte aligned and rows % 16
 * == 0). Results do not depend on the thread count: each output is computed by one thread in
 * a fixed order. */
void sl_matmul(sl_pool *pool, sl_type type, const void *W, int64_t rows, int64_t n, const float *X, int64_t B, float *Y);

/* ---- products over rows at a stride (the neuron bundles, src/model/bundle.h) ---------------
 * sl_matmul_rows: Y[b, r] = W_r . X[b] for rows r < rows at W + r * stride, of a file type or a
 * bundle row layout (Q4_0N / Q8_0N): the numerics of sl_matmul on the same (plain) rows —
 * quantized rows against X quantized to Q8_0. sl_matmul_t: Y[b, c] = sum_k X[b, k] * Wt_k[c] for
 * c < N, rows k < K at Wt + k * stride (F32, F16, BF16, Q8_0N, Q4_0N): the down projection from
 * transposed rows, as float products of X with the dequantized rows (X is not rounded). Both
 * split over the pool's threads (rows in units of 16, columns in units of 128), results do not
 * depend on the thread count, and a call from a task of the same pool is not allowed.
 * sl_matmul_t_ref is the plain definition (one thread, f32 sums in k order). */
void sl_matmul_rows(sl_pool *pool, sl_type type, const void *W, size_t stride, int64_t rows, int64_t n, const float *X,
                    int64_t B, float *Y);
void sl_matmul_t(sl_pool *pool, sl_type type, const void *Wt, size_t stride, int64_t K, int64_t N, const float *X, int64_t B,
                 float *Y);
void sl_matmul_t_ref(sl_type type, const void *Wt, size_t stride, int64_t K, int64_t N, const float *X, int64_t B, float *Y);
/* The same for exact down columns (Q4_0C / Q8_0C, quant.h; K a multiple of 32, dscale the
 * [K / 32][N] f16 scale table): X quantized to Q8_0 per 32 rows as sl_matmul does it, each block
 * column an exact integer sum — sl_matmul's numerics on the [N, K] matrix the columns came from. */
void sl_matmul_tc(sl_pool *pool, sl_type type, const void *Wt, size_t stride, const uint16_t *dscale, int64_t K, int64_t N,
                  const float *X, int64_t B, float *Y);

/* Causal attention for one query token.
 * q:   [n_head, head_dim] (already rotated)
 * kc:  key cache, positions 0..n_pos-1, each [n_head_kv, head_dim]; f32 or f16 (kv_f16)
 * vc:  value cache, same layout
 * out: [n_head, head_dim]
 * att: scratch of n_pos floats per thread (att + ith * n_pos is used by thread ith); the
 *      SIMD variants do not use it (they run an online softmax over blocks of positions)
 * Heads are split over (ith, nth). Query head h reads KV head h / (n_head / n_head_kv). The
 * SIMD variants read each cached K/V row once for all the query heads of a thread that share
 * it (GQA), which is what matters at long context. */
void sl_attention_ref(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int n_head, int n_head_kv,
                      int head_dim, float *out, float *att, int ith, int nth);
void sl_attention(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int n_head, int n_head_kv,
                  int head_dim, float *out, float *att, int ith, int nth);

/* ---- variant selection ------------------------------------------------------------------ */

typedef enum sl_kernel_variant {
    SL_KERNELS_AUTO = -1,  /* the best this CPU supports (the default) */
    SL_KERNELS_SCALAR = 0, /* plain C: the references (Q8_0 activations for quantized matmul) */
    SL_KERNELS_AVX2 = 1,   /* AVX2 + FMA + F16C */
    SL_KERNELS_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI (+ F16C, FMA) */
} sl_kernel_variant;

/* Whether this CPU (and OS) can run a variant, and its name ("scalar", "avx2", "avx512"). */
bool sl_kernels_supported(sl_kernel_variant v);
const char *sl_kernels_name(sl_kernel_variant v);
/* The variant in use (resolved, never AUTO). */
sl_kernel_variant sl_kernels_current(void);
/* Force a variant (tests, benchmarks); false (and no change) when unsupported. Not meant to be
 * called while kernels run on other threads. sl_kernels_select(SL_KERNELS_AUTO) returns to the
 * best variant of this CPU (not to SKIPLLAMA_KERNELS). */
bool sl_kernels_select(sl_kernel_variant v);
/* The variant named by the environment variable SKIPLLAMA_KERNELS ("scalar", "avx2", "avx512",
 * "auto"; AUTO when unset or unknown). The first kernel call uses it when this CPU supports it. */
sl_kernel_variant sl_kernels_env(void);
/* The variant called `name` (as sl_kernels_name writes it, "auto" included); false if none. */
bool sl_kernels_from_name(const char *name, sl_kernel_variant *out);
/* Whether the selected variant has a fast matrix kernel for the interleaved Q4_0x4 layout
 * (quant.h); loaders repack Q4_0 weights only then. */
bool sl_kernels_fast_q4_0x4(void);

/* Attention of ONE query head q [head_dim] over cached positions 0..n_pos-1 (attention.c).
 * Cache rows have kv_stride elements (n_head_kv * head_dim); this head's keys/values start at
 * kv_head * head_dim. att: scratch of n_pos floats (only the scalar variant uses it). out: [head_dim].
 * Scores are s = (q . k) * scale, capped to softcap * tanh(s / softcap) when softcap > 0 (Gemma 2),
 * then softmax-ed (sl_attention uses scale 1/sqrt(head_dim) and no cap). A sliding window is the
 * caller's: it passes the window's first cached row as kc/vc and its length as n_pos. */
void sl_attention_head_ref(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                           int head_dim, float scale, float softcap, float *out, float *att);
void sl_attention_head(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                       int head_dim, float scale, float softcap, float *out, float *att);

/* The same for n_q consecutive query heads q [n_q, head_dim] -> out [n_q, head_dim] that all
 * read KV head kv_head (a GQA group, or part of one). The SIMD variants read each cached K/V
 * row once for the whole group instead of once per head, which is what matters at long
 * context: prefer it over n_q calls of sl_attention_head. att: n_pos floats (scalar only). */
void sl_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                        int kv_head, int head_dim, float scale, float softcap, float *out, float *att);

#endif
