/*
 * test_tokenizer.c — the tokenizers against llama.cpp's own test vectors, the tiny fixture, and
 * hostile input.
 *
 * What it checks: all 46 strings x 5 vocabularies of tests/data/vocab (ids must match exactly;
 * a mismatch prints the string and both id lists); decode(encode(x)) == x wherever llama.cpp
 * round-trips; the tiny fixture's prompt ids, greedy text and eval-corpus token count; special
 * tokens (parse_special, user-defined tokens, BOS/EOS, EOG); streaming detokenization never
 * splitting a UTF-8 character; malformed tokenizer metadata; invalid UTF-8, NUL bytes, 1 MB of
 * random text, pathological runs and out-of-range ids. Tokenization speed is printed, never
 * asserted. What it does not check: models (see the forward-pass tests) or sampling.
 */
#include "format/gguf.h"
#include "text/tokenizer.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sl_vocab *load_vocab_file(const char *path) {
    sl_error err;
    gguf_file *f = gguf_open(path, &err);
    if (!f) {
        printf("# cannot open %s: %s\n", path, err.message);
        return NULL;
    }
    sl_vocab *v = sl_vocab_init_from_gguf(f, &err);
    if (!v) printf("# no vocab in %s: %s\n", path, err.message);
    gguf_close(f); /* the vocabulary must not depend on the file staying open */
    return v;
}

/* Tokenize; returns ids (malloc'd) or NULL for an empty result; *n = count, -1 on error. */
static int32_t *tok(const sl_vocab *v, const char *s, size_t len, bool bos, bool special, int32_t *n) {
    int32_t *ids = NULL;
    sl_error err;
    if (sl_tokenize(v, s, len, bos, special, &ids, n, &err) != SL_OK) {
        printf("# tokenize failed: %s\n", err.message);
        *n = -1;
        return NULL;
    }
    return ids;
}

static char *detok(const sl_vocab *v, const int32_t *ids, int32_t n, size_t *len) {
    char *text = NULL;
    sl_error err;
    if (sl_detokenize(v, ids, n, false, false, &text, len, &err) != SL_OK) {
        printf("# detokenize failed: %s\n", err.message);
        return NULL;
    }
    return text;
}

static void print_escaped(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n && i < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c == '"') printf("\\\"");
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    if (n > 200) printf("...");
    putchar('"');
}

static void print_ids(const char *label, const int32_t *ids, int32_t n) {
    printf("#   %s (%d):", label, n);
    for (int32_t i = 0; i < n && i < 80; i++) printf(" %d", ids[i]);
    printf("\n");
}

static bool ids_equal(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0);
}

/* ---- llama.cpp test vectors ------------------------------------------------------------------- */

#define SEP "\n__ggml_vocab_test__\n"

static void test_vectors(const char *name, const sl_vocab *v, double *mbps_out) {
    char path[256];
    size_t inp_len = 0, out_len = 0;
    snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf.inp", name);
    char *inp = test_read_file(path, &inp_len);
    snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf.out", name);
    char *out = test_read_file(path, &out_len);
    if (!CHECK(inp && out, "%s: test vector files readable", name)) {
        free(inp);
        free(out);
        return;
    }
    /* split inputs on the separator (each string is followed by one) */
    const char *strs[64];
    size_t lens[64];
    int n_str = 0;
    const size_t seplen = strlen(SEP);
    for (size_t pos = 0; pos < inp_len && n_str < 64;) {
        const char *hit = memmem(inp + pos, inp_len - pos, SEP, seplen);
        if (!hit) break;
        strs[n_str] = inp + pos;
        lens[n_str] = (size_t)(hit - (inp + pos));
        n_str++;
        pos = (size_t)(hit - inp) + seplen;
    }
    /* expected ids: one line per string */
    char *line = out;
    int pass = 0, rt_pass = 0, rt_expected = 0;
    for (int i = 0; i < n_str; i++) {
        char *eol = line ? strchr(line, '\n') : NULL;
        if (eol) *eol = 0;
        int32_t exp[512];
        int32_t n_exp = 0;
        for (char *p = line; p && *p && n_exp < 512;) {
            while (*p == ' ') p++;
            if (!*p) break;
            exp[n_exp++] = (int32_t)strtol(p, &p, 10);
        }
        line = eol ? eol + 1 : NULL;

        int32_t n_got;
        int32_t *got = tok(v, strs[i], lens[i], false, false, &n_got);
        if (n_got >= 0 && ids_equal(got, n_got, exp, n_exp)) {
            pass++;
        } else {
            printf("# %s: vector #%d mismatch for ", name, i);
            print_escaped(strs[i], lens[i]);
            printf("\n");
            print_ids("expected", exp, n_exp);
            print_ids("got     ", got, n_got);
        }
        /* llama.cpp's detokenizer applies clean_up_tokenization_spaces for gpt-2, starcoder and
         * llama-bpe, so " ?" loses its space in #32 and #45 there; everything else round-trips */
        bool clean_breaks = v->clean_spaces && (i == 32 || i == 45);
        if (n_got >= 0) {
            size_t dl = 0;
            char *d = detok(v, got, n_got, &dl);
            bool same = d && dl == lens[i] && memcmp(d, strs[i], dl) == 0;
            if (!clean_breaks) {
                rt_expected++;
                if (same) rt_pass++;
                else {
                    printf("# %s: round trip #%d: ", name, i);
                    print_escaped(strs[i], lens[i]);
                    printf(" -> ");
                    print_escaped(d ? d : "", dl);
                    printf("\n");
                }
            } else {
                CHECK(!same, "%s: vector #%d does not round-trip (clean_up_tokenization_spaces, as llama.cpp)", name, i);
            }
            free(d);
        }
        free(got);
    }
    CHECK(n_str == 46, "%s: 46 test strings read (got %d)", name, n_str);
    CHECK(pass == n_str, "%s: %d/%d vectors match llama.cpp", name, pass, n_str);
    CHECK(rt_pass == rt_expected, "%s: decode(encode(x)) == x for %d/%d strings", name, rt_pass, rt_expected);

    /* speed on the eval corpus (printed, not asserted; only where asked, to keep the test short) */
    size_t ev_len = 0;
    char *ev = mbps_out ? test_read_file("tests/data/eval.txt", &ev_len) : NULL;
    if (ev) {
        double t0 = now_s();
        int32_t n;
        int32_t *ids = tok(v, ev, ev_len, false, false, &n);
        double dt = now_s() - t0;
        double mbps = (double)ev_len / 1e6 / (dt > 1e-9 ? dt : 1e-9);
        printf("# %s: eval.txt %zu bytes -> %d tokens in %.3f s (%.2f MB/s)\n", name, ev_len, n, dt, mbps);
        if (mbps_out) *mbps_out = mbps;
        free(ids);
        free(ev);
    }
    free(inp);
    free(out);
}

