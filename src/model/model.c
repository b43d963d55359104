/*
 * model.c — building an sl_model from a GGUF file: reading the `<arch>.*` hyperparameters the
 * architecture's row of the table (arch.h) asks for, checking that every tensor it needs is
 * present with exactly the expected shape, and recording typed views of the weights (no copies;
 * fused tensors become row ranges; see model.h).
 *
 * What it is not: the forward pass (forward.c), the per-architecture facts (arch.c), the
 * tokenizer (tokenizer.c; called from here to attach the vocabulary) or `info` (model_info.c).
 * Any architecture is accepted when only the vocabulary is loaded.
 */
#include "model/model.h"

#include "model/arch.h"
#include "model/hf.h"
#include "kernels/kernels.h"

#include "format/quant.h"
#include "text/tokenizer.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_MAX_LAYERS 4096
#define SL_MAX_DIM (1 << 20)

sl_model_params sl_model_default_params(void) {
    sl_model_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

const char *sl_activation_name(sl_activation act) {
    switch (act) {
    case SL_ACT_SILU: return "silu";
    case SL_ACT_RELU: return "relu";
    case SL_ACT_GELU: return "gelu";
    case SL_ACT_GELU_F16: return "gelu_f16";
    }
    return NULL;
}

bool sl_activation_from_name(const char *name, sl_activation *out) {
    static const sl_activation all[] = {SL_ACT_SILU, SL_ACT_RELU, SL_ACT_GELU, SL_ACT_GELU_F16};
    if (!name) return false;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(name, sl_activation_name(all[i]))) {
            *out = all[i];
            return true;
        }
    return false;
}

void sl_model_free(sl_model *m) {
    if (!m) return;
    sl_model_bundles_free(m);
    pthread_mutex_destroy(&m->bundle_mu);
    sl_vocab_free(m->vocab);
    free(m->layers);
    free(m->owned_f32);
    sl_free_huge(m->repacked);
    free(m->path);
    gguf_close(m->gguf);
    sl_hf_free(m->hf); /* after the file: its tensors point into it */
    free(m);
}

