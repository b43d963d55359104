/*
 * arch.c — the rows of the architecture table (arch.h): one per general.architecture we run,
 * each value as llama.cpp's src/models/<arch>.cpp computes it. What it is not: metadata
 * parsing (model.c) or arithmetic (forward.c).
 */
#include "model/arch.h"

#include <string.h>

static const sl_arch archs[] = {
    {
        /* LLaMA 1-3, Mistral, SmolLM 1/2, TinyLlama... Our one departure from llama.cpp: it
         * ignores llama.attention.sliding_window; we window every layer when the key is set, as
         * HF's MistralAttention does (llama.cpp's converter does not write the key, so files it
         * made run the same on both). */
        .name = "llama",
        .hf_classes = "LlamaForCausalLM MistralForCausalLM",
        .rope = SL_ROPE_NORM,
        .act = SL_ACT_SILU,
        .act_key = true,
        .swa = true,
        .swa_period = 0,
        .hf_permute_qk = true,
    },
    {
        /* Qwen2 / Qwen2.5: q/k/v biases (optional in the loader, as in llama.cpp) */
        .name = "qwen2",
        .hf_classes = "Qwen2ForCausalLM",
        .rope = SL_ROPE_NEOX,
        .act = SL_ACT_SILU,
    },
    {
        /* Qwen3: RMSNorm over each head of q and k, no biases */
        .name = "qwen3",
        .hf_classes = "Qwen3ForCausalLM",
        .rope = SL_ROPE_NEOX,
        .act = SL_ACT_SILU,
        .qk_norm = true,
    },
    {
        /* Phi-3 / 3.5 / 4-mini: fused attn_qkv and ffn_up (gate|up), partial rotary allowed,
         * LongRoPE factors (rope_factors_long/short). llama.cpp turns the window off for phi3. */
        .name = "phi3",
        .hf_classes = "Phi3ForCausalLM",
        .rope = SL_ROPE_NEOX,
        .act = SL_ACT_SILU,
        .ffn_fused_up = true,
    },
    {
        /* Gemma 2: GELU gate, sqrt(n_embd) embedding scale, norms after each sub-layer too,
         * capped attention scores and logits, every other layer windowed (even ones) */
        .name = "gemma2",
        .hf_classes = "Gemma2ForCausalLM",
        .rope = SL_ROPE_NEOX,
        .act = SL_ACT_GELU_F16,
        .post_norms = true,
        .embd_scale = true,
        .output_is_embd = true,
        .attn_softcap = 50.0f,
        .attn_softcap_key = true,
        .final_softcap = 30.0f,
        .final_softcap_key = true,
        .swa = true,
        .swa_default = 4096,
        .swa_period = 2,
        .swa_rope = SL_SWA_ROPE_KEY,
        .wide_scale_layers = 46,
        .hf_norm_offset = 1.0f,
    },
    {
        /* Gemma 3 (text): Gemma 2 without attention capping, plus q/k norms; 5 windowed layers
         * to 1 global one, the windowed ones with their own RoPE base (rope.freq_base_swa) */
        .name = "gemma3",
        .hf_classes = "Gemma3ForCausalLM Gemma3ForConditionalGeneration",
        .rope = SL_ROPE_NEOX,
        .act = SL_ACT_GELU_F16,
        .qk_norm = true,
        .post_norms = true,
        .embd_scale = true,
        .final_softcap_key = true,
        .swa = true,
        .swa_period = 6,
        .swa_rope = SL_SWA_ROPE_OWN,
        .wide_scale_layers = 62,
        .hf_norm_offset = 1.0f,
    },
};
#define N_ARCHS ((int)(sizeof(archs) / sizeof(archs[0])))

const sl_arch *sl_arch_find(const char *name) {
    for (int i = 0; name && i < N_ARCHS; i++)
        if (!strcmp(archs[i].name, name)) return &archs[i];
    return NULL;
}

const sl_arch *sl_arch_at(int i) { return i >= 0 && i < N_ARCHS ? &archs[i] : NULL; }

const sl_arch *sl_arch_find_hf(const char *hf_class) {
    if (!hf_class || !hf_class[0]) return NULL;
    const size_t n = strlen(hf_class);
    for (int i = 0; i < N_ARCHS; i++)
        for (const char *p = archs[i].hf_classes; (p = strstr(p, hf_class)) != NULL; p += n)
            if ((p == archs[i].hf_classes || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return &archs[i];
    return NULL;
}
