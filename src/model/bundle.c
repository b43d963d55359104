/*
 * bundle.c — the neuron-bundle layout and how it is built (bundle.h): copying gate and up rows
 * neuron by neuron (re-laid out as Q4_0N / Q8_0N where the file has Q4_0 / Q8_0), and the
 * transposed down, written straight into each neuron's slot.
 *
 * The transposition takes 32 columns of down at a time (one block for quantized types): each of
 * the H rows contributes one dequantized block to a 32 x H tile of floats, whose 32 rows are
 * then encoded. Threads take disjoint runs of tiles. What it is not: the forward passes
 * (bundle_mlp.c).
 */
#include "model/bundle.h"

#include "format/quant.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

sl_type sl_bundle_row_type(sl_type t) { return t == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0N : t == SL_TYPE_Q8_0 ? SL_TYPE_Q8_0N : t; }

size_t sl_bundle_row_bytes(sl_type stored, int64_t n) {
    if (n < 1) return 0;
    if (stored == SL_TYPE_Q4_0N) return sl_q4_0n_row_size(n);
    if (stored == SL_TYPE_Q8_0N) return sl_q8_0n_row_size(n);
    return sl_type_row_size(stored, n);
}

/* The file type whose rounding a stored type uses. */
static sl_type plain_type(sl_type t) { return t == SL_TYPE_Q4_0N ? SL_TYPE_Q4_0 : t == SL_TYPE_Q8_0N ? SL_TYPE_Q8_0 : t; }

/* Any file type the loader decodes (its rows are dotted through the generic kernels when it has
 * no layout of its own); not the internal layouts. */
static bool type_ok(sl_type t) { return (int)t < 1000 && sl_type_traits_of(t) != NULL; }

static bool has_own_layout(sl_type t) {
    return t == SL_TYPE_F32 || t == SL_TYPE_F16 || t == SL_TYPE_BF16 || t == SL_TYPE_Q8_0 || t == SL_TYPE_Q4_0;
}

/* The stored type of down rows: exact columns for a Q4_0 / Q8_0 [H, I] down, the row layouts for
 * Q4_0 / Q8_0 rows given transposed, the float types as they are. Any other type (the K-quants,
 * Q4_1, Q5_x, IQ4; issue 19) has no transposed layout yet: its rows are re-rounded to Q8_0 (the
 * nearest legacy type that keeps the error small: <= max |w| (1/254 + 2^-11) per block of 32, on
 * top of the file's own; 8.5 bits per weight in the down rows). */
static sl_type down_row_type(sl_type t_down, bool transposed) {
    if (!transposed && (t_down == SL_TYPE_Q4_0 || t_down == SL_TYPE_Q8_0)) return t_down == SL_TYPE_Q4_0 ? SL_TYPE_Q4_0C : SL_TYPE_Q8_0C;
    if (!has_own_layout(t_down)) return SL_TYPE_Q8_0N;
    return sl_bundle_row_type(t_down);
}

sl_status sl_bundle_layout(sl_neuron_bundle *b, sl_type t_gu, sl_type t_down, bool down_transposed, int64_t H, int64_t I,
                           sl_error *err) {
    if (!b) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL bundle");
    memset(b, 0, sizeof(*b));
    if (!type_ok(t_gu) || !type_ok(t_down))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "bundle: no bundle layout for %s / %s weights", sl_type_name(t_gu), sl_type_name(t_down));
    if (H < 1 || I < 1 || H > ((int64_t)1 << 30) || I > ((int64_t)1 << 30))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: bad shape H = %lld, I = %lld", (long long)H, (long long)I);
    const sl_type sgu = sl_bundle_row_type(t_gu), sd = down_row_type(t_down, down_transposed);
    const bool col = sl_is_col_type(sd);
    const size_t rb_gu = sl_bundle_row_bytes(sgu, H), rb_d = col ? sl_col_row_size(sd, H) : sl_bundle_row_bytes(sd, H);
    if (!rb_gu || !rb_d || (col && I % 32))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: rows of %lld elements (%lld neurons) do not fit the block size", (long long)H,
                            (long long)I);
    const size_t off_up = align64(rb_gu), off_down = off_up + align64(rb_gu), stride = off_down + align64(rb_d);
    size_t bytes, table = col ? (size_t)(I / 32) * (size_t)H * 2 : 0;
    if (sl_mul_overflow((size_t)I, stride, &bytes) || sl_add_overflow(bytes, align64(table), &bytes))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: size overflows");
    *b = (sl_neuron_bundle){NULL, bytes, stride, off_up, off_down, rb_gu, rb_d, sgu, sd, NULL, t_gu, H, I, false};
    return SL_OK;
}

void sl_bundle_attach(sl_neuron_bundle *b, uint8_t *data) {
    b->data = data;
    b->dscale = sl_is_col_type(b->t_d) ? (const uint16_t *)(data + (size_t)b->I * b->stride) : NULL;
}

