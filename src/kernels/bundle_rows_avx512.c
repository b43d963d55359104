/*
 * bundle_rows_avx512.c — AVX-512 row-group kernels for rows in the neuron-bundle layouts
 * Q4_0N and Q8_0N (quant.h): the dot of up to 8 gate/up rows with one prepared input, and the
 * sum of up to 8 scaled down rows into one accumulator. The scalar definitions they reproduce
 * are in bundle_rows_ref.c; sparse_rows_avx512.c routes these two types here.
 *
 * Why layouts of their own: on Zen 4 the gathered kernels on the file's rows
 * (sparse_rows_avx512.c) were compute-bound even with every row in cache — Q4_0 at 13-15 GB/s,
 * below the ~20 GB/s one core reads random 3-7 KiB runs from memory; one 16- or 32-byte block
 * per row and instruction, a gather per 16 scales. In the bundle layouts one 512-bit load
 * brings 4 (Q4_0) or 2 (Q8_0) blocks whose 32-bit lanes are already grouped by block, and the
 * scales are contiguous after the values. Per load and row the dot is: (Q4_0: 3 logic ops to
 * split the nibbles) 1-2 vpdpbusd from a precomputed offset correction, a convert and one FMA
 * against the blocks' scales broadcast from a small table.
 *
 * The down sum is integer too. A float axpy needs, per weight, its unpacking, a convert and an
 * FMA (about 6 vector ops per block and row). Here the coefficients c_r = a_r * d_r,b of the
 * call's rows in block b are rounded to int8 against their common scale S_b = max_r |c_r| / 127
 * (as ggml rounds activations to Q8_0 before an integer dot), 4 rows are interleaved bytewise
 * (unpack epi8 then epi16: lane j of the result holds the 4 rows' byte j, and the layouts put 16
 * consecutive elements in each result), and one vpdpbusd per 16 columns sums 4 rows at once;
 * one convert and one FMA by S_b per 16 columns follow, shared by all rows. About 2-3 vector
 * ops per block and row. The rounding this adds is bounded in sparse_mlp.h and tested.
 *
 * Prefetch: every line of the next rows, values and scales, one line per 64 bytes read here.
 * Leaving out the second line of the Q4_0 scales (a demand miss per row) cost 15-20% at 50%
 * active.
 *
 * What it is not: a kernel for the file's rows (sparse_rows_avx512.c) or for batches.
 * Compiled with the AVX-512 flags (F, BW, VL, DQ, VNNI); called only when that variant is in use.
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"
#include "format/quant.h"

#include <immintrin.h>
#include <string.h>

#define BN_INLINE static inline __attribute__((always_inline))

/* Blocks per 64-byte group of values, and the groups of a row of n elements. */
BN_INLINE int blocks_per_group(sl_type t) { return t == SL_TYPE_Q4_0N ? 4 : 2; }
BN_INLINE int64_t n_groups(sl_type t, int64_t n) { return (n / 32 + blocks_per_group(t) - 1) / blocks_per_group(t); }

/* Prepared input, per group: the x bytes the group's value bytes multiply, in their order
 * (Q4_0N: 64 bytes against the low nibbles, 64 against the high ones; Q8_0N: 64), then 16
 * int32 offset corrections (-K times the sum of each lane's x bytes, K = 8 for the nibbles, 128
 * for Q8_0N's unsigned bytes); after all groups, every block's f32 scale d_x. */
BN_INLINE size_t x_group_bytes(sl_type t) { return t == SL_TYPE_Q4_0N ? 192 : 128; }

size_t sl_bn_x_size_avx512(sl_type t, int64_t n) {
    const int64_t G = n_groups(t, n);
    return (size_t)G * x_group_bytes(t) + (size_t)(G * blocks_per_group(t)) * sizeof(float);
}

/* The 4 x 4 matrix of 32-bit words a[k] lane t, transposed: out[t] lane k = a[k] lane t. */
BN_INLINE void transpose4x4(const __m128i a[4], __m128i out[4]) {
    const __m128i t0 = _mm_unpacklo_epi32(a[0], a[1]), t1 = _mm_unpackhi_epi32(a[0], a[1]);
    const __m128i t2 = _mm_unpacklo_epi32(a[2], a[3]), t3 = _mm_unpackhi_epi32(a[2], a[3]);
    out[0] = _mm_unpacklo_epi64(t0, t2);
    out[1] = _mm_unpackhi_epi64(t0, t2);
    out[2] = _mm_unpacklo_epi64(t1, t3);
    out[3] = _mm_unpackhi_epi64(t1, t3);
}

