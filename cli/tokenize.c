/*
 * tokenize.c — `skipllama tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--no-bos] [--special]`:
 * print the token ids of a text on one line, space separated, as llama.cpp's llama-tokenize
 * does (BOS added when the vocabulary asks for it). Loads only the tokenizer, so vocab-only GGUF
 * files of any architecture work.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *file = NULL;
    bool add_bos = true, special = false, pieces = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF file with a tokenizer; vocab-only files work"),
        CLI_OPT_PROMPT(&prompt, "the text"),
        CLI_OPT_FILE(&file, "read the text from FILE ('-' = standard input); bytes as they are"),
        {.names = "--no-bos", .type = CLI_FLAG_OFF, .dest = &add_bos, .help = "do not add BOS (added by default when the vocabulary asks for it)"},
        {.names = "--special", .type = CLI_FLAG, .dest = &special, .help = "turn special-token text (\"<|eot_id|>\", \"<s>\") into those tokens"},
        {.names = "--pieces", .type = CLI_FLAG, .dest = &pieces, .help = "print one 'id<TAB>piece' line per token instead"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "tokenize", .usage = "[-m MODEL.gguf] (-p TEXT | -f FILE) [--no-bos] [--special] [--pieces]",
                         .about = "Prints the token ids of TEXT on one line, separated by spaces.", .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!(path = cli_model_path("tokenize", path))) return 1;
    if (!prompt == !file) {
        cli_help(&cmd, stderr);
        return cli_fail("tokenize", "give exactly one of -p TEXT or -f FILE");
    }
    size_t len = 0;
    char *text = NULL;
    if (file) {
        if (!(text = cli_read_input("tokenize", file, &len))) return 1;
    } else {
        len = strlen(prompt);
    }

    sl_model_params mp = sl_model_default_params();
    mp.vocab_only = true;
    sl_error err;
    sl_model *model = cli_load_model("tokenize", path, &mp, &err);
    if (!model) {
        free(text);
        return cli_fail_err("tokenize", &err);
    }
    const sl_vocab *vocab = sl_model_get_vocab(model);
    int rc = 0;
    int32_t *ids = NULL, n = 0;
    if (!vocab) {
        rc = cli_fail("tokenize", "'%s' has no tokenizer (no tokenizer.ggml.model)", path);
    } else if (sl_tokenize(vocab, file ? text : prompt, len, add_bos, special, &ids, &n, &err) != SL_OK) {
        rc = cli_fail_err("tokenize", &err);
    } else if (pieces) {
        for (int32_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = sl_token_to_piece(vocab, ids[i], true, &pl);
            printf("%d\t", ids[i]);
            fwrite(p, 1, pl, stdout);
            putchar('\n');
        }
    } else {
        for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    if (fflush(stdout) != 0 && rc == 0) rc = cli_fail("tokenize", "cannot write the output");
    sl_free_tokens(ids);
    free(text);
    sl_model_free(model);
    return rc;
}
