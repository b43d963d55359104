/*
 * context.c — sl_context: the KV caches of its sequences (one, or n_seq for a server's slots) and
 * the scratch buffers they are evaluated with, sized and checked against the machine's memory
 * before anything is allocated; the per-sequence token counts; the per-layer
 * counters; the MLP plug-in slot (context.h). What it is not: the forward pass (forward.c).
 */
#include "model/context.h"

#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SL_MAX_CTX (1 << 22) /* 4M tokens: beyond this a KV cache size is surely a mistake */

sl_context_params sl_context_default_params(void) {
    sl_context_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

void sl_context_free(sl_context *ctx) {
    if (!ctx) return;
    sl_context_set_mlp_plugin(ctx, NULL, NULL);
    sl_bundle_ws_free(&ctx->bws);
    free(ctx->stats);
    free(ctx->seq_past);
    free(ctx->seq_count);
    free(ctx->row_seq);
    free(ctx->row_pos);
    free(ctx->out_rows);
    free(ctx->row_tok);
    free(ctx->rope_cs);
    sl_pool_free(ctx->pool);
    sl_free_aligned(ctx->k_cache);
    sl_free_aligned(ctx->v_cache);
    sl_free_aligned(ctx->scratch);
    free(ctx);
}

static size_t physical_memory_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)1 << 40;
}

sl_context *sl_context_init(const sl_model *model, const sl_context_params *params, sl_error *err) {
    sl_clear_error(err);
    if (!model || !model->layers) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "context: model is NULL or was loaded vocab-only");
        return NULL;
    }
    sl_context_params p = params ? *params : sl_context_default_params();
    const sl_model_config *c = &model->config;
    if (p.n_ctx < 0 || p.n_ctx > SL_MAX_CTX) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "context: n_ctx %d is outside 0..%d", p.n_ctx, SL_MAX_CTX);
        return NULL;
    }
    if (p.n_threads < 0 || p.n_threads > 512 || p.n_batch < 0 || p.n_batch > 65536 || p.n_seq < 0 || p.n_seq > 65536) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "context: n_threads must be 0..512, n_batch 0..65536 and n_seq 0..65536");
        return NULL;
    }
    const int n_seq = p.n_seq ? p.n_seq : 1;
    int n_ctx = p.n_ctx ? p.n_ctx : c->n_ctx_train;
    if (n_ctx > SL_MAX_CTX) n_ctx = SL_MAX_CTX;
    int n_threads = p.n_threads ? p.n_threads : 1;
    int n_batch = p.n_batch ? p.n_batch : 64;
    if (n_batch > n_ctx) n_batch = n_ctx;

    /* sizes first, all in size_t with overflow checks, against physical memory */
    const size_t kv_dim = (size_t)c->n_head_kv * (size_t)c->head_dim, q_dim = (size_t)c->n_head * (size_t)c->head_dim;
    const size_t elem = p.kv_f16 ? 2 : 4;
    size_t kv_bytes = 0;
    bool overflow = sl_mul_overflow((size_t)c->n_layer, (size_t)n_ctx, &kv_bytes) || sl_mul_overflow(kv_bytes, kv_dim, &kv_bytes) ||
                    sl_mul_overflow(kv_bytes, elem, &kv_bytes) || sl_mul_overflow(kv_bytes, (size_t)n_seq, &kv_bytes);
    /* scratch: x, xb, xb2 [B, E]; q, attn [B, Q]; k, v [B, KV]; hb, hb2 [B, F]; logits [B, V];
     * att [threads, n_ctx]; act [prepared input of the widest matrix] */
    size_t per_tok = 3 * (size_t)c->n_embd + 2 * q_dim + 2 * kv_dim + 2 * (size_t)c->n_ff + (size_t)c->n_vocab;
    size_t floats = 0, tmp = 0;
    overflow = overflow || sl_mul_overflow(per_tok, (size_t)n_batch, &floats) ||
               sl_mul_overflow((size_t)n_threads, (size_t)n_ctx, &tmp) || sl_add_overflow(floats, tmp, &floats);
    size_t scratch_bytes = 0;
    overflow = overflow || sl_mul_overflow(floats, sizeof(float), &scratch_bytes);
    size_t total = 0;
    overflow = overflow || sl_add_overflow(2 * kv_bytes, scratch_bytes, &total);
    if (overflow || total > physical_memory_bytes()) {
        sl_set_error(err, SL_ERR_NOMEM,
                     "context: n_ctx %d x %d sequence(s) needs %.1f MiB of KV cache + %.1f MiB of buffers, more than this machine's %.1f MiB "
                     "of memory",
                     n_ctx, n_seq, overflow ? INFINITY : 2.0 * (double)kv_bytes / 1048576.0, (double)scratch_bytes / 1048576.0,
                     (double)physical_memory_bytes() / 1048576.0);
        return NULL;
    }

    sl_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) goto nomem;
    ctx->model = model;
    ctx->n_ctx = n_ctx;
    ctx->n_batch = n_batch;
    ctx->n_threads = n_threads;
    ctx->kv_f16 = p.kv_f16;
    ctx->kv_dim = (int)kv_dim;
    ctx->n_seq = n_seq;
    ctx->seq_past = calloc((size_t)n_seq, sizeof(int32_t));
    ctx->seq_count = calloc((size_t)n_seq, sizeof(int32_t));
    ctx->row_seq = calloc((size_t)n_batch, sizeof(int32_t));
    ctx->row_pos = calloc((size_t)n_batch, sizeof(int32_t));
    ctx->out_rows = calloc((size_t)n_batch, sizeof(int32_t));
    ctx->row_tok = calloc((size_t)n_batch, sizeof(int32_t));
    ctx->k_cache = sl_malloc_aligned(kv_bytes);
    ctx->v_cache = sl_malloc_aligned(kv_bytes);
    ctx->scratch = sl_malloc_aligned(scratch_bytes);
    ctx->pool = sl_pool_init(n_threads);
    ctx->stats = calloc((size_t)c->n_layer, sizeof(sl_layer_stats));
    ctx->rope_cs = malloc(2 * (size_t)n_batch * (size_t)c->n_rot * sizeof(float));
    ctx->rope_factors = sl_model_rope_factors(model, n_ctx);
    if (!ctx->k_cache || !ctx->v_cache || !ctx->scratch || !ctx->pool || !ctx->stats || !ctx->rope_cs || !ctx->seq_past || !ctx->seq_count ||
        !ctx->row_seq || !ctx->row_pos || !ctx->out_rows || !ctx->row_tok)
        goto nomem;
    float *s = ctx->scratch;
    const size_t B = (size_t)n_batch;
    ctx->x = s, s += B * (size_t)c->n_embd;
    ctx->xb = s, s += B * (size_t)c->n_embd;
    ctx->xb2 = s, s += B * (size_t)c->n_embd;
    ctx->q = s, s += B * q_dim;
    ctx->attn = s, s += B * q_dim;
    ctx->k = s, s += B * kv_dim;
    ctx->v = s, s += B * kv_dim;
    ctx->hb = s, s += B * (size_t)c->n_ff;
    ctx->hb2 = s, s += B * (size_t)c->n_ff;
    ctx->logits = s, s += B * (size_t)c->n_vocab;
    ctx->att = s;
    return ctx;
