/* src/cuda/model_glue.cu — the model's float glue on the GPU (src/model/model_cuda.h): batched
 * strided products for causal attention (3xTF32 tensor cores: float32-level accuracy), causal
 * softmax and its backward, rotary, ReLU², residual adds, cross-entropy with its gradient.
 *
 * Why these and not cuBLAS: the library links cuBLAS for benchmark baselines only; these shapes
 * (T×T scores per head, T ≤ ctx) are small, and one tiled kernel with a causal tile skip covers all
 * six attention products. Every reduction has a fixed order (k-tiles and mma instructions in
 * sequence, warp shuffle trees of fixed shape), there are no atomics: two runs give the same bits.
 * Elementwise ops that glue.c computes without contraction use __fmul_rn/__fadd_rn here so they
 * match it bit for bit (rotary, ReLU², the CE gradient); the reductions differ from the CPU only
 * in summation order (and the products in the 3xTF32 rounding, ~1e-6 relative). */
#include <cuda_runtime.h>
#include <mma.h>

#include "cuda/internal.cuh"
#include "model/model_cuda.h"
#include "arbitor/model.h"

namespace {

constexpr int BM = 64, BN = 64, BK = 32, GEMM_THREADS = 128;

/* One 64×64 output tile per block of 4 warps (32×32 each), TF32 tensor cores in the 3xTF32
 * scheme: each operand splits into hi = tf32(x) and lo = tf32(x − hi) and the product is
 * lo·hi + hi·lo + hi·hi, accumulated in float: float32-level accuracy at tensor-core speed.
 * The k-tiles run in sequence and each mma has a fixed internal order: deterministic. */
__global__ void __launch_bounds__(GEMM_THREADS) k_bgemm(arb_mcu_mat A, arb_mcu_mat B, arb_mcu_mat C, int M, int N,
                                                        int K, int H, float alpha, int mode) {
    using namespace nvcuda;
    const int tm = blockIdx.y, tn = blockIdx.x, z = blockIdx.z;
    if (mode == ARB_MCU_TRI_OUT && tn * BN > tm * BM + BM - 1) return;
    int kbeg = 0, kend = K;
    if (mode == ARB_MCU_K_LE_ROW) kend = min(K, (tm + 1) * BM);
    if (mode == ARB_MCU_K_GE_ROW) kbeg = tm * BM;
    const int64_t zb = z / H, zh = z % H;
    const float *Ap = A.p + zb * A.sb + zh * A.sh;
    const float *Bp = B.p + zb * B.sb + zh * B.sh;
    float *Cp = C.p + zb * C.sb + zh * C.sh;
    __shared__ __align__(32) float As[BM][BK + 4];
    __shared__ __align__(32) float Bs[BK][BN + 4];
    __shared__ __align__(32) float Cs[BM][BN + 4];
    const int tid = threadIdx.x, warp = tid / 32, wr = warp / 2, wc = warp % 2;
    const int r0 = tm * BM, c0 = tn * BN;
    const bool a_kfast = A.sc == 1, b_cfast = B.sc == 1;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = kbeg; k0 < kend; k0 += BK) {
#pragma unroll 4
        for (int q = 0; q < BM * BK / GEMM_THREADS; q++) {
            int idx = tid + GEMM_THREADS * q;
            int r, k;
            if (a_kfast) { k = idx % BK; r = idx / BK; } else { r = idx % BM; k = idx / BM; }
            int gr = r0 + r, gk = k0 + k;
            As[r][k] = (gr < M && gk < kend) ? Ap[(int64_t)gr * A.sr + (int64_t)gk * A.sc] : 0.0f;
            int c;
            if (b_cfast) { c = idx % BN; k = idx / BN; } else { k = idx % BK; c = idx / BK; }
            int gc = c0 + c;
            gk = k0 + k;
            Bs[k][c] = (gc < N && gk < kend) ? Bp[(int64_t)gk * B.sr + (int64_t)gc * B.sc] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> ah[2], al[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> bh[2], bl[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                wmma::load_matrix_sync(ah[i], &As[wr * 32 + i * 16][kk], BK + 4);
#pragma unroll
                for (int t = 0; t < ah[i].num_elements; t++) {
                    float v = ah[i].x[t], hi = wmma::__float_to_tf32(v);
                    ah[i].x[t] = hi;
                    al[i].x[t] = wmma::__float_to_tf32(v - hi);
                }
                wmma::load_matrix_sync(bh[i], &Bs[kk][wc * 32 + i * 16], BN + 4);
#pragma unroll
                for (int t = 0; t < bh[i].num_elements; t++) {
                    float v = bh[i].x[t], hi = wmma::__float_to_tf32(v);
                    bh[i].x[t] = hi;
                    bl[i].x[t] = wmma::__float_to_tf32(v - hi);
                }
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wmma::mma_sync(acc[i][j], al[i], bh[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], ah[i], bl[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], ah[i], bh[j], acc[i][j]);
                }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&Cs[wr * 32 + i * 16][wc * 32 + j * 16], acc[i][j], BN + 4, wmma::mem_row_major);
    __syncthreads();
    const bool c_cfast = C.sc == 1;
    for (int q = 0; q < BM * BN / GEMM_THREADS; q++) {
        int idx = tid + GEMM_THREADS * q, r, c;
        if (c_cfast) { c = idx % BN; r = idx / BN; } else { r = idx % BM; c = idx / BM; }
        int gr = r0 + r, gc = c0 + c;
        if (gr < M && gc < N) Cp[(int64_t)gr * C.sr + (int64_t)gc * C.sc] = alpha * Cs[r][c];
    }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per row. */
__global__ void k_softmax_causal(float *s, int64_t rows, int T) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x % 32, i = (int)(row % T);
    float *x = s + row * T;
    float mx = -INFINITY;
    for (int j = lane; j <= i; j += 32) mx = fmaxf(mx, x[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j <= i; j += 32) {
        float e = expf(x[j] - mx);
        x[j] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
    for (int j = lane; j < T; j += 32) x[j] = j <= i ? x[j] * inv : 0.0f;
}

__global__ void k_softmax_causal_bwd(const float *p, float *dp, int64_t rows, int T, float sc) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x % 32, i = (int)(row % T);
    const float *pr = p + row * T;
    float *d = dp + row * T;
    float dot = 0.0f;
    for (int j = lane; j <= i; j += 32) dot = fmaf(pr[j], d[j], dot);
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) d[j] = j <= i ? __fmul_rn(__fmul_rn(pr[j], d[j] - dot), sc) : 0.0f;
}

/* One thread per (row, head, pair): exactly glue.c's a·c − b·s, a·s + b·c (no contraction). */
__global__ void k_rope(float *x, int64_t rows, int T, int64_t ld, int64_t off, int H, int hd, const float *cs, int sign) {
    const int half = hd / 2;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows * H * half) return;
    int i = (int)(t % half);
    int64_t rh = t / half;
    int h = (int)(rh % H);
    int64_t r = rh / H;
    int pos = (int)(r % T);
    float c = cs[2 * ((int64_t)pos * half + i)], s = cs[2 * ((int64_t)pos * half + i) + 1];
    if (sign < 0) s = -s;
    float *v = x + r * ld + off + (int64_t)h * hd + 2 * i;
    float a = v[0], b = v[1];
    v[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

__global__ void k_relu2(const float *u, int64_t n, float *r) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = u[i];
        r[i] = v > 0.0f ? __fmul_rn(v, v) : 0.0f;
    }
}

__global__ void k_relu2_bwd(const float *u, const float *dr, int64_t n, float *du) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = u[i];
        du[i] = v > 0.0f ? __fmul_rn(2.0f * v, dr[i]) : 0.0f;
    }
}

