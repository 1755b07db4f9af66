/* The VAE decoder's 3×3 convolutions as one implicit-GEMM int8 kernel on Hopper wgmma (see
 * sc_conv.cuh).
 *
 * Why: the im2col path wrote every output pixel's quantized 9·C window to memory and cuBLASLt read
 * it back (≈ 41 GB per batch-32 256² decode, more time than the GEMMs themselves), then a row
 * kernel read the int32 products back to dequantize. Here:
 *  - k_conv_act (one pass over the input): the activated input (GroupNorm affine + SiLU, the
 *    im2col kernels' formula) as fp32, and each input pixel's absmax over its channels; a
 *    window's absmax is then the max of its 9 pixels' (0 outside the image), so every output
 *    pixel's scale is known before its first K-step.
 *  - k_conv3_wg: persistent (grid = SMs); a tile is a 16 × 16 patch of output pixels × 128
 *    output channels (4 warpgroups, one per 4 patch rows). Per 32-channel chunk, cp.async brings
 *    the activated 18 × 18 input patch (zero padding and nearest ×2 upsampling in the indexing)
 *    and the 9 taps' weights (three 128-byte-swizzled K-major tiles) into shared memory,
 *    double-buffered, chunks numbered across a block's tiles (a tile's last chunk prefetches the
 *    next tile's first). The loads' address arithmetic is done once per tile (a shared table of
 *    each thread's patch-piece offsets): without it ~800 of the chunk loop's ~1400 instructions
 *    issued the copies, and the kernel is issue-bound. Per tap, each thread quantizes its 2
 *    vertically adjacent pixels × 16 channels straight into the wgmma A fragment registers
 *    (rint(v·127/absmax), one scale per output pixel; taps dx-major, so a column's 4 staged rows
 *    serve 3 taps) and wgmma m64n128k32 multiplies against the weights; the int32 sums stay in
 *    registers.
 *  - Epilogue: y = acc·(s_x·s_w) + bias (+ y), written once as fp32 and rounded as the row kernel
 *    rounds it (no contraction); optionally the per-channel sums and sums of squares of this
 *    patch (double, as k_gn_partial) for the next GroupNorm.
 * Same numbers as the im2col path: the same activation floats, the same scale (absmax/127,
 * inverse 127/absmax), rint(v·inv) (multiply, then round half to even through the 1.5·2²³ trick;
 * |v·inv| ≤ 127 so no clamp is needed), exact int32 sums (the K order is free), and the row
 * kernel's epilogue formula: with the GroupNorm sums from their own pass the decode is bit-identical
 * to the im2col path's (measured). Only the sm_90a image has the kernel (sc_conv3_igemm_ok checks).
 * Measured on an H100 (VAE decode 256², batch 32): 92.8 ms with im2col, 56.7 ms with this kernel;
 * the variants tried on the way (256-channel blocks, three stages, split loads, act() inside the
 * kernel, two wgmmas in flight) were slower: docs/PERFORMANCE.md, "Session 4 — VAE decoder". */
#include "cuda/kernels.cuh"
#include "cuda/sc_conv.cuh"
#include "cuda/gemm_sm90.cuh"
#include "cuda/wgmma.cuh"

#include <cstdlib>
#include <cstring>

