/*
 * hf.c — a Hugging Face model folder as a virtual GGUF file (see hf.h): config.json -> the
 * metadata keys llama.cpp's converter writes, safetensors tensors renamed to GGUF's names and
 * left in their mappings, the tokenizer files -> tokenizer.* keys.
 *
 * Every value read from config.json is checked for type and range here (a message names the
 * key); shapes are checked by the model loader against the hyperparameters, as for GGUF files.
 */
#include "model/hf.h"

#include "format/json.h"
#include "format/quant.h"
#include "format/safetensors.h"
#include "text/hf_tokenizer.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_MAX_DIM (1 << 20)

struct sl_hf {
    st_set *weights;       /* the safetensors files (NULL when only the vocabulary was loaded) */
    void **copies;         /* converted vectors (Gemma norms + 1, RoPE factors) and aligned copies of
                              misaligned tensors (owned) */
    size_t n_copies;
    uint64_t copied_bytes; /* their bytes, and the converted vectors' */
    sl_arch arch;          /* the table's row, with the RoPE layout of HF's q/k rows */
    bool unpermuted;       /* q/k rows in HF's order where GGUF permutes them */
};

bool sl_hf_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void sl_hf_free(sl_hf *hf) {
    if (!hf) return;
    st_set_free(hf->weights);
    for (size_t i = 0; i < hf->n_copies; i++) sl_free_aligned(hf->copies[i]);
    free(hf->copies);
    free(hf);
}

const sl_arch *sl_hf_arch(const sl_hf *hf) { return &hf->arch; }
bool sl_hf_qk_unpermuted(const sl_hf *hf) { return hf->unpermuted; }
uint64_t sl_hf_file_bytes(const sl_hf *hf) { return hf->weights ? hf->weights->total_bytes : 0; }
uint64_t sl_hf_copied_bytes(const sl_hf *hf) { return hf->copied_bytes; }

/* ---- config.json ----------------------------------------------------------------------------- */

typedef struct cfg_ctx {
    const json_t *cfg;  /* the text model's config (text_config when nested) */
    const sl_arch *arch;
    gguf_writer *w;
    sl_error *err;
} cfg_ctx;

static const char *akey(const cfg_ctx *c, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", c->arch->name, name);
    return buf;
}

/* An integer hf key -> u32 "<arch>.<key>"; *out gets the value (or def when absent and not required). */
static bool int_key(cfg_ctx *c, const char *hf, const char *key, bool required, int64_t lo, int64_t def, int64_t *out) {
    int64_t v = def;
    if (!sl_json_get_int(c->cfg, hf, lo, HF_MAX_DIM, required, &v, "config.json", c->err)) return false;
    if (out) *out = v;
    if (!sl_json_member(c->cfg, hf) || !key) return true;
    char k[96];
    return gguf_writer_set_u32(c->w, akey(c, key, k, sizeof k), (uint32_t)v) ||
           (sl_set_error(c->err, SL_ERR_NOMEM, "out of memory"), false);
}

static bool num_key(cfg_ctx *c, const char *hf, const char *key, double lo, double hi, double *out) {
    double v;
    if (!sl_json_member(c->cfg, hf)) return true;
    if (!sl_json_get_num(c->cfg, hf, true, &v, "config.json", c->err)) return false;
    if (!(v >= lo && v <= hi))
        return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: \"%s\" = %g is outside [%g, %g]", hf, v, lo, hi), false;
    if (out) *out = v;
    char k[96];
    return !key || gguf_writer_set_f32(c->w, akey(c, key, k, sizeof k), (float)v) ||
           (sl_set_error(c->err, SL_ERR_NOMEM, "out of memory"), false);
}

/* The rows of the architecture: config.json's "architectures"[0], else its model_type. */
static const sl_arch *find_arch(const json_t *root, sl_error *err) {
    const json_t *a = sl_json_member(root, "architectures");
    const char *cls = json_is_array(a) && json_is_string(json_array_get(a, 0)) ? json_string_value(json_array_get(a, 0)) : NULL;
    const sl_arch *r = cls ? sl_arch_find_hf(cls) : NULL;
    if (r) return r;
    const char *mt = NULL;
    sl_json_get_str(root, "model_type", false, &mt, "config.json", NULL);
    static const char *const types[][2] = {{"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"},
                                           {"phi3", "phi3"},   {"gemma2", "gemma2"}, {"gemma3", "gemma3"}, {"gemma3_text", "gemma3"}};
    for (size_t i = 0; !cls && mt && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(mt, types[i][0])) return sl_arch_find(types[i][1]);
    char list[512] = "";
    for (int i = 0; sl_arch_at(i); i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " " : "", sl_arch_at(i)->hf_classes);
    sl_set_error(err, SL_ERR_UNSUPPORTED, "config.json: architecture '%s' is not supported (supported: %s)",
                 cls ? cls : mt ? mt : "(no \"architectures\" or \"model_type\")", list);
    return NULL;
}

