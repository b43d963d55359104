/*
 * bundle_mlp.c — the passes over neuron bundles (bundle_mlp.h).
 *
 * A one-token pass splits its list into one contiguous share per thread, in whole groups of 8
 * entries (so the int8 rounding of a group's down rows, per call, never depends on the thread
 * count). Each thread walks its share group by group: it dots the group's gate and up rows with
 * x (the row-group kernels, 8 rows per call), applies act(g) * u, and adds the group's down_t rows
 * scaled by those values into its own accumulator (one call); the caller sums the accumulators.
 * While they read, the kernels prefetch: the dots the gate/up rows two groups ahead, the down sum
 * the down_t rows of the next group. On Zen 4 at 1 thread, Q4_0 at 50% active (bench-op): groups
 * of 4 with everything one group ahead read 0.71-0.89 of dense bandwidth in four runs, this
 * schedule 0.81-0.90 in six; three groups ahead was no better, and prefetching whole neurons
 * from here instead of line by line in the kernels was 2x worse.
 * What it is not: the kernels (src/kernels/sparse_rows*.c, bundle_rows_*.c, matmul_bundle.c).
 */
#include "model/bundle_mlp.h"

#include "format/quant.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "kernels/sparse_rows.h"
#include "util/util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
#ifndef BUNDLE_LIN_AHEAD
#define BUNDLE_LIN_AHEAD 16
#endif
#define BATCH_MAX 64

void sl_bundle_ws_free(sl_bundle_ws *ws) {
    if (!ws) return;
    sl_free_aligned(ws->xq);
    sl_free_aligned(ws->acc);
    sl_free_aligned(ws->list);
    sl_free_aligned(ws->all);
    memset(ws, 0, sizeof(*ws));
}

static bool grow(void **p, size_t *cap, size_t bytes) {
    if (*cap >= bytes) return true;
    sl_free_aligned(*p);
    *cap = 0;
    if (!(*p = sl_malloc_aligned(bytes))) return false;
    *cap = bytes;
    return true;
}

enum { PASS_FUSED, PASS_GU, PASS_DOWN };

typedef struct pass_task {
    const sl_neuron_bundle *b;   /* the layer */
    sl_sp_kernel_set k;          /* row-group kernels */
    int mode;                    /* PASS_* */
    sl_activation act;           /* FUSED */
    const void *xq;              /* prepared x (FUSED, GU) */
    const int32_t *idx;          /* the list, or NULL: neurons 0..n-1 */
    int32_t n;                   /* its length */
    bool gate_rows, up_rows;     /* which rows the dots read */
    const float *gate_pre;       /* [I] gate pre-activations (FUSED without gate rows) */
    float *g_out, *u_out;        /* [n] products per list entry, or NULL */
    const float *coef;           /* DOWN: [n] coefficients */
    float min_abs_h;             /* FUSED: smaller |h| skips the down row */
    float *acc;                  /* [nth, acc_stride] accumulators */
    size_t acc_stride;           /* floats between accumulators */
    _Atomic int64_t n_down;      /* down rows read */
} pass_task;

static inline int32_t neuron(const pass_task *t, int64_t k) { return t->idx ? t->idx[k] : (int32_t)k; }

/* Runs: the stretches of the list whose down rows are summed in one call. Exact columns
 * (Q4_0C / Q8_0C): the entries of one block column that follow each other (at most 32, the list
 * being distinct), so their coefficients are quantized together as the dense path quantizes that
 * block; other layouts: groups of BUNDLE_GROUP entries. A run starts at k in either case without
 * looking further back than k - 1, so the runs — hence the results — do not depend on how the
 * list is shared among threads. */
static inline bool run_starts(const pass_task *t, bool col, int64_t k) {
    if (k == 0) return true;
    return col ? neuron(t, k) / 32 != neuron(t, k - 1) / 32 : k % BUNDLE_GROUP == 0;
}

