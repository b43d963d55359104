/*
 * skipllama.h — the one public header of libskipllama.
 *
 * skipllama runs LLaMA-family models stored in GGUF files on the CPU, and can skip the MLP
 * neurons a per-layer predictor says are inactive. This header is the whole contract between
 * the library and its users (the `skipllama` CLI, language bindings): plain C11, opaque handles
 * with init/free pairs, a status code plus a readable message on every fallible call.
 *
 * Conventions
 *  - Every fallible function returns an sl_status (or NULL) and, when given a non-NULL
 *    sl_error*, fills it with the code and a human-readable message. The library never prints
 *    and never exits.
 *  - Buffers returned by the library are owned by the handle they came from unless the
 *    function's comment says otherwise; they stay valid until the next call on that handle.
 *  - Thread safety: a model (sl_model) is immutable after loading and may be shared by any
 *    number of threads and contexts. A context (sl_context) is used by one thread at a time;
 *    the library may use its own worker threads inside a call (n_threads).
 *  - No global state: any number of models and contexts may live in one process.
 */
#ifndef SKIPLLAMA_H
#define SKIPLLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SKIPLLAMA_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Status and errors
 * ------------------------------------------------------------------------------------------- */

typedef enum sl_status {
    SL_OK = 0,
    SL_ERR_INVALID_ARG = 1, /* a caller-supplied argument is wrong (NULL, out of range, shape) */
    SL_ERR_IO = 2,          /* open/read/mmap/write failed */
    SL_ERR_FORMAT = 3,      /* a file is malformed, truncated or inconsistent */
    SL_ERR_UNSUPPORTED = 4, /* well-formed but not supported (architecture, tensor type) */
    SL_ERR_NOMEM = 5,       /* an allocation failed or would exceed a stated limit */
    SL_ERR_RANGE = 6,       /* a token id, position or length is outside what is allowed */
} sl_status;

typedef struct sl_error {
    sl_status code;    /* SL_OK when nothing went wrong */
    char message[512]; /* NUL-terminated description of the first problem found */
} sl_error;

/* Short name of a status code ("ok", "invalid argument", ...). Never NULL. */
const char *sl_status_str(sl_status status);

/* ---------------------------------------------------------------------------------------------
 * Tensor (weight) types. Values equal ggml's type ids so GGUF files map one to one.
 * ------------------------------------------------------------------------------------------- */

typedef enum sl_type {
    SL_TYPE_F32 = 0,
    SL_TYPE_F16 = 1,
    SL_TYPE_Q4_0 = 2,  /* blocks of 32: f16 scale + 16 bytes of 4-bit values (offset 8) */
    SL_TYPE_Q4_1 = 3,  /* blocks of 32: f16 scale and minimum + 4-bit values */
    SL_TYPE_Q5_0 = 6,  /* blocks of 32: f16 scale + 5-bit values (offset 16) */
    SL_TYPE_Q5_1 = 7,  /* blocks of 32: f16 scale and minimum + 5-bit values */
    SL_TYPE_Q8_0 = 8,  /* blocks of 32: f16 scale + 32 int8 values */
    SL_TYPE_Q2_K = 10, /* K-quants: super-blocks of 256 with 6- or 8-bit sub-block scales */
    SL_TYPE_Q3_K = 11,
    SL_TYPE_Q4_K = 12,
    SL_TYPE_Q5_K = 13,
    SL_TYPE_Q6_K = 14,
    SL_TYPE_IQ4_NL = 20, /* blocks of 32: f16 scale + 4-bit indices into a fixed non-linear table */
    SL_TYPE_IQ4_XS = 23, /* super-blocks of 256: IQ4_NL values with 6-bit sub-block scales */
    SL_TYPE_BF16 = 30,
} sl_type;

/* Name of a type ("f32", "q8_0", "q4_k", ...), or NULL when the type is not supported. */
const char *sl_type_name(int type);
/* Parse a type name (case-insensitive); returns false when unknown. */
bool sl_type_from_name(const char *name, sl_type *out);
/* Bytes needed to store n elements of `type` (n must be a multiple of the block size), or 0. */
size_t sl_type_row_size(sl_type type, int64_t n);
/* Elements per block (1 for float types, 32 for Q8_0/Q4_0..., 256 for K-quants/IQ4_XS), or 0 for unknown types. */
int64_t sl_type_block_size(sl_type type);

/* ---------------------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------------------- */

typedef struct sl_model sl_model; /* opaque: weights (mmapped) + hyperparameters + vocabulary */

typedef enum sl_activation {
    SL_ACT_SILU = 0, /* x * sigmoid(x) — SwiGLU LLaMA */
    SL_ACT_RELU = 1, /* max(x, 0) — ReLU-fied LLaMA / ProSparse */
    SL_ACT_GELU = 2, /* tanh approximation */
    SL_ACT_GELU_F16 = 3, /* the same GELU as llama.cpp's CPU backend evaluates it (Gemma's gate): through
                            float16, gelu(x) = f16(gelu(f16(x))) for |x| < 10, 0 below -10, x above 10 */
} sl_activation;

