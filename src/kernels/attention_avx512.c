/*
 * attention_avx512.c — AVX-512 attention of one query token over the KV cache (contract in
 * kernels.h).
 *
 * The query heads of this thread that share a KV head (GQA) are processed together, so each
 * cached K and V row is read once per group, not once per query head — at long context the
 * cache, not the weights, is what attention streams. Positions are taken in blocks of
 * ATT_BLOCK with an online softmax (running max m, running sum l, output rescaled by
 * exp(m_old - m_new) when the max grows), so no per-position scratch is needed and the result
 * is the same softmax up to float rounding. An F16 cache block is widened to f32 once into a
 * stack buffer and then used by every head of the group. Head sizes above ATT_HD_MAX (none in
 * practice) fall back to the scalar reference. sl_attention (attention.c) and sl_attention_head
 * (attention_head.c) both come here. Not a prefill (many-query) attention kernel: each call
 * is one query token.
 */
#include "kernels/simd_avx512.h"

#include <math.h>

#define ATT_BLOCK 32   /* positions per online-softmax step */
#define ATT_HD_MAX 256 /* largest head size of the fast path */
#define ATT_GMAX 8     /* query heads sharing one pass over a K/V block */

/* e^x for x <= 0 (inputs below -104 give 0): round-to-nearest range reduction by ln 2 in two
 * parts, a degree-7 Taylor polynomial on |r| <= ln2/2 (error < 1e-8 relative), then an exact
 * scaling by 2^n (vscalefps, which also underflows cleanly to 0). */
SL_INLINE __m512 x5_exp(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Widen rows [t0, t0+cnt) of one KV head of an F16 cache to f32 rows of hd floats. */
static void widen_rows(const uint16_t *c, size_t stride, int t0, int cnt, int hd, float *dst) {
    for (int i = 0; i < cnt; i++) {
        const uint16_t *src = c + (size_t)(t0 + i) * stride;
        for (int k = 0; k < hd; k += 16) {
            __mmask16 m = x5_mask(hd - k);
            _mm512_mask_storeu_ps(dst + (size_t)i * hd + k, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + k)));
        }
    }
}

/* Attention for G query heads (q: G x hd, out: G x hd) over one KV head whose rows start at
 * kbase/vbase with `stride` elements between positions. */
