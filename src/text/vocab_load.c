/*
 * vocab_load.c — building a vocabulary from the `tokenizer.ggml.*` metadata of a GGUF file: token
 * texts, scores and types copied out of the file, the hash tables, BPE merges, special ids and
 * end-of-generation set (with llama.cpp's name-based fallbacks), the special-token trie and the
 * decoded piece of every token. Every count and length is checked before anything is allocated.
 * What it is not: the pre-tokenizer set-up (tokenizer_bpe.c), which the front (tokenizer.c) runs
 * after the tables are built.
 */
#include "text/vocab.h"

#include "util/strbuf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pieces ------------------------------------------------------------------------------------ */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token: the hex digits at offset 3 (strtol-like: stops at a non-digit). */
static uint8_t byte_token_value(const sl_token_data *t) {
    int v = 0;
    for (uint32_t i = 3; i < 5 && i < t->len; i++) {
        int h = hexval(t->text[i]);
        if (h < 0) break;
        v = v * 16 + h;
    }
    return (uint8_t)v;
}

/* Append the piece of token t rendered with special = true (llama.cpp's token_to_piece). */
static bool piece_render(const struct sl_vocab *v, const sl_token_data *t, strbuf *out) {
    if (t->attr & (SL_ATTR_UNKNOWN | SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED)) return sb_append(out, t->text, t->len);
    if (t->attr & SL_ATTR_NORMAL) {
        if (v->type == SL_VOCAB_SPM) {
            /* "▁" (E2 96 81) stands for a space */
            for (uint32_t i = 0; i < t->len;) {
                if (i + 3 <= t->len && memcmp(t->text + i, "\xE2\x96\x81", 3) == 0) {
                    if (!sb_append(out, " ", 1)) return false;
                    i += 3;
                } else {
                    if (!sb_append(out, t->text + i, 1)) return false;
                    i++;
                }
            }
            return true;
        }
        /* BPE: every character of the text stands for one byte (GPT-2 mapping). A character
         * outside the mapping is rendered as llama.cpp does: "[UNK_BYTE_0x<hex>" + text + "]". */
        const uint8_t *s = (const uint8_t *)t->text;
        for (size_t i = 0; i < t->len;) {
            uint32_t cpt;
            size_t k = sl_utf8_decode(s + i, t->len - i, &cpt);
            if (!k) {
                k = 1;
                cpt = 0xFFFD;
            }
            int b = sl_gpt2_cpt_to_byte(cpt);
            if (b >= 0) {
                char c = (char)b;
                if (!sb_append(out, &c, 1)) return false;
            } else {
                char hex[16];
                if (!sb_append(out, "[UNK_BYTE_0x", 12)) return false;
                for (size_t j = 0; j < k; j++) {
                    snprintf(hex, sizeof hex, "%02x", s[i + j]);
                    if (!sb_append(out, hex, 2)) return false;
                }
                if (!sb_append(out, t->text, t->len) || !sb_append(out, "]", 1)) return false;
            }
            i += k;
        }
        return true;
    }
    if (t->attr & SL_ATTR_BYTE) {
        char c = (char)byte_token_value(t);
        return sb_append(out, &c, 1);
    }
    return true; /* UNUSED / UNDEFINED: empty */
}

/* ---- loading ----------------------------------------------------------------------------------- */

typedef struct pre_entry {
    const char *name;   /* tokenizer.ggml.pre value */
    sl_pre_type pre;    /* family */
    int clean_spaces;   /* 1 / 0 */
    int ignore_merges;  /* 1 / 0 */
    int add_bos;        /* default add_bos (before tokenizer.ggml.add_bos_token) */
} pre_entry;

