/* int8 GEMMs with the row kernel's epilogue fused in (included by sidecar.cu inside its private
 * namespace, after row_args and the row-kernel helpers).
 *
 * Why: cuBLASLt's int8 GEMMs can only write int32 (or requantized int8 with its own rule), so every
 * sidecar layer wrote each GEMM's int32 result and a row kernel read it back: at batch 32 that round
 * trip is about half of all DINOv2 HBM traffic. These kernels keep the int32 tile in registers and
 * apply the same stages with the same formulas as k_rowr, so the results are bit for bit the
 * cuBLASLt + k_rowr path's (int32 accumulation is exact; the per-row sums run in k_rowr's order
 * for W = 1, i.e. rows of ≤ 512 values):
 *   k_qgemm<.., QG_ELEM>: 128×128 tiles, element-wise epilogue (dequantize, bias, add, activation,
 *     rotary pairs) → float and/or half outputs (the QKV projection → fp16 for the attention);
 *   k_qgemm<.., QG_ROW>: 64-row tiles that span the whole output row (N ≤ 512), the dequantized tile
 *     staged in shared memory, then a warp per row runs residual / LayerNorm / int8 quantization
 *     (attention output and MLP down projections, the DINOv2 patch embedding); the residual is
 *     element-wise, so it is added (and written back) before the staging.
 * Main loop: mma.sync m16n8k32 (s8·s8 → s32) on 8 warps, 64-byte K slices by 16-byte cp.async in a
 * 3-stage ring, operands by ldmatrix from rows XOR-swizzled per 16-byte chunk (conflict-free).
 * Operands as for cuBLASLt ("TN"): X [M][ldx] and W [Nw][ldw] int8, K-major, K a multiple of 16
 * (zero-filled past K, past M and past Nw). */

enum { QG_ELEM = 0, QG_ROW = 1 };
namespace qg {
constexpr int BK = 64, STAGES = 3, THREADS = 256;
template <int BM, int BN> constexpr size_t pipe_bytes() { return (size_t)STAGES * (BM + BN) * BK; }
template <int BM, int BN, int MODE> constexpr size_t smem_bytes() {
    return MODE == QG_ROW && (size_t)BM * (BN + 4) * 4 > pipe_bytes<BM, BN>() ? (size_t)BM * (BN + 4) * 4
                                                                                 : pipe_bytes<BM, BN>();
}
/* byte offset of 16-byte chunk ch (0..3) of row r in a [rows][64 B] tile */
__device__ __forceinline__ int swz(int r, int ch) { return r * 64 + ((ch ^ ((r >> 1) & 3)) << 4); }
} // namespace qg

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    int n = ok ? 16 : 0; /* 0: zero-fill, nothing read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
}
__device__ __forceinline__ void ldsm_x4(unsigned r[4], const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void mma_s8(int c[4], const unsigned a[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* The stages k_rowr runs after the residual (W = 1: lane l holds columns 128·i + 4l … +3), for
 * one live row: LayerNorm, quantization, outputs. Same formulas and sum order. */
template <int NC>
__device__ __forceinline__ void qg_row_tail(const row_args &a, float (&y)[NC][4], const bool (&ok)[NC],
                                            const int (&cc)[NC], int o) {
    const int lane = threadIdx.x & 31, N = a.N;
    const float4 z4 = make_float4(0.f, 0.f, 0.f, 0.f);
    auto ldg4 = [&](const float *p, int i) { return __ldg(reinterpret_cast<const float4 *>(p + cc[i])); };
    if (a.ln_g) {
        float4 gv[NC], bv[NC];
#pragma unroll
        for (int i = 0; i < NC; i++) {
            gv[i] = ldg4(a.ln_g, i);
            bv[i] = a.ln_b ? ldg4(a.ln_b, i) : z4;
        }
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < NC; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) s += y[i][j]; /* columns ≥ N are 0 */
        const float mean = warp_sum(s) / (float)N;
        float ss = 0.f;
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i])
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float d = y[i][j] - mean;
                    ss = __fmaf_rn(d, d, ss);
                }
        const float inv = rsqrtf(warp_sum(ss) / (float)N + a.eps);
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i]) {
                y[i][0] = ln_(y[i][0], mean, inv, gv[i].x, bv[i].x), y[i][1] = ln_(y[i][1], mean, inv, gv[i].y, bv[i].y);
                y[i][2] = ln_(y[i][2], mean, inv, gv[i].z, bv[i].z), y[i][3] = ln_(y[i][3], mean, inv, gv[i].w, bv[i].w);
            }
    }
    if (a.q) {
        float m = 0.f;
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i])
#pragma unroll
                for (int j = 0; j < 4; j++) m = fmaxf(m, fabsf(y[i][j]));
        const float amax = warp_max(m), inv = amax > 0.f ? 127.f / amax : 0.f;
        int8_t *qr = a.q + (size_t)o * a.ldq;
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i]) {
                char4 v;
#define ARB_Q1(k) (signed char)(int)fminf(fmaxf(rintf(y[i][k] * inv), -127.f), 127.f)
                v.x = ARB_Q1(0), v.y = ARB_Q1(1), v.z = ARB_Q1(2), v.w = ARB_Q1(3);
#undef ARB_Q1
                *reinterpret_cast<char4 *>(qr + cc[i]) = v;
            }
        for (int c = N + lane * 4; c < a.ldq; c += 128) *reinterpret_cast<char4 *>(qr + c) = make_char4(0, 0, 0, 0);
        if (lane == 0) a.qs[o] = amax / 127.f;
    }
    if (a.out) {
        float *orow = a.out + (size_t)o * a.ld_out;
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i]) *reinterpret_cast<float4 *>(orow + cc[i]) = make_float4(y[i][0], y[i][1], y[i][2], y[i][3]);
    }
    if (a.outh) {
        __half *orow = a.outh + (size_t)o * a.ld_outh;
#pragma unroll
        for (int i = 0; i < NC; i++)
            if (ok[i]) {
                uint2 u;
                u.x = pack_h2r(y[i][0], y[i][1]), u.y = pack_h2r(y[i][2], y[i][3]);
                *reinterpret_cast<uint2 *>(orow + cc[i]) = u;
            }
    }
}

