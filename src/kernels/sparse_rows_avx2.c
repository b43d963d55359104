/*
 * sparse_rows_avx2.c — AVX2 (+FMA, F16C) row-group kernels of the sparse MLP: the same four
 * functions as sparse_rows_avx512.c (read its header comment for why rows are handled in groups
 * with the next group prefetched), for CPUs without AVX-512 or VNNI.
 *
 * Differences from the AVX-512 file: 8-lane vectors; tails of float rows shorter than 8 are done
 * in scalar code; quantized blocks use the pre-VNNI integer dot (vpmaddubsw of |w| with x
 * carrying w's sign, then vpmaddwd with ones — products of two int8 fit in int16 pairs without
 * saturation because |w| <= 127 here: Q8_0 quants are -127..127 and Q4_0 nibbles minus 8 are
 * -8..7); register tiles of the batched dot are 4 rows x 2 tokens (16 ymm registers).
 * Rows in the neuron-bundle layouts (Q4_0N, Q8_0N) are handed to bundle_rows_avx2.c.
 * Called only when the shared kernels run their AVX2 variant (sl_sp_kernels).
 */
#include "kernels/sparse_rows.h"
#include "kernels/kernels_impl.h"

#include "format/quant.h"

#include <immintrin.h>

#define SP2_INLINE static inline __attribute__((always_inline))

SP2_INLINE __m256 load8(sl_type t, const uint8_t *w, int64_t k) {
    if (t == SL_TYPE_F32) return _mm256_loadu_ps((const float *)w + k);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (t == SL_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

SP2_INLINE float elem(sl_type t, const uint8_t *w, int64_t k) {
    if (t == SL_TYPE_F32) return ((const float *)w)[k];
    const uint16_t h = ((const uint16_t *)w)[k];
    return t == SL_TYPE_F16 ? _cvtsh_ss(h) : sl_bf16_to_fp32(h);
}

SP2_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 signed weights of block i (Q4_0: low nibbles = elements 0..15, high = 16..31, minus 8). */
SP2_INLINE __m256i qblock(sl_type t, const uint8_t *row, int64_t i, float *d) {
    if (t == SL_TYPE_Q8_0) {
        const sl_block_q8_0 *b = (const sl_block_q8_0 *)row + i;
        *d = _cvtsh_ss(b->d);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    const sl_block_q4_0 *b = (const sl_block_q4_0 *)row + i;
    *d = _cvtsh_ss(b->d);
    const __m128i v = _mm_loadu_si128((const __m128i *)b->qs), m4 = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* sum(w * x) of one block as 8 int32 lanes converted to float. */
SP2_INLINE __m256 qdot8(__m256i w, __m256i x) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

SP2_INLINE void prefetch_at(const uint8_t *const *next, int nnext, size_t off) {
    for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + off, _MM_HINT_T0);
}

/* ---- single input -------------------------------------------------------------------------- */

SP2_INLINE void fdot(sl_type t, const int NR, const uint8_t *const *rows, const float *x, int64_t n, float *out,
                     const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 xv = _mm256_loadu_ps(x + k);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[r] = _mm256_fmadd_ps(load8(t, rows[r], k), xv, acc[r]);
        if (((k * es) & 63) == 0) prefetch_at(next, nnext, (size_t)(k * es));
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        float s = hsum8(acc[r]);
        for (int64_t j = k; j < n; j++) s += elem(t, rows[r], j) * x[j];
        out[r] = s;
    }
}

SP2_INLINE void qdot(sl_type t, const int NR, const uint8_t *const *rows, const sl_block_q8_0 *xb, int64_t n, float *out,
                     const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)xb[i].qs);
        const float dx = _cvtsh_ss(xb[i].d);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            float dw;
            const __m256i w = qblock(t, rows[r], i, &dw);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), qdot8(w, xq), acc[r]);
        }
        if (((i * bs) & 63) < bs) prefetch_at(next, nnext, i * bs);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = hsum8(acc[r]);
}

void sl_sp_dot_rows_avx2(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                         const uint8_t *const *next, int nnext) {
    switch (t) {
    case SL_TYPE_F32: SP_NR_CASES(nr, fdot, SL_TYPE_F32, rows, x, n, out, next, nnext)
    case SL_TYPE_F16: SP_NR_CASES(nr, fdot, SL_TYPE_F16, rows, x, n, out, next, nnext)
    case SL_TYPE_BF16: SP_NR_CASES(nr, fdot, SL_TYPE_BF16, rows, x, n, out, next, nnext)
    case SL_TYPE_Q8_0: SP_NR_CASES(nr, qdot, SL_TYPE_Q8_0, rows, x, n, out, next, nnext)
    case SL_TYPE_Q4_0: SP_NR_CASES(nr, qdot, SL_TYPE_Q4_0, rows, x, n, out, next, nnext)
    default:
        if (sl_is_bundle_layout(t)) sl_bn_dot_rows_avx2(t, rows, nr, x, n, out, next, nnext); /* bundle_rows_avx2.c */
        else sl_sp_dot_rows_ref(t, rows, nr, x, n, out, next, nnext);
    }
}

