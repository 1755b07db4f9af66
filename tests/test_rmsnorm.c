/* Ternary RMSNorm: forward against float64, dx against the float64 analytic gradient and
 * central finite differences of a float64 loss, the gain's integer gradient against float64,
 * the gain update's sign, p == NULL (frozen gain), and 1- vs 2-thread bit-identical state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ternary/update_internal.h"

static void make_gain(arb_ternary *g, int64_t d, uint64_t seed) {
    ARB_ASSERT_OK(arb_ternary_init(g, 1, d, ARB_TERNARY_GAIN, 13, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(g, seed)); /* all +1 */
    arb_rng_key k = arb_rng_key_make(seed, 2);
    for (int64_t i = 0; i < d; i++) arb_ternary_set(g, 0, i, (int)(arb_rand_u32(k, (uint32_t)i) % 3) - 1);
    g->exp[0] = 3;
    ARB_ASSERT_OK(arb_ternary_refresh(g));
}

/* float64 RMSNorm with gain gv: y = x / sqrt(mean x² + eps) · gv */
static void rms_f64(const double *x, const double *gv, int64_t d, double eps, double *y) {
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; i++) y[i] = x[i] * r * gv[i];
}

static void test_forward_and_dx(void **state) {
    (void)state;
    const int64_t D = 45, N = 7;
    const float eps = 1e-5f;
    arb_ternary g;
    make_gain(&g, D, 4);
    float *x = malloc(N * D * sizeof(float)), *y = malloc(N * D * sizeof(float)), rstd[7];
    float *dy = malloc(N * D * sizeof(float)), *dx = malloc(N * D * sizeof(float));
    arb_test_fill_f32(x, (size_t)(N * D), 1, -2.0f, 2.0f);
    arb_test_fill_f32(dy, (size_t)(N * D), 2, -1.0f, 1.0f);
    for (int64_t i = 0; i < D; i++) x[3 * D + i] *= 1e-3f; /* a small row: eps matters */
    ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(&g, x, N, eps, y, rstd));
    double gv[45], xd[45], yd[45], xp[45], yp[45], ym[45];
    for (int64_t i = 0; i < D; i++) gv[i] = arb_ternary_get(&g, 0, i) * exp2(3 / 4.0);
    for (int64_t t = 0; t < N; t++) {
        for (int64_t i = 0; i < D; i++) xd[i] = x[t * D + i];
        rms_f64(xd, gv, D, eps, yd);
        for (int64_t i = 0; i < D; i++) assert_true(fabs(y[t * D + i] - yd[i]) <= 1e-5 * (fabs(yd[i]) + 1e-3));
    }
    ARB_ASSERT_OK(arb_ternary_rmsnorm_backward_update(&g, x, rstd, dy, N, dx, NULL, NULL, NULL));
    /* finite differences of L = Σ dy·y in float64, central, h relative to the row's scale */
    for (int64_t t = 0; t < N; t++) {
        for (int64_t i = 0; i < D; i++) xd[i] = x[t * D + i];
        double amax = 0;
        for (int64_t i = 0; i < D; i++) amax = fmax(amax, fabs(xd[i]));
        double err = 0, den = 0;
        for (int64_t j = 0; j < D; j++) {
            double h = 1e-6 * amax;
            memcpy(xp, xd, sizeof xp);
            memcpy(ym, xd, sizeof ym);
            xp[j] += h;
            double xm[45];
            memcpy(xm, xd, sizeof xm);
            xm[j] -= h;
            rms_f64(xp, gv, D, eps, yp);
            rms_f64(xm, gv, D, eps, ym);
            double lp = 0, lm = 0;
            for (int64_t i = 0; i < D; i++) lp += dy[t * D + i] * yp[i], lm += dy[t * D + i] * ym[i];
            double fd = (lp - lm) / (2 * h);
            err += (dx[t * D + j] - fd) * (dx[t * D + j] - fd);
            den += fd * fd;
        }
        assert_true(sqrt(err / den) < 1e-4);
    }
    free(x), free(y), free(dy), free(dx);
    arb_ternary_free(&g);
}

static void test_gain_gradient_vs_f64(void **state) {
    (void)state;
    const int64_t D = 37, N = 400;
    arb_ternary g;
    make_gain(&g, D, 5);
    float *x = malloc(N * D * sizeof(float)), *y = malloc(N * D * sizeof(float)), *rstd = malloc(N * sizeof(float));
    float *dy = malloc(N * D * sizeof(float));
    arb_test_fill_f32(x, (size_t)(N * D), 3, -2.0f, 2.0f);
    arb_test_fill_f32(dy, (size_t)(N * D), 4, -1.0f, 1.0f);
    ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(&g, x, N, 1e-6f, y, rstd));
    double g64[37] = {0}, avg[37] = {0};
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < D; i++) g64[i] += (double)dy[t * D + i] * x[t * D + i] * rstd[t] * g.scale[0];
    int32_t gi[37];
    float c;
    double e1 = 0, den = 0;
    const int reps = 32;
    for (int rep = 0; rep < reps; rep++) {
        ARB_ASSERT_OK(arb_upd_rmsnorm_grad(&g, x, rstd, dy, N, arb_update_key(1, (uint64_t)rep, 13, ARB_RNG_GRAD), gi, &c));
        for (int64_t i = 0; i < D; i++) {
            double v = (double)c * gi[i];
            avg[i] += v / reps;
            if (rep == 0) e1 += (v - g64[i]) * (v - g64[i]), den += g64[i] * g64[i];
        }
    }
    e1 = sqrt(e1 / den);
    double ea = 0;
    for (int64_t i = 0; i < D; i++) ea += (avg[i] - g64[i]) * (avg[i] - g64[i]);
    ea = sqrt(ea / den);
    assert_true(e1 < 0.05);
    assert_true(ea < e1 / 3.0);
    free(x), free(y), free(rstd), free(dy);
    arb_ternary_free(&g);
}

