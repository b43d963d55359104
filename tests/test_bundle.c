/*
 * test_bundle.c — neuron bundles (model/bundle.c, model/bundle_mlp.c) against their plain
 * references.
 *
 * What it checks: on awkward shapes, for every weight type x activation x kernel variant, for
 * empty, single-neuron, random (10%, 50%), shuffled and full index lists (and the NULL list =
 * every neuron), with and without the gate pre-activations (CATS), on 1, 2 and 3 threads:
 *  - the fused forward equals sl_bundle_forward_ref on the bundled bytes (TOL_SAME_MATH: the
 *    reference is fed x rounded through Q8_0 as the kernels see it for quantized types;
 *    TOL_INT8_DOWN for the Q4_0N / Q8_0N layouts, whose down sum rounds its coefficients);
 *  - the bundle holds exactly the layer: sl_bundle_forward_ref equals sl_mlp_reference_w on the
 *    file's gate, up and down (TOL_EXACT: the exact columns keep down's own values);
 *  - 2 and 3 threads give the 1-thread result up to the order of float sums (TOL_THREADS);
 *  - the two stages (sl_bundle_gate_up, then sl_bundle_down on act(g) * u) give the fused
 *    result (TOL_THREADS: the same groups, the same rounding); min_abs_h gives the reference on
 *    the neurons it keeps; the batch union (sl_bundle_forward_batch) gives each token's reference
 *    and counts the union; the dense batch (sl_bundle_dense, B > 1: matrix products; the down
 *    of quantized types with Q8_0 activations, as the dense path) gives the reference on every
 *    neuron, and on each token's own list when given lists;
 *  - the dense batch of exact columns (sl_matmul_tc) equals sl_matmul on the file's down [H, I]
 *    (the same Q8_0 activations and integer sums: float order only);
 *  - the operator's transposed down (sl_transpose_down) stays within its re-rounding bound (Q8_0: max|w| (1/254 + 2^-11) per
 *    block of 32 along H; Q4_0: max|w| (1/8 + 2^-11); the 2^-11 is the f16 scale), and float
 *    types transpose exactly;
 *  - bad arguments get their status.
 * What it does not check: speed (`skipllama bench --profile`).
 * Tolerances are relative to max(1, max |reference|).
 */
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "format/quant.h"
#include "model/bundle_mlp.h"
#include "sparse/sparse_mlp.h"
#include "test_weights.h"
#include "testutil.h"
#include "util/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_SAME_MATH 1e-4
#define TOL_EXACT 1e-6
/* Q4_0 / Q8_0 bundles store the bundle layouts, whose down sum rounds each block's coefficients
 * to int8 (sparse_rows.h): like the dense path's Q8_0 activations, within 2%. */
#define TOL_INT8_DOWN 2e-2
/* 2 and 3 threads against 1, two stages against one pass: the same sums in another order */
#define TOL_THREADS 1e-5


/* Select a kernel variant; when this CPU cannot run it, say so in the form tests/run_tests.sh
 * lists as partly skipped and return false. */
static bool select_or_skip(sl_kernel_variant v) {
    if (sl_kernels_select(v)) return true;
    printf("# SKIP %s: this CPU lacks %s\n", sl_kernels_name(v), v == SL_KERNELS_AVX512 ? "AVX-512 (F/BW/VL/DQ + VNNI)" : "AVX2 + FMA + F16C");
    return false;
}

static const sl_type all_types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0, SL_TYPE_Q4_K, SL_TYPE_Q6_K};
/* Types without a bundle layout of their own (issue 19's): gate/up rows as in the file through the
 * generic kernels, down rows re-rounded to Q8_0 */
static bool is_other(sl_type t) { return t == SL_TYPE_Q4_K || t == SL_TYPE_Q6_K; }
static const sl_activation all_acts[] = {SL_ACT_SILU, SL_ACT_RELU, SL_ACT_GELU, SL_ACT_GELU_F16};

static bool is_quant(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0 || is_other(t); }

static double rel_diff(const float *a, const float *ref, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    double d = test_maxdiff(a, ref, n) / fmax(1.0, m);
    return d == d ? d : INFINITY;
}

/* x as the kernels see it: rounded through the activation format of the weights' products (Q8_0;
 * Q8_K for the K-quants). */
