/*
 * dot_avx512.c — AVX-512 (F/BW/VL/DQ + VNNI) row kernels: the Q8_0 activation quantizer, row
 * dot products with prepared activations, row axpy, and this variant's table of kernels.
 *
 * Quantized dot products follow ggml's math (exact integer sum per block of 32, times the two
 * block scales) using vpdpbusd, which multiplies unsigned by signed bytes. Q8_0 rows here use
 * |w| times x carrying w's sign; Q4_0 rows use the stored nibble q (value q - 8) as the
 * unsigned operand and subtract 8 * sum(x), the offset times the block's activation sum, which
 * one more vpdpbusd with a constant computes: sum(q x) - 8 sum(x) = sum((q - 8) x). (The
 * matmul kernels use the same offset idea for Q8_0, w + 128, because there the activation sum
 * is shared by many rows.) Float weights use plain f32 FMAs (F16 via vcvtph2ps, BF16 by a
 * 16-bit shift), never rounding activations.
 * Compiled only with the AVX-512 flags and called only after CPU detection (dot.c).
 */
#include "kernels/simd_avx512.h"

/* ---- Q8_0 quantizer ---------------------------------------------------------------------- */

void sl_x5_quantize_q8(const float *x, void *blocks, int64_t n) {
    sl_block_q8_0 *out = blocks;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / SL_QK8_0; i++) {
        __m512 v0 = _mm512_loadu_ps(x + i * SL_QK8_0), v1 = _mm512_loadu_ps(x + i * SL_QK8_0 + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        /* the same scalar steps as sl_quantize_row_ref, so the blocks are bit-identical */
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvttps_epi32(x5_round_away(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvttps_epi32(x5_round_away(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)out[i].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[i].qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

/* ---- quantized rows x Q8_0 activations --------------------------------------------------- */

/* ---- float rows ------------------------------------------------------------------------------ */

SL_INLINE float fdot(sl_type t, const void *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 = _mm512_fmadd_ps(x5_load_w(t, w, k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(x5_load_w(t, w, k + 16), _mm512_loadu_ps(x + k + 16), a1);
    }
    for (; k < n; k += 16) {
        __mmask16 m = x5_mask(n - k);
        a0 = _mm512_fmadd_ps(x5_load_w_mask(t, w, k, m), _mm512_maskz_loadu_ps(m, x + k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* One quantized row: two blocks per iteration on independent accumulators. Q8_0 uses the sign
 * trick (|w| times x carrying w's sign, no offset to correct); Q4_0 the nibble masks of the
 * matvec (matmul_avx512.c) with the block's offset correction from one more vpdpbusd. */
SL_INLINE __m256 qdot1_block(sl_type t, const uint8_t *w, const sl_block_q8_0 *xb, int64_t i, __m256 acc) {
    __m256i x = _mm256_loadu_si256((const __m256i *)xb[i].qs);
    __m256i d;
    float dw;
    if (t == SL_TYPE_Q8_0) {
        const sl_block_q8_0 *b = (const sl_block_q8_0 *)w + i;
        __m256i v = _mm256_loadu_si256((const __m256i *)b->qs);
        d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(v), _mm256_sign_epi8(x, v));
        dw = x5_half(b->d);
    } else {
        const sl_block_q4_0 *b = (const sl_block_q4_0 *)w + i;
        const __m256i nib = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fLL, 0x0f0f0f0f0f0f0f0fLL,
                                               (long long)0xf0f0f0f0f0f0f0f0ULL, (long long)0xf0f0f0f0f0f0f0f0ULL);
        const __m256i k = _mm256_setr_epi64x(0x0808080808080808LL, 0x0808080808080808LL,
                                             (long long)0x8080808080808080ULL, (long long)0x8080808080808080ULL);
        __m256i v = _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs)), nib);
        __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), k, x);
        d = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), v, x), c);
        dw = x5_half(b->d);
    }
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(dw * x5_half(xb[i].d)), acc);
}

SL_INLINE float qdot1(sl_type t, const uint8_t *w, const sl_block_q8_0 *xb, int64_t nb) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        a0 = qdot1_block(t, w, xb, i, a0);
        a1 = qdot1_block(t, w, xb, i + 1, a1);
    }
    if (i < nb) a0 = qdot1_block(t, w, xb, i, a0);
    __m256 a = _mm256_add_ps(a0, a1);
    if (t == SL_TYPE_Q4_0) a = _mm256_mul_ps(a, _mm256_setr_ps(1, 1, 1, 1, 1.0f / 16, 1.0f / 16, 1.0f / 16, 1.0f / 16));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

float sl_x5_vec_dot(sl_type t, const void *w, const void *act, int64_t n) {
    switch (t) {
    case SL_TYPE_F32: return fdot(SL_TYPE_F32, w, act, n);
    case SL_TYPE_F16: return fdot(SL_TYPE_F16, w, act, n);
    case SL_TYPE_BF16: return fdot(SL_TYPE_BF16, w, act, n);
    case SL_TYPE_Q8_0: return qdot1(SL_TYPE_Q8_0, w, act, n / SL_QK8_0);
    case SL_TYPE_Q4_0: return qdot1(SL_TYPE_Q4_0, w, act, n / SL_QK8_0);
    default: break; /* the kq types go through kq_vec_dot (dispatch.c) */
    }
    return 0.0f;
}

/* ---- axpy ------------------------------------------------------------------------------------ */

SL_INLINE void faxpy(sl_type t, const void *w, float a, float *y, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(y + k, _mm512_fmadd_ps(va, x5_load_w(t, w, k), _mm512_loadu_ps(y + k)));
    if (k < n) {
        __mmask16 m = x5_mask(n - k);
        _mm512_mask_storeu_ps(y + k, m, _mm512_fmadd_ps(va, x5_load_w_mask(t, w, k, m), _mm512_maskz_loadu_ps(m, y + k)));
    }
}

/* y[0..16) += s * (f32)q for 16 signed 32-bit integers q */
SL_INLINE void axpy16(float *y, __m512 s, __m512i q) {
    _mm512_storeu_ps(y, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(q), _mm512_loadu_ps(y)));
}

void sl_x5_vec_axpy(sl_type t, const void *w, float a, float *y, int64_t n) {
    switch (t) {
    case SL_TYPE_F32: faxpy(SL_TYPE_F32, w, a, y, n); return;
    case SL_TYPE_F16: faxpy(SL_TYPE_F16, w, a, y, n); return;
    case SL_TYPE_BF16: faxpy(SL_TYPE_BF16, w, a, y, n); return;
    case SL_TYPE_Q8_0: {
        const sl_block_q8_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK8_0; i++, y += SL_QK8_0) {
            __m512 s = _mm512_set1_ps(a * x5_half(b[i].d));
            axpy16(y, s, _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].qs)));
            axpy16(y + 16, s, _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b[i].qs + 16))));
        }
        return;
    }
    case SL_TYPE_Q4_0: {
        const sl_block_q4_0 *b = w;
        const __m128i lo4 = _mm_set1_epi8(0x0f);
        const __m512i eight = _mm512_set1_epi32(8);
        for (int64_t i = 0; i < n / SL_QK4_0; i++, y += SL_QK4_0) {
            __m512 s = _mm512_set1_ps(a * x5_half(b[i].d));
            __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
            __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(q, lo4));
            __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), lo4));
            axpy16(y, s, _mm512_sub_epi32(lo, eight));
            axpy16(y + 16, s, _mm512_sub_epi32(hi, eight));
        }
        return;
    }
    default: break; /* the kq types go through kq_vec_axpy (dispatch.c) */
    }
}
