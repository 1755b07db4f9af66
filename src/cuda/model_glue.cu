/* src/cuda/model_glue.cu — the model's float glue on the GPU (src/model/model_cuda.h): fused
 * FlashAttention-2 style causal attention forward and backward (mma.sync tensor cores on split
 * bf16 operands: ~1e-5 relative per product, see the attention section; the T×T probabilities
 * never reach global memory; rotary applied to q and k as they load, and its inverse to dq and dk
 * as they store), ReLU², residual adds, cross-entropy with its gradient and the loss sum.
 *
 * Why these and not cuBLAS / cuDNN: the library links cuBLAS for benchmark baselines only, and a
 * fused attention needs the softmax between its two products. Every reduction has a fixed order
 * (key tiles and mma instructions in sequence, warp shuffle trees of fixed shape), there are no
 * atomics: two runs give the same bits. Elementwise ops that glue.c computes without contraction
 * use __fmul_rn/__fadd_rn here so they match it bit for bit (rotary, ReLU², the CE gradient); the
 * reductions differ from the CPU in summation order, and the attention products in the split-bf16
 * rounding (~1e-5 relative). */
#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/internal.cuh"
#include "model/model_cuda.h"
#include "arbitor/model.h"

namespace {

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---------------------------------------------------------------- fused causal attention
 * FlashAttention-2 style on mma.sync (m16n8k16, bf16 operands, fp32 accumulation), with every
 * product run in the split-bf16 ("bf16x3") scheme: each fp32 operand x = hi + lo with hi = bf16(x),
 * lo = bf16(x − hi) (x − hi is exact in fp32), and a·b ≈ lo_a·hi_b + hi_a·lo_b + hi_a·hi_b
 * accumulated in fp32. What is dropped (lo·lo, and x − hi − lo on each side) is ~2⁻¹⁷ relative
 * per product: ~1e-5, against ~4e-3 for single-pass bf16 and ~5e-4 for TF32. Why not a cheaper
 * single pass: the attention output is quantized to int8 (steps of 1/127 of a row's max) right
 * after, and every code that rounds the other way than on the CPU moves its row downstream by a
 * step; with this scheme ~1 code in 10k flips in the model test (0 with 3xTF32), at 5e-4 it
 * would be a percent or more, and the CUDA model could no longer be checked against the CPU
 * model (tests/cuda/test_cuda_model.c states the tolerances). bf16 keeps fp32's exponent range,
 * so the tiny gradients of a mean loss over 16k tokens never underflow (fp16 would).
 *
 * Layout: a block of 4 warps owns 64 rows of one (sequence, head); each warp owns 16 of them and
 * keeps its scores, probabilities and accumulators in registers (the m16n8 accumulator of S is
 * already the A operand of the next product: no shared-memory round trip). Tiles of 64 rows live
 * in shared memory as bf16 hi and lo planes (rows padded by 8: ldmatrix without bank conflicts);
 * rotary is applied to q and k as they load (and its inverse to dq and dk as they store).
 * Forward: per 64-key tile S = Q Kᵀ·sc, the online softmax, O += P V; the row log-sum-exp is saved.
 * Backward, deterministic without atomics or scratch: k_attn_bwd_dq (per query tile: Δ = Σ dO·O,
 * then over key tiles P, dS = P∘(dP − Δ)·sc, dQ += dS K) and k_attn_bwd_dkv (per key tile, over
 * query tiles: Pᵀ, dSᵀ, dV += Pᵀ dO, dK += dSᵀ Q); each reduces over its tiles in order. The
 * next tile's rows travel by cp.async while the current one computes. */
constexpr int FA_R = 64, FA_THREADS = 128;

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* (x, y) → packed bf16 pairs hi = bf16(x, y), lo = bf16(x − hi, y − hi) (x in the low half). */
__device__ __forceinline__ void split2(float x, float y, uint32_t &hi, uint32_t &lo) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    const float2 hf = __bfloat1622float2(h);
    const __nv_bfloat162 l = __floats2bfloat162_rn(__fsub_rn(x, hf.x), __fsub_rn(y, hf.y));
    hi = *reinterpret_cast<const uint32_t *>(&h);
    lo = *reinterpret_cast<const uint32_t *>(&l);
}

/* e^x as __expf computes it (2^(x·log2 e) on the SFU), flushing results below 2^-126 to zero: the
 * non-flushing form spent a compare and two predicated multiplies per value on the range fix-up. */
__device__ __forceinline__ float fa_exp(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.44269504088896341f));
    return y;
}

