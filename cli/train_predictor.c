/*
 * train_predictor.c — `skipllama train-predictor -m MODEL -f TEXT -o PROFILE`: train the
 * low-rank skip predictors of every layer from a text (sl_train_predictors) and write them, with
 * each layer's rule chosen to reach the target recall on held-out windows, into a profile (new,
 * or an existing one given with --profile). Progress bars per phase on stderr; a per-layer table
 * (or JSON with --json) on stdout. The profile appears atomically (temp file + rename), so an
 * interrupted run leaves no partial file.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *help_footer =
            "Memory: the collected pairs take tokens x layers x (2 n_embd + n_ff / 8) bytes (x as f16, masks\n"
            "as bits), in RAM up to --mem-limit, else in a temp file; training adds at most 64 MiB of shuffled\n"
            "rows, 256 MiB of validation scores, one batch and the parameters. A 1B model (n_embd 2048,\n"
            "n_ff 8192, 16 layers) with 1M tokens: 82 GB of pairs on disk, under 1 GB of RAM.";

/* Progress bars: one per phase (collect, then fit and select of each layer). */
typedef struct progress_state {
    cli_progress bar;    /* the current bar */
    char label[48];      /* its label */
    int phase;           /* phase of the current bar (-1 = none) */
    int layer;           /* layer of the current bar */
    bool quiet;          /* no output */
} progress_state;

static void on_progress(void *ud, sl_train_phase phase, int32_t layer, int64_t done, int64_t total) {
    progress_state *ps = ud;
    if (ps->quiet) return;
    if ((int)phase != ps->phase || layer != ps->layer) {
        ps->phase = (int)phase;
        ps->layer = layer;
        if (phase == SL_TRAIN_COLLECT) snprintf(ps->label, sizeof(ps->label), "collect");
        else snprintf(ps->label, sizeof(ps->label), "%s layer %d", phase == SL_TRAIN_FIT ? "train " : "select", layer);
        cli_progress_start(&ps->bar, ps->label, phase == SL_TRAIN_COLLECT ? "tok" : phase == SL_TRAIN_FIT ? "step" : "pass", false);
    }
    cli_progress_update(&ps->bar, done, total);
}

static bool parse_rule(const char *s, void *dest) {
    sl_skip_rule *out = dest;
    if (!strcmp(s, "threshold")) *out = SL_RULE_PRED_THRESHOLD;
    else if (!strcmp(s, "topk") || !strcmp(s, "top-k")) *out = SL_RULE_PRED_TOPK;
    else if (!strcmp(s, "stat-topk") || !strcmp(s, "stat-top-k")) *out = SL_RULE_PRED_STAT_TOPK;
    else return false;
    return true;
}

/* JSON numbers: NaN has no spelling, so it becomes null. */
static void json_num(const char *key, double v, bool comma) {
    if (isnan(v) || isinf(v)) printf("\"%s\": null%s", key, comma ? ", " : "");
    else printf("\"%s\": %.6g%s", key, v, comma ? ", " : "");
}

/* A string for JSON: quotes and backslashes escaped, control characters dropped. */
static void json_str(const char *key, const char *s, bool comma) {
    printf("\"%s\": \"", key);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"%s", comma ? ", " : "");
}

static bool parse_pred_type(const char *v, void *dest) {
    sl_type t;
    if (!sl_type_from_name(v, &t) || (t != SL_TYPE_F32 && t != SL_TYPE_F16 && t != SL_TYPE_BF16 && t != SL_TYPE_Q8_0)) return false;
    *(sl_type *)dest = t;
    return true;
}

