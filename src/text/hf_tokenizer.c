/*
 * hf_tokenizer.c — tokenizer.json + tokenizer_config.json as tokenizer.ggml.* metadata (see
 * hf_tokenizer.h). The decisions, in the order they are made:
 *  - kind: a ByteLevel pre-tokenizer (or decoder) means byte-level BPE ("gpt2"); byte_fallback
 *    or a "▁" normalizer / Metaspace pre-tokenizer means SentencePiece-style BPE ("llama");
 *  - pre-tokenizer name (byte-level): the Split regex compared with the ones llama.cpp's
 *    converter knows by hash (Llama-3 -> "llama-bpe", Qwen2 -> "qwen2"); ByteLevel's own regex ->
 *    "gpt-2"; Digits(individual) + ByteLevel -> "smollm"; anything else is refused by name;
 *  - normalizers: Prepend("▁") sets add_space_prefix, Replace(" " -> "▁") is what the
 *    SentencePiece tokenizer does anyway, NFC is accepted but not applied (text is taken as
 *    given); others are refused;
 *  - ids: the vocabulary and the added tokens together, every id in [0, n) at most once, holes
 *    filled with "[PAD<id>]" (llama.cpp's converter does the same); at most 2^24 tokens.
 * Every size comes from jansson's parsed document, so nothing is allocated before it is known
 * to be backed by the file's bytes.
 */
#include "text/hf_tokenizer.h"

#include "text/tokenizer.h"
#include "util/strbuf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_TOKENS (1 << 24)

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The two regexes llama.cpp's converter recognises (as tokenizer.json spells them). */
static const char re_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const json_t *o) {
    json_t *t = json_is_object(o) ? json_object_get(o, "type") : NULL;
    return json_is_string(t) ? json_string_value(t) : "";
}

/* The parts of a component: the list inside a Sequence (under `list_key`), or the component. */
static size_t parts_of(const json_t *o, const char *list_key, const json_t **out, size_t max) {
    if (!o || json_is_null(o)) return 0;
    if (!strcmp(type_of(o), "Sequence")) {
        json_t *l = json_object_get(o, list_key);
        size_t n = 0;
        for (size_t i = 0; json_is_array(l) && i < json_array_size(l) && n < max; i++) out[n++] = json_array_get(l, i);
        return n;
    }
    out[0] = o;
    return 1;
}

static bool str_is(const json_t *o, const char *key, const char *want) {
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) && !strcmp(json_string_value(v), want);
}

