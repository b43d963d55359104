/*
 * mlp_handle.c — the dense comparison path (sl_mlp_dense_forward_pool), the plain reference
 * (sl_mlp_reference_w) and the public sl_sparse_mlp handle (skipllama.h) over the operator.
 * What it is not: the sparse schedule itself (sparse_mlp.c, mlp_schedule.c).
 */
#include "sparse/mlp_internal.h"

#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- dense path ----------------------------------------------------------------------------- */

typedef struct act_task {
    float *g;          /* [n] gate, becomes h */
    const float *u;    /* [n] up */
    int64_t n;         /* elements */
    sl_activation act; /* activation */
} act_task;

static void act_worker(void *arg, int ith, int nth) {
    act_task *t = arg;
    long long s, e;
    sl_split_range(t->n, ith, nth, &s, &e);
    for (long long q = s; q < e; q++) t->g[q] = sl_activate(t->act, t->g[q]) * t->u[q];
}

sl_status sl_mlp_dense_forward_pool(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                    const sl_weight *down, sl_activation act, const float *x, int64_t B, float *out,
                                    sl_sparse_mlp_stats *stats, sl_error *err) {
    const double t0 = stats ? sl_time_s() : 0.0;
    int64_t H, I;
    sl_status st = sp_check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (!down) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: down is NULL");
    if ((st = sp_check_matrix(down, H, I, "down", err))) return st;
    if (!x || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: x or out is NULL");
    if (B < 1 || B > SL_MLP_MAX_DIM) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: batch size %lld must be >= 1", (long long)B);
    size_t n, bytes;
    if (sl_mul_overflow((size_t)B, (size_t)I, &n) || sl_mul_overflow(n, 2 * sizeof(float) + 64, &bytes))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: batch too large");
    sl_sparse_ws *own_ws = NULL;
    if (!ws && !(ws = own_ws = sl_sparse_ws_init())) return sl_set_error(err, SL_ERR_NOMEM, "dense mlp: no memory for scratch");
    if (!sp_ws_reserve(ws, 2 * sp_align64(n * sizeof(float)), 0)) {
        sl_sparse_ws_free(own_ws);
        return sl_set_error(err, SL_ERR_NOMEM, "dense mlp: cannot allocate %zu bytes of scratch", bytes);
    }
    float *g = (float *)ws->arena, *u = (float *)(ws->arena + sp_align64(n * sizeof(float)));
    sl_matmul(pool, gate->type, gate->data, I, H, x, B, g);
    sl_matmul(pool, up->type, up->data, I, H, x, B, u);
    const double t1 = stats ? sl_time_s() : 0.0;
    act_task at = {g, u, (int64_t)n, act};
    sl_pool_run(pool, act_worker, &at);
    const double t2 = stats ? sl_time_s() : 0.0;
    sl_matmul(pool, down->type, down->data, H, I, g, B, out);
    if (stats) {
        const double t3 = sl_time_s();
        memset(stats, 0, sizeof(*stats));
        stats->t_gate_up = t1 - t0;
        stats->t_act = t2 - t1;
        stats->t_down = t3 - t2;
        stats->t_total = t3 - t0;
        stats->n_pairs = B * I;
        stats->n_unique = I;
        stats->weight_bytes = I * (int64_t)(2 * gate->row_bytes) + H * (int64_t)down->row_bytes;
    }
    sl_sparse_ws_free(own_ws);
    return SL_OK;
}

/* ---- reference ------------------------------------------------------------------------------ */

sl_status sl_mlp_reference_w(const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                             const sl_weight *down_t, sl_activation act, const float *x, int64_t B, const bool *mask,
                             float *out, sl_error *err) {
    int64_t H, I;
    sl_status st = sp_check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (down) st = sp_check_matrix(down, H, I, "down", err);
    else if (down_t) st = sp_check_matrix(down_t, I, H, "down_t", err);
    else st = sl_set_error(err, SL_ERR_INVALID_ARG, "reference mlp: neither down nor down_t given");
    if (st) return st;
    if (!x || !out || B < 1 || B > SL_MLP_MAX_DIM) return sl_set_error(err, SL_ERR_INVALID_ARG, "reference mlp: bad x, out or B");
    const int64_t R = H > I ? H : I;
    float *row = malloc((size_t)R * sizeof(float)), *row2 = malloc((size_t)H * sizeof(float));
    float *h = malloc((size_t)B * (size_t)I * sizeof(float));
    double *accd = calloc((size_t)B * (size_t)H, sizeof(double));
    if (!row || !row2 || !h || !accd) {
        free(row), free(row2), free(h), free(accd);
        return sl_set_error(err, SL_ERR_NOMEM, "reference mlp: out of memory");
    }
    for (int64_t i = 0; i < I; i++) {
        sl_dequantize_row_ref(gate->type, (const uint8_t *)gate->data + (size_t)i * gate->row_bytes, row, H);
        sl_dequantize_row_ref(up->type, (const uint8_t *)up->data + (size_t)i * up->row_bytes, row2, H);
        for (int64_t b = 0; b < B; b++) {
            if (mask && !mask[b * I + i]) {
                h[b * I + i] = 0.0f;
                continue;
            }
            double sg = 0.0, su = 0.0;
            for (int64_t c = 0; c < H; c++) {
                sg += (double)row[c] * x[b * H + c];
                su += (double)row2[c] * x[b * H + c];
            }
            h[b * I + i] = sl_activate(act, (float)sg) * (float)su;
        }
    }
    if (down) {
        for (int64_t r = 0; r < H; r++) {
            sl_dequantize_row_ref(down->type, (const uint8_t *)down->data + (size_t)r * down->row_bytes, row, I);
            for (int64_t b = 0; b < B; b++) {
                double s = 0.0;
                for (int64_t i = 0; i < I; i++) s += (double)row[i] * h[b * I + i];
                accd[b * H + r] = s;
            }
        }
    } else {
        for (int64_t i = 0; i < I; i++) {
            sl_dequantize_row_ref(down_t->type, (const uint8_t *)down_t->data + (size_t)i * down_t->row_bytes, row, H);
            for (int64_t b = 0; b < B; b++)
                for (int64_t c = 0; c < H; c++) accd[b * H + c] += (double)row[c] * h[b * I + i];
        }
    }
    for (size_t q = 0; q < (size_t)B * (size_t)H; q++) out[q] = (float)accd[q];
    free(row), free(row2), free(h), free(accd);
    return SL_OK;
}

/* ---- the public handle ------------------------------------------------------------------------ */

struct sl_sparse_mlp {
    sl_weight gate, up;          /* [I, H] views of the caller's weights */
    sl_weight down;              /* [H, I] (data NULL when the caller gave only down_t) */
    sl_weight down_t;            /* [I, H] the caller's or down_t_owned */
    void *down_t_owned;          /* transposed down built at init, or NULL */
    sl_activation act;           /* activation */
    sl_pool *pool;               /* workers (NULL for one thread) */
    bool pool_borrowed;          /* pool belongs to another operator (sl_sparse_mlp_init_shared) */
    sl_sparse_ws *ws;            /* scratch reused across calls */
    sl_row_cache *cache;         /* active-row cache, or NULL */
    sl_sparse_mlp_stats *stats;  /* where to write stage times, or NULL */
    sl_neuron_bundle bundle;     /* neuron-bundled copy (sl_sparse_mlp_set_bundled), data NULL when off */
};


static sl_sparse_mlp *op_init(const sl_mlp_weights *w, sl_activation act, int n_threads, sl_pool *borrow, sl_error *err) {
    sl_clear_error(err);
    if (!w) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: weights are NULL");
        return NULL;
    }
    if (!sl_type_traits_of(w->type)) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: unsupported weight type %s (%d)", sl_type_name(w->type) ? sl_type_name(w->type) : "unknown", (int)w->type);
        return NULL;
    }
    if (!sl_activation_supported(act)) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: unsupported activation %d", (int)act);
        return NULL;
    }
    if (w->n_embd < 1 || w->n_ff < 1 || w->n_embd > SL_MLP_MAX_DIM || w->n_ff > SL_MLP_MAX_DIM) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: n_embd %lld and n_ff %lld must be within 1..%lld",
                     (long long)w->n_embd, (long long)w->n_ff, (long long)SL_MLP_MAX_DIM);
        return NULL;
    }
    const int64_t bs = sl_type_block_size(w->type);
    if (w->n_embd % bs || w->n_ff % bs) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: n_embd %lld and n_ff %lld must be multiples of the %s block (%lld)",
                     (long long)w->n_embd, (long long)w->n_ff, sl_type_name(w->type), (long long)bs);
        return NULL;
    }
    if (!w->gate || !w->up || (!w->down && !w->down_t)) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate, up and one of down / down_t are required");
        return NULL;
    }
    if (n_threads < 0 || n_threads > SL_MLP_MAX_THREADS) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: n_threads %d outside 0..%d", n_threads, SL_MLP_MAX_THREADS);
        return NULL;
    }
    if (n_threads == 0) n_threads = 1;
    sl_sparse_mlp *op = calloc(1, sizeof(*op));
    if (!op) goto nomem;
    const int64_t H = w->n_embd, I = w->n_ff;
    op->gate = sl_weight_view(w->gate, w->type, I, H);
    op->up = sl_weight_view(w->up, w->type, I, H);
    op->down = sl_weight_view(w->down, w->type, H, I);
    op->act = act;
    if (borrow) {
        op->pool = borrow;
        op->pool_borrowed = true;
    } else if (n_threads > 1 && !(op->pool = sl_pool_init(n_threads))) {
        goto nomem;
    }
    if (!(op->ws = sl_sparse_ws_init())) goto nomem;
    if (w->down_t) {
        op->down_t = sl_weight_view(w->down_t, w->type, I, H);
    } else {
        /* Q4_0 down is transposed into Q8_0: re-quantizing into Q4_0 would round every weight a
         * second time (7.6% RMS error), Q8_0 keeps that at 0.5%; it costs 1.9x the bytes of down
         * but no time (the Q8_0 axpy unpacks more cheaply: measured equal or 5-15% faster at
         * 10-50% active on Zen 4). The model's sparse layers make the same choice (skip.c). */
        const sl_type dt_type = sl_mlp_down_t_type(w->type);
        size_t bytes = sl_mlp_down_t_bytes(&op->down, dt_type);
        if (!(op->down_t_owned = sl_alloc_huge(bytes))) goto nomem;
        if (sl_mlp_transpose_down(op->pool, &op->down, dt_type, op->down_t_owned, bytes, &op->down_t, err)) {
            sl_sparse_mlp_free(op);
            return NULL;
        }
    }
    return op;
