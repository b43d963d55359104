/*
 * quant.c — scalar reference implementations of the tensor types (see quant.h).
 *
 * These functions define what each block format means; they are deliberately plain C so that a
 * reader can check them against the ggml layouts by eye. Speed lives in src/kernels/.
 */
#include "format/quant.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

static const sl_type_traits traits_f32 = {"f32", 1, 4};
static const sl_type_traits traits_f16 = {"f16", 1, 2};
static const sl_type_traits traits_bf16 = {"bf16", 1, 2};
static const sl_type_traits traits_q8_0 = {"q8_0", SL_QK8_0, sizeof(sl_block_q8_0)};
static const sl_type_traits traits_q4_0 = {"q4_0", SL_QK4_0, sizeof(sl_block_q4_0)};

const sl_type_traits *sl_type_traits_of(int type) {
    switch (type) {
    case SL_TYPE_F32: return &traits_f32;
    case SL_TYPE_F16: return &traits_f16;
    case SL_TYPE_BF16: return &traits_bf16;
    case SL_TYPE_Q8_0: return &traits_q8_0;
    case SL_TYPE_Q4_0: return &traits_q4_0;
    default: return NULL;
    }
}

const char *sl_type_name(int type) {
    const sl_type_traits *t = sl_type_traits_of(type);
    return t ? t->name : NULL;
}

bool sl_type_from_name(const char *name, sl_type *out) {
    static const sl_type all[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
    if (!name) return false;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *a = sl_type_name(all[i]), *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (*a == 0 && *b == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

int64_t sl_type_block_size(sl_type type) {
    const sl_type_traits *t = sl_type_traits_of(type);
    return t ? t->block_size : 0;
}

size_t sl_type_row_size(sl_type type, int64_t n) {
    const sl_type_traits *t = sl_type_traits_of(type);
    if (!t || n < 0 || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}

/* ---- half / bfloat16 ------------------------------------------------------------------------ */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float sl_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t sl_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) {
        /* result is subnormal half (or zero): value / 2^-24, rounded to nearest even */
        float v = bits_f32(absx) * 16777216.0f; /* exact: scaling by a power of two */
        uint32_t r = (uint32_t)v;
        float frac = v - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t e = ((absx >> 23) - 112) << 10;
    uint32_t m = (absx >> 13) & 0x3ff;
    uint32_t rest = absx & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carry into exponent is correct */
    return (uint16_t)(sign | h);
}

float sl_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t sl_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet nan */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

/* ---- rows ------------------------------------------------------------------------------------ */

void sl_dequantize_row_ref(sl_type type, const void *src, float *dst, int64_t n) {
    if (type == SL_TYPE_Q4_0N || type == SL_TYPE_Q8_0N) { /* the bundle layouts, block by block */
        for (int64_t i = 0; i < n / 32; i++) {
            union { sl_block_q4_0 q4; sl_block_q8_0 q8; } blk;
            if (type == SL_TYPE_Q4_0N) sl_q4_0n_get_block(src, n, i, &blk.q4);
            else sl_q8_0n_get_block(src, n, i, &blk.q8);
            sl_dequantize_row_ref(type == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : SL_TYPE_Q8_0, &blk, dst + i * 32, 32);
        }
        return;
    }
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case SL_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_fp16_to_fp32(s[i]);
        break;
    }
    case SL_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_fp32(s[i]);
        break;
    }
    case SL_TYPE_Q8_0: {
        const sl_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SL_QK8_0; j++) dst[i * SL_QK8_0 + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case SL_TYPE_Q4_0: {
        const sl_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / SL_QK4_0; i++) {
            float d = sl_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SL_QK4_0 / 2; j++) {
                dst[i * SL_QK4_0 + j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
                dst[i * SL_QK4_0 + j + SL_QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    }
}

void sl_quantize_row_ref(sl_type type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case SL_TYPE_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = sl_fp32_to_fp16(src[i]);
        break;
    }
    case SL_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = sl_fp32_to_bf16(src[i]);
        break;
    }
    case SL_TYPE_Q8_0: {
        sl_block_q8_0 *b = dst;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            const float *x = src + i * SL_QK8_0;
            float amax = 0.0f;
            for (int j = 0; j < SL_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            for (int j = 0; j < SL_QK8_0; j++) {
                /* issue 8 (found by fuzz_model): a model with NaN/inf weights gives NaN/inf here,
                 * and converting those to an integer is undefined: saturate, NaN -> 0 */
                float v = roundf(x[j] * id);
                b[i].qs[j] = (int8_t)(v >= -128.0f && v <= 127.0f ? v : v > 0 ? 127.0f : v < 0 ? -128.0f : 0.0f);
            }
        }
        break;
    }
    case SL_TYPE_Q4_0: {
        sl_block_q4_0 *b = dst;
        for (int64_t i = 0; i < n / SL_QK4_0; i++) {
            const float *x = src + i * SL_QK4_0;
            /* ggml: scale from the element of largest magnitude, keeping its sign, so that it
             * maps exactly to -8 */
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < SL_QK4_0; j++) {
                if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
            }
            float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
            b[i].d = sl_fp32_to_fp16(d);
            for (int j = 0; j < SL_QK4_0 / 2; j++) {
                float x0 = x[j] * id, x1 = x[j + SL_QK4_0 / 2] * id;
                /* issue 8: as for Q8_0, no float -> int conversion of NaN/inf (NaN -> 8 = zero) */
                float v0 = x0 + 8.5f, v1 = x1 + 8.5f;
                int q0 = v0 >= 0.0f && v0 < 16.0f ? (int)v0 : v0 >= 16.0f ? 15 : v0 < 0.0f ? 0 : 8;
                int q1 = v1 >= 0.0f && v1 < 16.0f ? (int)v1 : v1 >= 16.0f ? 15 : v1 < 0.0f ? 0 : 8;
                if (q0 > 15) q0 = 15;
                if (q1 > 15) q1 = 15;
                b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        break;
    }
    }
}

float sl_dot_row_ref(sl_type type, const void *w, const float *x, int64_t n) {
    float sum = 0.0f;
    switch (type) {
    case SL_TYPE_F32: {
        const float *a = w;
        for (int64_t i = 0; i < n; i++) sum += a[i] * x[i];
        break;
    }
    case SL_TYPE_F16: {
        const uint16_t *a = w;
        for (int64_t i = 0; i < n; i++) sum += sl_fp16_to_fp32(a[i]) * x[i];
        break;
    }
    case SL_TYPE_BF16: {
        const uint16_t *a = w;
        for (int64_t i = 0; i < n; i++) sum += sl_bf16_to_fp32(a[i]) * x[i];
        break;
    }
    case SL_TYPE_Q8_0: {
        const sl_block_q8_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            float s = 0.0f;
            for (int j = 0; j < SL_QK8_0; j++) s += (float)b[i].qs[j] * x[i * SL_QK8_0 + j];
            sum += sl_fp16_to_fp32(b[i].d) * s;
        }
        break;
    }
    case SL_TYPE_Q4_0: {
        const sl_block_q4_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK4_0; i++) {
            const float *xb = x + i * SL_QK4_0;
            float s = 0.0f;
            for (int j = 0; j < SL_QK4_0 / 2; j++) {
                s += (float)((b[i].qs[j] & 0x0f) - 8) * xb[j];
                s += (float)((b[i].qs[j] >> 4) - 8) * xb[j + SL_QK4_0 / 2];
            }
            sum += sl_fp16_to_fp32(b[i].d) * s;
        }
        break;
    }
    }
    return sum;
}

