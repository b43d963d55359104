/*
 * test_server.c — the HTTP server (src/server/) in-process, on loopback, with the tiny model.
 *
 * What it checks: request bodies are parsed into the documented fields and defaults, and every
 * malformed or out-of-range field gets 400 naming it; chat messages are laid out as
 * sl_chat_format does (Llama-3 fixture vocabulary) and as ChatML without a template; invalid
 * UTF-8 is repaired for JSON. Over HTTP: greedy and seeded completions equal the same generation
 * done directly with the library (sl_eval + sl_sampler); stop sequences cut the text; logprobs
 * equal a log-softmax of the library's logits (tolerance 1e-4); a streamed answer's deltas add
 * up to the unstreamed text and end with [DONE]; usage counts; 404/405/413/400
 * (context_length_exceeded) bodies in OpenAI's shape; the API key (401 without or with a wrong
 * one, /health open); a full queue gets 503 with Retry-After; a client that hangs up mid-stream
 * frees its slot; draining refuses new work. With a profile: POST /props switches the batch
 * selection (a bad one is 400), and two requests decoding together under `shared` count shared
 * passes, the union of their own selections and the own-mask recall in /metrics.
 * What it does not check: the official client (tests/cli_server.sh), the page in a browser, load
 * (tests/cli_server_load.sh), speed.
 */
#include "server/server.h"
#include "testutil.h"
#include "httpc.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL "tests/data/tiny-silu.gguf"
#define TIMEOUT_MS 60000

static sl_model *g_model;

/* ---- parsing ------------------------------------------------------------------------------------- */

static bool parse(srv_endpoint ep, const char *body, srv_request *r, srv_error *e) {
    return srv_request_parse(ep, body, strlen(body), 2048, r, e);
}

static void test_parse_valid(void) {
    srv_request r;
    srv_error e;
    bool ok = parse(SRV_EP_COMPLETIONS,
                    "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"stop\":[\"a\",\"bc\"],"
                    "\"logprobs\":3,\"echo\":true,\"seed\":11,\"logit_bias\":{\"5\":-100},\"unknown\":{\"x\":1},\"user\":null}",
                    &r, &e);
    CHECK(ok && r.prompt && !strcmp(r.prompt, "hi") && r.max_tokens == 7 && r.max_tokens_set && fabsf(r.sampling.temperature - 0.5f) < 1e-6f &&
              fabsf(r.sampling.top_p - 0.9f) < 1e-6f && r.n_stop == 2 && !strcmp(r.stop[1], "bc") && r.logprobs == 3 && r.echo &&
              r.seed_set && r.sampling.seed == 11 && r.n_bias == 1 && r.bias_ids[0] == 5 && r.bias_vals[0] == -100.0f,
          "completions: fields parsed (%s)", ok ? "ok" : e.message);
    srv_request_free(&r);
    ok = parse(SRV_EP_COMPLETIONS, "{\"prompt\":[1,2,3]}", &r, &e);
    CHECK(ok && r.n_prompt_ids == 3 && r.prompt_ids[2] == 3 && r.max_tokens == 16 && !r.max_tokens_set && r.sampling.temperature == 1.0f &&
              r.sampling.top_p == 1.0f && r.sampling.top_k == 0 && r.logprobs == -1,
          "completions: token-id prompt, OpenAI defaults (16 tokens, temperature 1, top_p 1)");
    srv_request_free(&r);
    ok = parse(SRV_EP_CHAT,
               "{\"messages\":[{\"role\":\"developer\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
               "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null}],\"logprobs\":true,\"top_logprobs\":4,"
               "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_completion_tokens\":9}",
               &r, &e);
    CHECK(ok && r.n_messages == 3 && r.messages[0].role == SRV_ROLE_SYSTEM && !strcmp(r.messages[1].content, "ab") &&
              r.messages[2].len == 0 && r.logprobs == 4 && r.stream && r.include_usage && r.max_tokens == 9,
          "chat: roles, content parts joined, logprobs, stream options (%s)", ok ? "ok" : e.message);
    srv_request_free(&r);
    ok = parse(SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e);
    CHECK(ok && r.max_tokens == -1 && !r.stream, "chat: no max_tokens means until the context is full");
    srv_request_free(&r);
}

