/*
 * test_files.c — files in and out of the library: sl_output (a temporary beside the target
 * renamed into place, devices written in place, directories refused, temporaries removed by
 * sl_output_abort and by sl_output_remove_temporaries), and what loading says about a file it
 * can still use (sl_model_warnings: a special-token id outside the vocabulary, a tokenizer
 * shorter than the embedding) or cannot (an unsupported tensor type named, with its number).
 */
#include "format/gguf.h"
#include "skipllama.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* Files in dir whose name ends with ".tmp". */
static int count_temps(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += l > 4 && !strcmp(e->d_name + l - 4, ".tmp");
    }
    if (d) closedir(d);
    return n;
}

static bool file_is(const char *path, const char *want) {
    size_t n = 0;
    char *got = test_read_file(path, &n);
    bool ok = got && n == strlen(want) && !memcmp(got, want, n);
    free(got);
    return ok;
}

static void test_output(void) {
    sl_error err;
    char path[128], link[128];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    /* new file: written through a temporary, which is there until commit */
    sl_output *o = sl_output_open(path, &err);
    if (!CHECK(o != NULL, "open a new file (%s)", o ? "" : err.message)) return;
    fputs("hello", sl_output_stream(o));
    CHECK(count_temps() == 1 && access(path, F_OK) != 0 && !sl_output_in_place(o), "before commit: one temporary, no target");
    CHECK(sl_output_commit(o, &err) == SL_OK && file_is(path, "hello") && count_temps() == 0, "after commit: the target, no temporary");
    /* replace, then abort: the old content stays */
    o = sl_output_open(path, &err);
    fputs("other", sl_output_stream(o));
    sl_output_abort(o);
    CHECK(file_is(path, "hello") && count_temps() == 0, "abort: the old file unchanged, the temporary removed");
    /* the signal handler's function removes the temporaries of writes in progress */
    o = sl_output_open(path, &err);
    fputs("partial", sl_output_stream(o));
    fflush(sl_output_stream(o));
    sl_output_remove_temporaries();
    CHECK(count_temps() == 0 && file_is(path, "hello"), "sl_output_remove_temporaries removes the live temporary");
    sl_output_abort(o); /* unlinking again is harmless */
    /* a symbolic link: the target is written, the link stays */
    snprintf(link, sizeof link, "%s/link.bin", dir);
    if (symlink("a.bin", link) == 0) {
        o = sl_output_open(link, &err);
        fputs("through", sl_output_stream(o));
        struct stat st;
        CHECK(o && !strcmp(strrchr(sl_output_target(o), '/'), "/a.bin"), "the link's target is what gets written (%s)", o ? sl_output_target(o) : "");
        CHECK(sl_output_commit(o, &err) == SL_OK && lstat(link, &st) == 0 && S_ISLNK(st.st_mode) && file_is(path, "through"),
              "after commit through a link: the link stays, its target has the new bytes");
    }
    /* devices in place, directories refused */
    o = sl_output_open("/dev/null", &err);
    CHECK(o && sl_output_in_place(o) && !strcmp(sl_output_target(o), "/dev/null"), "/dev/null is written in place");
    if (o) {
        fputs("x", sl_output_stream(o));
        CHECK(sl_output_commit(o, &err) == SL_OK, "commit in place");
    }
    o = sl_output_open(dir, &err);
    CHECK(!o && err.code == SL_ERR_INVALID_ARG && strstr(err.message, "is a directory"), "a directory is refused: %s", err.message);
    snprintf(path, sizeof path, "%s/none/x.bin", dir);
    o = sl_output_open(path, &err);
    CHECK(!o && err.code == SL_ERR_IO && count_temps() == 0, "a missing folder is refused: %s", err.message);
}

/* Rewrite tiny-silu.gguf into path with special-token ids or the vocabulary changed. */
static bool skip_tok(const char *key, void *ud) {
    const char *const *keys = ud;
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i])) return true;
    return false;
}

