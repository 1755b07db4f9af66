/* The integer update rule: arb_trit_step's dynamics (steady push rate computed analytically,
 * noise bound, hysteresis, saturation, no drift at the rails), the fixed-point pressure
 * (unbiased stochastic rounding, plan), the scalar reference of the fused linear
 * backward+update (its gradient vs float64, the sign trap, a regression that must fit, the E
 * rule finding the right scale), and determinism. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ternary/update_internal.h"

enum { T = 64, K = 5 };

/* Steps for a steady push p > 0 (q = −p: up) to take A from 0 to T, in closed form per leak
 * band: while A is in [j·2^k, (j+1)·2^k) the leak is j, so A grows by p − j per step. */
static int analytic_steps(int thr, int k, int p) {
    int a = 0, t = 0;
    while (a < thr) {
        int j = a >> k, inc = (p > 127 ? 127 : p) - j;
        if (inc <= 0) return -1; /* stalls below T: the leak's dead zone */
        int target = ((j + 1) << k) < thr ? ((j + 1) << k) : thr;
        if (a + inc > 127) return t + 1;
        int n = (target - a + inc - 1) / inc;
        a += n * inc;
        t += n;
    }
    return t;
}

static void test_steady_push_rate(void **state) {
    (void)state;
    const int ps[] = {1, 2, 3, 4, 5, 8, 16, 63, 64, 127};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        int p = ps[i], want = analytic_steps(T, K, p);
        int trit = 0, got = -1;
        int8_t a = 0;
        for (int s = 1; s <= 5000; s++) {
            int nt = arb_trit_step(trit, &a, -p, T, K);
            if (nt != trit) {
                got = s;
                assert_int_equal(nt, 1); /* pushed up */
                break;
            }
        }
        assert_int_equal(got, want);
        if (p * (1 << K) < T) assert_int_equal(got, -1); /* dead zone: |q| < T / 2^k never moves */
    }
    /* the same in the other direction */
    int trit = 0;
    int8_t a = 0;
    int s = 0;
    while (trit == 0 && s < 100) trit = arb_trit_step(trit, &a, 8, T, K), s++;
    assert_int_equal(trit, -1);
    assert_int_equal(s, analytic_steps(T, K, 8));
}

/* q = stochastic_round(mu + sigma·N(0,1)), pushing up when positive. */
static double moved_fraction(double mu, double sigma, int nw, int steps, double *flip_rate) {
    arb_rng_key k = arb_rng_key_make(77, (uint64_t)(mu * 100 + sigma));
    int64_t moved = 0, flips = 0;
    for (int w = 0; w < nw; w++) {
        int t = 0, ever = 0;
        int8_t a = 0;
        for (int s = 0; s < steps; s++) {
            uint32_t idx = (uint32_t)(w * steps + s);
            double g = mu + sigma * arb_rand_normal(k, idx);
            int q = (int)floor(g + arb_rand_unit(k, idx ^ 0x80000000u));
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            int nt = arb_trit_step(t, &a, -q, T, K);
            flips += nt != t;
            ever |= nt != t;
            t = nt;
        }
        moved += ever;
    }
    if (flip_rate) *flip_rate = (double)flips / ((double)nw * steps);
    return (double)moved / nw;
}

static void test_noise_rarely_moves(void **state) {
    (void)state;
    /* Pure noise of RMS sigma: the leaky A has stationary sd ≈ sigma·sqrt(2^k / (2 − 2^-k)) ≈ 4·sigma.
     * sigma 2: T = 8 sd — nothing may move. sigma 4: T = 4 sd — a flip rate under 1e-3 per step. */
    double rate;
    assert_true(moved_fraction(0.0, 2.0, 4096, 256, &rate) == 0.0);
    double m4 = moved_fraction(0.0, 4.0, 4096, 256, &rate);
    assert_true(rate < 1e-3);
    /* a consistent push above the dead zone (mean 2.5 > T/2^k = 2) under the same noise moves
     * nearly every weight: the rule integrates evidence. */
    double sig = moved_fraction(2.5, 4.0, 4096, 256, NULL);
    assert_true(sig > 0.95);
    assert_true(sig > 5 * m4);
}

