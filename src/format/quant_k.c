/*
 * quant_k.c — the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-element super-blocks) and the
 * activation format Q8_K (see quant.h for the layouts).
 *
 * Decoding is bit-exact with ggml's dequantize_row_*: the same float products in the same order.
 * Encoding makes the bytes of ggml's quantize_row_*_ref, which llama.cpp's quantizer uses when no
 * importance matrix is given: per sub-block a scale (and for Q2_K/Q4_K/Q5_K a minimum) chosen by
 * a small search that minimises a weighted error, then the sub-block scales quantized against
 * the super-block scale, then every value re-rounded against its final scale. The searches are
 * written from the description of ggml's algorithm, operation for operation, so that float
 * rounding (and so every byte) matches. What it is not: an importance-matrix quantizer or fast.
 */
#include "format/quant_impl.h"

#define GROUP_MAX_EPS 1e-15f

static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }

/* ---- searches (ggml's make_qx_quants, make_q3_quants, make_qkx2_quants) ---------------------- */

/* Signed levels -nmax..nmax-1 (stored + nmax) with an RMSE-weighted scale search (weights x^2),
 * used by Q6_K (rmse_type 1, no quant weights). */
static float qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, sl_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, sl_nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, sl_nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block search: start from the max-magnitude scale, then move single values while
 * that improves the weighted fit (up to 5 passes). */
static float q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, sl_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = imax(-nmax, imin(nmax - 1, sl_nearest_int(x[i] * sl2 / slx)));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Levels 0..nmax with a minimum: least-squares (scale, min) fits over a sweep of nstep + 1
 * trial scales, keeping the best weighted error (absolute with use_mad, else squared). Returns
 * the scale; *the_min = -min (>= 0). */
static float qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux,
                         float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = sl_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, sl_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 scales of a Q3_K super-block (offset 32 still applied). */
static void q3_scales(const uint8_t s[12], int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
        out[j] = (int8_t)(lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
    }
}

/* 2-bit fields: element 128h + 32s + l <-> bits 2s of byte 32h + l */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < SL_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins (shared by both encoders). */
static void k4_scales(const float *x, int nmax, uint8_t *L, uint16_t *dh, uint16_t *dminh, uint8_t scales[12], float rmin,
                      int nstep) {
    float mins[8], sc[8], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        sc[j] = qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)sl_nearest_int(inv_scale * sc[j]), lm = (uint8_t)sl_nearest_int(inv_min * mins[j]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            scales[j] = ls;
            scales[j + 4] = lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *dh = sl_fp32_to_fp16(max_scale / 63.f);
    *dminh = sl_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        scale_min_k4(j, scales, &s, &m);
        const float d = sl_fp16_to_fp32(*dh) * s;
        if (!d) continue;
        const float dm = sl_fp16_to_fp32(*dminh) * m;
        for (int ii = 0; ii < 32; ii++) L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, sl_nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

/* ---- encoders ---------------------------------------------------------------------------------- */

static void quantize_q2_K(const float *x, sl_block_q2_K *y, int64_t nb) {
    uint8_t L[SL_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)sl_nearest_int(iscale * scales[j]);
            y[i].d = sl_fp32_to_fp16(max_scale / 15.f);
        } else {
            for (int j = 0; j < 16; j++) y[i].scales[j] = 0;
            y[i].d = sl_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) y[i].scales[j] |= (uint8_t)(sl_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = sl_fp32_to_fp16(max_min / 15.f);
        } else {
            y[i].dmin = sl_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = sl_fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xf);
            if (!d) continue;
            const float dm = sl_fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) L[16 * j + ii] = (uint8_t)imax(0, imin(3, sl_nearest_int((x[16 * j + ii] + dm) / d)));
        }
        pack_2bit(L, y[i].qs);
    }
}

