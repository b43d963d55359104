/*
 * bundle.c — neuron bundles and the fused one-token sparse MLP over them (see
 * bundle.h).
 *
 * The forward pass splits the active list into one contiguous share per thread. Each thread
 * walks its share in groups of 8 neurons: it dots the group's gate and up rows with x (the
 * sparse operator's row-group kernels, 8 rows per call), applies act(g) * u, and adds the
 * group's down_t rows scaled by those values into its own accumulator (one call); the caller
 * sums the accumulators. Every neuron's bytes are read once, front to back. While they read,
 * the kernels prefetch: the dots the gate/up rows two groups ahead, the down sum the down_t
 * rows of the next group. On Zen 4 at 1 thread, Q4_0 at 50% active (bench-op): the previous
 * schedule, groups of 4 with everything one group ahead, read 0.71-0.89 of dense bandwidth in
 * four runs, this one 0.81-0.90 in six (both before the Q4_0N scale prefetch fix); three
 * groups ahead was no better, and prefetching whole neurons from here instead of line by line
 * in the kernels was 2x worse. What it is not: the batched or masked operator (sparse_mlp.c).
 */
#include "sparse/bundle.h"

#include "format/quant.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "kernels/sparse_rows.h"
#include "sparse/mlp_weights.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

void sl_bundle_free(sl_neuron_bundle *b) {
    if (!b) return;
    sl_free_huge(b->data);
    memset(b, 0, sizeof(*b));
}

void sl_bundle_ws_free(sl_bundle_ws *ws) {
    if (!ws) return;
    sl_free_aligned(ws->xq);
    sl_free_aligned(ws->acc);
    memset(ws, 0, sizeof(*ws));
}

static bool type_ok(sl_type t) { return sl_type_traits_of(t) != NULL; }

/* The layout a bundle stores rows of type t in: Q4_0N / Q8_0N for Q4_0 / Q8_0 (every kernel
 * variant reads them: bundle_rows_avx512.c, bundle_rows_avx2.c, bundle_rows_ref.c), otherwise
 * the type itself. */
static sl_type stored_type(sl_type t) { return t == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0N : t == SL_TYPE_Q8_0 ? SL_TYPE_Q8_0N : t; }

static size_t stored_row_size(sl_type t, int64_t n) {
    return t == SL_TYPE_Q4_0N ? sl_q4_0n_row_size(n) : t == SL_TYPE_Q8_0N ? sl_q8_0n_row_size(n) : sl_type_row_size(t, n);
}

/* Copy row i of w into dst, re-laid out when the stored type differs from w's. */
static void copy_row(const sl_weight *w, sl_type stored, int64_t i, uint8_t *dst) {
    const uint8_t *src = (const uint8_t *)w->data + (size_t)i * w->row_bytes;
    if (stored == SL_TYPE_Q4_0N) sl_q4_0n_pack_row(src, w->cols, dst);
    else if (stored == SL_TYPE_Q8_0N) sl_q8_0n_pack_row(src, w->cols, dst);
    else memcpy(dst, src, w->row_bytes);
}

/* Copy gate/up ([I, H]) and the rows of down_t ([I, H], any type) neuron by neuron. */
static sl_status bundle_fill(sl_neuron_bundle *b, const sl_weight *gate, const sl_weight *up, const sl_weight *down_t,
                             bool with_gate, sl_error *err) {
    const int64_t I = up->rows, H = up->cols;
    const size_t rb_in_gu = sl_type_row_size(up->type, H), rb_in_d = sl_type_row_size(down_t->type, H);
    if (!rb_in_gu || !rb_in_d || rb_in_gu != up->row_bytes || rb_in_gu != gate->row_bytes || rb_in_d != down_t->row_bytes)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: rows of %lld elements do not fit the block size", (long long)H);
    const sl_type t_gu = stored_type(up->type), t_d = stored_type(down_t->type);
    const size_t rb_gu = stored_row_size(t_gu, H), rb_d = stored_row_size(t_d, H);
    const size_t off_up = with_gate ? align64(rb_gu) : 0, off_down = off_up + align64(rb_gu), stride = off_down + align64(rb_d);
    size_t bytes;
    if (sl_mul_overflow((size_t)I, stride, &bytes)) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: size overflows");
    uint8_t *data = sl_alloc_huge(bytes);
    if (!data) return sl_set_error(err, SL_ERR_NOMEM, "bundle: cannot allocate %zu bytes for %lld neurons", bytes, (long long)I);
    for (int64_t i = 0; i < I; i++) {
        uint8_t *n = data + (size_t)i * stride;
        if (with_gate) copy_row(gate, t_gu, i, n);
        copy_row(up, t_gu, i, n + off_up);
        copy_row(down_t, t_d, i, n + off_down);
    }
    *b = (sl_neuron_bundle){data, bytes, stride, off_up, off_down, rb_gu, rb_d, t_gu, t_d, up->type, H, I, with_gate};
    return SL_OK;
}

