/*
 * skipllama_sparse.h — the sparse half of libskipllama's public API: the sparse MLP operator, the
 * sparsity profiles and the skip model, predictor training. Included by skipllama.h (include that
 * one); the conventions at the top of skipllama.h hold here too.
 */
#ifndef SKIPLLAMA_SPARSE_H
#define SKIPLLAMA_SPARSE_H

#ifndef SKIPLLAMA_H
#error "include skipllama.h, which includes this header"
#endif

/* ---------------------------------------------------------------------------------------------
 * Sparse MLP operator (src/sparse/sparse_mlp.c and its units)
 * ------------------------------------------------------------------------------------------- */
/* The MLP of one LLaMA block on caller-provided weights, skipping inactive neurons:
 *     out[b] = sum over active i of  act(gate_i . x[b]) * (up_i . x[b]) * down[:, i]
 * H = n_embd, I = n_ff. gate/up are [I, H] and down is [H, I], row-major, exactly as GGUF stores
 * ffn_gate/ffn_up/ffn_down. Works without a model; the model's forward pass uses the same code.
 *
 * Cost model: gate and up rows of the active neurons are gathered and dotted with x (x is
 * converted once per call: quantized to Q8_0 blocks for Q8_0/Q4_0 weights); the down projection
 * adds one contiguous row per active neuron from down_t = transpose(down), [I, H]. The operator
 * builds down_t at init unless the caller passes it. Memory cost of building it: the size of
 * down in the same type, except for Q4_0, whose down_t is built as Q8_0 (1.9x the bytes of
 * down). F32/F16/BF16 are transposed exactly; quantized rows are re-quantized in blocks of 32
 * along H, rounding each weight a second time: the extra error is at most 1/254 of the new
 * block's largest magnitude in Q8_0 (1/8 in Q4_0); measured on Gaussian weights, the RMS extra
 * error is 0.5% of the RMS weight in Q8_0 (7.6% in Q4_0, about as much as the file's own
 * rounding — which is why a Q4_0 down is not transposed into Q4_0; the Q8_0 axpy is no slower).
 * A caller-supplied down_t for Q4_0 weights is Q4_0 (sl_mlp_weights.type) and carries that
 * 7.6% error.
 * Work is split over threads by equal chunks of the active-neuron list; each thread sums its
 * down rows into a private [H] accumulator, reduced at the end. When down ([H, I]) is available
 * and most neurons are active, streaming beats gathering: from 80% active (65% for Q4_0) the
 * down projection runs as the dense product, and from 90% the whole MLP does (the dense kernels,
 * keeping only the selected neurons' products), so a call never costs much more than dense. */

/* How batch rows combine (B > 1). With B = 1 all modes are the same. */
typedef enum sl_mlp_mode {
    SL_MLP_PER_ROW = 0,        /* row b uses its own active set; each (row, neuron) pair is scheduled on its own,
                                  or as PER_ROW_SHARED when the rows' sets overlap (same results, fewer reads) */
    SL_MLP_UNION = 1,          /* every row uses the union of all rows' sets; each neuron is gathered once and
                                  dotted with all B rows (the prototype's union mask) */
    SL_MLP_PER_ROW_SHARED = 2, /* the results of PER_ROW, the schedule of UNION: each neuron of the union is
                                  gathered once and used only by the rows that selected it */
} sl_mlp_mode;

typedef struct sl_mlp_weights {
    sl_type type;       /* element type of gate, up, down and down_t */
    int64_t n_embd;     /* H: input and output width */
    int64_t n_ff;       /* I: number of neurons */
    const void *gate;   /* [I, H] */
    const void *up;     /* [I, H] */
    const void *down;   /* [H, I] as in GGUF; may be NULL when down_t is given (the dense forward then
                           uses down_t) */
    const void *down_t; /* [I, H] transposed down (row i = column i of down), or NULL to have the
                           operator build it (for Q4_0 it builds a Q8_0 one, see above) */
} sl_mlp_weights;

/* Stage breakdown of one call, filled only when requested (sl_sparse_mlp_set_stats). Thread
 * stages are the slowest thread's time. */
typedef struct sl_sparse_mlp_stats {
    double t_select;      /* seconds: checking the mask / index lists, building the active lists, cache update */
    double t_prepare;     /* converting x (Q8_0 quantization for quantized weights) */
    double t_gate_up;     /* gate and up row dots */
    double t_act;         /* act(g) * u */
    double t_down;        /* down projection (axpy of down_t rows; dense: the [H, I] product) */
    double t_reduce;      /* summing per-thread accumulators into out */
    double t_total;       /* the whole call */
    int64_t n_pairs;      /* (row, neuron) products computed */
    int64_t n_unique;     /* distinct neurons touched (size of the union) */
    int64_t weight_bytes; /* distinct weight bytes read: n_unique rows of gate and up, plus n_unique rows
                             of down_t (or all of down when dense_down) */
    bool dense_gate_up;   /* gate/up ran as dense products (>= 90% active, down given) */
    bool dense_down;      /* the down projection ran as the dense product (mostly active, down given) */
    bool cache_used;      /* the active-row cache served this call */
    int64_t cache_kept;   /* neurons already in the cache */
    int64_t cache_added;  /* neurons copied in */
    int64_t cache_removed;/* neurons dropped */
} sl_sparse_mlp_stats;