/* Rotary of one (even, odd) pair by (c, ±s): exactly glue.c's a·c − b·s, a·s + b·c (no contraction). */
__device__ __forceinline__ float2 rot(float a, float b, float c, float s) {
    return make_float2(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
}

/* A warp's mma accumulator tile (the thread's rows r0 and r0 + 8, columns 8j + 2·t4 + {0, 1}) to
 * global rows < T; with cs, each (even, odd) pair rotated back (the gradient of the rotation on load). */
template <int HD, int NO>
__device__ __forceinline__ void fa_store_acc(float *g, int64_t ld, const float (&acc)[NO][4], int r0, int t4, int T,
                                             const float *cs) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = r0 + 8 * i;
        if (row >= T) continue;
#pragma unroll
        for (int j = 0; j < NO; j++) {
            const int c = 8 * j + 2 * t4;
            float2 out = make_float2(acc[j][2 * i], acc[j][2 * i + 1]);
            if (cs) out = rot(out.x, out.y, cs[(int64_t)row * HD + c], -cs[(int64_t)row * HD + c + 1]);
            *reinterpret_cast<float2 *>(g + (int64_t)row * ld + c) = out;
        }
    }
}

/* Tile movement. Every loop here is branch-free with its loads hoisted (rows ≥ T read a valid
 * row and are zeroed by a select or a zero-filling copy): a guarded load per element made the
 * compiler issue them one round trip at a time, and those round trips were most of an iteration. */
