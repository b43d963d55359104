/*
 * bundle_rows_avx2.c — AVX2 (+FMA, F16C) row-group kernels for rows in the neuron-bundle
 * layouts Q4_0N and Q8_0N (quant.h): the dot of up to 8 gate/up rows with one prepared input,
 * and the int8-coefficient sum of up to 8 scaled down rows into one accumulator. They compute
 * the scalar definitions of bundle_rows_ref.c (up to the order of float additions), as the
 * AVX-512 kernels (bundle_rows_avx512.c) do, for CPUs with AVX2 and no AVX-512 VNNI.
 *
 * The layouts were made for 512-bit loads; a 256-bit load takes half a group of 64 bytes, whose
 * two 128-bit lanes hold the same blocks (Q4_0N: the 4 blocks of the group, bytes 4t..4t+7 of
 * each; Q8_0N: the 2 blocks, elements 4t..4t+7 of each 16), so every 32-bit lane still belongs
 * to one block and both halves of a group accumulate into the same lanes.
 *
 * dot (per row and 64-byte group): Q4_0N — the nibbles split by two masks, vpmaddubsw of the
 * unsigned nibbles with the signed x bytes (pairs <= 2 * 15 * 127, four of them still fit int16),
 * one vpmaddwd with ones, plus a precomputed -8 * sum(x) per block; Q8_0N — the stored bytes
 * q + 128 flipped back to signed q, then vpmaddubsw(|q|, sign(x, q)) (pairs <= 2 * 127 * 127)
 * and vpmaddwd per half. Then one convert and one FMA against the blocks' d_w * d_x.
 * axpy (the down sum): the coefficients c_r = a_r * d_r,b of the call's rows are rounded to int8
 * per block (exactly as the definition), two rows are interleaved bytewise (vpunpck*bw) and one
 * vpmaddubsw of the unsigned nibbles with the pair (k_r0, k_r1) adds both rows for 16 elements;
 * up to 4 pairs accumulate in int16 (<= 4 * 2 * 15 * 127 = 15240). Q8_0N bytes are split into
 * nibbles too (q + 128 = 16 hi + lo), recombined in int32 at the end of the call. The results come
 * out in the layout's order, which vpermq and one widening per 8 elements put back in place.
 *
 * What it is not: a kernel for the file's rows (sparse_rows_avx2.c) or for batches.
 * Compiled with the AVX2 flags; called only when that variant is in use.
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"
#include "format/quant.h"

#include <immintrin.h>
#include <string.h>

#define B2_INLINE static inline __attribute__((always_inline))

/* Blocks per 64-byte group of values, and the groups of a row of n elements. */
B2_INLINE int blocks_per_group(sl_type t) { return t == SL_TYPE_Q4_0N ? 4 : 2; }
B2_INLINE int64_t n_groups(sl_type t, int64_t n) { return (n / 32 + blocks_per_group(t) - 1) / blocks_per_group(t); }

/* Prepared input, per group: the x bytes the group's value bytes multiply, in their order
 * (Q4_0N: 64 bytes against the low nibbles, 64 against the high ones, then 8 int32: -8 times the
 * sum of block k's x values in lane k < 4, zeros above; Q8_0N: 64 bytes); after all groups,
 * every block's f32 scale d_x (0 for padding blocks). */
B2_INLINE size_t x_group_bytes(sl_type t) { return t == SL_TYPE_Q4_0N ? 160 : 64; }

size_t sl_bn_x_size_avx2(sl_type t, int64_t n) {
    const int64_t G = n_groups(t, n);
    return (size_t)G * x_group_bytes(t) + (size_t)(G * blocks_per_group(t)) * sizeof(float);
}

/* x quantized to Q8_0 as the matrices path does it (sl_act_prepare), then its bytes put in the
 * weights' order. Once per call: plain C is fast enough. */
