/*
 * http.c — sl_server: the HTTP side, on libmicrohttpd with a thread per connection.
 *
 * Each request is read into a buffer capped at max_body (413 beyond; a body announced larger than
 * 64 x the cap is refused without reading it), checked for the API key (constant-time compare)
 * unless it is /health or the page, routed, and answered. Generation requests are parsed and
 * tokenized on the connection's thread, checked against the slot context (400
 * context_length_exceeded), and handed to the engine as a task (503 with Retry-After when the
 * queue is full). A non-streamed answer waits for the task; a streamed one is a chunked response
 * whose reader sends each new piece of text as an SSE chunk and ends with "data: [DONE]". While
 * waiting, the connection's socket is polled: a client that hung up cancels its task, which frees
 * its slot at the engine's next step. What it is not: the decoding (engine.c) or the JSON shapes
 * (respond.c).
 */
#include "server/server.h"

#include "util/util.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY ((int64_t)1 << 20)
#define WAIT_SLICE_MS 50 /* how often a waiting connection looks at its socket */

struct sl_server {
    const sl_model *model;
    const sl_vocab *vocab;
    const sl_model_config *cfg;
    sl_server_params p;
    char host[64];
    char *api_key;
    char *model_name;
    sl_chat_template chat_tmpl; /* how chat messages are laid out */
    srv_engine *engine;
    struct MHD_Daemon *daemon;
    srv_counters ctr;
    atomic_int in_flight;  /* requests between their first byte and their completion */
    atomic_bool draining;  /* refuse new generations */
    atomic_bool stopping;  /* refuse everything but the page and /health */
    atomic_ullong next_id; /* response ids */
    int32_t port;
    int64_t t_start_ns;
};

/* one request's state (MHD's con_cls) */
typedef struct conn {
    sl_server *srv;
    strbuf body;
    bool too_large;
    int status;        /* status answered (for the log) */
    double t0;
    char method[8];
    char url[96];
    bool streaming;    /* the answer is a stream */
    const char *allow; /* methods of the endpoint (for 405) */
} conn;

/* a streamed answer's state (the reader's cls) */
typedef struct stream {
    sl_server *srv;
    srv_task *task;
    srv_resp_ctx rc;
    int fd;            /* the client's socket, polled for a hang-up */
    bool first;        /* the opening chunk is still to be sent */
    bool include_usage;
    size_t sent_text;  /* bytes of task->text sent */
    int32_t sent_toks; /* tokens whose logprobs were sent */
    char *echo;        /* completions with echo: the prompt, sent first */
    size_t echo_len;
    bool ended;        /* [DONE] is in out */
    strbuf out;        /* bytes produced, not yet handed to MHD */
    size_t out_pos;
} stream;

