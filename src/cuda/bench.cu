/* `arbitor bench kernels --device cuda`: the ternary kernels against the library baselines,
 * measured in one run on one card, ending with one machine-readable BENCH line.
 *
 * Why these baselines: cuBLASLt int8 with K-major operands (TN, the layout its int8 tensor-core
 * kernels need) is the fastest 8-bit GEMM a user has; cuBLAS bf16 is what PyTorch training runs.
 * The GEMV is memory-bound, so it is compared with the measured device-to-device copy bandwidth
 * of a buffer the size of its packed weights. Inputs are random (never zeros), weights rotate
 * among several copies where the working set would otherwise sit in L2, and each time is the
 * median of several event-timed batches after a warm-up. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/paths.h"
#include "cuda/kernels.cuh"

namespace {

#define BCHECK(call)                                                                                   \
    do {                                                                                               \
        cudaError_t e_ = (call);                                                                       \
        if (e_ != cudaSuccess) {                                                                       \
            fprintf(stderr, "arbitor: error: bench: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,       \
                    cudaGetErrorString(e_));                                                           \
            return false;                                                                              \
        }                                                                                              \
    } while (0)
#define BLAS(call)                                                                                     \
    do {                                                                                               \
        int s_ = (int)(call);                                                                          \
        if (s_ != 0) {                                                                                 \
            fprintf(stderr, "arbitor: error: bench: %s:%d: %s: status %d\n", __FILE__, __LINE__, #call, s_); \
            return false;                                                                              \
        }                                                                                              \
    } while (0)
#define ATRY(call)                                                                                     \
    do {                                                                                               \
        if ((call) != ARB_OK) {                                                                        \
            fprintf(stderr, "arbitor: error: bench: %s: %s\n", #call, arb_last_error());               \
            return false;                                                                              \
        }                                                                                              \
    } while (0)

__global__ void k_fill_i8(int8_t *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (int8_t)((int)(arb_rand_u32(arb_rng_key{seed, 77}, (uint32_t)i) % 255u) - 127);
}
__global__ void k_fill_codes(uint8_t *p, size_t n, uint32_t seed) { /* random codes in {0,1,2} */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t r = arb_rand_u32(arb_rng_key{seed, 78}, (uint32_t)i), b = 0;
        for (int j = 0; j < 4; j++) b |= ((r >> (8 * j)) % 3u) << (2 * j);
        p[i] = (uint8_t)b;
    }
}
__global__ void k_fill_f32(float *p, size_t n, uint32_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * arb_rand_unit(arb_rng_key{seed, 79}, (uint32_t)i);
}
__global__ void k_fill_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(arb_rand_unit(arb_rng_key{seed, 80}, (uint32_t)i) * 2.0f - 1.0f);
}

