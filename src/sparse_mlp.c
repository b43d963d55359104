/*
 * sparse_mlp.c — the sparse MLP operator (see sparse_mlp.h and the sparse section of
 * skipllama.h): argument checking, active-list building, the multi-threaded gather/dot/axpy
 * schedule, the transposed down matrix, the active-row cache, the dense comparison path and the
 * plain reference.
 *
 * What it is for: computing an LLaMA MLP over a subset of its neurons at a cost proportional to
 * that subset, for any supported weight type. Inputs are prepared by the shared kernels
 * (sl_act_prepare); rows are dotted / accumulated by this operator's own row-group kernels
 * (sparse_mlp_avx512.c / sparse_mlp_avx2.c) matching the shared kernels' variant, and with the
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
 *            (sparse_mlp_avx512.c); the union schedule with B > 1 uses their batched forms, which
 *            read each row once for all B inputs.
 *   reduce   sum the accumulators into out (on the caller for small B * H, else a second task)
 * Mostly-active calls given the original down run the down projection as one dense product
 * instead (sl_matmul), because a streaming pass over down then costs less than the gathers.
 * With the bundled layout on (sl_sparse_mlp_set_bundled), B = 1 and per-row calls that do not
 * go dense take each row's checked list to sl_bundle_forward (sparse_bundle.h) instead of the
 * compute stage: one fused pass over contiguous neurons.
 */
#include "sparse_mlp.h"

#include "kernels/kernels.h"
#include "sparse_bundle.h"
#include "quant.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SL_MLP_MAX_DIM ((int64_t)1 << 30) /* H and I beyond this are surely a mistake (indices are int32) */
#define SL_MLP_MAX_THREADS 512
#define SP_DENSE_ALL_MIN 0.9 /* active fraction from which the whole MLP runs densely (when down is given) */
/* Active fraction from which the down projection runs densely (when down is given), by the type
 * of down: a Q4_0 down is the cheapest to stream per neuron, so its dense product wins first
 * (measured crossover 0.65-0.7 against Q8_0 or Q4_0 down_t axpys on Zen 4; 0.8 is still below
 * the crossover for Q8_0 and the float types). */
static double dense_down_min(sl_type down_type) { return down_type == SL_TYPE_Q4_0 ? 0.65 : 0.8; }
#define ACC_ALIGN_FLOATS 16 /* accumulator rows padded to 64 bytes: no two threads share a cache line */
/* Groups skipped by the software prefetch: while group k is computed, the rows of group
 * k + 1 + SP_PF_AHEAD are fetched (into L2). Fetching only the next group left too little time
 * for gathered rows (the kernels' scale prepass reads a group's first lines at once); one
 * group further measured 3-7% faster on Q4_0 at 10-50% active, two groups no better. */
#define SP_PF_AHEAD 1

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static inline float act_apply(sl_activation act, float v) {
    switch (act) {
    case SL_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case SL_ACT_GELU: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case SL_ACT_SILU:
    default: return v / (1.0f + expf(-v));
    }
}

static bool act_supported(sl_activation act) { return act == SL_ACT_SILU || act == SL_ACT_RELU || act == SL_ACT_GELU; }


/* ---- row-group kernels: per-row fallback and dispatch ----------------------------------------- */

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

/* x for the reference and AVX2 sets: sl_act_prepare's form; bundle-layout rows take x as the
 * type they re-lay out does. */
static sl_type act_type(sl_type t) { return t == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : t == SL_TYPE_Q8_0N ? SL_TYPE_Q8_0 : t; }
static size_t sp_x_size_plain(sl_type t, int64_t n) { return sl_act_size(act_type(t), n); }
static void sp_x_prep_plain(sl_type t, const float *x, int64_t n, void *xp) { sl_act_prepare(act_type(t), x, n, xp); }

