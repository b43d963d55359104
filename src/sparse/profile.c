/*
 * profile.c — sparsity profiles: creation, editing, and the GGUF file format (see
 * docs/profile-format.md). A profile is a GGUF file with general.architecture =
 * "skipllama-profile", per-layer arrays under skipllama.profile.*, and predictor tensors
 * blk.N.pred_a.weight / blk.N.pred_b.weight. Loading validates everything against the model the
 * profile is used with (fingerprint, shapes, types) before any of it is used.
 * What it is not: calibration (calibrate.c) or training (predictor_train.c).
 */
#include "sparse/profile.h"

#include "format/quant.h"
#include "kernels/kernels.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sl_skip_rule_name(sl_skip_rule rule) {
    switch (rule) {
    case SL_RULE_DENSE: return "dense";
    case SL_RULE_CATS: return "cats";
    case SL_RULE_PRED_THRESHOLD: return "threshold";
    case SL_RULE_PRED_TOPK: return "topk";
    case SL_RULE_PRED_STAT_TOPK: return "stat-topk";
    case SL_RULE_TWO_STAGE: return "two-stage";
    case SL_RULE_TWO_STAGE_PRED: return "two-stage-pred";
    }
    return NULL;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Shapes and types of every layer, plus up to 4 KiB from the start, middle and end of the
 * embedding and of each layer's gate, up and down: cheap (a few hundred KiB read even for 7B
 * models) yet different for any two trained or quantized variants. */
void sl_model_fingerprint(const sl_model *m, char out[32]) {
    uint64_t h = 0xcbf29ce484222325ull;
    const sl_model_config *c = &m->config;
    int32_t dims[6] = {c->n_vocab, c->n_embd, c->n_ff, c->n_layer, c->n_head, c->n_head_kv};
    h = fnv1a(h, dims, sizeof(dims));
    const sl_weight *ws[1 + 3 * 4096];
    int n = 0;
    ws[n++] = &m->tok_embd;
    for (int l = 0; l < c->n_layer && n + 3 <= (int)(sizeof(ws) / sizeof(ws[0])); l++) {
        ws[n++] = &m->layers[l].ffn_gate;
        ws[n++] = &m->layers[l].ffn_up;
        ws[n++] = &m->layers[l].ffn_down;
    }
    for (int i = 0; i < n; i++) {
        const sl_weight *w = ws[i];
        size_t bytes = w->row_bytes * (size_t)w->rows, take = bytes < 4096 ? bytes : 4096;
        uint32_t t = (uint32_t)w->type;
        h = fnv1a(h, &t, sizeof(t));
        const uint8_t *p = w->data;
        h = fnv1a(h, p, take);
        h = fnv1a(h, p + (bytes - take) / 2, take);
        h = fnv1a(h, p + bytes - take, take);
    }
    snprintf(out, 32, "%016llx", (unsigned long long)h);
}

static void layer_clear(sl_profile_layer_data *L) {
    memset(L, 0, sizeof(*L));
    L->info.rule = SL_RULE_DENSE;
    L->info.recall = L->info.precision = L->info.true_density = L->info.pred_density = L->info.contrib_recall = NAN;
    L->gate_nonpos = NAN;
    for (int q = 0; q < SL_PROFILE_N_QUANTILES; q++) L->cats_q[q] = NAN;
}

static sl_profile *profile_alloc(int32_t n_layer, int32_t n_embd, int32_t n_ff) {
    sl_profile *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->layers = calloc((size_t)n_layer, sizeof(*p->layers));
    if (!p->layers) {
        free(p);
        return NULL;
    }
    p->n_layer = n_layer;
    p->n_embd = n_embd;
    p->n_ff = n_ff;
    for (int32_t l = 0; l < n_layer; l++) layer_clear(&p->layers[l]);
    snprintf(p->method, sizeof(p->method), "dense");
    return p;
}

sl_profile *sl_profile_init(const sl_model *model, sl_error *err) {
    if (!model || !model->layers) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "profile: needs a model with weights");
        return NULL;
    }
    const sl_model_config *c = &model->config;
    sl_profile *p = profile_alloc(c->n_layer, c->n_embd, c->n_ff);
    if (!p) {
        sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory");
        return NULL;
    }
    sl_model_fingerprint(model, p->fingerprint);
    return p;
}

