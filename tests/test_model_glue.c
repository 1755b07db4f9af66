/* The model's float glue against float64 re-implementations: graph path == causal MHA with
 * full causal edges, graph edge sets, and every backward (graph hops, rotary, softmax, CE,
 * ReLU², memory slot read, MoE combine, ACT weighting) against float64 finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "testutil.h"

static double *dalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* ---------------------------------------------------------------- graph vs plain causal MHA */
/* Plain float64 causal multi-head attention over an explicit mask (mask[i*T+j] = edge j→i). */
static void mha_ref(const double *qkv, int B, int T, int H, int hd, const unsigned char *mask, int hops, double *out) {
    int D = H * hd;
    double *cur = dalloc((size_t)B * T * D), *nxt = dalloc((size_t)B * T * D), *p = dalloc((size_t)T);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int c = 0; c < D; c++) cur[((size_t)b * T + i) * D + c] = qkv[((size_t)b * T + i) * 3 * D + 2 * D + c];
    double *P = dalloc((size_t)B * H * T * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, s = 0;
                for (int j = 0; j < T; j++) {
                    p[j] = -INFINITY;
                    if (!mask[((size_t)b * T + i) * T + j]) continue;
                    double d = 0;
                    for (int c = 0; c < hd; c++)
                        d += qkv[((size_t)b * T + i) * 3 * D + h * hd + c] * qkv[((size_t)b * T + j) * 3 * D + D + h * hd + c];
                    p[j] = d / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j < T; j++) s += (p[j] == -INFINITY) ? 0 : exp(p[j] - mx);
                for (int j = 0; j < T; j++)
                    P[(((size_t)b * H + h) * T + i) * T + j] = (p[j] == -INFINITY) ? 0 : exp(p[j] - mx) / s;
            }
    for (int hop = 0; hop < hops; hop++) {
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++)
                    for (int c = 0; c < hd; c++) {
                        double a = 0;
                        for (int j = 0; j < T; j++)
                            a += P[(((size_t)b * H + h) * T + i) * T + j] * cur[((size_t)b * T + j) * D + h * hd + c];
                        nxt[((size_t)b * T + i) * D + h * hd + c] = a;
                    }
        double *t = cur; cur = nxt; nxt = t;
    }
    memcpy(out, cur, sizeof(double) * (size_t)B * T * D);
    free(cur); free(nxt); free(p); free(P);
}

static void fill_qkv(float *f, double *d, size_t n, uint64_t seed) {
    arb_test_fill_f32(f, n, seed, -1.5f, 1.5f);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}

static void test_graph_full_causal_is_mha(void **state) {
    (void)state;
    const int B = 2, T = 9, H = 3, hd = 4, D = H * hd;
    size_t nq = (size_t)B * T * 3 * D;
    float *qkv = malloc(nq * sizeof(float));
    double *qkvd = dalloc(nq);
    fill_qkv(qkv, qkvd, nq, 11);
    int32_t tok[18];
    for (int i = 0; i < B * T; i++) tok[i] = 'a' + i % 7;
    arb_graph g = {0};
    ARB_ASSERT_OK(arb_graph_build(&g, tok, NULL, B, T, 0, true, 0));
    assert_int_equal(g.n_edges, (int64_t)B * T * (T + 1) / 2);
    float *probs = malloc(sizeof(float) * (size_t)g.n_edges * H), *out = malloc(sizeof(float) * (size_t)B * T * D);
    arb_graph_forward(&g, H, hd, qkv, 3 * D, 1, probs, NULL, out);
    unsigned char *mask = calloc((size_t)B * T * T, 1);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j <= i; j++) mask[((size_t)b * T + i) * T + j] = 1;
    double *ref = dalloc((size_t)B * T * D);
    mha_ref(qkvd, B, T, H, hd, mask, 1, ref);
    double err = arb_test_rel_l2_f64(out, ref, (size_t)B * T * D);
    assert_true(err < 1e-6);
    free(qkv); free(qkvd); free(probs); free(out); free(mask); free(ref);
    arb_graph_free(&g);
}

