/*
 * test_select.c — the neuron selection rules (select.c) against their plain definitions.
 *
 * What it checks:
 *  - sl_kth_largest (radix select) equals sorting on random, tied, negative, all-equal and
 *    signed-zero inputs of awkward lengths, for every k;
 *  - the CATS cut-offs on the pre-activation select exactly the neurons with |act(g)| > t
 *    (act as the dense path computes it) for SiLU, GELU and ReLU, thresholds on both sides of
 *    the activations' negative dip, on random values and on the floats next to each cut-off;
 *  - sl_select_active's top-k returns exactly k neurons: all those above the k-th value, then
 *    ties by increasing index, all in increasing order; threshold rules keep exactly the scores above the threshold;
 *  - the two-stage rules: stage 1 (TWO_STAGE: the top cand_k by |act(g)|; TWO_STAGE_PRED: by
 *    score) and stage 2 (the top k candidates by |h| * w) equal sorting the plain definitions,
 *    k = n selects everything, k = 0 nothing.
 * Exact rules: no tolerance.
 */
#include "kernels/activation.h"
#include "sparse/select.h"
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(cond, ...) ((cond) ? true : CHECK(false, __VA_ARGS__))
#define EXPECT_VOID(cond, ...) ((void)EXPECT(cond, __VA_ARGS__))

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_kth(void) {
    test_rng r = {11};
    static const int32_t ns[] = {1, 2, 3, 7, 15, 17, 31, 33, 129, 1000, 8192};
    int bad = 0, total = 0;
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
        const int32_t n = ns[ni];
        float *v = malloc((size_t)n * sizeof(float)), *sorted = malloc((size_t)n * sizeof(float));
        uint32_t *tmp = malloc((size_t)n * sizeof(uint32_t));
        for (int kind = 0; kind < 5; kind++) {
            for (int32_t i = 0; i < n; i++) {
                float u = test_rng_normal(&r);
                v[i] = kind == 0 ? u
                       : kind == 1 ? (float)(int)(4 * u)             /* many ties */
                       : kind == 2 ? -fabsf(u) * 1e-3f               /* all negative, small */
                       : kind == 3 ? 2.5f                            /* all equal */
                                   : (i % 2 ? 0.0f : -0.0f) + (i % 5 == 0 ? u : 0.0f); /* signed zeros */
            }
            memcpy(sorted, v, (size_t)n * sizeof(float));
            qsort(sorted, (size_t)n, sizeof(float), cmp_desc);
            const int32_t step = n > 200 ? n / 97 : 1;
            for (int32_t k = 1; k <= n; k += step) {
                float got = sl_kth_largest(v, n, k, tmp);
                total++;
                if (!EXPECT(got == sorted[k - 1], "kth_largest n=%d kind %d k=%d: %g, sorted %g", n, kind, k, got, sorted[k - 1])) bad++;
            }
        }
        free(v), free(sorted), free(tmp);
    }
    CHECK(bad == 0, "kth_largest equals sorting in %d cases", total);
}

static const char *act_name(sl_activation a) { return sl_activation_name(a); }

static void test_cats(void) {
    static const sl_activation acts[] = {SL_ACT_SILU, SL_ACT_GELU, SL_ACT_RELU, SL_ACT_GELU_F16};
    static const float ts[] = {0.0f, 1e-6f, 0.01f, 0.05f, 0.1f, 0.16f, 0.2f, 0.27f, 0.2784f, 0.3f, 1.0f, 4.0f, 100.0f};
    test_rng r = {5};
    const int n = 20000;
    float *g = malloc((size_t)(n + 64) * sizeof(float));
    int32_t *idx = malloc((size_t)(n + 64) * sizeof(int32_t));
    float *tmp = malloc((size_t)(n + 64) * sizeof(float));
    for (size_t ai = 0; ai < sizeof(acts) / sizeof(acts[0]); ai++) {
        int mismatches = 0, cases = 0, ties = 0;
        for (size_t ti = 0; ti < sizeof(ts) / sizeof(ts[0]); ti++) {
            const float t = ts[ti];
            sl_cats_cut cut;
            sl_cats_cut_init(&cut, acts[ai], t);
            int m = 0;
            for (int i = 0; i < n; i++) g[m++] = 3.0f * test_rng_normal(&r) * (i % 4 == 0 ? 10.0f : 1.0f);
            /* the floats around each cut-off: where a wrong boundary would show */
            const float edges[3] = {cut.hi, cut.a, cut.b};
            for (int e = 0; e < 3; e++) {
                if (!isfinite(edges[e])) continue;
                float lo = edges[e], hi = edges[e];
                for (int s = 0; s < 8; s++) {
                    g[m++] = lo;
                    g[m++] = hi;
                    lo = nextafterf(lo, -INFINITY);
                    hi = nextafterf(hi, INFINITY);
                }
            }
            sl_profile_layer P;
            memset(&P, 0, sizeof(P));
            P.rule = SL_RULE_CATS;
            P.threshold = t;
            const sl_cats_cut *cuts[2] = {&cut, NULL}; /* kept by the caller, or computed per call */
            for (int c = 0; c < 2; c++) {
                int32_t k = sl_select_active(&P, 0.0f, cuts[c], g, m, acts[ai], tmp, idx), q = 0;
                for (int i = 0; i < m; i++) {
                    const bool want = fabsf(sl_activate(acts[ai], g[i])) > t;
                    const bool got = q < k && idx[q] == i;
                    q += got;
                    cases++;
                    /* where |act(g)| is within a few ulps of t the float act() is not monotone
                     * (flat bottom of the dip): either answer is a rounding of the same number */
                    const bool tie = fabsf(fabsf(sl_activate(acts[ai], g[i])) - t) <= 4.0f * FLT_EPSILON * fmaxf(t, FLT_MIN);
                    if (want != got && tie) ties++;
                    if (want != got && !tie) {
                        mismatches++;
                        EXPECT_VOID(false, "cats %s t=%g: g=%.9g |act|=%.9g selected %d", act_name(acts[ai]), t, g[i],
                               fabsf(sl_activate(acts[ai], g[i])), got);
                    }
                }
            }
        }
        CHECK(mismatches == 0, "CATS cut-offs == |%s(g)| > t on %d values (incl. the floats next to each cut-off; %d within 4 ulp of t differ)",
              act_name(acts[ai]), cases, ties);
    }
    free(g), free(idx), free(tmp);
}

