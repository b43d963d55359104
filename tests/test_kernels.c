/*
 * test_kernels.c — every kernel variant (scalar, AVX2, AVX-512; each forced in turn, skipped
 * with a printed reason when this CPU lacks it) against the scalar references, for every weight
 * type and awkward sizes:
 *   - the Q8_0 activation quantizer: bit-identical blocks to sl_quantize_row_ref;
 *   - sl_vec_dot / sl_vec_axpy vs their _ref;
 *   - sl_matmul for n x rows x B x threads vs (a) the scalar variant (same Q8_0 activations:
 *     only float reassociation differs) and (b) sl_matmul_ref (f32 activations: quantized types
 *     also carry the activation quantization error), plus bitwise equality across thread counts;
 *   - sl_attention vs sl_attention_ref (positions, GQA groups, head sizes, f32/f16 caches).
 * Errors are normalised by sum_k |w_k x_k| of each output, so one relative tolerance fits all
 * sizes; each family prints its worst case. Timing never decides anything here.
 */
#include "testutil.h"

#include "kernels/kernels_impl.h"
#include "util/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Named tolerances (relative to sum |w x|, or absolute for attention outputs of size ~1). */
#define TOL_REASSOC 2e-6   /* same math, different float summation order */
#define TOL_ACT_Q8 1.5e-2  /* Q8_0 activations vs f32 activations */
#define TOL_ATTN 2e-5      /* online vs two-pass softmax, polynomial exp */

static const sl_type all_types[] = {SL_TYPE_F32,  SL_TYPE_F16,  SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0,   SL_TYPE_Q4_1,  SL_TYPE_Q5_0,
                                    SL_TYPE_Q5_1, SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_NL,
                                    SL_TYPE_IQ4_XS};
static const int ns_quant[] = {32, 64, 96, 160, 544, 4128};
static const int ns_k[] = {256, 512, 1280, 4352}; /* 1, 2, 5, 17 super-blocks */
static const int ns_float[] = {1, 3, 7, 15, 16, 17, 31, 33, 129, 32, 64, 96, 160, 544, 4128};
static const int rows_list[] = {1, 3, 7, 17, 33, 129};
static const int batch_list[] = {1, 2, 3, 5, 8, 17};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool is_quant(sl_type t) { return sl_type_block_size(t) > 1; }
/* the sizes a type is tested on: any for float types, multiples of its block otherwise */
static const int *sizes_of(sl_type t, int *count) {
    if (sl_type_block_size(t) == 256) return *count = COUNT(ns_k), ns_k;
    if (is_quant(t)) return *count = COUNT(ns_quant), ns_quant;
    return *count = COUNT(ns_float), ns_float;
}

static void fill_normal(test_rng *rng, float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * test_rng_normal(rng);
}

/* rows x n weights of type t from random values; also their dequantized f32 values. */
static uint8_t *make_weights(test_rng *rng, sl_type t, int64_t rows, int64_t n, float *deq) {
    size_t rb = sl_type_row_size(t, n);
    uint8_t *w = malloc(rb * (size_t)rows + 64);
    float *tmp = malloc(sizeof(float) * (size_t)n);
    for (int64_t r = 0; r < rows; r++) {
        fill_normal(rng, tmp, n, 0.5f);
        sl_quantize_row_ref(t, tmp, w + (size_t)r * rb, n);
        sl_dequantize_row_ref(t, w + (size_t)r * rb, deq + r * n, n);
    }
    free(tmp);
    return w;
}

/* worst normalised error of a family of checks */
typedef struct worst {
    double err;     /* max |a - b| / scale */
    char where[96]; /* the case that produced it */
} worst;

static void worst_update(worst *w, double err, const char *fmt, int a, int b, int c, int d) {
    if (isnan(err)) err = INFINITY;
    if (err > w->err || (w->where[0] == 0)) {
        if (err >= w->err) w->err = err;
        snprintf(w->where, sizeof(w->where), fmt, a, b, c, d);
    }
}

static double rel_err(float a, float b, double scale) { return fabs((double)a - (double)b) / (scale + 1e-30); }

/* ---- quantizer ------------------------------------------------------------------------------ */

