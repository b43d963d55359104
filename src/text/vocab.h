/*
 * vocab.h — the vocabulary (internal): the data the tokenizer front (tokenizer.c), the
 * SentencePiece and BPE algorithms (tokenizer_spm.c, tokenizer_bpe.c) and the chat templates
 * read, and the helpers they share.
 *
 * What it is for: one in-memory copy of the `tokenizer.ggml.*` metadata of a GGUF file (token
 * texts, scores, types, merges, special ids, flags) with the lookup tables the tokenizers need
 * (text -> id, merge pair -> rank, special-token trie, decoded pieces), built once and then
 * read-only, so one vocabulary can serve any number of threads. The behaviour follows
 * llama.cpp's llama-vocab.cpp token for token: SentencePiece-style score merges ("llama" model,
 * SPM) and byte-level BPE with regex pre-tokenizers ("gpt2" model, BPE).
 * What it is not: a general HF `tokenizers` port — WordPiece, Unigram and RWKV vocabularies are
 * reported as unsupported, and per-token lstrip/rstrip attributes (phi-3 style) are not applied.
 */
#ifndef SL_TEXT_VOCAB_H
#define SL_TEXT_VOCAB_H

#include "format/gguf.h"
#include "skipllama.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token attribute bits (llama.cpp's llama_token_attr values, so behaviour maps one to one). */
enum {
    SL_ATTR_UNDEFINED = 0,
    SL_ATTR_UNKNOWN = 1 << 0,
    SL_ATTR_UNUSED = 1 << 1,
    SL_ATTR_NORMAL = 1 << 2,
    SL_ATTR_CONTROL = 1 << 3,
    SL_ATTR_USER_DEFINED = 1 << 4,
    SL_ATTR_BYTE = 1 << 5,
};

/* Pre-tokenizer families: each selects a list of split steps (see tokenizer_bpe.c). */
typedef enum sl_pre_type {
    SL_PRE_DEFAULT = 0,   /* "default" or missing: punctuation, GPT-2 regex, digits */
    SL_PRE_LLAMA3,        /* "llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "dbrx", "smaug-bpe" */
    SL_PRE_GPT2,          /* "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-*"... */
    SL_PRE_STARCODER,     /* "starcoder", "smollm", "refact", "command-r", "codeshell", "exaone", "minerva-7b" */
    SL_PRE_DEEPSEEK_LLM,  /* "deepseek-llm" */
    SL_PRE_DEEPSEEK_CODER,/* "deepseek-coder" */
    SL_PRE_DEEPSEEK3,     /* "deepseek-v3" */
    SL_PRE_QWEN2,         /* "qwen2", "stablelm2", "deepseek-r1-qwen", "megrez" */
    SL_PRE_FALCON,        /* "falcon" */
    SL_PRE_CHATGLM4,      /* "chatglm-bpe", "glm4" */
    SL_PRE_BLOOM,         /* "bloom", "poro-chat", "gpt3-finnish" */
} sl_pre_type;

/* One vocabulary entry. */
typedef struct sl_token_data {
    const char *text; /* token text bytes (not NUL-terminated), inside sl_vocab.text_buf */
    uint32_t len;     /* bytes of text */
    float score;      /* SPM merge priority (log-probability); 0 when the file has none */
    uint32_t attr;    /* SL_ATTR_* bits */
} sl_token_data;

/* One BPE merge "A B": rank = its index in tokenizer.ggml.merges. */
typedef struct sl_merge {
    const char *left;  /* A, inside sl_vocab.merge_buf */
    const char *right; /* B, inside sl_vocab.merge_buf */
    uint32_t left_len; /* bytes of A */
    uint32_t right_len;/* bytes of B */
} sl_merge;

/* A byte trie over the special tokens, used to cut them out of raw text. */
typedef struct sl_trie_node {
    int32_t first_child;  /* index of the first child node, -1 when none */
    int32_t next_sibling; /* index of the next node with the same parent, -1 when none */
    int32_t token;        /* special token ending exactly here, -1 when none */
    uint8_t byte;         /* the byte on the edge from the parent */
} sl_trie_node;

/* A compiled pre-tokenizer step: a PCRE2 regex (pcre2_code*), or a built-in rule. */
typedef struct sl_split_step {
    void *code;       /* pcre2_code_8* (NULL for built-in steps) */
    int builtin;      /* 0 = regex; 1 = "trailing whitespace of the piece" (\s+$) */
} sl_split_step;

#define SL_MAX_SPLIT_STEPS 8

struct sl_vocab {
    sl_vocab_type type;       /* SL_VOCAB_SPM or SL_VOCAB_BPE */
    sl_pre_type pre;          /* BPE pre-tokenizer family (SPM: SL_PRE_DEFAULT) */
    char model_name[32];      /* tokenizer.ggml.model, e.g. "llama", "gpt2" */
    char pre_name[64];        /* tokenizer.ggml.pre ("" when absent) */

    int32_t n_tokens;         /* vocabulary size */
    sl_token_data *tokens;    /* [n_tokens] */
    char *text_buf;           /* all token texts back to back (owned) */

    /* text -> id: open addressing, slot holds id + 1 (0 = empty). */
    uint32_t *tok_slots;      /* [tok_cap] */
    size_t tok_cap;           /* power of two */

