/*
 * synth.c — `skipllama synth`: write a GGUF (llama, qwen2, qwen3, phi3, gemma2, gemma3) with random
 * weights of a named or given shape (benchmark models and the per-architecture fixtures; see
 * sl_synth_write). Not a trainer: the weights are seeded noise.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static bool parse_shape(const char *v, void *dest) { return sl_synth_preset(v, dest); }

/* --arch NAME: the architecture, and its usual q/k/v biases (Qwen2's) */
static bool parse_arch(const char *v, void *dest) {
    static const char *const names[] = {"llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"};
    sl_synth_params *p = dest;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(v, names[i])) {
            snprintf(p->arch, sizeof(p->arch), "%s", v);
            p->qkv_bias = !strcmp(v, "qwen2");
            return true;
        }
    return false;
}

static bool parse_rope_scaling(const char *v, void *dest) {
    if (strcmp(v, "none") && strcmp(v, "linear") && strcmp(v, "yarn") && strcmp(v, "longrope")) return false;
    snprintf(dest, sizeof(((sl_synth_params *)0)->rope_scaling), "%s", v);
    return true;
}

int cmd_synth(int argc, char **argv) {
    const char *cmd_name = "synth";
    sl_synth_params p = sl_synth_default_params();
    p.n_threads = cli_default_threads();
    p.name[0] = 0;
    bool have_shape = false, have_kv = false, dims[5] = {false};
    const char *out = NULL, *name = NULL;
    bool quiet = false;
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
        {.names = "--arch", .type = CLI_CUSTOM, .dest = &p, .parse = parse_arch, .choices = "llama|qwen2|qwen3|phi3|gemma2|gemma3", .meta = "NAME",
         .help = "general.architecture; its tensors follow (fused qkv and gate|up, q/k and post norms); qwen2 gets q/k/v biases",
         .def = "llama"},
        {.names = "--head-dim", .type = CLI_INT, .dest = &p.head_dim, .lo = 0, .hi = 4096, .meta = "D",
         .help = "attention head size when it is not dim / heads (attention.key_length); 0 = dim / heads"},
        {.names = "--qkv-bias", .type = CLI_FLAG, .dest = &p.qkv_bias, .help = "q/k/v biases (after --arch)"},
        {.names = "--no-qkv-bias", .type = CLI_FLAG_OFF, .dest = &p.qkv_bias, .help = "no q/k/v biases (after --arch)"},
        {.names = "--eps", .type = CLI_FLOAT, .dest = &p.rms_eps, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "E", .help = "RMSNorm epsilon"},
        {.names = "--rope-base", .type = CLI_FLOAT, .dest = &p.rope_freq_base, .lo = 1, .hi = 1e30, .flags = CLI_LO_OPEN, .meta = "B",
         .help = "RoPE theta (rope.freq_base)"},
        {.names = "--swa", .type = CLI_INT, .dest = &p.n_swa, .lo = 0, .hi = 1 << 30, .meta = "N",
         .help = "attention.sliding_window (0: not written)"},
        {.names = "--swa-pattern", .type = CLI_INT, .dest = &p.swa_pattern, .lo = -1, .hi = 4096, .meta = "P",
         .help = "attention.sliding_window_pattern: layer l is windowed when P == 0 or l % P < P - 1 (-1: not written)"},
        {.names = "--attn-softcap", .type = CLI_FLOAT, .dest = &p.attn_softcap, .lo = 0, .hi = 1e30, .meta = "C",
         .help = "attn_logit_softcapping (0: not written)"},
        {.names = "--final-softcap", .type = CLI_FLOAT, .dest = &p.final_softcap, .lo = 0, .hi = 1e30, .meta = "C",
         .help = "final_logit_softcapping (0: not written)"},
        {.names = "--rope-base-swa", .type = CLI_FLOAT, .dest = &p.rope_freq_base_swa, .lo = 0, .hi = 1e30, .meta = "B",
         .help = "rope.freq_base_swa, the windowed layers' RoPE base (0: not written)"},
        {.names = "--rope-scaling", .type = CLI_CUSTOM, .dest = p.rope_scaling, .parse = parse_rope_scaling,
         .choices = "none|linear|yarn|longrope", .meta = "TYPE", .help = "rope.scaling.type", .def = "not written"},
        {.names = "--rope-factor", .type = CLI_FLOAT, .dest = &p.rope_scaling_factor, .lo = 0, .hi = 1e6, .meta = "F",
         .help = "rope.scaling.factor (0: not written)"},
        {.names = "--rope-orig-ctx", .type = CLI_INT, .dest = &p.rope_orig_ctx, .lo = 0, .hi = 1 << 24, .meta = "N",
         .help = "rope.scaling.original_context_length (0: not written)"},
        {.names = "--rope-attn-factor", .type = CLI_FLOAT, .dest = &p.rope_attn_factor, .lo = 0, .hi = 1e6, .meta = "A",
         .help = "rope.scaling.attn_factor (0: not written)"},
        {.names = "--longrope", .type = CLI_FLAG, .dest = &p.longrope, .help = "rope_factors_long/short tensors (Phi-3's LongRoPE)"},
        CLI_OPT_OUTPUT(&out, "the GGUF file to write"),
        CLI_OPT_QUIET(&quiet, "no progress bar"),
        {.names = "-t", .type = CLI_CUSTOM, .dest = &p.type, .parse = cli_parse_type, .choices = types, .meta = "TYPE", .flags = CLI_DEPRECATED,
         .help = "-t TYPE is the old spelling of --type (-t is the thread count everywhere)"},
        CLI_OPT_END,
    };
    const cli_cmd spec = {.name = "synth",
                         .usage = "(--shape NAME | --dim D --ff F --layers L --heads H [--kv-heads K] --vocab V) [--type TYPE] [options]\n"
                                  "                       -o FILE.gguf",
                         .about = "Writes a GGUF of the given architecture with seeded random weights (matrices ~N(0, 1/sqrt(fan_in)),\n"
                                  "norms ~1) and a minimal SentencePiece vocabulary; the same arguments always give the same bytes.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&spec, argc, argv, NULL, &prc)) return prc;
    const char *cmd = cmd_name;
    p.act = act == 1 ? SL_ACT_RELU : SL_ACT_SILU;
    const bool have_dims = dims[0] || dims[1] || dims[2] || dims[3] || dims[4];
    if (!out) return cli_fail(cmd, "missing -o FILE.gguf (see --help)");
    if (!cli_output_check(cmd, out)) return 1;
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
    /* room for it, before writing anything */
    int64_t file_bytes = 0, mem_bytes = 0;
    if (sl_synth_estimate(&p, &file_bytes, &mem_bytes, &err) != SL_OK) return cli_fail_err(cmd, &err);
    char need[32], have[32];
    const int64_t disk = cli_output_is_regular(out) ? cli_free_disk(out) : -1;
    if (disk >= 0 && file_bytes > disk) {
        cli_format_bytes(need, sizeof need, (double)file_bytes);
        cli_format_bytes(have, sizeof have, (double)disk);
        return cli_fail(cmd, "the model takes %s on disk, but only %s is free where '%s' goes", need, have, out);
    }
    const int64_t mem = cli_available_memory();
    if (mem >= 0 && mem_bytes > mem) {
        cli_format_bytes(need, sizeof need, (double)mem_bytes);
        cli_format_bytes(have, sizeof have, (double)mem);
        return cli_fail(cmd, "writing the model needs %s of memory, but only %s is available", need, have);
    }
    cli_format_bytes(need, sizeof need, (double)file_bytes);
    fprintf(stderr, "skipllama synth: %s, %lld parameters, %s weights, %s -> %s\n", p.name, (long long)n_params, sl_type_name(p.type),
            need, out);
    cli_progress prog;
    cli_progress_start(&prog, "synth", "B", quiet);
    p.progress = cli_progress_cb;
    p.progress_ud = &prog;
    if (sl_synth_write(&p, out, &err) != SL_OK) {
        cli_progress_clear(&prog);
        return cli_fail_err(cmd, &err);
    }
    return 0;
}
