/* CUDA ops against the CPU references on random odd shapes: integer state (trits, T_accum, E,
 * evidence, nnz) and exact integer products bit for bit, float outputs within stated tolerances.
 * Skips (exit 77) with a clear message on a machine without a CUDA device; CI still builds it.
 * Run under compute-sanitizer (memcheck) on the GPU machine: see docs/CUDA.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "arbitor/cuda.h"
#include "ternary/update_internal.h"

/* ---------------------------------------------------------------- helpers */

static void *dev_alloc(size_t n) {
    void *p = NULL;
    ARB_ASSERT_OK(arb_cuda_malloc(&p, n ? n : 1));
    return p;
}
static void *dev_from(const void *h, size_t n) {
    void *p = dev_alloc(n);
    ARB_ASSERT_OK(arb_cuda_copy_h2d(p, h, n));
    return p;
}
static void to_host(void *h, const void *d, size_t n) { ARB_ASSERT_OK(arb_cuda_copy_d2h(h, d, n)); }

/* Random layer: trits uniform, then a few steps' worth of random accumulators and exponents so
 * that the leak, the rails and the E rule all see non-trivial state. */
static void make_layer(arb_ternary *w, int64_t rows, int64_t cols, arb_ternary_kind kind, int32_t id, uint64_t seed) {
    ARB_ASSERT_OK(arb_ternary_init(w, rows, cols, kind, id, arb_cpu()));
    ARB_ASSERT_OK(arb_ternary_randomize(w, seed));
    arb_test_fill_i8(w->accum, (size_t)(rows * cols), seed + 1, -127, 127);
    arb_test_fill_i8(w->exp, (size_t)rows, seed + 2, -6, 6);
    arb_test_fill_i8(w->exp_evidence, (size_t)rows, seed + 3, -20, 20);
    ARB_ASSERT_OK(arb_ternary_refresh(w));
}

static void assert_same_state(const arb_ternary *h, const arb_ternary *d, const char *what) {
    arb_ternary g;
    ARB_ASSERT_OK(arb_ternary_init(&g, h->rows, h->cols, h->kind, h->id, arb_cpu()));
    if (!h->exp) ARB_ASSERT_OK(arb_ternary_fix_exponent(&g)); /* the download needs the same kind of E */
    ARB_ASSERT_OK(arb_cuda_ternary_download(&g, d));
    size_t tb = (size_t)(h->rows_pad * h->cols_pad / 4), ab = (size_t)(h->rows * h->cols), rb = (size_t)h->rows;
    for (size_t i = 0; i < tb; i++)
        if (g.trits[i] != h->trits[i]) fail_msg("%s: packed trit byte %zu: cuda %02x cpu %02x", what, i, g.trits[i], h->trits[i]);
    for (size_t i = 0; i < ab; i++)
        if (g.accum[i] != h->accum[i]) fail_msg("%s: T_accum[%zu]: cuda %d cpu %d", what, i, g.accum[i], h->accum[i]);
    for (size_t i = 0; i < rb; i++) {
        if (h->exp && g.exp[i] != h->exp[i]) fail_msg("%s: E[%zu]: cuda %d cpu %d", what, i, g.exp[i], h->exp[i]);
        if (h->exp && g.exp_evidence[i] != h->exp_evidence[i])
            fail_msg("%s: evidence[%zu]: cuda %d cpu %d", what, i, g.exp_evidence[i], h->exp_evidence[i]);
        if (g.nnz[i] != h->nnz[i]) fail_msg("%s: nnz[%zu]: cuda %d cpu %d", what, i, g.nnz[i], h->nnz[i]);
        if (memcmp(&g.scale[i], &h->scale[i], sizeof(float)))
            fail_msg("%s: scale[%zu]: cuda %.9g cpu %.9g", what, i, (double)g.scale[i], (double)h->scale[i]);
    }
    arb_ternary_free(&g);
}

static void random_xq(int8_t *xq, float *xs, int64_t n, int64_t cols, int64_t ld, uint64_t seed) {
    memset(xq, 0, (size_t)(n * ld));
    int8_t *tmp = malloc((size_t)(n * cols) + 1);
    arb_test_fill_i8(tmp, (size_t)(n * cols), seed, -127, 127);
    for (int64_t t = 0; t < n; t++) memcpy(xq + t * ld, tmp + t * cols, (size_t)cols);
    free(tmp);
    if (xs) arb_test_fill_f32(xs, (size_t)n, seed + 7, 0.001f, 0.05f);
}

/* ---------------------------------------------------------------- runtime */

static void test_pool_and_copies(void **state) {
    (void)state;
    void *a = dev_alloc(1000);
    arb_cuda_free(a);
    void *b = dev_alloc(900); /* same size class: the cached block comes back */
    assert_ptr_equal(a, b);
    size_t used = 0, cached = 0;
    arb_cuda_pool_stats(&used, &cached);
    assert_true(used >= 1000);
    arb_cuda_free(b);
    uint8_t h[777], r[777];
    for (int i = 0; i < 777; i++) h[i] = (uint8_t)(i * 31 + 7);
    void *d = dev_from(h, sizeof h), *d2 = dev_alloc(sizeof h);
    ARB_ASSERT_OK(arb_cuda_copy_d2d(d2, d, sizeof h));
    to_host(r, d2, sizeof h);
    assert_memory_equal(h, r, sizeof h);
    arb_cuda_free(d);
    arb_cuda_free(d2);
    /* tensors know their device; copies across host and device */
    int64_t shape[2] = {13, 17};
    arb_tensor th, td, tb;
    ARB_ASSERT_OK(arb_tensor_init(&th, ARB_F32, 2, shape, arb_cpu()));
    ARB_ASSERT_OK(arb_tensor_init(&td, ARB_F32, 2, shape, arb_cuda(0)));
    ARB_ASSERT_OK(arb_tensor_init(&tb, ARB_F32, 2, shape, arb_cpu()));
    assert_int_equal(td.device.kind, ARB_DEVICE_CUDA);
    arb_test_fill_f32(th.data, 13 * 17, 5, -1, 1);
    ARB_ASSERT_OK(arb_tensor_copy(&td, &th));
    ARB_ASSERT_OK(arb_tensor_copy(&tb, &td));
    assert_memory_equal(th.data, tb.data, th.nbytes);
    arb_tensor_free(&th);
    arb_tensor_free(&td);
    arb_tensor_free(&tb);
    /* a failing CUDA call names the file and line (an absurd allocation fails without a sticky error) */
    void *huge = NULL;
    assert_int_equal(arb_cuda_malloc(&huge, (size_t)1 << 60), ARB_ERR_OOM);
    assert_null(huge);
    assert_non_null(strstr(arb_last_error(), "runtime.cu:"));
    arb_clear_error();
}

static void test_ternary_upload_roundtrip(void **state) {
    (void)state;
    arb_ternary h, d, back;
    make_layer(&h, 37, 53, ARB_TERNARY_LINEAR, 3, 11);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    assert_int_equal(d.device.kind, ARB_DEVICE_CUDA);
    assert_same_state(&h, &d, "upload");
    /* refresh on the device derives the very same nnz and scale */
    ARB_ASSERT_OK(arb_cuda_ternary_refresh(&d));
    assert_same_state(&h, &d, "refresh");
    ARB_ASSERT_OK(arb_ternary_init(&back, 37, 53, ARB_TERNARY_LINEAR, 3, arb_cpu()));
    ARB_ASSERT_OK(arb_cuda_ternary_download(&back, &d));
    assert_memory_equal(back.trits, h.trits, (size_t)(h.rows_pad * h.cols_pad / 4));
    arb_ternary_free(&d);
    /* init directly on the device: all trits 0, scale of nnz 0 */
    arb_ternary z, zh;
    ARB_ASSERT_OK(arb_ternary_init(&z, 20, 33, ARB_TERNARY_EMBED, 4, arb_cuda(0)));
    ARB_ASSERT_OK(arb_ternary_init(&zh, 20, 33, ARB_TERNARY_EMBED, 4, arb_cpu()));
    assert_same_state(&zh, &z, "init on device");
    /* host ops refuse device tensors and vice versa */
    assert_int_equal(arb_cuda_ternary_refresh(&zh), ARB_ERR_INVALID_ARG);
    arb_ternary_free(&z);
    arb_ternary_free(&zh);
    arb_ternary_free(&back);
    arb_ternary_free(&h);
}

