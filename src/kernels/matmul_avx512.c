/*
 * matmul_avx512.c — AVX-512 matrix kernels behind sl_matmul: Y[b, r] = W[r, :] · X[b, :].
 *
 * Float weights (F32/F16/BF16): a register tile of 4 weight rows x 6 tokens, 24 zmm
 * accumulators; each step loads (and widens) 16 weights of each row once and 16 activations of
 * each token once, then issues 24 FMAs, so the FMA unit — not loads — is the limit. The tile
 * reads X straight from the caller (no copy). For B > 1 the reduction dimension is cut into
 * chunks whose slice of X (B x kc floats) stays in L2 while every row tile of this thread
 * passes over it; the 4-row weight tile of a chunk stays in L1 while all token tiles use it.
 * For B == 1 the same tile with one token streams 4 rows at once with independent
 * accumulators and software-prefetches the rows two groups ahead into L2: that is the
 * bandwidth-bound decode matvec.
 *
 * Quantized weights (Q8_0/Q4_0), B == 1: X is quantized once (bit-identical Q8_0 values) into
 * a matvec layout with precomputed offset corrections and f32 scales, and each group of 4 rows
 * runs a one-block-per-step kernel (see "B == 1: matvec" below), with the same prefetching.
 * Q4_0 repacked at load into Q4_0x4 (4 rows interleaved block by block, quant.h), B == 1: one
 * 512-bit load carries a block of 4 rows and 8 vector ops finish it (see "B == 1 on Q4_0x4"),
 * which is what takes single-thread Q4_0 decode from ~13-19 GB/s (compute-bound) to the memory
 * roofline. For B > 1 Q4_0x4 goes through the superblock tiles below like Q4_0 (only the
 * gather offsets differ), with bit-identical results.
 * B > 1: both operands are re-laid out so that one zmm holds 4 bytes from each of 16 consecutive blocks ("superblock" of 512 values): eight
 * vpdpbusd then leave the complete integer dot product of block l in lane l, so the per-block
 * float work (convert, scale by dw*dx, accumulate) is one vector op per 16 blocks instead of one
 * per block. X is laid out that way once per call (mm_prep); each 4-row weight tile is laid out
 * once per chunk (with gathers) into a stack buffer and then reused by every token tile.
 *
 * Threads call sl_x5_mm_rows on disjoint row ranges; nothing here is shared or allocated.
 */
#include "kernels/simd_avx512.h"

/* Bytes of X (any form) a chunk may keep per thread: about half of a 1 MB L2. */
#ifndef CHUNK_BYTES
#define CHUNK_BYTES (384 * 1024)
#endif
/* Matvec software prefetch: how many groups of 4 rows ahead (0: none), and into which cache.
 * Rows of 1-8 KB are too short for the hardware prefetcher to ramp up on each stream; fetching
 * two groups ahead into L2 (T1) measured best on Zen 4 (single-thread Q8_0 from DRAM ~11 ->
 * ~19 GB/s), T0 (L1) was clearly worse. */
#ifndef MV_PF_GROUPS
#define MV_PF_GROUPS 2
#endif
#ifndef MV_PF_HINT
#define MV_PF_HINT _MM_HINT_T1
#endif

/* ================================ float weights ================================ */

#define FR 4 /* rows per tile */
/* Rows per matvec tile (B == 1) for F16/BF16 weights. One row at a time — a single stream
 * through the matrix, which is contiguous — measured 23-27 GB/s on one Zen 4 core against
 * 19-22 GB/s for 4 interleaved rows (three alternating runs of bench_kernels); for F32 the
 * opposite held (4 rows: 25-27 GB/s, 1 row: 18-21), so F32 keeps FR. */
#ifndef MV16_ROWS
#define MV16_ROWS 1
#endif
#define FT 6 /* tokens per tile */