/* ---- the tiny fixture ------------------------------------------------------------------------- */

/* Parse the integer array after "key": in a JSON text. */
static int parse_json_ints(const char *json, const char *key, int32_t *out, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p = strchr(p, '[');
    if (!p) return -1;
    p++;
    int n = 0;
    while (*p && *p != ']' && n < max) {
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\r' || *p == '\t') p++;
        if (*p == ']') break;
        char *end;
        out[n++] = (int32_t)strtol(p, &end, 10);
        if (end == p) return -1;
        p = end;
    }
    return n;
}

static long parse_json_int(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p || !(p = strchr(p, ':'))) return -1;
    return strtol(p + 1, NULL, 10);
}

/* Parse the JSON string after "key": (escapes \n \t \" \\ \/ and \uXXXX below U+0800). */
static int parse_json_string(const char *json, const char *key, char *out, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p || !(p = strchr(p + strlen(pat), '"'))) return -1;
    p++;
    int n = 0;
    while (*p && *p != '"' && n < max - 4) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'u': {
            unsigned c = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (c < 0x80) out[n++] = (char)c;
            else if (c < 0x800) {
                out[n++] = (char)(0xC0 | (c >> 6));
                out[n++] = (char)(0x80 | (c & 0x3F));
            } else {
                out[n++] = (char)(0xE0 | (c >> 12));
                out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (c & 0x3F));
            }
            break;
        }
        default: out[n++] = *p; break;
        }
        p++;
    }
    out[n] = 0;
    return n;
}

