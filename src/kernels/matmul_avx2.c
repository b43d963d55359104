/*
 * matmul_avx2.c — AVX2 matrix kernels behind sl_matmul (the fallback for CPUs without AVX-512
 * VNNI; see matmul_avx512.c for the design this mirrors with half-width registers).
 *
 * Float weights: a register tile of 4 rows x 2 tokens (8 ymm accumulators + 4 weight vectors:
 * 16 registers is the limit), the same reduction-dimension chunking for B > 1 as the AVX-512
 * path, and for B == 1 a 4-row matvec that prefetches the next rows into L2.
 * Quantized weights: X is quantized once per call to standard Q8_0 blocks (one row per token).
 * B == 1: 4 rows per pass over X. B > 1: a 2-row x 4-token tile per block: each weight block is
 * unpacked once and used for 4 tokens. Tails of n (not a multiple of 8) go through scalar code.
 * Not the tuned path: no superblock re-layout as in matmul_avx512.c (AVX2 has no vpdpbusd).
 */
#include "kernels/simd_avx2.h"

#define CHUNK_BYTES (384 * 1024) /* X kept per thread per chunk: about half of an L2 */
#define PF_GROUPS 2              /* matvec: prefetch this many row groups ahead */

/* ================================ float weights ================================ */

#define FR 4
#define FT 2

SL_INLINE void ftile(sl_type t, const int NR, const int NT, const uint8_t *w, size_t ws, const float *x, int64_t xs,
                     int64_t kn, float *y, int64_t ys, bool first) {
    const size_t esize = t == SL_TYPE_F32 ? 4 : 2;
    __m256 acc[FR][FT];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= kn; k += 8) {
        __m256 wv[FR];
        if (NT == 1 && (k & 15) == 0) {
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++)
                _mm_prefetch((const char *)(w + (size_t)(PF_GROUPS * NR + r) * ws + (size_t)k * esize), _MM_HINT_T1);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = x2_load_w(t, w + (size_t)r * ws, k);
#pragma GCC unroll 2
        for (int b = 0; b < NT; b++) {
            __m256 xv = _mm256_loadu_ps(x + b * xs + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm256_fmadd_ps(wv[r], xv, acc[r][b]);
        }
    }
#pragma GCC unroll 2
    for (int b = 0; b < NT; b++) {
        float s[4];
        const __m256 z = _mm256_setzero_ps();
        _mm_storeu_ps(s, x2_hsum4(acc[0][b], NR > 1 ? acc[1][b] : z, NR > 2 ? acc[2][b] : z, NR > 3 ? acc[3][b] : z));
        for (int r = 0; r < NR; r++) {
            for (int64_t j = k; j < kn; j++) s[r] += x2_w1(t, w + (size_t)r * ws, j) * x[b * xs + j];
            float *yr = y + b * ys + r;
            *yr = first ? s[r] : *yr + s[r];
        }
    }
}

typedef void (*ftile_fn)(const uint8_t *w, size_t ws, const float *x, int64_t xs, int64_t kn, float *y, int64_t ys,
                         bool first);
#define FT_FN(T, TN, NR, NT)                                                                                            \
    static void ft_##TN##_##NR##_##NT(const uint8_t *w, size_t ws, const float *x, int64_t xs, int64_t kn, float *y,   \
                                      int64_t ys, bool first) {                                                         \
        ftile(T, NR, NT, w, ws, x, xs, kn, y, ys, first);                                                               \
    }
#define FT_TYPE(T, TN)                                                                                                  \
    FT_FN(T, TN, 1, 1) FT_FN(T, TN, 1, 2) FT_FN(T, TN, 2, 1) FT_FN(T, TN, 2, 2) FT_FN(T, TN, 3, 1) FT_FN(T, TN, 3, 2)   \
        FT_FN(T, TN, 4, 1) FT_FN(T, TN, 4, 2)
