/*
 * gguf2hf.c — test helper: write a Hugging Face model directory (config.json, model.safetensors
 * or shards + model.safetensors.index.json, tokenizer.json, tokenizer_config.json) holding the
 * same weights and vocabulary as a GGUF file, laid out as Hugging Face stores them: tensor names
 * of transformers' LlamaForCausalLM, q/k rows of `llama` files un-permuted (GGUF interleaves the
 * RoPE pairs, HF keeps the halves), PyTorch [out, in] shapes. The vocabulary becomes a
 * tokenizer.json: a SentencePiece ("llama") vocabulary as a BPE model with byte fallback whose
 * merges are extracted from the pieces and scores the way transformers' converter does (every
 * split of a piece into two pieces, ordered by the piece's score); a byte-level ("gpt2") one with
 * its merges and the regex of its pre-tokenizer.
 *
 *   gguf2hf IN.gguf OUTDIR [--shards N] [--dtype f32|f16|bf16] [--chat-template TEXT]
 *
 * What it is not: a general exporter (tests make fixtures with it; the product converts the
 * other way, `skipllama convert`).
 */
#include "format/gguf.h"
#include "format/quant.h"
#include "skipllama.h"
#include "util/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int die(const char *msg, const char *arg) {
    fprintf(stderr, "gguf2hf: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(1);
}

static char *str_of(const gguf_file *f, const char *key) {
    gguf_str s;
    if (!gguf_get_str(f, key, &s)) return NULL;
    char *p = malloc(s.len + 1);
    return gguf_str_copy(s, p, s.len + 1);
}

static int u32_or(const gguf_file *f, const char *key, int def) {
    uint32_t v;
    return gguf_get_u32(f, key, &v) ? (int)v : def;
}

static float f32_or(const gguf_file *f, const char *key, float def) {
    float v;
    return gguf_get_f32(f, key, &v) ? v : def;
}

/* ---- tensors ---------------------------------------------------------------------------------- */

typedef struct out_tensor {
    char name[128];   /* HF name */
    const char *dtype; /* "F32" ... */
    int n_dims;
    int64_t shape[2]; /* PyTorch order */
    uint8_t *data;    /* owned */
    size_t nbytes;
} out_tensor;

