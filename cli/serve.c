/*
 * serve.c — `skipllama serve`: the OpenAI-compatible HTTP server (sl_server, src/server/) as a
 * process. It loads the model (and profile), starts the server, prints where it listens and one
 * access line per request on stderr, and waits for SIGINT or SIGTERM: the first one drains
 * (new generations get 503, running ones finish, at most --drain-timeout seconds), a second one
 * stops at once. What it is not: the server itself — everything but options, signals and
 * printing is in the library.
 */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void help(FILE *out) {
    fprintf(out,
            "usage: skipllama serve [-m MODEL.gguf] [options]\n\n"
            "Serves the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,\n"
            "/v1/models, /tokenize, /detokenize, /health, /metrics, /props) with a chat page at /.\n"
            "See docs/server.md.\n"
            "  -m, --model FILE        GGUF model (default: the bundled tiny model)\n"
            "  --host ADDR             address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port N                TCP port; 0 = any free port (default 8080)\n"
            "  -np, --parallel N       slots: requests decoded together (default 4)\n"
            "  -c, --ctx-size N        context tokens of each slot (default: the model's, at most 4096)\n"
            "  -t, --threads N         worker threads (default: online CPUs, at most 16)\n"
            "  -b, --batch-size N      prompt tokens a newcomer evaluates per step (default 64)\n"
            "  --queue N               requests that may wait for a slot before 503 (default 4 x slots)\n"
            "  --timeout SEC           idle connection timeout (default 600)\n"
            "  --max-body BYTES        largest request body; larger ones get 413 (default 1048576)\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' (all but /health and the page)\n"
            "  --api-key-file FILE     the same, the key read from the file's first line\n"
            "  --alias NAME            the model's id in /v1/models (default: the file name)\n"
            "  --profile FILE          sparsity profile: skip MLP neurons while decoding\n"
            "  --sparsity S            override the profile's target sparsity (0 <= S < 1)\n"
            "  --sparse-prefill        also skip neurons in prompt chunks\n"
            "  --kv-f16                store the KV caches as f16\n"
            "  --no-repack             compute Q4_0 weights from the file layout\n"
            "  --drain-timeout SEC     on SIGINT/SIGTERM, wait this long for running requests (default 30)\n"
            "  -q, --quiet             no access log\n");
}

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
    const char *path = NULL, *profile_path = NULL, *key_file = NULL, *alias = NULL;
    float sparsity = -1.0f;
    int drain_s = 30;
    bool quiet = false, no_repack = false;
    sl_server_params sp = sl_server_default_params();
    sp.port = 8080;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int64_t x;
        if (cli_is(a, "-h", "--help")) {
            help(stdout);
            return 0;
        }
#define VALUE() \
    if (!(v = cli_value("serve", argc, argv, &i))) return 1
#define INT_OPT(field, lo, hi, what)                                                        \
    do {                                                                                    \
        VALUE();                                                                            \
        if (!cli_parse_i64(v, lo, hi, &x)) return cli_fail("serve", "%s wants %s, not '%s'", a, what, v); \
        field = (int32_t)x;                                                                 \
    } while (0)
        if (cli_is(a, "-m", "--model")) {
            VALUE();
            path = v;
        } else if (cli_is(a, NULL, "--host")) {
            VALUE();
            sp.host = v;
        } else if (cli_is(a, NULL, "--port")) {
            INT_OPT(sp.port, 0, 65535, "0..65535");
        } else if (cli_is(a, "-np", "--parallel")) {
            INT_OPT(sp.n_parallel, 1, 512, "1..512");
        } else if (cli_is(a, "-c", "--ctx-size")) {
            INT_OPT(sp.n_ctx, 2, 1 << 22, "a token count >= 2");
        } else if (cli_is(a, "-t", "--threads")) {
            INT_OPT(sp.n_threads, 1, 512, "1..512");
        } else if (cli_is(a, "-b", "--batch-size")) {
            INT_OPT(sp.n_batch, 1, 65536, "1..65536");
        } else if (cli_is(a, NULL, "--queue")) {
            INT_OPT(sp.queue_size, 1, 1 << 20, "a count >= 1");
        } else if (cli_is(a, NULL, "--timeout")) {
            INT_OPT(sp.timeout_s, 1, 1 << 30, "seconds >= 1");
        } else if (cli_is(a, NULL, "--drain-timeout")) {
            INT_OPT(drain_s, 0, 1 << 30, "seconds >= 0");
        } else if (cli_is(a, NULL, "--max-body")) {
            VALUE();
            if (!cli_parse_i64(v, 1, (int64_t)1 << 40, &x)) return cli_fail("serve", "--max-body wants a byte count, not '%s'", v);
            sp.max_body = x;
        } else if (cli_is(a, NULL, "--api-key")) {
            VALUE();
            sp.api_key = v;
        } else if (cli_is(a, NULL, "--api-key-file")) {
            VALUE();
            key_file = v;
        } else if (cli_is(a, NULL, "--alias")) {
            VALUE();
            alias = v;
        } else if (cli_is(a, NULL, "--profile")) {
            VALUE();
            profile_path = v;
        } else if (cli_is(a, NULL, "--sparsity")) {
            VALUE();
            if (!cli_parse_float(v, 0.0f, 0.999f, &sparsity)) return cli_fail("serve", "bad --sparsity (expected 0 <= S < 1)");
        } else if (cli_is(a, NULL, "--sparse-prefill")) {
            sp.sparse_prefill = true;
        } else if (cli_is(a, NULL, "--kv-f16")) {
            sp.kv_f16 = true;
        } else if (cli_is(a, NULL, "--no-repack")) {
            no_repack = true;
        } else if (cli_is(a, "-q", "--quiet")) {
            quiet = true;
        } else {
            help(stderr);
            return cli_fail("serve", "unknown option '%s'", a);
        }
#undef INT_OPT
#undef VALUE
    }
    if (sparsity >= 0 && !profile_path) return cli_fail("serve", "--sparsity needs --profile");
    if (!path) path = cli_default_model();
    if (!sp.n_threads) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        sp.n_threads = cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
    }
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
    sl_model_params mp = sl_model_default_params();
    mp.no_repack = no_repack;
    if (!(model = sl_model_load(path, &mp, &err))) {
        rc = cli_fail_err("serve", &err);
        goto done;
    }
    if (profile_path && (!(profile = sl_profile_load(profile_path, model, &err)) ||
                         (sparsity >= 0 && sl_profile_set_sparsity(profile, sparsity, &err) != SL_OK))) {
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
