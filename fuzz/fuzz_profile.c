/*
 * fuzz_profile.c — libFuzzer harness for the sparsity profile reader (sl_profile_load in
 * src/profile.c) and for what an accepted profile drives: the per-layer accessors, the CATS
 * quantile lookup, sl_profile_set_sparsity, attaching it to a context (transposed down
 * matrices, predictor buffers) and evaluating tokens through every skip rule (CATS, predictor
 * threshold / top-k / statistical top-k, the two-stage rules, with predictor tensors taken from
 * the file) and the schedule tables (levels, two-stage splits, per-layer allocation).
 *
 * The profile must match its model's fingerprint, so the harness runs every input against the
 * "micro" model (fz_micro_params: generated once at start-up, deterministic) and the seeds are
 * profiles for that model, written by this harness itself (SL_FUZZ_WRITE_SEEDS=<dir>, see
 * fuzz/make_seeds.sh). Input bytes go to an in-memory file (sl_profile_load takes a path). The
 * last input byte selects options (GGUF ignores trailing bytes): bit 0 sparse prefill, bit 1
 * also save the accepted profile and load it back (must succeed), bit 2 track recall.
 * What it is not: a check of the numbers a profile produces.
 */
#include "fuzz_common.h"

static fz_memfile pr_file = {-1, ""};
static sl_model *pr_model;
static sl_context *pr_ctx;
static char pr_save_path[PATH_MAX];