/* Independent scalar reference: acc[t, o] = Σ_c trit(o, c) · xq[t, c]. */
static void matmul_ref(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < w->rows; o++) {
            int32_t s = 0;
            for (int64_t c = 0; c < w->cols; c++) s += arb_ternary_get(w, o, c) * xq[t * w->cols_pad + c];
            acc[t * w->rows + o] = s;
        }
}

/* Ops on a created stream give the same results as on the default stream, and the pool hands
 * a block freed on one stream to another only safely (the results would differ otherwise). */
static void test_streams(void **state) {
    (void)state;
    arb_ternary h, d;
    make_layer(&h, 300, 200, ARB_TERNARY_LINEAR, 5, 77);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    const int64_t n = 130;
    int8_t *xq = malloc((size_t)(n * h.cols_pad));
    random_xq(xq, NULL, n, h.cols, h.cols_pad, 78);
    int32_t *ref = malloc((size_t)(n * h.rows) * sizeof(int32_t)), *got = malloc((size_t)(n * h.rows) * sizeof(int32_t));
    matmul_ref(&h, xq, n, ref);
    arb_cuda_stream st;
    ARB_ASSERT_OK(arb_cuda_stream_create(&st));
    arb_cuda_stream_set(st);
    assert_ptr_equal(arb_cuda_stream_get(), st);
    for (int rep = 0; rep < 3; rep++) {
        int8_t *dxq = dev_from(xq, (size_t)(n * h.cols_pad));
        int32_t *dacc = dev_alloc((size_t)(n * h.rows) * sizeof(int32_t));
        ARB_ASSERT_OK(arb_cuda_ternary_matmul_i32(&d, dxq, n, dacc));
        to_host(got, dacc, (size_t)(n * h.rows) * sizeof(int32_t));
        assert_memory_equal(got, ref, (size_t)(n * h.rows) * sizeof(int32_t));
        arb_cuda_free(dxq);
        arb_cuda_free(dacc);
        arb_cuda_stream_set(rep == 0 ? NULL : st); /* alternate: blocks move between streams */
    }
    arb_cuda_stream_set(NULL);
    ARB_ASSERT_OK(arb_cuda_synchronize());
    arb_cuda_stream_destroy(st);
    free(xq);
    free(ref);
    free(got);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}

/* ---------------------------------------------------------------- quantization */

static void test_quantize_rows(void **state) {
    (void)state;
    /* warp-per-row kernel up to 4096 columns, block per row above */
    const int64_t shapes[][3] = {{1, 1, 16}, {7, 33, 48}, {130, 301, 304}, {5, 2048, 2048}, {3, 5000, 5008}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1], ld = shapes[si][2];
        float *x = malloc((size_t)(rows * cols) * sizeof(float)), *s = malloc((size_t)rows * sizeof(float)),
              *s2 = malloc((size_t)rows * sizeof(float));
        int8_t *q = malloc((size_t)(rows * ld)), *q2 = malloc((size_t)(rows * ld));
        arb_test_fill_f32(x, (size_t)(rows * cols), 100 + si, -3.0f, 3.0f);
        for (int64_t c = 0; c < cols; c++) x[c] = 0.0f; /* an all-zero row */
        ARB_ASSERT_OK(arb_quantize_rows(x, rows, cols, ld, q, s));
        float *dx = dev_from(x, (size_t)(rows * cols) * sizeof(float));
        int8_t *dq = dev_alloc((size_t)(rows * ld));
        float *ds = dev_alloc((size_t)rows * sizeof(float));
        ARB_ASSERT_OK(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds));
        to_host(q2, dq, (size_t)(rows * ld));
        to_host(s2, ds, (size_t)rows * sizeof(float));
        assert_memory_equal(q, q2, (size_t)(rows * ld));
        assert_memory_equal(s, s2, (size_t)rows * sizeof(float));
        /* NaN is an error, as on the CPU */
        float nanv = NAN;
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dx + (rows * cols) / 2, &nanv, sizeof nanv));
        assert_int_equal(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds), ARB_ERR_INVALID_ARG);
        /* deferred: the op returns at once, the collect reports; then immediate again */
        ARB_ASSERT_OK(arb_cuda_checks_defer());
        ARB_ASSERT_OK(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds));
        assert_int_equal(arb_cuda_checks_collect(), ARB_ERR_INVALID_ARG);
        assert_int_equal(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds), ARB_ERR_INVALID_ARG);
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dx + (rows * cols) / 2, &x[(rows * cols) / 2], sizeof(float)));
        ARB_ASSERT_OK(arb_cuda_checks_defer());
        ARB_ASSERT_OK(arb_cuda_quantize_rows(dx, rows, cols, ld, dq, ds));
        ARB_ASSERT_OK(arb_cuda_checks_collect());
        ARB_ASSERT_OK(arb_cuda_checks_collect()); /* nothing deferred: OK */
        arb_cuda_free(dx);
        arb_cuda_free(dq);
        arb_cuda_free(ds);
        free(x);
        free(s);
        free(s2);
        free(q);
        free(q2);
    }
}

/* ---------------------------------------------------------------- linear forward */

