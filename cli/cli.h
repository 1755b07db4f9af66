/* Shared helpers for the `arbitor` subcommands: one-line errors, strict number parsing,
 * a progress line. Only the CLI exits; commands return their exit status to main. */
#ifndef ARB_CLI_H
#define ARB_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "arbitor.h"

/* Prints "arbitor: error: <msg>" (one line) to stderr and returns 1 (the exit status). */
int arb_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, with the library's last error appended: "arbitor: error: <msg>: <arb_last_error()>". */
int arb_cli_fail_status(arb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict parsers: the whole string must be a number in [lo, hi]; false otherwise. */
bool arb_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool arb_cli_parse_f64(const char *s, double lo, double hi, double *out);

/* True if argv[i] is -h or --help. */
bool arb_cli_is_help(const char *arg);

/* Progress line on stderr (carriage return, redrawn; a final newline when done).
 * frac in [0,1]; `extra` is printed after the bar. Silent when stderr is not a terminal
 * unless force is set. */
void arb_cli_progress(const char *label, double frac, double elapsed_s, const char *extra, bool done);

/* libgomp reads its wait policy once, at load. Its default spins ~300k iterations at every
 * barrier; on a 2-core machine shared with other jobs a waiting thread then burns the slice its
 * preempted peer needs (training ran at 0.6k instead of 5.3k tokens/s; sidecars 4-10x slower),
 * while "passive" (sleep at once) costs a futex wake-up per parallel region: DINOv2 batch 1 took
 * 40 ms instead of 24 on a quiet machine. A short spin (GOMP_SPINCOUNT=5000) is within 5 % of
 * spinning when the machine is quiet and near passive when a core is taken (measured, with a
 * `yes` hog: 63 vs 56 ms passive vs 65 ms default). Unless the user set OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT, set it (and ARB_NO_REEXEC=1, which tells child baselines we chose it) and
 * re-execute the program once. Returns only when it did not re-execute. */
void arb_cli_prefer_short_omp_spin(char **argv);

/* Monotonic seconds. */
double arb_cli_now(void);

/* Subcommands (each in cli/cmd_<name>.c). Weak: a build without one says so. */
typedef int (*arb_cli_cmd_fn)(int argc, char **argv);
int arb_cmd_inspect(int argc, char **argv) __attribute__((weak));
int arb_cmd_audit(int argc, char **argv) __attribute__((weak));
int arb_cmd_bench(int argc, char **argv) __attribute__((weak));
int arb_cmd_train(int argc, char **argv) __attribute__((weak));
int arb_cmd_generate(int argc, char **argv) __attribute__((weak));
int arb_cmd_sidecar(int argc, char **argv) __attribute__((weak));
int arb_cmd_encode(int argc, char **argv) __attribute__((weak));
int arb_cmd_vae(int argc, char **argv) __attribute__((weak));

/* `arbitor bench <what>` parts, each in its own file (cli/bench_<what>.c). */
int arb_bench_kernels(int argc, char **argv) __attribute__((weak));
int arb_bench_sidecars(int argc, char **argv) __attribute__((weak));

#endif
