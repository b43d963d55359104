/*
 * quant.c — the table of tensor types (traits, names, which activation format each is multiplied
 * with), the scalar entry points that dispatch to the type families (quant_legacy.c, quant_k.c,
 * quant_iq.c), half / bfloat16 conversions, and the internal row layouts Q4_0x4, Q4_0N, Q8_0N
 * (see quant.h). These functions define what each block format means; they are deliberately plain
 * C. Speed lives in src/kernels/.
 */
#include "format/quant_impl.h"

#include <ctype.h>

typedef struct type_row {
    sl_type type;
    sl_type_traits traits;
    bool in_files; /* a tensor type (false: an activation format only) */
} type_row;

/* ggml's names ("q4_K"), block sizes and block bytes */
static const type_row type_table[] = {
    {SL_TYPE_F32, {"f32", 1, 4}, true},
    {SL_TYPE_F16, {"f16", 1, 2}, true},
    {SL_TYPE_BF16, {"bf16", 1, 2}, true},
    {SL_TYPE_Q8_0, {"q8_0", 32, sizeof(sl_block_q8_0)}, true},
    {SL_TYPE_Q4_0, {"q4_0", 32, sizeof(sl_block_q4_0)}, true},
    {SL_TYPE_Q4_1, {"q4_1", 32, sizeof(sl_block_q4_1)}, true},
    {SL_TYPE_Q5_0, {"q5_0", 32, sizeof(sl_block_q5_0)}, true},
    {SL_TYPE_Q5_1, {"q5_1", 32, sizeof(sl_block_q5_1)}, true},
    {SL_TYPE_Q2_K, {"q2_K", SL_QK_K, sizeof(sl_block_q2_K)}, true},
    {SL_TYPE_Q3_K, {"q3_K", SL_QK_K, sizeof(sl_block_q3_K)}, true},
    {SL_TYPE_Q4_K, {"q4_K", SL_QK_K, sizeof(sl_block_q4_K)}, true},
    {SL_TYPE_Q5_K, {"q5_K", SL_QK_K, sizeof(sl_block_q5_K)}, true},
    {SL_TYPE_Q6_K, {"q6_K", SL_QK_K, sizeof(sl_block_q6_K)}, true},
    {SL_TYPE_IQ4_NL, {"iq4_nl", 32, sizeof(sl_block_iq4_nl)}, true},
    {SL_TYPE_IQ4_XS, {"iq4_xs", SL_QK_K, sizeof(sl_block_iq4_xs)}, true},
    {SL_TYPE_Q8_1, {"q8_1", 32, sizeof(sl_block_q8_1)}, false},
    {SL_TYPE_Q8_K, {"q8_K", SL_QK_K, sizeof(sl_block_q8_K)}, false},
};
#define N_TYPES (sizeof(type_table) / sizeof(type_table[0]))

static const type_row *row_of(int type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if ((int)type_table[i].type == type) return &type_table[i];
    return NULL;
}

const sl_type_traits *sl_type_traits_of(int type) {
    const type_row *r = row_of(type);
    return r && r->in_files ? &r->traits : NULL;
}

const sl_type_traits *sl_any_traits_of(int type) {
    const type_row *r = row_of(type);
    return r ? &r->traits : NULL;
}

const char *sl_type_name(int type) {
    const sl_type_traits *t = sl_type_traits_of(type);
    return t ? t->name : NULL;
}