SP2_INLINE void faxpy(sl_type t, const int NR, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                      const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m256 av[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) av[r] = _mm256_set1_ps(a[r]);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 yv = _mm256_loadu_ps(y + k);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) yv = _mm256_fmadd_ps(av[r], load8(t, rows[r], k), yv);
        _mm256_storeu_ps(y + k, yv);
        if (((k * es) & 63) == 0) prefetch_at(next, nnext, (size_t)(k * es));
    }
    for (; k < n; k++) {
        float s = y[k];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) s += a[r] * elem(t, rows[r], k);
        y[k] = s;
    }
}

/* y4 (32 floats in 4 registers) += s * q for one block of 32 signed bytes. */
SP2_INLINE void qaxpy32(__m256 s, __m256i q, __m256 *y4) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    y4[0] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), y4[0]);
    y4[1] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), y4[1]);
    y4[2] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), y4[2]);
    y4[3] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), y4[3]);
}

SP2_INLINE void qaxpy(sl_type t, const int NR, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                      const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    for (int64_t i = 0; i < n / 32; i++) {
        float *yb = y + 32 * i;
        __m256 y4[4] = {_mm256_loadu_ps(yb), _mm256_loadu_ps(yb + 8), _mm256_loadu_ps(yb + 16), _mm256_loadu_ps(yb + 24)};
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            float d;
            const __m256i q = qblock(t, rows[r], i, &d);
            qaxpy32(_mm256_set1_ps(a[r] * d), q, y4);
        }
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(yb + 8 * j, y4[j]);
        if (((i * bs) & 63) < bs) prefetch_at(next, nnext, i * bs);
    }
}

void sl_sp_axpy_rows_avx2(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                          const uint8_t *const *next, int nnext) {
    switch (t) {
    case SL_TYPE_F32: SP_NR_CASES(nr, faxpy, SL_TYPE_F32, rows, a, y, n, next, nnext)
    case SL_TYPE_F16: SP_NR_CASES(nr, faxpy, SL_TYPE_F16, rows, a, y, n, next, nnext)
    case SL_TYPE_BF16: SP_NR_CASES(nr, faxpy, SL_TYPE_BF16, rows, a, y, n, next, nnext)
    case SL_TYPE_Q8_0: SP_NR_CASES(nr, qaxpy, SL_TYPE_Q8_0, rows, a, y, n, next, nnext)
    case SL_TYPE_Q4_0: SP_NR_CASES(nr, qaxpy, SL_TYPE_Q4_0, rows, a, y, n, next, nnext)
    default:
        if (sl_is_bundle_layout(t)) sl_bn_axpy_rows_avx2(t, rows, a, nr, y, n, next, nnext); /* bundle_rows_avx2.c */
        else sl_sp_axpy_rows_ref(t, rows, a, nr, y, n, next, nnext);
    }
}

/* ---- batched forms --------------------------------------------------------------------------- */

/* Float rows x NT tokens (NR <= 4, NT <= 2): out[b * ostride + r] = rows[r] . x_b. */
SP2_INLINE void fdot_tile(sl_type t, const int NR, const int NT, const uint8_t *const *rows, const uint8_t *x, size_t xs,
                          int64_t n, float *out, int ostride, const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) w[r] = load8(t, rows[r], k);
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) {
            const __m256 xv = _mm256_loadu_ps((const float *)(x + (size_t)b * xs) + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm256_fmadd_ps(w[r], xv, acc[r][b]);
        }
        if (((k * es) & 63) == 0) prefetch_at(next, nnext, (size_t)(k * es));
    }
#pragma GCC unroll 2
    for (int b = 0; b < NT; b++) {
        const float *xb = (const float *)(x + (size_t)b * xs);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            float s = hsum8(acc[r][b]);
            for (int64_t j = k; j < n; j++) s += elem(t, rows[r], j) * xb[j];
            out[b * ostride + r] = s;
        }
    }
}

SP2_INLINE void qdot_tile(sl_type t, const int NR, const int NT, const uint8_t *const *rows, const uint8_t *x, size_t xs,
                          int64_t n, float *out, int ostride, const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i w[4];
        float dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) w[r] = qblock(t, rows[r], i, &dw[r]);
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) {
            const sl_block_q8_0 *xb = (const sl_block_q8_0 *)(x + (size_t)b * xs) + i;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
            const float dx = _cvtsh_ss(xb->d);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), qdot8(w[r], xq), acc[r][b]);
        }
        if (((i * bs) & 63) < bs) prefetch_at(next, nnext, i * bs);
    }
#pragma GCC unroll 2
    for (int b = 0; b < NT; b++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) out[b * ostride + r] = hsum8(acc[r][b]);
}

