/* Ternary embedding: forward against trit·scale in float64, the integer gradient that feeds
 * the pressure against a float64 scatter-add, the sign of the update, bit-identical state for
 * 1 and 2 threads, and refusal of bad indices (state untouched). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ternary/update_internal.h"

static void make_table(arb_ternary *w, int64_t rows, int64_t cols, uint64_t seed) {
    ARB_ASSERT_OK(arb_ternary_init(w, rows, cols, ARB_TERNARY_EMBED, 11, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(w, seed));
    for (int64_t r = 0; r < rows; r++) w->exp[r] = (int8_t)(r % 5 - 2);
    ARB_ASSERT_OK(arb_ternary_refresh(w));
}

static void fill_idx(int32_t *idx, int64_t n, int64_t rows, uint64_t seed) {
    arb_rng_key k = arb_rng_key_make(seed, 1);
    for (int64_t t = 0; t < n; t++) idx[t] = (int32_t)(arb_rand_u32(k, (uint32_t)t) % (uint32_t)rows);
}

static void test_forward(void **state) {
    (void)state;
    const int64_t R = 37, C = 29, N = 50;
    arb_ternary w;
    make_table(&w, R, C, 3);
    int32_t idx[50];
    fill_idx(idx, N, R, 4);
    float *out = malloc(N * C * sizeof(float));
    ARB_ASSERT_OK(arb_ternary_embedding_forward(&w, idx, N, out));
    for (int64_t t = 0; t < N; t++) {
        int64_t r = idx[t];
        int nnz = 0;
        for (int64_t c = 0; c < C; c++) nnz += arb_ternary_get(&w, r, c) != 0;
        double s = sqrt((double)C / (nnz ? nnz : 1)) * exp2(w.exp[r] / 4.0);
        for (int64_t c = 0; c < C; c++) {
            double want = arb_ternary_get(&w, r, c) * s;
            assert_true(fabs(out[t * C + c] - want) <= 1e-6 * fabs(want) + 1e-12);
        }
    }
    idx[7] = (int32_t)R;
    assert_int_equal(arb_ternary_embedding_forward(&w, idx, N, out), ARB_ERR_INVALID_ARG);
    idx[7] = -1;
    assert_int_equal(arb_ternary_embedding_forward(&w, idx, N, out), ARB_ERR_INVALID_ARG);
    free(out);
    arb_ternary_free(&w);
}

static void test_gradient_vs_f64(void **state) {
    (void)state;
    const int64_t R = 23, C = 41, N = 300;
    arb_ternary w;
    make_table(&w, R, C, 5);
    int32_t *idx = malloc(N * sizeof(int32_t));
    float *dy = malloc(N * C * sizeof(float));
    fill_idx(idx, N, R, 6);
    arb_test_fill_f32(dy, (size_t)(N * C), 7, -1.0f, 1.0f);
    double *g64 = calloc(R * C, sizeof(double)), *avg = calloc(R * C, sizeof(double));
    for (int64_t t = 0; t < N; t++)
        for (int64_t c = 0; c < C; c++) g64[idx[t] * C + c] += (double)dy[t * C + c] * w.scale[idx[t]];
    int32_t *g = malloc(R * C * sizeof(int32_t));
    float cs[23];
    const int reps = 32;
    double e1 = 0, den = 0;
    for (int rep = 0; rep < reps; rep++) {
        ARB_ASSERT_OK(arb_upd_embedding_grad(&w, idx, dy, N, arb_update_key(1, (uint64_t)rep, 11, ARB_RNG_GRAD), g, cs));
        for (int64_t j = 0; j < R * C; j++) {
            double v = (double)cs[j / C] * g[j];
            avg[j] += v / reps;
            if (rep == 0) e1 += (v - g64[j]) * (v - g64[j]), den += g64[j] * g64[j];
        }
    }
    e1 = sqrt(e1 / den);
    double ea = 0;
    for (int64_t j = 0; j < R * C; j++) ea += (avg[j] - g64[j]) * (avg[j] - g64[j]);
    ea = sqrt(ea / den);
    assert_true(e1 < 0.02);      /* int8 per-tensor rounding noise of one draw */
    assert_true(ea < e1 / 3.0);  /* unbiased: averaging 32 draws shrinks it */
    free(idx), free(dy), free(g64), free(avg), free(g);
    arb_ternary_free(&w);
}

