/*
 * test_limits.c — resource limits on hostile files (issue 8): sizes a file declares are refused
 * before anything of that size is allocated, and a context that would not fit in memory gets
 * an error naming the size it needs.
 *
 * Declared, not present: a tensor of 2^40 elements, arrays of 10^9 entries (scalars, strings,
 * nested arrays), 4 GiB strings and keys, 10^9 metadata entries or tensors, and a model header
 * whose hyperparameters (4096 layers of width 2^20) would make the loader size its buffers at
 * 34 GB. Present but hollow: files that really are 8 GiB / 4 GiB long (sparse in-memory files,
 * nothing is written) holding 10^9 empty strings or a 4 GiB string — accepted sizes there would
 * cost allocations of the same order, so they are refused too. And a model whose KV cache at
 * n_ctx = 2^22 needs 32 TiB: sl_context_init must refuse it with the size in the message.
 *
 * Each case runs in a child process whose heap is capped (RLIMIT_DATA: 1 GiB above what it
 * uses) when the build has no AddressSanitizer, so an attempted big allocation would turn a
 * clean SL_ERR_FORMAT into SL_ERR_NOMEM and fail the check, and could never succeed lazily.
 */
#include "format/gguf.h"
#include "skipllama.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifndef HAVE_ASAN
#define HAVE_ASAN 0
#endif

/* ---- a byte builder for hand-made headers ---------------------------------------------------- */

