/*
 * predictor_fit.c — fitting one layer's predictor score = B (A x) on its training rows: class-
 * weighted binary cross-entropy on the logits (labels: the sign of the gate, or the top of the
 * token's neurons by contribution), or the ListNet ranking loss against the contribution shares;
 * AdamW with warm-up and cosine decay, mini-batches cut into thread-independent micro-batches so
 * the result does not depend on the thread count.
 * What it is not: choosing the rule (predictor_rule.c) or collecting the rows (predictor_train.c).
 */
#include "sparse/predictor_train.h"

#include "kernels/kernels.h"
#include "sparse/profile.h"
#include "sparse/select.h"
#include "util/util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    float *C;   /* [I] one row's contributions (contribution target) */
    uint32_t *K;/* [I] radix-select keys */
} fit_scratch;

typedef struct fit_state {
    sl_pool *pool;       /* threads */
    int H, I, r;         /* shapes */
    int64_t nb;          /* rows per full mini-batch */
    size_t row_bytes;    /* encoded row size */
    size_t mask_bytes;   /* bytes of a row's labels */
    bool contrib;        /* labels are contributions */
    sl_train_loss kind;  /* BCE or ListNet */
    int32_t label_k;     /* contribution BCE: positives per row (top by c_i) */
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

/* The loss gradient of the contribution target for the m rows of a micro-batch into w->dS / dST;
 * returns the loss sum (when wanted).
 * BCE: positives = the label_k neurons of largest c_i in the row (and c_i > 0), weighted pw.
 * ListNet: p_i = c_i / sum c; loss = -sum p_i log softmax(s)_i; d/ds_i = softmax(s)_i - p_i. */
static double contrib_grad(fit_state *f, fit_scratch *w, int64_t m) {
    const int I = f->I;
    const float inv_n = 1.0f / (float)f->n, pw = f->pos_weight;
    double loss = 0.0;
    for (int64_t b = 0; b < m; b++) {
        const float *sc = w->S + (size_t)b * I;
        float *g = w->dS + (size_t)b * I;
        const uint8_t *y = w->Y + (size_t)b * f->mask_bytes;
        double sum = 0.0;
        for (int i = 0; i < I; i++) sum += w->C[i] = lab_contrib(y, i);
        if (f->kind == SL_LOSS_BCE) {
            const float v = f->label_k >= I ? 0.0f : sl_kth_largest(w->C, I, f->label_k, w->K);
            for (int i = 0; i < I; i++) {
                const float z = sc[i], e = expf(-fabsf(z));
                const float sig = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
                const bool pos = w->C[i] > 0.0f && w->C[i] >= v;
                g[i] = (pos ? pw * (sig - 1.0f) : sig) * inv_n;
                if (f->want_loss) loss += pos ? pw * (fmaxf(-z, 0.0f) + log1pf(e)) : fmaxf(z, 0.0f) + log1pf(e);
            }
        } else {
            float zmax = -INFINITY;
            for (int i = 0; i < I; i++) zmax = fmaxf(zmax, sc[i]);
            double den = 0.0;
            for (int i = 0; i < I; i++) den += exp((double)(sc[i] - zmax));
            const double lden = log(den), inv_sum = sum > 0 ? 1.0 / sum : 0.0;
            for (int i = 0; i < I; i++) {
                const double lsm = (double)(sc[i] - zmax) - lden, p = w->C[i] * inv_sum;
                g[i] = (float)(exp(lsm) - p) * inv_n;
                if (f->want_loss && p > 0) loss -= p * lsm;
            }
        }
        for (int i = 0; i < I; i++) w->dST[(size_t)i * m + b] = g[i];
    }
    return loss;
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
    if (f->contrib) loss = contrib_grad(f, w, m);
    for (int64_t b = 0; b < m && !f->contrib; b++) {
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
            float *wb[] = {w->X, w->XT, w->hT, w->h, w->S, w->dS, w->dST, w->dhT, w->C};
            for (size_t i = 0; i < sizeof(wb) / sizeof(wb[0]); i++) sl_free_aligned(wb[i]);
            sl_free_aligned(w->Y);
            sl_free_aligned(w->K);
        }
    free(f->ws);
    free(f->loss);
}

static sl_status fit_alloc(fit_state *f, sl_pool *pool, int H, int I, int r, int64_t nb, size_t row_bytes, size_t label_bytes,
                           sl_error *err) {
    memset(f, 0, sizeof(*f));
    f->pool = pool;
    f->H = H;
    f->I = I;
    f->r = r;
    f->nb = nb;
    f->row_bytes = row_bytes;
    f->mask_bytes = label_bytes;
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
             (w->Y = sl_calloc_array(sm * f->mask_bytes, 1)) && (w->C = sl_calloc_array(sI, sizeof(float))) &&
             (w->K = sl_calloc_array(sI, sizeof(uint32_t)));
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
sl_status fit_layer(const layer_job *j, rng *g, float *A_out, float *B_out, float *mean_loss, sl_error *err) {
    const pair_store *s = j->store;
    const sl_train_params *p = j->p;
    const int H = s->H, I = s->I, r = j->rank;
    const int64_t n_rows = s->n_rows[0];
    if (n_rows < 1) return sl_set_error(err, SL_ERR_INVALID_ARG, "train: no training rows");
    const int64_t nb = p->batch < n_rows ? p->batch : n_rows;
    fit_state f;
    sl_status st = fit_alloc(&f, j->pool, H, I, r, nb, s->row_bytes, s->mask_bytes, err);
    if (st) return st;
    f.contrib = s->contrib;
    f.kind = p->loss;
    f.label_k = sl_train_label_k(p, I);
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
