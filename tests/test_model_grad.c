/* End-to-end gradient of the text path: the model's d loss / d (embedding output) — through
 * the byte head, final norm, every layer's MLP (ReLU²), graph path (rotary, softmax over
 * edges, two hops) and ternary-gain norms — against float64 finite differences of an
 * independent float64 re-implementation that uses the same dequantized trits. The model runs
 * int8 activations and int8 stochastically rounded dy, so the match is within the int8
 * quantization tolerance (a few percent), while any wrong or missing term is off by O(1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "testutil.h"

typedef struct ref_model {
    int L, D, H, hd, V, F, hops, T;
    double eps;
    double **an, **qkv, **o, **fn, **w1, **w2; /* dequantized per layer */
    double *gfinal, *head;
    const int32_t *tgt;
} ref_model;

static double *deq(arb_model *m, const char *name, int64_t *rows, int64_t *cols) {
    for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
        const char *nm;
        arb_ternary *w;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, &nm, &w, NULL));
        if (strcmp(nm, name)) continue;
        double *d = malloc(sizeof(double) * (size_t)(w->rows * w->cols));
        for (int64_t r = 0; r < w->rows; r++)
            for (int64_t c = 0; c < w->cols; c++) d[r * w->cols + c] = arb_ternary_get(w, r, c) * (double)w->scale[r];
        if (rows) *rows = w->rows;
        if (cols) *cols = w->cols;
        return d;
    }
    fail_msg("tensor %s not found", name);
    return NULL;
}

static void rms(const double *x, const double *g, int n, int D, double eps, double *y) {
    for (int r = 0; r < n; r++) {
        double s = 0;
        for (int i = 0; i < D; i++) s += x[r * D + i] * x[r * D + i];
        double k = 1.0 / sqrt(s / D + eps);
        for (int i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * k * g[i];
    }
}

static void matvec(const double *W, int rows, int cols, const double *x, int n, double *y) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < rows; o++) {
            double s = 0;
            for (int i = 0; i < cols; i++) s += W[o * cols + i] * x[r * cols + i];
            y[r * rows + o] = s;
        }
}

static void rope(double *v, int t, int hd) {
    for (int i = 0; i < hd / 2; i++) {
        double a = t * pow(10000.0, -2.0 * i / hd), c = cos(a), s = sin(a);
        double x = v[2 * i], y = v[2 * i + 1];
        v[2 * i] = x * c - y * s;
        v[2 * i + 1] = x * s + y * c;
    }
}

/* One sequence (B = 1), full causal edges. Returns mean CE over targets. */
static double ref_loss(const ref_model *R, const double *e) {
    int T = R->T, D = R->D, H = R->H, hd = R->hd, F = R->F;
    double *x = malloc(sizeof(double) * T * D), *h = malloc(sizeof(double) * T * D);
    double *qkv = malloc(sizeof(double) * T * 3 * D), *y = malloc(sizeof(double) * T * D), *y2 = malloc(sizeof(double) * T * D);
    double *u = malloc(sizeof(double) * T * F), *P = malloc(sizeof(double) * T * T);
    double *lg = malloc(sizeof(double) * T * R->V);
    memcpy(x, e, sizeof(double) * T * D);
    for (int l = 0; l < R->L; l++) {
        rms(x, R->an[l], T, D, R->eps, h);
        matvec(R->qkv[l], 3 * D, D, h, T, qkv);
        for (int t = 0; t < T; t++)
            for (int hh = 0; hh < H; hh++) {
                rope(qkv + t * 3 * D + hh * hd, t, hd);
                rope(qkv + t * 3 * D + D + hh * hd, t, hd);
            }
        for (int hh = 0; hh < H; hh++) {
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, s = 0;
                for (int j = 0; j <= i; j++) {
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += qkv[i * 3 * D + hh * hd + c] * qkv[j * 3 * D + D + hh * hd + c];
                    P[i * T + j] = d / sqrt((double)hd);
                    if (P[i * T + j] > mx) mx = P[i * T + j];
                }
                for (int j = 0; j <= i; j++) s += exp(P[i * T + j] - mx);
                for (int j = 0; j <= i; j++) P[i * T + j] = exp(P[i * T + j] - mx) / s;
            }
            for (int i = 0; i < T; i++)
                for (int c = 0; c < hd; c++) y[i * D + hh * hd + c] = qkv[i * 3 * D + 2 * D + hh * hd + c];
            for (int hop = 0; hop < R->hops; hop++) {
                for (int i = 0; i < T; i++)
                    for (int c = 0; c < hd; c++) {
                        double a = 0;
                        for (int j = 0; j <= i; j++) a += P[i * T + j] * y[j * D + hh * hd + c];
                        y2[i * D + hh * hd + c] = a;
                    }
                for (int i = 0; i < T; i++)
                    for (int c = 0; c < hd; c++) y[i * D + hh * hd + c] = y2[i * D + hh * hd + c];
            }
        }
        matvec(R->o[l], D, D, y, T, h);
        for (int k = 0; k < T * D; k++) x[k] += h[k];
        rms(x, R->fn[l], T, D, R->eps, h);
        matvec(R->w1[l], F, D, h, T, u);
        for (int k = 0; k < T * F; k++) u[k] = u[k] > 0 ? u[k] * u[k] : 0;
        matvec(R->w2[l], D, F, u, T, h);
        for (int k = 0; k < T * D; k++) x[k] += h[k];
    }
    rms(x, R->gfinal, T, D, R->eps, h);
    matvec(R->head, R->V, D, h, T, lg);
    double L = 0;
    int cnt = 0;
    for (int t = 0; t < T; t++) {
        if (R->tgt[t] < 0) continue;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < R->V; v++) mx = lg[t * R->V + v] > mx ? lg[t * R->V + v] : mx;
        for (int v = 0; v < R->V; v++) s += exp(lg[t * R->V + v] - mx);
        L += log(s) - (lg[t * R->V + R->tgt[t]] - mx);
        cnt++;
    }
    free(x); free(h); free(qkv); free(y); free(y2); free(u); free(P); free(lg);
    return L / cnt;
}

