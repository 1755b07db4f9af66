/* The int8 sidecars on a CUDA device (arb_sidecar_to_device + arb_sidecar_forward) against the
 * fixtures and against the CPU INT8 path:
 *   - fixture parity: DINOv2 (tiny, tiny with position interpolation, small with one layer), the
 *     Moonshine-tiny encoder and the vae-tiny decoder within 2e-2 relative L2 of the int8w.* references (the tolerance
 *     the CPU INT8 path states for int8 activations), and within 2e-2 of the CPU INT8 outputs on
 *     the same inputs (both quantize activations per row with the same rule, but the device's
 *     float sums run in another order, its attention takes fp16 operands and its float convs
 *     (Moonshine front end: fp16 operands by default, VAE attention: TF32) round their inputs to a
 *     10-bit mantissa, so some int8 roundings land on the other side;
 *     measured on an H100: 3.5e-3 DINOv2, 1.0e-2 Moonshine, 1.1e-2 VAE — the same size as each
 *     path's own distance to the weights-only reference, ~7e-3 to 1e-2);
 *   - random inputs, batch 3 and odd sizes: CUDA vs CPU INT8 within 2e-2, and each batch item
 *     the same as running it alone: bit for bit for DINOv2 (exact int8 GEMMs, per-row and
 *     per-head kernels); 2e-3 for Moonshine and the VAE, whose float GEMMs (Moonshine's fp16/TF32
 *     Conv1d front end, the VAE attention) run one item at a time with one cuBLASLt plan per
 *     shape, so they are expected to match exactly too (0 on an H100); the margin covers a
 *     cuBLASLt kernel whose float reduction order is not fixed. (With one TF32 GEMM over all
 *     B·L rows, cuBLASLt's choice at another M moved Moonshine items by 9.5e-3.)
 *   - the fused int8 GEMM + epilogue kernels against cuBLASLt + row kernels, the attention with
 *     8 warps per block against 4, the element-wise row kernel against k_rowr: bit for bit;
 *   - device-resident input → device-resident output, the same numbers as host in/out;
 *     a new input shape (a re-recorded graph) and back;
 *   - errors: fp32/int8w models refuse the device, wrong shapes are one-line errors.
 * Fixtures: $ARB_SHARED_DIR/fixtures (the GPU machine gets a copy), else ../shared.
 * Skips (exit 77) with a clear message without a CUDA device; CI builds it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arbitor/cuda.h"
#include "arbitor/sidecars.h"
#include "cuda/sidecar_cuda.h"
#include "testutil.h"

static char g_fx[2048];

static const char *fx(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", g_fx, name);
    return buf;
}

static arb_sidecar *load_cuda(const char *dir) {
    arb_sidecar *m;
    ARB_ASSERT_OK(arb_sidecar_load(&m, dir, ARB_SIDECAR_INT8));
    ARB_ASSERT_OK(arb_sidecar_to_device(m, arb_cuda(0)));
    assert_int_equal(arb_sidecar_device(m).kind, ARB_DEVICE_CUDA);
    return m;
}

/* CUDA forward (host in/out) vs the reference and vs the CPU INT8 path of the same model. */
static void dino_fixture(const char *name) {
    const char *dir = fx(name);
    arb_tensor px, refq, out, pool, cpu, cpool;
    arb_test_ref_load(dir, "pixel_values", &px);
    arb_test_ref_load(dir, "int8w.last_hidden_state", &refq);
    arb_sidecar *m = load_cuda(dir);
    ARB_ASSERT_OK(arb_sidecar_forward(m, &px, &out, &pool));
    ARB_ASSERT_OK(arb_dinov2_forward(m, &px, &cpu, &cpool)); /* the per-model call: the CPU path */
    char what[256];
    snprintf(what, sizeof what, "%s cuda int8 vs int8w reference", name);
    arb_test_expect_close(what, &out, &refq, 2e-2);
    snprintf(what, sizeof what, "%s cuda int8 vs cpu int8", name);
    arb_test_expect_close(what, &out, &cpu, 2e-2);
    int64_t T = out.shape[1], D = out.shape[2];
    for (int64_t b = 0; b < out.shape[0]; b++) /* pooler = the CLS row of the normalized output */
        assert_memory_equal((float *)pool.data + b * D, (float *)out.data + b * T * D, (size_t)D * sizeof(float));
    arb_tensor_free(&px), arb_tensor_free(&refq), arb_tensor_free(&out), arb_tensor_free(&pool);
    arb_tensor_free(&cpu), arb_tensor_free(&cpool);
    arb_sidecar_free(m);
}

