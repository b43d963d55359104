/*
 * synth.c — `skipllama synth`: write a llama GGUF with random weights of a named or given shape
 * (benchmark models; see sl_synth_write). Not a trainer: the weights are seeded noise.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static bool parse_shape(const char *v, void *dest) { return sl_synth_preset(v, dest); }

int cmd_synth(int argc, char **argv) {
    const char *cmd_name = "synth";
    sl_synth_params p = sl_synth_default_params();
    p.n_threads = cli_default_threads();
    p.name[0] = 0;
    bool have_shape = false, have_kv = false, dims[5] = {false};
    const char *out = NULL, *name = NULL;
    int act = 0; /* silu */
    char shapes[256] = "one of ";
    for (int i = 0; sl_synth_preset_name(i); i++)
        snprintf(shapes + strlen(shapes), sizeof(shapes) - strlen(shapes), "%s%s", i ? ", " : "", sl_synth_preset_name(i));
    const char *types = cli_type_list();
    cli_opt opts[] = {
        {.names = "--shape", .type = CLI_CUSTOM, .dest = &p, .parse = parse_shape, .choices = shapes, .meta = "NAME", .seen = &have_shape,
         .help = "a preset shape (size options given after it override it)", .def = ""},
        {.names = "--dim", .type = CLI_INT, .dest = &p.n_embd, .lo = 1, .hi = 1 << 20, .meta = "D", .help = "model width", .def = "", .seen = &dims[0]},
        {.names = "--ff", .type = CLI_INT, .dest = &p.n_ff, .lo = 1, .hi = 1 << 20, .meta = "F", .help = "MLP width", .def = "", .seen = &dims[1]},
        {.names = "--layers", .type = CLI_INT, .dest = &p.n_layer, .lo = 1, .hi = 1 << 20, .meta = "L", .help = "transformer blocks", .def = "",
         .seen = &dims[2]},
        {.names = "--heads", .type = CLI_INT, .dest = &p.n_head, .lo = 1, .hi = 1 << 20, .meta = "H", .help = "attention heads", .def = "",
         .seen = &dims[3]},
        {.names = "--kv-heads", .type = CLI_INT, .dest = &p.n_head_kv, .lo = 1, .hi = 1 << 20, .meta = "K", .help = "key/value heads",
         .def = "--heads", .seen = &have_kv},
        {.names = "--vocab", .type = CLI_INT, .dest = &p.n_vocab, .lo = 1, .hi = 1 << 20, .meta = "V", .help = "vocabulary size", .def = "",
         .seen = &dims[4]},
        CLI_OPT_CTX(&p.n_ctx, "context length written into the model (llama.context_length)", "the preset's"),
        {.names = "--rot", .type = CLI_INT, .dest = &p.n_rot, .lo = 0, .hi = 1 << 20, .meta = "R", .help = "rotary dimensions per head; 0 = the head size"},
        {.names = "--tied", .type = CLI_FLAG, .dest = &p.tied_embeddings, .help = "no output.weight (the output projection reuses token_embd)"},
        {.names = "--rope-freqs", .type = CLI_FLAG, .dest = &p.rope_freqs, .help = "add rope_freqs.weight (Llama-3.1-style RoPE frequency factors)"},
        {.names = "--type", .type = CLI_CUSTOM, .dest = &p.type, .parse = cli_parse_type, .choices = types, .meta = "TYPE",
         .help = "weight type of every 2-D tensor (norms stay f32)", .def = "f32"},
        {.names = "--act", .type = CLI_CHOICE, .dest = &act, .choices = "silu|relu", .meta = "ACT", .help = "MLP activation"},
        CLI_OPT_SEED(&p.seed, "random seed: the same arguments give the same bytes", NULL),
        {.names = "--name", .type = CLI_STR, .dest = &name, .meta = "NAME", .help = "general.name", .def = "the preset's, or \"synthetic\""},
        CLI_OPT_THREADS(&p.n_threads),
        CLI_OPT_OUTPUT(&out, "the GGUF file to write"),
        {.names = "-t", .type = CLI_CUSTOM, .dest = &p.type, .parse = cli_parse_type, .choices = types, .meta = "TYPE", .flags = CLI_DEPRECATED,
         .help = "-t TYPE is the old spelling of --type (-t is the thread count everywhere)"},
        CLI_OPT_END,
    };
    const cli_cmd spec = {.name = "synth",
                         .usage = "(--shape NAME | --dim D --ff F --layers L --heads H [--kv-heads K] --vocab V) [--type TYPE] [options]\n"
                                  "                       -o FILE.gguf",
                         .about = "Writes a llama GGUF with seeded random weights (matrices ~N(0, 1/sqrt(fan_in)), norms ~1) and a\n"
                                  "minimal SentencePiece vocabulary; the same arguments always give the same bytes.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&spec, argc, argv, NULL, &prc)) return prc;
    const char *cmd = cmd_name;
    p.act = act == 1 ? SL_ACT_RELU : SL_ACT_SILU;
    const bool have_dims = dims[0] || dims[1] || dims[2] || dims[3] || dims[4];
    if (!out) return cli_fail(cmd, "missing -o FILE.gguf (see --help)");
    if (!have_shape && !have_dims) return cli_fail(cmd, "give --shape NAME or --dim/--ff/--layers/--heads/--vocab");
    if (!have_shape && have_dims && !have_kv) p.n_head_kv = p.n_head; /* plain multi-head attention */
    if (name) snprintf(p.name, sizeof(p.name), "%s", name); /* after --shape, which sets its own */
    if (!p.name[0]) snprintf(p.name, sizeof(p.name), "synthetic");
    int64_t n_params = sl_synth_n_params(&p);
    sl_error err = {0};
    if (n_params < 0) {
        /* an invalid shape: let the library say what is wrong (it validates before the path) */
        sl_synth_write(&p, NULL, &err);
        return cli_fail_err(cmd, &err);
    }
    fprintf(stderr, "skipllama synth: %s, %lld parameters, %s weights -> %s\n", p.name, (long long)n_params,
            sl_type_name(p.type), out);
    if (sl_synth_write(&p, out, &err) != SL_OK) return cli_fail_err(cmd, &err);
    return 0;
}