/* Read a required positive integer hyperparameter "<arch>.<name>". */
static bool get_dim(const gguf_file *f, const char *key, int32_t *out, bool required, int32_t def, sl_error *err) {
    uint32_t v;
    if (!gguf_find_kv(f, key)) {
        if (required) {
            sl_set_error(err, SL_ERR_FORMAT, "model: missing required metadata key '%s'", key);
            return false;
        }
        *out = def;
        return true;
    }
    if (!gguf_get_u32(f, key, &v) || v == 0 || v > SL_MAX_DIM) {
        sl_set_error(err, SL_ERR_FORMAT, "model: metadata '%s' must be an integer in 1..%d", key, SL_MAX_DIM);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

/* Find a tensor and check it is [rows, cols] (ne[0] = cols). rows == 0 means 1-D of cols. */
static bool get_tensor(const gguf_file *f, const char *name, int64_t cols, int64_t rows, bool required,
                       const gguf_tensor_info **out, sl_error *err) {
    const gguf_tensor_info *t = gguf_find_tensor(f, name);
    *out = t;
    if (!t) {
        if (required) sl_set_error(err, SL_ERR_FORMAT, "model: missing required tensor '%s'", name);
        return !required;
    }
    bool ok = t->ne[0] == cols && t->ne[2] == 1 && t->ne[3] == 1 && (rows ? t->ne[1] == rows : t->ne[1] == 1);
    if (!ok) {
        sl_set_error(err, SL_ERR_FORMAT, "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                     (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (long long)cols,
                     (long long)(rows ? rows : 1));
        return false;
    }
    return true;
}

static sl_weight weight_of(const gguf_tensor_info *t) {
    sl_weight w;
    w.data = t->data;
    w.type = t->type;
    w.cols = t->ne[0];
    w.rows = t->ne[1];
    w.row_bytes = sl_type_row_size(t->type, t->ne[0]);
    w.mm_data = w.data;
    w.mm_type = w.type;
    return w;
}

/* Matrix i of those dense products read: 7 per layer in file order, then the output (i ==
 * 7 * n_layer). */
static sl_weight *matrix_at(sl_model *m, int64_t i) {
    if (i >= 7 * (int64_t)m->config.n_layer) return &m->output;
    sl_layer *L = &m->layers[i / 7];
    sl_weight *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    return all[i % 7];
}

/* Copies every Q4_0 matrix that dense products read (not the MLP's when the bundles replace it)
 * into the Q4_0x4 layout (quant.h), when the
 * selected kernels have a fast path for it, and releases the file pages it read so the resident
 * size does not double. Not an error when memory is short: the model then computes from the
 * mapping, which is slower but exact (the layouts give bit-identical dot products per block). */
/* The MLP matrices of a model whose dense path reads its bundles are not read at all. */
static bool skip_matrix(const sl_model *m, int64_t i) { return m->dense_bundled && i < 7 * (int64_t)m->config.n_layer && i % 7 >= 4; }

static void repack_q4_0(sl_model *m) {
    if (!sl_kernels_fast_q4_0x4()) return;
    const int64_t n_mat = 7 * (int64_t)m->config.n_layer + 1;
    size_t total = 0;
    for (int64_t i = 0; i < n_mat; i++) {
        const sl_weight *w = matrix_at(m, i);
        size_t sz = w->type == SL_TYPE_Q4_0 && !skip_matrix(m, i) ? sl_q4_0x4_size(w->rows, w->cols) : 0;
        if (total + sz < total) return;
        total += sz;
    }
    uint8_t *buf = total ? sl_alloc_huge(total) : NULL;
    if (!buf) return;
    m->repacked = buf;
    m->repacked_bytes = total;
    for (int64_t i = 0; i < n_mat; i++) {
        sl_weight *w = matrix_at(m, i);
        if (w->type != SL_TYPE_Q4_0 || skip_matrix(m, i)) continue;
        /* in slices of ~4 MiB of the file, each released once copied, so the resident size
         * never holds both forms of a whole matrix (the output matrix of a 128k vocabulary is
         * 150 MB); with tied embeddings, token lookups later fault single rows back in */
        const int64_t groups = (w->rows + 3) / 4, group_bytes = 4 * (int64_t)w->row_bytes;
        const int64_t step = group_bytes >= (4 << 20) ? 1 : (4 << 20) / group_bytes;
        for (int64_t g0 = 0; g0 < groups; g0 += step) {
            int64_t g1 = g0 + step < groups ? g0 + step : groups;
            sl_q4_0x4_repack(w->data, w->rows, w->cols, buf, g0, g1);
            int64_t r0 = 4 * g0, r1 = 4 * g1 < w->rows ? 4 * g1 : w->rows;
            gguf_release_pages(m->gguf, (const uint8_t *)w->data + (size_t)r0 * w->row_bytes, (size_t)(r1 - r0) * w->row_bytes);
        }
        w->mm_data = buf;
        w->mm_type = SL_TYPE_Q4_0X4;
        buf += sl_q4_0x4_size(w->rows, w->cols);
        memset(buf - 64, 0, 64); /* the tail padding (quant.h) */
    }
}

/* "<arch>.<name>" of this model's architecture. */
static const char *akey(const sl_model *m, const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s.%s", m->arch->name, name);
    return buf;
}

/* An optional float key "<arch>.<name>": *out unchanged when absent; an error when present but
 * not a finite number in [lo, hi]. */
static bool get_float(const sl_model *m, const char *name, float lo, float hi, float *out, sl_error *err) {
    char key[96];
    akey(m, name, key, sizeof(key));
    if (!gguf_find_kv(m->gguf, key)) return true;
    float v;
    if (!gguf_get_f32(m->gguf, key, &v) || !(v >= lo && v <= hi)) {
        sl_set_error(err, SL_ERR_FORMAT, "model: metadata '%s' must be a number in [%g, %g]", key, (double)lo, (double)hi);
        return false;
    }
    *out = v;
    return true;
}

/* The RoPE parameters, as llama.cpp's llama_context derives them from the metadata: scaling
 * type (absent = linear), factor, original context, attention factor; YaRN's ext_factor and
 * magnitude correction (llama_context's cparams.yarn_attn_factor, ggml's rope_yarn). */
static bool load_rope(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    sl_model_config *c = &m->config;
    char key[96], buf[32] = "linear";
    gguf_str s;
    if (gguf_find_kv(f, akey(m, "rope.scaling.type", key, sizeof(key))) && !gguf_get_str(f, key, &s))
        return sl_set_error(err, SL_ERR_FORMAT, "model: metadata '%s' must be a string", key), false;
    if (gguf_find_kv(f, key)) gguf_str_copy(s, buf, sizeof(buf));
    const bool yarn = !strcmp(buf, "yarn"), none = !strcmp(buf, "none");
    if (!yarn && !none && strcmp(buf, "linear") && strcmp(buf, "longrope"))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "model: rope scaling '%s' is not supported (none, linear, yarn, longrope)", buf),
               false;
    float factor = 0.0f, attn = 1.0f, base = 10000.0f;
    if (!get_float(m, "rope.scale_linear", 0.0f, 1e6f, &factor, err) || !get_float(m, "rope.scaling.factor", 0.0f, 1e6f, &factor, err) ||
        !get_float(m, "rope.scaling.attn_factor", 0.0f, 1e6f, &attn, err) || !get_float(m, "rope.freq_base", 1.0f, 1e30f, &base, err))
        return false;
    if (!(base > 1.0f)) return sl_set_error(err, SL_ERR_FORMAT, "model: rope.freq_base must be a finite number > 1"), false;
    if (factor != 0.0f && factor < 1e-6f) return sl_set_error(err, SL_ERR_FORMAT, "model: rope.scaling.factor %g is too small", (double)factor), false;
    int32_t orig;
    if (!get_dim(f, akey(m, "rope.scaling.original_context_length", key, sizeof(key)), &orig, false, c->n_ctx_train, err)) return false;
    sl_rope_params *r = &m->rope[0];
    r->base = base;
    r->freq_scale = none || factor == 0.0f ? 1.0f : 1.0f / factor;
    r->ext_factor = yarn ? 1.0f : 0.0f;
    r->attn_factor = 1.0f;
    if (yarn) {
        const float s_ = 1.0f / r->freq_scale;
        r->attn_factor = s_ <= 1.0f ? 1.0f : 0.1f * logf(s_) + 1.0f;  /* get_mscale(factor, 1) */
        r->attn_factor *= 1.0f / (1.0f + 0.1f * logf(s_));             /* ... cancelled: ggml applies it */
    }
    r->attn_factor *= attn;
    r->beta_fast = 32.0f;
    r->beta_slow = 1.0f;
    r->n_ctx_orig = orig;
    /* windowed layers (arch.h, sl_swa_rope) */
    m->rope[1] = m->rope[0];
    if (m->arch->swa_rope == SL_SWA_ROPE_OWN) {
        m->rope[1].base = 10000.0f;
        m->rope[1].freq_scale = 1.0f;
    }
    if (m->arch->swa_rope != SL_SWA_ROPE_GLOBAL && !get_float(m, "rope.freq_base_swa", 1.0f, 1e30f, &m->rope[1].base, err)) return false;
    if (!(m->rope[1].base > 1.0f)) return sl_set_error(err, SL_ERR_FORMAT, "model: rope.freq_base_swa must be > 1"), false;
    c->rope_freq_base = base;
    return true;
}

/* Sliding window and its layer pattern (arch.h): which layers are windowed. */
static bool load_swa(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    sl_model_config *c = &m->config;
    char key[96];
    c->n_swa = 0;
    if (!m->arch->swa) return true;
    uint32_t w = m->arch->swa_default, period = m->arch->swa_period;
    if (gguf_find_kv(f, akey(m, "attention.sliding_window", key, sizeof(key))) && (!gguf_get_u32(f, key, &w) || w > (1u << 30)))
        return sl_set_error(err, SL_ERR_FORMAT, "model: metadata '%s' must be an integer in 0..2^30", key), false;
    if (gguf_find_kv(f, akey(m, "attention.sliding_window_pattern", key, sizeof(key))) &&
        (!gguf_get_u32(f, key, &period) || period > 4096))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "model: metadata '%s' must be one integer period in 0..4096 (per-layer arrays are not supported)", key),
               false;
    c->n_swa = (int32_t)w;
    for (int32_t l = 0; l < c->n_layer; l++) {
        sl_layer *L = &m->layers[l];
        L->swa = w > 0 && (period == 0 || (uint32_t)l % period < period - 1);
        L->rope = L->swa ? 1 : 0;
    }
    return true;
}