static bool rewrite(const char *path, uint32_t bos, uint64_t n_tokens) {
    sl_error err;
    gguf_file *src = gguf_open("tests/data/tiny-silu.gguf", &err);
    if (!src) return false;
    static const char *const keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                       "tokenizer.ggml.token_type", NULL};
    gguf_writer *w = gguf_writer_init();
    gguf_writer_copy_kv(w, src, skip_tok, (void *)keys);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", bos);
    const gguf_array *toks = gguf_get_arr(src, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    const gguf_array *scores = gguf_get_arr(src, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32);
    const gguf_array *types = gguf_get_arr(src, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
    bool ok = toks && scores && types && n_tokens <= toks->n;
    char **strs = ok ? calloc(n_tokens, sizeof(char *)) : NULL;
    for (uint64_t i = 0; ok && i < n_tokens; i++) {
        strs[i] = calloc(toks->strs[i].len + 1, 1);
        gguf_str_copy(toks->strs[i], strs[i], toks->strs[i].len + 1);
    }
    ok = ok && gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, n_tokens) &&
         gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores->data, n_tokens) &&
         gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types->data, n_tokens);
    for (uint64_t i = 0; i < src->n_tensors && ok; i++) {
        const gguf_tensor_info *t = &src->tensors[i];
        char name[128];
        gguf_str_copy(t->name, name, sizeof(name));
        ok = gguf_writer_add_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data);
    }
    ok = ok && gguf_writer_write(w, path, &err) == SL_OK;
    for (uint64_t i = 0; strs && i < n_tokens; i++) free(strs[i]);
    free(strs);
    gguf_writer_free(w);
    gguf_close(src);
    return ok;
}

static void test_load_warnings(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    CHECK(m && !strcmp(sl_model_warnings(m), ""), "the fixture loads without warnings");
    sl_model_free(m);
    char path[128];
    snprintf(path, sizeof path, "%s/w.gguf", dir);
    if (CHECK(rewrite(path, 5000, 2048), "rewrite with bos_token_id 5000")) {
        m = sl_model_load(path, NULL, &err);
        const char *w = m ? sl_model_warnings(m) : "";
        CHECK(m && strstr(w, "tokenizer.ggml.bos_token_id = 5000 is outside the 2048-token vocabulary: ignored"),
              "a BOS id outside the vocabulary loads with a warning: %s", w);
        CHECK(m && sl_vocab_bos(sl_model_get_vocab(m)) == 1, "... and the default BOS (1) is used");
        sl_model_free(m);
    }
    if (CHECK(rewrite(path, 1, 2000), "rewrite with a 2000-token vocabulary")) {
        m = sl_model_load(path, NULL, &err);
        const char *w = m ? sl_model_warnings(m) : "";
        CHECK(m && strstr(w, "the tokenizer has 2000 tokens but token_embd.weight has 2048 rows (n_vocab)"),
              "a tokenizer shorter than n_vocab loads with a warning: %s", w);
        sl_model_free(m);
    }
    /* a tensor of a type ggml has and skipllama does not: named, with its number */
    uint8_t b[256];
    size_t n = 0;
#define PUT(v, k) (memcpy(b + n, &(v), k), n += k)
    uint32_t magic = 0x46554747, version = 3, ndims = 1, type = 16;
    uint64_t nt = 1, nkv = 0, namelen = 1, ne = 256, off = 0;
    PUT(magic, 4), PUT(version, 4), PUT(nt, 8), PUT(nkv, 8), PUT(namelen, 8);
    b[n++] = 'x';
    PUT(ndims, 4), PUT(ne, 8), PUT(type, 4), PUT(off, 8);
    while (n % 32) b[n++] = 0;
    memset(b + n, 0, 96), n += 96;
    gguf_file *g = gguf_open_memory(b, n, &err);
    CHECK(!g && strstr(err.message, "has type iq2_xxs (16), which skipllama does not support"), "an unsupported type is named: %s",
          err.message);
    gguf_close(g);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sl-test-files-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_output();
    test_load_warnings();
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return test_summary();
}
