/*
 * sparse_rows_avx512.c — AVX-512 row-group kernels of the sparse MLP (see sparse_mlp.h,
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
 * Quantized rows (Q8_0/Q4_0) borrow from the dense matvec kernel (kernels/matmul_avx512.c): x
 * is prepared once per call into its own layout (sl_sp_x_prep_avx512: the Q8_0 values, each
 * block's offset correction and its f32 scale), and the weight scales of the group's rows are
 * fetched 16 blocks at a time with one gather per row into a small table (already multiplied
 * by d_x, or by the axpy coefficient), so the inner loop broadcasts them from memory instead of
 * converting a half per block and row (that was ~10% of a gathered Q4_0 call). Measured on
 * Zen 4, what did not work: a scale prepass over the whole row in the dot (it demands all the
 * group's lines at once and stalls: 25% slower), and scalar copies of the halves into the table
 * (re-reading 16 two-byte stores as one vector fails store forwarding). Q4_0 is unpacked for
 * the dot without a shift (both halves of a ymm get the 16 bytes; masks 0x0f / 0xf0 make the
 * high half 16x too large, fixed by one exact 1/16 scale of the accumulator's high lanes), and
 * for the axpy as unsigned nibbles, its -8 folded into one subtraction per block for all rows.
 *
 * Rows in the neuron-bundle layouts (Q4_0N, Q8_0N) are handed to bundle_rows_avx512.c.
 *
 * Compiled with the AVX-512 flags (Makefile: *_avx512.c); called only when the kernels' variant
 * in use is AVX-512 (so forcing scalar kernels also forces the per-row fallback here).
 */
#include "kernels/sparse_rows.h"
#include "kernels/kernels_impl.h"

#include "kernels/kernels.h"
#include "format/quant.h"

#include <immintrin.h>

#define SP_INLINE static inline __attribute__((always_inline))

/* Software prefetches of coming rows go to L2 (T1): measured against T0 (L1) on Zen 4, T1 was
 * 5% faster for gathered Q4_0 rows at 10% active, 15% at 50%, and 12% for F16 at 50%. */
#define SP_PF_HINT _MM_HINT_T1

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

/* ---- prepared input for quantized rows ------------------------------------------------------
 * [nb x 32 int8: the Q8_0 values of x][nb x 8 int32: -K . x per lane][nb f32: block scales],
 * K the unsigned offset of the weights per lane: Q8_0 128 (w xor 0x80); Q4_0 8 in lanes 0..3
 * (low nibbles) and 16 * 8 in lanes 4..7 (high nibbles masked in place, 16x too large). The
 * values are those of sl_act_prepare (it is called on chunks of whole blocks, which quantizes
 * identically). Float types use sl_act_prepare's form unchanged. */
#define QX_BYTES_PER_BLOCK (32 + 32 + 4)

static bool is_quant(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0; }

size_t sl_sp_x_size_avx512(sl_type t, int64_t n) {
    if (sl_is_bundle_layout(t)) return sl_bn_x_size_avx512(t, n);
    return is_quant(t) ? (size_t)(n / 32) * (size_t)QX_BYTES_PER_BLOCK : sl_act_size(t, n);
}

/* Lane offsets K (see above). */
SP_INLINE __m256i qoffset(sl_type t) {
    if (t == SL_TYPE_Q8_0) return _mm256_set1_epi8((char)0x80);
    return _mm256_setr_epi64x(0x0808080808080808LL, 0x0808080808080808LL, (long long)0x8080808080808080ULL,
                              (long long)0x8080808080808080ULL);
}

void sl_sp_x_prep_avx512(sl_type t, const float *x, int64_t n, void *xp) {
    if (sl_is_bundle_layout(t)) {
        sl_bn_x_prep_avx512(t, x, n, xp);
        return;
    }
    if (!is_quant(t)) {
        sl_act_prepare(t, x, n, xp);
        return;
    }
    const int64_t nb = n / 32;
    int8_t *qs = xp;
    int32_t *negc = (int32_t *)(qs + nb * 32);
    float *dx = (float *)(qs + nb * 64);
    const __m256i K = qoffset(t);
    enum { CH = 16 }; /* blocks per sl_act_prepare call */
    sl_block_q8_0 tmp[CH];
    for (int64_t i0 = 0; i0 < nb; i0 += CH) {
        const int64_t cnt = nb - i0 < CH ? nb - i0 : CH;
        sl_act_prepare(t, x + i0 * 32, cnt * 32, tmp);
        for (int64_t j = 0; j < cnt; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)tmp[j].qs);
            _mm256_storeu_si256((__m256i *)(qs + (i0 + j) * 32), v);
            _mm256_storeu_si256((__m256i *)(negc + (i0 + j) * 8),
                                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), K, v)));
            dx[i0 + j] = _cvtsh_ss(tmp[j].d);
        }
    }
}