/* The end of the run starting at k (share end e). */
static inline int64_t run_end(const pass_task *t, bool col, int64_t k, int64_t e) {
    int64_t r = k + 1;
    while (r < e && !run_starts(t, col, r)) r++;
    return r;
}

/* The gate/up rows the dots read for entries [k0, k0 + np); returns how many. */
static int gu_rows(const pass_task *t, int64_t k0, int np, const uint8_t **rows) {
    const sl_neuron_bundle *b = t->b;
    int nr = 0;
    for (int j = 0; j < np; j++) {
        const uint8_t *base = b->data + (size_t)neuron(t, k0 + j) * b->stride;
        if (t->gate_rows) rows[nr++] = base;
        if (t->up_rows) rows[nr++] = base + b->off_up;
    }
    return nr;
}

/* The down rows of the run at k1 (up to max of them), for prefetching. */
static int down_rows_at(const pass_task *t, bool col, int64_t k1, int64_t e, int max, const uint8_t **rows) {
    int nn = 0;
    if (k1 >= e) return 0;
    const int64_t r1 = run_end(t, col, k1, e);
    for (int64_t k = k1; k < r1 && nn < max; k++) rows[nn++] = t->b->data + (size_t)neuron(t, k) * t->b->stride + t->b->off_down;
    return nn;
}