static bool add_copy(sl_hf *hf, void *p, size_t bytes);

/* n floats owned by hf (converted norms, RoPE factors); NULL when out of memory */
static float *new_vector(sl_hf *hf, size_t n) {
    float *p = sl_malloc_aligned((n ? n : 1) * sizeof(float));
    if (p && !add_copy(hf, p, n * sizeof(float))) {
        sl_free_aligned(p);
        p = NULL;
    }
    return p;
}

/* The RoPE scaling of config.json: metadata keys, or factor tensors (filled into *extra). */
typedef struct extra_tensor {
    const char *name;
    const float *data;
    int64_t n;
} extra_tensor;

static bool rope_scaling(cfg_ctx *c, sl_hf *hf, int64_t head_dim, int64_t n_rot, double theta, extra_tensor *extra, int *n_extra) {
    const json_t *rs = sl_json_member(c->cfg, "rope_scaling");
    if (!rs) return true;
    if (!json_is_object(rs)) return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: \"rope_scaling\" must be an object"), false;
    const char *type = NULL;
    if (!sl_json_get_str(rs, "rope_type", false, &type, "config.json rope_scaling", c->err) ||
        (!type && !sl_json_get_str(rs, "type", false, &type, "config.json rope_scaling", c->err)))
        return false;
    if (!type) return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: rope_scaling has no \"rope_type\""), false;
    cfg_ctx rc = *c;
    rc.cfg = rs;
    char k[96];
    double factor = 1.0;
    if (!strcmp(type, "default")) return true;
    if (!strcmp(type, "linear") || !strcmp(type, "yarn")) {
        if (!num_key(&rc, "factor", "rope.scaling.factor", 1e-6, 1e6, &factor)) return false;
        if (!gguf_writer_set_str(c->w, akey(c, "rope.scaling.type", k, sizeof k), type)) goto nomem;
        if (!strcmp(type, "yarn") && !int_key(&rc, "original_max_position_embeddings", "rope.scaling.original_context_length", false, 1, 0, NULL))
            return false;
        return true;
    }
    if (!strcmp(type, "llama3")) { /* llama.cpp's converter: rope_freqs from the wavelength bands */
        double low = 1.0, high = 4.0;
        int64_t orig = 8192;
        factor = 8.0;
        if (!sl_json_get_num(rs, "factor", false, &factor, "config.json rope_scaling", c->err) ||
            !sl_json_get_num(rs, "low_freq_factor", false, &low, "config.json rope_scaling", c->err) ||
            !sl_json_get_num(rs, "high_freq_factor", false, &high, "config.json rope_scaling", c->err) ||
            !sl_json_get_int(rs, "original_max_position_embeddings", 1, HF_MAX_DIM, false, &orig, "config.json rope_scaling", c->err))
            return false;
        if (!(factor > 0 && low > 0 && high > low && factor < 1e6 && high < 1e6))
            return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: llama3 rope_scaling factors are out of range"), false;
        float *f = new_vector(hf, (size_t)head_dim / 2);
        if (!f) goto nomem;
        const double low_wl = (double)orig / low, high_wl = (double)orig / high;
        for (int64_t i = 0; i < head_dim / 2; i++) {
            const double freq = 1.0 / pow(theta, (double)(2 * i) / (double)head_dim), wl = 2 * M_PI / freq;
            if (wl < high_wl) f[i] = 1.0f;
            else if (wl > low_wl) f[i] = (float)factor;
            else {
                const double smooth = ((double)orig / wl - low) / (high - low);
                f[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
            }
        }
        extra[(*n_extra)++] = (extra_tensor){"rope_freqs.weight", f, head_dim / 2};
        return true;
    }
    if (!strcmp(type, "longrope") || !strcmp(type, "su")) { /* Phi-3: factor tensors and an attention factor */
        int64_t max_pos = 0, orig = 0;
        if (!sl_json_get_int(c->cfg, "max_position_embeddings", 1, HF_MAX_DIM, true, &max_pos, "config.json", c->err) ||
            !sl_json_get_int(c->cfg, "original_max_position_embeddings", 1, HF_MAX_DIM, true, &orig, "config.json", c->err))
            return false;
        const double scale = (double)max_pos / (double)orig;
        const float attn = scale > 1.0 ? (float)sqrt(1.0 + log(scale) / log((double)orig)) : 1.0f;
        if (!gguf_writer_set_f32(c->w, akey(c, "rope.scaling.attn_factor", k, sizeof k), attn) ||
            !gguf_writer_set_u32(c->w, akey(c, "rope.scaling.original_context_length", k, sizeof k), (uint32_t)orig))
            goto nomem;
        static const char *const keys[2] = {"long_factor", "short_factor"};
        static const char *const names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
        for (int j = 0; j < 2; j++) {
            const json_t *a = json_object_get(rs, keys[j]);
            if (!json_is_array(a) || (int64_t)json_array_size(a) != n_rot / 2)
                return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: rope_scaling.%s must be a list of %lld numbers", keys[j],
                                    (long long)(n_rot / 2)),
                       false;
            float *f = new_vector(hf, (size_t)n_rot / 2);
            if (!f) goto nomem;
            for (int64_t i = 0; i < n_rot / 2; i++) {
                const json_t *v = json_array_get(a, (size_t)i);
                if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
                    return sl_set_error(c->err, SL_ERR_FORMAT, "config.json: rope_scaling.%s[%lld] must be a positive number", keys[j], (long long)i),
                           false;
                f[i] = (float)json_number_value(v);
            }
            extra[(*n_extra)++] = (extra_tensor){names[j], f, n_rot / 2};
        }
        return true;
    }
    return sl_set_error(c->err, SL_ERR_UNSUPPORTED, "config.json: rope_scaling type '%s' is not supported (linear, yarn, llama3, longrope)", type),
           false;
