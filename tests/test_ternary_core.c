/* Ternary tensor basics: the tile16 layout bit for bit (against the header's formula, written
 * out independently here), padding, randomize, refresh (nnz, scale vs float64), state bytes,
 * int8 row quantization vs a float64 reference, the audit's seed format, argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const int64_t k_shapes[][2] = {{1, 1}, {1, 17}, {17, 1}, {16, 16}, {17, 33}, {31, 47}, {5, 70}, {40, 129}};
#define NSHAPES (sizeof k_shapes / sizeof k_shapes[0])

/* The header's layout, spelled out: byte (rb*(cols_pad/16)+kb)*64 + j, bits 2g, with
 * j = 4*(r%16) + (c%16)%4 and g = (c%16)/4. */
static int layout_code(const arb_ternary *w, int64_t r, int64_t c) {
    int64_t rb = r / 16, kb = c / 16, rr = r % 16, cc = c % 16;
    size_t off = (size_t)(rb * (w->cols_pad / 16) + kb) * 64 + (size_t)(4 * rr + cc % 4);
    return (w->trits[off] >> (2 * (cc / 4))) & 3;
}

static void test_get_set_layout(void **state) {
    (void)state;
    for (size_t s = 0; s < NSHAPES; s++) {
        int64_t R = k_shapes[s][0], C = k_shapes[s][1];
        arb_ternary w;
        ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_LINEAR, (int32_t)s, arb_cpu()));
        assert_int_equal(w.rows_pad % 16, 0);
        assert_int_equal(w.cols_pad % 16, 0);
        assert_true(w.rows_pad >= R && w.rows_pad < R + 16 && w.cols_pad >= C && w.cols_pad < C + 16);
        /* fresh tensor: every code (padding included) is 1 = trit 0 */
        for (int64_t r = 0; r < w.rows_pad; r++)
            for (int64_t c = 0; c < w.cols_pad; c++) assert_int_equal(layout_code(&w, r, c), 1);
        int8_t *want = malloc((size_t)(R * C));
        arb_rng_key k = arb_rng_key_make(99, (uint64_t)s);
        for (int64_t i = 0; i < R * C; i++) want[i] = (int8_t)(arb_rand_u32(k, (uint32_t)i) % 3) - 1;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) arb_ternary_set(&w, r, c, want[r * C + c]);
        for (int64_t r = 0; r < w.rows_pad; r++) {
            for (int64_t c = 0; c < w.cols_pad; c++) {
                int expect = (r < R && c < C) ? want[r * C + c] : 0;
                assert_int_equal(layout_code(&w, r, c), expect + 1);
                if (r < R && c < C) assert_int_equal(arb_ternary_get(&w, r, c), expect);
            }
        }
        /* the row word: 32-bit word at byte 4*(r%16) of a tile, column 4g+c at bits 2g + 8c */
        for (int64_t r = 0; r < R; r++) {
            for (int64_t kb = 0; kb < w.cols_pad / 16; kb++) {
                uint32_t word;
                memcpy(&word, w.trits + (size_t)((r / 16) * (w.cols_pad / 16) + kb) * 64 + 4 * (r % 16), 4);
                for (int g = 0; g < 4; g++)
                    for (int c = 0; c < 4; c++) {
                        int64_t col = kb * 16 + 4 * g + c;
                        int expect = col < C ? want[r * C + col] : 0;
                        assert_int_equal((int)((word >> (2 * g + 8 * c)) & 3) - 1, expect);
                    }
            }
        }
        /* code 3 never occurs */
        for (size_t b = 0; b < (size_t)(w.rows_pad * w.cols_pad / 4); b++)
            for (int g = 0; g < 4; g++) assert_int_not_equal((w.trits[b] >> (2 * g)) & 3, 3);
        free(want);
        arb_ternary_free(&w);
        assert_null(w.trits);
    }
}

