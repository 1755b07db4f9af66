/* CUDA ternary linear: forward (W2A8 GEMM on int8 tensor cores, GEMV at small batch), backward
 * dX, and the fused dW → T_accum update.
 *
 * One tiled GEMM core serves all three; they differ only in the A operand and the epilogue:
 *   forward  A = W (rows × cols), packed tile16: a row's 16 trits of a tile are one 32-bit word,
 *            and (word >> 2·tig) & 0x03030303 is exactly the 4 codes of an mma/wgmma A-fragment
 *            register; code − 1 is done bytewise without borrows.
 *   dX       A = Wᵀ (the packed tiles transposed by a small kernel), then the forward kernel.
 *   dW       A = hqᵀ, B = xqᵀ (int8, K = tokens); the epilogue applies the update rule to each
 *            accumulator element in registers (Gint is never stored) and packs the new trits
 *            back with two shuffles per row word.
 * Cores: k_gemm_ws (sm_90a, default on Hopper): persistent, warp-specialized (a TMA producer warp
 * feeding an mbarrier ring, two consumer warpgroups issuing wgmma m64n256k32; packed A decoded
 * straight into the wgmma register fragments), optionally 2-CTA clusters multicasting the token
 * tile; k_gemm_wg (sm_90a, cp.async, ARB_CUDA_GEMM=wg and the fallback for operands that are not
 * 16-byte aligned); k_gemm (mma.sync m16n8k32, any sm_80+). Integer results are exact, so any
 * tiling gives the CPU reference's state bit for bit. */
#include <cuda_runtime.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <type_traits>

#include "cuda/kernels.cuh"
#include "cuda/gemm_sm90.cuh"
#include "cuda/wgmma.cuh"

void arb_cuda_bwd_mark(const char *stage); /* ARB_CUDA_BWD_TRACE (below); ternary.cu marks the update's stages */

namespace {

/* mma.sync core: CTA 128×256×64, 4 stages, 8 warps of 64×64. */
constexpr int BM = 128, BN = 256, BK = 64, STAGES = 4, THREADS = 256;
constexpr int SB_BYTES = BN * BK;        /* int8 B stage */
constexpr int SA_I8_BYTES = BM * BK;     /* int8 A stage (dW) */
constexpr int SA_PK_BYTES = BM * BK / 4; /* packed A stage */
/* wgmma core: CTA 128×256×128, 4 stages, 2 warpgroups of 64×256 (m64n256k32). */
constexpr int WBK = 128;
template <int AM> constexpr int wg_stages() { return AM == 2 ? 4 : 5; } /* 192 KB / 213 KB of shared memory */
constexpr int W_B_BYTES = BN * WBK;        /* 32 KB */
constexpr int W_AI8_BYTES = BM * WBK;      /* 16 KB */
constexpr int W_APK_BYTES = BM * WBK / 4;  /* 4 KB */

enum AMode { A_PACKED_W = 0, A_INT8 = 2 };
enum Epi { EPI_I32 = 0, EPI_F32 = 1, EPI_DX = 2, EPI_UPDATE = 3, EPI_STATS = 4 };

struct GemmArgs {
    int M, N, K;              /* K: reduction length (bytes beyond kmax / tiles beyond tiles_c read as 0) */
    const uint8_t *a;         /* packed trits (tile16), or int8 (M × lda, K contiguous) */
    int64_t lda;              /* int8 A: row stride */
    int64_t tiles_r, tiles_c; /* packed A: its tile grid; update: W's tile grid */
    const int8_t *b;          /* int8, N rows × ldb, K contiguous */
    int64_t ldb;
    int kmax;                 /* B bytes at k ≥ kmax are zero */
    /* epilogue */
    void *out;
    int64_t ldo;
    const float *rs_n; /* per-N scale (xs for forward, dy row scale for dX) */
    const float *rs_m; /* per-M scale (row scale for forward) */
    /* update */
    uint8_t *trits;
    int8_t *accum;
    int64_t cols; /* W cols (row stride of accum) */
    const int32_t *mult;
    int shift, threshold, leak_shift;
    arb_rng_key key;
    unsigned long long *abs_g, *ge, *flips;
    /* split-K (warp-specialized core, EPI_I32 only): ksplit slices of kcb K-blocks each; slice s
     * writes its partial sums at out + s·split_stride (int32 elements) */
    int ksplit, kcb;
    int64_t split_stride;
    int epi_general; /* 1: the bounds-checked epilogue even for whole blocks (ARB_CUDA_EPI_GENERAL=1, A/B) */
};

__device__ __forceinline__ int swz(int row, int chunk) { return row * 64 + ((chunk ^ ((row >> 1) & 3)) << 4); }
/* The 128-byte swizzle the wgmma descriptors expect (tile 1024-byte aligned). */

/* The update epilogue's operands staged in shared memory by the warp-specialized core: T_accum of
 * the 128 × 256 tile (rows padded to EPI_LD bytes, no bank conflicts between a warp's 8 rows) and
 * the tile's trit row words (EPI_LDW words per row). */
constexpr int EPI_LD = 260, EPI_LDW = 17;
constexpr int EPI_STAGE_BYTES = 128 * EPI_LD + 128 * EPI_LDW * 4;

/* Accumulators: flat [MI][NJ][4] in mma C-fragment order (e: row g / g+8 × col 2tig / 2tig+1);
 * the wgmma m64nN accumulator of one warp has the same order with MI = 1, NJ = N/8.
 * sE/sW (update only, may be null): the staged tile whose origin is (tm0, tn0); the new T_accum
 * values go back into sE (the caller copies the tile out with whole-word stores). */
template <int EPI, int MI, int NJ>
__device__ __forceinline__ void epilogue(const GemmArgs &g, int32_t (&acc)[MI * NJ * 4], int row0, int col0,
                                         int lane, int8_t *sE = nullptr, const uint32_t *sW = nullptr,
                                         int tm0 = 0, int tn0 = 0, int64_t ooff = 0) {
    const int gq = lane >> 2, tig = lane & 3;
    if constexpr (MI == 1 && (EPI == EPI_I32 || EPI == EPI_F32 || EPI == EPI_DX)) {
        /* A warp's 16 × 8·NJ block wholly inside the output (every block of the training shapes):
         * no bounds checks, and two running row pointers instead of an address per element. At
         * K = 2048 this epilogue was ~24 % of the consumer warps' stall samples (ncu source
         * counters), mostly its address arithmetic, not the stores. */
        if (!g.epi_general && row0 + 16 <= g.M && col0 + NJ * 8 <= g.N) {
            using T = typename std::conditional<EPI == EPI_I32, int32_t, float>::type;
            const int ma = row0 + gq;
            float sm_a = 1.0f, sm_b = 1.0f;
            if constexpr (EPI == EPI_F32) {
                sm_a = __ldg(g.rs_m + ma);
                sm_b = __ldg(g.rs_m + ma + 8);
            }
            const int64_t ld = g.ldo;
            T *p0 = (T *)g.out + ooff + (int64_t)(col0 + 2 * tig) * ld + ma, *p1 = p0 + ld; /* columns na, nb */
#pragma unroll
            for (int nj = 0; nj < NJ; nj++) {
                const int32_t *v = &acc[nj * 4];
                if constexpr (EPI == EPI_I32) {
                    p0[0] = v[0], p1[0] = v[1], p0[8] = v[2], p1[8] = v[3];
                } else {
                    const int na = col0 + nj * 8 + 2 * tig;
                    const float sn_a = __ldg(g.rs_n + na), sn_b = __ldg(g.rs_n + na + 1);
                    if constexpr (EPI == EPI_F32) {
                        p0[0] = __fmul_rn(__fmul_rn((float)v[0], sn_a), sm_a);
                        p1[0] = __fmul_rn(__fmul_rn((float)v[1], sn_b), sm_a);
                        p0[8] = __fmul_rn(__fmul_rn((float)v[2], sn_a), sm_b);
                        p1[8] = __fmul_rn(__fmul_rn((float)v[3], sn_b), sm_b);
                    } else {
                        p0[0] = __fmul_rn((float)v[0], sn_a);
                        p1[0] = __fmul_rn((float)v[1], sn_b);
                        p0[8] = __fmul_rn((float)v[2], sn_a);
                        p1[8] = __fmul_rn((float)v[3], sn_b);
                    }
                }
                p0 += 8 * ld;
                p1 += 8 * ld;
            }
            return;
        }
    }
    if constexpr (EPI == EPI_I32 || EPI == EPI_F32 || EPI == EPI_DX) {
        /* Scales through the read-only path and ahead of the stores: a plain load after a store
         * through a pointer that may alias would wait out its full latency, once per element. */
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
            const int ma = row0 + mi * 16 + gq, mb = ma + 8;
            float sm_a = 1.0f, sm_b = 1.0f;
            if constexpr (EPI == EPI_F32) {
                sm_a = ma < g.M ? __ldg(g.rs_m + ma) : 0.0f;
                sm_b = mb < g.M ? __ldg(g.rs_m + mb) : 0.0f;
            }
#pragma unroll
            for (int nj = 0; nj < NJ; nj++) {
                const int na = col0 + nj * 8 + 2 * tig, nb = na + 1;
                float sn_a = 1.0f, sn_b = 1.0f;
                if constexpr (EPI != EPI_I32) {
                    sn_a = na < g.N ? __ldg(g.rs_n + na) : 0.0f;
                    sn_b = nb < g.N ? __ldg(g.rs_n + nb) : 0.0f;
                }
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int m = (e >> 1) ? mb : ma, n = (e & 1) ? nb : na;
                    if (m >= g.M || n >= g.N) continue;
                    const int32_t v = acc[(mi * NJ + nj) * 4 + e];
                    const float sn = (e & 1) ? sn_b : sn_a, smv = (e >> 1) ? sm_b : sm_a;
                    if constexpr (EPI == EPI_I32) {
                        ((int32_t *)g.out)[ooff + (int64_t)n * g.ldo + m] = v;
                    } else if constexpr (EPI == EPI_F32) {
                        ((float *)g.out)[(int64_t)n * g.ldo + m] = __fmul_rn(__fmul_rn((float)v, sn), smv);
                    } else {
                        ((float *)g.out)[(int64_t)n * g.ldo + m] = __fmul_rn((float)v, sn);
                    }
                }
            }
        }
    } else {
        /* M = W row o, N = W col i. Lane holds, per 16-col tile p and row (g or g+8), columns
         * 2tig, 2tig+1 (frag 2p) and 8+2tig, 9+2tig (frag 2p+1). */
        arb_upd_plan pl = {g.mult, g.shift, g.key, g.threshold, g.leak_shift};
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
            int64_t o[2];
            bool orow[2];
            int32_t m[2];
            long long sa[2] = {0, 0}, se[2] = {0, 0}, sf[2] = {0, 0};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                o[h] = row0 + mi * 16 + gq + 8 * h;
                orow[h] = o[h] < g.M;
                m[h] = (EPI == EPI_UPDATE && orow[h]) ? g.mult[o[h]] : 0;
            }
            /* Per tile: both rows' loads first (trit words, T_accum bytes), then the rule, then
             * the stores — byte stores may alias anything, so interleaving would serialize.
             * The tile loop is not unrolled (unrolled, 128 copies of the rule made ~18k PTX
             * instructions, far beyond the instruction cache); the tile's 8 accumulators are
             * picked out of the register array by compile-time selects instead. */
#pragma unroll 1
            for (int p = 0; p < NJ / 2; p++) {
                const int64_t tc = (col0 + p * 16) / 16;
                int32_t gsel[2][4];
#pragma unroll
                for (int k = 0; k < NJ / 2; k++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int32_t v = acc[(mi * NJ + 2 * k + (e >> 1)) * 4 + 2 * h + (e & 1)];
                            if (k == 0) gsel[h][e] = v;
                            else gsel[h][e] = p == k ? v : gsel[h][e];
                        }
                uint32_t word[2];
                int8_t av[2][4];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const bool ok = orow[h] && tc < g.tiles_c;
                    word[h] = (ok && EPI == EPI_UPDATE)
                                  ? (sW ? sW[(o[h] - tm0) * EPI_LDW + (tc - tn0 / 16)]
                                        : *(const uint32_t *)(g.trits + ((o[h] >> 4) * g.tiles_c + tc) * ARB_TILE_BYTES +
                                                              4 * (o[h] & 15)))
                                  : 0u;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int64_t i = tc * 16 + (e >> 1) * 8 + 2 * tig + (e & 1);
                        av[h][e] = (EPI == EPI_UPDATE && ok && i < g.cols)
                                       ? (sE ? sE[(o[h] - tm0) * EPI_LD + (i - tn0)] : g.accum[o[h] * g.cols + i])
                                       : (int8_t)0;
                    }
                }
                uint32_t part[2] = {0, 0};
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const bool ok = orow[h] && tc < g.tiles_c;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int cl = (e >> 1) * 8 + 2 * tig + (e & 1); /* column within the tile */
                        const int sh = 8 * (cl & 3) + 2 * (cl >> 2);
                        const int64_t i = tc * 16 + cl;
                        uint32_t code = (word[h] >> sh) & 3u;
                        if (ok && i < g.cols) {
                            const int32_t gi = gsel[h][e];
                            sa[h] += gi < 0 ? -(long long)gi : (long long)gi;
                            if constexpr (EPI == EPI_UPDATE) {
                                const int t = (int)code - 1;
                                se[h] += (long long)t * gi;
                                int8_t a = av[h][e];
                                int nt = arb_upd_weight(t, &a, gi, m[h], &pl,
                                                        arb_rand_u32(g.key, (uint32_t)(o[h] * g.cols + i)));
                                av[h][e] = a;
                                if (nt != t) sf[h]++;
                                code = (uint32_t)(nt + 1);
                            }
                        }
                        part[h] |= code << sh;
                    }
                }
                if constexpr (EPI == EPI_UPDATE) {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const bool ok = orow[h] && tc < g.tiles_c;
                        part[h] |= __shfl_xor_sync(0xffffffffu, part[h], 1);
                        part[h] |= __shfl_xor_sync(0xffffffffu, part[h], 2);
                        if (ok && tig == 0 && part[h] != word[h])
                            *(uint32_t *)(g.trits + ((o[h] >> 4) * g.tiles_c + tc) * ARB_TILE_BYTES + 4 * (o[h] & 15)) =
                                part[h];
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int64_t i = tc * 16 + (e >> 1) * 8 + 2 * tig + (e & 1);
                            if (ok && i < g.cols) {
                                if (sE) sE[(o[h] - tm0) * EPI_LD + (i - tn0)] = av[h][e];
                                else g.accum[o[h] * g.cols + i] = av[h][e];
                            }
                        }
                    }
                }
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                long long a = sa[h], b = se[h], c = sf[h];
                a += __shfl_xor_sync(0xffffffffu, a, 1);
                a += __shfl_xor_sync(0xffffffffu, a, 2);
                if constexpr (EPI == EPI_UPDATE) {
                    b += __shfl_xor_sync(0xffffffffu, b, 1);
                    b += __shfl_xor_sync(0xffffffffu, b, 2);
                    c += __shfl_xor_sync(0xffffffffu, c, 1);
                    c += __shfl_xor_sync(0xffffffffu, c, 2);
                }
                if (orow[h] && tig == 0) {
                    if (a) atomicAdd(&g.abs_g[o[h]], (unsigned long long)a);
                    if (EPI == EPI_UPDATE && b) atomicAdd(&g.ge[o[h]], (unsigned long long)b);
                    if (EPI == EPI_UPDATE && c) atomicAdd(&g.flips[o[h]], (unsigned long long)c);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- mma.sync core (any sm_80+) */

template <int AM>
__device__ __forceinline__ void load_stage(const GemmArgs &g, uint8_t *sa, uint8_t *sb, int m0, int n0, int k0) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int j = 0; j < (BN * BK / 16) / THREADS; j++) {
        int c = tid + j * THREADS, row = c >> 2, ch = c & 3;
        int n = n0 + row, k = k0 + ch * 16;
        bool ok = n < g.N && k < g.kmax;
        const int8_t *src = ok ? g.b + (int64_t)n * g.ldb + k : g.b;
        arb_cp_async16(sb + swz(row, ch), src, ok);
    }
    if constexpr (AM == A_INT8) {
#pragma unroll
        for (int j = 0; j < (BM * BK / 16) / THREADS; j++) {
            int c = tid + j * THREADS, row = c >> 2, ch = c & 3;
            int m = m0 + row, k = k0 + ch * 16;
            bool ok = m < g.M && k < g.K;
            const uint8_t *src = ok ? g.a + (int64_t)m * g.lda + k : g.a;
            arb_cp_async16(sa + swz(row, ch), src, ok);
        }
    } else if (tid < SA_PK_BYTES / 16) { /* [8 tile-rows (M)][4 tiles (K)] */
        int c = tid, q = c & 3, mt = c >> 4, kt = (c >> 2) & 3;
        int64_t tr = m0 / 16 + mt, tc = k0 / 16 + kt;
        bool ok = tr < g.tiles_r && tc < g.tiles_c;
        const uint8_t *src = ok ? g.a + (tr * g.tiles_c + tc) * ARB_TILE_BYTES + q * 16 : g.a;
        arb_cp_async16(sa + (mt * 4 + kt) * ARB_TILE_BYTES + q * 16, src, ok);
    }
}