/* HF name of a GGUF tensor name, or NULL to drop it. */
static const char *hf_name(const char *g, const char *arch, char *buf, size_t n) {
    int l;
    char rest[96];
    if (!strcmp(g, "token_embd.weight")) return "model.embed_tokens.weight";
    if (!strcmp(g, "output_norm.weight")) return "model.norm.weight";
    if (!strcmp(g, "output.weight")) return "lm_head.weight";
    if (sscanf(g, "blk.%d.%95s", &l, rest) != 2) return NULL;
    const bool gemma = !strncmp(arch, "gemma", 5);
    static const char *const map[][2] = {
        {"attn_norm.weight", "input_layernorm.weight"},
        {"attn_q.weight", "self_attn.q_proj.weight"},   {"attn_k.weight", "self_attn.k_proj.weight"},
        {"attn_v.weight", "self_attn.v_proj.weight"},   {"attn_output.weight", "self_attn.o_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},       {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},       {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},    {"attn_qkv.weight", "self_attn.qkv_proj.weight"},
        {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
        {"post_attention_norm.weight", "post_attention_layernorm.weight"},
        {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
    };
    const char *h = NULL;
    if (!strcmp(rest, "ffn_norm.weight")) h = gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
    if (!strcmp(rest, "ffn_up.weight")) h = !strcmp(arch, "phi3") ? "mlp.gate_up_proj.weight" : "mlp.up_proj.weight";
    for (size_t i = 0; !h && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(rest, map[i][0])) h = map[i][1];
    if (!h) return NULL;
    snprintf(buf, n, "model.layers.%d.%s", l, h);
    return buf;
}

static size_t dtype_size(const char *d) { return !strcmp(d, "F32") ? 4 : 2; }

/* rows x cols f32 -> dtype bytes */
static uint8_t *encode(const float *x, size_t n, const char *dtype) {
    uint8_t *p = malloc(n * dtype_size(dtype) + 1);
    if (!strcmp(dtype, "F32")) memcpy(p, x, n * 4);
    else sl_convert_from_f32(!strcmp(dtype, "F16") ? SL_TYPE_F16 : SL_TYPE_BF16, x, p, (int64_t)n);
    return p;
}

/* ---- tokenizer.json ------------------------------------------------------------------------------ */

typedef struct merge {
    int32_t l, r;  /* piece ids */
    float score;   /* score of l + r */
    int32_t piece; /* id of l + r */
} merge;

static int cmp_merge(const void *a, const void *b) {
    const merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1; /* highest score first */
    if (x->piece != y->piece) return x->piece < y->piece ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static json_t *tokenizer_json(const gguf_file *f, bool *spm_out) {
    const gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    const gguf_array *types = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
    const gguf_array *scores = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32);
    char *model = str_of(f, "tokenizer.ggml.model");
    if (!toks || !model) die("the GGUF has no tokenizer", NULL);
    const bool spm = !strcmp(model, "llama");
    *spm_out = spm;
    const int32_t n = (int32_t)toks->n;
    char **text = calloc((size_t)n, sizeof(char *));
    for (int32_t i = 0; i < n; i++) {
        text[i] = malloc(toks->strs[i].len + 1);
        gguf_str_copy(toks->strs[i], text[i], toks->strs[i].len + 1);
    }
    json_t *vocab = json_object(), *added = json_array(), *merges = json_array();
    for (int32_t i = 0; i < n; i++) {
        json_object_set_new(vocab, text[i], json_integer(i));
        int t = types ? (int)gguf_arr_int(types, (uint64_t)i) : 1;
        if (t == 2 || t == 3 || t == 4)
            json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content", text[i], "single_word", 0,
                                                   "lstrip", 0, "rstrip", 0, "normalized", 0, "special", t != 4));
    }
    if (spm) {
        /* transformers' SentencePieceExtractor: every split of a piece into two pieces */
        merge *m = NULL;
        size_t nm = 0, cap = 0;
        for (int32_t i = 0; i < n; i++) {
            int t = types ? (int)gguf_arr_int(types, (uint64_t)i) : 1;
            if (t != 1) continue;
            size_t len = strlen(text[i]);
            for (size_t k = 1; k < len; k++) {
                if (((uint8_t)text[i][k] & 0xC0) == 0x80) continue; /* split at character boundaries */
                char left[512];
                if (k >= sizeof left) break;
                memcpy(left, text[i], k);
                left[k] = 0;
                json_t *lv = json_object_get(vocab, left), *rv = json_object_get(vocab, text[i] + k);
                if (!lv || !rv) continue;
                if (nm == cap) m = realloc(m, (cap = cap ? 2 * cap : 1024) * sizeof(merge));
                m[nm++] = (merge){(int32_t)json_integer_value(lv), (int32_t)json_integer_value(rv), scores ? gguf_arr_f32(scores, (uint64_t)i) : 0, i};
            }
        }
        qsort(m, nm, sizeof(merge), cmp_merge);
        for (size_t i = 0; i < nm; i++) json_array_append_new(merges, json_pack("[s, s]", text[m[i].l], text[m[i].r]));
        free(m);
    } else {
        const gguf_array *gm = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING);
        for (uint64_t i = 0; gm && i < gm->n; i++) {
            char buf[1024];
            json_array_append_new(merges, json_string(gguf_str_copy(gm->strs[i], buf, sizeof buf)));
        }
    }
    int32_t unk = u32_or(f, "tokenizer.ggml.unknown_token_id", -1);
    json_t *bpe = json_pack("{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                            unk >= 0 && unk < n ? json_string(text[unk]) : json_null(), "continuing_subword_prefix", "end_of_word_suffix",
                            "fuse_unk", spm, "byte_fallback", spm, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    json_t *root = json_pack("{s:s, s:n, s:n, s:o}", "version", "1.0", "truncation", "padding", "added_tokens", added);
    if (spm) {
        bool prefix = true;
        gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &prefix);
        json_t *norms = json_array();
        if (prefix) json_array_append_new(norms, json_pack("{s:s, s:s}", "type", "Prepend", "prepend", "\xE2\x96\x81"));
        json_array_append_new(norms, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", " ", "content", "\xE2\x96\x81"));
        json_object_set_new(root, "normalizer", json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", norms));
        json_object_set_new(root, "pre_tokenizer", json_null());
        json_object_set_new(root, "decoder",
                            json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence", "decoders", "type",
                                      "Replace", "pattern", "String", "\xE2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse", "type",
                                      "Strip", "content", " ", "start", prefix ? 1 : 0, "stop", 0));
    } else {
        char *pre = str_of(f, "tokenizer.ggml.pre");
        static const char re_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        static const char re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        const char *re = pre && !strcmp(pre, "llama-bpe") ? re_llama3 : pre && !strcmp(pre, "qwen2") ? re_qwen2 : NULL;
        json_object_set_new(root, "normalizer", json_null());
        if (re)
            json_object_set_new(root, "pre_tokenizer",
                                json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence", "pretokenizers", "type",
                                          "Split", "pattern", "Regex", re, "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                                          "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0));
        else
            json_object_set_new(root, "pre_tokenizer",
                                json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1));
        json_object_set_new(root, "decoder", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1));
        free(pre);
    }
    /* BOS as Llama's tokenizer.json files add it: a template of the post-processor */
    bool add_bos = spm;
    gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos);
    int32_t bos = u32_or(f, "tokenizer.ggml.bos_token_id", -1);
    if (add_bos && bos >= 0 && bos < n)
        json_object_set_new(root, "post_processor",
                            json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[], s:{s:{s:s, s:[i], s:[s]}}}", "type", "TemplateProcessing",
                                      "single", "SpecialToken", "id", text[bos], "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair",
                                      "special_tokens", text[bos], "id", text[bos], "ids", bos, "tokens", text[bos]));
    else
        json_object_set_new(root, "post_processor", json_null());
    json_object_set_new(root, "model", bpe);
    for (int32_t i = 0; i < n; i++) free(text[i]);
    free(text);
    free(model);
    return root;
}

