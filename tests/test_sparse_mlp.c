/*
 * test_sparse_mlp.c — the sparse MLP operator against its plain reference.
 *
 * What it checks: for every weight type x activation, on awkward shapes, with all-false,
 * all-true, single-neuron and random masks, the operator matches the reference MLP with the
 * inactive neurons zeroed; masks and index lists agree; per-row, shared and union modes agree;
 * 1, 2 and 3 threads agree; all-true equals the dense MLP; the active-row cache gives the same
 * results while its active set changes; the transposed down matrix is exact for float types and
 * within the stated re-quantization bound for Q8_0/Q4_0; every bad argument gets its status.
 * What it does not check: speed (see `skipllama bench-op`).
 *
 * Tolerances (all relative to max(1, max |reference|)):
 *  TOL_SAME_MATH  the reference fed the operator's own inputs (x rounded through Q8_0 for
 *                 quantized types, the operator's down_t): only the summation order differs.
 *  TOL_ORDER      two operator runs that differ only in summation order (threads, index order,
 *                 cache slots, modes).
 *  TOL_GELU_F16   either of the above for gelu_f16 (llama.cpp's float16 GELU): a gate computed in
 *                 another order may round to the neighbouring float16 (2^-11 of that neuron).
 *  TOL_Q8_0 / TOL_Q4_0  the operator against the reference on the original x and down: adds
 *                 the Q8_0 rounding of x and the second rounding of down_t (see skipllama.h).
 */
#include "kernels/kernels.h"
#include "format/quant.h"
#include "skipllama.h"
#include "sparse/sparse_mlp.h"
#include "test_weights.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_SAME_MATH 1e-4
#define TOL_ORDER 1e-4
#define TOL_GELU_F16 2e-3
#define TOL_Q8_0 6e-2
#define TOL_Q4_0 2.5e-1
/* The bundled Q4_0 / Q8_0 layouts under AVX-512 (Q4_0N / Q8_0N) round each block's down
 * coefficients to int8 (sparse_mlp.h, sl_sp_axpy_rows_bundle_ref): the kind of rounding the
 * dense path applies to its activations, whose checks here show 1.5-1.7% ("dense down path");
 * 2% bounds it. */
#define TOL_INT8_DOWN 2e-2


/* Select a kernel variant; when this CPU cannot run it, say so in the form tests/run_tests.sh
 * lists as partly skipped and return false. */
static bool select_or_skip(sl_kernel_variant v) {
    if (sl_kernels_select(v)) return true;
    printf("# SKIP %s: this CPU lacks %s\n", sl_kernels_name(v), v == SL_KERNELS_AVX512 ? "AVX-512 (F/BW/VL/DQ + VNNI)" : "AVX2 + FMA + F16C");
    return false;
}

static const sl_type all_types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
static const sl_activation all_acts[] = {SL_ACT_SILU, SL_ACT_RELU, SL_ACT_GELU, SL_ACT_GELU_F16};

/* local, so the test does not pull in the model loader */
static const char *act_name(sl_activation a) { return sl_activation_name(a); }

static bool is_quant(sl_type t) { return t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0; }

static double tol_vs_original(sl_type t) {
    return t == SL_TYPE_Q8_0 ? TOL_Q8_0 : t == SL_TYPE_Q4_0 ? TOL_Q4_0 : TOL_SAME_MATH;
}
/* the same for gelu_f16, whose float16 steps add TOL_GELU_F16 (see above) */
static double tol_vs_original_act(sl_type t, sl_activation act) {
    const double tol = tol_vs_original(t);
    return act == SL_ACT_GELU_F16 && tol < TOL_GELU_F16 ? TOL_GELU_F16 : tol;
}

/* One random MLP and its views. */
typedef struct fixture {
    sl_type type;
    int64_t H, I;
    void *gate, *up, *down, *down_t; /* down_t built with sl_mlp_transpose_down */
    sl_weight wg, wu, wd, wdt;
} fixture;

static void fixture_make(fixture *f, sl_type type, int64_t H, int64_t I, test_rng *r) {
    memset(f, 0, sizeof(*f));
    f->type = type;
    f->H = H;
    f->I = I;
    f->gate = test_rand_weights(type, I, H, 1.5f / sqrtf((float)H), r);
    f->up = test_rand_weights(type, I, H, 1.5f / sqrtf((float)H), r);
    f->down = test_rand_weights(type, H, I, 1.0f / sqrtf((float)I), r);
    f->wg = test_weight_view(f->gate, type, I, H);
    f->wu = test_weight_view(f->up, type, I, H);
    f->wd = test_weight_view(f->down, type, H, I);
    size_t bytes = sl_mlp_down_t_bytes(&f->wd, type);
    f->down_t = malloc(bytes);
    sl_error err;
    sl_status st = sl_mlp_transpose_down(NULL, &f->wd, type, f->down_t, bytes, &f->wdt, &err);
    if (st) printf("# transpose failed: %s\n", err.message);
}

static void fixture_free(fixture *f) {
    free(f->gate);
    free(f->up);
    free(f->down);
    free(f->down_t);
}

static sl_mlp_weights fixture_weights(const fixture *f, bool with_down_t) {
    sl_mlp_weights w = {f->type, f->H, f->I, f->gate, f->up, f->down, with_down_t ? f->down_t : NULL};
    return w;
}

static double rel_diff(const float *a, const float *ref, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)ref[i]));
    return test_maxdiff(a, ref, n) / fmax(1.0, m);
}

/* x rounded through Q8_0 the way the operator prepares it (identity for float types). */
static void round_input(sl_type type, const float *x, float *xr, int64_t B, int64_t H) {
    if (!is_quant(type)) {
        memcpy(xr, x, (size_t)(B * H) * sizeof(float));
        return;
    }
    sl_block_q8_0 *q = malloc(sl_type_row_size(SL_TYPE_Q8_0, H));
    for (int64_t b = 0; b < B; b++) {
        sl_act_prepare(type, x + b * H, H, q);
        sl_dequantize_row_ref(SL_TYPE_Q8_0, q, xr + b * H, H);
    }
    free(q);
}

/* gate_pre[b * I + i] = gate_i . xr[b] in double on the dequantized row: what a caller such as
 * CATS hands the operator (xr: the input as the operator sees it, round_input). */
static void reference_gate_pre(const fixture *f, const float *xr, int64_t B, float *gate_pre) {
    float *row = malloc((size_t)f->H * sizeof(float));
    for (int64_t i = 0; i < f->I; i++) {
        sl_dequantize_row_ref(f->type, (const uint8_t *)f->gate + (size_t)i * f->wg.row_bytes, row, f->H);
        for (int64_t b = 0; b < B; b++) {
            double s = 0.0;
            for (int64_t c = 0; c < f->H; c++) s += (double)row[c] * xr[b * f->H + c];
            gate_pre[b * f->I + i] = (float)s;
        }
    }
    free(row);
}

/* Worst (maxdiff / tolerance) seen per comparison kind within one group of cases. */
enum { K_SAME_MATH, K_ORIGINAL, K_IDX, K_IDX_SHUFFLED, K_SHARED, K_UNION, K_THREADS, K_DENSE, K_NULLMASK, K_DOWN_T, K_DENSE_DOWN,
       K_GATED, K_GATED_DOWN, K_Q4_BUILT, K_BUNDLED, K_BUNDLED_DOWN, K_N };
