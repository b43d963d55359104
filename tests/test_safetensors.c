/*
 * test_safetensors.c — the safetensors reader (src/format/safetensors.c) and the sharded-set
 * logic against valid and hostile inputs.
 *
 * Valid: a file of three tensors (F32, BF16, a zero-sized I64) built here byte by byte parses
 * with every descriptor pointing at its bytes; a two-shard directory with its index opens as one
 * set. Hostile, each refused with a message naming the problem (never a crash, also under ASan):
 * the valid file truncated at every length, a header length past the end of the file or over the
 * 100 MB limit, a header that is not JSON / not an object, unknown dtypes, shapes that overflow,
 * dtype x shape disagreeing with data_offsets, offsets past the end, reversed or malformed
 * offsets, overlapping tensors, holes, trailing bytes, duplicate names; indexes that are not JSON,
 * name shards outside the folder, name a missing shard, put a tensor in a shard that lacks it, or
 * whose shards hold the same tensor twice.
 */
#include "format/safetensors.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* header JSON + data bytes -> a safetensors file in a malloc'd buffer */
static uint8_t *make(const char *header, const void *data, size_t data_len, size_t *out_len) {
    size_t hn = strlen(header);
    uint8_t *p = malloc(8 + hn + data_len + 1);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(p + 8, header, hn);
    if (data_len) memcpy(p + 8 + hn, data, data_len);
    *out_len = 8 + hn + data_len;
    return p;
}

static const char *valid_header =
    "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[24,32]},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"z\":{\"dtype\":\"I64\",\"shape\":[0,4],\"data_offsets\":[32,32]}}";

/* Refused with SL_ERR_FORMAT and a message containing `want`. */
static void refused(const char *what, const char *header, size_t data_len, const char *want) {
    uint8_t data[256] = {0};
    size_t n;
    uint8_t *p = make(header, data, data_len, &n);
    sl_error err;
    st_file *f = st_open_memory(p, n, &err);
    CHECK(!f && err.code == SL_ERR_FORMAT && strstr(err.message, want), "%s is refused: %s", what, f ? "(accepted)" : err.message);
    st_close(f);
    free(p);
}

