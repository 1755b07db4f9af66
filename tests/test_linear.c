/* Ternary linear ops on every CPU tier (scalar, AVX2, AVX-512 VNNI) and thread count, against
 * independent references: int64 sums read through arb_ternary_get for the product, float64 for
 * dX (quantized and unquantized), ternary-core's scalar arb_ternary_linear_backward_update_ref
 * for the fused update (integer state bit for bit). Odd shapes exercise every padding path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"
#include "cpu/linear_internal.h"
#include "ternary/update_internal.h"

typedef struct shape {
    int64_t rows, cols;
} shape;

static const shape k_shapes[] = {{1, 37}, {5, 200}, {33, 129}, {29, 300}, {77, 16}, {48, 64}};
static const int64_t k_ns[] = {1, 3, 8, 17, 64, 2001}; /* 2001: several column slices in the update */
#define NSHAPES (sizeof k_shapes / sizeof k_shapes[0])
#define NNS (sizeof k_ns / sizeof k_ns[0])

static const arb_cpu_tier k_tiers[] = {ARB_TIER_SCALAR, ARB_TIER_AVX2, ARB_TIER_AVX512};

/* Force a tier; false (and a note) if this CPU lacks it. */
static bool use_tier(arb_cpu_tier t) {
    arb_cpu_tier got = arb_cpu_tier_force(t);
    if (got != t) {
        static int said[3];
        if (!said[t]) printf("note: this CPU lacks the %s tier; its cases are skipped\n", arb_cpu_tier_name(t));
        said[t] = 1;
        return false;
    }
    return true;
}

static void make_weight(arb_ternary *w, shape s, uint64_t seed) {
    ARB_ASSERT_OK(arb_ternary_init(w, s.rows, s.cols, ARB_TERNARY_LINEAR, (int32_t)(seed % 1000), arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(w, seed));
}

static int8_t *make_xq(int64_t n, const arb_ternary *w, uint64_t seed) {
    int8_t *xq = calloc((size_t)(n * w->cols_pad), 1);
    for (int64_t t = 0; t < n; t++) arb_test_fill_i8(xq + t * w->cols_pad, (size_t)w->cols, seed * 131 + (uint64_t)t, -127, 127);
    return xq;
}

static void copy_weight(arb_ternary *dst, const arb_ternary *src);
static void assert_same_state(const arb_ternary *a, const arb_ternary *b, const char *what);

/* ---- product ------------------------------------------------------------------------------ */

static void test_matmul_and_forward(void **state) {
    (void)state;
    for (size_t si = 0; si < NSHAPES; si++) {
        arb_ternary w;
        make_weight(&w, k_shapes[si], 11 + si);
        for (size_t ni = 0; ni < NNS; ni++) {
            int64_t n = k_ns[ni], rows = w.rows, cols = w.cols;
            int8_t *xq = make_xq(n, &w, 100 + si * 10 + ni);
            float *xs = malloc((size_t)n * sizeof(float));
            arb_test_fill_f32(xs, (size_t)n, 7 + ni, 0.001f, 0.05f);
            int32_t *want = malloc((size_t)(n * rows) * sizeof(int32_t));
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < rows; o++) {
                    int64_t s = 0;
                    for (int64_t i = 0; i < cols; i++) s += (int64_t)arb_ternary_get(&w, o, i) * xq[t * w.cols_pad + i];
                    want[t * rows + o] = (int32_t)s;
                }
            int32_t *acc = malloc((size_t)(n * rows) * sizeof(int32_t));
            float *y = malloc((size_t)(n * rows) * sizeof(float));
            for (size_t ti = 0; ti < 3; ti++) {
                if (!use_tier(k_tiers[ti])) continue;
                for (int th = 1; th <= 2; th++) {
                    arb_set_num_threads(th);
                    memset(acc, 0x5A, (size_t)(n * rows) * sizeof(int32_t));
                    ARB_ASSERT_OK(arb_ternary_matmul_i32(&w, xq, n, acc));
                    for (int64_t k = 0; k < n * rows; k++)
                        if (acc[k] != want[k])
                            fail_msg("%s, %d threads, %lldx%lld n=%lld: acc[%lld] = %d, want %d",
                                     arb_cpu_tier_name(k_tiers[ti]), th, (long long)rows, (long long)cols,
                                     (long long)n, (long long)k, acc[k], want[k]);
                    ARB_ASSERT_OK(arb_ternary_linear_forward(&w, xq, xs, n, y));
                    for (int64_t t = 0; t < n; t++)
                        for (int64_t o = 0; o < rows; o++) {
                            double ref = (double)want[t * rows + o] * xs[t] * w.scale[o];
                            double got = y[t * rows + o];
                            if (fabs(got - ref) > 1e-6 * fabs(ref) + 1e-30)
                                fail_msg("%s forward %lldx%lld n=%lld: y[%lld,%lld] = %.9g, want %.9g",
                                         arb_cpu_tier_name(k_tiers[ti]), (long long)rows, (long long)cols,
                                         (long long)n, (long long)t, (long long)o, got, ref);
                        }
                }
            }
            free(xq);
            free(xs);
            free(want);
            free(acc);
            free(y);
        }
        arb_ternary_free(&w);
    }
    arb_cpu_tier_force(ARB_TIER_AVX512);
    arb_set_num_threads(0);
}