/* A fragment of m-frag mi (16 rows) at k32 step ks. Packed: a row's 16 trits of a tile are one
 * word; (word >> 2·tig) & 0x03030303 holds the codes of columns 4tig..4tig+3. */
template <int AM>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint8_t *sa, int wm, int mi, int ks, int lane) {
    const int g = lane >> 2, tig = lane & 3;
    if constexpr (AM == A_INT8) {
        int row = wm * 64 + mi * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        int ch = 2 * ks + (lane >> 4);
        arb_ldmatrix_x4(a[0], a[1], a[2], a[3], sa + swz(row, ch));
    } else {
        const uint8_t *t0 = sa + ((wm * 4 + mi) * 4 + 2 * ks) * ARB_TILE_BYTES; /* tiles kt = 2ks, 2ks+1 */
        const uint8_t *t1 = t0 + ARB_TILE_BYTES;
        uint32_t w0 = *(const uint32_t *)(t0 + 4 * g), w1 = *(const uint32_t *)(t0 + 4 * (g + 8));
        uint32_t w2 = *(const uint32_t *)(t1 + 4 * g), w3 = *(const uint32_t *)(t1 + 4 * (g + 8));
        a[0] = arb_dev_codes_to_trits(w0 >> (2 * tig));
        a[1] = arb_dev_codes_to_trits(w1 >> (2 * tig));
        a[2] = arb_dev_codes_to_trits(w2 >> (2 * tig));
        a[3] = arb_dev_codes_to_trits(w3 >> (2 * tig));
    }
}

template <int AM, int EPI>
__global__ void __launch_bounds__(THREADS, 1) k_gemm(const GemmArgs g) {
    extern __shared__ __align__(128) uint8_t smem[];
    constexpr int SA = AM == A_INT8 ? SA_I8_BYTES : SA_PK_BYTES;
    uint8_t *sA = smem, *sB = smem + STAGES * SA;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp & 1, wn = warp >> 1;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int nk = (g.K + BK - 1) / BK;

    int32_t acc[4 * 8 * 4];
#pragma unroll
    for (int i = 0; i < 4 * 8 * 4; i++) acc[i] = 0;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nk) load_stage<AM>(g, sA + s * SA, sB + s * SB_BYTES, m0, n0, s * BK);
        arb_cp_async_commit();
    }
    for (int kb = 0; kb < nk; kb++) {
        arb_cp_async_wait<STAGES - 2>();
        __syncthreads();
        int pf = kb + STAGES - 1;
        if (pf < nk) load_stage<AM>(g, sA + (pf % STAGES) * SA, sB + (pf % STAGES) * SB_BYTES, m0, n0, pf * BK);
        arb_cp_async_commit();
        const uint8_t *a_s = sA + (kb % STAGES) * SA, *b_s = sB + (kb % STAGES) * SB_BYTES;
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            uint32_t af[4][4], bf[8][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) load_a<AM>(af[mi], a_s, wm, mi, ks, lane);
#pragma unroll
            for (int p = 0; p < 4; p++) {
                int row = wn * 64 + p * 16 + (lane & 7) + ((lane >> 4) << 3);
                int ch = 2 * ks + ((lane >> 3) & 1);
                arb_ldmatrix_x4(bf[2 * p][0], bf[2 * p][1], bf[2 * p + 1][0], bf[2 * p + 1][1], b_s + swz(row, ch));
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int nj = 0; nj < 8; nj++) {
                    int32_t *c = &acc[(mi * 8 + nj) * 4];
                    arb_mma_s8(c[0], c[1], c[2], c[3], af[mi], bf[nj][0], bf[nj][1]);
                }
        }
    }
    arb_cp_async_wait<0>();
    epilogue<EPI, 4, 8>(g, acc, m0 + wm * 64, n0 + wn * 64, lane);
}

/* ---------------------------------------------------------------- wgmma core (sm_90a) */

template <int AM>
__device__ __forceinline__ void wg_load(const GemmArgs &g, uint8_t *sa, uint8_t *sp, uint8_t *sb, int m0, int n0,
                                        int k0) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int j = 0; j < (BN * WBK / 16) / THREADS; j++) {
        int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
        int n = n0 + row, k = k0 + ch * 16;
        bool ok = n < g.N && k < g.kmax;
        arb_cp_async16(sb + arb_swz128(row, ch), ok ? g.b + (int64_t)n * g.ldb + k : g.b, ok);
    }
    if constexpr (AM == A_INT8) {
#pragma unroll
        for (int j = 0; j < (BM * WBK / 16) / THREADS; j++) {
            int c = tid + j * THREADS, row = c >> 3, ch = c & 7;
            int m = m0 + row, k = k0 + ch * 16;
            bool ok = m < g.M && k < g.K;
            arb_cp_async16(sa + arb_swz128(row, ch), ok ? g.a + (int64_t)m * g.lda + k : g.a, ok);
        }
    } else { /* packed: [8 tile-rows][8 tiles] × 64 B, one 16-byte quarter per thread */
        int c = tid, q = c & 3, mt = c >> 5, kt = (c >> 2) & 7;
        int64_t tr = m0 / 16 + mt, tc = k0 / 16 + kt;
        bool ok = tr < g.tiles_r && tc < g.tiles_c;
        arb_cp_async16(sp + (mt * 8 + kt) * ARB_TILE_BYTES + q * 16,
                       ok ? g.a + (tr * g.tiles_c + tc) * ARB_TILE_BYTES + q * 16 : g.a, ok);
    }
}

template <int AM, int EPI>
__global__ void __launch_bounds__(THREADS, 1) k_gemm_wg(const GemmArgs g) {
#if defined(ARB_HAVE_WGMMA)
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    constexpr int WST = wg_stages<AM>();
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *sB = smem;                                   /* WST × 32 KB */
    uint8_t *sA = sB + WST * W_B_BYTES;                   /* int8: WST × 16 KB; packed: 2 decode buffers */
    uint8_t *sP = sA + (AM == A_INT8 ? WST : 2) * W_AI8_BYTES; /* packed stages: WST × 4 KB */
    const int tid = threadIdx.x, warp = tid >> 5, wg = warp >> 2;
    /* Grouped rasterization: consecutive CTAs walk 16 M-tiles for each N-tile, so the ~132 CTAs
     * in flight share a few operand panels in L2 instead of streaming all of them. */
    int m0, n0;
    {
        const int nm = gridDim.y, nn = gridDim.x, id = blockIdx.y * nn + blockIdx.x, G = 16;
        const int first = id / (G * nn) * G, gs = min(nm - first, G), r = id % (G * nn);
        m0 = (first + r % gs) * BM;
        n0 = (r / gs) * BN;
    }
    const int nk = (g.K + WBK - 1) / WBK;

    int32_t acc[128];
#pragma unroll
    for (int i = 0; i < 128; i++) acc[i] = 0;

    /* Prefetch distance WST-2: stage kb+WST-2 reuses the buffers of kb-2, whose wgmma every
     * warpgroup has retired (wait_group 1 at the end of kb-1, then the barrier). */
#pragma unroll
    for (int s = 0; s < WST - 2; s++) {
        if (s < nk) wg_load<AM>(g, sA + s * W_AI8_BYTES, sP + s * W_APK_BYTES, sB + s * W_B_BYTES, m0, n0, s * WBK);
        arb_cp_async_commit();
    }
    for (int kb = 0; kb < nk; kb++) {
        const int st = kb % WST;
        arb_cp_async_wait<WST - 3>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* cp.async writes → wgmma reads */
        __syncthreads();
        const int pf = kb + WST - 2;
        if (pf < nk)
            wg_load<AM>(g, sA + (pf % WST) * W_AI8_BYTES, sP + (pf % WST) * W_APK_BYTES, sB + (pf % WST) * W_B_BYTES,
                        m0, n0, pf * WBK);
        arb_cp_async_commit();
        const uint8_t *a_t;
        if constexpr (AM == A_INT8) {
            a_t = sA + st * W_AI8_BYTES;
        } else {
            /* Each warpgroup decodes its own 64 rows of the stage's trits into int8 (one tile-row
             * word → 16 bytes) and syncs only its 128 threads: the two warpgroups stay decoupled.
             * Buffer kb&1 was last read by this warpgroup's wgmma of kb-2, retired by now. */
            uint8_t *buf = sA + (kb & 1) * W_AI8_BYTES;
            const uint8_t *pk = sP + st * W_APK_BYTES;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int c = tid + j * THREADS, row = c >> 3, kt = c & 7;
                uint32_t w = *(const uint32_t *)(pk + ((row >> 4) * 8 + kt) * ARB_TILE_BYTES + 4 * (row & 15));
                uint4 v = make_uint4(arb_dev_codes_to_trits(w), arb_dev_codes_to_trits(w >> 2),
                                     arb_dev_codes_to_trits(w >> 4), arb_dev_codes_to_trits(w >> 6));
                *(uint4 *)(buf + arb_swz128(row, kt)) = v;
            }
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            __syncthreads();
            a_t = buf;
        }
        const uint8_t *b_t = sB + st * W_B_BYTES;
        arb_wgmma_fence_acc(acc);
        arb_wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < WBK / 32; ks++)
            arb_wgmma_m64n256k32(acc, arb_wgmma_desc(a_t + wg * 64 * WBK + ks * 32), arb_wgmma_desc(b_t + ks * 32));
        arb_wgmma_commit();
        arb_wgmma_wait<1>(); /* group kb may still run; kb-1 has retired */
    }
    arb_wgmma_wait<0>();
    arb_wgmma_fence_acc(acc);
    arb_cp_async_wait<0>();
    epilogue<EPI, 1, 32>(g, acc, m0 + wg * 64 + (warp & 3) * 16, n0, tid & 31);
#endif
}

/* ---------------------------------------------------------------- warp-specialized wgmma core
 *
 * 384 threads: warpgroup 0 feeds, warpgroups 1 and 2 multiply (64×256 each of a 128×256 tile).
 * Warp 0 (one lane) issues the bulk tensor copies of each K-block into a WS_STAGES-deep ring
 * (full[s] counts the bytes); warps 1–3 decode packed trits into int8 swizzled tiles (dec[s]);
 * the consumers wait on dec[s] (or full[s] for int8 A), issue wgmma, and release stage s on
 * empty[s] once the wgmma that read it has retired. No CTA-wide barrier in the loop. The grid is
 * persistent: each CTA walks tiles with a stride, the feeders running ahead into the next tile
 * while the consumers store the last one. CL = 2: clusters of two CTAs on neighbouring M tiles
 * share the token tile, each loading half of it and multicasting it to both (half the L2 reads
 * of the larger operand); a stage is refilled only after both CTAs' consumers released it. */
constexpr int WS_THREADS = 384;
[[maybe_unused]] constexpr int WS_DEC_THREADS = 96; /* warps 1–3 */
/* Shared memory per kernel:
 *   packed A: 6 stages of 36 KB (B 32 KB + packed A 4 KB); the consumers decode A straight into
 *             wgmma register fragments, so no int8 copy of A exists in shared memory;
 *   int8 A:   4 stages of 48 KB; the update kernel gives one to its staged epilogue operands and
 *             releases each stage as soon as its wgmma retires (wait 0) to keep 2 stages ahead. */
template <int AM, int EPI> constexpr bool ws_staged_epi() { return AM == A_INT8 && EPI == EPI_UPDATE; }
/* TS (packed forward / dX with K ≤ 4096 by default): rows 0–63 of each output tile leave through a 64 KB swizzled
 * staging area and bulk tensor stores that drain while the next tile multiplies (4 stages then);
 * rows 64–127 are stored from registers as usual, meanwhile. */
constexpr int WS_OUT_BYTES = 256 * 32 * 4; /* one 32-row quarter of the tile */
template <int AM, int EPI, int TS = 0> constexpr int ws_stages() {
    return AM != A_INT8 ? (TS ? 4 : 6) : ws_staged_epi<AM, EPI>() ? 3 : 4;
}
template <int AM, int EPI, int TS = 0> constexpr int ws_smem() {
    return 1024 + ws_stages<AM, EPI, TS>() * (W_B_BYTES + (AM == A_INT8 ? W_AI8_BYTES : W_APK_BYTES)) +
           (TS ? 2 * WS_OUT_BYTES : 0) + (ws_staged_epi<AM, EPI>() ? EPI_STAGE_BYTES : 0) +
           (2 * ws_stages<AM, EPI, TS>() + 2) * 8;
}

#if defined(ARB_HAVE_WGMMA)
/* TS epilogue of consumer warpgroup 0 (rows 0–63 of the tile, quarters 0 and 1): its four warps
 * write their values (scaled as the kind asks) into the two swizzled 32 KB staging quarters at
 * once, one thread issues both bulk tensor stores, and the group goes on to the next tile while
 * the copy engine drains them; warpgroup 1 stores its rows from registers meanwhile, so only half
 * of the tile's bytes compete for the memory system while the tensor cores idle. (The first TS
 * version staged all four quarters through one 32 KB buffer in turn, each waiting for the copy
 * engine: 885 vs 1027 TOP/s at 16384×2048×2048.) The staging area is rewritten one tile later,
 * after the issuing thread has seen the engine finish reading it. The 128-byte swizzle (16-byte
 * chunk ^= n & 7) keeps a warp's 32 stores in distinct banks. */
