/*
 * bench.c — `skipllama bench`: llama-bench style throughput of one model.
 *
 * For each thread count it times rows of work on a fresh KV cache — "pp<N>" (one sl_eval of an
 * N-token prompt of random in-vocabulary ids) and "tg<N>" (N single-token sl_eval calls from an
 * empty cache, as llama-bench does) — repeated -r times after one untimed warm-up, and reports
 * mean ± sd and median tokens/s. Next to generation it prints the effective bandwidth (weight
 * bytes read per token × tokens/s) and the DRAM read bandwidth this machine reaches with a plain
 * multi-threaded streaming read at the same thread count, so one can see how close decoding is
 * to the memory roofline; peak RSS goes in the report too.
 *
 * Rows are (label, kind, tokens, variant) entries built in one place (rows_build). A variant is
 * the dense model or a sparsity profile (`--profile P`, optionally at several `--sparsity`
 * targets); each variant has its own context (so transposed down matrices are built once), and
 * repetitions are interleaved across rows — dense, sparse, dense, sparse... — so that a busy
 * machine slows every row alike and the sparse/dense ratio stays meaningful. Sparse rows report
 * that ratio and the MLP sparsity they achieved. With `-np N` the generation rows decode N
 * sequences together (sl_eval_batch, one token of each per step, as `serve` steps its slots) and
 * count all their tokens; `--batch-select` adds a variant per batch selection policy. What it is not: a correctness check (see the
 * tests) or a profiler.
 */
#include "cli.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_THREADS 64 /* thread counts in one -t list */
#define BENCH_MAX_ROWS 64    /* rows per thread count */
#define BENCH_MAX_VARIANTS 16 /* dense + profiles x sparsities */
#define BENCH_MAX_REPS 1000  /* -r upper bound */
#define BENCH_MAX_PARALLEL 64 /* -np upper bound */

/* SKIPLLAMA_CLOCK=cpu (also read by the library's stage timers): the calling thread's CPU time,
 * meaningful with -t 1 only (with workers, the caller's CPU time leaves their share out). */
