/*
 * quant_recipe.c — which type each tensor of a model gets for a llama.cpp file type ("q4_k_m"):
 * llama.cpp's per-tensor mixing rules (llama-quant.cpp's llama_tensor_get_type), its fallbacks
 * for rows that do not split into the type's blocks, and the names of the file types.
 *
 * The rules, for the file types skipllama writes: the output projection (and the token embedding
 * when it doubles as the output) becomes Q6_K (Q8_0 when its rows do not split into the default
 * type's blocks); attn_v gets more bits (Q6_K in the layers use_more_bits picks for _M, Q5_K in
 * the first 4 layers for Q4_K_S, Q5_K in the first 2 and then Q4_K for Q3_K_M, Q3_K/Q4_K for Q2_K
 * by GQA, Q5_K for IQ4_* with GQA >= 4); ffn_down likewise (Q6_K by use_more_bits for _M, Q5_K
 * in the first eighth for Q4_K_S and IQ4_*, Q5_K/Q4_K for Q3_K_M, Q3_K for Q2_K); attn_output
 * Q3_K for Q2_K and Q4_K for Q3_K_M; fused qkv one step up. Tensors are visited in llama.cpp's
 * order (layer by layer), so a layer's index is its count among the tensors of its kind. Then the
 * fallback: IQ4_XS -> IQ4_NL, Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and
 * F16 when even that does not split (llama.cpp refuses types it has no fallback for; we use F16).
 * What it is not: the quantizers (src/format) or the file streaming (convert.c).
 */
#include "tools/quant_recipe.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int32_t ftype;
    sl_type type; /* the default tensor type */
} ftypes[] = {
    {"f32", 0, SL_TYPE_F32},        {"f16", 1, SL_TYPE_F16},         {"q4_0", 2, SL_TYPE_Q4_0},      {"q4_1", 3, SL_TYPE_Q4_1},
    {"q8_0", 7, SL_TYPE_Q8_0},      {"q5_0", 8, SL_TYPE_Q5_0},       {"q5_1", 9, SL_TYPE_Q5_1},      {"q2_k", 10, SL_TYPE_Q2_K},
    {"q3_k_s", 11, SL_TYPE_Q3_K},   {"q3_k_m", 12, SL_TYPE_Q3_K},    {"q3_k_l", 13, SL_TYPE_Q3_K},   {"q4_k_s", 14, SL_TYPE_Q4_K},
    {"q4_k_m", 15, SL_TYPE_Q4_K},   {"q5_k_s", 16, SL_TYPE_Q5_K},    {"q5_k_m", 17, SL_TYPE_Q5_K},   {"q6_k", 18, SL_TYPE_Q6_K},
    {"iq4_nl", 25, SL_TYPE_IQ4_NL}, {"iq4_xs", 30, SL_TYPE_IQ4_XS},  {"bf16", 32, SL_TYPE_BF16},
    /* llama-quantize's aliases */
    {"q3_k", 12, SL_TYPE_Q3_K},     {"q4_k", 15, SL_TYPE_Q4_K},      {"q5_k", 17, SL_TYPE_Q5_K},
};
#define N_FTYPES (sizeof(ftypes) / sizeof(ftypes[0]))

bool sl_ftype_from_name(const char *name, int32_t *ftype) {
    if (!name) return false;
    for (size_t i = 0; i < N_FTYPES; i++) {
        const char *a = ftypes[i].name, *b = name;
        while (*a && *b && *a == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) {
            *ftype = ftypes[i].ftype;
            return true;
        }
    }
    return false;
}

sl_type sl_ftype_default_type(int32_t ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype) return ftypes[i].type;
    return (sl_type)-1;
}

const char *sl_ftype_list(void) {
    return "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq4_nl iq4_xs";
}

typedef enum kind { K_OTHER, K_TOKEN_EMBD, K_OUTPUT, K_ATTN_V, K_ATTN_QKV, K_ATTN_K, K_ATTN_Q, K_ATTN_OUT, K_FFN_DOWN } kind;

