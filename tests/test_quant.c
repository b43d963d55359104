/*
 * test_quant.c — the tensor types of src/format against ggml itself: tests/data/quant_ref.bin
 * holds, for fixed inputs (8 rows of 512 values: normal, small, a zero super-block, outliers,
 * positive only, tiny negative, constant, heavy-tailed), the bytes of llama.cpp's quantizer
 * (ggml_quantize_chunk, no importance matrix), ggml's dequantized values, its activation
 * quantizers (Q8_0, Q8_1, Q8_K) and its vec_dot results (made by scripts/ggml_ref.c from the
 * oracle's libraries). Checked here:
 *   - decoding ggml's bytes: bit-identical to ggml's dequantizers, every type;
 *   - encoding the inputs: byte-identical to ggml's quantizer, every type (and so the same RMSE);
 *   - activation formats: byte-identical blocks;
 *   - sl_vec_dot_ref on ggml's weight bytes and our activations vs ggml's vec_dot, relative to
 *     sum |w x| (only the order of float additions differs);
 *   - row sizes, names and hostile values: K-quant rows that are not a multiple of 256 have no
 *     size, NaN / inf inputs and scales go through every encoder, decoder and dot without
 *     undefined behaviour (run under UBSan by `make asan`).
 */
#include "testutil.h"

#include "format/quant.h"
#include "kernels/kernels_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_DOT 2e-6 /* vec_dot vs ggml, relative to sum |w x|: float summation order only */

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static uint32_t rd32(reader *r) {
    uint32_t v = 0;
    if (r->p + 4 <= r->end) memcpy(&v, r->p, 4);
    r->p += 4;
    return v;
}
static const uint8_t *rdn(reader *r, size_t n) {
    const uint8_t *p = r->p;
    r->p += n;
    return r->p <= r->end ? p : NULL;
}