static void round_input(sl_type type, const float *x, float *xr, int64_t H) {
    memcpy(xr, x, (size_t)H * sizeof(float));
    if (!is_quant(type)) return;
    void *q = malloc(sl_act_size(type, H));
    sl_act_prepare(type, x, H, q);
    sl_dequantize_row_ref(sl_act_type_of(type), q, xr, H);
    free(q);
}

/* per-call checks print only when they fail; each group ends in one summary check */
#define EXPECT(cond, ...) ((cond) ? true : CHECK(false, __VA_ARGS__))

/* worst error / tolerance of each family, per kernel variant */
static double worst_fast, worst_layout, worst_threads, worst_stages, worst_filter, worst_batch, worst_dense, worst_masked;
static int n_cases;

static void note(double *worst, double d, double tol) {
    if (!(d <= tol)) d = INFINITY;
    if (d / tol > *worst) *worst = d / tol;
}

/* One layer of one shape through every pass. */
static void one_shape(sl_type type, int64_t H, int64_t I, sl_pool **pools, test_rng *r) {
    const float sg = 1.5f / sqrtf((float)H);
    void *gate = test_rand_weights(type, I, H, sg, r), *up = test_rand_weights(type, I, H, sg, r);
    void *down = test_rand_weights(type, H, I, 1.0f / sqrtf((float)I), r);
    sl_weight wg = test_weight_view(gate, type, I, H), wu = test_weight_view(up, type, I, H), wd = test_weight_view(down, type, H, I);
    sl_error err;
    void *dt = NULL;

    const int NB = 3;
    float *x = malloc((size_t)(NB * H) * sizeof(float)), *xr = malloc((size_t)(NB * H) * sizeof(float));
    float *out = malloc((size_t)(NB * H) * sizeof(float)), *ref = malloc((size_t)(NB * H) * sizeof(float));
    float *out1 = malloc((size_t)H * sizeof(float)), *ref2 = malloc((size_t)H * sizeof(float));
    float *gate_pre = malloc((size_t)(NB * I) * sizeof(float)), *row = malloc((size_t)H * sizeof(float));
    float *g = malloc((size_t)I * sizeof(float)), *u = malloc((size_t)I * sizeof(float)), *h = malloc((size_t)I * sizeof(float));
    float *hb = malloc((size_t)(NB * I) * sizeof(float)), *hb2 = malloc((size_t)(NB * I) * sizeof(float));
    int32_t *idx = malloc((size_t)I * sizeof(int32_t)), *kept = malloc((size_t)I * sizeof(int32_t));
    int32_t *lists[3], nl[3];
    bool *mask = malloc((size_t)I);
    for (int b = 0; b < NB; b++) lists[b] = malloc((size_t)I * sizeof(int32_t));
    for (int64_t c = 0; c < NB * H; c++) x[c] = test_rng_normal(r);
    for (int b = 0; b < NB; b++) round_input(type, x + b * H, xr + b * H, H);
    for (int b = 0; b < NB; b++)
        for (int64_t i = 0; i < I; i++) { /* CATS hands over the gate computed on the same input */
            sl_dequantize_row_ref(type, (const uint8_t *)gate + (size_t)i * wg.row_bytes, row, H);
            double s = 0;
            for (int64_t c = 0; c < H; c++) s += (double)row[c] * xr[b * H + c];
            gate_pre[b * I + i] = (float)s;
        }

    sl_neuron_bundle bd;
    if (!EXPECT(sl_bundle_init(&bd, pools[1], &wg, &wu, &wd, &err) == SL_OK, "bundle init %s H=%lld I=%lld: %s", sl_type_name(type),
                (long long)H, (long long)I, err.message))
        goto done;
    const sl_type want_d = type == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0C : type == SL_TYPE_Q8_0 ? SL_TYPE_Q8_0C : is_other(type) ? SL_TYPE_Q8_0N : type;
    /* other types: the reference takes the same re-rounded down as a plain Q8_0 matrix */
    void *dq = NULL;
    sl_weight wdq = wd;
    if (is_other(type)) {
        const size_t rb = sl_type_row_size(SL_TYPE_Q8_0, H);
        dq = malloc(rb * (size_t)I);
        EXPECT(sl_transpose_down(pools[1], &wd, SL_TYPE_Q8_0, 0, I, dq, rb, &err) == SL_OK, "transpose %s: %s", sl_type_name(type), err.message);
        wdq = test_weight_view(dq, SL_TYPE_Q8_0, I, H);
    }
    EXPECT(bd.stride % 64 == 0 && bd.t_d == want_d && bd.t_gu == sl_bundle_row_type(type) &&
               (bd.dscale != NULL) == (type == SL_TYPE_Q4_0 || type == SL_TYPE_Q8_0),
           "bundle stride %zu, types %s / %s", bd.stride, sl_type_name(bd.t_gu), sl_type_name(bd.t_d));
    const double tol_fast = is_quant(type) ? TOL_INT8_DOWN : TOL_SAME_MATH;
    for (size_t ai = 0; ai < sizeof(all_acts) / sizeof(all_acts[0]); ai++) {
        const sl_activation act = all_acts[ai];
        for (int kind = 0; kind < 7; kind++) {
            /* 0 empty, 1 single, 2 10%, 3 50%, 4 all, 5 50% shuffled, 6 NULL list (every neuron) */
            int32_t n = 0;
            for (int64_t i = 0; i < I; i++) {
                const float p = kind == 2 ? 0.1f : kind == 3 || kind == 5 ? 0.5f : kind >= 4 ? 1.0f : 0.0f;
                mask[i] = test_rng_uniform(r) < p;
            }
            if (kind == 1) mask[test_rng_u64(r) % (uint64_t)I] = true;
            for (int64_t i = 0; i < I; i++)
                if (mask[i]) idx[n++] = (int32_t)i;
            if (kind == 5)
                for (int32_t k = n - 1; k > 0; k--) {
                    int32_t j = (int32_t)(test_rng_u64(r) % (uint64_t)(k + 1)), t = idx[k];
                    idx[k] = idx[j];
                    idx[j] = t;
                }
            const int32_t *li = kind == 6 ? NULL : idx;
            for (int with_gate = 0; with_gate < 2; with_gate++) {
                const float *gp = with_gate ? NULL : gate_pre;
                EXPECT(sl_bundle_forward_ref(&bd, act, xr, li, n, gp, ref, &err) == SL_OK, "ref: %s", err.message);
                if (with_gate) { /* the layout: the bundle's reference against the operator's on the file's matrices */
                    EXPECT(sl_mlp_reference_w(&wg, &wu, is_other(type) ? NULL : &wd, is_other(type) ? &wdq : NULL, act, xr, 1, mask, ref2, &err) == SL_OK,
                           "mlp ref: %s", err.message);
                    note(&worst_layout, rel_diff(ref, ref2, (size_t)H), TOL_EXACT);
                }
                for (int th = 0; th < 3; th++) {
                    sl_bundle_ws ws = {0};
                    sl_bundle_opts o = {.gate_pre = gp};
                    for (int64_t c = 0; c < H; c++) out[c] = NAN;
                    if (!EXPECT(sl_bundle_forward(&bd, pools[th], &ws, act, x, li, n, &o, out, &err) == SL_OK, "forward: %s", err.message)) {
                        sl_bundle_ws_free(&ws);
                        continue;
                    }
                    const double d = rel_diff(out, ref, (size_t)H);
                    note(&worst_fast, d, tol_fast);
                    EXPECT(d <= tol_fast && o.n_down == n, "fused %s gate=%d H=%lld I=%lld kind %d threads %d: maxdiff %.3g > %.3g (%lld down rows)",
                           sl_type_name(type), with_gate, (long long)H, (long long)I, kind, th + 1, d, tol_fast, (long long)o.n_down);
                    if (th == 0) memcpy(out1, out, (size_t)H * sizeof(float));
                    else note(&worst_threads, rel_diff(out, out1, (size_t)H), TOL_THREADS);
                    if (th == 1 && with_gate) { /* two stages: the same groups, the same rounding */
                        EXPECT(sl_bundle_gate_up(&bd, pools[th], &ws, x, li, n, g, u, &err) == SL_OK, "gate_up: %s", err.message);
                        for (int32_t k = 0; k < n; k++) h[k] = sl_activate(act, g[k]) * u[k];
                        EXPECT(sl_bundle_down(&bd, pools[th], &ws, li, h, n, out, &err) == SL_OK, "down: %s", err.message);
                        note(&worst_stages, rel_diff(out, out1, (size_t)H), TOL_THREADS);
                        /* min_abs_h: the neurons it keeps, against the reference on them */
                        double m = 0;
                        for (int32_t k = 0; k < n; k++) m = fmax(m, fabs(h[k]));
                        const float t = (float)(0.3 * m);
                        int32_t nk = 0;
                        for (int32_t k = 0; k < n; k++)
                            if (fabsf(h[k]) >= t) kept[nk++] = li ? li[k] : k;
                        if (t > 0) {
                            sl_bundle_opts of = {.min_abs_h = t};
                            EXPECT(sl_bundle_forward(&bd, pools[th], &ws, act, x, li, n, &of, out, &err) == SL_OK, "filtered: %s", err.message);
                            EXPECT(sl_bundle_forward_ref(&bd, act, xr, kept, nk, NULL, ref2, &err) == SL_OK, "ref: %s", err.message);
                            /* a neuron right at the cut-off may fall either way in float: allow one */
                            note(&worst_filter, rel_diff(out, ref2, (size_t)H), tol_fast);
                            EXPECT(of.n_down >= nk - 1 && of.n_down <= nk + 1, "min_abs_h kept %lld down rows, reference %d", (long long)of.n_down, nk);
                        }
                    }
                    n_cases++;
                    sl_bundle_ws_free(&ws);
                }
            }
        }
        /* batches: three tokens with their own lists (10%, 50%, 30%), union and dense */
        for (int b = 0; b < NB; b++) {
            nl[b] = 0;
            const float p = b == 0 ? 0.1f : b == 1 ? 0.5f : 0.3f;
            for (int64_t i = 0; i < I; i++)
                if (test_rng_uniform(r) < p) lists[b][nl[b]++] = (int32_t)i;
        }
        int64_t nu_ref = 0;
        for (int64_t i = 0; i < I; i++) {
            bool in = false;
            for (int b = 0; b < NB; b++)
                for (int32_t k = 0; k < nl[b]; k++) in = in || lists[b][k] == i;
            nu_ref += in;
        }
        for (int gp_on = 0; gp_on < 2; gp_on++)
            for (int th = 0; th < 3; th++) {
                sl_bundle_ws ws = {0};
                int64_t nu = -1;
                EXPECT(sl_bundle_forward_batch(&bd, pools[th], &ws, act, x, NB, (const int32_t *const *)lists, nl, gp_on ? gate_pre : NULL, out,
                                               &nu, &err) == SL_OK, "batch: %s", err.message);
                EXPECT(nu == nu_ref, "batch union %lld == %lld", (long long)nu, (long long)nu_ref);
                for (int b = 0; b < NB; b++) {
                    EXPECT(sl_bundle_forward_ref(&bd, act, xr + b * H, lists[b], nl[b], gp_on ? gate_pre + b * I : NULL, ref, &err) == SL_OK, "ref");
                    note(&worst_batch, rel_diff(out + b * H, ref, (size_t)H), tol_fast);
                }
                /* dense products over every neuron, then over each token's own list */
                EXPECT(sl_bundle_dense(&bd, pools[th], &ws, act, x, NB, hb, hb2, NULL, out, &err) == SL_OK, "dense: %s", err.message);
                for (int b = 0; b < NB; b++) {
                    EXPECT(sl_bundle_forward_ref(&bd, act, xr + b * H, NULL, (int32_t)I, NULL, ref, &err) == SL_OK, "ref");
                    note(&worst_dense, rel_diff(out + b * H, ref, (size_t)H), tol_fast);
                }
                const sl_bundle_dense_opts dop = {.gate_pre = gp_on ? gate_pre : NULL, .lists = (const int32_t *const *)lists, .n = nl};
                EXPECT(sl_bundle_dense(&bd, pools[th], &ws, act, x, NB, hb, hb2, &dop, out, &err) == SL_OK, "dense lists: %s", err.message);
                for (int b = 0; b < NB; b++) {
                    EXPECT(sl_bundle_forward_ref(&bd, act, xr + b * H, lists[b], nl[b], gp_on ? gate_pre + b * I : NULL, ref, &err) == SL_OK, "ref");
                    note(&worst_masked, rel_diff(out + b * H, ref, (size_t)H), tol_fast);
                }
                sl_bundle_ws_free(&ws);
            }
    }
    sl_bundle_free(&bd);
    free(dq);
done:
    free(gate), free(up), free(down), free(dt), free(x), free(xr), free(out), free(out1), free(ref), free(ref2), free(gate_pre), free(row);
    free(g), free(u), free(h), free(hb), free(hb2), free(idx), free(kept), free(mask);
    for (int b = 0; b < NB; b++) free(lists[b]);
}

