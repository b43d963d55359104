/*
 * matmul_ref.c — scalar reference for weight-times-activation products (see kernels.h), and the
 * scalar variant's matmul pieces. sl_matmul_ref defines the meaning every variant is tested
 * against (f32 activations); the scalar variant mirrors what the SIMD variants compute
 * (Q8_0 activations for quantized weights) with plain loops. Not fast on purpose.
 */
#include "kernels/kernels_impl.h"

static bool is_quantized(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0 || t == SL_TYPE_Q4_0X4; }

/* Row r of a Q4_0x4 matrix against f32 x: block by block, in the order sl_dot_row_ref sums. */
static float dot_q4_0x4_f32(const void *W, int64_t r, const float *x, int64_t n) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SL_QK4_0; b++) {
        sl_block_q4_0 blk;
        sl_q4_0x4_get_block(W, n, r, b, &blk);
        sum += sl_dot_row_ref(SL_TYPE_Q4_0, &blk, x + b * SL_QK4_0, SL_QK4_0);
    }
    return sum;
}

/* Row r of a Q4_0x4 matrix against Q8_0 activations: the same block sums, in the same order, as
 * sl_vec_dot_ref on the Q4_0 row it was repacked from, so the two are bit-identical. */
static float dot_q4_0x4_q8(const void *W, int64_t r, const sl_block_q8_0 *xb, int64_t n) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / SL_QK4_0; b++) {
        sl_block_q4_0 blk;
        sl_q4_0x4_get_block(W, n, r, b, &blk);
        sum += sl_vec_dot_ref(SL_TYPE_Q4_0, &blk, &xb[b], SL_QK4_0); /* exactly that block's term */
    }
    return sum;
}

void sl_matmul_ref(sl_type type, const void *W, int64_t rows, int64_t n, const float *X, int64_t B, float *Y, int ith,
                   int nth) {
    long long r0, r1;
    sl_split_range(rows, ith, nth, &r0, &r1);
    if (type == SL_TYPE_Q4_0X4) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t b = 0; b < B; b++) Y[b * rows + r] = dot_q4_0x4_f32(W, r, X + b * n, n);
        return;
    }
    size_t row_bytes = sl_type_row_size(type, n);
    for (int64_t r = r0; r < r1; r++) {
        const void *w = (const uint8_t *)W + (size_t)r * row_bytes;
        for (int64_t b = 0; b < B; b++) Y[b * rows + r] = sl_dot_row_ref(type, w, X + b * n, n);
    }
}

size_t sl_mm_prep_size_scalar(sl_type type, int64_t n, int64_t B) {
    return is_quantized(type) ? (size_t)B * sl_act_size(SL_TYPE_Q8_0, n) : 0;
}

void sl_mm_prep_scalar(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    (void)B;
    size_t stride = sl_act_size(SL_TYPE_Q8_0, n);
    for (int64_t b = b0; b < b1; b++) sl_quantize_row_ref(SL_TYPE_Q8_0, X + b * n, (uint8_t *)xp + (size_t)b * stride, n);
}

void sl_mm_rows_scalar(const sl_mm_args *a, int64_t r0, int64_t r1) {
    size_t stride = sl_act_size(SL_TYPE_Q8_0, a->n);
    if (a->type == SL_TYPE_Q4_0X4) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t b = 0; b < a->B; b++)
                a->Y[b * a->rows + r] = dot_q4_0x4_q8(a->W, r, (const sl_block_q8_0 *)((const uint8_t *)a->xp + (size_t)b * stride), a->n);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const void *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
        for (int64_t b = 0; b < a->B; b++) {
            float *y = a->Y + b * a->rows + r;
            if (is_quantized(a->type)) *y = sl_vec_dot_ref(a->type, w, (const uint8_t *)a->xp + (size_t)b * stride, a->n);
            else *y = sl_dot_row_ref(a->type, w, a->X + b * a->n, a->n);
        }
    }
}

/* ---- the kq types (kernels_impl.h): activations in sl_act_prepare's form, token by token ---- */

size_t sl_kq_mm_prep_size_scalar(sl_type type, int64_t n, int64_t B) { return (size_t)B * sl_act_size(type, n); }

void sl_kq_mm_prep_scalar(sl_type type, const float *X, int64_t n, int64_t B, int64_t b0, int64_t b1, void *xp) {
    (void)B;
    const size_t stride = sl_act_size(type, n);
    for (int64_t b = b0; b < b1; b++) sl_quantize_row_ref(sl_act_type_of(type), X + b * n, (uint8_t *)xp + (size_t)b * stride, n);
}

void sl_kq_mm_rows_scalar(const sl_mm_args *a, int64_t r0, int64_t r1) {
    const size_t stride = sl_act_size(a->type, a->n);
    for (int64_t r = r0; r < r1; r++) {
        const void *w = (const uint8_t *)a->W + (size_t)r * a->row_bytes;
        for (int64_t b = 0; b < a->B; b++)
            a->Y[b * a->rows + r] = sl_vec_dot_ref(a->type, w, (const uint8_t *)a->xp + (size_t)b * stride, a->n);
    }
}
