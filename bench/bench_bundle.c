/*
 * bench_bundle.c — one layer's MLP through the model's neuron bundles (src/model/bundle_mlp.c)
 * against the dense matrices path, on random weights of a real shape, one thread: the fused pass
 * at several active fractions (random neurons, ascending, as the selection rules give them), the
 * dense MLP through the bundles (B = 1) and the dense MLP from the three matrices (sl_matmul,
 * what a model loaded without bundles decodes with). Layers are cycled so that every call reads
 * from memory. Times are the calling thread's CPU time (it leaves out time spent descheduled on a
 * busy machine), median of the repetitions. Not a test: timing never decides one.
 *
 * usage: build/bench/bench_bundle [TYPE=q4_0] [H=2048] [I=8192] [REPS=15]
 * Runs the kernel variant in use (SKIPLLAMA_KERNELS=scalar|avx2|avx512); BENCH_FRACS=1,0.1 picks the active
 * fractions, BENCH_STAGES=1 / 2 times the gate/up or the down stage alone. Q4_0 adds a row for the matrices
 * repacked as a model loads them (Q4_0x4, what a file-layout model decodes with); BENCH_AB=1 instead times
 * that and the dense pass through the bundles alternately, layer by layer, and prints the median of the
 * per-repetition speed ratios (steady on a busy machine); BENCH_HOT=1 uses one layer read again and again
 * (from cache when small: the kernels' compute ceiling).
 */
#include "kernels/kernels.h"
#include "model/bundle_mlp.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static float gauss(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(next() >> 40) / (float)(1 << 24) - 0.5f;
    return s;
}

static void *rand_matrix(sl_type t, int64_t rows, int64_t cols, float scale) {
    const size_t rb = sl_type_row_size(t, cols);
    uint8_t *m = sl_alloc_huge(rb * (size_t)rows);
    float *tmp = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) tmp[c] = scale * gauss();
        sl_quantize_row_ref(t, tmp, m + (size_t)r * rb, cols);
    }
    free(tmp);
    return m;
}