int cmd_train_predictor(int argc, char **argv) {
    const char *cmd = "train-predictor";
    const char *model_path = NULL, *text_path = NULL, *out_path = NULL, *in_profile = NULL;
    sl_train_params tp = sl_train_default_params();
    tp.n_threads = cli_default_threads();
    bool json = false, quiet = false;
    int64_t mem_mb = tp.mem_limit >> 20;
    int target = 0, loss = 0;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model"),
        CLI_OPT_FILE(&text_path, "training text (tokenized whole, without BOS)"),
        CLI_OPT_OUTPUT(&out_path, "profile to write"),
        CLI_OPT_PROFILE(&in_profile, "add the predictors to this existing profile (e.g. from calibrate)"),
        {.names = "--rank", .type = CLI_INT, .dest = &tp.rank, .lo = 1, .hi = 1 << 20, .meta = "R", .help = "predictor rank",
         .def = "--rank-frac of n_ff"},
        {.names = "--rank-frac", .type = CLI_FLOAT, .dest = &tp.rank_frac, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "F",
         .help = "rank = F x n_ff rounded to a multiple of 16"},
        {.names = "--tokens", .type = CLI_I64, .dest = &tp.max_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "use about N tokens: whole windows spread evenly over the text; 0 = all"},
        {.names = "--epochs", .type = CLI_INT, .dest = &tp.epochs, .lo = 1, .hi = 100000, .meta = "E", .help = "passes over the training rows"},
        {.names = "--lr", .type = CLI_FLOAT, .dest = &tp.lr, .lo = 0, .hi = 10, .flags = CLI_LO_OPEN, .meta = "LR",
         .help = "AdamW peak learning rate (warm-up then cosine decay)"},
        {.names = "--weight-decay", .type = CLI_FLOAT, .dest = &tp.weight_decay, .lo = 0, .hi = 10, .meta = "WD", .help = "AdamW weight decay"},
        {.names = "--mini-batch", .type = CLI_INT, .dest = &tp.batch, .lo = 1, .hi = 65536, .meta = "B", .help = "training rows per mini-batch"},
        {.names = "--pos-weight", .type = CLI_FLOAT, .dest = &tp.pos_weight, .lo = 0, .hi = 1e6, .meta = "W",
         .help = "BCE weight of active neurons; 0 = (1 - d) / d per layer"},
        {.names = "--val-frac", .type = CLI_FLOAT, .dest = &tp.val_frac, .lo = 0, .hi = 0.9, .flags = CLI_LO_OPEN, .meta = "F",
         .help = "fraction of windows held out for validation"},
        {.names = "--target-recall", .type = CLI_FLOAT, .dest = &tp.target_recall, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "R",
         .help = "recall each layer's rule must reach on validation"},
        {.names = "--rule", .type = CLI_CUSTOM, .dest = &tp.rule, .parse = parse_rule, .choices = "one of threshold, topk, stat-topk",
         .meta = "RULE", .help = "selection rule", .def = "threshold"},
        {.names = "--target", .type = CLI_CHOICE, .dest = &target, .choices = "sign|contrib", .meta = "T",
         .help = "what the predictor ranks: the gate's sign (gate > 0), or the neuron's contribution\n"
                 "|act(g) u| ||down[:, i]|| (the rule written is then top-k at --label-frac)", .def = "sign"},
        {.names = "--loss", .type = CLI_CHOICE, .dest = &loss, .choices = "bce|listnet", .meta = "L",
         .help = "weighted BCE, or the ListNet ranking loss (contrib target only)", .def = "bce"},
        {.names = "--label-frac", .type = CLI_FLOAT, .dest = &tp.label_frac, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "F",
         .help = "contrib target: BCE positives = the top F of a token's neurons; the top-k fraction written"},
        {.names = "--type", .type = CLI_CUSTOM, .dest = &tp.type, .parse = parse_pred_type, .choices = "one of f32, f16, bf16, q8_0",
         .meta = "TYPE", .help = "predictor storage type", .def = "f32"},
        CLI_OPT_SEED(&tp.seed, "random seed; the same seed and threads give the same profile bytes", NULL),
        CLI_OPT_CTX(&tp.n_ctx, "window length in tokens; 0 = the model's context", "the model's, at most 512"),
        CLI_OPT_THREADS(&tp.n_threads),
        {.names = "--mem-limit", .type = CLI_I64, .dest = &mem_mb, .lo = 0, .hi = (double)(1 << 20) * 1024, .meta = "MB",
         .help = "RAM for the collected pairs before they go to a temp file"},
        {.names = "--tmp-dir", .type = CLI_STR, .dest = &tp.tmp_dir, .meta = "DIR", .help = "where that temp file goes", .def = "$TMPDIR or /tmp"},
        {.names = "--json", .type = CLI_FLAG, .dest = &json, .help = "machine-readable report on stdout"},
        CLI_OPT_QUIET(&quiet, "no progress bars or table"),
        {.names = "--batch", .type = CLI_INT, .dest = &tp.batch, .lo = 1, .hi = 65536, .meta = "B", .flags = CLI_DEPRECATED,
         .help = "--batch is the old spelling of --mini-batch (-b/--batch-size is the prompt batch elsewhere)"},
        CLI_OPT_END,
    };
    const cli_cmd spec = {.name = "train-predictor", .usage = "[-m MODEL.gguf] -f TEXT -o PROFILE.gguf [options]",
                          .about = "Trains the low-rank skip predictors of every layer (docs/predictor-training.md) and writes them,\n"
                                   "each layer's rule chosen to reach --target-recall on held-out windows, into a profile.",
                          .opts = opts, .footer = help_footer};
    int prc;
    if (!cli_parse(&spec, argc, argv, NULL, &prc)) return prc;
    tp.target = target ? SL_TARGET_CONTRIB : SL_TARGET_SIGN;
    tp.loss = loss ? SL_LOSS_LISTNET : SL_LOSS_BCE;
    if (!text_path || !out_path) {
        cli_help(&spec, stderr);
        return cli_fail(cmd, "-f TEXT and -o PROFILE are required");
    }
    if (!(model_path = cli_model_path(cmd, model_path)) || !cli_output_check(cmd, out_path)) return 1;
    if (tp.n_ctx == 1) return cli_fail(cmd, "-c 1 is too short: a window needs at least 2 tokens");
    tp.mem_limit = mem_mb << 20;
    int rc = 1;
    sl_error err;
    sl_model *model = NULL;
    sl_profile *profile = NULL;
    int32_t *ids = NULL, n_ids = 0;
    sl_train_layer_report *layers = NULL;
    size_t len = 0;
    char *text = cli_read_file(cmd, text_path, (size_t)1 << 30, &len);
    if (!text) goto done;
    if (!(model = cli_load_model(cmd, model_path, NULL, &err))) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    if (tp.n_ctx) cli_warn_ctx(cmd, model, tp.n_ctx);
    if (!sl_model_get_vocab(model)) {
        cli_fail(cmd, "'%s' has no tokenizer", model_path);
        goto done;
    }
    if (sl_tokenize(sl_model_get_vocab(model), text, len, false, false, &ids, &n_ids, &err) != SL_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    profile = in_profile ? sl_profile_load(in_profile, model, &err) : sl_profile_init(model, &err);
    layers = calloc((size_t)c->n_layer, sizeof(*layers));
    if (!profile || !layers) {
        if (!profile) cli_fail_err(cmd, &err);
        else cli_fail(cmd, "out of memory");
        goto done;
    }
    progress_state ps = {.phase = -1, .layer = -2, .quiet = quiet || json};
    tp.progress = on_progress;
    tp.progress_ud = &ps;
    sl_train_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.layers = layers;
    if (sl_train_predictors(model, ids, n_ids, &tp, profile, &rep, &err) != SL_OK || sl_profile_save(profile, out_path, &err) != SL_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (json) {
        printf("{");
        json_str("model", model_path, true);
        json_str("text", text_path, true);
        json_str("output", out_path, true);
        printf("\"n_layer\": %d, \"n_embd\": %d, \"n_ff\": %d, ", c->n_layer, c->n_embd, c->n_ff);
        printf("\"rank\": %d, \"rule\": \"%s\", \"type\": \"%s\", \"target_recall\": %g, \"epochs\": %d, \"lr\": %g, \"batch\": %d, "
               "\"seed\": %llu, \"threads\": %d, ",
               rep.rank, sl_skip_rule_name(tp.rule), sl_type_name(tp.type), (double)tp.target_recall, tp.epochs, (double)tp.lr, tp.batch,
               (unsigned long long)tp.seed, tp.n_threads);
        printf("\"tokens\": %lld, \"train_tokens\": %lld, \"val_tokens\": %lld, \"windows\": %lld, \"val_windows\": %lld, "
               "\"store_bytes\": %lld, \"store_on_disk\": %s, ",
               (long long)rep.n_tokens, (long long)rep.n_train_tokens, (long long)rep.n_val_tokens, (long long)rep.n_windows,
               (long long)rep.n_val_windows, (long long)rep.store_bytes, rep.store_on_disk ? "true" : "false");
        printf("\"t_collect\": %.3f, \"t_fit\": %.3f, \"t_select\": %.3f, \"t_total\": %.3f, \"layers\": [", rep.t_collect, rep.t_fit,
               rep.t_select, rep.t_total);
        for (int l = 0; l < c->n_layer; l++) {
            const sl_train_layer_report *L = &layers[l];
            printf("%s{\"layer\": %d, \"rank\": %d, \"rule\": \"%s\", ", l ? ", " : "", l, L->rank, sl_skip_rule_name(L->rule));
            if (L->rule == SL_RULE_PRED_THRESHOLD) json_num("threshold", L->threshold, true);
            else printf("\"topk\": %d, ", L->topk);
            json_num("true_density", L->true_density, true);
            json_num("pred_density", L->pred_density, true);
            json_num("precision", L->precision, true);
            json_num("recall", L->recall, true);
            json_num("f1", L->f1, true);
            json_num("pos_weight", L->pos_weight, true);
            json_num("train_loss", L->train_loss, true);
            json_num("val_loss", L->val_loss, true);
            json_num("contrib_recall", L->contrib_recall, true);
            json_num("fit_seconds", L->fit_seconds, true);
            json_num("select_seconds", L->select_seconds, false);
            printf("}");
        }
        printf("]}\n");
    } else if (!quiet) {
        printf("\nlayer  rank  rule       threshold/k  true_dens  pred_dens  precision  recall      F1  contrib_rec  train_loss  val_loss  time_s\n");
        double sum_true = 0, sum_pred = 0;
        for (int l = 0; l < c->n_layer; l++) {
            const sl_train_layer_report *L = &layers[l];
            char param[32];
            if (L->rule == SL_RULE_PRED_THRESHOLD) snprintf(param, sizeof(param), "%.5g", (double)L->threshold);
            else snprintf(param, sizeof(param), "k=%d", L->topk);
            printf("%5d  %4d  %-9s  %11s  %9.4f  %9.4f  %9.4f  %6.4f  %6.4f  %11.4f  %10.4f  %8.4f  %6.1f\n", l, L->rank,
                   sl_skip_rule_name(L->rule), param, L->true_density, L->pred_density, L->precision, L->recall, L->f1, L->contrib_recall,
                   L->train_loss, L->val_loss,
                   L->fit_seconds + L->select_seconds);
            sum_true += L->true_density;
            sum_pred += L->pred_density;
        }
        printf("\nmean true density %.4f, predicted density %.4f -> MLP sparsity %.4f (natural %.4f)\n", sum_true / c->n_layer,
               sum_pred / c->n_layer, 1.0 - sum_pred / c->n_layer, 1.0 - sum_true / c->n_layer);
        printf("tokens: %lld (%lld train, %lld validation in %lld of %lld windows); pairs %.1f MB %s\n", (long long)rep.n_tokens,
               (long long)rep.n_train_tokens, (long long)rep.n_val_tokens, (long long)rep.n_val_windows, (long long)rep.n_windows,
               (double)rep.store_bytes / 1e6, rep.store_on_disk ? "in a temp file" : "in RAM");
        printf("time: collect %.1f s, train %.1f s, select %.1f s, total %.1f s (%d threads)\n", rep.t_collect, rep.t_fit, rep.t_select,
               rep.t_total, tp.n_threads);
        printf("wrote %s\n", out_path);
    }
    rc = 0;
done:
    free(layers);
    sl_free_tokens(ids);
    sl_profile_free(profile);
    sl_model_free(model);
    free(text);
    return rc;
}