static void write_json(const char *dir, const char *name, json_t *j) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (json_dump_file(j, path, JSON_INDENT(1) | JSON_ENSURE_ASCII) != 0) die("cannot write", path);
}

/* one safetensors file of tensors [a, b) */
static void write_safetensors(const char *path, out_tensor *t, size_t a, size_t b) {
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (size_t i = a; i < b; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].n_dims; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", t[i].dtype, "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + t[i].nbytes)));
        off += t[i].nbytes;
    }
    char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    size_t hn = strlen(text), pad = (8 - hn % 8) % 8;
    FILE *fp = fopen(path, "wb");
    if (!fp) die("cannot write", path);
    uint64_t len = hn + pad;
    fwrite(&len, 8, 1, fp);
    fwrite(text, 1, hn, fp);
    for (size_t i = 0; i < pad; i++) fputc(' ', fp);
    for (size_t i = a; i < b; i++) fwrite(t[i].data, 1, t[i].nbytes, fp);
    fclose(fp);
    free(text);
    json_decref(h);
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: gguf2hf IN.gguf OUTDIR [--shards N] [--dtype f32|f16|bf16] [--chat-template TEXT]", NULL);
    int shards = 1;
    const char *dtype = NULL, *chat = NULL;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--shards")) shards = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) dtype = !strcmp(argv[i + 1], "f16") ? "F16" : !strcmp(argv[i + 1], "bf16") ? "BF16" : "F32";
        else if (!strcmp(argv[i], "--chat-template")) chat = argv[i + 1];
        else die("unknown option", argv[i]);
    }
    sl_error err;
    gguf_file *f = gguf_open(argv[1], &err);
    if (!f) die(err.message, NULL);
    char *arch = str_of(f, "general.architecture");
    static const char *const archs[][3] = {{"llama", "LlamaForCausalLM", "llama"}, {"qwen2", "Qwen2ForCausalLM", "qwen2"},
                                           {"qwen3", "Qwen3ForCausalLM", "qwen3"}, {"phi3", "Phi3ForCausalLM", "phi3"},
                                           {"gemma2", "Gemma2ForCausalLM", "gemma2"}, {"gemma3", "Gemma3ForCausalLM", "gemma3_text"}};
    int ai = -1;
    for (int i = 0; arch && i < 6; i++)
        if (!strcmp(arch, archs[i][0])) ai = i;
    if (ai < 0) die("architecture not exported", arch);
    const bool gemma = !strncmp(arch, "gemma", 5), llama = !strcmp(arch, "llama");
    char key[128];