nomem:
    sl_context_free(ctx);
    sl_set_error(err, SL_ERR_NOMEM, "context: cannot allocate %.1f MiB (KV cache + buffers)", (double)total / 1048576.0);
    return NULL;
}

int32_t sl_context_n_past(const sl_context *ctx) { return ctx->seq_past[0]; }
int32_t sl_context_n_ctx(const sl_context *ctx) { return ctx->n_ctx; }
int32_t sl_context_n_seq(const sl_context *ctx) { return ctx->n_seq; }
void sl_context_reset(sl_context *ctx) { memset(ctx->seq_past, 0, (size_t)ctx->n_seq * sizeof(int32_t)); }

int32_t sl_context_seq_n_past(const sl_context *ctx, int32_t seq) { return ctx && seq >= 0 && seq < ctx->n_seq ? ctx->seq_past[seq] : -1; }

sl_status sl_context_seq_keep(sl_context *ctx, int32_t seq, int32_t n, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || seq < 0 || seq >= ctx->n_seq)
        return sl_set_error(err, SL_ERR_RANGE, "seq_keep: sequence %d is outside 0..%d", seq, ctx ? ctx->n_seq - 1 : -1);
    if (n < 0 || n > ctx->seq_past[seq])
        return sl_set_error(err, SL_ERR_RANGE, "seq_keep: sequence %d holds %d tokens, cannot keep %d", seq, ctx->seq_past[seq], n);
    ctx->seq_past[seq] = n; /* the rows beyond are overwritten by the next tokens */
    return SL_OK;
}

sl_status sl_context_truncate(sl_context *ctx, int32_t n_past, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || n_past < 0 || n_past > ctx->seq_past[0])
        return sl_set_error(err, SL_ERR_RANGE, "context: cannot keep %d tokens of %d", n_past, ctx ? ctx->seq_past[0] : 0);
    ctx->seq_past[0] = n_past; /* the cache rows past it are overwritten by the next evaluation */
    return SL_OK;
}

void sl_context_set_mlp_plugin(sl_context *ctx, const sl_mlp_plugin *plugin, void *state) {
    if (ctx->mlp && ctx->mlp->free) ctx->mlp->free(ctx->mlp_state);
    ctx->mlp = plugin;
    ctx->mlp_state = plugin ? state : NULL;
}

void sl_context_track_recall(sl_context *ctx, bool on) { ctx->track_recall = on; }

void sl_context_reset_stats(sl_context *ctx) { memset(ctx->stats, 0, sizeof(sl_layer_stats) * (size_t)ctx->model->config.n_layer); }

sl_status sl_context_get_layer_stats(const sl_context *ctx, int32_t layer, sl_layer_stats *out, sl_error *err) {
    if (!ctx || layer < 0 || layer >= ctx->model->config.n_layer)
        return sl_set_error(err, SL_ERR_RANGE, "layer_stats: layer %d out of range", layer);
    *out = ctx->stats[layer];
    return SL_OK;
}
