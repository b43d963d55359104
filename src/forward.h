/*
 * forward.h — the context's internals (internal): KV cache layout and scratch buffers, shared
 * by forward.c and the code that extends the forward pass (sparse MLP, calibration hooks).
 */
#ifndef SL_FORWARD_H
#define SL_FORWARD_H

#include "model.h"
#include "select.h"
#include "profile.h"
#include "sparse_bundle.h"
#include "sparse_mlp.h"
#include "threadpool.h"

/* Called with the residual stream x [B, n_embd] of the tokens at pos0..: once with layer = -1
 * (the embeddings), then after each block l = 0..n_layer-1. */
typedef void (*sl_hidden_hook)(void *ud, int layer, int pos0, int B, const float *x, int n_embd);

/* Called in the dense MLP with its input x [B, n_embd] (after ffn_norm) and the gate
 * pre-activations gate [B, n_ff] (calibration, predictor training, tests). */
typedef void (*sl_mlp_hook)(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff);

/* What a sparse layer needs beyond the model's weights. */
typedef struct sl_sparse_layer {
    sl_neuron_bundle bundle; /* the layer's MLP neuron by neuron (gate rows only for predictor rules) */
    float stat_z;      /* PRED_STAT_TOPK: PhiInv(1 - topk / n_ff) */
    sl_cats_cut cut;   /* CATS: the threshold as cut-offs on the gate pre-activation (select.h) */
} sl_sparse_layer;

struct sl_context {
    const sl_model *model; /* borrowed; must outlive the context */
    int n_ctx;             /* KV cache capacity in tokens */
    int n_batch;           /* tokens per forward_batch step */
    int n_threads;         /* threads in pool */
    int n_past;            /* tokens in the cache */
    int kv_dim;            /* n_head_kv * head_dim */
    bool kv_f16;           /* cache element type: f16 when true, else f32 */
    void *k_cache;         /* [n_layer, n_ctx, kv_dim] keys (rotated) */
    void *v_cache;         /* [n_layer, n_ctx, kv_dim] values */
    sl_pool *pool;         /* worker threads */
    float *scratch;        /* one allocation holding all buffers below */
    float *x;              /* [n_batch, n_embd] residual stream */
    float *xb;             /* [n_batch, n_embd] normed input of a sub-layer */
    float *xb2;            /* [n_batch, n_embd] sub-layer output */
    float *q;              /* [n_batch, n_head*head_dim] queries */
    float *attn;           /* [n_batch, n_head*head_dim] attention output */
    float *k;              /* [n_batch, kv_dim] new keys */
    float *v;              /* [n_batch, kv_dim] new values */
    float *hb;             /* [n_batch, n_ff] act(gate) * up */
    float *hb2;            /* [n_batch, n_ff] up */
    float *logits;         /* [n_batch, n_vocab] internal logits buffer */
    float *att;            /* [n_threads, n_ctx] attention scores, one row per thread */
    float *rope_cs;        /* [n_batch, n_rot/2, 2] cos/sin of the batch's positions */
    sl_hidden_hook hidden_hook; /* optional observer of the residual stream (tests, calibration) */
    void *hidden_hook_ud;       /* its user data */
    sl_mlp_hook mlp_hook;       /* optional observer of dense gate pre-activations */
    void *mlp_hook_ud;          /* its user data */

    /* sparse MLP (NULL/0 when dense) */
    const sl_profile *profile;  /* borrowed */
    bool sparse_prefill;        /* batches (B > 1) take the sparse path too */
    bool track_recall;          /* compute the full gate on sparse tokens to score the selection */
    sl_sparse_layer *sparse;    /* [n_layer] */
    sl_bundle_ws bws;           /* scratch of the bundled MLP */
    int32_t *idx;               /* [n_batch, n_ff] active neuron lists */
    int32_t *n_idx;             /* [n_batch] list lengths */
    float *scores;              /* [n_batch, n_ff] predictor scores / gate values */
    float *gate_full;           /* [n_batch, n_ff] true gate (track_recall) */
    float *pred_h;              /* [n_batch, max rank] A x */
    float *select_tmp;          /* [n_ff] scratch for top-k selection */
    sl_layer_stats *stats;      /* [n_layer] achieved sparsity counters */
};

/* The sparse MLP of layer l for the B tokens in ctx->xb -> ctx->xb2 (skip.c). */
void sl_mlp_sparse_forward(sl_context *ctx, int l, int B);

/* act(x) for one value: silu, relu or gelu (tanh approximation). */
float sl_activate(sl_activation act, float x);

#endif