/* Name of an activation ("silu", "relu", "gelu", "gelu_f16") or NULL. */
const char *sl_activation_name(sl_activation act);
/* Parse an activation name; false when unknown. */
bool sl_activation_from_name(const char *name, sl_activation *out);

/* Hyperparameters read from the GGUF metadata. */
typedef struct sl_model_config {
    int32_t n_vocab;        /* vocabulary size = rows of token_embd */
    int32_t n_embd;         /* model width (dim) */
    int32_t n_ff;           /* feed-forward (MLP) width */
    int32_t n_layer;        /* transformer blocks */
    int32_t n_head;         /* query heads */
    int32_t n_head_kv;      /* key/value heads (GQA when < n_head) */
    int32_t head_dim;       /* n_embd / n_head */
    int32_t n_rot;          /* rotary dimensions per head (<= head_dim) */
    int32_t n_ctx_train;    /* context length the model was trained with */
    float rms_eps;          /* RMSNorm epsilon */
    float rope_freq_base;   /* RoPE theta */
    sl_activation act;      /* FFN activation */
    bool tied_embeddings;   /* output projection reuses token_embd.weight */
    bool has_rope_freqs;    /* rope_freqs.weight present (Llama 3.1+ frequency factors) */
    sl_type weight_type;    /* type of most 2-D weights (the type of ffn_gate of layer 0) */
    const char *arch;       /* general.architecture: "llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3" */
    int32_t n_swa;          /* sliding-window size of the windowed layers (0: every layer sees the whole context) */
} sl_model_config;

typedef struct sl_model_params {
    bool vocab_only; /* load only the tokenizer (no tensors needed; any architecture) */
    /* Q4_0 matrices are by default copied once, at load, into a 4-row interleaved layout that
     * the AVX-512 matrix-vector kernel reads at memory speed (same bytes as the file; the file's
     * pages are released afterwards, so resident memory stays about the file size; loading
     * takes longer by one pass over those weights). true: compute from the mapping as is. */
    bool no_repack;
    /* Lay the MLP weights out once, at load, as neuron bundles (gate row, up row and transposed
     * down row of each neuron side by side, in the file's type and bits per weight), the layout
     * sparse decoding reads; the dense path then reads them too and the file's MLP pages are
     * released, so resident memory stays about the file size and every context shares them.
     * Q4_0 / Q8_0 down columns keep the file's blocks (exact); other quantized types' down rows
     * are re-rounded to Q8_0 (docs/sparse-speed.md). Without it, the first sparsity profile
     * attached to the model builds the bundles for the sparse paths only (an extra copy of the
     * MLP). */
    bool bundled;
    int32_t n_threads; /* threads used while loading (building the bundles); 0 = 1 */
} sl_model_params;

/* CPU kernels. The library uses the best variant this CPU runs ("avx512", "avx2" or "scalar"),
 * or the one the environment variable SKIPLLAMA_KERNELS names when this CPU runs it (read at the
 * first kernel call). sl_kernels_force switches the whole process to a variant by name ("auto" =
 * the best again); call it before loading models and never while another thread computes.
 * SL_ERR_UNSUPPORTED when this CPU lacks it, SL_ERR_INVALID_ARG for an unknown name. */
const char *sl_kernels_in_use(void);
sl_status sl_kernels_force(const char *name, sl_error *err);

/* Default load parameters. */
sl_model_params sl_model_default_params(void);

/* Load a GGUF model. Returns NULL and fills *err on any problem. The file is mmapped read-only
 * and stays mapped until sl_model_free. */
sl_model *sl_model_load(const char *path, const sl_model_params *params, sl_error *err);
void sl_model_free(sl_model *model);

/* What loading found wrong but worked around (a special-token id outside the vocabulary, a tokenizer
 * with fewer tokens than the embedding has rows), one problem per line; "" when none. Owned by the
 * model. */
const char *sl_model_warnings(const sl_model *model);

/* Hyperparameters of a loaded model (pointer owned by the model). */
const sl_model_config *sl_model_get_config(const sl_model *model);

/* Number of parameters (elements of all tensors) and bytes of the file. */
int64_t sl_model_n_params(const sl_model *model);
int64_t sl_model_file_size(const sl_model *model);
/* Bytes of the Q4_0 matrices copied into the interleaved layout at load (0 when none were:
 * another type, no_repack, or kernels without that path). */
int64_t sl_model_repacked_bytes(const sl_model *model);
/* Bytes of the model's neuron bundles (0 when it has none), and whether the dense forward pass
 * reads them (loaded bundled, or from a bundled file). */
int64_t sl_model_bundled_bytes(const sl_model *model);
bool sl_model_dense_bundled(const sl_model *model);

/* Write a multi-line human-readable description (architecture, shapes, tensor types, parameter
 * count, file size) into buf (always NUL-terminated). Returns the length it wanted to write. */