FT_TYPE(SL_TYPE_F32, f32)
FT_TYPE(SL_TYPE_F16, f16)
FT_TYPE(SL_TYPE_BF16, bf16)
#define FT_REF_TYPE(TN)                                                                                                 \
    {{ft_##TN##_1_1, ft_##TN##_1_2}, {ft_##TN##_2_1, ft_##TN##_2_2}, {ft_##TN##_3_1, ft_##TN##_3_2}, {ft_##TN##_4_1, ft_##TN##_4_2}}
static const ftile_fn ftiles[3][FR][FT] = {FT_REF_TYPE(f32), FT_REF_TYPE(f16), FT_REF_TYPE(bf16)};

static void mm_rows_float(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int ti = a->type == SL_TYPE_F32 ? 0 : a->type == SL_TYPE_F16 ? 1 : 2;
    const size_t esize = a->type == SL_TYPE_F32 ? 4 : 2;
    const int64_t n = a->n, B = a->B;
    int64_t kc = n;
    if (B > 1 && B * n * 4 > CHUNK_BYTES) {
        kc = (CHUNK_BYTES / (B * 4)) & ~(int64_t)7;
        if (kc < 256) kc = 256;
        if (kc > n) kc = n;
    }
    for (int64_t k0 = 0; k0 < n; k0 += kc) {
        int64_t kn = n - k0 < kc ? n - k0 : kc;
        for (int64_t r = r0; r < r1; r += FR) {
            int nr = r1 - r < FR ? (int)(r1 - r) : FR;
            const uint8_t *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes + (size_t)k0 * esize;
            for (int64_t b = 0; b < B; b += FT) {
                int nt = B - b < FT ? (int)(B - b) : FT;
                ftiles[ti][nr - 1][nt - 1](w, a->row_bytes, a->X + b * n + k0, n, kn, a->Y + b * a->rows + r, a->rows,
                                           k0 == 0);
            }
        }
    }
}

/* ================================ quantized weights ================================ */

#define QR 2 /* rows per tile (B > 1) */
#define QT 4 /* tokens per tile */

size_t sl_x2_mm_prep_size(sl_type type, int64_t n, int64_t B) {
    if (type != SL_TYPE_Q8_0 && type != SL_TYPE_Q4_0 && type != SL_TYPE_Q4_0X4) return 0;
    return (size_t)B * sl_type_row_size(SL_TYPE_Q8_0, n);
}

void sl_x2_mm_prep(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    (void)type, (void)B;
    size_t stride = sl_type_row_size(SL_TYPE_Q8_0, n);
    for (int64_t b = b0; b < b1; b++) sl_x2_quantize_q8(X + b * n, (uint8_t *)xp + (size_t)b * stride, n);
}

/* y[b * ys + r] for NR rows x NT tokens over all nb blocks. */
SL_INLINE void qtile(sl_type t, const int NR, const int NT, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                     int64_t nb, float *y, int64_t ys) {
    __m256 acc[QR][QT];
#pragma GCC unroll 2
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i wa[QR], ws8[QR];
        float dw[QR];
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++) {
            __m256i v = x2_block_s8(t, w + (size_t)r * ws, i);
            wa[r] = _mm256_sign_epi8(v, v);
            ws8[r] = v;
            dw[r] = _cvtsh_ss(x2_block_d(t, w + (size_t)r * ws, i));
        }
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            const sl_block_q8_0 *xb = (const sl_block_q8_0 *)(x + (size_t)b * xs) + i;
            __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            float dx = _cvtsh_ss(xb->d);
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++) {
                __m256i p = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, ws8[r]));
                __m256i s = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
                acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw[r] * dx), acc[r][b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int b = 0; b < NT; b++)
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++) y[b * ys + r] = x2_hsum(acc[r][b]);
}

typedef void (*qtile_fn)(sl_type t, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, int64_t nb, float *y,
                         int64_t ys);
#define QT_FN(NR, NT)                                                                                                   \
    static void qt_##NR##_##NT(sl_type t, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, int64_t nb,        \
                               float *y, int64_t ys) {                                                                  \
        if (t == SL_TYPE_Q8_0) qtile(SL_TYPE_Q8_0, NR, NT, w, ws, x, xs, nb, y, ys);                                    \
        else qtile(SL_TYPE_Q4_0, NR, NT, w, ws, x, xs, nb, y, ys);                                                      \
    }
QT_FN(1, 1) QT_FN(1, 2) QT_FN(1, 3) QT_FN(1, 4) QT_FN(2, 1) QT_FN(2, 2) QT_FN(2, 3) QT_FN(2, 4)
static const qtile_fn qtiles[QR][QT] = {{qt_1_1, qt_1_2, qt_1_3, qt_1_4}, {qt_2_1, qt_2_2, qt_2_3, qt_2_4}};

static void mm_rows_quant(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->n / SL_QK8_0, B = a->B;
    const size_t xs = sl_type_row_size(SL_TYPE_Q8_0, a->n);
    if (B == 1) {
        const size_t bsize = a->type == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
        for (int64_t r = r0; r < r1; r += 4) {
            int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
            const uint8_t *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
            /* the rows PF_GROUPS groups ahead: short rows defeat the hardware prefetcher */
            const uint8_t *pf = w + (size_t)(PF_GROUPS * 4) * a->row_bytes;
            for (size_t off = 0; off < 4 * a->row_bytes && nb * bsize > 0; off += 64) _mm_prefetch((const char *)pf + off, _MM_HINT_T1);
            sl_x2_qdot_rows(a->type, nr, w, a->row_bytes, a->xp, nb, a->Y + r);
        }
        return;
    }
    for (int64_t r = r0; r < r1; r += QR) {
        int nr = r1 - r < QR ? (int)(r1 - r) : QR;
        const uint8_t *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
        for (int64_t b = 0; b < B; b += QT) {
            int nt = B - b < QT ? (int)(B - b) : QT;
            qtiles[nr - 1][nt - 1](a->type, w, a->row_bytes, (const uint8_t *)a->xp + (size_t)b * xs, xs, nb,
                                   a->Y + b * a->rows + r, a->rows);
        }
    }
}

void sl_x2_mm_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    /* no AVX2 kernel for the interleaved layout (the loader only repacks for AVX-512): the
     * scalar rows read the same plain Q8_0 activations */
    if (a->type == SL_TYPE_Q4_0X4) sl_mm_rows_scalar(a, r0, r1);
    else if (a->type == SL_TYPE_Q8_0 || a->type == SL_TYPE_Q4_0) mm_rows_quant(a, r0, r1);
    else mm_rows_float(a, r0, r1);
}
