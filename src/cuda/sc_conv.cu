/* The VAE decoder's 3×3 convolutions as one implicit-GEMM int8 kernel (see sc_conv.cuh).
 *
 * Why: the im2col path wrote every output pixel's quantized 9·C window to memory and cuBLASLt read
 * it back (≈ 41 GB per batch-32 256² decode, more time than the GEMMs). Here a block takes a
 * 8 × 16 patch of output pixels × 128 output channels and, per 32-channel chunk, stages the
 * activated input patch (GroupNorm affine + SiLU, zero padding, upsampling in the indexing) once
 * in shared memory as float; for each of the 9 taps it quantizes the shifted patch with each
 * output pixel's window scale straight into an int8 tile that mma.sync m16n8k32 consumes (weights
 * stream in by cp.async, 3 stages). A window's absmax is the max of its 9 input pixels' absmax
 * (one small pass, k_conv_pmax), so the scale is known before the first K-step.
 *
 * Same numbers as the im2col path: the same activation formula on the same floats, the same
 * scale (absmax/127, inverse 127/absmax), rint(v·inv) (multiply, then round half to even through
 * the 1.5·2²³ trick: |v·inv| ≤ 127 so no clamp is needed), exact int32 sums (the K order is free),
 * and the epilogue's acc·(s_x·s_w) + bias (+ residual) in the row kernel's order. The epilogue can
 * also emit the next GroupNorm's per-channel partial sums (in double, as k_gn_partial). */
#include "cuda/kernels.cuh"
#include "cuda/sc_conv.cuh"

namespace {

constexpr int TH = 8, TW = 16, BM = TH * TW; /* output pixels per block: an 8 × 16 patch */
constexpr int BN = 128, CK = 32, THREADS = 256;
constexpr int HW_ = TW + 2, HP = (TH + 2) * HW_; /* the staged patch with its halo */
constexpr int NXS = HP * CK / 4;                 /* float4s staged per chunk */
constexpr int XREG = (NXS + THREADS - 1) / THREADS;
constexpr int PITCH = 48; /* bytes per 32-byte int8 row: 8 rows at this stride hit distinct banks */
constexpr int NST = 3;    /* weight stages */
constexpr size_t SM_XS = (size_t)HP * CK * sizeof(float);
constexpr size_t SM_A = 2 * (size_t)BM * PITCH;
constexpr size_t SM_B = (size_t)NST * BN * PITCH;
constexpr size_t SMEM = SM_XS + SM_A + SM_B + 2 * BM * sizeof(float);
static_assert(SM_XS >= 2 * BN * 2 * sizeof(double), "the statistics reuse the staging buffer");

/* The activation as the im2col kernels apply it (conv_px): v·scale + shift, then SiLU. The
 * affine is written as the contraction nvcc makes of conv_px's `v * s + t`. */
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
__device__ __forceinline__ uint32_t q4(float4 v, float inv) {
    const float M = 12582912.f;
    uint32_t a = __float_as_uint(__fadd_rn(__fmul_rn(v.x, inv), M));
    uint32_t b = __float_as_uint(__fadd_rn(__fmul_rn(v.y, inv), M));
    uint32_t c = __float_as_uint(__fadd_rn(__fmul_rn(v.z, inv), M));
    uint32_t d = __float_as_uint(__fadd_rn(__fmul_rn(v.w, inv), M));
    return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

/* Per input pixel: the absmax of its C activated channels (one warp per pixel). */
__global__ void k_conv_pmax(const float *x, int P, int C, const float *ab, int silu, float *pm, int B) {
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= B * P) return;
    const int b = r / P, C4 = C >> 2;
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)r * C);
    const float4 *a4 = ab ? reinterpret_cast<const float4 *>(ab + (size_t)b * 2 * C) : nullptr;
    float m = 0.f;
    for (int c4 = lane; c4 < C4; c4 += 32) {
        float4 v = act4(__ldg(xr + c4), a4, C4, c4, silu);
        m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
    for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) pm[r] = m;
}

