/*
 * quant_legacy.c — the 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the activation
 * format Q8_1 (see quant.h for the layouts). Decoding is bit-exact with ggml's dequantize_row_*;
 * encoding makes the bytes of ggml's quantize_row_*_ref (what llama.cpp's quantizer writes for
 * these types without an importance matrix): Q4_0 and Q5_0 take the scale from the element of
 * largest magnitude (keeping its sign, so it maps to the lowest level), Q4_1 and Q5_1 spread
 * [min, max] over the levels. What it is not: the K-quants (quant_k.c) or fast code.
 */
#include "format/quant_impl.h"

#include <float.h>

/* fifth bits of a Q5 block: bit j of qh is element j's bit 4 */
static uint32_t qh_word(const uint8_t qh[4]) { return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24; }
static void qh_store(uint8_t qh[4], uint32_t w) {
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(w >> (8 * k));
}

bool sl_legacy_dequantize(sl_type type, const void *src, float *y, int64_t n) {
    const int64_t nb = n / 32;
    switch ((int)type) {
    case SL_TYPE_Q4_0: {
        const sl_block_q4_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 16; j++) {
                y[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
                y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        return true;
    }
    case SL_TYPE_Q4_1: {
        const sl_block_q4_1 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d), m = sl_fp16_to_fp32(b[i].m);
            for (int j = 0; j < 16; j++) {
                y[j] = (float)(b[i].qs[j] & 0x0f) * d + m;
                y[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
            }
        }
        return true;
    }
    case SL_TYPE_Q5_0: {
        const sl_block_q5_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d);
            const uint32_t qh = qh_word(b[i].qh);
            for (int j = 0; j < 16; j++) {
                const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = (float)(((b[i].qs[j] & 0x0f) | h0) - 16) * d;
                y[j + 16] = (float)(((b[i].qs[j] >> 4) | h1) - 16) * d;
            }
        }
        return true;
    }
    case SL_TYPE_Q5_1: {
        const sl_block_q5_1 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d), m = sl_fp16_to_fp32(b[i].m);
            const uint32_t qh = qh_word(b[i].qh);
            for (int j = 0; j < 16; j++) {
                const int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = (float)((b[i].qs[j] & 0x0f) | h0) * d + m;
                y[j + 16] = (float)((b[i].qs[j] >> 4) | h1) * d + m;
            }
        }
        return true;
    }
    case SL_TYPE_Q8_0: {
        const sl_block_q8_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 32; j++) y[j] = (float)b[i].qs[j] * d;
        }
        return true;
    }
    case SL_TYPE_Q8_1: {
        const sl_block_q8_1 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 32; j++) y[j] = (float)b[i].qs[j] * d;
        }
        return true;
    }
    default: return false;
    }
}

/* scale from the element of largest magnitude, sign kept: it maps to level -nmax */
static float signed_max(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Q8_0 / Q8_1 values of one block and their sum (ggml: roundf of x / d, d = amax / 127) */
static int q8_block(const float *x, int8_t *qs, uint16_t *dh, float *dout) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    *dh = sl_fp32_to_fp16(d);
    *dout = d;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        /* issue 8 (found by fuzz_model): NaN/inf weights must not reach an integer conversion */
        const float v = roundf(x[j] * id);
        qs[j] = (int8_t)(v >= -128.0f && v <= 127.0f ? v : v > 0 ? 127.0f : v < 0 ? -128.0f : 0.0f);
        sum += qs[j];
    }
    return sum;
}

bool sl_legacy_quantize(sl_type type, const float *x, void *dst, int64_t n) {
    const int64_t nb = n / 32;
    switch ((int)type) {
    case SL_TYPE_Q4_0: {
        sl_block_q4_0 *b = dst;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            const float d = signed_max(x) / -8.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            for (int j = 0; j < 16; j++) {
                const int q0 = sl_trunc_clamp(x[j] * id + 8.5f, 0, 15, 8), q1 = sl_trunc_clamp(x[j + 16] * id + 8.5f, 0, 15, 8);
                b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
            }
        }
        return true;
    }
    case SL_TYPE_Q4_1: {
        sl_block_q4_1 *b = dst;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            float mn, mx;
            min_max(x, &mn, &mx);
            const float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            b[i].m = sl_fp32_to_fp16(mn);
            for (int j = 0; j < 16; j++) {
                const int q0 = sl_trunc_clamp((x[j] - mn) * id + 0.5f, 0, 15, 0);
                const int q1 = sl_trunc_clamp((x[j + 16] - mn) * id + 0.5f, 0, 15, 0);
                b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
            }
        }
        return true;
    }
    case SL_TYPE_Q5_0: {
        sl_block_q5_0 *b = dst;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            const float d = signed_max(x) / -16.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                const int q0 = sl_trunc_clamp(x[j] * id + 16.5f, 0, 31, 16), q1 = sl_trunc_clamp(x[j + 16] * id + 16.5f, 0, 31, 16);
                b[i].qs[j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
                qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
            }
            qh_store(b[i].qh, qh);
        }
        return true;
    }
    case SL_TYPE_Q5_1: {
        sl_block_q5_1 *b = dst;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            float mn, mx;
            min_max(x, &mn, &mx);
            const float d = (mx - mn) / 31.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            b[i].m = sl_fp32_to_fp16(mn);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                const int q0 = sl_trunc_clamp((x[j] - mn) * id + 0.5f, 0, 31, 0);
                const int q1 = sl_trunc_clamp((x[j + 16] - mn) * id + 0.5f, 0, 31, 0);
                b[i].qs[j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
                qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
            }
            qh_store(b[i].qh, qh);
        }
        return true;
    }
    case SL_TYPE_Q8_0: {
        sl_block_q8_0 *b = dst;
        float d;
        for (int64_t i = 0; i < nb; i++, x += 32) q8_block(x, b[i].qs, &b[i].d, &d);
        return true;
    }
    case SL_TYPE_Q8_1: {
        sl_block_q8_1 *b = dst;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            float d;
            const int sum = q8_block(x, b[i].qs, &b[i].d, &d);
            b[i].s = sl_fp32_to_fp16((float)sum * d);
        }
        return true;
    }
    default: return false;
    }
}
