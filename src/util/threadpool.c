/*
 * threadpool.c — pthread workers that wait on a generation counter (see threadpool.h).
 *
 * Why our own pool and not OpenMP: the kernels split work themselves from (ith, nth), so results
 * never depend on a runtime's scheduling; we need exact control of how idle workers wait; `-t 1`
 * must run everything on the caller with no thread created; and the library should not drag a
 * compiler-specific runtime (libgomp) into every program that links it or into sanitizer builds.
 *
 * Dispatch design. A decode step issues a few hundred small tasks (one per matrix), each lasting
 * 10-500 µs, so the round trip of a task must cost around a microsecond, not the tens of
 * microseconds of a futex wake-up:
 *   - sl_pool_run publishes fn/arg, sets `pending`, and bumps `generation` (release). Workers
 *     spin on `generation` with a pause instruction, so a spinning worker starts the task within
 *     a cache-line transfer (~0.1-0.5 µs).
 *   - After SPIN_PAUSE_NS of pause-spinning a waiting worker keeps polling but calls
 *     sched_yield between polls: when the machine is oversubscribed (more runnable threads than
 *     cores: other programs, or -t above the core count) the thread everybody waits for gets
 *     the core instead of a spinner; on an idle machine yield returns at once.
 *   - A worker that has waited SPIN_NS without new work goes to sleep on a condition variable,
 *     so an idle pool (between prompts, while the user types) burns no CPU. It announces itself
 *     in `sleepers` before its last check of `generation`; sl_pool_run bumps `generation` before
 *     reading `sleepers`. Both are sequentially consistent, so at least one side sees the other:
 *     either the worker sees the new generation, or the caller sees a sleeper and broadcasts
 *     under the mutex (and the worker re-checks `generation` under that same mutex). Only then
 *     does dispatch pay for the mutex and the wake-up: once per burst, not once per task.
 *   - The caller runs share 0 itself, then waits for `pending` to reach 0: a short pause-spin,
 *     then sched_yield, because on an oversubscribed machine the worker we wait for may need
 *     our core.
 * What it is not: fair or preemptive — tasks are expected to split their work evenly.
 */
#define _POSIX_C_SOURCE 200809L
#include "util/threadpool.h"

#include "util/util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker spins before sleeping: long enough to cover the gaps between the
 * matrices of one token (norms, rope, attention on the caller), short enough that a pool idle
 * between tokens or prompts stops burning a core almost at once. */
#define SPIN_NS 200000LL
/* Pause-spinning before polls start yielding the core (worker and caller side). */
#define SPIN_PAUSE_NS 20000LL

struct sl_pool {
    int n_threads;            /* including the caller */
    pthread_t *threads;       /* [n_threads - 1] workers */
    pthread_mutex_t mu;       /* guards sleeping / waking */
    pthread_cond_t cv_work;   /* broadcast when a new generation starts and someone sleeps */
    _Alignas(64) atomic_uint generation; /* bumped once per task (own cache line: polled) */
    _Alignas(64) atomic_int pending;     /* workers still running the current task */
    _Alignas(64) atomic_int sleepers;    /* workers blocked (or about to block) on cv_work */
    atomic_bool stop;         /* set at free */
    sl_task_fn fn;            /* current task */
    void *arg;                /* its argument */
    void *scratch;            /* grow-only buffer for sl_pool_scratch (64-byte aligned) */
    size_t scratch_bytes;     /* its size */
};

typedef struct worker_arg {
    sl_pool *pool; /* owning pool */
    int ith;       /* 1..n_threads-1 */
} worker_arg;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Wait until generation != seen (or stop); returns the new generation. */
static unsigned wait_generation(sl_pool *pool, unsigned seen) {
    long long start = 0;
    bool yielding = false;
    for (unsigned spins = 0;; spins++) {
        unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed)) return g;
        if (yielding) sched_yield();
        else cpu_relax();
        if ((spins & 63) != 63) continue; /* reading the clock costs ~20 ns: every 64 polls */
        long long t = now_ns();
        if (!start) {
            start = t;
            continue;
        }
        if (t - start >= SPIN_PAUSE_NS) yielding = true;
        if (t - start < SPIN_NS) continue;
        pthread_mutex_lock(&pool->mu);
        atomic_fetch_add(&pool->sleepers, 1); /* seq_cst: ordered before the load below */
        while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
            pthread_cond_wait(&pool->cv_work, &pool->mu);
        atomic_fetch_sub(&pool->sleepers, 1);
        pthread_mutex_unlock(&pool->mu);
        start = 0;
        yielding = false;
    }
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    sl_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = wait_generation(pool, seen);
        if (atomic_load(&pool->stop)) return NULL;
        seen = g;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
}

sl_pool *sl_pool_init(int n_threads) {
    if (n_threads < 1 || n_threads > 1024) return NULL;
    sl_pool *pool = aligned_alloc(64, (sizeof(*pool) + 63) & ~(size_t)63);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pool->threads = NULL;
    pool->fn = NULL;
    pool->arg = NULL;
    pool->scratch = NULL;
    pool->scratch_bytes = 0;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, false);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!pool->threads) goto fail;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof(*wa));
            if (!wa) {
                pool->n_threads = i; /* join only those started */
                goto fail_started;
            }
            wa->pool = pool;
            wa->ith = i;
            if (pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                pool->n_threads = i;
                goto fail_started;
            }
        }
    }
    return pool;
fail_started:
    sl_pool_free(pool);
    return NULL;
fail:
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    free(pool);
    return NULL;
}

void sl_pool_free(sl_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, true);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    free(pool->threads);
    sl_free_aligned(pool->scratch);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    free(pool);
}

int sl_pool_n_threads(const sl_pool *pool) { return pool ? pool->n_threads : 1; }

void sl_pool_run(sl_pool *pool, sl_task_fn fn, void *arg) {
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&pool->generation, 1); /* seq_cst: publishes fn/arg/pending, then... */
    if (atomic_load(&pool->sleepers) > 0) { /* ...this load cannot miss a worker going to sleep */
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv_work);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n_threads);
    long long start = 0;
    bool yielding = false;
    for (unsigned spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (yielding) {
            sched_yield();
            continue;
        }
        cpu_relax();
        if ((spins & 63) == 63) {
            long long t = now_ns();
            if (!start) start = t;
            else if (t - start >= SPIN_PAUSE_NS) yielding = true;
        }
    }
}

void *sl_pool_scratch(sl_pool *pool, size_t bytes) {
    if (!pool) return NULL;
    if (bytes > pool->scratch_bytes) {
        /* grow geometrically so a slowly growing batch does not reallocate every call */
        size_t want = bytes;
        if (pool->scratch_bytes <= SIZE_MAX / 2 && want < pool->scratch_bytes * 2) want = pool->scratch_bytes * 2;
        void *p = sl_malloc_aligned(want);
        if (!p) return NULL;
        sl_free_aligned(pool->scratch);
        pool->scratch = p;
        pool->scratch_bytes = want;
    }
    return pool->scratch;
}