typedef struct sl_sparse_mlp sl_sparse_mlp; /* opaque prepared operator */

/* Check the weights, build down_t if needed and start n_threads - 1 workers (0 = 1). The weights
 * are borrowed: they must stay valid and unchanged until sl_sparse_mlp_free. Errors: NULL
 * pointers or non-positive sizes (SL_ERR_INVALID_ARG), a type or activation the operator does
 * not support (SL_ERR_UNSUPPORTED), H or I not a multiple of 32 for Q8_0/Q4_0 (SL_ERR_INVALID_ARG). */
sl_sparse_mlp *sl_sparse_mlp_init(const sl_mlp_weights *w, sl_activation act, int n_threads, sl_error *err);
/* Like sl_sparse_mlp_init, but borrow the worker threads of `threads_from` instead of starting
 * new ones (one set of threads for all the layers of a model). The two operators must not run
 * at the same time, and threads_from must be freed after this one. */
sl_sparse_mlp *sl_sparse_mlp_init_shared(const sl_mlp_weights *w, sl_activation act, sl_sparse_mlp *threads_from,
                                         sl_error *err);
void sl_sparse_mlp_free(sl_sparse_mlp *op);

/* Bytes the operator owns beyond the caller's weights: down_t (when it built it), the active-row
 * cache and the scratch buffers. */
size_t sl_sparse_mlp_memory(const sl_sparse_mlp *op);

/* Sparse forward. x: [B, H] f32; out: [B, H] f32 (may not alias x). Active neurons: mask [B, I]
 * (row-major bool) or per-row index lists idx[b][0 .. n_idx[b]) (any order; idx[b] may be NULL
 * when n_idx[b] == 0); not both; neither = all neurons. Errors: B < 1, mask and idx both given,
 * idx without n_idx, n_idx[b] outside 0..I, a bad mode (SL_ERR_INVALID_ARG); an index outside
 * [0, I) (SL_ERR_RANGE); an index repeated within one row (SL_ERR_INVALID_ARG: it would count
 * the neuron twice). A row with no active neuron gets zeros. On error out is untouched. An
 * operator is used by one thread at a time. */
sl_status sl_sparse_mlp_forward(sl_sparse_mlp *op, const float *x, int64_t B, const bool *mask,
                                const int32_t *const *idx, const int32_t *n_idx, sl_mlp_mode mode, float *out,
                                sl_error *err);

/* The dense MLP the model runs without sparsity (gate/up/down products through the library's
 * matrix kernels, down in its [H, I] layout), for comparison. Same x/out contract. */
sl_status sl_mlp_dense_forward(sl_sparse_mlp *op, const float *x, int64_t B, float *out, sl_error *err);

/* Active-row cache for decoding ("LLM in a flash"): keep copies of the gate/up/down_t rows of
 * the last call's active neurons packed together, replacing only the rows whose neurons changed
 * (swap-delete). It pays only when consecutive active sets overlap heavily; the stats report the
 * overlap. capacity: neurons it may hold (0 = I); memory = capacity x (two gate rows + one
 * down_t row). capacity < 0 turns the cache off and frees it. */
sl_status sl_sparse_mlp_set_cache(sl_sparse_mlp *op, int64_t capacity, sl_error *err);

/* Neuron-bundled layout (on = true): copy gate, up and the transposed down neuron by neuron into
 * one huge-page buffer (gate row | up row | down_t row per neuron, down_t as the operator holds it), as
 * the skip model does for its sparse layers, and from then on compute calls with B = 1 or
 * SL_MLP_PER_ROW through it: one fused pass per row that reads each active neuron as one
 * contiguous run instead of three scattered rows. Costs a second copy of the whole MLP
 * (sl_sparse_mlp_memory counts it). Arguments are checked as without it, and calls that are
 * >= 90% active (with down given) still run the dense MLP. Union calls with B > 1, and calls
 * while the active-row cache is on, keep using the matrices. Stats: t_select and t_total only
 * (the products are fused). on = false frees it.
 * Q8_0 and Q4_0: the bundle stores each row in a layout made for wide loads (the same values
 * and scales, reordered; AVX-512, AVX2 and scalar kernels) and sums the down rows in integers:
 * per block of 32 outputs, the coefficients act(g) * u * d of a group of up to 8 neurons are
 * rounded to int8 against their largest (as the dense path rounds activations to Q8_0 before
 * its integer products). Each output is then within (S / 2) * sum |q| of the exact sum, S the
 * largest coefficient / 127; measured 0.8-1.1% of max |out| in the tests, and +0.01% perplexity
 * on the Q4_0/Q8_0 fixtures with CATS at 50% and 90%. The groups do not depend on the thread
 * count, so neither does the result, beyond the order of float sums. */
sl_status sl_sparse_mlp_set_bundled(sl_sparse_mlp *op, bool on, sl_error *err);

/* Ask every following forward call (sparse or dense) to overwrite *stats with its stage times;
 * NULL stops it. Without it the calls read no clocks. */
void sl_sparse_mlp_set_stats(sl_sparse_mlp *op, sl_sparse_mlp_stats *stats);

/* Plain reference used by tests: dequantize to f32, accumulate in double, skip neurons whose
 * mask entry is false (mask NULL = all active). Uses w->down when given, else w->down_t. Slow. */
