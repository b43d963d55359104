/*
 * forward.c — the LLaMA forward pass over a KV cache (sl_eval).
 *
 * What it is for: turning a batch of token ids into logits, one transformer block after the
 * other, exactly as the PyTorch reference (HF LlamaModel / llama2.c) does; each step quotes the
 * line it implements. Weight products go through sl_matmul (src/kernels), which picks SIMD
 * variants; the batch of prompt tokens goes through each weight matrix at once (prefill), and a
 * single token is the B = 1 case (decode). What it is not: the context's buffers (context.c) or
 * the MLP sparsity logic — the MLP step is one function (mlp_forward), which asks the context's
 * MLP plug-in (context.h) first.
 */
#include "model/context.h"

#include "format/quant.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- building blocks ------------------------------------------------------------------------ */

/* out = x * rsqrt(mean(x^2) + eps) * w        (LlamaRMSNorm) */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* cos/sin of pos * theta_i for the B tokens at pos0.., theta_i = base^(-2i/n_rot) / freq_factor_i
 * (freq factors: Llama 3.1+ rope_freqs). Computed once per batch, shared by all layers.
 * cs: [B, n_rot/2, 2]. */
static void rope_table(float *cs, int B, int pos0, int n_rot, float base, const float *freq_factors) {
    for (int i = 0; i < n_rot / 2; i++) {
        float inv_freq = powf(base, -2.0f * (float)i / (float)n_rot);
        if (freq_factors) inv_freq /= freq_factors[i];
        for (int b = 0; b < B; b++) {
            const float theta = (float)(pos0 + b) * inv_freq;
            cs[((size_t)b * (n_rot / 2) + i) * 2] = cosf(theta);
            cs[((size_t)b * (n_rot / 2) + i) * 2 + 1] = sinf(theta);
        }
    }
}

/* Rotate consecutive pairs (2i, 2i+1) of the first n_rot dims of each head by the token's
 * angles (the interleaved "llama" RoPE layout). */
static void rope(float *v, int n_heads, int head_dim, int n_rot, const float *cs) {
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1], a = p[2 * i], b = p[2 * i + 1];
            p[2 * i] = a * c - b * s;
            p[2 * i + 1] = a * s + b * c;
        }
    }
}

/* Store rows [B, kv_dim] of k and v into the caches of layer l at positions pos0.. */
static void kv_store(sl_context *ctx, int l, int pos0, int B) {
    const size_t row = (size_t)ctx->kv_dim;
    const size_t base = ((size_t)l * (size_t)ctx->n_ctx + (size_t)pos0) * row;
    if (ctx->kv_f16) {
        uint16_t *kc = (uint16_t *)ctx->k_cache + base, *vc = (uint16_t *)ctx->v_cache + base;
        for (size_t i = 0; i < (size_t)B * row; i++) {
            kc[i] = sl_fp32_to_fp16(ctx->k[i]);
            vc[i] = sl_fp32_to_fp16(ctx->v[i]);
        }
    } else {
        memcpy((float *)ctx->k_cache + base, ctx->k, (size_t)B * row * sizeof(float));
        memcpy((float *)ctx->v_cache + base, ctx->v, (size_t)B * row * sizeof(float));
    }
}

typedef struct attn_task {
    sl_context *ctx; /* context */
    int layer;       /* block index */
    int pos0;        /* position of token 0 of the batch */
    int B;           /* tokens in the batch */
} attn_task;

