/*
 * safetensors.c — the safetensors reader (see safetensors.h for the contract): one file's header
 * checked number by number, and the sharded set behind model.safetensors.index.json.
 *
 * Order of checks for one file: the 8-byte length against the file size and the 100 MB limit,
 * then the JSON (jansson), then per tensor its dtype, shape (element count and byte size without
 * overflow), data_offsets (inside the buffer, begin <= end, end - begin == the byte size the
 * dtype and shape imply), then over all tensors sorted by offset: no overlap, no hole, the last
 * one ending exactly at the end of the file. Nothing is allocated from a size the file states
 * before that size has been checked against the bytes that are there.
 */
#define _POSIX_C_SOURCE 200809L
#include "format/safetensors.h"

#include "format/json.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const dtype_names[ST_DTYPE_COUNT] = {"BOOL", "U8",  "I8",  "U16", "I16", "F16",     "BF16",    "U32",
                                                        "I32",  "F32", "U64", "I64", "F64", "F8_E4M3", "F8_E5M2"};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_sizes[t] : 0; }

bool st_dtype_from_name(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(name, dtype_names[i])) {
            *out = (st_dtype)i;
            return true;
        }
    return false;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->mapping) munmap(f->mapping, f->size);
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* One header entry into t (name not yet set). */
static bool parse_entry(const char *name, json_t *e, uint64_t data_size, st_tensor *t, sl_error *err) {
    if (!json_is_object(e)) return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s' is not a JSON object", name), false;
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"), *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || !st_dtype_from_name(json_string_value(dt), &t->dtype))
        return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s' has %s dtype%s%s", name, json_is_string(dt) ? "an unknown" : "no",
                            json_is_string(dt) ? " " : "", json_is_string(dt) ? json_string_value(dt) : ""),
               false;
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s': shape must be an array of at most %d sizes", name, ST_MAX_DIMS),
               false;
    t->n_dims = (int)json_array_size(shape);
    uint64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) {
        int64_t v;
        if (!sl_json_int_value(json_array_get(shape, (size_t)d), 0, INT64_MAX, &v))
            return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s': shape[%d] is not a size", name, d), false;
        t->shape[d] = v;
        if (__builtin_mul_overflow(n, (uint64_t)v, &n) || n > (uint64_t)INT64_MAX)
            return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s': the element count overflows", name), false;
    }
    t->n_elements = (int64_t)n;
    uint64_t nbytes;
    if (__builtin_mul_overflow(n, (uint64_t)st_dtype_size(t->dtype), &nbytes) || nbytes > SIZE_MAX)
        return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s': the byte size overflows", name), false;
    int64_t b, e2;
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !sl_json_int_value(json_array_get(offs, 0), 0, INT64_MAX, &b) ||
        !sl_json_int_value(json_array_get(offs, 1), 0, INT64_MAX, &e2) || e2 < b)
        return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", name),
               false;
    if ((uint64_t)e2 > data_size)
        return sl_set_error(err, SL_ERR_FORMAT,
                            "safetensors: tensor '%s': data_offsets [%lld, %lld] run past the end of the data (%llu bytes)", name,
                            (long long)b, (long long)e2, (unsigned long long)data_size),
               false;
    if ((uint64_t)(e2 - b) != nbytes) {
        char shp[128];
        int k = snprintf(shp, sizeof shp, "[");
        for (int d = 0; d < t->n_dims && k < (int)sizeof shp - 24; d++) k += snprintf(shp + k, sizeof shp - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        snprintf(shp + k, sizeof shp - (size_t)k, "]");
        return sl_set_error(err, SL_ERR_FORMAT,
                            "safetensors: tensor '%s': dtype %s and shape %s need %llu bytes, but data_offsets [%lld, %lld] hold %lld",
                            name, st_dtype_name(t->dtype), shp, (unsigned long long)nbytes, (long long)b, (long long)e2,
                            (long long)(e2 - b)),
               false;
    }
    t->offset = (uint64_t)b;
    t->nbytes = (size_t)nbytes;
    return true;
}

