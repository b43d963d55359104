/*
 * sparse_rows.c — the choice of row-group kernel set for the kernel variant in use, and the group
 * sizes the schedules use. What it is not: the kernels (sparse_rows_ref.c, sparse_rows_avx2.c,
 * sparse_rows_avx512.c, bundle_rows_*.c) or the schedule (src/sparse/sparse_mlp.c).
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"

/* x for the reference and AVX2 sets: sl_act_prepare's form; bundle-layout rows take x as the
 * type they re-lay out does. */
static sl_type act_type(sl_type t) { return t == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : t == SL_TYPE_Q8_0N ? SL_TYPE_Q8_0 : t; }
static size_t sp_x_size_plain(sl_type t, int64_t n) { return sl_act_size(act_type(t), n); }
static void sp_x_prep_plain(sl_type t, const float *x, int64_t n, void *xp) { sl_act_prepare(act_type(t), x, n, xp); }
#if defined(__x86_64__)
/* the AVX2 set prepares x for the bundle layouts in its own order (bundle_rows_avx2.c) */
static size_t sp_x_size_avx2(sl_type t, int64_t n) { return sl_is_bundle_layout(t) ? sl_bn_x_size_avx2(t, n) : sp_x_size_plain(t, n); }
static void sp_x_prep_avx2(sl_type t, const float *x, int64_t n, void *xp) {
    if (sl_is_bundle_layout(t)) sl_bn_x_prep_avx2(t, x, n, xp);
    else sp_x_prep_plain(t, x, n, xp);
}
#endif

void sl_sp_kernels(sl_sp_kernel_set *k) {
#if defined(__x86_64__)
    if (sl_kernels_current() == SL_KERNELS_AVX512) {
        k->x_size = sl_sp_x_size_avx512;
        k->x_prep = sl_sp_x_prep_avx512;
        k->dot = sl_sp_dot_rows_avx512;
        k->axpy = sl_sp_axpy_rows_avx512;
        k->dot_batch = sl_sp_dot_rows_batch_avx512;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx512;
        k->col_axpy = sl_sp_col_axpy_avx2; /* the AVX2 kernel (written where no AVX-512 runs) */
        return;
    }
    if (sl_kernels_current() == SL_KERNELS_AVX2) {
        k->x_size = sp_x_size_avx2;
        k->x_prep = sp_x_prep_avx2;
        k->dot = sl_sp_dot_rows_avx2;
        k->axpy = sl_sp_axpy_rows_avx2;
        k->dot_batch = sl_sp_dot_rows_batch_avx2;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx2;
        k->col_axpy = sl_sp_col_axpy_avx2;
        return;
    }
#endif
    k->x_size = sp_x_size_plain;
    k->x_prep = sp_x_prep_plain;
    k->dot = sl_sp_dot_rows_ref;
    k->axpy = sl_sp_axpy_rows_ref;
    k->dot_batch = sl_sp_dot_rows_batch_ref;
    k->axpy_batch = sl_sp_axpy_rows_batch_ref;
    k->col_axpy = sl_sp_col_axpy_ref;
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
