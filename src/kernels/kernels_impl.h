/*
 * kernels_impl.h — the table of functions each kernel variant (scalar, AVX2, AVX-512) provides,
 * and the dispatcher's accessor (internal to src/kernels/; tests may include it to call a
 * variant's pieces directly). The public entry points in kernels.h forward to the table of the
 * selected variant. What it is not: an API for the rest of the library.
 */
#ifndef SL_KERNELS_IMPL_H
#define SL_KERNELS_IMPL_H

#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

/* One sl_matmul call as seen by a variant's row kernel. */
typedef struct sl_mm_args {
    sl_type type;     /* weight type */
    const void *W;    /* [rows, n] weights, row-major */
    size_t row_bytes; /* bytes per weight row */
    int64_t rows;     /* output features (weight rows) */
    int64_t n;        /* input features */
    const float *X;   /* [B, n] f32 activations */
    const void *xp;   /* X in the variant's prepared form (mm_prep), or NULL when mm_prep_size is 0 */
    int64_t B;        /* tokens */
    float *Y;         /* [B, rows] outputs */
} sl_mm_args;

/* One sl_matmul_t call as seen by a variant's column kernel. */
typedef struct sl_mt_args {
    sl_type type;      /* row type: F32, F16, BF16, Q8_0N, Q4_0N */
    const uint8_t *Wt; /* row k at Wt + k * stride */
    size_t stride;     /* bytes between rows */
    int64_t K, N;      /* rows (the reduction) and columns (outputs) */
    const float *X;    /* [B, K] */
    int64_t B;         /* tokens */
    float *Y;          /* [B, N] */
} sl_mt_args;

typedef struct sl_kernel_ops {
    const char *name; /* "scalar", "avx2", "avx512" */
    /* mm_rows has a fast kernel for SL_TYPE_Q4_0X4 (every variant computes it; without this
     * flag it runs the scalar rows, so loaders repack only when it is set) */
    bool fast_q4_0x4;
    /* x[0..n) -> n/32 Q8_0 blocks, bit-identical to sl_quantize_row_ref(SL_TYPE_Q8_0). */
    void (*quantize_q8)(const float *x, void *blocks, int64_t n);
    /* sl_vec_dot / sl_vec_axpy contracts (kernels.h). */
    float (*vec_dot)(sl_type wtype, const void *w, const void *act, int64_t n);
    void (*vec_axpy)(sl_type wtype, const void *w, float a, float *y, int64_t n);
    /* Bytes of X prepared for a [?, n] x [B, n] product with weights of `type`; 0 when the row
     * kernel reads X directly. */
    size_t (*mm_prep_size)(sl_type type, int64_t n, int64_t B);
    /* Prepare tokens [b0, b1) of X (B tokens in all) into xp (mm_prep_size bytes). Tokens are
     * independent, so threads may prepare disjoint ranges concurrently. */
    void (*mm_prep)(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
    /* Y[b, r] for all b and r in [r0, r1). */
    void (*mm_rows)(const sl_mm_args *a, int64_t r0, int64_t r1);
    /* The same five contracts for the types of issue 19 (sl_kq_type: Q4_1, Q5_0, Q5_1, the
     * K-quants, IQ4_NL, IQ4_XS), kept apart so that each variant's older kernels need not know
     * them. AVX-512 uses the AVX2 set (quant_avx2.c) for these types. */
    float (*kq_vec_dot)(sl_type wtype, const void *w, const void *act, int64_t n);
    void (*kq_vec_axpy)(sl_type wtype, const void *w, float a, float *y, int64_t n);
    size_t (*kq_mm_prep_size)(sl_type type, int64_t n, int64_t B);
    void (*kq_mm_prep)(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
    void (*kq_mm_rows)(const sl_mm_args *a, int64_t r0, int64_t r1);
    /* Y[b, c] for all b and c in [c0, c1) (sl_matmul_t; c0 a multiple of 128). */
    void (*mt_cols)(const sl_mt_args *a, int64_t c0, int64_t c1);
    /* sl_attention_group contract (kernels.h). */
    void (*attention_group)(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos,
                            int kv_stride, int kv_head, int head_dim, float scale, float softcap, float *out, float *att);
} sl_kernel_ops;

/* The selected variant's table (resolves AUTO on first use). */
const sl_kernel_ops *sl_kernels_ops(void);
/* A variant's table, or NULL when not compiled in or not supported by this CPU. */
const sl_kernel_ops *sl_kernels_ops_of(sl_kernel_variant v);

/* The weight types that run through the kq_* entries of a kernel table. */
static inline bool sl_kq_type(sl_type t) {
    switch (t) {
    case SL_TYPE_Q4_1:
    case SL_TYPE_Q5_0:
    case SL_TYPE_Q5_1:
    case SL_TYPE_Q2_K:
    case SL_TYPE_Q3_K:
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K:
    case SL_TYPE_Q6_K:
    case SL_TYPE_IQ4_NL:
    case SL_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

/* Scalar pieces (dot_ref.c, matmul_ref.c). */
size_t sl_kq_mm_prep_size_scalar(sl_type type, int64_t n, int64_t B);
void sl_kq_mm_prep_scalar(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
void sl_kq_mm_rows_scalar(const sl_mm_args *a, int64_t r0, int64_t r1);
size_t sl_mm_prep_size_scalar(sl_type type, int64_t n, int64_t B);
void sl_mm_prep_scalar(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
void sl_mm_rows_scalar(const sl_mm_args *a, int64_t r0, int64_t r1);
void sl_quantize_q8_scalar(const float *x, void *blocks, int64_t n);
void sl_attention_group_scalar(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos,
                               int kv_stride, int kv_head, int head_dim, float scale, float softcap, float *out, float *att);
void sl_mt_cols_scalar(const sl_mt_args *a, int64_t c0, int64_t c1);
#if defined(__x86_64__)
void sl_x2_mt_cols(const sl_mt_args *a, int64_t c0, int64_t c1); /* matmul_t_avx2.c; the AVX-512 table uses it too */
#endif

#if defined(__x86_64__)
/* AVX2 kernels of the kq types (quant_avx2.c), shared by the AVX2 and AVX-512 tables. */
float sl_kq_vec_dot_avx2(sl_type wtype, const void *w, const void *act, int64_t n);
void sl_kq_vec_axpy_avx2(sl_type wtype, const void *w, float a, float *y, int64_t n);
size_t sl_kq_mm_prep_size_avx2(sl_type type, int64_t n, int64_t B);
void sl_kq_mm_prep_avx2(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
void sl_kq_mm_rows_avx2(const sl_mm_args *a, int64_t r0, int64_t r1);
extern const sl_kernel_ops sl_kernels_avx2_ops;
extern const sl_kernel_ops sl_kernels_avx512_ops;
#endif

#endif
