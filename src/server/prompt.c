/*
 * prompt.c — from a chat request's messages to prompt text, and UTF-8 repair for JSON output.
 *
 * The messages are laid out in the model's chat template as llama.cpp's built-in templates do:
 * Llama-3 when tokenizer.chat_template has "<|start_header_id|>", Llama-2 when it has "[INST]",
 * and ChatML (llama.cpp's default) otherwise, also for models without a template. Content is
 * trimmed of surrounding whitespace as llama.cpp does; BOS is left to the tokenizer. For one
 * system and one user message the text equals sl_chat_format's, so `skipllama run --chat` and
 * the server see the same tokens. What it is not: a Jinja engine, and not the library's chat
 * templates (src/text/chat.c) — multi-turn layouts for more families belong there, and this
 * file should then call them.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

static const char *trim(const char *s, size_t *n) {
    while (*n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++, (*n)--;
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\n' || s[*n - 1] == '\r')) (*n)--;
    return s;
}

static const char *role_name(srv_role r) { return r == SRV_ROLE_SYSTEM ? "system" : r == SRV_ROLE_USER ? "user" : "assistant"; }

bool srv_chat_prompt(const char *tmpl, const srv_message *msgs, int32_t n, char **out, size_t *out_len, srv_error *e) {
    enum { LLAMA3, LLAMA2, CHATML } kind = !tmpl ? CHATML : strstr(tmpl, "<|start_header_id|>") ? LLAMA3 : strstr(tmpl, "[INST]") ? LLAMA2 : CHATML;
    strbuf b = {0};
    bool ok = sb_reserve(&b, 0);
    if (kind == LLAMA2) ok = ok && sb_str(&b, "[INST] ");
    bool inside_turn = true;
    for (int32_t i = 0; i < n && ok; i++) {
        size_t len = msgs[i].len;
        const char *c = trim(msgs[i].content, &len);
        const char *role = role_name(msgs[i].role);
        switch (kind) {
        case LLAMA3:
            ok = sb_str(&b, "<|start_header_id|>") && sb_str(&b, role) && sb_str(&b, "<|end_header_id|>\n\n") && sb_append(&b, c, len) &&
                 sb_str(&b, "<|eot_id|>");
            break;
        case LLAMA2: /* llama.cpp's llama2 layout: [INST] <<SYS>>\ns\n<</SYS>>\n\nu [/INST]a</s><s>[INST] u2 [/INST] */
            if (!inside_turn) {
                ok = sb_str(&b, "<s>[INST] ");
                inside_turn = true;
            }
            if (msgs[i].role == SRV_ROLE_SYSTEM) ok = ok && sb_str(&b, "<<SYS>>\n") && sb_append(&b, c, len) && sb_str(&b, "\n<</SYS>>\n\n");
            else if (msgs[i].role == SRV_ROLE_USER) ok = ok && sb_append(&b, c, len) && sb_str(&b, " [/INST]");
            else {
                ok = ok && sb_append(&b, c, len) && sb_str(&b, "</s>");
                inside_turn = false;
            }
            break;
        case CHATML:
            ok = sb_str(&b, "<|im_start|>") && sb_str(&b, role) && sb_str(&b, "\n") && sb_append(&b, c, len) && sb_str(&b, "<|im_end|>\n");
            break;
        }
    }
    if (kind == LLAMA3) ok = ok && sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (kind == CHATML) ok = ok && sb_str(&b, "<|im_start|>assistant\n");
    if (!ok) {
        free(b.data);
        return srv_fail(e, 500, "server_error", NULL, "messages", "out of memory");
    }
    *out = b.data;
    *out_len = b.n;
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
