/*
 * http_load.c — load and fault generator for `skipllama serve` (tests/cli_server_load.sh).
 *
 *   http_load PORT CLIENTS REQUESTS SEED
 *
 * First it asks for the greedy completion of each of a few prompts, one at a time, and keeps the
 * texts. Then CLIENTS threads send REQUESTS requests each, drawn at random (seeded): the same
 * greedy completions (plain, or streamed as completions or chat), streams the client abandons
 * after a random number of bytes, requests it abandons without reading, malformed bodies (bad
 * JSON, wrong types, out-of-range values) and bodies over the 1 MiB cap. Every answer is checked:
 * a valid request must get 200 with exactly the text it got alone (or 503 with Retry-After when
 * the queue is full), a malformed one 400, an oversized one 413 — each with a JSON error object.
 * Prints one line per kind of request and "ok"/"not ok" lines; exits 1 on any wrong answer or a
 * connection that failed. What it is not: a benchmark (bench/serve_bench.mjs measures speed).
 */
#include "../httpc.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define N_PROMPTS 4
#define MAX_TOKENS 12
#define TIMEOUT_MS 120000

static const char *prompts[N_PROMPTS] = {"It was a dark and stormy night", "Call me Ishmael.", "In the beginning God created",
                                         "The light of the sun"};
static char *expected[N_PROMPTS];
static int g_port, g_requests;

enum { K_PLAIN, K_STREAM, K_CHAT_STREAM, K_ABANDON_STREAM, K_ABANDON, K_MALFORMED, K_OVERSIZED, K_N };
static const char *kind_name[K_N] = {"completion", "completion stream", "chat stream", "abandoned stream", "abandoned request",
                                     "malformed body", "oversized body"};
static atomic_int n_sent[K_N], n_ok[K_N], n_busy[K_N], n_bad[K_N];

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void completion_body(char *buf, size_t n, int p, bool stream) {
    snprintf(buf, n, "{\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0%s}", prompts[p], MAX_TOKENS,
             stream ? ",\"stream\":true" : "");
}

/* the text of a non-streamed completion, or NULL */
static char *plain_text(const httpc_resp *r) {
    json_t *j = json_loads(r->body, 0, NULL);
    const char *t = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    char *out = t ? strdup(t) : NULL;
    json_decref(j);
    return out;
}

/* the text of an SSE stream (completion "text" or chat "delta.content"), NULL unless it ends with [DONE] */
static char *stream_text(const httpc_resp *r) {
    size_t cap = r->body_len + 1, len = 0;
    char *out = calloc(1, cap);
    bool done = false;
    for (const char *p = r->body; out && (p = strstr(p, "data: ")); p += 6) {
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        if (!strncmp(p + 6, "[DONE]", 6)) {
            done = true;
            break;
        }
        json_t *c = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        const char *piece = json_string_value(json_object_get(ch, "text"));
        if (!piece) piece = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
        if (!c || json_object_get(c, "error")) {
            json_decref(c);
            break;
        }
        if (piece && len + strlen(piece) < cap) memcpy(out + len, piece, strlen(piece)), len += strlen(piece);
        json_decref(c);
    }
    if (!done) {
        free(out);
        return NULL;
    }
    return out;
}

static bool is_error_json(const httpc_resp *r, const char *type) {
    json_t *j = json_loads(r->body, 0, NULL), *e = json_object_get(j, "error");
    bool ok = json_is_string(json_object_get(e, "message")) && json_is_string(json_object_get(e, "type")) &&
              (!type || !strcmp(json_string_value(json_object_get(e, "type")), type));
    json_decref(j);
    return ok;
}

static bool busy(const httpc_resp *r) {
    char ra[16];
    return r->status == 503 && httpc_header(r->head, "Retry-After", ra, sizeof ra) && is_error_json(r, NULL);
}