size_t sl_model_describe(const sl_model *model, char *buf, size_t buf_size);

/* ---------------------------------------------------------------------------------------------
 * Contexts: KV cache + scratch buffers for evaluating tokens
 * ------------------------------------------------------------------------------------------- */

typedef struct sl_context sl_context; /* opaque: the KV caches of one or more sequences + buffers */

typedef struct sl_context_params {
    int32_t n_ctx;     /* KV cache length in tokens; 0 = the model's training context */
    int32_t n_threads; /* worker threads used inside calls; 0 = 1 */
    int32_t n_batch;   /* max tokens evaluated per internal step during prefill; 0 = 64 */
    bool kv_f16;       /* store the KV cache as F16 instead of F32 */
    int32_t n_seq;     /* sequences held, each with its own KV cache of n_ctx tokens (sl_eval_batch);
                          0 = 1. sl_eval and sl_context_n_past work on sequence 0. */
} sl_context_params;

sl_context_params sl_context_default_params(void);

/* Create a context for `model` (the model must outlive the context). Sizes are checked before
 * anything is allocated; a KV cache that would not fit gets SL_ERR_NOMEM naming the size. */
sl_context *sl_context_init(const sl_model *model, const sl_context_params *params, sl_error *err);
void sl_context_free(sl_context *ctx);

/* Tokens currently held in the KV cache (the next token is evaluated at this position). */
int32_t sl_context_n_past(const sl_context *ctx);
int32_t sl_context_n_ctx(const sl_context *ctx);

/* Drop the KV cache contents (of every sequence) so the context can start again at position 0. */
void sl_context_reset(sl_context *ctx);
/* Keep only the first n_past tokens of the KV cache of sequence 0 (0 <= n_past <= sl_context_n_past): the next
 * token is evaluated at position n_past (a chat that rewrites the end of its history). */
sl_status sl_context_truncate(sl_context *ctx, int32_t n_past, sl_error *err);

/* Sequences the context holds (sl_context_params.n_seq). */
int32_t sl_context_n_seq(const sl_context *ctx);
/* Tokens in sequence seq's KV cache, or -1 when seq is out of range. */
int32_t sl_context_seq_n_past(const sl_context *ctx, int32_t seq);
/* Keep the first n tokens of sequence seq and drop the rest (a shared prefix is reused: the next
 * token goes to position n). SL_ERR_RANGE when seq is out of range or n > its n_past. */
sl_status sl_context_seq_keep(sl_context *ctx, int32_t seq, int32_t n, sl_error *err);

/* Evaluate n_tokens tokens at positions n_past..n_past+n_tokens-1, appending to the KV cache.
 * If logits is non-NULL and all_logits is true, writes n_tokens rows of n_vocab floats (row i =
 * distribution after token i); if all_logits is false, writes only the last row (n_vocab floats).
 * Errors: token id out of range, exceeding n_ctx (SL_ERR_RANGE), n_tokens <= 0. On error the
 * context is left as it was before the call. */
sl_status sl_eval(sl_context *ctx, const int32_t *tokens, int32_t n_tokens, float *logits,
                  bool all_logits, sl_error *err);

/* One token of a multi-sequence batch. */
typedef struct sl_batch_token {
    int32_t token; /* token id */
    int32_t seq;   /* the sequence it extends, 0..n_seq-1 */
    bool logits;   /* write the distribution after this token */
} sl_batch_token;

/* Evaluate tokens of several sequences in one forward pass (a server's step: the next token of
 * every generating sequence and a chunk of a new prompt): each weight matrix is read once for the
 * whole batch, while every token attends only to its own sequence's cache. A sequence's tokens are
 * appended at its positions n_past(seq), n_past(seq)+1, ... in batch order. logits (may be NULL)
 * gets one row of n_vocab floats per token whose .logits is set, in batch order. Batches longer
 * than n_batch are evaluated n_batch tokens at a time. A token that is the only one of its sequence
 * in its pass counts as decoding for the MLP plug-in (a sparsity profile applies to it as to a
 * single token); the plug-in sees such tokens first when they come first in the batch.
 * Errors (checked before anything is evaluated, the context is then unchanged): n <= 0, a sequence
 * or token id out of range, a sequence that would overflow its n_ctx (SL_ERR_RANGE). Each token's
 * logits equal those of evaluating its sequence alone up to float summation order. */
sl_status sl_eval_batch(sl_context *ctx, const sl_batch_token *batch, int32_t n, float *logits, sl_error *err);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer (src/text/)
 * ------------------------------------------------------------------------------------------- */

/* The tokenizer of a model, read from its `tokenizer.ggml.*` metadata. It reproduces llama.cpp's
 * tokenization token for token: "llama" vocabularies (SentencePiece BPE: score-driven merges, "▁"
 * for spaces, a space prefix, <0xXX> byte fallback) and "gpt2" vocabularies (byte-level BPE:
 * merges by rank after the regex pre-tokenizer named by tokenizer.ggml.pre). Owned by the model;
 * immutable, so it may be used from any number of threads at once. */
