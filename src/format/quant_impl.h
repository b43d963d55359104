/*
 * quant_impl.h — what the type-family files of src/format/ share (internal to src/format/):
 * ggml's rounding helper and the per-family entry points that quant.c dispatches to.
 * What it is not: an interface for other layers (they use quant.h).
 */
#ifndef SL_QUANT_IMPL_H
#define SL_QUANT_IMPL_H

#include "format/quant.h"

#include <math.h>
#include <string.h>

/* ggml's nearest_int: round half to even through the 1.5 * 2^23 trick, valid for |x| < 2^22.
 * Inputs outside that range (only non-finite or absurd weights produce them) are clamped first,
 * and NaN becomes 0, so no input is undefined behaviour; finite inputs in range round exactly as
 * ggml does. */
static inline int sl_nearest_int(float x) {
    if (!(x > -4194303.0f)) x = x != x ? 0.0f : -4194303.0f;
    if (x > 4194303.0f) x = 4194303.0f;
    float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* A float's integer part for a value already known to be in [lo, hi], NaN -> fallback: the
 * (int) conversions of ggml's legacy quantizers without their undefined cases. */
static inline int sl_trunc_clamp(float v, int lo, int hi, int fallback) {
    if (v != v) return fallback;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* Per-family implementations (n a multiple of the family's block). Each returns false for a
 * type it does not own. */
bool sl_legacy_dequantize(sl_type type, const void *src, float *dst, int64_t n);
bool sl_legacy_quantize(sl_type type, const float *src, void *dst, int64_t n);
bool sl_k_dequantize(sl_type type, const void *src, float *dst, int64_t n);
bool sl_k_quantize(sl_type type, const float *src, void *dst, int64_t n);
bool sl_iq_dequantize(sl_type type, const void *src, float *dst, int64_t n);
bool sl_iq_quantize(sl_type type, const float *src, void *dst, int64_t n);

#endif