static const char *kind_names[K_N] = {"vs reference (same math)", "vs reference (original x, down)", "index lists == mask",
                                      "shuffled index lists", "per-row-shared == per-row", "union == per-row on union mask",
                                      "threads 2,3 == 1", "all-true == dense", "mask NULL == all-true",
                                      "caller down_t == built down_t", "dense down path (mostly active) vs reference",
                                      "gate_pre given == gate computed (per-row, shared, union; 1, 2 threads)",
                                      "gate_pre given with down (dense paths) vs reference",
                                      "built down_t (q8_0 for q4_0) vs reference, within the q8_0 tolerance",
                                      "bundled layout == matrices (mask, shuffled index lists)",
                                      "bundled layout with down (built down_t, dense when mostly active; 2 threads) vs reference"};
static double worst[K_N];
static double worst_diff[K_N];
static int n_cases[K_N];

static void track(int kind, double diff, double tol) {
    n_cases[kind]++;
    if (diff / tol > worst[kind] || n_cases[kind] == 1) {
        worst[kind] = diff / tol;
        worst_diff[kind] = diff;
    }
}

static void report_group(const char *what) {
    for (int k = 0; k < K_N; k++) {
        if (!n_cases[k]) continue;
        CHECK(worst[k] <= 1.0 && !isnan(worst[k]), "%s: %s (%d cases, worst rel diff %.3g = %.2f x tol)", what, kind_names[k],
              n_cases[k], worst_diff[k], worst[k]);
        n_cases[k] = 0;
        worst[k] = 0.0;
    }
}

/* Index lists from a mask; shuffled when rng is given. */
static void mask_to_idx(const bool *mask, int64_t B, int64_t I, int32_t **idx, int32_t *n_idx, test_rng *rng) {
    for (int64_t b = 0; b < B; b++) {
        n_idx[b] = 0;
        for (int64_t i = 0; i < I; i++)
            if (mask[b * I + i]) idx[b][n_idx[b]++] = (int32_t)i;
        if (rng)
            for (int32_t j = n_idx[b] - 1; j > 0; j--) {
                int32_t k = (int32_t)(test_rng_u64(rng) % (uint64_t)(j + 1)), t = idx[b][j];
                idx[b][j] = idx[b][k];
                idx[b][k] = t;
            }
    }
}

static void random_mask(bool *mask, int64_t B, int64_t I, int kind, test_rng *r) {
    for (int64_t b = 0; b < B; b++) {
        bool *m = mask + b * I;
        float density = kind == 3 ? 0.1f : kind == 4 ? 0.5f : kind == 5 ? 0.9f : 0.3f * (float)(b + 1) / (float)B;
        switch (kind) {
        case 0: memset(m, 0, (size_t)I); break;                       /* all false */
        case 1: memset(m, 1, (size_t)I); break;                       /* all true */
        case 2: memset(m, 0, (size_t)I); m[test_rng_u64(r) % (uint64_t)I] = true; break; /* one neuron */
        default:
            for (int64_t i = 0; i < I; i++) m[i] = test_rng_uniform(r) < density;
        }
    }
}

static const char *mask_kind_name[] = {"all-false", "all-true", "single", "10%", "50%", "90%", "per-row densities"};
#define N_MASK_KINDS 7

/* Everything about one (type, shape, activation).
 * op[0..2]: 1, 2, 3 threads on down_t only (no [H, I] down), so every call runs the gathered
 *           axpys and the comparisons between schedules are exact up to summation order.
 * op[3]:    built from down (transposes it itself) — it may run the down projection densely.
 *           For Q4_0 it builds a Q8_0 down_t, so it must meet the Q8_0 tolerance.
 * op[4]:    given down and the test's down_t: must reproduce op[3] bit for bit (for Q4_0, where
 *           the test's down_t is Q4_0, the Q4_0 tolerance instead). */