void sl_profile_free(sl_profile *p) {
    if (!p) return;
    for (int32_t l = 0; l < p->n_layer && !p->shared; l++) {
        sl_free_aligned(p->layers[l].owned_a);
        sl_free_aligned(p->layers[l].owned_b);
        sl_free_huge(p->layers[l].packed_a);
        sl_free_huge(p->layers[l].packed_b);
    }
    free(p->layers);
    gguf_close(p->gguf);
    free(p);
}

const char *sl_batch_select_name(sl_batch_select mode) {
    switch (mode) {
    case SL_BATCH_UNION: return "union";
    case SL_BATCH_SHARED: return "shared";
    case SL_BATCH_AUTO: return "auto";
    case SL_BATCH_DENSE: return "dense";
    }
    return NULL;
}

sl_status sl_profile_set_batch_select(sl_profile *p, sl_batch_select mode, float union_max, sl_error *err) {
    if (!p) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: NULL profile");
    if (!sl_batch_select_name(mode)) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: unknown batch selection %d", (int)mode);
    if (!(union_max >= 0.0f && union_max <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: batch union limit %g outside (0, 1] (0 = default)", (double)union_max);
    p->batch_select = mode;
    p->batch_union_max = union_max;
    return SL_OK;
}

sl_batch_select sl_profile_get_batch_select(const sl_profile *p, float *union_max) {
    if (union_max) *union_max = p && p->batch_union_max > 0.0f ? p->batch_union_max : SL_BATCH_UNION_MAX_DEFAULT;
    return p ? p->batch_select : SL_BATCH_UNION;
}

int32_t sl_profile_n_layer(const sl_profile *p) { return p->n_layer; }
const char *sl_profile_method(const sl_profile *p) { return p->method; }

sl_status sl_profile_set_method(sl_profile *p, const char *method, sl_error *err) {
    if (!method || strlen(method) >= sizeof(p->method))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: method name missing or longer than %zu bytes", sizeof(p->method) - 1);
    snprintf(p->method, sizeof(p->method), "%s", method);
    return SL_OK;
}

static sl_status check_layer(const sl_profile *p, int32_t layer, sl_error *err) {
    if (!p || layer < 0 || layer >= p->n_layer)
        return sl_set_error(err, SL_ERR_RANGE, "profile: layer %d outside 0..%d", layer, p ? p->n_layer - 1 : -1);
    return SL_OK;
}

sl_status sl_profile_get_layer(const sl_profile *p, int32_t layer, sl_profile_layer *out, sl_error *err) {
    if (check_layer(p, layer, err)) return err ? err->code : SL_ERR_RANGE;
    *out = p->layers[layer].info;
    return SL_OK;
}

/* Rule/parameter consistency for one layer; shared by set_layer and load. */
static sl_status validate_info(const sl_profile *p, int32_t layer, const sl_profile_layer *in, int32_t rank, sl_error *err) {
    switch (in->rule) {
    case SL_RULE_DENSE: break;
    case SL_RULE_CATS:
        if (!(in->threshold >= 0) || isinf(in->threshold))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: CATS threshold %g must be finite and >= 0", layer,
                                (double)in->threshold);
        break;
    case SL_RULE_PRED_THRESHOLD:
    case SL_RULE_PRED_TOPK:
    case SL_RULE_PRED_STAT_TOPK:
        if (rank <= 0)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: rule '%s' needs a predictor, and the layer has none", layer,
                                sl_skip_rule_name(in->rule));
        if (in->rule == SL_RULE_PRED_THRESHOLD && (isnan(in->threshold) || isinf(in->threshold)))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: threshold must be finite", layer);
        if (in->rule != SL_RULE_PRED_THRESHOLD && (in->topk < 1 || in->topk > p->n_ff))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: topk %d outside 1..%d", layer, in->topk, p->n_ff);
        break;
    case SL_RULE_TWO_STAGE:
    case SL_RULE_TWO_STAGE_PRED:
        if (in->rule == SL_RULE_TWO_STAGE_PRED && rank <= 0)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: rule 'two-stage-pred' needs a predictor, and the layer has none",
                                layer);
        if (in->topk < 1 || in->cand_k < in->topk || in->cand_k > p->n_ff)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: two-stage needs 1 <= topk (%d) <= cand_k (%d) <= n_ff (%d)", layer,
                                in->topk, in->cand_k, p->n_ff);
        if (in->gate_k != 0 && (in->rule != SL_RULE_TWO_STAGE_PRED || in->gate_k < in->cand_k || in->gate_k > p->n_ff))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: a gate stage (gate_k %d) needs two-stage-pred and cand_k (%d) <= gate_k <= n_ff (%d)",
                                layer, in->gate_k, in->cand_k, p->n_ff);
        break;
    default: return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: layer %d: unknown rule %d", layer, (int)in->rule);
    }
    return SL_OK;
}