static void attend_group(const float *q, int G, const void *kbase, const void *vbase, bool f16, size_t stride,
                         int n_pos, int hd, float scale, float softcap, float *out) {
    _Alignas(64) float kbuf[ATT_BLOCK * ATT_HD_MAX], vbuf[ATT_BLOCK * ATT_HD_MAX];
    _Alignas(64) float o[ATT_GMAX][ATT_HD_MAX];
    _Alignas(64) float s[ATT_GMAX][ATT_BLOCK];
    float m[ATT_GMAX], l[ATT_GMAX];
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
        for (int k = 0; k < hd; k++) o[g][k] = 0.0f;
    }
    for (int t0 = 0; t0 < n_pos; t0 += ATT_BLOCK) {
        int cnt = n_pos - t0 < ATT_BLOCK ? n_pos - t0 : ATT_BLOCK;
        const float *K, *V;
        size_t ks; /* floats between rows of K / V */
        if (f16) {
            widen_rows(kbase, stride, t0, cnt, hd, kbuf);
            widen_rows(vbase, stride, t0, cnt, hd, vbuf);
            K = kbuf, V = vbuf, ks = (size_t)hd;
        } else {
            K = (const float *)kbase + (size_t)t0 * stride, V = (const float *)vbase + (size_t)t0 * stride, ks = stride;
        }
        /* scores, 4 positions at a time (a short last group repeats its last row, then drops it) */
        for (int c = 0; c < cnt; c += 4) {
            const float *k0 = K + (size_t)c * ks;
            const float *k1 = K + (size_t)(c + 1 < cnt ? c + 1 : cnt - 1) * ks;
            const float *k2 = K + (size_t)(c + 2 < cnt ? c + 2 : cnt - 1) * ks;
            const float *k3 = K + (size_t)(c + 3 < cnt ? c + 3 : cnt - 1) * ks;
            for (int g = 0; g < G; g++) {
                const float *qg = q + (size_t)g * hd;
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int k = 0; k < hd; k += 16) {
                    __mmask16 mk = x5_mask(hd - k);
                    __m512 qv = _mm512_maskz_loadu_ps(mk, qg + k);
                    a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k0 + k), a0);
                    a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k1 + k), a1);
                    a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k2 + k), a2);
                    a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k3 + k), a3);
                }
                _mm_storeu_ps(&s[g][c], _mm_mul_ps(x5_hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
            }
        }
        if (softcap > 0.0f) /* Gemma 2's capping, as the scalar reference: cap * tanh(s / cap) */
            for (int g = 0; g < G; g++)
                for (int c = 0; c < cnt; c++) s[g][c] = softcap * tanhf(s[g][c] * (1.0f / softcap));
        for (int g = 0; g < G; g++) {
            __mmask16 m0 = x5_mask(cnt), m1 = x5_mask(cnt - 16);
            __m512 s0 = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m0, s[g]);
            __m512 s1 = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m1, s[g] + 16);
            float bmax = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));
            float mnew = bmax > m[g] ? bmax : m[g];
            float alpha = m[g] == -INFINITY ? 0.0f : expf(m[g] - mnew);
            m[g] = mnew;
            __m512 vm = _mm512_set1_ps(mnew);
            __m512 p0 = _mm512_maskz_mov_ps(m0, x5_exp(_mm512_sub_ps(s0, vm)));
            __m512 p1 = _mm512_maskz_mov_ps(m1, x5_exp(_mm512_sub_ps(s1, vm)));
            l[g] = l[g] * alpha + _mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
            _mm512_store_ps(s[g], p0);
            _mm512_store_ps(s[g] + 16, p1);
            /* o = o * alpha + sum_c p[c] V[c], 16 columns at a time, 4 partial sums over c */
            __m512 va = _mm512_set1_ps(alpha);
            for (int k = 0; k < hd; k += 16) {
                __mmask16 mk = x5_mask(hd - k);
                __m512 o0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, &o[g][k]), va);
                __m512 o1 = _mm512_setzero_ps(), o2 = o1, o3 = o1;
                int c = 0;
                for (; c + 4 <= cnt; c += 4) {
                    o0 = _mm512_fmadd_ps(_mm512_set1_ps(s[g][c]), _mm512_maskz_loadu_ps(mk, V + (size_t)c * ks + k), o0);
                    o1 = _mm512_fmadd_ps(_mm512_set1_ps(s[g][c + 1]), _mm512_maskz_loadu_ps(mk, V + (size_t)(c + 1) * ks + k), o1);
                    o2 = _mm512_fmadd_ps(_mm512_set1_ps(s[g][c + 2]), _mm512_maskz_loadu_ps(mk, V + (size_t)(c + 2) * ks + k), o2);
                    o3 = _mm512_fmadd_ps(_mm512_set1_ps(s[g][c + 3]), _mm512_maskz_loadu_ps(mk, V + (size_t)(c + 3) * ks + k), o3);
                }
                for (; c < cnt; c++)
                    o0 = _mm512_fmadd_ps(_mm512_set1_ps(s[g][c]), _mm512_maskz_loadu_ps(mk, V + (size_t)c * ks + k), o0);
                _mm512_mask_storeu_ps(&o[g][k], mk, _mm512_add_ps(_mm512_add_ps(o0, o1), _mm512_add_ps(o2, o3)));
            }
        }
    }
    for (int g = 0; g < G; g++) {
        __m512 inv = _mm512_set1_ps(1.0f / l[g]);
        for (int k = 0; k < hd; k += 16) {
            __mmask16 mk = x5_mask(hd - k);
            _mm512_mask_storeu_ps(out + (size_t)g * hd + k, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, &o[g][k]), inv));
        }
    }
}

void sl_x5_attention_group(const float *q, int n_q, const void *kc, const void *vc, bool kv_f16, int n_pos, int kv_stride,
                           int kv_head, int head_dim, float scale, float softcap, float *out, float *att) {
    if (head_dim > ATT_HD_MAX || n_pos <= 0) {
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
