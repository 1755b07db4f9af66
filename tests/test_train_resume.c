/* Training determinism and checkpoint validation.
 * - N steps straight vs N/2 + save + resume + N/2: every trit, accumulator, exponent, evidence
 *   counter, update state, extra state tensor and every step's loss must be bitwise equal
 *   (cosine schedule and flip-rate controller).
 * - A run with 1 thread equals a run with 2 threads.
 * - A damaged checkpoint (missing / extra tensor, wrong shape or dtype, bad codes, truncated,
 *   missing metadata, other config, other data) is refused with a one-line error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbitor/safetensors.h"
#include "arbitor/train.h"
#include "testutil.h"

#define N_STEPS 6

static char g_dir[256];

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

/* Some English-like bytes: words drawn from a small list by the counter RNG. */
static void make_corpus(arb_corpus *c, uint64_t seed) {
    static const char *words[] = {"the", "king", "shall", "not", "be", "moved", "and", "yet", "my", "lord",
                                  "speak", "of", "love", "night", "day", "sweet", "o", "thou", "art", "here"};
    size_t n = 24000;
    char *buf = malloc(n);
    assert_non_null(buf);
    arb_rng_key k = arb_rng_key_make(seed, 99);
    size_t off = 0;
    for (uint32_t i = 0; off < n; i++) {
        const char *w = words[arb_rand_u32(k, i) % 20];
        for (const char *p = w; *p && off < n; p++) buf[off++] = *p;
        if (off < n) buf[off++] = (arb_rand_u32(k, i + 1000000u) % 9 == 0) ? '\n' : ' ';
    }
    ARB_ASSERT_OK(arb_corpus_from_memory(c, buf, n, "words"));
    free(buf);
}

static arb_model_config tiny_cfg(void) {
    arb_model_config cfg;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &cfg));
    return cfg;
}

static arb_train_options tiny_opts(const arb_model_config *cfg, arb_schedule_mode mode) {
    arb_train_options o = arb_train_options_default(cfg);
    o.steps = N_STEPS;
    o.seed = 4242;
    o.batch = 2;
    o.seq = 16;
    o.eval_windows = 3;
    o.sched.mode = mode;
    if (mode == ARB_SCHED_FLIP) {
        o.sched.ctrl_gain = 0.5;
        o.gain_eta_mult = 0.5; /* norm gains start at half pressure */
    }
    return o;
}

/* Every piece of model state, bitwise. */
static void assert_same_model(arb_model *a, arb_model *b) {
    int32_t n = arb_model_n_ternary(a);
    assert_int_equal(n, arb_model_n_ternary(b));
    assert_true(n > 0);
    for (int32_t i = 0; i < n; i++) {
        const char *na, *nb;
        arb_ternary *ta, *tb;
        arb_update_state *ua, *ub;
        ARB_ASSERT_OK(arb_model_ternary_at(a, i, &na, &ta, &ua));
        ARB_ASSERT_OK(arb_model_ternary_at(b, i, &nb, &tb, &ub));
        assert_string_equal(na, nb);
        size_t ntr = (size_t)(ta->rows_pad / 16) * (size_t)(ta->cols_pad / 16) * 64;
        if (memcmp(ta->trits, tb->trits, ntr)) fail_msg("tensor %s: trits differ", na);
        if (memcmp(ta->accum, tb->accum, (size_t)(ta->rows * ta->cols))) fail_msg("tensor %s: T_accum differs", na);
        if (!ta->exp != !tb->exp) fail_msg("tensor %s: fixed exponent on one side only", na);
        if (ta->exp && memcmp(ta->exp, tb->exp, (size_t)ta->rows)) fail_msg("tensor %s: E differs", na);
        if (ta->exp && memcmp(ta->exp_evidence, tb->exp_evidence, (size_t)ta->rows))
            fail_msg("tensor %s: evidence differs", na);
        if (memcmp(ta->scale, tb->scale, sizeof(float) * (size_t)ta->rows)) fail_msg("tensor %s: scale differs", na);
        if (ua && ub && memcmp(&ua->grad_norm, &ub->grad_norm, sizeof ua->grad_norm))
            fail_msg("tensor %s: update state differs", na);
    }
    int32_t ns = arb_model_n_state(a);
    assert_int_equal(ns, arb_model_n_state(b));
    for (int32_t i = 0; i < ns; i++) {
        arb_model_state_tensor x, y;
        ARB_ASSERT_OK(arb_model_state_at(a, i, &x));
        ARB_ASSERT_OK(arb_model_state_at(b, i, &y));
        size_t nb;
        ARB_ASSERT_OK(arb_shape_nbytes(x.dtype, x.ndim, x.shape, &nb));
        if (memcmp(x.data, y.data, nb)) fail_msg("state %s differs", x.name);
    }
}

