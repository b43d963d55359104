/*
 * profile.c — `skipllama profile show|random|set`: inspect a sparsity profile, write one with
 * random low-rank predictors of a given rank and rule, or change the rule of a profile's layers
 * (e.g. a CATS profile into the two-stage rule with given fractions). A random predictor selects neurons
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
                 "       skipllama profile random -m MODEL.gguf -o PROFILE.gguf [options]\n"
                 "       skipllama profile set -m MODEL.gguf -P IN.gguf -o OUT.gguf --rule R [options]\n\n"
                 "show    prints the profile's method and per-layer rule, threshold/top-k, rank and metrics, and its\n"
                 "        schedule (two-stage fractions and per-layer levels at each level of its grid)\n"
                 "random  writes random predictors (a speed proxy for benchmarks; selects arbitrary neurons)\n"
                 "set     sets the rule and fractions of every layer (or one)\n\n"
                 "skipllama profile ACTION --help for the options.\n");
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
    printf("layer  rule            threshold   topk  cand_k  gate_k  target  rank  recall  precision  true_dens  pred_dens  gate<=0  contrib_rec\n");
    for (int l = 0; l < sl_profile_n_layer(p); l++) {
        sl_profile_layer L;
        sl_profile_get_layer(p, l, &L, &err);
        printf("%5d  %-14s  %9.4g  %5d  %6d  %6d  %6.3f  %4d  %6.4f  %9.4f  %9.4f  %9.4f  %7.4f  %11.4f\n", l, sl_skip_rule_name(L.rule),
               L.threshold, L.topk, L.cand_k, L.gate_k, L.target_sparsity, L.rank, L.recall, L.precision, L.true_density, L.pred_density,
               sl_profile_gate_nonpositive(p, l), L.contrib_recall);
    }
    float levels[SL_PROFILE_MAX_LEVELS];
    const int32_t nl = sl_profile_get_levels(p, levels);
    if (nl > 0) {
        printf("\nschedule (per level: a/d = two-stage candidate / kept fractions, L = the layer's level under the allocation)\nlevel ");
        for (int l = 0; l < sl_profile_n_layer(p); l++) printf("  layer %-12d", l);
        printf("\n");
        for (int g = 0; g < nl; g++) {
            printf("%5.3f ", levels[g]);
            for (int l = 0; l < sl_profile_n_layer(p); l++) {
                float a, d;
                if (sl_profile_get_split(p, l, levels[g], &a, &d)) printf("  %.3f/%.3f", a, d);
                else printf("  -----/-----");
                printf(" L%.3f", sl_profile_layer_level(p, l, levels[g]));
            }
            printf("\n");
        }
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
    else if (!strcmp(v, "two-stage-pred")) *(sl_skip_rule *)dest = SL_RULE_TWO_STAGE_PRED;
    else return false;
    return true;
}

static int random_profile(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL;
    float rank_frac = 0.04f, sparsity = 0.5f, cand_frac = 0.0f;
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
        {.names = "--rule", .type = CLI_CUSTOM, .dest = &rule, .parse = parse_rule, .choices = "one of topk, stat-topk, two-stage-pred",
         .meta = "RULE", .help = "selection rule", .def = "topk"},
        {.names = "--cand-frac", .type = CLI_FLOAT, .dest = &cand_frac, .lo = 0, .hi = 1, .meta = "A",
         .help = "two-stage-pred: candidates A x n_ff (down rows: (1 - S) x n_ff)", .def = "1 - S"},
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
        if (rule == SL_RULE_TWO_STAGE_PRED) {
            info.cand_k = (int32_t)lroundf(cand_frac * (float)c->n_ff);
            if (info.cand_k < info.topk) info.cand_k = info.topk;
            if (info.cand_k > c->n_ff) info.cand_k = c->n_ff;
        }
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

static bool parse_set_rule(const char *v, void *dest) {
    static const sl_skip_rule rules[] = {SL_RULE_DENSE, SL_RULE_CATS, SL_RULE_PRED_TOPK, SL_RULE_TWO_STAGE, SL_RULE_TWO_STAGE_PRED};
    for (size_t k = 0; k < sizeof(rules) / sizeof(rules[0]); k++)
        if (!strcmp(v, sl_skip_rule_name(rules[k]))) {
            *(sl_skip_rule *)dest = rules[k];
            return true;
        }
    return false;
}

static int set_rule(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    sl_skip_rule rule = SL_RULE_DENSE;
    float keep = -1.0f, cand = -1.0f;
    int only = -1;
    bool rule_seen = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model the profile belongs to"),
        CLI_OPT_PROFILE(&in_path, "the profile to change"),
        CLI_OPT_OUTPUT(&out_path, "the profile to write"),
        {.names = "--rule", .type = CLI_CUSTOM, .dest = &rule, .parse = parse_set_rule, .seen = &rule_seen,
         .choices = "one of dense, cats, topk, two-stage, two-stage-pred", .meta = "RULE", .help = "the rule", .def = ""},
        {.names = "--keep-frac", .type = CLI_FLOAT, .dest = &keep, .lo = 0, .hi = 1, .meta = "D",
         .help = "fraction of neurons kept (cats: threshold from the quantiles; topk; two-stage: stage 2)", .def = ""},
        {.names = "--cand-frac", .type = CLI_FLOAT, .dest = &cand, .lo = 0, .hi = 1, .meta = "A",
         .help = "two-stage rules: fraction of candidates (stage 1), >= D", .def = ""},
        {.names = "--layer", .type = CLI_INT, .dest = &only, .lo = 0, .hi = 1 << 20, .meta = "L", .help = "change only layer L",
         .def = "every layer"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "profile set", .usage = "[-m MODEL.gguf] -P IN.gguf -o OUT.gguf --rule RULE [options]",
                         .about = "Sets the rule and fractions of every layer (or --layer L): e.g. a CATS profile into the two-stage\n"
                                  "rule with given fractions. two-stage-pred and topk need the layer's predictor.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!in_path || !out_path || !rule_seen) return cli_fail("profile", "set needs -P IN, -o OUT and --rule");
    if (rule != SL_RULE_DENSE && keep < 0) return cli_fail("profile", "--rule %s needs --keep-frac", sl_skip_rule_name(rule));
    if ((rule == SL_RULE_TWO_STAGE || rule == SL_RULE_TWO_STAGE_PRED) && cand < keep)
        return cli_fail("profile", "--rule %s needs --cand-frac >= --keep-frac", sl_skip_rule_name(rule));
    if (!(model_path = cli_model_path("profile", model_path)) || !cli_output_check("profile", out_path)) return 1;
    sl_error err;
    sl_model *m = cli_load_model("profile", model_path, NULL, &err);
    if (!m) return cli_fail_err("profile", &err);
    sl_profile *p = sl_profile_load(in_path, m, &err);
    int rc = 1;
    if (!p) {
        cli_fail_err("profile", &err);
        goto done;
    }
    const int32_t I = sl_model_get_config(m)->n_ff;
    for (int l = 0; l < sl_profile_n_layer(p); l++) {
        if (only >= 0 && l != only) continue;
        sl_profile_layer info;
        sl_profile_get_layer(p, l, &info, &err);
        info.rule = rule;
        info.target_sparsity = rule == SL_RULE_DENSE ? 0.0f : 1.0f - keep;
        info.topk = (int32_t)lroundf(keep * (float)I);
        if (info.topk < 1) info.topk = 1;
        info.cand_k = cand >= 0 ? (int32_t)lroundf(cand * (float)I) : 0;
        if (info.cand_k < info.topk && (rule == SL_RULE_TWO_STAGE || rule == SL_RULE_TWO_STAGE_PRED)) info.cand_k = info.topk;
        info.gate_k = 0; /* a gate stage comes only from a calibrated split */
        if (rule == SL_RULE_CATS) {
            info.threshold = sl_profile_cats_threshold(p, l, 1.0f - keep);
            if (isnan(info.threshold)) {
                cli_fail("profile", "layer %d has no CATS quantiles (calibrate the profile first)", l);
                goto done;
            }
        }
        if (sl_profile_set_layer(p, l, &info, &err)) {
            cli_fail_err("profile", &err);
            goto done;
        }
    }
    if (sl_profile_save(p, out_path, &err)) {
        cli_fail_err("profile", &err);
        goto done;
    }
    rc = 0;
done:
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
    if (!strcmp(argv[1], "set")) return set_rule(argc - 1, argv + 1);
    help(stderr);
    return cli_fail("profile", "unknown action '%s' (show, random, set)", argv[1]);
}