/* The pre-tokenizer names llama.cpp knows, with the flags it sets for each. */
static const pre_entry pre_table[] = {
    {"default", SL_PRE_DEFAULT, 1, 0, 0},
    {"llama3", SL_PRE_LLAMA3, 1, 1, 1},
    {"llama-v3", SL_PRE_LLAMA3, 1, 1, 1},
    {"llama-bpe", SL_PRE_LLAMA3, 1, 1, 1},
    {"falcon3", SL_PRE_LLAMA3, 1, 1, 1},
    {"falcon-h1", SL_PRE_LLAMA3, 1, 1, 1},
    {"pixtral", SL_PRE_LLAMA3, 1, 1, 1},
    {"midm-2.0", SL_PRE_LLAMA3, 1, 1, 1},
    {"lfm2", SL_PRE_LLAMA3, 1, 1, 1},
    {"dbrx", SL_PRE_LLAMA3, 1, 0, 0},
    {"smaug-bpe", SL_PRE_LLAMA3, 1, 0, 0},
    {"deepseek-llm", SL_PRE_DEEPSEEK_LLM, 0, 0, 0},
    {"deepseek-coder", SL_PRE_DEEPSEEK_CODER, 0, 0, 0},
    {"deepseek-v3", SL_PRE_DEEPSEEK3, 0, 0, 0},
    {"falcon", SL_PRE_FALCON, 1, 0, 0},
    {"mpt", SL_PRE_GPT2, 1, 0, 0},
    {"starcoder", SL_PRE_STARCODER, 1, 0, 0},
    {"gpt-2", SL_PRE_GPT2, 1, 0, 0},
    {"phi-2", SL_PRE_GPT2, 1, 0, 0},
    {"jina-es", SL_PRE_GPT2, 1, 0, 0},
    {"jina-de", SL_PRE_GPT2, 1, 0, 0},
    {"gigachat", SL_PRE_GPT2, 1, 0, 0},
    {"jina-v2-es", SL_PRE_GPT2, 1, 0, 0},
    {"jina-v2-de", SL_PRE_GPT2, 1, 0, 0},
    {"a.x-4.0", SL_PRE_GPT2, 1, 0, 0},
    {"mellum", SL_PRE_GPT2, 1, 0, 0},
    {"modern-bert", SL_PRE_GPT2, 1, 0, 0},
    {"jina-v1-en", SL_PRE_GPT2, 1, 0, 0},
    {"jina-v2-code", SL_PRE_GPT2, 1, 0, 0},
    {"roberta-bpe", SL_PRE_GPT2, 1, 0, 0},
    {"refact", SL_PRE_STARCODER, 1, 0, 0},
    {"command-r", SL_PRE_STARCODER, 0, 0, 0},
    {"qwen2", SL_PRE_QWEN2, 0, 0, 0},
    {"deepseek-r1-qwen", SL_PRE_QWEN2, 0, 0, 0},
    {"kormo", SL_PRE_QWEN2, 0, 0, 0},
    {"f2llmv2", SL_PRE_QWEN2, 0, 0, 0},
    {"stablelm2", SL_PRE_QWEN2, 1, 0, 0},
    {"megrez", SL_PRE_QWEN2, 1, 0, 0},
    {"olmo", SL_PRE_GPT2, 1, 0, 0},
    {"poro-chat", SL_PRE_BLOOM, 0, 0, 0},
    {"bloom", SL_PRE_BLOOM, 1, 0, 0},
    {"gpt3-finnish", SL_PRE_BLOOM, 1, 0, 0},
    {"glm4", SL_PRE_CHATGLM4, 1, 0, 0},
    {"chatglm-bpe", SL_PRE_CHATGLM4, 1, 0, 0},
    {"jais", SL_PRE_GPT2, 1, 0, 0},
    {"smollm", SL_PRE_STARCODER, 0, 0, 0},
    {"codeshell", SL_PRE_STARCODER, 1, 0, 0},
    {"exaone", SL_PRE_STARCODER, 1, 0, 0},
    {"exaone4", SL_PRE_GPT2, 1, 0, 0},
    {"minerva-7b", SL_PRE_STARCODER, 1, 0, 0},
    {"mellum2", SL_PRE_STARCODER, 1, 0, 0},
    {"trillion", SL_PRE_GPT2, 0, 0, 0},
    {"granite-docling", SL_PRE_GPT2, 0, 0, 0},
};

