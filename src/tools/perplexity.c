/*
 * perplexity.c — perplexity of a token sequence, the method of llama.cpp's llama-perplexity and
 * of the fixtures' reference values: consecutive non-overlapping windows, each from an empty
 * cache, every token but the first of a window scored. Works through sl_eval, so a context with
 * a profile measures the sparse model (with sparse_prefill, each token uses its own mask —
 * the same per-token path as decoding).
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
    return SL_OK;
}
