/* Sidecar parity against ../shared/fixtures (references computed by transformers / diffusers in
 * float64): fp32 path within 1e-4 relative L2; weights-only int8 (INT8W) within 1e-3 of int8w.*;
 * the int8-activation VNNI path (INT8) within 2e-2 of int8w.*. Also the quantized class counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "testutil.h"

static char g_dir[2048];

static const char *fx(const char *name) {
    static char buf[1024];
    if (!arb_test_shared("fixtures", buf, sizeof buf)) return NULL;
    snprintf(g_dir, sizeof g_dir, "%s/%s", buf, name);
    return g_dir;
}

static const char *prec_name(arb_sidecar_precision p) {
    return p == ARB_SIDECAR_FP32 ? "fp32" : p == ARB_SIDECAR_INT8 ? "int8" : "int8w";
}

static void run_dinov2(const char *name, int nlin, int nconv) {
    const char *dir = fx(name);
    arb_tensor px, ref, refq;
    arb_test_ref_load(dir, "pixel_values", &px);
    arb_test_ref_load(dir, "last_hidden_state", &ref);
    arb_test_ref_load(dir, "int8w.last_hidden_state", &refq);
    arb_sidecar_precision ps[3] = {ARB_SIDECAR_FP32, ARB_SIDECAR_INT8W, ARB_SIDECAR_INT8};
    for (int i = 0; i < 3; i++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ps[i]));
        const arb_sidecar_info *info = arb_sidecar_info_get(m);
        assert_int_equal(info->n_linear, nlin);
        assert_int_equal(info->n_conv2d, nconv);
        if (ps[i] != ARB_SIDECAR_FP32) {
            assert_int_equal(info->n_linear_q, nlin);
            assert_int_equal(info->n_conv2d_q, nconv);
            assert_true(info->quantized && info->quantized_int8 && info->quantize_requested);
        } else assert_false(info->quantized);
        assert_true(info->frozen);
        arb_tensor out, pool;
        ARB_ASSERT_OK(arb_dinov2_forward(m, &px, &out, &pool));
        char what[128];
        snprintf(what, sizeof what, "%s %s last_hidden_state", name, prec_name(ps[i]));
        double tol = ps[i] == ARB_SIDECAR_FP32 ? 1e-4 : ps[i] == ARB_SIDECAR_INT8W ? 1e-3 : 2e-2;
        arb_test_expect_close(what, &out, ps[i] == ARB_SIDECAR_FP32 ? &ref : &refq, tol);
        if (ps[i] == ARB_SIDECAR_FP32) {
            arb_tensor rp;
            arb_test_ref_load(dir, "pooler_output", &rp);
            arb_test_expect_close("  pooler_output", &pool, &rp, 1e-4);
            arb_tensor_free(&rp);
        }
        arb_tensor_free(&out);
        arb_tensor_free(&pool);
        arb_sidecar_free(m);
    }
    arb_tensor_free(&px);
    arb_tensor_free(&ref);
    arb_tensor_free(&refq);
}

static void test_dinov2_tiny(void **s) {
    (void)s;
    run_dinov2("dinov2-tiny", 12, 1);
}
static void test_dinov2_tiny_interp(void **s) {
    (void)s;
    run_dinov2("dinov2-tiny-interp", 12, 1);
}
static void test_dinov2_small_1layer(void **s) {
    (void)s;
    run_dinov2("dinov2-small-1layer", 6, 1);
}

static void test_moonshine_tiny(void **s) {
    (void)s;
    const char *dir = fx("moonshine-tiny");
    arb_tensor in, ids, ref, refq, reflog;
    arb_test_ref_load(dir, "input_values", &in);
    arb_test_ref_load(dir, "decoder_input_ids", &ids);
    arb_test_ref_load(dir, "encoder_last_hidden_state", &ref);
    arb_test_ref_load(dir, "int8w.encoder_last_hidden_state", &refq);
    arb_test_ref_load(dir, "logits", &reflog);
    arb_sidecar_precision ps[3] = {ARB_SIDECAR_FP32, ARB_SIDECAR_INT8W, ARB_SIDECAR_INT8};
    for (int i = 0; i < 3; i++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ps[i]));
        const arb_sidecar_info *info = arb_sidecar_info_get(m);
        /* 2 encoder layers × 6 + 2 decoder layers × 10; proj_out is tied, not a separate layer */
        assert_int_equal(info->n_linear, 32);
        assert_int_equal(info->n_conv2d, 0);
        assert_int_equal(info->n_linear_q, ps[i] == ARB_SIDECAR_FP32 ? 0 : 32);
        arb_tensor out;
        ARB_ASSERT_OK(arb_moonshine_encode(m, &in, &out));
        char what[128];
        snprintf(what, sizeof what, "moonshine-tiny %s encoder", prec_name(ps[i]));
        double tol = ps[i] == ARB_SIDECAR_FP32 ? 1e-4 : ps[i] == ARB_SIDECAR_INT8W ? 1e-3 : 2e-2;
        arb_test_expect_close(what, &out, ps[i] == ARB_SIDECAR_FP32 ? &ref : &refq, tol);
        if (ps[i] == ARB_SIDECAR_FP32) {
            arb_tensor lg;
            ARB_ASSERT_OK(arb_moonshine_logits(m, &ref, &ids, &lg));
            arb_test_expect_close("moonshine-tiny fp32 logits", &lg, &reflog, 1e-4);
            arb_tensor_free(&lg);
        }
        arb_tensor_free(&out);
        arb_sidecar_free(m);
    }
    arb_tensor_free(&in), arb_tensor_free(&ids), arb_tensor_free(&ref), arb_tensor_free(&refq), arb_tensor_free(&reflog);
}

