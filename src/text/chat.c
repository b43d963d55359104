/*
 * chat.c — chat templates: a system and a user message formatted the way the model's
 * `tokenizer.chat_template` expects (sl_chat_format). What it is not: a Jinja engine; templates
 * are recognized, not interpreted.
 */
#include "text/vocab.h"

#include "util/strbuf.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- chat templates ---------------------------------------------------------------------------- */

/* s[0..*n) without leading and trailing whitespace (llama.cpp trims chat messages) */
static const char *trim_ws(const char *s, size_t *n) {
    while (*n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
        (*n)--;
    }
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\n' || s[*n - 1] == '\r')) (*n)--;
    return s;
}


sl_status sl_chat_format(const sl_vocab *v, const char *system, const char *user, size_t user_len, char **out,
                         size_t *out_len, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!v || !out || (!user && user_len)) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_format: bad argument");
    const char *tmpl = v->chat_template;
    if (!tmpl)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "the model has no tokenizer.chat_template (not an instruct model?)");
    size_t un = user_len, sn = system ? strlen(system) : 0;
    const char *u = trim_ws(user ? user : "", &un);
    const char *sys = system ? trim_ws(system, &sn) : NULL;
    strbuf b = {0};
    bool ok;
    if (strstr(tmpl, "<|start_header_id|>")) { /* Llama 3 */
        ok = sb_reserve(&b, 0);
        if (sys)
            ok = ok && sb_str(&b, "<|start_header_id|>system<|end_header_id|>\n\n") && sb_append(&b, sys, sn) &&
                 sb_str(&b, "<|eot_id|>");
        ok = ok && sb_str(&b, "<|start_header_id|>user<|end_header_id|>\n\n") && sb_append(&b, u, un) &&
             sb_str(&b, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (strstr(tmpl, "[INST]")) { /* Llama 2 */
        ok = sb_str(&b, "[INST] ");
        if (sys) ok = ok && sb_str(&b, "<<SYS>>\n") && sb_append(&b, sys, sn) && sb_str(&b, "\n<</SYS>>\n\n");
        ok = ok && sb_append(&b, u, un) && sb_str(&b, " [/INST]");
    } else {
        return sl_set_error(err, SL_ERR_UNSUPPORTED,
                            "the model's chat template is neither Llama-2 ([INST]) nor Llama-3 (<|start_header_id|>)");
    }
    if (!ok) {
        free(b.data);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    }
    *out = b.data;
    if (out_len) *out_len = b.n;
    return SL_OK;
}