void sl_bundle_free(sl_neuron_bundle *b) {
    if (!b) return;
    if (b->owned) sl_free_huge(b->data);
    memset(b, 0, sizeof(*b));
}

/* One row of `plain` type (n elements) into dst as `stored` (the same, or its N layout). */
static void put_row(sl_type stored, const uint8_t *src, int64_t n, size_t src_bytes, uint8_t *dst) {
    if (stored == SL_TYPE_Q4_0N) sl_q4_0n_pack_row(src, n, dst);
    else if (stored == SL_TYPE_Q8_0N) sl_q8_0n_pack_row(src, n, dst);
    else memcpy(dst, src, src_bytes);
}

/* ---- the transposed down -------------------------------------------------------------------- */

typedef struct transpose_task {
    const sl_weight *down; /* [H, I] source */
    sl_type type;          /* destination (stored) type */
    int64_t i0, i1;        /* rows of down_t to write */
    uint8_t *dst;          /* row i at dst + (i - i0) * stride */
    size_t stride;         /* bytes between destination rows */
    int64_t tw;            /* columns per tile: 32, or the down type's block when larger (K-quants: 256) */
    float *tiles;          /* per thread: tw x H floats + tw scratch */
    uint8_t *rows;         /* per thread: one plain row of H elements (N layouts are packed from it) */
    size_t row_bytes;      /* its size, rounded to 64 */
} transpose_task;

static void transpose_worker(void *arg, int ith, int nth) {
    transpose_task *t = arg;
    const sl_weight *d = t->down;
    const int64_t H = d->rows;
    const sl_type_traits *tr = sl_type_traits_of(d->type);
    const sl_type plain = plain_type(t->type);
    const int64_t TW = t->tw;
    float *tile = t->tiles + (size_t)ith * ((size_t)TW * (size_t)H + (size_t)TW), *tmp = tile + (size_t)TW * (size_t)H;
    uint8_t *row = t->rows + (size_t)ith * t->row_bytes;
    const size_t prb = sl_type_row_size(plain, H);
    long long s, e;
    sl_split_range((t->i1 - t->i0 + TW - 1) / TW, ith, nth, &s, &e);
    if (TW == 32 && plain == d->type && (plain == SL_TYPE_F32 || plain == SL_TYPE_F16 || plain == SL_TYPE_BF16)) {
        /* a float type into itself: 32 x 32 tiles of elements transposed as they are, each side
         * read and written in whole 64- or 128-byte runs */
        for (long long tl = s; tl < e; tl++) {
            const int64_t c0 = t->i0 + tl * 32, w = t->i1 - c0 < 32 ? t->i1 - c0 : 32;
            for (int64_t r0 = 0; r0 < H; r0 += 32) {
                const int64_t hr = H - r0 < 32 ? H - r0 : 32;
                if (plain == SL_TYPE_F32) {
                    uint32_t tile32[32][32];
                    for (int64_t r = 0; r < hr; r++) memcpy(tile32[r], (const uint8_t *)d->data + (size_t)(r0 + r) * d->row_bytes + (size_t)c0 * 4, (size_t)w * 4);
                    for (int64_t j = 0; j < w; j++) {
                        uint32_t *o = (uint32_t *)(t->dst + (size_t)(c0 + j - t->i0) * t->stride) + r0;
                        for (int64_t r = 0; r < hr; r++) o[r] = tile32[r][j];
                    }
                } else {
                    uint16_t tile16[32][32];
                    for (int64_t r = 0; r < hr; r++) memcpy(tile16[r], (const uint8_t *)d->data + (size_t)(r0 + r) * d->row_bytes + (size_t)c0 * 2, (size_t)w * 2);
                    for (int64_t j = 0; j < w; j++) {
                        uint16_t *o = (uint16_t *)(t->dst + (size_t)(c0 + j - t->i0) * t->stride) + r0;
                        for (int64_t r = 0; r < hr; r++) o[r] = tile16[r][j];
                    }
                }
            }
        }
        return;
    }
    for (long long tl = s; tl < e; tl++) {
        const int64_t c0 = t->i0 + tl * TW, w = t->i1 - c0 < TW ? t->i1 - c0 : TW;
        for (int64_t r = 0; r < H; r++) {
            const uint8_t *src = (const uint8_t *)d->data + (size_t)r * d->row_bytes + (size_t)(c0 / tr->block_size) * tr->type_size;
            sl_dequantize_row_ref(d->type, src, tmp, w);
            for (int64_t j = 0; j < w; j++) tile[j * H + r] = tmp[j];
        }
        for (int64_t j = 0; j < w; j++) {
            uint8_t *out = t->dst + (size_t)(c0 + j - t->i0) * t->stride;
            if (plain == t->type) {
                sl_quantize_row_ref(plain, tile + j * H, out, H);
            } else {
                sl_quantize_row_ref(plain, tile + j * H, row, H);
                put_row(t->type, row, H, prb, out);
            }
        }
    }
}

