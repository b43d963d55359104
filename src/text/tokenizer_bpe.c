/*
 * tokenizer_bpe.c — byte-level BPE for "gpt2" vocabularies (Llama 3, GPT-2, StarCoder, DeepSeek,
 * Qwen2, SmolLM ...): the regex pre-tokenizers and the rank-driven merges.
 *
 * What it is for: turning one fragment of raw text (no special tokens in it) into ids exactly as
 * llama.cpp's llm_tokenizer_bpe does. The text is split into pre-tokens by the list of regexes
 * that tokenizer.ggml.pre selects — each regex is applied to every piece left by the previous one,
 * and the text between matches is kept as pieces too — then every pre-token is mapped byte by
 * byte to the GPT-2 printable alphabet and merged pair by pair, lowest merge rank first (ties:
 * leftmost). Regexes run on PCRE2 (UTF mode) so \p{L}, \p{N}, \p{P}... follow the Unicode tables
 * of a maintained library; "whitespace" is spelled out as the Unicode White_Space set that
 * llama.cpp uses, and `\s+$` is done in C (PCRE2's `$` also matches before a final newline, and a
 * long non-trailing whitespace run would make it quadratic).
 * What it is not: HF's other pre-tokenizer kinds (Metaspace, ByteLevel without regex ...) or the
 * Gemma-4 style BPE without byte encoding; unknown tokenizer.ggml.pre names are refused at load.
 *
 * Invalid UTF-8: each byte that does not start a valid sequence becomes U+FFFD before splitting
 * (llama.cpp's unicode_cpts_from_utf8); overlong forms are re-encoded shortest (as llama.cpp);
 * surrogates and code points above U+10FFFF, which llama.cpp cannot encode, also become U+FFFD.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/bpe.h"

#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* Unicode White_Space (the set llama.cpp's unicode_set_whitespace holds), as class members. */
#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define S_ "[" WS "]"
#define NOT_S "[^" WS "]"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) (the final |\s+
 * of the HF regex is not needed: text between matches is kept anyway) */
static const char re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S_ "+(?!" NOT_S ")";

/* Llama 3 (tiktoken cl100k style), contractions matched case-insensitively. */
static const char re_llama3[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                "\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NOT_S ")|" S_ "+";

/* Qwen2: as Llama 3 but single digits. */
static const char re_qwen2[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                               "\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NOT_S ")|" S_ "+";

static const char re_digit[] = "\\p{N}";
static const char re_digits[] = "\\p{N}+";
static const char re_digits3[] = "\\p{N}{1,3}";
static const char re_ascii3[] = "[0-9][0-9][0-9]";
static const char re_newline[] = "[\\r\\n]";
static const char re_punct_default[] = "[\\p{P}\\$\\+<=>\\^~\\|]+";
static const char re_punct_falcon[] = "[\\p{P}\\$\\+<=>\\^~\\|`]+";

/* DeepSeek LLM: cased letters (Lu/Ll/Lt, written out as DeepSeek's tokenizer.json does), then
 * ASCII and full-width punctuation, then CJK/Hangul runs. llama.cpp runs these literal-range
 * regexes on text where every non-ASCII whitespace character was replaced by \v, so whitespace
 * never matches a range: U+3000 is left out of the punctuation class, and U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F and U+3000 out of the U+0800-U+4E00 range. */
static const char re_ds_letters[] =
    S_ "?["
    "\\x{0041}-\\x{005A}\\x{0061}-\\x{007A}\\x{00B5}\\x{00C0}-\\x{00D6}\\x{00D8}-\\x{00F6}"
    "\\x{00F8}-\\x{01BA}\\x{01BC}-\\x{01BF}\\x{01C4}-\\x{0293}\\x{0295}-\\x{02AF}"
    "\\x{0370}-\\x{0373}\\x{0376}-\\x{0377}\\x{037B}-\\x{037D}\\x{037F}\\x{0386}"
    "\\x{0388}-\\x{038A}\\x{038C}\\x{038E}-\\x{03A1}\\x{03A3}-\\x{03F5}\\x{03F7}-\\x{0481}"
    "\\x{048A}-\\x{052F}\\x{0531}-\\x{0556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
    "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
    "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
    "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}"
    "\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}-\\x{2184}"
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}-\\x{2CF3}"
    "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"
    "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
    "\\x{1E900}-\\x{1E943}]+";
static const char re_ds_punct[] =
    S_ "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+";
static const char re_ds_cjk[] = "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}"
                                "\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}"
                                "\\x{AC00}-\\x{D7FF}]+";