nomem:
    return sl_set_error(c->err, SL_ERR_NOMEM, "out of memory"), false;
}

/* transformers' config-class defaults for what save_pretrained leaves out of config.json (it
 * writes only the values that differ from them; llama.cpp's converter reads the whole config
 * through AutoConfig): RMSNorm epsilon, RoPE base, head size, sliding window, tied embeddings. */
typedef struct hf_defaults {
    const char *arch;
    double eps, theta;
    int head_dim;    /* 0: hidden_size / num_attention_heads */
    int window;      /* 0: none */
    bool tied;
} hf_defaults;

static const hf_defaults defaults[] = {
    {"llama", 1e-6, 10000.0, 0, 0, false},  /* LlamaConfig (MistralConfig's are the same but its window) */
    {"qwen2", 1e-6, 10000.0, 0, 0, false},  /* Qwen2Config */
    {"qwen3", 1e-6, 10000.0, 128, 0, false}, /* Qwen3Config */
    {"phi3", 1e-5, 10000.0, 0, 0, false},   /* Phi3Config */
    {"gemma2", 1e-6, 10000.0, 256, 4096, true}, /* Gemma2Config (soft-caps 50/30: the table's defaults) */
    {"gemma3", 1e-6, 1e6, 256, 4096, true}, /* Gemma3TextConfig (rope_local_base_freq 10000: the table's) */
};