static bool load_hparams(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    sl_model_config *c = &m->config;
    const sl_arch *a = m->arch;
    char key[96];
#define DIM(name, field, required, def) \
    if (!get_dim(f, akey(m, name, key, sizeof(key)), &c->field, required, def, err)) return false
    DIM("embedding_length", n_embd, true, 0);
    DIM("feed_forward_length", n_ff, true, 0);
    DIM("block_count", n_layer, true, 0);
    DIM("attention.head_count", n_head, true, 0);
    DIM("attention.head_count_kv", n_head_kv, false, c->n_head);
    DIM("context_length", n_ctx_train, false, 2048);
    if (c->n_layer > SL_MAX_LAYERS) {
        sl_set_error(err, SL_ERR_FORMAT, "model: block_count %d is larger than %d", c->n_layer, SL_MAX_LAYERS);
        return false;
    }
    const bool has_key_length = gguf_find_kv(f, akey(m, "attention.key_length", key, sizeof(key))) != NULL;
    if ((!has_key_length && c->n_embd % c->n_head) || c->n_head % c->n_head_kv) {
        sl_set_error(err, SL_ERR_FORMAT, "model: embedding_length %d / head_count %d / head_count_kv %d are not divisible",
                     c->n_embd, c->n_head, c->n_head_kv);
        return false;
    }
    DIM("attention.key_length", head_dim, false, c->n_embd / c->n_head);
    int32_t vlen;
    if (!get_dim(f, akey(m, "attention.value_length", key, sizeof(key)), &vlen, false, c->head_dim, err)) return false;
    if (vlen != c->head_dim || c->head_dim % 2) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "model: key_length %d / value_length %d must be equal and even", c->head_dim, vlen);
        return false;
    }
    DIM("rope.dimension_count", n_rot, false, c->head_dim);
