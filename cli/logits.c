/*
 * logits.c — `skipllama logits -m MODEL.gguf --ids 1,302,930 -o OUT.f32`: evaluates the ids as
 * one sequence and writes little-endian float32 logits, one row of n_vocab per input id
 * (row i = the distribution after ids[0..i]).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_logits(int argc, char **argv) {
    const char *path = NULL, *ids_arg = NULL, *out_path = NULL;
    sl_context_params cp = sl_context_default_params();
    cp.n_threads = cli_default_threads();
    cp.n_batch = CLI_DEFAULT_BATCH;
    bool incremental = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF model"),
        {.names = "--ids", .type = CLI_STR, .dest = &ids_arg, .meta = "LIST", .help = "comma-separated token ids (no BOS is added)", .def = ""},
        CLI_OPT_OUTPUT(&out_path, "output file ('-' = standard output)"),
        CLI_OPT_THREADS(&cp.n_threads),
        CLI_OPT_BATCH(&cp.n_batch),
        CLI_OPT_CTX(&cp.n_ctx, "context length in tokens; 0 = as many as there are ids", "as many as there are ids"),
        {.names = "--incremental", .type = CLI_FLAG, .dest = &incremental, .help = "evaluate one token at a time (KV cache path)"},
        {.names = "--kv-f16", .type = CLI_FLAG, .dest = &cp.kv_f16, .help = "store the KV cache as f16"},
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "logits", .usage = "[-m MODEL.gguf] --ids ID,ID,... -o OUT.f32 [options]",
                         .about = "Writes float32 logits [n_ids, n_vocab] (little-endian, row i = after ids[0..i]).", .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    if (!ids_arg || !out_path) {
        cli_help(&cmd, stderr);
        return cli_fail("logits", "--ids and -o are required");
    }
    if (!(path = cli_model_path("logits", path))) return 1;
    if (strcmp(out_path, "-") && !cli_output_check("logits", out_path)) return 1;
    int32_t *ids = NULL, n_ids = 0;
    if (!cli_parse_ids(ids_arg, &ids, &n_ids)) return cli_fail("logits", "malformed --ids '%s' (expected e.g. 1,302,930)", ids_arg);

    int rc = 1;
    sl_error err;
    sl_context *ctx = NULL;
    float *logits = NULL;
    sl_model *model = cli_load_model("logits", path, NULL, &err);
    if (!model) {
        cli_fail_err("logits", &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    if (cp.n_ctx == 0) cp.n_ctx = n_ids;
    cli_warn_ctx("logits", model, cp.n_ctx);
    ctx = sl_context_init(model, &cp, &err);
    if (!ctx) {
        cli_fail_err("logits", &err);
        goto done;
    }
    logits = malloc((size_t)n_ids * (size_t)c->n_vocab * sizeof(float));
    if (!logits) {
        cli_fail("logits", "cannot allocate %d x %d logits", n_ids, c->n_vocab);
        goto done;
    }
    if (incremental) {
        for (int32_t i = 0; i < n_ids; i++) {
            if (sl_eval(ctx, ids + i, 1, logits + (size_t)i * (size_t)c->n_vocab, false, &err) != SL_OK) {
                cli_fail_err("logits", &err);
                goto done;
            }
        }
    } else if (sl_eval(ctx, ids, n_ids, logits, true, &err) != SL_OK) {
        cli_fail_err("logits", &err);
        goto done;
    }
    size_t n = (size_t)n_ids * (size_t)c->n_vocab;
    if (!strcmp(out_path, "-")) {
        if (fwrite(logits, sizeof(float), n, stdout) != n || fflush(stdout) != 0) {
            cli_fail("logits", "writing to standard output failed");
            goto done;
        }
    } else {
        sl_output *out = sl_output_open(out_path, &err);
        if (!out) {
            cli_fail_err("logits", &err);
            goto done;
        }
        if (fwrite(logits, sizeof(float), n, sl_output_stream(out)) != n) {
            sl_output_abort(out);
            cli_fail("logits", "writing '%s' failed", out_path);
            goto done;
        }
        if (sl_output_commit(out, &err) != SL_OK) {
            cli_fail_err("logits", &err);
            goto done;
        }
    }
    rc = 0;
done:
    free(logits);
    free(ids);
    sl_context_free(ctx);
    sl_model_free(model);
    return rc;
}
