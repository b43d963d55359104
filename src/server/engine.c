/*
 * engine.c — the slots and the one thread that decodes them (continuous batching).
 *
 * n_parallel slots share the model and one context: slot i is the context's sequence i, with
 * its own KV cache. Requests wait in a bounded queue and take a free slot between steps — the slot
 * whose cached tokens share the longest prefix with the new prompt, so a chat's next turn reuses
 * its KV cache. Each step is one forward pass (sl_eval_batch) over: the next token of every slot
 * that is generating, and one chunk (n_batch tokens) of the prompt of the slot that arrived first
 * among those still reading their prompt — so the weights are read once per step for all slots,
 * and a newcomer never stalls the others for more than one chunk. With a profile, the generating
 * slots' tokens go through the skip model together (the decoding rows of the pass: the union of
 * their masks, src/sparse/skip.c). Then each slot with fresh logits samples its next token (logit
 * bias and presence/frequency penalties applied to the logits, log-probabilities taken from the
 * raw ones), and its text is published to the task: complete UTF-8 characters only, and text that
 * might be the start of a stop sequence held back until it is known not to be. A slot whose
 * client went away is freed at the next step. What it is not: HTTP or JSON (http.c, respond.c)
 * — and the forward pass itself (step_eval hands the rows to the library).
 */
#include "server/server.h"

#include "model/context.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum slot_state { SLOT_IDLE, SLOT_PREFILL, SLOT_GEN } slot_state;

typedef struct slot {
    int id;
    slot_state state;
    srv_task *task;      /* the running task (a reference), NULL when idle */
    int32_t *cache;      /* [n_ctx] tokens whose keys/values are in sequence `id` (prefix reuse) */
    int32_t n_cache;     /* how many */
    int32_t n_eval;      /* prompt tokens in the cache so far (PREFILL) */
    int32_t pending;     /* GEN: the sampled token that is to be evaluated next */
    int32_t n_gen;       /* tokens generated for the task */
    int64_t order;       /* admission number: the oldest prefill goes first */
    int64_t last_used;   /* step of the last use (least recently used slot is reused first) */
    sl_sampler *smpl;
    sl_detok *detok;
    float *logits;       /* [n_vocab] the row the slot samples from */
    int32_t *counts;     /* [n_vocab] how often each token was generated (penalties) */
    int32_t *seen;       /* [n_ctx] the distinct generated tokens, in order */
    int32_t n_seen;
    bool has_logits;     /* logits were filled this step */
} slot;

/* ring of (time, generated tokens so far) samples for a recent tokens/s */
#define RATE_RING 256
#define RATE_WINDOW_S 10.0

struct srv_engine {
    const sl_model *model;
    const sl_vocab *vocab;
    int32_t n_vocab;
    srv_engine_params p;
    slot *slots;
    sl_context *ctx;       /* every slot's KV cache (one sequence each) and the buffers */
    struct step_row *rows; /* [n_parallel + 1] the current step's rows */
    sl_batch_token *batch; /* [n_parallel + n_batch] the current step's tokens */
    float *logits;         /* [n_parallel + 1, n_vocab] the step's logits rows */
    float *raw;            /* [n_vocab] copy of a row's raw logits (log-probabilities) */
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;    /* guards everything below */
    pthread_cond_t cv;     /* new task, or stop */
    srv_task *q_head, *q_tail;
    int32_t n_queued;
    int32_t n_active;      /* slots running a task */
    bool draining;         /* refuse new tasks */
    bool stopping;         /* cancel everything and exit */
    float want_sparsity;   /* < 0: no change asked */
    int want_batch;        /* < 0: no change asked; else an sl_batch_select */
    srv_stats st;
    double ring_t[RATE_RING];
    int64_t ring_n[RATE_RING];
    int ring_pos, ring_len;
    double sparsity_avg;   /* exponential average over sparse steps, -1 before the first */
    int64_t admitted, step_no;
};

/* ---- helpers ------------------------------------------------------------------------------- */

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* log-softmax normaliser of a row: max + log(sum(exp(x - max))) */
static double log_norm(const float *x, int32_t n) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (!isfinite(mx)) return mx;
    double s = 0.0;
    for (int32_t i = 0; i < n; i++) s += exp((double)(x[i] - mx));
    return (double)mx + log(s);
}

