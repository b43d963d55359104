/*
 * matmul_bundle.c — the products over rows at a stride that the neuron bundles need for batches
 * (kernels.h): sl_matmul_rows (gate and up rows of many tokens) and sl_matmul_t (the down
 * projection from the transposed down rows), plus sl_matmul_t's plain definition.
 *
 * sl_matmul_rows reuses the variant's matrix kernel (mm_rows): float rows at any stride go to it
 * directly; rows in the bundle layouts Q4_0N / Q8_0N are unpacked, 16 at a time, into the plain
 * Q4_0 / Q8_0 rows they were packed from (the same bytes, reordered: a pass over 16 rows costs
 * about what one token's dot with them costs, and it is shared by every token of the batch),
 * and the kernel runs on that tile. sl_matmul_t hands each thread whole 128-column slices
 * (mt_cols: matmul_t_ref.c, matmul_t_avx2.c). What it is not: the B = 1 path of the bundles,
 * which fuses the three products per neuron (src/model/bundle_mlp.c).
 */
#include "kernels/kernels_impl.h"

#include "format/quant.h"
#include "kernels/sparse_rows.h"
#include "util/util.h"

#include <math.h>
#include <string.h>

#define ROW_UNIT 16 /* rows per thread unit and per unpacked tile */
#define COL_UNIT 128

static bool is_n_layout(sl_type t) { return t == SL_TYPE_Q4_0N || t == SL_TYPE_Q8_0N; }

typedef struct rows_task {
    const sl_kernel_ops *ops;  /* variant */
    sl_type type;              /* row type (maybe a bundle layout) */
    const uint8_t *W;          /* row r at W + r * stride */
    size_t stride;             /* bytes between rows */
    int64_t rows, n, B;        /* shape */
    const float *X;            /* [B, n] */
    const void *xp;            /* X prepared for the plain type */
    float *Y;                  /* [B, rows] */
    uint8_t *scratch;          /* per thread: ROW_UNIT plain rows + [B, ROW_UNIT] outputs */
    size_t scratch_per_thread; /* its size */
} rows_task;

static void rows_worker(void *arg, int ith, int nth) {
    rows_task *t = arg;
    long long units = (t->rows + ROW_UNIT - 1) / ROW_UNIT, u0, u1;
    sl_split_range(units, ith, nth, &u0, &u1);
    const int64_t r0 = u0 * ROW_UNIT, r1 = u1 * ROW_UNIT < t->rows ? u1 * ROW_UNIT : t->rows;
    if (r0 >= r1) return;
    if (!is_n_layout(t->type)) {
        sl_mm_args a = {t->type, t->W, t->stride, t->rows, t->n, t->X, t->xp, t->B, t->Y};
        (sl_kq_type(t->type) ? t->ops->kq_mm_rows : t->ops->mm_rows)(&a, r0, r1);
        return;
    }
    const sl_type plain = t->type == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : SL_TYPE_Q8_0;
    const size_t prb = sl_type_row_size(plain, t->n);
    uint8_t *tile = t->scratch + (size_t)ith * t->scratch_per_thread;
    float *yt = (float *)(tile + (((size_t)ROW_UNIT * prb + 63) & ~(size_t)63));
    for (int64_t r = r0; r < r1; r += ROW_UNIT) {
        const int nr = r1 - r < ROW_UNIT ? (int)(r1 - r) : ROW_UNIT;
        for (int j = 0; j < nr; j++) {
            const uint8_t *src = t->W + (size_t)(r + j) * t->stride;
            if (plain == SL_TYPE_Q4_0) sl_q4_0n_unpack_row(src, t->n, tile + (size_t)j * prb);
            else sl_q8_0n_unpack_row(src, t->n, tile + (size_t)j * prb);
        }
        sl_mm_args a = {plain, tile, prb, nr, t->n, t->X, t->xp, t->B, yt};
        t->ops->mm_rows(&a, 0, nr);
        for (int64_t b = 0; b < t->B; b++) memcpy(t->Y + b * t->rows + r, yt + b * nr, (size_t)nr * sizeof(float));
    }
}

typedef struct prep_task {
    const sl_kernel_ops *ops; /* variant */
    sl_type type;             /* plain weight type */
    const float *X;           /* [B, n] */
    int64_t n, B;             /* shape */
    void *xp;                 /* destination */
} prep_task;

static void prep_worker(void *arg, int ith, int nth) {
    prep_task *t = arg;
    long long b0, b1;
    sl_split_range(t->B, ith, nth, &b0, &b1);
    if (b0 < b1) (sl_kq_type(t->type) ? t->ops->kq_mm_prep : t->ops->mm_prep)(t->type, t->X, t->n, t->B, b0, b1, t->xp);
}

