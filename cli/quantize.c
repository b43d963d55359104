/*
 * quantize.c — `skipllama quantize IN.gguf OUT.gguf TYPE`: re-encode a model's 2-D weights as
 * another type (see sl_model_quantize). Not a k-quant or importance-matrix quantizer.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void quantize_usage(FILE *out) {
    fprintf(out, "usage: skipllama quantize [--threads N] IN.gguf OUT.gguf TYPE\n"
                 "\n"
                 "Writes OUT.gguf with every 2-D tensor re-encoded as TYPE (f32 f16 bf16 q8_0 q4_0, llama.cpp's block\n"
                 "layouts and rounding), 1-D tensors as f32, all metadata copied and general.file_type updated.\n"
                 "Any supported input type works (quantized inputs are decoded first). --threads: default 2.\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *cmd = "quantize";
    const char *pos[3];
    int n_pos = 0, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-h", "--help")) {
            quantize_usage(stdout);
            return 0;
        }
        if (cli_is(argv[i], NULL, "--threads")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v) return 1;
            if (!cli_parse_int(v, 1, 1024, &n_threads)) return cli_fail(cmd, "--threads needs 1..1024, not '%s'", v);
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) return cli_fail(cmd, "unknown option '%s' (see --help)", argv[i]);
        if (n_pos == 3) return cli_fail(cmd, "too many arguments (see --help)");
        pos[n_pos++] = argv[i];
    }
    if (n_pos != 3) {
        quantize_usage(stderr);
        return 1;
    }
    sl_type type;
    if (!sl_type_from_name(pos[2], &type)) return cli_fail(cmd, "unknown type '%s' (f32 f16 bf16 q8_0 q4_0)", pos[2]);
    sl_error err = {0};
    if (sl_model_quantize(pos[0], pos[1], type, n_threads, &err) != SL_OK) return cli_fail_err(cmd, &err);
    fprintf(stderr, "skipllama quantize: wrote %s (%s)\n", pos[1], sl_type_name(type));
    return 0;
}