/* x quantized to Q8_0 as the matrices path does it (sl_act_prepare, 16 blocks at a time), then
 * each group's bytes put in the weights' order by 4 x 4 transposes of 32-bit words: lane k of
 * 16-byte row t is block k's bytes 4t..4t+3 (Q4_0N; the high halves likewise from byte 16), or
 * elements 16m + 4t.. of the pair of blocks (Q8_0N, lane m). The corrections are one vpdpbusd
 * of K against those bytes per row. */
void sl_bn_x_prep_avx512(sl_type t, const float *x, int64_t n, void *xp) {
    const bool q4 = t == SL_TYPE_Q4_0N;
    const int64_t nb = n / 32, G = n_groups(t, n);
    const int bpg = blocks_per_group(t);
    const size_t xgb = x_group_bytes(t);
    uint8_t *base = xp;
    float *dx = (float *)(base + (size_t)G * xgb);
    const __m128i K = _mm_set1_epi8((char)(q4 ? 8 : 128));
    enum { CH = 16 }; /* blocks per sl_act_prepare call (a multiple of 4 and of 2) */
    sl_block_q8_0 q[CH];
    for (int64_t b0 = 0; b0 < G * bpg; b0 += CH) {
        const int cnt = nb - b0 < CH ? (nb - b0 > 0 ? (int)(nb - b0) : 0) : CH, have = (int)(G * bpg - b0) < CH ? (int)(G * bpg - b0) : CH;
        if (cnt > 0) sl_act_prepare(SL_TYPE_Q8_0, x + b0 * 32, (int64_t)cnt * 32, q); /* the matrices path's Q8_0 x */
        memset(q + cnt, 0, (size_t)(CH - cnt) * sizeof(sl_block_q8_0)); /* padding blocks: x = 0, d_x = 0 */
        for (int j = 0; j < have; j++) dx[b0 + j] = j < cnt ? _cvtsh_ss(q[j].d) : 0.0f;
        for (int gb = 0; gb < have; gb += bpg) {
            uint8_t *xg = base + (size_t)((b0 + gb) / bpg) * xgb;
            __m128i a[4], rows[4], nc[4];
            for (int half = 0; half < (q4 ? 2 : 1); half++) {
                for (int k = 0; k < 4; k++)
                    a[k] = _mm_loadu_si128((const __m128i *)(q4 ? q[gb + k].qs + 16 * half : q[gb + k / 2].qs + 16 * (k % 2)));
                transpose4x4(a, rows);
                for (int r = 0; r < 4; r++) {
                    _mm_storeu_si128((__m128i *)(xg + 64 * half + 16 * r), rows[r]);
                    const __m128i d = _mm_dpbusd_epi32(_mm_setzero_si128(), K, rows[r]);
                    nc[r] = half ? _mm_add_epi32(nc[r], d) : d;
                }
            }
            for (int r = 0; r < 4; r++) _mm_storeu_si128((__m128i *)(xg + xgb - 64 + 16 * r), _mm_sub_epi32(_mm_setzero_si128(), nc[r]));
        }
    }
}

/* Line g of each next row (values), and line g of its scales while there are any (to L2: these
 * rows are used one group of neurons later). */
BN_INLINE void prefetch_line(const uint8_t *const *next, int nnext, int64_t G, int64_t scale_bytes, int64_t g) {
    for (int r = 0; r < nnext; r++) {
        _mm_prefetch((const char *)next[r] + (size_t)g * 64, _MM_HINT_T1);
        if (g * 64 < scale_bytes) _mm_prefetch((const char *)next[r] + (size_t)(G + g) * 64, _MM_HINT_T1);
    }
}

BN_INLINE __mmask16 first(int cnt) { return cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1); }

/* 16 f16 scales at s (cnt <= 16 of them; the rest 0) as f32. */
BN_INLINE __m512 scales16(const uint8_t *s, int cnt) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(cnt), s)); }

/* ---- dot --------------------------------------------------------------------------------------- */

/* Rows in chunks of 16 blocks: the scales d_w * d_x of a chunk go to a table laid out as the
 * lanes of one load need them (Q4_0N: blocks 0..3 of a group in each 128-bit lane; Q8_0N:
 * block 0, 0, 1, 1), and each group broadcasts its 128 bits from there. */