static void test_randomize(void **state) {
    (void)state;
    arb_ternary a, b, c, g;
    ARB_ASSERT_OK(arb_ternary_init(&a, 67, 129, ARB_TERNARY_LINEAR, 3, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_init(&b, 67, 129, ARB_TERNARY_LINEAR, 3, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_init(&c, 67, 129, ARB_TERNARY_LINEAR, 4, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_init(&g, 1, 45, ARB_TERNARY_GAIN, 5, arb_cpu()));
    memset(a.accum, 7, 67 * 129);
    a.exp[3] = 4;
    ARB_ASSERT_OK(arb_ternary_randomize(&a, 1234));
    ARB_ASSERT_OK(arb_ternary_randomize(&b, 1234));
    ARB_ASSERT_OK(arb_ternary_randomize(&c, 1234));
    ARB_ASSERT_OK(arb_ternary_randomize(&g, 1234));
    int64_t cnt[3] = {0, 0, 0}, same_c = 0, n = 67 * 129;
    for (int64_t r = 0; r < 67; r++)
        for (int64_t col = 0; col < 129; col++) {
            int t = arb_ternary_get(&a, r, col);
            cnt[t + 1]++;
            assert_int_equal(t, arb_ternary_get(&b, r, col));
            same_c += t == arb_ternary_get(&c, r, col);
            /* the documented draw: multiply-shift of arb_rand_u32(key(seed, id), r*cols + c) */
            uint32_t u = arb_rand_u32(arb_rng_key_make(1234, 3), (uint32_t)(r * 129 + col));
            assert_int_equal(t, (int)(((uint64_t)u * 3) >> 32) - 1);
        }
    for (int i = 0; i < 3; i++) assert_true(fabs((double)cnt[i] / (double)n - 1.0 / 3) < 0.03);
    assert_true(fabs((double)same_c / (double)n - 1.0 / 3) < 0.03); /* other id: independent */
    for (int64_t i = 0; i < n; i++) assert_int_equal(a.accum[i], 0);
    assert_int_equal(a.exp[3], 0);
    for (int64_t col = 0; col < 45; col++) assert_int_equal(arb_ternary_get(&g, 0, col), 1);
    assert_int_equal(g.nnz[0], 45);
    assert_true(g.scale[0] == 1.0f);
    for (int64_t r = 0; r < a.rows_pad; r++)
        for (int64_t col = 0; col < a.cols_pad; col++)
            if (r >= 67 || col >= 129) assert_int_equal(layout_code(&a, r, col), 1);
    arb_ternary_free(&a);
    arb_ternary_free(&b);
    arb_ternary_free(&c);
    arb_ternary_free(&g);
}

static void test_refresh_scale(void **state) {
    (void)state;
    /* exp_mult against 2^(e/4) in float64: within one float rounding */
    for (int e = ARB_EXP_MIN; e <= ARB_EXP_MAX; e++) {
        double want = exp2((double)e / 4.0);
        assert_true(fabs((double)arb_ternary_exp_mult(e) - want) <= want * 0x1p-24);
    }
    const arb_ternary_kind kinds[3] = {ARB_TERNARY_LINEAR, ARB_TERNARY_EMBED, ARB_TERNARY_GAIN};
    for (int k = 0; k < 3; k++) {
        int64_t R = kinds[k] == ARB_TERNARY_GAIN ? 1 : 23, C = 37;
        arb_ternary w;
        ARB_ASSERT_OK(arb_ternary_init(&w, R, C, kinds[k], 9, arb_cpu()));
        ARB_ASSERT_OK(arb_ternary_randomize(&w, 5));
        arb_ternary_set(&w, 0, 5, 0);
        if (R > 1)
            for (int64_t c = 0; c < C; c++) arb_ternary_set(&w, 1, c, 0); /* an all-zero row */
        for (int64_t r = 0; r < R; r++) w.exp[r] = (int8_t)((r * 7) % 49 - 24);
        ARB_ASSERT_OK(arb_ternary_refresh(&w));
        for (int64_t r = 0; r < R; r++) {
            int nnz = 0;
            for (int64_t c = 0; c < C; c++) nnz += arb_ternary_get(&w, r, c) != 0;
            assert_int_equal(w.nnz[r], nnz);
            double n1 = nnz > 0 ? nnz : 1;
            double base = kinds[k] == ARB_TERNARY_LINEAR ? 1.0 / sqrt(n1)
                          : kinds[k] == ARB_TERNARY_EMBED ? sqrt((double)C / n1) : 1.0;
            double want = base * exp2((double)w.exp[r] / 4.0);
            assert_true(fabs((double)w.scale[r] - want) <= want * 3e-7);
        }
        w.exp[0] = 25; /* out of range: refused */
        assert_int_equal(arb_ternary_refresh(&w), ARB_ERR_INVALID_ARG);
        arb_ternary_free(&w);
    }
}

static void test_state_bytes(void **state) {
    (void)state;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, 384, 1536, ARB_TERNARY_LINEAR, 0, arb_cpu()));
    assert_int_equal(arb_ternary_state_bytes(&w), 384 * 1536 / 4 + 384 * 1536 + 2 * 384);
    assert_int_equal(arb_ternary_buffer_bytes(&w), 384 * 4);
    /* ≤ 1.26 bytes per weight for cols ≥ 200 when the shape is a multiple of 16 */
    assert_true((double)arb_ternary_state_bytes(&w) / (384.0 * 1536.0) <= 1.26);
    arb_ternary_free(&w);
    ARB_ASSERT_OK(arb_ternary_init(&w, 17, 33, ARB_TERNARY_LINEAR, 0, arb_cpu()));
    assert_int_equal(arb_ternary_state_bytes(&w), 32 * 48 / 4 + 17 * 33 + 2 * 17); /* padded trits */
    arb_ternary_free(&w);
}

/* float64 reference: q = round-half-even(x · inv) where inv = 127/amax rounded to float (the
 * documented formula); the product is formed exactly in double here. */
static void test_quantize_rows(void **state) {
    (void)state;
    const int64_t rows = 9, cols = 37, ld = 48;
    float *x = malloc(rows * cols * sizeof(float)), *sc = malloc(rows * sizeof(float));
    int8_t *q = malloc(rows * ld);
    arb_test_fill_f32(x, (size_t)(rows * cols), 11, -3.0f, 3.0f);
    for (int64_t c = 0; c < cols; c++) x[2 * cols + c] = 0.0f; /* zero row */
    for (int64_t c = 0; c < cols; c++) x[3 * cols + c] *= 1e-30f; /* tiny row */
    /* ties: amax 127 gives inv = 1 exactly; .5 values must round to even */
    const float ties[] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.5f, 126.5f, -126.5f};
    for (int64_t c = 0; c < cols; c++) x[4 * cols + c] = c < 10 ? ties[c] : 0.25f;
    const int want_ties[] = {127, 2, 4, -2, -4, 0, 0, 2, 126, -126};
    memset(q, 0x5A, rows * ld);
    ARB_ASSERT_OK(arb_quantize_rows(x, rows, cols, ld, q, sc));
    for (int64_t r = 0; r < rows; r++) {
        double amax = 0;
        for (int64_t c = 0; c < cols; c++) amax = fmax(amax, fabs((double)x[r * cols + c]));
        assert_true(fabs((double)sc[r] - amax / 127.0) <= amax / 127.0 * 1e-6);
        float inv = amax > 0 ? 127.0f / (float)amax : 0.0f;
        for (int64_t c = 0; c < ld; c++) {
            int got = q[r * ld + c];
            if (c >= cols || amax == 0) {
                assert_int_equal(got, 0);
                continue;
            }
            double p = (double)x[r * cols + c] * (double)inv;
            double want = nearbyint(p); /* default mode: ties to even */
            want = fmin(127, fmax(-127, want));
            if (got != (int)want) {
                /* only where the float product rounds onto/off a .5 boundary */
                double frac = fabs(p - floor(p) - 0.5);
                assert_true(frac < 1e-5);
                assert_true(abs(got - (int)want) == 1);
            }
        }
    }
    assert_true(sc[2] == 0.0f);
    for (int c = 0; c < 10; c++) assert_int_equal(q[4 * ld + c], want_ties[c]);
    assert_int_equal(q[4 * ld + 10], 0); /* 0.25 → 0 */
    /* non-finite input is refused */
    x[5 * cols + 3] = NAN;
    assert_int_equal(arb_quantize_rows(x, rows, cols, ld, q, sc), ARB_ERR_INVALID_ARG);
    x[5 * cols + 3] = INFINITY;
    assert_int_equal(arb_quantize_rows(x, rows, cols, ld, q, sc), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_quantize_rows(x, rows, cols, cols - 1, q, sc), ARB_ERR_SHAPE);
    free(x);
    free(sc);
    free(q);
}