void sl_bn_x_prep_avx2(sl_type t, const float *x, int64_t n, void *xp) {
    const bool q4 = t == SL_TYPE_Q4_0N;
    const int64_t nb = n / 32, G = n_groups(t, n);
    const size_t xgb = x_group_bytes(t);
    uint8_t *base = xp;
    float *dx = (float *)(base + (size_t)G * xgb);
    memset(base, 0, (size_t)G * xgb);
    enum { CH = 16 };
    sl_block_q8_0 q[CH];
    for (int64_t b0 = 0; b0 < nb; b0 += CH) {
        const int cnt = nb - b0 < CH ? (int)(nb - b0) : CH;
        sl_act_prepare(SL_TYPE_Q8_0, x + b0 * 32, (int64_t)cnt * 32, q);
        for (int j = 0; j < cnt; j++) {
            const int64_t b = b0 + j;
            dx[b] = _cvtsh_ss(q[j].d);
            if (q4) {
                uint8_t *xg = base + (size_t)(b / 4) * xgb;
                const int k = (int)(b % 4);
                int32_t s = 0;
                for (int tt = 0; tt < 4; tt++)
                    for (int e = 0; e < 4; e++) {
                        xg[16 * tt + 4 * k + e] = (uint8_t)q[j].qs[4 * tt + e];
                        xg[64 + 16 * tt + 4 * k + e] = (uint8_t)q[j].qs[16 + 4 * tt + e];
                    }
                for (int i = 0; i < 32; i++) s += q[j].qs[i];
                const int32_t c = -8 * s;
                memcpy(xg + 128 + 4 * k, &c, 4);
            } else {
                uint8_t *xg = base + (size_t)(b / 2) * xgb;
                for (int i = 0; i < 32; i++) {
                    const int jj = 32 * (int)(b % 2) + i, m = jj / 16, tt = (jj % 16) / 4, e = jj % 4; /* jj = 16m + 4t + e */
                    xg[16 * tt + 4 * m + e] = (uint8_t)q[j].qs[i];
                }
            }
        }
    }
    for (int64_t b = nb; b < G * blocks_per_group(t); b++) dx[b] = 0.0f;
}

/* Line g of each next row (values), and line g of its scales while there are any. */
B2_INLINE void prefetch_line(const uint8_t *const *next, int nnext, int64_t G, int64_t scale_bytes, int64_t g) {
    for (int r = 0; r < nnext; r++) {
        _mm_prefetch((const char *)next[r] + (size_t)g * 64, _MM_HINT_T1);
        if (g * 64 < scale_bytes) _mm_prefetch((const char *)next[r] + (size_t)(G + g) * 64, _MM_HINT_T1);
    }
}

/* ---- dot --------------------------------------------------------------------------------------- */

/* d_w * d_x of the group's blocks in the lanes the integer sums come out in: Q4_0N lane 4L + k
 * holds block k; Q8_0N lane 4L + m holds block m / 2. */
B2_INLINE __m256 group_scales(const sl_type T, const uint8_t *sc, const float *dx) {
    if (T == SL_TYPE_Q4_0N) {
        const __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)sc)), _mm_loadu_ps(dx));
        return _mm256_set_m128(d, d);
    }
    int32_t v;
    memcpy(&v, sc, 4);
    __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(v)), _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)dx)));
    d = _mm_unpacklo_ps(d, d); /* s0 s0 s1 s1 */
    return _mm256_set_m128(d, d);
}

B2_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

B2_INLINE void bn2_dot(const sl_type T, const int NR, const uint8_t *const *rows, const uint8_t *xp, int64_t n, float *out,
                       const uint8_t *const *next, int nnext) {
    const bool q4 = T == SL_TYPE_Q4_0N;
    const int bpg = q4 ? 4 : 2;
    const int64_t G = n_groups(T, n);
    const size_t xgb = q4 ? 160 : 64;
    const float *dx = (const float *)(xp + (size_t)G * xgb);
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        const uint8_t *xg = xp + (size_t)g * xgb;
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const uint8_t *w = rows[r] + (size_t)g * 64;
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)w), w1 = _mm256_loadu_si256((const __m256i *)(w + 32));
            __m256i s;
            if (q4) {
                __m256i p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(w0, m4), _mm256_loadu_si256((const __m256i *)xg)),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4), _mm256_loadu_si256((const __m256i *)(xg + 64))));
                p = _mm256_add_epi16(p, _mm256_add_epi16(
                    _mm256_maddubs_epi16(_mm256_and_si256(w1, m4), _mm256_loadu_si256((const __m256i *)(xg + 32))),
                    _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4), _mm256_loadu_si256((const __m256i *)(xg + 96)))));
                s = _mm256_add_epi32(_mm256_madd_epi16(p, ones), _mm256_loadu_si256((const __m256i *)(xg + 128)));
            } else {
                const __m256i q0 = _mm256_xor_si256(w0, flip), q1 = _mm256_xor_si256(w1, flip);
                const __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xg), q0));
                const __m256i p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(q1), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xg + 32)), q1));
                s = _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
            }
            const __m256 sc = group_scales(T, rows[r] + (size_t)G * 64 + (size_t)(2 * bpg) * (size_t)g, dx + bpg * g);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[r]);
        }
        prefetch_line(next, nnext, G, 2 * bpg * G, g);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = hsum8(acc[r]);
}

