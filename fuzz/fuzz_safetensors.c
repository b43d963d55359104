/*
 * fuzz_safetensors.c — libFuzzer harness for the safetensors reader (src/format/safetensors.c):
 * the header of one file (8-byte length, JSON, every tensor's dtype / shape / data_offsets) and
 * the shard index (model.safetensors.index.json).
 *
 * Input: byte 0 selects the parser (even: a safetensors file, odd: an index), the rest is its
 * bytes, parsed in memory. Beyond sanitizer reports it aborts when an accepted file breaks the
 * reader's contract: a tensor outside the buffer, byte sizes that disagree with dtype x shape,
 * tensors not sorted, overlapping or leaving holes; or an index with a shard name that is not a
 * plain file name. Seeds: valid files of every dtype, zero-sized and scalar tensors, metadata,
 * and indexes (written by the harness when SL_FUZZ_WRITE_SEEDS is set); dictionary:
 * fuzz/safetensors.dict.
 */
#include "fuzz_common.h"
#include "format/safetensors.h"

static void st_touch(const void *p, size_t n) {
    if (!n) return;
    volatile uint8_t sink = ((const volatile uint8_t *)p)[0];
    sink ^= ((const volatile uint8_t *)p)[n - 1];
    (void)sink;
}

static void st_fuzz_file(const uint8_t *data, size_t size) {
    sl_error err;
    st_file *f = st_open_memory(data, size, &err);
    if (!f) {
        fz_check_error(&err, "st_open_memory");
        return;
    }
    fz_require(size >= 8, "a %zu-byte file accepted", size);
    uint64_t end = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        fz_require(t->dtype < ST_DTYPE_COUNT && t->n_dims >= 0 && t->n_dims <= ST_MAX_DIMS, "tensor %zu: dtype/dims", i);
        uint64_t n = 1;
        for (int d = 0; d < t->n_dims; d++) n *= (uint64_t)t->shape[d];
        fz_require(n == (uint64_t)t->n_elements && n * st_dtype_size(t->dtype) == t->nbytes, "tensor %zu: size disagrees with shape", i);
        fz_require(t->offset == end, "tensor %zu at %llu, previous ends at %llu", i, (unsigned long long)t->offset, (unsigned long long)end);
        end = t->offset + t->nbytes;
        fz_require((const uint8_t *)t->data >= data && (size_t)((const uint8_t *)t->data - data) <= size - t->nbytes,
                   "tensor %zu outside the buffer", i);
        st_touch(t->data, t->nbytes);
        st_touch(t->name, strlen(t->name) + 1);
    }
    st_set *s = st_set_of_file(f, &err);
    if (s) {
        for (size_t i = 0; i < s->n_tensors; i++)
            fz_require(st_set_find(s, s->by_name[i]->name) == s->by_name[i], "lookup of tensor %zu by name", i);
        st_set_free(s);
    } else {
        fz_check_error(&err, "st_set_of_file");
    }
}

static void st_fuzz_index(const uint8_t *data, size_t size) {
    sl_error err;
    st_index *ix = st_index_parse((const char *)data, size, &err);
    if (!ix) {
        fz_check_error(&err, "st_index_parse");
        return;
    }
    fz_require(ix->n_shards >= 1 && ix->n_shards <= ix->n_entries, "%zu shards for %zu entries", ix->n_shards, ix->n_entries);
    for (size_t i = 0; i < ix->n_shards; i++)
        fz_require(ix->shards[i][0] && !strchr(ix->shards[i], '/') && strcmp(ix->shards[i], "..") && strcmp(ix->shards[i], "."),
                   "shard name '%s' accepted", ix->shards[i]);
    for (size_t i = 0; i < ix->n_entries; i++)
        fz_require(ix->shard_of[i] >= 0 && (size_t)ix->shard_of[i] < ix->n_shards, "entry %zu: shard %d", i, ix->shard_of[i]);
    st_index_free(ix);
}

int sl_fuzz_safetensors(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* an exact-size copy of the rest, so ASan sees any read past it */
    uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
    memcpy(copy, data + 1, size - 1);
    if (data[0] & 1) st_fuzz_index(copy, size - 1);
    else st_fuzz_file(copy, size - 1);
    free(copy);
    return 0;
}

/* ---- seeds -------------------------------------------------------------------------------------- */

static void st_seed(const char *dir, const char *name, const char *header, size_t data_len) {
    size_t hn = strlen(header), n = 1 + 8 + hn + data_len;
    uint8_t *p = calloc(1, n);
    p[0] = 0;
    for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(p + 9, header, hn);
    for (size_t i = 0; i < data_len; i++) p[9 + hn + i] = (uint8_t)(i * 37);
    fz_write_seed(dir, name, p, n);
    free(p);
}

void sl_fuzz_safetensors_write_seeds(const char *dir) {
    st_seed(dir, "f32.st", "{\"__metadata__\":{\"format\":\"pt\"},\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,128]}}", 128);
    st_seed(dir, "mixed.st",
            "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[8,14]},"
            "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[14,22]},\"d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[22,22]},"
            "\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[22,24]}}",
            24);
    st_seed(dir, "all-dtypes.st",
            "{\"t0\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]},\"t1\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[1,2]},"
            "\"t2\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[2,4]},\"t3\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[4,6]},"
            "\"t4\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[6,10]},\"t5\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[10,14]},"
            "\"t6\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[14,22]},\"t7\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[22,30]},"
            "\"t8\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[30,32]}}",
            32);
    st_seed(dir, "empty.st", "{}", 0);
    static const char idx[] =
        "\x01{\"metadata\":{\"total_size\":1234},\"weight_map\":{\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
        "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\",\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}";
    fz_write_seed(dir, "index.json", idx, sizeof idx - 1);
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_safetensors_write_seeds(seeds);
        exit(0);
    }
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_safetensors(data, size); }
#endif
