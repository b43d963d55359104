/*
 * opts.c — the option module (see opts.h): parsing a subcommand's argv against its table, range
 * checks with exact messages, generated --help, and the default thread count (physical cores).
 * What it is not: the subcommands' own checks between options (those stay in cli/<name>.c).
 */
#include "opts.h"
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- spellings ------------------------------------------------------------------------------- */

/* Does `names` ("-c --ctx-size --ctx") contain the spelling arg[0..len)? */
static bool has_name(const char *names, const char *arg, size_t len) {
    for (const char *p = names; *p;) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if ((size_t)(e - p) == len && len && !memcmp(p, arg, len)) return true;
        p = e;
    }
    return false;
}

/* The n-th spelling (0-based) of names into buf; false past the last. */
static bool nth_name(const char *names, int n, char *buf, size_t cap) {
    const char *p = names;
    for (int i = 0;; i++) {
        while (*p == ' ') p++;
        if (!*p) return false;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if (i == n) {
            size_t k = (size_t)(e - p) < cap - 1 ? (size_t)(e - p) : cap - 1;
            memcpy(buf, p, k);
            buf[k] = 0;
            return true;
        }
        p = e;
    }
}

/* "-c/--ctx-size" (short and canonical long spelling) for messages. */
static const char *label(const cli_opt *o, char *buf, size_t cap) {
    char a[40], b[40];
    if (!nth_name(o->names, 0, a, sizeof a)) a[0] = 0;
    if (a[0] == '-' && a[1] != '-' && nth_name(o->names, 1, b, sizeof b) && b[1] == '-') snprintf(buf, cap, "%s/%s", a, b);
    else snprintf(buf, cap, "%s", a);
    return buf;
}

static bool takes_value(const cli_opt *o) { return o->type != CLI_FLAG && o->type != CLI_FLAG_OFF; }

/* ---- ranges ---------------------------------------------------------------------------------- */

static bool is_int_type(cli_opt_type t) { return t == CLI_INT || t == CLI_I64 || t == CLI_U64 || t == CLI_INTS; }

static void fmt_num(char *buf, size_t cap, double v, bool integer) {
    if (integer) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, "%g", v);
}

/* "[1, 512]", "[0, 1)", ">= 0" */
static void range_text(const cli_opt *o, char *buf, size_t cap) {
    const bool integer = is_int_type(o->type);
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, o->lo, integer);
    fmt_num(hi, sizeof hi, o->hi, integer);
    if (o->hi >= 9.0e15) snprintf(buf, cap, "%s %s", o->flags & CLI_LO_OPEN ? ">" : ">=", lo);
    else snprintf(buf, cap, "%c%s, %s%c", o->flags & CLI_LO_OPEN ? '(' : '[', lo, hi, o->flags & CLI_HI_OPEN ? ')' : ']');
}

static bool in_range(const cli_opt *o, double v) {
    if (o->flags & CLI_LO_OPEN ? !(v > o->lo) : !(v >= o->lo)) return false;
    if (o->hi >= 9.0e15) return true;
    return o->flags & CLI_HI_OPEN ? v < o->hi : v <= o->hi;
}

