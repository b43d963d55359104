/*
 * output.c — how the library writes a file it is given a path for (sl_output_*, public in
 * skipllama.h): a missing or regular target is written to a temporary file made with mkstemp
 * beside it and renamed over it only when complete, so a failed or interrupted write never
 * leaves a half file under the target's name; character devices and FIFOs (/dev/null, a pipe)
 * are written in place, never replaced; directories and other special files are refused.
 * Symbolic links are followed: the link's target is written, the link stays. Temporary files
 * in progress are listed in a small fixed table so that a signal handler can remove them
 * (sl_output_remove_temporaries, async-signal-safe). What it is not: a general file API — the
 * caller writes through the FILE * it gets.
 */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sl_output {
    FILE *fp;                /* where the caller writes */
    char target[PATH_MAX];   /* the file finally written (symbolic links resolved) */
    char temp[PATH_MAX];     /* the temporary file ("" when writing in place) */
    int slot;                /* index in the table of temporaries, or -1 */
};

/* ---- temporaries in progress, for signal handlers -------------------------------------------- */

#define SL_OUTPUT_SLOTS 16
static struct {
    atomic_int state;    /* 0 free, 1 being filled or emptied, 2 holds a live temporary */
    char path[PATH_MAX]; /* valid while state == 2 */
} g_temps[SL_OUTPUT_SLOTS];

static int temp_register(const char *path) {
    for (int i = 0; i < SL_OUTPUT_SLOTS; i++) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&g_temps[i].state, &expect, 1)) {
            snprintf(g_temps[i].path, sizeof g_temps[i].path, "%s", path);
            atomic_store(&g_temps[i].state, 2);
            return i;
        }
    }
    return -1; /* table full: still written safely, only not removed by a signal handler */
}

static void temp_unregister(int slot) {
    if (slot < 0) return;
    atomic_store(&g_temps[slot].state, 1);
    atomic_store(&g_temps[slot].state, 0);
}

void sl_output_remove_temporaries(void) {
    for (int i = 0; i < SL_OUTPUT_SLOTS; i++)
        if (atomic_load(&g_temps[i].state) == 2) unlink(g_temps[i].path);
}

/* ---- opening ------------------------------------------------------------------------------- */

/* The process's umask, without changing it (umask() would, for a moment, for every thread). */
static mode_t current_umask(void) {
    FILE *f = fopen("/proc/self/status", "r");
    unsigned mask = 022;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &mask) == 1) break;
    if (f) fclose(f);
    return (mode_t)mask;
}

/* Follow symbolic links from path to the file they finally name (which may not exist yet).
 * *magic is set when a link leads through /proc (e.g. /dev/stdout -> /proc/self/fd/1), whose
 * link texts are not paths to rename over. */
static bool resolve_links(const char *path, char *out, size_t cap, bool *magic, sl_error *err) {
    char cur[PATH_MAX];
    *magic = false;
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "output path too long: '%.200s...'", path);
        return false;
    }
    for (int hop = 0; hop < 40; hop++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) {
            snprintf(out, cap, "%s", cur);
            return true;
        }
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) {
            sl_set_error(err, SL_ERR_IO, "cannot read the symbolic link '%s': %s", cur, strerror(errno));
            return false;
        }
        link[n] = 0;
        if (!strncmp(cur, "/proc/", 6)) *magic = true;
        char next[PATH_MAX];
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) snprintf(next, sizeof next, "%s", link);
        else if (snprintf(next, sizeof next, "%.*s/%s", (int)(slash - cur), cur, link) >= (int)sizeof next) {
            sl_set_error(err, SL_ERR_INVALID_ARG, "output path too long through the link '%s'", cur);
            return false;
        }
        snprintf(cur, sizeof cur, "%s", next);
    }
    sl_set_error(err, SL_ERR_IO, "'%s': too many levels of symbolic links", path);
    return false;
}