static void run_resume(arb_schedule_mode mode) {
    arb_corpus c;
    make_corpus(&c, 1);
    arb_model_config cfg = tiny_cfg();
    arb_train_options o = tiny_opts(&cfg, mode);
    double la[N_STEPS], lb[N_STEPS];

    arb_trainer *a;
    ARB_ASSERT_OK(arb_trainer_create(&a, &cfg, &c, &o));
    for (int i = 0; i < N_STEPS; i++) ARB_ASSERT_OK(arb_trainer_step(a, &la[i]));

    arb_trainer *b;
    ARB_ASSERT_OK(arb_trainer_create(&b, &cfg, &c, &o));
    for (int i = 0; i < N_STEPS / 2; i++) ARB_ASSERT_OK(arb_trainer_step(b, &lb[i]));
    double v0, v1;
    ARB_ASSERT_OK(arb_trainer_evaluate(b, &v0)); /* evaluation must not disturb training state */
    ARB_ASSERT_OK(arb_trainer_record(b, true, b->step, v0));
    char path[512];
    path_in(path, sizeof path, "half.safetensors");
    ARB_ASSERT_OK(arb_trainer_save(b, path));
    arb_trainer_free(b);
    ARB_ASSERT_OK(arb_trainer_resume(&b, path, &c, &cfg, NULL));
    assert_int_equal(b->step, N_STEPS / 2);
    assert_int_equal(b->n_val_hist, 1);
    assert_memory_equal(&b->val_hist[0].value, &v0, sizeof v0);
    ARB_ASSERT_OK(arb_trainer_evaluate(b, &v1));
    assert_memory_equal(&v0, &v1, sizeof v0); /* the loaded model computes the same loss */
    for (int i = N_STEPS / 2; i < N_STEPS; i++) ARB_ASSERT_OK(arb_trainer_step(b, &lb[i]));

    for (int i = 0; i < N_STEPS; i++)
        if (memcmp(&la[i], &lb[i], sizeof la[i])) fail_msg("step %d: loss %.17g vs %.17g", i, la[i], lb[i]);
    assert_true(la[N_STEPS - 1] < la[0]); /* and it learned something */
    if (mode == ARB_SCHED_FLIP) {
        assert_memory_equal(a->ctrl, b->ctrl, sizeof(double) * (size_t)a->n_tensors);
        bool moved = false;
        for (int32_t i = 0; i < a->n_tensors; i++) moved |= a->ctrl[i] != 1.0;
        assert_true(moved);
    }
    assert_int_equal(a->tokens, b->tokens);
    assert_same_model(a->model, b->model);
    arb_trainer_free(a);
    arb_trainer_free(b);
    arb_corpus_free(&c);
}

static void test_resume_cosine(void **state) {
    (void)state;
    run_resume(ARB_SCHED_COSINE);
}

static void test_resume_flip(void **state) {
    (void)state;
    run_resume(ARB_SCHED_FLIP);
}

static void test_threads_invariant(void **state) {
    (void)state;
    arb_corpus c;
    make_corpus(&c, 2);
    arb_model_config cfg = tiny_cfg();
    arb_train_options o = tiny_opts(&cfg, ARB_SCHED_COSINE);
    o.steps = 3;
    arb_trainer *a, *b;
    double la, lb;
    arb_set_num_threads(1);
    ARB_ASSERT_OK(arb_trainer_create(&a, &cfg, &c, &o));
    for (int i = 0; i < 3; i++) ARB_ASSERT_OK(arb_trainer_step(a, &la));
    arb_set_num_threads(2);
    ARB_ASSERT_OK(arb_trainer_create(&b, &cfg, &c, &o));
    for (int i = 0; i < 3; i++) ARB_ASSERT_OK(arb_trainer_step(b, &lb));
    assert_memory_equal(&la, &lb, sizeof la);
    assert_same_model(a->model, b->model);
    arb_trainer_free(a);
    arb_trainer_free(b);
    arb_corpus_free(&c);
}

/* ---------------------------------------------------------------- damaged checkpoints */

typedef enum { MOD_NONE, MOD_DROP, MOD_SHAPE, MOD_DTYPE, MOD_CODE3, MOD_EXTRA, MOD_DROP_META, MOD_BAD_HEX, MOD_EXP_RANGE, MOD_ADD_EXP } mod_kind;