static void test_linear_forward(void **state) {
    (void)state;
    /* (rows, cols, n): GEMV (n ≤ 4) and GEMM paths, partial tiles in every dimension */
    const int64_t shapes[][3] = {{1, 1, 1},    {17, 33, 1},   {45, 77, 3},    {130, 301, 4},   {33, 65, 5},
                                 {129, 257, 9}, {300, 520, 517}, {1000, 48, 260}, {16, 1040, 33}, {2050, 100, 7}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
        arb_ternary h, d;
        make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 9, 500 + si);
        ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
        int8_t *xq = malloc((size_t)(n * h.cols_pad));
        float *xs = malloc((size_t)n * sizeof(float));
        random_xq(xq, xs, n, cols, h.cols_pad, 900 + si);
        int32_t *ref = malloc((size_t)(n * rows) * sizeof(int32_t)), *got = malloc((size_t)(n * rows) * sizeof(int32_t));
        matmul_ref(&h, xq, n, ref);
        int8_t *dxq = dev_from(xq, (size_t)(n * h.cols_pad));
        float *dxs = dev_from(xs, (size_t)n * sizeof(float));
        int32_t *dacc = dev_alloc((size_t)(n * rows) * sizeof(int32_t));
        ARB_ASSERT_OK(arb_cuda_ternary_matmul_i32(&d, dxq, n, dacc));
        to_host(got, dacc, (size_t)(n * rows) * sizeof(int32_t));
        for (int64_t i = 0; i < n * rows; i++)
            if (got[i] != ref[i])
                fail_msg("matmul (%lld,%lld,n=%lld): element %lld: cuda %d ref %d", (long long)rows, (long long)cols,
                         (long long)n, (long long)i, got[i], ref[i]);
        /* y = acc · xs · scale: float, checked against double */
        float *dy = dev_alloc((size_t)(n * rows) * sizeof(float)), *y = malloc((size_t)(n * rows) * sizeof(float));
        double *yr = malloc((size_t)(n * rows) * sizeof(double));
        ARB_ASSERT_OK(arb_cuda_ternary_linear_forward(&d, dxq, dxs, n, dy));
        to_host(y, dy, (size_t)(n * rows) * sizeof(float));
        for (int64_t t = 0; t < n; t++)
            for (int64_t o = 0; o < rows; o++)
                yr[t * rows + o] = (double)ref[t * rows + o] * (double)xs[t] * (double)h.scale[o];
        double e = arb_test_rel_l2_f64(y, yr, (size_t)(n * rows));
        if (!(e < 1e-6)) fail_msg("forward (%lld,%lld,%lld): rel L2 %g", (long long)rows, (long long)cols, (long long)n, e);
        /* and against the CPU backend itself */
        int32_t *cpu = malloc((size_t)(n * rows) * sizeof(int32_t));
        float *ycpu = malloc((size_t)(n * rows) * sizeof(float));
        ARB_ASSERT_OK(arb_ternary_matmul_i32(&h, xq, n, cpu));
        assert_memory_equal(cpu, got, (size_t)(n * rows) * sizeof(int32_t));
        ARB_ASSERT_OK(arb_ternary_linear_forward(&h, xq, xs, n, ycpu));
        e = arb_test_rel_l2(y, ycpu, (size_t)(n * rows));
        if (!(e < 1e-6)) fail_msg("forward vs CPU backend: rel L2 %g", e);
        free(cpu);
        free(ycpu);
        arb_cuda_free(dxq);
        arb_cuda_free(dxs);
        arb_cuda_free(dacc);
        arb_cuda_free(dy);
        free(xq);
        free(xs);
        free(ref);
        free(got);
        free(y);
        free(yr);
        arb_ternary_free(&d);
        arb_ternary_free(&h);
    }
}

/* ---------------------------------------------------------------- linear backward dX */

static void test_linear_backward_x(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{17, 33, 5}, {130, 301, 64}, {300, 77, 257}, {2, 1000, 3}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
        arb_ternary h, d;
        make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 12, 700 + si);
        ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
        float *dy = malloc((size_t)(n * rows) * sizeof(float)), *dx = malloc((size_t)(n * cols) * sizeof(float));
        double *ref = malloc((size_t)(n * cols) * sizeof(double)), *exact = malloc((size_t)(n * cols) * sizeof(double));
        arb_test_fill_f32(dy, (size_t)(n * rows), 800 + si, -1.0f, 1.0f);
        arb_rng_key key = arb_update_key(3, 5, h.id, ARB_RNG_DX);
        /* the documented quantization, in plain C: v = dy·scale, q = floor(v·127/amax_t + u) */
        int8_t *q = malloc((size_t)rows);
        for (int64_t t = 0; t < n; t++) {
            float amax = 0.0f;
            for (int64_t o = 0; o < rows; o++) {
                float a = fabsf(dy[t * rows + o] * h.scale[o]);
                amax = a > amax ? a : amax;
            }
            float inv = 127.0f / amax, qs = amax / 127.0f;
            for (int64_t o = 0; o < rows; o++) {
                float v = dy[t * rows + o] * h.scale[o];
                float prod = v * inv;
                float f = floorf(prod + arb_rand_unit(key, (uint32_t)(t * rows + o)));
                q[o] = (int8_t)(f > 127.0f ? 127.0f : (f < -127.0f ? -127.0f : f));
            }
            for (int64_t c = 0; c < cols; c++) {
                int64_t s = 0;
                double e = 0.0;
                for (int64_t o = 0; o < rows; o++) {
                    s += (int64_t)q[o] * arb_ternary_get(&h, o, c);
                    e += (double)dy[t * rows + o] * (double)h.scale[o] * arb_ternary_get(&h, o, c);
                }
                ref[t * cols + c] = (double)s * (double)qs;
                exact[t * cols + c] = e;
            }
        }
        float *ddy = dev_from(dy, (size_t)(n * rows) * sizeof(float)), *ddx = dev_alloc((size_t)(n * cols) * sizeof(float));
        ARB_ASSERT_OK(arb_cuda_ternary_linear_backward_x(&d, ddy, n, key, ddx));
        to_host(dx, ddx, (size_t)(n * cols) * sizeof(float));
        double e = arb_test_rel_l2_f64(dx, ref, (size_t)(n * cols));
        if (!(e < 1e-6)) fail_msg("backward_x (%lld,%lld,%lld): rel L2 vs quantized ref %g", (long long)rows, (long long)cols, (long long)n, e);
        /* and the stochastic rounding is unbiased enough to track the float product */
        float *dxc = malloc((size_t)(n * cols) * sizeof(float)); /* the CPU backend, same rule and key */
        ARB_ASSERT_OK(arb_ternary_linear_backward_x(&h, dy, n, key, dxc));
        double ec = arb_test_rel_l2(dx, dxc, (size_t)(n * cols));
        free(dxc);
        if (!(ec < 1e-6)) fail_msg("backward_x vs CPU backend: rel L2 %g", ec);
        double e2 = arb_test_rel_l2_f64(dx, exact, (size_t)(n * cols));
        if (!(e2 < 5e-2)) fail_msg("backward_x: rel L2 vs float product %g", e2);
        arb_cuda_free(ddy);
        arb_cuda_free(ddx);
        free(q);
        free(dy);
        free(dx);
        free(ref);
        free(exact);
        arb_ternary_free(&d);
        arb_ternary_free(&h);
    }
}

/* ---------------------------------------------------------------- fused backward + update */

/* test_linear_update_tiny_amax: one token row and one column of dy so small (|v| < 127/FLT_MAX)
 * that 127/amax overflows to inf, with exact zeros among them (0·inf = NaN → 0 on the CPU). */
static int tiny_amax_dy;
/* Set: run_update_steps runs every CUDA update between arb_cuda_checks_defer and _collect (the
 * training loop's mode: plan, norm and E on the device, st and stats written by collect). */
static bool g_defer_updates = false;

