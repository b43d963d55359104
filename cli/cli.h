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
int cmd_tune(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Inputs (cli/io.c): a whole file or stream read into a malloc'd NUL-terminated buffer (*len bytes,
 * may contain NUL), with its size checked first: a regular file by stat, before anything is read
 * (at most CLI_MAX_FILE, the tokenizer's own limit, or max_bytes), a stream ('-' = standard input,
 * a pipe, a device) by stopping after CLI_MAX_STREAM bytes. Prints an error naming cmd and returns
 * NULL on failure. */
#define CLI_MAX_FILE ((size_t)1 << 30)
#define CLI_MAX_STREAM ((size_t)256 << 20)
char *cli_read_input(const char *cmd, const char *path, size_t *len);
char *cli_read_file(const char *cmd, const char *path, size_t max_bytes, size_t *len);
/* Outputs: check an -o path before the work that produces it — refuse a directory, a block device,
 * a missing or read-only folder; say so when the file is a symbolic link (its target is written)
 * or a device/FIFO (written in place). The writing itself goes through sl_output (skipllama.h):
 * a temporary beside the target, renamed into place, removed on errors and on SIGINT/SIGTERM
 * (main.c). False after printing an error. */
bool cli_output_check(const char *cmd, const char *path);
/* Bytes free for an unprivileged user in the folder path (a file to be written) goes into, or -1. */
int64_t cli_free_disk(const char *path);
/* MemAvailable of /proc/meminfo in bytes, or -1. */
int64_t cli_available_memory(void);
/* True when path is missing or a regular file (what takes disk space when written). */
bool cli_output_is_regular(const char *path);
/* "1.0 GiB", "256 MiB", ... */
void cli_format_bytes(char *buf, size_t cap, double bytes);

/* A progress bar on stderr with rate and ETA. On a terminal it redraws one line in place (at most
 * ten times a second); otherwise (a log file, a pipe) it prints a plain line at most once every
 * 10 s across all bars, so a short command prints none. A unit of "B" shows sizes (MiB, GiB).
 * Call with done == total to end a terminal line. */
typedef struct cli_progress {
    const char *label; /* shown before the bar */
    const char *unit;  /* "tok", "B" (bytes), ... */
    double t0;         /* start time (seconds) */
    double last_draw;  /* terminal: time of the last redraw */
    bool tty;          /* stderr is a terminal */
    bool quiet;        /* print nothing */
    bool ended;        /* the terminal line was ended */
} cli_progress;
#define CLI_PROGRESS_LOG_INTERVAL 10.0 /* seconds between lines when stderr is not a terminal */
void cli_progress_start(cli_progress *p, const char *label, const char *unit, bool quiet);
void cli_progress_update(cli_progress *p, int64_t done, int64_t total);
/* Erase a partly drawn terminal line, before printing something else to stderr. */
void cli_progress_clear(cli_progress *p);
/* Callback form for library functions taking (ud, done, total). */
void cli_progress_cb(void *ud, int64_t done, int64_t total);

/* Print "skipllama <cmd>: <message>" to stderr. Returns 1 (use as `return cli_fail(...)`). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "key": "s" (JSON-escaped) to stdout, then ", " when comma. */
void cli_json_str(const char *key, const char *s, bool comma);
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

/* sl_model_load, then: warnings the load collected printed as "skipllama CMD: warning: ...";
 * on failure, *err says why, with a hint where one helps (a vocab-only file: --vocab-only). */
sl_model *cli_load_model(const char *cmd, const char *path, const sl_model_params *params, sl_error *err);
/* Warn when a context of n_ctx tokens is longer than the model was trained for. */
void cli_warn_ctx(const char *cmd, const sl_model *model, int n_ctx);

/* The bundled tiny model used when -m is not given: $SKIPLLAMA_MODEL, else the first readable of
 * <binary's folder>/../share/skipllama/tiny-silu.gguf (installed by `make install`),
 * <binary's folder>/../tests/data/tiny-silu.gguf (a source tree's build folder), the data folder
 * compiled in (SKIPLLAMA_DATADIR) and ./tests/data/tiny-silu.gguf. NULL when none is there. */
const char *cli_default_model(void);
/* path, or the bundled model when path is NULL; NULL after printing where it looked. */
const char *cli_model_path(const char *cmd, const char *path);

#endif
