/*
 * logits.c — `skipllama logits -m MODEL.gguf --ids 1,302,930 -o OUT.f32`: evaluates the ids as
 * one sequence and writes little-endian float32 logits, one row of n_vocab per input id
 * (row i = the distribution after ids[0..i]).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *out) {
    fprintf(out, "usage: skipllama logits -m MODEL.gguf --ids ID,ID,... -o OUT.f32 [options]\n\n"
                 "Writes float32 logits [n_ids, n_vocab] (little-endian, row i = after ids[0..i]).\n"
                 "  -m, --model FILE    GGUF model file\n"
                 "  --ids LIST          comma-separated token ids (no BOS is added)\n"
                 "  -o, --output FILE   output file ('-' for stdout)\n"
                 "  -t, --threads N     worker threads (default 1)\n"
                 "  -b, --batch N       tokens per prefill step (default 64)\n"
                 "  --incremental       evaluate one token at a time (KV cache path)\n"
                 "  --kv-f16            store the KV cache as f16\n");
}

int cmd_logits(int argc, char **argv) {
    const char *path = NULL, *ids_arg = NULL, *out_path = NULL;
    sl_context_params cp = sl_context_default_params();
    bool incremental = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is(argv[i], "-h", "--help")) {
            help(stdout);
            return 0;
        } else if (cli_is(argv[i], "-m", "--model")) {
            if (!(path = cli_value("logits", argc, argv, &i))) return 1;
        } else if (cli_is(argv[i], NULL, "--ids")) {
            if (!(ids_arg = cli_value("logits", argc, argv, &i))) return 1;
        } else if (cli_is(argv[i], "-o", "--output")) {
            if (!(out_path = cli_value("logits", argc, argv, &i))) return 1;
        } else if (cli_is(argv[i], "-t", "--threads")) {
            if (!(v = cli_value("logits", argc, argv, &i))) return 1;
            if (!cli_parse_int(v, 1, 512, &cp.n_threads)) return cli_fail("logits", "bad thread count '%s'", v);
        } else if (cli_is(argv[i], "-b", "--batch")) {
            if (!(v = cli_value("logits", argc, argv, &i))) return 1;
            if (!cli_parse_int(v, 1, 65536, &cp.n_batch)) return cli_fail("logits", "bad batch size '%s'", v);
        } else if (cli_is(argv[i], NULL, "--incremental")) {
            incremental = true;
        } else if (cli_is(argv[i], NULL, "--kv-f16")) {
            cp.kv_f16 = true;
        } else {
            help(stderr);
            return cli_fail("logits", "unknown option '%s'", argv[i]);
        }
    }
    if (!path || !ids_arg || !out_path) {
        help(stderr);
        return cli_fail("logits", "-m, --ids and -o are required");
    }
    int32_t *ids = NULL, n_ids = 0;
    if (!cli_parse_ids(ids_arg, &ids, &n_ids)) return cli_fail("logits", "malformed --ids '%s' (expected e.g. 1,302,930)", ids_arg);

    int rc = 1;
    sl_error err;
    sl_context *ctx = NULL;
    float *logits = NULL;
    FILE *out = NULL;
    sl_model *model = sl_model_load(path, NULL, &err);
    if (!model) {
        cli_fail_err("logits", &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    if (n_ids > c->n_ctx_train && cp.n_ctx == 0) cp.n_ctx = n_ids;
    if (cp.n_ctx == 0) cp.n_ctx = n_ids;
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
    out = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout;
    if (!out) {
        cli_fail("logits", "cannot create '%s'", out_path);
        goto done;
    }
    size_t n = (size_t)n_ids * (size_t)c->n_vocab;
    if (fwrite(logits, sizeof(float), n, out) != n || fflush(out) != 0) {
        cli_fail("logits", "write to '%s' failed", out_path);
        goto done;
    }
    rc = 0;
done:
    if (out && out != stdout) fclose(out);
    free(logits);
    free(ids);
    sl_context_free(ctx);
    sl_model_free(model);
    return rc;
}
