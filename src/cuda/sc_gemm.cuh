/* int8 GEMMs with the row kernel's epilogue fused in (included by sidecar.cu inside its private
 * namespace, after row_args and the row-kernel helpers).
 *
 * Why: cuBLASLt's int8 GEMMs can only write int32 (or requantized int8 with its own rule), so every
 * sidecar layer wrote each GEMM's int32 result and a row kernel read it back: at batch 32 that round
 * trip is about half of all DINOv2 HBM traffic. These kernels keep the int32 tile in registers and
 * apply the same stages with the same formulas as k_rowr, so the results are bit for bit the
 * cuBLASLt + k_rowr path's (int32 accumulation is exact; the per-row sums run in k_rowr's order
 * for W = 1, i.e. rows of ≤ 512 values):
 *   k_qgemm<.., QG_ELEM>: 128×128 tiles, element-wise epilogue (dequantize, bias, activation,
 *     rotary pairs) → float and/or half outputs (the QKV projection → fp16 for the attention);
 *   k_qgemm<.., QG_ROW>: 64-row tiles that span the whole output row (N ≤ 512), the int32 tile
 *     staged in shared memory, then a warp per row runs k_rowr's stages (dequantize … LayerNorm, int8)
 *     (attention output and MLP down projections, the DINOv2 patch embedding).
 * Main loop: mma.sync m16n8k32 (s8·s8 → s32) on 8 warps, 64-byte K slices by 16-byte cp.async in a
 * 3-stage ring, operands by ldmatrix from rows XOR-swizzled per 16-byte chunk (conflict-free).
 * Operands as for cuBLASLt ("TN"): X [M][ldx] and W [Nw][ldw] int8, K-major, K a multiple of 16
 * (zero-filled past K, past M and past Nw).
 * Measured on an H100 (docs/PERFORMANCE.md, session 4): slower than cuBLASLt + the row kernel at
 * every DINOv2-small / Moonshine-base shape (full-row tiles re-read the weights from L2 per 64
 * rows; mma.sync has half of wgmma's rate), so lin() times both per shape and keeps the faster. */

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

/* k_rowr's first stages on one value: act(acc·(xs·w) + b + ad) (b, ad: 0 when absent, added only
 * when present, as k_rowr does). */
__device__ __forceinline__ float qg_deq(int v, float xs, float w, float b, bool hb, float ad, bool had, int act) {
    float y = fmul_((float)v, fmul_(xs, w));
    if (hb) y = fadd_(y, b);
    if (had) y = fadd_(y, ad);
    if (act == ACT_GELU) y = 0.5f * y * (1.f + erff(y * 0.70710678118654752f));
    else if (act == ACT_TANH) y = tanhf(y);
    return y;
}

/* Block (BM×BN tile at m0 = blockIdx.y·BM, n0 = blockIdx.x·BN), warps WGM × WGN. */
template <int BM, int BN, int WGM, int WGN, int MODE>
__global__ void __launch_bounds__(256, MODE == QG_ELEM ? 2 : 1) k_qgemm(const int8_t *X, int ldx, const int8_t *Wt, int ldw, int M, int Nw,
                                                  int K, row_args a) {
    using namespace qg;
    pdl_begin();
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
    /* Epilogues: every operand a thread needs is loaded before its first store, so the loads of
     * a thread are in flight together (a store may alias a later load: the compiler keeps order). */
    if constexpr (MODE == QG_ELEM) {
        float xs[MI][2];
        float2 wv[NI], bv[NI];
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = m0 + wr0 + mi * 16 + g + 8 * h;
                xs[mi][h] = r < M ? __ldg(a.xs + r) : 0.f;
            }
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
            const int c = n0 + wc0 + ni * 8 + 2 * t4;
            const bool okc = c < N;
            wv[ni] = okc ? __ldg(reinterpret_cast<const float2 *>(a.ws + c)) : make_float2(0.f, 0.f);
            bv[ni] = okc && a.bias ? __ldg(reinterpret_cast<const float2 *>(a.bias + c)) : make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
            float cs[2][NI], sn[2][NI];
            unsigned rot = 0; /* bit 2·ni + h: the pair rotates */
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = m0 + wr0 + mi * 16 + g + 8 * h, t = a.rope_T ? r % a.rope_T : 0;
#pragma unroll
                for (int ni = 0; ni < NI; ni++) {
                    const int c = n0 + wc0 + ni * 8 + 2 * t4, jj = a.rope_dh ? c % a.rope_dh : 0;
                    const bool rope = r < M && c < a.rope_cols && jj < a.rope_rot;
                    const size_t ti = (size_t)t * a.rope_nf + (jj >> 1);
                    cs[h][ni] = rope ? __ldg(a.rope_cos + ti) : 0.f;
                    sn[h][ni] = rope ? __ldg(a.rope_sin + ti) : 0.f;
                    rot |= (unsigned)rope << (2 * ni + h);
                }
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = m0 + wr0 + mi * 16 + g + 8 * h;
                if (r >= M) continue;
                const int o = a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
#pragma unroll
                for (int ni = 0; ni < NI; ni++) {
                    const int c = n0 + wc0 + ni * 8 + 2 * t4;
                    if (c >= N) continue;
                    const bool hb = a.bias != nullptr; /* no `add` here (lin() sends it to QG_ROW) */
                    float y0 = qg_deq(acc[mi][ni][2 * h], xs[mi][h], wv[ni].x, bv[ni].x, hb, 0.f, false, a.act);
                    float y1 = qg_deq(acc[mi][ni][2 * h + 1], xs[mi][h], wv[ni].y, bv[ni].y, hb, 0.f, false, a.act);
                    if ((rot >> (2 * ni + h)) & 1u) {
                        const float x0 = y0, x1 = y1;
                        y0 = rot0_(x0, x1, cs[h][ni], sn[h][ni]);
                        y1 = rot1_(x0, x1, cs[h][ni], sn[h][ni]);
                    }
                    if (a.out) *reinterpret_cast<float2 *>(a.out + (size_t)o * a.ld_out + c) = make_float2(y0, y1);
                    if (a.outh) *reinterpret_cast<unsigned *>(a.outh + (size_t)o * a.ld_outh + c) = pack_h2r(y0, y1);
                }
            }
        }
    } else {
        /* the int32 tile to shared memory, then k_rowr (W = 1) on each row: a warp per row, the
         * per-column operands loaded once per warp, the residual rows RG at a time */
        constexpr int LDY = BN + 4, NC = (BN + 127) / 128, RG = 4;
        int *Y = reinterpret_cast<int *>(qsm);
        __syncthreads(); /* every warp is done with the pipeline's shared memory */
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int rl = wr0 + mi * 16 + g + 8 * h;
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
                    *reinterpret_cast<int2 *>(Y + rl * LDY + wc0 + ni * 8 + 2 * t4) = make_int2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
            }
        __syncthreads();
        bool ok[NC];
        int cc[NC];