/* A 4096-wide row block exercises the K chunking of the AVX-512 GEMM and the GEMV path on
 * extreme activations (all ±127, all codes 2): the largest sums the kernels can see. */
static void test_extremes(void **state) {
    (void)state;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, 40, 4100, ARB_TERNARY_LINEAR, 3, arb_cpu()));
    for (int64_t o = 0; o < w.rows; o++)
        for (int64_t i = 0; i < w.cols; i++) arb_ternary_set(&w, o, i, o % 3 == 0 ? 1 : (o % 3 == 1 ? -1 : ((i & 1) ? 1 : -1)));
    for (int64_t n = 1; n <= 13; n += 12) {
        int8_t *xq = calloc((size_t)(n * w.cols_pad), 1);
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < w.cols; i++) xq[t * w.cols_pad + i] = (int8_t)((t & 1) ? -127 : 127);
        int32_t *acc = malloc((size_t)(n * w.rows) * sizeof(int32_t));
        for (size_t ti = 0; ti < 3; ti++) {
            if (!use_tier(k_tiers[ti])) continue;
            ARB_ASSERT_OK(arb_ternary_matmul_i32(&w, xq, n, acc));
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < w.rows; o++) {
                    int64_t s = 0;
                    for (int64_t i = 0; i < w.cols; i++) s += (int64_t)arb_ternary_get(&w, o, i) * xq[t * w.cols_pad + i];
                    assert_int_equal(acc[t * w.rows + o], s);
                }
        }
        free(xq);
        free(acc);
    }
    arb_ternary_free(&w);
    arb_cpu_tier_force(ARB_TIER_AVX512);
}

/* The rows64 copy (n = 1): every tier and thread count against int64 sums of arb_ternary_get on
 * shapes around its 64-row groups, extreme sums past the R64 chunk (65 600 columns of code 2 and
 * ±127), and after a fused update (arb_ternary_refresh must rebuild it). */
static void check_gemv_rows64(const arb_ternary *w, const int8_t *xq, const char *what) {
    int32_t *acc = malloc((size_t)w->rows * sizeof(int32_t)), *want = malloc((size_t)w->rows * sizeof(int32_t));
    for (int64_t o = 0; o < w->rows; o++) {
        int64_t sum = 0;
        for (int64_t i = 0; i < w->cols; i++) sum += (int64_t)arb_ternary_get(w, o, i) * xq[i];
        assert_true(sum >= INT32_MIN && sum <= INT32_MAX);
        want[o] = (int32_t)sum;
    }
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        for (int th = 1; th <= 2; th++) {
            arb_set_num_threads(th);
            memset(acc, 0x5A, (size_t)w->rows * sizeof(int32_t));
            ARB_ASSERT_OK(arb_ternary_matmul_i32(w, xq, 1, acc));
            for (int64_t o = 0; o < w->rows; o++)
                if (acc[o] != want[o])
                    fail_msg("rows64 %s, %s, %d threads, %lldx%lld: acc[%lld] = %d, want %d", what,
                             arb_cpu_tier_name(k_tiers[ti]), th, (long long)w->rows, (long long)w->cols, (long long)o,
                             acc[o], want[o]);
        }
    }
    arb_set_num_threads(0);
    arb_cpu_tier_force(ARB_TIER_AVX512);
    free(acc);
    free(want);
}