static void test_dinov2_fixtures(void **state) {
    (void)state;
    dino_fixture("dinov2-tiny");
    dino_fixture("dinov2-tiny-interp");
    dino_fixture("dinov2-small-1layer");
}

static void test_moonshine_fixture(void **state) {
    (void)state;
    const char *dir = fx("moonshine-tiny");
    arb_tensor x, refq, out, cpu;
    arb_test_ref_load(dir, "input_values", &x);
    arb_test_ref_load(dir, "int8w.encoder_last_hidden_state", &refq);
    arb_sidecar *m = load_cuda(dir);
    ARB_ASSERT_OK(arb_sidecar_forward(m, &x, &out, NULL));
    ARB_ASSERT_OK(arb_moonshine_encode(m, &x, &cpu));
    arb_test_expect_close("moonshine-tiny cuda int8 vs int8w reference", &out, &refq, 2e-2);
    arb_test_expect_close("moonshine-tiny cuda int8 vs cpu int8", &out, &cpu, 2e-2);
    arb_tensor_free(&x), arb_tensor_free(&refq), arb_tensor_free(&out), arb_tensor_free(&cpu);
    arb_sidecar_free(m);
}

static void test_vae_fixture(void **state) {
    (void)state;
    const char *dir = fx("vae-tiny");
    arb_tensor lat, refq, out, cpu;
    arb_test_ref_load(dir, "latent_mean", &lat); /* decoded = decode(latent_mean of the fp32 reference) */
    arb_test_ref_load(dir, "int8w.decoded", &refq);
    arb_sidecar *m = load_cuda(dir);
    ARB_ASSERT_OK(arb_sidecar_forward(m, &lat, &out, NULL));
    ARB_ASSERT_OK(arb_vae_decode(m, &lat, &cpu));
    arb_test_expect_close("vae-tiny decode cuda int8 vs int8w reference", &out, &refq, 2e-2);
    arb_test_expect_close("vae-tiny decode cuda int8 vs cpu int8", &out, &cpu, 2e-2);
    arb_tensor_free(&lat), arb_tensor_free(&refq), arb_tensor_free(&out), arb_tensor_free(&cpu);
    arb_sidecar_free(m);
}

