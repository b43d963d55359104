/*
 * fuzz_common.h — what the libFuzzer harnesses (fuzz/fuzz_*.c) and the regression replayer
 * (tests/test_regress.c) share: locating the fixtures, handing an input to code that only takes a
 * path (through an in-memory file), the "micro" model the profile and CLI harnesses run, a
 * trap for broken invariants, and the seed writer hook.
 *
 * Every harness file defines its entry point as sl_fuzz_<name>(data, size) plus an init
 * function, and only defines the libFuzzer symbols (LLVMFuzzerInitialize/TestOneInput) when
 * SL_FUZZ_NO_MAIN is not set, so tests/test_regress.c can #include all of them into one program
 * and replay tests/regress/<name>/ through exactly the code the fuzzer ran. Everything here is
 * static (one copy per translation unit), and every harness prefixes its own statics.
 *
 * What it is not: a test framework. Harnesses report problems only by crashing (sanitizers or
 * fz_require), which is what libFuzzer records.
 */
#ifndef SL_FUZZ_COMMON_H
#define SL_FUZZ_COMMON_H

#include "skipllama.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A broken invariant in library output (not a sanitizer finding): print why and abort, so
 * libFuzzer saves the input as a crash. */
#define fz_require(cond, ...)                                                                        \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                           \
            fprintf(stderr, "\n");                                                                  \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/* A failing call must say why: a non-OK code and a non-empty message. */
static inline void fz_check_error(const sl_error *err, const char *what) {
    fz_require(err->code != SL_OK, "%s failed without an error code", what);
    fz_require(err->message[0] != 0, "%s failed (%s) without a message", what, sl_status_str(err->code));
    fz_require(memchr(err->message, 0, sizeof(err->message)) != NULL, "%s: unterminated message", what);
}

/* Absolute path of a fixture under tests/data (or $SL_FUZZ_DATA), resolved once so that the
 * CLI harness may change directory. Returns NULL when the file is missing. */
static inline const char *fz_fixture(const char *rel, char *buf, size_t n) {
    const char *dir = getenv("SL_FUZZ_DATA");
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/%s", dir && *dir ? dir : "tests/data", rel);
    char *abs = realpath(tmp, NULL);
    if (!abs) return NULL;
    snprintf(buf, n, "%s", abs);
    free(abs);
    return buf;
}

/* ---- inputs as files ----------------------------------------------------------------------- */

/* An anonymous in-memory file reachable by a path (/proc/self/fd/N), rewritten for each input,
 * so sl_model_load / sl_profile_load (which take paths and mmap) see exactly the fuzz bytes and
 * nothing touches the disk. Falls back to an unlinked file under $TMPDIR without memfd. */
typedef struct fz_memfile {
    int fd;         /* the file, -1 before fz_memfile_open */
    char path[PATH_MAX]; /* path that opens it */
} fz_memfile;

static inline int fz_memfile_open(fz_memfile *m, const char *name) {
#ifdef MFD_CLOEXEC
    m->fd = memfd_create(name, MFD_CLOEXEC);
    if (m->fd >= 0) {
        snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
        if (access(m->path, R_OK) == 0) return 0;
        close(m->fd);
    }
#endif
    const char *tmpdir = getenv("TMPDIR");
    char tmpl[PATH_MAX / 2];
    snprintf(tmpl, sizeof(tmpl), "%s/sl-fuzz-%.32s-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp", name);
    m->fd = mkstemp(tmpl);
    if (m->fd < 0) return -1;
    /* keep the name (loaders open it by path); fz_memfile_close removes it */
    snprintf(m->path, sizeof(m->path), "%s", tmpl);
    return 0;
}

/* Replace the file's contents with data[0..size). */
static inline int fz_memfile_set(fz_memfile *m, const uint8_t *data, size_t size) {
    if (ftruncate(m->fd, 0) != 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(m->fd, data + done, size - done, (off_t)done);
        if (w <= 0) return -1;
        done += (size_t)w;
    }
    return 0;
}

static inline void fz_memfile_close(fz_memfile *m) {
    if (m->fd < 0) return;
    close(m->fd);
    if (strncmp(m->path, "/proc/", 6) != 0) unlink(m->path);
    m->fd = -1;
}

/* ---- the micro model ----------------------------------------------------------------------- */

/* The model the profile harness runs profiles against (and a shape for model seeds): small
 * enough that one token evaluates in microseconds, yet with every feature a profile can use
 * (GQA, two layers, n_embd a multiple of 32 for Q8_0 predictors). Generated deterministically
 * by sl_synth_write, so its fingerprint — and the profiles seeded for it — never change. */