static void test_gemv_rows64(void **state) {
    (void)state;
    static const shape shapes[] = {{1, 37}, {63, 200}, {64, 16}, {65, 129}, {130, 300}, {200, 48}, {257, 1000}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        arb_ternary w;
        make_weight(&w, shapes[si], 40 + si);
        ARB_ASSERT_OK(arb_ternary_prepare_rows64(&w));
        assert_non_null(w.rows64);
        int8_t *xq = make_xq(1, &w, 900 + si);
        check_gemv_rows64(&w, xq, "random");
        /* change trits through the fused update: refresh rebuilds the copy */
        const int64_t n = 16;
        int8_t *xn = make_xq(n, &w, 950 + si);
        float *xs = malloc(n * sizeof(float)), *dy = malloc((size_t)(n * w.rows) * sizeof(float));
        arb_test_fill_f32(xs, (size_t)n, 3, 0.01f, 0.02f);
        arb_test_fill_f32(dy, (size_t)(n * w.rows), 4 + si, -1.0f, 1.0f);
        arb_update_params p = arb_update_params_default();
        p.eta = 400.0f; /* many flips */
        p.seed = 77;
        arb_update_state st = {0};
        arb_update_stats stats;
        int64_t flips = 0;
        for (int step = 0; step < 2; step++) { /* the first step measures its own norm */
            ARB_ASSERT_OK(arb_ternary_linear_backward_update(&w, xn, xs, dy, n, &p, &st, &stats));
            flips += stats.flips;
        }
        assert_true(flips > 0);
        check_gemv_rows64(&w, xq, "after an update");
        arb_ternary_drop_rows64(&w);
        assert_null(w.rows64);
        free(xn);
        free(xs);
        free(dy);
        free(xq);
        arb_ternary_free(&w);
    }
    /* extremes: |sum| = 127 · 65600 per row, past one R64 chunk (16384 quads) */
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, 70, 65600, ARB_TERNARY_LINEAR, 5, arb_cpu()));
    for (int64_t o = 0; o < w.rows; o++)
        for (int64_t i = 0; i < w.cols; i++) arb_ternary_set(&w, o, i, o % 3 == 0 ? 1 : (o % 3 == 1 ? -1 : ((i & 1) ? 1 : -1)));
    ARB_ASSERT_OK(arb_ternary_refresh(&w));
    ARB_ASSERT_OK(arb_ternary_prepare_rows64(&w));
    int8_t *xq = calloc((size_t)w.cols_pad, 1);
    for (int sign = -1; sign <= 1; sign += 2) {
        for (int64_t i = 0; i < w.cols; i++) xq[i] = (int8_t)(127 * sign);
        check_gemv_rows64(&w, xq, "extreme");
    }
    free(xq);
    arb_ternary_free(&w);
}

/* A fixed exponent (arb_ternary_fix_exponent): no E state, scale as with E = 0, updates give the
 * same trits and T_accum as the same tensor with E kept at 0, asking for update_exp is an error,
 * and a nonzero E cannot be fixed. */
static void test_fixed_exponent(void **state) {
    (void)state;
    arb_ternary a, b;
    make_weight(&a, (shape){37, 70}, 5);
    copy_weight(&b, &a);
    size_t before = arb_ternary_state_bytes(&b);
    b.exp[3] = 2;
    assert_int_equal(arb_ternary_fix_exponent(&b), ARB_ERR_INVALID_ARG);
    b.exp[3] = 0;
    ARB_ASSERT_OK(arb_ternary_fix_exponent(&b));
    assert_null(b.exp);
    assert_null(b.exp_evidence);
    assert_int_equal(arb_ternary_state_bytes(&b), before - 2 * (size_t)b.rows);
    assert_memory_equal(a.scale, b.scale, (size_t)a.rows * sizeof(float));
    const int64_t n = 9;
    int8_t *xq = make_xq(n, &a, 77);
    float xs[9], *dy = malloc((size_t)(n * a.rows) * sizeof(float));
    arb_test_fill_f32(xs, (size_t)n, 3, 0.01f, 0.05f);
    arb_test_fill_f32(dy, (size_t)(n * a.rows), 4, -1.0f, 1.0f);
    arb_update_params p = arb_update_params_default();
    p.eta = 60.0f;
    p.update_exp = false;
    arb_update_state sa = {0}, sb = {0};
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        for (int step = 0; step < 3; step++) {
            p.step = (uint64_t)(10 * ti + step);
            ARB_ASSERT_OK(arb_ternary_linear_backward_update(&a, xq, xs, dy, n, &p, &sa, NULL));
            ARB_ASSERT_OK(arb_ternary_linear_backward_update(&b, xq, xs, dy, n, &p, &sb, NULL));
        }
        assert_memory_equal(a.trits, b.trits, (size_t)(a.rows_pad * a.cols_pad / 4));
        assert_memory_equal(a.accum, b.accum, (size_t)(a.rows * a.cols));
        assert_memory_equal(a.scale, b.scale, (size_t)a.rows * sizeof(float));
    }
    p.update_exp = true;
    assert_int_equal(arb_ternary_linear_backward_update(&b, xq, xs, dy, n, &p, &sb, NULL), ARB_ERR_INVALID_ARG);
    assert_non_null(strstr(arb_last_error(), "fixed exponent"));
    ARB_ASSERT_OK(arb_ternary_fix_exponent(&b)); /* again: nothing to do */
    ARB_ASSERT_OK(arb_ternary_randomize(&b, 3));  /* no E to reset */
    arb_cpu_tier_force(ARB_TIER_AVX512);
    free(xq);
    free(dy);
    arb_ternary_free(&a);
    arb_ternary_free(&b);
}