static void test_tiny_fixture(void) {
    sl_vocab *v = load_vocab_file("tests/data/tiny-silu.gguf");
    size_t jl = 0;
    char *json = test_read_file("tests/data/tiny-silu.json", &jl);
    if (!CHECK(v && json, "tiny-silu: vocabulary and reference json load")) {
        sl_vocab_free(v);
        free(json);
        return;
    }
    CHECK(sl_vocab_get_type(v) == SL_VOCAB_SPM && sl_vocab_bos(v) == 1 && sl_vocab_eos(v) == 2 && sl_vocab_add_bos(v),
          "tiny-silu: SPM vocabulary, bos 1, eos 2, add_bos");
    int32_t want[64], n_want = parse_json_ints(json, "prompt_ids", want, 64);
    const char *prompt = "It was a dark and stormy night";
    int32_t n;
    int32_t *ids = tok(v, prompt, strlen(prompt), true, false, &n);
    if (!CHECK(n_want > 0 && ids_equal(ids, n, want, n_want), "tiny-silu: prompt with BOS gives prompt_ids")) {
        print_ids("expected", want, n_want);
        print_ids("got     ", ids, n);
    }
    free(ids);

    int32_t greedy[256];
    int n_greedy = parse_json_ints(json, "greedy_ids", greedy, 256);
    char text[4096];
    int tl = parse_json_string(json, "greedy_text", text, sizeof text);
    size_t dl = 0;
    char *d = detok(v, greedy, n_greedy, &dl);
    if (!CHECK(n_greedy > 0 && tl > 0 && d && dl == (size_t)tl && memcmp(d, text, dl) == 0,
               "tiny-silu: detokenize(greedy_ids) == greedy_text")) {
        printf("#   want ");
        print_escaped(text, tl > 0 ? (size_t)tl : 0);
        printf("\n#   got  ");
        print_escaped(d ? d : "", dl);
        printf("\n");
    }
    /* streaming the same ids gives the same text (no space prefix removal needed here) */
    sl_error err;
    sl_detok *sd = sl_detok_init(v, false, &err);
    char stream[4096];
    size_t sn = 0;
    for (int i = 0; sd && i < n_greedy; i++) {
        const char *p;
        size_t pl;
        if (sl_detok_push(sd, greedy[i], &p, &pl, &err) == SL_OK && sn + pl < sizeof stream) {
            memcpy(stream + sn, p, pl);
            sn += pl;
        }
    }
    const char *p;
    size_t pl;
    sl_detok_flush(sd, &p, &pl);
    memcpy(stream + sn, p, pl);
    sn += pl;
    CHECK(d && sn == dl && memcmp(stream, d, dl) == 0, "tiny-silu: streaming detokenizer gives the same text");
    sl_detok_free(sd);
    free(d);

    /* the eval corpus as one text without BOS: the reference token count */
    long want_tokens = parse_json_int(json, "eval_tokens");
    size_t ev_len = 0;
    char *ev = test_read_file("tests/data/eval.txt", &ev_len);
    if (ev) {
        ids = tok(v, ev, ev_len, false, false, &n);
        CHECK(want_tokens > 0 && n == want_tokens, "tiny-silu: eval.txt tokenizes to %d tokens (reference %ld)", n,
              want_tokens);
        size_t el = 0;
        char *back = detok(v, ids, n, &el);
        CHECK(back && el == ev_len && memcmp(back, ev, el) == 0, "tiny-silu: eval.txt round-trips");
        free(back);
        free(ids);
        free(ev);
    }
    free(json);
    sl_vocab_free(v);
}

/* ---- special tokens and flags ----------------------------------------------------------------- */

static void expect_ids(const sl_vocab *v, const char *what, const char *s, bool bos, bool special, const int32_t *want,
                       int32_t n_want) {
    int32_t n;
    int32_t *ids = tok(v, s, strlen(s), bos, special, &n);
    if (!CHECK(ids_equal(ids, n, want, n_want), "%s", what)) {
        print_ids("expected", want, n_want);
        print_ids("got     ", ids, n);
    }
    free(ids);
}

