/*
 * serve.c — `skipllama serve`: the OpenAI-compatible HTTP server (sl_server, src/server/) as a
 * process. It loads the model (and profile), starts the server, prints where it listens and one
 * access line per request on stderr, and waits for SIGINT or SIGTERM: the first one drains
 * (new generations get 503, running ones finish, at most --drain-timeout seconds), a second one
 * stops at once. What it is not: the server itself — everything but options, signals and
 * printing is in the library.
 */
#include "cli.h"
#include "load.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_line(void *ud, const char *line) {
    if (ud && line[strcspn(line, " ")] == ' ' && line[strcspn(line, " ") + 1] == '/') return; /* --quiet: no "GET /x ..." lines */
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&now, &tm));
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "skipllama serve: %s %s\n", ts, line);
    pthread_mutex_unlock(&log_mu);
}

/* the file name without folder and .gguf */
static void model_alias(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    size_t l = strlen(out);
    if (l > 5 && !strcmp(out + l - 5, ".gguf")) out[l - 5] = 0;
}

int cmd_serve(int argc, char **argv) {
    const char *path = NULL, *profile_path = NULL, *key_file = NULL, *alias = NULL, *host = "127.0.0.1", *api_key = NULL;
    float sparsity = -1.0f, union_max = 0.0f;
    int batch_select = 0;
    int drain_s = 30, port = 8080, n_parallel = 4, n_ctx = 0, n_threads = cli_default_threads(), n_batch = CLI_DEFAULT_BATCH;
    int queue = 0, timeout_s = 600;
    int64_t max_body = (int64_t)1 << 20;
    bool quiet = false, no_repack = false, sparse_prefill = false, kv_f16 = false, no_bundled = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&path, "GGUF model (default: the bundled tiny model)"),
        {.names = "--host", .type = CLI_STR, .dest = &host, .meta = "ADDR", .help = "IPv4 or IPv6 address to listen on (127.0.0.1: this machine only)"},
        {.names = "--port", .type = CLI_INT, .dest = &port, .lo = 0, .hi = 65535, .meta = "N", .help = "TCP port; 0 = any free port"},
        {.names = "-np --parallel", .type = CLI_INT, .dest = &n_parallel, .lo = 1, .hi = 512, .meta = "N",
         .help = "slots: requests decoded together, one batched step per token"},
        CLI_OPT_CTX(&n_ctx, "context tokens of each slot; 0 = the model's", "the model's, at most 4096"),
        CLI_OPT_THREADS(&n_threads),
        CLI_OPT_BATCH(&n_batch),
        {.names = "--queue", .type = CLI_INT, .dest = &queue, .lo = 0, .hi = 1 << 20, .meta = "N",
         .help = "requests that may wait for a slot before 503; 0 = 4 x slots"},
        {.names = "--timeout", .type = CLI_INT, .dest = &timeout_s, .lo = 1, .hi = 1 << 30, .meta = "SEC", .help = "idle connection timeout"},
        {.names = "--max-body", .type = CLI_I64, .dest = &max_body, .lo = 1, .hi = (double)((int64_t)1 << 40), .meta = "BYTES",
         .help = "largest request body; larger ones get 413"},
        {.names = "--api-key", .type = CLI_STR, .dest = &api_key, .meta = "KEY",
         .help = "require 'Authorization: Bearer KEY' on every endpoint but /health and the page", .def = ""},
        {.names = "--api-key-file", .type = CLI_STR, .dest = &key_file, .meta = "FILE", .help = "the same, the key read from the file's first line",
         .def = ""},
        {.names = "--alias", .type = CLI_STR, .dest = &alias, .meta = "NAME", .help = "the model's id in /v1/models", .def = "the file name"},
        CLI_OPT_PROFILE(&profile_path, "sparsity profile: skip MLP neurons while decoding"),
        CLI_OPT_SPARSITY(&sparsity, "override the profile's target sparsity (also settable through POST /props)", "the profile's"),
        {.names = "--batch-select", .type = CLI_CHOICE, .dest = &batch_select, .choices = "union|shared|auto|dense", .meta = "MODE",
         .help = "with a profile, how the slots decoding in one step choose neurons: union = each its own\n(the union read once), shared = one set for the step by combined score, auto = the union\ncapped at --batch-union-max, dense = a step of several slots decodes dense (docs/server.md)"},
        {.names = "--batch-union-max", .type = CLI_FLOAT, .dest = &union_max, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "U",
         .help = "--batch-select auto: the cap on the union (fraction of a layer's neurons); a larger union is cut\nto this many neurons by combined score", .def = "0.6"},
        {.names = "--sparse-prefill", .type = CLI_FLAG, .dest = &sparse_prefill, .help = "also skip neurons in prompt chunks"},
        {.names = "--kv-f16", .type = CLI_FLAG, .dest = &kv_f16, .help = "store the KV caches as f16"},
        {.names = "--no-repack", .type = CLI_FLAG, .dest = &no_repack, .help = "compute Q4_0 weights from the file layout (default: repacked at load)"},
        {.names = "--no-bundled", .type = CLI_FLAG, .dest = &no_bundled,
         .help = "with --profile: load the model as the file has it (dense steps use its matrices, fastest for\nseveral slots: see --batch-select dense); the profile builds the neuron bundles, a second copy\nof the MLP read only by sparse steps"},
        {.names = "--drain-timeout", .type = CLI_INT, .dest = &drain_s, .lo = 0, .hi = 1 << 30, .meta = "SEC",
         .help = "on SIGINT/SIGTERM, wait this long for running requests"},
        CLI_OPT_QUIET(&quiet, "no access log (one line per request)"),
        CLI_OPT_END,
    };
    const cli_cmd cmd = {.name = "serve",
                         .usage = "[-m MODEL.gguf] [options]",
                         .about = "Serves the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,\n"
                                  "/v1/models, /tokenize, /detokenize, /health, /metrics, /props) with a chat page at /.\n"
                                  "SIGINT or SIGTERM drains (running requests finish; a second signal stops at once).\n"
                                  "See docs/server.md.",
                         .opts = opts};
    int prc;
    if (!cli_parse(&cmd, argc, argv, NULL, &prc)) return prc;
    sl_server_params sp = sl_server_default_params();
    sp.host = host;
    sp.port = port;
    sp.n_parallel = n_parallel;
    sp.n_ctx = n_ctx;
    sp.n_threads = n_threads;
    sp.n_batch = n_batch;
    sp.queue_size = queue;
    sp.timeout_s = timeout_s;
    sp.max_body = max_body;
    sp.api_key = api_key;
    sp.sparse_prefill = sparse_prefill;
    sp.kv_f16 = kv_f16;
    if (sparsity >= 0 && !profile_path) return cli_fail("serve", "--sparsity needs --profile");
    if ((batch_select || union_max > 0) && !profile_path) return cli_fail("serve", "--batch-select and --batch-union-max need --profile");
    if (!path) path = cli_default_model();
    char *key_buf = NULL;
    if (key_file) {
        size_t len;
        if (!(key_buf = cli_read_file("serve", key_file, 4096, &len))) return 1;
        key_buf[strcspn(key_buf, "\r\n")] = 0;
        if (!key_buf[0]) {
            free(key_buf);
            return cli_fail("serve", "%s: the first line (the key) is empty", key_file);
        }
        sp.api_key = key_buf;
    }
    if (sp.api_key && !sp.api_key[0]) return cli_fail("serve", "--api-key must not be empty");
    char name[256];
    model_alias(path, name, sizeof name);
    sp.model_name = alias ? alias : name;
    sp.log = log_line;
    sp.log_ud = quiet ? (void *)1 : NULL;

    int rc = 0;
    sl_error err;
    sl_model *model = NULL;
    sl_profile *profile = NULL;
    sl_server *server = NULL;
    sl_model_params mp = cli_model_params(profile_path, no_repack, n_threads); /* bundled: shared by every slot's context */
    if (no_bundled) mp.bundled = false; /* the file's layout for dense steps; the profile builds a second copy for sparse ones */
    if (!(model = sl_model_load(path, &mp, &err))) {
        rc = cli_fail_err("serve", &err);
        goto done;
    }
    if ((rc = cli_profile_attach("serve", model, profile_path, sparsity, NULL, false, &profile))) goto done; /* the server attaches it */
    if (profile && sl_profile_set_batch_select(profile, (sl_batch_select)batch_select, union_max, &err) != SL_OK) {
        rc = cli_fail_err("serve", &err);
        goto done;
    }
    sp.profile = profile;
    /* the server's threads inherit a mask without SIGINT/SIGTERM: this thread takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!(server = sl_server_start(model, &sp, &err))) {
        rc = cli_fail_err("serve", &err);
        goto done;
    }
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "skipllama serve: %s: draining (at most %d s; send it again to stop now)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            drain_s);
    sl_server_shutdown(server);
    bool idle = false;
    struct timespec slice = {0, 100 * 1000000L};
    for (int waited = 0; waited < drain_s * 10; waited++) {
        if ((idle = sl_server_wait_idle(server, 0.0))) break;
        if (sigtimedwait(&sigs, NULL, &slice) > 0) break;
    }
    fprintf(stderr, "skipllama serve: %s\n", idle ? "all requests answered; stopping" : "stopping with requests still running");
done:
    sl_server_free(server);
    sl_profile_free(profile);
    sl_model_free(model);
    free(key_buf);
    return rc;
}