/* DeepSeek Coder */
static const char re_dsc_letters[] = S_ "?\\p{L}+";
static const char re_dsc_punct[] = S_ "?\\p{P}+";

/* DeepSeek V3. llama.cpp runs the last regex on its "collapsed" text, whose ASCII symbol class
 * lacks '~'; the ~ special cases reproduce that. */
static const char re_ds3_cjk[] = "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+";
static const char re_ds3_main[] = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                                  "(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+|"
                                  " ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NOT_S ")|" S_ "+";

/* BLOOM / Poro / GPT3-Finnish */
static const char re_bloom[] = " ?[^(" WS "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+";

#define STEP_TRAILING_WS ((const char *)1) /* the built-in `\s+$` step */

sl_status sl_bpe_init_pre(struct sl_vocab *v, sl_error *err) {
    const char *steps[SL_MAX_SPLIT_STEPS] = {0};
    int n = 0;
    switch (v->pre) {
    case SL_PRE_LLAMA3:
    case SL_PRE_CHATGLM4: steps[n++] = re_llama3; break;
    case SL_PRE_GPT2: steps[n++] = re_gpt2; break;
    case SL_PRE_STARCODER:
        steps[n++] = re_digit;
        steps[n++] = re_gpt2;
        break;
    case SL_PRE_DEEPSEEK_LLM:
        steps[n++] = re_newline;
        steps[n++] = re_ds_letters;
        steps[n++] = re_ds_punct;
        steps[n++] = STEP_TRAILING_WS;
        steps[n++] = re_ds_cjk;
        steps[n++] = re_digits;
        break;
    case SL_PRE_DEEPSEEK_CODER:
        steps[n++] = re_newline;
        steps[n++] = re_dsc_letters;
        steps[n++] = re_dsc_punct;
        steps[n++] = re_ds_cjk;
        steps[n++] = re_digit;
        break;
    case SL_PRE_DEEPSEEK3:
        steps[n++] = re_digits3;
        steps[n++] = re_ds3_cjk;
        steps[n++] = re_ds3_main;
        break;
    case SL_PRE_QWEN2: steps[n++] = re_qwen2; break;
    case SL_PRE_FALCON:
        steps[n++] = re_punct_falcon;
        steps[n++] = re_gpt2;
        steps[n++] = re_ascii3;
        break;
    case SL_PRE_BLOOM: steps[n++] = re_bloom; break;
    case SL_PRE_DEFAULT:
    default:
        steps[n++] = re_punct_default;
        steps[n++] = re_gpt2;
        steps[n++] = re_digits;
        steps[n++] = re_ascii3;
        break;
    }
    for (int i = 0; i < n; i++) {
        sl_split_step *s = &v->steps[v->n_steps];
        if (steps[i] == STEP_TRAILING_WS) {
            s->code = NULL;
            s->builtin = 1;
            v->n_steps++;
            continue;
        }
        int errcode;
        PCRE2_SIZE erroff;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)steps[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &errcode,
                                         &erroff, NULL);
        if (!code) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(errcode, msg, sizeof msg);
            return sl_set_error(err, SL_ERR_UNSUPPORTED, "pre-tokenizer regex %d does not compile at %zu: %s", i,
                                (size_t)erroff, (const char *)msg);
        }
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional: matching falls back to the interpreter */
        s->code = code;
        s->builtin = 0;
        v->n_steps++;
    }
    return SL_OK;
}

void sl_bpe_free_pre(struct sl_vocab *v) {
    for (int i = 0; i < v->n_steps; i++)
        if (v->steps[i].code) pcre2_code_free((pcre2_code *)v->steps[i].code);
    v->n_steps = 0;
}

/* ---- UTF-8 clean-up ------------------------------------------------------------------------- */