/* Token texts llama.cpp uses to find special tokens the metadata does not name. */
static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                        "<end_of_utterance>", NULL};
static const char *const eom_names[] = {"<|eom_id|>", NULL};
static const char *const fim_pre_names[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                            "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const fim_suf_names[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>",
                                            "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const fim_mid_names[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                            "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const fim_pad_names[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const fim_rep_names[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
                                            NULL};
static const char *const fim_sep_names[] = {"<|file_sep|>", NULL};
static const char *const eog_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                        "<turn|>", "<|tool_response>",
                                        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                        "[e~[", NULL};

static int32_t lookup_cstr(const struct sl_vocab *v, const char *s) { return sl_vocab_lookup(v, s, strlen(s)); }

/* If *id is unset, take the first name in the list that is a token, and make it a control token. */
static void detect_special(struct sl_vocab *v, int32_t *id, const char *const *names) {
    if (*id >= 0) return;
    for (int i = 0; names[i]; i++) {
        int32_t t = lookup_cstr(v, names[i]);
        if (t >= 0) {
            *id = t;
            v->tokens[t].attr |= SL_ATTR_CONTROL;
            return;
        }
    }
}


static bool eog_contains(const struct sl_vocab *v, int32_t id) {
    for (int32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return true;
    return false;
}

static bool eog_add(struct sl_vocab *v, int32_t id, int32_t *cap) {
    if (id < 0 || id >= v->n_tokens || eog_contains(v, id)) return true;
    if (v->n_eog == *cap) {
        int32_t nc = *cap ? *cap * 2 : 16;
        int32_t *p = realloc(v->eog, (size_t)nc * sizeof(int32_t));
        if (!p) return false;
        v->eog = p;
        *cap = nc;
    }
    v->eog[v->n_eog++] = id;
    return true;
}

static void eog_remove(struct sl_vocab *v, int32_t id) {
    for (int32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) {
            v->eog[i] = v->eog[--v->n_eog];
            return;
        }
}

/* Read an optional special-token id key; a value outside the vocabulary is ignored, with a warning
 * (as llama.cpp's loader does: "bad special token"). */
static void read_special_id(struct sl_vocab *vb, const gguf_file *f, const char *key, int32_t *id, int32_t n_tokens) {
    if (*id >= n_tokens) *id = -1; /* a default that does not exist is disabled */
    uint32_t v;
    if (!gguf_get_u32(f, key, &v)) return;
    if (v < (uint32_t)n_tokens) {
        *id = (int32_t)v;
        return;
    }
    size_t k = strlen(vb->warnings);
    snprintf(vb->warnings + k, sizeof vb->warnings - k, "%s = %u is outside the %d-token vocabulary: ignored%s\n", key, v, n_tokens,
             *id >= 0 ? " (the default id is used)" : "");
}

/* Sort key of a special token: longest text first (as llama.cpp's special-token cache), then id. */
typedef struct special_key {
    uint32_t len; /* text length */
    int32_t id;   /* token id */
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static sl_status build_special(struct sl_vocab *v, sl_error *err) {
    const uint32_t mask = SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED | SL_ATTR_UNKNOWN;
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) n += (v->tokens[i].attr & mask) != 0;
    v->special_rank = malloc((size_t)v->n_tokens * sizeof(int32_t));
    special_key *keys = malloc((size_t)(n ? n : 1) * sizeof(special_key));
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!v->special_rank || !ids || !keys) {
        free(ids);
        free(keys);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory building the special-token table");
    }
    n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        v->special_rank[i] = -1;
        if (v->tokens[i].attr & mask) keys[n++] = (special_key){v->tokens[i].len, i};
    }
    qsort(keys, (size_t)n, sizeof(special_key), cmp_special);
    for (int32_t r = 0; r < n; r++) ids[r] = keys[r].id;
    free(keys);
    size_t total = 1;
    for (int32_t r = 0; r < n; r++) {
        v->special_rank[ids[r]] = r;
        total += v->tokens[ids[r]].len;
        if ((int32_t)v->tokens[ids[r]].len > v->max_special_len) v->max_special_len = (int32_t)v->tokens[ids[r]].len;
    }
    v->n_special = n;
    if (total > INT32_MAX) {
        free(ids);
        return sl_set_error(err, SL_ERR_FORMAT, "special tokens too long");
    }
    v->trie = malloc(total * sizeof(sl_trie_node));
    if (!v->trie) {
        free(ids);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory building the special-token trie");
    }
    for (int b = 0; b < 256; b++) v->trie_root[b] = -1;
    v->trie[0] = (sl_trie_node){-1, -1, -1, 0};
    v->n_trie = 1;
    for (int32_t r = 0; r < n; r++) {
        const sl_token_data *t = &v->tokens[ids[r]];
        int32_t node = 0;
        for (uint32_t k = 0; k < t->len; k++) {
            uint8_t c = (uint8_t)t->text[k];
            int32_t child = v->trie[node].first_child;
            while (child >= 0 && v->trie[child].byte != c) child = v->trie[child].next_sibling;
            if (child < 0) {
                child = v->n_trie++;
                v->trie[child] = (sl_trie_node){-1, v->trie[node].first_child, -1, c};
                v->trie[node].first_child = child;
                if (node == 0) v->trie_root[c] = child;
            }
            node = child;
        }
        if (v->trie[node].token < 0) v->trie[node].token = ids[r];
    }
    free(ids);
    return SL_OK;
}