/* y = act(acc·(xs[r]·ws[c]) + bias[c] + add[r mod period][c]) for columns c, c + 1 of row r. */
__device__ __forceinline__ void qg_deq2(const row_args &a, int r, int c, int v0, int v1, float &y0, float &y1) {
    const float xs = __ldg(a.xs + r);
    const float2 w = __ldg(reinterpret_cast<const float2 *>(a.ws + c));
    y0 = fmul_((float)v0, fmul_(xs, w.x)), y1 = fmul_((float)v1, fmul_(xs, w.y));
    if (a.bias) {
        const float2 b = __ldg(reinterpret_cast<const float2 *>(a.bias + c));
        y0 = fadd_(y0, b.x), y1 = fadd_(y1, b.y);
    }
    if (a.add) {
        const float2 b = __ldg(reinterpret_cast<const float2 *>(a.add + (size_t)(r % a.add_period) * a.N + c));
        y0 = fadd_(y0, b.x), y1 = fadd_(y1, b.y);
    }
    if (a.act == ACT_GELU) {
        y0 = 0.5f * y0 * (1.f + erff(y0 * 0.70710678118654752f));
        y1 = 0.5f * y1 * (1.f + erff(y1 * 0.70710678118654752f));
    } else if (a.act == ACT_TANH) {
        y0 = tanhf(y0), y1 = tanhf(y1);
    }
}