static bool contains(const int32_t *ids, int32_t n, int32_t id) {
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void test_special(sl_vocab *spm, sl_vocab *gpt2, sl_vocab *llama3, sl_vocab *deepseek) {
    if (spm) {
        expect_ids(spm, "llama-spm: 'Hello' with BOS -> [1, 15043]", "Hello", true, false, (int32_t[]){1, 15043}, 2);
        expect_ids(spm, "llama-spm: '<s>Hello' with parse_special -> [1, 15043] (prefix after a special token)",
                   "<s>Hello", false, true, (int32_t[]){1, 15043}, 2);
        int32_t n;
        int32_t *ids = tok(spm, "<s>Hello", 8, false, false, &n);
        CHECK(n > 2 && !contains(ids, n, 1), "llama-spm: '<s>' is plain text without parse_special");
        free(ids);
        expect_ids(spm, "llama-spm: empty text with BOS -> [1]", "", true, false, (int32_t[]){1}, 1);
        expect_ids(spm, "llama-spm: empty text without BOS -> []", "", false, false, NULL, 0);
        CHECK(sl_vocab_is_eog(spm, 2) && !sl_vocab_is_eog(spm, 1) && !sl_vocab_is_eog(spm, 15043),
              "llama-spm: </s> ends generation, <s> and words do not");
        size_t pl;
        const char *p = sl_token_to_piece(spm, 1, false, &pl);
        CHECK(p && pl == 0, "llama-spm: control token piece is empty without special");
        p = sl_token_to_piece(spm, 1, true, &pl);
        CHECK(p && pl == 3 && memcmp(p, "<s>", 3) == 0, "llama-spm: control token piece is '<s>' with special");
        p = sl_token_to_piece(spm, 15043, false, &pl);
        CHECK(p && pl == 6 && memcmp(p, " Hello", 6) == 0, "llama-spm: '▁Hello' piece is ' Hello'");
        p = sl_token_to_piece(spm, 3 + 0x41, false, &pl);
        CHECK(p && pl == 1 && p[0] == 'A', "llama-spm: <0x41> piece is the byte 'A'");
        CHECK(sl_vocab_find_token(spm, "<s>", 3) == 1 && sl_vocab_find_token(spm, "nope-not-a-token", 16) == -1,
              "llama-spm: find_token");
        /* detokenize with remove_special drops the BOS, and the leading space stays (llama.cpp) */
        char *text = NULL;
        size_t tl = 0;
        sl_error err;
        CHECK(sl_detokenize(spm, (int32_t[]){1, 15043}, 2, true, false, &text, &tl, &err) == SL_OK && tl == 6 &&
                  memcmp(text, " Hello", 6) == 0,
              "llama-spm: detokenize([<s>, ▁Hello], remove_special) == ' Hello' (as llama.cpp)");
        free(text);
        CHECK(sl_detokenize(spm, (int32_t[]){1, 15043}, 2, false, true, &text, &tl, &err) == SL_OK && tl == 9 &&
                  memcmp(text, "<s> Hello", 9) == 0,
              "llama-spm: detokenize([<s>, ▁Hello], unparse_special) == '<s> Hello'");
        free(text);
    }
    if (gpt2) {
        CHECK(!sl_vocab_add_bos(gpt2) && sl_vocab_bos(gpt2) == 50256 && sl_vocab_eos(gpt2) == 50256,
              "gpt-2: no BOS added, bos = eos = 50256");
        expect_ids(gpt2, "gpt-2: 'Hello' with add_bos -> [15496] (the vocabulary adds none)", "Hello", true, false,
                   (int32_t[]){15496}, 1);
        expect_ids(gpt2, "gpt-2: '<|endoftext|>' with parse_special -> [50256]", "<|endoftext|>", false, true,
                   (int32_t[]){50256}, 1);
        CHECK(sl_vocab_is_eog(gpt2, 50256), "gpt-2: <|endoftext|> ends generation");
        char *text = NULL;
        size_t tl = 0;
        sl_error err;
        int32_t n;
        int32_t *ids = tok(gpt2, "Hello , world !", 15, false, false, &n);
        CHECK(ids && sl_detokenize(gpt2, ids, n, false, false, &text, &tl, &err) == SL_OK && tl == 13 &&
                  memcmp(text, "Hello, world!", 13) == 0,
              "gpt-2: detokenize cleans ' ,' and ' !' (clean_up_tokenization_spaces)");
        free(text);
        free(ids);
    }
    if (llama3) {
        CHECK(sl_vocab_add_bos(llama3) && sl_vocab_bos(llama3) == 128000 && sl_vocab_eot(llama3) == 128009,
              "llama-bpe: add_bos, bos 128000, eot <|eot_id|> 128009");
        CHECK(sl_vocab_is_eog(llama3, 128001) && sl_vocab_is_eog(llama3, 128009) && sl_vocab_is_eog(llama3, 128008) &&
                  !sl_vocab_is_eog(llama3, 128000) && !sl_vocab_is_eog(llama3, 9906) && !sl_vocab_is_eog(llama3, -5),
              "llama-bpe: <|end_of_text|>, <|eot_id|>, <|eom_id|> end generation");
        expect_ids(llama3, "llama-bpe: specials parsed: [128000, 9906, 128009]", "<|begin_of_text|>Hello<|eot_id|>",
                   false, true, (int32_t[]){128000, 9906, 128009}, 3);
        expect_ids(llama3, "llama-bpe: add_bos + parse_special: [128000, 128006, 882, 128007]",
                   "<|start_header_id|>user<|end_header_id|>", true, true, (int32_t[]){128000, 128006, 882, 128007}, 4);
        int32_t n;
        int32_t *ids = tok(llama3, "<|begin_of_text|>Hello<|eot_id|>", 32, false, false, &n);
        CHECK(n > 3 && !contains(ids, n, 128000) && !contains(ids, n, 128009),
              "llama-bpe: special text is plain text without parse_special");
        free(ids);
        /* a longer special token wins over a shorter one that overlaps it */
        ids = tok(llama3, "<|reserved_special_token_10|>", 29, false, true, &n);
        CHECK(n == 1 && ids && sl_vocab_is_control(llama3, ids[0]), "llama-bpe: longest special token wins");
        free(ids);
    }
    if (deepseek) {
        int32_t n;
        int32_t *ids = tok(deepseek, "F\xC3\xBChrer", 7, false, false, &n);
        CHECK(contains(ids, n, 100014), "deepseek-llm: user-defined 'ü' is cut out even without parse_special");
        free(ids);
        CHECK(sl_vocab_add_bos(deepseek) && sl_vocab_bos(deepseek) == 100000, "deepseek-llm: add_bos, bos 100000");
    }
}

/* ---- streaming -------------------------------------------------------------------------------- */

static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = u[i] < 0x80 ? 1 : u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : u[i] >= 0xC0 ? 2 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

static void test_streaming(const char *name, const sl_vocab *v) {
    /* emoji and rare CJK are byte-fallback tokens in SPM: a character spans several tokens */
    const char *s = "Hello \xF0\x9F\xA6\x99 w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\xF0\x9F\x98\x81!";
    int32_t n;
    int32_t *ids = tok(v, s, strlen(s), false, false, &n);
    sl_error err;
    sl_detok *d = sl_detok_init(v, false, &err);
    char all[512];
    size_t an = 0;
    bool chunks_valid = true, ok = d != NULL;
    int split_chars = 0;
    for (int32_t i = 0; ok && i < n; i++) {
        const char *p;
        size_t pl, piece_len;
        sl_token_to_piece(v, ids[i], false, &piece_len);
        split_chars += !valid_utf8(sl_token_to_piece(v, ids[i], false, &piece_len), piece_len);
        ok = sl_detok_push(d, ids[i], &p, &pl, &err) == SL_OK;
        if (ok) {
            chunks_valid = chunks_valid && valid_utf8(p, pl);
            memcpy(all + an, p, pl);
            an += pl;
        }
    }
    const char *p;
    size_t pl;
    sl_detok_flush(d, &p, &pl);
    memcpy(all + an, p, pl);
    an += pl;
    /* the concatenation of raw pieces (SPM keeps the leading prefix space: no lstrip in streaming) */
    char want[512];
    size_t wn = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l;
        const char *q = sl_token_to_piece(v, ids[i], false, &l);
        memcpy(want + wn, q, l);
        wn += l;
    }
    CHECK(ok && chunks_valid && an == wn && memcmp(all, want, wn) == 0,
          "%s: streamed chunks are whole UTF-8 characters and add up to the pieces (%d pieces split a character)",
          name, split_chars);
    CHECK(d && sl_detok_push(d, sl_vocab_n_tokens(v), &p, &pl, &err) == SL_ERR_RANGE && pl == 0 &&
              sl_detok_push(d, -1, &p, &pl, &err) == SL_ERR_RANGE,
          "%s: streaming an out-of-range id is SL_ERR_RANGE", name);
    /* held-back bytes come out at flush: push only the first byte token of a 4-byte character */
    if (sl_vocab_get_type(v) == SL_VOCAB_SPM) {
        int32_t f0 = sl_vocab_find_token(v, "<0xF0>", 6);
        if (f0 >= 0 && sl_detok_push(d, f0, &p, &pl, &err) == SL_OK) {
            bool held = pl == 0;
            sl_detok_flush(d, &p, &pl);
            CHECK(held && pl == 1 && (unsigned char)p[0] == 0xF0, "%s: an incomplete character is held, then flushed",
                  name);
        }
    }
    sl_detok_free(d);
    free(ids);
}

