/*
 * test_weights.h — random weight matrices for the operator tests (test_sparse_mlp.c,
 * test_bundle.c): seeded, N(0, scale^2) values encoded in the requested type by the scalar
 * reference quantizer, and sl_weight views on them. Header-only so that testutil stays free of
 * the library.
 */
#ifndef SL_TEST_WEIGHTS_H
#define SL_TEST_WEIGHTS_H

#include "model/model.h"
#include "format/quant.h"
#include "testutil.h"

#include <stdlib.h>

/* rows x cols of `type` (cols a multiple of the type's block size); free() it. */
static inline void *test_rand_weights(sl_type type, int64_t rows, int64_t cols, float scale, test_rng *r) {
    size_t rb = sl_type_row_size(type, cols);
    uint8_t *m = malloc(rb * (size_t)rows);
    float *tmp = malloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t c = 0; c < cols; c++) tmp[c] = scale * test_rng_normal(r);
        sl_quantize_row_ref(type, tmp, m + (size_t)i * rb, cols);
    }
    free(tmp);
    return m;
}

static inline sl_weight test_weight_view(const void *data, sl_type type, int64_t rows, int64_t cols) {
    return sl_weight_view(data, type, rows, cols);
}

#endif