static void quantize_q3_K(const float *x, sl_block_q3_K *y, int64_t nb) {
    int8_t L[SL_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = imax(-32, imin(31, (int8_t)sl_nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xf);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = sl_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = sl_fp32_to_fp16(0.f);
        }
        int8_t sc[16];
        q3_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float d = sl_fp16_to_fp32(y[i].d) * (int8_t)(sc[j] - 32);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) L[16 * j + ii] = (int8_t)(imax(-4, imin(3, sl_nearest_int(x[16 * j + ii] / d))) + 4);
        }
        memset(y[i].hmask, 0, 32);
        uint8_t *U = (uint8_t *)L;
        for (int j = 0; j < SL_QK_K; j++) {
            if (U[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                U[j] -= 4;
            }
        }
        pack_2bit(U, y[i].qs);
    }
}

static void quantize_q4_K(const float *x, sl_block_q4_K *y, int64_t nb) {
    uint8_t L[SL_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        memset(y[i].scales, 0, 12);
        k4_scales(x, 15, L, &y[i].d, &y[i].dmin, y[i].scales, -1.f, 20);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + l + 32] << 4));
    }
}

static void quantize_q5_K(const float *x, sl_block_q5_K *y, int64_t nb) {
    uint8_t L[SL_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        memset(y[i].scales, 0, 12);
        k4_scales(x, 31, L, &y[i].d, &y[i].dmin, y[i].scales, -0.5f, 15);
        memset(y[i].qh, 0, 32);
        for (int h = 0; h < 4; h++)
            for (int j = 0; j < 32; j++) {
                int l1 = L[64 * h + j], l2 = L[64 * h + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[j] |= (uint8_t)(1u << (2 * h));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[j] |= (uint8_t)(2u << (2 * h));
                }
                y[i].qs[32 * h + j] = (uint8_t)(l1 | (l2 << 4));
            }
    }
}

static void quantize_q6_K(const float *x, sl_block_q6_K *y, int64_t nb) {
    int8_t L[SL_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = sl_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)imin(127, sl_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            const float d = sl_fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) L[16 * j + ii] = (int8_t)(imax(-32, imin(31, sl_nearest_int(x[16 * j + ii] / d))) + 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const uint8_t *U = (const uint8_t *)L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((U[l] & 0xf) | ((U[l + 64] & 0xf) << 4));
                ql[l + 32] = (uint8_t)((U[l + 32] & 0xf) | ((U[l + 96] & 0xf) << 4));
                qh[l] = (uint8_t)((U[l] >> 4) | ((U[l + 32] >> 4) << 2) | ((U[l + 64] >> 4) << 4) | ((U[l + 96] >> 4) << 6));
            }
        }
    }
}

/* Q8_K (ggml's quantize_row_q8_K_ref, which x86 uses for activations): d = max / -127 of the
 * element of largest magnitude (so d may be negative), values rounded half to even. */
static void quantize_q8_K(const float *x, sl_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SL_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < SL_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, SL_QK_K);
            memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < SL_QK_K; j++) y[i].qs[j] = (int8_t)imax(-128, imin(127, sl_nearest_int(iscale * x[j])));
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

bool sl_k_quantize(sl_type type, const float *x, void *dst, int64_t n) {
    const int64_t nb = n / SL_QK_K;
    switch ((int)type) {
    case SL_TYPE_Q2_K: quantize_q2_K(x, dst, nb); return true;
    case SL_TYPE_Q3_K: quantize_q3_K(x, dst, nb); return true;
    case SL_TYPE_Q4_K: quantize_q4_K(x, dst, nb); return true;
    case SL_TYPE_Q5_K: quantize_q5_K(x, dst, nb); return true;
    case SL_TYPE_Q6_K: quantize_q6_K(x, dst, nb); return true;
    case SL_TYPE_Q8_K: quantize_q8_K(x, dst, nb); return true;
    default: return false;
    }
}

/* ---- decoders ---------------------------------------------------------------------------------- */