/* Shapes past the kernels' blocking limits: K chunks of the GEMM (> 16384 columns) and of the
 * GEMV (> 32768), row groups (> 1024 rows), dX's transposed K (> 16384 rows) and the token
 * chunks of the weight gradient (> 65536 tokens). */
static void check_product(const arb_ternary *w, int64_t n, uint64_t seed) {
    int8_t *xq = make_xq(n, w, seed);
    int32_t *acc = malloc((size_t)(n * w->rows) * sizeof(int32_t));
    int32_t *want = malloc((size_t)(n * w->rows) * sizeof(int32_t));
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < w->rows; o++) {
            int64_t sum = 0;
            for (int64_t i = 0; i < w->cols; i++) sum += (int64_t)arb_ternary_get(w, o, i) * xq[t * w->cols_pad + i];
            want[t * w->rows + o] = (int32_t)sum;
        }
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        ARB_ASSERT_OK(arb_ternary_matmul_i32(w, xq, n, acc));
        if (memcmp(acc, want, (size_t)(n * w->rows) * sizeof(int32_t)))
            fail_msg("%s: %lldx%lld n=%lld differs from the int64 reference", arb_cpu_tier_name(k_tiers[ti]),
                     (long long)w->rows, (long long)w->cols, (long long)n);
    }
    free(xq);
    free(acc);
    free(want);
}

static void test_blocking_limits(void **state) {
    (void)state;
    arb_set_num_threads(1); /* one thread sees every row group */
    static const struct { int64_t rows, cols, n; } cases[] = {{20, 16500, 13}, {16, 33000, 1}, {1100, 40, 3}, {1100, 24, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        arb_ternary w;
        make_weight(&w, (shape){cases[c].rows, cases[c].cols}, 900 + c);
        check_product(&w, cases[c].n, 950 + c);
        arb_ternary_free(&w);
    }
    /* dX with more than 16384 rows: against the f64 reference of the quantized product */
    arb_ternary w;
    make_weight(&w, (shape){16500, 20}, 990);
    int64_t n = 3;
    float *dy = malloc((size_t)(n * w.rows) * sizeof(float)), *dx = malloc((size_t)(n * w.cols) * sizeof(float));
    arb_test_fill_f32(dy, (size_t)(n * w.rows), 991, -1.0f, 1.0f);
    arb_rng_key key = arb_rng_key_make(5, 5);
    double *q64 = calloc((size_t)(n * w.cols), sizeof(double));
    for (int64_t t = 0; t < n; t++) {
        float amax = 0.0f;
        for (int64_t o = 0; o < w.rows; o++) amax = fmaxf(amax, fabsf(dy[t * w.rows + o] * w.scale[o]));
        float inv = 127.0f / amax, hs = amax / 127.0f;
        for (int64_t o = 0; o < w.rows; o++) {
            float v = floorf((dy[t * w.rows + o] * w.scale[o]) * inv + arb_rand_unit(key, (uint32_t)(t * w.rows + o)));
            for (int64_t i = 0; i < w.cols; i++) q64[t * w.cols + i] += (double)hs * v * arb_ternary_get(&w, o, i);
        }
    }
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        ARB_ASSERT_OK(arb_ternary_linear_backward_x(&w, dy, n, key, dx));
        double r = arb_test_rel_l2_f64(dx, q64, (size_t)(n * w.cols));
        if (r > 1e-6) fail_msg("%s: dX with 16500 rows: rel err %.3g", arb_cpu_tier_name(k_tiers[ti]), r);
    }
    free(dy);
    free(dx);
    free(q64);
    arb_ternary_free(&w);

    /* the weight gradient over more than 65536 tokens: state equal to the scalar reference */
    arb_ternary w0, ref;
    make_weight(&w0, (shape){18, 20}, 995);
    n = 70001;
    int8_t *xq = make_xq(n, &w0, 996);
    float *xs = malloc((size_t)n * sizeof(float));
    dy = malloc((size_t)(n * w0.rows) * sizeof(float));
    arb_test_fill_f32(xs, (size_t)n, 997, 0.001f, 0.05f);
    arb_test_fill_f32(dy, (size_t)(n * w0.rows), 998, -1.0f, 1.0f);
    arb_update_params p = arb_update_params_default();
    p.eta = 40.0f;
    copy_weight(&ref, &w0);
    arb_update_state st_ref = {0};
    ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&ref, xq, xs, dy, n, &p, &st_ref, NULL));
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        arb_ternary wt;
        copy_weight(&wt, &w0);
        arb_update_state st = {0};
        ARB_ASSERT_OK(arb_ternary_linear_backward_update(&wt, xq, xs, dy, n, &p, &st, NULL));
        assert_same_state(&wt, &ref, arb_cpu_tier_name(k_tiers[ti]));
        arb_ternary_free(&wt);
    }
    arb_ternary_free(&w0);
    arb_ternary_free(&ref);
    free(xq);
    free(xs);
    free(dy);
    arb_cpu_tier_force(ARB_TIER_AVX512);
    arb_set_num_threads(0);
}