sl_status sl_profile_set_layer(sl_profile *p, int32_t layer, const sl_profile_layer *in, sl_error *err) {
    if (check_layer(p, layer, err)) return SL_ERR_RANGE;
    sl_profile_layer_data *L = &p->layers[layer];
    sl_status st = validate_info(p, layer, in, L->info.rank, err);
    if (st) return st;
    int32_t rank = L->info.rank;
    L->info = *in;
    L->info.rank = rank; /* rank follows the predictor tensors, not the caller */
    return SL_OK;
}

/* The form the products read: Q4_0 matrices copied into the 4-row interleaved layout when the
 * kernels have a fast path for it (as the model does with its own Q4_0 matrices; the file's pages
 * of a loaded profile are then released), every other type as it is. Not an error when memory is
 * short: the products then read the plain rows. */
static void pack_predictor(const sl_profile *p, sl_profile_layer_data *L) {
    sl_weight *ws[2] = {&L->pred_a, &L->pred_b};
    void **packs[2] = {&L->packed_a, &L->packed_b};
    for (int k = 0; k < 2; k++) {
        sl_weight *w = ws[k];
        sl_free_huge(*packs[k]);
        *packs[k] = NULL;
        w->mm_data = w->data;
        w->mm_type = w->type;
        if (w->type != SL_TYPE_Q4_0 || !sl_kernels_fast_q4_0x4() || !w->data) continue;
        const size_t sz = sl_q4_0x4_size(w->rows, w->cols);
        void *buf = sz ? sl_alloc_huge(sz) : NULL;
        if (!buf) continue;
        sl_q4_0x4_repack_all(w->data, w->rows, w->cols, buf);
        if (p->gguf) gguf_release_pages(p->gguf, w->data, (size_t)w->rows * w->row_bytes);
        *packs[k] = buf;
        w->mm_data = buf;
        w->mm_type = SL_TYPE_Q4_0X4;
    }
}

sl_profile *sl_profile_clone(const sl_profile *src, sl_error *err) {
    sl_clear_error(err);
    if (!src) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "profile clone: NULL profile");
        return NULL;
    }
    sl_profile *p = malloc(sizeof(*p));
    sl_profile_layer_data *layers = p ? malloc((size_t)src->n_layer * sizeof(*layers)) : NULL;
    if (!p || !layers) {
        free(p);
        free(layers);
        sl_set_error(err, SL_ERR_NOMEM, "profile clone: out of memory");
        return NULL;
    }
    *p = *src;
    memcpy(layers, src->layers, (size_t)src->n_layer * sizeof(*layers));
    p->layers = layers;
    p->gguf = NULL;
    p->shared = true;
    return p;
}