static void test_hysteresis(void **state) {
    (void)state;
    /* k = 15: no leak in this range, so evidence adds exactly. */
    int trit = 0;
    int8_t a = 0;
    for (int s = 0; s < 7; s++) trit = arb_trit_step(trit, &a, -8, T, 15);
    assert_int_equal(trit, 0);
    assert_int_equal(a, 56);
    trit = arb_trit_step(trit, &a, -8, T, 15); /* 64: step up, remainder 0 */
    assert_int_equal(trit, 1);
    assert_int_equal(a, 0);
    /* undoing needs a full T of opposite evidence: 8 steps of +8, not fewer */
    int s = 0;
    while (trit == 1) trit = arb_trit_step(trit, &a, 8, T, 15), s++;
    assert_int_equal(s, T / 8);
    assert_int_equal(trit, 0);
    /* remainder is kept (error feedback): overshoot carries into the next step */
    trit = 0;
    a = 60;
    trit = arb_trit_step(trit, &a, -10, T, 15);
    assert_int_equal(trit, 1);
    assert_int_equal(a, 6);
}

static void test_saturation_and_rails(void **state) {
    (void)state;
    arb_rng_key k = arb_rng_key_make(3, 3);
    int trit = 0;
    int8_t a = 0;
    for (uint32_t s = 0; s < 200000; s++) {
        int q = (int)(arb_rand_u32(k, s) % 255) - 127;
        if (s % 1000 < 50) q = 127;
        else if (s % 1000 < 100) q = -127;
        int kshift = (int)(s % 7);
        trit = arb_trit_step(trit, &a, q, T, kshift);
        assert_true(a >= -127); /* int8: ≤ 127 by type; −128 must never appear */
        assert_true(trit >= -1 && trit <= 1);
        if (trit == 1) assert_true(a <= T);
        if (trit == -1) assert_true(a >= -T);
    }
    /* no drift at +1: however long the push, A stays ≤ T, so going back takes exactly 2T */
    trit = 1;
    a = 0;
    for (int s = 0; s < 1000; s++) trit = arb_trit_step(trit, &a, -100, T, 15);
    assert_int_equal(trit, 1);
    assert_int_equal(a, T);
    int s = 0;
    while (trit == 1) trit = arb_trit_step(trit, &a, 8, T, 15), s++;
    assert_int_equal(s, 2 * T / 8);
    trit = -1;
    a = 0;
    for (int i = 0; i < 1000; i++) trit = arb_trit_step(trit, &a, 100, T, 15);
    assert_int_equal(trit, -1);
    assert_int_equal(a, -T);
    /* leak truncates toward zero, symmetric */
    a = -33;
    trit = arb_trit_step(0, &a, 0, T, K);
    assert_int_equal(a, -32);
    a = 33;
    trit = arb_trit_step(0, &a, 0, T, K);
    assert_int_equal(a, 32);
    /* the leak (shifts in arb_trit_step) is C's truncating division by 2^k for every A and k */
    for (int k = 0; k <= 15; k++)
        for (int v = -127; v <= 127; v++) {
            a = (int8_t)v;
            trit = arb_trit_step(1, &a, 0, 128, k); /* T = 128 > any clamped A: no step, no rail */
            assert_int_equal(trit, 1);
            assert_int_equal(a, v - v / (1 << k));
        }
}