/* y[b * ys + r] (= or +=) sum_k w[r][k] x[b][k] for r < NR, b < NT, k < kn. */
SL_INLINE void ftile(sl_type t, const int NR, const int NT, const uint8_t *w, size_t ws, const float *x, int64_t xs,
                     int64_t kn, float *y, int64_t ys, bool first) {
    __m512 acc[FR][FT];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 6
        for (int b = 0; b < NT; b++) acc[r][b] = _mm512_setzero_ps();
    int64_t k = 0;
    const size_t esize = t == SL_TYPE_F32 ? 4 : 2;
    for (; k + 16 <= kn; k += 16) {
        __m512 wv[FR];
        if (NT == 1 && MV_PF_GROUPS) {
            /* matvec: rows are streamed once; fetch the next group of rows at the same pace
             * (short rows defeat the hardware prefetcher, which must re-learn every stream) */
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(w + (size_t)(MV_PF_GROUPS * NR + r) * ws + (size_t)k * esize), MV_PF_HINT);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = x5_load_w(t, w + (size_t)r * ws, k);
#pragma GCC unroll 6
        for (int b = 0; b < NT; b++) {
            __m512 xv = _mm512_loadu_ps(x + b * xs + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm512_fmadd_ps(wv[r], xv, acc[r][b]);
        }
    }
    if (k < kn) {
        __mmask16 m = x5_mask(kn - k);
        __m512 wv[FR];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = x5_load_w_mask(t, w + (size_t)r * ws, k, m);
#pragma GCC unroll 6
        for (int b = 0; b < NT; b++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + b * xs + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = _mm512_fmadd_ps(wv[r], xv, acc[r][b]);
        }
    }
    const __m512 z = _mm512_setzero_ps();
    const __mmask8 m = (__mmask8)((1u << NR) - 1);
#pragma GCC unroll 6
    for (int b = 0; b < NT; b++) {
        __m128 s = x5_hsum4(acc[0][b], NR > 1 ? acc[1][b] : z, NR > 2 ? acc[2][b] : z, NR > 3 ? acc[3][b] : z);
        float *yb = y + b * ys;
        if (!first) s = _mm_add_ps(s, _mm_maskz_loadu_ps(m, yb));
        _mm_mask_storeu_ps(yb, m, s);
    }
}

typedef void (*ftile_fn)(const uint8_t *w, size_t ws, const float *x, int64_t xs, int64_t kn, float *y, int64_t ys,
                         bool first);

#define FT_FN(T, TN, NR, NT)                                                                                            \
    static void ft_##TN##_##NR##_##NT(const uint8_t *w, size_t ws, const float *x, int64_t xs, int64_t kn, float *y,   \
                                      int64_t ys, bool first) {                                                         \
        ftile(T, NR, NT, w, ws, x, xs, kn, y, ys, first);                                                               \
    }
#define FT_ROW(T, TN, NR)                                                                                               \
    FT_FN(T, TN, NR, 1) FT_FN(T, TN, NR, 2) FT_FN(T, TN, NR, 3) FT_FN(T, TN, NR, 4) FT_FN(T, TN, NR, 5) FT_FN(T, TN, NR, 6)
#define FT_TYPE(T, TN) FT_ROW(T, TN, 1) FT_ROW(T, TN, 2) FT_ROW(T, TN, 3) FT_ROW(T, TN, 4)
FT_TYPE(SL_TYPE_F32, f32)
FT_TYPE(SL_TYPE_F16, f16)
FT_TYPE(SL_TYPE_BF16, bf16)

#define FT_REF_ROW(TN, NR) {ft_##TN##_##NR##_1, ft_##TN##_##NR##_2, ft_##TN##_##NR##_3, ft_##TN##_##NR##_4, ft_##TN##_##NR##_5, ft_##TN##_##NR##_6}
#define FT_REF_TYPE(TN) {FT_REF_ROW(TN, 1), FT_REF_ROW(TN, 2), FT_REF_ROW(TN, 3), FT_REF_ROW(TN, 4)}
static const ftile_fn ftiles[3][FR][FT] = {FT_REF_TYPE(f32), FT_REF_TYPE(f16), FT_REF_TYPE(bf16)};

