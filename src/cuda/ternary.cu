/* CUDA ternary ops other than the linear GEMMs: refresh (nnz, scale), activation quantization,
 * the dense per-weight update (embedding, RMSNorm gain), embedding and RMSNorm forward/backward,
 * and the plan and finish of every update (on the device: no host round trip).
 *
 * Why these are simple one-pass kernels: they are memory-bound and small next to the linear
 * layers. Integer state must match the CPU bit for bit, so every float that feeds it is computed
 * with the CPU's operation order (explicit __fmul_rn/__fadd_rn: no contraction into FMA), every
 * reduction that feeds it is integer or a max, and the few double-precision rules (plan, norm,
 * E) run in single-block kernels that repeat src/ternary/update.c's operations in its order. */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/kernels.cuh"
#include "model/model_cuda.h"

/* ------------------------------------------------------------------ refresh */

/* One warp per row: nnz from the packed words (same popcount as arb_ternary_row_nnz). */
__global__ void k_refresh(const uint8_t *trits, int64_t rows, int64_t cols, int64_t kt, int kind, const int8_t *exp,
                          int32_t *nnz, float *scale) {
    int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const uint8_t *row = trits + (r >> 4) * kt * ARB_TILE_BYTES + 4 * (r & 15);
    int32_t n = 0;
    for (int64_t k = lane; k < kt; k += 32) {
        uint32_t x = *(const uint32_t *)(row + k * ARB_TILE_BYTES) ^ 0x55555555u;
        n += __popc((x | (x >> 1)) & 0x55555555u);
    }
    for (int o = 16; o; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
    if (lane == 0) {
        nnz[r] = n;
        scale[r] = arb_dev_row_scale(kind, cols, n, exp ? exp[r] : 0); /* NULL: fixed E = 0 */
    }
}

extern "C" arb_status arb_cuda_ternary_refresh(arb_ternary *w) {
    ARB_TRY(arb_cuda_require_ternary(w, "arb_cuda_ternary_refresh"));
    k_refresh<<<arb_cuda_blocks(w->rows * 32, 256), 256, 0, arb_cuda_cur_stream()>>>(
        w->trits, w->rows, w->cols, w->cols_pad / 16, (int)w->kind, w->exp, w->nnz, w->scale);
    ARB_CU_LAUNCH("k_refresh");
    return ARB_OK;
}

/* ------------------------------------------------------------------ activation quantization */

/* x[c], or with R2 (the model's MLP) ReLU²(x[c]) exactly as arb_mcu_relu2 computes it: the
 * quantization reads the hidden pre-activation directly, no ReLU² pass or buffer in between. */
template <bool R2> __device__ __forceinline__ float qload(const float *xr, int64_t c) {
    float v = xr[c];
    if (R2) v = v > 0.0f ? __fmul_rn(v, v) : 0.0f;
    return v;
}

/* The row's int8 values from its absmax: q = rint(x · (127/amax)) ties to even, clamped to ±127,
 * padding to ld with 0; an all-zero or non-finite row stores zeros (and flags a bad one). Threads
 * first, first+step, ... of the row's group share the work; the leader writes the scale. */
template <bool R2>
__device__ __forceinline__ void quantize_row_store(const float *xr, int8_t *qr, int64_t cols, int64_t ld, float amax,
                                                   int nan, int64_t first, int64_t step, bool leader, float *scale,
                                                   int *bad) {
    if (amax == 0.0f || nan) {
        if (leader) {
            *scale = 0.0f;
            if (nan) atomicOr(bad, 1);
        }
        for (int64_t c = first; c < ld; c += step) qr[c] = 0;
        return;
    }
    float inv = __fdiv_rn(127.0f, amax);
    if (leader) *scale = __fdiv_rn(amax, 127.0f);
    for (int64_t c = first; c < ld; c += step) {
        int v = 0;
        if (c < cols) {
            v = __float2int_rn(__fmul_rn(qload<R2>(xr, c), inv));
            v = v > 127 ? 127 : (v < -127 ? -127 : v);
        }
        qr[c] = (int8_t)v;
    }
}

/* One block per row: absmax (exact: a max), then q = rint(x · (127/amax)) ties to even. */
template <bool R2>
__global__ void k_quantize_rows(const float *x, int64_t cols, int64_t ld, int8_t *q, float *scale, int *bad) {
    int64_t r = blockIdx.x;
    const float *xr = x + r * cols;
    int8_t *qr = q + r * ld;
    float amax = 0.0f;
    int nan = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float a = fabsf(qload<R2>(xr, c));
        nan |= !(a <= 3.4028234663852886e38f);
        amax = fmaxf(amax, a);
    }
    __shared__ float s_max[32];
    __shared__ int s_nan[32];
    for (int o = 16; o; o >>= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    }
    if ((threadIdx.x & 31) == 0) {
        s_max[threadIdx.x >> 5] = amax;
        s_nan[threadIdx.x >> 5] = nan;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        int nw = blockDim.x >> 5;
        amax = threadIdx.x < nw ? s_max[threadIdx.x] : 0.0f;
        nan = threadIdx.x < nw ? s_nan[threadIdx.x] : 0;
        for (int o = 16; o; o >>= 1) {
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
            nan |= __shfl_xor_sync(0xffffffffu, nan, o);
        }
        if (threadIdx.x == 0) {
            s_max[0] = amax;
            s_nan[0] = nan;
        }
    }
    __syncthreads();
    quantize_row_store<R2>(xr, qr, cols, ld, s_max[0], s_nan[0], threadIdx.x, blockDim.x, threadIdx.x == 0, scale + r,
                           bad);
}

/* The same per row with one warp per row, for rows up to a few thousand values (a 256-thread
 * block per 384-wide row spent its time in barriers). */
template <bool R2>
__global__ void __launch_bounds__(256) k_quantize_rows_warp(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                                            int8_t *q, float *scale, int *bad) {
    const int64_t r = blockIdx.x * (int64_t)8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + r * cols;
    int8_t *qr = q + r * ld;
    float amax = 0.0f;
    int nan = 0;
    for (int64_t c = lane; c < cols; c += 32) {
        float a = fabsf(qload<R2>(xr, c));
        nan |= !(a <= 3.4028234663852886e38f);
        amax = fmaxf(amax, a);
    }
    for (int o = 16; o; o >>= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    }
    quantize_row_store<R2>(xr, qr, cols, ld, amax, nan, lane, 32, lane == 0, scale + r, bad);
}

/* The warp-per-row form for rows of 128·k ≤ 2048 values (the model's 384 and 1536): each lane
 * holds its float4s in registers between the absmax and the store (one read of the row) and
 * writes 4 bytes at a time; the same values, flags and padding as quantize_row_store. */
template <bool R2> __device__ __forceinline__ float qval(float v) { return R2 ? (v > 0.0f ? __fmul_rn(v, v) : 0.0f) : v; }
__device__ __forceinline__ void qmax(float v, float &amax, int &nan) {
    const float a = fabsf(v);
    nan |= !(a <= 3.4028234663852886e38f);
    amax = fmaxf(amax, a);
}
__device__ __forceinline__ int qint(float v, float inv) {
    const int i = __float2int_rn(__fmul_rn(v, inv));
    return i > 127 ? 127 : (i < -127 ? -127 : i);
}

