/*
 * cli.c — shared helpers for the subcommands (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "skipllama %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

void cli_json_str(const char *key, const char *s, bool comma) {
    printf("\"%s\": \"", key);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    printf("\"%s", comma ? ", " : "");
}

int cli_fail_err(const char *cmd, const sl_error *err) {
    return cli_fail(cmd, "%s (%s)", err->message[0] ? err->message : "error", sl_status_str(err->code));
}

bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_int(const char *s, int min, int max, int *out) {
    int64_t v;
    if (!cli_parse_i64(s, min, max, &v)) return false;
    *out = (int)v;
    return true;
}

bool cli_parse_float(const char *s, float min, float max, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || isnan(v) || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_ids(const char *s, int32_t **out, int32_t *n) {
    if (!s || !*s) return false;
    size_t count = 1;
    for (const char *p = s; *p; p++) count += *p == ',';
    if (count > (1u << 24)) return false;
    int32_t *ids = malloc(count * sizeof(int32_t));
    if (!ids) return false;
    size_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        while (*p == ' ') p++;
        if (!(*p >= '0' && *p <= '9') && *p != '-') break;
        long long v = strtoll(p, &end, 10);
        if (errno || end == p || v < INT32_MIN || v > INT32_MAX) break;
        ids[k++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) break; /* trailing comma */
            continue;
        }
        if (*p) break;
        *out = ids;
        *n = (int32_t)k;
        return true;
    }
    free(ids);
    return false;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_is(const char *arg, const char *short_name, const char *long_name) {
    return (short_name && strcmp(arg, short_name) == 0) || (long_name && strcmp(arg, long_name) == 0);
}

const char *cli_type_list(void) {
    static char buf[512];
    if (buf[0]) return buf;
    size_t k = (size_t)snprintf(buf, sizeof buf, "one of");
    for (int t = 0; t < 256 && k + 32 < sizeof buf; t++) {
        const char *n = sl_type_name(t);
        if (n) k += (size_t)snprintf(buf + k, sizeof buf - k, "%s %s", k > 6 ? "," : "", n);
    }
    return buf;
}

bool cli_parse_type(const char *value, void *dest) { return sl_type_from_name(value, (sl_type *)dest); }

/* Where the bundled tiny model may be, in the order tried (see cli.h). */
static int default_model_candidates(char out[][4096], int cap) {
    int n = 0;
    const char *env = getenv("SKIPLLAMA_MODEL");
    if (env && *env && n < cap) snprintf(out[n++], sizeof out[0], "%s", env);
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0; /* the binary's folder: PREFIX/bin, or the build folder of a source tree */
            if (n < cap) snprintf(out[n++], sizeof out[0], "%.3000s/../share/skipllama/tiny-silu.gguf", exe);
            if (n < cap) snprintf(out[n++], sizeof out[0], "%.3000s/../tests/data/tiny-silu.gguf", exe);
        }
    }
    if (n < cap) snprintf(out[n++], sizeof out[0], "%s", SKIPLLAMA_DATADIR "/tiny-silu.gguf");
    if (n < cap) snprintf(out[n++], sizeof out[0], "tests/data/tiny-silu.gguf");
    return n;
}

const char *cli_default_model(void) {
    static char found[PATH_MAX];
    const char *env = getenv("SKIPLLAMA_MODEL");
    if (env && *env) return env; /* taken as given: the load says what is wrong with it */
    char cand[5][4096];
    int n = default_model_candidates(cand, 5);
    for (int i = 0; i < n; i++)
        if (access(cand[i], R_OK) == 0) {
            if (!realpath(cand[i], found)) snprintf(found, sizeof found, "%.4000s", cand[i]);
            return found;
        }
    return NULL;
}