/* ---- input gradient ------------------------------------------------------------------------ */

static void test_backward_x(void **state) {
    (void)state;
    for (size_t si = 0; si < NSHAPES; si++) {
        arb_ternary w;
        make_weight(&w, k_shapes[si], 21 + si);
        for (int64_t o = 0; o < w.rows; o++) w.exp[o] = (int8_t)((o % 9) - 4);
        ARB_ASSERT_OK(arb_ternary_refresh(&w));
        for (size_t ni = 0; ni < NNS; ni++) {
            int64_t n = k_ns[ni], rows = w.rows, cols = w.cols;
            float *dy = malloc((size_t)(n * rows) * sizeof(float));
            arb_test_fill_f32(dy, (size_t)(n * rows), 300 + si * 10 + ni, -1.0f, 1.0f);
            arb_rng_key key = arb_rng_key_make(99, si * 100 + ni);
            /* float64 references: of the quantized product (same rounding draws), and of the exact one */
            double *q64 = calloc((size_t)(n * cols), sizeof(double)), *e64 = calloc((size_t)(n * cols), sizeof(double));
            for (int64_t t = 0; t < n; t++) {
                float amax = 0.0f;
                for (int64_t o = 0; o < rows; o++) amax = fmaxf(amax, fabsf(dy[t * rows + o] * w.scale[o]));
                float inv = 127.0f / amax, hs = amax / 127.0f;
                for (int64_t o = 0; o < rows; o++) {
                    float h = dy[t * rows + o] * w.scale[o];
                    float v = floorf(h * inv + arb_rand_unit(key, (uint32_t)(t * rows + o)));
                    v = fminf(127.0f, fmaxf(-127.0f, v));
                    for (int64_t i = 0; i < cols; i++) {
                        int tr = arb_ternary_get(&w, o, i);
                        q64[t * cols + i] += (double)hs * v * tr;
                        e64[t * cols + i] += (double)h * tr;
                    }
                }
            }
            float *dx = malloc((size_t)(n * cols) * sizeof(float)), *dx0 = malloc((size_t)(n * cols) * sizeof(float));
            bool have0 = false;
            for (size_t ti = 0; ti < 3; ti++) {
                if (!use_tier(k_tiers[ti])) continue;
                for (int th = 1; th <= 2; th++) {
                    arb_set_num_threads(th);
                    ARB_ASSERT_OK(arb_ternary_linear_backward_x(&w, dy, n, key, dx));
                    double rq = arb_test_rel_l2_f64(dx, q64, (size_t)(n * cols));
                    double re = arb_test_rel_l2_f64(dx, e64, (size_t)(n * cols));
                    if (rq > 1e-6)
                        fail_msg("%s dX %lldx%lld n=%lld: rel err %.3g vs the quantized f64 reference",
                                 arb_cpu_tier_name(k_tiers[ti]), (long long)rows, (long long)cols, (long long)n, rq);
                    /* int8 stochastic rounding: per element error ≤ 1 unit of 127 (stated bound 0.03 for
                     * the rel. L2 error against the unquantized product; a wrong sign gives ~1.4) */
                    if (re > 0.03)
                        fail_msg("%s dX %lldx%lld n=%lld: rel err %.3g vs the unquantized product",
                                 arb_cpu_tier_name(k_tiers[ti]), (long long)rows, (long long)cols, (long long)n, re);
                    if (!have0) {
                        memcpy(dx0, dx, (size_t)(n * cols) * sizeof(float));
                        have0 = true;
                    } else {
                        assert_memory_equal(dx, dx0, (size_t)(n * cols) * sizeof(float));
                    }
                }
            }
            free(dy);
            free(q64);
            free(e64);
            free(dx);
            free(dx0);
        }
        arb_ternary_free(&w);
    }
    arb_cpu_tier_force(ARB_TIER_AVX512);
    arb_set_num_threads(0);
}

/* ---- fused backward + update ---------------------------------------------------------------- */

static void copy_weight(arb_ternary *dst, const arb_ternary *src) {
    ARB_ASSERT_OK(arb_ternary_init(dst, src->rows, src->cols, src->kind, src->id, arb_cpu()));
    memcpy(dst->trits, src->trits, (size_t)(src->rows_pad * src->cols_pad / 4));
    memcpy(dst->accum, src->accum, (size_t)(src->rows * src->cols));
    memcpy(dst->exp, src->exp, (size_t)src->rows);
    memcpy(dst->exp_evidence, src->exp_evidence, (size_t)src->rows);
    ARB_ASSERT_OK(arb_ternary_refresh(dst));
}

