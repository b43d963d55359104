/*
 * quant_avx2.c — AVX2 kernels for the weight types of issue 19 (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_NL, IQ4_XS; kernels_impl.h's kq_* entries), used by the AVX2 and the AVX-512 tables.
 * (placeholder: the scalar definitions until the SIMD code lands)
 */
#include "kernels/kernels_impl.h"

float sl_kq_vec_dot_avx2(sl_type wtype, const void *w, const void *act, int64_t n) { return sl_vec_dot_ref(wtype, w, act, n); }
void sl_kq_vec_axpy_avx2(sl_type wtype, const void *w, float a, float *y, int64_t n) { sl_vec_axpy_ref(wtype, w, a, y, n); }
size_t sl_kq_mm_prep_size_avx2(sl_type type, int64_t n, int64_t B) { return sl_kq_mm_prep_size_scalar(type, n, B); }
void sl_kq_mm_prep_avx2(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    sl_kq_mm_prep_scalar(type, X, n, B, b0, b1, xp);
}
void sl_kq_mm_rows_avx2(const sl_mm_args *a, int64_t r0, int64_t r1) { sl_kq_mm_rows_scalar(a, r0, r1); }
