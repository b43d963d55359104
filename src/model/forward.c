/*
 * forward.c — the transformer forward pass over a KV cache (sl_eval), for every architecture of
 * the table in arch.h.
 *
 * What it is for: turning a batch of token ids into logits, one block after the other, as the
 * PyTorch reference (HF's LlamaModel, and Qwen2/Qwen3/Phi3/Gemma2/Gemma3 for the optional steps)
 * does and as llama.cpp computes it; each step quotes the line it implements. It is one pass:
 * the steps some architectures lack (biases, q/k norms, post-norms, capping, windows, embedding
 * scale) are switched by the resolved fields of sl_model / sl_layer (NULL vector = no step),
 * never by testing the architecture's name. Weight products go through sl_matmul (src/kernels),
 * which picks SIMD variants; the batch of prompt tokens goes through each weight matrix at once
 * (prefill), and a single token is the B = 1 case (decode). What it is not: the context's
 * buffers (context.c) or the MLP sparsity logic — the MLP step is one function (mlp_forward),
 * which asks the context's MLP plug-in (context.h) first.
 */
#include "model/arch.h"
#include "model/context.h"

#include "format/quant.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- building blocks ------------------------------------------------------------------------ */

/* out = x * rsqrt(mean(x^2) + eps) * w        (LlamaRMSNorm; Gemma's files store 1 + w) */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* x[b, :] += bias for B rows of n */
static void add_bias(float *x, const float *bias, int B, int n) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) x[(size_t)b * n + i] += bias[i];
}

/* x -> cap * tanh(x / cap)    (Gemma 2's soft-capping; ggml: scale by 1/cap, tanh, scale by cap) */
static void softcap(float *x, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * (1.0f / cap));
}