/* Block i of a quantized row as unsigned bytes with offset K (qoffset): Q8_0 w xor 0x80; Q4_0
 * the 16 bytes in both halves, masked to the low nibbles (lanes 0..3) and high nibbles in place. */
SP_INLINE __m256i qblock_k(sl_type t, const uint8_t *row, int64_t i) {
    if (t == SL_TYPE_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)((const sl_block_q8_0 *)row + i)->qs),
                                _mm256_set1_epi8((char)0x80));
    const __m256i nib = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fLL, 0x0f0f0f0f0f0f0f0fLL, (long long)0xf0f0f0f0f0f0f0f0ULL,
                                           (long long)0xf0f0f0f0f0f0f0f0ULL);
    return _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const sl_block_q4_0 *)row + i)->qs)),
                            nib);
}

/* Blocks per scale table in the axpy (the dot uses 16): all of a down row at H = 2048 for
 * Q4_0. Down rows are contiguous and prefetched a group ahead, so a long table costs no stall
 * there (16-block tables measured the same); a run of the group's rows stays in L1 (8 rows x 64
 * Q4_0 blocks = 9 KB; 8 x 32 Q8_0 blocks = 8.7 KB). */
#define SP_RUN_MAX 64
SP_INLINE int qrun(sl_type t) { return t == SL_TYPE_Q8_0 ? 32 : 64; }

/* sc[i] = half scale of block i0 + i of row (cnt blocks) times mul[i] (or times m when mul is
 * NULL), 16 blocks per gather. */
SP_INLINE void qscales(sl_type t, const uint8_t *row, int64_t i0, int cnt, const float *mul, float m, float *sc) {
    const int bs = t == SL_TYPE_Q8_0 ? (int)sizeof(sl_block_q8_0) : (int)sizeof(sl_block_q4_0);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(bs));
    for (int i = 0; i < cnt; i += 16) {
        const __mmask16 k = cnt - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cnt - i)) - 1);
        /* 4 bytes at each block start: the half scale and the first two quants */
        const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, idx, row + (size_t)(i0 + i) * (size_t)bs, 1);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        const __m512 f = mul ? _mm512_maskz_loadu_ps(k, mul + i) : _mm512_set1_ps(m);
        _mm512_mask_storeu_ps(sc + i, k, _mm512_mul_ps(d, f));
    }
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
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, SP_PF_HINT);
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

/* 32 quants of a block as two f32 vectors: Q8_0 signed; Q4_0 the unsigned nibbles (0..15,
 * without the -8: callers add it as -8 times the scale). */
SP_INLINE void qblock_f32(sl_type t, const uint8_t *row, int64_t i, __m512 *lo, __m512 *hi) {
    if (t == SL_TYPE_Q8_0) {
        const int8_t *q = ((const sl_block_q8_0 *)row + i)->qs;
        *lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
        *hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 16))));
        return;
    }
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const sl_block_q4_0 *)row + i)->qs));
    *lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0x0f)));
    *hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
}

/* Quantized rows against x in the prepared layout: per block and row one vpdpbusd (starting
 * from the block's correction -K . x), a convert and an FMA with d_w * d_x. The scales of 16
 * blocks of every row are fetched first (one gather each) and multiplied by d_x, so the main
 * loop broadcasts them from a small table: converting each half on its own was ~10% of a call,
 * and a longer prepass (a whole row) demanded all of the group's lines at once and stalled. */
