/* The CUDA model against the CPU model on small odd shapes (3 heads of 16, T = 70 so that the
 * attention tiles are partial and the causal masks and bounds are exercised, vocab 271), and one step
 * for every head dim of the fused attention (16, 32, 64, 128) on odd T:
 *   - loss and every tape gradient (the output-gradient rows each tensor's update folds) within
 *     stated float tolerances of the CPU model's, and the forward's quantized inputs (float inputs
 *     within 1e-4 relative until an int8 rounding upstream goes the other way, 5e-3 after it;
 *     int8 codes equal but for rare ties until then, compared by dequantized value after it);
 *   - the integer state after a step bit-identical to the CPU reference rule applied to the GPU's
 *     own tape (the inputs of the integer rule), at step 0 and at step 1 (non-zero accumulators);
 *     against the CPU *model* the trits agree up to a small stated fraction: the glue's float sums
 *     run in another order, so a few dy values land on the other side of a stochastic-rounding
 *     boundary (see the comment in test_step_vs_cpu);
 *   - determinism (two runs: identical trits and losses), fused == deferred updates;
 *   - loss decrease over a few steps; save from the GPU, resume on the GPU bitwise, load on the CPU;
 *   - the fused ReLU² quantization against ReLU² then the plain one and the CPU's, byte for byte.
 * Skips (exit 77) with a clear message without a CUDA device; CI builds it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model_cuda.h"
#include "model/model_internal.h"
#include "testutil.h"
#include "arbitor/cuda.h"
#include "arbitor/train.h"

static arb_model_config small_cfg(void) {
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("cpu-small", &c));
    snprintf(c.name, sizeof c.name, "cuda-test");
    c.vocab = 271;
    c.dim = 48;
    c.n_layers = 2;
    c.n_heads = 3;
    c.ctx = 80;
    c.mlp_mult = 3;
    c.train_batch = 3;
    c.train_seq = 70;
    c.exp_mode = 1; /* every E moves: the E rule runs too */
    c.flip_balance = true;
    c.eta = 6.0f;
    ARB_ASSERT_OK(arb_model_config_validate(&c));
    return c;
}

static void make_batch(int32_t *tok, int32_t *tgt, int64_t n, uint64_t seed) {
    arb_rng_key k = arb_rng_key_make(seed, 99);
    for (int64_t i = 0; i < n; i++) {
        tok[i] = (int32_t)(arb_rand_u32(k, (uint32_t)i) % 256);
        tgt[i] = (int32_t)(arb_rand_u32(k, (uint32_t)(i + n)) % 256);
    }
    tok[0] = ARB_TOK_BOS;
    tgt[5] = -1; /* ignored targets */
    tgt[9] = ARB_TOK_PAD;
}

static void copy_ternary(arb_ternary *dst, const arb_ternary *src) {
    ARB_ASSERT_OK(arb_ternary_init(dst, src->rows, src->cols, src->kind, src->id, arb_cpu()));
    memcpy(dst->trits, src->trits, (size_t)(src->rows_pad * src->cols_pad / 4));
    memcpy(dst->accum, src->accum, (size_t)(src->rows * src->cols));
    if (src->exp) {
        memcpy(dst->exp, src->exp, (size_t)src->rows);
        memcpy(dst->exp_evidence, src->exp_evidence, (size_t)src->rows);
    } else {
        ARB_ASSERT_OK(arb_ternary_fix_exponent(dst));
    }
    ARB_ASSERT_OK(arb_ternary_refresh(dst));
}

/* 0 if equal; else fails naming the first difference when `strict`, or returns the number of
 * differing trits. */