static void test_parse_invalid(void) {
    static const struct { srv_endpoint ep; const char *body, *param; } cases[] = {
        {SRV_EP_COMPLETIONS, "", ""},
        {SRV_EP_COMPLETIONS, "{\"prompt\":", ""},
        {SRV_EP_COMPLETIONS, "[1,2]", ""},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"prompt\":\"b\"}", ""},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\\u0000b\"}", ""},
        {SRV_EP_COMPLETIONS, "{\"max_tokens\":5}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":[]}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":[1,2048]}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":[-1]}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"]}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":42}", "prompt"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", "max_tokens"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":-1}", "max_tokens"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"max_tokens\":1.5}", "max_tokens"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":2.5}", "temperature"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", "temperature"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"top_p\":1.5}", "top_p"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"n\":2}", "n"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"stream\":1}", "stream"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "stop"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"stop\":[1]}", "stop"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"stop\":{}}", "stop"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"logprobs\":6}", "logprobs"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}", "logit_bias"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"3\":101}}", "logit_bias"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"logit_bias\":{\"99999\":1}}", "logit_bias"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"seed\":\"1\"}", "seed"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"model\":7}", "model"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"suffix\":\"b\"}", "suffix"},
        {SRV_EP_COMPLETIONS, "{\"prompt\":\"a\",\"stream_options\":[]}", "stream_options"},
        {SRV_EP_CHAT, "{}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":\"hi\"}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"king\",\"content\":\"x\"}]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[1]}", "messages"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", "tools"},
        {SRV_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
         "response_format"},
        {SRV_EP_TOKENIZE, "{\"content\":3}", "content"},
        {SRV_EP_TOKENIZE, "{\"content\":\"a\",\"add_special\":\"yes\"}", "add_special"},
        {SRV_EP_DETOKENIZE, "{\"tokens\":[1,\"a\"]}", "tokens"},
        {SRV_EP_DETOKENIZE, "{\"tokens\":[5000]}", "tokens"},
        {SRV_EP_PROPS, "{\"sparsity\":1.5}", "sparsity"},
    };
    int good = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_request r;
        srv_error e;
        memset(&e, 0, sizeof e);
        bool ok = parse(cases[i].ep, cases[i].body, &r, &e);
        bool right = !ok && e.status == 400 && !strcmp(e.type, "invalid_request_error") && !strcmp(e.param, cases[i].param) && e.message[0];
        if (!right) printf("  case %zu (%s): ok=%d status=%d param='%s' message='%s'\n", i, cases[i].body, ok, e.status, e.param, e.message);
        good += right;
        srv_request_free(&r);
    }
    CHECK(good == (int)(sizeof cases / sizeof cases[0]), "%d of %zu malformed bodies refused with 400 naming the field", good,
          sizeof cases / sizeof cases[0]);
}

/* ---- prompts and UTF-8 ------------------------------------------------------------------------- */