/* {"String": s} or {"Regex": r} pattern value: its text, or NULL. */
static const char *pattern_text(const json_t *o, const char *kind) {
    json_t *p = json_is_object(o) ? json_object_get(o, "pattern") : NULL;
    json_t *v = json_is_object(p) ? json_object_get(p, kind) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

typedef struct hf_kind {
    bool byte_level;       /* "gpt2" vocabulary */
    bool space_prefix;     /* SPM: a "▁" is put in front of the text */
    const char *pre;       /* byte-level: tokenizer.ggml.pre */
} hf_kind;

static bool decide_kind(const json_t *tok, const json_t *model, hf_kind *k, sl_error *err) {
    const json_t *pre[16], *norm[16];
    size_t n_pre = parts_of(json_object_get(tok, "pre_tokenizer"), "pretokenizers", pre, 16);
    size_t n_norm = parts_of(json_object_get(tok, "normalizer"), "normalizers", norm, 16);
    memset(k, 0, sizeof *k);
    bool byte_level = !strcmp(type_of(json_object_get(tok, "decoder")), "ByteLevel"), bl_regex = false, digits = false;
    const char *split_re = NULL;
    bool metaspace = false;
    for (size_t i = 0; i < n_pre; i++) {
        const char *t = type_of(pre[i]);
        if (!strcmp(t, "ByteLevel")) {
            json_t *ur = json_object_get(pre[i], "use_regex");
            byte_level = true;
            bl_regex = !ur || json_is_true(ur);
        } else if (!strcmp(t, "Split") && pattern_text(pre[i], "Regex")) {
            split_re = pattern_text(pre[i], "Regex");
        } else if (!strcmp(t, "Split") && pattern_text(pre[i], "String") && !strcmp(pattern_text(pre[i], "String"), " ")) {
            /* Gemma: splitting at spaces after they were all replaced by "▁" does nothing */
        } else if (!strcmp(t, "Digits")) {
            digits = json_is_true(json_object_get(pre[i], "individual_digits"));
        } else if (!strcmp(t, "Metaspace")) {
            metaspace = true;
            json_t *aps = json_object_get(pre[i], "add_prefix_space");
            k->space_prefix = json_is_true(aps) || str_is(pre[i], "prepend_scheme", "always") || str_is(pre[i], "prepend_scheme", "first");
        } else {
            return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: pre-tokenizer '%s' is not supported", t), false;
        }
    }
    bool replace_space = false;
    for (size_t i = 0; i < n_norm; i++) {
        const char *t = type_of(norm[i]);
        if (!strcmp(t, "Prepend") && str_is(norm[i], "prepend", "\xE2\x96\x81")) k->space_prefix = true;
        else if (!strcmp(t, "Replace") && pattern_text(norm[i], "String") && !strcmp(pattern_text(norm[i], "String"), " ") &&
                 str_is(norm[i], "content", "\xE2\x96\x81"))
            replace_space = true;
        else if (!strcmp(t, "NFC")) continue;
        else return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: normalizer '%s' is not supported", t), false;
    }
    k->byte_level = byte_level;
    if (byte_level) {
        if (k->space_prefix || replace_space || metaspace)
            return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: byte-level BPE with a \"\xE2\x96\x81\" normalizer is not supported"), false;
        if (split_re) {
            if (!strcmp(split_re, re_llama3)) k->pre = "llama-bpe";
            else if (!strcmp(split_re, re_qwen2)) k->pre = "qwen2";
            else
                return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: the pre-tokenizer regex is not one skipllama knows (Llama-3's, Qwen2's, GPT-2's): %.200s",
                                    split_re),
                       false;
        } else if (bl_regex) {
            k->pre = digits ? "smollm" : "gpt-2";
        } else {
            return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: byte-level BPE without a splitting regex is not supported"), false;
        }
        return true;
    }
    if (!replace_space && !metaspace && !json_is_true(json_object_get(model, "byte_fallback")))
        return sl_set_error(err, SL_ERR_UNSUPPORTED,
                            "tokenizer.json: a BPE model that is neither byte-level nor SentencePiece-style (byte fallback, \"\xE2\x96\x81\" for spaces)"),
               false;
    return true;
}

/* "<0xXX>" */
static bool is_byte_token(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' && strchr("0123456789ABCDEFabcdef", s[3]) &&
           strchr("0123456789ABCDEFabcdef", s[4]) && s[3] && s[4];
}

