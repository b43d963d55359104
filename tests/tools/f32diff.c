/*
 * f32diff.c — compare two little-endian float32 files: `f32diff A B TOL [--rows N]`.
 * Prints the max abs difference; exits 0 when the sizes match and maxdiff <= TOL, else 1.
 * Used by the CLI tests (tests/cli_tests.sh) to check `skipllama logits` output.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *load(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *p = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (p && fread(p, 1, (size_t)bytes, f) != (size_t)bytes) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = bytes / 4;
    return p;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: f32diff A B TOL\n");
        return 2;
    }
    long na, nb;
    float *a = load(argv[1], &na), *b = load(argv[2], &nb);
    double tol = atof(argv[3]);
    if (!a || !b || na != nb || na == 0) {
        printf("f32diff: cannot compare %s (%ld floats) with %s (%ld floats)\n", argv[1], na, argv[2], nb);
        free(a);
        free(b);
        return 1;
    }
    double m = 0;
    for (long i = 0; i < na; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) d = INFINITY;
        if (d > m) m = d;
    }
    printf("maxdiff %.3g (tol %.3g, %ld floats)\n", m, tol, na);
    free(a);
    free(b);
    return m <= tol ? 0 : 1;
}