template <bool R2, int NV> /* NV: float4s per lane when fixed at compile time (no guards: the loads go out together), else 0 */
__global__ void __launch_bounds__(256) k_quantize_rows_vec(const float *x, int64_t rows, int cols, int64_t ld, int8_t *q,
                                                           float *scale, int *bad) {
    const int64_t r = blockIdx.x * (int64_t)8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, nv = NV ? NV : cols / 128;
    if (r >= rows) return;
    const float4 *xr = reinterpret_cast<const float4 *>(x + r * cols);
    float4 v[NV ? NV : 16];
    float amax = 0.0f;
    int nan = 0;
#pragma unroll
    for (int i = 0; i < (NV ? NV : 16); i++)
        if (i < nv) {
            float4 a = xr[i * 32 + lane];
            a = make_float4(qval<R2>(a.x), qval<R2>(a.y), qval<R2>(a.z), qval<R2>(a.w));
            qmax(a.x, amax, nan);
            qmax(a.y, amax, nan);
            qmax(a.z, amax, nan);
            qmax(a.w, amax, nan);
            v[i] = a;
        }
    for (int o = 16; o; o >>= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    }
    int8_t *qr = q + r * ld;
    const bool zero = amax == 0.0f || nan;
    const float inv = zero ? 0.0f : __fdiv_rn(127.0f, amax);
    if (lane == 0) {
        scale[r] = zero ? 0.0f : __fdiv_rn(amax, 127.0f);
        if (nan) atomicOr(bad, 1);
    }
#pragma unroll
    for (int i = 0; i < (NV ? NV : 16); i++)
        if (i < nv) {
            char4 o = make_char4(0, 0, 0, 0);
            if (!zero)
                o = make_char4((signed char)qint(v[i].x, inv), (signed char)qint(v[i].y, inv),
                               (signed char)qint(v[i].z, inv), (signed char)qint(v[i].w, inv));
            reinterpret_cast<char4 *>(qr)[i * 32 + lane] = o;
        }
    for (int64_t c = cols + lane; c < ld; c += 32) qr[c] = 0;
}

static arb_status quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q, float *scale,
                                bool relu2) {
    if (rows < 0 || cols < 0 || ld < cols)
        return arb_error(ARB_ERR_SHAPE, "arb_cuda_quantize_rows: rows %lld, cols %lld, ld %lld", (long long)rows,
                         (long long)cols, (long long)ld);
    if (rows == 0) return ARB_OK;
    if (!x || !q || !scale) return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_quantize_rows: NULL buffer");
    if (rows > INT32_MAX) return arb_error(ARB_ERR_SHAPE, "arb_cuda_quantize_rows: %lld rows", (long long)rows);
    ARB_TRY(arb_cuda_require("arb_cuda_quantize_rows"));
    arb_cuda_scratch bad;
    int *flag = arb_cuda_deferred_flag();
    if (!flag) {
        ARB_TRY(bad.alloc(sizeof(int)));
        ARB_CU(cudaMemsetAsync(bad.p, 0, sizeof(int), arb_cuda_cur_stream()));
        flag = bad.as<int>();
    }
    if (cols % 128 == 0 && cols <= 2048 && ld % 4 == 0 && ((uintptr_t)x % 16 | (uintptr_t)q % 4) == 0) {
        const unsigned nb = arb_cuda_blocks(rows, 8);
        cudaStream_t st = arb_cuda_cur_stream();
        const int nv = (int)(cols / 128);
        if (relu2 && nv == 12) k_quantize_rows_vec<true, 12><<<nb, 256, 0, st>>>(x, rows, (int)cols, ld, q, scale, flag);
        else if (relu2) k_quantize_rows_vec<true, 0><<<nb, 256, 0, st>>>(x, rows, (int)cols, ld, q, scale, flag);
        else if (nv == 3) k_quantize_rows_vec<false, 3><<<nb, 256, 0, st>>>(x, rows, (int)cols, ld, q, scale, flag);
        else k_quantize_rows_vec<false, 0><<<nb, 256, 0, st>>>(x, rows, (int)cols, ld, q, scale, flag);
        ARB_CU_LAUNCH("k_quantize_rows_vec");
    } else if (cols <= 4096) {
        if (relu2)
            k_quantize_rows_warp<true><<<arb_cuda_blocks(rows, 8), 256, 0, arb_cuda_cur_stream()>>>(x, rows, cols, ld, q,
                                                                                                     scale, flag);
        else
            k_quantize_rows_warp<false><<<arb_cuda_blocks(rows, 8), 256, 0, arb_cuda_cur_stream()>>>(x, rows, cols, ld, q,
                                                                                                      scale, flag);
        ARB_CU_LAUNCH("k_quantize_rows_warp");
    } else {
        if (relu2) k_quantize_rows<true><<<(unsigned)rows, 256, 0, arb_cuda_cur_stream()>>>(x, cols, ld, q, scale, flag);
        else k_quantize_rows<false><<<(unsigned)rows, 256, 0, arb_cuda_cur_stream()>>>(x, cols, ld, q, scale, flag);
        ARB_CU_LAUNCH("k_quantize_rows");
    }
    if (!bad.p) return ARB_OK; /* deferred: arb_cuda_checks_collect reports */
    int h = 0;
    ARB_TRY(arb_cuda_copy_d2h(&h, bad.p, sizeof h));
    if (h) return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_quantize_rows: a row has a NaN or infinite value");
    return ARB_OK;
}

extern "C" arb_status arb_cuda_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q,
                                             float *scale) {
    return quantize_rows(x, rows, cols, ld, q, scale, false);
}

extern "C" arb_status arb_mcu_quantize_rows_relu2(const float *u, int64_t rows, int64_t cols, int64_t ld, int8_t *q,
                                                  float *scale) {
    return quantize_rows(u, rows, cols, ld, q, scale, true);
}

/* ------------------------------------------------------------------ update: plan, finish (device)
 *
 * Steps 3 and 5 of the rule (update_internal.h) run as two single-block kernels on the stream, so
 * an update never waits for the host. They reproduce arb_upd_plan_make, arb_upd_norm and
 * arb_upd_exp_step bit for bit: the same double operations in the same order, each written as
 * an explicit round-to-nearest intrinsic (no contraction into FMA), the ordered sums run by one
 * thread over products the block computes in parallel, and frexp / ldexp / floor / sqrt are
 * exact or correctly rounded on the device as on the host. */

arb_status arb_cuda_rowsums::init(int64_t r) {
    rows = r;
    ARB_TRY(buf.alloc((size_t)(3 * r) * sizeof(unsigned long long)));
    return zero();
}

arb_status arb_cuda_rowsums::zero() {
    ARB_CU(cudaMemsetAsync(buf.p, 0, (size_t)(3 * rows) * sizeof(unsigned long long), arb_cuda_cur_stream()));
    return ARB_OK;
}

arb_status arb_cuda_rowsums::download(arb_upd_row_acc *acc) const {
    std::vector<long long> h((size_t)(3 * rows));
    ARB_TRY(arb_cuda_copy_d2h(h.data(), buf.p, h.size() * sizeof(long long)));
    for (int64_t o = 0; o < rows; o++) {
        acc[o].abs_g = h[(size_t)o];
        acc[o].ge = h[(size_t)(rows + o)];
        acc[o].flips = h[(size_t)(2 * rows + o)];
    }
    return ARB_OK;
}

arb_status arb_cuda_upd_check(const arb_ternary *w, int64_t n, const arb_update_params *p, const arb_update_state *st,
                              const char *what) {
    ARB_TRY(arb_cuda_require_ternary(w, what));
    ARB_TRY(arb_cuda_upd_wait_tensor(w->trits)); /* an overlapped finish of this tensor is still running */
    arb_ternary shadow = *w; /* arb_upd_check reads header fields only */
    shadow.device = arb_cpu();
    return arb_upd_check(&shadow, n, p, st, what);
}

enum { UPD_T = 1024, UPD_CHUNK = 2048 };

__device__ __forceinline__ double upd_norm_in(const double *d, double h) { return d ? *d : h; }

/* arb_upd_plan_make's ratio eta · c / normp, left to right. */
__device__ __forceinline__ double plan_ratio(double eta, float c, double normp) {
    return __ddiv_rn(__dmul_rn(eta, (double)c), normp);
}

/* c[o] · sum[o] in double, as arb_upd_norm and the E rule form it. */
__device__ __forceinline__ double c_times(const float *c, const unsigned long long *sum, int64_t o) {
    return __dmul_rn((double)c[o], (double)(long long)sum[o]);
}

/* Thread 0 (a) and thread 32 (b, when two) sum the terms of rows 0..rows-1 in row order; the
 * block fills a chunk of terms in parallel, the summing threads walk it. Every thread calls. */
