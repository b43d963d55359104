/*
 * fuzz_hf.c — libFuzzer harness for the Hugging Face front ends: tokenizer.json ->
 * tokenizer.ggml.* metadata -> vocabulary (src/text/hf_tokenizer.c, then the vocabulary builder
 * and a tokenize / detokenize with whatever vocabulary it describes), and config.json -> model
 * (src/model/hf.c: every hyperparameter and RoPE-scaling key, then the model loader and one
 * evaluation) over a fixed micro folder.
 *
 * Input: byte 0 selects the mode (even: tokenizer.json, odd: config.json), the rest is the JSON.
 * The config mode writes it as config.json into a private folder (in $TMPDIR) that holds the
 * micro model's weights (model.safetensors, HF names) and a tokenizer.json, and loads the folder
 * with sl_model_load. Beyond sanitizer reports it aborts on a failure without a message, a token
 * id outside the vocabulary, or a loaded model whose evaluation fails. Seeds: a SentencePiece-
 * style and a byte-level tokenizer.json, and configs of every architecture (written by the
 * harness when SL_FUZZ_WRITE_SEEDS is set); dictionary: fuzz/hf.dict.
 */
#include "fuzz_common.h"
#include "format/json.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

static char hf_dir[PATH_MAX];

static const char hf_tok_spm[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true}],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
    "\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,\"post_processor\":"
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}]},"
    "\"decoder\":null,\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,"
    "\"<0x41>\":3,\"\\u2581\":4,\"a\":5,\"b\":6,\"ab\":7,\"\\u2581a\":8,\"\\u2581ab\":9,\"c\":10},\"merges\":[\"a b\",\"\\u2581 a\",[\"\\u2581a\",\"b\"]]}}";
static const char hf_tok_bpe[] =
    "{\"added_tokens\":[{\"id\":6,\"content\":\"<|im_end|>\",\"special\":true},{\"id\":7,\"content\":\"<tool>\",\"special\":false}],"
    "\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    "\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\",\"use_regex\":false}]},\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"h\":0,\"i\":1,\"hi\":2,\"\\u0120\":3,\"\\u0120hi\":4,\"!\":5},\"merges\":[\"h i\",\"\\u0120 hi\"]}}";

static void hf_cleanup(void) {
    static const char *const files[] = {"model.safetensors", "tokenizer.json", "config.json"};
    char path[PATH_MAX + 64];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", hf_dir, files[i]);
        unlink(path);
    }
    rmdir(hf_dir);
}

