/*
 * quant.h — tensor element types and their block formats (internal).
 *
 * What it is for: the exact ggml block layouts of the weight types skipllama reads (F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the K-quants Q2_K..Q6_K, IQ4_NL, IQ4_XS) and of the
 * activation formats ggml multiplies them with (Q8_0, Q8_1, Q8_K), conversions between them and
 * f32 (bit-exact with ggml's reference dequantizers; quantizers that make the bytes llama.cpp's
 * quantizer makes without an importance matrix), and the plain scalar reference dot product of one
 * weight row with an f32 vector. Every fast kernel in src/kernels/ is tested against these
 * references. What it is not: fast. Nothing here uses SIMD.
 *
 * Files: quant.c (traits, names, dispatch, half/bf16, the internal row layouts), quant_legacy.c
 * (32-element blocks), quant_k.c (256-element K-quant super-blocks and Q8_K), quant_iq.c (IQ4).
 * Adding a type: a block struct, a row in the traits table of quant.c, and its three reference
 * functions in a family file; kernels fall back to the reference until given a fast path.
 */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include "skipllama.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define SL_QK4_0 32
#define SL_QK8_0 32
#define SL_QK_K 256 /* elements per K-quant super-block */

/* Activation-only formats (never a tensor in a file): ggml's ids, outside the public enum. */
#define SL_TYPE_Q8_1 ((sl_type)9)  /* Q8_0 plus s = d * sum(qs), for Q4_1 / Q5_1 weights */
#define SL_TYPE_Q8_K ((sl_type)15) /* 256 int8 values, f32 scale, 16 sums of 16: K-quants, IQ4_XS */

/* Q4_0: 32 weights = d * (q - 8), q in 0..15; byte j holds element j (low nibble) and
 * element j + 16 (high nibble). 18 bytes. */
typedef struct {
    uint16_t d;              /* scale, IEEE half */
    uint8_t qs[SL_QK4_0 / 2]; /* nibbles */
} sl_block_q4_0;

/* Q8_0: 32 weights = d * q, q in -127..127. 34 bytes. */
typedef struct {
    uint16_t d;          /* scale, IEEE half */
    int8_t qs[SL_QK8_0]; /* quants */
} sl_block_q8_0;

/* Q4_1: 32 weights = d * q + m, q in 0..15, nibbles as Q4_0. 20 bytes. */
typedef struct {
    uint16_t d, m;   /* scale and minimum, halves */
    uint8_t qs[16];  /* nibbles */
} sl_block_q4_1;

/* Q5_0: 32 weights = d * (q - 16), q in 0..31: low 4 bits as Q4_0's nibbles, bit 4 of element j
 * in bit j of the little-endian 32-bit qh. 22 bytes. */
typedef struct {
    uint16_t d;     /* scale */
    uint8_t qh[4];  /* fifth bits */
    uint8_t qs[16]; /* low nibbles */
} sl_block_q5_0;

/* Q5_1: 32 weights = d * q + m, q in 0..31, bits as Q5_0. 24 bytes. */
typedef struct {
    uint16_t d, m;  /* scale, minimum */
    uint8_t qh[4];  /* fifth bits */
    uint8_t qs[16]; /* low nibbles */
} sl_block_q5_1;

/* Q8_1 (activations): Q8_0 plus s = fp16(d * sum(qs)). 36 bytes. */
typedef struct {
    uint16_t d, s;       /* scale, scale times the sum of the quants */
    int8_t qs[SL_QK8_0]; /* quants */
} sl_block_q8_1;

/* Q2_K: 256 weights in 16 sub-blocks of 16: x = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3.
 * Element 128h + 32s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of qs[32h + l]. 84 bytes. */
typedef struct {
    uint8_t scales[16]; /* 4-bit scale (low) and 4-bit min (high) per sub-block */
    uint8_t qs[64];     /* 2-bit values */
    uint16_t d, dmin;   /* super-block scales, halves */
} sl_block_q2_K;

/* Q3_K: 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), q in 0..7: low 2 bits as Q2_K, bit 2
 * of element 32k + l (l < 32) in bit k of hmask[l]; 6-bit scales packed in 12 bytes (low nibbles
 * in bytes 0..7, high 2 bits in bytes 8..11). 110 bytes. */
typedef struct {
    uint8_t hmask[32];  /* third bits */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 6-bit scales, offset 32 */
    uint16_t d;         /* super-block scale */
} sl_block_q3_K;

