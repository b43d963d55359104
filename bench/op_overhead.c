/*
 * op_overhead.c — the C side of the Python binding's overhead measurement (bench/python_op_overhead.py):
 * one sparse MLP operator on one set of random weights, called in a loop from C exactly as the
 * Python script calls it (same shape, type, threads, active fraction, number of distinct masks
 * cycled, batch 1), printing the median and minimum time per call. Not a test; `make bench`
 * builds it into $(BUILD)/bench/op_overhead. What it is not: the operator's own benchmark
 * (`skipllama bench-op` sweeps shapes, types and fractions and cycles several weight copies).
 *
 * Usage: op_overhead [-H 2048] [-I 8192] [-t f32|f16|bf16] [-f 0.1] [-r 200] [-n 16] [-T 1] [-s 1] [-c wall|cpu] [-p 1]
 *   -r timed calls, -n distinct random masks cycled, -T threads, -s seed, -c clock: wall time (default)
 *   or the calling thread's CPU time (steadier on a busy machine; with -T 1 only, since the
 *   workers' time is not counted), -p 0: weights on ordinary 4 KiB pages instead of huge pages.
 * Prints one line: "c H=.. I=.. type=.. frac=.. threads=.. thp=.. calls=.. median_us=.. min_us=..".
 * Built with -DOP_OVERHEAD_NO_MAIN it is only op_overhead_time() (see there).
 */
#include "skipllama.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static clockid_t g_clock = CLOCK_MONOTONIC; /* -c cpu: CLOCK_THREAD_CPUTIME_ID */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#ifndef OP_OVERHEAD_NO_MAIN
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static float rng_unit(uint64_t *s) { return (float)(rng_next(s) >> 40) / (float)(1 << 24) - 0.5f; }

static int g_thp = 1; /* -p 1: weights on transparent huge pages, as numpy allocates large arrays */

/* A large buffer placed as numpy places its arrays' data: numpy (>= 1.22, Linux) advises huge
 * pages for allocations of 4 MiB and more, which matters for random row gathers (TLB misses),
 * so the C loop does the same unless -p 0. */
static void *big_buffer(size_t bytes) {
    if (!g_thp) return malloc(bytes);
    const size_t align = (size_t)2 << 20, rounded = (bytes + align - 1) & ~(align - 1);
    void *p = aligned_alloc(align, rounded);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

/* rows x cols random weights of `type`, encoded through the library's converter */
static void *random_weights(sl_type type, int64_t rows, int64_t cols, uint64_t *s) {
    const size_t n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * sizeof(float));
    void *w = big_buffer(sl_type_row_size(type, cols) * (size_t)rows);
    if (!f || !w) {
        free(f);
        free(w);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) f[i] = 0.05f * rng_unit(s);
    sl_convert_from_f32(type, f, w, (int64_t)n);
    free(f);
    return w;
}
#endif /* OP_OVERHEAD_NO_MAIN */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef sl_status (*op_forward_fn)(sl_sparse_mlp *, const float *, int64_t, const bool *, const int32_t *const *,
                                   const int32_t *, sl_mlp_mode, float *, sl_error *);

/* The timed loop: warm up with every mask once (unless warm is 0), then reps calls of fwd(op, x,
 * B = 1, mask r % n_masks) into t[0..reps) (seconds, sorted). The forward function comes as a pointer so that
 * bench/python_op_overhead.py can compile this file with -DOP_OVERHEAD_NO_MAIN into a small
 * shared object (no link to the library needed) and run this very loop inside the Python
 * process, on the operator, weights and masks its Python calls use. Returns 0, or the first
 * failing status. */