template <int EPI>
__device__ __forceinline__ void store_half_tma(const GemmArgs &g, int32_t (&acc)[128], const CUtensorMap *map,
                                               uint8_t *sO, int m0, int n0, int wq, int lane, bool issuer) {
    const int gq = lane >> 2, tig = lane & 3, q = wq >> 1, half = wq & 1;
    uint8_t *buf = sO + q * WS_OUT_BYTES; /* [256 n][32 m] 4-byte values */
    /* n & 7 = 2tig + (e & 1) for every nj: each of the 4 values per nj has a fixed offset */
    int off[4];
    float smv[2] = {1.0f, 1.0f};
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int ml = half * 16 + gq + 8 * (e >> 1), n7 = 2 * tig + (e & 1);
        off[e] = n7 * 128 + (((ml >> 2) ^ n7) << 4) + (ml & 3) * 4;
    }
    if constexpr (EPI == EPI_F32) {
#pragma unroll
        for (int b = 0; b < 2; b++) {
            const int m = m0 + q * 32 + half * 16 + gq + 8 * b;
            smv[b] = m < g.M ? __ldg(g.rs_m + m) : 0.0f;
        }
    }
    if (issuer) arb_bulk_wait_read<0>(); /* the previous tile's stores have read the staging area */
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
#pragma unroll
    for (int nj = 0; nj < 32; nj++) {
        float sn[2] = {1.0f, 1.0f};
        if constexpr (EPI != EPI_I32) {
#pragma unroll
            for (int b = 0; b < 2; b++) {
                const int n = n0 + nj * 8 + 2 * tig + b;
                sn[b] = n < g.N ? __ldg(g.rs_n + n) : 0.0f;
            }
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int32_t v = acc[nj * 4 + e];
            if constexpr (EPI != EPI_I32) {
                float f = __fmul_rn((float)v, sn[e & 1]);
                if constexpr (EPI == EPI_F32) f = __fmul_rn(f, smv[e >> 1]);
                v = __float_as_int(f);
            }
            *(int32_t *)(buf + nj * 1024 + off[e]) = v;
        }
    }
    arb_fence_proxy_async();
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
    if (issuer) {
        arb_tma_store_2d(map, m0, n0, sO);
        arb_tma_store_2d(map, m0 + 32, n0, sO + WS_OUT_BYTES);
        arb_bulk_commit();
    }
}
#endif

template <int AM, int EPI, int CL, int TS>
__global__ void __launch_bounds__(WS_THREADS, 1)
    k_gemm_ws(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,
              const __grid_constant__ CUtensorMap tmO, const GemmArgs g) {
#if defined(ARB_HAVE_WGMMA)
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    constexpr int S = ws_stages<AM, EPI, TS>();
    constexpr bool STAGED = ws_staged_epi<AM, EPI>();
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *sB = smem;                       /* S × 32 KB, 128-byte swizzle */
    uint8_t *sA = sB + S * W_B_BYTES;         /* int8: S × 16 KB, 128-byte swizzle */
    uint8_t *sP = sA + (AM == A_INT8 ? S * W_AI8_BYTES : 0); /* packed: S × 4 KB [8 tile-rows][8 tiles][64 B] */
    int8_t *sE = (int8_t *)(sP + (AM == A_INT8 ? 0 : S * W_APK_BYTES)); /* staged update operands */
    uint32_t *sW = (uint32_t *)(sE + 128 * EPI_LD);
    uint8_t *sO = (uint8_t *)sE; /* TS: [256 n][32 m] 4-byte values, 128-byte swizzle (1024-aligned) */
    uint64_t *full = (uint64_t *)((uint8_t *)sE + (STAGED ? EPI_STAGE_BYTES : TS ? 2 * WS_OUT_BYTES : 0)), *empty = full + S;
    uint64_t *epi_full = empty + S, *epi_empty = epi_full + 1;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const unsigned rank = CL > 1 ? arb_cluster_rank() : 0u;
    if (tid == 0) {
        for (int s = 0; s < S; s++) {
            arb_mbar_init(&full[s], 1);
            arb_mbar_init(&empty[s], 8 * CL);
        }
        arb_mbar_init(epi_full, WS_DEC_THREADS);
        arb_mbar_init(epi_empty, 8);
        arb_mbar_init_fence();
    }
    if constexpr (CL > 1) arb_cluster_sync();
    else __syncthreads();

    const int nm = (g.M + BM - 1) / BM, nn = (g.N + BN - 1) / BN, npm = (nm + CL - 1) / CL;
    const int nk = (g.K + WBK - 1) / WBK;
    /* split-K: work item t is (tile t % tiles, K slice t / tiles) */
    const int nks = (EPI == EPI_I32 && g.ksplit > 1) ? g.ksplit : 1, kcb = nks > 1 ? g.kcb : nk;
    const int tiles = npm * nn, total = tiles * nks, cid = blockIdx.x / CL, ncl = gridDim.x / CL;
    auto k_range = [&](int t, int &kb0, int &kb1) {
        kb0 = (t / tiles) * kcb;
        kb1 = min(nk, kb0 + kcb);
    };
    /* tile t → (m0, n0): grouped rasterization, 16 M tiles (8 cluster pairs) per N column */
    auto tile_at = [&](int t, int &m0, int &n0) {
        t %= tiles;
        constexpr int G = 16 / CL;
        const int first = t / (G * nn) * G, gs = min(npm - first, G), r = t % (G * nn);
        m0 = ((first + r % gs) * CL + (int)rank) * BM;
        n0 = (r / gs) * BN;
    };
    constexpr unsigned TX = W_B_BYTES + (AM == A_INT8 ? W_AI8_BYTES : W_APK_BYTES);

    if (warp < 4) {
        arb_setmaxnreg_dec<56>();
        if (warp == 0) {
            if (lane == 0) { /* producer */
                int s = 0;
                unsigned ph = 0;
                for (int t = cid; t < total; t += ncl) {
                    int m0, n0, kb0, kb1;
                    tile_at(t, m0, n0);
                    k_range(t, kb0, kb1);
                    for (int kb = kb0; kb < kb1; kb++) {
                        arb_mbar_wait(&empty[s], ph ^ 1);
                        arb_mbar_arrive_expect_tx(&full[s], TX);
                        const int k0 = kb * WBK;
                        if constexpr (CL > 1)
                            arb_tma_load_2d_mc(sB + s * W_B_BYTES + rank * (W_B_BYTES / CL), &tmB, k0,
                                               n0 + (int)rank * (BN / CL), &full[s], (uint16_t)((1u << CL) - 1));
                        else
                            arb_tma_load_2d(sB + s * W_B_BYTES, &tmB, k0, n0, &full[s]);
                        if constexpr (AM == A_INT8) arb_tma_load_2d(sA + s * W_AI8_BYTES, &tmA, k0, m0, &full[s]);
                        else arb_tma_load_2d(sP + s * W_APK_BYTES, &tmA, k0, m0 / 16, &full[s]);
                        if (++s == S) { s = 0; ph ^= 1; }
                    }
                }
            }
        } else if (STAGED) {
            /* warps 1–3 stage the tile's T_accum and trit words while the consumers multiply: the
             * update epilogue then reads shared memory instead of making ~16 dependent trips to
             * global memory per thread. Loads are batched ahead of the stores (which may alias). */
            const int d = tid - 32;
            unsigned eph = 0;
            const bool words = (g.cols & 3) == 0;
            for (int t = cid; t < total; t += ncl) {
                int m0, n0;
                tile_at(t, m0, n0);
                arb_mbar_wait(epi_empty, eph ^ 1);
                constexpr int NW = 128 * 64, B = 8; /* 4-byte items of T_accum per tile, batch */
                for (int c0 = d; c0 < NW; c0 += B * WS_DEC_THREADS) {
                    uint32_t v[B];
#pragma unroll
                    for (int b = 0; b < B; b++) {
                        const int c = c0 + b * WS_DEC_THREADS, r = c >> 6, q = c & 63;
                        const int64_t o = m0 + r, i = n0 + 4 * q;
                        v[b] = 0;
                        if (c < NW && o < g.M) {
                            const int8_t *src = g.accum + o * g.cols + i;
                            if (words) {
                                if (i < g.cols) v[b] = *(const uint32_t *)src;
                            } else {
#pragma unroll
                                for (int j = 0; j < 4; j++)
                                    if (i + j < g.cols) v[b] |= (uint32_t)(uint8_t)src[j] << (8 * j);
                            }
                        }
                    }
#pragma unroll
                    for (int b = 0; b < B; b++) {
                        const int c = c0 + b * WS_DEC_THREADS;
                        if (c < NW) *(uint32_t *)(sE + (c >> 6) * EPI_LD + 4 * (c & 63)) = v[b];
                    }
                }
                constexpr int NT = 128 * 16; /* trit row words per tile */
                for (int c0 = d; c0 < NT; c0 += B * WS_DEC_THREADS) {
                    uint32_t v[B];
#pragma unroll
                    for (int b = 0; b < B; b++) {
                        const int c = c0 + b * WS_DEC_THREADS, r = c >> 4, j = c & 15;
                        const int64_t o = m0 + r, tc = n0 / 16 + j;
                        v[b] = (c < NT && o < g.M && tc < g.tiles_c)
                                   ? *(const uint32_t *)(g.trits + ((o >> 4) * g.tiles_c + tc) * ARB_TILE_BYTES +
                                                         4 * (o & 15))
                                   : 0u;
                    }
#pragma unroll
                    for (int b = 0; b < B; b++) {
                        const int c = c0 + b * WS_DEC_THREADS;
                        if (c < NT) sW[(c >> 4) * EPI_LDW + (c & 15)] = v[b];
                    }
                }
                arb_mbar_arrive(epi_full);
                eph ^= 1;
            }
        }
    } else {
        arb_setmaxnreg_inc<224>();
        const int cw = (warp - 4) >> 2; /* consumer warpgroup: rows cw·64.. of the tile */
        int s = 0;
        unsigned ph = 0;
        int32_t acc[128];
        unsigned eph = 0;
        /* releases stage rs (in both CTAs of a cluster) */
        auto release = [&](int rs) {
            if (lane != 0) return;
            if constexpr (CL > 1) {
#pragma unroll
                for (int r = 0; r < CL; r++) arb_mbar_arrive_cluster(&empty[rs], (unsigned)r);
            } else {
                arb_mbar_arrive(&empty[rs]);
            }
        };
        /* packed A: this warp's 16 rows (tile-row cw·4 + warp%4) of each stage; lane (gq, tig)
         * reads the row words of rows gq and gq+8, and (word >> 2·tig) & 0x03030303 are the codes
         * of columns 4tig..4tig+3: exactly the mma.m16n8k32 A fragment wgmma takes from registers. */
        const int gq = lane >> 2, tig = lane & 3;
        const int a_off = ((cw * 4 + (warp & 3)) * 8) * ARB_TILE_BYTES + 4 * gq;
        uint32_t af[2][4];
        for (int t = cid; t < total; t += ncl) {
            int m0, n0, kb0, kb1;
            tile_at(t, m0, n0);
            k_range(t, kb0, kb1);
#pragma unroll
            for (int i = 0; i < 128; i++) acc[i] = 0;
            int ps = -1;
            for (int kb = kb0; kb < kb1; kb++) {
                arb_mbar_wait(&full[s], ph);
                const uint8_t *b_t = sB + s * W_B_BYTES;
                arb_wgmma_fence_acc(acc);
                if constexpr (AM == A_INT8) {
                    const uint8_t *a_t = sA + s * W_AI8_BYTES + cw * 64 * WBK;
                    arb_wgmma_fence();
#pragma unroll
                    for (int ks = 0; ks < WBK / 32; ks++)
                        arb_wgmma_m64n256k32(acc, arb_wgmma_desc(a_t + ks * 32), arb_wgmma_desc(b_t + ks * 32));
                    arb_wgmma_commit();
                    if constexpr (STAGED) { /* 3 stages: release this one at once */
                        arb_wgmma_wait<0>();
                        release(s);
                    } else { /* the previous K-block's wgmma has retired: release its stage */
                        arb_wgmma_wait<1>();
                        if (ps >= 0) release(ps);
                        ps = s;
                    }
                } else {
                    /* one wgmma per k32 step, each with its own fragment registers (two sets in
                     * turn): decoding step ks+1 may not touch the registers step ks still reads */
                    const uint8_t *pk = sP + s * W_APK_BYTES + a_off;
#pragma unroll
                    for (int ks = 0; ks < WBK / 32; ks++) {
                        uint32_t (&a)[4] = af[ks & 1];
                        const uint8_t *t0 = pk + (2 * ks) * ARB_TILE_BYTES, *t1 = t0 + ARB_TILE_BYTES;
                        a[0] = arb_dev_codes_to_trits(*(const uint32_t *)t0 >> (2 * tig));
                        a[1] = arb_dev_codes_to_trits(*(const uint32_t *)(t0 + 32) >> (2 * tig));
                        a[2] = arb_dev_codes_to_trits(*(const uint32_t *)t1 >> (2 * tig));
                        a[3] = arb_dev_codes_to_trits(*(const uint32_t *)(t1 + 32) >> (2 * tig));
                        arb_wgmma_fence();
                        arb_wgmma_m64n256k32_rs(acc, a, arb_wgmma_desc(b_t + ks * 32));
                        arb_wgmma_commit();
                        arb_wgmma_wait<1>();
                        if (ks == 0 && ps >= 0) release(ps); /* the last step of kb-1 has retired */
                    }
                    ps = s;
                }
                if (++s == S) { s = 0; ph ^= 1; }
            }
            arb_wgmma_wait<0>();
            arb_wgmma_fence_acc(acc);
            if (ps >= 0) release(ps);
            if constexpr (STAGED) {
                arb_mbar_wait(epi_full, eph);
                epilogue<EPI, 1, 32>(g, acc, m0 + cw * 64 + (warp & 3) * 16, n0, lane, sE, sW, m0, n0);
                /* all 8 consumer warps wrote their new T_accum into sE: copy the tile out with
                 * coalesced whole words (a warp's byte stores hit 8 rows at once otherwise) */
                asm volatile("bar.sync 1, 256;\n" ::: "memory");
                const int ct = tid - 128;
                if ((g.cols & 3) == 0) {
                    for (int c = ct; c < 128 * 64; c += 256) {
                        const int r = c >> 6, q = c & 63;
                        const int64_t o = m0 + r, i = n0 + 4 * q;
                        if (o < g.M && i < g.cols)
                            *(uint32_t *)(g.accum + o * g.cols + i) = *(const uint32_t *)(sE + r * EPI_LD + 4 * q);
                    }
                } else {
                    for (int c = ct; c < 128 * 256; c += 256) {
                        const int r = c >> 8, j = c & 255;
                        const int64_t o = m0 + r, i = n0 + j;
                        if (o < g.M && i < g.cols) g.accum[o * g.cols + i] = sE[r * EPI_LD + j];
                    }
                }
                __syncwarp();
                if (lane == 0) arb_mbar_arrive(epi_empty);
                eph ^= 1;
            } else if constexpr (TS) {
                if (cw == 0) store_half_tma<EPI>(g, acc, &tmO, sO, m0, n0, warp & 3, lane, tid == 128);
                else epilogue<EPI, 1, 32>(g, acc, m0 + 64 + (warp & 3) * 16, n0, lane);
            } else {
                epilogue<EPI, 1, 32>(g, acc, m0 + cw * 64 + (warp & 3) * 16, n0, lane, nullptr, nullptr, 0, 0,
                                     (int64_t)(t / tiles) * g.split_stride);
            }
        }
        if constexpr (TS) {
            if (tid == 128) arb_bulk_wait<0>(); /* the last tile's stores are complete */
        }
    }
    /* a CTA leaves only when its partner can no longer write its shared memory or barriers */
    if constexpr (CL > 1) arb_cluster_sync();
#endif
}

/* Which core: the warp-specialized wgmma kernel where the card runs our sm_90a code (compute
 * capability 9.0), CTA clusters chosen per GEMM (CORE_WS); ARB_CUDA_GEMM=ws1 / ws2 force single
 * CTAs / 2-CTA clusters, =wg the older cp.async wgmma kernel, =mma the portable mma.sync one (also
 * used on other cards). */
enum Core { CORE_MMA = 0, CORE_WG = 1, CORE_WS1 = 2, CORE_WS2 = 3, CORE_WS = 4 };
Core gemm_core() {
    static int cc[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return CORE_MMA;
    if (!cc[dev]) {
        cudaDeviceProp p;
        cc[dev] = cudaGetDeviceProperties(&p, dev) == cudaSuccess ? p.major * 10 + p.minor : -1;
    }
    const char *e = getenv("ARB_CUDA_GEMM");
    if (cc[dev] != 90 || (e && !strcmp(e, "mma"))) return CORE_MMA;
    if (e && !strcmp(e, "wg")) return CORE_WG;
    if (e && !strcmp(e, "ws1")) return CORE_WS1;
    if (e && !strcmp(e, "ws2")) return CORE_WS2;
    return CORE_WS;
}

} // namespace