/* Work items are (token, KV head, slice of its query-head group) triples split evenly over
 * threads: each runs the query heads of one slice against one KV head over the token's causal
 * prefix, reading each cached K/V row once per slice (sl_attention_group). Groups are sliced
 * only when there are fewer (token, KV head) pairs than threads. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_task *t = arg;
    sl_context *ctx = t->ctx;
    const sl_model_config *c = &ctx->model->config;
    const size_t layer_off = (size_t)t->layer * (size_t)ctx->n_ctx * (size_t)ctx->kv_dim * (ctx->kv_f16 ? 2 : 4);
    const void *kc = (const uint8_t *)ctx->k_cache + layer_off, *vc = (const uint8_t *)ctx->v_cache + layer_off;
    const int q_dim = c->n_head * c->head_dim, group = c->n_head / c->n_head_kv;
    int slices = 1;
    while ((long long)t->B * c->n_head_kv * slices < nth && slices < group) slices++;
    const int per_slice = (group + slices - 1) / slices;
    long long i0, i1;
    sl_split_range((long long)t->B * c->n_head_kv * slices, ith, nth, &i0, &i1);
    float *att = ctx->att + (size_t)ith * (size_t)ctx->n_ctx;
    for (long long i = i0; i < i1; i++) {
        const int b = (int)(i / ((long long)c->n_head_kv * slices));
        const int rest = (int)(i % ((long long)c->n_head_kv * slices));
        const int kvh = rest / slices, slice = rest % slices;
        const int h0 = kvh * group + slice * per_slice;
        const int n_q = h0 + per_slice <= (kvh + 1) * group ? per_slice : (kvh + 1) * group - h0;
        if (n_q <= 0) continue;
        const size_t off = (size_t)b * q_dim + (size_t)h0 * c->head_dim;
        sl_attention_group(ctx->q + off, n_q, kc, vc, ctx->kv_f16, t->pos0 + b + 1, ctx->kv_dim, kvh, c->head_dim, ctx->attn + off, att);
    }
}

/* xb2 <- down(act(gate(xb)) * up(xb))    (LlamaMLP.forward), unless the MLP plug-in (the skip
 * model, src/sparse/skip.c) takes the layer. */
static void mlp_forward(sl_context *ctx, int l, int B) {
    const sl_model_config *c = &ctx->model->config;
    const sl_layer *L = &ctx->model->layers[l];
    ctx->stats[l].n_tokens += B;
    if (ctx->mlp && ctx->mlp->forward(ctx->mlp_state, ctx, l, B)) return; /* the skip model took it */
    const double t0 = sl_time_s();
    sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, c->n_ff, c->n_embd, ctx->xb, B, ctx->hb);
    if (ctx->mlp_hook) ctx->mlp_hook(ctx->mlp_hook_ud, l, B, ctx->xb, c->n_embd, ctx->hb, c->n_ff);
    sl_matmul(ctx->pool, L->ffn_up.mm_type, L->ffn_up.mm_data, c->n_ff, c->n_embd, ctx->xb, B, ctx->hb2);
    const size_t n = (size_t)B * (size_t)c->n_ff;
    for (size_t i = 0; i < n; i++) ctx->hb[i] = sl_activate(c->act, ctx->hb[i]) * ctx->hb2[i];
    sl_matmul(ctx->pool, L->ffn_down.mm_type, L->ffn_down.mm_data, c->n_embd, c->n_ff, ctx->hb, B, ctx->xb2);
    ctx->stats[l].t_dense += sl_time_s() - t0;
}