/* The hyperparameters; *head_dim / *n_rot are what the tensors and rope factors need. */
static bool write_config(cfg_ctx *c, sl_hf *hf, int64_t *head_dim_out, int64_t *n_rot_out, bool *tied, extra_tensor *extra, int *n_extra) {
    int64_t n_embd, n_head, n_head_kv, head_dim;
    char k[96];
    hf_defaults d = {"", 1e-6, 10000.0, 0, 0, false};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (!strcmp(defaults[i].arch, c->arch->name)) d = defaults[i];
    if (!int_key(c, "hidden_size", "embedding_length", true, 1, 0, &n_embd) ||
        !int_key(c, "intermediate_size", "feed_forward_length", true, 1, 0, NULL) ||
        !int_key(c, "num_hidden_layers", "block_count", true, 1, 0, NULL) ||
        !int_key(c, "num_attention_heads", "attention.head_count", true, 1, 0, &n_head) ||
        !int_key(c, "num_key_value_heads", "attention.head_count_kv", false, 1, n_head, &n_head_kv) ||
        !int_key(c, "max_position_embeddings", "context_length", false, 1, 2048, NULL) ||
        !int_key(c, "head_dim", NULL, false, 1, d.head_dim ? d.head_dim : n_embd / n_head, &head_dim))
        return false;
    if (head_dim != n_embd / n_head && (!gguf_writer_set_u32(c->w, akey(c, "attention.key_length", k, sizeof k), (uint32_t)head_dim) ||
                                        !gguf_writer_set_u32(c->w, akey(c, "attention.value_length", k, sizeof k), (uint32_t)head_dim)))
        goto nomem;
    double theta = d.theta, eps = d.eps;
    if (!num_key(c, "rms_norm_eps", NULL, 1e-30, 1.0, &eps) || !num_key(c, "rope_theta", NULL, 1.0, 1e30, &theta)) return false;
    if (!gguf_writer_set_f32(c->w, akey(c, "attention.layer_norm_rms_epsilon", k, sizeof k), (float)eps) ||
        !gguf_writer_set_f32(c->w, akey(c, "rope.freq_base", k, sizeof k), (float)theta))
        goto nomem;
    int64_t n_rot = head_dim;
    double prf = 1.0;
    if (!num_key(c, "partial_rotary_factor", NULL, 1e-6, 1.0, &prf)) return false;
    if (prf < 1.0) {
        n_rot = (int64_t)(prf * (double)n_embd) / n_head; /* as llama.cpp's converter rounds it */
        if (!gguf_writer_set_u32(c->w, akey(c, "rope.dimension_count", k, sizeof k), (uint32_t)n_rot)) goto nomem;
    }
    *head_dim_out = head_dim;
    *n_rot_out = n_rot;
    /* activation: the table's, or our extension for the llama family's relu/gelu fine-tunes */
    const char *act = NULL;
    if (!sl_json_get_str(c->cfg, "hidden_act", false, &act, "config.json", c->err)) return false;
    if (c->arch->act_key && act && strcmp(act, "silu") && strcmp(act, "swish")) {
        const char *ours = !strcmp(act, "relu") ? "relu" : !strncmp(act, "gelu", 4) ? "gelu" : NULL;
        if (!ours) return sl_set_error(c->err, SL_ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not supported (silu, relu, gelu)", act), false;
        if (!gguf_writer_set_str(c->w, "skipllama.activation", ours)) goto nomem;
    }
    *tied = d.tied;
    if (!sl_json_get_bool(c->cfg, "tie_word_embeddings", false, tied, "config.json", c->err)) return false;
    /* sliding windows */
    bool use_swa = true;
    if (!sl_json_get_bool(c->cfg, "use_sliding_window", false, &use_swa, "config.json", c->err)) return false;
    if (c->arch->swa && use_swa && !int_key(c, "sliding_window", "attention.sliding_window", false, 0, 0, NULL)) return false;
    if (c->arch->swa && use_swa && d.window && !json_object_get(c->cfg, "sliding_window") &&
        !gguf_writer_set_u32(c->w, akey(c, "attention.sliding_window", k, sizeof k), (uint32_t)d.window))
        goto nomem;
    if (c->arch->swa && !int_key(c, "sliding_window_pattern", "attention.sliding_window_pattern", false, 0, 0, NULL)) return false;
    /* capping and Gemma 3's local RoPE base */
    if (c->arch->attn_softcap_key && !num_key(c, "attn_logit_softcapping", "attn_logit_softcapping", 0, 1e30, NULL)) return false;
    if (c->arch->final_softcap_key && !num_key(c, "final_logit_softcapping", "final_logit_softcapping", 0, 1e30, NULL)) return false;
    if (c->arch->swa_rope == SL_SWA_ROPE_OWN && !num_key(c, "rope_local_base_freq", "rope.freq_base_swa", 1.0, 1e30, NULL)) return false;
    return rope_scaling(c, hf, head_dim, n_rot, theta, extra, n_extra);
nomem:
    return sl_set_error(c->err, SL_ERR_NOMEM, "out of memory"), false;
}

/* ---- tensors ----------------------------------------------------------------------------------- */

/* GGUF name of an HF tensor name, or NULL when the model does not use it (vision towers...). */
static const char *gguf_name(const sl_arch *a, const char *hf, char *buf, size_t n) {
    static const char *const prefixes[] = {"model.language_model.", "language_model.model.", "language_model.", "model."};
    const char *s = hf;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(s, prefixes[i], strlen(prefixes[i]))) {
            s += strlen(prefixes[i]);
            break;
        }
    if (!strcmp(s, "embed_tokens.weight")) return "token_embd.weight";
    if (!strcmp(s, "norm.weight")) return "output_norm.weight";
    if (!strcmp(s, "lm_head.weight")) return "output.weight";
    int l, used = 0;
    if (sscanf(s, "layers.%d.%n", &l, &used) != 1 || !used || l < 0) return NULL;
    s += used;
    const bool gemma = a->post_norms;
    static const char *const map[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},       {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.weight", "attn_output.weight"}, {"self_attn.o_proj.bias", "attn_output.bias"},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight"}, {"self_attn.qkv_proj.bias", "attn_qkv.bias"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},    {"mlp.gate_up_proj.weight", "ffn_up.weight"},
        {"pre_feedforward_layernorm.weight", "ffn_norm.weight"}, {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    };
    const char *g = NULL;
    if (!strcmp(s, "post_attention_layernorm.weight")) g = gemma ? "post_attention_norm.weight" : "ffn_norm.weight";
    for (size_t i = 0; !g && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i][0])) g = map[i][1];
    if (!g) return NULL;
    snprintf(buf, n, "blk.%d.%s", l, g);
    return buf;
}