/* Rows with dy > 0 go down, dy < 0 up; rows no token touched keep their trits (leak only). */
static void test_update_sign(void **state) {
    (void)state;
    const int64_t R = 6, C = 20, N = 12;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_EMBED, 12, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&w, 9));
    int8_t row5[20];
    for (int64_t c = 0; c < C; c++) row5[c] = (int8_t)arb_ternary_get(&w, 5, c);
    int32_t idx[12];
    float dy[12 * 20];
    for (int64_t t = 0; t < N; t++) {
        idx[t] = (int32_t)(t % 3); /* rows 0, 1, 2 */
        for (int64_t c = 0; c < C; c++) dy[t * C + c] = idx[t] == 0 ? 0.5f : (idx[t] == 1 ? -0.5f : 0.0f);
    }
    arb_update_params p = arb_update_params_default();
    p.update_exp = false;
    arb_update_state st = {0};
    for (int s = 0; s < 40; s++) {
        p.step = (uint64_t)s;
        ARB_ASSERT_OK(arb_ternary_embedding_backward_update(&w, idx, dy, N, &p, &st, NULL));
    }
    for (int64_t c = 0; c < C; c++) {
        assert_int_equal(arb_ternary_get(&w, 0, c), -1);
        assert_int_equal(arb_ternary_get(&w, 1, c), 1);
        assert_int_equal(arb_ternary_get(&w, 5, c), row5[c]);
    }
    arb_ternary_free(&w);
}

static void run_steps(arb_ternary *w, int threads, arb_update_stats *last) {
    const int64_t N = 500;
    int32_t *idx = malloc(N * sizeof(int32_t));
    float *dy = malloc(N * w->cols * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.eta = 30.0f;
    p.exp_threshold = 3;
    p.seed = 99;
    arb_update_state st = {0};
    arb_set_num_threads(threads);
    for (int s = 0; s < 6; s++) {
        fill_idx(idx, N, w->rows, 100 + (uint64_t)s);
        arb_test_fill_f32(dy, (size_t)(N * w->cols), 200 + (uint64_t)s, -1.0f, 1.0f);
        p.step = (uint64_t)s;
        ARB_ASSERT_OK(arb_ternary_embedding_backward_update(w, idx, dy, N, &p, &st, last));
    }
    arb_set_num_threads(0);
    free(idx), free(dy);
}

static void test_thread_determinism(void **state) {
    (void)state;
    const int64_t R = 203, C = 333; /* big enough for the parallel paths */
    arb_ternary a, b;
    make_table(&a, R, C, 21);
    make_table(&b, R, C, 21);
    arb_update_stats sa, sb;
    run_steps(&a, 1, &sa);
    run_steps(&b, 2, &sb);
    assert_true(sa.flips > 0);
    assert_int_equal(sa.flips, sb.flips);
    assert_int_equal(sa.zeros, sb.zeros);
    assert_memory_equal(a.trits, b.trits, (size_t)(a.rows_pad * a.cols_pad / 4));
    assert_memory_equal(a.accum, b.accum, (size_t)(R * C));
    assert_memory_equal(a.exp, b.exp, (size_t)R);
    assert_memory_equal(a.exp_evidence, b.exp_evidence, (size_t)R);
    assert_memory_equal(a.scale, b.scale, (size_t)R * sizeof(float));
    int moved = 0;
    for (int64_t r = 0; r < R; r++) moved += a.exp[r] != (int8_t)(r % 5 - 2);
    assert_true(moved > 0); /* E was exercised too */
    arb_ternary_free(&a);
    arb_ternary_free(&b);
}

static void test_bad_input_untouched(void **state) {
    (void)state;
    arb_ternary w;
    make_table(&w, 9, 17, 2);
    uint8_t before[64 * 2];
    memcpy(before, w.trits, sizeof before);
    int32_t idx[3] = {1, 9, 2};
    float dy[3 * 17] = {0};
    arb_update_params p = arb_update_params_default();
    arb_update_state st = {0};
    assert_int_equal(arb_ternary_embedding_backward_update(&w, idx, dy, 3, &p, &st, NULL), ARB_ERR_INVALID_ARG);
    idx[1] = 3;
    dy[4] = INFINITY;
    assert_int_equal(arb_ternary_embedding_backward_update(&w, idx, dy, 3, &p, &st, NULL), ARB_ERR_INVALID_ARG);
    assert_memory_equal(before, w.trits, sizeof before);
    assert_int_equal(arb_ternary_embedding_backward_update(&w, idx, dy, 3, NULL, &st, NULL), ARB_ERR_INVALID_ARG);
    arb_ternary_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward),          cmocka_unit_test(test_gradient_vs_f64),
        cmocka_unit_test(test_update_sign),      cmocka_unit_test(test_thread_determinism),
        cmocka_unit_test(test_bad_input_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