static void mm_rows_float(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int ti = a->type == SL_TYPE_F32 ? 0 : a->type == SL_TYPE_F16 ? 1 : 2;
    const size_t esize = a->type == SL_TYPE_F32 ? 4 : 2;
    const int64_t n = a->n, B = a->B;
    /* chunk of the reduction dimension: all of it for small batches, else what keeps B x kc
     * floats of X within CHUNK_BYTES (a multiple of 16, at least 256) */
    int64_t kc = n;
    if (B > 1 && B * n * 4 > CHUNK_BYTES) {
        kc = (CHUNK_BYTES / (B * 4)) & ~(int64_t)15;
        if (kc < 256) kc = 256;
        if (kc > n) kc = n;
    }
    for (int64_t k0 = 0; k0 < n; k0 += kc) {
        int64_t kn = n - k0 < kc ? n - k0 : kc;
        const int fr = B == 1 && esize == 2 ? MV16_ROWS : FR;
        for (int64_t r = r0; r < r1; r += fr) {
            int nr = r1 - r < fr ? (int)(r1 - r) : fr;
            const uint8_t *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes + (size_t)k0 * esize;
            /* balanced token tiles (128 = 18 x 6 + 4 x 5, not 21 x 6 + 2): a thin last tile wastes FMAs */
            const int64_t tiles = (B + FT - 1) / FT, base = B / tiles, extra = B % tiles;
            for (int64_t ti2 = 0, b = 0; ti2 < tiles; ti2++) {
                int nt = (int)(base + (ti2 < extra ? 1 : 0));
                ftiles[ti][nr - 1][nt - 1](w, a->row_bytes, a->X + b * n + k0, n, kn, a->Y + b * a->rows + r, a->rows,
                                           k0 == 0);
                b += nt;
            }
        }
    }
}

/* ================================ quantized weights ================================ */

#define SB_BLOCKS 16                 /* blocks per superblock */
#define SB_QS 512                    /* bytes of values per superblock */
#define XSB_BYTES (SB_QS + 64 + 64)  /* X superblock: values, per-block offset correction, scales */
#define WSB_BYTES (SB_QS + 64)       /* W superblock: values, scales */
#define QR 4                         /* rows per tile */
#define QT 4                         /* tokens per tile */
#define MAX_CHUNK_SB 8               /* superblocks per chunk, bounds the stack buffer */

static int64_t n_superblocks(int64_t n) { return (n / SL_QK8_0 + SB_BLOCKS - 1) / SB_BLOCKS; }

/* lane l of vector j = bytes 4j..4j+3 of block l: gather offsets of dword j */
SL_INLINE __m512i lane_offsets(int stride, int first) {
    return _mm512_add_epi32(_mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(stride)),
                            _mm512_set1_epi32(first));
}

/* ---- B == 1: matvec -------------------------------------------------------------------------
 * X is laid out as [nb x 32 int8 values][nb x 8 int32 offset corrections][nb f32 scales], so
 * the inner loop needs no per-block scalar work for X. Before a run of blocks, the weight scales
 * of the 4 rows are converted once (a scalar copy of the halves on the integer ports, then
 * vcvtph2ps and the product with dx, 16 blocks per instruction), so the per-block scale is a
 * broadcast load.
 * Q4_0 is not unpacked with a shift: the 16 bytes are loaded into both halves of a ymm and
 * masked with 0x0f (low half: the low nibbles, elements 0..15) and 0xf0 (high half: 16 x the
 * high nibbles, elements 16..31). Lanes 4..7 of every block's dot product are then exactly 16x
 * too large (their correction is pre-multiplied by 16 too), and since that factor is the same
 * for every block, the accumulator's lanes 4..7 are scaled by 1/16 (exact) once at the end.
 * Per block and row that leaves: one AND (Q4_0) or XOR (Q8_0), vpdpbusd, convert, FMA. */

#define MV_BLOCK_BYTES (32 + 32 + 4) /* values, corrections, scale */
/* Blocks per scale prepass (bounds the stack arrays). The prepass touches every cache line of
 * the run in all 4 rows, so a run must stay in L1 until the main loop consumes it: Q8_0 runs of
 * 32 blocks (4.4 KB of weights) and Q4_0 runs of 128 (9.2 KB) measured best on Zen 4; 256-block
 * Q8_0 runs lost ~25% at n = 5632. */
#define MV_RUN 128
#define MV_RUN_Q8 32

static void mv_prep(sl_type t, const float *x, int64_t n, void *xp) {
    const int64_t nb = n / SL_QK8_0;
    int8_t *qs = xp;
    int32_t *negc = (int32_t *)(qs + nb * 32);
    float *dx = (float *)(qs + nb * 64);
    /* offset K of the unsigned weights per lane: Q8_0 128; Q4_0 8 (low lanes), 16 * 8 (high lanes) */
    const __m256i K = t == SL_TYPE_Q8_0 ? _mm256_set1_epi8((char)0x80)
                                        : _mm256_setr_epi64x(0x0808080808080808LL, 0x0808080808080808LL,
                                                             (long long)0x8080808080808080ULL, (long long)0x8080808080808080ULL);
    for (int64_t i0 = 0; i0 < nb; i0 += SB_BLOCKS) {
        int64_t cnt = nb - i0 < SB_BLOCKS ? nb - i0 : SB_BLOCKS;
        sl_block_q8_0 tmp[SB_BLOCKS];
        sl_x5_quantize_q8(x + i0 * SL_QK8_0, tmp, cnt * SL_QK8_0);
        for (int64_t j = 0; j < cnt; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)tmp[j].qs);
            _mm256_storeu_si256((__m256i *)(qs + (i0 + j) * 32), v);
            __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), K, v);
            _mm256_storeu_si256((__m256i *)(negc + (i0 + j) * 8), _mm256_sub_epi32(_mm256_setzero_si256(), c));
            dx[i0 + j] = x5_half(tmp[j].d);
        }
    }
}