static st_file *parse(const uint8_t *base, size_t size, sl_error *err) {
    if (size < 8) {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: file of %zu bytes is too small for the 8-byte header length", size);
        return NULL;
    }
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | base[i];
    if (hn > size - 8) {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)hn, size);
        return NULL;
    }
    if (hn > ST_MAX_HEADER) {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: header length %llu is over the %llu-byte limit", (unsigned long long)hn,
                     (unsigned long long)ST_MAX_HEADER);
        return NULL;
    }
    if (hn < 2 || base[8] != '{') {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: the header is not a JSON object");
        return NULL;
    }
    const uint64_t data_size = size - 8 - hn;
    json_t *root = sl_json_parse((const char *)base + 8, (size_t)hn, "safetensors header", err);
    if (!root) return NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) goto nomem;
    f->base = base;
    f->size = size;
    if (!json_is_object(root)) {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: the header is not a JSON object");
        goto fail;
    }
    size_t n = 0, name_bytes = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                sl_set_error(err, SL_ERR_FORMAT, "safetensors: __metadata__ must be an object");
                goto fail;
            }
            continue;
        }
        n++;
        name_bytes += strlen(key) + 1; /* bounded by the header size */
    }
    f->tensors = calloc(n ? n : 1, sizeof(st_tensor));
    f->names = malloc(name_bytes ? name_bytes : 1);
    if (!f->tensors || !f->names) goto nomem;
    size_t i = 0, off = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor *t = &f->tensors[i++];
        if (!parse_entry(key, val, data_size, t, err)) goto fail;
        size_t l = strlen(key) + 1;
        memcpy(f->names + off, key, l);
        t->name = f->names + off;
        off += l;
    }
    f->n_tensors = n;
    qsort(f->tensors, n, sizeof(st_tensor), cmp_offset);
    uint64_t end = 0;
    for (i = 0; i < n; i++) {
        st_tensor *t = &f->tensors[i];
        if (t->offset < end) {
            sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)", t->name,
                         (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), f->tensors[i - 1].name,
                         (unsigned long long)end);
            goto fail;
        }
        if (t->offset > end) {
            sl_set_error(err, SL_ERR_FORMAT, "safetensors: %llu unused bytes before tensor '%s' (at %llu): the data must be contiguous",
                         (unsigned long long)(t->offset - end), t->name, (unsigned long long)t->offset);
            goto fail;
        }
        end = t->offset + t->nbytes;
        t->data = base + 8 + hn + t->offset;
    }
    if (end != data_size) {
        sl_set_error(err, SL_ERR_FORMAT, "safetensors: the tensors cover %llu bytes of data but the file has %llu after the header",
                     (unsigned long long)end, (unsigned long long)data_size);
        goto fail;
    }
    json_decref(root);
    return f;
nomem:
    sl_set_error(err, SL_ERR_NOMEM, "safetensors: out of memory");
fail:
    json_decref(root);
    st_close(f);
    return NULL;
}

st_file *st_open_memory(const void *data, size_t size, sl_error *err) {
    sl_clear_error(err);
    if (!data && size) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "safetensors: NULL buffer");
        return NULL;
    }
    static const uint8_t empty[1];
    return parse(data ? data : empty, size, err);
}

/* prefix err's message with the path */
static void name_file(sl_error *err, const char *path) {
    if (!err || err->code == SL_OK) return;
    char tmp[sizeof(err->message)];
    snprintf(tmp, sizeof tmp, "%s", err->message);
    snprintf(err->message, sizeof err->message, "%.200s: %.300s", path, tmp);
}

st_file *st_open(const char *path, sl_error *err) {
    sl_clear_error(err);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        sl_set_error(err, SL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sl_set_error(err, SL_ERR_IO, "'%s' is not a regular file", path);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) {
        sl_set_error(err, SL_ERR_IO, "cannot mmap '%s': %s", path, strerror(errno));
        return NULL;
    }
    st_file *f = st_open_memory(map, size, err);
    if (!f) {
        if (map) munmap(map, size);
        name_file(err, path);
        return NULL;
    }
    f->mapping = map;
    if (!(f->path = strdup(path))) {
        st_close(f);
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return f;
}

/* ---- sets and the shard index ------------------------------------------------------------------ */

void st_index_free(st_index *ix) {
    if (!ix) return;
    for (size_t i = 0; i < ix->n_shards; i++) free(ix->shards[i]);
    for (size_t i = 0; i < ix->n_entries; i++) free(ix->tensors[i]);
    free(ix->shards);
    free(ix->tensors);
    free(ix->shard_of);
    free(ix);
}

static bool plain_file_name(const char *s) {
    return *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && strlen(s) < 1024;
}

st_index *st_index_parse(const char *json, size_t n, sl_error *err) {
    sl_clear_error(err);
    json_t *root = sl_json_parse(json, n, "model.safetensors.index.json", err);
    if (!root) return NULL;
    st_index *ix = calloc(1, sizeof *ix);
    json_t *map = sl_json_member(root, "weight_map");
    if (!ix) goto nomem;
    if (!json_is_object(map) || json_object_size(map) == 0) {
        sl_set_error(err, SL_ERR_FORMAT, "model.safetensors.index.json: \"weight_map\" must be a non-empty object");
        goto fail;
    }
    size_t m = json_object_size(map);
    ix->tensors = calloc(m, sizeof(char *));
    ix->shard_of = calloc(m, sizeof(int));
    ix->shards = calloc(m, sizeof(char *));
    if (!ix->tensors || !ix->shard_of || !ix->shards) goto nomem;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *file = json_is_string(val) ? json_string_value(val) : NULL;
        if (!file || !plain_file_name(file)) {
            sl_set_error(err, SL_ERR_FORMAT,
                         "model.safetensors.index.json: tensor '%.100s' must map to a file name in the model's folder, not %s%.100s%s", key,
                         file ? "'" : "a non-string", file ? file : "", file ? "'" : "");
            goto fail;
        }
        size_t s = 0;
        while (s < ix->n_shards && strcmp(ix->shards[s], file)) s++;
        if (s == ix->n_shards) {
            if (ix->n_shards == ST_MAX_SHARDS) {
                sl_set_error(err, SL_ERR_FORMAT, "model.safetensors.index.json: more than %d shard files", ST_MAX_SHARDS);
                goto fail;
            }
            if (!(ix->shards[ix->n_shards++] = strdup(file))) goto nomem;
        }
        if (!(ix->tensors[ix->n_entries] = strdup(key))) goto nomem;
        ix->shard_of[ix->n_entries++] = (int)s;
    }
    json_decref(root);
    return ix;
nomem:
    sl_set_error(err, SL_ERR_NOMEM, "out of memory reading the safetensors index");
fail:
    json_decref(root);
    st_index_free(ix);
    return NULL;
}

