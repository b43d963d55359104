/*
 * batch_select.c — the accuracy cost of batch selection (sl_batch_select): perplexity of a text
 * decoded NS = 4 sequences at a time (one sl_eval_batch per step, one token of each sequence, as
 * `serve` steps its slots), teacher-forced, for the dense model and, per profile, each policy:
 * every sequence alone (per-token selection, B = 1), `union` (each token its own neurons: the same
 * selection as alone), `shared` (one set per step) and `auto`. Prints, per row, the perplexity,
 * its change against dense, the mean |delta log-prob| of the scored tokens and the mean KL(dense
 * || sparse) per position, the achieved MLP sparsity, the union of the tokens' own selections and
 * the own-mask recall of the shared sets. Not a test (timing and numbers are not asserted); the
 * numbers are in docs/server.md.
 *
 *   build/bench/batch_select MODEL.gguf TEXT PROFILE[,PROFILE...] [SPARSITY] [WINDOWS] [LEN] [UNION_MAX]
 *
 * WINDOWS windows of LEN tokens (default 32 x 128; a multiple of 4) from the start of TEXT, each
 * decoded from an empty cache, every token but the first scored. SPARSITY < 0 keeps the
 * profile's. UNION_MAX: auto's limit (default 0.8).
 */
#include "skipllama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NS = 4 };

typedef struct acc {
    double nll, absd, kl;
    int64_t n;
    int64_t active, neurons, batches, union_own, read, own_kept, own_total;
} acc;

static double log_softmax_at(const float *x, int V, int id, double *lse_out) {
    float mx = x[0];
    for (int i = 1; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - mx);
    const double lse = mx + log(s);
    if (lse_out) *lse_out = lse;
    return (double)x[id] - lse;
}

/* KL(p || q) of two logit rows */
static double kl_rows(const float *p, const float *q, int V) {
    double lp, lq, kl = 0.0;
    log_softmax_at(p, V, 0, &lp);
    log_softmax_at(q, V, 0, &lq);
    for (int i = 0; i < V; i++) {
        const double a = (double)p[i] - lp, b = (double)q[i] - lq;
        kl += exp(a) * (a - b);
    }
    return kl;
}

/* Decode the NS windows w[q][0..len) (alone: one context per sequence, sl_eval), logits to
 * out[(q * len + i) * V]; adds the layer counters to a. */
static int run(sl_model *m, const sl_profile *p, bool alone, int32_t *const *w, int len, float *out, acc *a) {
    const sl_model_config *c = sl_model_get_config(m);
    const size_t V = (size_t)c->n_vocab;
    sl_error err;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = len;
    cp.n_threads = 1;
    cp.n_seq = alone ? 1 : NS;
    sl_context *ctx[NS] = {0};
    float *row = malloc(NS * V * sizeof(float));
    for (int q = 0; q < (alone ? NS : 1); q++) {
        ctx[q] = sl_context_init(m, &cp, &err);
        if (!ctx[q] || (p && sl_context_set_profile(ctx[q], p, false, &err) != SL_OK)) goto fail;
    }
    for (int i = 0; i < len; i++) {
        if (alone) {
            for (int q = 0; q < NS; q++)
                if (sl_eval(ctx[q], &w[q][i], 1, out + ((size_t)q * len + i) * V, false, &err) != SL_OK) goto fail;
        } else {
            sl_batch_token bt[NS];
            for (int q = 0; q < NS; q++) bt[q] = (sl_batch_token){w[q][i], q, true};
            if (sl_eval_batch(ctx[0], bt, NS, row, &err) != SL_OK) goto fail;
            for (int q = 0; q < NS; q++) memcpy(out + ((size_t)q * len + i) * V, row + (size_t)q * V, V * sizeof(float));
        }
    }
    for (int q = 0; q < NS && ctx[q]; q++)
        for (int l = 0; l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx[q], l, &st, &err);
            a->active += st.n_active, a->neurons += st.n_neurons, a->batches += st.n_batches, a->union_own += st.n_union_own;
            a->read += st.n_union, a->own_kept += st.own_kept, a->own_total += st.own_total;
        }
    for (int q = 0; q < NS; q++) sl_context_free(ctx[q]);
    free(row);
    return 0;
fail:
    fprintf(stderr, "batch_select: %s\n", err.message);
    for (int q = 0; q < NS; q++) sl_context_free(ctx[q]);
    free(row);
    return 1;
}

