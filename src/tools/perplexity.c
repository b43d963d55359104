/*
 * perplexity.c — perplexity of a token sequence, two ways: sl_perplexity, the method of the
 * fixtures' reference values (consecutive non-overlapping windows, each from an empty cache,
 * every token but the first of a window scored), and sl_perplexity_llama, llama.cpp's
 * llama-perplexity (whole chunks starting with BOS, only the second half of each scored), so
 * that numbers can be compared with its. Both work through sl_eval, so a context with a profile
 * measures the sparse model (with sparse_prefill, each token uses its own mask — the same
 * per-token path as decoding).
 */
#include "model/context.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>

sl_status sl_perplexity(sl_context *ctx, const int32_t *tokens, int64_t n_tokens, int32_t window,
                        void (*progress)(void *ud, int64_t done, int64_t total), void *ud, sl_ppl_result *out, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || !tokens || !out || n_tokens < 2) return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: needs at least 2 tokens");
    if (window < 2 || window > ctx->n_ctx)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: window %d must be in 2..n_ctx (%d)", window, ctx->n_ctx);
    const int32_t V = ctx->model->config.n_vocab;
    float *logits = malloc((size_t)window * (size_t)V * sizeof(float));
    if (!logits) return sl_set_error(err, SL_ERR_NOMEM, "perplexity: cannot allocate %d x %d logits", window, V);
    double sum = 0.0, sq = 0.0;
    int64_t scored = 0;
    int32_t windows = 0;
    sl_status st = SL_OK;
    for (int64_t start = 0; start < n_tokens; start += window) {
        int32_t n = n_tokens - start < window ? (int32_t)(n_tokens - start) : window;
        sl_context_reset(ctx);
        st = sl_eval(ctx, tokens + start, n, logits, true, err);
        if (st) break;
        for (int32_t i = 0; i + 1 < n; i++) {
            const float *row = logits + (size_t)i * V;
            float mx = row[0];
            for (int32_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double z = 0.0;
            for (int32_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
            const double nll = (double)mx + log(z) - (double)row[tokens[start + i + 1]];
            sum += nll;
            sq += nll * nll;
            scored++;
        }
        windows++;
        if (progress) progress(ud, start + n, n_tokens);
    }
    free(logits);
    if (st) return st;
    if (scored == 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: no token could be scored");
    out->nll_mean = sum / (double)scored;
    const double var = sq / (double)scored - out->nll_mean * out->nll_mean;
    out->nll_sd = sqrt(var > 0 ? var : 0);
    out->ppl = exp(out->nll_mean);
    out->n_scored = scored;
    out->n_windows = windows;
    out->ppl_err = scored > 1 ? out->ppl * sqrt((var > 0 ? var : 0) / (double)(scored - 1)) : 0;
    return SL_OK;
}

sl_status sl_perplexity_llama(sl_context *ctx, const int32_t *tokens, int64_t n_tokens, int32_t n_ctx, int32_t bos,
                              int32_t max_chunks, void (*progress)(void *ud, int64_t done, int64_t total), void *ud,
                              sl_ppl_result *out, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || !tokens || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: NULL argument");
    if (n_ctx < 4 || n_ctx > ctx->n_ctx)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: a chunk of %d tokens must be in 4..n_ctx (%d)", n_ctx, ctx->n_ctx);
    if (n_tokens < 2 * (int64_t)n_ctx)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "perplexity: chunks of %d tokens need at least %lld tokens; the text has %lld", n_ctx,
                            2 * (long long)n_ctx, (long long)n_tokens);
    int64_t n_chunk = n_tokens / n_ctx;
    if (max_chunks > 0 && n_chunk > max_chunks) n_chunk = max_chunks;
    const int32_t V = ctx->model->config.n_vocab, first = n_ctx / 2;
    if (bos >= V) return sl_set_error(err, SL_ERR_RANGE, "perplexity: BOS id %d is outside the vocabulary (%d)", bos, V);
    float *logits = malloc((size_t)n_ctx * (size_t)V * sizeof(float));
    int32_t *chunk = malloc((size_t)n_ctx * sizeof(int32_t));
    if (!logits || !chunk) {
        free(logits);
        free(chunk);
        return sl_set_error(err, SL_ERR_NOMEM, "perplexity: cannot allocate %d x %d logits", n_ctx, V);
    }
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    sl_status st = SL_OK;
    for (int64_t i = 0; i < n_chunk && st == SL_OK; i++) {
        const int64_t start = i * n_ctx;
        for (int32_t k = 0; k < n_ctx; k++) chunk[k] = tokens[start + k];
        if (bos >= 0) chunk[0] = bos;
        sl_context_reset(ctx);
        st = sl_eval(ctx, chunk, n_ctx, logits, true, err);
        if (st) break;
        /* positions first .. n_ctx - 2 predict the tokens after them (as llama-perplexity:
         * -log softmax with the exponentials summed in double) */
        for (int32_t j = first; j < n_ctx - 1; j++) {
            const float *row = logits + (size_t)j * V;
            float mx = row[0];
            for (int32_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double z = 0.0;
            for (int32_t v = 0; v < V; v++) z += expf(row[v] - mx);
            const double v = (double)mx + log(z) - (double)row[tokens[start + j + 1]];
            nll += v;
            nll2 += v * v;
            count++;
        }
        if (progress) progress(ud, (i + 1) * n_ctx, n_chunk * n_ctx);
    }
    free(logits);
    free(chunk);
    if (st) return st;
    const double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
    out->nll_mean = mean;
    out->nll_sd = sqrt(var > 0 ? var : 0);
    out->ppl = exp(mean);
    out->ppl_err = count > 1 && var > 0 ? out->ppl * sqrt(var / (double)(count - 1)) : 0;
    out->n_scored = count;
    out->n_windows = (int32_t)n_chunk;
    return SL_OK;
}
