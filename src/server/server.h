/*
 * server.h — the server layer's internals (src/server/), shared by its files:
 *   request.c   JSON request bodies -> validated srv_request (every field checked before use)
 *   prompt.c    chat messages -> prompt text (the model's template), UTF-8 repair
 *   respond.c   OpenAI-shaped JSON: completion objects, stream chunks, logprobs, errors
 *   task.c      srv_task: one generation request shared by an HTTP thread and the engine
 *   engine.c    the slots and the decoding thread (continuous batching)
 *   http.c      libmicrohttpd glue: routing, authentication, body limits, SSE streaming
 *   metrics.c   counters, /metrics (Prometheus text), /props
 *   page.c      the chat page served at / (page.html, embedded)
 * What it is not: the public API (include/skipllama_server.h) or the forward pass (model/).
 */
#ifndef SL_SERVER_SERVER_H
#define SL_SERVER_SERVER_H

#include "skipllama.h"
#include "util/strbuf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_MAX_STOP 4          /* stop sequences per request (OpenAI's limit) */
#define SRV_MAX_STOP_LEN 256    /* bytes per stop sequence */
#define SRV_MAX_TOP_LOGPROBS 20 /* chat top_logprobs limit (completions: 5) */
#define SRV_MAX_MESSAGES 4096   /* chat messages per request */
#define SRV_MAX_BIAS 1024       /* logit_bias entries */

/* ---- requests (request.c) ------------------------------------------------------------------ */

typedef enum srv_endpoint {
    SRV_EP_COMPLETIONS, /* POST /v1/completions */
    SRV_EP_CHAT,        /* POST /v1/chat/completions */
    SRV_EP_TOKENIZE,    /* POST /tokenize */
    SRV_EP_DETOKENIZE,  /* POST /detokenize */
    SRV_EP_PROPS,       /* POST /props */
} srv_endpoint;

typedef enum srv_role { SRV_ROLE_SYSTEM, SRV_ROLE_USER, SRV_ROLE_ASSISTANT } srv_role;

typedef struct srv_message {
    srv_role role; /* developer counts as system, tool messages are refused */
    char *content; /* text (parts of type "text" joined), NUL-terminated, may contain no NUL */
    size_t len;    /* bytes */
} srv_message;

/* A request body, parsed and checked: every value is within its documented range. */
typedef struct srv_request {
    srv_endpoint ep;
    char *model;                /* the "model" field (NULL when absent); not checked */
    /* completions: prompt as text, or as token ids (prompt_ids != NULL) */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;
    int32_t n_prompt_ids;
    /* chat */
    srv_message *messages;
    int32_t n_messages;
    /* generation */
    int32_t max_tokens;         /* -1: until the context is full */
    bool max_tokens_set;        /* given by the client (else a default) */
    sl_sampler_params sampling; /* temperature, top_p (OpenAI names) + top_k, min_p, repeat_penalty */
    bool seed_set;              /* "seed" given (else the server draws one) */
    float presence_penalty;     /* -2..2 */
    float frequency_penalty;    /* -2..2 */
    int32_t *bias_ids;          /* logit_bias keys */
    float *bias_vals;           /* logit_bias values, -100..100 */
    int32_t n_bias;
    char *stop[SRV_MAX_STOP];   /* stop sequences */
    size_t stop_len[SRV_MAX_STOP];
    int32_t n_stop;
    bool stream;                /* answer as Server-Sent Events */
    bool include_usage;         /* stream_options.include_usage */
    bool echo;                  /* completions: prepend the prompt to the text */
    int32_t logprobs;           /* -1: none; else how many alternatives per token (0..20) */
    /* tokenize / detokenize */
    char *content;              /* text to tokenize */
    size_t content_len;
    bool add_special;           /* tokenize: add BOS as the model wants */
    bool with_pieces;           /* tokenize: answer {id, piece} objects */
    int32_t *tokens;            /* detokenize: ids (checked against n_vocab) */
    int32_t n_tokens;
    /* props */
    float sparsity;             /* POST /props {"sparsity": S}; < 0 when absent */
    int batch_select;           /* POST /props {"batch_select": "union"|"shared"|"auto"|"dense"}: an sl_batch_select; < 0 when absent */
} srv_request;

/* What was wrong with a request: the HTTP status and the OpenAI error object's fields. */
typedef struct srv_error {
    int status;         /* 400, 401, 404, 405, 413, 503, 500 */
    const char *type;   /* "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code;   /* NULL or e.g. "context_length_exceeded", "invalid_api_key" */
    char param[64];     /* offending field ("" when none) */
    char message[384];  /* human-readable */
} srv_error;

/* Fill *e (status, type, code, param) with a printf-style message; returns false. */
bool srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Parse and validate a JSON body for endpoint ep. n_vocab bounds token ids (logit_bias, ids).
 * On failure returns false with *e filled (status 400) and *out holding nothing to free. */
