/*
 * matmul_avx2.c — AVX2 matrix kernels behind sl_matmul (the fallback for CPUs without AVX-512
 * VNNI; see matmul_avx512.c for the design this mirrors with half-width registers).
 *
 * Float weights: a register tile of 4 rows x 2 tokens (8 ymm accumulators + 4 weight vectors:
 * 16 registers is the limit), the same reduction-dimension chunking for B > 1 as the AVX-512
 * path, and for B == 1 a 4-row matvec that prefetches the next rows into L2.
 * Quantized weights: X is quantized once per call to standard Q8_0 blocks (one row per token).
 * B == 1: 4 rows per pass over X. B > 1: a 2-row x 4-token tile per block: each weight block is
 * unpacked once and used for 4 tokens. Q4_0 repacked at load (Q4_0x4) has its own kernels below:
 * a 4-row matvec for B == 1 and a 4-row x 4-token tile for B > 1 (decode of several sequences,
 * prefill), both on unsigned nibbles with a per-block offset correction.
 * Tails of n (not a multiple of 8) go through scalar code.
 * Not the tuned path: no superblock re-layout as in matmul_avx512.c (AVX2 has no vpdpbusd).
 */
#include "kernels/simd_avx2.h"

#include <string.h>

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

/* ---- B == 1 on Q4_0x4 (four rows interleaved block by block, see quant.h) -------------------
 * One 256-bit load brings block b of 2 rows (128-bit lane i: row i's 16 value bytes), a second
 * one the other 2. The low nibbles (elements 0..15) meet X's first 16 bytes, the high nibbles
 * its last 16, each broadcast to both lanes (vpmaddubsw of the unsigned nibbles with the signed
 * x: pairs <= 2 * 15 * 127, two of them still fit int16), one vpmaddwd with ones, plus the
 * block's offset correction (-8 * the sums of X's matching dwords): lane i ends with row i's
 * exact integer dot product as 4 partial sums. Scales: one 8-byte load for the 4 rows, widened,
 * multiplied by dx and spread to the lanes by two permutes. Per block and 4 rows: ~22 vector
 * ops against ~15 per block and row for the file layout (qdot_rows), which is what makes AVX2
 * Q4_0 decoding compute-bound there. Two groups (8 rows) run together, sharing the X loads.
 * X per block: 64 bytes, [elements 0..15][elements 16..31][4 x int32 correction][dx][pad]. */

#define MV4_X_BYTES 64
#ifndef MV4_PF_PAIRS
#define MV4_PF_PAIRS 1
#endif

/* tile: the correction as the B > 1 tile wants it (see mt4_tile): [c0 + c2, c1 + c3] twice. */
static void mv4_prep(const float *x, int64_t n, void *xp, bool tile) {
    const int64_t nb = n / SL_QK8_0;
    enum { CH = 16 };
    sl_block_q8_0 tmp[CH];
    for (int64_t i0 = 0; i0 < nb; i0 += CH) {
        const int64_t cnt = nb - i0 < CH ? nb - i0 : CH;
        sl_x2_quantize_q8(x + i0 * SL_QK8_0, tmp, cnt * SL_QK8_0);
        for (int64_t j = 0; j < cnt; j++) {
            uint8_t *d = (uint8_t *)xp + (size_t)(i0 + j) * MV4_X_BYTES;
            int32_t c[4];
            for (int k = 0; k < 4; k++) {
                int32_t sum = 0;
                for (int e = 0; e < 4; e++) sum += tmp[j].qs[4 * k + e] + tmp[j].qs[16 + 4 * k + e];
                c[k] = -8 * sum;
            }
            memcpy(d, tmp[j].qs, 32);
            if (tile) {
                const int32_t c2[4] = {c[0] + c[2], c[1] + c[3], c[0] + c[2], c[1] + c[3]};
                memcpy(d + 32, c2, 16);
            } else {
                memcpy(d + 32, c, 16);
            }
            const float dx = _cvtsh_ss(tmp[j].d);
            memcpy(d + 48, &dx, 4);
            memset(d + 52, 0, 12);
        }
    }
}

/* y[0..4*NG) = rows of NG consecutive groups (the first at g, gb bytes each) . x; writes only
 * the first ny outputs (padding rows of the last group are computed and dropped). */
SL_INLINE void mv4_groups(const int NG, const uint8_t *g, size_t gb, const uint8_t *xp, int64_t nb, float *y, int ny) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i lo2 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), hi2 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    const uint8_t *pf = g + (size_t)(MV4_PF_PAIRS * 2) * gb;
    for (int64_t b = 0; b < nb; b++) {
        if (MV4_PF_PAIRS) {
#pragma GCC unroll 2
            for (int k = 0; k < NG; k++) {
                _mm_prefetch((const char *)(pf + k * gb + (size_t)b * 64), _MM_HINT_T1);
                if ((b & 7) == 0) _mm_prefetch((const char *)(pf + k * gb + (size_t)nb * 64 + (size_t)b * 8), _MM_HINT_T1);
            }
        }
        const uint8_t *xb = xp + (size_t)b * MV4_X_BYTES;
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 16)));
        const __m256i corr = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 32)));
        const __m128 dx = _mm_broadcast_ss((const float *)(xb + 48));