static void test_case(const fixture *f, sl_activation act, test_rng *r) {
    /* gelu_f16 rounds act's input and output to float16: a gate computed in another order can
     * land on the neighbouring float16 step, moving that neuron by ~2^-11 relative */
    const double tol_same = act == SL_ACT_GELU_F16 ? TOL_GELU_F16 : TOL_SAME_MATH, tol_order = act == SL_ACT_GELU_F16 ? TOL_GELU_F16 : TOL_ORDER;
    const int64_t H = f->H, I = f->I;
    sl_error err;
    sl_mlp_weights wt = fixture_weights(f, true), w = fixture_weights(f, false), wb = wt;
    wt.down = NULL;
    /* op[5], op[6]: the neuron-bundled layout, from the caller's down_t / from down */
    sl_sparse_mlp *op[7] = {sl_sparse_mlp_init(&wt, act, 1, &err), sl_sparse_mlp_init(&wt, act, 2, &err),
                            sl_sparse_mlp_init(&wt, act, 3, &err), sl_sparse_mlp_init(&w, act, 1, &err),
                            sl_sparse_mlp_init(&wb, act, 1, &err), sl_sparse_mlp_init(&wt, act, 1, &err),
                            sl_sparse_mlp_init(&w, act, 2, &err)};
    sl_sparse_mlp_stats stats;
    memset(&stats, 0, sizeof(stats));
    bool all_ok = true;
    for (int k = 0; k < 7; k++) all_ok = all_ok && op[k];
    if (all_ok && (sl_sparse_mlp_set_bundled(op[5], true, &err) || sl_sparse_mlp_set_bundled(op[6], true, &err))) all_ok = false;
    if (!all_ok) {
        CHECK(false, "init %s H=%lld I=%lld %s: %s", sl_type_name(f->type), (long long)H, (long long)I, act_name(act), err.message);
        goto done;
    }
    sl_sparse_mlp_set_stats(op[3], &stats);
    const int64_t BMAX = 3;
    float *x = malloc((size_t)(BMAX * H) * sizeof(float)), *xr = malloc((size_t)(BMAX * H) * sizeof(float));
    float *ref = malloc((size_t)(BMAX * H) * sizeof(float)), *ref2 = malloc((size_t)(BMAX * H) * sizeof(float));
    float *o1 = malloc((size_t)(BMAX * H) * sizeof(float)), *o2 = malloc((size_t)(BMAX * H) * sizeof(float));
    float *o3 = malloc((size_t)(BMAX * H) * sizeof(float)), *o4 = malloc((size_t)(BMAX * H) * sizeof(float));
    bool *mask = malloc((size_t)(BMAX * I)), *umask = malloc((size_t)(BMAX * I));
    float *gp = malloc((size_t)(BMAX * I) * sizeof(float)), *o5 = malloc((size_t)(BMAX * H) * sizeof(float));
    sl_pool *pool2 = act == SL_ACT_SILU ? sl_pool_init(2) : NULL;
    int32_t *idx_store = malloc((size_t)(BMAX * I) * sizeof(int32_t)), *idx[3], n_idx[3];
    for (int b = 0; b < BMAX; b++) idx[b] = idx_store + b * I;
    for (int64_t B = 1; B <= BMAX; B += 2) {
        const size_t n = (size_t)(B * H);
        for (int kind = 0; kind < N_MASK_KINDS; kind++) {
            for (size_t q = 0; q < n; q++) x[q] = test_rng_normal(r);
            random_mask(mask, B, I, kind, r);
            round_input(f->type, x, xr, B, H);
            /* the reference twice: on the operator's own inputs, and on the original ones */
            sl_mlp_reference_w(&f->wg, &f->wu, NULL, &f->wdt, act, xr, B, mask, ref, &err);
            sl_mlp_reference_w(&f->wg, &f->wu, &f->wd, NULL, act, x, B, mask, ref2, &err);
            sl_status st = sl_sparse_mlp_forward(op[0], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o1, &err);
            if (st != SL_OK) {
                CHECK(false, "forward %s mask %s: %s", sl_type_name(f->type), mask_kind_name[kind], err.message);
                continue;
            }
            track(K_SAME_MATH, rel_diff(o1, ref, n), tol_same);
            track(K_ORIGINAL, rel_diff(o1, ref2, n), tol_vs_original_act(f->type, act));
            /* the operator that also has down: original reference, whichever down path it took */
            sl_sparse_mlp_forward(op[3], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o3, &err);
            const bool q8_dt = f->type == SL_TYPE_Q4_0; /* op[3] built a Q8_0 down_t */
            track(stats.dense_down ? K_DENSE_DOWN : q8_dt ? K_Q4_BUILT : K_ORIGINAL, rel_diff(o3, ref2, n),
                  tol_vs_original_act(q8_dt ? SL_TYPE_Q8_0 : f->type, act));
            if (!stats.dense_down && !q8_dt) track(K_SAME_MATH, rel_diff(o3, o1, n), tol_order); /* same down_t bytes */
            sl_sparse_mlp_forward(op[4], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o4, &err);
            if (q8_dt) track(K_ORIGINAL, rel_diff(o4, ref2, n), TOL_Q4_0);
            else track(K_DOWN_T, test_maxdiff(o4, o3, n), 1e-30);
            /* the bundled layout: the matrices' results up to summation order */
            for (size_t q = 0; q < n; q++) o4[q] = NAN; /* every output must be written */
            sl_status sb = sl_sparse_mlp_forward(op[5], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o4, &err);
            const double tol_bundled = is_quant(f->type) ? TOL_INT8_DOWN : tol_order;
            track(K_BUNDLED, sb ? INFINITY : rel_diff(o4, o1, n), tol_bundled);
            sb = sl_sparse_mlp_forward(op[6], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o4, &err);
            track(K_BUNDLED_DOWN, sb ? INFINITY : rel_diff(o4, ref2, n), tol_vs_original_act(q8_dt ? SL_TYPE_Q8_0 : f->type, act));
            /* index lists: sorted ones reproduce the mask result exactly, shuffled ones up to order */
            mask_to_idx(mask, B, I, idx, n_idx, NULL);
            sl_sparse_mlp_forward(op[0], x, B, NULL, (const int32_t *const *)idx, n_idx, SL_MLP_PER_ROW, o2, &err);
            track(K_IDX, test_maxdiff(o2, o1, n), 1e-30);
            mask_to_idx(mask, B, I, idx, n_idx, r);
            sl_sparse_mlp_forward(op[0], x, B, NULL, (const int32_t *const *)idx, n_idx, SL_MLP_PER_ROW, o2, &err);
            track(K_IDX_SHUFFLED, rel_diff(o2, o1, n), tol_order);
            sl_status sb2 = sl_sparse_mlp_forward(op[5], x, B, NULL, (const int32_t *const *)idx, n_idx, SL_MLP_PER_ROW, o2, &err);
            track(K_BUNDLED, sb2 ? INFINITY : rel_diff(o2, o1, n), tol_bundled);
            sl_sparse_mlp_forward(op[0], x, B, mask, NULL, NULL, SL_MLP_PER_ROW_SHARED, o2, &err);
            track(K_SHARED, rel_diff(o2, o1, n), tol_order);
            /* union mode = per-row mode with every row given the union */
            for (int64_t i = 0; i < I; i++) {
                bool any = false;
                for (int64_t b = 0; b < B; b++) any |= mask[b * I + i];
                for (int64_t b = 0; b < B; b++) umask[b * I + i] = any;
            }
            sl_sparse_mlp_forward(op[0], x, B, umask, NULL, NULL, SL_MLP_PER_ROW, o3, &err);
            sl_sparse_mlp_forward(op[0], x, B, mask, NULL, NULL, SL_MLP_UNION, o2, &err);
            track(K_UNION, rel_diff(o2, o3, n), tol_order);
            /* precomputed gate pre-activations (the CATS path): the same results as computing
             * the gate, in every mode and schedule (1 and 2 threads), on down_t alone ... */
            reference_gate_pre(f, xr, B, gp);
            for (int th = 0; th < (pool2 ? 2 : 1); th++)
                for (int mode = 0; mode < 3; mode++) {
                    sl_status sg = sl_sparse_mlp_forward_pool_gated(th ? pool2 : NULL, NULL, &f->wg, &f->wu, &f->wdt, NULL, act, NULL,
                                                                    x, B, mask, NULL, NULL, (sl_mlp_mode)mode, gp, o5, NULL, &err);
                    track(K_GATED, sg ? INFINITY : rel_diff(o5, mode == 1 ? o2 : o1, n), tol_order);
                }
            /* ... and with down given (dense down / dense MLP for mostly-active masks) */
            for (int mode = 0; mode < 3; mode += 2) {
                sl_status sg = sl_sparse_mlp_forward_pool_gated(NULL, NULL, &f->wg, &f->wu, &f->wdt, &f->wd, act, NULL, x, B, mask,
                                                                NULL, NULL, (sl_mlp_mode)mode, gp, o5, NULL, &err);
                track(K_GATED_DOWN, sg ? INFINITY : rel_diff(o5, ref2, n), tol_vs_original_act(f->type, act));
            }
            /* threads do not interact with the activation: check them with silu only (each
             * pool call can spin a worker, which is what makes this test slow on a busy box) */
            for (int th = 1; th <= (act == SL_ACT_SILU ? 2 : 0); th++)
                for (int mode = 0; mode < 3; mode++) {
                    sl_sparse_mlp_forward(op[th], x, B, mode == 1 ? umask : mask, NULL, NULL, (sl_mlp_mode)mode, o2, &err);
                    track(K_THREADS, rel_diff(o2, mode == 1 ? o3 : o1, n), tol_order);
                }
            if (kind == 1) {
                /* all active: the dense MLP (op[3] has down), and mask NULL == all-true */
                sl_mlp_dense_forward(op[3], x, B, o2, &err);
                sl_sparse_mlp_forward(op[3], x, B, mask, NULL, NULL, SL_MLP_PER_ROW, o4, &err);
                track(K_DENSE, rel_diff(o2, o4, n), is_quant(f->type) ? TOL_Q8_0 : tol_order);
                for (int th = 0; th < (act == SL_ACT_SILU ? 3 : 1); th++) {
                    sl_sparse_mlp_forward(op[th], x, B, NULL, NULL, NULL, SL_MLP_PER_ROW, o2, &err);
                    track(K_NULLMASK, rel_diff(o2, o1, n), tol_order);
                }
            }
        }
    }
    free(x), free(xr), free(ref), free(ref2), free(o1), free(o2), free(o3), free(o4), free(mask), free(umask), free(idx_store);
    free(gp), free(o5);
    sl_pool_free(pool2);
done:
    for (int k = 0; k < 7; k++) sl_sparse_mlp_free(op[k]);
}

