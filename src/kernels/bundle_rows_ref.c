/*
 * bundle_rows_ref.c — the scalar definitions of the row-group kernels for the
 * neuron-bundle row layouts Q4_0N and Q8_0N (quant.h): what bundle_rows_avx512.c must
 * reproduce up to the order of float additions, and what every other kernel variant runs for
 * these layouts.
 *
 * dot: the block products of sl_vec_dot_ref (Q4_0 or Q8_0 block against x prepared as
 * sl_act_prepare does: Q8_0 blocks), summed block after block.
 * axpy: the down sum with the coefficients rounded to int8 per block (sparse_mlp.h says how and
 * bounds the error). What it is not: fast — it rebuilds every block.
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"
#include "format/quant.h"

#include <math.h>

/* Block b of a bundle row as its scale and 32 signed values (Q4_0: nibble - 8). */
static float block_values(sl_type t, const uint8_t *row, int64_t n, int64_t b, int v[32]) {
    if (t == SL_TYPE_Q4_0N) {
        sl_block_q4_0 blk;
        sl_q4_0n_get_block(row, n, b, &blk);
        for (int j = 0; j < 16; j++) {
            v[j] = (blk.qs[j] & 0x0f) - 8;
            v[j + 16] = (blk.qs[j] >> 4) - 8;
        }
        return sl_fp16_to_fp32(blk.d);
    }
    sl_block_q8_0 blk;
    sl_q8_0n_get_block(row, n, b, &blk);
    for (int j = 0; j < 32; j++) v[j] = blk.qs[j];
    return sl_fp16_to_fp32(blk.d);
}

void sl_sp_dot_rows_bundle_ref(sl_type t, const uint8_t *const *rows, int nr, const void *xq, int64_t n, float *out) {
    const sl_block_q8_0 *xb = xq;
    for (int r = 0; r < nr; r++) {
        float sum = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            if (t == SL_TYPE_Q4_0N) {
                sl_block_q4_0 blk;
                sl_q4_0n_get_block(rows[r], n, b, &blk);
                sum += sl_vec_dot_ref(SL_TYPE_Q4_0, &blk, &xb[b], 32);
            } else {
                sl_block_q8_0 blk;
                sl_q8_0n_get_block(rows[r], n, b, &blk);
                sum += sl_vec_dot_ref(SL_TYPE_Q8_0, &blk, &xb[b], 32);
            }
        }
        out[r] = sum;
    }
}

void sl_sp_axpy_rows_bundle_ref(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        int v[SP_MAX_ROWS][32];
        float c[SP_MAX_ROWS], m = 0.0f;
        for (int r = 0; r < nr; r++) {
            c[r] = block_values(t, rows[r], n, b, v[r]) * a[r];
            m = fmaxf(m, fabsf(c[r]));
        }
        const float inv = m > 0.0f ? 127.0f / m : 0.0f, S = m / 127.0f;
        int32_t k[SP_MAX_ROWS];
        for (int r = 0; r < nr; r++) {
            const float q = c[r] * inv;
            k[r] = q >= -127.5f && q <= 127.5f ? (int32_t)lrintf(q) : 0; /* NaN or overflow: 0 */
        }
        for (int j = 0; j < 32; j++) {
            int32_t s = 0;
            for (int r = 0; r < nr; r++) s += k[r] * v[r][j];
            y[32 * b + j] += S * (float)s;
        }
    }
}

void sl_sp_col_axpy_ref(sl_type t, const uint8_t *const *rows, const int8_t *k, int nr, float dx, const uint16_t *d, float *y,
                        int64_t n, const uint8_t *const *next, int nnext) {
    for (int r = 0; r < nnext; r++) __builtin_prefetch(next[r], 0, 1);
    const int off = t == SL_TYPE_Q4_0C ? 8 : 0;
    for (int64_t e = 0; e < n; e++) {
        int32_t s = 0;
        for (int r = 0; r < nr; r++) s += k[r] * (sl_col_get(t, rows[r], e) - off);
        y[e] += sl_fp16_to_fp32(d[e]) * dx * (float)s;
    }
}
