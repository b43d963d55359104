/*
 * sparse_rows.h — the sparse MLP's row-group kernels (internal): dot products and axpys over a
 * handful (1..8) of gathered weight rows at a time, for the sparse operator (src/sparse) and the
 * neuron bundles. Scalar definitions in sparse_rows.c and bundle_rows_ref.c, SIMD variants in
 * sparse_rows_avx2.c, sparse_rows_avx512.c and bundle_rows_avx512.c.
 * What it is not: the schedule that decides which rows to read (src/sparse/sparse_mlp.c).
 */
#ifndef SL_KERNELS_SPARSE_ROWS_H
#define SL_KERNELS_SPARSE_ROWS_H

#include "format/quant.h"
#include "skipllama.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- row-group kernels ----------------------------------------------------------------------
 * The inner loops of the operator, on 1..8 gathered rows at once (sparse_rows_avx512.c explains
 * why). Inputs are prepared once per call by the kernel set's x_prep (x_size bytes): the
 * sl_act_prepare form, except for the AVX-512 quantized kernels, which take their own layout
 * (offset corrections and f32 scales precomputed). dot: out[r] = rows[r] . x for r < nr (1..8),
 * x prepared for type t. axpy:
 * y[0..n) += sum_r a[r] * rows[r]. next[0..nnext) (nnext <= 8, may be 0) are the rows the caller
 * will use next, prefetched while these are read. _ref runs row by row through sl_vec_dot /
 * sl_vec_axpy (whatever variant those use); the AVX-512 versions need AVX-512 F/BW/VL + VNNI,
 * the AVX2 ones AVX2 + FMA + F16C (sparse_rows_avx2.c). */
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
 * forms). Every kernel set takes them; x is prepared by the set's x_prep (the reference set as
 * for Q4_0 / Q8_0, the AVX-512 and AVX2 sets in layouts of their own, bundle_rows_avx512.c and
 * bundle_rows_avx2.c). The scalar definitions:
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
size_t sl_bn_x_size_avx2(sl_type t, int64_t n);
void sl_bn_x_prep_avx2(sl_type t, const float *x, int64_t n, void *xp);
void sl_bn_dot_rows_avx2(sl_type t, const uint8_t *const *rows, int nr, const void *xp, int64_t n, float *out,
                         const uint8_t *const *next, int nnext);
void sl_bn_axpy_rows_avx2(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                          const uint8_t *const *next, int nnext);
#endif
static inline bool sl_is_bundle_layout(sl_type t) { return t == SL_TYPE_Q4_0N || t == SL_TYPE_Q8_0N; }
/* Down rows in the exact column layouts Q4_0C / Q8_0C (quant.h): nr <= 32 rows of one block
 * column, with integer coefficients k (sl_col_quantize_coef) and their scale dx:
 * y[e] += (d[e] * dx) * sum_r k[r] * v_r[e] for e < n, d the column's f16 scales, v = q - 8
 * (Q4_0C) or q (Q8_0C), the sum in exact integers — the dense path's Q8_0-activation product
 * restricted to these rows. n a multiple of 32; rows, d and y may start at any element that is a
 * multiple of 64 (Q4_0C) or 32 (Q8_0C). next: rows prefetched line by line meanwhile. */
typedef void (*sl_sp_col_axpy_fn)(sl_type t, const uint8_t *const *rows, const int8_t *k, int nr, float dx, const uint16_t *d,
                                  float *y, int64_t n, const uint8_t *const *next, int nnext);
#define SP_COL_MAX_ROWS 32
void sl_sp_col_axpy_ref(sl_type t, const uint8_t *const *rows, const int8_t *k, int nr, float dx, const uint16_t *d, float *y,
                        int64_t n, const uint8_t *const *next, int nnext);
#if defined(__x86_64__)
void sl_sp_col_axpy_avx2(sl_type t, const uint8_t *const *rows, const int8_t *k, int nr, float dx, const uint16_t *d, float *y,
                         int64_t n, const uint8_t *const *next, int nnext);
#endif
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
    sl_sp_col_axpy_fn col_axpy;            /* exact column rows (Q4_0C / Q8_0C) into one accumulator */
} sl_sp_kernel_set;
void sl_sp_kernels(sl_sp_kernel_set *k);
/* Rows per kernel call: gate/up neurons per group (2 rows each) and down rows per group (the
 * same at every active fraction `density` at present). At most SP_MAX_ROWS rows. */
#define SP_MAX_ROWS 8
void sl_sp_groups(sl_type t_gu, sl_type t_d, double density, int *g_gu, int *g_down);

#endif