sl_status sl_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, int64_t i0, int64_t i1, uint8_t *dst,
                            size_t dst_stride, sl_error *err) {
    if (!down || !down->data || !dst) return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: NULL argument");
    const int64_t H = down->rows, I = down->cols;
    if (!type_ok(down->type) || !has_own_layout(plain_type(type)))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "transpose down: unsupported type");
    if (H < 1 || I < 1 || down->row_bytes != sl_type_row_size(down->type, I) || !down->row_bytes)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: bad [%lld, %lld] %s matrix", (long long)H, (long long)I,
                            sl_type_name(down->type));
    const int64_t tw = sl_type_block_size(down->type) > 32 ? sl_type_block_size(down->type) : 32;
    if (i0 < 0 || i1 > I || i0 > i1 || (i0 % tw && i0 != I))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: bad row range [%lld, %lld)", (long long)i0, (long long)i1);
    const size_t rb = sl_bundle_row_bytes(type, H);
    if (!rb || dst_stride < rb)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: rows of %lld %s elements do not fit (stride %zu)", (long long)H,
                            sl_type_name(type), dst_stride);
    if (i0 == i1) return SL_OK;
    const int nth = sl_pool_n_threads(pool);
    const size_t row_bytes = align64(sl_type_row_size(plain_type(type), H));
    float *tiles = sl_calloc_array((size_t)nth * ((size_t)tw * (size_t)H + (size_t)tw), sizeof(float));
    uint8_t *rows = sl_calloc_array((size_t)nth, row_bytes);
    if (!tiles || !rows) {
        sl_free_aligned(tiles);
        sl_free_aligned(rows);
        return sl_set_error(err, SL_ERR_NOMEM, "transpose down: no memory for %d tiles of %lld rows", nth, (long long)H);
    }
    transpose_task t = {down, type, i0, i1, dst, dst_stride, tw, tiles, rows, row_bytes};
    sl_pool_run(pool, transpose_worker, &t);
    sl_free_aligned(tiles);
    sl_free_aligned(rows);
    return SL_OK;
}

/* ---- filling the bundles --------------------------------------------------------------------- */

typedef struct fill_task {
    const sl_neuron_bundle *b;                 /* destination */
    const sl_weight *gate, *up, *down_t;       /* sources ([I, H]; down_t NULL: written elsewhere) */
} fill_task;

static void fill_worker(void *arg, int ith, int nth) {
    const fill_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    long long s, e;
    sl_split_range(b->I, ith, nth, &s, &e);
    for (long long i = s; i < e; i++) {
        uint8_t *n = b->data + (size_t)i * b->stride;
        put_row(b->t_gu, (const uint8_t *)t->gate->data + (size_t)i * t->gate->row_bytes, b->H, t->gate->row_bytes, n);
        put_row(b->t_gu, (const uint8_t *)t->up->data + (size_t)i * t->up->row_bytes, b->H, t->up->row_bytes, n + b->off_up);
        if (t->down_t)
            put_row(b->t_d, (const uint8_t *)t->down_t->data + (size_t)i * t->down_t->row_bytes, b->H, t->down_t->row_bytes,
                    n + b->off_down);
        /* the padding between rows stays zero, so files written from bundles are deterministic */
        memset(n + b->rb_gu, 0, b->off_up - b->rb_gu);
        memset(n + b->off_up + b->rb_gu, 0, b->off_down - b->off_up - b->rb_gu);
        memset(n + b->off_down + b->rb_d, 0, b->stride - b->off_down - b->rb_d);
    }
}

static sl_status check_weights(const sl_neuron_bundle *b, const sl_weight *gate, const sl_weight *up, const sl_weight *d,
                               bool transposed, sl_error *err) {
    if (!gate || !up || !d || !gate->data || !up->data || !d->data)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL weights");
    const int64_t I = b->I, H = b->H;
    const bool d_ok = transposed ? d->rows == I && d->cols == H : d->rows == H && d->cols == I;
    if (gate->rows != I || gate->cols != H || up->rows != I || up->cols != H || gate->type != up->type || gate->type != b->t_src ||
        !d_ok)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: gate/up must be [I, H] of one type and down [H, I] (down_t [I, H])");
    if (gate->row_bytes != sl_type_row_size(gate->type, H) || up->row_bytes != gate->row_bytes ||
        d->row_bytes != sl_type_row_size(d->type, d->cols) || !d->row_bytes)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: row sizes do not match the shapes");
    return SL_OK;
}

