/*
 * sparse_q4_0n_avx512.c — AVX-512 row-group kernels for Q4_0 rows in the neuron-bundle layout
 * Q4_0N (quant.h): the dot of up to 8 gate/up rows with one prepared input, and the sum of up
 * to 8 scaled down rows into one accumulator. The scalar definitions they must reproduce are in
 * sparse_q4_0n_ref.c; sparse_mlp_avx512.c routes SL_TYPE_Q4_0N here.
 *
 * Why a layout of its own: on Zen 4 the gathered Q4_0 kernels of sparse_mlp_avx512.c were
 * compute-bound at 13-15 GB/s even with every row in cache (one 16-byte block per row and
 * instruction, a gather per 16 scales), below the ~20 GB/s one core streams from memory. In
 * Q4_0N one 512-bit load brings 4 blocks whose 32-bit lanes are already grouped by block, and
 * the 4 scales are contiguous, so per 4 blocks and row the dot is: load, 3 logic ops, 2
 * vpdpbusd, a convert and one FMA against the 4 scales broadcast from a small table.
 *
 * The down sum is integer too. A float axpy needs, per weight, its unpacking, a convert and an
 * FMA (about 6 vector ops per block and row). Here the coefficients c_r = a_r * d_r,b of the
 * call's rows in block b are rounded to int8 against their common scale S_b = max_r |c_r| / 127
 * (as ggml rounds activations to Q8_0 before an integer dot), 4 rows are interleaved bytewise
 * (unpack epi8 / epi16: lane j of the result holds the 4 rows' value byte j), and one vpdpbusd
 * per 16 columns sums 4 rows at once; one convert and one FMA by S_b per 16 columns follow,
 * shared by all rows. About 2.5 vector ops per block and row. The rounding this adds is
 * bounded in sparse_mlp.h (sl_sp_axpy_rows_q4_0n_ref) and tested.
 *
 * What it is not: a kernel for the file's Q4_0 rows (sparse_mlp_avx512.c) or for batches.
 * Compiled with the AVX-512 flags (F, BW, VL, VNNI); called only when that variant is in use.
 */
#include "sparse_mlp.h"

#include "kernels/kernels.h"
#include "quant.h"

#include <immintrin.h>
#include <string.h>

#define Q4N_INLINE static inline __attribute__((always_inline))

/* Prepared input: per group of 4 blocks, 64 bytes of x's low halves and 64 bytes of its high
 * halves, in the weights' byte order, then 16 int32 offset corrections (-8 * the sum of x over
 * each lane's 8 bytes); after all groups, every block's f32 scale d_x. */
#define Q4N_XG_BYTES 192

static int64_t n_groups(int64_t n) { return (n / 32 + 3) / 4; }

size_t sl_q4n_x_size_avx512(int64_t n) { return (size_t)n_groups(n) * (Q4N_XG_BYTES + 16); }

void sl_q4n_x_prep_avx512(const float *x, int64_t n, void *xp) {
    const int64_t nb = n / 32, G = n_groups(n);
    uint8_t *base = xp;
    float *dx = (float *)(base + (size_t)G * Q4N_XG_BYTES);
    enum { CH = 4 };
    sl_block_q8_0 q[CH];
    for (int64_t g = 0; g < G; g++) {
        const int cnt = nb - 4 * g < CH ? (int)(nb - 4 * g) : CH;
        memset(q, 0, sizeof(q));
        sl_act_prepare(SL_TYPE_Q4_0, x + 4 * g * 32, (int64_t)cnt * 32, q); /* the matrices path's Q8_0 x */
        int8_t *lo = (int8_t *)(base + (size_t)g * Q4N_XG_BYTES), *hi = lo + 64;
        int32_t *nc = (int32_t *)(lo + 128);
        for (int t = 0; t < 4; t++)
            for (int k = 0; k < 4; k++) {
                int32_t s = 0;
                for (int e = 0; e < 4; e++) {
                    lo[16 * t + 4 * k + e] = q[k].qs[4 * t + e];
                    hi[16 * t + 4 * k + e] = q[k].qs[16 + 4 * t + e];
                    s += q[k].qs[4 * t + e] + q[k].qs[16 + 4 * t + e];
                }
                nc[4 * t + k] = -8 * s;
            }
        for (int k = 0; k < 4; k++) dx[4 * g + k] = k < cnt ? _cvtsh_ss(q[k].d) : 0.0f;
    }
}

