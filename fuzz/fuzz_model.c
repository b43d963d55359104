/*
 * fuzz_model.c — libFuzzer harness for the model loader (src/model/model.c: every architecture's
 * hyperparameter and tensor shape checks on top of the GGUF reader, the vocabulary attached to
 * it) and for what a loaded hostile model is then used for: describing it, creating a context,
 * evaluating a few tokens densely and through a CATS profile (sparse MLP path), tokenizing with
 * its vocabulary.
 *
 * Input: a GGUF file (small synthetic models of every architecture as seeds). sl_model_load
 * takes a path, so the bytes go to an in-memory file (fz_memfile) that the loader opens and
 * mmaps. The LAST byte of the input also selects options (GGUF ignores trailing bytes after the
 * data section, so this does not disturb the file): bit 0 vocab-only, bit 1 F16 KV cache, bits
 * 2-3 tokens to evaluate, bit 4 evaluate one token at a time. The context is kept to 8
 * positions and 1 thread. What it is not: a numerical test — hostile weights give any numbers;
 * only memory safety, UB and the error contract are checked.
 */
#include "fuzz_common.h"

static fz_memfile md_file = {-1, ""};

static int md_init(void) {
    if (md_file.fd >= 0) return 0;
    if (fz_memfile_open(&md_file, "fuzz-model") != 0) {
        fprintf(stderr, "fuzz_model: cannot create an in-memory file: %s\n", strerror(errno));
        abort();
    }
    return 0;
}

static void md_eval(sl_model *m, uint8_t flags) {
    const sl_model_config *c = sl_model_get_config(m);
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 8;
    cp.n_threads = 1;
    cp.kv_f16 = (flags & 2) != 0;
    sl_error err;
    sl_context *ctx = sl_context_init(m, &cp, &err);
    if (!ctx) {
        fz_check_error(&err, "sl_context_init");
        return;
    }
    fz_require(sl_context_n_ctx(ctx) == 8 && sl_context_n_past(ctx) == 0, "fresh context state");
    int32_t n_tok = 1 + ((flags >> 2) & 3);
    int32_t toks[4] = {0, c->n_vocab - 1, c->n_vocab / 2, 1 % c->n_vocab};
    float *logits = malloc((size_t)n_tok * (size_t)c->n_vocab * sizeof(float));
    fz_require(logits != NULL, "logits allocation");
    if (flags & 16) {
        for (int32_t i = 0; i < n_tok; i++)
            if (sl_eval(ctx, toks + i, 1, logits, false, &err) != SL_OK) fz_check_error(&err, "sl_eval");
    } else if (sl_eval(ctx, toks, n_tok, logits, true, &err) != SL_OK) {
        fz_check_error(&err, "sl_eval");
    }
    /* out-of-range ids and over-long sequences must be refused, leaving the context as it was */
    int32_t past = sl_context_n_past(ctx), bad[2] = {c->n_vocab, -1};
    fz_require(sl_eval(ctx, bad, 1, logits, false, &err) == SL_ERR_RANGE, "id n_vocab accepted");
    fz_require(sl_eval(ctx, bad + 1, 1, logits, false, &err) == SL_ERR_RANGE, "id -1 accepted");
    fz_require(sl_context_n_past(ctx) == past, "failed eval moved n_past");
    int32_t many[9] = {0};
    fz_require(sl_eval(ctx, many, 9, NULL, false, &err) != SL_OK, "9 tokens accepted in an 8-token context");

    /* the sparse path: every layer CATS with a middling threshold */
    sl_profile *p = sl_profile_init(m, &err);
    if (p) {
        for (int32_t l = 0; l < sl_profile_n_layer(p); l++) {
            sl_profile_layer L;
            if (sl_profile_get_layer(p, l, &L, &err) != SL_OK) continue;
            L.rule = SL_RULE_CATS;
            L.threshold = 0.01f;
            fz_require(sl_profile_set_layer(p, l, &L, &err) == SL_OK, "set CATS layer");
        }
        sl_context_reset(ctx);
        if (sl_context_set_profile(ctx, p, true, &err) == SL_OK) {
            sl_context_track_recall(ctx, true);
            if (sl_eval(ctx, toks, n_tok < 2 ? n_tok : 2, logits, false, &err) != SL_OK) fz_check_error(&err, "sparse sl_eval");
            sl_layer_stats st;
            for (int32_t l = 0; l < c->n_layer; l++) fz_require(sl_context_get_layer_stats(ctx, l, &st, &err) == SL_OK, "stats");
            sl_context_set_profile(ctx, NULL, false, &err);
        } else {
            fz_check_error(&err, "sl_context_set_profile");
        }
        sl_profile_free(p);
    } else {
        fz_check_error(&err, "sl_profile_init");
    }
    free(logits);
    sl_context_free(ctx);
}