/* Median milliseconds per call: `batches` event-timed batches of `reps` calls after `warm`. */
bool time_ms(const std::function<bool()> &fn, int warm, int reps, int batches, double *ms) {
    for (int i = 0; i < warm; i++)
        if (!fn()) return false;
    BCHECK(cudaDeviceSynchronize());
    cudaEvent_t a, b;
    BCHECK(cudaEventCreate(&a));
    BCHECK(cudaEventCreate(&b));
    std::vector<double> v;
    for (int k = 0; k < batches; k++) {
        BCHECK(cudaEventRecord(a, arb_cuda_cur_stream()));
        for (int i = 0; i < reps; i++)
            if (!fn()) return false;
        BCHECK(cudaEventRecord(b, arb_cuda_cur_stream()));
        BCHECK(cudaEventSynchronize(b));
        float t = 0;
        BCHECK(cudaEventElapsedTime(&t, a, b));
        v.push_back((double)t / reps);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(v.begin(), v.end());
    *ms = v[v.size() / 2];
    return true;
}

struct Shape {
    const char *name;
    int64_t m, k, n; /* tokens, in, out */
    bool train;
};

struct Lt {
    cublasLtHandle_t lt = nullptr;
    cublasHandle_t blas = nullptr;
    void *ws = nullptr;
    size_t ws_bytes = 64u << 20;
};

/* cuBLASLt int8: out (tokens × out, row-major int32) = X (tokens × K) · Wᵀ, W (out × K): in
 * column-major terms D (out × tokens) = op(A)=Aᵀ (A = W as K × out) · B (X as K × tokens): TN. */
bool lt_int8(Lt &L, const int8_t *w, const int8_t *x, int32_t *out, int64_t tokens, int64_t k, int64_t nout,
             double *ms, double *ms_algo0) {
    cublasLtMatmulDesc_t op;
    BLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    BLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    BLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    BLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, (uint64_t)k, (uint64_t)nout, k));
    BLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, (uint64_t)k, (uint64_t)tokens, k));
    BLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, (uint64_t)nout, (uint64_t)tokens, nout));
    cublasLtMatmulPreference_t pref;
    BLAS(cublasLtMatmulPreferenceCreate(&pref));
    BLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &L.ws_bytes,
                                              sizeof L.ws_bytes));
    cublasLtMatmulHeuristicResult_t res[8];
    int nres = 0;
    BLAS(cublasLtMatmulAlgoGetHeuristic(L.lt, op, la, lb, lc, lc, pref, 8, res, &nres));
    if (nres == 0) {
        fprintf(stderr, "arbitor: error: bench: cuBLASLt has no int8 algorithm for %lldx%lldx%lld\n",
                (long long)tokens, (long long)k, (long long)nout);
        return false;
    }
    int32_t alpha = 1, beta = 0;
    double best = 1e30;
    for (int i = 0; i < nres && i < 4; i++) { /* the baseline gets its best of the top 4 */
        double t;
        auto fn = [&]() {
            return cublasLtMatmul(L.lt, op, &alpha, w, la, x, lb, &beta, out, lc, out, lc, &res[i].algo, L.ws,
                                  L.ws_bytes, arb_cuda_cur_stream()) == CUBLAS_STATUS_SUCCESS;
        };
        if (!time_ms(fn, 2, 5, 5, &t)) return false;
        best = std::min(best, t);
        if (i == 0) *ms_algo0 = t; /* the heuristic's first choice: what a plain cublasLtMatmul call gets */
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    *ms = best;
    return true;
}