/* Q4_K: 8 sub-blocks of 32: x = d * sc * q - dmin * m, q in 0..15; 6-bit sc and m packed in 12
 * bytes; element 64h + l is the low nibble of qs[32h + l], 64h + 32 + l its high nibble.
 * 144 bytes. */
typedef struct {
    uint16_t d, dmin;   /* super-block scales */
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[128];    /* nibbles */
} sl_block_q4_K;

/* Q5_K: as Q4_K with a fifth bit: element 64h + l has bit 2h of qh[l], 64h + 32 + l bit 2h+1.
 * 176 bytes. */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32]; /* fifth bits */
    uint8_t qs[128];
} sl_block_q5_K;

/* Q6_K: 16 sub-blocks of 16: x = d * sc * (q - 32), q in 0..63, sc int8; low nibbles in ql,
 * top 2 bits in qh (see quant_k.c). 210 bytes. */
typedef struct {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* sub-block scales */
    uint16_t d;        /* super-block scale */
} sl_block_q6_K;

/* Q8_K (activations): x = d * q, q in -127..127, d an f32 (may be negative), bsums[j] = sum of
 * qs[16j..16j+15]. 292 bytes. */
typedef struct {
    float d;
    int8_t qs[SL_QK_K];
    int16_t bsums[SL_QK_K / 16];
} sl_block_q8_K;

/* IQ4_NL: 32 weights = d * kvalues[q], q a nibble (laid out as Q4_0's). 18 bytes. */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} sl_block_iq4_nl;

/* IQ4_XS: 8 sub-blocks of 32: x = d * (ls - 32) * kvalues[q], ls 6 bits (low 4 in scales_l, nibble
 * per sub-block; high 2 in scales_h, 2 bits per sub-block); nibbles per sub-block as IQ4_NL.
 * 136 bytes. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} sl_block_iq4_xs;

/* The IQ4 value table (ggml's kvalues_iq4nl). */
extern const int8_t sl_iq4nl_values[16];

_Static_assert(sizeof(sl_block_q4_0) == 18, "q4_0 block must be 18 bytes");
_Static_assert(sizeof(sl_block_q8_0) == 34, "q8_0 block must be 34 bytes");
_Static_assert(sizeof(sl_block_q4_1) == 20, "q4_1 block must be 20 bytes");
_Static_assert(sizeof(sl_block_q5_0) == 22, "q5_0 block must be 22 bytes");
_Static_assert(sizeof(sl_block_q5_1) == 24, "q5_1 block must be 24 bytes");
_Static_assert(sizeof(sl_block_q8_1) == 36, "q8_1 block must be 36 bytes");
_Static_assert(sizeof(sl_block_q2_K) == 84, "q2_K block must be 84 bytes");
_Static_assert(sizeof(sl_block_q3_K) == 110, "q3_K block must be 110 bytes");
_Static_assert(sizeof(sl_block_q4_K) == 144, "q4_K block must be 144 bytes");
_Static_assert(sizeof(sl_block_q5_K) == 176, "q5_K block must be 176 bytes");
_Static_assert(sizeof(sl_block_q6_K) == 210, "q6_K block must be 210 bytes");
_Static_assert(sizeof(sl_block_q8_K) == 292, "q8_K block must be 292 bytes");
_Static_assert(sizeof(sl_block_iq4_nl) == 18, "iq4_nl block must be 18 bytes");
_Static_assert(sizeof(sl_block_iq4_xs) == 136, "iq4_xs block must be 136 bytes");

typedef struct sl_type_traits {
    const char *name;  /* "f32", "q8_0", ... */
    int64_t block_size; /* elements per block */
    size_t type_size;   /* bytes per block */
} sl_type_traits;

/* Traits of a supported tensor type, or NULL for any other id (including unknown ggml types and
 * the activation-only formats). */
const sl_type_traits *sl_type_traits_of(int type);
/* Traits of an activation format (SL_TYPE_Q8_0, SL_TYPE_Q8_1, SL_TYPE_Q8_K) or a tensor type. */
const sl_type_traits *sl_any_traits_of(int type);
/* The activation format ggml's vec_dot_type pairs with weights of `type`: Q8_0 for Q4_0, Q5_0,
 * Q8_0 and IQ4_NL; Q8_1 for Q4_1 and Q5_1; Q8_K for the K-quants and IQ4_XS; F32 for float
 * weights (and any other type). */
sl_type sl_act_type_of(sl_type type);
/* Bytes of an n-element row of an activation format or tensor type (0 when n is not a multiple
 * of its block). */
size_t sl_any_row_size(sl_type type, int64_t n);

