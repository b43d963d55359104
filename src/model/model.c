/*
 * model.c — building an sl_model from a GGUF file: reading the `llama.*` hyperparameters,
 * checking that every tensor the architecture needs is present with exactly the expected shape,
 * and recording typed views of the weights (no copies; see model.h).
 *
 * What it is not: the forward pass (forward.c) or the tokenizer (tokenizer.c; called from here
 * to attach the vocabulary). Only the LLaMA architecture is accepted for inference; any
 * architecture is accepted when only the vocabulary is loaded.
 */
#include "model/model.h"

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
    }
    return NULL;
}

bool sl_activation_from_name(const char *name, sl_activation *out) {
    static const sl_activation all[] = {SL_ACT_SILU, SL_ACT_RELU, SL_ACT_GELU};
    if (!name) return false;
    for (size_t i = 0; i < 3; i++)
        if (!strcmp(name, sl_activation_name(all[i]))) {
            *out = all[i];
            return true;
        }
    return false;
}

void sl_model_free(sl_model *m) {
    if (!m) return;
    sl_vocab_free(m->vocab);
    free(m->layers);
    free(m->owned_f32);
    sl_free_huge(m->repacked);
    free(m->path);
    gguf_close(m->gguf);
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

/* Copies every Q4_0 matrix that dense products read into the Q4_0x4 layout (quant.h), when the
 * selected kernels have a fast path for it, and releases the file pages it read so the resident
 * size does not double. Not an error when memory is short: the model then computes from the
 * mapping, which is slower but exact (the layouts give bit-identical dot products per block). */
static void repack_q4_0(sl_model *m) {
    if (!sl_kernels_fast_q4_0x4()) return;
    const int64_t n_mat = 7 * (int64_t)m->config.n_layer + 1;
    size_t total = 0;
    for (int64_t i = 0; i < n_mat; i++) {
        const sl_weight *w = matrix_at(m, i);
        size_t sz = w->type == SL_TYPE_Q4_0 ? sl_q4_0x4_size(w->rows, w->cols) : 0;
        if (total + sz < total) return;
        total += sz;
    }
    uint8_t *buf = total ? sl_alloc_huge(total) : NULL;
    if (!buf) return;
    m->repacked = buf;
    m->repacked_bytes = total;
    for (int64_t i = 0; i < n_mat; i++) {
        sl_weight *w = matrix_at(m, i);
        if (w->type != SL_TYPE_Q4_0) continue;
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

static bool load_hparams(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    sl_model_config *c = &m->config;
    if (!get_dim(f, "llama.embedding_length", &c->n_embd, true, 0, err)) return false;
    if (!get_dim(f, "llama.feed_forward_length", &c->n_ff, true, 0, err)) return false;
    if (!get_dim(f, "llama.block_count", &c->n_layer, true, 0, err)) return false;
    if (!get_dim(f, "llama.attention.head_count", &c->n_head, true, 0, err)) return false;
    if (!get_dim(f, "llama.attention.head_count_kv", &c->n_head_kv, false, c->n_head, err)) return false;
    if (!get_dim(f, "llama.context_length", &c->n_ctx_train, false, 2048, err)) return false;
    if (c->n_layer > SL_MAX_LAYERS) {
        sl_set_error(err, SL_ERR_FORMAT, "model: block_count %d is larger than %d", c->n_layer, SL_MAX_LAYERS);
        return false;
    }
    if (c->n_embd % c->n_head || c->n_head % c->n_head_kv) {
        sl_set_error(err, SL_ERR_FORMAT, "model: embedding_length %d / head_count %d / head_count_kv %d are not divisible",
                     c->n_embd, c->n_head, c->n_head_kv);
        return false;
    }
    if (!get_dim(f, "llama.attention.key_length", &c->head_dim, false, c->n_embd / c->n_head, err)) return false;
    int32_t vlen;
    if (!get_dim(f, "llama.attention.value_length", &vlen, false, c->head_dim, err)) return false;
    if (vlen != c->head_dim || c->head_dim % 2) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "model: key_length %d / value_length %d must be equal and even", c->head_dim, vlen);
        return false;
    }
    if (!get_dim(f, "llama.rope.dimension_count", &c->n_rot, false, c->head_dim, err)) return false;
    if (c->n_rot > c->head_dim || c->n_rot % 2) {
        sl_set_error(err, SL_ERR_FORMAT, "model: rope.dimension_count %d must be even and <= head size %d", c->n_rot, c->head_dim);
        return false;
    }
    c->rms_eps = 1e-5f;
    if (gguf_find_kv(f, "llama.attention.layer_norm_rms_epsilon") &&
        (!gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &c->rms_eps) || !(c->rms_eps > 0) || c->rms_eps > 1)) {
        sl_set_error(err, SL_ERR_FORMAT, "model: layer_norm_rms_epsilon must be a number in (0, 1]");
        return false;
    }
    c->rope_freq_base = 10000.0f;
    if (gguf_find_kv(f, "llama.rope.freq_base") &&
        (!gguf_get_f32(f, "llama.rope.freq_base", &c->rope_freq_base) || !(c->rope_freq_base > 1) || isinf(c->rope_freq_base))) {
        sl_set_error(err, SL_ERR_FORMAT, "model: rope.freq_base must be a finite number > 1");
        return false;
    }
    gguf_str s;
    if (gguf_get_str(f, "llama.rope.scaling.type", &s) && !gguf_str_eq(s, "none")) {
        char buf[64];
        sl_set_error(err, SL_ERR_UNSUPPORTED, "model: rope scaling '%s' is not supported", gguf_str_copy(s, buf, sizeof(buf)));
        return false;
    }
    c->act = SL_ACT_SILU;
    if (gguf_find_kv(f, "skipllama.activation")) {
        char buf[32];
        if (!gguf_get_str(f, "skipllama.activation", &s) || !sl_activation_from_name(gguf_str_copy(s, buf, sizeof(buf)), &c->act)) {
            sl_set_error(err, SL_ERR_UNSUPPORTED, "model: skipllama.activation must be \"silu\", \"relu\" or \"gelu\"");
            return false;
        }
    }
    return true;
}

