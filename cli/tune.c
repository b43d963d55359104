/*
 * tune.c — `skipllama tune -m MODEL -f CALIB.txt [--eval EVAL.txt] (--sparsity S | --max-loss P) -o
 * PROFILE`: calibrates and trains every skip method, measures each at a list of sparsities on
 * held-out text (perplexity, MLP sparsity, share of MLP weight bytes read, modelled and measured
 * decode speed against dense), prints the table, writes an SVG plot of perplexity loss against
 * speed-up (one curve per method) and the profile of the method with the least loss at S (or the
 * most skipping within the loss).
 *
 * "Sparsity S" is a byte budget: every method at S reads at most the MLP weight bytes CATS reads
 * at sparsity S (all gate rows, (1 - S) of the up and down rows); a predictor's own bytes count.
 * The methods: cats, two-stage (gate dense, candidates by |act(g)|, down rows by |act(g) u|),
 * pred (a contribution-trained predictor's top neurons), two-stage-pred (its candidates, then
 * down rows by |act(g) u|), each also with per-layer allocation (+alloc). Without --eval, every
 * 10th window of CALIB (spread over it) is held out for evaluation and never calibrated on.
 * What it is not: the methods themselves (the library: sl_calibrate, sl_calibrate_split,
 * sl_train_predictors, sl_allocate).
 */
#include "cli.h"
#include "opts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_S 16

typedef struct method {
    const char *name;  /* as in --methods and the table */
    sl_skip_rule rule; /* CATS, TWO_STAGE or TWO_STAGE_PRED */
    float max_delta;   /* split search: 0 = plain top-k */
    float gate_ratio;  /* split search: > 1 also tries a gate stage (three-stage) */
    bool alloc;        /* per-layer allocation */
    bool on;           /* selected */
    sl_profile *prof;  /* built */
} method;

typedef struct point {
    float s;           /* sparsity (byte budget) */
    double ppl, loss;  /* perplexity, relative increase over dense */
    double sparsity;   /* achieved MLP sparsity (neurons whose down row is skipped) */
    double bytes;      /* achieved share of MLP weight bytes read */
    double model_x;    /* modelled decode speed-up */
    double meas_x;     /* measured decode speed-up (NAN: not measured) */
    bool done;
} point;

/* Overall progress with ETA: phases map their own (done, total) onto a share of the work. */
typedef struct tune_progress {
    cli_progress bar; /* the one bar */
    double total;     /* work units in all */
    double base;      /* units done before the current phase */
    double span;      /* units of the current phase */
    char label[96];   /* current phase */
} tune_progress;

static void tp_phase(tune_progress *t, const char *label, double span) {
    snprintf(t->label, sizeof(t->label), "%s", label);
    t->span = span;
}
static void tp_cb(void *ud, int64_t done, int64_t total) {
    tune_progress *t = ud;
    const double frac = total > 0 ? (double)done / (double)total : 1.0;
    cli_progress_update(&t->bar, (int64_t)(t->base + frac * t->span), (int64_t)t->total);
}
static void tp_train_cb(void *ud, sl_train_phase ph, int32_t layer, int64_t done, int64_t total) {
    (void)ph, (void)layer;
    tp_cb(ud, done, total);
}
static void tp_end(tune_progress *t) {
    t->base += t->span;
    cli_progress_update(&t->bar, (int64_t)t->base, (int64_t)t->total);
}

/* A copy of a profile (through a temp file: profiles have no in-memory copy). */
static sl_profile *clone_profile(const sl_profile *p, const sl_model *m, sl_error *err) {
    char path[4096];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/skipllama-tune-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err->message, sizeof(err->message), "cannot create a temp file in %s", dir && *dir ? dir : "/tmp");
        err->code = SL_ERR_IO;
        return NULL;
    }
    close(fd);
    sl_profile *q = sl_profile_save(p, path, err) == SL_OK ? sl_profile_load(path, m, err) : NULL;
    remove(path);
    return q;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds to decode n tokens one at a time (teacher-forced) from an empty cache. */
