/*
 * gguf.h — reading and writing GGUF files (internal).
 *
 * What it is for: turning the bytes of a GGUF v2/v3 file into validated metadata key/values and
 * tensor descriptors whose data pointers point into a read-only mmap (never copied), and writing
 * new GGUF files (profiles, synthetic benchmark models, quantized models). Every size read from
 * the file is checked against the file's length before it is used or allocated, so a truncated
 * or hostile file yields a message, not a crash. What it is not: a model loader — it knows
 * nothing about LLaMA; see model.c for that.
 */
#ifndef SL_GGUF_H
#define SL_GGUF_H

#include "skipllama.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* A string inside the file: NOT NUL-terminated, points into the mapping. */
typedef struct gguf_str {
    uint64_t len;     /* bytes */
    const char *data; /* len bytes */
} gguf_str;

typedef struct gguf_value gguf_value;

/* An array value. Scalar elements stay in the file (raw little-endian, `data`); string
 * elements are indexed once (`strs`); nested arrays are parsed recursively (`items`). */
typedef struct gguf_array {
    gguf_type elem_type; /* type of every element */
    uint64_t n;          /* element count */
    const void *data;    /* scalar elements: n * size(elem_type) bytes in the mapping */
    gguf_str *strs;      /* string elements: n entries (owned by the gguf_file) */
    gguf_value *items;   /* nested arrays: n entries (owned by the gguf_file) */
} gguf_array;

struct gguf_value {
    gguf_type type; /* as stored */
    union {
        uint64_t u64;   /* UINT8/16/32/64 and BOOL (0/1) */
        int64_t i64;    /* INT8/16/32/64 */
        double f64;     /* FLOAT32/64 */
        gguf_str str;   /* STRING */
        gguf_array arr; /* ARRAY */
    } v;
};

typedef struct gguf_kv {
    gguf_str key;     /* metadata key, e.g. "llama.block_count" */
    gguf_value value; /* its value */
} gguf_kv;

typedef struct gguf_tensor_info {
    gguf_str name;            /* tensor name, e.g. "blk.0.ffn_gate.weight" */
    uint32_t n_dims;          /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dim, ne[0] fastest-varying (row length); unused = 1 */
    sl_type type;             /* element type (validated: supported by sl_type_traits_of) */
    uint64_t offset;          /* byte offset from the start of the data section */
    size_t nbytes;            /* bytes of data */
    const void *data;         /* points into the mapping */
} gguf_tensor_info;

typedef struct gguf_file {
    uint32_t version;          /* 2 or 3 */
    uint64_t n_kv;             /* metadata entries */
    gguf_kv *kv;               /* [n_kv] */
    uint64_t n_tensors;        /* tensor count */
    gguf_tensor_info *tensors; /* [n_tensors] */
    uint64_t alignment;        /* general.alignment or 32 */
    uint64_t data_offset;      /* start of the tensor data section in the file */
    const uint8_t *base;       /* first byte of the file (mapping or caller buffer) */
    size_t size;               /* file size in bytes (virtual files: the metadata image plus the tensors' bytes) */
    void *mapping;             /* mmap base when we own a mapping, else NULL */
    void *owned_image;         /* virtual files: the metadata image (malloc'd, owned), else NULL */
    char *owned_names;         /* virtual files: the tensor names (owned), else NULL */
} gguf_file;

/* Open and validate a file (mmapped read-only). NULL + err on any problem. */
gguf_file *gguf_open(const char *path, sl_error *err);
/* Parse a caller-owned buffer (must outlive the result). Used by tests and fuzzers. */
gguf_file *gguf_open_memory(const void *data, size_t size, sl_error *err);
void gguf_close(gguf_file *f);
/* Drop this process's resident copy of the whole pages inside [p, p + n) of the mapping (they
 * read back from the file if touched again). No-op for caller buffers (gguf_open_memory). */
void gguf_release_pages(const gguf_file *f, const void *p, size_t n);