int main(void) {
    size_t size;
    uint8_t *file = test_read_file("tests/data/quant_ref.bin", &size);
    if (!CHECK(file && size > 16 && !memcmp(file, "SLQREF1", 8), "quant_ref.bin present")) return test_summary();
    reader r = {file + 8, file + size};
    const uint32_t n = rd32(&r), rows = rd32(&r);
    const float *in = (const float *)rdn(&r, (size_t)rows * n * 4);
    const uint32_t nt = rd32(&r);
    CHECK(in && n == 512 && rows == 8 && nt == 12, "reference header (n %u, rows %u, types %u)", n, rows, nt);
    const uint8_t *qbytes[32] = {0};
    sl_type qtype[32];
    float *tmp = malloc(n * sizeof(float));
    uint8_t *qb = malloc(2 * n);
    for (uint32_t k = 0; k < nt && k < 32; k++) {
        const sl_type t = (sl_type)rd32(&r);
        const uint32_t rb = rd32(&r);
        const uint8_t *bytes = rdn(&r, (size_t)rows * rb);
        const float *deq = (const float *)rdn(&r, (size_t)rows * n * 4);
        qtype[k] = t;
        qbytes[k] = bytes;
        if (!CHECK(bytes && deq && sl_type_row_size(t, n) == rb, "%s (%d): row size %u", sl_type_name(t) ? sl_type_name(t) : "?", (int)t, rb))
            continue;
        /* decoding: bit-identical */
        size_t bad_dec = 0;
        double maxd = 0;
        for (uint32_t i = 0; i < rows; i++) {
            sl_dequantize_row_ref(t, bytes + (size_t)i * rb, tmp, n);
            for (uint32_t j = 0; j < n; j++) {
                uint32_t a, b;
                memcpy(&a, &tmp[j], 4);
                memcpy(&b, &deq[(size_t)i * n + j], 4);
                if (a != b) bad_dec++;
                if (fabs((double)tmp[j] - deq[(size_t)i * n + j]) > maxd) maxd = fabs((double)tmp[j] - deq[(size_t)i * n + j]);
            }
        }
        CHECK(bad_dec == 0, "%s: dequantize bit-identical to ggml (%zu of %u values differ, max diff %.3g)", sl_type_name(t), bad_dec,
              rows * n, maxd);
        /* encoding: byte-identical, per row; on a mismatch also the RMSE ratio */
        const int64_t bsz = sl_type_block_size(t);
        const size_t blk_bytes = rb / (size_t)(n / bsz);
        size_t bad_blocks = 0;
        double e_ours = 0, e_ggml = 0;
        for (uint32_t i = 0; i < rows; i++) {
            sl_quantize_row_ref(t, in + (size_t)i * n, qb, n);
            for (uint32_t b = 0; b < n / bsz; b++) bad_blocks += memcmp(qb + b * blk_bytes, bytes + (size_t)i * rb + b * blk_bytes, blk_bytes) != 0;
            sl_dequantize_row_ref(t, qb, tmp, n);
            for (uint32_t j = 0; j < n; j++) {
                const double x = in[(size_t)i * n + j];
                e_ours += (tmp[j] - x) * (tmp[j] - x);
                e_ggml += (deq[(size_t)i * n + j] - x) * (deq[(size_t)i * n + j] - x);
            }
        }
        CHECK(bad_blocks == 0, "%s: quantize byte-identical to llama.cpp's quantizer (%zu of %u blocks differ; RMSE ours %.6g, ggml %.6g)",
              sl_type_name(t), bad_blocks, (unsigned)(rows * n / bsz), sqrt(e_ours / (rows * n)), sqrt(e_ggml / (rows * n)));
    }
    /* activation formats */
    const uint8_t *acts[3] = {0};
    static const sl_type act_types[3] = {SL_TYPE_Q8_0, SL_TYPE_Q8_1, SL_TYPE_Q8_K};
    for (int k = 0; k < 3; k++) {
        const sl_type t = (sl_type)rd32(&r);
        const uint32_t rb = rd32(&r);
        acts[k] = rdn(&r, (size_t)rows * rb);
        if (!CHECK(acts[k] && t == act_types[k] && sl_any_row_size(t, n) == rb, "activation format %d: row size %u", (int)t, rb)) continue;
        size_t bad = 0;
        for (uint32_t i = 0; i < rows; i++) {
            sl_quantize_row_ref(t, in + (size_t)i * n, qb, n);
            bad += memcmp(qb, acts[k] + (size_t)i * rb, rb) != 0;
        }
        CHECK(bad == 0, "activation format %d: byte-identical to ggml's from_float (%zu of %u rows differ)", (int)t, bad, rows);
    }
    /* vec_dot: our reference on ggml's weight bytes and our own activations */
    uint8_t *act = malloc(sl_act_size(SL_TYPE_Q4_1, n) + sl_act_size(SL_TYPE_Q4_K, n) + 64);
    for (uint32_t k = 0; k < nt && k < 32; k++) {
        const sl_type t = (sl_type)rd32(&r);
        const float *dots = (const float *)rdn(&r, (size_t)rows * rows * 4);
        if (!dots || t != qtype[k] || !qbytes[k]) {
            CHECK(false, "vec_dot section of type %d", (int)t);
            continue;
        }
        const size_t rb = sl_type_row_size(t, n);
        double worst = 0;
        for (uint32_t j = 0; j < rows; j++) {
            sl_quantize_row_ref(sl_act_type_of(t), in + (size_t)j * n, act, n);
            float xd[512];
            sl_dequantize_row_ref(sl_act_type_of(t), act, xd, n);
            for (uint32_t i = 0; i < rows; i++) {
                sl_dequantize_row_ref(t, qbytes[k] + i * rb, tmp, n);
                double scale = 0;
                for (uint32_t e = 0; e < n; e++) scale += fabs((double)tmp[e] * xd[e]);
                const float ours = sl_vec_dot_ref(t, qbytes[k] + i * rb, act, n);
                const double err = fabs((double)ours - dots[i * rows + j]) / (scale + 1e-30);
                if (err > worst || err != err) worst = err != err ? INFINITY : err;
            }
        }
        CHECK(worst <= TOL_DOT, "%s: vec_dot_ref vs ggml's vec_dot, max error %.3g of sum|w x| (tolerance %g)", sl_type_name(t), worst, TOL_DOT);
    }

    /* ---- sizes, names, hostile values ---- */
    static const sl_type ktypes[] = {SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_XS};
    for (size_t k = 0; k < sizeof ktypes / sizeof ktypes[0]; k++) {
        CHECK(sl_type_row_size(ktypes[k], 255) == 0 && sl_type_row_size(ktypes[k], 128) == 0 && sl_type_row_size(ktypes[k], 512) > 0,
              "%s: rows that are not a multiple of 256 have no size", sl_type_name(ktypes[k]));
        sl_type back;
        char upper[16];
        snprintf(upper, sizeof upper, "%s", sl_type_name(ktypes[k]));
        for (char *c = upper; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        CHECK(sl_type_from_name(upper, &back) && back == ktypes[k], "type name '%s' parses back", upper);
    }
    CHECK(sl_type_traits_of(SL_TYPE_Q8_K) == NULL && sl_type_traits_of(SL_TYPE_Q8_1) == NULL,
          "activation-only formats are not tensor types");
    static const sl_type all[] = {SL_TYPE_Q4_0, SL_TYPE_Q4_1, SL_TYPE_Q5_0, SL_TYPE_Q5_1, SL_TYPE_Q8_0, SL_TYPE_Q2_K, SL_TYPE_Q3_K,
                                  SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_NL, SL_TYPE_IQ4_XS};
    float hostile[512];
    for (int j = 0; j < 512; j++) hostile[j] = j % 7 == 0 ? NAN : j % 11 == 0 ? INFINITY : j % 13 == 0 ? -INFINITY : j % 3 == 0 ? 3e38f : 0.5f;
    bool finite_ok = true;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        const sl_type t = all[k];
        sl_quantize_row_ref(t, hostile, qb, 512); /* UBSan: no invalid conversion */
        sl_dequantize_row_ref(t, qb, tmp, 512);
        memset(qb, 0xff, sl_type_row_size(t, 512)); /* all-ones bytes: NaN scales */
        sl_dequantize_row_ref(t, qb, tmp, 512);
        sl_act_prepare(t, hostile, 512, act);
        (void)sl_vec_dot_ref(t, qb, act, 512);
        sl_act_prepare(t, in, 512, act);
        (void)sl_vec_dot_ref(t, qb, act, 512);
        /* finite inputs give finite scales */
        sl_quantize_row_ref(t, in + 512, qb, 512);
        sl_dequantize_row_ref(t, qb, tmp, 512);
        for (int j = 0; j < 512; j++) finite_ok &= isfinite(tmp[j]);
    }
    CHECK(finite_ok, "hostile rows (NaN, inf, 3e38 inputs; NaN scales) encode, decode and dot without undefined behaviour; finite rows stay finite");
    free(act);
    free(tmp);
    free(qb);
    free(file);
    return test_summary();
}