/* Item b of a batched output, [B, ...] → a fresh [1, ...] host tensor. */
static void item(const arb_tensor *t, int64_t b, arb_tensor *o) {
    int64_t shape[ARB_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = 1;
    ARB_ASSERT_OK(arb_tensor_init(o, t->dtype, t->ndim, shape, arb_cpu()));
    memcpy(o->data, (const char *)t->data + (size_t)b * o->nbytes, o->nbytes);
}

/* Random batch on the device vs the CPU INT8 path, per-item consistency, device-resident I/O. */
static void random_batch(const char *name, int ndim, const int64_t *shape, float amp, uint64_t seed) {
    arb_sidecar *m = load_cuda(fx(name));
    arb_tensor x, out, out2 = {0}, cpu, cpu2 = {0};
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, ndim, shape, arb_cpu()));
    arb_test_fill_f32((float *)x.data, (size_t)arb_tensor_numel(&x), seed, -amp, amp);
    arb_sidecar_kind kind = arb_sidecar_info_get(m)->kind;
    bool dino = kind == ARB_SIDECAR_DINOV2;
    ARB_ASSERT_OK(arb_sidecar_forward(m, &x, &out, dino ? &out2 : NULL));
    if (dino) ARB_ASSERT_OK(arb_dinov2_forward(m, &x, &cpu, &cpu2));
    else if (kind == ARB_SIDECAR_MOONSHINE) ARB_ASSERT_OK(arb_moonshine_encode(m, &x, &cpu));
    else ARB_ASSERT_OK(arb_vae_decode(m, &x, &cpu));
    char what[256];
    snprintf(what, sizeof what, "%s random B=%lld cuda vs cpu int8", name, (long long)shape[0]);
    arb_test_expect_close(what, &out, &cpu, 2e-2);
    /* each item alone (another graph: B = 1) */
    for (int64_t b = 0; b < shape[0]; b++) {
        arb_tensor xi, oi, o1, o1b = {0};
        item(&x, b, &xi);
        item(&out, b, &oi);
        ARB_ASSERT_OK(arb_sidecar_forward(m, &xi, &o1, dino ? &o1b : NULL));
        snprintf(what, sizeof what, "%s item %lld alone vs in the batch", name, (long long)b);
        if (dino) assert_memory_equal(o1.data, oi.data, oi.nbytes); /* integer GEMMs, per-row/per-head kernels */
        arb_test_expect_close(what, &o1, &oi, dino ? 0.0 : 2e-3);
        arb_tensor_free(&xi), arb_tensor_free(&oi), arb_tensor_free(&o1), arb_tensor_free(&o1b);
    }
    /* device-resident input and output: the same graph, the same bits */
    arb_tensor xd, od, od2 = {0}, back;
    ARB_ASSERT_OK(arb_tensor_init(&xd, ARB_F32, ndim, shape, arb_cuda(0)));
    ARB_ASSERT_OK(arb_tensor_copy(&xd, &x));
    ARB_ASSERT_OK(arb_sidecar_forward(m, &xd, &od, dino ? &od2 : NULL));
    assert_int_equal(od.device.kind, ARB_DEVICE_CUDA);
    ARB_ASSERT_OK(arb_tensor_init(&back, ARB_F32, od.ndim, od.shape, arb_cpu()));
    ARB_ASSERT_OK(arb_tensor_copy(&back, &od));
    assert_memory_equal(back.data, out.data, out.nbytes);
    arb_tensor_free(&xd), arb_tensor_free(&od), arb_tensor_free(&od2), arb_tensor_free(&back);
    arb_tensor_free(&x), arb_tensor_free(&out), arb_tensor_free(&out2), arb_tensor_free(&cpu), arb_tensor_free(&cpu2);
    arb_sidecar_free(m);
}

static void test_random_batches(void **state) {
    (void)state;
    random_batch("dinov2-tiny", 4, (int64_t[]){3, 3, 70, 84}, 2.f, 11);          /* interpolated grid, odd size */
    random_batch("dinov2-small-1layer", 4, (int64_t[]){2, 3, 224, 224}, 2.f, 12); /* full width, 257 tokens */
    random_batch("moonshine-tiny", 2, (int64_t[]){3, 23456}, 0.3f, 13);
    random_batch("vae-tiny", 4, (int64_t[]){3, 4, 12, 20}, 2.f, 14); /* non-square latents */
}

/* The VAE's two 3×3 conv paths: the implicit-GEMM kernel (sc_conv.cu; by default only on grids
 * that fill the device, so vae-tiny needs ARB_SIDECAR_CONV_IGEMM=1) and im2col + cuBLASLt. Forced
 * on, the whole suite of checks of random_batch holds (CUDA vs CPU INT8 2e-2, each item alone vs
 * in the batch 2e-3, device-resident I/O bit-identical), the fixture too; and its output equals
 * the im2col path's within 2e-2, the CUDA-vs-CPU tolerance: int32 sums are exact, the window
 * absmax and scales are the same floats and the epilogue rounds as the row kernel does (with the
 * GroupNorm sums from their own pass the two paths gave the same bits on an H100: 0.000e+00).
 * A GroupNorm sum in another order (fused into the conv epilogue) can flip one int8 rounding,
 * which on these random latents spreads to ~1e-2. (The fp32 attention GEMMs no longer add to
 * that: their cuBLASLt algorithm is no longer chosen by timing, so every fresh model sums in the
 * same order; measured 0.000e+00 between variants on an H100 since.) Odd
 * latent sizes leave partial 16 × 16 output tiles at every level; vae-tiny's 32 and 64 channels
 * give one 128-wide channel block with masked columns (and conv_out's 3). */