static bool parse_integer(const char *s, long long *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_real(const char *s, double *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* One number of type t (or a list element) within o's range. */
static bool parse_number(const cli_opt *o, const char *s, bool integer, double *out, long long *iout) {
    if (integer) {
        long long v;
        if (!parse_integer(s, &v)) return false;
        if (o->hi < 9.0e15 && (double)v > o->hi) return false;
        if (!in_range(o, (double)v)) return false;
        *iout = v;
        *out = (double)v;
        return true;
    }
    double v;
    if (!parse_real(s, &v)) return false;
    /* compare as float, the type the value is stored in: 0.99999999 rounds to 1 */
    float f = (float)v;
    if (!isfinite(f) || !in_range(o, (double)f)) return false;
    *out = (double)f;
    return true;
}

/* ---- messages -------------------------------------------------------------------------------- */

/* What the option accepts, for "must be ..." messages. */
static void accepts_text(const cli_opt *o, char *buf, size_t cap) {
    char r[96];
    range_text(o, r, sizeof r);
    switch (o->type) {
    case CLI_INT:
    case CLI_I64:
    case CLI_U64: snprintf(buf, cap, "an integer %s%s", o->hi >= 9.0e15 ? "" : "in ", r); break;
    case CLI_FLOAT: snprintf(buf, cap, "a number %s%s", o->hi >= 9.0e15 ? "" : "in ", r); break;
    case CLI_INTS: snprintf(buf, cap, "a comma-separated list of up to %d integers %s%s", o->max_count, o->hi >= 9.0e15 ? "" : "in ", r); break;
    case CLI_FLOATS: snprintf(buf, cap, "a comma-separated list of up to %d numbers %s%s", o->max_count, o->hi >= 9.0e15 ? "" : "in ", r); break;
    case CLI_CHOICE: {
        size_t k = (size_t)snprintf(buf, cap, "one of ");
        for (const char *p = o->choices; *p && k + 3 < cap; p++) {
            if (*p == '|') k += (size_t)snprintf(buf + k, cap - k, ", ");
            else buf[k++] = *p, buf[k] = 0;
        }
        break;
    }
    case CLI_CUSTOM: snprintf(buf, cap, "%s", o->choices ? o->choices : "valid"); break;
    default: snprintf(buf, cap, "a value"); break;
    }
}

/* Levenshtein distance of two short strings (for "did you mean"). */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static int fail_unknown(const cli_cmd *cmd, const char *arg) {
    const char *best = NULL;
    char bestbuf[64];
    int best_d = 3;
    size_t alen = strcspn(arg, "=");
    char a[64];
    snprintf(a, sizeof a, "%.*s", (int)(alen < 63 ? alen : 63), arg);
    for (const cli_opt *o = cmd->opts; o->names; o++) {
        char nm[64];
        for (int i = 0; nth_name(o->names, i, nm, sizeof nm); i++) {
            if (nm[1] != '-') continue; /* suggest long spellings only */
            int d = edit_distance(a, nm);
            if (d < best_d) {
                best_d = d;
                snprintf(bestbuf, sizeof bestbuf, "%s", nm);
                best = bestbuf;
            }
        }
    }
    if (best) return cli_fail(cmd->name, "unknown option '%s' (did you mean %s? see skipllama %s --help)", arg, best, cmd->name);
    return cli_fail(cmd->name, "unknown option '%s' (see skipllama %s --help)", arg, cmd->name);
}

/* ---- storing a value ------------------------------------------------------------------------- */

/* Store v into o. Returns false (nothing stored) when v is not acceptable. */
static bool store(const cli_opt *o, const char *v) {
    double d;
    long long i;
    switch (o->type) {
    case CLI_INT:
        if (!parse_number(o, v, true, &d, &i) || i < INT32_MIN || i > INT32_MAX) return false;
        *(int *)o->dest = (int)i;
        return true;
    case CLI_I64:
        if (!parse_number(o, v, true, &d, &i)) return false;
        *(int64_t *)o->dest = (int64_t)i;
        return true;
    case CLI_U64:
        if (!parse_number(o, v, true, &d, &i) || i < 0) return false;
        *(uint64_t *)o->dest = (uint64_t)i;
        return true;
    case CLI_FLOAT:
        if (!parse_number(o, v, false, &d, &i)) return false;
        *(float *)o->dest = (float)d;
        return true;
    case CLI_STR:
        *(const char **)o->dest = v;
        return true;
    case CLI_STRS:
        if (*o->count >= o->max_count) return false;
        ((const char **)o->dest)[(*o->count)++] = v;
        return true;
    case CLI_INTS:
    case CLI_FLOATS: {
        const bool integer = o->type == CLI_INTS;
        int n = 0;
        double vals[256];
        long long ivals[256];
        const int cap = o->max_count < 256 ? o->max_count : 256;
        const char *p = v;
        char elem[64];
        if (!*p) return false;
        for (;;) {
            size_t k = strcspn(p, ",");
            if (k == 0 || k >= sizeof elem || n >= cap) return false;
            memcpy(elem, p, k);
            elem[k] = 0;
            if (!parse_number(o, elem, integer, &vals[n], &ivals[n])) return false;
            if (integer && (ivals[n] < INT32_MIN || ivals[n] > INT32_MAX)) return false;
            n++;
            if (!p[k]) break;
            p += k + 1;
        }
        for (int j = 0; j < n; j++) {
            if (integer) ((int *)o->dest)[j] = (int)ivals[j];
            else ((float *)o->dest)[j] = (float)vals[j];
        }
        *o->count = n;
        return true;
    }
    case CLI_CHOICE: {
        int idx = 0;
        for (const char *p = o->choices; *p; idx++) {
            size_t k = strcspn(p, "|");
            if (strlen(v) == k && !strncmp(p, v, k)) {
                *(int *)o->dest = idx;
                return true;
            }
            p += k;
            if (*p == '|') p++;
        }
        return false;
    }
    case CLI_CUSTOM: return o->parse(v, o->dest);
    case CLI_FLAG:
    case CLI_FLAG_OFF: return false;
    }
    return false;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static bool is_positional(const char *a) {
    if (a[0] != '-' || a[1] == 0) return true;                  /* "x", "-" */
    if ((a[1] >= '0' && a[1] <= '9') || a[1] == '.') return true; /* "-3", "-.5" */
    return false;
}

bool cli_parse(const cli_cmd *cmd, int argc, char **argv, int *n_pos, int *rc) {
    int npos = 0;
    bool only_pos = false;
    *rc = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || is_positional(a)) {
            if (cmd->max_pos >= 0 && npos >= cmd->max_pos) {
                if (cmd->max_pos == 0) *rc = cli_fail(cmd->name, "unexpected argument '%s' (see skipllama %s --help)", a, cmd->name);
                else *rc = cli_fail(cmd->name, "too many arguments: '%s' (see skipllama %s --help)", a, cmd->name);
                return false;
            }
            argv[1 + npos++] = a; /* compact: npos <= i - 1, so nothing unread is overwritten */
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_help(cmd, stdout);
            return false;
        }
        /* --name=value */
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *first = NULL;
        for (const cli_opt *o = cmd->opts; o->names; o++)
            if (has_name(o->names, a, nlen)) {
                first = o;
                break;
            }
        if (!first) {
            *rc = fail_unknown(cmd, a);
            return false;
        }
        char lb[96];
        if (!takes_value(first)) {
            if (eq) {
                *rc = cli_fail(cmd->name, "%s takes no value", label(first, lb, sizeof lb));
                return false;
            }
            *(bool *)first->dest = first->type == CLI_FLAG;
            if (first->seen) *first->seen = true;
            if (first->flags & CLI_DEPRECATED) fprintf(stderr, "skipllama %s: note: %.*s: %s\n", cmd->name, (int)nlen, a, first->help);
            continue;
        }
        const char *v;
        if (eq) v = eq + 1;
        else if (i + 1 < argc) v = argv[++i];
        else {
            *rc = cli_fail(cmd->name, "%s needs a value (%s)", label(first, lb, sizeof lb), first->meta ? first->meta : "a value");
            return false;
        }
        /* the first entry with this spelling that accepts the value takes it */
        const cli_opt *taker = NULL;
        for (const cli_opt *o = first; o->names && !taker; o++)
            if (has_name(o->names, a, nlen) && takes_value(o) && store(o, v)) taker = o;
        if (!taker) {
            char acc[400];
            accepts_text(first, acc, sizeof acc);
            for (const cli_opt *o = first + 1; o->names; o++) /* an older meaning of the same spelling */
                if (has_name(o->names, a, nlen) && takes_value(o)) {
                    size_t k = strlen(acc);
                    snprintf(acc + k, sizeof acc - k, " (or, in its older meaning, %s ", o->meta ? o->meta : "a value");
                    k = strlen(acc);
                    accepts_text(o, acc + k, sizeof acc - k);
                    k = strlen(acc);
                    snprintf(acc + k, sizeof acc - k, ")");
                }
            if (first->type == CLI_STRS) *rc = cli_fail(cmd->name, "%s can be given at most %d times", label(first, lb, sizeof lb), first->max_count);
            else *rc = cli_fail(cmd->name, "%s must be %s, not '%s'", label(first, lb, sizeof lb), acc, v);
            return false;
        }
        if (taker->seen) *taker->seen = true;
        if (taker->flags & CLI_DEPRECATED) fprintf(stderr, "skipllama %s: note: %.*s %s: %s\n", cmd->name, (int)nlen, a, v, taker->help);
    }
    for (const cli_opt *o = cmd->opts; o->names; o++) {
        if (!(o->flags & CLI_REQUIRED)) continue;
        bool given = o->seen ? *o->seen : (o->type == CLI_STR ? *(const char **)o->dest != NULL : true);
        if (!given) {
            char lb[96];
            *rc = cli_fail(cmd->name, "missing %s %s (see skipllama %s --help)", label(o, lb, sizeof lb), o->meta ? o->meta : "", cmd->name);
            return false;
        }
    }
    if (npos < cmd->min_pos) {
        *rc = cli_fail(cmd->name, "expected %s (see skipllama %s --help)", cmd->usage, cmd->name);
        return false;
    }
    if (n_pos) *n_pos = npos;
    return true;
}

/* ---- help ------------------------------------------------------------------------------------ */

/* The default as text, rendered from *dest before parsing (cli_help runs before any value is
 * stored only when -h comes first; later -h shows the values given so far, which is fine). */
static void default_text(const cli_opt *o, char *buf, size_t cap) {
    buf[0] = 0;
    if (o->def) {
        snprintf(buf, cap, "%s", o->def);
        return;
    }
    switch (o->type) {
    case CLI_INT: snprintf(buf, cap, "%d", *(const int *)o->dest); break;
    case CLI_I64: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)o->dest); break;
    case CLI_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)o->dest); break;
    case CLI_FLOAT: snprintf(buf, cap, "%g", (double)*(const float *)o->dest); break;
    case CLI_STR:
        if (*(const char **)o->dest) snprintf(buf, cap, "%s", *(const char **)o->dest);
        break;
    case CLI_CHOICE: {
        int idx = *(const int *)o->dest;
        const char *p = o->choices;
        for (int k = 0; k < idx && p && *p; k++) {
            p = strchr(p, '|');
            if (p) p++;
        }
        if (p && *p) snprintf(buf, cap, "%.*s", (int)strcspn(p, "|"), p);
        break;
    }
    case CLI_INTS:
    case CLI_FLOATS: {
        size_t k = 0;
        for (int j = 0; j < *o->count && k + 16 < cap; j++) {
            if (o->type == CLI_INTS) k += (size_t)snprintf(buf + k, cap - k, j ? ",%d" : "%d", ((const int *)o->dest)[j]);
            else k += (size_t)snprintf(buf + k, cap - k, j ? ",%g" : "%g", (double)((const float *)o->dest)[j]);
        }
        break;
    }
    default: break;
    }
}

