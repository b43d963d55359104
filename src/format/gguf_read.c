/*
 * gguf_read.c — the GGUF v2/v3 reader (see gguf.h for the contract); the writer is gguf_write.c.
 *
 * Reading is a single forward pass with a bounds-checked cursor. Before anything is allocated
 * its size is checked against what the remaining bytes could possibly encode (every key/value
 * needs at least 12 bytes, every string element 8, every tensor info 24...), so a header that
 * claims 2^60 entries is rejected without touching the allocator. Nested arrays are limited in
 * depth. Tensor data is never copied: infos point into the mapping.
 */
#define _POSIX_C_SOURCE 200809L
#include "format/gguf.h"

#include "format/quant.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_NESTING 8           /* arrays of arrays deeper than this are refused */
#define GGUF_MAX_KEY_LEN 65535       /* longer keys/names are refused */
/* issue 8 (fuzzing/limits): sizes that fit in a file can still be hostile when the file is huge
 * but hollow (sparse): each string/array element costs a 16-48 byte index entry here, and a
 * string may be copied by a consumer (chat template). Beyond these, a file is refused. */
#define GGUF_MAX_STRING_LEN ((uint64_t)1 << 30)   /* 1 GiB per metadata string */
#define GGUF_MAX_INDEXED_ELEMS ((uint64_t)1 << 24) /* 16 M string / nested-array elements per array */

static const size_t type_sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const type_names[GGUF_TYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                        "bool", "str", "arr", "u64", "i64", "f64"};

size_t gguf_type_size(gguf_type t) { return (unsigned)t < GGUF_TYPE_COUNT ? type_sizes[t] : 0; }
const char *gguf_type_name(gguf_type t) { return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "?"; }

/* ---- cursor ---------------------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *base; /* file start */
    size_t size;         /* file size */
    size_t pos;          /* next byte to read */
    sl_error *err;       /* where problems are reported */
    uint32_t version;    /* file version (v1 is refused) */
} cursor;

static bool need(cursor *c, size_t n, const char *what) {
    if (n > c->size - c->pos) {
        sl_set_error(c->err, SL_ERR_FORMAT, "gguf: truncated file: %s needs %zu bytes at offset %zu, file has %zu",
                     what, n, c->pos, c->size);
        return false;
    }
    return true;
}

static bool rd(cursor *c, void *dst, size_t n, const char *what) {
    if (!need(c, n, what)) return false;
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return true;
}

static bool rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static bool rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static bool rd_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t len;
    if (!rd_u64(c, &len, what)) return false;
    if (len > c->size - c->pos) {
        sl_set_error(c->err, SL_ERR_FORMAT, "gguf: %s: string length %llu at offset %zu runs past the end of the file (%zu bytes)",
                     what, (unsigned long long)len, c->pos - 8, c->size);
        return false;
    }
    if (len > GGUF_MAX_STRING_LEN) { /* issue 8: see GGUF_MAX_STRING_LEN */
        sl_set_error(c->err, SL_ERR_FORMAT, "gguf: %s: string length %llu at offset %zu is over the 1 GiB limit", what,
                     (unsigned long long)len, c->pos - 8);
        return false;
    }
    s->len = len;
    s->data = (const char *)c->base + c->pos;
    c->pos += (size_t)len;
    return true;
}

/* ---- values ---------------------------------------------------------------------------------- */

static void value_free(gguf_value *v);

static void array_free(gguf_array *a) {
    free(a->strs);
    if (a->items) {
        for (uint64_t i = 0; i < a->n; i++) value_free(&a->items[i]);
        free(a->items);
    }
}

static void value_free(gguf_value *v) {
    if (v->type == GGUF_TYPE_ARRAY) array_free(&v->v.arr);
}

static bool read_value(cursor *c, gguf_type type, gguf_value *out, int depth, const char *key);

