/*
 * predictor_store.c — the trainer's (x, labels) rows: x as f16 and the true mask as bits (or the
 * contributions as f16, their sign bits the mask), kept in
 * RAM under the memory limit or in an unlinked temporary file (pwrite / pread), one contiguous
 * region per (layer, split). What it is not: the training (predictor_fit.c).
 */
#include "sparse/predictor_train.h"

#include "kernels/kernels.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "util/util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the (x, mask) store ---------------------------------------------------------------------- */



size_t store_offset(const pair_store *s, int layer, int split, int64_t row) {
    return ((size_t)layer * (size_t)(s->n_rows[0] + s->n_rows[1]) + (size_t)(split ? s->n_rows[0] : 0) + (size_t)row) * s->row_bytes;
}

void store_close(pair_store *s) {
    sl_free_aligned(s->mem);
    if (s->fd >= 0) close(s->fd);
    s->mem = NULL;
    s->fd = -1;
}

sl_status store_open(pair_store *s, int32_t n_layer, int32_t H, int32_t I, bool contrib, int64_t n_train, int64_t n_val,
                     int64_t mem_limit, const char *tmp_dir, sl_error *err) {
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->n_layer = n_layer;
    s->H = H;
    s->I = I;
    s->contrib = contrib;
    s->mask_bytes = contrib ? 2 * (size_t)I : ((size_t)I + 7) / 8;
    s->row_bytes = 2 * (size_t)H + s->mask_bytes;
    s->n_rows[0] = n_train;
    s->n_rows[1] = n_val;
    int64_t total = store_bytes(n_train + n_val, n_layer, H, I, contrib);
    if (total < 0 || (uint64_t)total > (uint64_t)SIZE_MAX / 2)
        return sl_set_error(err, SL_ERR_NOMEM, "train: %lld tokens x %d layers do not fit in a byte count", (long long)(n_train + n_val),
                            n_layer);
    if (total <= mem_limit) {
        s->mem = sl_malloc_aligned(total ? (size_t)total : 1);
        if (s->mem) return SL_OK;
        /* RAM refused: fall through to the file */
    }
    const char *dir = tmp_dir && *tmp_dir ? tmp_dir : getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/skipllama-train-XXXXXX", dir) >= (int)sizeof(path))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: temp directory path too long");
    s->fd = mkstemp(path);
    if (s->fd < 0) return sl_set_error(err, SL_ERR_IO, "train: cannot create a temp file in %s: %s", dir, strerror(errno));
    unlink(path); /* gone when closed, even if the process is killed */
    return SL_OK;
}

sl_status store_write(pair_store *s, int layer, int split, int64_t row, int64_t n, const uint8_t *src, sl_error *err) {
    size_t off = store_offset(s, layer, split, row), bytes = (size_t)n * s->row_bytes;
    if (s->mem) {
        memcpy(s->mem + off, src, bytes);
        return SL_OK;
    }
    while (bytes) {
        ssize_t w = pwrite(s->fd, src, bytes, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return sl_set_error(err, SL_ERR_IO, "train: writing the temp file failed: %s", w < 0 ? strerror(errno) : "no space");
        src += w;
        off += (size_t)w;
        bytes -= (size_t)w;
    }
    return SL_OK;
}

sl_status store_read(const pair_store *s, int layer, int split, int64_t row, int64_t n, uint8_t *dst, sl_error *err) {
    size_t off = store_offset(s, layer, split, row), bytes = (size_t)n * s->row_bytes;
    if (s->mem) {
        memcpy(dst, s->mem + off, bytes);
        return SL_OK;
    }
    while (bytes) {
        ssize_t r = pread(s->fd, dst, bytes, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return sl_set_error(err, SL_ERR_IO, "train: reading the temp file failed: %s", r < 0 ? strerror(errno) : "short file");
        dst += r;
        off += (size_t)r;
        bytes -= (size_t)r;
    }
    return SL_OK;
}

/* Encode n rows (x [n, H], active mask [n, I] as bools or gate > 0) into dst; returns positives. */
int64_t encode_rows(const float *x, const float *gate, const bool *mask, int64_t n, int H, int I, size_t row_bytes,
                           uint8_t *dst) {
    int64_t pos = 0;
    const size_t mb = ((size_t)I + 7) / 8;
    for (int64_t b = 0; b < n; b++) {
        uint8_t *row = dst + (size_t)b * row_bytes;
        const float *xr = x + (size_t)b * H;
        for (int h = 0; h < H; h++) {
            uint16_t v = sl_fp32_to_fp16(xr[h]);
            row[2 * h] = (uint8_t)(v & 0xff);
            row[2 * h + 1] = (uint8_t)(v >> 8);
        }
        uint8_t *m = row + 2 * (size_t)H;
        memset(m, 0, mb);
        for (int i = 0; i < I; i++) {
            bool on = mask ? mask[(size_t)b * I + i] : gate[(size_t)b * I + i] > 0.0f;
            if (on) {
                m[i >> 3] |= (uint8_t)(1u << (i & 7));
                pos++;
            }
        }
    }
    return pos;
}

int64_t encode_rows_contrib(const float *x, const float *c, const float *gate, const bool *mask, int64_t n, int H, int I,
                            size_t row_bytes, uint8_t *dst) {
    int64_t pos = 0;
    for (int64_t b = 0; b < n; b++) {
        uint8_t *row = dst + (size_t)b * row_bytes;
        const float *xr = x + (size_t)b * H, *cr = c + (size_t)b * I;
        for (int h = 0; h < H; h++) {
            uint16_t v = sl_fp32_to_fp16(xr[h]);
            row[2 * h] = (uint8_t)(v & 0xff);
            row[2 * h + 1] = (uint8_t)(v >> 8);
        }
        uint8_t *m = row + 2 * (size_t)H;
        for (int i = 0; i < I; i++) {
            const size_t k = (size_t)b * I + i;
            const bool on = mask ? mask[k] : gate ? gate[k] > 0.0f : cr[i] > 0.0f;
            uint16_t v = (uint16_t)(sl_fp32_to_fp16(fabsf(cr[i])) & 0x7fffu);
            if (!on) v |= 0x8000u;
            m[2 * i] = (uint8_t)(v & 0xff);
            m[2 * i + 1] = (uint8_t)(v >> 8);
            pos += on;
        }
    }
    return pos;
}

int64_t sl_train_store_bytes(int64_t n_tokens, int32_t n_layer, int32_t n_embd, int32_t n_ff) {
    return store_bytes(n_tokens, n_layer, n_embd, n_ff, false);
}

int64_t store_bytes(int64_t n_tokens, int32_t n_layer, int32_t n_embd, int32_t n_ff, bool contrib) {
    if (n_tokens < 0 || n_layer < 0 || n_embd < 0 || n_ff < 0) return -1;
    const int64_t row = 2 * (int64_t)n_embd + (contrib ? 2 * (int64_t)n_ff : ((int64_t)n_ff + 7) / 8);
    if (n_tokens && row && (int64_t)n_layer > INT64_MAX / row / n_tokens) return -1;
    return n_tokens * n_layer * row;
}