static void pass_worker(void *arg, int ith, int nth) {
    pass_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const int64_t H = b->H;
    const bool col = sl_is_col_type(b->t_d);
    float *acc = t->mode == PASS_GU ? NULL : t->acc + (size_t)ith * t->acc_stride;
    if (acc) memset(acc, 0, (size_t)H * sizeof(float));
    const int G = BUNDLE_GROUP, per = (t->gate_rows ? 1 : 0) + (t->up_rows ? 1 : 0);
    /* an even share of the list, moved to run boundaries */
    long long s, e;
    sl_split_range(t->n, ith, nth, &s, &e);
    while (s < t->n && !run_starts(t, col, s)) s++;
    while (e < t->n && !run_starts(t, col, e)) e++;
    const uint8_t *gu[GU_MAX], *pf[GU_MAX], *drows[SP_COL_MAX_ROWS], *dnext[SP_COL_MAX_ROWS];
    float r[GU_MAX], h[SP_COL_MAX_ROWS];
    int8_t kq[SP_COL_MAX_ROWS];
    int64_t n_down = 0;
    /* The whole layer in order (the dense pass): the share is one contiguous stretch of memory, so
     * the kernels prefetch it in address order instead of row by row: from BUNDLE_LIN_AHEAD neurons
     * ahead of each run's start, in pieces the size of the rows they read (a dot call covers its
     * pieces line by line, as a col call does). bench_bundle BENCH_AB=1 (1 thread, CPU time, loaded
     * machine, 3 rounds of 11): dense through the bundles 0.58-0.61x the Q4_0x4 matrices' speed with
     * the rows' own prefetch, 0.62-0.69x with this; 8 or 24 neurons ahead no better than none; whole
     * pieces prefetched in one burst from here 0.49-0.62x. */
    const bool lin = !t->idx && t->mode == PASS_FUSED && t->gate_rows && t->up_rows && col && sl_is_bundle_layout(b->t_gu);
    const uint8_t *lp = NULL, *const lend = b->data + (size_t)e * b->stride;
    for (int64_t k = s; k < e;) {
        const int64_t ke = run_end(t, col, k, e);
        int nd = 0;
        if (lin) {
            const uint8_t *want = b->data + (size_t)(k + BUNDLE_LIN_AHEAD < e ? k + BUNDLE_LIN_AHEAD : e) * b->stride;
            if (lp < want) lp = want;
        }
        for (int64_t c0 = k; c0 < ke; c0 += G) { /* the run in chunks of G entries: dots, then h */
            const int np = ke - c0 < G ? (int)(ke - c0) : G;
            if (t->mode != PASS_DOWN && per > 0) {
                const int nr = gu_rows(t, c0, np, gu);
                /* the gate/up rows BUNDLE_PF chunks ahead: prefetched while these are dotted */
                const int64_t kp = c0 + (int64_t)BUNDLE_PF * G;
                int npf = 0;
                if (lin)
                    for (; npf < nr && lp + b->rb_gu <= lend; lp += b->rb_gu) pf[npf++] = lp;
                else if (kp < e)
                    npf = gu_rows(t, kp, e - kp < G ? (int)(e - kp) : G, pf);
                for (int c = 0; c < nr; c += SP_MAX_ROWS) {
                    const int cn = nr - c < SP_MAX_ROWS ? nr - c : SP_MAX_ROWS;
                    const int pn = npf - c < 0 ? 0 : npf - c < SP_MAX_ROWS ? npf - c : SP_MAX_ROWS;
                    t->k.dot(b->t_gu, gu + c, cn, t->xq, H, r + c, pf + c, pn);
                }
            }
            for (int j = 0; j < np; j++) {
                const int32_t i = neuron(t, c0 + j);
                float hv;
                if (t->mode == PASS_DOWN) {
                    hv = t->coef[c0 + j];
                } else {
                    const float g = t->gate_rows ? r[per * j] : t->gate_pre ? t->gate_pre[i] : 0.0f;
                    const float u = t->up_rows ? r[per * j + per - 1] : 0.0f;
                    if (t->g_out) t->g_out[c0 + j] = g;
                    if (t->u_out) t->u_out[c0 + j] = u;
                    if (t->mode == PASS_GU) continue;
                    hv = sl_activate(t->act, g) * u;
                    if (t->min_abs_h > 0.0f && !(hv >= t->min_abs_h || hv <= -t->min_abs_h)) continue;
                }
                h[nd] = hv;
                drows[nd++] = b->data + (size_t)i * b->stride + b->off_down;
            }
        }
        if (t->mode != PASS_GU && nd) {
            /* the next run's down rows are fetched while these are summed */
            int nn = 0;
            if (lin)
                for (; nn < nd && lp + b->rb_d <= lend; lp += b->rb_d) dnext[nn++] = lp;
            else
                nn = down_rows_at(t, col, ke, e, col ? SP_COL_MAX_ROWS : G, dnext);
            if (col) {
                const float dx = sl_col_quantize_coef(h, nd, kq);
                t->k.col_axpy(b->t_d, drows, kq, nd, dx, b->dscale + (size_t)(neuron(t, k) / 32) * (size_t)H, acc, H, dnext, nn);
            } else {
                t->k.axpy(b->t_d, drows, h, nd, acc, H, dnext, nn);
            }
            n_down += nd;
        }
        k = ke;
    }
    atomic_fetch_add_explicit(&t->n_down, n_down, memory_order_relaxed);
}

static sl_status check_list(const sl_neuron_bundle *b, const int32_t *idx, int32_t n, sl_error *err) {
    if (n < 0 || (!idx && n != b->I && n != 0))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: %d entries without a list (the whole layer is %lld)", n, (long long)b->I);
    if (idx)
        for (int32_t k = 0; k < n; k++)
            if (idx[k] < 0 || idx[k] >= b->I)
                return sl_set_error(err, SL_ERR_RANGE, "bundle: neuron %d outside [0, %lld)", idx[k], (long long)b->I);
    return SL_OK;
}