static int64_t diff_state(const arb_ternary *a, const arb_ternary *b, const char *what, bool strict) {
    int64_t nd = 0;
    for (int64_t r = 0; r < a->rows; r++)
        for (int64_t c = 0; c < a->cols; c++)
            if (arb_ternary_get(a, r, c) != arb_ternary_get(b, r, c)) {
                if (strict) fail_msg("%s: trit (%lld, %lld): %d vs %d", what, (long long)r, (long long)c,
                                     arb_ternary_get(a, r, c), arb_ternary_get(b, r, c));
                nd++;
            }
    if (!strict) return nd;
    for (int64_t k = 0; k < a->rows * a->cols; k++)
        if (a->accum[k] != b->accum[k]) fail_msg("%s: T_accum[%lld]: %d vs %d", what, (long long)k, a->accum[k], b->accum[k]);
    if (!a->exp != !b->exp) fail_msg("%s: fixed exponent on one side only", what);
    for (int64_t r = 0; r < a->rows; r++) {
        if (a->exp && a->exp[r] != b->exp[r]) fail_msg("%s: E[%lld]: %d vs %d", what, (long long)r, a->exp[r], b->exp[r]);
        if (a->exp && a->exp_evidence[r] != b->exp_evidence[r])
            fail_msg("%s: evidence[%lld]: %d vs %d", what, (long long)r, a->exp_evidence[r], b->exp_evidence[r]);
        if (a->nnz[r] != b->nnz[r]) fail_msg("%s: nnz[%lld]", what, (long long)r);
        if (memcmp(&a->scale[r], &b->scale[r], sizeof(float))) fail_msg("%s: scale[%lld]", what, (long long)r);
    }
    return 0;
}

static void assert_models_equal(arb_model *a, arb_model *b, const char *what) {
    int32_t n = arb_model_n_ternary(a);
    assert_int_equal(n, arb_model_n_ternary(b));
    for (int32_t i = 0; i < n; i++) {
        const char *name;
        arb_ternary *wa, *wb;
        arb_update_state *sa, *sb;
        ARB_ASSERT_OK(arb_model_ternary_at(a, i, &name, &wa, &sa));
        ARB_ASSERT_OK(arb_model_ternary_at(b, i, NULL, &wb, &sb));
        char buf[160];
        snprintf(buf, sizeof buf, "%s: %s", what, name);
        diff_state(wa, wb, buf, true);
        if (memcmp(sa, sb, sizeof *sa)) fail_msg("%s: update state differs", buf);
    }
    arb_model_state_tensor xa, xb;
    ARB_ASSERT_OK(arb_model_state_at(a, 0, &xa));
    ARB_ASSERT_OK(arb_model_state_at(b, 0, &xb));
    if (memcmp(xa.data, xb.data, (size_t)xa.shape[0])) fail_msg("%s: flip balance differs", what);
}

static arb_model *make_model(const arb_model_config *c, arb_device dev) {
    arb_model *m = NULL;
    ARB_ASSERT_OK(arb_model_create(&m, c, 4242, dev));
    return m;
}

/* The update parameters the model uses for tensor i (arb_mdl_update_prep, restated). */
static arb_update_params params_for(const arb_model_config *c, const arb_model_step_params *sp, const int8_t *bal,
                                    int32_t i, const arb_ternary *w) {
    arb_update_params up = sp->update;
    if (c->flip_balance) up.eta *= arb_ternary_exp_mult(bal[i]);
    if (c->exp_mode == 0 || (c->exp_mode == 2 && w->kind == ARB_TERNARY_GAIN)) up.update_exp = false;
    return up;
}

/* Apply the CPU reference rule to snapshots `pre` with the GPU model's tape and compare with the
 * GPU model's state after its step: bit for bit. */
static void check_rule_on_gpu_tape(arb_model *g, const arb_model_config *c, const arb_model_step_params *sp,
                                   arb_ternary *pre, arb_update_state *pre_st, const int8_t *bal) {
    int32_t n = arb_model_n_ternary(g);
    for (int32_t i = 0; i < n; i++) {
        const char *name;
        arb_ternary *w;
        arb_update_state *st;
        ARB_ASSERT_OK(arb_model_ternary_at(g, i, &name, &w, &st));
        arb_model_tape t;
        ARB_ASSERT_OK(arb_model_tape_copy(g, i, &t));
        assert_true(t.n > 0);
        arb_update_params up = params_for(c, sp, bal, i, &pre[i]);
        arb_update_stats ss = {0}, gs;
        if (t.kind == 0) {
            ARB_ASSERT_OK(arb_ternary_linear_backward_update(&pre[i], t.xq, t.xs, t.dy, t.n, &up, &pre_st[i], &ss));
        } else if (t.kind == 1) {
            ARB_ASSERT_OK(arb_ternary_embedding_backward_update(&pre[i], t.idx, t.dy, t.n, &up, &pre_st[i], &ss));
        } else {
            float *dx = malloc(sizeof(float) * (size_t)(t.n * t.cols));
            ARB_ASSERT_OK(arb_ternary_rmsnorm_backward_update(&pre[i], t.x, t.xs, t.dy, t.n, dx, &up, &pre_st[i], &ss));
            free(dx);
        }
        char buf[160];
        snprintf(buf, sizeof buf, "reference rule on the GPU tape vs GPU state, step %llu, %s",
                 (unsigned long long)sp->update.step, name);
        diff_state(&pre[i], w, buf, true);
        if (memcmp(&pre_st[i], st, sizeof *st)) fail_msg("%s: update state (grad_norm) differs", buf);
        ARB_ASSERT_OK(arb_model_tensor_stats(g, i, &gs));
        if (gs.flips != ss.flips || gs.zeros != ss.zeros || gs.exp_moves != ss.exp_moves)
            fail_msg("%s: stats differ (flips %lld vs %lld)", buf, (long long)gs.flips, (long long)ss.flips);
        arb_model_tape_free(&t);
    }
}