static void test_quantizer(const sl_kernel_ops *ops) {
    test_rng rng = {0x1234};
    int bad = 0, total = 0;
    const int64_t n = 32 * 64;
    float *x = malloc(sizeof(float) * n);
    sl_block_q8_0 *a = malloc(sizeof(sl_block_q8_0) * (n / 32)), *b = malloc(sizeof(sl_block_q8_0) * (n / 32));
    for (int rep = 0; rep < 40; rep++) {
        /* 2e-5: block scales that are subnormal in f16. (Much smaller inputs make 1/d overflow,
         * where the reference's (int8_t)roundf(inf) is undefined behaviour: not tested.) */
        float scale = rep < 10 ? 1.0f : rep < 20 ? 1e-3f : rep < 30 ? 1e3f : 2e-5f;
        fill_normal(&rng, x, n, scale);
        if (rep == 0) {
            /* ties: amax 127 makes d = 1, so x*id lands exactly on k + 0.5 */
            for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(i % 255) - 127) + ((i & 1) ? 0.5f : -0.5f);
            for (int64_t i = 0; i < n; i += 32) x[i] = 127.0f;
        }
        if (rep == 1)
            for (int64_t i = 0; i < 64; i++) x[i] = 0.0f; /* all-zero blocks: d = 0 */
        if (rep == 2)
            for (int64_t i = 0; i < n; i++) x[i] = (i % 32 == 5) ? -3.0f : 0.01f * (float)(i % 7); /* negative amax */
        sl_quantize_row_ref(SL_TYPE_Q8_0, x, a, n);
        memset(b, 0xAA, sizeof(sl_block_q8_0) * (n / 32));
        ops->quantize_q8(x, b, n);
        total++;
        if (memcmp(a, b, sizeof(sl_block_q8_0) * (n / 32)) != 0) bad++;
    }
    CHECK(bad == 0, "%s quantize_q8: %d of %d rows bit-identical to sl_quantize_row_ref", ops->name, total - bad, total);
    free(x);
    free(a);
    free(b);
}

/* The activation formats of the kq types (Q8_K, Q8_0, Q8_1) as the matmul prepares them:
 * bytes identical to the scalar variant's (sl_quantize_row_ref), on ordinary rows and on the
 * cases with their own rules: ties at k + 0.5, the first of two opposite maxima, zero blocks,
 * NaN / inf values, subnormal maxima (iscale overflows). */
static void test_kq_prep(const sl_kernel_ops *ops) {
    static const sl_type wt[] = {SL_TYPE_Q4_K, SL_TYPE_Q5_0, SL_TYPE_Q4_1};
    static const char *const act_name[] = {"q8_K", "q8_0", "q8_1"};
    const int64_t n = 1024, B = 3;
    test_rng rng = {0x5151};
    float *x = malloc(sizeof(float) * (size_t)(n * B));
    for (int k = 0; k < COUNT(wt); k++) {
        const size_t bytes = sl_kq_mm_prep_size_scalar(wt[k], n, B);
        uint8_t *a = malloc(bytes), *b = malloc(bytes);
        int bad = 0, total = 0;
        for (int rep = 0; rep < 12; rep++) {
            const float scale = rep < 4 ? 1.0f : rep < 6 ? 1e-3f : rep < 8 ? 1e3f : 2e-5f;
            fill_normal(&rng, x, n * B, scale);
            if (rep == 0) /* max -127: iscale 1 (Q8_K), values on k + 0.5 */
                for (int64_t i = 0; i < n * B; i++) x[i] = (i % 32 == 0) ? -127.0f : (float)((int)(i % 200) - 100) + 0.5f;
            if (rep == 1) { /* first of two opposite maxima wins; a zero block; a lone negative */
                x[3] = 5.0f, x[10] = -5.0f, x[300] = -6.0f, x[301] = 6.0f;
                for (int64_t i = 512; i < 768; i++) x[i] = 0.0f;
            }
            if (rep == 2) x[5] = NAN, x[300] = INFINITY, x[1030] = -INFINITY, x[2100] = NAN;
            if (rep == 3) /* subnormal maxima: 1 / d or iscale overflows */
                for (int64_t i = 0; i < 256; i++) x[i] = (i % 3 ? 1e-42f : -3e-42f), x[n + i] = 1e-39f * (float)(i % 5);
            sl_kq_mm_prep_scalar(wt[k], x, n, B, 0, B, a);
            memset(b, 0xAA, bytes);
            ops->kq_mm_prep(wt[k], x, n, B, 0, B, b);
            total++;
            if (memcmp(a, b, bytes) != 0) bad++;
        }
        CHECK(bad == 0, "%s kq_mm_prep %s (%s activations): %d of %d batches bit-identical to the scalar variant", ops->name,
              sl_type_name(wt[k]), act_name[k], total - bad, total);
        free(a);
        free(b);
    }
    free(x);
}

