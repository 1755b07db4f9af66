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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_gemm),         cmocka_unit_test(test_f32_gemm), cmocka_unit_test(test_f32_gemm_kblocked),
        cmocka_unit_test(test_elementwise),     cmocka_unit_test(test_norms_attention),
        cmocka_unit_test(test_quantizer_vs_quanto), cmocka_unit_test(test_layernorm_rows_and_fusion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