static void vae_paths(const char *mode, const int64_t *shape, uint64_t seed, arb_tensor *out) {
    setenv("ARB_SIDECAR_CONV_IGEMM", mode, 1);
    arb_sidecar *m = load_cuda(fx("vae-tiny")); /* a fresh model: the plan is recorded under `mode` */
    arb_tensor x;
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, 4, shape, arb_cpu()));
    arb_test_fill_f32((float *)x.data, (size_t)arb_tensor_numel(&x), seed, -2.f, 2.f);
    ARB_ASSERT_OK(arb_sidecar_forward(m, &x, out, NULL));
    arb_tensor_free(&x);
    arb_sidecar_free(m);
    unsetenv("ARB_SIDECAR_CONV_IGEMM");
}

static void test_vae_conv_paths(void **state) {
    (void)state;
    setenv("ARB_SIDECAR_CONV_IGEMM", "1", 1);
    random_batch("vae-tiny", 4, (int64_t[]){3, 4, 12, 20}, 2.f, 15);
    random_batch("vae-tiny", 4, (int64_t[]){2, 4, 5, 9}, 2.f, 16);
    {
        const char *dir = fx("vae-tiny");
        arb_tensor lat, refq, out;
        arb_test_ref_load(dir, "latent_mean", &lat);
        arb_test_ref_load(dir, "int8w.decoded", &refq);
        arb_sidecar *m = load_cuda(dir);
        ARB_ASSERT_OK(arb_sidecar_forward(m, &lat, &out, NULL));
        arb_test_expect_close("vae-tiny decode implicit-GEMM conv vs int8w reference", &out, &refq, 2e-2);
        arb_tensor_free(&lat), arb_tensor_free(&refq), arb_tensor_free(&out);
        arb_sidecar_free(m);
    }
    unsetenv("ARB_SIDECAR_CONV_IGEMM");
    const int64_t shape[4] = {2, 4, 13, 18};
    arb_tensor a, b, c;
    vae_paths("1", shape, 17, &a);
    vae_paths("0", shape, 17, &b);
    setenv("ARB_SIDECAR_GN_FUSED", "0", 1);
    vae_paths("1", shape, 17, &c);
    unsetenv("ARB_SIDECAR_GN_FUSED");
    arb_test_expect_close("vae-tiny implicit-GEMM conv vs im2col conv", &a, &b, 2e-2);
    arb_test_expect_close("vae-tiny implicit-GEMM, GroupNorm sums apart, vs im2col", &c, &b, 2e-2);
    arb_test_expect_close("vae-tiny implicit-GEMM, GroupNorm sums fused vs apart", &a, &c, 2e-2);
    arb_tensor_free(&a), arb_tensor_free(&b), arb_tensor_free(&c);
}

/* One model's forward with an environment switch at `off` and at `on` (read when the forward is
 * recorded): the same bits when tol is 0, else within tol relative L2. */
static void env_pair(const char *env, const char *off, const char *on, const char *name, int ndim, const int64_t *shape, float amp,
                     uint64_t seed, double tol) {
    const char *keep = getenv(env);
    char kv[64] = "";
    if (keep) snprintf(kv, sizeof kv, "%s", keep);
    arb_tensor x, o[2];
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, ndim, shape, arb_cpu()));
    arb_test_fill_f32((float *)x.data, (size_t)arb_tensor_numel(&x), seed, -amp, amp);
    for (int v = 0; v < 2; v++) {
        setenv(env, v ? on : off, 1);
        arb_sidecar *m = load_cuda(fx(name));
        ARB_ASSERT_OK(arb_sidecar_forward(m, &x, &o[v], NULL));
        arb_sidecar_free(m);
    }
    if (keep) setenv(env, kv, 1);
    else unsetenv(env);
    size_t n = (size_t)arb_tensor_numel(&o[0]), diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp((float *)o[0].data + i, (float *)o[1].data + i, sizeof(float)) != 0;
    printf("%s %s=%s vs %s: %zu of %zu values differ\n", name, env, on, off, diff, n);
    char what[160];
    snprintf(what, sizeof what, "%s %s=%s vs %s", name, env, on, off);
    if (tol == 0.0) assert_int_equal(diff, 0);
    else arb_test_expect_close(what, &o[1], &o[0], tol);
    arb_tensor_free(&x), arb_tensor_free(&o[0]), arb_tensor_free(&o[1]);
}

