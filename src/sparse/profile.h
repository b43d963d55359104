/*
 * profile.h — the in-memory sparsity profile (internal): per-layer rules, thresholds, CATS
 * quantile tables and low-rank predictors, shared by profile.c (file format), calibrate.c and
 * forward.c (the sparse decode path). What it is not: the rules' execution — that is forward.c.
 */
#ifndef SL_PROFILE_H
#define SL_PROFILE_H

#include "format/gguf.h"
#include "model/model.h"
#include "skipllama.h"

#define SL_PROFILE_VERSION 1
#define SL_PROFILE_N_QUANTILES 201 /* |act(gate)| quantiles at q = 0, 0.005, ..., 1 */

typedef struct sl_profile_layer_data {
    sl_profile_layer info;                 /* rule, threshold, topk, metrics (public view) */
    float cats_q[SL_PROFILE_N_QUANTILES];  /* |act(gate)| quantiles from calibration; NAN if none */
    float gate_nonpos;                     /* fraction of gate pre-activations <= 0; NAN if unknown */
    sl_weight pred_a;                      /* [rank, n_embd] predictor first factor (rows = rank) */
    sl_weight pred_b;                      /* [n_ff, rank] predictor second factor (rows = n_ff) */
    void *owned_a;                         /* bytes of pred_a when set in memory (else in the file) */
    void *owned_b;                         /* bytes of pred_b when set in memory (else in the file) */
    void *packed_a, *packed_b;             /* Q4_0 predictors: their Q4_0x4 copies (pred_*.mm_data), or NULL */
    bool has_split;                        /* split_cand / split_keep are set */
    float split_cand[SL_PROFILE_MAX_LEVELS]; /* two-stage: stage-1 fraction at each level */
    float split_keep[SL_PROFILE_MAX_LEVELS]; /* two-stage: stage-2 fraction at each level */
    bool has_gate;                         /* split_gate is set (two-stage-pred with a gate stage) */
    float split_gate[SL_PROFILE_MAX_LEVELS]; /* its gate-row fraction at each level (>= split_cand) */
    float alloc[SL_PROFILE_MAX_LEVELS];    /* this layer's level at each profile-wide level (when has_alloc) */
} sl_profile_layer_data;

struct sl_profile {
    int32_t n_layer;                /* layers = model's block count */
    int32_t n_embd;                 /* model width H */
    int32_t n_ff;                   /* MLP width I */
    char fingerprint[32];           /* hex of the model fingerprint (NUL-terminated) */
    char method[64];                /* free-form method name ("cats", "predictor", ...) */
    sl_profile_layer_data *layers;  /* [n_layer] */
    gguf_file *gguf;                /* the file predictor tensors point into, or NULL */
    bool shared;                    /* a clone: its predictor tensors belong to another profile */
    int32_t n_levels;               /* schedule grid (0 = none) */
    float levels[SL_PROFILE_MAX_LEVELS]; /* ascending levels in [0, 1) */
    bool has_alloc;                 /* layers' alloc tables are set */
    sl_batch_select batch_select;   /* how decoding batches choose neurons (runtime only, not saved) */
    float batch_union_max;          /* SL_BATCH_AUTO's limit on the union, fraction of n_ff (0 = default) */
};

#define SL_BATCH_UNION_MAX_DEFAULT 0.6f

/* Fingerprint of a model: hash of the shapes and of sampled bytes of its weights, as 16 hex
 * digits (NUL-terminated) in out[17+]. */
void sl_model_fingerprint(const sl_model *model, char out[32]);

#endif
