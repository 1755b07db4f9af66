/* int8 GEMMs with the transformer row stages in their epilogue (see sc_rowgemm.cuh).
 *
 * Block: 64 output rows × 384 columns, three warpgroups (warpgroup i: columns 128·i … 128·i + 127,
 * wgmma m64n128k32 with A and B from 128-byte-swizzled shared memory). Thread 0 brings each
 * 128-byte K chunk of A (64 × 128) and W (3 boxes of 128 × 128) by TMA into one of 3 stages; the
 * int32 sums stay in registers (64 per thread: rows g and g + 8 of its warp's 16, columns
 * 8j + 2·(lane % 4), + 1). Epilogue per thread, with the row kernel's formulas and rounding:
 * dequantize + bias, then the mode's stages; row sums and maxima go lane quad → shared memory
 * (one slot per warpgroup, summed in a fixed order, so a row's bits do not depend on its position
 * in the batch) → for a cluster (rows wider than 384) each block's row maxima through distributed
 * shared memory. Only the sm_90a image has the kernel (sc_rowgemm_ok checks). */
#include "cuda/sc_rowgemm.cuh"

#include "cuda/gemm_sm90.cuh"
#include "cuda/internal.cuh"
#include "cuda/sc_conv.cuh"
#include "cuda/wgmma.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int BM = 64, WN = 128, NWG = 3, BN = WN * NWG, KC = 128, THREADS = 128 * NWG;
constexpr int A_BYTES = BM * KC, WB_BYTES = WN * KC, STAGE = A_BYTES + NWG * WB_BYTES;
/* A tile moves as TMA boxes of 64 rows × 128 bytes with the 128-byte swizzle (16-byte pieces
 * of row r at piece ^ (r % 8)): the 8 rows a warp's fragment covers then fall in different banks
 * (dense rows of 384 elements put all 8 in the same bank: 8-way conflicts). */
[[maybe_unused]] __device__ __forceinline__ int tile_byte(int row, int c, int esize) { /* element (row, c) of a tile */
    const int epb = 128 / esize, b = c / epb, by = (c - b * epb) * esize;
    /* arb_swz128(row, by >> 4) | (by & 15), written out: the call compiled to a different
     * schedule, and this is the code the device runs were made with */
    return b * (BM * 128) + row * 128 + ((((by >> 4) ^ (row & 7)) << 4) | (by & 15));
}
/* Shared memory per epilogue: S stages; the output tile (RES_LN: the residual tile,
 * loaded by TMA beside the main loop, updated in place and stored back, then the quantized rows);
 * the reductions float [3][NWG][BM] + [2][BM] + [BM]; S + 1 mbarriers. Why the outputs go out by
 * TMA from shared memory: stored from the accumulator fragments, each warp store touched 8 rows
 * (8 partial sectors), and the stores of a tile took most of its epilogue (RES_LN 14–20 µs of a
 * 21–25 µs GEMM at batch 32, measured with ARB_SIDECAR_ROWGEMM_TRACE). RES_LN gives up a stage for
 * its fp32 tile. */
template <int EPI> struct lay {
    static constexpr int S = EPI == SC_RG_RES_LN ? 2 : 3;
    static constexpr int T_BYTES = BM * BN * (EPI == SC_RG_RES_LN ? 4 : EPI == SC_RG_F16 ? 2 : 1);
    static constexpr int X_OFF = S * STAGE, RED_OFF = X_OFF + T_BYTES;
    static constexpr int BAR_OFF = RED_OFF + (3 * NWG + 3) * BM * 4;
    static constexpr size_t SMEM = (size_t)BAR_OFF + (S + 1) * 8 + 1024;
    static_assert(SMEM <= 227 * 1024, "shared memory");
};