/* ---- hostile input ---------------------------------------------------------------------------- */

static bool ids_in_range(const sl_vocab *v, const int32_t *ids, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= sl_vocab_n_tokens(v)) return false;
    return true;
}

/* Random valid UTF-8: words, spaces, newlines, digits, punctuation and code points from all planes. */
static size_t random_text(test_rng *r, char *buf, size_t n) {
    static const char punct[] = "!?.,;:'\"()[]{}-_/\\<>|~`@#$%^&*+=";
    size_t o = 0;
    while (o + 8 < n) {
        uint32_t k = (uint32_t)(test_rng_u64(r) % 100);
        uint32_t c;
        if (k < 55) c = 'a' + (uint32_t)(test_rng_u64(r) % 26);
        else if (k < 70) c = ' ';
        else if (k < 73) c = '\n';
        else if (k < 80) c = '0' + (uint32_t)(test_rng_u64(r) % 10);
        else if (k < 87) c = (uint32_t)punct[test_rng_u64(r) % (sizeof punct - 1)];
        else if (k < 95) c = 0x80 + (uint32_t)(test_rng_u64(r) % 0x780);
        else if (k < 99) c = 0x800 + (uint32_t)(test_rng_u64(r) % 0xF800);
        else c = 0x10000 + (uint32_t)(test_rng_u64(r) % 0x100000);
        if (c >= 0xD800 && c <= 0xDFFF) c = 'x';
        if (c == 0x2581) c = 'y'; /* "▁" would decode as a space in SPM */
        if (c < 0x80) buf[o++] = (char)c;
        else if (c < 0x800) {
            buf[o++] = (char)(0xC0 | (c >> 6));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            buf[o++] = (char)(0xE0 | (c >> 12));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | (c >> 18));
            buf[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return o;
}

static void test_hostile(const char *name, const sl_vocab *v, size_t big) {
    test_rng r = {0x1234567 + strlen(name)};
    sl_error err;
    int32_t n;
    int32_t *ids;

    /* random bytes: invalid UTF-8 everywhere. No E2 (so no "▁" by accident) and no spaces: SPM
     * groups a lead byte with the next bytes (llama.cpp), so "\xF8 " becomes the byte tokens of
     * F8 E2 96 81 and decodes to F8 "▁" -- checked separately below. */
    size_t nb = 16384;
    char *bytes = malloc(nb);
    for (size_t i = 0; i < nb; i++) {
        bytes[i] = (char)(test_rng_u64(&r) & 0xFF);
        if ((unsigned char)bytes[i] == 0xE2 || bytes[i] == ' ') bytes[i] = 'e';
    }
    ids = tok(v, bytes, nb, true, true, &n);
    CHECK(n > 0 && ids_in_range(v, ids, n), "%s: 16 KB of random bytes tokenize (%d ids, all in range)", name, n);
    if (sl_vocab_get_type(v) == SL_VOCAB_SPM && n > 0) {
        size_t dl = 0;
        char *d = detok(v, ids + 1, n - 1, &dl);
        CHECK(d && dl == nb && memcmp(d, bytes, nb) == 0, "%s: random bytes round-trip through byte fallback", name);
        free(d);
    } else if (n > 0) {
        /* valid UTF-8 comes back only when every lead byte has a token: StarCoder has none for
         * F1 (planes 4-7), and llama.cpp drops such bytes, so we do too */
        bool all_bytes = true;
        for (int b = 0; b < 0xF5; b++) all_bytes = all_bytes && (b == 0xC0 || b == 0xC1 || v->byte_token[b] >= 0);
        size_t dl = 0;
        char *d = detok(v, ids, n, &dl);
        CHECK(d && (!all_bytes || valid_utf8(d, dl)),
              "%s: random bytes decode%s (invalid bytes became U+FFFD)", name, all_bytes ? " to valid UTF-8" : "");
        free(d);
    }
    free(ids);
    free(bytes);

    if (sl_vocab_get_type(v) == SL_VOCAB_SPM) {
        /* llama.cpp's quirk, reproduced: the lead byte F8 claims the next three bytes (the "▁" of
         * the space), none of it is a token, so all four become byte tokens */
        ids = tok(v, "\xF8 a", 3, false, false, &n);
        int32_t want[5] = {sl_vocab_find_token(v, "\xE2\x96\x81", 3), v->byte_token[0xF8], v->byte_token[0xE2],
                           v->byte_token[0x96], v->byte_token[0x81]};
        CHECK(n >= 5 && ids_equal(ids, 5, want, 5), "%s: '\\xF8 a' -> '▁' <F8> <E2> <96> <81> ... (as llama.cpp)",
              name);
        free(ids);
    }

    /* defined results for invalid sequences */
    ids = tok(v, "a\xFF" "b", 3, false, false, &n);
    CHECK(n > 0 && ids_in_range(v, ids, n), "%s: 'a\\xFFb' tokenizes", name);
    if (sl_vocab_get_type(v) == SL_VOCAB_BPE) {
        int32_t n2;
        int32_t *ids2 = tok(v, "a\xEF\xBF\xBD" "b", 5, false, false, &n2);
        CHECK(ids_equal(ids, n, ids2, n2), "%s: an invalid byte tokenizes as U+FFFD (as llama.cpp)", name);
        free(ids2);
    }
    free(ids);

    /* NUL bytes are ordinary characters */
    static const char nul_text[] = "a\0b\0\0c d\0";
    ids = tok(v, nul_text, sizeof nul_text - 1, false, false, &n);
    size_t dl = 0;
    char *d = ids ? detok(v, ids, n, &dl) : NULL;
    CHECK(d && dl == sizeof nul_text - 1 && memcmp(d, nul_text, dl) == 0, "%s: text with NUL bytes round-trips", name);
    free(d);
    free(ids);

    CHECK(sl_tokenize(v, NULL, 0, false, false, &ids, &n, &err) == SL_OK && n == 0 && ids == NULL,
          "%s: NULL text of length 0 gives no tokens", name);
    CHECK(sl_tokenize(v, "x", ((size_t)1 << 30) + 1, false, false, &ids, &n, &err) == SL_ERR_RANGE,
          "%s: a text over 1 GiB is refused with SL_ERR_RANGE", name);

    /* big random text */
    char *buf = malloc(big + 16);
    size_t bl = random_text(&r, buf, big);
    double t0 = now_s();
    ids = tok(v, buf, bl, false, false, &n);
    double dt = now_s() - t0;
    CHECK(n > 0 && ids_in_range(v, ids, n), "%s: %zu KB of random text -> %d tokens in %.2f s", name, bl >> 10, n, dt);
    if (n > 0 && !v->clean_spaces) {
        d = detok(v, ids, n, &dl);
        CHECK(d && dl == bl && memcmp(d, buf, bl) == 0, "%s: random text round-trips", name);
        free(d);
    }
    free(ids);

    /* pathological runs: one long space / letter / punctuation / digit / newline run, and spaces
     * that do not reach the end; must stay fast (no quadratic regex backtracking) */
    static const char *const runs[] = {" ", "a", "!", "7", "\n", " \n", "\xC3\xA9", "\t "};
    static const char *const labels[] = {" ", "a", "!", "7", "\\n", " \\n", "\xC3\xA9", "\\t "};
    size_t rl = 64u << 10;
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        size_t ul = strlen(runs[k]), o = 0;
        while (o + ul < rl) {
            memcpy(buf + o, runs[k], ul);
            o += ul;
        }
        buf[o++] = 'x';
        t0 = now_s();
        ids = tok(v, buf, o, false, false, &n);
        dt = now_s() - t0;
        bool ok = n > 0 && ids_in_range(v, ids, n);
        if (ok && !v->clean_spaces) {
            d = detok(v, ids, n, &dl);
            ok = d && dl == o && memcmp(d, buf, o) == 0;
            free(d);
        }
        CHECK(ok, "%s: %zu KB run of '%s' + 'x' -> %d tokens in %.2f s", name, o >> 10, labels[k], n, dt);
        free(ids);
    }
    free(buf);

    /* ids out of range */
    char *text = (char *)1;
    size_t tl = 7;
    CHECK(sl_detokenize(v, (int32_t[]){1, sl_vocab_n_tokens(v)}, 2, false, false, &text, &tl, &err) == SL_ERR_RANGE &&
              text == NULL && tl == 0,
          "%s: detokenize with id == n_tokens is SL_ERR_RANGE (%s)", name, err.message);
    CHECK(sl_detokenize(v, (int32_t[]){-1}, 1, false, false, &text, &tl, &err) == SL_ERR_RANGE,
          "%s: detokenize with id -1 is SL_ERR_RANGE", name);
    CHECK(sl_detokenize(v, NULL, -3, false, false, &text, &tl, &err) == SL_ERR_INVALID_ARG,
          "%s: detokenize with a negative count is SL_ERR_INVALID_ARG", name);
    CHECK(sl_detokenize(v, NULL, 0, false, false, &text, &tl, &err) == SL_OK && text && tl == 0 && text[0] == 0,
          "%s: detokenize of nothing is the empty string", name);
    free(text);
    size_t pl = 9;
    CHECK(sl_token_to_piece(v, sl_vocab_n_tokens(v), true, &pl) == NULL && pl == 0 &&
              sl_token_to_piece(v, -7, false, &pl) == NULL,
          "%s: token_to_piece out of range is NULL", name);
}

/* ---- malformed metadata ----------------------------------------------------------------------- */

static sl_vocab *vocab_from_writer(gguf_writer *w, sl_error *err) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/sl_test_tokenizer_%d.gguf", (int)getpid());
    sl_vocab *v = NULL;
    if (gguf_writer_write(w, path, err) == SL_OK) {
        gguf_file *f = gguf_open(path, err);
        if (f) {
            v = sl_vocab_init_from_gguf(f, err);
            gguf_close(f);
        }
    }
    unlink(path);
    gguf_writer_free(w);
    return v;
}