template <bool TWO, class FA, class FB>
__device__ void ordered_sums(int64_t rows, FA fa, FB fb, double *ba, double *bb, double *sa, double *sb) {
    double a = 0.0, b = 0.0;
    for (int64_t base = 0; base < rows; base += UPD_CHUNK) {
        const int n = (int)(rows - base < UPD_CHUNK ? rows - base : UPD_CHUNK);
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            ba[j] = fa(base + j);
            if (TWO) bb[j] = fb(base + j);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
#pragma unroll 8
            for (int j = 0; j < n; j++) a = __dadd_rn(a, ba[j]);
        } else if (TWO && threadIdx.x == 32) {
#pragma unroll 8
            for (int j = 0; j < n; j++) b = __dadd_rn(b, bb[j]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *sa = a;
    if (TWO && threadIdx.x == 32) *sb = b;
    __syncthreads();
}

__device__ __forceinline__ double block_max_d(double v, double *red) {
    for (int o = 16; o; o >>= 1) {
        const double u = __shfl_xor_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) v = red[w] > v ? red[w] : v;
        red[0] = v;
    }
    __syncthreads();
    v = red[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ long long block_sum_ll(long long v, long long *red) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) v += red[w];
    __syncthreads();
    return v; /* valid in thread 0 */
}

/* Step 3: c[o] from its source, this step's norm when there is no previous one (from the stats
 * pass sums in abs_g, which are then zeroed for the update pass), and the plan: plan[0..rows) =
 * m[o], plan[rows] = S, plan[rows+1] = skip (a non-finite gradient: the update passes and the
 * finish leave the state alone; the flag also goes to the deferred check). */
__global__ void __launch_bounds__(UPD_T) k_upd_plan(int64_t rows, int64_t cols, arb_cuda_csrc cs, float *c, double eta,
                                                    const double *norm_in, double norm_host,
                                                    unsigned long long *abs_g, int32_t *plan, int *deferred) {
    __shared__ double ba[UPD_CHUNK];
    __shared__ double red[32];
    __shared__ double s_sum;
    __shared__ int s_skip;
    const int tid = threadIdx.x;
    if (tid == 0) {
        const int b = cs.bad ? *cs.bad : 0;
        s_skip = b;
        if (b && deferred) atomicOr(deferred, 1);
    }
    const float c0 = cs.mode == ARB_CSRC_SCALED ? __fdiv_rn(__uint_as_float(cs.amax[0]), 127.0f) : 0.0f;
    for (int64_t o = tid; o < rows; o += blockDim.x) {
        float v;
        if (cs.mode == ARB_CSRC_GIVEN) v = cs.c[o];
        else if (cs.mode == ARB_CSRC_COLMAX) v = __fdiv_rn(__uint_as_float(cs.amax[o]), 127.0f); /* amax / 127 */
        else v = __fmul_rn(c0, cs.scale[o]);                                                    /* (amax/127)·scale */
        c[o] = v;
    }
    __syncthreads();
    double norm = upd_norm_in(norm_in, norm_host);
    if (!(norm > 0.0)) { /* first step: arb_upd_norm of the stats pass */
        ordered_sums<false>(rows, [&](int64_t o) { return c_times(c, abs_g, o); }, [](int64_t) { return 0.0; }, ba,
                            nullptr, &s_sum, nullptr);
        norm = __ddiv_rn(s_sum, __dmul_rn((double)rows, (double)cols));
        for (int64_t o = tid; o < rows; o += blockDim.x) abs_g[o] = 0;
    }
    /* arb_upd_plan_make */
    const double normp = __dmul_rn(ARB_UPD_RMS_PER_MEANABS, norm);
    bool go = norm > 0.0 && eta > 0.0;
    double rmax = 0.0;
    if (go)
        for (int64_t o = tid; o < rows; o += blockDim.x) {
            const double r = plan_ratio(eta, c[o], normp);
            rmax = r > rmax ? r : rmax;
        }
    rmax = block_max_d(rmax, red); /* a max: any order */
    go = go && rmax > 0.0 && isfinite(rmax);
    int s = 0;
    if (go) {
        int e;
        frexp(rmax, &e);
        s = 30 - e;
        s = s < 0 ? 0 : (s > 62 ? 62 : s);
    }
    for (int64_t o = tid; o < rows; o += blockDim.x) {
        int32_t m = 0;
        if (go) {
            const double v = ldexp(plan_ratio(eta, c[o], normp), s);
            m = v >= 2147483647.0 ? INT32_MAX : (int32_t)floor(__dadd_rn(v, 0.5));
        }
        plan[o] = m;
    }
    if (tid == 0) {
        plan[rows] = s;
        plan[rows + 1] = s_skip;
    }
}

/* Step 5: the new norm (arb_upd_norm), the E rule (arb_upd_exp_step; a row whose E moved gets
 * its scale from nnz, already refreshed, and the new E), and the statistics, into rec. */
__global__ void __launch_bounds__(UPD_T) k_upd_finish(int64_t rows, int64_t cols, int kind, const float *c,
                                                      const unsigned long long *abs_g, const unsigned long long *ge,
                                                      const unsigned long long *flips, const int32_t *nnz, int8_t *exp,
                                                      int8_t *ev, float *scale, const int32_t *plan, int update_exp,
                                                      float eta_exp, int exp_threshold, arb_rng_key kexp,
                                                      const double *norm_in, double norm_host, arb_cuda_upd_rec *rec) {
    __shared__ double ba[UPD_CHUNK], bb[UPD_CHUNK];
    __shared__ double s_norm, s_ss;
    __shared__ long long red[32];
    const int tid = threadIdx.x;
    if (plan[rows + 1]) { /* skipped: the state and its norm stay */
        if (tid == 0) *rec = arb_cuda_upd_rec{upd_norm_in(norm_in, norm_host), 0, 0, 0};
        return;
    }
    auto fa = [&](int64_t o) { return c_times(c, abs_g, o); };
    if (update_exp) {
        ordered_sums<true>(rows, fa, [&](int64_t o) {
            const double g = c_times(c, ge, o);
            return __dmul_rn(g, g);
        }, ba, bb, &s_norm, &s_ss);
    } else {
        ordered_sums<false>(rows, fa, [](int64_t) { return 0.0; }, ba, nullptr, &s_norm, nullptr);
    }
    long long moves = 0, nflip = 0, nzero = 0;
    double rms = 0.0;
    if (update_exp) rms = __dsqrt_rn(__ddiv_rn(s_ss, (double)rows));
    const bool erule = update_exp && rms > 0.0 && isfinite(rms);
    for (int64_t o = tid; o < rows; o += blockDim.x) {
        nflip += (long long)flips[o];
        nzero += cols - nnz[o];
        if (!erule) continue;
        const double v = __ddiv_rn(__dmul_rn((double)eta_exp, c_times(c, ge, o)), rms);
        double d = floor(__dadd_rn(v, (double)arb_rand_unit(kexp, (uint32_t)o)));
        d = d > 127.0 ? 127.0 : (d < -127.0 ? -127.0 : d);
        int r = ev[o] + (int)d;
        if (r >= exp_threshold || r <= -exp_threshold) {
            const int e0 = exp[o];
            int e = e0 - (r > 0 ? 1 : -1); /* positive d loss / d log scale: shrink */
            e = e < ARB_EXP_MIN ? ARB_EXP_MIN : (e > ARB_EXP_MAX ? ARB_EXP_MAX : e);
            if (e != e0) {
                moves++;
                exp[o] = (int8_t)e;
                scale[o] = arb_dev_row_scale(kind, cols, nnz[o], e);
            }
            r = 0;
        }
        ev[o] = (int8_t)r;
    }
    moves = block_sum_ll(moves, red);
    nflip = block_sum_ll(nflip, red);
    nzero = block_sum_ll(nzero, red);
    if (tid == 0) *rec = arb_cuda_upd_rec{__ddiv_rn(s_norm, __dmul_rn((double)rows, (double)cols)), nflip, nzero, moves};
}

/* Row sums of an update pass (64-bit integers, so every grouping gives the same totals): one
 * atomic per warp and sum when all its lanes hold the same row (any warp of a row with ≥ 32 tiles
 * but the ones crossing a row boundary), else one per thread. (One atomic per thread put 128
 * same-address atomics per sum on each row of a 2048-column layer.) o < 0: no row. */
__device__ __forceinline__ void upd_row_sums(int64_t o, bool valid, long long sa, long long se, long long sf,
                                             unsigned long long *abs_g, unsigned long long *ge,
                                             unsigned long long *flips) {
    const int64_t o0 = __shfl_sync(0xffffffffu, o, 0);
    if (__all_sync(0xffffffffu, o == o0)) {
        if (o0 < 0) return;
#pragma unroll
        for (int d = 16; d; d >>= 1) {
            sa += __shfl_xor_sync(0xffffffffu, sa, d);
            se += __shfl_xor_sync(0xffffffffu, se, d);
            sf += __shfl_xor_sync(0xffffffffu, sf, d);
        }
        if ((threadIdx.x & 31) != 0) return;
    } else if (!valid) {
        return;
    }
    if (sa) atomicAdd(&abs_g[o], (unsigned long long)sa);
    if (se) atomicAdd(&ge[o], (unsigned long long)se);
    if (sf) atomicAdd(&flips[o], (unsigned long long)sf);
}

/* One thread per (row, 16-column tile): it owns that 32-bit word of the packed tile, so the
 * trit writes need no atomics. Row sums are exact integers (atomic adds commute). plan: m[rows],
 * S, skip (k_upd_plan). stats_only: only abs_g is summed and no state changes; it runs only when
 * there is no previous norm (gate_in / gate_host > 0: nothing to do). */
__global__ void k_upd_dense(uint8_t *trits, int8_t *accum, int64_t rows, int64_t cols, int64_t kt, const int32_t *g,
                            int64_t ld, const int32_t *plan, arb_rng_key key, int threshold, int leak_shift,
                            unsigned long long *abs_g, unsigned long long *ge, unsigned long long *flips,
                            int stats_only, const double *gate_in, double gate_host, int nsplit,
                            int64_t split_stride) {
    if (stats_only ? upd_norm_in(gate_in, gate_host) > 0.0 : plan[rows + 1] != 0) return; /* uniform */
    const int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const bool valid = id < rows * kt; /* no early return: the warp meets at the row sums below */
    const int64_t o = valid ? id / kt : -1, tc = valid ? id % kt : 0;
    long long sa = 0, se = 0, sf = 0;
    if (valid) {
        uint32_t *wp = (uint32_t *)(trits + ((o >> 4) * kt + tc) * ARB_TILE_BYTES + 4 * (o & 15));
        uint32_t word = *wp, nw = word;
        const int shift = stats_only ? 0 : plan[rows];
        arb_upd_plan pl = {plan, shift, key, threshold, leak_shift};
        int32_t m = stats_only ? 0 : plan[o];
        for (int j = 0; j < 16; j++) {
            int64_t i = tc * 16 + j;
            if (i >= cols) break;
            int sh = 8 * (j & 3) + 2 * (j >> 2);
            int t = (int)((word >> sh) & 3u) - 1;
            int32_t gi = g[o * ld + i];
            for (int sp = 1; sp < nsplit; sp++) gi += g[sp * split_stride + o * ld + i];
            sa += gi < 0 ? -(long long)gi : (long long)gi;
            if (stats_only) continue;
            se += (long long)t * gi;
            int8_t a = accum[o * cols + i];
            int nt = arb_upd_weight(t, &a, gi, m, &pl, arb_rand_u32(key, (uint32_t)(o * cols + i)));
            accum[o * cols + i] = a;
            if (nt != t) {
                sf++;
                nw = (nw & ~(3u << sh)) | ((uint32_t)(nt + 1) << sh);
            }
        }
        if (nw != word) *wp = nw;
    }
    upd_row_sums(o, valid, sa, se, sf, abs_g, ge, flips);
}

/* The same pass with four threads per packed word, each owning 4 of its 16 columns, and every
 * load (the split partials as int4, four T_accum bytes as one word) issued before any store:
 * in k_upd_dense a thread's byte stores could alias its next Gint loads, so its 16 columns ran
 * one DRAM latency after another, on a quarter of the threads. The four lanes of a word OR
 * their 2-bit codes together (each code position belongs to one lane) and the first writes it.
 * vec: every quad is 16-byte aligned in g and 4-byte aligned in accum (ld, split_stride and
 * cols multiples of 4, pointers aligned); else scalar loads. Same results, bit for bit.
 * The grid strides over the words (the launch caps it at a few blocks per SM, so the first
 * step's stats pass, which usually finds a norm and exits, costs a small launch, not 4096
 * blocks), with 32-bit word indices (rows · kt < 2^30, checked by the launch): a 64-bit
 * division per thread was a subroutine call, and the scalar path's loop over a runtime count
 * had put gv/av in local memory for every path; ncu had the kernel compute-bound at 35 µs for
 * 2048 × 2048 on an H100. */
__global__ void __launch_bounds__(256) k_upd_dense4(uint8_t *trits, int8_t *accum, int64_t rows, int64_t cols, int64_t kt,
                                                    const int32_t *g, int64_t ld, const int32_t *plan, arb_rng_key key,
                                                    int threshold, int leak_shift, unsigned long long *abs_g,
                                                    unsigned long long *ge, unsigned long long *flips, int stats_only,
                                                    const double *gate_in, double gate_host, int nsplit,
                                                    int64_t split_stride, int vec) {
    if (stats_only ? upd_norm_in(gate_in, gate_host) > 0.0 : plan[rows + 1] != 0) return; /* uniform */
    const uint32_t nwords = (uint32_t)(rows * kt), kt32 = (uint32_t)kt;
    const int shift = stats_only ? 0 : plan[rows];
    const arb_upd_plan pl = {plan, shift, key, threshold, leak_shift};
    /* warp-uniform trip count: the row sums' shuffles need every lane */
    for (uint32_t base = blockIdx.x * blockDim.x; base < 4u * nwords; base += gridDim.x * blockDim.x) {
        const uint32_t id = base + threadIdx.x;
        const uint32_t word_id = id >> 2;
        const int q = (int)(id & 3);
        const bool valid = word_id < nwords;
        const uint32_t o32 = valid ? word_id / kt32 : 0u;
        const int64_t o = valid ? (int64_t)o32 : -1, tc = valid ? (int64_t)(word_id - o32 * kt32) : 0;
        const int64_t i0 = tc * 16 + 4 * q; /* this lane's first column */
        long long sa = 0, se = 0, sf = 0;
        uint32_t mine = 0, word = 0;
        uint32_t *wp = nullptr;
        if (valid) {
            wp = (uint32_t *)(trits + ((o >> 4) * kt + tc) * ARB_TILE_BYTES + 4 * (o & 15));
            word = *wp;
            int32_t gv[4] = {0, 0, 0, 0};
            int8_t av[4] = {0, 0, 0, 0};
            const int n_in = i0 >= cols ? 0 : (cols - i0 < 4 ? (int)(cols - i0) : 4);
            const int32_t *gr = g + o * ld + i0;
            if (vec && n_in == 4) {
                for (int sp = 0; sp < nsplit; sp++) {
                    const int4 v = __ldg(reinterpret_cast<const int4 *>(gr + sp * split_stride));
                    gv[0] += v.x;
                    gv[1] += v.y;
                    gv[2] += v.z;
                    gv[3] += v.w;
                }
                if (!stats_only) {
                    const uint32_t a4 = *reinterpret_cast<const uint32_t *>(accum + o * cols + i0);
                    for (int k = 0; k < 4; k++) av[k] = (int8_t)(a4 >> (8 * k));
                }
            } else {
#pragma unroll
                for (int k = 0; k < 4; k++) { /* unrolled: a runtime bound would index gv/av from local memory */
                    if (k >= n_in) continue;
                    int32_t s = 0;
                    for (int sp = 0; sp < nsplit; sp++) s += __ldg(gr + sp * split_stride + k);
                    gv[k] = s;
                    if (!stats_only) av[k] = accum[o * cols + i0 + k];
                }
            }
            const int32_t m = stats_only ? 0 : plan[o];
            uint32_t nw = word;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                if (k >= n_in) break;
                const int sh = 8 * k + 2 * q; /* column 4q + k of the tile */
                const int t = (int)((word >> sh) & 3u) - 1;
                const int32_t gi = gv[k];
                sa += gi < 0 ? -(long long)gi : (long long)gi;
                if (stats_only) continue;
                se += (long long)t * gi;
                const int64_t i = i0 + k;
                const int nt = arb_upd_weight(t, &av[k], gi, m, &pl, arb_rand_u32(key, (uint32_t)(o * cols + i)));
                if (nt != t) {
                    sf++;
                    nw = (nw & ~(3u << sh)) | ((uint32_t)(nt + 1) << sh);
                }
            }
            mine = nw & (0x03030303u << (2 * q)); /* this lane's code positions */
            if (!stats_only && n_in > 0) {
                if (vec && n_in == 4) {
                    *reinterpret_cast<uint32_t *>(accum + o * cols + i0) =
                        (uint32_t)(uint8_t)av[0] | ((uint32_t)(uint8_t)av[1] << 8) | ((uint32_t)(uint8_t)av[2] << 16) |
                        ((uint32_t)(uint8_t)av[3] << 24);
                } else {
#pragma unroll
                    for (int k = 0; k < 4; k++)
                        if (k < n_in) accum[o * cols + i0 + k] = av[k];
                }
            }
        }
        /* the word: the four lanes' positions OR'd (lanes 4w..4w+3 of a warp hold one word) */
        uint32_t full = mine | __shfl_xor_sync(0xffffffffu, mine, 1);
        full |= __shfl_xor_sync(0xffffffffu, full, 2);
        if (valid && q == 0 && !stats_only && full != word) *wp = full;
        upd_row_sums(o, valid, sa, se, sf, abs_g, ge, flips);
    }
}