/* ---- Q4_0x4 ---------------------------------------------------------------------------------- */

size_t sl_q4_0x4_size(int64_t rows, int64_t n) {
    int64_t groups = (rows + 3) / 4;
    return (size_t)groups * 4 * sl_type_row_size(SL_TYPE_Q4_0, n) + 64;
}

void sl_q4_0x4_repack(const void *src, int64_t rows, int64_t n, void *dst, int64_t g0, int64_t g1) {
    const int64_t nb = n / SL_QK4_0;
    const size_t row_bytes = (size_t)nb * sizeof(sl_block_q4_0), group_bytes = 4 * row_bytes;
    for (int64_t g = g0; g < g1; g++) {
        uint8_t *qs = (uint8_t *)dst + (size_t)g * group_bytes; /* [nb][4 rows][16] */
        uint8_t *sc = qs + (size_t)nb * 64;                     /* [nb][4 rows] f16 */
        for (int i = 0; i < 4; i++) {
            int64_t r = 4 * g + i;
            const sl_block_q4_0 *row = r < rows ? (const sl_block_q4_0 *)((const uint8_t *)src + (size_t)r * row_bytes) : NULL;
            for (int64_t b = 0; b < nb; b++) {
                if (row) {
                    memcpy(qs + (size_t)b * 64 + 16 * i, row[b].qs, 16);
                    memcpy(sc + (size_t)b * 8 + 2 * i, &row[b].d, 2);
                } else { /* padding row: scale 0 and values 8 encode exact zeros */
                    memset(qs + (size_t)b * 64 + 16 * i, 0x88, 16);
                    memset(sc + (size_t)b * 8 + 2 * i, 0, 2);
                }
            }
        }
    }
}

