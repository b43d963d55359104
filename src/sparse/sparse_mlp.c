/*
 * sparse_mlp.c — the sparse MLP operator (see sparse_mlp.h and the sparse section of
 * skipllama.h): argument checking, active-list building, the multi-threaded gather/dot/axpy
 * schedule, the transposed down matrix, the active-row cache, the dense comparison path and the
 * plain reference.
 *
 * What it is for: computing an LLaMA MLP over a subset of its neurons at a cost proportional to
 * that subset, for any supported weight type. Inputs are prepared by the shared kernels
 * (sl_act_prepare); rows are dotted / accumulated by this operator's own row-group kernels
 * (sparse_rows_avx512.c / sparse_rows_avx2.c) matching the shared kernels' variant, and with the
 * scalar variant row by row through sl_vec_dot / sl_vec_axpy. What it is not: a predictor of
 * active neurons, nor a general sparse-matrix library.
 *
 * Schedule of one call (nth threads):
 *   select   check the mask or index lists, build flat per-row lists (and the sorted union);
 *            update the active-row cache's bookkeeping when there is one
 *   prepare  convert each x[b] once into the kernels' prepared form (Q8_0 for quantized weights)
 *   compute  one pool task; thread ith takes an equal slice of the active list and does, in turn,
 *            gate+up dots for its slice (up only when the caller passed the gate pre-activations,
 *            sl_sparse_mlp_forward_pool_gated), act(g) * u, then the axpys of its down_t rows into a
 *            private accumulator (one thread and B = 1: straight into out). Rows go through the
 *            row-group kernels, several gathered rows per call with the next group prefetched
 *            (sparse_rows_avx512.c); the union schedule with B > 1 uses their batched forms, which
 *            read each row once for all B inputs.
 *   reduce   sum the accumulators into out (on the caller for small B * H, else a second task)
 * Mostly-active calls given the original down run the down projection as one dense product
 * instead (sl_matmul), because a streaming pass over down then costs less than the gathers.
 * With the bundled layout on (sl_sparse_mlp_set_bundled), B = 1 and per-row calls that do not
 * go dense take each row's checked list to sl_bundle_forward (model/bundle_mlp.h) instead of the
 * compute stage: one fused pass over contiguous neurons.
 */
#include "sparse/mlp_internal.h"

#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- workspace ------------------------------------------------------------------------------ */



sl_sparse_ws *sl_sparse_ws_init(void) { return calloc(1, sizeof(sl_sparse_ws)); }

void sl_sparse_ws_free(sl_sparse_ws *ws) {
    if (!ws) return;
    sl_free_aligned(ws->arena);
    free(ws->stamp);
    free(ws->mark);
    free(ws->pos);
    sl_bundle_ws_free(&ws->bws);
    free(ws);
}

size_t sl_sparse_ws_bytes(const sl_sparse_ws *ws) {
    return ws ? ws->arena_cap + (size_t)ws->stamp_n * (2 * sizeof(uint32_t) + 1) : 0;
}

bool sp_ws_reserve(sl_sparse_ws *ws, size_t bytes, int64_t n_ff) {
    if (bytes > ws->arena_cap) {
        uint8_t *a = sl_malloc_aligned(bytes);
        if (!a) return false;
        sl_free_aligned(ws->arena);
        ws->arena = a;
        ws->arena_cap = bytes;
    }
    if (n_ff > ws->stamp_n) {
        uint32_t *s = calloc((size_t)n_ff, sizeof(uint32_t));
        uint8_t *m = calloc((size_t)n_ff, 1);
        int32_t *p = calloc((size_t)n_ff, sizeof(int32_t));
        if (!s || !m || !p) {
            free(s);
            free(m);
            free(p);
            return false;
        }
        free(ws->stamp);
        free(ws->mark);
        free(ws->pos);
        ws->stamp = s;
        ws->mark = m;
        ws->pos = p;
        ws->stamp_n = n_ff;
        ws->gen = 0;
    }
    return true;
}