static void test_correctness(void) {
    test_rng r = {0x5eed1234ULL};
    static const int64_t float_shapes[][2] = {{1, 1}, {3, 7}, {7, 3}, {17, 33}, {33, 129}, {129, 17}, {32, 96}, {96, 160}};
    static const int64_t quant_shapes[][2] = {{32, 32}, {32, 96}, {96, 160}, {160, 96}};
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        const sl_type type = all_types[ti];
        const int64_t(*shapes)[2] = is_quant(type) ? quant_shapes : float_shapes;
        size_t n_shapes = is_quant(type) ? sizeof(quant_shapes) / sizeof(quant_shapes[0]) : sizeof(float_shapes) / sizeof(float_shapes[0]);
        for (size_t a = 0; a < sizeof(all_acts) / sizeof(all_acts[0]); a++) {
            for (size_t s = 0; s < n_shapes; s++) {
                fixture f;
                fixture_make(&f, type, shapes[s][0], shapes[s][1], &r);
                test_case(&f, all_acts[a], &r);
                fixture_free(&f);
            }
            char what[64];
            snprintf(what, sizeof(what), "%s %s", sl_type_name(type), act_name(all_acts[a]));
            report_group(what);
        }
    }
}

/* down_t against a plain transpose of the dequantized down. */
static void test_transpose(void) {
    test_rng r = {77};
    static const int64_t shapes[][2] = {{32, 32}, {96, 160}, {64, 33}};
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        const sl_type type = all_types[ti];
        for (size_t s = 0; s < 3; s++) {
            const int64_t H = shapes[s][0], I = shapes[s][1];
            if (is_quant(type) && I % 32) continue;
            void *down = test_rand_weights(type, H, I, 1.0f, &r);
            sl_weight wd = test_weight_view(down, type, H, I), wdt;
            size_t bytes = sl_mlp_down_t_bytes(&wd, type);
            void *dt = malloc(bytes);
            sl_error err;
            sl_pool *pool = sl_pool_init(2);
            sl_status st = sl_mlp_transpose_down(pool, &wd, type, dt, bytes, &wdt, &err);
            sl_pool_free(pool);
            CHECK(st == SL_OK && wdt.rows == I && wdt.cols == H && wdt.row_bytes == sl_type_row_size(type, H),
                  "transpose %s [%lld, %lld]: status and shape", sl_type_name(type), (long long)H, (long long)I);
            float *a = malloc((size_t)(H * I) * sizeof(float)), *b = malloc((size_t)(H * I) * sizeof(float));
            for (int64_t h = 0; h < H; h++) {
                sl_dequantize_row_ref(type, (uint8_t *)down + h * wd.row_bytes, b, I);
                for (int64_t i = 0; i < I; i++) a[i * H + h] = b[i]; /* a = transpose(dequant(down)) */
            }
            for (int64_t i = 0; i < I; i++) sl_dequantize_row_ref(type, (uint8_t *)dt + i * wdt.row_bytes, b + i * H, H);
            if (!is_quant(type)) {
                CHECK(test_maxdiff(a, b, (size_t)(H * I)) == 0.0, "transpose %s [%lld, %lld] is exact", sl_type_name(type),
                      (long long)H, (long long)I);
            } else {
                /* re-quantization bound per new block: Q8_0 half a step (amax/254), Q4_0 up to
                 * amax/8 (the value opposite in sign to the block maximum clamps at +7) */
                const double frac = type == SL_TYPE_Q8_0 ? 1.0 / 254.0 : 1.0 / 8.0;
                bool ok = true;
                double se = 0.0, sv = 0.0;
                for (int64_t i = 0; i < I; i++)
                    for (int64_t h0 = 0; h0 < H; h0 += 32) {
                        double amax = 0.0;
                        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(a[i * H + h0 + j]));
                        for (int j = 0; j < 32; j++) {
                            double e = fabs((double)a[i * H + h0 + j] - b[i * H + h0 + j]);
                            ok &= e <= amax * (frac + 2e-3) + 1e-12;
                            se += e * e;
                            sv += (double)a[i * H + h0 + j] * a[i * H + h0 + j];
                        }
                    }
                CHECK(ok, "transpose %s [%lld, %lld] within the re-quantization bound; rms error / rms weight = %.4f",
                      sl_type_name(type), (long long)H, (long long)I, sqrt(se / sv));
            }
            free(a), free(b), free(dt), free(down);
        }
    }
}