static void snapshot(arb_model *m, arb_ternary *pre, arb_update_state *pre_st, int8_t *bal) {
    int32_t n = arb_model_n_ternary(m);
    for (int32_t i = 0; i < n; i++) {
        arb_ternary *w;
        arb_update_state *st;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, NULL, &w, &st));
        copy_ternary(&pre[i], w);
        pre_st[i] = *st;
    }
    arb_model_state_tensor x;
    ARB_ASSERT_OK(arb_model_state_at(m, 0, &x));
    memcpy(bal, x.data, (size_t)n);
}

/* Each tensor's tape (output-gradient rows and, for linears, the quantized input) against the CPU
 * model's after the same step: tolerances as stated in test_step_vs_cpu. The forward inputs agree
 * within 1e-4 relative until some quantized input upstream (tensors are in forward order) rounds
 * the other way: one int8 step is up to 1/127 of its row's scale, so from there on the floats
 * downstream may differ by up to 5e-3 (the printed values show how far they move). Why 5e-3 (it
 * was 2e-3 with float32-accurate attention products): the attention runs its products in split
 * bf16 (~1e-5 relative, src/cuda/model_glue.cu), a little more than float32 summation order, so
 * a few more int8 roundings flip (the attention output's xq diff is now a few per 10k instead
 * of 0), and every flip moves its whole row downstream by a quantization step: on the 2-layer
 * model of test_step_vs_cpu the last inputs moved 2.4e-3 in the first run of the new kernels. */
