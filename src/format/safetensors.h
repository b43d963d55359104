/*
 * safetensors.h — reading Hugging Face .safetensors files, single or sharded (internal).
 *
 * What it is for: the weights of a Hugging Face model directory. A safetensors file is an 8-byte
 * little-endian header length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets":
 * [begin, end]}, "__metadata__": {...}}), then the data buffer. The file is mmapped read-only and
 * every tensor descriptor points into the mapping (never copied). Every number in the header is
 * checked before it is used, as the GGUF reader does: the header length against the file size,
 * dtype sizes times shapes (no overflow) against the offsets, offsets inside the buffer, tensors
 * neither overlapping nor leaving holes (the reference implementation's rule), names unique.
 * A sharded checkpoint (model.safetensors.index.json: {"weight_map": {"name": "shard file"}})
 * is opened as one set: shard names must be plain file names in the same directory, every shard
 * must exist, and every tensor of the weight map must be in the shard it names.
 * What it is not: a writer (convert writes GGUF), or a model loader (src/model/hf.c maps names
 * and types).
 */
#ifndef SL_FORMAT_SAFETENSORS_H
#define SL_FORMAT_SAFETENSORS_H

#include "skipllama.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, the reference implementation's limit */
#define ST_MAX_SHARDS 4096

/* Element types of the format. */
typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_U16, ST_I16, ST_F16, ST_BF16, ST_U32, ST_I32, ST_F32, ST_U64, ST_I64, ST_F64,
    ST_F8_E4M3, ST_F8_E5M2, ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    const char *name;           /* NUL-terminated (owned by the file) */
    st_dtype dtype;             /* element type */
    int n_dims;                 /* 0..ST_MAX_DIMS (0: a scalar) */
    int64_t shape[ST_MAX_DIMS]; /* outermost first, as in the file (PyTorch order) */
    int64_t n_elements;         /* product of shape */
    uint64_t offset;            /* byte offset inside the data buffer */
    size_t nbytes;              /* bytes of data */
    const void *data;           /* in the mapping */
    int shard;                  /* index of the file in its set (0 for a single file) */
} st_tensor;

typedef struct st_file {
    char *path;          /* owned */
    const uint8_t *base; /* first byte of the file */
    size_t size;         /* file size */
    void *mapping;       /* mmap base when we own one, else NULL */
    size_t n_tensors;    /* tensors in the header */
    st_tensor *tensors;  /* [n_tensors], sorted by offset */
    char *names;         /* all names back to back (owned) */
} st_file;

/* Open and validate one file. NULL + err (naming the file) on any problem. */
st_file *st_open(const char *path, sl_error *err);
/* Parse a caller-owned buffer (must outlive the result); used by tests and the fuzzer. */
st_file *st_open_memory(const void *data, size_t size, sl_error *err);
void st_close(st_file *f);

/* Name, size in bytes (0 for unknown) of a dtype; parse a dtype name. */
const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t);
bool st_dtype_from_name(const char *name, st_dtype *out);

/* All tensors of a checkpoint: one file or every shard of an index. */
typedef struct st_set {
    size_t n_files;      /* files */
    st_file **files;     /* [n_files] */
    size_t n_tensors;    /* tensors over all files */
    const st_tensor **by_name; /* [n_tensors] sorted by name (for st_set_find) */
    uint64_t total_bytes; /* sum of the file sizes */
} st_set;

/* Open the weights of a model directory: `dir`/model.safetensors.index.json when it exists
 * (sharded), else `dir`/model.safetensors. NULL + err on any problem (a missing shard, a tensor
 * the index puts in a shard that lacks it, a tensor in two shards...). */
st_set *st_set_open_dir(const char *dir, sl_error *err);
/* The set of one already opened file (takes ownership of f, also on failure). */
st_set *st_set_of_file(st_file *f, sl_error *err);

/* A parsed model.safetensors.index.json: the distinct shard file names and, per tensor of the
 * weight map, the shard it is in. */
typedef struct st_index {
    size_t n_shards;    /* distinct shard files */
    char **shards;      /* [n_shards] plain file names (no '/', not "." or "..") */
    size_t n_entries;   /* weight map entries */
    char **tensors;     /* [n_entries] tensor names */
    int *shard_of;      /* [n_entries] index into shards */
} st_index;

/* Parse and validate an index held in memory. Used by st_set_open_dir and the fuzzer. */
st_index *st_index_parse(const char *json, size_t n, sl_error *err);
void st_index_free(st_index *ix);
void st_set_free(st_set *s);
const st_tensor *st_set_find(const st_set *s, const char *name);

#endif