/* The active-row cache gives the uncached results while the active set drifts. */
static void test_cache(void) {
    test_rng r = {4242};
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        const sl_type type = all_types[ti];
        fixture f;
        fixture_make(&f, type, 64, 160, &r);
        const int64_t H = f.H, I = f.I, B = 2;
        sl_mlp_weights w = fixture_weights(&f, false);
        sl_error err;
        sl_sparse_mlp *plain = sl_sparse_mlp_init(&w, SL_ACT_SILU, 2, &err);
        sl_sparse_mlp *cached = sl_sparse_mlp_init(&w, SL_ACT_SILU, 2, &err);
        sl_status st = sl_sparse_mlp_set_cache(cached, I / 2, &err);
        CHECK(plain && cached && st == SL_OK, "cache %s: init", sl_type_name(type));
        sl_sparse_mlp_stats stats;
        sl_sparse_mlp_set_stats(cached, &stats);
        float *x = malloc((size_t)(B * H) * sizeof(float)), *o1 = malloc((size_t)(B * H) * sizeof(float)),
              *o2 = malloc((size_t)(B * H) * sizeof(float));
        bool *mask = calloc((size_t)(B * I), 1), *prev = calloc((size_t)I, 1);
        /* the internal entry with precomputed gate pre-activations, through its own cache */
        float *xr = malloc((size_t)(B * H) * sizeof(float)), *gp = malloc((size_t)(B * I) * sizeof(float)),
              *o3 = malloc((size_t)(B * H) * sizeof(float));
        /* down_t in the type the operators above built theirs (Q8_0 for Q4_0) */
        const sl_type dtt = sl_mlp_down_t_type(type);
        const size_t gdt_bytes = sl_mlp_down_t_bytes(&f.wd, dtt);
        void *gdt_buf = malloc(gdt_bytes);
        sl_weight gdt;
        sl_mlp_transpose_down(NULL, &f.wd, dtt, gdt_buf, gdt_bytes, &gdt, &err);
        sl_row_cache *gcache = sl_row_cache_init(&f.wg, &f.wu, &gdt, I / 2, &err);
        sl_pool *pool = sl_pool_init(2);
        double worst_gated = 0.0;
        double worst_diff = 0.0;
        bool counts_ok = true, used_ok = true;
        int n_used = 0, n_fallback = 0;
        for (int step = 0; step < 40; step++) {
            const int64_t Bs = step < 30 ? 1 : B;
            const sl_mlp_mode mode = step < 30 ? SL_MLP_PER_ROW : (step % 2 ? SL_MLP_UNION : SL_MLP_PER_ROW_SHARED);
            for (int64_t q = 0; q < Bs * H; q++) x[q] = test_rng_normal(&r);
            /* drift: flip a few neurons; every 7th step a big change; some empty and over-capacity sets */
            for (int64_t b = 0; b < Bs; b++)
                for (int64_t i = 0; i < I; i++) {
                    float p = step % 7 == 6 ? 0.5f : 0.05f;
                    if (step == 0) mask[b * I + i] = test_rng_uniform(&r) < 0.2f;
                    else if (test_rng_uniform(&r) < p) mask[b * I + i] = !mask[b * I + i];
                }
            if (step == 10) memset(mask, 0, (size_t)(B * I));
            if (step == 20) memset(mask, 1, (size_t)(B * I));
            int64_t nU = 0, kept = 0;
            for (int64_t i = 0; i < I; i++) {
                bool any = false;
                for (int64_t b = 0; b < Bs; b++) any |= mask[b * I + i];
                nU += any;
                kept += any && prev[i];
            }
            sl_sparse_mlp_forward(plain, x, Bs, mask, NULL, NULL, mode, o1, &err);
            st = sl_sparse_mlp_forward(cached, x, Bs, mask, NULL, NULL, mode, o2, &err);
            worst_diff = fmax(worst_diff, st ? INFINITY : rel_diff(o2, o1, (size_t)(Bs * H)));
            round_input(type, x, xr, Bs, H);
            reference_gate_pre(&f, xr, Bs, gp);
            sl_status sg = sl_sparse_mlp_forward_pool_gated(pool, NULL, &f.wg, &f.wu, &gdt, &f.wd, SL_ACT_SILU, gcache, x, Bs, mask,
                                                            NULL, NULL, mode, gp, o3, NULL, &err);
            worst_gated = fmax(worst_gated, sg ? INFINITY : rel_diff(o3, o1, (size_t)(Bs * H)));
            bool fits = nU <= I / 2;
            used_ok &= stats.cache_used == fits;
            if (fits) {
                n_used++;
                counts_ok &= stats.cache_kept == kept && stats.cache_kept + stats.cache_added == nU;
                for (int64_t i = 0; i < I; i++) {
                    bool any = false;
                    for (int64_t b = 0; b < Bs; b++) any |= mask[b * I + i];
                    prev[i] = any;
                }
            } else {
                n_fallback++;
            }
        }
        CHECK(worst_diff <= TOL_ORDER, "cache %s: 40 drifting masks match the uncached operator (worst rel diff %.3g)",
              sl_type_name(type), worst_diff);
        CHECK(used_ok && n_used > 10 && n_fallback > 0, "cache %s: used when the set fits (%d calls), bypassed otherwise (%d)",
              sl_type_name(type), n_used, n_fallback);
        CHECK(counts_ok, "cache %s: kept/added counts equal the overlap of consecutive active sets", sl_type_name(type));
        CHECK(gcache && worst_gated <= TOL_ORDER, "cache %s: with gate_pre given, the same results (worst rel diff %.3g)",
              sl_type_name(type), worst_gated);
        free(x), free(o1), free(o2), free(mask), free(prev), free(xr), free(gp), free(o3);
        sl_row_cache_free(gcache);
        free(gdt_buf);
        sl_pool_free(pool);
        sl_sparse_mlp_free(plain);
        sl_sparse_mlp_free(cached);
        fixture_free(&f);
    }
}

static void test_stats(void) {
    test_rng r = {99};
    fixture f;
    fixture_make(&f, SL_TYPE_Q8_0, 64, 96, &r);
    sl_mlp_weights w = fixture_weights(&f, false);
    sl_error err;
    sl_sparse_mlp *op = sl_sparse_mlp_init(&w, SL_ACT_RELU, 2, &err);
    sl_sparse_mlp_stats s;
    memset(&s, 0, sizeof(s));
    sl_sparse_mlp_set_stats(op, &s);
    float x[2 * 64], out[2 * 64];
    for (int q = 0; q < 128; q++) x[q] = test_rng_normal(&r);
    int32_t l0[] = {1, 5, 7}, l1[] = {5, 9}, n_idx[] = {3, 2};
    const int32_t *idx[] = {l0, l1};
    sl_sparse_mlp_forward(op, x, 2, NULL, idx, n_idx, SL_MLP_PER_ROW, out, &err);
    const int64_t row = 2 * 34 * 2 + 34 * 2; /* gate + up + down_t row bytes for H = 64 */
    CHECK(s.n_pairs == 5 && s.n_unique == 4 && s.weight_bytes == 4 * row, "stats per-row: pairs %lld unique %lld bytes %lld",
          (long long)s.n_pairs, (long long)s.n_unique, (long long)s.weight_bytes);
    CHECK(s.t_total > 0 && s.t_total >= s.t_gate_up && s.t_gate_up >= 0 && s.t_down >= 0 && s.t_select >= 0,
          "stats per-row: stage times are set");
    sl_sparse_mlp_forward(op, x, 2, NULL, idx, n_idx, SL_MLP_UNION, out, &err);
    CHECK(s.n_pairs == 8 && s.n_unique == 4, "stats union: pairs %lld unique %lld", (long long)s.n_pairs, (long long)s.n_unique);
    sl_mlp_dense_forward(op, x, 2, out, &err);
    CHECK(s.n_unique == 96 && s.weight_bytes == 3 * 96 * 68 && s.t_total > 0, "stats dense: unique %lld bytes %lld",
          (long long)s.n_unique, (long long)s.weight_bytes);
    sl_sparse_mlp_set_stats(op, NULL);
    s.t_total = -1;
    sl_sparse_mlp_forward(op, x, 2, NULL, idx, n_idx, SL_MLP_UNION, out, &err);
    CHECK(s.t_total == -1, "stats: not written after set_stats(NULL)");
    CHECK(sl_sparse_mlp_memory(op) >= (size_t)(96 * 68), "memory accounts for the built down_t (%zu bytes)", sl_sparse_mlp_memory(op));
    sl_sparse_mlp_free(op);
    fixture_free(&f);
}