/* ---- vec_dot / vec_axpy --------------------------------------------------------------------- */

static void test_dot_axpy(const sl_kernel_ops *ops, sl_type t) {
    test_rng rng = {0x5678 + (uint64_t)t};
    worst wd = {0, ""}, wa = {0, ""};
    int nn;
    const int *ns = sizes_of(t, &nn);
    for (int i = 0; i < nn; i++) {
        int64_t n = ns[i];
        float *deq = malloc(sizeof(float) * (size_t)n * 3);
        uint8_t *w = make_weights(&rng, t, 3, n, deq);
        float *x = malloc(sizeof(float) * n);
        fill_normal(&rng, x, n, 1.0f);
        void *act = malloc(sl_act_size(t, n) + 64);
        if (sl_act_type_of(t) == SL_TYPE_Q8_0) ops->quantize_q8(x, act, n);
        else if (is_quant(t)) sl_quantize_row_ref(sl_act_type_of(t), x, act, n);
        else memcpy(act, x, sizeof(float) * n);
        size_t rb = sl_type_row_size(t, n);
        for (int r = 0; r < 3; r++) {
            /* unaligned rows too: row r starts at r * rb bytes */
            double scale = 0;
            for (int64_t k = 0; k < n; k++) scale += fabs(deq[r * n + k] * x[k]);
            float ref = sl_vec_dot_ref(t, w + r * rb, act, n);
            float got = sl_kq_type(t) ? ops->kq_vec_dot(t, w + r * rb, act, n) : ops->vec_dot(t, w + r * rb, act, n);
            worst_update(&wd, rel_err(got, ref, scale), "n=%d row=%d%.0d%.0d", (int)n, r, 0, 0);
        }
        float *y0 = malloc(sizeof(float) * n), *y1 = malloc(sizeof(float) * n);
        fill_normal(&rng, y0, n, 1.0f);
        memcpy(y1, y0, sizeof(float) * n);
        sl_vec_axpy_ref(t, w + rb, 0.37f, y0, n);
        if (sl_kq_type(t)) ops->kq_vec_axpy(t, w + rb, 0.37f, y1, n);
        else ops->vec_axpy(t, w + rb, 0.37f, y1, n);
        for (int64_t k = 0; k < n; k++)
            worst_update(&wa, rel_err(y1[k], y0[k], fabs(y0[k]) + 1.0), "n=%d k=%d%.0d%.0d", (int)n, (int)k, 0, 0);
        free(y0);
        free(y1);
        free(act);
        free(x);
        free(w);
        free(deq);
    }
    CHECK(wd.err <= TOL_REASSOC, "%s vec_dot %s vs ref: max rel diff %.3g <= %.3g (worst %s)", ops->name, sl_type_name(t),
          wd.err, TOL_REASSOC, wd.where);
    CHECK(wa.err <= TOL_REASSOC, "%s vec_axpy %s vs ref: max rel diff %.3g <= %.3g (worst %s)", ops->name,
          sl_type_name(t), wa.err, TOL_REASSOC, wa.where);
}

/* ---- matmul ----------------------------------------------------------------------------------- */

typedef struct mm_case {
    sl_type t;         /* weight type */
    int64_t n, rows, B; /* shape */
    uint8_t *W;        /* weights */
    float *X;          /* [B, n] */
    float *y_ref;      /* sl_matmul_ref */
    float *y_scalar;   /* scalar variant (Q8_0 activations) */
    double *scale;     /* sum |w x| per output */
} mm_case;

static sl_pool *pools[4];