static size_t utf8_encode(uint32_t cpt, char *out) {
    if (cpt < 0x80) {
        out[0] = (char)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        out[0] = (char)(0xC0 | (cpt >> 6));
        out[1] = (char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt < 0x10000) {
        out[0] = (char)(0xE0 | (cpt >> 12));
        out[1] = (char)(0x80 | ((cpt >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cpt >> 18));
    out[1] = (char)(0x80 | ((cpt >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cpt >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cpt & 0x3F));
    return 4;
}

/* Decode one character for the BPE path; returns bytes consumed and the code point to use
 * (U+FFFD for anything llama.cpp would not turn into a valid character). */
static size_t next_cpt(const uint8_t *s, size_t n, uint32_t *cpt) {
    size_t k = sl_utf8_decode(s, n, cpt);
    if (k == 0) {
        *cpt = 0xFFFD;
        return 1;
    }
    if ((*cpt >= 0xD800 && *cpt <= 0xDFFF) || *cpt > 0x10FFFF) *cpt = 0xFFFD;
    return k;
}

/* If text is not canonical UTF-8, write the cleaned copy into *out (malloc'd) and return its
 * length; *out stays NULL when the text can be used as it is. (size_t)-1 on allocation failure. */
static size_t utf8_clean(const char *text, size_t len, char **out) {
    *out = NULL;
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    char tmp[4];
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cpt;
        size_t k = next_cpt(s + i, len - i, &cpt);
        if (utf8_encode(cpt, tmp) != k || memcmp(tmp, s + i, k) != 0) break;
        i += k;
    }
    if (i == len) return len;
    size_t cap; /* every byte can grow to 3 (U+FFFD) */
    if (sl_mul_overflow(len, 3, &cap)) return (size_t)-1;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) return (size_t)-1;
    memcpy(buf, text, i);
    size_t o = i;
    while (i < len) {
        uint32_t cpt;
        size_t k = next_cpt(s + i, len - i, &cpt);
        o += utf8_encode(cpt, buf + o);
        i += k;
    }
    *out = buf;
    return o;
}

/* ---- splitting ------------------------------------------------------------------------------ */

typedef struct span {
    size_t off; /* start in the cleaned text */
    size_t len; /* bytes */
} span;

typedef struct span_list {
    span *data; /* entries (malloc'd) */
    size_t n;   /* used */
    size_t cap; /* allocated */
} span_list;

static bool spans_push(span_list *l, size_t off, size_t len) {
    if (len == 0) return true;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        span *p = realloc(l->data, nc * sizeof *p);
        if (!p) return false;
        l->data = p;
        l->cap = nc;
    }
    l->data[l->n++] = (span){off, len};
    return true;
}

static bool is_ws_cpt(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Start of the whitespace run that ends the piece (== len when there is none). The text is
 * valid UTF-8 here, so stepping back over continuation bytes finds each character. */
static size_t trailing_ws_start(const char *p, size_t len) {
    size_t end = len;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((uint8_t)p[st] & 0xC0) == 0x80) st--;
        uint32_t c;
        if (!sl_utf8_decode((const uint8_t *)p + st, end - st, &c) || !is_ws_cpt(c)) break;
        end = st;
    }
    return end;
}

