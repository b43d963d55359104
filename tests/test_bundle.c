/*
 * test_bundle.c — neuron bundles (bundle.c) against their plain references.
 *
 * What it checks: on awkward shapes, for every weight type x activation x kernel variant, with
 * and without gate rows (CATS passes the gate pre-activations), for empty, single-neuron,
 * random (10%, 50%), shuffled and full index lists, on 1, 2 and 3 threads:
 *  - the fused forward equals sl_bundle_forward_ref on the bundled bytes (TOL_SAME_MATH: the
 *    reference is fed x rounded through Q8_0 as the kernels see it for quantized types;
 *    TOL_INT8_DOWN for the Q4_0N / Q8_0N layouts, whose down sum rounds its coefficients);
 *  - the bundle holds exactly the layer: sl_bundle_forward_ref equals sl_mlp_reference_w on the
 *    original gate/up and the operator's own transposed down (TOL_EXACT: same dequantized
 *    numbers, only the rounding of the final sum may differ; TOL_SAME_MATH for bundles without
 *    gate rows, whose gate arrives as float pre-activations);
 *  - 2 and 3 threads give the 1-thread result up to the order of float sums (TOL_THREADS: the
 *    int8 rounding of the bundle layouts is per group, and groups do not depend on threads);
 *  - bad arguments get their status.
 * What it does not check: speed (`skipllama bench --profile`).
 * Tolerances are relative to max(1, max |reference|).
 */
#include "model/context.h"
#include "kernels/kernels.h"
#include "format/quant.h"
#include "sparse/bundle.h"
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
 * to int8 (sparse_mlp.h): like the dense path's Q8_0 activations, within 2%. */
#define TOL_INT8_DOWN 2e-2
/* 2 and 3 threads against 1: the same sums in another order */
#define TOL_THREADS 1e-5
static double worst_threads;

static const sl_type all_types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
static const sl_activation all_acts[] = {SL_ACT_SILU, SL_ACT_RELU, SL_ACT_GELU, SL_ACT_GELU_F16};

static bool is_quant(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0; }

static double rel_diff(const float *a, const float *ref, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    return test_maxdiff(a, ref, n) / fmax(1.0, m);
}

/* x as the kernels see it: rounded through Q8_0 for quantized weights. */
static void round_input(sl_type type, const float *x, float *xr, int64_t H) {
    memcpy(xr, x, (size_t)H * sizeof(float));
    if (!is_quant(type)) return;
    sl_block_q8_0 *q = malloc(sl_type_row_size(SL_TYPE_Q8_0, H));
    sl_act_prepare(type, x, H, q);
    sl_dequantize_row_ref(SL_TYPE_Q8_0, q, xr, H);
    free(q);
}

/* per-call checks print only when they fail; each shape group ends in one summary check */
#define EXPECT(cond, ...) ((cond) ? true : CHECK(false, __VA_ARGS__))

static double worst_fast = 0, worst_layout = 0;
static int n_cases = 0;

