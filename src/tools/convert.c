/*
 * convert.c — converting weights between types: single rows (sl_convert_*), whole GGUF files
 * (sl_model_quantize), a Hugging Face folder to a GGUF file llama.cpp reads (sl_model_convert),
 * and the llama.cpp file-type numbers that go with them.
 *
 * What it is for: `skipllama quantize` and anything else that needs F32/F16/BF16/Q8_0/Q4_0 bytes
 * exactly as llama.cpp writes them (the reference quantizers of quant.c round like ggml's
 * quantize_row_*_ref, which is what llama-quantize uses when no importance matrix is given).
 * Files are converted a chunk of rows at a time from the input's mapping into the output stream,
 * so memory stays bounded whatever the model size. What it is not: a mixed-precision quantizer
 * (no k-quants, no per-tensor type rules beyond "vectors stay F32"), and not fast kernels.
 */
#include "format/gguf.h"
#include "model/hf.h"
#include "model/model.h"
#include "format/quant.h"
#include "tools/quant_recipe.h"
#include "util/threadpool.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int32_t sl_type_to_ftype(sl_type type) {
    /* values of llama.cpp's enum llama_ftype (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, ...) */
    switch ((int)type) {
    case SL_TYPE_F32: return 0;
    case SL_TYPE_F16: return 1;
    case SL_TYPE_Q4_0: return 2;
    case SL_TYPE_Q4_1: return 3;
    case SL_TYPE_Q8_0: return 7;
    case SL_TYPE_Q5_0: return 8;
    case SL_TYPE_Q5_1: return 9;
    case SL_TYPE_Q2_K: return 10;
    case SL_TYPE_Q3_K: return 12;
    case SL_TYPE_Q4_K: return 15;
    case SL_TYPE_Q5_K: return 17;
    case SL_TYPE_Q6_K: return 18;
    case SL_TYPE_IQ4_NL: return 25;
    case SL_TYPE_IQ4_XS: return 30;
    case SL_TYPE_BF16: return 32;
    }
    return -1;
}

size_t sl_convert_from_f32(sl_type type, const float *src, void *dst, int64_t n) {
    size_t bytes = sl_type_row_size(type, n);
    if (!bytes || !src || !dst) return 0;
    sl_quantize_row_ref(type, src, dst, n);
    return bytes;
}

bool sl_convert_to_f32(sl_type type, const void *src, float *dst, int64_t n) {
    if (n <= 0 || !src || !dst || !sl_type_row_size(type, n)) return false;
    sl_dequantize_row_ref(type, src, dst, n);
    return true;
}

/* ---- whole files ----------------------------------------------------------------------------- */

typedef struct quant_job {
    const gguf_file *in;    /* source file */
    const sl_type *out_type; /* [n_tensors] type of each output tensor */
    const int32_t *head_dim; /* [n_tensors] > 0: rows to permute from HF's q/k order to GGUF's, in heads of this size */
    float *scratch;         /* n_threads rows of max_cols floats */
    int64_t max_cols;       /* widest row */
    /* the chunk being produced: */
    size_t index;           /* tensor */
    int64_t row0;           /* first row */
    int64_t n_rows;         /* rows */
    uint8_t *dst;           /* output bytes */
} quant_job;

static void quant_rows_task(void *arg, int ith, int nth) {
    quant_job *j = arg;
    const gguf_tensor_info *t = &j->in->tensors[j->index];
    const sl_type ot = j->out_type[j->index];
    const int64_t cols = t->ne[0];
    const size_t in_row = sl_type_row_size(t->type, cols), out_row = sl_type_row_size(ot, cols);
    float *tmp = j->scratch + (size_t)ith * (size_t)j->max_cols;
    long long r0, r1;
    sl_split_range(j->n_rows, ith, nth, &r0, &r1);
    const int64_t d = j->head_dim ? j->head_dim[j->index] : 0;
    for (long long r = r0; r < r1; r++) {
        int64_t g = j->row0 + r;
        /* llama.cpp's converter permutes llama q/k rows: GGUF row h*d + 2i + half holds HF row
         * h*d + half*d/2 + i (each head's RoPE halves interleaved into pairs) */
        if (d > 0) g = g / d * d + (g % d % 2) * (d / 2) + g % d / 2;
        const uint8_t *src = (const uint8_t *)t->data + (size_t)g * in_row;
        uint8_t *dst = j->dst + (size_t)r * out_row;
        if (t->type == ot) {
            /* same type: keep the bytes (decoding and re-encoding a quantized row can move it) */
            memcpy(dst, src, out_row);
            continue;
        }
        /* the mapping's rows are only 1- or 2-byte aligned for block types; dequantize copies */
        sl_dequantize_row_ref(t->type, src, tmp, cols);
        sl_quantize_row_ref(ot, tmp, dst, cols);
    }
}

