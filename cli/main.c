/*
 * main.c — the `skipllama` command: dispatches `skipllama <subcommand> [options]` to the
 * subcommand's entry point. Each subcommand lives in its own cli/<name>.c.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;    /* as typed after `skipllama` */
    cli_main_fn fn;      /* entry point */
    const char *summary; /* one line for `skipllama --help` */
} command;

static const command commands[] = {
    {"info", cmd_info, "print a model's architecture, shapes, tensor types and size"},
    {"logits", cmd_logits, "write the logits of a token sequence as float32 rows"},
    {"synth", cmd_synth, "write a llama GGUF with random weights (benchmark model generator)"},
    {"quantize", cmd_quantize, "re-encode a GGUF model as a llama.cpp file type (q4_k_m q5_k_m q6_k q8_0 q4_0 f16 ...; llama.cpp's mixes)"},
    {"bench", cmd_bench, "llama-bench style prompt/generation speed, effective vs DRAM bandwidth"},
    {"bench-op", cmd_bench_op, "time the sparse MLP operator against the dense MLP on random weights"},
    {"ppl", cmd_ppl, "perplexity of a text file, dense or with a sparsity profile"},
    {"calibrate", cmd_calibrate, "write CATS sparsity thresholds for a model from a text file"},
    {"tokenize", cmd_tokenize, "print the token ids of a text (works on vocab-only GGUF files)"},
    {"detokenize", cmd_detokenize, "print the text of comma-separated token ids"},
    {"run", cmd_run, "generate text from a prompt, streaming it as it is produced"},
    {"train-predictor", cmd_train_predictor, "train low-rank skip predictors from a text and write them into a profile"},
    {"tune", cmd_tune, "calibrate and train every skip method, compare them on held-out text, write the best profile"},
    {"profile", cmd_profile, "show a sparsity profile, or write one with random predictors (speed proxy)"},
    {"chat", cmd_chat, "talk with an instruct model: multi-turn, its chat template, history kept in the KV cache"},
    {"convert", cmd_convert, "write a Hugging Face model folder as a GGUF file (llama.cpp's names and metadata)"},
    {"serve", cmd_serve, "serve the model over an OpenAI-compatible HTTP API, with a chat page"},
    /* @@COMMANDS@@ (one line per subcommand; keep this marker) */
};

static void usage(FILE *out) {
    fprintf(out, "skipllama %s — LLaMA inference on the CPU with skippable MLP neurons\n\n", SKIPLLAMA_VERSION);
    fprintf(out, "usage: skipllama <command> [options]   (skipllama <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-18s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nshared options, with one meaning in every command that takes them (llama.cpp's spellings):\n"
                 "  -m/--model FILE  -p/--prompt TEXT  -f/--file FILE  -o/--output FILE  -c/--ctx-size N  -t/--threads N\n"
                 "  -b/--batch-size N  -n/--n-predict N  -s/--seed N  -P/--profile FILE  --sparsity S  -q/--quiet\n"
                 "(bench follows llama-bench: -p/-n are row lengths, -o the output format)\n");
}

/* SIGINT / SIGTERM / SIGHUP: remove the temporary files of outputs being written (sl_output), then
 * die of the same signal, as the default action would. */
static void on_signal(int sig) {
    sl_output_remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        struct sigaction old;
        /* a signal the shell set to be ignored (nohup, a background job's SIGINT) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2) /* skipllama help CMD = skipllama CMD --help */
            for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[2], commands[i].name)) return commands[i].fn(2, (char *[]){argv[2], "--help", NULL});
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("skipllama %s\n", SKIPLLAMA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "skipllama: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
