/*
 * quantize.c — `skipllama quantize IN.gguf OUT.gguf TYPE`: re-encode a model's 2-D weights as
 * another type (see sl_model_quantize). Not a k-quant or importance-matrix quantizer.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_quantize(int argc, char **argv) {
    const char *cmd_name = "quantize";
    int n_threads = cli_default_threads(), n_pos = 0;
    cli_opt opts[] = {
        CLI_OPT_THREADS(&n_threads),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "quantize", .usage = "[-t N] IN.gguf OUT.gguf TYPE",
                         .about = "Writes OUT.gguf with every 2-D tensor re-encoded as TYPE (f32 f16 bf16 q8_0 q4_0, llama.cpp's block\n"
                                  "layouts and rounding), 1-D tensors as f32, all metadata copied and general.file_type updated.\n"
                                  "Any supported input type works (quantized inputs are decoded first).",
                         .opts = opts, .min_pos = 3, .max_pos = 3};
    int prc;
    if (!cli_parse(&cmd, argc, argv, &n_pos, &prc)) return prc;
    const char *pos[3] = {argv[1], argv[2], argv[3]};
    sl_type type;
    if (!sl_type_from_name(pos[2], &type)) return cli_fail(cmd_name, "unknown type '%s' (f32 f16 bf16 q8_0 q4_0)", pos[2]);
    sl_error err = {0};
    if (sl_model_quantize(pos[0], pos[1], type, n_threads, &err) != SL_OK) return cli_fail_err(cmd_name, &err);
    fprintf(stderr, "skipllama quantize: wrote %s (%s)\n", pos[1], sl_type_name(type));
    return 0;
}