sl_status sl_profile_set_predictor(sl_profile *p, int32_t layer, int32_t rank, sl_type type, const float *A, const float *B,
                                   sl_error *err) {
    if (check_layer(p, layer, err)) return SL_ERR_RANGE;
    if (rank < 1 || rank > p->n_embd || !A || !B)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: predictor rank %d outside 1..%d or missing factors", rank, p->n_embd);
    if (p->shared) return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: a clone shares its predictors and cannot replace them");
    if (type != SL_TYPE_F32 && type != SL_TYPE_F16 && type != SL_TYPE_BF16 && type != SL_TYPE_Q8_0 && type != SL_TYPE_Q4_0)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "profile: predictor type %s not supported (f32, f16, bf16, q8_0, q4_0)",
                            sl_type_name(type) ? sl_type_name(type) : "?");
    size_t row_a = sl_type_row_size(type, p->n_embd), row_b = sl_type_row_size(type, rank);
    if (!row_a || !row_b)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "profile: %s predictor needs n_embd (%d) and rank (%d) to be multiples of %lld",
                            sl_type_name(type), p->n_embd, rank, (long long)sl_type_block_size(type));
    void *a = sl_malloc_aligned(row_a * (size_t)rank), *b = sl_malloc_aligned(row_b * (size_t)p->n_ff);
    if (!a || !b) {
        sl_free_aligned(a);
        sl_free_aligned(b);
        return sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory for a rank-%d predictor", rank);
    }
    for (int32_t r = 0; r < rank; r++) sl_quantize_row_ref(type, A + (size_t)r * p->n_embd, (uint8_t *)a + (size_t)r * row_a, p->n_embd);
    for (int32_t i = 0; i < p->n_ff; i++) sl_quantize_row_ref(type, B + (size_t)i * rank, (uint8_t *)b + (size_t)i * row_b, rank);
    sl_profile_layer_data *L = &p->layers[layer];
    sl_free_aligned(L->owned_a);
    sl_free_aligned(L->owned_b);
    L->owned_a = a;
    L->owned_b = b;
    L->pred_a = sl_weight_view(a, type, rank, p->n_embd);
    L->pred_b = sl_weight_view(b, type, p->n_ff, rank);
    pack_predictor(p, L);
    L->info.rank = rank;
    return SL_OK;
}

float sl_profile_gate_nonpositive(const sl_profile *p, int32_t layer) {
    if (!p || layer < 0 || layer >= p->n_layer) return NAN;
    return p->layers[layer].gate_nonpos;
}

/* ---- file format ------------------------------------------------------------------------------ */

#define KEY(name) "skipllama.profile." name

