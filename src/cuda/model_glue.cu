/* src/cuda/model_glue.cu — the model's float glue on the GPU (src/model/model_cuda.h): fused
 * flash-style causal attention forward and backward (3xTF32 tensor cores: float32-level accuracy;
 * the T×T probabilities never reach global memory; rotary applied to q and k as they load, and
 * its inverse to dq and dk as they store), ReLU², residual adds, cross-entropy with its gradient
 * and the loss sum.
 *
 * Why these and not cuBLAS / cuDNN: the library links cuBLAS for benchmark baselines only, and a
 * fused attention needs the softmax between its two products. Every reduction has a fixed order
 * (key tiles and mma instructions in sequence, warp shuffle trees of fixed shape), there are no
 * atomics: two runs give the same bits. Elementwise ops that glue.c computes without contraction
 * use __fmul_rn/__fadd_rn here so they match it bit for bit (rotary, ReLU², the CE gradient); the
 * reductions differ from the CPU only in summation order (and the products in the 3xTF32
 * rounding, ~1e-6 relative). */
#include <cuda_runtime.h>
#include <mma.h>

#include <type_traits>

#include "cuda/internal.cuh"
#include "model/model_cuda.h"
#include "arbitor/model.h"

namespace {

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

/* ---------------------------------------------------------------- fused causal attention
 * Flash-style: a block of 4 warps owns 64 rows of one (sequence, head); each warp owns 16 of
 * them, so the scores, probabilities and accumulators of a row never leave its warp. Products
 * run on TF32 tensor cores in the 3xTF32 scheme (each operand split into hi = tf32(x) and
 * lo = tf32(x − hi); lo·hi + hi·lo + hi·hi accumulated in float: float32-level accuracy).
 * Forward: per 64-key tile, S = Q Kᵀ·sc, the online softmax (running max and sum per row, the
 * output rescaled in shared memory), O += P V; only the row log-sum-exp is saved. Backward
 * recomputes P = exp(S − lse) per tile in one kernel per key tile: dK and dV, and that key
 * tile's share of dQ per query tile into a scratch, summed in key-tile order by a small kernel
 * (5 tile products, as FlashAttention-2, without its float atomics); Δ = Σ dO·O comes first. */
constexpr int FA_R = 64, FA_THREADS = 128, FA_LDS = FA_R + 4;

using namespace nvcuda;
using wmma::col_major;
using wmma::row_major;
typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc_t;

template <class F> __device__ __forceinline__ void tf32_split(F &hi, F &lo) {
#pragma unroll
    for (int t = 0; t < hi.num_elements; t++) {
        float v = hi.x[t], h = wmma::__float_to_tf32(v);
        hi.x[t] = h;
        lo.x[t] = wmma::__float_to_tf32(v - h);
    }
}

/* f (16 × 16·NF) += A (16 × K) · B (K × 16·NF) for one warp. A row_major: A(r, k) = a[r·lda + k],
 * col_major: a[k·lda + r]; B row_major: B(k, n) = b[k·ldb + n], col_major: b[n·ldb + k]. */
template <int NF, int K, class LA, class LB>
__device__ __forceinline__ void warp_mma(acc_t (&f)[NF], const float *a, int lda, const float *b, int ldb) {
#pragma unroll 2
    for (int k = 0; k < K; k += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> ah, al;
        wmma::load_matrix_sync(ah, std::is_same<LA, row_major>::value ? a + k : a + k * lda, lda);
        tf32_split(ah, al);
#pragma unroll
        for (int j = 0; j < NF; j++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> bh, bl;
            wmma::load_matrix_sync(bh, std::is_same<LB, row_major>::value ? b + k * ldb + 16 * j : b + 16 * j * ldb + k,
                                   ldb);
            tf32_split(bh, bl);
            wmma::mma_sync(f[j], al, bh, f[j]);
            wmma::mma_sync(f[j], ah, bl, f[j]);
            wmma::mma_sync(f[j], ah, bh, f[j]);
        }
    }
}

template <int NF> __device__ __forceinline__ void acc_zero(acc_t (&f)[NF]) {
#pragma unroll
    for (int j = 0; j < NF; j++) wmma::fill_fragment(f[j], 0.0f);
}
template <int NF> __device__ __forceinline__ void acc_store(acc_t (&f)[NF], float *c, int ldc) {
#pragma unroll
    for (int j = 0; j < NF; j++) wmma::store_matrix_sync(c + 16 * j, f[j], ldc, wmma::mem_row_major);
}
template <int NF> __device__ __forceinline__ void acc_load(acc_t (&f)[NF], const float *c, int ldc) {
#pragma unroll
    for (int j = 0; j < NF; j++) wmma::load_matrix_sync(f[j], c + 16 * j, ldc, wmma::mem_row_major);
}

/* Rotary of one (even, odd) pair by (c, ±s): exactly glue.c's a·c − b·s, a·s + b·c (no contraction). */
__device__ __forceinline__ float2 rot(float a, float b, float c, float s) {
    return make_float2(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
}

/* 64 rows of HD floats (global row stride ld, rows ≥ T as zeros) into shared memory (ld HD + 4);
 * with cs (the (T, HD/2, 2) cos, sin table) each row is rotated for its position on the way. */
template <int HD>
__device__ __forceinline__ void fa_load(float *s, const float *g, int64_t ld, int row0, int T, const float *cs = nullptr) {
    constexpr int V = HD / 4;
    for (int idx = threadIdx.x; idx < FA_R * V; idx += FA_THREADS) {
        int r = idx / V, c = (idx % V) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row0 + r < T) {
            v = *reinterpret_cast<const float4 *>(g + (int64_t)(row0 + r) * ld + c);
            if (cs) {
                const float4 t = *reinterpret_cast<const float4 *>(cs + (int64_t)(row0 + r) * HD + c);
                const float2 p0 = rot(v.x, v.y, t.x, t.y), p1 = rot(v.z, v.w, t.z, t.w);
                v = make_float4(p0.x, p0.y, p1.x, p1.y);
            }
        }
        *reinterpret_cast<float4 *>(s + r * (HD + 4) + c) = v;
    }
}

/* The warp's 16 rows of HD floats (shared, ld HD + 4), each times its rowscale (or 1), to global
 * rows row0 + wr + i < T; with cs, rotated back (the gradient of the rotation on load). */
template <int HD>
__device__ __forceinline__ void fa_store_rows(float *g, int64_t ld, const float *s, int row0, int wr, int T,
                                              const float *rowscale, const float *cs = nullptr) {
    const int lane = threadIdx.x % 32;
    for (int i = 0; i < 16; i++) {
        const int r = wr + i, pos = row0 + r;
        if (pos >= T) break;
        const float m = rowscale ? rowscale[r] : 1.0f;
        for (int c = 2 * lane; c < HD; c += 64) {
            float a = s[r * (HD + 4) + c], b = s[r * (HD + 4) + c + 1];
            if (rowscale) {
                a = __fmul_rn(a, m);
                b = __fmul_rn(b, m);
            }
            float2 o = make_float2(a, b);
            if (cs) o = rot(a, b, cs[(int64_t)pos * HD + c], -cs[(int64_t)pos * HD + c + 1]);
            *reinterpret_cast<float2 *>(g + (int64_t)pos * ld + c) = o;
        }
    }
}

template <int HD> constexpr size_t fa_fwd_smem() { return sizeof(float) * (4 * FA_R * (HD + 4) + FA_R * FA_LDS + 2 * FA_R); }
template <int HD> constexpr size_t fa_bwd_smem() { return sizeof(float) * (4 * FA_R * (HD + 4) + 2 * FA_R * FA_LDS + 2 * FA_R); }

/* grid (query tiles, B·H), heavy (late) tiles first. */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn_fwd(const float *qkv, int64_t ldq, const float *cs, float *o, int64_t ldo, float *lse, int T, int H, float sc) {
    constexpr int LD = HD + 4, NF = HD / 16;
    extern __shared__ __align__(128) float sm[];
    float *Qs = sm, *Ks = Qs + FA_R * LD, *Vs = Ks + FA_R * LD, *Os = Vs + FA_R * LD, *Ss = Os + FA_R * LD;
    float *Ms = Ss + FA_R * FA_LDS, *Ls = Ms + FA_R;
    const int qt = gridDim.x - 1 - blockIdx.x, z = blockIdx.y, b = z / H, h = z % H;
    const int lane = threadIdx.x % 32, wr = (threadIdx.x / 32) * 16, q0 = qt * FA_R;
    const int64_t D = (int64_t)H * HD;
    const float *q = qkv + (int64_t)b * T * ldq + (int64_t)h * HD, *k = q + D, *v = q + 2 * D;
    fa_load<HD>(Qs, q, ldq, q0, T, cs);
    for (int i = threadIdx.x; i < FA_R * LD; i += FA_THREADS) Os[i] = 0.0f;
    if (threadIdx.x < FA_R) {
        Ms[threadIdx.x] = -INFINITY;
        Ls[threadIdx.x] = 0.0f;
    }
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * FA_R;
        __syncthreads(); /* the previous tile's K, V are no longer read */
        fa_load<HD>(Ks, k, ldq, k0, T, cs);
        fa_load<HD>(Vs, v, ldq, k0, T);
        __syncthreads();
        {
            acc_t s[4];
            acc_zero(s);
            warp_mma<4, HD, row_major, col_major>(s, Qs + wr * LD, LD, Ks, LD);
            acc_store(s, Ss + wr * FA_LDS, FA_LDS);
        }
        __syncwarp();
        {
            /* the online softmax: two lanes per row (even and odd columns), no long shuffle chains */
            const int r = wr + (lane >> 1), hf = lane & 1, gi = q0 + r;
            float *srow = Ss + r * FA_LDS;
            float sv[FA_R / 2], mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < FA_R / 2; j++) {
                const int gj = k0 + hf + 2 * j;
                sv[j] = gj <= gi && gj < T ? __fmul_rn(srow[hf + 2 * j], sc) : -INFINITY;
                mx = fmaxf(mx, sv[j]);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float mold = Ms[r], mnew = fmaxf(mold, mx);
            float ps = 0.0f;
#pragma unroll
            for (int j = 0; j < FA_R / 2; j++) {
                const float p = sv[j] == -INFINITY ? 0.0f : expf(sv[j] - mnew);
                srow[hf + 2 * j] = p;
                ps += p;
            }
            ps += __shfl_xor_sync(0xffffffffu, ps, 1);
            const float alpha = mold == -INFINITY ? 0.0f : expf(mold - mnew);
            if (kt > 0 && alpha != 1.0f)
                for (int c = hf; c < HD; c += 2) Os[r * LD + c] *= alpha;
            if (hf == 0) {
                Ms[r] = mnew;
                Ls[r] = fmaf(Ls[r], alpha, ps);
            }
            __syncwarp();
        }
        {
            acc_t of[NF];
            acc_load(of, Os + wr * LD, LD);
            warp_mma<NF, FA_R, row_major, row_major>(of, Ss + wr * FA_LDS, FA_LDS, Vs, LD);
            acc_store(of, Os + wr * LD, LD);
        }
        __syncwarp();
    }
    if (lane < 16) {
        const int r = wr + lane;
        const float l = Ls[r];
        Ls[r] = 1.0f / l;
        if (q0 + r < T) lse[(int64_t)z * T + q0 + r] = Ms[r] + logf(l);
    }
    __syncwarp();
    fa_store_rows<HD>(o + (int64_t)b * T * ldo + (int64_t)h * HD, ldo, Os, q0, wr, T, Ls);
}

