/*
 * sparse_mlp_avx512.c — AVX-512 row-group kernels of the sparse MLP (see sparse_mlp.h,
 * "row-group kernels"): dot products of up to 4 gathered weight rows with one prepared input,
 * and the sum of up to 4 gathered rows, each scaled, into one f32 accumulator.
 *
 * Why not one row at a time through sl_vec_dot / sl_vec_axpy: a gathered row starts at an
 * address the hardware prefetcher has never seen, so a single stream stalls at every row start
 * and one core cannot keep enough cache misses in flight. Working on 4 rows at once gives 4
 * independent streams (as the dense matvec has), shares each load of x (dot) or of the
 * accumulator (axpy) among 4 rows, and lets the loop prefetch the next group's rows at the same
 * offset it is reading now — about one group-time ahead. What it is not: new arithmetic. Each
 * row's result is the same sum as sl_vec_dot_ref / sl_vec_axpy_ref computes, up to the order of
 * float additions (quantized blocks are exact integer dot products times the two scales).
 *
 * Compiled with the AVX-512 flags (Makefile: *_avx512.c); called only when the kernels' variant
 * in use is AVX-512 (so forcing scalar kernels also forces the per-row fallback here).
 */
#include "sparse_mlp.h"

#include "quant.h"

#include <immintrin.h>

#define SP_INLINE static inline __attribute__((always_inline))

/* 16 weights of a float-type row as f32. */
SP_INLINE __m512 load16(sl_type t, const uint8_t *w, int64_t k) {
    if (t == SL_TYPE_F32) return _mm512_loadu_ps((const float *)w + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
    if (t == SL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The first lanes of mask m only; never reads past them. */
SP_INLINE __m512 load16_mask(sl_type t, const uint8_t *w, int64_t k, __mmask16 m) {
    if (t == SL_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    if (t == SL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

SP_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 weights of block i of a Q8_0 or Q4_0 row as unsigned bytes w + K (Q8_0: K = 128, an xor of
 * the sign bit; Q4_0: the stored nibbles, K = 8 — low nibbles are elements 0..15, high nibbles
 * 16..31), and the block's scale. */
SP_INLINE __m256i qblock_u8(sl_type t, const uint8_t *row, int64_t i, float *d) {
    if (t == SL_TYPE_Q8_0) {
        const sl_block_q8_0 *b = (const sl_block_q8_0 *)row + i;
        *d = _cvtsh_ss(b->d);
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_epi8((char)0x80));
    }
    const sl_block_q4_0 *b = (const sl_block_q4_0 *)row + i;
    *d = _cvtsh_ss(b->d);
    const __m128i v = _mm_loadu_si128((const __m128i *)b->qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

/* The same block as signed values (w + K - K). */
SP_INLINE __m256i qblock(sl_type t, const uint8_t *row, int64_t i, float *d) {
    return _mm256_sub_epi8(qblock_u8(t, row, i, d), _mm256_set1_epi8(t == SL_TYPE_Q8_0 ? (char)0x80 : 8));
}

/* Float rows: out[r] = row_r . x. next: rows to prefetch at the offsets read now. */
SP_INLINE void fdot(sl_type t, const int NR, const uint8_t *const *rows, const float *x, int64_t n, float *out,
                    const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[r] = _mm512_fmadd_ps(load16(t, rows[r], k), xv, acc[r]);
        if (((k * es) & 63) == 0)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, _MM_HINT_T0);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[r] = _mm512_fmadd_ps(load16_mask(t, rows[r], k, m), xv, acc[r]);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Quantized rows against Q8_0 blocks of x: per block one exact integer dot, times d_w * d_x.
 * vpdpbusd multiplies unsigned by signed bytes, so the weights enter as w + K (qblock_u8) and
 * K * sum(x), computed once per block for all rows, is subtracted: sum((w + K) x) - K sum(x). */
SP_INLINE void qdot(sl_type t, const int NR, const uint8_t *const *rows, const sl_block_q8_0 *xb, int64_t n, float *out,
                    const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const __m256i K = _mm256_set1_epi8(t == SL_TYPE_Q8_0 ? (char)0x80 : 8);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)xb[i].qs);
        const __m256i negc = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), K, xq));
        const float dx = _cvtsh_ss(xb[i].d);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            float dw;
            const __m256i s = _mm256_dpbusd_epi32(negc, qblock_u8(t, rows[r], i, &dw), xq);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(s), acc[r]);
        }
        if (((i * bs) & 63) < bs) /* a new cache line starts within this block */
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, _MM_HINT_T0);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = hsum256(acc[r]);
}