/* Copies src to dst, changing tensor `target` (or metadata key) as `mod` says. */
static void copy_ckpt(const char *src, const char *dst, const char *target, mod_kind mod) {
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, src));
    arb_st_writer *w;
    ARB_ASSERT_OK(arb_st_writer_open(&w, dst));
    for (size_t i = 0; i < arb_safetensors_count(st); i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        int64_t shape[ARB_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        arb_dtype dt = t->dtype;
        void *data = malloc(t->nbytes ? t->nbytes : 1);
        assert_non_null(data);
        memcpy(data, t->data, t->nbytes);
        bool hit = target && !strcmp(t->name, target);
        if (hit && mod == MOD_DROP) { free(data); continue; }
        if (hit && mod == MOD_SHAPE) { int64_t x = shape[0]; shape[0] = shape[1]; shape[1] = x; }
        if (hit && mod == MOD_DTYPE) dt = ARB_U8;
        if (hit && mod == MOD_CODE3) ((uint8_t *)data)[0] |= 3;
        if (hit && mod == MOD_EXP_RANGE) ((int8_t *)data)[0] = 100;
        ARB_ASSERT_OK(arb_st_writer_add(w, t->name, dt, t->ndim, shape, data));
        free(data);
    }
    if (mod == MOD_EXTRA) {
        int64_t sh[1] = {4};
        int8_t d[4] = {0};
        ARB_ASSERT_OK(arb_st_writer_add(w, "bogus.tensor", ARB_I8, 1, sh, d));
    }
    if (mod == MOD_ADD_EXP) { /* `target` = NAME.exp of a fixed-exponent tensor: an all-zero E */
        int64_t sh[1] = {1};
        int8_t d[1] = {0};
        ARB_ASSERT_OK(arb_st_writer_add(w, target, ARB_I8, 1, sh, d));
    }
    for (size_t i = 0; i < arb_safetensors_metadata_count(st); i++) {
        const char *k = arb_safetensors_metadata_key(st, i);
        bool hit = target && !strcmp(k, target);
        if (hit && mod == MOD_DROP_META) continue;
        const char *v = arb_safetensors_metadata(st, k);
        char *mv = NULL;
        if (hit && mod == MOD_BAD_HEX) {
            mv = strdup(v);
            char *q = strchr(mv, ':'); /* first value: '"xxxx' -> break its first digit */
            assert_non_null(q);
            q[2] = 'z';
        }
        ARB_ASSERT_OK(arb_st_writer_set_metadata(w, k, mv ? mv : v));
        free(mv);
    }
    ARB_ASSERT_OK(arb_st_writer_commit(w));
    arb_safetensors_close(st);
}

/* want = ARB_OK: any error status will do. */
static void expect_refused(const char *path, const arb_corpus *c, const arb_model_config *expect, arb_status want,
                           const char *needle, bool model_too) {
    arb_trainer *tr = (arb_trainer *)1;
    arb_status s = arb_trainer_resume(&tr, path, c, expect, NULL);
    if (s == ARB_OK) fail_msg("%s: resume accepted a bad checkpoint (%s)", path, needle);
    assert_null(tr);
    const char *e = arb_last_error();
    if (want != ARB_OK && s != want) fail_msg("%s: status %s, want %s (%s)", path, arb_status_str(s), arb_status_str(want), e);
    assert_null(strchr(e, '\n'));
    if (!strstr(e, needle)) fail_msg("error '%s' does not mention '%s'", e, needle);
    if (model_too) {
        /* The model-only loader (generate, audit) refuses it the same way. */
        arb_model *m = (arb_model *)1;
        s = arb_checkpoint_load_model(path, arb_cpu(), &m);
        if (s == ARB_OK) fail_msg("%s: the model loader accepted a bad checkpoint (%s)", path, needle);
        assert_null(m);
        assert_null(strchr(arb_last_error(), '\n'));
    }
}