typedef struct sl_vocab sl_vocab;

typedef enum sl_vocab_type {
    SL_VOCAB_SPM = 1, /* tokenizer.ggml.model = "llama" */
    SL_VOCAB_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} sl_vocab_type;

/* The model's tokenizer, or NULL when the file has none. */
const sl_vocab *sl_model_get_vocab(const sl_model *model);

sl_vocab_type sl_vocab_get_type(const sl_vocab *vocab);
/* tokenizer.ggml.pre ("" when absent; SPM vocabularies report "default" or ""). */
const char *sl_vocab_pre_name(const sl_vocab *vocab);
int32_t sl_vocab_n_tokens(const sl_vocab *vocab);
/* Special token ids, or -1 when the vocabulary has none. eot is read from metadata or found by
 * its text ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", ...), as llama.cpp does. */
int32_t sl_vocab_bos(const sl_vocab *vocab);
int32_t sl_vocab_eos(const sl_vocab *vocab);
int32_t sl_vocab_eot(const sl_vocab *vocab);
/* Whether the model wants BOS (EOS) added to a prompt (tokenizer.ggml.add_bos_token, or the
 * default for the vocabulary type: true for SPM and Llama-3 BPE, false for other BPE). */
bool sl_vocab_add_bos(const sl_vocab *vocab);
bool sl_vocab_add_eos(const sl_vocab *vocab);
/* Does this token end generation (EOS, EOT, EOM and the end tokens llama.cpp recognises)? */
bool sl_vocab_is_eog(const sl_vocab *vocab, int32_t id);
/* Is this a control token (e.g. <s>, <|eot_id|>) — not rendered unless asked for? */
bool sl_vocab_is_control(const sl_vocab *vocab, int32_t id);
/* The stored text of a token (GPT-2 byte-encoded for BPE, "▁" for spaces in SPM), *len bytes,
 * not NUL-terminated; NULL when id is out of range. */
const char *sl_vocab_token_text(const sl_vocab *vocab, int32_t id, size_t *len);
/* The id of the token whose stored text is exactly text[0..len), or -1. */
int32_t sl_vocab_find_token(const sl_vocab *vocab, const char *text, size_t len);
/* tokenizer.chat_template (NUL-terminated), or NULL when the file has none. */
const char *sl_vocab_chat_template(const sl_vocab *vocab);

/* Tokenize text[0..len) (length-delimited: NUL bytes are ordinary characters).
 *  add_bos:       prepend BOS if the vocabulary wants it (sl_vocab_add_bos), and append EOS if it
 *                 wants that (as llama.cpp's add_special).
 *  parse_special: text equal to a control/user-defined token ("<|eot_id|>", "<s>") becomes that
 *                 token; otherwise it is tokenized as plain text. User-defined tokens are always
 *                 cut out, as in llama.cpp.
 * On success *out_ids is a malloc'd array of *out_n ids (NULL when *out_n == 0) that the caller
 * releases with sl_free_tokens (or free). Invalid UTF-8 never fails: SPM turns the bytes into
 * <0xXX> byte tokens (grouping bytes by their lead byte, like llama.cpp); BPE replaces each invalid
 * byte with U+FFFD (tokenized as its UTF-8 bytes), also as llama.cpp does. Texts longer than
 * 1 GiB are refused (SL_ERR_RANGE). */
sl_status sl_tokenize(const sl_vocab *vocab, const char *text, size_t len, bool add_bos, bool parse_special,
                      int32_t **out_ids, int32_t *out_n, sl_error *err);
void sl_free_tokens(int32_t *ids);

/* The text of one token as bytes (a "piece"): spaces restored, GPT-2 bytes decoded, <0xXX> byte
 * tokens as their byte (so a piece may be part of a UTF-8 character, and may contain NUL).
 * Control and unknown tokens give "" unless special is true, in which case their text is given.
 * Returns a pointer owned by the vocabulary (valid while the model lives) and sets *len; NULL with
 * *len = 0 when id is out of range. */
const char *sl_token_to_piece(const sl_vocab *vocab, int32_t id, bool special, size_t *len);

/* Turn ids back into text, as llama.cpp's llama_detokenize: pieces concatenated; SPM removes
 * the space prefix added by tokenize (the leading space of the first piece); BPE vocabularies for
 * which llama.cpp does it apply clean_up_tokenization_spaces (" ," -> ","; "gpt-2", "llama-bpe",
 * "starcoder", ...; not "deepseek-llm"). remove_special drops a leading BOS / trailing EOS that the
 * vocabulary adds; unparse_special renders control tokens as their text. *out_text is a malloc'd
 * NUL-terminated string (*out_len bytes, may contain NUL) released with sl_free_text (or free).
 * An id out of range gives SL_ERR_RANGE naming its position. */
