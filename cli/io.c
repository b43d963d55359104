/*
 * io.c — the CLI's bounded input readers (see cli.h): a text or a file is read whole into memory
 * only after its size is known to be acceptable — a regular file by stat before the first byte is
 * read, a stream (standard input, a pipe, a device such as /dev/zero) by stopping at a stated
 * limit — so that `run -f /dev/zero` is refused in a fraction of a second instead of filling the
 * memory — and the check of output paths before long work (cli_output_check). What it is not: a
 * tokenizer or a text decoder (the bytes are returned as they are), nor the writer (sl_output).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* "1.0 GiB", "256 MiB", "12 KiB", "100 bytes" */
void cli_format_bytes(char *buf, size_t cap, double bytes) {
    if (bytes >= 1024.0 * 1024.0 * 1024.0) snprintf(buf, cap, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    else if (bytes >= 1024.0 * 1024.0) snprintf(buf, cap, "%.0f MiB", bytes / (1024.0 * 1024.0));
    else if (bytes >= 1024.0) snprintf(buf, cap, "%.0f KiB", bytes / 1024.0);
    else snprintf(buf, cap, "%.0f bytes", bytes);
}

/* Read everything from fd, at most max bytes (one more byte is tried, to tell "exactly max" from
 * "more"). The buffer grows in steps of up to 16 MiB, so a refused stream costs about max bytes
 * of memory, never twice that. */
static char *read_fd(const char *cmd, const char *what, int fd, size_t max, size_t size_hint, size_t *len) {
    size_t cap = size_hint ? size_hint + 1 : 65536, n = 0;
    if (cap > max + 1) cap = max + 1;
    char *buf = malloc(cap + 1);
    if (!buf) {
        cli_fail(cmd, "out of memory reading %s", what);
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                char lim[32];
                cli_format_bytes(lim, sizeof lim, (double)max);
                cli_fail(cmd, "%s goes on past %s, the most read from a stream (standard input, a pipe, a device)", what, lim);
                free(buf);
                return NULL;
            }
            size_t grow = cap < ((size_t)16 << 20) ? cap : ((size_t)16 << 20);
            size_t ncap = cap + grow > max + 1 ? max + 1 : cap + grow;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                cli_fail(cmd, "out of memory reading %s", what);
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            cli_fail(cmd, "error reading %s: %s", what, strerror(errno));
            free(buf);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* One reader for both entry points: '-' is standard input when allowed. */
static char *read_bounded(const char *cmd, const char *path, bool allow_stdin, size_t max_file, size_t *len) {
    const bool is_stdin = allow_stdin && strcmp(path, "-") == 0;
    char what[4200];
    if (is_stdin) snprintf(what, sizeof what, "standard input");
    else snprintf(what, sizeof what, "'%.4000s'", path);
    int fd = is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_fail(cmd, "cannot open %s: %s", what, strerror(errno));
        return NULL;
    }
    struct stat st;
    size_t max = CLI_MAX_STREAM < max_file ? CLI_MAX_STREAM : max_file, hint = 0;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            cli_fail(cmd, "%s is a directory, not a text file", what);
            if (!is_stdin) close(fd);
            return NULL;
        }
        if (S_ISREG(st.st_mode)) {
            /* a regular file: its size decides before anything is read */
            if ((uint64_t)st.st_size > (uint64_t)max_file) {
                char sz[32], lim[32];
                cli_format_bytes(sz, sizeof sz, (double)st.st_size);
                cli_format_bytes(lim, sizeof lim, (double)max_file);
                cli_fail(cmd, "%s is %s; this command reads at most %s", what, sz, lim);
                if (!is_stdin) close(fd);
                return NULL;
            }
            max = max_file;
            hint = (size_t)st.st_size;
        }
    }
    char *buf = read_fd(cmd, what, fd, max, hint, len);
    if (!is_stdin) close(fd);
    return buf;
}

char *cli_read_input(const char *cmd, const char *path, size_t *len) { return read_bounded(cmd, path, true, CLI_MAX_FILE, len); }

char *cli_read_file(const char *cmd, const char *path, size_t max_bytes, size_t *len) {
    return read_bounded(cmd, path, true, max_bytes < CLI_MAX_FILE ? max_bytes : CLI_MAX_FILE, len);
}

/* ---- outputs ------------------------------------------------------------------------------- */

bool cli_output_check(const char *cmd, const char *path) {
    if (!path || !*path) return cli_fail(cmd, "empty output file name"), false;
    struct stat st, lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        char target[PATH_MAX];
        if (realpath(path, target)) fprintf(stderr, "skipllama %s: note: '%s' is a symbolic link: writing its target '%s' (the link stays)\n", cmd, path, target);
        else {
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            fprintf(stderr, "skipllama %s: note: '%s' is a symbolic link to '%s', which does not exist yet: creating it (the link stays)\n",
                    cmd, path, target);
        }
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            const size_t n = strlen(path);
            return cli_fail(cmd, "'%s' is a directory; give a file name (e.g. %s%sout.gguf)", path, path, path[n - 1] == '/' ? "" : "/"), false;
        }
        if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) return true; /* /dev/null, a pipe: written in place, as any tool would */
        if (!S_ISREG(st.st_mode))
            return cli_fail(cmd, "'%s' is a %s; skipllama writes regular files, character devices and FIFOs", path,
                            S_ISBLK(st.st_mode) ? "block device" : "special file"),
                   false;
    }
    /* the folder the file (or the link's target) goes into must exist and take new files */
    char target[PATH_MAX], dir[PATH_MAX];
    if (!realpath(path, target)) snprintf(target, sizeof target, "%.4000s", path);
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) && stat(path, &st) != 0) { /* dangling link: its target's folder */
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (target[0] != '/' && strchr(path, '/')) {
            char t2[PATH_MAX];
            snprintf(t2, sizeof t2, "%.*s/%.3000s", (int)(strrchr(path, '/') - path), path, target);
            snprintf(target, sizeof target, "%s", t2);
        }
    }
    const char *slash = strrchr(target, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == target) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return cli_fail(cmd, "cannot write '%s': the folder '%s' does not exist", path, dir), false;
    if (access(dir, W_OK) != 0) return cli_fail(cmd, "cannot write '%s': no permission to create files in '%s'", path, dir), false;
    return true;
}

int64_t cli_free_disk(const char *path) {
    char target[PATH_MAX], dir[PATH_MAX];
    if (!realpath(path, target)) snprintf(target, sizeof target, "%.4000s", path);
    const char *slash = strrchr(target, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == target) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
    struct statvfs vf;
    if (statvfs(dir, &vf) != 0) return -1;
    return (int64_t)vf.f_bavail * (int64_t)vf.f_frsize;
}

int64_t cli_available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

bool cli_output_is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) != 0 || S_ISREG(st.st_mode);
}