/* Window + anchors + same-code edges, two hops: the CSR edge set equals the rule's mask, and
 * the output equals float64 masked attention hopped twice. */
static void test_graph_sparse_edges_and_hops(void **state) {
    (void)state;
    const int B = 2, T = 16, H = 2, hd = 4, D = H * hd, W = 3, VQE = 2, hops = 2;
    int32_t tok[32], codes[32];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (i % 5 == 0) ? ARB_TOK_BOS : 'a' + (i * 7) % 11;
        codes[i] = (i * 5) % 3;
    }
    arb_graph g = {0};
    ARB_ASSERT_OK(arb_graph_build(&g, tok, codes, B, T, W, true, VQE));
    unsigned char *mask = calloc((size_t)B * T * T, 1);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            int nvq = 0;
            for (int j = i; j >= 0; j--) {
                bool e = (i - j) < W;
                if (!e && arb_token_is_anchor(tok[b * T + j])) e = true;
                else if (!e && nvq < VQE && codes[b * T + j] == codes[b * T + i]) { e = true; nvq++; }
                mask[((size_t)b * T + i) * T + j] = e;
            }
        }
    for (int r = 0; r < B * T; r++) {
        int b = r / T, i = r % T, cnt = 0;
        for (int64_t e = g.off[r]; e < g.off[r + 1]; e++) {
            assert_true(mask[((size_t)b * T + i) * T + g.src[e]]);
            if (e > g.off[r]) assert_true(g.src[e] > g.src[e - 1]);
        }
        for (int j = 0; j < T; j++) cnt += mask[((size_t)b * T + i) * T + j];
        assert_int_equal(cnt, g.off[r + 1] - g.off[r]);
    }
    size_t nq = (size_t)B * T * 3 * D;
    float *qkv = malloc(nq * sizeof(float));
    double *qkvd = dalloc(nq);
    fill_qkv(qkv, qkvd, nq, 5);
    float *probs = malloc(sizeof(float) * (size_t)g.n_edges * H), *out = malloc(sizeof(float) * (size_t)B * T * D);
    float *hopbuf = malloc(sizeof(float) * (size_t)B * T * D);
    arb_graph_forward(&g, H, hd, qkv, 3 * D, hops, probs, hopbuf, out);
    double *ref = dalloc((size_t)B * T * D);
    mha_ref(qkvd, B, T, H, hd, mask, hops, ref);
    assert_true(arb_test_rel_l2_f64(out, ref, (size_t)B * T * D) < 1e-6);

    /* backward vs float64 finite differences of L = Σ c·out */
    double *c = dalloc((size_t)B * T * D);
    float *cf = malloc(sizeof(float) * (size_t)B * T * D), *dqkv = malloc(nq * sizeof(float));
    arb_test_fill_f32(cf, (size_t)B * T * D, 9, -1, 1);
    for (int i = 0; i < B * T * D; i++) c[i] = cf[i];
    ARB_ASSERT_OK(arb_graph_backward(&g, H, hd, qkv, 3 * D, hops, probs, hopbuf, cf, dqkv));
    double worst = 0;
    for (size_t k = 0; k < nq; k += 7) {
        double keep = qkvd[k], h = 1e-6, lp = 0, lm = 0;
        qkvd[k] = keep + h;
        mha_ref(qkvd, B, T, H, hd, mask, hops, ref);
        for (int i = 0; i < B * T * D; i++) lp += c[i] * ref[i];
        qkvd[k] = keep - h;
        mha_ref(qkvd, B, T, H, hd, mask, hops, ref);
        for (int i = 0; i < B * T * D; i++) lm += c[i] * ref[i];
        qkvd[k] = keep;
        double fd = (lp - lm) / (2 * h);
        double e = fabs(fd - dqkv[k]) / (fabs(fd) + 1e-2);
        if (e > worst) worst = e;
    }
    assert_true(worst < 1e-3);
    free(qkv); free(qkvd); free(probs); free(out); free(hopbuf); free(mask); free(ref); free(c); free(cf); free(dqkv);
    arb_graph_free(&g);
}

