/*
 * simd_avx2.h — small inline helpers shared by the *_avx2.c kernel files (AVX2 + FMA + F16C):
 * widening weight loads, horizontal sums, the exact roundf of the Q8_0 quantizer, the signed
 * byte dot product of one Q8_0-style block. Include only from files compiled with the AVX2
 * flags (see Makefile). AVX2 has no lane masks, so tails are left to scalar code by callers.
 * Not an abstraction layer: each helper is one or a few instructions.
 */
#ifndef SL_SIMD_AVX2_H
#define SL_SIMD_AVX2_H

#include "kernels/kernels_impl.h"

#include <immintrin.h>

#define SL_INLINE static inline __attribute__((always_inline))

/* 8 elements w[k..k+8) of a float-type row (F32, F16 or BF16) as f32. */
SL_INLINE __m256 x2_load_w(sl_type t, const void *w, int64_t k) {
    if (t == SL_TYPE_F32) return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (t == SL_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* One element of a float-type row, for the scalar tails. */
SL_INLINE float x2_w1(sl_type t, const void *w, int64_t k) {
    if (t == SL_TYPE_F32) return ((const float *)w)[k];
    if (t == SL_TYPE_F16) return _cvtsh_ss(((const uint16_t *)w)[k]);
    return sl_bf16_to_fp32(((const uint16_t *)w)[k]);
}

SL_INLINE float x2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* (sum a, sum b, sum c, sum d). */
SL_INLINE __m128 x2_hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 v = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* roundf (half away from zero) of each lane, exactly (see simd_avx512.h). */
SL_INLINE __m256 x2_round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/* The 32 weights of block i of a Q8_0/Q4_0 row as signed bytes (Q4_0: nibble - 8). */
SL_INLINE __m256i x2_block_s8(sl_type t, const uint8_t *row, int64_t i) {
    if (t == SL_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)((const sl_block_q8_0 *)row)[i].qs);
    __m128i q = _mm_loadu_si128((const __m128i *)((const sl_block_q4_0 *)row)[i].qs);
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, lo4)),
                                        _mm_and_si128(_mm_srli_epi16(q, 4), lo4), 1);
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

SL_INLINE uint16_t x2_block_d(sl_type t, const uint8_t *row, int64_t i) {
    return t == SL_TYPE_Q8_0 ? ((const sl_block_q8_0 *)row)[i].d : ((const sl_block_q4_0 *)row)[i].d;
}

/* 8 lanes of partial sums of w . x for signed bytes (|w| <= 128, |x| <= 127): vpmaddubsw needs an
 * unsigned operand, so it multiplies |w| by x carrying w's sign; pairs stay below 2^15. */
SL_INLINE __m256i x2_dot_s8(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Shared entry points of the AVX2 files. */
float sl_x2_vec_dot(sl_type t, const void *w, const void *act, int64_t n);
void sl_x2_vec_axpy(sl_type t, const void *w, float a, float *y, int64_t n);
void sl_x2_quantize_q8(const float *x, void *blocks, int64_t n);
size_t sl_x2_mm_prep_size(sl_type type, int64_t n, int64_t B);
void sl_x2_mm_prep(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
void sl_x2_mm_rows(const sl_mm_args *a, int64_t r0, int64_t r1);
void sl_x2_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                           int kv_head, int head_dim, float scale, float softcap, float *out, float *att);
void sl_x2_qdot_rows(sl_type t, int nr, const uint8_t *w, size_t ws, const sl_block_q8_0 *xb, int64_t nb, float *y);

#endif