static void test_prompts(void) {
    /* the library's templates, as sl_chat_format for one system + one user message */
    srv_message m[2] = {{SRV_ROLE_SYSTEM, " Be brief. ", 11}, {SRV_ROLE_USER, "Hi there\n", 9}};
    sl_chat_message lm[2] = {{"system", " Be brief. "}, {"user", "Hi there\n"}};
    int same = 0, n_t = 0;
    for (int t = SL_CHAT_CHATML; t <= SL_CHAT_GEMMA; t++) {
        char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        srv_error e;
        bool ok = srv_chat_prompt((sl_chat_template)t, m, 2, &a, &al, &e);
        sl_status st = sl_chat_apply((sl_chat_template)t, lm, 2, true, &b, &bl, NULL);
        same += ok == (st == SL_OK) && (!ok || (al == bl && !memcmp(a, b, al)));
        n_t++;
        free(a);
        sl_free_text(b);
    }
    CHECK(same == n_t, "chat prompts are sl_chat_apply's in all %d template families", n_t);
    srv_message turns[3] = {{SRV_ROLE_USER, "a", 1}, {SRV_ROLE_ASSISTANT, "b", 1}, {SRV_ROLE_USER, "c", 1}};
    char *a = NULL;
    size_t al = 0;
    srv_error e;
    CHECK(srv_chat_template_of(sl_model_get_vocab(g_model)) == SL_CHAT_CHATML, "a model without a template gets ChatML");
    bool ok = srv_chat_prompt(SL_CHAT_CHATML, turns, 3, &a, &al, &e);
    const char *want = "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n";
    CHECK(ok && !strcmp(a, want), "ChatML multi-turn layout");
    free(a);

    strbuf sb = {0};
    srv_utf8_append(&sb, "a\xC3\xA9\xFF" "b\xE2\x82" "c\xF0\x9F\x98\x80\xED\xA0\x80", 16);
    /* as Python's bytes.decode("utf-8", "replace"): one U+FFFD per maximal invalid subpart */
    CHECK(sb.data && !strcmp(sb.data, "a\xC3\xA9\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xF0\x9F\x98\x80\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"),
          "invalid UTF-8 (stray byte, cut character, surrogate) becomes U+FFFD as Python's 'replace' does");
    free(sb.data);
    CHECK(srv_utf8_complete("ab\xE2\x82", 4) == 2 && srv_utf8_complete("ab\xE2\x82\xAC", 5) == 5, "complete-character prefix");
}

/* ---- over HTTP ------------------------------------------------------------------------------------ */

static sl_server *start(int np, int queue, const char *key, int n_ctx) {
    sl_server_params p = sl_server_default_params();
    p.port = 0;
    p.n_parallel = np;
    p.queue_size = queue;
    p.api_key = key;
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    p.model_name = "tiny";
    sl_error err;
    sl_server *s = sl_server_start(g_model, &p, &err);
    if (!s) printf("  server: %s\n", err.message);
    return s;
}

static json_t *post_json(int port, const char *path, const char *body, int *status) {
    httpc_resp r;
    *status = 0;
    if (httpc_request(port, "POST", path, NULL, body, strlen(body), &r, TIMEOUT_MS) != 0) return NULL;
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    httpc_free(&r);
    return j;
}

static const char *jpath_str(json_t *j, const char *a, int idx, const char *b) {
    json_t *v = json_object_get(json_array_get(json_object_get(j, a), (size_t)idx), b);
    return json_string_value(v);
}

/* greedy (temperature 0) or seeded generation done with the library directly */
static char *reference(const char *prompt, int n, float temp, uint64_t seed, float **lp_out) {
    sl_error err;
    const sl_vocab *v = sl_model_get_vocab(g_model);
    int32_t *ids = NULL, n_ids = 0;
    sl_tokenize(v, prompt, strlen(prompt), true, true, &ids, &n_ids, &err);
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = 256;
    sl_context *ctx = sl_context_init(g_model, &cp, &err);
    sl_sampler_params sp = sl_sampler_default_params();
    sp.temperature = temp, sp.top_k = 0, sp.top_p = 1.0f, sp.min_p = 0.0f, sp.seed = seed;
    sl_sampler *s = sl_sampler_init(&sp);
    sl_detok *d = sl_detok_init(v, false, &err);
    const int V = sl_model_get_config(g_model)->n_vocab;
    float *logits = malloc((size_t)V * sizeof(float));
    for (int i = 0; i < n_ids; i++) sl_sampler_accept(s, ids[i]);
    sl_eval(ctx, ids, n_ids, logits, false, &err);
    strbuf out = {0};
    sb_reserve(&out, 0);
    if (lp_out) *lp_out = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) {
        int32_t t = sl_sampler_sample(s, logits, V);
        if (lp_out) {
            double mx = -INFINITY, sum = 0;
            for (int k = 0; k < V; k++) mx = logits[k] > mx ? logits[k] : mx;
            for (int k = 0; k < V; k++) sum += exp(logits[k] - mx);
            (*lp_out)[i] = (float)(logits[t] - mx - log(sum));
        }
        sl_sampler_accept(s, t);
        if (sl_vocab_is_eog(v, t)) break;
        const char *p;
        size_t pl;
        sl_detok_push(d, t, &p, &pl, &err);
        sb_append(&out, p, pl);
        if (i + 1 < n) sl_eval(ctx, &t, 1, logits, false, &err);
    }
    free(logits);
    sl_detok_free(d);
    sl_sampler_free(s);
    sl_context_free(ctx);
    sl_free_tokens(ids);
    return out.data;
}

