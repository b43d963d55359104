/*
 * quant_avx2.c — AVX2 kernels for the weight types of issue 19 (kernels_impl.h's kq_* entries:
 * Q4_1, Q5_0, Q5_1, IQ4_NL with Q8_0 / Q8_1 activations; Q2_K..Q6_K and IQ4_XS with Q8_K), used
 * by the AVX2 table and by the AVX-512 one (no machine with AVX-512 was at hand to test native
 * AVX-512 versions of these; AVX-512 CPUs run these AVX2 ones).
 *
 * One structure for every type: a block (a 256-element super-block, or a 32-element block) is
 * decoded once into eight (or one) vectors of 32 bytes — unsigned values where the type's values
 * are small and non-negative after an offset, signed values (|v| <= 127) otherwise — plus its
 * integer sub-block scales, and then meets NT tokens' activations (1..8; NT = 1 is the decode
 * matvec, NT > 1 the prompt's batches, so the decoding is shared by NT tokens). Per 32 values
 * and token: vpmaddubsw (unsigned x signed pairs, sums below 2^15) and vpmaddwd by the scales
 * give 8 exact int32 lanes. Offsets (Q3_K 4, Q6_K 32) are taken off once per super-block with the
 * activation block's sums of 16 (bsums), and minimums (Q2_K, Q4_K, Q5_K) the same way, so the
 * integer parts equal the reference's (dot_ref.c) exactly; only the float sums of the lanes are
 * reassociated. Signed values (IQ4, Q5_0) use the sign trick (|w| times x with w's sign).
 * Prompt batches: rows in blocks that stay in L2 while each group of 8 tokens meets them all, and
 * for Q4_K / Q5_K the 8 tokens' integer sums of a super-block reduced into one vector, so that the
 * float work per super-block is one vector op for all 8 tokens instead of 8.
 * What it is not: the reference (dot_ref.c) or a repacked layout.
 */
#include "kernels/simd_avx2.h"

#include <math.h>
#include <string.h>

#define NT_MAX 8
#define PF_ROWS 8 /* matvec: prefetch distance in rows */

/* ---- decoding ----------------------------------------------------------------------------------
 * A decoded block: 32-byte value vectors u[0..nc); the integer scales as int16 lanes, broadcast to
 * both 128-bit halves so that one byte shuffle per 32 values spreads them (s_lo: scales 0..7,
 * s_hi: 8..15 for the types with 16 sub-blocks); for the Q8_K types the int16 coefficients of the
 * 16 activation sums: corr = offset * scale (taken off isum) and mins (times dmin); float scales. */
typedef struct kblk {
    __m256i u[8];
    __m256i s_lo, s_hi, corr, mins;
    float d, dmin, m; /* m: Q4_1 / Q5_1 minimum */
} kblk;

static const int8_t iq4_table[32] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                     -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Byte shuffles spreading int16 scales over the 16 pair sums of 32 values (vpmaddubsw puts
 * values 0..15 in lanes 0..7, 16..31 in lanes 8..15): by32[c] repeats scale c in every lane;
 * by16[c] puts scale 2c in lanes 0..7 and 2c + 1 in lanes 8..15 (c < 4, within one 8-scale half). */
#define REP8(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
static const int8_t by32[8][32] = {
    {REP8(0, 1), REP8(0, 1)},     {REP8(2, 3), REP8(2, 3)},     {REP8(4, 5), REP8(4, 5)},     {REP8(6, 7), REP8(6, 7)},
    {REP8(8, 9), REP8(8, 9)},     {REP8(10, 11), REP8(10, 11)}, {REP8(12, 13), REP8(12, 13)}, {REP8(14, 15), REP8(14, 15)}};
static const int8_t by16[4][32] = {{REP8(0, 1), REP8(2, 3)}, {REP8(4, 5), REP8(6, 7)}, {REP8(8, 9), REP8(10, 11)}, {REP8(12, 13), REP8(14, 15)}};
#undef REP8

SL_INLINE bool sub32(sl_type T) { return T == SL_TYPE_Q4_K || T == SL_TYPE_Q5_K || T == SL_TYPE_IQ4_XS; }