nomem:
    sl_sparse_mlp_free(op);
    sl_set_error(err, SL_ERR_NOMEM, "sparse mlp: out of memory (threads, scratch or the %lld x %lld transposed down)",
                 (long long)w->n_ff, (long long)w->n_embd);
    return NULL;
}

sl_sparse_mlp *sl_sparse_mlp_init(const sl_mlp_weights *w, sl_activation act, int n_threads, sl_error *err) {
    return op_init(w, act, n_threads, NULL, err);
}

sl_sparse_mlp *sl_sparse_mlp_init_shared(const sl_mlp_weights *w, sl_activation act, sl_sparse_mlp *threads_from,
                                         sl_error *err) {
    if (!threads_from) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: threads_from is NULL");
        return NULL;
    }
    if (!threads_from->pool) return op_init(w, act, 1, NULL, err);
    return op_init(w, act, sl_pool_n_threads(threads_from->pool), threads_from->pool, err);
}

void sl_sparse_mlp_free(sl_sparse_mlp *op) {
    if (!op) return;
    if (!op->pool_borrowed) sl_pool_free(op->pool);
    sl_sparse_ws_free(op->ws);
    sl_row_cache_free(op->cache);
    sl_free_huge(op->down_t_owned);
    sl_bundle_free(&op->bundle);
    free(op);
}