/* Δ = Σ_c dO·O per (row, head): one warp each (the lanes' partial sums, then a fixed tree). */
__global__ void k_attn_delta(const float *o, int64_t ldo, const float *dy, int64_t ldy, int64_t rows, int T, int H,
                             int hd, float *delta) {
    const int64_t w = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= rows * H) return;
    const int lane = threadIdx.x % 32, h = (int)(w % H);
    const int64_t row = w / H, b = row / T, t = row % T;
    float d = 0.0f;
    for (int c = lane; c < hd; c += 32) d = fmaf(dy[row * ldy + (int64_t)h * hd + c], o[row * ldo + (int64_t)h * hd + c], d);
    d = warp_sum(d);
    if (lane == 0) delta[(b * H + h) * T + t] = d;
}

/* dQ of row t = Σ over key tiles kt ≤ t/64 of the partials, in kt order; rotated back when cs. One
 * thread per (row, head, column pair). part: [key tile][B·H][Tpad][hd]. */
__global__ void k_attn_dq_reduce(const float *part, int64_t BH, int T, int Tpad, int H, int hd, const float *cs,
                                 float *dqkv, int64_t lddq) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, half = hd / 2;
    if (t >= BH * T * half) return;
    const int i = (int)(t % half);
    const int64_t rz = t / half;
    const int row = (int)(rz % T);
    const int64_t z = rz / T, b = z / H, h = z % H;
    float a = 0.0f, c = 0.0f;
    for (int kt = 0; kt <= row / FA_R; kt++) {
        const float2 v = *reinterpret_cast<const float2 *>(part + (((int64_t)kt * BH + z) * Tpad + row) * hd + 2 * i);
        a += v.x;
        c += v.y;
    }
    float2 out = make_float2(a, c);
    if (cs) out = rot(a, c, cs[(int64_t)row * hd + 2 * i], -cs[(int64_t)row * hd + 2 * i + 1]);
    *reinterpret_cast<float2 *>(dqkv + (b * T + row) * lddq + h * hd + 2 * i) = out;
}

