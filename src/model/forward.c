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
 * (prefill), and a single token is the B = 1 case (decode). A pass may mix sequences
 * (sl_eval_batch: a server's step): each row carries its sequence and position
 * (ctx->row_seq/row_pos), the weight products are shared by all rows, and only the KV cache rows
 * and the attention are per sequence. What it is not: the context's buffers (context.c) or the
 * MLP sparsity logic — the MLP step is one function (mlp_forward), which asks the context's MLP
 * plug-in (context.h) first.
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

/* cos/sin of every pair i < n_rot/2 for the B tokens at positions pos[0..B), exactly as ggml_rope_ext
 * computes them (ggml_rope_cache_init / rope_yarn): theta_i = p * base^(-2i/n_rot) by repeated
 * multiplication, divided by freq_factors[i] (Llama 3.1 rope_freqs, Phi-3 LongRoPE), scaled by
 * freq_scale (linear / YaRN) — for YaRN blended back towards the unscaled angle on the
 * high-frequency pairs, with the magnitude correction 1 + 0.1 ln(1/freq_scale). Computed once per
 * batch, shared by all layers of that RoPE. cs: [B, n_rot/2, 2]. */
static void rope_table(float *cs, int B, const int32_t *pos, int n_rot, const sl_rope_params *r, const float *freq_factors) {
    const float theta_scale = powf(r->base, -2.0f / (float)n_rot);
    float corr[2] = {0.0f, 0.0f}; /* ggml_rope_yarn_corr_dims */
    if (r->ext_factor != 0.0f) {
        const float two_log_base = 2.0f * logf(r->base);
        corr[0] = fmaxf(0.0f, floorf((float)n_rot * logf((float)r->n_ctx_orig / (r->beta_fast * 2.0f * (float)M_PI)) / two_log_base));
        corr[1] = fminf((float)(n_rot - 1),
                        ceilf((float)n_rot * logf((float)r->n_ctx_orig / (r->beta_slow * 2.0f * (float)M_PI)) / two_log_base));
    }
    for (int b = 0; b < B; b++) {
        float theta = (float)pos[b];
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

/* First element of the cache row of (sequence, layer, position): [n_seq, n_layer, n_ctx, kv_dim]. */
static size_t kv_index(const sl_context *ctx, int seq, int l, int pos) {
    return (((size_t)seq * (size_t)ctx->model->config.n_layer + (size_t)l) * (size_t)ctx->n_ctx + (size_t)pos) * (size_t)ctx->kv_dim;
}

/* Store row b of k and v ([B, kv_dim]) into the cache of layer l at its sequence and position. */
static void kv_store(sl_context *ctx, int l, int B) {
    const size_t row = (size_t)ctx->kv_dim;
    for (int b = 0; b < B; b++) {
        const size_t at = kv_index(ctx, ctx->row_seq[b], l, ctx->row_pos[b]);
        const float *k = ctx->k + (size_t)b * row, *v = ctx->v + (size_t)b * row;
        if (ctx->kv_f16) {
            uint16_t *kc = (uint16_t *)ctx->k_cache + at, *vc = (uint16_t *)ctx->v_cache + at;
            for (size_t i = 0; i < row; i++) {
                kc[i] = sl_fp32_to_fp16(k[i]);
                vc[i] = sl_fp32_to_fp16(v[i]);
            }
        } else {
            memcpy((float *)ctx->k_cache + at, k, row * sizeof(float));
            memcpy((float *)ctx->v_cache + at, v, row * sizeof(float));
        }
    }
}

typedef struct attn_task {
    sl_context *ctx; /* context (row_seq/row_pos: each row's sequence and position) */
    int layer;       /* block index */
    int B;           /* tokens in the batch */
} attn_task;

/* Work items are (token, KV head, slice of its query-head group) triples split evenly over
 * threads: each runs the query heads of one slice against one KV head over the causal prefix of
 * the token's own sequence — or, in a windowed layer, its last n_swa positions — reading each
 * cached K/V row once per slice (sl_attention_group). Groups are sliced only when there are fewer
 * (token, KV head) pairs than threads. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_task *t = arg;
    sl_context *ctx = t->ctx;
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    const size_t elem = ctx->kv_f16 ? 2 : 4, row_bytes = (size_t)ctx->kv_dim * elem;
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
        /* positions first..p of the row's sequence: the causal prefix, cut to the window (llama.cpp
         * masks p - j >= n_swa) */
        const size_t seq_off = kv_index(ctx, ctx->row_seq[b], t->layer, 0) * elem;
        const uint8_t *kc = (const uint8_t *)ctx->k_cache + seq_off, *vc = (const uint8_t *)ctx->v_cache + seq_off;
        const int n_pos = ctx->row_pos[b] + 1, first = window && n_pos > window ? n_pos - window : 0;
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

/* xb2 <- down(act(gate(xb)) * up(xb)) for rows r0..r0+B    (LlamaMLP.forward; Gemma:
 * gelu_pytorch_tanh; Phi-3: gate and up are the two halves of gate_up_proj), unless the MLP
 * plug-in (the skip model, src/sparse/skip.c) takes them; `decode`: they are decoding tokens;
 * from the model's neuron bundles when it reads them (model/bundle_mlp.h), else from the three
 * matrices. The plug-in and the dense path see the rows as ctx->xb / ctx->xb2 from their row 0. */
static void mlp_rows(sl_context *ctx, int l, int r0, int B, bool decode) {
    const sl_model_config *c = &ctx->model->config;
    const sl_layer *L = &ctx->model->layers[l];
    float *const xb = ctx->xb, *const xb2 = ctx->xb2;
    ctx->xb += (size_t)r0 * c->n_embd;
    ctx->xb2 += (size_t)r0 * c->n_embd;
    ctx->mlp_decode = decode;
    if (ctx->mlp && ctx->mlp->forward(ctx->mlp_state, ctx, l, B)) { /* the skip model took them */
        ctx->xb = xb, ctx->xb2 = xb2;
        return;
    }
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
        ctx->xb = xb, ctx->xb2 = xb2;
        return;
    }
    sl_matmul(ctx->pool, L->ffn_gate.mm_type, L->ffn_gate.mm_data, c->n_ff, c->n_embd, ctx->xb, B, ctx->hb);
    if (ctx->mlp_hook) ctx->mlp_hook(ctx->mlp_hook_ud, l, B, ctx->xb, c->n_embd, ctx->hb, c->n_ff);
    sl_matmul(ctx->pool, L->ffn_up.mm_type, L->ffn_up.mm_data, c->n_ff, c->n_embd, ctx->xb, B, ctx->hb2);
    const size_t n = (size_t)B * (size_t)c->n_ff;
    for (size_t i = 0; i < n; i++) ctx->hb[i] = sl_activate(c->act, ctx->hb[i]) * ctx->hb2[i];
    sl_matmul(ctx->pool, L->ffn_down.mm_type, L->ffn_down.mm_data, c->n_embd, c->n_ff, ctx->hb, B, ctx->xb2);
    ctx->stats[l].t_dense += sl_time_s() - t0;
    ctx->xb = xb, ctx->xb2 = xb2;
}

/* The MLP of the pass's B rows: its leading decoding rows (ctx->n_decode) and the rest (a prompt
 * chunk) go to mlp_rows separately, so that a plug-in can treat the decoding ones as such. */
static void mlp_forward(sl_context *ctx, int l, int B) {
    ctx->stats[l].n_tokens += B;
    const int nd = ctx->n_decode;
    if (nd == 0 || nd >= B) {
        mlp_rows(ctx, l, 0, B, nd >= B);
    } else {
        mlp_rows(ctx, l, 0, nd, true);
        mlp_rows(ctx, l, nd, B - nd, false);
    }
}

/* Run one pass of B <= n_batch tokens through the model: row b is token tokens[b] of sequence
 * ctx->row_seq[b] at position ctx->row_pos[b]; the logits of rows ctx->out_rows[0..n_out) go to
 * logits_out in that order. */
static void forward_batch(sl_context *ctx, const int32_t *tokens, int B, int n_out, float *logits_out) {
    const sl_model *m = ctx->model;
    const sl_model_config *c = &m->config;
    const int E = c->n_embd, Q = c->n_head * c->head_dim, KV = ctx->kv_dim, HD = c->head_dim;
    const int pos0 = ctx->row_pos[0]; /* for the observers (they see single-sequence passes) */
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
    rope_table(ctx->rope_cs, B, ctx->row_pos, c->n_rot, &m->rope[0], ctx->rope_factors);
    if (memcmp(&m->rope[1], &m->rope[0], sizeof(m->rope[0])) != 0)
        rope_table(ctx->rope_cs + cs_size, B, ctx->row_pos, c->n_rot, &m->rope[1], ctx->rope_factors);
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
        kv_store(ctx, l, B);
        /* attn = softmax(q @ k.T * scaling + causal_mask) @ v   (GQA: repeat_kv; Gemma 2: scores
         * soft-capped; windowed layers: sliding_window mask) */
        attn_task at = {ctx, l, B};
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
    if (!logits_out || n_out == 0) return;
    const int n_rows = n_out;
    for (int i = 0; i < n_out; i++) rmsnorm(ctx->xb + (size_t)i * E, ctx->x + (size_t)ctx->out_rows[i] * E, m->output_norm, E, c->rms_eps);
    sl_matmul(ctx->pool, m->output.mm_type, m->output.mm_data, c->n_vocab, E, ctx->xb, n_rows, logits_out);
    if (m->output_b) add_bias(logits_out, m->output_b, n_rows, c->n_vocab);
    if (m->final_softcap > 0.0f) softcap(logits_out, (size_t)n_rows * (size_t)c->n_vocab, m->final_softcap);
}

sl_status sl_eval(sl_context *ctx, const int32_t *tokens, int32_t n_tokens, float *logits, bool all_logits, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || !tokens || n_tokens <= 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "eval: no tokens given");
    const sl_model_config *c = &ctx->model->config;
    const int32_t n_past = ctx->seq_past[0];
    if (n_tokens > ctx->n_ctx - n_past)
        return sl_set_error(err, SL_ERR_RANGE, "eval: %d tokens at position %d exceed the context of %d tokens", n_tokens, n_past, ctx->n_ctx);
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return sl_set_error(err, SL_ERR_RANGE, "eval: token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                                c->n_vocab);
    for (int32_t done = 0; done < n_tokens;) {
        int B = n_tokens - done < ctx->n_batch ? n_tokens - done : ctx->n_batch;
        bool last = done + B == n_tokens;
        float *dst = NULL;
        int n_out = 0;
        if (logits && all_logits) {
            dst = logits + (size_t)done * (size_t)c->n_vocab;
            for (int b = 0; b < B; b++) ctx->out_rows[b] = b;
            n_out = B;
        } else if (logits && last) {
            dst = logits;
            ctx->out_rows[0] = B - 1;
            n_out = 1;
        }
        for (int b = 0; b < B; b++) {
            ctx->row_seq[b] = 0;
            ctx->row_pos[b] = ctx->seq_past[0] + b;
        }
        ctx->n_decode = B == 1; /* one token of one sequence: decoding */
        ctx->fault = SL_OK;
        forward_batch(ctx, tokens + done, B, n_out, dst);
        if (ctx->fault) return sl_set_error(err, ctx->fault, "eval: out of memory for the MLP's scratch");
        ctx->seq_past[0] += B;
        done += B;
    }
    return SL_OK;
}

sl_status sl_eval_batch(sl_context *ctx, const sl_batch_token *batch, int32_t n, float *logits, sl_error *err) {
    sl_clear_error(err);
    if (!ctx || !batch || n <= 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "eval_batch: no tokens given");
    const sl_model_config *c = &ctx->model->config;
    /* check everything before evaluating anything */
    int32_t *count = ctx->seq_count;
    memset(count, 0, (size_t)ctx->n_seq * sizeof(int32_t));
    for (int32_t i = 0; i < n; i++) {
        const sl_batch_token *t = &batch[i];
        if (t->seq < 0 || t->seq >= ctx->n_seq)
            return sl_set_error(err, SL_ERR_RANGE, "eval_batch: token %d names sequence %d, outside 0..%d", i, t->seq, ctx->n_seq - 1);
        if (t->token < 0 || t->token >= c->n_vocab)
            return sl_set_error(err, SL_ERR_RANGE, "eval_batch: token id %d at index %d is outside the vocabulary [0, %d)", t->token, i,
                                c->n_vocab);
        if (++count[t->seq] > ctx->n_ctx - ctx->seq_past[t->seq])
            return sl_set_error(err, SL_ERR_RANGE, "eval_batch: sequence %d holds %d tokens; %d more exceed its context of %d", t->seq,
                                ctx->seq_past[t->seq], count[t->seq], ctx->n_ctx);
    }
    memset(count, 0, (size_t)ctx->n_seq * sizeof(int32_t)); /* from here: tokens of each sequence placed so far */
    int32_t *tokens = ctx->row_tok;
    float *dst = logits;
    for (int32_t done = 0; done < n;) {
        const int B = n - done < ctx->n_batch ? n - done : ctx->n_batch;
        int n_out = 0;
        for (int b = 0; b < B; b++) {
            const sl_batch_token *t = &batch[done + b];
            tokens[b] = t->token;
            ctx->row_seq[b] = t->seq;
            ctx->row_pos[b] = ctx->seq_past[t->seq] + count[t->seq]++;
            if (t->logits && logits) ctx->out_rows[n_out++] = b;
        }
        /* leading rows that are the only token of their sequence in this pass are decoding */
        int nd = 0;
        for (bool alone = true; nd < B && alone; nd += alone)
            for (int b = 0; b < B && alone; b++) alone = b == nd || ctx->row_seq[b] != ctx->row_seq[nd];
        ctx->n_decode = nd;
        ctx->fault = SL_OK;
        forward_batch(ctx, tokens, B, n_out, dst);
        if (ctx->fault) { /* the sequences keep the passes done before this one */
            for (int b = 0; b < B; b++) count[ctx->row_seq[b]]--;
            for (int s = 0; s < ctx->n_seq; s++) ctx->seq_past[s] += count[s];
            return sl_set_error(err, ctx->fault, "eval_batch: out of memory for the MLP's scratch");
        }
        if (dst) dst += (size_t)n_out * (size_t)c->n_vocab;
        done += B;
    }
    for (int s = 0; s < ctx->n_seq; s++) ctx->seq_past[s] += count[s];
    return SL_OK;
}