static void test_generation(int port) {
    const char *prompt = "It was a dark and stormy night";
    char *greedy = reference(prompt, 24, 0.0f, 0, NULL);
    char body[512];
    int st;
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":24,\"temperature\":0}", prompt);
    json_t *j = post_json(port, "/v1/completions", body, &st);
    const char *text = jpath_str(j, "choices", 0, "text");
    json_t *u = json_object_get(j, "usage");
    CHECK(st == 200 && text && !strcmp(text, greedy), "greedy completion equals the library's greedy generation ('%.40s...')", greedy);
    CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == 24 &&
              json_integer_value(json_object_get(u, "total_tokens")) == json_integer_value(json_object_get(u, "prompt_tokens")) + 24 &&
              !strcmp(jpath_str(j, "choices", 0, "finish_reason"), "length") && !strcmp(json_string_value(json_object_get(j, "object")), "text_completion"),
          "usage counts and finish_reason 'length'");
    json_decref(j);

    char *sampled = reference(prompt, 24, 0.9f, 4242, NULL);
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":24,\"temperature\":0.9,\"seed\":4242}", prompt);
    j = post_json(port, "/v1/completions", body, &st);
    text = jpath_str(j, "choices", 0, "text");
    CHECK(st == 200 && text && !strcmp(text, sampled), "seeded sampling equals the library's with the same seed");
    json_decref(j);
    free(sampled);

    /* a stop sequence from the middle of the greedy text cuts it there */
    size_t gl = strlen(greedy);
    char stop[8] = {0};
    memcpy(stop, greedy + gl / 2, 4);
    const char *at = strstr(greedy, stop);
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":24,\"temperature\":0,\"stop\":[\"zzzz\",\"%s\"]}", prompt, stop);
    j = post_json(port, "/v1/completions", body, &st);
    text = jpath_str(j, "choices", 0, "text");
    CHECK(st == 200 && text && strlen(text) == (size_t)(at - greedy) && !strncmp(text, greedy, strlen(text)) &&
              !strcmp(jpath_str(j, "choices", 0, "finish_reason"), "stop"),
          "stop sequence '%s' cuts the text before it, finish_reason 'stop'", stop);
    json_decref(j);

    /* logprobs against a log-softmax of the library's logits */
    float *lp = NULL;
    char *g8 = reference(prompt, 8, 0.0f, 0, &lp);
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"logprobs\":2}", prompt);
    j = post_json(port, "/v1/completions", body, &st);
    json_t *l = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    json_t *tl = json_object_get(l, "token_logprobs"), *top = json_object_get(l, "top_logprobs");
    double maxd = 0;
    bool shape = json_array_size(tl) == 8 && json_array_size(top) == 8 && json_array_size(json_object_get(l, "tokens")) == 8;
    for (size_t i = 0; shape && i < 8; i++) {
        double d = fabs(json_number_value(json_array_get(tl, i)) - lp[i]);
        maxd = d > maxd ? d : maxd;
        shape = shape && json_object_size(json_array_get(top, i)) >= 1;
    }
    CHECK(st == 200 && shape && maxd <= 1e-4, "completions logprobs: 8 tokens with 2 alternatives, maxdiff %.2e vs the library (tol 1e-4)", maxd);
    json_decref(j);
    free(lp);
    free(g8);

    /* streamed: deltas add up to the whole text; chat logprobs per token */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":12,\"temperature\":0,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":3}",
             prompt);
    httpc_resp r;
    httpc_request(port, "POST", "/v1/chat/completions", NULL, body, strlen(body), &r, TIMEOUT_MS);
    strbuf acc = {0};
    sb_reserve(&acc, 0);
    int n_chunks = 0, n_lp = 0, finish_chunks = 0, usage_chunks = 0;
    bool done = false, roles = false;
    char ct[64] = "";
    httpc_header(r.head ? r.head : "", "Content-Type", ct, sizeof ct);
    for (char *p = r.body; p && (p = strstr(p, "data: ")); p += 6) {
        char *end = strstr(p, "\n\n");
        if (!end) break;
        if (!strncmp(p + 6, "[DONE]", 6)) {
            done = !strstr(end + 2, "data: ");
            break;
        }
        json_t *c = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        n_chunks += c != NULL;
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0), *d = json_object_get(ch, "delta");
        if (json_string_value(json_object_get(d, "role"))) roles = true;
        const char *piece = json_string_value(json_object_get(d, "content"));
        if (piece) sb_str(&acc, piece);
        n_lp += (int)json_array_size(json_object_get(json_object_get(ch, "logprobs"), "content"));
        finish_chunks += json_string_value(json_object_get(ch, "finish_reason")) != NULL;
        usage_chunks += json_object_get(c, "usage") != NULL && json_array_size(json_object_get(c, "choices")) == 0 &&
                        json_integer_value(json_object_get(json_object_get(c, "usage"), "completion_tokens")) == 12;
        json_decref(c);
    }
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":12,\"temperature\":0}", prompt);
    j = post_json(port, "/v1/chat/completions", body, &st);
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    const char *whole = json_string_value(json_object_get(msg, "content"));
    CHECK(r.status == 200 && strstr(ct, "text/event-stream") && n_chunks >= 3 && done && roles && whole && !strcmp(acc.data, whole),
          "chat stream: %d chunks, role first, deltas == unstreamed content, ends with [DONE]", n_chunks);
    CHECK(n_lp == 12 && finish_chunks == 1 && usage_chunks == 1, "chat stream: 12 logprob entries, one finish chunk, one usage chunk");
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion") &&
              !strcmp(json_string_value(json_object_get(msg, "role")), "assistant"),
          "chat.completion object with an assistant message");
    json_decref(j);
    free(acc.data);
    httpc_free(&r);
    free(greedy);
}