sl_status sl_sparse_mlp_reference(const sl_mlp_weights *w, sl_activation act, const float *x, int64_t B,
                                  const bool *mask, float *out, sl_error *err);

/* ---------------------------------------------------------------------------------------------
 * Sparsity profiles and the skip model (src/sparse/profile.c, calibrate.c, skip.c)
 * ------------------------------------------------------------------------------------------- */

/* A sparsity profile says, per layer, which MLP neurons to skip for each token. It lives in its
 * own GGUF file next to the model (model.gguf + model.skip.gguf; format in docs/profile-format.md)
 * and is bound to one model by a fingerprint (shapes + a hash of weight bytes). */
typedef struct sl_profile sl_profile;

typedef enum sl_skip_rule {
    SL_RULE_DENSE = 0,          /* compute every neuron */
    SL_RULE_CATS = 1,           /* training-free: compute gate fully, keep |act(gate)| > threshold */
    SL_RULE_PRED_THRESHOLD = 2, /* predictor score B(A x) > threshold */
    SL_RULE_PRED_TOPK = 3,      /* the topk neurons of highest predictor score */
    SL_RULE_PRED_STAT_TOPK = 4, /* score > mean + std * PhiInv(1 - topk / n_ff) over this token's scores */
    /* Two-stage rules (the down rows are chosen after act(g) * u is known). Stage 1 keeps cand_k
     * candidates per token, stage 2 the topk of those with the largest |act(g_i) * u_i| *
     * ||down[:, i]||; only those get their down row read. */
    SL_RULE_TWO_STAGE = 5,      /* gate computed in full; candidates = top cand_k by |act(g)|; up for candidates */
    SL_RULE_TWO_STAGE_PRED = 6, /* candidates = top cand_k predictor scores B(A x); gate and up for candidates
                                   (cand_k == topk: a plain top-k predictor that reads gate, up, down of topk neurons) */
} sl_skip_rule;

/* Name of a rule ("dense", "cats", "threshold", "topk", "stat-topk", "two-stage", "two-stage-pred"), or NULL. */
const char *sl_skip_rule_name(sl_skip_rule rule);

/* One layer of a profile. */
typedef struct sl_profile_layer {
    sl_skip_rule rule;     /* how active neurons are chosen */
    float threshold;       /* CATS: on |act(gate)|; PRED_THRESHOLD: on the score */
    int32_t topk;          /* PRED_TOPK / PRED_STAT_TOPK: neurons kept per token; two-stage rules: neurons
                              whose down row is read (stage 2) */
    int32_t cand_k;        /* two-stage rules: candidates per token (stage 1), topk <= cand_k <= n_ff */
    float target_sparsity; /* fraction of neurons meant to be skipped (informational; also what
                              --sparsity overrides) */
    int32_t rank;          /* predictor rank r (0 = no predictor in this layer) */
    float recall;          /* predictor metrics on validation data (NAN when unknown) */
    float precision;       /* " */
    float true_density;    /* fraction of neurons truly active (gate > 0) on calibration data */
    float pred_density;    /* fraction predicted active on validation data (NAN when unknown) */
    float contrib_recall;  /* kept share of the contributions |act(g) u| ||down[:, i]|| on validation data (NAN
                              when unknown) */
    int32_t gate_k;        /* two-stage-pred with a gate stage: the predictor's top gate_k neurons get their gate
                              rows, the top cand_k of those by |act(g)| their up rows (cand_k <= gate_k <= n_ff);
                              0 = none (gate and up rows for the same cand_k candidates) */
} sl_profile_layer;

/* An empty profile for `model`: every layer dense, no predictors. */
sl_profile *sl_profile_init(const sl_model *model, sl_error *err);
/* Load a profile and check it belongs to `model` (fingerprint and shapes): a profile made for
 * another model is refused with SL_ERR_INVALID_ARG and a message saying why. */
sl_profile *sl_profile_load(const char *path, const sl_model *model, sl_error *err);
/* A second profile with the same rules, thresholds and metrics that shares the predictor tensors
 * of src (no copy): its rules and sparsity can be changed on their own (sl_profile_set_layer,
 * sl_profile_set_sparsity), its predictors cannot. src must outlive it. */
sl_profile *sl_profile_clone(const sl_profile *src, sl_error *err);
/* Write the profile (via a temp file + rename: readers never see a partial file). */
sl_status sl_profile_save(const sl_profile *profile, const char *path, sl_error *err);
void sl_profile_free(sl_profile *profile);

int32_t sl_profile_n_layer(const sl_profile *profile);
/* The method string stored in the profile ("cats", "predictor", ...; owned by the profile). */
const char *sl_profile_method(const sl_profile *profile);
sl_status sl_profile_set_method(sl_profile *profile, const char *method, sl_error *err);
sl_status sl_profile_get_layer(const sl_profile *profile, int32_t layer, sl_profile_layer *out, sl_error *err);
/* Replace a layer's rule and parameters (the predictor tensors are set separately). Rules that
 * need a predictor are refused for a layer without one; CATS needs threshold >= 0. */
sl_status sl_profile_set_layer(sl_profile *profile, int32_t layer, const sl_profile_layer *info, sl_error *err);
/* Give a layer a low-rank predictor: A [rank, n_embd] and B [n_ff, rank], row-major f32, stored
 * as `type` (F32, F16, BF16, or Q8_0 / Q4_0 when n_embd and rank are multiples of 32). Copied.
 * The skip model multiplies them with the model's matrix kernels (Q4_0 in the same 4-row
 * interleaved layout the model repacks its Q4_0 matrices into). */