void sl_q4_0x4_repack_all(const void *src, int64_t rows, int64_t n, void *dst) {
    int64_t groups = (rows + 3) / 4;
    sl_q4_0x4_repack(src, rows, n, dst, 0, groups);
    memset((uint8_t *)dst + sl_q4_0x4_size(rows, n) - 64, 0, 64);
}

void sl_q4_0x4_get_block(const void *w, int64_t n, int64_t r, int64_t b, sl_block_q4_0 *out) {
    const int64_t nb = n / SL_QK4_0;
    const uint8_t *qs = (const uint8_t *)w + (size_t)(r / 4) * 4 * (size_t)nb * sizeof(sl_block_q4_0);
    const uint8_t *sc = qs + (size_t)nb * 64;
    memcpy(out->qs, qs + (size_t)b * 64 + 16 * (r % 4), 16);
    memcpy(&out->d, sc + (size_t)b * 8 + 2 * (r % 4), 2);
}

/* ---- Q4_0N ------------------------------------------------------------------------------------ */

size_t sl_q4_0n_row_size(int64_t n) {
    if (n < 0 || n % SL_QK4_0) return 0;
    return (size_t)((n / SL_QK4_0 + 3) / 4) * 72;
}

/* Offset of value byte j of block b in a Q4_0N row (see quant.h). */
static size_t q4_0n_byte(int64_t b, int j) { return (size_t)(b / 4) * 64 + (size_t)(16 * (j / 4) + 4 * (b % 4) + j % 4); }

void sl_q4_0n_pack_row(const void *src, int64_t n, void *dst) {
    const int64_t nb = n / SL_QK4_0, G = (nb + 3) / 4;
    const sl_block_q4_0 *in = src;
    uint8_t *qs = dst, *sc = qs + (size_t)G * 64;
    for (int64_t g = 0; g < G; g++)
        for (int k = 0; k < 4; k++) {
            const int64_t b = 4 * g + k;
            const uint16_t d = b < nb ? in[b].d : 0; /* padding: scale 0, values 8 (exact zeros) */
            memcpy(sc + 2 * b, &d, 2);
            for (int t = 0; t < 4; t++) {
                uint8_t *o = qs + (size_t)g * 64 + 16 * t + 4 * k;
                if (b < nb) memcpy(o, in[b].qs + 4 * t, 4);
                else memset(o, 0x88, 4);
            }
        }
}

void sl_q4_0n_get_block(const void *row, int64_t n, int64_t b, sl_block_q4_0 *out) {
    const int64_t nb4 = (n / SL_QK4_0 + 3) / 4 * 4;
    const uint8_t *qs = row;
    for (int j = 0; j < 16; j++) out->qs[j] = qs[q4_0n_byte(b, j)];
    memcpy(&out->d, qs + (size_t)nb4 / 4 * 64 + 2 * b, 2);
}

/* ---- Q8_0N ------------------------------------------------------------------------------------ */

size_t sl_q8_0n_row_size(int64_t n) {
    if (n < 0 || n % SL_QK8_0) return 0;
    return (size_t)((n / SL_QK8_0 + 1) / 2) * 68;
}

/* Offset of element j (0..63) of group g in a Q8_0N row: j = 16m + 4t + e sits at 16t + 4m + e. */
static size_t q8_0n_byte(int64_t g, int j) { return (size_t)g * 64 + (size_t)(16 * ((j % 16) / 4) + 4 * (j / 16) + j % 4); }

void sl_q8_0n_pack_row(const void *src, int64_t n, void *dst) {
    const int64_t nb = n / SL_QK8_0, G = (nb + 1) / 2;
    const sl_block_q8_0 *in = src;
    uint8_t *qs = dst, *sc = qs + (size_t)G * 64;
    for (int64_t b = 0; b < 2 * G; b++) {
        const uint16_t d = b < nb ? in[b].d : 0; /* padding: scale 0, values 0 */
        memcpy(sc + 2 * b, &d, 2);
        for (int j = 0; j < 32; j++) qs[q8_0n_byte(b / 2, (int)(b % 2) * 32 + j)] = (uint8_t)((b < nb ? in[b].qs[j] : 0) + 128);
    }
}

void sl_q8_0n_get_block(const void *row, int64_t n, int64_t b, sl_block_q8_0 *out) {
    const int64_t G = (n / SL_QK8_0 + 1) / 2;
    const uint8_t *qs = row;
    for (int j = 0; j < 32; j++) out->qs[j] = (int8_t)(qs[q8_0n_byte(b / 2, (int)(b % 2) * 32 + j)] - 128);
    memcpy(&out->d, qs + (size_t)G * 64 + 2 * b, 2);
}