/* ARB_CUDA_UPD_DENSE=16: the one-thread-per-word k_upd_dense (read per call: A/B runs). */
static bool upd_dense_word_per_thread() {
    const char *e = getenv("ARB_CUDA_UPD_DENSE");
    return e && !strcmp(e, "16");
}

arb_status arb_cuda_upd_dense(arb_ternary *w, const int32_t *g, int64_t ld, const int32_t *plan, arb_rng_key key,
                              int threshold, int leak_shift, const arb_cuda_rowsums &rs, bool stats_only,
                              const arb_cuda_upd_slot *gate, int nsplit, int64_t split_stride) {
    int64_t kt = w->cols_pad / 16;
    if (!upd_dense_word_per_thread() && w->rows * kt < (1ll << 30)) { /* 32-bit thread indices */
        const int vec = ld % 4 == 0 && split_stride % 4 == 0 && w->cols % 4 == 0 && (uintptr_t)g % 16 == 0 &&
                        (uintptr_t)w->accum % 4 == 0;
        const int sms = arb_cuda_sm_count(); /* a few blocks per SM: the grid strides */
        unsigned blocks = arb_cuda_blocks(w->rows * kt * 4, 256);
        const int cap = sms > 0 ? sms * 8 : 1024;
        if (blocks > (unsigned)cap) blocks = (unsigned)cap;
        k_upd_dense4<<<blocks, 256, 0, arb_cuda_cur_stream()>>>(
            w->trits, w->accum, w->rows, w->cols, kt, g, ld, plan, key, threshold, leak_shift, rs.abs_g(), rs.ge(),
            rs.flips(), stats_only ? 1 : 0, gate ? gate->norm_in : nullptr, gate ? gate->norm_host : 0.0,
            nsplit < 1 ? 1 : nsplit, split_stride, vec);
        ARB_CU_LAUNCH("k_upd_dense4");
        return ARB_OK;
    }
    k_upd_dense<<<arb_cuda_blocks(w->rows * kt, 128), 128, 0, arb_cuda_cur_stream()>>>(
        w->trits, w->accum, w->rows, w->cols, kt, g, ld, plan, key, threshold, leak_shift, rs.abs_g(), rs.ge(),
        rs.flips(), stats_only ? 1 : 0, gate ? gate->norm_in : nullptr, gate ? gate->norm_host : 0.0,
        nsplit < 1 ? 1 : nsplit, split_stride);
    ARB_CU_LAUNCH("k_upd_dense");
    return ARB_OK;
}

