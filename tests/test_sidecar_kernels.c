/* Sidecar kernels against their references on random odd-sized inputs: the AVX-512 int8 GEMM
 * and row quantizer bit-exact against the scalar tier; both against a float64 dot product of the
 * dequantized operands; the fp32 GEMM against float64; exp/GELU/SiLU/tanh against libm; norms,
 * softmax and attention against float64; the weight quantizer against optimum-quanto itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecars/sc_internal.h"
#include "testutil.h"

static bool have_avx2(void) { return arb_cpu_features_get()->avx2 && arb_cpu_features_get()->fma; }
static bool have_avx512(void) {
    return arb_cpu_tier_get() >= ARB_TIER_AVX512 && arb_cpu_features_get()->avx512_vnni;
}

static const int g_sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {13, 37, 71}, {6, 64, 64}, {97, 50, 130}, {5, 129, 387}, {33, 16, 1}};

static void test_q8_gemm(void **s) {
    (void)s;
    for (size_t t = 0; t < sizeof g_sizes / sizeof g_sizes[0]; t++) {
        int M = g_sizes[t][0], N = g_sizes[t][1], K = g_sizes[t][2], kp = (K + 3) & ~3;
        float *w = malloc(sizeof(float) * N * K), *a = malloc(sizeof(float) * M * K), *bias = malloc(sizeof(float) * N);
        float *c0 = malloc(sizeof(float) * M * N), *c1 = malloc(sizeof(float) * M * N);
        int8_t *q = malloc((size_t)N * K);
        float *sc = malloc(sizeof(float) * N);
        arb_test_fill_f32(w, (size_t)N * K, 10 + t, -1.f, 1.f);
        arb_test_fill_f32(a, (size_t)M * K, 20 + t, -3.f, 3.f);
        arb_test_fill_f32(bias, (size_t)N, 30 + t, -1.f, 1.f);
        if (N > 3) memset(w + (size_t)2 * K, 0, sizeof(float) * K); /* a zero row: scale 0, no NaN */
        sc_quantize_rows(w, N, K, q, sc);
        sc_packq P;
        ARB_ASSERT_OK(sc_packq_init(&P, q, sc, N, K));
        uint8_t *aq0 = malloc((size_t)M * kp), *aq1 = malloc((size_t)M * kp);
        float *as0 = malloc(sizeof(float) * M), *as1 = malloc(sizeof(float) * M);
        for (int m = 0; m < M; m++) as0[m] = sc_tier_scalar.quant_row(a + (size_t)m * K, K, kp, aq0 + (size_t)m * kp);
        int nb = (N + 15) / 16;
        sc_tier_scalar.q8(M, aq0, as0, &P, bias, c0, N, 0, 0, nb);
        /* float64 reference of the same quantized operands */
        double err = 0, ref = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double d = 0;
                for (int k = 0; k < K; k++) d += ((double)aq0[(size_t)m * kp + k] - 128.0) * q[(size_t)n * K + k];
                double y = d * as0[m] * sc[n] + bias[n];
                err = fmax(err, fabs(c0[(size_t)m * N + n] - y));
                ref = fmax(ref, fabs(y));
            }
        assert_true(err <= 1e-5 * (ref + 1));
        for (int n = 0; n < N; n++) assert_false(isnan(c0[n]));
        if (have_avx512()) {
            for (int m = 0; m < M; m++) as1[m] = sc_tier_avx512.quant_row(a + (size_t)m * K, K, kp, aq1 + (size_t)m * kp);
            assert_memory_equal(aq0, aq1, (size_t)M * kp);
            assert_memory_equal(as0, as1, sizeof(float) * M);
            sc_tier_avx512.q8(M, aq1, as1, &P, bias, c1, N, 0, 0, nb);
            assert_memory_equal(c0, c1, sizeof(float) * M * N); /* bit-exact */
            /* accumulate mode, split panel ranges */
            memcpy(c1, c0, sizeof(float) * M * N);
            sc_tier_avx512.q8(M, aq1, as1, &P, bias, c1, N, SC_EPI_ACCUM, 0, nb / 2);
            sc_tier_avx512.q8(M, aq1, as1, &P, bias, c1, N, SC_EPI_ACCUM, nb / 2, nb);
            sc_tier_scalar.q8(M, aq0, as0, &P, bias, c0, N, SC_EPI_ACCUM, 0, nb);
            assert_memory_equal(c0, c1, sizeof(float) * M * N);
        }
        if (have_avx2()) {
            for (int m = 0; m < M; m++) as1[m] = sc_tier_avx2.quant_row(a + (size_t)m * K, K, kp, aq1 + (size_t)m * kp);
            assert_memory_equal(aq0, aq1, (size_t)M * kp);
            assert_memory_equal(as0, as1, sizeof(float) * M);
            sc_tier_scalar.q8(M, aq0, as0, &P, bias, c0, N, 0, 0, nb);
            sc_tier_avx2.q8(M, aq1, as1, &P, bias, c1, N, 0, 0, nb);
            assert_memory_equal(c0, c1, sizeof(float) * M * N); /* bit-exact */
        }
        /* the threaded driver gives the tier's numbers */
        sc_gemm_q8(M, a, K, &P, bias, c1, N, 0);
        sc_tier()->q8(M, aq0, as0, &P, bias, c0, N, 0, 0, nb);
        assert_memory_equal(c0, c1, sizeof(float) * M * N);
        sc_packq_free(&P);
        free(w), free(a), free(bias), free(c0), free(c1), free(q), free(sc), free(aq0), free(aq1), free(as0), free(as1);
    }
}