static void test_audit_format(void **state) {
    (void)state;
    arb_audit a;
    memset(&a, 0, sizeof a);
    /* the seed's figures: sidecars.md §6: (22,056,576 + 61,513,920) × 4 B = 318.796 MiB */
    a.ternary_weights = 42669632;
    a.ternary_state_bytes = 55.72 * 1048576.0;
    a.frozen_float_tensors = 433;
    a.frozen_float_bytes = (22056576.0 + 61513920.0) * 4.0;
    a.float_buffer_tensors = 406;
    char buf[512];
    assert_string_equal(arb_audit_format(&a, buf, sizeof buf),
                        "logical ternary weights: 42,669,632\n"
                        "ternary training state: 55.72 MB\n"
                        "trainable float params: 0 tensors, 0.00 MB\n"
                        "frozen float params: 433 tensors, 318.80 MB\n"
                        "float buffers: 406 tensors, 0.00 MB\n");
    /* adding tensors counts trits, state and the scale buffer */
    memset(&a, 0, sizeof a);
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, 1024, 1024, ARB_TERNARY_LINEAR, 1, arb_cpu()));
    arb_audit_add_ternary(&a, &w);
    arb_audit_add_ternary(&a, &w);
    assert_int_equal(a.ternary_weights, 2 * 1024 * 1024);
    assert_true(a.ternary_state_bytes == 2.0 * (262144 + 1048576 + 2048));
    assert_int_equal(a.float_buffer_tensors, 2);
    arb_audit_format(&a, buf, sizeof buf);
    assert_non_null(strstr(buf, "logical ternary weights: 2,097,152\n"));
    assert_non_null(strstr(buf, "ternary training state: 2.50 MB\n")); /* 2 × 1,312,768 B */
    assert_non_null(strstr(buf, "float buffers: 2 tensors, 0.01 MB\n"));
    arb_ternary_free(&w);
    /* small numbers and truncation */
    memset(&a, 0, sizeof a);
    a.ternary_weights = 999;
    assert_non_null(strstr(arb_audit_format(&a, buf, sizeof buf), "weights: 999\n"));
    a.ternary_weights = 1000;
    assert_non_null(strstr(arb_audit_format(&a, buf, sizeof buf), "weights: 1,000\n"));
    char tiny[8];
    arb_audit_format(&a, tiny, sizeof tiny);
    assert_int_equal(strlen(tiny), 7);
}