void sl_bn_dot_rows_avx2(sl_type t, const uint8_t *const *rows, int nr, const void *xp, int64_t n, float *out,
                         const uint8_t *const *next, int nnext) {
    if (t == SL_TYPE_Q4_0N) SP_NR_CASES(nr, bn2_dot, SL_TYPE_Q4_0N, rows, xp, n, out, next, nnext)
    SP_NR_CASES(nr, bn2_dot, SL_TYPE_Q8_0N, rows, xp, n, out, next, nnext)
}

/* ---- axpy -------------------------------------------------------------------------------------- */

/* cnt (<= 8) f16 scales at s as f32; the rest 0. */
B2_INLINE __m256 scales8(const uint8_t *s, int cnt) {
    if (cnt >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s));
    uint16_t tmp[8] = {0};
    memcpy(tmp, s, (size_t)cnt * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

/* y[0..8) += S * (8 int16 values of v widened + bias). */
B2_INLINE void put8(float *y, __m128i v, int32_t bias, float S) {
    const __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_cvtepi16_epi32(v), _mm256_set1_epi32(bias)));
    _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_set1_ps(S), f, _mm256_loadu_ps(y)));
}

/* The same for Q8_0N, whose values are 16 * hi + lo - 128 (the bias carries the -128). */
B2_INLINE void put8_q8(float *y, __m128i lo, __m128i hi, int32_t bias, float S) {
    const __m256i v = _mm256_add_epi32(_mm256_slli_epi32(_mm256_cvtepi16_epi32(hi), 4), _mm256_cvtepi16_epi32(lo));
    const __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(v, _mm256_set1_epi32(bias)));
    _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_set1_ps(S), f, _mm256_loadu_ps(y)));
}

