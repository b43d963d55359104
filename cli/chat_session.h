/*
 * chat_session.h — a multi-turn conversation over one context, shared by `skipllama chat` and
 * `skipllama run --chat`: messages rendered by the library's chat templates (sl_chat_apply), the
 * KV cache kept from turn to turn, replies sampled and streamed.
 *
 * How the cache is reused: the session remembers the text its cached tokens stand for (the
 * rendered conversation up to the last evaluated token, replies as generated) with a mark after
 * every evaluated piece (each turn's prompt, each generated token). A new turn renders the whole
 * conversation, keeps the cached tokens up to the last mark inside the part that did not change,
 * and evaluates only the rest — normally the end-of-turn text after the last reply plus the new
 * user message. Where a template rewrites history (Llama-3 trims a reply's trailing spaces,
 * Mistral v3 moves the system message to the last turn) the cache is cut back to where the text
 * first differs. What it is not: a server slot (no prompt cache shared between conversations).
 */
#ifndef SL_CLI_CHAT_SESSION_H
#define SL_CLI_CHAT_SESSION_H

#include "skipllama.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct chat_mark {
    int32_t n_past;  /* tokens in the cache after this piece */
    size_t text_end; /* bytes of the session text they stand for */
} chat_mark;

typedef struct chat_session {
    const char *cmd;            /* "chat" / "run", for messages */
    const sl_vocab *vocab;      /* the model's */
    sl_context *ctx;            /* borrowed */
    sl_sampler *smpl;           /* borrowed */
    sl_chat_template tmpl;      /* the template family */
    int32_t n_vocab;            /* logits per row */
    float *logits;              /* [n_vocab] (owned) */
    int n_predict;              /* tokens per reply; -1 = until end of generation or a full context */
    bool special;               /* print control tokens as text */
    bool add_bos;               /* BOS before the first turn, when the vocabulary wants one */
    sl_chat_message *msgs;      /* the conversation (role/content strings owned) */
    int n_msgs, cap_msgs;
    char *text;                 /* what the cached tokens stand for (owned, NUL-terminated) */
    size_t text_len, text_cap;
    chat_mark *marks;           /* increasing; after each evaluated piece */
    int n_marks, cap_marks;
} chat_session;

/* What one turn did (for the per-turn report). */
typedef struct chat_turn_stats {
    int32_t n_kept;      /* tokens reused from the cache */
    int32_t n_prompt;    /* prompt tokens evaluated for this turn */
    int32_t n_gen;       /* tokens generated */
    double t_prompt;     /* seconds evaluating the prompt tokens */
    double t_gen;        /* seconds generating */
    char stop[160];      /* why generation stopped */
} chat_turn_stats;

/* Set up a session (system may be NULL). Returns 0, or 1 after printing an error. */
int chat_session_init(chat_session *s, const char *cmd, const sl_vocab *vocab, sl_context *ctx, sl_sampler *smpl,
                      sl_chat_template tmpl, int32_t n_vocab, int n_predict, bool special, bool add_bos, const char *system);
/* One turn: the user's message in, the reply streamed to out (and kept in the conversation).
 * With show_prompt, the text of the prompt tokens evaluated is printed to out first. Returns 0,
 * or 1 after printing an error (an error before the reply leaves the conversation as it was). */
int chat_session_turn(chat_session *s, const char *user, bool show_prompt, FILE *out, chat_turn_stats *st);
/* Forget the conversation except the system message, and the cache. */
void chat_session_clear(chat_session *s);
void chat_session_free(chat_session *s);

/* The template to use: `name` (a family name, or Jinja text / a file holding it) when given,
 * else the model's tokenizer.chat_template. Returns 0, or 1 after printing an error naming it. */
int chat_template_choose(const char *cmd, const sl_vocab *vocab, const char *name, sl_chat_template *out);

/* The sampling options of `run` and `chat` (an sl_sampler_params *sp, a bool *seed_set). */
#define CLI_SAMPLER_OPTS(sp, seed_set)                                                                                             \
    {.names = "--temp", .type = CLI_FLOAT, .dest = &(sp)->temperature, .lo = 0, .hi = 1e6, .meta = "T", .help = "temperature; 0 = greedy"}, \
    {.names = "--top-k", .type = CLI_INT, .dest = &(sp)->top_k, .lo = 0, .hi = 1 << 30, .meta = "K", .help = "keep the K most likely tokens; 0 = off"}, \
    {.names = "--top-p", .type = CLI_FLOAT, .dest = &(sp)->top_p, .lo = 0, .hi = 1, .meta = "P", .help = "nucleus sampling; 1 = off"},   \
    {.names = "--min-p", .type = CLI_FLOAT, .dest = &(sp)->min_p, .lo = 0, .hi = 1, .meta = "P", .help = "drop tokens below P x the most likely; 0 = off"}, \
    {.names = "--repeat-penalty", .type = CLI_FLOAT, .dest = &(sp)->repeat_penalty, .lo = 0, .hi = 1e6, .flags = CLI_LO_OPEN, .meta = "R", \
     .help = "penalise the last --repeat-last-n tokens; 1 = off"},                                                                   \
    {.names = "--repeat-last-n", .type = CLI_INT, .dest = &(sp)->repeat_last_n, .lo = 0, .hi = 1 << 20, .meta = "N",                 \
     .help = "window of the repetition penalty"},                                                                                    \
    {.names = "-s --seed", .type = CLI_U64, .dest = &(sp)->seed, .lo = 0, .hi = 9.3e18, .meta = "N", .help = "random seed",          \
     .def = "from the clock, printed", .seen = (seed_set)}

/* --chat-template: a family name, or a file holding a Jinja template. */
#define CLI_OPT_CHAT_TEMPLATE(dst)                                                                                                 \
    {.names = "--chat-template", .type = CLI_STR, .dest = (dst), .meta = "NAME|FILE",                                                \
     .help = "chat template: a family (chatml, llama2, llama2-sys, llama3, mistral-v1, mistral-v3, mistral-v7, phi3,\n"            \
             "gemma ...) or a file with a Jinja template; default: the model's tokenizer.chat_template",                        \
     .def = ""}

#endif