static void test_f32_gemm(void **s) {
    (void)s;
    for (size_t t = 0; t < sizeof g_sizes / sizeof g_sizes[0]; t++) {
        int M = g_sizes[t][0], N = g_sizes[t][1], K = g_sizes[t][2];
        size_t lda = (size_t)K + 3; /* strided A, as the conv1d path uses */
        float *w = malloc(sizeof(float) * N * K), *a = malloc(sizeof(float) * M * lda), *bias = malloc(sizeof(float) * N);
        float *c0 = malloc(sizeof(float) * M * N), *c1 = malloc(sizeof(float) * M * N);
        arb_test_fill_f32(w, (size_t)N * K, 40 + t, -1.f, 1.f);
        arb_test_fill_f32(a, (size_t)M * lda, 50 + t, -2.f, 2.f);
        arb_test_fill_f32(bias, (size_t)N, 60 + t, -1.f, 1.f);
        sc_packf F;
        ARB_ASSERT_OK(sc_packf_init(&F, w, N, K));
        int nb = (N + 15) / 16;
        double *ref = malloc(sizeof(double) * M * N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double d = bias[n];
                for (int k = 0; k < K; k++) d += (double)a[(size_t)m * lda + k] * w[(size_t)n * K + k];
                ref[(size_t)m * N + n] = d;
            }
        sc_tier_scalar.f32(M, N, K, a, lda, F.p, bias, c0, N, 0, 0, nb);
        assert_true(arb_test_rel_l2_f64(c0, ref, (size_t)M * N) < 1e-6);
        if (have_avx512()) {
            sc_tier_avx512.f32(M, N, K, a, lda, F.p, bias, c1, N, 0, 0, nb);
            assert_true(arb_test_rel_l2_f64(c1, ref, (size_t)M * N) < 1e-6);
        }
        if (have_avx2()) {
            sc_tier_avx2.f32(M, N, K, a, lda, F.p, bias, c1, N, 0, 0, nb);
            assert_true(arb_test_rel_l2_f64(c1, ref, (size_t)M * N) < 1e-6);
        }
        sc_gemm_f32(M, N, K, a, lda, F.p, bias, c1, N, 0);
        assert_true(arb_test_rel_l2_f64(c1, ref, (size_t)M * N) < 1e-6);
        /* KN packing (P·V) and NK packing agree */
        float *wt = malloc(sizeof(float) * N * K), *pk = malloc(sizeof(float) * nb * K * 16);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) wt[(size_t)k * N + n] = w[(size_t)n * K + k];
        sc_packf_from_kn(pk, wt, (size_t)N, N, K);
        assert_memory_equal(pk, F.p, sizeof(float) * nb * K * 16);
        /* weights-only int8 path equals a float GEMM on the dequantized weights */
        int8_t *q = malloc((size_t)N * K);
        float *sc = malloc(sizeof(float) * N), *dq = malloc(sizeof(float) * N * K);
        sc_quantize_rows(w, N, K, q, sc);
        for (size_t i = 0; i < (size_t)N * K; i++) dq[i] = sc[i / K] * q[i];
        sc_packq P;
        ARB_ASSERT_OK(sc_packq_init(&P, q, sc, N, K));
        sc_packf D;
        ARB_ASSERT_OK(sc_packf_init(&D, dq, N, K));
        sc_gemm_w8(M, a, lda, &P, bias, c0, N, 0);
        sc_gemm_f32(M, N, K, a, lda, D.p, bias, c1, N, 0);
        assert_memory_equal(c0, c1, sizeof(float) * M * N);
        sc_packq_free(&P), sc_packf_free(&D), sc_packf_free(&F);
        free(w), free(a), free(bias), free(c0), free(c1), free(ref), free(wt), free(pk), free(q), free(sc), free(dq);
    }
}

/* K above SC_KBLOCK_MIN: weights packed in K blocks, later blocks accumulate. */
static void test_f32_gemm_kblocked(void **s) {
    (void)s;
    int M = 13, N = 70, K = 1301;
    float *w = malloc(sizeof(float) * N * K), *a = malloc(sizeof(float) * M * K), *bias = malloc(sizeof(float) * N),
          *c = malloc(sizeof(float) * M * N);
    arb_test_fill_f32(w, (size_t)N * K, 71, -1.f, 1.f);
    arb_test_fill_f32(a, (size_t)M * K, 72, -1.f, 1.f);
    arb_test_fill_f32(bias, (size_t)N, 73, -1.f, 1.f);
    sc_packf F;
    ARB_ASSERT_OK(sc_packf_init(&F, w, N, K));
    assert_true(F.kb < K);
    for (int acc = 0; acc < 2; acc++) {
        for (int i = 0; i < M * N; i++) c[i] = acc ? 0.5f : 0.f;
        sc_gemm_f32_packed(M, a, K, &F, bias, c, N, acc ? SC_EPI_ACCUM : 0);
        double err = 0, ref = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double d = bias[n] + (acc ? 0.5 : 0.0);
                for (int k = 0; k < K; k++) d += (double)a[(size_t)m * K + k] * w[(size_t)n * K + k];
                err += (c[m * N + n] - d) * (c[m * N + n] - d);
                ref += d * d;
            }
        assert_true(sqrt(err / ref) < 1e-6);
    }
    sc_packf_free(&F);
    free(w), free(a), free(bias), free(c);
}

