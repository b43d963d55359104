/*
 * convert.c — `skipllama convert IN -o OUT.gguf [--type T]`: a Hugging Face model folder (or a
 * GGUF file) written as a GGUF file with llama.cpp's tensor names and metadata, so llama.cpp
 * reads it too (see sl_model_convert).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cmd_convert(int argc, char **argv) {
    const char *out = NULL, *type_name = NULL;
    int n_threads = cli_default_threads(), n_pos = 0;
    cli_opt opts[] = {
        CLI_OPT_OUTPUT(&out, "the GGUF file to write"),
        {.names = "--type", .type = CLI_STR, .dest = &type_name, .meta = "T",
         .help = "type of the 2-D weights: f32 f16 bf16 q8_0 q4_0", .def = "each tensor's own (F32/F16/BF16)"},
        CLI_OPT_THREADS(&n_threads),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "convert", .usage = "IN -o OUT.gguf [--type T] [-t N]",
                         .about = "IN is a Hugging Face model folder (config.json, model.safetensors or its shards with\n"
                                  "model.safetensors.index.json, tokenizer.json, tokenizer_config.json) or a GGUF file. OUT gets\n"
                                  "llama.cpp's tensor names and metadata (as its convert_hf_to_gguf.py writes them: LLaMA q/k\n"
                                  "rows permuted, Gemma norms + 1, RoPE factors as tensors) and the tokenizer, so llama.cpp\n"
                                  "and skipllama both read it.",
                         .opts = opts, .min_pos = 1, .max_pos = 1};
    int prc;
    if (!cli_parse(&cmd, argc, argv, &n_pos, &prc)) return prc;
    if (!out) return cli_fail("convert", "give the output file with -o OUT.gguf");
    if (!cli_output_check("convert", out)) return 1;
    int type = -1;
    sl_type t;
    if (type_name) {
        if (!sl_type_from_name(type_name, &t)) return cli_fail("convert", "unknown type '%s' (f32 f16 bf16 q8_0 q4_0)", type_name);
        type = (int)t;
    }
    sl_error err = {0};
    const double t0 = (double)clock() / CLOCKS_PER_SEC;
    if (sl_model_convert(argv[1], out, type, n_threads, &err) != SL_OK) return cli_fail_err("convert", &err);
    struct stat st;
    fprintf(stderr, "skipllama convert: wrote %s (%s, %.1f MiB) in %.1f s of CPU\n", out, type_name ? type_name : "types kept",
            stat(out, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0, (double)clock() / CLOCKS_PER_SEC - t0);
    return 0;
}
