/*
 * context.h — the context's internals (internal): KV cache layout and scratch buffers, shared
 * by forward.c and the code that extends the forward pass from beside it: the skip model
 * (src/sparse/skip.c) through the one narrow MLP plug-in below, calibration and predictor
 * training through the observer hooks. What it is not: anything sparse — the model layer knows
 * no profile, rule or bundle; it only asks the plug-in, when there is one, whether it takes a
 * layer's MLP.
 */
#ifndef SL_MODEL_CONTEXT_H
#define SL_MODEL_CONTEXT_H

#include "model/bundle_mlp.h"
#include "model/model.h"
#include "util/threadpool.h"

#include <stdbool.h>

/* Called with the residual stream x [B, n_embd] of the tokens at pos0..: once with layer = -1
 * (the embeddings), then after each block l = 0..n_layer-1. */
typedef void (*sl_hidden_hook)(void *ud, int layer, int pos0, int B, const float *x, int n_embd);

/* Called in the dense MLP with its input x [B, n_embd] (after ffn_norm) and the gate
 * pre-activations gate [B, n_ff] (calibration, predictor training, tests). */
typedef void (*sl_mlp_hook)(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff);

/* A layer's MLP computed another way, plugged in beside the forward pass: the skip model
 * installs one when a profile is attached (sl_context_set_profile, src/sparse/skip.c).
 * forward() returns true when it has written the MLP output of layer `layer` for the B tokens
 * whose normed inputs are in ctx->xb ([B, n_embd]) into ctx->xb2 ([B, n_embd]), false to let the
 * dense MLP run. ctx->mlp_decode says whether those B tokens are decoding (each the only token of
 * its sequence in the pass: B = 1 with one sequence, or one token per sequence in a
 * multi-sequence step) rather than a prompt chunk. free() releases `state` (called by
 * sl_context_free and when replaced). */
typedef struct sl_mlp_plugin {
    bool (*forward)(void *state, sl_context *ctx, int layer, int B);
    void (*free)(void *state);
} sl_mlp_plugin;

struct sl_context {
    const sl_model *model; /* borrowed; must outlive the context */
    int n_ctx;             /* KV cache capacity in tokens */
    int n_batch;           /* tokens per forward_batch step */
    int n_threads;         /* threads in pool */
    int n_seq;             /* sequences, each with its own cache of n_ctx tokens */
    int32_t *seq_past;     /* [n_seq] tokens in each sequence's cache */
    int kv_dim;            /* n_head_kv * head_dim */
    bool kv_f16;           /* cache element type: f16 when true, else f32 */
    void *k_cache;         /* [n_seq, n_layer, n_ctx, kv_dim] keys (rotated) */
    void *v_cache;         /* [n_seq, n_layer, n_ctx, kv_dim] values */
    int32_t *row_seq;      /* [n_batch] the sequence of each row of the current pass */
    int32_t *row_pos;      /* [n_batch] its position in that sequence */
    int32_t *out_rows;     /* [n_batch] the rows whose logits the current pass writes, in order */
    int32_t *row_tok;      /* [n_batch] token ids of a multi-sequence pass */
    int32_t *seq_count;    /* [n_seq] scratch: tokens per sequence in a batch */
    int n_decode;          /* leading rows of the current pass that are decoding (see sl_mlp_plugin) */
    bool mlp_decode;       /* the rows handed to the MLP plug-in now are decoding */
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
    float *rope_cs;        /* [2][n_batch, n_rot/2, 2] cos/sin of the batch's positions, for the RoPE of
                              global layers and of windowed ones (model.h, sl_layer.rope) */
    const float *rope_factors; /* the RoPE divisors for this context's size (sl_model_rope_factors), or NULL */
    sl_hidden_hook hidden_hook; /* optional observer of the residual stream (tests, calibration) */
    void *hidden_hook_ud;       /* its user data */
    sl_mlp_hook mlp_hook;       /* optional observer of dense gate pre-activations */
    void *mlp_hook_ud;          /* its user data */

    sl_layer_stats *stats;      /* [n_layer] per-layer MLP counters and times (the plug-in adds its own) */
    bool track_recall;          /* ask the plug-in to score its selection against the true mask */
    const sl_mlp_plugin *mlp;   /* the plugged-in MLP (NULL: dense everywhere) */
    void *mlp_state;            /* its state (owned through mlp->free) */
    sl_bundle_ws bws;           /* scratch of the dense MLP over the model's bundles */
    sl_status fault;            /* a failure inside the forward pass (scratch memory), reported by sl_eval */
};

/* Install (or, with plugin NULL, remove) the MLP plug-in, freeing the previous one's state. */
void sl_context_set_mlp_plugin(sl_context *ctx, const sl_mlp_plugin *plugin, void *state);

#endif