namespace {

constexpr int CK = 32; /* input channels per chunk: one k32 step per tap */

/* The block: 128 output channels × a 16 × 16 pixel patch, 4 warpgroups (warp w owns patch row w
 * of its warpgroup's 64-row wgmma tile); two stages of {patch, 9 taps of weights}. */
struct cfg {
    static constexpr int BN = 128, THREADS = 512, TH = 16, TW = 16;
    static constexpr int BM = TH * TW, HW_ = TW + 2, HP = (TH + 2) * HW_; /* staged patch with halo */
    static constexpr int NXS = HP * CK / 4;       /* 16-byte pieces of one chunk's patch */
    static constexpr int BSUB = BN * 128;         /* one 128-byte-swizzled weight tile: 4 taps */
    static constexpr int B_BYTES = 3 * BSUB;
    static constexpr int XS_BYTES = (HP * CK * 4 + 1023) / 1024 * 1024;
    static constexpr int UNIT = B_BYTES + XS_BYTES; /* one chunk's operands */
    static constexpr int SCALES_OFF = 2 * UNIT;
    /* each thread's patch-piece source offsets of the tile being loaded */
    static constexpr int KX = (NXS + THREADS - 1) / THREADS, PA_OFF = SCALES_OFF + 2 * BM * 4;
    static constexpr size_t SMEM = (size_t)PA_OFF + (size_t)KX * THREADS * 4 + 1024;
    static_assert(SMEM <= 227 * 1024, "shared memory");
};


/* The activation as the im2col kernels apply it (conv_px): v·scale + shift (the contraction nvcc
 * makes of conv_px's `v * s + t`), then SiLU. */
__device__ __forceinline__ float4 act4(float4 v, const float4 *a4, int C4, int c4, int silu) {
    if (a4) {
        float4 s = __ldg(a4 + c4), t = __ldg(a4 + C4 + c4);
        v.x = __fmaf_rn(v.x, s.x, t.x), v.y = __fmaf_rn(v.y, s.y, t.y);
        v.z = __fmaf_rn(v.z, s.z, t.z), v.w = __fmaf_rn(v.w, s.w, t.w);
    }
    if (silu) {
        v.x = v.x / (1.f + __expf(-v.x)), v.y = v.y / (1.f + __expf(-v.y));
        v.z = v.z / (1.f + __expf(-v.z)), v.w = v.w / (1.f + __expf(-v.w));
    }
    return v;
}

/* rint(v·inv) of 4 values as 4 int8 in one word (byte i = element i). v·inv is rounded to float
 * first (as the CPU does), then to an integer by adding 1.5·2²³ (round half to even); the low
 * byte of the sum's bits is the integer in two's complement. */
[[maybe_unused]] __device__ __forceinline__ uint32_t q4(float4 v, float inv) {
    const float M = 12582912.f;
    const uint32_t a = __float_as_uint(__fadd_rn(__fmul_rn(v.x, inv), M)), b = __float_as_uint(__fadd_rn(__fmul_rn(v.y, inv), M));
    const uint32_t c = __float_as_uint(__fadd_rn(__fmul_rn(v.z, inv), M)), d = __float_as_uint(__fadd_rn(__fmul_rn(v.w, inv), M));
    return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

/* Per input pixel (one warp each): xa = act(x) when act is not the identity (xa may be null
 * then), and pm = the absmax of the pixel's activated channels. */
__global__ void k_conv_act(const float *x, int P, int C, const float *ab, int silu, float *xa, float *pm, int B) {
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= B * P) return;
    const int b = r / P, C4 = C >> 2;
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)r * C);
    float4 *ar = xa ? reinterpret_cast<float4 *>(xa + (size_t)r * C) : nullptr;
    const float4 *a4 = ab ? reinterpret_cast<const float4 *>(ab + (size_t)b * 2 * C) : nullptr;
    float m = 0.f;
    for (int c4 = lane; c4 < C4; c4 += 32) {
        float4 v = act4(__ldg(xr + c4), a4, C4, c4, silu);
        if (ar) ar[c4] = v;
        m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
    for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) pm[r] = m;
}

/* Persistent: grid = min(tiles, SMs); block i takes tiles i, i + grid, ... (tile t: channel block
 * t % nblk, then x, y, image). Chunks are numbered across tiles (gc), so the last chunk of a tile
 * prefetches the next tile's first, and its operand latency hides behind the current tile's last
 * chunk and epilogue. Each thread holds two vertically adjacent pixels of the 16 × 16 patch (rows
 * g and g + 8 of its warp's 16 rows of the warpgroup's 64-row wgmma tile). */
