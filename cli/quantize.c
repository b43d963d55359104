/*
 * quantize.c — `skipllama quantize IN.gguf OUT.gguf TYPE [--pure]`: re-encode a model's weights
 * as a llama.cpp file type, with llama.cpp's per-tensor mixing rules and fallbacks (see
 * sl_model_quantize_ftype). Not an importance-matrix quantizer.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_quantize(int argc, char **argv) {
    const char *cmd_name = "quantize";
    int n_threads = cli_default_threads(), n_pos = 0;
    bool pure = false, quiet = false;
    cli_opt opts[] = {
        CLI_OPT_THREADS(&n_threads),
        {.names = "--pure", .type = CLI_FLAG, .dest = &pure, .help = "one type for every 2-D tensor (no per-tensor mixing; fallbacks only)"},
        CLI_OPT_QUIET(&quiet, "no progress bar"),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "quantize", .usage = "[-t N] [--pure] IN.gguf OUT.gguf TYPE",
                         .about = "Writes OUT.gguf with its weights re-encoded as the llama.cpp file type TYPE: f32 f16 bf16 q8_0 q4_0\n"
                                  "q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq4_nl iq4_xs (q3_k, q4_k,\n"
                                  "q5_k: the _m mix). Per-tensor types follow llama.cpp's rules for the mix (attn_v, ffn_down and the\n"
                                  "output get more bits) and its fallbacks for rows that do not split into a type's blocks; every\n"
                                  "block is the one llama.cpp's quantizer writes. 1-D tensors become f32; metadata is copied and\n"
                                  "general.file_type set. Any supported input type works (quantized inputs are decoded first).",
                         .opts = opts, .min_pos = 3, .max_pos = 3};
    int prc;
    if (!cli_parse(&cmd, argc, argv, &n_pos, &prc)) return prc;
    const char *pos[3] = {argv[1], argv[2], argv[3]};
    int32_t ftype;
    if (!sl_ftype_from_name(pos[2], &ftype))
        return cli_fail(cmd_name, "unknown type '%s' (f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m "
                                  "q5_k_s q5_k_m q6_k iq4_nl iq4_xs)", pos[2]);
    if (!cli_output_check(cmd_name, pos[1])) return 1;
    sl_error err = {0};
    sl_quantize_params qp = sl_quantize_default_params();
    qp.ftype = ftype;
    qp.pure = pure;
    qp.n_threads = n_threads;
    cli_progress prog;
    cli_progress_start(&prog, "quantize", "B", quiet);
    qp.progress = cli_progress_cb;
    qp.progress_ud = &prog;
    if (sl_model_quantize_ex(pos[0], pos[1], &qp, &err) != SL_OK) {
        cli_progress_clear(&prog);
        return cli_fail_err(cmd_name, &err);
    }
    cli_progress_clear(&prog);
    fprintf(stderr, "skipllama quantize: wrote %s (%s%s)\n", pos[1], sl_ftype_name(ftype), pure ? ", pure" : "");
    return 0;
}
