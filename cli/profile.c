/*
 * profile.c — `skipllama profile show|random`: inspect a sparsity profile, or write one with
 * random low-rank predictors of a given rank and rule. A random predictor selects neurons
 * without regard to the real mask — it is a speed proxy for benchmarks on random-weight models
 * (where no predictor can be trained meaningfully), never for accuracy.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *out) {
    fprintf(out, "usage: skipllama profile show -m MODEL.gguf -P PROFILE.gguf\n"
                 "       skipllama profile random -m MODEL.gguf -o PROFILE.gguf [options]\n\n"
                 "show    prints the profile's method and per-layer rule, threshold/top-k, rank and metrics\n"
                 "random  writes random predictors (a speed proxy for benchmarks; selects arbitrary neurons)\n\n"
                 "skipllama profile show --help / skipllama profile random --help for the options.\n");
}

static int show(int argc, char **argv) {
    const char *model_path = NULL, *profile_path = NULL;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model the profile belongs to"),
        CLI_OPT_PROFILE(&profile_path, "the profile to show"),
        {.names = "-p", .type = CLI_STR, .dest = &profile_path, .meta = "FILE", .flags = CLI_DEPRECATED,
         .help = "-p is the old spelling of -P/--profile here (-p is the prompt everywhere else)"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "profile show", .usage = "[-m MODEL.gguf] -P PROFILE.gguf",
                         .about = "Prints the profile's method and per-layer rule, threshold/top-k, rank and metrics.", .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!profile_path) return cli_fail("profile", "show needs -P PROFILE");
    if (!(model_path = cli_model_path("profile", model_path))) return 1;
    sl_error err;
    sl_model *m = cli_load_model("profile", model_path, NULL, &err);
    if (!m) return cli_fail_err("profile", &err);
    sl_profile *p = sl_profile_load(profile_path, m, &err);
    if (!p) {
        sl_model_free(m);
        return cli_fail_err("profile", &err);
    }
    printf("profile: %s\nmethod:  %s\nlayers:  %d\n\n", profile_path, sl_profile_method(p), sl_profile_n_layer(p));
    printf("layer  rule       threshold   topk  target  rank  recall  precision  true_dens  pred_dens  gate<=0\n");
    for (int l = 0; l < sl_profile_n_layer(p); l++) {
        sl_profile_layer L;
        sl_profile_get_layer(p, l, &L, &err);
        printf("%5d  %-9s  %9.4g  %5d  %6.3f  %4d  %6.4f  %9.4f  %9.4f  %9.4f  %7.4f\n", l, sl_skip_rule_name(L.rule), L.threshold,
               L.topk, L.target_sparsity, L.rank, L.recall, L.precision, L.true_density, L.pred_density, sl_profile_gate_nonpositive(p, l));
    }
    sl_profile_free(p);
    sl_model_free(m);
    return 0;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float gaussian(uint64_t *s) {
    double u1 = ((double)(splitmix(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (double)(splitmix(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static bool parse_rule(const char *v, void *dest) {
    if (!strcmp(v, "topk")) *(sl_skip_rule *)dest = SL_RULE_PRED_TOPK;
    else if (!strcmp(v, "stat-topk")) *(sl_skip_rule *)dest = SL_RULE_PRED_STAT_TOPK;
    else return false;
    return true;
}

static int random_profile(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL;
    float rank_frac = 0.04f, sparsity = 0.5f;
    int rank = 0;
    uint64_t seed = 1;
    sl_skip_rule rule = SL_RULE_PRED_TOPK;
    sl_type type = SL_TYPE_F16;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model the profile is for"),
        CLI_OPT_OUTPUT(&out_path, "the profile to write"),
        {.names = "--rank", .type = CLI_INT, .dest = &rank, .lo = 1, .hi = 1 << 20, .meta = "R", .help = "predictor rank (capped at n_embd)",
         .def = "--rank-frac of n_ff"},
        {.names = "--rank-frac", .type = CLI_FLOAT, .dest = &rank_frac, .lo = 1e-4, .hi = 1, .meta = "F", .help = "rank = F x n_ff"},
        {.names = "--rule", .type = CLI_CUSTOM, .dest = &rule, .parse = parse_rule, .choices = "one of topk, stat-topk", .meta = "RULE",
         .help = "selection rule", .def = "topk"},
        CLI_OPT_SPARSITY(&sparsity, "target fraction of skipped neurons", NULL),
        {.names = "--type", .type = CLI_CUSTOM, .dest = &type, .parse = cli_parse_type, .choices = cli_type_list(), .meta = "TYPE",
         .help = "predictor storage type", .def = "f16"},
        CLI_OPT_SEED(&seed, "random seed", NULL),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "profile random", .usage = "[-m MODEL.gguf] -o PROFILE.gguf [options]",
                         .about = "Writes random low-rank predictors: a speed proxy for benchmarks on random-weight models. They\n"
                                  "select arbitrary neurons, so they say nothing about accuracy.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!out_path) return cli_fail("profile", "random needs -o PROFILE");
    if (!cli_output_check("profile", out_path)) return 1;
    if (!(model_path = cli_model_path("profile", model_path))) return 1;
    sl_error err;
    sl_model *m = cli_load_model("profile", model_path, NULL, &err);
    if (!m) return cli_fail_err("profile", &err);
    const sl_model_config *c = sl_model_get_config(m);
    if (!rank) rank = (int)lroundf(rank_frac * (float)c->n_ff);
    if (type == SL_TYPE_Q8_0 || type == SL_TYPE_Q4_0) rank = (rank + 31) / 32 * 32;
    if (rank < 1) rank = 1;
    if (rank > c->n_embd) rank = c->n_embd;
    int rc = 1;
    sl_profile *p = sl_profile_init(m, &err);
    float *A = malloc((size_t)rank * (size_t)c->n_embd * sizeof(float)), *B = malloc((size_t)c->n_ff * (size_t)rank * sizeof(float));
    if (!p || !A || !B) {
        cli_fail("profile", "out of memory");
        goto done;
    }
    uint64_t s = (uint64_t)seed;
    for (int l = 0; l < c->n_layer; l++) {
        for (size_t i = 0; i < (size_t)rank * (size_t)c->n_embd; i++) A[i] = gaussian(&s) / sqrtf((float)c->n_embd);
        for (size_t i = 0; i < (size_t)c->n_ff * (size_t)rank; i++) B[i] = gaussian(&s) / sqrtf((float)rank);
        sl_profile_layer info = {.rule = rule, .topk = (int32_t)lroundf((1.0f - sparsity) * (float)c->n_ff), .target_sparsity = sparsity};
        if (info.topk < 1) info.topk = 1;
        if (sl_profile_set_predictor(p, l, rank, type, A, B, &err) || sl_profile_set_layer(p, l, &info, &err)) {
            cli_fail_err("profile", &err);
            goto done;
        }
    }
    sl_profile_set_method(p, "random-predictor", NULL);
    if (sl_profile_save(p, out_path, &err)) {
        cli_fail_err("profile", &err);
        goto done;
    }
    printf("wrote %s: random rank-%d %s predictors, rule %s, sparsity %.2f, %d layers\n", out_path, rank, sl_type_name(type),
           sl_skip_rule_name(rule), sparsity, c->n_layer);
    rc = 0;
done:
    free(A);
    free(B);
    sl_profile_free(p);
    sl_model_free(m);
    return rc;
}

int cmd_profile(int argc, char **argv) {
    if (argc < 2 || cli_is(argv[1], "-h", "--help")) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    if (!strcmp(argv[1], "show")) return show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "random")) return random_profile(argc - 1, argv + 1);
    help(stderr);
    return cli_fail("profile", "unknown action '%s' (show, random)", argv[1]);
}