static sl_status build_pieces(struct sl_vocab *v, sl_error *err) {
    strbuf b = {0};
    v->piece_off = malloc(((size_t)v->n_tokens + 1) * sizeof(uint32_t));
    if (!v->piece_off) return sl_set_error(err, SL_ERR_NOMEM, "out of memory building token pieces");
    for (int32_t i = 0; i < v->n_tokens; i++) {
        v->piece_off[i] = (uint32_t)b.n;
        if (!piece_render(v, &v->tokens[i], &b) || b.n > UINT32_MAX - 64) {
            free(b.data);
            return sl_set_error(err, SL_ERR_NOMEM, "out of memory building token pieces");
        }
    }
    v->piece_off[v->n_tokens] = (uint32_t)b.n;
    if (!b.data && !(b.data = malloc(1))) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    v->piece_buf = b.data;
    return SL_OK;
}

static sl_status load_merges(struct sl_vocab *v, const gguf_file *f, sl_error *err) {
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (!kv) return sl_set_error(err, SL_ERR_FORMAT, "gpt2 tokenizer without tokenizer.ggml.merges");
    const gguf_array *a = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING);
    if (!a) return sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.merges must be an array of strings");
    if (a->n > INT32_MAX / 4) return sl_set_error(err, SL_ERR_FORMAT, "too many merges (%llu)", (unsigned long long)a->n);
    size_t bytes = 1;
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->strs[i].len > UINT32_MAX / 2 || sl_add_overflow(bytes, (size_t)a->strs[i].len, &bytes))
            return sl_set_error(err, SL_ERR_FORMAT, "merge %llu too long", (unsigned long long)i);
    }
    v->merge_buf = malloc(bytes);
    v->merges = malloc((size_t)(a->n ? a->n : 1) * sizeof(sl_merge));
    v->merge_cap = table_size_for((size_t)a->n);
    v->merge_slots = calloc(v->merge_cap, sizeof(uint32_t));
    if (!v->merge_buf || !v->merges || !v->merge_slots)
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory loading %llu merges", (unsigned long long)a->n);
    size_t off = 0;
    int32_t n = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        const gguf_str *s = &a->strs[i];
        /* "A B": the first space from index 1 on splits (so a merge may start with a space) */
        size_t sp = 0;
        for (size_t k = 1; k < s->len; k++)
            if (s->data[k] == ' ') {
                sp = k;
                break;
            }
        char *dst = v->merge_buf + off;
        if (s->len) memcpy(dst, s->data, s->len);
        off += s->len;
        /* keep the rank = position in the file even for merges we cannot use, so ranks match */
        sl_merge m;
        if (sp) {
            m = (sl_merge){dst, dst + sp + 1, (uint32_t)sp, (uint32_t)(s->len - sp - 1)};
        } else {
            m = (sl_merge){dst, dst, 0, UINT32_MAX}; /* never matches: right_len is impossible */
        }
        v->merges[n] = m;
        if (sp) {
            size_t mask = v->merge_cap - 1;
            size_t h = hash_pair(m.left, m.left_len, m.right, m.right_len) & mask;
            bool dup = false;
            while (v->merge_slots[h]) {
                const sl_merge *o = &v->merges[v->merge_slots[h] - 1];
                if (o->left_len == m.left_len && o->right_len == m.right_len &&
                    memcmp(o->left, m.left, m.left_len) == 0 && memcmp(o->right, m.right, m.right_len) == 0) {
                    dup = true; /* llama.cpp keeps the first (lowest) rank */
                    break;
                }
                h = (h + 1) & mask;
            }
            if (!dup) v->merge_slots[h] = (uint32_t)n + 1;
        }
        n++;
    }
    v->n_merges = n;
    return SL_OK;
}