typedef struct quant_stream {
    quant_job job; /* shared with the pool */
    sl_pool *pool; /* workers, or NULL for one thread */
    const sl_quantize_params *params; /* progress callback, or NULL */
    int64_t done;  /* tensor bytes written so far */
    int64_t total; /* tensor bytes in all */
} quant_stream;

static sl_status quant_rows(void *ud, size_t index, int64_t row0, int64_t n_rows, void *dst, sl_error *err) {
    quant_stream *s = ud;
    s->job.index = index;
    s->job.row0 = row0;
    s->job.n_rows = n_rows;
    s->job.dst = dst;
    sl_pool_run(s->pool, quant_rows_task, &s->job);
    const gguf_tensor_info *t = &s->job.in->tensors[index];
    s->done += n_rows * (int64_t)sl_type_row_size(s->job.out_type[index], t->ne[0]);
    if (s->params && s->params->progress) s->params->progress(s->params->progress_ud, s->done, s->total);
    return SL_OK;
}

/* Metadata that the output states itself rather than copying. */
static bool quant_skip_key(const char *key, void *ud) {
    (void)ud;
    return !strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version") ||
           !strcmp(key, "general.alignment");
}

/* Output type of one tensor: vectors become F32; matrices take the target type (target < 0:
 * keep theirs), or F16 when their rows do not split into whole blocks (llama.cpp falls back the
 * same way). */
static sl_type quant_out_type(const gguf_tensor_info *t, int target) {
    if (t->n_dims < 2) return SL_TYPE_F32;
    if (target < 0) return t->type;
    if (t->ne[0] % sl_type_block_size(target)) return SL_TYPE_F16;
    return target;
}

/* A metadata integer "<arch>.<key>", or def. */
static int arch_u32(const gguf_file *f, const char *key, int def) {
    gguf_str a;
    char arch[32] = "llama", full[96];
    if (gguf_get_str(f, "general.architecture", &a)) gguf_str_copy(a, arch, sizeof(arch));
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    uint32_t v;
    return gguf_get_u32(f, full, &v) && v > 0 && v < (1u << 20) ? (int)v : def;
}

static const gguf_file *sort_file; /* qsort has no context argument; quantization is not reentrant here */
static int order_cmp(const void *a, const void *b) {
    char na[256], nb[256];
    gguf_str_copy(sort_file->tensors[*(const uint64_t *)a].name, na, sizeof(na));
    gguf_str_copy(sort_file->tensors[*(const uint64_t *)b].name, nb, sizeof(nb));
    return sl_quant_recipe_order_cmp(na, nb);
}

/* The output type of every tensor, by llama.cpp's rules for the file type (quant_recipe.c),
 * decided in llama.cpp's tensor order. */
static sl_status recipe_types(const gguf_file *in, int32_t ftype, bool pure, sl_type *out_type, sl_error *err) {
    int n_layer = arch_u32(in, "block_count", 0);
    bool has_output = gguf_find_tensor(in, "output.weight") != NULL;
    uint64_t *order = malloc((in->n_tensors ? in->n_tensors : 1) * sizeof(uint64_t));
    if (!order) return sl_set_error(err, SL_ERR_NOMEM, "quantize: out of memory");
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        order[i] = i;
        char name[256];
        int l;
        if (!n_layer && sscanf(gguf_str_copy(in->tensors[i].name, name, sizeof(name)), "blk.%d.", &l) == 1 && l + 1 > 0) n_layer = l + 1;
    }
    const int n_head = arch_u32(in, "attention.head_count", 1);
    sl_quant_recipe r;
    if (!sl_quant_recipe_init(&r, ftype, pure, n_layer, n_head, arch_u32(in, "attention.head_count_kv", n_head), has_output)) {
        free(order);
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "quantize: unsupported file type %d", (int)ftype);
    }
    sort_file = in;
    qsort(order, in->n_tensors, sizeof(uint64_t), order_cmp);
    for (uint64_t k = 0; k < in->n_tensors; k++) {
        const gguf_tensor_info *t = &in->tensors[order[k]];
        char name[256];
        gguf_str_copy(t->name, name, sizeof(name));
        out_type[order[k]] = sl_quant_recipe_next(&r, name, (int)t->n_dims, t->ne[0], t->type);
    }
    free(order);
    return SL_OK;
}

