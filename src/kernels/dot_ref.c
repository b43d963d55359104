/*
 * dot_ref.c — scalar references for prepared-activation dot products and row axpy
 * (see kernels.h). For Q8_0/Q4_0 weights the activation is Q8_0, so the per-block sum is an
 * exact integer, exactly as in ggml's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0. These are also
 * the scalar variant's kernels on CPUs without AVX2. Not fast on purpose.
 */
#include "kernels/kernels_impl.h"

static bool act_is_q8(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0; }

size_t sl_act_size(sl_type wtype, int64_t n) {
    return act_is_q8(wtype) ? sl_type_row_size(SL_TYPE_Q8_0, n) : (size_t)n * sizeof(float);
}

void sl_quantize_q8_scalar(const float *x, void *blocks, int64_t n) { sl_quantize_row_ref(SL_TYPE_Q8_0, x, blocks, n); }

float sl_vec_dot_ref(sl_type wtype, const void *w, const void *act, int64_t n) {
    if (!act_is_q8(wtype)) return sl_dot_row_ref(wtype, w, act, n);
    const sl_block_q8_0 *xb = act;
    float sum = 0.0f;
    if (wtype == SL_TYPE_Q8_0) {
        const sl_block_q8_0 *wb = w;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            int s = 0;
            for (int j = 0; j < SL_QK8_0; j++) s += wb[i].qs[j] * xb[i].qs[j];
            sum += sl_fp16_to_fp32(wb[i].d) * sl_fp16_to_fp32(xb[i].d) * (float)s;
        }
    } else {
        const sl_block_q4_0 *wb = w;
        for (int64_t i = 0; i < n / SL_QK4_0; i++) {
            int s = 0;
            for (int j = 0; j < SL_QK4_0 / 2; j++) {
                s += ((wb[i].qs[j] & 0x0f) - 8) * xb[i].qs[j];
                s += ((wb[i].qs[j] >> 4) - 8) * xb[i].qs[j + SL_QK4_0 / 2];
            }
            sum += sl_fp16_to_fp32(wb[i].d) * sl_fp16_to_fp32(xb[i].d) * (float)s;
        }
    }
    return sum;
}

void sl_vec_axpy_ref(sl_type wtype, const void *w, float a, float *y, int64_t n) {
    switch (wtype) {
    case SL_TYPE_F32: {
        const float *r = w;
        for (int64_t i = 0; i < n; i++) y[i] += a * r[i];
        break;
    }
    case SL_TYPE_F16: {
        const uint16_t *r = w;
        for (int64_t i = 0; i < n; i++) y[i] += a * sl_fp16_to_fp32(r[i]);
        break;
    }
    case SL_TYPE_BF16: {
        const uint16_t *r = w;
        for (int64_t i = 0; i < n; i++) y[i] += a * sl_bf16_to_fp32(r[i]);
        break;
    }
    case SL_TYPE_Q8_0: {
        const sl_block_q8_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            float ad = a * sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SL_QK8_0; j++) y[i * SL_QK8_0 + j] += ad * (float)b[i].qs[j];
        }
        break;
    }
    case SL_TYPE_Q4_0: {
        const sl_block_q4_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK4_0; i++) {
            float ad = a * sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SL_QK4_0 / 2; j++) {
                y[i * SL_QK4_0 + j] += ad * (float)((b[i].qs[j] & 0x0f) - 8);
                y[i * SL_QK4_0 + j + SL_QK4_0 / 2] += ad * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    }
}