static void test_shapes(sl_pool **pools) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX512, SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    static const int64_t Hf[] = {1, 3, 17, 33, 129}, Hq[] = {32, 96, 160}, If[] = {1, 3, 7, 17, 33, 129}, Iq[] = {32, 96, 160};
    test_rng r = {4242};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!select_or_skip(vs[v])) continue;
        worst_fast = worst_layout = worst_threads = worst_stages = worst_filter = worst_batch = worst_dense = worst_masked = 0;
        n_cases = 0;
        for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
            const sl_type t = all_types[ti];
            /* quantized rows hold whole blocks of 32 (256 for the K-quants) in both directions (down is [H, I]) */
            static const int64_t Hk[] = {256, 512}, Ik[] = {256, 512};
            const int64_t *Hs = is_other(t) ? Hk : is_quant(t) ? Hq : Hf, *Is = is_other(t) ? Ik : is_quant(t) ? Iq : If;
            const size_t nH = is_other(t) ? 2 : is_quant(t) ? 3 : 5, nI = is_other(t) ? 2 : is_quant(t) ? 3 : 6;
            for (size_t hi = 0; hi < nH; hi++)
                for (size_t ii = 0; ii < nI; ii++)
                    if (!(vs[v] == SL_KERNELS_SCALAR && hi + ii > 4)) one_shape(t, Hs[hi], Is[ii], pools, &r); /* scalar: fewer */
        }
        const char *vn = sl_kernels_name(vs[v]);
        CHECK(worst_fast <= 1.0 && n_cases > 0, "%s kernels: %d fused calls within tolerance (worst %.3g x tol)", vn, n_cases, worst_fast);
        CHECK(worst_layout <= 1.0, "%s kernels: bundle == the plain matrices (worst %.3g x %.0e)", vn, worst_layout, TOL_EXACT);
        CHECK(worst_threads <= 1.0, "%s kernels: 2 and 3 threads == 1 thread up to float order (worst %.3g x %.0e)", vn, worst_threads, TOL_THREADS);
        CHECK(worst_stages <= 1.0, "%s kernels: gate_up then down == the fused pass (worst %.3g x %.0e)", vn, worst_stages, TOL_THREADS);
        CHECK(worst_filter <= 1.0, "%s kernels: min_abs_h == the reference on the kept neurons (worst %.3g x tol)", vn, worst_filter);
        CHECK(worst_batch <= 1.0, "%s kernels: batch union == each token's reference (worst %.3g x tol)", vn, worst_batch);
        CHECK(worst_dense <= 1.0, "%s kernels: dense batch (matrix products) == reference on every neuron (worst %.3g x tol)", vn, worst_dense);
        CHECK(worst_masked <= 1.0, "%s kernels: dense batch with lists == each token's reference (worst %.3g x tol)", vn, worst_masked);
    }
    sl_kernels_select(SL_KERNELS_AUTO);
}

