/*
 * test_batch.c — the multi-sequence forward pass (sl_eval_batch): tokens of several sequences,
 * each with its own KV cache and positions, evaluated in one pass.
 *
 * What it checks: three sequences of different lengths fed as a server feeds them — one decode
 * token per generating sequence plus a prompt chunk of a newcomer in the same pass, the batch cut
 * across n_batch — give, for every token, the logits of the same sequence evaluated alone with
 * sl_eval (tolerances per weight type below: float summation order differs between the one-row
 * and the many-row kernels; printed maxdiff), on F32, Q8_0 and Q4_0 tiny models and a Gemma-2
 * fixture with sliding-window layers, with 1, 2 and 3 threads. A pass of a single token is the
 * B = 1 path and equals sl_eval bit for bit. sl_context_seq_keep drops a sequence's tail and
 * re-evaluating it gives the same logits; sl_eval on a multi-sequence context works on sequence 0
 * and leaves the others alone; bad batches (sequence or token out of range, a sequence overflowing
 * its cache, nothing to do) are refused with the context unchanged.
 * What it does not check: speed (bench/serve_bench.sh) or the server (test_server.c).
 */
#include "skipllama.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSEQ 3
#define MAXTOK 40

/* per-sequence token streams: a prompt then continuation tokens (fixed, not sampled, so the
 * batched and the solo runs see the same tokens) */
static const int32_t LEN[NSEQ] = {19, 7, 26};
static const int32_t PROMPT[NSEQ] = {11, 3, 17};

static int32_t tok(int s, int i, int32_t n_vocab) { return (int32_t)((1 + 37 * s + 101 * i + (i * i) % 13) % (n_vocab - 1)) + 1; }

/* logits of every token of sequence s evaluated alone: prompt in one call, then one at a time */
static float *solo(const sl_model *m, int s, int threads, float *out) {
    sl_error err;
    const int32_t V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = threads;
    cp.n_batch = 8;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    int32_t ids[MAXTOK];
    for (int i = 0; i < LEN[s]; i++) ids[i] = tok(s, i, V);
    sl_eval(ctx, ids, PROMPT[s], out, true, &err);
    for (int i = PROMPT[s]; i < LEN[s]; i++) sl_eval(ctx, &ids[i], 1, out + (size_t)i * V, false, &err);
    sl_context_free(ctx);
    return out;
}

/* The server's schedule: each pass has the next token of every sequence past its prompt, then up
 * to `chunk` prompt tokens of the first sequence still in its prompt. Logits of every token. */
static bool batched(const sl_model *m, int threads, int chunk, float *out[NSEQ], int *single_steps, double *single_diff,
                    float *solo_out[NSEQ]) {
    sl_error err;
    const int32_t V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = threads;
    cp.n_batch = 6; /* smaller than some passes: sl_eval_batch cuts them */
    cp.n_seq = NSEQ;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    if (!ctx) {
        printf("  context: %s\n", err.message);
        return false;
    }
    int done[NSEQ] = {0};
    sl_batch_token b[NSEQ + 16];
    int who[NSEQ + 16], idx[NSEQ + 16];
    float *lg = malloc((size_t)(NSEQ + 16) * V * sizeof(float));
    bool ok = true;
    int start[NSEQ] = {0, 2, 5}; /* pass at which each sequence arrives */
    for (int step = 0; ok; step++) {
        int n = 0, prefill = -1;
        for (int s = 0; s < NSEQ; s++) {
            if (step < start[s] || done[s] >= LEN[s]) continue;
            if (done[s] >= PROMPT[s]) {
                who[n] = s, idx[n] = done[s];
                b[n++] = (sl_batch_token){tok(s, done[s], V), s, true};
            } else if (prefill < 0) {
                prefill = s;
            }
        }
        if (prefill >= 0) {
            int s = prefill, k = PROMPT[s] - done[s] < chunk ? PROMPT[s] - done[s] : chunk;
            for (int i = 0; i < k; i++) {
                who[n] = s, idx[n] = done[s] + i;
                b[n++] = (sl_batch_token){tok(s, done[s] + i, V), s, true};
            }
        }
        if (n == 0) {
            bool all = true;
            for (int s = 0; s < NSEQ; s++) all &= done[s] >= LEN[s];
            if (all) break;
            continue;
        }
        if (sl_eval_batch(ctx, b, n, lg, &err) != SL_OK) {
            printf("  eval_batch: %s\n", err.message);
            ok = false;
            break;
        }
        for (int i = 0; i < n; i++) {
            memcpy(out[who[i]] + (size_t)idx[i] * V, lg + (size_t)i * V, (size_t)V * sizeof(float));
            done[who[i]]++;
        }
        if (n == 1) { /* a one-token pass is the B = 1 path: the same floats as sl_eval */
            (*single_steps)++;
            double d = test_maxdiff(lg, solo_out[who[0]] + (size_t)idx[0] * V, (size_t)V);
            if (d > *single_diff) *single_diff = d;
        }
    }
    for (int s = 0; s < NSEQ && ok; s++) ok = sl_context_seq_n_past(ctx, s) == LEN[s];
    free(lg);
    sl_context_free(ctx);
    return ok;
}