/* Run one batch of B <= n_batch tokens at positions n_past.. through the model. */
static void forward_batch(sl_context *ctx, const int32_t *tokens, int B, float *logits_out, bool all_logits) {
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    const int E = c->n_embd, Q = c->n_head * c->head_dim, KV = ctx->kv_dim;
    const int pos0 = ctx->n_past;

    /* x = embed_tokens(input_ids) */
    for (int b = 0; b < B; b++)
        sl_dequantize_row_ref(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[b] * m->tok_embd.row_bytes,
                              ctx->x + (size_t)b * E, E);
    if (ctx->hidden_hook) ctx->hidden_hook(ctx->hidden_hook_ud, -1, pos0, B, ctx->x, E);
    rope_table(ctx->rope_cs, B, pos0, c->n_rot, c->rope_freq_base, m->rope_freqs);

    for (int l = 0; l < c->n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        /* h = input_layernorm(x) */
        for (int b = 0; b < B; b++) rmsnorm(ctx->xb + (size_t)b * E, ctx->x + (size_t)b * E, L->attn_norm, E, c->rms_eps);
        /* q, k, v = q_proj(h), k_proj(h), v_proj(h) */
        sl_matmul(ctx->pool, L->wq.mm_type, L->wq.mm_data, Q, E, ctx->xb, B, ctx->q);
        sl_matmul(ctx->pool, L->wk.mm_type, L->wk.mm_data, KV, E, ctx->xb, B, ctx->k);
        sl_matmul(ctx->pool, L->wv.mm_type, L->wv.mm_data, KV, E, ctx->xb, B, ctx->v);
        /* q, k = apply_rotary_pos_emb(q, k, cos, sin) */
        for (int b = 0; b < B; b++) {
            const float *cs = ctx->rope_cs + (size_t)b * (size_t)c->n_rot;
            rope(ctx->q + (size_t)b * Q, c->n_head, c->head_dim, c->n_rot, cs);
            rope(ctx->k + (size_t)b * KV, c->n_head_kv, c->head_dim, c->n_rot, cs);
        }
        /* past_key_value.update(k, v) */
        kv_store(ctx, l, pos0, B);
        /* attn = softmax(q @ k.T / sqrt(d) + causal_mask) @ v   (GQA: repeat_kv) */
        attn_task at = {ctx, l, pos0, B};
        sl_pool_run(ctx->pool, attn_worker, &at);
        /* x = x + o_proj(attn) */
        sl_matmul(ctx->pool, L->wo.mm_type, L->wo.mm_data, E, Q, ctx->attn, B, ctx->xb2);
        for (size_t i = 0; i < (size_t)B * E; i++) ctx->x[i] += ctx->xb2[i];
        /* h = post_attention_layernorm(x) */
        for (int b = 0; b < B; b++) rmsnorm(ctx->xb + (size_t)b * E, ctx->x + (size_t)b * E, L->ffn_norm, E, c->rms_eps);
        /* x = x + mlp(h) */
        mlp_forward(ctx, l, B);
        for (size_t i = 0; i < (size_t)B * E; i++) ctx->x[i] += ctx->xb2[i];
        if (ctx->hidden_hook) ctx->hidden_hook(ctx->hidden_hook_ud, l, pos0, B, ctx->x, E);
    }

    /* logits = lm_head(norm(x)) — only for the rows the caller wants */
    if (!logits_out) return;
    const int first = all_logits ? 0 : B - 1, n_rows = B - first;
    for (int b = first; b < B; b++) rmsnorm(ctx->xb + (size_t)(b - first) * E, ctx->x + (size_t)b * E, m->output_norm, E, c->rms_eps);
    sl_matmul(ctx->pool, m->output.mm_type, m->output.mm_data, c->n_vocab, E, ctx->xb, n_rows, logits_out);
}

sl_status sl_eval(sl_context *ctx, const int32_t *tokens, int32_t n_tokens, float *logits, bool all_logits, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || !tokens || n_tokens <= 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "eval: no tokens given");
    const sl_model_config *c = &ctx->model->config;
    if (n_tokens > ctx->n_ctx - ctx->n_past)
        return sl_set_error(err, SL_ERR_RANGE, "eval: %d tokens at position %d exceed the context of %d tokens", n_tokens, ctx->n_past,
                            ctx->n_ctx);
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return sl_set_error(err, SL_ERR_RANGE, "eval: token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                                c->n_vocab);
    for (int32_t done = 0; done < n_tokens;) {
        int B = n_tokens - done < ctx->n_batch ? n_tokens - done : ctx->n_batch;
        bool last = done + B == n_tokens;
        float *dst = NULL;
        bool all = false;
        if (logits && all_logits) {
            dst = logits + (size_t)done * (size_t)c->n_vocab;
            all = true;
        } else if (logits && last) {
            dst = logits;
        }
        forward_batch(ctx, tokens + done, B, dst, all);
        ctx->n_past += B;
        done += B;
    }
    return SL_OK;
}
