/*
 * bench_kernels.c — micro-benchmark of the compute kernels (not a test; `make bench` builds it
 * into $(BUILD)/bench/bench_kernels).
 *
 * Prints, for 1 and 2 threads (or -t LIST):
 *   - the machine's streaming read bandwidth (a plain AVX sum over 512 MB), the roofline the
 *     decode matvec is measured against;
 *   - the thread pool's round trip for an empty task (µs);
 *   - decode matvec (B = 1) GB/s of weights per type at TinyLlama-1.1B shapes. Each shape is
 *     replicated into enough copies to exceed the last-level cache, and the copies are used in
 *     turn, so the weights really come from DRAM as in a real decode step;
 *   - prefill matmul (B = 128) GFLOP/s per type (2 * rows * n * B flops per call);
 *   - attention of one token over 2048 cached positions (32 heads, 4 KV heads, head 64).
 * Every figure is the median of -r runs (default 7). On a shared machine wall-clock figures
 * measure the neighbours as much as the kernels, so matvec/matmul cells read "wall [cpu]
 * share": the wall-clock figure, the same work divided by the process's CPU time per thread
 * (what the kernels do while they actually run), and the fraction of the threads' wall time
 * they got a CPU (1.00 = uncontended; trust the wall figure only near 1).
 * Usage: bench_kernels [-t 1,2] [-r 7] [-v auto|scalar|avx2|avx512] [-q] [-s] [-T q4_K,q6_K...] [-B 128]
 * (-q: skip attention; -s: only the first shape of each table; -T: only these types, by name,
 * q4_0x4 for the repacked layout; -B: the matmul table's batch, e.g. 4 for a decode step of 4
 * sequences).
 */
#include "kernels/kernels.h"
#include "util/threadpool.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static int n_runs = 7;
static int mm_batch = 128; /* -B */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* a rate measured both ways (see the header comment) */
typedef struct rate {
    double wall;  /* units per wall second */
    double cpu;   /* units per CPU second per thread */
    double share; /* CPU seconds / (wall seconds * threads) */
} rate;

static rate rate_median(double *wall, double *cpu, double *share, int n) {
    rate r = {median(wall, n), median(cpu, n), median(share, n)};
    return r;
}

/* ---- read bandwidth ---------------------------------------------------------------------------- */

typedef struct bw_task {
    const float *buf; /* data */
    size_t n;         /* floats */
    float sink[64];   /* per-thread results, so the loads are not optimised away */
} bw_task;