/* ---- Q4_0x4: Q4_0 repacked for the matrix kernels (an internal layout, never in a file) ----
 * Rows in groups of 4 (the last group padded with all-zero rows). A group of n-element rows is
 * 4 * sl_type_row_size(Q4_0, n) bytes: first, for each block b, the 16 value bytes of rows
 * 4g, 4g+1, 4g+2, 4g+3 in turn (64 bytes per block: one 512-bit load feeds four rows); then,
 * for each block b, the four f16 scales in the same row order (8 bytes per block). Same bytes
 * as Q4_0, reordered: values and scales are bit-identical, so every dot product is too. */
#define SL_TYPE_Q4_0X4 ((sl_type)1004)

/* Bytes of a Q4_0x4 matrix of `rows` rows of n elements (n a multiple of 32), plus 64 bytes of
 * zeros at the end that lets vector gathers of the last scale read a whole dword. */
size_t sl_q4_0x4_size(int64_t rows, int64_t n);
/* Repack row groups [g0, g1) of a Q4_0 matrix (rows x n, row-major) into dst, a buffer of
 * sl_q4_0x4_size bytes; groups are independent, so threads may fill disjoint ranges. The
 * caller zeroes the tail padding (or uses sl_q4_0x4_repack_all). */
void sl_q4_0x4_repack(const void *src, int64_t rows, int64_t n, void *dst, int64_t g0, int64_t g1);
void sl_q4_0x4_repack_all(const void *src, int64_t rows, int64_t n, void *dst);
/* Block b of row r of a Q4_0x4 matrix, as a plain Q4_0 block. */
void sl_q4_0x4_get_block(const void *w, int64_t n, int64_t r, int64_t b, sl_block_q4_0 *out);

/* ---- Q4_0N: one Q4_0 row laid out for the neuron-bundle kernels (internal, never in a file) ----
 * A row of n elements (n a multiple of 32) in groups of 4 blocks (the last group padded with
 * blocks of scale 0 and values 8, exact zeros). Group g is 64 bytes: byte 16t + 4k + e holds
 * value byte 4t + e (low nibble: element 4t + e, high nibble: element 4t + e + 16) of block
 * 4g + k, for t, k, e in 0..3 — so 32-bit lane 4t + k of one 512-bit load belongs to block k,
 * and the 4 blocks' scales spread over the lanes with one 128-bit broadcast. After all groups
 * come the f16 scales of every block in order (4 per group). Same values and scales as the
 * Q4_0 row: every product is bit-identical. Used by bundle.c when the AVX-512 kernels
 * run (bundle_rows_avx512.c). */
#define SL_TYPE_Q4_0N ((sl_type)1005)

/* Bytes of a Q4_0N row of n elements: 72 per group of 4 blocks; 0 when n % 32 != 0. */
size_t sl_q4_0n_row_size(int64_t n);
/* Re-lay one Q4_0 row of n elements (src, sl_type_row_size(Q4_0, n) bytes) into dst
 * (sl_q4_0n_row_size(n) bytes). */
void sl_q4_0n_pack_row(const void *src, int64_t n, void *dst);
/* Block b (< n / 32) of a Q4_0N row, as a plain Q4_0 block. */
void sl_q4_0n_get_block(const void *row, int64_t n, int64_t b, sl_block_q4_0 *out);
/* The whole Q4_0N row back as the plain Q4_0 row it was packed from (the inverse of pack). */
void sl_q4_0n_unpack_row(const void *row, int64_t n, void *dst);

/* ---- Q8_0N: one Q8_0 row laid out for the neuron-bundle kernels (internal, never in a file) ----
 * A row of n elements (n a multiple of 32) in groups of 2 blocks (64 values; an odd last block
 * is padded with a block of scale 0 and values 0). Group g is 64 bytes: byte 16t + 4m + e holds
 * element 16m + 4t + e of the group (t, m, e in 0..3) as an unsigned byte q + 128 — so the
 * 4 x 4 byte interleave of 4 rows (unpack epi8 then epi16) yields 16 consecutive elements per
 * vector, and 32-bit lane 4t + m of one load belongs to block m / 2. After all groups come the
 * f16 scales of every block in order (2 per group). Same values and scales as the Q8_0 row
 * (offset by 128): every product is bit-identical. */
#define SL_TYPE_Q8_0N ((sl_type)1006)

