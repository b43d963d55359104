/*
 * attention_ref.c — scalar references of causal attention for one query over the KV cache:
 *   att = softmax(q · K^T / sqrt(head_dim)); out = att · V     (per head, GQA head sharing)
 * (the per-head one with any scale and optional capping of the scores, see kernels.h)
 * for all heads (sl_attention_ref), for one head (sl_attention_head_ref), and the scalar
 * variant's grouped kernel (the per-head reference in a loop).
 */
#include "kernels/kernels_impl.h"

#include <math.h>

void sl_attention_ref(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int n_head, int n_head_kv,
                      int head_dim, float *out, float *att, int ith, int nth) {
    long long h0, h1;
    sl_split_range(n_head, ith, nth, &h0, &h1);
    const int group = n_head / n_head_kv;
    const int kv_stride = n_head_kv * head_dim; /* elements per cached position */
    const float scale = 1.0f / sqrtf((float)head_dim);
    att += (size_t)ith * (size_t)n_pos;
    for (long long h = h0; h < h1; h++) {
        const float *qh = q + h * head_dim;
        const int kvh = (int)h / group;
        float max = -INFINITY;
        for (int t = 0; t < n_pos; t++) {
            size_t off = (size_t)t * kv_stride + (size_t)kvh * head_dim;
            float s = 0.0f;
            if (kv_f16) {
                const uint16_t *k = (const uint16_t *)kc + off;
                for (int i = 0; i < head_dim; i++) s += qh[i] * sl_fp16_to_fp32(k[i]);
            } else {
                const float *k = (const float *)kc + off;
                for (int i = 0; i < head_dim; i++) s += qh[i] * k[i];
            }
            s *= scale;
            att[t] = s;
            if (s > max) max = s;
        }
        float sum = 0.0f;
        for (int t = 0; t < n_pos; t++) {
            att[t] = expf(att[t] - max);
            sum += att[t];
        }
        float inv = 1.0f / sum;
        float *oh = out + h * head_dim;
        for (int i = 0; i < head_dim; i++) oh[i] = 0.0f;
        for (int t = 0; t < n_pos; t++) {
            size_t off = (size_t)t * kv_stride + (size_t)kvh * head_dim;
            float a = att[t] * inv;
            if (kv_f16) {
                const uint16_t *v = (const uint16_t *)vc + off;
                for (int i = 0; i < head_dim; i++) oh[i] += a * sl_fp16_to_fp32(v[i]);
            } else {
                const float *v = (const float *)vc + off;
                for (int i = 0; i < head_dim; i++) oh[i] += a * v[i];
            }
        }
    }
}

void sl_attention_head_ref(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                           int head_dim, float scale, float softcap, float *out, float *att) {
    const size_t head_off = (size_t)kv_head * (size_t)head_dim;
    float max = -INFINITY;
    for (int t = 0; t < n_pos; t++) {
        const size_t off = (size_t)t * (size_t)kv_stride + head_off;
        float s = 0.0f;
        if (kv_f16) {
            const uint16_t *k = (const uint16_t *)kc + off;
            for (int i = 0; i < head_dim; i++) s += q[i] * sl_fp16_to_fp32(k[i]);
        } else {
            const float *k = (const float *)kc + off;
            for (int i = 0; i < head_dim; i++) s += q[i] * k[i];
        }
        s *= scale;
        if (softcap > 0.0f) s = softcap * tanhf(s * (1.0f / softcap)); /* ggml: scale by 1/cap, tanh, scale by cap */
        att[t] = s;
        if (s > max) max = s;
    }
    float sum = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        att[t] = expf(att[t] - max);
        sum += att[t];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        const size_t off = (size_t)t * (size_t)kv_stride + head_off;
        const float a = att[t] * inv;
        if (kv_f16) {
            const uint16_t *v = (const uint16_t *)vc + off;
            for (int i = 0; i < head_dim; i++) out[i] += a * sl_fp16_to_fp32(v[i]);
        } else {
            const float *v = (const float *)vc + off;
            for (int i = 0; i < head_dim; i++) out[i] += a * v[i];
        }
    }
}

void sl_attention_group_scalar(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos,
                               int kv_stride, int kv_head, int head_dim, float scale, float softcap, float *out, float *att) {
    for (int i = 0; i < n_q; i++)
        sl_attention_head_ref(q + (size_t)i * head_dim, kc, vc, kv_f16, n_pos, kv_stride, kv_head, head_dim, scale, softcap,
                              out + (size_t)i * head_dim, att);
}
