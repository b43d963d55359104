/*
 * simd_avx512.h — small inline helpers shared by the *_avx512.c kernel files: weight loads that
 * widen F16/BF16 to f32, horizontal sums, the exact roundf used by the Q8_0 quantizer.
 * Include only from files compiled with the AVX-512 flags (see Makefile). Not an abstraction
 * layer: each helper is one or a few instructions.
 */
#ifndef SL_SIMD_AVX512_H
#define SL_SIMD_AVX512_H

#include "kernels/kernels_impl.h"

#include <immintrin.h>

#define SL_INLINE static inline __attribute__((always_inline))

/* 16 elements w[k..k+16) of a float-type row (F32, F16 or BF16) as f32. */
SL_INLINE __m512 x5_load_w(sl_type t, const void *w, int64_t k) {
    if (t == SL_TYPE_F32) return _mm512_loadu_ps((const float *)w + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
    if (t == SL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* bf16 = top half of f32 */
}

/* Same for the lanes in mask m (others 0); never touches memory outside them. */
SL_INLINE __m512 x5_load_w_mask(sl_type t, const void *w, int64_t k, __mmask16 m) {
    if (t == SL_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    if (t == SL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* (sum a, sum b, sum c, sum d). */
SL_INLINE __m128 x5_hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* fold 512 -> 256 bits, pairing a with b and c with d in one register each */
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    /* 128-bit blocks of u: 4 partial sums of a, b, c, d respectively */
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    __m256 lo = _mm512_castps512_ps256(u), hi = _mm512_extractf32x8_ps(u, 1);
    __m256 v = _mm256_hadd_ps(lo, hi); /* lane 0: a, a, c, c; lane 1: b, b, d, d (pair sums) */
    v = _mm256_hadd_ps(v, v);          /* lane 0: a, c, a, c; lane 1: b, d, b, d */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* (sum a, sum b, sum c, sum d) for 8-lane vectors. */
SL_INLINE __m128 x5_hsum4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 v = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* roundf (half away from zero) of each lane, exactly: trunc, then step away from zero when the
 * dropped fraction is >= 0.5 (the subtraction is exact for |v| < 2^23). */
SL_INLINE __m512 x5_round_away(__m512 v) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, sign));
    return _mm512_mask_add_ps(t, up, t, one);
}

/* Mask of the first n lanes (n <= 0: none, n >= 16: all). */
SL_INLINE __mmask16 x5_mask(int64_t n) { return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : ((1u << n) - 1)); }

/* Half-precision scale of a block as f32. */
SL_INLINE float x5_half(uint16_t h) { return _cvtsh_ss(h); }

/* The 32 weights of block i of a Q8_0 row as unsigned bytes w + 128 (an xor of the sign bit). */
SL_INLINE __m256i q8_block_u8(const uint8_t *row, int64_t i) {
    const sl_block_q8_0 *b = (const sl_block_q8_0 *)row + i;
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_epi8((char)0x80));
}

/* Shared entry points of the AVX-512 files. */
float sl_x5_vec_dot(sl_type t, const void *w, const void *act, int64_t n);
void sl_x5_vec_axpy(sl_type t, const void *w, float a, float *y, int64_t n);
void sl_x5_quantize_q8(const float *x, void *blocks, int64_t n);
size_t sl_x5_mm_prep_size(sl_type type, int64_t n, int64_t B);
void sl_x5_mm_prep(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp);
void sl_x5_mm_rows(const sl_mm_args *a, int64_t r0, int64_t r1);
void sl_x5_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                           int kv_head, int head_dim, float scale, float softcap, float *out, float *att);

#endif