static bool is_norm(const char *gname) { return strstr(gname, "norm.weight") != NULL; }

static bool add_copy(sl_hf *hf, void *p, size_t bytes) {
    void **c = realloc(hf->copies, (hf->n_copies + 1) * sizeof(void *));
    if (!c) return false;
    hf->copies = c;
    hf->copies[hf->n_copies++] = p;
    hf->copied_bytes += bytes;
    return true;
}

/* One HF tensor as a GGUF tensor descriptor (name into names). */
static bool map_tensor(sl_hf *hf, const st_tensor *t, const char *gname, gguf_tensor_info *out, sl_error *err) {
    sl_type type;
    switch (t->dtype) {
    case ST_F32: type = SL_TYPE_F32; break;
    case ST_F16: type = SL_TYPE_F16; break;
    case ST_BF16: type = SL_TYPE_BF16; break;
    default:
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "safetensors: tensor '%s' is %s; skipllama reads F32, F16 and BF16 weights", t->name,
                            st_dtype_name(t->dtype)),
               false;
    }
    if (t->n_dims < 1 || t->n_dims > 2 || t->n_elements == 0)
        return sl_set_error(err, SL_ERR_FORMAT, "safetensors: tensor '%s' has %d dimensions or no elements; weights are 1-D or 2-D", t->name,
                            t->n_dims),
               false;
    memset(out, 0, sizeof *out);
    out->n_dims = (uint32_t)t->n_dims;
    out->ne[0] = t->shape[t->n_dims - 1];
    out->ne[1] = t->n_dims == 2 ? t->shape[0] : 1;
    out->ne[2] = out->ne[3] = 1;
    out->type = type;
    out->data = t->data;
    const size_t esize = type == SL_TYPE_F32 ? 4 : 2;
    if (hf->arch.hf_norm_offset != 0.0f && is_norm(gname) && t->n_dims == 1) {
        /* Gemma: GGUF stores 1 + w (llama.cpp's converter adds it) */
        float *f = new_vector(hf, (size_t)t->n_elements);
        if (!f) return sl_set_error(err, SL_ERR_NOMEM, "out of memory"), false;
        sl_dequantize_row_ref(type, t->data, f, t->n_elements);
        for (int64_t i = 0; i < t->n_elements; i++) f[i] += hf->arch.hf_norm_offset;
        out->type = SL_TYPE_F32;
        out->data = f;
    } else if ((uintptr_t)t->data % esize) {
        /* the format does not align tensors; reading misaligned floats is undefined: copy */
        void *p = sl_malloc_aligned(t->nbytes);
        if (!p || !add_copy(hf, p, t->nbytes)) {
            sl_free_aligned(p);
            return sl_set_error(err, SL_ERR_NOMEM, "out of memory copying tensor '%s'", t->name), false;
        }
        memcpy(p, t->data, t->nbytes);
        out->data = p;
    }
    return true;
}