static void check_tapes_vs_cpu(arb_model *mc, arb_model *mg, int64_t *trit_diff, int64_t *trits) {
    int32_t np = arb_model_n_ternary(mg);
    bool upstream_flip = false;
    for (int32_t i = 0; i < np; i++) {
        const char *name;
        arb_ternary *wc, *wg;
        ARB_ASSERT_OK(arb_model_ternary_at(mc, i, &name, &wc, NULL));
        ARB_ASSERT_OK(arb_model_ternary_at(mg, i, NULL, &wg, NULL));
        arb_model_tape tc, tg;
        ARB_ASSERT_OK(arb_model_tape_copy(mc, i, &tc));
        ARB_ASSERT_OK(arb_model_tape_copy(mg, i, &tg));
        assert_int_equal(tc.n, tg.n);
        assert_int_equal(tc.kind, tg.kind);
        size_t ndy = (size_t)(tc.n * (tc.kind == 0 ? tc.rows : tc.cols));
        double e = arb_test_rel_l2(tg.dy, tc.dy, ndy);
        double ex = 0, vq = 0;
        int64_t qd = 0, qn = 0;
        int maxd = 0;
        if (tc.kind == 0) {
            ex = arb_test_rel_l2(tg.xs, tc.xs, (size_t)tc.n);
            double num = 0, den = 0; /* the dequantized inputs xq·xs: what the int8 codes stand for */
            for (int64_t r = 0; r < tc.n; r++)
                for (int64_t c = 0; c < tc.cols_pad; c++) {
                    const int64_t k = r * tc.cols_pad + c;
                    const int d = abs(tc.xq[k] - tg.xq[k]);
                    if (d) qd++;
                    if (d > maxd) maxd = d;
                    const double a = (double)tg.xq[k] * tg.xs[r], b = (double)tc.xq[k] * tc.xs[r];
                    num += (a - b) * (a - b);
                    den += b * b;
                }
            vq = den > 0 ? sqrt(num / den) : sqrt(num);
            qn = tc.n * tc.cols_pad;
        } else if (tc.kind == 2) {
            ex = arb_test_rel_l2(tg.x, tc.x, (size_t)(tc.n * tc.cols));
        } else {
            assert_memory_equal(tc.idx, tg.idx, sizeof(int32_t) * (size_t)tc.n);
        }
        int64_t td = diff_state(wc, wg, name, false);
        *trit_diff += td;
        *trits += wc->rows * wc->cols;
        print_message("  %-22s dy rel %.2e  input rel %.2e  xq diff %lld/%lld (max %d, values rel %.2e)  trits diff %lld\n",
                      name, e, ex, (long long)qd, (long long)qn, maxd, vq, (long long)td);
        if (!(e < 2e-2)) fail_msg("%s: gradient rel L2 %.3e vs the CPU model", name, e);
        const double xtol = upstream_flip ? 5e-3 : 1e-4;
        if (!(ex < xtol)) fail_msg("%s: input rel L2 %.3e vs the CPU model (tolerance %.0e)", name, ex, xtol);
        if (!upstream_flip) {
            /* the same codes except rare ties: ≤ 1% of them, by at most ±2 */
            if (maxd > 2) fail_msg("%s: a quantized input differs by %d", name, maxd);
            if (qn && qd * 100 > qn)
                fail_msg("%s: %lld of %lld quantized inputs differ", name, (long long)qd, (long long)qn);
        } else if (!(vq < 2e-2)) {
            /* Once an upstream code has flipped, rows move (a row whose absmax moved re-scales all
             * its codes), so codes are no longer comparable one by one: the values they stand for
             * are. 2e-2, as for the gradients: the float inputs may differ by 5e-3 (above), and each
             * code that rounds the other way adds a step, which on ReLU² rows (absmax ~10× the
             * rms) is ~8e-2 of the rms: 0.85% such codes (seen) give ~7e-3; a wrong kernel gives
             * O(1). Seen in the first runs of the split-bf16 attention: 0.85% of codes differing,
             * |Δ| up to 3 (this check itself has not run on a GPU yet: the session's device
             * calls were spent). */
            fail_msg("%s: dequantized inputs rel L2 %.3e vs the CPU model (tolerance 2e-2)", name, vq);
        }
        if (qd) upstream_flip = true;
        arb_model_tape_free(&tc);
        arb_model_tape_free(&tg);
    }
}

