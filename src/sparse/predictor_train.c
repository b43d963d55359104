/*
 * predictor_train.c — training the skip model's low-rank predictors: run the dense model over a
 * text, record for every token and layer the MLP input x (after ffn_norm) and the true
 * activation mask (gate pre-activation > 0), fit per layer score = B (A x) (A [r, H], B [I, r],
 * no bias: the gate itself has none) with a class-weighted binary cross-entropy on the logits
 * (Deja Vu's recipe) and AdamW, then choose on held-out windows the rule parameter (threshold,
 * k) that reaches the target recall and write predictors, rules and validation metrics into a
 * profile.
 *
 * Memory. The pairs are stored compactly — x as f16, the mask as bits — so one row is
 * 2 H + ceil(I / 8) bytes and the whole collection tokens x layers x (2 H + ceil(I / 8)) bytes.
 * It stays in RAM when that fits under params.mem_limit; otherwise it goes to an unlinked temp
 * file (pwrite while collecting, pread while training). Training then holds a shuffle group of
 * at most GROUP_BYTES of rows, one mini-batch, the parameters and at most SCORE_CACHE_BYTES of
 * validation scores; docs/predictor-training.md has the full formula.
 *
 * Determinism. Every random draw comes from a per-layer stream seeded by (seed, layer); every
 * product goes through sl_matmul, whose outputs are each computed by one thread in a fixed
 * order; the element-wise steps write disjoint outputs; validation counts are integers. So the
 * same seed gives the same profile bytes for any thread count (on the same kernel variant);
 * only the reported training loss, a sum of per-thread partials, may differ in its last digits.
 *
 * What it is not: the use of predictors while decoding (skip.c) or the file format (profile.c).
 */
#include "model/context.h"
#include "kernels/kernels.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "format/quant.h"
#include "util/threadpool.h"
#include "util/util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static double rng_open01(rng *r) { return (double)((rng_u64(r) >> 11) + 1) * 0x1.0p-53; }