static void mm_case_make(mm_case *c, sl_type t, int64_t n, int64_t rows, int64_t B, test_rng *rng) {
    c->t = t, c->n = n, c->rows = rows, c->B = B;
    float *deq = malloc(sizeof(float) * (size_t)(rows * n));
    c->W = make_weights(rng, t, rows, n, deq);
    c->X = malloc(sizeof(float) * (size_t)(B * n));
    fill_normal(rng, c->X, B * n, 1.0f);
    c->y_ref = malloc(sizeof(float) * (size_t)(B * rows));
    c->y_scalar = malloc(sizeof(float) * (size_t)(B * rows));
    c->scale = malloc(sizeof(double) * (size_t)(B * rows));
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += fabs(deq[r * n + k] * c->X[b * n + k]);
            c->scale[b * rows + r] = s;
        }
    free(deq);
    sl_matmul_ref(t, c->W, rows, n, c->X, B, c->y_ref, 0, 1);
    sl_kernels_select(SL_KERNELS_SCALAR);
    sl_matmul(pools[1], t, c->W, rows, n, c->X, B, c->y_scalar);
}

static void mm_case_free(mm_case *c) {
    free(c->W);
    free(c->X);
    free(c->y_ref);
    free(c->y_scalar);
    free(c->scale);
}

typedef struct mm_stats {
    worst vs_scalar, vs_ref; /* normalised errors */
    int nondeterministic;    /* cases whose result changed with the thread count */
    int differs_from_scalar; /* outputs not bit-identical to the scalar variant (proves the variant ran) */
    int cases;               /* matmuls run */
} mm_stats;

/* Runs the product on weights W of type t (c->W itself, or c->W repacked as Q4_0x4). */
static void run_mm_case_as(const mm_case *c, sl_type t, const void *W, sl_kernel_variant v, mm_stats *st) {
    size_t ny = (size_t)(c->B * c->rows);
    float *y = malloc(sizeof(float) * ny), *y1 = malloc(sizeof(float) * ny);
    for (int th = 1; th <= 3; th++) {
        sl_kernels_select(v);
        for (size_t i = 0; i < ny; i++) y[i] = NAN; /* every output must be written */
        sl_matmul(pools[th], t, W, c->rows, c->n, c->X, c->B, y);
        st->cases++;
        for (size_t i = 0; i < ny; i++) {
            worst_update(&st->vs_scalar, rel_err(y[i], c->y_scalar[i], c->scale[i]), "n=%d rows=%d B=%d t=%d",
                         (int)c->n, (int)c->rows, (int)c->B, th);
            worst_update(&st->vs_ref, rel_err(y[i], c->y_ref[i], c->scale[i]), "n=%d rows=%d B=%d t=%d", (int)c->n,
                         (int)c->rows, (int)c->B, th);
            if (th == 1 && memcmp(&y[i], &c->y_scalar[i], sizeof(float)) != 0) st->differs_from_scalar++;
        }
        if (th == 1) memcpy(y1, y, sizeof(float) * ny);
        else if (memcmp(y, y1, sizeof(float) * ny) != 0) st->nondeterministic++;
    }
    free(y);
    free(y1);
}

static void run_mm_case(const mm_case *c, sl_kernel_variant v, mm_stats *st) { run_mm_case_as(c, c->t, c->W, v, st); }

static const sl_kernel_variant variants[] = {SL_KERNELS_SCALAR, SL_KERNELS_AVX2, SL_KERNELS_AVX512};

/* Q4_0x4 (Q4_0 rows interleaved by 4, see quant.h) against the plain Q4_0 results of the same
 * case: the scalar rows must be bit-identical to the scalar variant on Q4_0, every variant
 * within float reassociation of it, and sl_matmul_ref on the repacked matrix within
 * reassociation of sl_matmul_ref on Q4_0. */