/* YaRN's blend ramp over pair index i (ggml's rope_yarn_ramp, i0 / 2 = i). */
static float yarn_ramp(float low, float high, int i) {
    const float y = ((float)i - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(1.0f, fmaxf(0.0f, y));
}

/* cos/sin of every pair i < n_rot/2 for the B tokens at pos0.., exactly as ggml_rope_ext
 * computes them (ggml_rope_cache_init / rope_yarn): theta_i = p * base^(-2i/n_rot) by repeated
 * multiplication, divided by freq_factors[i] (Llama 3.1 rope_freqs, Phi-3 LongRoPE), scaled by
 * freq_scale (linear / YaRN) — for YaRN blended back towards the unscaled angle on the
 * high-frequency pairs, with the magnitude correction 1 + 0.1 ln(1/freq_scale). Computed once per
 * batch, shared by all layers of that RoPE. cs: [B, n_rot/2, 2]. */
static void rope_table(float *cs, int B, int pos0, int n_rot, const sl_rope_params *r, const float *freq_factors) {
    const float theta_scale = powf(r->base, -2.0f / (float)n_rot);
    float corr[2] = {0.0f, 0.0f}; /* ggml_rope_yarn_corr_dims */
    if (r->ext_factor != 0.0f) {
        const float two_log_base = 2.0f * logf(r->base);
        corr[0] = fmaxf(0.0f, floorf((float)n_rot * logf((float)r->n_ctx_orig / (r->beta_fast * 2.0f * (float)M_PI)) / two_log_base));
        corr[1] = fminf((float)(n_rot - 1),
                        ceilf((float)n_rot * logf((float)r->n_ctx_orig / (r->beta_slow * 2.0f * (float)M_PI)) / two_log_base));
    }
    for (int b = 0; b < B; b++) {
        float theta = (float)(pos0 + b);
        float *c = cs + (size_t)b * (size_t)n_rot;
        for (int i = 0; i < n_rot / 2; i++) {
            const float extrap = theta / (freq_factors ? freq_factors[i] : 1.0f), interp = r->freq_scale * extrap;
            float t = interp, mscale = r->attn_factor;
            if (r->ext_factor != 0.0f) {
                const float mix = yarn_ramp(corr[0], corr[1], i) * r->ext_factor;
                t = interp * (1.0f - mix) + extrap * mix;
                mscale *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
            }
            c[2 * i] = cosf(t) * mscale;
            c[2 * i + 1] = sinf(t) * mscale;
            theta *= theta_scale;
        }
    }
}

/* Rotate the first n_rot dims of each head by the token's angles: pairs (2i, 2i+1) in the
 * interleaved "llama" layout, (i, i + n_rot/2) in NeoX's (HF's rotate_half); the other dims
 * (Phi-3's partial rotary) stay. NEOX_TO_NORM rotates NeoX's pairs and stores them interleaved
 * (a Hugging Face llama folder: attention then sees exactly its GGUF file's q and k). */
static void rope(float *v, int n_heads, int head_dim, int n_rot, sl_rope_layout layout, const float *cs) {
    if (layout == SL_ROPE_NEOX_TO_NORM && head_dim <= SL_ROPE_MAX_HEAD) { /* (hf.c checks the size) */
        float t[SL_ROPE_MAX_HEAD];
        for (int h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * head_dim;
            for (int i = 0; i < n_rot / 2; i++) {
                const float c = cs[2 * i], s = cs[2 * i + 1], a = p[i], b = p[i + n_rot / 2];
                t[2 * i] = a * c - b * s;
                t[2 * i + 1] = a * s + b * c;
            }
            memcpy(p, t, (size_t)n_rot * sizeof(float));
        }
        return;
    }
    const int off = layout == SL_ROPE_NEOX ? n_rot / 2 : 1, step = layout == SL_ROPE_NEOX ? 1 : 2;
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1], a = p[step * i], b = p[step * i + off];
            p[step * i] = a * c - b * s;
            p[step * i + off] = a * s + b * c;
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
 * prefix — or, in a windowed layer, its last n_swa positions — reading each cached K/V row once
 * per slice (sl_attention_group). Groups are sliced only when there are fewer (token, KV head)
 * pairs than threads. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_task *t = arg;
    sl_context *ctx = t->ctx;
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    const size_t elem = ctx->kv_f16 ? 2 : 4, row_bytes = (size_t)ctx->kv_dim * elem;
    const size_t layer_off = (size_t)t->layer * (size_t)ctx->n_ctx * row_bytes;
    const uint8_t *kc = (const uint8_t *)ctx->k_cache + layer_off, *vc = (const uint8_t *)ctx->v_cache + layer_off;
    const int window = m->layers[t->layer].swa ? c->n_swa : 0;
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
        /* positions first..p: the causal prefix, cut to the window (llama.cpp masks p - j >= n_swa) */
        const int n_pos = t->pos0 + b + 1, first = window && n_pos > window ? n_pos - window : 0;
        const size_t off = (size_t)b * q_dim + (size_t)h0 * c->head_dim;
        sl_attention_group(ctx->q + off, n_q, kc + (size_t)first * row_bytes, vc + (size_t)first * row_bytes, ctx->kv_f16,
                           n_pos - first, ctx->kv_dim, kvh, c->head_dim, m->attn_scale, m->attn_softcap, ctx->attn + off, att);
    }
}

typedef struct gate_observer {
    sl_context *ctx; /* whose mlp_hook sees the gate */
    int layer;       /* the layer */
} gate_observer;

static void observe_gate(void *ud, const float *gate, int B) {
    const gate_observer *o = ud;
    const sl_model_config *c = &o->ctx->model->config;
    o->ctx->mlp_hook(o->ctx->mlp_hook_ud, o->layer, B, o->ctx->xb, c->n_embd, gate, c->n_ff);
}

/* xb2 <- down(act(gate(xb)) * up(xb))    (LlamaMLP.forward; Gemma: gelu_pytorch_tanh; Phi-3:
 * gate and up are the two halves of gate_up_proj), unless the MLP plug-in (the skip model,
 * src/sparse/skip.c) takes the layer; from the model's neuron bundles when it reads them
 * (model/bundle_mlp.h), else from the three matrices. */
