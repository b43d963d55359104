/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int test_failures = 0;
int test_passes = 0;

bool test_check(bool cond, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (cond) {
        test_passes++;
        printf("ok ");
        vprintf(fmt, ap);
        printf("\n");
    } else {
        test_failures++;
        printf("not ok ");
        vprintf(fmt, ap);
        printf("   <-- FAILED at %s:%d\n", file, line);
    }
    va_end(ap);
    fflush(stdout);
    return cond;
}

double test_maxdiff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

bool test_close(const float *a, const float *b, size_t n, double tol, const char *file, int line, const char *what) {
    double m = test_maxdiff(a, b, n);
    return test_check(m <= tol, file, line, "%s: maxdiff %.3g <= tol %.3g (n=%zu)", what, m, tol, n);
}

void *test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *size = (size_t)n;
    }
    return buf;
}

uint64_t test_rng_u64(test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

float test_rng_uniform(test_rng *r) { return (float)(test_rng_u64(r) >> 40) / 16777216.0f; }

float test_rng_normal(test_rng *r) {
    float u1 = test_rng_uniform(r), u2 = test_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

int test_summary(void) {
    printf("%d passed, %d failed\n", test_passes, test_failures);
    return test_failures ? 1 : 0;
}

#include <string.h>

const char *test_json_find(const char *from, const char *key) {
    char pat[256];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(from, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

int test_json_ints(const char *json, const char *key, int32_t *out, int max) {
    const char *p = test_json_find(json, key);
    if (!p || *p != '[') return -1;
    p++;
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\t' || *p == '\r') p++;
        if (*p == ']') return n;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n >= max) return -1;
        out[n++] = (int32_t)v;
        p = end;
    }
}

double test_json_number(const char *json, const char *key) {
    const char *p = test_json_find(json, key);
    if (!p) return NAN;
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}
