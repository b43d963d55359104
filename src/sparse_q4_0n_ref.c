/*
 * sparse_q4_0n_ref.c — the scalar definitions of the row-group kernels for Q4_0N rows (the
 * neuron-bundle layout of Q4_0, quant.h): what sparse_q4_0n_avx512.c must reproduce up to the
 * order of float additions, and what every other kernel variant runs for this layout.
 *
 * dot: the Q4_0 block products of sl_vec_dot_ref against x prepared as sl_act_prepare does
 * (Q8_0 blocks), summed block after block.
 * axpy: the down sum with the coefficients rounded to int8 per block (sparse_mlp.h says how and
 * bounds the error). What it is not: fast — it rebuilds every block.
 */
#include "sparse_mlp.h"

#include "kernels/kernels.h"
#include "quant.h"

#include <math.h>

void sl_sp_dot_rows_q4_0n_ref(const uint8_t *const *rows, int nr, const void *xq, int64_t n, float *out) {
    const sl_block_q8_0 *xb = xq;
    for (int r = 0; r < nr; r++) {
        float sum = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            sl_block_q4_0 blk;
            sl_q4_0n_get_block(rows[r], n, b, &blk);
            sum += sl_vec_dot_ref(SL_TYPE_Q4_0, &blk, &xb[b], 32);
        }
        out[r] = sum;
    }
}

void sl_sp_axpy_rows_q4_0n_ref(const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        sl_block_q4_0 blk[SP_MAX_ROWS];
        float c[SP_MAX_ROWS], m = 0.0f;
        for (int r = 0; r < nr; r++) {
            sl_q4_0n_get_block(rows[r], n, b, &blk[r]);
            c[r] = sl_fp16_to_fp32(blk[r].d) * a[r];
            m = fmaxf(m, fabsf(c[r]));
        }
        const float inv = m > 0.0f ? 127.0f / m : 0.0f, S = m / 127.0f;
        int32_t k[SP_MAX_ROWS];
        for (int r = 0; r < nr; r++) {
            const float v = c[r] * inv;
            k[r] = v >= -127.5f && v <= 127.5f ? (int32_t)lrintf(v) : 0; /* NaN or overflow: 0 */
        }
        for (int j = 0; j < 16; j++) {
            int32_t lo = 0, hi = 0;
            for (int r = 0; r < nr; r++) {
                lo += k[r] * ((blk[r].qs[j] & 0x0f) - 8);
                hi += k[r] * ((blk[r].qs[j] >> 4) - 8);
            }
            y[32 * b + j] += S * (float)lo;
            y[32 * b + j + 16] += S * (float)hi;
        }
    }
}