void sl_sp_dot_rows_avx512(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                           const uint8_t *const *next, int nnext) {
#define SP_QDOT(T)                                                                                                       \
    switch (nr) {                                                                                                        \
    case 8: qdot(T, 8, rows, x, n, out, next, nnext); return;                                                        \
    case 7: qdot(T, 7, rows, x, n, out, next, nnext); return;                                                        \
    case 6: qdot(T, 6, rows, x, n, out, next, nnext); return;                                                        \
    case 5: qdot(T, 5, rows, x, n, out, next, nnext); return;                                                        \
    case 4: qdot(T, 4, rows, x, n, out, next, nnext); return;                                                        \
    case 3: qdot(T, 3, rows, x, n, out, next, nnext); return;                                                        \
    case 2: qdot(T, 2, rows, x, n, out, next, nnext); return;                                                        \
    default: qdot(T, 1, rows, x, n, out, next, nnext); return;                                                       \
    }
    if (t == SL_TYPE_Q8_0) SP_QDOT(SL_TYPE_Q8_0)
    if (t == SL_TYPE_Q4_0) SP_QDOT(SL_TYPE_Q4_0)
#undef SP_QDOT
    /* one instantiation per (type, NR) so the inner loop has no type switch */
#define SP_FDOT(T)                                                                                                       \
    switch (nr) {                                                                                                        \
    case 8: fdot(T, 8, rows, x, n, out, next, nnext); return;                                                        \
    case 7: fdot(T, 7, rows, x, n, out, next, nnext); return;                                                        \
    case 6: fdot(T, 6, rows, x, n, out, next, nnext); return;                                                        \
    case 5: fdot(T, 5, rows, x, n, out, next, nnext); return;                                                        \
    case 4: fdot(T, 4, rows, x, n, out, next, nnext); return;                                                        \
    case 3: fdot(T, 3, rows, x, n, out, next, nnext); return;                                                        \
    case 2: fdot(T, 2, rows, x, n, out, next, nnext); return;                                                        \
    default: fdot(T, 1, rows, x, n, out, next, nnext); return;                                                       \
    }
    if (t == SL_TYPE_F32) SP_FDOT(SL_TYPE_F32)
    if (t == SL_TYPE_F16) SP_FDOT(SL_TYPE_F16)
    SP_FDOT(SL_TYPE_BF16)
#undef SP_FDOT
}

/* Float rows: y += sum_r a[r] * row_r. */
SP_INLINE void faxpy(sl_type t, const int NR, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                     const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m512 av[8];
    #pragma GCC unroll 8
    for (int r = 0; r < NR; r++) av[r] = _mm512_set1_ps(a[r]);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 yv = _mm512_loadu_ps(y + k);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) yv = _mm512_fmadd_ps(av[r], load16(t, rows[r], k), yv);
        _mm512_storeu_ps(y + k, yv);
        if (((k * es) & 63) == 0)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, _MM_HINT_T0);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + k);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) yv = _mm512_fmadd_ps(av[r], load16_mask(t, rows[r], k, m), yv);
        _mm512_mask_storeu_ps(y + k, m, yv);
    }
}

/* Quantized rows: y += sum_r (a[r] * d_r) * q_r, block by block. */
SP_INLINE void qaxpy(sl_type t, const int NR, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                     const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i++) {
        __m512 y0 = _mm512_loadu_ps(y + 32 * i), y1 = _mm512_loadu_ps(y + 32 * i + 16);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            float d;
            const __m256i q = qblock(t, rows[r], i, &d);
            const __m512 s = _mm512_set1_ps(a[r] * d);
            y0 = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), y0);
            y1 = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), y1);
        }
        _mm512_storeu_ps(y + 32 * i, y0);
        _mm512_storeu_ps(y + 32 * i + 16, y1);
        if (((i * bs) & 63) < bs)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, _MM_HINT_T0);
    }
}

