/*
 * matmul.c — sl_matmul: prepares the activations once per call (quantized to Q8_0 for
 * quantized weights, in the layout the selected variant wants), then splits the weight rows
 * over the pool's threads and runs the variant's row kernel on each share.
 *
 * Rows are handed out in units of 16 so that no two threads write the same 64-byte line of Y;
 * the split is even (shares differ by at most one unit). The prepared activations live in the
 * pool's grow-only scratch buffer, so steady-state calls never allocate; without a pool they
 * are allocated per call (a convenience path, not the hot one), and if that allocation fails the
 * exact reference runs instead — slower, never wrong. What it is not: a kernel — the arithmetic
 * lives in the variants (matmul_ref.c, matmul_avx2.c, matmul_avx512.c).
 */
#include "kernels/kernels_impl.h"

#include "util/util.h"

/* Below this many activation elements the preparation runs on the caller: a second pool
 * dispatch would cost more than it saves. */
#define PREP_PARALLEL_MIN (1 << 15)
#define ROW_UNIT 16

typedef struct prep_task {
    const sl_kernel_ops *ops; /* variant */
    bool kq;                  /* the variant's kq_* entries (sl_kq_type) */
    sl_type type;             /* weight type */
    const float *X;           /* [B, n] */
    int64_t n, B;             /* shape */
    void *xp;                 /* destination */
} prep_task;

static void prep_worker(void *arg, int ith, int nth) {
    prep_task *t = arg;
    long long b0, b1;
    sl_split_range(t->B, ith, nth, &b0, &b1);
    if (b0 < b1) (t->kq ? t->ops->kq_mm_prep : t->ops->mm_prep)(t->type, t->X, t->n, t->B, b0, b1, t->xp);
}

typedef struct rows_task {
    const sl_kernel_ops *ops; /* variant */
    bool kq;                  /* the variant's kq_mm_rows */
    sl_mm_args args;          /* the product */
} rows_task;

static void rows_worker(void *arg, int ith, int nth) {
    rows_task *t = arg;
    long long units = (t->args.rows + ROW_UNIT - 1) / ROW_UNIT, u0, u1;
    sl_split_range(units, ith, nth, &u0, &u1);
    int64_t r0 = u0 * ROW_UNIT, r1 = u1 * ROW_UNIT;
    if (r1 > t->args.rows) r1 = t->args.rows;
    if (r0 < r1) (t->kq ? t->ops->kq_mm_rows : t->ops->mm_rows)(&t->args, r0, r1);
}

typedef struct ref_task {
    sl_type type;    /* weight type */
    const void *W;   /* [rows, n] */
    int64_t rows, n; /* shape */
    const float *X;  /* [B, n] */
    int64_t B;       /* batch */
    float *Y;        /* [B, rows] */
} ref_task;

static void ref_worker(void *arg, int ith, int nth) {
    ref_task *t = arg;
    sl_matmul_ref(t->type, t->W, t->rows, t->n, t->X, t->B, t->Y, ith, nth);
}

void sl_matmul(sl_pool *pool, sl_type type, const void *W, int64_t rows, int64_t n, const float *X, int64_t B, float *Y) {
    if (rows <= 0 || B <= 0) return;
    if (n <= 0) { /* empty sums: the tiled kernels would not touch Y at all */
        for (int64_t i = 0; i < rows * B; i++) Y[i] = 0.0f;
        return;
    }
    const sl_kernel_ops *ops = sl_kernels_ops();
    const bool kq = sl_kq_type(type);
    size_t xbytes = kq ? ops->kq_mm_prep_size(type, n, B) : ops->mm_prep_size(type, n, B);
    void *xp = NULL, *owned = NULL;
    if (xbytes) {
        xp = pool ? sl_pool_scratch(pool, xbytes) : (owned = sl_malloc_aligned(xbytes));
        if (!xp) {
            ref_task rt = {type, W, rows, n, X, B, Y};
            sl_pool_run(pool, ref_worker, &rt);
            return;
        }
        prep_task pt = {ops, kq, type, X, n, B, xp};
        if (B > 1 && B * n >= PREP_PARALLEL_MIN) sl_pool_run(pool, prep_worker, &pt);
        else prep_worker(&pt, 0, 1);
    }
    /* a Q4_0x4 group of 4 rows is 4 Q4_0 rows long */
    size_t row_bytes = sl_type_row_size(type == SL_TYPE_Q4_0X4 ? SL_TYPE_Q4_0 : type, n);
    rows_task t = {ops, kq, {type, W, row_bytes, rows, n, X, xp, B, Y}};
    sl_pool_run(pool, rows_worker, &t);
    sl_free_aligned(owned);
}