size_t sl_sparse_mlp_memory(const sl_sparse_mlp *op) {
    if (!op) return 0;
    size_t n = sizeof(*op) + sl_sparse_ws_bytes(op->ws) + sl_row_cache_bytes(op->cache);
    if (op->down_t_owned) n += (size_t)op->down_t.rows * op->down_t.row_bytes;
    if (op->bundle.data) n += op->bundle.bytes;
    return n;
}

sl_status sl_sparse_mlp_set_bundled(sl_sparse_mlp *op, bool on, sl_error *err) {
    sl_clear_error(err);
    if (!op) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: operator is NULL");
    op->ws->bundle = NULL;
    sl_bundle_free(&op->bundle);
    if (!on) return SL_OK;
    sl_status st = sl_bundle_init_t(&op->bundle, op->pool, &op->gate, &op->up, &op->down_t, err);
    if (!st) op->ws->bundle = &op->bundle;
    return st;
}

sl_status sl_sparse_mlp_forward(sl_sparse_mlp *op, const float *x, int64_t B, const bool *mask,
                                const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode, float *out,
                                sl_error *err) {
    sl_clear_error(err);
    if (!op) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: operator is NULL");
    return sl_sparse_mlp_forward_pool_ex(op->pool, op->ws, &op->gate, &op->up, &op->down_t, op->down.data ? &op->down : NULL,
                                         op->act, op->cache, x, B, mask, idx, n_idx, mode, out, op->stats, err);
}