/* dK, dV per key tile (grid (key tiles, B·H); early tiles see the most queries and go first), and
 * this key tile's share of dQ for each query tile (dS·K) into dqpart [key tile][B·H][Tpad][HD]:
 * k_attn_dq_reduce sums the shares in a fixed order (no atomics, no second pass over S and dP). */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn_bwd_dkv(const float *qkv, int64_t ldq, const float *cs, const float *lse, const float *dy, int64_t ldy,
                   const float *delta, float *dqkv, int64_t lddq, float *dqpart, int T, int H, float sc) {
    constexpr int LD = HD + 4, NF = HD / 16;
    extern __shared__ __align__(128) float sm[];
    float *Ks = sm, *Vs = Ks + FA_R * LD, *Qs = Vs + FA_R * LD, *dOs = Qs + FA_R * LD, *St = dOs + FA_R * LD;
    float *Pt = St + FA_R * FA_LDS, *Ls = Pt + FA_R * FA_LDS, *Ds = Ls + FA_R;
    const int kt = blockIdx.x, nq = gridDim.x, z = blockIdx.y, b = z / H, h = z % H;
    const int lane = threadIdx.x % 32, wr = (threadIdx.x / 32) * 16, k0 = kt * FA_R;
    const int64_t D = (int64_t)H * HD, hc = (int64_t)h * HD;
    const float *q = qkv + (int64_t)b * T * ldq + hc, *k = q + D, *v = q + 2 * D;
    const float *dyg = dy + (int64_t)b * T * ldy + hc;
    fa_load<HD>(Ks, k, ldq, k0, T, cs);
    fa_load<HD>(Vs, v, ldq, k0, T);
    acc_t dk[NF], dv[NF];
    acc_zero(dk);
    acc_zero(dv);
    for (int qt = kt; qt < nq; qt++) {
        const int q0 = qt * FA_R;
        __syncthreads();
        fa_load<HD>(Qs, q, ldq, q0, T, cs);
        fa_load<HD>(dOs, dyg, ldy, q0, T);
        if (threadIdx.x < FA_R) {
            const int gi = q0 + threadIdx.x;
            Ls[threadIdx.x] = gi < T ? lse[(int64_t)z * T + gi] : 0.0f;
            Ds[threadIdx.x] = gi < T ? delta[(int64_t)z * T + gi] : 0.0f;
        }
        __syncthreads();
        {
            acc_t s[4];
            acc_zero(s);
            warp_mma<4, HD, row_major, col_major>(s, Ks + wr * LD, LD, Qs, LD); /* Sᵀ = K Qᵀ */
            acc_store(s, St + wr * FA_LDS, FA_LDS);
            acc_zero(s);
            warp_mma<4, HD, row_major, col_major>(s, Vs + wr * LD, LD, dOs, LD); /* dPᵀ = V dOᵀ */
            acc_store(s, Pt + wr * FA_LDS, FA_LDS);
        }
        __syncwarp();
        for (int idx = lane; idx < 16 * FA_R; idx += 32) {
            const int r = wr + idx / FA_R, c = idx % FA_R, gj = k0 + r, gi = q0 + c;
            float p = 0.0f, ds = 0.0f;
            if (gj <= gi && gi < T) {
                p = expf(__fmul_rn(St[r * FA_LDS + c], sc) - Ls[c]);
                ds = __fmul_rn(__fmul_rn(p, Pt[r * FA_LDS + c] - Ds[c]), sc);
            }
            St[r * FA_LDS + c] = p;
            Pt[r * FA_LDS + c] = ds;
        }
        __syncwarp();
        warp_mma<NF, FA_R, row_major, row_major>(dv, St + wr * FA_LDS, FA_LDS, dOs, LD); /* dV += Pᵀ dO */
        warp_mma<NF, FA_R, row_major, row_major>(dk, Pt + wr * FA_LDS, FA_LDS, Qs, LD);  /* dK += dSᵀ Q */
        __syncthreads(); /* every warp's dSᵀ rows are in Pt */
        {
            acc_t dq[NF]; /* query rows wr.. of dS K: A(query, key) = Pt[key][query] */
            acc_zero(dq);
            warp_mma<NF, FA_R, col_major, row_major>(dq, Pt + wr, FA_LDS, Ks, LD);
            acc_store(dq, dqpart + (((int64_t)kt * gridDim.y + z) * ((int64_t)nq * FA_R) + q0 + wr) * HD, HD);
        }
    }
    __syncthreads(); /* all warps are done reading every K row */
    acc_store(dk, Ks + wr * LD, LD); /* the warp's own K, V rows */
    acc_store(dv, Vs + wr * LD, LD);
    __syncwarp();
    float *dk_g = dqkv + (int64_t)b * T * lddq + D + hc;
    fa_store_rows<HD>(dk_g, lddq, Ks, k0, wr, T, nullptr, cs);
    fa_store_rows<HD>(dk_g + D, lddq, Vs, k0, wr, T, nullptr);
}

