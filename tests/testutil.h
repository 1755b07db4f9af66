/* Test helpers shared by tests/test_*.c (cmocka). */
#ifndef ARB_TESTUTIL_H
#define ARB_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arbitor.h"

#define ARB_TEST_SKIP 77

/* Path under ../shared (or NULL and a printed reason when ../shared is absent). */
const char *arb_test_shared(const char *rel, char *buf, size_t cap);
/* Exits 77 (CTest: skipped) with a clear message if ../shared is absent. */
void arb_test_require_shared(void);

void arb_test_fill_f32(float *x, size_t n, uint64_t seed, float lo, float hi);
void arb_test_fill_i8(int8_t *x, size_t n, uint64_t seed, int lo, int hi);
/* ||a - b|| / ||b|| in double. */
double arb_test_rel_l2(const float *a, const float *b, size_t n);
double arb_test_rel_l2_f64(const float *a, const double *b, size_t n);
double arb_test_max_abs(const float *a, const float *b, size_t n);

/* Tensor `name` of DIR/reference.safetensors (a fixture's reference outputs) into t (CPU). */
void arb_test_ref_load(const char *dir, const char *name, arb_tensor *t);
/* Fails unless got (CPU, f32) has want's shape and rel L2 ≤ tol; prints the measured value. */
void arb_test_expect_close(const char *what, const arb_tensor *got, const arb_tensor *want, double tol);

/* mkdtemp under /tmp with `prefix` into buf (0 on success), and its recursive removal. */
int arb_test_tmpdir_make(char *buf, size_t cap, const char *prefix);
int arb_test_tmpdir_remove(const char *dir);

#define ARB_ASSERT_OK(expr)                                                            \
    do {                                                                               \
        arb_status s_ = (expr);                                                        \
        if (s_ != ARB_OK) fail_msg("%s -> %s: %s", #expr, arb_status_str(s_), arb_last_error()); \
    } while (0)
#endif
