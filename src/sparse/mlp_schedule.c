/*
 * mlp_schedule.c — the sparse operator's compute stage: the pool task that gathers the active
 * rows and runs the row-group kernels (per-row and union schedules, batched forms for B > 1),
 * the reduction of per-thread accumulators, the preparation of the inputs, and the mask
 * readers. What it is not: argument checking or scratch sizing (sparse_mlp.c).
 */
#include "sparse/mlp_internal.h"

#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the sparse compute task ---------------------------------------------------------------- */



/* Neurons per gate/up kernel call: 2 rows each, or 1 (up only) when the gate comes precomputed,
 * so that a call keeps the same number of row streams in flight (at most SP_MAX_ROWS). */
static int gu_group(const sparse_task *t) { return t->gate_pre ? 2 * t->g_gu : t->g_gu; }

/* Union schedule: the neuron of item k (a cache slot when the cache serves the call). */
static int32_t item_neuron(const sparse_task *t, int64_t k) { return t->cache ? t->cache->neuron_of[k] : t->rows[k]; }

static int64_t row_of(const int64_t *off, int64_t B, int64_t p) {
    int64_t lo = 0, hi = B - 1; /* last row whose start <= p */
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (off[mid] <= p) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Down rows waiting to be summed into one accumulator row, flushed in groups. */
typedef struct down_group {
    const uint8_t *rows[SP_MAX_ROWS]; /* down_t rows */
    float a[SP_MAX_ROWS];             /* their h */
    int n;                            /* rows held */
    int64_t b;                        /* batch row they belong to */
} down_group;

static void down_flush(const sparse_task *t, down_group *dg, float *acc, int64_t rs, const uint8_t *const *next, int nn) {
    if (dg->n) t->axpy_rows(t->t_d, dg->rows, dg->a, dg->n, acc + dg->b * rs, t->H, next, nn);
    dg->n = 0;
}

/* Per-row schedule: the slice [s, e) of the flat (row, neuron) list. */
static void per_row_slice(const sparse_task *t, int64_t s, int64_t e, float *acc, int64_t rs, thread_info *ti, int nth,
                          double *c1, double *c2) {
    const int64_t H = t->H;
    const int32_t *flat = t->flat;
    const int G = gu_group(t), GD = t->g_down;
    const float *gp = t->gate_pre; /* when given, only up rows are read */
    const uint8_t *nx[SP_MAX_ROWS];
    int64_t b = row_of(t->off, t->B, s);
    const int64_t b_first = b;
    /* gate + up, G neurons (2G rows, or G up rows) at a time while they belong to the same batch row */
    for (int64_t p = s; p < e;) {
        while (p >= t->off[b + 1]) b++;
        int np = 1;
        while (np < G && p + np < e && p + np < t->off[b + 1]) np++;
        const uint8_t *rows[SP_MAX_ROWS];
        int nn = 0, nr = 0;
        for (int j = 0; j < np; j++) {
            if (!gp) rows[nr++] = t->gate + (size_t)flat[p + j] * t->rb_gu;
            rows[nr++] = t->up + (size_t)flat[p + j] * t->rb_gu;
        }
        for (int64_t q = p + np + SP_PF_AHEAD * G; q < e && q < p + np + (SP_PF_AHEAD + 1) * G; q++) {
            if (!gp) nx[nn++] = t->gate + (size_t)flat[q] * t->rb_gu;
            nx[nn++] = t->up + (size_t)flat[q] * t->rb_gu;
        }
        float r[SP_MAX_ROWS];
        t->dot_rows(t->t_gu, rows, nr, t->xq + (size_t)b * t->xs, H, r, nx, nn);
        if (gp) {
            const float *gb = gp + (size_t)b * (size_t)t->I;
            for (int j = 0; j < np; j++) t->g[p + j] = gb[flat[p + j]], t->u[p + j] = r[j];
        } else {
            for (int j = 0; j < np; j++) t->g[p + j] = r[2 * j], t->u[p + j] = r[2 * j + 1];
        }
        p += np;
    }
    *c1 = t->timing ? sl_time_s() : 0.0;
    for (int64_t p = s; p < e; p++) t->g[p] = sl_activate(t->act, t->g[p]) * t->u[p];
    *c2 = t->timing ? sl_time_s() : 0.0;
    if (t->hd) { /* the caller runs the down projection densely */
        int64_t bb = b_first;
        for (int64_t p = s; p < e; p++) {
            while (p >= t->off[bb + 1]) bb++;
            t->hd[(size_t)bb * (size_t)t->I + (size_t)flat[p]] = t->g[p];
        }
        return;
    }
    ti->b0 = b_first;
    ti->b1 = b;
    if (!t->direct) memset(acc + b_first * rs, 0, (size_t)((b - b_first + 1) * rs) * sizeof(float));
    /* down: rows with h != 0 of one batch row, GD at a time */
    down_group dg = {.n = 0, .b = b_first};
    b = b_first;
    for (int64_t p = s; p < e; p++) {
        while (p >= t->off[b + 1]) b++;
        if (dg.n && b != dg.b) down_flush(t, &dg, acc, rs, NULL, 0);
        const float h = t->g[p];
        if (h == 0.0f) continue; /* exact zeros (ReLU) add nothing */
        dg.rows[dg.n] = t->down + (size_t)flat[p] * t->rb_d;
        dg.a[dg.n++] = h;
        dg.b = b;
        if (dg.n == GD) {
            int nn = 0;
            for (int64_t q = p + 1 + SP_PF_AHEAD * GD; q < e && nn < GD; q++) nx[nn++] = t->down + (size_t)flat[q] * t->rb_d;
            down_flush(t, &dg, acc, rs, nx, nn);
        }
    }
    down_flush(t, &dg, acc, rs, NULL, 0);
}

/* h of union items [s, e) into the dense [B, I] buffer (dense down projection). */
static void union_scatter(const sparse_task *t, int64_t s, int64_t e) {
    for (int64_t k = s; k < e; k++) {
        const size_t i = (size_t)item_neuron(t, k);
        for (int64_t b = 0; b < t->B; b++) t->hd[(size_t)b * (size_t)t->I + i] = t->g[(size_t)k * (size_t)t->B + (size_t)b];
    }
}

/* Union schedule with every row using every neuron (SL_MLP_UNION, B > 1): each group's rows are
 * read once and used for all B tokens by the batched kernels. tile: B * SP_MAX_ROWS floats. */
static void union_slice_batched(const sparse_task *t, int64_t s, int64_t e, float *acc, int64_t rs, thread_info *ti,
                                float *tile, int nth, double *c1, double *c2) {
    const int64_t H = t->H, B = t->B;
    const int G = gu_group(t), GD = t->g_down;
    const float *gp = t->gate_pre; /* when given, only up rows are read */
#define ITEM_ROW(k) ((size_t)(t->rows ? t->rows[(k)] : (int32_t)(k)))
    const uint8_t *nx[SP_MAX_ROWS], *rows[SP_MAX_ROWS];
    for (int64_t k = s; k < e; k += G) {
        const int np = e - k < G ? (int)(e - k) : G;
        if (t->cache)
            for (int j = 0; j < np; j++) sp_cache_run_job(t->cache, k + j);
        int nn = 0, nr = 0;
        for (int64_t q = k + np + SP_PF_AHEAD * G; q < e && q < k + np + (SP_PF_AHEAD + 1) * G; q++) {
            if (!gp) nx[nn++] = t->gate + ITEM_ROW(q) * t->rb_gu;
            nx[nn++] = t->up + ITEM_ROW(q) * t->rb_gu;
        }
        for (int j = 0; j < np; j++) {
            if (!gp) rows[nr++] = t->gate + ITEM_ROW(k + j) * t->rb_gu;
            rows[nr++] = t->up + ITEM_ROW(k + j) * t->rb_gu;
        }
        t->k.dot_batch(t->t_gu, rows, nr, t->xq, t->xs, (int)B, H, tile, nx, nn);
        for (int j = 0; j < np; j++) {
            const size_t i = gp ? (size_t)item_neuron(t, k + j) : 0;
            for (int64_t b = 0; b < B; b++) {
                const bool use = !t->sel || t->sel[(size_t)(k + j) * B + b]; /* per-row-shared: mask the pair */
                const float gv = gp ? gp[(size_t)b * (size_t)t->I + i] : tile[b * nr + 2 * j];
                const float uv = gp ? tile[b * nr + j] : tile[b * nr + 2 * j + 1];
                t->g[(size_t)(k + j) * B + b] = use ? gv : 0.0f;
                t->u[(size_t)(k + j) * B + b] = use ? uv : 0.0f;
            }
        }
    }
    *c1 = t->timing ? sl_time_s() : 0.0;
    for (int64_t q = s * B; q < e * B; q++) t->g[q] = sl_activate(t->act, t->g[q]) * t->u[q];
    *c2 = t->timing ? sl_time_s() : 0.0;
    if (t->hd) { /* the caller runs the down projection densely */
        union_scatter(t, s, e);
        return;
    }
    ti->b0 = 0;
    ti->b1 = B - 1;
    if (!t->direct) memset(acc, 0, (size_t)(B * rs) * sizeof(float));
    for (int64_t k = s; k < e; k += GD) {
        const int nk = e - k < GD ? (int)(e - k) : GD;
        int nn = 0;
        for (int64_t q = k + nk + SP_PF_AHEAD * GD; q < e && q < k + nk + (SP_PF_AHEAD + 1) * GD; q++)
            nx[nn++] = t->down + ITEM_ROW(q) * t->rb_d;
        for (int j = 0; j < nk; j++) rows[j] = t->down + ITEM_ROW(k + j) * t->rb_d;
        t->k.axpy_batch(t->t_d, rows, nk, t->g + (size_t)k * B, (int)B, (int)B, acc, rs, H, nx, nn);
    }
#undef ITEM_ROW
}

/* Union schedule: neurons [s, e) of the item list, each used by all (selected) batch rows. */
static void union_slice(const sparse_task *t, int64_t s, int64_t e, float *acc, int64_t rs, thread_info *ti, int ith,
                        int nth, double *c1, double *c2) {
    const int64_t H = t->H, B = t->B;
    const int G = gu_group(t), GD = t->g_down;
    const float *gp = t->gate_pre; /* when given, only up rows are read */
#define ITEM_ROW(k) ((size_t)(t->rows ? t->rows[(k)] : (int32_t)(k)))
    const uint8_t *nx[SP_MAX_ROWS];
    if (t->batched) {
        union_slice_batched(t, s, e, acc, rs, ti, t->tile + (size_t)ith * (size_t)B * SP_MAX_ROWS, nth, c1, c2);
        return;
    }
    /* gate + up, G neurons at a time; the rows stay in L1/L2 while the other batch rows use them */
    for (int64_t k = s; k < e; k += G) {
        const int np = e - k < G ? (int)(e - k) : G;
        if (t->cache)
            for (int j = 0; j < np; j++) sp_cache_run_job(t->cache, k + j);
        int nn = 0;
        for (int64_t q = k + np + SP_PF_AHEAD * G; q < e && q < k + np + (SP_PF_AHEAD + 1) * G; q++) {
            if (!gp) nx[nn++] = t->gate + ITEM_ROW(q) * t->rb_gu;
            nx[nn++] = t->up + ITEM_ROW(q) * t->rb_gu;
        }
        for (int64_t b = 0; b < B; b++) {
            const uint8_t *rows[SP_MAX_ROWS];
            int sel[SP_MAX_ROWS], ns = 0, nr = 0;
            for (int j = 0; j < np; j++) {
                t->g[(size_t)(k + j) * B + b] = t->u[(size_t)(k + j) * B + b] = 0.0f;
                if (t->sel && !t->sel[(size_t)(k + j) * B + b]) continue;
                if (!gp) rows[nr++] = t->gate + ITEM_ROW(k + j) * t->rb_gu;
                rows[nr++] = t->up + ITEM_ROW(k + j) * t->rb_gu;
                sel[ns++] = j;
            }
            if (!ns) continue;
            float r[SP_MAX_ROWS];
            t->dot_rows(t->t_gu, rows, nr, t->xq + (size_t)b * t->xs, H, r, nx, nn);
            nn = 0; /* prefetch once per group */
            for (int q = 0; q < ns; q++) {
                const size_t it = (size_t)(k + sel[q]) * B + b;
                if (gp) {
                    t->g[it] = gp[(size_t)b * (size_t)t->I + (size_t)item_neuron(t, k + sel[q])];
                    t->u[it] = r[q];
                } else {
                    t->g[it] = r[2 * q];
                    t->u[it] = r[2 * q + 1];
                }
            }
        }
    }
    *c1 = t->timing ? sl_time_s() : 0.0;
    for (int64_t q = s * B; q < e * B; q++) t->g[q] = sl_activate(t->act, t->g[q]) * t->u[q];
    *c2 = t->timing ? sl_time_s() : 0.0;
    if (t->hd) { /* the caller runs the down projection densely */
        union_scatter(t, s, e);
        return;
    }
    ti->b0 = 0;
    ti->b1 = B - 1;
    if (!t->direct) memset(acc, 0, (size_t)(B * rs) * sizeof(float));
    /* down: GD neurons at a time, for each batch row the ones with h != 0 */
    for (int64_t k = s; k < e; k += GD) {
        const int nk = e - k < GD ? (int)(e - k) : GD;
        int nn = 0;
        for (int64_t q = k + nk + SP_PF_AHEAD * GD; q < e && q < k + nk + (SP_PF_AHEAD + 1) * GD; q++)
            nx[nn++] = t->down + ITEM_ROW(q) * t->rb_d;
        for (int64_t b = 0; b < B; b++) {
            down_group dg = {.n = 0, .b = b};
            for (int j = 0; j < nk; j++) {
                const float h = t->g[(size_t)(k + j) * B + b];
                if (h == 0.0f) continue;
                dg.rows[dg.n] = t->down + ITEM_ROW(k + j) * t->rb_d;
                dg.a[dg.n++] = h;
            }
            if (dg.n) {
                down_flush(t, &dg, acc, rs, nx, nn);
                nn = 0; /* prefetch once per group */
            }
        }
    }
#undef ITEM_ROW
}

void sp_sparse_worker(void *arg, int ith, int nth) {
    sparse_task *t = arg;
    thread_info *ti = &t->ti[ith];
    long long s, e;
    sl_split_range(t->n_items, ith, nth, &s, &e);
    double c0 = t->timing ? sl_time_s() : 0.0, c1 = c0, c2 = c0;
    float *acc = t->direct ? t->out : t->acc + (size_t)ith * t->acc_stride;
    const int64_t rs = t->direct ? t->H : t->Hp; /* accumulator row stride */
    if (t->direct && !t->hd) memset(t->out, 0, (size_t)t->H * sizeof(float));
    ti->b0 = 1;
    ti->b1 = 0;
    if (s < e) {
        if (t->per_row) per_row_slice(t, s, e, acc, rs, ti, nth, &c1, &c2);
        else union_slice(t, s, e, acc, rs, ti, ith, nth, &c1, &c2);
    }
    if (t->timing) {
        double c3 = sl_time_s();
        ti->t_gate_up = s < e ? c1 - c0 : 0.0;
        ti->t_act = s < e ? c2 - c1 : 0.0;
        ti->t_down = s < e ? c3 - c2 : 0.0;
    }
}

/* out = sum of the accumulators of the n_acc compute threads, columns of share ith of nth. */
void sp_reduce_columns(const sparse_task *t, int n_acc, int ith, int nth) {
    const int64_t H = t->H;
    long long s, e;
    sl_split_range((H + ACC_ALIGN_FLOATS - 1) / ACC_ALIGN_FLOATS, ith, nth, &s, &e);
    const int64_t c0 = s * ACC_ALIGN_FLOATS, c1 = e * ACC_ALIGN_FLOATS < H ? e * ACC_ALIGN_FLOATS : H;
    if (c0 >= c1) return;
    for (int64_t b = 0; b < t->B; b++) {
        float *o = t->out + b * H;
        bool first = true;
        for (int th = 0; th < n_acc; th++) {
            if (b < t->ti[th].b0 || b > t->ti[th].b1) continue;
            const float *a = t->acc + (size_t)th * t->acc_stride + (size_t)(b * t->Hp);
            if (first) memcpy(o + c0, a + c0, (size_t)(c1 - c0) * sizeof(float));
            else
                for (int64_t c = c0; c < c1; c++) o[c] += a[c];
            first = false;
        }
        if (first) memset(o + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    }
}

void sp_reduce_worker(void *arg, int ith, int nth) {
    sp_reduce_columns(arg, nth, ith, nth); /* the compute task ran on this same pool: nth accumulators */
}



void sp_prepare_worker(void *arg, int ith, int nth) {
    prepare_task *t = arg;
    long long s, e;
    sl_split_range(t->B, ith, nth, &s, &e);
    for (long long b = s; b < e; b++) t->prep(t->type, t->x + b * t->H, t->H, t->xq + (size_t)b * t->xs);
}

/* ---- masks --------------------------------------------------------------------------------- */

/* Masks are read 8 entries per step (bools are bytes holding 0 or 1): a per-entry loop cost
 * ~5% of a 10%-active Q4_0 call at I = 8192. */
static uint64_t load8(const bool *m) {
    uint64_t w;
    memcpy(&w, m, 8);
    return w;
}

/* Number of true entries of m[0..n). */
int64_t sp_mask_count(const bool *m, int64_t n) {
    int64_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) c += (int64_t)((load8(m + i) * 0x0101010101010101ULL) >> 56); /* byte sum */
    for (; i < n; i++) c += m[i];
    return c;
}

/* Write the positions of the true entries of m[0..n) to out (ascending); returns how many.
 * Eight 0/1 bytes become an 8-bit mask with one multiply (each byte's bit lands in the top byte
 * at its own position, without carries), whose set bits are then visited. */
int64_t sp_mask_list(const bool *m, int64_t n, int32_t *out) {
    int64_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        unsigned bits = (unsigned)((load8(m + i) * 0x0102040810204080ULL) >> 56);
        while (bits) {
            out[c++] = (int32_t)(i + __builtin_ctz(bits));
            bits &= bits - 1;
        }
    }
    for (; i < n; i++)
        if (m[i]) out[c++] = (int32_t)i;
    return c;
}
