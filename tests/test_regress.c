/*
 * test_regress.c — replays every input under tests/regress/<harness>/ (the minimised crash,
 * leak, timeout and UB inputs the fuzzers found, see docs/fuzzing.md) through exactly the code
 * the fuzzer ran: the harness sources are #included here with SL_FUZZ_NO_MAIN, so their entry
 * points sl_fuzz_<harness>() are plain functions. A replay passes when it returns; a regression
 * crashes the program (or, under `make asan`, makes ASan/UBSan abort it), which the test runner
 * reports as a failure. Harnesses with no inputs are not initialised (the tokenizer ones load
 * all fixture vocabularies).
 * What it is not: a fuzzer — it runs only the committed inputs.
 */
#define SL_FUZZ_NO_MAIN
#include "../fuzz/fuzz_cli_args.c"
#include "../fuzz/fuzz_detokenize.c"
#include "../fuzz/fuzz_gguf.c"
#include "../fuzz/fuzz_hf.c"
#include "../fuzz/fuzz_model.c"
#include "../fuzz/fuzz_profile.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_server_request.c"
#include "../fuzz/fuzz_tokenize.c"
#include "testutil.h"

#include <dirent.h>

static const struct {
    const char *name;                       /* tests/regress/<name>/ */
    int (*run)(const uint8_t *, size_t);    /* harness entry point */
} harnesses[] = {
    {"gguf", sl_fuzz_gguf},         {"model", sl_fuzz_model},           {"profile", sl_fuzz_profile},
    {"tokenize", sl_fuzz_tokenize}, {"detokenize", sl_fuzz_detokenize}, {"cli_args", sl_fuzz_cli_args},
    {"safetensors", sl_fuzz_safetensors}, {"hf", sl_fuzz_hf},
    {"server_request", sl_fuzz_server_request},
};

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    int total = 0;
    for (size_t h = 0; h < sizeof(harnesses) / sizeof(harnesses[0]); h++) {
        char dir[256];
        snprintf(dir, sizeof(dir), "tests/regress/%s", harnesses[h].name);
        DIR *d = opendir(dir);
        if (!d) continue;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "README")) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                names = realloc(names, cap * sizeof(char *));
            }
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof(char *), cmp_names);
        for (size_t i = 0; i < n; i++) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            size_t size = 0;
            uint8_t *data = fz_read_file(path, &size);
            CHECK(data != NULL, "read %s", path);
            if (data) {
                /* replay from an exact-size copy so ASan sees any read past the input */
                uint8_t *copy = malloc(size ? size : 1);
                memcpy(copy, data, size);
                harnesses[h].run(copy, size);
                CHECK(true, "%s: replayed %s (%zu bytes) without a crash", harnesses[h].name, names[i], size);
                free(copy);
                free(data);
                total++;
            }
            free(names[i]);
        }
        free(names);
    }
    CHECK(total > 0, "%d regression inputs replayed", total);
    /* release what the harnesses loaded once, so leak checkers see a clean exit */
    for (int i = 0; i < FZ_N_VOCABS; i++) {
        sl_model_free(tk_models[i]);
        sl_model_free(dt_models[i]);
    }
    if (pr_ctx) sl_context_free(pr_ctx);
    sl_model_free(pr_model);
    fz_memfile_close(&pr_file);
    fz_memfile_close(&md_file);
    return test_summary();
}