static void test_rules(void) {
    test_rng r = {3};
    const int32_t I = 1000;
    float *s = malloc((size_t)I * sizeof(float)), *tmp = malloc((size_t)I * sizeof(float)), *sorted = malloc((size_t)I * sizeof(float));
    int32_t *idx = malloc((size_t)I * sizeof(int32_t));
    for (int32_t i = 0; i < I; i++) s[i] = (float)(int)(8 * test_rng_normal(&r)); /* ties everywhere */
    memcpy(sorted, s, (size_t)I * sizeof(float));
    qsort(sorted, (size_t)I, sizeof(float), cmp_desc);
    sl_profile_layer P;
    memset(&P, 0, sizeof(P));
    P.rule = SL_RULE_PRED_TOPK;
    int bad = 0;
    for (int32_t k = 1; k <= I; k += 37) {
        P.topk = k;
        int32_t n = sl_select_active(&P, 0.0f, NULL, s, I, SL_ACT_SILU, tmp, idx);
        const float v = sorted[k - 1];
        bool ok = n == k;
        /* every larger score, and the ties at v with the smallest indices, in increasing order */
        int32_t above = 0, ties_want = 0, ties_got = 0, last_tie = -1, first_skipped_tie = I;
        for (int32_t i = 0; i < I; i++) above += s[i] > v;
        ties_want = k - above;
        for (int32_t q = 0; q < n && ok; q++) {
            ok = (q == 0 || idx[q] > idx[q - 1]) && s[idx[q]] >= v;
            if (s[idx[q]] == v) ties_got++, last_tie = idx[q];
        }
        for (int32_t i = 0, q = 0; i < I; i++) { /* the ties left out all come after the last one taken */
            while (q < n && idx[q] < i) q++;
            if (s[i] == v && !(q < n && idx[q] == i) && i < first_skipped_tie) first_skipped_tie = i;
        }
        ok = ok && ties_got == ties_want && last_tie < first_skipped_tie;
        if (!EXPECT(ok, "topk k=%d: %d selected", k, n)) bad++;
    }
    CHECK(bad == 0, "top-k: exactly k in increasing order, every larger score, the ties at the k-th by increasing index");
    P.rule = SL_RULE_PRED_THRESHOLD;
    P.threshold = 0.5f;
    int32_t n = sl_select_active(&P, 0.0f, NULL, s, I, SL_ACT_SILU, tmp, idx), want = 0;
    for (int32_t i = 0; i < I; i++) want += s[i] > 0.5f;
    bool ok = n == want;
    for (int32_t q = 0; q < n && ok; q++) ok = s[idx[q]] > 0.5f && (q == 0 || idx[q] > idx[q - 1]);
    CHECK(ok, "threshold rule keeps exactly the %d scores above it, in order", want);
    free(s), free(tmp), free(sorted), free(idx);
}