#if defined(ARB_HAVE_WGMMA)
/* The float at the same shared offset in CTA `rank` of this cluster. */
__device__ __forceinline__ float ld_cluster_f32(const float *p, unsigned rank) {
    float v;
    asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %1, %2;\nld.shared::cluster.f32 %0, [ra];\n}\n"
                 : "=f"(v)
                 : "r"(arb_smem_u32(p)), "r"(rank)
                 : "memory");
    return v;
}
__device__ __forceinline__ unsigned cluster_nranks() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
    return r;
}
#endif

/* The row kernel's element-wise roundings (sidecar.cu k_rowr): no contraction into FMAs. */
[[maybe_unused]] __device__ __forceinline__ float deq(int32_t q, float xs, float w) { return __fmul_rn((float)q, __fmul_rn(xs, w)); }
[[maybe_unused]] __device__ __forceinline__ signed char q1(float y, float inv) {
    return (signed char)(int)fminf(fmaxf(rintf(y * inv), -127.f), 127.f);
}

/* Sum (or max) of a row's values over the 4 lanes of a quad (same bits in every lane). */
[[maybe_unused]] __device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
[[maybe_unused]] __device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

template <int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_rowgemm(const __grid_constant__ CUtensorMap ma, const __grid_constant__ CUtensorMap mb,
              const __grid_constant__ CUtensorMap mx, const __grid_constant__ CUtensorMap mo, const sc_rowgemm_args a) {
#if defined(ARB_HAVE_WGMMA)
    using L = lay<EPI>;
    constexpr int S = L::S;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *smem = smem_raw + ((1024u - ((unsigned)__cvta_generic_to_shared(smem_raw) & 1023u)) & 1023u);
    uint64_t *full = reinterpret_cast<uint64_t *>(smem + L::BAR_OFF), *xbar = full + S;
    unsigned char *tile_s = smem + L::X_OFF; /* the output tile (tile_byte) */
    float *red_s = reinterpret_cast<float *>(smem + L::RED_OFF), *red_q = red_s + NWG * BM, *red_m = red_q + NWG * BM;
    float *row_m = red_m + NWG * BM;  /* [tile parity][BM] this block's row maxima, read by the cluster */
    float *amax_s = row_m + 2 * BM;   /* the cluster's row maxima */
    const unsigned nr = cluster_nranks();
    const int tid = threadIdx.x, wg = tid >> 7, wi = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int n0 = blockIdx.x * BN, nk = (a.K + KC - 1) / KC, mtiles = (a.M + BM - 1) / BM;
    /* persistent along M: this block's row tiles blockIdx.y, + gridDim.y, ...; its chunks are
     * numbered q = tile·nk + chunk across them, so the next tile's first chunks load while this
     * tile's epilogue runs */
    const int ntile = ((int)blockIdx.y < mtiles) ? (mtiles - 1 - (int)blockIdx.y) / (int)gridDim.y + 1 : 0;
    const int nq = ntile * nk;
    if (tid == 0) {
        for (int s = 0; s <= S; s++) arb_mbar_init(&full[s], 1); /* + xbar */
        arb_mbar_init_fence();
    }
    __syncthreads();
    /* ARB_SIDECAR_ROWGEMM_TRACE: thread 0's SM clock at the start, the first chunk's arrival, the
     * end of tile 0's main loop, the start of tile 1 (or the end), the end; and the tile count */
    long long *tr = a.trace && tid == 0 ? a.trace + (size_t)(blockIdx.y * gridDim.x + blockIdx.x) * 8 : nullptr;
    if (tr) tr[0] = clock64(), tr[5] = ntile;
    auto issue = [&](int q) { /* chunk q into stage q % S */
        const int ti = (int)blockIdx.y + (q / nk) * (int)gridDim.y, c = q % nk;
        /* tiles start at different K chunks (the sums are exact in any order), so that the blocks
         * of a wave do not all ask the L2 for the same weight lines at once */
        const int rot = ti % nk, kc = (c + rot < nk ? c + rot : c + rot - nk) * KC;
        unsigned char *sa = smem + (size_t)(q % S) * STAGE;
        uint64_t *bar = &full[q % S];
        arb_mbar_arrive_expect_tx(bar, STAGE);
        arb_tma_load_2d(sa, &ma, kc, ti * BM, bar);
#pragma unroll
        for (int i = 0; i < NWG; i++) arb_tma_load_2d(sa + A_BYTES + i * WB_BYTES, &mb, kc, n0 + i * WN, bar);
    };
    if (tid == 0)
        for (int q = 0; q < S && q < nq; q++) issue(q);
    for (int it = 0; it < ntile; it++) {
        if (tr && it == 1) tr[3] = clock64();
        const int m0 = ((int)blockIdx.y + it * (int)gridDim.y) * BM;
        if constexpr (EPI == SC_RG_RES_LN) /* the residual tile (once the previous tile's stores have read it) */
            if (tid == 0) {
                arb_bulk_wait_read<0>();
                arb_mbar_arrive_expect_tx(xbar, L::T_BYTES);
#pragma unroll
                for (int b = 0; b < BN / 32; b++) arb_tma_load_2d(tile_s + b * BM * 128, &mx, b * 32, m0, xbar);
            }
        int32_t acc[64];
#pragma unroll
        for (int i = 0; i < 64; i++) acc[i] = 0;
        for (int c = 0; c < nk; c++) {
            const int q = it * nk + c;
            const unsigned char *sa = smem + (size_t)(q % S) * STAGE, *sb = sa + A_BYTES + wg * WB_BYTES;
            arb_mbar_wait(&full[q % S], (unsigned)(q / S) & 1u);
            if (tr && q == 0) tr[1] = clock64();
            arb_wgmma_fence_acc(acc);
            arb_wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < KC / 32; ks++) arb_wgmma_m64n128k32(acc, arb_wgmma_desc(sa + ks * 32), arb_wgmma_desc(sb + ks * 32));
            arb_wgmma_commit();
            arb_wgmma_wait<0>();
            arb_wgmma_fence_acc(acc);
            __syncthreads(); /* every warpgroup is done with stage q % S */
            if (tid == 0 && q + S < nq) issue(q + S);
        }
        if (tr && it == 0) tr[2] = clock64();

        /* epilogue: rows ra, rb of this thread; y[4j + h] (h: 0, 1 row ra; 2, 3 row rb) */
        const int la = wi * 16 + g, lb = la + 8, ra = m0 + la, rb = m0 + lb;
        const bool va = ra < a.M, vb = rb < a.M;
        /* plain loads: xs may be the qs this kernel writes (after every reader of the row has read it) */
        const float xa = va ? a.xs[ra] : 0.f, xb = vb ? a.xs[rb] : 0.f;
        const int cbase = n0 + wg * WN + 2 * t4; /* column of y[4j] is cbase + 8j */
        /* element (row, column n0 + c) of the tile in shared memory, and the tile's TMA store */
        auto tf2 = [&](int row, int c) { return reinterpret_cast<float2 *>(tile_s + tile_byte(row, c, 4)); };
        auto store_tile = [&](const CUtensorMap *m, int esize) { /* thread 0, after fence + barrier */
            const int epb = 128 / esize;
            for (int b = 0; b < BN / epb; b++) arb_tma_store_2d(m, n0 + b * epb, m0, tile_s + b * BM * 128);
            arb_bulk_commit();
        };
        /* every thread's values into the tile (put(j, column): its pairs of column group j) once
         * the earlier stores have read it, then the tile's TMA store */
        auto emit = [&](const CUtensorMap *m, int esize, auto &&put) {
            if (tid == 0) arb_bulk_wait_read<0>();
            __syncthreads();
#pragma unroll
            for (int j = 0; j < 16; j++) put(j, cbase - n0 + 8 * j);
            arb_fence_proxy_async();
            __syncthreads();
            if (tid == 0) store_tile(m, esize); /* rows past M are not written */
        };
        float y[64];
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int c = cbase + 8 * j;
            const float2 w = __ldg(reinterpret_cast<const float2 *>(a.ws + c));
            const float2 b = a.bias ? __ldg(reinterpret_cast<const float2 *>(a.bias + c)) : make_float2(0.f, 0.f);
            y[4 * j + 0] = deq(acc[4 * j + 0], xa, w.x), y[4 * j + 1] = deq(acc[4 * j + 1], xa, w.y);
            y[4 * j + 2] = deq(acc[4 * j + 2], xb, w.x), y[4 * j + 3] = deq(acc[4 * j + 3], xb, w.y);
            if (a.bias) {
                y[4 * j + 0] = __fadd_rn(y[4 * j + 0], b.x), y[4 * j + 1] = __fadd_rn(y[4 * j + 1], b.y);
                y[4 * j + 2] = __fadd_rn(y[4 * j + 2], b.x), y[4 * j + 3] = __fadd_rn(y[4 * j + 3], b.y);
            }
        }
        if constexpr (EPI == SC_RG_F16) {
            emit(&mo, 2, [&](int j, int c) {
                *reinterpret_cast<__half2 *>(tile_s + tile_byte(la, c, 2)) = __floats2half2_rn(y[4 * j], y[4 * j + 1]);
                *reinterpret_cast<__half2 *>(tile_s + tile_byte(lb, c, 2)) = __floats2half2_rn(y[4 * j + 2], y[4 * j + 3]);
            });
            continue;
        }
        if constexpr (EPI == SC_RG_GELU_Q) {
#pragma unroll
            for (int i = 0; i < 64; i++) y[i] = sc_gelu(y[i]);
        }
        /* sum over the block's columns of row la / lb: quad, then the warpgroups in order */
        auto row_sum = [&](float sa_, float sb_, float *red, float &ta, float &tb) {
            sa_ = quad_sum(sa_), sb_ = quad_sum(sb_);
            if (t4 == 0) red[wg * BM + la] = sa_, red[wg * BM + lb] = sb_;
            __syncthreads();
            ta = red[la], tb = red[lb];
#pragma unroll
            for (int i = 1; i < NWG; i++) ta += red[i * BM + la], tb += red[i * BM + lb];
        };
        if constexpr (EPI == SC_RG_RES_LN) {
            float sa_ = 0.f, sb_ = 0.f;
            arb_mbar_wait(xbar, (unsigned)it & 1u); /* rows past M arrive as zeros */
            float2 xr[32];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int c = cbase - n0 + 8 * j;
                xr[2 * j] = *tf2(la, c), xr[2 * j + 1] = *tf2(lb, c);
            }
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int c = cbase + 8 * j;
                const float2 l = a.lam ? __ldg(reinterpret_cast<const float2 *>(a.lam + c)) : make_float2(1.f, 1.f);
                y[4 * j + 0] = __fadd_rn(xr[2 * j].x, __fmul_rn(l.x, y[4 * j + 0]));
                y[4 * j + 1] = __fadd_rn(xr[2 * j].y, __fmul_rn(l.y, y[4 * j + 1]));
                y[4 * j + 2] = __fadd_rn(xr[2 * j + 1].x, __fmul_rn(l.x, y[4 * j + 2]));
                y[4 * j + 3] = __fadd_rn(xr[2 * j + 1].y, __fmul_rn(l.y, y[4 * j + 3]));
                sa_ += y[4 * j + 0] + y[4 * j + 1], sb_ += y[4 * j + 2] + y[4 * j + 3];
            }
