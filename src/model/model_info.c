/*
 * model_info.c — what a loaded model says about itself: the public accessors of sl_model and
 * `info`'s description (hyperparameters, the architecture's switches, tensors). What it is not:
 * loading (model.c).
 */
#include "model/model.h"

#include "model/arch.h"
#include "model/hf.h"
#include "text/tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const sl_model_config *sl_model_get_config(const sl_model *m) { return &m->config; }
int64_t sl_model_n_params(const sl_model *m) { return m->n_params; }
int64_t sl_model_file_size(const sl_model *m) { return m->hf && sl_hf_file_bytes(m->hf) ? (int64_t)sl_hf_file_bytes(m->hf) : (int64_t)m->gguf->size; }
int64_t sl_model_repacked_bytes(const sl_model *m) { return (int64_t)m->repacked_bytes; }

/* appends to buf at *pos, tracking the length it wanted */
static void out(char *buf, size_t size, size_t *pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
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
    const long long fsize = (long long)sl_model_file_size(m);
    out(buf, size, &pos, "file size:       %lld bytes (%.2f MiB)\n", fsize, (double)fsize / 1048576.0);
    if (m->hf)
        out(buf, size, &pos, "format:          Hugging Face folder read as GGUF: %llu metadata keys, %llu tensors mmapped (%llu bytes converted or copied)\n",
            (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors, (unsigned long long)sl_hf_copied_bytes(m->hf));
    else
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
        const sl_rope_params *r = &m->rope[0];
        if (r->freq_scale != 1.0f || r->ext_factor != 0.0f)
            out(buf, size, &pos, "rope scaling:    %s, factor %g, original context %d, attn factor %g\n", r->ext_factor != 0.0f ? "yarn" : "linear",
                (double)(1.0f / r->freq_scale), r->n_ctx_orig, (double)r->attn_factor);
        else if (r->attn_factor != 1.0f)
            out(buf, size, &pos, "rope attn factor: %g\n", (double)r->attn_factor);
        if (m->rope_long)
            out(buf, size, &pos, "rope factors:    LongRoPE (long beyond %d tokens of context)\n", r->n_ctx_orig);
        out(buf, size, &pos, "rope layout:     %s\n", m->arch->rope == SL_ROPE_NEOX ? "neox (halves)" : m->arch->rope == SL_ROPE_NEOX_TO_NORM ? "neox to norm (HF q/k rows)" : "norm (pairs)");
        out(buf, size, &pos, "activation:      %s\n", sl_activation_name(c->act));
        out(buf, size, &pos, "tied embeddings: %s\n", c->tied_embeddings ? "yes" : "no");
        if (c->n_swa) {
            int n_win = 0;
            for (int l = 0; l < c->n_layer; l++) n_win += m->layers[l].swa;
            out(buf, size, &pos, "sliding window:  %d tokens on %d of %d layers", c->n_swa, n_win, c->n_layer);
            if (n_win < c->n_layer && m->rope[1].base != m->rope[0].base)
                out(buf, size, &pos, " (their rope base %g)", (double)m->rope[1].base);
            out(buf, size, &pos, "\n");
        }
        if (m->attn_softcap > 0.0f || m->final_softcap > 0.0f)
            out(buf, size, &pos, "soft-capping:    attention %g, logits %g\n", (double)m->attn_softcap, (double)m->final_softcap);
        out(buf, size, &pos, "weight type:     %s\n", sl_type_name(c->weight_type));
    }
    if (m->vocab) out(buf, size, &pos, "vocab tokens:    %d\n", sl_vocab_n_tokens(m->vocab));
    /* the type mix and bits per weight, as llama.cpp's loader prints them, then the tensors */
    out(buf, size, &pos, "tensor types:   ");
    for (int ty = 0; ty < 64; ty++) {
        uint64_t cnt = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) cnt += (int)f->tensors[i].type == ty;
        if (cnt) out(buf, size, &pos, " %s=%llu", sl_type_name(ty), (unsigned long long)cnt);
    }
    uint32_t ftype;
    if (gguf_get_u32(f, "general.file_type", &ftype)) {
        const char *fname = sl_ftype_name((int32_t)ftype);
        out(buf, size, &pos, "\nfile type:       %s (%u)", fname ? fname : "unknown", ftype);
    }
    size_t tensor_bytes = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) tensor_bytes += f->tensors[i].nbytes;
    out(buf, size, &pos, "\nbits per weight: %.2f (file), %.2f (tensor data)", m->n_params ? (double)f->size * 8.0 / (double)m->n_params : 0.0,
        m->n_params ? (double)tensor_bytes * 8.0 / (double)m->n_params : 0.0);
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