int sl_fuzz_model(const uint8_t *data, size_t size) {
    md_init();
    uint8_t flags = size ? data[size - 1] : 0;
    if (fz_memfile_set(&md_file, data, size) != 0) abort();
    sl_model_params mp = sl_model_default_params();
    mp.vocab_only = flags & 1;
    sl_error err;
    sl_model *m = sl_model_load(md_file.path, &mp, &err);
    if (!m) {
        fz_check_error(&err, "sl_model_load");
        return 0;
    }
    size_t need = sl_model_describe(m, NULL, 0);
    char *buf = malloc(need + 1);
    fz_require(buf != NULL, "describe buffer");
    fz_require(sl_model_describe(m, buf, need + 1) == need && strlen(buf) == need, "describe length");
    char small[16];
    sl_model_describe(m, small, sizeof(small));
    fz_require(strlen(small) < sizeof(small), "describe overflowed a small buffer");
    free(buf);
    fz_require(sl_model_n_params(m) >= 0 && sl_model_file_size(m) == (int64_t)size, "params / file size");
    const sl_model_config *c = sl_model_get_config(m);
    const sl_vocab *v = sl_model_get_vocab(m);
    if (!mp.vocab_only) {
        fz_require(c->n_vocab > 0 && c->n_embd > 0 && c->n_layer > 0 && c->n_head > 0 && c->n_head_kv > 0, "bad config accepted");
        fz_require(!v || sl_vocab_n_tokens(v) <= c->n_vocab, "vocabulary larger than the embedding");
        (void)sl_model_decode_bytes(m);
        md_eval(m, flags);
    } else {
        fz_require(v != NULL, "vocab-only load without a vocabulary");
    }
    if (v) {
        static const char text[] = "It was a dark and stormy night <s></s>\xE2\x96\x81 \xC3\xA9\xFF";
        int32_t *ids = NULL, n = 0;
        if (sl_tokenize(v, text, sizeof(text) - 1, true, true, &ids, &n, &err) == SL_OK) {
            for (int32_t i = 0; i < n; i++) fz_require(ids[i] >= 0 && ids[i] < sl_vocab_n_tokens(v), "token out of range");
            sl_free_tokens(ids);
        } else {
            fz_check_error(&err, "sl_tokenize");
        }
    }
    sl_model_free(m);
    return 0;
}

/* ---- seeds: tiny llama models of every weight type and layout -----------------------------------
 * Under 64 KiB each, except the types with 256-element super-blocks (K-quants, IQ4_XS): their
 * smallest model (dim = ff = 256) is 160-400 KB, so fuzz/run.sh gives this harness -max_len 512 KiB
 * (a longer seed would be cut by libFuzzer, and its tensors never reach the kernels). */

