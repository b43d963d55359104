/*
 * tokenizer_spm.c — SentencePiece-style BPE for "llama" vocabularies (Llama 1/2, Mistral, the
 * tiny fixtures).
 *
 * What it is for: turning one fragment of raw text (no special tokens in it) into ids exactly as
 * llama.cpp's llm_tokenizer_spm does: spaces become "▁" (and a "▁" is put in front when the caller
 * asks), the text is cut into UTF-8 characters, and adjacent symbols are merged greedily, always
 * taking the pair whose merged text is the vocabulary token with the highest score (ties: the
 * leftmost pair). Symbols left that are not tokens are emitted as <0xXX> byte tokens. A
 * vocabulary that carries merges (converted from a Hugging Face tokenizer.json) merges the pair
 * of lowest merge rank instead, as Hugging Face's BPE with byte fallback does.
 * What it is not: a Unigram (Viterbi) SentencePiece model — "t5"-style vocabularies are refused at
 * load time.
 *
 * Cost: O(n log n) in the fragment length — one heap entry per candidate pair, stale entries are
 * skipped when popped — so a 1 MB prompt takes a fraction of a second.
 */
#include "text/spm.h"

#include "util/util.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_symbol {
    int32_t prev;   /* previous live symbol, -1 at the start */
    int32_t next;   /* next live symbol, -1 at the end */
    uint32_t start; /* byte offset in the escaped text */
    uint32_t n;     /* bytes; 0 once merged into its left neighbour */
} spm_symbol;

typedef struct spm_bigram {
    float score;   /* score of the merged token */
    int32_t left;  /* left symbol */
    int32_t right; /* right symbol */
    uint32_t size; /* bytes of the merged text when pushed (detects stale entries) */
} spm_bigram;

typedef struct spm_state {
    const struct sl_vocab *vocab; /* tokenizer */
    const char *text;             /* escaped text */
    spm_symbol *sym;              /* symbols */
    spm_bigram *heap;             /* max-heap of candidate merges */
    size_t n_heap;                /* entries in heap */
    size_t cap_heap;              /* allocated entries */
} spm_state;

/* a goes before b: higher score first, then the leftmost pair */
static inline bool bigram_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(spm_state *s, spm_bigram b) {
    if (s->n_heap == s->cap_heap) {
        size_t nc = s->cap_heap ? s->cap_heap * 2 : 256;
        spm_bigram *p = realloc(s->heap, nc * sizeof *p);
        if (!p) return false;
        s->heap = p;
        s->cap_heap = nc;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
    return true;
}

static spm_bigram heap_pop(spm_state *s) {
    spm_bigram top = s->heap[0];
    spm_bigram last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Queue the merge of left and right if their concatenation is a token. */
static bool try_add_bigram(spm_state *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const spm_symbol *l = &s->sym[left], *r = &s->sym[right];
    uint32_t size = l->n + r->n;
    if (s->vocab->n_merges > 0) { /* merges given (from a tokenizer.json): the lowest rank first */
        int32_t rank = sl_vocab_merge_rank(s->vocab, s->text + l->start, l->n, s->text + r->start, r->n);
        return rank < 0 || heap_push(s, (spm_bigram){-(float)rank, left, right, size});
    }
    int32_t id = sl_vocab_lookup(s->vocab, s->text + l->start, size);
    if (id < 0) return true;
    return heap_push(s, (spm_bigram){s->vocab->tokens[id].score, left, right, size});
}

sl_status sl_spm_tokenize(const struct sl_vocab *v, const char *text, size_t len, bool add_prefix, sl_ids *out,
                          sl_error *err) {
    /* escape: optional leading space, then every ' ' -> "▁" (3 bytes) */
    size_t spaces = add_prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t n = len + (add_prefix ? 1 : 0) + 2 * spaces;
    if (n == 0) return SL_OK;
    if (n > UINT32_MAX) return sl_set_error(err, SL_ERR_RANGE, "text fragment of %zu bytes is too long", len);
    char *buf = malloc(n);
    spm_symbol *sym = malloc(n * sizeof *sym);
    spm_state s = {v, buf, sym, NULL, 0, 0};
    sl_status st = SL_OK;
    if (!buf || !sym) goto nomem;
    size_t k = 0;
    if (add_prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            buf[k++] = text[i];
        }
    }

    /* one symbol per UTF-8 character, its length taken from the lead byte alone (as llama.cpp) */
    int32_t n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t l = sl_utf8_len((uint8_t)buf[off]);
        if (l > n - off) l = n - off;
        sym[n_sym] = (spm_symbol){n_sym - 1, off + l == n ? -1 : n_sym + 1, (uint32_t)off, (uint32_t)l};
        n_sym++;
        off += l;
    }
    /* Merge region by region. A region boundary is a "▁" symbol whose left neighbour does not end
     * in "▁"; when no token has such a "▁" inside it (v->spm_word_split, checked at load), no merge
     * can cross the boundary, and merging each region on its own performs the same merges in the
     * same relative order as one heap over the whole text -- but with small, cache-friendly heaps.
     * Without that guarantee the whole fragment is one region. */
    for (int32_t a = 0; a < n_sym;) {
        int32_t b = a + 1;
        if (v->spm_word_split) {
            while (b < n_sym && !(sym[b].n == 3 && memcmp(buf + sym[b].start, "\xE2\x96\x81", 3) == 0 &&
                                  !(sym[b - 1].n >= 3 && memcmp(buf + sym[b - 1].start + sym[b - 1].n - 3,
                                                                "\xE2\x96\x81", 3) == 0)))
                b++;
        } else {
            b = n_sym;
        }
        for (int32_t i = a + 1; i < b; i++)
            if (!try_add_bigram(&s, i - 1, i)) goto nomem;
        while (s.n_heap > 0) {
            spm_bigram g = heap_pop(&s);
            spm_symbol *l = &sym[g.left], *r = &sym[g.right];
            if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; /* stale */
            l->n += r->n;
            r->n = 0;
            l->next = r->next;
            if (r->next >= 0) sym[r->next].prev = g.left;
            if (!try_add_bigram(&s, l->prev, g.left) || !try_add_bigram(&s, g.left, l->next)) goto nomem;
        }
        a = b;
    }

    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const spm_symbol *y = &sym[i];
        int32_t id = sl_vocab_lookup(v, buf + y->start, y->n);
        if (id >= 0) {
            if (!sl_ids_push(out, id)) goto nomem;
            continue;
        }
        /* not a token: one byte token per byte (the unknown token when the vocabulary has no byte
         * tokens; llama.cpp would abort there) */
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t b = v->byte_token[(uint8_t)buf[y->start + j]];
            if (b < 0) b = v->unk;
            if (b >= 0 && !sl_ids_push(out, b)) goto nomem;
        }
    }
    goto done;
nomem:
    st = sl_set_error(err, SL_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
done:
    free(buf);
    free(sym);
    free(s.heap);
    return st;
}