/* The scale vector of chunk c (32 values). */
SL_INLINE __m256i chunk_scale(sl_type T, const kblk *k, int c) {
    if (sub32(T)) return _mm256_shuffle_epi8(k->s_lo, _mm256_loadu_si256((const __m256i *)by32[c]));
    return _mm256_shuffle_epi8(c < 4 ? k->s_lo : k->s_hi, _mm256_loadu_si256((const __m256i *)by16[c & 3]));
}

/* 16 int16 scales -> the two broadcast halves */
SL_INLINE void split16(kblk *k, __m256i sc) {
    k->s_lo = _mm256_permute2x128_si256(sc, sc, 0x00);
    k->s_hi = _mm256_permute2x128_si256(sc, sc, 0x11);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31). */
SL_INLINE __m256i nibbles32(const uint8_t *p) {
    const __m128i q = _mm_loadu_si128((const __m128i *)p), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* 0x10 in byte j where bit j of the 32-bit word is set. */
SL_INLINE __m256i fifth_bits(const uint8_t qh[4]) {
    uint32_t w;
    memcpy(&w, qh, 4);
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1)), _mm256_set1_epi8(0x10));
}

/* Super-block i of a Q8_K-paired row. */
SL_INLINE void decode_k(sl_type T, const uint8_t *row, int64_t i, kblk *k) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    if (T == SL_TYPE_Q4_K || T == SL_TYPE_Q5_K) {
        const bool five = T == SL_TYPE_Q5_K;
        const uint8_t *b = row + (size_t)i * (five ? sizeof(sl_block_q5_K) : sizeof(sl_block_q4_K));
        const uint8_t *qs = b + (five ? 48 : 16);
        uint16_t dh, mh;
        memcpy(&dh, b, 2);
        memcpy(&mh, b + 2, 2);
        k->d = _cvtsh_ss(dh), k->dmin = _cvtsh_ss(mh);
        /* 6-bit scales and mins -> bytes: scales 0..7 in u[0..1], mins 0..7 in u[2..3] */
        uint32_t ut[4];
        memcpy(ut, b + 4, 12);
        ut[3] = ((ut[2] >> 4) & 0x0f0f0f0f) | (((ut[1] >> 6) & 0x03030303) << 4);
        const uint32_t mins_lo = ut[1] & 0x3f3f3f3f;
        ut[1] = (ut[2] & 0x0f0f0f0f) | (((ut[0] >> 6) & 0x03030303) << 4);
        ut[2] = mins_lo;
        ut[0] &= 0x3f3f3f3f;
        const __m256i sm = _mm256_cvtepu8_epi16(_mm_set_epi32((int)ut[3], (int)ut[2], (int)ut[1], (int)ut[0]));
        k->s_lo = _mm256_permute2x128_si256(sm, sm, 0x00);
        const __m128i mn = _mm256_extracti128_si256(sm, 1);
        k->mins = _mm256_set_m128i(_mm_unpackhi_epi16(mn, mn), _mm_unpacklo_epi16(mn, mn));
        k->corr = _mm256_setzero_si256();
        const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), m1), 4));
            }
            k->u[2 * j] = lo, k->u[2 * j + 1] = hi;
        }
    } else if (T == SL_TYPE_Q6_K) {
        const sl_block_q6_K *b = (const sl_block_q6_K *)row + i;
        k->d = _cvtsh_ss(b->d), k->dmin = 0;
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        split16(k, sc);
        k->corr = _mm256_slli_epi16(sc, 5); /* offset 32 */
        k->mins = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
            k->u[4 * h] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            k->u[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            k->u[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            k->u[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
        }
    } else if (T == SL_TYPE_Q2_K || T == SL_TYPE_Q3_K) {
        const bool three = T == SL_TYPE_Q3_K;
        const uint8_t *qs, *hmask = NULL;
        if (three) {
            const sl_block_q3_K *b = (const sl_block_q3_K *)row + i;
            qs = b->qs, hmask = b->hmask;
            k->d = _cvtsh_ss(b->d), k->dmin = 0;
            uint32_t a[4];
            memcpy(a, b->scales, 12);
            const uint32_t t = a[2];
            a[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
            a[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
            a[0] = (a[0] & 0x0f0f0f0f) | (((t >> 0) & 0x03030303) << 4);
            a[1] = (a[1] & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
            const __m128i s8 = _mm_sub_epi8(_mm_set_epi32((int)a[3], (int)a[2], (int)a[1], (int)a[0]), _mm_set1_epi8(32));
            const __m256i sc = _mm256_cvtepi8_epi16(s8);
            split16(k, sc);
            k->corr = _mm256_slli_epi16(sc, 2); /* offset 4 */
            k->mins = _mm256_setzero_si256();
        } else {
            const sl_block_q2_K *b = (const sl_block_q2_K *)row + i;
            qs = b->qs;
            k->d = _cvtsh_ss(b->d), k->dmin = _cvtsh_ss(b->dmin);
            const __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales), m4s = _mm_set1_epi8(0x0f);
            split16(k, _mm256_cvtepu8_epi16(_mm_and_si128(s8, m4s)));
            k->mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4s));
            k->corr = _mm256_setzero_si256();
        }
        const __m256i hm = three ? _mm256_loadu_si256((const __m256i *)hmask) : _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
#pragma GCC unroll 8
            for (int s = 0; s < 4; s++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m3);
                if (three) v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + s), m1), 2));
                k->u[4 * h + s] = v;
            }
        }
    } else { /* IQ4_XS: signed table values */
        const sl_block_iq4_xs *b = (const sl_block_iq4_xs *)row + i;
        k->d = _cvtsh_ss(b->d), k->dmin = 0;
        const __m256i tab = _mm256_loadu_si256((const __m256i *)iq4_table);
        int16_t sc[8];
#pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            sc[ib] = (int16_t)((((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4)) - 32);
            k->u[ib] = _mm256_shuffle_epi8(tab, nibbles32(b->qs + 16 * ib));
        }
        k->s_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sc));
        k->corr = k->mins = _mm256_setzero_si256();
    }
}

