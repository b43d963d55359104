/*
 * sampler.c — choosing the next token from logits: a chain of steps, then a pick.
 *
 * What it is for: llama.cpp-style sampling for `skipllama run` and library users. Each step is a
 * small struct of function pointers over a candidate list (see sl_sampler_step in skipllama.h);
 * the built-in ones are repetition penalty, top-k, top-p, min-p and temperature, in llama.cpp's
 * order, and a caller can append its own. The pick is greedy (temperature <= 0) or a draw from
 * the softmax with the sampler's private splitmix64 generator, so a seed reproduces a run.
 * What it is not: grammar/JSON constrained sampling, mirostat, DRY or XTC.
 *
 * Cost: O(n_vocab) per token plus sorting only what a step needs (top-k selects k; top-p sorts
 * a growing prefix until the probability mass is reached, so the whole vocabulary is sorted only
 * for very flat distributions).
 */
#include "text/sampler.h"

#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SL_MAX_REPEAT_WINDOW (1 << 20)

struct sl_sampler {
    sl_sampler_params params; /* as given */
    sl_sampler_step *steps;   /* the chain, in order */
    int n_steps;              /* steps in use */
    int cap_steps;            /* allocated steps */
    sl_token_prob *buf;       /* candidate storage */
    int32_t cap;              /* allocated candidates */
    sl_candidates cur;        /* the list the last call worked on */
    uint64_t rng;             /* splitmix64 state */
    bool greedy;              /* pick the most likely token instead of drawing */
};

/* ---- random numbers ---------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- ordering helpers ------------------------------------------------------------------------- */

/* a before b: higher logit first, then lower id (a total order, so results never depend on the
 * sort algorithm) */