static sl_output *open_in_place(sl_output *o, const char *path, bool truncate, sl_error *err) {
    int fd = open(path, O_WRONLY | O_CLOEXEC | (truncate ? O_TRUNC : 0));
    if (fd < 0 || !(o->fp = fdopen(fd, "wb"))) {
        sl_set_error(err, SL_ERR_IO, "cannot open '%s' for writing: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(o);
        return NULL;
    }
    snprintf(o->target, sizeof o->target, "%s", path);
    return o;
}

sl_output *sl_output_open(const char *path, sl_error *err) {
    sl_clear_error(err);
    if (!path || !*path) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "output: empty path");
        return NULL;
    }
    sl_output *o = calloc(1, sizeof(*o));
    if (!o) {
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->slot = -1;
    struct stat st;
    if (stat(path, &st) == 0) { /* exists (through any links): its type decides */
        if (S_ISDIR(st.st_mode)) {
            sl_set_error(err, SL_ERR_INVALID_ARG, "'%s' is a directory; give a file name to write", path);
            free(o);
            return NULL;
        }
        if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) return open_in_place(o, path, false, err);
        if (!S_ISREG(st.st_mode)) {
            sl_set_error(err, SL_ERR_INVALID_ARG, "'%s' is a %s; skipllama writes regular files, character devices and FIFOs", path,
                         S_ISBLK(st.st_mode) ? "block device" : S_ISSOCK(st.st_mode) ? "socket" : "special file");
            free(o);
            return NULL;
        }
    } else if (errno != ENOENT) {
        sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        free(o);
        return NULL;
    }
    bool magic;
    if (!resolve_links(path, o->target, sizeof o->target, &magic, err)) {
        free(o);
        return NULL;
    }
    if (magic) return open_in_place(o, path, true, err); /* /dev/stdout to a file: the shell's file */
    /* a temporary beside the target, renamed over it at commit */
    if (snprintf(o->temp, sizeof o->temp, "%s.XXXXXX.tmp", o->target) >= (int)sizeof o->temp) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "output path too long: '%.200s...'", o->target);
        free(o);
        return NULL;
    }
    int fd = mkostemps(o->temp, 4, O_CLOEXEC);
    if (fd < 0) {
        const char *slash = strrchr(o->target, '/');
        sl_set_error(err, SL_ERR_IO, "cannot create a file in '%.*s' (to write '%s'): %s", slash ? (int)(slash - o->target) : 1,
                     slash ? (slash == o->target ? "/" : o->target) : ".", o->target, strerror(errno));
        free(o);
        return NULL;
    }
    o->slot = temp_register(o->temp);
    /* the permissions the file would get from a plain open(), or those of the file it replaces */
    struct stat old;
    mode_t mode = stat(o->target, &old) == 0 ? (old.st_mode & 07777) : (0666 & ~current_umask());
    if (fchmod(fd, mode) != 0 || !(o->fp = fdopen(fd, "wb"))) {
        sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", o->temp, strerror(errno));
        close(fd);
        unlink(o->temp);
        temp_unregister(o->slot);
        free(o);
        return NULL;
    }
    return o;
}

FILE *sl_output_stream(sl_output *out) { return out ? out->fp : NULL; }

const char *sl_output_target(const sl_output *out) { return out ? out->target : NULL; }

bool sl_output_in_place(const sl_output *out) { return out && !out->temp[0]; }

sl_status sl_output_commit(sl_output *out, sl_error *err) {
    if (!out) return sl_set_error(err, SL_ERR_INVALID_ARG, "output: NULL");
    bool ok = !ferror(out->fp);
    int e = ok ? 0 : EIO;
    if (fflush(out->fp) != 0) ok = false, e = errno;
    if (fclose(out->fp) != 0 && ok) ok = false, e = errno;
    out->fp = NULL;
    sl_status st = SL_OK;
    if (!out->temp[0]) { /* in place */
        if (!ok) st = sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", out->target, strerror(e));
    } else {
        if (ok && rename(out->temp, out->target) != 0) ok = false, e = errno;
        if (!ok) {
            st = sl_set_error(err, SL_ERR_IO, "cannot write '%s': %s", out->target, strerror(e));
            unlink(out->temp);
        }
        temp_unregister(out->slot);
    }
    free(out);
    return st;
}

void sl_output_abort(sl_output *out) {
    if (!out) return;
    if (out->fp) fclose(out->fp);
    if (out->temp[0]) {
        unlink(out->temp);
        temp_unregister(out->slot);
    }
    free(out);
}