/* NP pairs of rows (rows padded to 2 * NP by the caller, their coefficients 0). */
B2_INLINE void bn2_axpy(const sl_type T, const int NP, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                        const uint8_t *const *next, int nnext) {
    const bool q4 = T == SL_TYPE_Q4_0N;
    const int bpg = q4 ? 4 : 2;
    const int64_t nb = n / 32, G = n_groups(T, n), nbp = bpg * G, gpc = 8 / bpg; /* groups per chunk of 8 blocks */
    const int32_t K = q4 ? 8 : 128;                                                 /* offset of the values */
    const __m256i m4 = _mm256_set1_epi8(0x0f), lo8 = _mm256_set1_epi32(0xff);
    /* pshufb patterns: for block pair (i0, i1) of a 128-bit lane of pair words, lanes j < 8 get
     * word i0 (4 times each in Q4_0N's 4-element runs) */
    _Alignas(32) int32_t bias[8];
    _Alignas(32) float S[8];
    _Alignas(32) __m256i kp[4][2];
    for (int64_t g0 = 0; g0 < G; g0 += gpc) {
        const int cnt = nbp - bpg * g0 < 8 ? (int)(nbp - bpg * g0) : 8;
        /* the coefficients of 8 blocks: c_r = a_r d_r, rounded against S = max |c| / 127 */
        __m256 c[8], mx = _mm256_setzero_ps();
        const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
#pragma GCC unroll 8
        for (int r = 0; r < 2 * NP; r++) {
            c[r] = _mm256_mul_ps(scales8(rows[r] + (size_t)G * 64 + (size_t)(2 * bpg) * (size_t)g0, cnt), _mm256_set1_ps(a[r]));
            mx = _mm256_max_ps(mx, _mm256_and_ps(c[r], absm));
        }
        const __m256 pos = _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_GT_OQ);
        const __m256 inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(127.0f), mx), pos);
        _mm256_store_ps(S, _mm256_div_ps(mx, _mm256_set1_ps(127.0f)));
        __m256i ksum = _mm256_setzero_si256(), pw[4];
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) {
            const __m256i k0 = _mm256_cvtps_epi32(_mm256_mul_ps(c[2 * p], inv)), k1 = _mm256_cvtps_epi32(_mm256_mul_ps(c[2 * p + 1], inv));
            ksum = _mm256_add_epi32(ksum, _mm256_add_epi32(k0, k1));
            pw[p] = _mm256_or_si256(_mm256_and_si256(k0, lo8), _mm256_slli_epi32(_mm256_and_si256(k1, lo8), 8));
        }
        _mm256_store_si256((__m256i *)bias, _mm256_mullo_epi32(ksum, _mm256_set1_epi32(-K)));
        const int64_t g1 = g0 + gpc < G ? g0 + gpc : G;
        for (int64_t g = g0; g < g1; g++) {
            const int q = (int)(g - g0), b0 = bpg * q; /* the group's first block within the chunk */
            /* the pair words of the blocks the unpacked halves hold: Q4_0N unpacklo = blocks 0, 1
             * (4 elements each per 128-bit lane), unpackhi = blocks 2, 3; Q8_0N unpacklo = block
             * 0, unpackhi = block 1 (8 elements each) */
            const __m256i sel_lo = q4 ? _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5, 0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5)
                                      : _mm256_set1_epi16(0x0100);
            const __m256i sel_hi = q4 ? _mm256_setr_epi8(8, 9, 8, 9, 8, 9, 8, 9, 12, 13, 12, 13, 12, 13, 12, 13, 8, 9, 8, 9, 8, 9, 8, 9, 12, 13, 12, 13, 12, 13, 12, 13)
                                      : _mm256_set1_epi16(0x0504);
            const __m256i shift = _mm256_set1_epi8((char)(q4 ? 0 : 8 * (q % 2))); /* Q8_0N: words 2 and 3 of the lane for odd groups */
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                /* the 128-bit lane holding this group's blocks, in both lanes */
                const __m256i bc = (q4 ? q : q / 2) ? _mm256_permute2x128_si256(pw[p], pw[p], 0x11) : _mm256_permute2x128_si256(pw[p], pw[p], 0x00);
                kp[p][0] = _mm256_shuffle_epi8(bc, _mm256_add_epi8(sel_lo, shift));
                kp[p][1] = _mm256_shuffle_epi8(bc, _mm256_add_epi8(sel_hi, shift));
            }
            prefetch_line(next, nnext, G, 2 * nbp, g);
            for (int h = 0; h < 2; h++) {
                /* A[2 nib + u]: nibble nib (0 low, 1 high) of the unpacked half u (0 lo, 1 hi) */
                __m256i A[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 4
                for (int p = 0; p < NP; p++) {
                    const size_t off = (size_t)g * 64 + 32 * (size_t)h;
                    const __m256i wa = _mm256_loadu_si256((const __m256i *)(rows[2 * p] + off));
                    const __m256i wb = _mm256_loadu_si256((const __m256i *)(rows[2 * p + 1] + off));
                    const __m256i la = _mm256_and_si256(wa, m4), lb = _mm256_and_si256(wb, m4);
                    const __m256i ha = _mm256_and_si256(_mm256_srli_epi16(wa, 4), m4), hb = _mm256_and_si256(_mm256_srli_epi16(wb, 4), m4);
                    A[0] = _mm256_add_epi16(A[0], _mm256_maddubs_epi16(_mm256_unpacklo_epi8(la, lb), kp[p][0]));
                    A[1] = _mm256_add_epi16(A[1], _mm256_maddubs_epi16(_mm256_unpackhi_epi8(la, lb), kp[p][1]));
                    A[2] = _mm256_add_epi16(A[2], _mm256_maddubs_epi16(_mm256_unpacklo_epi8(ha, hb), kp[p][0]));
                    A[3] = _mm256_add_epi16(A[3], _mm256_maddubs_epi16(_mm256_unpackhi_epi8(ha, hb), kp[p][1]));
                }
                /* back in place: after vpermq [0 2 1 3] the low 128 bits hold 8 consecutive
                 * elements of the first block of the unpacked half, the high 128 of the second */
                __m256i V[4];
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) V[i] = _mm256_permute4x64_epi64(A[i], 0xD8);
                if (q4) {
                    float *yg = y + (size_t)g * 128;
#pragma GCC unroll 2
                    for (int nib = 0; nib < 2; nib++)
#pragma GCC unroll 2
                        for (int u = 0; u < 2; u++) {
                            const int k0 = 2 * u, k1 = 2 * u + 1; /* blocks of the group */
                            const int o = 16 * nib + 8 * h;
                            if (4 * g + k0 < nb) put8(yg + 32 * k0 + o, _mm256_castsi256_si128(V[2 * nib + u]), bias[b0 + k0], S[b0 + k0]);
                            if (4 * g + k1 < nb) put8(yg + 32 * k1 + o, _mm256_extracti128_si256(V[2 * nib + u], 1), bias[b0 + k1], S[b0 + k1]);
                        }
                } else {
                    float *yg = y + (size_t)g * 64;
#pragma GCC unroll 2
                    for (int u = 0; u < 2; u++) {
                        if (2 * g + u >= nb) break;
                        put8_q8(yg + 32 * u + 8 * h, _mm256_castsi256_si128(V[u]), _mm256_castsi256_si128(V[2 + u]), bias[b0 + u], S[b0 + u]);
                        put8_q8(yg + 32 * u + 16 + 8 * h, _mm256_extracti128_si256(V[u], 1), _mm256_extracti128_si256(V[2 + u], 1), bias[b0 + u],
                                S[b0 + u]);
                    }
                }
            }
        }
    }
}

