/*
 * test_threadpool.c — the thread pool: every share of every task runs exactly once on 1..4
 * threads, sums over many tasks come out right, the sleep/wake path works (tasks issued after
 * the workers went to sleep), a 1-thread pool starts no thread, the scratch buffer is aligned
 * and grows. The empty-task round trip is printed for information (timing decides nothing).
 */
#include "testutil.h"

#include "util/threadpool.h"
#include "util/util.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ITEMS 100003

typedef struct sum_task {
    const int *data;             /* N_ITEMS values */
    long long partial[64][8];    /* one 64-byte line per thread */
    atomic_int calls[8];         /* calls per ith */
    atomic_int bad_nth;          /* calls with an unexpected nth */
    int expect_nth;              /* nth every call must see */
} sum_task;

static void sum_worker(void *arg, int ith, int nth) {
    sum_task *t = arg;
    if (nth != t->expect_nth || ith < 0 || ith >= nth) {
        atomic_fetch_add(&t->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&t->calls[ith], 1);
    long long s0, s1, s = 0;
    sl_split_range(N_ITEMS, ith, nth, &s0, &s1);
    for (long long i = s0; i < s1; i++) s += t->data[i];
    t->partial[ith][0] = s;
}

static void empty_task(void *arg, int ith, int nth) { (void)arg, (void)ith, (void)nth; }

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void) {
    int *data = malloc(sizeof(int) * N_ITEMS);
    long long expect = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        data[i] = (i * 7919) % 1000 - 500;
        expect += data[i];
    }

    for (int nth = 1; nth <= 4; nth++) {
        sl_pool *pool = sl_pool_init(nth);
        if (!CHECK(pool != NULL, "pool of %d threads", nth)) continue;
        CHECK(sl_pool_n_threads(pool) == nth, "sl_pool_n_threads == %d", nth);
        sum_task *t = calloc(1, sizeof(*t));
        t->data = data;
        t->expect_nth = nth;
        int wrong = 0;
        const int runs = 2000;
        for (int r = 0; r < runs; r++) {
            /* a few pauses long enough for the workers to go to sleep: exercises the wake path */
            if (r % 500 == 499) sleep_ms(2);
            memset(t->partial, 0, sizeof(t->partial));
            sl_pool_run(pool, sum_worker, t);
            long long s = 0;
            for (int i = 0; i < nth; i++) s += t->partial[i][0];
            if (s != expect) wrong++;
        }
        CHECK(wrong == 0, "%d threads: %d runs, all sums right (%d wrong)", nth, runs, wrong);
        int calls_ok = 1;
        for (int i = 0; i < nth; i++) calls_ok &= atomic_load(&t->calls[i]) == runs;
        CHECK(calls_ok && atomic_load(&t->bad_nth) == 0, "%d threads: every share ran exactly once per task", nth);

        /* round trip of an empty task, for information */
        int reps = 0;
        double t0 = sl_time_s(), t1 = t0;
        while (reps < 20000 && t1 - t0 < 0.2) { /* time-bounded: oversubscribed runs are slow */
            for (int i = 0; i < 100; i++) sl_pool_run(pool, empty_task, NULL);
            reps += 100;
            t1 = sl_time_s();
        }
        printf("# %d threads: empty task round trip %.2f us (%d runs)\n", nth, (t1 - t0) / reps * 1e6, reps);
        free(t);
        sl_pool_free(pool);
    }

    /* -t 1 starts no thread; -t 3 starts two */
    int before = count_threads();
    if (before > 0) {
        sl_pool *p1 = sl_pool_init(1);
        CHECK(count_threads() == before, "1-thread pool starts no thread (%d -> %d)", before, count_threads());
        sl_pool *p3 = sl_pool_init(3);
        CHECK(count_threads() == before + 2, "3-thread pool starts 2 workers (%d -> %d)", before, count_threads());
        sl_pool_free(p3);
        sl_pool_free(p1);
    } else {
        printf("# SKIP thread count: /proc/self/task not readable\n");
    }

    /* NULL pool runs inline */
    sum_task *t = calloc(1, sizeof(*t));
    t->data = data;
    t->expect_nth = 1;
    sl_pool_run(NULL, sum_worker, t);
    CHECK(t->partial[0][0] == expect && sl_pool_n_threads(NULL) == 1, "NULL pool runs the task inline");
    free(t);

    /* scratch */
    sl_pool *p = sl_pool_init(2);
    void *a = sl_pool_scratch(p, 100);
    CHECK(a && ((uintptr_t)a & 63) == 0, "scratch is 64-byte aligned");
    memset(a, 1, 100);
    void *b = sl_pool_scratch(p, 50);
    CHECK(b == a, "smaller request reuses the buffer");
    void *c = sl_pool_scratch(p, 1 << 20);
    CHECK(c && ((uintptr_t)c & 63) == 0, "scratch grows to 1 MB");
    memset(c, 2, 1 << 20);
    CHECK(sl_pool_scratch(NULL, 10) == NULL, "NULL pool has no scratch");
    CHECK(sl_pool_init(0) == NULL, "0 threads refused");
    sl_pool_free(p);

    /* create and destroy pools in a loop (thread start/stop races) */
    int ok = 1;
    for (int i = 0; i < 50; i++) {
        sl_pool *q = sl_pool_init(1 + i % 4);
        if (!q) {
            ok = 0;
            break;
        }
        if (i % 2) sl_pool_run(q, empty_task, NULL);
        sl_pool_free(q);
    }
    CHECK(ok, "50 pools created and freed");
    free(data);
    return test_summary();
}
