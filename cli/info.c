/*
 * info.c — `skipllama info -m MODEL.gguf`: architecture, shapes, tensor types, parameter count
 * and file size of a model (or of a vocab-only file, whose tokenizer is described instead).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    sl_model_params mp = sl_model_default_params();
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF model file"),
        {.names = "--vocab-only", .type = CLI_FLAG, .dest = &mp.vocab_only, .help = "load only the tokenizer (any architecture)"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "info", .usage = "[-m MODEL.gguf] [--vocab-only]",
                         .about = "Prints the architecture, hyperparameters, tensor shapes and types, parameter count and file size.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!(path = cli_model_path("info", path))) return 1;
    sl_error err;
    sl_model *model = cli_load_model("info", path, &mp, &err);
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