/* Row stages without row-wide reductions by k_rowe (element-wise, the default) against k_rowr
 * (ARB_SIDECAR_ROW_ELEM=0): the same bits. */
static void test_row_elem_bits(void **state) {
    (void)state;
    const char *e = "ARB_SIDECAR_ROWGEMM"; /* the row GEMMs replace the row kernels under test */
    const char *keep = getenv(e);
    char kv[64] = "";
    if (keep) snprintf(kv, sizeof kv, "%s", keep);
    setenv(e, "0", 1);
    env_pair("ARB_SIDECAR_ROW_ELEM", "0", "1", "dinov2-small-1layer", 4, (int64_t[]){2, 3, 224, 224}, 2.f, 41, 0.0); /* QKV → fp16, patch + position */
    if (keep) setenv(e, kv, 1);
    else unsetenv(e);
    env_pair("ARB_SIDECAR_ROW_ELEM", "0", "1", "moonshine-tiny", 2, (int64_t[]){3, 23456}, 0.3f, 42, 0.0); /* QKV with rotary pairs */
}

/* DINOv2's row GEMMs (the row stages in the int8 GEMM's epilogue; by default on sm_90a at
 * DINOv2-small's widths from 4096 rows) forced on for every linear (ARB_SIDECAR_ROWGEMM=15) and
 * each alone, against cuBLASLt + row kernels: the same formulas, only the LayerNorm sums in another
 * order (so a few int8 roundings differ); then the batch test (vs the CPU INT8 path, per-item bits)
 * with all of them on. */
static void test_dino_rowgemm(void **state) {
    (void)state;
    const char *e = "ARB_SIDECAR_ROWGEMM";
    env_pair(e, "0", "15", "dinov2-small-1layer", 4, (int64_t[]){3, 3, 224, 224}, 2.f, 43, 2e-3);
    env_pair(e, "0", "15", "dinov2-small-1layer", 4, (int64_t[]){1, 3, 98, 140}, 2.f, 44, 2e-3); /* 71 rows */
    const char *one[] = {"1", "2", "4", "8"};
    for (int i = 0; i < 4; i++) env_pair(e, "0", one[i], "dinov2-small-1layer", 4, (int64_t[]){2, 3, 224, 224}, 2.f, 45, 2e-3);
    const char *keep = getenv(e);
    char kv[64] = "";
    if (keep) snprintf(kv, sizeof kv, "%s", keep);
    setenv(e, "15", 1);
    random_batch("dinov2-small-1layer", 4, (int64_t[]){3, 3, 224, 224}, 2.f, 46);
    if (keep) setenv(e, kv, 1);
    else unsetenv(e);
}

/* The CUDA kernels' GELU (erf by Abramowitz & Stegun 7.1.26) against float64 ½·x·(1 + erf(x/√2)):
 * within 4e-7·|x| everywhere on a dense grid of [-12, 12] plus random points. */
static void test_gelu(void **state) {
    (void)state;
    enum { N = 240001 + 4096 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    assert_non_null(x), assert_non_null(y);
    for (int i = 0; i < 240001; i++) x[i] = -12.f + (float)i * 1e-4f;
    arb_test_fill_f32(x + 240001, 4096, 47, -40.f, 40.f);
    ARB_ASSERT_OK(sc_cu_gelu_probe(x, y, N));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double xd = x[i], ref = 0.5 * xd * (1.0 + erf(xd / sqrt(2.0)));
        const double r = fabs(y[i] - ref) / fmax(fabs(xd), 1e-30);
        if (r > worst) worst = r;
    }
    printf("GELU: worst |error| / |x| = %.3g over %d points\n", worst, N);
    assert_true(worst <= 4e-7);
    free(x), free(y);
}