static void test_elementwise(void **s) {
    (void)s;
    size_t n = 4099;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    arb_test_fill_f32(x, n, 77, -12.f, 12.f);
    x[0] = 0.f, x[1] = -0.f, x[2] = 1e-6f, x[3] = -90.f, x[4] = 90.f, x[5] = -INFINITY;
    const sc_ops_tier *tiers[2] = {&sc_ops_scalar, have_avx512() ? &sc_ops_avx512 : &sc_ops_scalar};
    for (int t = 0; t < 2; t++) {
        double e1 = 0, e2 = 0, e3 = 0, e4 = 0;
        memcpy(y, x, sizeof(float) * n), tiers[t]->exp_inplace(y, n);
        for (size_t i = 0; i < n; i++) {
            double r = exp((double)x[i]);
            if (r < 1e-37) assert_true(y[i] < 1e-37f);
            else if (r < 1e37) e1 = fmax(e1, fabs(y[i] - r) / r);
        }
        memcpy(y, x + 6, sizeof(float) * (n - 6)), tiers[t]->gelu(y, n - 6);
        for (size_t i = 6; i < n; i++) e2 = fmax(e2, fabs(y[i - 6] - 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)))));
        memcpy(y, x + 6, sizeof(float) * (n - 6)), tiers[t]->silu(y, n - 6);
        for (size_t i = 6; i < n; i++) e3 = fmax(e3, fabs(y[i - 6] - x[i] / (1 + exp(-(double)x[i]))));
        memcpy(y, x + 6, sizeof(float) * (n - 6)), tiers[t]->tanh_(y, n - 6);
        for (size_t i = 6; i < n; i++) e4 = fmax(e4, fabs(y[i - 6] - tanh((double)x[i])));
        /* softmax(scale·x) over odd lengths */
        double e5 = 0;
        for (int len = 1; len < 70; len += 7) {
            memcpy(y, x + 6, sizeof(float) * (size_t)len), tiers[t]->softmax(y, len, 0.37f);
            double mx = -1e300, sum = 0;
            for (int i = 0; i < len; i++) mx = fmax(mx, 0.37 * x[6 + i]);
            for (int i = 0; i < len; i++) sum += exp(0.37 * x[6 + i] - mx);
            for (int i = 0; i < len; i++) e5 = fmax(e5, fabs(y[i] - exp(0.37 * x[6 + i] - mx) / sum));
        }
        printf("  %s: exp rel %.1e, gelu abs %.1e, silu abs %.1e, tanh abs %.1e, softmax abs %.1e\n", t ? "avx512" : "scalar",
               e1, e2, e3, e4, e5);
        assert_true(e1 < 1e-6 && e2 < 2e-6 && e3 < 2e-6 && e4 < 1e-6 && e5 < 1e-6);
    }
    free(x), free(y);
}

static void test_norms_attention(void **s) {
    (void)s;
    /* LayerNorm */
    int M = 9, D = 37;
    float *x = malloc(sizeof(float) * M * D * 4), *y = malloc(sizeof(float) * M * D * 4), *g = malloc(sizeof(float) * 64),
          *b = malloc(sizeof(float) * 64);
    arb_test_fill_f32(x, (size_t)M * D * 4, 1, -3.f, 5.f);
    arb_test_fill_f32(g, 64, 2, 0.5f, 1.5f);
    arb_test_fill_f32(b, 64, 3, -1.f, 1.f);
    sc_layernorm(x, y, M, D, g, b, 1e-5f);
    for (int m = 0; m < M; m++) {
        double mu = 0, var = 0;
        for (int i = 0; i < D; i++) mu += x[m * D + i];
        mu /= D;
        for (int i = 0; i < D; i++) var += (x[m * D + i] - mu) * (x[m * D + i] - mu);
        var /= D;
        for (int i = 0; i < D; i++) assert_true(fabs(y[m * D + i] - ((x[m * D + i] - mu) / sqrt(var + 1e-5) * g[i] + b[i])) < 1e-5);
    }
    /* GroupNorm (channels-last, 4 groups of 8 over 37 positions) + SiLU */
    size_t P = 37;
    int C = 32, G = 4;
    ARB_ASSERT_OK(sc_groupnorm_nhwc(x, y, P, C, G, g, b, 1e-6f, true));
    assert_int_equal(sc_groupnorm_nhwc(x, y, P, C, 5, g, b, 1e-6f, true), ARB_ERR_INVALID_ARG);
    for (int gi = 0; gi < G; gi++) {
        double mu = 0, var = 0;
        for (size_t p = 0; p < P; p++)
            for (int c = gi * 8; c < gi * 8 + 8; c++) mu += x[p * C + c];
        mu /= (double)P * 8;
        for (size_t p = 0; p < P; p++)
            for (int c = gi * 8; c < gi * 8 + 8; c++) var += (x[p * C + c] - mu) * (x[p * C + c] - mu);
        var /= (double)P * 8;
        for (size_t p = 0; p < P; p++)
            for (int c = gi * 8; c < gi * 8 + 8; c++) {
                double v = (x[p * C + c] - mu) / sqrt(var + 1e-6) * g[c] + b[c];
                v = v / (1 + exp(-v));
                assert_true(fabs(y[p * C + c] - v) < 1e-5);
            }
    }
    /* attention: 3 heads of 11, Tq 19, Tk 23, causal and not, vs float64 */
    int H = 3, dh = 11, Tq = 19, Tk = 23, W = H * dh;
    float *q = malloc(sizeof(float) * Tq * W), *k = malloc(sizeof(float) * Tk * W), *v = malloc(sizeof(float) * Tk * W),
          *o = malloc(sizeof(float) * Tq * W);
    arb_test_fill_f32(q, (size_t)Tq * W, 4, -1.f, 1.f);
    arb_test_fill_f32(k, (size_t)Tk * W, 5, -1.f, 1.f);
    arb_test_fill_f32(v, (size_t)Tk * W, 6, -1.f, 1.f);
    for (int causal = 0; causal < 2; causal++) {
        ARB_ASSERT_OK(sc_attention(Tq, Tk, H, dh, q, W, k, W, v, W, o, W, 0.3f, causal));
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                double sc[64], mx = -1e300, sum = 0;
                int lim = causal ? i + 1 : Tk;
                for (int j = 0; j < lim; j++) {
                    double d = 0;
                    for (int e = 0; e < dh; e++) d += (double)q[i * W + h * dh + e] * k[j * W + h * dh + e];
                    sc[j] = 0.3 * d;
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < lim; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < dh; e++) {
                    double r = 0;
                    for (int j = 0; j < lim; j++) r += sc[j] / sum * v[j * W + h * dh + e];
                    assert_true(fabs(o[i * W + h * dh + e] - r) < 1e-5);
                }
            }
    }
    free(x), free(y), free(g), free(b), free(q), free(k), free(v), free(o);
}

