/*
 * fuzz_cli_args.c — libFuzzer harness for the hand-written command-line parsing of the
 * `skipllama` CLI: the shared helpers in cli/cli.c (cli_parse_i64 / int / float / ids, cli_is,
 * cli_value) on arbitrary strings, and whole subcommands (info, logits, ppl, calibrate) run
 * in-process on arbitrary argument vectors.
 *
 * Input: byte 0 even = helpers, odd = a subcommand (byte 1 picks which). The rest is split at
 * '\n' into strings (at most 64). Helpers mode checks the parsers' contracts: a parsed number is
 * inside [min, max] and re-parses to itself, an id list has as many entries as commas + 1 and
 * round-trips. Subcommand mode runs cmd_<name>(argc, argv) inside a private scratch directory
 * (created at start-up, emptied after every run) with these substitutions, so that a fuzz input
 * can neither touch files outside it nor make a run slow: "@m" = the micro model (fuzz_common.h),
 * "@v" = a vocab-only fixture, "@t" = a short text, "@p" = a profile for the micro model,
 * "@g" = a file that is not GGUF; any other argument containing '/' becomes "x"; ppl and
 * calibrate get "-t 1 --max-tokens 256" first (they default to the physical cores and the whole
 * text, and "-f @v" is a 700 KB file), "--name=value" is split in two, thread counts above 2
 * become 2, context lengths and token limits above 256 (or 0, "all") become 256, and "in"
 * keeps at most 1 KiB. A line "@@" ends the arguments:
 * the bytes after it become the file "in" in the scratch directory (text for -f, a
 * --layer-sparsity list...). stdout is sent to /dev/null during a run.
 * The commands that only write large files or benchmark (synth, quantize, bench, bench-op) are
 * not run: their option loops use the same helpers.
 */
#include "fuzz_common.h"
#include "cli.h"

#include <dirent.h>
#include <math.h>

static char ca_dir[PATH_MAX];    /* scratch directory (absolute) */
static char ca_model[PATH_MAX];  /* micro model */
static char ca_vocab[PATH_MAX];  /* vocab-only fixture */
static char ca_text[PATH_MAX];   /* short text */
static char ca_prof[PATH_MAX];   /* profile of the micro model */
static char ca_junk[PATH_MAX];   /* not a GGUF file */
static bool ca_ready;

static void ca_clean(void);
static void ca_cleanup(void);

static void ca_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) abort();
    fclose(f);
}