#if defined(__x86_64__)
/* compiled for AVX2 but only called after a CPU check (this file is built with baseline flags) */
__attribute__((target("avx2"))) static float sum_avx2(const float *p, const float *e) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    for (; p < e; p += 32) {
        a = _mm256_add_ps(a, _mm256_load_ps(p));
        b = _mm256_add_ps(b, _mm256_load_ps(p + 8));
        c = _mm256_add_ps(c, _mm256_load_ps(p + 16));
        d = _mm256_add_ps(d, _mm256_load_ps(p + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
    return out[0] + out[7];
}
#endif

static void bw_worker(void *arg, int ith, int nth) {
    bw_task *t = arg;
    long long s0, s1;
    sl_split_range((long long)(t->n / 64), ith, nth, &s0, &s1);
    const float *p = t->buf + s0 * 64, *e = t->buf + s1 * 64;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        t->sink[ith] = sum_avx2(p, e);
        return;
    }
#endif
    float s0f = 0, s1f = 0, s2f = 0, s3f = 0;
    for (; p < e; p += 4) s0f += p[0], s1f += p[1], s2f += p[2], s3f += p[3];
    t->sink[ith] = s0f + s1f + s2f + s3f;
}

static double bench_bandwidth(sl_pool *pool) {
    bw_task t;
    t.n = (size_t)128 << 20; /* 512 MB */
    float *buf = sl_malloc_aligned(t.n * sizeof(float));
    if (!buf) return 0;
    for (size_t i = 0; i < t.n; i++) buf[i] = (float)(i & 255);
    t.buf = buf;
    double v[64];
    for (int r = 0; r < n_runs; r++) {
        double t0 = sl_time_s();
        sl_pool_run(pool, bw_worker, &t);
        v[r] = (double)t.n * sizeof(float) / (sl_time_s() - t0) / 1e9;
    }
    sl_free_aligned(buf);
    return median(v, n_runs);
}

/* ---- pool round trip ----------------------------------------------------------------------------- */

static void empty_task(void *arg, int ith, int nth) { (void)arg, (void)ith, (void)nth; }

static double bench_roundtrip(sl_pool *pool) {
    double v[64];
    for (int r = 0; r < n_runs; r++) {
        const int reps = 20000;
        double t0 = sl_time_s();
        for (int i = 0; i < reps; i++) sl_pool_run(pool, empty_task, NULL);
        v[r] = (sl_time_s() - t0) / reps * 1e6;
    }
    return median(v, n_runs);
}

/* ---- matvec / matmul ----------------------------------------------------------------------------- */

typedef struct shape {
    const char *name; /* tensor */
    int64_t rows, n;  /* W is rows x n */
} shape;

static const shape shapes[] = {
    {"attn_q 2048x2048", 2048, 2048},
    {"ffn_up 5632x2048", 5632, 2048},
    {"ffn_down 2048x5632", 2048, 5632},
    {"output 32000x2048", 32000, 2048},
};

/* q4_0x4: Q4_0 interleaved by 4 rows, the layout the model loader repacks Q4_0 into */
static const sl_type types[] = {SL_TYPE_F32,  SL_TYPE_F16,  SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0,   SL_TYPE_Q4_0X4,
                                SL_TYPE_Q4_1, SL_TYPE_Q5_0, SL_TYPE_Q5_1, SL_TYPE_Q2_K, SL_TYPE_Q3_K,   SL_TYPE_Q4_K,
                                SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_NL, SL_TYPE_IQ4_XS};
#define N_TYPES ((int)(sizeof(types) / sizeof(types[0])))
static const char *type_filter; /* -T: comma-separated type names to run (default: all) */
static bool type_selected(sl_type t) {
    if (!type_filter) return true;
    const char *name = t == SL_TYPE_Q4_0X4 ? "q4_0x4" : sl_type_name(t);
    size_t len = strlen(name);
    for (const char *p = type_filter; (p = strstr(p, name)) != NULL; p++)
        if ((p == type_filter || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

/* copies of a rows x n matrix of type t, totalling at least min_bytes (random values) */
static uint8_t *make_copies(sl_type t, int64_t rows, int64_t n, size_t min_bytes, int *copies, size_t *bytes) {
    const bool x4 = t == SL_TYPE_Q4_0X4;
    if (x4) t = SL_TYPE_Q4_0;
    size_t one = x4 ? sl_q4_0x4_size(rows, n) : sl_type_row_size(t, n) * (size_t)rows;
    int c = (int)((min_bytes + one - 1) / one);
    if (c < 1) c = 1;
    uint8_t *w = sl_malloc_aligned(one * (size_t)c);
    if (!w) return NULL;
    float *row = malloc(sizeof(float) * (size_t)n);
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    size_t rb = sl_type_row_size(t, n);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < n; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            row[k] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23) * 0.05f;
        }
        sl_quantize_row_ref(t, row, w + (size_t)r * rb, n);
    }
    if (x4) { /* repack the plain rows in place via a copy */
        uint8_t *plain = malloc(rb * (size_t)rows);
        memcpy(plain, w, rb * (size_t)rows);
        sl_q4_0x4_repack_all(plain, rows, n, w);
        free(plain);
    }
    for (int i = 1; i < c; i++) memcpy(w + one * (size_t)i, w, one);
    free(row);
    *copies = c;
    *bytes = one;
    return w;
}

static float *make_x(int64_t count) {
    float *x = sl_malloc_aligned(sizeof(float) * (size_t)count);
    for (int64_t i = 0; i < count; i++) x[i] = sinf((float)i * 0.37f);
    return x;
}

/* GB/s of B=1 products over the copies */
static rate bench_matvec(sl_pool *pool, sl_type t, const shape *sh) {
    rate none = {0, 0, 0};
    int copies, nth = sl_pool_n_threads(pool);
    size_t one;
    uint8_t *w = make_copies(t, sh->rows, sh->n, (size_t)256 << 20, &copies, &one);
    if (!w) return none;
    float *x = make_x(sh->n), *y = sl_malloc_aligned(sizeof(float) * (size_t)sh->rows);
    sl_matmul(pool, t, w, sh->rows, sh->n, x, 1, y); /* warm-up: scratch, page faults */
    double vw[64], vc[64], vs[64];
    for (int r = 0; r < n_runs; r++) {
        int reps = copies < 8 ? 8 : copies;
        double t0 = sl_time_s(), c0 = cpu_s();
        for (int i = 0; i < reps; i++) sl_matmul(pool, t, w + one * (size_t)(i % copies), sh->rows, sh->n, x, 1, y);
        double dt = sl_time_s() - t0, dc = cpu_s() - c0;
        vw[r] = (double)one * reps / dt / 1e9;
        vc[r] = (double)one * reps / (dc / nth) / 1e9;
        vs[r] = dc / (dt * nth);
    }
    sl_free_aligned(w);
    sl_free_aligned(x);
    sl_free_aligned(y);
    return rate_median(vw, vc, vs, n_runs);
}

/* GFLOP/s of B-token products */
static rate bench_matmul(sl_pool *pool, sl_type t, const shape *sh, int64_t B) {
    rate none = {0, 0, 0};
    int copies, nth = sl_pool_n_threads(pool);
    size_t one;
    uint8_t *w = make_copies(t, sh->rows, sh->n, 0, &copies, &one);
    if (!w) return none;
    float *x = make_x(sh->n * B), *y = sl_malloc_aligned(sizeof(float) * (size_t)(sh->rows * B));
    sl_matmul(pool, t, w, sh->rows, sh->n, x, B, y);
    double vw[64], vc[64], vs[64], flop = 2.0 * (double)sh->rows * (double)sh->n * (double)B;
    for (int r = 0; r < n_runs; r++) {
        double t0 = sl_time_s(), c0 = cpu_s();
        sl_matmul(pool, t, w, sh->rows, sh->n, x, B, y);
        double dt = sl_time_s() - t0, dc = cpu_s() - c0;
        vw[r] = flop / dt / 1e9;
        vc[r] = flop / (dc / nth) / 1e9;
        vs[r] = dc / (dt * nth);
    }
    sl_free_aligned(w);
    sl_free_aligned(x);
    sl_free_aligned(y);
    return rate_median(vw, vc, vs, n_runs);
}

/* ---- attention ---------------------------------------------------------------------------------- */

typedef struct att_task {
    const float *q;        /* [32, 64] */
    const void *kc, *vc;   /* caches */
    bool f16;              /* cache type */
    int n_pos;             /* positions */
    float *out, *att;      /* outputs, scratch */
} att_task;

static void att_worker(void *arg, int ith, int nth) {
    att_task *t = arg;
    sl_attention(t->q, t->kc, t->vc, t->f16, t->n_pos, 32, 4, 64, t->out, t->att, ith, nth);
}

static double bench_attention(sl_pool *pool, bool f16, int n_pos) {
    size_t cache_n = (size_t)n_pos * 4 * 64;
    float *q = make_x(32 * 64), *out = sl_malloc_aligned(sizeof(float) * 32 * 64);
    float *att = sl_malloc_aligned(sizeof(float) * (size_t)n_pos * 4);
    void *kc = sl_malloc_aligned(cache_n * 4), *vc = sl_malloc_aligned(cache_n * 4);
    float *tmp = make_x((int64_t)cache_n);
    for (size_t i = 0; i < cache_n; i++) {
        if (f16) {
            ((uint16_t *)kc)[i] = sl_fp32_to_fp16(tmp[i]);
            ((uint16_t *)vc)[i] = sl_fp32_to_fp16(tmp[cache_n - 1 - i]);
        } else {
            ((float *)kc)[i] = tmp[i];
            ((float *)vc)[i] = tmp[cache_n - 1 - i];
        }
    }
    att_task t = {q, kc, vc, f16, n_pos, out, att};
    double v[64];
    for (int r = 0; r < n_runs; r++) {
        const int reps = 20;
        double t0 = sl_time_s();
        for (int i = 0; i < reps; i++) sl_pool_run(pool, att_worker, &t);
        v[r] = (sl_time_s() - t0) / reps * 1e6;
    }
    sl_free_aligned(q);
    sl_free_aligned(out);
    sl_free_aligned(att);
    sl_free_aligned(kc);
    sl_free_aligned(vc);
    sl_free_aligned(tmp);
    return median(v, n_runs);
}

int main(int argc, char **argv) {
    int threads[8] = {1, 2}, n_threads = 2;
    bool quick = false, one_shape = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            n_runs = atoi(argv[++i]);
            if (n_runs < 1 || n_runs > 64) n_runs = 7;
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            n_threads = 0;
            for (char *p = argv[++i]; *p && n_threads < 8;) {
                threads[n_threads++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
                else break;
            }
        } else if (!strcmp(argv[i], "-v") && i + 1 < argc) {
            const char *v = argv[++i];
            sl_kernel_variant kv = !strcmp(v, "scalar") ? SL_KERNELS_SCALAR
                                   : !strcmp(v, "avx2") ? SL_KERNELS_AVX2
                                   : !strcmp(v, "avx512") ? SL_KERNELS_AVX512 : SL_KERNELS_AUTO;
            if (!sl_kernels_select(kv)) {
                fprintf(stderr, "variant %s not supported on this CPU\n", v);
                return 1;
            }
        } else if (!strcmp(argv[i], "-B") && i + 1 < argc) {
            mm_batch = atoi(argv[++i]);
            if (mm_batch < 1 || mm_batch > 4096) mm_batch = 128;
        } else if (!strcmp(argv[i], "-q")) {
            quick = true;
        } else if (!strcmp(argv[i], "-s")) {
            one_shape = true;
        } else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
            type_filter = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [-t 1,2] [-r runs] [-v auto|scalar|avx2|avx512] [-q] [-s] [-T type,type...]\n", argv[0]);
            return 2;
        }
    }
    printf("# kernels: %s, medians of %d runs\n", sl_kernels_name(sl_kernels_current()), n_runs);
    for (int ti = 0; ti < n_threads; ti++) {
        int nt = threads[ti];
        sl_pool *pool = sl_pool_init(nt);
        if (!pool) return 1;
        printf("\n## %d thread%s\n", nt, nt > 1 ? "s" : "");
        double bw = bench_bandwidth(pool);
        printf("read bandwidth (512 MB sum): %.1f GB/s\n", bw);
        printf("pool round trip (empty task): %.2f us\n", bench_roundtrip(pool));
        printf("\n| decode matvec GB/s: wall [cpu] share |");
        for (int t = 0; t < N_TYPES; t++)
            if (type_selected(types[t])) printf(" %s |", types[t] == SL_TYPE_Q4_0X4 ? "q4_0x4" : sl_type_name(types[t]));
        printf("\n|---|");
        for (int t = 0; t < N_TYPES; t++)
            if (type_selected(types[t])) printf("---|");
        printf("\n");
        int n_shapes = one_shape ? 1 : (int)(sizeof(shapes) / sizeof(shapes[0]));
        for (int s = 0; s < n_shapes; s++) {
            printf("| %s |", shapes[s].name);
            fflush(stdout);
            for (int t = 0; t < N_TYPES; t++) {
                if (!type_selected(types[t])) continue;
                rate g = bench_matvec(pool, types[t], &shapes[s]);
                printf(" %.1f [%.1f] %.2f |", g.wall, g.cpu, g.share);
                fflush(stdout);
            }
            printf("\n");
        }
        printf("(read bandwidth above: %.1f GB/s)\n", bw);
        printf("\n| %s matmul B=%d GFLOP/s: wall [cpu] share |", mm_batch >= 32 ? "prefill" : "batched", mm_batch);
        for (int t = 0; t < N_TYPES; t++)
            if (type_selected(types[t])) printf(" %s |", types[t] == SL_TYPE_Q4_0X4 ? "q4_0x4" : sl_type_name(types[t]));
        printf("\n|---|");
        for (int t = 0; t < N_TYPES; t++)
            if (type_selected(types[t])) printf("---|");
        printf("\n");
        for (int s = 0; s < (one_shape ? 1 : 3); s++) {
            printf("| %s |", shapes[s].name);
            fflush(stdout);
            for (int t = 0; t < N_TYPES; t++) {
                if (!type_selected(types[t])) continue;
                rate g = bench_matmul(pool, types[t], &shapes[s], mm_batch);
                printf(" %.1f [%.1f] %.2f |", g.wall, g.cpu, g.share);
                fflush(stdout);
            }
            printf("\n");
        }
        if (!quick) {
            printf("\nattention, 1 token, 32 heads / 4 KV heads x 64: ");
            for (int f16 = 0; f16 < 2; f16++)
                for (int np = 256; np <= 2048; np *= 8)
                    printf("%s n_pos=%d %.1f us; ", f16 ? "f16" : "f32", np, bench_attention(pool, f16, np));
            printf("\n");
        }
        sl_pool_free(pool);
    }
    return 0;
}
