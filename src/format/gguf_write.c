/*
 * gguf_write.c — the GGUF v3 writer (see gguf.h for the contract): metadata serialised into a
 * growing buffer, tensors laid out at write time, written to a temporary file renamed into place
 * only when complete. What it is not: the reader (gguf_read.c).
 */
#define _POSIX_C_SOURCE 200809L
#include "format/gguf.h"

#include "format/quant.h"
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- writer ---------------------------------------------------------------------------------- */

/* The writer serialises metadata eagerly into a growing byte buffer (so copying nested arrays
 * from another file is a byte copy), and keeps tensor descriptors to lay out at write time. */
typedef struct wtensor {
    char *name;        /* owned */
    sl_type type;      /* element type */
    int n_dims;        /* 1..4 */
    int64_t ne[4];     /* dims, ne[0] = row length */
    const void *data;  /* caller-owned */
    size_t nbytes;     /* data size */
} wtensor;

struct gguf_writer {
    uint8_t *meta;       /* serialised key/values */
    size_t meta_len;     /* bytes used */
    size_t meta_cap;     /* bytes allocated */
    uint64_t n_kv;       /* entries in meta */
    wtensor *tensors;    /* [n_tensors] */
    size_t n_tensors;    /* tensors added */
    size_t cap_tensors;  /* allocated */
};

gguf_writer *gguf_writer_init(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->meta);
    free(w);
}

static bool put(gguf_writer *w, const void *p, size_t n) {
    if (w->meta_len + n > w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_len + n) cap *= 2;
        uint8_t *m = realloc(w->meta, cap);
        if (!m) return false;
        w->meta = m;
        w->meta_cap = cap;
    }
    memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return true;
}

static bool put_u32(gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static bool put_u64(gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static bool put_strn(gguf_writer *w, const char *s, size_t n) { return put_u64(w, n) && put(w, s, n); }
static bool put_key(gguf_writer *w, const char *key, gguf_type t) {
    w->n_kv++;
    return put_strn(w, key, strlen(key)) && put_u32(w, t);
}

bool gguf_writer_set_u32(gguf_writer *w, const char *k, uint32_t v) { return put_key(w, k, GGUF_TYPE_UINT32) && put(w, &v, 4); }
bool gguf_writer_set_i32(gguf_writer *w, const char *k, int32_t v) { return put_key(w, k, GGUF_TYPE_INT32) && put(w, &v, 4); }
bool gguf_writer_set_u64(gguf_writer *w, const char *k, uint64_t v) { return put_key(w, k, GGUF_TYPE_UINT64) && put(w, &v, 8); }
bool gguf_writer_set_f32(gguf_writer *w, const char *k, float v) { return put_key(w, k, GGUF_TYPE_FLOAT32) && put(w, &v, 4); }
bool gguf_writer_set_bool(gguf_writer *w, const char *k, bool v) {
    uint8_t b = v;
    return put_key(w, k, GGUF_TYPE_BOOL) && put(w, &b, 1);
}
bool gguf_writer_set_str(gguf_writer *w, const char *k, const char *v) {
    return put_key(w, k, GGUF_TYPE_STRING) && put_strn(w, v, strlen(v));
}
bool gguf_writer_set_arr(gguf_writer *w, const char *k, gguf_type et, const void *data, uint64_t n) {
    size_t es = gguf_type_size(et), bytes;
    if (!es || sl_mul_overflow((size_t)n, es, &bytes)) return false;
    return put_key(w, k, GGUF_TYPE_ARRAY) && put_u32(w, et) && put_u64(w, n) && put(w, data, bytes);
}
bool gguf_writer_set_arr_str(gguf_writer *w, const char *k, const char *const *strs, uint64_t n) {
    if (!put_key(w, k, GGUF_TYPE_ARRAY) || !put_u32(w, GGUF_TYPE_STRING) || !put_u64(w, n)) return false;
    for (uint64_t i = 0; i < n; i++)
        if (!put_strn(w, strs[i], strlen(strs[i]))) return false;
    return true;
}

static bool put_value(gguf_writer *w, const gguf_value *v);

static bool put_array(gguf_writer *w, const gguf_array *a) {
    if (!put_u32(w, a->elem_type) || !put_u64(w, a->n)) return false;
    if (a->elem_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_strn(w, a->strs[i].data, (size_t)a->strs[i].len)) return false;
        return true;
    }
    if (a->elem_type == GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_array(w, &a->items[i].v.arr)) return false;
        return true;
    }
    return put(w, a->data, (size_t)a->n * gguf_type_size(a->elem_type));
}