static bool read_array(cursor *c, gguf_array *a, int depth, const char *key) {
    uint32_t et;
    uint64_t n;
    memset(a, 0, sizeof(*a));
    if (!rd_u32(c, &et, "array element type") || !rd_u64(c, &n, "array length")) return false;
    if (et >= GGUF_TYPE_COUNT) {
        sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': unknown array element type %u", key, et);
        return false;
    }
    a->elem_type = (gguf_type)et;
    size_t remaining = c->size - c->pos;
    if (et == GGUF_TYPE_STRING || et == GGUF_TYPE_ARRAY) {
        /* each element needs at least 8 (string length) or 12 (type + length) bytes */
        size_t min_elem = et == GGUF_TYPE_STRING ? 8 : 12;
        if (n > remaining / min_elem) {
            sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': array of %llu elements cannot fit in the %zu bytes left",
                         key, (unsigned long long)n, remaining);
            return false;
        }
        if (n > GGUF_MAX_INDEXED_ELEMS) { /* issue 8: see GGUF_MAX_INDEXED_ELEMS */
            sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': array of %llu %s elements is over the limit of %llu", key,
                         (unsigned long long)n, type_names[et], (unsigned long long)GGUF_MAX_INDEXED_ELEMS);
            return false;
        }
        a->n = n;
        if (et == GGUF_TYPE_STRING) {
            a->strs = n ? calloc((size_t)n, sizeof(gguf_str)) : NULL;
            if (n && !a->strs) {
                sl_set_error(c->err, SL_ERR_NOMEM, "gguf: key '%s': cannot allocate %llu string entries", key, (unsigned long long)n);
                return false;
            }
            for (uint64_t i = 0; i < n; i++)
                if (!rd_str(c, &a->strs[i], key)) return false;
        } else {
            if (depth + 1 > GGUF_MAX_NESTING) {
                sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': arrays nested deeper than %d", key, GGUF_MAX_NESTING);
                return false;
            }
            a->items = n ? calloc((size_t)n, sizeof(gguf_value)) : NULL;
            if (n && !a->items) {
                sl_set_error(c->err, SL_ERR_NOMEM, "gguf: key '%s': cannot allocate %llu nested arrays", key, (unsigned long long)n);
                return false;
            }
            for (uint64_t i = 0; i < n; i++) {
                a->items[i].type = GGUF_TYPE_ARRAY;
                if (!read_array(c, &a->items[i].v.arr, depth + 1, key)) {
                    a->n = i + 1; /* free what was parsed */
                    return false;
                }
            }
        }
        return true;
    }
    size_t es = type_sizes[et];
    if (n > remaining / es) {
        sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': array of %llu %s elements runs past the end of the file",
                     key, (unsigned long long)n, type_names[et]);
        return false;
    }
    a->n = n;
    a->data = c->base + c->pos;
    c->pos += (size_t)n * es;
    return true;
}

static bool read_value(cursor *c, gguf_type type, gguf_value *out, int depth, const char *key) {
    out->type = type;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; uint64_t u64; int64_t i64; double f64;
    } raw;
    switch (type) {
    case GGUF_TYPE_STRING: return rd_str(c, &out->v.str, key);
    case GGUF_TYPE_ARRAY: return read_array(c, &out->v.arr, depth, key);
    default: break;
    }
    if (!rd(c, &raw, type_sizes[type], key)) return false;
    switch (type) {
    case GGUF_TYPE_UINT8: out->v.u64 = raw.u8; break;
    case GGUF_TYPE_BOOL:
        if (raw.u8 > 1) {
            sl_set_error(c->err, SL_ERR_FORMAT, "gguf: key '%s': bool value %u is neither 0 nor 1", key, raw.u8);
            return false;
        }
        out->v.u64 = raw.u8;
        break;
    case GGUF_TYPE_INT8: out->v.i64 = raw.i8; break;
    case GGUF_TYPE_UINT16: out->v.u64 = raw.u16; break;
    case GGUF_TYPE_INT16: out->v.i64 = raw.i16; break;
    case GGUF_TYPE_UINT32: out->v.u64 = raw.u32; break;
    case GGUF_TYPE_INT32: out->v.i64 = raw.i32; break;
    case GGUF_TYPE_FLOAT32: out->v.f64 = raw.f32; break;
    case GGUF_TYPE_UINT64: out->v.u64 = raw.u64; break;
    case GGUF_TYPE_INT64: out->v.i64 = raw.i64; break;
    case GGUF_TYPE_FLOAT64: out->v.f64 = raw.f64; break;
    default: break;
    }
    return true;
}

/* ---- open ------------------------------------------------------------------------------------ */

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) value_free(&f->kv[i].value);
        free(f->kv);
    }
    free(f->tensors);
    if (f->mapping) munmap(f->mapping, f->size);
    free(f->owned_image);
    free(f->owned_names);
    free(f);
}