static void test_errors(int port) {
    httpc_resp r;
    httpc_request(port, "GET", "/nope", NULL, NULL, 0, &r, TIMEOUT_MS);
    json_t *j = json_loads(r.body, 0, NULL);
    CHECK(r.status == 404 && json_string_value(json_object_get(json_object_get(j, "error"), "message")), "404 with an error object");
    json_decref(j);
    httpc_free(&r);
    httpc_request(port, "GET", "/v1/completions", NULL, NULL, 0, &r, TIMEOUT_MS);
    char allow[32] = "";
    httpc_header(r.head, "Allow", allow, sizeof allow);
    CHECK(r.status == 405 && !strcmp(allow, "POST"), "405 with Allow: POST for GET /v1/completions");
    httpc_free(&r);
    size_t big = ((size_t)1 << 20) + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    httpc_request(port, "POST", "/v1/completions", NULL, huge, big, &r, TIMEOUT_MS);
    j = json_loads(r.body, 0, NULL);
    CHECK(r.status == 413 && !strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "request_too_large"),
          "413 for a body of 1 MiB + 1");
    json_decref(j);
    httpc_free(&r);
    free(huge);
    /* a prompt as long as the context */
    strbuf b = {0};
    sb_str(&b, "{\"prompt\":[1");
    for (int i = 1; i < 64; i++) sb_str(&b, ",300");
    sb_str(&b, "]}");
    int st;
    j = post_json(port, "/v1/completions", b.data, &st);
    json_t *e = json_object_get(j, "error");
    CHECK(st == 400 && !strcmp(json_string_value(json_object_get(e, "code")), "context_length_exceeded") &&
              !strcmp(json_string_value(json_object_get(e, "param")), "prompt"),
          "400 context_length_exceeded for a 64-token prompt in a 64-token context");
    json_decref(j);
    j = post_json(port, "/v1/completions", "{\"prompt\":[1,300],\"max_tokens\":63}", &st);
    CHECK(st == 400, "400 when prompt + max_tokens exceeds the context");
    json_decref(j);
    free(b.data);
    j = post_json(port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":7}]}", &st);
    CHECK(st == 400 && !strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "invalid_request_error"),
          "400 invalid_request_error for a wrong type");
    json_decref(j);
    j = post_json(port, "/tokenize", "{\"content\":\"Hello world\"}", &st);
    json_t *toks = json_object_get(j, "tokens");
    strbuf ids = {0};
    sb_str(&ids, "{\"tokens\":[");
    for (size_t i = 0; i < json_array_size(toks); i++) {
        char n[16];
        snprintf(n, sizeof n, "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(toks, i)));
        sb_str(&ids, n);
    }
    sb_str(&ids, "]}");
    const size_t n_toks = json_array_size(toks);
    json_decref(j);
    j = post_json(port, "/detokenize", ids.data, &st);
    const char *back = json_string_value(json_object_get(j, "content"));
    CHECK(st == 200 && n_toks > 0 && back && !strcmp(back, "Hello world"), "tokenize then detokenize gives the text back ('%s')",
          back ? back : "(none)");
    json_decref(j);
    free(ids.data);
}

