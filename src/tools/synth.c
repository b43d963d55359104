/*
 * synth.c — synthetic models with random weights (sl_synth_*; see skipllama.h), of every
 * architecture of the table in src/model/arch.h.
 *
 * What it is for: benchmark and test models of real shapes (TinyLlama-1.1B, Llama-3.2-1B,
 * Llama-2-7B, Qwen2.5-0.5B...) in every weight type, and the small per-architecture fixtures
 * checked against llama.cpp, since real weights cannot be downloaded everywhere. The file is a
 * standard GGUF of its architecture (llama.cpp's tensor names and metadata keys) with a minimal
 * SentencePiece vocabulary, so llama.cpp loads it too and both engines can be timed and compared
 * on the same bytes. Weights are streamed to disk a chunk of
 * rows at a time (gguf_writer_write_stream): a 7B F32 model never has to fit in memory.
 * What it is not: a model anyone should expect sensible text from — the weights are noise with
 * realistic scales (so activations stay finite and the numerics look like a real model's).
 *
 * Determinism: every row has its own random stream, seeded from (seed, tensor, row), so the
 * bytes do not depend on the thread count or on how the writer chunks rows.
 */
#include "format/gguf.h"
#include "format/quant.h"
#include "model/arch.h"
#include "util/threadpool.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- presets --------------------------------------------------------------------------------- */

typedef struct synth_preset {
    const char *name;     /* CLI name, also general.name */
    int32_t n_vocab;      /* vocabulary */
    int32_t n_embd;       /* width */
    int32_t n_ff;         /* MLP width */
    int32_t n_layer;      /* blocks */
    int32_t n_head;       /* query heads */
    int32_t n_head_kv;    /* KV heads */
    int32_t n_ctx;        /* training context (metadata only) */
    float rms_eps;        /* RMSNorm epsilon */
    float rope_base;      /* RoPE theta */
    bool tied;            /* no output.weight */
    bool rope_freqs;      /* rope_freqs.weight present */
    const char *arch;     /* general.architecture */
    int32_t head_dim;     /* 0: n_embd / n_head */
    bool qkv_bias;        /* q/k/v biases */
} synth_preset;