static const char *malformed[] = {
    "{\"prompt\":", "not json at all", "[]", "{\"prompt\":\"a\",\"max_tokens\":\"many\"}", "{\"prompt\":\"a\",\"temperature\":-1}",
    "{\"prompt\":[1,99999]}", "{\"messages\":7}", "{\"prompt\":\"a\",\"stop\":[1,2]}", "\xff\xfe{\"prompt\":\"a\"}", "{\"prompt\":\"a\",\"n\":3}",
};

static void one(int kind, uint64_t *seed) {
    char body[1024];
    httpc_resp r;
    const int p = (int)(rnd(seed) % N_PROMPTS);
    atomic_fetch_add(&n_sent[kind], 1);
    bool ok = false, was_busy = false;
    switch (kind) {
    case K_PLAIN:
    case K_STREAM:
        completion_body(body, sizeof body, p, kind == K_STREAM);
        if (httpc_request(g_port, "POST", "/v1/completions", NULL, body, strlen(body), &r, TIMEOUT_MS) != 0) break;
        if ((was_busy = busy(&r))) {
            ok = true;
        } else if (r.status == 200) {
            char *t = kind == K_PLAIN ? plain_text(&r) : stream_text(&r);
            ok = t && !strcmp(t, expected[p]);
            if (!ok) fprintf(stderr, "  %s: got '%s', want '%s'\n", kind_name[kind], t ? t : "(none)", expected[p]);
            free(t);
        }
        httpc_free(&r);
        break;
    case K_CHAT_STREAM: /* chat: the text is only checked to be there and well formed (another prompt layout) */
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"stream\":true,\"temperature\":0}",
                 prompts[p], MAX_TOKENS);
        if (httpc_request(g_port, "POST", "/v1/chat/completions", NULL, body, strlen(body), &r, TIMEOUT_MS) != 0) break;
        if ((was_busy = busy(&r))) ok = true;
        else if (r.status == 200) {
            char *t = stream_text(&r);
            ok = t != NULL;
            free(t);
        }
        httpc_free(&r);
        break;
    case K_ABANDON_STREAM:
    case K_ABANDON: {
        snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":200,\"stream\":%s}", prompts[p], kind == K_ABANDON_STREAM ? "true" : "false");
        int fd = httpc_send(g_port, "POST", "/v1/completions", NULL, body, strlen(body));
        if (fd < 0) break;
        if (kind == K_ABANDON_STREAM) {
            size_t n;
            free(httpc_read(fd, 1 + rnd(seed) % 2000, TIMEOUT_MS, &n));
        } else {
            usleep((useconds_t)(rnd(seed) % 20000));
        }
        close(fd);
        ok = true;
        break;
    }
    case K_MALFORMED: {
        const char *m = malformed[rnd(seed) % (sizeof malformed / sizeof malformed[0])];
        const char *path = rnd(seed) % 2 ? "/v1/completions" : "/v1/chat/completions";
        if (httpc_request(g_port, "POST", path, NULL, m, strlen(m), &r, TIMEOUT_MS) != 0) break;
        ok = r.status == 400 && is_error_json(&r, "invalid_request_error");
        if (!ok) fprintf(stderr, "  malformed '%s' -> %d %s\n", m, r.status, r.body);
        httpc_free(&r);
        break;
    }
    case K_OVERSIZED: {
        size_t n = ((size_t)1 << 20) + 1 + rnd(seed) % 100000;
        char *big = malloc(n);
        if (!big) break;
        memset(big, 'x', n);
        memcpy(big, "{\"prompt\":\"", 11);
        if (httpc_request(g_port, "POST", "/v1/completions", NULL, big, n, &r, TIMEOUT_MS) == 0) {
            ok = r.status == 413 && is_error_json(&r, NULL);
            httpc_free(&r);
        }
        free(big);
        break;
    }
    }
    atomic_fetch_add(ok ? (was_busy ? &n_busy[kind] : &n_ok[kind]) : &n_bad[kind], 1);
}