void cli_help(const cli_cmd *cmd, FILE *out) {
    fprintf(out, "usage: skipllama %s %s\n", cmd->name, cmd->usage ? cmd->usage : "[options]");
    if (cmd->about) fprintf(out, "\n%s\n", cmd->about);
    fprintf(out, "\noptions:\n");
    for (const cli_opt *o = cmd->opts; o->names; o++) {
        char left[160], nm[64];
        size_t k = 0;
        int shown = 0;
        /* "-c, --ctx-size N": the short and canonical spellings; older ones after the help */
        for (int i = 0; nth_name(o->names, i, nm, sizeof nm) && shown < 2; i++) {
            bool is_short = nm[1] != '-';
            if (shown == 1 && is_short) break;
            if (i == 0 && !is_short) k += (size_t)snprintf(left + k, sizeof left - k, "    ");
            k += (size_t)snprintf(left + k, sizeof left - k, "%s%s", shown ? ", " : "", nm);
            shown++;
            if (!is_short) break;
        }
        if (takes_value(o)) snprintf(left + k, sizeof left - k, " %s", o->meta ? o->meta : "X");
        char extra[320] = "";
        size_t e = 0;
        if ((o->type == CLI_INT || o->type == CLI_I64 || o->type == CLI_U64 || o->type == CLI_FLOAT || o->type == CLI_INTS ||
             o->type == CLI_FLOATS) &&
            !(o->flags & CLI_NO_RANGE)) {
            char r[96];
            range_text(o, r, sizeof r);
            e += (size_t)snprintf(extra + e, sizeof extra - e, "%s", r);
        } else if (o->type == CLI_CHOICE || (o->type == CLI_CUSTOM && o->choices)) {
            e += (size_t)snprintf(extra + e, sizeof extra - e, "%s", o->choices);
        }
        char d[160];
        if (takes_value(o) && !(o->flags & CLI_DEPRECATED)) {
            default_text(o, d, sizeof d);
            if (d[0]) e += (size_t)snprintf(extra + e, sizeof extra - e, "%sdefault %s", e ? "; " : "", d);
            if (o->flags & CLI_DEF_CORES) e += (size_t)snprintf(extra + e, sizeof extra - e, ", %d here", cli_default_threads());
        }
        /* older spellings */
        int aliases = 0;
        for (int i = shown; nth_name(o->names, i, nm, sizeof nm); i++) {
            e += (size_t)snprintf(extra + e, sizeof extra - e, "%s%s", aliases ? " " : (e ? "; also " : "also "), nm);
            aliases++;
        }
        const char *help = o->help ? o->help : "";
        if (o->flags & CLI_DEPRECATED) fprintf(out, "  %-24s (deprecated) %s\n", left, help);
        else {
            fprintf(out, "  %-24s ", left);
            /* continuation lines of the help text are indented under it */
            for (const char *p = help; *p; p++) {
                fputc(*p, out);
                if (*p == '\n') fprintf(out, "  %-24s ", "");
            }
            if (extra[0]) fprintf(out, " (%s)", extra);
            fputc('\n', out);
        }
    }
    fprintf(out, "  %-24s this help\n", "-h, --help");
    if (cmd->footer) fprintf(out, "\n%s\n", cmd->footer);
}