/* Plain top-k: indices of the k largest v (ties by increasing index), as a 0/1 mark per element. */
typedef struct ranked {
    float v;
    int32_t i;
} ranked;
static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
static void plain_topk(const float *v, int32_t n, int32_t k, uint8_t *mark) {
    ranked *r = malloc((size_t)n * sizeof(ranked));
    for (int32_t i = 0; i < n; i++) r[i] = (ranked){v[i], i};
    qsort(r, (size_t)n, sizeof(ranked), ranked_cmp);
    memset(mark, 0, (size_t)n);
    for (int32_t q = 0; q < k && q < n; q++) mark[r[q].i] = 1;
    free(r);
}

static void test_two_stage(void) {
    static const sl_activation acts[] = {SL_ACT_SILU, SL_ACT_GELU, SL_ACT_RELU};
    static const int32_t ns[] = {1, 3, 7, 33, 384, 1000};
    test_rng r = {77};
    int bad = 0, cases = 0;
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
        const int32_t I = ns[ni];
        float *g = malloc((size_t)I * sizeof(float)), *a = malloc((size_t)I * sizeof(float)), *work = malloc((size_t)I * sizeof(float));
        float *h = malloc((size_t)I * sizeof(float)), *w = malloc((size_t)I * sizeof(float)), *sc = malloc((size_t)I * sizeof(float));
        uint32_t *tmp = malloc((size_t)I * sizeof(uint32_t));
        int32_t *idx = malloc((size_t)I * sizeof(int32_t)), *pos = malloc((size_t)I * sizeof(int32_t));
        uint8_t *want = malloc((size_t)I), *got = malloc((size_t)I);
        for (size_t ai = 0; ai < sizeof(acts) / sizeof(acts[0]); ai++) {
            for (int32_t i = 0; i < I; i++) {
                g[i] = 3.0f * test_rng_normal(&r);
                if (i % 7 == 3) g[i] = i > 0 ? g[i - 1] : g[i]; /* some ties */
                a[i] = fabsf(sl_activate(acts[ai], g[i]));
                w[i] = 0.5f + test_rng_uniform(&r);
            }
            for (int32_t k = 0; k <= I; k += I > 40 ? I / 13 + 1 : 1) {
                /* stage 1 of TWO_STAGE: the top k by |act(g)| */
                sl_profile_layer P = {.rule = SL_RULE_TWO_STAGE, .cand_k = k, .topk = k};
                int32_t n = sl_select_candidates(&P, g, I, acts[ai], work, tmp, idx);
                plain_topk(a, I, k, want);
                memset(got, 0, (size_t)I);
                bool ok = n == k;
                for (int32_t q = 0; q < n; q++) got[idx[q]]++;
                ok = ok && !memcmp(got, want, (size_t)I);
                cases++;
                if (!EXPECT(ok, "two-stage stage 1 %s I=%d k=%d: %d selected", act_name(acts[ai]), I, k, n)) bad++;
                /* stage 1 of TWO_STAGE_PRED: the top k scores, through sl_select_active too */
                P.rule = SL_RULE_TWO_STAGE_PRED;
                n = sl_select_active(&P, 0.0f, NULL, g, I, acts[ai], tmp, idx);
                plain_topk(g, I, k, want);
                memset(got, 0, (size_t)I);
                for (int32_t q = 0; q < n; q++) got[idx[q]]++;
                cases++;
                if (!EXPECT(n == k && !memcmp(got, want, (size_t)I), "two-stage-pred stage 1 I=%d k=%d: %d selected", I, k, n)) bad++;
                /* stage 2 over these candidates: top k2 by |h| * w, and by |h| without weights */
                const int32_t nc = n;
                for (int32_t q = 0; q < nc; q++) h[q] = test_rng_normal(&r) * (q % 5 == 0 ? 0.0f : 1.0f);
                for (int wi = 0; wi < 2; wi++) {
                    for (int32_t k2 = 0; k2 <= nc; k2 += nc > 40 ? nc / 11 + 1 : 1) {
                        for (int32_t q = 0; q < nc; q++) sc[q] = fabsf(h[q]) * (wi ? w[idx[q]] : 1.0f);
                        const int32_t m = sl_select_stage2(h, wi ? w : NULL, idx, nc, k2, work, tmp, pos);
                        plain_topk(sc, nc, k2, want);
                        memset(got, 0, (size_t)nc);
                        for (int32_t q = 0; q < m; q++) got[pos[q]]++;
                        cases++;
                        if (!EXPECT(m == k2 && !memcmp(got, want, (size_t)nc), "stage 2 n=%d k=%d weights %d: %d selected", nc, k2, wi, m))
                            bad++;
                    }
                }
            }
        }
        free(g), free(a), free(work), free(h), free(w), free(sc), free(tmp), free(idx), free(pos), free(want), free(got);
    }
    CHECK(bad == 0, "two-stage rules: stage 1 and stage 2 equal sorting their definitions in %d cases", cases);
}

int main(void) {
    test_kth();
    test_cats();
    test_rules();
    test_two_stage();
    return test_summary();
}
