/*
 * respond.c — the JSON the server answers with, shaped as OpenAI's API: completion objects
 * ("text_completion", "chat.completion"), stream chunks ("chat.completion.chunk") as
 * Server-Sent Events, logprobs in both the legacy (completions) and the chat layout, usage
 * counts, and error objects. Every string put into JSON passes srv_utf8_append first (a token's
 * piece can be part of a character). Beyond OpenAI's fields, responses carry llama.cpp-style
 * "timings" (prompt and generation speed, the achieved MLP sparsity) that the chat page shows.
 * What it is not: the request side (request.c) or the transport (http.c).
 */
#include "server/server.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *srv_finish_name(srv_finish f) {
    switch (f) {
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_LENGTH: return "length";
    case SRV_FINISH_CANCELLED: return "cancelled";
    case SRV_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

/* a JSON string of arbitrary bytes (invalid UTF-8 replaced) */
static json_t *jstr(const char *s, size_t n) {
    strbuf b = {0};
    if (!sb_reserve(&b, n) || !srv_utf8_append(&b, s, n)) {
        free(b.data);
        return NULL;
    }
    json_t *v = json_stringn_nocheck(b.data, b.n);
    free(b.data);
    return v;
}

char *srv_error_json(const srv_error *e) {
    json_t *o = json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", jstr(e->message, strlen(e->message)), "type",
                          e->type ? e->type : "server_error", "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                          e->code ? json_string(e->code) : json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static json_t *bytes_array(const char *s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *token_piece(const sl_vocab *v, int32_t id, size_t *len) {
    const char *p = sl_token_to_piece(v, id, true, len);
    return jstr(p ? p : "", p ? *len : 0);
}

/* chat logprobs of toks[t0..t1): {"content": [{token, logprob, bytes, top_logprobs}], "refusal": null} */
static json_t *chat_logprobs(const srv_resp_ctx *rc, const srv_task *t, int32_t t0, int32_t t1) {
    json_t *content = json_array();
    for (int32_t i = t0; i < t1 && content; i++) {
        const srv_token *k = &t->toks[i];
        size_t len;
        const char *p = sl_token_to_piece(rc->vocab, k->id, true, &len);
        json_t *top = json_array();
        for (int32_t j = 0; j < k->n_top && top; j++) {
            size_t tl;
            const char *tp = sl_token_to_piece(rc->vocab, k->top_id[j], true, &tl);
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", jstr(tp ? tp : "", tp ? tl : 0), "logprob",
                                                 (double)k->top_lp[j], "bytes", bytes_array(tp ? tp : "", tp ? tl : 0)));
        }
        json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", jstr(p ? p : "", p ? len : 0), "logprob",
                                                 (double)k->logprob, "bytes", bytes_array(p ? p : "", p ? len : 0), "top_logprobs", top));
    }
    return json_pack("{s:o,s:n}", "content", content, "refusal");
}

/* legacy logprobs of toks[t0..t1): {tokens, token_logprobs, top_logprobs, text_offset} */
static json_t *completion_logprobs(const srv_resp_ctx *rc, const srv_task *t, int32_t t0, int32_t t1, size_t offset0) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = offset0;
    for (int32_t i = t0; i < t1; i++) {
        const srv_token *k = &t->toks[i];
        size_t len = 0;
        json_array_append_new(tokens, token_piece(rc->vocab, k->id, &len));
        json_array_append_new(lps, json_real(k->logprob));
        json_t *top = json_object();
        for (int32_t j = 0; j < k->n_top && top; j++) {
            size_t tl;
            const char *tp = sl_token_to_piece(rc->vocab, k->top_id[j], true, &tl);
            strbuf b = {0};
            if (sb_reserve(&b, tl) && srv_utf8_append(&b, tp ? tp : "", tp ? tl : 0)) json_object_set_new(top, b.data, json_real(k->top_lp[j]));
            free(b.data);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

static json_t *usage_json(const srv_task *t) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", t->n_prompt, "completion_tokens", t->n_toks, "total_tokens",
                     t->n_prompt + t->n_toks, "prompt_tokens_details", "cached_tokens", t->n_cached);
}