SP_INLINE void qdot(sl_type t, const int NR, const uint8_t *const *rows, const uint8_t *xp, int64_t n, float *out,
                    const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const int64_t nb = n / 32;
    const int8_t *qs = (const int8_t *)xp;
    const __m256i *negc = (const __m256i *)(xp + nb * 32);
    const float *dx = (const float *)(xp + nb * 64);
    _Alignas(64) float sc[8][16];
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i0 = 0; i0 < nb; i0 += 16) {
        const int cnt = nb - i0 < 16 ? (int)(nb - i0) : 16;
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) qscales(t, rows[r], i0, cnt, dx + i0, 0.0f, sc[r]);
        for (int i = 0; i < cnt; i++) {
            const int64_t bi = i0 + i;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(qs + bi * 32));
            const __m256i nc = _mm256_loadu_si256(negc + bi);
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                const __m256i d = _mm256_dpbusd_epi32(nc, qblock_k(t, rows[r], bi), xq);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_broadcast_ss(&sc[r][i]), acc[r]);
            }
            if (((bi * bs) & 63) < bs)
                for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + bi * bs, SP_PF_HINT);
        }
    }
    if (t == SL_TYPE_Q4_0) {
        const __m256 fix = _mm256_setr_ps(1, 1, 1, 1, 1.0f / 16, 1.0f / 16, 1.0f / 16, 1.0f / 16);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) acc[r] = _mm256_mul_ps(acc[r], fix);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) out[r] = hsum256(acc[r]);
}
void sl_sp_dot_rows_avx512(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                           const uint8_t *const *next, int nnext) {
    if (sl_is_bundle_layout(t)) {
        sl_bn_dot_rows_avx512(t, rows, nr, x, n, out, next, nnext);
        return;
    }
    if (sl_kq_type(t)) { /* types without a row-group kernel here: row by row (x in sl_act_prepare form) */
        sl_sp_dot_rows_ref(t, rows, nr, x, n, out, next, nnext);
        return;
    }
    if (t == SL_TYPE_Q8_0) SP_NR_CASES(nr, qdot, SL_TYPE_Q8_0, rows, x, n, out, next, nnext)
    if (t == SL_TYPE_Q4_0) SP_NR_CASES(nr, qdot, SL_TYPE_Q4_0, rows, x, n, out, next, nnext)
    /* one instantiation per (type, NR) so the inner loop has no type switch */
    if (t == SL_TYPE_F32) SP_NR_CASES(nr, fdot, SL_TYPE_F32, rows, x, n, out, next, nnext)
    if (t == SL_TYPE_F16) SP_NR_CASES(nr, fdot, SL_TYPE_F16, rows, x, n, out, next, nnext)
    SP_NR_CASES(nr, fdot, SL_TYPE_BF16, rows, x, n, out, next, nnext)
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
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, SP_PF_HINT);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + k);
        #pragma GCC unroll 8
        for (int r = 0; r < NR; r++) yv = _mm512_fmadd_ps(av[r], load16_mask(t, rows[r], k, m), yv);
        _mm512_mask_storeu_ps(y + k, m, yv);
    }
}

/* Quantized rows: y += sum_r (a[r] * d_r) * q_r, block by block, the a[r] * d_r of a run of
 * blocks precomputed (qscales). Q4_0's -8 is one subtraction per block for all rows:
 * y -= 8 * sum_r a[r] d_r. */
SP_INLINE void qaxpy(sl_type t, const int NR, const uint8_t *const *rows, const float *a, float *y, int64_t n,
                     const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const int64_t nb = n / 32;
    const int run = qrun(t);
    _Alignas(64) float sc[8][SP_RUN_MAX], bias[SP_RUN_MAX];
    for (int64_t i0 = 0; i0 < nb; i0 += run) {
        const int cnt = nb - i0 < run ? (int)(nb - i0) : run;
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) qscales(t, rows[r], i0, cnt, NULL, a[r], sc[r]);
        if (t == SL_TYPE_Q4_0)
            for (int i = 0; i < cnt; i += 16) {
                const __mmask16 k = cnt - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cnt - i)) - 1);
                __m512 s = _mm512_maskz_loadu_ps(k, &sc[0][i]);
#pragma GCC unroll 8
                for (int r = 1; r < NR; r++) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(k, &sc[r][i]));
                _mm512_mask_storeu_ps(&bias[i], k, _mm512_mul_ps(s, _mm512_set1_ps(-8.0f)));
            }
        for (int i = 0; i < cnt; i++) {
            const int64_t bi = i0 + i;
            __m512 y0 = _mm512_loadu_ps(y + 32 * bi), y1 = _mm512_loadu_ps(y + 32 * bi + 16);
            if (t == SL_TYPE_Q4_0) {
                const __m512 b = _mm512_set1_ps(bias[i]);
                y0 = _mm512_add_ps(y0, b);
                y1 = _mm512_add_ps(y1, b);
            }
#pragma GCC unroll 8
            for (int r = 0; r < NR; r++) {
                __m512 lo, hi;
                qblock_f32(t, rows[r], bi, &lo, &hi);
                const __m512 s = _mm512_set1_ps(sc[r][i]);
                y0 = _mm512_fmadd_ps(s, lo, y0);
                y1 = _mm512_fmadd_ps(s, hi, y1);
            }
            _mm512_storeu_ps(y + 32 * bi, y0);
            _mm512_storeu_ps(y + 32 * bi + 16, y1);
            if (((bi * bs) & 63) < bs)
                for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + bi * bs, SP_PF_HINT);
        }
    }
}

