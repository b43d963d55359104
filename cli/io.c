/*
 * io.c — the CLI's bounded input readers (see cli.h): a text or a file is read whole into memory
 * only after its size is known to be acceptable — a regular file by stat before the first byte is
 * read, a stream (standard input, a pipe, a device such as /dev/zero) by stopping at a stated
 * limit — so that `run -f /dev/zero` is refused in a fraction of a second instead of filling the
 * memory. What it is not: a tokenizer or a text decoder (the bytes are returned as they are).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
