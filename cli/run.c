/*
 * run.c — `skipllama run`: generate text from a prompt, as llama.cpp's llama-cli does.
 *
 * The prompt is tokenized (BOS as the vocabulary asks, special-token text parsed, as llama-cli),
 * optionally wrapped in the model's Llama-2 or Llama-3 chat template (--chat), evaluated in one
 * sl_eval call, then tokens are sampled one at a time and streamed to stdout as soon as they form
 * whole UTF-8 characters. Generation stops at an end-of-generation token, after -n tokens, or
 * when the context is full, and says which on stderr together with llama.cpp-style speed lines.
 * What it is not: an interactive chat loop.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_run(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *file = NULL, *system = NULL;
    int n_predict = -1, n_threads = cli_default_threads(), n_ctx = 0, n_batch = CLI_DEFAULT_BATCH;
    bool add_bos = true, chat = false, display_prompt = true, display_set = false, special = false, kv_f16 = false, no_repack = false, seed_set = false;
    const char *profile_path = NULL;
    float sparsity = -1.0f;
    bool sparse_prefill = false;
    sl_profile *profile = NULL;
    sl_sampler_params sp = sl_sampler_default_params();
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF model"),
        CLI_OPT_PROMPT(&prompt, "the prompt"),
        CLI_OPT_FILE(&file, "read the prompt from FILE ('-' = standard input)"),
        CLI_OPT_NPREDICT(&n_predict, "tokens to generate; -1 = until end of text or a full context"),
        CLI_OPT_THREADS(&n_threads),
        CLI_OPT_CTX(&n_ctx, "context length in tokens; 0 = the model's", "the model's, at most 4096"),
        CLI_OPT_BATCH(&n_batch),
        {.names = "--temp", .type = CLI_FLOAT, .dest = &sp.temperature, .lo = 0, .hi = 1e6, .meta = "T", .help = "temperature; 0 = greedy"},
        {.names = "--top-k", .type = CLI_INT, .dest = &sp.top_k, .lo = 0, .hi = 1 << 30, .meta = "K", .help = "keep the K most likely tokens; 0 = off"},
        {.names = "--top-p", .type = CLI_FLOAT, .dest = &sp.top_p, .lo = 0, .hi = 1, .meta = "P", .help = "nucleus sampling; 1 = off"},
        {.names = "--min-p", .type = CLI_FLOAT, .dest = &sp.min_p, .lo = 0, .hi = 1, .meta = "P", .help = "drop tokens below P x the most likely; 0 = off"},
        {.names = "--repeat-penalty", .type = CLI_FLOAT, .dest = &sp.repeat_penalty, .lo = 0, .hi = 1e6, .flags = CLI_LO_OPEN, .meta = "R",
         .help = "penalise the last --repeat-last-n tokens; 1 = off"},
        {.names = "--repeat-last-n", .type = CLI_INT, .dest = &sp.repeat_last_n, .lo = 0, .hi = 1 << 20, .meta = "N",
         .help = "window of the repetition penalty"},
        {.names = "-s --seed", .type = CLI_U64, .dest = &sp.seed, .lo = 0, .hi = 9.3e18, .meta = "N", .help = "random seed",
         .def = "from the clock, printed", .seen = &seed_set},
        {.names = "--no-bos", .type = CLI_FLAG_OFF, .dest = &add_bos, .help = "do not add BOS to the prompt"},
        {.names = "--chat", .type = CLI_FLAG, .dest = &chat, .help = "wrap the prompt in the model's Llama-2/Llama-3 chat template"},
        {.names = "--system", .type = CLI_STR, .dest = &system, .meta = "TEXT", .help = "system message for --chat", .def = ""},
        {.names = "--no-display-prompt", .type = CLI_FLAG_OFF, .dest = &display_prompt,
         .help = "print only the generated text (default: the prompt first, as llama-cli; not with --chat)"},
        {.names = "--display-prompt", .type = CLI_FLAG, .dest = &display_prompt, .seen = &display_set,
         .help = "print the prompt before the generated text (the default; with --chat, the templated prompt)"},
        {.names = "--special", .type = CLI_FLAG, .dest = &special, .help = "print special tokens (e.g. <|eot_id|>) as text"},
        {.names = "--kv-f16", .type = CLI_FLAG, .dest = &kv_f16, .help = "store the KV cache as f16"},
        {.names = "--no-repack", .type = CLI_FLAG, .dest = &no_repack, .help = "compute Q4_0 weights from the file layout (default: repacked at load)"},
        CLI_OPT_PROFILE(&profile_path, "sparsity profile: skip MLP neurons while generating"),
        CLI_OPT_SPARSITY(&sparsity, "override the profile's target sparsity", "the profile's"),
        {.names = "--sparse-prefill", .type = CLI_FLAG, .dest = &sparse_prefill, .help = "also skip neurons while evaluating the prompt (default: dense prompt)"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "run",
                         .usage = "[-m MODEL.gguf] (-p PROMPT | -f FILE) [options]",
                         .about = "Generates text after PROMPT and streams it to stdout (ending with a newline); a summary goes\n"
                                  "to stderr.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!prompt == !file) {
        cli_help(&cmd, stderr);
        return cli_fail("run", "give exactly one of -p PROMPT or -f FILE");
    }
    if (system && !chat) return cli_fail("run", "--system needs --chat");
    if (!(path = cli_model_path("run", path))) return 1;
    if (!seed_set) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    size_t text_len = 0;
    char *text_buf = NULL;
    if (file) {
        if (!(text_buf = cli_read_input("run", file, &text_len))) return 1;
    } else {
        text_len = strlen(prompt);
    }
    const char *text = file ? text_buf : prompt;

    int rc = 0;
    sl_error err;
    sl_model *model = NULL;
    sl_context *ctx = NULL;
    sl_sampler *smpl = NULL;
    sl_detok *detok = NULL;
    int32_t *ids = NULL, n_ids = 0;
    float *logits = NULL;
    char *chat_text = NULL;

    sl_model_params mp = sl_model_default_params();
    mp.no_repack = no_repack;
    if (!(model = sl_model_load(path, &mp, &err))) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    const sl_vocab *vocab = sl_model_get_vocab(model);
    if (!vocab) {
        rc = cli_fail("run", "'%s' has no tokenizer, so it cannot turn a prompt into tokens", path);
        goto done;
    }
    const sl_model_config *cfg = sl_model_get_config(model);
    if (n_ctx == 0) n_ctx = cfg->n_ctx_train > 0 && cfg->n_ctx_train < 4096 ? cfg->n_ctx_train : 4096;

    if (chat) {
        size_t cl = 0;
        if (sl_chat_format(vocab, system, text, text_len, &chat_text, &cl, &err) != SL_OK) {
            rc = cli_fail("run", "--chat: %s", err.message);
            goto done;
        }
        text = chat_text;
        text_len = cl;
    }
    if (sl_tokenize(vocab, text, text_len, add_bos, true, &ids, &n_ids, &err) != SL_OK) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    if (n_ids == 0) {
        rc = cli_fail("run", "the prompt is empty (no tokens, and no BOS was added)");
        goto done;
    }
    if (n_ids > n_ctx) {
        rc = cli_fail("run", "the prompt is %d tokens but the context holds %d; shorten it or raise -c (the model was "
                             "trained with %d)",
                      n_ids, n_ctx, cfg->n_ctx_train);
        goto done;
    }

    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.n_batch = n_batch;
    cp.kv_f16 = kv_f16;
    if (!(ctx = sl_context_init(model, &cp, &err))) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    if (sparsity >= 0 && !profile_path) {
        rc = cli_fail("run", "--sparsity needs --profile");
        goto done;
    }
    if (profile_path && (!(profile = sl_profile_load(profile_path, model, &err)) ||
                         (sparsity >= 0 && sl_profile_set_sparsity(profile, sparsity, &err) != SL_OK) ||
                         sl_context_set_profile(ctx, profile, sparse_prefill, &err) != SL_OK)) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    if (!sl_sampler_params_check(&sp, &err) || !(smpl = sl_sampler_init(&sp))) {
        rc = err.code != SL_OK ? cli_fail_err("run", &err) : cli_fail("run", "out of memory");
        goto done;
    }
    if (!(detok = sl_detok_init(vocab, special, &err))) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    int32_t n_vocab = cfg->n_vocab;
    if (!(logits = malloc((size_t)n_vocab * sizeof(float)))) {
        rc = cli_fail("run", "out of memory");
        goto done;
    }
    fprintf(stderr, "skipllama run: %s, n_ctx = %d, threads = %d, seed = %llu, %s\n", path, n_ctx, n_threads,
            (unsigned long long)sp.seed, sp.temperature <= 0 ? "greedy" : "sampling");

    if (display_prompt && (!chat || display_set)) { /* the prompt as given (chat-wrapped with --chat) */
        fwrite(text, 1, text_len, stdout);
        fflush(stdout);
    }

    for (int32_t i = 0; i < n_ids; i++) sl_sampler_accept(smpl, ids[i]);
    double t0 = now_s();
    if (sl_eval(ctx, ids, n_ids, logits, false, &err) != SL_OK) {
        rc = cli_fail_err("run", &err);
        goto done;
    }
    double t_prompt = now_s() - t0;

    const char *stop = NULL;
    char stop_buf[160];
    int n_gen = 0;
    double t1 = now_s();
    for (;;) {
        if (n_predict >= 0 && n_gen >= n_predict) {
            snprintf(stop_buf, sizeof stop_buf, "generated the %d tokens asked for (-n)", n_predict);
            stop = stop_buf;
            break;
        }
        int32_t tok = sl_sampler_sample(smpl, logits, n_vocab);
        if (tok < 0) {
            rc = cli_fail("run", "the model produced no usable logits (all -inf or NaN)");
            break;
        }
        sl_sampler_accept(smpl, tok);
        if (sl_vocab_is_eog(vocab, tok)) {
            size_t tl;
            const char *tt = sl_vocab_token_text(vocab, tok, &tl);
            snprintf(stop_buf, sizeof stop_buf, "end of generation (token %d '%.*s')", tok, (int)(tl < 40 ? tl : 40),
                     tt ? tt : "");
            stop = stop_buf;
            break;
        }
        const char *piece;
        size_t pl;
        if (sl_detok_push(detok, tok, &piece, &pl, &err) != SL_OK) {
            rc = cli_fail_err("run", &err);
            break;
        }
        fwrite(piece, 1, pl, stdout);
        fflush(stdout);
        n_gen++;
        if (sl_context_n_past(ctx) >= sl_context_n_ctx(ctx)) {
            snprintf(stop_buf, sizeof stop_buf, "the context is full (%d tokens; raise -c for more)", n_ctx);
            stop = stop_buf;
            break;
        }
        if (n_predict >= 0 && n_gen >= n_predict) continue; /* no need to evaluate the last token */
        if (sl_eval(ctx, &tok, 1, logits, false, &err) != SL_OK) {
            rc = cli_fail_err("run", &err);
            break;
        }
    }
    double t_gen = now_s() - t1;
    {
        const char *rest;
        size_t rl;
        sl_detok_flush(detok, &rest, &rl);
        fwrite(rest, 1, rl, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (stop) fprintf(stderr, "skipllama run: stopped: %s\n", stop);
    fprintf(stderr, "skipllama run: prompt:     %5d tokens in %9.2f ms (%8.2f tokens/s)\n", n_ids, 1e3 * t_prompt,
            t_prompt > 0 ? n_ids / t_prompt : 0.0);
    fprintf(stderr, "skipllama run: generation: %5d tokens in %9.2f ms (%8.2f tokens/s)\n", n_gen, 1e3 * t_gen,
            t_gen > 0 ? n_gen / t_gen : 0.0);
    if (profile) {
        /* achieved sparsity per layer over the tokens that took the sparse path */
        fprintf(stderr, "skipllama run: MLP sparsity per layer (%s):", sl_profile_method(profile));
        for (int l = 0; l < cfg->n_layer; l++) {
            sl_layer_stats st;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            fprintf(stderr, " %.2f", st.n_neurons ? 1.0 - (double)st.n_active / (double)st.n_neurons : 0.0);
        }
        fprintf(stderr, "\n");
    }

done:
    free(logits);
    sl_free_text(chat_text);
    sl_free_tokens(ids);
    sl_detok_free(detok);
    sl_sampler_free(smpl);
    sl_context_free(ctx);
    sl_profile_free(profile);
    sl_model_free(model);
    free(text_buf);
    return rc;
}