/* Write `in` (open) to out_path with every 2-D tensor as `type` (< 0: kept) — or, when ftype >= 0,
 * with the types llama.cpp's recipe for that file type gives (recipe_types) — permuting the rows
 * of the tensors for which head_dim[i] > 0 (may be NULL). */
static sl_status write_file(const gguf_file *in, const char *out_path, int type, int32_t ftype, bool pure, const int32_t *head_dim,
                            int32_t n_threads, const sl_quantize_params *params, sl_error *err) {
    sl_status st = SL_OK;
    quant_stream s;
    memset(&s, 0, sizeof(s));
    s.params = params; /* progress only; NULL for none */
    sl_type *out_type = calloc(in->n_tensors ? (size_t)in->n_tensors : 1, sizeof(sl_type));
    gguf_writer *w = gguf_writer_init();
    if (!out_type || !w) {
        st = sl_set_error(err, SL_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    /* the file type: the target, or the type of the widest kept matrix */
    sl_type ftype_of = type >= 0 ? (sl_type)type : SL_TYPE_F32;
    int64_t widest = 0;
    for (uint64_t i = 0; type < 0 && i < in->n_tensors; i++)
        if (in->tensors[i].n_dims >= 2 && in->tensors[i].ne[0] * in->tensors[i].ne[1] > widest) {
            widest = in->tensors[i].ne[0] * in->tensors[i].ne[1];
            ftype_of = in->tensors[i].type;
        }
    bool ok = gguf_writer_copy_kv(w, in, quant_skip_key, NULL);
    if (ok && gguf_find_kv(in, "general.alignment")) ok = gguf_writer_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
    ok = ok && gguf_writer_set_u32(w, "general.quantization_version", 2) &&
         gguf_writer_set_u32(w, "general.file_type", (uint32_t)(ftype >= 0 ? ftype : sl_type_to_ftype(ftype_of)));
    if (!ok) {
        st = sl_set_error(err, SL_ERR_NOMEM, "quantize: out of memory copying metadata");
        goto done;
    }
    if (ftype >= 0 && (st = recipe_types(in, ftype, pure, out_type, err)) != SL_OK) goto done;
    int64_t max_cols = 1;
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const gguf_tensor_info *t = &in->tensors[i];
        char name[256];
        gguf_str_copy(t->name, name, sizeof(name));
        if (t->name.len >= sizeof(name)) {
            st = sl_set_error(err, SL_ERR_UNSUPPORTED, "quantize: tensor name of %llu bytes is too long",
                              (unsigned long long)t->name.len);
            goto done;
        }
        if (ftype < 0) out_type[i] = quant_out_type(t, type);
        s.total += t->ne[1] * t->ne[2] * t->ne[3] * (int64_t)sl_type_row_size(out_type[i], t->ne[0]);
        if (!gguf_writer_add_tensor(w, name, out_type[i], (int)t->n_dims, t->ne, NULL)) {
            st = sl_set_error(err, SL_ERR_FORMAT, "quantize: cannot add tensor '%s' as %s", name, sl_type_name(out_type[i]));
            goto done;
        }
        if (t->ne[0] > max_cols) max_cols = t->ne[0];
    }
    s.job.in = in;
    s.job.out_type = out_type;
    s.job.head_dim = head_dim;
    s.job.max_cols = max_cols;
    s.job.scratch = sl_calloc_array((size_t)n_threads * (size_t)max_cols, sizeof(float));
    s.pool = n_threads > 1 ? sl_pool_init(n_threads) : NULL;
    if (!s.job.scratch || (n_threads > 1 && !s.pool)) {
        st = sl_set_error(err, SL_ERR_NOMEM, "quantize: cannot allocate scratch rows of %lld floats for %d threads",
                          (long long)max_cols, n_threads);
        goto done;
    }
    st = gguf_writer_write_stream(w, out_path, quant_rows, &s, 0, err);
done:
    sl_pool_free(s.pool);
    sl_free_aligned(s.job.scratch);
    gguf_writer_free(w);
    free(out_type);
    return st;
}

static sl_status check_args(const char *what, const char *in_path, const char *out_path, int type, int32_t *n_threads, sl_error *err) {
    if (!in_path || !out_path) return sl_set_error(err, SL_ERR_INVALID_ARG, "%s: NULL path", what);
    if (type >= 0 && (sl_type_to_ftype((sl_type)type) < 0 || !sl_type_traits_of(type)))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "%s: unsupported target type %s (%d)", what,
                            sl_type_name((sl_type)type) ? sl_type_name((sl_type)type) : "unknown", type);
    if (*n_threads < 0 || *n_threads > 1024)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "%s: n_threads %d out of range 0..1024", what, *n_threads);
    if (*n_threads == 0) *n_threads = 1;
    if (!strcmp(in_path, out_path))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "%s: input and output are the same file '%s'", what, in_path);
    return SL_OK;
}