static int pr_init(void) {
    if (pr_model) return 0;
    if (fz_memfile_open(&pr_file, "fuzz-profile") != 0) abort();
    pr_model = fz_micro_model(NULL);
    if (!pr_model) abort();
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 8;
    cp.n_threads = 1;
    sl_error err;
    pr_ctx = sl_context_init(pr_model, &cp, &err);
    if (!pr_ctx) abort();
    const char *tmpdir = getenv("TMPDIR");
    snprintf(pr_save_path, sizeof(pr_save_path), "%s/sl-fuzz-profile-%d.gguf", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    return 0;
}

static void pr_use(sl_profile *p, uint8_t flags) {
    sl_error err;
    const int32_t n_layer = sl_profile_n_layer(p);
    fz_require(n_layer == sl_model_get_config(pr_model)->n_layer, "layer count");
    fz_require(sl_profile_method(p) != NULL && strlen(sl_profile_method(p)) < 64, "method");
    for (int32_t l = -1; l <= n_layer; l++) {
        sl_profile_layer L;
        sl_status st = sl_profile_get_layer(p, l, &L, &err);
        fz_require((st == SL_OK) == (l >= 0 && l < n_layer), "get_layer(%d)", l);
        float a = 0, d = 0;
        const bool split = sl_profile_get_split(p, l, 0.37f, &a, &d);
        fz_require(!split || (a >= 0 && d >= 0 && d <= a + 1e-6f && a <= 1), "split %g / %g", (double)a, (double)d);
        const float lv = sl_profile_layer_level(p, l, 0.37f);
        fz_require(lv >= 0 && lv < 1, "layer level %g", (double)lv);
        volatile float sink = sl_profile_cats_threshold(p, l, 0.0f) + sl_profile_cats_threshold(p, l, 0.37f) +
                              sl_profile_cats_threshold(p, l, 1.0f) + sl_profile_gate_nonpositive(p, l);
        (void)sink;
    }
    if (sl_profile_set_sparsity(p, 0.5f, &err) != SL_OK) fz_check_error(&err, "sl_profile_set_sparsity");
    sl_context_reset(pr_ctx);
    if (sl_context_set_profile(pr_ctx, p, flags & 1, &err) != SL_OK) {
        fz_check_error(&err, "sl_context_set_profile");
        return;
    }
    sl_context_track_recall(pr_ctx, (flags & 4) != 0);
    sl_context_reset_stats(pr_ctx);
    const int32_t prompt[3] = {1, 77, 258};
    float logits[259];
    if (sl_eval(pr_ctx, prompt, 2, logits, false, &err) != SL_OK) fz_check_error(&err, "sl_eval (batch)");
    if (sl_eval(pr_ctx, prompt + 2, 1, logits, false, &err) != SL_OK) fz_check_error(&err, "sl_eval (one token)");
    for (int32_t l = 0; l < n_layer; l++) {
        sl_layer_stats st;
        fz_require(sl_context_get_layer_stats(pr_ctx, l, &st, &err) == SL_OK, "stats");
        fz_require(st.n_active >= 0 && st.n_active <= st.n_neurons, "layer %d: %lld active of %lld", l, (long long)st.n_active,
                   (long long)st.n_neurons);
    }
    sl_context_set_profile(pr_ctx, NULL, false, &err);
}

int sl_fuzz_profile(const uint8_t *data, size_t size) {
    pr_init();
    uint8_t flags = size ? data[size - 1] : 0;
    if (fz_memfile_set(&pr_file, data, size) != 0) abort();
    sl_error err;
    sl_profile *p = sl_profile_load(pr_file.path, pr_model, &err);
    if (!p) {
        fz_check_error(&err, "sl_profile_load");
        return 0;
    }
    if (flags & 2) {
        /* whatever was accepted must survive a save / load round trip */
        fz_require(sl_profile_save(p, pr_save_path, &err) == SL_OK, "save: %s", err.message);
        sl_profile *q = sl_profile_load(pr_save_path, pr_model, &err);
        fz_require(q != NULL, "reload of a saved profile failed: %s", err.message);
        sl_profile_free(q);
        unlink(pr_save_path);
    }
    pr_use(p, flags);
    sl_profile_free(p);
    return 0;
}

/* ---- seeds: profiles for the micro model with every rule and predictor type ------------------ */

static void pr_seed(const char *dir, const char *name, const sl_profile *p) {
    char path[PATH_MAX];
    sl_error err;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (sl_profile_save(p, path, &err) != SL_OK) fprintf(stderr, "fuzz_profile: cannot write %s: %s\n", path, err.message);
}

void sl_fuzz_profile_write_seeds(const char *dir) {
    pr_init();
    sl_error err;
    const sl_model_config *c = sl_model_get_config(pr_model);
    sl_profile *p = sl_profile_init(pr_model, &err);
    pr_seed(dir, "dense.skip.gguf", p);
    sl_profile_free(p);

    int32_t toks[96];
    for (int i = 0; i < 96; i++) toks[i] = 3 + (i * 37) % 256;
    sl_calibrate_params cal = sl_calibrate_default_params();
    cal.n_ctx = 32;
    if (sl_calibrate(pr_model, toks, 96, &cal, &p, &err) != SL_OK) {
        fprintf(stderr, "fuzz_profile: calibrate: %s\n", err.message);
        return;
    }
    pr_seed(dir, "cats.skip.gguf", p);
    /* predictors: layer 0 top-k F32 rank 4 / Q8_0 rank 32, layer 1 threshold / stat-top-k */
    static const struct {
        sl_type type;
        int32_t rank;
        sl_skip_rule r0, r1;
        const char *name;
    } kinds[] = {
        {SL_TYPE_F32, 4, SL_RULE_PRED_TOPK, SL_RULE_PRED_THRESHOLD, "pred-f32.skip.gguf"},
        {SL_TYPE_F16, 8, SL_RULE_PRED_STAT_TOPK, SL_RULE_CATS, "pred-f16.skip.gguf"},
        {SL_TYPE_BF16, 2, SL_RULE_PRED_THRESHOLD, SL_RULE_PRED_TOPK, "pred-bf16.skip.gguf"},
        {SL_TYPE_Q8_0, 32, SL_RULE_PRED_TOPK, SL_RULE_PRED_STAT_TOPK, "pred-q8_0.skip.gguf"},
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        int32_t r = kinds[k].rank;
        float *A = malloc(sizeof(float) * (size_t)r * (size_t)c->n_embd), *B = malloc(sizeof(float) * (size_t)c->n_ff * (size_t)r);
        for (int32_t i = 0; i < r * c->n_embd; i++) A[i] = (float)((i * 7919) % 17 - 8) / 8.0f;
        for (int32_t i = 0; i < c->n_ff * r; i++) B[i] = (float)((i * 104729) % 13 - 6) / 6.0f;
        for (int32_t l = 0; l < c->n_layer; l++) {
            sl_profile_set_predictor(p, l, r, kinds[k].type, A, B, &err);
            sl_profile_layer L;
            sl_profile_get_layer(p, l, &L, &err);
            L.rule = l ? kinds[k].r1 : kinds[k].r0;
            L.topk = c->n_ff / 4;
            L.threshold = L.rule == SL_RULE_PRED_THRESHOLD ? -0.25f : 0.05f;
            if (sl_profile_set_layer(p, l, &L, &err) != SL_OK) fprintf(stderr, "fuzz_profile: seed %s: %s\n", kinds[k].name, err.message);
        }
        pr_seed(dir, kinds[k].name, p);
        free(A);
        free(B);
    }
    /* two-stage rules (layer 0 gate dense, layer 1 predictor candidates: the Q8_0 predictor of the
     * last seed) with a level grid, splits and an allocation */
    const float levels[4] = {0.0f, 0.3f, 0.6f, 0.9f}, cand[4] = {1.0f, 0.8f, 0.5f, 0.15f}, keep[4] = {1.0f, 0.6f, 0.3f, 0.05f};
    float alloc[64];
    sl_profile_set_levels(p, levels, 4, &err);
    for (int32_t l = 0; l < c->n_layer; l++) {
        sl_profile_set_split(p, l, cand, keep, &err);
        for (int g = 0; g < 4; g++) alloc[l * 4 + g] = l % 2 ? levels[g] * 0.5f : levels[g] * 1.0f;
        sl_profile_layer L;
        sl_profile_get_layer(p, l, &L, &err);
        L.rule = l % 2 ? SL_RULE_TWO_STAGE_PRED : SL_RULE_TWO_STAGE;
        L.cand_k = c->n_ff / 2;
        L.topk = c->n_ff / 4;
        if (sl_profile_set_layer(p, l, &L, &err) != SL_OK) fprintf(stderr, "fuzz_profile: two-stage seed: %s\n", err.message);
    }
    sl_profile_set_allocation(p, alloc, &err);
    pr_seed(dir, "two-stage.skip.gguf", p);
    sl_profile_free(p);
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_profile_write_seeds(seeds);
        exit(0);
    }
    pr_init();
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_profile(data, size); }
#endif