/* Thread count, scratch and x preparation shared by the one-token passes; runs the task. */
static sl_status run_pass(pass_task *t, sl_pool *pool, sl_bundle_ws *ws, const float *x, float *out, sl_error *err) {
    const sl_neuron_bundle *b = t->b;
    const int64_t H = b->H;
    sl_sp_kernels(&t->k);
    int nth = pool ? sl_pool_n_threads(pool) : 1;
    if (t->n < 2 * SP_MAX_ROWS) nth = 1; /* few neurons: a dispatch would cost more than it spreads */
    t->acc_stride = (size_t)((H + 15) & ~(int64_t)15);
    if (t->mode != PASS_DOWN) {
        if (!grow(&ws->xq, &ws->xq_bytes, t->k.x_size(b->t_gu, H))) return sl_set_error(err, SL_ERR_NOMEM, "bundle: no memory for x");
        t->k.x_prep(b->t_gu, x, H, ws->xq);
        t->xq = ws->xq;
    }
    if (t->mode != PASS_GU) {
        size_t acc_bytes;
        if (sl_mul_overflow((size_t)nth * t->acc_stride, sizeof(float), &acc_bytes) || !grow((void **)&ws->acc, &ws->acc_bytes, acc_bytes))
            return sl_set_error(err, SL_ERR_NOMEM, "bundle: no memory for accumulators");
        t->acc = ws->acc;
    }
    if (t->n > 0) {
        if (nth == 1) pass_worker(t, 0, 1);
        else sl_pool_run(pool, pass_worker, t);
    }
    if (t->mode == PASS_GU) return SL_OK;
    if (t->n == 0) {
        memset(out, 0, (size_t)H * sizeof(float));
        return SL_OK;
    }
    memcpy(out, ws->acc, (size_t)H * sizeof(float));
    for (int th = 1; th < nth; th++) {
        const float *a = ws->acc + (size_t)th * t->acc_stride;
        for (int64_t c = 0; c < H; c++) out[c] += a[c];
    }
    return SL_OK;
}

static sl_status check_bundle(const sl_neuron_bundle *b, sl_bundle_ws *ws, sl_error *err) {
    if (!b || !b->data || !ws) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL bundle or workspace");
    return SL_OK;
}