static void test_errors(void **state) {
    (void)state;
    arb_sidecar *m;
    ARB_ASSERT_OK(arb_sidecar_load(&m, fx("dinov2-tiny"), ARB_SIDECAR_FP32));
    assert_int_equal(arb_sidecar_to_device(m, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
    assert_non_null(strstr(arb_last_error(), "int8"));
    arb_sidecar_free(m);
    ARB_ASSERT_OK(arb_sidecar_load(&m, fx("vae-tiny"), ARB_SIDECAR_INT8W));
    assert_int_equal(arb_sidecar_to_device(m, arb_cuda(0)), ARB_ERR_UNSUPPORTED);
    arb_sidecar_free(m);
    ARB_ASSERT_OK(arb_sidecar_load(&m, fx("vae-tiny"), ARB_SIDECAR_INT8));
    ARB_ASSERT_OK(arb_sidecar_to_device(m, arb_cuda(0)));
    arb_tensor bad, bout = {0};
    ARB_ASSERT_OK(arb_tensor_init(&bad, ARB_F32, 4, (int64_t[]){1, 3, 8, 8}, arb_cpu()));
    assert_int_equal(arb_sidecar_forward(m, &bad, &bout, NULL), ARB_ERR_SHAPE);
    arb_tensor_free(&bad);
    arb_sidecar_free(m);
    ARB_ASSERT_OK(arb_sidecar_load(&m, fx("dinov2-tiny"), ARB_SIDECAR_INT8));
    assert_int_equal(arb_sidecar_to_device(m, arb_cuda(999)), ARB_ERR_INVALID_ARG);
    ARB_ASSERT_OK(arb_sidecar_to_device(m, arb_cuda(0)));
    arb_tensor x, out = {0};
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, 4, (int64_t[]){1, 4, 56, 56}, arb_cpu()));
    assert_int_equal(arb_sidecar_forward(m, &x, &out, NULL), ARB_ERR_SHAPE);
    arb_tensor_free(&x);
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, 4, (int64_t[]){1, 3, 8, 8}, arb_cpu()));
    assert_int_equal(arb_sidecar_forward(m, &x, &out, NULL), ARB_ERR_SHAPE);
    arb_tensor_free(&x);
    ARB_ASSERT_OK(arb_sidecar_to_device(m, arb_cpu())); /* back to the CPU: forward runs there */
    assert_int_equal(arb_sidecar_device(m).kind, ARB_DEVICE_CPU);
    arb_sidecar_free(m);
    ARB_ASSERT_OK(arb_sidecar_load(&m, fx("moonshine-tiny"), ARB_SIDECAR_INT8));
    ARB_ASSERT_OK(arb_sidecar_to_device(m, arb_cuda(0)));
    ARB_ASSERT_OK(arb_tensor_init(&x, ARB_F32, 2, (int64_t[]){1, 500}, arb_cpu())); /* < 1 frame after conv3 */
    assert_int_equal(arb_sidecar_forward(m, &x, &out, NULL), ARB_ERR_SHAPE);
    assert_non_null(strstr(arb_last_error(), "too short"));
    arb_tensor_free(&x);
    arb_sidecar_free(m);
}

int main(void) {
    if (arb_cuda_device_count() < 1) {
        printf("SKIP: no CUDA device (test_cuda_sidecars needs a GPU)\n");
        return ARB_TEST_SKIP;
    }
    const char *env = getenv("ARB_SHARED_DIR");
    snprintf(g_fx, sizeof g_fx, "%s/fixtures", env && *env ? env : ARB_SHARED_DIR);
    struct stat st;
    if (stat(g_fx, &st) != 0) {
        printf("SKIP: %s is absent (set ARB_SHARED_DIR to the folder holding fixtures/)\n", g_fx);
        return ARB_TEST_SKIP;
    }
    char name[256];
    if (arb_cuda_device_name(0, name, sizeof name) == ARB_OK) printf("device: %s\n", name);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dinov2_fixtures),
        cmocka_unit_test(test_moonshine_fixture),
        cmocka_unit_test(test_vae_fixture),
        cmocka_unit_test(test_random_batches),
        cmocka_unit_test(test_vae_conv_paths),
        cmocka_unit_test(test_row_elem_bits),
        cmocka_unit_test(test_dino_rowgemm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