__global__ void __launch_bounds__(cfg::THREADS, 1)
    k_conv3_wg(const float *__restrict__ xa, int H, int W, int C, int up, const float *__restrict__ pm,
               const int8_t *__restrict__ w, int kp, int n, int np, const float *__restrict__ ws,
               const float *__restrict__ bias, float *y, int res, int nblk, int tiles_x, int tiles_y, int total,
               double *gnp) {
#if defined(ARB_HAVE_WGMMA)
    using K = cfg;
    constexpr int BN = K::BN, THREADS = K::THREADS, TH = K::TH, TW = K::TW, BM = K::BM, HW_ = K::HW_, BSUB = K::BSUB;
    constexpr int NA = BN / 2; /* accumulators per thread */
    /* statistics: NPART column parts of PW in turn through a free buffer; Q2 row groups per column */
    constexpr int NPART = 2, PW = BN / NPART, LD2 = PW + 8, Q2 = THREADS / (BN / 2), RQ2 = BM / Q2;
    constexpr int KX = K::KX;                                /* patch pieces per thread */
    constexpr int KW = (9 * BN * 2 + THREADS - 1) / THREADS; /* weight pieces per thread */
    static_assert((size_t)BM * LD2 * 4 + (size_t)Q2 * PW * 16 <= (size_t)K::UNIT, "statistics fit");
    static_assert(TH % 2 == 0 && THREADS % (BN * 2) == 0 && (THREADS / 8) % 2 == 0, "shapes");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    /* 1024-byte aligned (the 128-byte swizzle) as smem_raw plus an offset, so the compiler keeps
     * the shared address space (shared loads, 32-bit addresses; rounding a generic pointer gives
     * generic loads with 64-bit address arithmetic) */
    unsigned char *smem = smem_raw + ((1024u - ((unsigned)__cvta_generic_to_shared(smem_raw) & 1023u)) & 1023u);
    float *inv_s = reinterpret_cast<float *>(smem + K::SCALES_OFF), *qs_s = inv_s + BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
    const int Ho = up ? 2 * H : H, Wo = up ? 2 * W : W;
    const int nch = C / CK, grid = (int)gridDim.x;
    /* this thread's two pixels (vertically adjacent), patch coordinates and indices in the tile */
    const int pya = (warp >> 1) * 2, pyb = pya + 1, pxa = (warp & 1) * 8 + g;
    const int pia = pya * TW + pxa, pib = pyb * TW + pxa;
    int t = blockIdx.x;
    if (t >= total) return;

    /* the buffers of chunk number gcn */
    auto wbuf = [&](int gcn) { return smem + (size_t)(gcn & 1) * K::UNIT; };
    auto xbuf = [&](int gcn) { return smem + (size_t)(gcn & 1) * K::UNIT + K::B_BYTES; };
    /* the load state of tile lt (the one whose chunks are being issued) */
    int *pa_s = reinterpret_cast<int *>(smem + K::PA_OFF); /* [KX][THREADS] patch source offsets, −1: padding */
    int lt = -1;
    const float *lxb = xa;  /* image base of tile lt */
    const int8_t *lwb = w;  /* this thread's weight piece of tap tid / (2 BN), chunk 0, tile lt's block */
    bool lwok = false;      /* its output channel exists */
    auto pa_tile = [&](int tt) {
        const int nb = tt % nblk, r = tt / nblk, tx = r % tiles_x, r2 = r / tiles_x, ty = r2 % tiles_y, b = r2 / tiles_y;
        const int ox0 = tx * TW, oy0 = ty * TH, row = (tid & (BN * 2 - 1)) >> 1;
        lxb = xa + (size_t)b * H * W * C;
        lwok = nb * BN + row < np;
        lwb = w + (size_t)(nb * BN + row) * kp + (tid / (BN * 2)) * C + (tid & 1) * 16;
#pragma unroll
        for (int k = 0; k < KX; k++) {
            const int i = tid + k * THREADS;
            if (i < K::NXS) {
                const int hp = i >> 3, slot = i & 7, hy = hp / HW_, hx = hp - hy * HW_;
                const int vy = oy0 - 1 + hy, vx = ox0 - 1 + hx;
                const bool ok = vy >= 0 && vx >= 0 && vy < Ho && vx < Wo;
                pa_s[k * THREADS + tid] = ok ? ((up ? vy >> 1 : vy) * W + (up ? vx >> 1 : vx)) * C + slot * 4 : -1;
            }
        }
        lt = tt;
    };
    /* chunk ch of tile tt (x and w) into buffer gcn */
    auto load = [&](int tt, int ch, int gcn) {
        __builtin_assume(tid >= 0 && tid < THREADS); /* pieces k < KX − 1 are then always in range */
        if (tt != lt) pa_tile(tt);
        unsigned char *Xu = xbuf(gcn), *Bu = wbuf(gcn);
        /* piece k of this thread: patch pixel hp = tid / 8 + k·THREADS / 8 (the same parity for
         * every k), 16-byte slot tid % 8 */
        const int xd = (tid >> 3) * 128 + (((tid & 7) ^ (((tid >> 3) & 1) << 2)) << 4);
#pragma unroll
        for (int k = 0; k < KX; k++) {
            if (tid + k * THREADS < K::NXS) {
                const int so = pa_s[k * THREADS + tid];
                arb_cp_async16(Xu + xd + k * (THREADS / 8) * 128, so >= 0 ? lxb + so + ch * CK : xa, so >= 0);
            }
        }
        const int row = (tid & (BN * 2 - 1)) >> 1, half = tid & 1, tap0 = tid / (BN * 2);
#pragma unroll
        for (int k = 0; k < KW; k++) {
            if (tid + k * THREADS < 9 * BN * 2) {
                const int tap = tap0 + k * (THREADS / (BN * 2));
                arb_cp_async16(Bu + (tap >> 2) * BSUB + arb_swz128(row, (tap & 3) * 2 + half),
                               lwok ? lwb + (size_t)k * (THREADS / (BN * 2)) * C + ch * CK : w, lwok);
            }
        }
    };
    /* Prologue: chunk 0; then each chunk gc issues gc + 1 (always committed, maybe empty, so that
     * waiting for all groups means "chunk gc has landed"). */
    int gc = 0;
    load(t, 0, 0);
    arb_cp_async_commit();
    uint32_t af[2][4];
    int32_t acc[NA];
    for (; t < total; t += grid) {
        const int nb = t % nblk, r = t / nblk, tx = r % tiles_x, r2 = r / tiles_x, ty = r2 % tiles_y, b = r2 / tiles_y;
        const int n0 = nb * BN, ox0 = tx * TW, oy0 = ty * TH;
        __syncthreads(); /* the previous tile's epilogue is done with the scales and its buffer */
        if (tid < BM) { /* window scale: the max of the 9 input pixels' absmax (0 outside the image) */
            const int oy = oy0 + tid / TW, ox = ox0 + tid % TW;
            float m = 0.f;
            if (oy < Ho && ox < Wo) {
                const float *pb = pm + (size_t)b * H * W;
#pragma unroll
                for (int tap = 0; tap < 9; tap++) {
                    const int vy = oy + tap / 3 - 1, vx = ox + tap % 3 - 1;
                    if (vy >= 0 && vx >= 0 && vy < Ho && vx < Wo)
                        m = fmaxf(m, __ldg(pb + (size_t)(up ? vy >> 1 : vy) * W + (up ? vx >> 1 : vx)));
                }
            }
            inv_s[tid] = m > 0.f ? 127.f / m : 0.f;
            qs_s[tid] = m / 127.f;
        }
#pragma unroll
        for (int i = 0; i < NA; i++) acc[i] = 0;
        float inv_a = 0.f, inv_b = 0.f;
        for (int ch = 0; ch < nch; ch++, gc++) {
            arb_cp_async_wait<0>();
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* cp.async writes → wgmma reads */
            __syncthreads(); /* chunk gc has landed; every warpgroup is done with chunk gc − 1 */
            { /* during this chunk: the next one (of this tile, or the next tile's first) */
                int tn = t, cn = ch + 1;
                if (cn == nch) cn = 0, tn += grid;
                if (tn < total) load(tn, cn, gc + 1);
                arb_cp_async_commit();
            }
            if (ch == 0) inv_a = inv_s[pia], inv_b = inv_s[pib];
            const unsigned char *Bu = wbuf(gc);
            const float4 *Xu = reinterpret_cast<const float4 *>(xbuf(gc));
            auto ld = [&](int hp, int hi) { return Xu[hp * 8 + ((t4 + 4 * hi) ^ ((hp & 1) << 2))]; };
            /* one tap: A from (pixel a's, pixel b's) staged values, wgmma against the tap's weights */
            auto tap_mma = [&](int j, int tap, float4 a0, float4 b0, float4 a1, float4 b1) {
                uint32_t (&a)[4] = af[j & 1];
                a[0] = q4(a0, inv_a);
                a[1] = q4(b0, inv_b);
                a[2] = q4(a1, inv_a);
                a[3] = q4(b1, inv_b);
                arb_wgmma_fence_acc(acc);
                arb_wgmma_fence();
                arb_wgmma_m64n128k32_rs(acc, a, arb_wgmma_desc(Bu + (tap >> 2) * BSUB + (tap & 3) * 32));
                arb_wgmma_commit();
                /* the previous tap's wgmma (the register set tap j + 1 rewrites) has retired */
                arb_wgmma_wait<1>();
            };
            /* taps dx-major: rows pya .. pya + 3 of column pxa + dx serve the 3 taps of that dx
             * for both pixels (8 shared-memory loads per 3 taps, not 12) */
#pragma unroll
            for (int dx = 0; dx < 3; dx++) {
                const int h0 = pya * HW_ + pxa + dx;
                float4 lo[4], hi[4];
                lo[0] = ld(h0, 0), hi[0] = ld(h0, 1);
#pragma unroll
                for (int dy = 0; dy < 3; dy++) {
                    lo[dy + 1] = ld(h0 + (dy + 1) * HW_, 0), hi[dy + 1] = ld(h0 + (dy + 1) * HW_, 1);
                    tap_mma(dx * 3 + dy, dy * 3 + dx, lo[dy], lo[dy + 1], hi[dy], hi[dy + 1]);
                }
            }
            arb_wgmma_wait<0>();
            arb_wgmma_fence_acc(acc);
        }

        /* epilogue: y = acc·(s_x·s_w) + bias (+ y), as the row kernel rounds it (no contraction);
         * thread holds pixels a and b, columns nj·8 + 2t, + 1. With gnp, the values also go
         * (NPART column parts in turn) through the buffer the last chunk freed (the other holds
         * the next tile's first chunk) to sum per column. */
        const int oya = oy0 + pya, oyb = oy0 + pyb, oxa = ox0 + pxa, oxb = oxa;
        const bool va = oya < Ho && oxa < Wo, vb = oyb < Ho && oxb < Wo;
        const float qa = qs_s[pia], qb = qs_s[pib];
        float *ya = y + (((size_t)b * Ho + oya) * Wo + oxa) * n, *yb = y + (((size_t)b * Ho + oyb) * Wo + oxb) * n;
        float *T = reinterpret_cast<float *>(wbuf(gc - 1));
        double *red = reinterpret_cast<double *>(T + BM * LD2);
        if (gnp) __syncthreads(); /* every warpgroup's last wgmma on that buffer has retired */
        constexpr int NJP = BN / 8 / NPART; /* 8-column groups per part */
#pragma unroll
        for (int h = 0; h < NPART; h++) {
            /* 4 column groups at a time: the quad's lanes trade their pairs (a 4 × 4 transpose of
             * float2s) so that lane t holds 8 consecutive columns of group ng + t and stores them
             * as two float4s: a warp's store then writes 32 bytes of each of its 8 pixels with
             * half the instructions (stores from the fragments, 8 pixels per instruction, were
             * a measurable part of the conv; the same formulas, so the same bits) */
#pragma unroll
            for (int ng = h * NJP; ng < (h + 1) * NJP; ng += 4) {
                float2 v[2][4]; /* [pixel][group k]: columns (ng + k)·8 + 2t4, + 1 */
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int nj = ng + k, c = n0 + nj * 8 + 2 * t4;
                    const bool c0 = c < n, c1 = c + 1 < n;
                    const float w0 = c0 ? __ldg(ws + c) : 0.f, w1 = c1 ? __ldg(ws + c + 1) : 0.f;
                    const float b0 = bias && c0 ? __ldg(bias + c) : 0.f, b1 = bias && c1 ? __ldg(bias + c + 1) : 0.f;
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const float qs = hr ? qb : qa;
                        float v0 = __fmul_rn((float)acc[nj * 4 + 2 * hr], __fmul_rn(qs, w0));
                        float v1 = __fmul_rn((float)acc[nj * 4 + 2 * hr + 1], __fmul_rn(qs, w1));
                        if (bias) v0 = __fadd_rn(v0, b0), v1 = __fadd_rn(v1, b1);
                        v[hr][k] = make_float2(v0, v1);
                    }
                }
                /* the transpose as two butterfly steps (blocks of 2 × 2 pairs across lanes t4 ^ 2,
                 * then pairs across t4 ^ 1): every register index is static */
                const bool b1 = t4 & 2, b0 = t4 & 1;
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        float2 x = b1 ? v[hr][j] : v[hr][j + 2];
                        x.x = __shfl_xor_sync(0xffffffffu, x.x, 2), x.y = __shfl_xor_sync(0xffffffffu, x.y, 2);
                        if (b1) v[hr][j] = x;
                        else v[hr][j + 2] = x;
                    }
#pragma unroll
                    for (int j = 0; j < 4; j += 2) {
                        float2 x = b0 ? v[hr][j] : v[hr][j + 1];
                        x.x = __shfl_xor_sync(0xffffffffu, x.x, 1), x.y = __shfl_xor_sync(0xffffffffu, x.y, 1);
                        if (b0) v[hr][j] = x;
                        else v[hr][j + 1] = x;
                    }
                }
                float o[2][8]; /* [pixel][column (ng + t4)·8 + i]: pair k came from lane k */