/* dy = y − target with target = 0 on the first half of the dims: those gains must shrink to 0
 * (then stay: the gradient vanishes), the others, pushed to grow, stay at +1. */
static void test_gain_update_sign(void **state) {
    (void)state;
    const int64_t D = 20, N = 64;
    arb_ternary g;
    ARB_ASSERT_OK(arb_ternary_init(&g, 1, D, ARB_TERNARY_GAIN, 14, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&g, 1));
    float *x = malloc(N * D * sizeof(float)), *y = malloc(N * D * sizeof(float)), rstd[64];
    float *dy = malloc(N * D * sizeof(float)), *dx = malloc(N * D * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.update_exp = false;
    arb_update_state st = {0};
    for (int s = 0; s < 60; s++) {
        arb_test_fill_f32(x, (size_t)(N * D), 50 + (uint64_t)s, -1.0f, 1.0f);
        ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(&g, x, N, 1e-6f, y, rstd));
        for (int64_t t = 0; t < N; t++)
            for (int64_t i = 0; i < D; i++)
                dy[t * D + i] = i < D / 2 ? y[t * D + i] : -0.1f * (x[t * D + i] > 0 ? 1.0f : -1.0f);
        p.step = (uint64_t)s;
        ARB_ASSERT_OK(arb_ternary_rmsnorm_backward_update(&g, x, rstd, dy, N, dx, &p, &st, NULL));
    }
    for (int64_t i = 0; i < D; i++) assert_int_equal(arb_ternary_get(&g, 0, i), i < D / 2 ? 0 : 1);
    free(x), free(y), free(dy), free(dx);
    arb_ternary_free(&g);
}

static void run(arb_ternary *g, int threads, float *dx_out) {
    const int64_t N = 700, D = g->cols;
    float *x = malloc(N * D * sizeof(float)), *y = malloc(N * D * sizeof(float)), *rstd = malloc(N * sizeof(float));
    float *dy = malloc(N * D * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.eta = 40.0f;
    p.exp_threshold = 2;
    arb_update_state st = {0};
    arb_set_num_threads(threads);
    for (int s = 0; s < 5; s++) {
        arb_test_fill_f32(x, (size_t)(N * D), 10 + (uint64_t)s, -1.0f, 1.0f);
        arb_test_fill_f32(dy, (size_t)(N * D), 20 + (uint64_t)s, -1.0f, 1.0f);
        ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(g, x, N, 1e-6f, y, rstd));
        p.step = (uint64_t)s;
        ARB_ASSERT_OK(arb_ternary_rmsnorm_backward_update(g, x, rstd, dy, N, dx_out, &p, &st, NULL));
    }
    arb_set_num_threads(0);
    free(x), free(y), free(rstd), free(dy);
}

static void test_thread_determinism(void **state) {
    (void)state;
    const int64_t D = 257;
    arb_ternary a, b;
    make_gain(&a, D, 8);
    make_gain(&b, D, 8);
    float *da = malloc(700 * D * sizeof(float)), *db = malloc(700 * D * sizeof(float));
    uint8_t before[17 * 64];
    memcpy(before, a.trits, sizeof before);
    run(&a, 1, da);
    run(&b, 2, db);
    assert_memory_equal(a.trits, b.trits, sizeof before);
    assert_memory_equal(a.accum, b.accum, (size_t)D);
    assert_int_equal(a.exp[0], b.exp[0]);
    assert_int_equal(a.exp_evidence[0], b.exp_evidence[0]);
    assert_memory_equal(da, db, 700 * D * sizeof(float));
    assert_memory_not_equal(before, a.trits, sizeof before); /* it did move */
    free(da), free(db);
    arb_ternary_free(&a);
    arb_ternary_free(&b);
}

static void test_errors(void **state) {
    (void)state;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, 2, 8, ARB_TERNARY_GAIN, 1, arb_cpu()));
    float x[16] = {0}, y[16], r[2];
    assert_int_equal(arb_ternary_rmsnorm_forward(&w, x, 2, 1e-6f, y, r), ARB_ERR_SHAPE); /* gain must be 1 x dim */
    arb_ternary_free(&w);
    ARB_ASSERT_OK(arb_ternary_init(&w, 1, 8, ARB_TERNARY_GAIN, 1, arb_cpu()));
    assert_int_equal(arb_ternary_rmsnorm_forward(&w, x, 2, -1.0f, y, r), ARB_ERR_INVALID_ARG);
    ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(&w, x, 2, 1e-6f, y, r)); /* zero rows are fine */
    for (int i = 0; i < 16; i++) assert_true(y[i] == 0.0f);
    float dy[16] = {0}, dx[16];
    dy[3] = NAN;
    x[3] = 1.0f;
    arb_update_params p = arb_update_params_default();
    arb_update_state st = {0};
    assert_int_equal(arb_ternary_rmsnorm_backward_update(&w, x, r, dy, 2, dx, &p, &st, NULL), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_rmsnorm_backward_update(&w, x, r, dy, 2, dx, &p, NULL, NULL), ARB_ERR_INVALID_ARG);
    arb_ternary_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_and_dx),      cmocka_unit_test(test_gain_gradient_vs_f64),
        cmocka_unit_test(test_gain_update_sign),    cmocka_unit_test(test_thread_determinism),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