sl_status sl_detokenize(const sl_vocab *vocab, const int32_t *ids, int32_t n_ids, bool remove_special,
                        bool unparse_special, char **out_text, size_t *out_len, sl_error *err);
void sl_free_text(char *text);

/* Streaming detokenizer for generation: push one token at a time and get back the bytes that are
 * ready to print. Bytes of a UTF-8 character split across tokens (e.g. <0xE2><0x96><0x81>) are
 * held back until the character is complete, so a chunk never ends inside a character; bytes that
 * can never form a valid character are passed through as they are. The concatenation of all
 * chunks (plus sl_detok_flush) equals the concatenation of the pieces. No space-prefix removal or
 * space clean-up is done (as llama.cpp's generation loop). */
typedef struct sl_detok sl_detok;

/* special: render control tokens as their text (as sl_token_to_piece). */
sl_detok *sl_detok_init(const sl_vocab *vocab, bool special, sl_error *err);
/* Add a token; *out and *out_len get the bytes ready now (owned by d, valid until the next call;
 * *out_len may be 0). An id out of range gives SL_ERR_RANGE and changes nothing. */
sl_status sl_detok_push(sl_detok *d, int32_t id, const char **out, size_t *out_len, sl_error *err);
/* Return whatever is still held back (an incomplete character at the end) and clear it. */
void sl_detok_flush(sl_detok *d, const char **out, size_t *out_len);
void sl_detok_free(sl_detok *d);

/* Chat templates (src/text/chat.c). A template family is detected from tokenizer.chat_template
 * by the markers llama.cpp looks for (llm_chat_detect_template), and rendered the way the
 * family's real Jinja template renders it (checked against @huggingface/jinja). */
typedef enum sl_chat_template {
    SL_CHAT_UNKNOWN = 0,
    SL_CHAT_CHATML,               /* <|im_start|>role\n...<|im_end|>\n (Qwen, SmolLM, ...) */
    SL_CHAT_LLAMA2,               /* [INST] ... [/INST] without system support (Mistral v0.1/v0.2's own) */
    SL_CHAT_LLAMA2_SYS,           /* ... with <<SYS>> */
    SL_CHAT_LLAMA2_SYS_BOS,       /* ... and <s> before each later [INST] */
    SL_CHAT_LLAMA2_SYS_STRIP,     /* ... contents stripped, " answer </s>" */
    SL_CHAT_LLAMA2_SYS_BOS_STRIP, /* Meta's Llama-2-chat template: both of the above */
    SL_CHAT_MISTRAL_V1,           /* Mistral's " [INST] " template */
    SL_CHAT_MISTRAL_V3,           /* "[INST] ...[/INST]", system text in the last user turn */
    SL_CHAT_MISTRAL_V3_TEKKEN,    /* "[INST]...[/INST]" */
    SL_CHAT_MISTRAL_V7,           /* [SYSTEM_PROMPT] ... */
    SL_CHAT_MISTRAL_V7_TEKKEN,
    SL_CHAT_LLAMA3,               /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    SL_CHAT_PHI3,                 /* <|role|>\n...<|end|>\n */
    SL_CHAT_GEMMA,                /* <start_of_turn>role\n...<end_of_turn>\n, system text in the first turn */
} sl_chat_template;

typedef struct sl_chat_message {
    const char *role;    /* "system", "user", "assistant" (ChatML, Llama-3, Phi-3: any role) */
    const char *content; /* NUL-terminated */
} sl_chat_message;

/* The family of a Jinja template text, or of a name ("chatml", "llama3", "mistral-v7" ...:
 * sl_chat_template_name's). SL_ERR_UNSUPPORTED naming the family when llama.cpp knows it but
 * skipllama does not render it (e.g. "zephyr"), or quoting the template's start when unknown. */
sl_status sl_chat_template_detect(const char *tmpl, sl_chat_template *out, sl_error *err);
/* The family of the vocabulary's tokenizer.chat_template (SL_ERR_UNSUPPORTED when it has none). */
sl_status sl_vocab_chat_template_id(const sl_vocab *vocab, sl_chat_template *out, sl_error *err);
/* "chatml", "llama2-sys", ... ("unknown" for others). Never NULL. */
const char *sl_chat_template_name(sl_chat_template tmpl);
/* Render messages[0..n) (add_assistant: end with the assistant's header, as
 * add_generation_prompt). The text has no leading BOS (sl_tokenize adds it); tokenize it with
 * parse_special = true. *out is malloc'd (*out_len bytes), released with sl_free_text. For a
 * conversation that grows turn by turn, the text of messages[0..k) is a prefix of that of
 * messages[0..n) for k < n except where the family moves text (Mistral v3: the system message
 * goes to the last user turn). */
sl_status sl_chat_apply(sl_chat_template tmpl, const sl_chat_message *messages, int32_t n, bool add_assistant,
                        char **out, size_t *out_len, sl_error *err);

/* One user message (and an optional system message, may be NULL) in the vocabulary's template
 * with the assistant header: sl_chat_apply on [system,] user. */