/* Exact columns: block columns [j0, j1) of a Q4_0 / Q8_0 down ([H, I]) into the neurons' down
 * rows (values) and the scale table, 64 (Q4_0) or 32 (Q8_0) elements of 32 neurons at a time. */
typedef struct col_task {
    const sl_neuron_bundle *b; /* destination */
    const sl_weight *down;     /* [H, I] */
} col_task;

static void col_worker(void *arg, int ith, int nth) {
    const col_task *t = arg;
    const sl_neuron_bundle *b = t->b;
    const sl_weight *d = t->down;
    const int64_t H = b->H;
    const bool q4 = b->t_d == SL_TYPE_Q4_0C;
    const int per = q4 ? 64 : 32;
    uint16_t *table = (uint16_t *)b->dscale;
    long long j0, j1;
    sl_split_range(b->I / 32, ith, nth, &j0, &j1);
    uint8_t q[64][32]; /* q[element in chunk][neuron in block column] */
    for (long long j = j0; j < j1; j++) {
        for (int64_t e0 = 0; e0 < H; e0 += per) {
            const int ne = H - e0 < per ? (int)(H - e0) : per;
            for (int e = 0; e < per; e++) {
                if (e >= ne) { /* padding of a half chunk: value 0 */
                    memset(q[e], q4 ? 8 : 0, 32);
                    continue;
                }
                const uint8_t *row = (const uint8_t *)d->data + (size_t)(e0 + e) * d->row_bytes;
                if (q4) {
                    const sl_block_q4_0 *blk = (const sl_block_q4_0 *)row + j;
                    for (int n = 0; n < 16; n++) {
                        q[e][n] = blk->qs[n] & 0x0f;
                        q[e][n + 16] = blk->qs[n] >> 4;
                    }
                    memcpy(&table[(size_t)j * H + e0 + e], &blk->d, 2);
                } else {
                    const sl_block_q8_0 *blk = (const sl_block_q8_0 *)row + j;
                    for (int n = 0; n < 32; n++) q[e][n] = (uint8_t)(blk->qs[n] + 128);
                    memcpy(&table[(size_t)j * H + e0 + e], &blk->d, 2);
                }
            }
            for (int n = 0; n < 32; n++) {
                uint8_t *dst = b->data + (size_t)(32 * j + n) * b->stride + b->off_down + (size_t)(e0 / per) * 32;
                for (int by = 0; by < 32; by++) {
                    const int e = (by & ~24) | ((by & 8) << 1) | ((by & 16) >> 1); /* quant.h: swap34 */
                    dst[by] = q4 ? (uint8_t)(q[e][n] | q[32 + e][n] << 4) : q[e][n];
                }
            }
        }
    }
}

sl_status sl_bundle_fill(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                         bool transposed, sl_error *err) {
    if (!b || !b->data) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle fill: no destination");
    sl_status st = check_weights(b, gate, up, down, transposed, err);
    if (st) return st;
    if (down_row_type(down->type, transposed) != b->t_d)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle fill: down is %s, the layout wants %s rows", sl_type_name(down->type),
                            sl_type_name(b->t_d));
    fill_task t = {b, gate, up, transposed ? down : NULL};
    sl_pool_run(pool, fill_worker, &t);
    if (transposed) return SL_OK;
    if (sl_is_col_type(b->t_d)) {
        col_task ct = {b, down};
        sl_pool_run(pool, col_worker, &ct);
        return SL_OK;
    }
    return sl_transpose_down(pool, down, b->t_d, 0, b->I, b->data + b->off_down, b->stride, err);
}

static sl_status init_common(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up, const sl_weight *d,
                             bool transposed, sl_error *err) {
    if (!b) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL bundle");
    memset(b, 0, sizeof(*b));
    if (!gate || !up || !d) return sl_set_error(err, SL_ERR_INVALID_ARG, "bundle: NULL weights");
    sl_status st = sl_bundle_layout(b, up->type, d->type, transposed, up->cols, up->rows, err);
    if (st) return st;
    uint8_t *data = sl_alloc_huge(b->bytes);
    if (!data) {
        const size_t bytes = b->bytes;
        memset(b, 0, sizeof(*b));
        return sl_set_error(err, SL_ERR_NOMEM, "bundle: cannot allocate %zu bytes", bytes);
    }
    sl_bundle_attach(b, data);
    b->owned = true;
    st = sl_bundle_fill(b, pool, gate, up, d, transposed, err);
    if (st) sl_bundle_free(b);
    return st;
}

sl_status sl_bundle_init(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up, const sl_weight *down,
                         sl_error *err) {
    return init_common(b, pool, gate, up, down, false, err);
}

sl_status sl_bundle_init_t(sl_neuron_bundle *b, sl_pool *pool, const sl_weight *gate, const sl_weight *up,
                           const sl_weight *down_t, sl_error *err) {
    return init_common(b, pool, gate, up, down_t, true, err);
}
