/*
 * json.c — jansson behind the checks of json.h: input size limits, messages with file, line and
 * column, typed getters that name the key. What it is not: a parser (jansson parses).
 */
#include "format/json.h"

#include "util/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

json_t *sl_json_parse(const char *buf, size_t n, const char *what, sl_error *err) {
    json_error_t je;
    if (!buf && n) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "%s: NULL buffer", what);
        return NULL;
    }
    json_t *root = json_loadb(buf ? buf : "", n, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) sl_set_error(err, SL_ERR_FORMAT, "%s: bad JSON at line %d, column %d: %s", what, je.line, je.column, je.text);
    return root;
}

char *sl_file_read_all(const char *path, size_t max_bytes, size_t *len, sl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_set_error(err, SL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        sl_set_error(err, SL_ERR_IO, "'%s' is not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        sl_set_error(err, SL_ERR_FORMAT, "'%s' is %lld bytes, more than the %zu allowed for this file", path, (long long)st.st_size,
                     max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        sl_set_error(err, SL_ERR_NOMEM, "out of memory reading '%s' (%zu bytes)", path, n);
        return NULL;
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        sl_set_error(err, SL_ERR_IO, "short read on '%s'", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

json_t *sl_json_load_file(const char *path, size_t max_bytes, sl_error *err) {
    size_t n;
    char *buf = sl_file_read_all(path, max_bytes, &n, err);
    if (!buf) return NULL;
    json_t *root = sl_json_parse(buf, n, path, err);
    free(buf);
    return root;
}

json_t *sl_json_member(const json_t *obj, const char *key) {
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

bool sl_json_int_value(const json_t *v, int64_t min, int64_t max, int64_t *out) {
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    /* doubles represent every integer up to 2^53 exactly; beyond that no id or size is sane */
    if (!(d >= (double)min && d <= (double)max) || d != floor(d) || fabs(d) > 9007199254740992.0) return false;
    *out = (int64_t)d;
    return true;
}

static bool missing(const char *key, bool required, const char *what, sl_error *err) {
    if (required) sl_set_error(err, SL_ERR_FORMAT, "%s: missing required key \"%s\"", what, key);
    return !required;
}

bool sl_json_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, bool required, int64_t *out,
                     const char *what, sl_error *err) {
    json_t *v = sl_json_member(obj, key);
    if (!v) return missing(key, required, what, err);
    if (!sl_json_int_value(v, min, max, out)) {
        sl_set_error(err, SL_ERR_FORMAT, "%s: \"%s\" must be an integer in %lld..%lld", what, key, (long long)min, (long long)max);
        return false;
    }
    return true;
}

bool sl_json_get_num(const json_t *obj, const char *key, bool required, double *out, const char *what, sl_error *err) {
    json_t *v = sl_json_member(obj, key);
    if (!v) return missing(key, required, what, err);
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        sl_set_error(err, SL_ERR_FORMAT, "%s: \"%s\" must be a finite number", what, key);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

bool sl_json_get_bool(const json_t *obj, const char *key, bool required, bool *out, const char *what, sl_error *err) {
    json_t *v = sl_json_member(obj, key);
    if (!v) return missing(key, required, what, err);
    if (!json_is_boolean(v)) {
        sl_set_error(err, SL_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool sl_json_get_str(const json_t *obj, const char *key, bool required, const char **out, const char *what,
                     sl_error *err) {
    json_t *v = sl_json_member(obj, key);
    if (!v) return missing(key, required, what, err);
    if (!json_is_string(v)) {
        sl_set_error(err, SL_ERR_FORMAT, "%s: \"%s\" must be a string", what, key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}