static bool metric(int port, const char *name, double *v) {
    httpc_resp r;
    if (httpc_request(port, "GET", "/metrics", NULL, NULL, 0, &r, TIMEOUT_MS) != 0) return false;
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(r.body, pat);
    bool ok = p && sscanf(p + strlen(pat), "%lf", v) == 1;
    httpc_free(&r);
    return ok;
}

/* wait until metric name == want (up to 20 s) */
static bool wait_metric(int port, const char *name, double want) {
    double v = -1;
    for (int i = 0; i < 2000; i++) {
        if (metric(port, name, &v) && v == want) return true;
        usleep(10000);
    }
    return false;
}

static void test_queue_and_disconnect(void) {
    sl_server *s = start(1, 1, NULL, 4096);
    if (!CHECK(s != NULL, "server with 1 slot, queue of 1")) return;
    const int port = sl_server_port(s);
    const char *longreq = "{\"prompt\":\"Once upon\",\"max_tokens\":4000,\"temperature\":0,\"logit_bias\":{\"2\":-100},\"stream\":true}";
    int a = httpc_send(port, "POST", "/v1/completions", NULL, longreq, strlen(longreq));
    CHECK(wait_metric(port, "skipllama_slots_busy", 1), "the long request runs");
    int b = httpc_send(port, "POST", "/v1/completions", NULL, longreq, strlen(longreq));
    CHECK(wait_metric(port, "skipllama_queue_length", 1), "the second waits in the queue");
    httpc_resp r;
    httpc_request(port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\"}", 14, &r, TIMEOUT_MS);
    char ra[16] = "";
    httpc_header(r.head, "Retry-After", ra, sizeof ra);
    CHECK(r.status == 503 && ra[0] && strstr(r.body, "\"error\""), "a third gets 503 with Retry-After: %s", ra);
    httpc_free(&r);
    /* read a little of the first stream, then hang up: its slot is freed, the queued one runs */
    size_t n;
    free(httpc_read(a, 300, TIMEOUT_MS, &n));
    close(a);
    double gen_before = 0;
    metric(port, "skipllama_tokens_generated_total", &gen_before);
    close(b);
    CHECK(wait_metric(port, "skipllama_slots_busy", 0) && wait_metric(port, "skipllama_queue_length", 0),
          "clients that hung up free the slot and leave the queue");
    double disc = 0, gen = 0;
    metric(port, "skipllama_client_disconnects_total", &disc);
    metric(port, "skipllama_tokens_generated_total", &gen);
    CHECK(disc >= 1 && gen < 2 * 4000, "disconnects counted (%.0f), generation stopped early (%.0f of 8000 tokens)", disc, gen);
    /* draining */
    sl_server_shutdown(s);
    httpc_request(port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\"}", 14, &r, TIMEOUT_MS);
    CHECK(r.status == 503, "503 while draining");
    httpc_free(&r);
    httpc_request(port, "GET", "/health", NULL, NULL, 0, &r, TIMEOUT_MS);
    CHECK(r.status == 503, "/health says 503 while draining");
    httpc_free(&r);
    CHECK(sl_server_wait_idle(s, 20.0), "idle after draining");
    sl_server_free(s);
}

