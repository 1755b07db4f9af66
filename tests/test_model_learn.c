/* The model learns, deterministically: loss falls on a tiny repetitive corpus within a few
 * dozen steps (fails if the update moved WITH the gradient: the loss then rises), the
 * all-components config trains too, same seed + data → identical trits for 1 and 2 threads,
 * logits_last agrees with the training forward's loss, and bad calls fail cleanly. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char k_corpus[] = "the cat sat on the mat. the dog sat on the log. ";

static void make_batch(int B, int T, int step, int32_t *tok, int32_t *tgt) {
    int L = (int)strlen(k_corpus);
    for (int b = 0; b < B; b++) {
        int o = (step * 7 + b * 13) % L;
        for (int t = 0; t < T; t++) {
            tok[b * T + t] = (unsigned char)k_corpus[(o + t) % L];
            tgt[b * T + t] = (unsigned char)k_corpus[(o + t + 1) % L];
        }
    }
}

/* Trains `steps` steps; returns the CE of step 0 and the mean CE of the last 5 steps. */
static void train(arb_model_config *c, int steps, double *first, double *last, arb_model **keep) {
    arb_model *m;
    ARB_ASSERT_OK(arb_model_create(&m, c, 42, arb_cpu()));
    int B = c->train_batch, T = c->train_seq;
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    *first = *last = 0;
    for (int s = 0; s < steps; s++) {
        make_batch(B, T, s, tok, tgt);
        arb_loss_parts lp;
        ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, B, T, true, &lp));
        assert_true(isfinite(lp.total) && lp.ce > 0);
        if (s == 0) *first = lp.ce;
        if (s >= steps - 5) *last += lp.ce / 5;
        arb_model_step_params sp = arb_model_step_params_default(c);
        sp.update.seed = 5;
        sp.update.step = (uint64_t)s;
        arb_model_step_stats ss;
        ARB_ASSERT_OK(arb_model_backward_update(m, &sp, &ss));
        assert_true(ss.weights > 0);
    }
    free(tok);
    free(tgt);
    if (keep) *keep = m;
    else arb_model_free(m);
}

static void text_config(arb_model_config *c) {
    ARB_ASSERT_OK(arb_model_config_named("tiny", c));
    c->enable_vq = c->enable_memory = c->enable_moe = c->enable_output_router = false;
    c->graph_window = 0;
    c->graph_hops = 1;
    c->dim = 64;
    c->n_heads = 2;
    c->train_batch = 8;
    c->train_seq = 32;
}

static void test_loss_falls_text(void **state) {
    (void)state;
    arb_model_config c;
    text_config(&c);
    double first, last;
    train(&c, 60, &first, &last, NULL);
    printf("text: first %.3f last %.3f\n", first, last);
    assert_true(first > 4.5);        /* ~ln(272) at init */
    assert_true(last < first - 2.0); /* a wrong-sign rule rises instead */
}

static void test_loss_falls_all_components(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    c.dim = 64;
    c.n_heads = 2;
    c.train_batch = 8;
    double first, last;
    arb_model *m;
    train(&c, 60, &first, &last, &m);
    printf("all components: first %.3f last %.3f\n", first, last);
    assert_true(last < first - 1.5);
    /* memory slots moved (update_memory ran) and the VQ usage counters count every position */
    int64_t used = 0;
    arb_model_state_tensor st;
    ARB_ASSERT_OK(arb_model_state_at(m, 1, &st));
    assert_string_equal(st.name, "vq.usage");
    for (int64_t k = 0; k < st.shape[0]; k++) used += ((int32_t *)st.data)[k];
    assert_int_equal(used, (int64_t)60 * c.train_batch * c.train_seq);
    bool slots_moved = false;
    for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
        const char *nm;
        arb_update_stats s;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, &nm, NULL, NULL));
        ARB_ASSERT_OK(arb_model_tensor_stats(m, i, &s));
        if (strstr(nm, "memory.slots")) slots_moved |= s.weights > 0;
    }
    assert_true(slots_moved);
    arb_model_free(m);
}

static void snapshot(arb_model *m, unsigned char **buf, size_t *len) {
    size_t n = 0;
    for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
        arb_ternary *w;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, NULL, &w, NULL));
        n += (size_t)(w->rows_pad * w->cols_pad / 4) + (size_t)(w->rows * w->cols) + (w->exp ? 2 * (size_t)w->rows : 0);
    }
    unsigned char *b = malloc(n), *p = b;
    for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
        arb_ternary *w;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, NULL, &w, NULL));
        memcpy(p, w->trits, (size_t)(w->rows_pad * w->cols_pad / 4)); p += w->rows_pad * w->cols_pad / 4;
        memcpy(p, w->accum, (size_t)(w->rows * w->cols)); p += w->rows * w->cols;
        if (w->exp) { /* fixed exponents have none */
            memcpy(p, w->exp, (size_t)w->rows); p += w->rows;
            memcpy(p, w->exp_evidence, (size_t)w->rows); p += w->rows;
        }
    }
    *buf = b;
    *len = n;
}

static void test_deterministic_threads(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    unsigned char *a, *b;
    size_t la, lb;
    double f, l1, l2;
    arb_model *m;
    omp_set_num_threads(1);
    arb_set_num_threads(1);
    train(&c, 6, &f, &l1, &m);
    snapshot(m, &a, &la);
    arb_model_free(m);
    omp_set_num_threads(2);
    arb_set_num_threads(2);
    train(&c, 6, &f, &l2, &m);
    snapshot(m, &b, &lb);
    arb_model_free(m);
    omp_set_num_threads(1);
    arb_set_num_threads(1);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_true(l1 == l2);
    free(a);
    free(b);
}

