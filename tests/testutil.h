/*
 * testutil.h — the tiny assertion vocabulary every test program uses.
 *
 * Each check prints "ok <what>" or "not ok <what> ..." and counts failures; a test's main()
 * ends with `return test_summary();`, which prints "N passed, N failed" and returns non-zero
 * when anything failed. Float comparisons always print the max abs diff and the tolerance.
 */
#ifndef SL_TESTUTIL_H
#define SL_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern int test_failures;
extern int test_passes;

/* Record a check. Returns cond. */
bool test_check(bool cond, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) test_check((cond), __FILE__, __LINE__, __VA_ARGS__)

/* max |a[i]-b[i]| over n floats (NaN counts as infinite difference). */
double test_maxdiff(const float *a, const float *b, size_t n);
/* Check maxdiff(a, b) <= tol, printing maxdiff. */
bool test_close(const float *a, const float *b, size_t n, double tol, const char *file, int line, const char *what);
#define CHECK_CLOSE(a, b, n, tol, what) test_close((a), (b), (n), (tol), __FILE__, __LINE__, (what))

/* Read a whole file into a malloc'd buffer (NULL on failure); *size gets its length. */
void *test_read_file(const char *path, size_t *size);

/* Deterministic pseudo-random numbers (xorshift64*). */
typedef struct { uint64_t s; } test_rng;
uint64_t test_rng_u64(test_rng *r);
float test_rng_uniform(test_rng *r); /* [0, 1) */
float test_rng_normal(test_rng *r);  /* N(0, 1) */

int test_summary(void);

/* Minimal JSON helpers for the fixture files (not a general parser): the first occurrence of
 * "key" at or after `from`, followed by ':'. */
/* Read the integer array value of "key" into out (up to max); returns the count or -1. */
int test_json_ints(const char *json, const char *key, int32_t *out, int max);
/* Read the number value of "key"; NAN if absent. */
double test_json_number(const char *json, const char *key);
/* Pointer just after `"key":` (whitespace skipped), or NULL. */
const char *test_json_find(const char *from, const char *key);

#endif