static void test_pressure_unbiased(void **state) {
    (void)state;
    arb_rng_key k = arb_rng_key_make(9, 9);
    /* g·m / 2^S = ±2.3 and ±0.3 at several shifts: mean of q matches, values bracket it */
    const int shifts[] = {1, 7, 20, 32, 33, 45, 62};
    for (size_t si = 0; si < sizeof shifts / sizeof shifts[0]; si++) {
        int S = shifts[si];
        const double targets[] = {2.3, -2.3, 0.3, -0.3, 126.9};
        for (int ti = 0; ti < 5; ti++) {
            double want = targets[ti];
            if (S < 4 && fabs(want - round(want)) > 0) want = round(want * (1 << S)) / (1 << S);
            /* g = 1000 (or −1000), m = round(|want|/1000 · 2^S) */
            double mf = ldexp(fabs(want) / 1000.0, S);
            int32_t m = (int32_t)llround(mf);
            if (m == 0) continue;
            double exact = (want < 0 ? -1000.0 : 1000.0) * (double)m / ldexp(1.0, S);
            double sum = 0;
            int lo = (int)floor(exact), hi = lo + 1;
            const int N = 200000;
            for (int i = 0; i < N; i++) {
                int q = arb_upd_pressure(want < 0 ? -1000 : 1000, m, S, arb_rand_u32(k, (uint32_t)(i + 1000000 * ti)));
                assert_true(q == lo || q == hi || (q == 127 && hi > 127));
                sum += q;
            }
            assert_true(fabs(sum / N - exact) < 0.01);
        }
    }
    /* clamp */
    assert_int_equal(arb_upd_pressure(INT32_MAX, INT32_MAX, 1, 0), 127);
    assert_int_equal(arb_upd_pressure(-INT32_MAX, INT32_MAX, 1, 0), -127);
    assert_int_equal(arb_upd_pressure(0, 12345, 40, 0xFFFFFFFFu), 0); /* zero gradient: exactly 0 */
}

static void test_plan(void **state) {
    (void)state;
    float c[5] = {1e-3f, 2e-3f, 0.0f, 5e-4f, 1.7e-3f};
    int32_t m[5];
    int S;
    double eta = 6.0, norm = 0.02;
    arb_upd_plan_make(c, 5, eta, norm, m, &S);
    assert_true(S >= 0 && S <= 62);
    int32_t mmax = 0;
    for (int o = 0; o < 5; o++) {
        double ratio = eta * c[o] / (ARB_UPD_RMS_PER_MEANABS * norm);
        assert_true(fabs((double)m[o] - ldexp(ratio, S)) <= 0.5);
        mmax = m[o] > mmax ? m[o] : mmax;
    }
    assert_true(mmax > (1 << 29) && mmax <= (1 << 30)); /* full precision, room in 31 bits */
    assert_int_equal(m[2], 0);
    arb_upd_plan_make(c, 5, eta, 0.0, m, &S); /* no norm yet / zero gradient: leak only */
    for (int o = 0; o < 5; o++) assert_int_equal(m[o], 0);
}

/* ---- the scalar reference of the fused linear update -------------------------------------- */

typedef struct lin_case {
    int64_t rows, cols, n;
    float *x, *xs, *y, *dy;
    int8_t *xq;
} lin_case;

static void lin_alloc(lin_case *L, int64_t rows, int64_t cols, int64_t n) {
    L->rows = rows, L->cols = cols, L->n = n;
    L->x = malloc(n * cols * sizeof(float));
    L->xs = malloc(n * sizeof(float));
    L->xq = malloc(n * arb_round_up16(cols));
    L->y = malloc(n * rows * sizeof(float));
    L->dy = malloc(n * rows * sizeof(float));
}

static void lin_free(lin_case *L) {
    free(L->x), free(L->xs), free(L->xq), free(L->y), free(L->dy);
}

/* y = xq·xs · (trit·scale)^T in double (independent of the linear helper's kernels) */
static void lin_forward(const arb_ternary *w, const lin_case *L, float *y) {
    for (int64_t t = 0; t < L->n; t++)
        for (int64_t o = 0; o < w->rows; o++) {
            double s = 0;
            for (int64_t i = 0; i < w->cols; i++)
                s += (double)L->xq[t * w->cols_pad + i] * arb_ternary_get(w, o, i);
            y[t * w->rows + o] = (float)(s * L->xs[t] * w->scale[o]);
        }
}

static void lin_batch(lin_case *L, const arb_ternary *w, uint64_t seed) {
    arb_test_fill_f32(L->x, (size_t)(L->n * L->cols), seed, -1.0f, 1.0f);
    ARB_ASSERT_OK(arb_quantize_rows(L->x, L->n, L->cols, w->cols_pad, L->xq, L->xs));
}