bool blas_bf16(Lt &L, const __nv_bfloat16 *w, const __nv_bfloat16 *x, __nv_bfloat16 *out, int64_t tokens, int64_t k,
               int64_t nout, double *ms) {
    float alpha = 1.0f, beta = 0.0f;
    auto fn = [&]() {
        return cublasGemmEx(L.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nout, (int)tokens, (int)k, &alpha, w, CUDA_R_16BF,
                            (int)k, x, CUDA_R_16BF, (int)k, &beta, out, CUDA_R_16BF, (int)nout, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    };
    return time_ms(fn, 2, 5, 5, ms);
}

struct TorchTimes {
    int64_t m, k, n;
    double int8_ms = 0, bf16_ms = 0; /* 0: not measured */
};

/* PyTorch's _int_mm (int8, K-major B) and bf16 matmul at the training shapes, in a python3 child
 * on the same card after our own measurements (the card is otherwise idle then). */
bool torch_gemm(int dev, std::vector<TorchTimes> &tt) {
    char sbuf[PATH_MAX + 64];
    const char *script = arb_tree_file("bench/torch_gemm.py", "ARB_TORCH_GEMM", sbuf, sizeof sbuf);
    if (!script) {
        printf("PyTorch GEMM: bench/torch_gemm.py not found (set ARB_TORCH_GEMM): no PyTorch columns\n");
        return false;
    }
    std::string shapes;
    for (const TorchTimes &t : tt) {
        char b[96];
        snprintf(b, sizeof b, "%s%lldx%lldx%lld", shapes.empty() ? "" : ",", (long long)t.m, (long long)t.k, (long long)t.n);
        shapes += b;
    }
    char cmd[PATH_MAX + 512];
    snprintf(cmd, sizeof cmd, "python3 '%s' --device-index %d --shapes %s 2>&1", script, dev, shapes.c_str());
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char line[512];
    bool any = false;
    while (fgets(line, sizeof line, p)) {
        char kind[32];
        long long m, k, n;
        double ms;
        if (sscanf(line, "TORCH %31s %lldx%lldx%lld %lf", kind, &m, &k, &n, &ms) == 5) {
            for (TorchTimes &t : tt)
                if (t.m == m && t.k == k && t.n == n) {
                    if (!strcmp(kind, "int8")) t.int8_ms = ms;
                    if (!strcmp(kind, "bf16")) t.bf16_ms = ms;
                    any = true;
                }
        } else if (!strncmp(line, "TORCH ", 6)) {
            printf("PyTorch GEMM: %s", line + 6); /* version / unavailable / a failed int8 shape */
        }
    }
    pclose(p);
    return any;
}

void usage(FILE *f) {
    fprintf(f, "usage: arbitor bench kernels --device cuda [--quick] [--device-index N] [--no-torch]\n"
               "  Times the CUDA ternary kernels against cuBLASLt int8 (TN) and cuBLAS bf16 on this card:\n"
               "  GEMM at 4096^3, 8192^3 and the training shapes (16384x2048x2048, 16384x2048x8192),\n"
               "  GEMV 16384x16384 at batch 1 against copy bandwidth, fused backward+update against forward.\n"
               "  cuBLASLt int8 is its best of the heuristic's top 4 algorithms (column 'i8 algo0': its first\n"
               "  choice alone); PyTorch _int_mm (int8) and bf16 matmul at the training shapes come from\n"
               "  bench/torch_gemm.py when python3 can import torch with CUDA (--no-torch skips it).\n"
               "  BENCH: train_vs_best against the faster of cuBLASLt int8 (best of 4) and cuBLAS bf16;\n"
               "  train_vs_int8_algo0 against cuBLASLt's first choice; train_vs_torch against the faster\n"
               "  of PyTorch int8 and bf16 (minimum over the two training shapes each).\n"
               "  --quick   smaller shapes (a smoke run; numbers are not the reported ones)\n"
               "  --shape TOKENSxINxOUT   only this GEMM and its backward (no GEMV, no BENCH line)\n");
}

bool run(bool quick, int dev, const Shape *only, bool torch) {
    ATRY(arb_cuda_set_device(dev));
    char name[256];
    ATRY(arb_cuda_device_name(dev, name, sizeof name));
    printf("device: cuda:%d %s\nternary GEMM core: %s\n", dev, name, arb_cuda_gemm_core());
    Lt L;
    BLAS(cublasLtCreate(&L.lt));
    BLAS(cublasCreate(&L.blas));
    BCHECK(cudaMalloc(&L.ws, L.ws_bytes));
    BLAS(cublasSetWorkspace(L.blas, L.ws, L.ws_bytes));
    BLAS(cublasSetStream(L.blas, arb_cuda_cur_stream()));

    std::vector<Shape> shapes = {{"4096^3", 4096, 4096, 4096, false},
                                 {"8192^3", 8192, 8192, 8192, false},
                                 {"train 16384x2048x2048", 16384, 2048, 2048, true},
                                 {"train 16384x2048x8192", 16384, 2048, 8192, true}};
    if (quick)
        shapes = {{"1024^3", 1024, 1024, 1024, false},
                  {"2048^3", 2048, 2048, 2048, false},
                  {"train 2048x512x512", 2048, 512, 512, true},
                  {"train 2048x512x2048", 2048, 512, 2048, true}};
    if (only) shapes = {*only};
    int64_t maxe = quick ? 2048 * 2048 : 16384 * 8192; /* largest operand, elements */
    for (const Shape &s : shapes) maxe = std::max({maxe, s.m * s.k, s.k * s.n, s.m * s.n});
    int8_t *x8, *w8;
    int32_t *o32;
    __nv_bfloat16 *xb, *wb, *ob;
    BCHECK(cudaMalloc(&x8, (size_t)maxe));
    BCHECK(cudaMalloc(&w8, (size_t)maxe));
    BCHECK(cudaMalloc(&o32, (size_t)maxe * 4 * 2));
    BCHECK(cudaMalloc(&xb, (size_t)maxe * 2));
    BCHECK(cudaMalloc(&wb, (size_t)maxe * 2));
    BCHECK(cudaMalloc(&ob, (size_t)maxe * 2 * 2));
    auto release_gemm_buffers = [&]() { /* the GEMM operands and the library handles */
        cudaFree(x8);
        cudaFree(w8);
        cudaFree(o32);
        cudaFree(xb);
        cudaFree(wb);
        cudaFree(ob);
        cudaFree(L.ws);
        cublasDestroy(L.blas);
        cublasLtDestroy(L.lt);
    };
    k_fill_i8<<<1024, 256>>>(x8, (size_t)maxe, 1);
    k_fill_i8<<<1024, 256>>>(w8, (size_t)maxe, 2);
    k_fill_bf16<<<1024, 256>>>(xb, (size_t)maxe, 3);
    k_fill_bf16<<<1024, 256>>>(wb, (size_t)maxe, 4);
    BCHECK(cudaGetLastError());

    printf("\n%-24s %12s %12s %12s %9s %9s %12s %12s\n", "GEMM tokens x in x out", "ternary", "cuBLASLt i8", "cuBLAS bf16",
           "vs_int8", "vs_bf16", "core i8xi8", "i8 algo0");
    double r8192_int8 = 0, r8192_bf16 = 0, train_vs_best = 1e30, bwdupd_over_fwd = 0, train_vs_algo0 = 1e30;
    std::vector<TorchTimes> torch_t;
    std::vector<double> train_tt;
    for (const Shape &s : shapes) {
        arb_ternary w;
        ATRY(arb_ternary_init(&w, s.n, s.k, ARB_TERNARY_LINEAR, 1, arb_cuda(dev)));
        k_fill_codes<<<1024, 256>>>(w.trits, (size_t)(w.rows_pad * w.cols_pad / 4), 5);
        BCHECK(cudaGetLastError());
        ATRY(arb_cuda_ternary_refresh(&w));
        double tt, ti, tb, tc8, ti0 = 0;
        auto tern = [&]() { return arb_cuda_ternary_matmul_i32(&w, x8, s.m, o32) == ARB_OK; };
        if (!time_ms(tern, 2, 5, 5, &tt)) return false;
        /* the same core on int8 weights: what the trit decode costs (or saves) */
        auto core8 = [&]() { return arb_cuda_gemm_s8_i32(w8, x8, s.n, s.m, s.k, o32) == ARB_OK; };
        if (!time_ms(core8, 2, 5, 5, &tc8)) return false;
        if (!lt_int8(L, w8, x8, o32, s.m, s.k, s.n, &ti, &ti0)) return false;
        if (!blas_bf16(L, wb, xb, ob, s.m, s.k, s.n, &tb)) return false;
        double ops = 2.0 * (double)s.m * (double)s.k * (double)s.n;
        printf("%-24s %7.0f TOP/s %7.0f TOP/s %7.0f TFLOP/s %8.2fx %8.2fx %7.0f TOP/s %7.0f TOP/s\n", s.name,
               ops / tt / 1e9, ops / ti / 1e9, ops / tb / 1e9, ti / tt, tb / tt, ops / tc8 / 1e9, ops / ti0 / 1e9);
        if (s.m == s.k && s.k == s.n && s.m == (quick ? 2048 : 8192)) {
            r8192_int8 = ti / tt;
            r8192_bf16 = tb / tt;
        }
        if (s.train) {
            train_vs_best = std::min(train_vs_best, std::min(ti, tb) / tt);
            train_vs_algo0 = std::min(train_vs_algo0, ti0 / tt);
            TorchTimes t;
            t.m = s.m;
            t.k = s.k;
            t.n = s.n;
            torch_t.push_back(t);
            train_tt.push_back(tt);
            /* fused backward (dX + dW → T_accum update) against the forward at this shape */
            float *xs, *y, *dy, *dx;
            BCHECK(cudaMalloc(&xs, (size_t)s.m * 4));
            BCHECK(cudaMalloc(&y, (size_t)(s.m * s.n) * 4));
            BCHECK(cudaMalloc(&dy, (size_t)(s.m * s.n) * 4));
            BCHECK(cudaMalloc(&dx, (size_t)(s.m * s.k) * 4));
            k_fill_f32<<<1024, 256>>>(xs, (size_t)s.m, 6, 0.001f, 0.02f);
            k_fill_f32<<<1024, 256>>>(dy, (size_t)(s.m * s.n), 7, -1.0f, 1.0f);
            BCHECK(cudaGetLastError());
            arb_update_params p = arb_update_params_default();
            arb_update_state st = {0};
            double tf, tbx, tbu;
            auto fwd = [&]() { return arb_cuda_ternary_linear_forward(&w, x8, xs, s.m, y) == ARB_OK; };
            if (!time_ms(fwd, 2, 5, 5, &tf)) return false;
            auto bx = [&]() { return arb_cuda_ternary_linear_backward_x(&w, dy, s.m, arb_rng_key{1, 2}, dx) == ARB_OK; };
            if (!time_ms(bx, 2, 3, 5, &tbx)) return false;
            auto bu = [&]() {
                p.step++;
                return arb_cuda_ternary_linear_backward_update(&w, x8, xs, dy, s.m, &p, &st, nullptr) == ARB_OK;
            };
            if (!time_ms(bu, 2, 3, 5, &tbu)) return false; /* st.grad_norm is set after the first call */
            double tfused;
            auto fb = [&]() {
                p.step++;
                return arb_cuda_ternary_linear_backward(&w, x8, xs, dy, s.m, arb_rng_key{1, 2}, dx, &p, &st, nullptr) ==
                       ARB_OK;
            };
            if (!time_ms(fb, 2, 3, 5, &tfused)) return false;
            /* the same calls in deferred mode, as the training loop runs them: no host round trip
             * per call (the NaN flag and the update record come back at collect) */
            double tdefer;
            ATRY(arb_cuda_checks_defer());
            const bool okd = time_ms(fb, 2, 3, 5, &tdefer);
            ATRY(arb_cuda_checks_collect());
            if (!okd) return false;
            double ratio = tfused / tf;
            bwdupd_over_fwd = std::max(bwdupd_over_fwd, ratio);
            printf("  forward %.3f ms | backward dX %.3f ms, dW+update %.3f ms | fused dX+dW+update %.3f ms = %.2fx forward"
                   " | deferred checks %.3f ms = %.2fx\n",
                   tf, tbx, tbu, tfused, ratio, tdefer, tdefer / tf);
            cudaFree(xs);
            cudaFree(y);
            cudaFree(dy);
            cudaFree(dx);
        }
        arb_ternary_free(&w);
    }

    if (only) { /* one shape: no GEMV, no BENCH line */
        release_gemm_buffers();
        return true;
    }
    /* GEMV: 16384 × 16384 at batch 1, 4 weight copies in rotation (64 MiB each > L2) */
    const int64_t gv = quick ? 4096 : 16384;
    const int NW = 4;
    arb_ternary gw[NW];
    for (int i = 0; i < NW; i++) {
        ATRY(arb_ternary_init(&gw[i], gv, gv, ARB_TERNARY_LINEAR, 2 + i, arb_cuda(dev)));
        k_fill_codes<<<1024, 256>>>(gw[i].trits, (size_t)(gv * gv / 4), 10 + i);
        BCHECK(cudaGetLastError());
        ATRY(arb_cuda_ternary_refresh(&gw[i]));
    }
    const size_t packed = (size_t)(gv * gv / 4);
    float *xs1, *y1;
    BCHECK(cudaMalloc(&xs1, 4));
    BCHECK(cudaMalloc(&y1, (size_t)gv * 4));
    k_fill_f32<<<1, 32>>>(xs1, 1, 8, 0.01f, 0.02f);
    int rot = 0;
    double tg, tc;
    auto gemv = [&]() { return arb_cuda_ternary_linear_forward(&gw[rot++ % NW], x8, xs1, 1, y1) == ARB_OK; };
    if (!time_ms(gemv, 8, 40, 7, &tg)) return false;
    uint8_t *cdst;
    BCHECK(cudaMalloc(&cdst, packed));
    auto copy = [&]() {
        return cudaMemcpyAsync(cdst, gw[rot++ % NW].trits, packed, cudaMemcpyDeviceToDevice, arb_cuda_cur_stream()) ==
               cudaSuccess;
    };
    if (!time_ms(copy, 8, 40, 7, &tc)) return false;
    double copy_bw = 2.0 * (double)packed / (tc * 1e-3), gemv_bw = (double)packed / (tg * 1e-3);
    double gemv_pct = 100.0 * gemv_bw / copy_bw;
    printf("\nGEMV %lldx%lld batch 1: %.1f us, %.0f GB/s of packed weights; d2d copy of %.0f MiB: %.0f GB/s "
           "(read+write) -> %.0f%%\n",
           (long long)gv, (long long)gv, tg * 1e3, gemv_bw / 1e9, (double)packed / 1048576.0, copy_bw / 1e9, gemv_pct);
    for (int i = 0; i < NW; i++) arb_ternary_free(&gw[i]);
    cudaFree(cdst);
    cudaFree(xs1);
    cudaFree(y1);
    release_gemm_buffers();
    double train_vs_torch = 1e30;
    if (torch && torch_gemm(dev, torch_t)) {
        printf("\nPyTorch on this card (same run, after ours): ternary GEMM vs torch._int_mm (int8, K-major B) and "
               "torch.matmul (bf16)\n");
        for (size_t i = 0; i < torch_t.size(); i++) {
            const TorchTimes &t = torch_t[i];
            const double ops = 2.0 * (double)t.m * (double)t.k * (double)t.n;
            printf("  %lldx%lldx%lld: ternary %.0f TOP/s | torch int8 ", (long long)t.m, (long long)t.k, (long long)t.n,
                   ops / train_tt[i] / 1e9);
            if (t.int8_ms > 0) printf("%.0f TOP/s (%.2fx)", ops / t.int8_ms / 1e9, t.int8_ms / train_tt[i]);
            else printf("n/a");
            if (t.bf16_ms > 0) printf(" | torch bf16 %.0f TFLOP/s (%.2fx)\n", ops / t.bf16_ms / 1e9, t.bf16_ms / train_tt[i]);
            else printf(" | torch bf16 n/a\n");
            double best = 1e30;
            if (t.int8_ms > 0) best = std::min(best, t.int8_ms);
            if (t.bf16_ms > 0) best = std::min(best, t.bf16_ms);
            if (best < 1e30) train_vs_torch = std::min(train_vs_torch, best / train_tt[i]);
        }
    }
    printf("\nBENCH gemm8192_vs_int8=%.2f gemm8192_vs_bf16=%.2f train_vs_best=%.2f gemv_bw_pct=%.1f "
           "bwdupd_over_fwd=%.2f train_vs_int8_algo0=%.2f",
           r8192_int8, r8192_bf16, train_vs_best, gemv_pct, bwdupd_over_fwd, train_vs_algo0);
    if (train_vs_torch < 1e30) printf(" train_vs_torch=%.2f", train_vs_torch);
    printf("\n");
    return true;
}

} // namespace

