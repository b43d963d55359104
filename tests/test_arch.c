/*
 * test_arch.c — every architecture of the table (src/model/arch.h) against llama.cpp:
 *  - the fixtures in tests/data/arch/ (random weights, written by `skipllama synth --arch ...`,
 *    recipes in scripts/arch_fixtures.sh): log-probabilities of llama.cpp's top-20 tokens at
 *    every one of 40 positions within a named tolerance, argmax agreeing; the same logits when
 *    the prompt goes in small batches on 2 threads (the KV cache, RoPE at later positions,
 *    windows crossing batches);
 *  - the sliding window of a `llama` file (llama.cpp ignores that key, so it is checked here
 *    against its definition): the window changes nothing before it fills, and after, position
 *    p of a 1-layer model equals the last position of the window's tokens evaluated alone;
 *  - Gemma's GELU equal to llama.cpp's float16 table;
 *  - the table's lookups, and files an architecture cannot run refused with a message.
 */
#include "format/gguf.h"
#include "format/quant.h"
#include "kernels/activation.h"
#include "model/arch.h"
#include "model/model.h"
#include "skipllama.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tolerances on |log-prob - llama.cpp's| over its top 20: the largest at any position, and the
 * median over positions of each position's largest (what a systematic error would move):
 *  F32, no GELU: the same f32 math in another summation order; measured max <= 3.2e-6:
 *    1e-4 / median 1e-5.
 *  F32, Gemma (GELU through llama.cpp's float16 table, emulated): a gate pre-activation that
 *    differs from llama.cpp's by float rounding sometimes rounds to the neighbouring float16,
 *    which moves that neuron's output by ~2^-11 relative; measured max <= 6e-4, median <= 1.4e-4
 *    (gemma3-swa, 6 layers): the 1e-3 / median 3e-4 (an exact GELU is 1.6e-3 / 7e-4 off
 *    on these files).
 *  Q8_0 / Q4_0: both sides quantize activations to Q8_0 the same way, so they agree to float
 *    order (measured <= 1.3e-6) except where an activation sits within rounding of a Q8_0 step
 *    and lands one step (1/127 of its block's largest value) away: such a flip moved one
 *    position of phi3-longrope-q4_0 by 2.3e-2 (every other position <= 1.3e-6): 5e-2 / median
 *    1e-5. */
#define TOL_F32 1e-4, 1e-5
#define TOL_F32_GELU 1e-3, 3e-4
#define TOL_QUANT 5e-2, 1e-5
/* Batch splits and threads: the same math, reassociated. */
#define TOL_SAME_MATH 2e-5
/* The oracle's context: max(n_ids + 1, 64) tokens (decides Phi-3's LongRoPE factors). */
#define ORACLE_N_CTX 64

typedef struct fixture {
    const char *name; /* tests/data/arch/NAME.gguf and NAME.oracle.json */
    double tol;       /* see above: the largest difference at any position */
    double tol_median; /* ... and the median over positions */
} fixture;

static const fixture fixtures[] = {
    {"llama-gqa-yarn", TOL_F32},      {"llama-tied-linear", TOL_F32},    {"qwen2-bias", TOL_F32},
    {"qwen2-yarn-q4_0", TOL_QUANT},   {"qwen3-hd32", TOL_F32},           {"qwen3-q8_0", TOL_QUANT},
    {"phi3-partial", TOL_F32},        {"phi3-longrope-q4_0", TOL_QUANT}, {"gemma2-swa", TOL_F32_GELU},
    {"gemma2-caps", TOL_F32_GELU},    {"gemma2-q8_0", TOL_QUANT},        {"gemma3-swa", TOL_F32_GELU},
    {"gemma3-global-q4_0", TOL_QUANT},
};

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* logits [n, V] of ids through a fresh context */
static float *eval_all(const sl_model *m, const int32_t *ids, int n, int n_ctx, int threads, int batch, sl_error *err) {
    const int V = sl_model_get_config(m)->n_vocab;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = threads;
    cp.n_batch = batch;
    sl_context *ctx = sl_context_init(m, &cp, err);
    float *logits = ctx ? malloc((size_t)n * V * sizeof(float)) : NULL;
    if (logits && sl_eval(ctx, ids, n, logits, true, err) != SL_OK) {
        free(logits);
        logits = NULL;
    }
    sl_context_free(ctx);
    return logits;
}

static void test_fixture(const fixture *fx) {
    char path[256];
    size_t size;
    snprintf(path, sizeof(path), "tests/data/arch/%s.oracle.json", fx->name);
    char *json = test_read_file(path, &size);
    if (!CHECK(json != NULL, "%s: read %s", fx->name, path)) return;
    int32_t ids[128];
    const int n = test_json_ints(json, "ids", ids, 128);
    snprintf(path, sizeof(path), "tests/data/arch/%s.gguf", fx->name);
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    if (!CHECK(m != NULL && n > 0, "%s: load (%s), %d ids", fx->name, m ? sl_model_get_config(m)->arch : err.message, n)) {
        free(json);
        sl_model_free(m);
        return;
    }
    const int V = sl_model_get_config(m)->n_vocab;
    float *logits = eval_all(m, ids, n, ORACLE_N_CTX, 1, 64, &err);
    if (!CHECK(logits != NULL, "%s: eval %d ids (%s)", fx->name, n, logits ? "ok" : err.message)) {
        free(json);
        sl_model_free(m);
        return;
    }
    double worst = 0.0, per_pos[128];
    int worst_pos = -1, n_compared = 0, argmax_bad = 0;
    const char *p = test_json_find(json, "positions");
    for (int i = 0; i < n && p; i++) {
        p = test_json_find(p, "top");
        if (!p) break;
        const float *row = logits + (size_t)i * V;
        double mx = row[0], sum = 0.0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
        const double lse = mx + log(sum);
        p++; /* past '[' */
        double first_lp = 0, second_lp = 0;
        int first_id = -1;
        per_pos[i] = 0.0;
        for (int k = 0; k < 20; k++) {
            char *end;
            while (*p && *p != '[') p++;
            const long id = strtol(p + 1, &end, 10);
            p = end;
            while (*p == ',' || *p == ' ') p++;
            const double lp = strtod(p, &end);
            p = end;
            if (id < 0 || id >= V) break;
            const double d = fabs(row[id] - lse - lp);
            if (d > worst) worst = d, worst_pos = i;
            if (d > per_pos[i]) per_pos[i] = d;
            n_compared++;
            if (k == 0) first_lp = lp, first_id = (int)id;
            if (k == 1) second_lp = lp;
        }
        if (first_lp - second_lp > 2 * fx->tol && argmax(row, V) != first_id) argmax_bad++;
    }
    CHECK(n_compared == n * 20, "%s: compared %d top-20 log-probs over %d positions", fx->name, n_compared, n);
    CHECK(worst <= fx->tol, "%s: max |logprob - llama.cpp| = %.3g (position %d) <= tol %.0e", fx->name, worst, worst_pos, fx->tol);
    for (int i = 1; i < n; i++) /* insertion sort: the median */
        for (int j = i; j > 0 && per_pos[j] < per_pos[j - 1]; j--) {
            const double t = per_pos[j];
            per_pos[j] = per_pos[j - 1], per_pos[j - 1] = t;
        }
    CHECK(per_pos[n / 2] <= fx->tol_median, "%s: median over positions %.3g <= %.0e", fx->name, per_pos[n / 2], fx->tol_median);
    CHECK(argmax_bad == 0, "%s: argmax agrees with llama.cpp where its top-2 gap > 2*tol (%d disagreements)", fx->name, argmax_bad);
    /* the same prompt in batches of 7 on 2 threads */
    float *split = eval_all(m, ids, n, ORACLE_N_CTX, 2, 7, &err);
    if (CHECK(split != NULL, "%s: eval in batches of 7, 2 threads", fx->name))
        CHECK_CLOSE(split, logits, (size_t)n * V, TOL_SAME_MATH, "batches of 7 on 2 threads == one batch on 1 thread");
    free(split);
    free(logits);
    free(json);
    sl_model_free(m);
}

/* ---- the sliding window of a llama file ------------------------------------------------------ */

static void test_llama_window(void) {
    const int W = 5, N = 20;
    char with[256], without[256];
    snprintf(with, sizeof(with), "/tmp/sl-test-arch-swa-%d.gguf", (int)getpid());
    snprintf(without, sizeof(without), "/tmp/sl-test-arch-noswa-%d.gguf", (int)getpid());
    sl_synth_params p = sl_synth_default_params();
    p.n_vocab = 300, p.n_embd = 32, p.n_ff = 64, p.n_layer = 1, p.n_head = 4, p.n_head_kv = 2, p.seed = 9;
    sl_error err;
    bool ok = sl_synth_write(&p, without, &err) == SL_OK;
    p.n_swa = W;
    ok = ok && sl_synth_write(&p, with, &err) == SL_OK;
    sl_model *mw = ok ? sl_model_load(with, NULL, &err) : NULL, *mn = ok ? sl_model_load(without, NULL, &err) : NULL;
    unlink(with);
    unlink(without);
    if (!CHECK(mw && mn && sl_model_get_config(mw)->n_swa == W, "llama window: two 1-layer models, window %d and none (%s)", W,
               mw && mn ? "ok" : err.message)) {
        sl_model_free(mw);
        sl_model_free(mn);
        return;
    }
    int32_t ids[20];
    test_rng rng = {77};
    for (int i = 0; i < N; i++) ids[i] = 3 + (int32_t)(test_rng_u64(&rng) % 290);
    const int V = 300;
    float *lw = eval_all(mw, ids, N, 32, 1, 64, &err), *ln = eval_all(mn, ids, N, 32, 1, 64, &err);
    if (lw && ln) {
        CHECK_CLOSE(lw, ln, (size_t)W * V, 0.0, "llama window: positions before the window fills == no window");
        const double after = test_maxdiff(lw + (size_t)W * V, ln + (size_t)W * V, (size_t)(N - W) * V);
        CHECK(after > 1e-3, "llama window: positions after it differ from no window (maxdiff %.3g > 1e-3)", after);
        /* one layer and relative RoPE: position p sees exactly tokens p-W+1..p, as their last
         * position does when they are evaluated alone (angles differ by float rounding only) */
        double worst = 0.0;
        for (int q = W; q < N; q++) {
            float *alone = eval_all(mw, ids + q - W + 1, W, 32, 1, 64, &err);
            if (!alone) break;
            const double d = test_maxdiff(lw + (size_t)q * V, alone + (size_t)(W - 1) * V, (size_t)V);
            if (d > worst) worst = d;
            free(alone);
        }
        CHECK(worst <= 1e-4, "llama window: position p == the window's tokens alone (maxdiff %.3g <= 1e-4, positions %d..%d)", worst, W,
              N - 1);
    }
    CHECK(lw && ln, "llama window: evaluated");
    free(lw);
    free(ln);
    sl_model_free(mw);
    sl_model_free(mn);
}

/* ---- llama.cpp's float16 GELU ------------------------------------------------------------------ */

/* sl_gelu_f16 against a table built the way ggml builds ggml_table_gelu_f16 (every float16 value
 * through its float GELU, rounded to float16), looked up at float16(x) as ggml_vec_geglu_f32 does,
 * on random inputs, every float16 value, and the +-10 edges. */
static void test_gelu_f16(void) {
    uint16_t *table = malloc(65536 * sizeof(uint16_t));
    if (!CHECK(table != NULL, "gelu_f16: table")) return;
    for (uint32_t i = 0; i < 65536; i++) {
        const float v = sl_fp16_to_fp32((uint16_t)i);
        table[i] = sl_fp32_to_fp16(0.5f * v * (1.0f + tanhf(0.79788456080286535587989211986876f * v * (1.0f + 0.044715f * v * v))));
    }
    int bad = 0, n = 0;
    test_rng r = {123};
    for (int i = 0; i < 200000 + 65536 + 4; i++) {
        float x;
        if (i < 200000) x = 4.0f * test_rng_normal(&r);
        else if (i < 200000 + 65536) x = sl_fp16_to_fp32((uint16_t)(i - 200000));
        else x = (const float[]){-10.0f, 10.0f, nextafterf(-10.0f, 0.0f), nextafterf(10.0f, 0.0f)}[i - 200000 - 65536];
        if (isnan(x) || isinf(x)) continue;
        const float want = x <= -10.0f ? 0.0f : x >= 10.0f ? x : sl_fp16_to_fp32(table[sl_fp32_to_fp16(x)]);
        const float got = sl_activate(SL_ACT_GELU_F16, x);
        bad += memcmp(&want, &got, sizeof(float)) != 0;
        n++;
    }
    CHECK(bad == 0, "gelu_f16 == ggml's float16 GELU table on %d inputs (%d differ)", n, bad);
    free(table);
}

/* ---- the table ------------------------------------------------------------------------------- */

static void test_table(void) {
    static const char *const names[] = {"llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"};
    int n = 0;
    while (sl_arch_at(n)) n++;
    CHECK(n == 6, "table: %d architectures", n);
    for (int i = 0; i < 6; i++) {
        const sl_arch *a = sl_arch_find(names[i]);
        CHECK(a && !strcmp(a->name, names[i]), "table: '%s' found", names[i]);
    }
    CHECK(!sl_arch_find("gpt2") && !sl_arch_find("") && !sl_arch_find(NULL), "table: unknown names give NULL");
    CHECK(sl_arch_find_hf("MistralForCausalLM") == sl_arch_find("llama") && sl_arch_find_hf("Qwen2ForCausalLM") == sl_arch_find("qwen2") &&
              sl_arch_find_hf("Gemma3ForConditionalGeneration") == sl_arch_find("gemma3"),
          "table: HF class names map to their rows");
    CHECK(!sl_arch_find_hf("Qwen2For") && !sl_arch_find_hf("ForCausalLM") && !sl_arch_find_hf("Qwen2ForCausalLMX"),
          "table: only whole HF class names match");
}

/* ---- refusals -------------------------------------------------------------------------------- */

typedef struct edit {
    const char *drop_key;    /* metadata key left out, or NULL */
    const char *drop_tensor; /* tensor left out, or NULL */
    const char *set_key;     /* string key added, or NULL */
    const char *set_value;
    const char *add_tensor;  /* a 1-D f32 tensor of n_embd values added, or NULL */
} edit;

static bool skip_key(const char *key, void *ud) {
    const edit *e = ud;
    return (e->drop_key && !strcmp(key, e->drop_key)) || (e->set_key && !strcmp(key, e->set_key));
}

/* Copy src with one edit into path; true when written. */
static bool write_edited(const char *src, const char *path, const edit *e) {
    sl_error err;
    gguf_file *f = gguf_open(src, &err);
    if (!f) return false;
    gguf_writer *w = gguf_writer_init();
    bool ok = w && gguf_writer_copy_kv(w, f, skip_key, (void *)e);
    if (ok && e->set_key) ok = gguf_writer_set_str(w, e->set_key, e->set_value);
    static float zeros[4096];
    for (uint64_t i = 0; ok && i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        char name[128];
        gguf_str_copy(t->name, name, sizeof(name));
        if (e->drop_tensor && !strcmp(name, e->drop_tensor)) continue;
        ok = gguf_writer_add_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data);
    }
    const int64_t ne[1] = {64};
    if (ok && e->add_tensor) ok = gguf_writer_add_tensor(w, e->add_tensor, SL_TYPE_F32, 1, ne, zeros);
    ok = ok && gguf_writer_write(w, path, &err) == SL_OK;
    gguf_writer_free(w);
    gguf_close(f);
    return ok;
}

static void expect_refused(const char *src, const edit *e, sl_status code, const char *needle, const char *what) {
    char path[256];
    snprintf(path, sizeof(path), "/tmp/sl-test-arch-bad-%d.gguf", (int)getpid());
    if (!CHECK(write_edited(src, path, e), "%s: file written", what)) return;
    sl_error err;
    sl_model *m = sl_model_load(path, NULL, &err);
    unlink(path);
    CHECK(!m && err.code == code && strstr(err.message, needle), "%s refused: %s", what, m ? "(loaded!)" : err.message);
    sl_model_free(m);
}

static void test_refusals(void) {
    const char *q3 = "tests/data/arch/qwen3-hd32.gguf", *p3 = "tests/data/arch/phi3-partial.gguf";
    expect_refused(q3, &(edit){.set_key = "general.architecture", .set_value = "mamba"}, SL_ERR_UNSUPPORTED, "supported: llama, qwen2",
                   "unknown architecture");
    expect_refused(q3, &(edit){.drop_tensor = "blk.1.attn_k_norm.weight"}, SL_ERR_FORMAT, "blk.1.attn_k_norm.weight",
                   "qwen3 without a k norm");
    expect_refused(q3, &(edit){.drop_tensor = "blk.0.attn_q_norm.weight", .add_tensor = "blk.0.attn_q_norm.weight"}, SL_ERR_FORMAT,
                   "expected [32, 1]", "a q norm of the wrong size");
    expect_refused(q3, &(edit){.set_key = "qwen3.rope.scaling.type", .set_value = "ntk"}, SL_ERR_UNSUPPORTED, "rope scaling 'ntk'",
                   "unknown RoPE scaling");
    expect_refused(q3, &(edit){.add_tensor = "blk.0.ffn_down.bias"}, SL_ERR_UNSUPPORTED, "MLP biases", "an MLP bias");
    expect_refused(p3, &(edit){.drop_key = "phi3.embedding_length"}, SL_ERR_FORMAT, "phi3.embedding_length", "a missing width");
}

int main(void) {
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) test_fixture(&fixtures[i]);
    test_llama_window();
    test_gelu_f16();
    test_table();
    test_refusals();
    return test_summary();
}