sl_status sl_bundle_forward(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *x,
                            const int32_t *idx, int32_t n, sl_bundle_opts *opts, float *out, sl_error *err) {
    sl_status st = check_bundle(b, ws, err);
    if (st) return st;
    if (!x || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle forward: NULL input or output");
    if (!sl_activation_supported(act)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle forward: unsupported activation %d", (int)act);
    if ((st = check_list(b, idx, n, err))) return st;
    pass_task t;
    memset(&t, 0, sizeof(t));
    t.b = b;
    t.mode = PASS_FUSED;
    t.act = act;
    t.idx = idx;
    t.n = n;
    t.gate_pre = opts ? opts->gate_pre : NULL;
    t.gate_rows = !t.gate_pre;
    t.up_rows = true;
    t.g_out = opts ? opts->g_out : NULL;
    t.u_out = opts ? opts->u_out : NULL;
    t.min_abs_h = opts ? opts->min_abs_h : 0.0f;
    st = run_pass(&t, pool, ws, x, out, err);
    if (opts) opts->n_down = atomic_load(&t.n_down);
    return st;
}

sl_status sl_bundle_gate_up(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const float *x, const int32_t *idx,
                            int32_t n, float *g, float *u, sl_error *err) {
    sl_status st = check_bundle(b, ws, err);
    if (st) return st;
    if (!x) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle gate/up: NULL input");
    if ((st = check_list(b, idx, n, err))) return st;
    pass_task t;
    memset(&t, 0, sizeof(t));
    t.b = b;
    t.mode = PASS_GU;
    t.idx = idx;
    t.n = n;
    t.gate_rows = g != NULL;
    t.up_rows = u != NULL;
    t.g_out = g;
    t.u_out = u;
    return run_pass(&t, pool, ws, x, NULL, err);
}

sl_status sl_bundle_down(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, const int32_t *idx, const float *coef,
                         int32_t n, float *out, sl_error *err) {
    sl_status st = check_bundle(b, ws, err);
    if (st) return st;
    if (!out || (n > 0 && !coef)) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle down: NULL coefficients or output");
    if ((st = check_list(b, idx, n, err))) return st;
    pass_task t;
    memset(&t, 0, sizeof(t));
    t.b = b;
    t.mode = PASS_DOWN;
    t.idx = idx;
    t.n = n;
    t.coef = coef;
    return run_pass(&t, pool, ws, NULL, out, err);
}

/* ---- batches: the union of the tokens' lists ---------------------------------------------------- */

typedef struct batch_task {
    const sl_neuron_bundle *b;   /* the layer */
    sl_sp_kernel_set k;          /* row-group kernels */
    sl_activation act;           /* activation */
    int B;                       /* tokens */
    const uint8_t *xq;           /* B prepared inputs, xq_stride bytes apart */
    size_t xq_stride;            /* bytes per prepared input */
    const int32_t *uni;          /* [nu] the union, ascending */
    const uint64_t *who;         /* [nu] bit t: token t listed the neuron */
    int32_t nu;                  /* union size */
    const float *gate_pre;       /* [B, I] or NULL */
    float *acc;                  /* [nth, B, acc_stride] */
    size_t acc_stride;           /* floats between accumulators */
} batch_task;

static void batch_worker(void *arg, int ith, int nth) {
    const batch_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const int64_t H = b->H;
    const int G = BUNDLE_GROUP;
    const bool col = sl_is_col_type(b->t_d);
    float *acc = t->acc + (size_t)ith * (size_t)t->B * t->acc_stride;
    for (int tk = 0; tk < t->B; tk++) memset(acc + (size_t)tk * t->acc_stride, 0, (size_t)H * sizeof(float));
    /* runs over the union: block columns for exact columns, else groups of G (see pass_worker) */
#define B_STARTS(k) ((k) == 0 || (col ? t->uni[k] / 32 != t->uni[(k) - 1] / 32 : (k) % G == 0))
    long long s, e;
    sl_split_range(t->nu, ith, nth, &s, &e);
    while (s < t->nu && !B_STARTS(s)) s++;
    while (e < t->nu && !B_STARTS(e)) e++;
    const bool with_gate = !t->gate_pre;
    const uint8_t *gu[GU_MAX], *pf[GU_MAX], *drows[SP_COL_MAX_ROWS], *dnext[SP_COL_MAX_ROWS];
    float r[GU_MAX], h[SP_COL_MAX_ROWS];
    int8_t kq[SP_COL_MAX_ROWS];
    int32_t sel[SP_COL_MAX_ROWS];
    for (int64_t k = s; k < e;) {
        int64_t ke = k + 1;
        while (ke < e && !B_STARTS(ke)) ke++;
        /* the next run's down rows and the gate/up rows ahead, fetched while the first token reads these */
        int nn = 0;
        for (int64_t j = ke; j < e && (j == ke || !B_STARTS(j)) && nn < SP_COL_MAX_ROWS; j++)
            dnext[nn++] = b->data + (size_t)t->uni[j] * b->stride + b->off_down;
        bool first = true;
        for (int tk = 0; tk < t->B; tk++) {
            int ns = 0;
            for (int64_t j = k; j < ke; j++)
                if (t->who[j] >> tk & 1) sel[ns++] = t->uni[j];
            if (!ns) continue;
            for (int c0 = 0; c0 < ns; c0 += G) {
                const int np = ns - c0 < G ? ns - c0 : G;
                int nr = 0, npf = 0;
                for (int j = 0; j < np; j++) {
                    const uint8_t *base = b->data + (size_t)sel[c0 + j] * b->stride;
                    if (with_gate) gu[nr++] = base;
                    gu[nr++] = base + b->off_up;
                }
                if (first) /* rows of the entries after this run (up to G), once per run */
                    for (int64_t j = ke; j < e && j < ke + G; j++) {
                        const uint8_t *base = b->data + (size_t)t->uni[j] * b->stride;
                        if (with_gate) pf[npf++] = base;
                        pf[npf++] = base + b->off_up;
                    }
                for (int c = 0; c < nr; c += SP_MAX_ROWS) {
                    const int cn = nr - c < SP_MAX_ROWS ? nr - c : SP_MAX_ROWS;
                    const int pn = npf - c < 0 ? 0 : npf - c < SP_MAX_ROWS ? npf - c : SP_MAX_ROWS;
                    t->k.dot(b->t_gu, gu + c, cn, t->xq + (size_t)tk * t->xq_stride, H, r + c, pf + c, pn);
                }
                for (int j = 0; j < np; j++) {
                    const int32_t i = sel[c0 + j];
                    const float g = with_gate ? r[2 * j] : t->gate_pre[(size_t)tk * b->I + i], u = with_gate ? r[2 * j + 1] : r[j];
                    h[c0 + j] = sl_activate(t->act, g) * u;
                    drows[c0 + j] = b->data + (size_t)i * b->stride + b->off_down;
                }
                if (!col) { /* groups of G: one call per group, as the one-token pass */
                    t->k.axpy(b->t_d, drows + c0, h + c0, np, acc + (size_t)tk * t->acc_stride, H, dnext, first ? nn : 0);
                }
            }
            if (col) {
                const float dx = sl_col_quantize_coef(h, ns, kq);
                t->k.col_axpy(b->t_d, drows, kq, ns, dx, b->dscale + (size_t)(t->uni[k] / 32) * (size_t)H, acc + (size_t)tk * t->acc_stride, H,
                              dnext, first ? nn : 0);
            }
            first = false;
        }
        k = ke;
    }
#undef B_STARTS
}

sl_status sl_bundle_forward_batch(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *X,
                                  int B, const int32_t *const *lists, const int32_t *n, const float *gate_pre, float *out,
                                  int64_t *n_union, sl_error *err) {
    sl_status st = check_bundle(b, ws, err);
    if (st) return st;
    if (!X || !out || !lists || !n) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle batch: NULL argument");
    if (B < 1 || B > BATCH_MAX) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle batch: %d tokens (1..%d)", B, BATCH_MAX);
    if (!sl_activation_supported(act)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle batch: unsupported activation %d", (int)act);
    const int64_t H = b->H, I = b->I;
    /* membership bits, then the union in ascending order: the list scratch holds [I] uint64 bits
     * followed by the [I] union */
    if (!grow((void **)&ws->list, &ws->list_bytes, (size_t)I * (sizeof(uint64_t) + sizeof(int32_t))))
        return sl_set_error(err, SL_ERR_NOMEM, "bundle batch: no memory for the union");
    uint64_t *who = (uint64_t *)ws->list;
    int32_t *uni = (int32_t *)(who + I);
    memset(who, 0, (size_t)I * sizeof(uint64_t));
    for (int tk = 0; tk < B; tk++) {
        if (n[tk] < 0 || n[tk] > I || (n[tk] > 0 && !lists[tk]))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle batch: token %d has a bad list (%d entries)", tk, n[tk]);
        for (int32_t k = 0; k < n[tk]; k++) {
            const int32_t i = lists[tk][k];
            if (i < 0 || i >= I) return sl_set_error(err, SL_ERR_RANGE, "bundle batch: neuron %d outside [0, %lld)", i, (long long)I);
            who[i] |= (uint64_t)1 << tk;
        }
    }
    int32_t nu = 0;
    for (int64_t i = 0; i < I; i++)
        if (who[i]) {
            who[nu] = who[i]; /* compacted in place: nu <= i */
            uni[nu++] = (int32_t)i;
        }
    if (n_union) *n_union = nu;
    batch_task t;
    memset(&t, 0, sizeof(t));
    t.b = b;
    sl_sp_kernels(&t.k);
    t.act = act;
    t.B = B;
    t.uni = uni;
    t.who = who;
    t.nu = nu;
    t.gate_pre = gate_pre;
    t.acc_stride = (size_t)((H + 15) & ~(int64_t)15);
    int nth = pool ? sl_pool_n_threads(pool) : 1;
    if (nu < 2 * SP_MAX_ROWS) nth = 1;
    t.xq_stride = (t.k.x_size(b->t_gu, H) + 63) & ~(size_t)63;
    size_t acc_bytes;
    if (!grow(&ws->xq, &ws->xq_bytes, t.xq_stride * (size_t)B) ||
        sl_mul_overflow((size_t)nth * (size_t)B * t.acc_stride, sizeof(float), &acc_bytes) ||
        !grow((void **)&ws->acc, &ws->acc_bytes, acc_bytes))
        return sl_set_error(err, SL_ERR_NOMEM, "bundle batch: no memory for scratch");
    for (int tk = 0; tk < B; tk++) t.k.x_prep(b->t_gu, X + (size_t)tk * H, H, (uint8_t *)ws->xq + (size_t)tk * t.xq_stride);
    t.xq = ws->xq;
    t.acc = ws->acc;
    if (nth == 1) batch_worker(&t, 0, 1);
    else sl_pool_run(pool, batch_worker, &t);
    for (int tk = 0; tk < B; tk++) {
        float *o = out + (size_t)tk * H;
        memcpy(o, ws->acc + (size_t)tk * t.acc_stride, (size_t)H * sizeof(float));
        for (int th = 1; th < nth; th++) {
            const float *a = ws->acc + ((size_t)th * (size_t)B + (size_t)tk) * t.acc_stride;
            for (int64_t c = 0; c < H; c++) o[c] += a[c];
        }
    }
    return SL_OK;
}

/* ---- every neuron ------------------------------------------------------------------------------ */

sl_status sl_bundle_dense(const sl_neuron_bundle *b, sl_pool *pool, sl_bundle_ws *ws, sl_activation act, const float *X, int B,
                          float *hb, float *hb2, const sl_bundle_dense_opts *opts, float *out, sl_error *err) {
    sl_status st = check_bundle(b, ws, err);
    if (st) return st;
    const sl_bundle_dense_opts o = opts ? *opts : (sl_bundle_dense_opts){0};
    if (!X || !out || B < 1 || (B > 1 && (!hb || !hb2)) || (o.hook && !hb) || (o.lists && !o.n))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle dense: NULL argument or no tokens");
    const int64_t I = b->I, H = b->H;
    if (B == 1 && !o.gate_pre && !o.lists) {
        sl_bundle_opts fo = {.g_out = o.hook ? hb : NULL};
        st = sl_bundle_forward(b, pool, ws, act, X, NULL, (int32_t)I, &fo, out, err);
        if (!st && o.hook) o.hook(o.hook_ud, hb, 1);
        return st;
    }
    if (B == 1) { /* one token with its list: the fused pass over it */
        sl_bundle_opts fo = {.gate_pre = o.gate_pre};
        return sl_bundle_forward(b, pool, ws, act, X, o.lists ? o.lists[0] : NULL, o.lists ? o.n[0] : (int32_t)I, &fo, out, err);
    }
    if (B <= SL_BUNDLE_UNION_MAX_B && !o.hook) {
        /* a decode-sized batch: the union pass reads each neuron once for all tokens, with the
         * one-token kernels (the matrix products below are tiled for prompts). bench -np 4 --bundled,
         * Llama-3.2-1B-shape Q4_0, 1 thread CPU time: MLP 74-82 -> 38-42 ms per token */
        const int32_t *lists[SL_BUNDLE_UNION_MAX_B];
        int32_t counts[SL_BUNDLE_UNION_MAX_B];
        if (!o.lists && ws->all_bytes < (size_t)I * sizeof(int32_t)) { /* 0, 1, ..., filled once per growth */
            if (!grow((void **)&ws->all, &ws->all_bytes, (size_t)I * sizeof(int32_t)))
                return sl_set_error(err, SL_ERR_NOMEM, "bundle dense: no memory for the neuron list");
            for (int64_t i = 0; i < I; i++) ws->all[i] = (int32_t)i;
        }
        for (int t = 0; t < B; t++) {
            lists[t] = o.lists ? o.lists[t] : ws->all;
            counts[t] = o.lists ? o.n[t] : (int32_t)I;
        }
        return sl_bundle_forward_batch(b, pool, ws, act, X, B, lists, counts, o.gate_pre, out, NULL, err);
    }
    const size_t n = (size_t)B * (size_t)I;
    if (o.gate_pre) memcpy(hb, o.gate_pre, n * sizeof(float));
    else sl_matmul_rows(pool, b->t_gu, b->data, b->stride, I, H, X, B, hb);
    if (o.hook) o.hook(o.hook_ud, hb, B);
    sl_matmul_rows(pool, b->t_gu, b->data + b->off_up, b->stride, I, H, X, B, hb2);
    for (size_t i = 0; i < n; i++) hb[i] = sl_activate(act, hb[i]) * hb2[i];
    const float *h = hb;
    if (o.lists) { /* each token keeps only its own neurons: their h moves to hb2, the rest is 0 */
        for (int t = 0; t < B; t++) {
            const float *ht = hb + (size_t)t * I;
            float *kt = hb2 + (size_t)t * I;
            if (o.n[t] < 0 || o.n[t] > I || (o.n[t] > 0 && !o.lists[t]))
                return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle dense: token %d has a bad list", t);
            memset(kt, 0, (size_t)I * sizeof(float));
            for (int32_t k = 0; k < o.n[t]; k++) {
                const int32_t i = o.lists[t][k];
                if (i < 0 || i >= I) return sl_set_error(err, SL_ERR_RANGE, "bundle dense: neuron %d outside [0, %lld)", i, (long long)I);
                kt[i] = ht[i];
            }
        }
        h = hb2;
    }
    if (sl_is_col_type(b->t_d)) sl_matmul_tc(pool, b->t_d, b->data + b->off_down, b->stride, b->dscale, I, H, h, B, out);
    else sl_matmul_t(pool, b->t_d, b->data + b->off_down, b->stride, I, H, h, B, out);
    return SL_OK;
}

/* ---- the definition ---------------------------------------------------------------------------- */

sl_status sl_bundle_forward_ref(const sl_neuron_bundle *b, sl_activation act, const float *x, const int32_t *idx, int32_t n,
                                const float *gate_pre, float *out, sl_error *err) {
    if (!b || !b->data || !x || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle reference: NULL argument");
    sl_status st = check_list(b, idx, n, err);
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
        const int32_t i = idx ? idx[k] : k;
        const uint8_t *base = b->data + (size_t)i * b->stride;
        double g = 0.0, u = 0.0;
        if (gate_pre) {
            g = gate_pre[i];
        } else {
            sl_dequantize_row_ref(b->t_gu, base, row, H);
            for (int64_t c = 0; c < H; c++) g += (double)row[c] * x[c];
        }
        sl_dequantize_row_ref(b->t_gu, base + b->off_up, row, H);
        for (int64_t c = 0; c < H; c++) u += (double)row[c] * x[c];
        const double hv = (double)sl_activate(act, (float)g) * u;
        if (sl_is_col_type(b->t_d)) sl_col_dequantize(b->t_d, base + b->off_down, b->dscale + (size_t)(i / 32) * (size_t)H, row, H);
        else sl_dequantize_row_ref(b->t_d, base + b->off_down, row, H);
        for (int64_t c = 0; c < H; c++) acc[c] += hv * row[c];
    }
    for (int64_t c = 0; c < H; c++) out[c] = (float)acc[c];
    free(row);
    free(acc);
    return SL_OK;
}