static void run_update_steps(int64_t rows, int64_t cols, int64_t n, int steps, uint64_t seed) {
    arb_ternary h, d;
    make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 21, seed);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    arb_update_params p = arb_update_params_default();
    p.seed = seed;
    arb_update_state sh = {0}, sd = {0};
    int8_t *xq = malloc((size_t)(n * h.cols_pad));
    float *xs = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)(n * rows) * sizeof(float));
    int8_t *dxq = dev_alloc((size_t)(n * h.cols_pad));
    float *dxs = dev_alloc((size_t)n * sizeof(float)), *ddy = dev_alloc((size_t)(n * rows) * sizeof(float));
    float *ddx1 = dev_alloc((size_t)(n * cols) * sizeof(float)), *ddx2 = dev_alloc((size_t)(n * cols) * sizeof(float));
    float *dx1 = malloc((size_t)(n * cols) * sizeof(float)), *dx2 = malloc((size_t)(n * cols) * sizeof(float));
    int64_t total_flips = 0;
    for (int step = 0; step < steps; step++) {
        p.step = (uint64_t)step;
        p.eta = 6.0f + (float)(step % 5);
        p.update_exp = step % 3 != 1;
        random_xq(xq, xs, n, cols, h.cols_pad, seed * 1000 + (uint64_t)step);
        arb_test_fill_f32(dy, (size_t)(n * rows), seed * 1000 + 500 + (uint64_t)step, -1.0f, 1.0f);
        if (step % 7 == 3) dy[0] = 40.0f; /* an outlier column */
        if (tiny_amax_dy) {
            const int64_t tt = n / 2, oo = rows / 3;
            for (int64_t o = 0; o < rows; o++) dy[tt * rows + o] = o % 3 == 0 ? 0.0f : (o % 2 ? 1e-38f : -2e-39f);
            for (int64_t t = 0; t < n; t++) dy[t * rows + oo] = t % 3 == 0 ? 0.0f : (t % 2 ? -3e-39f : 1e-38f);
        }
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dxq, xq, (size_t)(n * h.cols_pad)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dxs, xs, (size_t)n * sizeof(float)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(ddy, dy, (size_t)(n * rows) * sizeof(float)));
        arb_update_stats a, b;
        ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&h, xq, xs, dy, n, &p, &sh, &a));
        if (g_defer_updates) ARB_ASSERT_OK(arb_cuda_checks_defer());
        if (step % 2 == 0) {
            ARB_ASSERT_OK(arb_cuda_ternary_linear_backward_update(&d, dxq, dxs, ddy, n, &p, &sd, &b));
        } else { /* the fused entry: dx must equal backward_x's on the pre-update trits, bit for bit */
            arb_rng_key kx = arb_update_key(p.seed, p.step, h.id, ARB_RNG_DX);
            ARB_ASSERT_OK(arb_cuda_ternary_linear_backward_x(&d, ddy, n, kx, ddx1));
            ARB_ASSERT_OK(arb_cuda_ternary_linear_backward(&d, dxq, dxs, ddy, n, kx, ddx2, &p, &sd, &b));
            if (g_defer_updates) ARB_ASSERT_OK(arb_cuda_checks_collect());
            to_host(dx1, ddx1, (size_t)(n * cols) * sizeof(float));
            to_host(dx2, ddx2, (size_t)(n * cols) * sizeof(float));
            assert_memory_equal(dx1, dx2, (size_t)(n * cols) * sizeof(float));
        }
        if (g_defer_updates) ARB_ASSERT_OK(arb_cuda_checks_collect()); /* no-op when already collected */
        if (sh.grad_norm != sd.grad_norm) fail_msg("step %d: grad_norm cuda %.17g cpu %.17g", step, sd.grad_norm, sh.grad_norm);
        assert_int_equal(a.flips, b.flips);
        assert_int_equal(a.zeros, b.zeros);
        assert_int_equal(a.weights, b.weights);
        assert_int_equal(a.exp_moves, b.exp_moves);
        total_flips += a.flips;
        if (step % 10 == 9 || step == steps - 1) {
            char what[96];
            snprintf(what, sizeof what, "update (%lld,%lld,n=%lld) step %d", (long long)rows, (long long)cols, (long long)n, step);
            assert_same_state(&h, &d, what);
        }
    }
    assert_true(total_flips > 0); /* the test must exercise trit steps */
    arb_cuda_free(ddx1);
    arb_cuda_free(ddx2);
    free(dx1);
    free(dx2);
    arb_cuda_free(dxq);
    arb_cuda_free(dxs);
    arb_cuda_free(ddy);
    free(xq);
    free(xs);
    free(dy);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}

static void test_linear_update_100_steps(void **state) {
    (void)state;
    run_update_steps(77, 150, 45, 100, 41);
}

static void test_linear_update_shapes(void **state) {
    (void)state;
    run_update_steps(300, 600, 200, 3, 42); /* several CTA tiles in both dimensions */
    run_update_steps(16, 16, 1, 3, 43);
    run_update_steps(131, 17, 333, 3, 44);
}

/* The gradient quantization's exact path (a block whose 127/amax is inf follows arb_ops_q8:
 * NaN → 0, ±inf → ±127) on whole 128 × 128 tiles (rows % 4 == 0) and on odd shapes. */
static void test_linear_update_tiny_amax(void **state) {
    (void)state;
    tiny_amax_dy = 1;
    run_update_steps(300, 600, 200, 4, 54);
    run_update_steps(131, 17, 333, 2, 55);
    tiny_amax_dy = 0;
}

/* Split-K dW (partial int32 products over K slices, summed by the update pass): forced slice
 * counts, a first step's stats pass included, slices of unequal length, and the grid capped so
 * that CTAs walk several (tile, slice) items; the state stays bit-identical to the CPU. */
static void test_linear_update_splitk(void **state) {
    (void)state;
    setenv("ARB_CUDA_SPLITK", "3", 1);
    run_update_steps(77, 150, 1000, 12, 45); /* 8 K-blocks: slices of 3, 3, 2 */
    run_update_steps(300, 600, 700, 3, 46);
    setenv("ARB_CUDA_SPLITK", "64", 1); /* more slices than K-blocks: one block each */
    run_update_steps(131, 17, 333, 3, 47);
    setenv("ARB_CUDA_SPLITK", "4", 1);
    setenv("ARB_CUDA_GEMM_CTAS", "2", 1);
    run_update_steps(300, 600, 900, 3, 48);
    unsetenv("ARB_CUDA_GEMM_CTAS");
    unsetenv("ARB_CUDA_SPLITK");
}

/* The update rule applied in the dW GEMM's epilogue (ARB_CUDA_UPD=fused; the default sums Gint
 * in a separate pass): the same bits, the first step's stats epilogue included, several tiles
 * per CTA with the grid capped. */
static void test_linear_update_fused_epilogue(void **state) {
    (void)state;
    setenv("ARB_CUDA_UPD", "fused", 1);
    run_update_steps(77, 150, 45, 30, 51);
    run_update_steps(300, 600, 200, 3, 52);
    setenv("ARB_CUDA_GEMM_CTAS", "2", 1);
    run_update_steps(300, 600, 200, 3, 53);
    unsetenv("ARB_CUDA_GEMM_CTAS");
    unsetenv("ARB_CUDA_UPD");
}

/* The two orders of the backward's passes over dy: the row pass (default while rows_pad ≤ 2048:
 * q, qs and the column maxima from registers, then hqᵀ) on every instance — 4, 8 and 16 float4
 * per lane, scalar loads for rows % 4 != 0 — and past it (2100 rows: the maxima pass), and the
 * two-pass order forced (ARB_CUDA_BWD_ROWQ=0): dX equal to the documented quantized product
 * and to the CPU backend, the state bit-identical to the CPU after every step, in deferred mode,
 * with the exact path, with the transposes after the first pass, with the per-stage trace (it
 * only prints); a non-finite dy fails before the state changes, in both orders. */