/* ---------------------------------------------------------------- Moonshine CPU (session 3):
 * the int16 GEMM, the int16 row quantizer, the softmax to int16, the K/V packers, the int16
 * Conv1d copy and the int8/int16 attention, each against a scalar or float64 reference. */

/* Packs an int16 matrix b [n][k] the way sc_pack16 lays it out (the test's own packer). */
static sc_pack16 pack16_ref(const int16_t *b, const float *scale, int n, int k) {
    sc_pack16 P = {n, k, (k + 1) & ~1, NULL, NULL};
    int nb = (n + 15) / 16;
    P.p = calloc((size_t)nb * 16 * P.kp, sizeof(int16_t));
    P.scale = calloc((size_t)nb * 16, sizeof(float));
    for (int o = 0; o < n; o++) {
        P.scale[o] = scale[o];
        for (int i = 0; i < k; i++) P.p[(((size_t)(o / 16) * (P.kp / 2) + i / 2) * 16 + o % 16) * 2 + (i & 1)] = b[(size_t)o * k + i];
    }
    return P;
}

static const sc_att_tier *att_tiers[2];
static int n_att_tiers(void) {
    att_tiers[0] = &sc_att_scalar;
    if (!have_avx512()) return 1;
    att_tiers[1] = &sc_att_avx512;
    return 2;
}

static void test_w16_gemm(void **s) {
    (void)s;
    /* (M, N, K, A range, B range): attention (probabilities × V) and Conv1d (both ±1023) shapes;
     * K = 2051 crosses two SC_W16_KBLOCK blocks */
    static const int sz[][5] = {{1, 1, 1, 16383, 127}, {7, 13, 5, 16383, 127}, {13, 52, 415, 16383, 127},
                                {6, 64, 64, 1023, 1023}, {19, 37, 2051, 16383, 127}, {5, 70, 2051, 1023, 1023}};
    int nt = n_att_tiers();
    for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++) {
        int M = sz[t][0], N = sz[t][1], K = sz[t][2], kp = (K + 1) & ~1, amax = sz[t][3], bmax = sz[t][4];
        int16_t *a = calloc((size_t)M * kp, 2), *b = malloc((size_t)N * K * 2);
        float *as = malloc(sizeof(float) * M), *bs = malloc(sizeof(float) * N), *c[2], *r = malloc(sizeof(float) * M * N);
        float *u = malloc(sizeof(float) * (size_t)M * K > sizeof(float) * (size_t)N * K ? sizeof(float) * (size_t)M * K
                                                                                         : sizeof(float) * (size_t)N * K);
        arb_test_fill_f32(u, (size_t)M * K, 40 + t, amax == 16383 ? 0.f : -1.f, 1.f);
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) a[(size_t)m * kp + k] = (int16_t)lrintf(u[(size_t)m * K + k] * amax);
        if (M > 1) for (int k = 0; k < K; k++) a[kp + k] = (int16_t)(amax == 16383 ? amax : -amax); /* extreme row */
        arb_test_fill_f32(u, (size_t)N * K, 50 + t, -1.f, 1.f);
        for (int i = 0; i < N * K; i++) b[i] = (int16_t)lrintf(u[i] * bmax);
        if (N > 1) for (int k = 0; k < K; k++) b[K + k] = (int16_t)bmax; /* extreme column */
        arb_test_fill_f32(as, (size_t)M, 60 + t, 1e-4f, 1e-3f);
        arb_test_fill_f32(bs, (size_t)N, 61 + t, 1e-3f, 1e-2f);
        sc_pack16 P = pack16_ref(b, bs, N, K);
        int nb = (N + 15) / 16;
        for (int i = 0; i < nt; i++) {
            c[i] = malloc(sizeof(float) * M * N);
            att_tiers[i]->w16(M, a, as, &P, c[i], N, 0, 0, nb);
        }
        /* float64 of the exact integer sums, block by block as the kernel adds them */
        double err = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double y = 0;
                for (int k0 = 0; k0 < K; k0 += SC_W16_KBLOCK) {
                    int64_t d = 0;
                    for (int k = k0; k < K && k < k0 + SC_W16_KBLOCK; k++) d += (int64_t)a[(size_t)m * kp + k] * b[(size_t)n * K + k];
                    assert_true(d > INT32_MIN && d < INT32_MAX); /* the block bound holds */
                    y += (double)d * as[m] * bs[n];
                }
                r[m * N + n] = (float)y;
                err = fmax(err, fabs(c[0][m * N + n] - y) / (fabs(y) + 1e-3));
            }
        assert_true(err < 1e-5);
        if (nt > 1) {
            assert_memory_equal(c[0], c[1], sizeof(float) * M * N); /* bit-exact */
            /* accumulate mode, split panel ranges */
            for (int i = 0; i < 2; i++) memcpy(c[i], r, sizeof(float) * M * N);
            att_tiers[1]->w16(M, a, as, &P, c[1], N, SC_EPI_ACCUM, 0, nb / 2);
            att_tiers[1]->w16(M, a, as, &P, c[1], N, SC_EPI_ACCUM, nb / 2, nb);
            att_tiers[0]->w16(M, a, as, &P, c[0], N, SC_EPI_ACCUM, 0, nb);
            assert_memory_equal(c[0], c[1], sizeof(float) * M * N);
        }
        for (int i = 0; i < nt; i++) free(c[i]);
        free(a), free(b), free(as), free(bs), free(r), free(u), free(P.p), free(P.scale);
    }
}