static void srv_log(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void srv_log(sl_server *s, const char *fmt, ...) {
    if (!s->p.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->p.log(s->p.log_ud, line);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    sl_server *s = cls;
    if (!s->p.log) return;
    char line[512] = "libmicrohttpd: ";
    vsnprintf(line + strlen(line), sizeof line - strlen(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    s->p.log(s->p.log_ud, line);
}

/* ---- answering ------------------------------------------------------------------------------ */

static void count_status(sl_server *s, int status) {
    atomic_fetch_add(&s->ctr.requests, 1);
    if (status >= 500) atomic_fetch_add(&s->ctr.errors_5xx, 1);
    else if (status >= 400) atomic_fetch_add(&s->ctr.errors_4xx, 1);
}

/* Queue body (malloc'd, taken) with status and content type. */
static enum MHD_Result reply(struct MHD_Connection *c, conn *k, int status, const char *ctype, char *body, size_t len) {
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
        len = strlen(body);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (status == 405 && k->allow) MHD_add_response_header(r, "Allow", k->allow);
    k->status = status;
    count_status(k->srv, status);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, conn *k, int status, char *json) {
    return reply(c, k, status, "application/json", json, json ? strlen(json) : 0);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, conn *k, const srv_error *e) {
    return reply_json(c, k, e->status, srv_error_json(e));
}

static enum MHD_Result fail(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code, const char *param,
                            const char *msg) {
    srv_error e;
    srv_fail(&e, status, type, code, param, "%s", msg);
    return reply_error(c, k, &e);
}

static char *dumps(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* ---- the client's socket ---------------------------------------------------------------------- */

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Has the peer closed its end (or the socket failed)? */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd pf = {fd, POLLRDHUP, 0};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Wait up to WAIT_SLICE_MS on the task's condition (t->mu held). */
static void wait_slice(srv_task *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

/* ---- streaming ------------------------------------------------------------------------------ */

/* Produce the next SSE bytes into st->out (t->mu held); false when out of memory. */
static bool stream_produce(stream *st) {
    srv_task *t = st->task;
    if (st->first) {
        st->first = false;
        if (st->rc.chat) {
            if (!srv_stream_chunk(&st->out, &st->rc, t, "", 0, 0, 0, SRV_FINISH_NONE, true)) return false;
        } else if (st->echo_len) {
            if (!srv_stream_chunk(&st->out, &st->rc, t, st->echo, st->echo_len, 0, 0, SRV_FINISH_NONE, false)) return false;
        }
    }
    if (t->n_ready > st->sent_text || t->n_toks_ready > st->sent_toks) {
        if (!srv_stream_chunk(&st->out, &st->rc, t, t->text.data + st->sent_text, t->n_ready - st->sent_text, st->sent_toks,
                              t->n_toks_ready, SRV_FINISH_NONE, false))
            return false;
        st->sent_text = t->n_ready;
        st->sent_toks = t->n_toks_ready;
    }
    if (t->finish == SRV_FINISH_NONE) return true;
    if (t->finish == SRV_FINISH_STOP || t->finish == SRV_FINISH_LENGTH) {
        if (!srv_stream_chunk(&st->out, &st->rc, t, "", 0, 0, 0, t->finish, false)) return false;
        if (st->include_usage && !srv_stream_usage(&st->out, &st->rc, t)) return false;
    } else {
        srv_error e;
        srv_fail(&e, t->finish == SRV_FINISH_CANCELLED ? 503 : 500, "server_error", NULL, NULL, "%s",
                 t->err[0] ? t->err : "generation failed");
        char *j = srv_error_json(&e);
        bool ok = j && sb_str(&st->out, "data: ") && sb_str(&st->out, j) && sb_str(&st->out, "\n\n");
        free(j);
        if (!ok) return false;
    }
    st->ended = true;
    return sb_str(&st->out, "data: [DONE]\n\n");
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    if (st->out_pos == st->out.n) {
        st->out.n = st->out_pos = 0;
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        srv_task *t = st->task;
        pthread_mutex_lock(&t->mu);
        bool ok = true;
        for (;;) {
            if (!(ok = stream_produce(st)) || st->out.n > 0) break;
            if (client_gone(st->fd)) {
                ok = false;
                break;
            }
            wait_slice(t);
        }
        pthread_mutex_unlock(&t->mu);
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR; /* the free callback cancels the task */
    }
    size_t n = st->out.n - st->out_pos < max ? st->out.n - st->out_pos : max;
    memcpy(buf, st->out.data + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->ended || st->out_pos < st->out.n) { /* the client left early */
        atomic_store(&st->task->cancelled, true);
        atomic_fetch_add(&st->srv->ctr.disconnects, 1);
    }
    srv_task_unref(st->task);
    free(st->echo);
    free(st->out.data);
    free(st);
}

/* ---- generation requests ---------------------------------------------------------------------- */

static void resp_ctx_init(sl_server *s, srv_resp_ctx *rc, bool chat) {
    rc->vocab = s->vocab;
    rc->model = s->model_name;
    rc->chat = chat;
    rc->created = (int64_t)time(NULL);
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    snprintf(rc->id, sizeof rc->id, "%s-%012llx%08llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)s->t_start_ns & 0xffffffffffffULL, n);
}

static enum MHD_Result handle_generate(struct MHD_Connection *c, conn *k, srv_endpoint ep) {
    sl_server *s = k->srv;
    srv_request req;
    srv_error e;
    if (!srv_request_parse(ep, k->body.data ? k->body.data : "", k->body.n, s->cfg->n_vocab, &req, &e)) return reply_error(c, k, &e);
    enum MHD_Result ret;
    int32_t *ids = NULL, n_ids = 0;
    char *text = NULL;
    size_t text_len = 0;
    sl_error err;
    srv_task *t = NULL;
    const bool chat = ep == SRV_EP_CHAT;
    /* the prompt's tokens */
    if (chat) {
        if (!srv_chat_prompt(s->chat_tmpl, req.messages, req.n_messages, &text, &text_len, &e)) {
            ret = reply_error(c, k, &e);
            goto done;
        }
        if (sl_tokenize(s->vocab, text, text_len, true, true, &ids, &n_ids, &err) != SL_OK) goto tok_fail;
    } else if (req.prompt_ids) {
        ids = req.prompt_ids, n_ids = req.n_prompt_ids;
        req.prompt_ids = NULL;
    } else if (sl_tokenize(s->vocab, req.prompt, req.prompt_len, true, true, &ids, &n_ids, &err) != SL_OK) {
        goto tok_fail;
    }
    if (n_ids == 0) {
        ret = fail(c, k, 400, "invalid_request_error", NULL, chat ? "messages" : "prompt", "the prompt is empty");
        goto done;
    }
    const int32_t n_ctx = s->p.n_ctx;
    if (n_ids >= n_ctx || (req.max_tokens_set && (int64_t)n_ids + req.max_tokens > n_ctx)) {
        srv_fail(&e, 400, "invalid_request_error", "context_length_exceeded", chat ? "messages" : "prompt",
                 "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in the %s, %d for the "
                 "completion). Please reduce the length of the %s or the completion.",
                 n_ctx, (long long)n_ids + (req.max_tokens_set ? req.max_tokens : 1), n_ids, chat ? "messages" : "prompt",
                 req.max_tokens_set ? req.max_tokens : 1, chat ? "messages" : "prompt");
        ret = reply_error(c, k, &e);
        goto done;
    }
    if (!req.seed_set) req.sampling.seed = (uint64_t)sl_time_s() * 1000003u ^ atomic_fetch_add(&s->next_id, 1) * 0x9E3779B97F4A7C15ULL;
    if (!(t = srv_task_new(&req, ids, n_ids))) {
        ret = fail(c, k, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    if (atomic_load(&s->draining)) {
        ret = fail(c, k, 503, "server_error", "server_shutting_down", NULL, "the server is shutting down");
        goto done;
    }
    srv_submit sub = srv_engine_submit(s->engine, t);
    if (sub != SRV_SUBMIT_OK) {
        if (sub == SRV_SUBMIT_FULL) atomic_fetch_add(&s->ctr.rejected_busy, 1);
        ret = fail(c, k, 503, "server_error", sub == SRV_SUBMIT_FULL ? "server_overloaded" : "server_shutting_down", NULL,
                   sub == SRV_SUBMIT_FULL ? "all slots are busy and the queue is full; retry later" : "the server is shutting down");
        goto done;
    }
    atomic_fetch_add(chat ? &s->ctr.chats : &s->ctr.completions, 1);
    const char *echo = !chat && req.echo ? req.prompt : NULL;
    size_t echo_len = echo ? req.prompt_len : 0;
    if (!chat && req.echo && !req.prompt) { /* prompt given as ids: echo their text */
        echo = text = NULL;
        sl_detokenize(s->vocab, ids, n_ids, false, false, &text, &text_len, NULL);
        echo = text, echo_len = text ? text_len : 0;
    }
    const int fd = conn_fd(c);
    if (req.stream) {
        stream *st = calloc(1, sizeof(*st));
        struct MHD_Response *r = NULL;
        if (st) {
            st->srv = s;
            st->task = t;
            st->fd = fd;
            st->first = true;
            st->include_usage = req.include_usage;
            resp_ctx_init(s, &st->rc, chat);
            if (echo_len && (st->echo = malloc(echo_len))) memcpy(st->echo, echo, echo_len), st->echo_len = echo_len;
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, st, stream_free);
        }
        if (!r) {
            atomic_store(&t->cancelled, true);
            if (st) free(st->echo);
            free(st);
            ret = fail(c, k, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
        t = NULL; /* the stream holds the reference now */
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        k->status = 200;
        k->streaming = true;
        count_status(s, 200);
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        goto done;
    }
    /* wait for the whole answer, watching the client */
    pthread_mutex_lock(&t->mu);
    while (t->finish == SRV_FINISH_NONE) {
        if (client_gone(fd)) {
            pthread_mutex_unlock(&t->mu);
            atomic_store(&t->cancelled, true);
            atomic_fetch_add(&s->ctr.disconnects, 1);
            k->status = 499; /* nginx's "client closed request", for the log only */
            ret = MHD_NO;
            goto done;
        }
        wait_slice(t);
    }
    pthread_mutex_unlock(&t->mu);
    if (t->finish == SRV_FINISH_STOP || t->finish == SRV_FINISH_LENGTH) {
        srv_resp_ctx rc;
        resp_ctx_init(s, &rc, chat);
        ret = reply_json(c, k, 200, srv_completion_json(&rc, t, echo, echo_len));
    } else {
        ret = fail(c, k, t->finish == SRV_FINISH_CANCELLED ? 503 : 500, "server_error", NULL, NULL, t->err[0] ? t->err : "generation failed");
    }
    goto done;
tok_fail:
    ret = fail(c, k, 400, "invalid_request_error", NULL, chat ? "messages" : "prompt", err.message);
done:
    srv_task_unref(t);
    sl_free_tokens(ids);
    free(text);
    srv_request_free(&req);
    return ret;
}

/* ---- other endpoints -------------------------------------------------------------------------- */

static enum MHD_Result handle_tokenize(struct MHD_Connection *c, conn *k, bool detok) {
    sl_server *s = k->srv;
    srv_request req;
    srv_error e;
    if (!srv_request_parse(detok ? SRV_EP_DETOKENIZE : SRV_EP_TOKENIZE, k->body.data ? k->body.data : "", k->body.n, s->cfg->n_vocab, &req, &e))
        return reply_error(c, k, &e);
    sl_error err;
    json_t *o = NULL;
    if (detok) {
        char *text = NULL;
        size_t len = 0;
        if (sl_detokenize(s->vocab, req.tokens, req.n_tokens, false, false, &text, &len, &err) == SL_OK) {
            strbuf b = {0};
            if (sb_reserve(&b, len) && srv_utf8_append(&b, text, len)) o = json_pack("{s:s%}", "content", b.data, b.n);
            free(b.data);
        }
        sl_free_text(text);
    } else {
        int32_t *ids = NULL, n = 0;
        if (sl_tokenize(s->vocab, req.content, req.content_len, req.add_special, true, &ids, &n, &err) == SL_OK) {
            json_t *a = json_array();
            for (int32_t i = 0; i < n && a; i++) {
                if (!req.with_pieces) {
                    json_array_append_new(a, json_integer(ids[i]));
                    continue;
                }
                size_t pl;
                const char *p = sl_token_to_piece(s->vocab, ids[i], true, &pl);
                strbuf b = {0};
                if (sb_reserve(&b, pl) && srv_utf8_append(&b, p ? p : "", p ? pl : 0))
                    json_array_append_new(a, json_pack("{s:i,s:s%}", "id", ids[i], "piece", b.data, b.n));
                free(b.data);
            }
            o = json_pack("{s:o}", "tokens", a);
        }
        sl_free_tokens(ids);
    }
    srv_request_free(&req);
    return reply_json(c, k, 200, dumps(o));
}

static enum MHD_Result handle_models(struct MHD_Connection *c, conn *k, const char *one) {
    sl_server *s = k->srv;
    json_t *m = json_pack("{s:s,s:s,s:I,s:s}", "id", s->model_name, "object", "model", "created", (json_int_t)(s->t_start_ns / 1000000000LL),
                          "owned_by", "skipllama");
    if (one) {
        if (strcmp(one, s->model_name)) {
            json_decref(m);
            char msg[200];
            snprintf(msg, sizeof msg, "The model '%.100s' does not exist", one);
            return fail(c, k, 404, "invalid_request_error", "model_not_found", "model", msg);
        }
        return reply_json(c, k, 200, dumps(m));
    }
    return reply_json(c, k, 200, dumps(json_pack("{s:s,s:[o]}", "object", "list", "data", m)));
}

static enum MHD_Result handle_props(struct MHD_Connection *c, conn *k, bool post) {
    sl_server *s = k->srv;
    if (post) {
        srv_request req;
        srv_error e;
        if (!srv_request_parse(SRV_EP_PROPS, k->body.data ? k->body.data : "", k->body.n, s->cfg->n_vocab, &req, &e)) return reply_error(c, k, &e);
        sl_error err;
        if (req.sparsity >= 0.0f && srv_engine_set_sparsity(s->engine, req.sparsity, &err) != SL_OK)
            return fail(c, k, 400, "invalid_request_error", NULL, "sparsity", err.message);
        if (req.batch_select >= 0 && srv_engine_set_batch_select(s->engine, (sl_batch_select)req.batch_select, &err) != SL_OK)
            return fail(c, k, 400, "invalid_request_error", NULL, "batch_select", err.message);
    }
    srv_stats st;
    srv_engine_stats(s->engine, &st);
    return reply_json(c, k, 200, srv_props_json(&st, s->model_name, s->cfg, s->api_key != NULL, s->p.profile != NULL));
}

/* ---- routing ---------------------------------------------------------------------------------- */

/* header == "Bearer " + key, in time that depends only on the key's length */
static bool key_ok(const sl_server *s, const char *header) {
    static const char prefix[] = "Bearer ";
    const size_t np = sizeof prefix - 1, nk = strlen(s->api_key), nh = header ? strlen(header) : 0;
    unsigned char d = (unsigned char)(nh != np + nk);
    for (size_t i = 0; i < np + nk; i++) {
        const unsigned char want = (unsigned char)(i < np ? prefix[i] : s->api_key[i - np]);
        d |= want ^ (unsigned char)(nh ? header[i % nh] : 0);
    }
    return d == 0;
}

static enum MHD_Result route(struct MHD_Connection *c, conn *k, const char *url, const char *method) {
    sl_server *s = k->srv;
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (k->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %lld bytes", (long long)s->p.max_body);
        return fail(c, k, 413, "invalid_request_error", "request_too_large", NULL, msg);
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        k->allow = "GET";
        if (!get) return fail(c, k, 405, "invalid_request_error", NULL, NULL, "use GET");
        size_t len;
        const char *page = srv_page(&len);
        char *copy = malloc(len);
        if (copy) memcpy(copy, page, len);
        return reply(c, k, 200, "text/html; charset=utf-8", copy, len);
    }
    if (!strcmp(url, "/health")) {
        k->allow = "GET";
        if (!get) return fail(c, k, 405, "invalid_request_error", NULL, NULL, "use GET");
        bool down = atomic_load(&s->draining);
        return reply_json(c, k, down ? 503 : 200, strdup(down ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
    }
    if (s->api_key) {
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!key_ok(s, h))
            return fail(c, k, 401, "invalid_request_error", "invalid_api_key", NULL,
                        h ? "Incorrect API key provided." : "You didn't provide an API key: send 'Authorization: Bearer KEY'.");
    }
    struct { const char *path; bool get, post; } known[] = {
        {"/v1/models", 1, 0}, {"/models", 1, 0},  {"/v1/completions", 0, 1}, {"/completions", 0, 1}, {"/v1/chat/completions", 0, 1},
        {"/chat/completions", 0, 1}, {"/tokenize", 0, 1}, {"/detokenize", 0, 1}, {"/metrics", 1, 0}, {"/props", 1, 1},
    };
    int which = -1;
    for (int i = 0; i < (int)(sizeof known / sizeof known[0]); i++)
        if (!strcmp(url, known[i].path)) which = i;
    if (which < 0 && !strncmp(url, "/v1/models/", 11) && get) return handle_models(c, k, url + 11);
    if (which < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "no endpoint %.100s", url);
        return fail(c, k, 404, "invalid_request_error", "not_found", NULL, msg);
    }
    k->allow = known[which].get && known[which].post ? "GET, POST" : known[which].get ? "GET" : "POST";
    if ((get && !known[which].get) || (post && !known[which].post) || (!get && !post))
        return fail(c, k, 405, "invalid_request_error", "method_not_allowed", NULL, known[which].post && !known[which].get ? "use POST" : "use GET");
    if (atomic_load(&s->stopping) && post) return fail(c, k, 503, "server_error", "server_shutting_down", NULL, "the server is stopping");
    const char *p = known[which].path;
    if (!strcmp(p, "/v1/models") || !strcmp(p, "/models")) return handle_models(c, k, NULL);
    if (strstr(p, "chat/completions")) return handle_generate(c, k, SRV_EP_CHAT);
    if (strstr(p, "completions")) return handle_generate(c, k, SRV_EP_COMPLETIONS);
    if (!strcmp(p, "/tokenize")) return handle_tokenize(c, k, false);
    if (!strcmp(p, "/detokenize")) return handle_tokenize(c, k, true);
    if (!strcmp(p, "/props")) return handle_props(c, k, post);
    srv_stats st;
    srv_engine_stats(s->engine, &st);
    char *text = srv_metrics_text(&s->ctr, &st);
    return reply(c, k, 200, "text/plain; version=0.0.4; charset=utf-8", text, text ? strlen(text) : 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    sl_server *s = cls;
    conn *k = *con_cls;
    if (!k) {
        if (!(k = calloc(1, sizeof(*k)))) return MHD_NO;
        k->srv = s;
        k->t0 = sl_time_s();
        snprintf(k->method, sizeof k->method, "%s", method);
        snprintf(k->url, sizeof k->url, "%s", url);
        *con_cls = k;
        atomic_fetch_add(&s->in_flight, 1);
        /* a body announced far over the limit is refused before it is read */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->p.max_body * 64ULL) {
            k->too_large = true;
            return route(c, k, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!k->too_large && k->body.n + *upload_size > (size_t)s->p.max_body) {
            k->too_large = true;
            free(k->body.data);
            k->body = (strbuf){0};
        }
        if (!k->too_large && !sb_append(&k->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return route(c, k, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    sl_server *s = cls;
    conn *k = *con_cls;
    if (!k) return;
    *con_cls = NULL;
    srv_log(s, "%s %s %d %.1f ms%s", k->method, k->url, k->status, 1e3 * (sl_time_s() - k->t0),
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " (client went away)"
            : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timeout)" : " (cut short: the client left or the server stopped)");
    free(k->body.data);
    free(k);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* ---- public API --------------------------------------------------------------------------------- */

sl_server_params sl_server_default_params(void) {
    sl_server_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

sl_server *sl_server_start(const sl_model *model, const sl_server_params *params, sl_error *err) {
    sl_clear_error(err);
    if (!model || !sl_model_get_vocab(model)) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "server: the model is NULL or has no tokenizer");
        return NULL;
    }
    sl_server_params p = params ? *params : sl_server_default_params();
    const sl_model_config *cfg = sl_model_get_config(model);
    if (p.port < 0 || p.port > 65535 || p.n_parallel < 0 || p.n_parallel > 512 || p.n_ctx < 0 || p.n_threads < 0 || p.n_threads > 512 ||
        p.n_batch < 0 || p.queue_size < 0 || p.timeout_s < 0 || p.max_body < 0) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "server: a parameter is out of range (port 0..65535, n_parallel 0..512, others >= 0)");
        return NULL;
    }
    if (!p.host) p.host = "127.0.0.1";
    if (!p.n_parallel) p.n_parallel = 4;
    if (!p.n_ctx) p.n_ctx = cfg->n_ctx_train > 0 && cfg->n_ctx_train < 4096 ? cfg->n_ctx_train : 4096;
    if (!p.n_threads) p.n_threads = 1;
    if (!p.n_batch) p.n_batch = 64;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (!p.queue_size) p.queue_size = 4 * p.n_parallel;
    if (!p.timeout_s) p.timeout_s = 600;
    if (!p.max_body) p.max_body = DEFAULT_MAX_BODY;
    if (p.n_ctx < 2) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "server: the context must hold at least 2 tokens");
        return NULL;
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    bool v6 = false;
    if (inet_pton(AF_INET, p.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)p.port);
    } else if (inet_pton(AF_INET6, p.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)p.port);
        v6 = true;
    } else {
        sl_set_error(err, SL_ERR_INVALID_ARG, "server: '%.60s' is not an IPv4 or IPv6 address", p.host);
        return NULL;
    }
    sl_server *s = calloc(1, sizeof(*s));
    if (!s) {
        sl_set_error(err, SL_ERR_NOMEM, "server: out of memory");
        return NULL;
    }
    s->model = model;
    s->vocab = sl_model_get_vocab(model);
    s->cfg = cfg;
    s->chat_tmpl = srv_chat_template_of(s->vocab);
    s->p = p;
    snprintf(s->host, sizeof s->host, "%s", p.host);
    s->p.host = s->host;
    s->api_key = p.api_key ? strdup(p.api_key) : NULL;
    s->model_name = strdup(p.model_name ? p.model_name : "skipllama");
    s->p.api_key = s->api_key;
    s->p.model_name = s->model_name;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->t_start_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if ((p.api_key && !s->api_key) || !s->model_name) {
        sl_set_error(err, SL_ERR_NOMEM, "server: out of memory");
        goto fail;
    }
    srv_engine_params ep = {p.n_parallel, p.n_ctx, p.n_threads, p.n_batch, p.queue_size, p.kv_f16, p.sparse_prefill, p.profile};
    if (!(s->engine = srv_engine_init(model, &ep, err))) goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | (v6 ? MHD_USE_IPv6 : 0);
    unsigned limit = (unsigned)(4 * (p.n_parallel + p.queue_size) + 32);
    s->daemon = MHD_start_daemon(flags, (uint16_t)p.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p.timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, MHD_OPTION_END);
    if (!s->daemon) {
        sl_set_error(err, SL_ERR_IO, "server: cannot listen on %s port %d (in use, or not an address of this machine?)", p.host, p.port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p.port;
    srv_log(s, "listening on http://%s%s%s:%d (%d slots x %d tokens, %d threads, %s chat template%s)", v6 ? "[" : "", s->host, v6 ? "]" : "",
            s->port, p.n_parallel, p.n_ctx, p.n_threads, sl_chat_template_name(s->chat_tmpl), s->api_key ? ", API key required" : "");
    return s;
fail:
    sl_server_free(s);
    return NULL;
}

int32_t sl_server_port(const sl_server *s) { return s ? s->port : 0; }

void sl_server_shutdown(sl_server *s) {
    if (!s) return;
    atomic_store(&s->draining, true);
    if (s->engine) srv_engine_drain(s->engine);
}

bool sl_server_wait_idle(sl_server *s, double timeout_s) {
    const double t_end = sl_time_s() + timeout_s;
    for (;;) {
        if (srv_engine_idle(s->engine) && atomic_load(&s->in_flight) == 0) return true;
        if (sl_time_s() >= t_end) return false;
        usleep(10000);
    }
}

void sl_server_free(sl_server *s) {
    if (!s) return;
    atomic_store(&s->draining, true);
    atomic_store(&s->stopping, true);
    if (s->engine) srv_engine_stop(s->engine); /* waiting connections see their tasks cancelled */
    if (s->daemon) MHD_stop_daemon(s->daemon);
    srv_engine_free(s->engine);
    if (s->p.log && s->daemon) srv_log(s, "stopped");
    free(s->api_key);
    free(s->model_name);
    free(s);
}
