/*
 * info.c — `skipllama info -m MODEL.gguf`: architecture, shapes, tensor types, parameter count
 * and file size of a model (or of a vocab-only file, whose tokenizer is described instead).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *out) {
    fprintf(out, "usage: skipllama info -m MODEL.gguf [--vocab-only]\n\n"
                 "Prints the architecture, hyperparameters, tensor shapes and types, parameter count and file size.\n"
                 "  -m, --model FILE   GGUF model file\n"
                 "  --vocab-only       load only the tokenizer (any architecture)\n");
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    sl_model_params mp = sl_model_default_params();
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) {
            help(stdout);
            return 0;
        } else if (cli_is(argv[i], "-m", "--model")) {
            if (!(path = cli_value("info", argc, argv, &i))) return 1;
        } else if (cli_is(argv[i], NULL, "--vocab-only")) {
            mp.vocab_only = true;
        } else {
            help(stderr);
            return cli_fail("info", "unknown option '%s'", argv[i]);
        }
    }
    if (!path) {
        help(stderr);
        return cli_fail("info", "missing -m MODEL.gguf");
    }
    sl_error err;
    sl_model *model = sl_model_load(path, &mp, &err);
    if (!model) return cli_fail_err("info", &err);
    size_t need = sl_model_describe(model, NULL, 0) + 1;
    char *buf = malloc(need);
    if (!buf) {
        sl_model_free(model);
        return cli_fail("info", "out of memory");
    }
    sl_model_describe(model, buf, need);
    fputs(buf, stdout);
    free(buf);
    sl_model_free(model);
    return 0;
}