/* the micro model's folder: model.safetensors with HF names, tokenizer.json */
static void hf_init(void) {
    if (hf_dir[0]) return;
    const char *tmp = getenv("TMPDIR");
    snprintf(hf_dir, sizeof hf_dir, "%s/sl-fuzz-hf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fz_require(mkdtemp(hf_dir) != NULL, "cannot create %s", hf_dir);
    atexit(hf_cleanup);
    /* E = 32, F = 64, 2 layers, 4 heads of 8, 2 KV heads, vocab 11, untied */
    static const struct { const char *name; int rows, cols; } t[] = {
        {"model.embed_tokens.weight", 11, 32}, {"lm_head.weight", 11, 32}, {"model.norm.weight", 0, 32},
        {"model.layers.0.input_layernorm.weight", 0, 32}, {"model.layers.0.post_attention_layernorm.weight", 0, 32},
        {"model.layers.0.self_attn.q_proj.weight", 32, 32}, {"model.layers.0.self_attn.k_proj.weight", 16, 32},
        {"model.layers.0.self_attn.v_proj.weight", 16, 32}, {"model.layers.0.self_attn.o_proj.weight", 32, 32},
        {"model.layers.0.mlp.gate_proj.weight", 64, 32}, {"model.layers.0.mlp.up_proj.weight", 64, 32},
        {"model.layers.0.mlp.down_proj.weight", 32, 64},
    };
    char header[8192];
    size_t k = (size_t)snprintf(header, sizeof header, "{");
    size_t off = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t n = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols * 4;
        if (t[i].rows)
            k += (size_t)snprintf(header + k, sizeof header - k, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                                  t[i].name, t[i].rows, t[i].cols, off, off + n);
        else
            k += (size_t)snprintf(header + k, sizeof header - k, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                                  t[i].name, t[i].cols, off, off + n);
        off += n;
    }
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.safetensors", hf_dir);
    FILE *f = fopen(path, "wb");
    fz_require(f != NULL, "cannot write %s", path);
    uint64_t hn = k;
    fwrite(&hn, 8, 1, f);
    fwrite(header, 1, k, f);
    for (size_t i = 0; i < off / 4; i++) {
        float v = (float)((int)(i * 7919 % 200) - 100) / 400.0f; /* small weights, norms included */
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/tokenizer.json", hf_dir);
    f = fopen(path, "wb");
    fz_require(f != NULL, "cannot write %s", path);
    fwrite(hf_tok_spm, 1, sizeof hf_tok_spm - 1, f);
    fclose(f);
}

static void hf_vocab(const uint8_t *data, size_t size) {
    sl_error err;
    json_t *tok = sl_json_parse((const char *)data, size, "tokenizer.json", &err);
    if (!tok) {
        fz_check_error(&err, "sl_json_parse");
        return;
    }
    gguf_writer *w = gguf_writer_init();
    void *image = NULL;
    size_t n = 0;
    if (sl_hf_tokenizer_write(tok, NULL, NULL, 0, w, &err) != SL_OK) {
        fz_check_error(&err, "sl_hf_tokenizer_write");
    } else if (gguf_writer_write_memory(w, &image, &n, &err) == SL_OK) {
        gguf_file *f = gguf_open_memory(image, n, &err);
        fz_require(f != NULL, "the writer's image does not read back: %s", err.message);
        struct sl_vocab *v = sl_vocab_init_from_gguf(f, &err);
        if (v) {
            static const char text[] = " ab abc hi! <s>x</s> <|im_end|><tool> \xE2\x96\x81" "a 12 \xF0\x9F\xA6\x99 \xFF";
            int32_t *ids = NULL, k = 0;
            if (sl_tokenize(v, text, sizeof text - 1, true, true, &ids, &k, &err) == SL_OK) {
                for (int32_t i = 0; i < k; i++) fz_require(ids[i] >= 0 && ids[i] < sl_vocab_n_tokens(v), "token %d out of range", ids[i]);
                char *out = NULL;
                size_t ol = 0;
                if (sl_detokenize(v, ids, k, true, true, &out, &ol, &err) == SL_OK) sl_free_text(out);
                sl_free_tokens(ids);
            } else {
                fz_check_error(&err, "sl_tokenize");
            }
            sl_vocab_free(v);
        } else {
            fz_check_error(&err, "sl_vocab_init_from_gguf");
        }
        gguf_close(f);
        free(image);
    }
    gguf_writer_free(w);
    json_decref(tok);
}

static void hf_config(const uint8_t *data, size_t size) {
    hf_init();
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    FILE *f = fopen(path, "wb");
    fz_require(f != NULL, "cannot write %s", path);
    fwrite(data, 1, size, f);
    fclose(f);
    sl_error err;
    sl_model *m = sl_model_load(hf_dir, NULL, &err);
    if (!m) {
        fz_check_error(&err, "sl_model_load");
        return;
    }
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 8;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    if (ctx) {
        const int32_t ids[3] = {1, 5, 9};
        const int32_t n = sl_model_get_config(m)->n_vocab;
        float *logits = malloc((size_t)n * sizeof(float));
        fz_require(logits && sl_eval(ctx, ids, 3, logits, false, &err) == SL_OK, "eval of a loaded folder failed: %s", err.message);
        free(logits);
        sl_context_free(ctx);
    } else {
        fz_check_error(&err, "sl_context_init");
    }
    sl_model_free(m);
}

int sl_fuzz_hf(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t *copy = malloc(size - 1 ? size - 1 : 1); /* exact size: ASan sees reads past it */
    memcpy(copy, data + 1, size - 1);
    if (data[0] & 1) hf_config(copy, size - 1);
    else hf_vocab(copy, size - 1);
    free(copy);
    return 0;
}

void sl_fuzz_hf_write_seeds(const char *dir) {
    char buf[2048];
    buf[0] = 0;
    memcpy(buf + 1, hf_tok_spm, sizeof hf_tok_spm - 1);
    fz_write_seed(dir, "tokenizer-spm.json", buf, sizeof hf_tok_spm);
    memcpy(buf + 1, hf_tok_bpe, sizeof hf_tok_bpe - 1);
    fz_write_seed(dir, "tokenizer-bpe.json", buf, sizeof hf_tok_bpe);
    static const char *const cfgs[] = {
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":64,"
        "\"tie_word_embeddings\":false,\"hidden_act\":\"silu\",\"vocab_size\":11}",
        "{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"sliding_window\":4,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
        "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}}",
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":16},"
        "\"hidden_act\":\"relu\",\"head_dim\":8}",
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"use_sliding_window\":false,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}",
        "{\"architectures\":[\"Phi3ForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
        "\"partial_rotary_factor\":0.5,\"max_position_embeddings\":64,\"original_max_position_embeddings\":16,\"rope_scaling\":{\"type\":\"longrope\","
        "\"long_factor\":[1,2],\"short_factor\":[1,1]}}",
        "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"text_config\":{\"hidden_size\":32,\"intermediate_size\":64,"
        "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,\"sliding_window\":4,\"rope_local_base_freq\":"
        "10000,\"final_logit_softcapping\":30.0}}",
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        char name[32];
        buf[0] = 1;
        size_t n = strlen(cfgs[i]);
        memcpy(buf + 1, cfgs[i], n);
        snprintf(name, sizeof name, "config-%zu.json", i);
        fz_write_seed(dir, name, buf, n + 1);
    }
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_hf_write_seeds(seeds);
        exit(0);
    }
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_hf(data, size); }
#endif