static void test_logits_and_errors(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    arb_model *m;
    ARB_ASSERT_OK(arb_model_create(&m, &c, 3, arb_cpu()));
    int T = 20;
    int32_t tok[20], tgt[20];
    for (int i = 0; i < T; i++) {
        tok[i] = i == 0 ? ARB_TOK_BOS : 'a' + i % 5;
        tgt[i] = -1;
    }
    tgt[T - 1] = 'q';
    float *lg = malloc(sizeof(float) * (size_t)c.vocab);
    ARB_ASSERT_OK(arb_model_logits_last(m, tok, T, lg));
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < c.vocab; i++) mx = lg[i] > mx ? lg[i] : mx;
    for (int i = 0; i < c.vocab; i++) s += exp(lg[i] - mx);
    double ce = log(s) - (lg['q'] - mx);
    arb_loss_parts lp;
    ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, 1, T, false, &lp));
    assert_int_equal(lp.n_targets, 1);
    assert_true(fabs(lp.ce - ce) < 1e-4);
    /* errors */
    arb_model_step_params sp = arb_model_step_params_default(&c);
    assert_int_equal(arb_model_backward_update(m, &sp, NULL), ARB_ERR_INVALID_ARG); /* eval forward: no tape */
    assert_int_equal(arb_model_forward(m, tok, tgt, 1, c.ctx + 1, false, &lp), ARB_ERR_SHAPE);
    tok[3] = c.vocab;
    assert_int_equal(arb_model_forward(m, tok, tgt, 1, T, false, &lp), ARB_ERR_INVALID_ARG);
    tok[3] = 'a';
    assert_int_equal(arb_model_forward(m, tok, NULL, 1, T, true, &lp), ARB_ERR_INVALID_ARG);
    free(lg);
    arb_model_free(m);
}

/* exp_mode 0 keeps every E at 0; mode 2 keeps the norm gains' E and moves others' */
static void test_exp_modes(void **state) {
    (void)state;
    for (int mode = 0; mode <= 2; mode += 2) {
        arb_model_config c;
        text_config(&c);
        c.exp_mode = mode;
        c.exp_threshold = 1; /* every bit of evidence moves E: a short run shows the rule */
        double f, l;
        arb_model *m;
        train(&c, 4, &f, &l, &m);
        int64_t moved_gain = 0, moved_other = 0;
        for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
            arb_ternary *w;
            ARB_ASSERT_OK(arb_model_ternary_at(m, i, NULL, &w, NULL));
            for (int64_t r = 0; r < w->rows; r++) {
                if (!w->exp || w->exp[r] == 0) continue; /* no E state: fixed at 0 */
                if (w->kind == ARB_TERNARY_GAIN) moved_gain++;
                else moved_other++;
            }
        }
        assert_int_equal(moved_gain, 0);
        if (mode == 0) assert_int_equal(moved_other, 0);
        else assert_true(moved_other > 0);
        arb_model_free(m);
    }
}

/* The reference's full smoke at the seed shape (width 512, vocab 297, VQ + graph + memory +
 * MoE/ACT + output router): one sequence of 8 tokens, 7 targets, one training step; every
 * gradient-trained tensor and every memory bank takes its update. */
static void test_seed_smoke(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("seed", &c));
    arb_model *m;
    ARB_ASSERT_OK(arb_model_create(&m, &c, 1, arb_cpu()));
    int32_t tok[8] = {ARB_TOK_BOS, ARB_TOK_IMAGE_BEGIN, ARB_TOK_IMAGE_END, 'h', 'e', 'l', 'l', 'o'};
    int32_t tgt[8] = {ARB_TOK_IMAGE_BEGIN, ARB_TOK_IMAGE_END, 'h', 'e', 'l', 'l', 'o', -1};
    arb_loss_parts lp;
    ARB_ASSERT_OK(arb_model_forward(m, tok, tgt, 1, 8, true, &lp));
    printf("seed smoke: loss %.4f (ce %.4f vq %.4f ponder %.3f router %.4f, act iters %.2f), targets %lld\n", lp.total,
           lp.ce, lp.vq_commit, lp.ponder, lp.router, lp.act_iters, (long long)lp.n_targets);
    assert_int_equal(lp.n_targets, 7);
    assert_true(isfinite(lp.total) && lp.ce > 0 && lp.vq_commit > 0 && lp.ponder >= 1 && lp.router > 0);
    arb_model_step_params sp = arb_model_step_params_default(&c);
    arb_model_step_stats ss;
    ARB_ASSERT_OK(arb_model_backward_update(m, &sp, &ss));
    for (int32_t i = 0; i < arb_model_n_ternary(m); i++) {
        const char *nm;
        arb_update_stats us;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, &nm, NULL, NULL));
        ARB_ASSERT_OK(arb_model_tensor_stats(m, i, &us));
        if (us.weights == 0) fail_msg("tensor %s took no update", nm);
    }
    arb_model_free(m);
}

int main(void) {
    /* One thread unless a test asks for more: CTest runs tests side by side on small
     * machines, where OpenMP barriers of oversubscribed threads spin (results are the same
     * for any thread count: test_deterministic_threads) */
    omp_set_num_threads(1);
    arb_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_text), cmocka_unit_test(test_loss_falls_all_components),
        cmocka_unit_test(test_deterministic_threads), cmocka_unit_test(test_logits_and_errors),
        cmocka_unit_test(test_exp_modes), cmocka_unit_test(test_seed_smoke)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
