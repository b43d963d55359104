/*
 * test_sampler.c — the sampling chain against hand-computed distributions.
 *
 * What it checks: greedy and top-k = 1 give the argmax; top-p, min-p and temperature leave the
 * distribution worked out by hand; the repetition penalty's arithmetic and window; a seeded
 * sampler's frequencies over 20k draws match the softmax; the same seed repeats, another seed
 * differs; a custom step plugs into the chain; bad parameters and inputs are refused.
 * What it does not check: speed, or generation with a model (see the CLI tests).
 */
#include "text/sampler.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sl_sampler_params params(float temp, int32_t top_k, float top_p, float min_p) {
    sl_sampler_params p = sl_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = 1234;
    return p;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* probability the candidates give token id (0 when it was cut) */
static double prob_of(const sl_candidates *c, int32_t id) {
    for (int32_t i = 0; i < c->size; i++)
        if (c->data[i].id == id) return c->data[i].p;
    return 0.0;
}

/* The fixed distribution used below: p = {0.05, 0.5, 0.1, 0.2, 0.15} over ids 0..4 (shuffled so
 * that sorting is exercised). */
static const double P5[5] = {0.05, 0.5, 0.1, 0.2, 0.15};

static void logits5(float *l) {
    for (int i = 0; i < 5; i++) l[i] = (float)log(P5[i]) + 3.0f; /* a shift changes nothing */
}

static void test_greedy(void) {
    test_rng r = {99};
    float logits[1000];
    bool all_greedy = true, all_topk1 = true;
    for (int t = 0; t < 100; t++) {
        for (int i = 0; i < 1000; i++) logits[i] = 3.0f * test_rng_normal(&r);
        sl_sampler_params p0 = params(0.0f, 40, 0.95f, 0.05f);
        sl_sampler_params p1 = params(0.8f, 1, 0.95f, 0.05f);
        p1.seed = (uint64_t)t;
        sl_sampler *g = sl_sampler_init(&p0), *k1 = sl_sampler_init(&p1);
        all_greedy = all_greedy && sl_sampler_sample(g, logits, 1000) == argmax(logits, 1000);
        all_topk1 = all_topk1 && sl_sampler_sample(k1, logits, 1000) == argmax(logits, 1000);
        sl_sampler_free(g);
        sl_sampler_free(k1);
    }
    CHECK(all_greedy, "temperature 0 picks the argmax (100 random rows)");
    CHECK(all_topk1, "top-k 1 picks the argmax at temperature 0.8 (100 random rows, seeds 0..99)");

    float ties[4] = {1.0f, 5.0f, 5.0f, -2.0f};
    sl_sampler_params p0 = params(0.0f, 0, 1.0f, 0.0f);
    sl_sampler *g = sl_sampler_init(&p0);
    CHECK(sl_sampler_sample(g, ties, 4) == 1, "greedy ties go to the lowest id");
    float nan_row[3] = {NAN, 2.0f, NAN};
    CHECK(sl_sampler_sample(g, nan_row, 3) == 1, "NaN logits count as -inf");
    float dead[2] = {-INFINITY, NAN};
    CHECK(sl_sampler_sample(g, dead, 2) == -1, "all -inf/NaN logits give -1");
    CHECK(sl_sampler_sample(g, NULL, 3) == -1 && sl_sampler_sample(g, ties, 0) == -1 && sl_sampler_sample(NULL, ties, 4) == -1,
          "NULL logits / n_vocab 0 / NULL sampler give -1");
    sl_sampler_free(g);
}