__device__ __forceinline__ void cp16(void *dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp4(void *dst, const void *src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

/* Up to 8 float4 of a tile per thread at a time (registers), then rotate, split and store. */
template <int HD> struct FaSlots {
    static constexpr int V = HD / 4, N = FA_R * V / FA_THREADS, CH = N < 8 ? N : 8;
};

template <int HD, int CH>
__device__ __forceinline__ void fa_put(bf16 *hi, bf16 *lo, float4 (&v)[CH], int it0, int row0, int T, const float *cs) {
    constexpr int V = HD / 4, LD = HD + 8;
    if (cs) {
        float4 t[CH];
#pragma unroll
        for (int i = 0; i < CH; i++) {
            const int idx = threadIdx.x + (it0 + i) * FA_THREADS, r = idx / V, c = (idx % V) * 4;
            t[i] = __ldg(reinterpret_cast<const float4 *>(cs + (int64_t)min(row0 + r, T - 1) * HD + c));
        }
#pragma unroll
        for (int i = 0; i < CH; i++) {
            const float2 p0 = rot(v[i].x, v[i].y, t[i].x, t[i].y), p1 = rot(v[i].z, v[i].w, t[i].z, t[i].w);
            v[i] = make_float4(p0.x, p0.y, p1.x, p1.y);
        }
    }
#pragma unroll
    for (int i = 0; i < CH; i++) {
        const int idx = threadIdx.x + (it0 + i) * FA_THREADS, r = idx / V, c = (idx % V) * 4;
        uint32_t h0, l0, h1, l1;
        split2(v[i].x, v[i].y, h0, l0);
        split2(v[i].z, v[i].w, h1, l1);
        *reinterpret_cast<uint2 *>(hi + r * LD + c) = make_uint2(h0, h1);
        *reinterpret_cast<uint2 *>(lo + r * LD + c) = make_uint2(l0, l1);
    }
}

/* 64 rows of HD floats (global row stride ld, rows ≥ T as zeros) straight into the hi and lo
 * planes (row stride HD + 8); with cs (the (T, HD/2, 2) cos, sin table) each row is rotated for
 * its position on the way. */
template <int HD>
__device__ __forceinline__ void fa_load(bf16 *hi, bf16 *lo, const float *g, int64_t ld, int row0, int T,
                                        const float *cs = nullptr) {
    typedef FaSlots<HD> S;
#pragma unroll
    for (int it0 = 0; it0 < S::N; it0 += S::CH) {
        float4 v[S::CH];
#pragma unroll
        for (int i = 0; i < S::CH; i++) {
            const int idx = threadIdx.x + (it0 + i) * FA_THREADS, r = idx / S::V, c = (idx % S::V) * 4;
            const float4 x = __ldg(reinterpret_cast<const float4 *>(g + (int64_t)min(row0 + r, T - 1) * ld + c));
            v[i] = row0 + r < T ? x : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        fa_put<HD, S::CH>(hi, lo, v, it0, row0, T, cs);
    }
}

/* The next tile's rows travel global → shared (fp32 staging, row stride HD; rows ≥ T zero-filled)
 * by cp.async while the block computes on the current one; fa_convert then splits (and rotates)
 * them into planes. */
template <int HD>
__device__ __forceinline__ void fa_stage(float *st, const float *g, int64_t ld, int row0, int T) {
    typedef FaSlots<HD> S;
#pragma unroll
    for (int it = 0; it < S::N; it++) {
        const int idx = threadIdx.x + it * FA_THREADS, r = idx / S::V, c = (idx % S::V) * 4;
        cp16(st + r * HD + c, g + (int64_t)min(row0 + r, T - 1) * ld + c, row0 + r < T);
    }
}

template <int HD>
__device__ __forceinline__ void fa_convert(bf16 *hi, bf16 *lo, const float *st, int row0, int T,
                                           const float *cs = nullptr) {
    typedef FaSlots<HD> S;
#pragma unroll
    for (int it0 = 0; it0 < S::N; it0 += S::CH) {
        float4 v[S::CH];
#pragma unroll
        for (int i = 0; i < S::CH; i++) {
            const int idx = threadIdx.x + (it0 + i) * FA_THREADS, r = idx / S::V, c = (idx % S::V) * 4;
            v[i] = *reinterpret_cast<const float4 *>(st + r * HD + c);
        }
        fa_put<HD, S::CH>(hi, lo, v, it0, row0, T, cs);
    }
}

/* s (16 × 64) += A Bᵀ for one warp: A = 16 rows × HD (planes ah, al at the warp's first row),
 * B = 64 rows × HD (planes bh, bl). Per k-step all B fragments load first and the 24 mma go in
 * three passes over the 8 accumulators (no accumulator is used twice within 8 instructions): no
 * branches in the unrolled body, so ptxas schedules it as one block. */
template <int HD>
__device__ __forceinline__ void mma_abt(float (&s)[8][4], const bf16 *ah, const bf16 *al, const bf16 *bh,
                                        const bf16 *bl) {
    constexpr int LD = HD + 8;
    const int lane = threadIdx.x & 31;
    const int ar = (lane & 7) + ((lane >> 3) & 1) * 8, ac = (lane >> 4) * 8;
    const int br = (lane & 7) + (lane >> 4) * 8, bc = ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a_h[4], a_l[4], b_h[4][4], b_l[4][4];
        ldsm4(a_h, ah + ar * LD + kk * 16 + ac);
        ldsm4(a_l, al + ar * LD + kk * 16 + ac);
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            ldsm4(b_h[jp], bh + (jp * 16 + br) * LD + kk * 16 + bc);
            ldsm4(b_l[jp], bl + (jp * 16 + br) * LD + kk * 16 + bc);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) mma16816(s[j], a_l, b_h[j >> 1][2 * (j & 1)], b_h[j >> 1][2 * (j & 1) + 1]);
#pragma unroll
        for (int j = 0; j < 8; j++) mma16816(s[j], a_h, b_l[j >> 1][2 * (j & 1)], b_l[j >> 1][2 * (j & 1) + 1]);
#pragma unroll
        for (int j = 0; j < 8; j++) mma16816(s[j], a_h, b_h[j >> 1][2 * (j & 1)], b_h[j >> 1][2 * (j & 1) + 1]);
    }
}

/* The 16 × 64 accumulator s as split A operands (four k-steps of 16 columns). */
__device__ __forceinline__ void c2a(const float (&s)[8][4], uint32_t (&ph)[4][4], uint32_t (&pl)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        split2(s[2 * kk][0], s[2 * kk][1], ph[kk][0], pl[kk][0]);
        split2(s[2 * kk][2], s[2 * kk][3], ph[kk][1], pl[kk][1]);
        split2(s[2 * kk + 1][0], s[2 * kk + 1][1], ph[kk][2], pl[kk][2]);
        split2(s[2 * kk + 1][2], s[2 * kk + 1][3], ph[kk][3], pl[kk][3]);
    }
}