#pragma unroll
                for (int hr = 0; hr < 2; hr++)
#pragma unroll
                    for (int k = 0; k < 4; k++) o[hr][2 * k] = v[hr][k].x, o[hr][2 * k + 1] = v[hr][k].y;
                const int cg = n0 + (ng + t4) * 8; /* this lane's 8 columns */
                const bool full = cg + 8 <= n && (n & 3) == 0;
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const bool ok = hr ? vb : va;
                    float *yr = hr ? yb : ya;
                    if (ok && full) {
                        float4 *o4 = reinterpret_cast<float4 *>(yr + cg);
                        if (res) {
                            const float4 r0 = o4[0], r1 = o4[1];
                            o[hr][0] = __fadd_rn(r0.x, o[hr][0]), o[hr][1] = __fadd_rn(r0.y, o[hr][1]);
                            o[hr][2] = __fadd_rn(r0.z, o[hr][2]), o[hr][3] = __fadd_rn(r0.w, o[hr][3]);
                            o[hr][4] = __fadd_rn(r1.x, o[hr][4]), o[hr][5] = __fadd_rn(r1.y, o[hr][5]);
                            o[hr][6] = __fadd_rn(r1.z, o[hr][6]), o[hr][7] = __fadd_rn(r1.w, o[hr][7]);
                        }
                        o4[0] = make_float4(o[hr][0], o[hr][1], o[hr][2], o[hr][3]);
                        o4[1] = make_float4(o[hr][4], o[hr][5], o[hr][6], o[hr][7]);
                    } else if (ok) {
#pragma unroll
                        for (int i = 0; i < 8; i++)
                            if (cg + i < n) {
                                if (res) o[hr][i] = __fadd_rn(yr[cg + i], o[hr][i]);
                                yr[cg + i] = o[hr][i];
                            }
                    }
                    if (gnp) {
                        float t[8];
#pragma unroll
                        for (int i = 0; i < 8; i++) t[i] = ok && cg + i < n ? o[hr][i] : 0.f;
                        float4 *T4 = reinterpret_cast<float4 *>(T + (warp * 16 + g + 8 * hr) * LD2 + (ng + t4 - h * NJP) * 8);
                        T4[0] = make_float4(t[0], t[1], t[2], t[3]), T4[1] = make_float4(t[4], t[5], t[6], t[7]);
                    }
                }
            }
            if (gnp) { /* this part's per-column sum and sum of squares over the BM pixels, in double */
                __syncthreads();
                if (tid < PW * Q2) {
                    const int c = tid % PW, q = tid / PW;
                    double s = 0, ss = 0;
                    for (int rr = q * RQ2; rr < q * RQ2 + RQ2; rr++) {
                        const double v = T[rr * LD2 + c];
                        s += v, ss += v * v;
                    }
                    red[(q * PW + c) * 2] = s, red[(q * PW + c) * 2 + 1] = ss;
                }
                __syncthreads();
                const int c = n0 + h * PW + tid;
                if (tid < PW && c < n) {
                    double s = 0, ss = 0;
                    for (int q = 0; q < Q2; q++) s += red[(q * PW + tid) * 2], ss += red[(q * PW + tid) * 2 + 1];
                    double *o = gnp + (((size_t)b * tiles_x * tiles_y + ty * tiles_x + tx) * n + c) * 2;
                    o[0] = s, o[1] = ss;
                }
            }
        }
    }