uint32_t sp_ws_next_gen(sl_sparse_ws *ws) {
    if (++ws->gen == 0) { /* wrapped: old stamps could collide, so clear them once */
        memset(ws->stamp, 0, (size_t)ws->stamp_n * sizeof(uint32_t));
        ws->gen = 1;
    }
    return ws->gen;
}

/* ---- the sparse entry point ------------------------------------------------------------------ */

sl_status sl_sparse_mlp_forward_pool(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                     const sl_weight *down_t, sl_activation act, sl_row_cache *cache, const float *x,
                                     int64_t B, const bool *mask, const int32_t *const *idx, const int32_t *n_idx,
                                     sl_mlp_mode mode, float *out, sl_sparse_mlp_stats *stats, sl_error *err) {
    return sl_sparse_mlp_forward_pool_ex(pool, ws, gate, up, down_t, NULL, act, cache, x, B, mask, idx, n_idx, mode, out,
                                         stats, err);
}

sl_status sl_sparse_mlp_forward_pool_ex(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                        const sl_weight *down_t, const sl_weight *down, sl_activation act,
                                        sl_row_cache *cache, const float *x, int64_t B, const bool *mask,
                                        const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode, float *out,
                                        sl_sparse_mlp_stats *stats, sl_error *err) {
    return sl_sparse_mlp_forward_pool_gated(pool, ws, gate, up, down_t, down, act, cache, x, B, mask, idx, n_idx, mode, NULL,
                                            out, stats, err);
}