static bool is_power_of_two(uint64_t x) { return x && !(x & (x - 1)); }

/* ggml's name of a tensor type id, supported here or not (ggml.h's enum ggml_type), for messages. */
static const char *ggml_type_name(uint32_t type) {
    static const char *const names[] = {
        "f32",   "f16",     "q4_0",   "q4_1",    "q4_2 (removed)", "q4_3 (removed)", "q5_0",  "q5_1",    "q8_0",    "q8_1",
        "q2_K",  "q3_K",    "q4_K",   "q5_K",    "q6_K",           "q8_K",           "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
        "iq4_nl", "iq3_s",  "iq2_s",  "iq4_xs",  "i8",             "i16",            "i32",   "i64",     "f64",     "iq1_m",
        "bf16",  "q4_0_4_4 (removed)", "q4_0_4_8 (removed)", "q4_0_8_8 (removed)", "tq1_0", "tq2_0", "iq4_nl_4_4 (removed)",
        "iq4_nl_4_8 (removed)", "iq4_nl_8_8 (removed)", "mxfp4"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown to ggml";
}

static gguf_file *parse(const uint8_t *base, size_t size, sl_error *err) {
    gguf_file *f = calloc(1, sizeof(*f));
    if (!f) {
        sl_set_error(err, SL_ERR_NOMEM, "gguf: out of memory");
        return NULL;
    }
    f->base = base;
    f->size = size;
    cursor c = {base, size, 0, err, 0};
    uint32_t magic;
    if (!rd_u32(&c, &magic, "magic")) goto fail;
    if (magic != GGUF_MAGIC) {
        sl_set_error(err, SL_ERR_FORMAT, "gguf: bad magic 0x%08x (not a GGUF file)", magic);
        goto fail;
    }
    if (!rd_u32(&c, &f->version, "version")) goto fail;
    if (f->version != 2 && f->version != 3) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "gguf: version %u is not supported (only 2 and 3)", f->version);
        goto fail;
    }
    c.version = f->version;
    uint64_t n_tensors, n_kv;
    if (!rd_u64(&c, &n_tensors, "tensor count") || !rd_u64(&c, &n_kv, "metadata count")) goto fail;
    /* minimum encodings: kv = key len (8) + key (>=0) + type (4) + smallest value (1) = 13;
     * tensor info = name len (8) + n_dims (4) + ne (>=8) + type (4) + offset (8) = 32 */
    size_t remaining = size - c.pos;
    if (n_kv > remaining / 13) {
        sl_set_error(err, SL_ERR_FORMAT, "gguf: metadata count %llu cannot fit in a %zu-byte file", (unsigned long long)n_kv, size);
        goto fail;
    }
    if (n_tensors > remaining / 32) {
        sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor count %llu cannot fit in a %zu-byte file", (unsigned long long)n_tensors, size);
        goto fail;
    }
    f->kv = n_kv ? calloc((size_t)n_kv, sizeof(gguf_kv)) : NULL;
    if (n_kv && !f->kv) {
        sl_set_error(err, SL_ERR_NOMEM, "gguf: cannot allocate %llu metadata entries", (unsigned long long)n_kv);
        goto fail;
    }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        char keybuf[128];
        if (!rd_str(&c, &kv->key, "metadata key")) goto fail;
        if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: metadata entry %llu has a key of length %llu",
                         (unsigned long long)i, (unsigned long long)kv->key.len);
            goto fail;
        }
        gguf_str_copy(kv->key, keybuf, sizeof(keybuf));
        for (uint64_t j = 0; j < i; j++) {
            if (f->kv[j].key.len == kv->key.len && !memcmp(f->kv[j].key.data, kv->key.data, kv->key.len)) {
                sl_set_error(err, SL_ERR_FORMAT, "gguf: duplicate metadata key '%s'", keybuf);
                goto fail;
            }
        }
        uint32_t t;
        if (!rd_u32(&c, &t, "metadata value type")) goto fail;
        if (t >= GGUF_TYPE_COUNT) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: key '%s' has unknown value type %u", keybuf, t);
            goto fail;
        }
        f->n_kv = i + 1; /* so gguf_close frees a partially parsed value */
        if (!read_value(&c, (gguf_type)t, &kv->value, 0, keybuf)) goto fail;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            /* issue 8 (found by fuzz_model): below 8 (the GGUF spec's minimum) f32 weights could
             * start at odd addresses and every float load from them would be misaligned (UB) */
            if (kv->value.type != GGUF_TYPE_UINT32 || !is_power_of_two(kv->value.v.u64) || kv->value.v.u64 < 8 ||
                kv->value.v.u64 > 65536) {
                sl_set_error(err, SL_ERR_FORMAT, "gguf: general.alignment must be a u32 power of two in 8..65536");
                goto fail;
            }
            f->alignment = kv->value.v.u64;
        }
    }
    f->n_kv = n_kv;

    f->tensors = n_tensors ? calloc((size_t)n_tensors, sizeof(gguf_tensor_info)) : NULL;
    if (n_tensors && !f->tensors) {
        sl_set_error(err, SL_ERR_NOMEM, "gguf: cannot allocate %llu tensor infos", (unsigned long long)n_tensors);
        goto fail;
    }
    f->n_tensors = n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        char name[128];
        if (!rd_str(&c, &t->name, "tensor name")) goto fail;
        gguf_str_copy(t->name, name, sizeof(name));
        if (t->name.len == 0 || t->name.len > GGUF_MAX_KEY_LEN) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor %llu has a name of length %llu", (unsigned long long)i,
                         (unsigned long long)t->name.len);
            goto fail;
        }
        if (!rd_u32(&c, &t->n_dims, "tensor n_dims")) goto fail;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s' has %u dimensions (1..%d allowed)", name, t->n_dims, GGUF_MAX_DIMS);
            goto fail;
        }
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if (!rd_u64(&c, &ne, "tensor dimension")) goto fail;
            if (ne == 0 || ne > (uint64_t)INT64_MAX || __builtin_mul_overflow(nelem, ne, &nelem) || nelem > (uint64_t)INT64_MAX) {
                sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s': dimension %u = %llu is zero or overflows the element count",
                             name, d, (unsigned long long)ne);
                goto fail;
            }
            t->ne[d] = (int64_t)ne;
        }
        uint32_t type;
        if (!rd_u32(&c, &type, "tensor type") || !rd_u64(&c, &t->offset, "tensor offset")) goto fail;
        const sl_type_traits *tt = sl_type_traits_of((int)type);
        if (!tt) {
            char supported[256] = "";
            for (int k = 0; k < 64; k++)
                if (sl_type_name(k))
                    snprintf(supported + strlen(supported), sizeof(supported) - strlen(supported), "%s%s", supported[0] ? " " : "", sl_type_name(k));
            sl_set_error(err, SL_ERR_UNSUPPORTED, "gguf: tensor '%s' has type %s (%u), which skipllama does not support (it reads %s)", name,
                         ggml_type_name(type), type, supported);
            goto fail;
        }
        t->type = (sl_type)type;
        if (t->ne[0] % tt->block_size) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s': row length %lld is not a multiple of the %s (%u) block size %lld",
                         name, (long long)t->ne[0], tt->name, type, (long long)tt->block_size);
            goto fail;
        }
        size_t nb;
        if (sl_mul_overflow((size_t)(nelem / (uint64_t)tt->block_size), tt->type_size, &nb)) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s': byte size overflows", name);
            goto fail;
        }
        t->nbytes = nb;
        if (t->offset % f->alignment) {
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s': offset %llu is not a multiple of the alignment %llu", name,
                         (unsigned long long)t->offset, (unsigned long long)f->alignment);
            goto fail;
        }
        for (uint64_t j = 0; j < i; j++) {
            if (f->tensors[j].name.len == t->name.len && !memcmp(f->tensors[j].name.data, t->name.data, t->name.len)) {
                sl_set_error(err, SL_ERR_FORMAT, "gguf: duplicate tensor name '%s'", name);
                goto fail;
            }
        }
    }
    /* data section starts at the next multiple of the alignment */
    uint64_t data_off = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (n_tensors && data_off > size) {
        sl_set_error(err, SL_ERR_FORMAT, "gguf: truncated file: data section would start at %llu, file has %zu bytes",
                     (unsigned long long)data_off, size);
        goto fail;
    }
    f->data_offset = data_off;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        uint64_t start, end;
        if (__builtin_add_overflow(data_off, t->offset, &start) || __builtin_add_overflow(start, (uint64_t)t->nbytes, &end) ||
            end > size) {
            char name[128];
            sl_set_error(err, SL_ERR_FORMAT, "gguf: tensor '%s' (offset %llu, %zu bytes) extends past the end of the file (%zu bytes)",
                         gguf_str_copy(t->name, name, sizeof(name)), (unsigned long long)t->offset, t->nbytes, size);
            goto fail;
        }
        t->data = base + start;
    }
    return f;