void sl_sp_kernels(sl_sp_kernel_set *k) {
#if defined(__x86_64__)
    if (sl_kernels_current() == SL_KERNELS_AVX512) {
        k->x_size = sl_sp_x_size_avx512;
        k->x_prep = sl_sp_x_prep_avx512;
        k->dot = sl_sp_dot_rows_avx512;
        k->axpy = sl_sp_axpy_rows_avx512;
        k->dot_batch = sl_sp_dot_rows_batch_avx512;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx512;
        return;
    }
    if (sl_kernels_current() == SL_KERNELS_AVX2) {
        k->x_size = sp_x_size_plain;
        k->x_prep = sp_x_prep_plain;
        k->dot = sl_sp_dot_rows_avx2;
        k->axpy = sl_sp_axpy_rows_avx2;
        k->dot_batch = sl_sp_dot_rows_batch_avx2;
        k->axpy_batch = sl_sp_axpy_rows_batch_avx2;
        return;
    }
#endif
    k->x_size = sp_x_size_plain;
    k->x_prep = sp_x_prep_plain;
    k->dot = sl_sp_dot_rows_ref;
    k->axpy = sl_sp_axpy_rows_ref;
    k->dot_batch = sl_sp_dot_rows_batch_ref;
    k->axpy_batch = sl_sp_axpy_rows_batch_ref;
}

/* Group sizes, from measurements on Zen 4 (bench-op and a kernel micro-benchmark): gathers need
 * several independent row streams in flight — 4 neurons = 8 rows for gate/up; 4 quantized or 8
 * float rows for down (2 and 8 gate/up neurons, 2 and 8 quantized down rows measured slower or
 * the same). The same at every density: reading dense masks one neuron at a time without
 * software prefetch (left to the hardware prefetcher) lost against groups with prefetch once
 * the quantized kernels fetch a group's scales up front (2.5x dense at 78% active, Q4_0). */
void sl_sp_groups(sl_type t_gu, sl_type t_d, double density, int *g_gu, int *g_down) {
    const bool quant_d = t_d == SL_TYPE_Q8_0 || t_d == SL_TYPE_Q4_0;
    (void)t_gu;
    (void)density;
    *g_gu = 4;
    *g_down = quant_d ? 4 : 8;
}

/* ---- workspace ------------------------------------------------------------------------------ */

struct sl_sparse_ws {
    uint8_t *arena;   /* per-call buffers, carved in order; grows, never shrinks */
    size_t arena_cap; /* bytes in arena */
    uint32_t *stamp;  /* [stamp_n] generation stamps for duplicate detection (no clearing per row) */
    uint8_t *mark;    /* [stamp_n] union membership, cleared per call */
    int32_t *pos;     /* [stamp_n] position of each union member in the union list */
    int64_t stamp_n;  /* neurons the two arrays above cover */
    uint32_t gen;     /* current generation; 0 is never used */
    const sl_neuron_bundle *bundle; /* the operator's bundled layout (sl_sparse_mlp_set_bundled), or NULL */
    sl_bundle_ws bws;               /* sl_bundle_forward's scratch */
};

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

static bool ws_reserve(sl_sparse_ws *ws, size_t bytes, int64_t n_ff) {
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

static uint32_t ws_next_gen(sl_sparse_ws *ws) {
    if (++ws->gen == 0) { /* wrapped: old stamps could collide, so clear them once */
        memset(ws->stamp, 0, (size_t)ws->stamp_n * sizeof(uint32_t));
        ws->gen = 1;
    }
    return ws->gen;
}

/* Sequential carving of the arena: first pass (base == NULL) only sums sizes. */
typedef struct carver {
    uint8_t *base; /* arena, or NULL while measuring */
    size_t off;    /* bytes used so far */
} carver;

static void *carve(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += align64(bytes);
    return p;
}

/* ---- weight checks -------------------------------------------------------------------------- */

static sl_status check_matrix(const sl_weight *w, int64_t rows, int64_t cols, const char *name, sl_error *err) {
    if (!w || !w->data) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s is NULL", name);
    if (!sl_type_traits_of(w->type))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: %s has unsupported type %d", name, (int)w->type);
    if (w->rows != rows || w->cols != cols)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s is [%lld, %lld], expected [%lld, %lld]", name,
                            (long long)w->rows, (long long)w->cols, (long long)rows, (long long)cols);
    size_t rb = sl_type_row_size(w->type, cols);
    if (rb == 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s rows of %lld elements are not a multiple of the %s block (%lld)",
                            name, (long long)cols, sl_type_name(w->type), (long long)sl_type_block_size(w->type));
    if (w->row_bytes != rb)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s row_bytes %zu, expected %zu", name, w->row_bytes, rb);
    return SL_OK;
}