void sl_bn_axpy_rows_avx2(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                          const uint8_t *const *next, int nnext) {
    if (nr < 1) return;
    const uint8_t *rp[8];
    float ap[8];
    const int np = (nr + 1) / 2;
    for (int r = 0; r < 2 * np; r++) {
        rp[r] = r < nr ? rows[r] : rows[0]; /* padding row: any valid row, coefficient 0 */
        ap[r] = r < nr ? a[r] : 0.0f;
    }
#define B2_AXPY_CASES(T)                                                                                                \
    switch (np) {                                                                                                       \
    case 4: bn2_axpy(T, 4, rp, ap, y, n, next, nnext); return;                                                          \
    case 3: bn2_axpy(T, 3, rp, ap, y, n, next, nnext); return;                                                          \
    case 2: bn2_axpy(T, 2, rp, ap, y, n, next, nnext); return;                                                          \
    default: bn2_axpy(T, 1, rp, ap, y, n, next, nnext); return;                                                         \
    }
    if (t == SL_TYPE_Q4_0N) B2_AXPY_CASES(SL_TYPE_Q4_0N)
    B2_AXPY_CASES(SL_TYPE_Q8_0N)
#undef B2_AXPY_CASES
}

/* ---- exact column rows (Q4_0C / Q8_0C) ----------------------------------------------------------- */

/* y[e] += (d[e] * dx) * sum_r k_r v_r[e]: pairs of rows interleaved bytewise, one vpmaddubsw of
 * the unsigned nibbles with the pair (k_r0, k_r1) per 16 elements, int16 sums over up to 8 pairs
 * (<= 8 * 2 * 15 * 127), then widened into int32 sums; the column layouts put the results of the
 * unpacks in element order (quant.h: swap34), so no permutation is needed. Q8_0C bytes q + 128
 * are split into nibbles too and recombined as 16 hi + lo - 128.
 * The int32 sums live in eight named registers (an indexed array with a variable trip count was
 * kept on the stack by the compiler and cleared with `rep stos` every 64 elements: a third of
 * the kernel's time at 10% active, perf annotate, issue 17 session 7); calls of at most 8 pairs
 * (16 rows: every call of a sparse token below ~50% active) widen the int16 sums straight into
 * the output step. */

/* acc0..7 += the int16 sums A0..A3 widened (acc 2i / 2i + 1: the low / high 128 bits of A i). */
#define COL_WIDEN_ADD(op)                                                                                               \
    do {                                                                                                                \
        acc0 = op(acc0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(A0)));                                             \
        acc1 = op(acc1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(A0, 1)));                                        \
        acc2 = op(acc2, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(A1)));                                             \
        acc3 = op(acc3, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(A1, 1)));                                        \
        acc4 = op(acc4, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(A2)));                                             \
        acc5 = op(acc5, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(A2, 1)));                                        \
        acc6 = op(acc6, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(A3)));                                             \
        acc7 = op(acc7, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(A3, 1)));                                        \
    } while (0)
#define COL_SECOND(a, b) (b)

/* y[0..8) += (d[0..8) * dx) * (v + bias). */
B2_INLINE void col_put8(float *y, const uint16_t *d, __m256i v, __m256i bias, __m256 dxv) {
    const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)), dxv);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_add_epi32(v, bias)), _mm256_loadu_ps(y)));
}