sl_status sl_profile_set_predictor(sl_profile *profile, int32_t layer, int32_t rank, sl_type type, const float *A,
                                   const float *B, sl_error *err);
/* CATS: the |act(gate)| value below which a fraction q of calibration activations fall, for
 * q in [0, 1] (interpolated from the stored quantile table); NAN when the layer has none. */
float sl_profile_cats_threshold(const sl_profile *profile, int32_t layer, float q);
/* Fraction of gate pre-activations <= 0 measured at calibration (NAN if unknown). */
float sl_profile_gate_nonpositive(const sl_profile *profile, int32_t layer);
/* Set the target sparsity of every non-dense layer: with a per-layer allocation (below), layer l
 * gets its own level for the average s, else s itself; then each layer is set to its level as
 * sl_profile_set_layer_level does. s in [0, 1). */
sl_status sl_profile_set_sparsity(sl_profile *profile, float sparsity, sl_error *err);

/* Set one non-dense layer to level s in [0, 1): CATS thresholds come from the quantile table,
 * top-k rules get topk = round((1 - s) * n_ff), threshold rules are left alone (their sparsity is
 * what training chose); two-stage rules take cand_k and topk from the layer's split table at s
 * (interpolated), or without one: TWO_STAGE a = min(1, 1.2 (1 - s)), d = 0.8 (1 - s) (the
 * bytes CATS reads at s), TWO_STAGE_PRED a = d = 1 - s. target_sparsity becomes s. */
sl_status sl_profile_set_layer_level(sl_profile *profile, int32_t layer, float s, sl_error *err);

/* Schedules: what `--sparsity` maps to, chosen by calibration and `tune` and stored in the
 * profile (docs/profile-format.md). A grid of n levels (ascending, in [0, 1), at most
 * SL_PROFILE_MAX_LEVELS; setting a new grid drops the tables below); per layer a two-stage split
 * (the fractions of neurons kept by stage 1 and stage 2 at each level, keep <= cand); and a
 * per-layer allocation (layer l's level when the profile-wide sparsity is levels[g]). */
#define SL_PROFILE_MAX_LEVELS 64
sl_status sl_profile_set_levels(sl_profile *profile, const float *levels, int32_t n, sl_error *err);
int32_t sl_profile_get_levels(const sl_profile *profile, float *levels); /* returns n; levels may be NULL */
/* cand, keep: [n levels] fractions in [0, 1] (NULL, NULL removes the layer's split). */
sl_status sl_profile_set_split(sl_profile *profile, int32_t layer, const float *cand, const float *keep, sl_error *err);
/* The layer's split at level s (interpolated); false when it has none. */
bool sl_profile_get_split(const sl_profile *profile, int32_t layer, float s, float *cand, float *keep);
/* two-stage-pred with a gate stage: gate: [n levels] fractions of neurons whose gate row is read, each
 * >= the split's cand at that level (NULL removes); needs the layer's split first (setting the split
 * again removes it). sl_profile_get_split_gate: at level s; false when the layer has none. */
sl_status sl_profile_set_split_gate(sl_profile *profile, int32_t layer, const float *gate, sl_error *err);
bool sl_profile_get_split_gate(const sl_profile *profile, int32_t layer, float s, float *gate);
/* alloc: [n_layer x n levels], alloc[l * n + g] = layer l's level at average levels[g] (NULL removes). */
sl_status sl_profile_set_allocation(sl_profile *profile, const float *alloc, sl_error *err);
/* Layer l's level for the profile-wide sparsity s (s itself without an allocation). */
float sl_profile_layer_level(const sl_profile *profile, int32_t layer, float s);

/* Calibration: run the dense model over tokens and write CATS thresholds reaching `sparsity`
 * (or per-layer targets) into a new profile. */
typedef struct sl_calibrate_params {
    float sparsity;              /* global target fraction of skipped neurons, [0, 1) */
    const float *layer_sparsity; /* per-layer targets [n_layer] overriding `sparsity`, or NULL;
                                    a negative entry keeps that layer dense */
    int32_t n_ctx;               /* window length the text is cut into (0 = min(model ctx, 512)) */
    int32_t n_threads;           /* worker threads (0 = 1) */
    /* progress(ud, tokens_done, tokens_total) after every window; may be NULL */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;           /* passed to progress */
} sl_calibrate_params;

sl_calibrate_params sl_calibrate_default_params(void);
sl_status sl_calibrate(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_calibrate_params *params,
                       sl_profile **out, sl_error *err);

/* Two-stage splits (src/sparse/calibrate_stages.c): for every level s of the profile's grid (it
 * gets the grid 0, 0.05, ..., 0.95 when it has none) and every layer, the fractions a (stage 1)
 * and d (stage 2) of the two-stage rule that read the MLP weight bytes CATS reads at sparsity s
 * (all gate rows and (1 - s) of the up rows and down columns; the predictor's bytes count for
 * TWO_STAGE_PRED) and whose MLP output on a sample of calibration tokens is closest to the
 * dense one (relative squared error; a - d tried in steps of 0.05 up to max_delta, until the error
 * has risen twice in a row). Writes the
 * splits and makes every layer use `rule` at its current target sparsity (0.5 for dense layers).
 * max_delta = 0 makes a plain top-k: TWO_STAGE_PRED with a = d reads the gate, up and down rows of
 * the predictor's top neurons only. */
