/*
 * skipllama_server.h — the HTTP server half of the public API (src/server/), included by
 * skipllama.h.
 *
 * sl_server serves one loaded model over an OpenAI-compatible HTTP API (libmicrohttpd, JSON by
 * jansson): /v1/completions, /v1/chat/completions (streamed as Server-Sent Events on request),
 * /v1/models, /tokenize, /detokenize, /health, /metrics (Prometheus text), /props, and a chat
 * page at /. Requests are decoded in parallel "slots": every active slot advances by one token
 * in one batched step, and a newcomer's prompt is evaluated a chunk per step beside them. The
 * server never prints: it reports through the optional log callback. docs/server.md describes
 * the endpoints, limits and error bodies. What it is not: a process — signals, option parsing
 * and printing belong to the caller (cli/serve.c).
 */
#ifndef SKIPLLAMA_SERVER_H
#define SKIPLLAMA_SERVER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_server sl_server; /* opaque: a running server */

/* One line of the server's log (an access line per request, start and stop notes); no newline. */
typedef void (*sl_server_log_fn)(void *ud, const char *line);

typedef struct sl_server_params {
    const char *host;        /* IPv4 address to bind; NULL = "127.0.0.1" (loopback only) */
    int32_t port;            /* TCP port; 0 = any free port (sl_server_port says which) */
    int32_t n_parallel;      /* slots: sequences decoded together; 0 = 4 */
    int32_t n_ctx;           /* KV cache tokens of each slot; 0 = the model's, at most 4096 */
    int32_t n_threads;       /* worker threads of the decoding steps; 0 = 1 */
    int32_t n_batch;         /* prompt tokens a newcomer evaluates per step (its chunk); 0 = 64 */
    int32_t queue_size;      /* requests that may wait for a slot before 503; 0 = 4 x n_parallel */
    int32_t timeout_s;       /* idle connection timeout in seconds; 0 = 600 */
    int64_t max_body;        /* largest request body in bytes (413 beyond); 0 = 1 MiB */
    const char *api_key;     /* non-NULL: every endpoint but /health and the page needs
                                "Authorization: Bearer <api_key>" (copied) */
    const char *model_name;  /* the model's id in /v1/models and responses; NULL = "skipllama" */
    sl_profile *profile;     /* NULL: dense; else the skip model's profile (borrowed; the server
                                may change its sparsity through /props) */
    bool sparse_prefill;     /* with a profile: skip neurons in prompt chunks too */
    bool kv_f16;             /* store KV caches as f16 */
    sl_server_log_fn log;    /* may be NULL */
    void *log_ud;            /* passed to log */
} sl_server_params;

sl_server_params sl_server_default_params(void);

/* Check the parameters, create the slots (sizes checked before allocating), bind the socket and
 * start serving from background threads. The model (and profile) must outlive the server.
 * NULL + *err on failure (SL_ERR_IO when the address cannot be bound). */
sl_server *sl_server_start(const sl_model *model, const sl_server_params *params, sl_error *err);
/* The TCP port the server listens on. */
int32_t sl_server_port(const sl_server *server);
/* Begin draining: new generation requests get 503 from now on, queued and running ones go on.
 * Thread-safe; returns at once. */
void sl_server_shutdown(sl_server *server);
/* Wait until no request is queued, decoding or being answered, or timeout_s passes; true when
 * idle. */
bool sl_server_wait_idle(sl_server *server, double timeout_s);
/* Stop: requests still running are cancelled, connections closed, threads joined, memory freed. */
void sl_server_free(sl_server *server);

#ifdef __cplusplus
}
#endif

#endif /* SKIPLLAMA_SERVER_H */