static void test_reference_gradient_vs_f64(void **state) {
    (void)state;
    arb_ternary w;
    lin_case L;
    const int64_t R = 19, C = 45, N = 96;
    ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_LINEAR, 2, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&w, 8));
    lin_alloc(&L, R, C, N);
    lin_batch(&L, &w, 1);
    arb_test_fill_f32(L.dy, (size_t)(N * R), 2, -1.0f, 1.0f);
    for (int64_t t = 0; t < N; t++) L.dy[t * R + 3] *= 50.0f; /* a louder column: per-column scales */
    double *g64 = calloc(R * C, sizeof(double)), *avg = calloc(R * C, sizeof(double));
    for (int64_t o = 0; o < R; o++)
        for (int64_t i = 0; i < C; i++)
            for (int64_t t = 0; t < N; t++)
                g64[o * C + i] += (double)L.dy[t * R + o] * w.scale[o] * L.xs[t] * L.xq[t * w.cols_pad + i];
    int32_t *g = malloc(R * C * sizeof(int32_t));
    float c[19];
    const int reps = 32;
    double err1 = 0, den = 0;
    for (int rep = 0; rep < reps; rep++) {
        ARB_ASSERT_OK(arb_upd_linear_grad(&w, L.xq, L.xs, L.dy, N, arb_update_key(5, (uint64_t)rep, 2, ARB_RNG_GRAD), g, c));
        for (int64_t j = 0; j < R * C; j++) {
            double v = (double)c[j / C] * g[j];
            avg[j] += v / reps;
            if (rep == 0) err1 += (v - g64[j]) * (v - g64[j]), den += g64[j] * g64[j];
        }
    }
    double e1 = sqrt(err1 / den), eavg = 0;
    for (int64_t j = 0; j < R * C; j++) eavg += (avg[j] - g64[j]) * (avg[j] - g64[j]);
    eavg = sqrt(eavg / den);
    /* one draw: int8 stochastic rounding noise (a few %); the average of 32 draws: unbiased, so
     * the error shrinks like 1/sqrt(32). */
    assert_true(e1 < 0.05);
    assert_true(eavg < e1 / 3.0);
    free(g64), free(avg), free(g);
    lin_free(&L);
    arb_ternary_free(&w);
}

/* Fit a random ternary teacher with the reference update; returns final/initial loss. */
static double regression(int sign, int steps, double *agree_out) {
    const int64_t R = 24, C = 40, N = 64;
    arb_ternary w, teacher;
    ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_LINEAR, 1, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_init(&teacher, R, C, ARB_TERNARY_LINEAR, 2, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&w, 100));
    ARB_ASSERT_OK(arb_ternary_randomize(&teacher, 100));
    lin_case L;
    lin_alloc(&L, R, C, N);
    float *ys = malloc(N * R * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.seed = 31;
    p.update_exp = false;
    arb_update_state st = {0};
    double first = 0, last = 0;
    for (int s = 0; s < steps; s++) {
        lin_batch(&L, &w, 1000 + (uint64_t)s);
        lin_forward(&w, &L, L.y);
        lin_forward(&teacher, &L, ys);
        double loss = 0;
        for (int64_t j = 0; j < N * R; j++) {
            double d = (double)L.y[j] - ys[j];
            loss += 0.5 * d * d / N;
            L.dy[j] = (float)(sign * d / N);
        }
        if (s < 10) first += loss / 10;
        if (s >= steps - 10) last += loss / 10;
        p.step = (uint64_t)s;
        arb_update_stats stats;
        ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&w, L.xq, L.xs, L.dy, N, &p, &st, &stats));
        assert_int_equal(stats.weights, R * C);
        if (getenv("ARB_TEST_VERBOSE") && s % 20 == 0) printf("step %d loss %.6g norm %g flips %lld\n", s, loss, st.grad_norm, (long long)stats.flips);
    }
    int64_t agree = 0;
    for (int64_t o = 0; o < R; o++)
        for (int64_t i = 0; i < C; i++) agree += arb_ternary_get(&w, o, i) == arb_ternary_get(&teacher, o, i);
    if (agree_out) *agree_out = (double)agree / (R * C);
    free(ys);
    lin_free(&L);
    arb_ternary_free(&w);
    arb_ternary_free(&teacher);
    return last / first;
}

