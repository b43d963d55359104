/*
 * attention_avx2.c — AVX2 attention of query heads sharing one KV head (contract in kernels.h;
 * the same design as attention_avx512.c: online softmax over blocks of positions, each K/V row
 * read once per group, F16 blocks widened once). Head sizes that are not a multiple of 8, or
 * above ATT_HD_MAX, use the scalar reference. Not a prefill (many-query) attention kernel.
 */
#include "kernels/simd_avx2.h"

#include <math.h>

#define ATT_BLOCK 32
#define ATT_HD_MAX 256
#define ATT_GMAX 8

/* e^x for x <= 0 (inputs below -87 give about 1e-38 instead of smaller values, which a softmax
 * cannot tell apart from 0): range reduction by ln 2, degree-7 Taylor polynomial, 2^n built in
 * the exponent field. */
SL_INLINE __m256 x2_exp(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void widen_rows(const uint16_t *c, size_t stride, int t0, int cnt, int hd, float *dst) {
    for (int i = 0; i < cnt; i++) {
        const uint16_t *src = c + (size_t)(t0 + i) * stride;
        for (int k = 0; k < hd; k += 8)
            _mm256_storeu_ps(dst + (size_t)i * hd + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
    }
}

static void attend_group(const float *q, int G, const void *kbase, const void *vbase, bool f16, size_t stride,
                         int n_pos, int hd, float scale, float softcap, float *out) {
    _Alignas(32) float kbuf[ATT_BLOCK * ATT_HD_MAX], vbuf[ATT_BLOCK * ATT_HD_MAX];
    _Alignas(32) float o[ATT_GMAX][ATT_HD_MAX];
    _Alignas(32) float s[ATT_GMAX][ATT_BLOCK];
    float m[ATT_GMAX], l[ATT_GMAX];
    for (int g = 0; g < G; g++) {
        for (int c = 0; c < ATT_BLOCK; c++) s[g][c] = 0.0f; /* lanes past a short last block stay finite */
        m[g] = -INFINITY;
        l[g] = 0.0f;
        for (int k = 0; k < hd; k++) o[g][k] = 0.0f;
    }
    for (int t0 = 0; t0 < n_pos; t0 += ATT_BLOCK) {
        int cnt = n_pos - t0 < ATT_BLOCK ? n_pos - t0 : ATT_BLOCK;
        const float *K, *V;
        size_t ks;
        if (f16) {
            widen_rows(kbase, stride, t0, cnt, hd, kbuf);
            widen_rows(vbase, stride, t0, cnt, hd, vbuf);
            K = kbuf, V = vbuf, ks = (size_t)hd;
        } else {
            K = (const float *)kbase + (size_t)t0 * stride, V = (const float *)vbase + (size_t)t0 * stride, ks = stride;
        }
        for (int c = 0; c < cnt; c += 4) {
            const float *k0 = K + (size_t)c * ks;
            const float *k1 = K + (size_t)(c + 1 < cnt ? c + 1 : cnt - 1) * ks;
            const float *k2 = K + (size_t)(c + 2 < cnt ? c + 2 : cnt - 1) * ks;
            const float *k3 = K + (size_t)(c + 3 < cnt ? c + 3 : cnt - 1) * ks;
            for (int g = 0; g < G; g++) {
                const float *qg = q + (size_t)g * hd;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int k = 0; k < hd; k += 8) {
                    __m256 qv = _mm256_loadu_ps(qg + k);
                    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + k), a0);
                    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + k), a1);
                    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + k), a2);
                    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + k), a3);
                }
                _mm_storeu_ps(&s[g][c], _mm_mul_ps(x2_hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
            }
        }
        if (softcap > 0.0f) /* Gemma 2's capping, as the scalar reference: cap * tanh(s / cap) */
            for (int g = 0; g < G; g++)
                for (int c = 0; c < cnt; c++) s[g][c] = softcap * tanhf(s[g][c] * (1.0f / softcap));
        for (int g = 0; g < G; g++) {
            float bmax = -INFINITY;
            for (int c = 0; c < cnt; c++) bmax = s[g][c] > bmax ? s[g][c] : bmax;
            float mnew = bmax > m[g] ? bmax : m[g];
            float alpha = m[g] == -INFINITY ? 0.0f : expf(m[g] - mnew);
            m[g] = mnew;
            __m256 vm = _mm256_set1_ps(mnew), sum = _mm256_setzero_ps();
            for (int c = 0; c < ATT_BLOCK; c += 8) {
                __m256 p = x2_exp(_mm256_sub_ps(_mm256_load_ps(&s[g][c]), vm));
                /* positions past cnt hold stale scores: zero them */
                __m256 valid = _mm256_cmp_ps(_mm256_add_ps(_mm256_set1_ps((float)c), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)),
                                             _mm256_set1_ps((float)cnt), _CMP_LT_OQ);
                p = _mm256_and_ps(p, valid);
                _mm256_store_ps(&s[g][c], p);
                sum = _mm256_add_ps(sum, p);
            }
            l[g] = l[g] * alpha + x2_hsum(sum);
            __m256 va = _mm256_set1_ps(alpha);
            for (int k = 0; k < hd; k += 8) {
                __m256 o0 = _mm256_mul_ps(_mm256_load_ps(&o[g][k]), va);
                __m256 o1 = _mm256_setzero_ps(), o2 = o1, o3 = o1;
                int c = 0;
                for (; c + 4 <= cnt; c += 4) {
                    o0 = _mm256_fmadd_ps(_mm256_set1_ps(s[g][c]), _mm256_loadu_ps(V + (size_t)c * ks + k), o0);
                    o1 = _mm256_fmadd_ps(_mm256_set1_ps(s[g][c + 1]), _mm256_loadu_ps(V + (size_t)(c + 1) * ks + k), o1);
                    o2 = _mm256_fmadd_ps(_mm256_set1_ps(s[g][c + 2]), _mm256_loadu_ps(V + (size_t)(c + 2) * ks + k), o2);
                    o3 = _mm256_fmadd_ps(_mm256_set1_ps(s[g][c + 3]), _mm256_loadu_ps(V + (size_t)(c + 3) * ks + k), o3);
                }
                for (; c < cnt; c++)
                    o0 = _mm256_fmadd_ps(_mm256_set1_ps(s[g][c]), _mm256_loadu_ps(V + (size_t)c * ks + k), o0);
                _mm256_store_ps(&o[g][k], _mm256_add_ps(_mm256_add_ps(o0, o1), _mm256_add_ps(o2, o3)));
            }
        }
    }
    for (int g = 0; g < G; g++) {
        __m256 inv = _mm256_set1_ps(1.0f / l[g]);
        for (int k = 0; k < hd; k += 8)
            _mm256_storeu_ps(out + (size_t)g * hd + k, _mm256_mul_ps(_mm256_load_ps(&o[g][k]), inv));
    }
}

void sl_x2_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                           int kv_head, int head_dim, float scale, float softcap, float *out, float *att) {
    if (head_dim > ATT_HD_MAX || head_dim % 8 != 0 || n_pos <= 0) {
        sl_attention_group_scalar(q, n_q, kc, vc, kv_f16, n_pos, kv_stride, kv_head, head_dim, scale, softcap, out, att);
        return;
    }
    const size_t off = (size_t)kv_head * (size_t)head_dim * (kv_f16 ? 2 : 4);
    for (int h = 0; h < n_q; h += ATT_GMAX) {
        int G = n_q - h < ATT_GMAX ? n_q - h : ATT_GMAX;
        attend_group(q + (size_t)h * head_dim, G, (const uint8_t *)kc + off, (const uint8_t *)vc + off, kv_f16,
                     (size_t)kv_stride, n_pos, head_dim, scale, softcap, out + (size_t)h * head_dim);
    }
}