static void test_metadata(void) {
    sl_error err;
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab",
                                       "\xE2\x96\x81" "ab"};
    const float scores[] = {0, 0, 0, -1, -2, -3, -1.5f, -0.5f, -0.1f};
    const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1};

    gguf_writer *w = gguf_writer_init();
    gguf_writer_set_str(w, "general.architecture", "llama");
    sl_vocab *v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_OK, "no tokenizer.ggml.model: NULL vocabulary and no error");

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 9);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 9);
    v = vocab_from_writer(w, &err);
    if (CHECK(v != NULL, "a small synthetic SPM vocabulary loads (%s)", v ? "ok" : err.message)) {
        /* "ab ab": ▁ab (score -0.1) beats ▁a+b; no byte tokens for ' '... all pieces exist */
        expect_ids(v, "synthetic SPM: 'ab ab' -> [▁ab, ▁ab]", "ab ab", false, false, (int32_t[]){8, 8}, 2);
        expect_ids(v, "synthetic SPM: 'c' (no byte tokens) -> ▁ + <unk>", "c", false, false, (int32_t[]){3, 0}, 2);
        sl_vocab_free(v);
    }

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_UNSUPPORTED, "tokenizer model 'bert' is unsupported (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_FORMAT, "gpt2 without merges is a format error (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_UNSUPPORTED, "unknown pre-tokenizer is unsupported (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, types, 9);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_FORMAT, "tokens of the wrong type are a format error (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const[]){"<unk>", "a", "a"}, 3);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_FORMAT, "duplicate tokens are a format error (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 3);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_FORMAT, "too few scores is a format error (%s)", err.message);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    v = vocab_from_writer(w, &err);
    CHECK(v && sl_vocab_bos(v) == 1, "a bos id outside the vocabulary is ignored (default kept)");
    sl_vocab_free(v);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    v = vocab_from_writer(w, &err);
    CHECK(!v && err.code == SL_ERR_FORMAT, "add_bos_token without a BOS token is a format error (%s)", err.message);
}