#pragma GCC unroll 2
        for (int k = 0; k < NG; k++) {
            const uint8_t *gk = g + k * gb;
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(gk + (size_t)b * 64 + 32 * h));
                const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(w, m4), xlo),
                                                   _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w, 4), m4), xhi));
                const __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(p, ones), corr);
                const __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gk + (size_t)nb * 64 + (size_t)b * 8))), dx);
                const __m256 sv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(sc), h ? hi2 : lo2);
                acc[k][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), sv, acc[k][h]);
            }
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < NG; k++) {
        /* rows 4k, 4k + 1 in the lanes of acc[k][0], rows 4k + 2, 4k + 3 in acc[k][1] */
        const __m256 s = _mm256_hadd_ps(acc[k][0], acc[k][1]); /* lane: r0 r0 r2 r2 | r1 r1 r3 r3 */
        const __m256 t2 = _mm256_hadd_ps(s, s);                 /* lane: r0 r2 r0 r2 | r1 r3 r1 r3 */
        const __m128 lo = _mm256_castps256_ps128(t2), hi = _mm256_extractf128_ps(t2, 1);
        float v[4] = {_mm_cvtss_f32(lo), _mm_cvtss_f32(hi), _mm_cvtss_f32(_mm_shuffle_ps(lo, lo, 1)), _mm_cvtss_f32(_mm_shuffle_ps(hi, hi, 1))};
        for (int i = 0; i < 4 && 4 * k + i < ny; i++) y[4 * k + i] = v[i];
    }
}

static void mv4_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->n / SL_QK4_0;
    const size_t gb = 4 * a->row_bytes;
    for (int64_t r = r0; r < r1; r += 8) { /* r0 is a multiple of 16 (matmul.c's row unit) */
        const uint8_t *g = (const uint8_t *)a->W + (size_t)(r / 4) * gb;
        const int ny = r1 - r < 8 ? (int)(r1 - r) : 8;
        if (ny > 4) mv4_groups(2, g, gb, a->xp, nb, a->Y + r, ny);
        else mv4_groups(1, g, gb, a->xp, nb, a->Y + r, ny);
    }
}

/* ---- B > 1 on Q4_0x4: a tile of one 4-row group x up to 4 tokens -----------------------------
 * Each 64-byte block of the group is loaded and split ONCE into four vectors of unsigned
 * nibbles, each holding 8 elements of all 4 rows (unpacklo/hi_epi64 of the two 256-bit halves:
 * 64-bit quarters [row 0, row 2 | row 1, row 3]; vector k: elements 8k..8k+7, the low nibbles
 * of bytes 0..7 / 8..15, then the high ones). Per token: 4 vpmaddubsw against X's 8-byte runs
 * broadcast to every quarter (pairs <= 2 * 15 * 128, four summed still fit int16), one
 * vpmaddwd with ones (dword q of a quarter: elements 4q..4q+3 of each run), plus the matching
 * corrections, cvt, and one fma with the block's 4 row scales (widened and spread once per
 * block) times the token's dx: ~12 vector ops per token per block and group, against ~28 for
 * the matvec and ~70 for the unpack-to-int8 tile below. One accumulator per token (lanes
 * r0 r0 r2 r2 | r1 r1 r3 r3), 4 weight vectors, the scales: 16 ymm registers suffice without
 * spills. Integer block products are exact; only the float sums' order differs from the
 * reference. X: mv4's 64-byte blocks, one run of nb blocks per token, prepared with tile set. */

/* y[t * ys + i] (i < ny, t < NT) = row i of the group at g . token t of xp (xs bytes apart);
 * pf: the group to prefetch (the next one), or NULL. */