#endif
}

} // namespace

/* Whether the current device runs the sm_90a image (the kernel is empty in any other). */
bool sc_sm90(void) {
    static int cache[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
    if (!cache[dev]) {
        int ma = 0, mi = 0;
        cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, dev);
        cache[dev] = ma == 9 && mi == 0 ? 1 : 2;
    }
    return cache[dev] == 1;
}

bool sc_conv3_igemm_ok(int C) { return C >= CK && C % CK == 0 && sc_sm90(); }

long sc_conv3_igemm_blocks(int B, int Ho, int Wo, int n) {
    return (long)B * sc_conv3_igemm_tiles(Ho, Wo, n) * ((n + cfg::BN - 1) / cfg::BN);
}

int sc_conv3_igemm_tiles(int Ho, int Wo, int n) {
    (void)n;
    return ((Ho + cfg::TH - 1) / cfg::TH) * ((Wo + cfg::TW - 1) / cfg::TW);
}

static arb_status check(const sc_conv3_args &a) {
    if (!sc_conv3_igemm_ok(a.C) || a.kp < 9 * a.C || a.np < a.n || (!a.xa && (a.ab || a.silu)))
        return arb_error(ARB_ERR_INVALID_ARG, "sc_conv3_igemm: C=%d n=%d kp=%d np=%d", a.C, a.n, a.kp, a.np);
    return ARB_OK;
}

