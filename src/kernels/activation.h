/*
 * activation.h — the MLP activations (SiLU, ReLU, GELU with the tanh approximation) for one
 * value, shared by the dense forward pass, the sparse operator, the bundles and the selection
 * rules, so that every path applies act() with the same float operations.
 * What it is not: a vectorized kernel (the MLP spends its time in the weight products).
 */
#ifndef SL_KERNELS_ACTIVATION_H
#define SL_KERNELS_ACTIVATION_H

#include "skipllama.h"

#include <math.h>
#include <stdbool.h>

/* act(x): silu(x) = x / (1 + e^-x); relu(x) = max(x, 0);
 * gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (torch's approximate="tanh") */
static inline float sl_activate(sl_activation act, float x) {
    switch (act) {
    case SL_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case SL_ACT_GELU: return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
    case SL_ACT_SILU:
    default: return x / (1.0f + expf(-x));
    }
}

/* The activations the MLP code implements. */
static inline bool sl_activation_supported(sl_activation act) {
    return act == SL_ACT_SILU || act == SL_ACT_RELU || act == SL_ACT_GELU;
}

#endif
