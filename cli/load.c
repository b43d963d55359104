/*
 * load.c — the model and its optional sparsity profile for `run`, `chat`, `serve` and `ppl`
 * (see load.h). What it is not: a wrapper of the library's load; it only gathers what those
 * commands did alike.
 */
#include "load.h"

#include "cli.h"

sl_model_params cli_model_params(const char *profile_path, bool no_repack, int n_threads) {
    sl_model_params mp = sl_model_default_params();
    mp.no_repack = no_repack;
    mp.bundled = profile_path != NULL; /* one copy of the MLP, the layout the sparse path reads */
    mp.n_threads = n_threads;
    return mp;
}

sl_model *cli_model_load(const char *cmd, const char *path, const char *profile_path, bool no_repack, int n_threads) {
    sl_error err;
    sl_model_params mp = cli_model_params(profile_path, no_repack, n_threads);
    sl_model *model = cli_load_model(cmd, path, &mp, &err);
    if (!model) cli_fail_err(cmd, &err);
    return model;
}

int cli_profile_attach(const char *cmd, const sl_model *model, const char *profile_path, float sparsity, sl_context *ctx,
                       bool sparse_prefill, sl_profile **out) {
    *out = NULL;
    if (!profile_path) return 0;
    sl_error err;
    sl_profile *profile = sl_profile_load(profile_path, model, &err);
    if (!profile || (sparsity >= 0 && sl_profile_set_sparsity(profile, sparsity, &err) != SL_OK) ||
        (ctx && sl_context_set_profile(ctx, profile, sparse_prefill, &err) != SL_OK)) {
        sl_profile_free(profile);
        return cli_fail_err(cmd, &err);
    }
    *out = profile;
    return 0;
}