#pragma unroll
        for (int i = 0; i < NC; i++) {
            const int c = i * 128 + lane * 4;
            ok[i] = c < N;
            cc[i] = ok[i] ? c : 0;
        }
        const float4 z4 = make_float4(0.f, 0.f, 0.f, 0.f), one4 = make_float4(1.f, 1.f, 1.f, 1.f);
        float4 wv[NC], bv[NC], lv[NC];
#pragma unroll
        for (int i = 0; i < NC; i++) {
            wv[i] = __ldg(reinterpret_cast<const float4 *>(a.ws + cc[i]));
            bv[i] = a.bias ? __ldg(reinterpret_cast<const float4 *>(a.bias + cc[i])) : z4;
            lv[i] = a.lam ? __ldg(reinterpret_cast<const float4 *>(a.lam + cc[i])) : one4;
        }
        for (int rg = warp; rg < BM; rg += 8 * RG) {
            float4 rv[RG][NC];
            float xsr[RG];
#pragma unroll
            for (int k = 0; k < RG; k++) {
                const int rl = rg + 8 * k, r = m0 + rl;
                const bool live = rl < BM && r < M;
                const int o = !live ? 0 : a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
                xsr[k] = live ? __ldg(a.xs + r) : 0.f;
#pragma unroll
                for (int i = 0; i < NC; i++)
                    rv[k][i] = live && a.res_mode == RES_ADD ? *reinterpret_cast<const float4 *>(a.res + (size_t)o * a.ld_res + cc[i]) : z4;
            }
#pragma unroll
            for (int k = 0; k < RG; k++) {
                const int rl = rg + 8 * k, r = m0 + rl;
                if (rl >= BM || r >= M) break;
                const int o = a.grp ? (r / a.grp) * a.grp_out + a.off + r % a.grp : r + a.off;
                const float *addr = a.add ? a.add + (size_t)(r % a.add_period) * N : nullptr;
                float y[NC][4];
#pragma unroll
                for (int i = 0; i < NC; i++) {
                    const int4 q = ok[i] ? *reinterpret_cast<const int4 *>(Y + rl * LDY + cc[i]) : make_int4(0, 0, 0, 0);
                    const float4 av = addr && ok[i] ? __ldg(reinterpret_cast<const float4 *>(addr + cc[i])) : z4;
                    const bool hb = a.bias != nullptr, had = addr != nullptr;
                    y[i][0] = ok[i] ? qg_deq(q.x, xsr[k], wv[i].x, bv[i].x, hb, av.x, had, a.act) : 0.f;
                    y[i][1] = ok[i] ? qg_deq(q.y, xsr[k], wv[i].y, bv[i].y, hb, av.y, had, a.act) : 0.f;
                    y[i][2] = ok[i] ? qg_deq(q.z, xsr[k], wv[i].z, bv[i].z, hb, av.z, had, a.act) : 0.f;
                    y[i][3] = ok[i] ? qg_deq(q.w, xsr[k], wv[i].w, bv[i].w, hb, av.w, had, a.act) : 0.f;
                }
                if (a.res_mode) {
                    float *rr = a.res + (size_t)o * a.ld_res;
#pragma unroll
                    for (int i = 0; i < NC; i++)
                        if (ok[i]) {
                            if (a.res_mode == RES_ADD) {
                                y[i][0] = res_(rv[k][i].x, lv[i].x, y[i][0]), y[i][1] = res_(rv[k][i].y, lv[i].y, y[i][1]);
                                y[i][2] = res_(rv[k][i].z, lv[i].z, y[i][2]), y[i][3] = res_(rv[k][i].w, lv[i].w, y[i][3]);
                            }
                            *reinterpret_cast<float4 *>(rr + cc[i]) = make_float4(y[i][0], y[i][1], y[i][2], y[i][3]);
                        }
                }
                qg_row_tail<NC>(a, y, ok, cc, o);
            }
        }
    }
}