#pragma unroll
            for (int j = 0; j < 16; j++) { /* the new residual in place (each thread its own elements) */
                const int c = cbase - n0 + 8 * j;
                *tf2(la, c) = make_float2(y[4 * j + 0], y[4 * j + 1]), *tf2(lb, c) = make_float2(y[4 * j + 2], y[4 * j + 3]);
            }
            arb_fence_proxy_async();
            float mean_a, mean_b;
            row_sum(sa_, sb_, red_s, mean_a, mean_b); /* its barrier: the whole residual tile is written */
            if (tid == 0) store_tile(&mx, 4);
            mean_a /= (float)a.N, mean_b /= (float)a.N;
            sa_ = 0.f, sb_ = 0.f;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                float d;
                d = y[4 * j + 0] - mean_a, sa_ = __fmaf_rn(d, d, sa_);
                d = y[4 * j + 1] - mean_a, sa_ = __fmaf_rn(d, d, sa_);
                d = y[4 * j + 2] - mean_b, sb_ = __fmaf_rn(d, d, sb_);
                d = y[4 * j + 3] - mean_b, sb_ = __fmaf_rn(d, d, sb_);
            }
            float va_, vb_;
            row_sum(sa_, sb_, red_q, va_, vb_);
            const float inva = rsqrtf(va_ / (float)a.N + a.eps), invb = rsqrtf(vb_ / (float)a.N + a.eps);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int c = cbase + 8 * j;
                const float2 gm = __ldg(reinterpret_cast<const float2 *>(a.ln_g + c));
                const float2 bt = a.ln_b ? __ldg(reinterpret_cast<const float2 *>(a.ln_b + c)) : make_float2(0.f, 0.f);
                auto ln = [](float v, float mean, float inv, float gg, float bb) {
                    return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v, mean), inv), gg), bb);
                };
                y[4 * j + 0] = ln(y[4 * j + 0], mean_a, inva, gm.x, bt.x), y[4 * j + 1] = ln(y[4 * j + 1], mean_a, inva, gm.y, bt.y);
                y[4 * j + 2] = ln(y[4 * j + 2], mean_b, invb, gm.x, bt.x), y[4 * j + 3] = ln(y[4 * j + 3], mean_b, invb, gm.y, bt.y);
            }
            if (a.out) { /* the final LayerNorm: fp32 rows (after the residual's store) */
                emit(&mo, 4, [&](int j, int c) {
                    *tf2(la, c) = make_float2(y[4 * j], y[4 * j + 1]), *tf2(lb, c) = make_float2(y[4 * j + 2], y[4 * j + 3]);
                });
                continue;
            }
        }
        /* int8 row quantization: the row's absmax over the block, then over the cluster */
        float ma_ = 0.f, mb_ = 0.f;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            ma_ = fmaxf(ma_, fmaxf(fabsf(y[4 * j + 0]), fabsf(y[4 * j + 1])));
            mb_ = fmaxf(mb_, fmaxf(fabsf(y[4 * j + 2]), fabsf(y[4 * j + 3])));
        }
        ma_ = quad_max(ma_), mb_ = quad_max(mb_);
        if (t4 == 0) red_m[wg * BM + la] = ma_, red_m[wg * BM + lb] = mb_;
        if (tid == 0) arb_bulk_wait_read<0>(); /* the earlier stores have read the tile (before the barrier) */
        __syncthreads();
        float *rm = row_m + (it & 1) * BM; /* by tile parity: a peer may still read the previous tile's */
        if (tid < BM) {
            float m = red_m[tid];
#pragma unroll
            for (int i = 1; i < NWG; i++) m = fmaxf(m, red_m[i * BM + tid]);
            rm[tid] = m;
        }
        float amax_a, amax_b;
        if (nr > 1) {
            arb_cluster_sync(); /* every block of the cluster has its row maxima */
            if (tid < BM) {     /* all the peers' loads in flight at once */
                float v[8];
#pragma unroll
                for (int r = 0; r < 8; r++) v[r] = r < (int)nr ? ld_cluster_f32(rm + tid, (unsigned)r) : 0.f;
                float m = v[0];
#pragma unroll
                for (int r = 1; r < 8; r++) m = fmaxf(m, v[r]);
                amax_s[tid] = m;
            }
            __syncthreads();
            amax_a = amax_s[la], amax_b = amax_s[lb];
        } else {
            __syncthreads();
            amax_a = rm[la], amax_b = rm[lb];
        }
        const float inva = amax_a > 0.f ? 127.f / amax_a : 0.f, invb = amax_b > 0.f ? 127.f / amax_b : 0.f;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int c = cbase - n0 + 8 * j;
            *reinterpret_cast<char2 *>(tile_s + tile_byte(la, c, 1)) = make_char2(q1(y[4 * j], inva), q1(y[4 * j + 1], inva));
            *reinterpret_cast<char2 *>(tile_s + tile_byte(lb, c, 1)) = make_char2(q1(y[4 * j + 2], invb), q1(y[4 * j + 3], invb));
        }
        arb_fence_proxy_async();
        __syncthreads();
        if (tid == 0) store_tile(&mo, 1);
        if (blockIdx.x == 0 && wg == 0 && t4 == 0) {
            if (va) a.qs[ra] = amax_a / 127.f;
            if (vb) a.qs[rb] = amax_b / 127.f;
        }
        /* the next tile's reductions are rewritten after its main loop's barriers; its row maxima
         * go to the other parity, which every peer finished reading before this tile's cluster
         * barrier */
    }
    if (nr > 1) arb_cluster_sync(); /* no block leaves while another still reads its row maxima */
    if (tid == 0) arb_bulk_wait<0>(); /* the tile stores are complete */
    if (tr) {
        tr[4] = clock64();
        if (ntile < 2) tr[3] = tr[4];
    }