static const synth_preset presets[] = {
    /* small enough for tests: every width a multiple of 32 so all block types apply */
    {"tiny", 512, 64, 192, 2, 4, 2, 256, 1e-5f, 10000.0f, false, false, "llama", 0, false},
    {"tinyllama-1.1b", 32000, 2048, 5632, 22, 32, 4, 2048, 1e-5f, 10000.0f, false, false, "llama", 0, false},
    {"llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, 131072, 1e-5f, 500000.0f, true, true, "llama", 0, false},
    {"llama-2-7b", 32000, 4096, 11008, 32, 32, 32, 4096, 1e-5f, 10000.0f, false, false, "llama", 0, false},
    {"qwen2.5-0.5b", 151936, 896, 4864, 24, 14, 2, 32768, 1e-6f, 1000000.0f, true, false, "qwen2", 64, true},
};
#define N_PRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

const char *sl_synth_preset_name(int i) { return i >= 0 && i < N_PRESETS ? presets[i].name : NULL; }

bool sl_synth_preset(const char *name, sl_synth_params *p) {
    if (!name || !p) return false;
    for (int i = 0; i < N_PRESETS; i++) {
        const synth_preset *s = &presets[i];
        if (strcmp(s->name, name) != 0) continue;
        snprintf(p->name, sizeof(p->name), "%s", s->name);
        p->n_vocab = s->n_vocab;
        p->n_embd = s->n_embd;
        p->n_ff = s->n_ff;
        p->n_layer = s->n_layer;
        p->n_head = s->n_head;
        p->n_head_kv = s->n_head_kv;
        p->n_rot = 0;
        p->n_ctx = s->n_ctx;
        p->rms_eps = s->rms_eps;
        p->rope_freq_base = s->rope_base;
        p->tied_embeddings = s->tied;
        p->rope_freqs = s->rope_freqs;
        snprintf(p->arch, sizeof(p->arch), "%s", s->arch);
        p->head_dim = s->head_dim;
        p->qkv_bias = s->qkv_bias;
        return true;
    }
    return false;
}

sl_synth_params sl_synth_default_params(void) {
    sl_synth_params p;
    memset(&p, 0, sizeof(p));
    sl_synth_preset("tiny", &p);
    p.act = SL_ACT_SILU;
    p.type = SL_TYPE_F32;
    p.seed = 1;
    p.n_threads = 1;
    p.swa_pattern = -1;
    return p;
}

/* ---- validation ------------------------------------------------------------------------------ */

#define SYNTH_MAX_DIM (1 << 20) /* any single dimension above this is surely a typo */

static int32_t head_dim_of(const sl_synth_params *p) { return p->head_dim ? p->head_dim : p->n_embd / p->n_head; }
static const sl_arch *arch_of(const sl_synth_params *p) { return sl_arch_find(p->arch[0] ? p->arch : "llama"); }
static int32_t n_rot_of(const sl_synth_params *p) { return p->n_rot ? p->n_rot : head_dim_of(p); }

static sl_status synth_validate(const sl_synth_params *p, sl_error *err) {
    if (!p) return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: NULL params");
    const int32_t dims[] = {p->n_vocab, p->n_embd, p->n_ff, p->n_layer, p->n_head, p->n_head_kv};
    const char *names[] = {"n_vocab", "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv"};
    for (int i = 0; i < 6; i++)
        if (dims[i] <= 0 || dims[i] > SYNTH_MAX_DIM)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: %s = %d is out of range 1..%d", names[i], dims[i], SYNTH_MAX_DIM);
    if (p->n_vocab < 259)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_vocab = %d, need >= 259 (3 special + 256 byte tokens)", p->n_vocab);
    const sl_arch *a = arch_of(p);
    if (!a) return sl_set_error(err, SL_ERR_UNSUPPORTED, "synth: unknown architecture '%.16s'", p->arch);
    if (p->head_dim < 0 || p->head_dim > 4096)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: head_dim %d is out of range 0..4096", p->head_dim);
    if (!p->head_dim && p->n_embd % p->n_head)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_embd %d is not divisible by n_head %d", p->n_embd, p->n_head);
    if (p->n_head % p->n_head_kv)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_head %d is not divisible by n_head_kv %d", p->n_head, p->n_head_kv);
    int32_t hd = head_dim_of(p), rot = n_rot_of(p);
    if (hd % 2 || rot <= 0 || rot % 2 || rot > hd)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: rotary dims %d must be even and <= head_dim %d (even)", rot, hd);
    if (p->n_swa < 0 || p->swa_pattern < -1 || p->rope_orig_ctx < 0 || !(p->attn_softcap >= 0.0f) || !(p->final_softcap >= 0.0f) ||
        !(p->rope_freq_base_swa >= 0.0f) || !(p->rope_scaling_factor >= 0.0f) || !(p->rope_attn_factor >= 0.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: window, pattern, caps and rope scaling values must not be negative");
    if (p->rope_scaling[0] && strcmp(p->rope_scaling, "none") && strcmp(p->rope_scaling, "linear") && strcmp(p->rope_scaling, "yarn") &&
        strcmp(p->rope_scaling, "longrope"))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: rope scaling '%.12s' is not none, linear, yarn or longrope", p->rope_scaling);
    if (p->n_ctx < 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_ctx %d < 0", p->n_ctx);
    if (!(p->rms_eps > 0.0f) || !(p->rope_freq_base > 0.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: rms_eps and rope_freq_base must be > 0");
    if ((p->act != SL_ACT_SILU && p->act != SL_ACT_RELU) || (p->act == SL_ACT_RELU && !a->act_key))
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "synth: activation %d is not silu, or relu on a llama model", (int)p->act);
    const sl_type_traits *tt = sl_type_traits_of(p->type);
    if (!tt) return sl_set_error(err, SL_ERR_UNSUPPORTED, "synth: unsupported weight type %s (%d)", sl_type_name(p->type) ? sl_type_name(p->type) : "unknown", (int)p->type);
    if (p->n_embd % tt->block_size || p->n_ff % tt->block_size || ((int64_t)p->n_head * hd) % tt->block_size)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_embd %d, n_ff %d and n_head * head_dim %lld must be multiples of %lld for %s",
                            p->n_embd, p->n_ff, (long long)p->n_head * hd, (long long)tt->block_size, tt->name);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: n_threads %d out of range 0..1024", p->n_threads);
    return SL_OK;
}

/* ---- tensor list ----------------------------------------------------------------------------- */

typedef enum tensor_kind {
    KIND_MATRIX, /* random ~N(0, sigma) */
    KIND_NORM,   /* 1 + small noise */
    KIND_BIAS,   /* random ~N(0, sigma), a vector */
    KIND_ROPE,   /* deterministic Llama-3 frequency factors */
    KIND_ROPE_LONG,  /* deterministic LongRoPE factors for long contexts (1 .. ~8) */
    KIND_ROPE_SHORT, /* ... and short ones (1 .. ~1.2) */
} tensor_kind;

typedef struct synth_tensor {
    char name[48];    /* GGUF name */
    tensor_kind kind; /* how values are made */
    sl_type type;     /* stored type */
    int64_t rows;     /* ne[1] (1 for vectors) */
    int64_t cols;     /* ne[0] */
    float sigma;      /* standard deviation (matrices) */
} synth_tensor;

/* Fill `out` (may be NULL to count) with the model's tensors in llama.cpp's usual order: the
 * tensors its architecture's row (arch.h) asks for. */
static size_t synth_tensors(const sl_synth_params *p, synth_tensor *out) {
    size_t n = 0;
    const sl_arch *a = arch_of(p);
    const int64_t e = p->n_embd, f = p->n_ff, hd = head_dim_of(p);
    const int64_t q = (int64_t)p->n_head * hd, kv = (int64_t)p->n_head_kv * hd;
    const float se = 1.0f / sqrtf((float)e), sf = 1.0f / sqrtf((float)f), sq = 1.0f / sqrtf((float)q);
#define ADD(kind_, type_, rows_, cols_, sigma_, ...)                                                                     \
    do {                                                                                                                 \
        if (out) {                                                                                                       \
            snprintf(out[n].name, sizeof(out[n].name), __VA_ARGS__);                                                     \
            out[n].kind = kind_;                                                                                         \
            out[n].type = type_;                                                                                         \
            out[n].rows = rows_;                                                                                         \
            out[n].cols = cols_;                                                                                         \
            out[n].sigma = sigma_;                                                                                       \
        }                                                                                                                \
        n++;                                                                                                             \
    } while (0)
    ADD(KIND_MATRIX, p->type, p->n_vocab, e, se, "token_embd.weight");
    ADD(KIND_NORM, SL_TYPE_F32, 1, e, 0.0f, "output_norm.weight");
    if (!p->tied_embeddings && !a->output_is_embd) ADD(KIND_MATRIX, p->type, p->n_vocab, e, se, "output.weight");
    if (p->rope_freqs) ADD(KIND_ROPE, SL_TYPE_F32, 1, n_rot_of(p) / 2, 0.0f, "rope_freqs.weight");
    if (p->longrope) {
        ADD(KIND_ROPE_LONG, SL_TYPE_F32, 1, n_rot_of(p) / 2, 0.0f, "rope_factors_long.weight");
        ADD(KIND_ROPE_SHORT, SL_TYPE_F32, 1, n_rot_of(p) / 2, 0.0f, "rope_factors_short.weight");
    }
    for (int l = 0; l < p->n_layer; l++) {
        ADD(KIND_NORM, SL_TYPE_F32, 1, e, 0.0f, "blk.%d.attn_norm.weight", l);
        if (a->ffn_fused_up) { /* Phi-3 fuses q, k, v too */
            ADD(KIND_MATRIX, p->type, q + 2 * kv, e, se, "blk.%d.attn_qkv.weight", l);
            if (p->qkv_bias) ADD(KIND_BIAS, SL_TYPE_F32, 1, q + 2 * kv, 0.2f, "blk.%d.attn_qkv.bias", l);
        } else {
            ADD(KIND_MATRIX, p->type, q, e, se, "blk.%d.attn_q.weight", l);
            ADD(KIND_MATRIX, p->type, kv, e, se, "blk.%d.attn_k.weight", l);
            ADD(KIND_MATRIX, p->type, kv, e, se, "blk.%d.attn_v.weight", l);
            if (p->qkv_bias) {
                ADD(KIND_BIAS, SL_TYPE_F32, 1, q, 0.2f, "blk.%d.attn_q.bias", l);
                ADD(KIND_BIAS, SL_TYPE_F32, 1, kv, 0.2f, "blk.%d.attn_k.bias", l);
                ADD(KIND_BIAS, SL_TYPE_F32, 1, kv, 0.2f, "blk.%d.attn_v.bias", l);
            }
        }
        if (a->qk_norm) {
            ADD(KIND_NORM, SL_TYPE_F32, 1, hd, 0.0f, "blk.%d.attn_q_norm.weight", l);
            ADD(KIND_NORM, SL_TYPE_F32, 1, hd, 0.0f, "blk.%d.attn_k_norm.weight", l);
        }
        ADD(KIND_MATRIX, p->type, e, q, sq, "blk.%d.attn_output.weight", l);
        if (a->post_norms) ADD(KIND_NORM, SL_TYPE_F32, 1, e, 0.0f, "blk.%d.post_attention_norm.weight", l);
        ADD(KIND_NORM, SL_TYPE_F32, 1, e, 0.0f, "blk.%d.ffn_norm.weight", l);
        if (!a->ffn_fused_up) ADD(KIND_MATRIX, p->type, f, e, se, "blk.%d.ffn_gate.weight", l);
        ADD(KIND_MATRIX, p->type, e, f, sf, "blk.%d.ffn_down.weight", l);
        ADD(KIND_MATRIX, p->type, a->ffn_fused_up ? 2 * f : f, e, se, "blk.%d.ffn_up.weight", l);
        if (a->post_norms) ADD(KIND_NORM, SL_TYPE_F32, 1, e, 0.0f, "blk.%d.post_ffw_norm.weight", l);
    }
#undef ADD
    return n;
}

int64_t sl_synth_n_params(const sl_synth_params *p) {
    if (synth_validate(p, NULL) != SL_OK) return -1;
    size_t n = synth_tensors(p, NULL);
    synth_tensor *ts = calloc(n, sizeof(*ts));
    if (!ts) return -1;
    synth_tensors(p, ts);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += ts[i].rows * ts[i].cols;
    free(ts);
    return total;
}

#define VOCAB_PIECE_MAX 24 /* bytes reserved per token string (the longest is "▁" + 4 letters) */

sl_status sl_synth_estimate(const sl_synth_params *p, int64_t *file_bytes, int64_t *memory_bytes, sl_error *err) {
    sl_status st = synth_validate(p, err);
    if (st != SL_OK) return st;
    size_t n = synth_tensors(p, NULL);
    synth_tensor *ts = calloc(n, sizeof(*ts));
    if (!ts) return sl_set_error(err, SL_ERR_NOMEM, "synth: out of memory");
    synth_tensors(p, ts);
    /* header and tensor infos, the vocabulary (text + score + type per token), aligned data */
    int64_t file = 4096 + (int64_t)p->n_vocab * (8 + VOCAB_PIECE_MAX + 4 + 4), widest_row = 0, max_cols = 1;
    for (size_t i = 0; i < n; i++) {
        const int64_t row = (int64_t)sl_type_row_size(ts[i].type, ts[i].cols);
        file += 96 + (ts[i].rows * row + 31) / 32 * 32;
        if (row > widest_row) widest_row = row;
        if (ts[i].cols > max_cols) max_cols = ts[i].cols;
    }
    free(ts);
    /* what sl_synth_write holds: the vocabulary twice (built, then serialised into the metadata),
     * per-thread scratch rows and the writer's chunk (8 MiB, or one row when wider) */
    const int64_t threads = p->n_threads > 0 ? p->n_threads : 1;
    const int64_t chunk = widest_row > ((int64_t)8 << 20) ? widest_row : ((int64_t)8 << 20);
    if (file_bytes) *file_bytes = file;
    if (memory_bytes) *memory_bytes = 2 * (int64_t)p->n_vocab * (VOCAB_PIECE_MAX + 24) + threads * max_cols * 4 + chunk + (1 << 20);
    return SL_OK;
}

/* ---- random numbers -------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Starting state of the stream for (seed, tensor, row). */
static uint64_t row_state(uint64_t seed, size_t tensor, int64_t row) {
    return mix64(mix64(seed ^ 0x5eedull) + mix64((uint64_t)tensor * 0x9e3779b97f4a7c15ull + 1) + (uint64_t)row);
}

/* Approximately standard-normal values: the sum of four 16-bit uniforms from one 64-bit draw
 * (Irwin-Hall, n = 4), centred and scaled. Bounded at ±3.46 sigma, which is a fine stand-in for
 * weights and costs one multiply-mix per value instead of a log and a sqrt. */
static void fill_normal(uint64_t state, float sigma, float mean, float *dst, int64_t n) {
    const float scale = sigma * (1.0f / 37837.23f); /* 65536 / sqrt(3): sd of the sum */
    for (int64_t i = 0; i < n; i++) {
        state += 0x9e3779b97f4a7c15ull;
        uint64_t r = mix64(state);
        uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) + (uint32_t)((r >> 32) & 0xffff) +
                     (uint32_t)(r >> 48);
        dst[i] = mean + ((float)s - 131070.0f) * scale;
    }
}

/* Llama-3.1-style RoPE frequency factors (what convert_hf_to_gguf writes to rope_freqs): 1 for
 * high frequencies, `factor` for low ones, a smooth blend between. Scaling factor 32, low/high
 * frequency factors 1 and 4, original context 8192 (the Llama 3.2 values). */
static void fill_rope_freqs(const sl_synth_params *p, float *dst, int64_t n) {
    const double factor = 32.0, low = 1.0, high = 4.0, old_ctx = 8192.0;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (int64_t i = 0; i < n; i++) {
        double freq = 1.0 / pow((double)p->rope_freq_base, (double)(2 * i) / (double)(2 * n));
        double wavelen = 2.0 * M_PI / freq;
        double f;
        if (wavelen < high_wavelen) f = 1.0;
        else if (wavelen > low_wavelen) f = factor;
        else {
            double smooth = (old_ctx / wavelen - low) / (high - low);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        dst[i] = (float)f;
    }
}

/* ---- streaming generation -------------------------------------------------------------------- */

typedef struct synth_job {
    const sl_synth_params *p;  /* the model */
    const synth_tensor *ts;    /* [n_tensors] */
    float *scratch;            /* n_threads rows of max_cols floats */
    int64_t max_cols;          /* widest row */
    /* the chunk being produced: */
    size_t index;              /* tensor */
    int64_t row0;              /* first row */
    int64_t n_rows;            /* rows */
    uint8_t *dst;              /* output bytes */
} synth_job;

static void synth_rows_task(void *arg, int ith, int nth) {
    synth_job *j = arg;
    const synth_tensor *t = &j->ts[j->index];
    const size_t row_bytes = sl_type_row_size(t->type, t->cols);
    float *tmp = j->scratch + (size_t)ith * (size_t)j->max_cols;
    long long r0, r1;
    sl_split_range(j->n_rows, ith, nth, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        int64_t row = j->row0 + r;
        uint8_t *out = j->dst + (size_t)r * row_bytes;
        float *vals = t->type == SL_TYPE_F32 ? (float *)out : tmp;
        uint64_t st = row_state(j->p->seed, j->index, row);
        switch (t->kind) {
        case KIND_MATRIX: fill_normal(st, t->sigma, 0.0f, vals, t->cols); break;
        case KIND_NORM: fill_normal(st, 0.05f, 1.0f, vals, t->cols); break;
        case KIND_BIAS: fill_normal(st, t->sigma, 0.0f, vals, t->cols); break;
        case KIND_ROPE: fill_rope_freqs(j->p, vals, t->cols); break;
        case KIND_ROPE_LONG:
        case KIND_ROPE_SHORT: /* rising from 1 over the pairs, as real LongRoPE factors do */
            for (int64_t i = 0; i < t->cols; i++)
                vals[i] = 1.0f + (t->kind == KIND_ROPE_LONG ? 7.0f : 0.2f) * (float)i / (float)(t->cols > 1 ? t->cols - 1 : 1);
            break;
        }
        if (vals != (float *)out) sl_quantize_row_ref(t->type, vals, out, t->cols);
    }
}

typedef struct synth_stream {
    synth_job job; /* shared with the pool */
    sl_pool *pool; /* workers, or NULL for one thread */
    int64_t done;  /* tensor bytes produced so far (for progress) */
    int64_t total; /* tensor bytes in all */
} synth_stream;

static sl_status synth_rows(void *ud, size_t index, int64_t row0, int64_t n_rows, void *dst, sl_error *err) {
    synth_stream *s = ud;
    s->job.index = index;
    s->job.row0 = row0;
    s->job.n_rows = n_rows;
    s->job.dst = dst;
    sl_pool_run(s->pool, synth_rows_task, &s->job);
    const synth_tensor *t = &s->job.ts[index];
    s->done += n_rows * (int64_t)sl_type_row_size(t->type, t->cols);
    if (s->job.p->progress) s->job.p->progress(s->job.p->progress_ud, s->done, s->total);
    return SL_OK;
}

/* ---- vocabulary ------------------------------------------------------------------------------ */

/* SentencePiece token types as llama.cpp numbers them. */
enum { TOKTYPE_NORMAL = 1, TOKTYPE_UNKNOWN = 2, TOKTYPE_CONTROL = 3, TOKTYPE_BYTE = 6 };

/* Bijective base-26 spelling of n >= 1 ("a".."z", "aa"...). */
static int spell26(uint32_t n, char *buf) {
    char rev[16];
    int k = 0;
    while (n > 0 && k < 15) {
        n--;
        rev[k++] = (char)('a' + n % 26);
        n /= 26;
    }
    for (int i = 0; i < k; i++) buf[i] = rev[k - 1 - i];
    buf[k] = 0;
    return k;
}

/* A minimal SPM vocabulary: <unk> <s> </s>, the 256 byte tokens, then distinct filler pieces
 * ("▁", printable ASCII, "▁"+ASCII, then letter strings with and without "▁"), so ASCII text
 * tokenizes into real pieces and anything else falls back to bytes. */
typedef struct synth_vocab {
    char *pool;          /* all strings, NUL-terminated */
    const char **tokens; /* [n] into pool */
    float *scores;       /* [n] */
    int32_t *types;      /* [n] */
} synth_vocab;

static void vocab_free(synth_vocab *v) {
    free(v->pool);
    free(v->tokens);
    free(v->scores);
    free(v->types);
}


static sl_status vocab_build(int32_t n, synth_vocab *v, sl_error *err) {
    memset(v, 0, sizeof(*v));
    v->pool = malloc((size_t)n * VOCAB_PIECE_MAX);
    v->tokens = malloc((size_t)n * sizeof(*v->tokens));
    v->scores = malloc((size_t)n * sizeof(*v->scores));
    v->types = malloc((size_t)n * sizeof(*v->types));
    if (!v->pool || !v->tokens || !v->scores || !v->types) {
        vocab_free(v);
        return sl_set_error(err, SL_ERR_NOMEM, "synth: cannot allocate a %d-token vocabulary", n);
    }
    static const char sp[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's word-start mark */
    for (int32_t i = 0; i < n; i++) {
        char *s = v->pool + (size_t)i * VOCAB_PIECE_MAX;
        v->tokens[i] = s;
        v->scores[i] = 0.0f;
        if (i == 0) { strcpy(s, "<unk>"); v->types[i] = TOKTYPE_UNKNOWN; continue; }
        if (i == 1) { strcpy(s, "<s>"); v->types[i] = TOKTYPE_CONTROL; continue; }
        if (i == 2) { strcpy(s, "</s>"); v->types[i] = TOKTYPE_CONTROL; continue; }
        if (i < 259) { snprintf(s, VOCAB_PIECE_MAX, "<0x%02X>", i - 3); v->types[i] = TOKTYPE_BYTE; continue; }
        int32_t k = i - 259;
        v->types[i] = TOKTYPE_NORMAL;
        v->scores[i] = -(float)k; /* earlier pieces merge first */
        if (k == 0) strcpy(s, sp);
        else if (k <= 94) { s[0] = (char)(32 + k); s[1] = 0; }                    /* '!'..'~' */
        else if (k <= 188) { strcpy(s, sp); s[3] = (char)(32 + k - 94); s[4] = 0; } /* "▁!".."▁~" */
        else {
            int32_t m = k - 189;
            char *w = s;
            if (m % 2 == 0) { strcpy(s, sp); w = s + 3; }
            spell26((uint32_t)(m / 2) + 27, w); /* from "aa": single letters exist already */
        }
    }
    return SL_OK;
}

/* ---- the file -------------------------------------------------------------------------------- */

static bool synth_metadata(gguf_writer *w, const sl_synth_params *p, const synth_vocab *v) {
    const char *arch = arch_of(p)->name;
    char k[96];
#define KEY(name) (snprintf(k, sizeof(k), "%s." name, arch), k)
    bool ok = gguf_writer_set_str(w, "general.architecture", arch) &&
              gguf_writer_set_str(w, "general.name", p->name[0] ? p->name : "synthetic") &&
              gguf_writer_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT) &&
              gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx) &&
              gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)p->n_embd) &&
              gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer) &&
              gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)p->n_ff) &&
              gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)n_rot_of(p)) &&
              gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head) &&
              gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv) &&
              gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->rms_eps) &&
              gguf_writer_set_f32(w, KEY("rope.freq_base"), p->rope_freq_base) &&
              gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)p->n_vocab) &&
              gguf_writer_set_u32(w, "general.file_type", (uint32_t)sl_type_to_ftype(p->type)) &&
              gguf_writer_set_u32(w, "general.quantization_version", 2) &&
              gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") &&
              gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, (uint64_t)p->n_vocab) &&
              gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, (uint64_t)p->n_vocab) &&
              gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, (uint64_t)p->n_vocab) &&
              gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1) &&
              gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2) &&
              gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) &&
              gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true) &&
              gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (ok && p->act == SL_ACT_RELU) ok = gguf_writer_set_str(w, "skipllama.activation", "relu");
    if (ok && p->head_dim)
        ok = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)p->head_dim) &&
             gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)p->head_dim);
    if (ok && p->n_swa) ok = gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)p->n_swa);
    if (ok && p->swa_pattern >= 0) ok = gguf_writer_set_u32(w, KEY("attention.sliding_window_pattern"), (uint32_t)p->swa_pattern);
    if (ok && p->attn_softcap > 0.0f) ok = gguf_writer_set_f32(w, KEY("attn_logit_softcapping"), p->attn_softcap);
    if (ok && p->final_softcap > 0.0f) ok = gguf_writer_set_f32(w, KEY("final_logit_softcapping"), p->final_softcap);
    if (ok && p->rope_freq_base_swa > 0.0f) ok = gguf_writer_set_f32(w, KEY("rope.freq_base_swa"), p->rope_freq_base_swa);
    if (ok && p->rope_scaling[0]) ok = gguf_writer_set_str(w, KEY("rope.scaling.type"), p->rope_scaling);
    if (ok && p->rope_scaling_factor > 0.0f) ok = gguf_writer_set_f32(w, KEY("rope.scaling.factor"), p->rope_scaling_factor);
    if (ok && p->rope_orig_ctx > 0) ok = gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)p->rope_orig_ctx);
    if (ok && p->rope_attn_factor > 0.0f) ok = gguf_writer_set_f32(w, KEY("rope.scaling.attn_factor"), p->rope_attn_factor);