typedef struct sl_split_params {
    sl_skip_rule rule;   /* SL_RULE_TWO_STAGE (default) or SL_RULE_TWO_STAGE_PRED (needs the profile's predictors) */
    float max_delta;     /* largest a - d tried (default 0.5; 0 = a plain top-k) */
    int64_t max_tokens;  /* sample tokens (0 = 1024, or what fits in 256 MiB of samples if less) */
    int32_t n_ctx;       /* window length (0 = min(model ctx, 512)) */
    int32_t n_threads;   /* threads (0 = 1) */
    void (*progress)(void *ud, int64_t done, int64_t total); /* may be NULL */
    void *progress_ud;
    float max_gate_ratio; /* two-stage-pred: > 1 also tries a gate stage, gate rows for g = min(1, r a) of the
                             neurons (the predictor's top), up rows for the top a of those by |act(g)|, for
                             r = 1, 1.25, 1.5, ... up to this (default 0: no gate stage; r = 1 is the plain rule) */
} sl_split_params;

sl_split_params sl_split_default_params(void);
sl_status sl_calibrate_split(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_split_params *params,
                             sl_profile *profile, sl_error *err);

/* Per-layer allocation (src/sparse/allocate.c), greedy in the spirit of TEAL's: measure each
 * sparse layer's cost curve — the mean NLL increase on the calibration tokens when only that
 * layer is sparse, at every level of the profile's grid (which must start at 0; a profile without
 * one gets 0, 0.05, ..., 0.95) — then, from all
 * layers dense, raise one grid step at a time the layer whose next step costs least per unit of
 * level, and record the layers' levels whenever their mean reaches a grid level. Stores the
 * allocation (sl_profile_set_allocation); --sparsity S then means the mean level of the sparse
 * layers. Rules with a level to move only (CATS, top-k, two-stage). cost: [n_layer x n_levels]
 * curves out (NULL: not wanted). Evaluates n_layer x (n_levels - 1) perplexities of max_tokens.
 * With exact set (and a uniform grid), each grid level's allocation is instead the one of least
 * summed cost among all whose levels average to it (dynamic programming over the same curves):
 * not nested, but never worse than the greedy's on the curves. */
typedef struct sl_alloc_params {
    int64_t max_tokens; /* calibration tokens per measurement: whole windows spread over the text (default 4096) */
    int32_t n_ctx;      /* window length (0 = min(model ctx, 512)) */
    int32_t n_threads;  /* threads (0 = 1) */
    void (*progress)(void *ud, int64_t done, int64_t total); /* may be NULL */
    void *progress_ud;
    bool exact;         /* least summed cost per level (dynamic programming) instead of the greedy (default false) */
} sl_alloc_params;

sl_alloc_params sl_alloc_default_params(void);
sl_status sl_allocate(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_alloc_params *params,
                      sl_profile *profile, double *cost, sl_error *err);

/* Use a profile for the MLPs of this context (NULL = dense again). The profile must outlive the
 * context's use of it. sparse_prefill: also skip neurons when evaluating several tokens at once
 * (each token with its own neurons; the union of the batch is read once, and a batch whose
 * union covers most of the layer runs dense: sl_layer_stats counts both); by default batches
 * run dense and single tokens sparse. The sparse paths read the model's neuron bundles
 * (sl_model_params.bundled, shared by every context); a model loaded without them builds them
 * here, once, on the first profile attached (memory: a second copy of the MLP). */
sl_status sl_context_set_profile(sl_context *ctx, const sl_profile *profile, bool sparse_prefill, sl_error *err);

/* Batch selection: how the tokens of one step of several sequences decoding together (B > 1,
 * sl_eval_batch) choose their neurons. A lone token always uses its own selection. Per-token
 * masks erode with B: independent 50% masks of 4 tokens have a union of ~94% of the layer, so
 * reading the union saves almost nothing. Applies to the single-stage rules (CATS, threshold,
 * top-k, stat-top-k); two-stage layers keep per-token selection. */
typedef enum sl_batch_select {
    SL_BATCH_UNION = 0,  /* each token its own neurons; the union read once, or the dense products when
                            the union covers >= 80% of the layer (the default) */
    SL_BATCH_SHARED = 1, /* one shared set per step and layer: the k neurons of largest combined score
                            sum_b max(0, z_b(i)) (z_b: token b's rule score standardised over the layer; CATS:
                            |act(gate)|), k = the mean size of the tokens' own selections (top-k: its k) */
    SL_BATCH_AUTO = 2,   /* union while the union of the tokens' own selections is <= union_max x n_ff,
                            else a shared set of union_max x n_ff neurons (at least k): the union capped */
    SL_BATCH_DENSE = 3,  /* the dense MLP for a step of several tokens (no scores computed): where the
                            model's dense batch is faster than any sparse one (a model loaded without
                            bundles, whose repacked matrices amortise each weight over the tokens) */
} sl_batch_select;
/* Name ("union", "shared", "auto", "dense") or NULL. */
const char *sl_batch_select_name(sl_batch_select mode);
/* Set the profile's batch selection (runtime only: not saved; clones copy it). union_max in
 * (0, 1] (AUTO's cap; 0 = the default 0.6). Takes effect at the next step of any context using
 * the profile. Only decoding batches (several sequences, one token each) use it; sparse-prefill
 * chunks keep per-token selection. */