struct sl_vocab *sl_vocab_load_tables(const gguf_file *f, sl_error *err) {
    sl_clear_error(err);
    if (!f) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "no GGUF file");
        return NULL;
    }
    const gguf_kv *model_kv = gguf_find_kv(f, "tokenizer.ggml.model");
    if (!model_kv) return NULL; /* no tokenizer: not an error */
    gguf_str model;
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model)) {
        sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.model must be a string");
        return NULL;
    }
    if (gguf_str_eq(model, "no_vocab") || gguf_str_eq(model, "none")) return NULL;

    struct sl_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    gguf_str_copy(model, v->model_name, sizeof v->model_name);
    sl_status st = SL_OK;

    if (gguf_str_eq(model, "llama")) {
        v->type = SL_VOCAB_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
        v->clean_spaces = false;
    } else if (gguf_str_eq(model, "gpt2")) {
        v->type = SL_VOCAB_BPE;
        v->bos = 11; /* llama.cpp's defaults for BPE files that do not name them */
        v->eos = 11;
        v->unk = -1;
        v->clean_spaces = true;
    } else {
        char name[64];
        sl_set_error(err, SL_ERR_UNSUPPORTED,
                     "tokenizer model '%s' is not supported (supported: 'llama' SentencePiece, 'gpt2' BPE)",
                     gguf_str_copy(model, name, sizeof name));
        free(v);
        return NULL;
    }
    v->eot = v->eom = v->sep = v->pad = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;

    gguf_str pre;
    bool has_pre = gguf_get_str(f, "tokenizer.ggml.pre", &pre);
    if (has_pre) gguf_str_copy(pre, v->pre_name, sizeof v->pre_name);
    if (v->type == SL_VOCAB_BPE) {
        v->pre = SL_PRE_DEFAULT;
        if (has_pre && pre.len > 0) {
            const pre_entry *e = NULL;
            for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++)
                if (gguf_str_eq(pre, pre_table[i].name)) e = &pre_table[i];
            if (!e) {
                sl_set_error(err, SL_ERR_UNSUPPORTED, "unknown pre-tokenizer type '%s'", v->pre_name);
                goto fail;
            }
            v->pre = e->pre;
            v->clean_spaces = e->clean_spaces;
            v->ignore_merges = e->ignore_merges;
            v->add_bos = e->add_bos;
            if (e->pre == SL_PRE_CHATGLM4) v->bos = -1;
        }
    }
    gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);

    /* tokens */
    const gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    if (!toks) {
        sl_set_error(err, SL_ERR_FORMAT, "%s", gguf_find_kv(f, "tokenizer.ggml.tokens")
                                                     ? "tokenizer.ggml.tokens must be an array of strings"
                                                     : "tokenizer.ggml.tokens is missing");
        goto fail;
    }
    if (toks->n == 0 || toks->n > (uint64_t)INT32_MAX / 2) {
        sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)toks->n);
        goto fail;
    }
    v->n_tokens = (int32_t)toks->n;
    const gguf_kv *scores_kv = gguf_find_kv(f, "tokenizer.ggml.scores");
    const gguf_array *scores = NULL;
    if (scores_kv) {
        scores = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_COUNT);
        if (!scores || (scores->elem_type != GGUF_TYPE_FLOAT32 && scores->elem_type != GGUF_TYPE_INT32)) {
            sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.scores must be an array of f32 or i32");
            goto fail;
        }
        if (scores->n < toks->n) {
            sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries for %d tokens",
                         (unsigned long long)scores->n, v->n_tokens);
            goto fail;
        }
    }
    const gguf_array *types = NULL;
    if (gguf_find_kv(f, "tokenizer.ggml.token_type")) {
        types = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
        if (!types) {
            sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.token_type must be an array of i32");
            goto fail;
        }
        if (types->n < toks->n) {
            sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                         (unsigned long long)types->n, v->n_tokens);
            goto fail;
        }
    }

    size_t text_bytes = 1;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t l = toks->strs[i].len ? (size_t)toks->strs[i].len : 24; /* room for "[EMPTY_<id>]" */
        if (toks->strs[i].len > UINT32_MAX / 2 || sl_add_overflow(text_bytes, l, &text_bytes)) {
            sl_set_error(err, SL_ERR_FORMAT, "token %d is too long", i);
            goto fail;
        }
    }
    v->tokens = calloc((size_t)v->n_tokens, sizeof(sl_token_data));
    v->text_buf = malloc(text_bytes);
    v->tok_cap = table_size_for((size_t)v->n_tokens);
    v->tok_slots = calloc(v->tok_cap, sizeof(uint32_t));
    if (!v->tokens || !v->text_buf || !v->tok_slots) {
        sl_set_error(err, SL_ERR_NOMEM, "out of memory loading %d tokens", v->n_tokens);
        goto fail;
    }
    size_t off = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        sl_token_data *t = &v->tokens[i];
        char *dst = v->text_buf + off;
        if (toks->strs[i].len) {
            memcpy(dst, toks->strs[i].data, toks->strs[i].len);
            t->len = (uint32_t)toks->strs[i].len;
        } else {
            t->len = (uint32_t)snprintf(dst, 24, "[EMPTY_%d]", i); /* as llama.cpp names empty tokens */
        }
        t->text = dst;
        off += t->len;
        t->score = 0.0f;
        if (scores) t->score = scores->elem_type == GGUF_TYPE_FLOAT32 ? gguf_arr_f32(scores, (uint64_t)i)
                                                                      : (float)gguf_arr_int(scores, (uint64_t)i);
        t->attr = SL_ATTR_NORMAL;
        if (types) {
            switch (gguf_arr_int(types, (uint64_t)i)) {
            case 1: t->attr = SL_ATTR_NORMAL; break;
            case 2: t->attr = SL_ATTR_UNKNOWN; break;
            case 3: t->attr = SL_ATTR_CONTROL; break;
            case 4: t->attr = SL_ATTR_USER_DEFINED; break;
            case 5: t->attr = SL_ATTR_UNUSED; break;
            case 6: t->attr = SL_ATTR_BYTE; break;
            default: t->attr = SL_ATTR_UNDEFINED; break;
            }
        }
        size_t mask = v->tok_cap - 1;
        size_t h = hash_finish(hash_bytes(FNV_SEED, t->text, t->len)) & mask;
        while (v->tok_slots[h]) {
            const sl_token_data *o = &v->tokens[v->tok_slots[h] - 1];
            if (o->len == t->len && memcmp(o->text, t->text, t->len) == 0) {
                sl_set_error(err, SL_ERR_FORMAT, "duplicate token in vocabulary: ids %u and %d have the same text",
                             v->tok_slots[h] - 1, i);
                goto fail;
            }
            h = (h + 1) & mask;
        }
        v->tok_slots[h] = (uint32_t)i + 1;
    }

    /* BPE needs its merges; a SentencePiece vocabulary may carry them too (one converted from a
     * Hugging Face tokenizer.json, text/hf_tokenizer.c): it then merges by rank, as HF does */
    if ((v->type == SL_VOCAB_BPE || gguf_find_kv(f, "tokenizer.ggml.merges")) && (st = load_merges(v, f, err)) != SL_OK) goto fail;
    if (v->type == SL_VOCAB_SPM && v->n_merges > (1 << 24)) { /* ranks must stay exact as float merge priorities */
        sl_set_error(err, SL_ERR_FORMAT, "a SentencePiece vocabulary with %d merges (at most 2^24)", v->n_merges);
        goto fail;
    }

    /* special ids */
    read_special_id(v, f, "tokenizer.ggml.bos_token_id", &v->bos, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.eos_token_id", &v->eos, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.eot_token_id", &v->eot, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.eom_token_id", &v->eom, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.unknown_token_id", &v->unk, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.seperator_token_id", &v->sep, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.padding_token_id", &v->pad, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_pre_token_id", &v->fim_pre, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_suf_token_id", &v->fim_suf, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_mid_token_id", &v->fim_mid, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_pad_token_id", &v->fim_pad, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_rep_token_id", &v->fim_rep, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.fim_sep_token_id", &v->fim_sep, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.prefix_token_id", &v->fim_pre, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.suffix_token_id", &v->fim_suf, v->n_tokens);
    read_special_id(v, f, "tokenizer.ggml.middle_token_id", &v->fim_mid, v->n_tokens);
    gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &v->add_bos);
    gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &v->add_eos);
    if (v->add_bos && v->bos < 0) {
        sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.add_bos_token is true but there is no BOS token");
        goto fail;
    }
    if (v->add_eos && v->eos < 0) {
        sl_set_error(err, SL_ERR_FORMAT, "tokenizer.ggml.add_eos_token is true but there is no EOS token");
        goto fail;
    }

    /* special tokens found by their text */
    detect_special(v, &v->eot, eot_names);
    detect_special(v, &v->eom, eom_names);
    detect_special(v, &v->fim_pre, fim_pre_names);
    detect_special(v, &v->fim_suf, fim_suf_names);
    detect_special(v, &v->fim_mid, fim_mid_names);
    detect_special(v, &v->fim_pad, fim_pad_names);
    detect_special(v, &v->fim_rep, fim_rep_names);
    detect_special(v, &v->fim_sep, fim_sep_names);
    for (int32_t i = 0; i < v->n_tokens; i++) {
        sl_token_data *t = &v->tokens[i];
        if ((t->attr & SL_ATTR_CONTROL) && memmem(t->text, t->len, "unused", 6)) t->attr |= SL_ATTR_UNUSED;
    }

    /* end-of-generation set */
    {
        int32_t cap = 0;
        bool ok = eog_add(v, v->fim_pad, &cap) && eog_add(v, v->fim_rep, &cap) && eog_add(v, v->fim_sep, &cap);
        for (int i = 0; ok && eog_names[i]; i++) {
            int32_t t = lookup_cstr(v, eog_names[i]);
            if (t >= 0) {
                ok = eog_add(v, t, &cap);
                v->tokens[t].attr |= SL_ATTR_CONTROL;
            }
        }
        for (int i = 0; i < 4; i++) { /* gpt-oss: these are rendered, not control */
            static const char *const user_names[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
            int32_t t = lookup_cstr(v, user_names[i]);
            if (t >= 0) v->tokens[t].attr = SL_ATTR_USER_DEFINED;
        }
        ok = ok && eog_add(v, v->eos, &cap) && eog_add(v, v->eot, &cap) && eog_add(v, v->eom, &cap);
        if (!ok) {
            sl_set_error(err, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        /* o200k_harmony / solar-open: "<|end|>" ends a message, not the generation */
        int32_t t_return = lookup_cstr(v, "<|return|>"), t_call = lookup_cstr(v, "<|call|>");
        int32_t t_calls = lookup_cstr(v, "<|calls|>"), t_flush = lookup_cstr(v, "<|flush|>");
        int32_t t_end = lookup_cstr(v, "<|end|>");
        bool has_call = eog_contains(v, t_call) || eog_contains(v, t_calls);
        if (t_end >= 0 && eog_contains(v, t_end) &&
            ((eog_contains(v, t_return) && has_call) || (has_call && eog_contains(v, t_flush)))) {
            eog_remove(v, t_end);
            v->tokens[t_end].attr = SL_ATTR_USER_DEFINED;
        }
        /* gemma4 / paddleocr: "</s>" is not an end token there */
        int32_t t_tool = lookup_cstr(v, "<|tool_response>"), t_s = lookup_cstr(v, "</s>");
        if (t_tool >= 0 && t_s >= 0 && eog_contains(v, t_tool) && eog_contains(v, t_s)) {
            eog_remove(v, t_s);
            v->tokens[t_s].attr = SL_ATTR_NORMAL;
        }
        if (v->n_eog > 1) qsort(v->eog, (size_t)v->n_eog, sizeof(int32_t), sl_cmp_i32);
    }

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id;
        if (v->type == SL_VOCAB_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = lookup_cstr(v, buf);
            if (id < 0) {
                char c = (char)b;
                id = sl_vocab_lookup(v, &c, 1);
            }
        } else {
            size_t n = sl_gpt2_byte_to_utf8((uint8_t)b, buf);
            id = sl_vocab_lookup(v, buf, n);
        }
        v->byte_token[b] = id;
    }

    if (v->type == SL_VOCAB_SPM) {
        v->spm_word_split = true;
        for (int32_t i = 0; i < v->n_tokens && v->spm_word_split; i++) {
            const sl_token_data *t = &v->tokens[i];
            for (uint32_t k = 1; k + 3 <= t->len; k++) {
                if (memcmp(t->text + k, "\xE2\x96\x81", 3) != 0) continue;
                if (k >= 3 && memcmp(t->text + k - 3, "\xE2\x96\x81", 3) == 0) continue;
                v->spm_word_split = false; /* e.g. "a▁b": merges may cross word starts */
                break;
            }
        }
    }

    if ((st = build_special(v, err)) != SL_OK) goto fail;
    if ((st = build_pieces(v, err)) != SL_OK) goto fail;

    gguf_str tmpl;
    if (gguf_get_str(f, "tokenizer.chat_template", &tmpl)) {
        v->chat_template = malloc((size_t)tmpl.len + 1);
        if (!v->chat_template) {
            sl_set_error(err, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(v->chat_template, tmpl.data, (size_t)tmpl.len);
        v->chat_template[tmpl.len] = 0;
    }

    return v;

fail:
    (void)st;
    sl_vocab_free_tables(v);
    return NULL;
}

void sl_vocab_free_tables(struct sl_vocab *v) {
    if (!v) return;
    free(v->tokens);
    free(v->text_buf);
    free(v->tok_slots);
    free(v->merges);
    free(v->merge_buf);
    free(v->merge_slots);
    free(v->eog);
    free(v->special_rank);
    free(v->trie);
    free(v->piece_buf);
    free(v->piece_off);
    free(v->chat_template);
    free(v);
}
