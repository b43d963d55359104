/*
 * arch.h — the one table of per-architecture differences (internal).
 *
 * What it is for: everything that distinguishes `qwen2`, `qwen3`, `phi3`, `gemma2`, `gemma3` (and
 * the `llama` files of LLaMA, Mistral and SmolLM) from each other, as plain fields of one row per
 * architecture: which tensors exist, which norms and biases, the RoPE layout, the activation,
 * logit capping, the sliding-window layer pattern. The loader (model.c) reads the metadata and
 * tensors a row asks for; the forward pass (forward.c) is one top-to-bottom pass whose optional
 * steps are switched by these fields (through the resolved values in sl_model / sl_layer). The
 * Hugging Face loader uses the same rows (HF class names, how HF stores the weights).
 * Every value here is what llama.cpp computes for that architecture (src/models/<arch>.cpp and
 * src/llama-model.cpp of the llama.cpp build the oracle runs), checked by the fixtures in
 * tests/data/arch/.
 * What it is not: a place for a second forward pass, or for hyperparameters of one model (those
 * come from the file's metadata).
 */
#ifndef SL_MODEL_ARCH_H
#define SL_MODEL_ARCH_H

#include "skipllama.h"

#include <stdbool.h>
#include <stdint.h>

/* Which dims of a head form a rotated pair (ggml's rope modes). */
typedef enum sl_rope_layout {
    SL_ROPE_NORM = 0, /* consecutive pairs (2i, 2i+1): `llama` GGUFs (the converter permutes HF's q/k rows to it) */
    SL_ROPE_NEOX = 2, /* halves (i, i + n_rot/2): HF's rotate_half, kept as is (Qwen, Phi-3, Gemma) */
    SL_ROPE_NEOX_TO_NORM = 3, /* halves in, written out as pairs (2i, 2i+1): a Hugging Face `llama`'s
                                 unpermuted q/k rows (hf.c) then give, value for value and in the same
                                 order, what the permuted rows of its GGUF file give */
} sl_rope_layout;

/* Head size up to which SL_ROPE_NEOX_TO_NORM is used (a head is rotated through a stack buffer). */
#define SL_ROPE_MAX_HEAD 1024

/* The RoPE parameters of windowed layers. */
typedef enum sl_swa_rope {
    SL_SWA_ROPE_GLOBAL = 0, /* the same as the other layers (llama) */
    SL_SWA_ROPE_KEY = 1,    /* the same, unless <arch>.rope.freq_base_swa gives another base (Gemma 2) */
    SL_SWA_ROPE_OWN = 2,    /* base <arch>.rope.freq_base_swa (default 10000), no scaling (Gemma 3) */
} sl_swa_rope;

typedef struct sl_arch {
    const char *name;        /* general.architecture, also the prefix of its metadata keys */
    const char *hf_classes;  /* Hugging Face config "architectures" names, space-separated */
    sl_rope_layout rope;     /* RoPE pair layout */
    sl_activation act;       /* activation of the gate: down(act(gate x) * up x) */
    bool act_key;            /* the activation may be overridden by skipllama.activation (our extension) */
    /* tensors beyond LLaMA's (blk.N.attn_q/k/v/output, ffn_gate/up/down, attn_norm, ffn_norm):
     * q/k/v biases, a fused blk.N.attn_qkv (+ bias), blk.N.attn_output.bias, output.bias and the
     * rope factor tensors are optional for every architecture, as llama.cpp loads them */
    bool ffn_fused_up;       /* blk.N.ffn_up is [2 n_ff, n_embd]: gate rows then up rows; no ffn_gate (Phi-3) */
    bool qk_norm;            /* blk.N.attn_q_norm / attn_k_norm [head_dim]: RMSNorm of each head of q and k before RoPE */
    bool post_norms;         /* blk.N.post_attention_norm / post_ffw_norm [n_embd]: RMSNorm of each sub-layer's
                                output before the residual add (Gemma 2/3) */
    bool embd_scale;         /* token embeddings multiplied by sqrt(n_embd) (Gemma) */
    bool output_is_embd;     /* the output projection is token_embd even if output.weight exists (Gemma 2) */
    /* logit capping, x -> cap * tanh(x / cap), 0 = none: the default, and whether
     * <arch>.attn_logit_softcapping / final_logit_softcapping may set it */
    float attn_softcap;      /* attention scores (Gemma 2: 50) */
    bool attn_softcap_key;
    float final_softcap;     /* output logits (Gemma 2: 30) */
    bool final_softcap_key;
    /* sliding-window attention (llama.cpp's set_swa_pattern): with period n, layer l is windowed
     * when n == 0 or (l % n) < n - 1; a windowed query at position p attends to p - n_swa + 1 .. p */
    bool swa;                /* reads <arch>.attention.sliding_window (false: llama.cpp ignores the key) */
    uint32_t swa_default;    /* the window when that key is absent (Gemma 2: 4096; 0: no window) */
    uint32_t swa_period;     /* period when <arch>.attention.sliding_window_pattern is absent (0: every layer) */
    sl_swa_rope swa_rope;    /* the RoPE of windowed layers */
    int32_t wide_scale_layers; /* block count at which the query scale is 1/sqrt(n_embd / n_head) instead of
                                  1/sqrt(head_dim) (Gemma 27B; llama.cpp decides by the layer count); 0 none */
    /* how a Hugging Face checkpoint of this architecture stores what GGUF stores differently */
    bool hf_permute_qk;      /* q/k rows are in HF's half-split order; GGUF's `llama` files interleave them */
    float hf_norm_offset;    /* GGUF norm weight = HF weight + this (Gemma: 1, its RMSNorm multiplies by 1 + w) */
} sl_arch;

/* The row for general.architecture `name`, or NULL when unsupported. */
const sl_arch *sl_arch_find(const char *name);
/* Row i (0, 1, ...), NULL past the last: for listing them. */
const sl_arch *sl_arch_at(int i);
/* The row whose hf_classes contains `hf_class` ("Qwen2ForCausalLM"), or NULL. */
const sl_arch *sl_arch_find_hf(const char *hf_class);

#endif