static bool clock_cpu(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("SKIPLLAMA_CLOCK") && !strcmp(getenv("SKIPLLAMA_CLOCK"), "cpu");
    return cpu;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(clock_cpu() ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1-minute load average (Linux), or -1: printed with the results, since on a shared machine a
 * load above the core count means the numbers measure the neighbours as much as the model. */
static double load_average(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* ---- options --------------------------------------------------------------------------------- */

typedef struct bench_opts {
    const char *model;             /* -m */
    int n_prompt;                  /* -p: prompt row length (0 = no pp row) */
    int n_gen;                     /* -n: generation row length (0 = no tg row) */
    int threads[BENCH_MAX_THREADS]; /* -t list */
    int n_threads_list;            /* entries in threads */
    int reps;                      /* -r */
    int n_ctx;                     /* -c (0 = just enough for the longest row) */
    int n_batch;                   /* -b: prefill step */
    bool kv_f16;                   /* --kv-f16 */
    bool no_repack;                /* --no-repack: Q4_0 computed from the file layout */
    bool bundled, no_bundled;      /* --bundled / --no-bundled: the MLP as neuron bundles at load */
    bool json;                     /* -o json */
    int membw_mb;                  /* --membw-mb: buffer for the DRAM read test (0 = skip) */
    uint64_t seed;                 /* --seed: token ids */
    const char *profiles[BENCH_MAX_VARIANTS]; /* --profile (repeatable) */
    int n_profiles;                /* entries in profiles */
    float sparsities[BENCH_MAX_VARIANTS]; /* --sparsity list (empty = each profile's own) */
    int n_sparsities;              /* entries in sparsities */
    bool sparse_prefill;           /* --sparse-prefill: prompt rows sparse too */
    int n_parallel;                /* -np: sequences decoding together in generation rows */
    struct batch_modes { int mode[4]; int n; } batch; /* --batch-select list (empty = union) */
    float union_max;               /* --batch-union-max */
    const char *kernels;           /* --kernels: force a kernel variant (NULL: the library's choice) */
    bool quiet;                    /* -q: no progress line */
    double load_start, load_end;   /* 1-minute load average before and after the runs */
    double load_s;                 /* seconds sl_model_load took (bundles included) */
    double attach_s;               /* seconds of the slowest sl_context_set_profile */
} bench_opts;

/* ---- rows ------------------------------------------------------------------------------------ */

typedef enum row_kind {
    ROW_PROMPT, /* one sl_eval of n_tokens tokens */
    ROW_GEN,    /* n_tokens sl_eval calls of one token */
} row_kind;

typedef struct bench_row bench_row;
/* Prepares a freshly reset context for one repetition of a row (e.g. attach a sparse profile).
 * Returns false and fills err on failure. NULL = nothing to do (dense rows). */
typedef bool (*row_setup_fn)(const bench_row *row, sl_context *ctx, sl_error *err);

/* A way of running the model: dense (profile NULL) or with a sparsity profile. */
typedef struct bench_variant {
    char name[96];       /* "dense" or "<profile file>@<sparsity>[/<batch selection>]" */
    sl_profile *profile; /* owned; NULL = dense */
} bench_variant;

struct bench_row {
    char label[48];     /* "pp128", "tg64" */
    row_kind kind;      /* what is timed */
    int n_tokens;       /* tokens per repetition */
    row_setup_fn setup; /* per-repetition setup, or NULL */
    void *setup_arg;    /* for setup */
    int variant;        /* index into the variants: 0 = dense */
    int dense_row;      /* the dense row with the same label (for the ratio), or -1 */
};

/* The rows every thread count runs: for each variant, a prompt row and a generation row. */
static int rows_build(const bench_opts *o, bench_row *rows, int n_variants) {
    int n = 0;
    for (int v = 0; v < n_variants; v++) {
        if (o->n_prompt > 0) {
            rows[n] = (bench_row){.kind = ROW_PROMPT, .n_tokens = o->n_prompt, .variant = v, .dense_row = v ? 0 : -1};
            snprintf(rows[n].label, sizeof(rows[n].label), "pp%d", o->n_prompt);
            n++;
        }
        if (o->n_gen > 0) {
            rows[n] = (bench_row){.kind = ROW_GEN, .n_tokens = o->n_gen, .variant = v, .dense_row = v ? (o->n_prompt > 0) : -1};
            if (o->n_parallel > 1) snprintf(rows[n].label, sizeof(rows[n].label), "tg%dx%d", o->n_gen, o->n_parallel);
            else snprintf(rows[n].label, sizeof(rows[n].label), "tg%d", o->n_gen);
            n++;
        }
    }
    return n;
}

/* ---- results --------------------------------------------------------------------------------- */

typedef struct row_result {
    const bench_row *row; /* what ran */
    int n_threads;        /* threads */
    double *samples;      /* [reps] tokens/s */
    int n_samples;        /* reps done */
    double mean, sd, median; /* of samples */
    double dram_gbs;      /* measured read bandwidth at n_threads (0 = not measured) */
    double sparsity;      /* MLP sparsity achieved in the last repetition (sparse rows), else -1 */
    const char *variant_name; /* "dense" or the profile's */
    const struct row_result *dense; /* the dense result of the same test and threads, or NULL */
    /* where the time went, summed over the timed repetitions (seconds; tokens of all of them) */
    double t_total, t_scores, t_select, t_sparse, t_dense_mlp; /* wall; sparse stages; dense MLP */
    int64_t n_tok;        /* tokens timed */
    int64_t n_union, n_batches; /* sparse batches (--sparse-prefill, -np): neurons read per batch summed, batches */
    int64_t n_union_own;  /* the union of the tokens' own selections, summed over batches */
    int64_t own_kept, own_total; /* shared batches: own selections' neurons the shared set held / all */
    double rss_mib;       /* the largest resident size seen after one of its repetitions */
} row_result;

/* Resident set now (VmRSS), MiB; 0 when unknown. */
static double rss_now_mib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats(row_result *r) {
    int n = r->n_samples;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += r->samples[i];
    r->mean = n ? s / n : 0;
    for (int i = 0; i < n; i++) ss += (r->samples[i] - r->mean) * (r->samples[i] - r->mean);
    r->sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
    double *sorted = malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!sorted) return;
    memcpy(sorted, r->samples, (size_t)n * sizeof(double));
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    r->median = n == 0 ? 0 : n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    free(sorted);
}

/* ---- timing one row --------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Runs one repetition; returns tokens/s or a negative value on error (err filled). */
static double row_run(const bench_row *row, sl_context *ctx, int n_par, int32_t n_vocab, uint64_t *rng, int32_t *tokens,
                      float *logits, sl_error *err) {
    sl_context_reset(ctx);
    sl_context_reset_stats(ctx);
    if (row->setup && !row->setup(row, ctx, err)) return -1;
    const int np = row->kind == ROW_GEN ? n_par : 1; /* generation: n_par sequences, one token of each per step */
    for (int i = 0; i < row->n_tokens * np; i++) tokens[i] = (int32_t)(rng_next(rng) % (uint64_t)n_vocab);
    double t0 = now_s();
    if (row->kind == ROW_PROMPT) {
        if (sl_eval(ctx, tokens, row->n_tokens, logits, false, err) != SL_OK) return -1;
    } else if (np == 1) {
        for (int i = 0; i < row->n_tokens; i++)
            if (sl_eval(ctx, &tokens[i], 1, logits, false, err) != SL_OK) return -1;
    } else {
        sl_batch_token bt[BENCH_MAX_PARALLEL];
        for (int i = 0; i < row->n_tokens; i++) {
            for (int q = 0; q < np; q++) bt[q] = (sl_batch_token){tokens[i * np + q], q, true};
            if (sl_eval_batch(ctx, bt, np, logits, err) != SL_OK) return -1;
        }
    }
    double dt = now_s() - t0;
    return dt > 0 ? row->n_tokens * np / dt : 0;
}

/* --batch-select MODE[,MODE...] */
static bool parse_batch_modes(const char *v, void *dest) {
    struct batch_modes *b = dest;
    static const char *names[] = {"union", "shared", "auto", "dense"};
    b->n = 0;
    while (*v) {
        const size_t len = strcspn(v, ",");
        int m = -1;
        for (int k = 0; k < 4; k++)
            if (strlen(names[k]) == len && !strncmp(v, names[k], len)) m = k;
        if (m < 0 || b->n == 4) return false;
        b->mode[b->n++] = m;
        v += len + (v[len] == ',');
    }
    return b->n > 0;
}

/* ---- DRAM read bandwidth --------------------------------------------------------------------- */

typedef uint64_t v4u64 __attribute__((vector_size(32), may_alias)); /* any ISA: split as needed */

typedef struct membw_shared {
    const uint8_t *buf;       /* the buffer */
    size_t bytes;             /* its size */
    int n_threads;            /* readers */
    int passes;               /* timed passes */
    pthread_mutex_t mu;       /* guards state */
    pthread_cond_t cv;        /* signals a state change */
    int state;                /* 0 = wait, 1 = go, 2 = abort (a thread could not be started) */
    pthread_barrier_t start;  /* all readers begin a pass together */
    pthread_barrier_t end;    /* ... and the pass ends when the last one finishes */
    double best_s;            /* fastest pass (written by thread 0) */
    volatile uint64_t sink;   /* keeps the sums alive */
} membw_shared;

typedef struct membw_thread {
    membw_shared *sh; /* shared state */
    int ith;          /* this reader */
} membw_thread;

static void *membw_reader(void *p) {
    membw_thread *t = p;
    membw_shared *sh = t->sh;
    pthread_mutex_lock(&sh->mu);
    while (sh->state == 0) pthread_cond_wait(&sh->cv, &sh->mu);
    int state = sh->state;
    pthread_mutex_unlock(&sh->mu);
    if (state != 1) return NULL;
    /* contiguous, 4 KiB-aligned slices so threads never share a page */
    size_t per = sh->bytes / 4096 / (size_t)sh->n_threads * 4096;
    const uint8_t *lo = sh->buf + (size_t)t->ith * per;
    for (int pass = 0; pass < sh->passes; pass++) {
        pthread_barrier_wait(&sh->start);
        double t0 = now_s();
        v4u64 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (size_t i = 0; i + 128 <= per; i += 128) {
            a0 += *(const v4u64 *)(lo + i);
            a1 += *(const v4u64 *)(lo + i + 32);
            a2 += *(const v4u64 *)(lo + i + 64);
            a3 += *(const v4u64 *)(lo + i + 96);
        }
        v4u64 a = a0 + a1 + a2 + a3;
        sh->sink += a[0] + a[1] + a[2] + a[3];
        pthread_barrier_wait(&sh->end);
        double dt = now_s() - t0;
        if (t->ith == 0 && (sh->best_s == 0 || dt < sh->best_s)) sh->best_s = dt;
    }
    return NULL;
}

/* GB/s (1e9 bytes) of reading `mb` MiB with n_threads threads, best of 5 passes; 0 on failure. */
static double membw_measure(int n_threads, int mb) {
    size_t bytes = (size_t)mb << 20;
    bytes = bytes / ((size_t)n_threads * 4096) * ((size_t)n_threads * 4096);
    if (bytes == 0) return 0;
    void *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 0;
    memset(buf, 1, bytes); /* real pages, not the shared zero page */
    membw_shared sh = {.buf = buf, .bytes = bytes, .n_threads = n_threads, .passes = 5};
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    pthread_barrier_init(&sh.start, NULL, (unsigned)n_threads);
    pthread_barrier_init(&sh.end, NULL, (unsigned)n_threads);
    membw_thread ts[CLI_MAX_THREADS];
    pthread_t th[CLI_MAX_THREADS];
    int started = 1;
    for (int i = 0; i < n_threads; i++) ts[i] = (membw_thread){&sh, i};
    for (int i = 1; i < n_threads; i++, started++)
        if (pthread_create(&th[i], NULL, membw_reader, &ts[i]) != 0) break;
    /* only start reading when every reader exists, or the barriers would never open */
    pthread_mutex_lock(&sh.mu);
    sh.state = started == n_threads ? 1 : 2;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    membw_reader(&ts[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    double gbs = sh.state == 1 && sh.best_s > 0 ? (double)bytes / sh.best_s / 1e9 : 0;
    pthread_barrier_destroy(&sh.start);
    pthread_barrier_destroy(&sh.end);
    pthread_cond_destroy(&sh.cv);
    pthread_mutex_destroy(&sh.mu);
    munmap(buf, bytes);
    return gbs;
}

/* ---- output ---------------------------------------------------------------------------------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void print_md(const bench_opts *o, const sl_model *model, const row_result *res, int n_res, double rss_mib,
                     int64_t decode_bytes) {
    const sl_model_config *cfg = sl_model_get_config(model);
    double size = (double)sl_model_file_size(model), params = (double)sl_model_n_params(model);
    char size_s[32], params_s[32];
    /* llama-bench units for real models; small test models would read 0.00 */
    if (size >= 1024.0 * 1024.0 * 1024.0) snprintf(size_s, sizeof(size_s), "%.2f GiB", size / (1024.0 * 1024.0 * 1024.0));
    else snprintf(size_s, sizeof(size_s), "%.2f MiB", size / (1024.0 * 1024.0));
    if (params >= 1e9) snprintf(params_s, sizeof(params_s), "%.2f B", params / 1e9);
    else snprintf(params_s, sizeof(params_s), "%.2f M", params / 1e6);
    printf("| model | size | params | type | threads | variant | test | t/s | median t/s | vs dense | MLP sparsity | eff. BW GB/s | DRAM read GB/s |\n");
    printf("| --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_res; i++) {
        const row_result *r = &res[i];
        char bw[32] = "", dram[32] = "";
        /* effective bandwidth only means something for one-token steps */
        if (r->row->kind == ROW_GEN) snprintf(bw, sizeof(bw), "%.1f", (double)decode_bytes * r->median / 1e9);
        if (r->dram_gbs > 0) snprintf(dram, sizeof(dram), "%.1f", r->dram_gbs);
        char ratio[32] = "", sp[32] = "";
        if (r->dense && r->dense->median > 0) snprintf(ratio, sizeof(ratio), "%.2fx", r->median / r->dense->median);
        if (r->sparsity >= 0) snprintf(sp, sizeof(sp), "%.3f", r->sparsity);
        if (r->row->variant) bw[0] = 0; /* a sparse token reads fewer bytes than decode_bytes */
        printf("| %s | %s | %s | %s | %d | %s | %s | %.2f ± %.2f | %.2f | %s | %s | %s | %s |\n", base_name(o->model), size_s,
               params_s, sl_type_name(cfg->weight_type), r->n_threads, r->variant_name, r->row->label, r->mean, r->sd, r->median,
               ratio, sp, bw, dram);
    }
    printf("\n| threads | variant | test | ms/token | MLP dense | scores | selection | sparse MLP | rest | union/batch | own union | own recall | RSS MiB |\n");
    printf("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_res; i++) {
        const row_result *r = &res[i];
        const double k = r->n_tok ? 1e3 / (double)r->n_tok : 0;
        const double mlp = r->t_dense_mlp + r->t_scores + r->t_select + r->t_sparse;
        char uni[32] = "", own[32] = "", rec[32] = "";
        if (r->n_batches) snprintf(uni, sizeof(uni), "%.0f", (double)r->n_union / (double)r->n_batches);
        if (r->n_batches) snprintf(own, sizeof(own), "%.0f", (double)r->n_union_own / (double)r->n_batches);
        if (r->own_total) snprintf(rec, sizeof(rec), "%.3f", (double)r->own_kept / (double)r->own_total);
        printf("| %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s | %s | %.0f |\n", r->n_threads, r->variant_name, r->row->label,
               r->t_total * k, r->t_dense_mlp * k, r->t_scores * k, r->t_select * k, r->t_sparse * k, (r->t_total - mlp) * k, uni, own, rec,
               r->rss_mib);
    }
    printf("(per token, mean over the timed repetitions: the dense MLP, or the sparse stages — predictor or gate scores,\n"
           "selection, the sparse MLP over the chosen neurons — and the rest of the token: attention, norms, output;\n"
           "union/batch = neurons read per batch of several tokens; own union = the union of the tokens' own selections;\n"
           "own recall = the share of each token's own selection that a shared set held; RSS = the largest resident size\n"
           "after a repetition)\n");
    printf("\nkernels %s; load average %.2f at start, %.2f at end (%s)\n", sl_kernels_in_use(), o->load_start, o->load_end,
           "numbers are only meaningful when it stays below the core count");
    if (clock_cpu())
        printf("times: the calling thread's CPU time (SKIPLLAMA_CLOCK=cpu; meaningful with -t 1 only)\n");
    printf("peak RSS %.0f MiB (model file %.0f MiB, KV cache %d tokens %s); a generated token reads %.1f MiB of "
           "weights; eff. BW = that × median t/s; DRAM read = best of 5 streaming reads of %d MiB at the same thread "
           "count; %d repetitions after 1 warm-up\n",
           rss_mib, (double)sl_model_file_size(model) / (1024.0 * 1024.0), o->n_ctx, o->kv_f16 ? "f16" : "f32",
           (double)decode_bytes / (1024.0 * 1024.0), o->membw_mb, o->reps);
    printf("model loaded in %.2f s%s; slowest profile attach %.3f s\n", o->load_s,
           sl_model_dense_bundled(model) ? " (MLP laid out as neuron bundles, read by every row)" : "", o->attach_s);
    if (sl_model_bundled_bytes(model) > 0)
        printf("neuron bundles %.0f MiB%s\n", (double)sl_model_bundled_bytes(model) / (1024.0 * 1024.0),
               sl_model_dense_bundled(model) ? "" : " (built for the sparse rows: a second copy of the MLP)");
    if (sl_model_repacked_bytes(model) > 0)
        printf("Q4_0 matrices repacked at load into the 4-row interleaved layout (%.0f MiB; --no-repack: file layout)\n",
               (double)sl_model_repacked_bytes(model) / (1024.0 * 1024.0));
}

static void print_json(const bench_opts *o, const sl_model *model, const row_result *res, int n_res, double rss_mib,
                       int64_t decode_bytes) {
    const sl_model_config *cfg = sl_model_get_config(model);
    printf("[\n");
    for (int i = 0; i < n_res; i++) {
        const row_result *r = &res[i];
        printf("  {\"model_filename\": \"%s\", \"model_type\": \"%s\", \"model_size\": %lld, \"model_n_params\": %lld, "
               "\"kernels\": \"%s\", \"n_threads\": %d, \"test\": \"%s\", \"variant\": \"%s\", \"mlp_sparsity\": %.4f, \"vs_dense\": %.4f, "
               "\"n_prompt\": %d, \"n_gen\": %d, \"n_ctx\": %d, \"kv_f16\": %s, "
               "\"avg_ts\": %.4f, \"stddev_ts\": %.4f, \"median_ts\": %.4f, \"samples_ts\": [",
               base_name(o->model), sl_type_name(cfg->weight_type), (long long)sl_model_file_size(model),
               (long long)sl_model_n_params(model), sl_kernels_in_use(), r->n_threads, r->row->label, r->variant_name, r->sparsity,
               r->dense && r->dense->median > 0 ? r->median / r->dense->median : 1.0,
               r->row->kind == ROW_PROMPT ? r->row->n_tokens : 0, r->row->kind == ROW_GEN ? r->row->n_tokens : 0, o->n_ctx,
               o->kv_f16 ? "true" : "false", r->mean, r->sd, r->median);
        for (int k = 0; k < r->n_samples; k++) printf("%s%.4f", k ? ", " : "", r->samples[k]);
        const double k = r->n_tok ? 1e3 / (double)r->n_tok : 0;
        const double mlp = r->t_dense_mlp + r->t_scores + r->t_select + r->t_sparse;
        printf("], \"decode_bytes_per_token\": %lld, \"eff_bw_gbs\": %.3f, \"dram_read_gbs\": %.3f, \"peak_rss_mib\": %.1f, "
               "\"rss_mib\": %.1f, \"ms_per_token\": %.4f, \"mlp_dense_ms\": %.4f, \"scores_ms\": %.4f, \"select_ms\": %.4f, "
               "\"sparse_mlp_ms\": %.4f, \"rest_ms\": %.4f, \"union_per_batch\": %.1f, \"own_union_per_batch\": %.1f, \"own_recall\": %.4f, \"bundled\": %s, \"load_s\": %.3f, "
               "\"attach_s\": %.4f, \"loadavg_start\": %.2f, \"loadavg_end\": %.2f}%s\n",
               (long long)decode_bytes, r->row->kind == ROW_GEN ? (double)decode_bytes * r->median / 1e9 : 0.0,
               r->dram_gbs, rss_mib, r->rss_mib, r->t_total * k, r->t_dense_mlp * k, r->t_scores * k, r->t_select * k, r->t_sparse * k,
               (r->t_total - mlp) * k, r->n_batches ? (double)r->n_union / (double)r->n_batches : 0.0,
               r->n_batches ? (double)r->n_union_own / (double)r->n_batches : 0.0, r->own_total ? (double)r->own_kept / (double)r->own_total : 1.0,
               sl_model_dense_bundled(model) ? "true" : "false", o->load_s, o->attach_s, o->load_start, o->load_end,
               i + 1 < n_res ? "," : "");
    }
    printf("]\n");
}

/* ---- command --------------------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    bench_opts o = {.model = NULL, .n_prompt = 128, .n_gen = 64, .threads = {cli_default_threads()}, .n_threads_list = 1, .reps = 5,
                    .n_ctx = 0, .n_batch = CLI_DEFAULT_BATCH, .membw_mb = 1024, .seed = 1234, .n_parallel = 1};
    int fmt = 0; /* md */
    cli_opt opts[] = {
        CLI_OPT_MODEL(&o.model, "GGUF model"),
        {.names = "-p --n-prompt", .type = CLI_INT, .dest = &o.n_prompt, .lo = 0, .hi = 1 << 20, .meta = "N",
         .help = "prompt row ppN: one evaluation of N random tokens from an empty cache; 0 = none (llama-bench's -p)"},
        {.names = "-n --n-gen", .type = CLI_INT, .dest = &o.n_gen, .lo = 0, .hi = 1 << 20, .meta = "N",
         .help = "generation row tgN: N one-token evaluations from an empty cache; 0 = none"},
        CLI_OPT_THREADS_LIST(o.threads, &o.n_threads_list, BENCH_MAX_THREADS),
        {.names = "-r --repetitions", .type = CLI_INT, .dest = &o.reps, .lo = 1, .hi = BENCH_MAX_REPS, .meta = "N",
         .help = "timed repetitions per row, after one warm-up"},
        CLI_OPT_CTX(&o.n_ctx, "KV cache length in tokens; 0 = the longest row", "the longest row"),
        CLI_OPT_BATCH(&o.n_batch),
        {.names = "-o --output", .type = CLI_CHOICE, .dest = &fmt, .choices = "md|json", .meta = "FORMAT",
         .help = "output format (llama-bench's -o): a markdown table or JSON"},
        {.names = "--membw-mb", .type = CLI_INT, .dest = &o.membw_mb, .lo = 0, .hi = 1 << 20, .meta = "N",
         .help = "buffer of the DRAM read-bandwidth test in MiB; 0 skips it"},
        CLI_OPT_SEED(&o.seed, "seed of the random token ids", NULL),
        {.names = "-P --profile", .type = CLI_STRS, .dest = o.profiles, .count = &o.n_profiles, .max_count = 4, .meta = "FILE",
         .help = "also run with this sparsity profile (up to 4); rows report the ratio to dense and the MLP\nsparsity achieved; repetitions of all rows are interleaved"},
        {.names = "--sparsity", .type = CLI_FLOATS, .dest = o.sparsities, .count = &o.n_sparsities, .max_count = 3, .lo = 0, .hi = 1,
         .flags = CLI_HI_OPEN, .meta = "S[,S...]", .help = "targets overriding each profile's (e.g. 0.5,0.9)", .def = "the profile's"},
        {.names = "--sparse-prefill", .type = CLI_FLAG, .dest = &o.sparse_prefill,
         .help = "prompt rows sparse too (default: only generation is sparse, as in `run`)"},
        {.names = "-np --parallel", .type = CLI_INT, .dest = &o.n_parallel, .lo = 1, .hi = BENCH_MAX_PARALLEL, .meta = "N",
         .help = "generation rows decode N sequences together (one sl_eval_batch per step, as serve's slots);\nt/s counts the tokens of all N"},
        {.names = "--batch-select", .type = CLI_CUSTOM, .dest = &o.batch, .parse = parse_batch_modes, .choices = "union|shared|auto|dense[,...]",
         .meta = "MODE[,MODE...]", .help = "with --profile and -np > 1: how a step's tokens choose neurons (one variant per mode;\nsee docs/server.md)", .def = "union"},
        {.names = "--batch-union-max", .type = CLI_FLOAT, .dest = &o.union_max, .lo = 0, .hi = 1, .flags = CLI_LO_OPEN, .meta = "U",
         .help = "--batch-select auto: the cap on the union (fraction of a layer); a larger union is cut to this\nmany neurons by combined score", .def = "0.6"},
        {.names = "--kv-f16", .type = CLI_FLAG, .dest = &o.kv_f16, .help = "store the KV cache as f16"},
        {.names = "--no-repack", .type = CLI_FLAG, .dest = &o.no_repack,
         .help = "compute Q4_0 weights from the file layout (default: repacked at load, 4 rows\ninterleaved, for the AVX-512 matrix-vector kernel)"},
        {.names = "--bundled", .type = CLI_FLAG, .dest = &o.bundled,
         .help = "lay the MLP out as neuron bundles at load, also without --profile (dense rows then read them)"},
        {.names = "--no-bundled", .type = CLI_FLAG, .dest = &o.no_bundled,
         .help = "with --profile: load the model as the file has it; the first profile builds the bundles\n(a second copy of the MLP, read only by the sparse rows)"},
        {.names = "--kernels", .type = CLI_STR, .dest = &o.kernels, .meta = "K",
         .help = "force the CPU kernels: avx512, avx2, scalar or auto", .def = "auto, or $SKIPLLAMA_KERNELS"},
        CLI_OPT_QUIET(&o.quiet, "no progress line"),
        CLI_OPT_END,
    };
    const cli_cmd spec = {.name = "bench", .usage = "[-m MODEL.gguf] [-p 128] [-n 64] [-t N[,N...]] [-r 5] [-o md|json] [options]",
                          .about = "llama-bench style throughput: prompt (ppN) and generation (tgN) rows, mean ± sd and median\n"
                                   "tokens/s, effective vs measured DRAM bandwidth, peak RSS. As in llama-bench, -p and -n are\n"
                                   "the row lengths and -o the output format.",
                          .opts = opts};
    int prc;
    if (!cli_parse(&spec, argc, argv, NULL, &prc)) return prc;
    o.json = fmt == 1;
    if (!(o.model = cli_model_path(cmd, o.model))) return 1;
    if (o.n_sparsities && !o.n_profiles) return cli_fail(cmd, "--sparsity needs --profile");
    if ((o.batch.n || o.union_max > 0) && !o.n_profiles) return cli_fail(cmd, "--batch-select and --batch-union-max need --profile");
    if (!o.batch.n) o.batch = (struct batch_modes){{SL_BATCH_UNION}, 1};
    const int n_spars = o.n_sparsities ? o.n_sparsities : 1;
    if (o.n_profiles * n_spars * o.batch.n + 1 > BENCH_MAX_VARIANTS)
        return cli_fail(cmd, "too many variants: profiles x sparsities x batch modes must stay below %d", BENCH_MAX_VARIANTS);
    bench_row rows[BENCH_MAX_ROWS];
    bench_variant variants[BENCH_MAX_VARIANTS];
    memset(variants, 0, sizeof(variants));
    snprintf(variants[0].name, sizeof(variants[0].name), "dense");
    int n_variants = 1 + o.n_profiles * n_spars * o.batch.n;
    int n_rows = rows_build(&o, rows, n_variants);
    if (n_rows == 0) return cli_fail(cmd, "nothing to run: -p and -n are both 0");
    int longest = 0;
    for (int i = 0; i < n_rows; i++)
        if (rows[i].n_tokens > longest) longest = rows[i].n_tokens;
    if (o.n_ctx == 0) o.n_ctx = longest;
    if (o.n_ctx < longest) return cli_fail(cmd, "-c %d is shorter than the longest row (%d tokens)", o.n_ctx, longest);

    sl_error err = {0};
    if (o.kernels && sl_kernels_force(o.kernels, &err)) return cli_fail_err(cmd, &err);
    sl_model_params mp = sl_model_default_params();
    mp.no_repack = o.no_repack;
    /* sparse rows read the neuron bundles; built at load, the dense rows read the same ones */
    mp.bundled = o.bundled || (o.n_profiles > 0 && !o.no_bundled);
    mp.n_threads = o.threads[0];
    const double t_load0 = now_s();
    sl_model *model = cli_load_model(cmd, o.model, &mp, &err);
    if (!model) return cli_fail_err(cmd, &err);
    o.load_s = now_s() - t_load0;
    const sl_model_config *cfg = sl_model_get_config(model);
    cli_warn_ctx(cmd, model, o.n_ctx);
    int64_t decode_bytes = sl_model_decode_bytes(model);
    for (int pi = 0, v = 1; pi < o.n_profiles; pi++) {
        const int first = v;
        for (int si = 0; si < n_spars; si++) {
            for (int bi = 0; bi < o.batch.n; bi++, v++) {
                /* one load per file: the other sparsities and modes share its predictors (no second copy) */
                variants[v].profile = v > first ? sl_profile_clone(variants[first].profile, &err) : sl_profile_load(o.profiles[pi], model, &err);
                if (!variants[v].profile || (o.n_sparsities && sl_profile_set_sparsity(variants[v].profile, o.sparsities[si], &err)) ||
                    sl_profile_set_batch_select(variants[v].profile, (sl_batch_select)o.batch.mode[bi], o.union_max, &err)) {
                    for (int k = v; k >= 1; k--) sl_profile_free(variants[k].profile); /* clones before their source */
                    sl_model_free(model);
                    return cli_fail_err(cmd, &err);
                }
                char *name = variants[v].name;
                if (o.n_sparsities) snprintf(name, sizeof(variants[v].name), "%s@%.2f", base_name(o.profiles[pi]), o.sparsities[si]);
                else snprintf(name, sizeof(variants[v].name), "%s", base_name(o.profiles[pi]));
                const size_t w = strlen(name);
                if (o.batch.n > 1 || o.batch.mode[0] != SL_BATCH_UNION)
                    snprintf(name + w, sizeof(variants[v].name) - w, "/%s", sl_batch_select_name((sl_batch_select)o.batch.mode[bi]));
            }
        }
    }

    int n_res = n_rows * o.n_threads_list;
    row_result *res = calloc((size_t)n_res, sizeof(*res));
    double *samples = calloc((size_t)n_res * (size_t)o.reps, sizeof(double));
    int32_t *tokens = malloc((size_t)longest * (size_t)o.n_parallel * sizeof(int32_t));
    float *logits = malloc((size_t)cfg->n_vocab * (size_t)o.n_parallel * sizeof(float));
    int rc = 0;
    if (!res || !samples || !tokens || !logits) {
        rc = cli_fail(cmd, "out of memory");
        goto done;
    }
    uint64_t rng = o.seed;
    /* progress in timed runs: warm-up + repetitions of every row, at every thread count */
    cli_progress prog;
    cli_progress_start(&prog, "bench", "runs", o.quiet);
    const int64_t runs_total = (int64_t)o.n_threads_list * n_rows * (o.reps + 1);
    int64_t runs_done = 0;
    o.load_start = load_average();
    for (int ti = 0; ti < o.n_threads_list && rc == 0; ti++) {
        sl_context_params cp = sl_context_default_params();
        cp.n_ctx = o.n_ctx;
        cp.n_threads = o.threads[ti];
        cp.n_batch = o.n_batch > o.n_parallel ? o.n_batch : o.n_parallel;
        cp.n_seq = o.n_parallel;
        cp.kv_f16 = o.kv_f16;
        sl_context *ctxs[BENCH_MAX_VARIANTS] = {0};
        for (int v = 0; v < n_variants && rc == 0; v++) {
            if (!(ctxs[v] = sl_context_init(model, &cp, &err))) {
                rc = cli_fail_err(cmd, &err);
                break;
            }
            const double ta = now_s();
            if (variants[v].profile && sl_context_set_profile(ctxs[v], variants[v].profile, o.sparse_prefill, &err)) rc = cli_fail_err(cmd, &err);
            if (variants[v].profile && now_s() - ta > o.attach_s) o.attach_s = now_s() - ta;
        }
        for (int ri = 0; ri < n_rows && rc == 0; ri++) {
            row_result *r = &res[ti * n_rows + ri];
            r->row = &rows[ri];
            r->n_threads = o.threads[ti];
            r->samples = samples + (size_t)(ti * n_rows + ri) * (size_t)o.reps;
            r->variant_name = variants[rows[ri].variant].name;
            r->dense = rows[ri].dense_row >= 0 ? &res[ti * n_rows + rows[ri].dense_row] : NULL;
            r->sparsity = -1;
            /* warm-up: pages the weights in and settles the thread pool; not timed */
            if (row_run(&rows[ri], ctxs[rows[ri].variant], o.n_parallel, cfg->n_vocab, &rng, tokens, logits, &err) < 0) rc = cli_fail_err(cmd, &err);
            cli_progress_update(&prog, ++runs_done, runs_total);
        }
        /* interleaved repetitions: every row once per round */
        for (int k = 0; k < o.reps && rc == 0; k++) {
            for (int ri = 0; ri < n_rows && rc == 0; ri++) {
                row_result *r = &res[ti * n_rows + ri];
                sl_context *ctx = ctxs[rows[ri].variant];
                double tps = row_run(&rows[ri], ctx, o.n_parallel, cfg->n_vocab, &rng, tokens, logits, &err);
                cli_progress_update(&prog, ++runs_done, runs_total);
                if (tps < 0) {
                    rc = cli_fail_err(cmd, &err);
                    break;
                }
                r->samples[r->n_samples++] = tps;
                const int64_t n_tok = (int64_t)rows[ri].n_tokens * (rows[ri].kind == ROW_GEN ? o.n_parallel : 1);
                r->n_tok += n_tok;
                r->t_total += tps > 0 ? (double)n_tok / tps : 0;
                for (int l = 0; l < cfg->n_layer; l++) {
                    sl_layer_stats st;
                    sl_context_get_layer_stats(ctx, l, &st, &err);
                    r->t_scores += st.t_scores, r->t_select += st.t_select, r->t_sparse += st.t_operator, r->t_dense_mlp += st.t_dense;
                    r->n_union += st.n_union, r->n_batches += st.n_batches, r->n_union_own += st.n_union_own;
                    r->own_kept += st.own_kept, r->own_total += st.own_total;
                }
                const double rss = rss_now_mib();
                if (rss > r->rss_mib) r->rss_mib = rss;
                if (variants[rows[ri].variant].profile) {
                    int64_t act = 0, tot = 0;
                    for (int l = 0; l < cfg->n_layer; l++) {
                        sl_layer_stats st;
                        sl_context_get_layer_stats(ctx, l, &st, &err);
                        act += st.n_active;
                        tot += st.n_neurons;
                    }
                    r->sparsity = tot ? 1.0 - (double)act / (double)tot : 0.0;
                }
            }
        }
        cli_progress_clear(&prog);
        for (int ri = 0; ri < n_rows && rc == 0; ri++) {
            row_result *r = &res[ti * n_rows + ri];
            stats(r);
            if (!o.json && !o.quiet)
                fprintf(stderr, "  %s %s t=%d: %.2f ± %.2f t/s\n", r->variant_name, rows[ri].label, o.threads[ti], r->mean, r->sd);
        }
        for (int v = 0; v < n_variants; v++) sl_context_free(ctxs[v]);
    }
    if (rc == 0) {
        /* RSS first: the bandwidth buffer would otherwise dominate the high-water mark */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss_mib = (double)ru.ru_maxrss / 1024.0;
        o.load_end = load_average();
        for (int ti = 0; ti < o.n_threads_list; ti++) {
            double gbs = o.membw_mb > 0 ? membw_measure(o.threads[ti], o.membw_mb) : 0;
            for (int ri = 0; ri < n_rows; ri++) res[ti * n_rows + ri].dram_gbs = gbs;
        }
        if (o.json) print_json(&o, model, res, n_res, rss_mib, decode_bytes);
        else print_md(&o, model, res, n_res, rss_mib, decode_bytes);
    }
done:
    free(logits);
    free(tokens);
    free(samples);
    free(res);
    for (int v = 1; v < n_variants; v++) sl_profile_free(variants[v].profile);
    sl_model_free(model);
    return rc;
}