sl_status sl_sparse_mlp_forward_pool_gated(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                           const sl_weight *down_t, const sl_weight *down, sl_activation act,
                                           sl_row_cache *cache, const float *x, int64_t B, const bool *mask,
                                           const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode,
                                           const float *gate_pre, float *out, sl_sparse_mlp_stats *stats, sl_error *err) {
    const double t_start = stats ? sl_time_s() : 0.0;
    int64_t H, I;
    sl_status st = sp_check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (!down_t) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: down_t is NULL");
    if ((st = sp_check_matrix(down_t, I, H, "down_t", err))) return st;
    if (down && (st = sp_check_matrix(down, H, I, "down", err))) return st;
    if (!x || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: x or out is NULL");
    if (B < 1 || B > SL_MLP_MAX_DIM) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: batch size %lld must be >= 1", (long long)B);
    if (mode != SL_MLP_PER_ROW && mode != SL_MLP_UNION && mode != SL_MLP_PER_ROW_SHARED)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: unknown mode %d", (int)mode);
    if (mask && idx) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: give a mask or index lists, not both");
    if (idx && !n_idx) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: index lists without n_idx");
    if (cache && (cache->src_gate != gate->data || cache->src_up != up->data || cache->src_down != down_t->data ||
                  cache->H != H || cache->I != I || cache->type_gu != gate->type || cache->type_d != down_t->type))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: the row cache was made for other weights");
    size_t bh;
    if (sl_mul_overflow((size_t)B, (size_t)H, &bh) || sl_mul_overflow((size_t)B, (size_t)I, &bh))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: batch too large");

    /* count the pairs (and check the index list lengths) before sizing anything */
    int64_t N = 0;
    if (idx) {
        for (int64_t b = 0; b < B; b++) {
            if (n_idx[b] < 0 || n_idx[b] > I)
                return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: n_idx[%lld] = %d is outside 0..%lld", (long long)b,
                                    (int)n_idx[b], (long long)I);
            if (n_idx[b] > 0 && !idx[b]) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: idx[%lld] is NULL", (long long)b);
            N += n_idx[b];
        }
    } else if (mask) {
        N = sp_mask_count(mask, B * I);
    } else {
        N = B * I;
    }

    const int nth = sl_pool_n_threads(pool);
    /* The schedule is chosen once the union is known (per-row mode may run shared, below), so
     * size the scratch for either. */
    const bool use_sel = mode != SL_MLP_UNION && B > 1;
    const int64_t max_union = N < I ? N : I;
    const int64_t n_h = N > max_union * B ? N : max_union * B; /* g/u entries */
    sl_sp_kernel_set ks;
    sl_sp_kernels(&ks);
    const size_t xs = sp_align64(ks.x_size(gate->type, H));
    /* accumulator rows: whole cache lines, and a stride that is not a multiple of 4 KiB — the
     * batched axpy stores to every row at the same column, and 4K-aliased rows would make each
     * load wait on an unrelated store (measured 2x slower) */
    int64_t Hp = (H + ACC_ALIGN_FLOATS - 1) / ACC_ALIGN_FLOATS * ACC_ALIGN_FLOATS;
    if ((Hp * (int64_t)sizeof(float)) % 4096 == 0) Hp += ACC_ALIGN_FLOATS;
    const bool direct = nth == 1 && B == 1; /* accumulate straight into out (unless the down runs densely) */
    const size_t acc_stride = (size_t)B * (size_t)Hp;

    sl_sparse_ws *own_ws = NULL;
    if (!ws && !(ws = own_ws = sl_sparse_ws_init())) return sl_set_error(err, SL_ERR_NOMEM, "sparse mlp: no memory for scratch");
    carver cv = {NULL, 0};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (!sp_ws_reserve(ws, cv.off, I)) {
                sl_sparse_ws_free(own_ws);
                return sl_set_error(err, SL_ERR_NOMEM, "sparse mlp: cannot allocate %zu bytes of scratch", cv.off);
            }
            cv.base = ws->arena;
            cv.off = 0;
        }
        sp_carve(&cv, (size_t)B * xs);
        sp_carve(&cv, (size_t)(N + 1) * sizeof(int32_t));
        sp_carve(&cv, (size_t)(B + 1) * sizeof(int64_t));
        sp_carve(&cv, (size_t)I * sizeof(int32_t));
        sp_carve(&cv, use_sel ? (size_t)max_union * (size_t)B : 0);
        sp_carve(&cv, (size_t)n_h * sizeof(float));
        sp_carve(&cv, (size_t)n_h * sizeof(float));
        sp_carve(&cv, !direct ? (size_t)nth * acc_stride * sizeof(float) : 0);
        sp_carve(&cv, (size_t)nth * sizeof(thread_info));
        sp_carve(&cv, (size_t)nth * (size_t)B * SP_MAX_ROWS * sizeof(float));
        sp_carve(&cv, down ? (size_t)B * (size_t)I * sizeof(float) : 0);
        sp_carve(&cv, down ? 2 * (size_t)B * (size_t)I * sizeof(float) : 0);
    }
    cv.off = 0;
    uint8_t *xq = sp_carve(&cv, (size_t)B * xs);
    int32_t *flat = sp_carve(&cv, (size_t)(N + 1) * sizeof(int32_t));
    int64_t *off = sp_carve(&cv, (size_t)(B + 1) * sizeof(int64_t));
    int32_t *U = sp_carve(&cv, (size_t)I * sizeof(int32_t));
    uint8_t *sel = sp_carve(&cv, use_sel ? (size_t)max_union * (size_t)B : 0);
    float *g = sp_carve(&cv, (size_t)n_h * sizeof(float));
    float *u = sp_carve(&cv, (size_t)n_h * sizeof(float));
    float *acc = sp_carve(&cv, !direct ? (size_t)nth * acc_stride * sizeof(float) : 0);
    thread_info *ti = sp_carve(&cv, (size_t)nth * sizeof(thread_info));
    float *tile = sp_carve(&cv, (size_t)nth * (size_t)B * SP_MAX_ROWS * sizeof(float));
    float *hd = sp_carve(&cv, down ? (size_t)B * (size_t)I * sizeof(float) : 0);
    float *gfull = sp_carve(&cv, down ? 2 * (size_t)B * (size_t)I * sizeof(float) : 0), *ufull = gfull + (size_t)B * (size_t)I;

    /* flat per-row lists; index lists are checked for range and repeats here */
    int64_t p = 0;
    for (int64_t b = 0; b < B; b++) {
        off[b] = p;
        if (idx) {
            const uint32_t gen = sp_ws_next_gen(ws);
            for (int32_t j = 0; j < n_idx[b]; j++) {
                const int32_t i = idx[b][j];
                if (i < 0 || i >= I) {
                    sl_sparse_ws_free(own_ws);
                    return sl_set_error(err, SL_ERR_RANGE, "sparse mlp: idx[%lld][%d] = %d is outside [0, %lld)", (long long)b,
                                        (int)j, (int)i, (long long)I);
                }
                if (ws->stamp[i] == gen) {
                    sl_sparse_ws_free(own_ws);
                    return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: neuron %d appears twice in idx[%lld]", (int)i,
                                        (long long)b);
                }
                ws->stamp[i] = gen;
                flat[p++] = i;
            }
        } else if (mask) {
            p += sp_mask_list(mask + b * I, I, flat + p);
        } else {
            for (int64_t i = 0; i < I; i++) flat[p++] = (int32_t)i;
        }
    }
    off[B] = p;

    /* the union, sorted (ascending rows stream better than the callers' order) */
    int64_t nU = 0;
    {
        if (B == 1 && !idx) {
            memcpy(U, flat, (size_t)N * sizeof(int32_t)); /* already sorted and unique */
            nU = N;
            if (cache) {
                memset(ws->mark, 0, (size_t)I);
                for (int64_t q = 0; q < nU; q++) ws->mark[U[q]] = 1;
            }
        } else {
            memset(ws->mark, 0, (size_t)I);
            for (int64_t q = 0; q < N; q++) ws->mark[flat[q]] = 1;
            for (int64_t i = 0; i < I; i++) { /* branch-free: random masks would mispredict (U has I entries) */
                U[nU] = (int32_t)i;
                ws->pos[i] = (int32_t)nU;
                nU += ws->mark[i];
            }
        }
    }

    /* Per-row mode schedules each (row, neuron) pair on its own only while that reads few more
     * rows than the union has: when the rows' sets overlap (N well above |union|), the shared
     * schedule — each union row gathered once, used by the rows that selected it — gives the
     * same results from fewer reads. */
    const bool per_row = mode == SL_MLP_PER_ROW && B > 1 && !cache && 2 * N <= 3 * nU;
    /* per-row-shared with dense selections also goes batched (computing the unselected pairs and
     * dropping them is cheaper than gathering per batch row) */
    const bool batched = !per_row && B > 1 && (mode == SL_MLP_UNION || (double)N >= 0.5 * (double)nU * (double)B);
    /* Products that decide the dense paths below. The batched kernels compute every batch row
     * for every union neuron, selected or not; for float weights they are slower per product
     * than the dense matmul, so there those products count (per-row masks of 50% at B = 8 have
     * a full union, and the batched schedule took 1.5x the dense MLP for F16). For Q8_0/Q4_0
     * they are as fast as the dense B > 1 matmul or faster (Q8_0 0.6-0.7x of it), so the
     * selected pairs decide, as for the other schedules. */
    const bool quant_gu = gate->type == SL_TYPE_Q8_0 || gate->type == SL_TYPE_Q4_0;
    const int64_t n_work = mode == SL_MLP_UNION || (batched && !quant_gu) ? nU * B : N;

    /* Nearly every product needed (and the [H, I] down at hand): the dense MLP, keeping only the
     * selected h — its streaming kernels beat any gather at this density. */
    if (down && (double)n_work >= SP_DENSE_ALL_MIN * (double)B * (double)I) {
        const double t_sel = stats ? sl_time_s() : 0.0;
        const float *gsrc = gate_pre ? gate_pre : gfull;
        if (!gate_pre) sl_matmul(pool, gate->type, gate->data, I, H, x, B, gfull);
        sl_matmul(pool, up->type, up->data, I, H, x, B, ufull);
        const double t_gu = stats ? sl_time_s() : 0.0;
        memset(hd, 0, (size_t)B * (size_t)I * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            const int32_t *list = mode == SL_MLP_UNION ? U : flat + off[b];
            const int64_t n_list = mode == SL_MLP_UNION ? nU : off[b + 1] - off[b];
            const size_t o = (size_t)b * (size_t)I;
            for (int64_t q = 0; q < n_list; q++) hd[o + (size_t)list[q]] = sl_activate(act, gsrc[o + (size_t)list[q]]) * ufull[o + (size_t)list[q]];
        }
        const double t_act = stats ? sl_time_s() : 0.0;
        sl_matmul(pool, down->type, down->data, H, I, hd, B, out);
        if (stats) {
            const double t_end = sl_time_s();
            memset(stats, 0, sizeof(*stats));
            stats->t_select = t_sel - t_start;
            stats->t_gate_up = t_gu - t_sel;
            stats->t_act = t_act - t_gu;
            stats->t_down = t_end - t_act;
            stats->t_total = t_end - t_start;
            stats->n_pairs = mode == SL_MLP_UNION ? nU * B : N;
            stats->n_unique = nU;
            stats->weight_bytes = I * (int64_t)((gate_pre ? 1 : 2) * gate->row_bytes) + H * (int64_t)down->row_bytes;
            stats->dense_gate_up = stats->dense_down = true;
        }
        sl_sparse_ws_free(own_ws);
        return SL_OK;
    }

    /* The bundled layout: B = 1 and per-row calls go row by row through the neuron bundle, one
     * fused pass over contiguous neurons (model/bundle_mlp.h) on the lists checked above. */
    const sl_neuron_bundle *bd = ws->bundle;
    if (bd && !cache && !gate_pre && (B == 1 || mode == SL_MLP_PER_ROW) && bd->H == H && bd->I == I && bd->t_src == gate->type) {
        const double t_sel = stats ? sl_time_s() : 0.0;
        for (int64_t b = 0; b < B; b++) {
            st = sl_bundle_forward(bd, pool, &ws->bws, act, x + b * H, flat + off[b], (int32_t)(off[b + 1] - off[b]), NULL,
                                   out + b * H, err);
            if (st) {
                sl_sparse_ws_free(own_ws);
                return st;
            }
        }
        if (stats) {
            memset(stats, 0, sizeof(*stats));
            stats->t_select = t_sel - t_start;
            stats->t_total = sl_time_s() - t_start;
            stats->n_pairs = N;
            stats->n_unique = nU;
            stats->weight_bytes = N * (int64_t)(2 * bd->rb_gu + bd->rb_d); /* each row reads its own neurons */
        }
        sl_sparse_ws_free(own_ws);
        return SL_OK;
    }

    sparse_task t;
    memset(&t, 0, sizeof(t));
    t.gate = gate->data;
    t.up = up->data;
    t.down = down_t->data;
    t.rb_gu = gate->row_bytes;
    t.rb_d = down_t->row_bytes;
    t.t_gu = gate->type;
    t.t_d = down_t->type;
    t.H = H;
    t.act = act;
    t.xq = xq;
    t.xs = xs;
    t.B = B;
    t.per_row = per_row;
    t.flat = flat;
    t.off = off;
    t.g = g;
    t.u = u;
    t.out = out;
    t.acc = acc;
    t.acc_stride = acc_stride;
    t.Hp = Hp;
    /* mostly-active calls run the down projection as the dense product over down ([H, I]): past
     * dense_down_min the axpys of down_t rows cost more than one pass over all of down */
    /* density: how close together the gathered rows lie (grouping, prefetch); work: the share
     * of the B * I products the schedule computes (what the dense down projection would replace) */
    const double density = per_row ? (double)N / ((double)B * (double)I) : (double)nU / (double)I;
    const double work = (double)n_work / ((double)B * (double)I);
    const bool dense_down = down != NULL && work >= sp_dense_down_min(down->type);
    t.direct = direct && !dense_down;
    t.I = I;
    if (dense_down) {
        memset(hd, 0, (size_t)B * (size_t)I * sizeof(float));
        t.hd = hd;
    }
    t.ti = ti;
    t.timing = stats != NULL;
    t.k = ks;
    t.dot_rows = t.k.dot;
    t.axpy_rows = t.k.axpy;
    t.tile = tile;
    t.batched = batched;
    sl_sp_groups(gate->type, down_t->type, density, &t.g_gu, &t.g_down);
    t.gate_pre = gate_pre;
    t.n_items = per_row ? N : nU;
    t.rows = U;
    bool cache_used = false;
    if (!per_row && cache && nU <= cache->capacity) {
        sp_cache_update(cache, U, nU, ws->mark, stats);
        cache_used = true;
        t.cache = cache;
        t.gate = cache->gate;
        t.up = cache->up;
        t.down = cache->down;
        t.rows = NULL;
        t.n_items = cache->n;
    }
    if (use_sel && !per_row) {
        /* which rows use each item; item positions come from the union order or the cache slots */
        memset(sel, 0, (size_t)nU * (size_t)B);
        if (!cache_used) {
            for (int64_t b = 0; b < B; b++)
                for (int64_t q = off[b]; q < off[b + 1]; q++) sel[(size_t)ws->pos[flat[q]] * (size_t)B + (size_t)b] = 1;
        } else {
            for (int64_t b = 0; b < B; b++)
                for (int64_t q = off[b]; q < off[b + 1]; q++) sel[(size_t)cache->slot_of[flat[q]] * (size_t)B + (size_t)b] = 1;
        }
        t.sel = sel;
    }
    const double t_sel = stats ? sl_time_s() : 0.0;

    prepare_task pt = {ks.x_prep, gate->type, x, B, H, xq, xs};
    /* on the caller unless large: a pool dispatch costs more than a few rows of quantizing */
    if (nth > 1 && (size_t)B * (size_t)H >= ((size_t)1 << 20)) sl_pool_run(pool, sp_prepare_worker, &pt);
    else sp_prepare_worker(&pt, 0, 1);
    const double t_prep = stats ? sl_time_s() : 0.0;

    sl_pool_run(pool, sp_sparse_worker, &t);
    if (cache_used) sp_cache_reset_jobs(cache);
    const double t_comp = stats ? sl_time_s() : 0.0;
    /* Small reductions run on the caller: a second dispatch would cost more than the adds
     * (and on a busy machine, waiting for a descheduled worker costs a time slice). */
    if (dense_down) {
        sl_matmul(pool, down->type, down->data, H, I, hd, B, out);
    } else if (!direct) {
        if (nth == 1 || (size_t)B * (size_t)H * (size_t)nth <= ((size_t)1 << 20)) sp_reduce_columns(&t, nth, 0, 1);
        else sl_pool_run(pool, sp_reduce_worker, &t);
    }

    if (stats) {
        const double t_end = sl_time_s();
        sl_sparse_mlp_stats s0;
        memset(&s0, 0, sizeof(s0));
        if (cache_used) {
            s0.cache_kept = stats->cache_kept;
            s0.cache_added = stats->cache_added;
            s0.cache_removed = stats->cache_removed;
        }
        s0.cache_used = cache_used;
        s0.t_select = t_sel - t_start;
        s0.t_prepare = t_prep - t_sel;
        for (int th = 0; th < nth; th++) {
            if (ti[th].t_gate_up > s0.t_gate_up) s0.t_gate_up = ti[th].t_gate_up;
            if (ti[th].t_act > s0.t_act) s0.t_act = ti[th].t_act;
            if (ti[th].t_down > s0.t_down) s0.t_down = ti[th].t_down;
        }
        s0.t_reduce = dense_down ? 0.0 : t_end - t_comp;
        if (dense_down) s0.t_down = t_end - t_comp;
        s0.t_total = t_end - t_start;
        s0.n_unique = nU;
        s0.n_pairs = (mode == SL_MLP_UNION || B == 1) ? nU * B : N;
        s0.weight_bytes = s0.n_unique * (int64_t)((gate_pre ? 1 : 2) * gate->row_bytes) +
                          (dense_down ? H * (int64_t)down->row_bytes : s0.n_unique * (int64_t)down_t->row_bytes);
        s0.dense_down = dense_down;
        *stats = s0;
    }
    sl_sparse_ws_free(own_ws);
    return SL_OK;
}
