/*
 * dot_avx2.c — AVX2 (+ FMA, F16C) row kernels: the Q8_0 activation quantizer, row dot products
 * with prepared activations, row axpy, and this variant's table of kernels. For CPUs without
 * AVX-512 VNNI (Haswell .. Alder Lake, Zen 1-3).
 *
 * Quantized blocks use the classic AVX2 integer dot product: vpmaddubsw of |w| with x carrying
 * w's sign, then vpmaddwd with ones — exact, like ggml's. Float weights use f32 FMAs on
 * widened F16 (vcvtph2ps) / BF16 (shift) values; activations are never rounded.
 * Compiled only with the AVX2 flags and called only after CPU detection (dot.c). Not tuned as
 * hard as the AVX-512 path, which is what this project's machines run.
 */
#include "kernels/simd_avx2.h"

/* ---- Q8_0 quantizer ---------------------------------------------------------------------- */

void sl_x2_quantize_q8(const float *x, void *blocks, int64_t n) {
    sl_block_q8_0 *out = blocks;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / SL_QK8_0; i++) {
        const float *p = x + i * SL_QK8_0;
        __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8), v2 = _mm256_loadu_ps(p + 16),
               v3 = _mm256_loadu_ps(p + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        /* the same scalar steps as sl_quantize_row_ref, so the blocks are bit-identical */
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q0 = _mm256_cvttps_epi32(x2_round_away(_mm256_mul_ps(v0, vid)));
        __m256i q1 = _mm256_cvttps_epi32(x2_round_away(_mm256_mul_ps(v1, vid)));
        __m256i q2 = _mm256_cvttps_epi32(x2_round_away(_mm256_mul_ps(v2, vid)));
        __m256i q3 = _mm256_cvttps_epi32(x2_round_away(_mm256_mul_ps(v3, vid)));
        /* the packs work within 128-bit lanes; one dword permute restores element order */
        __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        q = _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[i].qs, q);
    }
}

/* ---- quantized rows x Q8_0 activations --------------------------------------------------- */

/* y[r] = dot(row r, x) for NR rows at stride ws. */
SL_INLINE void qdot_rows(sl_type t, const int NR, const uint8_t *w, size_t ws, const sl_block_q8_0 *xb, int64_t nb,
                         float *y) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)xb[i].qs);
        float dx = _cvtsh_ss(xb[i].d);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *row = w + (size_t)r * ws;
            __m256i s = x2_dot_s8(x2_block_s8(t, row, i), x);
            __m256 scale = _mm256_set1_ps(dx * _cvtsh_ss(x2_block_d(t, row, i)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[r]);
        }
    }
    if (NR == 4) {
        _mm_storeu_ps(y, x2_hsum4(acc[0], acc[1], acc[2], acc[3]));
    } else {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[r] = x2_hsum(acc[r]);
    }
}

void sl_x2_qdot_rows(sl_type t, int nr, const uint8_t *w, size_t ws, const sl_block_q8_0 *xb, int64_t nb, float *y) {
    if (t == SL_TYPE_Q8_0) {
        switch (nr) {
        case 1: qdot_rows(SL_TYPE_Q8_0, 1, w, ws, xb, nb, y); return;
        case 2: qdot_rows(SL_TYPE_Q8_0, 2, w, ws, xb, nb, y); return;
        case 3: qdot_rows(SL_TYPE_Q8_0, 3, w, ws, xb, nb, y); return;
        default: qdot_rows(SL_TYPE_Q8_0, 4, w, ws, xb, nb, y); return;
        }
    }
    switch (nr) {
    case 1: qdot_rows(SL_TYPE_Q4_0, 1, w, ws, xb, nb, y); return;
    case 2: qdot_rows(SL_TYPE_Q4_0, 2, w, ws, xb, nb, y); return;
    case 3: qdot_rows(SL_TYPE_Q4_0, 3, w, ws, xb, nb, y); return;
    default: qdot_rows(SL_TYPE_Q4_0, 4, w, ws, xb, nb, y); return;
    }
}

/* ---- float rows ------------------------------------------------------------------------------ */

SL_INLINE float fdot(sl_type t, const void *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 = _mm256_fmadd_ps(x2_load_w(t, w, k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(x2_load_w(t, w, k + 8), _mm256_loadu_ps(x + k + 8), a1);
        a2 = _mm256_fmadd_ps(x2_load_w(t, w, k + 16), _mm256_loadu_ps(x + k + 16), a2);
        a3 = _mm256_fmadd_ps(x2_load_w(t, w, k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(x2_load_w(t, w, k), _mm256_loadu_ps(x + k), a0);
    float s = x2_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < n; k++) s += x2_w1(t, w, k) * x[k];
    return s;
}

float sl_x2_vec_dot(sl_type t, const void *w, const void *act, int64_t n) {
    switch (t) {
    case SL_TYPE_F32: return fdot(SL_TYPE_F32, w, act, n);
    case SL_TYPE_F16: return fdot(SL_TYPE_F16, w, act, n);
    case SL_TYPE_BF16: return fdot(SL_TYPE_BF16, w, act, n);
    case SL_TYPE_Q8_0:
    case SL_TYPE_Q4_0: {
        float y;
        sl_x2_qdot_rows(t, 1, w, 0, act, n / SL_QK8_0, &y);
        return y;
    }
    default: break; /* the kq types go through kq_vec_dot (dispatch.c) */
    }
    return 0.0f;
}

/* ---- axpy ------------------------------------------------------------------------------------ */

SL_INLINE void faxpy(sl_type t, const void *w, float a, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_fmadd_ps(va, x2_load_w(t, w, k), _mm256_loadu_ps(y + k)));
    for (; k < n; k++) y[k] += a * x2_w1(t, w, k);
}

/* y[0..8) += s * (f32)q for 8 signed 32-bit integers q */
SL_INLINE void axpy8(float *y, __m256 s, __m256i q) {
    _mm256_storeu_ps(y, _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(q), _mm256_loadu_ps(y)));
}

void sl_x2_vec_axpy(sl_type t, const void *w, float a, float *y, int64_t n) {
    switch (t) {
    case SL_TYPE_F32: faxpy(SL_TYPE_F32, w, a, y, n); return;
    case SL_TYPE_F16: faxpy(SL_TYPE_F16, w, a, y, n); return;
    case SL_TYPE_BF16: faxpy(SL_TYPE_BF16, w, a, y, n); return;
    case SL_TYPE_Q8_0:
    case SL_TYPE_Q4_0:
        for (int64_t i = 0; i < n / SL_QK8_0; i++, y += SL_QK8_0) {
            __m256 s = _mm256_set1_ps(a * _cvtsh_ss(x2_block_d(t, w, i)));
            __m256i q = x2_block_s8(t, w, i);
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            axpy8(y, s, _mm256_cvtepi8_epi32(lo));
            axpy8(y + 8, s, _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
            axpy8(y + 16, s, _mm256_cvtepi8_epi32(hi));
            axpy8(y + 24, s, _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
        }
        return;
    default: break; /* the kq types go through kq_vec_axpy (dispatch.c) */
    }
}