/* y[r] = W[r] . x for NR rows (stride ws) with x in the matvec layout. */
SL_INLINE void qmv(sl_type t, const int NR, const uint8_t *w, size_t ws, const uint8_t *xp, int64_t nb, float *y) {
    const int8_t *qs = (const int8_t *)xp;
    const __m256i *negc = (const __m256i *)(xp + nb * 32);
    const float *dx = (const float *)(xp + nb * 64);
    _Alignas(64) float sc[4][MV_RUN];
    const int bsize = t == SL_TYPE_Q8_0 ? (int)sizeof(sl_block_q8_0) : (int)sizeof(sl_block_q4_0);
    _Alignas(64) uint16_t h[MV_RUN];
    const __m256i nib = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fLL, 0x0f0f0f0f0f0f0f0fLL, (long long)0xf0f0f0f0f0f0f0f0ULL,
                                           (long long)0xf0f0f0f0f0f0f0f0ULL);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    const int run = t == SL_TYPE_Q8_0 ? MV_RUN_Q8 : MV_RUN;
    for (int64_t i0 = 0; i0 < nb; i0 += run) {
        int cnt = nb - i0 < run ? (int)(nb - i0) : run;
        for (int r = 0; r < NR; r++) {
            const uint8_t *row = w + (size_t)r * ws + (size_t)i0 * bsize;
            /* integer-port copy of the halves (gathers are slow on Zen 4), then 16 at a time */
            for (int i = 0; i < cnt; i++) {
                uint16_t hv;
                __builtin_memcpy(&hv, row + (size_t)i * bsize, 2);
                h[i] = hv;
            }
            for (int i = 0; i < cnt; i += 16) {
                __mmask16 m = x5_mask(cnt - i);
                __m512 d = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i));
                _mm512_mask_storeu_ps(&sc[r][i], m, _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, dx + i0 + i)));
            }
        }
        for (int i = 0; i < cnt; i++) {
            const int64_t bi = i0 + i;
            /* the next group of rows follows this one in memory: fetch it at the same pace */
            if (MV_PF_GROUPS) {
                const uint8_t *pf = w + (size_t)(MV_PF_GROUPS * NR) * ws + (size_t)bi * (size_t)(NR * bsize);
                _mm_prefetch((const char *)pf, MV_PF_HINT);
                if (NR * bsize > 64) _mm_prefetch((const char *)pf + 64, MV_PF_HINT);
                if (NR * bsize > 128) _mm_prefetch((const char *)pf + 128, MV_PF_HINT);
            }
            __m256i x = _mm256_load_si256((const __m256i *)(qs + bi * 32));
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m256i wq;
                if (t == SL_TYPE_Q8_0) {
                    wq = q8_block_u8(w + (size_t)r * ws, bi);
                } else {
                    const sl_block_q4_0 *b = (const sl_block_q4_0 *)(w + (size_t)r * ws) + bi;
                    wq = _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs)), nib);
                }
                __m256i d = _mm256_dpbusd_epi32(_mm256_load_si256(negc + bi), wq, x);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_broadcast_ss(&sc[r][i]), acc[r]);
            }
        }
    }
    if (t == SL_TYPE_Q4_0) {
        const __m256 fix = _mm256_setr_ps(1, 1, 1, 1, 1.0f / 16, 1.0f / 16, 1.0f / 16, 1.0f / 16);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[r] = _mm256_mul_ps(acc[r], fix);
    }
    __m256 z = _mm256_setzero_ps();
    __m128 s = x5_hsum4_256(acc[0], NR > 1 ? acc[1] : z, NR > 2 ? acc[2] : z, NR > 3 ? acc[3] : z);
    _mm_mask_storeu_ps(y, (__mmask8)((1u << NR) - 1), s);
}