static void assert_same_state(const arb_ternary *a, const arb_ternary *b, const char *what) {
    if (memcmp(a->trits, b->trits, (size_t)(a->rows_pad * a->cols_pad / 4)))
        fail_msg("%s: trits differ (%lldx%lld)", what, (long long)a->rows, (long long)a->cols);
    if (memcmp(a->accum, b->accum, (size_t)(a->rows * a->cols))) fail_msg("%s: T_accum differs", what);
    if (memcmp(a->exp, b->exp, (size_t)a->rows)) fail_msg("%s: E differs", what);
    if (memcmp(a->exp_evidence, b->exp_evidence, (size_t)a->rows)) fail_msg("%s: E evidence differs", what);
    if (memcmp(a->scale, b->scale, (size_t)a->rows * sizeof(float))) fail_msg("%s: scale differs", what);
    if (memcmp(a->nnz, b->nnz, (size_t)a->rows * sizeof(int32_t))) fail_msg("%s: nnz differs", what);
}

static void test_backward_update(void **state) {
    (void)state;
    int64_t total_flips = 0;
    for (size_t si = 0; si < NSHAPES; si++) {
        for (size_t ni = 0; ni < NNS; ni++) {
            int64_t n = k_ns[ni];
            arb_ternary w0;
            make_weight(&w0, k_shapes[si], 41 + si * 7 + ni);
            int8_t *acc0 = malloc((size_t)(w0.rows * w0.cols));
            arb_test_fill_i8(acc0, (size_t)(w0.rows * w0.cols), 5 + si, -100, 100);
            memcpy(w0.accum, acc0, (size_t)(w0.rows * w0.cols));
            free(acc0);
            for (int64_t o = 0; o < w0.rows; o++) w0.exp_evidence[o] = (int8_t)((o * 7) % 61 - 30);
            ARB_ASSERT_OK(arb_ternary_refresh(&w0));
            int8_t *xq = make_xq(n, &w0, 500 + si * 10 + ni);
            float *xs = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)(n * w0.rows) * sizeof(float));
            arb_test_fill_f32(xs, (size_t)n, 8 + ni, 0.001f, 0.05f);
            arb_test_fill_f32(dy, (size_t)(n * w0.rows), 600 + si * 10 + ni, -1.0f, 1.0f);
            arb_update_params p = arb_update_params_default();
            p.eta = 40.0f; /* many flips: every branch of the rule runs */
            p.seed = 1234 + si;

            /* the reference: two steps (the first measures its own norm) */
            arb_ternary ref;
            copy_weight(&ref, &w0);
            arb_update_state st_ref = {0};
            arb_update_stats s_ref[2];
            for (int step = 0; step < 2; step++) {
                p.step = (uint64_t)step;
                ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&ref, xq, xs, dy, n, &p, &st_ref, &s_ref[step]));
            }
            total_flips += s_ref[0].flips + s_ref[1].flips;
            for (size_t ti = 0; ti < 3; ti++) {
                if (!use_tier(k_tiers[ti])) continue;
                for (int th = 1; th <= 2; th++) {
                    arb_set_num_threads(th);
                    arb_ternary w;
                    copy_weight(&w, &w0);
                    arb_update_state st = {0};
                    arb_update_stats s;
                    for (int step = 0; step < 2; step++) {
                        p.step = (uint64_t)step;
                        ARB_ASSERT_OK(arb_ternary_linear_backward_update(&w, xq, xs, dy, n, &p, &st, &s));
                        assert_int_equal(s.flips, s_ref[step].flips);
                        assert_int_equal(s.zeros, s_ref[step].zeros);
                        assert_int_equal(s.exp_moves, s_ref[step].exp_moves);
                    }
                    char what[96];
                    snprintf(what, sizeof what, "%s %d threads %lldx%lld n=%lld", arb_cpu_tier_name(k_tiers[ti]), th,
                             (long long)w.rows, (long long)w.cols, (long long)n);
                    assert_same_state(&w, &ref, what);
                    if (st.grad_norm != st_ref.grad_norm) fail_msg("%s: grad_norm %.17g vs %.17g", what, st.grad_norm, st_ref.grad_norm);
                    arb_ternary_free(&w);
                }
            }
            arb_ternary_free(&ref);
            arb_ternary_free(&w0);
            free(xq);
            free(xs);
            free(dy);
        }
    }
    assert_true(total_flips > 1000); /* the comparison above saw real trit moves */
    arb_cpu_tier_force(ARB_TIER_AVX512);
    arb_set_num_threads(0);
}

