/*
 * matmul_t_avx2.c — AVX2 (+FMA, F16C) column kernel of sl_matmul_t: Y[b, c] = sum_k X[b, k] *
 * Wt_k[c] over rows stored at a stride (the bundles' down_t rows), for batches (prefill).
 *
 * The rows are read once per call: a tile of 64 rows x 128 columns is dequantized to f32 on the
 * stack (32 KiB, in L1/L2), then every pair of tokens runs over it with a register tile of 2
 * tokens x 32 columns (8 ymm accumulators, 4 weight vectors, 2 broadcasts: 8 FMAs per 6 loads),
 * accumulating into Y across the row tiles. The dequantization costs about one vector op per 8
 * weights, paid once for all the tokens. Rows in the bundle layouts go back in column order
 * with a 4 x 4 transpose of 32-bit words per 64-byte group (Q4_0N: one per 4 blocks; Q8_0N: one
 * per 2), then nibbles / bytes are widened, converted and scaled.
 * Float math, like the matrices path's float types (X is not rounded); sums run in k order per
 * row tile, with FMA. The AVX-512 variant's table uses this kernel too. What it is not: the
 * B = 1 down sum (bundle_rows_avx2.c), which is bandwidth-bound and integer.
 */
#include "kernels/simd_avx2.h"

#include <math.h>
#include <string.h>

#define MT_KC 64  /* rows per tile */
#define MT_NC 128 /* columns per tile */

/* The 4 x 4 matrix of 32-bit words a[k] lane t, transposed: out[t] lane k = a[k] lane t. */
SL_INLINE void transpose4x4(const __m128i a[4], __m128i out[4]) {
    const __m128i t0 = _mm_unpacklo_epi32(a[0], a[1]), t1 = _mm_unpackhi_epi32(a[0], a[1]);
    const __m128i t2 = _mm_unpacklo_epi32(a[2], a[3]), t3 = _mm_unpackhi_epi32(a[2], a[3]);
    out[0] = _mm_unpacklo_epi64(t0, t2);
    out[1] = _mm_unpackhi_epi64(t0, t2);
    out[2] = _mm_unpacklo_epi64(t1, t3);
    out[3] = _mm_unpackhi_epi64(t1, t3);
}

/* 16 unsigned bytes of v (u8), minus `off`, times d, as 16 floats at out. */
SL_INLINE void put16_u8(__m128i v, float d, float off, float *out) {
    const __m256 dv = _mm256_set1_ps(d), ov = _mm256_set1_ps(-off * d);
    _mm256_storeu_ps(out, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), dv, ov));
    _mm256_storeu_ps(out + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))), dv, ov));
}

/* Columns [c, c + cnt) of one row as f32 into out (cnt <= MT_NC; c a multiple of 128 for the
 * bundle layouts). */
static void dequant_cols(sl_type t, const uint8_t *row, int64_t n, int64_t c, int64_t cnt, float *out) {
    if (t == SL_TYPE_F32) {
        memcpy(out, (const float *)row + c, (size_t)cnt * sizeof(float));
        return;
    }
    if (t == SL_TYPE_F16 || t == SL_TYPE_BF16) {
        const uint16_t *h = (const uint16_t *)row + c;
        int64_t j = 0;
        for (; j + 8 <= cnt; j += 8) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(h + j));
            _mm256_storeu_ps(out + j, t == SL_TYPE_F16 ? _mm256_cvtph_ps(v) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)));
        }
        for (; j < cnt; j++) out[j] = t == SL_TYPE_F16 ? _cvtsh_ss(h[j]) : sl_bf16_to_fp32(h[j]);
        return;
    }
    const bool q4 = t == SL_TYPE_Q4_0N;
    const int64_t nb = n / 32, bpg = q4 ? 4 : 2, G = (nb + bpg - 1) / bpg;
    const uint16_t *sc = (const uint16_t *)(row + (size_t)G * 64);
    const __m128i m4 = _mm_set1_epi8(0x0f), flip = _mm_set1_epi8((char)0x80);
    for (int64_t g = c / (32 * bpg); g * 32 * bpg < c + cnt; g++) {
        const uint8_t *gp = row + (size_t)g * 64;
        __m128i a[4], r[4];
        for (int i = 0; i < 4; i++) a[i] = _mm_loadu_si128((const __m128i *)(gp + 16 * i));
        transpose4x4(a, r);
        float *o = out + (g * 32 * bpg - c);
        if (q4) { /* r[k]: block 4g + k's 16 value bytes in order */
            for (int k = 0; k < 4 && 4 * g + k < nb; k++) {
                const float d = _cvtsh_ss(sc[4 * g + k]);
                put16_u8(_mm_and_si128(r[k], m4), d, 8.0f, o + 32 * k);
                put16_u8(_mm_and_si128(_mm_srli_epi16(r[k], 4), m4), d, 8.0f, o + 32 * k + 16);
            }
        } else { /* r[m]: elements 16m..16m+15 of the group's 2 blocks, stored as q + 128 */
            for (int m = 0; m < 4 && 2 * g + m / 2 < nb; m++) {
                const float d = _cvtsh_ss(sc[2 * g + m / 2]);
                const __m128i q = _mm_xor_si128(r[m], flip);
                const __m256 dv = _mm256_set1_ps(d);
                _mm256_storeu_ps(o + 16 * m, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), dv));
                _mm256_storeu_ps(o + 16 * m + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))), dv));
            }
        }
    }
}

