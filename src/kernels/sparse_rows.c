/*
 * sparse_rows.c — the row-group kernels' scalar fallback (row by row through sl_vec_dot /
 * sl_vec_axpy, whatever variant those use), the choice of kernel set for the variant in use, and
 * the group sizes the schedules use. What it is not: the SIMD kernels (sparse_rows_avx2.c,
 * sparse_rows_avx512.c, bundle_rows_avx512.c) or the schedule (src/sparse/sparse_mlp.c).
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"

/* ---- row-group kernels: per-row fallback and dispatch ----------------------------------------- */

void sl_sp_dot_rows_ref(sl_type t, const uint8_t *const *rows, int nr, const void *x, int64_t n, float *out,
                        const uint8_t *const *next, int nnext) {
    for (int r = 0; r < nnext; r++) __builtin_prefetch(next[r], 0, 1); /* at least the head of each next row */
    if (sl_is_bundle_layout(t)) {
        sl_sp_dot_rows_bundle_ref(t, rows, nr, x, n, out);
        return;
    }
    for (int r = 0; r < nr; r++) out[r] = sl_vec_dot(t, rows[r], x, n);
}

void sl_sp_axpy_rows_ref(sl_type t, const uint8_t *const *rows, const float *a, int nr, float *y, int64_t n,
                         const uint8_t *const *next, int nnext) {
    for (int r = 0; r < nnext; r++) __builtin_prefetch(next[r], 0, 1);
    if (sl_is_bundle_layout(t)) {
        sl_sp_axpy_rows_bundle_ref(t, rows, a, nr, y, n);
        return;
    }
    for (int r = 0; r < nr; r++) sl_vec_axpy(t, rows[r], a[r], y, n);
}

void sl_sp_dot_rows_batch_ref(sl_type t, const uint8_t *const *rows, int nr, const uint8_t *x, size_t xs, int nb, int64_t n,
                              float *out, const uint8_t *const *next, int nnext) {
    for (int r = 0; r < nnext; r++) __builtin_prefetch(next[r], 0, 1);
    for (int b = 0; b < nb; b++)
        for (int r = 0; r < nr; r++) out[b * nr + r] = sl_vec_dot(t, rows[r], x + (size_t)b * xs, n);
}

void sl_sp_axpy_rows_batch_ref(sl_type t, const uint8_t *const *rows, int nr, const float *a, int astride, int nb, float *y,
                               int64_t ys, int64_t n, const uint8_t *const *next, int nnext) {
    for (int r = 0; r < nnext; r++) __builtin_prefetch(next[r], 0, 1);
    for (int b = 0; b < nb; b++)
        for (int r = 0; r < nr; r++)
            if (a[r * astride + b] != 0.0f) sl_vec_axpy(t, rows[r], a[r * astride + b], y + (size_t)b * (size_t)ys, n);
}

/* x for the reference and AVX2 sets: sl_act_prepare's form; bundle-layout rows take x as the
 * type they re-lay out does. */
static sl_type act_type(sl_type t) { return t == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : t == SL_TYPE_Q8_0N ? SL_TYPE_Q8_0 : t; }
static size_t sp_x_size_plain(sl_type t, int64_t n) { return sl_act_size(act_type(t), n); }
static void sp_x_prep_plain(sl_type t, const float *x, int64_t n, void *xp) { sl_act_prepare(act_type(t), x, n, xp); }

void sl_sp_kernels(sl_sp_kernel_set *k) {
#if defined(__x86_64__)
    if (sl_kernels_current() == SL_KERNELS_AVX512) {
        k->x_size = sl_sp_x_size_avx512;
        k->x_prep = sl_sp_x_prep_avx512;
        k->dot = sl_sp_dot_rows_avx512;
        k->axpy = sl_sp_axpy_rows_avx512;
        k->dot_batch = sl_sp_dot_rows_batch_avx512;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx512;
        return;
    }
    if (sl_kernels_current() == SL_KERNELS_AVX2) {
        k->x_size = sp_x_size_plain;
        k->x_prep = sp_x_prep_plain;
        k->dot = sl_sp_dot_rows_avx2;
        k->axpy = sl_sp_axpy_rows_avx2;
        k->dot_batch = sl_sp_dot_rows_batch_avx2;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx2;
        return;
    }
#endif
    k->x_size = sp_x_size_plain;
    k->x_prep = sp_x_prep_plain;
    k->dot = sl_sp_dot_rows_ref;
    k->axpy = sl_sp_axpy_rows_ref;
    k->dot_batch = sl_sp_dot_rows_batch_ref;
    k->axpy_batch = sl_sp_axpy_rows_batch_ref;
}

/* Group sizes, from measurements on Zen 4 (bench-op and a kernel micro-benchmark): gathers need
 * several independent row streams in flight — 4 neurons = 8 rows for gate/up; 4 quantized or 8
 * float rows for down (2 and 8 gate/up neurons, 2 and 8 quantized down rows measured slower or
 * the same). The same at every density: reading dense masks one neuron at a time without
 * software prefetch (left to the hardware prefetcher) lost against groups with prefetch once
 * the quantized kernels fetch a group's scales up front (2.5x dense at 78% active, Q4_0). */
void sl_sp_groups(sl_type t_gu, sl_type t_d, double density, int *g_gu, int *g_down) {
    const bool quant_d = t_d == SL_TYPE_Q8_0 || t_d == SL_TYPE_Q4_0;
    (void)t_gu;
    (void)density;
    *g_gu = 4;
    *g_down = quant_d ? 4 : 8;
}
