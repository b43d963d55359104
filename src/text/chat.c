/*
 * chat.c — chat templates: a conversation (system / user / assistant messages) laid out the way a
 * model's `tokenizer.chat_template` lays it out, for the families llama.cpp recognises by markers
 * in the template text (llm_chat_detect_template in its src/llama-chat.cpp): ChatML (Qwen,
 * SmolLM...), Llama-2 and its variants, Mistral v1 / v3 / v3-tekken / v7, Llama-3, Phi-3, Gemma.
 *
 * What it is for: sl_chat_template_detect names the family (a template of a family we do not
 * render gets an error naming that family, an unrecognised one an error quoting its start), and
 * sl_chat_apply renders any number of turns. The layout of each family is the layout of its
 * real Jinja templates as transformers renders them (tests/cli_hf.sh compares with
 * @huggingface/jinja on the real templates); where llama.cpp's built-in rendering differs from
 * the real template, the real template wins and the comment says so. The text never contains
 * the first BOS (the tokenizer adds it, sl_vocab_add_bos); later BOS markers that a template puts
 * between turns ("<s>[INST]") are written as text, to be tokenized with parse_special.
 * What it is not: a Jinja engine — templates are recognised, not interpreted, so custom
 * templates of a known family render as that family's canonical one.
 */
#include "text/vocab.h"

#include "util/strbuf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chat_name {
    const char *name;   /* llama.cpp's name for the family (or ours, for a variant it has not) */
    sl_chat_template id;
} chat_name;

