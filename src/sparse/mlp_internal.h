/*
 * mlp_internal.h — the sparse operator's private types, shared by its units (internal to
 * src/sparse: sparse_mlp.c, mlp_schedule.c, row_cache.c, mlp_handle.c): the scratch workspace,
 * the active-row cache's state, and the compute task the pool runs.
 * What it is not: an interface for anything outside the operator.
 */
#ifndef SL_SPARSE_MLP_INTERNAL_H
#define SL_SPARSE_MLP_INTERNAL_H

#include "model/bundle_mlp.h"
#include "sparse/sparse_mlp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_MLP_MAX_THREADS 512
#define SP_DENSE_ALL_MIN 0.9 /* active fraction from which the whole MLP runs densely (when down is given) */
/* Active fraction from which the down projection runs densely (when down is given), by the type
 * of down: a Q4_0 down is the cheapest to stream per neuron, so its dense product wins first
 * (measured crossover 0.65-0.7 against Q8_0 or Q4_0 down_t axpys on Zen 4; 0.8 is still below
 * the crossover for Q8_0 and the float types). */
static inline double sp_dense_down_min(sl_type down_type) { return down_type == SL_TYPE_Q4_0 ? 0.65 : 0.8; }
#define ACC_ALIGN_FLOATS 16 /* accumulator rows padded to 64 bytes: no two threads share a cache line */
/* Groups skipped by the software prefetch: while group k is computed, the rows of group
 * k + 1 + SP_PF_AHEAD are fetched (into L2). Fetching only the next group left too little time
 * for gathered rows (the kernels' scale prepass reads a group's first lines at once); one
 * group further measured 3-7% faster on Q4_0 at 10-50% active, two groups no better. */
#define SP_PF_AHEAD 1

static inline size_t sp_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* ---- workspace (sparse_mlp.c) */
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

/* Grow the arena to `bytes` and the per-neuron arrays to n_ff entries; false when out of memory. */
bool sp_ws_reserve(sl_sparse_ws *ws, size_t bytes, int64_t n_ff);
/* The next generation stamp for duplicate detection (clears the stamps when it wraps). */
uint32_t sp_ws_next_gen(sl_sparse_ws *ws);

/* Sequential carving of the arena: first pass (base == NULL) only sums sizes. */
typedef struct carver {
    uint8_t *base; /* arena, or NULL while measuring */
    size_t off;    /* bytes used so far */
} carver;

static inline void *sp_carve(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += sp_align64(bytes);
    return p;
}

/* ---- active-row cache (row_cache.c) */
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

/* Make the cache hold exactly the neurons of U (sorted, nU of them; mark[i] != 0 for members);
 * the row copies are queued as jobs for the compute threads. */
void sp_cache_update(sl_row_cache *c, const int32_t *U, int64_t nU, const uint8_t *mark, sl_sparse_mlp_stats *stats);
/* Run slot s's pending copy, if any. */
void sp_cache_run_job(sl_row_cache *c, int64_t s);
/* Forget the jobs of the last call. */
void sp_cache_reset_jobs(sl_row_cache *c);

/* ---- the compute task (mlp_schedule.c) */
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

typedef struct prepare_task {
    sl_sp_x_prep_fn prep; /* the kernel set's input preparation */
    sl_type type;     /* weight type the inputs are prepared for */
    const float *x;   /* [B, H] */
    int64_t B, H;     /* shape */
    uint8_t *xq;      /* [B] prepared, xs apart */
    size_t xs;        /* stride */
} prepare_task;

/* Pool tasks: the gathered gate/up/down products (arg: sparse_task), the reduction of the
 * per-thread accumulators (arg: sparse_task), the preparation of the inputs (arg: prepare_task). */
void sp_sparse_worker(void *arg, int ith, int nth);
void sp_reduce_worker(void *arg, int ith, int nth);
void sp_prepare_worker(void *arg, int ith, int nth);
/* out = sum of the accumulators of the n_acc compute threads, columns of share ith of nth. */
void sp_reduce_columns(const sparse_task *t, int n_acc, int ith, int nth);
/* Number of true entries of m[0..n), and their positions (ascending) into out. */
int64_t sp_mask_count(const bool *m, int64_t n);
int64_t sp_mask_list(const bool *m, int64_t n, int32_t *out);

#endif