static int ca_init(void) {
    if (ca_ready) return 0;
    const char *tmpdir = getenv("TMPDIR");
    char base[PATH_MAX / 2];
    snprintf(base, sizeof(base), "%s/sl-fuzz-cli-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(base)) abort();
    /* fixed files live next to the scratch directory, not in it (it is emptied) */
    snprintf(ca_dir, sizeof(ca_dir), "%s/run", base);
    if (mkdir(ca_dir, 0700) != 0) abort();
    snprintf(ca_model, sizeof(ca_model), "%s/micro.gguf", base);
    sl_model *m = fz_micro_model(ca_model);
    if (!m) abort();
    static const char text[] = "It was a dark and stormy night; the rain fell in torrents.\n";
    snprintf(ca_text, sizeof(ca_text), "%s/text.txt", base);
    ca_write(ca_text, text, sizeof(text) - 1);
    snprintf(ca_junk, sizeof(ca_junk), "%s/junk.gguf", base);
    ca_write(ca_junk, "GGUF\3\0\0\0garbage", 15);
    snprintf(ca_prof, sizeof(ca_prof), "%s/micro.skip.gguf", base);
    sl_error err;
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = 3 + (i * 31) % 256;
    sl_profile *p = NULL;
    if (sl_calibrate(m, toks, 40, NULL, &p, &err) != SL_OK || sl_profile_save(p, ca_prof, &err) != SL_OK) {
        fprintf(stderr, "fuzz_cli_args: cannot make the profile: %s\n", err.message);
        abort();
    }
    sl_profile_free(p);
    sl_model_free(m);
    if (!fz_fixture("vocab/ggml-vocab-llama-spm.gguf", ca_vocab, sizeof(ca_vocab))) snprintf(ca_vocab, sizeof(ca_vocab), "missing");
    ca_ready = true;
    atexit(ca_cleanup);
    return 0;
}

/* Remove the scratch directory and the fixed files (at exit). */
static void ca_cleanup(void) {
    if (!ca_ready) return;
    ca_clean();
    rmdir(ca_dir);
    unlink(ca_model);
    unlink(ca_text);
    unlink(ca_junk);
    unlink(ca_prof);
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s", ca_dir);
    char *slash = strrchr(base, '/');
    if (slash) *slash = 0;
    rmdir(base);
    ca_ready = false;
}

/* Remove every file a run left in the scratch directory (commands write only regular files). */
static void ca_clean(void) {
    DIR *d = opendir(ca_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof(p), "%s/%s", ca_dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
}

/* ---- helpers mode ------------------------------------------------------------------------------ */

static void ca_helpers(char **s, int n) {
    static const int64_t ranges[][2] = {{0, 1}, {1, 512}, {-5, 5}, {2, 1 << 20}, {INT64_MIN, INT64_MAX}, {0, INT32_MAX}};
    for (int i = 0; i < n; i++) {
        const char *a = s[i];
        for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
            int64_t v;
            if (cli_parse_i64(a, ranges[r][0], ranges[r][1], &v)) {
                fz_require(v >= ranges[r][0] && v <= ranges[r][1], "i64 %lld outside range %zu", (long long)v, r);
                char buf[32];
                int64_t w;
                snprintf(buf, sizeof(buf), "%lld", (long long)v);
                fz_require(cli_parse_i64(buf, ranges[r][0], ranges[r][1], &w) && w == v, "i64 round trip");
            }
            if (ranges[r][0] >= INT_MIN && ranges[r][1] <= INT_MAX) {
                int x;
                if (cli_parse_int(a, (int)ranges[r][0], (int)ranges[r][1], &x))
                    fz_require(x >= ranges[r][0] && x <= ranges[r][1], "int %d outside range %zu", x, r);
            }
        }
        float f;
        if (cli_parse_float(a, 0.0f, 0.999f, &f)) fz_require(f >= 0.0f && f <= 0.999f, "float %g outside [0, 0.999]", (double)f);
        if (cli_parse_float(a, -INFINITY, INFINITY, &f)) fz_require(!isnan(f), "NaN accepted");
        int32_t *ids = NULL, n_ids = 0;
        if (cli_parse_ids(a, &ids, &n_ids)) {
            size_t commas = 0;
            for (const char *p = a; *p; p++) commas += *p == ',';
            fz_require(n_ids == (int32_t)commas + 1, "%d ids from %zu commas", n_ids, commas);
            /* the canonical spelling parses to the same list */
            char *buf = malloc((size_t)n_ids * 12 + 1);
            fz_require(buf != NULL, "alloc");
            size_t k = 0;
            for (int32_t j = 0; j < n_ids; j++) k += (size_t)sprintf(buf + k, j ? ",%d" : "%d", ids[j]);
            int32_t *again = NULL, n_again = 0;
            fz_require(cli_parse_ids(buf, &again, &n_again) && n_again == n_ids && !memcmp(again, ids, sizeof(int32_t) * (size_t)n_ids),
                       "id list round trip");
            free(again);
            free(buf);
            free(ids);
        }
        (void)cli_is(a, "-m", "--model");
        (void)cli_is(a, NULL, "--ids");
    }
    /* cli_value never reads past argc */
    int i = 0;
    char *argv[2] = {n ? s[0] : "x", NULL};
    const char *v = cli_value("fuzz", 1, argv, &i);
    fz_require(v == NULL && i == 0, "cli_value past the end");
}

/* ---- subcommand mode --------------------------------------------------------------------------- */

static const char *ca_subst(const char *a) {
    if (!strcmp(a, "@m")) return ca_model;
    if (!strcmp(a, "@v")) return ca_vocab;
    if (!strcmp(a, "@t")) return ca_text;
    if (!strcmp(a, "@p")) return ca_prof;
    if (!strcmp(a, "@g")) return ca_junk;
    if (strchr(a, '/')) return "x";
    return a;
}

static void ca_command(uint8_t which, char **s, int n, const uint8_t *file, size_t file_len) {
    static const struct {
        const char *name;
        cli_main_fn fn;
    } cmds[] = {{"info", cmd_info}, {"logits", cmd_logits}, {"ppl", cmd_ppl}, {"calibrate", cmd_calibrate}};
    const int nc = (int)(sizeof(cmds) / sizeof(cmds[0]));
    char *argv[70];
    int argc = 0;
    const int k = which % nc;
    argv[argc++] = (char *)cmds[k].name;
    if (cmds[k].fn == cmd_ppl || cmds[k].fn == cmd_calibrate) {
        /* these default to 2 threads and to every token of the text (which may be a 700 KB
         * fixture): one thread and 256 tokens keep a run short (later values are capped) */
        argv[argc++] = "-t";
        argv[argc++] = "1";
        argv[argc++] = "--max-tokens";
        argv[argc++] = "256";
    }
    static char names[64][64]; /* "--name" halves of "--name=value" arguments */
    for (int i = 0; i < n && argc < 68; i++) {
        const char *a = s[i];
        const char *eq = a[0] == '-' && a[1] == '-' ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof(names[0])) { /* split, so that the caps below see the value */
            snprintf(names[i], sizeof(names[i]), "%.*s", (int)(eq - a), a);
            argv[argc++] = names[i];
            a = eq + 1;
        }
        a = ca_subst(a);
        const char *prev = argc > 1 ? argv[argc - 1] : "";
        int64_t x;
        if ((cli_is(prev, "-t", "--threads")) && cli_parse_i64(a, INT64_MIN, INT64_MAX, &x) && x > 2) a = "2";
        if ((cli_is(prev, "-c", "--ctx") || cli_is(prev, NULL, "--ctx-size")) && cli_parse_i64(a, INT64_MIN, INT64_MAX, &x) &&
            (x > 256 || x == 0))
            a = "256";
        if ((cli_is(prev, NULL, "--max-tokens")) && cli_parse_i64(a, INT64_MIN, INT64_MAX, &x) && (x > 256 || x == 0)) a = "256";
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;

    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)) || chdir(ca_dir) != 0) abort();
    if (file) ca_write("in", file, file_len < 1024 ? file_len : 1024); /* <= 1 KiB of text keeps ppl/calibrate fast */
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) dup2(null, 1);
    int rc = cmds[k].fn(argc, argv);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, 1);
        close(saved);
    }
    if (null >= 0) close(null);
    ca_clean();
    if (chdir(cwd) != 0) abort();
    fz_require(rc == 0 || rc == 1, "%s returned %d", argv[0], rc);
}

