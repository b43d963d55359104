/*
 * predictor_train.c — training the skip model's low-rank predictors: run the dense model over a
 * text, record for every token and layer the MLP input x (after ffn_norm) and the true
 * activation mask (gate pre-activation > 0), fit per layer score = B (A x) (A [r, H], B [I, r],
 * no bias: the gate itself has none) with a class-weighted binary cross-entropy on the logits
 * (Deja Vu's recipe) and AdamW, then choose on held-out windows the rule parameter (threshold,
 * k) that reaches the target recall and write predictors, rules and validation metrics into a
 * profile.
 *
 * Memory. The pairs are stored compactly — x as f16, the mask as bits — so one row is
 * 2 H + ceil(I / 8) bytes and the whole collection tokens x layers x (2 H + ceil(I / 8)) bytes.
 * It stays in RAM when that fits under params.mem_limit; otherwise it goes to an unlinked temp
 * file (pwrite while collecting, pread while training). Training then holds a shuffle group of
 * at most GROUP_BYTES of rows, one mini-batch, the parameters and at most SCORE_CACHE_BYTES of
 * validation scores; docs/predictor-training.md has the full formula.
 *
 * Determinism. Every random draw comes from a per-layer stream seeded by (seed, layer); every
 * product goes through sl_matmul, whose outputs are each computed by one thread in a fixed
 * order; the element-wise steps write disjoint outputs; validation counts are integers. So the
 * same seed gives the same profile bytes for any thread count (on the same kernel variant);
 * only the reported training loss, a sum of per-thread partials, may differ in its last digits.
 *
 * What it is not: the use of predictors while decoding (skip.c) or the file format (profile.c).
 */
#include "sparse/predictor_train.h"

#include "kernels/kernels.h"
#include "model/context.h"
#include "sparse/profile.h"
#include "kernels/activation.h"
#include "sparse/select.h"
#include "sparse/skip_stages.h"
#include "util/util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- parameters ------------------------------------------------------------------------------ */

sl_train_params sl_train_default_params(void) {
    sl_train_params p;
    memset(&p, 0, sizeof(p));
    p.rank_frac = 0.04f;
    p.epochs = 4;
    p.lr = 3e-3f;
    p.weight_decay = 0.01f;
    p.batch = 256;
    p.val_frac = 0.1f;
    p.target_recall = 0.99f;
    p.rule = SL_RULE_PRED_THRESHOLD;
    p.type = SL_TYPE_F32;
    p.seed = 1;
    p.n_threads = 1;
    p.mem_limit = (int64_t)1 << 30;
    p.target = SL_TARGET_SIGN;
    p.loss = SL_LOSS_BCE;
    p.label_frac = 0.4f;
    return p;
}

int32_t sl_train_rank(const sl_train_params *p, int32_t n_embd, int32_t n_ff) {
    int32_t r = p->rank;
    if (r <= 0) {
        /* nearest multiple of 16 (SIMD-friendly, and what Q8_0's blocks of 32 half need) */
        double want = (double)p->rank_frac * n_ff;
        r = (int32_t)lround(want / 16.0) * 16;
        if (r < 16) r = 16;
        if (p->type == SL_TYPE_Q8_0) r = (r + 31) / 32 * 32;
        if (r > n_embd) r = n_embd; /* an explicit rank above n_embd is an error instead (check_params) */
    }
    return r;
}

