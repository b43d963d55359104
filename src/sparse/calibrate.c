/*
 * calibrate.c — training-free sparsity thresholds (CATS): run the dense model over a text,
 * record per layer the distribution of |act(gate . x)| over all tokens and neurons, and set each
 * layer's threshold to the quantile that skips the requested fraction of neurons.
 *
 * The distribution is kept as a log-scale histogram (SUBBINS bins per octave, ~0.5% relative
 * resolution), so memory stays constant however long the text is; quantiles interpolate inside
 * a bin. What it is not: predictor training (predictor_train.c) — no labels, no learning.
 */
#include "kernels/activation.h"
#include "model/context.h"
#include "sparse/profile.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OCTAVE_MIN (-48) /* |a| below 2^-48 counts as zero */
#define OCTAVE_MAX 32    /* |a| above 2^32 lands in the last bin */
#define SUBBINS 128
#define N_BINS ((OCTAVE_MAX - OCTAVE_MIN) * SUBBINS)

typedef struct layer_hist {
    uint64_t zero;          /* |a| < 2^OCTAVE_MIN */
    uint64_t bins[N_BINS];  /* log2|a| histogram */
    uint64_t n;             /* values recorded */
    uint64_t nonpos;        /* gate pre-activations <= 0 */
} layer_hist;

typedef struct calib_state {
    layer_hist *hist;       /* [n_layer] */
    sl_activation act;      /* model activation */
} calib_state;

static void record(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff) {
    calib_state *s = ud;
    layer_hist *h = &s->hist[layer];
    const size_t n = (size_t)B * (size_t)n_ff;
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        h->nonpos += g <= 0.0f;
        const float a = fabsf(sl_activate(s->act, g));
        if (!(a >= ldexpf(1.0f, OCTAVE_MIN))) {
            h->zero++;
            continue;
        }
        int bin = (int)floorf((log2f(a) - (float)OCTAVE_MIN) * SUBBINS);
        if (bin >= N_BINS) bin = N_BINS - 1;
        h->bins[bin]++;
    }
    h->n += n;
}

/* The value below which a fraction q of the recorded |a| fall. */
static float hist_quantile(const layer_hist *h, double q) {
    if (h->n == 0) return NAN;
    double target = q * (double)h->n;
    if (target <= (double)h->zero) return 0.0f;
    double cum = (double)h->zero;
    for (int b = 0; b < N_BINS; b++) {
        if (cum + (double)h->bins[b] >= target) {
            double frac = h->bins[b] ? (target - cum) / (double)h->bins[b] : 0.0;
            return exp2f((float)(OCTAVE_MIN + (b + frac) / SUBBINS));
        }
        cum += (double)h->bins[b];
    }
    return exp2f((float)OCTAVE_MAX);
}

sl_calibrate_params sl_calibrate_default_params(void) {
    sl_calibrate_params p;
    memset(&p, 0, sizeof(p));
    p.sparsity = 0.5f;
    return p;
}

sl_status sl_calibrate(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_calibrate_params *params,
                       sl_profile **out, sl_error *err) {
    sl_clear_error(err);
    *out = NULL;
    sl_calibrate_params p = params ? *params : sl_calibrate_default_params();
    if (!model || !model->layers || !tokens || n_tokens < 2)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate: needs a model and at least 2 tokens");
    const sl_model_config *c = &model->config;
    if (!(p.sparsity >= 0.0f) || p.sparsity >= 1.0f)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate: sparsity %g outside [0, 1)", (double)p.sparsity);
    for (int l = 0; p.layer_sparsity && l < c->n_layer; l++)
        if (!(p.layer_sparsity[l] < 1.0f))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "calibrate: layer %d sparsity %g must be < 1 (negative = dense)", l,
                                (double)p.layer_sparsity[l]);
    int32_t window = p.n_ctx > 0 ? p.n_ctx : (c->n_ctx_train < 512 ? c->n_ctx_train : 512);
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = p.n_threads;
    cp.n_batch = window < 64 ? window : 64;
    sl_context *ctx = sl_context_init(model, &cp, err);
    if (!ctx) return err ? err->code : SL_ERR_NOMEM;
    calib_state st = {calloc((size_t)c->n_layer, sizeof(layer_hist)), c->act};
    sl_profile *prof = sl_profile_init(model, err);
    if (!st.hist || !prof) {
        sl_context_free(ctx);
        free(st.hist);
        sl_profile_free(prof);
        return sl_set_error(err, SL_ERR_NOMEM, "calibrate: out of memory");
    }
    ctx->mlp_hook = record;
    ctx->mlp_hook_ud = &st;
    sl_status status = SL_OK;
    for (int64_t done = 0; done < n_tokens;) {
        int32_t n = n_tokens - done < window ? (int32_t)(n_tokens - done) : window;
        sl_context_reset(ctx);
        status = sl_eval(ctx, tokens + done, n, NULL, false, err);
        if (status) break;
        done += n;
        if (p.progress) p.progress(p.progress_ud, done, n_tokens);
    }
    if (!status) {
        for (int32_t l = 0; l < c->n_layer; l++) {
            sl_profile_layer_data *L = &prof->layers[l];
            const layer_hist *h = &st.hist[l];
            for (int q = 0; q < SL_PROFILE_N_QUANTILES; q++)
                L->cats_q[q] = hist_quantile(h, (double)q / (SL_PROFILE_N_QUANTILES - 1));
            L->gate_nonpos = (float)((double)h->nonpos / (double)h->n);
            L->info.true_density = 1.0f - L->gate_nonpos;
            float s = p.layer_sparsity ? p.layer_sparsity[l] : p.sparsity;
            if (s < 0.0f) continue; /* stays dense */
            L->info.rule = SL_RULE_CATS;
            L->info.target_sparsity = s;
            L->info.threshold = hist_quantile(h, s);
        }
        sl_profile_set_method(prof, "cats", NULL);
        *out = prof;
    } else {
        sl_profile_free(prof);
    }
    sl_context_free(ctx);
    free(st.hist);
    return status;
}