sl_status sl_chat_format(const sl_vocab *vocab, const char *system, const char *user, size_t user_len, char **out,
                         size_t *out_len, sl_error *err);

/* ---------------------------------------------------------------------------------------------
 * Sampling (src/text/sampler.c)
 * ------------------------------------------------------------------------------------------- */

/* Picks the next token from a row of logits. A sampler is a chain of steps applied in order to
 * the candidate list — repetition penalty, top-k, top-p, min-p, temperature (the order llama.cpp
 * uses) — then a final pick: the most likely token (temperature <= 0) or a random draw from the
 * softmax of what is left, with the sampler's own seeded generator: the same seed and the same
 * logits give the same tokens. One sampler per sequence; not thread-safe. */
typedef struct sl_sampler sl_sampler;

typedef struct sl_sampler_params {
    float temperature;     /* divide logits by this; <= 0: greedy (argmax after the penalty) */
    int32_t top_k;         /* keep the k most likely tokens; <= 0: off */
    float top_p;           /* keep the fewest most likely tokens whose probability adds up to >= top_p; >= 1: off */
    float min_p;           /* drop tokens less likely than min_p times the most likely one; <= 0: off */
    float repeat_penalty;  /* recent tokens: positive logits divided by it, negative multiplied; 1: off */
    int32_t repeat_last_n; /* how many of the most recent accepted tokens the penalty covers; 0: off */
    uint64_t seed;         /* random generator seed */
} sl_sampler_params;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0
 * (off), repeat_last_n 64, seed 0. */
sl_sampler_params sl_sampler_default_params(void);
/* Check the parameters (finite numbers, top_p/min_p in [0, 1], repeat_penalty > 0, sizes >= 0).
 * Returns false and fills *err naming the bad field. */
bool sl_sampler_params_check(const sl_sampler_params *params, sl_error *err);
/* Create a sampler; NULL when the parameters fail sl_sampler_params_check or memory runs out. */
sl_sampler *sl_sampler_init(const sl_sampler_params *params);
/* Choose a token from logits[0..n_vocab). NaN logits count as -inf. Returns the token id, or -1
 * when logits is NULL, n_vocab <= 0, every logit is -inf/NaN, or memory runs out. The token is
 * not recorded: call sl_sampler_accept with the token actually used. */
int32_t sl_sampler_sample(sl_sampler *s, const float *logits, int32_t n_vocab);
/* Record a token that became part of the sequence (prompt tokens too), for the repetition penalty. */
void sl_sampler_accept(sl_sampler *s, int32_t token);
/* Forget the history and restart the random generator from the seed. */
void sl_sampler_reset(sl_sampler *s);
void sl_sampler_free(sl_sampler *s);

/* Extending the chain: a step sees the candidate list and may change logits, reorder, or shrink
 * it (never grow it). Steps added with sl_sampler_add_step run after the built-in ones, before
 * the final pick. */
typedef struct sl_token_prob {
    int32_t id;  /* token id */
    float logit; /* current (possibly modified) logit */
    float p;     /* probability, valid only where a step says so (after top-p / at the final pick) */
} sl_token_prob;

typedef struct sl_candidates {
    sl_token_prob *data; /* the candidates */
    int32_t size;        /* how many; a step may lower it (keeping at least 1) */
    bool sorted;         /* data is sorted by logit, highest first (steps that reorder set/clear it) */
} sl_candidates;

typedef struct sl_sampler_step {
    const char *name;                              /* for messages ("top-k") */
    void (*apply)(void *state, sl_candidates *c);  /* required */
    void (*accept)(void *state, int32_t token);    /* may be NULL */
    void (*reset)(void *state);                    /* may be NULL */
    void (*free_state)(void *state);               /* may be NULL; called by sl_sampler_free */
    void *state;                                   /* passed to the functions above */
} sl_sampler_step;

/* Append a step (copied; the sampler owns step->state from now on). SL_ERR_INVALID_ARG when
 * apply is NULL; SL_ERR_NOMEM. */
sl_status sl_sampler_add_step(sl_sampler *s, const sl_sampler_step *step, sl_error *err);

/* ---------------------------------------------------------------------------------------------
 * Model generation and type conversion (src/tools/synth.c, src/tools/convert.c)
 * ------------------------------------------------------------------------------------------- */

/* Shape and options of a synthetic llama model with random weights (for benchmarks and tests:
 * no real weights can be downloaded everywhere). Matrices are drawn ~N(0, 1/sqrt(fan_in)),
 * embeddings ~N(0, 1/sqrt(n_embd)), norms close to 1, so activations stay finite. */
