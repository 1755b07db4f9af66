/* Shared CLI helpers: errors, number parsing, progress. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int arb_cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("arbitor: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int arb_cli_fail_status(arb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("arbitor: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    const char *e = arb_last_error();
    fprintf(stderr, ": %s\n", e[0] ? e : arb_status_str(s));
    va_end(ap);
    return 1;
}

bool arb_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool arb_cli_parse_f64(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool arb_cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

double arb_cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void arb_cli_progress(const char *label, double frac, double elapsed_s, const char *extra, bool done) {
    static int is_tty = -1;
    if (is_tty < 0) is_tty = isatty(2);
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    double eta = frac > 0 ? elapsed_s * (1 - frac) / frac : 0;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    if (is_tty) {
        fprintf(stderr, "\r%s [%s] %5.1f%% %s ETA %.0fs   ", label, bar, 100 * frac, extra ? extra : "", eta);
        if (done) fputc('\n', stderr);
    } else {
        /* Not a terminal (CI, logs): one plain line per call. */
        fprintf(stderr, "%s %5.1f%% %s elapsed %.0fs ETA %.0fs\n", label, 100 * frac, extra ? extra : "", elapsed_s, eta);
    }
    fflush(stderr);
}

void arb_cli_prefer_short_omp_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("ARB_NO_REEXEC")) return;
    if (setenv("GOMP_SPINCOUNT", "5000", 1) != 0 || setenv("ARB_NO_REEXEC", "1", 1) != 0) return;
    fflush(NULL);
    execv("/proc/self/exe", argv); /* on failure: carry on with the policy already in force */
}