/* Bytes of a Q8_0N row of n elements: 68 per group of 2 blocks; 0 when n % 32 != 0. */
size_t sl_q8_0n_row_size(int64_t n);
/* Re-lay one Q8_0 row of n elements into dst (sl_q8_0n_row_size(n) bytes). */
void sl_q8_0n_pack_row(const void *src, int64_t n, void *dst);
/* Block b (< n / 32) of a Q8_0N row, as a plain Q8_0 block. */
void sl_q8_0n_get_block(const void *row, int64_t n, int64_t b, sl_block_q8_0 *out);
/* The whole Q8_0N row back as the plain Q8_0 row it was packed from. */
void sl_q8_0n_unpack_row(const void *row, int64_t n, void *dst);

/* ---- Q4_0C / Q8_0C: one column of a quantized down matrix, exact (internal, never a tensor) ----
 * A down matrix [H, I] in Q4_0 / Q8_0 has one f16 scale per row h and block column j (neurons
 * 32j..32j+31). Column i of it — neuron i's down row, H elements — is stored exactly as its
 * quantized values, without scales: the scales d[j][h] of a block column are shared by its 32
 * neurons and kept once, in a table beside the rows ([I / 32][H] f16; element h of column i is
 * d[i / 32][h] * (q - 8) for Q4_0C, d[i / 32][h] * q for Q8_0C). Bytes per element: 1/2 + the
 * table's 2/32 = 4.5 bits (Q4_0C), 1 + 2/32 = 8.5 bits (Q8_0C): the file's own bits, no second
 * rounding. Value order, chosen for the AVX2 down kernel (bundle_rows_avx2.c): in each 32-byte
 * chunk c, byte b holds element E + swap34(b), swap34 exchanging bits 3 and 4 of b
 * (b = 0..7 -> 0..7, 8..15 -> 16..23, 16..23 -> 8..15, 24..31 -> 24..31); Q4_0C: E = 64c, low
 * nibble = q of element E + swap34(b), high nibble = q of element E + 32 + swap34(b); Q8_0C: E =
 * 32c, the byte = q + 128. Rows end padded to whole chunks (Q4_0C: q = 8, zeros). */
#define SL_TYPE_Q4_0C ((sl_type)1007)
#define SL_TYPE_Q8_0C ((sl_type)1008)

static inline bool sl_is_col_type(sl_type t) { return t == SL_TYPE_Q4_0C || t == SL_TYPE_Q8_0C; }
/* Bytes of a column row of n elements (n a multiple of 32; 0 otherwise). */
size_t sl_col_row_size(sl_type t, int64_t n);
/* Write / read the stored q of element e (Q4_0C: 0..15; Q8_0C: -128..127). */
void sl_col_set(sl_type t, void *row, int64_t e, int q);
int sl_col_get(sl_type t, const void *row, int64_t e);
/* dst[0..n) = the column's values: d[e] * (q - 8) (Q4_0C) or d[e] * q (Q8_0C), d the f16 scales
 * of its block column (n of them, in element order). */
void sl_col_dequantize(sl_type t, const void *row, const uint16_t *d, float *dst, int64_t n);
/* The coefficients a[0..nr) (nr <= 32) of a block column's down rows, quantized exactly as the
 * dense path quantizes that block of the activation vector to Q8_0 (ggml: d = max |a| / 127,
 * k = roundf(a / d), d stored as f16; the block's other entries are zeros): k[0..nr), returns the
 * f16 d as f32. */
float sl_col_quantize_coef(const float *a, int nr, int8_t *k);

/* Scalar conversions (round-to-nearest-even for the f32 -> half/bf16 direction). */
float sl_fp16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_fp16(float f);
float sl_bf16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_bf16(float f);

/* dst[0..n) = the n elements of a row of `type` starting at src (n a multiple of the block);
 * also reads the internal row layouts Q4_0N and Q8_0N and the activation formats. Bit-exact
 * with ggml's dequantize_row_*. */
void sl_dequantize_row_ref(sl_type type, const void *src, float *dst, int64_t n);
/* Encode n f32 values into a row of `type`: the bytes ggml_quantize_chunk writes without an
 * importance matrix (the reference quantizers, and the searched scales of IQ4_NL/IQ4_XS), and
 * for the activation formats ggml's quantize_row_q8_{0,1,K} on x86. Non-finite inputs give some
 * row, never undefined behaviour. */
void sl_quantize_row_ref(sl_type type, const float *src, void *dst, int64_t n);
/* sum_i w[i] * x[i] for one weight row of `type`, accumulated in double-free plain f32 order. */
float sl_dot_row_ref(sl_type type, const void *w, const float *x, int64_t n);

#endif