arb_status sc_conv3_igemm_act(const sc_conv3_args &a, cudaStream_t st) {
    ARB_TRY(check(a));
    const int P = a.H * a.W, wpb = 8;
    const bool act = a.ab || a.silu; /* xa only when act is not the identity */
    k_conv_act<<<(unsigned)(((long)a.B * P + wpb - 1) / wpb), 32 * wpb, 0, st>>>(a.x, P, a.C, a.ab, a.silu,
                                                                              act ? a.xa : nullptr, a.pm, a.B);
    ARB_CU_LAUNCH("k_conv_act");
    return ARB_OK;
}

arb_status sc_conv3_igemm(const sc_conv3_args &a, cudaStream_t st) {
    ARB_TRY(check(a));
    static bool opted[64] = {false}; /* per device: the opt-in above 48 KB of shared memory */
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64 || !opted[dev]) {
        ARB_CU(cudaFuncSetAttribute(k_conv3_wg, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)cfg::SMEM));
        if (dev >= 0 && dev < 64) opted[dev] = true;
    }
    const int sms = arb_cuda_sm_count();
    if (!sms) return arb_error(ARB_ERR_CUDA, "%s:%d: the device's SM count is unknown", __FILE__, __LINE__);
    const int Ho = a.up ? 2 * a.H : a.H, Wo = a.up ? 2 * a.W : a.W, nblk = (a.n + cfg::BN - 1) / cfg::BN;
    const int tx = (Wo + cfg::TW - 1) / cfg::TW, ty = (Ho + cfg::TH - 1) / cfg::TH;
    const long total = (long)a.B * tx * ty * nblk;
    if (total > INT32_MAX) return arb_error(ARB_ERR_UNSUPPORTED, "sc_conv3_igemm: %ld tiles", total);
    const unsigned grid = (unsigned)(total < sms ? total : sms);
    /* the source: the activated copy, or the raw input when act is the identity */
    const float *src = a.ab || a.silu ? a.xa : a.x;
    k_conv3_wg<<<grid, cfg::THREADS, cfg::SMEM, st>>>(src, a.H, a.W, a.C, a.up, a.pm, a.w, a.kp, a.n, a.np, a.ws,
                                                      a.bias, a.y, a.res, nblk, tx, ty, (int)total, a.gnp);
    ARB_CU_LAUNCH("k_conv3_wg");
    return ARB_OK;
}
