/*
 * sparse_rows_ref.c — the row-group kernels' scalar fallback: row by row through sl_vec_dot /
 * sl_vec_axpy (whatever variant those use), and through the bundle layouts' scalar definitions
 * (bundle_rows_ref.c) for Q4_0N / Q8_0N rows. What the SIMD sets fall back to for types they do
 * not cover. What it is not: fast.
 */
#include "kernels/sparse_rows.h"

#include "kernels/kernels.h"

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