/* gate and up: [I, H], same type. Fills *H, *I. */
static sl_status check_gate_up(const sl_weight *gate, const sl_weight *up, sl_activation act, int64_t *H, int64_t *I,
                               sl_error *err) {
    if (!gate || !up) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate or up is NULL");
    if (!act_supported(act)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: unsupported activation %d", (int)act);
    if (gate->rows < 1 || gate->cols < 1 || gate->rows > SL_MLP_MAX_DIM || gate->cols > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate shape [%lld, %lld] must be within 1..%lld",
                            (long long)gate->rows, (long long)gate->cols, (long long)SL_MLP_MAX_DIM);
    *I = gate->rows;
    *H = gate->cols;
    sl_status st = check_matrix(gate, *I, *H, "gate", err);
    if (st == SL_OK) st = check_matrix(up, *I, *H, "up", err);
    if (st == SL_OK && gate->type != up->type)
        st = sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate is %s but up is %s", sl_type_name(gate->type),
                          sl_type_name(up->type));
    return st;
}

/* ---- transposed down ------------------------------------------------------------------------ */

sl_type sl_mlp_down_t_type(sl_type type) { return type == SL_TYPE_Q4_0 ? SL_TYPE_Q8_0 : type; }

size_t sl_mlp_down_t_bytes(const sl_weight *down, sl_type type) {
    if (!down || down->rows < 1 || down->cols < 1) return 0;
    size_t rb = sl_type_row_size(type, down->rows), total;
    if (rb == 0 || sl_mul_overflow(rb, (size_t)down->cols, &total)) return 0;
    return total;
}

typedef struct transpose_task {
    const sl_weight *down; /* [H, I] source */
    sl_type type;          /* destination type */
    uint8_t *dst;          /* [I, H] destination */
    size_t dst_rb;         /* destination row bytes */
    float *tiles;          /* per thread: 32 x H floats + 32 scratch */
} transpose_task;

/* Columns of down are taken 32 at a time (one block for quantized types): each of the H source
 * rows contributes one dequantized block to a 32 x H tile, whose 32 rows are then encoded. */
static void transpose_worker(void *arg, int ith, int nth) {
    transpose_task *t = arg;
    const sl_weight *d = t->down;
    const int64_t H = d->rows, I = d->cols;
    const sl_type_traits *tr = sl_type_traits_of(d->type);
    float *tile = t->tiles + (size_t)ith * (32 * (size_t)H + 32), *tmp = tile + 32 * (size_t)H;
    long long t0, t1;
    sl_split_range((I + 31) / 32, ith, nth, &t0, &t1);
    for (long long tl = t0; tl < t1; tl++) {
        int64_t c0 = tl * 32, w = I - c0 < 32 ? I - c0 : 32;
        for (int64_t r = 0; r < H; r++) {
            const uint8_t *src = (const uint8_t *)d->data + (size_t)r * d->row_bytes + (size_t)(c0 / tr->block_size) * tr->type_size;
            sl_dequantize_row_ref(d->type, src, tmp, w);
            for (int64_t j = 0; j < w; j++) tile[j * H + r] = tmp[j];
        }
        for (int64_t j = 0; j < w; j++) sl_quantize_row_ref(t->type, tile + j * H, t->dst + (size_t)(c0 + j) * t->dst_rb, H);
    }
}