sl_status sl_profile_set_batch_select(sl_profile *profile, sl_batch_select mode, float union_max, sl_error *err);
sl_batch_select sl_profile_get_batch_select(const sl_profile *profile, float *union_max); /* union_max may be NULL */

/* Sparsity actually achieved by one layer since the last reset. */
typedef struct sl_layer_stats {
    int64_t n_tokens;        /* tokens that went through this layer's MLP */
    int64_t n_sparse_tokens; /* of which took the sparse path */
    int64_t n_active;        /* neurons computed, summed over sparse tokens */
    int64_t n_neurons;       /* n_ff * n_sparse_tokens */
    /* with sl_context_track_recall on: predicted vs true active (gate > 0), sparse tokens only */
    int64_t true_pos;        /* predicted active and truly active */
    int64_t false_pos;       /* predicted active, truly inactive */
    int64_t false_neg;       /* predicted inactive, truly active (the errors that cost accuracy) */
    /* wall seconds spent in this layer's MLP, summed over calls (all tokens of a batch together) */
    double t_dense;          /* dense MLP (tokens not on the sparse path) */
    double t_scores;         /* sparse path: the scores, predictor B (A x) or the full gate (CATS) */
    double t_select;         /* sparse path: choosing the active neurons from the scores */
    double t_operator;       /* sparse path: the sparse MLP operator on the chosen neurons */
    /* weight bytes, in the model file's row sizes: a neuron costs its gate row, up row and column of
     * down; a predictor its A and B as stored. Every token that reached this layer with a profile
     * attached counts (dense tokens with the whole MLP). */
    int64_t n_cand;          /* two-stage rules: stage-1 candidates (up rows read), summed over sparse tokens */
    int64_t mlp_bytes;       /* MLP weight bytes read, predictor included */
    int64_t mlp_bytes_dense; /* what the dense MLP reads for the same tokens */
    /* with sl_context_track_recall on, sparse tokens only: contribution c_i = |act(g_i) * u_i| *
     * ||down[:, i]|| (the norm of what neuron i adds to the output), summed over the computed
     * neurons and over all; contribution recall = contrib_kept / contrib_total */
    double contrib_kept;
    double contrib_total;
    /* with sl_context_track_recall on, sparse tokens only: ||sparse MLP output - dense MLP output||^2
     * and ||dense MLP output||^2, summed over tokens (their ratio: the relative squared error) */
    double out_err;
    double out_norm;
    /* batches on the sparse path (several tokens at once, each with its own neurons) */
    int64_t n_batches;       /* batches of B > 1 tokens that took the sparse path */
    int64_t n_union;         /* neurons read for them: the size of each batch's union, summed */
    int64_t n_batch_dense;   /* of those batches, how many ran dense (the union was too large to pay) */
    /* batch selection (sl_profile_set_batch_select), decoding batches of single-stage rules */
    int64_t n_union_own;     /* the union of the tokens' own selections, summed over batches (n_union counts
                                what was read: the shared set where one was used) */
    int64_t n_batch_shared;  /* batches that computed one shared set */
    int64_t own_kept;        /* shared batches: neurons of each token's own selection in the shared set, summed */
    int64_t own_total;       /* shared batches: sizes of the tokens' own selections, summed (own-mask recall =
                                own_kept / own_total) */
} sl_layer_stats;

sl_status sl_context_get_layer_stats(const sl_context *ctx, int32_t layer, sl_layer_stats *out, sl_error *err);
void sl_context_reset_stats(sl_context *ctx);
/* Also compute the full gate and up on sparse tokens to measure recall/precision and the
 * contribution recall (slower; for ppl). */
void sl_context_track_recall(sl_context *ctx, bool on);

/* Perplexity over tokens the way llama.cpp's llama-perplexity and the fixtures define it: cut
 * the tokens into consecutive windows of `window` tokens (the last may be shorter), evaluate
 * each from an empty cache, score every token but the first of each window with its natural-log
 * probability; ppl = exp(mean NLL). The context needs n_ctx >= window. */
typedef struct sl_ppl_result {
    double ppl;         /* exp(nll_mean) */
    double nll_mean;    /* mean negative log-likelihood of scored tokens */
    double nll_sd;      /* standard deviation of the per-token NLL */
    int64_t n_scored;   /* tokens scored */
    int32_t n_windows;  /* windows evaluated */
    double ppl_err;     /* llama-perplexity's "±": ppl x sd(NLL) / sqrt(n_scored - 1) */
} sl_ppl_result;

sl_status sl_perplexity(sl_context *ctx, const int32_t *tokens, int64_t n_tokens, int32_t window,
                        void (*progress)(void *ud, int64_t done, int64_t total), void *progress_ud,
                        sl_ppl_result *out, sl_error *err);

/* llama.cpp's llama-perplexity method, to compare with its numbers: tokens are the text tokenized
 * with BOS (as llama-perplexity does); they are cut into n_chunk = n_tokens / n_ctx whole chunks
 * (at most max_chunks when > 0; at least 2 x n_ctx tokens are needed), each evaluated from an
 * empty cache with its first token replaced by bos (when bos >= 0, i.e. the vocabulary adds BOS),
 * and only the second half of each chunk is scored: the tokens at positions n_ctx/2 + 1 .. n_ctx - 1.
 * out->ppl_err is the "±" llama-perplexity prints. The context needs n_ctx >= the chunk size. */