#define SP2_TILE(F, T)                                                                                                   \
    switch (nr * 2 + nt - 3) {                                                                                           \
    case 0: F(T, 1, 1, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 1: F(T, 1, 2, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 2: F(T, 2, 1, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 3: F(T, 2, 2, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 4: F(T, 3, 1, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 5: F(T, 3, 2, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    case 6: F(T, 4, 1, rows, x, xs, n, out, ostride, next, nnext); return;                                               \
    default: F(T, 4, 2, rows, x, xs, n, out, ostride, next, nnext); return;                                              \
    }

/* One tile: nr <= 4 rows, nt <= 2 tokens. */
static void dot_tile(sl_type t, int nr, int nt, const uint8_t *const *rows, const uint8_t *x, size_t xs, int64_t n,
                     float *out, int ostride, const uint8_t *const *next, int nnext) {
    switch (t) {
    case SL_TYPE_F32: SP2_TILE(fdot_tile, SL_TYPE_F32)
    case SL_TYPE_F16: SP2_TILE(fdot_tile, SL_TYPE_F16)
    case SL_TYPE_BF16: SP2_TILE(fdot_tile, SL_TYPE_BF16)
    case SL_TYPE_Q8_0: SP2_TILE(qdot_tile, SL_TYPE_Q8_0)
    case SL_TYPE_Q4_0: SP2_TILE(qdot_tile, SL_TYPE_Q4_0)
    default: return; /* the kq types never get here (sl_sp_dot_rows_batch_*) */
    }
}

void sl_sp_dot_rows_batch_avx2(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                               int64_t n, float *out, const uint8_t *const *next, int nnext) {
    if (sl_kq_type(t)) { /* types without a tile kernel here: row by row (x in sl_act_prepare form) */
        sl_sp_dot_rows_batch_ref(t, rows, nr, x, xs, nb, n, out, next, nnext);
        return;
    }
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int nr1 = nr - r0 < 4 ? nr - r0 : 4;
        for (int b0 = 0; b0 < nb; b0 += 2) {
            const int nt = nb - b0 < 2 ? nb - b0 : 2;
            dot_tile(t, nr1, nt, rows + r0, x + (size_t)b0 * xs, xs, n, out + (size_t)b0 * nr + r0, nr, next, nnext);
            nnext = 0;
        }
    }
}

SP2_INLINE void faxpy_batch(sl_type t, const int NR, const uint8_t *const *rows, const float *a, int astride, int nb,
                            float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 w[8];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) w[r] = load8(t, rows[r], k);
        for (int b = 0; b < nb; b++) {
            float *yb = y + (size_t)b * ys + k;
            __m256 yv = _mm256_loadu_ps(yb);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) yv = _mm256_fmadd_ps(_mm256_set1_ps(a[r * astride + b]), w[r], yv);
            _mm256_storeu_ps(yb, yv);
        }
        if (((k * es) & 63) == 0) prefetch_at(next, nnext, (size_t)(k * es));
    }
    for (; k < n; k++)
        for (int b = 0; b < nb; b++) {
            float s = y[(size_t)b * ys + k];
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) s += a[r * astride + b] * elem(t, rows[r], k);
            y[(size_t)b * ys + k] = s;
        }
}

SP2_INLINE void qaxpy_batch(sl_type t, const int NR, const uint8_t *const *rows, const float *a, int astride, int nb,
                            float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    for (int64_t i = 0; i < n / 32; i++) {
        /* each block of each row widened and scaled once, in 8-wide quarters */
        for (int q4 = 0; q4 < 4; q4++) {
            __m256 w[8];
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                float d;
                const __m256i q = qblock(t, rows[r], i, &d);
                const __m128i half = q4 < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
                const __m128i part = q4 % 2 ? _mm_srli_si128(half, 8) : half;
                w[r] = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)));
            }
            for (int b = 0; b < nb; b++) {
                float *yb = y + (size_t)b * ys + 32 * i + 8 * q4;
                __m256 yv = _mm256_loadu_ps(yb);
#pragma GCC unroll 8
                for (int r = 0; r < NR; r++) yv = _mm256_fmadd_ps(_mm256_set1_ps(a[r * astride + b]), w[r], yv);
                _mm256_storeu_ps(yb, yv);
            }
        }
        if (((i * bs) & 63) < bs) prefetch_at(next, nnext, i * bs);
    }
}

void sl_sp_axpy_rows_batch_avx2(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb,
                                float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    switch (t) {
    case SL_TYPE_F32: SP_NR_CASES(nr, faxpy_batch, SL_TYPE_F32, rows, a, astride, nb, y, ys, n, next, nnext)
    case SL_TYPE_F16: SP_NR_CASES(nr, faxpy_batch, SL_TYPE_F16, rows, a, astride, nb, y, ys, n, next, nnext)
    case SL_TYPE_BF16: SP_NR_CASES(nr, faxpy_batch, SL_TYPE_BF16, rows, a, astride, nb, y, ys, n, next, nnext)
    case SL_TYPE_Q8_0: SP_NR_CASES(nr, qaxpy_batch, SL_TYPE_Q8_0, rows, a, astride, nb, y, ys, n, next, nnext)
    case SL_TYPE_Q4_0: SP_NR_CASES(nr, qaxpy_batch, SL_TYPE_Q4_0, rows, a, astride, nb, y, ys, n, next, nnext)
    default: sl_sp_axpy_rows_batch_ref(t, rows, nr, a, astride, nb, y, ys, n, next, nnext); return;
    }
}