static void test_vae_tiny(void **s) {
    (void)s;
    const char *dir = fx("vae-tiny");
    arb_tensor smp, rm, rl, rd, rmq, rdq;
    arb_test_ref_load(dir, "sample", &smp);
    arb_test_ref_load(dir, "latent_mean", &rm);
    arb_test_ref_load(dir, "latent_logvar", &rl);
    arb_test_ref_load(dir, "decoded", &rd);
    arb_test_ref_load(dir, "int8w.latent_mean", &rmq);
    arb_test_ref_load(dir, "int8w.decoded", &rdq);
    arb_sidecar_precision ps[3] = {ARB_SIDECAR_FP32, ARB_SIDECAR_INT8W, ARB_SIDECAR_INT8};
    for (int i = 0; i < 3; i++) {
        arb_sidecar *m;
        ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ps[i]));
        const arb_sidecar_info *info = arb_sidecar_info_get(m);
        assert_int_equal(info->n_linear, 8);
        assert_int_equal(info->n_conv2d, 30);
        arb_tensor mean, lv, dec;
        ARB_ASSERT_OK(arb_vae_encode(m, &smp, &mean, &lv));
        bool fp = ps[i] == ARB_SIDECAR_FP32;
        double tol = fp ? 1e-4 : ps[i] == ARB_SIDECAR_INT8W ? 1e-3 : 2e-2;
        char what[128];
        snprintf(what, sizeof what, "vae-tiny %s latent_mean", prec_name(ps[i]));
        arb_test_expect_close(what, &mean, fp ? &rm : &rmq, tol);
        if (fp) arb_test_expect_close("vae-tiny fp32 latent_logvar", &lv, &rl, 1e-4);
        /* decoded = decode(latent_mean of the fp32 reference), with this path's weights */
        ARB_ASSERT_OK(arb_vae_decode(m, &rm, &dec));
        snprintf(what, sizeof what, "vae-tiny %s decoded", prec_name(ps[i]));
        arb_test_expect_close(what, &dec, fp ? &rd : &rdq, tol);
        arb_tensor_free(&mean), arb_tensor_free(&lv), arb_tensor_free(&dec);
        arb_sidecar_free(m);
    }
    arb_tensor_free(&smp), arb_tensor_free(&rm), arb_tensor_free(&rl), arb_tensor_free(&rd);
    arb_tensor_free(&rmq), arb_tensor_free(&rdq);
}

int main(void) {
    arb_test_require_shared();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dinov2_tiny),        cmocka_unit_test(test_dinov2_tiny_interp),
        cmocka_unit_test(test_dinov2_small_1layer), cmocka_unit_test(test_moonshine_tiny),
        cmocka_unit_test(test_vae_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