bool arb_cuda_upd_needs_stats(const arb_cuda_upd_slot &s) { return s.norm_in || !(s.norm_host > 0.0); }

arb_status arb_cuda_upd_plan(arb_ternary *w, const arb_cuda_csrc &cs, const arb_update_params *p,
                             const arb_cuda_upd_slot &s, const arb_cuda_rowsums &rs, float *c, int32_t *plan) {
    k_upd_plan<<<1, UPD_T, 0, arb_cuda_cur_stream()>>>(w->rows, w->cols, cs, c, (double)p->eta, s.norm_in, s.norm_host,
                                                       rs.abs_g(), plan, arb_cuda_deferred_flag());
    ARB_CU_LAUNCH("k_upd_plan");
    return ARB_OK;
}

arb_status arb_cuda_upd_finish(arb_ternary *w, const float *c, const arb_cuda_rowsums &rs, const int32_t *plan,
                               const arb_update_params *p, const arb_cuda_upd_slot &s) {
    /* nnz first (the statistics and a moved row's scale read it; it does not depend on E) */
    ARB_TRY(arb_cuda_ternary_refresh(w));
    k_upd_finish<<<1, UPD_T, 0, arb_cuda_cur_stream()>>>(
        w->rows, w->cols, (int)w->kind, c, rs.abs_g(), rs.ge(), rs.flips(), w->nnz, w->exp, w->exp_evidence, w->scale,
        plan, p->update_exp ? 1 : 0, p->eta_exp, p->exp_threshold, arb_update_key(p->seed, p->step, w->id, ARB_RNG_EXP),
        s.norm_in, s.norm_host, s.rec);
    ARB_CU_LAUNCH("k_upd_finish");
    return ARB_OK;
}

/* Steps 3–5 from a dense device Gint (or nsplit partials): the first step's stats pass, plan,
 * update pass, finish; st and stats as arb_cuda_upd_slot_close gives them. */
void arb_cuda_bwd_mark(const char *stage); /* linear.cu: ARB_CUDA_BWD_TRACE stage marks */

arb_status arb_cuda_upd_apply(arb_ternary *w, const int32_t *g, int64_t ld, int nsplit, int64_t split_stride,
                              const arb_cuda_csrc &cs, const arb_update_params *p, arb_update_state *st,
                              arb_update_stats *stats) {
    const int64_t rows = w->rows;
    arb_cuda_upd_slot slot;
    ARB_TRY(arb_cuda_upd_slot_open(st, &slot));
    arb_cuda_rowsums rs;
    ARB_TRY(rs.init(rows));
    arb_cuda_scratch c, plan;
    ARB_TRY(c.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(plan.alloc((size_t)(rows + 2) * sizeof(int32_t)));
    const arb_rng_key kp = arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE);
    if (arb_cuda_upd_needs_stats(slot))
        ARB_TRY(arb_cuda_upd_dense(w, g, ld, nullptr, kp, p->threshold, p->leak_shift, rs, true, &slot, nsplit,
                                   split_stride));
    arb_cuda_bwd_mark("stats");
    ARB_TRY(arb_cuda_upd_plan(w, cs, p, slot, rs, c.as<float>(), plan.as<int32_t>()));
    arb_cuda_bwd_mark("plan");
    ARB_TRY(arb_cuda_upd_dense(w, g, ld, plan.as<int32_t>(), kp, p->threshold, p->leak_shift, rs, false, nullptr,
                               nsplit, split_stride));
    arb_cuda_bwd_mark("upd");
    if (arb_cuda_upd_overlap_active()) { /* the finish beside the next ops; its buffers live until collect */
        ARB_TRY(arb_cuda_upd_side_begin(w->trits));
        arb_status s = arb_cuda_upd_finish(w, c.as<float>(), rs, plan.as<int32_t>(), p, slot);
        arb_cuda_upd_side_end();
        ARB_TRY(s);
        arb_cuda_upd_hold(rs.buf.p);
        arb_cuda_upd_hold(c.p);
        arb_cuda_upd_hold(plan.p);
        rs.buf.p = c.p = plan.p = nullptr;
    } else {
        ARB_TRY(arb_cuda_upd_finish(w, c.as<float>(), rs, plan.as<int32_t>(), p, slot));
    }
    arb_cuda_bwd_mark("finish");
    return arb_cuda_upd_slot_close(&slot, st, stats, w->rows * w->cols);
}