/* The transposed down: float types exactly, Q8_0 / Q4_0 within the bound of one more rounding. */
static void test_transpose(sl_pool *pool) {
    test_rng r = {77};
    const int64_t H = 96, I = 64;
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        const sl_type t = all_types[ti];
        if (is_other(t)) continue; /* the operator's transposition: the file types with a layout */
        void *down = test_rand_weights(t, H, I, 1.0f, &r);
        sl_weight wd = test_weight_view(down, t, H, I);
        const size_t rb = sl_bundle_row_bytes(sl_bundle_row_type(t), H);
        uint8_t *dt = malloc(rb * (size_t)I);
        float *col = malloc((size_t)H * sizeof(float)), *got = malloc((size_t)H * sizeof(float)), *rowf = malloc((size_t)I * sizeof(float));
        sl_error err;
        if (!CHECK(sl_transpose_down(pool, &wd, sl_bundle_row_type(t), 0, I, dt, rb, &err) == SL_OK, "transpose %s", sl_type_name(t)))
            printf("# %s\n", err.message);
        double worst = 0, se = 0, sw = 0;
        for (int64_t i = 0; i < I; i++) {
            for (int64_t c = 0; c < H; c++) {
                sl_dequantize_row_ref(t, (const uint8_t *)down + (size_t)c * wd.row_bytes, rowf, I);
                col[c] = rowf[i];
            }
            sl_dequantize_row_ref(sl_bundle_row_type(t), dt + (size_t)i * rb, got, H);
            for (int64_t b = 0; b < H / 32 || (b == 0 && !is_quant(t)); b++) {
                const int64_t c0 = is_quant(t) ? 32 * b : 0, c1 = is_quant(t) ? c0 + 32 : H;
                double m = 0;
                for (int64_t c = c0; c < c1; c++) m = fmax(m, fabs(col[c]));
                /* half a step of the new block (Q4_0: a whole step at its clamped top), plus the f16
                 * rounding of the block's scale times the largest |q| (ggml rounds against the
                 * float scale, then stores it as f16): 2^-11 relative, times 127 / 127 or 8 / 8 */
                const double bound = t == SL_TYPE_Q8_0 ? m * (1.0 / 254.0 + 1.0 / 2048.0) : t == SL_TYPE_Q4_0 ? m * (1.0 / 8.0 + 1.0 / 2048.0) : 0.0;
                for (int64_t c = c0; c < c1; c++) {
                    const double e = fabs((double)got[c] - col[c]);
                    worst = fmax(worst, bound > 0 ? e / bound : e > 0 ? INFINITY : 0);
                    se += e * e, sw += (double)col[c] * col[c];
                }
                if (!is_quant(t)) break;
            }
        }
        CHECK(worst <= 1.0, "transposed down %s: re-rounding within its bound (worst %.3g x bound; RMS error %.2f%% of the RMS weight)",
              sl_type_name(t), worst, 100.0 * sqrt(se / sw));
        free(down), free(dt), free(col), free(got), free(rowf);
    }
}