bool sl_k_dequantize(sl_type type, const void *src, float *y, int64_t n) {
    const int64_t nb = n / SL_QK_K;
    switch ((int)type) {
    case SL_TYPE_Q2_K: {
        const sl_block_q2_K *b = src;
        for (int64_t i = 0; i < nb; i++) {
            const float d = sl_fp16_to_fp32(b[i].d), min = sl_fp16_to_fp32(b[i].dmin);
            const uint8_t *q = b[i].qs;
            int is = 0;
            for (int h = 0; h < 2; h++, q += 32)
                for (int shift = 0; shift < 8; shift += 2)
                    for (int half = 0; half < 2; half++) {
                        const uint8_t sc = b[i].scales[is++];
                        const float dl = d * (sc & 0xf), ml = min * (sc >> 4);
                        for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * half + l] >> shift) & 3) - ml;
                    }
        }
        return true;
    }
    case SL_TYPE_Q3_K: {
        const sl_block_q3_K *b = src;
        for (int64_t i = 0; i < nb; i++) {
            const float d_all = sl_fp16_to_fp32(b[i].d);
            int8_t sc[16];
            q3_scales(b[i].scales, sc);
            const uint8_t *q = b[i].qs;
            int is = 0;
            uint8_t m = 1;
            for (int h = 0; h < 2; h++, q += 32)
                for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                    for (int half = 0; half < 2; half++) {
                        const float dl = d_all * (sc[is++] - 32);
                        for (int l = 0; l < 16; l++) {
                            const int k = 16 * half + l;
                            *y++ = dl * (float)(((q[k] >> shift) & 3) - ((b[i].hmask[k] & m) ? 0 : 4));
                        }
                    }
        }
        return true;
    }
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K: {
        const bool five = type == SL_TYPE_Q5_K;
        const size_t bs = five ? sizeof(sl_block_q5_K) : sizeof(sl_block_q4_K);
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *blk = (const uint8_t *)src + (size_t)i * bs;
            uint16_t dh, mh;
            memcpy(&dh, blk, 2);
            memcpy(&mh, blk + 2, 2);
            const uint8_t *scales = blk + 4, *qh = five ? blk + 16 : NULL, *q = blk + (five ? 48 : 16);
            const float d = sl_fp16_to_fp32(dh), min = sl_fp16_to_fp32(mh);
            for (int h = 0; h < 4; h++, q += 32) {
                uint8_t s, m;
                scale_min_k4(2 * h, scales, &s, &m);
                const float d1 = d * s, m1 = min * m;
                scale_min_k4(2 * h + 1, scales, &s, &m);
                const float d2 = d * s, m2 = min * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xf) + (five && (qh[l] & (1u << (2 * h))) ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (five && (qh[l] & (2u << (2 * h))) ? 16 : 0)) - m2;
            }
        }
        return true;
    }
    case SL_TYPE_Q6_K: {
        const sl_block_q6_K *b = src;
        for (int64_t i = 0; i < nb; i++) {
            const float d = sl_fp16_to_fp32(b[i].d);
            for (int h = 0; h < 2; h++, y += 128) {
                const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
                const int8_t *sc = b[i].scales + 8 * h;
                for (int l = 0; l < 32; l++) {
                    const int is = l / 16;
                    const int q1 = ((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32;
                    const int q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
                    const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                    const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                    y[l] = d * sc[is] * (float)q1;
                    y[l + 32] = d * sc[is + 2] * (float)q2;
                    y[l + 64] = d * sc[is + 4] * (float)q3;
                    y[l + 96] = d * sc[is + 6] * (float)q4;
                }
            }
        }
        return true;
    }
    case SL_TYPE_Q8_K: {
        const sl_block_q8_K *b = src;
        for (int64_t i = 0; i < nb; i++)
            for (int j = 0; j < SL_QK_K; j++) *y++ = b[i].d * (float)b[i].qs[j];
        return true;
    }
    default: return false;
    }
}