/* Lookups return NULL / false when absent or of an incompatible type. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name);
/* Integer of any integer type that fits in the output type. */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* An array whose elements have elem_type (or any elem type when elem_type == GGUF_TYPE_COUNT). */
const gguf_array *gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type);

/* Element accessors for scalar arrays (caller checks i < n and the element type). */
float gguf_arr_f32(const gguf_array *a, uint64_t i);
int64_t gguf_arr_int(const gguf_array *a, uint64_t i);

/* Compare a gguf_str with a C string. */
bool gguf_str_eq(gguf_str s, const char *c);
/* Copy into a NUL-terminated buffer (truncating). Returns buf. */
char *gguf_str_copy(gguf_str s, char *buf, size_t buf_size);
/* Size in bytes of a scalar element type (0 for STRING/ARRAY/unknown). */
size_t gguf_type_size(gguf_type t);
const char *gguf_type_name(gguf_type t);
/* Whether a value of type t is a signed integer (stored in gguf_value.v.i64). */
static inline bool gguf_type_is_signed(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

/* A "virtual" GGUF file: metadata from a GGUF image in memory (written by gguf_writer_write_memory,
 * with no tensors; ownership of the malloc'd image passes to the result, also on failure) and
 * the caller's tensor descriptors, whose data lives elsewhere (e.g. the mappings of safetensors
 * files, src/model/hf.c) and must outlive the result. Each descriptor's name, n_dims, ne, type
 * and data are used (names are copied; offset and nbytes are recomputed); a type skipllama does
 * not support, a bad shape or a missing data pointer is refused. */
gguf_file *gguf_open_virtual(void *image, size_t image_size, const gguf_tensor_info *tensors, uint64_t n_tensors,
                             sl_error *err);

/* ---- writer ------------------------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer; /* accumulates metadata + tensors, then writes v3 */

gguf_writer *gguf_writer_init(void);
void gguf_writer_free(gguf_writer *w);
/* Metadata setters copy their arguments. Return false on allocation failure. */
bool gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
bool gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
bool gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
bool gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
bool gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
bool gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Array of scalars (elem_type scalar) — n elements of gguf_type_size(elem_type) bytes. */
bool gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n);
/* Array of strings. */
bool gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copy every metadata entry of an open file (nested arrays included), except keys for which
 * skip(key) returns true (skip may be NULL). */
bool gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, bool (*skip)(const char *key, void *ud), void *ud);
/* Add a tensor: ne[0] is the row length. The data is NOT copied: it must stay valid until
 * gguf_writer_write returns. */
bool gguf_writer_add_tensor(gguf_writer *w, const char *name, sl_type type, int n_dims, const int64_t *ne, const void *data);
/* Write everything to path through sl_output (a temporary beside it renamed into place: readers never
 * see a partial file; devices and FIFOs written in place). */
sl_status gguf_writer_write(gguf_writer *w, const char *path, sl_error *err);
/* The same bytes into a malloc'd buffer (*out, *out_size) instead of a file. */
sl_status gguf_writer_write_memory(gguf_writer *w, void **out, size_t *out_size, sl_error *err);

/* ---- streaming writer (files larger than memory: synthetic and quantized models) ----------- */

/* Produces rows [row0, row0 + n_rows) of tensor `index` (0-based, in the order the tensors were
 * added) into dst, packed back to back (each row sl_type_row_size(type, ne[0]) bytes; a tensor
 * has ne[1]*ne[2]*ne[3] rows). Called with increasing row0, from the writing thread only. */
typedef sl_status (*gguf_rows_fn)(void *ud, size_t index, int64_t row0, int64_t n_rows, void *dst, sl_error *err);

/* Like gguf_writer_write, but every tensor that was added with data == NULL gets its bytes from
 * fn, in chunks of about chunk_bytes (0 = 8 MiB; always at least one row), so no whole tensor has
 * to be in memory. An error from fn aborts the write (no file appears) and is passed on. */
sl_status gguf_writer_write_stream(gguf_writer *w, const char *path, gguf_rows_fn fn, void *ud, size_t chunk_bytes,
                                   sl_error *err);

#endif
