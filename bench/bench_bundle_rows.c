/*
 * bench_bundle_rows.c — the sparse MLP's row-group kernels on rows that sit in cache: the
 * gathered kernels on the file's Q4_0 / Q8_0 rows against the bundle layouts Q4_0N / Q8_0N
 * (bundle_rows_avx512.c, bundle_rows_avx2.c). With the memory out of the way this shows what
 * the kernels cost per row, i.e. whether a sparse call is compute- or memory-bound. Runs the
 * kernel variant in use: SKIPLLAMA_KERNELS=avx2 times the AVX2 kernels on an AVX-512 machine.
 * Not a test: timing never decides one.
 *
 * usage: build/bench/bench_bundle_rows [N_EMBD]   (default 2048; a multiple of 32)
 * Prints ns per row and GB/s of row bytes for dot and axpy, 4 and 8 rows per call, the median
 * of 9 repetitions of 200000 rows each, 64 distinct rows cycled (about 140 KB: L2).
 */
#include "kernels/kernels.h"
#include "kernels/sparse_rows.h"
#include "format/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { N_ROWS = 64, REPS = 9, ROWS_PER_REP = 200000 };

/* Median seconds per row of one kernel (dot when axpy is 0) over rows of rb bytes at w. */
static sl_sp_kernel_set ks;

static double time_rows(sl_type t, bool axpy, int nr, const uint8_t *w, size_t rb, const void *xp, float *y, int64_t n) {
    double reps[REPS];
    const float a[8] = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f, 1.5f, -2.0f, 1.0f};
    float out[8];
    const int calls = ROWS_PER_REP / nr;
    for (int rep = 0; rep < REPS; rep++) {
        const double t0 = now_s();
        for (int c = 0; c < calls; c++) {
            const uint8_t *rows[8];
            for (int r = 0; r < nr; r++) rows[r] = w + (size_t)((c * nr + r) % N_ROWS) * rb;
            if (axpy) ks.axpy(t, rows, a, nr, y, n, rows, 0);
            else ks.dot(t, rows, nr, xp, n, out, rows, 0);
        }
        reps[rep] = (now_s() - t0) / ((double)calls * nr);
        if (!axpy && out[0] != out[0]) reps[rep] = 0; /* keeps out alive */
    }
    qsort(reps, REPS, sizeof(double), cmp_double);
    return reps[REPS / 2];
}

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atoll(argv[1]) : 2048;
    if (n < 32 || n % 32 || n > (1 << 20)) {
        fprintf(stderr, "usage: bench_bundle_rows [N_EMBD: a multiple of 32, 32..1048576]\n");
        return 2;
    }
    sl_sp_kernels(&ks);
    printf("kernels: %s\n", sl_kernels_name(sl_kernels_current()));
    float *x = malloc((size_t)n * sizeof(float)), *y = calloc((size_t)n, sizeof(float));
    if (!x || !y) return 1;
    srand(1);
    for (int64_t c = 0; c < n; c++) x[c] = (float)rand() / (float)RAND_MAX - 0.5f;
    printf("| type | layout | rows/call | dot ns/row | dot GB/s | axpy ns/row | axpy GB/s |\n|---|---|--:|--:|--:|--:|--:|\n");
    static const sl_type files[] = {SL_TYPE_Q4_0, SL_TYPE_Q8_0};
    for (int ti = 0; ti < 2; ti++) {
        const sl_type tf = files[ti], tn = tf == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0N : SL_TYPE_Q8_0N;
        const size_t rb = sl_type_row_size(tf, n), rn = tf == SL_TYPE_Q4_0 ? sl_q4_0n_row_size(n) : sl_q8_0n_row_size(n);
        uint8_t *w = malloc(rb * N_ROWS), *wn = malloc(rn * N_ROWS);
        void *xf = malloc(ks.x_size(tf, n)), *xn = malloc(ks.x_size(tn, n));
        float *row = malloc((size_t)n * sizeof(float));
        if (!w || !wn || !xf || !xn || !row) return 1;
        for (int r = 0; r < N_ROWS; r++) {
            for (int64_t c = 0; c < n; c++) row[c] = (float)rand() / (float)RAND_MAX - 0.5f;
            sl_quantize_row_ref(tf, row, w + (size_t)r * rb, n);
            if (tf == SL_TYPE_Q4_0) sl_q4_0n_pack_row(w + (size_t)r * rb, n, wn + (size_t)r * rn);
            else sl_q8_0n_pack_row(w + (size_t)r * rb, n, wn + (size_t)r * rn);
        }
        ks.x_prep(tf, x, n, xf);
        ks.x_prep(tn, x, n, xn);
        for (int layout = 0; layout < 2; layout++)
            for (int nr = 4; nr <= 8; nr += 4) {
                const sl_type t = layout ? tn : tf;
                const uint8_t *ww = layout ? wn : w;
                const size_t b = layout ? rn : rb;
                const void *xx = layout ? xn : xf;
                const double d = time_rows(t, false, nr, ww, b, xx, y, n), a = time_rows(t, true, nr, ww, b, xx, y, n);
                printf("| %s | %s | %d | %.1f | %.1f | %.1f | %.1f |\n", sl_type_name(tf), layout ? (tf == SL_TYPE_Q4_0 ? "Q4_0N" : "Q8_0N") : "file", nr,
                       d * 1e9, (double)b / d * 1e-9, a * 1e9, (double)b / a * 1e-9);
            }
        free(w), free(wn), free(xf), free(xn), free(row);
    }
    free(x), free(y);
    return 0;
}