/* ---- test hooks (cuda.h): the device plan and finish on host arrays ---------------------- */

extern "C" arb_status arb_cuda_test_upd_plan(const float *c, int64_t rows, double eta, double norm, int32_t *mult,
                                             int *shift) {
    ARB_TRY(arb_cuda_require("arb_cuda_test_upd_plan"));
    if (rows < 1) return arb_error(ARB_ERR_SHAPE, "arb_cuda_test_upd_plan: rows %lld", (long long)rows);
    arb_cuda_scratch dc, dc2, dp, sums;
    ARB_TRY(dc.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(dc2.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(dp.alloc((size_t)(rows + 2) * sizeof(int32_t)));
    ARB_TRY(sums.alloc((size_t)rows * sizeof(unsigned long long)));
    ARB_CU(cudaMemsetAsync(sums.p, 0, (size_t)rows * sizeof(unsigned long long), arb_cuda_cur_stream()));
    ARB_TRY(arb_cuda_copy_h2d(dc.p, c, (size_t)rows * sizeof(float)));
    arb_cuda_csrc cs = {ARB_CSRC_GIVEN, dc.as<float>(), nullptr, nullptr, nullptr};
    /* norm > 0 plans from it; norm ≤ 0 would take the stats-pass branch, which the finish test covers */
    k_upd_plan<<<1, UPD_T, 0, arb_cuda_cur_stream()>>>(rows, 1, cs, dc2.as<float>(), eta, nullptr, norm,
                                                       sums.as<unsigned long long>(), dp.as<int32_t>(), nullptr);
    ARB_CU_LAUNCH("k_upd_plan");
    std::vector<int32_t> h((size_t)(rows + 2));
    ARB_TRY(arb_cuda_copy_d2h(h.data(), dp.p, h.size() * sizeof(int32_t)));
    memcpy(mult, h.data(), (size_t)rows * sizeof(int32_t));
    *shift = h[(size_t)rows];
    return ARB_OK;
}

extern "C" arb_status arb_cuda_test_upd_finish(arb_ternary *w, const float *c, const int64_t *abs_g, const int64_t *ge,
                                               const arb_update_params *p, double *norm, int32_t *moves,
                                               int32_t *first_mult, int *first_shift) {
    ARB_TRY(arb_cuda_require_ternary(w, "arb_cuda_test_upd_finish"));
    if (p->update_exp && !w->exp)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_test_upd_finish: update_exp on a fixed exponent");
    const int64_t rows = w->rows;
    arb_cuda_rowsums rs;
    ARB_TRY(rs.init(rows));
    arb_cuda_scratch dc, dc2, plan, rec;
    ARB_TRY(dc.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(dc2.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(plan.alloc((size_t)(rows + 2) * sizeof(int32_t)));
    ARB_TRY(rec.alloc(sizeof(arb_cuda_upd_rec)));
    ARB_TRY(arb_cuda_copy_h2d(dc.p, c, (size_t)rows * sizeof(float)));
    ARB_TRY(arb_cuda_copy_h2d(rs.abs_g(), abs_g, (size_t)rows * sizeof(int64_t)));
    ARB_TRY(arb_cuda_copy_h2d(rs.ge(), ge, (size_t)rows * sizeof(int64_t)));
    arb_cuda_upd_slot s; /* no previous norm: the plan takes the first-step branch (norm from abs_g) */
    s.rec = rec.as<arb_cuda_upd_rec>();
    arb_cuda_csrc cs = {ARB_CSRC_GIVEN, dc.as<float>(), nullptr, nullptr, nullptr};
    ARB_TRY(arb_cuda_upd_plan(w, cs, p, s, rs, dc2.as<float>(), plan.as<int32_t>()));
    std::vector<int32_t> hp((size_t)(rows + 2));
    ARB_TRY(arb_cuda_copy_d2h(hp.data(), plan.p, hp.size() * sizeof(int32_t)));
    memcpy(first_mult, hp.data(), (size_t)rows * sizeof(int32_t));
    *first_shift = hp[(size_t)rows];
    ARB_TRY(arb_cuda_copy_h2d(rs.abs_g(), abs_g, (size_t)rows * sizeof(int64_t))); /* the plan zeroed them */
    ARB_TRY(arb_cuda_upd_finish(w, dc.as<float>(), rs, plan.as<int32_t>(), p, s));
    arb_cuda_upd_rec r;
    ARB_TRY(arb_cuda_copy_d2h(&r, rec.p, sizeof r));
    *norm = r.norm;
    *moves = (int32_t)r.exp_moves;
    return ARB_OK;
}

/* ------------------------------------------------------------------ embedding */

__global__ void k_check_idx(const int32_t *idx, int64_t n, int64_t rows, int *bad) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t < n && (idx[t] < 0 || idx[t] >= rows)) atomicMin(bad, (int)(t < INT32_MAX ? t : INT32_MAX));
}

static arb_status check_idx(const arb_ternary *w, const int32_t *idx, int64_t n, const char *what) {
    arb_cuda_scratch bad;
    ARB_TRY(bad.alloc(sizeof(int)));
    int h = INT32_MAX;
    ARB_TRY(arb_cuda_copy_h2d(bad.p, &h, sizeof h));
    k_check_idx<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(idx, n, w->rows, bad.as<int>());
    ARB_CU_LAUNCH("k_check_idx");
    ARB_TRY(arb_cuda_copy_d2h(&h, bad.p, sizeof h));
    if (h != INT32_MAX) {
        int32_t v = 0;
        ARB_TRY(arb_cuda_copy_d2h(&v, idx + h, sizeof v));
        return arb_error(ARB_ERR_INVALID_ARG, "%s: index %d at position %d is outside 0..%lld", what, (int)v, h,
                         (long long)w->rows - 1);
    }
    return ARB_OK;
}

__global__ void k_embed_fwd(const uint8_t *trits, const float *scale, int64_t kt, int64_t cols, const int32_t *idx,
                            int64_t n, float *out) {
    int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (id >= n * cols) return;
    int64_t t = id / cols, c = id % cols;
    int64_t r = idx[t];
    uint32_t word = *(const uint32_t *)(trits + ((r >> 4) * kt + (c >> 4)) * ARB_TILE_BYTES + 4 * (r & 15));
    int j = (int)(c & 15);
    int tr = (int)((word >> (8 * (j & 3) + 2 * (j >> 2))) & 3u) - 1;
    out[id] = __fmul_rn((float)tr, scale[r]);
}

extern "C" arb_status arb_cuda_ternary_embedding_forward(const arb_ternary *w, const int32_t *idx, int64_t n,
                                                         float *out) {
    const char *what = "arb_cuda_ternary_embedding_forward";
    ARB_TRY(arb_cuda_require_ternary(w, what));
    if (n < 0) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n == 0) return ARB_OK;
    if (!idx || !out) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    ARB_TRY(check_idx(w, idx, n, what));
    k_embed_fwd<<<arb_cuda_blocks(n * w->cols, 256), 256, 0, arb_cuda_cur_stream()>>>(
        w->trits, w->scale, w->cols_pad / 16, w->cols, idx, n, out);
    ARB_CU_LAUNCH("k_embed_fwd");
    return ARB_OK;
}

/* Absmax over a whole float tensor (bits of non-negative floats order like unsigned ints). */
__global__ void k_absmax(const float *x, int64_t total, unsigned *amax_bits, int *bad) {
    float m = 0.0f;
    int nan = 0;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < total; j += (int64_t)gridDim.x * blockDim.x) {
        float a = fabsf(x[j]);
        nan |= !(a <= 3.4028234663852886e38f);
        m = fmaxf(m, a);
    }
    for (int o = 16; o; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    }
    if ((threadIdx.x & 31) == 0) {
        atomicMax(amax_bits, __float_as_uint(m));
        if (nan) atomicOr(bad, 1);
    }
}

