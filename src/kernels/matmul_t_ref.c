/*
 * matmul_t_ref.c — the transposed product's definition and its scalar variant (kernels.h,
 * sl_matmul_t): Y[b, c] = sum over k, in order, of X[b, k] * (row k dequantized)[c], in f32.
 * What it is not: fast; the AVX2 variant (matmul_t_avx2.c) computes the same sums in tiles.
 */
#include "kernels/kernels_impl.h"

#include "format/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Elements [c0, c0 + cnt) of a row of type t (n elements) as f32; c0 and cnt multiples of 32
 * for the block types (or cnt reaching n). */
static void row_slice(sl_type t, const uint8_t *row, int64_t n, int64_t c0, int64_t cnt, float *out) {
    if (t == SL_TYPE_Q4_0N || t == SL_TYPE_Q8_0N) {
        for (int64_t b = c0 / 32; b < (c0 + cnt + 31) / 32; b++) {
            float v[32];
            if (t == SL_TYPE_Q4_0N) {
                sl_block_q4_0 q;
                sl_q4_0n_get_block(row, n, b, &q);
                sl_dequantize_row_ref(SL_TYPE_Q4_0, &q, v, 32);
            } else {
                sl_block_q8_0 q;
                sl_q8_0n_get_block(row, n, b, &q);
                sl_dequantize_row_ref(SL_TYPE_Q8_0, &q, v, 32);
            }
            for (int j = 0; j < 32 && 32 * b + j < c0 + cnt; j++) out[32 * b + j - c0] = v[j];
        }
        return;
    }
    const size_t es = t == SL_TYPE_F32 ? 4 : 2;
    sl_dequantize_row_ref(t, row + (size_t)c0 * es, out, cnt);
}

void sl_mt_cols_scalar(const sl_mt_args *a, int64_t c0, int64_t c1) {
    float w[128];
    for (int64_t c = c0; c < c1; c += 128) {
        const int64_t cnt = c1 - c < 128 ? c1 - c : 128;
        for (int64_t b = 0; b < a->B; b++)
            for (int64_t j = 0; j < cnt; j++) a->Y[b * a->N + c + j] = 0.0f;
        for (int64_t k = 0; k < a->K; k++) {
            row_slice(a->type, a->Wt + (size_t)k * a->stride, a->N, c, cnt, w);
            for (int64_t b = 0; b < a->B; b++) {
                const float x = a->X[b * a->K + k];
                float *y = a->Y + b * a->N + c;
                for (int64_t j = 0; j < cnt; j++) y[j] += x * w[j];
            }
        }
    }
}

void sl_matmul_t_ref(sl_type type, const void *Wt, size_t stride, int64_t K, int64_t N, const float *X, int64_t B, float *Y) {
    if (N <= 0 || B <= 0) return;
    float *w = malloc((size_t)N * sizeof(float));
    if (!w) { /* the definition cannot run: make that visible */
        for (int64_t i = 0; i < B * N; i++) Y[i] = NAN;
        return;
    }
    memset(Y, 0, (size_t)(B * N) * sizeof(float));
    for (int64_t k = 0; k < K; k++) {
        sl_dequantize_row_ref(type, (const uint8_t *)Wt + (size_t)k * stride, w, N);
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < N; c++) Y[b * N + c] += X[b * K + k] * w[c];
    }
    free(w);
}
