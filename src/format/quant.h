/*
 * quant.h — tensor element types and their block formats (internal).
 *
 * What it is for: the exact ggml block layouts of the weight types skipllama reads (F32, F16,
 * BF16, Q8_0, Q4_0), conversions between them and f32, and the plain scalar reference dot
 * product of one weight row with an f32 vector. Every fast kernel in src/kernels/ is tested
 * against these references. What it is not: fast. Nothing here uses SIMD.
 *
 * Adding a type (Q4_K, Q6_K...): a block struct, a row in the traits table of quant.c, and the
 * three reference functions below; kernels fall back to the reference until given a fast path.
 */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include "skipllama.h"

#include <stdint.h>
#include <stddef.h>

#define SL_QK4_0 32
#define SL_QK8_0 32

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

_Static_assert(sizeof(sl_block_q4_0) == 18, "q4_0 block must be 18 bytes");
_Static_assert(sizeof(sl_block_q8_0) == 34, "q8_0 block must be 34 bytes");

typedef struct sl_type_traits {
    const char *name;  /* "f32", "q8_0", ... */
    int64_t block_size; /* elements per block */
    size_t type_size;   /* bytes per block */
} sl_type_traits;

/* Traits of a supported type, or NULL for any other id (including unknown ggml types). */
const sl_type_traits *sl_type_traits_of(int type);

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

/* Scalar conversions (round-to-nearest-even for the f32 -> half/bf16 direction). */
float sl_fp16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_fp16(float f);
float sl_bf16_to_fp32(uint16_t h);
uint16_t sl_fp32_to_bf16(float f);

/* dst[0..n) = the n elements of a row of `type` starting at src (n a multiple of the block);
 * also reads the internal row layouts Q4_0N and Q8_0N. */
void sl_dequantize_row_ref(sl_type type, const void *src, float *dst, int64_t n);
/* Encode n f32 values into a row of `type` (same rounding as ggml's reference quantizers). */
void sl_quantize_row_ref(sl_type type, const float *src, void *dst, int64_t n);
/* sum_i w[i] * x[i] for one weight row of `type`, accumulated in double-free plain f32 order. */
float sl_dot_row_ref(sl_type type, const void *w, const float *x, int64_t n);

#endif