static void test_text_path_gradient(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    c.enable_vq = c.enable_memory = c.enable_moe = c.enable_output_router = false;
    c.graph_window = 0;
    c.graph_anchors = false;
    c.graph_hops = 2;
    c.dim = 32;
    c.n_heads = 2;
    c.n_layers = 2;
    c.mlp_mult = 2;
    arb_model *m;
    ARB_ASSERT_OK(arb_model_create(&m, &c, 99, arb_cpu()));
    const int T = 12, D = c.dim;
    int32_t tok[12], tgt[12];
    for (int t = 0; t < T; t++) {
        tok[t] = "hello world!"[t];
        tgt[t] = t % 5 == 4 ? -1 : "ello world!!"[t];
    }
    /* the float64 model from the same trits, before the update changes them */
    ref_model R = {.L = c.n_layers, .D = D, .H = c.n_heads, .hd = D / c.n_heads, .V = c.vocab, .F = c.mlp_mult * D,
                   .hops = c.graph_hops, .T = T, .eps = c.norm_eps, .tgt = tgt};
    R.an = calloc(R.L, sizeof(double *)); R.qkv = calloc(R.L, sizeof(double *)); R.o = calloc(R.L, sizeof(double *));
    R.fn = calloc(R.L, sizeof(double *)); R.w1 = calloc(R.L, sizeof(double *)); R.w2 = calloc(R.L, sizeof(double *));
    char nm[64];
    for (int l = 0; l < R.L; l++) {
        snprintf(nm, sizeof nm, "layers.%d.graph.norm", l); R.an[l] = deq(m, nm, NULL, NULL);
        snprintf(nm, sizeof nm, "layers.%d.graph.qkv", l); R.qkv[l] = deq(m, nm, NULL, NULL);
        snprintf(nm, sizeof nm, "layers.%d.graph.out", l); R.o[l] = deq(m, nm, NULL, NULL);
        snprintf(nm, sizeof nm, "layers.%d.mlp.norm", l); R.fn[l] = deq(m, nm, NULL, NULL);
        snprintf(nm, sizeof nm, "layers.%d.mlp.up", l); R.w1[l] = deq(m, nm, NULL, NULL);
        snprintf(nm, sizeof nm, "layers.%d.mlp.down", l); R.w2[l] = deq(m, nm, NULL, NULL);
    }
    R.gfinal = deq(m, "final.norm", NULL, NULL);
    R.head = deq(m, "head", NULL, NULL);
    double *emb = deq(m, "embed", NULL, NULL);
    double *e = malloc(sizeof(double) * T * D);
    for (int t = 0; t < T; t++) memcpy(e + t * D, emb + (size_t)tok[t] * D, sizeof(double) * D);

    arb_loss_parts lp;
    ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, 1, T, true, &lp));
    double L0 = ref_loss(&R, e);
    assert_true(fabs(lp.ce - L0) < 0.02 * L0); /* int8 activations */
    /* eta 0 and no E moves: the trits stay, so several backward passes (different stochastic
     * rounding of dy) can be averaged; what remains is the deterministic int8 error */
    const int reps = 8;
    double *gavg = calloc((size_t)T * D, sizeof(double)), *fd = malloc(sizeof(double) * T * D);
    double rel1 = 0;
    for (int k = 0; k < T * D; k++) {
        double keep = e[k], h = 1e-5;
        e[k] = keep + h; double lp1 = ref_loss(&R, e);
        e[k] = keep - h; double lm1 = ref_loss(&R, e);
        e[k] = keep;
        fd[k] = (lp1 - lm1) / (2 * h);
    }
    for (int r = 0; r < reps; r++) {
        if (r > 0) ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, 1, T, true, &lp));
        arb_model_step_params sp = arb_model_step_params_default(&c);
        sp.update.eta = 0.0f;
        sp.update.update_exp = false;
        sp.update.step = (uint64_t)r;
        ARB_ASSERT_OK(arb_model_backward_update(m, &sp, NULL));
        const float *g = arb_model_embed_grad(m);
        double num = 0, den = 0;
        for (int k = 0; k < T * D; k++) {
            gavg[k] += g[k] / reps;
            num += (g[k] - fd[k]) * (g[k] - fd[k]);
            den += fd[k] * fd[k];
        }
        assert_true(den > 0);
        if (r == 0) rel1 = sqrt(num / den);
    }
    double num = 0, den = 0;
    for (int k = 0; k < T * D; k++) {
        num += (gavg[k] - fd[k]) * (gavg[k] - fd[k]);
        den += fd[k] * fd[k];
    }
    double rel = sqrt(num / den);
    free(gavg);
    free(fd);
    printf("text path: loss model %.5f ref %.5f, d loss/d embedding rel err %.4f (one pass), %.4f (mean of %d)\n",
           lp.ce, L0, rel1, rel, reps);
    assert_true(rel1 < 0.08);
    assert_true(rel < 0.04);
    for (int l = 0; l < R.L; l++) { free(R.an[l]); free(R.qkv[l]); free(R.o[l]); free(R.fn[l]); free(R.w1[l]); free(R.w2[l]); }
    free(R.an); free(R.qkv); free(R.o); free(R.fn); free(R.w1); free(R.w2); free(R.gfinal); free(R.head);
    free(emb); free(e);
    arb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_text_path_gradient)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