static float rng_normal(rng *r) {
    double u = rng_open01(r), v = rng_open01(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Uniform integer in [0, n) (n >= 1); the modulo bias is irrelevant at these sizes. */
static int64_t rng_below(rng *r, int64_t n) { return (int64_t)(rng_u64(r) % (uint64_t)n); }

static void shuffle_i64(rng *r, int64_t *v, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rng_below(r, i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---- parameters ------------------------------------------------------------------------------ */

sl_train_params sl_train_default_params(void) {
    sl_train_params p;
    memset(&p, 0, sizeof(p));
    p.rank_frac = 0.04f;
    p.epochs = 4;
    p.lr = 3e-3f;
    p.weight_decay = 0.01f;
    p.batch = 256;
    p.val_frac = 0.1f;
    p.target_recall = 0.99f;
    p.rule = SL_RULE_PRED_THRESHOLD;
    p.type = SL_TYPE_F32;
    p.seed = 1;
    p.n_threads = 1;
    p.mem_limit = (int64_t)1 << 30;
    return p;
}

int64_t sl_train_store_bytes(int64_t n_tokens, int32_t n_layer, int32_t n_embd, int32_t n_ff) {
    if (n_tokens < 0 || n_layer < 0 || n_embd < 0 || n_ff < 0) return -1;
    const int64_t row = 2 * (int64_t)n_embd + ((int64_t)n_ff + 7) / 8;
    if (n_tokens && row && (int64_t)n_layer > INT64_MAX / row / n_tokens) return -1;
    return n_tokens * n_layer * row;
}

int32_t sl_train_rank(const sl_train_params *p, int32_t n_embd, int32_t n_ff) {
    int32_t r = p->rank;
    if (r <= 0) {
        /* nearest multiple of 16 (SIMD-friendly, and what Q8_0's blocks of 32 half need) */
        double want = (double)p->rank_frac * n_ff;
        r = (int32_t)lround(want / 16.0) * 16;
        if (r < 16) r = 16;
        if (p->type == SL_TYPE_Q8_0) r = (r + 31) / 32 * 32;
        if (r > n_embd) r = n_embd; /* an explicit rank above n_embd is an error instead (check_params) */
    }
    return r;
}

static sl_status check_params(const sl_train_params *p, int32_t H, int32_t I, int32_t rank, sl_error *err) {
    if (p->rule != SL_RULE_PRED_THRESHOLD && p->rule != SL_RULE_PRED_TOPK && p->rule != SL_RULE_PRED_STAT_TOPK)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rule must be threshold, topk or stat-topk");
    if (p->type != SL_TYPE_F32 && p->type != SL_TYPE_F16 && p->type != SL_TYPE_BF16 && p->type != SL_TYPE_Q8_0)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "train: predictor type must be f32, f16, bf16 or q8_0");
    if (p->type == SL_TYPE_Q8_0 && (H % 32 || rank % 32))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: q8_0 predictors need n_embd (%d) and rank (%d) to be multiples of 32", H,
                            rank);
    if (rank < 1 || rank > H)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rank %d outside 1..%d (n_embd)", rank, H);
    if (p->rank <= 0 && !(p->rank_frac > 0.0f && p->rank_frac <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: rank_frac %g outside (0, 1]", (double)p->rank_frac);
    if (p->epochs < 1 || p->epochs > 100000) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: epochs %d outside 1..100000", p->epochs);
    if (!(p->lr > 0.0f) || isinf(p->lr)) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: learning rate must be > 0");
    if (!(p->weight_decay >= 0.0f) || isinf(p->weight_decay))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: weight decay must be >= 0");
    if (p->batch < 1 || p->batch > MAX_BATCH) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: batch %d outside 1..%d", p->batch, MAX_BATCH);
    if (!(p->pos_weight >= 0.0f) || isinf(p->pos_weight))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: pos_weight must be >= 0 (0 = automatic)");
    if (!(p->target_recall > 0.0f && p->target_recall <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: target recall %g outside (0, 1]", (double)p->target_recall);
    if (!(p->val_frac > 0.0f && p->val_frac < 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: validation fraction %g outside (0, 1)", (double)p->val_frac);
    if (p->mem_limit < 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: mem_limit must be >= 0");
    return SL_OK;
}

/* ---- the (x, mask) store ---------------------------------------------------------------------- */

/* Rows of one layer and split are contiguous: region (layer, split) starts at
 * (layer * (n_train + n_val) + (split ? n_train : 0)) * row_bytes. A row is x as f16
 * (little-endian, H values) followed by the mask bits (neuron i = bit i % 8 of byte i / 8). */
typedef struct pair_store {
    int32_t n_layer;   /* layers stored */
    int32_t H, I;      /* row shape: H values of x, I mask bits */
    size_t mask_bytes; /* ceil(I / 8) */
    size_t row_bytes;  /* 2 H + mask_bytes */
    int64_t n_rows[2]; /* rows per layer: [0] training, [1] validation */
    uint8_t *mem;      /* every row, when kept in RAM (else NULL) */
    int fd;            /* the unlinked spill file when on disk (else -1) */
} pair_store;

static size_t store_offset(const pair_store *s, int layer, int split, int64_t row) {
    return ((size_t)layer * (size_t)(s->n_rows[0] + s->n_rows[1]) + (size_t)(split ? s->n_rows[0] : 0) + (size_t)row) * s->row_bytes;
}

static void store_close(pair_store *s) {
    sl_free_aligned(s->mem);
    if (s->fd >= 0) close(s->fd);
    s->mem = NULL;
    s->fd = -1;
}

static sl_status store_open(pair_store *s, int32_t n_layer, int32_t H, int32_t I, int64_t n_train, int64_t n_val, int64_t mem_limit,
                            const char *tmp_dir, sl_error *err) {
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->n_layer = n_layer;
    s->H = H;
    s->I = I;
    s->mask_bytes = ((size_t)I + 7) / 8;
    s->row_bytes = 2 * (size_t)H + s->mask_bytes;
    s->n_rows[0] = n_train;
    s->n_rows[1] = n_val;
    int64_t total = sl_train_store_bytes(n_train + n_val, n_layer, H, I);
    if (total < 0 || (uint64_t)total > (uint64_t)SIZE_MAX / 2)
        return sl_set_error(err, SL_ERR_NOMEM, "train: %lld tokens x %d layers do not fit in a byte count", (long long)(n_train + n_val),
                            n_layer);
    if (total <= mem_limit) {
        s->mem = sl_malloc_aligned(total ? (size_t)total : 1);
        if (s->mem) return SL_OK;
        /* RAM refused: fall through to the file */
    }
    const char *dir = tmp_dir && *tmp_dir ? tmp_dir : getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/skipllama-train-XXXXXX", dir) >= (int)sizeof(path))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: temp directory path too long");
    s->fd = mkstemp(path);
    if (s->fd < 0) return sl_set_error(err, SL_ERR_IO, "train: cannot create a temp file in %s: %s", dir, strerror(errno));
    unlink(path); /* gone when closed, even if the process is killed */
    return SL_OK;
}

static sl_status store_write(pair_store *s, int layer, int split, int64_t row, int64_t n, const uint8_t *src, sl_error *err) {
    size_t off = store_offset(s, layer, split, row), bytes = (size_t)n * s->row_bytes;
    if (s->mem) {
        memcpy(s->mem + off, src, bytes);
        return SL_OK;
    }
    while (bytes) {
        ssize_t w = pwrite(s->fd, src, bytes, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return sl_set_error(err, SL_ERR_IO, "train: writing the temp file failed: %s", w < 0 ? strerror(errno) : "no space");
        src += w;
        off += (size_t)w;
        bytes -= (size_t)w;
    }
    return SL_OK;
}

static sl_status store_read(const pair_store *s, int layer, int split, int64_t row, int64_t n, uint8_t *dst, sl_error *err) {
    size_t off = store_offset(s, layer, split, row), bytes = (size_t)n * s->row_bytes;
    if (s->mem) {
        memcpy(dst, s->mem + off, bytes);
        return SL_OK;
    }
    while (bytes) {
        ssize_t r = pread(s->fd, dst, bytes, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return sl_set_error(err, SL_ERR_IO, "train: reading the temp file failed: %s", r < 0 ? strerror(errno) : "short file");
        dst += r;
        off += (size_t)r;
        bytes -= (size_t)r;
    }
    return SL_OK;
}

/* Encode n rows (x [n, H], active mask [n, I] as bools or gate > 0) into dst; returns positives. */
static int64_t encode_rows(const float *x, const float *gate, const bool *mask, int64_t n, int H, int I, size_t row_bytes,
                           uint8_t *dst) {
    int64_t pos = 0;
    const size_t mb = ((size_t)I + 7) / 8;
    for (int64_t b = 0; b < n; b++) {
        uint8_t *row = dst + (size_t)b * row_bytes;
        const float *xr = x + (size_t)b * H;
        for (int h = 0; h < H; h++) {
            uint16_t v = sl_fp32_to_fp16(xr[h]);
            row[2 * h] = (uint8_t)(v & 0xff);
            row[2 * h + 1] = (uint8_t)(v >> 8);
        }
        uint8_t *m = row + 2 * (size_t)H;
        memset(m, 0, mb);
        for (int i = 0; i < I; i++) {
            bool on = mask ? mask[(size_t)b * I + i] : gate[(size_t)b * I + i] > 0.0f;
            if (on) {
                m[i >> 3] |= (uint8_t)(1u << (i & 7));
                pos++;
            }
        }
    }
    return pos;
}

static inline float row_x(const uint8_t *row, int h) { return sl_fp16_to_fp32((uint16_t)(row[2 * h] | (row[2 * h + 1] << 8))); }
static inline bool bit_at(const uint8_t *m, int i) { return (m[i >> 3] >> (i & 7)) & 1; }

/* ---- training one layer ----------------------------------------------------------------------- */

/* A mini-batch is cut into micro-batches of MICRO_ROWS rows (the last may be shorter); each
 * micro-batch's gradient is computed by one thread into its own slot, and the slots are summed
 * in micro-batch order. The split depends only on the batch, never on the thread count, so the
 * result does not either — and a step costs two thread-pool round trips, not ten. */
#define MICRO_ROWS 64

/* One thread's buffers for a micro-batch of m <= MICRO_ROWS rows (row strides are m). */
typedef struct fit_scratch {
    float *X;   /* [m, H] x */
    float *XT;  /* [H, m] x transposed */
    float *hT;  /* [r, m] (A x)^T */
    float *h;   /* [m, r] A x */
    float *S;   /* [m, I] scores */
    float *dS;  /* [m, I] d loss / d score */
    float *dST; /* [I, m] transposed */
    float *dhT; /* [r, m] d loss / d (A x), transposed */
    uint8_t *Y; /* [m, mask bytes] labels */
} fit_scratch;

typedef struct fit_state {
    sl_pool *pool;       /* threads */
    int H, I, r;         /* shapes */
    int64_t nb;          /* rows per full mini-batch */
    size_t row_bytes;    /* encoded row size */
    size_t mask_bytes;   /* ceil(I / 8) */
    float pos_weight;    /* BCE weight of positive labels */
    float *A;            /* [r, H] first factor */
    float *B;            /* [I, r] second factor */
    float *BT;           /* [r, I] B transposed (kept in step with B) */
    float *mA, *vA;      /* AdamW moments of A */
    float *mB, *vB;      /* AdamW moments of B */
    int n_slots;         /* micro-batches in a full batch */
    float *gA;           /* [n_slots, r, H] per-micro-batch gradients of A */
    float *gBT;          /* [n_slots, r, I] per-micro-batch gradients of B, transposed */
    double *loss;        /* [n_slots] per-micro-batch loss sums */
    fit_scratch *ws;     /* [threads] */
    /* the current batch */
    const uint8_t *rows; /* encoded rows of the shuffle group */
    const int64_t *sel;  /* this batch's row indices into rows */
    int64_t n;           /* rows in this batch */
    bool want_loss;      /* also sum the loss (costs a log per element) */
    /* the current optimiser step */
    float lr;            /* learning rate of this step */
    float wd;            /* decoupled weight decay */
    float bc1, bc2;      /* bias corrections 1 - beta^t */
} fit_state;

#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f

static void transpose(const float *src, int64_t rows, int64_t cols, float *dst) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[(size_t)j * rows + i] = src[(size_t)i * cols + j];
}

/* The gradient of micro-batch s into slot s. Weighted BCE on the logits:
 * loss = w y softplus(-s) + (1 - y) softplus(s); d/ds = w y (sigmoid(s) - 1) + (1 - y) sigmoid(s),
 * divided by the batch's row count (mean over rows, sum over neurons). */
static void micro_grad(fit_state *f, fit_scratch *w, int s) {
    const int H = f->H, I = f->I, r = f->r;
    const int64_t b0 = (int64_t)s * MICRO_ROWS, m = f->n - b0 < MICRO_ROWS ? f->n - b0 : MICRO_ROWS;
    const size_t mb = f->mask_bytes;
    for (int64_t b = 0; b < m; b++) {
        const uint8_t *row = f->rows + (size_t)f->sel[b0 + b] * f->row_bytes;
        float *x = w->X + (size_t)b * H;
        for (int k = 0; k < H; k++) {
            x[k] = row_x(row, k);
            w->XT[(size_t)k * m + b] = x[k];
        }
        memcpy(w->Y + (size_t)b * mb, row + 2 * (size_t)H, mb);
    }
    sl_matmul(NULL, SL_TYPE_F32, w->X, m, H, f->A, r, w->hT); /* hT[j, b] = A_j . x_b */
    transpose(w->hT, r, m, w->h);
    sl_matmul(NULL, SL_TYPE_F32, f->B, I, r, w->h, m, w->S); /* S[b, i] = B_i . h_b */
    const float inv_n = 1.0f / (float)f->n, pw = f->pos_weight;
    double loss = 0.0;
    for (int64_t b = 0; b < m; b++) {
        const float *sc = w->S + (size_t)b * I;
        float *g = w->dS + (size_t)b * I;
        const uint8_t *y = w->Y + (size_t)b * mb;
        for (int i = 0; i < I; i++) {
            const float z = sc[i], e = expf(-fabsf(z));
            const float sig = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            const bool pos = bit_at(y, i);
            g[i] = (pos ? pw * (sig - 1.0f) : sig) * inv_n;
            w->dST[(size_t)i * m + b] = g[i];
            if (f->want_loss) loss += pos ? pw * (fmaxf(-z, 0.0f) + log1pf(e)) : fmaxf(z, 0.0f) + log1pf(e);
        }
    }
    f->loss[s] = loss;
    float *gBT = f->gBT + (size_t)s * r * I, *gA = f->gA + (size_t)s * r * H;
    sl_matmul(NULL, SL_TYPE_F32, w->dST, I, m, w->hT, r, gBT);  /* dB[i, j] = sum_b dS[b, i] h[b, j] */
    sl_matmul(NULL, SL_TYPE_F32, w->dS, m, I, f->BT, r, w->dhT); /* dh[b, j] = sum_i dS[b, i] B[i, j] */
    sl_matmul(NULL, SL_TYPE_F32, w->XT, H, m, w->dhT, r, gA);   /* dA[j, k] = sum_b dh[b, j] x[b, k] */
}

static void task_grad(void *arg, int ith, int nth) {
    fit_state *f = arg;
    const long long slots = (f->n + MICRO_ROWS - 1) / MICRO_ROWS;
    long long s0, s1;
    sl_split_range(slots, ith, nth, &s0, &s1);
    for (long long s = s0; s < s1; s++) micro_grad(f, &f->ws[ith], (int)s);
}

static void adam_update(float *p, float *m, float *v, float g, const fit_state *f) {
    *m = ADAM_B1 * *m + (1.0f - ADAM_B1) * g;
    *v = ADAM_B2 * *v + (1.0f - ADAM_B2) * g * g;
    const float mh = *m / f->bc1, vh = *v / f->bc2;
    *p -= f->lr * (mh / (sqrtf(vh) + ADAM_EPS) + f->wd * *p);
}

/* Sum the slots in order and take the AdamW step; B's transpose follows B. */
static void task_adam(void *arg, int ith, int nth) {
    fit_state *f = arg;
    const int slots = (int)((f->n + MICRO_ROWS - 1) / MICRO_ROWS);
    const long long nA = (long long)f->r * f->H, nB = (long long)f->I * f->r;
    long long k0, k1;
    sl_split_range(nA + nB, ith, nth, &k0, &k1);
    for (long long k = k0; k < k1; k++) {
        if (k < nA) {
            float g = 0.0f;
            for (int s = 0; s < slots; s++) g += f->gA[(size_t)s * nA + k];
            adam_update(&f->A[k], &f->mA[k], &f->vA[k], g, f);
        } else {
            const long long e = k - nA, i = e / f->r, j = e % f->r;
            const size_t t = (size_t)j * f->I + (size_t)i;
            float g = 0.0f;
            for (int s = 0; s < slots; s++) g += f->gBT[(size_t)s * nB + t];
            adam_update(&f->B[e], &f->mB[e], &f->vB[e], g, f);
            f->BT[t] = f->B[e];
        }
    }
}

/* One AdamW step on the batch f->rows[f->sel[0 .. n)]; returns the batch's summed loss (0 unless
 * want_loss). */
static double fit_step(fit_state *f) {
    sl_pool_run(f->pool, task_grad, f);
    sl_pool_run(f->pool, task_adam, f);
    double loss = 0.0;
    for (int64_t s = 0; s < (f->n + MICRO_ROWS - 1) / MICRO_ROWS; s++) loss += f->loss[s];
    return loss;
}

static void fit_free(fit_state *f) {
    float *bufs[] = {f->A, f->B, f->BT, f->mA, f->vA, f->mB, f->vB, f->gA, f->gBT};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) sl_free_aligned(bufs[i]);
    if (f->ws)
        for (int t = 0; t < sl_pool_n_threads(f->pool); t++) {
            fit_scratch *w = &f->ws[t];
            float *wb[] = {w->X, w->XT, w->hT, w->h, w->S, w->dS, w->dST, w->dhT};
            for (size_t i = 0; i < sizeof(wb) / sizeof(wb[0]); i++) sl_free_aligned(wb[i]);
            sl_free_aligned(w->Y);
        }
    free(f->ws);
    free(f->loss);
}

static sl_status fit_alloc(fit_state *f, sl_pool *pool, int H, int I, int r, int64_t nb, size_t row_bytes, sl_error *err) {
    memset(f, 0, sizeof(*f));
    f->pool = pool;
    f->H = H;
    f->I = I;
    f->r = r;
    f->nb = nb;
    f->row_bytes = row_bytes;
    f->mask_bytes = ((size_t)I + 7) / 8;
    f->n_slots = (int)((nb + MICRO_ROWS - 1) / MICRO_ROWS);
    const size_t sH = (size_t)H, sI = (size_t)I, sr = (size_t)r, sm = MICRO_ROWS, ns = (size_t)f->n_slots;
    const int nth = sl_pool_n_threads(pool);
    bool ok = true;
    float **pa[] = {&f->A, &f->mA, &f->vA};
    for (size_t i = 0; i < 3; i++) ok = ok && (*pa[i] = sl_calloc_array(sr * sH, sizeof(float)));
    float **pb[] = {&f->B, &f->BT, &f->mB, &f->vB};
    for (size_t i = 0; i < 4; i++) ok = ok && (*pb[i] = sl_calloc_array(sr * sI, sizeof(float)));
    ok = ok && (f->gA = sl_calloc_array(ns * sr * sH, sizeof(float)));
    ok = ok && (f->gBT = sl_calloc_array(ns * sr * sI, sizeof(float)));
    ok = ok && (f->loss = calloc(ns, sizeof(double)));
    ok = ok && (f->ws = calloc((size_t)nth, sizeof(fit_scratch)));
    for (int t = 0; ok && t < nth; t++) {
        fit_scratch *w = &f->ws[t];
        ok = (w->X = sl_calloc_array(sm * sH, sizeof(float))) && (w->XT = sl_calloc_array(sm * sH, sizeof(float))) &&
             (w->hT = sl_calloc_array(sm * sr, sizeof(float))) && (w->h = sl_calloc_array(sm * sr, sizeof(float))) &&
             (w->dhT = sl_calloc_array(sm * sr, sizeof(float))) && (w->S = sl_calloc_array(sm * sI, sizeof(float))) &&
             (w->dS = sl_calloc_array(sm * sI, sizeof(float))) && (w->dST = sl_calloc_array(sm * sI, sizeof(float))) &&
             (w->Y = sl_calloc_array(sm * f->mask_bytes, 1));
    }
    if (!ok) {
        fit_free(f);
        return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory for a rank-%d predictor with batches of %lld", r, (long long)nb);
    }
    return SL_OK;
}

/* Learning rate at step t of T: linear warm-up over the first 5% (at most 200 steps), then
 * cosine decay to 5% of the peak. */
static float lr_at(float peak, int64_t t, int64_t T) {
    int64_t warm = T / 20 < 200 ? T / 20 : 200;
    if (warm > 0 && t < warm) return peak * (float)(t + 1) / (float)warm;
    double p = T > warm ? (double)(t - warm) / (double)(T - warm) : 1.0;
    return peak * (float)(0.05 + 0.95 * 0.5 * (1.0 + cos(3.141592653589793 * p)));
}

typedef struct layer_job {
    const pair_store *store;   /* where the rows are */
    int layer;                 /* which layer of the store */
    const sl_train_params *p;  /* hyperparameters */
    int32_t rank;              /* r */
    float pos_weight;          /* BCE weight of positives */
    sl_pool *pool;             /* threads */
} layer_job;

/* Mini-batches in one epoch whose blocks come in `order`, grouped group_blocks at a time. */
static int64_t group_steps(const int64_t *order, int64_t n_blocks, int64_t group_blocks, int64_t n_rows, int64_t nb) {
    int64_t steps = 0;
    for (int64_t g0 = 0; g0 < n_blocks; g0 += group_blocks) {
        int64_t rows = 0;
        for (int64_t k = g0; k < n_blocks && k < g0 + group_blocks; k++) {
            int64_t r0 = order[k] * BLOCK_ROWS;
            rows += n_rows - r0 < BLOCK_ROWS ? n_rows - r0 : BLOCK_ROWS;
        }
        steps += (rows + nb - 1) / nb;
    }
    return steps;
}

/* Train A [r, H] and B [I, r] on the training rows of one layer. *mean_loss gets the mean
 * per-element loss of the last epoch. */
static sl_status fit_layer(const layer_job *j, rng *g, float *A_out, float *B_out, float *mean_loss, sl_error *err) {
    const pair_store *s = j->store;
    const sl_train_params *p = j->p;
    const int H = s->H, I = s->I, r = j->rank;
    const int64_t n_rows = s->n_rows[0];
    if (n_rows < 1) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: no training rows");
    const int64_t nb = p->batch < n_rows ? p->batch : n_rows;
    fit_state f;
    sl_status st = fit_alloc(&f, j->pool, H, I, r, nb, s->row_bytes, err);
    if (st) return st;
    /* A ~ N(0, 1/H): with x of unit RMS (after ffn_norm) each h_j starts with unit-order
     * variance; B = 0, so the first steps fit B on a random projection and A follows. */
    const float a_std = 1.0f / sqrtf((float)H);
    for (size_t k = 0; k < (size_t)r * H; k++) f.A[k] = a_std * rng_normal(g);
    f.pos_weight = j->pos_weight;
    f.wd = p->weight_decay;

    const int64_t n_blocks = (n_rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    size_t group_blocks = GROUP_BYTES / ((size_t)BLOCK_ROWS * s->row_bytes);
    if (group_blocks < 1) group_blocks = 1;
    if ((int64_t)group_blocks > n_blocks) group_blocks = (size_t)n_blocks;
    const size_t group_rows = group_blocks * BLOCK_ROWS;
    uint8_t *group = sl_malloc_aligned(group_rows * s->row_bytes);
    int64_t *order = malloc((size_t)n_blocks * sizeof(int64_t)), *sel = malloc(group_rows * sizeof(int64_t));
    if (!group || !order || !sel) {
        st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory for a shuffle group of %zu rows", group_rows);
        goto done;
    }
    /* block orders come from their own stream so the exact number of steps (which depends on
     * which group gets the short last block) is known before training: the schedule needs it */
    rng g_order = {rng_u64(g)}, g_count = g_order;
    int64_t step = 0, total_steps = 0;
    for (int e = 0; e < p->epochs; e++) {
        for (int64_t b = 0; b < n_blocks; b++) order[b] = b;
        shuffle_i64(&g_count, order, n_blocks);
        total_steps += group_steps(order, n_blocks, (int64_t)group_blocks, n_rows, nb);
    }
    double loss_epoch = 0.0;
    for (int e = 0; e < p->epochs && !st; e++) {
        for (int64_t b = 0; b < n_blocks; b++) order[b] = b;
        shuffle_i64(&g_order, order, n_blocks);
        loss_epoch = 0.0;
        f.want_loss = e == p->epochs - 1; /* the loss is only reported for the last epoch */
        for (int64_t g0 = 0; g0 < n_blocks && !st; g0 += (int64_t)group_blocks) {
            int64_t rows = 0;
            for (int64_t k = g0; k < n_blocks && k < g0 + (int64_t)group_blocks && !st; k++) {
                int64_t r0 = order[k] * BLOCK_ROWS, nr = n_rows - r0 < BLOCK_ROWS ? n_rows - r0 : BLOCK_ROWS;
                st = store_read(s, j->layer, 0, r0, nr, group + (size_t)rows * s->row_bytes, err);
                rows += nr;
            }
            if (st) break;
            for (int64_t k = 0; k < rows; k++) sel[k] = k;
            shuffle_i64(g, sel, rows);
            f.rows = group;
            for (int64_t b0 = 0; b0 < rows; b0 += nb) {
                f.sel = sel + b0;
                f.n = rows - b0 < nb ? rows - b0 : nb;
                step++;
                f.lr = lr_at(p->lr, step - 1, total_steps);
                f.bc1 = 1.0f - powf(ADAM_B1, (float)step);
                f.bc2 = 1.0f - powf(ADAM_B2, (float)step);
                loss_epoch += fit_step(&f);
                if (p->progress) p->progress(p->progress_ud, SL_TRAIN_FIT, j->layer, step, total_steps);
            }
        }
    }
    if (!st) {
        *mean_loss = (float)(loss_epoch / ((double)n_rows * I));
        memcpy(A_out, f.A, (size_t)r * H * sizeof(float));
        memcpy(B_out, f.B, (size_t)I * r * sizeof(float));
    }
done:
    free(order);
    free(sel);
    sl_free_aligned(group);
    fit_free(&f);
    return st;
}

/* ---- choosing the rule on validation rows ----------------------------------------------------- */

/* Order-preserving map of floats to unsigned keys: a < b <=> key(a) < key(b). */
static inline uint32_t float_key(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static inline float key_float(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef enum pass_kind {
    PASS_HIST_HI,  /* histogram of the top 16 key bits of positive scores */
    PASS_HIST_LO,  /* histogram of the low 16 bits of positives whose top bits == hi */
    PASS_RANKS,    /* histogram of each positive's rank in its row (score desc, index asc) */
    PASS_METRICS,  /* apply the rule as decoding does; count tp / fp / fn and the loss */
} pass_kind;

typedef struct pass_acc {
    int64_t tp, fp, fn; /* PASS_METRICS counts */
    double loss;        /* PASS_METRICS weighted BCE sum */
    int64_t *hist;      /* [KEY_BINS] or [I] histogram */
    float *tmp;         /* [I] scratch (top-k) */
    int32_t *itmp;      /* [I] scratch (ranks) */
} pass_acc;

typedef struct val_scorer {
    const pair_store *store; /* validation rows */
    int layer;               /* of the store */
    int H, I, r;             /* shapes */
    sl_weight a, b;          /* the predictor as stored (quantized): scores exactly as skip.c computes them */
    sl_pool *pool;           /* threads */
    float pos_weight;        /* for the validation loss */
    float *cache;            /* [n_val, I] scores when they fit under SCORE_CACHE_BYTES, else NULL */
    uint8_t *cache_mask;     /* [n_val, mask bytes] labels kept with the cache */
    bool cached;             /* cache is filled */
    uint8_t *rows;           /* [CHUNK_ROWS] encoded rows */
    float *X;                /* [CHUNK_ROWS, H] */
    float *hb;               /* [CHUNK_ROWS, r] */
    float *S;                /* [CHUNK_ROWS, I] scores of the chunk (when not cached) */
    pass_acc *acc;           /* [threads] */
    /* the current pass */
    pass_kind kind;          /* what to accumulate */
    uint32_t hi;             /* PASS_HIST_LO: selected top bits */
    sl_profile_layer rule;   /* PASS_METRICS: the rule */
    float stat_z;            /* PASS_METRICS stat-top-k: PhiInv(1 - k / I) */
    bool want_loss;          /* PASS_METRICS: also sum the loss (the final pass only: a log per element) */
    const float *cS;         /* chunk scores */
    const uint8_t *cM;       /* chunk masks (row stride mask_bytes when cached, row_bytes otherwise) */
    size_t m_stride;         /* bytes between rows of cM */
    int64_t cn;              /* rows in the chunk */
} val_scorer;

typedef struct scored {
    float s;   /* score */
    int32_t i; /* neuron */
} scored;

static int scored_cmp(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Per row: which neurons the rule keeps — sl_select_active, the code decoding runs (skip.c).
 * Marks them in keep[] (0/1) and returns how many. tmp: 2 * I floats of scratch. */
static int32_t apply_rule(const val_scorer *v, const float *s, uint8_t *keep, float *tmp) {
    const int I = v->I;
    int32_t *idx = (int32_t *)(tmp + I);
    const int32_t n = sl_select_active(&v->rule, v->stat_z, NULL, s, I, SL_ACT_SILU /* unused by predictor rules */, tmp, idx);
    memset(keep, 0, (size_t)I);
    for (int32_t k = 0; k < n; k++) keep[idx[k]] = 1;
    return n;
}

static void task_pass(void *arg, int ith, int nth) {
    val_scorer *v = arg;
    pass_acc *a = &v->acc[ith];
    long long b0, b1;
    sl_split_range(v->cn, ith, nth, &b0, &b1);
    const int I = v->I;
    uint8_t *keep = (uint8_t *)a->itmp; /* I bytes fit in I int32s */
    for (long long b = b0; b < b1; b++) {
        const float *s = v->cS + (size_t)b * I;
        const uint8_t *m = v->cM + (size_t)b * v->m_stride;
        switch (v->kind) {
        case PASS_HIST_HI:
            for (int i = 0; i < I; i++)
                if (bit_at(m, i)) a->hist[float_key(s[i]) >> 16]++;
            break;
        case PASS_HIST_LO:
            for (int i = 0; i < I; i++)
                if (bit_at(m, i)) {
                    uint32_t k = float_key(s[i]);
                    if ((k >> 16) == v->hi) a->hist[k & 0xffffu]++;
                }
            break;
        case PASS_RANKS: {
            scored *sc = (scored *)a->tmp; /* sized for I scored entries */
            for (int i = 0; i < I; i++) sc[i] = (scored){s[i], i};
            qsort(sc, (size_t)I, sizeof(scored), scored_cmp);
            for (int q = 0; q < I; q++)
                if (bit_at(m, sc[q].i)) a->hist[q]++;
            break;
        }
        case PASS_METRICS: {
            apply_rule(v, s, keep, a->tmp);
            for (int i = 0; i < I; i++) {
                const bool y = bit_at(m, i);
                a->tp += y && keep[i];
                a->fp += !y && keep[i];
                a->fn += y && !keep[i];
            }
            if (v->want_loss) {
                const float w = v->pos_weight;
                double loss = 0.0;
                for (int i = 0; i < I; i++) {
                    const float z = s[i], sp = log1pf(expf(-fabsf(z)));
                    loss += bit_at(m, i) ? w * (fmaxf(-z, 0.0f) + sp) : fmaxf(z, 0.0f) + sp;
                }
                a->loss += loss;
            }
            break;
        }
        }
    }
}

/* Scores of validation rows [row0, row0 + n) into v->S (n <= CHUNK_ROWS), masks left in v->rows. */
static sl_status score_chunk(val_scorer *v, int64_t row0, int64_t n, sl_error *err) {
    sl_status st = store_read(v->store, v->layer, 1, row0, n, v->rows, err);
    if (st) return st;
    const size_t rb = v->store->row_bytes;
    for (int64_t b = 0; b < n; b++)
        for (int h = 0; h < v->H; h++) v->X[(size_t)b * v->H + h] = row_x(v->rows + (size_t)b * rb, h);
    sl_matmul(v->pool, v->a.type, v->a.data, v->r, v->H, v->X, n, v->hb);
    sl_matmul(v->pool, v->b.type, v->b.data, v->I, v->r, v->hb, n, v->S);
    return SL_OK;
}

/* Run one pass of v->kind over all validation rows, accumulators zeroed first and summed into acc[0]. */
static sl_status run_pass(val_scorer *v, int64_t hist_len, sl_error *err) {
    const int nth = sl_pool_n_threads(v->pool);
    for (int t = 0; t < nth; t++) {
        v->acc[t].tp = v->acc[t].fp = v->acc[t].fn = 0;
        v->acc[t].loss = 0.0;
        memset(v->acc[t].hist, 0, (size_t)hist_len * sizeof(int64_t));
    }
    const int64_t n_val = v->store->n_rows[1];
    const size_t mb = v->store->mask_bytes;
    for (int64_t r0 = 0; r0 < n_val; r0 += CHUNK_ROWS) {
        const int64_t n = n_val - r0 < CHUNK_ROWS ? n_val - r0 : CHUNK_ROWS;
        if (v->cache && v->cached) {
            v->cS = v->cache + (size_t)r0 * v->I;
            v->cM = v->cache_mask + (size_t)r0 * mb;
            v->m_stride = mb;
        } else {
            sl_status st = score_chunk(v, r0, n, err);
            if (st) return st;
            if (v->cache) {
                memcpy(v->cache + (size_t)r0 * v->I, v->S, (size_t)n * v->I * sizeof(float));
                for (int64_t b = 0; b < n; b++)
                    memcpy(v->cache_mask + (size_t)(r0 + b) * mb, v->rows + (size_t)b * v->store->row_bytes + 2 * (size_t)v->H, mb);
            }
            v->cS = v->S;
            v->cM = v->rows + 2 * (size_t)v->H;
            v->m_stride = v->store->row_bytes;
        }
        v->cn = n;
        sl_pool_run(v->pool, task_pass, v);
    }
    if (v->cache) v->cached = true;
    for (int t = 1; t < nth; t++) {
        v->acc[0].tp += v->acc[t].tp;
        v->acc[0].fp += v->acc[t].fp;
        v->acc[0].fn += v->acc[t].fn;
        v->acc[0].loss += v->acc[t].loss;
        for (int64_t k = 0; k < hist_len; k++) v->acc[0].hist[k] += v->acc[t].hist[k];
    }
    return SL_OK;
}

static void scorer_free(val_scorer *v) {
    if (v->acc)
        for (int t = 0; t < sl_pool_n_threads(v->pool); t++) {
            free(v->acc[t].hist);
            free(v->acc[t].tmp);
            free(v->acc[t].itmp);
        }
    free(v->acc);
    sl_free_aligned(v->cache);
    sl_free_aligned(v->cache_mask);
    sl_free_aligned(v->rows);
    sl_free_aligned(v->X);
    sl_free_aligned(v->hb);
    sl_free_aligned(v->S);
}

/* Choose the rule parameter reaching the target recall on the validation rows, then measure
 * the chosen rule; fills rep (rule, threshold/topk, metrics). */
static sl_status select_rule(const layer_job *j, const sl_weight *wa, const sl_weight *wb, sl_train_layer_report *rep, sl_error *err) {
    const pair_store *s = j->store;
    const int I = s->I, nth = sl_pool_n_threads(j->pool);
    val_scorer v;
    memset(&v, 0, sizeof(v));
    v.store = s;
    v.layer = j->layer;
    v.H = s->H;
    v.I = I;
    v.r = j->rank;
    v.a = *wa;
    v.b = *wb;
    v.pool = j->pool;
    v.pos_weight = j->pos_weight;
    const int64_t n_val = s->n_rows[1];
    sl_status st = SL_OK;
    if (n_val < 1) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: no validation rows");
    const size_t hist_len = I > KEY_BINS ? (size_t)I : KEY_BINS;
    v.acc = calloc((size_t)nth, sizeof(pass_acc));
    v.rows = sl_malloc_aligned((size_t)CHUNK_ROWS * s->row_bytes);
    v.X = sl_calloc_array((size_t)CHUNK_ROWS * s->H, sizeof(float));
    v.hb = sl_calloc_array((size_t)CHUNK_ROWS * j->rank, sizeof(float));
    v.S = sl_calloc_array((size_t)CHUNK_ROWS * I, sizeof(float));
    bool ok = v.acc && v.rows && v.X && v.hb && v.S;
    for (int t = 0; ok && t < nth; t++) {
        v.acc[t].hist = calloc(hist_len, sizeof(int64_t));
        v.acc[t].tmp = calloc((size_t)I, sizeof(scored));
        v.acc[t].itmp = calloc((size_t)I, sizeof(int32_t));
        ok = v.acc[t].hist && v.acc[t].tmp && v.acc[t].itmp;
    }
    if (!ok) {
        scorer_free(&v);
        return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory for validation");
    }
    if ((size_t)n_val * I * sizeof(float) <= SCORE_CACHE_BYTES) {
        v.cache = sl_malloc_aligned((size_t)n_val * I * sizeof(float));
        v.cache_mask = sl_malloc_aligned((size_t)n_val * s->mask_bytes);
        if (!v.cache || !v.cache_mask) {
            sl_free_aligned(v.cache);
            sl_free_aligned(v.cache_mask);
            v.cache = NULL;
            v.cache_mask = NULL;
        }
    }
    const sl_train_params *p = j->p;
    int64_t P = 0; /* positives */
    memset(&v.rule, 0, sizeof(v.rule));
    v.rule.rule = p->rule;
    int64_t want = 0;
    int passes = 0, max_passes = p->rule == SL_RULE_PRED_THRESHOLD ? 3 : p->rule == SL_RULE_PRED_TOPK ? 2 : 2 + 32;
#define PROGRESS() \
    if (p->progress) p->progress(p->progress_ud, SL_TRAIN_SELECT, j->layer, ++passes, max_passes)
    if (p->rule == SL_RULE_PRED_THRESHOLD) {
        /* radix select: the m-th largest positive score v_m (m = ceil(target * P)); the
         * threshold is the float just below it, so "score > threshold" keeps >= m positives */
        v.kind = PASS_HIST_HI;
        if ((st = run_pass(&v, KEY_BINS, err))) goto done;
        PROGRESS();
        for (int k = 0; k < KEY_BINS; k++) P += v.acc[0].hist[k];
        want = (int64_t)ceil((double)p->target_recall * (double)P);
        if (want < 1) want = 1;
        if (P == 0) {
            v.rule.threshold = FLT_MAX; /* nothing ever fires: keep nothing */
        } else {
            int64_t cum = 0;
            int hb = KEY_BINS - 1;
            for (; hb > 0; hb--) {
                if (cum + v.acc[0].hist[hb] >= want) break;
                cum += v.acc[0].hist[hb];
            }
            const int64_t want_lo = want - cum;
            v.kind = PASS_HIST_LO;
            v.hi = (uint32_t)hb;
            if ((st = run_pass(&v, KEY_BINS, err))) goto done;
            PROGRESS();
            int64_t c2 = 0;
            int lb = KEY_BINS - 1;
            for (; lb > 0; lb--) {
                if (c2 + v.acc[0].hist[lb] >= want_lo) break;
                c2 += v.acc[0].hist[lb];
            }
            const float vm = key_float(((uint32_t)hb << 16) | (uint32_t)lb);
            float t = nextafterf(vm, -INFINITY);
            if (!isfinite(t)) t = isinf(t) && t < 0 ? -FLT_MAX : FLT_MAX;
            v.rule.threshold = t;
        }
    } else if (p->rule == SL_RULE_PRED_TOPK) {
        v.kind = PASS_RANKS;
        if ((st = run_pass(&v, I, err))) goto done;
        PROGRESS();
        for (int q = 0; q < I; q++) P += v.acc[0].hist[q];
        want = (int64_t)ceil((double)p->target_recall * (double)P);
        int64_t cum = 0;
        int k = 0;
        while (k < I && cum < want) cum += v.acc[0].hist[k++];
        v.rule.topk = k < 1 ? 1 : k;
    } else {
        /* stat-top-k: recall grows with k (the threshold mean + std * PhiInv(1 - k/I) falls),
         * so bisect on k with exact passes */
        v.kind = PASS_METRICS;
        v.rule.rule = SL_RULE_PRED_THRESHOLD;
        v.rule.threshold = -FLT_MAX; /* keep all: counts the positives */
        if ((st = run_pass(&v, 1, err))) goto done;
        PROGRESS();
        P = v.acc[0].tp;
        want = (int64_t)ceil((double)p->target_recall * (double)P);
        v.rule.rule = SL_RULE_PRED_STAT_TOPK;
        int lo = 1, hi = I; /* answer in [lo, hi]; k = I keeps (almost) all */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            v.rule.topk = mid;
            v.stat_z = sl_normal_quantile(1.0 - (double)mid / (double)I);
            if ((st = run_pass(&v, 1, err))) goto done;
            PROGRESS();
            if (v.acc[0].tp >= want) hi = mid;
            else lo = mid + 1;
        }
        v.rule.topk = lo;
    }
    if (v.rule.rule == SL_RULE_PRED_STAT_TOPK) v.stat_z = sl_normal_quantile(1.0 - (double)v.rule.topk / (double)I);
    v.kind = PASS_METRICS;
    v.want_loss = true;
    if ((st = run_pass(&v, 1, err))) goto done;
    passes = max_passes - 1;
    PROGRESS();
#undef PROGRESS
    {
        const double tp = (double)v.acc[0].tp, fp = (double)v.acc[0].fp, fn = (double)v.acc[0].fn, all = (double)n_val * I;
        rep->rule = v.rule.rule;
        rep->threshold = v.rule.rule == SL_RULE_PRED_THRESHOLD ? v.rule.threshold : 0.0f;
        rep->topk = v.rule.rule == SL_RULE_PRED_THRESHOLD ? 0 : v.rule.topk;
        rep->true_density = (float)((tp + fn) / all);
        rep->pred_density = (float)((tp + fp) / all);
        rep->recall = tp + fn > 0 ? (float)(tp / (tp + fn)) : NAN;
        rep->precision = tp + fp > 0 ? (float)(tp / (tp + fp)) : NAN;
        rep->f1 = tp > 0 ? (float)(2 * tp / (2 * tp + fp + fn)) : 0.0f;
        rep->val_loss = (float)(v.acc[0].loss / all);
        rep->n_val = n_val;
    }
done:
    scorer_free(&v);
    return st;
}

/* Quantize A, B to `type` exactly as sl_profile_set_predictor stores them; w*.data owned by caller. */
static sl_status quantize_predictor(sl_type type, int32_t r, int32_t H, int32_t I, const float *A, const float *B, sl_weight *wa,
                                    sl_weight *wb, sl_error *err) {
    size_t row_a = sl_type_row_size(type, H), row_b = sl_type_row_size(type, r);
    void *a = sl_malloc_aligned(row_a * (size_t)r), *b = sl_malloc_aligned(row_b * (size_t)I);
    if (!a || !b) {
        sl_free_aligned(a);
        sl_free_aligned(b);
        return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
    }
    for (int32_t k = 0; k < r; k++) sl_quantize_row_ref(type, A + (size_t)k * H, (uint8_t *)a + (size_t)k * row_a, H);
    for (int32_t i = 0; i < I; i++) sl_quantize_row_ref(type, B + (size_t)i * r, (uint8_t *)b + (size_t)i * row_b, r);
    *wa = sl_weight_view(a, type, r, H);
    *wb = sl_weight_view(b, type, I, r);
    return SL_OK;
}

/* Train, quantize and select for one layer. pos_train: positives among its training rows. */
static sl_status train_layer(const pair_store *s, int layer, const sl_train_params *p, int32_t rank, int64_t pos_train, sl_pool *pool,
                             float *A, float *B, sl_train_layer_report *rep, sl_error *err) {
    const double t0 = sl_time_s();
    const double d = (double)pos_train / ((double)s->n_rows[0] * s->I);
    float pw = p->pos_weight;
    if (pw <= 0.0f) {
        /* (1 - d) / d balances the two classes; clamp so a (nearly) dead or always-on layer
         * does not blow up the gradient */
        double w = d > 0 ? (1.0 - d) / d : 100.0;
        pw = (float)(w < 0.01 ? 0.01 : w > 100.0 ? 100.0 : w);
    }
    layer_job j = {s, layer, p, rank, pw, pool};
    rng g = {p->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull * (uint64_t)(layer + 1)};
    memset(rep, 0, sizeof(*rep));
    rep->layer = layer;
    rep->rank = rank;
    rep->pos_weight = pw;
    rep->n_train = s->n_rows[0];
    sl_status st = fit_layer(&j, &g, A, B, &rep->train_loss, err);
    if (st) return st;
    const double t1 = sl_time_s();
    sl_weight wa, wb;
    if ((st = quantize_predictor(p->type, rank, s->H, s->I, A, B, &wa, &wb, err))) return st;
    st = select_rule(&j, &wa, &wb, rep, err);
    sl_free_aligned((void *)wa.data);
    sl_free_aligned((void *)wb.data);
    rep->fit_seconds = t1 - t0;
    rep->select_seconds = sl_time_s() - t1;
    return st;
}

/* ---- in-memory data --------------------------------------------------------------------------- */

sl_status sl_predictor_fit(const float *x, const bool *mask, int64_t n_train, const float *x_val, const bool *mask_val, int64_t n_val,
                           int32_t n_embd, int32_t n_ff, const sl_train_params *params, float *A, float *B,
                           sl_train_layer_report *report, sl_error *err) {
    sl_clear_error(err);
    sl_train_params p = params ? *params : sl_train_default_params();
    if (!x || !mask || !x_val || !mask_val || !A || !B || !report || n_train < 1 || n_val < 1 || n_embd < 1 || n_ff < 1)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "predictor_fit: needs training and validation rows, sizes > 0 and output buffers");
    const int32_t rank = sl_train_rank(&p, n_embd, n_ff);
    p.val_frac = 0.5f; /* not used here: the caller split the rows */
    sl_status st = check_params(&p, n_embd, n_ff, rank, err);
    if (st) return st;
    pair_store s;
    if ((st = store_open(&s, 1, n_embd, n_ff, n_train, n_val, INT64_MAX, NULL, err))) return st;
    sl_pool *pool = sl_pool_init(p.n_threads > 0 ? p.n_threads : 1);
    uint8_t *buf = sl_malloc_aligned((size_t)CHUNK_ROWS * s.row_bytes);
    if (!s.mem || !pool || !buf) {
        st = sl_set_error(err, SL_ERR_NOMEM, "predictor_fit: out of memory");
        goto done;
    }
    int64_t pos = 0;
    for (int split = 0; split < 2; split++) {
        const int64_t n = split ? n_val : n_train;
        const float *xs = split ? x_val : x;
        const bool *ms = split ? mask_val : mask;
        for (int64_t r0 = 0; r0 < n; r0 += CHUNK_ROWS) {
            int64_t c = n - r0 < CHUNK_ROWS ? n - r0 : CHUNK_ROWS;
            int64_t np = encode_rows(xs + (size_t)r0 * n_embd, NULL, ms + (size_t)r0 * n_ff, c, n_embd, n_ff, s.row_bytes, buf);
            if (!split) pos += np;
            if ((st = store_write(&s, 0, split, r0, c, buf, err))) goto done;
        }
    }
    st = train_layer(&s, 0, &p, rank, pos, pool, A, B, report, err);
done:
    sl_free_aligned(buf);
    sl_pool_free(pool);
    store_close(&s);
    return st;
}

/* ---- collecting from the model ---------------------------------------------------------------- */

typedef struct collect_state {
    pair_store *store;   /* destination */
    int split;           /* split of the window being evaluated */
    int64_t base;        /* its first row within that split */
    int64_t *pos;        /* [n_layer] rows of the window written so far, per layer */
    int64_t *n_pos;      /* [n_layer * 2] positives per layer and split */
    uint8_t *buf;        /* [n_batch rows] staging */
    int64_t buf_rows;    /* capacity of buf in rows */
    sl_status status;    /* first failure (the forward pass cannot be stopped from the hook) */
    sl_error *err;       /* where it is described */
} collect_state;

static void collect_hook(void *ud, int layer, int B, const float *x, int n_embd, const float *gate, int n_ff) {
    collect_state *c = ud;
    if (c->status) return;
    for (int b0 = 0; b0 < B; b0 += (int)c->buf_rows) {
        int nb = B - b0 < c->buf_rows ? B - b0 : (int)c->buf_rows;
        c->n_pos[2 * layer + c->split] += encode_rows(x + (size_t)b0 * n_embd, gate + (size_t)b0 * n_ff, NULL, nb, n_embd, n_ff,
                                                      c->store->row_bytes, c->buf);
        c->status = store_write(c->store, layer, c->split, c->base + c->pos[layer], nb, c->buf, c->err);
        c->pos[layer] += nb;
        if (c->status) return;
    }
}

/* Window w of n_win is held out for validation when floor((w + 1) f) > floor(w f): an even
 * spread (every 10th window for f = 0.1) over the whole text, so a text made of several books
 * is validated on all of them. With none selected, the last window is. */
static bool window_is_val(int64_t w, int64_t n_win, double f, bool any) {
    if (!any) return w == n_win - 1;
    return floor((double)(w + 1) * f) > floor((double)w * f);
}

sl_status sl_train_predictors(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_train_params *params,
                              sl_profile *profile, sl_train_report *report, sl_error *err) {
    sl_clear_error(err);
    const double t_start = sl_time_s();
    sl_train_params p = params ? *params : sl_train_default_params();
    if (!model || !model->layers || !tokens || !profile)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: needs a model, tokens and a profile to fill");
    const sl_model_config *c = &model->config;
    char fp[32];
    sl_model_fingerprint(model, fp);
    if (profile->n_layer != c->n_layer || profile->n_embd != c->n_embd || profile->n_ff != c->n_ff || strcmp(fp, profile->fingerprint))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: the profile was made for another model (fingerprint %s, model %s)",
                            profile->fingerprint, fp);
    const int32_t H = c->n_embd, I = c->n_ff, L = c->n_layer;
    const int32_t rank = sl_train_rank(&p, H, I);
    sl_status st = check_params(&p, H, I, rank, err);
    if (st) return st;
    const int32_t window = p.n_ctx > 0 ? p.n_ctx : (c->n_ctx_train < 512 ? c->n_ctx_train : 512);
    if (window < 2) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: window %d too short", window);
    /* the windows: all of the text, or max_tokens worth of whole windows spread evenly over it
     * (a text made of several books is sampled from all of them) */
    const int64_t n_all = (n_tokens + window - 1) / window;
    int64_t n_win = n_all;
    if (p.max_tokens > 0 && p.max_tokens < n_tokens) {
        const int64_t full = n_tokens / window;
        n_win = (p.max_tokens + window - 1) / window;
        if (n_win > full) n_win = full;
    }
    if (n_win < 2)
        return sl_set_error(err, SL_ERR_INVALID_ARG,
                            "train: %lld tokens make %lld window(s) of %d; at least 2 are needed (one to train, one to validate)",
                            (long long)(p.max_tokens > 0 && p.max_tokens < n_tokens ? p.max_tokens : n_tokens), (long long)n_win, window);
    int64_t *win_start = malloc((size_t)n_win * sizeof(int64_t));
    if (!win_start) return sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
    for (int64_t w = 0; w < n_win; w++)
        win_start[w] = n_win == n_all ? w * window : (int64_t)((double)w * (double)(n_tokens / window) / (double)n_win) * window;
#define WIN_LEN(w) ((int32_t)(n_tokens - win_start[w] < window ? n_tokens - win_start[w] : window))
    /* which windows validate, and the row counts of each split */
    bool any = false;
    for (int64_t w = 0; w < n_win && !any; w++) any = window_is_val(w, n_win, p.val_frac, true);
    int64_t rows[2] = {0, 0}, n_val_win = 0, n_used = 0;
    for (int64_t w = 0; w < n_win; w++) {
        bool v = window_is_val(w, n_win, p.val_frac, any);
        rows[v] += WIN_LEN(w);
        n_val_win += v;
    }
    n_used = rows[0] + rows[1];
    if (rows[0] < 1 || rows[1] < 1) {
        free(win_start);
        return sl_set_error(err, SL_ERR_INVALID_ARG, "train: validation fraction %g leaves no training windows", (double)p.val_frac);
    }

    pair_store s;
    if ((st = store_open(&s, L, H, I, rows[0], rows[1], p.mem_limit, p.tmp_dir, err))) {
        free(win_start);
        return st;
    }
    sl_context *ctx = NULL;
    sl_pool *pool = NULL;
    float *A = NULL, *B = NULL;
    collect_state cs;
    memset(&cs, 0, sizeof(cs));
    sl_train_layer_report *reps = report && report->layers ? report->layers : calloc((size_t)L, sizeof(*reps));
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = window;
    cp.n_threads = p.n_threads;
    cp.n_batch = window < 256 ? window : 256; /* prefill batches: the bigger, the faster the matmuls */
    cs.store = &s;
    cs.pos = calloc((size_t)L, sizeof(int64_t));
    cs.n_pos = calloc((size_t)L * 2, sizeof(int64_t));
    cs.buf_rows = cp.n_batch;
    cs.buf = sl_malloc_aligned((size_t)cs.buf_rows * s.row_bytes);
    cs.err = err;
    if (!reps || !cs.pos || !cs.n_pos || !cs.buf) {
        st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    if (!(ctx = sl_context_init(model, &cp, err))) {
        st = err ? err->code : SL_ERR_NOMEM;
        goto done;
    }
    ctx->mlp_hook = collect_hook;
    ctx->mlp_hook_ud = &cs;
    int64_t next[2] = {0, 0};
    for (int64_t w = 0, done_tok = 0; w < n_win; w++) {
        const int32_t n = WIN_LEN(w);
        cs.split = window_is_val(w, n_win, p.val_frac, any);
        cs.base = next[cs.split];
        memset(cs.pos, 0, (size_t)L * sizeof(int64_t));
        sl_context_reset(ctx);
        if ((st = sl_eval(ctx, tokens + win_start[w], n, NULL, false, err))) goto done;
        if ((st = cs.status)) goto done;
        next[cs.split] += n;
        done_tok += n;
        if (p.progress) p.progress(p.progress_ud, SL_TRAIN_COLLECT, -1, done_tok, n_used);
    }
    sl_context_free(ctx);
    ctx = NULL;
    const double t_collect = sl_time_s();

    pool = sl_pool_init(p.n_threads > 0 ? p.n_threads : 1);
    A = malloc((size_t)rank * H * sizeof(float));
    B = malloc((size_t)I * rank * sizeof(float));
    if (!pool || !A || !B) {
        st = sl_set_error(err, SL_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    double t_fit = 0, t_select = 0;
    for (int32_t l = 0; l < L; l++) {
        sl_train_layer_report *rep = &reps[l];
        if ((st = train_layer(&s, l, &p, rank, cs.n_pos[2 * l], pool, A, B, rep, err))) goto done;
        t_fit += rep->fit_seconds;
        t_select += rep->select_seconds;
        if ((st = sl_profile_set_predictor(profile, l, rank, p.type, A, B, err))) goto done;
        sl_profile_layer info;
        sl_profile_get_layer(profile, l, &info, NULL);
        info.rule = rep->rule;
        info.threshold = rep->threshold;
        info.topk = rep->topk;
        info.target_sparsity = 1.0f - rep->pred_density;
        info.recall = rep->recall;
        info.precision = rep->precision;
        info.true_density = rep->true_density;
        info.pred_density = rep->pred_density;
        if ((st = sl_profile_set_layer(profile, l, &info, err))) goto done;
        /* the fraction of gate <= 0 over all collected tokens, unless calibration set it */
        if (isnan(profile->layers[l].gate_nonpos))
            profile->layers[l].gate_nonpos =
                (float)(1.0 - (double)(cs.n_pos[2 * l] + cs.n_pos[2 * l + 1]) / ((double)(rows[0] + rows[1]) * I));
    }
    if ((st = sl_profile_set_method(profile, "predictor", err))) goto done;
    if (report) {
        report->n_tokens = n_used;
        report->n_train_tokens = rows[0];
        report->n_val_tokens = rows[1];
        report->n_windows = n_win;
        report->n_val_windows = n_val_win;
        report->rank = rank;
        report->store_bytes = sl_train_store_bytes(rows[0] + rows[1], L, H, I);
        report->store_on_disk = s.mem == NULL;
        report->t_collect = t_collect - t_start;
        report->t_fit = t_fit;
        report->t_select = t_select;
        report->t_total = sl_time_s() - t_start;
    }
done:
    sl_context_free(ctx);
    sl_pool_free(pool);
    store_close(&s);
    free(A);
    free(B);
    free(cs.pos);
    free(cs.n_pos);
    sl_free_aligned(cs.buf);
    free(win_start);
    if (!(report && report->layers)) free(reps);
    return st;
#undef WIN_LEN
}