typedef struct sl_synth_params {
    char name[64];          /* general.name */
    int32_t n_vocab;        /* vocabulary size (>= 259: 3 specials + 256 byte tokens) */
    int32_t n_embd;         /* model width */
    int32_t n_ff;           /* MLP width */
    int32_t n_layer;        /* transformer blocks */
    int32_t n_head;         /* query heads (n_embd divisible by it) */
    int32_t n_head_kv;      /* key/value heads (divides n_head) */
    int32_t n_rot;          /* rotary dims per head; 0 = head_dim */
    int32_t n_ctx;          /* llama.context_length written to the metadata */
    float rms_eps;          /* RMSNorm epsilon */
    float rope_freq_base;   /* RoPE theta */
    bool tied_embeddings;   /* no output.weight: the output projection reuses token_embd */
    bool rope_freqs;        /* write rope_freqs.weight (Llama 3.1-style frequency factors) */
    sl_activation act;      /* SILU or RELU (RELU adds the key skipllama.activation = "relu") */
    sl_type type;           /* type of every 2-D weight (token_embd included); 1-D stay F32 */
    uint64_t seed;          /* same seed + shape + type = same bytes, at any n_threads */
    int32_t n_threads;      /* generation threads; 0 = 1 */
    /* Other architectures (the tensors and keys each needs follow from its row of the
     * architecture table; the keys below are written only when set): */
    char arch[16];          /* general.architecture: "llama" (also when empty), "qwen2", "qwen3", "phi3",
                               "gemma2", "gemma3" */
    int32_t head_dim;       /* attention.key_length / value_length; 0 = n_embd / n_head (keys not written) */
    bool qkv_bias;          /* q/k/v biases (Qwen2's) */
    int32_t n_swa;          /* attention.sliding_window; 0 = not written */
    int32_t swa_pattern;    /* attention.sliding_window_pattern (0 = every layer windowed); -1 = not written */
    float attn_softcap;     /* attn_logit_softcapping; 0 = not written */
    float final_softcap;    /* final_logit_softcapping; 0 = not written */
    float rope_freq_base_swa; /* rope.freq_base_swa; 0 = not written */
    char rope_scaling[12];  /* rope.scaling.type ("none", "linear", "yarn", "longrope"); "" = not written */
    float rope_scaling_factor; /* rope.scaling.factor; 0 = not written */
    int32_t rope_orig_ctx;  /* rope.scaling.original_context_length; 0 = not written */
    float rope_attn_factor; /* rope.scaling.attn_factor; 0 = not written */
    bool longrope;          /* rope_factors_long / rope_factors_short tensors (Phi-3's LongRoPE) */
    /* progress(ud, bytes_done, bytes_total) of tensor data, after every chunk written; may be NULL */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;      /* passed to progress */
} sl_synth_params;

/* The "tiny" preset in F32, seed 1, 1 thread, llama. */
sl_synth_params sl_synth_default_params(void);
/* Set the shape fields (name, sizes, eps, rope, tied, rope_freqs, arch, head_dim, qkv_bias) of a
 * named preset: "tiny", "tinyllama-1.1b", "llama-3.2-1b", "llama-2-7b", "qwen2.5-0.5b"; other fields
 * are left alone. False if unknown. */
bool sl_synth_preset(const char *name, sl_synth_params *params);
/* Name of preset i (0, 1, ...), NULL past the last: for listing them. */
const char *sl_synth_preset_name(int i);
/* Elements of all tensors of the model `params` describes, or -1 when the shape is invalid. */
int64_t sl_synth_n_params(const sl_synth_params *params);
/* What writing the model takes: *file_bytes (the file's size, metadata estimated to within a few
 * KiB) and *memory_bytes (working memory while writing), for checks before a long write.
 * SL_ERR_INVALID_ARG when the shape is invalid. */
sl_status sl_synth_estimate(const sl_synth_params *params, int64_t *file_bytes, int64_t *memory_bytes, sl_error *err);
/* Write the model as a GGUF of its architecture (with a minimal SentencePiece vocabulary) to path, streaming
 * tensor by tensor in bounded memory, through sl_output (a regular file appears complete or not at all). */
sl_status sl_synth_write(const sl_synth_params *params, const char *path, sl_error *err);

/* llama.cpp's LLAMA_FTYPE for a file whose weights are `type` (F32 0, F16 1, Q4_0 2, Q8_0 7,
 * BF16 32, ...; a K-quant gives its _M mix), or -1 for unsupported types. */
int32_t sl_type_to_ftype(sl_type type);
/* llama.cpp's name of a file type ("Q4_K - Medium"), or NULL when unknown. */
const char *sl_ftype_name(int32_t ftype);
/* Encode n f32 values as `type` (ggml's reference rounding; the block layouts llama.cpp reads).
 * Returns bytes written, or 0 when the type is unknown or n is not a multiple of its block. */
size_t sl_convert_from_f32(sl_type type, const float *src, void *dst, int64_t n);
/* Decode n elements of `type` to f32. False when the type is unknown or n is not a multiple
 * of its block. */
bool sl_convert_to_f32(sl_type type, const void *src, float *dst, int64_t n);

