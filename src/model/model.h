/*
 * model.h — the in-memory model: hyperparameters plus typed views of the mmapped weights
 * (internal). What it is for: giving forward.c (and the sparse/profile code) direct, named
 * access to every weight matrix. What it is not: a copy of the weights — every pointer below
 * points into the GGUF mapping, except the small norm vectors, which are converted to f32 if a
 * file stores them in another type, and the one exception made for speed: Q4_0 matrices are
 * repacked at load into the interleaved layout the matrix-vector kernel wants (mm_data).
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include "format/gguf.h"
#include "util/threadpool.h"
#include "skipllama.h"

#include <pthread.h>

struct sl_vocab;
struct sl_arch;
struct sl_neuron_bundle;

/* A 2-D weight matrix in the file: `rows` rows of `cols` elements of `type`, row-major
 * (GGUF ne[0] = cols, ne[1] = rows). y = W·x maps cols -> rows. */
typedef struct sl_weight {
    const void *data;    /* rows * row_bytes bytes, in the mapping */
    sl_type type;        /* element type */
    int64_t rows;     /* output features (ne[1]) */
    int64_t cols;     /* input features (ne[0]) */
    size_t row_bytes; /* bytes per row = sl_type_row_size(type, cols) */
    /* For the model's own matrices (NULL/0 in views made elsewhere): what the dense products
     * read, i.e. data, or the model's Q4_0x4 copy of it (model.c, repack_q4_0). */
    const void *mm_data; /* data, or [rows rounded up to 4, cols] in the Q4_0x4 layout */
    sl_type mm_type;     /* type, or SL_TYPE_Q4_0X4 */
} sl_weight;

/* A view of a row-major matrix held elsewhere (mm_data = data). */
static inline sl_weight sl_weight_view(const void *data, sl_type type, int64_t rows, int64_t cols) {
    sl_weight w = {data, type, rows, cols, sl_type_row_size(type, cols), data, type};
    return w;
}

/* A layer's tensors. Matrices may be views into one fused tensor of the file (Phi-3's attn_qkv
 * and gate|up ffn_up): row ranges of it, no copies. Vectors are f32 (norm_f32 in model.c);
 * NULL where the file or the architecture has none. */
typedef struct sl_layer {
    const float *attn_norm;      /* [n_embd] RMSNorm weight before attention */
    sl_weight wq;                /* [n_head*head_dim, n_embd] */
    sl_weight wk;                /* [n_head_kv*head_dim, n_embd] */
    sl_weight wv;                /* [n_head_kv*head_dim, n_embd] */
    const float *bq, *bk, *bv;   /* their biases (Qwen2), or NULL */
    const float *attn_q_norm;    /* [head_dim] RMSNorm of each query head (Qwen3, Gemma 3), or NULL */
    const float *attn_k_norm;    /* [head_dim] the same for key heads, or NULL */
    sl_weight wo;                /* [n_embd, n_head*head_dim] */
    const float *bo;             /* its bias, or NULL */
    const float *attn_post_norm; /* [n_embd] RMSNorm of the attention output (Gemma 2/3), or NULL */
    const float *ffn_norm;       /* [n_embd] RMSNorm weight before the MLP */
    sl_weight ffn_gate;          /* [n_ff, n_embd] */
    sl_weight ffn_up;            /* [n_ff, n_embd] */
    sl_weight ffn_down;          /* [n_embd, n_ff] */
    const float *ffn_post_norm;  /* [n_embd] RMSNorm of the MLP output (Gemma 2/3), or NULL */
    bool swa;                    /* attends to the last n_swa positions only */
    int rope;                    /* its RoPE parameters: sl_model.rope[rope] (1 = windowed layers') */
} sl_layer;

/* RoPE as ggml computes it (ggml_rope_ext): pair i of a token at position p turns by
 * theta = p * base^(-2i/n_rot) / factor_i, YaRN-blended between theta * freq_scale and theta
 * when ext_factor != 0, and cos/sin are scaled by mscale. */