static void qmv_rows(sl_type t, int nr, const uint8_t *w, size_t ws, const uint8_t *xp, int64_t nb, float *y) {
    if (t == SL_TYPE_Q8_0) {
        switch (nr) {
        case 1: qmv(SL_TYPE_Q8_0, 1, w, ws, xp, nb, y); return;
        case 2: qmv(SL_TYPE_Q8_0, 2, w, ws, xp, nb, y); return;
        case 3: qmv(SL_TYPE_Q8_0, 3, w, ws, xp, nb, y); return;
        default: qmv(SL_TYPE_Q8_0, 4, w, ws, xp, nb, y); return;
        }
    }
    switch (nr) {
    case 1: qmv(SL_TYPE_Q4_0, 1, w, ws, xp, nb, y); return;
    case 2: qmv(SL_TYPE_Q4_0, 2, w, ws, xp, nb, y); return;
    case 3: qmv(SL_TYPE_Q4_0, 3, w, ws, xp, nb, y); return;
    default: qmv(SL_TYPE_Q4_0, 4, w, ws, xp, nb, y); return;
    }
}

/* ---- B == 1 on Q4_0x4 (four rows interleaved block by block, see quant.h) -------------------
 * One 512-bit load brings block b of 4 rows: 128-bit lane i holds row i's 16 value bytes. The
 * low nibbles (elements 0..15) and the high nibbles (16..31) meet X's two halves, each
 * broadcast to the 4 lanes, in two vpdpbusd that start from the block's offset correction
 * (-8 * the sums of X's matching dwords), so lane i ends with row i's exact integer dot product
 * as 4 partial sums. The 4 scales are one 8-byte load, widened and multiplied by dx in a
 * 128-bit register, then spread to the lanes by one permute. Per block and 4 rows: 8 vector ops,
 * against 5 per block and row in qmv above. Two groups (8 rows) run together so the X loads are
 * shared and the two FMA chains overlap.
 * X is laid out per block as 64 bytes: [elements 0..15][elements 16..31][4 x int32 correction]
 * [dx as f32][12 bytes of zeros]. */

#define MV4_X_BYTES 64
/* Prefetch distance in pairs of groups (rows are consumed 8 at a time, front to back). */
#ifndef MV4_PF_PAIRS
#define MV4_PF_PAIRS 1
#endif

static void mv4_prep(const float *x, int64_t n, void *xp) {
    const int64_t nb = n / SL_QK8_0;
    const __m128i eight = _mm_set1_epi8(8);
    for (int64_t i0 = 0; i0 < nb; i0 += SB_BLOCKS) {
        int64_t cnt = nb - i0 < SB_BLOCKS ? nb - i0 : SB_BLOCKS;
        sl_block_q8_0 tmp[SB_BLOCKS];
        sl_x5_quantize_q8(x + i0 * SL_QK8_0, tmp, cnt * SL_QK8_0);
        for (int64_t j = 0; j < cnt; j++) {
            uint8_t *d = (uint8_t *)xp + (size_t)(i0 + j) * MV4_X_BYTES;
            __m128i lo = _mm_loadu_si128((const __m128i *)tmp[j].qs), hi = _mm_loadu_si128((const __m128i *)(tmp[j].qs + 16));
            __m128i c = _mm_dpbusd_epi32(_mm_dpbusd_epi32(_mm_setzero_si128(), eight, lo), eight, hi);
            _mm_store_si128((__m128i *)d, lo);
            _mm_store_si128((__m128i *)(d + 16), hi);
            _mm_store_si128((__m128i *)(d + 32), _mm_sub_epi32(_mm_setzero_si128(), c));
            _mm_store_ps((float *)(d + 48), _mm_setr_ps(x5_half(tmp[j].d), 0, 0, 0));
        }
    }
}

/* y[0..4*NG) = rows of NG consecutive groups (the first at g, gb bytes each) . x; writes only
 * the first ny outputs (padding rows of the last group are computed and dropped). */