static void test_sign_and_learning(void **state) {
    (void)state;
    double agree;
    double r = regression(+1, 100, &agree);
    assert_true(r < 1e-3);     /* the teacher is ternary too: the fit becomes exact */
    assert_true(agree > 0.99); /* from 1/3 at random */
    /* the sign trap: accumulating WITH the gradient makes the fit worse, not better */
    double bad = regression(-1, 100, &agree);
    assert_true(bad > 1.0);
    assert_true(agree < 0.34);
}

/* A positive gradient on a weight moves it down, a negative one up (A moves against G). */
static void test_sign_elementwise(void **state) {
    (void)state;
    const int64_t R = 3, C = 18, N = 8;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_LINEAR, 4, arb_cpu()));
    lin_case L;
    lin_alloc(&L, R, C, N);
    for (int64_t j = 0; j < N * C; j++) L.x[j] = 1.0f; /* positive inputs */
    ARB_ASSERT_OK(arb_quantize_rows(L.x, N, C, w.cols_pad, L.xq, L.xs));
    for (int64_t t = 0; t < N; t++) L.dy[t * R + 0] = 1.0f, L.dy[t * R + 1] = -1.0f, L.dy[t * R + 2] = 0.0f;
    arb_update_params p = arb_update_params_default();
    arb_update_state st = {0};
    for (int s = 0; s < 40; s++) {
        p.step = (uint64_t)s;
        ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&w, L.xq, L.xs, L.dy, N, &p, &st, NULL));
    }
    for (int64_t i = 0; i < C; i++) {
        assert_int_equal(arb_ternary_get(&w, 0, i), -1); /* G > 0: down */
        assert_int_equal(arb_ternary_get(&w, 1, i), 1);  /* G < 0: up */
        assert_int_equal(arb_ternary_get(&w, 2, i), 0);  /* no gradient: stays */
    }
    lin_free(&L);
    arb_ternary_free(&w);
}

/* The output is twice the target: d loss / d log-scale > 0 in every row, so E must fall,
 * and stop at exactly −4 quarter octaves (scale · 1/2), where the gradient vanishes. */
static void test_exp_direction(void **state) {
    (void)state;
    const int64_t R = 7, C = 33, N = 16;
    arb_ternary w;
    ARB_ASSERT_OK(arb_ternary_init(&w, R, C, ARB_TERNARY_LINEAR, 6, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&w, 3));
    lin_case L;
    lin_alloc(&L, R, C, N);
    lin_batch(&L, &w, 77);
    float *y0 = malloc(N * R * sizeof(float));
    lin_forward(&w, &L, y0);
    arb_update_params p = arb_update_params_default();
    p.eta = 0.0f; /* trits frozen: only E learns */
    arb_update_state st = {0};
    int moves = 0;
    for (int s = 0; s < 400; s++) {
        lin_forward(&w, &L, L.y);
        for (int64_t j = 0; j < N * R; j++) L.dy[j] = L.y[j] - 0.5f * y0[j];
        p.step = (uint64_t)s;
        arb_update_stats stats;
        ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&w, L.xq, L.xs, L.dy, N, &p, &st, &stats));
        moves += stats.exp_moves;
        assert_int_equal(stats.flips, 0);
        for (int64_t o = 0; o < R; o++) assert_true(w.exp[o] <= 0 && w.exp[o] >= -4);
    }
    for (int64_t o = 0; o < R; o++) assert_int_equal(w.exp[o], -4);
    assert_int_equal(moves, 4 * R);
    /* arb_upd_exp_step alone: ±1 evidence per step moves E once per R steps, in opposite directions */
    memset(w.exp, 0, R);
    memset(w.exp_evidence, 0, R);
    double ge[7] = {1, -1, 1, -1, 1, -1, 1};
    p.eta_exp = 1.0f;
    for (int s = 0; s < 32; s++) {
        p.step = (uint64_t)s;
        arb_upd_exp_step(&w, ge, &p);
        for (int64_t o = 0; o < R; o++) assert_int_equal(w.exp[o], s < 31 ? 0 : (ge[o] > 0 ? -1 : 1));
    }
    free(y0);
    lin_free(&L);
    arb_ternary_free(&w);
}