static void score(const float *dense, const float *got, int32_t *const *w, int len, int V, acc *a) {
    for (int q = 0; q < NS; q++)
        for (int i = 0; i + 1 < len; i++) {
            const float *d = dense + ((size_t)q * len + i) * V, *g = got + ((size_t)q * len + i) * V;
            const double lg = log_softmax_at(g, V, w[q][i + 1], NULL), ld = log_softmax_at(d, V, w[q][i + 1], NULL);
            a->nll -= lg;
            a->absd += fabs(lg - ld);
            a->kl += kl_rows(d, g, V);
            a->n++;
        }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf TEXT PROFILE[,PROFILE...] [SPARSITY] [WINDOWS] [LEN] [UNION_MAX]\n", argv[0]);
        return 2;
    }
    const float sparsity = argc > 4 ? strtof(argv[4], NULL) : -1.0f;
    const int n_win = argc > 5 ? atoi(argv[5]) / NS * NS : 32, len = argc > 6 ? atoi(argv[6]) : 128;
    const float umax = argc > 7 ? strtof(argv[7], NULL) : 0.0f;
    if (n_win < NS || len < 2) return fprintf(stderr, "batch_select: WINDOWS >= 4 and LEN >= 2\n"), 2;
    sl_error err;
    sl_model *m = sl_model_load(argv[1], NULL, &err);
    if (!m) return fprintf(stderr, "batch_select: %s\n", err.message), 1;
    const int V = sl_model_get_config(m)->n_vocab;
    FILE *f = fopen(argv[2], "rb");
    if (!f) return fprintf(stderr, "batch_select: cannot open %s\n", argv[2]), 1;
    char *text = malloc(4 << 20);
    const size_t tl = fread(text, 1, (4 << 20) - 1, f);
    fclose(f);
    int32_t *ids = NULL, n_ids = 0;
    if (sl_tokenize(sl_model_get_vocab(m), text, tl, false, false, &ids, &n_ids, &err) != SL_OK)
        return fprintf(stderr, "batch_select: %s\n", err.message), 1;
    free(text);
    if ((int64_t)n_win * len > n_ids) return fprintf(stderr, "batch_select: the text has %d tokens, %d x %d needed\n", n_ids, n_win, len), 1;

    /* rows: dense, then per profile: alone, union, shared, auto */
    enum { MAXP = 4, MODES = 4 };
    sl_profile *prof[MAXP * MODES] = {0};
    char names[MAXP][128];
    int np = 0;
    char *list = strdup(argv[3]);
    for (char *tok = strtok(list, ","); tok && np < MAXP; tok = strtok(NULL, ","), np++) {
        const char *b = strrchr(tok, '/');
        snprintf(names[np], sizeof names[np], "%s", b ? b + 1 : tok);
        for (int k = 0; k < MODES; k++) {
            sl_profile *p = k ? sl_profile_clone(prof[np * MODES], &err) : sl_profile_load(tok, m, &err);
            if (!p || (sparsity >= 0 && sl_profile_set_sparsity(p, sparsity, &err) != SL_OK) ||
                sl_profile_set_batch_select(p, k == 2 ? SL_BATCH_SHARED : k == 3 ? SL_BATCH_AUTO : SL_BATCH_UNION, umax, &err) != SL_OK)
                return fprintf(stderr, "batch_select: %s: %s\n", tok, err.message), 1;
            prof[np * MODES + k] = p;
        }
    }
    free(list);
    const int n_rows = 1 + np * MODES;
    acc *a = calloc((size_t)n_rows, sizeof(acc));
    const size_t per = (size_t)NS * len * V;
    float *dense = malloc(per * sizeof(float)), *got = malloc(per * sizeof(float));
    for (int g = 0; g < n_win / NS; g++) {
        int32_t *w[NS];
        for (int q = 0; q < NS; q++) w[q] = ids + ((size_t)g * NS + q) * len;
        if (run(m, NULL, false, w, len, dense, &a[0])) return 1;
        score(dense, dense, w, len, V, &a[0]);
        for (int r = 1; r < n_rows; r++) {
            if (run(m, prof[r - 1], (r - 1) % MODES == 0, w, len, got, &a[r])) return 1;
            score(dense, got, w, len, V, &a[r]);
        }
        fprintf(stderr, "\r%d/%d windows", (g + 1) * NS, n_win);
    }
    fprintf(stderr, "\n");
    const int I = sl_model_get_config(m)->n_ff;
    const double ppl0 = exp(a[0].nll / a[0].n);
    printf("%s, %d windows x %d tokens (%lld scored), %d sequences decoding together; sparsity %s\n\n", argv[1], n_win, len,
           (long long)a[0].n, NS, sparsity >= 0 ? argv[4] : "the profile's");
    printf("| profile | selection | ppl | vs dense | mean abs dlogprob | mean KL | MLP sparsity | own union / layer | read / layer | own recall |\n");
    printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    static const char *mode[] = {"per token, alone (B = 1)", "union", "shared", "auto"};
    for (int r = 0; r < n_rows; r++) {
        const acc *x = &a[r];
        const double ppl = exp(x->nll / x->n);
        char uo[32] = "—", rd[32] = "—", rec[32] = "—";
        if (x->batches) snprintf(uo, sizeof uo, "%.3f", (double)x->union_own / x->batches / I);
        if (x->batches) snprintf(rd, sizeof rd, "%.3f", (double)x->read / x->batches / I);
        if (x->own_total) snprintf(rec, sizeof rec, "%.3f", (double)x->own_kept / x->own_total);
        printf("| %s | %s | %.4f | %+.2f%% | %.4f | %.5f | %.3f | %s | %s | %s |\n", r ? names[(r - 1) / MODES] : "dense",
               r ? mode[(r - 1) % MODES] : "—", ppl, 100.0 * (ppl / ppl0 - 1.0), x->absd / x->n, x->kl / x->n,
               x->neurons ? 1.0 - (double)x->active / x->neurons : 0.0, uo, rd, rec);
    }
    for (int r = n_rows - 1; r >= 1; r--) sl_profile_free(prof[r - 1]);
    free(a), free(dense), free(got);
    sl_free_tokens(ids);
    sl_model_free(m);
    return 0;
}