#undef KEY
    return ok;
}

sl_status sl_synth_write(const sl_synth_params *p, const char *path, sl_error *err) {
    sl_status st = synth_validate(p, err);
    if (st != SL_OK) return st;
    if (!path) return sl_set_error(err, SL_ERR_INVALID_ARG, "synth: NULL path");
    const int n_threads = p->n_threads > 0 ? p->n_threads : 1;
    size_t n = synth_tensors(p, NULL);
    synth_tensor *ts = calloc(n, sizeof(*ts));
    synth_vocab v;
    memset(&v, 0, sizeof(v));
    gguf_writer *w = NULL;
    synth_stream s;
    memset(&s, 0, sizeof(s));
    if (!ts) {
        st = sl_set_error(err, SL_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    synth_tensors(p, ts);
    if ((st = vocab_build(p->n_vocab, &v, err)) != SL_OK) goto done;
    w = gguf_writer_init();
    if (!w || !synth_metadata(w, p, &v)) {
        st = sl_set_error(err, SL_ERR_NOMEM, "synth: out of memory writing metadata");
        goto done;
    }
    int64_t max_cols = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t ne[2] = {ts[i].cols, ts[i].rows};
        if (!gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].kind == KIND_MATRIX ? 2 : 1, ne, NULL)) {
            st = sl_set_error(err, SL_ERR_NOMEM, "synth: cannot add tensor %s", ts[i].name);
            goto done;
        }
        if (ts[i].cols > max_cols) max_cols = ts[i].cols;
        s.total += ts[i].rows * (int64_t)sl_type_row_size(ts[i].type, ts[i].cols);
    }
    s.job.p = p;
    s.job.ts = ts;
    s.job.max_cols = max_cols;
    s.job.scratch = sl_calloc_array((size_t)n_threads * (size_t)max_cols, sizeof(float));
    s.pool = n_threads > 1 ? sl_pool_init(n_threads) : NULL;
    if (!s.job.scratch || (n_threads > 1 && !s.pool)) {
        st = sl_set_error(err, SL_ERR_NOMEM, "synth: cannot start %d threads", n_threads);
        goto done;
    }
    st = gguf_writer_write_stream(w, path, synth_rows, &s, 0, err);
done:
    sl_pool_free(s.pool);
    sl_free_aligned(s.job.scratch);
    gguf_writer_free(w);
    vocab_free(&v);
    free(ts);
    return st;
}