/* dq = clamp(floorf(dy·inv + u)), Gint[idx[t], i] += dq[t, i] (integer atomics commute);
 * inv = 127 / amax from the device maximum (no launch-time value: no host round trip); nothing
 * when amax is 0. An index outside the table adds nothing (the deferred check reports it). */
__global__ void k_embed_grad(const float *dy, const int32_t *idx, int64_t n, int64_t rows, int64_t cols,
                             const unsigned *amax_bits, arb_rng_key key, int32_t *g) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const float amax = __uint_as_float(*amax_bits);
    if (j >= n * cols || !(amax > 0.0f)) return;
    const float inv = __fdiv_rn(127.0f, amax);
    float v = floorf(__fadd_rn(__fmul_rn(dy[j], inv), arb_rand_unit(key, (uint32_t)j)));
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    int q = (int)v;
    const int64_t r = idx[j / cols];
    if (q && r >= 0 && r < rows) atomicAdd(&g[r * cols + j % cols], q);
}

__global__ void k_check_idx_flag(const int32_t *idx, int64_t n, int64_t rows, int *bad) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t < n && (idx[t] < 0 || idx[t] >= rows)) atomicOr(bad, 1);
}

/* Immediate mode: the index check and the gradient's non-finite flag come back before any state
 * changes (two round trips, as before). Deferred mode: both go to the deferred flag and the plan
 * skips the update; the scales c = (amax/127)·scale[r] form on the device. */
extern "C" arb_status arb_cuda_ternary_embedding_backward_update(arb_ternary *w, const int32_t *idx, const float *dy,
                                                                 int64_t n, const arb_update_params *p,
                                                                 arb_update_state *st, arb_update_stats *stats) {
    const char *what = "arb_cuda_ternary_embedding_backward_update";
    ARB_TRY(arb_cuda_upd_check(w, n, p, st, what));
    if (n > 0 && (!idx || !dy)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    int *deferred = arb_cuda_deferred_flag();
    const int64_t rows = w->rows, cols = w->cols;
    cudaStream_t s = arb_cuda_cur_stream();
    arb_cuda_scratch flags, g;
    ARB_TRY(flags.alloc(2 * sizeof(unsigned)));
    ARB_CU(cudaMemsetAsync(flags.p, 0, 2 * sizeof(unsigned), s));
    if (n > 0) {
        if (deferred) {
            k_check_idx_flag<<<arb_cuda_blocks(n, 256), 256, 0, s>>>(idx, n, rows, flags.as<int>() + 1);
            ARB_CU_LAUNCH("k_check_idx_flag");
        } else {
            ARB_TRY(check_idx(w, idx, n, what));
        }
    }
    ARB_TRY(g.alloc((size_t)(rows * cols) * sizeof(int32_t)));
    ARB_CU(cudaMemsetAsync(g.p, 0, (size_t)(rows * cols) * sizeof(int32_t), s));
    if (n > 0) {
        k_absmax<<<264, 256, 0, s>>>(dy, n * cols, flags.as<unsigned>(), flags.as<int>() + 1);
        ARB_CU_LAUNCH("k_absmax");
        if (!deferred) {
            unsigned hf[2] = {0, 0};
            ARB_TRY(arb_cuda_copy_d2h(hf, flags.p, sizeof hf));
            if (hf[1]) return arb_error(ARB_ERR_INVALID_ARG, "%s: embedding gradient has a NaN or infinite value", what);
        }
        k_embed_grad<<<arb_cuda_blocks(n * cols, 256), 256, 0, s>>>(
            dy, idx, n, rows, cols, flags.as<unsigned>(), arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD),
            g.as<int32_t>());
        ARB_CU_LAUNCH("k_embed_grad");
    }
    arb_cuda_csrc cs = {ARB_CSRC_SCALED, nullptr, flags.as<unsigned>(), w->scale, flags.as<int>() + 1};
    return arb_cuda_upd_apply(w, g.as<int32_t>(), cols, 1, 0, cs, p, st, stats);
}

/* ------------------------------------------------------------------ RMSNorm */

__device__ __forceinline__ float gain_at(const uint8_t *trits, float s0, int64_t i) {
    uint32_t word = *(const uint32_t *)(trits + (i >> 4) * ARB_TILE_BYTES); /* row 0 of tile i/16 */
    int j = (int)(i & 15);
    int tr = (int)((word >> (8 * (j & 3) + 2 * (j >> 2))) & 3u) - 1;
    return __fmul_rn((float)tr, s0);
}


/* One warp per row (rows of a few hundred to a few thousand values: a block per row left most
 * of the GPU idle in __syncthreads), double sum of squares as on the CPU. */