/* Every CPU tier's graph kernels give the same bits as the generic build (fixed 16-lane dot
 * products, no FMA), so trits do not depend on the machine's tier. */
static void test_graph_tiers_bit_identical(void **state) {
    (void)state;
    const int B = 2, T = 37, H = 3, hd = 24, D = H * hd, hops = 2;
    int32_t tok[74];
    for (int i = 0; i < B * T; i++) tok[i] = (i % 9 == 0) ? ARB_TOK_BOS : 'a' + i % 13;
    arb_graph g = {0};
    ARB_ASSERT_OK(arb_graph_build(&g, tok, NULL, B, T, 11, true, 0));
    size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D;
    float *qkv = malloc(nq * sizeof(float)), *dout = malloc(no * sizeof(float));
    arb_test_fill_f32(qkv, nq, 71, -2, 2);
    arb_test_fill_f32(dout, no, 72, -1, 1);
    float *ref0 = NULL, *got[3] = {0};
    arb_cpu_tier tiers[3] = {ARB_TIER_SCALAR, ARB_TIER_AVX2, ARB_TIER_AVX512};
    size_t np = (size_t)g.n_edges * H;
    size_t tot = np + no + no + nq;
    for (int t = 0; t < 3; t++) {
        arb_cpu_tier used = arb_cpu_tier_force(tiers[t]);
        float *buf = malloc(tot * sizeof(float));
        float *probs = buf, *hop = buf + np, *out = hop + no, *dqkv = out + no;
        arb_graph_forward(&g, H, hd, qkv, 3 * D, hops, probs, hop, out);
        ARB_ASSERT_OK(arb_graph_backward(&g, H, hd, qkv, 3 * D, hops, probs, hop, dout, dqkv));
        got[t] = buf;
        if (t == 0) ref0 = buf;
        if (used == tiers[t] && t > 0) assert_memory_equal(ref0, buf, tot * sizeof(float));
        printf("graph tier %s: %s\n", arb_cpu_tier_name(tiers[t]), used == tiers[t] ? "bit-identical" : "not on this CPU");
    }
    arb_cpu_tier_force(ARB_TIER_AVX512);
    for (int t = 0; t < 3; t++) free(got[t]);
    free(qkv);
    free(dout);
    arb_graph_free(&g);
}

/* ---------------------------------------------------------------- rotary */
static void test_rope(void **state) {
    (void)state;
    const int B = 2, T = 5, H = 2, hd = 6, ld = 3 * H * hd;
    size_t n = (size_t)B * T * ld;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    arb_test_fill_f32(x, n, 3, -1, 1);
    memcpy(y, x, n * sizeof(float));
    arb_glue_rope(y, B, T, ld, H * hd, H, hd, +1);
    for (int r = 0; r < B * T; r++) {
        int t = r % T;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd / 2; i++) {
                double a = t * pow(10000.0, -2.0 * i / hd);
                const float *v = x + (size_t)r * ld + H * hd + h * hd;
                double e0 = v[2 * i] * cos(a) - v[2 * i + 1] * sin(a);
                double e1 = v[2 * i] * sin(a) + v[2 * i + 1] * cos(a);
                const float *w = y + (size_t)r * ld + H * hd + h * hd;
                assert_true(fabs(w[2 * i] - e0) < 1e-5 && fabs(w[2 * i + 1] - e1) < 1e-5);
            }
        for (int c = 0; c < H * hd; c++) assert_true(y[(size_t)r * ld + c] == x[(size_t)r * ld + c]); /* untouched */
    }
    /* the inverse rotation is the backward (rotations are orthogonal): <R x, d> = <x, R⁻¹ d> */
    float *d = malloc(n * sizeof(float)), *dd = malloc(n * sizeof(float));
    arb_test_fill_f32(d, n, 4, -1, 1);
    memcpy(dd, d, n * sizeof(float));
    arb_glue_rope(dd, B, T, ld, H * hd, H, hd, -1);
    double a = 0, b = 0;
    for (size_t i = 0; i < n; i++) { a += (double)y[i] * d[i]; b += (double)x[i] * dd[i]; }
    assert_true(fabs(a - b) < 1e-4 * (fabs(a) + 1));
    free(x); free(y); free(d); free(dd);
}