int op_overhead_time(op_forward_fn fwd, sl_sparse_mlp *op, const float *x, const bool *masks, int n_masks, int64_t I,
                     float *out, int reps, int cpu_clock, int warm, double *t) {
    sl_error err;
    g_clock = cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    for (int m = 0; warm && m < n_masks; m++) {
        sl_status st = fwd(op, x, 1, masks + (size_t)m * (size_t)I, NULL, NULL, SL_MLP_PER_ROW, out, &err);
        if (st) return (int)st;
    }
    for (int r = 0; r < reps; r++) {
        const bool *mask = masks + (size_t)(r % n_masks) * (size_t)I;
        double t0 = now_s();
        fwd(op, x, 1, mask, NULL, NULL, SL_MLP_PER_ROW, out, &err);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return 0;
}

#ifndef OP_OVERHEAD_NO_MAIN
int main(int argc, char **argv) {
    int64_t H = 2048, I = 8192;
    double frac = 0.1;
    int reps = 200, n_masks = 16, threads = 1;
    uint64_t seed = 1;
    sl_type type = SL_TYPE_F32;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "-H")) H = atoll(v);
        else if (!strcmp(a, "-I")) I = atoll(v);
        else if (!strcmp(a, "-f")) frac = atof(v);
        else if (!strcmp(a, "-r")) reps = atoi(v);
        else if (!strcmp(a, "-n")) n_masks = atoi(v);
        else if (!strcmp(a, "-T")) threads = atoi(v);
        else if (!strcmp(a, "-s")) seed = (uint64_t)atoll(v);
        else if (!strcmp(a, "-p")) g_thp = atoi(v) != 0;
        else if (!strcmp(a, "-c")) g_clock = strcmp(v, "cpu") ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID;
        else if (!strcmp(a, "-t")) {
            if (!sl_type_from_name(v, &type)) {
                fprintf(stderr, "op_overhead: unknown type '%s'\n", v);
                return 1;
            }
        } else {
            fprintf(stderr, "op_overhead: unknown option '%s'\n", a);
            return 1;
        }
    }
    if (H < 1 || I < 1 || reps < 1 || n_masks < 1 || threads < 1 || frac < 0 || frac > 1) {
        fprintf(stderr, "op_overhead: bad arguments\n");
        return 1;
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    void *gate = random_weights(type, I, H, &s), *up = random_weights(type, I, H, &s), *down = random_weights(type, H, I, &s);
    float *x = malloc((size_t)H * sizeof(float)), *out = malloc((size_t)H * sizeof(float));
    bool *masks = calloc((size_t)n_masks * (size_t)I, sizeof(bool));
    int32_t *perm = malloc((size_t)I * sizeof(int32_t));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!gate || !up || !down || !x || !out || !masks || !perm || !t) {
        fprintf(stderr, "op_overhead: out of memory\n");
        return 1;
    }
    for (int64_t h = 0; h < H; h++) x[h] = rng_unit(&s);
    const int64_t k = (int64_t)(frac * (double)I + 0.5);
    for (int m = 0; m < n_masks; m++) { /* k distinct random neurons per mask */
        for (int64_t i = 0; i < I; i++) perm[i] = (int32_t)i;
        for (int64_t j = 0; j < k; j++) {
            int64_t r = j + (int64_t)(rng_next(&s) % (uint64_t)(I - j));
            int32_t tmp = perm[j];
            perm[j] = perm[r];
            perm[r] = tmp;
            masks[(size_t)m * (size_t)I + (size_t)perm[j]] = true;
        }
    }
    sl_mlp_weights w = {type, H, I, gate, up, down, NULL};
    sl_error err;
    sl_sparse_mlp *op = sl_sparse_mlp_init(&w, SL_ACT_SILU, threads, &err);
    if (!op) {
        fprintf(stderr, "op_overhead: %s\n", err.message);
        return 1;
    }
    int st = op_overhead_time(sl_sparse_mlp_forward, op, x, masks, n_masks, I, out, reps, g_clock == CLOCK_THREAD_CPUTIME_ID, 1, t);
    if (st) {
        fprintf(stderr, "op_overhead: forward failed (%s)\n", sl_status_str((sl_status)st));
        return 1;
    }
    printf("c H=%lld I=%lld type=%s frac=%g threads=%d thp=%d calls=%d median_us=%.1f min_us=%.1f\n", (long long)H,
           (long long)I, sl_type_name(type), frac, threads, g_thp, reps, 1e6 * t[reps / 2], 1e6 * t[0]);
    sl_sparse_mlp_free(op);
    free(gate);
    free(up);
    free(down);
    free(x);
    free(out);
    free(masks);
    free(perm);
    free(t);
    return 0;
}
#endif /* OP_OVERHEAD_NO_MAIN */
