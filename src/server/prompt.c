/*
 * prompt.c — from a chat request's messages to prompt text, and UTF-8 repair for JSON output.
 *
 * The messages are rendered by the library's chat templates (sl_chat_apply, src/text/chat.c) in
 * the family detected from the model's tokenizer.chat_template, and in ChatML (llama.cpp's
 * default) when the model has no template or one the library does not know. BOS is left to the
 * tokenizer. For one system and one user message the text equals sl_chat_format's, so `skipllama
 * run --chat` and the server see the same tokens. What it is not: the templates themselves.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

sl_chat_template srv_chat_template_of(const sl_vocab *vocab) {
    sl_chat_template t = SL_CHAT_UNKNOWN;
    if (!vocab || sl_vocab_chat_template_id(vocab, &t, NULL) != SL_OK || t == SL_CHAT_UNKNOWN) t = SL_CHAT_CHATML;
    return t;
}

static const char *role_name(srv_role r) { return r == SRV_ROLE_SYSTEM ? "system" : r == SRV_ROLE_USER ? "user" : "assistant"; }

bool srv_chat_prompt(sl_chat_template tmpl, const srv_message *msgs, int32_t n, char **out, size_t *out_len, srv_error *e) {
    sl_chat_message *m = malloc((size_t)(n > 0 ? n : 1) * sizeof(*m));
    if (!m) return srv_fail(e, 500, "server_error", NULL, "messages", "out of memory");
    for (int32_t i = 0; i < n; i++) m[i] = (sl_chat_message){role_name(msgs[i].role), msgs[i].content};
    sl_error err;
    char *text = NULL;
    size_t len = 0;
    sl_status st = sl_chat_apply(tmpl, m, n, true, &text, &len, &err);
    free(m);
    if (st != SL_OK) /* a conversation the family cannot express (e.g. roles out of order) */
        return srv_fail(e, st == SL_ERR_NOMEM ? 500 : 400, st == SL_ERR_NOMEM ? "server_error" : "invalid_request_error", NULL, "messages",
                        "the messages cannot be laid out in the model's %s chat template: %s", sl_chat_template_name(tmpl), err.message);
    *out = text;
    *out_len = len;
    return true;
}

/* The UTF-8 character at s[0..n): its length (1..4) when valid; 0 when invalid, with *skip = the
 * bytes to replace by one U+FFFD (the "maximal subpart": a valid start cut short counts as one);
 * -1 when s is a valid start that the end of the buffer cuts. */
static int utf8_char(const unsigned char *s, size_t n, size_t *skip) {
    const unsigned char c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    *skip = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* <= U+10FFFF */
    } else
        return 0;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) {
            *skip = (size_t)k;
            return -1;
        }
        const unsigned lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) {
            *skip = (size_t)k;
            return 0;
        }
    }
    return len;
}

bool srv_utf8_append(strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* valid bytes pending copy: u[i - run .. i) */
    while (i < n) {
        size_t skip;
        int k = utf8_char(u + i, n - i, &skip);
        if (k > 0) {
            i += (size_t)k;
            run += (size_t)k;
            continue;
        }
        if (!sb_append(b, u + i - run, run) || !sb_append(b, "\xEF\xBF\xBD", 3)) return false;
        run = 0;
        i += skip;
    }
    return sb_append(b, u + i - run, run);
}

size_t srv_utf8_complete(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t skip;
        int k = utf8_char(u + i, n - i, &skip);
        if (k < 0) break; /* an incomplete character at the end */
        i += k > 0 ? (size_t)k : skip;
    }
    return i;
}
