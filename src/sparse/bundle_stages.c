/*
 * bundle_stages.c — the two passes of a two-stage rule over a layer's neuron bundle (see
 * bundle_stages.h): the products of the candidates, then the down rows of the chosen ones.
 *
 * Both passes split their list into one contiguous share per thread in whole groups of 8 neurons
 * (so the groups, and with them the Q4_0N / Q8_0N down rounding, do not depend on the thread
 * count), and prefetch as bundle.c does: gate/up rows two groups ahead, down rows one group
 * ahead. What it is not: the one-pass fused MLP (bundle.c) or the rule (select.c).
 */
#include "sparse/bundle_stages.h"

#include "kernels/activation.h"
#include "kernels/sparse_rows.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define STAGE_GROUP 8 /* neurons per kernel call (<= SP_MAX_ROWS) */
#define STAGE_PF 2    /* gate/up rows prefetched this many groups ahead */
_Static_assert(STAGE_GROUP >= 1 && 2 * STAGE_GROUP <= 2 * SP_MAX_ROWS, "a group's rows fit two dot calls");

typedef struct stage_task {
    const sl_neuron_bundle *b; /* the layer */
    sl_sp_kernel_set k;        /* row kernels */
    sl_activation act;         /* activation */
    const void *xq;            /* prepared x (products) */
    const int32_t *idx;        /* [n] neurons */
    int32_t n;                 /* how many */
    const float *gate_pre;     /* [I] gate pre-activations or NULL (products) */
    float *h;                  /* [n] products out (products) */
    const float *coef;         /* [n] coefficients (down) */
    float *acc;                /* [nth, acc_stride] accumulators (down) */
    size_t acc_stride;         /* floats between accumulators */
} stage_task;

/* This thread's share [*s, *e) of n neurons, in whole groups. */
static void share(int32_t n, int ith, int nth, int64_t *s, int64_t *e) {
    long long a, z;
    sl_split_range((n + STAGE_GROUP - 1) / STAGE_GROUP, ith, nth, &a, &z);
    *s = a * STAGE_GROUP;
    *e = z * STAGE_GROUP < n ? z * STAGE_GROUP : n;
}

/* The gate/up rows of neurons idx[k0 .. k0 + np) into rows; returns how many. */
static int gu_rows(const stage_task *t, int64_t k0, int np, const uint8_t **rows) {
    const sl_neuron_bundle *b = t->b;
    int nr = 0;
    for (int j = 0; j < np; j++) {
        const uint8_t *base = b->data + (size_t)t->idx[k0 + j] * b->stride;
        if (!t->gate_pre) rows[nr++] = base;
        rows[nr++] = base + b->off_up;
    }
    return nr;
}

static void products_worker(void *arg, int ith, int nth) {
    const stage_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const int G = STAGE_GROUP;
    int64_t s, e;
    share(t->n, ith, nth, &s, &e);
    const uint8_t *gu[2 * STAGE_GROUP], *pf[2 * STAGE_GROUP];
    float r[2 * STAGE_GROUP];
    for (int64_t k = s; k < e; k += G) {
        const int np = e - k < G ? (int)(e - k) : G;
        const int nr = gu_rows(t, k, np, gu);
        const int64_t kp = k + (int64_t)STAGE_PF * G;
        const int npf = kp < e ? gu_rows(t, kp, e - kp < G ? (int)(e - kp) : G, pf) : 0;
        for (int c = 0; c < nr; c += SP_MAX_ROWS) {
            const int cn = nr - c < SP_MAX_ROWS ? nr - c : SP_MAX_ROWS;
            const int pn = npf - c < 0 ? 0 : npf - c < SP_MAX_ROWS ? npf - c : SP_MAX_ROWS;
            t->k.dot(b->t_gu, gu + c, cn, t->xq, b->H, r + c, pf + c, pn);
        }
        for (int j = 0; j < np; j++) {
            const float g = t->gate_pre ? t->gate_pre[t->idx[k + j]] : r[2 * j], u = t->gate_pre ? r[j] : r[2 * j + 1];
            t->h[k + j] = sl_activate(t->act, g) * u;
        }
    }
}

static void down_worker(void *arg, int ith, int nth) {
    const stage_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const int G = STAGE_GROUP;
    float *acc = t->acc + (size_t)ith * t->acc_stride;
    memset(acc, 0, (size_t)b->H * sizeof(float));
    int64_t s, e;
    share(t->n, ith, nth, &s, &e);
    const uint8_t *rows[STAGE_GROUP], *next[STAGE_GROUP];
    for (int64_t k = s; k < e; k += G) {
        const int np = e - k < G ? (int)(e - k) : G;
        for (int j = 0; j < np; j++) rows[j] = b->data + (size_t)t->idx[k + j] * b->stride + b->off_down;
        const int64_t k1 = k + G;
        const int nn = k1 < e ? (e - k1 < G ? (int)(e - k1) : G) : 0;
        for (int j = 0; j < nn; j++) next[j] = b->data + (size_t)t->idx[k1 + j] * b->stride + b->off_down;
        t->k.axpy(b->t_d, rows, t->coef + k, np, acc, b->H, next, nn);
    }
}