static double decode_time(sl_context *ctx, const int32_t *ids, int n) {
    sl_error err;
    sl_context_reset(ctx);
    const double t0 = now_s();
    for (int i = 0; i < n; i++) sl_eval(ctx, ids + i, 1, NULL, false, &err);
    return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Perplexity of the eval tokens under the profile (NULL: dense) and, with one, the achieved MLP
 * sparsity, bytes share and MLP bytes per token of the dense MLP. */
static sl_status evaluate(const sl_model *m, const sl_profile *p, const int32_t *ids, int64_t n, int window, int threads, point *pt,
                          double *mlp_bytes_tok, tune_progress *tp, sl_error *err) {
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = threads;
    cp.n_batch = window < 256 ? window : 256;
    sl_context *ctx = sl_context_init(m, &cp, err);
    if (!ctx) return err->code;
    sl_status st = p ? sl_context_set_profile(ctx, p, true, err) : SL_OK;
    sl_ppl_result r;
    if (!st) st = sl_perplexity(ctx, ids, n, window, tp ? tp_cb : NULL, tp, &r, err);
    if (!st) {
        pt->ppl = r.ppl;
        double act = 0, neu = 0, by = 0, byd = 0, tok = 0;
        for (int l = 0; l < sl_model_get_config(m)->n_layer; l++) {
            sl_layer_stats s;
            sl_context_get_layer_stats(ctx, l, &s, err);
            act += (double)s.n_active, neu += (double)s.n_neurons, by += (double)s.mlp_bytes, byd += (double)s.mlp_bytes_dense;
            tok = (double)s.n_tokens;
        }
        pt->sparsity = neu > 0 ? 1.0 - act / neu : 0.0;
        pt->bytes = byd > 0 ? by / byd : 1.0;
        if (mlp_bytes_tok && tok > 0) *mlp_bytes_tok = byd / tok;
    }
    sl_context_free(ctx);
    return st;
}

/* --bench-lock: the speed runs hold an exclusive flock on a shared file (so that timings on a shared
 * machine never overlap) and, when tune runs niced, at the normal priority where permitted; the
 * load average before and after them is kept for the table. */
typedef struct bench_lock {
    const char *path; /* NULL: no lock */
    int fd;
    int nice_was;
    double load0, load1; /* 1-minute load average at the first lock and the last unlock (NAN: none) */
} bench_lock;

static void bench_lock_take(bench_lock *b) {
    if (!b->path) return;
    b->fd = open(b->path, O_RDWR | O_CREAT, 0666);
    if (b->fd >= 0) flock(b->fd, LOCK_EX);
    errno = 0;
    b->nice_was = getpriority(PRIO_PROCESS, 0);
    if (b->nice_was > 0) (void)setpriority(PRIO_PROCESS, 0, 0); /* may be refused: then it times niced */
    double la;
    if (isnan(b->load0) && getloadavg(&la, 1) == 1) b->load0 = la;
}

static void bench_lock_give(bench_lock *b) {
    if (!b->path) return;
    double la;
    if (getloadavg(&la, 1) == 1) b->load1 = la;
    if (b->nice_was > 0) (void)setpriority(PRIO_PROCESS, 0, b->nice_was);
    if (b->fd >= 0) close(b->fd); /* releases the lock */
    b->fd = -1;
}

/* Decode speed with the profile against dense: rounds alternate dense and sparse; the median of
 * the per-round ratios. */
static double measure_speed(const sl_model *m, const sl_profile *p, const int32_t *ids, int n, int rounds, int threads, sl_error *err) {
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = n + 1;
    cp.n_threads = threads;
    sl_context *dense = sl_context_init(m, &cp, err), *sparse = sl_context_init(m, &cp, err);
    double ratio = NAN;
    if (dense && sparse && sl_context_set_profile(sparse, p, false, err) == SL_OK) {
        double r[32];
        if (rounds > 32) rounds = 32;
        decode_time(dense, ids, n < 4 ? n : 4); /* warm-up */
        decode_time(sparse, ids, n < 4 ? n : 4);
        for (int k = 0; k < rounds; k++) {
            const double td = decode_time(dense, ids, n), ts = decode_time(sparse, ids, n);
            r[k] = ts > 0 ? td / ts : NAN;
        }
        qsort(r, (size_t)rounds, sizeof(double), cmp_double);
        ratio = r[rounds / 2];
    }
    sl_context_free(dense);
    sl_context_free(sparse);
    return ratio;
}

/* The plot: loss (%) against modelled speed-up (measured when given), one polyline per method. */
static bool write_svg(const char *path, const method *ms, int n_m, point pts[][MAX_S], int n_s, bool measured) {
    sl_output *out = sl_output_open(path, NULL); /* a temporary beside it, renamed into place */
    if (!out) return false;
    FILE *f = sl_output_stream(out);
    double xmax = 1.0, ymax = 0.5;
    for (int i = 0; i < n_m; i++)
        for (int k = 0; k < n_s; k++) {
            if (!ms[i].on || !pts[i][k].done) continue;
            const double x = measured && isfinite(pts[i][k].meas_x) ? pts[i][k].meas_x : pts[i][k].model_x;
            if (x > xmax) xmax = x;
            if (100 * pts[i][k].loss > ymax) ymax = 100 * pts[i][k].loss;
        }
    xmax = ceil(xmax * 4) / 4 + 0.25;
    ymax = ymax * 1.1;
    const double W = 720, H = 480, L = 70, R = 200, T = 30, B = 60, pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - 1.0) / (xmax - 1.0) * pw)