/* The 1-D norm weights are used as f32; convert them when a file stores another type. */
static const float *norm_f32(sl_model *m, const gguf_tensor_info *t, float **cursor) {
    if (t->type == SL_TYPE_F32) return t->data;
    float *dst = *cursor;
    sl_dequantize_row_ref(t->type, t->data, dst, t->ne[0]);
    *cursor += t->ne[0];
    return dst;
}

static bool load_tensors(sl_model *m, sl_error *err) {
    const gguf_file *f = m->gguf;
    sl_model_config *c = &m->config;
    const gguf_tensor_info *t;
    const int64_t E = c->n_embd, F = c->n_ff, Q = (int64_t)c->n_head * c->head_dim, KV = (int64_t)c->n_head_kv * c->head_dim;

    t = gguf_find_tensor(f, "token_embd.weight");
    if (!t) return sl_set_error(err, SL_ERR_FORMAT, "model: missing required tensor 'token_embd.weight'"), false;
    if (t->ne[1] < 1 || t->ne[1] > INT32_MAX) return sl_set_error(err, SL_ERR_FORMAT, "model: bad vocabulary size"), false;
    c->n_vocab = (int32_t)t->ne[1];
    if (!get_tensor(f, "token_embd.weight", E, c->n_vocab, true, &t, err)) return false;
    m->tok_embd = weight_of(t);
    uint32_t vs;
    if (gguf_get_u32(f, "llama.vocab_size", &vs) && vs != (uint32_t)c->n_vocab) {
        sl_set_error(err, SL_ERR_FORMAT, "model: llama.vocab_size %u disagrees with token_embd rows %d", vs, c->n_vocab);
        return false;
    }
    if (!get_tensor(f, "output.weight", E, c->n_vocab, false, &t, err)) return false;
    c->tied_embeddings = t == NULL;
    m->output = t ? weight_of(t) : m->tok_embd;
    if (!get_tensor(f, "rope_freqs.weight", c->n_rot / 2, 0, false, &t, err)) return false;
    c->has_rope_freqs = t != NULL;
    const gguf_tensor_info *rope_freqs = t;

    /* norms: 2 per layer + output; room to convert them all if needed */
    size_t n_norm_floats;
    if (sl_mul_overflow((size_t)(2 * c->n_layer + 1), (size_t)E, &n_norm_floats)) return false;
    n_norm_floats += (size_t)c->n_rot / 2;
    /* issue 8: every norm must be in the file (>= 18 bytes per 32 elements), so a count the file
     * cannot hold is refused here, before the buffer is sized from hyperparameters alone */
    if (n_norm_floats / 2 > f->size)
        return sl_set_error(err, SL_ERR_FORMAT, "model: %d layers of width %lld need %zu norm weights, more than the %zu-byte file holds",
                            c->n_layer, (long long)E, n_norm_floats, f->size),
               false;
    m->owned_f32 = malloc(n_norm_floats * sizeof(float));
    m->layers = calloc((size_t)c->n_layer, sizeof(sl_layer));
    if (!m->owned_f32 || !m->layers) return sl_set_error(err, SL_ERR_NOMEM, "model: out of memory"), false;
    float *cursor = m->owned_f32;
    if (!get_tensor(f, "output_norm.weight", E, 0, true, &t, err)) return false;
    m->output_norm = norm_f32(m, t, &cursor);
    if (rope_freqs) m->rope_freqs = norm_f32(m, rope_freqs, &cursor);

    for (int32_t l = 0; l < c->n_layer; l++) {
        sl_layer *L = &m->layers[l];
        char name[96];
#define TENSOR(field, suffix, cols, rows)                                                                              \
    snprintf(name, sizeof(name), "blk.%d." suffix, (int)l);                                                            \
    if (!get_tensor(f, name, cols, rows, true, &t, err)) return false;                                                 \
    L->field = weight_of(t)
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", (int)l);
        if (!get_tensor(f, name, E, 0, true, &t, err)) return false;
        L->attn_norm = norm_f32(m, t, &cursor);
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", (int)l);
        if (!get_tensor(f, name, E, 0, true, &t, err)) return false;
        L->ffn_norm = norm_f32(m, t, &cursor);
        TENSOR(wq, "attn_q.weight", E, Q);
        TENSOR(wk, "attn_k.weight", E, KV);
        TENSOR(wv, "attn_v.weight", E, KV);
        TENSOR(wo, "attn_output.weight", Q, E);
        TENSOR(ffn_gate, "ffn_gate.weight", E, F);
        TENSOR(ffn_up, "ffn_up.weight", E, F);
        TENSOR(ffn_down, "ffn_down.weight", F, E);
#undef TENSOR
    }
    c->weight_type = m->layers[0].ffn_gate.type;
    return true;
}