BN_INLINE void bn_dot(const sl_type T, const int NR, const uint8_t *const *rows, const uint8_t *xp, int64_t n, float *out,
                      const uint8_t *const *next, int nnext) {
    const bool q4 = T == SL_TYPE_Q4_0N;
    const int bpg = q4 ? 4 : 2;
    const int64_t G = n_groups(T, n), nbp = bpg * G, gpc = 16 / bpg; /* groups per chunk */
    const size_t xgb = q4 ? 192 : 128;
    const float *dx = (const float *)(xp + (size_t)G * xgb);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    _Alignas(64) float sc[8][32];
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < G; g0 += gpc) {
        const int cnt = nbp - bpg * g0 < 16 ? (int)(nbp - bpg * g0) : 16;
        const __m512 dxv = _mm512_maskz_loadu_ps(first(cnt), dx + bpg * g0);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m512 s = _mm512_mul_ps(scales16(rows[r] + (size_t)G * 64 + 2 * bpg * g0, cnt), dxv);
            if (q4) {
                _mm512_store_ps(sc[r], s);
            } else {
                const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                _mm512_store_ps(sc[r], _mm512_permutexvar_ps(lo, s));
                _mm512_store_ps(sc[r] + 16, _mm512_permutexvar_ps(_mm512_add_epi32(lo, _mm512_set1_epi32(8)), s));
            }
        }
        const int64_t g1 = g0 + gpc < G ? g0 + gpc : G;
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *xg = xp + (size_t)g * xgb;
            const __m512i x0 = _mm512_loadu_si512(xg), x1 = _mm512_loadu_si512(xg + 64);
            const __m512i nc = q4 ? _mm512_loadu_si512(xg + 128) : x1;
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                const __m512i w = _mm512_loadu_si512(rows[r] + (size_t)g * 64);
                __m512i d;
                if (q4)
                    d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, _mm512_and_si512(w, m4), x0),
                                            _mm512_and_si512(_mm512_srli_epi16(w, 4), m4), x1);
                else
                    d = _mm512_dpbusd_epi32(nc, w, x0);
                const __m512 s = _mm512_broadcast_f32x4(_mm_load_ps(&sc[r][4 * (g - g0)]));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc[r]);
            }
            prefetch_line(next, nnext, G, 2 * nbp, g);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}


void sl_bn_dot_rows_avx512(sl_type t, const uint8_t *const *rows, int nr, const void *xp, int64_t n, float *out,
                           const uint8_t *const *next, int nnext) {
    if (t == SL_TYPE_Q4_0N) SP_NR_CASES(nr, bn_dot, SL_TYPE_Q4_0N, rows, xp, n, out, next, nnext)
    SP_NR_CASES(nr, bn_dot, SL_TYPE_Q8_0N, rows, xp, n, out, next, nnext)
}

/* ---- axpy -------------------------------------------------------------------------------------- */

/* The 4 rows' bytes of one group, interleaved: p[m] lane 4t + e = (r0, r1, r2, r3) byte
 * 16t + 4m + e of each row (Q4_0N: value byte 4t + e of block m; Q8_0N: element 16m + 4t + e). */
BN_INLINE void interleave4(const uint8_t *const *rows, size_t off, __m512i p[4]) {
    const __m512i r0 = _mm512_loadu_si512(rows[0] + off), r1 = _mm512_loadu_si512(rows[1] + off);
    const __m512i r2 = _mm512_loadu_si512(rows[2] + off), r3 = _mm512_loadu_si512(rows[3] + off);
    const __m512i a = _mm512_unpacklo_epi8(r0, r1), b = _mm512_unpackhi_epi8(r0, r1);
    const __m512i c = _mm512_unpacklo_epi8(r2, r3), d = _mm512_unpackhi_epi8(r2, r3);
    p[0] = _mm512_unpacklo_epi16(a, c);
    p[1] = _mm512_unpackhi_epi16(a, c);
    p[2] = _mm512_unpacklo_epi16(b, d);
    p[3] = _mm512_unpackhi_epi16(b, d);
}

/* y[0..16) += S * (bias + sum over the sets of 4 rows of k . v), integers until the last step. */
BN_INLINE void add16(float *y, float S, __m512i acc) {
    _mm512_storeu_ps(y, _mm512_fmadd_ps(_mm512_set1_ps(S), _mm512_cvtepi32_ps(acc), _mm512_loadu_ps(y)));
}

/* Element m of a group (Q4_0N: block m, 32 columns; Q8_0N: columns 16m..16m+15). */
BN_INLINE void bn_part(const sl_type T, const int NS, __m512i p[2][4], int m, int32_t bias, int32_t k0, int32_t k1, float S,
                       float *y) {
    __m512i lo = _mm512_set1_epi32(bias), hi = lo;
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) {
        const __m512i kv = _mm512_set1_epi32(s ? k1 : k0);
        if (T == SL_TYPE_Q4_0N) {
            const __m512i m4 = _mm512_set1_epi8(0x0f);
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(p[s][m], m4), kv);
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(p[s][m], 4), m4), kv);
        } else {
            lo = _mm512_dpbusd_epi32(lo, p[s][m], kv);
        }
    }
    add16(y, S, lo);
    if (T == SL_TYPE_Q4_0N) add16(y + 16, S, hi);
}