static void test_bad_args(void) {
    test_rng r = {5};
    fixture f;
    fixture_make(&f, SL_TYPE_Q8_0, 64, 96, &r);
    sl_error err;
    sl_mlp_weights w = fixture_weights(&f, false);
    /* init */
    sl_mlp_weights b = w;
    b.type = (sl_type)4;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_UNSUPPORTED, "init: unknown type -> unsupported");
    CHECK(!sl_sparse_mlp_init(&w, (sl_activation)7, 1, &err) && err.code == SL_ERR_UNSUPPORTED, "init: unknown activation -> unsupported");
    b = w, b.n_embd = 48;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: H = 48 with q8_0 -> invalid (%s)", err.message);
    b = w, b.n_ff = 80;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: I = 80 with q8_0 -> invalid");
    b = w, b.n_ff = 0;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: I = 0 -> invalid");
    b = w, b.up = NULL;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: up NULL -> invalid");
    b = w, b.down = NULL;
    CHECK(!sl_sparse_mlp_init(&b, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: no down nor down_t -> invalid");
    CHECK(!sl_sparse_mlp_init(NULL, SL_ACT_SILU, 1, &err) && err.code == SL_ERR_INVALID_ARG, "init: NULL weights -> invalid");
    CHECK(!sl_sparse_mlp_init(&w, SL_ACT_SILU, -1, &err) && err.code == SL_ERR_INVALID_ARG, "init: -1 threads -> invalid");

    sl_sparse_mlp *op = sl_sparse_mlp_init(&w, SL_ACT_SILU, 2, &err);
    float x[2 * 64], out[2 * 64], sentinel[2 * 64];
    for (int q = 0; q < 128; q++) x[q] = test_rng_normal(&r), out[q] = sentinel[q] = 12345.0f;
    bool mask[2 * 96] = {false};
    int32_t good[] = {0, 95}, neg[] = {3, -1}, big[] = {96}, dup[] = {4, 9, 4}, n2[] = {2, 2};
    const int32_t *idx_good[] = {good, good}, *idx_neg[] = {good, neg}, *idx_big[] = {big, good}, *idx_dup[] = {dup, good};
    const int32_t *idx_null[] = {good, NULL};
    int32_t n_big[] = {1, 2}, n_dup[] = {3, 2}, n_neg[] = {2, -1}, n_huge[] = {2, 97};
#define BAD(call, code_, what)                                                                                              \
    do {                                                                                                                    \
        sl_status st_ = (call);                                                                                             \
        CHECK(st_ == (code_) && err.code == (code_) && memcmp(out, sentinel, sizeof(out)) == 0, "%s -> %s (%s)", what,       \
              sl_status_str(code_), err.message);                                                                          \
    } while (0)
    /* every check on the matrices, then again through the bundled layout */
    for (int bundled = 0; bundled < 2; bundled++) {
    CHECK(sl_sparse_mlp_set_bundled(op, bundled, &err) == SL_OK, "bundled layout %s", bundled ? "on" : "off");
    BAD(sl_sparse_mlp_forward(op, x, 0, mask, NULL, NULL, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "B = 0");
    BAD(sl_sparse_mlp_forward(op, x, -3, mask, NULL, NULL, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "B < 0");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_neg, n2, SL_MLP_PER_ROW, out, &err), SL_ERR_RANGE, "index -1");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_big, n_big, SL_MLP_UNION, out, &err), SL_ERR_RANGE, "index I");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_dup, n_dup, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "repeated index");
    BAD(sl_sparse_mlp_forward(op, x, 2, mask, idx_good, n2, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "mask and idx");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_good, NULL, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "idx without n_idx");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_good, n_neg, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "n_idx < 0");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_good, n_huge, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "n_idx > I");
    BAD(sl_sparse_mlp_forward(op, x, 2, NULL, idx_null, n2, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "idx[b] NULL");
    BAD(sl_sparse_mlp_forward(op, x, 2, mask, NULL, NULL, (sl_mlp_mode)9, out, &err), SL_ERR_INVALID_ARG, "unknown mode");
    BAD(sl_sparse_mlp_forward(op, NULL, 2, mask, NULL, NULL, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "x NULL");
    BAD(sl_sparse_mlp_forward(NULL, x, 2, mask, NULL, NULL, SL_MLP_PER_ROW, out, &err), SL_ERR_INVALID_ARG, "operator NULL");
    BAD(sl_mlp_dense_forward(op, x, 0, out, &err), SL_ERR_INVALID_ARG, "dense B = 0");
    /* an empty list is fine: that row is zero */
    int32_t n0[] = {0, 1};
    const int32_t *idx0[] = {NULL, good};
    sl_status st = sl_sparse_mlp_forward(op, x, 2, NULL, idx0, n0, SL_MLP_PER_ROW, out, &err);
    bool zero = true;
    for (int q = 0; q < 64; q++) zero &= out[q] == 0.0f;
    CHECK(st == SL_OK && zero, "an empty index list gives a zero row");
    memcpy(out, sentinel, sizeof(out));
    }
    CHECK(sl_sparse_mlp_set_bundled(NULL, true, &err) == SL_ERR_INVALID_ARG, "set_bundled on NULL -> invalid");
    CHECK(sl_sparse_mlp_set_cache(op, 97, &err) == SL_ERR_INVALID_ARG, "cache capacity > I -> invalid");
    sl_sparse_mlp_free(op);

    /* internal entry: shapes and types must agree */
    sl_weight g = f.wg, u = f.wu, dt = f.wdt;
    memcpy(out, sentinel, sizeof(out));
    u.rows = 64, u.row_bytes = f.wu.row_bytes;
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, NULL, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out, NULL,
                                   &err),
        SL_ERR_INVALID_ARG, "up with other rows than gate");
    u = f.wu;
    dt.cols = 32, dt.row_bytes = sl_type_row_size(SL_TYPE_Q8_0, 32);
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, NULL, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out, NULL,
                                   &err),
        SL_ERR_INVALID_ARG, "down_t of the wrong shape");
    dt = f.wdt;
    u.type = SL_TYPE_Q4_0, u.row_bytes = sl_type_row_size(SL_TYPE_Q4_0, 64);
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, NULL, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out, NULL,
                                   &err),
        SL_ERR_INVALID_ARG, "gate and up of different types");
    u = f.wu;
    g.row_bytes += 2;
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, NULL, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out, NULL,
                                   &err),
        SL_ERR_INVALID_ARG, "row_bytes inconsistent with the type");
    g = f.wg;
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, (sl_activation)5, NULL, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out,
                                   NULL, &err),
        SL_ERR_UNSUPPORTED, "unknown activation");
    sl_row_cache *c = sl_row_cache_init(&u, &g, &dt, 0, &err); /* swapped gate/up: a cache for other weights */
    BAD(sl_sparse_mlp_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, c, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, out, NULL,
                                   &err),
        SL_ERR_INVALID_ARG, "a row cache made for other weights");
    sl_row_cache_free(c);
    BAD(sl_mlp_dense_forward_pool(NULL, NULL, &g, &u, &dt, SL_ACT_SILU, x, 1, out, NULL, &err), SL_ERR_INVALID_ARG,
        "dense with a [I, H] down");
    sl_weight d = f.wd, dt2;
    char small[16];
    CHECK(sl_mlp_transpose_down(NULL, &d, SL_TYPE_Q8_0, small, sizeof(small), &dt2, &err) == SL_ERR_INVALID_ARG,
          "transpose into a too-small buffer -> invalid");
    d.rows = 48, d.data = f.down;
    CHECK(sl_mlp_transpose_down(NULL, &d, SL_TYPE_Q8_0, small, sizeof(small), &dt2, &err) == SL_ERR_INVALID_ARG,
          "transpose with H = 48 into q8_0 -> invalid");
#undef BAD
    fixture_free(&f);
}

/* Weights given only as down_t: the dense forward falls back to the sparse path over all neurons. */
static void test_down_t_only(void) {
    test_rng r = {321};
    fixture f;
    fixture_make(&f, SL_TYPE_F16, 33, 17, &r);
    sl_mlp_weights w = fixture_weights(&f, true);
    w.down = NULL;
    sl_error err;
    sl_sparse_mlp *op = sl_sparse_mlp_init(&w, SL_ACT_GELU, 2, &err);
    float x[33], o1[33], o2[33], ref[33];
    for (int q = 0; q < 33; q++) x[q] = test_rng_normal(&r);
    sl_status a = sl_mlp_dense_forward(op, x, 1, o1, &err);
    sl_status b = sl_sparse_mlp_reference(&w, SL_ACT_GELU, x, 1, NULL, ref, &err);
    sl_status c = sl_sparse_mlp_forward(op, x, 1, NULL, NULL, NULL, SL_MLP_PER_ROW, o2, &err);
    CHECK(op && !a && !b && !c && rel_diff(o1, ref, 33) <= TOL_SAME_MATH && rel_diff(o2, ref, 33) <= TOL_SAME_MATH,
          "down_t only: dense and sparse forward match the reference");
    sl_sparse_mlp_free(op);
    fixture_free(&f);
}


