/*
 * dot_ref.c — scalar references for prepared-activation dot products and row axpy
 * (see kernels.h). Quantized weights meet activations quantized the way ggml's vec_dot_type
 * does (Q8_0, Q8_1 or Q8_K, sl_act_type_of), so the per-block (or per-sub-block) sums are exact
 * integers and only the few scale products per block are floating point — the products of
 * ggml's ggml_vec_dot_*_q8_* up to the order of float additions. These are also the scalar
 * variant's kernels on CPUs without AVX2. Not fast on purpose.
 */
#include "kernels/kernels_impl.h"

#include <string.h>

size_t sl_act_size(sl_type wtype, int64_t n) {
    const sl_type at = sl_act_type_of(wtype);
    return at == SL_TYPE_F32 ? (size_t)n * sizeof(float) : sl_any_row_size(at, n);
}

void sl_quantize_q8_scalar(const float *x, void *blocks, int64_t n) { sl_quantize_row_ref(SL_TYPE_Q8_0, x, blocks, n); }

static uint32_t qh_word(const uint8_t qh[4]) { return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24; }

/* ---- 32-element blocks ------------------------------------------------------------------------ */

static float dot_q8_0_act(sl_type wtype, const void *w, const sl_block_q8_0 *xb, int64_t nb) {
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        float dw;
        switch (wtype) {
        case SL_TYPE_Q8_0: {
            const sl_block_q8_0 *b = (const sl_block_q8_0 *)w + i;
            for (int j = 0; j < 32; j++) s += b->qs[j] * xb[i].qs[j];
            dw = sl_fp16_to_fp32(b->d);
            break;
        }
        case SL_TYPE_Q4_0: {
            const sl_block_q4_0 *b = (const sl_block_q4_0 *)w + i;
            for (int j = 0; j < 16; j++) s += ((b->qs[j] & 0x0f) - 8) * xb[i].qs[j] + ((b->qs[j] >> 4) - 8) * xb[i].qs[j + 16];
            dw = sl_fp16_to_fp32(b->d);
            break;
        }
        case SL_TYPE_Q5_0: {
            const sl_block_q5_0 *b = (const sl_block_q5_0 *)w + i;
            const uint32_t qh = qh_word(b->qh);
            for (int j = 0; j < 16; j++) {
                const int v0 = ((b->qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10)) - 16;
                const int v1 = ((b->qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10)) - 16;
                s += v0 * xb[i].qs[j] + v1 * xb[i].qs[j + 16];
            }
            dw = sl_fp16_to_fp32(b->d);
            break;
        }
        default: { /* IQ4_NL */
            const sl_block_iq4_nl *b = (const sl_block_iq4_nl *)w + i;
            for (int j = 0; j < 16; j++)
                s += sl_iq4nl_values[b->qs[j] & 0x0f] * xb[i].qs[j] + sl_iq4nl_values[b->qs[j] >> 4] * xb[i].qs[j + 16];
            dw = sl_fp16_to_fp32(b->d);
            break;
        }
        }
        sum += dw * sl_fp16_to_fp32(xb[i].d) * (float)s;
    }
    return sum;
}

/* Q4_1 / Q5_1 with Q8_1: d_w d_x sum(q x) + m_w s_x per block */
static float dot_q8_1_act(sl_type wtype, const void *w, const sl_block_q8_1 *xb, int64_t nb) {
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        uint16_t dh, mh;
        if (wtype == SL_TYPE_Q4_1) {
            const sl_block_q4_1 *b = (const sl_block_q4_1 *)w + i;
            for (int j = 0; j < 16; j++) s += (b->qs[j] & 0x0f) * xb[i].qs[j] + (b->qs[j] >> 4) * xb[i].qs[j + 16];
            dh = b->d, mh = b->m;
        } else {
            const sl_block_q5_1 *b = (const sl_block_q5_1 *)w + i;
            const uint32_t qh = qh_word(b->qh);
            for (int j = 0; j < 16; j++) {
                const int v0 = (b->qs[j] & 0x0f) | (int)((qh >> j) << 4 & 0x10);
                const int v1 = (b->qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
                s += v0 * xb[i].qs[j] + v1 * xb[i].qs[j + 16];
            }
            dh = b->d, mh = b->m;
        }
        sum += sl_fp16_to_fp32(dh) * sl_fp16_to_fp32(xb[i].d) * (float)s + sl_fp16_to_fp32(mh) * sl_fp16_to_fp32(xb[i].s);
    }
    return sum;
}

/* ---- super-blocks with Q8_K --------------------------------------------------------------------
 * Per super-block: isum = sum over sub-blocks of (integer scale) * (integer dot), and for the
 * types with minimums msum = sum of (integer min) * (the sub-block's activation sum, from bsums);
 * then d_w d_x isum - dmin_w d_x msum. */

/* The 256 signed values of a super-block of a Q8_K-paired type, its per-16 integer scales and
 * mins (mins 0 when the type has none) and its float scales. */