/* No memory for the prepared activations or the tiles: each output the plain way, block by
 * block against f32 activations (slow, never wrong). */
static void rows_fallback(sl_type type, const uint8_t *W, size_t stride, int64_t rows, int64_t n, const float *X, int64_t B,
                          float *Y) {
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *w = W + (size_t)r * stride;
        for (int64_t b = 0; b < B; b++) {
            float s = 0.0f;
            if (is_n_layout(type)) {
                float v[32];
                for (int64_t blk = 0; blk < n / 32; blk++) {
                    if (type == SL_TYPE_Q4_0N) {
                        sl_block_q4_0 q;
                        sl_q4_0n_get_block(w, n, blk, &q);
                        sl_dequantize_row_ref(SL_TYPE_Q4_0, &q, v, 32);
                    } else {
                        sl_block_q8_0 q;
                        sl_q8_0n_get_block(w, n, blk, &q);
                        sl_dequantize_row_ref(SL_TYPE_Q8_0, &q, v, 32);
                    }
                    for (int j = 0; j < 32; j++) s += v[j] * X[b * n + 32 * blk + j];
                }
            } else {
                s = sl_dot_row_ref(type, w, X + b * n, n);
            }
            Y[b * rows + r] = s;
        }
    }
}

void sl_matmul_rows(sl_pool *pool, sl_type type, const void *W, size_t stride, int64_t rows, int64_t n, const float *X,
                    int64_t B, float *Y) {
    if (rows <= 0 || B <= 0) return;
    if (n <= 0) {
        for (int64_t i = 0; i < rows * B; i++) Y[i] = 0.0f;
        return;
    }
    const sl_kernel_ops *ops = sl_kernels_ops();
    const sl_type plain = type == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : type == SL_TYPE_Q8_0N ? SL_TYPE_Q8_0 : type;
    const int nth = sl_pool_n_threads(pool);
    const size_t xbytes = ((sl_kq_type(plain) ? ops->kq_mm_prep_size(plain, n, B) : ops->mm_prep_size(plain, n, B)) + 63) & ~(size_t)63;
    size_t per = 0, total = xbytes;
    if (is_n_layout(type)) {
        per = (((size_t)ROW_UNIT * sl_type_row_size(plain, n) + 63) & ~(size_t)63) + (size_t)B * ROW_UNIT * sizeof(float);
        per = (per + 63) & ~(size_t)63;
        total += (size_t)nth * per;
    }
    uint8_t *scratch = NULL, *owned = NULL;
    if (total) {
        scratch = pool ? sl_pool_scratch(pool, total) : (owned = sl_malloc_aligned(total));
        if (!scratch) {
            rows_fallback(type, W, stride, rows, n, X, B, Y);
            return;
        }
        if (xbytes) { /* tokens split over the threads, as sl_matmul prepares them */
            prep_task pt = {ops, plain, X, n, B, scratch};
            if (B > 1 && B * n >= (1 << 15)) sl_pool_run(pool, prep_worker, &pt);
            else prep_worker(&pt, 0, 1);
        }
    }
    rows_task t = {ops, type, W, stride, rows, n, B, X, xbytes ? scratch : NULL, Y, scratch ? scratch + xbytes : NULL, per};
    sl_pool_run(pool, rows_worker, &t);
    sl_free_aligned(owned);
}

/* ---- transposed rows -------------------------------------------------------------------------- */

typedef struct cols_task {
    const sl_kernel_ops *ops; /* variant */
    sl_mt_args args;          /* the product */
} cols_task;

static void cols_worker(void *arg, int ith, int nth) {
    cols_task *t = arg;
    long long units = (t->args.N + COL_UNIT - 1) / COL_UNIT, u0, u1;
    sl_split_range(units, ith, nth, &u0, &u1);
    const int64_t c0 = u0 * COL_UNIT, c1 = u1 * COL_UNIT < t->args.N ? u1 * COL_UNIT : t->args.N;
    if (c0 < c1) t->ops->mt_cols(&t->args, c0, c1);
}

void sl_matmul_t(sl_pool *pool, sl_type type, const void *Wt, size_t stride, int64_t K, int64_t N, const float *X, int64_t B,
                 float *Y) {
    if (N <= 0 || B <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < N * B; i++) Y[i] = 0.0f;
        return;
    }
    cols_task t = {sl_kernels_ops(), {type, Wt, stride, K, N, X, B, Y}};
    sl_pool_run(pool, cols_worker, &t);
}

/* ---- exact down columns --------------------------------------------------------------------------- */