/* a special token of tokenizer_config.json: "text" or {"content": "text"} */
static const char *cfg_token(const json_t *cfg, const char *key) {
    json_t *v = sl_json_member(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

typedef struct vocab_build {
    int32_t n;          /* tokens */
    const char **text;  /* [n] (into the JSON, or pad_buf) */
    int32_t *type;      /* [n] */
    float *score;       /* [n] */
    char *pad_buf;      /* "[PAD<id>]" texts */
    json_t *by_text;    /* text -> id (a JSON object used as a hash map) */
} vocab_build;

static int32_t id_of(const vocab_build *b, const char *text) {
    int64_t id;
    json_t *v = text ? json_object_get(b->by_text, text) : NULL;
    return v && sl_json_int_value(v, 0, b->n - 1, &id) ? (int32_t)id : -1;
}

/* The post-processor's TemplateProcessing (possibly inside a Sequence), or NULL. */
static const json_t *template_processor(const json_t *tok) {
    const json_t *parts[16];
    size_t n = parts_of(json_object_get(tok, "post_processor"), "processors", parts, 16);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(type_of(parts[i]), "TemplateProcessing")) return parts[i];
    return NULL;
}

/* The special token at the start (first = true) or end of the template's "single" sequence. */
static const char *template_special(const json_t *tp, bool first) {
    json_t *single = tp ? json_object_get(tp, "single") : NULL;
    size_t n = json_is_array(single) ? json_array_size(single) : 0;
    if (!n) return NULL;
    json_t *st = json_object_get(json_array_get(single, first ? 0 : n - 1), "SpecialToken");
    json_t *id = json_is_object(st) ? json_object_get(st, "id") : NULL;
    return json_is_string(id) ? json_string_value(id) : NULL;
}

static bool set_id(gguf_writer *w, const char *key, int32_t id) { return id < 0 || gguf_writer_set_u32(w, key, (uint32_t)id); }

sl_status sl_hf_tokenizer_write(const json_t *tok, const json_t *cfg, const char *chat_template, int32_t n_vocab,
                                gguf_writer *w, sl_error *err) {
    sl_clear_error(err);
    const json_t *model = sl_json_member(tok, "model");
    if (!json_is_object(model)) return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    if (strcmp(type_of(model), "BPE"))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported (only BPE)", type_of(model));
    const json_t *vocab = json_object_get(model, "vocab"), *merges = sl_json_member(model, "merges");
    const json_t *added = sl_json_member(tok, "added_tokens");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: model.vocab must be a non-empty object");
    if (merges && !json_is_array(merges)) return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: model.merges must be an array");
    if (added && !json_is_array(added)) return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: added_tokens must be an array");
    hf_kind kind;
    if (!decide_kind(tok, model, &kind, err)) return err ? err->code : SL_ERR_UNSUPPORTED;

    /* the id range */
    int64_t max_id = -1, id;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        if (!sl_json_int_value(val, 0, HF_MAX_TOKENS - 1, &id))
            return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: token '%.80s' has an id that is not in 0..%d", key, HF_MAX_TOKENS - 1);
        if (id > max_id) max_id = id;
    }
    size_t n_added = added ? json_array_size(added) : 0;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        if (!json_is_object(a) || !sl_json_int_value(json_object_get(a, "id"), 0, HF_MAX_TOKENS - 1, &id) ||
            !json_is_string(json_object_get(a, "content")) || json_string_length(json_object_get(a, "content")) == 0)
            return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: added_tokens[%zu] needs an id in 0..%d and a non-empty content", i,
                                HF_MAX_TOKENS - 1);
        if (id > max_id) max_id = id;
    }
    int64_t n = max_id + 1;
    if (n_vocab > 0) {
        if (n > n_vocab)
            return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json has token id %lld but the model embeds only %d tokens", (long long)max_id,
                                n_vocab);
        n = n_vocab;
    } else if (n > 2 * (int64_t)(json_object_size(vocab) + n_added) + 1024) {
        return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: token id %lld is far beyond the %zu tokens it defines", (long long)max_id,
                            json_object_size(vocab) + n_added);
    }

    vocab_build b = {(int32_t)n, NULL, NULL, NULL, NULL, NULL};
    const char **merge_strs = NULL;
    char *merge_buf = NULL;
    sl_status st = SL_OK;
    b.text = calloc((size_t)n, sizeof(char *));
    b.type = calloc((size_t)n, sizeof(int32_t));
    b.score = calloc((size_t)n, sizeof(float));
    b.by_text = json_object();
    if (!b.text || !b.type || !b.score || !b.by_text) goto nomem;
    json_object_foreach((json_t *)vocab, key, val) {
        sl_json_int_value(val, 0, HF_MAX_TOKENS - 1, &id);
        if (id >= n) continue; /* cannot happen: n covers max_id */
        if (b.text[id]) {
            st = sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: tokens '%.80s' and '%.80s' have the same id %lld", b.text[id], key, (long long)id);
            goto done;
        }
        b.text[id] = key;
        b.type[id] = !kind.byte_level && is_byte_token(key) ? TT_BYTE : TT_NORMAL;
    }
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        sl_json_int_value(json_object_get(a, "id"), 0, HF_MAX_TOKENS - 1, &id);
        if (strlen(json_string_value(c)) != json_string_length(c)) {
            st = sl_set_error(err, SL_ERR_UNSUPPORTED, "tokenizer.json: added token %lld contains a NUL character", (long long)id);
            goto done;
        }
        if (b.text[id] && strcmp(b.text[id], json_string_value(c))) {
            st = sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: added token '%.80s' reuses the id %lld of '%.80s'", json_string_value(c),
                              (long long)id, b.text[id]);
            goto done;
        }
        b.text[id] = json_string_value(c);
        b.type[id] = json_is_true(json_object_get(a, "special")) ? TT_CONTROL : TT_USER_DEFINED;
    }
    /* holes: "[PAD<id>]" as llama.cpp's converter writes them */
    size_t holes = 0;
    for (int64_t i = 0; i < n; i++) holes += !b.text[i];
    if (holes) {
        char *p = b.pad_buf = malloc(holes * 32);
        if (!p) goto nomem;
        for (int64_t i = 0; i < n; i++)
            if (!b.text[i]) {
                snprintf(p, 32, "[PAD%lld]", (long long)i);
                b.text[i] = p;
                b.type[i] = TT_UNUSED;
                p += 32;
            }
    }
    for (int64_t i = 0; i < n; i++) {
        json_t *iv = json_real((double)i);
        if (!iv || json_object_set_new(b.by_text, b.text[i], iv)) goto nomem;
    }
    int32_t unk = -1;
    if (json_is_string(json_object_get(model, "unk_token"))) unk = id_of(&b, json_string_value(json_object_get(model, "unk_token")));
    if (unk >= 0) b.type[unk] = TT_UNKNOWN;

    /* merges as "A B" strings; SentencePiece-style scores from the first merge making each token */
    size_t n_merges = merges ? json_array_size(merges) : 0, merge_bytes = 1;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            merge_bytes += json_string_length(m) + 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            merge_bytes += json_string_length(json_array_get(m, 0)) + json_string_length(json_array_get(m, 1)) + 2;
        } else {
            st = sl_set_error(err, SL_ERR_FORMAT, "tokenizer.json: merges[%zu] is neither \"A B\" nor [\"A\", \"B\"]", i);
            goto done;
        }
    }
    merge_strs = malloc((n_merges ? n_merges : 1) * sizeof(char *));
    merge_buf = malloc(merge_bytes);
    if (!merge_strs || !merge_buf) goto nomem;
    if (!kind.byte_level)
        for (int64_t i = 0; i < n; i++) b.score[i] = b.type[i] == TT_NORMAL ? -1e9f : 0.0f;
    size_t off = 0;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        char *dst = merge_buf + off;
        if (json_is_string(m)) {
            memcpy(dst, json_string_value(m), json_string_length(m) + 1);
        } else {
            size_t la = json_string_length(json_array_get(m, 0)), lb = json_string_length(json_array_get(m, 1));
            memcpy(dst, json_string_value(json_array_get(m, 0)), la);
            dst[la] = ' ';
            memcpy(dst + la + 1, json_string_value(json_array_get(m, 1)), lb + 1);
        }
        merge_strs[i] = dst;
        off += strlen(dst) + 1;
        if (!kind.byte_level) {
            /* the merged token: "A B" without the separating space (the first one after index 0) */
            char *sp = strchr(dst + 1, ' ');
            if (!sp) continue;
            size_t la = (size_t)(sp - dst);
            char tmp[512];
            if (strlen(dst) >= sizeof tmp) continue;
            memcpy(tmp, dst, la);
            strcpy(tmp + la, sp + 1);
            int32_t t = id_of(&b, tmp);
            if (t >= 0 && b.type[t] == TT_NORMAL && b.score[t] == -1e9f) b.score[t] = -(float)i;
        }
    }

    /* special tokens and flags */
    const json_t *tp = template_processor(tok);
    int32_t bos = id_of(&b, cfg_token(cfg, "bos_token")), eos = id_of(&b, cfg_token(cfg, "eos_token"));
    int32_t pad = id_of(&b, cfg_token(cfg, "pad_token"));
    if (unk < 0) unk = id_of(&b, cfg_token(cfg, "unk_token"));
    json_t *single = tp ? json_object_get(tp, "single") : NULL;
    const char *tb = template_special(tp, true), *te = json_array_size(single) > 1 ? template_special(tp, false) : NULL;
    bool add_bos = tb != NULL, add_eos = te != NULL;
    if (bos < 0 && tb) bos = id_of(&b, tb);
    if (eos < 0 && te) eos = id_of(&b, te);
    if (cfg && json_is_boolean(json_object_get(cfg, "add_bos_token"))) add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
    if (cfg && json_is_boolean(json_object_get(cfg, "add_eos_token"))) add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
    if (add_bos && bos < 0) {
        st = sl_set_error(err, SL_ERR_FORMAT, "tokenizer: BOS is to be added but there is no BOS token");
        goto done;
    }
    if (add_eos && eos < 0) {
        st = sl_set_error(err, SL_ERR_FORMAT, "tokenizer: EOS is to be added but there is no EOS token");
        goto done;
    }
    const char *tmpl = chat_template;
    json_t *ct = sl_json_member(cfg, "chat_template");
    if (!tmpl && json_is_string(ct)) tmpl = json_string_value(ct);
    if (!tmpl && json_is_array(ct)) /* [{"name": "default", "template": "..."}, ...] */
        for (size_t i = 0; i < json_array_size(ct); i++)
            if (str_is(json_array_get(ct, i), "name", "default") && json_is_string(json_object_get(json_array_get(ct, i), "template")))
                tmpl = json_string_value(json_object_get(json_array_get(ct, i), "template"));

    bool ok = gguf_writer_set_str(w, "tokenizer.ggml.model", kind.byte_level ? "gpt2" : "llama") &&
              (!kind.byte_level || gguf_writer_set_str(w, "tokenizer.ggml.pre", kind.pre)) &&
              gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", b.text, (uint64_t)n) &&
              gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, b.type, (uint64_t)n) &&
              (kind.byte_level || gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, b.score, (uint64_t)n)) &&
              (!n_merges || gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merge_strs, n_merges)) &&
              set_id(w, "tokenizer.ggml.bos_token_id", bos) && set_id(w, "tokenizer.ggml.eos_token_id", eos) &&
              set_id(w, "tokenizer.ggml.unknown_token_id", unk) && set_id(w, "tokenizer.ggml.padding_token_id", pad) &&
              gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos) &&
              gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos) &&
              (kind.byte_level || gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", kind.space_prefix)) &&
              (!tmpl || gguf_writer_set_str(w, "tokenizer.chat_template", tmpl));
    if (!ok) goto nomem;
    goto done;
nomem:
    st = sl_set_error(err, SL_ERR_NOMEM, "out of memory converting tokenizer.json");
done:
    json_decref(b.by_text);
    free(b.text);
    free(b.type);
    free(b.score);
    free(b.pad_buf);
    free(merge_strs);
    free(merge_buf);
    return st;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), n = strlen(name);
    char *p = malloc(a + n + 2);
    if (p) snprintf(p, a + n + 2, "%s/%s", dir, name);
    return p;
}