const char *arb_cuda_gemm_core(void) {
    switch (gemm_core()) {
    case CORE_WS: return "wgmma m64n256k32 (A from registers for trits), TMA + mbarrier ring, warp-specialized, persistent (sm_90a)";
    case CORE_WS2: return "wgmma m64n256k32, TMA + mbarrier ring, warp-specialized, 2-CTA multicast (sm_90a)";
    case CORE_WS1: return "wgmma m64n256k32, TMA + mbarrier ring, warp-specialized (sm_90a)";
    case CORE_WG: return "wgmma m64n256k32, cp.async (sm_90a)";
    default: return "mma.sync m16n8k32";
    }
}

namespace {

/* The tensor maps of the warp-specialized core; false (→ the cp.async core) when an operand's
 * address or row stride is not a multiple of 16 bytes or the driver refuses the map. */
bool ws_maps(const GemmArgs &g, int AM, int cl, CUtensorMap *ma, CUtensorMap *mb) {
    if (((uintptr_t)g.a | (uintptr_t)g.b) & 15 || g.ldb % 16 || (AM == A_INT8 && g.lda % 16)) return false;
    if (!arb_tensor_map_2d(mb, CU_TENSOR_MAP_DATA_TYPE_UINT8, g.b, (uint64_t)g.kmax, (uint64_t)g.N, (uint64_t)g.ldb,
                           WBK, BN / cl, CU_TENSOR_MAP_SWIZZLE_128B))
        return false;
    if (AM == A_INT8)
        return arb_tensor_map_2d(ma, CU_TENSOR_MAP_DATA_TYPE_UINT8, g.a, (uint64_t)g.K, (uint64_t)g.M,
                                 (uint64_t)g.lda, WBK, BM, CU_TENSOR_MAP_SWIZZLE_128B);
    /* packed: one row of 32-bit words per tile-row (16 words per tile), 8 tile-rows × 8 tiles */
    return arb_tensor_map_2d(ma, CU_TENSOR_MAP_DATA_TYPE_UINT32, g.a, (uint64_t)(g.tiles_c * 16), (uint64_t)g.tiles_r,
                             (uint64_t)(g.tiles_c * ARB_TILE_BYTES), WBK, BM / 16, CU_TENSOR_MAP_SWIZZLE_NONE);
}

template <int AM, int EPI, int CL, int TS = 0>
arb_status launch_ws(const GemmArgs &g, const CUtensorMap &ma, const CUtensorMap &mb, const CUtensorMap &mo,
                     const char *what) {
    constexpr int SMEM = ws_smem<AM, EPI, TS>();
    static int ctas[64]; /* resident CTAs per device (whole clusters), the persistent grid's cap */
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) return arb_error(ARB_ERR_CUDA, "%s: device %d", what, dev);
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = CL;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.blockDim = dim3(WS_THREADS);
    cfg.dynamicSmemBytes = SMEM;
    cfg.stream = arb_cuda_cur_stream();
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (!ctas[dev]) {
        ARB_CU(cudaFuncSetAttribute(k_gemm_ws<AM, EPI, CL, TS>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        if (CL > 1) ARB_CU(cudaFuncSetAttribute(k_gemm_ws<AM, EPI, CL, TS>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        const int sms = arb_cuda_sm_count();
        int nc = 0;
        if (!sms) return arb_error(ARB_ERR_CUDA, "%s:%d: %s: the device's SM count is unknown", __FILE__, __LINE__, what);
        cfg.gridDim = dim3((unsigned)(sms / CL * CL));
        if (cudaOccupancyMaxActiveClusters(&nc, k_gemm_ws<AM, EPI, CL, TS>, &cfg) != cudaSuccess || nc <= 0) {
            (void)cudaGetLastError();
            nc = sms / CL;
        }
        ctas[dev] = nc * CL;
    }
    const int64_t nm = (g.M + BM - 1) / BM, nn = (g.N + BN - 1) / BN,
                  pairs = (nm + CL - 1) / CL * nn * (EPI == EPI_I32 && g.ksplit > 1 ? g.ksplit : 1);
    int64_t cap = ctas[dev];
    if (const char *e = getenv("ARB_CUDA_GEMM_CTAS")) { /* tests: few CTAs, many tiles each */
        long v = strtol(e, nullptr, 10);
        if (v > 0 && v < cap) cap = (v + CL - 1) / CL * CL;
    }
    const int64_t grid = pairs * CL < cap ? pairs * CL : cap;
    if (grid <= 0) return ARB_OK;
    cfg.gridDim = dim3((unsigned)grid);
    ARB_CU(cudaLaunchKernelEx(&cfg, k_gemm_ws<AM, EPI, CL, TS>, ma, mb, mo, g));
    ARB_CU_LAUNCH(what);
    return ARB_OK;
}

template <int AM, int EPI> arb_status launch_gemm(const GemmArgs &g_in, const char *what) {
    static const int epi_general = [] { /* read once: it is on every GEMM launch */
        const char *e = getenv("ARB_CUDA_EPI_GENERAL");
        return e && !strcmp(e, "1") ? 1 : 0;
    }();
    GemmArgs g = g_in;
    g.epi_general = epi_general;
    const Core core = gemm_core();
    if (core == CORE_WS || core == CORE_WS1 || core == CORE_WS2) {
        CUtensorMap ma, mb;
        /* Measured on an H100 (dev/cuda/README.md): 2-CTA multicast of the token tile pays for int8
         * A with a long reduction (1335 → 1508 TOP/s at 8192³) and costs at K = 2048 (1186 → 910);
         * with trits decoded into registers, single CTAs were as fast at 8192³ and faster at the
         * training shapes (1250 vs 925 at 16384×2048×2048). */
        const int cl = core == CORE_WS2 ? 2 : core == CORE_WS1 ? 1 : (AM == A_INT8 && g.K >= 8192 && g.ksplit <= 1) ? 2 : 1;
        if (ws_maps(g, AM, cl, &ma, &mb)) {
            CUtensorMap mo = ma; /* unused unless TS */
            if constexpr (AM != A_INT8 && EPI != EPI_UPDATE && EPI != EPI_STATS) {
                /* Half of each output tile through bulk tensor stores that overlap the next tile
                 * (store_half_tma, 4 stages instead of 6), by default for the float epilogues
                 * (forward, dX) with K ≤ 4096. Measured on an H100 (ncu, 16384×2048×2048): forward
                 * 155.9 → 146.0 µs, dX 155.6 → 147.3; int32 out 138.3 → 139.4 (no gain, and the
                 * bench had 1192 vs 1266 TOP/s at 16384×2048×8192), so int32 stays on registers.
                 * ARB_CUDA_GEMM_TMASTORE=0 / 1: never / for every kind and K. */
                static const int ts_mode = [] {
                    const char *e = getenv("ARB_CUDA_GEMM_TMASTORE");
                    return e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : -1;
                }();
                const bool ts_on = ts_mode == 1 || (ts_mode < 0 && EPI != EPI_I32 && g.K <= 4096);
                if (ts_on && cl == 1 && g.ldo % 4 == 0 && !((uintptr_t)g.out & 15) &&
                    arb_tensor_map_2d(&mo, CU_TENSOR_MAP_DATA_TYPE_INT32, g.out, (uint64_t)g.M, (uint64_t)g.N,
                                      (uint64_t)g.ldo * 4, 32, 256, CU_TENSOR_MAP_SWIZZLE_128B))
                    return launch_ws<AM, EPI, 1, 1>(g, ma, mb, mo, what);
            }
            return cl == 2 ? launch_ws<AM, EPI, 2>(g, ma, mb, mo, what) : launch_ws<AM, EPI, 1>(g, ma, mb, mo, what);
        }
    }
    if constexpr (AM == A_INT8 && EPI == EPI_I32) {
        if (g.ksplit > 1) { /* the other cores: one launch per K slice (correct, not faster) */
            for (int sp = 0; sp < g.ksplit; sp++) {
                const int k0 = sp * g.kcb * WBK;
                if (k0 >= g.K) break;
                GemmArgs h = g;
                h.ksplit = 0;
                h.a = g.a + k0;
                h.b = g.b + k0;
                h.K = g.K - k0 < g.kcb * WBK ? g.K - k0 : g.kcb * WBK;
                h.kmax = g.kmax - k0 < 0 ? 0 : (g.kmax - k0 < h.K ? g.kmax - k0 : h.K);
                h.out = (int32_t *)g.out + (int64_t)sp * g.split_stride;
                ARB_TRY((launch_gemm<AM, EPI>(h, what)));
            }
            return ARB_OK;
        }
    }
    dim3 grid((unsigned)((g.N + BN - 1) / BN), (unsigned)((g.M + BM - 1) / BM));
    if (grid.y > 65535) return arb_error(ARB_ERR_SHAPE, "%s: M = %d is too large for one launch", what, g.M);
    if (core != CORE_MMA) {
        constexpr int WST = wg_stages<AM>();
        constexpr int SMEM = 1024 + WST * W_B_BYTES + (AM == A_INT8 ? WST * W_AI8_BYTES : 2 * W_AI8_BYTES + WST * W_APK_BYTES);
        static bool configured = false; /* the attribute is per function, the same on every device */
        if (!configured) {
            ARB_CU(cudaFuncSetAttribute(k_gemm_wg<AM, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
            configured = true;
        }
        k_gemm_wg<AM, EPI><<<grid, THREADS, SMEM, arb_cuda_cur_stream()>>>(g);
    } else {
        constexpr int SMEM = STAGES * ((AM == A_INT8 ? SA_I8_BYTES : SA_PK_BYTES) + SB_BYTES);
        static bool configured = false;
        if (!configured) {
            ARB_CU(cudaFuncSetAttribute(k_gemm<AM, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
            configured = true;
        }
        k_gemm<AM, EPI><<<grid, THREADS, SMEM, arb_cuda_cur_stream()>>>(g);
    }
    ARB_CU_LAUNCH(what);
    return ARB_OK;
}

/* Wᵀ in tile16 layout: tile (c, r) of the result is tile (r, c) of W transposed. dX = dy · W is
 * then the forward kernel on Wᵀ. One thread per output row word (16 per tile: the 16 threads of a
 * tile read its 64 bytes as 4 broadcast 16-byte loads, and store 64 contiguous bytes); one thread
 * per whole tile left ~2 warps per SM at the model's sizes, each 16 serial gathers long (6 µs). */
__global__ void __launch_bounds__(256) k_transpose_packed(const uint8_t *src, int64_t tr, int64_t tc, uint8_t *dst) {
    const int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (id >= tr * tc * 16) return;
    const int64_t tile = id >> 4, r = tile / tc, c = tile % tc;
    const int i = (int)(id & 15); /* output row i = input column i */
    const uint4 *in = (const uint4 *)(src + (r * tc + c) * ARB_TILE_BYTES);
    uint32_t w[16];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint4 v = __ldg(in + k);
        w[4 * k] = v.x;
        w[4 * k + 1] = v.y;
        w[4 * k + 2] = v.z;
        w[4 * k + 3] = v.w;
    }
    const int si = 8 * (i & 3) + 2 * (i >> 2);
    uint32_t o = 0;
#pragma unroll
    for (int j = 0; j < 16; j++) o |= ((w[j] >> si) & 3u) << (8 * (j & 3) + 2 * (j >> 2));
    ((uint32_t *)(dst + (c * tr + r) * ARB_TILE_BYTES))[i] = o;
}

/* ---- GEMV (n ≤ 4): one block per tile-row (16 outputs); each thread takes a 16-byte quarter
 * tile (4 rows × 16 k) per step: 4 row words × 4 dp4a on the raw codes, and Σx once per tile
 * for the code→trit correction (acc = Σ code·x − Σ x). */
template <int NT>
__global__ void __launch_bounds__(256) k_gemv(const uint8_t *trits, int64_t kt, int64_t rows, const int8_t *xq,
                                              int64_t ldx, int32_t *acc_out, float *y, const float *xs,
                                              const float *scale) {
    const int64_t rt = blockIdx.x;
    const int tid = threadIdx.x, q = tid & 3;
    const uint4 *base = (const uint4 *)(trits + rt * kt * ARB_TILE_BYTES);
    int32_t s[NT][4] = {}, xsum[NT] = {};
    const int64_t nq = kt * 4;
    int64_t i = tid;
#pragma unroll 1
    for (; i + 3 * 256 < nq; i += 4 * 256) {
        uint4 w[4];
#pragma unroll
        for (int u = 0; u < 4; u++) w[u] = __ldcs(base + i + u * 256); /* streamed once: don't keep in L1 */
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int64_t k = ((i + u * 256) >> 2) * 16;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                int4 x = __ldg((const int4 *)(xq + t * ldx + k));
                int xv[4] = {x.x, x.y, x.z, x.w};
                uint32_t wv[4] = {w[u].x, w[u].y, w[u].z, w[u].w};
#pragma unroll
                for (int r = 0; r < 4; r++)
#pragma unroll
                    for (int gg = 0; gg < 4; gg++) s[t][r] = __dp4a((int)((wv[r] >> (2 * gg)) & 0x03030303u), xv[gg], s[t][r]);
#pragma unroll
                for (int gg = 0; gg < 4; gg++) xsum[t] = __dp4a(0x01010101, xv[gg], xsum[t]);
            }
        }
    }
    for (; i < nq; i += 256) {
        uint4 w = __ldcs(base + i);
        int64_t k = (i >> 2) * 16;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            int4 x = __ldg((const int4 *)(xq + t * ldx + k));
            int xv[4] = {x.x, x.y, x.z, x.w};
            uint32_t wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int gg = 0; gg < 4; gg++) s[t][r] = __dp4a((int)((wv[r] >> (2 * gg)) & 0x03030303u), xv[gg], s[t][r]);
#pragma unroll
            for (int gg = 0; gg < 4; gg++) xsum[t] = __dp4a(0x01010101, xv[gg], xsum[t]);
        }
    }
    __shared__ int32_t red[8][NT][16];
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int32_t v = s[t][r] - xsum[t];
            v += __shfl_xor_sync(0xffffffffu, v, 4);
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            if ((tid & 31) < 4) red[tid >> 5][t][q * 4 + r] = v;
        }
    __syncthreads();
    if (tid < NT * 16) {
        int t = tid >> 4, r = tid & 15;
        int32_t v = 0;
#pragma unroll
        for (int wi = 0; wi < 8; wi++) v += red[wi][t][r];
        int64_t o = rt * 16 + r;
        if (o < rows) {
            if (acc_out) acc_out[t * rows + o] = v;
            else y[t * rows + o] = __fmul_rn(__fmul_rn((float)v, xs[t]), scale[o]);
        }
    }
}

arb_status launch_gemv(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc, float *y, const float *xs) {
    const int64_t kt = w->cols_pad / 16;
    for (int64_t t0 = 0; t0 < n; t0 += 4) {
        int64_t nt = n - t0 < 4 ? n - t0 : 4;
        const int8_t *x = xq + t0 * w->cols_pad;
        int32_t *a = acc ? acc + t0 * w->rows : nullptr;
        float *yy = y ? y + t0 * w->rows : nullptr;
        const float *s = xs ? xs + t0 : nullptr;
        unsigned grid = (unsigned)(w->rows_pad / 16);
        cudaStream_t st = arb_cuda_cur_stream();
        switch (nt) {
        case 1: k_gemv<1><<<grid, 256, 0, st>>>(w->trits, kt, w->rows, x, w->cols_pad, a, yy, s, w->scale); break;
        case 2: k_gemv<2><<<grid, 256, 0, st>>>(w->trits, kt, w->rows, x, w->cols_pad, a, yy, s, w->scale); break;
        case 3: k_gemv<3><<<grid, 256, 0, st>>>(w->trits, kt, w->rows, x, w->cols_pad, a, yy, s, w->scale); break;
        default: k_gemv<4><<<grid, 256, 0, st>>>(w->trits, kt, w->rows, x, w->cols_pad, a, yy, s, w->scale); break;
        }
        ARB_CU_LAUNCH("k_gemv");
    }
    return ARB_OK;
}

arb_status check_linear(const arb_ternary *w, int64_t n, const char *what) {
    ARB_TRY(arb_cuda_require_ternary(w, what));
    if (n < 0 || n > INT32_MAX / 2) return arb_error(ARB_ERR_SHAPE, "%s: n = %lld", what, (long long)n);
    if (w->rows > INT32_MAX / 2 || w->cols_pad > INT32_MAX / 2)
        return arb_error(ARB_ERR_SHAPE, "%s: (%lld, %lld) is too large for the CUDA kernels", what,
                         (long long)w->rows, (long long)w->cols);
    return ARB_OK;
}

GemmArgs forward_args(const arb_ternary *w, const int8_t *xq, int64_t n) {
    GemmArgs g;
    memset(&g, 0, sizeof g);
    g.M = (int)w->rows;
    g.N = (int)n;
    g.K = (int)w->cols_pad;
    g.a = w->trits;
    g.tiles_r = w->rows_pad / 16;
    g.tiles_c = w->cols_pad / 16;
    g.b = xq;
    g.ldb = w->cols_pad;
    g.kmax = (int)w->cols_pad;
    g.ldo = w->rows;
    return g;
}

/* Below this batch the GEMV (memory-bound, no tensor cores) is faster. */
constexpr int64_t GEMV_MAX_N = 4;

} // namespace

/* int8 × int8 → int32 through the same core (bench only: separates the trit decode's cost from
 * the GEMM's). out (n, m) = b (n, k) · a (m, k)ᵀ, both K-major; k a multiple of 16. */
arb_status arb_cuda_gemm_s8_i32(const int8_t *a, const int8_t *b, int64_t m, int64_t n, int64_t k, int32_t *out) {
    if (m <= 0 || n <= 0 || k <= 0 || m > INT32_MAX / 2 || n > INT32_MAX / 2 || k > INT32_MAX / 2 || k % 16)
        return arb_error(ARB_ERR_SHAPE, "arb_cuda_gemm_s8_i32: (%lld, %lld, %lld)", (long long)m, (long long)n,
                         (long long)k);
    GemmArgs g;
    memset(&g, 0, sizeof g);
    g.M = (int)m;
    g.N = (int)n;
    g.K = (int)k;
    g.a = (const uint8_t *)a;
    g.lda = k;
    g.b = b;
    g.ldb = k;
    g.kmax = (int)k;
    g.out = out;
    g.ldo = m;
    return launch_gemm<A_INT8, EPI_I32>(g, "k_gemm<s8,i32>");
}

extern "C" arb_status arb_cuda_ternary_matmul_i32(const arb_ternary *w, const int8_t *xq, int64_t n, int32_t *acc) {
    const char *what = "arb_cuda_ternary_matmul_i32";
    ARB_TRY(check_linear(w, n, what));
    if (n == 0) return ARB_OK;
    if (!xq || !acc) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    if (n <= GEMV_MAX_N) return launch_gemv(w, xq, n, acc, nullptr, nullptr);
    GemmArgs g = forward_args(w, xq, n);
    g.out = acc;
    return launch_gemm<A_PACKED_W, EPI_I32>(g, "k_gemm<fwd,i32>");
}

extern "C" arb_status arb_cuda_ternary_linear_forward(const arb_ternary *w, const int8_t *xq, const float *xs,
                                                      int64_t n, float *y) {
    const char *what = "arb_cuda_ternary_linear_forward";
    ARB_TRY(check_linear(w, n, what));
    if (n == 0) return ARB_OK;
    if (!xq || !xs || !y) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    if (n <= GEMV_MAX_N) return launch_gemv(w, xq, n, nullptr, y, xs);
    GemmArgs g = forward_args(w, xq, n);
    g.out = y;
    g.rs_n = xs;
    g.rs_m = w->scale;
    return launch_gemm<A_PACKED_W, EPI_F32>(g, "k_gemm<fwd,f32>");
}

/* ---------------------------------------------------------------- backward: dX and dW → update
 *
 * Both gradients quantize the same v = dy[t,o]·scale[o] (float, no FMA):
 *   dX: per token row t: amax_t = max_o |v|, q = clamp(floorf(v·(127/amax_t) + u), ±127),
 *       u = arb_rand_unit(key, t·rows + o), row scale amax_t/127; dx = (q · W) · scale_t.
 *   dW: h = v·xs[t], per column o: the CPU's arb_upd_quantize_grad (update_internal.h).
 * So one pass over dy finds both maxima, one more writes both int8 operands (q row-major for
 * dX, hqᵀ for the dW GEMM whose reduction runs over tokens). */

namespace {

/* Both passes give each thread 4 consecutive columns of a token row (one 16-byte load when rows is
 * a multiple of 4 and dy is 16-byte aligned, V4; else four scalar loads, for the tests' odd
 * shapes): a warp reads 512 contiguous bytes per token. Columns ≥ rows and tokens ≥ n read as 0. */
template <bool V4, bool FULL = false> /* FULL: the caller knows t < n and o + 3 < rows */
__device__ __forceinline__ float4 bwd_ld4(const float *dy, int64_t t, int64_t n, int64_t rows, int64_t o) {
    if (FULL) return __ldg((const float4 *)(dy + t * rows + o));
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (t >= n || o >= rows) return r;
    const float *p = dy + t * rows + o;
    if (V4) return __ldg((const float4 *)p);
    r.x = __ldg(p);
    if (o + 1 < rows) r.y = __ldg(p + 1);
    if (o + 2 < rows) r.z = __ldg(p + 2);
    if (o + 3 < rows) r.w = __ldg(p + 3);
    return r;
}
__device__ __forceinline__ unsigned bwd_absbits(float v) { return __float_as_uint(v) & 0x7fffffffu; }

/* Row maxima (dX) and column maxima (dW) of one 128-column × 128-token block: 8 warps of 16 tokens,
 * each lane 4 columns, all 16 loads issued first. Non-negative float bits order like unsigned
 * ints, so max on the bits is an exact max and atomicMax an order-free (deterministic) merge. A
 * token's row max is one warp reduction (REDUX) per token; column maxima meet across the 8 warps
 * in shared memory: one global atomic per token and per column for each block. NaN/inf: the
 * maxima include them (their bits exceed FLT_MAX's) and raise *bad; the call then fails, so the
 * maxima are left unspecified in that case. */
constexpr int AMAX_C = 128, AMAX_W = 8, AMAX_TPW = 16, AMAX_T = AMAX_W * AMAX_TPW; /* 128 tokens per block */
template <bool V4, bool ROW, bool COL>
__global__ void __launch_bounds__(AMAX_W * 32) k_bwd_amax(const float *dy, const float *xs, const float *scale, int64_t n,
                                                       int64_t rows, unsigned *row_amax, unsigned *col_amax, int *bad) {
    __shared__ __align__(16) unsigned s_col[AMAX_W][AMAX_C];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t o0 = blockIdx.x * (int64_t)AMAX_C, o = o0 + 4 * lane;
    /* token blocks last to first: dy's producer wrote it first to last, so its tail is still in
     * L2 (50 MB on the H100), and k_bwd_quant, which runs first to last, then starts on what this
     * pass read last. The maxima are order-free; only the traffic changes. */
    const int64_t t0 = (gridDim.y - 1 - blockIdx.y) * (int64_t)AMAX_T + warp * AMAX_TPW;
    float so[4];
#pragma unroll
    for (int c = 0; c < 4; c++) so[c] = o + c < rows ? __ldg(scale + o + c) : 0.0f;
    float4 v[AMAX_TPW];
    float x[AMAX_TPW];
#pragma unroll
    for (int j = 0; j < AMAX_TPW; j++) {
        v[j] = bwd_ld4<V4>(dy, t0 + j, n, rows, o);
        if (COL) x[j] = t0 + j < n ? __ldg(xs + t0 + j) : 0.0f;
    }
    unsigned cm[4] = {0u, 0u, 0u, 0u}, rm = 0u;
#pragma unroll
    for (int j = 0; j < AMAX_TPW; j++) {
        const float e[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
        unsigned r = 0u;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const float vv = __fmul_rn(e[c], so[c]);
            if (ROW) r = max(r, bwd_absbits(vv));
            if (COL) cm[c] = max(cm[c], bwd_absbits(__fmul_rn(vv, x[j])));
        }
        if (ROW) {
            r = __reduce_max_sync(0xffffffffu, r);
            if (lane == j) rm = r; /* lane j holds token j's maximum */
        }
    }
    if (ROW && lane < AMAX_TPW && t0 + lane < n && rm) atomicMax(row_amax + t0 + lane, rm);
    unsigned worst = rm;
    if (COL) {
        *(uint4 *)&s_col[warp][4 * lane] = make_uint4(cm[0], cm[1], cm[2], cm[3]);
        __syncthreads();
        if (threadIdx.x < AMAX_C) {
            unsigned m = 0u;
#pragma unroll
            for (int w = 0; w < AMAX_W; w++) m = max(m, s_col[w][threadIdx.x]);
            if (o0 + threadIdx.x < rows && m) atomicMax(col_amax + o0 + threadIdx.x, m);
            worst = max(worst, m);
        }
    }
    if (worst > 0x7f7fffffu) atomicOr(bad, 1);
}

/* arb_rand_unit(key, idx) without a conversion and with the shifts on the multiply pipe (the
 * integer ALU pipe, 64 lanes/clk/SM on sm_90, is this kernel's tightest; IMAD.HI by 2^k is a
 * right shift by 32−k). arb_rand_u32 ends with u = x ^ (x >> 16), which keeps x's top 16 bits, so
 * the 24 drawn bits k = u >> 8 are (x >> 8) ^ (x >> 24). With a = 1 + (k mod 2²³)·2⁻²³ (exact
 * float bits) and h = 0 / −0.5 for k's top bit set / clear: k·2⁻²⁴ = 0.5·a + h, exact, so one
 * fma gives it (checked against arb_rand_unit for every 24-bit draw by dev/cuda/emu_bwd_quant.sh). */
__device__ __forceinline__ float bwd_unit(uint32_t idx, uint32_t k0c, uint32_t k1) {
    uint32_t x = idx * 0x9E3779B1u + k0c; /* k0c: the key's k0 + c·0x9E3779B1 for index idx + c */
    x ^= __umulhi(x, 1u << 16);
    x *= 0x7FEB352Du;
    x ^= __umulhi(x, 1u << 17) ^ k1;
    x *= 0x846CA68Bu;
    const float a = __uint_as_float((__umulhi(x, 1u << 24) ^ __umulhi(x, 1u << 8)) | 0x3F800000u);
    const float h = __uint_as_float(0xBF000000u - __umulhi(x, 2u) * 0xBF000000u); /* top bit: +0, else −0.5 */
    return __fmaf_rn(a, 0.5f, h);
}
/* floor(t) in the low 16 bits, without the conversion pipe: for |t| < 2²², t + 1.5·2²³ rounded
 * down is floor(t) + 1.5·2²³ (ulp 1 there), whose bits are 0x4B400000 + floor(t). EXACT (a block
 * whose 127/amax overflowed to inf: t may be ±inf or NaN) is the CPU's arb_ops_q8(floorf(t)). */
template <bool EXACT>
__device__ __forceinline__ uint32_t bwd_floor16(float t) {
    if (!EXACT) return __float_as_uint(__fadd_rd(t, 12582912.0f));
    if (t != t) return 0u;
    return (uint32_t)(int)fminf(fmaxf(floorf(t), -127.0f), 127.0f);
}
/* Four floors (low 16 bits each) → clamp to ±127 on int16 pairs (VIMNMX.S16x2) → 4 int8 bytes. */
__device__ __forceinline__ uint32_t bwd_pack4(uint32_t b0, uint32_t b1, uint32_t b2, uint32_t b3) {
    uint32_t lo = __byte_perm(b0, b1, 0x5410), hi = __byte_perm(b2, b3, 0x5410);
    lo = __vmins2(__vmaxs2(lo, 0xFF81FF81u), 0x007F007Fu);
    hi = __vmins2(__vmaxs2(hi, 0xFF81FF81u), 0x007F007Fu);
    return __byte_perm(lo, hi, 0x6420);
}

/* dy into shared memory without registers: cp.async (LDGSTS) of the lane's own 16 bytes,
 * zero-filled outside dy. Each lane reads back only what it copied itself, so its own wait_group
 * orders the two (no barrier). Without __CUDA_ARCH__ (the host pass, and the CPU emulation in
 * dev/cuda/emu_bwd_quant.sh) a plain copy. */
__device__ __forceinline__ void bwd_cp16(float4 *dst, const float *src, bool in) {
#if defined(__CUDA_ARCH__)
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(in ? 16 : 0) : "memory");
#else
    *dst = in ? *(const float4 *)src : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
}
__device__ __forceinline__ void bwd_cp_commit() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void bwd_cp_wait() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* Quantization: 128 columns × 128 tokens per block, 4 warps of 32 tokens, each lane 4 columns. dy
 * is read once for both outputs: q (n, ldq) row-major for dX — 4 bytes per lane and token, a warp
 * writes 128 contiguous bytes — and hqᵀ (rows, ldt) for dW — the lane packs 16 tokens of each of
 * its columns into one 16-byte store (two pieces per warp: whole 32-byte sectors). Columns
 * rows..ldq-1 of q and tokens n..ldt-1 of hqᵀ come out as zeros (they read v = 0, and
 * floor(0·inv + u) = 0 for u in [0, 1); likewise for an all-zero row or column, inv = 0).
 * V4: dy streams through a per-warp ring of QS groups of 4 tokens (cp.async, QS − 1 groups in
 * flight while one is computed): the register-prefetch version held 12 warps/SM at 141 registers
 * and reached only 1.25 TB/s (ncu, 153 µs at 16384×2048×2048); the dX-only instance, at 20
 * warps/SM, 2.4. */
constexpr int QC = 128, QW = 4, QTW = 32, QTB = QW * QTW, QG = 4, QS = 3;
static_assert(QC == QW * 32 && QTB == QW * 32, "the prologue gives each thread one column and one token");
static_assert(QTW % 16 == 0, "whole 16-token hqT pieces per warp");
/* One group of 4 tokens (t .. t+3, block-local tl): q rows and hqᵀ word w of each column.
 * MODE bit 1: q for dX, bit 2: hqᵀ for dW. FULL: the block's tile lies inside dy (no checks). */
template <int MODE, bool EXACT, bool FULL>
__device__ __forceinline__ void bwd_quant_group(const float4 (&v)[QG], int tl, int64_t t, int64_t n, int64_t o,
                                                uint32_t idx, uint32_t rows, const float *s_ri, const float *s_xs,
                                                const float (&sov)[4], const float (&civ)[4],
                                                const uint32_t (&kxc)[4], uint32_t kx1, int8_t *qt, uint32_t ldq,
                                                const uint32_t (&kgc)[4], uint32_t kg1, uint32_t (&hw)[4][4],
                                                int w) { /* qt: q's row t at column o */
    constexpr bool DX = MODE & 1, DW = (MODE & 2) != 0;
    float ri[QG], xv[QG];
    if (DX) *(float4 *)ri = *(const float4 *)&s_ri[tl];
    if (DW) *(float4 *)xv = *(const float4 *)&s_xs[tl];
    uint32_t g[4][QG]; /* [column][token] */
#pragma unroll
    for (int j = 0; j < QG; j++) {
        const float e[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
        /* token j's index (wraps mod 2^32, as on the CPU), opaque to the compiler: otherwise it
         * strength-reduces every element's idx·C into ALU adds (and computed some twice) instead
         * of one multiply-add per element on the FMA pipe */
        uint32_t id = idx + (uint32_t)j * rows;
        asm volatile("" : "+r"(id));
        uint32_t b[4];
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const float vv = __fmul_rn(e[c], sov[c]);
            if (DX) b[c] = bwd_floor16<EXACT>(__fadd_rn(__fmul_rn(vv, ri[j]), bwd_unit(id, kxc[c], kx1)));
            if (DW)
                g[c][j] = bwd_floor16<EXACT>(
                    __fadd_rn(__fmul_rn(__fmul_rn(vv, xv[j]), civ[c]), bwd_unit(id, kgc[c], kg1)));
        }
        if (DX && (FULL || (t + j < n && o < ldq))) *(uint32_t *)(qt + j * ldq) = bwd_pack4(b[0], b[1], b[2], b[3]);
    }
    if (DW) {
#pragma unroll
        for (int c = 0; c < 4; c++) hw[c][w] = bwd_pack4(g[c][0], g[c][1], g[c][2], g[c][3]);
    }
}
/* hqᵀ staging: the block's 128 rows (columns o) × 128 tokens, 16-byte chunk k of row r at chunk
 * k ^ ((r >> 2) & 7): the 8 lanes of a store phase (rows 4l + c) hit 8 different chunks, and the
 * 8 lanes reading one row in the write-out too. */
__device__ __forceinline__ uint4 *bwd_hq_chunk(uint4 *s_hq, int r, int k) { return s_hq + r * 8 + (k ^ ((r >> 2) & 7)); }
template <int MODE, bool V4, bool EXACT, bool FULL>
__device__ __forceinline__ void bwd_quant_tile(const float *dy, int64_t n, int64_t rows, int64_t o, int64_t tw, int tl,
                                               const float *s_ri, const float *s_xs, float4 (*ring)[QG][32],
                                               float4 so, float4 ci, arb_rng_key kx, int8_t *q, int64_t ldq,
                                               arb_rng_key kg, uint4 *s_hq) {
    constexpr bool DW = (MODE & 2) != 0;
    constexpr int NG = QTW / QG; /* groups per warp */
    const int lane = threadIdx.x & 31;
    const float sov[4] = {so.x, so.y, so.z, so.w}, civ[4] = {ci.x, ci.y, ci.z, ci.w};
    uint32_t kxc[4], kgc[4];
#pragma unroll
    for (int c = 0; c < 4; c++) {
        kxc[c] = kx.k0 + (uint32_t)c * 0x9E3779B1u;
        kgc[c] = kg.k0 + (uint32_t)c * 0x9E3779B1u;
    }
    /* 32-bit offsets from the warp's first token (launch_bwd_quant refuses QTW·rows or QTW·ldq ≥ 2³¹) */
    const float *dyw = V4 ? dy + tw * rows + o : dy;
    int8_t *qw = (MODE & 1) ? q + tw * ldq + o : q;
    const uint32_t rows32 = (uint32_t)rows, ldq32 = (uint32_t)ldq;
    int slot_in = 0, slot_out = 0; /* ring slots: next to fill, next to compute */
    auto issue = [&](int grp) { /* group grp's 4 tokens into the ring (an empty group past the end) */
        if (grp < NG) {
#pragma unroll
            for (int k = 0; k < QG; k++) {
                const int tk = QG * grp + k;
                const bool in = FULL || (tw + tk < n && o < rows);
                bwd_cp16(&ring[slot_in][k][lane], in ? dyw + (uint32_t)tk * rows32 : dy, in);
            }
        }
        bwd_cp_commit();
        slot_in = slot_in + 1 == QS ? 0 : slot_in + 1;
    };
    if (V4) {
#pragma unroll
        for (int grp = 0; grp < QS - 1; grp++) issue(grp);
    }
#pragma unroll 1
    for (int piece = 0; piece < QTW / 16; piece++) { /* 16 tokens: one hqᵀ store per column */
        const int64_t t16 = tw + 16 * piece;
        uint32_t hw[4][4];
#pragma unroll
        for (int w = 0; w < 16 / QG; w++) {
            const int grp = piece * (16 / QG) + w;
            const int64_t t = t16 + QG * w;
            float4 v[QG];
            if (V4) {
                issue(grp + QS - 1);
                bwd_cp_wait<QS - 1>(); /* all but the QS − 1 newest groups are in: group grp is */
#pragma unroll
                for (int k = 0; k < QG; k++) v[k] = ring[slot_out][k][lane];
                slot_out = slot_out + 1 == QS ? 0 : slot_out + 1;
            } else {
#pragma unroll
                for (int k = 0; k < QG; k++) v[k] = bwd_ld4<false>(dy, t + k, n, rows, o);
            }
            bwd_quant_group<MODE, EXACT, FULL>(v, tl + 16 * piece + QG * w, t, n, o, (uint32_t)(t * rows + o),
                                               rows32, s_ri, s_xs, sov, civ, kxc, kx.k1,
                                               qw + (uint32_t)(16 * piece + QG * w) * ldq32, ldq32, kgc, kg.k1, hw, w);
        }
        if (DW) {
#pragma unroll
            for (int c = 0; c < 4; c++)
                *bwd_hq_chunk(s_hq, 4 * lane + c, (tl + 16 * piece) >> 4) = make_uint4(hw[c][0], hw[c][1], hw[c][2], hw[c][3]);
        }
    }
}
template <int MODE, bool V4> /* ≤ 96 registers: 5 blocks (20 warps, 5 × 42 KB shared) per SM */
__global__ void __launch_bounds__(QW * 32, 5) k_bwd_quant(const float *dy, const float *xs, const float *scale, int64_t n,
                                                    int64_t rows, const unsigned *row_amax, arb_rng_key kx, int8_t *q,
                                                    int64_t ldq, float *qs, const unsigned *col_amax, arb_rng_key kg,
                                                    int8_t *hqt, int64_t ldt) {
    constexpr bool DX = MODE & 1, DW = (MODE & 2) != 0;
    __shared__ __align__(16) float s_ri[QTB], s_xs[QTB], s_so[QC], s_ci[QC];
    __shared__ __align__(16) float4 s_ring[V4 ? QW : 1][QS][QG][32]; /* 24 KB for V4 */
    __shared__ __align__(16) uint4 s_hq[DW ? QC * QTB / 16 : 1];      /* 16 KB: hqᵀ tile, whole lines out */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t o0 = blockIdx.x * (int64_t)QC, tb = blockIdx.y * (int64_t)QTB;
    int inf = 0; /* a 127/amax overflowed (amax < 127/FLT_MAX): this block takes the CPU's exact path */
    {
        const int64_t t = tb + tid, oc = o0 + tid;
        float ri = 0.0f, xv = 0.0f, ci = 0.0f;
        if (DX) {
            const float ra = t < n ? __uint_as_float(row_amax[t]) : 0.0f;
            ri = ra > 0.0f ? __fdiv_rn(127.0f, ra) : 0.0f;
            if (qs && blockIdx.x == 0 && t < n) qs[t] = __fdiv_rn(ra, 127.0f);
        }
        if (DW) {
            xv = t < n ? __ldg(xs + t) : 0.0f;
            const float ca = oc < rows ? __uint_as_float(col_amax[oc]) : 0.0f;
            ci = ca > 0.0f ? __fdiv_rn(127.0f, ca) : 0.0f;
        }
        s_ri[tid] = ri;
        s_xs[tid] = xv;
        s_ci[tid] = ci;
        s_so[tid] = oc < rows ? __ldg(scale + oc) : 0.0f;
        inf = ri == INFINITY || ci == INFINITY;
    }
    inf = __syncthreads_or(inf);
    const int64_t o = o0 + 4 * lane, tw = tb + warp * QTW;
    const float4 so = *(const float4 *)&s_so[4 * lane], ci = *(const float4 *)&s_ci[4 * lane];
    float4 (*ring)[QG][32] = s_ring[V4 ? warp : 0];
    const bool full = V4 && tb + QTB <= n && o0 + QC <= rows;
    if (inf)
        bwd_quant_tile<MODE, V4, true, false>(dy, n, rows, o, tw, warp * QTW, s_ri, s_xs, ring, so, ci, kx, q, ldq, kg,
                                              s_hq);
    else if (full)
        bwd_quant_tile<MODE, V4, false, true>(dy, n, rows, o, tw, warp * QTW, s_ri, s_xs, ring, so, ci, kx, q, ldq, kg,
                                              s_hq);
    else
        bwd_quant_tile<MODE, V4, false, false>(dy, n, rows, o, tw, warp * QTW, s_ri, s_xs, ring, so, ci, kx, q, ldq,
                                               kg, s_hq);
    if (!DW) return;
    /* hqᵀ out in whole 128-byte lines: 8 lanes per row, a warp 4 rows per store (16-byte pieces of
     * 32 rows per store instruction cost ~40 µs at 16384×2048×2048: the update-only instance ran
     * at 110 µs against 74 for dX only, same instruction count) */
    __syncthreads();
#pragma unroll 4
    for (int i = tid; i < QC * QTB / 16; i += QW * 32) {
        const int r = i >> 3, k = i & 7;
        const int64_t og = o0 + r, tg = tb + 16 * k;
        if (og < rows && tg < ldt) /* ldt is a multiple of 64: chunks are whole */
            *(uint4 *)(hqt + og * ldt + tg) = *bwd_hq_chunk(s_hq, r, k);
    }
}

/* Row pass (v18): dX's quantization from one read of dy. A warp holds whole token rows in
 * registers — 16 float4 per lane: TK = 16 / NV rows of NV·128 columns (lane: 4 columns of each
 * 128; rows_pad ≤ 128·NV ≤ RQ_MAXC) — so a row's maximum is one warp reduction and q follows
 * from the same registers. COL: the column maxima of the update's h = v·xs from the same
 * registers too (per lane over its tokens, merged over the block's warps by shared atomics, one
 * global atomic per column and block). The maxima pass (k_bwd_amax) then has nothing left to do:
 * the fused backward reads dy twice as before (here, then k_bwd_quant for hqᵀ alone), but the
 * both-outputs quantization, the costliest pass, is gone, and dX alone reads dy once. Values,
 * RNG indices and the exact path per row are k_bwd_quant's, so q and qs are the same bits.
 * One block of RQ_W warps per SM walks the tokens with a grid stride; every warp runs the same
 * number of rounds (past-the-end rows read as zeros and store nothing). V4: the next round's
 * rows stream into a per-warp double buffer in shared memory (cp.async, each lane its own 16-byte
 * pieces, so its own wait orders them) while this round's are computed: loading straight into
 * the registers left each warp idle for a DRAM latency per round (95 µs at 16384 × 2048 on an
 * H100, 1.8 TB/s). */
constexpr int RQ_W = 12, RQ_V = 16, RQ_MAXC = 128 * RQ_V;
constexpr int RQ_RING_BYTES = RQ_W * 2 * RQ_V * 32 * 16; /* 192 KB of dynamic shared memory */
template <int NV, bool EXACT>
__device__ __forceinline__ void bwd_rowq_store(const float4 (&v)[RQ_V], int r0, int nv, int64_t t, uint32_t rows32,
                                               float ri, const uint32_t (&kxc)[4], uint32_t kx1, int8_t *qrow,
                                               int64_t ldq) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int o = 128 * k + 4 * lane;
        if (k >= nv || o >= ldq) continue;
        const float4 x = v[r0 + k];
        const float e[4] = {x.x, x.y, x.z, x.w};
        uint32_t id = (uint32_t)t * rows32 + (uint32_t)o; /* wraps mod 2^32, as on the CPU */
        asm volatile("" : "+r"(id));
        uint32_t b[4];
#pragma unroll
        for (int c = 0; c < 4; c++) b[c] = bwd_floor16<EXACT>(__fadd_rn(__fmul_rn(e[c], ri), bwd_unit(id, kxc[c], kx1)));
        *(uint32_t *)(qrow + o) = bwd_pack4(b[0], b[1], b[2], b[3]);
    }
}
template <int NV, bool V4, bool COL>
__global__ void __launch_bounds__(RQ_W * 32, 1) k_bwd_rowq(const float *dy, const float *xs, const float *scale,
                                                         int64_t n, int64_t rows, int8_t *q, int64_t ldq, float *qs,
                                                         arb_rng_key kx, unsigned *col_amax, int *bad) {
    constexpr int TK = RQ_V / NV; /* token rows per warp and round */
    __shared__ __align__(16) float s_so[128 * NV];
    __shared__ __align__(16) unsigned s_cm[COL ? 128 * NV : 1];
    extern __shared__ __align__(16) float4 bwd_rowq_ring[]; /* V4: [RQ_W][2][RQ_V][32] */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float4(*ring)[RQ_V][32] = (float4(*)[RQ_V][32])(bwd_rowq_ring + (V4 ? warp * 2 * RQ_V * 32 : 0));
    const int nv = (int)((ldq + 127) / 128);
    for (int i = tid; i < 128 * NV; i += RQ_W * 32) {
        s_so[i] = i < rows ? __ldg(scale + i) : 0.0f;
        if (COL) s_cm[i] = 0u;
    }
    __syncthreads();
    uint32_t kxc[4];
#pragma unroll
    for (int c = 0; c < 4; c++) kxc[c] = kx.k0 + (uint32_t)c * 0x9E3779B1u;
    const uint32_t rows32 = (uint32_t)rows;
    unsigned cm[NV][4];
#pragma unroll
    for (int k = 0; k < NV; k++) cm[k][0] = cm[k][1] = cm[k][2] = cm[k][3] = 0u;
    unsigned worst = 0u;
    const int64_t stride = (int64_t)gridDim.x * RQ_W * TK;
    const int64_t rounds = (n + stride - 1) / stride;
    const int64_t tw0 = ((int64_t)blockIdx.x * RQ_W + warp) * TK; /* the warp's first row in round 0 */
    auto issue = [&](int64_t rd) { /* round rd's rows into ring slot rd & 1 (nothing past the last) */
        if (rd < rounds) {
            const int64_t tw = rd * stride + tw0;
#pragma unroll
            for (int r = 0; r < TK; r++)
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const int64_t o = 128 * k + 4 * lane;
                    const bool in = k < nv && tw + r < n && o < rows;
                    if (k < nv) bwd_cp16(&ring[rd & 1][r * NV + k][lane], in ? dy + (tw + r) * rows + o : dy, in);
                }
        }
        bwd_cp_commit();
    };
    if (V4) issue(0);