static inline sl_synth_params fz_micro_params(void) {
    sl_synth_params p = sl_synth_default_params();
    snprintf(p.name, sizeof(p.name), "fuzz-micro");
    p.n_vocab = 259;
    p.n_embd = 32;
    p.n_ff = 64;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_rot = 0;
    p.n_ctx = 64;
    p.tied_embeddings = true;
    p.type = SL_TYPE_F32;
    p.seed = 7;
    p.n_threads = 1;
    return p;
}

/* Write the micro model to keep_path (or to a temporary file removed once it is mapped, when
 * keep_path is NULL) and load it. */
static inline sl_model *fz_micro_model(const char *keep_path) {
    const char *tmpdir = getenv("TMPDIR");
    char path[PATH_MAX];
    if (keep_path) {
        snprintf(path, sizeof(path), "%s", keep_path);
    } else {
        snprintf(path, sizeof(path), "%s/sl-fuzz-micro-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
        int fd = mkstemp(path);
        if (fd < 0) return NULL;
        close(fd);
    }
    sl_synth_params p = fz_micro_params();
    sl_error err;
    sl_model *m = NULL;
    if (sl_synth_write(&p, path, &err) != SL_OK) fprintf(stderr, "fuzz: cannot write the micro model: %s\n", err.message);
    else if (!(m = sl_model_load(path, NULL, &err))) fprintf(stderr, "fuzz: cannot load the micro model: %s\n", err.message);
    if (!keep_path) unlink(path);
    return m;
}

/* ---- the fixture vocabularies ------------------------------------------------------------------ */

/* The tokenizer harnesses pick one of these by the first input byte. Loaded once per process
 * (vocab-only), so the per-input cost is tokenization alone. */
#define FZ_N_VOCABS 5
static const char *const fz_vocab_files[FZ_N_VOCABS] = {
    "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-gpt-2.gguf",
    "vocab/ggml-vocab-starcoder.gguf", "vocab/ggml-vocab-deepseek-llm.gguf",
};

/* Load every fixture vocabulary into models[] (aborts when one is missing: a harness without
 * its vocabularies would fuzz nothing). */
static inline void fz_load_vocabs(sl_model *models[FZ_N_VOCABS]) {
    for (int i = 0; i < FZ_N_VOCABS; i++) {
        char path[PATH_MAX];
        if (!fz_fixture(fz_vocab_files[i], path, sizeof(path))) {
            fprintf(stderr, "fuzz: fixture %s not found (run from the repository root or set SL_FUZZ_DATA)\n", fz_vocab_files[i]);
            abort();
        }
        sl_model_params mp = sl_model_default_params();
        mp.vocab_only = true;
        sl_error err;
        models[i] = sl_model_load(path, &mp, &err);
        if (!models[i] || !sl_model_get_vocab(models[i])) {
            fprintf(stderr, "fuzz: cannot load %s: %s\n", path, err.message);
            abort();
        }
    }
}

/* ---- seeds ------------------------------------------------------------------------------------ */

/* Harnesses whose seeds must be generated by the library itself (profiles are bound to the
 * micro model's fingerprint) write them when SL_FUZZ_WRITE_SEEDS=<dir> is set, then exit
 * (fuzz/make_seeds.sh does this). */
static inline void fz_write_seed(const char *dir, const char *name, const void *data, size_t size) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) fprintf(stderr, "fuzz: cannot write seed %s\n", path);
    if (f) fclose(f);
}

/* Read a whole file (seed generation and replay). NULL on failure. */
static inline uint8_t *fz_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    *size = n;
    return buf;
}

/* The fixture tests of vocabulary i, for seeds: the .inp file holds strings separated by
 * "\n__ggml_vocab_test__\n", the .out file one line of ids per string. Calls fn(text, len, k, ud)
 * for the k-th entry of the file named by suffix (".inp" or ".out"). */
static inline void fz_each_vocab_test(int i, const char *suffix, void (*fn)(const char *, size_t, int, void *), void *ud) {
    char rel[256], path[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s%s", fz_vocab_files[i], suffix);
    if (!fz_fixture(rel, path, sizeof(path))) return;
    size_t size = 0;
    uint8_t *buf = fz_read_file(path, &size);
    if (!buf) return;
    const char *sep = strcmp(suffix, ".out") ? "\n__ggml_vocab_test__\n" : "\n";
    const size_t sep_len = strlen(sep);
    const char *p = (const char *)buf, *end = (const char *)buf + size;
    int k = 0;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), sep, sep_len);
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        fn(p, len, k++, ud);
        p += len + sep_len;
    }
    free(buf);
}

#endif
