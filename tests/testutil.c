#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *arb_test_shared(const char *rel, char *buf, size_t cap) {
    struct stat st;
    if (stat(ARB_SHARED_DIR, &st) != 0) return NULL;
    snprintf(buf, cap, "%s/%s", ARB_SHARED_DIR, rel);
    return buf;
}

void arb_test_require_shared(void) {
    struct stat st;
    if (stat(ARB_SHARED_DIR, &st) != 0) {
        printf("SKIP: %s is absent (the fixtures live in ../shared beside the checkout)\n", ARB_SHARED_DIR);
        exit(ARB_TEST_SKIP);
    }
}

void arb_test_fill_f32(float *x, size_t n, uint64_t seed, float lo, float hi) {
    arb_rng_key k = arb_rng_key_make(seed, 0xF32);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * arb_rand_unit(k, (uint32_t)i);
}

void arb_test_fill_i8(int8_t *x, size_t n, uint64_t seed, int lo, int hi) {
    arb_rng_key k = arb_rng_key_make(seed, 0x18);
    for (size_t i = 0; i < n; i++) x[i] = (int8_t)(lo + (int)(arb_rand_u32(k, (uint32_t)i) % (uint32_t)(hi - lo + 1)));
}

double arb_test_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
        if (isnan(a[i])) return INFINITY;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double arb_test_rel_l2_f64(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
        if (isnan(a[i])) return INFINITY;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double arb_test_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

int arb_test_tmpdir_make(char *buf, size_t cap, const char *prefix) {
    if (snprintf(buf, cap, "/tmp/%s_XXXXXX", prefix) >= (int)cap) return -1;
    return mkdtemp(buf) ? 0 : -1;
}

int arb_test_tmpdir_remove(const char *dir) {
    if (!dir[0] || strchr(dir, '\'')) return -1;
    char cmd[600];
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) >= (int)sizeof cmd) return -1;
    return system(cmd) == 0 ? 0 : -1;
}

void arb_test_ref_load(const char *dir, const char *name, arb_tensor *t) {
    char p[4200];
    snprintf(p, sizeof p, "%s/reference.safetensors", dir);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));
    const arb_st_tensor *s = arb_safetensors_find(st, name);
    if (!s) fail_msg("%s: no '%s'", p, name);
    ARB_ASSERT_OK(arb_tensor_init(t, s->dtype, s->ndim, s->shape, arb_cpu()));
    memcpy(t->data, s->data, s->nbytes);
    arb_safetensors_close(st);
}

void arb_test_expect_close(const char *what, const arb_tensor *got, const arb_tensor *want, double tol) {
    assert_int_equal(got->ndim, want->ndim);
    for (int i = 0; i < got->ndim; i++) assert_int_equal(got->shape[i], want->shape[i]);
    assert_int_equal(got->device.kind, ARB_DEVICE_CPU);
    double r = arb_test_rel_l2((const float *)got->data, (const float *)want->data, (size_t)arb_tensor_numel(want));
    printf("  %-52s rel L2 %.3e (tol %.0e)\n", what, r, tol);
    if (!(r <= tol)) fail_msg("%s: rel L2 %.3e > %.0e", what, r, tol);
}