static void one_shape(sl_type type, int64_t H, int64_t I, sl_pool **pools, test_rng *r) {
    const float sg = 1.5f / sqrtf((float)H);
    void *gate = test_rand_weights(type, I, H, sg, r), *up = test_rand_weights(type, I, H, sg, r);
    void *down = test_rand_weights(type, H, I, 1.0f / sqrtf((float)I), r);
    sl_weight wg = test_weight_view(gate, type, I, H), wu = test_weight_view(up, type, I, H), wd = test_weight_view(down, type, H, I);
    const sl_type dt_type = sl_mlp_down_t_type(type);
    const size_t dt_bytes = sl_mlp_down_t_bytes(&wd, dt_type);
    void *dt = malloc(dt_bytes);
    sl_weight wdt;
    sl_error err;
    EXPECT(sl_mlp_transpose_down(NULL, &wd, dt_type, dt, dt_bytes, &wdt, &err) == SL_OK, "transpose: %s", err.message);

    float *x = malloc((size_t)H * sizeof(float)), *xr = malloc((size_t)H * sizeof(float));
    float *out = malloc((size_t)H * sizeof(float)), *ref = malloc((size_t)H * sizeof(float)), *out1 = malloc((size_t)H * sizeof(float));
    float *ref2 = malloc((size_t)H * sizeof(float)), *gate_pre = malloc((size_t)I * sizeof(float));
    float *row = malloc((size_t)H * sizeof(float));
    int32_t *idx = malloc((size_t)I * sizeof(int32_t));
    bool *mask = malloc((size_t)I);
    for (int64_t c = 0; c < H; c++) x[c] = test_rng_normal(r);
    round_input(type, x, xr, H);
    for (int64_t i = 0; i < I; i++) { /* CATS hands over the gate computed on the same input */
        sl_dequantize_row_ref(type, (const uint8_t *)gate + (size_t)i * wg.row_bytes, row, H);
        double s = 0;
        for (int64_t c = 0; c < H; c++) s += (double)row[c] * xr[c];
        gate_pre[i] = (float)s;
    }

    for (int with_gate = 0; with_gate < 2; with_gate++) {
        sl_neuron_bundle b;
        if (!EXPECT(sl_bundle_init(&b, pools[1], &wg, &wu, &wd, with_gate, &err) == SL_OK, "bundle init %s H=%lld I=%lld: %s",
                   sl_type_name(type), (long long)H, (long long)I, err.message))
            continue;
        /* down keeps its type, or its bundle layout (Q4_0N / Q8_0N) */
        const sl_type dt_layout = dt_type == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0N : dt_type == SL_TYPE_Q8_0 ? SL_TYPE_Q8_0N : dt_type;
        EXPECT(b.stride % 64 == 0 && (b.t_d == dt_type || b.t_d == dt_layout), "bundle stride %zu, down type %s", b.stride,
               sl_type_name(dt_type));
        /* the bundle layouts round the down coefficients to int8 per block (sparse_mlp.h) */
        const double tol_fast = sl_is_bundle_layout(b.t_d) ? TOL_INT8_DOWN : TOL_SAME_MATH;
        for (size_t ai = 0; ai < sizeof(all_acts) / sizeof(all_acts[0]); ai++) {
            const sl_activation act = all_acts[ai];
            for (int kind = 0; kind < 6; kind++) {
                /* 0 empty, 1 single, 2 10%, 3 50%, 4 all, 5 50% shuffled */
                int32_t n = 0;
                for (int64_t i = 0; i < I; i++) {
                    const float p = kind == 2 ? 0.1f : kind == 3 || kind == 5 ? 0.5f : kind == 4 ? 1.0f : 0.0f;
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
                const float *gp = with_gate ? NULL : gate_pre;
                /* the layout: the bundle's reference against the operator's reference on the
                 * original matrices (same dequantized numbers) */
                EXPECT(sl_bundle_forward_ref(&b, act, xr, idx, n, gp, ref, &err) == SL_OK, "ref: %s", err.message);
                /* without gate rows the bundle reference takes the gate from gate_pre, rounded
                 * to float: the operator's reference keeps it in double, so TOL_SAME_MATH there */
                EXPECT(sl_mlp_reference_w(&wg, &wu, NULL, &wdt, act, xr, 1, mask, ref2, &err) == SL_OK, "mlp ref: %s", err.message);
                const double d_layout = rel_diff(ref, ref2, (size_t)H), tol_layout = with_gate ? TOL_EXACT : TOL_SAME_MATH;
                if (d_layout / tol_layout > worst_layout / TOL_EXACT) worst_layout = d_layout * TOL_EXACT / tol_layout;
                EXPECT(d_layout <= tol_layout, "layout %s gate=%d %s H=%lld I=%lld kind %d: %.3g > %.3g", sl_type_name(type), with_gate,
                       sl_activation_name(act), (long long)H, (long long)I, kind, d_layout,
                       tol_layout);
                for (int th = 0; th < 3; th++) {
                    sl_bundle_ws ws = {0};
                    for (int64_t c = 0; c < H; c++) out[c] = NAN;
                    if (!EXPECT(sl_bundle_forward(&b, pools[th], &ws, act, x, idx, n, gp, out, &err) == SL_OK, "forward: %s", err.message)) {
                        sl_bundle_ws_free(&ws);
                        continue;
                    }
                    double d = rel_diff(out, ref, (size_t)H);
                    if (th == 0) memcpy(out1, out, (size_t)H * sizeof(float));
                    else { /* groups hold the same neurons at any thread count: only float order differs */
                        const double dt = rel_diff(out, out1, (size_t)H);
                        if (!(dt <= TOL_THREADS)) worst_threads = INFINITY;
                        else if (dt > worst_threads) worst_threads = dt;
                    }
                    if (!(d <= tol_fast)) d = INFINITY; /* NaN too */
                    if (d / tol_fast > worst_fast) worst_fast = d / tol_fast;
                    EXPECT(d <= tol_fast, "fused %s gate=%d H=%lld I=%lld kind %d threads %d: maxdiff %.3g > %.3g", sl_type_name(type),
                          with_gate, (long long)H, (long long)I, kind, th + 1, d, tol_fast);
                    n_cases++;
                    sl_bundle_ws_free(&ws);
                }
            }
        }
        sl_bundle_free(&b);
    }
    free(gate), free(up), free(down), free(dt), free(x), free(xr), free(out), free(out1), free(ref), free(ref2), free(gate_pre), free(row),
        free(idx), free(mask);
}

static void test_shapes(sl_pool **pools) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX512, SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    static const int64_t Hf[] = {1, 3, 17, 33}, Hq[] = {32, 96}, If[] = {1, 3, 7, 17, 33, 129}, Iq[] = {32, 96, 160};
    test_rng r = {4242};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!sl_kernels_select(vs[v])) continue;
        worst_fast = worst_layout = worst_threads = 0;
        n_cases = 0;
        for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
            const sl_type t = all_types[ti];
            const int64_t *Hs = is_quant(t) ? Hq : Hf;
            const size_t nH = is_quant(t) ? 2 : 4;
            /* quantized rows hold whole blocks of 32 in both directions (down is [H, I]) */
            const int64_t *Is = is_quant(t) ? Iq : If;
            const size_t nI = is_quant(t) ? 3 : 6;
            for (size_t hi = 0; hi < nH; hi++)
                for (size_t ii = 0; ii < nI; ii++) one_shape(t, Hs[hi], Is[ii], pools, &r);
        }
        CHECK(worst_fast <= 1.0 && worst_layout <= TOL_EXACT && n_cases > 0, "%s kernels: %d fused calls within tolerance",
              sl_kernels_name(vs[v]), n_cases);
        CHECK(worst_threads <= TOL_THREADS, "%s kernels: 2 and 3 threads == 1 thread up to float order (worst rel diff %.3g, tol %.0e)",
              sl_kernels_name(vs[v]), worst_threads, TOL_THREADS);
        printf("# %s kernels: %d fused calls, worst maxdiff/scale vs reference %.3g x its tolerance, bundle vs operator reference %.3g (in units of tol %.0e)\n",
               sl_kernels_name(vs[v]), n_cases, worst_fast, worst_layout, TOL_EXACT);
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
    CHECK(sl_bundle_init(&b, NULL, &wg, &wu, &wrong, true, &err) == SL_ERR_INVALID_ARG && b.data == NULL, "down of the wrong shape refused");
    CHECK(sl_bundle_init(&b, NULL, NULL, &wu, &wd, true, &err) == SL_ERR_INVALID_ARG, "NULL gate refused");
    if (CHECK(sl_bundle_init(&b, pool, &wg, &wu, &wd, false, &err) == SL_OK, "init: %s", err.message)) {
        float x[32] = {0}, out[32], gp[8] = {0};
        int32_t idx[2] = {0, 8}, ok[1] = {3};
        sl_bundle_ws ws = {0};
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, ok, 1, NULL, out, &err) == SL_ERR_INVALID_ARG,
              "no gate rows and no gate_pre refused");
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, idx, 2, gp, out, &err) == SL_ERR_RANGE, "index %d refused: %s", idx[1],
              err.message);
        CHECK(sl_bundle_forward(&b, pool, NULL, SL_ACT_SILU, x, ok, 1, gp, out, &err) == SL_ERR_INVALID_ARG, "NULL workspace refused");
        CHECK(sl_bundle_forward(&b, pool, &ws, (sl_activation)99, x, ok, 1, gp, out, &err) == SL_ERR_UNSUPPORTED,
              "unknown activation refused");
        for (int c = 0; c < 32; c++) out[c] = 1.0f;
        CHECK(sl_bundle_forward(&b, pool, &ws, SL_ACT_SILU, x, NULL, 0, gp, out, &err) == SL_OK && out[0] == 0.0f && out[31] == 0.0f,
              "no neurons: zero output");
        sl_bundle_ws_free(&ws);
        sl_bundle_free(&b);
    }
    free(gate), free(up), free(down);
}

int main(void) {
    sl_pool *pools[3] = {sl_pool_init(1), sl_pool_init(2), sl_pool_init(3)};
    test_shapes(pools);
    test_bad_args(pools[1]);
    for (int i = 0; i < 3; i++) sl_pool_free(pools[i]);
    return test_summary();
}