static sl_status check_list(const sl_neuron_bundle *b, const int32_t *idx, int32_t n, const void *out, sl_error *err) {
    if (!b || !b->data || !out || n < 0 || (n > 0 && !idx))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle stages: NULL argument or negative count");
    for (int32_t k = 0; k < n; k++)
        if (idx[k] < 0 || idx[k] >= b->I)
            return sl_set_error(err, SL_ERR_RANGE, "bundle stages: neuron %d outside [0, %lld)", idx[k], (long long)b->I);
    return SL_OK;
}

/* Threads worth waking for n neurons: few neurons cost less than a dispatch. */
static int threads_for(sl_pool *pool, int32_t n) {
    const int nth = pool ? sl_pool_n_threads(pool) : 1;
    return n < 2 * SP_MAX_ROWS ? 1 : nth;
}

sl_status sl_stage_products(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                             const int32_t *cand, int32_t n, const float *gate_pre, float *h, sl_error *err) {
    sl_status st = check_list(b, cand, n, h, err);
    if (st) return st;
    if (!ws || !x) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle products: NULL workspace or input");
    if (act != SL_ACT_SILU && act != SL_ACT_RELU && act != SL_ACT_GELU)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle products: unsupported activation %d", (int)act);
    if (!b->has_gate && !gate_pre)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle products: the bundle has no gate rows: gate_pre is required");
    if (n == 0) return SL_OK;
    stage_task t;
    memset(&t, 0, sizeof(t));
    sl_sp_kernels(&t.k);
    const size_t xq_bytes = t.k.x_size(b->t_gu, b->H);
    if (ws->xq_bytes < xq_bytes) {
        sl_free_aligned(ws->xq);
        ws->xq_bytes = 0;
        if (!(ws->xq = sl_malloc_aligned(xq_bytes))) return sl_set_error(err, SL_ERR_NOMEM, "bundle products: no memory for x");
        ws->xq_bytes = xq_bytes;
    }
    t.k.x_prep(b->t_gu, x, b->H, ws->xq);
    t.b = b;
    t.act = act;
    t.xq = ws->xq;
    t.idx = cand;
    t.n = n;
    t.gate_pre = gate_pre;
    t.h = h;
    if (threads_for(pool, n) == 1) products_worker(&t, 0, 1);
    else sl_pool_run(pool, products_worker, &t);
    return SL_OK;
}

sl_status sl_stage_down(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const int32_t *idx, const float *coef,
                         int32_t n, float *out, sl_error *err) {
    sl_status st = check_list(b, idx, n, out, err);
    if (st) return st;
    if (!ws || (n > 0 && !coef)) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle down: NULL workspace or coefficients");
    const int64_t H = b->H;
    if (n == 0) {
        memset(out, 0, (size_t)H * sizeof(float));
        return SL_OK;
    }
    const int nth = threads_for(pool, n);
    const size_t acc_stride = (size_t)((H + 15) & ~(int64_t)15);
    size_t acc_bytes;
    if (sl_mul_overflow((size_t)nth * acc_stride, sizeof(float), &acc_bytes))
        return sl_set_error(err, SL_ERR_NOMEM, "bundle down: scratch size overflows");
    if (ws->acc_bytes < acc_bytes) {
        sl_free_aligned(ws->acc);
        ws->acc_bytes = 0;
        if (!(ws->acc = sl_malloc_aligned(acc_bytes))) return sl_set_error(err, SL_ERR_NOMEM, "bundle down: no memory for accumulators");
        ws->acc_bytes = acc_bytes;
    }
    stage_task t;
    memset(&t, 0, sizeof(t));
    sl_sp_kernels(&t.k);
    t.b = b;
    t.idx = idx;
    t.n = n;
    t.coef = coef;
    t.acc = ws->acc;
    t.acc_stride = acc_stride;
    if (nth == 1) down_worker(&t, 0, 1);
    else sl_pool_run(pool, down_worker, &t);
    memcpy(out, ws->acc, (size_t)H * sizeof(float));
    for (int th = 1; th < nth; th++) {
        const float *a = ws->acc + (size_t)th * acc_stride;
        for (int64_t c = 0; c < H; c++) out[c] += a[c];
    }
    return SL_OK;
}
