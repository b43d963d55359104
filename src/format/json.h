/*
 * json.h — reading JSON files through jansson, with the checks every caller needs (internal).
 *
 * What it is for: the Hugging Face files (config.json, tokenizer.json, tokenizer_config.json,
 * model.safetensors.index.json, the safetensors header) are JSON. This wraps Debian's jansson
 * (a maintained parser; no hand-written one here) with a size limit on the input, error messages
 * that name the file, line and column, and typed getters that name the key when a value has the
 * wrong type or is out of range. Numbers are decoded as doubles (jansson's
 * JSON_DECODE_INT_AS_REAL), so huge integers such as tokenizer_config.json's model_max_length
 * (10^30) parse; the integer getters check that a value is integral and within their range.
 * What it is not: a JSON writer or a schema validator — the callers know what they expect.
 */
#ifndef SL_FORMAT_JSON_H
#define SL_FORMAT_JSON_H

#include "skipllama.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse a JSON document held in memory (buf[0..n), need not be NUL-terminated). `what` names
 * it in messages ("config.json"). NULL + err (SL_ERR_FORMAT with line/column) on bad JSON.
 * Duplicate object keys are refused. Release with json_decref. */
json_t *sl_json_parse(const char *buf, size_t n, const char *what, sl_error *err);

/* Read and parse a file of at most max_bytes (bigger: SL_ERR_FORMAT naming both sizes). A missing
 * file is SL_ERR_IO. */
json_t *sl_json_load_file(const char *path, size_t max_bytes, sl_error *err);

/* Read a whole file of at most max_bytes into a malloc'd buffer with a NUL after its *len bytes. */
char *sl_file_read_all(const char *path, size_t max_bytes, size_t *len, sl_error *err);

/* Typed getters on an object member. `what` names the document in messages. Each returns false
 * and fills err when the key is missing (only if required; otherwise *out is left alone and true
 * is returned) or the value has the wrong type / range. A JSON null counts as missing. */
bool sl_json_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, bool required, int64_t *out,
                     const char *what, sl_error *err);
bool sl_json_get_num(const json_t *obj, const char *key, bool required, double *out, const char *what, sl_error *err);
bool sl_json_get_bool(const json_t *obj, const char *key, bool required, bool *out, const char *what, sl_error *err);
/* *out points into the JSON value (valid while it lives). */
bool sl_json_get_str(const json_t *obj, const char *key, bool required, const char **out, const char *what,
                     sl_error *err);

/* The integer value of a JSON number (integral and within [min, max]); false otherwise. */
bool sl_json_int_value(const json_t *v, int64_t min, int64_t max, int64_t *out);

/* The member `key` of obj unless it is absent or null (NULL then). */
json_t *sl_json_member(const json_t *obj, const char *key);

#endif
