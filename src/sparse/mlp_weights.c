/*
 * mlp_weights.c — checks of MLP weight views, and the transposed down matrix (mlp_weights.h).
 * What it is not: the operator (sparse_mlp.c) or the bundles (bundle.c), which use both.
 */
#include "sparse/mlp_weights.h"

#include "kernels/activation.h"
#include "util/util.h"

#include <stdlib.h>

/* ---- weight checks -------------------------------------------------------------------------- */

sl_status sp_check_matrix(const sl_weight *w, int64_t rows, int64_t cols, const char *name, sl_error *err) {
    if (!w || !w->data) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s is NULL", name);
    if (!sl_type_traits_of(w->type))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: %s has unsupported type %s (%d)", name, sl_type_name(w->type) ? sl_type_name(w->type) : "unknown", (int)w->type);
    if (w->rows != rows || w->cols != cols)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s is [%lld, %lld], expected [%lld, %lld]", name,
                            (long long)w->rows, (long long)w->cols, (long long)rows, (long long)cols);
    size_t rb = sl_type_row_size(w->type, cols);
    if (rb == 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s rows of %lld elements are not a multiple of the %s block (%lld)",
                            name, (long long)cols, sl_type_name(w->type), (long long)sl_type_block_size(w->type));
    if (w->row_bytes != rb)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: %s row_bytes %zu, expected %zu", name, w->row_bytes, rb);
    return SL_OK;
}

sl_status sp_check_gate_up(const sl_weight *gate, const sl_weight *up, sl_activation act, int64_t *H, int64_t *I,
                               sl_error *err) {
    if (!gate || !up) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate or up is NULL");
    if (!sl_activation_supported(act)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "sparse mlp: unsupported activation %d", (int)act);
    if (gate->rows < 1 || gate->cols < 1 || gate->rows > SL_MLP_MAX_DIM || gate->cols > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate shape [%lld, %lld] must be within 1..%lld",
                            (long long)gate->rows, (long long)gate->cols, (long long)SL_MLP_MAX_DIM);
    *I = gate->rows;
    *H = gate->cols;
    sl_status st = sp_check_matrix(gate, *I, *H, "gate", err);
    if (st == SL_OK) st = sp_check_matrix(up, *I, *H, "up", err);
    if (st == SL_OK && gate->type != up->type)
        st = sl_set_error(err, SL_ERR_INVALID_ARG, "sparse mlp: gate is %s but up is %s", sl_type_name(gate->type),
                          sl_type_name(up->type));
    return st;
}

/* ---- transposed down ------------------------------------------------------------------------ */

/* Float types transpose exactly; block types other than Q8_0 become Q8_0 (a row of down_t is a
 * column of down, re-quantized anyway, and Q8_0 keeps it closest and needs only H % 32 == 0). */
sl_type sl_mlp_down_t_type(sl_type type) { return sl_type_block_size(type) > 1 ? SL_TYPE_Q8_0 : type; }

size_t sl_mlp_down_t_bytes(const sl_weight *down, sl_type type) {
    if (!down || down->rows < 1 || down->cols < 1) return 0;
    size_t rb = sl_type_row_size(type, down->rows), total;
    if (rb == 0 || sl_mul_overflow(rb, (size_t)down->cols, &total)) return 0;
    return total;
}

typedef struct transpose_task {
    const sl_weight *down; /* [H, I] source */
    sl_type type;          /* destination type */
    uint8_t *dst;          /* [I, H] destination */
    size_t dst_rb;         /* destination row bytes */
    float *tiles;          /* per thread: 32 x H floats + 32 scratch */
} transpose_task;

/* Columns of down are taken a tile at a time — 32, or one block of the source type when its
 * blocks are wider (256 for the K-quants) — so each of the H source rows contributes whole
 * dequantized blocks to a TW x H tile, whose rows are then encoded. */
static int64_t tile_width(sl_type t) { return sl_type_block_size(t) > 32 ? sl_type_block_size(t) : 32; }

static void transpose_worker(void *arg, int ith, int nth) {
    transpose_task *t = arg;
    const sl_weight *d = t->down;
    const int64_t H = d->rows, I = d->cols, TW = tile_width(d->type);
    const sl_type_traits *tr = sl_type_traits_of(d->type);
    float *tile = t->tiles + (size_t)ith * ((size_t)TW * (size_t)H + (size_t)TW), *tmp = tile + (size_t)TW * (size_t)H;
    long long t0, t1;
    sl_split_range((I + TW - 1) / TW, ith, nth, &t0, &t1);
    for (long long tl = t0; tl < t1; tl++) {
        int64_t c0 = tl * TW, w = I - c0 < TW ? I - c0 : TW;
        for (int64_t r = 0; r < H; r++) {
            const uint8_t *src = (const uint8_t *)d->data + (size_t)r * d->row_bytes + (size_t)(c0 / tr->block_size) * tr->type_size;
            sl_dequantize_row_ref(d->type, src, tmp, w);
            for (int64_t j = 0; j < w; j++) tile[j * H + r] = tmp[j];
        }
        for (int64_t j = 0; j < w; j++) sl_quantize_row_ref(t->type, tile + j * H, t->dst + (size_t)(c0 + j) * t->dst_rb, H);
    }
}

sl_status sl_mlp_transpose_down(sl_pool *pool, const sl_weight *down, sl_type type, void *dst, size_t dst_bytes,
                                sl_weight *down_t, sl_error *err) {
    if (!down || !down->data || !dst || !down_t)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: NULL argument");
    if (!sl_type_traits_of(type)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "transpose down: unsupported type %s (%d)", sl_type_name(type) ? sl_type_name(type) : "unknown", (int)type);
    if (down->rows < 1 || down->cols < 1 || down->rows > SL_MLP_MAX_DIM || down->cols > SL_MLP_MAX_DIM)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: bad shape [%lld, %lld]", (long long)down->rows,
                            (long long)down->cols);
    sl_status st = sp_check_matrix(down, down->rows, down->cols, "down", err);
    if (st) return st;
    size_t need = sl_mlp_down_t_bytes(down, type);
    if (need == 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: H = %lld is not a multiple of the %s block",
                            (long long)down->rows, sl_type_name(type));
    if (dst_bytes < need) return sl_set_error(err, SL_ERR_INVALID_ARG, "transpose down: dst has %zu bytes, needs %zu", dst_bytes, need);
    int nth = sl_pool_n_threads(pool);
    const size_t tw = (size_t)tile_width(down->type);
    float *tiles = sl_calloc_array((size_t)nth * (tw * (size_t)down->rows + tw), sizeof(float));
    if (!tiles) return sl_set_error(err, SL_ERR_NOMEM, "transpose down: no memory for %d tiles", nth);
    transpose_task t = {down, type, dst, sl_type_row_size(type, down->rows), tiles};
    sl_pool_run(pool, transpose_worker, &t);
    sl_free_aligned(tiles);
    down_t->data = dst;
    down_t->type = type;
    down_t->rows = down->cols;
    down_t->cols = down->rows;
    down_t->row_bytes = t.dst_rb;
    return SL_OK;
}