bool sl_type_from_name(const char *name, sl_type *out) {
    if (!name) return false;
    for (size_t i = 0; i < N_TYPES; i++) {
        if (!type_table[i].in_files) continue;
        const char *a = type_table[i].traits.name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (*a == 0 && *b == 0) {
            *out = type_table[i].type;
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

size_t sl_any_row_size(sl_type type, int64_t n) {
    const sl_type_traits *t = sl_any_traits_of(type);
    if (!t || n < 0 || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}

sl_type sl_act_type_of(sl_type type) {
    switch (type) {
    case SL_TYPE_Q4_0:
    case SL_TYPE_Q5_0:
    case SL_TYPE_Q8_0:
    case SL_TYPE_IQ4_NL: return SL_TYPE_Q8_0;
    case SL_TYPE_Q4_1:
    case SL_TYPE_Q5_1: return SL_TYPE_Q8_1;
    case SL_TYPE_Q2_K:
    case SL_TYPE_Q3_K:
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K:
    case SL_TYPE_Q6_K:
    case SL_TYPE_IQ4_XS: return SL_TYPE_Q8_K;
    default: return SL_TYPE_F32;
    }
}

const char *sl_ftype_name(int32_t ftype) {
    switch (ftype & ~1024) { /* 1024: llama.cpp's "guessed" flag */
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 21: return "Q2_K - Small";
    case 25: return "IQ4_NL - 4.5 bpw";
    case 30: return "IQ4_XS - 4.25 bpw";
    case 32: return "BF16";
    default: return NULL;
    }
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
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SL_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_fp16_to_fp32(s[i]);
        return;
    }
    case SL_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_fp32(s[i]);
        return;
    }
    default:
        if (!sl_legacy_dequantize(type, src, dst, n) && !sl_k_dequantize(type, src, dst, n)) sl_iq_dequantize(type, src, dst, n);
    }
}

void sl_quantize_row_ref(sl_type type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SL_TYPE_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = sl_fp32_to_fp16(src[i]);
        return;
    }
    case SL_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = sl_fp32_to_bf16(src[i]);
        return;
    }
    default:
        if (!sl_legacy_quantize(type, src, dst, n) && !sl_k_quantize(type, src, dst, n)) sl_iq_quantize(type, src, dst, n);
    }
}

float sl_dot_row_ref(sl_type type, const void *w, const float *x, int64_t n) {
    float sum = 0.0f;
    switch (type) {
    case SL_TYPE_F32: {
        const float *a = w;
        for (int64_t i = 0; i < n; i++) sum += a[i] * x[i];
        return sum;
    }
    case SL_TYPE_F16: {
        const uint16_t *a = w;
        for (int64_t i = 0; i < n; i++) sum += sl_fp16_to_fp32(a[i]) * x[i];
        return sum;
    }
    case SL_TYPE_BF16: {
        const uint16_t *a = w;
        for (int64_t i = 0; i < n; i++) sum += sl_bf16_to_fp32(a[i]) * x[i];
        return sum;
    }
    case SL_TYPE_Q8_0: { /* per block: the integer values times x, then the scale */
        const sl_block_q8_0 *b = w;
        for (int64_t i = 0; i < n / SL_QK8_0; i++) {
            float s = 0.0f;
            for (int j = 0; j < SL_QK8_0; j++) s += (float)b[i].qs[j] * x[i * SL_QK8_0 + j];
            sum += sl_fp16_to_fp32(b[i].d) * s;
        }
        return sum;
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
        return sum;
    }
    default: { /* the other block types: each block decoded, then its plain dot */
        const sl_type_traits *t = sl_type_traits_of(type);
        if (!t) return 0.0f;
        float tmp[SL_QK_K];
        for (int64_t i = 0; i < n / t->block_size; i++) {
            sl_dequantize_row_ref(type, (const uint8_t *)w + (size_t)i * t->type_size, tmp, t->block_size);
            float s = 0.0f;
            for (int64_t j = 0; j < t->block_size; j++) s += tmp[j] * x[i * t->block_size + j];
            sum += s;
        }
        return sum;
    }
    }
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

void sl_q4_0n_unpack_row(const void *row, int64_t n, void *dst) {
    const int64_t nb = n / SL_QK4_0, G = (nb + 3) / 4;
    const uint8_t *qs = row, *sc = qs + (size_t)G * 64;
    sl_block_q4_0 *out = dst;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *g = qs + (size_t)(b / 4) * 64 + 4 * (b % 4);
        for (int t = 0; t < 4; t++) memcpy(out[b].qs + 4 * t, g + 16 * t, 4);
        memcpy(&out[b].d, sc + 2 * b, 2);
    }
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
    for (int64_t g = 0; g < G; g++) {
        /* element 16m + 4t + e of the pair goes to byte 16t + 4m + e, as q + 128: a 4 x 4
         * transpose of 4-byte words, each word's sign bits flipped */
        uint8_t pair[64];
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * g + h;
            if (b < nb) memcpy(pair + 32 * h, in[b].qs, 32);
            else memset(pair + 32 * h, 0, 32); /* padding: scale 0, values 0 */
            const uint16_t d = b < nb ? in[b].d : 0;
            memcpy(sc + 2 * b, &d, 2);
        }
        for (int t = 0; t < 4; t++)
            for (int m = 0; m < 4; m++) {
                uint32_t w;
                memcpy(&w, pair + 16 * m + 4 * t, 4);
                w ^= 0x80808080u;
                memcpy(qs + (size_t)g * 64 + 16 * t + 4 * m, &w, 4);
            }
    }
}

