/*
 * util.c — error formatting, checked allocation and timing helpers (see util.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <stdarg.h>
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

static size_t huge_round(size_t bytes) {
    size_t r;
    if (sl_add_overflow(bytes ? bytes : 1, HUGE_PAGE - 1, &r)) return 0;
    return r & ~(HUGE_PAGE - 1);
}

void *sl_alloc_huge(size_t bytes) {
    size_t len = huge_round(bytes), span;
    if (!len || sl_add_overflow(len, HUGE_PAGE, &span)) return NULL;
    /* over-map by one huge page and trim, so the buffer starts on a 2 MiB boundary */
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(p - raw), tail = span - head - len;
    if (head) munmap(raw, head);
    if (tail) munmap(p + len, tail);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advice only: without it the buffer still works */
#endif
    return p;
}

void sl_free_huge(void *p, size_t bytes) {
    if (p) munmap(p, huge_round(bytes));
}

void *sl_calloc_array(size_t n, size_t size) {
    size_t bytes;
    if (sl_mul_overflow(n, size, &bytes)) return NULL;
    void *p = sl_malloc_aligned(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

double sl_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