/* The per-weight rule of every tier's update kernel against the scalar tier's (which calls
 * ternary-core's arb_upd_row) for every regime of the fixed-point plan: S = 0 (no rounding
 * bits), S < 32 (u >> (32 - S)), S = 32, S > 32 (u << (S - 32)), up to 62; leak shifts 0 and 5;
 * multipliers up to 2^30 with large gradients (saturating pressure). */
static void test_rule_regimes(void **state) {
    (void)state;
    static const int shifts[] = {0, 5, 31, 32, 33, 40, 62};
    arb_ternary w0;
    make_weight(&w0, (shape){37, 45}, 4242);
    int8_t *acc0 = malloc((size_t)(w0.rows * w0.cols));
    arb_test_fill_i8(acc0, (size_t)(w0.rows * w0.cols), 4243, -127, 127);
    memcpy(w0.accum, acc0, (size_t)(w0.rows * w0.cols));
    free(acc0);
    const int64_t n4 = 5, rbs = w0.rows_pad / 16, kbs = w0.cols_pad / 16;
    uint8_t *xt = malloc((size_t)(n4 * 64 * kbs));
    int8_t *ht = malloc((size_t)(n4 * 64 * rbs));
    int32_t *hsum = calloc((size_t)w0.rows_pad, sizeof(int32_t));
    arb_test_fill_i8((int8_t *)xt, (size_t)(n4 * 64 * kbs), 4244, -128, 127);
    arb_test_fill_i8(ht, (size_t)(n4 * 64 * rbs), 4245, -127, 127);
    for (int64_t rb = 0; rb < rbs; rb++) /* padded rows carry no gradient, like lin_build_grad */
        for (int64_t ng = 0; ng < n4; ng++)
            for (int o = 0; o < 16; o++)
                for (int j = 0; j < 4; j++) {
                    int8_t *v = &ht[(rb * n4 + ng) * 64 + 4 * o + j];
                    if (rb * 16 + o >= w0.rows) *v = 0;
                    hsum[rb * 16 + o] += *v;
                }
    arb_lin_grad gr = {xt, ht, hsum, n4};
    int32_t *mult = malloc((size_t)w0.rows * sizeof(int32_t));
    for (int64_t o = 0; o < w0.rows; o++) mult[o] = (int32_t)(arb_rand_u32(arb_rng_key_make(7, 7), (uint32_t)o) >> (2 + o % 20));
    for (size_t si = 0; si < sizeof shifts / sizeof shifts[0]; si++) {
        for (int leak = 0; leak <= 5; leak += 5) {
            arb_upd_plan pl = {mult, shifts[si], arb_rng_key_make(11, si), 64, leak};
            arb_ternary ref;
            copy_weight(&ref, &w0);
            arb_upd_row_acc *racc_ref = calloc((size_t)w0.rows_pad, sizeof *racc_ref);
            for (int64_t rb = 0; rb < rbs; rb++) arb_lin_kernels_ref.upd(&ref, &gr, rb, 0, ref.cols_pad >> 4, &pl, racc_ref + rb * 16);
            const arb_lin_kernels *tiers[2] = {&arb_lin_kernels_avx2, &arb_lin_kernels_avx512};
            for (int ti = 0; ti < 2; ti++) {
                if (!use_tier(ti == 0 ? ARB_TIER_AVX2 : ARB_TIER_AVX512)) continue;
                arb_ternary w;
                copy_weight(&w, &w0);
                arb_upd_row_acc *racc = calloc((size_t)w0.rows_pad, sizeof *racc);
                for (int64_t rb = 0; rb < rbs; rb++) tiers[ti]->upd(&w, &gr, rb, 0, w.cols_pad >> 4, &pl, racc + rb * 16);
                char what[64];
                snprintf(what, sizeof what, "tier %d, S = %d, k = %d", ti + 1, shifts[si], leak);
                if (memcmp(w.trits, ref.trits, (size_t)(w.rows_pad * w.cols_pad / 4))) fail_msg("%s: trits differ", what);
                if (memcmp(w.accum, ref.accum, (size_t)(w.rows * w.cols))) fail_msg("%s: T_accum differs", what);
                if (memcmp(racc, racc_ref, (size_t)w0.rows * sizeof *racc)) fail_msg("%s: row sums differ", what);
                free(racc);
                arb_ternary_free(&w);
            }
            free(racc_ref);
            arb_ternary_free(&ref);
        }
    }
    arb_cpu_tier_force(ARB_TIER_AVX512);
    free(xt);
    free(ht);
    free(hsum);
    free(mult);
    arb_ternary_free(&w0);
}