/* Line g of each next row: its values, and while there are any, line g of its scales (to L2:
 * these rows are used one group of neurons later). */
Q4N_INLINE void prefetch_line(const uint8_t *const *next, int nnext, int64_t G, int64_t g) {
    for (int r = 0; r < nnext; r++) {
        _mm_prefetch((const char *)next[r] + (size_t)g * 64, _MM_HINT_T1);
        if (g * 64 < G * 8) _mm_prefetch((const char *)next[r] + (size_t)(G + g) * 64, _MM_HINT_T1);
    }
}

/* 16 f16 scales at s (cnt <= 16 of them; the rest 0) as f32. */
Q4N_INLINE __m512 scales16(const uint8_t *s, int cnt) {
    const __mmask16 k = cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, s));
}

Q4N_INLINE void q4n_dot(const int NR, const uint8_t *const *rows, const uint8_t *xp, int64_t n, float *out,
                        const uint8_t *const *next, int nnext) {
    const int64_t G = n_groups(n), nb4 = 4 * G;
    const float *dx = (const float *)(xp + (size_t)G * Q4N_XG_BYTES);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    _Alignas(64) float sc[8][16];
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        const int cnt = nb4 - 4 * g0 < 16 ? (int)(nb4 - 4 * g0) : 16;
        const __m512 dxv = _mm512_maskz_loadu_ps(cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1), dx + 4 * g0);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++)
            _mm512_store_ps(sc[r], _mm512_mul_ps(scales16(rows[r] + (size_t)G * 64 + 8 * g0, cnt), dxv));
        const int64_t g1 = g0 + 4 < G ? g0 + 4 : G;
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *xg = xp + (size_t)g * Q4N_XG_BYTES;
            const __m512i xlo = _mm512_loadu_si512(xg), xhi = _mm512_loadu_si512(xg + 64), nc = _mm512_loadu_si512(xg + 128);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                const __m512i w = _mm512_loadu_si512(rows[r] + (size_t)g * 64);
                const __m512i lo = _mm512_and_si512(w, m4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, lo, xlo), hi, xhi);
                const __m512 s = _mm512_broadcast_f32x4(_mm_load_ps(&sc[r][4 * (g - g0)]));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc[r]);
            }
            prefetch_line(next, nnext, G, g);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

void sl_q4n_dot_rows_avx512(const uint8_t *const *rows, int nr, const void *xp, int64_t n, float *out,
                            const uint8_t *const *next, int nnext) {
    switch (nr) {
    case 8: q4n_dot(8, rows, xp, n, out, next, nnext); return;
    case 7: q4n_dot(7, rows, xp, n, out, next, nnext); return;
    case 6: q4n_dot(6, rows, xp, n, out, next, nnext); return;
    case 5: q4n_dot(5, rows, xp, n, out, next, nnext); return;
    case 4: q4n_dot(4, rows, xp, n, out, next, nnext); return;
    case 3: q4n_dot(3, rows, xp, n, out, next, nnext); return;
    case 2: q4n_dot(2, rows, xp, n, out, next, nnext); return;
    default: q4n_dot(1, rows, xp, n, out, next, nnext); return;
    }
}

/* The 4 rows' bytes of one group, interleaved: p[k] lane j = (r0, r1, r2, r3) value byte j of
 * block k of the group (lane j of 128-bit lane t is byte 16t + 4k + j % 4 of each row). */
Q4N_INLINE void interleave4(const uint8_t *const *rows, size_t off, __m512i p[4]) {
    const __m512i r0 = _mm512_loadu_si512(rows[0] + off), r1 = _mm512_loadu_si512(rows[1] + off);
    const __m512i r2 = _mm512_loadu_si512(rows[2] + off), r3 = _mm512_loadu_si512(rows[3] + off);
    const __m512i a = _mm512_unpacklo_epi8(r0, r1), b = _mm512_unpackhi_epi8(r0, r1);
    const __m512i c = _mm512_unpacklo_epi8(r2, r3), d = _mm512_unpackhi_epi8(r2, r3);
    p[0] = _mm512_unpacklo_epi16(a, c);
    p[1] = _mm512_unpackhi_epi16(a, c);
    p[2] = _mm512_unpacklo_epi16(b, d);
    p[3] = _mm512_unpackhi_epi16(b, d);
}