static void test_auth(void) {
    sl_server *s = start(1, 0, "sekrit-key", 64);
    if (!CHECK(s != NULL, "server with an API key")) return;
    const int port = sl_server_port(s);
    httpc_resp r;
    httpc_request(port, "GET", "/v1/models", NULL, NULL, 0, &r, TIMEOUT_MS);
    json_t *j = json_loads(r.body, 0, NULL);
    CHECK(r.status == 401 && !strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "invalid_api_key"),
          "401 invalid_api_key without a key");
    json_decref(j);
    httpc_free(&r);
    httpc_request(port, "GET", "/v1/models", "Authorization: Bearer sekrit-kez\r\n", NULL, 0, &r, TIMEOUT_MS);
    CHECK(r.status == 401, "401 with a wrong key");
    httpc_free(&r);
    httpc_request(port, "GET", "/v1/models", "Authorization: Bearer sekrit-key-longer\r\n", NULL, 0, &r, TIMEOUT_MS);
    CHECK(r.status == 401, "401 with a longer key");
    httpc_free(&r);
    httpc_request(port, "GET", "/v1/models", "Authorization: Bearer sekrit-key\r\n", NULL, 0, &r, TIMEOUT_MS);
    j = json_loads(r.body, 0, NULL);
    CHECK(r.status == 200 && !strcmp(jpath_str(j, "data", 0, "id"), "tiny"), "200 and the model list with the key");
    json_decref(j);
    httpc_free(&r);
    httpc_request(port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\"}", 14, &r, TIMEOUT_MS);
    CHECK(r.status == 401, "generation needs the key too");
    httpc_free(&r);
    httpc_request(port, "GET", "/health", NULL, NULL, 0, &r, TIMEOUT_MS);
    CHECK(r.status == 200, "/health needs no key");
    httpc_free(&r);
    httpc_request(port, "GET", "/", NULL, NULL, 0, &r, TIMEOUT_MS);
    CHECK(r.status == 200 && strstr(r.body, "<html") && strstr(r.body, "/v1/chat/completions"), "the page needs no key (it asks for one)");
    httpc_free(&r);
    sl_server_free(s);
}

/* A profile (CATS on every layer): POST /props {"batch_select"}, and the batch counters of /metrics
 * once two requests have decoded together. */