static void k_unpack(sl_type t, const void *blk, int8_t q[256], int sc[16], int mn[16], float *d, float *dmin) {
    *dmin = 0.0f;
    memset(mn, 0, 16 * sizeof(int));
    switch (t) {
    case SL_TYPE_Q2_K: {
        const sl_block_q2_K *b = blk;
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) q[128 * h + 32 * s + l] = (int8_t)((b->qs[32 * h + l] >> (2 * s)) & 3);
        for (int j = 0; j < 16; j++) sc[j] = b->scales[j] & 0xf, mn[j] = b->scales[j] >> 4;
        *d = sl_fp16_to_fp32(b->d), *dmin = sl_fp16_to_fp32(b->dmin);
        return;
    }
    case SL_TYPE_Q3_K: {
        const sl_block_q3_K *b = blk;
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    const int k = 128 * h + 32 * s + l;
                    q[k] = (int8_t)(((b->qs[32 * h + l] >> (2 * s)) & 3) - ((b->hmask[l] >> (4 * h + s)) & 1 ? 0 : 4));
                }
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? b->scales[j] & 0xf : b->scales[j - 8] >> 4;
            sc[j] = (lo | ((b->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        }
        *d = sl_fp16_to_fp32(b->d);
        return;
    }
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K: {
        const bool five = t == SL_TYPE_Q5_K;
        const uint8_t *p = blk, *scales = p + 4, *qh = p + 16, *qs = p + (five ? 48 : 16);
        uint16_t dh, mh;
        memcpy(&dh, p, 2);
        memcpy(&mh, p + 2, 2);
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) {
                q[64 * h + l] = (int8_t)((qs[32 * h + l] & 0xf) | (five ? ((qh[l] >> (2 * h)) & 1) << 4 : 0));
                q[64 * h + 32 + l] = (int8_t)((qs[32 * h + l] >> 4) | (five ? ((qh[l] >> (2 * h + 1)) & 1) << 4 : 0));
            }
        for (int j = 0; j < 8; j++) {
            int s, m;
            if (j < 4) s = scales[j] & 63, m = scales[j + 4] & 63;
            else s = (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4), m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
            sc[2 * j] = sc[2 * j + 1] = s;
            mn[2 * j] = mn[2 * j + 1] = m;
        }
        *d = sl_fp16_to_fp32(dh), *dmin = sl_fp16_to_fp32(mh);
        return;
    }
    case SL_TYPE_Q6_K: {
        const sl_block_q6_K *b = blk;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
                q[128 * h + l] = (int8_t)(((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32);
                q[128 * h + l + 32] = (int8_t)(((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32);
                q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                q[128 * h + l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
            }
        for (int j = 0; j < 16; j++) sc[j] = b->scales[j];
        *d = sl_fp16_to_fp32(b->d);
        return;
    }
    default: { /* IQ4_XS */
        const sl_block_iq4_xs *b = blk;
        for (int ib = 0; ib < 8; ib++) {
            for (int j = 0; j < 16; j++) {
                q[32 * ib + j] = sl_iq4nl_values[b->qs[16 * ib + j] & 0xf];
                q[32 * ib + 16 + j] = sl_iq4nl_values[b->qs[16 * ib + j] >> 4];
            }
            const int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
            sc[2 * ib] = sc[2 * ib + 1] = ls - 32;
        }
        *d = sl_fp16_to_fp32(b->d);
        return;
    }
    }
}

float sl_dot_k_block_ref(sl_type wtype, const void *blk, const sl_block_q8_K *x) {
    int8_t q[256];
    int sc[16], mn[16];
    float d, dmin;
    k_unpack(wtype, blk, q, sc, mn, &d, &dmin);
    int isum = 0, msum = 0;
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += q[16 * j + l] * x->qs[16 * j + l];
        isum += sc[j] * s;
        msum += mn[j] * x->bsums[j];
    }
    return d * x->d * (float)isum - dmin * x->d * (float)msum;
}

float sl_vec_dot_ref(sl_type wtype, const void *w, const void *act, int64_t n) {
    switch ((int)sl_act_type_of(wtype)) {
    case SL_TYPE_Q8_0: return dot_q8_0_act(wtype, w, act, n / 32);
    case SL_TYPE_Q8_1: return dot_q8_1_act(wtype, w, act, n / 32);
    case SL_TYPE_Q8_K: {
        const size_t bs = sl_type_row_size(wtype, SL_QK_K);
        const sl_block_q8_K *xb = act;
        float sum = 0.0f;
        for (int64_t i = 0; i < n / SL_QK_K; i++) sum += sl_dot_k_block_ref(wtype, (const uint8_t *)w + (size_t)i * bs, &xb[i]);
        return sum;
    }
    default: return sl_dot_row_ref(wtype, w, act, n);
    }
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
    default: { /* every other block type: decoded block by block, y += a * w */
        const sl_type_traits *t = sl_type_traits_of(wtype);
        if (!t) return;
        float tmp[SL_QK_K];
        for (int64_t i = 0; i < n / t->block_size; i++) {
            sl_dequantize_row_ref(wtype, (const uint8_t *)w + (size_t)i * t->type_size, tmp, t->block_size);
            for (int64_t j = 0; j < t->block_size; j++) y[i * t->block_size + j] += a * tmp[j];
        }
        break;
    }
    }
}
