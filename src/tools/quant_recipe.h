/*
 * quant_recipe.h — llama.cpp's per-tensor type rules for its file types (quant_recipe.c), used
 * by sl_model_quantize and tested against llama.cpp's own choices. Internal to src/tools/.
 */
#ifndef SL_QUANT_RECIPE_H
#define SL_QUANT_RECIPE_H

#include "format/quant.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_quant_recipe {
    int32_t ftype;        /* llama.cpp's LLAMA_FTYPE */
    sl_type default_type; /* its default tensor type */
    bool pure;            /* one type everywhere (only the fallbacks) */
    bool tied;            /* no output.weight: token_embd is the output projection */
    int n_layer, n_gqa;   /* model shape the rules look at */
    int i_attn_v, i_ffn_down; /* counters: tensors of each kind seen so far */
} sl_quant_recipe;

/* The default tensor type of a file type, or (sl_type)-1 for file types skipllama cannot write. */
sl_type sl_ftype_default_type(int32_t ftype);
/* The names sl_ftype_from_name accepts, space-separated. */
const char *sl_ftype_list(void);

/* Start a recipe; false for an unknown file type. */
bool sl_quant_recipe_init(sl_quant_recipe *r, int32_t ftype, bool pure, int n_layer, int n_head, int n_head_kv, bool has_output);
/* The type of the next tensor (call in sl_quant_recipe_order_cmp order): 1-D tensors F32, tensors
 * llama.cpp does not quantize keep in_type, the rest by the rules and fallbacks above. */
sl_type sl_quant_recipe_next(sl_quant_recipe *r, const char *name, int n_dims, int64_t ncols, sl_type in_type);
/* llama.cpp's tensor order: tensors outside layers first, then by layer number, then by name. */
int sl_quant_recipe_order_cmp(const char *a, const char *b);

#endif
