/*
 * threadpool.h — a fixed pool of worker threads that run one data-parallel task at a time
 * (internal). A task is a function called as fn(arg, ith, nth) on every thread, ith = 0..nth-1,
 * the calling thread acting as ith = 0; sl_pool_run returns when all have finished. Kernels take
 * (ith, nth) and split their own work, so they do not depend on this pool. Not a general job
 * queue: no futures, no nesting (a task must not call sl_pool_run on its own pool).
 *
 * The pool also owns one grow-only scratch buffer (sl_pool_scratch) that kernels use for
 * per-call temporaries — e.g. the quantized copy of a matmul's activations — so the hot path
 * never calls malloc.
 */
#ifndef SL_THREADPOOL_H
#define SL_THREADPOOL_H

#include <stddef.h>

typedef struct sl_pool sl_pool;
typedef void (*sl_task_fn)(void *arg, int ith, int nth);

/* Start n_threads - 1 workers (n_threads >= 1; 1 starts no thread at all). NULL on failure. */
sl_pool *sl_pool_init(int n_threads);
void sl_pool_free(sl_pool *pool);
/* Threads that run each task (1 for a NULL pool). */
int sl_pool_n_threads(const sl_pool *pool);
/* Run fn on all threads and wait. A NULL pool (or a 1-thread pool) runs fn(arg, 0, 1) inline. */
void sl_pool_run(sl_pool *pool, sl_task_fn fn, void *arg);

/* A 64-byte-aligned buffer of at least `bytes` bytes owned by the pool, or NULL (NULL pool,
 * allocation failure). It only grows; its contents are undefined after the next call. Call it
 * from the thread that calls sl_pool_run, never from inside a task; the buffer may then be read
 * and written by the task's threads until the next sl_pool_scratch call. */
void *sl_pool_scratch(sl_pool *pool, size_t bytes);

/* The [start, end) share of `n` items for thread ith of nth (contiguous, sizes differ by <= 1). */
static inline void sl_split_range(long long n, int ith, int nth, long long *start, long long *end) {
    long long base = n / nth, rem = n % nth;
    *start = ith * base + (ith < rem ? ith : rem);
    *end = *start + base + (ith < rem ? 1 : 0);
}

#endif
