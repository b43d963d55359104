/*
 * task.c — srv_task, one generation request between the HTTP thread that answers it and the
 * engine thread that decodes it: created from a checked request with its own copies of
 * everything the engine reads (prompt ids, stop sequences, logit bias), reference-counted so
 * that either side may finish first, and finished under its mutex with a broadcast on its
 * condition variable. What it is not: the scheduling (engine.c) or the JSON (respond.c).
 */
#include "server/server.h"

#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

srv_task *srv_task_new(const srv_request *r, const int32_t *prompt, int32_t n_prompt) {
    srv_task *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->slot = -1;
    t->prompt = malloc((size_t)(n_prompt > 0 ? n_prompt : 1) * sizeof(int32_t));
    if (!t->prompt) goto fail;
    if (n_prompt > 0) memcpy(t->prompt, prompt, (size_t)n_prompt * sizeof(int32_t));
    t->n_prompt = n_prompt;
    t->max_tokens = r->max_tokens;
    t->sampling = r->sampling;
    t->presence_penalty = r->presence_penalty;
    t->frequency_penalty = r->frequency_penalty;
    t->logprobs = r->logprobs;
    if (r->n_bias > 0) {
        t->bias_ids = malloc((size_t)r->n_bias * sizeof(int32_t));
        t->bias_vals = malloc((size_t)r->n_bias * sizeof(float));
        if (!t->bias_ids || !t->bias_vals) goto fail;
        memcpy(t->bias_ids, r->bias_ids, (size_t)r->n_bias * sizeof(int32_t));
        memcpy(t->bias_vals, r->bias_vals, (size_t)r->n_bias * sizeof(float));
        t->n_bias = r->n_bias;
    }
    for (int32_t i = 0; i < r->n_stop; i++) {
        if (!(t->stop[i] = malloc(r->stop_len[i] + 1))) goto fail;
        memcpy(t->stop[i], r->stop[i], r->stop_len[i] + 1);
        t->stop_len[i] = r->stop_len[i];
        t->n_stop++;
    }
    if (!sb_reserve(&t->text, 0)) goto fail;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    atomic_init(&t->cancelled, false);
    atomic_init(&t->refs, 1);
    t->t_submit = sl_time_s();
    return t;
fail:
    free(t->prompt);
    free(t->bias_ids);
    free(t->bias_vals);
    for (int32_t i = 0; i < t->n_stop; i++) free(t->stop[i]);
    free(t->text.data);
    free(t);
    return NULL;
}

void srv_task_ref(srv_task *t) { atomic_fetch_add(&t->refs, 1); }

void srv_task_unref(srv_task *t) {
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->prompt);
    free(t->bias_ids);
    free(t->bias_vals);
    for (int32_t i = 0; i < t->n_stop; i++) free(t->stop[i]);
    free(t->text.data);
    free(t->toks);
    free(t);
}

void srv_task_finish_locked(srv_task *t, srv_finish f, const char *msg) {
    if (t->finish != SRV_FINISH_NONE) return;
    t->finish = f;
    if (msg) snprintf(t->err, sizeof t->err, "%s", msg);
    t->n_ready = t->text.n;
    t->n_toks_ready = t->n_toks;
    t->t_end = sl_time_s();
    pthread_cond_broadcast(&t->cv);
}