#undef DIM
    if (c->n_rot > c->head_dim || c->n_rot % 2) {
        sl_set_error(err, SL_ERR_FORMAT, "model: rope.dimension_count %d must be even and at most the head size %d", c->n_rot, c->head_dim);
        return false;
    }
    c->rms_eps = 1e-5f;
    if (!get_float(m, "attention.layer_norm_rms_epsilon", 1e-30f, 1.0f, &c->rms_eps, err)) return false;
    if (!load_rope(m, err)) return false;
    c->act = a->act;
    gguf_str s;
    if (a->act_key && gguf_find_kv(f, "skipllama.activation")) {
        char buf[32];
        if (!gguf_get_str(f, "skipllama.activation", &s) || !sl_activation_from_name(gguf_str_copy(s, buf, sizeof(buf)), &c->act)) {
            sl_set_error(err, SL_ERR_UNSUPPORTED, "model: skipllama.activation must be \"silu\", \"relu\", \"gelu\" or \"gelu_f16\"");
            return false;
        }
    }
    m->attn_softcap = a->attn_softcap;
    m->final_softcap = a->final_softcap;
    if ((a->attn_softcap_key && !get_float(m, "attn_logit_softcapping", 0.0f, 1e30f, &m->attn_softcap, err)) ||
        (a->final_softcap_key && !get_float(m, "final_logit_softcapping", 0.0f, 1e30f, &m->final_softcap, err)))
        return false;
    /* llama.cpp's query scale: Gemma's 27B models scale by 1/sqrt(n_embd / n_head) (an integer
     * division), which it recognises by the layer count */
    m->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    if (a->wide_scale_layers && c->n_layer == a->wide_scale_layers) m->attn_scale = 1.0f / sqrtf((float)(c->n_embd / c->n_head));
    m->embd_scale = a->embd_scale ? sqrtf((float)c->n_embd) : 1.0f;
    return true;
}