/* Block i of a 32-element row type (Q4_1, Q5_0, Q5_1, IQ4_NL) into u[0]; d (and m). */
SL_INLINE void decode_32(sl_type T, const uint8_t *row, int64_t i, kblk *k) {
    if (T == SL_TYPE_Q4_1) {
        const sl_block_q4_1 *b = (const sl_block_q4_1 *)row + i;
        k->d = _cvtsh_ss(b->d), k->m = _cvtsh_ss(b->m);
        k->u[0] = nibbles32(b->qs);
    } else if (T == SL_TYPE_Q5_1) {
        const sl_block_q5_1 *b = (const sl_block_q5_1 *)row + i;
        k->d = _cvtsh_ss(b->d), k->m = _cvtsh_ss(b->m);
        k->u[0] = _mm256_or_si256(nibbles32(b->qs), fifth_bits(b->qh));
    } else if (T == SL_TYPE_Q5_0) { /* signed: q - 16 */
        const sl_block_q5_0 *b = (const sl_block_q5_0 *)row + i;
        k->d = _cvtsh_ss(b->d), k->m = 0;
        k->u[0] = _mm256_sub_epi8(_mm256_or_si256(nibbles32(b->qs), fifth_bits(b->qh)), _mm256_set1_epi8(16));
    } else { /* IQ4_NL: signed table values */
        const sl_block_iq4_nl *b = (const sl_block_iq4_nl *)row + i;
        k->d = _cvtsh_ss(b->d), k->m = 0;
        k->u[0] = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)iq4_table), nibbles32(b->qs));
    }
}

SL_INLINE bool signed_values(sl_type T) { return T == SL_TYPE_IQ4_XS || T == SL_TYPE_IQ4_NL || T == SL_TYPE_Q5_0; }

/* 16 int16 pair sums of w . x (32 values): unsigned w directly, signed w with the sign trick. */
SL_INLINE __m256i pairs16(sl_type T, __m256i w, __m256i x) {
    if (signed_values(T)) return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_maddubs_epi16(w, x);
}

/* Chunk c (32 values) of a decoded super-block against NT tokens' Q8_K blocks i. */
SL_INLINE void chunk_k(sl_type T, const int NT, const kblk *k, int c, const sl_block_q8_K *const *xb, int64_t i, __m256i *isum) {
    const __m256i scv = chunk_scale(T, k, c);
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xb[t][i].qs + 32 * c));
        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs16(T, k->u[c], xv), scv));
    }
}

/* ---- one weight row against NT tokens ------------------------------------------------------------
 * xs[t]: token t's activation row (Q8_K, Q8_0 or Q8_1 blocks); out[t] = dot. */