static void run_q4_0x4_case(const mm_case *c, mm_stats st[3], worst *ref4) {
    size_t sz = sl_q4_0x4_size(c->rows, c->n);
    uint8_t *W4 = malloc(sz);
    sl_q4_0x4_repack_all(c->W, c->rows, c->n, W4);
    for (int v = 0; v < 3; v++)
        if (sl_kernels_supported(variants[v])) run_mm_case_as(c, SL_TYPE_Q4_0X4, W4, variants[v], &st[v]);
    size_t ny = (size_t)(c->B * c->rows);
    float *y = malloc(sizeof(float) * ny);
    sl_matmul_ref(SL_TYPE_Q4_0X4, W4, c->rows, c->n, c->X, c->B, y, 0, 1);
    for (size_t i = 0; i < ny; i++)
        worst_update(ref4, rel_err(y[i], c->y_ref[i], c->scale[i]), "n=%d rows=%d B=%d", (int)c->n, (int)c->rows,
                     (int)c->B, 0);
    free(y);
    free(W4);
}

static void check_q4_0x4(mm_stats st[3], const worst *ref4) {
    CHECK(ref4->err <= TOL_REASSOC, "sl_matmul_ref q4_0x4 vs q4_0: max rel diff %.3g <= %.3g (worst %s)", ref4->err,
          TOL_REASSOC, ref4->where);
    for (int v = 0; v < 3; v++) {
        const char *name = sl_kernels_name(variants[v]);
        if (!sl_kernels_supported(variants[v])) continue;
        CHECK(st[v].vs_scalar.err <= TOL_REASSOC,
              "%s matmul q4_0x4 vs scalar variant on q4_0 (%d runs): max rel diff %.3g <= %.3g (worst %s)", name,
              st[v].cases, st[v].vs_scalar.err, TOL_REASSOC, st[v].vs_scalar.where);
        CHECK(st[v].vs_ref.err <= TOL_ACT_Q8, "%s matmul q4_0x4 vs sl_matmul_ref on q4_0: max rel diff %.3g <= %.3g (worst %s)",
              name, st[v].vs_ref.err, TOL_ACT_Q8, st[v].vs_ref.where);
        CHECK(st[v].nondeterministic == 0, "%s matmul q4_0x4: results identical for 1, 2, 3 threads (%d cases differ)",
              name, st[v].nondeterministic);
        if (variants[v] == SL_KERNELS_SCALAR)
            CHECK(st[v].differs_from_scalar == 0, "scalar matmul q4_0x4 bit-identical to q4_0 (%d outputs differ)",
                  st[v].differs_from_scalar);
        else if (sl_kernels_ops_of(variants[v])->fast_q4_0x4)
            CHECK(st[v].differs_from_scalar > 0, "%s matmul q4_0x4 really ran its own code (%d outputs differ in the last bits)",
                  name, st[v].differs_from_scalar);
    }
}