/* NS sets of 4 rows (rows padded to 4 * NS by the caller, their coefficients 0). */
BN_INLINE void bn_axpy(const sl_type T, const int NS, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                       const uint8_t *const *next, int nnext) {
    const bool q4 = T == SL_TYPE_Q4_0N;
    const int bpg = q4 ? 4 : 2;
    const int64_t nb = n / 32, G = n_groups(T, n), nbp = bpg * G, gpc = 16 / bpg;
    const int32_t K = q4 ? 8 : 128; /* offset of the unsigned values */
    _Alignas(64) int32_t kd[2][16], bias[16];
    _Alignas(64) float S[16];
    for (int64_t g0 = 0; g0 < G; g0 += gpc) {
        const int cnt = nbp - bpg * g0 < 16 ? (int)(nbp - bpg * g0) : 16;
        /* the coefficients of 16 blocks: c_r = a_r d_r, rounded against S = max |c| / 127 */
        __m512 c[8], mx = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int r = 0; r < 4 * NS; r++) {
            c[r] = _mm512_mul_ps(scales16(rows[r] + (size_t)G * 64 + 2 * bpg * g0, cnt), _mm512_set1_ps(a[r]));
            mx = _mm512_max_ps(mx, _mm512_abs_ps(c[r]));
        }
        const __mmask16 pos = _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 inv = _mm512_maskz_div_ps(pos, _mm512_set1_ps(127.0f), mx);
        _mm512_store_ps(S, _mm512_div_ps(mx, _mm512_set1_ps(127.0f)));
        __m512i ksum = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int s = 0; s < NS; s++) {
            __m512i packed = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const __m512i k = _mm512_cvtps_epi32(_mm512_mul_ps(c[4 * s + i], inv));
                ksum = _mm512_add_epi32(ksum, k);
                packed = _mm512_or_si512(packed, _mm512_slli_epi32(_mm512_and_si512(k, _mm512_set1_epi32(0xff)), 8 * i));
            }
            _mm512_store_si512(kd[s], packed);
        }
        _mm512_store_si512(bias, _mm512_mullo_epi32(ksum, _mm512_set1_epi32(-K)));
        const int64_t g1 = g0 + gpc < G ? g0 + gpc : G;
        for (int64_t g = g0; g < g1; g++) {
            __m512i p[2][4];
#pragma GCC unroll 2
            for (int s = 0; s < NS; s++) interleave4(rows + 4 * s, (size_t)g * 64, p[s]);
            prefetch_line(next, nnext, G, 2 * nbp, g);
            const int b0 = bpg * (int)(g - g0); /* first block of the group within the chunk */
            float *yg = y + 32 * bpg * g;
            /* parts m of the group: Q4_0N block m; Q8_0N columns 16m.. of block m / 2 */
            const int parts = nb - bpg * g >= bpg ? 4 : q4 ? (int)(nb - bpg * g) : 2; /* padding blocks have no columns */
            if (parts == 4) { /* unrolled, so p[][] stays in registers */
#pragma GCC unroll 4
                for (int m = 0; m < 4; m++) {
                    const int bi = b0 + (q4 ? m : m / 2);
                    bn_part(T, NS, p, m, bias[bi], kd[0][bi], kd[1][bi], S[bi], yg + (q4 ? 32 : 16) * m);
                }
            } else {
                for (int m = 0; m < parts; m++) {
                    const int bi = b0 + (q4 ? m : m / 2);
                    bn_part(T, NS, p, m, bias[bi], kd[0][bi], kd[1][bi], S[bi], yg + (q4 ? 32 : 16) * m);
                }
            }
        }
    }
}

void sl_bn_axpy_rows_avx512(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                            const uint8_t *const *next, int nnext) {
    if (nr < 1) return;
    const uint8_t *rp[8];
    float ap[8];
    const int ns = nr > 4 ? 2 : 1;
    for (int r = 0; r < 4 * ns; r++) {
        rp[r] = r < nr ? rows[r] : rows[0]; /* padding rows: any valid row, coefficient 0 */
        ap[r] = r < nr ? a[r] : 0.0f;
    }
    if (t == SL_TYPE_Q4_0N) {
        if (ns == 2) bn_axpy(SL_TYPE_Q4_0N, 2, rp, ap, y, n, next, nnext);
        else bn_axpy(SL_TYPE_Q4_0N, 1, rp, ap, y, n, next, nnext);
    } else {
        if (ns == 2) bn_axpy(SL_TYPE_Q8_0N, 2, rp, ap, y, n, next, nnext);
        else bn_axpy(SL_TYPE_Q8_0N, 1, rp, ap, y, n, next, nnext);
    }
}