typedef struct bytes {
    uint8_t *p; /* data */
    size_t n;   /* used */
    size_t cap; /* allocated */
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void str(bytes *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bytes *b, uint64_t n_tensors, uint64_t n_kv) {
    u32(b, GGUF_MAGIC);
    u32(b, 3);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bytes *b, const char *key, uint32_t v) {
    str(b, key);
    u32(b, GGUF_TYPE_UINT32);
    u32(b, v);
}
static void kv_str(bytes *b, const char *key, const char *v) {
    str(b, key);
    u32(b, GGUF_TYPE_STRING);
    str(b, v);
}

/* ---- running a case in a capped child -------------------------------------------------------- */

/* Resident heap of this process in bytes (VmData), 0 when unknown. */
static size_t vm_data_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmData: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

typedef bool (*limit_case)(void *ud, char *why, size_t why_size);

/* Run fn in a child with the heap capped; the child's verdict (and reason) comes back through a
 * pipe. Without fork the case runs in this process, uncapped. */
static bool run_capped(limit_case fn, void *ud, char *why, size_t why_size) {
    int fds[2];
    if (pipe(fds) != 0) return fn(ud, why, why_size);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return fn(ud, why, why_size);
    }
    if (pid == 0) {
        close(fds[0]);
        if (!HAVE_ASAN) {
            size_t cap = vm_data_bytes() + ((size_t)1 << 30);
            struct rlimit rl = {cap, cap};
            setrlimit(RLIMIT_DATA, &rl);
        }
        char msg[600] = "";
        bool ok = fn(ud, msg, sizeof(msg));
        msg[sizeof(msg) - 1] = 0;
        ssize_t w = write(fds[1], msg, strlen(msg));
        (void)w;
        close(fds[1]);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < why_size && (r = read(fds[0], why + got, why_size - 1 - got)) > 0) got += (size_t)r;
    why[got] = 0;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st)) snprintf(why + strlen(why), why_size - strlen(why), " (child killed by signal %d)", WTERMSIG(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ---- declared sizes, parsed from memory -------------------------------------------------------- */

typedef struct mem_case {
    bytes file;           /* the hostile bytes */
    const char *expect;   /* substring the error message must contain */
} mem_case;

static bool check_refused(sl_status got, const sl_error *err, const char *expect, char *why, size_t why_size) {
    snprintf(why, why_size, "%s: %s", sl_status_str(got), err->message);
    return got == SL_ERR_FORMAT && err->code == SL_ERR_FORMAT && strstr(err->message, expect) != NULL;
}

static bool mem_case_run(void *ud, char *why, size_t why_size) {
    const mem_case *c = ud;
    sl_error err;
    gguf_file *f = gguf_open_memory(c->file.p, c->file.n, &err);
    if (f) {
        gguf_close(f);
        snprintf(why, why_size, "accepted");
        return false;
    }
    return check_refused(err.code, &err, c->expect, why, why_size);
}

static void expect_refused(const char *what, mem_case *c) {
    char why[600];
    bool ok = run_capped(mem_case_run, c, why, sizeof(why));
    CHECK(ok, "%s is refused before allocating it (%s)", what, why);
    free(c->file.p);
}

static void test_declared_sizes(void) {
    mem_case c;

    memset(&c, 0, sizeof(c));
    header(&c.file, 1, 0); /* one f32 tensor [2^20, 2^20] = 2^40 elements, 4 TiB, no data */
    str(&c.file, "huge.weight");
    u32(&c.file, 2);
    u64(&c.file, (uint64_t)1 << 20);
    u64(&c.file, (uint64_t)1 << 20);
    u32(&c.file, SL_TYPE_F32);
    u64(&c.file, 0);
    while (c.file.n % 32) put(&c.file, "", 1); /* up to the data section, which holds nothing */
    c.expect = "extends past the end";
    expect_refused("a tensor of 2^40 elements", &c);

    static const struct {
        gguf_type elem;     /* element type */
        const char *expect; /* message */
        const char *what;   /* check name */
    } arrays[] = {
        {GGUF_TYPE_UINT8, "runs past the end", "an array of 10^9 u8"},
        {GGUF_TYPE_FLOAT64, "runs past the end", "an array of 10^9 f64"},
        {GGUF_TYPE_STRING, "cannot fit", "an array of 10^9 strings"},
        {GGUF_TYPE_ARRAY, "cannot fit", "an array of 10^9 arrays"},
    };
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        memset(&c, 0, sizeof(c));
        header(&c.file, 0, 1);
        str(&c.file, "big.array");
        u32(&c.file, GGUF_TYPE_ARRAY);
        u32(&c.file, arrays[i].elem);
        u64(&c.file, 1000000000ull);
        u64(&c.file, 0);
        c.expect = arrays[i].expect;
        expect_refused(arrays[i].what, &c);
    }

    memset(&c, 0, sizeof(c));
    header(&c.file, 0, 1); /* a 4 GiB string value */
    str(&c.file, "big.string");
    u32(&c.file, GGUF_TYPE_STRING);
    u64(&c.file, (uint64_t)4 << 30);
    put(&c.file, "abc", 3);
    c.expect = "string length";
    expect_refused("a 4 GiB string", &c);

    memset(&c, 0, sizeof(c));
    header(&c.file, 0, 1); /* a 4 GiB key */
    u64(&c.file, (uint64_t)4 << 30);
    put(&c.file, "key.and.more.bytes", 18);
    c.expect = "string length";
    expect_refused("a 4 GiB key", &c);

    memset(&c, 0, sizeof(c));
    header(&c.file, 0, 1000000000ull);
    c.expect = "metadata count";
    expect_refused("10^9 metadata entries", &c);

    memset(&c, 0, sizeof(c));
    header(&c.file, 1000000000ull, 0);
    c.expect = "tensor count";
    expect_refused("10^9 tensors", &c);
}

/* ---- files that are that large (sparse, in memory) ----------------------------------------------- */

/* An in-memory file of `size` bytes starting with `head` (the rest reads as zeros and takes no
 * memory), opened by path. */
typedef struct big_file {
    int fd;         /* memfd */
    char path[64];  /* /proc/self/fd/N */
} big_file;

static bool big_file_make(big_file *bf, const bytes *head, uint64_t size) {
    bf->fd = memfd_create("sl-test-limits", MFD_CLOEXEC);
    if (bf->fd < 0) return false;
    snprintf(bf->path, sizeof(bf->path), "/proc/self/fd/%d", bf->fd);
    if (ftruncate(bf->fd, (off_t)size) != 0 || pwrite(bf->fd, head->p, head->n, 0) != (ssize_t)head->n || access(bf->path, R_OK) != 0) {
        close(bf->fd);
        return false;
    }
    return true;
}

typedef struct path_case {
    const char *path;   /* file to open */
    bool vocab_only;    /* model load parameters */
    const char *expect; /* message substring */
} path_case;

static bool path_case_gguf(void *ud, char *why, size_t why_size) {
    const path_case *c = ud;
    sl_error err;
    gguf_file *f = gguf_open(c->path, &err);
    if (f) {
        gguf_close(f);
        snprintf(why, why_size, "accepted");
        return false;
    }
    return check_refused(err.code, &err, c->expect, why, why_size);
}

static bool path_case_model(void *ud, char *why, size_t why_size) {
    const path_case *c = ud;
    sl_error err;
    sl_model_params mp = sl_model_default_params();
    mp.vocab_only = c->vocab_only;
    sl_model *m = sl_model_load(c->path, &mp, &err);
    if (m) {
        sl_model_free(m);
        snprintf(why, why_size, "accepted");
        return false;
    }
    return check_refused(err.code, &err, c->expect, why, why_size);
}

static void test_large_files(void) {
    char why[600];
    big_file bf;
    bytes h = {0};

    /* 8 GiB of zeros after the header = 10^9 empty strings, really present */
    header(&h, 0, 1);
    str(&h, "tokenizer.ggml.tokens");
    u32(&h, GGUF_TYPE_ARRAY);
    u32(&h, GGUF_TYPE_STRING);
    u64(&h, 1000000000ull);
    if (big_file_make(&bf, &h, h.n + 8000000000ull)) {
        path_case c = {bf.path, false, "array of 1000000000"};
        CHECK(run_capped(path_case_gguf, &c, why, sizeof(why)),
              "an 8 GiB file of 10^9 strings is refused before indexing them (%s)", why);
        close(bf.fd);
    } else {
        CHECK(true, "skipped: no sparse in-memory files here");
    }
    free(h.p);

    /* a vocab-only model with a real 4 GiB chat template */
    memset(&h, 0, sizeof(h));
    header(&h, 0, 3);
    kv_str(&h, "tokenizer.ggml.model", "llama");
    str(&h, "tokenizer.ggml.tokens");
    u32(&h, GGUF_TYPE_ARRAY);
    u32(&h, GGUF_TYPE_STRING);
    u64(&h, 3);
    str(&h, "<unk>");
    str(&h, "<s>");
    str(&h, "</s>");
    str(&h, "tokenizer.chat_template");
    u32(&h, GGUF_TYPE_STRING);
    u64(&h, (uint64_t)4 << 30);
    if (big_file_make(&bf, &h, h.n + ((uint64_t)4 << 30))) {
        path_case c = {bf.path, true, "string length"};
        CHECK(run_capped(path_case_model, &c, why, sizeof(why)), "a file with a real 4 GiB string is refused (%s)", why);
        close(bf.fd);
    }
    free(h.p);
}

/* ---- model headers whose hyperparameters imply huge buffers ------------------------------------ */

typedef struct tdesc {
    const char *name; /* tensor name */
    sl_type type;     /* element type */
    int n_dims;       /* 1 or 2 */
    int64_t ne[2];    /* ne[0] = row length */
} tdesc;

static uint64_t tensor_bytes(const tdesc *t) {
    uint64_t n = (uint64_t)t->ne[0] * (uint64_t)(t->n_dims > 1 ? t->ne[1] : 1);
    return t->type == SL_TYPE_Q4_0 ? n / 32 * 18 : n * 4;
}

/* A llama GGUF: metadata u32 keys, then tensor infos laid out back to back (32-byte aligned);
 * returns the file size the data section needs. */
static uint64_t model_header(bytes *b, const char *const *keys, const uint32_t *vals, int n_keys, const tdesc *t, int n_t) {
    header(b, (uint64_t)n_t, (uint64_t)n_keys + 1);
    kv_str(b, "general.architecture", "llama");
    for (int i = 0; i < n_keys; i++) kv_u32(b, keys[i], vals[i]);
    uint64_t off = 0;
    for (int i = 0; i < n_t; i++) {
        str(b, t[i].name);
        u32(b, (uint32_t)t[i].n_dims);
        for (int d = 0; d < t[i].n_dims; d++) u64(b, (uint64_t)t[i].ne[d]);
        u32(b, (uint32_t)t[i].type);
        u64(b, off);
        off += (tensor_bytes(&t[i]) + 31) / 32 * 32;
    }
    uint64_t data_off = (b->n + 31) / 32 * 32;
    return data_off + off;
}

typedef struct ctx_case {
    const char *path; /* model file */
    int32_t n_ctx;    /* context to ask for */
} ctx_case;

static bool ctx_case_run(void *ud, char *why, size_t why_size) {
    const ctx_case *c = ud;
    sl_error err;
    sl_model *m = sl_model_load(c->path, NULL, &err);
    if (!m) {
        snprintf(why, why_size, "model not loaded: %s", err.message);
        return false;
    }
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = c->n_ctx;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    bool ok = !ctx && err.code == SL_ERR_NOMEM && strstr(err.message, "KV cache") && strstr(err.message, "MiB");
    snprintf(why, why_size, "%s", ctx ? "context created" : err.message);
    sl_context_free(ctx);
    sl_model_free(m);
    return ok;
}

static void test_model_sizes(void) {
    char why[600];
    big_file bf;
    bytes h = {0};

    /* 4096 layers of width 2^20 with only the embedding present: the loader must find the
     * missing tensors, not size its norm buffer (8193 x 2^20 floats = 34 GB) first */
    static const char *const keys1[] = {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                                        "llama.attention.head_count"};
    const uint32_t vals1[] = {1u << 20, 32, 4096, 1};
    const tdesc t1[] = {{"token_embd.weight", SL_TYPE_Q4_0, 2, {1 << 20, 1}}};
    uint64_t size = model_header(&h, keys1, vals1, 4, t1, 1);
    if (big_file_make(&bf, &h, size)) {
        path_case c = {bf.path, false, "norm"};
        CHECK(run_capped(path_case_model, &c, why, sizeof(why)), "4096 layers x 2^20 declared: refused before sizing buffers (%s)",
              why);
        close(bf.fd);
    }
    free(h.p);

    /* head size 2^20 (so attn_q/k/v/o are 2^25 elements each, 72 MiB sparse): the KV cache at
     * n_ctx = 2^22 is 2 x 16 TiB */
    memset(&h, 0, sizeof(h));
    static const char *const keys2[] = {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                                        "llama.attention.head_count", "llama.attention.key_length", "llama.attention.value_length"};
    const uint32_t vals2[] = {32, 32, 1, 1, 1u << 20, 1u << 20};
    const int64_t HD = 1 << 20;
    const tdesc t2[] = {
        {"token_embd.weight", SL_TYPE_F32, 2, {32, 259}},       {"output_norm.weight", SL_TYPE_F32, 1, {32, 1}},
        {"blk.0.attn_norm.weight", SL_TYPE_F32, 1, {32, 1}},    {"blk.0.ffn_norm.weight", SL_TYPE_F32, 1, {32, 1}},
        {"blk.0.attn_q.weight", SL_TYPE_Q4_0, 2, {32, HD}},     {"blk.0.attn_k.weight", SL_TYPE_Q4_0, 2, {32, HD}},
        {"blk.0.attn_v.weight", SL_TYPE_Q4_0, 2, {32, HD}},     {"blk.0.attn_output.weight", SL_TYPE_Q4_0, 2, {HD, 32}},
        {"blk.0.ffn_gate.weight", SL_TYPE_F32, 2, {32, 32}},    {"blk.0.ffn_up.weight", SL_TYPE_F32, 2, {32, 32}},
        {"blk.0.ffn_down.weight", SL_TYPE_F32, 2, {32, 32}},
    };
    size = model_header(&h, keys2, vals2, 6, t2, (int)(sizeof(t2) / sizeof(t2[0])));
    if (big_file_make(&bf, &h, size)) {
        ctx_case c = {bf.path, 1 << 22};
        CHECK(run_capped(ctx_case_run, &c, why, sizeof(why)), "a 32 TiB KV cache is refused naming its size (%s)", why);
        close(bf.fd);
    }
    free(h.p);
}

int main(void) {
    test_declared_sizes();
    test_large_files();
    test_model_sizes();
    return test_summary();
}