void sl_fuzz_model_write_seeds(const char *dir) {
    static const struct {
        sl_type type;   /* 2-D weight type */
        bool tied;      /* no output.weight */
        bool rope;      /* rope_freqs.weight */
        bool relu;      /* skipllama.activation = relu */
        int32_t layers; /* blocks */
        int32_t kv;     /* key/value heads */
        uint8_t flags;  /* trailing option byte */
        const char *name;
    } kinds[] = {
        {SL_TYPE_F32, true, false, false, 1, 1, 0x00, "f32-tied.gguf"},
        {SL_TYPE_F16, true, true, false, 2, 2, 0x06, "f16-rope.gguf"},
        {SL_TYPE_BF16, false, false, true, 1, 1, 0x1c, "bf16-relu.gguf"},
        {SL_TYPE_Q8_0, false, true, false, 2, 2, 0x0e, "q8_0.gguf"},
        {SL_TYPE_Q4_0, true, false, true, 2, 4, 0x1e, "q4_0-relu.gguf"},
        {SL_TYPE_Q4_0, true, false, false, 1, 2, 0x01, "q4_0-vocab-only.gguf"},
        {SL_TYPE_Q4_1, false, false, false, 1, 2, 0x06, "q4_1.gguf"},
        {SL_TYPE_Q5_0, true, false, true, 1, 2, 0x0e, "q5_0-relu.gguf"},
        {SL_TYPE_Q5_1, false, false, false, 1, 2, 0x1c, "q5_1.gguf"},
        {SL_TYPE_IQ4_NL, true, false, false, 1, 2, 0x0e, "iq4_nl.gguf"},
        /* K-quants need 256-wide rows: one wider model each (below) */
        {SL_TYPE_Q4_K, true, false, false, 1, 1, 0x0e, "q4_k-256.gguf"},
        {SL_TYPE_Q6_K, true, false, false, 1, 1, 0x1e, "q6_k-256.gguf"},
        {SL_TYPE_Q2_K, true, false, false, 1, 1, 0x06, "q2_k-256.gguf"},
        {SL_TYPE_Q3_K, true, false, false, 1, 1, 0x0e, "q3_k-256.gguf"},
        {SL_TYPE_Q5_K, true, false, true, 1, 1, 0x1c, "q5_k-256-relu.gguf"},
        {SL_TYPE_IQ4_XS, true, false, false, 1, 1, 0x0a, "iq4_xs-256.gguf"},
    };
    char tmp[PATH_MAX];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/sl-fuzz-seed-%d.gguf", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        sl_synth_params p = fz_micro_params();
        p.n_ff = 32;
        p.type = kinds[k].type;
        p.tied_embeddings = kinds[k].tied;
        p.rope_freqs = kinds[k].rope;
        p.act = kinds[k].relu ? SL_ACT_RELU : SL_ACT_SILU;
        p.n_layer = kinds[k].layers;
        p.n_head_kv = kinds[k].kv;
        if (sl_type_block_size(p.type) == 256) p.n_embd = p.n_ff = 256, p.n_head = 2;
        sl_error err;
        if (sl_synth_write(&p, tmp, &err) != SL_OK) {
            fprintf(stderr, "fuzz_model: seed %s: %s\n", kinds[k].name, err.message);
            continue;
        }
        size_t size = 0;
        uint8_t *buf = fz_read_file(tmp, &size);
        if (!buf) continue;
        uint8_t *out = realloc(buf, size + 1);
        if (!out) {
            free(buf);
            continue;
        }
        out[size] = kinds[k].flags;
        if (size + 1 > (sl_type_block_size(p.type) == 256 ? 524288 : 65536))
            fprintf(stderr, "fuzz_model: seed %s is %zu bytes (over the harness's limit)\n", kinds[k].name, size + 1);
        fz_write_seed(dir, kinds[k].name, out, size + 1);
        free(out);
    }
    /* the other architectures (src/model/arch.c): their optional tensors and keys */
    static const struct {
        const char *arch; /* general.architecture */
        sl_type type;     /* 2-D weight type */
        uint8_t flags;    /* trailing option byte */
        const char *name;
    } archs[] = {
        {"qwen2", SL_TYPE_BF16, 0x04, "qwen2-bias-yarn-bf16.gguf"}, {"qwen3", SL_TYPE_Q8_0, 0x1c, "qwen3-q8_0.gguf"},
        {"phi3", SL_TYPE_Q4_0, 0x08, "phi3-longrope-q4_0.gguf"}, {"gemma2", SL_TYPE_F16, 0x0c, "gemma2-swa-f16.gguf"},
        {"gemma3", SL_TYPE_Q8_0, 0x1e, "gemma3-swa-q8_0.gguf"},
    };
    for (size_t k = 0; k < sizeof(archs) / sizeof(archs[0]); k++) {
        sl_synth_params p = fz_micro_params();
        snprintf(p.arch, sizeof(p.arch), "%s", archs[k].arch);
        p.type = archs[k].type;
        p.n_ff = 32;
        p.qkv_bias = k == 0;
        p.longrope = k == 2;
        p.n_swa = k >= 3 ? 3 : 0;
        if (k == 0) snprintf(p.rope_scaling, sizeof(p.rope_scaling), "yarn"), p.rope_scaling_factor = 4.0f, p.rope_orig_ctx = 16;
        if (k == 3) p.attn_softcap = 5.0f, p.final_softcap = 10.0f;
        if (k == 4) p.n_layer = 3, p.swa_pattern = 3, p.rope_freq_base_swa = 1000.0f;
        sl_error err;
        if (sl_synth_write(&p, tmp, &err) != SL_OK) {
            fprintf(stderr, "fuzz_model: seed %s: %s\n", archs[k].name, err.message);
            continue;
        }
        size_t size = 0;
        uint8_t *buf = fz_read_file(tmp, &size);
        uint8_t *out = buf ? realloc(buf, size + 1) : NULL;
        if (!out) {
            free(buf);
            continue;
        }
        out[size] = archs[k].flags;
        if (size + 1 > 65536) fprintf(stderr, "fuzz_model: seed %s is %zu bytes (over 64 KiB)\n", archs[k].name, size + 1);
        fz_write_seed(dir, archs[k].name, out, size + 1);
        free(out);
    }
    unlink(tmp);
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_model_write_seeds(seeds);
        exit(0);
    }
    md_init();
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_model(data, size); }
#endif