template <int HD> arb_status fa_prepare() {
    /* host-side attribute calls (no synchronization), per launch: right for whichever device is current */
    ARB_CU(cudaFuncSetAttribute(k_attn_fwd<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fa_fwd_smem<HD>()));
    ARB_CU(cudaFuncSetAttribute(k_attn_bwd_dkv<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fa_bwd_smem<HD>()));
    return ARB_OK;
}

template <int HD>
arb_status fa_forward(const float *qkv, int64_t ldq, const float *cs, float *o, int64_t ldo, float *lse, int64_t B,
                      int64_t T, int H) {
    ARB_TRY(fa_prepare<HD>());
    dim3 grid((unsigned)arb_cuda_blocks(T, FA_R), (unsigned)(B * H));
    k_attn_fwd<HD><<<grid, FA_THREADS, fa_fwd_smem<HD>(), arb_cuda_cur_stream()>>>(qkv, ldq, cs, o, ldo, lse, (int)T, H,
                                                                                  1.0f / sqrtf((float)HD));
    ARB_CU_LAUNCH("k_attn_fwd");
    return ARB_OK;
}

template <int HD>
arb_status fa_backward(const float *qkv, int64_t ldq, const float *cs, const float *o, int64_t ldo, const float *lse,
                       const float *dy, int64_t ldy, float *delta, float *dqkv, int64_t lddq, float *scratch, int64_t B,
                       int64_t T, int H) {
    ARB_TRY(fa_prepare<HD>());
    const int64_t nt = arb_cuda_blocks(T, FA_R), BH = B * H;
    cudaStream_t st = arb_cuda_cur_stream();
    k_attn_delta<<<arb_cuda_blocks(B * T * H, 8), 256, 0, st>>>(o, ldo, dy, ldy, B * T, (int)T, H, HD, delta);
    ARB_CU_LAUNCH("k_attn_delta");
    dim3 grid((unsigned)nt, (unsigned)BH);
    k_attn_bwd_dkv<HD><<<grid, FA_THREADS, fa_bwd_smem<HD>(), st>>>(qkv, ldq, cs, lse, dy, ldy, delta, dqkv, lddq,
                                                                   scratch, (int)T, H, 1.0f / sqrtf((float)HD));
    ARB_CU_LAUNCH("k_attn_bwd_dkv");
    k_attn_dq_reduce<<<arb_cuda_blocks(BH * T * (HD / 2), 256), 256, 0, st>>>(scratch, BH, (int)T, (int)(nt * FA_R), H,
                                                                             HD, cs, dqkv, lddq);
    ARB_CU_LAUNCH("k_attn_dq_reduce");
    return ARB_OK;
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

__global__ void k_add(float *y, const float *a, const float *b, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(a[i], b[i]);
}

/* One block of 1024: each thread sums a contiguous run of rows in order, then a fixed tree. */
__global__ void __launch_bounds__(1024) k_sum_rows(const double *x, int64_t n, double *out) {
    __shared__ double part[1024];
    const int t = threadIdx.x;
    const int64_t per = (n + 1023) / 1024, r0 = t * per, r1 = min(n, r0 + per);
    double s = 0.0;
    for (int64_t r = r0; r < r1; r++) s += x[r];
    part[t] = s;
    __syncthreads();
    for (int w = 512; w > 0; w >>= 1) {
        if (t < w) part[t] += part[t + w];
        __syncthreads();
    }
    if (t == 0) *out = part[0];
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

extern "C" arb_status arb_mcu_attn_check(int hd) {
    if (hd == 16 || hd == 32 || hd == 64 || hd == 128) return ARB_OK;
    return arb_error(ARB_ERR_UNSUPPORTED, "CUDA model: attention head dim %d is not supported (16, 32, 64 or 128)", hd);
}

static arb_status fa_args(const void *a, const void *b, const void *c, int64_t l1, int64_t l2, int64_t l3, int64_t B,
                          int64_t T, int H) {
    if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 16 || (l1 | l2 | l3) % 4 || B <= 0 || T <= 0 || H <= 0 ||
        B * H > 65535 || T > (1 << 24))
        return arb_error(ARB_ERR_INVALID_ARG, "model attention: unaligned buffers or bad shape B=%lld T=%lld H=%d",
                         (long long)B, (long long)T, H);
    return ARB_OK;
}

extern "C" arb_status arb_mcu_attn_forward(const float *qkv, int64_t ldq, const float *rope, float *o, int64_t ldo,
                                           float *lse, int64_t B, int64_t T, int H, int hd) {
    ARB_TRY(arb_mcu_attn_check(hd));
    ARB_TRY(fa_args(qkv, o, lse, ldq, ldo, 4, B, T, H));
    ARB_TRY(fa_args(rope, rope, rope, 4, 4, 4, B, T, H));
    switch (hd) {
    case 16: return fa_forward<16>(qkv, ldq, rope, o, ldo, lse, B, T, H);
    case 32: return fa_forward<32>(qkv, ldq, rope, o, ldo, lse, B, T, H);
    case 64: return fa_forward<64>(qkv, ldq, rope, o, ldo, lse, B, T, H);
    default: return fa_forward<128>(qkv, ldq, rope, o, ldo, lse, B, T, H);
    }
}

extern "C" int64_t arb_mcu_attn_scratch_floats(int64_t B, int64_t T, int64_t D) {
    const int64_t nt = (T + FA_R - 1) / FA_R;
    return nt * nt * FA_R * B * D;
}

extern "C" arb_status arb_mcu_attn_backward(const float *qkv, int64_t ldq, const float *rope, const float *o,
                                            int64_t ldo, const float *lse, const float *dy, int64_t ldy, float *delta,
                                            float *dqkv, int64_t lddq, float *scratch, int64_t B, int64_t T, int H,
                                            int hd) {
    ARB_TRY(arb_mcu_attn_check(hd));
    ARB_TRY(fa_args(qkv, o, dy, ldq, ldo, ldy, B, T, H));
    ARB_TRY(fa_args(dqkv, lse, delta, lddq, 4, 4, B, T, H));
    ARB_TRY(fa_args(rope, rope, scratch, 4, 4, 4, B, T, H));
    switch (hd) {
    case 16: return fa_backward<16>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, scratch, B, T, H);
    case 32: return fa_backward<32>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, scratch, B, T, H);
    case 64: return fa_backward<64>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, scratch, B, T, H);
    default: return fa_backward<128>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, scratch, B, T, H);
    }
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

extern "C" arb_status arb_mcu_add(float *y, const float *a, const float *b, int64_t n) {
    k_add<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(y, a, b, n);
    ARB_CU_LAUNCH("k_add");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_sum_rows(const double *x, int64_t n, double *out) {
    k_sum_rows<<<1, 1024, 0, arb_cuda_cur_stream()>>>(x, n, out);
    ARB_CU_LAUNCH("k_sum_rows");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_ce(const float *logits, const int32_t *targets, int64_t n, int64_t V, float gscale,
                                 float *dlogits, double *row_loss) {
    k_ce<<<arb_cuda_blocks(n, 8), 256, 0, arb_cuda_cur_stream()>>>(logits, targets, n, (int)V, gscale, dlogits,
                                                                    row_loss);
    ARB_CU_LAUNCH("k_ce");
    return ARB_OK;
}