void sl_sp_axpy_rows_avx512(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                            const uint8_t *const *next, int nnext) {
#define SP_QAXPY(T)                                                                                                      \
    switch (nr) {                                                                                                        \
    case 8: qaxpy(T, 8, rows, a, y, n, next, nnext); return;                                                         \
    case 7: qaxpy(T, 7, rows, a, y, n, next, nnext); return;                                                         \
    case 6: qaxpy(T, 6, rows, a, y, n, next, nnext); return;                                                         \
    case 5: qaxpy(T, 5, rows, a, y, n, next, nnext); return;                                                         \
    case 4: qaxpy(T, 4, rows, a, y, n, next, nnext); return;                                                         \
    case 3: qaxpy(T, 3, rows, a, y, n, next, nnext); return;                                                         \
    case 2: qaxpy(T, 2, rows, a, y, n, next, nnext); return;                                                         \
    default: qaxpy(T, 1, rows, a, y, n, next, nnext); return;                                                        \
    }
    if (t == SL_TYPE_Q8_0) SP_QAXPY(SL_TYPE_Q8_0)
    if (t == SL_TYPE_Q4_0) SP_QAXPY(SL_TYPE_Q4_0)
#undef SP_QAXPY
#define SP_FAXPY(T)                                                                                                      \
    switch (nr) {                                                                                                        \
    case 8: faxpy(T, 8, rows, a, y, n, next, nnext); return;                                                         \
    case 7: faxpy(T, 7, rows, a, y, n, next, nnext); return;                                                         \
    case 6: faxpy(T, 6, rows, a, y, n, next, nnext); return;                                                         \
    case 5: faxpy(T, 5, rows, a, y, n, next, nnext); return;                                                         \
    case 4: faxpy(T, 4, rows, a, y, n, next, nnext); return;                                                         \
    case 3: faxpy(T, 3, rows, a, y, n, next, nnext); return;                                                         \
    case 2: faxpy(T, 2, rows, a, y, n, next, nnext); return;                                                         \
    default: faxpy(T, 1, rows, a, y, n, next, nnext); return;                                                        \
    }
    if (t == SL_TYPE_F32) SP_FAXPY(SL_TYPE_F32)
    if (t == SL_TYPE_F16) SP_FAXPY(SL_TYPE_F16)
    SP_FAXPY(SL_TYPE_BF16)
#undef SP_FAXPY
}

/* ---- batched forms (union schedule, B > 1) ----------------------------------------------------
 * The rows of a group are read once from memory and used for every token: dot products in
 * register tiles of NR rows x NT tokens, axpys with each weight vector converted once and added
 * into every token's accumulator row. */

/* Float rows x NT tokens: out[b * ostride + r] = rows[r] . x_b. */
SP_INLINE void fdot_tile(sl_type t, const int NR, const int NT, const uint8_t *const *rows, const uint8_t *x, size_t xs,
                         int64_t n, float *out, int ostride, const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) acc[r][b] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) w[r] = load16(t, rows[r], k);
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            const __m512 xv = _mm512_loadu_ps((const float *)(x + (size_t)b * xs) + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm512_fmadd_ps(w[r], xv, acc[r][b]);
        }
        if (((k * es) & 63) == 0)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, _MM_HINT_T0);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        __m512 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) w[r] = load16_mask(t, rows[r], k, m);
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(x + (size_t)b * xs) + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm512_fmadd_ps(w[r], xv, acc[r][b]);
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < NT; b++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) out[b * ostride + r] = _mm512_reduce_add_ps(acc[r][b]);
}

/* Quantized rows x NT tokens (Q8_0 blocks per token). */
SP_INLINE void qdot_tile(sl_type t, const int NR, const int NT, const uint8_t *const *rows, const uint8_t *x, size_t xs,
                         int64_t n, float *out, int ostride, const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const __m256i K = _mm256_set1_epi8(t == SL_TYPE_Q8_0 ? (char)0x80 : 8);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i++) {
        __m256i w[4];
        float dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) w[r] = qblock_u8(t, rows[r], i, &dw[r]);
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            const sl_block_q8_0 *xb = (const sl_block_q8_0 *)(x + (size_t)b * xs) + i;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256i negc = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), K, xq));
            const float dx = _cvtsh_ss(xb->d);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m256i s = _mm256_dpbusd_epi32(negc, w[r], xq);
                acc[r][b] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), _mm256_cvtepi32_ps(s), acc[r][b]);
            }
        }
        if (((i * bs) & 63) < bs)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int b = 0; b < NT; b++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) out[b * ostride + r] = hsum256(acc[r][b]);
}

#define SP_TILE_NT(F, T, NR_)                                                                                            \
    switch (nt) {                                                                                                        \
    case 4: F(T, NR_, 4, rows, x, xs, n, out, ostride, next, nnext); return;                                             \
    case 3: F(T, NR_, 3, rows, x, xs, n, out, ostride, next, nnext); return;                                             \
    case 2: F(T, NR_, 2, rows, x, xs, n, out, ostride, next, nnext); return;                                             \
    default: F(T, NR_, 1, rows, x, xs, n, out, ostride, next, nnext); return;                                            \
    }
#define SP_TILE_NR(F, T)                                                                                                 \
    switch (nr) {                                                                                                        \
    case 4: SP_TILE_NT(F, T, 4)                                                                                          \
    case 3: SP_TILE_NT(F, T, 3)                                                                                          \
    case 2: SP_TILE_NT(F, T, 2)                                                                                          \
    default: SP_TILE_NT(F, T, 1)                                                                                         \
    }