bool srv_request_parse(srv_endpoint ep, const char *body, size_t len, int32_t n_vocab, srv_request *out, srv_error *e);
void srv_request_free(srv_request *r);

/* ---- prompts (prompt.c) ---------------------------------------------------------------------- */

/* The chat template family of the model (SL_CHAT_CHATML when it has none or an unknown one). */
sl_chat_template srv_chat_template_of(const sl_vocab *vocab);
/* The prompt text of a chat request in template family tmpl (sl_chat_apply), ending with the
 * assistant's header. *out is malloc'd (NUL-terminated); a conversation the family cannot
 * express is a 400 naming "messages". */
bool srv_chat_prompt(sl_chat_template tmpl, const srv_message *msgs, int32_t n, char **out, size_t *out_len, srv_error *e);
/* Append s[0..n) to b with every invalid UTF-8 sequence replaced by U+FFFD (JSON needs valid
 * UTF-8). False when out of memory. */
bool srv_utf8_append(strbuf *b, const char *s, size_t n);
/* Bytes of s[0..n) that form complete UTF-8 characters at the start (the rest may be the start
 * of a character cut by the end of the buffer). */
size_t srv_utf8_complete(const char *s, size_t n);

/* ---- tasks (task.c) ------------------------------------------------------------------------- */

typedef enum srv_finish {
    SRV_FINISH_NONE = 0,  /* still running */
    SRV_FINISH_STOP,      /* end-of-generation token or a stop sequence */
    SRV_FINISH_LENGTH,    /* max_tokens or a full context */
    SRV_FINISH_CANCELLED, /* the client went away, or the server stopped */
    SRV_FINISH_ERROR,     /* decoding failed (message in err) */
} srv_finish;

