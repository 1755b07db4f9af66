/* Model configs (named presets, validation, JSON round trip, hostile JSON) and the model's
 * enumeration + audit: every trainable tensor is ternary, counts match the shapes the config
 * implies (computed here independently), names are unique. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_named_and_json(void **state) {
    (void)state;
    const char *names[] = {"seed", "shakespeare", "cpu-small", "tiny"};
    for (int i = 0; i < 4; i++) {
        arb_model_config c, d;
        ARB_ASSERT_OK(arb_model_config_named(names[i], &c));
        ARB_ASSERT_OK(arb_model_config_validate(&c));
        char *js = NULL, *js2 = NULL;
        ARB_ASSERT_OK(arb_model_config_to_json(&c, &js));
        ARB_ASSERT_OK(arb_model_config_named("tiny", &d)); /* start elsewhere: every field must come back */
        ARB_ASSERT_OK(arb_model_config_from_json(js, &d));
        ARB_ASSERT_OK(arb_model_config_to_json(&d, &js2));
        assert_string_equal(js, js2);
        assert_string_equal(d.name, names[i]);
        assert_int_equal(d.dim, c.dim);
        assert_true(d.act_eps == c.act_eps && d.eta == c.eta);
        free(js);
        free(js2);
    }
    arb_model_config c;
    assert_int_equal(arb_model_config_named("nope", &c), ARB_ERR_NOT_FOUND);
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    assert_int_equal(arb_model_config_from_json("{\"dimm\": 4}", &c), ARB_ERR_FORMAT);
    assert_int_equal(arb_model_config_from_json("{\"dim\": \"4\"}", &c), ARB_ERR_FORMAT);
    assert_int_equal(arb_model_config_from_json("{\"dim\": 4.5}", &c), ARB_ERR_FORMAT);
    assert_int_equal(arb_model_config_from_json("{\"enable_vq\": 1}", &c), ARB_ERR_FORMAT);
    assert_int_equal(arb_model_config_from_json("[1,2]", &c), ARB_ERR_FORMAT);
    assert_int_equal(arb_model_config_from_json("{\"dim\": 30}", &c), ARB_ERR_INVALID_ARG); /* 30 % 2 heads ok, hd 15 odd */
    assert_int_equal(arb_model_config_from_json("{\"vocab\": 100}", &c), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_model_config_from_json("{\"train_seq\": 999}", &c), ARB_ERR_INVALID_ARG);
    assert_int_equal(c.dim, 32); /* failed parses leave the config alone */
    ARB_ASSERT_OK(arb_model_config_from_json("{\"dim\": 48, \"n_heads\": 4}", &c));
    assert_int_equal(c.dim, 48);
}

/* Logical weights a config implies, computed from the architecture description. */
static int64_t expected_weights(const arb_model_config *c) {
    int64_t D = c->dim, n = (int64_t)c->vocab * D * 2 + D; /* embed, head, final norm */
    if (c->enable_vq) n += (int64_t)c->vq_codes * D;
    if (c->enable_output_router) n += 2 * D;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->enable_graph) n += D + 4 * D * D;
        if (c->enable_memory && (l + 1) % c->mem_every == 0) n += D + 2 * D * D + (int64_t)c->mem_slots * D;
        if (c->enable_moe)
            n += D + (int64_t)c->n_experts * D + (int64_t)c->n_experts * 2 * D * c->expert_mult * D + D + D;
        else
            n += D + 2 * D * (int64_t)c->mlp_mult * D;
    }
    return n;
}

static void check_model(const char *name, bool print) {
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named(name, &c));
    arb_model *m = NULL;
    ARB_ASSERT_OK(arb_model_create(&m, &c, 7, arb_cpu()));
    arb_audit a;
    ARB_ASSERT_OK(arb_model_audit(m, &a));
    assert_int_equal(a.trainable_float_tensors, 0);
    assert_true(a.trainable_float_bytes == 0.0);
    assert_int_equal(a.ternary_weights, expected_weights(&c));
    int64_t sum = 0;
    int32_t nt = arb_model_n_ternary(m);
    for (int32_t i = 0; i < nt; i++) {
        const char *nm;
        arb_ternary *w;
        arb_update_state *st;
        ARB_ASSERT_OK(arb_model_ternary_at(m, i, &nm, &w, &st));
        assert_non_null(st);
        sum += w->rows * w->cols;
        for (int32_t j = 0; j < i; j++) {
            const char *o;
            ARB_ASSERT_OK(arb_model_ternary_at(m, j, &o, NULL, NULL));
            assert_string_not_equal(nm, o);
        }
    }
    assert_int_equal(sum, a.ternary_weights);
    assert_int_equal(arb_model_ternary_at(m, nt, NULL, NULL, NULL), ARB_ERR_INVALID_ARG);
    assert_int_equal(arb_model_n_state(m), c.enable_vq ? 2 : 1);
    arb_model_state_tensor s0;
    ARB_ASSERT_OK(arb_model_state_at(m, 0, &s0));
    assert_string_equal(s0.name, "flip_balance");
    assert_int_equal(s0.dtype, ARB_I8);
    assert_int_equal(s0.shape[0], nt);
    if (c.enable_vq) {
        arb_model_state_tensor s;
        ARB_ASSERT_OK(arb_model_state_at(m, 1, &s));
        assert_string_equal(s.name, "vq.usage");
        assert_int_equal(s.shape[0], c.vq_codes);
    }
    if (print) {
        char buf[1024];
        printf("config %s:\n%s", name, arb_audit_format(&a, buf, sizeof buf));
    }
    arb_model_free(m);
}

static void test_models_audit(void **state) {
    (void)state;
    check_model("tiny", true);
    check_model("cpu-small", true);
    check_model("shakespeare", true);
    check_model("seed", true);
}

static void test_bad_create(void **state) {
    (void)state;
    arb_model_config c;
    ARB_ASSERT_OK(arb_model_config_named("tiny", &c));
    c.n_heads = 3;
    arb_model *m = (arb_model *)&c;
    assert_int_equal(arb_model_create(&m, &c, 1, arb_cpu()), ARB_ERR_INVALID_ARG);
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_named_and_json), cmocka_unit_test(test_models_audit),
                                       cmocka_unit_test(test_bad_create)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