/* o (16 × HD) += P B for one warp: P = 16 × 64 split in registers, B = 64 rows × HD (planes);
 * per k-step and 32 columns of B, 12 mma in three passes over 4 accumulators. */
template <int HD>
__device__ __forceinline__ void mma_pb(float (&o)[HD / 8][4], const uint32_t (&ph)[4][4], const uint32_t (&pl)[4][4],
                                       const bf16 *bh, const bf16 *bl) {
    constexpr int LD = HD + 8, JP = HD / 16 < 2 ? HD / 16 : 2;
    const int lane = threadIdx.x & 31;
    const int vr = (lane & 7) + ((lane >> 3) & 1) * 8, vc = (lane >> 4) * 8;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
#pragma unroll
        for (int j0 = 0; j0 < HD / 16; j0 += JP) {
            uint32_t b_h[JP][4], b_l[JP][4];
#pragma unroll
            for (int jp = 0; jp < JP; jp++) {
                ldsm4t(b_h[jp], bh + (kk * 16 + vr) * LD + (j0 + jp) * 16 + vc);
                ldsm4t(b_l[jp], bl + (kk * 16 + vr) * LD + (j0 + jp) * 16 + vc);
            }
#pragma unroll
            for (int j = 0; j < 2 * JP; j++)
                mma16816(o[2 * j0 + j], pl[kk], b_h[j >> 1][2 * (j & 1)], b_h[j >> 1][2 * (j & 1) + 1]);
#pragma unroll
            for (int j = 0; j < 2 * JP; j++)
                mma16816(o[2 * j0 + j], ph[kk], b_l[j >> 1][2 * (j & 1)], b_l[j >> 1][2 * (j & 1) + 1]);
#pragma unroll
            for (int j = 0; j < 2 * JP; j++)
                mma16816(o[2 * j0 + j], ph[kk], b_h[j >> 1][2 * (j & 1)], b_h[j >> 1][2 * (j & 1) + 1]);
        }
    }
}

template <int HD> constexpr size_t fa_tile_bytes() { return sizeof(bf16) * FA_R * (HD + 8); }
template <int HD> constexpr size_t fa_stage_bytes() { return sizeof(float) * 2 * FA_R * HD; }
template <int HD> constexpr size_t fa_fwd_smem() { return 6 * fa_tile_bytes<HD>() + fa_stage_bytes<HD>(); }
template <int HD> constexpr size_t fa_bwd_smem() {
    return 8 * fa_tile_bytes<HD>() + fa_stage_bytes<HD>() + 4 * FA_R * sizeof(float);
}