fail:
    gguf_close(f);
    return NULL;
}

gguf_file *gguf_open_memory(const void *data, size_t size, sl_error *err) {
    if (!data && size) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: NULL buffer");
        return NULL;
    }
    static const uint8_t empty[1];
    return parse(data ? data : empty, size, err);
}

gguf_file *gguf_open(const char *path, sl_error *err) {
    if (!path) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "gguf: NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        sl_set_error(err, SL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sl_set_error(err, SL_ERR_IO, "'%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    if (size < 24) {
        close(fd);
        sl_set_error(err, SL_ERR_FORMAT, "gguf: '%s' is too small (%zu bytes) to be a GGUF file", path, size);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        sl_set_error(err, SL_ERR_IO, "cannot mmap '%s': %s", path, strerror(errno));
        return NULL;
    }
    gguf_file *f = parse(map, size, err);
    if (!f) {
        munmap(map, size);
        if (err) {
            /* prefix the path so the user knows which file */
            char tmp[sizeof(err->message)];
            snprintf(tmp, sizeof(tmp), "%s", err->message);
            snprintf(err->message, sizeof(err->message), "%.200s: %.300s", path, tmp);
        }
        return NULL;
    }
    f->mapping = map;
    return f;
}

/* ---- lookups --------------------------------------------------------------------------------- */

