/*
 * attention_head.c — causal attention of ONE query head over the cached positions 0..n_pos-1:
 *   out = softmax(q · K^T / sqrt(head_dim)) · V
 * The forward pass splits (token, head) pairs over threads and calls this per pair, which keeps
 * every thread busy during prefill even when n_head < threads * tokens. Scalar reference plus
 * the dispatching entry point (which runs the selected variant's grouped kernel with one head).
 */
#include "kernels/kernels_impl.h"

#include <math.h>

void sl_attention_head_ref(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                           int head_dim, float *out, float *att) {
    const float scale = 1.0f / sqrtf((float)head_dim);
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
        att[t] = s * scale;
        if (att[t] > max) max = att[t];
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

void sl_attention_head(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                       int head_dim, float *out, float *att) {
    sl_kernels_ops()->attention_group(q, 1, kc, vc, kv_f16, n_pos, kv_stride, kv_head, head_dim, out, att);
}