/* Rows in the bundle layouts (Q4_0N, Q8_0N) through the variant's kernels: the dot against the
 * plain Q4_0 / Q8_0 dot of the same rows (the same values, so only the order of float sums
 * differs), the axpy against its scalar definition (int8-rounded coefficients: only float
 * order) and that definition against the exact float axpy, within its stated bound
 * (S_b / 2) * sum_r |v_r| per element (sparse_mlp.h), plus float slack. Lengths cover whole and
 * partial groups of blocks; the coefficients include a zero and a tiny one. */
static void test_row_kernels_bundle_layout(const char *vname, const sl_sp_kernel_set *ks, sl_type tn, test_rng *r) {
    static const int64_t ns[] = {32, 64, 96, 128, 160, 224, 2048, 2080};
    const sl_type tq = tn == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : SL_TYPE_Q8_0;
    const char *name = tn == SL_TYPE_Q4_0N ? "q4_0n" : "q8_0n";
    double worst_dot = 0.0, worst_axpy = 0.0, worst_bound = 0.0;
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        const int64_t n = ns[k], nb = n / 32;
        const size_t rb = sl_type_row_size(tq, n), rn = tn == SL_TYPE_Q4_0N ? sl_q4_0n_row_size(n) : sl_q8_0n_row_size(n);
        uint8_t *w = test_rand_weights(tq, 16, n, 1.0f, r), *wn = malloc(rn * 16);
        for (int q = 0; q < 16; q++) {
            if (tn == SL_TYPE_Q4_0N) sl_q4_0n_pack_row(w + (size_t)q * rb, n, wn + (size_t)q * rn);
            else sl_q8_0n_pack_row(w + (size_t)q * rb, n, wn + (size_t)q * rn);
        }
        float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
        float *yd = malloc((size_t)n * sizeof(float)), *ye = malloc((size_t)n * sizeof(float)), *row = malloc((size_t)n * sizeof(float));
        double *bound = malloc((size_t)n * sizeof(double));
        void *xp = malloc(sl_act_size(tq, n)), *xk = malloc(ks->x_size(tn, n));
        for (int64_t c = 0; c < n; c++) x[c] = test_rng_normal(r);
        sl_act_prepare(tq, x, n, xp);
        ks->x_prep(tn, x, n, xk);
        for (int nr = 1; nr <= SP_MAX_ROWS; nr++) {
            const uint8_t *rows[SP_MAX_ROWS], *rows_q[SP_MAX_ROWS], *next[SP_MAX_ROWS];
            float a[SP_MAX_ROWS], out[SP_MAX_ROWS];
            for (int q = 0; q < nr; q++) {
                const int i = (q * 5 + 3) % 16;
                rows[q] = wn + (size_t)i * rn;
                rows_q[q] = w + (size_t)i * rb;
                next[q] = wn + (size_t)((q * 7 + 1) % 16) * rn;
                a[q] = q == 2 ? 0.0f : test_rng_normal(r) * (q == 1 ? 1e-3f : 1.0f);
            }
            ks->dot(tn, rows, nr, xk, n, out, next, nr % 2 ? nr : 0);
            for (int q = 0; q < nr; q++) {
                const float ref = sl_vec_dot_ref(tq, rows_q[q], xp, n);
                worst_dot = fmax(worst_dot, fabs((double)out[q] - ref) / (1.0 + fabs(ref)) / sqrt((double)n));
            }
            for (int64_t c = 0; c < n; c++) y[c] = yd[c] = ye[c] = test_rng_normal(r);
            ks->axpy(tn, rows, a, nr, y, n, next, nr % 2 ? 0 : nr);
            sl_sp_axpy_rows_bundle_ref(tn, rows, a, nr, yd, n);
            for (int q = 0; q < nr; q++) sl_vec_axpy_ref(tq, rows_q[q], a[q], ye, n);
            worst_axpy = fmax(worst_axpy, rel_diff(y, yd, (size_t)n));
            /* the bound: S_b / 2 per unit of |value|, S_b = max_r |a_r d_r,b| / 127 */
            for (int64_t c = 0; c < n; c++) bound[c] = 0.0;
            for (int64_t b = 0; b < nb; b++) {
                double m = 0.0;
                for (int q = 0; q < nr; q++) {
                    const uint8_t *blk = rows_q[q] + (size_t)b * (tq == SL_TYPE_Q4_0 ? sizeof(sl_block_q4_0) : sizeof(sl_block_q8_0));
                    uint16_t d;
                    memcpy(&d, blk, 2);
                    m = fmax(m, fabs((double)sl_fp16_to_fp32(d) * a[q]));
                }
                for (int q = 0; q < nr; q++) {
                    sl_dequantize_row_ref(tq, rows_q[q] + (size_t)b * rb / (size_t)nb, row, 32); /* d * v */
                    uint16_t d;
                    memcpy(&d, rows_q[q] + (size_t)b * rb / (size_t)nb, 2);
                    const double dd = sl_fp16_to_fp32(d);
                    for (int j = 0; j < 32; j++) bound[32 * b + j] += m / 127.0 / 2.0 * (dd != 0.0 ? fabs(row[j] / dd) : 0.0);
                }
            }
            for (int64_t c = 0; c < n; c++)
                worst_bound = fmax(worst_bound, fabs((double)yd[c] - ye[c]) / (bound[c] + 1e-5 * (1.0 + fabs(ye[c]))));
        }
        free(w), free(wn), free(x), free(y), free(yd), free(ye), free(row), free(bound), free(xp), free(xk);
    }
    CHECK(worst_dot <= 1e-6, "row kernels (%s) %s: dot of 1..8 gathered rows == the %s dot of the same rows (worst %.3g per sqrt(n))",
          vname, name, sl_type_name(tq), worst_dot);
    CHECK(worst_axpy <= 1e-5, "row kernels (%s) %s: axpy of 1..8 rows == its scalar definition (worst rel %.3g)", vname, name, worst_axpy);
    CHECK(worst_bound <= 1.0, "row kernels (%s) %s: the definition's int8 coefficients stay within their bound of the exact axpy "
          "(worst %.3g x bound)", vname, name, worst_bound);
}

/* The row-group kernels against the scalar definitions (sl_vec_dot_ref / sl_vec_axpy_ref), row
 * by row, for 1..8 rows, awkward lengths and every type; with and without prefetch lists. The
 * kernels take x as their set prepares it (x_prep), the reference as sl_act_prepare does. */