sl_status sl_profile_save(const sl_profile *p, const char *path, sl_error *err) {
    const int32_t n = p->n_layer;
    gguf_writer *w = gguf_writer_init();
    uint32_t *u_rule = calloc((size_t)n, 4), *u_topk = calloc((size_t)n, 4), *u_rank = calloc((size_t)n, 4), *u_cand = calloc((size_t)n, 4);
    uint32_t *u_gate = calloc((size_t)n, 4);
    float *f = calloc((size_t)n * 9, sizeof(float));
    float *quant = calloc((size_t)n * SL_PROFILE_N_QUANTILES, sizeof(float));
    const int32_t G = p->n_levels;
    float *sched = calloc((size_t)n * (G ? G : 1) * 4, sizeof(float));
    sl_status st = SL_OK;
    if (!w || !u_rule || !u_topk || !u_rank || !u_cand || !u_gate || !f || !quant || !sched) {
        st = sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory");
        goto done;
    }
    float *thr = f, *tgt = f + n, *rec = f + 2 * n, *prec = f + 3 * n, *tden = f + 4 * n, *pden = f + 5 * n, *gnp = f + 6 * n, *crec = f + 7 * n;
    for (int32_t l = 0; l < n; l++) {
        const sl_profile_layer_data *L = &p->layers[l];
        u_rule[l] = (uint32_t)L->info.rule;
        u_topk[l] = (uint32_t)L->info.topk;
        u_rank[l] = (uint32_t)L->info.rank;
        u_cand[l] = (uint32_t)L->info.cand_k;
        u_gate[l] = (uint32_t)L->info.gate_k;
        thr[l] = L->info.threshold;
        tgt[l] = L->info.target_sparsity;
        rec[l] = L->info.recall;
        prec[l] = L->info.precision;
        tden[l] = L->info.true_density;
        pden[l] = L->info.pred_density;
        gnp[l] = L->gate_nonpos;
        crec[l] = L->info.contrib_recall;
        memcpy(quant + (size_t)l * SL_PROFILE_N_QUANTILES, L->cats_q, sizeof(L->cats_q));
        for (int32_t g = 0; g < G; g++) {
            sched[(size_t)l * G + g] = L->has_split ? L->split_cand[g] : NAN;
            sched[(size_t)(n + l) * G + g] = L->has_split ? L->split_keep[g] : NAN;
            sched[(size_t)(2 * n + l) * G + g] = p->has_alloc ? L->alloc[g] : NAN;
            sched[(size_t)(3 * n + l) * G + g] = L->has_split && L->has_gate ? L->split_gate[g] : NAN;
        }
    }
    bool ok = gguf_writer_set_str(w, "general.architecture", "skipllama-profile") &&
              gguf_writer_set_u32(w, KEY("version"), SL_PROFILE_VERSION) && gguf_writer_set_str(w, KEY("method"), p->method) &&
              gguf_writer_set_str(w, KEY("fingerprint"), p->fingerprint) && gguf_writer_set_u32(w, KEY("n_layer"), (uint32_t)n) &&
              gguf_writer_set_u32(w, KEY("n_embd"), (uint32_t)p->n_embd) && gguf_writer_set_u32(w, KEY("n_ff"), (uint32_t)p->n_ff) &&
              gguf_writer_set_arr(w, KEY("rule"), GGUF_TYPE_UINT32, u_rule, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("threshold"), GGUF_TYPE_FLOAT32, thr, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("topk"), GGUF_TYPE_UINT32, u_topk, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("target_sparsity"), GGUF_TYPE_FLOAT32, tgt, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("rank"), GGUF_TYPE_UINT32, u_rank, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("cand_k"), GGUF_TYPE_UINT32, u_cand, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("gate_k"), GGUF_TYPE_UINT32, u_gate, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("recall"), GGUF_TYPE_FLOAT32, rec, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("precision"), GGUF_TYPE_FLOAT32, prec, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("true_density"), GGUF_TYPE_FLOAT32, tden, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("pred_density"), GGUF_TYPE_FLOAT32, pden, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("gate_nonpositive"), GGUF_TYPE_FLOAT32, gnp, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("contrib_recall"), GGUF_TYPE_FLOAT32, crec, (uint64_t)n) &&
              gguf_writer_set_arr(w, KEY("cats_quantiles"), GGUF_TYPE_FLOAT32, quant, (uint64_t)n * SL_PROFILE_N_QUANTILES);
    if (ok && G > 0)
        ok = gguf_writer_set_arr(w, KEY("levels"), GGUF_TYPE_FLOAT32, p->levels, (uint64_t)G) &&
             gguf_writer_set_arr(w, KEY("split_cand"), GGUF_TYPE_FLOAT32, sched, (uint64_t)n * G) &&
             gguf_writer_set_arr(w, KEY("split_keep"), GGUF_TYPE_FLOAT32, sched + (size_t)n * G, (uint64_t)n * G) &&
             gguf_writer_set_arr(w, KEY("alloc"), GGUF_TYPE_FLOAT32, sched + (size_t)2 * n * G, (uint64_t)n * G) &&
             gguf_writer_set_arr(w, KEY("split_gate"), GGUF_TYPE_FLOAT32, sched + (size_t)3 * n * G, (uint64_t)n * G);
    for (int32_t l = 0; ok && l < n; l++) {
        const sl_profile_layer_data *L = &p->layers[l];
        if (!L->info.rank) continue;
        char name[64];
        int64_t ne_a[2] = {L->pred_a.cols, L->pred_a.rows}, ne_b[2] = {L->pred_b.cols, L->pred_b.rows};
        snprintf(name, sizeof(name), "blk.%d.pred_a.weight", l);
        ok = gguf_writer_add_tensor(w, name, L->pred_a.type, 2, ne_a, L->pred_a.data);
        snprintf(name, sizeof(name), "blk.%d.pred_b.weight", l);
        ok = ok && gguf_writer_add_tensor(w, name, L->pred_b.type, 2, ne_b, L->pred_b.data);
    }
    if (!ok) {
        st = sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory while serialising");
        goto done;
    }
    st = gguf_writer_write(w, path, err);
done:
    gguf_writer_free(w);
    free(u_rule);
    free(u_topk);
    free(u_rank);
    free(u_cand);
    free(u_gate);
    free(f);
    free(quant);
    free(sched);
    return st;
}

/* Fetch a per-layer array of n numbers (u32 or f32). */
static bool get_layer_arr(const gguf_file *g, const char *key, gguf_type type, uint64_t n, const gguf_array **out, sl_error *err) {
    const gguf_array *a = gguf_get_arr(g, key, type);
    if (!a || a->n != n) {
        sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' must be an array of %llu %s", key, (unsigned long long)n, gguf_type_name(type));
        return false;
    }
    *out = a;
    return true;
}