sl_model *cli_load_model(const char *cmd, const char *path, const sl_model_params *params, sl_error *err) {
    sl_model *m = sl_model_load(path, params, err);
    if (!m) {
        /* a file with a tokenizer and no weights: say what reads it */
        sl_model_params vp = params ? *params : sl_model_default_params();
        if (!vp.vocab_only && err && err->code != SL_ERR_IO) {
            vp.vocab_only = true;
            sl_error e2;
            sl_model *v = sl_model_load(path, &vp, &e2);
            if (v && sl_model_n_params(v) == 0) {
                size_t k = strlen(err->message);
                snprintf(err->message + k, sizeof err->message - k,
                         "; '%s' holds only a tokenizer (a vocab-only file): `info --vocab-only`, `tokenize` and `detokenize` read it", path);
            }
            sl_model_free(v);
        }
        return NULL;
    }
    const char *w = sl_model_warnings(m);
    while (w && *w) {
        const char *nl = strchr(w, '\n');
        int len = nl ? (int)(nl - w) : (int)strlen(w);
        fprintf(stderr, "skipllama %s: warning: %.*s\n", cmd, len, w);
        w += len + (nl ? 1 : 0);
    }
    return m;
}

void cli_warn_ctx(const char *cmd, const sl_model *model, int n_ctx) {
    const sl_model_config *c = sl_model_get_config(model);
    if (c && c->n_ctx_train > 0 && n_ctx > c->n_ctx_train)
        fprintf(stderr, "skipllama %s: warning: a context of %d tokens is longer than the %d the model was trained with; its output "
                        "usually degrades past that\n",
                cmd, n_ctx, c->n_ctx_train);
}

const char *cli_model_path(const char *cmd, const char *path) {
    if (path) return path;
    const char *d = cli_default_model();
    if (!d) {
        char cand[5][4096];
        int n = default_model_candidates(cand, 5);
        fprintf(stderr, "skipllama %s: no -m MODEL.gguf given, and the bundled tiny model is not in any of:", cmd);
        for (int i = 0; i < n; i++) fprintf(stderr, " %s", cand[i]);
        fprintf(stderr, " (give -m, set SKIPLLAMA_MODEL, or run `make install`)\n");
    }
    return d;
}

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* when the last plain (non-terminal) progress line was printed, by any bar; 0 = none yet */
static double g_last_log_line = 0;

void cli_progress_start(cli_progress *p, const char *label, const char *unit, bool quiet) {
    p->label = label;
    p->unit = unit;
    p->t0 = now_s();
    p->last_draw = 0;
    p->quiet = quiet;
    p->tty = isatty(2);
    p->ended = false;
    if (g_last_log_line == 0) g_last_log_line = p->t0; /* the first plain line comes 10 s after the first bar starts */
}

static void fmt_amount(const cli_progress *p, char *buf, size_t cap, double v) {
    if (p->unit && !strcmp(p->unit, "B")) cli_format_bytes(buf, cap, v);
    else snprintf(buf, cap, "%.0f %s", v, p->unit ? p->unit : "");
}

void cli_progress_update(cli_progress *p, int64_t done, int64_t total) {
    if (p->quiet || total <= 0 || p->ended) return;
    const double now = now_s(), el = now - p->t0;
    const bool last = done >= total;
    if (p->tty) {
        if (!last && now - p->last_draw < 0.1) return;
        p->last_draw = now;
    } else {
        if (now - g_last_log_line < CLI_PROGRESS_LOG_INTERVAL) return;
        g_last_log_line = now;
    }
    const double frac = (double)done / (double)total;
    const double rate = el > 0 ? (double)done / el : 0, eta = rate > 0 ? (double)(total - done) / rate : 0;
    char bar[31], d[32], t[32], r[32];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    fmt_amount(p, d, sizeof d, (double)done);
    fmt_amount(p, t, sizeof t, (double)total);
    fmt_amount(p, r, sizeof r, rate);
    if (p->tty)
        fprintf(stderr, "\r%s [%s] %5.1f%% %s of %s, %s/s, %s %.0fs\033[K%s", p->label, bar, 100 * frac, d, t, r, last ? "took" : "ETA",
                last ? el : eta, last ? "\n" : "");
    else
        fprintf(stderr, "%s: %5.1f%% %s of %s, %s/s, %s %.0fs\n", p->label, 100 * frac, d, t, r, last ? "took" : "ETA", last ? el : eta);
    if (last && p->tty) p->ended = true;
    fflush(stderr);
}

void cli_progress_clear(cli_progress *p) {
    if (p->tty && !p->quiet && !p->ended && p->last_draw > 0) {
        fputs("\r\033[K", stderr);
        p->last_draw = 0; /* redraw at the next update */
    }
}

void cli_progress_cb(void *ud, int64_t done, int64_t total) { cli_progress_update(ud, done, total); }