static void test_row_kernels_variant(const char *vname) {
    test_rng r = {2024};
    sl_sp_kernel_set ks;
    sl_sp_kernels(&ks);
    sl_sp_dot_rows_fn dot = ks.dot;
    sl_sp_axpy_rows_fn axpy = ks.axpy;
    static const int64_t float_n[] = {1, 3, 7, 15, 16, 17, 31, 33, 129, 2048};
    static const int64_t quant_n[] = {32, 64, 96, 160, 2048, 2080};
    for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
        const sl_type type = all_types[ti];
        const int64_t *ns = is_quant(type) ? quant_n : float_n;
        const size_t n_ns = is_quant(type) ? sizeof(quant_n) / sizeof(quant_n[0]) : sizeof(float_n) / sizeof(float_n[0]);
        double worst_dot = 0.0, worst_axpy = 0.0;
        for (size_t k = 0; k < n_ns; k++) {
            const int64_t n = ns[k];
            uint8_t *w = test_rand_weights(type, 16, n, 1.0f, &r);
            const size_t rb = sl_type_row_size(type, n);
            float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float)), *yr = malloc((size_t)n * sizeof(float));
            void *xp = malloc(sl_act_size(type, n)), *xk = malloc(ks.x_size(type, n));
            for (int64_t c = 0; c < n; c++) x[c] = test_rng_normal(&r);
            sl_act_prepare(type, x, n, xp);
            ks.x_prep(type, x, n, xk);
            for (int nr = 1; nr <= SP_MAX_ROWS; nr++) {
                const uint8_t *rows[SP_MAX_ROWS], *next[SP_MAX_ROWS];
                float a[SP_MAX_ROWS], out[SP_MAX_ROWS], scale = 0.0f;
                for (int q = 0; q < nr; q++) {
                    rows[q] = w + (size_t)((q * 5 + 3) % 16) * rb; /* gathered, out of order */
                    next[q] = w + (size_t)((q * 7 + 1) % 16) * rb;
                    a[q] = test_rng_normal(&r);
                }
                dot(type, rows, nr, xk, n, out, next, nr % 2 ? nr : 0);
                for (int q = 0; q < nr; q++) {
                    const float ref = sl_vec_dot_ref(type, rows[q], xp, n);
                    scale = fmaxf(scale, fabsf(ref));
                    worst_dot = fmax(worst_dot, fabs((double)out[q] - ref) / (1.0 + fabs(ref)) / sqrt((double)n));
                }
                for (int64_t c = 0; c < n; c++) y[c] = yr[c] = test_rng_normal(&r);
                axpy(type, rows, a, nr, y, n, next, nr % 2 ? 0 : nr);
                for (int q = 0; q < nr; q++) sl_vec_axpy_ref(type, rows[q], a[q], yr, n);
                worst_axpy = fmax(worst_axpy, rel_diff(y, yr, (size_t)n));
            }
            free(w), free(x), free(y), free(yr), free(xp), free(xk);
        }
        /* batched forms: the same rows for several prepared inputs / accumulator rows */
        double worst_bdot = 0.0, worst_baxpy = 0.0;
        for (size_t k = 0; k < n_ns; k++) {
            const int64_t n = ns[k];
            const int NB = 5;
            uint8_t *w = test_rand_weights(type, 16, n, 1.0f, &r);
            const size_t rb = sl_type_row_size(type, n), xs = sl_act_size(type, n), xks = ks.x_size(type, n);
            float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)(NB * n) * sizeof(float)),
                  *yr = malloc((size_t)(NB * n) * sizeof(float));
            uint8_t *xp = malloc(xs * NB), *xk = malloc(xks * NB);
            for (int b = 0; b < NB; b++) {
                for (int64_t c = 0; c < n; c++) x[c] = test_rng_normal(&r);
                sl_act_prepare(type, x, n, xp + b * xs);
                ks.x_prep(type, x, n, xk + b * xks);
            }
            for (int nr = 1; nr <= SP_MAX_ROWS; nr++)
                for (int nb = 1; nb <= NB; nb += 2) {
                    const uint8_t *rows[SP_MAX_ROWS];
                    float a[SP_MAX_ROWS * 5], out[SP_MAX_ROWS * 5];
                    for (int q = 0; q < nr; q++) rows[q] = w + (size_t)((q * 5 + 3) % 16) * rb;
                    for (int q = 0; q < nr * nb; q++) a[q] = q % 3 ? test_rng_normal(&r) : 0.0f;
                    ks.dot_batch(type, rows, nr, xk, xks, nb, n, out, rows, nr);
                    for (int b = 0; b < nb; b++)
                        for (int q = 0; q < nr; q++) {
                            const float ref = sl_vec_dot_ref(type, rows[q], xp + b * xs, n);
                            worst_bdot = fmax(worst_bdot, fabs((double)out[b * nr + q] - ref) / (1.0 + fabs(ref)) / sqrt((double)n));
                        }
                    for (int64_t c = 0; c < nb * n; c++) y[c] = yr[c] = test_rng_normal(&r);
                    ks.axpy_batch(type, rows, nr, a, nb, nb, y, n, n, NULL, 0);
                    for (int b = 0; b < nb; b++)
                        for (int q = 0; q < nr; q++) sl_vec_axpy_ref(type, rows[q], a[q * nb + b], yr + b * n, n);
                    worst_baxpy = fmax(worst_baxpy, rel_diff(y, yr, (size_t)(nb * n)));
                }
            free(w), free(x), free(y), free(yr), free(xp), free(xk);
        }
        CHECK(worst_bdot <= 1e-6, "row kernels (%s) %s: batched dot (1..8 rows x 1..5 inputs) == sl_vec_dot_ref (worst %.3g)",
              vname, sl_type_name(type), worst_bdot);
        CHECK(worst_baxpy <= 1e-5, "row kernels (%s) %s: batched axpy (1..8 rows x 1..5 rows of y) == sl_vec_axpy_ref (worst %.3g)",
              vname, sl_type_name(type), worst_baxpy);
        CHECK(worst_dot <= 1e-6, "row kernels (%s) %s: dot of 1..8 gathered rows == sl_vec_dot_ref (worst %.3g per sqrt(n))",
              vname, sl_type_name(type), worst_dot);
        CHECK(worst_axpy <= 1e-5, "row kernels (%s) %s: axpy of 1..8 gathered rows == sl_vec_axpy_ref (worst rel %.3g)",
              vname, sl_type_name(type), worst_axpy);
    }
    test_row_kernels_bundle_layout(vname, &ks, SL_TYPE_Q4_0N, &r);
    test_row_kernels_bundle_layout(vname, &ks, SL_TYPE_Q8_0N, &r);
}

/* The row-group kernels of every variant this CPU runs. */
static void test_row_kernels(void) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX512, SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!select_or_skip(vs[v])) continue;
        test_row_kernels_variant(sl_kernels_name(vs[v]));
    }
    sl_kernels_select(SL_KERNELS_AUTO);
}

/* The whole operator on the other kernel variants (AVX2 row groups, the scalar per-row fallback). */
static void test_other_variants(void) {
    static const sl_kernel_variant vs[] = {SL_KERNELS_AVX2, SL_KERNELS_SCALAR};
    test_rng r = {777};
    static const sl_type types[] = {SL_TYPE_F16, SL_TYPE_Q4_0, SL_TYPE_Q8_0, SL_TYPE_F32};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!select_or_skip(vs[v])) continue;
        for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
            fixture f;
            fixture_make(&f, types[ti], is_quant(types[ti]) ? 64 : 33, 96, &r);
            test_case(&f, SL_ACT_SILU, &r);
            fixture_free(&f);
            char what[64];
            snprintf(what, sizeof(what), "%s kernels: %s silu", sl_kernels_name(vs[v]), sl_type_name(types[ti]));
            report_group(what);
        }
    }
    sl_kernels_select(SL_KERNELS_AUTO);
}

int main(void) {
    test_row_kernels();
    test_transpose();
    test_correctness();
    test_cache();
    test_stats();
    test_bad_args();
    test_down_t_only();
    test_other_variants();
    return test_summary();
}