/* The optional schedule tables (levels, split_cand / split_keep, alloc; NaN = none for a layer),
 * checked as sl_profile_set_levels / set_split / set_allocation check them. */
static sl_status load_schedules(const gguf_file *g, sl_profile *p, sl_error *err) {
    const gguf_array *lv = gguf_get_arr(g, KEY("levels"), GGUF_TYPE_FLOAT32);
    if (!lv) return SL_OK;
    const uint64_t G = lv->n, n = (uint64_t)p->n_layer;
    if (G < 1 || G > SL_PROFILE_MAX_LEVELS)
        return sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' must hold 1..%d levels", KEY("levels"), SL_PROFILE_MAX_LEVELS);
    float levels[SL_PROFILE_MAX_LEVELS];
    for (uint64_t k = 0; k < G; k++) levels[k] = gguf_arr_f32(lv, k);
    sl_error e2;
    if (sl_profile_set_levels(p, levels, (int32_t)G, &e2)) return sl_set_error(err, SL_ERR_FORMAT, "%s", e2.message);
    const gguf_array *t[3];
    static const char *const keys[3] = {KEY("split_cand"), KEY("split_keep"), KEY("alloc")};
    for (int k = 0; k < 3; k++)
        if (!get_layer_arr(g, keys[k], GGUF_TYPE_FLOAT32, n * G, &t[k], err)) return SL_ERR_FORMAT;
    /* optional: the gate-stage table (absent in files written before it) */
    const gguf_array *tg = gguf_get_arr(g, KEY("split_gate"), GGUF_TYPE_FLOAT32);
    if (tg && tg->n != n * G) return sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' must hold n_layer x levels floats", KEY("split_gate"));
    float *alloc = malloc((size_t)(n * G) * sizeof(float));
    if (!alloc) return sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory");
    bool any_alloc = false, all_alloc = true;
    sl_status st = SL_OK;
    for (uint64_t l = 0; l < n && !st; l++) {
        float cand[SL_PROFILE_MAX_LEVELS], keep[SL_PROFILE_MAX_LEVELS];
        bool has = true;
        for (uint64_t k = 0; k < G; k++) {
            cand[k] = gguf_arr_f32(t[0], l * G + k);
            keep[k] = gguf_arr_f32(t[1], l * G + k);
            alloc[l * G + k] = gguf_arr_f32(t[2], l * G + k);
            has = has && !isnan(cand[k]) && !isnan(keep[k]);
            if (isnan(alloc[l * G + k])) all_alloc = false;
            else any_alloc = true;
        }
        if (has && sl_profile_set_split(p, (int32_t)l, cand, keep, &e2)) st = sl_set_error(err, SL_ERR_FORMAT, "%s", e2.message);
        if (has && !st && tg) {
            float gate[SL_PROFILE_MAX_LEVELS];
            bool any = false;
            for (uint64_t k = 0; k < G; k++) {
                gate[k] = gguf_arr_f32(tg, l * G + k);
                if (!isnan(gate[k])) any = true;
            }
            if (any && sl_profile_set_split_gate(p, (int32_t)l, gate, &e2)) st = sl_set_error(err, SL_ERR_FORMAT, "%s", e2.message);
        }
    }
    if (!st && any_alloc) {
        if (!all_alloc) st = sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' has NaN entries beside numbers", KEY("alloc"));
        else if (sl_profile_set_allocation(p, alloc, &e2)) st = sl_set_error(err, SL_ERR_FORMAT, "%s", e2.message);
    }
    free(alloc);
    return st;
}