sl_status sl_mlp_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, void *dst, size_t dst_bytes,
                                sl_weight *down_t, sl_error *err) {
    if (!down || !down->data || !dst || !down_t)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: NULL argument");
    if (!sl_type_traits_of(type)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "transpose down: unsupported type %d", (int)type);
    if (down->rows < 1 || down->cols < 1 || down->rows > SL_MLP_MAX_DIM || down->cols > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: bad shape [%lld, %lld]", (long long)down->rows,
                            (long long)down->cols);
    sl_status st = check_matrix(down, down->rows, down->cols, "down", err);
    if (st) return st;
    size_t need = sl_mlp_down_t_bytes(down, type);
    if (need == 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: H = %lld is not a multiple of the %s block",
                            (long long)down->rows, sl_type_name(type));
    if (dst_bytes < need) return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: dst has %zu bytes, needs %zu", dst_bytes, need);
    int nth = sl_pool_n_threads(pool);
    float *tiles = sl_calloc_array((size_t)nth * (32 * (size_t)down->rows + 32), sizeof(float));
    if (!tiles) return sl_set_error(err, SL_ERR_NOMEM, "transpose down: no memory for %d tiles", nth);
    transpose_task t = {down, type, dst, sl_type_row_size(type, down->rows), tiles};
    sl_pool_run(pool, transpose_worker, &t);
    sl_free_aligned(tiles);
    down_t->data = dst;
    down_t->type = type;
    down_t->rows = down->cols;
    down_t->cols = down->rows;
    down_t->row_bytes = t.dst_rb;
    return SL_OK;
}

/* ---- active-row cache ----------------------------------------------------------------------- */

struct sl_row_cache {
    const uint8_t *src_gate, *src_up, *src_down; /* the weights mirrored (for identity checks and copies) */
    sl_type type_gu, type_d; /* types of gate/up and of down_t */
    int64_t H, I;            /* shapes */
    size_t rb_gu, rb_d;      /* row bytes of gate/up and of down_t */
    int64_t capacity;        /* slots */
    int64_t n;               /* slots in use = size of the last cached active set */
    int32_t *slot_of;        /* [I] slot holding neuron i, or -1 */
    int32_t *neuron_of;      /* [capacity] neuron in each slot */
    int32_t *job_neuron;     /* [capacity] copy this neuron's rows from the weights before use, or -1 */
    int32_t *job_slot;       /* [capacity] copy the rows of this (tail) slot before use, or -1 */
    int32_t *jobs;           /* [capacity] slots with a pending job (to reset them cheaply) */
    int64_t n_jobs;          /* entries in jobs */
    int32_t *tmp;            /* [2 * capacity + I] scratch: leaving slots, entering neurons */
    uint8_t *gate, *up, *down; /* [capacity] packed rows */
};

