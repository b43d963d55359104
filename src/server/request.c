/*
 * request.c — request bodies: JSON (parsed by jansson) into a checked srv_request.
 *
 * Every field the server reads is checked for its type and range here, before anything is
 * allocated for the request beyond jansson's own tree, and a problem is answered as OpenAI's API
 * does: status 400, type "invalid_request_error", the offending field in "param" and a message
 * that names it. null counts as absent (OpenAI's clients send null for unset options); fields the
 * server does not know are ignored; known ones with the wrong type are refused. The limits
 * (stop sequences, messages, logit_bias entries, token lists) bound what a body can make the
 * server hold. What it is not: the prompt's tokenization (prompt.c, the HTTP thread) or the
 * generation (engine.c). fuzz/fuzz_server_request.c runs arbitrary bytes through it.
 */
#include "server/server.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT ((size_t)64 << 20) /* bytes of one string field (the body cap is lower anyway) */
#define MAX_IDS (1 << 20)           /* token ids in one list */

bool srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...) {
    if (!e) return false;
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

#define BAD(e, param, ...) srv_fail((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

/* the value of key, NULL when absent or null */
static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return BAD(e, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return true;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, int32_t *out, bool *present, srv_error *e) {
    json_t *v = field(o, key);
    if (present) *present = v != NULL;
    if (!v) return true;
    if (!json_is_integer(v)) return BAD(e, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return BAD(e, key, "'%s' must be in %lld..%lld, not %lld", key, lo, hi, x);
    *out = (int32_t)x;
    return true;
}

static bool get_float(json_t *o, const char *key, double lo, double hi, float *out, srv_error *e) {
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return BAD(e, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi) return BAD(e, key, "'%s' must be in %g..%g", key, lo, hi);
    *out = (float)x;
    return true;
}

/* a copy of a JSON string (NUL-terminated; strings holding NUL are refused by the parser) */
static bool dup_string(json_t *v, const char *param, char **out, size_t *len, srv_error *e) {
    size_t n = json_string_length(v);
    if (n > MAX_TEXT) return BAD(e, param, "'%s' is longer than %zu bytes", param, MAX_TEXT);
    char *s = malloc(n + 1);
    if (!s) return srv_fail(e, 500, "server_error", NULL, param, "out of memory");
    memcpy(s, json_string_value(v), n);
    s[n] = 0;
    *out = s;
    if (len) *len = n;
    return true;
}

/* a list of token ids, each in [0, n_vocab) */
static bool get_ids(json_t *arr, const char *param, int32_t n_vocab, int32_t **out, int32_t *n, srv_error *e) {
    size_t k = json_array_size(arr);
    if (k > MAX_IDS) return BAD(e, param, "'%s' holds more than %d tokens", param, MAX_IDS);
    int32_t *ids = malloc((k ? k : 1) * sizeof(int32_t));
    if (!ids) return srv_fail(e, 500, "server_error", NULL, param, "out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *x = json_array_get(arr, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= n_vocab) {
            free(ids);
            return BAD(e, param, "'%s'[%zu] must be a token id in 0..%d", param, i, n_vocab - 1);
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    *out = ids;
    *n = (int32_t)k;
    return true;
}

static bool parse_stop(json_t *o, srv_request *r, srv_error *e) {
    json_t *v = field(o, "stop");
    if (!v) return true;
    json_t *one = json_is_string(v) ? v : NULL;
    size_t k = one ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!one && !json_is_array(v)) return BAD(e, "stop", "'stop' must be a string or an array of strings");
    if (k > SRV_MAX_STOP) return BAD(e, "stop", "'stop' may hold at most %d sequences", SRV_MAX_STOP);
    for (size_t i = 0; i < k; i++) {
        json_t *s = one ? one : json_array_get(v, i);
        if (!json_is_string(s)) return BAD(e, "stop", "'stop'[%zu] must be a string", i);
        size_t n = json_string_length(s);
        if (n == 0) continue; /* an empty sequence would stop at once: ignored */
        if (n > SRV_MAX_STOP_LEN) return BAD(e, "stop", "'stop'[%zu] is longer than %d bytes", i, SRV_MAX_STOP_LEN);
        int j = r->n_stop;
        if (!dup_string(s, "stop", &r->stop[j], &r->stop_len[j], e)) return false;
        r->n_stop++;
    }
    return true;
}

static bool parse_bias(json_t *o, int32_t n_vocab, srv_request *r, srv_error *e) {
    json_t *v = field(o, "logit_bias");
    if (!v) return true;
    if (!json_is_object(v)) return BAD(e, "logit_bias", "'logit_bias' must be an object of token id -> bias");
    size_t k = json_object_size(v);
    if (k > SRV_MAX_BIAS) return BAD(e, "logit_bias", "'logit_bias' may hold at most %d entries", SRV_MAX_BIAS);
    if (k == 0) return true;
    r->bias_ids = malloc(k * sizeof(int32_t));
    r->bias_vals = malloc(k * sizeof(float));
    if (!r->bias_ids || !r->bias_vals) return srv_fail(e, 500, "server_error", NULL, "logit_bias", "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end = NULL;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= n_vocab)
            return BAD(e, "logit_bias", "'logit_bias' key '%.40s' is not a token id in 0..%d", key, n_vocab - 1);
        if (!json_is_number(val) || !isfinite(json_number_value(val)) || fabs(json_number_value(val)) > 100.0)
            return BAD(e, "logit_bias", "'logit_bias' values must be numbers in -100..100");
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias_vals[r->n_bias] = (float)json_number_value(val);
        r->n_bias++;
    }
    return true;
}

/* content: a string, or an array of parts of which only {"type": "text", "text": ...} are taken */
static bool parse_content(json_t *c, size_t i, srv_message *m, srv_error *e) {
    if (json_is_string(c)) return dup_string(c, "messages", &m->content, &m->len, e);
    if (!json_is_array(c)) return BAD(e, "messages", "messages[%zu].content must be a string or an array of parts", i);
    strbuf b = {0};
    if (!sb_reserve(&b, 0)) return srv_fail(e, 500, "server_error", NULL, "messages", "out of memory");
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *part = json_array_get(c, k), *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            free(b.data);
            return BAD(e, "messages", "messages[%zu].content[%zu]: only parts {\"type\": \"text\", \"text\": ...} are supported", i, k);
        }
        if (b.n + json_string_length(text) > MAX_TEXT || !sb_append(&b, json_string_value(text), json_string_length(text))) {
            free(b.data);
            return BAD(e, "messages", "messages[%zu].content is too long", i);
        }
    }
    m->content = b.data;
    m->len = b.n;
    return true;
}

