/*
 * chat_session.c — see chat_session.h: the conversation, the text the cache stands for, one turn.
 */
#include "chat_session.h"

#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

static bool text_append(chat_session *s, const char *p, size_t n) {
    if (s->text_len + n + 1 > s->text_cap) {
        size_t nc = s->text_cap ? s->text_cap * 2 : 4096;
        while (nc < s->text_len + n + 1) nc *= 2;
        char *q = realloc(s->text, nc);
        if (!q) return false;
        s->text = q;
        s->text_cap = nc;
    }
    memcpy(s->text + s->text_len, p, n);
    s->text_len += n;
    s->text[s->text_len] = 0;
    return true;
}

static bool mark(chat_session *s) {
    if (!grow((void **)&s->marks, &s->cap_marks, s->n_marks + 1, sizeof(chat_mark))) return false;
    s->marks[s->n_marks++] = (chat_mark){sl_context_n_past(s->ctx), s->text_len};
    return true;
}

static bool push_msg(chat_session *s, const char *role, const char *content, size_t len) {
    if (!grow((void **)&s->msgs, &s->cap_msgs, s->n_msgs + 1, sizeof(sl_chat_message))) return false;
    char *r = strdup(role), *c = malloc(len + 1);
    if (!r || !c) {
        free(r);
        free(c);
        return false;
    }
    memcpy(c, content, len);
    c[len] = 0;
    s->msgs[s->n_msgs++] = (sl_chat_message){r, c};
    return true;
}

static void pop_msg(chat_session *s) {
    s->n_msgs--;
    free((char *)s->msgs[s->n_msgs].role);
    free((char *)s->msgs[s->n_msgs].content);
}

int chat_session_init(chat_session *s, const char *cmd, const sl_vocab *vocab, sl_context *ctx, sl_sampler *smpl,
                      sl_chat_template tmpl, int32_t n_vocab, int n_predict, bool special, bool add_bos, const char *system) {
    memset(s, 0, sizeof *s);
    s->cmd = cmd;
    s->vocab = vocab;
    s->ctx = ctx;
    s->smpl = smpl;
    s->tmpl = tmpl;
    s->n_vocab = n_vocab;
    s->n_predict = n_predict;
    s->special = special;
    s->add_bos = add_bos;
    s->logits = malloc((size_t)n_vocab * sizeof(float));
    if (!s->logits || !text_append(s, "", 0) || (system && !push_msg(s, "system", system, strlen(system))))
        return cli_fail(cmd, "out of memory");
    return 0;
}