static sl_status check_params(const sl_train_params *p, int32_t H, int32_t I, int32_t rank, sl_error *err) {
    if (p->rule != SL_RULE_PRED_THRESHOLD && p->rule != SL_RULE_PRED_TOPK && p->rule != SL_RULE_PRED_STAT_TOPK)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rule must be threshold, topk or stat-topk");
    if (p->type != SL_TYPE_F32 && p->type != SL_TYPE_F16 && p->type != SL_TYPE_BF16 && p->type != SL_TYPE_Q8_0)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "train: predictor type must be f32, f16, bf16 or q8_0");
    if (p->type == SL_TYPE_Q8_0 && (H % 32 || rank % 32))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: q8_0 predictors need n_embd (%d) and rank (%d) to be multiples of 32", H,
                            rank);
    if (rank < 1 || rank > H)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rank %d outside 1..%d (n_embd)", rank, H);
    if (p->rank <= 0 && !(p->rank_frac > 0.0f && p->rank_frac <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rank_frac %g outside (0, 1]", (double)p->rank_frac);
    if (p->epochs < 1 || p->epochs > 100000) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: epochs %d outside 1..100000", p->epochs);
    if (!(p->lr > 0.0f) || isinf(p->lr)) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: learning rate must be > 0");
    if (!(p->weight_decay >= 0.0f) || isinf(p->weight_decay))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: weight decay must be >= 0");
    if (p->batch < 1 || p->batch > MAX_BATCH) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: batch %d outside 1..%d", p->batch, MAX_BATCH);
    if (!(p->pos_weight >= 0.0f) || isinf(p->pos_weight))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: pos_weight must be >= 0 (0 = automatic)");
    if (!(p->target_recall > 0.0f && p->target_recall <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: target recall %g outside (0, 1]", (double)p->target_recall);
    if (!(p->val_frac > 0.0f && p->val_frac < 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: validation fraction %g outside (0, 1)", (double)p->val_frac);
    if (p->mem_limit < 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: mem_limit must be >= 0");
    if (p->target != SL_TARGET_SIGN && p->target != SL_TARGET_CONTRIB)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: target must be sign or contribution");
    if (p->loss != SL_LOSS_BCE && !(p->loss == SL_LOSS_LISTNET && p->target == SL_TARGET_CONTRIB))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: the ranking loss (listnet) needs the contribution target");
    if (!(p->label_frac > 0.0f && p->label_frac <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: label fraction %g outside (0, 1]", (double)p->label_frac);
    return SL_OK;
}

/* Quantize A, B to `type` exactly as sl_profile_set_predictor stores them; w*.data owned by caller. */
static sl_status quantize_predictor(sl_type type, int32_t r, int32_t H, int32_t I, const float *A, const float *B, sl_weight *wa,
                                    sl_weight *wb, sl_error *err) {
    size_t row_a = sl_type_row_size(type, H), row_b = sl_type_row_size(type, r);
    void *a = sl_malloc_aligned(row_a * (size_t)r), *b = sl_malloc_aligned(row_b * (size_t)I);
    if (!a || !b) {
        sl_free_aligned(a);
        sl_free_aligned(b);
        return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
    }
    for (int32_t k = 0; k < r; k++) sl_quantize_row_ref(type, A + (size_t)k * H, (uint8_t *)a + (size_t)k * row_a, H);
    for (int32_t i = 0; i < I; i++) sl_quantize_row_ref(type, B + (size_t)i * r, (uint8_t *)b + (size_t)i * row_b, r);
    *wa = sl_weight_view(a, type, r, H);
    *wb = sl_weight_view(b, type, I, r);
    return SL_OK;
}

/* Train, quantize and select for one layer. pos_train: positives among its training rows. */
static sl_status train_layer(const pair_store *s, int layer, const sl_train_params *p, int32_t rank, int64_t pos_train, sl_pool *pool,
                             float *A, float *B, sl_train_layer_report *rep, sl_error *err) {
    const double t0 = sl_time_s();
    /* density of positive labels: active neurons, or the contribution labels' top fraction */
    const double d = s->contrib ? (double)sl_train_label_k(p, s->I) / s->I : (double)pos_train / ((double)s->n_rows[0] * s->I);
    float pw = p->pos_weight;
    if (pw <= 0.0f) {
        /* (1 - d) / d balances the two classes; clamp so a (nearly) dead or always-on layer
         * does not blow up the gradient */
        double w = d > 0 ? (1.0 - d) / d : 100.0;
        pw = (float)(w < 0.01 ? 0.01 : w > 100.0 ? 100.0 : w);
    }
    layer_job j = {s, layer, p, rank, pw, pool};
    rng g = {p->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull * (uint64_t)(layer + 1)};
    memset(rep, 0, sizeof(*rep));
    rep->layer = layer;
    rep->rank = rank;
    rep->pos_weight = pw;
    rep->n_train = s->n_rows[0];
    sl_status st = fit_layer(&j, &g, A, B, &rep->train_loss, err);
    if (st) return st;
    const double t1 = sl_time_s();
    sl_weight wa, wb;
    if ((st = quantize_predictor(p->type, rank, s->H, s->I, A, B, &wa, &wb, err))) return st;
    st = select_rule(&j, &wa, &wb, rep, err);
    sl_free_aligned((void *)wa.data);
    sl_free_aligned((void *)wb.data);
    rep->fit_seconds = t1 - t0;
    rep->select_seconds = sl_time_s() - t1;
    return st;
}

/* ---- in-memory data --------------------------------------------------------------------------- */

sl_status sl_predictor_fit(const float *x, const bool *mask, int64_t n_train, const float *x_val, const bool *mask_val, int64_t n_val,
                           int32_t n_embd, int32_t n_ff, const sl_train_params *params, float *A, float *B,
                           sl_train_layer_report *report, sl_error *err) {
    sl_clear_error(err);
    sl_train_params p = params ? *params : sl_train_default_params();
    if (!x || !mask || !x_val || !mask_val || !A || !B || !report || n_train < 1 || n_val < 1 || n_embd < 1 || n_ff < 1)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "predictor_fit: needs training and validation rows, sizes > 0 and output buffers");
    const int32_t rank = sl_train_rank(&p, n_embd, n_ff);
    p.val_frac = 0.5f; /* not used here: the caller split the rows */
    sl_status st = check_params(&p, n_embd, n_ff, rank, err);
    if (st) return st;
    pair_store s;
    if (p.target != SL_TARGET_SIGN) return sl_set_error(err, SL_ERR_INVALID_ARG, "predictor_fit: the contribution target takes sl_predictor_fit_contrib");
    if ((st = store_open(&s, 1, n_embd, n_ff, false, n_train, n_val, INT64_MAX, NULL, err))) return st;
    sl_pool *pool = sl_pool_init(p.n_threads > 0 ? p.n_threads : 1);
    uint8_t *buf = sl_malloc_aligned((size_t)CHUNK_ROWS * s.row_bytes);
    if (!s.mem || !pool || !buf) {
        st = sl_set_error(err, SL_ERR_NOMEM, "predictor_fit: out of memory");
        goto done;
    }
    int64_t pos = 0;
    for (int split = 0; split < 2; split++) {
        const int64_t n = split ? n_val : n_train;
        const float *xs = split ? x_val : x;
        const bool *ms = split ? mask_val : mask;
        for (int64_t r0 = 0; r0 < n; r0 += CHUNK_ROWS) {
            int64_t c = n - r0 < CHUNK_ROWS ? n - r0 : CHUNK_ROWS;
            int64_t np = encode_rows(xs + (size_t)r0 * n_embd, NULL, ms + (size_t)r0 * n_ff, c, n_embd, n_ff, s.row_bytes, buf);
            if (!split) pos += np;
            if ((st = store_write(&s, 0, split, r0, c, buf, err))) goto done;
        }
    }
    st = train_layer(&s, 0, &p, rank, pos, pool, A, B, report, err);
done:
    sl_free_aligned(buf);
    sl_pool_free(pool);
    store_close(&s);
    return st;
}

sl_status sl_predictor_fit_contrib(const float *x, const float *contrib, const bool *mask, int64_t n_train, const float *x_val,
                                   const float *contrib_val, const bool *mask_val, int64_t n_val, int32_t n_embd, int32_t n_ff,
                                   const sl_train_params *params, float *A, float *B, sl_train_layer_report *report, sl_error *err) {
    sl_clear_error(err);
    sl_train_params p = params ? *params : sl_train_default_params();
    p.target = SL_TARGET_CONTRIB;
    if (!x || !contrib || !x_val || !contrib_val || !A || !B || !report || n_train < 1 || n_val < 1 || n_embd < 1 || n_ff < 1)
        return sl_set_error(err, SL_ERR_INVALID_ARG,
                            "predictor_fit_contrib: needs training and validation rows, sizes > 0 and output buffers");
    const int32_t rank = sl_train_rank(&p, n_embd, n_ff);
    p.val_frac = 0.5f;
    sl_status st = check_params(&p, n_embd, n_ff, rank, err);
    if (st) return st;
    pair_store s;
    if ((st = store_open(&s, 1, n_embd, n_ff, true, n_train, n_val, INT64_MAX, NULL, err))) return st;
    sl_pool *pool = sl_pool_init(p.n_threads > 0 ? p.n_threads : 1);
    uint8_t *buf = sl_malloc_aligned((size_t)CHUNK_ROWS * s.row_bytes);
    if (!s.mem || !pool || !buf) {
        st = sl_set_error(err, SL_ERR_NOMEM, "predictor_fit_contrib: out of memory");
        goto done;
    }
    for (int split = 0; split < 2; split++) {
        const int64_t n = split ? n_val : n_train;
        const float *xs = split ? x_val : x, *cs = split ? contrib_val : contrib;
        const bool *ms = split ? mask_val : mask;
        for (int64_t r0 = 0; r0 < n; r0 += CHUNK_ROWS) {
            int64_t c = n - r0 < CHUNK_ROWS ? n - r0 : CHUNK_ROWS;
            encode_rows_contrib(xs + (size_t)r0 * n_embd, cs + (size_t)r0 * n_ff, NULL, ms ? ms + (size_t)r0 * n_ff : NULL, c, n_embd,
                                n_ff, s.row_bytes, buf);
            if ((st = store_write(&s, 0, split, r0, c, buf, err))) goto done;
        }
    }
    st = train_layer(&s, 0, &p, rank, 0, pool, A, B, report, err);
done:
    sl_free_aligned(buf);
    sl_pool_free(pool);
    store_close(&s);
    return st;
}

/* ---- collecting from the model ---------------------------------------------------------------- */

typedef struct collect_state {
    pair_store *store;   /* destination */
    int split;           /* split of the window being evaluated */
    int64_t base;        /* its first row within that split */
    int64_t *pos;        /* [n_layer] rows of the window written so far, per layer */
    int64_t *n_pos;      /* [n_layer * 2] positives per layer and split */
    uint8_t *buf;        /* [n_batch rows] staging */
    int64_t buf_rows;    /* capacity of buf in rows */
    sl_status status;    /* first failure (the forward pass cannot be stopped from the hook) */
    sl_error *err;       /* where it is described */
    /* contribution target */
    const sl_model *model; /* its up weights */
    sl_context *ctx;     /* whose thread pool computes up */
    float *norms;        /* [n_layer, I] ||down[:, i]|| */
    float *ubuf;         /* [buf_rows, I] up, then the contributions */
} collect_state;

static void collect_hook(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff) {
    collect_state *c = ud;
    if (c->status) return;
    for (int b0 = 0; b0 < B; b0 += (int)c->buf_rows) {
        int nb = B - b0 < c->buf_rows ? B - b0 : (int)c->buf_rows;
        const float *xb = x + (size_t)b0 * n_embd, *gb = gate + (size_t)b0 * n_ff;
        if (c->store->contrib) {
            const sl_weight *up = &c->model->layers[layer].ffn_up;
            const float *nrm = c->norms + (size_t)layer * n_ff;
            const sl_activation act = c->model->config.act;
            sl_matmul(c->ctx->pool, up->mm_type, up->mm_data, n_ff, n_embd, xb, nb, c->ubuf);
            for (size_t k = 0; k < (size_t)nb * n_ff; k++) c->ubuf[k] = fabsf(sl_activate(act, gb[k]) * c->ubuf[k]) * nrm[k % n_ff];
            c->n_pos[2 * layer + c->split] += encode_rows_contrib(xb, c->ubuf, gb, NULL, nb, n_embd, n_ff, c->store->row_bytes, c->buf);
        } else {
            c->n_pos[2 * layer + c->split] += encode_rows(xb, gb, NULL, nb, n_embd, n_ff, c->store->row_bytes, c->buf);
        }
        c->status = store_write(c->store, layer, c->split, c->base + c->pos[layer], nb, c->buf, c->err);
        c->pos[layer] += nb;
        if (c->status) return;
    }
}

/* Window w of n_win is held out for validation when floor((w + 1) f) > floor(w f): an even
 * spread (every 10th window for f = 0.1) over the whole text, so a text made of several books
 * is validated on all of them. With none selected, the last window is. */
static bool window_is_val(int64_t w, int64_t n_win, double f, bool any) {
    if (!any) return w == n_win - 1;
    return floor((double)(w + 1) * f) > floor((double)w * f);
}

sl_status sl_train_predictors(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_train_params *params,
                              sl_profile *profile, sl_train_report *report, sl_error *err) {
    sl_clear_error(err);
    const double t_start = sl_time_s();
    sl_train_params p = params ? *params : sl_train_default_params();
    if (!model || !model->layers || !tokens || !profile)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: needs a model, tokens and a profile to fill");
    const sl_model_config *c = &model->config;
    char fp[32];
    sl_model_fingerprint(model, fp);
    if (profile->n_layer != c->n_layer || profile->n_embd != c->n_embd || profile->n_ff != c->n_ff || strcmp(fp, profile->fingerprint))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: the profile was made for another model (fingerprint %s, model %s)",
                            profile->fingerprint, fp);
    const int32_t H = c->n_embd, I = c->n_ff, L = c->n_layer;
    const int32_t rank = sl_train_rank(&p, H, I);
    sl_status st = check_params(&p, H, I, rank, err);
    if (st) return st;
    const int32_t window = p.n_ctx > 0 ? p.n_ctx : (c->n_ctx_train < 512 ? c->n_ctx_train : 512);
    if (window < 2) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: window %d too short", window);
    /* the windows: all of the text, or max_tokens worth of whole windows spread evenly over it
     * (a text made of several books is sampled from all of them) */
    const int64_t n_all = (n_tokens + window - 1) / window;
    int64_t n_win = n_all;
    if (p.max_tokens > 0 && p.max_tokens < n_tokens) {
        const int64_t full = n_tokens / window;
        n_win = (p.max_tokens + window - 1) / window;
        if (n_win > full) n_win = full;
    }
    if (n_win < 2)
        return sl_set_error(err, SL_ERR_INVALID_ARG,
                            "train: %lld tokens make %lld window(s) of %d; at least 2 are needed (one to train, one to validate)",
                            (long long)(p.max_tokens > 0 && p.max_tokens < n_tokens ? p.max_tokens : n_tokens), (long long)n_win, window);
    int64_t *win_start = malloc((size_t)n_win * sizeof(int64_t));
    if (!win_start) return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
    for (int64_t w = 0; w < n_win; w++)
        win_start[w] = n_win == n_all ? w * window : (int64_t)((double)w * (double)(n_tokens / window) / (double)n_win) * window;
#define WIN_LEN(w) ((int32_t)(n_tokens - win_start[w] < window ? n_tokens - win_start[w] : window))
    /* which windows validate, and the row counts of each split */
    bool any = false;
    for (int64_t w = 0; w < n_win && !any; w++) any = window_is_val(w, n_win, p.val_frac, true);
    int64_t rows[2] = {0, 0}, n_val_win = 0, n_used = 0;
    for (int64_t w = 0; w < n_win; w++) {
        bool v = window_is_val(w, n_win, p.val_frac, any);
        rows[v] += WIN_LEN(w);
        n_val_win += v;
    }
    n_used = rows[0] + rows[1];
    if (rows[0] < 1 || rows[1] < 1) {
        free(win_start);
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: validation fraction %g leaves no training windows", (double)p.val_frac);
    }

    pair_store s;
    const bool contrib = p.target == SL_TARGET_CONTRIB;
    if ((st = store_open(&s, L, H, I, contrib, rows[0], rows[1], p.mem_limit, p.tmp_dir, err))) {
        free(win_start);
        return st;
    }
    sl_context *ctx = NULL;
    sl_pool *pool = NULL;
    float *A = NULL, *B = NULL;
    collect_state cs;
    memset(&cs, 0, sizeof(cs));
    sl_train_layer_report *reps = report && report->layers ? report->layers : calloc((size_t)L, sizeof(*reps));
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = p.n_threads;
    cp.n_batch = window < 256 ? window : 256; /* prefill batches: the bigger, the faster the matmuls */
    cs.store = &s;
    cs.pos = calloc((size_t)L, sizeof(int64_t));
    cs.n_pos = calloc((size_t)L * 2, sizeof(int64_t));
    cs.buf_rows = cp.n_batch;
    cs.buf = sl_malloc_aligned((size_t)cs.buf_rows * s.row_bytes);
    cs.err = err;
    cs.model = model;
    if (contrib) {
        cs.norms = malloc((size_t)L * I * sizeof(float));
        cs.ubuf = sl_malloc_aligned((size_t)cs.buf_rows * I * sizeof(float));
        if (!cs.norms || !cs.ubuf) {
            st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
            goto done;
        }
        for (int32_t l = 0; l < L; l++)
            if ((st = sl_down_col_norms(&model->layers[l].ffn_down, cs.norms + (size_t)l * I, err))) goto done;
    }
    if (!reps || !cs.pos || !cs.n_pos || !cs.buf) {
        st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    if (!(ctx = sl_context_init(model, &cp, err))) {
        st = err ? err->code : SL_ERR_NOMEM;
        goto done;
    }
    ctx->mlp_hook = collect_hook;
    ctx->mlp_hook_ud = &cs;
    cs.ctx = ctx;
    int64_t next[2] = {0, 0};
    for (int64_t w = 0, done_tok = 0; w < n_win; w++) {
        const int32_t n = WIN_LEN(w);
        cs.split = window_is_val(w, n_win, p.val_frac, any);
        cs.base = next[cs.split];
        memset(cs.pos, 0, (size_t)L * sizeof(int64_t));
        sl_context_reset(ctx);
        if ((st = sl_eval(ctx, tokens + win_start[w], n, NULL, false, err))) goto done;
        if ((st = cs.status)) goto done;
        next[cs.split] += n;
        done_tok += n;
        if (p.progress) p.progress(p.progress_ud, SL_TRAIN_COLLECT, -1, done_tok, n_used);
    }
    sl_context_free(ctx);
    ctx = NULL;
    const double t_collect = sl_time_s();

    pool = sl_pool_init(p.n_threads > 0 ? p.n_threads : 1);
    A = malloc((size_t)rank * H * sizeof(float));
    B = malloc((size_t)I * rank * sizeof(float));
    if (!pool || !A || !B) {
        st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    double t_fit = 0, t_select = 0;
    for (int32_t l = 0; l < L; l++) {
        sl_train_layer_report *rep = &reps[l];
        if ((st = train_layer(&s, l, &p, rank, cs.n_pos[2 * l], pool, A, B, rep, err))) goto done;
        t_fit += rep->fit_seconds;
        t_select += rep->select_seconds;
        if ((st = sl_profile_set_predictor(profile, l, rank, p.type, A, B, err))) goto done;
        sl_profile_layer info;
        sl_profile_get_layer(profile, l, &info, NULL);
        info.rule = rep->rule;
        info.threshold = rep->threshold;
        info.topk = rep->topk;
        info.target_sparsity = 1.0f - rep->pred_density;
        info.recall = rep->recall;
        info.precision = rep->precision;
        info.true_density = rep->true_density;
        info.pred_density = rep->pred_density;
        info.contrib_recall = rep->contrib_recall;
        if ((st = sl_profile_set_layer(profile, l, &info, err))) goto done;
        /* the fraction of gate <= 0 over all collected tokens, unless calibration set it */
        if (isnan(profile->layers[l].gate_nonpos))
            profile->layers[l].gate_nonpos =
                (float)(1.0 - (double)(cs.n_pos[2 * l] + cs.n_pos[2 * l + 1]) / ((double)(rows[0] + rows[1]) * I));
    }
    if ((st = sl_profile_set_method(profile, contrib ? (p.loss == SL_LOSS_LISTNET ? "predictor-contrib-listnet" : "predictor-contrib-bce")
                                                     : "predictor", err)))
        goto done;
    if (report) {
        report->n_tokens = n_used;
        report->n_train_tokens = rows[0];
        report->n_val_tokens = rows[1];
        report->n_windows = n_win;
        report->n_val_windows = n_val_win;
        report->rank = rank;
        report->store_bytes = store_bytes(rows[0] + rows[1], L, H, I, contrib);
        report->store_on_disk = s.mem == NULL;
        report->t_collect = t_collect - t_start;
        report->t_fit = t_fit;
        report->t_select = t_select;
        report->t_total = sl_time_s() - t_start;
    }
done:
    sl_context_free(ctx);
    sl_pool_free(pool);
    store_close(&s);
    free(A);
    free(B);
    free(cs.pos);
    free(cs.n_pos);
    sl_free_aligned(cs.buf);
    free(cs.norms);
    sl_free_aligned(cs.ubuf);
    free(win_start);
    if (!(report && report->layers)) free(reps);
    return st;
#undef WIN_LEN
}