/* ---- default thread count -------------------------------------------------------------------- */

static bool read_int_file(const char *path, long *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fscanf(f, "%ld", out) == 1;
    fclose(f);
    return ok;
}

int cli_default_threads(void) {
    static int cached = 0;
    if (cached) return cached;
    cpu_set_t set;
    CPU_ZERO(&set);
    const bool have_set = sched_getaffinity(0, sizeof set, &set) == 0;
    /* distinct (package, die, core) ids among the CPUs we may run on */
    enum { MAX_CORES = 4096 };
    static long seen[MAX_CORES][3];
    int n_seen = 0, n_cpus = 0;
    bool topo_ok = true;
    for (int cpu = 0; cpu < CPU_SETSIZE && topo_ok; cpu++) {
        if (have_set && !CPU_ISSET(cpu, &set)) continue;
        char path[128];
        long pkg = 0, die = 0, core = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (!read_int_file(path, &core)) {
            if (!have_set) break; /* past the last CPU */
            topo_ok = false;
            break;
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        if (!read_int_file(path, &pkg)) pkg = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/die_id", cpu);
        if (!read_int_file(path, &die)) die = 0;
        n_cpus++;
        bool dup = false;
        for (int k = 0; k < n_seen && !dup; k++) dup = seen[k][0] == pkg && seen[k][1] == die && seen[k][2] == core;
        if (!dup && n_seen < MAX_CORES) seen[n_seen][0] = pkg, seen[n_seen][1] = die, seen[n_seen][2] = core, n_seen++;
    }
    int n = topo_ok && n_seen > 0 ? n_seen : 0;
    if (n == 0) {
        long c = have_set ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
        n = c < 1 ? 1 : (int)c;
    }
    (void)n_cpus;
    if (n > CLI_MAX_THREADS) n = CLI_MAX_THREADS;
    cached = n;
    return n;
}