static void test_chat(void) {
    sl_error err;
    char *out = NULL;
    size_t n = 0;
    /* the Llama-3 vocabulary with a Llama-3 template added: the standard instruct prompt ids */
    sl_error e2;
    gguf_file *f = gguf_open("tests/data/vocab/ggml-vocab-llama-bpe.gguf", &e2);
    gguf_writer *w = gguf_writer_init();
    bool ok = f && gguf_writer_copy_kv(w, f, NULL, NULL) &&
              gguf_writer_set_str(w, "tokenizer.chat_template",
                                  "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                                  "{{ m['content'] | trim }}<|eot_id|>{% endfor %}");
    gguf_close(f);
    sl_vocab *v = ok ? vocab_from_writer(w, &err) : (gguf_writer_free(w), NULL);
    if (CHECK(v && sl_vocab_chat_template(v), "llama-bpe + Llama-3 chat template loads")) {
        const char *want = "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n";
        CHECK(sl_chat_format(v, NULL, "  Hello\n", 8, &out, &n, &err) == SL_OK && n == strlen(want) &&
                  memcmp(out, want, n) == 0,
              "Llama-3 chat format of a (trimmed) user message");
        int32_t k;
        int32_t *ids = out ? tok(v, out, n, true, true, &k) : NULL;
        int32_t want_ids[] = {128000, 128006, 882, 128007, 271, 9906, 128009, 128006, 78191, 128007, 271};
        if (!CHECK(ids_equal(ids, k, want_ids, 11), "Llama-3 chat prompt tokenizes to the standard instruct ids")) {
            print_ids("expected", want_ids, 11);
            print_ids("got     ", ids, k);
        }
        free(ids);
        sl_free_text(out);
        const char *want_sys = "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\n";
        CHECK(sl_chat_format(v, "Be brief.", "Hi", 2, &out, &n, &err) == SL_OK && n == strlen(want_sys) &&
                  memcmp(out, want_sys, n) == 0,
              "Llama-3 chat format with a system message");
        sl_free_text(out);
    }
    sl_vocab_free(v);

    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a"};
    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_str(w, "tokenizer.chat_template", "{{ bos_token }}[INST] {{ content | trim }} [/INST]");
    v = vocab_from_writer(w, &err);
    if (CHECK(v != NULL, "SPM vocabulary with a Llama-2 chat template loads")) {
        /* a template without <<SYS>> (llama.cpp's "llama2"): the system text goes in front of the
         * user message, as llama.cpp does */
        const char *want = "[INST] sys\nWhat is 2+2? [/INST]";
        CHECK(sl_chat_format(v, "sys", "What is 2+2?", 12, &out, &n, &err) == SL_OK && n == strlen(want) &&
                  memcmp(out, want, n) == 0,
              "Llama-2 chat format with a system message");
        sl_free_text(out);
        CHECK(sl_chat_format(v, NULL, "x", 1, &out, &n, &err) == SL_OK && strcmp(out, "[INST] x [/INST]") == 0,
              "Llama-2 chat format of a user message");
        sl_free_text(out);
    }
    sl_vocab_free(v);

    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_str(w, "tokenizer.chat_template", "{% for m in messages %}<|user|>{{ m.content }}<|endoftext|>{% endfor %}");
    v = vocab_from_writer(w, &err);
    CHECK(v && sl_chat_format(v, NULL, "x", 1, &out, &n, &err) == SL_ERR_UNSUPPORTED && out == NULL && strstr(err.message, "'zephyr'"),
          "a template of a family we do not render is SL_ERR_UNSUPPORTED naming it (%s)", err.message);
    sl_vocab_free(v);
    w = gguf_writer_init();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_str(w, "tokenizer.chat_template", "{{ messages[0].content }} -> answer:");
    v = vocab_from_writer(w, &err);
    CHECK(v && sl_chat_format(v, NULL, "x", 1, &out, &n, &err) == SL_ERR_UNSUPPORTED && out == NULL &&
              strstr(err.message, "{{ messages[0].content }} -> answer:"),
          "an unknown chat template is SL_ERR_UNSUPPORTED quoting it (%s)", err.message);
    sl_vocab_free(v);
}

int main(void) {
    static const char *const names[] = {"llama-spm", "gpt-2", "starcoder", "deepseek-llm", "llama-bpe"};
    sl_vocab *vocabs[5];
    double mbps[5] = {0};
    for (int i = 0; i < 5; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/ggml-vocab-%s.gguf", names[i]);
        double t0 = now_s();
        vocabs[i] = load_vocab_file(path);
        CHECK(vocabs[i] != NULL, "%s: vocabulary loads (%.2f s)", names[i], now_s() - t0);
    }
    for (int i = 0; i < 5; i++)
        if (vocabs[i]) test_vectors(names[i], vocabs[i], (i == 0 || i == 4) ? &mbps[i] : NULL);
    test_tiny_fixture();
    test_special(vocabs[0], vocabs[1], vocabs[4], vocabs[3]);
    for (int i = 0; i < 5; i++)
        if (vocabs[i]) test_streaming(names[i], vocabs[i]);
    for (int i = 0; i < 5; i++)
        if (vocabs[i]) test_hostile(names[i], vocabs[i], (i == 0 || i == 4) ? (1u << 20) : (256u << 10));
    test_metadata();
    test_chat();
    printf("# speed on eval.txt: llama-spm %.2f MB/s, llama-bpe %.2f MB/s\n", mbps[0], mbps[4]);
    for (int i = 0; i < 5; i++) sl_vocab_free(vocabs[i]);
    return test_summary();
}