/* grid (query tiles, B·H), heavy (late) tiles first. */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn_fwd(const float *qkv, int64_t ldq, const float *cs, float *o, int64_t ldo, float *lse, int T, int H, float sc) {
    constexpr int TL = FA_R * (HD + 8), NO = HD / 8;
    extern __shared__ __align__(128) unsigned char fa_sm[];
    bf16 *Qh = reinterpret_cast<bf16 *>(fa_sm), *Ql = Qh + TL, *Kh = Ql + TL, *Kl = Kh + TL, *Vh = Kl + TL,
         *Vl = Vh + TL;
    float *Ks32 = reinterpret_cast<float *>(Vl + TL), *Vs32 = Ks32 + FA_R * HD;
    const int qt = gridDim.x - 1 - blockIdx.x, z = blockIdx.y, b = z / H, h = z % H;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, wr = w * 16, t4 = lane & 3, q0 = qt * FA_R;
    const int r0 = q0 + wr + (lane >> 2); /* the thread's rows r0, r0 + 8 */
    const int64_t D = (int64_t)H * HD;
    const float *q = qkv + (int64_t)b * T * ldq + (int64_t)h * HD, *k = q + D, *v = q + 2 * D;
    fa_stage<HD>(Ks32, k, ldq, 0, T);
    fa_stage<HD>(Vs32, v, ldq, 0, T);
    cp_commit();
    fa_load<HD>(Qh, Ql, q, ldq, q0, T, cs);
    float acc[NO][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NO; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * FA_R;
        cp_wait_all();
        __syncthreads(); /* the previous tile's planes are no longer read; the staged rows have landed */
        fa_convert<HD>(Kh, Kl, Ks32, k0, T, cs);
        fa_convert<HD>(Vh, Vl, Vs32, k0, T);
        __syncthreads();
        if (kt < qt) { /* the next tile travels while this one computes */
            fa_stage<HD>(Ks32, k, ldq, k0 + FA_R, T);
            fa_stage<HD>(Vs32, v, ldq, k0 + FA_R, T);
            cp_commit();
        }
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        mma_abt<HD>(s, Qh + wr * (HD + 8), Ql + wr * (HD + 8), Kh, Kl);
        float mx[2] = {-INFINITY, -INFINITY};
        if (kt == qt) /* only the diagonal tile has masked keys (and the keys ≥ T of the last one) */
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = k0 + 8 * j + 2 * t4 + (e & 1), row = r0 + 8 * (e >> 1);
                    const float x = col <= row && col < T ? __fmul_rn(s[j][e], sc) : -INFINITY;
                    s[j][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
        else
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float x = __fmul_rn(s[j][e], sc);
                    s[j][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
        float alpha[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            const float mnew = fmaxf(mrow[i], mx[i]); /* finite: key k0 ≤ every row of the tile */
            alpha[i] = mrow[i] == -INFINITY ? 0.0f : fa_exp(mrow[i] - mnew);
            mrow[i] = mnew;
        }
        float ps[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float p = fa_exp(s[j][e] - mrow[e >> 1]); /* masked: exp(−inf) = 0 */
                s[j][e] = p;
                ps[e >> 1] += p;
            }
        /* each lane keeps its partial row sum (all rescaled alike); the quad adds them at the end */
        lrow[0] = fmaf(lrow[0], alpha[0], ps[0]);
        lrow[1] = fmaf(lrow[1], alpha[1], ps[1]);
        if (kt > 0)
#pragma unroll
            for (int j = 0; j < NO; j++) {
                acc[j][0] *= alpha[0];
                acc[j][1] *= alpha[0];
                acc[j][2] *= alpha[1];
                acc[j][3] *= alpha[1];
            }
        uint32_t ph[4][4], pl[4][4];
        c2a(s, ph, pl);
        mma_pb<HD>(acc, ph, pl, Vh, Vl);
    }
    float *og = o + (int64_t)b * T * ldo + (int64_t)h * HD;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = lrow[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = r0 + 8 * i;
        if (row >= T) continue;
        if (t4 == 0) lse[(int64_t)z * T + row] = mrow[i] + logf(l);
        const float inv = 1.0f / l;
#pragma unroll
        for (int j = 0; j < NO; j++)
            *reinterpret_cast<float2 *>(og + (int64_t)row * ldo + 8 * j + 2 * t4) =
                make_float2(__fmul_rn(acc[j][2 * i], inv), __fmul_rn(acc[j][2 * i + 1], inv));
    }
}

/* dQ per query tile (grid (query tiles, B·H), heavy first); first Δ = Σ dO·O of its rows, which
 * it also writes to delta for k_attn_bwd_dkv (launched after). */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn_bwd_dq(const float *qkv, int64_t ldq, const float *cs, const float *o, int64_t ldo, const float *lse,
                  const float *dy, int64_t ldy, float *delta, float *dqkv, int64_t lddq, int T, int H, float sc) {
    constexpr int LD = HD + 8, TL = FA_R * LD, NO = HD / 8;
    extern __shared__ __align__(128) unsigned char fa_sm[];
    bf16 *Qh = reinterpret_cast<bf16 *>(fa_sm), *Ql = Qh + TL, *Gh = Ql + TL, *Gl = Gh + TL, *Kh = Gl + TL,
         *Kl = Kh + TL, *Vh = Kl + TL, *Vl = Vh + TL;
    float *Ks32 = reinterpret_cast<float *>(Vl + TL), *Vs32 = Ks32 + FA_R * HD, *Ds = Vs32 + FA_R * HD;
    const int qt = gridDim.x - 1 - blockIdx.x, z = blockIdx.y, b = z / H, h = z % H;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, wr = w * 16, t4 = lane & 3, q0 = qt * FA_R;
    const int r0 = q0 + wr + (lane >> 2);
    const int64_t D = (int64_t)H * HD, hc = (int64_t)h * HD;
    const float *q = qkv + (int64_t)b * T * ldq + hc, *k = q + D, *v = q + 2 * D;
    const float *dyg = dy + (int64_t)b * T * ldy + hc, *og = o + (int64_t)b * T * ldo + hc;
    fa_stage<HD>(Ks32, k, ldq, 0, T);
    fa_stage<HD>(Vs32, v, ldq, 0, T);
    cp_commit();
    fa_load<HD>(Qh, Ql, q, ldq, q0, T, cs);
    fa_load<HD>(Gh, Gl, dyg, ldy, q0, T);
    {
        /* Δ: two lanes per row (halves of the columns, in order), then their sum */
        const int rr = wr + (lane >> 1), hf = lane & 1, gi = q0 + rr;
        float d = 0.0f;
        if (gi < T)
#pragma unroll
            for (int c = hf * (HD / 2); c < (hf + 1) * (HD / 2); c += 4) {
                const float4 a = *reinterpret_cast<const float4 *>(dyg + (int64_t)gi * ldy + c);
                const float4 bb = *reinterpret_cast<const float4 *>(og + (int64_t)gi * ldo + c);
                d = fmaf(a.x, bb.x, d);
                d = fmaf(a.y, bb.y, d);
                d = fmaf(a.z, bb.z, d);
                d = fmaf(a.w, bb.w, d);
            }
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        if (hf == 0) {
            Ds[rr] = d;
            if (gi < T) delta[(int64_t)z * T + gi] = d;
        }
        __syncwarp();
    }
    float lr[2], dr[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = r0 + 8 * i;
        lr[i] = row < T ? lse[(int64_t)z * T + row] : 0.0f;
        dr[i] = Ds[row - q0];
    }
    float acc[NO][4];
#pragma unroll
    for (int j = 0; j < NO; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * FA_R;
        cp_wait_all();
        __syncthreads();
        fa_convert<HD>(Kh, Kl, Ks32, k0, T, cs);
        fa_convert<HD>(Vh, Vl, Vs32, k0, T);
        __syncthreads();
        if (kt < qt) {
            fa_stage<HD>(Ks32, k, ldq, k0 + FA_R, T);
            fa_stage<HD>(Vs32, v, ldq, k0 + FA_R, T);
            cp_commit();
        }
        float s[8][4], dp[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
        mma_abt<HD>(s, Qh + wr * LD, Ql + wr * LD, Kh, Kl);  /* S = Q Kᵀ */
        mma_abt<HD>(dp, Gh + wr * LD, Gl + wr * LD, Vh, Vl); /* dP = dO Vᵀ */
        if (kt == qt)
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = k0 + 8 * j + 2 * t4 + (e & 1), row = r0 + 8 * (e >> 1), i = e >> 1;
                    const float p = fa_exp(__fmul_rn(s[j][e], sc) - lr[i]); /* selects, not branches */
                    const float ds = __fmul_rn(__fmul_rn(p, dp[j][e] - dr[i]), sc);
                    s[j][e] = col <= row && col < T ? ds : 0.0f;
                }
        else
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = e >> 1;
                    const float p = fa_exp(__fmul_rn(s[j][e], sc) - lr[i]);
                    s[j][e] = __fmul_rn(__fmul_rn(p, dp[j][e] - dr[i]), sc);
                }
        uint32_t ph[4][4], pl[4][4];
        c2a(s, ph, pl);
        mma_pb<HD>(acc, ph, pl, Kh, Kl); /* dQ += dS K */
    }
    fa_store_acc<HD, NO>(dqkv + (int64_t)b * T * lddq + hc, lddq, acc, r0, t4, T, cs);
}

/* dK, dV per key tile (grid (key tiles, B·H); early tiles see the most queries and go first). */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_attn_bwd_dkv(const float *qkv, int64_t ldq, const float *cs, const float *lse, const float *dy, int64_t ldy,
                   const float *delta, float *dqkv, int64_t lddq, int T, int H, float sc) {
    constexpr int LD = HD + 8, TL = FA_R * LD, NO = HD / 8;
    extern __shared__ __align__(128) unsigned char fa_sm[];
    bf16 *Kh = reinterpret_cast<bf16 *>(fa_sm), *Kl = Kh + TL, *Vh = Kl + TL, *Vl = Vh + TL, *Qh = Vl + TL,
         *Ql = Qh + TL, *Gh = Ql + TL, *Gl = Gh + TL;
    float *Qs32 = reinterpret_cast<float *>(Gl + TL), *Gs32 = Qs32 + FA_R * HD, *Ls = Gs32 + FA_R * HD;
    const int kt = blockIdx.x, nq = gridDim.x, z = blockIdx.y, b = z / H, h = z % H;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, wr = w * 16, t4 = lane & 3, k0 = kt * FA_R;
    const int r0 = k0 + wr + (lane >> 2); /* the thread's key rows r0, r0 + 8 */
    const int64_t D = (int64_t)H * HD, hc = (int64_t)h * HD;
    const float *q = qkv + (int64_t)b * T * ldq + hc, *k = q + D, *v = q + 2 * D;
    const float *dyg = dy + (int64_t)b * T * ldy + hc;
    const float *lsez = lse + (int64_t)z * T, *dlz = delta + (int64_t)z * T;
    /* staged per query tile: Q and dO rows, and lse, Δ (two 64-float planes) */
    auto stage = [&](int q0) {
        fa_stage<HD>(Qs32, q, ldq, q0, T);
        fa_stage<HD>(Gs32, dyg, ldy, q0, T);
        if (threadIdx.x < 2 * FA_R) { /* lse, Δ rows are not 16-byte aligned (odd T): 4-byte copies */
            const int c = threadIdx.x % FA_R;
            const float *src = threadIdx.x < FA_R ? lsez : dlz;
            cp4(Ls + 2 * FA_R + threadIdx.x, src + min(q0 + c, T - 1), q0 + c < T);
        }
        cp_commit();
    };
    stage(k0);
    fa_load<HD>(Kh, Kl, k, ldq, k0, T, cs);
    fa_load<HD>(Vh, Vl, v, ldq, k0, T);
    float dk[NO][4], dv[NO][4];
#pragma unroll
    for (int j = 0; j < NO; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.0f;
    for (int qt = kt; qt < nq; qt++) {
        const int q0 = qt * FA_R;
        cp_wait_all();
        __syncthreads();
        fa_convert<HD>(Qh, Ql, Qs32, q0, T, cs);
        fa_convert<HD>(Gh, Gl, Gs32, q0, T);
        if (threadIdx.x < 2 * FA_R) Ls[threadIdx.x] = Ls[2 * FA_R + threadIdx.x]; /* lse, Δ of this tile */
        __syncthreads();
        if (qt + 1 < nq) stage(q0 + FA_R);
        float s[8][4], dp[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
        mma_abt<HD>(s, Kh + wr * LD, Kl + wr * LD, Qh, Ql);  /* Sᵀ = K Qᵀ */
        mma_abt<HD>(dp, Vh + wr * LD, Vl + wr * LD, Gh, Gl); /* dPᵀ = V dOᵀ */
        if (qt == kt || q0 + FA_R > T) /* the diagonal tile, and the queries ≥ T of the last one */
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int c = 8 * j + 2 * t4 + (e & 1), gq = q0 + c, key = r0 + 8 * (e >> 1);
                    const bool ok = gq >= key && gq < T;
                    const float p = fa_exp(__fmul_rn(s[j][e], sc) - Ls[c]); /* selects, not branches */
                    const float ds = __fmul_rn(__fmul_rn(p, dp[j][e] - Ls[FA_R + c]), sc);
                    s[j][e] = ok ? p : 0.0f;
                    dp[j][e] = ok ? ds : 0.0f;
                }
        else
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int c = 8 * j + 2 * t4 + (e & 1);
                    const float p = fa_exp(__fmul_rn(s[j][e], sc) - Ls[c]);
                    s[j][e] = p;
                    dp[j][e] = __fmul_rn(__fmul_rn(p, dp[j][e] - Ls[FA_R + c]), sc);
                }
        uint32_t ah[4][4], al[4][4];
        c2a(s, ah, al);
        mma_pb<HD>(dv, ah, al, Gh, Gl); /* dV += Pᵀ dO */
        c2a(dp, ah, al);
        mma_pb<HD>(dk, ah, al, Qh, Ql); /* dK += dSᵀ Q */
    }
    float *dkg = dqkv + (int64_t)b * T * lddq + D + hc;
    fa_store_acc<HD, NO>(dkg, lddq, dk, r0, t4, T, cs);
    fa_store_acc<HD, NO>(dkg + D, lddq, dv, r0, t4, T, nullptr);
}

template <int HD> arb_status fa_prepare() {
    /* host-side attribute calls (no synchronization), per launch: right for whichever device is current */
    ARB_CU(cudaFuncSetAttribute(k_attn_fwd<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fa_fwd_smem<HD>()));
    ARB_CU(cudaFuncSetAttribute(k_attn_bwd_dq<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fa_bwd_smem<HD>()));
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
                       const float *dy, int64_t ldy, float *delta, float *dqkv, int64_t lddq, int64_t B, int64_t T,
                       int H) {
    ARB_TRY(fa_prepare<HD>());
    cudaStream_t st = arb_cuda_cur_stream();
    const float sc = 1.0f / sqrtf((float)HD);
    dim3 grid((unsigned)arb_cuda_blocks(T, FA_R), (unsigned)(B * H));
    k_attn_bwd_dq<HD><<<grid, FA_THREADS, fa_bwd_smem<HD>(), st>>>(qkv, ldq, cs, o, ldo, lse, dy, ldy, delta, dqkv,
                                                                  lddq, (int)T, H, sc);
    ARB_CU_LAUNCH("k_attn_bwd_dq");
    k_attn_bwd_dkv<HD><<<grid, FA_THREADS, fa_bwd_smem<HD>(), st>>>(qkv, ldq, cs, lse, dy, ldy, delta, dqkv, lddq,
                                                                   (int)T, H, sc);
    ARB_CU_LAUNCH("k_attn_bwd_dkv");
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

/* The same four at a time (n a multiple of 4, 16-byte aligned): the pass is pure bandwidth. */
__global__ void k_relu2_bwd4(const float4 *u, const float4 *dr, int64_t n4, float4 *du) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        const float4 v = u[i], g = dr[i];
        du[i] = make_float4(v.x > 0.0f ? __fmul_rn(2.0f * v.x, g.x) : 0.0f, v.y > 0.0f ? __fmul_rn(2.0f * v.y, g.y) : 0.0f,
                            v.z > 0.0f ? __fmul_rn(2.0f * v.z, g.z) : 0.0f, v.w > 0.0f ? __fmul_rn(2.0f * v.w, g.w) : 0.0f);
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

extern "C" arb_status arb_mcu_attn_backward(const float *qkv, int64_t ldq, const float *rope, const float *o,
                                            int64_t ldo, const float *lse, const float *dy, int64_t ldy, float *delta,
                                            float *dqkv, int64_t lddq, int64_t B, int64_t T, int H, int hd) {
    ARB_TRY(arb_mcu_attn_check(hd));
    ARB_TRY(fa_args(qkv, o, dy, ldq, ldo, ldy, B, T, H));
    ARB_TRY(fa_args(dqkv, lse, delta, lddq, 4, 4, B, T, H));
    ARB_TRY(fa_args(rope, rope, rope, 4, 4, 4, B, T, H));
    switch (hd) {
    case 16: return fa_backward<16>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, B, T, H);
    case 32: return fa_backward<32>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, B, T, H);
    case 64: return fa_backward<64>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, B, T, H);
    default: return fa_backward<128>(qkv, ldq, rope, o, ldo, lse, dy, ldy, delta, dqkv, lddq, B, T, H);
    }
}

extern "C" arb_status arb_mcu_relu2(const float *u, int64_t n, float *r) {
    k_relu2<<<arb_cuda_blocks(n, 256), 256, 0, arb_cuda_cur_stream()>>>(u, n, r);
    ARB_CU_LAUNCH("k_relu2");
    return ARB_OK;
}

extern "C" arb_status arb_mcu_relu2_backward(const float *u, const float *dr, int64_t n, float *du) {
    if (n % 4 == 0 && ((uintptr_t)u | (uintptr_t)dr | (uintptr_t)du) % 16 == 0) {
        k_relu2_bwd4<<<arb_cuda_blocks(n / 4, 256), 256, 0, arb_cuda_cur_stream()>>>(
            reinterpret_cast<const float4 *>(u), reinterpret_cast<const float4 *>(dr), n / 4,
            reinterpret_cast<float4 *>(du));
        ARB_CU_LAUNCH("k_relu2_bwd4");
        return ARB_OK;
    }
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
