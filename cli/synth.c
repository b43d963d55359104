/*
 * synth.c — `skipllama synth`: write a llama GGUF with random weights of a named or given shape
 * (benchmark models; see sl_synth_write). Not a trainer: the weights are seeded noise.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void synth_usage(FILE *out) {
    fprintf(out,
            "usage: skipllama synth (--shape NAME | --dim D --ff F --layers L --heads H [--kv-heads K] --vocab V)\n"
            "                       [--ctx C] [--tied] [--rope-freqs] [--rot R] [-t|--type TYPE] [--seed S]\n"
            "                       [--act silu|relu] [--name NAME] [--threads N] -o FILE.gguf\n"
            "\n"
            "Writes a llama GGUF with seeded random weights (matrices ~N(0, 1/sqrt(fan_in)), norms ~1) and a\n"
            "minimal SentencePiece vocabulary; the same arguments always give the same bytes.\n"
            "  --shape NAME   a preset (explicit size options given after it override it):");
    for (int i = 0; sl_synth_preset_name(i); i++) fprintf(out, " %s", sl_synth_preset_name(i));
    fprintf(out,
            "\n"
            "  -t, --type     weight type of every 2-D tensor: f32 f16 bf16 q8_0 q4_0 (default f32); norms stay f32\n"
            "  --tied         no output.weight (the output projection reuses token_embd)\n"
            "  --rope-freqs   add rope_freqs.weight (Llama-3.1-style RoPE frequency factors)\n"
            "  --rot R        rotary dimensions per head (default: the head size)\n"
            "  --name NAME    general.name (default: the preset, or \"synthetic\")\n"
            "  --threads N    generation threads (default 2)\n");
}

int cmd_synth(int argc, char **argv) {
    const char *cmd = "synth";
    sl_synth_params p = sl_synth_default_params();
    p.n_threads = 2;
    p.name[0] = 0;
    bool have_shape = false, have_dims = false, have_kv = false;
    const char *out = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int *ival = NULL;
        int32_t *target = NULL;
        int lo = 1, hi = 1 << 20;
        if (cli_is(a, "-h", "--help")) {
            synth_usage(stdout);
            return 0;
        } else if (cli_is(a, NULL, "--shape")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!sl_synth_preset(v, &p)) return cli_fail(cmd, "unknown shape '%s' (see --help)", v);
            have_shape = true;
            continue;
        } else if (cli_is(a, "-t", "--type")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!sl_type_from_name(v, &p.type)) return cli_fail(cmd, "unknown type '%s' (f32 f16 bf16 q8_0 q4_0)", v);
            continue;
        } else if (cli_is(a, NULL, "--act")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!sl_activation_from_name(v, &p.act) || (p.act != SL_ACT_SILU && p.act != SL_ACT_RELU))
                return cli_fail(cmd, "--act must be silu or relu, not '%s'", v);
            continue;
        } else if (cli_is(a, NULL, "--seed")) {
            int64_t s;
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!cli_parse_i64(v, 0, INT64_MAX, &s)) return cli_fail(cmd, "--seed needs a non-negative integer, not '%s'", v);
            p.seed = (uint64_t)s;
            continue;
        } else if (cli_is(a, NULL, "--name")) {
            if (!(name = cli_value(cmd, argc, argv, &i))) return 1;
            continue;
        } else if (cli_is(a, "-o", "--output")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 1;
            continue;
        } else if (cli_is(a, NULL, "--tied")) {
            p.tied_embeddings = true;
            continue;
        } else if (cli_is(a, NULL, "--rope-freqs")) {
            p.rope_freqs = true;
            continue;
        } else if (cli_is(a, NULL, "--threads")) {
            ival = &p.n_threads, hi = 1024;
        } else if (cli_is(a, NULL, "--dim")) target = &p.n_embd, have_dims = true;
        else if (cli_is(a, NULL, "--ff")) target = &p.n_ff, have_dims = true;
        else if (cli_is(a, NULL, "--layers")) target = &p.n_layer, have_dims = true;
        else if (cli_is(a, NULL, "--heads")) target = &p.n_head, have_dims = true;
        else if (cli_is(a, NULL, "--kv-heads")) target = &p.n_head_kv, have_kv = true;
        else if (cli_is(a, NULL, "--vocab")) target = &p.n_vocab, have_dims = true;
        else if (cli_is(a, NULL, "--ctx")) target = &p.n_ctx, lo = 0, hi = 1 << 24;
        else if (cli_is(a, NULL, "--rot")) target = &p.n_rot, lo = 0;
        else return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
        int x;
        if (!cli_parse_int(v, lo, hi, &x)) return cli_fail(cmd, "%s needs an integer in %d..%d, not '%s'", a, lo, hi, v);
        if (ival) *ival = x;
        else *target = x;
    }
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