#endif
}

} // namespace

bool sc_rowgemm_ok(int epi, int N, int K) {
    if (!sc_sm90() || N <= 0 || N % BN || N / BN > 8 || K <= 0 || K % 16) return false;
    return epi == SC_RG_F16 || epi == SC_RG_GELU_Q || (epi == SC_RG_RES_LN && N == BN);
}

/* ARB_SIDECAR_ROWGEMM_TRACE=1 (diagnostics): each recorded call gets a buffer of per-block clocks;
 * at exit, per call, the blocks' mean cycles from start to the first chunk, to the end of tile 0's
 * main loop, its epilogue, and the whole block (the last replay's values). */
struct rg_trace {
    int epi, M, N, K, blocks;
    long long *d;
};
static std::vector<rg_trace> g_traces;
template <int EPI>
static arb_status launch(const sc_rowgemm_args &a, const CUtensorMap &ma, const CUtensorMap &mb, const CUtensorMap &mx,
                         const CUtensorMap &mo, cudaStream_t st) {
    static bool opted[64] = {false};
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64 || !opted[dev]) {
        ARB_CU(cudaFuncSetAttribute(k_rowgemm<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)lay<EPI>::SMEM));
        if (EPI == SC_RG_GELU_Q) ARB_CU(cudaFuncSetAttribute(k_rowgemm<EPI>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        if (dev >= 0 && dev < 64) opted[dev] = true;
    }
    const int sms = arb_cuda_sm_count();
    if (!sms) return arb_error(ARB_ERR_CUDA, "%s:%d: the device's SM count is unknown", __FILE__, __LINE__);
    /* one block per SM (shared memory, registers), persistent along M: gridDim.y ≤ SMs / nb, or
     * for clusters the clusters the device holds at once (a cluster stays within a GPC, so fewer
     * than SMs / nb: a grid sized by SMs alone ran some of them as a second wave) */
    const int nb = a.N / BN, mtiles = (a.M + BM - 1) / BM;
    int gy = std::max(1, std::min(mtiles, sms / nb));
    cudaLaunchConfig_t c = {};
    c.gridDim = dim3((unsigned)nb, (unsigned)gy);
    c.blockDim = dim3(THREADS);
    c.dynamicSmemBytes = lay<EPI>::SMEM;
    c.stream = st;
    cudaLaunchAttribute at[1];
    if (EPI == SC_RG_GELU_Q && nb > 1) { /* the row maxima are exchanged within a cluster */
        at[0].id = cudaLaunchAttributeClusterDimension;
        at[0].val.clusterDim.x = (unsigned)nb, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
        c.attrs = at, c.numAttrs = 1;
        static int held[64][9]; /* per device and cluster size: clusters resident at once */
        int *h = dev >= 0 && dev < 64 && nb <= 8 ? &held[dev][nb] : nullptr;
        if (h && !*h) {
            int n = 0;
            if (cudaOccupancyMaxActiveClusters(&n, k_rowgemm<EPI>, &c) != cudaSuccess || n < 1) {
                cudaGetLastError();
                n = std::max(1, sms / nb / 2);
            }
            *h = n;
        }
        gy = std::max(1, std::min(mtiles, h ? *h : 1));
        c.gridDim.y = (unsigned)gy;
    }
    if (a.trace) g_traces.back().blocks = (int)(c.gridDim.x * c.gridDim.y);
    ARB_CU(cudaLaunchKernelEx(&c, k_rowgemm<EPI>, ma, mb, mx, mo, a));
    ARB_CU_LAUNCH("k_rowgemm");
    return ARB_OK;
}