sl_model *sl_model_load(const char *path, const sl_model_params *params, sl_error *err) {
    sl_clear_error(err);
    sl_model_params p = params ? *params : sl_model_default_params();
    sl_model *m = calloc(1, sizeof(*m));
    if (!m) {
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->path = strdup(path ? path : "");
    m->gguf = gguf_open(path, err);
    if (!m->gguf || !m->path) goto fail;
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
        if (strcmp(archbuf, "llama") != 0) {
            sl_set_error(err, SL_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (only 'llama')",
                         archbuf[0] ? archbuf : "(missing general.architecture)");
            goto fail;
        }
        if (!load_hparams(m, err) || !load_tensors(m, err)) goto fail;
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
        sl_set_error(err, SL_ERR_FORMAT, "model: '%s' has no tokenizer (tokenizer.ggml.model)", path);
        goto fail;
    }
    if (m->vocab && !p.vocab_only && sl_vocab_n_tokens(m->vocab) > m->config.n_vocab) {
        sl_set_error(err, SL_ERR_FORMAT, "model: tokenizer has %d tokens but the embedding only %d rows",
                     sl_vocab_n_tokens(m->vocab), m->config.n_vocab);
        goto fail;
    }
    return m;
fail:
    sl_model_free(m);
    return NULL;
}

const sl_model_config *sl_model_get_config(const sl_model *m) { return &m->config; }
int64_t sl_model_n_params(const sl_model *m) { return m->n_params; }
int64_t sl_model_file_size(const sl_model *m) { return (int64_t)m->gguf->size; }
int64_t sl_model_repacked_bytes(const sl_model *m) { return (int64_t)m->repacked_bytes; }

