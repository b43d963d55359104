/*
 * quant_iq.c — the non-linear 4-bit types IQ4_NL (blocks of 32) and IQ4_XS (super-blocks of 256
 * with 6-bit sub-block scales), see quant.h. Values are indices into ggml's fixed table
 * sl_iq4nl_values. Decoding is bit-exact with ggml's dequantize_row_iq4_*; encoding makes the
 * bytes of ggml_quantize_chunk without an importance matrix (ggml's quantize_row_iq4_nl_impl with
 * 7 trial scales on each side, weights x^2). What it is not: the other IQ types (codebooks).
 */
#include "format/quant_impl.h"

const int8_t sl_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

#define GROUP_MAX_EPS 1e-15f

/* The level nearest to x in the sorted table (ties go up): the largest j with
 * 2x >= val[j-1] + val[j], by branch-free binary search; NaN gives 0. */
static inline int best_index(const int8_t *val, float x) {
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = idx + step;
        idx = x2 >= (float)(val[j - 1] + val[j]) ? j : idx;
    }
    return idx;
}

/* One super-block of sb elements in sub-blocks of 32 (sb == 32: IQ4_NL, 256: IQ4_XS). */
static void iq4_block(int sb, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h, uint8_t *scales_l) {
    const int8_t *values = sl_iq4nl_values;
    const int ntry = 7;
    float scales[8], weight[32];
    uint8_t L[SL_QK_K];
    memset(q4, 0, (size_t)sb / 2);
    *dh = sl_fp32_to_fp16(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ib++) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, 32);
            continue;
        }
        float d = -max / values[0], id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = best_index(values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const float q = values[best_index(values, id * xb[j])], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    if (sb > 32) {
        *scales_h = 0;
        const float d = -max_scale / 32;
        *dh = sl_fp32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < sb / 32; ib++) {
            int l = sl_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * l, idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)best_index(values, idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0) scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    } else {
        *dh = sl_fp32_to_fp16(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index(values, id * x[j]);
    }
    for (int i = 0; i < sb / 32; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

bool sl_iq_quantize(sl_type type, const float *x, void *dst, int64_t n) {
    if (type == SL_TYPE_IQ4_NL) {
        sl_block_iq4_nl *b = dst;
        for (int64_t i = 0; i < n / 32; i++) iq4_block(32, x + 32 * i, &b[i].d, b[i].qs, NULL, NULL);
        return true;
    }
    if (type == SL_TYPE_IQ4_XS) {
        sl_block_iq4_xs *b = dst;
        for (int64_t i = 0; i < n / SL_QK_K; i++) iq4_block(SL_QK_K, x + SL_QK_K * i, &b[i].d, b[i].qs, &b[i].scales_h, b[i].scales_l);
        return true;
    }
    return false;
}

bool sl_iq_dequantize(sl_type type, const void *src, float *y, int64_t n) {
    const int8_t *kv = sl_iq4nl_values;
    if (type == SL_TYPE_IQ4_NL) {
        const sl_block_iq4_nl *b = src;
        for (int64_t i = 0; i < n / 32; i++, y += 32) {
            const float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 16; j++) {
                y[j] = d * kv[b[i].qs[j] & 0xf];
                y[j + 16] = d * kv[b[i].qs[j] >> 4];
            }
        }
        return true;
    }
    if (type == SL_TYPE_IQ4_XS) {
        const sl_block_iq4_xs *b = src;
        for (int64_t i = 0; i < n / SL_QK_K; i++) {
            const float d = sl_fp16_to_fp32(b[i].d);
            const uint8_t *qs = b[i].qs;
            for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
                const int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b[i].scales_h >> 2 * ib) & 3) << 4);
                const float dl = d * (ls - 32);
                for (int j = 0; j < 16; j++) {
                    y[j] = dl * kv[qs[j] & 0xf];
                    y[j + 16] = dl * kv[qs[j] >> 4];
                }
            }
        }
        return true;
    }
    return false;
}
