/*
 * util.c — error formatting, checked allocation and timing helpers (see util.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "util/util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

sl_status sl_set_error(sl_error *err, sl_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

void sl_clear_error(sl_error *err) {
    if (err) {
        err->code = SL_OK;
        err->message[0] = 0;
    }
}

const char *sl_status_str(sl_status s) {
    switch (s) {
    case SL_OK: return "ok";
    case SL_ERR_INVALID_ARG: return "invalid argument";
    case SL_ERR_IO: return "i/o error";
    case SL_ERR_FORMAT: return "bad file format";
    case SL_ERR_UNSUPPORTED: return "unsupported";
    case SL_ERR_NOMEM: return "out of memory";
    case SL_ERR_RANGE: return "out of range";
    }
    return "unknown status";
}

void *sl_malloc_aligned(size_t bytes) {
    if (bytes == 0) bytes = 1;
    size_t rounded;
    if (sl_add_overflow(bytes, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    return aligned_alloc(64, rounded);
}

void sl_free_aligned(void *p) { free(p); }

#define HUGE_PAGE ((size_t)2 << 20)

void *sl_alloc_huge(size_t bytes) {
    if (bytes < HUGE_PAGE) return sl_malloc_aligned(bytes);
    size_t rounded;
    if (sl_add_overflow(bytes, HUGE_PAGE - 1, &rounded)) return NULL;
    rounded &= ~(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, rounded, MADV_HUGEPAGE); /* advice only: without it the buffer still works */
#endif
    return p;
}

void sl_free_huge(void *p) { free(p); /* both paths allocate with aligned_alloc */ }

void *sl_calloc_array(size_t n, size_t size) {
    size_t bytes;
    if (sl_mul_overflow(n, size, &bytes)) return NULL;
    void *p = sl_malloc_aligned(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

double sl_time_s(void) {
    /* SKIPLLAMA_CLOCK=cpu: the calling thread's CPU time (read once) */
    static _Atomic int clock_kind = -1;
    int ck = atomic_load_explicit(&clock_kind, memory_order_relaxed);
    if (ck < 0) {
        const char *e = getenv("SKIPLLAMA_CLOCK");
        ck = e && !strcmp(e, "cpu");
        atomic_store_explicit(&clock_kind, ck, memory_order_relaxed);
    }
    struct timespec ts;
    clock_gettime(ck ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