static void test_quant16_softmax16(void **s) {
    (void)s;
    int nt = n_att_tiers();
    static const int lens[] = {1, 7, 16, 52, 415, 1000};
    float *x = malloc(sizeof(float) * 1024);
    int16_t *q[2] = {malloc(2 * 1040), malloc(2 * 1040)};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int n = lens[li], np = n + 5;
        arb_test_fill_f32(x, (size_t)n, 90 + li, -7.f, 5.f);
        float sc[2];
        /* quant_row16: rint(x·1023/absmax), clamped, zero padding; tiers bit-identical */
        for (int i = 0; i < nt; i++) {
            memset(q[i], 0x55, 2 * 1040);
            sc[i] = att_tiers[i]->quant_row16(x, n, np, q[i]);
        }
        float amax = 0.f;
        for (int k = 0; k < n; k++) amax = fmaxf(amax, fabsf(x[k]));
        assert_true(sc[0] == amax / 1023.f);
        for (int k = 0; k < n; k++) assert_true(fabs(q[0][k] - (double)x[k] * 1023.0 / amax) <= 0.5 + 1e-3);
        for (int k = n; k < np; k++) assert_int_equal(q[0][k], 0);
        if (nt > 1) {
            assert_memory_equal(q[0], q[1], 2 * (size_t)np);
            assert_true(sc[0] == sc[1]);
        }
        /* softmax_q16 vs float64: p = rint(16383·exp(scale·x − max)) to ±1, scale 1/Σp */
        for (int i = 0; i < nt; i++) {
            memset(q[i], 0x55, 2 * 1040);
            sc[i] = att_tiers[i]->softmax_q16(x, n, 0.71f, q[i], np);
            double mx = -1e300;
            int64_t sum = 0;
            for (int k = 0; k < n; k++) mx = fmax(mx, 0.71 * x[k]);
            for (int k = 0; k < n; k++) {
                double want = 16383.0 * exp(0.71 * x[k] - mx);
                assert_true(fabs(q[i][k] - want) <= 0.5 + 2e-4 * want + 1e-3);
                sum += q[i][k];
            }
            for (int k = n; k < np; k++) assert_int_equal(q[i][k], 0);
            assert_true(sc[i] == 1.f / (float)sum);
        }
        if (nt > 1)
            for (int k = 0; k < n; k++) assert_true(abs(q[0][k] - q[1][k]) <= 1);
    }
    free(x), free(q[0]), free(q[1]);
}

static void test_pack16_conv_and_gemm(void **s) {
    (void)s;
    /* an int16 copy of a K-blocked float layer: rint(w·1023/absmax) per row; the GEMM driver vs float64 */
    int N = 37, K = 1301, M = 29;
    float *w = malloc(sizeof(float) * N * K), *a = malloc(sizeof(float) * M * K * 2), *bias = malloc(sizeof(float) * N),
          *c = malloc(sizeof(float) * M * N);
    arb_test_fill_f32(w, (size_t)N * K, 81, -1.f, 1.f);
    arb_test_fill_f32(a, (size_t)M * K * 2, 82, -2.f, 2.f);
    arb_test_fill_f32(bias, (size_t)N, 83, -1.f, 1.f);
    memset(w + (size_t)3 * K, 0, sizeof(float) * K); /* a zero row: scale 0 */
    sc_packf F;
    ARB_ASSERT_OK(sc_packf_init(&F, w, N, K));
    assert_true(F.kb < K);
    sc_pack16 P;
    ARB_ASSERT_OK(sc_pack16_from_packf(&P, &F));
    assert_int_equal(P.kp, K + 1);
    for (int o = 0; o < N; o++) {
        float amax = 0.f;
        for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(w[(size_t)o * K + k]));
        assert_true(P.scale[o] == amax / 1023.f);
        for (int k = 0; k < P.kp; k++) {
            int16_t v = P.p[(((size_t)(o / 16) * (P.kp / 2) + k / 2) * 16 + o % 16) * 2 + (k & 1)];
            if (k >= K || amax == 0.f) assert_int_equal(v, 0);
            else assert_true(fabs(v - (double)w[(size_t)o * K + k] * 1023.0 / amax) <= 0.5 + 1e-3);
        }
    }
    if (sc_att()) {
        /* rows with a stride (lda = 2K, as the Conv1d windows are read in place) */
        sc_gemm_w16(M, a, 2 * (size_t)K, &P, bias, c, N);
        double err = 0, ref = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double d = bias[n];
                for (int k = 0; k < K; k++) d += (double)a[(size_t)m * 2 * K + k] * w[(size_t)n * K + k];
                err += (c[m * N + n] - d) * (c[m * N + n] - d);
                ref += d * d;
            }
        printf("  int16 Conv1d GEMM vs float64: rel L2 %.2e\n", sqrt(err / ref));
        assert_true(sqrt(err / ref) < 2e-3);
    }
    sc_pack16_free(&P), sc_packf_free(&F);
    free(w), free(a), free(bias), free(c);
}