/* One tile: nr <= 4 rows, nt <= 4 tokens. */
static void dot_tile(sl_type t, int nr, int nt, const uint8_t *const *rows, const uint8_t *x, size_t xs, int64_t n,
                     float *out, int ostride, const uint8_t *const *next, int nnext) {
    switch (t) {
    case SL_TYPE_F32: SP_TILE_NR(fdot_tile, SL_TYPE_F32)
    case SL_TYPE_F16: SP_TILE_NR(fdot_tile, SL_TYPE_F16)
    case SL_TYPE_BF16: SP_TILE_NR(fdot_tile, SL_TYPE_BF16)
    case SL_TYPE_Q8_0: SP_TILE_NR(qdot_tile, SL_TYPE_Q8_0)
    case SL_TYPE_Q4_0: SP_TILE_NR(qdot_tile, SL_TYPE_Q4_0)
    }
}
#undef SP_TILE_NR
#undef SP_TILE_NT

void sl_sp_dot_rows_batch_avx512(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                                 int64_t n, float *out, const uint8_t *const *next, int nnext) {
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int nr1 = nr - r0 < 4 ? nr - r0 : 4;
        for (int b0 = 0; b0 < nb; b0 += 4) {
            const int nt = nb - b0 < 4 ? nb - b0 : 4;
            dot_tile(t, nr1, nt, rows + r0, x + (size_t)b0 * xs, xs, n, out + (size_t)b0 * nr + r0, nr, next, nnext);
            nnext = 0; /* the first tile prefetches the whole next group (same offsets) */
        }
    }
}

/* Float rows into every token: y_b += sum_r a[r * astride + b] * row_r. */
SP_INLINE void faxpy_batch(sl_type t, const int NR, const uint8_t *const *rows, const float *a, int astride, int nb,
                           float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    const int64_t es = t == SL_TYPE_F32 ? 4 : 2;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 w[8];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) w[r] = load16(t, rows[r], k);
        for (int b = 0; b < nb; b++) {
            float *yb = y + (size_t)b * ys + k;
            __m512 yv = _mm512_loadu_ps(yb);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) yv = _mm512_fmadd_ps(_mm512_set1_ps(a[r * astride + b]), w[r], yv);
            _mm512_storeu_ps(yb, yv);
        }
        if (((k * es) & 63) == 0)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, _MM_HINT_T0);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        __m512 w[8];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) w[r] = load16_mask(t, rows[r], k, m);
        for (int b = 0; b < nb; b++) {
            float *yb = y + (size_t)b * ys + k;
            __m512 yv = _mm512_maskz_loadu_ps(m, yb);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) yv = _mm512_fmadd_ps(_mm512_set1_ps(a[r * astride + b]), w[r], yv);
            _mm512_mask_storeu_ps(yb, m, yv);
        }
    }
}

/* Quantized rows into every token: each block converted (and scaled by d_r) once. */
SP_INLINE void qaxpy_batch(sl_type t, const int NR, const uint8_t *const *rows, const float *a, int astride, int nb,
                           float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const int64_t nblk = n / 32;
    for (int64_t i = 0; i < nblk; i++) {
        __m512 w0[8], w1[8];
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            float d;
            const __m256i q = qblock(t, rows[r], i, &d);
            const __m512 dv = _mm512_set1_ps(d);
            w0[r] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))));
            w1[r] = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))));
        }
        for (int b = 0; b < nb; b++) {
            float *yb = y + (size_t)b * ys + 32 * i;
            __m512 y0 = _mm512_loadu_ps(yb), y1 = _mm512_loadu_ps(yb + 16);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                const __m512 av = _mm512_set1_ps(a[r * astride + b]);
                y0 = _mm512_fmadd_ps(av, w0[r], y0);
                y1 = _mm512_fmadd_ps(av, w1[r], y1);
            }
            _mm512_storeu_ps(yb, y0);
            _mm512_storeu_ps(yb + 16, y1);
        }
        if (((i * bs) & 63) < bs)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, _MM_HINT_T0);
    }
}

void sl_sp_axpy_rows_batch_avx512(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb,
                                  float *y, int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
#define SP_AB(F, T)                                                                                                      \
    switch (nr) {                                                                                                        \
    case 8: F(T, 8, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 7: F(T, 7, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 6: F(T, 6, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 5: F(T, 5, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 4: F(T, 4, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 3: F(T, 3, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    case 2: F(T, 2, rows, a, astride, nb, y, ys, n, next, nnext); return;                                                \
    default: F(T, 1, rows, a, astride, nb, y, ys, n, next, nnext); return;                                               \
    }
    switch (t) {
    case SL_TYPE_F32: SP_AB(faxpy_batch, SL_TYPE_F32)
    case SL_TYPE_F16: SP_AB(faxpy_batch, SL_TYPE_F16)
    case SL_TYPE_BF16: SP_AB(faxpy_batch, SL_TYPE_BF16)
    case SL_TYPE_Q8_0: SP_AB(qaxpy_batch, SL_TYPE_Q8_0)
    case SL_TYPE_Q4_0: SP_AB(qaxpy_batch, SL_TYPE_Q4_0)
    }
#undef SP_AB
}
