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

static void help(FILE *out) {
    fprintf(out,
            "usage: skipllama run [-m MODEL.gguf] (-p PROMPT | -f FILE) [options]\n\n"
            "Generates text after PROMPT and streams it to stdout (ending with a newline); a summary goes\n"
            "to stderr.\n"
            "  -m, --model FILE        GGUF model (default: the bundled tiny model)\n"
            "  -p, --prompt TEXT       the prompt\n"
            "  -f, --file FILE         read the prompt from FILE ('-' = standard input)\n"
            "  -n, --n-predict N       tokens to generate; -1 = until end of text or a full context (default -1)\n"
            "  -t, --threads N         worker threads (default: online CPUs, at most 16)\n"
            "  -c, --ctx-size N        context length in tokens (default: the model's, at most 4096)\n"
            "  -b, --batch-size N      prompt tokens per evaluation step (default 64)\n"
            "  --temp T                temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K               keep the K most likely tokens; 0 = off (default 40)\n"
            "  --top-p P               nucleus sampling; 1 = off (default 0.95)\n"
            "  --min-p P               drop tokens below P x the best; 0 = off (default 0.05)\n"
            "  --repeat-penalty R      penalise the last --repeat-last-n tokens; 1 = off (default 1.0)\n"
            "  --repeat-last-n N       window of the repetition penalty (default 64)\n"
            "  --seed S                random seed (default: from the clock, printed)\n"
            "  --no-bos                do not add BOS to the prompt\n"
            "  --chat                  wrap the prompt in the model's Llama-2/Llama-3 chat template\n"
            "  --system TEXT           system message for --chat\n"
            "  --display-prompt        print the prompt before the generated text\n"
            "  --special               print special tokens (e.g. <|eot_id|>) as text\n"
            "  --kv-f16                store the KV cache as f16\n"
            "  --no-repack             compute Q4_0 weights from the file layout (default: repacked at load)\n"
            "  --profile FILE          sparsity profile: skip MLP neurons while generating\n"
            "  --sparsity S            override the profile's target sparsity (0 <= S < 1)\n"
            "  --sparse-prefill        also skip neurons while evaluating the prompt (default: dense prompt)\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_run(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *file = NULL, *system = NULL;
    int n_predict = -1, n_threads = 0, n_ctx = 0, n_batch = 0;
    bool add_bos = true, chat = false, display_prompt = false, special = false, kv_f16 = false, no_repack = false, seed_set = false;
    const char *profile_path = NULL;
    float sparsity = -1.0f;
    bool sparse_prefill = false;
    sl_profile *profile = NULL;
    sl_sampler_params sp = sl_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int64_t seed;
        if (cli_is(a, "-h", "--help")) {
            help(stdout);
            return 0;
        }
#define VALUE() \
    if (!(v = cli_value("run", argc, argv, &i))) return 1
        if (cli_is(a, "-m", "--model")) {
            VALUE();
            path = v;
        } else if (cli_is(a, "-p", "--prompt")) {
            VALUE();
            prompt = v;
        } else if (cli_is(a, "-f", "--file")) {
            VALUE();
            file = v;
        } else if (cli_is(a, "-n", "--n-predict")) {
            VALUE();
            if (!cli_parse_int(v, -1, 1 << 30, &n_predict)) return cli_fail("run", "-n wants an integer >= -1, not '%s'", v);
        } else if (cli_is(a, "-t", "--threads")) {
            VALUE();
            if (!cli_parse_int(v, 1, 1024, &n_threads)) return cli_fail("run", "-t wants 1..1024, not '%s'", v);
        } else if (cli_is(a, "-c", "--ctx-size")) {
            VALUE();
            if (!cli_parse_int(v, 0, 1 << 24, &n_ctx)) return cli_fail("run", "-c wants a token count, not '%s'", v);
        } else if (cli_is(a, "-b", "--batch-size")) {
            VALUE();
            if (!cli_parse_int(v, 1, 1 << 16, &n_batch)) return cli_fail("run", "-b wants 1..65536, not '%s'", v);
        } else if (cli_is(a, NULL, "--temp")) {
            VALUE();
            if (!cli_parse_float(v, 0.0f, 1e6f, &sp.temperature)) return cli_fail("run", "--temp wants a number >= 0, not '%s'", v);
        } else if (cli_is(a, NULL, "--top-k")) {
            VALUE();
            if (!cli_parse_int(v, 0, 1 << 30, &sp.top_k)) return cli_fail("run", "--top-k wants an integer >= 0, not '%s'", v);
        } else if (cli_is(a, NULL, "--top-p")) {
            VALUE();
            if (!cli_parse_float(v, 0.0f, 1.0f, &sp.top_p)) return cli_fail("run", "--top-p wants 0..1, not '%s'", v);
        } else if (cli_is(a, NULL, "--min-p")) {
            VALUE();
            if (!cli_parse_float(v, 0.0f, 1.0f, &sp.min_p)) return cli_fail("run", "--min-p wants 0..1, not '%s'", v);
        } else if (cli_is(a, NULL, "--repeat-penalty")) {
            VALUE();
            if (!cli_parse_float(v, 1e-6f, 1e6f, &sp.repeat_penalty))
                return cli_fail("run", "--repeat-penalty wants a number > 0, not '%s'", v);
        } else if (cli_is(a, NULL, "--repeat-last-n")) {
            VALUE();
            if (!cli_parse_int(v, 0, 1 << 20, &sp.repeat_last_n)) return cli_fail("run", "--repeat-last-n wants 0..1048576, not '%s'", v);
        } else if (cli_is(a, NULL, "--seed")) {
            VALUE();
            if (!cli_parse_i64(v, 0, INT64_MAX, &seed)) return cli_fail("run", "--seed wants an integer >= 0, not '%s'", v);
            sp.seed = (uint64_t)seed;
            seed_set = true;
        } else if (cli_is(a, NULL, "--system")) {
            VALUE();
            system = v;
        } else if (cli_is(a, NULL, "--no-bos")) {
            add_bos = false;
        } else if (cli_is(a, NULL, "--chat")) {
            chat = true;
        } else if (cli_is(a, NULL, "--display-prompt")) {
            display_prompt = true;
        } else if (cli_is(a, NULL, "--special")) {
            special = true;
        } else if (cli_is(a, NULL, "--kv-f16")) {
            kv_f16 = true;
        } else if (cli_is(a, NULL, "--no-repack")) {
            no_repack = true;
        } else if (cli_is(a, NULL, "--profile")) {
            if (!(profile_path = cli_value("run", argc, argv, &i))) return 1;
        } else if (cli_is(a, NULL, "--sparsity")) {
            const char *sv = cli_value("run", argc, argv, &i);
            if (!sv || !cli_parse_float(sv, 0.0f, 0.999f, &sparsity)) return cli_fail("run", "bad --sparsity (expected 0 <= S < 1)");
        } else if (cli_is(a, NULL, "--sparse-prefill")) {
            sparse_prefill = true;
        } else {
            help(stderr);
            return cli_fail("run", "unknown option '%s'", a);
        }
#undef VALUE
    }
    if (!prompt == !file) {
        help(stderr);
        return cli_fail("run", "give exactly one of -p PROMPT or -f FILE");
    }
    if (system && !chat) return cli_fail("run", "--system needs --chat");
    if (!path) path = cli_default_model();
    if (!seed_set) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (n_threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
    }

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
    if (n_batch) cp.n_batch = n_batch;
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

    if (display_prompt) { /* the prompt as given (chat-wrapped with --chat) */
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
