/* How much of the fused linear backward+update's wall time is host round trips: the same calls
 * back to back in immediate mode (every call returns with st written: one synchronize per call,
 * and one mid-call wait for the non-finite flag) and in deferred mode (arb_cuda_checks_defer:
 * plan, norm and E on the device, st written once at collect), against the forward.
 * Build on the GPU machine after dev/cuda/gpu_run.sh:
 *   nvcc -O2 dev/cuda/upd_roundtrip.c -Iinclude -o build-cuda/upd_roundtrip build-cuda/libarbitor.a \
 *        -lcublasLt -lcublas -lcjson -lgomp -lm
 * Wall clock over REPS calls (median of 5 batches), after 3 warm-up calls. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "arbitor/cuda.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        arb_status s_ = (x);                                                   \
        if (s_ != ARB_OK) {                                                    \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, arb_last_error()); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { REPS = 10, BATCHES = 5 };

/* mode 0: forward; 1: backward+update, immediate; 2: the same, deferred */
static double time_mode(int mode, arb_ternary *w, const int8_t *xq, const float *xs, const float *dy, float *y, float *dx,
                        int64_t n, arb_update_params *p, arb_update_state *st) {
    double v[BATCHES];
    for (int b = -1; b < BATCHES; b++) {
        TRY(arb_cuda_synchronize());
        double t0 = now_s();
        if (mode == 2) TRY(arb_cuda_checks_defer());
        for (int i = 0; i < (b < 0 ? 3 : REPS); i++) {
            p->step++;
            if (mode == 0) TRY(arb_cuda_ternary_linear_forward(w, xq, xs, n, y));
            else TRY(arb_cuda_ternary_linear_backward(w, xq, xs, dy, n, (arb_rng_key){1, 2}, dx, p, st, NULL));
        }
        if (mode == 2) TRY(arb_cuda_checks_collect());
        TRY(arb_cuda_synchronize());
        if (b >= 0) v[b] = (now_s() - t0) / REPS * 1e3;
    }
    qsort(v, BATCHES, sizeof v[0], cmp_d);
    return v[BATCHES / 2];
}

int main(void) {
    if (arb_cuda_device_count() <= 0) {
        fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    const int64_t shapes[][3] = {{16384, 2048, 2048}, {16384, 2048, 8192}, {16384, 384, 1152}, {16384, 1536, 384}};
    for (int k = 0; k < 4; k++) {
        const int64_t n = shapes[k][0], cols = shapes[k][1], rows = shapes[k][2];
        arb_ternary h, w;
        TRY(arb_ternary_init(&h, rows, cols, ARB_TERNARY_LINEAR, 1, arb_cpu()));
        TRY(arb_ternary_randomize(&h, 7));
        TRY(arb_cuda_ternary_upload(&w, &h, 0));
        int8_t *hq = malloc((size_t)(n * w.cols_pad));
        float *hs = malloc((size_t)n * sizeof(float)), *hd = malloc((size_t)(n * rows) * sizeof(float));
        uint64_t r = 12345;
        for (int64_t i = 0; i < n * w.cols_pad; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            hq[i] = (int8_t)((int)(r >> 57) - 64);
        }
        for (int64_t i = 0; i < n; i++) hs[i] = 0.001f + 0.01f * (float)(i % 7);
        for (int64_t i = 0; i < n * rows; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            hd[i] = (float)((int64_t)(r >> 40) - (1 << 23)) / (float)(1 << 23);
        }
        int8_t *xq;
        float *xs, *dy, *y, *dx;
        TRY(arb_cuda_malloc((void **)&xq, (size_t)(n * w.cols_pad)));
        TRY(arb_cuda_malloc((void **)&xs, (size_t)n * sizeof(float)));
        TRY(arb_cuda_malloc((void **)&dy, (size_t)(n * rows) * sizeof(float)));
        TRY(arb_cuda_malloc((void **)&y, (size_t)(n * rows) * sizeof(float)));
        TRY(arb_cuda_malloc((void **)&dx, (size_t)(n * cols) * sizeof(float)));
        TRY(arb_cuda_copy_h2d(xq, hq, (size_t)(n * w.cols_pad)));
        TRY(arb_cuda_copy_h2d(xs, hs, (size_t)n * sizeof(float)));
        TRY(arb_cuda_copy_h2d(dy, hd, (size_t)(n * rows) * sizeof(float)));
        TRY(arb_cuda_synchronize());
        arb_update_params p = arb_update_params_default();
        arb_update_state st = {0};
        double tf = time_mode(0, &w, xq, xs, dy, y, dx, n, &p, &st);
        double ti = time_mode(1, &w, xq, xs, dy, y, dx, n, &p, &st);
        double td = time_mode(2, &w, xq, xs, dy, y, dx, n, &p, &st);
        printf("ROUNDTRIP %lldx%lldx%lld forward %.3f ms | fused dX+dW+update immediate %.3f ms (%.2fx fwd), "
               "deferred %.3f ms (%.2fx fwd): round trips %.1f us/call\n",
               (long long)n, (long long)cols, (long long)rows, tf, ti, ti / tf, td, td / tf, (ti - td) * 1e3);
        arb_cuda_free(xq);
        arb_cuda_free(xs);
        arb_cuda_free(dy);
        arb_cuda_free(y);
        arb_cuda_free(dx);
        free(hq);
        free(hs);
        free(hd);
        arb_ternary_free(&w);
        arb_ternary_free(&h);
    }
    return 0;
}
