/* Full-size synthetic sidecar checkpoints: the tensor names and shapes equal
 * spec/sidecar-tensors.json exactly, the loaders accept them, and the int8 load reproduces the
 * spec's class counts (72+1, 128+0, 8+64), parameter counts and after-freeze sizes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbitor/sidecars.h"
#include "testutil.h"

static char g_tmp[256];

static int setup(void **s) {
    (void)s;
    return arb_test_tmpdir_make(g_tmp, sizeof g_tmp, "arb_sc_synth");
}
static int teardown(void **s) {
    (void)s;
    return arb_test_tmpdir_remove(g_tmp);
}

static cJSON *spec(void) {
    char p[1024];
    arb_test_shared("spec/sidecar-tensors.json", p, sizeof p);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    assert_non_null(j);
    return j;
}

static void check(arb_sidecar_kind kind, const char *key, const char *file, int nlin, int nconv, size_t params, double mb) {
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, key);
    ARB_ASSERT_OK(arb_sidecar_synth(kind, dir, 5));
    snprintf(p, sizeof p, "%s/%s", dir, file);
    cJSON *js = spec();
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(js, key);
    assert_non_null(want);
    arb_safetensors *st;
    ARB_ASSERT_OK(arb_safetensors_open(&st, p));
    assert_int_equal(arb_safetensors_count(st), (size_t)cJSON_GetArraySize(want));
    for (const cJSON *e = want->child; e; e = e->next) {
        const arb_st_tensor *t = arb_safetensors_find(st, e->string);
        if (!t) fail_msg("%s: synthetic checkpoint lacks '%s'", key, e->string);
        assert_int_equal(t->ndim, cJSON_GetArraySize(e));
        for (int i = 0; i < t->ndim; i++) assert_int_equal(t->shape[i], (int64_t)cJSON_GetArrayItem(e, i)->valuedouble);
    }
    arb_safetensors_close(st);
    cJSON_Delete(js);
    arb_sidecar *m;
    ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ARB_SIDECAR_INT8));
    const arb_sidecar_info *in = arb_sidecar_info_get(m);
    double got_mb = (double)(in->float_bytes + in->int8_bytes) / 1048576.0;
    printf("  %-10s %zu tensors, %zu params, QLinear %d, QConv2d %d, %.2f MB after int8 (spec %.2f)\n", key, in->n_tensors,
           in->n_params, in->n_linear_q, in->n_conv2d_q, got_mb, mb);
    assert_int_equal(in->n_linear_q, nlin);
    assert_int_equal(in->n_conv2d_q, nconv);
    assert_int_equal(in->n_params, params);
    assert_true(fabs(got_mb - mb) < 0.006);
    assert_true(in->quantize_requested && in->quantized && in->quantized_int8 && in->frozen);
    arb_sidecar_free(m);
    char cmd[500];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_dinov2(void **s) {
    (void)s;
    check(ARB_SIDECAR_DINOV2, "dinov2", "model.safetensors", 72, 1, 22056576, 22.90);
}
static void test_moonshine(void **s) {
    (void)s;
    check(ARB_SIDECAR_MOONSHINE, "moonshine", "model.safetensors", 128, 0, 61513920, 108.24);
}
static void test_vae(void **s) {
    (void)s;
    check(ARB_SIDECAR_VAE, "vae_sd", "diffusion_pytorch_model.safetensors", 8, 64, 83653863, 80.07);
}

int main(void) {
    arb_test_require_shared();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_dinov2), cmocka_unit_test(test_moonshine), cmocka_unit_test(test_vae)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