static void test_attention_q8(void **s) {
    (void)s;
    /* the packers: V scalar = AVX-512 byte for byte; K dequantizes to K − mean */
    int nt = n_att_tiers();
    {
        int Tk = 37, dh = 21, ld = 50;
        float *v = malloc(sizeof(float) * Tk * ld);
        arb_test_fill_f32(v, (size_t)Tk * ld, 70, -3.f, 2.f);
        sc_pack16 V[2];
        for (int i = 0; i < nt; i++) {
            V[i].p = calloc((size_t)2 * 16 * 38, 2), V[i].scale = calloc(32, sizeof(float));
            att_tiers[i]->pack_values(&V[i], v, ld, Tk, dh);
        }
        for (int d = 0; d < dh; d++)
            for (int j = 0; j < 38; j++) {
                int16_t qv = V[0].p[(((size_t)(d / 16) * 19 + j / 2) * 16 + d % 16) * 2 + (j & 1)];
                if (j >= Tk) assert_int_equal(qv, 0);
                else assert_true(fabs(qv * V[0].scale[d] - v[j * ld + d]) <= 0.5001 * V[0].scale[d]);
            }
        if (nt > 1) {
            assert_memory_equal(V[0].p, V[1].p, (size_t)2 * 16 * 38 * 2);
            assert_memory_equal(V[0].scale, V[1].scale, 32 * sizeof(float));
        }
        for (int i = 0; i < nt; i++) free(V[i].p), free(V[i].scale);
        sc_packq K = {0, 0, 0, calloc((size_t)48 * 24, 1), calloc(48, 4), calloc(48, 4)};
        sc_pack_keys_q8(&K, v, ld, Tk, dh);
        assert_int_equal(K.kp, 24);
        for (int j = 0; j < 48; j++) {
            int32_t sum = 0;
            for (int d = 0; d < 24; d++) {
                int8_t qv = K.p[(((size_t)(j / 16) * 6 + d / 4) * 16 + j % 16) * 4 + (d & 3)];
                sum += qv;
                if (j >= Tk || d >= dh) assert_int_equal(qv, 0);
                else {
                    double mean = 0;
                    for (int t = 0; t < Tk; t++) mean += v[t * ld + d];
                    mean /= Tk;
                    assert_true(fabs(qv * K.scale[j] - (v[j * ld + d] - mean)) <= 0.5001 * K.scale[j] + 1e-6);
                }
            }
            assert_int_equal(K.qsum[j], 128 * sum);
        }
        free(K.p), free(K.qsum), free(K.scale), free(v);
    }
    if (!sc_att()) {
        printf("  no AVX-512 VNNI: int8 attention not run\n");
        return;
    }
    /* the whole attention vs float64 on odd shapes (Tk = 1100 crosses an int32 block) */
    static const int sh[][4] = {{19, 23, 3, 11}, {37, 53, 2, 52}, {5, 1100, 1, 8}};
    for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
        int Tq = sh[t][0], Tk = sh[t][1], H = sh[t][2], dh = sh[t][3], W = H * dh;
        float *q = malloc(sizeof(float) * Tq * W), *k = malloc(sizeof(float) * Tk * W), *v = malloc(sizeof(float) * Tk * W),
              *o = malloc(sizeof(float) * Tq * W);
        double *r = malloc(sizeof(double) * Tq * W), *sc = malloc(sizeof(double) * Tk);
        arb_test_fill_f32(q, (size_t)Tq * W, 74 + t, -2.f, 2.f);
        arb_test_fill_f32(k, (size_t)Tk * W, 75 + t, -1.f, 3.f); /* keys with a shared offset */
        arb_test_fill_f32(v, (size_t)Tk * W, 76 + t, -1.f, 1.f);
        ARB_ASSERT_OK(sc_attention_q8(Tq, Tk, H, dh, q, W, k, W, v, W, o, W, 0.4f));
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < Tk; j++) {
                    double d = 0;
                    for (int e = 0; e < dh; e++) d += (double)q[i * W + h * dh + e] * k[j * W + h * dh + e];
                    sc[j] = 0.4 * d;
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < Tk; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < dh; e++) {
                    double acc = 0;
                    for (int j = 0; j < Tk; j++) acc += sc[j] / sum * v[j * W + h * dh + e];
                    r[i * W + h * dh + e] = acc;
                }
            }
        double rel = arb_test_rel_l2_f64(o, r, (size_t)Tq * W);
        printf("  int8 attention %dx%d, %d heads of %d: rel L2 %.2e vs float64\n", Tq, Tk, H, dh, rel);
        assert_true(rel < 2e-2);
        free(q), free(k), free(v), free(o), free(r), free(sc);
    }
    assert_int_equal(sc_attention_q8(3, 3, 1, SC_ATT_Q8_MAXDH + 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0, 1.f), ARB_ERR_INVALID_ARG);
}

/* The weight quantizer against optimum-quanto's qint8 on the same random weights (incl. values
 * that land exactly on .5 steps, where round-half-to-even matters). */
/* Both tiers' LayerNorm rows against float64 (widths with and without a 16-lane tail, with and
 * without beta), and the int8 pre-norm layer (sc_lin_forward_ln) bit-identical to LayerNorm
 * followed by the layer, for row counts below and above the thread count. */