sl_status sl_model_quantize(const char *in_path, const char *out_path, sl_type type, int32_t n_threads, sl_error *err) {
    sl_status st = check_args("quantize", in_path, out_path, (int)type, &n_threads, err);
    if (st != SL_OK) return st;
    return sl_model_quantize_ftype(in_path, out_path, sl_type_to_ftype(type), true, n_threads, err);
}

sl_quantize_params sl_quantize_default_params(void) {
    sl_quantize_params p;
    memset(&p, 0, sizeof(p));
    p.ftype = sl_type_to_ftype(SL_TYPE_Q8_0);
    p.n_threads = 1;
    return p;
}

sl_status sl_model_quantize_ftype(const char *in_path, const char *out_path, int32_t ftype, bool pure, int32_t n_threads,
                                  sl_error *err) {
    sl_quantize_params p = sl_quantize_default_params();
    p.ftype = ftype;
    p.pure = pure;
    p.n_threads = n_threads;
    return sl_model_quantize_ex(in_path, out_path, &p, err);
}

sl_status sl_model_quantize_ex(const char *in_path, const char *out_path, const sl_quantize_params *params, sl_error *err) {
    if (!params) return sl_set_error(err, SL_ERR_INVALID_ARG, "quantize: NULL parameters");
    const int32_t ftype = params->ftype;
    int32_t n_threads = params->n_threads;
    if ((int)sl_ftype_default_type(ftype) < 0)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "quantize: unsupported file type %d", (int)ftype);
    sl_status st = check_args("quantize", in_path, out_path, -1, &n_threads, err);
    if (st != SL_OK) return st;
    gguf_file *in = gguf_open(in_path, err);
    if (!in) return err ? err->code : SL_ERR_IO;
    st = write_file(in, out_path, -1, ftype, params->pure, NULL, n_threads, params, err);
    gguf_close(in);
    return st;
}

sl_status sl_model_convert(const char *in_path, const char *out_path, int type, int32_t n_threads, sl_error *err) {
    sl_clear_error(err);
    sl_status st = check_args("convert", in_path, out_path, type, &n_threads, err);
    if (st != SL_OK) return st;
    if (!sl_hf_is_dir(in_path)) {
        gguf_file *in = gguf_open(in_path, err);
        if (!in) return err ? err->code : SL_ERR_IO;
        st = write_file(in, out_path, type, -1, false, NULL, n_threads, NULL, err);
        gguf_close(in);
        return st;
    }
    /* load it as a model first: every shape and hyperparameter checked as `run` would */
    sl_model *m = sl_model_load(in_path, NULL, err);
    if (!m) return err ? err->code : SL_ERR_FORMAT;
    const gguf_file *in = m->gguf;
    int32_t *head_dim = calloc(in->n_tensors ? (size_t)in->n_tensors : 1, sizeof(int32_t));
    if (!head_dim) {
        sl_model_free(m);
        return sl_set_error(err, SL_ERR_NOMEM, "convert: out of memory");
    }
    if (sl_hf_qk_unpermuted(m->hf))
        for (uint64_t i = 0; i < in->n_tensors; i++) {
            const char *nm = in->tensors[i].name.data; /* NUL-terminated in a virtual file */
            if (strstr(nm, ".attn_q.") || strstr(nm, ".attn_k.")) head_dim[i] = m->config.head_dim;
        }
    st = write_file(in, out_path, type, -1, false, head_dim, n_threads, NULL, err);
    free(head_dim);
    sl_model_free(m);
    return st;
}

/* ---- bandwidth accounting -------------------------------------------------------------------- */

static int64_t weight_bytes(const sl_weight *w) { return w->data ? w->rows * (int64_t)w->row_bytes : 0; }

int64_t sl_model_decode_bytes(const sl_model *model) {
    if (!model || !model->layers) return 0;
    int64_t total = weight_bytes(&model->output);
    for (int32_t l = 0; l < model->config.n_layer; l++) {
        const sl_layer *L = &model->layers[l];
        total += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv) + weight_bytes(&L->wo) +
                 weight_bytes(&L->ffn_gate) + weight_bytes(&L->ffn_up) + weight_bytes(&L->ffn_down);
    }
    return total;
}