static void test_linear_backward_orders(void **state) {
    run_update_steps(1000, 70, 300, 3, 61); /* 8 float4 per lane, 2 rows per warp */
    run_update_steps(2048, 40, 200, 2, 62); /* 16 float4 per lane */
    run_update_steps(1999, 33, 150, 2, 63); /* scalar loads */
    run_update_steps(2100, 24, 130, 2, 64); /* past the row pass: the maxima pass */
    tiny_amax_dy = 1;
    run_update_steps(1000, 70, 300, 2, 65);
    tiny_amax_dy = 0;
    setenv("ARB_CUDA_BWD_XT", "quant", 1);
    setenv("ARB_CUDA_BWD_TRACE", "1", 1);
    run_update_steps(77, 150, 450, 4, 75);
    unsetenv("ARB_CUDA_BWD_TRACE");
    unsetenv("ARB_CUDA_BWD_XT");
    for (int order = 0; order < 2; order++) {
        if (order == 1) {
            setenv("ARB_CUDA_BWD_ROWQ", "0", 1);
            test_linear_backward_x(state);
            run_update_steps(300, 600, 700, 4, 66);
            run_update_steps(131, 17, 1000, 3, 67); /* rows % 4 != 0: the scalar-load quantization */
            g_defer_updates = true;
            run_update_steps(300, 600, 700, 3, 68);
            g_defer_updates = false;
            tiny_amax_dy = 1;
            run_update_steps(300, 600, 700, 2, 69);
            tiny_amax_dy = 0;
        }
        /* NaN near the end: an error, and W, T_accum, E unchanged */
        const int64_t rows = 64, cols = 96, n = 600;
        arb_ternary h, d;
        make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 22, 70);
        ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
        int8_t *xq = malloc((size_t)(n * h.cols_pad));
        float *xs = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)(n * rows) * sizeof(float));
        random_xq(xq, xs, n, cols, h.cols_pad, 71);
        arb_test_fill_f32(dy, (size_t)(n * rows), 72, -1.0f, 1.0f);
        dy[(n - 3) * rows + 5] = NAN;
        int8_t *dxq = dev_from(xq, (size_t)(n * h.cols_pad));
        float *dxs = dev_from(xs, (size_t)n * sizeof(float)), *ddy = dev_from(dy, (size_t)(n * rows) * sizeof(float));
        float *ddx = dev_alloc((size_t)(n * cols) * sizeof(float));
        arb_update_params p = arb_update_params_default();
        arb_update_state st = {0};
        assert_int_equal(arb_cuda_ternary_linear_backward(&d, dxq, dxs, ddy, n, arb_rng_key_make(1, 2), ddx, &p, &st, NULL),
                         ARB_ERR_INVALID_ARG);
        assert_int_equal(arb_cuda_ternary_linear_backward_update(&d, dxq, dxs, ddy, n, &p, &st, NULL), ARB_ERR_INVALID_ARG);
        assert_int_equal(arb_cuda_ternary_linear_backward_x(&d, ddy, n, arb_rng_key_make(1, 2), ddx), ARB_ERR_INVALID_ARG);
        assert_same_state(&h, &d, order ? "two-pass backward with a NaN in dy" : "row-pass backward with a NaN in dy");
        arb_cuda_free(dxq);
        arb_cuda_free(dxs);
        arb_cuda_free(ddy);
        arb_cuda_free(ddx);
        free(xq);
        free(xs);
        free(dy);
        arb_ternary_free(&d);
        arb_ternary_free(&h);
    }
    unsetenv("ARB_CUDA_BWD_ROWQ");
}

/* The training shapes with the automatic slice count (16384 tokens: 7–22 slices of 6–19
 * K-blocks). Minutes of scalar reference work under the sanitizer: ARB_CUDA_TEST_LARGE=1 runs it. */
static void test_linear_update_splitk_large(void **state) {
    (void)state;
    const char *e = getenv("ARB_CUDA_TEST_LARGE");
    if (!e || strcmp(e, "1")) {
        print_message("skipped (ARB_CUDA_TEST_LARGE=1 runs it)\n");
        return;
    }
    run_update_steps(384, 1536, 16384, 2, 49);
    run_update_steps(272, 384, 16384, 3, 50);
}

/* A fixed exponent (no E state) on the device: fixed on the host and uploaded, or fixed on the
 * device; updates match the CPU bit for bit; update_exp is refused; a nonzero E cannot be fixed. */
static void test_fixed_exponent(void **state) {
    (void)state;
    const int64_t rows = 70, cols = 90, n = 33;
    arb_ternary h, d, d2;
    make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 23, 9);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d2, &h, 0));
    assert_int_equal(arb_ternary_fix_exponent(&d2), ARB_ERR_INVALID_ARG); /* E is random here */
    arb_ternary_free(&d2);
    memset(h.exp, 0, (size_t)rows);
    ARB_ASSERT_OK(arb_ternary_refresh(&h));
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d2, &h, 0));
    ARB_ASSERT_OK(arb_ternary_fix_exponent(&d2));
    assert_null(d2.exp);
    ARB_ASSERT_OK(arb_ternary_fix_exponent(&h));
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    assert_null(d.exp);
    assert_same_state(&h, &d, "fixed E upload");
    assert_same_state(&h, &d2, "fixed E on the device");
    arb_update_params p = arb_update_params_default();
    p.seed = 9;
    p.update_exp = false;
    p.eta = 30.0f;
    arb_update_state sh = {0}, sd = {0};
    int8_t *xq = malloc((size_t)(n * h.cols_pad));
    float *xs = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)(n * rows) * sizeof(float));
    int8_t *dxq = dev_alloc((size_t)(n * h.cols_pad));
    float *dxs = dev_alloc((size_t)n * sizeof(float)), *ddy = dev_alloc((size_t)(n * rows) * sizeof(float));
    for (int step = 0; step < 4; step++) {
        p.step = (uint64_t)step;
        random_xq(xq, xs, n, cols, h.cols_pad, 900 + (uint64_t)step);
        arb_test_fill_f32(dy, (size_t)(n * rows), 950 + (uint64_t)step, -1.0f, 1.0f);
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dxq, xq, (size_t)(n * h.cols_pad)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dxs, xs, (size_t)n * sizeof(float)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(ddy, dy, (size_t)(n * rows) * sizeof(float)));
        ARB_ASSERT_OK(arb_ternary_linear_backward_update_ref(&h, xq, xs, dy, n, &p, &sh, NULL));
        ARB_ASSERT_OK(arb_cuda_ternary_linear_backward_update(&d, dxq, dxs, ddy, n, &p, &sd, NULL));
    }
    assert_same_state(&h, &d, "fixed E after 4 updates");
    p.update_exp = true;
    assert_int_equal(arb_cuda_ternary_linear_backward_update(&d, dxq, dxs, ddy, n, &p, &sd, NULL), ARB_ERR_INVALID_ARG);
    arb_cuda_free(dxq);
    arb_cuda_free(dxs);
    arb_cuda_free(ddy);
    free(xq);
    free(xs);
    free(dy);
    arb_ternary_free(&d);
    arb_ternary_free(&d2);
    arb_ternary_free(&h);
}

/* ---------------------------------------------------------------- embedding */