/* grid: (tiles_x · nblk, tiles_y, B); 8 warps, warp (wm, wn) owns 64 pixels × 32 channels. */
__global__ void __launch_bounds__(THREADS, 2)
    k_conv3_igemm(const float *__restrict__ x, int H, int W, int C, int up, const float *__restrict__ ab, int silu,
                  const float *__restrict__ pm, const int8_t *__restrict__ w, int kp, int n, int np,
                  const float *__restrict__ ws, const float *__restrict__ bias, float *y, int res, int nblk,
                  double *gnp) {
    extern __shared__ __align__(128) unsigned char smem[];
    float4 *Xs = reinterpret_cast<float4 *>(smem);            /* [HP][CK/4] activated floats */
    unsigned char *As = smem + SM_XS;                          /* [2][BM][PITCH] int8 */
    unsigned char *Bs = As + SM_A;                             /* [NST][BN][PITCH] int8 */
    float *inv_s = reinterpret_cast<float *>(Bs + SM_B), *qs_s = inv_s + BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int Ho = up ? 2 * H : H, Wo = up ? 2 * W : W, C4 = C >> 2;
    const int nb = blockIdx.x % nblk, tx = blockIdx.x / nblk;
    const int n0 = nb * BN, ox0 = tx * TW, oy0 = blockIdx.y * TH, b = blockIdx.z;
    const float4 *xb = reinterpret_cast<const float4 *>(x + (size_t)b * H * W * C);
    const float4 *a4 = ab ? reinterpret_cast<const float4 *>(ab + (size_t)b * 2 * C) : nullptr;
    const int nsteps = (C / CK) * 9;

    auto load_b = [&](int s) { /* weights of K-step s (chunk s/9, tap s%9): BN rows × 32 bytes */
        if (s < nsteps) {
            const int ch = s / 9, tap = s - ch * 9, row = tid >> 1, half = tid & 1;
            const bool ok = n0 + row < np;
            const int8_t *src = ok ? w + (size_t)(n0 + row) * kp + tap * C + ch * CK + half * 16 : w;
            arb_cp_async16(Bs + ((size_t)(s % NST) * BN + row) * PITCH + half * 16, src, ok);
        }
        arb_cp_async_commit();
    };
    load_b(0);
    load_b(1);

    if (tid < BM) { /* window scale: the max of the 9 input pixels' absmax (0 outside the image) */
        const int oy = oy0 + (tid >> 4), ox = ox0 + (tid & 15);
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

    int32_t acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0;
    const int wm = warp & 1, wn = warp >> 1;

    for (int s = 0; s < nsteps; s++) {
        const int ch = s / 9, tap = s - ch * 9;
        if (tap == 0) { /* stage chunk ch: all loads first, then activate and store */
            float4 raw[XREG];
            unsigned okm = 0;
#pragma unroll
            for (int j = 0; j < XREG; j++) {
                const int i = tid + j * THREADS;
                raw[j] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (i < NXS) {
                    const int hp = i >> 3, g = i & 7, hy = hp / HW_, hx = hp - hy * HW_;
                    const int vy = oy0 - 1 + hy, vx = ox0 - 1 + hx;
                    if (vy >= 0 && vx >= 0 && vy < Ho && vx < Wo) {
                        const int sy = up ? vy >> 1 : vy, sx = up ? vx >> 1 : vx;
                        raw[j] = __ldg(xb + ((size_t)sy * W + sx) * C4 + ch * (CK / 4) + g);
                        okm |= 1u << j;
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < XREG; j++) {
                const int i = tid + j * THREADS;
                if (i < NXS) Xs[i] = (okm >> j) & 1 ? act4(raw[j], a4, C4, ch * (CK / 4) + (i & 7), silu) : raw[j];
            }
            __syncthreads();
        }
        /* the int8 A tile of this tap: pixel p's 32 channels at (py + dy, px + dx) of the patch */
        unsigned char *A = As + (size_t)(s & 1) * BM * PITCH;
        const int dy = tap / 3, dx = tap - dy * 3;
#pragma unroll
        for (int j = 0; j < BM * CK / 4 / THREADS; j++) {
            const int i = tid + j * THREADS, p = i >> 3, g = i & 7;
            const int hp = ((p >> 4) + dy) * HW_ + (p & 15) + dx;
            *reinterpret_cast<uint32_t *>(A + p * PITCH + g * 4) = q4(Xs[hp * (CK / 4) + g], inv_s[p]);
        }
        arb_cp_async_wait<1>();
        __syncthreads();
        load_b(s + 2); /* its stage was last read at step s − 1, before the barrier */
        const unsigned char *Bt = Bs + (size_t)(s % NST) * BN * PITCH;
        uint32_t bf[4][2];
#pragma unroll
        for (int nj = 0; nj < 2; nj++) {
            const int mat = lane >> 3, row = wn * 32 + nj * 16 + (lane & 7) + (mat >> 1) * 8;
            arb_ldmatrix_x4(bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0], bf[2 * nj + 1][1],
                            Bt + row * PITCH + (mat & 1) * 16);
        }
#pragma unroll
        for (int mi = 0; mi < 4; mi++) {
            uint32_t af[4];
            const int row = wm * 64 + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
            arb_ldmatrix_x4(af[0], af[1], af[2], af[3], A + row * PITCH + (lane >> 4) * 16);
#pragma unroll
            for (int ni = 0; ni < 4; ni++)
                arb_mma_s8(acc[mi][ni][0], acc[mi][ni][1], acc[mi][ni][2], acc[mi][ni][3], af, bf[ni][0], bf[ni][1]);
        }
    }
    arb_cp_async_wait<0>();

    /* epilogue: y = acc·(s_x·s_w) + bias (+ y), written once; thread holds rows g, g + 8 of
     * each 16-row fragment and columns 2t, 2t + 1 of each 8-column one */
    const int g = lane >> 2, t = lane & 3;
    double cs[4][2], css[4][2];
#pragma unroll
    for (int ni = 0; ni < 4; ni++) cs[ni][0] = cs[ni][1] = css[ni][0] = css[ni][1] = 0.0;
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int p = wm * 64 + mi * 16 + g + hr * 8, oy = oy0 + (p >> 4), ox = ox0 + (p & 15);
            if (oy >= Ho || ox >= Wo) continue;
            const float qs = qs_s[p];
            float *yr = y + (((size_t)b * Ho + oy) * Wo + ox) * n;
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int c = n0 + wn * 32 + ni * 8 + 2 * t;
                if (c >= n) continue;
                const bool two = c + 1 < n;
                float v0 = (float)acc[mi][ni][2 * hr] * (qs * __ldg(ws + c));
                float v1 = two ? (float)acc[mi][ni][2 * hr + 1] * (qs * __ldg(ws + c + 1)) : 0.f;
                if (bias) v0 = v0 + __ldg(bias + c), v1 = two ? v1 + __ldg(bias + c + 1) : 0.f;
                if ((n & 1) == 0) { /* c even, n even: 8-byte aligned pairs */
                    float2 *o = reinterpret_cast<float2 *>(yr + c);
                    if (res) {
                        float2 r = *o;
                        v0 = r.x + v0, v1 = r.y + v1;
                    }
                    *o = make_float2(v0, v1);
                } else {
                    if (res) v0 = yr[c] + v0;
                    yr[c] = v0;
                    if (two) {
                        if (res) v1 = yr[c + 1] + v1;
                        yr[c + 1] = v1;
                    }
                }
                cs[ni][0] += v0, css[ni][0] += (double)v0 * v0;
                cs[ni][1] += v1, css[ni][1] += (double)v1 * v1; /* v1 = 0 past n */
            }
        }
    if (!gnp) return;
    /* GroupNorm partials of this tile: sum over the 8 row groups (lanes with equal t), then the
     * two pixel halves (wm) through shared memory */
#pragma unroll
    for (int ni = 0; ni < 4; ni++)
#pragma unroll
        for (int e = 0; e < 2; e++)
#pragma unroll
            for (int o = 4; o < 32; o <<= 1) {
                cs[ni][e] += __shfl_xor_sync(0xffffffffu, cs[ni][e], o);
                css[ni][e] += __shfl_xor_sync(0xffffffffu, css[ni][e], o);
            }
    __syncthreads(); /* every warp is past its last read of the staging buffer */
    double *red = reinterpret_cast<double *>(smem); /* [2 (wm)][BN][2] */
    if (g == 0)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int cl = wn * 32 + ni * 8 + 2 * t + e;
                red[((size_t)wm * BN + cl) * 2] = cs[ni][e];
                red[((size_t)wm * BN + cl) * 2 + 1] = css[ni][e];
            }
    __syncthreads();
    if (tid < BN && n0 + tid < n) {
        const int tiles_x = (Wo + TW - 1) / TW, nch = tiles_x * ((Ho + TH - 1) / TH);
        const int tile = blockIdx.y * tiles_x + tx;
        double *o = gnp + (((size_t)b * nch + tile) * n + n0 + tid) * 2;
        o[0] = red[tid * 2] + red[(BN + tid) * 2];
        o[1] = red[tid * 2 + 1] + red[(BN + tid) * 2 + 1];
    }
}

} // namespace

