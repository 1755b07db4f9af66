// dev/cuda/emu_bwd_quant.cpp — runs the CUDA backward's gradient-quantization source text on the
// CPU (one pthread per CUDA thread, a barrier for __syncthreads, the block's warps reduced through
// shared slots), for a machine without a GPU: the tree's two-pass order (k_bwd_amax, then
// k_bwd_quant for both outputs) and its row pass (k_bwd_rowq for q, qs and the column maxima,
// then k_bwd_quant for hqT alone) must give the same column maxima, flags, q, qs and hqT bit for
// bit, q must equal the CPU's dX rule and hqT the CPU rule's arb_upd_quantize_grad. Built and
// run by emu_bwd_quant.sh.
// Evidence for index and arithmetic changes only: timing, L2 and warp scheduling are not modelled.
#include <pthread.h>
#include <fenv.h>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <thread>
#include <algorithm>
#include <numeric>
#include <functional>
extern "C" {
#include "arbitor/core.h"
#include "ternary/update_internal.h"
#include "ternary/ops_internal.h"
}
struct D3 { unsigned x, y, z; };
static thread_local D3 threadIdx;
static D3 blockIdx, blockDim, gridDim;
static pthread_barrier_t bar;
static unsigned warp_slot[1024];
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(x) __attribute__((aligned(x)))
#define __shared__ static
static void __syncthreads() { pthread_barrier_wait(&bar); }
template <class T> static T __ldg(const T *p) { return *p; }
static float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static float __fadd_rd(float a, float b) { fesetround(FE_DOWNWARD); volatile float r = a + b; fesetround(FE_TONEAREST); return r; }
static int __float2int_rd(float a) { return (int)floorf(a); }
static unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static unsigned __reduce_max_sync(unsigned, unsigned v) {
    unsigned t = threadIdx.x; warp_slot[t] = v; __syncthreads();
    unsigned m = 0; for (unsigned i = t & ~31u; i < (t | 31u) + 1 && i < blockDim.x; i++) m = std::max(m, warp_slot[i]);
    __syncthreads(); return m;
}
static void atomicMax(unsigned *p, unsigned v) { unsigned o = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (o < v && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} }
static void atomicOr(int *p, int v) { __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static int sor_acc;
static int __syncthreads_or(int p) {
    if (p) __atomic_fetch_or(&sor_acc, 1, __ATOMIC_SEQ_CST);
    __syncthreads(); int r = __atomic_load_n(&sor_acc, __ATOMIC_SEQ_CST); __syncthreads();
    if (threadIdx.x == 0) __atomic_store_n(&sor_acc, 0, __ATOMIC_SEQ_CST);
    __syncthreads(); return r;
}
static float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static uint32_t __umulhi(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a * b) >> 32); }
static uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
    uint64_t b = (uint64_t)y << 32 | x; uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)((b >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
static uint32_t simd16(uint32_t a, uint32_t b, bool mx) {
    uint32_t r = 0;
    for (int i = 0; i < 2; i++) { int16_t x = (int16_t)(a >> 16 * i), y = (int16_t)(b >> 16 * i);
        r |= (uint32_t)(uint16_t)(mx ? std::max(x, y) : std::min(x, y)) << 16 * i; }
    return r;
}
static uint32_t __vmaxs2(uint32_t a, uint32_t b) { return simd16(a, b, true); }
static uint32_t __vmins2(uint32_t a, uint32_t b) { return simd16(a, b, false); }
using std::max;
struct uint4 { uint32_t x, y, z, w; };
struct float4 { float x, y, z, w; };
static float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return {a, b, c, d}; }
namespace newk {
#include "new_k.inc"
}
template <class F> static void launch(D3 g, unsigned nt, F f) {
    gridDim = g; blockDim = {nt, 1, 1};
    for (unsigned by = 0; by < g.y; by++) for (unsigned bx = 0; bx < g.x; bx++) {
        blockIdx = {bx, by, 0};
        pthread_barrier_init(&bar, nullptr, nt);
        std::vector<std::thread> th;
        for (unsigned t = 0; t < nt; t++) th.emplace_back([&, t] { threadIdx = {t, 0, 0}; f(); });
        for (auto &x : th) x.join();
        pthread_barrier_destroy(&bar);
    }
}
static unsigned cdiv(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }
struct Out { std::vector<unsigned> ra, ca; int bad = 0; std::vector<int8_t> q, hqt; std::vector<float> qs; };
static int mode = 0; /* 0 both, 1 dX only, 2 update only */
static Out run(bool isnew, const float *dy, const float *xs, const float *scale, int64_t n, int64_t rows, int64_t rp,
               int64_t ldt, arb_rng_key kx, arb_rng_key kg) {
    Out o; o.ra.assign(n, 0); o.ca.assign(rows, 0); /* ra: the two-pass order only */ o.q.assign(n * rp, 99); o.hqt.assign(rows * ldt, 99); o.qs.assign(n, -1);
    unsigned *ra = mode == 2 ? nullptr : o.ra.data(), *ca = mode == 1 ? nullptr : o.ca.data(); int *bad = &o.bad;
    int8_t *qp = mode == 2 ? nullptr : o.q.data(), *hp = mode == 1 ? nullptr : o.hqt.data();
    float *qsp = mode == 2 ? nullptr : o.qs.data();
    if (mode == 1) { xs = nullptr; ldt = n; }
    const bool v4 = rows % 4 == 0 && ((uintptr_t)dy & 15) == 0;
    const bool rowq = isnew && qp; /* the row pass makes q (dX only or both) */
    if (rowq) {
        const int64_t nv = (rp + 127) / 128;
        const int NV = !v4 || nv > 8 ? 16 : (nv > 4 ? 8 : 4);
        const int64_t per = (int64_t)newk::RQ_W * (16 / NV);
        unsigned g = cdiv(n, per); if (g > 3) g = 3; /* 3 blocks: several grid-stride rounds */
        launch({g, 1, 1}, newk::RQ_W * 32, [&] {
#define R(N, V) (ca ? newk::k_bwd_rowq<N, V, true>(dy, xs, scale, n, rows, qp, rp, qsp, kx, ca, bad) \
                    : newk::k_bwd_rowq<N, V, false>(dy, xs, scale, n, rows, qp, rp, qsp, kx, ca, bad))
            if (!v4) R(16, false); else if (NV == 4) R(4, true); else if (NV == 8) R(8, true); else R(16, true);
#undef R
        });
    } else launch({cdiv(rows, 128), cdiv(n, 128), 1}, 256, [&] {
        if (v4) { if (!ca) newk::k_bwd_amax<true, true, false>(dy, xs, scale, n, rows, ra, ca, bad);
                  else if (!ra) newk::k_bwd_amax<true, false, true>(dy, xs, scale, n, rows, ra, ca, bad);
                  else newk::k_bwd_amax<true, true, true>(dy, xs, scale, n, rows, ra, ca, bad); }
        else { if (!ca) newk::k_bwd_amax<false, true, false>(dy, xs, scale, n, rows, ra, ca, bad);
               else if (!ra) newk::k_bwd_amax<false, false, true>(dy, xs, scale, n, rows, ra, ca, bad);
               else newk::k_bwd_amax<false, true, true>(dy, xs, scale, n, rows, ra, ca, bad); } });
    int8_t *qq = rowq ? nullptr : qp;
    if (qq || hp) {
        D3 gn = {cdiv(qq ? rp : rows, 128), cdiv(hp ? ldt : n, 128), 1};
        launch(gn, 128, [&] {
#define Q(M, V) newk::k_bwd_quant<M, V>(dy, xs, scale, n, rows, ra, kx, qq, rp, rowq ? nullptr : qsp, ca, kg, hp, ldt)
            const int m = (qq ? 1 : 0) | (hp ? 2 : 0);
            if (v4) { if (m == 3) Q(3, true); else if (m == 1) Q(1, true); else Q(2, true); }
            else { if (m == 3) Q(3, false); else if (m == 1) Q(1, false); else Q(2, false); }
#undef Q
        });
    }
    if (rowq) o.ra.assign(n, 0); /* not made by the row pass */
    return o;
}
/* The CPU's dX quantization (ops_ref.c's rule): q[t,o] = q8(floor(v·(127/amax_t) + u)), v = dy·scale. */
static std::vector<int8_t> cpu_q(const float *dy, const float *sc, int64_t n, int64_t rows, int64_t rp, arb_rng_key kx) {
    std::vector<int8_t> q(n * rp, 0);
    for (int64_t t = 0; t < n; t++) {
        float am = 0.0f;
        for (int64_t o = 0; o < rows; o++) { float a = fabsf(dy[t * rows + o] * sc[o]); am = a > am ? a : am; }
        if (am == 0.0f) continue;
        const float inv = 127.0f / am;
        for (int64_t o = 0; o < rows; o++)
            q[t * rp + o] = arb_ops_q8(floorf((dy[t * rows + o] * sc[o]) * inv + arb_rand_unit(kx, (uint32_t)(t * rows + o))));
    }
    return q;
}
int main() {
    int fails = 0;
    { /* bwd_unit against arb_rand_unit on 2^24 consecutive indices for three keys */
        arb_rng_key keys[3] = {{7u, 8u}, {0xdeadbeefu, 0x1234567u}, {0xffffffffu, 0x80000000u}};
        long bad = 0;
        for (auto &k : keys)
            for (uint32_t i = 0; i < (1u << 24); i++) {
                float a = newk::bwd_unit(i * 2654435761u, k.k0, k.k1), b = arb_rand_unit(k, i * 2654435761u);
                bad += memcmp(&a, &b, 4) != 0;
            }
        printf("bwd_unit vs arb_rand_unit: %ld of %d differ\n", bad, 3 << 24);
        fails += bad != 0;
    }
    int64_t shapes[][2] = {{1, 1}, {37, 19}, {130, 200}, {257, 272}, {300, 129}, {64, 64}, {260, 256},
                           {50, 1000}, {41, 2048}, {23, 1999}, {90, 516}};
    /* mode 0 both, 1 dX only, 2 update only, 3 a NaN and an inf (only the flag matters), 4 one token
     * row and one column so small that 127/amax overflows to inf (the exact path; CPU only) */
    for (mode = 0; mode < 5; mode++)
    for (auto &sh : shapes) {
        int64_t n = sh[0], rows = sh[1], rp = (rows + 15) / 16 * 16, ldt = (n + 127) / 128 * 128;
        std::vector<float> dy(n * rows), xs(n), sc(rows);
        arb_rng_key k0 = {1234u + (uint32_t)n, 99u};
        for (int64_t i = 0; i < n * rows; i++) dy[i] = arb_rand_normal(k0, (uint32_t)i) * (i % 7 == 0 ? 10.f : 0.3f);
        for (int64_t i = 0; i < n; i++) xs[i] = 0.01f + fabsf(arb_rand_normal(k0, (uint32_t)(i + 999999)));
        for (int64_t i = 0; i < rows; i++) sc[i] = 0.5f + (float)(i % 5) * 0.1f;
        if (mode == 3) { dy[n * rows / 2] = NAN; if (n * rows > 3) dy[1] = INFINITY; }
        if (mode == 4) {
            const int64_t tt = n / 2, oo = rows / 3;
            for (int64_t o = 0; o < rows; o++) dy[tt * rows + o] = o % 3 == 0 ? 0.0f : (o % 2 ? 1e-38f : -2e-39f);
            for (int64_t t = 0; t < n; t++) dy[t * rows + oo] = t % 3 == 0 ? 0.0f : (t % 2 ? -3e-39f : 1e-38f);
        }
        arb_rng_key kx = {7u, 8u}, kg = {0xdeadbeefu, 0x1234567u};
        const int saved = mode;
        if (mode == 4) mode = 0;
        Out a = run(false, dy.data(), xs.data(), sc.data(), n, rows, rp, ldt, kx, kg);
        Out b = run(true, dy.data(), xs.data(), sc.data(), n, rows, rp, ldt, kx, kg);
        mode = saved;
        if (mode != 2) a.ra.assign(n, 0); /* the row pass keeps its row maxima to itself */
        bool same = a.ra == b.ra && a.ca == b.ca && a.bad == b.bad && !memcmp(a.qs.data(), b.qs.data(), n * 4);
        same = same && a.q == b.q && a.hqt == b.hqt;
        if (mode == 3) same = a.bad == b.bad && a.bad == 1; /* values past a bad flag are unused */
        // independent: the CPU rule's hq (n, rows) against hqT, and the CPU dX rule against q
        std::vector<int8_t> hq(n * rows); std::vector<float> c(rows);
        arb_status st = ARB_OK;
        long dif = 0, nz = 0, qdif = 0;
        if (mode == 0 || mode == 2 || mode == 4) {
            st = arb_upd_quantize_grad(dy.data(), xs.data(), sc.data(), n, rows, kg, hq.data(), c.data());
            for (int64_t t = 0; t < n; t++) for (int64_t o = 0; o < rows; o++) { dif += hq[t * rows + o] != b.hqt[o * ldt + t]; nz += hq[t*rows+o] != 0; }
            for (int64_t o = 0; o < rows; o++) for (int64_t t = n; t < ldt; t++) dif += b.hqt[o * ldt + t] != 0;
        }
        if (mode == 0 || mode == 1 || mode == 4) qdif = (long)std::inner_product(b.q.begin(), b.q.end(), cpu_q(dy.data(), sc.data(), n, rows, rp, kx).begin(), 0L, std::plus<long>(), std::not_equal_to<int8_t>());
        long odif = 0;
        for (size_t i = 0; i < a.q.size(); i++) odif += a.q[i] != b.q[i];
        for (size_t i = 0; i < a.hqt.size(); i++) odif += a.hqt[i] != b.hqt[i];
        printf("mode %d n=%lld rows=%lld two-pass==row-pass %d (%ld codes differ)  cpu rule vs new: hqT diffs %ld (nonzero %ld) q diffs %ld st=%d\n", mode, (long long)n, (long long)rows, same, odif, dif, nz, qdif, (int)st);
        fails += !same || dif || qdif || st;
    }
    printf(fails ? "FAIL\n" : "ALL OK\n");
    return fails != 0;
}