static void test_matmul_type(sl_type t) {
    test_rng rng = {0x9abc + (uint64_t)t};
    mm_stats st[3], st4[3];
    memset(st, 0, sizeof(st));
    memset(st4, 0, sizeof(st4));
    worst ref4 = {0};
    int nn;
    const int *ns = sizes_of(t, &nn);
    for (int i = 0; i < nn; i++)
        for (int ri = 0; ri < COUNT(rows_list); ri++)
            for (int bi = 0; bi < COUNT(batch_list); bi++) {
                int64_t n = ns[i], rows = rows_list[ri], B = batch_list[bi];
                /* the largest n only with a subset of shapes, to keep the suite short */
                if (n > 1000 && (rows > 33 || B > 8) && !(rows == 129 && B == 17)) continue;
                mm_case c;
                mm_case_make(&c, t, n, rows, B, &rng);
                for (int v = 0; v < 3; v++)
                    if (sl_kernels_supported(variants[v])) run_mm_case(&c, variants[v], &st[v]);
                if (t == SL_TYPE_Q4_0) run_q4_0x4_case(&c, st4, &ref4);
                mm_case_free(&c);
            }
    /* TinyLlama-like shapes that exercise chunking of the reduction dimension (B large) */
    {
        mm_case c;
        mm_case_make(&c, t, 2048, 48, 64, &rng);
        for (int v = 0; v < 3; v++)
            if (sl_kernels_supported(variants[v])) run_mm_case(&c, variants[v], &st[v]);
        if (t == SL_TYPE_Q4_0) run_q4_0x4_case(&c, st4, &ref4);
        mm_case_free(&c);
    }
    /* several row blocks of the AVX2 K-quant/legacy prompt path (blocks of 160 KB of weights:
     * 48-128 rows at n = 4096, so 130 rows end in a partial block) and a 1-token last group */
    {
        mm_case c;
        mm_case_make(&c, t, 4096, 130, 9, &rng);
        for (int v = 0; v < 3; v++)
            if (sl_kernels_supported(variants[v])) run_mm_case(&c, variants[v], &st[v]);
        mm_case_free(&c);
    }
    /* Q4_0x4 with every batch 2..9 (the B > 1 tile of 4 tokens and its 1..3 remainders) on row
     * counts that end in a partial 4-row group or a partial 16-row unit */
    if (t == SL_TYPE_Q4_0) {
        static const int x4_rows[] = {5, 21, 42};
        static const int x4_ns[] = {96, 544};
        for (int ni = 0; ni < COUNT(x4_ns); ni++)
            for (int ri = 0; ri < COUNT(x4_rows); ri++)
                for (int64_t B = 2; B <= 9; B++) {
                    mm_case c;
                    mm_case_make(&c, t, x4_ns[ni], x4_rows[ri], B, &rng);
                    run_q4_0x4_case(&c, st4, &ref4);
                    mm_case_free(&c);
                }
        mm_case c; /* X of 50 tokens exceeds the AVX2 tile's per-chunk budget: tokens run in chunks */
        mm_case_make(&c, t, 4128, 7, 50, &rng);
        run_q4_0x4_case(&c, st4, &ref4);
        mm_case_free(&c);
        check_q4_0x4(st4, &ref4);
    }
    for (int v = 0; v < 3; v++) {
        const char *name = sl_kernels_name(variants[v]);
        if (!sl_kernels_supported(variants[v])) continue;
        CHECK(st[v].vs_scalar.err <= TOL_REASSOC, "%s matmul %s vs scalar variant (%d runs): max rel diff %.3g <= %.3g (worst %s)",
              name, sl_type_name(t), st[v].cases, st[v].vs_scalar.err, TOL_REASSOC, st[v].vs_scalar.where);
        double tol = is_quant(t) ? TOL_ACT_Q8 : TOL_REASSOC;
        CHECK(st[v].vs_ref.err <= tol, "%s matmul %s vs sl_matmul_ref: max rel diff %.3g <= %.3g (worst %s)", name,
              sl_type_name(t), st[v].vs_ref.err, tol, st[v].vs_ref.where);
        CHECK(st[v].nondeterministic == 0, "%s matmul %s: results identical for 1, 2, 3 threads (%d cases differ)", name,
              sl_type_name(t), st[v].nondeterministic);
        if (variants[v] != SL_KERNELS_SCALAR)
            CHECK(st[v].differs_from_scalar > 0, "%s matmul %s really ran its own code (%d outputs differ in the last bits)",
                  name, sl_type_name(t), st[v].differs_from_scalar);
    }
}

/* ---- attention -------------------------------------------------------------------------------- */