static void test_step_vs_cpu(void **state) {
    (void)state;
    const arb_model_config c = small_cfg();
    const int64_t B = 3, T = 70, N = B * T;
    arb_model *mc = make_model(&c, arb_cpu()), *mg = make_model(&c, arb_cuda(0));
    assert_int_equal(arb_model_device(mg).kind, ARB_DEVICE_CUDA);
    int32_t np = arb_model_n_ternary(mg);
    arb_ternary *pre = calloc((size_t)np, sizeof *pre);
    arb_update_state *pre_st = calloc((size_t)np, sizeof *pre_st);
    int8_t *bal = calloc((size_t)np, 1);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N), *tgt = malloc(sizeof(int32_t) * (size_t)N);
    arb_model_step_params sp = arb_model_step_params_default(&c);
    sp.update.seed = 77;
    for (int step = 0; step < 2; step++) {
        make_batch(tok, tgt, N, (uint64_t)step + 1);
        arb_loss_parts lc, lg;
        ARB_ASSERT_OK(arb_model_forward(mc, tok, tgt, B, T, true, &lc));
        ARB_ASSERT_OK(arb_model_forward(mg, tok, tgt, B, T, true, &lg));
        assert_int_equal(lc.n_targets, lg.n_targets);
        assert_int_equal(lg.n_targets, N - 2);
        print_message("step %d: loss cpu %.7f cuda %.7f (rel %.2e)\n", step, lc.ce, lg.ce, fabs(lc.ce - lg.ce) / lc.ce);
        /* 2e-4: the int8 flips described at check_tapes_vs_cpu reach the loss (4.6e-5 seen) */
        if (step == 0) assert_true(fabs(lc.ce - lg.ce) <= 2e-4 * lc.ce);
        snapshot(mg, pre, pre_st, bal);
        sp.update.step = (uint64_t)step;
        arb_model_step_stats sc, sg;
        ARB_ASSERT_OK(arb_model_backward_update(mc, &sp, &sc));
        ARB_ASSERT_OK(arb_model_backward_update(mg, &sp, &sg));
        check_rule_on_gpu_tape(mg, &c, &sp, pre, pre_st, bal);
        if (step == 0) {
            /* Gradients against the CPU model (same initial state, same batch). Each tensor's tape
             * holds the output-gradient rows of its use and (linears) its quantized input.
             * Tolerances: the loss within 2e-4 relative; dy within 2e-2 relative L2 (float32 glue
             * with another summation order; the dy quantization of backward_x is stochastic, so a
             * last-bit difference moves a rare element by one int8 step, and those propagate down
             * through the layers: the printed values show the growth); quantized inputs equal
             * except for rare round-to-nearest ties (≥ 99% of elements, |Δ| ≤ 1 ... 2). */
            int64_t trit_diff = 0, trits = 0;
            check_tapes_vs_cpu(mc, mg, &trit_diff, &trits);
            /* Trits against the CPU model after one step: the same rule on inputs that differ
             * only where float rounding moved a stochastic-rounding draw across a boundary. */
            print_message("  trits differing from the CPU model after step 0: %lld of %lld\n", (long long)trit_diff,
                          (long long)trits);
            assert_true(trit_diff * 1000 <= trits);
            assert_true(llabs(sc.flips - sg.flips) * 20 <= sc.flips + 20);
        }
        for (int32_t i = 0; i < np; i++) arb_ternary_free(&pre[i]);
    }
    free(tok);
    free(tgt);
    free(pre);
    free(pre_st);
    free(bal);
    arb_model_free(mc);
    arb_model_free(mg);
}

/* The fused attention against the CPU model's graph path for every head dim it runs, on odd T
 * (partial 64-row tiles; T > 64 for several tiles and the causal tile skip): one training step,
 * loss and every tape within the tolerances of test_step_vs_cpu (the qkv tape's dy is the
 * attention backward's output, the o tape's input its forward's). */
static void test_attention_head_dims(void **state) {
    (void)state;
    static const struct { int hd, H, T; } cases[] = {{16, 3, 69}, {32, 2, 67}, {64, 2, 131}, {128, 1, 65}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        arb_model_config c = small_cfg();
        c.n_heads = cases[k].H;
        c.dim = cases[k].H * cases[k].hd;
        c.n_layers = 1;
        c.ctx = 160;
        c.train_seq = cases[k].T;
        c.rotary = k != 1; /* rotary is applied inside the attention kernels: once without */
        ARB_ASSERT_OK(arb_model_config_validate(&c));
        const int64_t B = 2, T = cases[k].T, N = B * T;
        print_message("head dim %d, %d heads, T %lld, rotary %s\n", cases[k].hd, cases[k].H, (long long)T,
                      c.rotary ? "on" : "off");
        arb_model *mc = make_model(&c, arb_cpu()), *mg = make_model(&c, arb_cuda(0));
        int32_t *tok = malloc(sizeof(int32_t) * (size_t)N), *tgt = malloc(sizeof(int32_t) * (size_t)N);
        make_batch(tok, tgt, N, 5 + k);
        arb_loss_parts lc, lg;
        ARB_ASSERT_OK(arb_model_forward(mc, tok, tgt, B, T, true, &lc));
        ARB_ASSERT_OK(arb_model_forward(mg, tok, tgt, B, T, true, &lg));
        print_message("  loss cpu %.7f cuda %.7f\n", lc.ce, lg.ce);
        assert_true(fabs(lc.ce - lg.ce) <= 1e-4 * lc.ce);
        arb_model_step_params sp = arb_model_step_params_default(&c);
        sp.update.seed = 11;
        ARB_ASSERT_OK(arb_model_backward_update(mc, &sp, NULL));
        ARB_ASSERT_OK(arb_model_backward_update(mg, &sp, NULL));
        int64_t td = 0, tn = 0;
        check_tapes_vs_cpu(mc, mg, &td, &tn);
        free(tok);
        free(tgt);
        arb_model_free(mc);
        arb_model_free(mg);
    }
}

