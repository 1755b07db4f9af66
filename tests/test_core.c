/* Core runtime: status messages, tensors and size overflow, half conversions, RNG, tiers, the
 * lookup of source-tree files (bench scripts). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/paths.h"
#include "testutil.h"

static void test_status_and_error(void **state) {
    (void)state;
    assert_string_equal(arb_status_str(ARB_OK), "ok");
    arb_status s = arb_error(ARB_ERR_FORMAT, "bad thing %d", 42);
    assert_int_equal(s, ARB_ERR_FORMAT);
    assert_string_equal(arb_last_error(), "bad thing 42");
    arb_clear_error();
    assert_string_equal(arb_last_error(), "");
}

static void test_tensor_alloc_and_overflow(void **state) {
    (void)state;
    arb_tensor t;
    int64_t shape[3] = {3, 5, 7};
    ARB_ASSERT_OK(arb_tensor_init(&t, ARB_F32, 3, shape, arb_cpu()));
    assert_int_equal(t.nbytes, 3 * 5 * 7 * 4);
    assert_int_equal((uintptr_t)t.data % ARB_ALIGN, 0);
    assert_int_equal(arb_tensor_numel(&t), 105);
    char buf[64];
    assert_string_equal(arb_tensor_describe(&t, buf, sizeof buf), "F32[3,5,7]");
    arb_tensor_free(&t);
    assert_null(t.data);

    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    assert_int_equal(arb_tensor_init(&t, ARB_F32, 3, huge, arb_cpu()), ARB_ERR_OVERFLOW);
    /* a zero dimension: empty, even where the other dimensions' product overflows */
    int64_t empty[3] = {INT64_C(800000000000), INT64_C(281474976710656), 0};
    ARB_ASSERT_OK(arb_tensor_init(&t, ARB_F32, 3, empty, arb_cpu()));
    assert_int_equal(t.nbytes, 0);
    assert_int_equal(arb_tensor_numel(&t), 0);
    arb_tensor_free(&t);
    assert_int_equal(arb_tensor_init(&t, ARB_F32, 2, NULL, arb_cpu()), ARB_ERR_INVALID_ARG);
    int64_t neg[2] = {4, -1};
    assert_int_equal(arb_tensor_init(&t, ARB_F32, 2, neg, arb_cpu()), ARB_ERR_SHAPE);
#ifndef ARB_HAVE_CUDA
    assert_int_equal(arb_tensor_init(&t, ARB_F32, 1, shape, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
#endif
}

static void test_half_conversions(void **state) {
    (void)state;
    /* bf16: round to nearest even on the 16 dropped bits. */
    assert_int_equal(arb_f32_to_bf16(1.0f), 0x3F80);
    assert_true(arb_bf16_to_f32(arb_f32_to_bf16(3.140625f)) == 3.140625f);
    /* f16: every finite half round-trips exactly. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 0x1F) == 0x1F) continue;
        float f = arb_f16_to_f32((uint16_t)h);
        assert_int_equal(arb_f32_to_f16(f), h);
    }
    assert_true(fabsf(arb_f16_to_f32(arb_f32_to_f16(0.1f)) - 0.1f) < 1e-4f);
}

static void test_rng_is_a_pure_function(void **state) {
    (void)state;
    arb_rng_key k = arb_rng_key_make(1234, 5);
    arb_rng_key k2 = arb_rng_key_make(1234, 6);
    assert_int_equal(arb_rand_u32(k, 99), arb_rand_u32(k, 99));
    assert_int_not_equal(arb_rand_u32(k, 99), arb_rand_u32(k2, 99));
    /* Uniformity: mean of 1e5 draws near 0.5; bit balance near half. */
    double sum = 0;
    int64_t ones = 0;
    for (uint32_t i = 0; i < 100000; i++) {
        sum += arb_rand_unit(k, i);
        ones += __builtin_popcount(arb_rand_u32(k, i));
    }
    assert_true(fabs(sum / 100000 - 0.5) < 0.005);
    assert_true(fabs((double)ones / (100000.0 * 32) - 0.5) < 0.002);
}

/* Statistical checks of the draws the update rule and the initializers rely on (bounds at ≥ 6σ
 * or the 99.99% χ² quantile, fixed keys: deterministic): every bit balanced, 16-bucket χ² of the
 * top and the bottom nibble, no correlation between neighbouring indices, between streams of
 * neighbouring seeds or purposes, or between the halves of a 32-bit draw. */
static void test_rng_statistics(void **state) {
    (void)state;
    enum { N = 200000 };
    const arb_rng_key keys[4] = {arb_rng_key_make(1, 0), arb_rng_key_make(2, 0), arb_rng_key_make(1, 1),
                                 arb_rng_key_make(7, 3)};
    for (int ki = 0; ki < 4; ki++) {
        int64_t bit[32] = {0}, hi[16] = {0}, lo[16] = {0};
        double sxy = 0, sx = 0, sxx = 0, shl = 0;
        double prev = arb_rand_unit(keys[ki], 0);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t u = arb_rand_u32(keys[ki], i);
            for (int b = 0; b < 32; b++) bit[b] += (u >> b) & 1u;
            hi[u >> 28]++;
            lo[u & 15]++;
            double x = arb_rand_unit(keys[ki], i + 1);
            sxy += (prev - 0.5) * (x - 0.5);
            sx += x;
            sxx += (x - 0.5) * (x - 0.5);
            shl += ((double)(u >> 16) / 65536.0 - 0.5) * ((double)(u & 0xFFFF) / 65536.0 - 0.5);
            prev = x;
        }
        for (int b = 0; b < 32; b++)
            if (fabs((double)bit[b] / N - 0.5) > 0.007) fail_msg("key %d: bit %d set in %.4f of draws", ki, b, (double)bit[b] / N);
        double chi_hi = 0, chi_lo = 0, e = N / 16.0;
        for (int j = 0; j < 16; j++) {
            chi_hi += (hi[j] - e) * (hi[j] - e) / e;
            chi_lo += (lo[j] - e) * (lo[j] - e) / e;
        }
        if (chi_hi > 45 || chi_lo > 45) fail_msg("key %d: chi2 top %.1f, bottom %.1f (15 dof)", ki, chi_hi, chi_lo);
        double corr = sxy / sxx;
        if (fabs(corr) > 0.012) fail_msg("key %d: lag-1 correlation %.4f", ki, corr);
        if (fabs(shl / (N / 12.0)) > 0.012) fail_msg("key %d: halves correlate %.4f", ki, shl / (N / 12.0));
        (void)sx;
    }
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++) {
            double sab = 0;
            for (uint32_t i = 0; i < N; i++) sab += (arb_rand_unit(keys[a], i) - 0.5) * (arb_rand_unit(keys[b], i) - 0.5);
            double corr = sab / (N / 12.0);
            if (fabs(corr) > 0.012) fail_msg("streams %d and %d correlate: %.4f", a, b, corr);
        }
}

