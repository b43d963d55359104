/*
 * chat.c — `skipllama chat`: an interactive multi-turn conversation with an instruct model.
 *
 * Lines read from standard input are the user's messages (a line ending with '\' continues on
 * the next one); the model's replies stream to standard output as they are sampled. The
 * conversation is laid out by the model's chat template (or --chat-template) and its tokens stay
 * in the KV cache from turn to turn: each turn evaluates only what is new (chat_session.h), and
 * says on stderr how many prompt tokens it evaluated and how many it reused. `/clear` starts
 * over (keeping the system message), `/exit` (or end of input) quits.
 * What it is not: a terminal UI — no line editing beyond the terminal's own.
 */
#include "chat_session.h"
#include "cli.h"
#include "load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One message from in: lines joined while they end with '\'. NULL at end of input. */
static char *read_message(FILE *in, bool prompt) {
    char *msg = NULL, *line = NULL;
    size_t n = 0, cap = 0, len = 0;
    for (bool more = true; more;) {
        if (prompt) {
            fputs(len ? ". " : "> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &cap, in);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        more = got > 0 && line[got - 1] == '\\';
        if (more) line[--got] = '\n';
        char *m = realloc(msg, len + (size_t)got + 1);
        if (!m) break;
        msg = m;
        memcpy(msg + len, line, (size_t)got);
        len += (size_t)got;
        msg[len] = 0;
        n++;
    }
    free(line);
    if (!n) {
        free(msg);
        return NULL;
    }
    return msg;
}

int cmd_chat(int argc, char **argv) {
    const char *path = NULL, *system = NULL, *tmpl_name = NULL, *profile_path = NULL;
    int n_predict = -1, n_threads = cli_default_threads(), n_ctx = 0, n_batch = CLI_DEFAULT_BATCH;
    bool special = false, kv_f16 = false, no_repack = false, seed_set = false, sparse_prefill = false, add_bos = true;
    float sparsity = -1.0f;
    sl_sampler_params sp = sl_sampler_default_params();
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "model: a GGUF file or a Hugging Face model folder (default: the bundled tiny model)"),
        {.names = "--system", .type = CLI_STR, .dest = &system, .meta = "TEXT", .help = "system message", .def = ""},
        CLI_OPT_CHAT_TEMPLATE(&tmpl_name),
        CLI_OPT_NPREDICT(&n_predict, "tokens per reply at most; -1 = until end of generation or a full context"),
        CLI_OPT_THREADS(&n_threads),
        CLI_OPT_CTX(&n_ctx, "context length in tokens (the whole conversation); 0 = the model's", "the model's, at most 4096"),
        CLI_OPT_BATCH(&n_batch),
        CLI_SAMPLER_OPTS(&sp, &seed_set),
        {.names = "--no-bos", .type = CLI_FLAG_OFF, .dest = &add_bos, .help = "do not add BOS to the conversation"},
        {.names = "--special", .type = CLI_FLAG, .dest = &special, .help = "print special tokens as text"},
        {.names = "--kv-f16", .type = CLI_FLAG, .dest = &kv_f16, .help = "store the KV cache as f16"},
        {.names = "--no-repack", .type = CLI_FLAG, .dest = &no_repack, .help = "compute Q4_0 weights from the file layout"},
        CLI_OPT_PROFILE(&profile_path, "sparsity profile: skip MLP neurons while generating"),
        CLI_OPT_SPARSITY(&sparsity, "override the profile's target sparsity", "the profile's"),
        {.names = "--sparse-prefill", .type = CLI_FLAG, .dest = &sparse_prefill, .help = "also skip neurons while evaluating prompts"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "chat",
                         .usage = "[-m MODEL] [--system TEXT] [options]",
                         .about = "Talks with an instruct model: each line on standard input is a message (end a line with '\\'\n"
                                  "to continue it), replies stream to standard output. The conversation stays in the KV cache:\n"
                                  "each turn evaluates only its new tokens (reported on stderr). /clear starts over, /exit quits.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!(path = cli_model_path("chat", path))) return 1;
    if (!seed_set) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (sparsity >= 0 && !profile_path) return cli_fail("chat", "--sparsity needs --profile");

    int rc = 0;
    sl_error err;
    sl_model *model = NULL;
    sl_context *ctx = NULL;
    sl_sampler *smpl = NULL;
    sl_profile *profile = NULL;
    chat_session s;
    memset(&s, 0, sizeof s);
    if (!(model = cli_model_load("chat", path, profile_path, no_repack, n_threads))) {
        rc = 1;
        goto done;
    }
    const sl_vocab *vocab = sl_model_get_vocab(model);
    if (!vocab) {
        rc = cli_fail("chat", "'%s' has no tokenizer", path);
        goto done;
    }
    sl_chat_template tmpl;
    if ((rc = chat_template_choose("chat", vocab, tmpl_name, &tmpl))) goto done;
    const sl_model_config *cfg = sl_model_get_config(model);
    if (n_ctx == 0) n_ctx = cfg->n_ctx_train > 0 && cfg->n_ctx_train < 4096 ? cfg->n_ctx_train : 4096;
    cli_warn_ctx("chat", model, n_ctx);
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.n_batch = n_batch;
    cp.kv_f16 = kv_f16;
    if (!(ctx = sl_context_init(model, &cp, &err))) {
        rc = cli_fail_err("chat", &err);
        goto done;
    }
    if ((rc = cli_profile_attach("chat", model, profile_path, sparsity, ctx, sparse_prefill, &profile))) goto done;
    if (!sl_sampler_params_check(&sp, &err) || !(smpl = sl_sampler_init(&sp))) {
        rc = err.code != SL_OK ? cli_fail_err("chat", &err) : cli_fail("chat", "out of memory");
        goto done;
    }
    if ((rc = chat_session_init(&s, "chat", vocab, ctx, smpl, tmpl, cfg->n_vocab, n_predict, special, add_bos, system))) goto done;
    const bool tty = isatty(0);
    fprintf(stderr, "skipllama chat: %s, template %s, n_ctx = %d, threads = %d, seed = %llu, %s\n", path, sl_chat_template_name(tmpl), n_ctx,
            n_threads, (unsigned long long)sp.seed, sp.temperature <= 0 ? "greedy" : "sampling");
    fprintf(stderr, "skipllama chat: type a message and press Enter (end a line with '\\' to go on); /clear starts over, /exit quits\n");
    for (int turn = 1;;) {
        char *msg = read_message(stdin, tty);
        if (!msg) break;
        if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) {
            free(msg);
            break;
        }
        if (!strcmp(msg, "/clear")) {
            chat_session_clear(&s);
            fprintf(stderr, "[conversation cleared: the KV cache is empty]\n");
            free(msg);
            turn = 1;
            continue;
        }
        if (!msg[0]) {
            free(msg);
            continue;
        }
        chat_turn_stats st;
        int trc = chat_session_turn(&s, msg, false, stdout, &st);
        free(msg);
        if (trc) continue; /* the error was printed; the conversation goes on */
        fprintf(stderr, "[turn %d: %d prompt tokens evaluated, %d reused from the KV cache; %d tokens generated in %.2f s (%.1f tokens/s); %s]\n",
                turn, st.n_prompt, st.n_kept, st.n_gen, st.t_gen, st.t_gen > 0 ? st.n_gen / st.t_gen : 0.0, st.stop);
        turn++;
    }
done:
    chat_session_free(&s);
    sl_sampler_free(smpl);
    sl_context_free(ctx);
    sl_profile_free(profile);
    sl_model_free(model);
    return rc;
}