static void test_batch_select(void) {
    sl_error err;
    sl_profile *prof = sl_profile_init(g_model, &err);
    const sl_model_config *c = sl_model_get_config(g_model);
    for (int l = 0; prof && l < c->n_layer; l++) {
        sl_profile_layer info = {.rule = SL_RULE_CATS, .threshold = 0.05f, .target_sparsity = 0.5f};
        sl_profile_set_layer(prof, l, &info, &err);
    }
    sl_server_params p = sl_server_default_params();
    p.port = 0;
    p.n_parallel = 2;
    p.n_ctx = 128;
    p.n_threads = 1;
    p.profile = prof;
    sl_server *s = prof ? sl_server_start(g_model, &p, &err) : NULL;
    if (!CHECK(s != NULL, "server with a CATS profile")) {
        sl_profile_free(prof);
        return;
    }
    const int port = sl_server_port(s);
    int st;
    json_t *j = post_json(port, "/props", "{\"batch_select\":\"sideways\"}", &st);
    CHECK(st == 400 && !strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "param")), "batch_select"),
          "POST /props with an unknown batch_select: 400 naming it");
    json_decref(j);
    j = post_json(port, "/props", "{\"batch_select\":\"shared\"}", &st);
    json_decref(j);
    /* applied between steps: poll /props */
    const char *bs = NULL;
    for (int i = 0; i < 500; i++) {
        httpc_resp r;
        if (httpc_request(port, "GET", "/props", NULL, NULL, 0, &r, TIMEOUT_MS) == 0) {
            j = json_loads(r.body, 0, NULL);
            httpc_free(&r);
            bs = json_string_value(json_object_get(j, "batch_select"));
            const bool done = bs && !strcmp(bs, "shared");
            json_decref(j);
            if (done) break;
        }
        usleep(10000);
    }
    CHECK(st == 200 && bs, "POST /props {\"batch_select\": \"shared\"} is applied");
    /* two requests decoding together */
    const char *req = "{\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":0,\"logit_bias\":{\"2\":-100}}";
    int a = httpc_send(port, "POST", "/v1/completions", NULL, req, strlen(req));
    int b = httpc_send(port, "POST", "/v1/completions", NULL, req, strlen(req));
    size_t n;
    free(httpc_read(a, 1 << 20, TIMEOUT_MS, &n));
    free(httpc_read(b, 1 << 20, TIMEOUT_MS, &n));
    close(a), close(b);
    double passes = 0, shared = 0, uni = 0, rd = 0, kept = 0, sel = 0;
    metric(port, "skipllama_batch_passes_total", &passes);
    metric(port, "skipllama_batch_shared_total", &shared);
    metric(port, "skipllama_batch_union_neurons_total", &uni);
    metric(port, "skipllama_batch_read_neurons_total", &rd);
    metric(port, "skipllama_batch_own_kept_total", &kept);
    metric(port, "skipllama_batch_own_selected_total", &sel);
    CHECK(passes > 0 && shared == passes && uni >= rd && sel > 0 && kept > 0 && kept <= sel,
          "two requests decoding together under shared: %.0f passes, all shared; union of own %.0f >= read %.0f; own recall %.3f", passes,
          uni, rd, sel > 0 ? kept / sel : 0.0);
    sl_server_free(s);
    sl_profile_free(prof);
}

int main(void) {
    sl_error err;
    g_model = sl_model_load(MODEL, NULL, &err);
    if (!CHECK(g_model != NULL, "load %s", MODEL)) return test_summary();
    test_parse_valid();
    test_parse_invalid();
    test_prompts();
    sl_server *s = start(2, 0, NULL, 64);
    if (CHECK(s != NULL, "server on a free port: %d", s ? sl_server_port(s) : 0)) {
        test_errors(sl_server_port(s));
        sl_server_free(s);
    }
    s = start(2, 0, NULL, 256);
    if (s) {
        test_generation(sl_server_port(s));
        sl_server_free(s);
    }
    test_queue_and_disconnect();
    test_auth();
    test_batch_select();
    sl_model_free(g_model);
    return test_summary();
}