static void rg_trace_dump(void) {
    int khz = 0;
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0);
    const double us = khz > 0 ? 1e3 / khz : 1.0 / 1980.0;
    for (const rg_trace &t : g_traces) {
        std::vector<long long> h((size_t)t.blocks * 8);
        if (cudaMemcpy(h.data(), t.d, h.size() * sizeof(long long), cudaMemcpyDeviceToHost) != cudaSuccess) return;
        double s[4] = {0, 0, 0, 0}, tiles = 0;
        for (int b = 0; b < t.blocks; b++) {
            const long long *r = &h[(size_t)b * 8];
            s[0] += (double)(r[1] - r[0]), s[1] += (double)(r[2] - r[1]), s[2] += (double)(r[3] - r[2]), s[3] += (double)(r[4] - r[0]);
            tiles += (double)r[5];
        }
        fprintf(stderr, "rowgemm trace epi %d %dx%dx%d, %d blocks x %.1f tiles: first chunk %.2f us, tile 0 main loop %.2f, its epilogue %.2f, block %.2f\n",
                t.epi, t.M, t.N, t.K, t.blocks, tiles / t.blocks, s[0] / t.blocks * us, s[1] / t.blocks * us, s[2] / t.blocks * us,
                s[3] / t.blocks * us);
    }
    for (const rg_trace &t : g_traces) cudaFree(t.d); /* before the runtime's own exit handler: registered after it */
    g_traces.clear();
}