sl_status sl_perplexity_llama(sl_context *ctx, const int32_t *tokens, int64_t n_tokens, int32_t n_ctx, int32_t bos,
                              int32_t max_chunks, void (*progress)(void *ud, int64_t done, int64_t total), void *progress_ud,
                              sl_ppl_result *out, sl_error *err);

/* ---------------------------------------------------------------------------------------------
 * Predictor training (src/sparse/predictor_*.c; method and numbers in docs/predictor-training.md)
 * ------------------------------------------------------------------------------------------- */

/* Train each layer's low-rank predictor score = B (A x) (A [r, n_embd], B [n_ff, r], no bias) to
 * predict the true activation mask gate . x > 0 from the MLP input x (after ffn_norm):
 * class-weighted binary cross-entropy on the scores (positives weighted (1 - d) / d for a layer
 * of true density d), AdamW, mini-batches; then on held-out windows the rule's threshold (or k)
 * is chosen as the one that just reaches target_recall, and the predictor, the rule and its
 * validation metrics go into the profile.
 *
 * Memory: the (x, mask) pairs take tokens x n_layer x (2 n_embd + ceil(n_ff / 8)) bytes (x as
 * f16, masks as bits; sl_train_store_bytes). They stay in RAM up to mem_limit, else go to an
 * unlinked temp file. Beyond that, training holds at most 64 MiB of shuffled rows, one
 * mini-batch (about batch x (2 n_embd + 4 n_ff) floats), the parameters with their AdamW moments
 * (4 r (n_embd + n_ff) floats) and at most 256 MiB of validation scores.
 *
 * Deterministic: the same tokens, parameters and seed give the same predictors and profile bytes
 * (for any n_threads, on one CPU kernel variant). */

typedef enum sl_train_phase {
    SL_TRAIN_COLLECT = 0, /* running the dense model over the text: done/total in tokens */
    SL_TRAIN_FIT = 1,     /* training one layer: done/total in mini-batch steps */
    SL_TRAIN_SELECT = 2,  /* choosing that layer's threshold / k on validation: done/total in passes */
} sl_train_phase;

/* What a predictor learns to rank (sl_train_params.target) and how (loss). */
typedef enum sl_train_target {
    SL_TARGET_SIGN = 0,    /* the true mask gate . x > 0 (Deja Vu's target) */
    SL_TARGET_CONTRIB = 1, /* the neuron's contribution c_i = |act(g_i) * u_i| * ||down[:, i]||: the norm of
                              what it adds to the MLP output (docs/predictor-training.md) */
} sl_train_target;

typedef enum sl_train_loss {
    SL_LOSS_BCE = 0,     /* class-weighted binary cross-entropy on labels: the sign, or (contribution target)
                            the top label_frac of the token's neurons by c_i */
    SL_LOSS_LISTNET = 1, /* contribution target: a ranking loss, the cross-entropy between softmax(scores) and
                            the token's contribution shares c_i / sum c (ListNet's top-one probabilities) */
} sl_train_loss;

typedef struct sl_train_params {
    int32_t rank;          /* predictor rank r (1..n_embd); 0 = from rank_frac */
    float rank_frac;       /* r = rank_frac x n_ff rounded to the nearest multiple of 16 (at least 16, at most
                              n_embd; a multiple of 32 for Q8_0). Default 0.04 */
    int64_t max_tokens;    /* use about max_tokens tokens: that many whole windows (rounded up), spread evenly over
                              the text (0 = all of it) */
    int32_t epochs;        /* passes over the training rows (default 4) */
    float lr;              /* AdamW peak learning rate (default 3e-3): warm-up, then cosine decay to 5% */
    float weight_decay;    /* AdamW decoupled weight decay (default 0.01) */
    int32_t batch;         /* rows (token, layer inputs) per mini-batch (default 256) */
    float pos_weight;      /* BCE weight of active neurons; 0 = (1 - d) / d from the layer's training density d */
    float val_frac;        /* fraction of windows held out for validation, in (0, 1) (default 0.1): window w
                              validates when floor((w + 1) f) > floor(w f), spread over the whole text */
    float target_recall;   /* recall on validation the rule must reach, in (0, 1] (default 0.99) */
    sl_skip_rule rule;     /* SL_RULE_PRED_THRESHOLD (default), SL_RULE_PRED_TOPK or SL_RULE_PRED_STAT_TOPK */
    sl_type type;          /* storage type of A and B: F32 (default), F16, BF16, Q8_0 */
    uint64_t seed;         /* initialisation and shuffling (default 1) */
    int32_t n_threads;     /* threads for the forward pass and training (0 = 1) */
    int32_t n_ctx;         /* window length the text is cut into, each evaluated from an empty cache
                              (0 = min(model context, 512)) */
    int64_t mem_limit;     /* bytes of RAM the collected pairs may take before going to a temp file (default 1 GiB) */
    const char *tmp_dir;   /* directory of that temp file (NULL = $TMPDIR, else /tmp) */
    /* progress(ud, phase, layer (-1 while collecting), done, total); may be NULL */
    void (*progress)(void *ud, sl_train_phase phase, int32_t layer, int64_t done, int64_t total);
    void *progress_ud;     /* passed to progress */
    sl_train_target target; /* SL_TARGET_SIGN (default) or SL_TARGET_CONTRIB */
    sl_train_loss loss;    /* SL_LOSS_BCE (default) or, with the contribution target, SL_LOSS_LISTNET */
    float label_frac;      /* contribution target: the fraction of a token's neurons labelled positive for BCE (top by
                              c_i), and the top-k fraction the written rule keeps and is measured at (default 0.4) */
} sl_train_params;

