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
#include "skipllama.h"

struct sl_vocab;

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

typedef struct sl_layer {
    const float *attn_norm; /* [n_embd] RMSNorm weight before attention */
    sl_weight wq;           /* [n_head*head_dim, n_embd] */
    sl_weight wk;           /* [n_head_kv*head_dim, n_embd] */
    sl_weight wv;           /* [n_head_kv*head_dim, n_embd] */
    sl_weight wo;           /* [n_embd, n_head*head_dim] */
    const float *ffn_norm;  /* [n_embd] RMSNorm weight before the MLP */
    sl_weight ffn_gate;     /* [n_ff, n_embd] */
    sl_weight ffn_up;       /* [n_ff, n_embd] */
    sl_weight ffn_down;     /* [n_embd, n_ff] */
} sl_layer;

struct sl_model {
    sl_model_config config;   /* hyperparameters (public view) */
    gguf_file *gguf;          /* the open file; owns the mapping */
    char *path;               /* file path (owned) */
    sl_weight tok_embd;       /* [n_vocab, n_embd] token embeddings */
    const float *output_norm; /* [n_embd] final RMSNorm weight */
    sl_weight output;         /* [n_vocab, n_embd] output projection (== tok_embd when tied) */
    const float *rope_freqs;  /* [n_rot/2] RoPE frequency divisors, or NULL */
    sl_layer *layers;         /* [n_layer] */
    float *owned_f32;         /* norms converted to f32 when stored otherwise (owned), or NULL */
    void *repacked;           /* Q4_0x4 copies of the Q4_0 matrices (owned, sl_alloc_huge), or NULL */
    size_t repacked_bytes;    /* their size */
    int64_t n_params;         /* total elements of all tensors */
    struct sl_vocab *vocab;   /* tokenizer, or NULL when the file has none */
};

#endif