/* Lane t of the result = the sum of v[t]'s eight int32 lanes (t < 8). */
SL_INLINE __m256i hsum8x8(const __m256i *v) {
    const __m256i a = _mm256_hadd_epi32(v[0], v[1]), b = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i c = _mm256_hadd_epi32(v[4], v[5]), d = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

SL_INLINE void row_k(sl_type T, const int NT, const uint8_t *row, int64_t nb, const uint8_t *const *xs, float *out) {
    const bool has_corr = T == SL_TYPE_Q3_K || T == SL_TYPE_Q6_K, has_min = T == SL_TYPE_Q2_K || T == SL_TYPE_Q4_K || T == SL_TYPE_Q5_K;
    const sl_block_q8_K *xb[NT_MAX];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) xb[t] = (const sl_block_q8_K *)xs[t];
    kblk k;
    /* one token (the decode matvec), and the types other than Q4_K / Q5_K (for Q6_K and IQ4_XS
     * the per-token float tail measured faster, by 10-25%; Q2_K and Q3_K no clear difference):
     * lane-wise float sums per token, a horizontal sum at the end */
    if (NT == 1 || !(T == SL_TYPE_Q4_K || T == SL_TYPE_Q5_K)) {
        __m256 acc[NT_MAX], accm[NT_MAX];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[t] = accm[t] = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            decode_k(T, row, i, &k);
            __m256i isum[NT_MAX];
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
            /* one token: everything unrolled, the decoded values go straight from registers into
             * the products; several: chunks rolled, tokens unrolled, the NT sums in registers */
            if (NT == 1) {
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++) chunk_k(T, NT, &k, c, xb, i, isum);
            } else {
#pragma GCC unroll 1
                for (int c = 0; c < 8; c++) chunk_k(T, NT, &k, c, xb, i, isum);
            }
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const sl_block_q8_K *x = xb[t] + i;
                const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
                if (has_corr) isum[t] = _mm256_sub_epi32(isum[t], _mm256_madd_epi16(k.corr, bs));
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(k.d * x->d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
                if (has_min) accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(k.dmin * x->d), _mm256_cvtepi32_ps(_mm256_madd_epi16(k.mins, bs)), accm[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) out[t] = x2_hsum(_mm256_sub_ps(acc[t], accm[t]));
        return;
    }
    /* Several tokens: per super-block each token's integer sums are reduced to one int32 lane
     * (exact), so the float work is one vector for all NT tokens: lane t += d_w d_x[t] isum[t]
     * (and the minimum term likewise). The tokens' d_x come in one gather (the activation rows
     * are at byte offsets xs[t] - xs[0] < 2^31, see sl_kq_mm_rows_avx2). */
    int32_t off[NT_MAX] = {0};
#pragma GCC unroll 8
    for (int t = 1; t < NT; t++) off[t] = (int32_t)(xs[t] - xs[0]);
    const __m256i idx = _mm256_loadu_si256((const __m256i *)off);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        decode_k(T, row, i, &k);
        __m256i isum[NT_MAX], msum[NT_MAX];
#pragma GCC unroll 8
        for (int t = 0; t < NT_MAX; t++) isum[t] = msum[t] = _mm256_setzero_si256();
        /* chunks rolled, tokens unrolled, so the NT sums stay in registers */
#pragma GCC unroll 1
        for (int c = 0; c < 8; c++) chunk_k(T, NT, &k, c, xb, i, isum);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)xb[t][i].bsums);
            if (has_corr) isum[t] = _mm256_sub_epi32(isum[t], _mm256_madd_epi16(k.corr, bs));
            if (has_min) msum[t] = _mm256_madd_epi16(k.mins, bs);
        }
        const __m256 xd = _mm256_i32gather_ps(&xb[0][i].d, idx, 1);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(k.d), xd), _mm256_cvtepi32_ps(hsum8x8(isum)), acc);
        if (has_min) accm = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(k.dmin), xd), _mm256_cvtepi32_ps(hsum8x8(msum)), accm);
    }
    float r[8];
    _mm256_storeu_ps(r, _mm256_sub_ps(acc, accm));
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t] = r[t];
}