/* Determinism and fused == deferred: three models, six steps, identical losses and state. */
static void test_determinism(void **state) {
    (void)state;
    const arb_model_config c = small_cfg();
    const int64_t B = 3, T = 70, N = B * T;
    arb_model *a = make_model(&c, arb_cuda(0)), *b = make_model(&c, arb_cuda(0)), *d = make_model(&c, arb_cuda(0));
    arb_model_cuda_set_fused(d, false);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N), *tgt = malloc(sizeof(int32_t) * (size_t)N);
    arb_model_step_params sp = arb_model_step_params_default(&c);
    sp.update.seed = 3;
    int64_t flips = 0;
    for (int step = 0; step < 6; step++) {
        make_batch(tok, tgt, N, (uint64_t)step + 10);
        arb_loss_parts la, lb, ld;
        ARB_ASSERT_OK(arb_model_forward(a, tok, tgt, B, T, true, &la));
        ARB_ASSERT_OK(arb_model_forward(b, tok, tgt, B, T, true, &lb));
        ARB_ASSERT_OK(arb_model_forward(d, tok, tgt, B, T, true, &ld));
        assert_memory_equal(&la.ce, &lb.ce, sizeof(double));
        assert_memory_equal(&la.ce, &ld.ce, sizeof(double));
        sp.update.step = (uint64_t)step;
        arb_model_step_stats sa, sb, sd;
        ARB_ASSERT_OK(arb_model_backward_update(a, &sp, &sa));
        ARB_ASSERT_OK(arb_model_backward_update(b, &sp, &sb));
        ARB_ASSERT_OK(arb_model_backward_update(d, &sp, &sd));
        assert_int_equal(sa.flips, sb.flips);
        assert_int_equal(sa.flips, sd.flips);
        flips += sa.flips;
    }
    assert_true(flips > 0); /* the state moved: the comparison below is not vacuous */
    assert_models_equal(a, b, "two CUDA runs");
    assert_models_equal(a, d, "fused vs deferred updates");
    /* eval forward and next-token logits agree with a training forward's loss path */
    float *la = malloc(sizeof(float) * (size_t)c.vocab), *lb = malloc(sizeof(float) * (size_t)c.vocab);
    ARB_ASSERT_OK(arb_model_logits_last(a, tok, 23, la));
    ARB_ASSERT_OK(arb_model_logits_last(b, tok, 23, lb));
    assert_memory_equal(la, lb, sizeof(float) * (size_t)c.vocab);
    for (int v = 0; v < c.vocab; v++) assert_true(isfinite(la[v]));
    free(la);
    free(lb);
    free(tok);
    free(tgt);
    arb_model_free(a);
    arb_model_free(b);
    arb_model_free(d);
}

/* A few steps on one fixed batch of text: the loss must fall. */
static void test_loss_decreases(void **state) {
    (void)state;
    arb_model_config c = small_cfg();
    c.exp_mode = 0;
    const int64_t B = 4, T = 64, N = B * T;
    const char *text = "to be or not to be, that is the question. whether 'tis nobler in the mind to suffer ";
    size_t L = strlen(text);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N), *tgt = malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            tok[b * T + t] = (uint8_t)text[(size_t)(b * 7 + t) % L];
            tgt[b * T + t] = (uint8_t)text[(size_t)(b * 7 + t + 1) % L];
        }
    arb_model *m = make_model(&c, arb_cuda(0));
    arb_model_step_params sp = arb_model_step_params_default(&c);
    sp.update.seed = 9;
    double first = 0, last = 0;
    for (int step = 0; step < 40; step++) {
        arb_loss_parts lp;
        ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, B, T, true, &lp));
        if (step == 0) first = lp.ce;
        last = lp.ce;
        sp.update.step = (uint64_t)step;
        ARB_ASSERT_OK(arb_model_backward_update(m, &sp, NULL));
    }
    print_message("loss %.4f -> %.4f over 40 steps\n", first, last);
    assert_true(last < 0.8 * first);
    free(tok);
    free(tgt);
    arb_model_free(m);
}

/* Save from the GPU at step 3, resume on the GPU, 3 more steps == 6 straight steps, bit for bit;
 * the checkpoint loads on the CPU with the same tensors and a loss within tolerance. */