/* The batch products over strided rows against their definitions, every variant. */
static void test_matmul_bundle(sl_pool **pools) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX512, SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    static const int64_t Ks[] = {1, 7, 65, 130}, Ns_f[] = {1, 17, 33, 129, 300}, Ns_q[] = {32, 96, 160, 288}, Bs[] = {1, 2, 3, 5};
    test_rng r = {99};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!select_or_skip(vs[v])) continue;
        double worst_t = 0, worst_r = 0;
        for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
            const sl_type t = all_types[ti], st = sl_bundle_row_type(t);
            if (is_other(t)) continue;
            const int64_t *Ns = is_quant(t) ? Ns_q : Ns_f;
            for (size_t ni = 0; ni < 4; ni++)
                for (size_t ki = 0; ki < 4; ki++)
                    for (size_t bi = 0; bi < 4; bi++) {
                        const int64_t N = Ns[ni], K = Ks[ki], B = Bs[bi];
                        const size_t prb = sl_type_row_size(t, N), srb = sl_bundle_row_bytes(st, N), stride = srb + 64;
                        uint8_t *plain = test_rand_weights(t, K, N, 1.0f, &r), *rows = calloc((size_t)K, stride);
                        for (int64_t k = 0; k < K; k++) {
                            const uint8_t *src = plain + (size_t)k * prb;
                            if (st == SL_TYPE_Q4_0N) sl_q4_0n_pack_row(src, N, rows + (size_t)k * stride);
                            else if (st == SL_TYPE_Q8_0N) sl_q8_0n_pack_row(src, N, rows + (size_t)k * stride);
                            else memcpy(rows + (size_t)k * stride, src, prb);
                        }
                        float *X = malloc((size_t)(B * (K > N ? K : N)) * sizeof(float)), *Y = malloc((size_t)(B * (K > N ? K : N)) * sizeof(float));
                        float *R = malloc((size_t)(B * (K > N ? K : N)) * sizeof(float));
                        for (int64_t i = 0; i < B * K; i++) X[i] = test_rng_normal(&r);
                        for (int th = 0; th < 3; th++) { /* transposed: Y [B, N] = X [B, K] . rows */
                            sl_matmul_t(pools[th], st, rows, stride, K, N, X, B, Y);
                            sl_matmul_t_ref(st, rows, stride, K, N, X, B, R);
                            for (int64_t i = 0; i < B * N; i++)
                                worst_t = fmax(worst_t, fabs((double)Y[i] - R[i]) / (1.0 + fabs(R[i])) / sqrt((double)K));
                        }
                        /* plain direction: Y [B, K] = rows . X [B, N], against sl_matmul on the plain rows */
                        for (int64_t i = 0; i < B * N; i++) X[i] = test_rng_normal(&r);
                        for (int th = 0; th < 3; th++) {
                            sl_matmul_rows(pools[th], st, rows, stride, K, N, X, B, Y);
                            sl_matmul(pools[th], t, plain, K, N, X, B, R);
                            for (int64_t i = 0; i < B * K; i++)
                                worst_r = fmax(worst_r, fabs((double)Y[i] - R[i]) / (1.0 + fabs(R[i])) / sqrt((double)N));
                        }
                        free(plain), free(rows), free(X), free(Y), free(R);
                    }
        }
        CHECK(worst_t <= 1e-6, "%s kernels: sl_matmul_t == sl_matmul_t_ref, every type, awkward K/N/B, 1-3 threads (worst %.3g per sqrt(K))",
              sl_kernels_name(vs[v]), worst_t);
        CHECK(worst_r <= 1e-6, "%s kernels: sl_matmul_rows over strided bundle rows == sl_matmul on the plain rows (worst %.3g per sqrt(n))",
              sl_kernels_name(vs[v]), worst_r);
    }
    sl_kernels_select(SL_KERNELS_AUTO);
}