static void mlp_forward(sl_context *ctx, int l, int B) {
    const sl_model_config *c = &ctx->model->config;
    const sl_layer *L = &ctx->model->layers[l];
    ctx->stats[l].n_tokens += B;
    if (ctx->mlp && ctx->mlp->forward(ctx->mlp_state, ctx, l, B)) return; /* the skip model took it */
    const double t0 = sl_time_s();
    if (ctx->model->dense_bundled) {
        gate_observer o = {ctx, l};
        sl_error err;
        const sl_bundle_dense_opts opts = {.hook = ctx->mlp_hook ? observe_gate : NULL, .hook_ud = &o};
        sl_status st = sl_bundle_dense(&ctx->model->bundles[l], ctx->pool, &ctx->bws, c->act, ctx->xb, B, ctx->hb, ctx->hb2, &opts,
                                       ctx->xb2, &err);
        if (st) { /* only scratch memory can fail here: the evaluation reports it */
            memset(ctx->xb2, 0, (size_t)B * (size_t)c->n_embd * sizeof(float));
            if (!ctx->fault) ctx->fault = st;
        }
        ctx->stats[l].t_dense += sl_time_s() - t0;
        return;
    }
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
    const int E = c->n_embd, Q = c->n_head * c->head_dim, KV = ctx->kv_dim, HD = c->head_dim;
    const int pos0 = ctx->n_past;
    const sl_rope_layout layout = m->arch->rope;

    /* x = embed_tokens(input_ids)          (Gemma: x = x * normalizer, normalizer = sqrt(hidden_size)) */
    for (int b = 0; b < B; b++) {
        float *x = ctx->x + (size_t)b * E;
        sl_dequantize_row_ref(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[b] * m->tok_embd.row_bytes, x, E);
        if (m->embd_scale != 1.0f)
            for (int i = 0; i < E; i++) x[i] *= m->embd_scale;
    }
    if (ctx->hidden_hook) ctx->hidden_hook(ctx->hidden_hook_ud, -1, pos0, B, ctx->x, E);
    /* cos, sin = rotary_emb(x, position_ids)   (one table per RoPE: global, windowed layers) */
    const size_t cs_size = (size_t)B * (size_t)c->n_rot;
    rope_table(ctx->rope_cs, B, pos0, c->n_rot, &m->rope[0], ctx->rope_factors);
    if (memcmp(&m->rope[1], &m->rope[0], sizeof(m->rope[0])) != 0)
        rope_table(ctx->rope_cs + cs_size, B, pos0, c->n_rot, &m->rope[1], ctx->rope_factors);
    else
        memcpy(ctx->rope_cs + cs_size, ctx->rope_cs, cs_size * sizeof(float));

    for (int l = 0; l < c->n_layer; l++) {
        const sl_layer *L = &m->layers[l];
        /* h = input_layernorm(x) */
        for (int b = 0; b < B; b++) rmsnorm(ctx->xb + (size_t)b * E, ctx->x + (size_t)b * E, L->attn_norm, E, c->rms_eps);
        /* q, k, v = q_proj(h), k_proj(h), v_proj(h)       (Qwen2: with biases; Phi-3: qkv_proj split) */
        sl_matmul(ctx->pool, L->wq.mm_type, L->wq.mm_data, Q, E, ctx->xb, B, ctx->q);
        sl_matmul(ctx->pool, L->wk.mm_type, L->wk.mm_data, KV, E, ctx->xb, B, ctx->k);
        sl_matmul(ctx->pool, L->wv.mm_type, L->wv.mm_data, KV, E, ctx->xb, B, ctx->v);
        if (L->bq) add_bias(ctx->q, L->bq, B, Q);
        if (L->bk) add_bias(ctx->k, L->bk, B, KV);
        if (L->bv) add_bias(ctx->v, L->bv, B, KV);
        /* q, k = q_norm(q), k_norm(k)      (Qwen3, Gemma 3: RMSNorm over each head) */
        if (L->attn_q_norm)
            for (int h = 0; h < B * c->n_head; h++) rmsnorm(ctx->q + (size_t)h * HD, ctx->q + (size_t)h * HD, L->attn_q_norm, HD, c->rms_eps);
        if (L->attn_k_norm)
            for (int h = 0; h < B * c->n_head_kv; h++) rmsnorm(ctx->k + (size_t)h * HD, ctx->k + (size_t)h * HD, L->attn_k_norm, HD, c->rms_eps);
        /* q, k = apply_rotary_pos_emb(q, k, cos, sin) */
        const float *cs_l = ctx->rope_cs + (size_t)L->rope * cs_size;
        for (int b = 0; b < B; b++) {
            const float *cs = cs_l + (size_t)b * (size_t)c->n_rot;
            rope(ctx->q + (size_t)b * Q, c->n_head, HD, c->n_rot, layout, cs);
            rope(ctx->k + (size_t)b * KV, c->n_head_kv, HD, c->n_rot, layout, cs);
        }
        /* past_key_value.update(k, v) */
        kv_store(ctx, l, pos0, B);
        /* attn = softmax(q @ k.T * scaling + causal_mask) @ v   (GQA: repeat_kv; Gemma 2: scores
         * soft-capped; windowed layers: sliding_window mask) */
        attn_task at = {ctx, l, pos0, B};
        sl_pool_run(ctx->pool, attn_worker, &at);
        /* h = o_proj(attn)      (Gemma: h = post_attention_layernorm(h)) ; x = x + h */
        sl_matmul(ctx->pool, L->wo.mm_type, L->wo.mm_data, E, Q, ctx->attn, B, ctx->xb2);
        if (L->bo) add_bias(ctx->xb2, L->bo, B, E);
        if (L->attn_post_norm)
            for (int b = 0; b < B; b++) rmsnorm(ctx->xb2 + (size_t)b * E, ctx->xb2 + (size_t)b * E, L->attn_post_norm, E, c->rms_eps);
        for (size_t i = 0; i < (size_t)B * E; i++) ctx->x[i] += ctx->xb2[i];
        /* h = post_attention_layernorm(x)        (Gemma: pre_feedforward_layernorm) */
        for (int b = 0; b < B; b++) rmsnorm(ctx->xb + (size_t)b * E, ctx->x + (size_t)b * E, L->ffn_norm, E, c->rms_eps);
        /* h = mlp(h)      (Gemma: h = post_feedforward_layernorm(h)) ; x = x + h */
        mlp_forward(ctx, l, B);
        if (L->ffn_post_norm)
            for (int b = 0; b < B; b++) rmsnorm(ctx->xb2 + (size_t)b * E, ctx->xb2 + (size_t)b * E, L->ffn_post_norm, E, c->rms_eps);
        for (size_t i = 0; i < (size_t)B * E; i++) ctx->x[i] += ctx->xb2[i];
        if (ctx->hidden_hook) ctx->hidden_hook(ctx->hidden_hook_ud, l, pos0, B, ctx->x, E);
    }

    /* logits = lm_head(norm(x)) — only for the rows the caller wants (Qwen2: lm_head bias if any;
     * Gemma 2: logits = tanh(logits / cap) * cap) */
    if (!logits_out) return;
    const int first = all_logits ? 0 : B - 1, n_rows = B - first;
    for (int b = first; b < B; b++) rmsnorm(ctx->xb + (size_t)(b - first) * E, ctx->x + (size_t)b * E, m->output_norm, E, c->rms_eps);
    sl_matmul(ctx->pool, m->output.mm_type, m->output.mm_data, c->n_vocab, E, ctx->xb, n_rows, logits_out);
    if (m->output_b) add_bias(logits_out, m->output_b, n_rows, c->n_vocab);
    if (m->final_softcap > 0.0f) softcap(logits_out, (size_t)n_rows * (size_t)c->n_vocab, m->final_softcap);
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
        ctx->fault = SL_OK;
        forward_batch(ctx, tokens + done, B, dst, all);
        if (ctx->fault) return sl_set_error(err, ctx->fault, "eval: out of memory for the MLP's scratch");
        ctx->n_past += B;
        done += B;
    }
    return SL_OK;
}