static void test_save_resume(void **state) {
    (void)state;
    const arb_model_config c = small_cfg();
    static char text[40000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = "abcdefgh ijklmnop\nqrstuvwxyz,.;"[(i * i + 3 * i) % 31];
    arb_corpus corpus;
    ARB_ASSERT_OK(arb_corpus_from_memory(&corpus, text, sizeof text, "synthetic"));
    arb_train_options o = arb_train_options_default(&c);
    o.steps = 6;
    o.batch = 3;
    o.seq = 48;
    o.eval_windows = 8;
    o.device = arb_cuda(0);
    char dir[256], path[320];
    assert_int_equal(arb_test_tmpdir_make(dir, sizeof dir, "arb-cuda-model"), 0);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    arb_trainer *a, *b;
    double la[6], lb[6];
    ARB_ASSERT_OK(arb_trainer_create(&a, &c, &corpus, &o));
    for (int s = 0; s < 6; s++) ARB_ASSERT_OK(arb_trainer_step(a, &la[s]));
    ARB_ASSERT_OK(arb_trainer_create(&b, &c, &corpus, &o));
    for (int s = 0; s < 3; s++) ARB_ASSERT_OK(arb_trainer_step(b, &lb[s]));
    ARB_ASSERT_OK(arb_trainer_save(b, path));
    arb_trainer_free(b);
    ARB_ASSERT_OK(arb_trainer_resume(&b, path, &corpus, &c, &o));
    assert_int_equal(arb_model_device(b->model).kind, ARB_DEVICE_CUDA);
    for (int s = 3; s < 6; s++) ARB_ASSERT_OK(arb_trainer_step(b, &lb[s]));
    assert_memory_equal(la, lb, sizeof la);
    assert_models_equal(a->model, b->model, "6 steps vs 3 + save + resume + 3");
    double va, vb;
    ARB_ASSERT_OK(arb_trainer_evaluate(a, &va));
    ARB_ASSERT_OK(arb_trainer_evaluate(b, &vb));
    assert_memory_equal(&va, &vb, sizeof va);
    /* save from the GPU again and load the model on the CPU */
    ARB_ASSERT_OK(arb_trainer_save(a, path));
    arb_model *mc = NULL;
    ARB_ASSERT_OK(arb_checkpoint_load_model(path, arb_cpu(), &mc));
    assert_models_equal(a->model, mc, "GPU checkpoint loaded on the CPU");
    int32_t tok[48], tgt[48];
    for (int i = 0; i < 48; i++) {
        tok[i] = (uint8_t)text[1000 + i];
        tgt[i] = (uint8_t)text[1001 + i];
    }
    arb_loss_parts pg, pc;
    ARB_ASSERT_OK(arb_model_forward(a->model, tok, tgt, 1, 48, false, &pg));
    ARB_ASSERT_OK(arb_model_forward(mc, tok, tgt, 1, 48, false, &pc));
    print_message("val: %.6f; one window: cuda %.6f cpu %.6f\n", va, pg.ce, pc.ce);
    /* 2e-3: after 6 steps the attention is sharper, so its split-bf16 products (~1e-5) flip more
     * int8 roundings downstream than on a fresh model (4.6e-4 seen; a wrong kernel gives 1e-1) */
    assert_true(fabs(pg.ce - pc.ce) <= 2e-3 * pc.ce);
    arb_model_free(mc);
    arb_trainer_free(a);
    arb_trainer_free(b);
    arb_corpus_free(&corpus);
    arb_test_tmpdir_remove(dir);
}

/* The quantization that forms ReLU²(u) as it reads (the MLP's second linear) against ReLU² then
 * the plain quantization, and both against the CPU's arb_quantize_rows of the host ReLU²: the same
 * bytes and scales, on the model's vectorized widths (384, 1536: kernels specialized by width),
 * another multiple of 128, and the general kernel (odd columns). */
static void test_fused_relu2_quantize(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {{37, 384, 384}, {5, 1536, 1536}, {6, 640, 656}, {9, 61, 64}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t rows = shapes[k][0], cols = shapes[k][1], ld = shapes[k][2], n = rows * cols;
        float *u = malloc(sizeof(float) * (size_t)n), *du = NULL, *dr = NULL, *s1 = NULL, *s2 = NULL;
        int8_t *q1 = NULL, *q2 = NULL;
        arb_test_fill_f32(u, (size_t)n, 31 + k, -2.0f, 2.0f);
        for (int64_t c = 0; c < cols; c++) u[2 * cols + c] = -1.0f; /* a row that ReLU² zeroes */
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&du, sizeof(float) * (size_t)n));
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&dr, sizeof(float) * (size_t)n));
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&s1, sizeof(float) * (size_t)rows));
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&s2, sizeof(float) * (size_t)rows));
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&q1, (size_t)(rows * ld)));
        ARB_ASSERT_OK(arb_cuda_malloc((void **)&q2, (size_t)(rows * ld)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(du, u, sizeof(float) * (size_t)n));
        ARB_ASSERT_OK(arb_mcu_relu2(du, n, dr));
        ARB_ASSERT_OK(arb_cuda_quantize_rows(dr, rows, cols, ld, q1, s1));
        ARB_ASSERT_OK(arb_mcu_quantize_rows_relu2(du, rows, cols, ld, q2, s2));
        int8_t *h1 = malloc((size_t)(rows * ld)), *h2 = malloc((size_t)(rows * ld));
        float *f1 = malloc(sizeof(float) * (size_t)rows), *f2 = malloc(sizeof(float) * (size_t)rows);
        ARB_ASSERT_OK(arb_cuda_copy_d2h(h1, q1, (size_t)(rows * ld)));
        ARB_ASSERT_OK(arb_cuda_copy_d2h(h2, q2, (size_t)(rows * ld)));
        ARB_ASSERT_OK(arb_cuda_copy_d2h(f1, s1, sizeof(float) * (size_t)rows));
        ARB_ASSERT_OK(arb_cuda_copy_d2h(f2, s2, sizeof(float) * (size_t)rows));
        assert_memory_equal(h1, h2, (size_t)(rows * ld));
        assert_memory_equal(f1, f2, sizeof(float) * (size_t)rows);
        assert_true(f1[2] == 0.0f && f1[0] > 0.0f);
        /* the CPU reference: glue.c's ReLU² (v·v, no contraction), then arb_quantize_rows */
        float *r = malloc(sizeof(float) * (size_t)n), *f3 = malloc(sizeof(float) * (size_t)rows);
        int8_t *h3 = malloc((size_t)(rows * ld));
        for (int64_t i = 0; i < n; i++) {
            volatile float sq = u[i] * u[i];
            r[i] = u[i] > 0.0f ? sq : 0.0f;
        }
        ARB_ASSERT_OK(arb_quantize_rows(r, rows, cols, ld, h3, f3));
        assert_memory_equal(h1, h3, (size_t)(rows * ld));
        assert_memory_equal(f1, f3, sizeof(float) * (size_t)rows);
        free(r);
        free(f3);
        free(h3);
        free(h1);
        free(h2);
        free(f1);
        free(f2);
        free(u);
        arb_cuda_free(du);
        arb_cuda_free(dr);
        arb_cuda_free(s1);
        arb_cuda_free(s2);
        arb_cuda_free(q1);
        arb_cuda_free(q2);
    }
}

/* Components the CUDA model does not run yet are refused with one line. */
static void test_unsupported(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    arb_model *m = NULL;
    assert_int_equal(arb_model_create(&m, &c, 1, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(arb_last_error(), "CUDA model"));
    assert_null(strchr(arb_last_error(), '\n'));
    /* a head dim the fused attention has no kernel for */
    c = small_cfg();
    c.dim = 40;
    c.n_heads = 2;
    ARB_ASSERT_OK(arb_model_config_validate(&c));
    assert_int_equal(arb_model_create(&m, &c, 1, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(arb_last_error(), "heads of 20"));
}

int main(void) {
    if (arb_cuda_device_count() <= 0) {
        printf("SKIP: no CUDA device (the CUDA model tests need a GPU)\n");
        return ARB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported),      cmocka_unit_test(test_step_vs_cpu),
        cmocka_unit_test(test_attention_head_dims), cmocka_unit_test(test_fused_relu2_quantize),
        cmocka_unit_test(test_determinism),      cmocka_unit_test(test_loss_decreases),
        cmocka_unit_test(test_save_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