sl_train_params sl_train_default_params(void);

/* What training one layer gave (metrics on the validation rows, with the predictor as stored). */
typedef struct sl_train_layer_report {
    int32_t layer;         /* layer index */
    int32_t rank;          /* r */
    sl_skip_rule rule;     /* the rule written */
    float threshold;       /* its score threshold (threshold rule) */
    int32_t topk;          /* its k (top-k rules) */
    float true_density;    /* fraction of (token, neuron) pairs truly active */
    float pred_density;    /* fraction the rule keeps (1 - achieved sparsity) */
    float precision;       /* kept and active / kept */
    float recall;          /* kept and active / active (>= target_recall by construction) */
    float f1;              /* 2 precision recall / (precision + recall) */
    float pos_weight;      /* BCE weight of positives used */
    float train_loss;      /* mean weighted BCE per (token, neuron) over the last epoch */
    float val_loss;        /* the same on validation, with the stored predictor */
    int64_t n_train;       /* training rows */
    int64_t n_val;         /* validation rows */
    double fit_seconds;    /* time training */
    double select_seconds; /* time choosing the rule and measuring it */
    float contrib_recall;  /* contribution target: kept share of sum c_i on validation (NAN otherwise) */
} sl_train_layer_report;

typedef struct sl_train_report {
    int64_t n_tokens;       /* tokens used */
    int64_t n_train_tokens; /* of which in training windows */
    int64_t n_val_tokens;   /* of which in validation windows */
    int64_t n_windows;      /* windows */
    int64_t n_val_windows;  /* of which held out */
    int32_t rank;           /* r */
    int64_t store_bytes;    /* bytes of collected (x, mask) pairs */
    bool store_on_disk;     /* they went to a temp file (over mem_limit) */
    double t_collect;       /* seconds running the model */
    double t_fit;           /* seconds training (all layers) */
    double t_select;        /* seconds choosing rules and measuring them */
    double t_total;         /* seconds in all */
    sl_train_layer_report *layers; /* caller-provided [n_layer] array to fill, or NULL */
} sl_train_report;

/* r for a model of this shape under these parameters (see sl_train_params.rank_frac). */
int32_t sl_train_rank(const sl_train_params *params, int32_t n_embd, int32_t n_ff);
/* tokens x n_layer x (2 n_embd + ceil(n_ff / 8)): bytes of collected pairs; -1 on overflow. */
int64_t sl_train_store_bytes(int64_t n_tokens, int32_t n_layer, int32_t n_embd, int32_t n_ff);

/* Collect (x, mask) pairs from the dense model over tokens (consecutive windows of n_ctx tokens,
 * each from an empty cache), train every layer's predictor and set, in `profile` (made with
 * sl_profile_init or sl_profile_load for this model), each layer's predictor tensors, rule,
 * threshold or k, target_sparsity (= 1 - pred_density) and metrics; the method becomes
 * "predictor". Anything else in the profile (CATS quantiles) is kept. report may be NULL. On
 * error the profile may hold some trained layers; do not save it. */
sl_status sl_train_predictors(const sl_model *model, const int32_t *tokens, int64_t n_tokens, const sl_train_params *params,
                              sl_profile *profile, sl_train_report *report, sl_error *err);

/* The same training and rule selection for one layer on data in memory (tests, experiments):
 * x [n_train, n_embd] with mask [n_train, n_ff] to train on, x_val / mask_val [n_val, ...] to
 * choose the rule on. x is rounded to f16 as in the model path. Writes A [r, n_embd] and
 * B [n_ff, r] (r = sl_train_rank(params, ...)) as f32, and the chosen rule and metrics (for
 * the predictor as params->type would store it) in *report. params->max_tokens, val_frac,
 * n_ctx, mem_limit and tmp_dir are not used. */
sl_status sl_predictor_fit(const float *x, const bool *mask, int64_t n_train, const float *x_val, const bool *mask_val, int64_t n_val,
                           int32_t n_embd, int32_t n_ff, const sl_train_params *params, float *A, float *B,
                           sl_train_layer_report *report, sl_error *err);
/* The same for the contribution target (params->target = SL_TARGET_CONTRIB): contrib [n, n_ff]
 * holds each neuron's contribution c_i >= 0 (rounded to f16 as in the model path), mask [n, n_ff]
 * its true activity for the mask metrics (NULL: c_i > 0). The rule written is top-k with
 * k = round(label_frac * n_ff); report->contrib_recall is measured at it. */
sl_status sl_predictor_fit_contrib(const float *x, const float *contrib, const bool *mask, int64_t n_train, const float *x_val,
                                   const float *contrib_val, const bool *mask_val, int64_t n_val, int32_t n_embd, int32_t n_ff,
                                   const sl_train_params *params, float *A, float *B, sl_train_layer_report *report, sl_error *err);

#endif /* SKIPLLAMA_SPARSE_H */