SL_INLINE void mt4_tile(const int NT, const uint8_t *g, int64_t nb, const uint8_t *pf, const uint8_t *xp, size_t xs,
                        float *y, int64_t ys, int ny) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i spread = _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const uint8_t *sc = g + (size_t)nb * 64;
    for (int64_t b = 0; b < nb; b++) {
        if (pf) {
            _mm_prefetch((const char *)(pf + (size_t)b * 64), _MM_HINT_T0);
            if ((b & 7) == 0) _mm_prefetch((const char *)(pf + (size_t)nb * 64 + (size_t)b * 8), _MM_HINT_T0);
        }
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(g + (size_t)b * 64));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(g + (size_t)b * 64 + 32));
        const __m256i a = _mm256_unpacklo_epi64(w0, w1), c = _mm256_unpackhi_epi64(w0, w1);
        const __m256i q0 = _mm256_and_si256(a, m4), q1 = _mm256_and_si256(c, m4);
        const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(a, 4), m4), q3 = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
        const __m256 sw = _mm256_permutevar8x32_ps(
            _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(sc + (size_t)b * 8)))), spread);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const uint8_t *xb = xp + (size_t)t * xs + (size_t)b * MV4_X_BYTES;
            const __m256i x0 = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)xb));
            const __m256i x1 = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(xb + 8)));
            const __m256i x2 = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(xb + 16)));
            const __m256i x3 = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(xb + 24)));
            const __m256i p = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q0, x0), _mm256_maddubs_epi16(q1, x1)),
                                               _mm256_add_epi16(_mm256_maddubs_epi16(q2, x2), _mm256_maddubs_epi16(q3, x3)));
            const __m256i corr = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(xb + 32)));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p, ones), corr);
            const __m256 d = _mm256_mul_ps(sw, _mm256_broadcast_ss((const float *)(xb + 48)));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        float v[8];
        _mm256_storeu_ps(v, acc[t]);
        const float r[4] = {v[0] + v[1], v[4] + v[5], v[2] + v[3], v[6] + v[7]};
        for (int i = 0; i < ny; i++) y[t * ys + i] = r[i];
    }
}

typedef void (*mt4_fn)(const uint8_t *g, int64_t nb, const uint8_t *pf, const uint8_t *xp, size_t xs, float *y,
                       int64_t ys, int ny);
#define MT4_FN(NT)                                                                                                      \
    static void mt4_##NT(const uint8_t *g, int64_t nb, const uint8_t *pf, const uint8_t *xp, size_t xs, float *y,     \
                         int64_t ys, int ny) {                                                                          \
        mt4_tile(NT, g, nb, pf, xp, xs, y, ys, ny);                                                                     \
    }
MT4_FN(1) MT4_FN(2) MT4_FN(3) MT4_FN(4)
static const mt4_fn mt4_tiles[4] = {mt4_1, mt4_2, mt4_3, mt4_4};

/* Rows [r0, r1) for all B tokens: tokens in chunks whose X stays within CHUNK_BYTES (prefill),
 * then group by group, tiles of 4 tokens and a remainder of 1..3. */
static void mt4_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->n / SL_QK4_0, B = a->B;
    const size_t gb = 4 * a->row_bytes, xs = (size_t)nb * MV4_X_BYTES;
    int64_t tc = xs ? (int64_t)(CHUNK_BYTES / xs) & ~(int64_t)3 : B;
    if (tc < 4) tc = 4;
    for (int64_t t0 = 0; t0 < B; t0 += tc) {
        const int64_t t1 = B - t0 < tc ? B : t0 + tc;
        for (int64_t r = r0; r < r1; r += 4) { /* r0 is a multiple of 16 (matmul.c's row unit) */
            const uint8_t *g = (const uint8_t *)a->W + (size_t)(r / 4) * gb;
            const int ny = r1 - r < 4 ? (int)(r1 - r) : 4;
            for (int64_t t = t0; t < t1; t += 4) {
                const int nt = t1 - t < 4 ? (int)(t1 - t) : 4;
                /* prefetch the next group while the first tile of this one runs */
                const uint8_t *pf = t == t0 && r + 4 < r1 ? g + gb : NULL;
                mt4_tiles[nt - 1](g, nb, pf, (const uint8_t *)a->xp + (size_t)t * xs, xs, a->Y + t * a->rows + r, a->rows, ny);
            }
        }
    }
}

size_t sl_x2_mm_prep_size(sl_type type, int64_t n, int64_t B) {
    if (type == SL_TYPE_Q4_0X4) return (size_t)B * (size_t)(n / SL_QK8_0) * MV4_X_BYTES;
    if (type != SL_TYPE_Q8_0 && type != SL_TYPE_Q4_0) return 0;
    return (size_t)B * sl_type_row_size(SL_TYPE_Q8_0, n);
}

void sl_x2_mm_prep(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    if (type == SL_TYPE_Q4_0X4) {
        const size_t xs = (size_t)(n / SL_QK8_0) * MV4_X_BYTES;
        for (int64_t b = b0; b < b1; b++) mv4_prep(X + b * n, n, (uint8_t *)xp + (size_t)b * xs, B > 1);
        return;
    }
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
        const size_t ws = a->row_bytes;
        for (int64_t b = 0; b < B; b += QT) {
            int nt = B - b < QT ? (int)(B - b) : QT;
            qtiles[nr - 1][nt - 1](a->type, w, ws, (const uint8_t *)a->xp + (size_t)b * xs, xs, nb, a->Y + b * a->rows + r, a->rows);
        }
    }
}

void sl_x2_mm_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    if (a->type == SL_TYPE_Q4_0X4) {
        if (a->B == 1) mv4_rows(a, r0, r1);
        else mt4_rows(a, r0, r1);
    } else if (a->type == SL_TYPE_Q8_0 || a->type == SL_TYPE_Q4_0) mm_rows_quant(a, r0, r1);
    else mm_rows_float(a, r0, r1);
}
