/*
 * activation.h — the MLP activations (SiLU, ReLU, GELU with the tanh approximation, exactly or
 * rounded as llama.cpp's CPU backend rounds it) for one value, shared by the dense forward pass,
 * the sparse operator, the bundles and the selection rules, so that every path applies act()
 * with the same float operations.
 * What it is not: a vectorized kernel (the MLP spends its time in the weight products).
 */
#ifndef SL_KERNELS_ACTIVATION_H
#define SL_KERNELS_ACTIVATION_H

#include "format/quant.h"
#include "skipllama.h"

#include <math.h>
#include <stdbool.h>

/* llama.cpp's CPU GELU (ggml_vec_geglu_f32 with GGML_GELU_FP16): its table holds
 * f16(gelu(v)) for every f16 v, gelu in ggml's float form 0.5 x (1 + tanh(sqrt(2/pi) x (1 +
 * 0.044715 x^2))), looked up at f16(x); inputs at or beyond +-10 bypass it. Evaluating the entry
 * instead of storing the table gives the same values. */
static inline float sl_gelu_f16(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    const float v = sl_fp16_to_fp32(sl_fp32_to_fp16(x));
    return sl_fp16_to_fp32(sl_fp32_to_fp16(0.5f * v * (1.0f + tanhf(0.79788456080286535587989211986876f * v * (1.0f + 0.044715f * v * v)))));
}

/* act(x): silu(x) = x / (1 + e^-x); relu(x) = max(x, 0);
 * gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (torch's approximate="tanh");
 * gelu_f16 = sl_gelu_f16 (Gemma files, to match llama.cpp) */
static inline float sl_activate(sl_activation act, float x) {
    switch (act) {
    case SL_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case SL_ACT_GELU: return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
    case SL_ACT_GELU_F16: return sl_gelu_f16(x);
    case SL_ACT_SILU:
    default: return x / (1.0f + expf(-x));
    }
}

/* The activations the MLP code implements. */
static inline bool sl_activation_supported(sl_activation act) {
    return act == SL_ACT_SILU || act == SL_ACT_RELU || act == SL_ACT_GELU || act == SL_ACT_GELU_F16;
}

#endif