typedef struct sl_rope_params {
    float base;        /* theta base (rope.freq_base) */
    float freq_scale;  /* 1 / rope.scaling.factor (linear, YaRN), or 1 */
    float ext_factor;  /* 1 for YaRN, else 0 */
    float attn_factor; /* llama.cpp's yarn_attn_factor (times rope.scaling.attn_factor) */
    float beta_fast;   /* YaRN correction range (32, 1) */
    float beta_slow;
    int32_t n_ctx_orig; /* rope.scaling.original_context_length (YaRN ranges, LongRoPE's choice) */
} sl_rope_params;

struct sl_model {
    sl_model_config config;   /* hyperparameters (public view) */
    const struct sl_arch *arch; /* the architecture's row (arch.h) */
    gguf_file *gguf;          /* the open file; owns the mapping */
    char *path;               /* file path (owned) */
    sl_weight tok_embd;       /* [n_vocab, n_embd] token embeddings */
    float embd_scale;         /* embeddings are multiplied by this (Gemma: sqrt(n_embd)), else 1 */
    const float *output_norm; /* [n_embd] final RMSNorm weight */
    sl_weight output;         /* [n_vocab, n_embd] output projection (== tok_embd when tied) */
    const float *output_b;    /* [n_vocab] its bias, or NULL */
    float final_softcap;      /* logits -> cap * tanh(logits / cap) when > 0 */
    float attn_scale;         /* scores = q.k * attn_scale (1/sqrt(head_dim), or Gemma's) */
    float attn_softcap;       /* scores -> cap * tanh(scores / cap) when > 0 */
    const float *rope_freqs;  /* [n_rot/2] RoPE frequency divisors (Llama 3.1+), or NULL */
    const float *rope_long;   /* [n_rot/2] LongRoPE divisors for contexts beyond n_ctx_orig (Phi-3), or NULL */
    const float *rope_short;  /* [n_rot/2] ... and within it, or NULL */
    sl_rope_params rope[2];   /* [0]: global layers, [1]: windowed layers */
    sl_layer *layers;         /* [n_layer] */
    float *owned_f32;         /* vectors converted to f32 when stored otherwise (owned), or NULL */
    void *repacked;           /* Q4_0x4 copies of the Q4_0 matrices (owned, sl_alloc_huge), or NULL */
    size_t repacked_bytes;    /* their size */
    int64_t n_params;         /* total elements of all tensors */
    struct sl_vocab *vocab;   /* tokenizer, or NULL when the file has none */
    struct sl_hf *hf;         /* a Hugging Face folder: what gguf's tensors point into (hf.h), or NULL */
    char warnings[1024];      /* load-time problems that did not stop it, one per line (sl_model_warnings) */
    /* The MLP as neuron bundles (model/bundle.h), one per layer, or NULL: built at load
     * (sl_model_params.bundled) or built by the first sparse user
     * (sl_model_bundles). Published once, never changed afterwards. */
    struct sl_neuron_bundle *_Atomic bundles;
    bool dense_bundled;       /* the dense forward pass reads the bundles (set at load only) */
    uint8_t *bundle_mem;      /* their memory when built (owned, sl_alloc_huge), or NULL */
    size_t bundle_bytes;      /* its size */
    pthread_mutex_t bundle_mu; /* serialises a build after load */
};

/* Build a model from an open GGUF file (taking ownership of f, closed on failure too). path is
 * for messages and info. sl_model_load is gguf_open + this; a loader of another format makes the
 * same gguf_file in memory. */
sl_model *sl_model_init_gguf(gguf_file *f, const char *path, const sl_model_params *params, sl_error *err);

/* The RoPE divisors a context of n_ctx tokens uses: rope_freqs, else LongRoPE's long factors when
 * n_ctx > n_ctx_orig (llama.cpp decides by the context size), else its short ones, else NULL. */
const float *sl_model_rope_factors(const sl_model *m, int n_ctx);
/* The model's bundles, building them on first use when the model was loaded without them (for
 * the sparse paths; the dense path keeps reading the file). pool may be NULL. NULL with *err
 * set when they cannot be built (memory, a type without a bundle layout). Thread-safe. */
const struct sl_neuron_bundle *sl_model_bundles(const sl_model *m, sl_pool *pool, sl_error *err);
/* Build them at load, release the file's MLP pages, and have the dense path read them. */
sl_status sl_model_bundle_at_load(sl_model *m, int n_threads, sl_error *err);
void sl_model_bundles_free(sl_model *m);

#endif
