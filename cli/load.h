/*
 * load.h — the model and its optional sparsity profile, loaded the same way by the commands that
 * generate or score (`run`, `chat`, `serve`, `ppl`): the model parameters (the MLP loaded bundled
 * when a profile will be used), the load with its warnings, then the profile — loaded, set to
 * --sparsity, attached to a context — each failure printed as "skipllama CMD: <error>".
 * What it is not: option parsing (opts.h) or context creation, which stay with each command.
 */
#ifndef SL_CLI_LOAD_H
#define SL_CLI_LOAD_H

#include "skipllama.h"

#include <stdbool.h>

/* The model parameters of a command that can decode sparsely: default ones with no_repack and
 * n_threads, and, when profile_path is given, the MLP loaded bundled (one copy of it, in the layout
 * the sparse path reads, shared by every context). */
sl_model_params cli_model_params(const char *profile_path, bool no_repack, int n_threads);

/* cli_load_model (warnings printed) with cli_model_params(profile_path, no_repack, n_threads).
 * NULL after printing "skipllama CMD: <error>" (the command exits 1). */
sl_model *cli_model_load(const char *cmd, const char *path, const char *profile_path, bool no_repack, int n_threads);

/* --profile and --sparsity (the command checks first that --sparsity comes with --profile): with
 * no profile_path, *out = NULL and 0. Else the profile at profile_path is loaded for model, its
 * target set to sparsity when sparsity >= 0, and attached to ctx (unless ctx is NULL) with
 * sparse_prefill: 0 with *out the profile (the caller frees it with sl_profile_free), or 1 after
 * printing "skipllama CMD: <error>", with *out = NULL (nothing to free). */
int cli_profile_attach(const char *cmd, const sl_model *model, const char *profile_path, float sparsity, sl_context *ctx,
                       bool sparse_prefill, sl_profile **out);

#endif