/* Y[b + t, c + j] (= when first, else +=) sum over k < kc of X[b + t, k0 + k] * tile[k][j], for
 * NT tokens and cnt columns. */
SL_INLINE void fma_tile(const int NT, const float *tile, int64_t kc, int64_t cnt, const float *x, int64_t K, float *y,
                        int64_t N, bool first) {
    int64_t j = 0;
    for (; j + 32 <= cnt; j += 32) {
        __m256 acc[2][4];
#pragma GCC unroll 2
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) acc[t][i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + t * N + j + 8 * i);
        for (int64_t k = 0; k < kc; k++) {
            const float *w = tile + k * MT_NC + j;
            const __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8), w2 = _mm256_load_ps(w + 16), w3 = _mm256_load_ps(w + 24);
#pragma GCC unroll 2
            for (int t = 0; t < NT; t++) {
                const __m256 xv = _mm256_broadcast_ss(x + t * K + k);
                acc[t][0] = _mm256_fmadd_ps(w0, xv, acc[t][0]);
                acc[t][1] = _mm256_fmadd_ps(w1, xv, acc[t][1]);
                acc[t][2] = _mm256_fmadd_ps(w2, xv, acc[t][2]);
                acc[t][3] = _mm256_fmadd_ps(w3, xv, acc[t][3]);
            }
        }
#pragma GCC unroll 2
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + t * N + j + 8 * i, acc[t][i]);
    }
    for (; j < cnt; j++) /* columns past the last 32: plain, in the same k order */
        for (int t = 0; t < NT; t++) {
            float s = first ? 0.0f : y[t * N + j];
            for (int64_t k = 0; k < kc; k++) s = fmaf(x[t * K + k], tile[k * MT_NC + j], s);
            y[t * N + j] = s;
        }
}

void sl_x2_mt_cols(const sl_mt_args *a, int64_t c0, int64_t c1) {
    _Alignas(32) float tile[MT_KC * MT_NC];
    for (int64_t c = c0; c < c1; c += MT_NC) {
        const int64_t cnt = c1 - c < MT_NC ? c1 - c : MT_NC;
        for (int64_t k0 = 0; k0 < a->K; k0 += MT_KC) {
            const int64_t kc = a->K - k0 < MT_KC ? a->K - k0 : MT_KC;
            for (int64_t k = 0; k < kc; k++) dequant_cols(a->type, a->Wt + (size_t)(k0 + k) * a->stride, a->N, c, cnt, tile + k * MT_NC);
            int64_t b = 0;
            for (; b + 2 <= a->B; b += 2) fma_tile(2, tile, kc, cnt, a->X + b * a->K + k0, a->K, a->Y + b * a->N + c, a->N, k0 == 0);
            if (b < a->B) fma_tile(1, tile, kc, cnt, a->X + b * a->K + k0, a->K, a->Y + b * a->N + c, a->N, k0 == 0);
        }
    }
}