/* The fused update must move the weights against the gradient: with a fixed dy and x, the
 * linear loss L = Σ y·dy (dL/dW = Σ dy·x) falls over a few steps, on every tier. */
static void test_update_descends(void **state) {
    (void)state;
    shape s = {48, 96};
    int64_t n = 32;
    for (size_t ti = 0; ti < 3; ti++) {
        if (!use_tier(k_tiers[ti])) continue;
        arb_ternary w;
        make_weight(&w, s, 77);
        int8_t *xq = make_xq(n, &w, 78);
        float *xs = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)(n * w.rows) * sizeof(float));
        float *y = malloc((size_t)(n * w.rows) * sizeof(float));
        for (int64_t t = 0; t < n; t++) xs[t] = 0.01f;
        arb_test_fill_f32(dy, (size_t)(n * w.rows), 79, -1.0f, 1.0f);
        double loss[6];
        arb_update_params p = arb_update_params_default();
        p.update_exp = false;
        arb_update_state st = {0};
        for (int step = 0; step < 6; step++) {
            ARB_ASSERT_OK(arb_ternary_linear_forward(&w, xq, xs, n, y));
            double l = 0;
            for (int64_t k = 0; k < n * w.rows; k++) l += (double)y[k] * dy[k];
            loss[step] = l;
            p.step = (uint64_t)step;
            ARB_ASSERT_OK(arb_ternary_linear_backward_update(&w, xq, xs, dy, n, &p, &st, NULL));
        }
        if (!(loss[5] < loss[0] - 0.05 * fabs(loss[0])))
            fail_msg("%s: loss %.4g -> %.4g did not fall: the pressure does not oppose the gradient",
                     arb_cpu_tier_name(k_tiers[ti]), loss[0], loss[5]);
        arb_ternary_free(&w);
        free(xq);
        free(xs);
        free(dy);
        free(y);
    }
    arb_cpu_tier_force(ARB_TIER_AVX512);
}

static void test_errors(void **state) {
    (void)state;
    arb_ternary w;
    make_weight(&w, (shape){8, 8}, 1);
    int8_t xq[16] = {0};
    int32_t acc[8];
    float y[8], xs[1] = {1.0f}, dy[8] = {0};
    assert_int_equal(arb_ternary_matmul_i32(NULL, xq, 1, acc), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_matmul_i32(&w, NULL, 1, acc), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_matmul_i32(&w, xq, -1, acc), ARB_ERR_SHAPE);
    assert_int_equal(arb_ternary_matmul_i32(&w, xq, 0, NULL), ARB_OK);
    assert_int_equal(arb_ternary_linear_forward(&w, xq, NULL, 1, y), ARB_ERR_INVALID_ARG);
    dy[3] = NAN;
    assert_int_equal(arb_ternary_linear_backward_x(&w, dy, 1, arb_rng_key_make(1, 2), y), ARB_ERR_INVALID_ARG);
    arb_update_params p = arb_update_params_default();
    arb_update_state st = {0};
    assert_int_equal(arb_ternary_linear_backward_update(&w, xq, xs, dy, 1, &p, &st, NULL), ARB_ERR_INVALID_ARG);
    p.threshold = 0;
    dy[3] = 0.0f;
    assert_int_equal(arb_ternary_linear_backward_update(&w, xq, xs, dy, 1, &p, &st, NULL), ARB_ERR_INVALID_ARG);
    arb_ternary_free(&w);
}

/* `arbitor bench`: --help works, unknown benchmarks and options fail with one line. */
static int run_cli(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", ARB_CLI_PATH, args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t len = fread(out, 1, cap - 1, f);
    out[len] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_bench_cli(void **state) {
    (void)state;
    char out[4096];
    assert_int_equal(run_cli("bench kernels --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "BENCH gemv_cache_pct"));
    assert_int_equal(run_cli("bench --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "kernels"));
    assert_int_not_equal(run_cli("bench nonsense", out, sizeof out), 0);
    assert_non_null(strstr(out, "arbitor: error: unknown benchmark 'nonsense'"));
    assert_int_not_equal(run_cli("bench kernels --bogus", out, sizeof out), 0);
    assert_non_null(strstr(out, "arbitor: error:"));
    const char *nl = strchr(out, '\n');
    assert_true(nl && nl[1] == 0); /* exactly one line */
    assert_int_not_equal(run_cli("bench kernels --threads 0", out, sizeof out), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_and_forward), cmocka_unit_test(test_extremes), cmocka_unit_test(test_gemv_rows64), cmocka_unit_test(test_fixed_exponent), cmocka_unit_test(test_blocking_limits),
        cmocka_unit_test(test_backward_x),         cmocka_unit_test(test_backward_update),
        cmocka_unit_test(test_update_descends),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bench_cli),          cmocka_unit_test(test_rule_regimes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