/* The 1-D vectors (norms, biases, rope factors) are used as f32; convert them when a file
 * stores another type (into owned_f32, sized in load_tensors). */
static const float *vec_f32(sl_model *m, const gguf_tensor_info *t, float **cursor) {
    if (!t) return NULL;
    if (t->type == SL_TYPE_F32) return t->data;
    float *dst = *cursor;
    sl_dequantize_row_ref(t->type, t->data, dst, t->ne[0]);
    *cursor += t->ne[0];
    return dst;
}

/* Rows [row0, row0 + rows) of a matrix in the file: a view, no copy. */
static sl_weight rows_of(const gguf_tensor_info *t, int64_t row0, int64_t rows) {
    sl_weight w = weight_of(t);
    w.data = (const uint8_t *)t->data + (size_t)row0 * w.row_bytes;
    w.rows = rows;
    w.mm_data = w.data;
    return w;
}

static bool load_tensors(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    const sl_arch *a = m->arch;
    sl_model_config *c = &m->config;
    const gguf_tensor_info *t;
    const int64_t E = c->n_embd, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;
    const int64_t HD = c->head_dim;

    t = gguf_find_tensor(f, "token_embd.weight");
    if (!t) return sl_set_error(err, SL_ERR_FORMAT, "model: missing required tensor 'token_embd.weight'"), false;
    if (t->ne[1] < 1 || t->ne[1] > INT32_MAX) return sl_set_error(err, SL_ERR_FORMAT, "model: bad vocabulary size"), false;
    c->n_vocab = (int32_t)t->ne[1];
    if (!get_tensor(f, "token_embd.weight", E, c->n_vocab, true, &t, err)) return false;
    m->tok_embd = weight_of(t);
    uint32_t vs;
    char key[96];
    if (gguf_get_u32(f, akey(m, "vocab_size", key, sizeof(key)), &vs) && vs != (uint32_t)c->n_vocab) {
        sl_set_error(err, SL_ERR_FORMAT, "model: %s %u disagrees with token_embd rows %d", key, vs, c->n_vocab);
        return false;
    }
    t = NULL;
    if (!a->output_is_embd && !get_tensor(f, "output.weight", E, c->n_vocab, false, &t, err)) return false;
    c->tied_embeddings = t == NULL;
    m->output = t ? weight_of(t) : m->tok_embd;

    /* vectors stored in another type than f32 get converted: room for all of them (each is in
     * the file, >= 2 bytes per element, so the buffer is bounded by the file size) */
    size_t n_conv = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].n_dims == 1 && f->tensors[i].type != SL_TYPE_F32) n_conv += (size_t)f->tensors[i].ne[0];
    m->owned_f32 = malloc((n_conv ? n_conv : 1) * sizeof(float));
    m->layers = calloc((size_t)c->n_layer, sizeof(sl_layer));
    if (!m->owned_f32 || !m->layers) return sl_set_error(err, SL_ERR_NOMEM, "model: out of memory"), false;
    float *cur = m->owned_f32;
    const gguf_tensor_info *rf[3];
    if (!get_tensor(f, "output_norm.weight", E, 0, true, &t, err) || !get_tensor(f, "output.bias", c->n_vocab, 0, false, &rf[0], err))
        return false;
    m->output_norm = vec_f32(m, t, &cur);
    m->output_b = vec_f32(m, rf[0], &cur);
    if (!get_tensor(f, "rope_freqs.weight", c->n_rot / 2, 0, false, &rf[0], err) ||
        !get_tensor(f, "rope_factors_long.weight", c->n_rot / 2, 0, false, &rf[1], err) ||
        !get_tensor(f, "rope_factors_short.weight", c->n_rot / 2, 0, false, &rf[2], err))
        return false;
    c->has_rope_freqs = rf[0] != NULL;
    m->rope_freqs = vec_f32(m, rf[0], &cur);
    m->rope_long = vec_f32(m, rf[1], &cur);
    m->rope_short = vec_f32(m, rf[2], &cur);

    for (int32_t l = 0; l < c->n_layer; l++) {
        sl_layer *L = &m->layers[l];
        char name[96];
#define FIND(suffix, cols, rows, required)                                                                             \
    (snprintf(name, sizeof(name), "blk.%d." suffix, (int)l), get_tensor(f, name, cols, rows, required, &t, err))
#define MATRIX(field, suffix, cols, rows)                                                                              \
    if (!FIND(suffix, cols, rows, true)) return false;                                                                 \
    L->field = weight_of(t)
#define VECTOR(field, suffix, n, required)                                                                             \
    if (!FIND(suffix, n, 0, required)) return false;                                                                   \
    L->field = vec_f32(m, t, &cur)
        VECTOR(attn_norm, "attn_norm.weight", E, true);
        /* q, k, v: three matrices, or row ranges of one fused attn_qkv (llama.cpp's build_qkv) */
        if (!FIND("attn_qkv.weight", E, Q + 2 * KV, false)) return false;
        if (t) {
            L->wq = rows_of(t, 0, Q);
            L->wk = rows_of(t, Q, KV);
            L->wv = rows_of(t, Q + KV, KV);
            if (!FIND("attn_qkv.bias", Q + 2 * KV, 0, false)) return false;
            const float *b = vec_f32(m, t, &cur);
            L->bq = b, L->bk = b ? b + Q : NULL, L->bv = b ? b + Q + KV : NULL;
        } else {
            MATRIX(wq, "attn_q.weight", E, Q);
            MATRIX(wk, "attn_k.weight", E, KV);
            MATRIX(wv, "attn_v.weight", E, KV);
            VECTOR(bq, "attn_q.bias", Q, false);
            VECTOR(bk, "attn_k.bias", KV, false);
            VECTOR(bv, "attn_v.bias", KV, false);
        }
        if (a->qk_norm) {
            VECTOR(attn_q_norm, "attn_q_norm.weight", HD, true);
            VECTOR(attn_k_norm, "attn_k_norm.weight", HD, true);
        }
        MATRIX(wo, "attn_output.weight", Q, E);
        VECTOR(bo, "attn_output.bias", E, false);
        if (a->post_norms) {
            VECTOR(attn_post_norm, "post_attention_norm.weight", E, true);
            VECTOR(ffn_post_norm, "post_ffw_norm.weight", E, true);
        }
        VECTOR(ffn_norm, "ffn_norm.weight", E, true);
        if (a->ffn_fused_up) { /* gate rows, then up rows (ggml_swiglu's halves) */
            if (!FIND("ffn_up.weight", E, 2 * F, true)) return false;
            L->ffn_gate = rows_of(t, 0, F);
            L->ffn_up = rows_of(t, F, F);
        } else {
            MATRIX(ffn_gate, "ffn_gate.weight", E, F);
            MATRIX(ffn_up, "ffn_up.weight", E, F);
        }
        MATRIX(ffn_down, "ffn_down.weight", F, E);
        static const char *const ffn_biases[] = {"ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof(name), "blk.%d.%s", (int)l, ffn_biases[k]);
            if (gguf_find_tensor(f, name)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "model: MLP biases ('%s') are not supported", name), false;
        }
#undef VECTOR
#undef MATRIX
#undef FIND
    }
    c->weight_type = m->layers[0].ffn_gate.type;
    return true;
}

