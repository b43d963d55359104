/*
 * util.h — small internal helpers shared by the library's source files: error reporting
 * into sl_error, overflow-checked size arithmetic, monotonic time. Not public API.
 */
#ifndef SL_UTIL_H
#define SL_UTIL_H

#include "skipllama.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SL_PRINTF(a, b)
#endif

/* Fill *err (if non-NULL) with code and a printf-style message; returns code. */
sl_status sl_set_error(sl_error *err, sl_status code, const char *fmt, ...) SL_PRINTF(3, 4);
/* Clear *err to SL_OK (if non-NULL). */
void sl_clear_error(sl_error *err);

/* a * b and a + b into *out; false on overflow. */
static inline bool sl_mul_overflow(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline bool sl_add_overflow(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }

/* Allocate n * size bytes (zeroed) or NULL on overflow/failure. 64-byte aligned. */
void *sl_calloc_array(size_t n, size_t size);
void *sl_malloc_aligned(size_t bytes);
void sl_free_aligned(void *p);
/* Large buffers that are read by random row gathers (neuron bundles, the sparse operator's
 * transposed down and row cache): from 2 MiB up, 2 MiB-aligned and advised to use transparent
 * huge pages where the kernel allows, so that a gather touching a new row does not also miss the
 * TLB (measured: ~20% of a 10%-active Q4_0 call, and half the in-model gather bandwidth on the
 * mmapped file's 4 KiB pages); smaller ones are ordinary 64-byte-aligned allocations. Not
 * zeroed. NULL on failure or overflow. Free with sl_free_huge. */
void *sl_alloc_huge(size_t bytes);
void sl_free_huge(void *p);

/* Seconds from a monotonic clock — or, when the environment has SKIPLLAMA_CLOCK=cpu, the calling
 * thread's CPU time (for one-thread benchmarks on a busy machine: it leaves out the time the
 * thread spends descheduled; `bench` reads the same switch). */
double sl_time_s(void);

#endif