__global__ void k_add(float *y, const float *x, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], x[i]);
}

/* One warp per row; the double sum of exponentials reduces over a fixed shuffle tree. */
__global__ void k_ce(const float *logits, const int32_t *targets, int64_t n, int V, float gscale, float *dlogits,
                     double *row_loss) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= n) return;
    const int lane = threadIdx.x % 32;
    const float *a = logits + r * V;
    const int32_t t = targets[r];
    const bool counted = t >= 0 && t != ARB_TOK_PAD && t < V;
    if (!counted) {
        if (lane == 0) row_loss[r] = 0.0;
        if (dlogits)
            for (int i = lane; i < V; i += 32) dlogits[r * V + i] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int i = lane; i < V; i += 32) mx = fmaxf(mx, a[i]);
    mx = warp_max(mx);
    double s = 0.0;
    for (int i = lane; i < V; i += 32) s += exp((double)(a[i] - mx));
    s = warp_sum_d(s);
    if (lane == 0) row_loss[r] = log(s) - (double)(a[t] - mx);
    if (dlogits) {
        const float inv = (float)(1.0 / s);
        for (int i = lane; i < V; i += 32) {
            float g = __fmul_rn(__fmul_rn(gscale, expf(a[i] - mx)), inv);
            dlogits[r * V + i] = i == t ? __fsub_rn(g, gscale) : g;
        }
    }
}

} // namespace