static void test_tier_override(void **state) {
    (void)state;
    arb_cpu_tier best = arb_cpu_tier_get();
    assert_int_equal(arb_cpu_tier_force(ARB_TIER_SCALAR), ARB_TIER_SCALAR);
    assert_int_equal(arb_cpu_tier_force(ARB_TIER_AVX512), best > ARB_TIER_AVX512 ? ARB_TIER_AVX512 : best);
}

/* arb_tree_file: the environment first, then the working directory, then beside the executable
 * (this test runs from build/tests/ or build-NAME/tests/ of the checkout, whose bench/ it finds from
 * any working directory). */
static void test_tree_file(void **state) {
    (void)state;
    char buf[PATH_MAX + 64], cwd[PATH_MAX], tmpl[] = "/tmp/arb-tree-XXXXXX";
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_non_null(mkdtemp(tmpl));
    assert_int_equal(chdir(tmpl), 0);
    setenv("ARB_TEST_TREE_FILE", "/some/where.py", 1);
    assert_string_equal(arb_tree_file("bench/torch_gemm.py", "ARB_TEST_TREE_FILE", buf, sizeof buf), "/some/where.py");
    unsetenv("ARB_TEST_TREE_FILE");
    const char *p = arb_tree_file("bench/torch_gemm.py", "ARB_TEST_TREE_FILE", buf, sizeof buf);
    assert_non_null(p);
    assert_ptr_equal(p, buf); /* not in the empty working directory: found from the executable */
    assert_int_equal(access(p, R_OK), 0);
    assert_non_null(strstr(p, "/bench/torch_gemm.py"));
    assert_null(arb_tree_file("bench/no-such-script.py", NULL, buf, sizeof buf));
    assert_null(arb_tree_file("bench/torch_gemm.py", NULL, buf, 8)); /* too small a buffer: no truncated path */
    assert_int_equal(mkdir("bench", 0700), 0);
    FILE *f = fopen("bench/torch_gemm.py", "w");
    assert_non_null(f);
    fclose(f);
    assert_string_equal(arb_tree_file("bench/torch_gemm.py", NULL, buf, sizeof buf), "bench/torch_gemm.py");
    unlink("bench/torch_gemm.py"), rmdir("bench");
    assert_int_equal(chdir(cwd), 0);
    rmdir(tmpl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_error),
        cmocka_unit_test(test_tensor_alloc_and_overflow),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_rng_is_a_pure_function),
        cmocka_unit_test(test_rng_statistics),
        cmocka_unit_test(test_tier_override),
        cmocka_unit_test(test_tree_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
