/*
 * predictor_train.h — the predictor trainer's shared pieces (internal to src/sparse/predictor_*.c):
 * the per-layer random streams, the (x, mask) row store, and the per-layer job that the fitting
 * (predictor_fit.c) and the rule selection (predictor_rule.c) run on. predictor_train.c collects
 * the rows from the model and drives the layers. What it is not: the public API (skipllama.h,
 * sl_train_predictors) or the profile format (profile.c).
 */
#ifndef SL_SPARSE_PREDICTOR_TRAIN_H
#define SL_SPARSE_PREDICTOR_TRAIN_H

#include "format/quant.h"
#include "model/model.h"
#include "skipllama.h"
#include "util/threadpool.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#define BLOCK_ROWS 1024                        /* rows per shuffle block (contiguous in the store) */
#define GROUP_BYTES ((size_t)64 << 20)         /* rows loaded and shuffled together */
#define CHUNK_ROWS 1024                        /* validation rows scored per sl_matmul call */
#define SCORE_CACHE_BYTES ((size_t)256 << 20)  /* validation scores kept between passes up to this */
#define KEY_BINS 65536                         /* radix-select histogram size (16 bits) */
#define MAX_BATCH 65536                        /* upper bound on --batch */


/* ---- random numbers: splitmix64, one stream per layer -------------------------------------- */

typedef struct rng {
    uint64_t s; /* state */
} rng;

static inline uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static inline double rng_open01(rng *r) { return (double)((rng_u64(r) >> 11) + 1) * 0x1.0p-53; }

static inline float rng_normal(rng *r) {
    double u = rng_open01(r), v = rng_open01(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Uniform integer in [0, n) (n >= 1); the modulo bias is irrelevant at these sizes. */
static inline int64_t rng_below(rng *r, int64_t n) { return (int64_t)(rng_u64(r) % (uint64_t)n); }

static inline void shuffle_i64(rng *r, int64_t *v, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rng_below(r, i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---- the (x, mask) store (predictor_store.c) ---------------------------------------------- */

/* Rows of one layer and split are contiguous: region (layer, split) starts at
 * (layer * (n_train + n_val) + (split ? n_train : 0)) * row_bytes. A row is x as f16
 * (little-endian, H values) followed by its labels: for the sign target the mask bits (neuron
 * i = bit i % 8 of byte i / 8), for the contribution target I f16 values whose magnitude is the
 * contribution c_i and whose sign bit is set when the neuron is inactive (gate <= 0). */
typedef struct pair_store {
    int32_t n_layer;   /* layers stored */
    int32_t H, I;      /* row shape: H values of x, I mask bits */
    bool contrib;      /* labels are contributions (else mask bits) */
    size_t mask_bytes; /* bytes of a row's labels: ceil(I / 8), or 2 I for contributions */
    size_t row_bytes;  /* 2 H + mask_bytes */
    int64_t n_rows[2]; /* rows per layer: [0] training, [1] validation */
    uint8_t *mem;      /* every row, when kept in RAM (else NULL) */
    int fd;            /* the unlinked spill file when on disk (else -1) */
} pair_store;

size_t store_offset(const pair_store *s, int layer, int split, int64_t row);
void store_close(pair_store *s);
sl_status store_open(pair_store *s, int32_t n_layer, int32_t H, int32_t I, bool contrib, int64_t n_train, int64_t n_val,
                     int64_t mem_limit, const char *tmp_dir, sl_error *err);
/* Bytes of rows of the store for n_tokens x n_layer (-1 on overflow). */
int64_t store_bytes(int64_t n_tokens, int32_t n_layer, int32_t H, int32_t I, bool contrib);
sl_status store_write(pair_store *s, int layer, int split, int64_t row, int64_t n, const uint8_t *src, sl_error *err);
sl_status store_read(const pair_store *s, int layer, int split, int64_t row, int64_t n, uint8_t *dst, sl_error *err);
int64_t encode_rows(const float *x, const float *gate, const bool *mask, int64_t n, int H, int I, size_t row_bytes,
                           uint8_t *dst);
/* Contribution rows: x [n, H] and c [n, I] (c_i >= 0), active = mask ? mask : (gate > 0) (gate,
 * mask or neither: c_i > 0). Returns the active count. */
int64_t encode_rows_contrib(const float *x, const float *c, const float *gate, const bool *mask, int64_t n, int H, int I,
                            size_t row_bytes, uint8_t *dst);

static inline float row_x(const uint8_t *row, int h) { return sl_fp16_to_fp32((uint16_t)(row[2 * h] | (row[2 * h + 1] << 8))); }
static inline bool bit_at(const uint8_t *m, int i) { return (m[i >> 3] >> (i & 7)) & 1; }
/* Contribution labels: the raw f16 of neuron i, its contribution and its activity. */
static inline uint16_t lab_raw(const uint8_t *m, int i) { return (uint16_t)(m[2 * i] | (m[2 * i + 1] << 8)); }
static inline float lab_contrib(const uint8_t *m, int i) { return sl_fp16_to_fp32((uint16_t)(lab_raw(m, i) & 0x7fffu)); }
static inline bool lab_active(const uint8_t *m, int i) { return !(lab_raw(m, i) & 0x8000u); }

/* ---- one layer ---------------------------------------------------------------------------- */

typedef struct layer_job {
    const pair_store *store;   /* where the rows are */
    int layer;                 /* which layer of the store */
    const sl_train_params *p;  /* hyperparameters */
    int32_t rank;              /* r */
    float pos_weight;          /* BCE weight of positives */
    sl_pool *pool;             /* threads */
} layer_job;

/* Contribution target: the positives per row of the BCE labels and the k of the written rule,
 * round(label_frac * I) clamped to 1..I. */
static inline int32_t sl_train_label_k(const sl_train_params *p, int32_t I) {
    int32_t k = (int32_t)lroundf(p->label_frac * (float)I);
    return k < 1 ? 1 : k > I ? I : k;
}

/* Train A [r, H] and B [I, r] on the training rows of one layer (predictor_fit.c); *mean_loss gets
 * the mean per-element loss of the last epoch. */
sl_status fit_layer(const layer_job *j, rng *g, float *A_out, float *B_out, float *mean_loss, sl_error *err);
/* Choose the rule parameter that reaches the target recall on the validation rows, and fill the
 * report's validation metrics (predictor_rule.c). */
sl_status select_rule(const layer_job *j, const sl_weight *wa, const sl_weight *wb, sl_train_layer_report *rep, sl_error *err);

#endif