gguf_file *sl_hf_open(const char *dir, bool vocab_only, sl_hf **out, sl_error *err) {
    sl_clear_error(err);
    *out = NULL;
    sl_hf *hf = calloc(1, sizeof *hf);
    gguf_writer *w = gguf_writer_init();
    json_t *root = NULL;
    gguf_tensor_info *infos = NULL;
    char *names = NULL, path[4096];
    size_t n_infos = 0;
    if (!hf || !w) goto nomem;
    snprintf(path, sizeof path, "%s/config.json", dir);
    const bool has_config = access(path, F_OK) == 0;
    int32_t n_vocab = 0;
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    if (!gguf_writer_set_str(w, "general.name", base)) goto nomem;
    if (!vocab_only || has_config) {
        if (!(root = sl_json_load_file(path, (size_t)16 << 20, err))) goto fail;
        const sl_arch *a = find_arch(root, err);
        if (!a) goto fail;
        hf->arch = *a;
        if (a->hf_permute_qk) { /* HF's half-split q/k rows: RoPE over the halves, kept as GGUF's pairs */
            hf->arch.rope = SL_ROPE_NEOX_TO_NORM;
            hf->unpermuted = true;
        }
        if (!gguf_writer_set_str(w, "general.architecture", a->name)) goto nomem;
    }
    if (!vocab_only) {
        const json_t *tc = sl_json_member(root, "text_config");
        cfg_ctx c = {json_is_object(tc) ? tc : root, &hf->arch, w, err};
        if (!(hf->weights = st_set_open_dir(dir, err))) goto fail;
        int64_t head_dim, n_rot;
        bool tied;
        extra_tensor extra[3];
        int n_extra = 0;
        if (!write_config(&c, hf, &head_dim, &n_rot, &tied, extra, &n_extra)) goto fail;
        if (hf->arch.rope == SL_ROPE_NEOX_TO_NORM && head_dim > SL_ROPE_MAX_HEAD) hf->arch.rope = SL_ROPE_NEOX; /* same attention, summed in another order */
        infos = calloc(hf->weights->n_tensors + 3, sizeof(gguf_tensor_info));
        names = malloc((hf->weights->n_tensors + 3) * 64);
        if (!infos || !names) goto nomem;
        for (size_t i = 0; i < hf->weights->n_tensors; i++) {
            const st_tensor *t = hf->weights->by_name[i];
            char buf[64];
            const char *g = gguf_name(&hf->arch, t->name, buf, sizeof buf);
            if (!g || (tied && !strcmp(g, "output.weight"))) continue;
            char *nm = names + n_infos * 64;
            snprintf(nm, 64, "%s", g);
            if (!map_tensor(hf, t, nm, &infos[n_infos], err)) goto fail;
            infos[n_infos].name = (gguf_str){strlen(nm), nm};
            if (!strcmp(g, "token_embd.weight") && infos[n_infos].ne[1] <= INT32_MAX) n_vocab = (int32_t)infos[n_infos].ne[1];
            n_infos++;
        }
        for (int i = 0; i < n_extra; i++) {
            char *nm = names + n_infos * 64;
            snprintf(nm, 64, "%s", extra[i].name);
            infos[n_infos] = (gguf_tensor_info){.name = {strlen(nm), nm}, .n_dims = 1, .ne = {extra[i].n, 1, 1, 1}, .type = SL_TYPE_F32,
                                                .data = extra[i].data};
            n_infos++;
        }
        char k[96];
        if (n_vocab && !gguf_writer_set_u32(w, akey(&c, "vocab_size", k, sizeof k), (uint32_t)n_vocab)) goto nomem;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, F_OK) == 0) {
        if (sl_hf_tokenizer_write_dir(dir, n_vocab, w, err) != SL_OK) goto fail;
    } else if (vocab_only) {
        sl_set_error(err, SL_ERR_IO, "'%s' has no tokenizer.json", dir);
        goto fail;
    }
    void *image;
    size_t image_size;
    if (gguf_writer_write_memory(w, &image, &image_size, err) != SL_OK) goto fail;
    gguf_file *f = gguf_open_virtual(image, image_size, infos, n_infos, err);
    if (!f) goto fail;
    json_decref(root);
    gguf_writer_free(w);
    free(infos);
    free(names);
    *out = hf;
    return f;
nomem:
    sl_set_error(err, SL_ERR_NOMEM, "out of memory");
fail:
    if (err && err->code != SL_OK && !strstr(err->message, dir)) {
        char tmp[sizeof err->message];
        snprintf(tmp, sizeof tmp, "%s", err->message);
        snprintf(err->message, sizeof err->message, "%.200s: %.300s", dir, tmp);
    }
    json_decref(root);
    gguf_writer_free(w);
    free(infos);
    free(names);
    sl_hf_free(hf);
    return NULL;
}
