/*
 * ppl.c — `skipllama ppl -m MODEL -f TEXT [-c CTX] [--profile P] [--sparsity S]`: perplexity
 * of a text file, dense or with a sparsity profile. The text is tokenized whole without BOS,
 * cut into non-overlapping windows of CTX tokens (default: the model's context, capped at 512),
 * each evaluated from an empty cache; every token but the first of a window is scored. With a
 * profile, each token's MLP uses its own mask (the decoding path), and the report adds the
 * achieved sparsity per layer and the selection's recall/precision against the true mask
 * (gate pre-activation > 0).
 */
#include "cli.h"
#include "load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_ppl(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *profile_path = NULL;
    int ctx_len = 0, threads = cli_default_threads();
    int64_t max_tokens = 0;
    float sparsity = -1.0f;
    bool json = false, quiet = false, dense_prefill = false, llama = false;
    int chunks = 0;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model"),
        CLI_OPT_FILE(&text_path, "text to score"),
        CLI_OPT_CTX(&ctx_len, "window length in tokens; 0 = the model's context", "the model's, at most 512"),
        CLI_OPT_THREADS(&threads),
        CLI_OPT_PROFILE(&profile_path, "sparsity profile (model.skip.gguf)"),
        CLI_OPT_SPARSITY(&sparsity, "override the profile's target sparsity", "the profile's"),
        {.names = "--dense-prefill", .type = CLI_FLAG, .dest = &dense_prefill,
         .help = "with a profile: evaluate windows densely (only single tokens are sparse)"},
        {.names = "--max-tokens", .type = CLI_I64, .dest = &max_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "score only the first N tokens of the text; 0 = all"},
        {.names = "--llama", .type = CLI_FLAG, .dest = &llama,
         .help = "llama-perplexity's method: the text tokenized with BOS, whole chunks of -c tokens each\nstarting with BOS, "
                 "only their second half scored; prints its \"PPL = x +/- y\""},
        {.names = "--chunks", .type = CLI_INT, .dest = &chunks, .lo = 0, .hi = 1 << 30, .meta = "N",
         .help = "with --llama: score at most N chunks; 0 = all (llama-perplexity's --chunks)"},
        {.names = "--json", .type = CLI_FLAG, .dest = &json, .help = "machine-readable output"},
        CLI_OPT_QUIET(&quiet, "no progress bar"),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "ppl", .usage = "[-m MODEL.gguf] -f TEXT [options]",
                         .about = "Perplexity of a text: tokenized whole without BOS, cut into non-overlapping windows of -c\n"
                                  "tokens, each evaluated from an empty cache; every token but a window's first is scored.\n"
                                  "--llama scores as llama.cpp's llama-perplexity does instead, to compare with its numbers.\n"
                                  "The \"±\" is the standard error of the perplexity (as llama-perplexity's).",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!text_path) {
        cli_help(&cmd, stderr);
        return cli_fail("ppl", "-f TEXT is required");
    }
    if (!(model_path = cli_model_path("ppl", model_path))) return 1;
    if (ctx_len == 1) return cli_fail("ppl", "-c 1 leaves nothing to score: a window needs at least 2 tokens");
    if (sparsity >= 0 && !profile_path) return cli_fail("ppl", "--sparsity needs --profile");
    int rc = 1;
    sl_error err;
    sl_model *model = NULL;
    sl_profile *profile = NULL;
    sl_context *ctx = NULL;
    int32_t *ids = NULL, n_ids = 0;
    size_t len = 0;
    char *text = cli_read_file("ppl", text_path, (size_t)1 << 30, &len);
    if (!text) goto done;
    if (!(model = cli_load_model("ppl", model_path, NULL, &err))) {
        cli_fail_err("ppl", &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    const sl_vocab *vocab = sl_model_get_vocab(model);
    if (!vocab) {
        cli_fail("ppl", "'%s' has no tokenizer", model_path);
        goto done;
    }
    if (chunks && !llama) {
        cli_fail("ppl", "--chunks needs --llama");
        goto done;
    }
    if (sl_tokenize(vocab, text, len, llama, false, &ids, &n_ids, &err) != SL_OK) {
        cli_fail_err("ppl", &err);
        goto done;
    }
    if (max_tokens && max_tokens < n_ids) n_ids = (int32_t)max_tokens;
    if (n_ids < 2) {
        cli_fail("ppl", "the text has %d tokens; at least 2 are needed", n_ids);
        goto done;
    }
    if (!ctx_len) ctx_len = c->n_ctx_train < 512 ? c->n_ctx_train : 512;
    sl_context_params cp = sl_context_default_params();
    cli_warn_ctx("ppl", model, ctx_len);
    cp.n_ctx = ctx_len;
    cp.n_threads = threads;
    cp.n_batch = ctx_len < 256 ? ctx_len : 256;
    if (!(ctx = sl_context_init(model, &cp, &err))) {
        cli_fail_err("ppl", &err);
        goto done;
    }
    if (profile_path) {
        if (cli_profile_attach("ppl", model, profile_path, sparsity, ctx, !dense_prefill, &profile)) goto done;
        sl_context_track_recall(ctx, true);
    }
    cli_progress prog;
    cli_progress_start(&prog, "ppl", "tok", quiet || json);
    sl_ppl_result r;
    memset(&r, 0, sizeof r);
    const int32_t bos = sl_vocab_add_bos(vocab) ? sl_vocab_bos(vocab) : -1;
    if ((llama ? sl_perplexity_llama(ctx, ids, n_ids, ctx_len, bos, chunks, cli_progress_cb, &prog, &r, &err)
               : sl_perplexity(ctx, ids, n_ids, ctx_len, cli_progress_cb, &prog, &r, &err)) != SL_OK) {
        cli_fail_err("ppl", &err);
        goto done;
    }
    double sum_active = 0, sum_neurons = 0, sum_bytes = 0, sum_bytes_dense = 0, sum_ck = 0, sum_ct = 0, sum_cand = 0, sum_err = 0, sum_norm = 0;
    if (json) {
        printf("{");
        cli_json_str("model", model_path, true);
        cli_json_str("text", text_path, true);
        printf("\"method\": \"%s\", \"ctx\": %d, \"tokens\": %d, \"scored\": %lld, \"windows\": %d, \"ppl\": %.6f, \"ppl_err\": %.6f, "
               "\"nll_mean\": %.6f",
               llama ? "llama-perplexity" : "windows", ctx_len, n_ids, (long long)r.n_scored, r.n_windows, r.ppl, r.ppl_err, r.nll_mean);
    } else {
        if (llama)
            printf("model:      %s\ntext:       %s (%d tokens with BOS; %d chunks of %d, the second half of each scored: llama-perplexity's "
                   "method)\n",
                   model_path, text_path, n_ids, r.n_windows, ctx_len);
        else printf("model:      %s\ntext:       %s (%d tokens, %d windows of %d)\n", model_path, text_path, n_ids, r.n_windows, ctx_len);
        if (profile) printf("profile:    %s (%s)\n", profile_path, sl_profile_method(profile));
    }
    if (profile) {
        if (json) {
            printf(", ");
            cli_json_str("profile", profile_path, true);
            printf("\"layers\": [");
        }
        else printf("\nlayer  rule            sparsity  cand   bytes  recall  precision  true_density  contrib_recall  rel_error\n");
        for (int l = 0; l < c->n_layer; l++) {
            sl_layer_stats st;
            sl_profile_layer info;
            sl_context_get_layer_stats(ctx, l, &st, &err);
            sl_profile_get_layer(profile, l, &info, &err);
            double sp = st.n_neurons ? 1.0 - (double)st.n_active / (double)st.n_neurons : 0.0;
            double tp = (double)st.true_pos, rec = tp + st.false_neg > 0 ? tp / (tp + st.false_neg) : NAN,
                   prec = tp + st.false_pos > 0 ? tp / (tp + st.false_pos) : NAN,
                   dens = st.n_neurons ? (tp + st.false_neg) / (double)st.n_neurons : NAN;
            sum_active += (double)st.n_active;
            sum_neurons += (double)st.n_neurons;
            sum_bytes += (double)st.mlp_bytes;
            sum_bytes_dense += (double)st.mlp_bytes_dense;
            sum_ck += st.contrib_kept;
            sum_ct += st.contrib_total;
            sum_cand += (double)st.n_cand;
            sum_err += st.out_err;
            sum_norm += st.out_norm;
            const double bf = st.mlp_bytes_dense ? (double)st.mlp_bytes / (double)st.mlp_bytes_dense : 1.0,
                         cr = st.contrib_total > 0 ? st.contrib_kept / st.contrib_total : NAN,
                         cf = st.n_neurons ? (double)st.n_cand / (double)st.n_neurons : 0.0,
                         re = st.out_norm > 0 ? st.out_err / st.out_norm : NAN;
            if (json)
                printf("%s{\"layer\": %d, \"rule\": \"%s\", \"sparsity\": %.4f, \"cand_fraction\": %.4f, \"bytes_fraction\": %.4f, "
                       "\"recall\": %.4f, \"precision\": %.4f, \"true_density\": %.4f, \"contrib_recall\": %.4f, \"rel_error\": %.6f}",
                       l ? ", " : "", l, sl_skip_rule_name(info.rule), sp, cf, bf, isnan(rec) ? -1.0 : rec, isnan(prec) ? -1.0 : prec,
                       isnan(dens) ? -1.0 : dens, isnan(cr) ? -1.0 : cr, isnan(re) ? -1.0 : re);
            else
                printf("%5d  %-14s  %8.4f  %4.2f  %6.4f  %6.4f  %9.4f  %12.4f  %14.4f  %9.5f\n", l, sl_skip_rule_name(info.rule), sp, cf, bf,
                       rec, prec, dens, cr, re);
        }
        const double mlp_sparsity = sum_neurons > 0 ? 1.0 - sum_active / sum_neurons : 0.0,
                     bytes_fraction = sum_bytes_dense > 0 ? sum_bytes / sum_bytes_dense : 1.0,
                     contrib = sum_ct > 0 ? sum_ck / sum_ct : NAN;
        if (json)
            printf("], \"mlp_sparsity\": %.4f, \"mlp_bytes_fraction\": %.4f, \"contrib_recall\": %.4f, \"mlp_rel_error\": %.6f",
                   mlp_sparsity, bytes_fraction, isnan(contrib) ? -1.0 : contrib, sum_norm > 0 ? sum_err / sum_norm : -1.0);
        else
            printf("\nMLP sparsity (all layers): %.4f\nMLP weight bytes read: %.4f of dense\ncontribution recall: %.4f\n", mlp_sparsity,
                   bytes_fraction, contrib);
        (void)sum_cand;
    }
    if (json) printf("}\n");
    else if (llama) printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    else
        printf("perplexity: %.4f ± %.4f (nll %.5f, sd %.5f, over %lld scored tokens)\n", r.ppl, r.ppl_err, r.nll_mean, r.nll_sd,
               (long long)r.n_scored);
    rc = 0;
done:
    sl_free_tokens(ids);
    sl_context_free(ctx);
    sl_profile_free(profile);
    sl_model_free(model);
    free(text);
    return rc;
}