SL_INLINE void mv4_groups(const int NG, const uint8_t *g, size_t gb, const uint8_t *xp, int64_t nb, float *y, int ny) {
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const uint8_t *pf = g + (size_t)(MV4_PF_PAIRS * 2) * gb;
    for (int64_t b = 0; b < nb; b++) {
        if (MV4_PF_PAIRS) {
#pragma GCC unroll 2
            for (int k = 0; k < NG; k++) {
                _mm_prefetch((const char *)(pf + k * gb + (size_t)b * 64), MV_PF_HINT);
                if ((b & 7) == 0) _mm_prefetch((const char *)(pf + k * gb + (size_t)nb * 64 + (size_t)b * 8), MV_PF_HINT);
            }
        }
        const uint8_t *xb = xp + (size_t)b * MV4_X_BYTES;
        const __m512i xlo = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)xb));
        const __m512i xhi = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(xb + 16)));
        const __m512i corr = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(xb + 32)));
        const __m128 dx = _mm_broadcast_ss((const float *)(xb + 48));
#pragma GCC unroll 2
        for (int k = 0; k < NG; k++) {
            const uint8_t *gk = g + k * gb;
            __m512i w = _mm512_loadu_si512(gk + (size_t)b * 64);
            __m512i d = _mm512_dpbusd_epi32(corr, _mm512_and_si512(w, lo4), xlo);
            d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(w, 4), lo4), xhi);
            __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(gk + (size_t)nb * 64 + (size_t)b * 8))), dx);
            __m512 sv = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(sc));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sv, acc[k]);
        }
    }
    const __m512i firsts = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
#pragma GCC unroll 2
    for (int k = 0; k < NG; k++) {
        /* sum the 4 floats of each 128-bit lane, then gather lane sums 0, 4, 8, 12 */
        __m512 v = acc[k];
        v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
        v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
        __m128 s4 = _mm512_castps512_ps128(_mm512_permutexvar_ps(firsts, v));
        int m = ny - 4 * k;
        if (m > 0) _mm_mask_storeu_ps(y + 4 * k, (__mmask8)(m >= 4 ? 0xf : (1u << m) - 1), s4);
    }
}

static void mv4_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->n / SL_QK4_0;
    const size_t gb = 4 * a->row_bytes;
    for (int64_t r = r0; r < r1; r += 8) { /* r0 is a multiple of 16 (matmul.c's row unit) */
        const uint8_t *g = (const uint8_t *)a->W + (size_t)(r / 4) * gb;
        int ny = r1 - r < 8 ? (int)(r1 - r) : 8;
        if (ny > 4) mv4_groups(2, g, gb, a->xp, nb, a->Y + r, ny);
        else mv4_groups(1, g, gb, a->xp, nb, a->Y + r, ny);
    }
}

size_t sl_x5_mm_prep_size(sl_type type, int64_t n, int64_t B) {
    if (type == SL_TYPE_Q4_0X4 && B == 1) return (size_t)(n / SL_QK8_0) * MV4_X_BYTES;
    if (type != SL_TYPE_Q8_0 && type != SL_TYPE_Q4_0 && type != SL_TYPE_Q4_0X4) return 0;
    if (B == 1) return (size_t)(n / SL_QK8_0) * MV_BLOCK_BYTES;
    return (size_t)B * (size_t)n_superblocks(n) * XSB_BYTES;
}

void sl_x5_mm_prep(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    if (B == 1) {
        if (type == SL_TYPE_Q4_0X4) mv4_prep(X, n, xp);
        else mv_prep(type, X, n, xp);
        return;
    }
    const int64_t nb = n / SL_QK8_0, nsb = n_superblocks(n);
    /* the weights carry an offset K (see dot_avx512.c); fold -K * sum(x) of each block in here */
    const __m512i negk = _mm512_set1_epi32(type == SL_TYPE_Q8_0 ? -128 : -8);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i off_d = lane_offsets(sizeof(sl_block_q8_0), 0);
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *dst = (uint8_t *)xp + (size_t)b * (size_t)nsb * XSB_BYTES;
        for (int64_t s = 0; s < nsb; s++, dst += XSB_BYTES) {
            int64_t nblk = nb - s * SB_BLOCKS < SB_BLOCKS ? nb - s * SB_BLOCKS : SB_BLOCKS;
            sl_block_q8_0 tmp[SB_BLOCKS];
            sl_x5_quantize_q8(X + b * n + s * SB_QS, tmp, nblk * SL_QK8_0);
            __mmask16 m = x5_mask(nblk);
            __m512i sum = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) {
                __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m,
                                                        _mm512_add_epi32(off_d, _mm512_set1_epi32(2 + 4 * j)), tmp, 1);
                _mm512_store_si512(dst + 64 * j, v);
                sum = _mm512_dpbusd_epi32(sum, ones, v);
            }
            _mm512_store_si512(dst + SB_QS, _mm512_mullo_epi32(sum, negk));
            __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, off_d, tmp, 1);
            _mm512_store_ps(dst + SB_QS + 64, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
        }
    }
}