void sl_q8_0n_unpack_row(const void *row, int64_t n, void *dst) {
    const int64_t nb = n / SL_QK8_0, G = (nb + 1) / 2;
    const uint8_t *qs = row, *sc = qs + (size_t)G * 64;
    sl_block_q8_0 *out = dst;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *g = qs + (size_t)(b / 2) * 64;
        for (int h = 0; h < 2; h++) /* elements 16m + 4t + e, m = 2 (b % 2) + h, sit at 16t + 4m + e */
            for (int t = 0; t < 4; t++) {
                const uint8_t *src = g + 16 * t + 4 * (2 * (b % 2) + h);
                for (int e = 0; e < 4; e++) out[b].qs[16 * h + 4 * t + e] = (int8_t)(src[e] ^ 0x80);
            }
        memcpy(&out[b].d, sc + 2 * b, 2);
    }
}

void sl_q8_0n_get_block(const void *row, int64_t n, int64_t b, sl_block_q8_0 *out) {
    const int64_t G = (n / SL_QK8_0 + 1) / 2;
    const uint8_t *qs = row;
    for (int j = 0; j < 32; j++) out->qs[j] = (int8_t)(qs[q8_0n_byte(b / 2, (int)(b % 2) * 32 + j)] - 128);
    memcpy(&out->d, qs + (size_t)G * 64 + 2 * b, 2);
}

/* ---- Q4_0C / Q8_0C ------------------------------------------------------------------------------- */

size_t sl_col_row_size(sl_type t, int64_t n) {
    if (n < 1 || n % 32) return 0;
    if (t == SL_TYPE_Q4_0C) return (size_t)((n + 63) / 64) * 32;
    if (t == SL_TYPE_Q8_0C) return (size_t)n;
    return 0;
}

static int swap34(int b) { return (b & ~24) | ((b & 8) << 1) | ((b & 16) >> 1); }

/* Byte holding element e, and (Q4_0C) whether in the high nibble. */
static size_t col_byte(sl_type t, int64_t e, int *high) {
    if (t == SL_TYPE_Q4_0C) {
        const int64_t c = e / 64, r = e % 64;
        *high = r >= 32;
        return (size_t)(32 * c + swap34((int)(r % 32))); /* swap34 is its own inverse */
    }
    *high = 0;
    return (size_t)(32 * (e / 32) + swap34((int)(e % 32)));
}

void sl_col_set(sl_type t, void *row, int64_t e, int q) {
    int high;
    uint8_t *p = (uint8_t *)row + col_byte(t, e, &high);
    if (t == SL_TYPE_Q8_0C) *p = (uint8_t)(q + 128);
    else *p = high ? (uint8_t)((*p & 0x0f) | (q << 4)) : (uint8_t)((*p & 0xf0) | (q & 0x0f));
}

int sl_col_get(sl_type t, const void *row, int64_t e) {
    int high;
    const uint8_t v = ((const uint8_t *)row)[col_byte(t, e, &high)];
    if (t == SL_TYPE_Q8_0C) return (int)v - 128;
    return high ? v >> 4 : v & 0x0f;
}

void sl_col_dequantize(sl_type t, const void *row, const uint16_t *d, float *dst, int64_t n) {
    const int off = t == SL_TYPE_Q4_0C ? 8 : 0;
    for (int64_t e = 0; e < n; e++) dst[e] = sl_fp16_to_fp32(d[e]) * (float)(sl_col_get(t, row, e) - off);
}

float sl_col_quantize_coef(const float *a, int nr, int8_t *k) {
    float amax = 0.0f;
    for (int r = 0; r < nr; r++) amax = fmaxf(amax, fabsf(a[r]));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    for (int r = 0; r < nr; r++) {
        const float v = roundf(a[r] * id); /* as sl_quantize_row_ref(Q8_0): NaN -> 0, saturated */
        k[r] = (int8_t)(v >= -128.0f && v <= 127.0f ? v : v > 0 ? 127.0f : v < 0 ? -128.0f : 0.0f);
    }
    return sl_fp16_to_fp32(sl_fp32_to_fp16(d));
}