/* ---------------------------------------------------------------- softmax, CE, ReLU² */
static void test_softmax_ce_relu2(void **state) {
    (void)state;
    const int n = 6, V = 11;
    float *lg = malloc(sizeof(float) * n * V), *dl = malloc(sizeof(float) * n * V);
    arb_test_fill_f32(lg, (size_t)n * V, 21, -3, 3);
    int32_t tg[6] = {3, -1, 10, ARB_TOK_PAD, 0, 7};
    int64_t cnt = 0;
    double sum = arb_glue_ce(lg, tg, n, V, 0.5f, dl, &cnt);
    assert_int_equal(cnt, 4);
    /* float64 CE and its finite differences (mean over counted rows, weight 0.5) */
    double ref = 0;
    for (int r = 0; r < n; r++) {
        if (tg[r] < 0 || tg[r] == ARB_TOK_PAD) { for (int i = 0; i < V; i++) assert_true(dl[r * V + i] == 0); continue; }
        double s = 0;
        for (int i = 0; i < V; i++) s += exp((double)lg[r * V + i]);
        ref += log(s) - lg[r * V + tg[r]];
        for (int i = 0; i < V; i++) {
            double g = 0.5 * (exp((double)lg[r * V + i]) / s - (i == tg[r])) / 4.0;
            assert_true(fabs(g - dl[r * V + i]) < 1e-6);
        }
    }
    assert_true(fabs(sum - ref) < 1e-5);
    /* softmax backward vs float64 finite differences of Σ c·softmax(x) */
    float *y = malloc(sizeof(float) * n * V), *c = malloc(sizeof(float) * n * V), *dx = malloc(sizeof(float) * n * V);
    arb_test_fill_f32(c, (size_t)n * V, 22, -1, 1);
    arb_glue_softmax_rows(lg, n, V, y);
    arb_glue_softmax_rows_backward(y, c, n, V, dx);
    for (int r = 0; r < n; r++)
        for (int k = 0; k < V; k++) {
            double h = 1e-6, f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                double s = 0, acc = 0;
                for (int i = 0; i < V; i++) s += exp(lg[r * V + i] + (i == k ? (sgn ? -h : h) : 0));
                for (int i = 0; i < V; i++) acc += c[r * V + i] * exp(lg[r * V + i] + (i == k ? (sgn ? -h : h) : 0)) / s;
                f[sgn] = acc;
            }
            assert_true(fabs((f[0] - f[1]) / (2 * h) - dx[r * V + k]) < 1e-5);
        }
    /* ReLU² */
    float u[5] = {-1.0f, 0.0f, 0.5f, 2.0f, -0.25f}, r2[5], dr[5] = {1, 2, 3, 4, 5}, du[5];
    arb_glue_relu2(u, 5, r2);
    arb_glue_relu2_backward(u, dr, 5, du);
    for (int i = 0; i < 5; i++) {
        double e = u[i] > 0 ? (double)u[i] * u[i] : 0, g = u[i] > 0 ? 2.0 * u[i] * dr[i] : 0;
        assert_true(fabs(r2[i] - e) < 1e-7 && fabs(du[i] - g) < 1e-6);
    }
    free(lg); free(dl); free(y); free(c); free(dx);
}