#define PY(y) (T + ph - (y) / ymax * ph)
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T + ph, L + pw, T + ph);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T, L, T + ph);
    for (int k = 0; k <= 5; k++) {
        const double y = ymax * k / 5, x = 1.0 + (xmax - 1.0) * k / 5;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f%%</text>\n", L - 6, PY(y) + 4, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.2fx</text>\n", PX(x), T + ph + 18, x);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">decode speed-up over dense (%s)</text>\n", L + pw / 2, H - 15,
            measured ? "measured" : "modelled from the bytes read");
    fprintf(f, "<text x=\"15\" y=\"%.1f\" transform=\"rotate(-90 15 %.1f)\" text-anchor=\"middle\">perplexity increase</text>\n", T + ph / 2,
            T + ph / 2);
    static const char *const colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    int c = 0;
    for (int i = 0; i < n_m; i++) {
        if (!ms[i].on) continue;
        const char *col = colours[c % 8];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col, ms[i].alloc ? " stroke-dasharray=\"6 3\"" : "");
        for (int k = 0; k < n_s; k++) {
            if (!pts[i][k].done) continue;
            const double x = measured && isfinite(pts[i][k].meas_x) ? pts[i][k].meas_x : pts[i][k].model_x;
            fprintf(f, "%.1f,%.1f ", PX(x), PY(100 * pts[i][k].loss));
        }
        fprintf(f, "\"/>\n");
        for (int k = 0; k < n_s; k++) {
            if (!pts[i][k].done) continue;
            const double x = measured && isfinite(pts[i][k].meas_x) ? pts[i][k].meas_x : pts[i][k].model_x;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s S=%.2f: %+.2f%%</title></circle>\n", PX(x),
                    PY(100 * pts[i][k].loss), col, ms[i].name, pts[i][k].s, 100 * pts[i][k].loss);
        }
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", L + pw + 15, T + 10 + 18.0 * c,
                L + pw + 40, T + 10 + 18.0 * c, col, ms[i].alloc ? " stroke-dasharray=\"6 3\"" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", L + pw + 46, T + 14 + 18.0 * c, ms[i].name);
        c++;
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    return sl_output_commit(out, NULL) == SL_OK;
}