sl_status sl_mlp_dense_forward(sl_sparse_mlp *op, const float *x, int64_t B, float *out, sl_error *err) {
    sl_clear_error(err);
    if (!op) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: operator is NULL");
    if (!op->down.data) /* only down_t was given: every neuron through the sparse path */
        return sl_sparse_mlp_forward_pool(op->pool, op->ws, &op->gate, &op->up, &op->down_t, op->act, NULL, x, B, NULL,
                                          NULL, NULL, SL_MLP_UNION, out, op->stats, err);
    return sl_mlp_dense_forward_pool(op->pool, op->ws, &op->gate, &op->up, &op->down, op->act, x, B, out, op->stats, err);
}

sl_status sl_sparse_mlp_set_cache(sl_sparse_mlp *op, int64_t capacity, sl_error *err) {
    sl_clear_error(err);
    if (!op) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: operator is NULL");
    sl_row_cache_free(op->cache);
    op->cache = NULL;
    if (capacity < 0) return SL_OK;
    op->cache = sl_row_cache_init(&op->gate, &op->up, &op->down_t, capacity, err);
    return op->cache ? SL_OK : err ? err->code : SL_ERR_NOMEM;
}

void sl_sparse_mlp_set_stats(sl_sparse_mlp *op, sl_sparse_mlp_stats *stats) {
    if (op) op->stats = stats;
}

sl_status sl_sparse_mlp_reference(const sl_mlp_weights *w, sl_activation act, const float *x, int64_t B,
                                  const bool *mask, float *out, sl_error *err) {
    sl_clear_error(err);
    if (!w) return sl_set_error(err, SL_ERR_INVALID_ARG, "reference mlp: weights are NULL");
    if (!sl_type_traits_of(w->type)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "reference mlp: unsupported type %s (%d)", sl_type_name(w->type) ? sl_type_name(w->type) : "unknown", (int)w->type);
    if (w->n_embd < 1 || w->n_ff < 1 || w->n_embd > SL_MLP_MAX_DIM || w->n_ff > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "reference mlp: bad sizes");
    const int64_t H = w->n_embd, I = w->n_ff;
    sl_weight gate = sl_weight_view(w->gate, w->type, I, H), up = sl_weight_view(w->up, w->type, I, H);
    sl_weight down = sl_weight_view(w->down, w->type, H, I), down_t = sl_weight_view(w->down_t, w->type, I, H);
    return sl_mlp_reference_w(&gate, &up, w->down ? &down : NULL, w->down ? NULL : &down_t, act, x, B, mask, out, err);
}
