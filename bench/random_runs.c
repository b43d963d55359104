/*
 * random_runs.c — how fast one thread reads memory as the sparse MLP does: runs of a few KiB
 * (one bundled neuron) at random positions in ascending order, against one sequential stream of
 * the same bytes. No arithmetic beyond an add per 64 bytes, so the numbers are the memory
 * system's, not the kernels'. What it is for: telling whether a sparse/dense bandwidth ratio
 * below 1 is the kernels' fault. Not a test; not part of the library.
 *
 * usage: build/bench/random_runs [RUN_BYTES [PREFETCH_RUNS_AHEAD [ACTIVE_FRACTION]]]
 *   defaults 6528 (a Q8_0 neuron of Llama-3.2-1B: gate, up, down_t rows of 2048), 8, 0.5.
 * Prints the best of 10 passes over 12 copies of 8192 runs (huge pages where the kernel allows).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Sum of the 64-byte words in [p, p + n): keeps the loads alive. */
static uint64_t touch(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t o = 0; o + 64 <= n; o += 64) {
        uint64_t v;
        memcpy(&v, p + o, sizeof(v));
        s += v;
    }
    return s;
}

int main(int argc, char **argv) {
    const size_t run = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) / 64 * 64 : 6528;
    const int ahead = argc > 2 ? atoi(argv[2]) : 8;
    const double frac = argc > 3 ? atof(argv[3]) : 0.5;
    const int I = 8192, L = 12;
    if (run < 64 || run > (1u << 20) || ahead < 0 || !(frac > 0 && frac <= 1)) {
        fprintf(stderr, "usage: random_runs [RUN_BYTES 64..1048576 [PREFETCH_RUNS_AHEAD >= 0 [ACTIVE_FRACTION (0, 1]]]]\n");
        return 2;
    }
    const size_t layer = (size_t)I * run, bytes = layer * L;
    uint8_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int32_t *idx = malloc((size_t)I * sizeof(int32_t));
    if (mem == MAP_FAILED || !idx) {
        fprintf(stderr, "random_runs: cannot allocate %zu bytes\n", bytes);
        return 1;
    }
    madvise(mem, bytes, MADV_HUGEPAGE);
    memset(mem, 1, bytes);
    srand(1);
    int n = 0;
    for (int i = 0; i < I; i++)
        if (rand() < frac * RAND_MAX) idx[n++] = i;
    double best_runs = 1e30, best_seq = 1e30;
    uint64_t sink = 0;
    for (int pass = 0; pass < 10; pass++)
        for (int l = 0; l < L; l++) {
            const uint8_t *base = mem + (size_t)l * layer;
            double t0 = now_s();
            for (int k = 0; k < n; k++) {
                if (ahead > 0 && k + ahead < n) {
                    const uint8_t *q = base + (size_t)idx[k + ahead] * run;
                    for (size_t o = 0; o < run; o += 64) __builtin_prefetch(q + o, 0, 2); /* to L2, as the kernels do */
                }
                sink += touch(base + (size_t)idx[k] * run, run);
            }
            double t = now_s() - t0;
            if (t < best_runs) best_runs = t;
            t0 = now_s();
            sink += touch(base, (size_t)n * run);
            t = now_s() - t0;
            if (t < best_seq) best_seq = t;
        }
    const double total = (double)n * (double)run;
    printf("runs of %zu bytes, %.0f%% of %d, prefetch %d runs ahead: random runs %.1f GB/s, sequential %.1f GB/s, ratio %.2f (%llu)\n",
           run, frac * 100, I, ahead, total / best_runs * 1e-9, total / best_seq * 1e-9, best_seq / best_runs,
           (unsigned long long)(sink & 1));
    munmap(mem, bytes);
    free(idx);
    return 0;
}