/* ---------------------------------------------------------------- memory read */
static double slots_loss(const double *q, const float *M, const float *c, int N, int S, int D) {
    double L = 0;
    for (int n = 0; n < N; n++) {
        double p[16], mx = -INFINITY, s = 0;
        for (int k = 0; k < S; k++) {
            double d = 0;
            for (int i = 0; i < D; i++) d += q[n * D + i] * M[k * D + i];
            p[k] = d / sqrt((double)D);
            if (p[k] > mx) mx = p[k];
        }
        for (int k = 0; k < S; k++) s += exp(p[k] - mx);
        for (int i = 0; i < D; i++) {
            double o = 0;
            for (int k = 0; k < S; k++) o += exp(p[k] - mx) / s * M[k * D + i];
            L += c[n * D + i] * o;
        }
    }
    return L;
}

static void test_slots_read(void **state) {
    (void)state;
    const int N = 5, S = 7, D = 8;
    float q[40], M[56], c[40], probs[35], out[40], dq[40];
    arb_test_fill_f32(q, 40, 31, -2, 2);
    arb_test_fill_f32(M, 56, 32, -1, 1);
    arb_test_fill_f32(c, 40, 33, -1, 1);
    arb_slots_read(q, M, N, S, D, probs, out);
    arb_slots_read_backward(M, probs, c, N, S, D, dq);
    double qd[40], L = 0;
    for (int i = 0; i < 40; i++) { qd[i] = q[i]; L += (double)c[i] * out[i]; }
    assert_true(fabs(L - slots_loss(qd, M, c, N, S, D)) < 1e-5);
    for (int k = 0; k < 40; k++) {
        double h = 1e-6, keep = qd[k];
        qd[k] = keep + h; double lp = slots_loss(qd, M, c, N, S, D);
        qd[k] = keep - h; double lm = slots_loss(qd, M, c, N, S, D);
        qd[k] = keep;
        assert_true(fabs((lp - lm) / (2 * h) - dq[k]) < 1e-4);
    }
}

/* ---------------------------------------------------------------- MoE combine */
static void test_moe_combine(void **state) {
    (void)state;
    const int N = 4, E = 3, D = 5;
    float g[12], ys[60], df[20], f[20], dg[12], dys[60];
    arb_test_fill_f32(g, 12, 41, 0, 1);
    arb_test_fill_f32(ys, 60, 42, -1, 1);
    arb_test_fill_f32(df, 20, 43, -1, 1);
    arb_moe_combine(g, ys, N, E, D, f);
    arb_moe_combine_backward(g, ys, df, N, E, D, dg, dys);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < D; i++) {
            double r = 0;
            for (int e = 0; e < E; e++) r += (double)g[n * E + e] * ys[(e * N + n) * D + i];
            assert_true(fabs(r - f[n * D + i]) < 1e-6);
        }
    /* L = Σ df·f is bilinear: the exact gradients are the float64 sums */
    for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) {
            double r = 0;
            for (int i = 0; i < D; i++) {
                r += (double)df[n * D + i] * ys[(e * N + n) * D + i];
                assert_true(fabs((double)g[n * E + e] * df[n * D + i] - dys[(e * N + n) * D + i]) < 1e-6);
            }
            assert_true(fabs(r - dg[n * E + e]) < 1e-5);
        }
}

/* ---------------------------------------------------------------- ACT */
/* float64 ACT: returns L = Σ c·Σ_t w_t s_t + pc·Σ (N + R) */
static double act_loss(const double *p, const double *s, const float *c, int N, int D, int It, float eps, double pc,
                       int32_t *nit) {
    double L = 0;
    for (int n = 0; n < N; n++) {
        double cum = 0;
        for (int t = 0; t < It; t++) {
            double w;
            bool halt = (t == It - 1) || (cum + p[t * N + n] >= 1.0 - eps);
            w = halt ? 1.0 - cum : p[t * N + n];
            for (int i = 0; i < D; i++) L += c[n * D + i] * w * s[((size_t)t * N + n) * D + i];
            if (halt) { L += pc * (t + 1 + w); if (nit) nit[n] = t + 1; break; }
            cum += p[t * N + n];
        }
    }
    return L;
}