enum { RMS_WARPS = 8 };

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* With add (the model's residual): the norm's input is x + add (__fadd_rn, as arb_mcu_add), stored
 * to t on the way (the residual stream's tape) — one pass instead of an add kernel and a norm.
 * t may alias x: the second pass reads the sum back from t. */
__global__ void __launch_bounds__(32 * RMS_WARPS) k_rms_fwd(const uint8_t *trits, const float *scale, const float *x,
                                                            const float *add, float *t_out, int64_t n, int64_t d,
                                                            float eps, float *y, float *rstd) {
    const int64_t t = blockIdx.x * (int64_t)RMS_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (t >= n) return;
    const float *xr = x + t * d;
    double ss = 0.0;
    if (add) {
        const float *ar = add + t * d;
        float *tr = t_out + t * d;
#pragma unroll 4
        for (int64_t i = lane; i < d; i += 32) {
            const float v = __fadd_rn(xr[i], ar[i]);
            tr[i] = v;
            ss += (double)v * (double)v;
        }
        xr = tr;
    } else {
#pragma unroll 4
        for (int64_t i = lane; i < d; i += 32) ss += (double)xr[i] * (double)xr[i];
    }
    ss = warp_sum_d(ss);
    float r = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    if (lane == 0) rstd[t] = r;
    float s0 = scale[0];
#pragma unroll 4
    for (int64_t i = lane; i < d; i += 32) y[t * d + i] = __fmul_rn(__fmul_rn(xr[i], r), gain_at(trits, s0, i));
}

static arb_status check_gain(const arb_ternary *g, const char *what) {
    ARB_TRY(arb_cuda_require_ternary(g, what));
    if (g->rows != 1)
        return arb_error(ARB_ERR_SHAPE, "%s: gain must be 1 x dim, got %lld x %lld", what, (long long)g->rows,
                         (long long)g->cols);
    return ARB_OK;
}

static arb_status rmsnorm_forward(const arb_ternary *gain, const float *x, const float *add, float *t_out, int64_t n,
                                  float eps, float *y, float *rstd) {
    const char *what = "arb_cuda_ternary_rmsnorm_forward";
    ARB_TRY(check_gain(gain, what));
    if (n < 0 || n > INT32_MAX) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (!(eps >= 0.0f)) return arb_error(ARB_ERR_INVALID_ARG, "%s: eps %g must be >= 0", what, (double)eps);
    if (n == 0) return ARB_OK;
    if (!x || !y || !rstd || (add && !t_out)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    k_rms_fwd<<<(unsigned)((n + RMS_WARPS - 1) / RMS_WARPS), 32 * RMS_WARPS, 0, arb_cuda_cur_stream()>>>(
        gain->trits, gain->scale, x, add, t_out, n, gain->cols, eps, y, rstd);
    ARB_CU_LAUNCH("k_rms_fwd");
    return ARB_OK;
}

extern "C" arb_status arb_cuda_ternary_rmsnorm_forward(const arb_ternary *gain, const float *x, int64_t n, float eps,
                                                       float *y, float *rstd) {
    return rmsnorm_forward(gain, x, nullptr, nullptr, n, eps, y, rstd);
}

extern "C" arb_status arb_mcu_rmsnorm_forward_add(const arb_ternary *gain, const float *x, const float *add, float *t,
                                                  int64_t n, float eps, float *y, float *rstd) {
    return rmsnorm_forward(gain, x, add, t, n, eps, y, rstd);
}

/* dx per row (double, like the CPU; one warp per row; plus res, the model's residual gradient,
 * when given: one pass instead of a separate add), and the gain signal's absmax: one atomic
 * per block (a max is exact in any order; per-warp atomics on one address serialized). */
__global__ void __launch_bounds__(32 * RMS_WARPS) k_rms_bwd(const uint8_t *trits, const float *scale, const float *x,
                                                            const float *rstd, const float *dy, const float *res,
                                                            int64_t n, int64_t d, float *dx, unsigned *amax_bits,
                                                            int *bad) {
    __shared__ float s_m[RMS_WARPS];
    __shared__ int s_nan[RMS_WARPS];
    const int64_t t = blockIdx.x * (int64_t)RMS_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float m = 0.0f;
    int nan = 0;
    if (t < n) {
        const float *xr = x + t * d, *dr = dy + t * d;
        float r = rstd[t], s0 = scale[0];
        double dot = 0.0;
#pragma unroll 4
        for (int64_t i = lane; i < d; i += 32) dot += (double)dr[i] * (double)gain_at(trits, s0, i) * (double)xr[i] * (double)r;
        double mean = warp_sum_d(dot) / (double)d;
#pragma unroll 4
        for (int64_t i = lane; i < d; i += 32) {
            double xh = (double)xr[i] * (double)r;
            const float g = (float)((double)r * ((double)dr[i] * (double)gain_at(trits, s0, i) - xh * mean));
            dx[t * d + i] = res ? __fadd_rn(res[t * d + i], g) : g;
            float a = fabsf(__fmul_rn(__fmul_rn(xr[i], r), dr[i]));
            nan |= !(a <= 3.4028234663852886e38f);
            m = fmaxf(m, a);
        }
    }
    for (int o = 16; o; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_nan[warp] = nan;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < RMS_WARPS; w++) {
            m = fmaxf(m, s_m[w]);
            nan |= s_nan[w];
        }
        if (m > 0.0f) atomicMax(amax_bits, __float_as_uint(m));
        if (nan) atomicOr(bad, 1);
    }
}

/* Column sums of the quantized gain signal: one thread per column and RMS_GRAD_TOKENS tokens (enough
 * blocks to fill the GPU), integer sums in any order. */
enum { RMS_GRAD_TOKENS = 64 };
__global__ void k_rms_grad(const float *x, const float *rstd, const float *dy, int64_t n, int64_t d, int64_t per,
                           const unsigned *amax_bits, arb_rng_key key, int32_t *g) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const float amax = __uint_as_float(*amax_bits); /* inv = 127 / amax on the device; nothing when 0 */
    if (i >= d || !(amax > 0.0f)) return;
    const float inv = __fdiv_rn(127.0f, amax);
    int64_t t0 = blockIdx.y * per, t1 = t0 + per < n ? t0 + per : n;
    int32_t sum = 0;
#pragma unroll 8 /* independent tokens: their loads go out together (an integer sum: any order) */
    for (int64_t t = t0; t < t1; t++) {
        int64_t j = t * d + i;
        float ps = __fmul_rn(__fmul_rn(x[j], rstd[t]), dy[j]);
        float v = floorf(__fadd_rn(__fmul_rn(ps, inv), arb_rand_unit(key, (uint32_t)j)));
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        sum += (int)v;
    }
    if (sum) atomicAdd(&g[i], sum);
}

static arb_status rmsnorm_backward_update(arb_ternary *gain, const float *x, const float *rstd, const float *dy,
                                          const float *res, int64_t n, float *dx, const arb_update_params *p,
                                          arb_update_state *st, arb_update_stats *stats) {
    const char *what = "arb_cuda_ternary_rmsnorm_backward_update";
    ARB_TRY(check_gain(gain, what));
    if (p) ARB_TRY(arb_cuda_upd_check(gain, n, p, st, what));
    if (n < 0 || n > INT32_MAX) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (n > 0 && (!x || !rstd || !dy || !dx)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    const int64_t d = gain->cols;
    cudaStream_t s = arb_cuda_cur_stream();
    arb_cuda_scratch flags, g;
    ARB_TRY(flags.alloc(2 * sizeof(unsigned)));
    ARB_CU(cudaMemsetAsync(flags.p, 0, 2 * sizeof(unsigned), s));
    if (n > 0) {
        k_rms_bwd<<<(unsigned)((n + RMS_WARPS - 1) / RMS_WARPS), 32 * RMS_WARPS, 0, s>>>(
            gain->trits, gain->scale, x, rstd, dy, res, n, d, dx, flags.as<unsigned>(), flags.as<int>() + 1);
        ARB_CU_LAUNCH("k_rms_bwd");
    }
    if (!p) return ARB_OK;
    if (!arb_cuda_deferred_flag()) { /* immediate mode: refuse a bad gradient before any state changes */
        unsigned hf[2] = {0, 0};
        ARB_TRY(arb_cuda_copy_d2h(hf, flags.p, sizeof hf));
        if (hf[1]) return arb_error(ARB_ERR_INVALID_ARG, "%s: gradient has a NaN or infinite value", what);
    }
    ARB_TRY(g.alloc((size_t)d * sizeof(int32_t)));
    ARB_CU(cudaMemsetAsync(g.p, 0, (size_t)d * sizeof(int32_t), s));
    if (n > 0) {
        int64_t per = (n + 65534) / 65535; /* grid.y ≤ 65535 */
        if (per < (int64_t)RMS_GRAD_TOKENS) per = RMS_GRAD_TOKENS;
        dim3 grid(arb_cuda_blocks(d, 128), arb_cuda_blocks(n, (int)per));
        k_rms_grad<<<grid, 128, 0, s>>>(x, rstd, dy, n, d, per, flags.as<unsigned>(),
                                        arb_update_key(p->seed, p->step, gain->id, ARB_RNG_GRAD), g.as<int32_t>());
        ARB_CU_LAUNCH("k_rms_grad");
    }
    /* c = (amax / 127) · scale[0] on the device */
    arb_cuda_csrc cs = {ARB_CSRC_SCALED, nullptr, flags.as<unsigned>(), gain->scale, flags.as<int>() + 1};
    return arb_cuda_upd_apply(gain, g.as<int32_t>(), d, 1, 0, cs, p, st, stats);
}

extern "C" arb_status arb_cuda_ternary_rmsnorm_backward_update(arb_ternary *gain, const float *x, const float *rstd,
                                                               const float *dy, int64_t n, float *dx,
                                                               const arb_update_params *p, arb_update_state *st,
                                                               arb_update_stats *stats) {
    return rmsnorm_backward_update(gain, x, rstd, dy, nullptr, n, dx, p, st, stats);
}

extern "C" arb_status arb_mcu_rmsnorm_backward_update_add(arb_ternary *gain, const float *x, const float *rstd,
                                                          const float *dy, const float *res, int64_t n, float *dx,
                                                          const arb_update_params *p, arb_update_state *st,
                                                          arb_update_stats *stats) {
    return rmsnorm_backward_update(gain, x, rstd, dy, res, n, dx, p, st, stats);
}
