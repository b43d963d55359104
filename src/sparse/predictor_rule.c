/*
 * predictor_rule.c — choosing a layer's rule parameter (threshold, k, or statistical k) on the
 * validation rows so that the selection reaches the target recall, with radix-select histograms
 * over exact passes, and measuring the chosen rule's recall, precision and loss.
 * What it is not: fitting (predictor_fit.c).
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
    double c_kept, c_all; /* PASS_METRICS, contribution target: kept and total contribution */
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
            if (v->store->contrib) {
                for (int i = 0; i < I; i++) {
                    const bool y = lab_active(m, i);
                    const double c = lab_contrib(m, i);
                    a->tp += y && keep[i];
                    a->fp += !y && keep[i];
                    a->fn += y && !keep[i];
                    a->c_all += c;
                    a->c_kept += keep[i] ? c : 0.0;
                }
                break;
            }
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
        v->acc[t].c_kept = v->acc[t].c_all = 0.0;
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
        v->acc[0].c_kept += v->acc[t].c_kept;
        v->acc[0].c_all += v->acc[t].c_all;
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
sl_status select_rule(const layer_job *j, const sl_weight *wa, const sl_weight *wb, sl_train_layer_report *rep, sl_error *err) {
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
    if (s->contrib) {
        /* contribution target: top-k at the label fraction (tune and --sparsity move k later) */
        v.rule.rule = SL_RULE_PRED_TOPK;
        v.rule.topk = sl_train_label_k(p, I);
        max_passes = 1;
    } else if (p->rule == SL_RULE_PRED_THRESHOLD) {
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
    v.want_loss = !s->contrib;
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
        rep->val_loss = s->contrib ? NAN : (float)(v.acc[0].loss / all);
        rep->contrib_recall = s->contrib && v.acc[0].c_all > 0 ? (float)(v.acc[0].c_kept / v.acc[0].c_all) : NAN;
        rep->n_val = n_val;
    }
done:
    scorer_free(&v);
    return st;
}