static void test_errors_and_defaults(void **state) {
    (void)state;
    arb_ternary w;
    assert_int_equal(arb_ternary_init(&w, 0, 5, ARB_TERNARY_LINEAR, 0, arb_cpu()), ARB_ERR_SHAPE);
    assert_int_equal(arb_ternary_init(&w, 5, -1, ARB_TERNARY_LINEAR, 0, arb_cpu()), ARB_ERR_SHAPE);
    assert_int_equal(arb_ternary_init(&w, 5, 5, ARB_TERNARY_LINEAR, -1, arb_cpu()), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_init(&w, 5, 5, ARB_TERNARY_LINEAR, ARB_TERNARY_MAX_ID, arb_cpu()), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_init(&w, 5, 5, (arb_ternary_kind)7, 0, arb_cpu()), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_ternary_init(&w, (int64_t)1 << 40, 5, ARB_TERNARY_LINEAR, 0, arb_cpu()), ARB_ERR_SHAPE);
    assert_int_equal(arb_ternary_init(NULL, 5, 5, ARB_TERNARY_LINEAR, 0, arb_cpu()), ARB_ERR_INVALID_ARG);
#ifndef ARB_HAVE_CUDA
    assert_int_equal(arb_ternary_init(&w, 5, 5, ARB_TERNARY_LINEAR, 0, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
    assert_non_null(strstr(arb_last_error(), "CUDA"));
#endif
    arb_ternary_free(NULL);
    arb_update_params p = arb_update_params_default();
    assert_true(p.eta == 6.0f);
    assert_int_equal(p.threshold, 64);
    assert_int_equal(p.leak_shift, 5);
    assert_true(p.eta_exp == 1.0f);
    assert_int_equal(p.exp_threshold, 32);
    assert_true(p.update_exp);
    /* RNG streams of steps never collide with init streams, nor across purposes */
    arb_rng_key k0 = arb_update_key(1, 0, 3, ARB_RNG_GRAD), k1 = arb_update_key(1, 0, 3, ARB_RNG_PRESSURE);
    arb_rng_key ki = arb_rng_key_make(1, 3);
    assert_true(k0.k0 != k1.k0 || k0.k1 != k1.k1);
    assert_true(k0.k0 != ki.k0 || k0.k1 != ki.k1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_set_layout), cmocka_unit_test(test_randomize),
        cmocka_unit_test(test_refresh_scale),  cmocka_unit_test(test_state_bytes),
        cmocka_unit_test(test_quantize_rows),  cmocka_unit_test(test_audit_format),
        cmocka_unit_test(test_errors_and_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