static const chat_name supported[] = {
    {"chatml", SL_CHAT_CHATML},
    {"llama2", SL_CHAT_LLAMA2},
    {"llama2-sys", SL_CHAT_LLAMA2_SYS},
    {"llama2-sys-bos", SL_CHAT_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", SL_CHAT_LLAMA2_SYS_STRIP},
    {"llama2-sys-bos-strip", SL_CHAT_LLAMA2_SYS_BOS_STRIP},
    {"mistral-v1", SL_CHAT_MISTRAL_V1},
    {"mistral-v3", SL_CHAT_MISTRAL_V3},
    {"mistral-v3-tekken", SL_CHAT_MISTRAL_V3_TEKKEN},
    {"mistral-v7", SL_CHAT_MISTRAL_V7},
    {"mistral-v7-tekken", SL_CHAT_MISTRAL_V7_TEKKEN},
    {"llama3", SL_CHAT_LLAMA3},
    {"phi3", SL_CHAT_PHI3},
    {"gemma", SL_CHAT_GEMMA},
};
#define N_SUPPORTED (sizeof supported / sizeof supported[0])

const char *sl_chat_template_name(sl_chat_template t) {
    for (size_t i = 0; i < N_SUPPORTED; i++)
        if (supported[i].id == t) return supported[i].name;
    return "unknown";
}

/* Families llama.cpp knows that we do not render: the name it would give and its marker test
 * (in llama.cpp's order after the families above; a NULL second marker means "any"). */
typedef struct other_family {
    const char *name;
    const char *a, *b; /* both must occur */
} other_family;

static const other_family others[] = {
    {"glmedge", "<|{{ item['role'] }}|>", "<|begin_of_image|>"},
    {"zephyr", "<|user|>", "<|endoftext|>"},
    {"monarch", "bos_token + message['role']", NULL},
};
static const other_family others_late[] = {
    {"orion", "'\\n\\nAssistant: ' + eos_token", NULL},
    {"openchat", "GPT4 Correct ", NULL},
    {"vicuna", "USER: ", "ASSISTANT: "},
    {"deepseek", "### Instruction:", "<|EOT|>"},
    {"command-r", "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"},
};
static const other_family others_after_llama3[] = {
    {"chatglm3", "[gMASK]sop", NULL},
    {"minicpm", "<\xE7\x94\xA8\xE6\x88\xB7>", NULL},
    {"deepseek2", "'Assistant: ' + message['content'] + eos_token", NULL},
    {"deepseek3", "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "User\xEF\xBD\x9C>"},
    {"exaone3", "[|system|]", "[|endofturn|]"},
    {"rwkv-world", "rwkv-world", NULL},
    {"granite", "<|start_of_role|>", NULL},
    {"gigachat", "additional_special_tokens[0] + message['content'] + additional_special_tokens[1]", NULL},
    {"megrez", "<|role_start|>", NULL},
    {"yandex", " \xD0\x90\xD1\x81\xD1\x81\xD0\xB8\xD1\x81\xD1\x82\xD0\xB5\xD0\xBD\xD1\x82:", NULL},
    {"bailing", "<role>ASSISTANT</role>", "'HUMAN'"},
    {"llama4", "<|header_start|>", "<|header_end|>"},
    {"dots1", "<|endofuserprompt|>", NULL},
    {"hunyuan-moe", "<|startoftext|>", "<|extra_4|>"},
    {"kimi-k2", "<|im_assistant|>assistant<|im_middle|>", NULL},
};

static bool has(const char *t, const char *s) { return strstr(t, s) != NULL; }

static const char *match_other(const char *t, const other_family *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (has(t, list[i].a) && (!list[i].b || has(t, list[i].b))) return list[i].name;
    return NULL;
}

static sl_status unsupported(const char *family, sl_error *err) {
    char names[512] = "";
    size_t k = 0;
    for (size_t i = 0; i < N_SUPPORTED && k < sizeof names - 32; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", supported[i].name);
    return sl_set_error(err, SL_ERR_UNSUPPORTED, "the chat template is '%s' (as llama.cpp names it), which skipllama does not render (it renders: %s)",
                        family, names);
}

sl_status sl_chat_template_detect(const char *t, sl_chat_template *out, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = SL_CHAT_UNKNOWN;
    if (!t || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_template_detect: no template");
    for (size_t i = 0; i < N_SUPPORTED; i++) /* a name given instead of a template */
        if (!strcmp(t, supported[i].name)) return *out = supported[i].id, SL_OK;
    static const char *const other_names[] = {"phi4", "falcon3", "zephyr", "monarch", "orion", "openchat", "vicuna", "vicuna-orca",
                                              "deepseek", "deepseek2", "deepseek3", "command-r", "chatglm3", "chatglm4", "glmedge",
                                              "minicpm", "exaone3", "exaone4", "rwkv-world", "granite", "gigachat", "megrez", "yandex",
                                              "bailing", "llama4", "smolvlm", "hunyuan-moe", "hunyuan-dense", "kimi-k2", "dots1", NULL};
    for (int i = 0; other_names[i]; i++)
        if (!strcmp(t, other_names[i])) return unsupported(t, err);
    const char *o;
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) return unsupported("phi4", err);
        if (has(t, "<end_of_utterance>")) return unsupported("smolvlm", err);
        return *out = SL_CHAT_CHATML, SL_OK;
    }
    if (!strncmp(t, "mistral", 7) || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return *out = SL_CHAT_MISTRAL_V7, SL_OK;
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) *out = SL_CHAT_MISTRAL_V1;
            else if (has(t, "\"[INST]\"")) *out = SL_CHAT_MISTRAL_V3_TEKKEN;
            else *out = SL_CHAT_MISTRAL_V3;
            return SL_OK;
        }
        const bool sys = has(t, "<<SYS>>"), bos = has(t, "bos_token + '[INST]"), strip = has(t, "content.strip()");
        /* llama.cpp checks strip first and so renders Meta's own Llama-2 template (strip and bos)
         * without the "<s>" between turns; we keep both */
        if (strip) *out = bos ? SL_CHAT_LLAMA2_SYS_BOS_STRIP : SL_CHAT_LLAMA2_SYS_STRIP;
        else if (bos) *out = SL_CHAT_LLAMA2_SYS_BOS;
        else *out = sys ? SL_CHAT_LLAMA2_SYS : SL_CHAT_LLAMA2;
        return SL_OK;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return *out = SL_CHAT_PHI3, SL_OK;
    if (has(t, "[gMASK]<sop>")) return unsupported("chatglm4", err);
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return unsupported(has(t, "</s>") ? "falcon3" : "glmedge", err);
    if ((o = match_other(t, others, sizeof others / sizeof others[0]))) return unsupported(o, err);
    if (has(t, "<start_of_turn>")) return *out = SL_CHAT_GEMMA, SL_OK;
    if ((o = match_other(t, others_late, sizeof others_late / sizeof others_late[0]))) {
        if (!strcmp(o, "vicuna") && has(t, "SYSTEM: ")) o = "vicuna-orca";
        return unsupported(o, err);
    }
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return *out = SL_CHAT_LLAMA3, SL_OK;
    if ((o = match_other(t, others_after_llama3, sizeof others_after_llama3 / sizeof others_after_llama3[0]))) {
        if (!strcmp(o, "exaone3") && (!has(t, "[|assistant|]"))) o = NULL;
        else if (!strcmp(o, "exaone3") && has(t, "[|tool|]")) o = "exaone4";
        else if (!strcmp(o, "deepseek3") && !has(t, "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>")) o = NULL;
        if (o) return unsupported(o, err);
    }
    if (has(t, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) return unsupported("rwkv-world", err);
    /* quote the start of the template so the user can tell which one it was */
    char head[81];
    size_t n = 0;
    for (const char *p = t; *p && n < sizeof head - 1; p++) head[n++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
    head[n] = 0;
    return sl_set_error(err, SL_ERR_UNSUPPORTED, "the chat template is not one llama.cpp or skipllama recognises (it begins \"%s%s\")", head,
                        strlen(t) > n ? "..." : "");
}

/* ---- rendering ----------------------------------------------------------------------------------- */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* s[0..*n) without leading and trailing whitespace (Jinja's trim / Python's strip, ASCII) */
static const char *trim_ws(const char *s, size_t *n) {
    while (*n && is_ws(*s)) s++, (*n)--;
    while (*n && is_ws(s[*n - 1])) (*n)--;
    return s;
}

static bool put(strbuf *b, const char *s) { return sb_append(b, s, strlen(s)); }
static bool put_trim_n(strbuf *b, const char *s, size_t n, bool trim) {
    const char *p = trim ? trim_ws(s, &n) : s;
    return sb_append(b, p, n);
}
static bool put_trim(strbuf *b, const char *s, bool trim) { return put_trim_n(b, s, strlen(s), trim); }

static bool role_is(const sl_chat_message *m, const char *r) { return !strcmp(m->role, r); }

/* The Llama-2 family ([INST] ... [/INST], llama.cpp's llama2*): flags from the template's
 * markers. With "strip", both real templates we know (Meta's, vigogne's) write assistant turns as
 * " " + content.strip() + " " + eos, and Meta's also "<s>" before each later [INST]. Without
 * <<SYS>> support the system text goes in front of the first user message, as llama.cpp does
 * (the real templates of that kind refuse a system message). */
static bool render_llama2(strbuf *b, sl_chat_template t, const sl_chat_message *m, int32_t n) {
    const bool sys = t != SL_CHAT_LLAMA2, strip = t == SL_CHAT_LLAMA2_SYS_STRIP || t == SL_CHAT_LLAMA2_SYS_BOS_STRIP;
    const bool bos = t == SL_CHAT_LLAMA2_SYS_BOS || t == SL_CHAT_LLAMA2_SYS_BOS_STRIP;
    bool ok = put(b, "[INST] "), inside = true;
    strbuf first = {0}; /* Meta's template strips the system block and the first user message together */
    for (int32_t i = 0; ok && i < n; i++) {
        if (!inside) {
            ok = put(b, bos ? "<s>[INST] " : "[INST] ");
            inside = true;
        }
        if (role_is(&m[i], "system")) {
            ok = ok && (sys ? put(&first, "<<SYS>>\n") && put(&first, m[i].content) && put(&first, "\n<</SYS>>\n\n")
                            : put(&first, m[i].content) && put(&first, "\n"));
        } else if (role_is(&m[i], "user")) {
            ok = ok && put(&first, m[i].content) && put_trim_n(b, first.data, first.n, strip) && put(b, " [/INST]");
            first.n = 0;
        } else {
            ok = ok && (strip ? put(b, " ") && put_trim(b, m[i].content, true) && put(b, " </s>") : put(b, m[i].content) && put(b, "</s>"));
            inside = false;
        }
    }
    ok = ok && (!first.n || put_trim_n(b, first.data, first.n, strip)); /* a system message and no user one */
    free(first.data);
    return ok;
}

/* Mistral's official templates (v1: " [INST] ", v3: "[INST] ", v3-tekken: "[INST]"): as the real
 * ones, the system message goes in front of the first (v1) or the last (v3, v3-tekken) user
 * message, followed by "\n\n"; llama.cpp puts it first for all three. */
static bool render_mistral(strbuf *b, sl_chat_template t, const sl_chat_message *m, int32_t n) {
    const char *inst = t == SL_CHAT_MISTRAL_V1 ? " [INST] " : t == SL_CHAT_MISTRAL_V3 ? "[INST] " : "[INST]";
    const char *end = t == SL_CHAT_MISTRAL_V1 ? " [/INST]" : "[/INST]";
    const char *system = NULL;
    int32_t first_user = -1, last_user = -1;
    for (int32_t i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) system = m[i].content;
        if (role_is(&m[i], "user")) last_user = i, first_user = first_user < 0 ? i : first_user;
    }
    const int32_t sys_at = t == SL_CHAT_MISTRAL_V1 ? first_user : last_user;
    bool ok = true;
    for (int32_t i = 0; ok && i < n; i++) {
        if (role_is(&m[i], "system")) continue;
        if (role_is(&m[i], "user")) {
            ok = put(b, inst) && (!system || i != sys_at || (put(b, system) && put(b, "\n\n"))) && put(b, m[i].content) && put(b, end);
        } else {
            ok = (t == SL_CHAT_MISTRAL_V3_TEKKEN || put(b, " ")) && put_trim(b, m[i].content, t == SL_CHAT_MISTRAL_V3) && put(b, "</s>");
        }
    }
    return ok;
}

sl_status sl_chat_apply(sl_chat_template t, const sl_chat_message *msgs, int32_t n, bool add_assistant, char **out,
                        size_t *out_len, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!out || n < 0 || (n && !msgs)) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_apply: bad argument");
    if (!strcmp(sl_chat_template_name(t), "unknown")) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_apply: unknown template %d", (int)t);
    const bool any_role = t == SL_CHAT_CHATML || t == SL_CHAT_LLAMA3 || t == SL_CHAT_PHI3;
    for (int32_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_apply: message %d has no role or content", i);
        if (!any_role && !role_is(&msgs[i], "system") && !role_is(&msgs[i], "user") && !role_is(&msgs[i], "assistant"))
            return sl_set_error(err, SL_ERR_INVALID_ARG, "chat template '%s' knows the roles system, user and assistant, not '%.40s'",
                                sl_chat_template_name(t), msgs[i].role);
        if (!any_role && t != SL_CHAT_MISTRAL_V7 && role_is(&msgs[i], "system") && i > 0)
            return sl_set_error(err, SL_ERR_INVALID_ARG, "chat template '%s' takes a system message only as the first message",
                                sl_chat_template_name(t));
    }
    strbuf b = {0};
    bool ok = sb_reserve(&b, 0);
    switch (t) {
    case SL_CHAT_CHATML:
        for (int32_t i = 0; ok && i < n; i++)
            ok = put(&b, "<|im_start|>") && put(&b, msgs[i].role) && put(&b, "\n") && put(&b, msgs[i].content) && put(&b, "<|im_end|>\n");
        ok = ok && (!add_assistant || put(&b, "<|im_start|>assistant\n"));
        break;
    case SL_CHAT_LLAMA3:
        for (int32_t i = 0; ok && i < n; i++)
            ok = put(&b, "<|start_header_id|>") && put(&b, msgs[i].role) && put(&b, "<|end_header_id|>\n\n") &&
                 put_trim(&b, msgs[i].content, true) && put(&b, "<|eot_id|>");
        ok = ok && (!add_assistant || put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n"));
        break;
    case SL_CHAT_PHI3:
        for (int32_t i = 0; ok && i < n; i++)
            ok = put(&b, "<|") && put(&b, msgs[i].role) && put(&b, "|>\n") && put(&b, msgs[i].content) && put(&b, "<|end|>\n");
        ok = ok && (!add_assistant || put(&b, "<|assistant|>\n"));
        break;
    case SL_CHAT_GEMMA: {
        /* Gemma 3's template: the system text + "\n\n" in front of the first turn, contents trimmed,
         * "assistant" is "model" (Gemma 1/2's templates refuse a system message) */
        const char *prefix = NULL;
        for (int32_t i = 0; ok && i < n; i++) {
            if (role_is(&msgs[i], "system")) {
                prefix = msgs[i].content;
                continue;
            }
            ok = put(&b, "<start_of_turn>") && put(&b, role_is(&msgs[i], "assistant") ? "model" : msgs[i].role) && put(&b, "\n") &&
                 (!prefix || (put(&b, prefix) && put(&b, "\n\n"))) && put_trim(&b, msgs[i].content, true) && put(&b, "<end_of_turn>\n");
            prefix = NULL;
        }
        ok = ok && (!add_assistant || put(&b, "<start_of_turn>model\n"));
        break;
    }
    case SL_CHAT_MISTRAL_V7:
    case SL_CHAT_MISTRAL_V7_TEKKEN: {
        const char *sp = t == SL_CHAT_MISTRAL_V7 ? " " : "";
        for (int32_t i = 0; ok && i < n; i++) {
            if (role_is(&msgs[i], "system")) ok = put(&b, "[SYSTEM_PROMPT]") && put(&b, sp) && put(&b, msgs[i].content) && put(&b, "[/SYSTEM_PROMPT]");
            else if (role_is(&msgs[i], "user")) ok = put(&b, "[INST]") && put(&b, sp) && put(&b, msgs[i].content) && put(&b, "[/INST]");
            else ok = put(&b, sp) && put(&b, msgs[i].content) && put(&b, "</s>");
        }
        break;
    }
    case SL_CHAT_MISTRAL_V1:
    case SL_CHAT_MISTRAL_V3:
    case SL_CHAT_MISTRAL_V3_TEKKEN: ok = ok && render_mistral(&b, t, msgs, n); break;
    default: ok = ok && render_llama2(&b, t, msgs, n); break;
    }
    if (!ok) {
        free(b.data);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    }
    *out = b.data;
    if (out_len) *out_len = b.n;
    return SL_OK;
}

sl_status sl_vocab_chat_template_id(const sl_vocab *v, sl_chat_template *out, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = SL_CHAT_UNKNOWN;
    if (!v || !out) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_vocab_chat_template_id: bad argument");
    if (!v->chat_template)
        return sl_set_error(err, SL_ERR_UNSUPPORTED, "the model has no tokenizer.chat_template (not an instruct model?)");
    return sl_chat_template_detect(v->chat_template, out, err);
}

sl_status sl_chat_format(const sl_vocab *v, const char *system, const char *user, size_t user_len, char **out,
                         size_t *out_len, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!v || !out || (!user && user_len)) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_chat_format: bad argument");
    sl_chat_template t;
    sl_status st = sl_vocab_chat_template_id(v, &t, err);
    if (st != SL_OK) return st;
    char *u = malloc(user_len + 1);
    if (!u) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    if (user_len) memcpy(u, user, user_len);
    u[user_len] = 0;
    sl_chat_message m[2] = {{"system", system}, {"user", u}};
    st = sl_chat_apply(t, system ? m : m + 1, system ? 2 : 1, true, out, out_len, err);
    free(u);
    return st;
}