sl_status sl_hf_tokenizer_write_dir(const char *dir, int32_t n_vocab, gguf_writer *w, sl_error *err) {
    char *tp = join(dir, "tokenizer.json"), *cp = join(dir, "tokenizer_config.json"), *jp = join(dir, "chat_template.jinja");
    json_t *tok = NULL, *cfg = NULL;
    char *tmpl = NULL;
    sl_status st = SL_OK;
    if (!tp || !cp || !jp) {
        st = sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!(tok = sl_json_load_file(tp, (size_t)1 << 30, err))) {
        st = err ? err->code : SL_ERR_IO;
        goto done;
    }
    FILE *f = fopen(cp, "rb");
    if (f) {
        fclose(f);
        if (!(cfg = sl_json_load_file(cp, (size_t)256 << 20, err))) {
            st = err ? err->code : SL_ERR_IO;
            goto done;
        }
    }
    if ((f = fopen(jp, "rb"))) {
        fclose(f);
        size_t n;
        if (!(tmpl = sl_file_read_all(jp, (size_t)16 << 20, &n, err))) {
            st = err ? err->code : SL_ERR_IO;
            goto done;
        }
    }
    st = sl_hf_tokenizer_write(tok, cfg, tmpl, n_vocab, w, err);
    if (st != SL_OK && err) { /* name the file */
        char tmp[sizeof err->message];
        snprintf(tmp, sizeof tmp, "%s", err->message);
        snprintf(err->message, sizeof err->message, "%.200s: %.300s", dir, tmp);
    }
done:
    json_decref(tok);
    json_decref(cfg);
    free(tmpl);
    free(tp);
    free(cp);
    free(jp);
    return st;
}

struct sl_vocab *sl_vocab_init_from_hf_dir(const char *dir, int32_t n_vocab, sl_error *err) {
    gguf_writer *w = gguf_writer_init();
    void *image = NULL;
    size_t n = 0;
    if (!w) return sl_set_error(err, SL_ERR_NOMEM, "out of memory"), NULL;
    sl_status st = sl_hf_tokenizer_write_dir(dir, n_vocab, w, err);
    if (st == SL_OK) st = gguf_writer_write_memory(w, &image, &n, err);
    gguf_writer_free(w);
    if (st != SL_OK) return NULL;
    gguf_file *f = gguf_open_memory(image, n, err);
    struct sl_vocab *v = f ? sl_vocab_init_from_gguf(f, err) : NULL;
    gguf_close(f);
    free(image);
    return v;
}