static bool put_value(gguf_writer *w, const gguf_value *v) {
    switch (v->type) {
    case GGUF_TYPE_STRING: return put_strn(w, v->v.str.data, (size_t)v->v.str.len);
    case GGUF_TYPE_ARRAY: return put_array(w, &v->v.arr);
    case GGUF_TYPE_FLOAT32: { float f = (float)v->v.f64; return put(w, &f, 4); }
    case GGUF_TYPE_FLOAT64: return put(w, &v->v.f64, 8);
    default: {
        /* integers and bool: the low bytes of the 64-bit value, little-endian */
        uint64_t u = gguf_type_is_signed(v->type) ? (uint64_t)v->v.i64 : v->v.u64;
        return put(w, &u, gguf_type_size(v->type));
    }
    }
}

bool gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, bool (*skip)(const char *, void *), void *ud) {
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const gguf_kv *kv = &src->kv[i];
        char key[512];
        if (kv->key.len >= sizeof(key)) continue;
        gguf_str_copy(kv->key, key, sizeof(key));
        if (skip && skip(key, ud)) continue;
        if (!put_key(w, key, kv->value.type) || !put_value(w, &kv->value)) return false;
    }
    return true;
}

bool gguf_writer_add_tensor(gguf_writer *w, const char *name, sl_type type, int n_dims, const int64_t *ne, const void *data) {
    if (n_dims < 1 || n_dims > 4 || !sl_type_traits_of(type)) return false;
    int64_t nelem = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || __builtin_mul_overflow(nelem, ne[d], &nelem)) return false;
    }
    if (ne[0] % sl_type_block_size(type)) return false;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof(*t));
        if (!t) return false;
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    if (!t->name) return false;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = sl_type_row_size(type, ne[0]) * (size_t)(nelem / ne[0]);
    w->n_tensors++;
    return true;
}

static bool write_all(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n; }

static bool write_pad(FILE *fp, uint64_t *pos, uint64_t align) {
    static const uint8_t zeros[64];
    uint64_t pad = (align - *pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
        if (!write_all(fp, zeros, k)) return false;
        pad -= k;
        *pos += k;
    }
    return true;
}

/* Header, metadata, tensor infos and data, as one GGUF v3 file. */
static bool write_to(gguf_writer *w, FILE *fp) {
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    bool ok = true;
    uint32_t hdr[2] = {GGUF_MAGIC, 3};
    uint64_t counts[2] = {w->n_tensors, w->n_kv};
    ok = ok && write_all(fp, hdr, 8) && write_all(fp, counts, 16) && write_all(fp, w->meta, w->meta_len);
    uint64_t pos = 24 + w->meta_len, off = 0;
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint64_t nl = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, ty = (uint32_t)t->type;
        ok = write_all(fp, &nl, 8) && write_all(fp, t->name, nl) && write_all(fp, &nd, 4);
        for (int d = 0; ok && d < t->n_dims; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            ok = write_all(fp, &ne, 8);
        }
        ok = ok && write_all(fp, &ty, 4) && write_all(fp, &off, 8);
        pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += (t->nbytes + align - 1) / align * align;
    }
    ok = ok && write_pad(fp, &pos, align);
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        ok = write_all(fp, w->tensors[i].data, w->tensors[i].nbytes);
        pos += w->tensors[i].nbytes;
        ok = ok && write_pad(fp, &pos, align);
    }
    return ok;
}