static void *client(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < g_requests; i++) {
        const int d = (int)(rnd(&seed) % 100);
        const int kind = d < 35 ? K_PLAIN : d < 50 ? K_STREAM : d < 60 ? K_CHAT_STREAM : d < 72 ? K_ABANDON_STREAM : d < 80 ? K_ABANDON
                         : d < 93 ? K_MALFORMED : K_OVERSIZED;
        one(kind, &seed);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: http_load PORT CLIENTS REQUESTS SEED\n");
        return 2;
    }
    g_port = atoi(argv[1]);
    const int clients = atoi(argv[2]);
    g_requests = atoi(argv[3]);
    const uint64_t seed = strtoull(argv[4], NULL, 10);
    if (clients < 1 || clients > 1024 || g_requests < 1) return 2;
    for (int p = 0; p < N_PROMPTS; p++) {
        char body[512];
        httpc_resp r;
        completion_body(body, sizeof body, p, false);
        if (httpc_request(g_port, "POST", "/v1/completions", NULL, body, strlen(body), &r, TIMEOUT_MS) != 0 || r.status != 200 ||
            !(expected[p] = plain_text(&r))) {
            printf("not ok reference completion %d (status %d)\n", p, r.status);
            return 1;
        }
        httpc_free(&r);
    }
    printf("ok %d reference completions, alone\n", N_PROMPTS);
    pthread_t *th = malloc(sizeof(pthread_t) * (size_t)clients);
    for (int i = 0; i < clients; i++) pthread_create(&th[i], NULL, client, (void *)(uintptr_t)(seed * 1000 + (uint64_t)i + 1));
    for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
    int bad = 0, total = 0, busy_total = 0;
    for (int k = 0; k < K_N; k++) {
        printf("  %-18s sent %4d  ok %4d  503 %4d  wrong %d\n", kind_name[k], n_sent[k], n_ok[k], n_busy[k], n_bad[k]);
        bad += n_bad[k];
        total += n_sent[k];
        busy_total += n_busy[k];
    }
    printf("%s %d clients x %d requests: %d answered as expected (%d of them 503), %d wrong\n", bad ? "not ok" : "ok", clients, g_requests,
           total - bad, busy_total, bad);
    /* healthy afterwards: abandoned work is freed (no slot busy, nothing queued), /health, a right answer */
    bool idle = false;
    for (int i = 0; i < 3000 && !idle; i++) {
        httpc_resp r;
        if (httpc_request(g_port, "GET", "/metrics", NULL, NULL, 0, &r, TIMEOUT_MS) == 0)
            idle = strstr(r.body, "\nskipllama_slots_busy 0\n") && strstr(r.body, "\nskipllama_queue_length 0\n");
        httpc_free(&r);
        if (!idle) usleep(10000);
    }
    printf("%s afterwards no slot is busy and nothing is queued\n", idle ? "ok" : "not ok");
    httpc_resp r;
    bool health = httpc_request(g_port, "GET", "/health", NULL, NULL, 0, &r, TIMEOUT_MS) == 0 && r.status == 200 && !strcmp(r.body, "{\"status\":\"ok\"}");
    httpc_free(&r);
    printf("%s afterwards /health is ok\n", health ? "ok" : "not ok");
    char body[512];
    completion_body(body, sizeof body, 0, false);
    char *t = NULL;
    if (httpc_request(g_port, "POST", "/v1/completions", NULL, body, strlen(body), &r, TIMEOUT_MS) == 0 && r.status == 200) t = plain_text(&r);
    httpc_free(&r);
    const bool again = t && !strcmp(t, expected[0]);
    printf("%s afterwards a completion is answered as before\n", again ? "ok" : "not ok");
    free(t);
    bad += !idle + !health + !again;
    for (int p = 0; p < N_PROMPTS; p++) free(expected[p]);
    free(th);
    return bad ? 1 : 0;
}