static void test_distributions(void) {
    float l[5];
    logits5(l);

    /* no filters, temperature 1: the softmax itself */
    sl_sampler_params p = params(1.0f, 0, 1.0f, 0.0f);
    sl_sampler *s = sl_sampler_init(&p);
    const sl_candidates *c = sl_sampler_apply(s, l, 5);
    double md = 0;
    for (int i = 0; i < 5; i++) md = fmax(md, fabs(prob_of(c, i) - P5[i]));
    CHECK(c && c->size == 5 && md < 1e-6, "no filters: probabilities are the softmax (maxdiff %.2g)", md);
    sl_sampler_free(s);

    /* top-p 0.8: sorted 0.5, 0.2 (0.7 < 0.8), 0.15 (0.85 >= 0.8) -> keep 3, renormalised */
    p = params(1.0f, 0, 0.8f, 0.0f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    CHECK(c && c->size == 3 && fabs(prob_of(c, 1) - 0.5 / 0.85) < 1e-6 && fabs(prob_of(c, 3) - 0.2 / 0.85) < 1e-6 &&
              fabs(prob_of(c, 4) - 0.15 / 0.85) < 1e-6 && prob_of(c, 0) == 0 && prob_of(c, 2) == 0,
          "top-p 0.8 keeps {0.5, 0.2, 0.15} renormalised");
    sl_sampler_free(s);
    p = params(1.0f, 0, 0.5f, 0.0f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    CHECK(c && c->size == 1 && c->data[0].id == 1, "top-p 0.5 keeps only the 0.5 token (cumulative >= p)");
    sl_sampler_free(s);

    /* top-k 2 */
    p = params(1.0f, 2, 1.0f, 0.0f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    CHECK(c && c->size == 2 && fabs(prob_of(c, 1) - 0.5 / 0.7) < 1e-6 && fabs(prob_of(c, 3) - 0.2 / 0.7) < 1e-6,
          "top-k 2 keeps {0.5, 0.2} renormalised");
    sl_sampler_free(s);

    /* min-p 0.35: keep p >= 0.175 -> {0.5, 0.2} */
    p = params(1.0f, 0, 1.0f, 0.35f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    CHECK(c && c->size == 2 && fabs(prob_of(c, 1) - 0.5 / 0.7) < 1e-6, "min-p 0.35 keeps tokens with p >= 0.175");
    sl_sampler_free(s);

    /* temperature 2: p_i proportional to sqrt(P5_i) */
    p = params(2.0f, 0, 1.0f, 0.0f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    double z = 0;
    for (int i = 0; i < 5; i++) z += sqrt(P5[i]);
    md = 0;
    for (int i = 0; i < 5; i++) md = fmax(md, fabs(prob_of(c, i) - sqrt(P5[i]) / z));
    CHECK(c && md < 1e-6, "temperature 2 flattens to sqrt(p) renormalised (maxdiff %.2g)", md);
    sl_sampler_free(s);

    /* the order of the chain (llama.cpp's): top-k 3 leaves {0.5, 0.2, 0.15}; top-p 0.75 over what
     * is left (0.588, 0.235: cumulative 0.82 >= 0.75) keeps 2; min-p 0.3 keeps both (0.2/0.5 >=
     * 0.3); temperature 0.5 squares them: 0.25 and 0.04 renormalised */
    p = params(0.5f, 3, 0.75f, 0.3f);
    s = sl_sampler_init(&p);
    c = sl_sampler_apply(s, l, 5);
    z = 0.25 + 0.04;
    CHECK(c && c->size == 2 && fabs(prob_of(c, 1) - 0.25 / z) < 1e-5 && fabs(prob_of(c, 3) - 0.04 / z) < 1e-5,
          "top-k, top-p, min-p, temperature applied in llama.cpp's order");
    sl_sampler_free(s);
}

static void test_empirical(void) {
    float l[5];
    logits5(l);
    sl_sampler_params p = params(1.0f, 0, 1.0f, 0.0f);
    p.seed = 42;
    sl_sampler *s = sl_sampler_init(&p);
    int counts[5] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        int32_t t = sl_sampler_sample(s, l, 5);
        if (t >= 0 && t < 5) counts[t]++;
    }
    double md = 0;
    for (int i = 0; i < 5; i++) md = fmax(md, fabs((double)counts[i] / N - P5[i]));
    /* the largest standard deviation is sqrt(0.25 / 20000) = 0.0035: 0.015 is over 4 sigma */
    CHECK(md < 0.015, "20k seeded draws match the softmax (max |freq - p| = %.4f < 0.015)", md);
    sl_sampler_free(s);

    /* with top-p 0.8 the cut tokens never appear, the rest follow the renormalised mass */
    p = params(1.0f, 0, 0.8f, 0.0f);
    s = sl_sampler_init(&p);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < N; i++) {
        int32_t t = sl_sampler_sample(s, l, 5);
        if (t >= 0 && t < 5) counts[t]++;
    }
    CHECK(counts[0] == 0 && counts[2] == 0 && fabs((double)counts[1] / N - 0.5 / 0.85) < 0.015,
          "top-p 0.8 draws: cut tokens never drawn, kept ones at their renormalised rate");
    sl_sampler_free(s);

    /* a larger vocabulary through top-p's partial sort: 5000 tokens, flat-ish */
    test_rng r = {7};
    int32_t n = 5000;
    float *big = malloc((size_t)n * sizeof(float));
    for (int32_t i = 0; i < n; i++) big[i] = 0.3f * test_rng_normal(&r);
    p = params(1.0f, 0, 0.9f, 0.0f);
    s = sl_sampler_init(&p);
    const sl_candidates *c = sl_sampler_apply(s, big, n);
    bool sorted = c != NULL;
    for (int32_t i = 1; c && i < c->size; i++) sorted = sorted && c->data[i - 1].logit >= c->data[i].logit;
    /* the cut must be exactly where the sorted cumulative mass first reaches 0.9 */
    float *sv = malloc((size_t)n * sizeof(float));
    memcpy(sv, big, (size_t)n * sizeof(float));
    for (int32_t i = 1; i < n; i++) /* insertion sort, descending: fine for 5000 once */
        for (int32_t j = i; j > 0 && sv[j] > sv[j - 1]; j--) {
            float t = sv[j];
            sv[j] = sv[j - 1];
            sv[j - 1] = t;
        }
    double zz = 0, cum = 0;
    for (int32_t i = 0; i < n; i++) zz += exp(sv[i] - sv[0]);
    int32_t want = n;
    for (int32_t i = 0; i < n; i++) {
        cum += exp(sv[i] - sv[0]) / zz;
        if (cum >= 0.9) {
            want = i + 1;
            break;
        }
    }
    CHECK(sorted && c->size >= want - 1 && c->size <= want + 1,
          "top-p on 5000 flat logits keeps %d sorted tokens (exact cut %d)", c ? c->size : -1, want);
    sl_sampler_free(s);
    free(sv);
    free(big);
}

static void test_seed(void) {
    test_rng r = {5};
    float l[200];
    for (int i = 0; i < 200; i++) l[i] = test_rng_normal(&r);
    sl_sampler_params p = params(1.0f, 50, 0.95f, 0.0f);
    p.seed = 777;
    sl_sampler *a = sl_sampler_init(&p), *b = sl_sampler_init(&p);
    p.seed = 778;
    sl_sampler *c = sl_sampler_init(&p);
    int32_t sa[64], sb[64], sc[64];
    for (int i = 0; i < 64; i++) {
        sa[i] = sl_sampler_sample(a, l, 200);
        sb[i] = sl_sampler_sample(b, l, 200);
        sc[i] = sl_sampler_sample(c, l, 200);
    }
    CHECK(memcmp(sa, sb, sizeof sa) == 0, "the same seed gives the same 64 tokens");
    CHECK(memcmp(sa, sc, sizeof sa) != 0, "another seed gives other tokens");
    sl_sampler_reset(a);
    bool again = true;
    for (int i = 0; i < 64; i++) again = again && sl_sampler_sample(a, l, 200) == sa[i];
    CHECK(again, "reset restarts the generator from the seed");
    sl_sampler_free(a);
    sl_sampler_free(b);
    sl_sampler_free(c);
}

static void test_penalty(void) {
    float l[4] = {2.0f, -1.0f, 0.5f, 3.0f};
    sl_sampler_params p = params(1.0f, 0, 1.0f, 0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    sl_sampler *s = sl_sampler_init(&p);
    sl_sampler_accept(s, 0);
    sl_sampler_accept(s, 1);
    sl_sampler_accept(s, 0); /* twice: still penalised once */
    const sl_candidates *c = sl_sampler_apply(s, l, 4);
    float got[4] = {0};
    for (int32_t i = 0; c && i < c->size; i++) got[c->data[i].id] = c->data[i].logit;
    CHECK(c && got[0] == 1.0f && got[1] == -2.0f && got[2] == 0.5f && got[3] == 3.0f,
          "penalty 2: 2 -> 1, -1 -> -2, others unchanged (got %g %g %g %g)", got[0], got[1], got[2], got[3]);
    /* window of 3: after accepting 2, 3 and 3, token 0 and 1 have left the window */
    sl_sampler_accept(s, 2);
    sl_sampler_accept(s, 3);
    sl_sampler_accept(s, 3);
    c = sl_sampler_apply(s, l, 4);
    for (int32_t i = 0; c && i < c->size; i++) got[c->data[i].id] = c->data[i].logit;
    CHECK(c && got[0] == 2.0f && got[1] == -1.0f && got[2] == 0.25f && got[3] == 1.5f,
          "penalty window: only the last 3 accepted tokens count (got %g %g %g %g)", got[0], got[1], got[2], got[3]);
    sl_sampler_free(s);

    /* greedy with a penalty: the penalised argmax loses */
    p = params(0.0f, 0, 1.0f, 0.0f);
    p.repeat_penalty = 4.0f;
    p.repeat_last_n = 8;
    s = sl_sampler_init(&p);
    CHECK(sl_sampler_sample(s, l, 4) == 3, "greedy without history picks 3");
    sl_sampler_accept(s, 3);
    CHECK(sl_sampler_sample(s, l, 4) == 0, "greedy with 3 penalised (3 -> 0.75) picks 0");
    sl_sampler_reset(s);
    CHECK(sl_sampler_sample(s, l, 4) == 3, "reset clears the penalty history");
    sl_sampler_free(s);
}

/* a custom step: forbid one token */
static void ban_apply(void *st, sl_candidates *c) {
    int32_t ban = *(int32_t *)st;
    int32_t n = 0;
    for (int32_t i = 0; i < c->size; i++)
        if (c->data[i].id != ban) c->data[n++] = c->data[i];
    if (n > 0) c->size = n;
}

static void test_custom_step(void) {
    float l[5];
    logits5(l);
    sl_sampler_params p = params(1.0f, 0, 1.0f, 0.0f);
    sl_sampler *s = sl_sampler_init(&p);
    int32_t *ban = malloc(sizeof *ban);
    *ban = 1;
    sl_sampler_step st = {"ban", ban_apply, NULL, NULL, free, ban};
    sl_error err;
    CHECK(sl_sampler_add_step(s, &st, &err) == SL_OK, "a custom step is added");
    bool never = true;
    for (int i = 0; i < 2000; i++) never = never && sl_sampler_sample(s, l, 5) != 1;
    CHECK(never, "the custom step's banned token is never drawn");
    sl_sampler_step bad = {"bad", NULL, NULL, NULL, NULL, NULL};
    CHECK(sl_sampler_add_step(s, &bad, &err) == SL_ERR_INVALID_ARG, "a step without apply() is refused");
    sl_sampler_free(s);
}

static void test_params(void) {
    sl_error err;
    sl_sampler_params d = sl_sampler_default_params();
    CHECK(d.temperature == 0.8f && d.top_k == 40 && d.top_p == 0.95f && d.min_p == 0.05f && d.repeat_penalty == 1.0f &&
              d.repeat_last_n == 64,
          "defaults are llama.cpp's");
    CHECK(sl_sampler_params_check(&d, &err), "defaults pass the check");
    sl_sampler_params b = d;
    b.top_p = NAN;
    CHECK(!sl_sampler_params_check(&b, &err) && sl_sampler_init(&b) == NULL, "top_p NaN refused (%s)", err.message);
    b = d;
    b.repeat_penalty = 0.0f;
    CHECK(!sl_sampler_params_check(&b, &err) && sl_sampler_init(&b) == NULL, "repeat_penalty 0 refused");
    b = d;
    b.min_p = 1.5f;
    CHECK(!sl_sampler_params_check(&b, &err), "min_p 1.5 refused");
    b = d;
    b.top_k = -1;
    CHECK(!sl_sampler_params_check(&b, &err), "top_k -1 refused");
    b = d;
    b.temperature = INFINITY;
    CHECK(!sl_sampler_params_check(&b, &err), "infinite temperature refused");
    CHECK(sl_sampler_init(NULL) == NULL, "NULL parameters refused");
    sl_sampler_free(NULL);
    sl_sampler_accept(NULL, 3);
}

int main(void) {
    test_greedy();
    test_distributions();
    test_empirical();
    test_seed();
    test_penalty();
    test_custom_step();
    test_params();
    return test_summary();
}