/* Block (BM×BN tile at m0 = blockIdx.y·BM, n0 = blockIdx.x·BN), warps WGM × WGN. */
template <int BM, int BN, int WGM, int WGN, int MODE>
__global__ void __launch_bounds__(256, MODE == QG_ELEM ? 2 : 1) k_qgemm(const int8_t *X, int ldx, const int8_t *Wt, int ldw, int M, int Nw,
                                                  int K, row_args a) {
    using namespace qg;
    constexpr int MI = BM / WGM / 16, NI = BN / WGN / 8, ACH = BM * 4, NCH = (BM + BN) * 4;
    static_assert(WGM * WGN == 8 && NI % 2 == 0, "k_qgemm: 8 warps, n-tiles in pairs");
    extern __shared__ __align__(128) unsigned char qsm[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int wr0 = (warp / WGN) * (BM / WGM), wc0 = (warp % WGN) * (BN / WGN);
    const int KT = (K + BK - 1) / BK;
    auto stage_a = [&](int st) { return qsm + (size_t)st * (BM + BN) * BK; };
    auto load = [&](int st, int kt) {
        unsigned char *As = stage_a(st), *Bs = As + BM * BK;
#pragma unroll
        for (int j = 0; j < (NCH + THREADS - 1) / THREADS; j++) {
            const int i = tid + j * THREADS;
            if (i < NCH) {
                const bool isa = i < ACH;
                const int ii = isa ? i : i - ACH, r = ii >> 2, ch = ii & 3, kb = kt * BK + ch * 16;
                const int gr = (isa ? m0 : n0) + r;
                const bool ok = gr < (isa ? M : Nw) && kb < K;
                const int8_t *src = isa ? X + (ok ? (size_t)gr * ldx + kb : 0) : Wt + (ok ? (size_t)gr * ldw + kb : 0);
                cp_async16((isa ? As : Bs) + swz(r, ch), src, ok);
            }
        }
    };
    int acc[MI][NI][4];
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT) load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* stage kt landed for every thread; stage kt - 1 is free */
        if (kt + STAGES - 1 < KT) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        cp_async_commit();
        const unsigned char *As = stage_a(kt % STAGES), *Bs = As + BM * BK;
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            unsigned af[MI][4];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) ldsm_x4(af[mi], As + swz(wr0 + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
            for (int np = 0; np < NI / 2; np++) {
                unsigned bf[4]; /* b0, b1 of n-tile 2np, then of 2np + 1 */
                ldsm_x4(bf, Bs + swz(wc0 + np * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1)));
#pragma unroll
                for (int mi = 0; mi < MI; mi++) {
                    mma_s8(acc[mi][2 * np], af[mi], bf[0], bf[1]);
                    mma_s8(acc[mi][2 * np + 1], af[mi], bf[2], bf[3]);
                }
            }
        }
    }
    cp_async_wait<0>();
    const int N = a.N;
    if constexpr (MODE == QG_ELEM) {
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = m0 + wr0 + mi * 16 + g + 8 * h;
                if (r >= M) continue;
                const int o = a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
#pragma unroll
                for (int ni = 0; ni < NI; ni++) {
                    const int c = n0 + wc0 + ni * 8 + 2 * t4;
                    if (c >= N) continue;
                    float y0, y1;
                    qg_deq2(a, r, c, acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1], y0, y1);
                    if (c < a.rope_cols) {
                        const int jj = c % a.rope_dh;
                        if (jj < a.rope_rot) {
                            const int t = r % a.rope_T, f = jj >> 1;
                            const float cs = __ldg(a.rope_cos + (size_t)t * a.rope_nf + f),
                                        sn = __ldg(a.rope_sin + (size_t)t * a.rope_nf + f);
                            const float x0 = y0, x1 = y1;
                            y0 = rot0_(x0, x1, cs, sn);
                            y1 = rot1_(x0, x1, cs, sn);
                        }
                    }
                    if (a.out) *reinterpret_cast<float2 *>(a.out + (size_t)o * a.ld_out + c) = make_float2(y0, y1);
                    if (a.outh) *reinterpret_cast<unsigned *>(a.outh + (size_t)o * a.ld_outh + c) = pack_h2r(y0, y1);
                }
            }
    } else {
        constexpr int LDY = BN + 4;
        float *Y = reinterpret_cast<float *>(qsm);
        __syncthreads(); /* every warp is done with the pipeline's shared memory */
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int rl = wr0 + mi * 16 + g + 8 * h, r = m0 + rl;
                if (r >= M) continue;
                const int o = a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
#pragma unroll
                for (int ni = 0; ni < NI; ni++) {
                    const int c = wc0 + ni * 8 + 2 * t4; /* n0 = 0: the tile spans the row */
                    if (c >= N) continue;
                    float y0, y1;
                    qg_deq2(a, r, c, acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1], y0, y1);
                    if (a.res_mode) { /* element-wise, so here: every thread's loads in flight together */
                        float2 *rp = reinterpret_cast<float2 *>(a.res + (size_t)o * a.ld_res + c);
                        if (a.res_mode == RES_ADD) {
                            const float2 rv = *rp;
                            const float2 lv = a.lam ? __ldg(reinterpret_cast<const float2 *>(a.lam + c)) : make_float2(1.f, 1.f);
                            y0 = res_(rv.x, lv.x, y0), y1 = res_(rv.y, lv.y, y1);
                        }
                        *rp = make_float2(y0, y1);
                    }
                    *reinterpret_cast<float2 *>(Y + rl * LDY + c) = make_float2(y0, y1);
                }
            }
        __syncthreads();
        constexpr int NC = (BN + 127) / 128;
        bool ok[NC];
        int cc[NC];
#pragma unroll
        for (int i = 0; i < NC; i++) {
            const int c = i * 128 + lane * 4;
            ok[i] = c < N;
            cc[i] = ok[i] ? c : 0;
        }
        for (int rl = warp; rl < BM; rl += 8) {
            const int r = m0 + rl;
            if (r >= M) break;
            const int o = a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
            float y[NC][4];
#pragma unroll
            for (int i = 0; i < NC; i++) {
                const float4 u = ok[i] ? *reinterpret_cast<const float4 *>(Y + rl * LDY + cc[i]) : make_float4(0.f, 0.f, 0.f, 0.f);
                y[i][0] = u.x, y[i][1] = u.y, y[i][2] = u.z, y[i][3] = u.w;
            }
            qg_row_tail<NC>(a, y, ok, cc, o);
        }
    }
}