    /* (A, B) -> rank, BPE only; slot holds rank + 1 (0 = empty). */
    int32_t n_merges;         /* merges kept */
    sl_merge *merges;         /* [n_merges] */
    char *merge_buf;          /* merge texts (owned) */
    uint32_t *merge_slots;    /* [merge_cap] */
    size_t merge_cap;         /* power of two (0 when no merges) */

    /* special ids; -1 = none */
    int32_t bos, eos, eot, eom, unk, sep, pad;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;

    bool add_bos;             /* the model wants BOS in front of a prompt (add_bos_token or the type's default) */
    bool add_eos;             /* tokenizer.ggml.add_eos_token */
    bool add_space_prefix;    /* SPM: prefix raw text with a space (removed again when decoding) */
    bool ignore_merges;       /* BPE: a pre-token that is itself a token skips the merges (llama3) */
    bool clean_spaces;        /* decode: HF clean_up_tokenization_spaces (" ," -> ",") */
    bool spm_word_split;      /* SPM: no token has "▁" inside it after a non-"▁" byte, so merges never
                                 cross such a "▁" and words can be merged one at a time */

    int32_t byte_token[256];  /* SPM: <0xXX> token per byte; BPE: token of the byte's GPT-2 char; -1 = none */

    char warnings[512];       /* load-time problems that were worked around, one per line ("" = none) */

    int32_t *eog;             /* sorted ids that end generation */
    int32_t n_eog;            /* entries in eog */

    /* special tokens (CONTROL | USER_DEFINED | UNKNOWN) for cutting them out of text */
    int32_t n_special;        /* number of special tokens */
    int32_t *special_rank;    /* [n_tokens]: matching priority (0 = longest text first), -1 = not special */
    sl_trie_node *trie;       /* trie nodes; node 0 is the root */
    int32_t n_trie;           /* nodes in use */
    int32_t trie_root[256];   /* child of the root for each first byte, -1 = none (fast path) */
    int32_t max_special_len;  /* longest special token text in bytes */

    /* decoded piece of every token, rendered as with special = true (llama.cpp's piece cache) */
    char *piece_buf;          /* all pieces back to back (owned) */
    uint32_t *piece_off;      /* [n_tokens + 1] offsets into piece_buf */

    /* BPE pre-tokenizer */
    int n_steps;                             /* split steps in use */
    sl_split_step steps[SL_MAX_SPLIT_STEPS]; /* applied in order, each to every piece so far */

    char *chat_template;      /* tokenizer.chat_template, NUL-terminated (owned), or NULL */
};

/* The tables of a vocabulary from the metadata of an open GGUF file (vocab_load.c), without the
 * BPE pre-tokenizer (the front, sl_vocab_init_from_gguf in tokenizer.c, compiles it). Returns NULL
 * with err->code == SL_OK when the file has no `tokenizer.ggml.model`; NULL with an error when the
 * tokenizer metadata is malformed or of an unsupported kind. The result does not reference the
 * file. Free with sl_vocab_free_tables (no pre-tokenizer) or sl_vocab_free. */
struct sl_vocab *sl_vocab_load_tables(const gguf_file *f, sl_error *err);
void sl_vocab_free_tables(struct sl_vocab *vocab);

/* qsort/bsearch comparison of int32_t. */
int sl_cmp_i32(const void *a, const void *b);

/* ---- shared helpers (vocab.c) --------------------------------------------------------------- */

/* ---- hashing (the lookup tables: built in vocab_load.c, probed in vocab.c) ----------------- */

#define FNV_SEED 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* FNV alone keeps poor low bits for short keys; a final mix spreads them over the table index. */
static inline uint64_t hash_finish(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash_pair(const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = hash_bytes(FNV_SEED, a, na);
    h ^= (uint64_t)na + 0x9e37u; /* the split point is part of the key: "ab"+"c" != "a"+"bc" */
    h *= FNV_PRIME;
    return hash_finish(hash_bytes(h, b, nb));
}

static inline size_t table_size_for(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1; /* load factor <= 0.5 keeps probe chains short */
    return cap;
}

/* Exact text lookup: token id or -1. */
int32_t sl_vocab_lookup(const struct sl_vocab *vocab, const char *text, size_t len);
/* BPE merge rank of (left, right), or -1. */
int32_t sl_vocab_merge_rank(const struct sl_vocab *vocab, const char *left, size_t left_len, const char *right,
                            size_t right_len);

/* A growable list of token ids. */
typedef struct sl_ids {
    int32_t *data; /* entries (malloc'd) */
    size_t n;      /* used */
    size_t cap;    /* allocated */
} sl_ids;

/* Append one id; false when out of memory. */
bool sl_ids_push(sl_ids *ids, int32_t id);

/* Bytes of the UTF-8 sequence that starts with lead byte c, from its top four bits alone, as
 * llama.cpp's unicode_len_utf8 (continuation or invalid bytes count as 1). */
static inline size_t sl_utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Decode one code point the way llama.cpp's unicode_cpt_from_utf8 does (the lead byte decides the
 * length, continuation bytes are checked, overlong forms and surrogates are not). Returns the
 * bytes used (n >= 1 required), or 0 when the sequence is invalid. */
size_t sl_utf8_decode(const uint8_t *s, size_t n, uint32_t *cpt);

/* GPT-2 byte <-> unicode mapping: UTF-8 of the character that stands for byte b (1 or 2 bytes,
 * written to out; returns the length), and the byte a code point stands for (-1 when none). */
size_t sl_gpt2_byte_to_utf8(uint8_t b, char out[2]);
int sl_gpt2_cpt_to_byte(uint32_t cpt);

#endif