/* appends to buf at *pos, tracking the length it wanted */
static void out(char *buf, size_t size, size_t *pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static void out(char *buf, size_t size, size_t *pos, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*pos < size ? buf + *pos : NULL, *pos < size ? size - *pos : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *pos += (size_t)n;
}

size_t sl_model_describe(const sl_model *m, char *buf, size_t size) {
    size_t pos = 0;
    const sl_model_config *c = &m->config;
    const gguf_file *f = m->gguf;
    if (size) buf[0] = 0;
    gguf_str s;
    char tmp[128] = "";
    if (gguf_get_str(f, "general.architecture", &s)) gguf_str_copy(s, tmp, sizeof(tmp));
    out(buf, size, &pos, "file:            %s\n", m->path);
    out(buf, size, &pos, "file size:       %lld bytes (%.2f MiB)\n", (long long)f->size, (double)f->size / 1048576.0);
    out(buf, size, &pos, "gguf version:    %u, %llu metadata keys, %llu tensors\n", f->version, (unsigned long long)f->n_kv,
        (unsigned long long)f->n_tensors);
    out(buf, size, &pos, "architecture:    %s\n", tmp[0] ? tmp : "(none)");
    if (gguf_get_str(f, "general.name", &s)) out(buf, size, &pos, "name:            %s\n", gguf_str_copy(s, tmp, sizeof(tmp)));
    out(buf, size, &pos, "parameters:      %lld (%.3f M)\n", (long long)m->n_params, (double)m->n_params / 1e6);
    if (m->layers) {
        out(buf, size, &pos, "n_vocab:         %d\n", c->n_vocab);
        out(buf, size, &pos, "n_embd:          %d\n", c->n_embd);
        out(buf, size, &pos, "n_ff:            %d\n", c->n_ff);
        out(buf, size, &pos, "n_layer:         %d\n", c->n_layer);
        out(buf, size, &pos, "n_head:          %d\n", c->n_head);
        out(buf, size, &pos, "n_head_kv:       %d\n", c->n_head_kv);
        out(buf, size, &pos, "head_dim:        %d\n", c->head_dim);
        out(buf, size, &pos, "n_rot:           %d\n", c->n_rot);
        out(buf, size, &pos, "n_ctx_train:     %d\n", c->n_ctx_train);
        out(buf, size, &pos, "rms_eps:         %g\n", (double)c->rms_eps);
        out(buf, size, &pos, "rope_freq_base:  %g%s\n", (double)c->rope_freq_base, c->has_rope_freqs ? " (with rope_freqs factors)" : "");
        out(buf, size, &pos, "activation:      %s\n", sl_activation_name(c->act));
        out(buf, size, &pos, "tied embeddings: %s\n", c->tied_embeddings ? "yes" : "no");
        out(buf, size, &pos, "weight type:     %s\n", sl_type_name(c->weight_type));
    }
    if (m->vocab) out(buf, size, &pos, "vocab tokens:    %d\n", sl_vocab_n_tokens(m->vocab));
    /* tensor type histogram, then the tensors */
    static const sl_type types[] = {SL_TYPE_F32, SL_TYPE_F16, SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0};
    out(buf, size, &pos, "tensor types:   ");
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        uint64_t n = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) n += f->tensors[i].type == types[k];
        if (n) out(buf, size, &pos, " %s=%llu", sl_type_name(types[k]), (unsigned long long)n);
    }
    out(buf, size, &pos, "\ntensors:\n");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        char shape[96];
        int k = snprintf(shape, sizeof(shape), "[%lld", (long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && k < (int)sizeof(shape); d++)
            k += snprintf(shape + k, sizeof(shape) - (size_t)k, ", %lld", (long long)t->ne[d]);
        if (k < (int)sizeof(shape)) snprintf(shape + k, sizeof(shape) - (size_t)k, "]");
        out(buf, size, &pos, "  %-32s %-5s %-22s %zu bytes\n", gguf_str_copy(t->name, tmp, sizeof(tmp)), sl_type_name(t->type), shape,
            t->nbytes);
    }
    return pos;
}

const sl_vocab *sl_model_get_vocab(const sl_model *model) { return model ? model->vocab : NULL; }