/* the k highest entries of x (k <= SRV_MAX_TOP_LOGPROBS), highest first */
static int32_t top_k(const float *x, int32_t n, int32_t k, int32_t *ids, float *vals) {
    int32_t m = 0;
    if (k <= 0) return 0;
    for (int32_t i = 0; i < n; i++) {
        if (m == k && !(x[i] > vals[m - 1])) continue;
        int32_t j = m < k ? m++ : k - 1;
        while (j > 0 && vals[j - 1] < x[i]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = x[i];
        ids[j] = i;
    }
    return m;
}

/* Longest suffix of s[0..n) that is a proper prefix of one of the stop sequences. */
static size_t stop_holdback(const srv_task *t, const char *s, size_t n) {
    size_t best = 0;
    for (int32_t i = 0; i < t->n_stop; i++) {
        size_t max = t->stop_len[i] - 1 < n ? t->stop_len[i] - 1 : n;
        for (size_t k = max; k > best; k--)
            if (!memcmp(s + n - k, t->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* The first occurrence of any stop sequence in s[from..n), or (size_t)-1. */
static size_t stop_find(const srv_task *t, const char *s, size_t n, size_t from) {
    size_t best = (size_t)-1;
    for (int32_t i = 0; i < t->n_stop; i++) {
        if (t->stop_len[i] > n) continue;
        for (size_t p = from; p + t->stop_len[i] <= n && p < best; p++)
            if (!memcmp(s + p, t->stop[i], t->stop_len[i])) {
                best = p;
                break;
            }
    }
    return best;
}

/* ---- slots --------------------------------------------------------------------------------- */

static void slot_release(srv_engine *e, slot *s, srv_finish f, const char *msg) {
    srv_task *t = s->task;
    if (t) {
        pthread_mutex_lock(&t->mu);
        if (f == SRV_FINISH_STOP || f == SRV_FINISH_LENGTH) { /* flush a held-back partial character */
            const char *rest;
            size_t rl;
            sl_detok_flush(s->detok, &rest, &rl);
            if (rl) sb_append(&t->text, rest, rl);
        }
        srv_task_finish_locked(t, f, msg);
        pthread_mutex_unlock(&t->mu);
        srv_task_unref(t);
    }
    s->task = NULL;
    s->state = SLOT_IDLE;
    s->last_used = e->step_no;
    pthread_mutex_lock(&e->mu);
    e->n_active--;
    e->st.slots_busy = e->n_active;
    pthread_mutex_unlock(&e->mu);
}

/* Start task t in slot s (engine thread, e->mu not held). */
static void slot_start(srv_engine *e, slot *s, srv_task *t) {
    s->task = t;
    s->order = e->admitted++;
    s->n_gen = 0;
    for (int32_t i = 0; i < s->n_seen; i++) s->counts[s->seen[i]] = 0;
    s->n_seen = 0;
    sl_sampler_free(s->smpl);
    sl_detok_free(s->detok);
    s->smpl = sl_sampler_init(&t->sampling);
    s->detok = sl_detok_init(e->vocab, false, NULL);
    pthread_mutex_lock(&t->mu);
    t->slot = s->id;
    t->t_start = sl_time_s();
    pthread_mutex_unlock(&t->mu);
    if (!s->smpl || !s->detok) {
        s->state = SLOT_GEN; /* counted as active until released */
        slot_release(e, s, SRV_FINISH_ERROR, "out of memory");
        return;
    }
    for (int32_t i = 0; i < t->n_prompt; i++) sl_sampler_accept(s->smpl, t->prompt[i]);
    /* reuse the cached prefix, but evaluate at least the last prompt token (for its logits) */
    int32_t keep = common_prefix(s->cache, s->n_cache, t->prompt, t->n_prompt);
    if (keep >= t->n_prompt) keep = t->n_prompt - 1;
    s->n_cache = keep;
    sl_context_seq_keep(e->ctx, s->id, keep, NULL); /* keep <= the sequence's tokens: cannot fail */
    s->n_eval = keep;
    t->n_cached = keep;
    pthread_mutex_lock(&e->mu);
    e->st.cached_tokens += keep;
    pthread_mutex_unlock(&e->mu);
    s->state = SLOT_PREFILL;
    if (t->max_tokens == 0) slot_release(e, s, SRV_FINISH_LENGTH, NULL);
}

/* Sample the slot's next token from s->logits and publish it. */
static void slot_sample(srv_engine *e, slot *s) {
    srv_task *t = s->task;
    const int32_t V = e->n_vocab;
    float *x = s->logits;
    double norm = 0.0;
    if (t->logprobs >= 0) {
        memcpy(e->raw, x, (size_t)V * sizeof(float));
        norm = log_norm(e->raw, V);
    }
    for (int32_t i = 0; i < t->n_bias; i++) x[t->bias_ids[i]] += t->bias_vals[i];
    /* OpenAI: logit -= count * frequency + (count > 0) * presence, over the generated tokens */
    if (t->presence_penalty != 0.0f || t->frequency_penalty != 0.0f)
        for (int32_t i = 0; i < s->n_seen; i++)
            x[s->seen[i]] -= (float)s->counts[s->seen[i]] * t->frequency_penalty + t->presence_penalty;
    int32_t tok = sl_sampler_sample(s->smpl, x, V);
    if (tok < 0) {
        slot_release(e, s, SRV_FINISH_ERROR, "the model produced no usable logits (all -inf or NaN)");
        return;
    }
    sl_sampler_accept(s->smpl, tok);
    if (sl_vocab_is_eog(e->vocab, tok)) {
        slot_release(e, s, SRV_FINISH_STOP, NULL);
        return;
    }
    const char *piece = NULL;
    size_t pl = 0;
    sl_detok_push(s->detok, tok, &piece, &pl, NULL); /* tok comes from the sampler: always in range */
    s->n_gen++;
    if (s->counts[tok]++ == 0 && s->n_seen < e->p.n_ctx) s->seen[s->n_seen++] = tok;

    srv_task *tk = t;
    pthread_mutex_lock(&tk->mu);
    bool oom = false;
    if (tk->n_toks == tk->cap_toks) {
        int32_t cap = tk->cap_toks ? 2 * tk->cap_toks : 64;
        srv_token *nt = realloc(tk->toks, (size_t)cap * sizeof(srv_token));
        if (nt) tk->toks = nt, tk->cap_toks = cap;
        else oom = true;
    }
    if (!oom) {
        srv_token *rec = &tk->toks[tk->n_toks++];
        rec->id = tok;
        rec->n_top = 0;
        rec->logprob = 0.0f;
        if (tk->logprobs >= 0) {
            rec->logprob = (float)((double)e->raw[tok] - norm);
            rec->n_top = top_k(e->raw, V, tk->logprobs, rec->top_id, rec->top_lp);
            for (int32_t k = 0; k < rec->n_top; k++) rec->top_lp[k] = (float)((double)rec->top_lp[k] - norm);
        }
    }
    oom = oom || !sb_append(&tk->text, piece, pl);
    if (tk->t_first == 0.0) tk->t_first = sl_time_s();
    srv_finish fin = SRV_FINISH_NONE;
    if (oom) {
        fin = SRV_FINISH_ERROR;
    } else if (tk->n_stop > 0) {
        /* an occurrence cannot start before n_ready: that text was no stop prefix (holdback) */
        size_t at = stop_find(tk, tk->text.data, tk->text.n, tk->n_ready);
        if (at != (size_t)-1) {
            tk->text.n = at;
            tk->text.data[at] = 0;
            fin = SRV_FINISH_STOP;
        } else {
            tk->n_ready = tk->text.n - stop_holdback(tk, tk->text.data, tk->text.n);
            if (tk->n_ready == tk->text.n) tk->n_toks_ready = tk->n_toks;
        }
    } else {
        tk->n_ready = tk->text.n;
        tk->n_toks_ready = tk->n_toks;
    }
    if (fin == SRV_FINISH_NONE) pthread_cond_broadcast(&tk->cv);
    pthread_mutex_unlock(&tk->mu);

    if (fin != SRV_FINISH_NONE) {
        slot_release(e, s, fin, oom ? "out of memory" : NULL);
        return;
    }
    if (t->max_tokens >= 0 && s->n_gen >= t->max_tokens) {
        slot_release(e, s, SRV_FINISH_LENGTH, NULL);
        return;
    }
    if (s->n_cache >= e->p.n_ctx) { /* no room to evaluate the token: the context is full */
        slot_release(e, s, SRV_FINISH_LENGTH, NULL);
        return;
    }
    s->pending = tok;
    s->state = SLOT_GEN;
}

/* ---- one step ------------------------------------------------------------------------------ */

typedef struct step_row {
    slot *s;               /* whose tokens */
    const int32_t *tokens; /* to evaluate */
    int32_t n;             /* how many */
    bool logits;           /* fill s->logits with the last one's */
} step_row;

/* Evaluate the rows in one pass (decoding rows first: they come first in e->rows), appending to
 * each slot's sequence; the last token of each row that wants logits leaves them in s->logits. */
static sl_status step_eval(srv_engine *e, step_row *rows, int n_rows, sl_error *err) {
    int n = 0;
    for (int i = 0; i < n_rows; i++)
        for (int k = 0; k < rows[i].n; k++) e->batch[n++] = (sl_batch_token){rows[i].tokens[k], rows[i].s->id, rows[i].logits && k == rows[i].n - 1};
    sl_status st = sl_eval_batch(e->ctx, e->batch, n, e->logits, err);
    if (st != SL_OK) return st;
    const float *row = e->logits;
    for (int i = 0; i < n_rows; i++)
        if (rows[i].logits) {
            memcpy(rows[i].s->logits, row, (size_t)e->n_vocab * sizeof(float));
            row += e->n_vocab;
        }
    return SL_OK;
}

/* the sparse passes' counters so far, summed over layers: neurons computed and possible (the
 * achieved sparsity), and the batches' unions, shared sets and own-mask recall */
typedef struct sparse_sums {
    int64_t active, total, batches, union_own, read, shared, own_kept, own_total;
} sparse_sums;
static sparse_sums sparse_counts(srv_engine *e) {
    sparse_sums r = {0};
    for (int l = 0; l < e->ctx->model->config.n_layer; l++) {
        const sl_layer_stats *st = &e->ctx->stats[l];
        r.active += st->n_active, r.total += st->n_neurons, r.batches += st->n_batches, r.union_own += st->n_union_own;
        r.read += st->n_union, r.shared += st->n_batch_shared, r.own_kept += st->own_kept, r.own_total += st->own_total;
    }
    return r;
}

static void apply_sparsity(srv_engine *e, float want) {
    sl_error err;
    if (sl_profile_set_sparsity(e->p.profile, want, &err) != SL_OK) return;
    sl_context_set_profile(e->ctx, e->p.profile, e->p.sparse_prefill, &err);
    pthread_mutex_lock(&e->mu);
    e->st.profile_sparsity = want;
    pthread_mutex_unlock(&e->mu);
}

/* the profile is read by this (the engine's) thread only: changed here, between steps */
static void apply_batch_select(srv_engine *e, sl_batch_select mode) {
    float umax;
    sl_profile_get_batch_select(e->p.profile, &umax);
    if (sl_profile_set_batch_select(e->p.profile, mode, umax, NULL) != SL_OK) return;
    pthread_mutex_lock(&e->mu);
    e->st.batch_select = sl_batch_select_name(mode);
    pthread_mutex_unlock(&e->mu);
}

/* Run one step over the active slots; false when there was nothing to do. */
static bool step(srv_engine *e) {
    step_row *rows = e->rows;
    int n_rows = 0, n_dec = 0;
    slot *prefill = NULL;
    for (int i = 0; i < e->p.n_parallel; i++) {
        slot *s = &e->slots[i];
        s->has_logits = false;
        if (s->state == SLOT_IDLE) continue;
        if (atomic_load(&s->task->cancelled)) {
            slot_release(e, s, SRV_FINISH_CANCELLED, "cancelled");
            continue;
        }
        if (s->state == SLOT_GEN) {
            rows[n_rows++] = (step_row){s, &s->pending, 1, true};
            n_dec++;
        } else if (!prefill || s->order < prefill->order) {
            prefill = s;
        }
    }
    if (prefill) {
        srv_task *t = prefill->task;
        int32_t left = t->n_prompt - prefill->n_eval, n = left < e->p.n_batch ? left : e->p.n_batch;
        rows[n_rows++] = (step_row){prefill, t->prompt + prefill->n_eval, n, n == left};
    }
    if (n_rows == 0) return false;

    const sparse_sums c0 = sparse_counts(e);
    const double t0 = sl_time_s();
    sl_error err;
    sl_status st = step_eval(e, rows, n_rows, &err);
    const double dt = sl_time_s() - t0;
    const sparse_sums c1 = sparse_counts(e);
    const int64_t a0 = c0.active, n0 = c0.total, a1 = c1.active, n1 = c1.total;
    if (st != SL_OK) {
        for (int i = 0; i < n_rows; i++)
            if (rows[i].s->task) slot_release(e, rows[i].s, SRV_FINISH_ERROR, err.message);
        return true;
    }
    const double step_sparsity = n1 > n0 ? 1.0 - (double)(a1 - a0) / (double)(n1 - n0) : -1.0;
    int64_t rows_total = 0, n_prefill = 0;
    for (int i = 0; i < n_rows; i++) {
        slot *s = rows[i].s;
        memcpy(s->cache + s->n_cache, rows[i].tokens, (size_t)rows[i].n * sizeof(int32_t));
        s->n_cache += rows[i].n;
        rows_total += rows[i].n;
        if (s->state == SLOT_PREFILL) {
            s->n_eval += rows[i].n;
            n_prefill += rows[i].n;
        } else if (step_sparsity >= 0.0) {
            pthread_mutex_lock(&s->task->mu);
            s->task->sparsity_sum += step_sparsity;
            s->task->n_sparsity++;
            pthread_mutex_unlock(&s->task->mu);
        }
        s->last_used = e->step_no;
        if (rows[i].logits) slot_sample(e, s);
    }
    int64_t gen = 0;
    for (int i = 0; i < n_rows; i++) gen += rows[i].logits;
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.step_rows += rows_total;
    e->st.prompt_tokens += n_prefill;
    e->st.gen_tokens += gen;
    e->st.t_busy += dt;
    e->st.batch_layers += c1.batches - c0.batches;
    e->st.batch_union_own += c1.union_own - c0.union_own;
    e->st.batch_read += c1.read - c0.read;
    e->st.batch_shared += c1.shared - c0.shared;
    e->st.own_kept += c1.own_kept - c0.own_kept;
    e->st.own_total += c1.own_total - c0.own_total;
    if (step_sparsity >= 0.0 && n_dec > 0)
        e->sparsity_avg = e->sparsity_avg < 0 ? step_sparsity : 0.9 * e->sparsity_avg + 0.1 * step_sparsity;
    e->ring_pos = (e->ring_pos + 1) % RATE_RING;
    e->ring_t[e->ring_pos] = sl_time_s();
    e->ring_n[e->ring_pos] = e->st.gen_tokens;
    if (e->ring_len < RATE_RING) e->ring_len++;
    pthread_mutex_unlock(&e->mu);
    e->step_no++;
    return true;
}

/* Give free slots to queued tasks (e->mu held). Returns tasks to start in *out. */
static int admit_locked(srv_engine *e, slot **dst_slot, srv_task **dst_task) {
    int n = 0;
    bool taken[512] = {0};
    while (e->q_head) {
        srv_task *t = e->q_head;
        if (atomic_load(&t->cancelled)) { /* gone while waiting */
            e->q_head = t->next;
            if (!e->q_head) e->q_tail = NULL;
            e->n_queued--;
            pthread_mutex_lock(&t->mu);
            srv_task_finish_locked(t, SRV_FINISH_CANCELLED, "cancelled");
            pthread_mutex_unlock(&t->mu);
            srv_task_unref(t);
            continue;
        }
        slot *best = NULL;
        int32_t best_len = -1;
        for (int i = 0; i < e->p.n_parallel; i++) {
            slot *s = &e->slots[i];
            if (s->state != SLOT_IDLE || taken[i]) continue;
            int32_t k = common_prefix(s->cache, s->n_cache, t->prompt, t->n_prompt);
            if (k > best_len || (k == best_len && s->last_used < best->last_used)) best = s, best_len = k;
        }
        if (!best) break;
        taken[best->id] = true;
        e->q_head = t->next;
        if (!e->q_head) e->q_tail = NULL;
        e->n_queued--;
        e->n_active++;
        dst_slot[n] = best;
        dst_task[n] = t;
        n++;
    }
    e->st.queued = e->n_queued;
    e->st.slots_busy = e->n_active;
    return n;
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    slot **ns = malloc(sizeof(slot *) * (size_t)e->p.n_parallel);
    srv_task **nt = malloc(sizeof(srv_task *) * (size_t)e->p.n_parallel);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && e->n_active == 0 && !e->q_head && e->want_sparsity < 0 && e->want_batch < 0) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        float want = e->want_sparsity;
        e->want_sparsity = -1.0f;
        const int want_batch = e->want_batch;
        e->want_batch = -1;
        int n = ns && nt ? admit_locked(e, ns, nt) : 0;
        pthread_mutex_unlock(&e->mu);
        if (want >= 0.0f) apply_sparsity(e, want);
        if (want_batch >= 0) apply_batch_select(e, (sl_batch_select)want_batch);
        for (int i = 0; i < n; i++) slot_start(e, ns[i], nt[i]);
        step(e);
    }
    /* stopping: cancel what is running and what waits */
    for (int i = 0; i < e->p.n_parallel; i++)
        if (e->slots[i].task) slot_release(e, &e->slots[i], SRV_FINISH_CANCELLED, "the server is stopping");
    pthread_mutex_lock(&e->mu);
    while (e->q_head) {
        srv_task *t = e->q_head;
        e->q_head = t->next;
        pthread_mutex_lock(&t->mu);
        srv_task_finish_locked(t, SRV_FINISH_CANCELLED, "the server is stopping");
        pthread_mutex_unlock(&t->mu);
        srv_task_unref(t);
    }
    e->q_tail = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    free(ns);
    free(nt);
    return NULL;
}

/* ---- public (to the server layer) ------------------------------------------------------------ */

srv_engine *srv_engine_init(const sl_model *model, const srv_engine_params *p, sl_error *err) {
    if (p->n_parallel < 1 || p->n_parallel > 512 || p->n_ctx < 2 || p->n_batch < 1 || p->queue_size < 0) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "server: n_parallel must be 1..512, n_ctx >= 2, n_batch >= 1");
        return NULL;
    }
    srv_engine *e = calloc(1, sizeof(*e));
    if (!e) goto nomem;
    e->model = model;
    e->vocab = sl_model_get_vocab(model);
    e->n_vocab = sl_model_get_config(model)->n_vocab;
    e->p = *p;
    e->want_sparsity = -1.0f;
    e->want_batch = -1;
    e->sparsity_avg = -1.0;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->slots = calloc((size_t)p->n_parallel, sizeof(slot));
    e->raw = malloc((size_t)e->n_vocab * sizeof(float));
    e->rows = malloc((size_t)(p->n_parallel + 1) * sizeof(step_row));
    e->batch = malloc((size_t)(p->n_parallel + p->n_batch) * sizeof(sl_batch_token));
    e->logits = malloc((size_t)(p->n_parallel + 1) * (size_t)e->n_vocab * sizeof(float));
    if (!e->slots || !e->raw || !e->rows || !e->batch || !e->logits) goto nomem;
    sl_context_params cp = sl_context_default_params();
    cp.n_ctx = p->n_ctx;
    cp.n_threads = p->n_threads;
    cp.n_batch = p->n_parallel + p->n_batch; /* a whole step in one pass */
    cp.n_seq = p->n_parallel;
    cp.kv_f16 = p->kv_f16;
    if (!(e->ctx = sl_context_init(model, &cp, err))) goto fail;
    if (p->profile && sl_context_set_profile(e->ctx, p->profile, p->sparse_prefill, err) != SL_OK) goto fail;
    for (int i = 0; i < p->n_parallel; i++) {
        slot *s = &e->slots[i];
        s->id = i;
        s->cache = malloc((size_t)p->n_ctx * sizeof(int32_t));
        s->logits = malloc((size_t)e->n_vocab * sizeof(float));
        s->counts = calloc((size_t)e->n_vocab, sizeof(int32_t));
        s->seen = malloc((size_t)p->n_ctx * sizeof(int32_t));
        if (!s->cache || !s->logits || !s->counts || !s->seen) goto nomem;
    }
    e->st.n_parallel = p->n_parallel;
    e->st.queue_size = p->queue_size;
    e->st.n_ctx = p->n_ctx;
    e->st.profile_sparsity = -1.0f;
    e->st.n_ff = model->config.n_ff;
    e->st.batch_select = p->profile ? sl_batch_select_name(sl_profile_get_batch_select(p->profile, NULL)) : NULL;
    if (p->profile) {
        sl_profile_layer pl;
        for (int l = 0; l < sl_profile_n_layer(p->profile); l++)
            if (sl_profile_get_layer(p->profile, l, &pl, NULL) == SL_OK && pl.rule != SL_RULE_DENSE) {
                e->st.profile_sparsity = pl.target_sparsity;
                break;
            }
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        sl_set_error(err, SL_ERR_NOMEM, "server: cannot start the decoding thread");
        goto fail;
    }
    e->thread_started = true;
    return e;
nomem:
    sl_set_error(err, SL_ERR_NOMEM, "server: out of memory for the slots");
fail:
    srv_engine_free(e);
    return NULL;
}

srv_submit srv_engine_submit(srv_engine *e, srv_task *t) {
    pthread_mutex_lock(&e->mu);
    srv_submit r = SRV_SUBMIT_OK;
    if (e->draining || e->stopping) r = SRV_SUBMIT_STOPPING;
    else if (e->n_queued >= e->p.queue_size && e->n_active >= e->p.n_parallel) r = SRV_SUBMIT_FULL;
    if (r == SRV_SUBMIT_OK) {
        srv_task_ref(t);
        t->next = NULL;
        if (e->q_tail) e->q_tail->next = t;
        else e->q_head = t;
        e->q_tail = t;
        e->n_queued++;
        e->st.queued = e->n_queued;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return r;
}

void srv_engine_drain(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    pthread_mutex_unlock(&e->mu);
}

bool srv_engine_idle(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    bool idle = e->n_active == 0 && !e->q_head;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

sl_status srv_engine_set_sparsity(srv_engine *e, float sparsity, sl_error *err) {
    if (!e->p.profile) return sl_set_error(err, SL_ERR_INVALID_ARG, "the server runs without a sparsity profile (--profile)");
    if (!(sparsity >= 0.0f && sparsity < 1.0f)) return sl_set_error(err, SL_ERR_INVALID_ARG, "sparsity must be in [0, 1)");
    pthread_mutex_lock(&e->mu);
    e->want_sparsity = sparsity;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

sl_status srv_engine_set_batch_select(srv_engine *e, sl_batch_select mode, sl_error *err) {
    if (!e->p.profile) return sl_set_error(err, SL_ERR_INVALID_ARG, "the server runs without a sparsity profile (--profile)");
    if (!sl_batch_select_name(mode)) return sl_set_error(err, SL_ERR_INVALID_ARG, "batch_select must be union, shared, auto or dense");
    pthread_mutex_lock(&e->mu);
    e->want_batch = (int)mode;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

void srv_engine_stats(srv_engine *e, srv_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->sparsity = e->sparsity_avg;
    out->gen_tps = 0.0;
    if (e->ring_len > 1) {
        const double now = sl_time_s();
        int newest = e->ring_pos, oldest = newest;
        for (int k = 1; k < e->ring_len; k++) {
            int i = (e->ring_pos - k + RATE_RING) % RATE_RING;
            if (now - e->ring_t[i] > RATE_WINDOW_S) break;
            oldest = i;
        }
        const double span = now - e->ring_t[oldest];
        if (oldest != newest && span > 0.0) out->gen_tps = (double)(e->ring_n[newest] - e->ring_n[oldest]) / span;
    }
    pthread_mutex_unlock(&e->mu);
}

void srv_engine_stop(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) pthread_join(e->thread, NULL);
    e->thread_started = false;
}

void srv_engine_free(srv_engine *e) {
    if (!e) return;
    srv_engine_stop(e);
    if (e->slots) {
        for (int i = 0; i < e->p.n_parallel; i++) {
            slot *s = &e->slots[i];
            sl_sampler_free(s->smpl);
            sl_detok_free(s->detok);
            free(s->cache);
            free(s->logits);
            free(s->counts);
            free(s->seen);
        }
        free(e->slots);
    }
    sl_context_free(e->ctx);
    free(e->raw);
    free(e->rows);
    free(e->batch);
    free(e->logits);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