sl_status gguf_writer_write(gguf_writer *w, const char *path, sl_error *err) {
    sl_output *out = sl_output_open(path, err);
    if (!out) return err ? err->code : SL_ERR_IO;
    if (!write_to(w, sl_output_stream(out))) {
        int e = errno;
        sl_output_abort(out);
        return sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    return sl_output_commit(out, err);
}

sl_status gguf_writer_write_memory(gguf_writer *w, void **out, size_t *out_size, sl_error *err) {
    char *buf = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&buf, &n);
    if (!fp) return sl_set_error(err, SL_ERR_NOMEM, "gguf: cannot open a memory stream");
    bool ok = write_to(w, fp);
    if (fclose(fp) != 0) ok = false;
    if (!ok) {
        free(buf);
        return sl_set_error(err, SL_ERR_NOMEM, "gguf: out of memory writing to memory");
    }
    *out = buf;
    *out_size = n;
    return SL_OK;
}

/* ---- streaming writer ------------------------------------------------------------------------ */

/* Write the header, metadata and tensor infos exactly as gguf_writer_write lays them out, and
 * pad to the data section. Returns the file position reached (in *pos). */
static bool stream_header(gguf_writer *w, FILE *fp, uint64_t align, uint64_t *pos) {
    uint32_t hdr[2] = {GGUF_MAGIC, 3};
    uint64_t counts[2] = {w->n_tensors, w->n_kv};
    bool ok = write_all(fp, hdr, 8) && write_all(fp, counts, 16) && write_all(fp, w->meta, w->meta_len);
    uint64_t off = 0;
    *pos = 24 + w->meta_len;
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint64_t nl = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, ty = (uint32_t)t->type;
        ok = write_all(fp, &nl, 8) && write_all(fp, t->name, nl) && write_all(fp, &nd, 4);
        for (int d = 0; ok && d < t->n_dims; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            ok = write_all(fp, &ne, 8);
        }
        ok = ok && write_all(fp, &ty, 4) && write_all(fp, &off, 8);
        *pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += (t->nbytes + align - 1) / align * align;
    }
    return ok && write_pad(fp, pos, align);
}

sl_status gguf_writer_write_stream(gguf_writer *w, const char *path, gguf_rows_fn fn, void *ud, size_t chunk_bytes,
                                   sl_error *err) {
    if (!w || !path) return sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: NULL writer or path");
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].data && !fn)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: tensor '%s' has no data and no row source", w->tensors[i].name);
    if (chunk_bytes == 0) chunk_bytes = (size_t)8 << 20;
    /* the chunk buffer must hold at least one row of the widest tensor */
    size_t buf_bytes = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) continue;
        size_t row = sl_type_row_size(t->type, t->ne[0]);
        size_t want = row >= chunk_bytes ? row : chunk_bytes / row * row;
        if (want > t->nbytes) want = t->nbytes;
        if (want > buf_bytes) buf_bytes = want;
    }
    uint8_t *buf = buf_bytes ? sl_malloc_aligned(buf_bytes) : NULL;
    if (buf_bytes && !buf) return sl_set_error(err, SL_ERR_NOMEM, "gguf: cannot allocate a %zu-byte write buffer", buf_bytes);
    sl_output *out = sl_output_open(path, err);
    if (!out) {
        sl_free_aligned(buf);
        return err ? err->code : SL_ERR_IO;
    }
    FILE *fp = sl_output_stream(out);
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    uint64_t pos = 0;
    sl_status st = SL_OK;
    bool ok = stream_header(w, fp, align, &pos);
    for (size_t i = 0; ok && st == SL_OK && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) {
            ok = write_all(fp, t->data, t->nbytes);
        } else {
            size_t row = sl_type_row_size(t->type, t->ne[0]);
            int64_t n_rows = (int64_t)(t->nbytes / row);
            int64_t per = (int64_t)(buf_bytes / row);
            for (int64_t r = 0; ok && r < n_rows; r += per) {
                int64_t n = n_rows - r < per ? n_rows - r : per;
                st = fn(ud, i, r, n, buf, err);
                if (st != SL_OK) break;
                ok = write_all(fp, buf, (size_t)n * row);
            }
        }
        pos += t->nbytes;
        ok = ok && write_pad(fp, &pos, align);
    }
    sl_free_aligned(buf);
    if (st == SL_OK && !ok) st = sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (st != SL_OK) {
        sl_output_abort(out);
        return st;
    }
    return sl_output_commit(out, err);
}