/* One generated token with its log-probability and the most likely alternatives. */
typedef struct srv_token {
    int32_t id;
    float logprob;
    int32_t n_top;
    int32_t top_id[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
} srv_token;

/* A generation request on its way through the engine. The submitting HTTP thread fills the
 * inputs, then both sides hold a reference; outputs are guarded by mu and announced on cv. */
typedef struct srv_task {
    /* inputs (read-only once submitted) */
    int32_t *prompt;            /* token ids, BOS included */
    int32_t n_prompt;
    int32_t max_tokens;         /* -1: until the context is full */
    sl_sampler_params sampling;
    float presence_penalty, frequency_penalty;
    int32_t *bias_ids;          /* logit bias (owned) */
    float *bias_vals;
    int32_t n_bias;
    char *stop[SRV_MAX_STOP];   /* owned copies */
    size_t stop_len[SRV_MAX_STOP];
    int32_t n_stop;
    int32_t logprobs;           /* -1: none, else top alternatives per token */
    double t_submit;            /* sl_time_s() at submission */

    /* outputs, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    strbuf text;                /* generated text so far (may end in a held-back stop prefix) */
    size_t n_ready;             /* text[0..n_ready) is final and may be sent */
    srv_token *toks;            /* generated tokens (with logprobs when asked) */
    int32_t n_toks, cap_toks;
    int32_t n_toks_ready;       /* toks[0..n_toks_ready) belong to sent text */
    srv_finish finish;
    char err[256];
    int32_t n_cached;           /* prompt tokens reused from the slot's KV cache */
    double t_start, t_first, t_end; /* slot assigned, first token, finished */
    double sparsity_sum;        /* sum over decode steps of the step's MLP sparsity */
    int32_t n_sparsity;         /* decode steps counted in sparsity_sum */
    int32_t slot;               /* slot index while running, -1 before */

    atomic_bool cancelled;      /* set by the HTTP side: stop at the next step */
    atomic_int refs;            /* 2 while both sides hold it */
    struct srv_task *next;      /* engine queue link */
} srv_task;

/* A task for the request's generation fields (prompt given separately, copied). NULL when out of
 * memory. refs starts at 1 (the caller's). */
srv_task *srv_task_new(const srv_request *r, const int32_t *prompt, int32_t n_prompt);
void srv_task_ref(srv_task *t);
void srv_task_unref(srv_task *t);
/* Engine side, mu held by the caller: mark finished and wake the waiter. */
void srv_task_finish_locked(srv_task *t, srv_finish f, const char *msg);

/* ---- the engine (engine.c) ----------------------------------------------------------------- */

typedef struct srv_engine srv_engine;

typedef struct srv_engine_params {
    int32_t n_parallel, n_ctx, n_threads, n_batch, queue_size;
    bool kv_f16, sparse_prefill;
    sl_profile *profile;
} srv_engine_params;

/* Counters for /metrics (a snapshot). */
typedef struct srv_stats {
    int64_t prompt_tokens;      /* prompt tokens evaluated (cache hits not counted) */
    int64_t cached_tokens;      /* prompt tokens reused from a slot's cache */
    int64_t gen_tokens;         /* tokens generated */
    int64_t steps;              /* decoding steps run */
    int64_t step_rows;          /* tokens evaluated by those steps */
    double t_busy;              /* seconds spent in steps */
    double gen_tps;             /* generated tokens/s over the last few seconds */
    double sparsity;            /* MLP sparsity of sparse decode steps, recent average (-1: none) */
    int32_t slots_busy, n_parallel, queued, queue_size, n_ctx;
    float profile_sparsity;     /* the profile's target (-1 without a profile) */
    /* decoding batches on the sparse path (several slots in one step), summed over layers */
    int32_t n_ff;               /* neurons per layer */
    const char *batch_select;   /* the profile's batch selection ("union", "shared", "auto", "dense"), NULL without one */
    int64_t batch_layers;       /* (step, layer) batches */
    int64_t batch_union_own;    /* the union of the slots' own selections, summed */
    int64_t batch_read;         /* neurons read (the union, or the shared set), summed */
    int64_t batch_shared;       /* batches that used one shared set */
    int64_t own_kept, own_total;/* shared batches: own selections' neurons kept / all (own-mask recall) */
} srv_stats;

srv_engine *srv_engine_init(const sl_model *model, const srv_engine_params *p, sl_error *err);
typedef enum srv_submit { SRV_SUBMIT_OK, SRV_SUBMIT_FULL, SRV_SUBMIT_STOPPING } srv_submit;
/* Queue a task (takes a reference when it succeeds). */
srv_submit srv_engine_submit(srv_engine *e, srv_task *t);
/* Refuse new tasks from now on; queued and running ones finish. */
void srv_engine_drain(srv_engine *e);
/* No task queued or running. */
bool srv_engine_idle(srv_engine *e);
/* Ask for a new profile sparsity (applied between steps). SL_ERR_INVALID_ARG without a profile. */
sl_status srv_engine_set_sparsity(srv_engine *e, float sparsity, sl_error *err);
/* Ask for another batch selection (applied between steps). SL_ERR_INVALID_ARG without a profile. */
sl_status srv_engine_set_batch_select(srv_engine *e, sl_batch_select mode, sl_error *err);
void srv_engine_stats(srv_engine *e, srv_stats *out);
/* Cancel everything and stop the thread; later submissions get SRV_SUBMIT_STOPPING. */
void srv_engine_stop(srv_engine *e);
/* Stop (if not yet) and free. */
void srv_engine_free(srv_engine *e);

/* ---- responses (respond.c) ------------------------------------------------------------------ */

/* Response-building context: ids and names that every object of one response shares. */
typedef struct srv_resp_ctx {
    const sl_vocab *vocab;
    const char *model;  /* model id */
    char id[48];        /* "cmpl-..." / "chatcmpl-..." */
    int64_t created;    /* unix seconds */
    bool chat;
} srv_resp_ctx;

/* {"error": {...}} as a malloc'd string. */
char *srv_error_json(const srv_error *e);
/* The complete (non-streamed) response of a finished task; text = echo prefix + generated. */
char *srv_completion_json(const srv_resp_ctx *rc, const srv_task *t, const char *echo, size_t echo_len);
/* One SSE chunk "data: {...}\n\n" appended to out: text delta, the logprobs of toks[t0..t1),
 * finish reason (NONE for an intermediate chunk), role (chat's first chunk). */
bool srv_stream_chunk(strbuf *out, const srv_resp_ctx *rc, const srv_task *t, const char *delta, size_t delta_len,
                      int32_t t0, int32_t t1, srv_finish finish, bool first);
/* The usage-only chunk (stream_options.include_usage). */
bool srv_stream_usage(strbuf *out, const srv_resp_ctx *rc, const srv_task *t);
/* "finish_reason" string ("stop"/"length"), NULL when still running. */
const char *srv_finish_name(srv_finish f);

/* ---- metrics and props (metrics.c) ------------------------------------------------------- */

typedef struct srv_counters {
    atomic_llong requests;      /* HTTP requests answered */
    atomic_llong errors_4xx, errors_5xx;
    atomic_llong rejected_busy; /* 503s for a full queue */
    atomic_llong disconnects;   /* clients gone before their answer */
    atomic_llong completions, chats;
} srv_counters;

char *srv_metrics_text(const srv_counters *c, const srv_stats *s);
char *srv_props_json(const srv_stats *s, const char *model, const sl_model_config *cfg, bool api_key, bool profile);

/* ---- the page (page.c) ------------------------------------------------------------------- */

/* The chat page (HTML with its CSS and JavaScript inline), *len bytes. */
const char *srv_page(size_t *len);

#endif