/* Shared argument checks: d is down ([H, I]) or, when transposed, down_t ([I, H]). */
static sl_status check_args(sl_neuron_bundle *b, const sl_weight *gate, const sl_weight *up, const sl_weight *d,
                            bool transposed, sl_error *err) {
    if (!b) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL bundle");
    memset(b, 0, sizeof(*b));
    if (!gate || !up || !d || !gate->data || !up->data || !d->data)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL weights");
    const int64_t I = up->rows, H = up->cols;
    const bool d_ok = transposed ? d->rows == I && d->cols == H : d->rows == H && d->cols == I;
    if (I < 1 || H < 1 || gate->rows != I || gate->cols != H || gate->type != up->type || !d_ok)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: gate/up must be [I, H] of one type and down [H, I] (down_t [I, H])");
    if (!type_ok(up->type) || !type_ok(d->type)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle: unsupported weight type");
    return SL_OK;
}

sl_status sl_bundle_init(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up,
                         const sl_weight *down, bool with_gate, sl_error *err) {
    sl_status st = check_args(b, gate, up, down, false, err);
    if (st) return st;
    const sl_type t_d = sl_mlp_down_t_type(down->type);
    const size_t dt_bytes = sl_mlp_down_t_bytes(down, t_d);
    if (!dt_bytes) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: rows of %lld elements do not fit the block size", (long long)up->cols);
    /* down_t is built contiguous first (the transposition writes whole rows), then scattered in */
    void *dt = sl_malloc_aligned(dt_bytes);
    if (!dt) return sl_set_error(err, SL_ERR_NOMEM, "bundle: cannot allocate %zu bytes for the transposed down", dt_bytes);
    sl_weight down_t;
    st = sl_mlp_transpose_down(pool, down, t_d, dt, dt_bytes, &down_t, err);
    if (!st) st = bundle_fill(b, gate, up, &down_t, with_gate, err);
    sl_free_aligned(dt);
    return st;
}

sl_status sl_bundle_init_t(sl_neuron_bundle *b, const sl_weight *gate, const sl_weight *up, const sl_weight *down_t,
                           bool with_gate, sl_error *err) {
    sl_status st = check_args(b, gate, up, down_t, true, err);
    return st ? st : bundle_fill(b, gate, up, down_t, with_gate, err);
}

/* ---- forward ----------------------------------------------------------------------------------- */

typedef struct bundle_task {
    const sl_neuron_bundle *b;   /* the layer */
    sl_sp_kernel_set k;          /* row-group kernels */
    sl_activation act;           /* activation */
    const void *xq;              /* prepared x */
    const int32_t *idx;          /* [n] active neurons */
    int32_t n;                   /* how many */
    const float *gate_pre;       /* [I] gate pre-activations, or NULL (dot the gate rows) */
    float *acc;                  /* [nth, acc_stride] accumulators (thread 0 may be out itself) */
    size_t acc_stride;           /* floats between accumulators */
} bundle_task;

/* Neurons per group: their gate/up rows go through dot calls of at most SP_MAX_ROWS rows, their
 * down_t rows through one axpy call. */
#ifndef BUNDLE_GROUP
#define BUNDLE_GROUP 8
#endif
_Static_assert(BUNDLE_GROUP >= 1 && BUNDLE_GROUP <= SP_MAX_ROWS, "a group's down rows go through one axpy call");
#define GU_MAX (2 * BUNDLE_GROUP)
#ifndef BUNDLE_PF
#define BUNDLE_PF 2
#endif
#ifndef BUNDLE_PF_D
#define BUNDLE_PF_D 1
#endif

/* The gate/up rows of neurons idx[k0 .. k0 + np) into rows; returns how many. */
static int gu_rows(const bundle_task *t, int64_t k0, int np, const uint8_t **rows) {
    const sl_neuron_bundle *b = t->b;
    int nr = 0;
    for (int j = 0; j < np; j++) {
        const uint8_t *base = b->data + (size_t)t->idx[k0 + j] * b->stride;
        if (!t->gate_pre) rows[nr++] = base;
        rows[nr++] = base + b->off_up;
    }
    return nr;
}

static void bundle_worker(void *arg, int ith, int nth) {
    const bundle_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const int64_t H = b->H;
    float *acc = t->acc + (size_t)ith * t->acc_stride;
    memset(acc, 0, (size_t)H * sizeof(float));
    /* shares in whole groups, so every group holds the same neurons at any thread count: the
     * bundle layouts round a group's down coefficients together (sparse_mlp.h), and results
     * must not depend on -t beyond the order of float sums */
    const int G = BUNDLE_GROUP;
    long long s, e;
    sl_split_range((t->n + G - 1) / G, ith, nth, &s, &e);
    s *= G;
    e = e * G < t->n ? e * G : t->n;
    const uint8_t *gu[GU_MAX], *pf[GU_MAX], *drows[BUNDLE_GROUP], *dnext[BUNDLE_GROUP];
    float r[GU_MAX], h[BUNDLE_GROUP];
    for (int64_t k = s; k < e; k += G) {
        const int np = e - k < G ? (int)(e - k) : G;
        const int nr = gu_rows(t, k, np, gu);
        /* the gate/up rows BUNDLE_PF groups ahead: prefetched while these are dotted */
        const int64_t kp = k + (int64_t)BUNDLE_PF * G;
        const int npf = kp < e ? gu_rows(t, kp, e - kp < G ? (int)(e - kp) : G, pf) : 0;
        for (int c = 0; c < nr; c += SP_MAX_ROWS) {
            const int cn = nr - c < SP_MAX_ROWS ? nr - c : SP_MAX_ROWS;
            const int pn = npf - c < 0 ? 0 : npf - c < SP_MAX_ROWS ? npf - c : SP_MAX_ROWS;
            t->k.dot(b->t_gu, gu + c, cn, t->xq, H, r + c, pf + c, pn);
        }
        for (int j = 0; j < np; j++) {
            const int32_t i = t->idx[k + j];
            const float g = t->gate_pre ? t->gate_pre[i] : r[2 * j], u = t->gate_pre ? r[j] : r[2 * j + 1];
            h[j] = sl_activate(t->act, g) * u;
            drows[j] = b->data + (size_t)i * b->stride + b->off_down;
        }
        const int64_t k1 = k + (int64_t)BUNDLE_PF_D * G; /* the down rows BUNDLE_PF_D groups ahead */
        const int nn = k1 < e ? (e - k1 < G ? (int)(e - k1) : G) : 0;
        for (int j = 0; j < nn; j++) dnext[j] = b->data + (size_t)t->idx[k1 + j] * b->stride + b->off_down;
        t->k.axpy(b->t_d, drows, h, np, acc, H, dnext, nn);
    }
}

static sl_status check_call(const sl_neuron_bundle *b, sl_activation act, const float *x, const int32_t *idx, int32_t n,
                            const float *gate_pre, const float *out, sl_error *err) {
    if (!b || !b->data || !x || !out || (n > 0 && !idx) || n < 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle forward: NULL argument or negative count");
    if (!sl_activation_supported(act))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle forward: unsupported activation %d", (int)act);
    if (!b->has_gate && !gate_pre)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle forward: the bundle has no gate rows: gate_pre is required");
    for (int32_t k = 0; k < n; k++)
        if (idx[k] < 0 || idx[k] >= b->I)
            return sl_set_error(err, SL_ERR_RANGE, "bundle forward: neuron %d outside [0, %lld)", idx[k], (long long)b->I);
    return SL_OK;
}

sl_status sl_bundle_forward(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                            const int32_t *idx, int32_t n, const float *gate_pre, float *out, sl_error *err) {
    sl_status st = check_call(b, act, x, idx, n, gate_pre, out, err);
    if (st) return st;
    if (!ws) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle forward: NULL workspace");
    const int64_t H = b->H;
    if (n == 0) {
        memset(out, 0, (size_t)H * sizeof(float));
        return SL_OK;
    }
    bundle_task t;
    memset(&t, 0, sizeof(t));
    sl_sp_kernels(&t.k);
    /* few neurons: a dispatch would cost more than it spreads */
    int nth = pool ? sl_pool_n_threads(pool) : 1;
    if (n < 2 * SP_MAX_ROWS) nth = 1;
    const size_t xq_bytes = t.k.x_size(b->t_gu, H), acc_stride = (size_t)((H + 15) & ~(int64_t)15);
    size_t acc_bytes;
    if (sl_mul_overflow((size_t)nth * acc_stride, sizeof(float), &acc_bytes))
        return sl_set_error(err, SL_ERR_NOMEM, "bundle forward: scratch size overflows");
    if (ws->xq_bytes < xq_bytes) {
        sl_free_aligned(ws->xq);
        ws->xq_bytes = 0;
        if (!(ws->xq = sl_malloc_aligned(xq_bytes))) return sl_set_error(err, SL_ERR_NOMEM, "bundle forward: no memory for x");
        ws->xq_bytes = xq_bytes;
    }
    if (ws->acc_bytes < acc_bytes) {
        sl_free_aligned(ws->acc);
        ws->acc_bytes = 0;
        if (!(ws->acc = sl_malloc_aligned(acc_bytes)))
            return sl_set_error(err, SL_ERR_NOMEM, "bundle forward: no memory for accumulators");
        ws->acc_bytes = acc_bytes;
    }
    t.k.x_prep(b->t_gu, x, H, ws->xq);
    t.b = b;
    t.act = act;
    t.xq = ws->xq;
    t.idx = idx;
    t.n = n;
    t.gate_pre = gate_pre;
    t.acc = ws->acc;
    t.acc_stride = acc_stride;
    if (nth == 1) bundle_worker(&t, 0, 1);
    else sl_pool_run(pool, bundle_worker, &t);
    memcpy(out, ws->acc, (size_t)H * sizeof(float));
    for (int th = 1; th < nth; th++) {
        const float *a = ws->acc + (size_t)th * acc_stride;
        for (int64_t c = 0; c < H; c++) out[c] += a[c];
    }
    return SL_OK;
}

sl_status sl_bundle_forward_ref(const sl_neuron_bundle *b, sl_activation act, const float *x, const int32_t *idx,
                                int32_t n, const float *gate_pre, float *out, sl_error *err) {
    sl_status st = check_call(b, act, x, idx, n, gate_pre, out, err);
    if (st) return st;
    const int64_t H = b->H;
    float *row = malloc((size_t)H * sizeof(float));
    double *acc = calloc((size_t)H, sizeof(double));
    if (!row || !acc) {
        free(row);
        free(acc);
        return sl_set_error(err, SL_ERR_NOMEM, "bundle reference: no memory");
    }
    for (int32_t k = 0; k < n; k++) {
        const uint8_t *base = b->data + (size_t)idx[k] * b->stride;
        double g = 0.0, u = 0.0;
        if (gate_pre) {
            g = gate_pre[idx[k]];
        } else {
            sl_dequantize_row_ref(b->t_gu, base, row, H);
            for (int64_t c = 0; c < H; c++) g += (double)row[c] * x[c];
        }
        sl_dequantize_row_ref(b->t_gu, base + b->off_up, row, H);
        for (int64_t c = 0; c < H; c++) u += (double)row[c] * x[c];
        const double hv = (double)sl_activate(act, (float)g) * u;
        sl_dequantize_row_ref(b->t_d, base + b->off_down, row, H);
        for (int64_t c = 0; c < H; c++) acc[c] += hv * row[c];
    }
    for (int64_t c = 0; c < H; c++) out[c] = (float)acc[c];
    free(row);
    free(acc);
    return SL_OK;
}