#define K(name) (snprintf(key, sizeof key, "%s.%s", arch, name), key)
    mkdir(argv[2], 0755);
    const int n_head = u32_or(f, K("attention.head_count"), 1), n_head_kv = u32_or(f, K("attention.head_count_kv"), n_head);
    const int n_embd = u32_or(f, K("embedding_length"), 0);
    const int head_dim = u32_or(f, K("attention.key_length"), n_embd / n_head);
    const int n_rot = u32_or(f, K("rope.dimension_count"), head_dim);

    out_tensor *t = calloc(f->n_tensors, sizeof(out_tensor));
    size_t nt = 0, total = 0;
    bool tied = true;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *g = &f->tensors[i];
        char gname[128], buf[128];
        gguf_str_copy(g->name, gname, sizeof gname);
        const char *h = hf_name(gname, arch, buf, sizeof buf);
        if (!h) continue;
        if (!strcmp(gname, "output.weight")) tied = false;
        out_tensor *o = &t[nt++];
        snprintf(o->name, sizeof o->name, "%s", h);
        const int64_t cols = g->ne[0], rows = g->n_dims > 1 ? g->ne[1] : 1;
        o->n_dims = g->n_dims > 1 ? 2 : 1;
        o->shape[0] = o->n_dims == 2 ? rows : cols;
        o->shape[1] = cols;
        o->dtype = dtype ? dtype : g->type == SL_TYPE_F16 ? "F16" : g->type == SL_TYPE_BF16 ? "BF16" : "F32";
        if (o->n_dims == 1) o->dtype = dtype ? dtype : "F32";
        float *x = malloc((size_t)(rows * cols) * sizeof(float));
        sl_convert_to_f32(g->type, g->data, x, rows * cols);
        /* Gemma's GGUF norms hold 1 + w (HF's RMSNorm multiplies by 1 + w) */
        if (gemma && strstr(gname, "norm.weight"))
            for (int64_t k = 0; k < rows * cols; k++) x[k] -= 1.0f;
        /* GGUF's llama q/k rows interleave each head's RoPE pairs; HF keeps the two halves */
        int heads = !llama ? 0 : strstr(gname, "attn_q.") ? n_head : strstr(gname, "attn_k.") ? n_head_kv : 0;
        if (heads) {
            float *y = malloc((size_t)(rows * cols) * sizeof(float));
            for (int hh = 0; hh < heads; hh++)
                for (int half = 0; half < 2; half++)
                    for (int k = 0; k < head_dim / 2; k++)
                        memcpy(y + ((size_t)hh * head_dim + (size_t)half * (head_dim / 2) + k) * cols,
                               x + ((size_t)hh * head_dim + 2 * (size_t)k + half) * cols, (size_t)cols * sizeof(float));
            free(x);
            x = y;
        }
        o->data = encode(x, (size_t)(rows * cols), o->dtype);
        o->nbytes = (size_t)(rows * cols) * dtype_size(o->dtype);
        total += o->nbytes;
        free(x);
    }
    if (shards <= 1) {
        char path[1024];
        snprintf(path, sizeof path, "%s/model.safetensors", argv[2]);
        write_safetensors(path, t, 0, nt);
    } else {
        json_t *wm = json_object();
        for (int s = 0; s < shards; s++) {
            size_t a = nt * (size_t)s / (size_t)shards, b = nt * (size_t)(s + 1) / (size_t)shards;
            char name[128], path[1200];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
            snprintf(path, sizeof path, "%s/%s", argv[2], name);
            write_safetensors(path, t, a, b);
            for (size_t i = a; i < b; i++) json_object_set_new(wm, t[i].name, json_string(name));
        }
        json_t *ix = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        write_json(argv[2], "model.safetensors.index.json", ix);
        json_decref(ix);
    }
    for (size_t i = 0; i < nt; i++) free(t[i].data);
    free(t);

    const char *act = gemma ? "gelu_pytorch_tanh" : "silu";
    char *a = str_of(f, "skipllama.activation");
    if (a) act = !strcmp(a, "relu") ? "relu" : !strcmp(a, "gelu") ? "gelu_pytorch_tanh" : "silu";
    const gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    const gguf_tensor_info *emb = gguf_find_tensor(f, "token_embd.weight");
    json_t *cfg = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:b, s:s, s:s, s:i, s:i}", "architectures",
                            archs[ai][1], "model_type", archs[ai][2], "hidden_size", n_embd, "intermediate_size",
                            u32_or(f, K("feed_forward_length"), 0), "num_hidden_layers", u32_or(f, K("block_count"), 0),
                            "num_attention_heads", n_head, "num_key_value_heads", n_head_kv, "max_position_embeddings",
                            u32_or(f, K("context_length"), 2048), "rms_norm_eps",
                            (double)f32_or(f, K("attention.layer_norm_rms_epsilon"), 1e-5f), "rope_theta",
                            (double)f32_or(f, K("rope.freq_base"), 10000.0f), "vocab_size", (json_int_t)(emb ? emb->ne[1] : 0),
                            "tie_word_embeddings", tied, gemma ? "hidden_activation" : "hidden_act", act, "torch_dtype",
                            dtype && strcmp(dtype, "F32") ? (!strcmp(dtype, "F16") ? "float16" : "bfloat16") : "float32", "bos_token_id",
                            u32_or(f, "tokenizer.ggml.bos_token_id", 1), "eos_token_id", u32_or(f, "tokenizer.ggml.eos_token_id", 2));
    if (gguf_find_kv(f, K("attention.key_length")) || gemma) json_object_set_new(cfg, "head_dim", json_integer(head_dim));
    if (n_rot != head_dim) json_object_set_new(cfg, "partial_rotary_factor", json_real((double)n_rot * n_head / n_embd));
    char *rtype = str_of(f, K("rope.scaling.type"));
    if (rtype && (!strcmp(rtype, "linear") || !strcmp(rtype, "yarn"))) {
        json_t *rs = json_pack("{s:s, s:f}", "rope_type", rtype, "factor", (double)f32_or(f, K("rope.scaling.factor"), 1.0f));
        if (!strcmp(rtype, "yarn"))
            json_object_set_new(rs, "original_max_position_embeddings", json_integer(u32_or(f, K("rope.scaling.original_context_length"), 0)));
        json_object_set_new(cfg, "rope_scaling", rs);
    }
    free(rtype);
    int swa = u32_or(f, K("attention.sliding_window"), -1);
    if (swa >= 0) json_object_set_new(cfg, "sliding_window", json_integer(swa));
    if (!strcmp(arch, "gemma2")) {
        json_object_set_new(cfg, "attn_logit_softcapping", json_real(f32_or(f, K("attn_logit_softcapping"), 50.0f)));
        json_object_set_new(cfg, "final_logit_softcapping", json_real(f32_or(f, K("final_logit_softcapping"), 30.0f)));
        json_object_set_new(cfg, "query_pre_attn_scalar", json_integer(head_dim));
    }
    if (!strcmp(arch, "gemma3")) {
        json_object_set_new(cfg, "rope_local_base_freq", json_real(f32_or(f, K("rope.freq_base_swa"), 10000.0f)));
        json_object_set_new(cfg, "sliding_window_pattern", json_integer(u32_or(f, K("attention.sliding_window_pattern"), 6)));
        json_object_set_new(cfg, "query_pre_attn_scalar", json_integer(head_dim));
        if (gguf_find_kv(f, K("final_logit_softcapping")))
            json_object_set_new(cfg, "final_logit_softcapping", json_real(f32_or(f, K("final_logit_softcapping"), 0)));
    }
    if (!strcmp(arch, "qwen2")) json_object_set_new(cfg, "use_sliding_window", json_false());
    write_json(argv[2], "config.json", cfg);
    json_decref(cfg);
    free(a);

    if (toks) {
        bool spm;
        json_t *tj = tokenizer_json(f, &spm);
        write_json(argv[2], "tokenizer.json", tj);
        json_decref(tj);
        json_t *tc = json_object();
        bool add_bos = spm, add_eos = false;
        gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos);
        gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &add_eos);
        json_object_set_new(tc, "add_bos_token", json_boolean(add_bos));
        json_object_set_new(tc, "add_eos_token", json_boolean(add_eos));
        static const char *const keys[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token"},
                                              {"tokenizer.ggml.eos_token_id", "eos_token"},
                                              {"tokenizer.ggml.unknown_token_id", "unk_token"}};
        for (int k = 0; k < 3; k++) {
            int id = u32_or(f, keys[k][0], -1);
            if (id >= 0 && (uint64_t)id < toks->n) {
                char buf[256];
                json_object_set_new(tc, keys[k][1], json_string(gguf_str_copy(toks->strs[id], buf, sizeof buf)));
            }
        }
        char *tmpl = chat ? strdup(chat) : str_of(f, "tokenizer.chat_template");
        if (tmpl) json_object_set_new(tc, "chat_template", json_string(tmpl));
        free(tmpl);
        json_object_set_new(tc, "tokenizer_class", json_string(spm ? "LlamaTokenizer" : "PreTrainedTokenizerFast"));
        write_json(argv[2], "tokenizer_config.json", tc);
        json_decref(tc);
    }
    free(arch);
    gguf_close(f);
    return 0;
}
