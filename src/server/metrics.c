/*
 * metrics.c — what the server tells about itself: /metrics in Prometheus' text exposition format
 * (counters of requests and tokens, recent generation speed, slot and queue use, the achieved
 * MLP sparsity) and the /props object the chat page reads (model, context, slots, whether a
 * profile is loaded and its sparsity). What it is not: where the numbers are counted (engine.c
 * for tokens and steps, http.c for requests).
 */
#include "server/server.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static bool metric(strbuf *b, const char *name, const char *type, const char *help, double value) {
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
    return n > 0 && (size_t)n < sizeof line && sb_append(b, line, (size_t)n);
}

char *srv_metrics_text(const srv_counters *c, const srv_stats *s) {
    strbuf b = {0};
    bool ok = sb_reserve(&b, 4096);
    ok = ok && metric(&b, "skipllama_requests_total", "counter", "HTTP requests answered", (double)atomic_load(&c->requests));
    ok = ok && metric(&b, "skipllama_requests_4xx_total", "counter", "requests answered with a 4xx status", (double)atomic_load(&c->errors_4xx));
    ok = ok && metric(&b, "skipllama_requests_5xx_total", "counter", "requests answered with a 5xx status", (double)atomic_load(&c->errors_5xx));
    ok = ok && metric(&b, "skipllama_requests_rejected_busy_total", "counter", "requests refused with 503 because the queue was full",
                      (double)atomic_load(&c->rejected_busy));
    ok = ok && metric(&b, "skipllama_client_disconnects_total", "counter", "clients that went away before their answer was complete",
                      (double)atomic_load(&c->disconnects));
    ok = ok && metric(&b, "skipllama_completions_total", "counter", "completion requests accepted", (double)atomic_load(&c->completions));
    ok = ok && metric(&b, "skipllama_chat_completions_total", "counter", "chat completion requests accepted", (double)atomic_load(&c->chats));
    ok = ok && metric(&b, "skipllama_prompt_tokens_total", "counter", "prompt tokens evaluated (not counting reused cache)", (double)s->prompt_tokens);
    ok = ok && metric(&b, "skipllama_prompt_tokens_cached_total", "counter", "prompt tokens reused from a slot's KV cache", (double)s->cached_tokens);
    ok = ok && metric(&b, "skipllama_tokens_generated_total", "counter", "tokens generated", (double)s->gen_tokens);
    ok = ok && metric(&b, "skipllama_decode_steps_total", "counter", "batched decoding steps run", (double)s->steps);
    ok = ok && metric(&b, "skipllama_step_tokens_total", "counter", "tokens evaluated by the decoding steps", (double)s->step_rows);
    ok = ok && metric(&b, "skipllama_busy_seconds_total", "counter", "seconds spent in decoding steps", s->t_busy);
    ok = ok && metric(&b, "skipllama_tokens_per_second", "gauge", "generated tokens per second over the last 10 s", s->gen_tps);
    ok = ok && metric(&b, "skipllama_slots_busy", "gauge", "slots running a request", s->slots_busy);
    ok = ok && metric(&b, "skipllama_slots_total", "gauge", "slots (-np)", s->n_parallel);
    ok = ok && metric(&b, "skipllama_queue_length", "gauge", "requests waiting for a slot", s->queued);
    ok = ok && metric(&b, "skipllama_queue_capacity", "gauge", "requests that may wait before 503", s->queue_size);
    ok = ok && metric(&b, "skipllama_mlp_sparsity", "gauge", "achieved MLP sparsity of recent sparse decode steps (0 when dense)",
                      s->sparsity >= 0 ? s->sparsity : 0.0);
    ok = ok && metric(&b, "skipllama_profile_target_sparsity", "gauge", "the profile's target sparsity (-1 without a profile)",
                      s->profile_sparsity);
    /* batches of several slots' decoding tokens on the sparse path, per (step, layer) pass */
    const double nb = (double)s->batch_layers * (s->n_ff > 0 ? s->n_ff : 1);
    ok = ok && metric(&b, "skipllama_batch_passes_total", "counter", "sparse MLP passes over several slots' decoding tokens (steps x layers)",
                      (double)s->batch_layers);
    ok = ok && metric(&b, "skipllama_batch_union_neurons_total", "counter", "union of the slots' own neuron selections, summed over passes",
                      (double)s->batch_union_own);
    ok = ok && metric(&b, "skipllama_batch_read_neurons_total", "counter", "neurons read by the passes (the union, or the shared set), summed",
                      (double)s->batch_read);
    ok = ok && metric(&b, "skipllama_batch_shared_total", "counter", "passes that computed one shared neuron set (batch selection shared or auto)",
                      (double)s->batch_shared);
    ok = ok && metric(&b, "skipllama_batch_own_kept_total", "counter", "shared passes: neurons of each slot's own selection the shared set held",
                      (double)s->own_kept);
    ok = ok && metric(&b, "skipllama_batch_own_selected_total", "counter", "shared passes: neurons of the slots' own selections",
                      (double)s->own_total);
    ok = ok && metric(&b, "skipllama_batch_union_ratio", "gauge", "union of the slots' own selections per pass, fraction of a layer (since start)",
                      s->batch_layers ? (double)s->batch_union_own / nb : 0.0);
    ok = ok && metric(&b, "skipllama_batch_own_recall", "gauge", "share of the slots' own selections the shared sets held (since start; 1 without)",
                      s->own_total ? (double)s->own_kept / (double)s->own_total : 1.0);
    if (!ok) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

char *srv_props_json(const srv_stats *s, const char *model, const sl_model_config *cfg, bool api_key, bool profile) {
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:b,s:b,s:o,s:o}", "model", model, "version", SKIPLLAMA_VERSION, "n_ctx", s->n_ctx,
                          "n_parallel", s->n_parallel, "n_vocab", cfg->n_vocab, "n_layer", cfg->n_layer, "n_ff", cfg->n_ff, "api_key",
                          api_key, "profile", profile, "sparsity", profile ? json_real(s->profile_sparsity) : json_null(),
                          "achieved_sparsity", s->sparsity >= 0 ? json_real(s->sparsity) : json_null());
    if (o) json_object_set_new(o, "batch_select", s->batch_select ? json_string(s->batch_select) : json_null());
    char *r = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return r;
}