SL_INLINE void row_32(sl_type T, const int NT, const uint8_t *row, int64_t nb, const uint8_t *const *xs, float *out) {
    const bool q81 = T == SL_TYPE_Q4_1 || T == SL_TYPE_Q5_1;
    const size_t xbs = q81 ? sizeof(sl_block_q8_1) : sizeof(sl_block_q8_0);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NT_MAX];
    float summ[NT_MAX];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps(), summ[t] = 0.0f;
    kblk k;
    for (int64_t i = 0; i < nb; i++) {
        decode_32(T, row, i, &k);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *x = xs[t] + (size_t)i * xbs;
            uint16_t dx;
            memcpy(&dx, x, 2);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (q81 ? 4 : 2)));
            const __m256i p = _mm256_madd_epi16(pairs16(T, k.u[0], xv), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(k.d * _cvtsh_ss(dx)), _mm256_cvtepi32_ps(p), acc[t]);
            if (q81) {
                uint16_t sx;
                memcpy(&sx, x + 2, 2);
                summ[t] += k.m * _cvtsh_ss(sx);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t] = x2_hsum(acc[t]) + summ[t];
}

typedef void (*row_fn)(const uint8_t *row, int64_t nb, const uint8_t *const *xs, float *out);

#define ROW_FNS(TN, T, KIND)                                                                                            \
    static void r_##TN##_1(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 1, w, nb, x, o); } \
    static void r_##TN##_2(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 2, w, nb, x, o); } \
    static void r_##TN##_3(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 3, w, nb, x, o); } \
    static void r_##TN##_4(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 4, w, nb, x, o); } \
    static void r_##TN##_5(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 5, w, nb, x, o); } \
    static void r_##TN##_6(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 6, w, nb, x, o); } \
    static void r_##TN##_7(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 7, w, nb, x, o); } \
    static void r_##TN##_8(const uint8_t *w, int64_t nb, const uint8_t *const *x, float *o) { KIND(T, 8, w, nb, x, o); }
ROW_FNS(q2k, SL_TYPE_Q2_K, row_k)
ROW_FNS(q3k, SL_TYPE_Q3_K, row_k)
ROW_FNS(q4k, SL_TYPE_Q4_K, row_k)
ROW_FNS(q5k, SL_TYPE_Q5_K, row_k)
ROW_FNS(q6k, SL_TYPE_Q6_K, row_k)
ROW_FNS(iq4xs, SL_TYPE_IQ4_XS, row_k)
ROW_FNS(q41, SL_TYPE_Q4_1, row_32)
ROW_FNS(q50, SL_TYPE_Q5_0, row_32)
ROW_FNS(q51, SL_TYPE_Q5_1, row_32)
ROW_FNS(iq4nl, SL_TYPE_IQ4_NL, row_32)
#define ROW_TAB(TN) {r_##TN##_1, r_##TN##_2, r_##TN##_3, r_##TN##_4, r_##TN##_5, r_##TN##_6, r_##TN##_7, r_##TN##_8}

/* The kernels of type t for 1..NT_MAX tokens, or NULL. */
static const row_fn *row_fns(sl_type t) {
    static const row_fn q2k[] = ROW_TAB(q2k), q3k[] = ROW_TAB(q3k), q4k[] = ROW_TAB(q4k), q5k[] = ROW_TAB(q5k), q6k[] = ROW_TAB(q6k),
                        iq4xs[] = ROW_TAB(iq4xs), q41[] = ROW_TAB(q41), q50[] = ROW_TAB(q50), q51[] = ROW_TAB(q51), iq4nl[] = ROW_TAB(iq4nl);
    switch (t) {
    case SL_TYPE_Q2_K: return q2k;
    case SL_TYPE_Q3_K: return q3k;
    case SL_TYPE_Q4_K: return q4k;
    case SL_TYPE_Q5_K: return q5k;
    case SL_TYPE_Q6_K: return q6k;
    case SL_TYPE_IQ4_XS: return iq4xs;
    case SL_TYPE_Q4_1: return q41;
    case SL_TYPE_Q5_0: return q50;
    case SL_TYPE_Q5_1: return q51;
    case SL_TYPE_IQ4_NL: return iq4nl;
    default: return NULL;
    }
}

/* ---- entry points -------------------------------------------------------------------------------- */