static void test_attention_variant(sl_kernel_variant v) {
    static const int npos_list[] = {1, 2, 17, 33, 257};
    static const int hd_list[] = {16, 20, 24, 64, 128};
    static const int kv_list[][2] = {{8, 8}, {8, 4}, {8, 2}, {32, 4}, {16, 1}}; /* groups 1, 2, 4, 8, 16 */
    test_rng rng = {0xdef0};
    worst w = {0, ""}, wh = {0, ""};
    int runs = 0;
    for (int f16 = 0; f16 < 2; f16++)
        for (int hi = 0; hi < COUNT(hd_list); hi++)
            for (int ki = 0; ki < COUNT(kv_list); ki++)
                for (int pi = 0; pi < COUNT(npos_list); pi++) {
                    int hd = hd_list[hi], n_head = kv_list[ki][0], n_kv = kv_list[ki][1], n_pos = npos_list[pi];
                    if (hd == 128 && n_head == 32 && n_pos > 33) continue; /* keep it short */
                    size_t cache_n = (size_t)n_pos * n_kv * hd;
                    float *q = malloc(sizeof(float) * n_head * hd);
                    float *kf = malloc(sizeof(float) * cache_n), *vf = malloc(sizeof(float) * cache_n);
                    uint16_t *kh = malloc(2 * cache_n), *vh = malloc(2 * cache_n);
                    /* large q: peaky softmax, exercises the running max */
                    fill_normal(&rng, q, n_head * hd, pi == 3 ? 4.0f : 1.0f);
                    fill_normal(&rng, kf, (int64_t)cache_n, 1.0f);
                    fill_normal(&rng, vf, (int64_t)cache_n, 1.0f);
                    for (size_t i = 0; i < cache_n; i++) {
                        kh[i] = sl_fp32_to_fp16(kf[i]);
                        vh[i] = sl_fp32_to_fp16(vf[i]);
                    }
                    const void *kc = f16 ? (const void *)kh : kf, *vc = f16 ? (const void *)vh : vf;
                    float *ref = malloc(sizeof(float) * n_head * hd), *got = malloc(sizeof(float) * n_head * hd);
                    float *att = malloc(sizeof(float) * (size_t)n_pos * 3);
                    sl_attention_ref(q, kc, vc, f16, n_pos, n_head, n_kv, hd, ref, att, 0, 1);
                    for (int nth = 1; nth <= 3; nth++) {
                        sl_kernels_select(v);
                        for (int i = 0; i < n_head * hd; i++) got[i] = NAN;
                        for (int ith = 0; ith < nth; ith++)
                            sl_attention(q, kc, vc, f16, n_pos, n_head, n_kv, hd, got, att, ith, nth);
                        runs++;
                        for (int i = 0; i < n_head * hd; i++)
                            worst_update(&w, rel_err(got[i], ref[i], 1.0), "n_pos=%d heads=%d/%d hd=%d", n_pos, n_head, n_kv,
                                         hd);
                    }
                    /* the per-head and grouped entries (forward.c) vs the per-head reference, with
                     * the default scale and with another scale and Gemma 2's capping (a small cap,
                     * so tanh bends most scores) */
                    float *href = malloc(sizeof(float) * hd * n_head);
                    const float scales[2][2] = {{1.0f / sqrtf((float)hd), 0.0f}, {0.7f, 1.5f}};
                    for (int sc = 0; sc < 2; sc++) {
                        const float scale = scales[sc][0], cap = scales[sc][1];
                        for (int h = 0; h < n_head; h++) {
                            int kvh = h / (n_head / n_kv);
                            sl_attention_head_ref(q + h * hd, kc, vc, f16, n_pos, n_kv * hd, kvh, hd, scale, cap, href + h * hd, att);
                            sl_attention_head(q + h * hd, kc, vc, f16, n_pos, n_kv * hd, kvh, hd, scale, cap, got, att);
                            for (int i = 0; i < hd; i++)
                                worst_update(&wh, rel_err(got[i], href[h * hd + i], 1.0), sc ? "n_pos=%d heads=%d/%d hd=%d (scale 0.7, cap 1.5)" : "n_pos=%d heads=%d/%d hd=%d",
                                             n_pos, n_head, n_kv, hd);
                        }
                        const int group = n_head / n_kv;
                        for (int kvh = 0; kvh < n_kv; kvh++)
                            sl_attention_group(q + kvh * group * hd, group, kc, vc, f16, n_pos, n_kv * hd, kvh, hd, scale, cap,
                                               got + kvh * group * hd, att);
                        for (int i = 0; i < n_head * hd; i++)
                            worst_update(&wh, rel_err(got[i], href[i], 1.0), sc ? "group: n_pos=%d heads=%d/%d hd=%d (scale 0.7, cap 1.5)" : "group: n_pos=%d heads=%d/%d hd=%d",
                                         n_pos, n_head, n_kv, hd);
                    }
                    free(href);
                    free(q);
                    free(kf);
                    free(vf);
                    free(kh);
                    free(vh);
                    free(ref);
                    free(got);
                    free(att);
                }
    CHECK(w.err <= TOL_ATTN, "%s attention (f32+f16 caches, %d runs): max diff %.3g <= %.3g (worst %s)",
          sl_kernels_name(v), runs, w.err, TOL_ATTN, w.where);
    CHECK(wh.err <= TOL_ATTN, "%s attention_head / attention_group (scales, capping) vs sl_attention_head_ref: max diff %.3g <= %.3g (worst %s)",
          sl_kernels_name(v), wh.err, TOL_ATTN, wh.where);
}