extern "C" int arb_cuda_bench_kernels(int argc, char **argv) {
    bool quick = false, torch = true;
    int dev = 0;
    Shape one = {"shape", 0, 0, 0, true};
    bool have_one = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--no-torch")) {
            torch = false;
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            if (strcmp(argv[++i], "cuda")) {
                fprintf(stderr, "arbitor: error: bench kernels (cuda): --device '%s' is not cuda\n", argv[i]);
                return 1;
            }
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long a, b, c;
            char tail;
            if (sscanf(argv[++i], "%lldx%lldx%lld%c", &a, &b, &c, &tail) != 3 || a < 1 || b < 1 || c < 1 ||
                a > (1 << 20) || b > (1 << 20) || c > (1 << 20)) {
                fprintf(stderr, "arbitor: error: bench kernels: --shape '%s' is not TOKENSxINxOUT\n", argv[i]);
                return 2;
            }
            one.m = a;
            one.k = b;
            one.n = c;
            have_one = true;
        } else if (!strcmp(argv[i], "--device-index") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 63) {
                fprintf(stderr, "arbitor: error: bench kernels: bad --device-index '%s'\n", argv[i]);
                return 1;
            }
            dev = (int)v;
        } else {
            fprintf(stderr, "arbitor: error: bench kernels (cuda): unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (arb_cuda_device_count() <= 0) {
        fprintf(stderr, "arbitor: error: bench kernels: no CUDA device is available\n");
        return 1;
    }
    return run(quick, dev, have_one ? &one : nullptr, torch) ? 0 : 1;
}
