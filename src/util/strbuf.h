/*
 * strbuf.h — a small growable byte buffer, always NUL-terminated (internal): what the tokenizer
 * and the chat templates build text in. What it is not: a string library.
 */
#ifndef SL_UTIL_STRBUF_H
#define SL_UTIL_STRBUF_H

#include "util/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct strbuf {
    char *data; /* bytes (malloc'd) */
    size_t n;   /* used */
    size_t cap; /* allocated */
} strbuf;

static inline bool sb_reserve(strbuf *b, size_t extra) {
    size_t need;
    if (sl_add_overflow(b->n, extra, &need)) return false;
    need += 1; /* room for a terminating NUL */
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return false;
    b->data = p;
    b->cap = cap;
    p[b->n] = 0; /* a fresh buffer is an empty string, not garbage */
    return true;
}

static inline bool sb_append(strbuf *b, const void *p, size_t n) {
    if (!sb_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->n, p, n);
    b->n += n;
    b->data[b->n] = 0;
    return true;
}

static inline bool sb_str(strbuf *b, const char *s) { return sb_append(b, s, strlen(s)); }

#endif