/* Exact columns: the prefill down product over them against the dense path's own product on the
 * file's down matrix, every variant, 1-3 threads (same integer sums, only float order differs). */
static void test_matmul_tc(sl_pool **pools) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX512, SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    static const int64_t Hs[] = {32, 96, 160, 256}, Is[] = {32, 96}, Bs[] = {2, 3, 7};
    static const sl_type ts[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0};
    test_rng r = {123};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!select_or_skip(vs[v])) continue;
        double worst = 0;
        for (size_t ti = 0; ti < 2; ti++)
            for (size_t hi = 0; hi < 4; hi++)
                for (size_t ii = 0; ii < 2; ii++)
                    for (size_t bi = 0; bi < 3; bi++) {
                        const sl_type t = ts[ti];
                        const int64_t H = Hs[hi], I = Is[ii], B = Bs[bi];
                        void *gate = test_rand_weights(t, I, H, 0.1f, &r), *up = test_rand_weights(t, I, H, 0.1f, &r), *down = test_rand_weights(t, H, I, 0.1f, &r);
                        sl_weight wg = test_weight_view(gate, t, I, H), wu = test_weight_view(up, t, I, H), wd = test_weight_view(down, t, H, I);
                        sl_neuron_bundle bd;
                        sl_error err;
                        if (!EXPECT(sl_bundle_init(&bd, pools[1], &wg, &wu, &wd, &err) == SL_OK, "init: %s", err.message)) continue;
                        float *X = malloc((size_t)(B * I) * sizeof(float)), *Y = malloc((size_t)(B * H) * sizeof(float)), *R = malloc((size_t)(B * H) * sizeof(float));
                        for (int64_t i = 0; i < B * I; i++) X[i] = test_rng_uniform(&r) < 0.3f ? 0.0f : test_rng_normal(&r);
                        for (int th = 0; th < 3; th++) {
                            sl_matmul_tc(pools[th], bd.t_d, bd.data + bd.off_down, bd.stride, bd.dscale, I, H, X, B, Y);
                            sl_matmul(pools[th], t, down, H, I, X, B, R);
                            for (int64_t i = 0; i < B * H; i++) worst = fmax(worst, fabs((double)Y[i] - R[i]) / (1.0 + fabs(R[i])));
                        }
                        free(X), free(Y), free(R), free(gate), free(up), free(down);
                        sl_bundle_free(&bd);
                    }
        CHECK(worst <= 1e-5, "%s kernels: sl_matmul_tc over exact columns == sl_matmul on the file's down (worst %.3g)", sl_kernels_name(vs[v]), worst);
    }
    sl_kernels_select(SL_KERNELS_AUTO);
}

