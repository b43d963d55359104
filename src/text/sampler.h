/*
 * sampler.h — internal view of the sampler for tests: run the chain without the final random
 * pick, to check the distribution each configuration leaves. Not public API.
 */
#ifndef SL_SAMPLER_H
#define SL_SAMPLER_H

#include "skipllama.h"

/* Run every step of the chain on logits[0..n_vocab) and fill the candidates' probabilities with
 * the softmax of what is left (temperature applied). The result is owned by the sampler and valid
 * until the next call. For a greedy sampler, the list holds the candidates after the penalty.
 * NULL when the arguments are bad or every logit is -inf. */
const sl_candidates *sl_sampler_apply(sl_sampler *s, const float *logits, int32_t n_vocab);

#endif