void st_set_free(st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->by_name);
    free(s);
}

static int cmp_name(const void *a, const void *b) { return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name); }

const st_tensor *st_set_find(const st_set *s, const char *name) {
    size_t lo = 0, hi = s->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->by_name[mid]->name, name);
        if (!c) return s->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Index every tensor of the set's files by name; duplicates across files are an error. */
static bool index_names(st_set *s, sl_error *err) {
    size_t n = 0;
    for (size_t i = 0; i < s->n_files; i++) n += s->files[i]->n_tensors;
    s->by_name = malloc((n ? n : 1) * sizeof(*s->by_name));
    if (!s->by_name) return sl_set_error(err, SL_ERR_NOMEM, "out of memory"), false;
    size_t k = 0;
    for (size_t i = 0; i < s->n_files; i++)
        for (size_t j = 0; j < s->files[i]->n_tensors; j++) {
            s->files[i]->tensors[j].shard = (int)i;
            s->by_name[k++] = &s->files[i]->tensors[j];
        }
    s->n_tensors = n;
    qsort(s->by_name, n, sizeof(*s->by_name), cmp_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(s->by_name[i]->name, s->by_name[i - 1]->name))
            return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%.200s' is in two shards ('%.100s' and '%.100s')", s->by_name[i]->name,
                                s->files[s->by_name[i - 1]->shard]->path ? s->files[s->by_name[i - 1]->shard]->path : "?",
                                s->files[s->by_name[i]->shard]->path ? s->files[s->by_name[i]->shard]->path : "?"),
                   false;
    return true;
}

st_set *st_set_of_file(st_file *f, sl_error *err) {
    st_set *s = calloc(1, sizeof *s);
    if (s) s->files = malloc(sizeof(st_file *));
    if (!s || !s->files) {
        free(s);
        st_close(f);
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->files[0] = f;
    s->n_files = 1;
    s->total_bytes = f->size;
    if (!index_names(s, err)) {
        st_set_free(s);
        return NULL;
    }
    return s;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

st_set *st_set_open_dir(const char *dir, sl_error *err) {
    sl_clear_error(err);
    char *ipath = join(dir, "model.safetensors.index.json");
    if (!ipath) return sl_set_error(err, SL_ERR_NOMEM, "out of memory"), NULL;
    if (access(ipath, F_OK) != 0) {
        free(ipath);
        char *p = join(dir, "model.safetensors");
        if (!p) return sl_set_error(err, SL_ERR_NOMEM, "out of memory"), NULL;
        if (access(p, F_OK) != 0) {
            sl_set_error(err, SL_ERR_IO, "'%.300s' has neither model.safetensors nor model.safetensors.index.json", dir);
            free(p);
            return NULL;
        }
        st_file *f = st_open(p, err);
        free(p);
        return f ? st_set_of_file(f, err) : NULL;
    }
    st_set *s = NULL;
    st_index *ix = NULL;
    size_t tn = 0;
    char *text = sl_file_read_all(ipath, 64u << 20, &tn, err);
    if (text) ix = st_index_parse(text, tn, err);
    free(text);
    if (!ix) {
        name_file(err, ipath);
        goto done;
    }
    if (!(s = calloc(1, sizeof *s)) || !(s->files = calloc(ix->n_shards, sizeof(st_file *)))) {
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ix->n_shards; i++) {
        char *p = join(dir, ix->shards[i]);
        if (!p) {
            sl_set_error(err, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (access(p, F_OK) != 0) {
            sl_set_error(err, SL_ERR_IO, "%.300s names shard '%.100s', which is missing", ipath, ix->shards[i]);
            free(p);
            goto fail;
        }
        s->files[i] = st_open(p, err);
        free(p);
        if (!s->files[i]) goto fail;
        s->n_files = i + 1;
        s->total_bytes += s->files[i]->size;
    }
    if (!index_names(s, err)) goto fail;
    for (size_t i = 0; i < ix->n_entries; i++) {
        const st_tensor *t = st_set_find(s, ix->tensors[i]);
        if (!t || t->shard != ix->shard_of[i]) {
            sl_set_error(err, SL_ERR_FORMAT, "%.300s puts tensor '%.100s' in '%.100s', but that shard does not have it", ipath, ix->tensors[i],
                         ix->shards[ix->shard_of[i]]);
            goto fail;
        }
    }
    goto done;
fail:
    st_set_free(s);
    s = NULL;
done:
    st_index_free(ix);
    free(ipath);
    return s;
}