/* Block k of a group: y[0..32) += S * (bias + sum over sets of the rows' k . q), in integers
 * until the last step. */
Q4N_INLINE void q4n_block(const int NS, __m512i p[2][4], int k, int32_t bias, int32_t k0, int32_t k1, float S, float *yb) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_set1_epi32(bias), hi = lo;
#pragma GCC unroll 2
    for (int s = 0; s < NS; s++) {
        const __m512i kv = _mm512_set1_epi32(s ? k1 : k0);
        lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(p[s][k], m4), kv);
        hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(p[s][k], 4), m4), kv);
    }
    const __m512 sv = _mm512_set1_ps(S);
    _mm512_storeu_ps(yb, _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(lo), _mm512_loadu_ps(yb)));
    _mm512_storeu_ps(yb + 16, _mm512_fmadd_ps(sv, _mm512_cvtepi32_ps(hi), _mm512_loadu_ps(yb + 16)));
}

/* NS sets of 4 rows (rows padded to 4 * NS by the caller, their coefficients 0). */
Q4N_INLINE void q4n_axpy(const int NS, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                         const uint8_t *const *next, int nnext) {
    const int64_t nb = n / 32, G = n_groups(n), nb4 = 4 * G;
    _Alignas(64) int32_t kd[2][16], bias[16];
    _Alignas(64) float S[16];
    for (int64_t g0 = 0; g0 < G; g0 += 4) {
        const int cnt = nb4 - 4 * g0 < 16 ? (int)(nb4 - 4 * g0) : 16;
        /* the coefficients of 16 blocks: c_r = a_r d_r, rounded against S = max |c| / 127 */
        __m512 c[8], m = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int r = 0; r < 4 * NS; r++) {
            c[r] = _mm512_mul_ps(scales16(rows[r] + (size_t)G * 64 + 8 * g0, cnt), _mm512_set1_ps(a[r]));
            m = _mm512_max_ps(m, _mm512_abs_ps(c[r]));
        }
        const __mmask16 pos = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 inv = _mm512_maskz_div_ps(pos, _mm512_set1_ps(127.0f), m);
        _mm512_store_ps(S, _mm512_div_ps(m, _mm512_set1_ps(127.0f)));
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
        _mm512_store_si512(bias, _mm512_mullo_epi32(ksum, _mm512_set1_epi32(-8)));
        const int64_t g1 = g0 + 4 < G ? g0 + 4 : G;
        for (int64_t g = g0; g < g1; g++) {
            __m512i p[2][4];
#pragma GCC unroll 2
            for (int s = 0; s < NS; s++) interleave4(rows + 4 * s, (size_t)g * 64, p[s]);
            prefetch_line(next, nnext, G, g);
            const float *Sg = S + 4 * (g - g0);
            const int32_t *bg = bias + 4 * (g - g0), *k0 = kd[0] + 4 * (g - g0), *k1 = kd[1] + 4 * (g - g0);
            float *yg = y + 128 * g;
            if (nb - 4 * g >= 4) { /* a whole group: unrolled, so p[][] stays in registers */
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) q4n_block(NS, p, k, bg[k], k0[k], k1[k], Sg[k], yg + 32 * k);
            } else { /* the last, partial group: padding blocks have no columns */
                for (int k = 0; k < nb - 4 * g; k++) q4n_block(NS, p, k, bg[k], k0[k], k1[k], Sg[k], yg + 32 * k);
            }
        }
    }
}

void sl_q4n_axpy_rows_avx512(const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                             const uint8_t *const *next, int nnext) {
    if (nr < 1) return;
    const uint8_t *rp[8];
    float ap[8];
    const int ns = nr > 4 ? 2 : 1;
    for (int r = 0; r < 4 * ns; r++) {
        rp[r] = r < nr ? rows[r] : rows[0]; /* padding rows: any valid row, coefficient 0 */
        ap[r] = r < nr ? a[r] : 0.0f;
    }
    if (ns == 2) q4n_axpy(2, rp, ap, y, n, next, nnext);
    else q4n_axpy(1, rp, ap, y, n, next, nnext);
}
