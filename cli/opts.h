/*
 * opts.h — the command-line option module every `skipllama` subcommand uses: one declarative
 * table per subcommand (spellings, type, destination, accepted range, help text) that parses
 * argv, checks every value against its range (messages state the range exactly), and generates
 * `--help` from the same table, so what is accepted and what is documented cannot drift.
 *
 * The flags shared by several subcommands are built by the CLI_OPT_* macros below, so that they
 * have one spelling, one range and one meaning everywhere (llama.cpp's spellings where the
 * meaning is the same). What it is not: a general argument library — no option bundling
 * (`-qv`), no interleaved subcommand trees (a subcommand with actions, like `profile`, calls
 * cli_parse once per action).
 *
 * How to add an option or a subcommand: docs/architecture.md, "A new CLI subcommand".
 */
#ifndef SL_CLI_OPTS_H
#define SL_CLI_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_opt_type {
    CLI_FLAG,     /* bool *: set to true; takes no value */
    CLI_FLAG_OFF, /* bool *: set to false (e.g. --no-bos); takes no value */
    CLI_INT,      /* int *: a decimal integer in [lo, hi] */
    CLI_I64,      /* int64_t *: a decimal integer in [lo, hi] (hi >= 2^53 means "no upper bound") */
    CLI_U64,      /* uint64_t *: a decimal integer in [lo, hi] with lo >= 0 (seeds) */
    CLI_FLOAT,    /* float *: a finite number in [lo, hi]; CLI_LO_OPEN / CLI_HI_OPEN make an end open */
    CLI_STR,      /* const char **: the value as given (the last one wins) */
    CLI_STRS,     /* const char *dest[max]: repeatable; *count values so far */
    CLI_INTS,     /* int dest[max]: a comma-separated list, each element in [lo, hi]; *count set */
    CLI_FLOATS,   /* float dest[max]: a comma-separated list, each element in [lo, hi] (open ends as CLI_FLOAT) */
    CLI_CHOICE,   /* int *: the index of the value in `choices` ("md|json") */
    CLI_CUSTOM,   /* parse(value, dest) decides; `choices` says what is accepted (in messages and help) */
} cli_opt_type;

enum {
    CLI_LO_OPEN = 1 << 0,    /* the range excludes lo */
    CLI_HI_OPEN = 1 << 1,    /* the range excludes hi */
    CLI_REQUIRED = 1 << 2,   /* the command fails when the option is not given */
    CLI_DEPRECATED = 1 << 3, /* still accepted, with a note on stderr (help shows `help` as the note) */
    CLI_NO_RANGE = 1 << 4,   /* do not print the range in --help (the help text says it) */
    CLI_DEF_CORES = 1 << 5,  /* --help appends the physical core count to the default ("the physical cores, 2 here") */
};

typedef struct cli_opt {
    /* Spellings separated by spaces: an optional short one ("-m"), the canonical long one
     * ("--model"), then older spellings kept as aliases ("--ctx"). Two entries may share a
     * spelling: the value goes to the first whose type accepts it (used to keep an old meaning of
     * a letter working beside the shared one, e.g. `synth -t q8_0` beside `synth -t 4`). */
    const char *names;
    cli_opt_type type;
    void *dest;          /* where the value goes (see the type); its value before parsing is the default */
    double lo, hi;       /* accepted range of numbers (of every element of a list) */
    unsigned flags;      /* CLI_* flags above */
    const char *meta;    /* the value's name in --help and messages: "N", "FILE" */
    const char *help;    /* one line of help (may contain '\n' for more lines) */
    const char *def;     /* the default as shown in --help; NULL = rendered from *dest; "" = none shown */
    const char *choices; /* CLI_CHOICE: "md|json"; CLI_CUSTOM: what is accepted, for messages */
    int max_count;       /* CLI_STRS / CLI_INTS / CLI_FLOATS: capacity of dest */
    int *count;          /* CLI_STRS / CLI_INTS / CLI_FLOATS: values stored */
    bool (*parse)(const char *value, void *dest); /* CLI_CUSTOM */
    bool *seen;          /* optional: set to true when the option is given */
} cli_opt;

/* A subcommand's table and texts. `opts` ends with an entry whose names is NULL (CLI_OPT_END). */
typedef struct cli_cmd {
    const char *name;   /* "run", or "profile show" for an action */
    const char *usage;  /* after "usage: skipllama <name> ": "[-m MODEL.gguf] (-p PROMPT | -f FILE) [options]" */
    const char *about;  /* paragraph printed after the usage line (may be NULL) */
    cli_opt *opts;      /* the table */
    int min_pos;        /* positional arguments required ... */
    int max_pos;        /* ... and allowed (-1 = any number) */
    const char *footer; /* printed after the options (may be NULL) */
} cli_cmd;

/* Parse argv[1..argc) (argv[0] is the subcommand's name) against cmd's table. Positional
 * arguments are moved to argv[1..*n_pos] (n_pos may be NULL when max_pos is 0); "--" ends the
 * options, "-" and negative numbers ("-3") are positional. "--name=value" is accepted for
 * options that take a value. Returns true when the command should go on; false when it should
 * exit with *rc: 0 after printing --help to stdout, 1 after printing an error to stderr. */