static bool parse_messages(json_t *o, srv_request *r, srv_error *e) {
    json_t *v = field(o, "messages");
    if (!v) return BAD(e, "messages", "'messages' is required");
    if (!json_is_array(v) || json_array_size(v) == 0) return BAD(e, "messages", "'messages' must be a non-empty array");
    size_t k = json_array_size(v);
    if (k > SRV_MAX_MESSAGES) return BAD(e, "messages", "'messages' may hold at most %d messages", SRV_MAX_MESSAGES);
    r->messages = calloc(k, sizeof(srv_message));
    if (!r->messages) return srv_fail(e, 500, "server_error", NULL, "messages", "out of memory");
    for (size_t i = 0; i < k; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m)) return BAD(e, "messages", "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) return BAD(e, "messages", "messages[%zu].role must be a string", i);
        const char *rs = json_string_value(role);
        srv_message *dst = &r->messages[r->n_messages];
        if (!strcmp(rs, "system") || !strcmp(rs, "developer")) dst->role = SRV_ROLE_SYSTEM;
        else if (!strcmp(rs, "user")) dst->role = SRV_ROLE_USER;
        else if (!strcmp(rs, "assistant")) dst->role = SRV_ROLE_ASSISTANT;
        else return BAD(e, "messages", "messages[%zu].role '%.40s' is not supported (system, developer, user, assistant)", i, rs);
        json_t *c = field(m, "content");
        if (!c && dst->role != SRV_ROLE_ASSISTANT) return BAD(e, "messages", "messages[%zu].content is required", i);
        json_t *empty = NULL;
        if (!c) c = empty = json_string("");
        bool ok = parse_content(c, i, dst, e);
        json_decref(empty);
        if (!ok) return false;
        r->n_messages++;
    }
    return true;
}