static void test_bad_args(sl_pool *pool) {
    test_rng r = {9};
    const int64_t H = 32, I = 8;
    void *gate = test_rand_weights(SL_TYPE_F32, I, H, 0.1f, &r), *up = test_rand_weights(SL_TYPE_F32, I, H, 0.1f, &r);
    void *down = test_rand_weights(SL_TYPE_F32, H, I, 0.1f, &r);
    sl_weight wg = test_weight_view(gate, SL_TYPE_F32, I, H), wu = test_weight_view(up, SL_TYPE_F32, I, H), wd = test_weight_view(down, SL_TYPE_F32, H, I);
    sl_weight wrong = test_weight_view(down, SL_TYPE_F32, I, H);
    sl_neuron_bundle b;
    sl_error err;
    CHECK(sl_bundle_init(&b, NULL, &wg, &wu, &wrong, &err) == SL_ERR_INVALID_ARG && b.data == NULL, "down of the wrong shape refused");
    CHECK(sl_bundle_init(&b, NULL, NULL, &wu, &wd, &err) == SL_ERR_INVALID_ARG, "NULL gate refused");
    CHECK(sl_bundle_layout(&b, SL_TYPE_Q8_0, SL_TYPE_Q8_0, false, 48, 8, &err) == SL_ERR_INVALID_ARG, "Q8_0 rows of 48 refused: %s", err.message);
    CHECK(sl_bundle_layout(&b, SL_TYPE_Q4_0, SL_TYPE_Q4_0, false, 64, 48, &err) == SL_ERR_INVALID_ARG, "Q4_0 down of 48 neurons refused: %s", err.message);
    if (CHECK(sl_bundle_init(&b, pool, &wg, &wu, &wd, &err) == SL_OK, "init: %s", err.message)) {
        float x[32] = {0}, out[32];
        int32_t idx[2] = {0, 8}, ok[1] = {3};
        sl_bundle_ws ws = {0};
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, idx, 2, NULL, out, &err) == SL_ERR_RANGE, "index %d refused: %s", idx[1], err.message);
        CHECK(sl_bundle_forward(&b, pool, NULL, SL_ACT_SILU, x, ok, 1, NULL, out, &err) == SL_ERR_INVALID_ARG, "NULL workspace refused");
        CHECK(sl_bundle_forward(&b, pool, &ws, (sl_activation)99, x, ok, 1, NULL, out, &err) == SL_ERR_UNSUPPORTED, "unknown activation refused");
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, NULL, 3, NULL, out, &err) == SL_ERR_INVALID_ARG, "no list with n != I refused");
        for (int c = 0; c < 32; c++) out[c] = 1.0f;
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, NULL, 0, NULL, out, &err) == SL_OK && out[0] == 0.0f && out[31] == 0.0f,
              "no neurons: zero output");
        const int32_t *ls[1] = {idx};
        int32_t n2[1] = {2};
        CHECK(sl_bundle_forward_batch(&b, pool, &ws, SL_ACT_SILU, x, 1, ls, n2, NULL, out, NULL, &err) == SL_ERR_RANGE, "batch index refused");
        CHECK(sl_bundle_forward_batch(&b, pool, &ws, SL_ACT_SILU, x, 65, ls, n2, NULL, out, NULL, &err) == SL_ERR_INVALID_ARG, "batch of 65 refused");
        sl_bundle_ws_free(&ws);
        sl_bundle_free(&b);
    }
    free(gate), free(up), free(down);
}

int main(void) {
    sl_pool *pools[3] = {sl_pool_init(1), sl_pool_init(2), sl_pool_init(3)};
    test_transpose(pools[1]);
    test_matmul_bundle(pools);
    test_matmul_tc(pools);
    test_shapes(pools);
    test_bad_args(pools[1]);
    for (int i = 0; i < 3; i++) sl_pool_free(pools[i]);
    return test_summary();
}