static inline bool before(const sl_token_prob *a, const sl_token_prob *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_desc(const void *pa, const void *pb) {
    const sl_token_prob *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static inline void swap_tp(sl_token_prob *a, sl_token_prob *b) {
    sl_token_prob t = *a;
    *a = *b;
    *b = t;
}

/* Put the m best candidates first, sorted (quickselect, then sort of the prefix). */
static void select_top(sl_candidates *c, int32_t m) {
    if (m <= 0) return;
    if (m > c->size) m = c->size;
    sl_token_prob *d = c->data;
    int32_t lo = 0, hi = c->size - 1;
    while (m < c->size && lo < hi) {
        /* median of three as pivot keeps sorted/reversed inputs linear */
        int32_t mid = lo + (hi - lo) / 2;
        if (before(&d[mid], &d[lo])) swap_tp(&d[mid], &d[lo]);
        if (before(&d[hi], &d[lo])) swap_tp(&d[hi], &d[lo]);
        if (before(&d[hi], &d[mid])) swap_tp(&d[hi], &d[mid]);
        sl_token_prob pivot = d[mid];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (before(&d[i], &pivot)) i++;
            while (before(&pivot, &d[j])) j--;
            if (i <= j) {
                swap_tp(&d[i], &d[j]);
                i++;
                j--;
            }
        }
        if (m - 1 <= j) hi = j;
        else if (m - 1 >= i) lo = i;
        else break;
    }
    qsort(d, (size_t)m, sizeof *d, cmp_desc);
    if (m == c->size) c->sorted = true;
}

static float max_logit(const sl_candidates *c) {
    if (c->sorted) return c->data[0].logit;
    float m = -INFINITY;
    for (int32_t i = 0; i < c->size; i++)
        if (c->data[i].logit > m) m = c->data[i].logit;
    return m;
}

/* p = softmax(logit) over the candidates; returns false when every logit is -inf. */
static bool softmax(sl_candidates *c) {
    float mx = max_logit(c);
    if (!(mx > -INFINITY)) return false;
    double sum = 0.0;
    for (int32_t i = 0; i < c->size; i++) {
        float e = expf(c->data[i].logit - mx);
        c->data[i].p = e;
        sum += e;
    }
    for (int32_t i = 0; i < c->size; i++) c->data[i].p = (float)(c->data[i].p / sum);
    return true;
}

/* ---- built-in steps ----------------------------------------------------------------------------- */

typedef struct penalty_state {
    float penalty;   /* divide positive / multiply negative logits */
    int32_t window;  /* ring capacity = repeat_last_n */
    int32_t count;   /* tokens in the ring */
    int32_t head;    /* next write position */
    int32_t *ring;   /* the last `window` accepted tokens */
    int32_t *scratch;/* sorted copy used to apply each distinct token once */
} penalty_state;

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void penalty_apply(void *st, sl_candidates *c) {
    penalty_state *p = st;
    if (p->count == 0) return;
    memcpy(p->scratch, p->ring, (size_t)p->count * sizeof(int32_t));
    qsort(p->scratch, (size_t)p->count, sizeof(int32_t), cmp_i32);
    for (int32_t k = 0; k < p->count; k++) {
        int32_t id = p->scratch[k];
        if (k > 0 && id == p->scratch[k - 1]) continue; /* once per distinct token, as llama.cpp */
        int32_t idx = -1;
        if (id >= 0 && id < c->size && c->data[id].id == id) idx = id; /* candidates still in id order */
        else
            for (int32_t i = 0; i < c->size; i++)
                if (c->data[i].id == id) {
                    idx = i;
                    break;
                }
        if (idx < 0) continue;
        float *l = &c->data[idx].logit;
        *l = *l > 0 ? *l / p->penalty : *l * p->penalty;
    }
    c->sorted = false;
}

static void penalty_accept(void *st, int32_t token) {
    penalty_state *p = st;
    p->ring[p->head] = token;
    p->head = (p->head + 1) % p->window;
    if (p->count < p->window) p->count++;
}

static void penalty_reset(void *st) {
    penalty_state *p = st;
    p->count = p->head = 0;
}

static void penalty_free(void *st) {
    penalty_state *p = st;
    free(p->ring);
    free(p->scratch);
    free(p);
}

typedef struct value_state {
    float f;   /* top_p / min_p / temperature */
    int32_t k; /* top_k */
} value_state;

static void top_k_apply(void *st, sl_candidates *c) {
    int32_t k = ((value_state *)st)->k;
    if (k <= 0) return;
    if (k > c->size) k = c->size;
    if (!c->sorted) select_top(c, k);
    c->size = k;
    c->sorted = true;
}

static void top_p_apply(void *st, sl_candidates *c) {
    float p = ((value_state *)st)->f;
    if (p >= 1.0f || c->size <= 1) return;
    float mx = max_logit(c);
    if (!(mx > -INFINITY)) return;
    double sum = 0.0;
    for (int32_t i = 0; i < c->size; i++) sum += expf(c->data[i].logit - mx);
    /* sort only as much of the list as the mass needs: 128 best, then 8x more, ... */
    int32_t m = c->sorted ? c->size : (c->size < 128 ? c->size : 128);
    for (;;) {
        if (!c->sorted) select_top(c, m);
        double cum = 0.0;
        for (int32_t i = 0; i < m; i++) {
            c->data[i].p = (float)(expf(c->data[i].logit - mx) / sum);
            cum += c->data[i].p;
            if (cum >= p) {
                c->size = i + 1;
                c->sorted = true;
                return;
            }
        }
        if (m == c->size) return; /* rounding kept the sum below p: keep everything */
        m = m > c->size / 8 ? c->size : m * 8;
    }
}

static void min_p_apply(void *st, sl_candidates *c) {
    float p = ((value_state *)st)->f;
    if (p <= 0.0f || c->size <= 1) return;
    float mx = max_logit(c);
    if (!(mx > -INFINITY)) return;
    float thr = mx + logf(p);
    int32_t n = 0;
    for (int32_t i = 0; i < c->size; i++)
        if (c->data[i].logit >= thr) c->data[n++] = c->data[i]; /* keeps the order (and sortedness) */
    c->size = n > 0 ? n : 1;
}

static void temp_apply(void *st, sl_candidates *c) {
    float t = ((value_state *)st)->f;
    for (int32_t i = 0; i < c->size; i++) c->data[i].logit /= t;
}

/* ---- the sampler ------------------------------------------------------------------------------- */

sl_sampler_params sl_sampler_default_params(void) {
    sl_sampler_params p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

bool sl_sampler_params_check(const sl_sampler_params *p, sl_error *err) {
    if (!p) return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: no parameters"), false;
    if (!isfinite(p->temperature))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: temperature must be a finite number"), false;
    if (p->top_k < 0) return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: top_k must be >= 0"), false;
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: top_p must be in [0, 1]"), false;
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: min_p must be in [0, 1]"), false;
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: repeat_penalty must be > 0"), false;
    if (p->repeat_last_n < 0 || p->repeat_last_n > SL_MAX_REPEAT_WINDOW)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler: repeat_last_n must be in [0, %d]", SL_MAX_REPEAT_WINDOW),
               false;
    return true;
}

sl_status sl_sampler_add_step(sl_sampler *s, const sl_sampler_step *step, sl_error *err) {
    if (!s || !step || !step->apply) return sl_set_error(err, SL_ERR_INVALID_ARG, "sampler step without apply()");
    if (s->n_steps == s->cap_steps) {
        int nc = s->cap_steps ? s->cap_steps * 2 : 8;
        sl_sampler_step *p = realloc(s->steps, (size_t)nc * sizeof *p);
        if (!p) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        s->steps = p;
        s->cap_steps = nc;
    }
    s->steps[s->n_steps++] = *step;
    return SL_OK;
}

static bool add_value_step(sl_sampler *s, const char *name, void (*apply)(void *, sl_candidates *), float f,
                           int32_t k) {
    value_state *v = malloc(sizeof *v);
    if (!v) return false;
    v->f = f;
    v->k = k;
    sl_sampler_step st = {name, apply, NULL, NULL, free, v};
    if (sl_sampler_add_step(s, &st, NULL) != SL_OK) {
        free(v);
        return false;
    }
    return true;
}

sl_sampler *sl_sampler_init(const sl_sampler_params *params) {
    if (!sl_sampler_params_check(params, NULL)) return NULL;
    sl_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->params = *params;
    s->rng = params->seed;
    s->greedy = params->temperature <= 0.0f;
    if (params->repeat_penalty != 1.0f && params->repeat_last_n > 0) {
        penalty_state *p = calloc(1, sizeof *p);
        if (p) {
            p->penalty = params->repeat_penalty;
            p->window = params->repeat_last_n;
            p->ring = malloc((size_t)p->window * sizeof(int32_t));
            p->scratch = malloc((size_t)p->window * sizeof(int32_t));
        }
        sl_sampler_step st = {"repeat-penalty", penalty_apply, penalty_accept, penalty_reset, penalty_free, p};
        if (!p || !p->ring || !p->scratch || sl_sampler_add_step(s, &st, NULL) != SL_OK) {
            if (p) penalty_free(p);
            sl_sampler_free(s);
            return NULL;
        }
    }
    if (!s->greedy) {
        /* top-k, top-p and min-p never change the argmax, so a greedy chain skips them */
        bool ok = (params->top_k <= 0 || add_value_step(s, "top-k", top_k_apply, 0, params->top_k)) &&
                  (params->top_p >= 1.0f || add_value_step(s, "top-p", top_p_apply, params->top_p, 0)) &&
                  (params->min_p <= 0.0f || add_value_step(s, "min-p", min_p_apply, params->min_p, 0)) &&
                  (params->temperature == 1.0f || add_value_step(s, "temperature", temp_apply, params->temperature, 0));
        if (!ok) {
            sl_sampler_free(s);
            return NULL;
        }
    }
    return s;
}

void sl_sampler_free(sl_sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_steps; i++)
        if (s->steps[i].free_state) s->steps[i].free_state(s->steps[i].state);
    free(s->steps);
    free(s->buf);
    free(s);
}

void sl_sampler_accept(sl_sampler *s, int32_t token) {
    if (!s) return;
    for (int i = 0; i < s->n_steps; i++)
        if (s->steps[i].accept) s->steps[i].accept(s->steps[i].state, token);
}

void sl_sampler_reset(sl_sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_steps; i++)
        if (s->steps[i].reset) s->steps[i].reset(s->steps[i].state);
    s->rng = s->params.seed;
}