static void test_embedding(void **state) {
    (void)state;
    const int64_t rows = 97, cols = 75, n = 300;
    arb_ternary h, d;
    make_layer(&h, rows, cols, ARB_TERNARY_EMBED, 30, 61);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    int32_t *idx = malloc((size_t)n * sizeof(int32_t));
    float *dy = malloc((size_t)(n * cols) * sizeof(float)), *out = malloc((size_t)(n * cols) * sizeof(float)),
          *ref = malloc((size_t)(n * cols) * sizeof(float));
    int32_t *didx = dev_alloc((size_t)n * sizeof(int32_t));
    float *ddy = dev_alloc((size_t)(n * cols) * sizeof(float)), *dout = dev_alloc((size_t)(n * cols) * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.seed = 61;
    arb_update_state sh = {0}, sd = {0};
    for (int step = 0; step < 30; step++) {
        arb_rng_key k = arb_rng_key_make(62, (uint64_t)step);
        for (int64_t t = 0; t < n; t++) idx[t] = (int32_t)(arb_rand_u32(k, (uint32_t)t) % (uint32_t)(rows / 2)); /* half the rows unused */
        arb_test_fill_f32(dy, (size_t)(n * cols), 63 + (uint64_t)step, -1.0f, 1.0f);
        ARB_ASSERT_OK(arb_cuda_copy_h2d(didx, idx, (size_t)n * sizeof(int32_t)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(ddy, dy, (size_t)(n * cols) * sizeof(float)));
        ARB_ASSERT_OK(arb_ternary_embedding_forward(&h, idx, n, ref));
        ARB_ASSERT_OK(arb_cuda_ternary_embedding_forward(&d, didx, n, dout));
        to_host(out, dout, (size_t)(n * cols) * sizeof(float));
        assert_memory_equal(out, ref, (size_t)(n * cols) * sizeof(float)); /* trit · scale is exact */
        p.step = (uint64_t)step;
        arb_update_stats a, b;
        ARB_ASSERT_OK(arb_ternary_embedding_backward_update(&h, idx, dy, n, &p, &sh, &a));
        ARB_ASSERT_OK(arb_cuda_ternary_embedding_backward_update(&d, didx, ddy, n, &p, &sd, &b));
        assert_true(sh.grad_norm == sd.grad_norm);
        assert_int_equal(a.flips, b.flips);
        assert_int_equal(a.exp_moves, b.exp_moves);
        assert_int_equal(a.zeros, b.zeros);
    }
    assert_same_state(&h, &d, "embedding after 30 steps");
    idx[5] = (int32_t)rows; /* out of range: an error, not a crash */
    ARB_ASSERT_OK(arb_cuda_copy_h2d(didx, idx, (size_t)n * sizeof(int32_t)));
    assert_int_equal(arb_cuda_ternary_embedding_forward(&d, didx, n, dout), ARB_ERR_INVALID_ARG);
    arb_cuda_free(didx);
    arb_cuda_free(ddy);
    arb_cuda_free(dout);
    free(idx);
    free(dy);
    free(out);
    free(ref);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}


/* The one-thread-per-word update pass (ARB_CUDA_UPD_DENSE=16; the default runs four threads per
 * word with vector loads): the same bits, unaligned and aligned columns, split-K included. */
static void test_upd_dense_word_per_thread(void **state) {
    (void)state;
    setenv("ARB_CUDA_UPD_DENSE", "16", 1);
    run_update_steps(77, 150, 45, 12, 91);
    run_update_steps(300, 600, 200, 3, 92);
    setenv("ARB_CUDA_SPLITK", "3", 1);
    run_update_steps(77, 152, 1000, 4, 93);
    unsetenv("ARB_CUDA_SPLITK");
    unsetenv("ARB_CUDA_UPD_DENSE");
}

/* ---------------------------------------------------------------- device plan / norm / E rule */

static uint64_t mix64(uint64_t *st) {
    uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unit64(uint64_t *st) { return (double)(mix64(st) >> 11) * 0x1.0p-53; }
/* A float over many octaves: 2^e · [1, 2), e in [lo, hi] (subnormals below 2^-126), sometimes 0. */
static float wide_float(uint64_t *st, int lo, int hi) {
    if (mix64(st) % 16 == 0) return 0.0f;
    int e = lo + (int)(mix64(st) % (uint64_t)(hi - lo + 1));
    return (float)ldexp(1.0 + unit64(st), e);
}

static void check_plan(const float *c, int64_t rows, double eta, double norm, const char *what) {
    int32_t *mh = malloc((size_t)rows * sizeof(int32_t)), *md = malloc((size_t)rows * sizeof(int32_t));
    int sh = -1, sd = -2;
    arb_upd_plan_make(c, rows, eta, norm, mh, &sh);
    ARB_ASSERT_OK(arb_cuda_test_upd_plan(c, rows, eta, norm, md, &sd));
    if (sh != sd) fail_msg("%s: shift cuda %d cpu %d (rows %lld eta %.17g norm %.17g)", what, sd, sh, (long long)rows, eta, norm);
    for (int64_t o = 0; o < rows; o++)
        if (mh[o] != md[o]) fail_msg("%s: mult[%lld] cuda %d cpu %d (eta %.17g norm %.17g c %.9g)", what, (long long)o, md[o], mh[o], eta, norm, (double)c[o]);
    free(mh);
    free(md);
}

/* k_upd_plan against arb_upd_plan_make: random scales over the whole float range (subnormals,
 * zeros), and the edges — rmax an exact power of two (frexp's boundary), the shift clamped at 0
 * (rmax ≥ 2^30: multipliers at INT32_MAX) and at 62 (tiny ratios), an infinite rmax (subnormal
 * norm), norm or eta 0, one row. */
static void test_upd_plan_device(void **state) {
    (void)state;
    uint64_t rs = 0x51ED;
    const int64_t max_rows = 3000;
    float *c = malloc((size_t)max_rows * sizeof(float));
    for (int trial = 0; trial < 120; trial++) {
        int64_t rows = trial % 10 == 0 ? 1 : 1 + (int64_t)(mix64(&rs) % (uint64_t)max_rows);
        int lo = -149 + (int)(mix64(&rs) % 120), hi = lo + (int)(mix64(&rs) % 60);
        if (hi > 127) hi = 127;
        for (int64_t o = 0; o < rows; o++) c[o] = wide_float(&rs, lo, hi);
        double eta = trial % 17 == 5 ? 0.0 : ldexp(1.0 + unit64(&rs), -10 + (int)(mix64(&rs) % 30));
        double norm = ldexp(1.0 + unit64(&rs), -1074 + (int)(mix64(&rs) % 2100));
        char what[64];
        snprintf(what, sizeof what, "plan trial %d", trial);
        check_plan(c, rows, eta, norm, what);
    }
    /* rmax = 2^k exactly (or one ulp off): c a power of two, normp = RMS·norm ≈ 1 */
    for (int k = -40; k <= 40; k += 3) {
        for (int64_t o = 0; o < 64; o++) c[o] = (float)ldexp(1.0, k - (int)(o % 5));
        for (int j = -1; j <= 1; j++) {
            double norm = nextafter(1.0 / ARB_UPD_RMS_PER_MEANABS, j < 0 ? 0.0 : (j > 0 ? 2.0 : 1.0 / ARB_UPD_RMS_PER_MEANABS));
            check_plan(c, 64, 1.0, norm, "plan rmax power of two");
        }
    }
    for (int64_t o = 0; o < 100; o++) c[o] = (float)(1.0 + (double)o);
    check_plan(c, 100, 1e10, 1e-3, "plan shift 0, INT32_MAX");     /* rmax ~ 8e14 */
    check_plan(c, 100, 1e-3, 1e12, "plan shift 62");                /* rmax ~ 1e-13 */
    check_plan(c, 100, 1.0, 4.9406564584124654e-324, "plan rmax inf"); /* subnormal norm */
    check_plan(c, 100, 0.0, 1.0, "plan eta 0");
    check_plan(c, 100, 3.0, 0.0, "plan norm 0");
    c[0] = 1.0f;
    check_plan(c, 1, 6.0, 0.25, "plan one row");
    free(c);
}

/* k_upd_finish against arb_upd_norm + arb_upd_exp_step (+ refresh), and the plan's first-step
 * branch against arb_upd_plan_make of arb_upd_norm: random sums, rows across the kernel's
 * 2048-row chunks, E at its rails, all-zero ge (no E rule). */
static void test_upd_finish_device(void **state) {
    (void)state;
    uint64_t rs = 0xF1A1;
    const int64_t shapes[][2] = {{1, 7}, {77, 150}, {2048, 3}, {3001, 5}, {4500, 2}};
    for (int trial = 0; trial < 15; trial++) {
        const int64_t rows = shapes[trial % 5][0], cols = shapes[trial % 5][1];
        arb_ternary h, d;
        make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 60 + trial, 900 + (uint64_t)trial);
        for (int64_t o = 0; o < rows; o++)
            if (mix64(&rs) % 8 == 0) h.exp[o] = (int8_t)(mix64(&rs) % 2 ? ARB_EXP_MAX : ARB_EXP_MIN); /* the rails */
        ARB_ASSERT_OK(arb_ternary_refresh(&h));
        ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
        float *c = malloc((size_t)rows * sizeof(float));
        int64_t *ag = malloc((size_t)rows * sizeof(int64_t)), *ge = malloc((size_t)rows * sizeof(int64_t));
        arb_upd_row_acc *acc = calloc((size_t)rows, sizeof *acc);
        double *ger = malloc((size_t)rows * sizeof(double));
        for (int64_t o = 0; o < rows; o++) {
            c[o] = mix64(&rs) % 10 == 0 ? 0.0f : (float)ldexp(1.0 + unit64(&rs), -20 + (int)(mix64(&rs) % 24));
            ag[o] = (int64_t)(mix64(&rs) >> (20 + mix64(&rs) % 30));
            ge[o] = trial % 5 == 4 ? 0 : (int64_t)(mix64(&rs) >> (22 + mix64(&rs) % 30)) * (mix64(&rs) % 2 ? 1 : -1);
            acc[o].abs_g = ag[o];
            acc[o].ge = ge[o];
            ger[o] = (double)c[o] * (double)ge[o];
        }
        arb_update_params p = arb_update_params_default();
        p.seed = 77 + (uint64_t)trial;
        p.step = (uint64_t)trial * 3;
        p.eta = (float)(0.5 + 10.0 * unit64(&rs));
        p.eta_exp = (float)(0.25 + 4.0 * unit64(&rs));
        p.exp_threshold = 1 + (int)(mix64(&rs) % 40);
        p.update_exp = trial % 3 != 2;
        /* host */
        double nh = arb_upd_norm(c, acc, rows, cols);
        int32_t *mh = malloc((size_t)rows * sizeof(int32_t)), *md = malloc((size_t)rows * sizeof(int32_t));
        int sh = -1, sd = -2;
        arb_upd_plan_make(c, rows, (double)p.eta, nh, mh, &sh);
        int32_t moves_h = p.update_exp ? arb_upd_exp_step(&h, ger, &p) : 0;
        ARB_ASSERT_OK(arb_ternary_refresh(&h));
        /* device */
        double nd = -1.0;
        int32_t moves_d = -1;
        ARB_ASSERT_OK(arb_cuda_test_upd_finish(&d, c, ag, ge, &p, &nd, &moves_d, md, &sd));
        if (nh != nd) fail_msg("finish trial %d: norm cuda %.17g cpu %.17g", trial, nd, nh);
        assert_int_equal(moves_h, moves_d);
        assert_int_equal(sh, sd);
        for (int64_t o = 0; o < rows; o++)
            if (mh[o] != md[o]) fail_msg("finish trial %d: first-step mult[%lld] cuda %d cpu %d", trial, (long long)o, md[o], mh[o]);
        char what[64];
        snprintf(what, sizeof what, "finish trial %d (%lld rows, %d moves)", trial, (long long)rows, moves_h);
        assert_same_state(&h, &d, what);
        if (trial % 5 != 4 && p.update_exp && rows > 1000) assert_true(moves_h > 0); /* the rule must act */
        free(c);
        free(ag);
        free(ge);
        free(acc);
        free(ger);
        free(mh);
        free(md);
        arb_ternary_free(&d);
        arb_ternary_free(&h);
    }
}

/* The training loop's mode: updates between arb_cuda_checks_defer and _collect never wait; st and
 * stats arrive at collect, bit-identical to the CPU, with the finishes on the current stream or
 * overlapped on a second one (arb_cuda_updates_overlap). Two updates of one state in one window
 * (the second continues from the first's device norm, after its finish); a non-finite gradient
 * skips the update (state and norm unchanged) and collect reports it. */
static void test_deferred_updates(void **state) {
    (void)state;
    g_defer_updates = true;
    run_update_steps(77, 150, 45, 20, 81);
    arb_cuda_updates_overlap(true); /* finishes on the second stream */
    run_update_steps(300, 600, 200, 4, 86);
    run_update_steps(77, 150, 45, 8, 87);
    setenv("ARB_CUDA_UPD", "fused", 1);
    run_update_steps(77, 150, 45, 6, 82);
    unsetenv("ARB_CUDA_UPD");
    g_defer_updates = false;
    /* the embedding below: two updates of one tensor per window, overlapped finishes included */

    const int64_t rows = 61, cols = 40, n = 150;
    arb_ternary h, d;
    make_layer(&h, rows, cols, ARB_TERNARY_EMBED, 31, 83);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    int32_t *idx = malloc((size_t)n * sizeof(int32_t));
    float *dy = malloc((size_t)(n * cols) * sizeof(float));
    int32_t *didx = dev_alloc((size_t)n * sizeof(int32_t));
    float *ddy = dev_alloc((size_t)(n * cols) * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.seed = 83;
    arb_update_state sh = {0}, sd = {0};
    for (int step = 0; step < 6; step++) {
        arb_update_stats a[2], b[2];
        ARB_ASSERT_OK(arb_cuda_checks_defer());
        for (int k = 0; k < 2; k++) { /* two updates of the same state before collect */
            p.step = (uint64_t)(2 * step + k);
            arb_rng_key key = arb_rng_key_make(84, p.step);
            for (int64_t t = 0; t < n; t++) idx[t] = (int32_t)(arb_rand_u32(key, (uint32_t)t) % (uint32_t)rows);
            arb_test_fill_f32(dy, (size_t)(n * cols), 85 + p.step, -1.0f, 1.0f);
            ARB_ASSERT_OK(arb_cuda_copy_h2d(didx, idx, (size_t)n * sizeof(int32_t)));
            ARB_ASSERT_OK(arb_cuda_copy_h2d(ddy, dy, (size_t)(n * cols) * sizeof(float)));
            ARB_ASSERT_OK(arb_cuda_synchronize()); /* the host buffers are rewritten next round */
            ARB_ASSERT_OK(arb_ternary_embedding_backward_update(&h, idx, dy, n, &p, &sh, &a[k]));
            ARB_ASSERT_OK(arb_cuda_ternary_embedding_backward_update(&d, didx, ddy, n, &p, &sd, &b[k]));
        }
        ARB_ASSERT_OK(arb_cuda_checks_collect());
        if (sh.grad_norm != sd.grad_norm) fail_msg("deferred embedding step %d: norm cuda %.17g cpu %.17g", step, sd.grad_norm, sh.grad_norm);
        for (int k = 0; k < 2; k++) {
            if (k == 0) continue; /* the first record of the window reports the last update's stats */
            assert_int_equal(a[k].flips, b[k].flips);
            assert_int_equal(a[k].zeros, b[k].zeros);
            assert_int_equal(a[k].weights, b[k].weights);
            assert_int_equal(a[k].exp_moves, b[k].exp_moves);
        }
    }
    assert_same_state(&h, &d, "deferred embedding");
    /* a NaN: skipped, reported at collect, state and norm as before */
    dy[7] = NAN;
    ARB_ASSERT_OK(arb_cuda_copy_h2d(ddy, dy, (size_t)(n * cols) * sizeof(float)));
    const double before = sd.grad_norm;
    p.step = 100;
    ARB_ASSERT_OK(arb_cuda_checks_defer());
    ARB_ASSERT_OK(arb_cuda_ternary_embedding_backward_update(&d, didx, ddy, n, &p, &sd, NULL));
    assert_int_equal(arb_cuda_checks_collect(), ARB_ERR_INVALID_ARG);
    assert_true(sd.grad_norm == before);
    assert_same_state(&h, &d, "deferred embedding after a skipped NaN step");
    arb_cuda_updates_overlap(false);
    arb_cuda_free(didx);
    arb_cuda_free(ddy);
    free(idx);
    free(dy);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}

/* ---------------------------------------------------------------- RMSNorm */

static void test_rmsnorm(void **state) {
    (void)state;
    const int64_t dim = 203, n = 67;
    arb_ternary h, d;
    make_layer(&h, 1, dim, ARB_TERNARY_GAIN, 40, 71);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    size_t nd = (size_t)(n * dim);
    float *x = malloc(nd * sizeof(float)), *dy = malloc(nd * sizeof(float)), *y = malloc(nd * sizeof(float)),
          *yr = malloc(nd * sizeof(float)), *dx = malloc(nd * sizeof(float)), *dxr = malloc(nd * sizeof(float)),
          *rs = malloc((size_t)n * sizeof(float)), *rsr = malloc((size_t)n * sizeof(float));
    float *dxd = dev_alloc(nd * sizeof(float)), *dyd = dev_alloc(nd * sizeof(float)), *yd = dev_alloc(nd * sizeof(float)),
          *dxo = dev_alloc(nd * sizeof(float)), *rsd = dev_alloc((size_t)n * sizeof(float));
    arb_update_params p = arb_update_params_default();
    p.seed = 71;
    arb_update_state sh = {0}, sd = {0};
    for (int step = 0; step < 30; step++) {
        arb_test_fill_f32(x, nd, 72 + (uint64_t)step, -2.0f, 2.0f);
        arb_test_fill_f32(dy, nd, 172 + (uint64_t)step, -1.0f, 1.0f);
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dxd, x, nd * sizeof(float)));
        ARB_ASSERT_OK(arb_cuda_copy_h2d(dyd, dy, nd * sizeof(float)));
        ARB_ASSERT_OK(arb_ternary_rmsnorm_forward(&h, x, n, 1e-6f, yr, rsr));
        ARB_ASSERT_OK(arb_cuda_ternary_rmsnorm_forward(&d, dxd, n, 1e-6f, yd, rsd));
        to_host(y, yd, nd * sizeof(float));
        to_host(rs, rsd, (size_t)n * sizeof(float));
        double e = arb_test_rel_l2(y, yr, nd), er = arb_test_rel_l2(rs, rsr, (size_t)n);
        if (!(e < 1e-6) || !(er < 1e-6)) fail_msg("rmsnorm forward: rel L2 y %g rstd %g", e, er);
        /* backward from the CPU's rstd so that the gain's integer state must agree exactly */
        ARB_ASSERT_OK(arb_cuda_copy_h2d(rsd, rsr, (size_t)n * sizeof(float)));
        p.step = (uint64_t)step;
        arb_update_stats a, b;
        ARB_ASSERT_OK(arb_ternary_rmsnorm_backward_update(&h, x, rsr, dy, n, dxr, &p, &sh, &a));
        ARB_ASSERT_OK(arb_cuda_ternary_rmsnorm_backward_update(&d, dxd, rsd, dyd, n, dxo, &p, &sd, &b));
        to_host(dx, dxo, nd * sizeof(float));
        e = arb_test_rel_l2(dx, dxr, nd);
        if (!(e < 1e-6)) fail_msg("rmsnorm backward: rel L2 dx %g", e);
        assert_true(sh.grad_norm == sd.grad_norm);
        assert_int_equal(a.flips, b.flips);
    }
    assert_same_state(&h, &d, "rmsnorm gain after 30 steps");
    /* frozen gain: p == NULL computes dx only */
    ARB_ASSERT_OK(arb_cuda_ternary_rmsnorm_backward_update(&d, dxd, rsd, dyd, n, dxo, NULL, NULL, NULL));
    arb_cuda_free(dxd);
    arb_cuda_free(dyd);
    arb_cuda_free(yd);
    arb_cuda_free(dxo);
    arb_cuda_free(rsd);
    free(x);
    free(dy);
    free(y);
    free(yr);
    free(dx);
    free(dxr);
    free(rs);
    free(rsr);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}

/* ---------------------------------------------------------------- persistent GEMM schedule */

static void check_matmul(int64_t rows, int64_t cols, int64_t n, uint64_t seed) {
    arb_ternary h, d;
    make_layer(&h, rows, cols, ARB_TERNARY_LINEAR, 9, seed);
    ARB_ASSERT_OK(arb_cuda_ternary_upload(&d, &h, 0));
    int8_t *xq = malloc((size_t)(n * h.cols_pad));
    random_xq(xq, NULL, n, cols, h.cols_pad, seed + 1);
    int32_t *ref = malloc((size_t)(n * rows) * sizeof(int32_t)), *got = malloc((size_t)(n * rows) * sizeof(int32_t));
    matmul_ref(&h, xq, n, ref);
    int8_t *dxq = dev_from(xq, (size_t)(n * h.cols_pad));
    int32_t *dacc = dev_alloc((size_t)(n * rows) * sizeof(int32_t));
    ARB_ASSERT_OK(arb_cuda_ternary_matmul_i32(&d, dxq, n, dacc));
    to_host(got, dacc, (size_t)(n * rows) * sizeof(int32_t));
    for (int64_t i = 0; i < n * rows; i++)
        if (got[i] != ref[i])
            fail_msg("matmul (%lld,%lld,n=%lld): element %lld: cuda %d ref %d", (long long)rows, (long long)cols,
                     (long long)n, (long long)i, got[i], ref[i]);
    arb_cuda_free(dxq);
    arb_cuda_free(dacc);
    free(xq);
    free(ref);
    free(got);
    arb_ternary_free(&d);
    arb_ternary_free(&h);
}

/* The persistent GEMM walks several tiles per CTA (stage ring and phases carried across tiles):
 * more tiles than the card holds CTAs, and the same shapes with the grid capped at 2 and 3 CTAs
 * (ARB_CUDA_GEMM_CTAS; 3 rounds up to whole 2-CTA clusters), forward and fused update, also with
 * more K-blocks per tile than the ring has stages. */
static void test_gemm_persistent(void **state) {
    (void)state;
    check_matmul(2100, 100, 2100, 61); /* 17 × 9 tiles of 128 × 256 */
    const char *caps[] = {"2", "3"};
    for (size_t i = 0; i < 2; i++) {
        setenv("ARB_CUDA_GEMM_CTAS", caps[i], 1);
        check_matmul(300, 520, 517, 62 + i);
        check_matmul(1000, 48, 260, 64 + i);
        check_matmul(300, 2100, 517, 68 + i); /* 17 K-blocks per tile */
        run_update_steps(300, 600, 200, 3, 66 + i);
        unsetenv("ARB_CUDA_GEMM_CTAS");
    }
}

int main(void) {
    if (arb_cuda_device_count() <= 0) {
        printf("SKIP: no CUDA device\n");
        return ARB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_and_copies),        cmocka_unit_test(test_ternary_upload_roundtrip),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_quantize_rows),          cmocka_unit_test(test_linear_forward),
        cmocka_unit_test(test_linear_backward_x),      cmocka_unit_test(test_linear_update_100_steps),
        cmocka_unit_test(test_linear_update_shapes),   cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),                cmocka_unit_test(test_fixed_exponent),
        cmocka_unit_test(test_gemm_persistent),        cmocka_unit_test(test_linear_update_splitk),
        cmocka_unit_test(test_linear_update_fused_epilogue),
        cmocka_unit_test(test_linear_update_splitk_large),
        cmocka_unit_test(test_upd_plan_device),        cmocka_unit_test(test_upd_finish_device),
        cmocka_unit_test(test_deferred_updates),       cmocka_unit_test(test_upd_dense_word_per_thread),
        cmocka_unit_test(test_linear_update_tiny_amax),   cmocka_unit_test(test_linear_backward_orders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
