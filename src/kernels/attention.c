/*
 * attention.c — the multi-head entry points: sl_attention splits the query heads of one token
 * over (ith, nth) and hands each run of heads that share a KV head to the selected variant's
 * grouped kernel (sl_attention_group), so a thread reads each cached K/V row once per group;
 * sl_attention_head runs one head (the forward pass splits (token, head) pairs over threads).
 * What it is not: the arithmetic (attention_ref.c, attention_avx2.c, attention_avx512.c).
 */
#include "kernels/kernels_impl.h"

#include <math.h>

void sl_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                        int kv_head, int head_dim, float scale, float softcap, float *out, float *att) {
    sl_kernels_ops()->attention_group(q, n_q, kc, vc, kv_f16, n_pos, kv_stride, kv_head, head_dim, scale, softcap, out, att);
}

void sl_attention(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int n_head, int n_head_kv,
                  int head_dim, float *out, float *att, int ith, int nth) {
    const sl_kernel_ops *ops = sl_kernels_ops();
    long long h0, h1;
    sl_split_range(n_head, ith, nth, &h0, &h1);
    const int group = n_head / n_head_kv;
    const float scale = 1.0f / sqrtf((float)head_dim);
    att += (size_t)ith * (size_t)n_pos;
    for (long long h = h0; h < h1;) {
        int kvh = (int)(h / group);
        long long hend = (long long)(kvh + 1) * group;
        if (hend > h1) hend = h1;
        ops->attention_group(q + h * head_dim, (int)(hend - h), kc, vc, kv_f16, n_pos, n_head_kv * head_dim, kvh, head_dim,
                             scale, 0.0f, out + h * head_dim, att);
        h = hend;
    }
}

void sl_attention_head(const float *q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride, int kv_head,
                       int head_dim, float scale, float softcap, float *out, float *att) {
    sl_kernels_ops()->attention_group(q, 1, kc, vc, kv_f16, n_pos, kv_stride, kv_head, head_dim, scale, softcap, out, att);
}