/* Same inputs, same state: bit for bit. The first step's stats pass measures exactly the norm
 * that a preset state would supply. */
static void test_reference_determinism(void **state) {
    (void)state;
    const int64_t R = 21, C = 50, N = 33;
    arb_ternary a, b;
    ARB_ASSERT_OK(arb_ternary_init(&a, R, C, ARB_TERNARY_LINEAR, 9, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_init(&b, R, C, ARB_TERNARY_LINEAR, 9, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(&a, 4));
    ARB_ASSERT_OK(arb_ternary_randomize(&b, 4));
    lin_case L;
    lin_alloc(&L, R, C, N);
    lin_batch(&L, &a, 5);
    arb_test_fill_f32(L.dy, (size_t)(N * R), 6, -1, 1);
    /* the norm this step would measure */
    int32_t *g = malloc(R * C * sizeof(int32_t));
    float c[21];
    arb_update_params p = arb_update_params_default();
    p.eta = 40.0f; /* many flips, so the comparison means something */
    ARB_ASSERT_OK(arb_upd_linear_grad(&a, L.xq, L.xs, L.dy, N, arb_update_key(p.seed, p.step, 9, ARB_RNG_GRAD), g, c));
    double norm = 0;
    for (int64_t o = 0; o < R; o++) {
        double s = 0;
        for (int64_t i = 0; i < C; i++) s += fabs((double)g[o * C + i]);
        norm += (double)c[o] * s;
    }
    norm /= (double)(R * C);
    arb_update_state sa = {0}, sb = {norm};
    arb_update_stats ta, tb;
    ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&a, L.xq, L.xs, L.dy, N, &p, &sa, &ta));
    ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&b, L.xq, L.xs, L.dy, N, &p, &sb, &tb));
    assert_true(ta.flips > 0);
    assert_int_equal(ta.flips, tb.flips);
    assert_memory_equal(a.trits, b.trits, (size_t)(a.rows_pad * a.cols_pad / 4));
    assert_memory_equal(a.accum, b.accum, (size_t)(R * C));
    assert_true(sa.grad_norm == sb.grad_norm);
    assert_true(fabs(sa.grad_norm - norm) <= 1e-12 * norm); /* same batch → same mean|G| */
    /* stats agree with the state */
    int64_t zeros = 0;
    for (int64_t o = 0; o < R; o++)
        for (int64_t i = 0; i < C; i++) zeros += arb_ternary_get(&a, o, i) == 0;
    assert_int_equal(ta.zeros, zeros);
    /* bad input leaves the state untouched */
    uint8_t *before = malloc((size_t)(a.rows_pad * a.cols_pad / 4));
    memcpy(before, a.trits, (size_t)(a.rows_pad * a.cols_pad / 4));
    L.dy[5] = NAN;
    assert_int_equal(arb_ternary_linear_backward_update_ref(&a, L.xq, L.xs, L.dy, N, &p, &sa, NULL), ARB_ERR_INVALID_ARG);
    assert_memory_equal(before, a.trits, (size_t)(a.rows_pad * a.cols_pad / 4));
    p.threshold = 0;
    assert_int_equal(arb_ternary_linear_backward_update_ref(&a, L.xq, L.xs, L.dy, N, &p, &sa, NULL), ARB_ERR_INVALID_ARG);
    free(before), free(g);
    lin_free(&L);
    arb_ternary_free(&a);
    arb_ternary_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_push_rate),   cmocka_unit_test(test_noise_rarely_moves),
        cmocka_unit_test(test_hysteresis),         cmocka_unit_test(test_saturation_and_rails),
        cmocka_unit_test(test_pressure_unbiased),  cmocka_unit_test(test_plan),
        cmocka_unit_test(test_reference_gradient_vs_f64), cmocka_unit_test(test_sign_and_learning),
        cmocka_unit_test(test_sign_elementwise),   cmocka_unit_test(test_exp_direction),
        cmocka_unit_test(test_reference_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