/* Where one quantized weight row's blocks are: the values of block b at qs + b * qstride, its
 * f16 scale at d + b * dstride (plain Q8_0/Q4_0 rows, or one row of a Q4_0x4 group). */
typedef struct wrow {
    const uint8_t *qs, *d; /* values and scale of block 0 */
    int qstride, dstride;  /* bytes from one block to the next */
} wrow;

static wrow wrow_of(const sl_mm_args *a, int64_t r) {
    if (a->type == SL_TYPE_Q4_0X4) {
        const uint8_t *g = (const uint8_t *)a->W + (size_t)(r / 4) * 4 * a->row_bytes;
        const int64_t nb = a->n / SL_QK4_0;
        return (wrow){g + 16 * (r % 4), g + (size_t)nb * 64 + 2 * (r % 4), 64, 8};
    }
    const uint8_t *row = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
    const int bs = a->type == SL_TYPE_Q8_0 ? (int)sizeof(sl_block_q8_0) : (int)sizeof(sl_block_q4_0);
    return (wrow){row + 2, row, bs, bs};
}

/* Lay out superblocks [s0, s0 + S) of one weight row as W superblocks (WSB_BYTES each). The
 * scale gathers read 4 bytes at each f16 scale: within the row for Q8_0/Q4_0 (values follow),
 * within the group or its 64-byte tail padding for Q4_0x4. */
static void w_repack(bool q8, wrow src, int64_t nb, int64_t s0, int S, uint8_t *dst) {
    const __m512i offq = lane_offsets(src.qstride, 0), offd = lane_offsets(src.dstride, 0);
    const __m512i z = _mm512_setzero_si512();
    for (int s = 0; s < S; s++, dst += WSB_BYTES) {
        int64_t first = (s0 + s) * SB_BLOCKS;
        int64_t nblk = nb - first < SB_BLOCKS ? nb - first : SB_BLOCKS;
        __mmask16 m = x5_mask(nblk);
        const uint8_t *qs = src.qs + (size_t)first * (size_t)src.qstride;
        if (q8) {
            const __m512i bias = _mm512_set1_epi8((char)0x80);
            for (int j = 0; j < 8; j++) {
                __m512i v = _mm512_mask_i32gather_epi32(z, m, _mm512_add_epi32(offq, _mm512_set1_epi32(4 * j)), qs, 1);
                _mm512_store_si512(dst + 64 * j, _mm512_maskz_xor_epi32(m, v, bias));
            }
        } else {
            const __m512i lo4 = _mm512_set1_epi8(0x0f);
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_mask_i32gather_epi32(z, m, _mm512_add_epi32(offq, _mm512_set1_epi32(4 * j)), qs, 1);
                _mm512_store_si512(dst + 64 * j, _mm512_and_si512(v, lo4));
                _mm512_store_si512(dst + 64 * (j + 4), _mm512_and_si512(_mm512_srli_epi32(v, 4), lo4));
            }
        }
        __m512i d = _mm512_mask_i32gather_epi32(z, m, offd, src.d + (size_t)first * (size_t)src.dstride, 1);
        _mm512_store_ps(dst + SB_QS, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
    }
}

/* y[b * ys + r] (= or +=) over S superblocks for NR rows (W superblocks at w + r*wrs) and NT
 * tokens (X superblocks at x + b*xts). */
SL_INLINE void qtile(const int NR, const int NT, const uint8_t *w, size_t wrs, const uint8_t *x, size_t xts, int S,
                     float *y, int64_t ys, bool first) {
    __m512 facc[QR][QT];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) facc[r][b] = _mm512_setzero_ps();
    for (int s = 0; s < S; s++) {
        const uint8_t *ws = w + (size_t)s * WSB_BYTES, *xsb = x + (size_t)s * XSB_BYTES;
        __m512i acc[QR][QT];
#pragma GCC unroll 4
        for (int b = 0; b < NT; b++) {
            __m512i c = _mm512_load_si512(xsb + b * xts + SB_QS);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][b] = c;
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i xv[QT];
#pragma GCC unroll 4
            for (int b = 0; b < NT; b++) xv[b] = _mm512_load_si512(xsb + b * xts + 64 * j);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m512i wv = _mm512_load_si512(ws + r * wrs + 64 * j);
#pragma GCC unroll 4
                for (int b = 0; b < NT; b++) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], wv, xv[b]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512 dw = _mm512_load_ps(ws + r * wrs + SB_QS);
