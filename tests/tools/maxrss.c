/*
 * maxrss.c — run a command and report how it ended and what it cost: `maxrss CMD [ARGS...]`
 * prints "exit=N signal=S maxrss_mib=M seconds=T" on stderr (exit -1 when killed by a signal)
 * and exits with the command's exit status (128 + S when killed). The command starts with SIGINT
 * and SIGQUIT at their default actions (a shell's background job has them ignored), and its pid is
 * written to $MAXRSS_PIDFILE when that is set. Used by the CLI tests (tests/cli_files.sh: the
 * memory of `run -f /dev/zero`, SIGINT in the middle of a write); not a timing test.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: maxrss CMD [ARGS...]\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) return perror("fork"), 2;
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGQUIT, SIG_DFL);
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    const char *pidfile = getenv("MAXRSS_PIDFILE");
    if (pidfile) {
        FILE *f = fopen(pidfile, "w");
        if (f) fprintf(f, "%d\n", (int)pid), fclose(f);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return perror("wait4"), 2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1, sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    fprintf(stderr, "exit=%d signal=%d maxrss_mib=%.1f seconds=%.3f\n", code, sig, (double)ru.ru_maxrss / 1024.0, s);
    return sig ? 128 + sig : code;
}