bool gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.data, c, n) == 0;
}

char *gguf_str_copy(gguf_str s, char *buf, size_t buf_size) {
    if (!buf_size) return buf;
    size_t n = s.len < buf_size - 1 ? (size_t)s.len : buf_size - 1;
    if (n) memcpy(buf, s.data, n);
    buf[n] = 0;
    return buf;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static bool is_unsigned(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    if (is_unsigned(kv->value.type)) {
        if (kv->value.v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->value.v.u64;
        return true;
    }
    if (gguf_type_is_signed(kv->value.type)) {
        *out = kv->value.v.i64;
        return true;
    }
    return false;
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    int64_t v;
    if (!gguf_get_i64(f, key, &v) || v < 0 || v > (int64_t)UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    if (kv->value.type == GGUF_TYPE_FLOAT32 || kv->value.type == GGUF_TYPE_FLOAT64) {
        *out = (float)kv->value.v.f64;
        return true;
    }
    int64_t i;
    if (gguf_get_i64(f, key, &i)) {
        *out = (float)i;
        return true;
    }
    return false;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_BOOL) return false;
    *out = kv->value.v.u64 != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_STRING) return false;
    *out = kv->value.v.str;
    return true;
}

const gguf_array *gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_ARRAY) return NULL;
    if (elem_type != GGUF_TYPE_COUNT && kv->value.v.arr.elem_type != elem_type) return NULL;
    return &kv->value.v.arr;
}

float gguf_arr_f32(const gguf_array *a, uint64_t i) {
    const uint8_t *p = (const uint8_t *)a->data + i * type_sizes[a->elem_type];
    if (a->elem_type == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, p, 4); return v; }
    if (a->elem_type == GGUF_TYPE_FLOAT64) { double v; memcpy(&v, p, 8); return (float)v; }
    return (float)gguf_arr_int(a, i);
}

/* issue 8 (found by fuzz_gguf): converting a NaN or out-of-range float to int64 is undefined;
 * saturate instead (NaN -> 0). */
static int64_t f64_to_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

int64_t gguf_arr_int(const gguf_array *a, uint64_t i) {
    const uint8_t *p = (const uint8_t *)a->data + i * type_sizes[a->elem_type];
    switch (a->elem_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return *p;
    case GGUF_TYPE_INT8: return (int8_t)*p;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); return v; }
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p, 4); return f64_to_i64(v); }
    case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, p, 8); return f64_to_i64(v); }
    default: return 0;
    }
}

void gguf_release_pages(const gguf_file *f, const void *p, size_t n) {
    if (!f || !f->mapping || !p || !n) return;
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1), e = ((uintptr_t)p + n) & ~((uintptr_t)ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}