float sl_kq_vec_dot_avx2(sl_type wtype, const void *w, const void *act, int64_t n) {
    const row_fn *f = row_fns(wtype);
    if (!f) return sl_vec_dot_ref(wtype, w, act, n);
    const uint8_t *x = act;
    float out;
    f[0](w, n / sl_type_block_size(wtype), &x, &out);
    return out;
}

void sl_kq_vec_axpy_avx2(sl_type wtype, const void *w, float a, float *y, int64_t n) { sl_vec_axpy_ref(wtype, w, a, y, n); }

size_t sl_kq_mm_prep_size_avx2(sl_type type, int64_t n, int64_t B) { return sl_kq_mm_prep_size_scalar(type, n, B); }

/* ---- activation formats: the same bytes as sl_quantize_row_ref ----------------------------------
 * Q8_K: the element of largest magnitude (the first one, as the reference's strict > keeps it)
 * gives iscale = -127 / max, values round half to even (vroundps = ggml's nearest_int for the
 * |v| <= 127 that a finite iscale gives) and saturate in the packs like the reference's clamps;
 * bsums from vpsadbw of the values offset to unsigned. A block with a NaN or infinity, or whose
 * iscale overflows (a denormal maximum), goes to the reference, which defines those cases. */
static void quantize_q8_K_avx2(const float *x, sl_block_q8_K *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), off = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nb; i++) {
        const float *p = x + i * SL_QK_K;
        __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
        for (int j = 0; j < SL_QK_K; j += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p + j));
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ)); /* inf or NaN */
            m = _mm256_max_ps(m, a);
        }
        if (_mm256_movemask_ps(bad)) {
            sl_quantize_row_ref(SL_TYPE_Q8_K, p, y + i, SL_QK_K);
            continue;
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float max = 0.0f;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < SL_QK_K; j += 8) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(p + j)), va, _CMP_EQ_OQ));
            if (hit) {
                max = p[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        if (!(fabsf(iscale) < INFINITY)) {
            sl_quantize_row_ref(SL_TYPE_Q8_K, p, y + i, SL_QK_K);
            continue;
        }
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int j = 0; j < SL_QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvttps_epi32(_mm256_round_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(p + j + 8 * k)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i v = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            v = _mm256_permutevar8x32_epi32(v, perm);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), v);
            int64_t s[4];
            _mm256_storeu_si256((__m256i *)s, _mm256_sad_epu8(_mm256_xor_si256(v, off), _mm256_setzero_si256()));
            y[i].bsums[j / 16] = (int16_t)(s[0] + s[1] - 2048);
            y[i].bsums[j / 16 + 1] = (int16_t)(s[2] + s[3] - 2048);
        }
        y[i].d = 1 / iscale;
    }
}

/* The magnitude maximum of 32 floats (NaN ignored, as fmaxf does) and whether the fast Q8_0
 * quantizer makes the reference's bytes: every value finite and 1 / d finite. */
SL_INLINE bool q8_block_amax(const float *p, float *amax) {
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int j = 0; j < SL_QK8_0; j += 8) {
        const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p + j));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
        m = _mm256_max_ps(a, m);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    *amax = _mm_cvtss_f32(h);
    return !_mm256_movemask_ps(bad) && (*amax == 0.0f || *amax / 127.0f >= 1e-37f);
}

/* Q8_0: sl_x2_quantize_q8 (bit-identical to the reference for finite blocks of a normal scale),
 * the reference for the others. */
static void quantize_q8_0_avx2(const float *x, sl_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float amax;
        const float *p = x + i * SL_QK8_0;
        if (q8_block_amax(p, &amax)) sl_x2_quantize_q8(p, y + i, SL_QK8_0);
        else sl_quantize_row_ref(SL_TYPE_Q8_0, p, y + i, SL_QK8_0);
    }
}

/* Q8_1: the same values and s = d * sum with the unrounded d = amax / 127. */
static void quantize_q8_1_avx2(const float *x, sl_block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float amax;
        const float *p = x + i * SL_QK8_0;
        if (!q8_block_amax(p, &amax)) {
            sl_quantize_row_ref(SL_TYPE_Q8_1, p, y + i, SL_QK8_0);
            continue;
        }
        sl_block_q8_0 b;
        sl_x2_quantize_q8(p, &b, SL_QK8_0);
        const __m256i v = _mm256_loadu_si256((const __m256i *)b.qs);
        int64_t s[4];
        _mm256_storeu_si256((__m256i *)s, _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256()));
        y[i].d = b.d;
        memcpy(y[i].qs, b.qs, SL_QK8_0);
        y[i].s = sl_fp32_to_fp16((float)(s[0] + s[1] + s[2] + s[3] - 4096) * (amax / 127.0f));
    }
}