#pragma unroll 1
    for (int64_t rd = 0; rd < rounds; rd++) {
        const int64_t tw = rd * stride + tw0; /* the warp's first row */
        float4 v[RQ_V];
        if (V4) {
            issue(rd + 1);
            bwd_cp_wait<1>(); /* all but the newest group are in: round rd is */
#pragma unroll
            for (int i = 0; i < RQ_V; i++) v[i] = (i % NV) < nv ? ring[rd & 1][i][lane] : make_float4(0.f, 0.f, 0.f, 0.f);
        } else {
#pragma unroll
            for (int r = 0; r < TK; r++)
#pragma unroll
                for (int k = 0; k < NV; k++)
                    v[r * NV + k] = k < nv ? bwd_ld4<false>(dy, tw + r, n, rows, 128 * k + 4 * lane) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int r = 0; r < TK; r++) {
            const int64_t t = tw + r;
            const float x = COL && t < n ? __ldg(xs + t) : 0.0f;
            unsigned m = 0u;
#pragma unroll
            for (int k = 0; k < NV; k++) {
                if (k >= nv) continue;
                const float4 so = *(const float4 *)&s_so[128 * k + 4 * lane];
                float4 &e = v[r * NV + k];
                e.x = __fmul_rn(e.x, so.x); /* v = dy·scale */
                e.y = __fmul_rn(e.y, so.y);
                e.z = __fmul_rn(e.z, so.z);
                e.w = __fmul_rn(e.w, so.w);
                m = max(max(max(m, bwd_absbits(e.x)), bwd_absbits(e.y)), max(bwd_absbits(e.z), bwd_absbits(e.w)));
                if (COL) {
                    cm[k][0] = max(cm[k][0], bwd_absbits(__fmul_rn(e.x, x)));
                    cm[k][1] = max(cm[k][1], bwd_absbits(__fmul_rn(e.y, x)));
                    cm[k][2] = max(cm[k][2], bwd_absbits(__fmul_rn(e.z, x)));
                    cm[k][3] = max(cm[k][3], bwd_absbits(__fmul_rn(e.w, x)));
                }
            }
            m = __reduce_max_sync(0xffffffffu, m);
            worst = max(worst, m);
            if (t >= n) continue; /* warp-uniform */
            const float ra = __uint_as_float(m);
            const float ri = ra > 0.0f ? __fdiv_rn(127.0f, ra) : 0.0f;
            if (lane == 0) qs[t] = __fdiv_rn(ra, 127.0f);
            if (ri == INFINITY) /* 127/amax overflowed: the CPU's exact floor and clamp */
                bwd_rowq_store<NV, true>(v, r * NV, nv, t, rows32, ri, kxc, kx.k1, q + t * ldq, ldq);
            else
                bwd_rowq_store<NV, false>(v, r * NV, nv, t, rows32, ri, kxc, kx.k1, q + t * ldq, ldq);
        }
    }
    if (COL) {
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int o = 128 * k + 4 * lane + c;
                if (k < nv && o < rows && cm[k][c]) atomicMax(&s_cm[o], cm[k][c]);
            }
        __syncthreads();
        for (int i = tid; i < rows && i < 128 * NV; i += RQ_W * 32) {
            const unsigned m = s_cm[i];
            if (m) atomicMax(col_amax + i, m);
            worst = max(worst, m);
        }
    }
    if (worst > 0x7f7fffffu) atomicOr(bad, 1); /* a NaN or inf (their bits exceed FLT_MAX's) */
}