static kind kind_of(const char *name) {
    if (!strcmp(name, "output.weight")) return K_OUTPUT;
    if (!strcmp(name, "token_embd.weight")) return K_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight")) return K_ATTN_QKV;
    if (strstr(name, "attn_v.weight")) return K_ATTN_V;
    if (strstr(name, "attn_k.weight")) return K_ATTN_K;
    if (strstr(name, "attn_q.weight")) return K_ATTN_Q;
    if (strstr(name, "attn_output.weight")) return K_ATTN_OUT;
    if (strstr(name, "ffn_down")) return K_FFN_DOWN;
    return K_OTHER;
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's tensor_allows_quantization, for the tensors llama-family files hold: 2-D and more,
 * names ending in "weight" except the norms. */
static bool quantizable(const char *name, int n_dims) {
    size_t len = strlen(name);
    return n_dims >= 2 && len >= 6 && !strcmp(name + len - 6, "weight") && !strstr(name, "_norm.weight") &&
           !strstr(name, "ffn_gate_inp.weight");
}

static sl_type fallback(sl_type t, int64_t ncols) {
    if (ncols % sl_type_block_size(t) == 0) return t;
    sl_type r;
    switch (t) {
    case SL_TYPE_IQ4_XS: r = SL_TYPE_IQ4_NL; break;
    case SL_TYPE_Q2_K:
    case SL_TYPE_Q3_K: r = SL_TYPE_Q4_0; break;
    case SL_TYPE_Q4_K: r = SL_TYPE_Q5_0; break;
    case SL_TYPE_Q5_K: r = SL_TYPE_Q5_1; break;
    case SL_TYPE_Q6_K: r = SL_TYPE_Q8_0; break;
    default: r = SL_TYPE_F16; break;
    }
    return ncols % sl_type_block_size(r) == 0 ? r : SL_TYPE_F16;
}

bool sl_quant_recipe_init(sl_quant_recipe *r, int32_t ftype, bool pure, int n_layer, int n_head, int n_head_kv, bool has_output) {
    memset(r, 0, sizeof(*r));
    r->default_type = sl_ftype_default_type(ftype);
    if ((int)r->default_type < 0) return false;
    r->ftype = ftype, r->pure = pure, r->n_layer = n_layer > 0 ? n_layer : 1;
    r->n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 1;
    r->tied = !has_output;
    return true;
}

sl_type sl_quant_recipe_next(sl_quant_recipe *r, const char *name, int n_dims, int64_t ncols, sl_type in_type) {
    if (!quantizable(name, n_dims)) return n_dims < 2 ? SL_TYPE_F32 : in_type;
    const sl_type def = r->default_type;
    if (sl_type_block_size(def) <= 1) return def; /* float targets: no mixing, no fallback */
    const kind k = kind_of(name);
    const int32_t f = r->ftype;
    sl_type t = def;
    if (!r->pure) {
        if (k == K_OUTPUT || (r->tied && k == K_TOKEN_EMBD)) {
            if (ncols % sl_type_block_size(def) != 0) t = SL_TYPE_Q8_0;
            else if (def != SL_TYPE_Q8_0) t = SL_TYPE_Q6_K;
        } else if (k == K_ATTN_V || k == K_ATTN_QKV) {
            const int i = r->i_attn_v, n = r->n_layer;
            if (k == K_ATTN_QKV) {
                if (f == 12 || f == 13) t = SL_TYPE_Q4_K;
                else if (f == 15) t = SL_TYPE_Q5_K;
                else if (f == 17) t = SL_TYPE_Q6_K;
            } else if (f == 10) t = r->n_gqa >= 4 ? SL_TYPE_Q4_K : SL_TYPE_Q3_K;
            else if (f == 12) t = i < 2 ? SL_TYPE_Q5_K : SL_TYPE_Q4_K;
            else if (f == 13) t = SL_TYPE_Q5_K;
            else if ((f == 25 || f == 30) && r->n_gqa >= 4) t = SL_TYPE_Q5_K;
            else if ((f == 15 || f == 17) && use_more_bits(i, n)) t = SL_TYPE_Q6_K;
            else if (f == 14 && i < 4) t = SL_TYPE_Q5_K;
            /* llama.cpp's 70B rule (8 query heads per attn_v): 80 layers stand for that size here */
            if (k == K_ATTN_V && n == 80 && (t == SL_TYPE_Q3_K || t == SL_TYPE_Q4_K)) t = SL_TYPE_Q5_K;
            r->i_attn_v++;
        } else if (k == K_FFN_DOWN) {
            const int i = r->i_ffn_down, n = r->n_layer;
            if (f == 10) t = SL_TYPE_Q3_K;
            else if (f == 12) t = i < n / 16 ? SL_TYPE_Q5_K : SL_TYPE_Q4_K;
            else if (f == 13) t = SL_TYPE_Q5_K;
            else if (f == 15) {
                if (use_more_bits(i, n)) t = SL_TYPE_Q6_K;
            } else if (i < n / 8 && (f == 25 || f == 30)) t = SL_TYPE_Q5_K;
            else if (f == 17 && use_more_bits(i, n)) t = SL_TYPE_Q6_K;
            else if (f == 14 && i < n / 8) t = SL_TYPE_Q5_K;
            r->i_ffn_down++;
        } else if (k == K_ATTN_OUT) {
            if (f == 10) t = SL_TYPE_Q3_K;
            else if (f == 12) t = SL_TYPE_Q4_K;
            else if (f == 13) t = SL_TYPE_Q5_K;
        }
    }
    return fallback(t, ncols);
}

/* llama.cpp visits tensors with no layer first (by name), then layer by layer (by name within a
 * layer): the order its counters (i_attn_v, i_ffn_down) see. */
static int layer_of(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

int sl_quant_recipe_order_cmp(const char *a, const char *b) {
    const int la = layer_of(a), lb = layer_of(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}