static void test_act(void **state) {
    (void)state;
    const int N = 6, D = 4, It = 4;
    const float eps = 0.01f, pc = 0.3f;
    float p[24], s[96], c[24];
    arb_test_fill_f32(p, 24, 51, 0.05f, 0.6f);
    arb_test_fill_f32(s, 96, 52, -1, 1);
    arb_test_fill_f32(c, 24, 53, -1, 1);
    float cum[6] = {0}, w[24];
    int32_t nit[6] = {0}, nref[6];
    for (int t = 0; t < It; t++) arb_act_step(p + t * N, N, t, It, eps, cum, nit, w + t * N);
    double pd[24], sd[96];
    for (int i = 0; i < 24; i++) pd[i] = p[i];
    for (int i = 0; i < 96; i++) sd[i] = s[i];
    act_loss(pd, sd, c, N, D, It, eps, pc, nref);
    for (int n = 0; n < N; n++) {
        assert_int_equal(nit[n], nref[n]);
        double sw = 0;
        for (int t = 0; t < It; t++) sw += w[t * N + n];
        assert_true(fabs(sw - 1.0) < 1e-6); /* the weights are a distribution */
    }
    for (int t = 0; t < It; t++) {
        float dp[6];
        arb_act_grad_p(c, s, nit, N, D, t, pc, dp);
        for (int n = 0; n < N; n++) {
            double h = 1e-7, keep = pd[t * N + n];
            pd[t * N + n] = keep + h; double lp = act_loss(pd, sd, c, N, D, It, eps, pc, NULL);
            pd[t * N + n] = keep - h; double lm = act_loss(pd, sd, c, N, D, It, eps, pc, NULL);
            pd[t * N + n] = keep;
            assert_true(fabs((lp - lm) / (2 * h) - dp[n]) < 1e-4);
        }
    }
    /* d L / d s_t = w_t · c */
    for (int t = 0; t < It; t++)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < D; i++) {
                size_t k = ((size_t)t * N + n) * D + i;
                double h = 1e-6, keep = sd[k];
                sd[k] = keep + h; double lp = act_loss(pd, sd, c, N, D, It, eps, pc, NULL);
                sd[k] = keep - h; double lm = act_loss(pd, sd, c, N, D, It, eps, pc, NULL);
                sd[k] = keep;
                assert_true(fabs((lp - lm) / (2 * h) - (double)w[t * N + n] * c[n * D + i]) < 1e-5);
            }
}

/* ---------------------------------------------------------------- VQ */
static void test_vq_assign(void **state) {
    (void)state;
    const int N = 9, K = 5, D = 6;
    float e[54], C[30];
    int32_t codes[9];
    arb_test_fill_f32(e, 54, 61, -1, 1);
    arb_test_fill_f32(C, 30, 62, -1, 1);
    double se = arb_vq_assign(e, C, N, K, D, codes);
    double ref = 0;
    for (int n = 0; n < N; n++) {
        double best = INFINITY; int bk = -1;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int i = 0; i < D; i++) d += ((double)e[n * D + i] - C[k * D + i]) * ((double)e[n * D + i] - C[k * D + i]);
            if (d < best) { best = d; bk = k; }
        }
        assert_int_equal(codes[n], bk);
        ref += best / D;
    }
    assert_true(fabs(se - ref) < 1e-9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_full_causal_is_mha), cmocka_unit_test(test_graph_sparse_edges_and_hops),
        cmocka_unit_test(test_graph_tiers_bit_identical), cmocka_unit_test(test_rope), cmocka_unit_test(test_softmax_ce_relu2), cmocka_unit_test(test_slots_read),
        cmocka_unit_test(test_moe_combine), cmocka_unit_test(test_act), cmocka_unit_test(test_vq_assign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
