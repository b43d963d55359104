/*
 * httpc.h — a minimal HTTP/1.1 client for the server's tests (tests/test_server.c) and its load
 * generator (tests/tools/http_load.c): one request per connection ("Connection: close"),
 * loopback only, chunked answers decoded, every read bounded by a timeout. Header-only (static
 * functions) so both can include it. What it is not: a general client — no TLS, redirects,
 * keep-alive or proxies.
 */
#ifndef SL_TESTS_HTTPC_H
#define SL_TESTS_HTTPC_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct httpc_resp {
    int status;      /* HTTP status, 0 when none was read */
    char *head;      /* status line and headers (NUL-terminated) */
    char *body;      /* body, de-chunked, NUL-terminated */
    size_t body_len;
} httpc_resp;

static void httpc_free(httpc_resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Connect to 127.0.0.1:port and send the request; returns the socket or -1. */
static int httpc_send(int port, const char *method, const char *path, const char *extra_headers, const char *body, size_t body_len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%sContent-Length: %zu\r\n\r\n", method, path, port,
                     extra_headers ? extra_headers : "", body && !strstr(extra_headers ? extra_headers : "", "Content-Type") ?
                     "Content-Type: application/json\r\n" : "", body ? body_len : 0);
    if (n < 0 || (size_t)n >= sizeof head) {
        close(fd);
        return -1;
    }
    const char *parts[2] = {head, body};
    size_t lens[2] = {(size_t)n, body ? body_len : 0};
    for (int i = 0; i < 2; i++)
        for (size_t off = 0; off < lens[i];) {
            ssize_t w = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                if (w < 0 && errno == EINTR) continue;
                return fd; /* the server may answer (413) before reading everything: read what it says */
            }
            off += (size_t)w;
        }
    return fd;
}

/* Read up to max bytes (or until the peer closes) within timeout_ms; returns the bytes read
 * (malloc'd, NUL-terminated) and their count in *n. */
static char *httpc_read(int fd, size_t max, int timeout_ms, size_t *n) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    while (len < max) {
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, timeout_ms);
        if (pr <= 0) break;
        if (len == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) break;
            buf = nb, cap *= 2;
        }
        size_t want = cap - len < max - len ? cap - len : max - len;
        ssize_t r = recv(fd, buf + len, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* The value of header name in head (copied into out, at most n bytes), or false. */
static bool httpc_header(const char *head, const char *name, char *out, size_t n) {
    size_t nl = strlen(name);
    for (const char *p = head; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ') p++;
            size_t k = strcspn(p, "\r\n");
            if (k >= n) k = n - 1;
            memcpy(out, p, k);
            out[k] = 0;
            return true;
        }
    }
    return false;
}

/* Split raw bytes into status, head and (de-chunked) body. */
static void httpc_parse(char *raw, size_t n, httpc_resp *out) {
    memset(out, 0, sizeof(*out));
    char *sep = strstr(raw, "\r\n\r\n");
    if (!sep || sscanf(raw, "HTTP/1.%*d %d", &out->status) != 1) {
        out->status = 0;
        out->head = raw;
        out->body = strdup("");
        return;
    }
    size_t hl = (size_t)(sep - raw);
    out->head = malloc(hl + 1);
    memcpy(out->head, raw, hl);
    out->head[hl] = 0;
    const char *b = sep + 4;
    size_t bl = n - hl - 4;
    out->body = malloc(bl + 1);
    char te[64];
    const bool chunked = httpc_header(out->head, "Transfer-Encoding", te, sizeof te) && strcasestr(te, "chunked");
    if (!chunked) {
        memcpy(out->body, b, bl);
        out->body_len = bl;
    } else {
        size_t o = 0, i = 0;
        while (i < bl) {
            char *end;
            unsigned long k = strtoul(b + i, &end, 16);
            const char *crlf = strstr(b + i, "\r\n");
            if (!crlf || end == b + i) break;
            i = (size_t)(crlf - b) + 2;
            if (k == 0 || i + k > bl) {
                if (k && i < bl) { /* truncated chunk: keep what arrived */
                    memcpy(out->body + o, b + i, bl - i);
                    o += bl - i;
                }
                break;
            }
            memcpy(out->body + o, b + i, k);
            o += k;
            i += k + 2;
        }
        out->body_len = o;
    }
    out->body[out->body_len] = 0;
    free(raw);
}

/* One request; 0 with *out filled, -1 when the server could not be reached. */
static int httpc_request(int port, const char *method, const char *path, const char *extra_headers, const char *body, size_t body_len,
                         httpc_resp *out, int timeout_ms) {
    memset(out, 0, sizeof(*out));
    int fd = httpc_send(port, method, path, extra_headers, body, body_len);
    if (fd < 0) return -1;
    size_t n;
    char *raw = httpc_read(fd, (size_t)64 << 20, timeout_ms, &n);
    close(fd);
    if (!raw) return -1;
    httpc_parse(raw, n, out);
    return 0;
}

#endif