arb_status sc_rowgemm(const sc_rowgemm_args &a_in, cudaStream_t st) {
    sc_rowgemm_args a = a_in;
    a.trace = nullptr;
    static const char *te = getenv("ARB_SIDECAR_ROWGEMM_TRACE");
    if (te && te[0] == '1') {
        const int blocks = (a.N / BN) * ((a.M + BM - 1) / BM); /* at most: the grid is never larger */
        void *d = nullptr;
        /* The plan is usually being captured into a graph here: cudaMalloc is allowed only with
         * this thread's capture mode relaxed, and the zeroing goes on the stream (a synchronous
         * memset invalidated the capture), so every replay starts from zeros. */
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&mode);
        const cudaError_t ma = cudaMalloc(&d, (size_t)blocks * 8 * sizeof(long long));
        cudaThreadExchangeStreamCaptureMode(&mode);
        if (ma == cudaSuccess && cudaMemsetAsync(d, 0, (size_t)blocks * 8 * sizeof(long long), st) == cudaSuccess) {
            if (g_traces.empty()) atexit(rg_trace_dump);
            a.trace = (long long *)d;
            g_traces.push_back(rg_trace{a.epi, a.M, a.N, a.K, 0, a.trace});
        }
    }
    const bool al = ((uintptr_t)a.a | (uintptr_t)a.w) % 16 == 0 && a.lda % 16 == 0 && a.ldw % 16 == 0 &&
                    a.lda >= a.K && a.ldw >= a.K && (uintptr_t)a.ws % 8 == 0 && (uintptr_t)a.bias % 8 == 0;
    bool outs = false;
    switch (a.epi) {
    case SC_RG_F16: outs = a.outh && a.ldh >= a.N && a.ldh % 2 == 0; break;
    case SC_RG_GELU_Q: outs = a.q && a.qs && a.ldq == a.N; break;
    case SC_RG_RES_LN: outs = a.x && a.ln_g && (a.out || (a.q && a.qs && a.ldq == a.N)); break;
    }
    if (!sc_rowgemm_ok(a.epi, a.N, a.K) || a.M <= 0 || !al || !outs || !a.xs || !a.ws)
        return arb_error(ARB_ERR_INVALID_ARG, "sc_rowgemm: epilogue %d, %dx%dx%d, lda %d, ldw %d", a.epi, a.M, a.N, a.K,
                         a.lda, a.ldw);
    CUtensorMap ma, mb, mx, mo;
    if (!arb_tensor_map_2d(&ma, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.a, (uint64_t)a.K, (uint64_t)a.M, (uint64_t)a.lda, KC, BM,
                           CU_TENSOR_MAP_SWIZZLE_128B) ||
        !arb_tensor_map_2d(&mb, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.w, (uint64_t)a.K, (uint64_t)a.N, (uint64_t)a.ldw, KC, WN,
                           CU_TENSOR_MAP_SWIZZLE_128B))
        return arb_error(ARB_ERR_CUDA, "sc_rowgemm: the driver refused a tensor map");
    /* the residual (RES_LN) and the output, as 64-row × 128-byte boxes */
    auto omap = [&](CUtensorMap *m, CUtensorMapDataType t, const void *p, int ld, int esize) {
        return (uintptr_t)p % 16 == 0 && ((size_t)ld * esize) % 16 == 0 &&
               arb_tensor_map_2d(m, t, p, (uint64_t)a.N, (uint64_t)a.M, (uint64_t)ld * esize, (uint32_t)(128 / esize), BM,
                                 CU_TENSOR_MAP_SWIZZLE_128B);
    };
    bool mok;
    switch (a.epi) {
    case SC_RG_F16: mx = ma, mok = omap(&mo, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.outh, a.ldh, 2); break;
    case SC_RG_GELU_Q: mx = ma, mok = omap(&mo, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.q, a.ldq, 1); break;
    default:
        mok = omap(&mx, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, a.x, a.N, 4) &&
              (a.out ? omap(&mo, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, a.out, a.N, 4) : omap(&mo, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.q, a.ldq, 1));
    }
    if (!mok) return arb_error(ARB_ERR_INVALID_ARG, "sc_rowgemm: an output is not 16-byte aligned, or the driver refused its tensor map");
    switch (a.epi) {
    case SC_RG_F16: return launch<SC_RG_F16>(a, ma, mb, mx, mo, st);
    case SC_RG_GELU_Q: return launch<SC_RG_GELU_Q>(a, ma, mb, mx, mo, st);
    default: return launch<SC_RG_RES_LN>(a, ma, mb, mx, mo, st);
    }
}

namespace {
__global__ void k_gelu_probe(const float *x, float *y, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = sc_gelu(x[i]);
}
} // namespace

extern "C" arb_status sc_cu_gelu_probe(const float *x, float *y, size_t n) {
    if (!x || !y || n == 0 || n > ((size_t)1 << 28)) return arb_error(ARB_ERR_INVALID_ARG, "sc_cu_gelu_probe: n = %zu", n);
    float *d = nullptr;
    ARB_CU(cudaMalloc(&d, 2 * n * sizeof(float)));
    cudaError_t e = cudaMemcpy(d, x, n * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        k_gelu_probe<<<(unsigned)((n + 255) / 256), 256>>>(d, d + n, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(y, d + n, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) return arb_error(ARB_ERR_CUDA, "sc_cu_gelu_probe: %s", cudaGetErrorString(e));
    return ARB_OK;
}