void sl_kq_mm_prep_avx2(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    (void)B;
    const sl_type at = sl_act_type_of(type);
    const size_t stride = sl_act_size(type, n);
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *dst = (uint8_t *)xp + (size_t)b * stride;
        if (at == SL_TYPE_Q8_K) quantize_q8_K_avx2(X + b * n, (sl_block_q8_K *)dst, n / SL_QK_K);
        else if (at == SL_TYPE_Q8_0) quantize_q8_0_avx2(X + b * n, (sl_block_q8_0 *)dst, n / SL_QK8_0);
        else if (at == SL_TYPE_Q8_1) quantize_q8_1_avx2(X + b * n, (sl_block_q8_1 *)dst, n / SL_QK8_0);
        else sl_quantize_row_ref(at, X + b * n, dst, n);
    }
}

/* Prompt batches (B > NT_MAX) go over the rows in blocks of ROW_BLOCK_BYTES of weights, and for
 * each block over the token groups: the block's rows stay in L2 while the NT_MAX tokens of a group
 * meet all of them, so a group's activations (NT_MAX x n values as Q8_K: 18 KB for n = 2048) are
 * read from L1 by every row of the block instead of from L2/L3 once per row. Each output is still
 * one row_k call over the whole row, so the results are the unblocked ones, bit for bit. */
#define ROW_BLOCK_BYTES (160 * 1024)

void sl_kq_mm_rows_avx2(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const row_fn *f = row_fns(a->type);
    if (!f) {
        sl_kq_mm_rows_scalar(a, r0, r1);
        return;
    }
    const size_t stride = sl_act_size(a->type, a->n);
    const int64_t nb = a->n / sl_type_block_size(a->type);
    if (stride > INT32_MAX / NT_MAX) { /* the several-token kernels gather at 32-bit offsets: one token at a time */
        for (int64_t b = 0; b < a->B; b++) {
            const uint8_t *x = (const uint8_t *)a->xp + (size_t)b * stride;
            for (int64_t r = r0; r < r1; r++) f[0]((const uint8_t *)a->W + (size_t)r * a->row_bytes, nb, &x, &a->Y[b * a->rows + r]);
        }
        return;
    }
    if (a->B > NT_MAX) {
        int64_t rblk = (int64_t)(ROW_BLOCK_BYTES / a->row_bytes);
        if (rblk < 1) rblk = 1;
        for (int64_t rb = r0; rb < r1; rb += rblk) {
            const int64_t re = rb + rblk < r1 ? rb + rblk : r1;
            for (int64_t b = 0; b < a->B; b += NT_MAX) {
                const int nt = a->B - b < NT_MAX ? (int)(a->B - b) : NT_MAX;
                const uint8_t *xs[NT_MAX];
                for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)a->xp + (size_t)(b + t) * stride;
                for (int64_t r = rb; r < re; r++) {
                    float out[NT_MAX];
                    f[nt - 1]((const uint8_t *)a->W + (size_t)r * a->row_bytes, nb, xs, out);
                    for (int t = 0; t < nt; t++) a->Y[(b + t) * a->rows + r] = out[t];
                }
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
        /* decoding (B = 1) streams the weights: fetch the row PF_ROWS ahead (rows of a few KB are
         * too short for the hardware prefetcher to get ahead on its own) */
        if (a->B == 1 && r + PF_ROWS < r1)
            for (size_t off = 0; off < a->row_bytes; off += 64) _mm_prefetch((const char *)(w + PF_ROWS * a->row_bytes + off), _MM_HINT_T1);
        const uint8_t *xs[NT_MAX];
        float out[NT_MAX];
        const int nt = (int)a->B;
        for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)a->xp + (size_t)t * stride;
        f[nt - 1](w, nb, xs, out);
        for (int t = 0; t < nt; t++) a->Y[t * a->rows + r] = out[t];
    }
}