void chat_session_free(chat_session *s) {
    while (s->n_msgs) pop_msg(s);
    free(s->msgs);
    free(s->text);
    free(s->marks);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

void chat_session_clear(chat_session *s) {
    while (s->n_msgs && !(s->n_msgs == 1 && !strcmp(s->msgs[0].role, "system"))) pop_msg(s);
    s->text_len = 0;
    s->text[0] = 0;
    s->n_marks = 0;
    sl_context_reset(s->ctx);
    sl_sampler_reset(s->smpl);
}

/* Cut the cache back to the last mark inside the first `common` bytes of the session text. */
static int keep_prefix(chat_session *s, size_t common) {
    int m = s->n_marks;
    while (m > 0 && s->marks[m - 1].text_end > common) m--;
    const chat_mark keep = m ? s->marks[m - 1] : (chat_mark){0, 0};
    if (keep.text_end == s->text_len) return 0;
    sl_error err;
    if (sl_context_truncate(s->ctx, keep.n_past, &err) != SL_OK) return cli_fail_err(s->cmd, &err);
    s->n_marks = m;
    s->text_len = keep.text_end;
    s->text[s->text_len] = 0;
    return 0;
}

/* Sample, stream and evaluate the reply; its text is appended to the session text. */
static int generate(chat_session *s, FILE *out, chat_turn_stats *st, size_t *reply_start) {
    sl_error err;
    sl_detok *detok = sl_detok_init(s->vocab, s->special, &err);
    if (!detok) return cli_fail_err(s->cmd, &err);
    int rc = 0;
    *reply_start = s->text_len;
    const double t0 = now_s();
    for (;;) {
        if (s->n_predict >= 0 && st->n_gen >= s->n_predict) {
            snprintf(st->stop, sizeof st->stop, "generated the %d tokens asked for (-n)", s->n_predict);
            break;
        }
        if (sl_context_n_past(s->ctx) >= sl_context_n_ctx(s->ctx)) {
            snprintf(st->stop, sizeof st->stop, "the context is full (%d tokens; raise -c for more)", sl_context_n_ctx(s->ctx));
            break;
        }
        int32_t tok = sl_sampler_sample(s->smpl, s->logits, s->n_vocab);
        if (tok < 0) {
            rc = cli_fail(s->cmd, "the model produced no usable logits (all -inf or NaN)");
            break;
        }
        sl_sampler_accept(s->smpl, tok);
        if (sl_vocab_is_eog(s->vocab, tok)) {
            size_t tl;
            const char *tt = sl_vocab_token_text(s->vocab, tok, &tl);
            snprintf(st->stop, sizeof st->stop, "end of generation (token %d '%.*s')", tok, (int)(tl < 40 ? tl : 40), tt ? tt : "");
            break;
        }
        const char *piece;
        size_t pl;
        if (sl_detok_push(detok, tok, &piece, &pl, &err) != SL_OK) {
            rc = cli_fail_err(s->cmd, &err);
            break;
        }
        fwrite(piece, 1, pl, out);
        fflush(out);
        st->n_gen++;
        /* the reply as the template will show it: the token's text, control tokens as nothing */
        const char *raw = sl_token_to_piece(s->vocab, tok, false, &pl);
        if (sl_eval(s->ctx, &tok, 1, s->logits, false, &err) != SL_OK) {
            rc = cli_fail_err(s->cmd, &err);
            break;
        }
        if (!text_append(s, raw ? raw : "", raw ? pl : 0) || !mark(s)) {
            rc = cli_fail(s->cmd, "out of memory");
            break;
        }
    }
    const char *rest;
    size_t rl;
    sl_detok_flush(detok, &rest, &rl);
    fwrite(rest, 1, rl, out);
    fputc('\n', out);
    fflush(out);
    sl_detok_free(detok);
    st->t_gen = now_s() - t0;
    return rc;
}

int chat_session_turn(chat_session *s, const char *user, bool show_prompt, FILE *out, chat_turn_stats *st) {
    memset(st, 0, sizeof *st);
    if (!push_msg(s, "user", user, strlen(user))) return cli_fail(s->cmd, "out of memory");
    sl_error err;
    char *full = NULL;
    size_t full_len = 0;
    int32_t *ids = NULL, n_ids = 0;
    if (sl_chat_apply(s->tmpl, s->msgs, s->n_msgs, true, &full, &full_len, &err) != SL_OK) {
        pop_msg(s);
        return cli_fail_err(s->cmd, &err);
    }
    size_t common = 0;
    while (common < s->text_len && common < full_len && s->text[common] == full[common]) common++;
    int rc = keep_prefix(s, common);
    const int32_t n_past = sl_context_n_past(s->ctx);
    st->n_kept = n_past;
    if (!rc && sl_tokenize(s->vocab, full + s->text_len, full_len - s->text_len, s->add_bos && n_past == 0, true, &ids, &n_ids, &err) != SL_OK)
        rc = cli_fail_err(s->cmd, &err);
    if (!rc && n_ids == 0) rc = cli_fail(s->cmd, "nothing to evaluate for this turn");
    if (!rc && n_ids > sl_context_n_ctx(s->ctx) - n_past)
        rc = cli_fail(s->cmd, "this turn needs %d more tokens but the context has room for %d (of %d); /clear to start over or raise -c",
                      n_ids, sl_context_n_ctx(s->ctx) - n_past, sl_context_n_ctx(s->ctx));
    if (rc) {
        pop_msg(s);
        sl_free_text(full);
        sl_free_tokens(ids);
        return rc;
    }
    if (show_prompt) {
        fwrite(full + s->text_len, 1, full_len - s->text_len, out);
        fflush(out);
    }
    for (int32_t i = 0; i < n_ids; i++) sl_sampler_accept(s->smpl, ids[i]);
    const double t0 = now_s();
    if (sl_eval(s->ctx, ids, n_ids, s->logits, false, &err) != SL_OK) {
        pop_msg(s);
        sl_free_text(full);
        sl_free_tokens(ids);
        return cli_fail_err(s->cmd, &err);
    }
    st->t_prompt = now_s() - t0;
    st->n_prompt = n_ids;
    rc = !text_append(s, full + s->text_len, full_len - s->text_len) || !mark(s) ? cli_fail(s->cmd, "out of memory") : 0;
    sl_free_text(full);
    sl_free_tokens(ids);
    size_t reply_start = s->text_len;
    if (!rc) rc = generate(s, out, st, &reply_start);
    if (!rc && !push_msg(s, "assistant", s->text + reply_start, s->text_len - reply_start)) rc = cli_fail(s->cmd, "out of memory");
    return rc;
}

int chat_template_choose(const char *cmd, const sl_vocab *vocab, const char *name, sl_chat_template *out) {
    sl_error err;
    if (!name) {
        if (sl_vocab_chat_template_id(vocab, out, &err) != SL_OK) {
            cli_fail(cmd, "%s; give one with --chat-template NAME (chatml, llama2, llama3, mistral-v7, phi3, gemma ...)", err.message);
            return 1;
        }
        return 0;
    }
    if (sl_chat_template_detect(name, out, &err) == SL_OK) return 0;
    /* not a name: a file holding a Jinja template? */
    size_t len;
    FILE *f = fopen(name, "rb");
    if (f) {
        fclose(f);
        char *text = cli_read_file(cmd, name, (size_t)16 << 20, &len);
        if (!text) return 1;
        sl_status st = sl_chat_template_detect(text, out, &err);
        free(text);
        if (st == SL_OK) return 0;
    }
    cli_fail(cmd, "--chat-template %s: %s", name, err.message);
    return 1;
}