sl_model *sl_model_init_gguf(gguf_file *f, const char *path, const sl_model_params *params, sl_error *err) {
    sl_clear_error(err);
    sl_model_params p = params ? *params : sl_model_default_params();
    sl_model *m = calloc(1, sizeof(*m));
    if (!m) {
        gguf_close(f);
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->gguf = f;
    pthread_mutex_init(&m->bundle_mu, NULL);
    m->path = strdup(path ? path : "");
    if (!m->gguf || !m->path) {
        if (m->gguf) sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const gguf_tensor_info *t = &m->gguf->tensors[i];
        int64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= t->ne[d]; /* validated not to overflow */
        m->n_params += n;
    }
    gguf_str arch;
    char archbuf[64] = "";
    if (gguf_get_str(m->gguf, "general.architecture", &arch)) gguf_str_copy(arch, archbuf, sizeof(archbuf));
    if (!p.vocab_only) {
        m->arch = sl_arch_find(archbuf);
        if (!m->arch) {
            char list[128] = "";
            for (int i = 0; sl_arch_at(i); i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", sl_arch_at(i)->name);
            sl_set_error(err, SL_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (supported: %s)",
                         archbuf[0] ? archbuf : "(missing general.architecture)", list);
            goto fail;
        }
        m->config.arch = m->arch->name;
        if (!load_hparams(m, err) || !load_tensors(m, err) || !load_swa(m, err)) goto fail;
        if (p.bundled && sl_model_bundle_at_load(m, p.n_threads, err)) goto fail;
        if (!p.no_repack) repack_q4_0(m);
    }
    sl_error verr;
    sl_clear_error(&verr);
    m->vocab = sl_vocab_init_from_gguf(m->gguf, &verr);
    if (!m->vocab && verr.code != SL_OK) {
        if (err) *err = verr;
        goto fail;
    }
    if (p.vocab_only && !m->vocab) {
        sl_set_error(err, SL_ERR_FORMAT, "model: '%s' has no tokenizer (tokenizer.ggml.model)", m->path);
        goto fail;
    }
    if (m->vocab && !p.vocab_only && sl_vocab_n_tokens(m->vocab) > m->config.n_vocab) {
        sl_set_error(err, SL_ERR_FORMAT, "model: tokenizer has %d tokens but the embedding only %d rows",
                     sl_vocab_n_tokens(m->vocab), m->config.n_vocab);
        goto fail;
    }
    if (m->vocab) snprintf(m->warnings, sizeof m->warnings, "%s", m->vocab->warnings);
    if (m->vocab && !p.vocab_only && sl_vocab_n_tokens(m->vocab) < m->config.n_vocab) {
        size_t k = strlen(m->warnings);
        snprintf(m->warnings + k, sizeof m->warnings - k,
                 "the tokenizer has %d tokens but token_embd.weight has %d rows (n_vocab): ids %d..%d have no text, so "
                 "generating one fails (llama.cpp pads such vocabularies with [PAD] tokens)\n",
                 sl_vocab_n_tokens(m->vocab), m->config.n_vocab, sl_vocab_n_tokens(m->vocab), m->config.n_vocab - 1);
    }
    return m;
fail:
    sl_model_free(m);
    return NULL;
}

const char *sl_model_warnings(const sl_model *model) { return model ? model->warnings : ""; }

sl_model *sl_model_load(const char *path, const sl_model_params *params, sl_error *err) {
    sl_clear_error(err);
    if (sl_hf_is_dir(path)) { /* a Hugging Face folder, read as the GGUF file it would convert to */
        sl_hf *hf;
        gguf_file *f = sl_hf_open(path, params && params->vocab_only, &hf, err);
        if (!f) return NULL;
        sl_model *m = sl_model_init_gguf(f, path, params, err);
        if (!m) {
            sl_hf_free(hf);
            return NULL;
        }
        m->hf = hf;
        if (m->arch) m->arch = sl_hf_arch(hf); /* its RoPE layout for HF's q/k rows */
        return m;
    }
    gguf_file *f = gguf_open(path, err);
    if (!f) return NULL;
    return sl_model_init_gguf(f, path, params, err);
}

const float *sl_model_rope_factors(const sl_model *m, int n_ctx) {
    if (m->rope_freqs) return m->rope_freqs;
    if (m->rope_long && n_ctx > m->rope[0].n_ctx_orig) return m->rope_long;
    return m->rope_short;
}