int sl_fuzz_cli_args(const uint8_t *data, size_t size) {
    ca_init();
    if (size < 2) return 0;
    /* split into NUL-terminated strings (a private copy: the input is read-only) */
    char *buf = malloc(size - 1);
    fz_require(buf != NULL, "alloc");
    memcpy(buf, data + 2, size - 2);
    buf[size - 2] = 0;
    char *s[64];
    int n = 0;
    const uint8_t *file = NULL;
    size_t file_len = 0;
    char *p = buf, *end = buf + (size - 2);
    while (p <= end && n < 64) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) *nl = 0;
        if (!strcmp(p, "@@") && nl) {
            file = data + 2 + (size_t)(nl + 1 - buf);
            file_len = (size_t)(end - (nl + 1));
            break;
        }
        s[n++] = p;
        if (!nl) break;
        p = nl + 1;
    }
    if (data[0] & 1) ca_command(data[1], s, n, file, file_len);
    else ca_helpers(s, n);
    free(buf);
    return 0;
}

/* ---- seeds: typical and broken command lines ---------------------------------------------------- */

void sl_fuzz_cli_args_write_seeds(const char *dir) {
    static const char *const seeds[] = {
        /* helpers: byte 0 even */
        "\0\0" "1,302,930\n-5\n2147483648\n0.5\n1e-3\nnan\n-inf\n 7\n0x10\n1,,2\n1,\n,1\n-\n99999999999999999999",
        "\0\0" "--model\n-m\n--ids\n1 , 2 ,3\n-2147483648,2147483647\n0.999\n1.0\n-0\n+3",
        /* subcommands: byte 0 odd, byte 1 = info / logits / ppl / calibrate */
        "\1\0" "-m\n@m",
        "\1\0" "-m\n@v\n--vocab-only",
        "\1\0" "-m\n@g",
        "\1\0" "--help",
        "\1\1" "-m\n@m\n--ids\n1,2,3\n-o\nout.f32",
        "\1\1" "-m\n@m\n--ids\n1,258,3\n-o\n-\n--incremental\n-t\n2\n--kv-f16\n-b\n1",
        "\1\1" "-m\n@m\n--ids\n1,259\n-o\nx",
        "\1\2" "-m\n@m\n-f\n@t\n-c\n16\n-q",
        "\1\2" "-m\n@m\n-f\n@t\n--profile\n@p\n--sparsity\n0.5\n--json\n-c\n8",
        "\1\2" "-m\n@m\n-f\nin\n--max-tokens\n20\n-q\n@@\nSome text to score, with words.",
        "\1\3" "-m\n@m\n-f\n@t\n-o\nprof.gguf\n--sparsity\n0.3\n-c\n16\n-q",
        "\1\3" "-m\n@m\n-f\n@t\n-o\np.gguf\n--layer-sparsity\nin\n@@\n0.5, -1\n",
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        /* the strings start with two option bytes that may be NUL: measure the rest */
        size_t n = 2 + strlen(seeds[i] + 2);
        char name[32];
        snprintf(name, sizeof(name), "seed-%02zu", i);
        fz_write_seed(dir, name, seeds[i], n);
    }
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_cli_args_write_seeds(seeds);
        exit(0);
    }
    return ca_init();
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_cli_args(data, size); }
#endif