extern "C" arb_status arb_mcu_bgemm(arb_mcu_mat A, arb_mcu_mat B, arb_mcu_mat C, int64_t M, int64_t N, int64_t K,
                                    int64_t Z, int64_t H, float alpha, int mode) {
    if (M <= 0 || N <= 0 || K <= 0 || Z <= 0 || H <= 0 || M > (1 << 24) || N > (1 << 24) || K > (1 << 24) ||
        Z > 65535 || (mode != ARB_MCU_DENSE && M != (mode == ARB_MCU_TRI_OUT ? N : K)))
        return arb_error(ARB_ERR_INVALID_ARG, "model bgemm: bad shape M=%lld N=%lld K=%lld Z=%lld mode %d", (long long)M,
                         (long long)N, (long long)K, (long long)Z, mode);
    dim3 grid(arb_cuda_blocks(N, BN), arb_cuda_blocks(M, BM), (unsigned)Z);
    k_bgemm<<<grid, GEMM_THREADS, 0, arb_cuda_cur_stream()>>>(A, B, C, (int)M, (int)N, (int)K, (int)H, alpha, mode);
    ARB_CU_LAUNCH("k_bgemm");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_softmax_causal(float *s, int64_t Z, int64_t T) {
    int64_t rows = Z * T;
    k_softmax_causal<<<arb_cuda_blocks(rows, 8), 256, 0, arb_cuda_cur_stream()>>>(s, rows, (int)T);
    ARB_CU_LAUNCH("k_softmax_causal");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_softmax_causal_backward(const float *p, float *dp, int64_t Z, int64_t T, float sc) {
    int64_t rows = Z * T;
    k_softmax_causal_bwd<<<arb_cuda_blocks(rows, 8), 256, 0, arb_cuda_cur_stream()>>>(p, dp, rows, (int)T, sc);
    ARB_CU_LAUNCH("k_softmax_causal_bwd");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_rope(float *x, int64_t rows, int64_t T, int64_t ld, int64_t off, int H, int hd,
                                   const float *cs, int sign) {
    int64_t n = rows * H * (hd / 2);
    if (n == 0) return ARB_OK;
    k_rope<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(x, rows, (int)T, ld, off, H, hd, cs, sign);
    ARB_CU_LAUNCH("k_rope");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_relu2(const float *u, int64_t n, float *r) {
    k_relu2<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(u, n, r);
    ARB_CU_LAUNCH("k_relu2");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_relu2_backward(const float *u, const float *dr, int64_t n, float *du) {
    k_relu2_bwd<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(u, dr, n, du);
    ARB_CU_LAUNCH("k_relu2_bwd");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_add(float *y, const float *x, int64_t n) {
    k_add<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(y, x, n);
    ARB_CU_LAUNCH("k_add");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float gscale,
                                 float *dlogits, double *row_loss) {
    k_ce<<<arb_cuda_blocks(n, 8), 256, 0, arb_cuda_cur_stream()>>>(logits, targets, n, (int)V, gscale, dlogits,
                                                                    row_loss);
    ARB_CU_LAUNCH("k_ce");
    return ARB_OK;
}
