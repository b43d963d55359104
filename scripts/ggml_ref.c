/*
 * ggml_ref.c — writes tests/data/quant_ref.bin: ggml's own quantizer, dequantizers, activation
 * quantizers and vec_dot results for every weight type skipllama reads, on fixed inputs, taken
 * from llama.cpp's libraries in the npm package node-llama-cpp (the oracle: a folder
 * where `npm install node-llama-cpp` ran). A reference tool beside the project, never built by make or run by
 * the tests: tests/test_quant.c reads the file it wrote.
 *
 * Build and run (from the repository root, with the oracle installed at $ORACLE):
 *   cc -O1 -o /tmp/ggml_ref scripts/ggml_ref.c -ldl -lm
 *   BINS=$(ls -d $ORACLE/node_modules/@node-llama-cpp/linux-x64/bins/*) /tmp/ggml_ref $BINS tests/data/quant_ref.bin
 *
 * File (little-endian): "SLQREF1\0", u32 n, u32 rows, f32 input[rows][n]; u32 count, then per
 * type: u32 ggml type, u32 row bytes, bytes[rows][row bytes] (ggml_quantize_chunk, no importance
 * matrix), f32 dequantized[rows][n] (ggml's to_float); then per activation format (Q8_0, Q8_1,
 * Q8_K): u32 type, u32 row bytes, bytes[rows][row bytes] (the CPU backend's from_float); then
 * per weight type again: u32 type, f32 dot[rows][rows] = vec_dot(weight row i, activation row j)
 * with the CPU backend's vec_dot_type activations.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 512
#define ROWS 8

typedef struct {
    const char *type_name;
    int64_t blck_size, blck_size_interleave;
    size_t type_size;
    _Bool is_quantized;
    void (*to_float)(const void *, float *, int64_t);
    void (*from_float_ref)(const float *, void *, int64_t);
} type_traits;
typedef struct {
    void (*from_float)(const float *, void *, int64_t);
    void (*vec_dot)(int, float *, size_t, const void *, size_t, const void *, size_t, int);
    int vec_dot_type;
    int64_t nrows;
} cpu_traits;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) { fprintf(stderr, "missing symbol %s\n", name); exit(1); }
    return p;
}
static void w32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s BINS_DIR OUT\n", argv[0]); return 2; }
    char path[4096];
    snprintf(path, sizeof path, "%s/libggml-base.so", argv[1]);
    void *base = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    snprintf(path, sizeof path, "%s/libggml-cpu-haswell.so", argv[1]);
    void *cpu = base ? dlopen(path, RTLD_NOW | RTLD_GLOBAL) : NULL;
    if (!base || !cpu) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    void (*cpu_init)(void) = (void (*)(void))dlsym(cpu, "ggml_cpu_init");
    if (cpu_init) cpu_init();
    const type_traits *(*traits)(int) = (const type_traits *(*)(int))sym(base, "ggml_get_type_traits");
    const cpu_traits *(*ctraits)(int) = (const cpu_traits *(*)(int))sym(cpu, "ggml_get_type_traits_cpu");
    size_t (*qchunk)(int, const float *, void *, int64_t, int64_t, int64_t, const float *) =
        (size_t (*)(int, const float *, void *, int64_t, int64_t, int64_t, const float *))sym(base, "ggml_quantize_chunk");
    void (*qinit)(int) = (void (*)(int))sym(base, "ggml_quantize_init");

    static float in[ROWS][N];
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < N; j++) {
            float v = nrand();
            switch (r) {
            case 0: break;
            case 1: v *= 0.02f; break;
            case 2: v = j < 256 ? 0.0f : v; break;
            case 3: v = (j % 32 == 7) ? 50.0f * v : v; break;
            case 4: v = fabsf(v); break;
            case 5: v = -fabsf(v) * 1e-3f; if (j % 5 == 0) v = -2.5e-4f; break;
            case 6: v = (j < 256) ? 0.5f : -0.25f; break;
            case 7: v = v * v * v; break;
            }
            in[r][j] = v;
        }
    FILE *f = fopen(argv[2], "wb");
    if (!f) { perror(argv[2]); return 1; }
    fwrite("SLQREF1", 8, 1, f);
    w32(f, N), w32(f, ROWS);
    fwrite(in, sizeof in, 1, f);
    static const int types[] = {2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20, 23}; /* q4_0 q4_1 q5_0 q5_1 q8_0 q2_K..q6_K iq4_nl iq4_xs */
    const int nt = (int)(sizeof types / sizeof types[0]);
    w32(f, (uint32_t)nt);
    static uint8_t q[ROWS][N * 2];
    static float deq[ROWS][N];
    for (int k = 0; k < nt; k++) {
        const type_traits *t = traits(types[k]);
        const size_t rb = (size_t)(N / t->blck_size) * t->type_size;
        qinit(types[k]);
        for (int r = 0; r < ROWS; r++) {
            qchunk(types[k], in[r], q[r], 0, 1, N, NULL);
            t->to_float(q[r], deq[r], N);
        }
        w32(f, (uint32_t)types[k]), w32(f, (uint32_t)rb);
        for (int r = 0; r < ROWS; r++) fwrite(q[r], rb, 1, f);
        fwrite(deq, sizeof deq, 1, f);
    }
    static const int acts[] = {8, 9, 15}; /* q8_0 q8_1 q8_K */
    static uint8_t act[3][ROWS][N * 2];
    for (int k = 0; k < 3; k++) {
        const type_traits *t = traits(acts[k]);
        const size_t rb = (size_t)(N / t->blck_size) * t->type_size;
        for (int r = 0; r < ROWS; r++) ctraits(acts[k])->from_float(in[r], act[k][r], N);
        w32(f, (uint32_t)acts[k]), w32(f, (uint32_t)rb);
        for (int r = 0; r < ROWS; r++) fwrite(act[k][r], rb, 1, f);
    }
    for (int k = 0; k < nt; k++) {
        const cpu_traits *c = ctraits(types[k]);
        const int ai = c->vec_dot_type == 8 ? 0 : c->vec_dot_type == 9 ? 1 : 2;
        for (int r = 0; r < ROWS; r++) qchunk(types[k], in[r], q[r], 0, 1, N, NULL);
        w32(f, (uint32_t)types[k]);
        for (int i = 0; i < ROWS; i++)
            for (int j = 0; j < ROWS; j++) {
                float s;
                c->vec_dot(N, &s, 0, q[i], 0, act[ai][j], 0, 1);
                fwrite(&s, 4, 1, f);
            }
        fprintf(stderr, "%s: vec_dot_type %d\n", traits(types[k])->type_name, c->vec_dot_type);
    }
    fclose(f);
    return 0;
}