bool cli_parse(const cli_cmd *cmd, int argc, char **argv, int *n_pos, int *rc);

/* Print the generated help (usage, about, options with ranges and defaults, footer). */
void cli_help(const cli_cmd *cmd, FILE *out);

/* The number of physical cores this process may run on (distinct core ids of the CPUs in its
 * affinity mask, from /sys/devices/system/cpu/cpuN/topology), or the online CPUs when the
 * topology cannot be read; at least 1 and at most CLI_MAX_THREADS. The default of -t. */
int cli_default_threads(void);

/* Limits shared by every subcommand (the library's own limits: sl_context_init). */
#define CLI_MAX_THREADS 512
#define CLI_MAX_CTX (1 << 22)
#define CLI_MAX_BATCH 65536
#define CLI_DEFAULT_BATCH 64

#define CLI_OPT_END {.names = NULL}

/* ---- the shared flags: same spelling, range and meaning in every subcommand ---------------- */

/* -m/--model FILE: the GGUF model; when not given, the command uses cli_model_path(). */
#define CLI_OPT_MODEL(dst, helptext)                                                                                          \
    {.names = "-m --model", .type = CLI_STR, .dest = (dst), .meta = "FILE", .help = (helptext), .def = "the bundled tiny model"}
/* -p/--prompt TEXT: the prompt / text. */
#define CLI_OPT_PROMPT(dst, helptext) {.names = "-p --prompt", .type = CLI_STR, .dest = (dst), .meta = "TEXT", .help = (helptext), .def = ""}
/* -f/--file FILE: read the text from a file ('-' = standard input where the command says so). */
#define CLI_OPT_FILE(dst, helptext) {.names = "-f --file", .type = CLI_STR, .dest = (dst), .meta = "FILE", .help = (helptext), .def = ""}
/* -o/--output FILE: the file to write. */
#define CLI_OPT_OUTPUT(dst, helptext) {.names = "-o --output", .type = CLI_STR, .dest = (dst), .meta = "FILE", .help = (helptext), .def = ""}
/* -c/--ctx-size N: context length in tokens; 0 = the model's trained context (--ctx: old spelling). */
#define CLI_OPT_CTX(dst, helptext, deftext)                                                                                   \
    {.names = "-c --ctx-size --ctx", .type = CLI_INT, .dest = (dst), .lo = 0, .hi = CLI_MAX_CTX, .meta = "N", .help = (helptext), \
     .def = (deftext)}
/* -t/--threads N: worker threads; default the physical cores (initialise dst with cli_default_threads()). */
#define CLI_OPT_THREADS(dst)                                                                                                  \
    {.names = "-t --threads", .type = CLI_INT, .dest = (dst), .lo = 1, .hi = CLI_MAX_THREADS, .meta = "N", .help = "worker threads", \
     .def = "the physical cores", .flags = CLI_DEF_CORES}
/* -t/--threads LIST: several thread counts, for the benchmarks (llama-bench's -t). */
#define CLI_OPT_THREADS_LIST(dst, cnt, maxn)                                                                                  \
    {.names = "-t --threads", .type = CLI_INTS, .dest = (dst), .count = (cnt), .max_count = (maxn), .lo = 1, .hi = CLI_MAX_THREADS, \
     .meta = "N[,N...]", .help = "worker thread counts, comma-separated", .def = "the physical cores", .flags = CLI_DEF_CORES}
/* -b/--batch-size N: tokens per evaluation step of a prompt (--batch: old spelling). */
#define CLI_OPT_BATCH(dst)                                                                                                    \
    {.names = "-b --batch-size --batch", .type = CLI_INT, .dest = (dst), .lo = 1, .hi = CLI_MAX_BATCH, .meta = "N",             \
     .help = "prompt tokens evaluated per step"}
/* -n/--n-predict N: tokens to generate. */
#define CLI_OPT_NPREDICT(dst, helptext)                                                                                       \
    {.names = "-n --n-predict", .type = CLI_INT, .dest = (dst), .lo = -1, .hi = 1 << 30, .meta = "N", .help = (helptext)}
/* -s/--seed N: random seed. */
#define CLI_OPT_SEED(dst, helptext, deftext)                                                                                  \
    {.names = "-s --seed", .type = CLI_U64, .dest = (dst), .lo = 0, .hi = 9.3e18, .meta = "N", .help = (helptext), .def = (deftext)}
/* -q/--quiet: no progress bar (and no table where the command says so). */
#define CLI_OPT_QUIET(dst, helptext) {.names = "-q --quiet", .type = CLI_FLAG, .dest = (dst), .help = (helptext)}
/* -P/--profile FILE: a sparsity profile. */
#define CLI_OPT_PROFILE(dst, helptext) {.names = "-P --profile", .type = CLI_STR, .dest = (dst), .meta = "FILE", .help = (helptext), .def = ""}
/* --sparsity S: the profile's target fraction of skipped MLP neurons, in [0, 1). */
#define CLI_OPT_SPARSITY(dst, helptext, deftext)                                                                              \
    {.names = "--sparsity", .type = CLI_FLOAT, .dest = (dst), .lo = 0, .hi = 1, .flags = CLI_HI_OPEN, .meta = "S",             \
     .help = (helptext), .def = (deftext)}

#endif