B2_INLINE void col_pairs(const uint8_t *const *rp, const __m256i *kp, int p0, int p1, size_t off, __m256i *A0, __m256i *A1,
                         __m256i *A2, __m256i *A3) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int p = p0; p < p1; p++) {
        const __m256i wa = _mm256_loadu_si256((const __m256i *)(rp[2 * p] + off));
        const __m256i wb = _mm256_loadu_si256((const __m256i *)(rp[2 * p + 1] + off));
        const __m256i la = _mm256_and_si256(wa, m4), lb = _mm256_and_si256(wb, m4);
        const __m256i ha = _mm256_and_si256(_mm256_srli_epi16(wa, 4), m4), hb = _mm256_and_si256(_mm256_srli_epi16(wb, 4), m4);
        a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(la, lb), kp[p]));
        a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(la, lb), kp[p]));
        a2 = _mm256_add_epi16(a2, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(ha, hb), kp[p]));
        a3 = _mm256_add_epi16(a3, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(ha, hb), kp[p]));
    }
    *A0 = a0, *A1 = a1, *A2 = a2, *A3 = a3;
}

void sl_sp_col_axpy_avx2(sl_type t, const uint8_t *const *rows, const int8_t *k, int nr, float dx, const uint16_t *d, float *y,
                         int64_t n, const uint8_t *const *next, int nnext) {
    if (nr < 1) return;
    const bool q4 = t == SL_TYPE_Q4_0C;
    const uint8_t *rp[SP_COL_MAX_ROWS + 1];
    __m256i kp[SP_COL_MAX_ROWS / 2];
    int32_t ksum = 0;
    const int np = (nr + 1) / 2;
    for (int p = 0; p < np; p++) {
        const int8_t k0 = k[2 * p], k1 = 2 * p + 1 < nr ? k[2 * p + 1] : 0;
        rp[2 * p] = rows[2 * p];
        rp[2 * p + 1] = 2 * p + 1 < nr ? rows[2 * p + 1] : rows[2 * p]; /* padding row: coefficient 0 */
        kp[p] = _mm256_set1_epi16((short)(uint16_t)((uint8_t)k0 | (uint16_t)((uint8_t)k1) << 8));
        ksum += k0 + k1;
    }
    const __m256i bias = _mm256_set1_epi32(-(q4 ? 8 : 128) * ksum);
    const __m256 dxv = _mm256_set1_ps(dx);
    const int64_t per = q4 ? 64 : 32, nch = (n + per - 1) / per;
    for (int64_t c = 0; c < nch; c++) {
        if (!(c & 1))
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + (size_t)c * 32, _MM_HINT_T1);
        /* int32 sums: Q4_0C elements 8m..8m+7 in acc m; Q8_0C lo nibbles in acc0..3, hi in acc4..7 */
        __m256i A0, A1, A2, A3, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7;
        col_pairs(rp, kp, 0, np < 8 ? np : 8, (size_t)c * 32, &A0, &A1, &A2, &A3);
        COL_WIDEN_ADD(COL_SECOND);
        for (int p0 = 8; p0 < np; p0 += 8) {
            col_pairs(rp, kp, p0, np - p0 < 8 ? np : p0 + 8, (size_t)c * 32, &A0, &A1, &A2, &A3);
            COL_WIDEN_ADD(_mm256_add_epi32);
        }
        const int64_t e0 = c * per;
        float *yp = y + e0;
        const uint16_t *dp = d + e0;
        if (q4) {
            col_put8(yp, dp, acc0, bias, dxv);
            col_put8(yp + 8, dp + 8, acc1, bias, dxv);
            col_put8(yp + 16, dp + 16, acc2, bias, dxv);
            col_put8(yp + 24, dp + 24, acc3, bias, dxv);
            if (n - e0 >= 64) {
                col_put8(yp + 32, dp + 32, acc4, bias, dxv);
                col_put8(yp + 40, dp + 40, acc5, bias, dxv);
                col_put8(yp + 48, dp + 48, acc6, bias, dxv);
                col_put8(yp + 56, dp + 56, acc7, bias, dxv);
            }
        } else {
            col_put8(yp, dp, _mm256_add_epi32(_mm256_slli_epi32(acc4, 4), acc0), bias, dxv);
            col_put8(yp + 8, dp + 8, _mm256_add_epi32(_mm256_slli_epi32(acc5, 4), acc1), bias, dxv);
            col_put8(yp + 16, dp + 16, _mm256_add_epi32(_mm256_slli_epi32(acc6, 4), acc2), bias, dxv);
            col_put8(yp + 24, dp + 24, _mm256_add_epi32(_mm256_slli_epi32(acc7, 4), acc3), bias, dxv);
        }
    }
}
#undef COL_WIDEN_ADD
#undef COL_SECOND