int cmd_tune(int argc, char **argv) {
    const char *cmd = "tune";
    bench_lock blk = {NULL, -1, 0, NAN, NAN};
    const char *pred_path = NULL;
    const char *model_path = NULL, *calib_path = NULL, *eval_path = NULL, *out_path = NULL, *plot_path = NULL, *methods_arg = NULL;
    float sparsity = -1.0f, max_loss = -1.0f, sps[MAX_S] = {0.3f, 0.5f, 0.7f, 0.9f};
    int n_sps = 4, threads = cli_default_threads(), ctx_len = 256, rank = 0, bench_tokens = 32, bench_rounds = 3;
    int64_t calib_tokens = 0, eval_tokens = 32768, alloc_tokens = 4096, train_tokens = 100000, split_tokens = 0;
    bool quiet = false, json = false, no_speed = false, random_pred = false, alloc_exact = false;
    int epochs = 0, loss_kind = 1;
    float lr = 0.0f, label_frac = 0.0f;
    bool sparsity_seen = false;
    cli_opt opts[] = {
        CLI_OPT_MODEL(&model_path, "GGUF model"),
        CLI_OPT_FILE(&calib_path, "calibration / training text"),
        {.names = "--eval", .type = CLI_STR, .dest = &eval_path, .meta = "FILE",
         .help = "held-out text from CALIB's domain to measure on", .def = "every 10th window of CALIB, held out"},
        CLI_OPT_OUTPUT(&out_path, "profile to write (the chosen method)"),
        {.names = "--sparsity", .type = CLI_FLOAT, .dest = &sparsity, .lo = 0, .hi = 1, .flags = CLI_HI_OPEN, .seen = &sparsity_seen,
         .meta = "S", .help = "write the method with the least loss at (average) sparsity S", .def = ""},
        {.names = "--max-loss", .type = CLI_FLOAT, .dest = &max_loss, .lo = 0, .hi = 1000, .meta = "P",
         .help = "or: the most skipping whose perplexity increase is at most P percent", .def = ""},
        {.names = "--sparsities", .type = CLI_FLOATS, .dest = sps, .count = &n_sps, .max_count = MAX_S, .lo = 0, .hi = 1, .flags = CLI_HI_OPEN,
         .meta = "S,S...", .help = "the table's sparsities (byte budgets: the MLP bytes CATS reads at S)", .def = "0.3,0.5,0.7,0.9"},
        {.names = "--methods", .type = CLI_STR, .dest = &methods_arg, .meta = "LIST",
         .help = "comma-separated: cats, two-stage, pred, two-stage-pred, three-stage, each also NAME+alloc", .def = "all ten"},
        {.names = "--plot", .type = CLI_STR, .dest = &plot_path, .meta = "FILE", .help = "SVG plot of loss against speed-up",
         .def = "OUTPUT with .svg"},
        {.names = "--calib-tokens", .type = CLI_I64, .dest = &calib_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "use at most N calibration tokens (0 = all)"},
        {.names = "--eval-tokens", .type = CLI_I64, .dest = &eval_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "score at most N held-out tokens (0 = all)"},
        {.names = "--alloc-tokens", .type = CLI_I64, .dest = &alloc_tokens, .lo = 2, .hi = 1e18, .meta = "N",
         .help = "tokens per loss measurement of the allocation"},
        {.names = "--alloc-exact", .type = CLI_FLAG, .dest = &alloc_exact,
         .help = "per level, the allocation of least summed cost on the curves (dynamic programming) instead of the greedy"},
        {.names = "--split-tokens", .type = CLI_I64, .dest = &split_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "sample tokens for choosing the two-stage fractions; 0 = 1024"},
        {.names = "--train-tokens", .type = CLI_I64, .dest = &train_tokens, .lo = 0, .hi = 1e18, .meta = "N",
         .help = "tokens the predictors are trained on (0 = all of CALIB)"},
        {.names = "--rank", .type = CLI_INT, .dest = &rank, .lo = 0, .hi = 1 << 20, .meta = "R", .help = "predictor rank",
         .def = "4% of n_ff, a multiple of 32"},
        {.names = "--epochs", .type = CLI_INT, .dest = &epochs, .lo = 0, .hi = 100000, .meta = "E",
         .help = "predictor training passes (0 = the library's default)"},
        {.names = "--lr", .type = CLI_FLOAT, .dest = &lr, .lo = 0, .hi = 10, .meta = "LR",
         .help = "predictor peak learning rate (0 = the library's default)"},
        {.names = "--loss", .type = CLI_CHOICE, .dest = &loss_kind, .choices = "bce|listnet", .meta = "L",
         .help = "predictor loss: weighted BCE on the top --label-frac by contribution, or ListNet", .def = "listnet"},
        {.names = "--label-frac", .type = CLI_FLOAT, .dest = &label_frac, .lo = 0, .hi = 1, .meta = "F",
         .help = "BCE: fraction of a token's neurons labelled positive (0 = the library's default)"},
        {.names = "--predictors", .type = CLI_STR, .dest = &pred_path, .meta = "FILE",
         .help = "take the predictors from this profile (e.g. an earlier tune's output) instead of training them"},
        {.names = "--random-predictors", .type = CLI_FLAG, .dest = &random_pred,
         .help = "random predictors of the same rank instead of trained ones (speed proxy for random-weight models)"},
        {.names = "--bench-tokens", .type = CLI_INT, .dest = &bench_tokens, .lo = 1, .hi = 4096, .meta = "N",
         .help = "tokens decoded per speed measurement"},
        {.names = "--bench-rounds", .type = CLI_INT, .dest = &bench_rounds, .lo = 1, .hi = 32, .meta = "R",
         .help = "alternating dense/sparse rounds per speed measurement (median ratio)"},
        {.names = "--bench-lock", .type = CLI_STR, .dest = &blk.path, .meta = "FILE",
         .help = "hold an exclusive flock on FILE during each speed measurement (at normal priority when permitted)"},
        {.names = "--no-speed", .type = CLI_FLAG, .dest = &no_speed, .help = "skip the measured speed (modelled only)"},
        CLI_OPT_CTX(&ctx_len, "window length in tokens", NULL),
        CLI_OPT_THREADS(&threads),
        {.names = "--json", .type = CLI_FLAG, .dest = &json, .help = "the table as JSON on stdout"},
        CLI_OPT_QUIET(&quiet, "no progress bar"),
        CLI_OPT_END,
    };
    const cli_cmd spec = {.name = "tune", .usage = "[-m MODEL.gguf] -f CALIB.txt (--sparsity S | --max-loss P) -o PROFILE.gguf [options]",
                          .about = "Calibrates and trains every skip method, measures each on held-out text at the --sparsities and\n"
                                   "writes the best profile (docs/two-stage.md). Sparsity S is a byte budget: each method reads at most\n"
                                   "the MLP weight bytes CATS reads at S (all gate rows and (1 - S) of up and down; predictors count).",
                          .opts = opts};
    int prc;
    if (!cli_parse(&spec, argc, argv, NULL, &prc)) return prc;
    if (!calib_path || !out_path) return cli_fail(cmd, "-f CALIB and -o PROFILE are required");
    if (sparsity_seen == (max_loss >= 0)) return cli_fail(cmd, "give one of --sparsity S and --max-loss P");
    if (ctx_len < 2) return cli_fail(cmd, "-c must be at least 2");
    if (!(model_path = cli_model_path(cmd, model_path))) return 1;
    if (!cli_output_check(cmd, out_path) || (plot_path && !cli_output_check(cmd, plot_path))) return 1;
    method ms[10] = {
        {"cats", SL_RULE_CATS, 0, 0, false, true, NULL},           {"cats+alloc", SL_RULE_CATS, 0, 0, true, true, NULL},
        {"two-stage", SL_RULE_TWO_STAGE, 0.5f, 0, false, true, NULL}, {"two-stage+alloc", SL_RULE_TWO_STAGE, 0.5f, 0, true, true, NULL},
        {"pred", SL_RULE_TWO_STAGE_PRED, 0, 0, false, true, NULL}, {"pred+alloc", SL_RULE_TWO_STAGE_PRED, 0, 0, true, true, NULL},
        {"two-stage-pred", SL_RULE_TWO_STAGE_PRED, 0.5f, 0, false, true, NULL},
        {"two-stage-pred+alloc", SL_RULE_TWO_STAGE_PRED, 0.5f, 0, true, true, NULL},
        {"three-stage", SL_RULE_TWO_STAGE_PRED, 0.5f, 2.0f, false, true, NULL},
        {"three-stage+alloc", SL_RULE_TWO_STAGE_PRED, 0.5f, 2.0f, true, true, NULL},
    };
    const int n_m = 10;
    if (methods_arg) {
        for (int i = 0; i < n_m; i++) ms[i].on = false;
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", methods_arg);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            int hit = -1;
            for (int i = 0; i < n_m; i++)
                if (!strcmp(t, ms[i].name)) hit = i;
            if (hit < 0) return cli_fail(cmd, "unknown method '%s' (cats, two-stage, pred, two-stage-pred, three-stage, each also NAME+alloc)", t);
            ms[hit].on = true;
        }
    }
    if (sparsity_seen) { /* S itself is always measured */
        bool have = false;
        for (int k = 0; k < n_sps; k++) have = have || fabsf(sps[k] - sparsity) < 1e-6f;
        if (!have && n_sps < MAX_S) sps[n_sps++] = sparsity;
    }
    bool need_pred = false;
    for (int i = 0; i < n_m; i++) need_pred = need_pred || (ms[i].on && ms[i].rule == SL_RULE_TWO_STAGE_PRED);

    int rc = 1;
    sl_error err;
    sl_model *model = NULL;
    sl_profile *cats = NULL, *predp = NULL;
    int32_t *ids = NULL, *eids = NULL, n_ids = 0, n_eids = 0;
    int32_t *cal = NULL, *ev = NULL;
    int64_t n_cal = 0, n_ev = 0;
    char *text = NULL;
    size_t len = 0;
    static point pts[10][MAX_S];
    memset(pts, 0, sizeof(pts));
    if (!(text = cli_read_file(cmd, calib_path, (size_t)1 << 30, &len))) goto done;
    if (!(model = cli_load_model(cmd, model_path, NULL, &err))) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    const sl_model_config *c = sl_model_get_config(model);
    if (!sl_model_get_vocab(model)) {
        cli_fail(cmd, "'%s' has no tokenizer", model_path);
        goto done;
    }
    if (sl_tokenize(sl_model_get_vocab(model), text, len, false, false, &ids, &n_ids, &err) != SL_OK) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    free(text);
    text = NULL;
    cal = malloc((size_t)n_ids * sizeof(int32_t));
    ev = malloc((size_t)n_ids * sizeof(int32_t));
    if (!cal || !ev) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    if (eval_path) {
        memcpy(cal, ids, (size_t)n_ids * sizeof(int32_t));
        n_cal = n_ids;
        if (!(text = cli_read_file(cmd, eval_path, (size_t)1 << 30, &len))) goto done;
        if (sl_tokenize(sl_model_get_vocab(model), text, len, false, false, &eids, &n_eids, &err) != SL_OK) {
            cli_fail_err(cmd, &err);
            goto done;
        }
        free(ev);
        if (!(ev = malloc((size_t)(n_eids > 0 ? n_eids : 1) * sizeof(int32_t)))) {
            cli_fail(cmd, "out of memory");
            goto done;
        }
        memcpy(ev, eids, (size_t)n_eids * sizeof(int32_t));
        n_ev = n_eids;
    } else { /* window w is held out when w % 10 == 9: spread over the whole text */
        for (int64_t w = 0; w * ctx_len < n_ids; w++) {
            const int64_t s0 = w * ctx_len, n = n_ids - s0 < ctx_len ? n_ids - s0 : ctx_len;
            if (w % 10 == 9) memcpy(ev + n_ev, ids + s0, (size_t)n * sizeof(int32_t)), n_ev += n;
            else memcpy(cal + n_cal, ids + s0, (size_t)n * sizeof(int32_t)), n_cal += n;
        }
    }
    if (calib_tokens > 0 && calib_tokens < n_cal) n_cal = calib_tokens;
    if (eval_tokens > 0 && eval_tokens < n_ev) n_ev = eval_tokens;
    if (n_cal < 2 * ctx_len || n_ev < 2) {
        cli_fail(cmd, "too little text: %lld calibration and %lld evaluation tokens (need 2 windows of %d to calibrate)", (long long)n_cal,
                 (long long)n_ev, ctx_len);
        goto done;
    }
    /* work units (token evaluations, roughly): calibration, splits, predictor training, allocation,
     * the evaluations and the speed runs */
    int n_on = 0, n_split = 0, n_alloc = 0;
    for (int i = 0; i < n_m; i++)
        if (ms[i].on) n_on++, n_split += ms[i].rule != SL_RULE_CATS, n_alloc += ms[i].alloc;
    const double u_cal = (double)n_cal, u_split = 20.0 * (split_tokens > 0 ? split_tokens : 1024),
                 u_train = need_pred && !random_pred ? 4.0 * (double)(train_tokens > 0 && train_tokens < n_cal ? train_tokens : n_cal) : 0,
                 u_alloc = 3.0 * c->n_layer * 19.0 * (double)(alloc_tokens < n_cal ? alloc_tokens : n_cal), u_eval = 3.0 * (double)n_ev,
                 u_speed = no_speed ? 0 : 20.0 * bench_tokens * bench_rounds;
    tune_progress tp;
    memset(&tp, 0, sizeof(tp));
    tp.total = u_cal + u_split * n_split + u_train + u_alloc * n_alloc + u_eval * (1 + n_on * n_sps) + u_speed * n_on * n_sps;
    cli_progress_start(&tp.bar, "tune", "unit", quiet || json);
    /* dense reference */
    point dense;
    double mlp_tok = 0.0;
    tp_phase(&tp, "dense", u_eval);
    if (evaluate(model, NULL, ev, n_ev, ctx_len, threads, &dense, NULL, &tp, &err)) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    tp_end(&tp);
    /* CATS statistics (every method's base) */
    sl_calibrate_params cp = sl_calibrate_default_params();
    cp.n_ctx = ctx_len;
    cp.n_threads = threads;
    cp.progress = tp_cb;
    cp.progress_ud = &tp;
    tp_phase(&tp, "calibrate", u_cal);
    if (sl_calibrate(model, cal, n_cal, &cp, &cats, &err)) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    tp_end(&tp);
    if (need_pred) { /* the contribution-trained predictors (or random ones of the same rank) */
        if (!(predp = clone_profile(cats, model, &err))) {
            cli_fail_err(cmd, &err);
            goto done;
        }
        sl_train_params trp = sl_train_default_params();
        trp.rank = rank;
        trp.type = SL_TYPE_Q8_0;
        trp.target = SL_TARGET_CONTRIB;
        trp.loss = loss_kind ? SL_LOSS_LISTNET : SL_LOSS_BCE;
        if (label_frac > 0) trp.label_frac = label_frac;
        trp.max_tokens = train_tokens;
        if (epochs > 0) trp.epochs = epochs;
        if (lr > 0) trp.lr = lr;
        trp.n_ctx = ctx_len;
        trp.n_threads = threads;
        const int32_t r = sl_train_rank(&trp, c->n_embd, c->n_ff);
        if (pred_path) { /* its predictors (and CATS statistics); its schedules are dropped */
            sl_profile_free(predp);
            if (!(predp = sl_profile_load(pred_path, model, &err)) || sl_profile_set_levels(predp, NULL, 0, &err)) {
                cli_fail_err(cmd, &err);
                goto done;
            }
            for (int l = 0; l < c->n_layer; l++) {
                sl_profile_layer info;
                if (sl_profile_get_layer(predp, l, &info, &err) == SL_OK && info.rank <= 0) {
                    cli_fail(cmd, "%s: layer %d has no predictor", pred_path, l);
                    goto done;
                }
            }
        } else if (random_pred) {
            float *A = malloc((size_t)r * c->n_embd * sizeof(float)), *Bm = malloc((size_t)c->n_ff * r * sizeof(float));
            uint64_t s = 12345;
            for (int l = 0; l < c->n_layer && A && Bm; l++) {
                for (size_t k = 0; k < (size_t)r * c->n_embd; k++) s = s * 6364136223846793005ull + 1442695040888963407ull, A[k] = (float)((int64_t)(s >> 11) % 2001 - 1000) / 1000.0f;
                for (size_t k = 0; k < (size_t)c->n_ff * r; k++) s = s * 6364136223846793005ull + 1442695040888963407ull, Bm[k] = (float)((int64_t)(s >> 11) % 2001 - 1000) / 1000.0f;
                sl_profile_layer info = {.rule = SL_RULE_PRED_TOPK, .topk = c->n_ff / 2, .target_sparsity = 0.5f};
                if (sl_profile_set_predictor(predp, l, r, trp.type, A, Bm, &err) || sl_profile_set_layer(predp, l, &info, &err)) break;
            }
            free(A);
            free(Bm);
            if (err.code) {
                cli_fail_err(cmd, &err);
                goto done;
            }
        } else {
            trp.progress = tp_train_cb;
            trp.progress_ud = &tp;
            tp_phase(&tp, "train predictors", u_train);
            sl_train_report rep;
            memset(&rep, 0, sizeof(rep));
            if (sl_train_predictors(model, cal, n_cal, &trp, predp, &rep, &err)) {
                cli_fail_err(cmd, &err);
                goto done;
            }
            tp_end(&tp);
        }
    }
    /* each method's profile: its split (two-stage, pred) and allocation */
    for (int i = 0; i < n_m; i++) {
        if (!ms[i].on) continue;
        if (!(ms[i].prof = clone_profile(ms[i].rule == SL_RULE_TWO_STAGE_PRED ? predp : cats, model, &err))) {
            cli_fail_err(cmd, &err);
            goto done;
        }
        if (ms[i].rule != SL_RULE_CATS) {
            sl_split_params spp = sl_split_default_params();
            spp.rule = ms[i].rule;
            spp.max_delta = ms[i].max_delta;
            spp.max_gate_ratio = ms[i].gate_ratio;
            spp.max_tokens = split_tokens;
            spp.n_ctx = ctx_len;
            spp.n_threads = threads;
            spp.progress = tp_cb;
            spp.progress_ud = &tp;
            tp_phase(&tp, ms[i].name, u_split);
            if (sl_calibrate_split(model, cal, n_cal, &spp, ms[i].prof, &err)) {
                cli_fail_err(cmd, &err);
                goto done;
            }
            tp_end(&tp);
        }
        sl_profile_set_method(ms[i].prof, ms[i].name, NULL);
        if (ms[i].alloc) {
            sl_alloc_params ap = sl_alloc_default_params();
            ap.max_tokens = alloc_tokens;
            ap.exact = alloc_exact;
            ap.n_ctx = ctx_len;
            ap.n_threads = threads;
            ap.progress = tp_cb;
            ap.progress_ud = &tp;
            tp_phase(&tp, ms[i].name, u_alloc);
            if (sl_allocate(model, cal, n_cal, &ap, ms[i].prof, NULL, &err)) {
                cli_fail_err(cmd, &err);
                goto done;
            }
            tp_end(&tp);
        }
    }
    /* measure */
    const double decode_bytes = (double)sl_model_decode_bytes(model);
    for (int i = 0; i < n_m; i++) {
        if (!ms[i].on) continue;
        for (int k = 0; k < n_sps; k++) {
            point *pt = &pts[i][k];
            pt->s = sps[k];
            tp_phase(&tp, ms[i].name, u_eval);
            if (sl_profile_set_sparsity(ms[i].prof, sps[k], &err) ||
                evaluate(model, ms[i].prof, ev, n_ev, ctx_len, threads, pt, &mlp_tok, &tp, &err)) {
                cli_fail_err(cmd, &err);
                goto done;
            }
            tp_end(&tp);
            pt->loss = pt->ppl / dense.ppl - 1.0;
            /* decode reads every weight once per token: the MLP share changes by its bytes fraction */
            pt->model_x = decode_bytes / (decode_bytes - mlp_tok * (1.0 - pt->bytes));
            pt->meas_x = NAN;
            if (!no_speed) {
                tp_phase(&tp, ms[i].name, u_speed);
                bench_lock_take(&blk);
                pt->meas_x = measure_speed(model, ms[i].prof, ev, bench_tokens < n_ev ? bench_tokens : (int)n_ev, bench_rounds, threads, &err);
                bench_lock_give(&blk);
                tp_end(&tp);
            }
            pt->done = true;
        }
    }
    /* choose */
    /* with --sparsity: the least loss at S; with --max-loss: the fewest bytes within the loss */
    int best_i = -1;
    float best_s = 0;
    double best_loss = INFINITY, best_bytes = INFINITY;
    for (int i = 0; i < n_m; i++)
        for (int k = 0; k < n_sps; k++) {
            const point *pt = &pts[i][k];
            if (!ms[i].on || !pt->done) continue;
            if (sparsity_seen ? fabsf(pt->s - sparsity) < 1e-6f && pt->loss < best_loss
                              : 100 * pt->loss <= max_loss && (pt->bytes < best_bytes - 1e-9 || (fabs(pt->bytes - best_bytes) <= 1e-9 && pt->loss < best_loss))) {
                best_i = i, best_s = pt->s, best_loss = pt->loss, best_bytes = pt->bytes;
            }
        }
    if (json) {
        printf("{\"model\": \"%s\", \"calib_tokens\": %lld, \"eval_tokens\": %lld, \"dense_ppl\": %.6f, \"points\": [", model_path,
               (long long)n_cal, (long long)n_ev, dense.ppl);
        bool first = true;
        for (int i = 0; i < n_m; i++)
            for (int k = 0; k < n_sps; k++) {
                const point *pt = &pts[i][k];
                if (!ms[i].on || !pt->done) continue;
                printf("%s{\"method\": \"%s\", \"sparsity\": %.4f, \"mlp_sparsity\": %.4f, \"mlp_bytes_fraction\": %.4f, \"ppl\": %.6f, "
                       "\"loss\": %.6f, \"modelled_speedup\": %.4f, \"measured_speedup\": %s%.4f}",
                       first ? "" : ", ", ms[i].name, pt->s, pt->sparsity, pt->bytes, pt->ppl, pt->loss, pt->model_x, isfinite(pt->meas_x) ? "" : "-",
                       isfinite(pt->meas_x) ? pt->meas_x : 1.0);
                first = false;
            }
        printf("], \"chosen\": %s%s%s, \"chosen_sparsity\": %.4f}\n", best_i >= 0 ? "\"" : "", best_i >= 0 ? ms[best_i].name : "null",
               best_i >= 0 ? "\"" : "", best_s);
    } else {
        printf("\nmodel %s, %lld calibration tokens, %lld held-out tokens, dense perplexity %.4f\n", model_path, (long long)n_cal,
               (long long)n_ev, dense.ppl);
        printf("sparsity S = a byte budget: the MLP weight bytes CATS reads at S\n");
        if (!isnan(blk.load0)) printf("speed measured under the lock %s, load average %.2f -> %.2f\n", blk.path, blk.load0, blk.load1);
        printf("\n");
        printf("| method | S | MLP sparsity | MLP bytes read | ppl | loss | speed-up modelled | speed-up measured |\n");
        printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
        for (int i = 0; i < n_m; i++)
            for (int k = 0; k < n_sps; k++) {
                const point *pt = &pts[i][k];
                if (!ms[i].on || !pt->done) continue;
                char meas[32] = "-";
                if (isfinite(pt->meas_x)) snprintf(meas, sizeof(meas), "%.2fx", pt->meas_x);
                printf("| %s | %.2f | %.3f | %.3f | %.4f | %+.2f%% | %.2fx | %s |\n", ms[i].name, pt->s, pt->sparsity, pt->bytes, pt->ppl,
                       100 * pt->loss, pt->model_x, meas);
            }
    }
    char svg[4096];
    if (!plot_path) {
        snprintf(svg, sizeof(svg), "%s", out_path);
        char *dot = strrchr(svg, '.');
        if (dot && !strchr(dot, '/')) *dot = 0;
        strncat(svg, ".svg", sizeof(svg) - strlen(svg) - 1);
        plot_path = svg;
    }
    if (!write_svg(plot_path, ms, n_m, pts, n_sps, false)) cli_fail(cmd, "cannot write the plot %s", plot_path);
    if (best_i < 0) {
        cli_fail(cmd, sparsity_seen ? "no method was measured at the sparsity" : "no method stays within %.3g%% (dense is the answer)",
                 (double)max_loss);
        goto done;
    }
    if (sl_profile_set_sparsity(ms[best_i].prof, best_s, &err) || sl_profile_save(ms[best_i].prof, out_path, &err)) {
        cli_fail_err(cmd, &err);
        goto done;
    }
    if (!json)
        printf("\nwrote %s: %s at sparsity %.2f (loss %+.2f%%, %.3f of the MLP bytes); plot %s\n", out_path, ms[best_i].name, best_s,
               100 * best_loss, best_bytes, plot_path);
    rc = 0;
done:
    for (int i = 0; i < n_m; i++) sl_profile_free(ms[i].prof);
    sl_profile_free(cats);
    sl_profile_free(predp);
    sl_free_tokens(ids);
    sl_free_tokens(eids);
    free(cal);
    free(ev);
    free(text);
    sl_model_free(model);
    return rc;
}