/* Fill the candidate list and run the steps; false on bad input. */
static bool run_chain(sl_sampler *s, const float *logits, int32_t n_vocab) {
    if (!s || !logits || n_vocab <= 0) return false;
    if (n_vocab > s->cap) {
        sl_token_prob *p = realloc(s->buf, (size_t)n_vocab * sizeof *p);
        if (!p) return false;
        s->buf = p;
        s->cap = n_vocab;
    }
    bool any = false;
    for (int32_t i = 0; i < n_vocab; i++) {
        float l = logits[i];
        if (isnan(l)) l = -INFINITY;
        any = any || l > -INFINITY;
        s->buf[i] = (sl_token_prob){i, l, 0.0f};
    }
    if (!any) return false;
    s->cur = (sl_candidates){s->buf, n_vocab, false};
    for (int i = 0; i < s->n_steps; i++) {
        s->steps[i].apply(s->steps[i].state, &s->cur);
        if (s->cur.size < 1) s->cur.size = 1; /* a step may not empty the list */
        if (s->cur.size > n_vocab) s->cur.size = n_vocab;
    }
    return true;
}

const sl_candidates *sl_sampler_apply(sl_sampler *s, const float *logits, int32_t n_vocab) {
    if (!run_chain(s, logits, n_vocab) || !softmax(&s->cur)) return NULL;
    return &s->cur;
}

int32_t sl_sampler_sample(sl_sampler *s, const float *logits, int32_t n_vocab) {
    if (!run_chain(s, logits, n_vocab)) return -1;
    sl_candidates *c = &s->cur;
    if (s->greedy) {
        int32_t best = 0;
        for (int32_t i = 1; i < c->size; i++)
            if (before(&c->data[i], &c->data[best])) best = i;
        return c->data[best].logit > -INFINITY ? c->data[best].id : -1;
    }
    if (!softmax(c)) return -1;
    double u = rng_uniform(&s->rng), cum = 0.0;
    for (int32_t i = 0; i < c->size; i++) {
        cum += c->data[i].p;
        if (u < cum) return c->data[i].id;
    }
    /* rounding left u above the total: the last token with any probability */
    for (int32_t i = c->size - 1; i >= 0; i--)
        if (c->data[i].p > 0) return c->data[i].id;
    return c->data[0].id;
}