static void test_layernorm_rows_and_fusion(void **s) {
    (void)s;
    const sc_ops_tier *tiers[2] = {&sc_ops_scalar, have_avx512() ? &sc_ops_avx512 : &sc_ops_scalar};
    const int widths[3] = {37, 64, 384};
    float *x = malloc(sizeof(float) * 384), *y = malloc(sizeof(float) * 384), *g = malloc(sizeof(float) * 384),
          *b = malloc(sizeof(float) * 384);
    arb_test_fill_f32(x, 384, 11, -4.f, 6.f);
    arb_test_fill_f32(g, 384, 12, 0.5f, 1.5f);
    arb_test_fill_f32(b, 384, 13, -1.f, 1.f);
    for (int t = 0; t < 2; t++)
        for (int wi = 0; wi < 3; wi++)
            for (int wb = 0; wb < 2; wb++) {
                int D = widths[wi];
                tiers[t]->layernorm_row(x, y, D, g, wb ? b : NULL, 1e-5f);
                double mu = 0, var = 0;
                for (int i = 0; i < D; i++) mu += x[i];
                mu /= D;
                for (int i = 0; i < D; i++) var += (x[i] - mu) * (x[i] - mu);
                var /= D;
                for (int i = 0; i < D; i++) {
                    double want = (x[i] - mu) / sqrt(var + 1e-5) * g[i] + (wb ? b[i] : 0.0);
                    if (fabs(y[i] - want) > 2e-5) fail_msg("tier %d, D %d: y[%d] = %g, want %g", t, D, i, y[i], want);
                }
            }
    free(x), free(y), free(g), free(b);

    const int N = 70, K = 96;
    float *w = malloc(sizeof(float) * N * K), *sc = malloc(sizeof(float) * N), *bias = malloc(sizeof(float) * N);
    int8_t *q = malloc((size_t)N * K);
    arb_test_fill_f32(w, (size_t)N * K, 21, -0.3f, 0.3f);
    arb_test_fill_f32(bias, N, 22, -0.1f, 0.1f);
    sc_quantize_rows(w, N, K, q, sc);
    sc_lin l;
    memset(&l, 0, sizeof l);
    l.n = N, l.k = K, l.quantized = true, l.bias = bias;
    ARB_ASSERT_OK(sc_packq_init(&l.q, q, sc, N, K));
    const int Ms[3] = {1, 3, 257};
    for (int mi = 0; mi < 3; mi++) {
        int M = Ms[mi];
        float *xa = malloc(sizeof(float) * M * K), *h = malloc(sizeof(float) * M * K), *y1 = malloc(sizeof(float) * M * N),
              *y2 = malloc(sizeof(float) * M * N), *gg = malloc(sizeof(float) * K), *bb = malloc(sizeof(float) * K);
        arb_test_fill_f32(xa, (size_t)M * K, 30 + mi, -2.f, 3.f);
        arb_test_fill_f32(gg, K, 40, 0.5f, 1.5f);
        arb_test_fill_f32(bb, K, 41, -0.5f, 0.5f);
        sc_lin_forward_ln(&l, SC_INT8, M, xa, gg, bb, 1e-5f, h, y1, N, 0);
        sc_layernorm(xa, h, M, K, gg, bb, 1e-5f);
        sc_lin_forward(&l, SC_INT8, M, h, K, y2, N, 0);
        assert_memory_equal(y1, y2, sizeof(float) * M * N);
        free(xa), free(h), free(y1), free(y2), free(gg), free(bb);
    }
    sc_packq_free(&l.q);
    free(w), free(sc), free(bias), free(q);
}

/* sc_lin_forward_act (an elementwise op fused into the int8 layer's row quantization) gives the
 * numbers of the op over x followed by the layer, in the int8 and fp32 modes, with a row stride
 * and the residual-add flag, for row counts below and above the thread count. */
static void test_lin_forward_act(void **s) {
    (void)s;
    const int N = 37, K = 133, lda = 140;
    float *w = malloc(sizeof(float) * N * K), *sc = malloc(sizeof(float) * N), *bias = malloc(sizeof(float) * N);
    int8_t *q = malloc((size_t)N * K);
    arb_test_fill_f32(w, (size_t)N * K, 23, -0.3f, 0.3f);
    arb_test_fill_f32(bias, N, 24, -0.1f, 0.1f);
    sc_quantize_rows(w, N, K, q, sc);
    sc_lin lq, lf;
    memset(&lq, 0, sizeof lq), memset(&lf, 0, sizeof lf);
    lq.n = lf.n = N, lq.k = lf.k = K, lq.quantized = true, lq.bias = lf.bias = bias;
    ARB_ASSERT_OK(sc_packq_init(&lq.q, q, sc, N, K));
    ARB_ASSERT_OK(sc_packf_init(&lf.f, w, N, K));
    const int Ms[3] = {1, 3, 301};
    for (int mi = 0; mi < 3; mi++)
        for (int md = 0; md < 2; md++) {
            int M = Ms[mi];
            const sc_lin *l = md ? &lf : &lq;
            sc_mode mode = md ? SC_FP32 : SC_INT8;
            float *x1 = malloc(sizeof(float) * M * lda), *x2 = malloc(sizeof(float) * M * lda),
                  *y1 = malloc(sizeof(float) * M * N), *y2 = malloc(sizeof(float) * M * N);
            arb_test_fill_f32(x1, (size_t)M * lda, 50 + mi, -4.f, 3.f);
            memcpy(x2, x1, sizeof(float) * M * lda);
            arb_test_fill_f32(y1, (size_t)M * N, 60 + mi, -1.f, 1.f);
            memcpy(y2, y1, sizeof(float) * M * N);
            sc_lin_forward_act(l, mode, M, x1, lda, sc_ops()->gelu, y1, N, SC_EPI_ACCUM);
            for (int m = 0; m < M; m++) sc_ops()->gelu(x2 + (size_t)m * lda, (size_t)K);
            sc_lin_forward(l, mode, M, x2, lda, y2, N, SC_EPI_ACCUM);
            assert_memory_equal(y1, y2, sizeof(float) * M * N);
            free(x1), free(x2), free(y1), free(y2);
        }
    sc_packq_free(&lq.q), sc_packf_free(&lf.f);
    free(w), free(sc), free(bias), free(q);
}