/* Launch lines of linear_backward: pick the instance (V4 when every 4-column group is one aligned
 * 16-byte load; which outputs). ra / q: dX; ca / hqt: the update. */
arb_status launch_bwd_amax(const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows, unsigned *ra,
                           unsigned *ca, int *bad, cudaStream_t s) {
    const bool v4 = rows % 4 == 0 && ((uintptr_t)dy & 15) == 0;
    const dim3 grid(arb_cuda_blocks(rows, AMAX_C), arb_cuda_blocks(n, AMAX_T));
    const int mode = (ra ? 1 : 0) | (ca ? 2 : 0);
#define ARB_AMAX(V, R, C) k_bwd_amax<V, R, C><<<grid, AMAX_W * 32, 0, s>>>(dy, xs, scale, n, rows, ra, ca, bad)
    if (v4) {
        if (mode == 3) ARB_AMAX(true, true, true); else if (mode == 1) ARB_AMAX(true, true, false); else ARB_AMAX(true, false, true);
    } else {
        if (mode == 3) ARB_AMAX(false, true, true); else if (mode == 1) ARB_AMAX(false, true, false); else ARB_AMAX(false, false, true);
    }
#undef ARB_AMAX
    ARB_CU_LAUNCH("k_bwd_amax");
    return ARB_OK;
}
arb_status launch_bwd_quant(const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows,
                            const unsigned *ra, arb_rng_key kx, int8_t *q, int64_t ldq, float *qs, const unsigned *ca,
                            arb_rng_key kg, int8_t *hqt, int64_t ldt, cudaStream_t s) {
    if ((int64_t)QTW * rows >= (1ll << 31) || (int64_t)QTW * ldq >= (1ll << 31))
        return arb_error(ARB_ERR_INVALID_ARG, "k_bwd_quant: %lld rows are more than its 32-bit offsets allow",
                         (long long)rows);
    const bool v4 = rows % 4 == 0 && ((uintptr_t)dy & 15) == 0;
    const dim3 grid(arb_cuda_blocks(q ? ldq : rows, QC), arb_cuda_blocks(hqt ? ldt : n, QTB));
    if (!grid.x || !grid.y) return ARB_OK;
    const int mode = (q ? 1 : 0) | (hqt ? 2 : 0);
#define ARB_QUANT(M, V) k_bwd_quant<M, V><<<grid, QW * 32, 0, s>>>(dy, xs, scale, n, rows, ra, kx, q, ldq, qs, ca, kg, hqt, ldt)
    if (v4) {
        if (mode == 3) ARB_QUANT(3, true); else if (mode == 1) ARB_QUANT(1, true); else ARB_QUANT(2, true);
    } else {
        if (mode == 3) ARB_QUANT(3, false); else if (mode == 1) ARB_QUANT(1, false); else ARB_QUANT(2, false);
    }
#undef ARB_QUANT
    ARB_CU_LAUNCH("k_bwd_quant");
    return ARB_OK;
}

