/*
 * row_cache.c — the sparse operator's active-row cache ("LLM in a flash", sparse_mlp.h): private
 * packed copies of the rows of the neurons active in the previous call, kept in step with the
 * active set by slot reuse and swap-delete. What it is not: the compute schedule that reads the
 * slots (mlp_schedule.c).
 */
#include "sparse/mlp_internal.h"

#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- active-row cache ----------------------------------------------------------------------- */



sl_row_cache *sl_row_cache_init(const sl_weight *gate, const sl_weight *up, const sl_weight *down_t, int64_t capacity,
                                sl_error *err) {
    int64_t H, I;
    if (sp_check_gate_up(gate, up, SL_ACT_SILU, &H, &I, err)) return NULL;
    if (!down_t || sp_check_matrix(down_t, I, H, "down_t", err)) {
        if (!down_t) sl_set_error(err, SL_ERR_INVALID_ARG, "row cache: down_t is NULL");
        return NULL;
    }
    if (capacity < 0 || capacity > I) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "row cache: capacity %lld outside 0..%lld", (long long)capacity, (long long)I);
        return NULL;
    }
    if (capacity == 0) capacity = I;
    sl_row_cache *c = calloc(1, sizeof(*c));
    if (!c) goto nomem;
    c->src_gate = gate->data;
    c->src_up = up->data;
    c->src_down = down_t->data;
    c->type_gu = gate->type;
    c->type_d = down_t->type;
    c->H = H;
    c->I = I;
    c->rb_gu = gate->row_bytes;
    c->rb_d = down_t->row_bytes;
    c->capacity = capacity;
    c->slot_of = malloc((size_t)I * sizeof(int32_t));
    c->neuron_of = malloc((size_t)capacity * sizeof(int32_t));
    c->job_neuron = malloc((size_t)capacity * sizeof(int32_t));
    c->job_slot = malloc((size_t)capacity * sizeof(int32_t));
    c->jobs = malloc((size_t)capacity * sizeof(int32_t));
    c->tmp = malloc((2 * (size_t)capacity + (size_t)I) * sizeof(int32_t));
    c->gate = sl_alloc_huge((size_t)capacity * c->rb_gu); /* no overflow: capacity <= I and I rows exist */
    c->up = sl_alloc_huge((size_t)capacity * c->rb_gu);
    c->down = sl_alloc_huge((size_t)capacity * c->rb_d);
    if (!c->slot_of || !c->neuron_of || !c->job_neuron || !c->job_slot || !c->jobs || !c->tmp || !c->gate || !c->up || !c->down)
        goto nomem;
    for (int64_t i = 0; i < I; i++) c->slot_of[i] = -1;
    for (int64_t s = 0; s < capacity; s++) c->job_neuron[s] = c->job_slot[s] = -1;
    return c;
nomem:
    sl_row_cache_free(c);
    sl_set_error(err, SL_ERR_NOMEM, "row cache: cannot allocate %lld slots", (long long)capacity);
    return NULL;
}

void sl_row_cache_free(sl_row_cache *c) {
    if (!c) return;
    free(c->slot_of);
    free(c->neuron_of);
    free(c->job_neuron);
    free(c->job_slot);
    free(c->jobs);
    free(c->tmp);
    sl_free_huge(c->gate);
    sl_free_huge(c->up);
    sl_free_huge(c->down);
    free(c);
}

size_t sl_row_cache_bytes(const sl_row_cache *c) {
    if (!c) return 0;
    return (size_t)c->capacity * (2 * c->rb_gu + c->rb_d + 4 * sizeof(int32_t)) + (size_t)c->I * 2 * sizeof(int32_t);
}

void sl_row_cache_clear(sl_row_cache *c) {
    if (!c) return;
    for (int64_t s = 0; s < c->n; s++) c->slot_of[c->neuron_of[s]] = -1;
    c->n = 0;
}

static void cache_add_job(sl_row_cache *c, int32_t slot, int32_t neuron, int32_t from_slot) {
    if (c->job_neuron[slot] < 0 && c->job_slot[slot] < 0) c->jobs[c->n_jobs++] = slot;
    c->job_neuron[slot] = neuron;
    c->job_slot[slot] = from_slot;
}

