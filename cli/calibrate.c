/*
 * calibrate.c — `skipllama calibrate -m MODEL -f TEXT --sparsity 0.5 -o PROFILE`: training-free
 * CATS thresholds. Runs the dense model over the text, records the distribution of
 * |act(gate . x)| per layer and writes a profile whose thresholds skip the requested fraction of
 * neurons (a global target or per-layer targets from a file: one number per line, negative =
 * keep that layer dense). The profile stores the quantile table too, so `--sparsity` can move
 * the target later without recalibrating. With --rule two-stage (or two-stage-pred, on the
 * predictors of -P) it also chooses each layer's two-stage fractions for every level, for the MLP
 * bytes CATS reads at that level (sl_calibrate_split); --alloc adds the per-layer allocation
 * (sl_allocate), after which --sparsity is the layers' average.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_calibrate(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out_path = NULL, *layer_path = NULL, *in_profile = NULL;
    int rule_i = 0;
    int64_t split_tokens = 0, alloc_tokens = 4096;
    bool alloc = false;
    float sparsity = 0.5f;
    int ctx_len = 0, threads = cli_default_threads();
    int64_t max_tokens = 0;
    bool quiet = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model"),
        CLI_OPT_FILE(&text_path, "calibration text"),
        CLI_OPT_OUTPUT(&out_path, "profile to write"),
        CLI_OPT_SPARSITY(&sparsity, "fraction of MLP neurons to skip", NULL),
        {.names = "--layer-sparsity", .type = CLI_STR, .dest = &layer_path, .meta = "FILE",
         .help = "per-layer targets, one per line (negative = dense); overrides --sparsity", .def = ""},
        {.names = "--rule", .type = CLI_CHOICE, .dest = &rule_i, .choices = "cats|two-stage|two-stage-pred", .meta = "RULE",
         .help = "cats, or a two-stage rule whose fractions are chosen for the bytes CATS reads at each level\n"
                 "(two-stage-pred ranks its candidates with the predictors of -P)", .def = "cats"},
        CLI_OPT_PROFILE(&in_profile, "two-stage-pred: the profile holding the predictors (train-predictor)"),
        {.names = "--split-tokens", .type = CLI_I64, .dest = &split_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "two-stage: sample tokens for choosing the fractions; 0 = 1024 (less if 256 MiB cannot hold them)"},
        {.names = "--alloc", .type = CLI_FLAG, .dest = &alloc,
         .help = "per-layer allocation (greedy on each layer's calibration loss curve): --sparsity becomes the average"},
        {.names = "--alloc-tokens", .type = CLI_I64, .dest = &alloc_tokens, .lo = 2, .hi = 1e18, .meta = "N",
         .help = "tokens per loss measurement of the allocation"},
        CLI_OPT_CTX(&ctx_len, "window length in tokens; 0 = the model's context", "the model's, at most 512"),
        CLI_OPT_THREADS(&threads),
        {.names = "--max-tokens", .type = CLI_I64, .dest = &max_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "use only the first N tokens of the text; 0 = all"},
        CLI_OPT_QUIET(&quiet, "no progress bar or table"),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "calibrate", .usage = "[-m MODEL.gguf] -f TEXT -o PROFILE.gguf [--sparsity S] [options]",
                         .about = "Training-free CATS thresholds from the dense model's activations over TEXT. The profile keeps\n"
                                  "the quantile table, so --sparsity can be moved later (run, ppl, bench) without recalibrating.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!text_path || !out_path) {
        cli_help(&cmd, stderr);
        return cli_fail("calibrate", "-f TEXT and -o PROFILE are required");
    }
    if (!(model_path = cli_model_path("calibrate", model_path)) || !cli_output_check("calibrate", out_path)) return 1;
    if (ctx_len == 1) return cli_fail("calibrate", "-c 1 is too short: a window needs at least 2 tokens");
    const sl_skip_rule rule = rule_i == 1 ? SL_RULE_TWO_STAGE : rule_i == 2 ? SL_RULE_TWO_STAGE_PRED : SL_RULE_CATS;
    if ((rule == SL_RULE_TWO_STAGE_PRED) != (in_profile != NULL))
        return cli_fail("calibrate", "-P (the predictors) goes with --rule two-stage-pred, and only with it");
    if ((rule != SL_RULE_CATS || alloc) && layer_path) return cli_fail("calibrate", "--layer-sparsity is for CATS without --alloc");
    int rc = 1;
    sl_error err;
    sl_model *model = NULL;
    sl_profile *profile = NULL;
    int32_t *ids = NULL, n_ids = 0;
    float *layer_sp = NULL;
    size_t len = 0;
    char *text = cli_read_file("calibrate", text_path, (size_t)1 << 30, &len);
    if (!text) goto done;
    if (!(model = cli_load_model("calibrate", model_path, NULL, &err))) {
        cli_fail_err("calibrate", &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    if (ctx_len) cli_warn_ctx("calibrate", model, ctx_len);
    if (layer_path) {
        size_t ll;
        char *lt = cli_read_file("calibrate", layer_path, 1 << 20, &ll);
        if (!lt) goto done;
        layer_sp = calloc((size_t)c->n_layer, sizeof(float));
        int n = 0;
        for (char *tok = strtok(lt, " \t\r\n,"); tok; tok = strtok(NULL, " \t\r\n,")) {
            float v;
            if (n >= c->n_layer || !cli_parse_float(tok, -1.0f, 0.999f, &v)) {
                cli_fail("calibrate", "%s: expected %d numbers below 1 (negative = dense), got '%s' at position %d", layer_path,
                         c->n_layer, tok, n + 1);
                free(lt);
                goto done;
            }
            layer_sp[n++] = v;
        }
        free(lt);
        if (n != c->n_layer) {
            cli_fail("calibrate", "%s has %d targets; the model has %d layers", layer_path, n, c->n_layer);
            goto done;
        }
    }
    if (!sl_model_get_vocab(model)) {
        cli_fail("calibrate", "'%s' has no tokenizer", model_path);
        goto done;
    }
    if (sl_tokenize(sl_model_get_vocab(model), text, len, false, false, &ids, &n_ids, &err) != SL_OK) {
        cli_fail_err("calibrate", &err);
        goto done;
    }
    if (max_tokens && max_tokens < n_ids) n_ids = (int32_t)max_tokens;
    cli_progress prog;
    cli_progress_start(&prog, "calibrate", "tok", quiet);
    sl_calibrate_params cp = sl_calibrate_default_params();
    cp.sparsity = sparsity;
    cp.layer_sparsity = layer_sp;
    cp.n_ctx = ctx_len;
    cp.n_threads = threads;
    cp.progress = cli_progress_cb;
    cp.progress_ud = &prog;
    if (sl_calibrate(model, ids, n_ids, &cp, &profile, &err) != SL_OK) {
        cli_fail_err("calibrate", &err);
        goto done;
    }
    if (rule != SL_RULE_CATS) {
        if (in_profile) { /* the predictors' profile, for which the fractions are chosen */
            sl_profile *pp = sl_profile_load(in_profile, model, &err);
            if (!pp) {
                cli_fail_err("calibrate", &err);
                goto done;
            }
            sl_profile_free(profile);
            profile = pp;
        }
        cli_progress sp;
        cli_progress_start(&sp, "two-stage split", "step", quiet);
        sl_split_params spp = sl_split_default_params();
        spp.rule = rule;
        spp.max_tokens = split_tokens;
        spp.n_ctx = ctx_len;
        spp.n_threads = threads;
        spp.progress = cli_progress_cb;
        spp.progress_ud = &sp;
        if (sl_calibrate_split(model, ids, n_ids, &spp, profile, &err) != SL_OK || sl_profile_set_sparsity(profile, sparsity, &err) != SL_OK) {
            cli_fail_err("calibrate", &err);
            goto done;
        }
    }
    if (alloc) {
        cli_progress ap;
        cli_progress_start(&ap, "allocation", "eval", quiet);
        sl_alloc_params app = sl_alloc_default_params();
        app.max_tokens = alloc_tokens;
        app.n_ctx = ctx_len;
        app.n_threads = threads;
        app.progress = cli_progress_cb;
        app.progress_ud = &ap;
        if (sl_allocate(model, ids, n_ids, &app, profile, NULL, &err) != SL_OK || sl_profile_set_sparsity(profile, sparsity, &err) != SL_OK) {
            cli_fail_err("calibrate", &err);
            goto done;
        }
    }
    if (sl_profile_save(profile, out_path, &err) != SL_OK) {
        cli_fail_err("calibrate", &err);
        goto done;
    }
    if (!quiet) {
        printf("layer  rule            target  |act| threshold  cand_k   topk  gate<=0 fraction\n");
        for (int l = 0; l < c->n_layer; l++) {
            sl_profile_layer info;
            sl_profile_get_layer(profile, l, &info, &err);
            printf("%5d  %-14s  %6.3f  %15.6g  %6d  %5d  %16.4f\n", l, sl_skip_rule_name(info.rule), info.target_sparsity, info.threshold,
                   info.cand_k, info.topk, sl_profile_gate_nonpositive(profile, l));
        }
        printf("wrote %s (%d calibration tokens)\n", out_path, n_ids);
    }
    rc = 0;
done:
    free(layer_sp);
    sl_free_tokens(ids);
    sl_profile_free(profile);
    sl_model_free(model);
    free(text);
    return rc;
}