/* The row pass replaces the maxima pass and the dX half of the quantization whenever q's rows fit
 * the registers (rows_pad ≤ RQ_MAXC); ARB_CUDA_BWD_ROWQ=0 keeps the two-pass order (A/B runs and
 * the tests of that order; read per call). */
bool bwd_rowq_on(int64_t ldq) {
    if (ldq > RQ_MAXC) return false;
    const char *e = getenv("ARB_CUDA_BWD_ROWQ");
    return !(e && !strcmp(e, "0"));
}
/* q, qs (and with ca, the column maxima for the update); the instance holds NV = 4, 8 or 16
 * float4 columns per lane (TK = 16 / NV rows per warp), the smallest that fits; shapes without
 * aligned 16-byte loads take NV = 16. One block per SM at most. */
arb_status launch_bwd_rowq(const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows, int8_t *q,
                           int64_t ldq, float *qs, arb_rng_key kx, unsigned *ca, int *bad, cudaStream_t s) {
    const bool v4 = rows % 4 == 0 && ((uintptr_t)dy & 15) == 0;
    const int64_t nv = (ldq + 127) / 128;
    const int NV = !v4 || nv > 8 ? 16 : (nv > 4 ? 8 : 4);
    const int64_t per = (int64_t)RQ_W * (RQ_V / NV);
    int64_t blocks = (n + per - 1) / per;
    const int sms = arb_cuda_sm_count();
    if (sms && blocks > sms) blocks = sms;
    if (blocks <= 0) return ARB_OK;
    const unsigned g = (unsigned)blocks;
    static bool attr_set[64]; /* per device: the V4 instances' 192 KB ring */
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (v4 && dev >= 0 && dev < 64 && !attr_set[dev]) {
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<4, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<4, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<8, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<8, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<16, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        ARB_CU(cudaFuncSetAttribute(k_bwd_rowq<16, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, RQ_RING_BYTES));
        attr_set[dev] = true;
    }
    const int smem = v4 ? RQ_RING_BYTES : 0;
#define ARB_ROWQ(N, V, C) k_bwd_rowq<N, V, C><<<g, RQ_W * 32, smem, s>>>(dy, xs, scale, n, rows, q, ldq, qs, kx, ca, bad)
    if (!v4) {
        if (ca) ARB_ROWQ(16, false, true); else ARB_ROWQ(16, false, false);
    } else if (NV == 4) {
        if (ca) ARB_ROWQ(4, true, true); else ARB_ROWQ(4, true, false);
    } else if (NV == 8) {
        if (ca) ARB_ROWQ(8, true, true); else ARB_ROWQ(8, true, false);
    } else {
        if (ca) ARB_ROWQ(16, true, true); else ARB_ROWQ(16, true, false);
    }
#undef ARB_ROWQ
    ARB_CU_LAUNCH("k_bwd_rowq");
    return ARB_OK;
}

/* xqᵀ (cols_pad, ldt) from xq (n, cols_pad); tokens n..ldt-1 are zero. 64 × 64 bytes per block:
 * 16-byte loads of token rows into shared memory, 16-byte stores of column rows out of it. */
__global__ void __launch_bounds__(256) k_transpose_i8(const int8_t *x, int64_t n, int64_t cols, int64_t ldt,
                                                      int8_t *xt) {
    __shared__ __align__(16) uint8_t tile[64][64 + 16];
    const int64_t c0 = blockIdx.x * 64, t0 = blockIdx.y * 64;
    const int tid = threadIdx.x, r = tid >> 2, q = tid & 3;
    {
        const int64_t t = t0 + r, c = c0 + 16 * q;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t < n && c < cols) v = __ldg((const uint4 *)(x + t * cols + c)); /* cols is a multiple of 16 */
        *(uint4 *)&tile[r][16 * q] = v;
    }
    __syncthreads();
    const int64_t c = c0 + r, t = t0 + 16 * q;
    if (c >= cols || t >= ldt) return;
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; k++)
        w[k] = (uint32_t)tile[16 * q + 4 * k][r] | ((uint32_t)tile[16 * q + 4 * k + 1][r] << 8) |
               ((uint32_t)tile[16 * q + 4 * k + 2][r] << 16) | ((uint32_t)tile[16 * q + 4 * k + 3][r] << 24);
    *(uint4 *)(xt + c * ldt + t) = make_uint4(w[0], w[1], w[2], w[3]); /* ldt is a multiple of 64 */
}

/* Split-K for the update's dW GEMM. Its output (rows × cols) is small next to its reduction over
 * the tokens (the model's layers: 384–1536 square, 16384 tokens), so the fused kernel had 6–24
 * output tiles for 132 SMs. With few tiles the GEMM instead writes nsplit int32 partial
 * products over K slices and arb_cuda_upd_dense sums them (integers: the same Gint bit for bit)
 * and applies the rule. ARB_CUDA_SPLITK=off never splits, =N forces N slices (tests). */
int split_norm(int64_t want, int64_t nk);
int splitk_count(int64_t rows, int64_t cols, int64_t ldt) {
    const int64_t nk = (ldt + WBK - 1) / WBK;
    const char *e = getenv("ARB_CUDA_SPLITK");
    if (e && !strcmp(e, "off")) return 1;
    int64_t want = 0;
    if (e && *e) want = strtol(e, nullptr, 10);
    if (want <= 0) {
        const int sms = arb_cuda_sm_count();
        if (!sms) return 1;
        const int64_t tiles = ((cols + BM - 1) / BM) * ((rows + BN - 1) / BN);
        want = sms / tiles;            /* fill the SMs once */
        if (want > nk / 4) want = nk / 4; /* each slice ≥ 4 K-blocks (512 tokens) */
    }
    return split_norm(want, nk); /* slices of whole K-blocks, every slice non-empty */
}

/* *dst |= *src on the stream (a dX-only backward's non-finite flag into the deferred check). */
__global__ void k_or_flag(const int *src, int *dst) {
    if (*src) atomicOr(dst, 1);
}

/* ARB_CUDA_UPD=fused: the update rule in the dW GEMM's epilogue (read per call: tests switch it). */
bool update_fused() {
    const char *e = getenv("ARB_CUDA_UPD");
    return e && !strcmp(e, "fused");
}

/* ARB_CUDA_BWD_TRACE=1: per-stage times of each backward call on stderr (a measurement aid, read
 * per call): a timing event on the current stream at each stage boundary, plus the host clock
 * when the host queued it; the call synchronizes at its end and prints one line
 *   BWDTRACE <stage> <GPU µs since start>/<host µs since start> ...
 * A stage whose host time exceeds its GPU time was queued after the GPU had run dry. */
struct BwdTrace {
    bool on = false;
    std::vector<std::pair<const char *, cudaEvent_t>> ev;
    std::vector<double> host;
    double t0 = 0;
};
BwdTrace g_bwd_trace;
double bwd_now_us() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}
} // namespace

void arb_cuda_bwd_mark(const char *stage) {
    BwdTrace &T = g_bwd_trace;
    if (!T.on) return;
    cudaEvent_t e;
    if (cudaEventCreate(&e) != cudaSuccess) return;
    cudaEventRecord(e, arb_cuda_cur_stream());
    T.ev.emplace_back(stage, e);
    T.host.push_back(bwd_now_us() - T.t0);
}

namespace {
void bwd_trace_begin() {
    const char *e = getenv("ARB_CUDA_BWD_TRACE");
    g_bwd_trace.on = e && !strcmp(e, "1");
    g_bwd_trace.t0 = bwd_now_us();
    arb_cuda_bwd_mark("start");
}
void bwd_trace_end(const char *what) {
    BwdTrace &T = g_bwd_trace;
    if (!T.on) return;
    arb_cuda_bwd_mark("end");
    T.on = false;
    if (cudaEventSynchronize(T.ev.back().second) == cudaSuccess) {
        fprintf(stderr, "BWDTRACE %s", what);
        for (size_t i = 1; i < T.ev.size(); i++) {
            float ms = 0.0f;
            cudaEventElapsedTime(&ms, T.ev[0].second, T.ev[i].second);
            fprintf(stderr, " %s %.1f/%.1f", T.ev[i].first, ms * 1e3, T.host[i]);
        }
        fprintf(stderr, "\n");
    }
    for (auto &m : T.ev) cudaEventDestroy(m.second);
    T.ev.clear();
    T.host.clear();
}

/* want slices of nk K-blocks → a count whose slices are whole K-blocks and all non-empty */
int split_norm(int64_t want, int64_t nk) {
    if (want > nk) want = nk;
    if (want > 1) want = (nk + (nk + want - 1) / want - 1) / ((nk + want - 1) / want);
    return want > 1 ? (int)want : 1;
}

/* dW partial products: Gint over the ldt tokens of hqᵀ and xqᵀ, as nsplit int32 (rows, cols)
 * row-major slices stride apart from out (out (n, m) = b · aᵀ with m = W col, n = W row). */
arb_status dw_gemm(const arb_ternary *w, const int8_t *hqt, const int8_t *xqt, int64_t ldt, int nsplit, int32_t *out,
                   int64_t stride) {
    const int64_t K = ldt, nk = (K + WBK - 1) / WBK, kcb = (nk + nsplit - 1) / nsplit;
    GemmArgs g;
    memset(&g, 0, sizeof g);
    g.M = (int)w->cols;
    g.N = (int)w->rows;
    g.K = (int)K;
    g.a = (const uint8_t *)xqt;
    g.lda = ldt;
    g.b = hqt;
    g.ldb = ldt;
    g.kmax = (int)K;
    g.out = out;
    g.ldo = w->cols;
    g.ksplit = nsplit;
    g.kcb = (int)kcb;
    g.split_stride = stride;
    return launch_gemm<A_INT8, EPI_I32>(g, nsplit > 1 ? "k_gemm<dw,splitk>" : "k_gemm<dw>");
}

arb_status update_splitk(arb_ternary *w, const int8_t *hqt, const int8_t *xqt, int64_t ldt, int nsplit,
                         const arb_cuda_csrc &cs, const arb_update_params *p, arb_update_state *st,
                         arb_update_stats *stats) {
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t stride = rows * cols;
    arb_cuda_scratch part;
    ARB_TRY(part.alloc((size_t)(nsplit * stride) * sizeof(int32_t)));
    ARB_TRY(dw_gemm(w, hqt, xqt, ldt, nsplit, part.as<int32_t>(), stride)); /* part[s]: Gint slices */
    arb_cuda_bwd_mark("dw");
    /* stats pass (first step), plan, update pass, finish: all on the device */
    return arb_cuda_upd_apply(w, part.as<int32_t>(), cols, nsplit, stride, cs, p, st, stats);
}

/* The thread's events for linear_backward, per device, made once and destroyed with the thread
 * (as its side streams are): the side stream's fork, Wᵀ done, xqᵀ done, the first pass over dy
 * done, and the non-finite flag's copy. Creating and destroying them per call cost the host
 * ~10 µs, during which the GPU idled after an immediate-mode call's final synchronize. */
constexpr int BWD_EVENTS = 5;
struct BwdEvents {
    cudaEvent_t ev[64][BWD_EVENTS] = {};
    ~BwdEvents() {
        for (auto &d : ev)
            for (cudaEvent_t e : d)
                if (e) cudaEventDestroy(e);
    }
};
thread_local BwdEvents g_bwd_events;
arb_status bwd_events(cudaEvent_t **out) {
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) return arb_error(ARB_ERR_CUDA, "linear backward: device %d", dev);
    cudaEvent_t *ev = g_bwd_events.ev[dev];
    for (int i = 0; i < BWD_EVENTS; i++)
        if (!ev[i]) ARB_CU(cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming)); /* a failure keeps the ones made */
    *out = ev;
    return ARB_OK;
}