static void compare(const char *path, const char *name, double tol) {
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    if (!CHECK(m != NULL, "load %s", path)) return;
    const int32_t V = sl_model_get_config(m)->n_vocab;
    for (int threads = 1; threads <= 3; threads++) {
        float *ref[NSEQ], *got[NSEQ];
        for (int s = 0; s < NSEQ; s++) {
            ref[s] = solo(m, s, threads, malloc((size_t)LEN[s] * V * sizeof(float)));
            got[s] = calloc((size_t)LEN[s] * V, sizeof(float));
        }
        int singles = 0;
        double single_diff = 0.0;
        bool ok = batched(m, threads, 4, got, &singles, &single_diff, ref);
        double maxd = 0.0;
        for (int s = 0; s < NSEQ; s++) {
            double d = test_maxdiff(ref[s], got[s], (size_t)LEN[s] * V);
            if (d > maxd) maxd = d;
        }
        CHECK(ok && maxd <= tol, "%s, %d thread%s: 3 sequences batched == each alone, maxdiff %.2e (tol %.0e)", name, threads,
              threads > 1 ? "s" : "", maxd, tol);
        CHECK(ok && singles > 0 && single_diff == 0.0, "%s, %d thread%s: %d one-token passes equal sl_eval bit for bit (maxdiff %.1e)", name,
              threads, threads > 1 ? "s" : "", singles, single_diff);
        for (int s = 0; s < NSEQ; s++) free(ref[s]), free(got[s]);
    }
    sl_model_free(m);
}

static void test_api(void) {
    sl_error err;
    sl_model *m = sl_model_load("tests/data/tiny-silu.gguf", NULL, &err);
    if (!m) return;
    const int32_t V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 16;
    cp.n_seq = 2;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    if (!CHECK(ctx && sl_context_n_seq(ctx) == 2 && sl_context_seq_n_past(ctx, 1) == 0 && sl_context_seq_n_past(ctx, 2) == -1,
               "a context of 2 sequences")) {
        sl_model_free(m);
        return;
    }
    float *lg = malloc((size_t)8 * V * sizeof(float));
    sl_batch_token b[3] = {{5, 0, true}, {6, 1, true}, {7, 0, true}};
    CHECK(sl_eval_batch(ctx, b, 3, lg, &err) == SL_OK && sl_context_seq_n_past(ctx, 0) == 2 && sl_context_seq_n_past(ctx, 1) == 1,
          "two tokens of sequence 0 and one of 1 in one pass");
    sl_batch_token bad_seq[2] = {{5, 0, false}, {6, 2, false}};
    sl_status st = sl_eval_batch(ctx, bad_seq, 2, NULL, &err);
    CHECK(st == SL_ERR_RANGE && strstr(err.message, "sequence") && sl_context_seq_n_past(ctx, 0) == 2, "sequence 2 is refused (%s)", err.message);
    sl_batch_token bad_tok[1] = {{V, 1, false}};
    CHECK(sl_eval_batch(ctx, bad_tok, 1, NULL, &err) == SL_ERR_RANGE && sl_context_seq_n_past(ctx, 1) == 1, "a token id out of range is refused");
    sl_batch_token many[16];
    for (int i = 0; i < 16; i++) many[i] = (sl_batch_token){9, 1, false}; /* 1 + 16 > 16 */
    CHECK(sl_eval_batch(ctx, many, 16, NULL, &err) == SL_ERR_RANGE && sl_context_seq_n_past(ctx, 1) == 1 && sl_context_seq_n_past(ctx, 0) == 2,
          "a sequence overflowing its 16 tokens is refused, nothing changed (%s)", err.message);
    CHECK(sl_eval_batch(ctx, b, 0, lg, &err) == SL_ERR_INVALID_ARG, "an empty batch is refused");
    CHECK(sl_context_seq_keep(ctx, 0, 3, &err) != SL_OK && sl_context_seq_keep(ctx, 5, 0, &err) != SL_OK, "keep beyond n_past or a bad sequence is refused");
    /* keep the first token of sequence 0, re-evaluate its second: the same logits as before */
    float *first = malloc((size_t)V * sizeof(float));
    memcpy(first, lg + (size_t)2 * V, (size_t)V * sizeof(float)); /* after tokens 5, 7 of sequence 0 */
    sl_batch_token again[1] = {{7, 0, true}};
    bool ok = sl_context_seq_keep(ctx, 0, 1, &err) == SL_OK && sl_context_seq_n_past(ctx, 0) == 1 && sl_eval_batch(ctx, again, 1, lg, &err) == SL_OK;
    double d = test_maxdiff(first, lg, (size_t)V);
    CHECK(ok && d <= 1e-5, "seq_keep then re-evaluating gives the same logits (maxdiff %.1e)", d);
    /* sl_eval works on sequence 0 only */
    int32_t t = 11;
    CHECK(sl_eval(ctx, &t, 1, lg, false, &err) == SL_OK && sl_context_seq_n_past(ctx, 0) == 3 && sl_context_seq_n_past(ctx, 1) == 1 &&
              sl_context_n_past(ctx) == 3,
          "sl_eval appends to sequence 0 and leaves sequence 1 alone");
    sl_context_reset(ctx);
    CHECK(sl_context_seq_n_past(ctx, 0) == 0 && sl_context_seq_n_past(ctx, 1) == 0, "reset empties every sequence");
    cp.n_seq = -1;
    CHECK(sl_context_init(m, &cp, &err) == NULL && err.code == SL_ERR_INVALID_ARG, "n_seq -1 is refused");
    free(first);
    free(lg);
    sl_context_free(ctx);
    sl_model_free(m);
}

int main(void) {
    /* F32: the many-row float kernels cut the sum into chunks (a different order than one row);
     * quantized: the activations are quantized per row (the same bytes), the block sums add in
     * another order. */
    compare("tests/data/tiny-silu.gguf", "tiny F32", 1e-4);
    compare("tests/data/tiny-silu-q8_0.gguf", "tiny Q8_0", 1e-3);
    compare("tests/data/tiny-silu-q4_0.gguf", "tiny Q4_0", 1e-3);
    compare("tests/data/arch/gemma2-swa.gguf", "Gemma-2 sliding window", 1e-4);
    test_api();
    return test_summary();
}