sl_profile *sl_profile_load(const char *path, const sl_model *model, sl_error *err) {
    sl_clear_error(err);
    if (!model || !model->layers) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "profile: needs the model it was made for");
        return NULL;
    }
    gguf_file *g = gguf_open(path, err);
    if (!g) return NULL;
    sl_profile *p = NULL;
    gguf_str s;
    uint32_t version = 0, n_layer = 0, n_embd = 0, n_ff = 0;
    if (!gguf_get_str(g, "general.architecture", &s) || !gguf_str_eq(s, "skipllama-profile")) {
        sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' is not a skipllama profile (general.architecture != skipllama-profile)", path);
        goto fail;
    }
    if (!gguf_get_u32(g, KEY("version"), &version) || version != SL_PROFILE_VERSION) {
        sl_set_error(err, SL_ERR_UNSUPPORTED, "profile: '%s' has format version %u; this build reads version %d", path, version,
                     SL_PROFILE_VERSION);
        goto fail;
    }
    const sl_model_config *c = &model->config;
    if (!gguf_get_u32(g, KEY("n_layer"), &n_layer) || !gguf_get_u32(g, KEY("n_embd"), &n_embd) || !gguf_get_u32(g, KEY("n_ff"), &n_ff)) {
        sl_set_error(err, SL_ERR_FORMAT, "profile: missing n_layer / n_embd / n_ff");
        goto fail;
    }
    if (n_layer != (uint32_t)c->n_layer || n_embd != (uint32_t)c->n_embd || n_ff != (uint32_t)c->n_ff) {
        sl_set_error(err, SL_ERR_INVALID_ARG,
                     "profile: made for a model with %u layers, n_embd %u, n_ff %u; this model has %d, %d, %d", n_layer, n_embd, n_ff,
                     c->n_layer, c->n_embd, c->n_ff);
        goto fail;
    }
    char fp[32], want[32];
    sl_model_fingerprint(model, want);
    if (!gguf_get_str(g, KEY("fingerprint"), &s) || strcmp(gguf_str_copy(s, fp, sizeof(fp)), want) != 0) {
        sl_set_error(err, SL_ERR_INVALID_ARG,
                     "profile: '%s' was made for another model (fingerprint %s, this model's is %s): recalibrate or retrain it for this model",
                     path, fp, want);
        goto fail;
    }
    p = profile_alloc(c->n_layer, c->n_embd, c->n_ff);
    if (!p) {
        sl_set_error(err, SL_ERR_NOMEM, "profile: out of memory");
        goto fail;
    }
    memcpy(p->fingerprint, want, sizeof(want));
    if (gguf_get_str(g, KEY("method"), &s)) gguf_str_copy(s, p->method, sizeof(p->method));
    const gguf_array *a_rule, *a_thr, *a_topk, *a_tgt, *a_rank, *a_q;
    if (!get_layer_arr(g, KEY("rule"), GGUF_TYPE_UINT32, n_layer, &a_rule, err) ||
        !get_layer_arr(g, KEY("threshold"), GGUF_TYPE_FLOAT32, n_layer, &a_thr, err) ||
        !get_layer_arr(g, KEY("topk"), GGUF_TYPE_UINT32, n_layer, &a_topk, err) ||
        !get_layer_arr(g, KEY("target_sparsity"), GGUF_TYPE_FLOAT32, n_layer, &a_tgt, err) ||
        !get_layer_arr(g, KEY("rank"), GGUF_TYPE_UINT32, n_layer, &a_rank, err) ||
        !get_layer_arr(g, KEY("cats_quantiles"), GGUF_TYPE_FLOAT32, (uint64_t)n_layer * SL_PROFILE_N_QUANTILES, &a_q, err))
        goto fail;
    /* optional: two-stage candidates (absent in files written before the two-stage rules) */
    const gguf_array *a_cand = gguf_get_arr(g, KEY("cand_k"), GGUF_TYPE_UINT32), *a_gate = gguf_get_arr(g, KEY("gate_k"), GGUF_TYPE_UINT32);
    if ((a_cand && a_cand->n != n_layer) || (a_gate && a_gate->n != n_layer)) {
        sl_set_error(err, SL_ERR_FORMAT, "profile: '%s' and '%s' must be arrays of %u uint32", KEY("cand_k"), KEY("gate_k"), n_layer);
        goto fail;
    }
    /* optional metrics */
    static const char *const metric_keys[6] = {KEY("recall"), KEY("precision"), KEY("true_density"), KEY("pred_density"),
                                               KEY("gate_nonpositive"), KEY("contrib_recall")};
    const gguf_array *metrics[6];
    for (int k = 0; k < 6; k++) {
        metrics[k] = gguf_get_arr(g, metric_keys[k], GGUF_TYPE_FLOAT32);
        if (metrics[k] && metrics[k]->n != n_layer) metrics[k] = NULL;
    }
    for (uint32_t l = 0; l < n_layer; l++) {
        sl_profile_layer_data *L = &p->layers[l];
        sl_profile_layer in;
        memset(&in, 0, sizeof(in));
        in.rule = (sl_skip_rule)gguf_arr_int(a_rule, l);
        in.threshold = gguf_arr_f32(a_thr, l);
        int64_t k = gguf_arr_int(a_topk, l);
        in.topk = k > INT32_MAX ? INT32_MAX : (int32_t)k;
        in.target_sparsity = gguf_arr_f32(a_tgt, l);
        const int64_t ck = a_cand ? gguf_arr_int(a_cand, l) : 0;
        in.cand_k = ck > INT32_MAX ? INT32_MAX : (int32_t)ck;
        const int64_t gk = a_gate ? gguf_arr_int(a_gate, l) : 0;
        in.gate_k = gk > INT32_MAX ? INT32_MAX : (int32_t)gk;
        int64_t rank = gguf_arr_int(a_rank, l);
        if (rank < 0 || rank > (int64_t)n_embd) {
            sl_set_error(err, SL_ERR_FORMAT, "profile: layer %u: rank %lld outside 0..%u", l, (long long)rank, n_embd);
            goto fail;
        }
        if (rank) {
            char name[64];
            const gguf_tensor_info *ta, *tb;
            snprintf(name, sizeof(name), "blk.%u.pred_a.weight", l);
            ta = gguf_find_tensor(g, name);
            snprintf(name, sizeof(name), "blk.%u.pred_b.weight", l);
            tb = gguf_find_tensor(g, name);
            if (!ta || !tb || ta->ne[0] != n_embd || ta->ne[1] != rank || tb->ne[0] != rank || tb->ne[1] != n_ff || ta->ne[2] != 1 ||
                tb->ne[2] != 1 || ta->ne[3] != 1 || tb->ne[3] != 1) {
                sl_set_error(err, SL_ERR_FORMAT, "profile: layer %u: predictor tensors missing or not [%u, %lld] and [%lld, %u]", l, n_embd,
                             (long long)rank, (long long)rank, n_ff);
                goto fail;
            }
            L->pred_a = sl_weight_view(ta->data, ta->type, rank, n_embd);
            L->pred_b = sl_weight_view(tb->data, tb->type, n_ff, rank);
            if (!L->pred_a.row_bytes || !L->pred_b.row_bytes) {
                sl_set_error(err, SL_ERR_FORMAT, "profile: layer %u: predictor rows do not fit the %s block size", l, sl_type_name(ta->type));
                goto fail;
            }
        }
        if (validate_info(p, (int32_t)l, &in, (int32_t)rank, err)) goto fail;
        L->info = in;
        L->info.rank = (int32_t)rank;
        L->info.recall = metrics[0] ? gguf_arr_f32(metrics[0], l) : NAN;
        L->info.precision = metrics[1] ? gguf_arr_f32(metrics[1], l) : NAN;
        L->info.true_density = metrics[2] ? gguf_arr_f32(metrics[2], l) : NAN;
        L->info.pred_density = metrics[3] ? gguf_arr_f32(metrics[3], l) : NAN;
        L->gate_nonpos = metrics[4] ? gguf_arr_f32(metrics[4], l) : NAN;
        L->info.contrib_recall = metrics[5] ? gguf_arr_f32(metrics[5], l) : NAN;
        float prev = -INFINITY;
        for (int q = 0; q < SL_PROFILE_N_QUANTILES; q++) {
            float v = gguf_arr_f32(a_q, (uint64_t)l * SL_PROFILE_N_QUANTILES + (uint64_t)q);
            if (!isnan(v) && (v < prev || v < 0)) {
                sl_set_error(err, SL_ERR_FORMAT, "profile: layer %u: CATS quantiles must be non-negative and non-decreasing", l);
                goto fail;
            }
            if (!isnan(v)) prev = v;
            L->cats_q[q] = v;
        }
    }
    if (load_schedules(g, p, err)) goto fail;
    p->gguf = g;
    for (uint32_t l = 0; l < n_layer; l++)
        if (p->layers[l].info.rank) pack_predictor(p, &p->layers[l]);
    return p;
fail:
    sl_profile_free(p);
    gguf_close(g);
    return NULL;
}
