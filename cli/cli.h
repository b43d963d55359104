/*
 * cli.h — what the `skipllama` subcommands share: the command table entry type, argument
 * parsing helpers that reject malformed numbers, and error printing. Each subcommand lives in
 * its own cli/<name>.c and talks to the library only through include/skipllama.h.
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include "skipllama.h"
#include "opts.h"

#include <stdbool.h>
#include <stdint.h>

/* A subcommand: argv[0] is the subcommand name. Returns the process exit status. */
typedef int (*cli_main_fn)(int argc, char **argv);

/* Every subcommand's entry point (one per cli/<name>.c). */
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_op(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_train_predictor(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_convert(int argc, char **argv);

/* Inputs (cli/io.c): a whole file or stream read into a malloc'd NUL-terminated buffer (*len bytes,
 * may contain NUL), with its size checked first: a regular file by stat, before anything is read
 * (at most CLI_MAX_FILE, the tokenizer's own limit, or max_bytes), a stream ('-' = standard input,
 * a pipe, a device) by stopping after CLI_MAX_STREAM bytes. Prints an error naming cmd and returns
 * NULL on failure. */
#define CLI_MAX_FILE ((size_t)1 << 30)
#define CLI_MAX_STREAM ((size_t)256 << 20)
char *cli_read_input(const char *cmd, const char *path, size_t *len);
char *cli_read_file(const char *cmd, const char *path, size_t max_bytes, size_t *len);
/* "1.0 GiB", "256 MiB", ... */
void cli_format_bytes(char *buf, size_t cap, double bytes);

/* A one-line progress bar with rate and ETA on stderr, redrawn in place (only when stderr is a
 * terminal, or every 10% otherwise). Call with done == total to finish the line. */
typedef struct cli_progress {
    const char *label; /* shown before the bar */
    const char *unit;  /* "tok", ... */
    double t0;         /* start time (seconds) */
    int last_decile;   /* for non-terminal output */
    bool quiet;        /* print nothing */
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, const char *unit, bool quiet);
void cli_progress_update(cli_progress *p, int64_t done, int64_t total);
/* Callback form for library functions taking (ud, done, total). */
void cli_progress_cb(void *ud, int64_t done, int64_t total);

/* Print "skipllama <cmd>: <message>" to stderr. Returns 1 (use as `return cli_fail(...)`). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report an sl_error. Returns 1. */
int cli_fail_err(const char *cmd, const sl_error *err);

/* Strict numeric parsing: the whole string must be a number within [min, max]. */
bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
bool cli_parse_int(const char *s, int min, int max, int *out);
bool cli_parse_float(const char *s, float min, float max, float *out);

/* Parse "1,302,930" into a malloc'd array (*out, *n). False on a malformed list or an id that
 * does not fit in int32. An empty list is an error. */
bool cli_parse_ids(const char *s, int32_t **out, int32_t *n);

/* Fetch the value of an option at argv[*i] (advancing *i), or print an error naming opt and
 * return NULL when it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* Is argv[i] one of the given spellings ("-m", "--model")? */
bool cli_is(const char *arg, const char *short_name, const char *long_name);

/* "one of f32, f16, q4_0, ..." — every tensor type the library knows, for messages and --help. */
const char *cli_type_list(void);
/* CLI_CUSTOM parser of a tensor type name into an sl_type. */
bool cli_parse_type(const char *value, void *dest);

/* The bundled tiny model used when -m is not given: $SKIPLLAMA_MODEL, else the first readable of
 * <binary's folder>/../share/skipllama/tiny-silu.gguf (installed by `make install`),
 * <binary's folder>/../tests/data/tiny-silu.gguf (a source tree's build folder), the data folder
 * compiled in (SKIPLLAMA_DATADIR) and ./tests/data/tiny-silu.gguf. NULL when none is there. */
const char *cli_default_model(void);
/* path, or the bundled model when path is NULL; NULL after printing where it looked. */
const char *cli_model_path(const char *cmd, const char *path);

#endif