static bool parse_prompt(json_t *o, int32_t n_vocab, srv_request *r, srv_error *e) {
    json_t *v = field(o, "prompt");
    if (!v) return BAD(e, "prompt", "'prompt' is required");
    if (json_is_string(v)) return dup_string(v, "prompt", &r->prompt, &r->prompt_len, e);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return BAD(e, "prompt", "'prompt' must be a string, an array of token ids, or an array of one string");
    json_t *first = json_array_get(v, 0);
    if (json_is_string(first) || json_is_array(first)) {
        if (json_array_size(v) != 1) return BAD(e, "prompt", "only one prompt per request is supported (n = 1)");
        if (json_is_string(first)) return dup_string(first, "prompt", &r->prompt, &r->prompt_len, e);
        if (json_array_size(first) == 0) return BAD(e, "prompt", "'prompt' must not be empty");
        return get_ids(first, "prompt", n_vocab, &r->prompt_ids, &r->n_prompt_ids, e);
    }
    return get_ids(v, "prompt", n_vocab, &r->prompt_ids, &r->n_prompt_ids, e);
}

static bool parse_generation(json_t *o, int32_t n_vocab, srv_request *r, srv_error *e) {
    const bool chat = r->ep == SRV_EP_CHAT;
    bool present = false;
    /* OpenAI's defaults: temperature 1, top_p 1, no top-k / min-p; completions: 16 tokens */
    r->sampling = sl_sampler_default_params();
    r->sampling.temperature = 1.0f;
    r->sampling.top_p = 1.0f;
    r->sampling.top_k = 0;
    r->sampling.min_p = 0.0f;
    r->max_tokens = chat ? -1 : 16;
    int32_t n = 1;
    if (!get_int(o, "n", 1, 1, &n, NULL, e)) return false;
    if (!get_int(o, "max_tokens", 0, INT32_MAX, &r->max_tokens, &present, e)) return false;
    r->max_tokens_set = present;
    if (chat && !get_int(o, "max_completion_tokens", 0, INT32_MAX, &r->max_tokens, &present, e)) return false;
    r->max_tokens_set |= present;
    if (!get_float(o, "temperature", 0.0, 2.0, &r->sampling.temperature, e)) return false;
    if (!get_float(o, "top_p", 0.0, 1.0, &r->sampling.top_p, e)) return false;
    if (!get_float(o, "min_p", 0.0, 1.0, &r->sampling.min_p, e)) return false;
    if (!get_int(o, "top_k", 0, INT32_MAX, &r->sampling.top_k, NULL, e)) return false;
    if (!get_float(o, "repeat_penalty", 1e-3, 1e3, &r->sampling.repeat_penalty, e)) return false;
    if (!get_float(o, "presence_penalty", -2.0, 2.0, &r->presence_penalty, e)) return false;
    if (!get_float(o, "frequency_penalty", -2.0, 2.0, &r->frequency_penalty, e)) return false;
    json_t *seed = field(o, "seed");
    if (seed) {
        if (!json_is_integer(seed)) return BAD(e, "seed", "'seed' must be an integer");
        r->sampling.seed = (uint64_t)json_integer_value(seed);
        r->seed_set = true;
    }
    if (!get_bool(o, "stream", &r->stream, e)) return false;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so)) return BAD(e, "stream_options", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &r->include_usage, e)) return false;
    }
    if (!parse_stop(o, r, e) || !parse_bias(o, n_vocab, r, e)) return false;
    r->logprobs = -1;
    if (chat) {
        bool lp = false;
        int32_t top = 0;
        if (!get_bool(o, "logprobs", &lp, e)) return false;
        if (!get_int(o, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, &present, e)) return false;
        if (present && !lp) return BAD(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        if (lp) r->logprobs = top;
        json_t *rf = field(o, "response_format"), *rt = rf ? json_object_get(rf, "type") : NULL;
        if (rf && (!json_is_string(rt) || strcmp(json_string_value(rt), "text")))
            return BAD(e, "response_format", "only 'response_format' {\"type\": \"text\"} is supported");
        json_t *tools = field(o, "tools");
        if (tools && (!json_is_array(tools) || json_array_size(tools) > 0))
            return BAD(e, "tools", "tools (function calling) are not supported");
        return parse_messages(o, r, e);
    }
    if (!get_int(o, "logprobs", 0, 5, &r->logprobs, &present, e)) return false;
    if (!present) r->logprobs = -1;
    if (!get_bool(o, "echo", &r->echo, e)) return false;
    if (!get_int(o, "best_of", 1, 1, &n, NULL, e)) return false;
    json_t *suffix = field(o, "suffix");
    if (suffix && (!json_is_string(suffix) || json_string_length(suffix) > 0))
        return BAD(e, "suffix", "'suffix' (insertion) is not supported");
    return parse_prompt(o, n_vocab, r, e);
}