static void test_single(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint8_t data[32];
    memcpy(data, a, 24);
    for (int i = 0; i < 8; i++) data[24 + i] = (uint8_t)(0x10 + i);
    size_t n;
    uint8_t *p = make(valid_header, data, 32, &n);
    sl_error err;
    st_file *f = st_open_memory(p, n, &err);
    if (CHECK(f != NULL, "a valid file parses (%s)", f ? "ok" : err.message)) {
        CHECK(f->n_tensors == 3, "it has 3 tensors (%zu)", f->n_tensors);
        const st_tensor *ta = &f->tensors[0], *tb = &f->tensors[1], *tz = &f->tensors[2];
        CHECK(!strcmp(ta->name, "a") && ta->dtype == ST_F32 && ta->n_dims == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 &&
                  ta->nbytes == 24 && ta->data == p + n - 32 && !memcmp(ta->data, a, 24),
              "tensor a: F32 [2, 3] at the start of the data");
        CHECK(!strcmp(tb->name, "b") && tb->dtype == ST_BF16 && tb->nbytes == 8 && (const uint8_t *)tb->data == p + n - 8,
              "tensor b: BF16 [2, 2] at data offset 24");
        CHECK(!strcmp(tz->name, "z") && tz->nbytes == 0 && tz->n_elements == 0, "tensor z: I64 [0, 4], no bytes");
        st_set *s = st_set_of_file(f, &err);
        CHECK(s && st_set_find(s, "b") == &s->files[0]->tensors[1] && !st_set_find(s, "c") && !st_set_find(s, ""),
              "a one-file set finds its tensors by name");
        st_set_free(s);
    }
    /* every truncation of the valid file */
    int accepted = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, p, len);
        st_file *g = st_open_memory(cut, len, &err);
        if (g || err.code != SL_ERR_FORMAT || !err.message[0]) accepted++;
        st_close(g);
        free(cut);
    }
    CHECK(accepted == 0, "the valid file cut at each of its %zu lengths is refused with a message (%d were not)", n, accepted);
    free(p);

    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    st_file *g = st_open_memory(big, 16, &err);
    CHECK(!g && strstr(err.message, "runs past the end"), "header length 2^63 past EOF: %s", err.message);
    uint64_t hn = (uint64_t)200 << 20;
    uint8_t *huge = calloc(1, (size_t)hn + 8);
    memcpy(huge, &hn, 8);
    huge[8] = '{';
    g = st_open_memory(huge, (size_t)hn + 8, &err);
    CHECK(!g && strstr(err.message, "limit"), "a 200 MB header is over the limit: %s", err.message);
    free(huge);

    refused("a header that is not JSON", "{not json", 0, "bad JSON");
    refused("a header that is a JSON array", "[1,2]     ", 0, "not a JSON object");
    refused("trailing garbage after the JSON", "{} x", 0, "bad JSON");
    refused("an unknown dtype", "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, "unknown dtype F128");
    refused("a missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype");
    refused("a dtype/shape mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, "need 24 bytes");
    refused("an F16 tensor given F32 bytes", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "need 8 bytes");
    refused("a negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "not a size");
    refused("a fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "not a size");
    refused("a shape that overflows",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4, "overflows");
    refused("a byte size that overflows", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,1024],\"data_offsets\":[0,4]}}", 4,
            "overflows");
    refused("9 dimensions", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "at most 8");
    refused("offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end of the data");
    refused("reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "begin <= end");
    refused("offsets of three numbers", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "[begin, end]");
    refused("overlapping tensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            12, "overlaps");
    refused("two tensors on the same bytes",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            8, "overlaps");
    refused("a hole between tensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
            12, "unused bytes");
    refused("trailing bytes after the last tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover 4 bytes");
    refused("duplicate tensor names",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, "duplicate");
    refused("a non-object __metadata__", "{\"__metadata__\":[1]}", 0, "__metadata__");
    refused("a tensor entry that is a string", "{\"a\":\"F32\"}", 0, "not a JSON object");
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

static void shard(const char *dir, const char *name, const char *header, size_t data_len) {
    uint8_t data[64] = {0};
    size_t n;
    uint8_t *p = make(header, data, data_len, &n);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, p, n);
    free(p);
}

static void index_file(const char *dir, const char *json) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_file(path, json, strlen(json));
}

static void set_refused(const char *dir, const char *what, const char *want) {
    sl_error err;
    st_set *s = st_set_open_dir(dir, &err);
    CHECK(!s && err.code != SL_OK && strstr(err.message, want), "%s is refused: %s", what, s ? "(accepted)" : err.message);
    st_set_free(s);
}

static void test_sharded(void) {
    char dir[] = "/tmp/sl-test-st-XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL, "temporary folder")) return;
    sl_error err;
    set_refused(dir, "a folder without weights", "neither model.safetensors");
    shard(dir, "m-1.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    shard(dir, "m-2.safetensors",
          "{\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]}}", 6);
    index_file(dir, "{\"metadata\":{\"total_size\":18},\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-2.safetensors\",\"w\":\"m-2.safetensors\"}}");
    st_set *s = st_set_open_dir(dir, &err);
    if (CHECK(s != NULL, "a two-shard index opens (%s)", s ? "ok" : err.message)) {
        const st_tensor *x = st_set_find(s, "x"), *y = st_set_find(s, "y");
        CHECK(s->n_files == 2 && s->n_tensors == 3 && x && y && x->shard == 0 && y->shard == 1 && y->dtype == ST_F16,
              "its 3 tensors are found in their shards");
    }
    st_set_free(s);
    index_file(dir, "{\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-3.safetensors\"}}");
    set_refused(dir, "an index naming a missing shard", "m-3.safetensors', which is missing");
    index_file(dir, "{\"weight_map\":{\"x\":\"m-2.safetensors\"}}");
    set_refused(dir, "an index putting a tensor in the wrong shard", "does not have it");
    index_file(dir, "{\"weight_map\":{\"x\":\"../m-1.safetensors\"}}");
    set_refused(dir, "a shard path outside the folder", "file name in the model's folder");
    index_file(dir, "{\"weight_map\":{\"x\":\"/etc/passwd\"}}");
    set_refused(dir, "an absolute shard path", "file name in the model's folder");
    index_file(dir, "{\"weight_map\":{\"x\":7}}");
    set_refused(dir, "a shard name that is a number", "non-string");
    index_file(dir, "{\"weight_map\":{}}");
    set_refused(dir, "an empty weight map", "non-empty");
    index_file(dir, "{\"weight_map\":{\"x\":\"m-1.safetensors\",}");
    set_refused(dir, "an index that is not JSON", "bad JSON");
    shard(dir, "m-3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    index_file(dir, "{\"weight_map\":{\"x\":\"m-1.safetensors\",\"q\":\"m-3.safetensors\"}}");
    set_refused(dir, "a tensor in two shards", "in two shards");
    shard(dir, "m-3.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
    set_refused(dir, "a corrupt shard", "m-3.safetensors: safetensors:");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "temporary folder removed");
}

int main(void) {
    test_single();
    test_sharded();
    return test_summary();
}