/* Split one piece with one regex: matches and the text between them all become pieces. */
static sl_status split_regex(const pcre2_code *code, pcre2_match_data *md, const char *text, span piece,
                             span_list *out, sl_error *err) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + piece.off);
    size_t off = 0, last = 0;
    while (off < piece.len) {
        int rc = pcre2_match(code, subj, piece.len, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter has no such limit */
            rc = pcre2_match(code, subj, piece.len, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sl_set_error(err, SL_ERR_RANGE, "pre-tokenizer regex failed on a piece of %zu bytes: %s",
                                piece.len, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e <= s) { /* an empty match cannot split anything: step over one character */
            off = s + sl_utf8_len(subj[s]);
            continue;
        }
        if (s > last && !spans_push(out, piece.off + last, s - last)) goto nomem;
        if (!spans_push(out, piece.off + s, e - s)) goto nomem;
        last = off = e;
    }
    if (last < piece.len && !spans_push(out, piece.off + last, piece.len - last)) goto nomem;
    return SL_OK;
nomem:
    return sl_set_error(err, SL_ERR_NOMEM, "out of memory splitting text");
}

/* ---- merges --------------------------------------------------------------------------------- */

typedef struct bpe_symbol {
    int32_t prev;   /* previous live symbol, -1 at the start */
    int32_t next;   /* next live symbol, -1 at the end */
    uint32_t start; /* byte offset in the encoded word */
    uint32_t n;     /* bytes; 0 once merged into its left neighbour */
} bpe_symbol;

typedef struct bpe_bigram {
    int32_t rank;  /* merge rank: lower merges first */
    int32_t left;  /* left symbol */
    int32_t right; /* right symbol */
    uint32_t size; /* bytes of the pair when pushed (detects stale entries) */
} bpe_bigram;

typedef struct bpe_work {
    char *word;         /* the GPT-2-encoded pre-token */
    size_t cap_word;    /* allocated bytes */
    bpe_symbol *sym;    /* symbols of word */
    size_t cap_sym;     /* allocated symbols */
    bpe_bigram *heap;   /* min-heap of candidate merges */
    size_t n_heap;      /* entries */
    size_t cap_heap;    /* allocated entries */
} bpe_work;

static inline bool bpe_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool bpe_push(bpe_work *w, bpe_bigram b) {
    if (w->n_heap == w->cap_heap) {
        size_t nc = w->cap_heap ? w->cap_heap * 2 : 64;
        bpe_bigram *p = realloc(w->heap, nc * sizeof *p);
        if (!p) return false;
        w->heap = p;
        w->cap_heap = nc;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_before(&b, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
    return true;
}

static bpe_bigram bpe_pop(bpe_work *w) {
    bpe_bigram top = w->heap[0];
    bpe_bigram last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bpe_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static bool bpe_add(const struct sl_vocab *v, bpe_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const bpe_symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t rank = sl_vocab_merge_rank(v, w->word + l->start, l->n, w->word + r->start, r->n);
    if (rank < 0) return true;
    return bpe_push(w, (bpe_bigram){rank, left, right, l->n + r->n});
}

/* Encode and merge one pre-token, appending its ids. */
static bool bpe_word(const struct sl_vocab *v, bpe_work *w, const char *p, size_t len, sl_ids *out) {
    if (len > (size_t)INT32_MAX / 2) return false;
    size_t need = 2 * len;
    if (need > w->cap_word) {
        char *nw = realloc(w->word, need);
        if (!nw) return false;
        w->word = nw;
        w->cap_word = need;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += sl_gpt2_byte_to_utf8((uint8_t)p[i], w->word + n);

    int32_t whole = sl_vocab_lookup(v, w->word, n);
    if (whole >= 0 && (v->ignore_merges || len == 1)) return sl_ids_push(out, whole);

    if (len > w->cap_sym) {
        bpe_symbol *ns = realloc(w->sym, len * sizeof *ns);
        if (!ns) return false;
        w->sym = ns;
        w->cap_sym = len;
    }
    int32_t n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t l = sl_utf8_len((uint8_t)w->word[off]);
        if (l > n - off) l = n - off;
        w->sym[n_sym] = (bpe_symbol){n_sym - 1, off + l == n ? -1 : n_sym + 1, (uint32_t)off, (uint32_t)l};
        n_sym++;
        off += l;
    }
    w->n_heap = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!bpe_add(v, w, i - 1, i)) return false;
    while (w->n_heap > 0) {
        bpe_bigram b = bpe_pop(w);
        bpe_symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->next != b.right || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        if (!bpe_add(v, w, l->prev, b.left) || !bpe_add(v, w, b.left, l->next)) return false;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const bpe_symbol *y = &w->sym[i];
        int32_t id = sl_vocab_lookup(v, w->word + y->start, y->n);
        if (id >= 0) {
            if (!sl_ids_push(out, id)) return false;
            continue;
        }
        /* not a token: each byte of the encoded text that is a token by itself (llama.cpp) */
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t b = sl_vocab_lookup(v, w->word + y->start + j, 1);
            if (b >= 0 && !sl_ids_push(out, b)) return false;
        }
    }
    return true;
}

sl_status sl_bpe_tokenize(const struct sl_vocab *v, const char *text, size_t len, sl_ids *out, sl_error *err) {
    if (len == 0) return SL_OK;
    char *clean = NULL;
    size_t clen = utf8_clean(text, len, &clean);
    if (clen == (size_t)-1) return sl_set_error(err, SL_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    const char *t = clean ? clean : text;

    sl_status st = SL_OK;
    span_list a = {0}, b = {0};
    bpe_work w = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!md || !spans_push(&a, 0, clen)) goto nomem;
    for (int s = 0; s < v->n_steps; s++) {
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (v->steps[s].builtin) {
                size_t ws = trailing_ws_start(t + a.data[i].off, a.data[i].len);
                if (!spans_push(&b, a.data[i].off, ws) ||
                    !spans_push(&b, a.data[i].off + ws, a.data[i].len - ws))
                    goto nomem;
            } else {
                st = split_regex((const pcre2_code *)v->steps[s].code, md, t, a.data[i], &b, err);
                if (st != SL_OK) goto done;
            }
        }
        span_list tmp = a;
        a = b;
        b = tmp;
    }
    for (size_t i = 0; i < a.n; i++)
        if (!bpe_word(v, &w, t + a.data[i].off, a.data[i].len, out)) goto nomem;
    goto done;
nomem:
    st = sl_set_error(err, SL_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
done:
    pcre2_match_data_free(md);
    free(a.data);
    free(b.data);
    free(w.word);
    free(w.sym);
    free(w.heap);
    free(clean);
    return st;
}