/* Make the cache hold exactly the neurons of U (sorted, nU of them; mark[i] != 0 for members).
 * Only bookkeeping happens here; the row copies are queued as jobs that the compute threads
 * run for the slots they own, so copying is parallel and needs no extra pass. */
void sp_cache_update(sl_row_cache *c, const int32_t *U, int64_t nU, const uint8_t *mark, sl_sparse_mlp_stats *stats) {
    int32_t *leave = c->tmp, *enter = c->tmp + c->capacity;
    int64_t n_leave = 0, n_enter = 0;
    for (int64_t s = 0; s < c->n; s++)
        if (!mark[c->neuron_of[s]]) leave[n_leave++] = (int32_t)s;
    for (int64_t k = 0; k < nU; k++)
        if (c->slot_of[U[k]] < 0) enter[n_enter++] = U[k];
    /* 1. entering neurons take over the lowest leaving slots in place */
    int64_t paired = n_leave < n_enter ? n_leave : n_enter;
    for (int64_t k = 0; k < paired; k++) {
        int32_t s = leave[k];
        c->slot_of[c->neuron_of[s]] = -1;
        c->neuron_of[s] = enter[k];
        c->slot_of[enter[k]] = s;
        cache_add_job(c, s, enter[k], -1);
    }
    if (n_leave > paired) {
        /* 2. more leaving than entering: drop the rest and close the holes below the new end
         * with the kept slots above it (swap-delete). The remaining holes are the highest
         * leaving slots, so every slot refilled in step 1 lies below the new end and never moves. */
        int64_t m = n_leave - paired, n_new = c->n - m;
        for (int64_t k = paired; k < n_leave; k++) {
            c->slot_of[c->neuron_of[leave[k]]] = -1;
            c->neuron_of[leave[k]] = -1;
        }
        int64_t tail = c->n - 1;
        for (int64_t k = paired; k < n_leave; k++) {
            int32_t hole = leave[k];
            if (hole >= n_new) break; /* holes are ascending: the rest vanish with the tail */
            while (c->neuron_of[tail] < 0) tail--;
            int32_t moved = c->neuron_of[tail];
            c->neuron_of[hole] = moved;
            c->slot_of[moved] = hole;
            c->neuron_of[tail] = -1;
            cache_add_job(c, hole, -1, (int32_t)tail);
            tail--;
        }
        c->n = n_new;
    } else {
        /* 3. more entering than leaving: append */
        for (int64_t k = paired; k < n_enter; k++) {
            int32_t s = (int32_t)c->n++;
            c->neuron_of[s] = enter[k];
            c->slot_of[enter[k]] = s;
            cache_add_job(c, s, enter[k], -1);
        }
    }
    if (stats) {
        stats->cache_kept = nU - n_enter;
        stats->cache_added = n_enter;
        stats->cache_removed = n_leave;
    }
}

void sp_cache_run_job(sl_row_cache *c, int64_t s) {
    int32_t nj = c->job_neuron[s], sj = c->job_slot[s];
    if (nj >= 0) {
        memcpy(c->gate + (size_t)s * c->rb_gu, c->src_gate + (size_t)nj * c->rb_gu, c->rb_gu);
        memcpy(c->up + (size_t)s * c->rb_gu, c->src_up + (size_t)nj * c->rb_gu, c->rb_gu);
        memcpy(c->down + (size_t)s * c->rb_d, c->src_down + (size_t)nj * c->rb_d, c->rb_d);
    } else if (sj >= 0) {
        memcpy(c->gate + (size_t)s * c->rb_gu, c->gate + (size_t)sj * c->rb_gu, c->rb_gu);
        memcpy(c->up + (size_t)s * c->rb_gu, c->up + (size_t)sj * c->rb_gu, c->rb_gu);
        memcpy(c->down + (size_t)s * c->rb_d, c->down + (size_t)sj * c->rb_d, c->rb_d);
    }
}

void sp_cache_reset_jobs(sl_row_cache *c) {
    for (int64_t k = 0; k < c->n_jobs; k++) c->job_neuron[c->jobs[k]] = c->job_slot[c->jobs[k]] = -1;
    c->n_jobs = 0;
}