int main(int argc, char **argv) {
    sl_type t = SL_TYPE_Q4_0;
    if (argc > 1 && !sl_type_from_name(argv[1], &t)) return fprintf(stderr, "unknown type %s\n", argv[1]), 2;
    const int64_t H = argc > 2 ? atoll(argv[2]) : 2048, I = argc > 3 ? atoll(argv[3]) : 8192;
    const int reps = argc > 4 ? atoi(argv[4]) : 15;
    sl_neuron_bundle probe;
    sl_error err;
    if (sl_bundle_layout(&probe, t, t, false, H, I, &err)) return fprintf(stderr, "%s\n", err.message), 2;
    const size_t mlp = 3 * sl_type_row_size(t, H) * (size_t)I;
    /* >= 256 MiB of each layout, cycled; BENCH_HOT=1: one layer, read again and again (from cache when it fits:
     * the kernels' compute ceiling) */
    const int L = getenv("BENCH_HOT") ? 1 : (int)(((size_t)256 << 20) / mlp + 1);
    printf("kernels %s, %s H=%lld I=%lld: %d layers cycled, %.1f MiB per layer (file), bundle %.1f MiB; 1 thread, CPU time, median of %d\n",
           sl_kernels_name(sl_kernels_current()), sl_type_name(t), (long long)H, (long long)I, L, (double)mlp / 1048576.0,
           (double)probe.bytes / 1048576.0, reps);
    sl_weight *g = calloc((size_t)L, sizeof(sl_weight)), *u = calloc((size_t)L, sizeof(sl_weight)), *d = calloc((size_t)L, sizeof(sl_weight));
    sl_neuron_bundle *b = calloc((size_t)L, sizeof(sl_neuron_bundle));
    for (int l = 0; l < L; l++) {
        g[l] = sl_weight_view(rand_matrix(t, I, H, 0.05f), t, I, H);
        u[l] = sl_weight_view(rand_matrix(t, I, H, 0.05f), t, I, H);
        d[l] = sl_weight_view(rand_matrix(t, H, I, 0.05f), t, H, I);
        if (sl_bundle_init(&b[l], NULL, &g[l], &u[l], &d[l], &err)) return fprintf(stderr, "%s\n", err.message), 1;
    }
    /* Q4_0: the matrices as the model repacks them at load (Q4_0x4, what a file-layout model decodes with) */
    void **x4 = calloc((size_t)L * 3, sizeof(void *));
    if (t == SL_TYPE_Q4_0)
        for (int l = 0; l < L; l++) {
            const sl_weight *w3[3] = {&g[l], &u[l], &d[l]};
            for (int m = 0; m < 3; m++) {
                x4[3 * l + m] = sl_alloc_huge(sl_q4_0x4_size(w3[m]->rows, w3[m]->cols));
                sl_q4_0x4_repack_all(w3[m]->data, w3[m]->rows, w3[m]->cols, x4[3 * l + m]);
            }
        }
    float *x = malloc((size_t)H * sizeof(float)), *out = malloc((size_t)H * sizeof(float));
    float *hb = malloc((size_t)I * sizeof(float)), *hb2 = malloc((size_t)I * sizeof(float));
    int32_t *idx = malloc((size_t)I * sizeof(int32_t));
    for (int64_t c = 0; c < H; c++) x[c] = gauss();
    sl_bundle_ws ws = {0};
    double *ts = malloc((size_t)reps * sizeof(double)), dense_ms = 0;
    double fracs[16] = {1.0, 0.5, 0.3, 0.1, 0.05};
    int n_fracs = 5;
    if (getenv("BENCH_FRACS")) { /* e.g. BENCH_FRACS=1,0.1: only these active fractions */
        n_fracs = 0;
        for (char *s = getenv("BENCH_FRACS"), *e; *s && n_fracs < 16; s = *e ? e + 1 : e) fracs[n_fracs++] = strtod(s, &e);
    }
    const int stages = getenv("BENCH_STAGES") ? atoi(getenv("BENCH_STAGES")) : 0; /* 1: gate/up alone, 2: down alone */
    float *gv = malloc((size_t)I * sizeof(float)), *uv = malloc((size_t)I * sizeof(float));
    if (getenv("BENCH_AB") && t == SL_TYPE_Q4_0) {
        /* BENCH_AB=1: the dense MLP from Q4_0x4 matrices and through the bundles alternately, layer
         * by layer, so that both see the same machine; per repetition the ratio of their times */
        double *ra = malloc((size_t)reps * sizeof(double)), *ta = malloc((size_t)reps * sizeof(double)),
               *tb = malloc((size_t)reps * sizeof(double));
        for (int r = 0; r < reps; r++) {
            double sa = 0, sb = 0;
            for (int l = 0; l < L; l++) {
                double c0 = cpu_s();
                sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l], I, H, x, 1, hb);
                sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l + 1], I, H, x, 1, hb2);
                for (int64_t i = 0; i < I; i++) hb[i] = hb[i] / (1.0f + __builtin_expf(-hb[i])) * hb2[i];
                sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l + 2], H, I, hb, 1, out);
                sa += cpu_s() - c0;
                c0 = cpu_s();
                sl_bundle_forward(&b[(l + L / 2) % L], NULL, &ws, SL_ACT_SILU, x, NULL, (int32_t)I, NULL, out, &err);
                sb += cpu_s() - c0;
            }
            ta[r] = sa / L * 1e3, tb[r] = sb / L * 1e3, ra[r] = sa / sb;
        }
        qsort(ta, (size_t)reps, sizeof(double), cmp_double);
        qsort(tb, (size_t)reps, sizeof(double), cmp_double);
        qsort(ra, (size_t)reps, sizeof(double), cmp_double);
        printf("AB: Q4_0x4 %.3f ms, bundles %.3f ms, bundles speed / Q4_0x4 speed = %.3f (median of %d per-repetition ratios; "
               "quartiles %.3f %.3f)\n", ta[reps / 2], tb[reps / 2], ra[reps / 2], reps, ra[reps / 4], ra[3 * reps / 4]);
        return 0;
    }
    printf("| path | active | ms/call | GB/s | x dense matrices |\n|---|--:|--:|--:|--:|\n");
    for (int pass = t == SL_TYPE_Q4_0 ? -2 : -1; pass < n_fracs; pass++) {
        int32_t n = 0;
        if (pass >= 0)
            for (int64_t i = 0; i < I; i++)
                if ((double)(next() >> 11) / 9007199254740992.0 < fracs[pass]) idx[n++] = (int32_t)i;
        for (int r = 0; r < reps; r++) {
            double t0 = 0;
            for (int l = 0; l < L; l++) {
                const double c0 = cpu_s();
                if (pass == -2) { /* the three matrices repacked to Q4_0x4 */
                    sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l], I, H, x, 1, hb);
                    sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l + 1], I, H, x, 1, hb2);
                    for (int64_t i = 0; i < I; i++) hb[i] = hb[i] / (1.0f + __builtin_expf(-hb[i])) * hb2[i];
                    sl_matmul(NULL, SL_TYPE_Q4_0X4, x4[3 * l + 2], H, I, hb, 1, out);
                } else if (pass < 0) { /* the three matrices, as a model without bundles computes its MLP */
                    sl_matmul(NULL, t, g[l].data, I, H, x, 1, hb);
                    sl_matmul(NULL, t, u[l].data, I, H, x, 1, hb2);
                    for (int64_t i = 0; i < I; i++) hb[i] = hb[i] / (1.0f + __builtin_expf(-hb[i])) * hb2[i];
                    sl_matmul(NULL, t, d[l].data, H, I, hb, 1, out);
                } else if (stages == 1) {
                    sl_bundle_gate_up(&b[l], NULL, &ws, x, fracs[pass] >= 1.0 ? NULL : idx, fracs[pass] >= 1.0 ? (int32_t)I : n, gv, uv, &err);
                } else if (stages == 2) {
                    sl_bundle_down(&b[l], NULL, &ws, fracs[pass] >= 1.0 ? NULL : idx, x, fracs[pass] >= 1.0 ? (int32_t)I : n, out, &err);
                } else {
                    sl_bundle_forward(&b[l], NULL, &ws, SL_ACT_SILU, x, fracs[pass] >= 1.0 ? NULL : idx, fracs[pass] >= 1.0 ? (int32_t)I : n,
                                      NULL, out, &err);
                }
                t0 += cpu_s() - c0;
            }
            ts[r] = t0 / L;
        }
        qsort(ts, (size_t)reps, sizeof(double), cmp_double);
        const double ms = ts[reps / 2] * 1e3;
        if (pass == -1) dense_ms = ms;
        if (pass == -2) {
            printf("| matrices Q4_0x4 (dense) | 1.00 | %.3f | %.1f | - |\n", ms, (double)mlp / (ms * 1e-3) / 1e9);
            continue;
        }
        const double bytes = pass < 0 ? (double)mlp : (double)n / (double)I * (double)probe.bytes + (fracs[pass] >= 1.0 ? (double)probe.bytes * 0 : 0);
        printf("| %s | %.2f | %.3f | %.1f | %.3f |\n", pass < 0 ? "matrices (dense)" : fracs[pass] >= 1.0 ? "bundles (dense)" : "bundles",
               pass < 0 ? 1.0 : fracs[pass], ms, (pass < 0 || fracs[pass] >= 1.0 ? (double)probe.bytes : bytes) / (ms * 1e-3) / 1e9,
               ms / dense_ms);
    }
    return 0;
}