#pragma GCC unroll 4
            for (int b = 0; b < NT; b++) {
                __m512 scale = _mm512_mul_ps(dw, _mm512_load_ps(xsb + b * xts + SB_QS + 64));
                facc[r][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][b]), scale, facc[r][b]);
            }
        }
    }
    const __m512 z = _mm512_setzero_ps();
    const __mmask8 m = (__mmask8)((1u << NR) - 1);
#pragma GCC unroll 4
    for (int b = 0; b < NT; b++) {
        __m128 s = x5_hsum4(facc[0][b], NR > 1 ? facc[1][b] : z, NR > 2 ? facc[2][b] : z, NR > 3 ? facc[3][b] : z);
        float *yb = y + b * ys;
        if (!first) s = _mm_add_ps(s, _mm_maskz_loadu_ps(m, yb));
        _mm_mask_storeu_ps(yb, m, s);
    }
}

typedef void (*qtile_fn)(const uint8_t *w, size_t wrs, const uint8_t *x, size_t xts, int S, float *y, int64_t ys,
                         bool first);
#define QT_FN(NR, NT)                                                                                                   \
    static void qt_##NR##_##NT(const uint8_t *w, size_t wrs, const uint8_t *x, size_t xts, int S, float *y, int64_t ys, \
                               bool first) {                                                                            \
        qtile(NR, NT, w, wrs, x, xts, S, y, ys, first);                                                                 \
    }
#define QT_ROW(NR) QT_FN(NR, 1) QT_FN(NR, 2) QT_FN(NR, 3) QT_FN(NR, 4)
QT_ROW(1) QT_ROW(2) QT_ROW(3) QT_ROW(4)
#define QT_REF_ROW(NR) {qt_##NR##_1, qt_##NR##_2, qt_##NR##_3, qt_##NR##_4}
static const qtile_fn qtiles[QR][QT] = {QT_REF_ROW(1), QT_REF_ROW(2), QT_REF_ROW(3), QT_REF_ROW(4)};

static void mm_rows_quant(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nb = a->n / SL_QK8_0, B = a->B;
    if (B == 1) {
        for (int64_t r = r0; r < r1; r += 4) {
            int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
            qmv_rows(a->type, nr, (const uint8_t *)a->W + (size_t)r * a->row_bytes, a->row_bytes, a->xp, nb, a->Y + r);
        }
        return;
    }
    const int64_t nsb = n_superblocks(a->n);
    const size_t xts = (size_t)nsb * XSB_BYTES;
    int64_t sc = CHUNK_BYTES / ((int64_t)B * XSB_BYTES);
    if (sc < 1) sc = 1;
    if (sc > MAX_CHUNK_SB) sc = MAX_CHUNK_SB;
    _Alignas(64) uint8_t wbuf[QR * MAX_CHUNK_SB * WSB_BYTES];
    for (int64_t s0 = 0; s0 < nsb; s0 += sc) {
        int S = nsb - s0 < sc ? (int)(nsb - s0) : (int)sc;
        size_t wrs = (size_t)S * WSB_BYTES;
        for (int64_t r = r0; r < r1; r += QR) {
            int nr = r1 - r < QR ? (int)(r1 - r) : QR;
            for (int i = 0; i < nr; i++) w_repack(a->type == SL_TYPE_Q8_0, wrow_of(a, r + i), nb, s0, S, wbuf + i * wrs);
            for (int64_t b = 0; b < B; b += QT) {
                int nt = B - b < QT ? (int)(B - b) : QT;
                qtiles[nr - 1][nt - 1](wbuf, wrs, (const uint8_t *)a->xp + (size_t)b * xts + (size_t)s0 * XSB_BYTES, xts,
                                       S, a->Y + b * a->rows + r, a->rows, s0 == 0);
            }
        }
    }
}

void sl_x5_mm_rows(const sl_mm_args *a, int64_t r0, int64_t r1) {
    if (a->type == SL_TYPE_Q4_0X4 && a->B == 1) mv4_rows(a, r0, r1);
    else if (a->type == SL_TYPE_Q8_0 || a->type == SL_TYPE_Q4_0 || a->type == SL_TYPE_Q4_0X4) mm_rows_quant(a, r0, r1);
    else mm_rows_float(a, r0, r1);
}