typedef struct tc_task {
    sl_sp_kernel_set k;        /* the variant's column kernel */
    sl_type type;              /* Q4_0C / Q8_0C */
    const uint8_t *Wt;         /* row i at Wt + i * stride */
    size_t stride;             /* bytes between rows */
    const uint16_t *dscale;    /* [K / 32][N] */
    int64_t K, N, B;           /* shape */
    const sl_block_q8_0 *xq;   /* [B][K / 32] X quantized */
    float *Y;                  /* [B, N] */
} tc_task;

/* Tokens of X quantized to Q8_0 rows (sl_act_prepare, as sl_matmul's scalar and AVX2 paths lay
 * them out), split over the threads. */
typedef struct q8_task {
    const float *X; /* [B, K] */
    int64_t K, B;   /* shape */
    uint8_t *xq;    /* [B] rows of K / 32 blocks */
} q8_task;

static void q8_worker(void *arg, int ith, int nth) {
    const q8_task *t = arg;
    long long b0, b1;
    sl_split_range(t->B, ith, nth, &b0, &b1);
    const size_t rb = sl_type_row_size(SL_TYPE_Q8_0, t->K);
    for (long long b = b0; b < b1; b++) sl_act_prepare(SL_TYPE_Q8_0, t->X + b * t->K, t->K, t->xq + (size_t)b * rb);
}

static void tc_worker(void *arg, int ith, int nth) {
    const tc_task *t = arg;
    long long units = (t->N + COL_UNIT - 1) / COL_UNIT, u0, u1;
    sl_split_range(units, ith, nth, &u0, &u1);
    const int64_t c0 = u0 * COL_UNIT, c1 = u1 * COL_UNIT < t->N ? u1 * COL_UNIT : t->N;
    if (c0 >= c1) return;
    const size_t boff = t->type == SL_TYPE_Q4_0C ? (size_t)c0 / 2 : (size_t)c0; /* c0 is a whole number of chunks */
    for (int64_t b = 0; b < t->B; b++) memset(t->Y + b * t->N + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    const int64_t nb = t->K / 32;
    const uint8_t *rows[32], *next[32];
    for (int64_t j = 0; j < nb; j++) {
        for (int r = 0; r < 32; r++) {
            rows[r] = t->Wt + (size_t)(32 * j + r) * t->stride + boff;
            next[r] = j + 1 < nb ? rows[r] + 32 * t->stride : NULL;
        }
        for (int64_t b = 0; b < t->B; b++) { /* the block column's rows stay in cache across the tokens */
            const sl_block_q8_0 *q = t->xq + b * nb + j;
            t->k.col_axpy(t->type, rows, q->qs, 32, sl_fp16_to_fp32(q->d), t->dscale + (size_t)j * (size_t)t->N + c0, t->Y + b * t->N + c0,
                          c1 - c0, next, b == 0 && j + 1 < nb ? 32 : 0);
        }
    }
}

void sl_matmul_tc(sl_pool *pool, sl_type type, const void *Wt, size_t stride, const uint16_t *dscale, int64_t K, int64_t N,
                  const float *X, int64_t B, float *Y) {
    if (N <= 0 || B <= 0) return;
    const size_t xbytes = (size_t)B * sl_type_row_size(SL_TYPE_Q8_0, K);
    if (K <= 0 || K % 32 || !xbytes) {
        for (int64_t i = 0; i < N * B; i++) Y[i] = 0.0f;
        return;
    }
    sl_block_q8_0 *xq = pool ? sl_pool_scratch(pool, xbytes) : NULL, *owned = NULL;
    if (!xq && !(xq = owned = sl_malloc_aligned(xbytes))) { /* no memory: the float definition */
        float *w = sl_malloc_aligned((size_t)N * sizeof(float));
        for (int64_t i = 0; i < N * B; i++) Y[i] = w ? 0.0f : NAN;
        for (int64_t k = 0; w && k < K; k++) {
            sl_col_dequantize(type, (const uint8_t *)Wt + (size_t)k * stride, dscale + (size_t)(k / 32) * (size_t)N, w, N);
            for (int64_t b = 0; b < B; b++)
                for (int64_t c = 0; c < N; c++) Y[b * N + c] += X[b * K + k] * w[c];
        }
        sl_free_aligned(w);
        return;
    }
    q8_task qt = {X, K, B, (uint8_t *)xq};
    if (B > 1 && B * K >= (1 << 15)) sl_pool_run(pool, q8_worker, &qt);
    else q8_worker(&qt, 0, 1);
    tc_task t;
    sl_sp_kernels(&t.k);
    t.type = type;
    t.Wt = Wt;
    t.stride = stride;
    t.dscale = dscale;
    t.K = K, t.N = N, t.B = B;
    t.xq = xq;
    t.Y = Y;
    sl_pool_run(pool, tc_worker, &t);
    sl_free_aligned(owned);
}