bool srv_request_parse(srv_endpoint ep, const char *body, size_t len, int32_t n_vocab, srv_request *out, srv_error *e) {
    memset(out, 0, sizeof(*out));
    out->ep = ep;
    out->logprobs = -1;
    out->sparsity = -1.0f;
    out->batch_select = -1;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return BAD(e, "", "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    bool ok = true;
    if (!json_is_object(root)) {
        ok = BAD(e, "", "the body must be a JSON object");
        goto done;
    }
    json_t *model = field(root, "model");
    if (model && !json_is_string(model)) {
        ok = BAD(e, "model", "'model' must be a string");
        goto done;
    }
    if (model && !(ok = dup_string(model, "model", &out->model, NULL, e))) goto done;
    switch (ep) {
    case SRV_EP_COMPLETIONS:
    case SRV_EP_CHAT:
        ok = parse_generation(root, n_vocab, out, e);
        break;
    case SRV_EP_TOKENIZE: {
        json_t *c = field(root, "content");
        if (!c || !json_is_string(c)) {
            ok = BAD(e, "content", "'content' must be a string");
            break;
        }
        out->add_special = false;
        ok = dup_string(c, "content", &out->content, &out->content_len, e) && get_bool(root, "add_special", &out->add_special, e) &&
             get_bool(root, "with_pieces", &out->with_pieces, e);
        break;
    }
    case SRV_EP_DETOKENIZE: {
        json_t *t = field(root, "tokens");
        if (!t || !json_is_array(t)) {
            ok = BAD(e, "tokens", "'tokens' must be an array of token ids");
            break;
        }
        ok = get_ids(t, "tokens", n_vocab, &out->tokens, &out->n_tokens, e);
        break;
    }
    case SRV_EP_PROPS:
        ok = get_float(root, "sparsity", 0.0, 0.999, &out->sparsity, e);
        if (ok && field(root, "batch_select")) {
            json_t *b = field(root, "batch_select");
            for (int m = 0; json_is_string(b) && sl_batch_select_name((sl_batch_select)m); m++)
                if (!strcmp(json_string_value(b), sl_batch_select_name((sl_batch_select)m))) out->batch_select = m;
            if (out->batch_select < 0) ok = BAD(e, "batch_select", "'batch_select' must be \"union\", \"shared\" or \"auto\"");
        }
        break;
    }
done:
    json_decref(root);
    if (!ok) {
        srv_request_free(out);
        out->ep = ep;
    }
    return ok;
}

void srv_request_free(srv_request *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (int32_t i = 0; i < r->n_messages; i++) free(r->messages[i].content);
    free(r->messages);
    free(r->bias_ids);
    free(r->bias_vals);
    for (int32_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->content);
    free(r->tokens);
    memset(r, 0, sizeof(*r));
    r->logprobs = -1;
    r->sparsity = -1.0f;
    r->batch_select = -1;
}