static void test_quantizer_vs_quanto(void **s) {
    (void)s;
    if (system("python3 -c 'import optimum.quanto, torch, safetensors' >/dev/null 2>&1") != 0) {
        printf("  (optimum-quanto not installed: skipped)\n");
        return;
    }
    char dir[] = "/tmp/arb_sc_q_XXXXXX";
    assert_non_null(mkdtemp(dir));
    int N = 19, K = 45;
    float *w = malloc(sizeof(float) * N * K);
    arb_test_fill_f32(w, (size_t)N * K, 99, -0.2f, 0.2f);
    for (int k = 0; k < K; k++) w[K + k] = (float)((k % 9) - 4) * 0.5f; /* row 1: absmax 2 → ties at .5·2/127 */
    for (int k = 0; k < K; k++) w[3 * K + k] = (k == 0 ? 127.f : (float)k + 0.5f);  /* row 3: exact .5 quotients */
    char in[300], out[300], cmd[2048];
    snprintf(in, sizeof in, "%s/w.safetensors", dir);
    snprintf(out, sizeof out, "%s/q.safetensors", dir);
    arb_st_writer *wr;
    ARB_ASSERT_OK(arb_st_writer_open(&wr, in));
    ARB_ASSERT_OK(arb_st_writer_add(wr, "w", ARB_F32, 2, (int64_t[]){N, K}, w));
    ARB_ASSERT_OK(arb_st_writer_commit(wr));
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import torch; from safetensors.torch import load_file, save_file; "
             "from optimum.quanto import quantize, freeze, qint8; w=load_file('%s')['w']; "
             "m=torch.nn.Sequential(torch.nn.Linear(%d,%d,bias=False)); m[0].weight.data.copy_(w); "
             "quantize(m, weights=qint8); freeze(m); qw=m[0].weight; "
             "save_file({'q': qw._data.contiguous(), 's': qw._scale.reshape(-1).contiguous()}, '%s')\" 2>/dev/null",
             in, K, N, out);
    assert_int_equal(system(cmd), 0);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, out));
    const arb_st_tensor *rq = arb_safetensors_find(st, "q"), *rs = arb_safetensors_find(st, "s");
    assert_non_null(rq);
    assert_non_null(rs);
    int8_t *q = malloc((size_t)N * K);
    float *sc = malloc(sizeof(float) * N);
    sc_quantize_rows(w, N, K, q, sc);
    assert_memory_equal(q, rq->data, (size_t)N * K);
    assert_memory_equal(sc, rs->data, sizeof(float) * N);
    printf("  %dx%d weights: int8 values and scales identical to optimum-quanto\n", N, K);
    arb_safetensors_close(st);
    free(w), free(q), free(sc);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Moonshine's encoder runs a batch in groups of items (cache-sized buffers): each item of a batch
 * must come out bit-identical to that item run alone, in every precision, for batches spanning
 * several groups (the tiny fixture model; 23456 samples = 59 frames, 17 items per group). */
static void test_moonshine_batch_groups(void **s) {
    (void)s;
    char dir[1100];
    if (!arb_test_shared("fixtures", dir, sizeof dir)) skip();
    strncat(dir, "/moonshine-tiny", sizeof dir - strlen(dir) - 1);
    const int B = 19, N = 23456;
    arb_tensor in, one, ob, o1;
    ARB_ASSERT_OK(arb_tensor_init(&in, ARB_F32, 2, (int64_t[]){B, N}, arb_cpu()));
    ARB_ASSERT_OK(arb_tensor_init(&one, ARB_F32, 2, (int64_t[]){1, N}, arb_cpu()));
    arb_test_fill_f32((float *)in.data, (size_t)B * N, 99, -0.3f, 0.3f);
    arb_sidecar_precision ps[3] = {ARB_SIDECAR_FP32, ARB_SIDECAR_INT8W, ARB_SIDECAR_INT8};
    for (int p = 0; p < 3; p++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ps[p]));
        ARB_ASSERT_OK(arb_moonshine_encode(m, &in, &ob));
        size_t item = (size_t)ob.shape[1] * ob.shape[2];
        for (int b = 0; b < B; b += 6) { /* items in the first and second groups */
            memcpy(one.data, (const float *)in.data + (size_t)b * N, sizeof(float) * N);
            ARB_ASSERT_OK(arb_moonshine_encode(m, &one, &o1));
            assert_memory_equal(o1.data, (const float *)ob.data + b * item, item * sizeof(float));
            arb_tensor_free(&o1);
        }
        arb_tensor_free(&ob);
        arb_sidecar_free(m);
    }
    arb_tensor_free(&in), arb_tensor_free(&one);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_gemm),         cmocka_unit_test(test_f32_gemm), cmocka_unit_test(test_f32_gemm_kblocked),
        cmocka_unit_test(test_elementwise),     cmocka_unit_test(test_norms_attention),
        cmocka_unit_test(test_quantizer_vs_quanto), cmocka_unit_test(test_layernorm_rows_and_fusion),
        cmocka_unit_test(test_w16_gemm), cmocka_unit_test(test_quant16_softmax16), cmocka_unit_test(test_pack16_conv_and_gemm),
        cmocka_unit_test(test_attention_q8), cmocka_unit_test(test_moonshine_batch_groups),
        cmocka_unit_test(test_lin_forward_act),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
