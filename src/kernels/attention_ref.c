/*
 * attention_ref.c — scalar reference of causal attention for one query over the KV cache.
 *   att = softmax(q · K^T / sqrt(head_dim)); out = att · V     (per head, GQA head sharing)
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