/* The run-time switch: SKIPLLAMA_KERNELS names a variant, read before the first kernel call. */
static void test_env_switch(void) {
    sl_kernel_variant v;
    setenv("SKIPLLAMA_KERNELS", "scalar", 1);
    CHECK(sl_kernels_env() == SL_KERNELS_SCALAR, "SKIPLLAMA_KERNELS=scalar is read as the scalar variant");
    setenv("SKIPLLAMA_KERNELS", "avx2", 1);
    CHECK(sl_kernels_env() == SL_KERNELS_AVX2, "SKIPLLAMA_KERNELS=avx2 is read as the AVX2 variant");
    setenv("SKIPLLAMA_KERNELS", "sse9", 1);
    CHECK(sl_kernels_env() == SL_KERNELS_AUTO, "an unknown SKIPLLAMA_KERNELS value means auto");
    unsetenv("SKIPLLAMA_KERNELS");
    CHECK(sl_kernels_env() == SL_KERNELS_AUTO, "unset SKIPLLAMA_KERNELS means auto");
    CHECK(sl_kernels_from_name("avx512", &v) && v == SL_KERNELS_AVX512 && !sl_kernels_from_name("AVX2", &v),
          "variant names: avx512 known, AVX2 (case) unknown");
    sl_error err;
    CHECK(sl_kernels_force("scalar", &err) == SL_OK && !strcmp(sl_kernels_in_use(), "scalar"), "sl_kernels_force(scalar)");
    CHECK(sl_kernels_force("nope", &err) == SL_ERR_INVALID_ARG, "sl_kernels_force refuses an unknown name: %s", err.message);
    CHECK(sl_kernels_force("auto", &err) == SL_OK, "sl_kernels_force(auto)");
}

int main(void) {
    test_env_switch();
    for (int i = 1; i <= 3; i++) pools[i] = sl_pool_init(i);
    CHECK(pools[1] && pools[2] && pools[3], "thread pools of 1..3 threads");
    printf("# auto-selected kernel variant: %s\n", sl_kernels_name(sl_kernels_current()));
    for (int v = 0; v < 3; v++) {
        if (!sl_kernels_supported(variants[v])) {
            printf("# SKIP %s: this CPU lacks the instruction set\n", sl_kernels_name(variants[v]));
            continue;
        }
        CHECK(sl_kernels_select(variants[v]) && sl_kernels_current() == variants[v], "variant %s selected",
              sl_kernels_name(variants[v]));
        const sl_kernel_ops *ops = sl_kernels_ops_of(variants[v]);
        test_quantizer(ops);
        test_kq_prep(ops);
        for (int t = 0; t < COUNT(all_types); t++) test_dot_axpy(ops, all_types[t]);
    }
    for (int t = 0; t < COUNT(all_types); t++) test_matmul_type(all_types[t]);
    for (int v = 0; v < 3; v++)
        if (sl_kernels_supported(variants[v])) test_attention_variant(variants[v]);
    /* act_prepare through the public entry point, on the auto variant */
    sl_kernels_select(SL_KERNELS_AUTO);
    {
        float x[96];
        test_rng rng = {7};
        fill_normal(&rng, x, 96, 2.0f);
        sl_block_q8_0 a[3], b[3];
        sl_quantize_row_ref(SL_TYPE_Q8_0, x, a, 96);
        sl_act_prepare(SL_TYPE_Q4_0, x, 96, b);
        CHECK(memcmp(a, b, sizeof(a)) == 0 && sl_act_size(SL_TYPE_Q4_0, 96) == sizeof(a),
              "sl_act_prepare(Q4_0) = sl_quantize_row_ref(Q8_0)");
        float f[96];
        sl_act_prepare(SL_TYPE_BF16, x, 96, f);
        CHECK(memcmp(f, x, sizeof(f)) == 0 && sl_act_size(SL_TYPE_BF16, 96) == sizeof(f), "sl_act_prepare(BF16) copies");
    }
    for (int i = 1; i <= 3; i++) sl_pool_free(pools[i]);
    return test_summary();
}