bool sc_conv3_igemm_ok(int C) { return C >= CK && C % CK == 0; }

long sc_conv3_igemm_blocks(int B, int Ho, int Wo, int n) {
    return (long)B * ((Ho + TH - 1) / TH) * ((Wo + TW - 1) / TW) * ((n + BN - 1) / BN);
}

int sc_conv3_igemm_tiles(int Ho, int Wo) { return ((Ho + TH - 1) / TH) * ((Wo + TW - 1) / TW); }

arb_status sc_conv3_igemm(const sc_conv3_args &a, cudaStream_t st) {
    if (!sc_conv3_igemm_ok(a.C) || a.kp < 9 * a.C || a.np < a.n)
        return arb_error(ARB_ERR_INVALID_ARG, "sc_conv3_igemm: C=%d n=%d kp=%d np=%d", a.C, a.n, a.kp, a.np);
    static bool opted[64] = {false}; /* per device: the opt-in above 48 KB of shared memory */
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64 || !opted[dev]) {
        ARB_CU(cudaFuncSetAttribute(k_conv3_igemm, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
        if (dev >= 0 && dev < 64) opted[dev] = true;
    }
    const int P = a.H * a.W;
    const int wpb = 8;
    k_conv_pmax<<<(unsigned)(((long)a.B * P + wpb - 1) / wpb), 32 * wpb, 0, st>>>(a.x, P, a.C, a.ab, a.silu, a.pm, a.B);
    ARB_CU_LAUNCH("k_conv_pmax");
    const int Ho = a.up ? 2 * a.H : a.H, Wo = a.up ? 2 * a.W : a.W, nblk = (a.n + BN - 1) / BN;
    dim3 grid((unsigned)(((Wo + TW - 1) / TW) * nblk), (unsigned)((Ho + TH - 1) / TH), (unsigned)a.B);
    k_conv3_igemm<<<grid, THREADS, SMEM, st>>>(a.x, a.H, a.W, a.C, a.up, a.ab, a.silu, a.pm, a.w, a.kp, a.n, a.np, a.ws,
                                               a.bias, a.y, a.res, nblk, a.gnp);
    ARB_CU_LAUNCH("k_conv3_igemm");
    return ARB_OK;
}