/* dx (may be NULL) and/or the update (p may be NULL). Order on the current stream: one memset,
 * the first pass over dy — the row pass (q, qs, and the column maxima for the update) when
 * rows_pad ≤ RQ_MAXC, else the maxima pass — (+ the non-finite flag to pinned memory in
 * immediate mode), the quantization of what is left (hqᵀ; or q and hqᵀ), the dX GEMM on the
 * pre-update trits (Wᵀ), dW GEMM into int32 Gint, then plan, update pass and finish on the
 * device (arb_cuda_upd_apply); Wᵀ and xqᵀ are made on the side stream meanwhile. */
arb_status linear_backward(arb_ternary *w, const int8_t *xq, const float *xs, const float *dy, int64_t n,
                           arb_rng_key kx, float *dx, const arb_update_params *p, arb_update_state *st,
                           arb_update_stats *stats, const char *what) {
    const int64_t rows = w->rows, cols = w->cols, cp = w->cols_pad, rp = w->rows_pad;
    const int64_t ldt = n > 0 ? (n + BK - 1) / BK * BK : BK;
    cudaStream_t s = arb_cuda_cur_stream();
    const bool rowq = dx && n > 0 && bwd_rowq_on(rp);
    /* the non-finite flag, the row maxima (two-pass order only) and the column maxima share one
     * buffer and one memset */
    const int64_t nra = dx && !rowq ? (n > 0 ? n : 1) : 0, nca = p ? rows : 0;
    arb_cuda_scratch flags, q, qs, wt, hqt, xqt;
    ARB_TRY(flags.alloc((size_t)(4 + nra + nca) * sizeof(unsigned)));
    int *bad = flags.as<int>();
    unsigned *ramax = nra ? flags.as<unsigned>() + 4 : nullptr, *camax = p ? flags.as<unsigned>() + 4 + nra : nullptr;
    if (dx) {
        ARB_TRY(q.alloc((size_t)(n * rp)));
        ARB_TRY(qs.alloc((size_t)(n > 0 ? n : 1) * sizeof(float)));
        ARB_TRY(wt.alloc((size_t)(rp * cp / 4)));
    }
    if (p) {
        ARB_TRY(hqt.alloc((size_t)(rows * ldt)));
        ARB_TRY(xqt.alloc((size_t)(cp * ldt)));
    }
    ARB_CU(cudaMemsetAsync(flags.p, 0, (size_t)(4 + nra + nca) * sizeof(unsigned), s));
    /* Wᵀ for the dX GEMM and xqᵀ for the dW GEMM depend only on W and xq: they run on the side
     * stream, beside the first pass over dy (ARB_CUDA_BWD_XT=quant: beside the quantization).
     * The current stream waits for Wᵀ before the dX GEMM and for xqᵀ after the dX GEMM is queued
     * (the update changes W only after that). The first pass is queued before the side stream's
     * work so that the GPU starts on it while the host queues the rest. The guard joins on every
     * return path before the scratch buffers above go back to the pool. */
    struct SideJoin {
        cudaStream_t main;
        cudaEvent_t *ev; /* fork, Wᵀ done, xqᵀ done, first pass done */
        bool joined;
        cudaError_t wait(int i) {
            if (i == 2) joined = true;
            return ev ? cudaStreamWaitEvent(main, ev[i], 0) : cudaSuccess; /* no side work: nothing to wait for */
        }
        ~SideJoin() {
            if (joined || !ev) return;
            for (int i = 1; i < 3; i++) cudaStreamWaitEvent(main, ev[i], 0); /* never recorded: complete */
        }
    } side{s, nullptr, false};
    const bool do_wt = dx && n > 0, do_xt = p && n > 0;
    const bool xt_late = do_xt && [] {
        const char *e = getenv("ARB_CUDA_BWD_XT");
        return e && !strcmp(e, "quant");
    }();
    cudaStream_t ss = nullptr;
    if (do_wt || do_xt) {
        ARB_TRY(arb_cuda_side_stream(&ss));
        ARB_TRY(bwd_events(&side.ev));
        ARB_CU(cudaEventRecord(side.ev[0], s)); /* W and xq were written on the current stream */
    }
    arb_cuda_bwd_mark("setup");
    if (rowq) {
        ARB_TRY(launch_bwd_rowq(dy, p ? xs : nullptr, w->scale, n, rows, q.as<int8_t>(), rp, qs.as<float>(), kx, camax,
                                bad, s));
        arb_cuda_bwd_mark("rowq");
    } else if (n > 0) {
        ARB_TRY(launch_bwd_amax(dy, p ? xs : nullptr, w->scale, n, rows, ramax, camax, bad, s));
        arb_cuda_bwd_mark("amax");
    }
    if (do_wt || do_xt) {
        if (xt_late) ARB_CU(cudaEventRecord(side.ev[3], s)); /* the first pass is done */
        ARB_CU(cudaStreamWaitEvent(ss, side.ev[0], 0));
        if (do_wt) {
            const int64_t tr = rp / 16, tc = cp / 16;
            k_transpose_packed<<<arb_cuda_blocks(tr * tc * 16, 256), 256, 0, ss>>>(w->trits, tr, tc, wt.as<uint8_t>());
            ARB_CU_LAUNCH("k_transpose_packed");
        }
        ARB_CU(cudaEventRecord(side.ev[1], ss));
        if (do_xt) {
            if (xt_late) ARB_CU(cudaStreamWaitEvent(ss, side.ev[3], 0));
            dim3 gt(arb_cuda_blocks(cp, 64), arb_cuda_blocks(ldt, 64));
            k_transpose_i8<<<gt, 256, 0, ss>>>(xq, n, cp, ldt, xqt.as<int8_t>());
            ARB_CU_LAUNCH("k_transpose_i8");
        }
        ARB_CU(cudaEventRecord(side.ev[2], ss));
    }
    /* Immediate mode (no arb_cuda_checks_defer): the non-finite flag (raised by the first pass)
     * comes back through pinned memory before the update may change state (the wait overlaps the
     * work queued below). Deferred mode: the plan kernel reads the flag, reports it to the
     * deferred check and skips the update; nothing here waits for the device. */
    int *deferred = arb_cuda_deferred_flag();
    uint32_t *pin = nullptr;
    cudaEvent_t ev = nullptr;
    if (!deferred) {
        ARB_TRY(arb_cuda_host_scratch(sizeof(uint32_t), (void **)&pin));
        ARB_CU(cudaMemcpyAsync(pin, bad, sizeof(int), cudaMemcpyDeviceToHost, s));
        cudaEvent_t *fe;
        ARB_TRY(bwd_events(&fe));
        ev = fe[4];
        ARB_CU(cudaEventRecord(ev, s));
    }
    const arb_rng_key kg = p ? arb_update_key(p->seed, p->step, w->id, ARB_RNG_GRAD) : arb_rng_key{0, 0};
    /* what the first pass left: hqᵀ after the row pass, q and/or hqᵀ after the maxima pass */
    if (!rowq || p) {
        ARB_TRY(launch_bwd_quant(dy, p ? xs : nullptr, w->scale, n, rows, rowq ? nullptr : ramax, kx,
                                 rowq ? nullptr : q.as<int8_t>(), rp, rowq ? nullptr : qs.as<float>(), camax, kg,
                                 hqt.as<int8_t>(), ldt, s));
        arb_cuda_bwd_mark("quant");
    }
    if (dx && n > 0) { /* dX from the pre-update trits (Wᵀ) */
        ARB_CU(side.wait(1)); /* Wᵀ */
        arb_cuda_bwd_mark("wT");
        GemmArgs g;
        memset(&g, 0, sizeof g);
        g.M = (int)cols;
        g.N = (int)n;
        g.K = (int)rp;
        g.a = wt.as<uint8_t>();
        g.tiles_r = cp / 16; /* Wᵀ: cols_pad/16 tile-rows of rows_pad/16 tiles */
        g.tiles_c = rp / 16;
        g.b = q.as<int8_t>();
        g.ldb = rp;
        g.kmax = (int)rp;
        g.out = dx;
        g.ldo = cols;
        g.rs_n = qs.as<float>();
        ARB_TRY((launch_gemm<A_PACKED_W, EPI_DX>(g, "k_gemm<dx>")));
        arb_cuda_bwd_mark("dx");
    }
    if (!p) { /* dX only: report a non-finite dy (deferred: into the deferred flag) */
        if (deferred) {
            k_or_flag<<<1, 1, 0, s>>>(bad, deferred);
            ARB_CU_LAUNCH("k_or_flag");
            return ARB_OK;
        }
        ARB_CU(cudaEventSynchronize(ev));
        if (pin[0]) return arb_error(ARB_ERR_INVALID_ARG, "%s: dy has a NaN or infinite value", what);
        return ARB_OK;
    }
    ARB_CU(side.wait(2)); /* xqᵀ is ready before anything queued from here on */
    arb_cuda_bwd_mark("xqT");
    if (n == 0) { /* no side work: ldt zero columns of xqᵀ, as k_transpose_i8 would write them */
        ARB_CU(cudaMemsetAsync(xqt.p, 0, (size_t)(cp * ldt), s));
    }
    if (!deferred) {
        ARB_CU(cudaEventSynchronize(ev)); /* the flag is here; the GEMMs may still run */
        if (pin[0])
            return arb_error(ARB_ERR_INVALID_ARG, "%s: gradient has a NaN or infinite value (%lld x %lld)", what,
                             (long long)n, (long long)rows);
    }
    /* c[o] = amax[o] / 127 forms on the device, in the plan */
    const arb_cuda_csrc cs = {ARB_CSRC_COLMAX, nullptr, camax, nullptr, bad};
    /* Default: Gint as int32 through the plain int8 GEMM (split over K when the output has few
     * tiles), then one update pass over all weights
     * (k_upd_dense, the whole GPU at full occupancy). ARB_CUDA_UPD=fused applies the rule in the
     * GEMM's epilogue instead, where 8 warps per SM run it with nothing to hide behind. ncu on an
     * H100 at 2048 × 2048 × 16384 tokens: 112 + 37.7 µs against 180.5 fused. */
    if (!update_fused())
        return update_splitk(w, hqt.as<int8_t>(), xqt.as<int8_t>(), ldt, splitk_count(rows, cols, ldt), cs, p, st,
                             stats);
    /* The fused epilogue takes S as a launch argument: this opt-in path reads the plan's S (and,
     * when the previous norm is only on the device, that norm) back; plan and finish still run
     * on the device. */
    GemmArgs g;
    memset(&g, 0, sizeof g);
    g.M = (int)rows;
    g.N = (int)cols;
    g.K = (int)ldt;
    g.a = (const uint8_t *)hqt.p;
    g.lda = ldt;
    g.b = xqt.as<int8_t>();
    g.ldb = ldt;
    g.kmax = (int)ldt;
    g.tiles_r = rp / 16;
    g.tiles_c = cp / 16;
    g.trits = w->trits;
    g.accum = w->accum;
    g.cols = cols;
    g.threshold = p->threshold;
    g.leak_shift = p->leak_shift;
    g.key = arb_update_key(p->seed, p->step, w->id, ARB_RNG_PRESSURE);
    arb_cuda_rowsums rsum;
    ARB_TRY(rsum.init(rows));
    g.abs_g = rsum.abs_g();
    g.ge = rsum.ge();
    g.flips = rsum.flips();
    arb_cuda_upd_slot slot;
    ARB_TRY(arb_cuda_upd_slot_open(st, &slot));
    if (slot.norm_in) ARB_TRY(arb_cuda_copy_d2h(&slot.norm_host, slot.norm_in, sizeof(double)));
    if (!(slot.norm_host > 0.0)) /* first step: a stats pass measures this step's own norm */
        ARB_TRY((launch_gemm<A_INT8, EPI_STATS>(g, "k_gemm<dw,stats>")));
    arb_cuda_scratch c, plan;
    ARB_TRY(c.alloc((size_t)rows * sizeof(float)));
    ARB_TRY(plan.alloc((size_t)(rows + 2) * sizeof(int32_t)));
    ARB_TRY(arb_cuda_upd_plan(w, cs, p, slot, rsum, c.as<float>(), plan.as<int32_t>()));
    int sk[2] = {0, 0};
    ARB_TRY(arb_cuda_copy_d2h(sk, plan.as<int32_t>() + rows, sizeof sk));
    if (!sk[1]) {
        g.shift = sk[0];
        g.mult = plan.as<int32_t>();
        ARB_TRY((launch_gemm<A_INT8, EPI_UPDATE>(g, "k_gemm<dw,update>")));
    }
    ARB_TRY(arb_cuda_upd_finish(w, c.as<float>(), rsum, plan.as<int32_t>(), p, slot));
    return arb_cuda_upd_slot_close(&slot, st, stats, rows * cols);
}

} // namespace

extern "C" arb_status arb_cuda_ternary_linear_backward_x(const arb_ternary *w, const float *dy, int64_t n,
                                                         arb_rng_key key, float *dx) {
    const char *what = "arb_cuda_ternary_linear_backward_x";
    ARB_TRY(check_linear(w, n, what));
    if (n == 0) return ARB_OK;
    if (!dy || !dx) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL buffer", what);
    bwd_trace_begin();
    arb_status r = linear_backward(const_cast<arb_ternary *>(w), nullptr, nullptr, dy, n, key, dx, nullptr, nullptr,
                                   nullptr, what);
    bwd_trace_end("dx");
    return r;
}

extern "C" arb_status arb_cuda_ternary_linear_backward_update(arb_ternary *w, const int8_t *xq, const float *xs,
                                                              const float *dy, int64_t n, const arb_update_params *p,
                                                              arb_update_state *st, arb_update_stats *stats) {
    const char *what = "arb_cuda_ternary_linear_backward_update";
    ARB_TRY(arb_cuda_upd_check(w, n, p, st, what));
    ARB_TRY(check_linear(w, n, what));
    if (n > 0 && (!xq || !xs || !dy)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL input", what);
    bwd_trace_begin();
    arb_status r = linear_backward(w, xq, xs, dy, n, arb_rng_key{0, 0}, nullptr, p, st, stats, what);
    bwd_trace_end("update");
    return r;
}

extern "C" arb_status arb_cuda_ternary_linear_backward(arb_ternary *w, const int8_t *xq, const float *xs,
                                                       const float *dy, int64_t n, arb_rng_key dx_key, float *dx,
                                                       const arb_update_params *p, arb_update_state *st,
                                                       arb_update_stats *stats) {
    const char *what = "arb_cuda_ternary_linear_backward";
    ARB_TRY(arb_cuda_upd_check(w, n, p, st, what));
    ARB_TRY(check_linear(w, n, what));
    if (n > 0 && (!xq || !xs || !dy || !dx)) return arb_error(ARB_ERR_INVALID_ARG, "%s: NULL input", what);
    bwd_trace_begin();
    arb_status r = linear_backward(w, xq, xs, dy, n, dx_key, dx, p, st, stats, what);
    bwd_trace_end(arb_cuda_deferred_flag() ? "fused-deferred" : "fused");
    return r;
}