static void test_load_validation(void **state) {
    (void)state;
    arb_corpus c, other;
    make_corpus(&c, 3);
    make_corpus(&other, 4);
    arb_model_config cfg = tiny_cfg();
    arb_train_options o = tiny_opts(&cfg, ARB_SCHED_COSINE);
    arb_trainer *tr;
    ARB_ASSERT_OK(arb_trainer_create(&tr, &cfg, &c, &o));
    ARB_ASSERT_OK(arb_trainer_step(tr, NULL));
    char good[512], bad[512];
    path_in(good, sizeof good, "good.safetensors");
    path_in(bad, sizeof bad, "bad.safetensors");
    ARB_ASSERT_OK(arb_trainer_save(tr, good));
    const char *name;
    arb_ternary *t;
    arb_update_state *us;
    ARB_ASSERT_OK(arb_model_ternary_at(tr->model, 1, &name, &t, &us));
    char nm[300];

    /* The good one loads (trainer and model-only), and a copy with nothing changed too. */
    arb_trainer *r;
    ARB_ASSERT_OK(arb_trainer_resume(&r, good, &c, &cfg, NULL));
    assert_same_model(tr->model, r->model);
    arb_trainer_free(r);
    arb_model *m;
    ARB_ASSERT_OK(arb_checkpoint_load_model(good, arb_cpu(), &m));
    assert_same_model(tr->model, m);
    arb_model_free(m);
    copy_ckpt(good, bad, NULL, MOD_NONE);
    ARB_ASSERT_OK(arb_trainer_resume(&r, bad, &c, NULL, NULL));
    arb_trainer_free(r);

    snprintf(nm, sizeof nm, "%s.accum", name);
    copy_ckpt(good, bad, nm, MOD_DROP);
    expect_refused(bad, &c, NULL, ARB_OK, nm, true);
    copy_ckpt(good, bad, nm, MOD_SHAPE);
    if (t->rows != t->cols) expect_refused(bad, &c, NULL, ARB_ERR_SHAPE, nm, true);
    copy_ckpt(good, bad, nm, MOD_DTYPE);
    expect_refused(bad, &c, NULL, ARB_ERR_DTYPE, nm, true);
    snprintf(nm, sizeof nm, "%s.trits", name);
    copy_ckpt(good, bad, nm, MOD_CODE3);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "code 3", true);
    { /* E out of range, on a tensor whose E trains (fixed ones store none) */
        const char *ename = NULL;
        arb_ternary *et = NULL;
        for (int32_t i = 0; i < arb_model_n_ternary(tr->model) && !(et && et->exp); i++)
            ARB_ASSERT_OK(arb_model_ternary_at(tr->model, i, &ename, &et, NULL));
        assert_true(et && et->exp);
        snprintf(nm, sizeof nm, "%s.exp", ename);
        copy_ckpt(good, bad, nm, MOD_EXP_RANGE);
        expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, nm, true);
        if (!t->exp) { /* E stored for a tensor whose E is fixed: not this model's checkpoint */
            snprintf(nm, sizeof nm, "%s.exp", name);
            copy_ckpt(good, bad, nm, MOD_ADD_EXP);
            expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, nm, true);
        }
    }
    copy_ckpt(good, bad, NULL, MOD_EXTRA);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "bogus.tensor", true);
    copy_ckpt(good, bad, "progress", MOD_DROP_META);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "progress", false);
    copy_ckpt(good, bad, "config", MOD_DROP_META);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "config", true);
    copy_ckpt(good, bad, "update_state", MOD_BAD_HEX);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "update state", true);
    copy_ckpt(good, bad, "controller", MOD_BAD_HEX);
    expect_refused(bad, &c, NULL, ARB_ERR_FORMAT, "controller", false);

    /* Another config or other data. */
    arb_model_config small;
    ARB_ASSERT_OK(arb_model_config_named("cpu-small", &small));
    expect_refused(good, &c, &small, ARB_ERR_INVALID_ARG, "differs", false);
    expect_refused(good, &other, NULL, ARB_ERR_INVALID_ARG, "different data", false);

    /* Truncated: the first half of the file. */
    FILE *f = fopen(good, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    f = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)n / 2, f);
    fclose(f);
    free(buf);
    expect_refused(bad, &c, NULL, ARB_OK, "bad.safetensors", true);
    unlink(bad);
    expect_refused(bad, &c, NULL, ARB_ERR_IO, "bad.safetensors", true);

    arb_trainer_free(tr);
    arb_corpus_free(&c);
    arb_corpus_free(&other);
}

static int setup(void **state) {
    (void)state;
    return arb_test_tmpdir_make(g_dir, sizeof g_dir, "arb_train_resume");
}

static int teardown(void **state) {
    (void)state;
    return arb_test_tmpdir_remove(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_cosine),
        cmocka_unit_test(test_resume_flip),
        cmocka_unit_test(test_threads_invariant),
        cmocka_unit_test(test_load_validation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