/* llama.cpp-style timings (an extension; the page shows them) */
static json_t *timings_json(const srv_task *t) {
    const double prompt_ms = t->t_first > 0 ? 1e3 * (t->t_first - t->t_start) : 0.0;
    const double gen_ms = t->t_first > 0 && t->t_end > t->t_first ? 1e3 * (t->t_end - t->t_first) : 0.0;
    const int32_t n_eval = t->n_prompt - t->n_cached;
    json_t *o = json_pack("{s:i,s:i,s:f,s:f,s:i,s:f,s:f,s:f}", "prompt_n", n_eval, "cache_n", t->n_cached, "prompt_ms", prompt_ms,
                          "prompt_per_second", prompt_ms > 0 ? 1e3 * n_eval / prompt_ms : 0.0, "predicted_n", t->n_toks, "predicted_ms",
                          gen_ms, "predicted_per_second", gen_ms > 0 && t->n_toks > 1 ? 1e3 * (t->n_toks - 1) / gen_ms : 0.0,
                          "queue_ms", t->t_start > 0 ? 1e3 * (t->t_start - t->t_submit) : 0.0);
    if (o) json_object_set_new(o, "sparsity", t->n_sparsity ? json_real(t->sparsity_sum / t->n_sparsity) : json_null());
    return o;
}

static json_t *envelope(const srv_resp_ctx *rc, const char *object) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", rc->id, "object", object, "created", (json_int_t)rc->created, "model", rc->model,
                     "system_fingerprint", "skipllama-" SKIPLLAMA_VERSION);
}

char *srv_completion_json(const srv_resp_ctx *rc, const srv_task *t, const char *echo, size_t echo_len) {
    json_t *o = envelope(rc, rc->chat ? "chat.completion" : "text_completion");
    strbuf text = {0};
    bool ok = o && sb_reserve(&text, t->text.n + echo_len) && sb_append(&text, echo, echo_len) &&
              sb_append(&text, t->text.data, t->text.n);
    json_t *choice = NULL;
    if (ok) {
        json_t *lp = json_null();
        if (t->logprobs >= 0) lp = rc->chat ? chat_logprobs(rc, t, 0, t->n_toks) : completion_logprobs(rc, t, 0, t->n_toks, echo_len);
        const char *fin = srv_finish_name(t->finish);
        if (rc->chat)
            choice = json_pack("{s:i,s:{s:s,s:o,s:n},s:o,s:s}", "index", 0, "message", "role", "assistant", "content",
                               jstr(text.data, text.n), "refusal", "logprobs", lp, "finish_reason", fin ? fin : "stop");
        else
            choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "text", jstr(text.data, text.n), "logprobs", lp, "finish_reason",
                               fin ? fin : "stop");
    }
    free(text.data);
    char *s = NULL;
    if (choice) {
        json_object_set_new(o, "choices", json_pack("[o]", choice));
        json_object_set_new(o, "usage", usage_json(t));
        json_object_set_new(o, "timings", timings_json(t));
        s = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    return s;
}

static bool sse_append(strbuf *out, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    bool ok = s && sb_str(out, "data: ") && sb_str(out, s) && sb_str(out, "\n\n");
    free(s);
    return ok;
}

bool srv_stream_chunk(strbuf *out, const srv_resp_ctx *rc, const srv_task *t, const char *delta, size_t delta_len, int32_t t0,
                      int32_t t1, srv_finish finish, bool first) {
    json_t *o = envelope(rc, rc->chat ? "chat.completion.chunk" : "text_completion");
    if (!o) return false;
    json_t *lp = json_null();
    if (t->logprobs >= 0 && t1 > t0) lp = rc->chat ? chat_logprobs(rc, t, t0, t1) : completion_logprobs(rc, t, t0, t1, 0);
    const char *fin = srv_finish_name(finish);
    json_t *choice;
    if (rc->chat) {
        json_t *d = json_object();
        if (first) json_object_set_new(d, "role", json_string("assistant"));
        if (first || delta_len) json_object_set_new(d, "content", jstr(delta, delta_len));
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", d, "logprobs", lp, "finish_reason", fin ? json_string(fin) : json_null());
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "text", jstr(delta, delta_len), "logprobs", lp, "finish_reason",
                           fin ? json_string(fin) : json_null());
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    if (fin) json_object_set_new(o, "timings", timings_json(t));
    return sse_append(out, o);
}

bool srv_stream_usage(strbuf *out, const srv_resp_ctx *rc, const srv_task *t) {
    json_t *o = envelope(rc, rc->chat ? "chat.completion.chunk" : "text_completion");
    if (!o) return false;
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(t));
    return sse_append(out, o);
}
