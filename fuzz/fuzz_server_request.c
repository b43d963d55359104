/*
 * fuzz_server_request.c — libFuzzer harness for the HTTP server's request side (src/server/):
 * srv_request_parse on arbitrary bodies for every endpoint, then what the server does next with
 * an accepted request before any model work — the chat prompt in each template layout
 * (srv_chat_prompt) — and with a refused one — its error body (srv_error_json); plus the UTF-8
 * repair every JSON string passes (srv_utf8_append, srv_utf8_complete) on the raw bytes.
 *
 * Input: byte 0 picks the endpoint (mod 5: completions, chat, tokenize, detokenize, props), the
 * rest is the body, up to 4 KiB. Checked beyond memory safety: a refusal always has status 400 or
 * 500, a message and a valid JSON error body; an accepted request has every field in its
 * documented range (max_tokens, sampling values, at most 4 non-empty stop sequences of <= 256
 * bytes, logprobs, logit_bias ids and values, token ids below n_vocab, message contents present);
 * repaired UTF-8 is unchanged by a second repair, and the complete-character prefix is a prefix.
 * What it is not: the HTTP transport (libmicrohttpd's own) or generation.
 */
#include "fuzz_common.h"
#include "server/server.h"

#include <jansson.h>
#include <math.h>

#define SR_VOCAB 2048

static bool sr_in(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

int sl_fuzz_server_request(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const srv_endpoint ep = (srv_endpoint)(data[0] % 5);
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    srv_request r;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (!srv_request_parse(ep, body, len, SR_VOCAB, &r, &e)) {
        fz_require(e.status == 400 || e.status == 500, "status %d", e.status);
        fz_require(e.message[0] && e.type, "a refusal without a message");
        char *j = srv_error_json(&e);
        fz_require(j != NULL, "no error body");
        json_t *o = json_loads(j, 0, NULL);
        fz_require(o && json_is_string(json_object_get(json_object_get(o, "error"), "message")), "error body is not valid JSON: %s", j);
        json_decref(o);
        free(j);
        srv_request_free(&r);
    } else {
        fz_require(r.ep == ep, "endpoint");
        fz_require(r.max_tokens >= -1, "max_tokens %d", r.max_tokens);
        if (ep == SRV_EP_COMPLETIONS || ep == SRV_EP_CHAT) {
            fz_require(sr_in(r.sampling.temperature, 0, 2) && sr_in(r.sampling.top_p, 0, 1) && sr_in(r.sampling.min_p, 0, 1) &&
                           r.sampling.top_k >= 0 && sr_in(r.presence_penalty, -2, 2) && sr_in(r.frequency_penalty, -2, 2),
                       "sampling values out of range");
            fz_require(sl_sampler_params_check(&r.sampling, NULL), "accepted sampling parameters the sampler refuses");
        }
        fz_require(r.n_stop >= 0 && r.n_stop <= SRV_MAX_STOP, "n_stop %d", r.n_stop);
        for (int i = 0; i < r.n_stop; i++) fz_require(r.stop[i] && r.stop_len[i] > 0 && r.stop_len[i] <= SRV_MAX_STOP_LEN, "stop %d", i);
        fz_require(r.logprobs >= -1 && r.logprobs <= SRV_MAX_TOP_LOGPROBS, "logprobs %d", r.logprobs);
        for (int i = 0; i < r.n_bias; i++)
            fz_require(r.bias_ids[i] >= 0 && r.bias_ids[i] < SR_VOCAB && fabsf(r.bias_vals[i]) <= 100.0f, "logit_bias %d", i);
        for (int i = 0; i < r.n_prompt_ids; i++) fz_require(r.prompt_ids[i] >= 0 && r.prompt_ids[i] < SR_VOCAB, "prompt id");
        for (int i = 0; i < r.n_tokens; i++) fz_require(r.tokens[i] >= 0 && r.tokens[i] < SR_VOCAB, "token id");
        if (ep == SRV_EP_COMPLETIONS) fz_require(r.prompt || r.n_prompt_ids > 0, "completions without a prompt");
        if (ep == SRV_EP_CHAT) {
            fz_require(r.n_messages > 0, "chat without messages");
            for (int t = SL_CHAT_CHATML; t <= SL_CHAT_GEMMA; t++) {
                char *p = NULL;
                size_t pl = 0;
                srv_error pe;
                memset(&pe, 0, sizeof pe);
                if (srv_chat_prompt((sl_chat_template)t, r.messages, r.n_messages, &p, &pl, &pe)) fz_require(p && strlen(p) <= pl, "chat prompt");
                else fz_require(pe.status == 400 && pe.message[0] && !p, "chat prompt refused without a message");
                free(p);
            }
        }
        if (ep == SRV_EP_TOKENIZE) fz_require(r.content != NULL, "tokenize without content");
        if (ep == SRV_EP_PROPS) fz_require(r.sparsity < 0 || sr_in(r.sparsity, 0, 0.999f), "sparsity");
        srv_request_free(&r);
    }
    /* UTF-8 repair of the raw bytes */
    strbuf a = {0}, b = {0};
    fz_require(srv_utf8_append(&a, body, len) && sb_reserve(&a, 0), "utf8 append");
    fz_require(srv_utf8_append(&b, a.data, a.n) && b.n == a.n && !memcmp(a.data, b.data, a.n), "repaired UTF-8 changes on a second repair");
    fz_require(srv_utf8_complete(body, len) <= len, "complete prefix");
    free(a.data);
    free(b.data);
    return 0;
}

void sl_fuzz_server_request_write_seeds(const char *dir) {
    static const char *seeds[] = {
        "\x00{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":16,\"temperature\":0.7,\"top_p\":0.9,\"stop\":[\"\\n\",\"END\"],\"logprobs\":2,"
        "\"echo\":true,\"seed\":3,\"logit_bias\":{\"5\":-100,\"7\":2.5},\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        "\x00{\"prompt\":[1,2,3,2047],\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"top_k\":40,\"min_p\":0.05,\"repeat_penalty\":1.1}",
        "\x00{\"prompt\":[\"one\"],\"n\":1,\"best_of\":1,\"suffix\":\"\",\"user\":null}",
        "\x01{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi \\u00e9\\ud83d\\ude00\"},"
        "{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}],\"logprobs\":true,"
        "\"top_logprobs\":5,\"max_completion_tokens\":9,\"response_format\":{\"type\":\"text\"},\"tools\":[]}",
        "\x01{\"messages\":[{\"role\":\"developer\",\"content\":\"x\"}],\"stop\":\"\\n\\n\"}",
        "\x02{\"content\":\"Hello world <s>\",\"add_special\":true,\"with_pieces\":true}",
        "\x03{\"tokens\":[1,302,930]}",
        "\x04{\"sparsity\":0.5}",
        "\x00{\"prompt\":\"a\",\"max_tokens\":\"5\"}",
        "\x01[{\"role\":\"user\"}]",
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "seed-%zu", i);
        fz_write_seed(dir, name, seeds[i], 1 + strlen(seeds[i] + 1));
    }
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_server_request_write_seeds(seeds);
        exit(0);
    }
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_server_request(data, size); }
#endif