void sl_sp_axpy_rows_avx512(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                            const uint8_t *const *next, int nnext) {
    if (sl_is_bundle_layout(t)) {
        sl_bn_axpy_rows_avx512(t, rows, a, nr, y, n, next, nnext);
        return;
    }
    if (sl_kq_type(t)) {
        sl_sp_axpy_rows_ref(t, rows, a, nr, y, n, next, nnext);
        return;
    }
    if (t == SL_TYPE_Q8_0) SP_NR_CASES(nr, qaxpy, SL_TYPE_Q8_0, rows, a, y, n, next, nnext)
    if (t == SL_TYPE_Q4_0) SP_NR_CASES(nr, qaxpy, SL_TYPE_Q4_0, rows, a, y, n, next, nnext)
    if (t == SL_TYPE_F32) SP_NR_CASES(nr, faxpy, SL_TYPE_F32, rows, a, y, n, next, nnext)
    if (t == SL_TYPE_F16) SP_NR_CASES(nr, faxpy, SL_TYPE_F16, rows, a, y, n, next, nnext)
    SP_NR_CASES(nr, faxpy, SL_TYPE_BF16, rows, a, y, n, next, nnext)
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
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, SP_PF_HINT);
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

/* Quantized rows x NT tokens (x_b in the prepared layout, xs bytes apart). */
SP_INLINE void qdot_tile(sl_type t, const int NR, const int NT, const uint8_t *const *rows, const uint8_t *x, size_t xs,
                         int64_t n, float *out, int ostride, const uint8_t *const *next, int nnext) {
    const size_t bs = t == SL_TYPE_Q8_0 ? sizeof(sl_block_q8_0) : sizeof(sl_block_q4_0);
    const int64_t nb = n / 32;
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) acc[r][b] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i w[4];
        float dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            w[r] = qblock_k(t, rows[r], i);
            dw[r] = _cvtsh_ss(*(const uint16_t *)(rows[r] + (size_t)i * bs)); /* d is the block's first field */
        }
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            const uint8_t *xb = x + (size_t)b * xs;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(xb + i * 32));
            const __m256i nc = _mm256_loadu_si256((const __m256i *)(xb + nb * 32) + i);
            const float dx = ((const float *)(xb + nb * 64))[i];
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const __m256i s = _mm256_dpbusd_epi32(nc, w[r], xq);
                acc[r][b] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), _mm256_cvtepi32_ps(s), acc[r][b]);
            }
        }
        if (((i * bs) & 63) < bs)
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, SP_PF_HINT);
    }
    if (t == SL_TYPE_Q4_0) {
        const __m256 fix = _mm256_setr_ps(1, 1, 1, 1, 1.0f / 16, 1.0f / 16, 1.0f / 16, 1.0f / 16);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int b = 0; b < NT; b++) acc[r][b] = _mm256_mul_ps(acc[r][b], fix);
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
    default: return; /* the kq types never get here (sl_sp_dot_rows_batch_*) */
    }
}
#undef SP_TILE_NR
#undef SP_TILE_NT

void sl_sp_dot_rows_batch_avx512(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb,
                                 int64_t n, float *out, const uint8_t *const *next, int nnext) {
    if (sl_kq_type(t)) { /* types without a tile kernel here: row by row (x in sl_act_prepare form) */
        sl_sp_dot_rows_batch_ref(t, rows, nr, x, xs, nb, n, out, next, nnext);
        return;
    }
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
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + k * es, SP_PF_HINT);
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
            const float d = _cvtsh_ss(*(const uint16_t *)(rows[r] + (size_t)i * bs)); /* d is the block's first field */
            const __m512 dv = _mm512_set1_ps(d);
            __m512 lo, hi;
            qblock_f32(t, rows[r], i, &lo, &hi);
            if (t == SL_TYPE_Q4_0) { /* d * (q - 8) */
                const __m512 off = _mm512_set1_ps(-8.0f * d);
                w0[r] = _mm512_fmadd_ps(dv, lo, off);
                w1[r] = _mm512_fmadd_ps(dv, hi, off);
            } else {
                w0[r] = _mm512_mul_ps(dv, lo);
                w1[r] = _mm512_mul_ps(dv, hi);
            }
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
            for (int r = 0; r < nnext; r++) _mm_prefetch((const char *)next[r] + i * bs, SP_PF_HINT);
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
    default: sl_sp_axpy_rows_batch_ref(t, rows, nr, a, astride, nb, y, ys, n, next, nnext); return;
    }
#undef SP_AB
}