/* Write a copy of the GGUF at in_path with every 2-D tensor re-encoded as `type` (via f32),
 * 1-D tensors as F32, all metadata copied and general.file_type set to sl_type_to_ftype(type).
 * A 2-D tensor whose rows are not a multiple of the block size falls back to F16 (as llama.cpp
 * does). Streams with bounded memory; n_threads (0 = 1) share the encoding work. */
sl_status sl_model_quantize(const char *in_path, const char *out_path, sl_type type, int32_t n_threads,
                            sl_error *err);
/* The same for a llama.cpp file type (LLAMA_FTYPE: 15 = Q4_K_M, ...; sl_ftype_from_name), with
 * llama.cpp's per-tensor mixing rules for the _S/_M recipes (attn_v, ffn_down, attn_output and
 * the output projection get more bits by layer) and its fallbacks for rows that do not split
 * into a type's blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0,
 * IQ4_XS -> IQ4_NL, else F16); pure: the default type everywhere (fallbacks only). Every block
 * is encoded as llama.cpp's quantizer does without an importance matrix (the same bytes). */
sl_status sl_model_quantize_ftype(const char *in_path, const char *out_path, int32_t ftype, bool pure, int32_t n_threads,
                                  sl_error *err);
/* The LLAMA_FTYPE of a name: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l
 * q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq4_nl iq4_xs (case-insensitive; q3_k/q4_k/q5_k = _M). */
bool sl_ftype_from_name(const char *name, int32_t *ftype);
/* The same with more settings (new fields get defaults in sl_quantize_default_params). */
typedef struct sl_quantize_params {
    int32_t ftype;     /* llama.cpp file type (sl_ftype_from_name; sl_type_to_ftype of one type) */
    bool pure;         /* the file type's default type everywhere (no per-tensor mixing) */
    int32_t n_threads; /* encoding threads (0 = 1) */
    /* progress(ud, bytes_done, bytes_total) of tensor data written, after every chunk; may be NULL */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud; /* passed to progress */
} sl_quantize_params;
sl_quantize_params sl_quantize_default_params(void); /* Q8_0 file type, not pure, 1 thread, no progress */
sl_status sl_model_quantize_ex(const char *in_path, const char *out_path, const sl_quantize_params *params, sl_error *err);

/* Write a model — a GGUF file or a Hugging Face folder (config.json, safetensors, tokenizer) — as
 * a GGUF file llama.cpp reads: llama.cpp's tensor names and metadata (as its
 * convert_hf_to_gguf.py writes them: LLaMA q/k rows permuted to its RoPE pairs, Gemma norms + 1,
 * RoPE factors as tensors), the tokenizer as tokenizer.ggml.* keys. type: every 2-D tensor as
 * this sl_type, or -1 to keep each tensor's type (F32/F16/BF16); 1-D tensors are F32. Streams
 * with bounded memory; n_threads (0 = 1) share the encoding. */
sl_status sl_model_convert(const char *in_path, const char *out_path, int type, int32_t n_threads, sl_error *err);

/* Bytes of weights read from memory to decode one token: every layer matrix plus the output
 * projection (token_embd only when tied, since otherwise one row is read). For the effective
 * bandwidth of generation = this × tokens/s. */
int64_t sl_model_decode_bytes(const sl_model *model);

/* ---------------------------------------------------------------------------------------------
 * Output files (src/util/output.c): how the library writes every file it is given a path for
 * (models, profiles), for callers to use as well.
 * ------------------------------------------------------------------------------------------- */

/* A file being written. A missing or regular target is written to a temporary file made with
 * mkstemp beside it ("TARGET.XXXXXX.tmp") and renamed over it by sl_output_commit, so the target
 * is either the old file or the complete new one; character devices and FIFOs (/dev/null, a
 * named pipe) are written in place; directories, block devices and sockets are refused
 * (SL_ERR_INVALID_ARG). A symbolic link is followed: its target is written and the link stays. */
typedef struct sl_output sl_output;

sl_output *sl_output_open(const char *path, sl_error *err);
/* Where to write (owned by out). */
FILE *sl_output_stream(sl_output *out);
/* The file finally written: path with symbolic links resolved. */
const char *sl_output_target(const sl_output *out);
/* True when written in place (a device or FIFO): no temporary, no rename. */
bool sl_output_in_place(const sl_output *out);
/* Flush, close and rename into place; on any error the temporary is removed and the target left
 * as it was. Frees out in every case. */
sl_status sl_output_commit(sl_output *out, sl_error *err);
/* Give up: close and remove the temporary. Frees out. */
void sl_output_abort(sl_output *out);
/* Remove the temporary files of every write in progress in this process. Async-signal-safe: for
 * a SIGINT/SIGTERM handler, which should then end the process (the writes cannot go on). */
void sl_output_remove_temporaries(void);

/* The sparse half of the API: the sparse MLP operator, sparsity profiles and the skip model,
 * predictor training. */
#include "skipllama_sparse.h"
/* The HTTP server (src/server/): sl_server. */
#include "skipllama_server.h"

#ifdef __cplusplus
}
#endif

#endif /* SKIPLLAMA_H */