sl_row_cache *sl_row_cache_init(const sl_weight *gate, const sl_weight *up, const sl_weight *down_t, int64_t capacity,
                                sl_error *err) {
    int64_t H, I;
    if (check_gate_up(gate, up, SL_ACT_SILU, &H, &I, err)) return NULL;
    if (!down_t || check_matrix(down_t, I, H, "down_t", err)) {
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
static void cache_update(sl_row_cache *c, const int32_t *U, int64_t nU, const uint8_t *mark, sl_sparse_mlp_stats *stats) {
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

static void cache_run_job(sl_row_cache *c, int64_t s) {
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

static void cache_reset_jobs(sl_row_cache *c) {
    for (int64_t k = 0; k < c->n_jobs; k++) c->job_neuron[c->jobs[k]] = c->job_slot[c->jobs[k]] = -1;
    c->n_jobs = 0;
}

/* ---- the sparse compute task ---------------------------------------------------------------- */

typedef struct thread_info {
    _Alignas(64) int64_t b0; /* first batch row this thread's accumulator holds */
    int64_t b1;              /* last batch row (b1 < b0: none) */
    double t_gate_up;        /* seconds in each stage (filled only when timing) */
    double t_act;
    double t_down;
} thread_info;

typedef struct sparse_task {
    const uint8_t *gate, *up, *down; /* row bases (the weights, or the cache's packed rows) */
    size_t rb_gu, rb_d;              /* row bytes */
    sl_type t_gu, t_d;               /* types */
    int64_t H;                       /* row length */
    int64_t I;                       /* neurons */
    sl_activation act;               /* activation */
    const uint8_t *xq;               /* [B] prepared inputs, xs bytes apart */
    size_t xs;                       /* bytes per prepared input */
    int64_t B;                       /* batch rows */
    bool per_row;                    /* per-row schedule (flat pairs) instead of the union schedule */
    const int32_t *flat;             /* per-row: neuron of each pair, rows concatenated */
    const int64_t *off;              /* per-row: [B + 1] start of each row in flat */
    const int32_t *rows;             /* union: weight row of item k (NULL: item k is row k, cache slots) */
    const uint8_t *sel;              /* union: [n_items, B] which rows use item k, or NULL = all */
    int64_t n_items;                 /* pairs (per-row) or neurons (union) */
    float *g, *u;                    /* per item (per-row) or per item x B (union): gate, up, then h in g */
    float *out;                      /* [B, H] result */
    float *acc;                      /* unless direct: per-thread accumulators, acc_stride floats apart */
    size_t acc_stride;               /* floats per thread accumulator (B * Hp) */
    int64_t Hp;                      /* accumulator row stride (H padded to 64 bytes, never a multiple of 4 KiB) */
    bool direct;                     /* one thread, B = 1: accumulate straight into out */
    thread_info *ti;                 /* [nth] */
    sl_row_cache *cache;             /* pending row copies to run before use, or NULL */
    bool timing;                     /* record stage times */
    sl_sp_dot_rows_fn dot_rows;      /* row-group kernels of the variant in use */
    sl_sp_axpy_rows_fn axpy_rows;
    sl_sp_kernel_set k;              /* all of them (batched forms for the union schedule) */
    float *tile;                     /* union, B > 1: per thread B * SP_MAX_ROWS floats of dot results */
    bool batched;                    /* union schedule with the batched kernels (all rows of the batch at once) */
    float *hd;                       /* dense_down: [B, I] h scattered here (zero elsewhere), no down phase */
    int g_gu;                        /* neurons per gate/up group (2 rows each) */
    int g_down;                      /* rows per down group */
    const float *gate_pre;           /* [B, I] the caller's gate . x, or NULL: gate rows are dotted */
} sparse_task;

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
    for (int64_t p = s; p < e; p++) t->g[p] = act_apply(t->act, t->g[p]) * t->u[p];
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
            for (int j = 0; j < np; j++) cache_run_job(t->cache, k + j);
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
    for (int64_t q = s * B; q < e * B; q++) t->g[q] = act_apply(t->act, t->g[q]) * t->u[q];
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
            for (int j = 0; j < np; j++) cache_run_job(t->cache, k + j);
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
    for (int64_t q = s * B; q < e * B; q++) t->g[q] = act_apply(t->act, t->g[q]) * t->u[q];
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

static void sparse_worker(void *arg, int ith, int nth) {
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
static void reduce_columns(const sparse_task *t, int n_acc, int ith, int nth) {
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

static void reduce_worker(void *arg, int ith, int nth) {
    reduce_columns(arg, nth, ith, nth); /* the compute task ran on this same pool: nth accumulators */
}

typedef struct prepare_task {
    sl_sp_x_prep_fn prep; /* the kernel set's input preparation */
    sl_type type;     /* weight type the inputs are prepared for */
    const float *x;   /* [B, H] */
    int64_t B, H;     /* shape */
    uint8_t *xq;      /* [B] prepared, xs apart */
    size_t xs;        /* stride */
} prepare_task;

static void prepare_worker(void *arg, int ith, int nth) {
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
static int64_t mask_count(const bool *m, int64_t n) {
    int64_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) c += (int64_t)((load8(m + i) * 0x0101010101010101ULL) >> 56); /* byte sum */
    for (; i < n; i++) c += m[i];
    return c;
}

/* Write the positions of the true entries of m[0..n) to out (ascending); returns how many.
 * Eight 0/1 bytes become an 8-bit mask with one multiply (each byte's bit lands in the top byte
 * at its own position, without carries), whose set bits are then visited. */
static int64_t mask_list(const bool *m, int64_t n, int32_t *out) {
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
    sl_status st = check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (!down_t) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: down_t is NULL");
    if ((st = check_matrix(down_t, I, H, "down_t", err))) return st;
    if (down && (st = check_matrix(down, H, I, "down", err))) return st;
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
        N = mask_count(mask, B * I);
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
    const size_t xs = align64(ks.x_size(gate->type, H));
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
            if (!ws_reserve(ws, cv.off, I)) {
                sl_sparse_ws_free(own_ws);
                return sl_set_error(err, SL_ERR_NOMEM, "sparse mlp: cannot allocate %zu bytes of scratch", cv.off);
            }
            cv.base = ws->arena;
            cv.off = 0;
        }
        carve(&cv, (size_t)B * xs);
        carve(&cv, (size_t)(N + 1) * sizeof(int32_t));
        carve(&cv, (size_t)(B + 1) * sizeof(int64_t));
        carve(&cv, (size_t)I * sizeof(int32_t));
        carve(&cv, use_sel ? (size_t)max_union * (size_t)B : 0);
        carve(&cv, (size_t)n_h * sizeof(float));
        carve(&cv, (size_t)n_h * sizeof(float));
        carve(&cv, !direct ? (size_t)nth * acc_stride * sizeof(float) : 0);
        carve(&cv, (size_t)nth * sizeof(thread_info));
        carve(&cv, (size_t)nth * (size_t)B * SP_MAX_ROWS * sizeof(float));
        carve(&cv, down ? (size_t)B * (size_t)I * sizeof(float) : 0);
        carve(&cv, down ? 2 * (size_t)B * (size_t)I * sizeof(float) : 0);
    }
    cv.off = 0;
    uint8_t *xq = carve(&cv, (size_t)B * xs);
    int32_t *flat = carve(&cv, (size_t)(N + 1) * sizeof(int32_t));
    int64_t *off = carve(&cv, (size_t)(B + 1) * sizeof(int64_t));
    int32_t *U = carve(&cv, (size_t)I * sizeof(int32_t));
    uint8_t *sel = carve(&cv, use_sel ? (size_t)max_union * (size_t)B : 0);
    float *g = carve(&cv, (size_t)n_h * sizeof(float));
    float *u = carve(&cv, (size_t)n_h * sizeof(float));
    float *acc = carve(&cv, !direct ? (size_t)nth * acc_stride * sizeof(float) : 0);
    thread_info *ti = carve(&cv, (size_t)nth * sizeof(thread_info));
    float *tile = carve(&cv, (size_t)nth * (size_t)B * SP_MAX_ROWS * sizeof(float));
    float *hd = carve(&cv, down ? (size_t)B * (size_t)I * sizeof(float) : 0);
    float *gfull = carve(&cv, down ? 2 * (size_t)B * (size_t)I * sizeof(float) : 0), *ufull = gfull + (size_t)B * (size_t)I;

    /* flat per-row lists; index lists are checked for range and repeats here */
    int64_t p = 0;
    for (int64_t b = 0; b < B; b++) {
        off[b] = p;
        if (idx) {
            const uint32_t gen = ws_next_gen(ws);
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
            p += mask_list(mask + b * I, I, flat + p);
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
            for (int64_t q = 0; q < n_list; q++) hd[o + (size_t)list[q]] = act_apply(act, gsrc[o + (size_t)list[q]]) * ufull[o + (size_t)list[q]];
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
     * fused pass over contiguous neurons (sparse_bundle.h) on the lists checked above. */
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
    const bool dense_down = down != NULL && work >= dense_down_min(down->type);
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
        cache_update(cache, U, nU, ws->mark, stats);
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
    if (nth > 1 && (size_t)B * (size_t)H >= ((size_t)1 << 20)) sl_pool_run(pool, prepare_worker, &pt);
    else prepare_worker(&pt, 0, 1);
    const double t_prep = stats ? sl_time_s() : 0.0;

    sl_pool_run(pool, sparse_worker, &t);
    if (cache_used) cache_reset_jobs(cache);
    const double t_comp = stats ? sl_time_s() : 0.0;
    /* Small reductions run on the caller: a second dispatch would cost more than the adds
     * (and on a busy machine, waiting for a descheduled worker costs a time slice). */
    if (dense_down) {
        sl_matmul(pool, down->type, down->data, H, I, hd, B, out);
    } else if (!direct) {
        if (nth == 1 || (size_t)B * (size_t)H * (size_t)nth <= ((size_t)1 << 20)) reduce_columns(&t, nth, 0, 1);
        else sl_pool_run(pool, reduce_worker, &t);
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
    for (long long q = s; q < e; q++) t->g[q] = act_apply(t->act, t->g[q]) * t->u[q];
}

sl_status sl_mlp_dense_forward_pool(sl_pool *pool, sl_sparse_ws *ws, const sl_weight *gate, const sl_weight *up,
                                    const sl_weight *down, sl_activation act, const float *x, int64_t B, float *out,
                                    sl_sparse_mlp_stats *stats, sl_error *err) {
    const double t0 = stats ? sl_time_s() : 0.0;
    int64_t H, I;
    sl_status st = check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (!down) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: down is NULL");
    if ((st = check_matrix(down, H, I, "down", err))) return st;
    if (!x || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: x or out is NULL");
    if (B < 1 || B > SL_MLP_MAX_DIM) return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: batch size %lld must be >= 1", (long long)B);
    size_t n, bytes;
    if (sl_mul_overflow((size_t)B, (size_t)I, &n) || sl_mul_overflow(n, 2 * sizeof(float) + 64, &bytes))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "dense mlp: batch too large");
    sl_sparse_ws *own_ws = NULL;
    if (!ws && !(ws = own_ws = sl_sparse_ws_init())) return sl_set_error(err, SL_ERR_NOMEM, "dense mlp: no memory for scratch");
    if (!ws_reserve(ws, 2 * align64(n * sizeof(float)), 0)) {
        sl_sparse_ws_free(own_ws);
        return sl_set_error(err, SL_ERR_NOMEM, "dense mlp: cannot allocate %zu bytes of scratch", bytes);
    }
    float *g = (float *)ws->arena, *u = (float *)(ws->arena + align64(n * sizeof(float)));
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
    sl_status st = check_gate_up(gate, up, act, &H, &I, err);
    if (st) return st;
    if (down) st = check_matrix(down, H, I, "down", err);
    else if (down_t) st = check_matrix(down_t, I, H, "down_t", err);
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
            h[b * I + i] = act_apply(act, (float)sg) * (float)su;
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
        sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: unsupported weight type %d", (int)w->type);
        return NULL;
    }
    if (!act_supported(act)) {
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
    sl_status st = sl_bundle_init_t(&op->bundle, &op->gate, &op->up, &op->down_t, true, err);
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
    if (!sl_type_traits_of(w->type)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "reference mlp: unsupported type %d", (int)w->type);
    if (w->n_embd < 1 || w->n_ff < 1 || w->n_embd > SL_MLP_MAX_DIM || w->n_ff > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "reference mlp: bad sizes");
    const int64_t H = w->n_embd, I = w->n_ff;
    sl_weight gate = sl_weight_view(w->gate, w->type, I, H), up = sl_weight_view(w->up, w->type, I, H);
    sl_weight down = sl_weight_view(w->down, w->type, H, I), down_t = sl_weight_view(w->down_t, w->type, I, H);
    return sl_mlp_reference_w(&gate, &up, w->down ? &down : NULL, w->down ? NULL : &down_t, act, x, B, mask, out, err);
}
